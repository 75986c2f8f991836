#!/bin/sh
# shellcheck disable=SC2086 # option lists ($small, $opts) are split into words on purpose
# Tensor parallelism (dist.tp, 1d and 2d) through mpilm train on random data,
# one BLIS thread per rank:
# - per-rank parameter, gradient, accumulation and optimizer MiB at tp = 1, 2,
#   4 on gpt2-small shapes in both modes (the split tensors fall as 1/t;
#   LayerNorms, positions and biases stay whole);
# - the machine's own ceiling: two independent 1-rank runs at once against
#   one alone (how much two busy cores slow each other down);
# - tokens/s of tp = 2 on 2 ranks against 1 rank in both modes for gpt-mini
#   and gpt2-small shapes. Each repetition runs 1 rank, 1d and 2d back to
#   back (so a noisy minute hits all three alike); a run's rate is the median
#   of its steps after the first; the ratio printed is the median over the
#   repetitions of (tp = 2 rate / 1-rank rate), each repetition's shown too;
# - the share of the step in the tensor group's communication outside the
#   GEMMs (metrics' tp_comm_s: 1d's sums; 2d's sums and gathers — the SUMMA
#   panels move inside psgemm and count as compute), waits included.
# BENCH_TP_STEPS (8) steps per run, BENCH_TP_REPS (5) repetitions,
# BENCH_TP_MB (2) micro-batch of gpt2-small.
MPILM=${MPILM:-./mpilm}
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
STEPS=${BENCH_TP_STEPS:-8}
REPS=${BENCH_TP_REPS:-5}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
echo "cores $(getconf _NPROCESSORS_ONLN), load $(cut -d' ' -f1-3 /proc/loadavg)"

run() { # name ranks steps options... -> log in $d/name.log, metrics in $d/name
  name=$1 np=$2 steps=$3; shift 3
  $MPIRUN -np "$np" "$MPILM" train "$@" --set train.steps="$steps" --set log.every=1 --set ckpt.every_steps=0 \
    --set run.dir="$d/$name" > "$d/$name.log" 2>&1 || { tail -5 "$d/$name.log"; echo "bench_tp: $name failed"; exit 1; }
  rm -rf "$d/$name"/step-* # the final checkpoint (written at the end of every run) is not measured
}
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# median tokens/s of the steps after the first
rate() { sed -n 's/.*"tokens_per_s":\([0-9.]*\).*/\1/p' "$d/$1/metrics.jsonl" | tail -n +2 | median; }
# median share of the step rank 0 spends in the tensor group's reductions
comm_share() { sed -n 's/.*"step_s":\([0-9.]*\).*"tp_comm_s":\([0-9.]*\).*/\2 \1/p' "$d/$1/metrics.jsonl" | tail -n +2 |
  awk '{ print 100 * $1 / $2 }' | median | awk '{ printf "%.1f\n", $1 }'; }

small="--config launch/configs/gpt2-small.ini --set train.micro_batch=${BENCH_TP_MB:-2}"
run mem1 1 1 $small
grep "rank 0 memory" "$d/mem1.log" | sed "s/.*rank 0 memory/gpt2-small tp = 1: rank 0 memory/"
for mode in 1d 2d; do
  for tp in 2 4; do
    run mem$tp$mode "$tp" 1 $small --set dist.tp=$tp --set dist.tp_mode=$mode
    grep "rank 0 memory" "$d/mem$tp$mode.log" | sed "s/.*rank 0 memory/gpt2-small tp = $tp $mode: rank 0 memory/"
  done
done

ceiling() { # two independent 1-rank runs at once against one alone
  run solo 1 "$STEPS" $small
  $MPIRUN -np 1 "$MPILM" train $small --set train.steps="$STEPS" --set log.every=1 --set ckpt.every_steps=0 \
    --set run.dir="$d/pair-a" > "$d/pair-a.log" 2>&1 &
  run pair-b 1 "$STEPS" $small
  wait $! || { tail -5 "$d/pair-a.log"; echo "bench_tp: pair-a failed"; exit 1; }
  echo "two cores: two independent 1-rank gpt2-small runs at once, $(rate pair-a) and $(rate pair-b) tokens/s" \
    "against $(rate solo) alone: the ceiling of 2 ranks here is $(echo "$(rate pair-a) $(rate pair-b) $(rate solo)" |
    awk '{ printf "%.2f", ($1 + $2) / $3 }')x"
}
ceiling

for cfg in gpt-mini gpt2-small; do
  opts="--config launch/configs/$cfg.ini"
  [ $cfg = gpt2-small ] && opts=$small
  : > "$d/ratios-1d"; : > "$d/ratios-2d"; : > "$d/rates-1"; : > "$d/rates-1d"; : > "$d/rates-2d"
  rep=1
  while [ $rep -le "$REPS" ]; do
    run "$cfg-1-$rep" 1 "$STEPS" $opts
    a=$(rate "$cfg-1-$rep"); echo "$a" >> "$d/rates-1"
    for mode in 1d 2d; do
      run "$cfg-$mode-$rep" 2 "$STEPS" $opts --set dist.tp=2 --set dist.tp_mode=$mode
      b=$(rate "$cfg-$mode-$rep"); echo "$b" >> "$d/rates-$mode"
      echo "$a $b" | awk '{ printf "%.3f\n", $2 / $1 }' >> "$d/ratios-$mode"
      comm_share "$cfg-$mode-$rep" >> "$d/comm-$cfg-$mode"
    done
    rep=$((rep + 1))
  done
  for mode in 1d 2d; do
    echo "$cfg: 1 rank $(median < "$d/rates-1") tokens/s, tp = 2 $mode on 2 ranks $(median < "$d/rates-$mode") tokens/s" \
      "(medians of $REPS runs): $(median < "$d/ratios-$mode" | awk '{ printf "%.2f", $1 }')x" \
      "(per repetition: $(tr '\n' ' ' < "$d/ratios-$mode")); tp communication outside the GEMMs" \
      "$(median < "$d/comm-$cfg-$mode")% of the step (rank 0, waits included)"
  done
done

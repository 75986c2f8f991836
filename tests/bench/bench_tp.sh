#!/bin/sh
# Tensor parallelism (dist.tp, 1d and 2d) through mpilm train on random data,
# one BLIS thread per rank:
# - per-rank parameter, gradient, accumulation and optimizer MiB at tp = 1, 2,
#   4 on gpt2-small shapes in both modes (the split tensors fall as 1/t;
#   LayerNorms, positions and biases stay whole);
# - tokens/s of tp = 2 on 2 ranks against 1 rank (median of the steps after
#   the first) in both modes for gpt-mini and gpt2-small shapes, the ratio,
#   and the share of the step in the tensor group's communication outside
#   the GEMMs (metrics' tp_comm_s: 1d's sums; 2d's sums and gathers — the
#   SUMMA panels move inside psgemm and count as compute).
# Steps: BENCH_TP_STEPS (4); micro-batch of gpt2-small: BENCH_TP_MB (2).
MPILM=${MPILM:-./mpilm}
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
STEPS=${BENCH_TP_STEPS:-4}
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
# median tokens/s of the steps after the first
rate() { sed -n 's/.*"tokens_per_s":\([0-9.]*\).*/\1/p' "$d/$1/metrics.jsonl" | tail -n +2 | sort -n |
  awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# median share of the step rank 0 spends in the tensor group's reductions
comm_share() { sed -n 's/.*"step_s":\([0-9.]*\).*"tp_comm_s":\([0-9.]*\).*/\2 \1/p' "$d/$1/metrics.jsonl" | tail -n +2 |
  awk '{ print 100 * $1 / $2 }' | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR + 1) / 2)] }'; }

small="--config launch/configs/gpt2-small.ini --set train.micro_batch=${BENCH_TP_MB:-2}"
run mem1 1 1 $small
grep "rank 0 memory" "$d/mem1.log" | sed "s/.*rank 0 memory/gpt2-small tp = 1: rank 0 memory/"
for mode in 1d 2d; do
  for tp in 2 4; do
    run mem$tp$mode "$tp" 1 $small --set dist.tp=$tp --set dist.tp_mode=$mode
    grep "rank 0 memory" "$d/mem$tp$mode.log" | sed "s/.*rank 0 memory/gpt2-small tp = $tp $mode: rank 0 memory/"
  done
done
for cfg in gpt-mini gpt2-small; do
  opts="--config launch/configs/$cfg.ini"
  [ $cfg = gpt2-small ] && opts=$small
  # shellcheck disable=SC2086
  run "$cfg-1" 1 "$STEPS" $opts
  a=$(rate "$cfg-1")
  for mode in 1d 2d; do
    # shellcheck disable=SC2086
    run "$cfg-2$mode" 2 "$STEPS" $opts --set dist.tp=2 --set dist.tp_mode=$mode
    b=$(rate "$cfg-2$mode")
    echo "$cfg: 1 rank $a tokens/s, tp = 2 $mode on 2 ranks $b tokens/s: $(echo "$a $b" | awk '{ printf "%.2f", $2 / $1 }')x;" \
      "tp communication outside the GEMMs $(comm_share "$cfg-2$mode")% of the step (rank 0, waits included)"
  done
done

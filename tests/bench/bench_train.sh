#!/bin/sh
# Training speed and memory: mpilm against PyTorch (its best of 1 and 2
# threads, best BLAS, BLIS kernels forced, jemalloc), same shapes, random
# tokens, dropout 0.1, AdamW with clipping, in the same run on the same cores.
# Prints per model: tokens/s (median over the timed steps), MFU against the
# BLIS sgemm peak measured here at 2 threads, peak RSS, and the ratios.
# A model written NAME+recompute runs mpilm with model.recompute = true (less
# memory, more compute); the PyTorch peer runs once per NAME.
# Environment: BENCH_MODELS (default "gpt-mini bert-mini gpt2-small gpt2-small+recompute"),
#   BENCH_STEPS (timed steps, default 8; 2 more warm up), MPILM, BUILD.
MPILM=${MPILM:-./mpilm}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
. tests/bench/bench_torch_env.sh
MODELS=${BENCH_MODELS:-gpt-mini bert-mini gpt2-small gpt2-small+recompute}
STEPS=${BENCH_STEPS:-8}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT

peak_line=$(sgemm_peak 2)
echo "$peak_line"
peak=$(echo "$peak_line" | sed -n 's/.*: \([0-9.]*\) GFLOP\/s.*/\1/p')

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# mpilm_run MODEL RANKS THREADS [--set ...] -> "tokens_per_s rss_mib params"
mpilm_run() {
  steps=$((STEPS + 2))
  log="$d/$1-$2x$3.log"
  if [ "$2" -gt 1 ]; then
    launch="mpirun --oversubscribe --bind-to none -np $2"
  else
    launch=""
  fi
  OMP_NUM_THREADS=$3 BLIS_NUM_THREADS=$3 $launch "$MPILM" train \
    --config "launch/configs/$1.ini" --set train.steps=$steps --set log.every=1 \
    --set train.micro_batches=$((2 / $2)) --set run.dir="$d/run-$1-$2" $EXTRA > "$log" 2>&1 || { tail -5 "$log" >&2; return 1; }
  tps=$(tail -n +3 "$d/run-$1-$2/metrics.jsonl" | sed 's/.*"tokens_per_s":\([0-9.]*\).*/\1/' | median)
  # all ranks' memory: the sum of the per-rank peaks the run prints at its end
  rss=$(sed -n 's/.*peak RSS per rank (MiB): //p' "$log" | tail -1 | tr ',' '\n' | awk -F': ' '{s += $2} END {print int(s)}')
  params=$(sed -n 's/.*model: \([0-9]*\) parameters.*/\1/p' "$log" | head -1)
  echo "$tps $rss $params"
}

printf '%-21s %12s %12s %7s %8s %8s %10s %10s %6s\n' model mpilm_tok/s torch_tok/s ratio mpilm_MFU torch_MFU mpilm_RSS torch_RSS RSS_x
for spec in $MODELS; do
  m=${spec%%+*} EXTRA=""
  [ "$spec" = "$m+recompute" ] && EXTRA="--set model.recompute=true"
  # mpilm on these 2 cores: 1 rank x 2 threads, or 2 ranks x 1 thread when
  # that is more than 5% faster (it holds two copies of the model); both with
  # a global batch of 2 micro-batches so the tokens per step match
  best=""
  layouts="1_2 2_1"
  case $m in gpt2-small|bert-base) layouts="1_2" ;; esac # two copies of a 124M model and its Adam state do not pay
  for lt in $layouts; do
    layout=$(echo "$lt" | tr _ ' ')
    r=$(mpilm_run "$m" $layout) || continue
    echo "mpilm $spec ranks x threads = $layout: $r (tokens/s, RSS MiB of all ranks, params)"
    if [ -z "$best" ] || awk "BEGIN { exit !($(echo "$r" | cut -d' ' -f1) > 1.05 * $(echo "$best" | cut -d' ' -f1)) }"; then best=$r; fi
  done
  [ -n "$best" ] || { echo "mpilm $m failed"; continue; }
  set -- $best
  m_tps=$1 m_rss=$2 params=$3
  if [ "$m" != "$t_model" ]; then
    t_out=$(torch_peer "$m" "$STEPS" 1 2) t_model=$m
    echo "$t_out"
  fi
  t_line=$(echo "$t_out" | awk '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      if (v["tokens_per_s"] + 0 > best) { best = v["tokens_per_s"] + 0; rss = v["peak_rss_mib"] } }
    END { if (best > 0) print best, rss }')
  case $m in gpt-mini) L=4 C=256 T=256 ;; bert-mini) L=4 C=256 T=128 ;; gpt2-small) L=12 C=768 T=256 ;; bert-base) L=12 C=768 T=128 ;; esac
  if [ -n "$t_line" ]; then
    set -- $t_line
    t_tps=$1 t_rss=$2
  else
    t_tps=0 t_rss=0
  fi
  awk -v m="$spec" -v mt="$m_tps" -v tt="$t_tps" -v mr="$m_rss" -v tr="$t_rss" -v p="$params" -v L=$L -v C=$C -v T=$T -v peak="$peak" 'BEGIN {
    fpt = 6 * p + 12 * L * C * T
    mm = peak > 0 ? 100 * mt * fpt / (peak * 1e9) : 0; tm = peak > 0 ? 100 * tt * fpt / (peak * 1e9) : 0
    printf "%-21s %12.0f %12.0f %7.2f %7.1f%% %7.1f%% %9dM %9dM %6.2f\n", m, mt, tt, (tt > 0 ? mt / tt : 0), mm, tm, mr, tr, (tr > 0 ? mr / tr : 0) }'
done
echo "targets: tokens/s ratio >= 1.25 (gpt-mini, bert-mini), >= 1.1 (gpt2-small); RSS_x <= 0.7"

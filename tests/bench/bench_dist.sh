#!/bin/sh
# dist: tokens/s of gpt-mini and bert-mini (shapes of launch/configs) on random
# data, 1 thread per rank, global batch 16 sequences (m = 8 micro-batches of 2
# per replica at dp = 1): 1 rank; pp=2 GPipe and 1F1B, and 1F1B with the same
# batch in m = 16 micro-batches of 1 (half the bubble, smaller GEMMs; the
# speed-up is still over the 1-rank run of 8 x 2, the faster 1-rank split on
# this machine in both precisions); dp=2 with ZeRO 0, 1, 2;
# on 4 ranks (oversubscribed on a 2-core machine) pp=2 x dp=2 and pp=4. Each
# line: the median step's tokens/s, the speed-up over 1 rank, the measured
# bubble (busiest stage) against the ideal (pp-1)/(m+pp-1), the prediction of
# the cost model (bench_scaling, docs/scaling.md) from measured per-layer
# times and ping-pong, and per rank the share of compute, p2p waits and
# collectives. Then the model's predictions for 8..512 ranks on a 100 Gb/s
# cluster for bert-base and gpt2-small (BENCH_CLUSTER=0 skips them).
# Steps per run: BENCH_DIST_STEPS (5). BENCH_PRECISIONS (default "fp32 bf16"):
# the whole series once per GEMM precision (bf16 speed-ups are over the bf16
# 1-rank run; the cost model is fp32's, so bf16 rows print no prediction).
BIN=${BUILD:-build}/tests/bench/bench_dist
MODEL=${BUILD:-build}/tests/bench/bench_scaling
# Ranks that fit the cores are bound one per core, as launch/mpirun.sh places them (unbound
# ranks of one node share a core now and then); more ranks than cores oversubscribe unbound.
# MPIRUN overrides both.
mpirun_for() {
  if [ -n "${MPIRUN:-}" ]; then echo "$MPIRUN"
  elif [ "$1" -le "$CORES" ]; then echo "mpirun --map-by slot:PE=1 --bind-to core"
  else echo "mpirun --oversubscribe --bind-to none"; fi
}
STEPS=${BENCH_DIST_STEPS:-5}
CORES=$(getconf _NPROCESSORS_ONLN)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1
[ -x "$BIN" ] && [ -x "$MODEL" ] || { echo "bench_dist: $BIN or $MODEL not built (make bench builds them)"; exit 1; }
echo "cores $CORES, load $(cut -d' ' -f1-3 /proc/loadavg)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
# run NP MODEL PP ZERO SCHEDULE M [B (2)] -> prints the figures; $tps = tokens/s
run() {
  $(mpirun_for "$1") -np "$1" "$BIN" "$2" "$3" "$4" "$5" "$6" "${7:-2}" "$STEPS" > "$out/run" 2>&1 || { cat "$out/run"; status=1; tps=0; return; }
  tps=$(sed -n 's/.*: \([0-9]*\) tokens\/s.*/\1/p' "$out/run" | head -1)
  dp=$(($1 / $3))
  pred=$(sed -n "s/^predict [a-z]*-mini pp=$3 dp=$dp zero=$4 m=$6 B=${7:-2}: \([0-9]*\) tokens\/s.*/\1/p" "$out/pred" | head -1)
  head -1 "$out/run" | sed 's/, rank 0 params.*//'
  awk -v t="$tps" -v b="${base:-0}" -v p="${pred:-0}" -v prec="$prec" 'BEGIN {
    if (b > 0) printf "  speed-up %.2fx over 1 rank;", t / b; else printf "  the 1-rank baseline;"
    if (p > 0) printf " model predicts %s tokens/s (measured / predicted %.2f)\n", p, t / p
    else if (prec == "bf16") printf " no prediction (the cost model is fp32'"'"'s)\n"
    else printf " no prediction (the cost model is run for m = 8 micro-batches of 2)\n" }'
  tail -n +2 "$out/run"
}
for prec in ${BENCH_PRECISIONS:-fp32 bf16}; do
export BENCH_PRECISION=$prec
echo "--- GEMM precision $prec"
for model in gpt bert; do
  if [ "$prec" = fp32 ]; then
    $(mpirun_for 2) -np 2 "$MODEL" $model-mini 2 8 "$CORES" > "$out/pred" 2>&1 || { cat "$out/pred"; status=1; }
    grep '^measured' "$out/pred"
  else
    : > "$out/pred"
  fi
  base=
  run 1 $model 1 0 gpipe 8
  base=$tps
  run 2 $model 2 0 gpipe 8
  run 2 $model 2 0 1f1b 8
  run 2 $model 2 0 1f1b 16 1
  for zero in 0 1 2; do run 2 $model 1 $zero 1f1b 4; done
  run 4 $model 2 2 1f1b 4
  run 4 $model 4 0 1f1b 8
done
done
if [ "${BENCH_CLUSTER:-1}" != 0 ]; then
  "$MODEL" gpt2-small 1 8 1 cluster || status=1
  "$MODEL" bert-base 4 8 1 cluster || status=1
fi
exit $status

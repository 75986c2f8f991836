#!/bin/sh
# dist: tokens/s of gpt-mini and bert-mini (shapes of launch/configs) on random
# data, 1 thread per rank: 1 rank; pp=2 GPipe and 1F1B with m = 8; dp=2 with
# ZeRO 0, 1, 2. The measured bubble (idle share of the step, mean over ranks)
# is printed next to the ideal (pp-1)/(m+pp-1). Steps: BENCH_DIST_STEPS (3).
BIN=${BUILD:-build}/tests/bench/bench_dist
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
STEPS=${BENCH_DIST_STEPS:-3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1
[ -x "$BIN" ] || { echo "bench_dist: $BIN not built (make bench builds it)"; exit 1; }
echo "cores $(getconf _NPROCESSORS_ONLN), load $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
for model in gpt bert; do
  $MPIRUN -np 1 "$BIN" $model 1 0 gpipe 8 2 "$STEPS" || status=1
  $MPIRUN -np 2 "$BIN" $model 2 0 gpipe 8 2 "$STEPS" || status=1
  $MPIRUN -np 2 "$BIN" $model 2 0 1f1b 8 2 "$STEPS" || status=1
  for zero in 0 1 2; do
    $MPIRUN -np 2 "$BIN" $model 1 $zero gpipe 4 2 "$STEPS" || status=1
  done
done
exit $status

#!/bin/sh
# One frozen rank never hangs the job (the watchdog, base/watchdog.h): 2 ranks,
# rank 1 frozen (a) at a step boundary (it sleeps there far longer than
# dist.hang_timeout, as a rank stopped by SIGSTOP between steps: rank 0 waits
# in the boundary's collective), (b) by SIGSTOP in the middle of a checkpoint
# save (MPILM_TEST_STOP=ckpt:after_shard: rank 0 waits for its pieces), (c) by
# SIGSTOP at a random moment from outside. Each job must end within the
# deadline + 25 s, exit non-zero, and (a), (b) name the stretch that did not
# finish. Before the watchdog covered them, (a) and (b) hung forever.
MPILM=${MPILM:-./mpilm}
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
export MPILM_PEAK_GFLOPS=${MPILM_PEAK_GFLOPS:-1}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL watchdog_stop: $*"; exit 1; }
. tests/common/tiny.sh
tiny_ini "$d/tiny.ini" vocab_size=128 steps=50 || exit 1
# run NAME LIMIT RANK1_ENV... -- options: rank 0 plain, rank 1 with RANK1_ENV; prints the exit status and seconds
run() {
  name=$1 limit=$2
  shift 2
  env1=""
  while [ "$1" != -- ]; do env1="$env1 $1"; shift; done
  shift
  start=$(date +%s)
  timeout $((limit + 60)) $MPIRUN -np 1 "$MPILM" train --config "$d/tiny.ini" --set run.dir="$d/$name" "$@" : \
    -np 1 env $env1 "$MPILM" train --config "$d/tiny.ini" --set run.dir="$d/$name" "$@" > "$d/$name.log" 2>&1
  rc=$?
  took=$(($(date +%s) - start))
  [ $rc -ne 0 ] || { tail -5 "$d/$name.log"; fail "$name: the job exited 0"; }
  [ $rc -ne 124 ] || { tail -5 "$d/$name.log"; fail "$name: the job hung (killed by timeout after $((limit + 60)) s)"; }
  [ $took -le $((limit + 25)) ] || fail "$name: the job took $took s to end (deadline $limit s + 25)"
  echo "$name: ended in $took s with exit $rc"
}
# (a) rank 1 sleeps 600 s after step 2's compute, before the step boundary
run boundary 3 MPILM_TEST_STEP_DELAY=600 -- --set dist.hang_timeout=3
grep -q "watchdog: the step boundary after step 1 (the checkpoint decision) did not finish within 3 s" \
  "$d/boundary.log" || { cat "$d/boundary.log"; fail "boundary: no watchdog message naming the step boundary"; }
# (b) rank 1 stops itself after writing its checkpoint piece at step 2
run save 3 MPILM_TEST_STOP=ckpt:after_shard -- --set ckpt.every_steps=2 --set ckpt.io_timeout=3
grep -q "watchdog: the checkpoint save of step 2 did not finish within 3 s" "$d/save.log" ||
  { cat "$d/save.log"; fail "save: no watchdog message naming the checkpoint save"; }
[ ! -e "$d/save/step-0000002" ] || fail "save: a checkpoint of step 2 was committed although a rank never finished it"
# (c) SIGSTOP from outside at some moment of a run
$MPIRUN -np 2 env MPILM_TEST_STEP_DELAY=0.05 "$MPILM" train --config "$d/tiny.ini" --set run.dir="$d/ext" \
  --set train.steps=100000 --set dist.hang_timeout=3 --set ckpt.every_steps=5 --set ckpt.io_timeout=3 \
  > "$d/ext.log" 2>&1 &
job=$!
i=0
while ! grep -q "step 3/" "$d/ext.log" 2>/dev/null; do sleep 0.2; i=$((i + 1)); [ $i -lt 300 ] || fail "ext: no step 3"; done
victim=$(pgrep -f "run.dir=$d/ext" | while read -r p; do [ "$(cat /proc/$p/comm)" = mpilm ] && echo "$p"; done | tail -1)
[ -n "$victim" ] || fail "ext: no rank process found"
start=$(date +%s)
kill -STOP "$victim"
i=0
while kill -0 "$job" 2>/dev/null; do sleep 1; i=$((i + 1)); [ $i -lt 120 ] || { kill -KILL "$victim" 2>/dev/null; fail "ext: the job hung after SIGSTOP of a rank"; }; done
wait "$job"; rc=$?
took=$(($(date +%s) - start))
[ $rc -ne 0 ] || fail "ext: exit 0 after a rank was frozen"
[ $took -le 28 ] || fail "ext: the job took $took s to end after the SIGSTOP (deadline 3 s + 25)"
grep -q "watchdog\|exceeded dist.hang_timeout" "$d/ext.log" || { tail -5 "$d/ext.log"; fail "ext: no watchdog message"; }
echo "ext: SIGSTOP of a rank ended the job in $took s with exit $rc"
echo "watchdog_stop: ok"

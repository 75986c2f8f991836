#!/bin/sh
# SIGTERM, SIGINT and SIGUSR1 all mean "checkpoint and stop": sent to a rank
# directly (one process) or to launch/mpirun.sh (2 ranks), the job writes a
# checkpoint of the step, exits 75, and a resumed run ends exactly as an
# uninterrupted one (same final loss, same final shard files).
# Plain mpirun forwards SIGUSR1 (exit 75). On SIGTERM/SIGINT Open MPI ends
# the job itself (SIGTERM to the ranks, SIGKILL one second later, exit status
# 1 whatever the ranks return; docs/usage.md, "Preemption"), so that case is
# not tested here: the launcher is the way to send those.
. tests/common/ckpt_common.sh
fail() { echo "FAIL preempt_signals: $*"; exit 1; }
steps=60
final_loss() { tail -1 "$1/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/'; }
REPO=$(pwd)
case $MPILM in /*) ABS_MPILM=$MPILM ;; *) ABS_MPILM=$REPO/$MPILM ;; esac

# start HOW RUN: training of $steps steps in the background; $pid = the process to signal
start() {
  how=$1 r=$2
  case $how in
    direct) MPILM_TEST_STEP_DELAY=0.05 "$MPILM" train --config "$d/tiny.ini" --set train.steps=$steps \
              --set run.dir="$r" > "$r.log" 2>&1 & ;;
    mpirun) MPILM_TEST_STEP_DELAY=0.05 $MPIRUN -np 2 -x MPILM_TEST_STEP_DELAY \
              "$MPILM" train --config "$d/tiny.ini" --set train.micro_batches=1 --set train.steps=$steps \
              --set run.dir="$r" > "$r.log" 2>&1 & ;;
    # a background job starts with SIGINT ignored, which a shell cannot trap:
    # give the launcher the default disposition a terminal's foreground job has
    launcher) MPILM=$ABS_MPILM MPILM_TEST_STEP_DELAY=0.05 env --default-signal=INT sh launch/mpirun.sh -n 2 -t 1 "$d/tiny.ini" \
              --set train.micro_batches=1 --set train.steps=$steps --set run.dir="$r" > "$r.log" 2>&1 & ;;
  esac
  pid=$!
}

# preempt HOW SIGNAL EXPECTED_STATUS: start, signal after 5 logged steps, check status, checkpoint, exact resume
preempt() {
  how=$1 sig=$2 want=$3 r=$d/$1-$2
  np=2
  [ "$how" = direct ] && np=1
  start "$how" "$r"
  i=0
  while [ "$(cat "$r/metrics.jsonl" 2> /dev/null | wc -l)" -lt 5 ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
  kill -s "$sig" $pid
  wait $pid
  rc=$?
  case " $want " in *" $rc "*) ;; *) tail -5 "$r.log"; fail "$how $sig: exit $rc (expected $want)" ;; esac
  n=$(sed -n "s/.*preempted by SIG$sig at step \([0-9]*\): checkpoint written, exit 75.*/\1/p" "$r.log" | head -1)
  if [ "$how" = launcher ]; then
    # the launcher passes every signal on as SIGUSR1
    n=$(sed -n 's/.*preempted by SIGUSR1 at step \([0-9]*\): checkpoint written, exit 75.*/\1/p' "$r.log" | head -1)
  fi
  [ -n "$n" ] || { tail -5 "$r.log"; fail "$how $sig: no preemption line"; }
  [ "$n" -lt $steps ] || fail "$how $sig: stopped at step $n (expected before $steps)"
  [ "$(readlink "$r/latest")" = "$(printf 'step-%07d' "$n")" ] || fail "$how $sig: latest is $(readlink "$r/latest") (expected step $n)"
  train $np "$r-resume.log" --set train.micro_batches=$((3 - np)) --set train.steps=$steps --set run.dir="$r" \
    --resume auto || { tail -5 "$r-resume.log"; fail "$how $sig: resume"; }
  ref=$d/ref$np
  [ "$(final_loss "$r")" = "$(final_loss "$ref")" ] || fail "$how $sig: final loss $(final_loss "$r") (uninterrupted $(final_loss "$ref"))"
  for f in "$ref/step-$(printf %07d $steps)"/shard-*.bin; do
    cmp "$f" "$r/step-$(printf %07d $steps)/$(basename "$f")" || fail "$how $sig: final $(basename "$f") differs"
  done
  echo "$how $sig: checkpoint at step $n, exit $rc, resumed to the uninterrupted result"
}

env --default-signal=INT true 2> /dev/null || { echo "preempt_signals: skipped: env --default-signal (coreutils >= 8.31) is missing"; exit 77; }
train 1 "$d/ref1.log" --set train.steps=$steps --set run.dir="$d/ref1" || fail "reference run"
train 2 "$d/ref2.log" --set train.micro_batches=1 --set train.steps=$steps --set run.dir="$d/ref2" || fail "reference run np 2"
for s in TERM INT USR1; do preempt direct $s 75; done
for s in TERM INT USR1; do preempt launcher $s 75; done
preempt mpirun USR1 75
echo "preempt_signals: ok"

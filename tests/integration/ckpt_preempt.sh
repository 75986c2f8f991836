#!/bin/sh
# Preemption: SIGUSR1 or SIGTERM during training → every rank stops at the
# next step boundary, writes a checkpoint of that step, exits 75, and a resumed
# run ends exactly as an uninterrupted one (same final loss, same shards).
# 1 rank: SIGUSR1, and SIGTERM sent twice (the second changes nothing);
# 2 ranks: SIGUSR1 to mpirun, which forwards it to the ranks.
# A second signal during the save changes nothing (docs/usage.md): the save is
# held open by MPILM_TEST_PAUSE=ckpt:after_shard:2 (each rank has written its
# shard, nothing is renamed yet), the second signal (SIGUSR1 after SIGTERM on 1
# rank, SIGUSR1 twice on 2) arrives then: one preemption line naming the first
# signal, exit 75, a checkpoint that verifies, the uninterrupted result.
. tests/common/ckpt_common.sh
fail() { echo "FAIL ckpt_preempt: $*"; exit 1; }
steps=60
final_loss() { tail -1 "$1/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/'; }

# preempt NAME SIGNALS NP [SECOND]: start, signal after 5 logged steps (and SECOND
# while the save is paused), expect 75, resume, compare with the reference
preempt() {
  name=$1 sigs=$2 np=$3 second=${4:-} r=$d/$1
  pause=""
  [ -z "$second" ] || pause=ckpt:after_shard:2
  if [ "$np" = 1 ]; then
    MPILM_TEST_STEP_DELAY=0.05 MPILM_TEST_PAUSE=$pause "$MPILM" train --config "$d/tiny.ini" --set train.steps=$steps \
      --set run.dir="$r" > "$d/$name.log" 2>&1 &
  else
    MPILM_TEST_STEP_DELAY=0.05 MPILM_TEST_PAUSE=$pause $MPIRUN -np "$np" -x MPILM_TEST_STEP_DELAY -x MPILM_TEST_PAUSE \
      "$MPILM" train --config "$d/tiny.ini" --set train.micro_batches=1 --set train.steps=$steps --set run.dir="$r" \
      > "$d/$name.log" 2>&1 &
  fi
  pid=$!
  i=0
  while [ "$(cat "$r/metrics.jsonl" 2> /dev/null | wc -l)" -lt 5 ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
  for s in $sigs; do kill -s "$s" $pid; done
  if [ -n "$second" ]; then
    # every rank announces its pause after writing its shard, before any rename
    i=0
    while [ "$(grep -c "mpilm: test pause: 2 s at ckpt:after_shard" "$d/$name.log")" -lt "$np" ] && [ $i -lt 600 ]; do
      sleep 0.02; i=$((i + 1))
    done
    [ $i -lt 600 ] || { kill -9 $pid; fail "$name: the save never paused"; }
    ls -d "$r"/.step-*.tmp > /dev/null 2>&1 || fail "$name: no save in progress when the second signal is sent"
    before=$(readlink "$r/latest")
    kill -s "$second" $pid
  fi
  wait $pid
  rc=$?
  [ $rc -eq 75 ] || { tail -5 "$d/$name.log"; fail "$name: exit $rc after $sigs $second (expected 75)"; }
  n=$(sed -n 's/.*preempted by SIG[A-Z0-9]* at step \([0-9]*\): checkpoint written, exit 75.*/\1/p' "$d/$name.log" | head -1)
  sig=$(echo "$sigs" | cut -d' ' -f1)
  grep -q "preempted by SIG$sig at step $n: checkpoint written, exit 75" "$d/$name.log" || fail "$name: no preemption line for SIG$sig"
  [ "$(grep -c "preempted by" "$d/$name.log")" -eq 1 ] || fail "$name: more than one preemption line"
  [ -n "$n" ] && [ "$n" -lt $steps ] || fail "$name: stopped at step '$n' (expected before $steps)"
  [ "$(readlink "$r/latest")" = "$(printf 'step-%07d' "$n")" ] || fail "$name: latest is $(readlink "$r/latest") (expected step $n)"
  if [ -n "$second" ]; then
    [ "$before" != "$(readlink "$r/latest")" ] || fail "$name: the second signal came after the save"
    "$MPILM" inspect "$r/latest" > "$d/$name-inspect.log" 2>&1 || { tail -3 "$d/$name-inspect.log"; fail "$name: the checkpoint does not verify"; }
    ! ls -d "$r"/.step-*.tmp > /dev/null 2>&1 || fail "$name: a temporary save directory is left"
  fi
  if [ "$np" = 1 ]; then
    "$MPILM" train --config "$d/tiny.ini" --set train.steps=$steps --set run.dir="$r" --resume auto > "$d/$name-r.log" 2>&1
  else
    $MPIRUN -np "$np" "$MPILM" train --config "$d/tiny.ini" --set train.micro_batches=1 --set train.steps=$steps \
      --set run.dir="$r" --resume auto > "$d/$name-r.log" 2>&1
  fi || { tail -5 "$d/$name-r.log"; fail "$name: resume"; }
  ref=$d/ref$np
  [ "$(final_loss "$r")" = "$(final_loss "$ref")" ] || fail "$name: final loss $(final_loss "$r") (uninterrupted $(final_loss "$ref"))"
  for f in "$ref/step-$(printf %07d $steps)"/shard-*.bin; do
    cmp "$f" "$r/step-$(printf %07d $steps)/$(basename "$f")" || fail "$name: final $(basename "$f") differs"
  done
  echo "$name: preempted at step $n with exit 75, resumed to the uninterrupted result"
}

train 1 "$d/ref1.log" --set train.steps=$steps --set run.dir="$d/ref1" || fail "reference run"
train 2 "$d/ref2.log" --set train.micro_batches=1 --set train.steps=$steps --set run.dir="$d/ref2" || fail "reference run np 2"
preempt usr1 USR1 1
preempt term "TERM TERM" 1
preempt usr1-np2 USR1 2
preempt term-then-usr1-in-save TERM 1 USR1
preempt usr1-np2-usr1-in-save USR1 2 USR1
echo "ckpt_preempt: ok"

#!/bin/sh
# Crash safety of the save protocol: the process killed at each named phase of
# a save leaves the previous checkpoint and latest intact and resumable (to the
# same final shards as an uninterrupted run); a full disk (test hook) ends the
# run with a clear error (on_error = stop) or a warning (continue), the
# previous checkpoint intact, on 1 and 2 ranks; keep = 2 leaves 2 step
# directories; every_minutes saves on rank 0's clock.
. tests/common/ckpt_common.sh
fail() { echo "FAIL ckpt_crash: $*"; exit 1; }
ref=$d/ref
train 1 "$d/ref.log" --set ckpt.every_steps=10 --set run.dir="$ref" || { tail -5 "$d/ref.log"; fail "reference run"; }
at_step10() { # a run directory as an interrupted run leaves it after its step-10 checkpoint
  rm -rf "$1" && mkdir "$1" && cp -r "$ref/step-0000010" "$1/" && ln -s step-0000010 "$1/latest"
  head -10 "$ref/metrics.jsonl" > "$1/metrics.jsonl"
}
latest_is() { [ "$(readlink "$1/latest")" = "$2" ] || fail "$3: latest is $(readlink "$1/latest") (expected $2)"; }

for phase in ckpt:before_manifest ckpt:before_rename ckpt:before_latest; do
  c=$d/crash
  at_step10 "$c"
  MPILM_TEST_CRASH=$phase "$MPILM" train --config "$d/tiny.ini" --set run.dir="$c" --resume auto > "$d/c.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] || fail "$phase: the run was not killed"
  latest_is "$c" step-0000010 "$phase"
  "$MPILM" inspect "$c" > "$d/i.log" 2>&1 || { cat "$d/i.log"; fail "$phase: latest does not verify after the crash"; }
  grep -q "step 10," "$d/i.log" || fail "$phase: latest is not step 10"
  "$MPILM" train --config "$d/tiny.ini" --set run.dir="$c" --resume auto > "$d/c.log" 2>&1 ||
    { tail -5 "$d/c.log"; fail "$phase: resume after the crash"; }
  cmp "$c/step-0000020/shard-00000.bin" "$ref/step-0000020/shard-00000.bin" || fail "$phase: resumed run differs"
  latest_is "$c" step-0000020 "$phase (after resume)"
  [ -z "$(ls -A "$c" | grep '^\.' | grep -v '^\.lock$')" ] || fail "$phase: temporary entries left: $(ls -A "$c")"
  echo "$phase: previous checkpoint intact, resumed to the same result"
done

# full disk, on_error = stop: error naming the file and what to do, nothing half-written
c=$d/full
at_step10 "$c"
out=$(MPILM_TEST_CKPT_FAIL=write "$MPILM" train --config "$d/tiny.ini" --set run.dir="$c" --resume auto 2>&1); rc=$?
[ $rc -eq 1 ] || fail "disk full (stop): exit $rc (expected 1)"
echo "$out" | grep -q "shard-00000.bin: write failed (No space left on device); free space or set run.dir" ||
  { echo "$out" | tail -3; fail "disk full (stop): message"; }
latest_is "$c" step-0000010 "disk full (stop)"
[ "$(ls -A "$c")" = ".lock
latest
metrics.jsonl
step-0000010" ] || fail "disk full (stop): left $(ls -A "$c")"
# on_error = continue: a warning, training goes on to the end, where the failed
# final save is an error naming the last valid checkpoint
at_step10 "$c"
out=$(MPILM_TEST_CKPT_FAIL=write "$MPILM" train --config "$d/tiny.ini" --set run.dir="$c" --resume auto \
  --set ckpt.on_error=continue --set ckpt.every_steps=5 2>&1); rc=$?
[ $rc -eq 1 ] || fail "disk full (continue): a failed final save ended with exit $rc (expected 1)"
[ "$(echo "$out" | grep -c "training goes on (ckpt.on_error = continue)")" -eq 1 ] || fail "disk full (continue): expected 1 warning"
echo "$out" | grep -q "final checkpoint (step 20) was not written.*the last valid checkpoint is $c/step-0000010" ||
  { echo "$out" | tail -3; fail "disk full (continue): the final error does not name the last valid checkpoint"; }
[ "$(wc -l < "$c/metrics.jsonl")" -eq 20 ] || fail "disk full (continue): training did not go on to step 20"
latest_is "$c" step-0000010 "disk full (continue)"
# two ranks, only rank 1's disk full: every rank stops with rank 1's message, no hang
at_step10 "$c"
out=$(MPILM_TEST_CKPT_FAIL=write:1 timeout 120 $MPIRUN -np 2 -x MPILM_TEST_CKPT_FAIL "$MPILM" train --config "$d/tiny.ini" \
  --set run.dir="$c" --resume auto --set train.micro_batches=1 2>&1); rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "disk full on rank 1: exit $rc (expected an error, not a hang)"
echo "$out" | grep -q "shard-00001.bin: write failed" || { echo "$out" | tail -3; fail "disk full on rank 1: message"; }
latest_is "$c" step-0000010 "disk full on rank 1"
echo "disk full: stop, continue and one rank of two handled"

# keep = 2
train 1 "$d/k.log" --set ckpt.every_steps=5 --set ckpt.keep=2 --set run.dir="$d/keep" || fail "keep run"
[ "$(ls "$d/keep" | grep -c '^step-')" -eq 2 ] && [ -d "$d/keep/step-0000015" ] && [ -d "$d/keep/step-0000020" ] ||
  fail "keep = 2 left: $(ls "$d/keep")"
# every_minutes: 0.01 min = 600 ms, steps sleep 300 ms: a save every second step (the
# margin is a step's own time, under 300 ms even with sanitizers on a loaded machine;
# 50 ms steps against 60 ms saved at every step there)
MPILM_TEST_STEP_DELAY=0.3 "$MPILM" train --config "$d/tiny.ini" --set train.steps=8 --set ckpt.every_minutes=0.01 \
  --set ckpt.keep=100 --set run.dir="$d/min" > "$d/m.log" 2>&1 || fail "every_minutes run"
n=$(ls "$d/min" | grep -c '^step-')
[ "$n" -ge 3 ] && [ "$n" -le 5 ] || fail "every_minutes = 0.01 with 300 ms steps wrote $n checkpoints in 8 steps (expected 3 to 5)"
echo "ckpt_crash: ok"

#!/bin/sh
# A run directory loses nothing and hides nothing:
# - train without --resume into a directory that holds a run is refused
#   (exit 2, naming the step found, --resume auto and --overwrite); nothing is
#   touched;
# - --overwrite removes the old run's checkpoints, latest and metrics.jsonl
#   (not other files) and starts over; latest names a valid checkpoint;
# - pruning removes only this run's checkpoints: one of another run (another
#   run id) or without a run id (an older mpilm) stays, and still loads;
# - a second run while one holds the directory's lock is refused at once
#   (exit 2, naming the directory and the holder), on 1 and on 2 ranks;
# - --resume auto that finds checkpoints but none valid fails (exit 1) naming
#   each one and why, unless ckpt.if_none_valid = restart; an empty directory
#   starts fresh;
# - ckpt.on_error = continue whose final save fails exits 1 saying the final
#   checkpoint was not written and which one is the last valid.
. tests/common/ckpt_common.sh
fail() { echo "FAIL rundir_safety: $*"; exit 1; }
has() { echo "$1" | grep -q -- "$2" || fail "$3: the message lacks '$2': $1"; }
latest_is() { [ "$(readlink "$1/latest")" = "$2" ] || fail "$3: latest is '$(readlink "$1/latest")' (expected $2)"; }
T="--set train.steps=4 --set ckpt.every_steps=2"

# --- a second run without --resume is refused and changes nothing
r=$d/a
train 1 "$d/a1.log" $T --set run.dir="$r" || { tail -5 "$d/a1.log"; fail "first run"; }
echo "keep me" > "$r/notes.txt"
cp "$r/metrics.jsonl" "$d/a-metrics"
msg=$("$MPILM" train --config "$d/tiny.ini" --set train.steps=2 --set run.dir="$r" 2>&1); rc=$?
[ $rc -eq 2 ] || fail "a second run into $r without --resume was not refused with exit 2 (exit $rc): $msg"
has "$msg" "$r" "refusal"
has "$msg" "step 4" "refusal"
has "$msg" "--resume auto" "refusal"
has "$msg" "--overwrite" "refusal"
latest_is "$r" step-0000004 "after the refusal"
[ -d "$r/step-0000002" ] && [ -d "$r/step-0000004" ] || fail "the refused run changed the checkpoints: $(ls "$r")"
cmp -s "$r/metrics.jsonl" "$d/a-metrics" || fail "the refused run changed metrics.jsonl"
msg=$("$MPILM" train --config "$d/tiny.ini" --set run.dir="$r" --resume auto --overwrite 2>&1); rc=$?
[ $rc -eq 2 ] || fail "--resume with --overwrite was not refused with exit 2 (exit $rc): $msg"
echo "refused: a second run without --resume (exit 2, step 4, --resume auto / --overwrite)"

# --- --overwrite starts over: the old checkpoints, latest and metrics go, other files stay
train 1 "$d/a2.log" --set train.steps=2 --set ckpt.every_steps=1 --set run.dir="$r" --overwrite ||
  { tail -5 "$d/a2.log"; fail "--overwrite"; }
grep -q "overwrite: removed" "$d/a2.log" || fail "--overwrite does not say what it removed: $(cat "$d/a2.log")"
[ ! -e "$r/step-0000004" ] || fail "--overwrite left the old step-0000004"
latest_is "$r" step-0000002 "after --overwrite"
"$MPILM" inspect "$r" > /dev/null 2>&1 || fail "latest after --overwrite does not verify"
[ "$(sed -n 's/.*"step":\([0-9]*\),.*/\1/p' "$r/metrics.jsonl" | tr '\n' ' ')" = "1 2 " ] ||
  fail "metrics.jsonl after --overwrite is not steps 1 2: $(cat "$r/metrics.jsonl")"
[ "$(cat "$r/notes.txt")" = "keep me" ] || fail "--overwrite removed a file mpilm did not write"
grep -q '"run_id"' "$r/step-0000002/manifest.json" || fail "the manifest has no run_id"
echo "--overwrite: old run removed, notes.txt kept, latest valid"

# --- pruning keeps checkpoints this run did not write
f=$d/f
train 1 "$d/o.log" --set train.steps=3 --set ckpt.every_steps=3 --set run.dir="$d/other" || fail "the other run"
train 1 "$d/f1.log" $T --set ckpt.keep=2 --set run.dir="$f" || { tail -5 "$d/f1.log"; fail "run f"; }
id_f=$(sed -n 's/.*"run_id":[^"]*"\([0-9a-f]*\)".*/\1/p' "$f/step-0000004/manifest.json")
id_o=$(sed -n 's/.*"run_id":[^"]*"\([0-9a-f]*\)".*/\1/p' "$d/other/step-0000003/manifest.json")
[ -n "$id_f" ] && [ "$id_f" != "$id_o" ] || fail "two runs have the run ids '$id_f' and '$id_o' (expected two different ids)"
cp -r "$d/other/step-0000003" "$f/step-0000003"              # another run's checkpoint
cp -r "$d/other/step-0000003" "$f/step-0000001"              # a checkpoint of an older mpilm: no run id
sed -i '/"run_id"/d' "$f/step-0000001/manifest.json"
"$MPILM" inspect "$f/step-0000001" > /dev/null 2>&1 || fail "a manifest without run_id does not verify"
train 1 "$d/f2.log" --set train.steps=8 --set ckpt.every_steps=2 --set ckpt.keep=2 --set run.dir="$f" --resume auto ||
  { tail -5 "$d/f2.log"; fail "resume of run f"; }
grep -q "resumed from .*step-0000004 (step 4)" "$d/f2.log" || fail "run f did not resume from its step 4"
[ "$(ls -d "$f"/step-* | xargs -n1 basename | tr '\n' ' ')" = "step-0000001 step-0000003 step-0000006 step-0000008 " ] ||
  fail "after pruning with keep 2: $(ls "$f") (expected step-0000001 and 3 of other runs, this run's 6 and 8)"
grep -q "\"$id_f\"" "$f/step-0000008/manifest.json" || fail "the resumed run changed its run id"
latest_is "$f" step-0000008 "after pruning"
train 1 "$d/f3.log" --set train.steps=5 --set data.random_samples=0 --set run.dir="$d/from-old" \
  --resume "$f/step-0000001" || { tail -5 "$d/f3.log"; fail "resume of a checkpoint without run id"; }
echo "pruning: checkpoints of another run and without run id kept; the resumed run keeps its id"

# --- a run directory in use: refused at once
l=$d/l
mkdir -p "$l"
msg=$(flock "$l/.lock" "$MPILM" train --config "$d/tiny.ini" --set train.steps=2 --set run.dir="$l" 2>&1); rc=$?
[ $rc -eq 2 ] || fail "a run while another process holds $l/.lock was not refused with exit 2 (exit $rc): $msg"
has "$msg" "$l" "lock refusal"
has "$msg" "in use" "lock refusal"
[ ! -e "$l/metrics.jsonl" ] || fail "the refused run wrote metrics.jsonl"
MPILM_TEST_STEP_DELAY=0.2 "$MPILM" train --config "$d/tiny.ini" --set train.steps=200 --set run.dir="$l" \
  > "$d/l1.log" 2>&1 &
first=$!
i=0
while [ ! -s "$l/metrics.jsonl" ] && [ $i -lt 300 ] && kill -0 $first 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
[ -s "$l/metrics.jsonl" ] || { kill $first; fail "the first run did not start training: $(tail -5 "$d/l1.log")"; }
for np in 1 2; do
  if [ $np = 1 ]; then msg=$(timeout 60 "$MPILM" train --config "$d/tiny.ini" --set run.dir="$l" --resume auto 2>&1)
  else msg=$(timeout 60 $MPIRUN -np 2 "$MPILM" train --config "$d/tiny.ini" --set train.micro_batches=1 \
    --set run.dir="$l" --resume auto 2>&1); fi; rc=$?
  [ $rc -eq 2 ] || { kill $first; fail "np $np: a concurrent run was not refused with exit 2 (exit $rc): $msg"; }
  has "$msg" "$l" "np $np: concurrent refusal"
  has "$msg" "pid $first" "np $np: concurrent refusal"
done
kill -0 $first 2>/dev/null || fail "the first run ended while the second was refused: $(tail -5 "$d/l1.log")"
kill $first
wait $first
bad=$(grep -v '^{"step":[0-9]*,"loss":[^{}]*}$' "$l/metrics.jsonl") && fail "metrics.jsonl has lines that are not one JSON object: $bad"
echo "lock: a concurrent run refused at once on 1 and 2 ranks, naming the holder"

# --- --resume auto: checkpoints but none valid
c=$d/c
train 1 "$d/c1.log" $T --set run.dir="$c" || fail "run c"
for s in 2 4; do printf 'X' | dd of="$c/step-000000$s/shard-00000.bin" bs=1 seek=100 conv=notrunc 2>/dev/null; done
msg=$("$MPILM" train --config "$d/tiny.ini" --set train.steps=6 --set run.dir="$c" --resume auto 2>&1); rc=$?
[ $rc -eq 1 ] || fail "--resume auto with every checkpoint corrupt did not fail with exit 1 (exit $rc): $msg"
has "$msg" "step-0000002" "none valid"
has "$msg" "step-0000004" "none valid"
has "$msg" "checksum mismatch" "none valid"
has "$msg" "ckpt.if_none_valid = restart" "none valid"
rm -rf "$c/step-0000002" "$c/step-0000004"                    # latest dangling, as pruning left it before
msg=$("$MPILM" train --config "$d/tiny.ini" --set train.steps=6 --set run.dir="$c" --resume auto 2>&1); rc=$?
[ $rc -eq 1 ] || fail "--resume auto with a dangling latest did not fail with exit 1 (exit $rc): $msg"
has "$msg" "latest" "dangling latest"
train 1 "$d/c2.log" --set train.steps=2 --set run.dir="$c" --resume auto --set ckpt.if_none_valid=restart ||
  { tail -5 "$d/c2.log"; fail "if_none_valid = restart"; }
grep -q "starting from scratch" "$d/c2.log" || fail "if_none_valid = restart does not say it starts from scratch"
latest_is "$c" step-0000002 "after the restart"
# a restart over this run's corrupt step-2: the new run's step-2 takes its place,
# the old one is kept as step-0000002.replaced-RUNID, never deleted
old_id=$(sed -n 's/.*"run_id":[[:space:]]*"\([0-9a-f]*\)".*/\1/p' "$c/step-0000002/manifest.json")
[ -n "$old_id" ] || fail "no run_id in $c/step-0000002/manifest.json"
printf 'X' | dd of="$c/step-0000002/shard-00000.bin" bs=1 seek=100 conv=notrunc 2>/dev/null
train 1 "$d/c4.log" --set train.steps=2 --set run.dir="$c" --resume auto --set ckpt.if_none_valid=restart ||
  { tail -5 "$d/c4.log"; fail "the second restart"; }
[ -f "$c/step-0000002.replaced-$old_id/manifest.json" ] ||
  { ls -la "$c"; fail "the corrupt step-2 of the earlier run was not kept as step-0000002.replaced-$old_id"; }
new_id=$(sed -n 's/.*"run_id":[[:space:]]*"\([0-9a-f]*\)".*/\1/p' "$c/step-0000002/manifest.json")
[ -n "$new_id" ] && [ "$new_id" != "$old_id" ] || fail "step-0000002 is not the new run's (run ids $old_id, $new_id)"
grep -q "belonged to another run (run id $old_id); kept as" "$d/c4.log" || fail "no warning about the kept step"
latest_is "$c" step-0000002 "after the second restart"
train 1 "$d/c3.log" --set train.steps=2 --set run.dir="$d/new" --resume auto || fail "--resume auto in a new directory"
grep -q "starting from scratch" "$d/c3.log" || fail "--resume auto in a new directory does not say it starts fresh"
echo "--resume auto: none valid fails naming each; restart on request; a new directory starts fresh"

# --- ckpt.on_error = continue and a failing final save
e=$d/e
msg=$(MPILM_TEST_CKPT_FAIL=write "$MPILM" train --config "$d/tiny.ini" $T --set ckpt.on_error=continue \
  --set run.dir="$e" 2>&1); rc=$?
[ $rc -eq 1 ] || fail "on_error = continue with every save failing did not exit 1 (exit $rc): $msg"
has "$msg" "final checkpoint (step 4) was not written" "final save failed"
has "$msg" "no valid checkpoint" "final save failed"
train 1 "$d/e1.log" --set train.steps=2 --set run.dir="$e" --overwrite || fail "run e"
msg=$(MPILM_TEST_CKPT_FAIL=write timeout 120 $MPIRUN -np 2 "$MPILM" train --config "$d/tiny.ini" $T \
  --set train.micro_batches=1 --set ckpt.on_error=continue --set run.dir="$e" --resume auto 2>&1); rc=$?
[ $rc -eq 1 ] || fail "np 2: on_error = continue with a failing final save did not exit 1 (exit $rc): $msg"
has "$msg" "final checkpoint (step 4) was not written" "np 2: final save failed"
has "$msg" "$e/step-0000002" "np 2: final save failed"
latest_is "$e" step-0000002 "after the failed final save"
echo "on_error = continue: a failed final save exits 1 naming the last valid checkpoint"
echo "rundir_safety: ok"

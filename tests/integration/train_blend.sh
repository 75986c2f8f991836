#!/bin/sh
# Weighted blends through mpilm train (docs/usage.md, data.path):
# - a blend run at dp 2 resumed from its step-6 checkpoint at dp 1 and at
#   pp 2 continues with the same samples (losses within 1e-5, fp32) and the
#   same blend_samples as the uninterrupted run;
# - each dataset's epoch wrap is logged once, the progress line shows each
#   dataset's epoch;
# - metrics rows carry blend_samples (per dataset, data.path order) that sum
#   to the samples drawn and keep each share within the greedy bound (±1/2 for
#   two datasets);
# - refused with exit 2: datasets of different vocabularies (both named), bad
#   syntax (naming data.path), a resume with other weights; eval --data takes
#   one dataset only.
. tests/common/ckpt_common.sh
. tests/common/tiny.sh
fail() { echo "FAIL train_blend: $*"; exit 1; }
head -c 4000 datasets/sample/sample.txt > "$d/a.txt"
tail -c 20000 datasets/sample/sample.txt > "$d/b.txt"
"$MPILM" prep --train-vocab 300 --tokenizer bpe --out "$d/A" "$d/a.txt" > "$d/prep.log" 2>&1 || fail "prep A"
"$MPILM" prep --vocab "$d/A" --out "$d/B" "$d/b.txt" >> "$d/prep.log" 2>&1 || fail "prep B"
"$MPILM" prep --train-vocab 280 --tokenizer bpe --out "$d/C" "$d/a.txt" >> "$d/prep.log" 2>&1 || fail "prep C"
tiny_ini "$d/tiny.ini" steps=12 vocab_size=auto
printf '[data]\nsource = dataset\npath = 0.7 %s 0.3 %s\n[ckpt]\nevery_steps = 6\n' "$d/A" "$d/B" >> "$d/tiny.ini"
TRAIN_SET="--set train.precision=fp32 --set train.global_batch=4"
blend_of() { tail -1 "$1/metrics.jsonl" | sed -n 's/.*"blend_samples":\[\([0-9,]*\)\].*/\1/p'; }

train 2 "$d/ref.log" --set run.dir="$d/ref" || { tail -5 "$d/ref.log"; fail "reference run (dp 2)"; }
[ "$(blend_of "$d/ref")" = "34,14" ] || fail "blend_samples after 48 samples at 0.7/0.3: $(blend_of "$d/ref") (expected 34,14)"
awk -F'"blend_samples":\\[' 'NF > 1 { split($2, v, "]"); n = split(v[1], c, ","); s = c[1] + c[2]
  if (n != 2 || s != NR * 4 || c[1] - 0.7 * s > 0.5 || 0.7 * s - c[1] > 0.5) { print "row " NR ": " v[1]; bad = 1 } }
  END { exit bad || NR != 12 }' "$d/ref/metrics.jsonl" || fail "blend_samples rows do not keep the shares"
for how in dp1 pp2; do
  case $how in
    dp1) train 1 "$d/$how.log" --set run.dir="$d/$how" --resume "$d/ref/step-0000006" ;;
    pp2) train 2 "$d/$how.log" --set dist.pp=2 --set run.dir="$d/$how" --resume "$d/ref/step-0000006" ;;
  esac || { tail -5 "$d/$how.log"; fail "resume at $how"; }
  sed -n '7,12p' "$d/ref/metrics.jsonl" > "$d/ref.tail"
  close "$d/ref.tail" "$d/$how/metrics.jsonl" || fail "resumed at $how: losses differ from the uninterrupted run"
  [ "$(blend_of "$d/$how")" = "$(blend_of "$d/ref")" ] || fail "resumed at $how: blend_samples $(blend_of "$d/$how")"
  echo "blend resumed at $how from dp 2's step 6: same losses and blend_samples"
done

# each dataset wraps on its own, logged once: A's 161 windows are drawn by step 115 (230 samples, 0.7 each)
train 1 "$d/wrap.log" --set run.dir="$d/wrap" --set train.steps=125 --set train.global_batch=2 --set log.every=25 ||
  { tail -5 "$d/wrap.log"; fail "wrap run"; }
[ "$(grep -c "read through" "$d/wrap.log")" = 1 ] && grep -qF "data: $d/A read through 1 time by step 115; epoch 2 begins" "$d/wrap.log" ||
  { grep "read through" "$d/wrap.log"; fail "A's wrap not logged once at step 115 (or B's logged)"; }
grep -q "step 125/125 .* | epoch 2,1 | " "$d/wrap.log" || fail "progress line without each dataset's epoch"
tail -1 "$d/wrap/metrics.jsonl" | grep -q '"blend_samples":\[175,75\],"epochs":\[2,1\]' || fail "last metrics row: $(tail -1 "$d/wrap/metrics.jsonl")"

# refusals
expect2() { # NAME LOG WANT: the last command exited 2 and LOG holds WANT
  rc=$1; shift
  [ "$rc" = 2 ] || { cat "$1"; fail "$2: exit $rc (expected 2)"; }
  grep -qF "$3" "$1" || { cat "$1"; fail "$2: message without '$3'"; }
}
train 1 "$d/x.log" --set run.dir="$d/x" --set "data.path=0.5 $d/A 0.5 $d/C"; expect2 $? "$d/x.log" "vocabularies" "different vocabularies"
grep -qF "$d/A (bpe, 300 tokens" "$d/x.log" && grep -qF "$d/C (bpe, 280 tokens" "$d/x.log" || fail "different vocabularies: both not named"
train 1 "$d/x.log" --set run.dir="$d/x" --set "data.path=0.5 $d/A 0.5"; expect2 $? "$d/x.log" "odd words" "expected WEIGHT PATH pairs"
grep -q "data.path" "$d/x.log" || fail "bad syntax: data.path not named"
train 1 "$d/x.log" --set run.dir="$d/x" --set "data.path=0.5 $d/A -2 $d/B"; expect2 $? "$d/x.log" "negative weight" "is not a positive number"
train 1 "$d/x.log" --set run.dir="$d/ref" --set "data.path=0.5 $d/A 0.5 $d/B" --set train.steps=14 --resume auto
expect2 $? "$d/x.log" "resume with other weights" "a blend resumes only with the same datasets' count and weights"
train 1 "$d/x.log" --set run.dir="$d/ref" --set "data.path=7 $d/A 3 $d/B" --set train.steps=14 --resume auto ||
  { tail -3 "$d/x.log"; fail "resume with the same weights written '7 A 3 B'"; }
train 1 "$d/x.log" --set run.dir="$d/ref" --set "data.path=$d/A" --set train.steps=16 --resume auto
expect2 $? "$d/x.log" "resume of a blend on one dataset" "differs from the checkpoint's"
"$MPILM" eval --ckpt "$d/ref" --data "0.5 $d/A 0.5 $d/B" > "$d/x.log" 2>&1; expect2 $? "$d/x.log" "eval of a blend" "blends are for training"
"$MPILM" eval --ckpt "$d/ref" --data "$d/B" --max-samples 8 > "$d/x.log" 2>&1 || { cat "$d/x.log"; fail "eval of one of the blend's datasets"; }
echo "train_blend: ok"

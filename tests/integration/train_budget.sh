#!/bin/sh
# Budgets and progress (docs/usage.md, "Training"):
# - train.tokens = N trains ceil(N / (global batch x seq_len)) steps, says so at
#   start, and is refused (exit 2, both keys named) together with a train.steps
#   that was set; train.steps = auto without train.tokens is refused too;
# - the progress line shows the dataset's epoch and the tokens seen, each epoch
#   wrap is logged once, and metrics rows carry "tokens" and "epoch";
# - elapsed_s continues across a resume (a checkpoint stores it; one written
#   before elapsed_s was stored resumes from 0);
# - model.vocab_size = auto takes the dataset's vocabulary rounded up to a
#   multiple of 64, says so, records the resolved size in the checkpoint
#   (resume with auto, eval, generate and export work; export's config.json
#   and tensors agree; generate never picks a padded row), and is refused
#   (exit 2, key named) with data.source = random.
. tests/common/tiny.sh
MPILM=${MPILM:-./mpilm}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL train_budget: $*"; exit 1; }
field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1"; } # FILE KEY: the key's values, one per line

head -c 4000 datasets/sample/sample.txt > "$d/small.txt"
"$MPILM" prep --train-vocab 300 --tokenizer bpe --out "$d/ds" "$d/small.txt" > "$d/prep.log" 2>&1 ||
  { tail -3 "$d/prep.log"; fail "prep"; }
tiny_ini "$d/t.ini" steps=100 vocab_size=auto
printf '[data]\nsource = dataset\npath = %s\n' "$d/ds" >> "$d/t.ini"

# train.tokens: 1000 tokens at 2 sequences x 16 tokens a step = 32 steps (31.25 rounded up)
tiny_ini "$d/r.ini"
"$MPILM" train --config "$d/r.ini" --set train.tokens=1000 --set run.dir="$d/tok" > "$d/tok.log" 2>&1 &&
  fail "train.tokens with the file's train.steps was accepted"
[ $? -eq 2 ] || fail "train.tokens with train.steps: exit $? (expected 2)"
grep -q "train.steps = 2 and train.tokens = 1000 are both set" "$d/tok.log" || { cat "$d/tok.log"; fail "both budgets: message"; }
"$MPILM" train --config "$d/r.ini" --set train.steps=auto --set run.dir="$d/tok" > "$d/tok.log" 2>&1
[ $? -eq 2 ] || fail "train.steps = auto without train.tokens: not exit 2"
grep -q "train.steps = auto needs train.tokens" "$d/tok.log" || { cat "$d/tok.log"; fail "steps auto: message"; }
"$MPILM" train --config "$d/r.ini" --set train.steps=auto --set train.tokens=1000 --set run.dir="$d/tok" \
  > "$d/tok.log" 2>&1 || { tail -5 "$d/tok.log"; fail "train.tokens run"; }
grep -q "train.tokens = 1000 -> 32 steps of 32 tokens (1024 tokens in all)" "$d/tok.log" || { cat "$d/tok.log"; fail "start-up line of train.tokens"; }
[ "$(tail -1 "$d/tok/metrics.jsonl" | field /dev/stdin step)" = 32 ] || fail "train.tokens = 1000 did not train 32 steps"
[ "$(tail -1 "$d/tok/metrics.jsonl" | field /dev/stdin tokens)" = 1024 ] || fail "metrics tokens at step 32 is not 1024"
grep -q "step 32/32 .* | 1.02k tok |" "$d/tok.log" || fail "progress line without the tokens seen"

# epochs: 2581 tokens = 161 windows of 16, 2 a step: the boundary after step 81 is in epoch 2, after step 161 (322 samples) in epoch 3
"$MPILM" train --config "$d/t.ini" --set train.steps=170 --set log.every=10 --set run.dir="$d/ep" > "$d/ep.log" 2>&1 ||
  { tail -5 "$d/ep.log"; fail "epoch run"; }
[ "$(grep -c "read through 1 time by step 81; epoch 2 begins" "$d/ep.log")" = 1 ] || { grep "read through" "$d/ep.log"; fail "the first wrap is not logged once at step 81"; }
[ "$(grep -c "read through 2 times by step 161; epoch 3 begins" "$d/ep.log")" = 1 ] || { grep "read through" "$d/ep.log"; fail "the second wrap is not logged once at step 161"; }
[ "$(grep -c "read through" "$d/ep.log")" = 2 ] || fail "more than two wraps logged"
grep -q "step 80/170 .* | epoch 1 | 2.56k tok |" "$d/ep.log" || fail "progress line at step 80: not epoch 1, 2.56k tok"
grep -q "step 90/170 .* | epoch 2 | 2.88k tok |" "$d/ep.log" || fail "progress line at step 90: not epoch 2"
[ "$(sed -n 17p "$d/ep/metrics.jsonl" | field /dev/stdin epoch)" = 3 ] || fail "metrics epoch at step 170 is not 3"

# elapsed_s continues across a resume; an older checkpoint without it starts at 0
MPILM_TEST_STEP_DELAY=0.25 "$MPILM" train --config "$d/t.ini" --set train.steps=8 --set ckpt.every_steps=4 \
  --set run.dir="$d/el" > "$d/el.log" 2>&1 || { tail -5 "$d/el.log"; fail "elapsed run"; }
"$MPILM" train --config "$d/t.ini" --set train.steps=8 --set run.dir="$d/el2" > "$d/el2.log" 2>&1 || fail "run 2"
cp -r "$d/el/step-0000004" "$d/old4"
sed -i '/"elapsed_s"/d' "$d/old4/manifest.json"
"$MPILM" train --config "$d/t.ini" --set train.steps=10 --set run.dir="$d/el" --resume "$d/el/step-0000004" > "$d/el3.log" 2>&1 ||
  { tail -5 "$d/el3.log"; fail "resume"; }
at4=$(sed -n 4p "$d/el/metrics.jsonl" | field /dev/stdin elapsed_s)
at5=$(sed -n 5p "$d/el/metrics.jsonl" | field /dev/stdin elapsed_s)
awk -v a="$at4" -v b="$at5" 'BEGIN { exit !(a >= 0.7 && b > a) }' || fail "elapsed_s after the resume: step 4 $at4, step 5 $at5 (expected it to continue)"
"$MPILM" train --config "$d/t.ini" --set train.steps=6 --set run.dir="$d/el2" --overwrite --resume "$d/old4" > "$d/el4.log" 2>&1 &&
  fail "--overwrite with --resume accepted"
"$MPILM" train --config "$d/t.ini" --set train.steps=6 --set run.dir="$d/el4" --resume "$d/old4" > "$d/el4.log" 2>&1 ||
  { tail -5 "$d/el4.log"; fail "resume of a checkpoint without elapsed_s"; }
at5=$(sed -n 1p "$d/el4/metrics.jsonl" | field /dev/stdin elapsed_s)
awk -v b="$at5" 'BEGIN { exit !(b < 0.7) }' || fail "a checkpoint without elapsed_s: step 5 at $at5 s (expected from 0)"

# model.vocab_size = auto
grep -q "model.vocab_size = auto → 320 (dataset vocabulary 300, padded to a multiple of 64)" "$d/ep.log" ||
  fail "no start-up line for model.vocab_size = auto"
grep -q '"vocab_size":[[:space:]]*320,' "$d/ep/latest/manifest.json" || fail "the checkpoint does not record vocab_size 320"
"$MPILM" train --config "$d/t.ini" --set train.steps=172 --set run.dir="$d/ep" --resume auto > "$d/ep2.log" 2>&1 ||
  { tail -3 "$d/ep2.log"; fail "resume with vocab_size = auto"; }
"$MPILM" eval --ckpt "$d/ep" --data "$d/ds" --max-samples 8 > "$d/eval.log" 2>&1 || { tail -3 "$d/eval.log"; fail "eval"; }
"$MPILM" export --ckpt "$d/ep" --format hf --out "$d/hf" > "$d/export.log" 2>&1 || { tail -3 "$d/export.log"; fail "export"; }
grep -q '"vocab_size":[[:space:]]*320' "$d/hf/config.json" || fail "export's config.json vocab_size is not 320"
python3 -c '
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
assert h["transformer.wte.weight"]["shape"][0] == 320, h["transformer.wte.weight"]["shape"]' "$d/hf/model.safetensors" ||
  fail "export's word embedding does not have 320 rows"
# near-uniform draws (temperature 100): 72 tokens would hit one of the 20 padded rows almost surely
for seed in 1 2 3 4 5 6; do
  "$MPILM" generate --ckpt "$d/ep" --prompt "It is" --max-tokens 12 --temperature 100 --seed $seed --json > "$d/gen.json" 2> "$d/gen.log" ||
    { cat "$d/gen.log"; fail "generate"; }
  python3 -c '
import json, sys
ids = json.load(open(sys.argv[1]))["ids"]
assert ids and max(ids) < 300, ids' "$d/gen.json" || fail "generate picked a padded row: $(cat "$d/gen.json")"
done
tiny_ini "$d/rv.ini" vocab_size=auto
"$MPILM" train --config "$d/rv.ini" --set run.dir="$d/rv" > "$d/rv.log" 2>&1
[ $? -eq 2 ] || fail "vocab_size = auto with random data: not exit 2"
grep -q "model.vocab_size = auto needs a dataset" "$d/rv.log" || { cat "$d/rv.log"; fail "vocab auto random: message"; }
echo "train_budget: ok"

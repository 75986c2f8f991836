#!/bin/sh
# Messages that used to say something false: a save that fails at the very
# first checkpoint of a run claimed "the previous checkpoint and latest are
# intact" (there is none); a manifest whose vocab_size was edited was reported
# as a "fingerprint mismatch" between two equal fingerprints. (prep's inputs:
# prep_safety.sh; a huge safetensors dimension: test_ckpt_safetensors.)
MPILM=${MPILM:-./mpilm}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL messages: $*"; exit 1; }

set -- --config /dev/null --set model.n_layer=1 --set model.d_model=32 --set model.n_head=4 --set model.d_ff=64 \
  --set model.seq_len=16 --set model.max_positions=16 --set model.vocab_size=64 --set train.micro_batch=2 \
  --set train.steps=1 --set run.dir="$d/run"
msg=$(MPILM_TEST_CKPT_FAIL=write "$MPILM" train "$@" 2>&1); rc=$?
[ $rc -eq 1 ] || fail "a failed first save exited $rc: $msg"
echo "$msg" | grep -q "checkpoint at step 1 failed (no earlier checkpoint exists in the run directory" ||
  fail "first save: $msg"
echo "$msg" | grep -q "intact" && fail "the first save's failure claims an intact previous checkpoint: $msg"
"$MPILM" train "$@" --resume auto > "$d/log" 2>&1 || { tail -3 "$d/log"; fail "a save after the failed one"; }
msg=$(MPILM_TEST_CKPT_FAIL=write "$MPILM" train "$@" --set train.steps=2 --resume auto 2>&1)
echo "$msg" | grep -q "checkpoint at step 2 failed (the previous checkpoint and latest are intact)" ||
  fail "a later save: $msg"

i=0
while [ $i -lt 20 ]; do printf 'The cat number %d sat on the mat.\n\n' $i; i=$((i + 1)); done > "$d/text.txt"
"$MPILM" prep --train-vocab 300 --tokenizer bpe --out "$d/ds" "$d/text.txt" > "$d/log" 2>&1 || { cat "$d/log"; fail prep; }
n=$(sed -n 's/.*"vocab_size":[[:space:]]*\([0-9]*\).*/\1/p' "$d/ds/manifest.json" | head -1)
[ -n "$n" ] || fail "no vocab_size in the manifest: $(cat "$d/ds/manifest.json")"
sed "s/\"vocab_size\":\([[:space:]]*\)$n/\"vocab_size\":\1$((n + 1))/" "$d/ds/manifest.json" > "$d/m" &&
  cp "$d/m" "$d/ds/manifest.json"
msg=$("$MPILM" inspect "$d/ds" 2>&1); rc=$?
[ $rc -eq 1 ] || fail "an edited vocab_size: inspect exited $rc: $msg"
echo "$msg" | grep -q "manifest.json: vocab_size $((n + 1)) differs from the $n tokens of the vocabulary files" ||
  fail "edited vocab_size: $msg"
echo "$msg" | grep -q "fingerprint mismatch" && fail "an edited vocab_size is called a fingerprint mismatch: $msg"
echo "messages: ok"

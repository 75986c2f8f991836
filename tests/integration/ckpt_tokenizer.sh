#!/bin/sh
# A checkpoint remembers its tokenizer (kind, fingerprint, vocabulary size in
# manifest.json). Resume, eval and generate refuse another tokenizer even with
# the same vocabulary size (exit 2, naming both tokenizers), and the refused
# resume writes no checkpoint claiming the new vocabulary. The same tokenizer
# is accepted.
MPILM=${MPILM:-./mpilm}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL ckpt_tokenizer: $*"; exit 1; }
n=$(wc -l < datasets/sample/sample.txt)
head -n $((n / 2)) datasets/sample/sample.txt > "$d/a.txt"
tail -n $((n - n / 2)) datasets/sample/sample.txt > "$d/b.txt"
for x in a b; do
  "$MPILM" prep --train-vocab 600 --tokenizer bpe --out "$d/$x" "$d/$x.txt" > "$d/log" 2>&1 || { cat "$d/log"; fail "prep $x"; }
done
"$MPILM" prep --train-vocab 600 --tokenizer wordpiece --out "$d/wp" "$d/a.txt" > "$d/log" 2>&1 || { cat "$d/log"; fail "prep wp"; }
fa=$(sed -n 's/.*"fingerprint":[[:space:]]*"\([0-9a-f]*\)".*/\1/p' "$d/a/manifest.json" | head -1)
fb=$(sed -n 's/.*"fingerprint":[[:space:]]*"\([0-9a-f]*\)".*/\1/p' "$d/b/manifest.json" | head -1)
[ -n "$fa" ] && [ "$fa" != "$fb" ] || fail "the two vocabularies should differ (fingerprints '$fa', '$fb')"
cat > "$d/tiny.ini" <<'INI'
[model]
family = gpt
n_layer = 2
d_model = 32
n_head = 2
d_ff = 64
seq_len = 16
max_positions = 16
vocab_size = 600
[data]
source = dataset
[train]
steps = 3
micro_batch = 2
[log]
every = 1
INI
"$MPILM" train --config "$d/tiny.ini" --set data.path="$d/a" --set run.dir="$d/run" > "$d/log" 2>&1 ||
  { tail -5 "$d/log"; fail "training"; }
grep -q '"vocab_size":[[:space:]]*600' "$d/run/step-0000003/manifest.json" || fail "the manifest's tokenizer has no vocab_size"

# refused WHAT CMD...: exit 2 and a message naming both fingerprints
refused() {
  what=$1 want=$2; shift 2
  "$@" > "$d/log" 2>&1
  rc=$?
  [ $rc -eq 2 ] || { tail -5 "$d/log"; fail "$what: exit $rc (expected 2)"; }
  grep -q "another tokenizer.*expected the checkpoint's bpe, 600 tokens, fingerprint $fa, found $want" "$d/log" ||
    { cat "$d/log"; fail "$what: the message does not name both tokenizers"; }
  echo "$what refused: $(grep -o 'error: .*' "$d/log" | cut -c1-200)"
}
refused "resume on another vocabulary" "bpe, 600 tokens, fingerprint $fb" \
  "$MPILM" train --config "$d/tiny.ini" --set data.path="$d/b" --set run.dir="$d/run" --set train.steps=6 --resume auto
[ "$(readlink "$d/run/latest")" = step-0000003 ] || fail "the refused resume moved latest to $(readlink "$d/run/latest")"
[ ! -e "$d/run/step-0000006" ] || fail "the refused resume wrote a checkpoint"
refused "eval on another vocabulary" "bpe, 600 tokens, fingerprint $fb" \
  "$MPILM" eval --ckpt "$d/run" --data "$d/b"
fw=$(sed -n 's/.*"fingerprint":[[:space:]]*"\([0-9a-f]*\)".*/\1/p' "$d/wp/manifest.json" | head -1)
refused "eval on another tokenizer kind" "wordpiece, 600 tokens, fingerprint $fw" \
  "$MPILM" eval --ckpt "$d/run" --data "$d/wp"
cp -r "$d/run/step-0000003" "$d/swapped"
rm -f "$d/swapped/vocab/"*
cp "$d/b/encoder.json" "$d/b/vocab.bpe" "$d/swapped/vocab/"
refused "generate with swapped vocabulary files" "bpe, 600 tokens, fingerprint $fb" \
  "$MPILM" generate --ckpt "$d/swapped" --prompt "It is" --max-tokens 2

"$MPILM" eval --ckpt "$d/run" --data "$d/a" --max-samples 8 > "$d/log" 2>&1 || { tail -5 "$d/log"; fail "eval on the same vocabulary"; }
"$MPILM" generate --ckpt "$d/run" --prompt "It is" --max-tokens 2 > "$d/log" 2>&1 || { tail -5 "$d/log"; fail "generate"; }
"$MPILM" train --config "$d/tiny.ini" --set data.path="$d/a" --set run.dir="$d/run" --set train.steps=6 --resume auto \
  > "$d/log" 2>&1 || { tail -5 "$d/log"; fail "resume on the same vocabulary"; }
echo "ckpt_tokenizer: ok"

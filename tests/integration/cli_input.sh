#!/bin/sh
# Configurations that used to train something else than asked, silently: a NUL
# byte (the text was cut there), an empty file (the default model), AdamW's
# beta1 = 1, beta2 = 1 or eps = 0 (every parameter NaN after step 1). Each is
# refused before any work with exit 2, naming the file, line or key.
# generate: NaN or infinite --temperature/--top-p/--top-k are refused, more
# tokens than max_positions holds is an error saying the most allowed (it was
# cut short with exit 0), and --json is valid UTF-8 JSON whatever bytes the
# sampled tokens decode to.
MPILM=${MPILM:-./mpilm}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL cli_input: $*"; exit 1; }
cat > "$d/tiny.ini" <<'INI'
[model]
n_layer = 1
d_model = 32
n_head = 4
d_ff = 64
seq_len = 16
max_positions = 16
vocab_size = 64
[train]
steps = 1
micro_batch = 2
INI
refused() { # what, expected message, mpilm train arguments...
  what=$1 want=$2; shift 2
  err=$(timeout 60 "$MPILM" train --set run.dir="$d/run" "$@" 2>&1); rc=$?
  [ $rc -eq 2 ] && echo "$err" | grep -q "$want" || fail "$what (exit $rc): $err"
  [ ! -e "$d/run" ] || fail "$what: training started (a run directory was made)"
}

# a NUL byte: at the start the whole file used to be ignored (the default model)
printf '\000' | cat - "$d/tiny.ini" > "$d/nul-first.ini"
refused "a leading NUL" "nul-first.ini:1: a NUL byte at byte offset 0 (expected text)" --config "$d/nul-first.ini"
{ head -3 "$d/tiny.ini"; printf 'n_head = 4\000 junk\n'; tail -n +5 "$d/tiny.ini"; } > "$d/nul-mid.ini"
refused "a NUL on line 4" "nul-mid.ini:4: a NUL byte at byte offset" --config "$d/nul-mid.ini"

# an empty file, or one of comments and headers only (even with --set run.dir); with
# --set choosing the model (--config /dev/null --set model.KEY=...) it stays fine
: > "$d/empty.ini"
refused "an empty config" "empty.ini: the config file sets no key" --config "$d/empty.ini"
printf '; nothing yet\n[model]\n' > "$d/hollow.ini"
refused "a config of a comment and a header" "hollow.ini: the config file sets no key" --config "$d/hollow.ini"
"$MPILM" train --config /dev/null --set model.n_layer=1 --print-config > "$d/out" 2>&1 ||
  fail "--config /dev/null with --set keys: $(cat "$d/out")"

# AdamW's betas in [0, 1), eps > 0, named with where the value came from
refused "beta1 = 1" "set train.beta1=1: train.beta1 = 1 is out of range (expected 0 <= beta1 < 1" \
  --config "$d/tiny.ini" --set train.beta1=1
refused "beta2 = 1" "set train.beta2=1: train.beta2 = 1 is out of range (expected 0 <= beta2 < 1" \
  --config "$d/tiny.ini" --set train.beta2=1
{ cat "$d/tiny.ini"; echo "eps = 0"; } > "$d/eps.ini"
refused "eps = 0" "eps.ini:12: train.eps = 0 is out of range (expected eps > 0" --config "$d/eps.ini"
"$MPILM" train --config "$d/tiny.ini" --set train.beta1=0 --set train.beta2=0.5 --set run.dir="$d/ok" > "$d/log" 2>&1 ||
  fail "beta1 = 0, beta2 = 0.5: $(tail -3 "$d/log")"

# generate, on a 1-step model with 16 positions and a byte-level vocabulary
i=0
while [ $i -lt 30 ]; do printf 'The cat number %d sat on the mat.\n\n' $i; i=$((i + 1)); done > "$d/text.txt"
"$MPILM" prep --train-vocab 300 --tokenizer bpe --out "$d/ds" "$d/text.txt" > "$d/log" 2>&1 || { cat "$d/log"; fail prep; }
"$MPILM" train --config "$d/tiny.ini" --set model.vocab_size=300 --set data.source=dataset --set data.path="$d/ds" \
  --set run.dir="$d/gpt" > "$d/log" 2>&1 || { tail -3 "$d/log"; fail "training the generate model"; }
gen() { "$MPILM" generate --ckpt "$d/gpt" --prompt "The cat" "$@"; }
for bad in "--temperature nan" "--temperature inf" "--top-p nan" "--top-p -nan" "--top-k inf"; do
  # shellcheck disable=SC2086
  err=$(gen $bad 2>&1); rc=$?
  [ $rc -eq 2 ] && echo "$err" | grep -q "generate: ${bad% *} '${bad#* }' is not" || fail "generate $bad (exit $rc): $err"
done
p=$(gen --max-tokens 1 --temperature 0 --json | sed 's/.*"prompt_ids":\[\([0-9,]*\)\].*/\1/' | tr ',' '\n' | grep -c .)
most=$((16 - p))
err=$(gen --max-tokens $((most + 1)) 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "max_positions 16; give --max-tokens $most at most" ||
  fail "--max-tokens beyond max_positions (exit $rc): $err"
gen --max-tokens $most --temperature 0 > /dev/null 2>&1 || fail "--max-tokens $most (prompt $p tokens, 16 positions)"
# temperature 100: nearly uniform over 300 tokens, 256 of them single bytes
gen --max-tokens $most --temperature 100 --seed 7 --json > "$d/gen.json" 2>&1 || fail "generate --json: $(cat "$d/gen.json")"
python3 -c '
import json, sys
r = json.loads(open(sys.argv[1], "rb").read().decode("utf-8"))
assert isinstance(r["text"], str) and len(r["ids"]) >= 1, r
' "$d/gen.json" 2>/dev/null || fail "generate --json is not valid UTF-8 JSON: $(od -c "$d/gen.json" | head -5)"
echo "cli_input: ok"

#!/bin/sh
# Every Unicode code point (1,112,062 of them, surrogates aside) through mpilm's
# tokenizers and Hugging Face's own (npm "tokenizers", the Rust core behind
# transformers' fast tokenizers), which takes its character data from several
# Unicode versions (src/data/gen_unicode_tables.py lists them):
# - WordPiece: ids of "a<c>b É<c>" with a vocabulary holding every character, so
#   that each id shows what normalization (cleaning, lowercasing, NFD, accent
#   stripping, Chinese characters) and pre-tokenization (white space,
#   punctuation) made of <c>;
# - GPT-2: the byte lengths of the pieces the split regex cuts "a<c>a1<c>1 <c>!"
#   into (letters, numbers, white space, other).
# Needs node and npm (make test-deps); exit 77 with the reason without them.
BUILD=${BUILD:-build}
MPILM=${MPILM:-./mpilm}
. tests/common/hf_tokenizers.sh
NODE_PATH=$(hf_tokenizers_path) || { echo "SKIP: Hugging Face's tokenizers unavailable"; exit 77; }
export NODE_PATH
PRETOKENS=$BUILD/tests/tools/pretokens
[ -x "$PRETOKENS" ] || { echo "FAIL: $PRETOKENS not built (make tests)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
JS=tests/tools/hf_unicode.js
status=0

compare() { # NAME LINES_FILE HF_OUT MPILM_OUT CODE_POINTS
  if [ "$(wc -l < "$3")" -ne "$(wc -l < "$2")" ] || [ "$(wc -l < "$4")" -ne "$(wc -l < "$2")" ]; then
    echo "FAIL $1: line counts differ (input $(wc -l < "$2"), hf $(wc -l < "$3"), mpilm $(wc -l < "$4"))"
    status=1
    return
  fi
  n=$(paste -d '|' "$3" "$4" | awk -F '|' '$1 != $2' | wc -l)
  if [ "$n" -ne 0 ]; then
    echo "FAIL $1: $n of $(wc -l < "$2") code points differ from Hugging Face; the first (code point: hf | mpilm):"
    paste -d '|' "$5" "$3" "$4" | awk -F '|' '$2 != $3 { print $1 ": " $2 " | " $3 }' | head -10
    status=1
  else
    echo "ok $1: all $(wc -l < "$2") code points as Hugging Face"
  fi
}

mkdir -p "$tmp/vocab"
node $JS vocab > "$tmp/vocab/vocab.txt" && node $JS lines-bert "$tmp/bert.cps" > "$tmp/bert.txt" || { echo "FAIL: node $JS"; exit 1; }
node $JS encode-bert "$tmp/vocab" "$tmp/bert.txt" > "$tmp/bert.hf" || { echo "FAIL: node $JS encode-bert"; exit 1; }
"$MPILM" tokenize --vocab "$tmp/vocab" --tokenizer wordpiece < "$tmp/bert.txt" > "$tmp/bert.mpilm" ||
  { echo "FAIL: mpilm tokenize (wordpiece)"; exit 1; }
compare wordpiece "$tmp/bert.txt" "$tmp/bert.hf" "$tmp/bert.mpilm" "$tmp/bert.cps"

node $JS lines-gpt "$tmp/gpt.cps" > "$tmp/gpt.txt" && node $JS pretok-gpt "$tmp/gpt.txt" > "$tmp/gpt.hf" ||
  { echo "FAIL: node $JS (gpt)"; exit 1; }
"$PRETOKENS" < "$tmp/gpt.txt" > "$tmp/gpt.mpilm" || { echo "FAIL: $PRETOKENS"; exit 1; }
compare gpt2-split "$tmp/gpt.txt" "$tmp/gpt.hf" "$tmp/gpt.mpilm" "$tmp/gpt.cps"
exit $status

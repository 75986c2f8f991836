#!/bin/sh
# mpilm export --format hf writes tokenizer files that Hugging Face's own
# tokenizers (npm "tokenizers", the Rust core, tests/common/hf_tokenizers.sh)
# load and that encode text exactly as `mpilm tokenize` does on the
# checkpoint's vocabulary: tokenizer.json through Tokenizer.fromFile, and a
# tokenizer built from vocab.json + merges.txt / vocab.txt by the package's
# model constructors (tests/tools/hf_export_tokenizer.js), on the lines of
# ../shared/corpora/tiny.txt, the 2,000 reference texts of ../shared/vocab/
# reference and hard cases (accents, CJK, emoji, control characters, long
# words, special-token strings); for GPT-2's vocabulary, bert-base-uncased's,
# and a BPE and a WordPiece vocabulary trained by `mpilm prep --train-vocab`.
# config.json's bos/eos (BERT: and pad) ids lie inside vocab_size (= the
# embedding's rows) and name the end-of-text token ([CLS], [SEP], [PAD]);
# generation_config.json agrees. An export of a checkpoint without a
# vocabulary writes null ids, never GPT2Config's 50256; a second export into
# the same directory replaces the files as the first wrote them.
# Skips (77) only when node, npm or the npm registry is not available.
MPILM=${MPILM:-./mpilm}
BUILD=${BUILD:-build}
SHARED=${MPILM_SHARED:-../shared}
. tests/common/hf_tokenizers.sh
hf=$(hf_tokenizers_path) || { echo "export_hf_tokenizer: skipped: Hugging Face's tokenizers are not available"; exit 77; }
[ -f "$SHARED/vocab/gpt2/encoder.json" ] && [ -f "$SHARED/vocab/bert-base-uncased/vocab.txt" ] &&
  [ -f "$SHARED/corpora/tiny.txt" ] || { echo "export_hf_tokenizer: skipped: no vocabularies or corpora under $SHARED"; exit 77; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL export_hf_tokenizer: $*"; exit 1; }
node_tool() { NODE_PATH=$hf node tests/tools/hf_export_tokenizer.js "$@"; }

node_tool texts "$d/texts.txt" "$SHARED/corpora/tiny.txt" "$SHARED/vocab/reference/gpt2.jsonl" || fail "collecting the texts"
"$MPILM" prep --train-vocab 1000 --tokenizer bpe --out "$d/bpe" "$SHARED/corpora/tiny.txt" > "$d/log" 2>&1 ||
  { cat "$d/log"; fail "prep --train-vocab bpe"; }
"$MPILM" prep --train-vocab 1000 --tokenizer wordpiece --out "$d/wp" "$SHARED/corpora/tiny.txt" > "$d/log" 2>&1 ||
  { cat "$d/log"; fail "prep --train-vocab wordpiece"; }
"$MPILM" prep --vocab "$SHARED/vocab/gpt2" --out "$d/gpt2" "$SHARED/corpora/tiny.txt" > "$d/log" 2>&1 || { cat "$d/log"; fail "prep gpt2"; }
"$MPILM" prep --vocab "$SHARED/vocab/bert-base-uncased" --out "$d/bert" "$SHARED/corpora/tiny.txt" > "$d/log" 2>&1 ||
  { cat "$d/log"; fail "prep bert"; }

# train FAMILY DATASET VOCAB_SIZE: one step of a tiny model on the dataset
train() {
  "$MPILM" train --config /dev/null --set model.family="$1" --set model.n_layer=1 --set model.d_model=16 \
    --set model.n_head=2 --set model.d_ff=32 --set model.seq_len=16 --set model.max_positions=32 \
    --set model.vocab_size="$3" --set data.source=dataset --set data.path="$d/$2" --set train.steps=1 \
    --set train.micro_batch=2 --set run.dir="$d/run-$2" > "$d/log" 2>&1 || { tail -5 "$d/log"; fail "training on $2"; }
}
train gpt bpe 1000
train bert wp 1000
train gpt gpt2 50257
train bert bert 30522

for set in bpe wp gpt2 bert; do
  out=$d/hf-$set
  "$MPILM" export --ckpt "$d/run-$set" --format hf --out "$out" > "$d/log" 2>&1 || { cat "$d/log"; fail "export of $set"; }
  case $set in bpe|gpt2) files="vocab.json merges.txt tokenizer.json tokenizer_config.json special_tokens_map.json generation_config.json" ;;
    *) files="vocab.txt tokenizer.json tokenizer_config.json special_tokens_map.json" ;; esac
  for f in $files; do [ -s "$out/$f" ] || fail "$set export lacks $f"; done
  "$MPILM" tokenize --vocab "$d/run-$set/latest/vocab" < "$d/texts.txt" > "$d/$set.mpilm" || fail "mpilm tokenize on $set"
  node_tool encode "$out" "$d/texts.txt" "$d/$set" || fail "$set: the exported tokenizer files"
  for how in file model; do
    if ! cmp -s "$d/$set.mpilm" "$d/$set.$how"; then
      n=$(diff "$d/$set.mpilm" "$d/$set.$how" | grep -c '^<')
      line=$(cmp "$d/$set.mpilm" "$d/$set.$how" | sed -n 's/.* line \([0-9]*\).*/\1/p')
      fail "$set: Hugging Face's tokenizer ($how) differs from mpilm tokenize on $n of $(wc -l < "$d/texts.txt") texts; first, line $line: $(sed -n "${line}p" "$d/texts.txt" | head -c 200) -> mpilm [$(sed -n "${line}p" "$d/$set.mpilm")], HF [$(sed -n "${line}p" "$d/$set.$how")]"
    fi
  done
  echo "export_hf_tokenizer: $set: $(wc -l < "$d/texts.txt") texts, the same ids from tokenizer.json, the vocabulary files and mpilm tokenize"
done
grep -q '"do_lower_case":[[:space:]]*true' "$d/hf-bert/tokenizer_config.json" || fail "bert-base-uncased export: do_lower_case is not true"

# a second export into the same directory: the same files again
cp -r "$d/hf-bpe" "$d/first"
"$MPILM" export --ckpt "$d/run-bpe" --format hf --out "$d/hf-bpe" > "$d/log" 2>&1 || { cat "$d/log"; fail "second export"; }
diff -r "$d/first" "$d/hf-bpe" > "$d/log" || { cat "$d/log"; fail "a second export into the same directory differs"; }

# no vocabulary (random data): null ids, no tokenizer files, and a note
"$MPILM" train --config /dev/null --set model.n_layer=1 --set model.d_model=16 --set model.n_head=2 --set model.d_ff=32 \
  --set model.seq_len=16 --set model.max_positions=32 --set model.vocab_size=100 --set train.steps=1 \
  --set train.micro_batch=2 --set run.dir="$d/run-random" > "$d/log" 2>&1 || { tail -5 "$d/log"; fail "random training"; }
"$MPILM" export --ckpt "$d/run-random" --format hf --out "$d/hf-random" > "$d/log" 2>&1 || { cat "$d/log"; fail "export of random"; }
grep -q "no vocabulary" "$d/log" || fail "an export without vocabulary does not say so: $(cat "$d/log")"
grep -q '"bos_token_id":[[:space:]]*null' "$d/hf-random/config.json" && grep -q '"eos_token_id":[[:space:]]*null' "$d/hf-random/config.json" ||
  fail "an export without vocabulary does not write null ids: $(cat "$d/hf-random/config.json")"
[ ! -e "$d/hf-random/tokenizer.json" ] || fail "an export without vocabulary wrote tokenizer.json"
echo "export_hf_tokenizer: ok"

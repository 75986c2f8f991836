#!/bin/sh
# Regenerates the seed corpora tests/fuzz/corpus/TARGET/ from the repository's
# own files: launch/configs/*.ini, the python-tiny safetensors fixture, the
# first documents of datasets/sample/sample.txt, and the fuzz harnesses' fixed
# vocabularies (a dataset made of them by fuzz_prep_text gives the manifest,
# shard and vocabulary seeds), and a checkpoint of a 2-step tiny GPT.
# Usage: BUILD=build MPILM=./mpilm sh tests/fuzz/make_corpus.sh (after make fuzz-build).
set -e
BUILD=${BUILD:-build}
MPILM=${MPILM:-./mpilm}
C=tests/fuzz/corpus
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
rm -rf "$C"
for d in config dataset_manifest shard ckpt_manifest safetensors vocab_txt bpe_vocab bpe_encode wordpiece_encode \
         prep_text prep_input; do mkdir -p "$C/$d"; done

cp launch/configs/*.ini "$C/config/"
cp tests/reference/fixtures/python-tiny.safetensors "$C/safetensors/"

# Text seeds: the first 3 documents of the sample (blank-line separated), cut to 2 KB.
awk 'BEGIN{d=0} /^[ \t]*$/{d++} d<3' datasets/sample/sample.txt | head -c 2048 > "$t/sample.txt"
printf 'The Dashwoods\xe2\x80\x99 caf\xc3\xa9, 12 miles \xe4\xb8\xad\xe6\x96\x87 <|endoftext|> [MASK] ok\r\n\n  \nbad \xff\xfe byte\n' \
  > "$t/mixed.txt"
cp "$t/sample.txt" "$C/bpe_encode/sample.txt"
cp "$t/mixed.txt" "$C/bpe_encode/mixed.txt"
for f in sample mixed; do
  { printf '\001'; cat "$t/$f.txt"; } > "$C/wordpiece_encode/$f.txt"
  # prep_text: first byte = flags (bit 0 BPE, bit 1 --replace-invalid)
  { printf '\002'; cat "$t/$f.txt"; } > "$C/prep_text/wordpiece-$f.txt"
  { printf '\003'; cat "$t/$f.txt"; } > "$C/prep_text/bpe-$f.txt"
done

# prep_input: first byte = flags (bit 0 BPE, 1 --replace-invalid, 2 --jsonl, 3 --split-sentences,
# 4 --valid-fraction 0.5); JSON lines, the splitter's cases, gzip and zstd files.
P=$C/prep_input
printf '\010Dr. Smith met J. R. Doe at 3.14 p.m. on Main St. today. It rained! Did it? "Yes." (Quite.) \342\200\234Oh.\342\200\235 The U.S. team won, e.g. twice...\n\nEnd\n' > "$P/sentences.txt"
printf '\004{"text": "First line.\\nSecond line."}\n{"text": "caf\\u00e9 \\ud83d\\ude00", "id": 2}\n\n{"text": ""}\n{"body": "x"}\n' > "$P/jsonl-bad-key.jsonl"
printf '\005{"text": "One.\\r\\nTwo."}\n{"text": "Three."}\n' > "$P/jsonl-bpe.jsonl"
{ printf '\020'; gzip -n -c "$t/sample.txt"; } > "$P/sample-valid.gz"
{ printf '\000'; zstd -q -c "$t/sample.txt"; } > "$P/sample.zst"
{ printf '\016'; awk 'BEGIN{RS=""} {gsub(/\\/,"\\\\"); gsub(/"/,"\\\""); gsub(/\r/,"\\r"); gsub(/\t/,"\\t"); gsub(/\n/,"\\n");
  printf "{\"text\": \"%s\"}\n", $0}' "$t/sample.txt" | zstd -q -c; } > "$P/jsonl-split.zst"

# A dataset of each kind from the harness's own vocabularies.
for kind in wordpiece bpe; do
  flag='\002'; [ $kind = bpe ] && flag='\003'
  { printf "$flag"; cat "$t/sample.txt"; } > "$t/in-$kind"
  mkdir -p "$t/keep-$kind"
  TMPDIR="$t/keep-$kind" MPILM_FUZZ_KEEP=1 "$BUILD/fuzz/fuzz_prep_text" "$t/in-$kind" > /dev/null 2>&1
  ds=$(ls -d "$t/keep-$kind"/mpilm-fuzz-*/prep-$kind)
  cp "$ds/train-00000.zst" "$C/shard/$kind.zst"
done
ds=$(ls -d "$t/keep-wordpiece"/mpilm-fuzz-*/prep-wordpiece)
cp "$ds/manifest.json" "$C/dataset_manifest/manifest.json"
cp "$ds/vocab.txt" "$C/vocab_txt/vocab.txt"
ds=$(ls -d "$t/keep-bpe"/mpilm-fuzz-*/prep-bpe)
{ cat "$ds/encoder.json"; printf '\000'; cat "$ds/vocab.bpe"; } > "$C/bpe_vocab/encoder-and-merges"

# A checkpoint manifest: 2 steps of a tiny GPT on random data.
cat > "$t/tiny.ini" <<'INI'
[model]
family = gpt
n_layer = 1
d_model = 16
n_head = 2
d_ff = 32
seq_len = 8
max_positions = 8
vocab_size = 64
[data]
source = random
[train]
steps = 2
micro_batch = 1
micro_batches = 1
[ckpt]
every_steps = 2
INI
OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1 "$MPILM" train --config "$t/tiny.ini" --set run.dir="$t/run" > "$t/train.log" 2>&1 ||
  { cat "$t/train.log"; exit 1; }
# (the scratch run directory is named runs/tiny in the seed)
sed "s|$t/run|runs/tiny|g" "$t/run/latest/manifest.json" > "$C/ckpt_manifest/manifest.json"
du -sh "$C"

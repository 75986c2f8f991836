#!/bin/sh
# Tokenizer encoding speed on ../shared/corpora/train.txt, one core, median of 3:
# mpilm's BPE (GPT-2) and WordPiece (bert-base-uncased) against Hugging Face's
# tokenizers (npm package "tokenizers", Rust core) with the same vocabulary
# files, both pinned to core 0. Also checks that both produce the same ids
# (token count and checksum). Environment: BUILD, MPILM_SHARED, REPEATS.
BUILD=${BUILD:-build}
SHARED=${MPILM_SHARED:-../shared}
REPEATS=${REPEATS:-3}
CORPUS=$SHARED/corpora/train.txt
BENCH=$BUILD/tests/bench/bench_tokenizer
[ -x "$BENCH" ] || { echo "bench_tokenizer: $BENCH not built (run make bench)"; exit 1; }
[ -f "$CORPUS" ] || { echo "bench_tokenizer: $CORPUS missing; skipped"; exit 0; }
PIN=""
command -v taskset >/dev/null && PIN="taskset -c 0"
MB=$(( $(wc -c < "$CORPUS") / 1000000 ))
echo "corpus: $CORPUS ($MB MB), one core ($PIN), median of $REPEATS"

peer=""
. tests/common/hf_tokenizers.sh
if ! peer=$(hf_tokenizers_path); then
  peer=""
  echo "peer: Hugging Face tokenizers unavailable; peer skipped"
fi

figure() { # "NAME KIND: X MB/s ..." -> X
  sed -n 's/.*: \([0-9.]*\) MB\/s.*/\1/p'
}

status=0
for spec in "bpe gpt2" "wordpiece bert-base-uncased"; do
  set -- $spec
  kind=$1 vocab=$SHARED/vocab/$2
  ours=$($PIN "$BENCH" "$vocab" "$kind" "$CORPUS" "$REPEATS") || { echo "bench_tokenizer $kind failed"; status=1; continue; }
  echo "$ours"
  [ -n "$peer" ] || continue
  theirs=$(RAYON_NUM_THREADS=1 NODE_PATH=$peer $PIN node tests/bench/bench_tokenizer.js "$vocab" "$kind" "$CORPUS" "$REPEATS") ||
    { echo "peer $kind failed"; status=1; continue; }
  echo "$theirs"
  a=$(echo "$ours" | figure) b=$(echo "$theirs" | figure)
  same="identical ids"
  [ "${ours#*MB/s (median of $REPEATS), }" = "${theirs#*MB/s (median of $REPEATS), }" ] || { same="IDS DIFFER"; status=1; }
  echo "ratio $kind: mpilm / hf-tokenizers = $(echo "$a $b" | awk '{ printf "%.1f", $1 / $2 }')x ($same)"
done
exit $status

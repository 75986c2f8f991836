#!/bin/sh
# mpilm prep --valid-fraction (the held-out split) end to end: the same train
# and valid shards under mpirun -np 1 and -np 2; the two splits partition the
# documents of the input (their totals add up to the dataset without a split)
# with a held-out share near F; inspect shows and verifies both splits (a
# damaged valid shard is found); F outside [0, 1), a split left empty, and
# eval --split: the default (valid when there is one), the choice, the JSON
# "split" key, and the refusal of --split valid on a dataset without one.
MPILM=${MPILM:-./mpilm}
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
SHARED=${MPILM_SHARED:-../shared}
CORPUS=$SHARED/corpora/valid.txt
BERT=$SHARED/vocab/bert-base-uncased
[ -f "$CORPUS" ] && [ -f "$BERT/vocab.txt" ] || { echo "skip: no corpora/vocabularies under $SHARED"; exit 77; }
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL prep_split: $*"; exit 1; }
# total KEY of the manifest object OBJ ("totals" or "valid_totals")
total() { sed -n "/\"$2\"/,/}/s/.*\"$3\":[[:space:]]*\([0-9.]*\).*/\1/p" "$1/manifest.json" | head -1; }

# -np 1 and -np 2 (the input is two pieces, so two train and two valid shards)
$MPILM prep --vocab "$BERT" --valid-fraction 0.1 --out "$T/one" "$CORPUS" >"$T/log" 2>&1 || fail "prep -np 1: $(cat "$T/log")"
grep -q "valid split (--valid-fraction 0.1): 2 shards" "$T/log" || fail "prep's report of the valid split: $(cat "$T/log")"
$MPIRUN -np 2 $MPILM prep --vocab "$BERT" --valid-fraction 0.1 --out "$T/two" "$CORPUS" >"$T/log" 2>&1 ||
  fail "prep -np 2: $(cat "$T/log")"
for f in train-00000.zst train-00001.zst valid-00000.zst valid-00001.zst manifest.json; do
  [ -f "$T/one/$f" ] || fail "no $f in the dataset: $(ls "$T/one")"
done
diff -r "$T/one" "$T/two" >/dev/null || fail "prep -np 2 gives other splits than -np 1"
grep -q '"valid_fraction":[[:space:]]*0.1' "$T/one/manifest.json" || fail "the manifest lacks valid_fraction"
grep -q '"valid_shards"' "$T/one/manifest.json" || fail "the manifest lacks valid_shards"

# the splits partition the documents: totals add up to the dataset without a split
$MPILM prep --vocab "$BERT" --out "$T/all" "$CORPUS" >"$T/log" 2>&1 || fail "prep without a split: $(cat "$T/log")"
for k in documents sentences tokens; do
  a=$(total "$T/all" totals $k) tr=$(total "$T/one" totals $k) va=$(total "$T/one" valid_totals $k)
  [ -n "$tr" ] && [ -n "$va" ] && [ "$va" -gt 0 ] || fail "manifest totals of $k: train '$tr', valid '$va'"
  [ $((tr + va)) -eq "$a" ] || fail "$k: train $tr + valid $va != $a without a split"
done
docs=$(total "$T/all" totals documents) held=$(total "$T/one" valid_totals documents)
# F = 0.1 of the documents: expect within 0.07 .. 0.13 of them
[ $((held * 100)) -ge $((docs * 7)) ] && [ $((held * 100)) -le $((docs * 13)) ] ||
  fail "held out $held of $docs documents, far from 10%"
# the train token stream of the split dataset is the unsplit one without the valid documents' tokens
zstd -q -dc "$T/all"/train-0000*.zst | od -An -v -tu2 -w2 | tr -d ' ' >"$T/all.ids"
zstd -q -dc "$T/one"/train-0000*.zst | od -An -v -tu2 -w2 | tr -d ' ' >"$T/train.ids"
zstd -q -dc "$T/one"/valid-0000*.zst | od -An -v -tu2 -w2 | tr -d ' ' >"$T/valid.ids"
cmp -s "$T/all.ids" "$T/train.ids" && fail "the train split holds every token"
[ $(($(wc -l <"$T/train.ids") + $(wc -l <"$T/valid.ids"))) -eq "$(wc -l <"$T/all.ids")" ] || fail "token streams do not add up"

# inspect shows and verifies both splits
$MPILM inspect "$T/one" >"$T/out" 2>&1 || fail "inspect: $(cat "$T/out")"
grep -q "valid fraction 0.1" "$T/out" && grep -q "train split: 2 shards, .* $((docs - held)) documents" "$T/out" &&
  grep -q "valid split: 2 shards, .* $held documents" "$T/out" && grep -q "valid-00001.zst: .* ok" "$T/out" ||
  fail "inspect output: $(cat "$T/out")"
$MPILM inspect "$T/all" | grep -q "no valid split" || fail "inspect of a dataset without a split"
size=$(wc -c <"$T/two/valid-00001.zst")
printf '\377' | dd of="$T/two/valid-00001.zst" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
err=$($MPILM inspect "$T/two" 2>&1) && fail "inspect passed a damaged valid shard"
echo "$err" | grep -q "valid-00001.zst" || fail "damaged valid shard message: $err"

# bad fractions and empty splits
for f in 1 1.5 -0.1 x; do
  err=$($MPILM prep --vocab "$BERT" --valid-fraction "$f" --out "$T/bad" "$CORPUS" 2>&1); rc=$?
  [ $rc -eq 2 ] && echo "$err" | grep -q "valid-fraction" || fail "--valid-fraction $f (exit $rc): $err"
done
printf 'One short document.\n\nAnother one.\n' >"$T/two-docs.txt"
err=$($MPILM prep --vocab "$BERT" --valid-fraction 0.001 --out "$T/bad" "$T/two-docs.txt" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "held out no document of the 2 in the input.*raise --valid-fraction" ||
  fail "a fraction that holds out nothing (exit $rc): $err"
err=$($MPILM prep --vocab "$BERT" --valid-fraction 0.999 --out "$T/bad" "$T/two-docs.txt" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "the train split is empty; lower --valid-fraction" ||
  fail "a fraction that holds out everything (exit $rc): $err"
[ ! -e "$T/bad" ] || fail "a failed prep left $T/bad"

# eval: default valid when the dataset has one, --split, the JSON key, the refusal
"$MPILM" prep --train-vocab 600 --tokenizer bpe --valid-fraction 0.3 --out "$T/bpe" datasets/sample/sample.txt \
  >"$T/log" 2>&1 || fail "prep of the sample: $(cat "$T/log")"
"$MPILM" prep --vocab "$T/bpe" --out "$T/bpe-all" datasets/sample/sample.txt >"$T/log" 2>&1 || fail "prep: $(cat "$T/log")"
. tests/common/tiny.sh
tiny_ini "$T/tiny.ini" vocab_size=600 steps=2
"$MPILM" train --config "$T/tiny.ini" --set data.path="$T/bpe" --set run.dir="$T/gpt" >"$T/log" 2>&1 ||
  { tail -5 "$T/log"; fail "training"; }
split_of() { sed -n 's/.*"split": "\([a-z]*\)".*/\1/p' "$1"; }
"$MPILM" eval --ckpt "$T/gpt" --data "$T/bpe" --json "$T/ev.json" >"$T/log" 2>&1 || fail "eval: $(cat "$T/log")"
[ "$(split_of "$T/ev.json")" = valid ] && grep -q "valid split" "$T/log" || fail "eval's default split: $(cat "$T/log" "$T/ev.json")"
"$MPILM" eval --ckpt "$T/gpt" --data "$T/bpe" --split train --json "$T/et.json" >"$T/log" 2>&1 || fail "eval --split train: $(cat "$T/log")"
[ "$(split_of "$T/et.json")" = train ] && grep -q "train split" "$T/log" || fail "eval --split train: $(cat "$T/log" "$T/et.json")"
cmp -s "$T/ev.json" "$T/et.json" && fail "eval gives the same figures on both splits"
"$MPILM" eval --ckpt "$T/gpt" --data "$T/bpe-all" --json "$T/ea.json" >"$T/log" 2>&1 || fail "eval without a split: $(cat "$T/log")"
[ "$(split_of "$T/ea.json")" = train ] || fail "eval of a dataset without a valid split: $(cat "$T/ea.json")"
err=$("$MPILM" eval --ckpt "$T/gpt" --data "$T/bpe-all" --split valid 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "bpe-all: the dataset has no valid split.*prep --valid-fraction" ||
  fail "eval --split valid without one (exit $rc): $err"
err=$("$MPILM" eval --ckpt "$T/gpt" --data "$T/bpe" --split test 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "split must be train or valid" || fail "eval --split test (exit $rc): $err"
echo "prep_split: ok ($held of $docs documents held out)"

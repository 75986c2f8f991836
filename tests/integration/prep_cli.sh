#!/bin/sh
# mpilm prep and mpilm inspect end to end on ../shared/corpora/tiny.txt:
# the same dataset under mpirun -np 1 and -np 2, zstd -t / zstd -d on a shard,
# the token stream equal to mpilm tokenize of the same lines, --train-vocab,
# and the messages for invalid UTF-8, empty input, damaged shards, a replaced
# vocabulary and a path that is neither shard nor dataset.
MPILM=${MPILM:-./mpilm}
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
SHARED=${MPILM_SHARED:-../shared}
TINY=$SHARED/corpora/tiny.txt
BERT=$SHARED/vocab/bert-base-uncased
[ -f "$TINY" ] && [ -f "$BERT/vocab.txt" ] || { echo "skip: no corpora/vocabularies under $SHARED"; exit 77; }
command -v zstd >/dev/null || { echo "skip: no zstd command"; exit 77; }
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

$MPILM prep --vocab "$BERT" --out "$T/one" "$TINY" >"$T/log" 2>&1 || fail "prep -np 1: $(cat "$T/log")"
grep -q "MB/s" "$T/log" || fail "prep reports no throughput: $(cat "$T/log")"
$MPIRUN -np 2 $MPILM prep --vocab "$BERT" --out "$T/two" "$TINY" >"$T/log" 2>&1 || fail "prep -np 2: $(cat "$T/log")"
diff -r "$T/one" "$T/two" >/dev/null || fail "prep -np 2 gives another dataset than -np 1"
$MPILM inspect "$T/one" >"$T/out" || fail "inspect of a fresh dataset: $(cat "$T/out")"
grep -q "every checksum verified: ok" "$T/out" || fail "inspect output: $(cat "$T/out")"
S=$T/one/train-00000.zst
zstd -q -t "$S" || fail "zstd -t rejects the shard"
tokens=$(sed -n 's/.*"tokens":[[:space:]]*\([0-9]*\).*/\1/p' "$T/one/manifest.json" | tail -1)
bytes=$(zstd -q -dc "$S" | wc -c)
[ "$bytes" -eq $((tokens * 2)) ] || fail "zstd -d gives $bytes bytes for $tokens 16-bit tokens"
zstd -q -dc "$S" | od -An -v -tu2 -w2 | tr -d ' ' >"$T/shard.ids"
$MPILM tokenize --vocab "$BERT" <"$TINY" | tr ' ' '\n' | sed '/^$/d' >"$T/direct.ids"
cmp -s "$T/shard.ids" "$T/direct.ids" || fail "the shard's token stream differs from mpilm tokenize"

cp "$TINY" "$T/copy.txt"
$MPILM prep --vocab "$BERT" --overwrite --out "$T/one" "$TINY" "$T/copy.txt" >"$T/log" 2>&1 || fail "prep of two files: $(cat "$T/log")"
$MPILM inspect "$T/one" | grep -q "2 shards, .* 404 documents, 3482 sentences, 91160 tokens" || fail "two files: $($MPILM inspect "$T/one")"
$MPILM prep --vocab "$BERT" --overwrite --out "$T/one" "$TINY" >"$T/log" 2>&1 || fail "prep again: $(cat "$T/log")"
diff -r "$T/one" "$T/two" >/dev/null || fail "preparing into an existing dataset does not replace it"

$MPIRUN -np 2 $MPILM prep --train-vocab 2000 --tokenizer wordpiece --out "$T/trained" "$TINY" >"$T/log" 2>&1 ||
  fail "prep --train-vocab: $(cat "$T/log")"
$MPILM inspect "$T/trained" | grep -q "vocab 2000 tokens" || fail "trained vocabulary size"

printf 'Good line.\n\nBad \377 line.\n' >"$T/bad.txt"
err=$($MPILM prep --vocab "$BERT" --out "$T/bad" "$T/bad.txt" 2>&1) && fail "invalid UTF-8 accepted"
echo "$err" | grep -q "bad.txt: invalid UTF-8 at line 3, byte offset 16 (byte 0xff)" || fail "UTF-8 message: $err"
$MPILM prep --vocab "$BERT" --replace-invalid --out "$T/bad" "$T/bad.txt" >/dev/null 2>&1 || fail "--replace-invalid"
: >"$T/empty.txt"
err=$($MPILM prep --vocab "$BERT" --out "$T/e" "$T/empty.txt" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "empty.txt: empty input" || fail "empty input (exit $rc): $err"

cp "$S" "$T/s.zst"
$MPILM inspect "$T/s.zst" | grep -q "every checksum verified: ok" || fail "inspect of a shard"
size=$(wc -c <"$S")
head -c $((size - 7)) "$S" >"$T/s.zst"
err=$($MPILM inspect "$T/s.zst" 2>&1) && fail "a truncated shard passed"
echo "$err" | grep -q "s.zst: truncated at byte" || fail "truncation message: $err"
cp "$S" "$T/s.zst"
printf '\377' | dd of="$T/s.zst" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
err=$($MPILM inspect "$T/s.zst" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "s.zst: checksum mismatch in the data of frame 0 at byte" || fail "flipped byte (exit $rc): $err"
cp "$S" "$T/s.zst"
printf '\002' | dd of="$T/s.zst" bs=1 seek=16 conv=notrunc 2>/dev/null
err=$($MPILM inspect "$T/s.zst" 2>&1) && fail "a newer version passed"
echo "$err" | grep -q "format version 2 at byte 16 is not supported" || fail "version message: $err"
cp "$S" "$T/one/train-00000.zst.bak"
printf 'x' | dd of="$T/one/train-00000.zst" bs=1 seek=$((size - 3)) conv=notrunc 2>/dev/null
err=$($MPILM inspect "$T/one" 2>&1) && fail "a damaged dataset shard passed"
echo "$err" | grep -q "train-00000.zst" || fail "dataset damage message: $err"
mv "$T/one/train-00000.zst.bak" "$T/one/train-00000.zst"
echo "zzz-new-token" >>"$T/one/vocab.txt"
err=$($MPILM inspect "$T/one" 2>&1) && fail "a replaced vocabulary passed"
echo "$err" | grep -q "manifest.json: vocabulary fingerprint mismatch" || fail "fingerprint message: $err"
printf 'MPILM?' >"$T/other.bin"
err=$($MPILM inspect "$T/other.bin" 2>&1) && fail "a random file passed"
echo "$err" | grep -q "not a shard, dataset or checkpoint" || fail "unknown path message: $err"
echo "prep_cli: ok"

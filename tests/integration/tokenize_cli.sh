#!/bin/sh
# mpilm tokenize: ids and --json output for both tokenizers, kind detection,
# one output line per input line (empty lines included), and bad usage.
MPILM=${MPILM:-./mpilm}
SHARED=${MPILM_SHARED:-../shared}
GPT2=$SHARED/vocab/gpt2
BERT=$SHARED/vocab/bert-base-uncased
[ -f "$GPT2/encoder.json" ] && [ -f "$BERT/vocab.txt" ] || { echo "skip: no vocabularies under $SHARED/vocab"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

out=$(printf 'Hello world\n\nIt'"'"'s  ok \n' | $MPILM tokenize --vocab "$GPT2") || fail "bpe tokenize exited $?"
[ "$out" = "$(printf '15496 995\n\n1026 338 220 12876 220')" ] || fail "bpe ids: $out"

out=$(printf 'Hello, world!\n' | $MPILM tokenize --vocab "$BERT" --json) || fail "wordpiece --json exited $?"
[ "$out" = '{"ids":[7592,1010,2088,999],"tokens":["hello",",","world","!"]}' ] || fail "wordpiece json: $out"

out=$(printf 'say "hi"\\\n' | $MPILM tokenize --vocab "$GPT2" --tokenizer bpe --json) || fail "bpe --json exited $?"
[ "$out" = '{"ids":[16706,366,5303,1,59],"tokens":["say","Ġ\"","hi","\"","\\"]}' ] || fail "bpe json escaping: $out"

n=$(seq 1 50 | $MPILM tokenize --vocab "$BERT" | wc -l)
[ "$n" -eq 50 ] || fail "50 lines in gave $n lines out"

err=$($MPILM tokenize --vocab /nonexistent-vocab 2>&1 </dev/null) && fail "missing vocab accepted"
echo "$err" | grep -q "no vocabulary found" || fail "missing vocab message: $err"
err=$($MPILM tokenize --vocab "$GPT2" --tokenizer sentencepiece 2>&1 </dev/null); rc=$?
[ $rc -eq 2 ] || fail "bad --tokenizer exit $rc"
echo "$err" | grep -q "must be bpe or wordpiece" || fail "bad --tokenizer message: $err"
err=$($MPILM tokenize --vocab "$GPT2" --tokenizer wordpiece 2>&1 </dev/null) && fail "wrong kind accepted"
echo "$err" | grep -q "vocab.txt: missing" || fail "wrong kind message: $err"
$MPILM tokenize </dev/null 2>/dev/null; [ $? -eq 2 ] || fail "no --vocab should exit 2"
echo "tokenize_cli: ok"

#!/bin/sh
# mpilm prep's input formats end to end: --jsonl gives the same dataset, byte
# for byte (shards and manifest), as the text prep of the same documents, for
# BERT (wordpiece) and GPT (bpe), also with --text-key, under -np 2 and with
# --valid-fraction; gzip and zstd input equals the plain file (told by magic
# bytes, not by name); --split-sentences cuts lines into sentences; bad JSON
# lines are named by file:line and what was expected; corrupt and truncated
# compressed input is named with the compressed byte offset.
MPILM=${MPILM:-./mpilm}
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
SHARED=${MPILM_SHARED:-../shared}
TINY=$SHARED/corpora/tiny.txt
BERT=$SHARED/vocab/bert-base-uncased
GPT=$SHARED/vocab/gpt2
[ -f "$TINY" ] && [ -f "$BERT/vocab.txt" ] && [ -d "$GPT" ] || { echo "skip: no corpora/vocabularies under $SHARED"; exit 77; }
command -v python3 >/dev/null && command -v zstd >/dev/null && command -v gzip >/dev/null ||
  { echo "skip: needs python3, zstd and gzip"; exit 77; }
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL prep_input: $*"; exit 1; }

# the documents of tiny.txt (blank-line separated) as JSON lines, text under KEY
to_jsonl() {
  python3 - "$TINY" "$1" <<'PY'
import json, sys
path, key = sys.argv[1], sys.argv[2]
docs, cur = [], []
for line in open(path, 'rb').read().decode('utf-8').split('\n'):
    if line.rstrip('\r').strip(' \t') == '':
        if cur: docs.append(cur)
        cur = []
    else:
        cur.append(line)
if cur: docs.append(cur)
for i, d in enumerate(docs):
    obj = {'id': i, key: '\n'.join(d)} if i % 2 else {key: '\n'.join(d), 'meta': {'n': len(d)}}
    print(json.dumps(obj, ensure_ascii=(i % 3 == 0)))
    if i == 5: print(json.dumps({key: ''}))  # an empty text: no document
PY
}
to_jsonl text >"$T/docs.jsonl" || fail "making the JSON lines"
to_jsonl body >"$T/body.jsonl" || fail "making the JSON lines"

for vocab in "$BERT" "$GPT"; do
  $MPILM prep --vocab "$vocab" --out "$T/text" "$TINY" >"$T/log" 2>&1 || fail "text prep: $(cat "$T/log")"
  $MPILM prep --vocab "$vocab" --jsonl --out "$T/json" "$T/docs.jsonl" >"$T/log" 2>&1 || fail "--jsonl: $(cat "$T/log")"
  diff -r "$T/text" "$T/json" >/dev/null || fail "--jsonl with $vocab differs from the text prep: $(diff -r "$T/text" "$T/json" | head -5)"
  $MPIRUN -np 2 $MPILM prep --vocab "$vocab" --jsonl --text-key body --out "$T/body" "$T/body.jsonl" >"$T/log" 2>&1 ||
    fail "--jsonl --text-key body -np 2: $(cat "$T/log")"
  diff -r "$T/text" "$T/body" >/dev/null || fail "--text-key body under -np 2 with $vocab differs from the text prep"
  rm -rf "$T/text" "$T/json" "$T/body"
done
$MPILM prep --vocab "$BERT" --valid-fraction 0.2 --out "$T/text" "$TINY" >/dev/null 2>&1 || fail "text prep with a split"
$MPILM prep --vocab "$BERT" --valid-fraction 0.2 --jsonl --out "$T/json" "$T/docs.jsonl" >/dev/null 2>&1 ||
  fail "--jsonl with a split"
# the held-out choice is keyed by byte offsets, which differ between the two files: compare totals only
grep -q valid_shards "$T/json/manifest.json" || fail "--jsonl --valid-fraction made no valid split"
rm -rf "$T/text" "$T/json"

# compressed input: the same dataset as the plain file, whatever the file is called
gzip -c "$TINY" >"$T/plain-looking.txt"
zstd -q -c "$TINY" >"$T/tiny.data"
$MPILM prep --vocab "$BERT" --out "$T/plain" "$TINY" >/dev/null 2>&1 || fail "plain prep"
for f in plain-looking.txt tiny.data; do
  $MPILM prep --vocab "$BERT" --out "$T/c" "$T/$f" >"$T/log" 2>&1 || fail "prep of compressed $f: $(cat "$T/log")"
  diff -r "$T/plain" "$T/c" >/dev/null || fail "compressed $f gives another dataset than the plain text"
  rm -rf "$T/c"
done
gzip -c "$T/docs.jsonl" >"$T/docs.jsonl.gz"
$MPILM prep --vocab "$BERT" --jsonl --out "$T/c" "$T/docs.jsonl.gz" >/dev/null 2>&1 || fail "--jsonl of a gzip file"
diff -r "$T/plain" "$T/c" >/dev/null || fail "--jsonl of a gzip file differs from the text prep"
rm -rf "$T/c"
size=$(wc -c <"$T/tiny.data")
head -c $((size / 2)) "$T/tiny.data" >"$T/cut.zst"
err=$($MPILM prep --vocab "$BERT" --out "$T/c" "$T/cut.zst" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "cut.zst: truncated zstd data at compressed byte $((size / 2))" ||
  fail "truncated zstd (exit $rc): $err"
cp "$T/tiny.data" "$T/bad.zst"
printf '\377\377\377\377\377\377\377\377' | dd of="$T/bad.zst" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
err=$($MPILM prep --vocab "$BERT" --out "$T/c" "$T/bad.zst" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "bad.zst: corrupt zstd data at compressed byte [0-9]" || fail "corrupt zstd (exit $rc): $err"
size=$(wc -c <"$T/plain-looking.txt")
head -c $((size - 100)) "$T/plain-looking.txt" >"$T/cut.gz"
err=$($MPILM prep --vocab "$BERT" --out "$T/c" "$T/cut.gz" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "cut.gz: truncated gzip data at compressed byte $((size - 100))" ||
  fail "truncated gzip (exit $rc): $err"
cp "$T/plain-looking.txt" "$T/bad.gz"
printf '\340' | dd of="$T/bad.gz" bs=1 seek=3 conv=notrunc 2>/dev/null # reserved header flags
err=$($MPILM prep --vocab "$BERT" --out "$T/c" "$T/bad.gz" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "bad.gz: corrupt gzip data at compressed byte" || fail "corrupt gzip (exit $rc): $err"
[ ! -e "$T/c" ] || fail "a failed prep left a dataset"
err=$($MPILM prep --train-vocab 500 --tokenizer wordpiece --out "$T/c" "$T/tiny.data" 2>&1) || fail "--train-vocab on zstd input: $err"
rm -rf "$T/c"

# --split-sentences
printf 'Dr. Smith met J. R. Doe at 3.14 p.m. on Main St. today. It rained! Did it? "Yes." (Quite.) The U.S. team won, e.g. twice. End\n' >"$T/s.txt"
printf 'Dr. Smith met J. R. Doe at 3.14 p.m. on Main St. today.\nIt rained!\nDid it?\n"Yes."\n(Quite.)\nThe U.S. team won, e.g. twice.\nEnd\n' >"$T/lines.txt"
$MPILM prep --vocab "$BERT" --split-sentences --out "$T/s1" "$T/s.txt" >/dev/null 2>&1 || fail "--split-sentences"
$MPILM prep --vocab "$BERT" --out "$T/s2" "$T/lines.txt" >/dev/null 2>&1 || fail "prep of the sentence lines"
$MPILM inspect "$T/s1" | grep -q "1 documents, 7 sentences" || fail "--split-sentences: $($MPILM inspect "$T/s1")"
cmp -s "$T/s1/train-00000.zst" "$T/s2/train-00000.zst" || fail "--split-sentences cut other sentences than the rule"
$MPILM prep --vocab "$BERT" --out "$T/s3" "$T/s.txt" >/dev/null 2>&1 || fail "prep without --split-sentences"
$MPILM inspect "$T/s3" | grep -q "1 documents, 1 sentences" || fail "without --split-sentences: $($MPILM inspect "$T/s3")"

# bad JSON lines: file:line and what was expected (exit 1, as bad text input)
check_bad() { # LINE_CONTENT EXPECTED_PART
  printf '{"text": "fine."}\n%s\n' "$1" >"$T/bad.jsonl"
  err=$($MPILM prep --vocab "$BERT" --jsonl --out "$T/c" "$T/bad.jsonl" 2>&1); rc=$?
  [ $rc -eq 1 ] && echo "$err" | grep -q "bad.jsonl: line 2: expected a JSON object with a string \"text\".*found $2" ||
    fail "bad line '$1' (exit $rc): $err"
}
check_bad '{"text": "unterminated' "text that is not valid JSON"
check_bad '["text"]' "JSON that is not an object"
check_bad '{"body": "x"}' "an object without that key"
check_bad '{"text": 3}' "a value that is not a string"
err=$($MPILM prep --vocab "$BERT" --text-key body --out "$T/c" "$TINY" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q -- "--text-key needs --jsonl" || fail "--text-key without --jsonl (exit $rc): $err"
echo "prep_input: ok"

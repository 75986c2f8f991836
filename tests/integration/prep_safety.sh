#!/bin/sh
# mpilm prep never damages the dataset it was pointed at: a failed prep (blank
# input, invalid UTF-8 with --train-vocab, a failure on another rank) leaves the
# dataset bit for bit and no staging directory behind; an existing dataset is
# replaced only with --overwrite, a non-empty directory that is not a dataset
# never; and the inputs' messages and exit statuses (missing input, directory).
MPILM=${MPILM:-./mpilm}
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# a small corpus: 40 documents of two sentences
i=0
while [ $i -lt 40 ]; do
  printf 'The cat number %d sat on the mat.\nIt was a good day for cats and dogs.\n\n' $i
  i=$((i + 1))
done >"$T/good.txt"
sed 's/cat/owl/g' "$T/good.txt" >"$T/other.txt"
prep() { $MPILM prep --train-vocab 300 --tokenizer bpe "$@"; }
unchanged() { # what
  diff -r "$T/ds" "$T/ds.orig" >/dev/null || fail "$1 changed the dataset"
  $MPILM inspect "$T/ds" >/dev/null 2>&1 || fail "$1: the dataset no longer verifies"
  [ ! -e "$T/.ds.prep-staging" ] || fail "$1 left the staging directory $T/.ds.prep-staging"
}

prep --out "$T/ds" "$T/good.txt" >"$T/log" 2>&1 || fail "prep: $(cat "$T/log")"
cp -r "$T/ds" "$T/ds.orig"

# blank-only input: exit 2, the dataset untouched (it used to get a 0-token manifest)
printf '\n  \n\t\n\n' >"$T/blank.txt"
err=$(prep --overwrite --out "$T/ds" "$T/blank.txt" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "no sentence in the text" || fail "blank input (exit $rc): $err"
unchanged "a blank-only input"

# invalid UTF-8 with --train-vocab: the vocabulary used to be overwritten first
printf 'Good line.\n\nBad \377 line.\n' >"$T/bad.txt"
err=$(prep --overwrite --out "$T/ds" "$T/bad.txt" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "bad.txt: invalid UTF-8 at line 3" || fail "invalid UTF-8 (exit $rc): $err"
unchanged "invalid UTF-8 with --train-vocab"

# two ranks, the second one's piece (the second file) is bad: the whole job ends
err=$($MPIRUN -np 2 $MPILM prep --train-vocab 300 --tokenizer bpe --replace-invalid --overwrite --out "$T/ds" \
  "$T/good.txt" "$T/bad.txt" 2>&1) || fail "two ranks, --replace-invalid: $err"
rm -rf "$T/ds" && cp -r "$T/ds.orig" "$T/ds"
err=$(timeout 120 $MPIRUN -np 2 $MPILM prep --vocab "$T/ds.orig" --overwrite --out "$T/ds" "$T/good.txt" "$T/bad.txt" 2>&1)
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "$err" | grep -q "bad.txt: invalid UTF-8" ||
  fail "a failure on rank 1 (exit $rc): $err"
unchanged "a failure on rank 1"

# an existing dataset without --overwrite: refused, exit 2, naming it and the flag
err=$(prep --out "$T/ds" "$T/other.txt" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "ds: --out exists and is not empty.*pass --overwrite" ||
  fail "existing dataset without --overwrite (exit $rc): $err"
unchanged "prep without --overwrite"

# with --overwrite a complete new dataset replaces it
prep --overwrite --out "$T/ds/" "$T/other.txt" >"$T/log" 2>&1 || fail "prep --overwrite: $(cat "$T/log")"
diff -r "$T/ds" "$T/ds.orig" >/dev/null && fail "--overwrite did not replace the dataset"
$MPILM inspect "$T/ds" >/dev/null 2>&1 || fail "the replacing dataset does not verify"
ls -A "$T" | grep -q "prep-staging" && fail "staging directories left: $(ls -A "$T")"
prep --out "$T/fresh" "$T/other.txt" >/dev/null 2>&1 || fail "prep into a new directory"
diff -r "$T/ds" "$T/fresh" >/dev/null || fail "the replacing dataset differs from a fresh one"

# a non-empty directory that is not a dataset: refused even with --overwrite, kept
mkdir "$T/mine" && echo "my notes" >"$T/mine/notes.txt"
err=$(prep --overwrite --out "$T/mine" "$T/good.txt" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "mine: --overwrite replaces only a dataset.*found 'notes.txt'" ||
  fail "--overwrite of a directory that is no dataset (exit $rc): $err"
[ "$(cat "$T/mine/notes.txt")" = "my notes" ] && [ "$(ls -A "$T/mine")" = notes.txt ] || fail "the directory was changed"
mkdir "$T/empty" && prep --out "$T/empty" "$T/good.txt" >/dev/null 2>&1 || fail "prep into an empty directory"

# inputs: a missing file and a directory are bad usage (exit 2) saying what they are
err=$(prep --out "$T/x" "$T/nothing.txt" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "nothing.txt: cannot read the input (No such file or directory)" ||
  fail "missing input (exit $rc): $err"
err=$(prep --out "$T/x" "$T/mine" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "mine: the input is a directory (expected a text file)" ||
  fail "directory input (exit $rc): $err"
[ ! -e "$T/x" ] || fail "a refused prep created its --out"
echo "prep_safety: ok"

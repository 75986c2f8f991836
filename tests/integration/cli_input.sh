#!/bin/sh
# Configurations that used to train something else than asked, silently: a NUL
# byte (the text was cut there), an empty file (the default model), AdamW's
# beta1 = 1, beta2 = 1 or eps = 0 (every parameter NaN after step 1). Each is
# refused before any work with exit 2, naming the file, line or key.
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
echo "cli_input: ok"

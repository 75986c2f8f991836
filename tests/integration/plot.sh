#!/bin/sh
# mpilm plot: PNG and SVG from one or several runs' metrics.jsonl, overlaid,
# each series titled by its run's directory name, in four panels (loss with the
# validation loss where a run has val_loss rows, learning rate, grad norm,
# tokens/s); the gnuplot script (PREFIX.gp) and data (PREFIX.dat) kept beside
# them; rows that lack a key skipped; clear errors on bad input (a damaged line
# named by file and line, a run without metrics.jsonl named).
MPILM=${MPILM:-./mpilm}
. tests/common/tiny.sh
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL plot: $*"; exit 1; }
png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; }
mkdir "$d/one"
i=10
while [ $i -le 200 ]; do
  echo "{\"step\":$i,\"loss\":$((900 - i))e-2,\"mlm_loss\":$((800 - i))e-2,\"nsp_loss\":0.5,\"lr\":1e-4,\"grad_norm\":1,\"tokens_per_s\":$((8000 + i)),\"mfu\":0.5,\"elapsed_s\":$i}"
  i=$((i + 10))
done > "$d/one/metrics.jsonl"
"$MPILM" plot "$d/one" 2>/dev/null || fail "plot of a good run failed"
png "$d/one/curves.png" || fail "curves.png is not a PNG"
grep -q "<svg" "$d/one/curves.svg" && grep -q "mlm_loss" "$d/one/curves.svg" && grep -q "tokens/s" "$d/one/curves.svg" ||
  fail "curves.svg lacks the plot or its series"
grep -q "nsp_loss" "$d/one/curves.svg" || fail "curves.svg lacks nsp_loss"
grep -q "title 'one nsp_loss'" "$d/one/curves.gp" || fail "the series are not titled by the run's name"
! grep -q "'one lm_loss'" "$d/one/curves.gp" || fail "a series the run does not have (lm_loss) is drawn"
"$MPILM" plot "$d/one" --out "$d/other" 2>/dev/null && [ -s "$d/other.png" ] || fail "--out PREFIX not honoured"

# two tiny trainings overlaid; alpha also has validation rows (step + val_loss only)
tiny_ini "$d/tiny.ini" steps=4 || fail "tiny_ini"
for run in alpha beta; do
  "$MPILM" train --config "$d/tiny.ini" --set run.dir="$d/$run" --set train.lr=$([ $run = alpha ] && echo 1e-3 || echo 3e-3) \
    > "$d/log" 2>&1 || { tail -5 "$d/log"; fail "training $run"; }
done
printf '{"step":2,"val_loss":6.1,"val_ppl":445.8}\n{"step":4,"val_loss":5.9,"val_ppl":365.0}\n' >> "$d/alpha/metrics.jsonl"
"$MPILM" plot "$d/alpha" "$d/beta/" --out "$d/both" > "$d/log" 2>&1 || { cat "$d/log"; fail "plot of two runs"; }
png "$d/both.png" && grep -q "<svg" "$d/both.svg" || fail "both.png / both.svg are not a PNG and an SVG"
for s in "title 'mpilm: alpha, beta'" "title 'alpha loss'" "title 'beta loss'" "title 'alpha val_loss'" \
  "title 'alpha lr'" "title 'beta lr'" "title 'alpha grad_norm'" "title 'beta grad_norm'" "title 'alpha tokens_per_s'" \
  "title 'beta tokens_per_s'" "set ylabel 'loss'" "set ylabel 'learning rate'" "set ylabel 'grad norm'" \
  "set ylabel 'tokens/s'" "index 0 using" "index 1 using"; do
  grep -qF "$s" "$d/both.gp" || fail "both.gp lacks $s"
done
! grep -q "beta val_loss" "$d/both.gp" || fail "a validation series is drawn for beta, which has none"
[ "$(grep -c '^set multiplot layout 4,1' "$d/both.gp")" = 2 ] || fail "both.gp does not draw four panels per terminal"
grep -q "^# run $d/alpha$" "$d/both.dat" && grep -q "^# run $d/beta/$" "$d/both.dat" || fail "both.dat lacks a run's block"
for s in "alpha val_loss" "beta loss" "grad norm" "learning rate"; do grep -q "$s" "$d/both.svg" || fail "both.svg lacks $s"; done
grep -q "(with validation loss)" "$d/log" || fail "the validation rows of alpha are not reported: $(cat "$d/log")"
# several runs without --out: curves.* in the current directory
m=$(cd "$(dirname "$MPILM")" && pwd)/$(basename "$MPILM")
(cd "$d" && "$m" plot alpha beta > log 2>&1) && png "$d/curves.png" || fail "several runs without --out: $(cat "$d/log")"

# bad input
msg=$("$MPILM" plot "$d/alpha" "$d/nonexistent" --out "$d/x" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$msg" | grep -q "run $d/nonexistent has no metrics" && echo "$msg" | grep -q "nonexistent/metrics.jsonl: cannot open" ||
  fail "missing run dir (exit $rc): $msg"
printf '{"step":1,"loss":2}\n{"step":2,"loss":\n' > "$d/one/metrics.jsonl"
msg=$("$MPILM" plot "$d/alpha" "$d/one" --out "$d/x" 2>&1) && fail "a damaged metrics file was accepted"
echo "$msg" | grep -q "one/metrics.jsonl:2: not a JSON object" || fail "damaged line not named: $msg"
printf '{"step":1,"loss":2}\n{"loss":3}\n' > "$d/one/metrics.jsonl"
msg=$("$MPILM" plot "$d/one" 2>&1) && fail "a record without step was accepted"
echo "$msg" | grep -q "metrics.jsonl:2: record without a numeric \"step\"" || fail "record without step not named: $msg"
: > "$d/one/metrics.jsonl"
msg=$("$MPILM" plot "$d/one" 2>&1) && fail "an empty metrics file was accepted"
echo "$msg" | grep -q "no records" || fail "empty metrics not explained: $msg"
msg=$("$MPILM" plot "$d/nonexistent" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$msg" | grep -q "nonexistent/metrics.jsonl: cannot open" || fail "missing run dir (exit $rc): $msg"
msg=$("$MPILM" plot 2>&1); [ $? -eq 2 ] || fail "missing RUN_DIR is not a usage error: $msg"
echo "plot: ok"

#!/bin/sh
# mpilm plot: PNG and SVG from a run's metrics.jsonl; clear errors on bad input.
MPILM=${MPILM:-./mpilm}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL plot: $*"; exit 1; }
i=10
while [ $i -le 200 ]; do
  echo "{\"step\":$i,\"loss\":$((900 - i))e-2,\"mlm_loss\":$((800 - i))e-2,\"nsp_loss\":0.5,\"lr\":1e-4,\"grad_norm\":1,\"tokens_per_s\":$((8000 + i)),\"mfu\":0.5,\"elapsed_s\":$i}"
  i=$((i + 10))
done > "$d/metrics.jsonl"
"$MPILM" plot "$d" 2>/dev/null || fail "plot of a good run failed"
[ "$(head -c 8 "$d/curves.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "curves.png is not a PNG"
grep -q "<svg" "$d/curves.svg" && grep -q "mlm_loss" "$d/curves.svg" && grep -q "tokens/s" "$d/curves.svg" ||
  fail "curves.svg lacks the plot or its series"
grep -q "nsp_loss" "$d/curves.svg" || fail "curves.svg lacks nsp_loss"
! grep -q "title 'lm_loss'" "$d/curves.gp" || fail "a series the run does not have (lm_loss) is drawn"
"$MPILM" plot "$d" --out "$d/other" && [ -s "$d/other.png" ] || fail "--out PREFIX not honoured"

printf '{"step":1,"loss":2}\n{"step":2,"loss":\n' > "$d/metrics.jsonl"
msg=$("$MPILM" plot "$d" 2>&1) && fail "a damaged metrics file was accepted"
echo "$msg" | grep -q "metrics.jsonl:2: not a JSON object" || fail "damaged line not named: $msg"
: > "$d/metrics.jsonl"
msg=$("$MPILM" plot "$d" 2>&1) && fail "an empty metrics file was accepted"
echo "$msg" | grep -q "no records" || fail "empty metrics not explained: $msg"
msg=$("$MPILM" plot "$d/nonexistent" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$msg" | grep -q "nonexistent/metrics.jsonl: cannot open" || fail "missing run dir (exit $rc): $msg"
msg=$("$MPILM" plot 2>&1); [ $? -eq 2 ] || fail "missing RUN_DIR is not a usage error: $msg"
echo "plot: ok"

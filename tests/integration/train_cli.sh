#!/bin/sh
# mpilm train on random data: metrics.jsonl fields, a repeating batch is
# overfitted, data parallel over 2 ranks equals 1 rank with the same global
# batch, bad configurations end with exit 2 naming the key.
MPILM=${MPILM:-./mpilm}
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL train_cli: $*"; exit 1; }
cat > "$d/tiny.ini" <<'INI'
[model]
family = gpt
n_layer = 2
d_model = 64
n_head = 4
d_ff = 128
seq_len = 32
max_positions = 32
vocab_size = 97
dropout = 0
[data]
source = random
random_samples = 8
[train]
steps = 80
micro_batch = 4
micro_batches = 2
lr = 3e-3
warmup_steps = 5
[log]
every = 10
INI
last_loss() { tail -1 "$1/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/'; }
first_loss() { head -1 "$1/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/'; }

for fam in gpt bert; do
  "$MPILM" train --config "$d/tiny.ini" --set model.family=$fam --set run.dir="$d/$fam" > "$d/$fam.log" 2>&1 ||
    { cat "$d/$fam.log"; fail "$fam training failed"; }
  [ "$(wc -l < "$d/$fam/metrics.jsonl")" -eq 8 ] || fail "$fam: expected 8 metrics lines (every 10 of 80 steps)"
  head -1 "$d/$fam/metrics.jsonl" | grep -q '"step":10,"loss":' || fail "$fam: metrics line lacks step/loss"
  for k in lr grad_norm tokens_per_s mfu elapsed_s; do
    grep -q "\"$k\":" "$d/$fam/metrics.jsonl" || fail "$fam: metrics lack $k"
  done
  grep -q "step 80/80 | loss" "$d/$fam.log" || fail "$fam: no progress line"
  grep -q "ETA" "$d/$fam.log" && grep -q "tok/s" "$d/$fam.log" && grep -q "MFU" "$d/$fam.log" || fail "$fam: progress line incomplete"
done
grep -q '"lm_loss":' "$d/gpt/metrics.jsonl" || fail "gpt metrics lack lm_loss"
grep -q '"mlm_loss":' "$d/bert/metrics.jsonl" && grep -q '"nsp_loss":' "$d/bert/metrics.jsonl" || fail "bert metrics lack mlm_loss/nsp_loss"
# a repeating batch of 8 samples: the model must memorise it
awk -v a="$(first_loss "$d/gpt")" -v b="$(last_loss "$d/gpt")" 'BEGIN { exit !(a > 2 && b < 0.5) }' ||
  fail "gpt did not overfit a repeating batch: loss $(first_loss "$d/gpt") -> $(last_loss "$d/gpt")"
awk -v a="$(first_loss "$d/bert")" -v b="$(last_loss "$d/bert")" 'BEGIN { exit !(b < a / 2) }' ||
  fail "bert did not overfit a repeating batch: loss $(first_loss "$d/bert") -> $(last_loss "$d/bert")"

# data parallel: 2 ranks x 1 micro-batch = 1 rank x 2 micro-batches, within 1e-5 in fp32 (in bf16 the
# order the micro-batches' gradients are summed in moves bf16 roundings of weights and logits:
# train_bf16.sh and tests/mpi/dist_bf16.c check those layouts with their derived tolerances)
$MPIRUN -np 2 "$MPILM" train --config "$d/tiny.ini" --set train.micro_batches=1 --set train.steps=20 \
  --set train.precision=fp32 --set data.random_samples=0 --set run.dir="$d/dp2" > "$d/dp2.log" 2>&1 ||
  { cat "$d/dp2.log"; fail "dp=2 failed"; }
"$MPILM" train --config "$d/tiny.ini" --set train.steps=20 --set train.precision=fp32 --set data.random_samples=0 \
  --set run.dir="$d/dp1" > "$d/dp1.log" 2>&1 || fail "dp=1 failed"
paste -d' ' "$d/dp1/metrics.jsonl" "$d/dp2/metrics.jsonl" | sed 's/[{}]//g' | awk '{
  split($1, a, ","); split($2, b, ",");
  for (i = 2; i <= 4; i++) { split(a[i], x, ":"); split(b[i], y, ":");
    d = x[2] - y[2]; if (d < 0) d = -d; if (d > 1e-5 * (x[2] < 0 ? -x[2] : x[2]) + 1e-6) { print "differ: " a[i] " vs " b[i]; bad = 1 } } }
  END { exit bad }' || fail "dp=2 differs from 1 rank with the same global batch"

# bad configurations: exit 2, the key named
msg=$("$MPILM" train --config "$d/tiny.ini" --set model.n_head=5 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$msg" | grep -q "model.n_head" || fail "n_head not dividing d_model (exit $rc): $msg"
msg=$("$MPILM" train --config "$d/tiny.ini" --set model.seq_len=64 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$msg" | grep -q "max_positions" || fail "seq_len > max_positions (exit $rc): $msg"
msg=$("$MPILM" train --config "$d/missing.ini" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$msg" | grep -q "missing.ini" || fail "missing config (exit $rc): $msg"
echo "train_cli: ok"

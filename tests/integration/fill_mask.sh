#!/bin/sh
# mpilm generate on a BERT checkpoint (fill-mask): for each [MASK] of the
# prompt the top-k tokens (--top-k, default 5) with their softmax
# probabilities, as text and as --json (an array per mask of {token, id,
# probability}), equal to PyTorch's softmax of the MLM logits of the exported
# model within a derived tolerance (tests/reference/check_fill_mask.py; the run
# is fp32: generate has no bf16 path); under mpirun as GPT's generate (each
# rank prints the same); refusals with exit 2: no [MASK], a prompt longer than
# max_positions, a GPT sampling option. The PyTorch part skips (77) without a
# Python with torch, after the rest has run.
MPILM=${MPILM:-./mpilm}
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
PYTHON=${PYTHON:-/usr/bin/python3}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL fill_mask: $*"; exit 1; }

"$MPILM" prep --train-vocab 600 --tokenizer wordpiece --out "$d/wp" datasets/sample/sample.txt > "$d/log" 2>&1 ||
  { cat "$d/log"; fail prep; }
# lr 0.1 for 5 steps: the weights leave the near-linear regime of their init
# (as export_torch.sh), so the probabilities are far from uniform
"$MPILM" train --config /dev/null --set model.family=bert --set model.n_layer=2 --set model.d_model=32 \
  --set model.n_head=4 --set model.d_ff=64 --set model.seq_len=16 --set model.max_positions=24 \
  --set model.vocab_size=600 --set data.source=dataset --set data.path="$d/wp" --set train.steps=5 \
  --set train.micro_batch=4 --set train.lr=1e-1 --set run.dir="$d/bert" > "$d/log" 2>&1 || { tail -5 "$d/log"; fail training; }

prompt="It is a truth universally [MASK] that a single [MASK] must be in want"
"$MPILM" generate --ckpt "$d/bert" --prompt "$prompt" > "$d/text" 2> "$d/log" || { cat "$d/log"; fail "fill-mask"; }
[ "$(grep -c '^\[MASK\] [12] (position' "$d/text")" = 2 ] || fail "text output lacks one header per mask: $(cat "$d/text")"
[ "$(grep -c '^  .* 0\.[0-9]*$' "$d/text")" = 10 ] || fail "text output lacks 5 fills per mask: $(cat "$d/text")"
"$MPILM" generate --ckpt "$d/bert" --prompt "$prompt" --json > "$d/fill.json" || fail "fill-mask --json"
"$MPILM" generate --ckpt "$d/bert" --prompt "$prompt" --json --top-k 12 > "$d/fill12.json" || fail "fill-mask --top-k 12"
n=$(grep -o '"probability"' "$d/fill12.json" | wc -l)
[ "$n" = 24 ] || fail "--top-k 12 gave $n fills for 2 masks"
grep -q '^\[\[{"token":"[^"]*","id":[0-9]*,"probability":[0-9.e-]*}' "$d/fill.json" || fail "--json shape: $(cat "$d/fill.json")"
# the same under mpirun: each rank prints it, as generate does
$MPIRUN -np 2 "$MPILM" generate --ckpt "$d/bert" --prompt "$prompt" --json > "$d/mpi.json" 2> "$d/log" ||
  { cat "$d/log"; fail "fill-mask under mpirun"; }
[ "$(sort -u "$d/mpi.json")" = "$(cat "$d/fill.json")" ] && [ "$(wc -l < "$d/mpi.json")" = 2 ] ||
  fail "under mpirun -np 2: $(cat "$d/mpi.json")"

# refusals (exit 2)
msg=$("$MPILM" generate --ckpt "$d/bert" --prompt "no mask here" 2>&1); rc=$?
[ $rc = 2 ] && echo "$msg" | grep -q "no \[MASK\]" || fail "a prompt without [MASK] (exit $rc): $msg"
long=$(printf '%s ' $(seq 1 30))
msg=$("$MPILM" generate --ckpt "$d/bert" --prompt "$long [MASK]" 2>&1); rc=$?
[ $rc = 2 ] && echo "$msg" | grep -q "max_positions 24" || fail "a prompt longer than max_positions (exit $rc): $msg"
msg=$("$MPILM" generate --ckpt "$d/bert" --prompt "a [MASK]" --temperature 0 2>&1); rc=$?
[ $rc = 2 ] && echo "$msg" | grep -q -- "--temperature" || fail "--temperature on BERT (exit $rc): $msg"
msg=$("$MPILM" generate --ckpt "$d/bert" --prompt "a [MASK]" --top-k -1 2>&1); rc=$?
[ $rc = 2 ] || fail "--top-k -1 (exit $rc): $msg"

# PyTorch on the exported model: the same probabilities
"$PYTHON" -c "import torch, numpy" 2>/dev/null || { echo "fill_mask: torch part skipped: $PYTHON has no torch (make test-deps)"; exit 77; }
"$MPILM" export --ckpt "$d/bert" --format hf --out "$d/hf" > "$d/log" 2>&1 || { cat "$d/log"; fail export; }
ids=$(printf '%s\n' "$prompt" | "$MPILM" tokenize --vocab "$d/bert/latest/vocab" | tr ' ' ',')
for f in fill fill12; do
  "$PYTHON" tests/reference/check_fill_mask.py "$d/hf" "$ids" "$d/$f.json" || fail "PyTorch disagrees ($f.json)"
done
echo "fill_mask: ok"

#!/bin/sh
# Non-finite numbers are never committed and never written as JSON:
#  - a parameter that is not finite after an update stops training before the
#    checkpoint of that step, naming the step and the tensor; `latest` keeps
#    naming the previous checkpoint; on 2 ranks with ZeRO 1 only one rank holds
#    the tensor, and both stop (no checkpoint, no hang).
#  - eval of a model that gives NaN writes null (valid JSON) and exits 1.
# The non-finite value is a real input: an exported checkpoint whose bytes are
# edited (an unused position row set to +inf: the loss and the gradients stay
# finite, so only the parameter check can see it; a LayerNorm weight set to NaN
# for eval), imported back.
MPILM=${MPILM:-./mpilm}
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
command -v python3 >/dev/null || { echo "skip: no python3 to edit the safetensors file"; exit 77; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL numerics_guard: $*"; exit 1; }

i=0
while [ $i -lt 40 ]; do
  printf 'The cat number %d sat on the mat.\nIt was a good day for cats and dogs.\n\n' $i
  i=$((i + 1))
done > "$d/text.txt"
"$MPILM" prep --train-vocab 300 --tokenizer bpe --out "$d/ds" "$d/text.txt" > "$d/log" 2>&1 || { cat "$d/log"; fail prep; }
cat > "$d/tiny.ini" <<'INI'
[model]
n_layer = 1
d_model = 32
n_head = 4
d_ff = 64
seq_len = 16
max_positions = 32
vocab_size = 300
dropout = 0
[data]
source = dataset
[train]
steps = 2
micro_batch = 2
[log]
every = 1
INI
"$MPILM" train --config "$d/tiny.ini" --set data.path="$d/ds" --set run.dir="$d/src" > "$d/log" 2>&1 ||
  { tail -5 "$d/log"; fail "training the source model"; }
"$MPILM" export --ckpt "$d/src" --format hf --out "$d/hf" > "$d/log" 2>&1 || { cat "$d/log"; fail export; }

# edited DIR TENSOR INDEX VALUE: a copy of the export with one float of TENSOR set, imported as run DIR
edited() {
  rm -rf "$d/hf-$1" && cp -r "$d/hf" "$d/hf-$1" || fail "copy of the export"
  python3 - "$d/hf-$1/model.safetensors" "$2" "$3" "$4" <<'PY' || fail "editing the safetensors file"
import json, struct, sys
path, name, index, value = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    info = json.loads(f.read(n))[name]
    assert info["dtype"] == "F32"
    begin, end = info["data_offsets"]
    at = begin + 4 * (index if index >= 0 else (end - begin) // 4 + index)
    f.seek(8 + n + at)
    f.write(struct.pack("<f", value))
PY
  "$MPILM" import --hf "$d/hf-$1" --out "$d/$1" > "$d/log" 2>&1 || { cat "$d/log"; fail "import of $1"; }
}

# +inf in the last row of the position table (max_positions 32, seq_len 16: never read)
edited inf transformer.wpe.weight -1 inf
for np in 1 2; do
  rm -rf "$d/run" && cp -r "$d/inf" "$d/run"
  set -- "$MPILM" train --config "$d/tiny.ini" --set data.source=random --set run.dir="$d/run" --set train.steps=3 \
    --set ckpt.every_steps=1 --set dist.zero=1 --resume auto
  [ $np = 1 ] || set -- $MPIRUN -np 2 "$@"
  timeout 120 "$@" > "$d/log" 2>&1; rc=$?
  [ $rc -ne 0 ] && [ $rc -ne 124 ] || { tail -5 "$d/log"; fail "$np rank(s): a non-finite parameter did not stop training (exit $rc)"; }
  [ $np = 2 ] || [ $rc -eq 1 ] || fail "exit $rc, expected 1"
  grep -q "parameter transformer.wpe.weight is not finite after the update of step 1" "$d/log" ||
    { tail -5 "$d/log"; fail "$np rank(s): the message does not name the tensor and the step"; }
  ls -A "$d/run" | grep -q "step-0000001" && fail "$np rank(s): a checkpoint of the non-finite step was written"
  [ "$(readlink "$d/run/latest")" = step-0000000 ] || fail "$np rank(s): latest is $(readlink "$d/run/latest")"
done

# NaN in the final LayerNorm's weight: every logit NaN
edited nan transformer.ln_f.weight 0 nan
"$MPILM" eval --ckpt "$d/nan" --data "$d/ds" --json "$d/eval.json" > "$d/log" 2>&1; rc=$?
[ $rc -eq 1 ] || { cat "$d/log"; fail "eval of a NaN model exited $rc, expected 1"; }
grep -q "eval's perplexity is not finite.*null in the --json file" "$d/log" || { cat "$d/log"; fail "eval message"; }
python3 -c '
import json, sys
def no(c): raise ValueError("non-finite JSON constant " + c)
r = json.load(open(sys.argv[1]), parse_constant=no)
assert r["perplexity"] is None and r["lm_loss"] is None, r
' "$d/eval.json" || fail "eval --json of a NaN model: $(cat "$d/eval.json")"
echo "numerics_guard: ok"

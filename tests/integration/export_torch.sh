#!/bin/sh
# Exported Hugging Face files, loaded by PyTorch's own modules
# (tests/reference/check_export.py), reproduce mpilm's logits within 1e-4,
# for GPT and BERT. Skips when no Python with torch is installed.
MPILM=${MPILM:-./mpilm}
PYTHON=${PYTHON:-/usr/bin/python3}
BUILD=${BUILD:-build}
"$PYTHON" -c "import torch, numpy" 2>/dev/null || { echo "export_torch: skipped: $PYTHON has no torch (make bench-deps)"; exit 77; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL export_torch: $*"; exit 1; }
for fam in gpt bert; do
  "$MPILM" train --set model.family=$fam --set model.n_layer=2 --set model.d_model=32 --set model.n_head=4 \
    --set model.d_ff=64 --set model.seq_len=16 --set model.max_positions=20 --set model.vocab_size=97 \
    --set train.steps=5 --set train.micro_batch=4 --set train.lr=1e-2 --set run.dir="$d/$fam" \
    --config /dev/null > "$d/log" 2>&1 || { tail -3 "$d/log"; fail "$fam training"; }
  "$MPILM" export --ckpt "$d/$fam" --format hf --out "$d/hf-$fam" > "$d/log" 2>&1 || { cat "$d/log"; fail "$fam export"; }
  "$BUILD/tests/tools/logits_of" "$d/$fam" "$d/logits-$fam.safetensors" 3 7 || fail "$fam logits_of"
  "$PYTHON" tests/reference/check_export.py "$d/hf-$fam" "$d/logits-$fam.safetensors" || fail "$fam: PyTorch disagrees"
done
echo "export_torch: ok"

#!/bin/sh
# mpilm import checks config.json against model.safetensors before building
# anything: a layer count that would drop (or miss) a layer, a hidden size or
# position count that disagrees with the tensors' shapes, an unknown tensor,
# and a value out of range (vocab_size 2^40: "out of range", not "out of
# memory") are refused with exit 1, naming the tensor or key; nothing is written.
MPILM=${MPILM:-./mpilm}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL import_config: $*"; exit 1; }
. tests/common/tiny.sh
tiny_ini "$d/tiny.ini" || exit 1
"$MPILM" train --config "$d/tiny.ini" --set run.dir="$d/run" > "$d/log" 2>&1 || { tail -5 "$d/log"; fail "training"; }
"$MPILM" export --ckpt "$d/run" --format hf --out "$d/hf" > "$d/log" 2>&1 || { cat "$d/log"; fail "export"; }
"$MPILM" import --hf "$d/hf" --out "$d/good" > "$d/log" 2>&1 || { cat "$d/log"; fail "import of an unchanged export"; }

# refused KEY VALUE EXPECTED_MESSAGE: config.json with KEY = VALUE is refused with exit 1 and the message
refused() {
  rm -rf "$d/bad" "$d/out"
  cp -r "$d/hf" "$d/bad"
  sed "s/\"$1\":[[:space:]]*[0-9]*/\"$1\": $2/" "$d/hf/config.json" > "$d/bad/config.json"
  grep -q "\"$1\": $2" "$d/bad/config.json" || fail "could not set $1 in config.json"
  "$MPILM" import --hf "$d/bad" --out "$d/out" > "$d/log" 2>&1
  rc=$?
  [ $rc -eq 1 ] || { cat "$d/log"; fail "$1 = $2: exit $rc (expected 1)"; }
  grep -qF "$3" "$d/log" || { cat "$d/log"; fail "$1 = $2: the message does not say '$3'"; }
  [ ! -e "$d/out" ] || fail "$1 = $2: a checkpoint was written anyway"
  echo "$1 = $2 refused: $(grep -o 'error: .*' "$d/log" | cut -c1-160)"
}
refused n_layer 1 "tensor transformer.h.1.ln_1.weight is not part of the model config.json describes"
refused n_layer 3 "tensor transformer.h.2.ln_1.weight is missing, but config.json"
refused n_embd 64 "tensor transformer.wte.weight has shape [512, 32] (expected [512, 64]"
refused n_positions 32 "tensor transformer.wpe.weight has shape [16, 32] (expected [32, 32]"
refused n_inner 128 "tensor transformer.h.0.mlp.c_fc.weight has shape [32, 64] (expected [32, 128]"
refused vocab_size 1024 "tensor transformer.wte.weight has shape [512, 32] (expected [1024, 32]"
refused vocab_size 1099511627776 "vocab_size 1099511627776 is out of range (expected an integer from 8 to 16777216)"
refused n_layer 1099511627776 "n_layer 1099511627776 is out of range"
echo "import_config: ok"

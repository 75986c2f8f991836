#!/bin/sh
# mpilm's safetensors reader and writer (src/ckpt/safetensors.c) against the
# published format, with files made and read by an independent implementation:
# tests/tools/safetensors.js (Node.js, no packages), written from the format's
# rules (restated and cited at its top), not from mpilm's code.
# - Valid files Node writes (F32, BF16, F16, F64, I64, I32, U8 and the format's
#   other dtypes; JSON key order unlike the offset order; header padded to 8
#   with spaces, padded with other JSON white space, not padded so the data
#   starts unaligned; __metadata__ present, empty and absent; scalars, empty
#   tensors, a UTF-8 name; no tensors): mpilm reads exactly what Node wrote:
#   the same names, dtypes, shapes, bytes (FNV-1a 64) and float32 values
#   (tests/tools/safetensors_dump, linked against libmpilm).
# - Invalid files Node writes, one broken rule each: both readers refuse every
#   one, mpilm with a message naming the file and what it expected. What the
#   reference implementation (safetensors/src/tensor.rs, SafeTensors::
#   read_metadata) does with each is in the table below.
# - Files mpilm writes (`mpilm export` of a tiny trained GPT, fp32 and
#   --dtype bf16): Node's reader accepts them under every rule plus the
#   reference writer's layout (header a multiple of 8 bytes padded with
#   spaces, every tensor aligned to its dtype), all tensors of the dtype
#   asked, metadata {"format": "pt"}, and reads the same values as mpilm.
# Skips (77) only without node (make test-deps installs it; CI never skips).
MPILM=${MPILM:-./mpilm}
BUILD=${BUILD:-build}
DUMP=$BUILD/tests/tools/safetensors_dump
JS=tests/tools/safetensors.js
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL safetensors_format: $*"; exit 1; }
command -v node >/dev/null || { echo "safetensors_format: skipped: node not found (make test-deps)"; exit 77; }
[ -x "$DUMP" ] || fail "$DUMP is not built (make tests)"
. tests/common/tiny.sh

# ---- valid files: mpilm reads what Node wrote ------------------------------------
node "$JS" write-valid "$d/valid" || fail "the Node writer failed"
n=0
for f in "$d"/valid/*.safetensors; do
  name=$(basename "$f" .safetensors)
  "$DUMP" "$f" > "$d/out" 2> "$d/err" || fail "mpilm refuses the valid file $name: $(cat "$d/err")"
  cmp -s "${f%.safetensors}.expect" "$d/out" || {
    diff "${f%.safetensors}.expect" "$d/out" | head -20
    fail "mpilm reads $name differently from what Node wrote (< Node, > mpilm)"
  }
  n=$((n + 1))
done
[ "$n" -eq 6 ] || fail "expected 6 valid files from the Node writer, found $n"
grep -q "^tensor h.0.mlp.half F16 \[2,2,3\] 24 .* f32 " "$d/valid/dtypes-keys-reversed.expect" &&
  grep -q "^tensor scalar F32 \[\] 4 " "$d/valid/scalar-and-empty.expect" &&
  grep -q "^tensor empty.2d BF16 \[3,0\] 0 " "$d/valid/scalar-and-empty.expect" &&
  grep -q "^tensor t.F8_E5M2 F8_E5M2 \[8\] 8 " "$d/valid/other-dtypes.expect" ||
  fail "the Node writer's files lack the cases this test is about"
echo "safetensors_format: $n valid files read alike by Node and mpilm"

# ---- invalid files: both refuse, mpilm saying where and what ---------------------
# name | the reference's error | what mpilm's message must say
cat > "$d/invalid.txt" <<'EOF'
header-past-end|InvalidHeaderLength|header length at byte 0 runs beyond the file (expected at most 128 bytes, found 136)
hole|InvalidOffset|a hole of 4 bytes in the data area at byte 128 of the file, before tensor "b" (expected each tensor to begin where the previous one ends, at data offset 8
hole-at-start|InvalidOffset|a hole of 4 bytes in the data area at byte 120 of the file, before tensor "a" (expected each tensor to begin where the data area begins
overlap|InvalidOffset|tensors "a" and "b" overlap at byte 124 of the file (data offsets [0, 8] and [4, 12])
size-mismatch|TensorInvalidInfo|tensor "a" at byte 9 of the header: data_offsets [0, 8] hold 8 bytes (expected 12 = 3 elements of F32)
past-buffer|MetadataIncompleteBuffer|tensor "b" at byte 62 of the header: data_offsets [8, 16] out of range (expected end <= 12
trailing-bytes|MetadataIncompleteBuffer|8 bytes after the last tensor at byte 136 of the file (expected the tensors to end at the end of the file
not-utf8|InvalidHeader|header byte 0xc3 at byte 11 is not UTF-8 (expected a UTF-8 JSON header)
not-json|InvalidHeaderDeserialization|invalid JSON header at byte 119 (expected one JSON object naming the tensors, found a syntax error)
not-object|InvalidHeaderDeserialization|header at byte 8 begins with byte 0x5b (expected "{"
leading-space|none: accepted (the README's MUST is not enforced)|header at byte 8 begins with byte 0x20 (expected "{"
unknown-dtype|InvalidHeaderDeserialization|tensor "a" at byte 9 of the header: unknown dtype (expected F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64, BOOL, F8_E4M3 or F8_E5M2, found float32)
duplicate-name|none: serde keeps the last entry (the README disallows duplicates)|tensor "a" at byte 9 of the header: the name appears twice in the header (expected unique tensor names)
metadata-not-string|InvalidHeaderDeserialization|"__metadata__" entry "epoch" at byte 9 of the header is not a string
padded-with-nul|InvalidHeaderDeserialization|unexpected byte 0x00 after the JSON header at byte 116 (expected space padding up to byte 120)
EOF
node "$JS" write-invalid "$d/invalid" || fail "the Node writer failed"
written=$(cd "$d/invalid" && ls | sed 's/\.safetensors$//' | sort)
listed=$(cut -d'|' -f1 "$d/invalid.txt" | sort)
[ "$written" = "$listed" ] || fail "the invalid files written ($written) are not the ones listed ($listed)"
while IFS='|' read -r name reference want; do
  f=$d/invalid/$name.safetensors
  node "$JS" dump "$f" > /dev/null 2> "$d/err" && fail "Node's reader accepts the invalid file $name"
  grep -q "rule [0-9]" "$d/err" || fail "Node's reader fails on $name without naming a rule: $(cat "$d/err")"
  "$DUMP" "$f" > /dev/null 2> "$d/err" && fail "mpilm reads the invalid file $name (the reference: $reference)"
  grep -qF "$f" "$d/err" || fail "mpilm's message for $name does not name the file: $(cat "$d/err")"
  grep -qF -- "$want" "$d/err" || fail "mpilm's message for $name lacks '$want': $(cat "$d/err")"
done < "$d/invalid.txt"
echo "safetensors_format: $(wc -l < "$d/invalid.txt") invalid files refused by both, mpilm naming file, byte and rule"

# ---- files mpilm writes: Node reads them under every rule, with the same values ----
tiny_ini "$d/tiny.ini" || exit 1
"$MPILM" train --config "$d/tiny.ini" --set run.dir="$d/gpt" > "$d/log" 2>&1 || { tail -5 "$d/log"; fail "training"; }
for dtype in fp32 bf16; do
  "$MPILM" export --ckpt "$d/gpt" --format hf --out "$d/hf-$dtype" --dtype $dtype > "$d/log" 2>&1 ||
    { cat "$d/log"; fail "export --dtype $dtype"; }
  f=$d/hf-$dtype/model.safetensors
  node "$JS" dump --writer "$f" > "$d/node.dump" 2> "$d/err" ||
    fail "the $dtype export breaks the format: $(cat "$d/err")"
  "$DUMP" "$f" > "$d/mpilm.dump" 2> "$d/err" || fail "mpilm cannot read its own $dtype export: $(cat "$d/err")"
  cmp -s "$d/node.dump" "$d/mpilm.dump" || {
    diff "$d/node.dump" "$d/mpilm.dump" | head -20
    fail "Node and mpilm read the $dtype export differently (< Node, > mpilm)"
  }
  case $dtype in fp32) want=F32 ;; bf16) want=BF16 ;; esac
  tensors=$(grep -c "^tensor " "$d/node.dump")
  [ "$tensors" -ge 10 ] || fail "the $dtype export holds $tensors tensors"
  [ "$(grep -c "^tensor [^ ]* $want \[" "$d/node.dump")" = "$tensors" ] || fail "the $dtype export is not all $want"
  [ "$(grep "^meta " "$d/node.dump")" = "meta format pt" ] || fail "the $dtype export's metadata: $(grep "^meta " "$d/node.dump")"
done
echo "safetensors_format: the fp32 and bf16 exports follow the format and the reference writer's layout"
echo "safetensors_format: ok"

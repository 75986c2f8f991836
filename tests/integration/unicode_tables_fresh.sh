#!/bin/sh
# The committed src/data/unicode_tables.c is what src/data/gen_unicode_tables.py
# generates (Debian's /usr/bin/python3, whose unicodedata fixes the Unicode version).
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "skip: $PY not found"; exit 77; }
want=$($PY -c 'import unicodedata; print(unicodedata.unidata_version)')
have=$(sed -n 's/.*from Unicode \([0-9.]*\)\..*/\1/p' src/data/unicode_tables.c | head -1)
[ "$want" = "$have" ] || { echo "skip: $PY has Unicode $want, the tables are Unicode $have"; exit 77; }
$PY src/data/gen_unicode_tables.py | cmp -s - src/data/unicode_tables.c ||
  { echo "FAIL: src/data/unicode_tables.c is stale; run $PY src/data/gen_unicode_tables.py > src/data/unicode_tables.c"; exit 1; }
echo "unicode tables: fresh (Unicode $have)"

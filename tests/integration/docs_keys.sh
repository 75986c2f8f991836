#!/bin/sh
# docs/usage.md documents every configuration key the binary accepts, with its
# default, and documents no key the binary does not accept.
MPILM=${MPILM:-./mpilm}
cfg=$(mktemp)
printf '[run]\nname = run\n' > "$cfg"   # one key at its default (a config must set one)
status=0 section="" n=0 sections=""
"$MPILM" train --config "$cfg" --print-config > "$cfg.out" || { echo "print-config failed"; exit 1; }
while IFS= read -r line; do
  case $line in
    "["*"]") section=$(echo "$line" | tr -d '[]'); sections="$sections $section" ;;
    *" = "*)
      key=${line%% = *}; value=${line#* = }; value=${value%% ; from*}
      n=$((n + 1)); echo "$section.$key" >> "$cfg.keys"
      [ -n "$value" ] || value="(empty)"
      grep -qF "| \`$section.$key\` | \`$value\` |" docs/usage.md ||
        grep -qF "| \`$section.$key\` | $value |" docs/usage.md ||
        { echo "docs/usage.md lacks $section.$key with default $value"; status=1; } ;;
  esac
done < "$cfg.out"
# An empty or truncated print would pass the loop above: every section of
# docs/usage.md must be there, with at least the 48 keys of this writing.
for s in run model data train dist ckpt log; do
  case " $sections " in *" $s "*) ;; *) echo "--print-config lacks section [$s]"; status=1 ;; esac
done
[ "$n" -ge 48 ] || { echo "--print-config printed $n keys (expected at least 48)"; status=1; }
sed -n 's/^| `\([a-z]*\.[a-z_0-9]*\)` |.*/\1/p' docs/usage.md | sort > "$cfg.doc"
sort "$cfg.keys" 2>/dev/null | comm -13 - "$cfg.doc" | while read -r k; do
  echo "docs/usage.md documents $k, which --print-config does not print"
done | grep . && status=1
rm -f "$cfg" "$cfg.out" "$cfg.keys" "$cfg.doc"
exit $status

#!/bin/sh
# docs/usage.md documents every configuration key the binary accepts, with its default.
MPILM=${MPILM:-./mpilm}
cfg=$(mktemp)
printf '[run]\nname = run\n' > "$cfg"   # one key at its default (a config must set one)
status=0 section=""
"$MPILM" train --config "$cfg" --print-config > "$cfg.out" || { echo "print-config failed"; exit 1; }
while IFS= read -r line; do
  case $line in
    "["*"]") section=$(echo "$line" | tr -d '[]') ;;
    *" = "*)
      key=${line%% = *}; value=${line#* = }; value=${value%% ; from*}
      [ -n "$value" ] || value="(empty)"
      grep -qF "| \`$section.$key\` | \`$value\` |" docs/usage.md ||
        grep -qF "| \`$section.$key\` | $value |" docs/usage.md ||
        { echo "docs/usage.md lacks $section.$key with default $value"; status=1; } ;;
  esac
done < "$cfg.out"
rm -f "$cfg" "$cfg.out"
exit $status

#!/bin/sh
# The module layering of docs/design.md ("Modules (src/)"), checked against the
# code: every #include "MODULE/..." in src/M/ names M itself or a module that
# M's row lists under "depends on" (cli/: all), and every listed module is in
# a row above M's (no cycle). An unprefixed #include "x.h" is M's own header.
DOC=docs/design.md
table=$(sed -n '/^| module | owns | depends on |/,/^$/p' "$DOC" | tail -n +3)
[ -n "$table" ] || { echo "FAIL layering: no module table in $DOC"; exit 1; }
status=0 seen=""
for mod in $(echo "$table" | sed -n 's/^| `\([a-z]*\)\/` |.*/\1/p'); do
  row=$(echo "$table" | grep "^| \`$mod/\` |")
  deps=$(echo "$row" | awk -F'|' '{print $4}')
  allowed=$(echo "$deps" | grep -o '`[a-z]*/`' | tr -d '`/' | tr '\n' ' ')
  all=0
  echo "$deps" | grep -qw all && all=1
  for d in $allowed; do
    case " $seen " in *" $d "*) ;; *) echo "FAIL layering: $mod/ depends on $d/, which is not in a row above it"; status=1 ;; esac
  done
  [ -d "src/$mod" ] || { echo "FAIL layering: $DOC names $mod/, which src/ does not have"; status=1; }
  for f in src/"$mod"/*.c src/"$mod"/*.h; do
    [ -f "$f" ] || continue
    for inc in $(sed -n 's/^#include "\([a-z_]*\)\/.*/\1/p' "$f" | sort -u); do
      [ "$inc" = "$mod" ] && continue
      [ "$all" = 1 ] && case " $seen " in *" $inc "*) continue ;; esac
      case " $allowed " in *" $inc "*) ;; *)
        echo "FAIL layering: $f includes $inc/ but $DOC's row for $mod/ does not list it"; status=1 ;;
      esac
    done
  done
  seen="$seen $mod"
done
for d in src/*/; do
  m=$(basename "$d")
  case " $seen " in *" $m "*) ;; *) echo "FAIL layering: src/$m/ has no row in $DOC's module table"; status=1 ;; esac
done
[ $status = 0 ] && echo "layering: every include of src/ follows $DOC's module table ($(echo $seen | wc -w) modules)"
exit $status

#!/bin/sh
# The checkpoint commit's crash-safety order, observed in the system calls
# (strace -y): every file of the checkpoint is fsync'ed (under the temporary
# directory) and then the temporary directory itself, before it is renamed to
# step-N; the run directory is fsync'ed after that rename and again after
# `latest` is replaced. A skipped fsync leaves no other trace a test could see
# without a power cut (tests/mutations.ini: ckpt-no-tmp-dir-fsync).
MPILM=${MPILM:-./mpilm}
command -v strace >/dev/null || { echo "ckpt_fsync_order: skipped: no strace (make test-deps installs it)"; exit 77; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL ckpt_fsync_order: $*"; exit 1; }
printf '[model]\nfamily = gpt\nn_layer = 1\nd_model = 16\nn_head = 2\nd_ff = 32\nseq_len = 8\nmax_positions = 8\n' > "$d/t.ini"
printf 'vocab_size = 64\n[train]\nsteps = 2\nmicro_batch = 2\n[ckpt]\nevery_steps = 2\n' >> "$d/t.ini"
run=$d/run
MPILM_PEAK_GFLOPS=1 strace -f -qq -y -e trace=fsync,fdatasync,rename,renameat,renameat2,symlink -o "$d/trace" \
  "$MPILM" train --config "$d/t.ini" --set run.dir="$run" > "$d/log" 2>&1 || { cat "$d/log"; fail "train under strace"; }
# one call per line, without the pid column
grep -v 'resumed>\|<unfinished' "$d/trace" | sed 's/^[0-9]* *//' > "$d/calls"
line() { grep -nF "$1" "$d/calls" | head -1 | cut -d: -f1; }
tmp=$run/.step-0000002.tmp
commit=$(line "rename(\"$tmp\", \"$run/step-0000002\") = 0")
[ -n "$commit" ] || { cat "$d/calls"; fail "no rename of $tmp to step-0000002"; }
latest=$(line "rename(\"$run/.latest.tmp\", \"$run/latest\") = 0")
[ -n "$latest" ] && [ "$latest" -gt "$commit" ] || fail "latest was not replaced after the commit"
before=$(head -n "$commit" "$d/calls")
n=0
for f in $(cd "$run/step-0000002" && find . -type f | sed 's|^\./||'); do
  base=$(basename "$f") dir=$(dirname "$f")
  alt=$tmp/$dir/.$base.tmp
  [ "$dir" = . ] && alt=$tmp/.$base.tmp
  echo "$before" | grep -E '^f(data)?sync\(' | grep -qF -e "<$tmp/$f>" -e "<$alt>" ||
    { cat "$d/calls"; fail "$f was not fsync'ed before the checkpoint was renamed into place"; }
  n=$((n + 1))
done
[ $n -ge 2 ] || fail "only $n files in the checkpoint"
last_file=$(echo "$before" | grep -nE "^f(data)?sync\([0-9]*<$tmp/" | tail -1 | cut -d: -f1)
dir_sync=$(echo "$before" | grep -nE "^f(data)?sync\([0-9]*<$tmp>\)" | tail -1 | cut -d: -f1)
[ -n "$dir_sync" ] || fail "the temporary directory was not fsync'ed before the rename"
[ "$dir_sync" -gt "$last_file" ] || fail "the temporary directory was fsync'ed before its last file"
between=$(sed -n "$((commit + 1)),$((latest - 1))p" "$d/calls")
echo "$between" | grep -qE "^f(data)?sync\([0-9]*<$run>\)" || fail "the run directory was not fsync'ed between the commit and latest"
sed -n "$((latest + 1)),\$p" "$d/calls" | grep -qE "^f(data)?sync\([0-9]*<$run>\)" ||
  fail "the run directory was not fsync'ed after latest was replaced"
echo "ckpt_fsync_order: $n files and the directory fsync'ed before the commit, the run directory after it and after latest"

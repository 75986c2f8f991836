#!/bin/sh
# The memory check against a real cgroup v2 limit, as Slurm sets one: a
# child of the cgroup root with memory.max below gpt-mini's estimate; mpilm
# started inside it is refused with exit 2 naming memory.max (not OOM-killed).
# Needs root and a cgroup v2 hierarchy at /sys/fs/cgroup whose root offers the
# memory controller to its children; skips (77) saying which is missing.
MPILM=${MPILM:-./mpilm}
export MPILM_PEAK_GFLOPS=${MPILM_PEAK_GFLOPS:-1}
skip() { echo "memory_cgroup: skipped: $*"; exit 77; }
fail() { echo "FAIL memory_cgroup: $*"; exit 1; }
cg=/sys/fs/cgroup
[ "$(id -u)" = 0 ] || skip "creating a cgroup needs root"
[ -f $cg/cgroup.controllers ] || skip "no cgroup v2 hierarchy at $cg (cgroup v1 or hybrid)"
grep -qw memory $cg/cgroup.subtree_control 2> /dev/null ||
  skip "the root cgroup does not delegate the memory controller ($cg/cgroup.subtree_control)"
child=$cg/mpilm-test-$$
mkdir "$child" 2> /dev/null || skip "cannot create $child (read-only or not delegated)"
d=$(mktemp -d)
trap 'rmdir "$child" 2> /dev/null; rm -rf "$d"' EXIT
echo $((200 * 1024 * 1024)) > "$child/memory.max" || skip "cannot write $child/memory.max"
sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$child" "$MPILM" train \
  --config launch/configs/gpt-mini.ini --set train.steps=1 --set run.dir="$d/run" > "$d/log" 2>&1
rc=$?
[ $rc -eq 2 ] || { tail -5 "$d/log"; fail "exit $rc inside a 200 MiB cgroup (expected 2)"; }
grep -qF "$child/memory.max = 209715200" "$d/log" || { cat "$d/log"; fail "the refusal does not name $child/memory.max"; }
echo "refused: $(grep -o 'error: .*' "$d/log" | cut -c1-200)"
echo "memory_cgroup: ok"

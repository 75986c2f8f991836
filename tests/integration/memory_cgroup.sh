# The memory check against a real cgroup limit, as Slurm sets one: a child
# cgroup with a limit below gpt-mini's estimate (cgroup v2: memory.max; v1:
# the memory hierarchy's memory.limit_in_bytes); mpilm started inside it is
# refused with exit 2 naming that file (not OOM-killed). Needs root and a
# writable hierarchy with the memory controller; skips (77) saying which is
# missing.
MPILM=${MPILM:-./mpilm}
export MPILM_PEAK_GFLOPS=${MPILM_PEAK_GFLOPS:-1}
skip() { echo "memory_cgroup: skipped: $*"; exit 77; }
fail() { echo "FAIL memory_cgroup: $*"; exit 1; }
[ "$(id -u)" = 0 ] || skip "creating a cgroup needs root"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  cg=/sys/fs/cgroup file=memory.max
  grep -qw memory $cg/cgroup.subtree_control 2> /dev/null ||
    skip "the root cgroup does not delegate the memory controller ($cg/cgroup.subtree_control)"
elif [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
  cg=/sys/fs/cgroup/memory file=memory.limit_in_bytes
  # the child is made under this process's own memory cgroup (the root on a
  # plain host, the job's on a Slurm node)
  own=$(sed -n 's/^[0-9]*:memory:\(.*\)$/\1/p' /proc/self/cgroup)
  [ "$own" = / ] || cg=$cg$own
else
  skip "no cgroup v2 hierarchy and no cgroup v1 memory hierarchy under /sys/fs/cgroup"
fi
child=$cg/mpilm-test-$$
mkdir "$child" 2> /dev/null || skip "cannot create $child (read-only or not delegated)"
d=$(mktemp -d)
trap 'rmdir "$child" 2> /dev/null; rm -rf "$d"' EXIT
echo $((200 * 1024 * 1024)) > "$child/$file" || skip "cannot write $child/$file"
sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$child" "$MPILM" train \
  --config launch/configs/gpt-mini.ini --set train.steps=1 --set run.dir="$d/run" > "$d/log" 2>&1
rc=$?
[ $rc -eq 2 ] || { tail -5 "$d/log"; fail "exit $rc inside a 200 MiB cgroup (expected 2)"; }
grep -qF "$child/$file = 209715200" "$d/log" || { cat "$d/log"; fail "the refusal does not name $child/$file"; }
echo "refused: $(grep -o 'error: .*' "$d/log" | cut -c1-200)"
echo "memory_cgroup: ok"

#!/bin/sh
# launch/mpirun.sh across two hosts, the second reached through ssh: the test
# starts an sshd of its own on 127.0.0.2 (own host key, own authorised key and
# port, under a temporary directory), writes a hostfile "127.0.0.1 slots=2,
# 127.0.0.2 slots=2" and trains a tiny GPT as pp 2 x dp 2 on 4 ranks over
# Open MPI's TCP transport only (--mca btl tcp,self on the loopback interface,
# through MPILM_MPIRUN_ARGS). It checks:
# - placement: mpirun's map puts 2 ranks on each host, and the ranks on
#   127.0.0.2 descend from the test's sshd (the remote launch path was used);
# - forwarding: a remote rank has MPILM_TEST_STEP_DELAY, OMP_NUM_THREADS and
#   BLIS_NUM_THREADS from the launcher's environment (ssh starts it with none
#   of them) and runs in the launch directory;
# - a remote rank killed (SIGKILL) after a checkpoint ends the job within a
#   minute with mpirun's message naming the rank and the host, in the terminal
#   and in the launcher's log file beside the run directory;
# - the same command resumes from the checkpoint (--resume auto) and the
#   losses of every step after it equal those of an uninterrupted run.
MPILM=${MPILM:-./mpilm}
REPO=$(pwd)
case $MPILM in /*) ;; *) MPILM="$REPO/$MPILM" ;; esac
skip() { echo "multihost: skipped: $*"; exit 77; }
fail() { echo "FAIL multihost: $*"; [ -n "${d:-}" ] && tail -15 "$d"/*.log 2>/dev/null; exit 1; }

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh > /dev/null || ! command -v ssh-keygen > /dev/null; then
  [ "$(id -u)" = 0 ] || skip "openssh-server and openssh-client are missing and installing them needs root"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server openssh-client > /dev/null 2>&1 ||
    skip "apt-get install openssh-server openssh-client failed (no access to Debian's packages?)"
fi
# sshd insists on its privilege separation directory (created by the service, which is not running)
[ -d /run/sshd ] || mkdir -p /run/sshd 2> /dev/null || skip "/run/sshd is missing and creating it needs root"

d=$(mktemp -d /tmp/mpilm-multihost.XXXXXX)
sshd_pid="" job=""
cleanup() {
  # a job still running when a check failed: its mpirun ends the ranks (SIGTERM)
  if [ -n "$job" ] && kill -0 "$job" 2> /dev/null; then
    pkill -TERM -P "$job" # mpirun
    sleep 2
  fi
  [ -z "$sshd_pid" ] || kill "$sshd_pid" 2> /dev/null
  rm -rf "$d"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -f "$d/host_key" && ssh-keygen -q -t ed25519 -N '' -f "$d/user_key" ||
  fail "ssh-keygen"
cp "$d/user_key.pub" "$d/authorized_keys"
# a port from the test's pid, so parallel runs do not collide; the next ones if it is taken
for try in 0 1 2 3 4; do
  port=$((30000 + ($$ + try * 997) % 20000))
  cat > "$d/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.2
HostKey $d/host_key
AuthorizedKeysFile $d/authorized_keys
PidFile $d/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
CONF
  /usr/sbin/sshd -D -e -f "$d/sshd_config" > "$d/sshd.log" 2>&1 &
  sshd_pid=$!
  i=0
  until grep -q "Server listening" "$d/sshd.log" || ! kill -0 "$sshd_pid" 2> /dev/null; do
    i=$((i + 1)); [ $i -lt 50 ] || break
    sleep 0.1
  done
  grep -q "Server listening" "$d/sshd.log" && break
  kill "$sshd_pid" 2> /dev/null; sshd_pid=""
done
[ -n "$sshd_pid" ] || skip "sshd does not start on 127.0.0.2 here: $(tail -2 "$d/sshd.log")"
rsh="ssh -p $port -i $d/user_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR"
# shellcheck disable=SC2086
$rsh 127.0.0.2 true || fail "ssh to 127.0.0.2 port $port with the test's key: $(tail -3 "$d/sshd.log")"

export OMPI_MCA_plm_rsh_agent="$rsh"
export MPILM_MPIRUN_ARGS="--mca btl tcp,self --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo --display-map"
# sanitizer builds: the remote ranks (started through ssh) get the run's sanitizer options too
# (tests/run.sh turns LeakSanitizer off under mpirun: Open MPI keeps allocations until exit)
[ "${SAN:-0}" != 1 ] || MPILM_MPIRUN_ARGS="$MPILM_MPIRUN_ARGS -x ASAN_OPTIONS -x UBSAN_OPTIONS"
export OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1 MPILM
printf '127.0.0.1 slots=2\n127.0.0.2 slots=2\n' > "$d/hosts"
cat > "$d/tiny.ini" <<'INI'
[model]
family = gpt
n_layer = 2
d_model = 32
n_head = 2
d_ff = 64
seq_len = 16
max_positions = 16
vocab_size = 97
dropout = 0.1
[data]
source = random
[train]
steps = 24
micro_batch = 2
micro_batches = 2
lr = 1e-3
warmup_steps = 3
precision = fp32
[dist]
pp = 2
[ckpt]
every_steps = 4
[log]
every = 1
INI
losses() { sed 's/,"tokens_per_s".*//' "$1/metrics.jsonl"; }
launch() { # log, options...
  log=$1; shift
  sh launch/mpirun.sh -f "$d/hosts" -t 1 "$d/tiny.ini" "$@" > "$log" 2>&1
}

# the interrupted run: slowed down so the kill lands after the step-4 checkpoint
MPILM_TEST_STEP_DELAY=0.3 sh launch/mpirun.sh -f "$d/hosts" -t 1 "$d/tiny.ini" --set run.dir="$d/run" > "$d/a.log" 2>&1 &
job=$!
i=0
until [ -f "$d/run/metrics.jsonl" ] && [ "$(wc -l < "$d/run/metrics.jsonl")" -ge 6 ]; do
  i=$((i + 1)); [ $i -lt 600 ] && kill -0 $job 2> /dev/null || fail "the 4-rank job did not reach step 6"
  sleep 0.1
done
grep -q "Data for node: 127.0.0.2[[:space:]]*Num slots: 2[[:space:]]*Max slots: [0-9]*[[:space:]]*Num procs: 2" "$d/a.log" ||
  fail "mpirun's map does not put 2 ranks on 127.0.0.2"
[ "$(grep -c "Num procs: 2" "$d/a.log")" -ge 2 ] || fail "mpirun's map does not put 2 ranks on each host"
# rank 3 (mapped by slot: the second on 127.0.0.2), by its environment and its run directory
remote=""
for p in $(pgrep -f -- "run.dir=$d/run\$"); do
  { tr '\0' '\n' < "/proc/$p/environ"; } 2> /dev/null | grep -q "^OMPI_COMM_WORLD_RANK=3\$" && remote=$p
done
[ -n "$remote" ] || fail "no process of rank 3 found"
env3=$(tr '\0' '\n' < "/proc/$remote/environ")
# its ancestors include the test's sshd: rank 3 was started through ssh
a=$remote found=0
while [ "$a" -gt 1 ] 2> /dev/null; do
  [ "$a" = "$sshd_pid" ] && { found=1; break; }
  a=$(awk '{ print $4 }' "/proc/$a/stat" 2> /dev/null || echo 0)
done
[ $found = 1 ] || fail "rank 3 (pid $remote) does not descend from the test's sshd (pid $sshd_pid)"
for v in MPILM_TEST_STEP_DELAY=0.3 OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1; do
  echo "$env3" | grep -qx "$v" || fail "rank 3 on 127.0.0.2 lacks $v: the launcher did not forward it"
done
[ "$(readlink "/proc/$remote/cwd")" = "$REPO" ] || fail "rank 3 runs in $(readlink "/proc/$remote/cwd"), not the launch directory $REPO"
echo "multihost: ranks 2 and 3 on 127.0.0.2 through the test's sshd, with MPILM_*, the thread variables and the working directory"

t0=$(date +%s)
kill -9 "$remote"
i=0
while kill -0 $job 2> /dev/null; do
  i=$((i + 1)); [ $i -lt 600 ] || { kill $job; fail "the job did not end within 60 s of rank 3's death"; }
  sleep 0.1
done
wait $job; rc=$?
[ $rc -ne 0 ] || fail "the job whose rank 3 died exited 0"
grep -q "process rank 3 with PID $remote on node 127.0.0.2 exited on signal 9" "$d/a.log" ||
  fail "no message naming rank 3 on 127.0.0.2 and its signal"
ls "$d"/run.launch-*.log > /dev/null 2>&1 || fail "no launcher log beside the run directory"
grep -q "process rank 3 with PID $remote on node 127.0.0.2" "$d"/run.launch-*.log || fail "the launcher log lacks the job's end"
echo "multihost: rank 3 killed on 127.0.0.2; the job ended in $(( $(date +%s) - t0 )) s with exit $rc, naming the rank and host"

launch "$d/b.log" --set run.dir="$d/run" || { tail -30 "$d/b.log"; fail "the resumed job: exit $?"; }
from=$(sed -n 's/.*resumed from .*step-[0-9]* (step \([0-9]*\)).*/\1/p' "$d/b.log")
[ -n "$from" ] && [ "$from" -ge 4 ] || fail "the rerun did not resume from a checkpoint"
[ "$(ls "$d"/run.launch-*.log | wc -l)" -ge 2 ] || fail "the second job has no log file of its own"
launch "$d/c.log" --set run.dir="$d/straight" || fail "the uninterrupted job: exit $?"
losses "$d/run" | tail -$((24 - from)) > "$d/resumed"
losses "$d/straight" | tail -$((24 - from)) > "$d/straight.txt"
[ "$(wc -l < "$d/resumed")" = $((24 - from)) ] && cmp -s "$d/resumed" "$d/straight.txt" ||
  { diff "$d/resumed" "$d/straight.txt" | head -6; fail "losses after the resume from step $from differ from the uninterrupted run"; }
echo "multihost: resumed from step $from; steps $((from + 1))-24 have the losses of the uninterrupted run"
echo "multihost: ok"

#!/bin/sh
# A real Slurm: installs Debian's slurm-wlm and munge if missing, starts a
# one-node cluster on this machine as the test's own processes (own munge key
# and socket, own ports and spool), submits launch/slurm.sbatch with a tiny
# config on 2 ranks, sends the preemption signal the way a scheduler does
# (scancel --signal=USR1 --batch), and checks:
# - srun --mpi=pmix (the default): each rank bound to a core of its own
#   (task/affinity, --cpu-bind=cores); the first start says the save time is
#   unknown; the job checkpointed, exited 75, requeued itself, said at restart
#   that the measured step and save fit in the 120 s lead, resumed from the
#   checkpoint and finished with the same final loss as an uninterrupted run;
# - MPILM_LAUNCHER=mpirun with MPILM_MAX_REQUEUES=0: the job checkpoints,
#   exits 75 and is not requeued, saying so.
MPILM=${MPILM:-./mpilm}
REPO=$(pwd)
skip() { echo "slurm: skipped: $*"; exit 77; }
fail() { echo "FAIL slurm: $*"; [ -n "${d:-}" ] && tail -20 "$d"/*.log "$d"/job.out 2>/dev/null; exit 1; }

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || skip "slurm-wlm and munge are missing and installing them needs root"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge > /dev/null 2>&1 ||
    skip "apt-get install slurm-wlm munge failed (no access to Debian's packages?)"
fi
[ "$(id -u)" = 0 ] || skip "slurmd must run as root to start jobs (run the tests as root, as CI does)"

d=$(mktemp -d /tmp/mpilm-slurm.XXXXXX)
chmod 755 "$d"
pids=""
cleanup() {
  # the test's jobs first: a job left running keeps its slurmstepd and ranks
  # alive after the daemons are gone
  if [ -n "${SLURM_CONF:-}" ] && scancel -p test 2>/dev/null; then
    i=0
    while [ $i -lt 30 ] && squeue -h 2>/dev/null | grep -q .; do sleep 0.5; i=$((i + 1)); done
  fi
  for p in $pids; do kill "$p" 2>/dev/null; done
  sleep 1
  for p in $pids; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$d"
}
trap cleanup EXIT

# munge with its own key and socket
mkdir -p "$d/munge"
chmod 700 "$d/munge"
dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$d/munge/munge.key"
munged --force --key-file="$d/munge/munge.key" --socket="$d/munge/munge.socket" --pid-file="$d/munge/munged.pid" \
  --log-file="$d/munge/munged.log" --seed-file="$d/munge/munge.seed" || skip "munged does not start here"
pids="$pids $(cat "$d/munge/munged.pid")"

# a one-node cluster; ports from the test's pid so parallel runs do not collide
port=$((20000 + $$ % 20000))
host=$(hostname -s)
cpus=$(getconf _NPROCESSORS_ONLN) # not nproc: it obeys OMP_NUM_THREADS, which the test runner sets
mem=$(awk '/MemTotal/ { print int($2 / 1024 / 2) }' /proc/meminfo)
mkdir -p "$d/state" "$d/spool"
cat > "$d/slurm.conf" <<CONF
ClusterName=mpilmtest
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/slurmctld.log
SlurmdLogFile=$d/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
SlurmdTimeout=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
# PMIx's per-step directories under the test's own directory, not /tmp
# (two clusters on one machine both number their first job 2)
echo "PMIxCliTmpDirBase=$d/pmix" > "$d/mpi.conf"
mkdir -p "$d/pmix"
export SLURM_CONF="$d/slurm.conf"
slurmctld -i || skip "slurmctld does not start here (see $d/slurmctld.log)"
sleep 1
pids="$pids $(cat "$d/slurmctld.pid" 2>/dev/null)"
slurmd || skip "slurmd does not start here"
sleep 1
pids="$pids $(cat "$d/slurmd.pid" 2>/dev/null)"
i=0
until sinfo -h -o %t 2>/dev/null | grep -q idle; do
  i=$((i + 1)); [ $i -lt 30 ] || skip "the node never became idle: $(sinfo -h -o '%t %E' 2>&1 | head -2)"
  sleep 1
done
# the controller may need a moment after the node turns idle before it takes jobs
i=0
until sbatch --test-only --chdir="$REPO" launch/slurm.sbatch > "$d/testonly.log" 2>&1; do
  i=$((i + 1)); [ $i -lt 20 ] || fail "sbatch --test-only rejects the script: $(cat "$d/testonly.log")"
  sleep 1
done

# the job: a tiny GPT, slowed down so the signal lands mid-run
cat > "$d/tiny.ini" <<'INI'
[model]
family = gpt
n_layer = 2
d_model = 32
n_head = 4
d_ff = 64
seq_len = 16
max_positions = 16
vocab_size = 97
dropout = 0.1
[data]
source = random
[train]
steps = 40
micro_batch = 4
lr = 1e-3
[log]
every = 1
INI
case $MPILM in /*) ;; *) MPILM="$REPO/$MPILM" ;; esac
export MPILM_CONFIG="$d/tiny.ini" MPILM MPILM_TEST_STEP_DELAY=0.25

# submit [ENV=VALUE...]: a job of launch/slurm.sbatch writing to $d/job.out; prints its id
submit() {
  env "$@" sbatch --parsable --chdir="$REPO" --output="$d/job.out" --export=ALL launch/slurm.sbatch
}
# preempt JOB RUN_DIR: once 8 steps are logged, the scheduler's warning to the batch shell
preempt() {
  i=0
  until [ -f "$2/metrics.jsonl" ] && [ "$(wc -l < "$2/metrics.jsonl")" -ge 8 ]; do
    i=$((i + 1)); [ $i -lt 120 ] || fail "job $1 did not train (state $(squeue -h -j "$1" -o %T))"
    sleep 0.5
  done
  scancel --signal=USR1 --batch "$1" || fail "scancel --signal=USR1 --batch"
}

# srun --mpi=pmix (the default launcher): each rank bound to its own core,
# preempted, exit 75, requeued, resumed, the same final loss as without interruption
job=$(submit MPILM_ARGS="--set run.dir=$d/run") || fail "sbatch"
i=0
until [ -f "$d/run/metrics.jsonl" ] && [ "$(wc -l < "$d/run/metrics.jsonl")" -ge 2 ]; do
  i=$((i + 1)); [ $i -lt 120 ] || fail "the srun job did not train (state $(squeue -h -j "$job" -o %T))"
  sleep 0.5
done
grep -q "launching with srun --mpi=pmix --cpu-bind=cores" "$d/job.out" || fail "the job did not launch with srun --mpi=pmix"
bound=""
for p in $(pgrep -f -- "run.dir=$d/run\$"); do
  [ "$(readlink "/proc/$p/exe")" = "$(readlink -f "$MPILM")" ] || continue
  bound="$bound $(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "/proc/$p/status")"
done
set -- $bound
[ $# = 2 ] && [ "$1" != "$2" ] && [ "${1#*[,-]}" = "$1" ] && [ "${2#*[,-]}" = "$2" ] ||
  fail "the 2 ranks are not each bound to one core of their own (allowed CPUs:$bound)"
grep -q "whether a step and a save fit is unknown" "$d/job.out" || fail "the first start does not say the save time is unknown"
preempt "$job" "$d/run"
# Slurm holds a requeued job back for a while (Reason=BeginTime, about two
# minutes); as the cluster's administrator the test makes it eligible now
i=0
until scontrol show job "$job" 2>/dev/null | grep -q "Restarts=1"; do
  i=$((i + 1)); [ $i -lt 120 ] || fail "the job did not requeue itself after the signal"
  sleep 0.5
done
# slurmd refuses a job whose credential is from the second its old one was
# revoked in (by the requeue): "Job credential revoked", the job then fails
sleep 2
scontrol update JobId="$job" StartTime=now 2>/dev/null
# squeue may briefly not list a job being requeued: wait for the second run's
# end. The update above is refused while the job is still completing, so it
# is repeated while the job waits for its begin time. The wait covers Slurm's
# own hold (about two minutes) with room to spare, in case every update is
# refused (a CI run once missed a 120 s limit, its job state blank).
i=0
until [ "$(grep -c "exit status" "$d/job.out" 2>/dev/null)" -ge 2 ]; do
  [ $((i % 10)) -eq 9 ] && squeue -h -j "$job" -o %r 2>/dev/null | grep -q BeginTime &&
    scontrol update JobId="$job" StartTime=now 2>/dev/null
  i=$((i + 1)); [ $i -lt 600 ] || fail "the requeued job did not finish in 300 s (state $(squeue -h -j "$job" -o '%T %r'); scontrol: $(scontrol show job "$job" 2>&1 | tr '\n' ' ' | cut -c1-400))"
  sleep 0.5
done
grep -q "exit status 75" "$d/job.out" || fail "no preemption exit 75 in the job output"
grep -q "requeueing job $job" "$d/job.out" || fail "the job did not requeue itself"
grep -q "restart 1" "$d/job.out" || fail "the requeued job did not run again"
grep -q "preemption lead 120 s: a step (.* s) and a checkpoint save (.* s), as last measured, fit" "$d/job.out" ||
  fail "the requeued job does not say that the last step and save fit in the 120 s lead"
grep -q "exit status 0" "$d/job.out" || fail "the resumed job did not finish"
[ "$(tail -1 "$d/run/metrics.jsonl" | sed 's/.*"step":\([0-9]*\).*/\1/')" = 40 ] || fail "the run did not reach step 40"

# the same run without interruption
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1 MPILM_TEST_STEP_DELAY=0 \
  mpirun --oversubscribe --bind-to none -np 2 "$MPILM" train --config "$d/tiny.ini" --set run.dir="$d/straight" \
  > "$d/straight.log" 2>&1 || fail "uninterrupted run"
a=$(tail -1 "$d/run/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/')
b=$(tail -1 "$d/straight/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/')
[ "$a" = "$b" ] || fail "final loss after preemption and requeue $a differs from the uninterrupted $b"
echo "slurm: srun --mpi=pmix job $job: ranks on cores$bound, preempted (exit 75), requeued itself, resumed and ended with loss $a = uninterrupted"

# the mpirun fallback with a requeue cap of 0: preempted, exit 75, not requeued, saying so
mv "$d/job.out" "$d/job1.out"
job=$(submit MPILM_LAUNCHER=mpirun MPILM_MAX_REQUEUES=0 MPILM_SIGNAL_LEAD=1 MPILM_ARGS="--set run.dir=$d/run2") || fail "sbatch"
preempt "$job" "$d/run2"
i=0
until grep -q "exit status" "$d/job.out" 2>/dev/null && ! squeue -h -j "$job" 2>/dev/null | grep -q .; do
  grep -q "requeueing job" "$d/job.out" && fail "the job requeued itself beyond MPILM_MAX_REQUEUES=0"
  i=$((i + 1)); [ $i -lt 120 ] || fail "the mpirun job did not end after the signal"
  sleep 0.5
done
grep -q "launching with mpirun (MPILM_LAUNCHER=mpirun)" "$d/job.out" || fail "MPILM_LAUNCHER=mpirun did not launch with mpirun"
grep -q "exit status 75" "$d/job.out" && [ -e "$d/run2/latest" ] || fail "the mpirun job did not checkpoint and exit 75"
grep -q "not requeueing: restart 0 reached MPILM_MAX_REQUEUES=0" "$d/job.out" || fail "no message at the requeue cap"
! grep -q "requeueing job" "$d/job.out" && scontrol show job "$job" 2>/dev/null | grep -q "Restarts=0" ||
  fail "the job requeued itself beyond MPILM_MAX_REQUEUES=0"
scontrol show job "$job" 2>/dev/null | grep -q "ExitCode=75:0" || fail "the job at the cap did not end with exit code 75"
echo "slurm: MPILM_LAUNCHER=mpirun job $job: preempted, checkpointed, exit 75 and not requeued at MPILM_MAX_REQUEUES=0"

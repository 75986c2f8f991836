#!/bin/bash
# mpilm under PBS Pro / Torque / OpenPBS: trains, checkpoints when PBS sends
# SIGTERM before killing the job (qdel, walltime, preemption), and submits
# itself again; the new job resumes from the latest checkpoint.
#
#   qsub -v MPILM_CONFIG=launch/configs/gpt-mini.ini launch/pbs.sh
#
# Requeue without operator rights: qrerun needs operator or manager rights at
# most sites, so on exit 75 (checkpoint written after the signal) the job runs
# `qsub` of this script again (MPILM_PBS_SCRIPT, default launch/pbs.sh, from the
# submit directory) with the job's select and walltime (from qstat -f) and the
# same MPILM_* variables (-v MPILM_CONFIG=...,MPILM_RESUBMITS=N+1,...; values
# must not contain commas), so the same run directory resumes. It stops after
# MPILM_MAX_REQUEUES resubmissions (default 10), exits 75 and says so.
# The alternative, with no resubmission from inside the job: a chain of jobs
# that each start only if the one before ended badly, submitted up front:
#   j1=$(qsub launch/pbs.sh); j2=$(qsub -W depend=afternotok:$j1 launch/pbs.sh); ...
# (export MPILM_MAX_REQUEUES=0 to them so they do not resubmit as well).
#
# PBS gives no warning before the walltime other than SIGTERM followed by
# SIGKILL after the kill delay (kill_delay, often 10 s), so mpilm checkpoints
# every ckpt.every_minutes (30 in the shipped configs; this script sets 30
# when the configuration leaves it off): at most that much work is lost when
# the save after SIGTERM does not fit in the kill delay. PBS signals every
# process of the job's session, and mpirun ends the job on SIGTERM by itself
# one second later with status 1; the launcher therefore runs in a session of
# its own and only this shell's SIGTERM reaches it, as SIGUSR1 (a checkpoint
# at the next step boundary, exit 75). Sites with PBS's cgroup hook still kill
# it at the end of the kill delay.
#
# Threads per rank: OMP_NUM_THREADS when the select asked for ompthreads (it
# then differs from NCPUS); otherwise PBS sets OMP_NUM_THREADS to the chunk's
# ncpus, and the script divides NCPUS by the ranks per host (the most lines
# of one host in $PBS_NODEFILE, one line per mpiprocs), e.g. ncpus=8:mpiprocs=2
# gives 4 threads per rank. Ranks are bound to their cores with their threads
# (launch/mpirun.sh -f $PBS_NODEFILE -t THREADS), and every job's output is
# also in RUN_DIR.launch-TIME.log.
#PBS -N mpilm
#PBS -l select=1:ncpus=2:mpiprocs=2
#PBS -l walltime=24:00:00
#PBS -r y
#PBS -j oe

set -u
cd "${PBS_O_WORKDIR:-.}" || exit
CONFIG=${MPILM_CONFIG:-launch/configs/gpt-mini.ini}
export MPILM=${MPILM:-./mpilm}
SCRIPT=${MPILM_PBS_SCRIPT:-launch/pbs.sh}
RESUBMITS=${MPILM_RESUBMITS:-0}
MAX_REQUEUES=${MPILM_MAX_REQUEUES:-10}

if [ -n "${PBS_NODEFILE:-}" ]; then
  NP=$(wc -l < "$PBS_NODEFILE")
  PER_HOST=$(sort "$PBS_NODEFILE" | uniq -c | awk '$1 > m { m = $1 } END { print m + 0 }')
  HOSTS=(-f "$PBS_NODEFILE")
else
  NP=1 PER_HOST=1 HOSTS=(-n 1)
fi
NCPUS=${NCPUS:-}
if [ -n "${OMP_NUM_THREADS:-}" ] && [ "${OMP_NUM_THREADS}" != "$NCPUS" ]; then
  THREADS=$OMP_NUM_THREADS HOW="ompthreads"
elif [ -n "$NCPUS" ]; then
  THREADS=$(( NCPUS / PER_HOST > 0 ? NCPUS / PER_HOST : 1 )) HOW="ncpus $NCPUS / $PER_HOST ranks per host"
else
  THREADS=1 HOW="no NCPUS"
fi
read -r -a ARGS <<< "${MPILM_ARGS:-}"  # train options, split at spaces (${ARGS[@]+...}: bash < 4.4 calls an empty array unset)
if "$MPILM" train --config "$CONFIG" ${ARGS[@]+"${ARGS[@]}"} --print-config 2> /dev/null | grep -q "^every_minutes = 0 ; from default"; then
  ARGS+=(--set ckpt.every_minutes=30)
fi

echo "mpilm: PBS job ${PBS_JOBID:-?} start $(date -u +%FT%TZ), resubmission $RESUBMITS of at most $MAX_REQUEUES, $NP ranks x $THREADS threads ($HOW), config $CONFIG"
setsid sh "$(dirname "$SCRIPT")/mpirun.sh" "${HOSTS[@]}" -t "$THREADS" "$CONFIG" ${ARGS[@]+"${ARGS[@]}"} &
pid=$!
trap 'echo "mpilm: preemption signal; asking ranks to checkpoint"; kill -USR1 $pid 2>/dev/null' USR1 TERM INT
# wait returns early (status 128 + signal) when a trapped signal arrives: wait
# again while the launcher lives, then once more for its own status, which bash
# keeps for a child that ended in between
while kill -0 $pid 2>/dev/null; do wait $pid; done
wait $pid
rc=$?
echo "mpilm: exit status $rc at $(date -u +%FT%TZ)"
[ "$rc" -eq 75 ] && [ -n "${PBS_JOBID:-}" ] || exit "$rc"
if [ "$RESUBMITS" -ge "$MAX_REQUEUES" ]; then
  echo "mpilm: checkpoint written after preemption; not resubmitting: $RESUBMITS resubmissions reached MPILM_MAX_REQUEUES=$MAX_REQUEUES (qsub the script again to resume)"
  exit 75
fi
# the new job: this job's resources, the same script and MPILM_* variables, one more resubmission
info=$(qstat -f "$PBS_JOBID" 2> /dev/null)
select=$(echo "$info" | sed -n 's/^ *Resource_List\.select = //p')
walltime=$(echo "$info" | sed -n 's/^ *Resource_List\.walltime = //p')
vars="MPILM=$MPILM,MPILM_CONFIG=$CONFIG,MPILM_PBS_SCRIPT=$SCRIPT,MPILM_RESUBMITS=$((RESUBMITS + 1)),MPILM_MAX_REQUEUES=$MAX_REQUEUES"
for name in $(env | sed -n 's/^\(MPILM_[A-Za-z0-9_]*\)=.*/\1/p' | sort -u); do
  case $name in MPILM_CONFIG | MPILM_PBS_SCRIPT | MPILM_RESUBMITS | MPILM_MAX_REQUEUES) continue ;; esac
  vars="$vars,$name=${!name}"
done
echo "mpilm: checkpoint written after preemption; resubmitting $SCRIPT ($((RESUBMITS + 1)) of at most $MAX_REQUEUES)"
qsub ${select:+-l select=$select} ${walltime:+-l walltime=$walltime} -N "${PBS_JOBNAME:-mpilm}" -v "$vars" "$SCRIPT" ||
  echo "mpilm: qsub failed; resume with: qsub -v MPILM_CONFIG=$CONFIG $SCRIPT"
exit 75

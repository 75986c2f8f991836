#!/bin/bash
# mpilm under PBS Pro / Torque / OpenPBS: trains, checkpoints when PBS sends
# SIGTERM before killing the job (qdel, walltime with a kill delay), and reruns
# itself; the rerun resumes from the latest checkpoint.
#
#   qsub -v MPILM_CONFIG=launch/configs/gpt-mini.ini launch/pbs.sh
#PBS -N mpilm
#PBS -l select=1:ncpus=2:mpiprocs=2
#PBS -l walltime=24:00:00
#PBS -r y
#PBS -j oe

set -u
cd "${PBS_O_WORKDIR:-.}"
CONFIG=${MPILM_CONFIG:-launch/configs/gpt-mini.ini}
MPILM=${MPILM:-./mpilm}
NP=$( [ -n "${PBS_NODEFILE:-}" ] && wc -l < "$PBS_NODEFILE" || echo 1)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} BLIS_NUM_THREADS=${BLIS_NUM_THREADS:-1}

mpirun -np "$NP" ${PBS_NODEFILE:+--hostfile "$PBS_NODEFILE"} -x OMP_NUM_THREADS -x BLIS_NUM_THREADS \
  "$MPILM" train --config "$CONFIG" --resume auto &
pid=$!
trap 'kill -USR1 $pid 2>/dev/null' USR1 TERM INT
# wait returns early (status 128 + signal) when a trapped signal arrives: wait
# again while mpirun lives, then once more for its own status, which bash keeps
# for a child that ended in between (taking the early status instead made a
# preempted job look failed, and it was not requeued)
while kill -0 $pid 2>/dev/null; do wait $pid; done
wait $pid
rc=$?
if [ "$rc" -eq 75 ] && [ -n "${PBS_JOBID:-}" ]; then
  echo "mpilm: checkpoint written after preemption; rerunning $PBS_JOBID"
  qrerun "$PBS_JOBID"
fi
exit "$rc"

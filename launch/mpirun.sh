#!/bin/sh
# Launch mpilm train under mpirun on this machine (or a host list), resuming
# automatically from the run's latest checkpoint.
#
#   launch/mpirun.sh [-n RANKS] [-t THREADS] [-H HOSTS] CONFIG [mpilm train options...]
#
#   -n RANKS    MPI ranks (default: cores / threads, at least 1)
#   -t THREADS  BLIS/OpenMP threads per rank (default 1)
#   -H HOSTS    host list passed to mpirun -H (default: this machine)
# Ranks are bound to cores when they fit (ranks × threads ≤ cores), else they
# oversubscribe unbound. The exit status is mpilm's: 75 means a checkpoint was
# written after a preemption signal and the same command resumes it.
#
# SIGTERM, SIGINT (Ctrl-C) and SIGUSR1 to this script are passed to mpirun as
# SIGUSR1, which mpirun forwards to every rank: mpilm checkpoints at the next
# step boundary and the script exits 75. (mpirun's own SIGTERM/SIGINT
# handling would kill the ranks one second later and exit 1.)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
MPILM=${MPILM:-$here/mpilm}
ranks="" threads=1 hosts=""
while getopts n:t:H: opt; do
  case $opt in
    n) ranks=$OPTARG ;;
    t) threads=$OPTARG ;;
    H) hosts=$OPTARG ;;
    *) echo "usage: launch/mpirun.sh [-n RANKS] [-t THREADS] [-H HOSTS] CONFIG [options...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "launch/mpirun.sh: a CONFIG file is required" >&2; exit 2; }
config=$1; shift
[ -f "$config" ] || { echo "launch/mpirun.sh: $config: no such config file" >&2; exit 2; }
cores=$(getconf _NPROCESSORS_ONLN)  # not nproc: it obeys OMP_NUM_THREADS
[ -n "$ranks" ] || ranks=$(( cores / threads > 0 ? cores / threads : 1 ))

if [ -n "$hosts" ] || [ $((ranks * threads)) -le "$cores" ]; then
  placement="--map-by slot:PE=$threads --bind-to core"
else
  placement="--oversubscribe --bind-to none"
fi
[ -z "$hosts" ] || placement="$placement -H $hosts"
[ "$(id -u)" != 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

export OMP_NUM_THREADS=$threads BLIS_NUM_THREADS=$threads
# shellcheck disable=SC2086
mpirun -np "$ranks" $placement -x OMP_NUM_THREADS -x BLIS_NUM_THREADS \
  "$MPILM" train --config "$config" --resume auto "$@" &
pid=$!
trap 'kill -s USR1 "$pid" 2> /dev/null' TERM INT USR1
# wait returns early when a trapped signal arrives; wait again while mpirun
# lives (a finished mpirun not yet waited for still answers kill -0).
while :; do
  rc=0
  wait "$pid" || rc=$?
  kill -0 "$pid" 2> /dev/null || break
done
exit "$rc"

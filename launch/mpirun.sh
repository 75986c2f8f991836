#!/bin/sh
# Launch mpilm train under mpirun on this machine or on a list of hosts,
# resuming automatically from the run's latest checkpoint.
#
#   launch/mpirun.sh [-n RANKS] [-t THREADS] [-H HOST[:SLOTS],...] [-f HOSTFILE] CONFIG [mpilm train options...]
#
#   -n RANKS    MPI ranks (default: the hosts' slots; on this machine, cores / threads, at least 1)
#   -t THREADS  BLIS/OpenMP threads per rank (default 1)
#   -H HOSTS    hosts with their slots (ranks), e.g. -H node1:2,node2:2 (a host without :SLOTS has 1)
#   -f HOSTFILE Open MPI hostfile: one "HOST [slots=N]" per line, # comments; a host without
#               slots= counts 1 per line, so a PBS node file works as it is
# With hosts, ranks fill each host's slots in order, and each rank is bound to THREADS
# cores that its threads share (--map-by slot:PE=THREADS --bind-to core). On this machine
# ranks are bound the same way when ranks x threads fit the cores, else they oversubscribe
# unbound. MPILM_* variables, OMP_NUM_THREADS and BLIS_NUM_THREADS reach the ranks on every
# host (mpirun -x), which start in this directory (--wdir; remote hosts need the same path,
# e.g. a shared file system). MPILM_MPIRUN_ARGS adds options to mpirun (e.g. "--mca btl
# tcp,self --display-map"). Everything the job prints also goes to RUN_DIR.launch-TIME.log
# beside the run directory (TIME = UTC start, YYYYmmddTHHMMSS; -2, -3... when taken).
#
# The exit status is mpilm's (or mpirun's when a rank dies): 75 means a checkpoint was
# written after a preemption signal and the same command resumes it. SIGTERM, SIGINT
# (Ctrl-C) and SIGUSR1 to this script are passed to mpirun as SIGUSR1, which mpirun
# forwards to every rank: mpilm checkpoints at the next step boundary and the script
# exits 75. (mpirun's own SIGTERM/SIGINT handling would kill the ranks one second later
# and exit 1.)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
MPILM=${MPILM:-$here/mpilm}
usage="usage: launch/mpirun.sh [-n RANKS] [-t THREADS] [-H HOST[:SLOTS],...] [-f HOSTFILE] CONFIG [options...]"
ranks="" threads=1 hostlist="" hostfile=""
while getopts n:t:H:f: opt; do
  case $opt in
    n) ranks=$OPTARG ;;
    t) threads=$OPTARG ;;
    H) hostlist=$OPTARG ;;
    f) hostfile=$OPTARG ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "launch/mpirun.sh: a CONFIG file is required" >&2; exit 2; }
config=$1; shift
[ -f "$config" ] || { echo "launch/mpirun.sh: $config: no such config file" >&2; exit 2; }
[ -z "$hostfile" ] || [ -f "$hostfile" ] || { echo "launch/mpirun.sh: -f $hostfile: no such hostfile" >&2; exit 2; }
case $threads in '' | *[!0-9]* | 0*) echo "launch/mpirun.sh: -t $threads: threads must be a whole number from 1" >&2; exit 2 ;; esac
case $ranks in *[!0-9]* | 0*) echo "launch/mpirun.sh: -n $ranks: ranks must be a whole number from 1" >&2; exit 2 ;; esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The hosts as one hostfile "HOST slots=N", a host's lines added up, in first-seen order.
hosts_normalise() {
  { [ -z "$hostfile" ] || sed 's/#.*//' "$hostfile"
    [ -z "$hostlist" ] || echo "$hostlist" | tr ',' '\n' | sed 's/^\([^:]*\):\(.*\)$/\1 slots=\2/'
  } | awk '
    NF == 0 { next }
    { n = 1
      for (i = 2; i <= NF; i++) if ($i ~ /^slots=/) { n = substr($i, 7); if (n !~ /^[0-9]+$/) { print "bad " $0; exit 1 } }
      if (!($1 in slots)) order[++hosts] = $1
      slots[$1] += n }
    END { for (i = 1; i <= hosts; i++) if (slots[order[i]] > 0) print order[i] " slots=" slots[order[i]] }'
}
placement=""
if [ -n "$hostfile$hostlist" ]; then
  hosts_normalise > "$tmp/hosts" || { echo "launch/mpirun.sh: $(tail -1 "$tmp/hosts"): slots must be a whole number" >&2; exit 2; }
  slots=$(awk '{ s += substr($2, 7) } END { print s + 0 }' "$tmp/hosts")
  [ "$slots" -gt 0 ] || { echo "launch/mpirun.sh: ${hostfile:+-f $hostfile }${hostlist:+-H $hostlist }names no slots: give hosts as HOST:SLOTS (-H) or \"HOST slots=N\" lines (-f)" >&2; exit 2; }
  [ -n "$ranks" ] || ranks=$slots
  [ "$ranks" -le "$slots" ] || { echo "launch/mpirun.sh: -n $ranks ranks, but the hosts give $slots slots ($(tr '\n' ' ' < "$tmp/hosts"))" >&2; exit 2; }
  placement="--hostfile $tmp/hosts --map-by slot:PE=$threads --bind-to core"
else
  cores=$(getconf _NPROCESSORS_ONLN)  # not nproc: it obeys OMP_NUM_THREADS
  [ -n "$ranks" ] || ranks=$(( cores / threads > 0 ? cores / threads : 1 ))
  if [ $((ranks * threads)) -le "$cores" ]; then
    placement="--map-by slot:PE=$threads --bind-to core"
  else
    placement="--oversubscribe --bind-to none"
  fi
fi
[ "$(id -u)" != 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=$threads BLIS_NUM_THREADS=$threads
forward="-x OMP_NUM_THREADS -x BLIS_NUM_THREADS"
for name in $(env | sed -n 's/^\(MPILM_[A-Za-z0-9_]*\)=.*/\1/p' | sort -u); do forward="$forward -x $name"; done

# the log beside the run directory (the config and the options say where it is)
"$MPILM" train --config "$config" "$@" --print-config > "$tmp/config" || exit 2
rundir=$(awk '/^\[/ { run = ($0 == "[run]") } run && $1 == "name" { name = $3 }
  run && $1 == "dir" && $3 != ";" { dir = $3 } END { print (dir != "" ? dir : "checkpoints/" name) }' "$tmp/config")
log=$rundir.launch-$(date -u +%Y%m%dT%H%M%S)
n=1 suffix=""
while [ -e "$log$suffix.log" ]; do n=$((n + 1)); suffix=-$n; done  # another job in the same second
log=$log$suffix.log
mkdir -p "$(dirname "$log")"
echo "launch/mpirun.sh: $ranks ranks x $threads threads${hostfile:+, hostfile $hostfile}${hostlist:+, hosts $hostlist}; log $log" | tee -a "$log"
mkfifo "$tmp/out" "$tmp/err"
# the tees outlive a Ctrl-C to the process group, so the job's last words are kept
(trap '' INT TERM USR1; exec tee -a "$log" < "$tmp/out") &
tee_out=$!
(trap '' INT TERM USR1; exec tee -a "$log" < "$tmp/err" >&2) &
tee_err=$!

# shellcheck disable=SC2086
mpirun -np "$ranks" $placement --wdir "$(pwd)" $forward ${MPILM_MPIRUN_ARGS:-} \
  "$MPILM" train --config "$config" --resume auto "$@" > "$tmp/out" 2> "$tmp/err" &
pid=$!
trap 'kill -s USR1 "$pid" 2> /dev/null' TERM INT USR1
# wait returns early when a trapped signal arrives; wait again while mpirun
# lives (a finished mpirun not yet waited for still answers kill -0).
while :; do
  rc=0
  wait "$pid" || rc=$?
  kill -0 "$pid" 2> /dev/null || break
done
wait "$tee_out" "$tee_err" 2> /dev/null || true
echo "launch/mpirun.sh: exit status $rc at $(date -u +%FT%TZ)" >> "$log"
exit "$rc"

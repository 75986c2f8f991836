#!/bin/sh
# A stuck pipeline stage: the watchdog (dist.hang_timeout = 1 s) ends the job
# with a report naming the instruction and the pending requests, in seconds.
BIN=${BUILD:-build}/tests/mpi/dist_checks
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
out=$(mktemp)
start=$(date +%s)
timeout 60 $MPIRUN -np 2 "$BIN" --hang >"$out" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
status=0
if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then echo "expected the watchdog to end the job, got exit $rc"; status=1; fi
grep -q 'exceeded dist.hang_timeout = 1 s on rank 0 (replica 0, stage 0) at instruction [0-9]* (RECV_GRAD micro-batch 0' "$out" ||
  { echo "stage 0's report is missing"; status=1; }
grep -q 'pending requests: .*receive into slot' "$out" || { echo "the pending requests are missing"; status=1; }
[ $elapsed -lt 20 ] || { echo "the job took ${elapsed} s to end (limit 20 s)"; status=1; }
echo "job ended with exit $rc after ${elapsed} s"
[ $status -eq 0 ] || cat "$out"
rm -f "$out"
exit $status

#!/bin/sh
# One rank's error ends a 4-rank job with that rank's message, within 10 s.
BIN=${BUILD:-build}/tests/mpi/error_path
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
out=$(mktemp)
start=$(date +%s%N)
timeout 60 $MPIRUN -np 4 "$BIN" --fail-rank 2 >"$out" 2>&1
rc=$?
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
status=0
if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then echo "expected a failing exit status, got $rc"; status=1; fi
grep -q 'mpilm: error: \[rank 2\] shard-00003.zst: checksum mismatch in frame 7 at byte 123456' "$out" ||
  { echo "the failing rank's message is missing"; status=1; }
[ $elapsed_ms -lt 10000 ] || { echo "the job took ${elapsed_ms} ms to end (limit 10 s)"; status=1; }
echo "job ended with exit $rc after ${elapsed_ms} ms"
[ $status -eq 0 ] || cat "$out"
rm -f "$out"
exit $status

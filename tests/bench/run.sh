#!/bin/sh
# make bench: runs every tests/bench/bench_*.sh in turn. Each prints its own
# figures with the peer's in the same run, and ratios; medians over repeats.
# Environment: BUILD, MPILM (set by make).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
status=0
for b in tests/bench/bench_*.sh; do
  [ -f "$b" ] || continue
  echo "=== $b"
  sh "$b" || { echo "bench $b failed"; status=1; }
done
exit $status

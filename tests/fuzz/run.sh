#!/bin/sh
# Runs the libFuzzer targets of tests/fuzz (built by make fuzz-build).
# For each target NAME (binary $BUILD/fuzz/fuzz_NAME):
#   1. replays tests/fuzz/corpus/NAME/* (seeds) and tests/fuzz/regressions/NAME/*
#      (inputs that once crashed, hung, leaked or tripped a sanitizer): each must pass;
#   2. fuzzes for FUZZ_SECONDS seconds (unless 0) with one job and one worker, from
#      the seeds; new inputs go to $BUILD/fuzz/corpus/NAME, findings (crash-*, leak-*,
#      timeout-*, oom-*) to $BUILD/fuzz/findings/NAME/;
# and prints "fuzz NAME: N executions, coverage C, PASS" (or FAIL with the
# finding). Exits 1 when any target fails.
# Environment: BUILD (default build), FUZZ_SECONDS (default 60), FUZZ_TARGETS
# (names, default all), TMPDIR (the harnesses' scratch files; /dev/shm when unset).
BUILD=${BUILD:-build}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
top=$(pwd)
fuzz_dir="$top/$BUILD/fuzz"
# Leaks are findings (tests/run.sh turns LeakSanitizer off for its own reasons under SAN=1).
export ASAN_OPTIONS=detect_leaks=1
[ -n "${TMPDIR:-}" ] || { [ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm; }
# A hang is a finding: 10 s for one input (the slowest seed takes well under 1 s).
flags="-timeout=10 -rss_limit_mb=2048 -max_len=8192"
if [ -z "${FUZZ_TARGETS:-}" ]; then
  FUZZ_TARGETS=$(ls tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_||; s|\.c$||' | grep -v '^common$')
fi

failed=""
for name in $FUZZ_TARGETS; do
  bin="$fuzz_dir/fuzz_$name"
  [ -x "$bin" ] || { echo "fuzz $name: FAIL (no $bin; run make fuzz-build)"; failed="$failed $name"; continue; }
  verdict=PASS
  replay=$(ls tests/fuzz/corpus/"$name"/* tests/fuzz/regressions/"$name"/* 2>/dev/null)
  if [ -n "$replay" ]; then
    # shellcheck disable=SC2086
    out=$("$bin" $flags $replay 2>&1) || {
      echo "$out" | grep -aE "ERROR|SUMMARY|fuzz check failed|Running:" | tail -8
      verdict="FAIL (replaying the seeds and regressions)"
    }
  fi
  execs=0 cov=0
  if [ "$verdict" = PASS ] && [ "$FUZZ_SECONDS" != 0 ]; then
    scratch="$fuzz_dir/runs/$name"
    mkdir -p "$scratch" "$fuzz_dir/corpus/$name" "$fuzz_dir/findings/$name"
    rm -f "$scratch"/fuzz-*.log
    # shellcheck disable=SC2086
    (cd "$scratch" && "$bin" -jobs=1 -workers=1 -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 $flags \
      -artifact_prefix="$fuzz_dir/findings/$name/" "$fuzz_dir/corpus/$name" "$top/tests/fuzz/corpus/$name" \
      > "$scratch/driver.log" 2>&1)
    rc=$?
    log="$scratch/fuzz-0.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" 2>/dev/null | tail -1)
    cov=$(grep -ao 'cov: [0-9]*' "$log" 2>/dev/null | tail -1 | cut -d' ' -f2)
    finding=$(grep -ao "Test unit written to .*" "$log" 2>/dev/null | tail -1 | sed 's/Test unit written to //')
    if [ $rc -ne 0 ] || [ -n "$finding" ] || grep -aq "^SUMMARY: \|ERROR: libFuzzer" "$log" 2>/dev/null; then
      grep -aE "ERROR|SUMMARY|fuzz check failed" "$log" 2>/dev/null | head -5
      verdict="FAIL (${finding:-exit $rc, see $log})"
    fi
  fi
  if [ "$FUZZ_SECONDS" = 0 ]; then echo "fuzz $name: replayed $(echo "$replay" | grep -c .) inputs, $verdict"
  else echo "fuzz $name: ${execs:-0} executions, coverage ${cov:-0}, $verdict"; fi
  [ "$verdict" = PASS ] || failed="$failed $name"
done
[ -z "$failed" ] || { echo "fuzz: failed:$failed"; exit 1; }
exit 0

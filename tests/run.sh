#!/bin/sh
# Runs every test of mpilm and ends with the line "N passed, N failed".
#   unit:  $BUILD/tests/unit/test_*        Criterion binaries (one per module)
#   mpi:   $BUILD/tests/mpi/NAME           run under mpirun with 2 and 4 ranks,
#                                          or the counts of a "// mpirun-np: 1 3"
#                                          line in tests/mpi/NAME.c; exit 0 = pass
#   shell: tests/mpi/*.sh, tests/integration/*.sh
#                                          exit 0 = pass, 77 = skipped (reason printed)
# Environment: BUILD (default build), MPILM (default ./mpilm), SAN=1 for sanitizer builds.
# STRICT=1 (the default when CI=true, except under SAN=1, where slow tests skip by
# design): a skipped test fails the run. Without STRICT a skip prints its reason
# and the run can stay green (no ../shared corpora, no torch, no root for Slurm).
BUILD=${BUILD:-build}
MPILM=${MPILM:-./mpilm}
export BUILD MPILM

# Open MPI refuses root unless told; CI and fresh machines run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Shared-memory transport without ptrace-based single copy (blocked in containers).
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# Tests use one BLIS/OpenMP thread per rank unless they say otherwise.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} BLIS_NUM_THREADS=${BLIS_NUM_THREADS:-1}
if [ "${SAN:-0}" = 1 ]; then
  # Unit tests are checked for leaks; programs under mpirun are not, since
  # Open MPI keeps allocations until exit by design.
  UNIT_ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi
MPIRUN="mpirun --oversubscribe --bind-to none"
export MPIRUN

passed=0 failed=0 skipped=0
failures="" skips=""
if [ -z "${STRICT:-}" ]; then
  STRICT=0
  [ "${CI:-}" = true ] && [ "${SAN:-0}" != 1 ] && STRICT=1
fi

record() { # name status
  case $2 in
    0) passed=$((passed + 1)); echo "PASS $1" ;;
    77) skipped=$((skipped + 1)); skips="$skips $1"; echo "SKIP $1" ;;
    *) failed=$((failed + 1)); failures="$failures $1"; echo "FAIL $1 (exit $2)" ;;
  esac
}

for t in "$BUILD"/tests/unit/test_*; do
  [ -x "$t" ] || continue
  case $t in *.o|*.d) continue ;; esac
  name=$(basename "$t")
  out=$(ASAN_OPTIONS=${UNIT_ASAN_OPTIONS:-$ASAN_OPTIONS} timeout 900 "$t" --jobs 2 --verbose 2>&1); rc=$?
  echo "$out" | grep -E "^\[(FAIL|----|SKIP)\]|Synthesis|Assertion|error" | head -40
  # Criterion leaves skipped tests (cr_skip_test: data absent) out of its count
  ns=$(echo "$out" | grep -c "^\[SKIP\]")
  skipped=$((skipped + ns))
  [ "$ns" -eq 0 ] || skips="$skips $name($ns)"
  # Criterion's own summary gives the number of tests in the binary.
  n=$(echo "$out" | sed -n 's/.*Tested: \([0-9]*\).*/\1/p' | tail -1)
  f=$(echo "$out" | sed -n 's/.*Failing: \([0-9]*\).*Crashing: \([0-9]*\).*/\1 \2/p' | tail -1)
  if [ -n "$n" ]; then
    nf=$(( $(echo "$f" | cut -d' ' -f1) + $(echo "$f" | cut -d' ' -f2) ))
    passed=$((passed + n - nf)); failed=$((failed + nf))
    [ "$nf" -eq 0 ] || failures="$failures $name"
    [ $rc -eq 0 ] || [ "$nf" -ne 0 ] || { failed=$((failed + 1)); failures="$failures $name(exit $rc)"; }
    echo "unit $name: $((n - nf))/$n"
  else
    echo "$out" | tail -20
    record "$name" $rc
  fi
done

for src in tests/mpi/*.c; do
  [ -f "$src" ] || continue
  name=$(basename "$src" .c)
  bin="$BUILD/tests/mpi/$name"
  counts=$(sed -n 's|^// mpirun-np: *||p' "$src" | head -1)
  for np in ${counts:-2 4}; do
    out=$(timeout 600 $MPIRUN -np "$np" "$bin" 2>&1); rc=$?
    [ $rc -eq 0 ] || echo "$out" | tail -30
    record "mpi $name -np $np" $rc
  done
done

for script in tests/mpi/*.sh tests/integration/*.sh; do
  [ -f "$script" ] || continue
  out=$(timeout 1800 sh "$script" 2>&1); rc=$?
  [ $rc -eq 0 ] || echo "$out" | tail -30
  [ $rc -ne 77 ] || echo "$out" | tail -3
  record "$script" $rc
done

echo
[ -z "$failures" ] || echo "failed:$failures"
echo "tests: $passed passed, $failed failed, $skipped skipped"
if [ "$STRICT" = 1 ] && [ "$skipped" -ne 0 ]; then
  echo "STRICT=1 (CI): skipped tests fail the run:$skips (make test-deps and ../shared provide what they need)"
  exit 1
fi
[ "$failed" -eq 0 ]

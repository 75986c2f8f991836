#!/bin/sh
# The mutation checks (tests/mutate.py, tests/mutations.ini): every deliberate
# bug listed must fail one of the tests named for it, in a scratch copy of the
# tree built on its own. Skipped under SAN=1 (the sanitizer run checks memory
# errors; the mutants are killed by numerics and behaviour, which `make test`
# covers). About 5 minutes on 2 cores.
[ "${SAN:-0}" = 1 ] && { echo "mutate: skipped under SAN=1 (make test runs it)"; exit 77; }
command -v python3 >/dev/null || { echo "mutate: skipped: no python3"; exit 77; }
out=$(python3 tests/mutate.py 2>&1); rc=$?
echo "$out" | grep -E "^(KILLED|SURVIVED|MUTANT|mutate:)"
[ $rc -eq 0 ] || { echo "$out" | tail -40; echo "FAIL mutate: a mutation survived or a named test fails on the real code"; exit 1; }

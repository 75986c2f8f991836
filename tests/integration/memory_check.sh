#!/bin/sh
# Before allocating the model, mpilm train compares every rank's memory
# estimate with what the process may use; here RLIMIT_AS (ulimit -v): a model
# that does not fit is refused with exit 2 and a message giving the estimate,
# the limit and its source, and what to change, on one rank and on 2 ranks
# under mpirun (the job ends, no hang, no OOM kill); a model that fits trains;
# MPILM_MEMORY_CHECK=0 skips the check.
MPILM=${MPILM:-./mpilm}
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
export MPILM_PEAK_GFLOPS=${MPILM_PEAK_GFLOPS:-1}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL memory_check: $*"; exit 1; }
# AddressSanitizer reserves terabytes of address space at start: no ulimit -v fits it
[ "${SAN:-0}" != 1 ] || { echo "memory_check: skipped: ulimit -v cannot be tested under AddressSanitizer (SAN=1)"; exit 77; }
. tests/common/tiny.sh
tiny_ini "$d/tiny.ini" || exit 1
limit=700000 # kB: about 280 MiB of libraries and MPI plus the tiny model fit, gpt-mini's ~270 MiB plan does not
big="launch/configs/gpt-mini.ini --set train.steps=1 --set train.precision=fp32"

(ulimit -v $limit && "$MPILM" train --config "$d/tiny.ini" --set run.dir="$d/tiny") > "$d/tiny.log" 2>&1 ||
  { tail -5 "$d/tiny.log"; fail "the tiny model was refused under ulimit -v $limit"; }

# refused LOG CMD...: exit 2 with the whole message, nothing written
refused() {
  log=$1; shift
  (ulimit -v $limit && exec "$@") > "$log" 2>&1
  rc=$?
  [ $rc -eq 2 ] || { tail -5 "$log"; fail "$*: exit $rc (expected 2)"; }
  for want in "memory: this layout needs about" "ulimit -v (RLIMIT_AS) = $limit kB" "activations" \
    "model.recompute = ffn (or true)" "dist.zero = 2" "train.micro_batch" "MPILM_MEMORY_CHECK=0"; do
    grep -qF "$want" "$log" || { cat "$log"; fail "the refusal does not say '$want'"; }
  done
  [ ! -e "$d/big/latest" ] || fail "a refused run wrote a checkpoint"
  echo "refused: $(grep -o 'error: .*' "$log" | head -1 | cut -c1-230)"
}
# shellcheck disable=SC2086
refused "$d/big1.log" "$MPILM" train --config $big --set run.dir="$d/big"
# shellcheck disable=SC2086
refused "$d/big2.log" timeout 120 $MPIRUN -np 2 "$MPILM" train --config $big --set run.dir="$d/big"

# the override: no refusal (what happens next is the user's business)
# shellcheck disable=SC2086
(ulimit -v $limit && MPILM_MEMORY_CHECK=0 exec "$MPILM" train --config $big --set run.dir="$d/over") > "$d/over.log" 2>&1
grep -q "memory check skipped (MPILM_MEMORY_CHECK=0)" "$d/over.log" || { tail -5 "$d/over.log"; fail "the override is not reported"; }
! grep -q "this layout needs about" "$d/over.log" || fail "MPILM_MEMORY_CHECK=0 still refused"
echo "memory_check: ok"

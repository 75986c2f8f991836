#!/bin/sh
# One rank of a 2-rank job is killed (SIGKILL) in the middle of a save, right
# after writing its shard, while the other goes on: the job ends, the
# half-written checkpoint is never taken for one (latest and the previous
# checkpoint verify), and the run resumes to the same losses as a run that was
# never interrupted.
MPILM=${MPILM:-./mpilm}
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL ckpt_kill_rank: $*"; exit 1; }
set -- --config /dev/null --set model.n_layer=2 --set model.d_model=32 --set model.n_head=4 --set model.d_ff=64 \
  --set model.seq_len=16 --set model.max_positions=16 --set model.vocab_size=97 --set train.micro_batch=2 \
  --set ckpt.every_steps=3 --set train.steps=9 --set log.every=1 \
  --set train.lr=3e-4 --set train.min_lr=3e-4 --set train.warmup_steps=0 # a constant LR: runs of 6 and 9 steps agree
$MPIRUN -np 2 "$MPILM" train "$@" --set run.dir="$d/straight" > "$d/log" 2>&1 || { cat "$d/log"; fail "uninterrupted run"; }
# rank 1 alone carries the crash hook (MPMD launch); it fires at its first save (step 3)
timeout 120 $MPIRUN -np 1 "$MPILM" train "$@" --set run.dir="$d/run" --set train.steps=6 : \
  -np 1 env MPILM_TEST_CRASH=ckpt:after_shard "$MPILM" train "$@" --set run.dir="$d/run" --set train.steps=6 \
  > "$d/log" 2>&1; rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "the job did not end when a rank died in the save (exit $rc)"
[ ! -e "$d/run/latest" ] || fail "a checkpoint was taken from a save a rank never finished"
ls "$d/run" | grep -q "^step-" && fail "a step directory appeared from the interrupted save: $(ls "$d/run")"
# a clean job saves at 3 and 6; then one rank dies in the save at step 9
$MPIRUN -np 2 "$MPILM" train "$@" --set run.dir="$d/run" --set train.steps=6 --resume auto > "$d/log" 2>&1 ||
  { cat "$d/log"; fail "the run after the crash"; }
timeout 120 $MPIRUN -np 1 "$MPILM" train "$@" --set run.dir="$d/run" --resume auto : \
  -np 1 env MPILM_TEST_CRASH=ckpt:after_shard "$MPILM" train "$@" --set run.dir="$d/run" --resume auto \
  > "$d/log" 2>&1 && fail "the job survived a rank killed in the save"
[ "$(readlink "$d/run/latest")" = step-0000006 ] || fail "latest is $(readlink "$d/run/latest"), expected step-0000006"
"$MPILM" inspect "$d/run" > /dev/null 2>&1 || fail "the previous checkpoint no longer verifies"
$MPIRUN -np 2 "$MPILM" train "$@" --set run.dir="$d/run" --resume auto > "$d/log" 2>&1 || { cat "$d/log"; fail "resume"; }
a=$(grep '"step":9,' "$d/run/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/')
b=$(grep '"step":9,' "$d/straight/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/')
[ -n "$a" ] && [ "$a" = "$b" ] || fail "resumed loss at step 9 ($a) differs from the uninterrupted run ($b)"
echo "ckpt_kill_rank: ok"

#!/bin/sh
# A save that hits a real limit on file size (ulimit -f, as a full disk or a
# quota would) ends with a clear error naming the file; the previous
# checkpoint and `latest` are untouched and resumable.
MPILM=${MPILM:-./mpilm}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL ckpt_diskfull: $*"; exit 1; }
set -- --config /dev/null --set model.n_layer=2 --set model.d_model=128 --set model.n_head=4 --set model.d_ff=256 \
  --set model.seq_len=16 --set model.max_positions=16 --set model.vocab_size=8192 --set train.micro_batch=2 \
  --set ckpt.every_steps=2 --set run.dir="$d/run"
"$MPILM" train "$@" --set train.steps=2 > "$d/log" 2>&1 || { cat "$d/log"; fail "first run"; }
[ -d "$d/run/step-0000002" ] || fail "no first checkpoint"
# the checkpoint is ~18 MB; 8 MiB per file cannot hold it (and leaves room for MPI's own files)
msg=$(sh -c 'ulimit -f 8192; exec "$0" "$@"' "$MPILM" train "$@" --set train.steps=4 --resume auto 2>&1); rc=$?
[ $rc -eq 1 ] || fail "a save beyond the file-size limit did not end with status 1 (exit $rc): $msg"
echo "$msg" | grep -q "too large\|No space\|free space" || fail "the error does not say what happened: $msg"
echo "$msg" | grep -q "$d/run" || fail "the error does not name the run directory: $msg"
[ "$(readlink "$d/run/latest")" = step-0000002 ] || fail "latest moved: $(readlink "$d/run/latest")"
ls -a "$d/run" | grep -q "tmp" && fail "a temporary checkpoint directory was left: $(ls -a "$d/run")"
"$MPILM" inspect "$d/run" > /dev/null 2>&1 || fail "the previous checkpoint no longer verifies"
"$MPILM" train "$@" --set train.steps=4 --resume auto > "$d/log" 2>&1 || { cat "$d/log"; fail "resume after the failed save"; }
[ -d "$d/run/step-0000004" ] || fail "the resumed run did not checkpoint"
echo "ckpt_diskfull: ok"

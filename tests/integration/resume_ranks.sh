#!/bin/sh
# Restart on another rank count with train.global_batch as the invariant
# (micro_batches = auto = global_batch / (dp x micro_batch)): a GPT run saved
# at step 10 on 4 ranks (pp 2 x dp 2, ZeRO 1, 4 micro-batches) resumes on 2
# ranks (dp 2: 4 micro-batches; pp 2: 8) and on 8 ranks (dp 8: 1 micro-batch)
# with per-step losses within 1e-5 of the uninterrupted 4-rank run; refusals: a
# global batch the layout does not divide, a micro_batches that disagrees, and
# (without global_batch) another rank count resumed with another global batch.
. tests/common/ckpt_common.sh
TRAIN_SET="--set train.precision=fp32"
fail() { echo "FAIL resume_ranks: $*"; exit 1; }
G="--set train.global_batch=8 --set train.micro_batch=1 --set train.micro_batches=auto --set ckpt.every_steps=10"

# shellcheck disable=SC2086
train 4 "$d/s.log" $G --set dist.pp=2 --set dist.zero=1 --set run.dir="$d/s" || { tail -5 "$d/s.log"; fail "4-rank run"; }
grep -q "global batch 1 x 4 x 2 sequences" "$d/s.log" || { grep "global batch" "$d/s.log"; fail "4 ranks (pp 2 x dp 2): expected micro_batches 4"; }
losses "$d/s" | tail -10 > "$d/a"
for to in "2 dp2 --set dist.pp=1:1 x 4 x 2" "2 pp2 --set dist.pp=2:1 x 8 x 1" "8 dp8 --set dist.pp=1 --set dist.zero=2:1 x 1 x 8"; do
  spec=${to%%:*} want=${to#*:}
  set -- $spec
  np=$1 name=$2; shift 2
  # shellcheck disable=SC2086
  resume_from "$np" "$d/s" "$d/$name" $G "$@" || fail "resume on $np ranks ($name)"
  grep -q "global batch $want sequences" "$d/$name.log" || { grep "global batch" "$d/$name.log"; fail "$name: expected global batch $want"; }
  losses "$d/$name" | tail -10 > "$d/b"
  close "$d/a" "$d/b" || fail "resumed on $np ranks ($name): losses differ from the uninterrupted 4-rank run"
  echo "resumed on $np ranks ($name, global batch $want): losses within 1e-5 of the uninterrupted 4-rank run"
done

# refusals (exit 2, the message names the keys and the numbers)
# shellcheck disable=SC2086
train 4 "$d/r1.log" --set train.global_batch=6 --set train.micro_batch=1 --set train.micro_batches=auto --set run.dir="$d/r1"
rc=$?
[ $rc = 2 ] && grep -q "train.global_batch = 6 is not a multiple of dist.dp x train.micro_batch = 4 x 1 = 4" "$d/r1.log" ||
  { tail -3 "$d/r1.log"; fail "a global batch 4 replicas do not divide: exit $rc"; }
train 2 "$d/r2.log" --set train.global_batch=8 --set train.micro_batch=1 --set train.micro_batches=3 --set run.dir="$d/r2"
rc=$?
[ $rc = 2 ] && grep -q "train.micro_batches = 3 disagrees with train.global_batch = 8" "$d/r2.log" ||
  { tail -3 "$d/r2.log"; fail "micro_batches disagreeing with global_batch: exit $rc"; }
# without train.global_batch the rank count changes the global batch, and resume refuses
train 4 "$d/n.log" --set train.micro_batch=1 --set train.micro_batches=2 --set ckpt.every_steps=10 --set run.dir="$d/n" ||
  fail "4-rank run without global_batch"
mkdir -p "$d/n2" && cp -r "$d/n/step-0000010" "$d/n2/" && ln -s step-0000010 "$d/n2/latest"
train 2 "$d/n2.log" --set train.micro_batch=1 --set train.micro_batches=2 --set run.dir="$d/n2" --resume auto
rc=$?
[ $rc = 2 ] && grep -q "set train.global_batch to keep it on any rank count" "$d/n2.log" ||
  { tail -3 "$d/n2.log"; fail "another global batch on resume: exit $rc"; }
echo "refusals: undividable global batch, disagreeing micro_batches, another global batch on resume"
echo "PASS resume_ranks"

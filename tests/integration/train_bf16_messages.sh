#!/bin/sh
# bf16 messages through mpilm train (tiny GPT and BERT, random data, 10 steps;
# tolerances and their grounds in tests/mpi/dist_bf16.c, u = 2^-8):
# - train.precision = bf16 at pp = 2 (1f1b and gpipe): losses within u/8
#   relative of the 1-rank bf16 run, and not all equal (the boundary is rounded);
# - dist.grad_reduce = bf16 at dp = 2 (ZeRO 0 and 2, fp32 precision, which the
#   key allows): losses within u/16 of grad_reduce = fp32, and not all equal;
# - dist.grad_reduce = fp16 is refused before any work (exit 2, naming the key).
# The pipeline part needs a CPU with bf16 instructions (else exit 77 after the rest).
. tests/common/ckpt_common.sh
fail() { echo "FAIL train_bf16_messages: $*"; exit 1; }
unset MPILM_CPU_BF16

# worst A B: the largest relative difference of the "loss" fields of two metrics files
worst() {
  paste -d' ' "$1" "$2" | sed 's/[^ ]*"loss":\([^,]*\)[^ ]* [^ ]*"loss":\([^,]*\).*/\1 \2/' |
    awk '{ e = $1 - $2; if (e < 0) e = -e; r = e / ($2 < 0 ? -$2 : $2); if (r > w) w = r } END { printf "%.3g\n", w + 0 }'
}
# compare NAME A B TOLERANCE: within it, not bitwise equal
compare() {
  w=$(worst "$2" "$3")
  awk -v w="$w" -v t="$4" 'BEGIN { exit !(w <= t) }' || fail "$1: losses differ by $w relative (tolerance $4)"
  ! cmp -s "$2" "$3" || fail "$1: losses are bitwise equal (no bf16 message was rounded)"
  echo "$1: losses within $w relative (tolerance $4), not bitwise equal"
}
run() { # name ranks options...
  name=$1 np=$2; shift 2
  train "$np" "$d/$name.log" --set train.steps=10 --set run.dir="$d/$name" "$@" || { tail -5 "$d/$name.log"; fail "$name"; }
  losses "$d/$name" > "$d/$name.txt"
}

train 1 "$d/bad.log" --set dist.grad_reduce=fp16 --set run.dir="$d/bad"; rc=$?
[ $rc -eq 2 ] || { tail -5 "$d/bad.log"; fail "dist.grad_reduce = fp16: exit $rc (expected 2)"; }
grep -q "dist.grad_reduce" "$d/bad.log" || { cat "$d/bad.log"; fail "the refusal does not name dist.grad_reduce"; }
[ ! -e "$d/bad/metrics.jsonl" ] || fail "work was done before the refusal"
echo "refused: dist.grad_reduce = fp16"

for fam in gpt bert; do
  set -- --set model.family=$fam --set train.micro_batches=2 --set train.precision=fp32
  for zero in 0 2; do
    run "$fam-dp2-$zero-fp32" 2 "$@" --set dist.zero=$zero
    run "$fam-dp2-$zero-bf16" 2 "$@" --set dist.zero=$zero --set dist.grad_reduce=bf16
    compare "$fam dp=2 zero=$zero grad_reduce=bf16 vs fp32" "$d/$fam-dp2-$zero-bf16.txt" "$d/$fam-dp2-$zero-fp32.txt" \
      0.000244140625
  done
done

run probe 1 --set train.steps=1
grep -q "^precision bf16 (auto: " "$d/probe.log" ||
  { echo "skip: this CPU has no bf16 GEMM instructions ($(grep -m1 '^precision' "$d/probe.log")); grad_reduce checked"; exit 77; }
for fam in gpt bert; do
  set -- --set model.family=$fam --set train.micro_batches=4 --set train.precision=bf16
  run "$fam-1" 1 "$@"
  for sched in 1f1b gpipe; do
    run "$fam-pp2-$sched" 2 "$@" --set dist.pp=2 --set dist.schedule=$sched
    compare "$fam bf16 pp=2 $sched vs 1 rank" "$d/$fam-pp2-$sched.txt" "$d/$fam-1.txt" 0.00048828125
  done
done
echo "train_bf16_messages: ok"

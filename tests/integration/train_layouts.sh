#!/bin/sh
# mpilm train on every layout through the pipeline/ZeRO engine: 10 steps at
# (pp, dp, zero, schedule) = (2,1,0,1f1b), (2,1,0,gpipe), (1,2,1), (1,2,2),
# (2,2,2,1f1b) give the per-step losses of (1,1,0) with the same global batch
# (micro_batches x dp = 4) within 1e-5, GPT, BERT and Llama (grouped-query
# attention, untied head; tied too at two layouts) on random data, GPT and Llama
# on a dataset; bad layouts are refused before any work (exit 2, naming the key);
# a rank killed mid-run ends the job instead of hanging.
. tests/common/ckpt_common.sh
# The 1e-5 agreement across layouts is an fp32 property (bf16 layouts: train_bf16.sh)
TRAIN_SET="--set train.precision=fp32"
fail() { echo "FAIL train_layouts: $*"; exit 1; }
set_layout() { # pp dp zero schedule -> options in $opts, ranks in $np
  np=$(($1 * $2)) opts="--set dist.pp=$1 --set dist.zero=$3 --set dist.schedule=$4 --set train.micro_batches=$((4 / $2))"
}

"$MPILM" prep --train-vocab 400 --tokenizer bpe --out "$d/bpe" datasets/sample/sample.txt > "$d/prep.log" 2>&1 ||
  { cat "$d/prep.log"; fail "prep"; }
for case in gpt:random bert:random llama:random gpt:bpe llama:bpe; do
  fam=${case%%:*} data=${case#*:}
  set -- --set model.family=$fam --set train.steps=10
  [ "$fam" = llama ] && set -- "$@" --set model.n_kv_head=1
  [ "$data" = random ] || set -- "$@" --set data.source=dataset --set data.path="$d/$data"
  base="$d/$fam-$data-base"
  train 1 "$base.log" "$@" --set train.micro_batches=4 --set run.dir="$base" || { tail -5 "$base.log"; fail "$case: (1,1,0)"; }
  losses "$base" > "$d/a"
  for layout in 2:1:0:1f1b 2:1:0:gpipe 1:2:1:1f1b 1:2:2:1f1b 2:2:2:1f1b; do
    [ "$data" = random ] || [ "$layout" = 2:2:2:1f1b ] || continue
    set_layout $(echo "$layout" | tr : ' ')
    run="$d/$fam-$data-$layout"
    # shellcheck disable=SC2086
    train $np "$run.log" "$@" $opts --set run.dir="$run" || { tail -5 "$run.log"; fail "$case: layout $layout"; }
    grep -q "layout: pp ${layout%%:*} x dp" "$run.log" || fail "$case $layout: the placement is not printed"
    grep -q "rank $((np - 1)) memory: params" "$run.log" || fail "$case $layout: per-rank memory is not printed"
    grep -q "peak RSS per rank (MiB): 0: [0-9]*, 1: [0-9]*" "$run.log" || fail "$case $layout: per-rank peak RSS is not printed"
    if [ "${layout%%:*}" = 2 ]; then
      grep -q '"bubble":0\.[0-9]*' "$run/metrics.jsonl" || fail "$case $layout: no bubble in metrics.jsonl"
      grep -q "| bubble [0-9.]*%" "$run.log" || fail "$case $layout: no bubble on the progress line"
      grep -q "compute per step per rank (s; .*): 0: [0-9.]*, 1: [0-9.]*" "$run.log" ||
        fail "$case $layout: the stages' compute is not printed"
    fi
    losses "$run" > "$d/b"
    close "$d/a" "$d/b" || fail "$case: layout (pp,dp,zero,schedule) = $layout differs from (1,1,0)"
    echo "$case: layout $layout matches (1,1,0) within 1e-5"
  done
done

# a tied llama (model.tie_embeddings = true: lm_head is the embedding, the last stage keeps
# a copy summed with the first stage's as GPT's) at pp 2 x dp 2 ZeRO 2 and pp 2 GPipe
set -- --set model.family=llama --set model.n_kv_head=1 --set model.tie_embeddings=true --set train.steps=10
train 1 "$d/tied-base.log" "$@" --set train.micro_batches=4 --set run.dir="$d/tied-base" ||
  { tail -5 "$d/tied-base.log"; fail "tied llama (1,1,0)"; }
losses "$d/tied-base" > "$d/a"
for layout in 2:2:2:1f1b 2:1:0:gpipe; do
  set_layout $(echo "$layout" | tr : ' ')
  # shellcheck disable=SC2086
  train $np "$d/tied-$layout.log" "$@" $opts --set run.dir="$d/tied-$layout" ||
    { tail -5 "$d/tied-$layout.log"; fail "tied llama $layout"; }
  losses "$d/tied-$layout" > "$d/b"
  close "$d/a" "$d/b" || fail "tied llama: layout $layout differs from (1,1,0)"
  echo "llama with tie_embeddings: layout $layout matches (1,1,0) within 1e-5"
done

# bad layouts: refused before any work, exit 2, the message names the key
refused() { # ranks key-pattern options...
  np=$1 pat=$2; shift 2
  rm -rf "$d/bad"
  train $np "$d/bad.log" --set run.dir="$d/bad" "$@"; rc=$?
  [ $rc -eq 2 ] || { tail -5 "$d/bad.log"; fail "$*: exit $rc (expected 2)"; }
  grep -q "$pat" "$d/bad.log" || { cat "$d/bad.log"; fail "$*: the message does not name $pat"; }
  [ ! -e "$d/bad/metrics.jsonl" ] || fail "$*: work was done before the refusal"
  echo "refused: $* ($(grep -o "$pat[^;]*" "$d/bad.log" | head -1))"
}
refused 3 "dist.pp = 3 exceeds model.n_layer = 2" --set dist.pp=3
refused 3 "dist.pp = 2 does not divide the 3 ranks" --set dist.pp=2
refused 2 "dist.pp x dist.dp = 2 x 2 = 4 but the job has 2 ranks" --set dist.pp=2 --set dist.dp=2
refused 1 "dist.pp x dist.tp = 1 x 2 does not divide the 1 ranks" --set dist.tp=2
refused 2 "dist.tp = 2 does not divide model.n_kv_head = 1" --set model.family=llama --set dist.tp=2 --set model.n_kv_head=1
refused 1 "model.rope_theta = 500, but model.family = gpt does not take it" --set model.rope_theta=500
refused 1 "model.n_kv_head = 3 does not divide model.n_head = 2" --set model.family=llama --set model.n_kv_head=3

# a rank killed mid-run: the job ends (Open MPI or the watchdog), it does not hang
$MPIRUN -np 2 "$MPILM" train --config "$d/tiny.ini" --set dist.pp=2 --set train.steps=100000 \
  --set dist.hang_timeout=5 --set run.dir="$d/kill" > "$d/kill.log" 2>&1 &
job=$!
i=0
while [ ! -s "$d/kill/metrics.jsonl" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
[ -s "$d/kill/metrics.jsonl" ] || { kill $job; fail "the job to be killed did not start training"; }
victim=$(pgrep -P "$job" -f "$MPILM" | tail -1)
[ -n "$victim" ] || victim=$(pgrep -P "$(pgrep -P "$job" | head -1)" | tail -1)
[ -n "$victim" ] || { kill $job; fail "no rank process of the job found"; }
start=$(date +%s)
kill -9 "$victim"
i=0
while kill -0 $job 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 $job 2>/dev/null; then kill $job; fail "the job still runs 60 s after a rank was killed"; fi
wait $job; rc=$?
[ $rc -ne 0 ] || fail "the job exited 0 after a rank was killed"
echo "killed rank $victim: the job ended with exit $rc after $(( $(date +%s) - start )) s"
echo "train_layouts: ok"

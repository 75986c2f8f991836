#!/bin/sh
# Tensor parallelism (dist.tp, 1d and 2d) through mpilm train, GPT on random
# data with a vocabulary (509) that is not a multiple of tp, 4 heads:
# - 2 ranks at tp = 2 give the per-step losses of 1 rank (tp = 1) within 1e-5,
#   and the placement shows the tp ranks; BERT likewise;
# - a checkpoint saved at tp = 2 resumes at tp = 1, and one saved at tp = 1
#   resumes at tp = 2: losses within 1e-5 of the uninterrupted run; the
#   manifest records tp; the exports of the final tp = 2 checkpoints (1d, 2d,
#   pp 2 x tp 2) hold tp = 1's parameter values within 3e-5;
# - the tp = 2 (1d) checkpoint resumes at tp = 4 in 2d (4 ranks, a 2 x 2
#   grid) and at tp = 2 in 2d: losses within 1e-5 of the uninterrupted run;
#   tp = 2 in 2d from the start gives tp = 1's losses and its checkpoint
#   resumes at tp = 1; so does pp 2 x tp 2 in 2d (GPipe, recomputation);
# - Llama (4 query heads over 2 key/value heads, untied lm_head split by
#   vocabulary): tp = 2, pp 2 x tp 2 (recompute), dp 2 x tp 2 (ZeRO 2) and tp = 2 with model.recompute = ffn and ffn+attention give tp = 1's losses
#   within 1e-5 (dropout 0.1: masks keyed by the global head), and its tp = 2
#   checkpoint resumes at tp = 1;
# - bad layouts are refused before any work (exit 2, naming the key).
. tests/common/ckpt_common.sh
# The 1e-5 agreement across tensor-parallel layouts is an fp32 property (bf16 layouts: train_bf16.sh)
TRAIN_SET="--set train.precision=fp32"
fail() { echo "FAIL train_tp: $*"; exit 1; }

for fam in gpt bert; do
  set -- --set model.family=$fam --set model.vocab_size=509 --set model.n_head=4 --set train.micro_batches=4 \
    --set ckpt.every_steps=10
  train 1 "$d/$fam-1.log" "$@" --set run.dir="$d/$fam-1" || { tail -5 "$d/$fam-1.log"; fail "$fam tp = 1"; }
  train 2 "$d/$fam-2.log" "$@" --set dist.tp=2 --set run.dir="$d/$fam-2" || { tail -5 "$d/$fam-2.log"; fail "$fam tp = 2"; }
  grep -q "layout: pp 1 x dp 1 x tp 2" "$d/$fam-2.log" && grep -q "rank 1: replica 0 stage 0 tp 1/2" "$d/$fam-2.log" ||
    fail "$fam: the tp placement is not printed"
  losses "$d/$fam-1" > "$d/a" && losses "$d/$fam-2" > "$d/b"
  close "$d/a" "$d/b" || fail "$fam: tp = 2 losses differ from tp = 1"
  echo "$fam: tp = 2 matches tp = 1 within 1e-5 over 20 steps"
done

# checkpoints across tp (GPT): the last family's options are replaced
set -- --set model.family=gpt --set model.vocab_size=509 --set model.n_head=4 --set train.micro_batches=4 \
  --set ckpt.every_steps=10
grep -q '"tp":	2' "$d/gpt-2/step-0000010/manifest.json" || fail "the manifest does not record tp 2"
resume_from 1 "$d/gpt-2" "$d/r21" "$@" || fail "resume of a tp = 2 checkpoint at tp = 1"
losses "$d/gpt-1" > "$d/a" && losses "$d/r21" > "$d/b"
close "$d/a" "$d/b" || fail "saved at tp = 2, resumed at tp = 1: losses differ from the uninterrupted run"
echo "saved at tp = 2, resumed at tp = 1: losses within 1e-5"
resume_from 2 "$d/gpt-1" "$d/r12" "$@" --set dist.tp=2 || fail "resume of a tp = 1 checkpoint at tp = 2"
losses "$d/r12" > "$d/b"
close "$d/a" "$d/b" || fail "saved at tp = 1, resumed at tp = 2: losses differ from the uninterrupted run"
echo "saved at tp = 1, resumed at tp = 2: losses within 1e-5"
for np in 4 2; do
  resume_from $np "$d/gpt-2" "$d/r2d$np" "$@" --set dist.tp=$np --set dist.tp_mode=2d ||
    fail "resume of a tp = 2 (1d) checkpoint at tp = $np in 2d"
  losses "$d/r2d$np" > "$d/b"
  close "$d/a" "$d/b" || fail "saved at tp = 2 (1d), resumed at tp = $np (2d): losses differ from the uninterrupted run"
  echo "saved at tp = 2 (1d), resumed at tp = $np (2d): losses within 1e-5"
done
train 2 "$d/gpt-2d.log" "$@" --set dist.tp=2 --set dist.tp_mode=2d --set run.dir="$d/gpt-2d" ||
  { tail -5 "$d/gpt-2d.log"; fail "gpt tp = 2 in 2d"; }
grep -Eq "layout: pp 1 x dp 1 x tp 2 \(2d: FFN on a (1 x 2|2 x 1) grid, blocks of [0-9]+\)" "$d/gpt-2d.log" ||
  fail "the 2d mode, its grid and block are not printed with the layout"
losses "$d/gpt-2d" > "$d/b"
close "$d/a" "$d/b" || fail "tp = 2 in 2d: losses differ from tp = 1"
resume_from 1 "$d/gpt-2d" "$d/r2d1" "$@" || fail "resume of a tp = 2 (2d) checkpoint at tp = 1"
losses "$d/r2d1" > "$d/b"
close "$d/a" "$d/b" || fail "saved at tp = 2 (2d), resumed at tp = 1: losses differ from the uninterrupted run"
echo "tp = 2 in 2d matches tp = 1; saved at tp = 2 (2d), resumed at tp = 1: losses within 1e-5"

# 2d composed with a pipeline through mpilm train: pp 2 x tp 2 on 4 ranks,
# GPipe, activation recomputation, ZeRO 1 (its dp group is one rank)
train 4 "$d/gpt-pp2d.log" "$@" --set dist.pp=2 --set dist.tp=2 --set dist.tp_mode=2d --set dist.schedule=gpipe \
  --set model.recompute=true --set dist.zero=1 --set run.dir="$d/gpt-pp2d" ||
  { tail -5 "$d/gpt-pp2d.log"; fail "gpt pp 2 x tp 2 in 2d"; }
grep -q "layout: pp 2 x dp 1 x tp 2 (2d: FFN on a" "$d/gpt-pp2d.log" || fail "pp 2 x tp 2 2d: no layout line"
losses "$d/gpt-pp2d" > "$d/b"
close "$d/a" "$d/b" || fail "pp 2 x tp 2 in 2d (gpipe, recompute): losses differ from tp = 1"
echo "pp 2 x tp 2 in 2d (gpipe, recompute, zero 1) matches tp = 1 within 1e-5"

# tp 2 x dp 2 (4 ranks, the same global batch): each of the stage's 4 ranks saves its part
# of the unsplit stage, parameters from replica 0 and moments from their owner (zero 0:
# replica 0; zero 1: the shard's); the checkpoint resumes at tp = 1 on 1 rank
for zero in 0 1; do
  train 4 "$d/gpt-tpdp$zero.log" "$@" --set dist.tp=2 --set dist.zero=$zero --set train.micro_batches=2 \
    --set run.dir="$d/gpt-tpdp$zero" || { tail -5 "$d/gpt-tpdp$zero.log"; fail "gpt tp 2 x dp 2 zero $zero"; }
  [ "$(grep -o '"rank":	[0-9]' "$d/gpt-tpdp$zero/step-0000010/manifest.json" | sort -u | wc -l)" -eq 4 ] ||
    fail "tp 2 x dp 2 zero $zero: not every rank wrote its part of the checkpoint"
  resume_from 1 "$d/gpt-tpdp$zero" "$d/rtpdp$zero" "$@" || fail "resume of the tp 2 x dp 2 zero $zero checkpoint at tp = 1"
  losses "$d/rtpdp$zero" > "$d/b"
  close "$d/a" "$d/b" || fail "saved at tp 2 x dp 2 zero $zero, resumed at tp = 1: losses differ from the uninterrupted run"
done
echo "saved at tp 2 x dp 2 (zero 0 and 1; every rank writes its part), resumed at tp = 1: losses within 1e-5"

# export from the final (step 20) checkpoints of tp = 2, tp = 2 in 2d and pp 2 x
# tp 2 (the whole model on one rank): the same files as from tp = 1, and the
# same parameter values, read by tests/tools/compare_safetensors.py (json +
# struct, not mpilm's reader). No loss sees the last step's update: only these
# values show it. Largest difference measured 3.4e-6 (GPT, tp 2, 1d and 2d):
# the tolerance is 10x that.
for run in gpt-1 gpt-2 gpt-2d gpt-pp2d; do
  "$MPILM" export --ckpt "$d/$run" --format hf --out "$d/hf-$run" > "$d/export.log" 2>&1 ||
    { cat "$d/export.log"; fail "export of the $run checkpoint"; }
done
for run in gpt-2 gpt-2d gpt-pp2d; do
  [ "$(cd "$d/hf-gpt-1" && ls -l | awk '{print $5, $9}')" = "$(cd "$d/hf-$run" && ls -l | awk '{print $5, $9}')" ] ||
    fail "the export of the $run checkpoint differs in files or sizes from tp = 1's"
  cmp -s "$d/hf-gpt-1/config.json" "$d/hf-$run/config.json" || fail "the export of $run has another config.json"
  ${PYTHON:-python3} tests/tools/compare_safetensors.py --tol 3e-5 "$d/hf-gpt-1/model.safetensors" \
    "$d/hf-$run/model.safetensors" || fail "the exported parameters of $run differ from tp = 1's"
done
echo "export from tp = 2 (1d, 2d, with pp 2) checkpoints: the parameters of tp = 1 within 3e-5"

# Llama: query heads and their kv groups split over the tensor group
set -- --set model.family=llama --set model.n_kv_head=2 --set model.vocab_size=509 --set model.n_head=4 \
  --set train.micro_batches=4 --set ckpt.every_steps=10
train 1 "$d/llama-1.log" "$@" --set run.dir="$d/llama-1" || { tail -5 "$d/llama-1.log"; fail "llama tp = 1"; }
losses "$d/llama-1" > "$d/a"
for case in tp2:2:--set:dist.tp=2 pp2tp2:4:--set:dist.pp=2:--set:dist.tp=2:--set:model.recompute=true \
  dp2tp2:4:--set:dist.tp=2:--set:dist.zero=2:--set:train.micro_batches=2 \
  tp2ffn:2:--set:dist.tp=2:--set:model.recompute=ffn tp2ffnatt:2:--set:dist.tp=2:--set:model.recompute=ffn+attention; do
  name=${case%%:*} rest=${case#*:} np=${rest%%:*} opts=$(echo "${rest#*:}" | tr : ' ')
  # shellcheck disable=SC2086
  train "$np" "$d/llama-$name.log" "$@" $opts --set run.dir="$d/llama-$name" ||
    { tail -5 "$d/llama-$name.log"; fail "llama $name"; }
  losses "$d/llama-$name" > "$d/b"
  close "$d/a" "$d/b" || fail "llama $name: losses differ from tp = 1"
  echo "llama $name ($opts) matches tp = 1 within 1e-5"
done
resume_from 1 "$d/llama-tp2" "$d/llama-r21" "$@" || fail "llama: resume of a tp = 2 checkpoint at tp = 1"
losses "$d/llama-r21" > "$d/b"
close "$d/a" "$d/b" || fail "llama: saved at tp = 2, resumed at tp = 1: losses differ from the uninterrupted run"
echo "llama: saved at tp = 2, resumed at tp = 1: losses within 1e-5"

# bad layouts: refused before any work, exit 2, the message names the key
refused() { # ranks pattern options...
  np=$1 pat=$2; shift 2
  rm -rf "$d/bad"
  train "$np" "$d/bad.log" --set run.dir="$d/bad" "$@"; rc=$?
  [ $rc -eq 2 ] || { tail -5 "$d/bad.log"; fail "$*: exit $rc (expected 2)"; }
  grep -q "$pat" "$d/bad.log" || { cat "$d/bad.log"; fail "$*: the message does not name $pat"; }
  [ ! -e "$d/bad/metrics.jsonl" ] || fail "$*: work was done before the refusal"
  echo "refused: $*"
}
refused 2 "dist.tp = 2 does not divide model.n_head = 1" --set dist.tp=2 --set model.n_head=1
refused 3 "dist.pp x dist.tp = 1 x 2 does not divide the 3 ranks" --set dist.tp=2
refused 2 "dist.tp: 5 ranks (a prime) have no 2D grid.*dist.tp_mode = 1d" --set dist.tp=5 --set dist.tp_mode=2d
refused 2 "dist.tp = 2 does not divide model.n_kv_head = 1" --set model.family=llama --set dist.tp=2 \
  --set model.n_head=2 --set model.n_kv_head=1
refused 2 "dist.tp_mode = 2d with model.family = llama" --set model.family=llama --set dist.tp=2 --set dist.tp_mode=2d
refused 2 "model.recompute = ffn with dist.tp_mode = 2d" --set dist.tp=2 --set dist.tp_mode=2d \
  --set model.recompute=ffn --set train.precision=fp32
exit 0

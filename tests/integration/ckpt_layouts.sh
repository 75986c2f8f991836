#!/bin/sh
# Checkpoints on pipeline/ZeRO layouts, GPT, BERT and Llama (grouped-query
# attention, untied lm_head) on random data:
# - exact resume at (pp, dp, zero) = (2,2,2): 20 steps straight vs 10, save,
#   resume 10 in a new job: identical per-step losses and identical final
#   shard files (params, m, v), with the layout's files (a rank's part of the
#   last stage is split around the tied embedding copy, which is not written);
# - reshard: saved at (2,2,1), resumed at (1,4,2), (4,1,0) and (1,1,0) with the
#   same global batch: per-step losses within 1e-5 of the same-layout resume;
#   another global batch is refused.
. tests/common/ckpt_common.sh
# The 1e-5 agreement across layouts is an fp32 property (bf16 layouts: train_bf16.sh)
TRAIN_SET="--set train.precision=fp32"
fail() { echo "FAIL ckpt_layouts: $*"; exit 1; }
layout() { # pp dp zero -> options in $opts, ranks in $np (global batch 2 x 4 sequences)
  np=$(($1 * $2)) opts="--set dist.pp=$1 --set dist.zero=$3 --set train.micro_batches=$((4 / $2))"
}
# resume_from (tests/common/ckpt_common.sh) with the layout's ranks and options
resume_layout() { # SRC DST options...
  src=$1 dst=$2; shift 2
  # shellcheck disable=SC2086
  resume_from "$np" "$src" "$dst" "$@" $opts
}

for fam in gpt bert llama; do
  set -- --set model.family=$fam --set model.n_layer=4 --set ckpt.every_steps=10
  [ "$fam" = llama ] && set -- "$@" --set model.n_kv_head=1
  # exact resume at (2,2,2)
  layout 2 2 2
  # shellcheck disable=SC2086
  train $np "$d/$fam-s.log" "$@" $opts --set run.dir="$d/$fam-s" || { tail -5 "$d/$fam-s.log"; fail "$fam (2,2,2) straight run"; }
  grep -q '"pp":	2' "$d/$fam-s/step-0000020/manifest.json" && grep -q '"zero":	2' "$d/$fam-s/step-0000020/manifest.json" ||
    fail "$fam: the manifest does not record pp 2, zero 2"
  [ "$(ls "$d/$fam-s/step-0000020" | grep -c '^shard-')" -ge 4 ] || fail "$fam: fewer shard files than ranks"
  "$MPILM" inspect "$d/$fam-s/step-0000020" > "$d/inspect.log" 2>&1 || { cat "$d/inspect.log"; fail "$fam: inspect"; }
  resume_layout "$d/$fam-s" "$d/$fam-r" "$@" || fail "$fam (2,2,2) resumed run"
  losses "$d/$fam-s" > "$d/a" && losses "$d/$fam-r" > "$d/b"
  cmp -s "$d/a" "$d/b" || { diff "$d/a" "$d/b" | head; fail "$fam (2,2,2): per-step losses differ after resume"; }
  (cd "$d/$fam-s/step-0000020" && ls shard-*) > "$d/a" && (cd "$d/$fam-r/step-0000020" && ls shard-*) > "$d/b"
  cmp -s "$d/a" "$d/b" || fail "$fam (2,2,2): the resumed run wrote other shard files"
  for f in $(cat "$d/a"); do
    cmp "$d/$fam-s/step-0000020/$f" "$d/$fam-r/step-0000020/$f" || fail "$fam (2,2,2): final $f differs after resume"
  done
  echo "$fam (2,2,2): resumed run identical (losses and $(wc -l < "$d/a") shard files)"

  # reshard: saved at (2,2,1)
  layout 2 2 1
  # shellcheck disable=SC2086
  train $np "$d/$fam-z1.log" "$@" $opts --set run.dir="$d/$fam-z1" || { tail -5 "$d/$fam-z1.log"; fail "$fam (2,2,1) run"; }
  resume_layout "$d/$fam-z1" "$d/$fam-z1r" "$@" || fail "$fam (2,2,1) same-layout resume"
  losses "$d/$fam-z1r" | tail -10 > "$d/a"
  for to in 1:4:2 4:1:0 1:1:0; do
    layout $(echo "$to" | tr : ' ')
    resume_layout "$d/$fam-z1" "$d/$fam-to-$to" "$@" || fail "$fam: (2,2,1) checkpoint resumed at $to"
    losses "$d/$fam-to-$to" | tail -10 > "$d/b"
    close "$d/a" "$d/b" || fail "$fam: (2,2,1) checkpoint resumed at (pp,dp,zero) = $to differs"
    echo "$fam: (2,2,1) checkpoint resumed at $to within 1e-5"
    [ "$to" = 4:1:0 ] || continue
    # the last stage's part is split around its copy of the tied embedding: two entries of rank 3
    # (one for the untied Llama, whose lm_head is its own tensor at the end of the model)
    "$MPILM" inspect "$d/$fam-to-$to/step-0000020" > "$d/inspect.log" 2>&1 || { cat "$d/inspect.log"; fail "$fam: inspect (4,1,0)"; }
    entries=2
    [ "$fam" = llama ] && entries=1
    [ "$(grep -c 'shard-.*: rank 3,' "$d/inspect.log")" -eq $entries ] ||
      { cat "$d/inspect.log"; fail "$fam (4,1,0): rank 3 did not write $entries entries"; }
  done
done

# another global batch is refused before training (the sample numbering would change)
layout 1 2 0
mkdir -p "$d/gb"
# shellcheck disable=SC2086
train $np "$d/gb.log" --set model.n_layer=4 $opts --set train.micro_batches=1 --set run.dir="$d/gb" \
  --resume "$d/gpt-z1/step-0000010"; rc=$?
[ $rc -eq 2 ] && grep -q "resume with the same global batch" "$d/gb.log" ||
  { tail -5 "$d/gb.log"; fail "a resume with another global batch was not refused (exit $rc)"; }
[ ! -e "$d/gb/metrics.jsonl" ] || fail "training started before refusing another global batch"
echo "another global batch: refused"
echo "ckpt_layouts: ok"

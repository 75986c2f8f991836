#!/bin/sh
# bf16 mixed precision (train.precision) through mpilm train and eval; tiny models (2 layers,
# d_model 64, 4 heads, d_ff 256, 32 tokens, vocabulary 509), random data, dropout on, 10 steps,
# global batch 16 sequences (micro_batch 4 x micro_batches 4/dp x dp):
# - layouts in bf16 against 1 rank in bf16: GPT at pp 2 (GPipe, 1F1B), dp 2 (ZeRO 1, 2),
#   tp 2, pp 2 x tp 2, pp 2 x dp 2, dp 2 x tp 2 (4 ranks); BERT at pp 2 (both schedules),
#   dp 2 (ZeRO 1, 2), tp 2; Llama (4 query heads over 2 kv heads) likewise. Bitwise: the step-1 losses at dp 2 (same weights, samples and
#   bf16 GEMMs; the gradient reduction is fp32), GPipe = 1F1B and ZeRO 1 = ZeRO 2 at every
#   step, and GPT's dp 2 x tp 2 checkpoint with ZeRO 2 is bitwise that of ZeRO 0 (the
#   update's all-gather leaves low halves out, the save completes them). Tolerances at every step: dp and tp layouts T_LAYOUT, layouts with a pipeline
#   T_MIX (their stages may exchange activations and gradients in bf16: one more rounding
#   of the size of a GEMM input's);
# - bf16 differs from fp32 (the very first loss already, by more than fp32 reordering
#   noise) but stays within T_MIX for 10 steps; auto = bf16 here, bitwise;
# - exact resume in bf16 (GPT and BERT on 1 rank, GPT at pp 2): bitwise losses and final
#   shards; a fp32 checkpoint resumed in bf16 and a bf16 one resumed in fp32 train on
#   within T_MIX of the straight run in the new precision; the checkpoints of both
#   precisions have the same files and sizes (fp32 master weights and moments);
# - MPILM_CPU_BF16=0: auto trains in fp32 (bitwise the explicit fp32 run), explicit bf16
#   is refused (exit 2, naming train.precision); bf16 with dist.tp_mode = 2d is refused;
# - eval --precision fp32 / bf16 on a trained checkpoint: both run, within T_MIX;
#   --precision foo is refused (exit 2);
# - BERT in bf16 with bert-mini's 16 x 128 positions per step (a varying number of masked
#   tokens, so a new GEMM shape at nearly every step) trains 300 steps.
#
# Tolerances, from bf16's unit roundoff u = 2^-8 (8 significant bits; fp32's is 2^-24):
# - T_MIX = u/16 = 2^-12 ~ 2.4e-4 relative (bf16 against fp32). Each GEMM input is rounded
#   to bf16 with relative error <= u; if those errors added up coherently the loss would move
#   by ~u. They have random signs, cancel in every dot product and in the mean over the
#   step's 512 target tokens (sqrt(512) ~ 2^4.5), and here (near initialisation) the logits
#   are small beside the loss (~ ln V), so the loss moves by far less than u: u/16 leaves
#   room for the training steps to carry differences forward. NSP is a mean over 16
#   sequences only, ~1/4 the terms of the >= 64 masked tokens, so sqrt(4) = 2x: u/8.
#   Measured here (7 seeds): <= 3.3e-5 (token losses), <= 1.3e-4 (NSP).
# - T_LAYOUT = u/64 = 2^-14 ~ 6.1e-5 (NSP 2^-13), dp and tp layouts in bf16 against 1 rank
#   in bf16. They change only the order of fp32 sums (the dp gradient reduction, tp's partial
#   sums), ~2^-24 relative; bf16 turns that into a one-bf16-ulp change of the few elements
#   that sit near a rounding boundary, and AdamW's normalised update carries it into the
#   weights: a fraction of the full bf16 rounding effect, a quarter of T_MIX. Measured here
#   (4 seeds): <= 9.4e-6; the same layouts in fp32 differ by <= 2e-8.
. tests/common/ckpt_common.sh
fail() { echo "FAIL train_bf16: $*"; exit 1; }
unset MPILM_CPU_BF16
# MFU is not under test: no timing of a 2048^3 GEMM for each new rank count
export MPILM_PEAK_GFLOPS=${MPILM_PEAK_GFLOPS:-100}
start=$(date +%s)
T_MIX=$(awk 'BEGIN { print 2^-12 }') T_MIX_NSP=$(awk 'BEGIN { print 2^-11 }')
T_LAYOUT=$(awk 'BEGIN { print 2^-14 }') T_LAYOUT_NSP=$(awk 'BEGIN { print 2^-13 }')
BASE="--set model.d_model=64 --set model.n_head=4 --set model.d_ff=256 --set model.seq_len=32
  --set model.max_positions=32 --set model.vocab_size=509 --set train.micro_batch=4 --set train.steps=10
  --set train.warmup_steps=3 --set ckpt.every_steps=5"

# refused EXPECTED-PATTERN RANKS options...: exit 2, the message matches, no training done
refused() {
  pat=$1 np=$2; shift 2
  rm -rf "$d/bad"
  # shellcheck disable=SC2086
  train "$np" "$d/bad.log" $BASE --set run.dir="$d/bad" "$@"; rc=$?
  [ $rc -eq 2 ] || { tail -5 "$d/bad.log"; fail "$*: exit $rc (expected 2)"; }
  grep -q "$pat" "$d/bad.log" || { cat "$d/bad.log"; fail "$*: the message does not match '$pat'"; }
  [ ! -e "$d/bad/metrics.jsonl" ] || fail "$*: training started before the refusal"
  echo "refused (exit 2): $* -> $(grep -m1 -o "error: .*" "$d/bad.log" | cut -c1-150)"
}

# CPU-independent checks first: MPILM_CPU_BF16 simulates the CPU
# shellcheck disable=SC2086
(export MPILM_CPU_BF16=0; train 1 "$d/nobf16.log" $BASE --set train.micro_batches=4 --set run.dir="$d/nobf16") || { tail -5 "$d/nobf16.log"; fail "auto with MPILM_CPU_BF16=0"; }
grep -q "^precision fp32 (auto: " "$d/nobf16.log" || { grep precision "$d/nobf16.log"; fail "MPILM_CPU_BF16=0: auto does not say precision fp32"; }
[ "$(wc -l < "$d/nobf16/metrics.jsonl")" -eq 10 ] || fail "MPILM_CPU_BF16=0: auto did not train 10 steps"
echo "MPILM_CPU_BF16=0, auto: $(grep -m1 '^precision' "$d/nobf16.log"), trained 10 steps"
(export MPILM_CPU_BF16=0; refused "train.precision" 1 --set train.precision=bf16) || exit 1
(export MPILM_CPU_BF16=1; refused "train.precision = bf16 with dist.tp_mode = 2d" 2 --set train.precision=bf16 --set dist.tp=2 \
  --set dist.tp_mode=2d) || exit 1
# shellcheck disable=SC2086
(export MPILM_CPU_BF16=1; train 2 "$d/auto2d.log" $BASE --set dist.tp=2 --set dist.tp_mode=2d --set train.steps=2 --set run.dir="$d/auto2d") ||
  { tail -5 "$d/auto2d.log"; fail "auto with dist.tp_mode = 2d"; }
grep -q "precision fp32 (auto: dist.tp_mode = 2d" "$d/auto2d.log" || { grep precision "$d/auto2d.log"; fail "auto with 2d does not pick fp32"; }
echo "MPILM_CPU_BF16=1, auto with dist.tp_mode = 2d: $(grep -m1 -o 'precision fp32.*' "$d/auto2d.log")"

# the rest needs a CPU with bf16 instructions (explicit bf16 is refused without them)
train 1 "$d/probe.log" $BASE --set train.steps=1 --set ckpt.every_steps=0 --set run.dir="$d/probe" ||
  { tail -5 "$d/probe.log"; fail "auto, 1 step"; }
if ! grep -q "^precision bf16 (auto: " "$d/probe.log"; then
  echo "skip: this CPU has no bf16 GEMM instructions ($(grep -m1 '^precision' "$d/probe.log")); the CPU-independent checks above passed"
  exit 77
fi

# agree NAME A B TOL TOL_NSP: per-key max relative difference of the metrics files A and B,
# printed; fails above the tolerance; sets $first to the first step whose loss differs (0: none)
agree() {
  name=$1; loss_diff "$2" "$3" > "$d/diff" || fail "$name: the metrics do not pair up"
  first=0 line=""
  while read -r key rel at firstk; do
    tol=$4; [ "$key" = nsp_loss ] && tol=$5
    awk -v r="$rel" -v t="$tol" 'BEGIN { exit !(r <= t) }' || fail "$name: $key differs by $rel (relative) at step $at, above $tol"
    [ "$key" = loss ] && first=$firstk
    line="$line $key $rel,"
  done < "$d/diff"
  tols="$4"; grep -q "^nsp_loss" "$d/diff" && tols="$4, NSP $5"
  if [ "$first" = 0 ]; then bw="bitwise at every step"; else bw="first difference at step $first"; fi
  echo "$name: max rel diff:${line%,} (tolerance $tols); $bw"
}

for fam in gpt bert llama; do
  set -- $BASE --set model.family=$fam
  [ $fam = llama ] && set -- "$@" --set model.n_kv_head=2
  train 1 "$d/$fam-1.log" "$@" --set train.micro_batches=4 --set train.precision=bf16 --set run.dir="$d/$fam-1" ||
    { tail -5 "$d/$fam-1.log"; fail "$fam: 1 rank in bf16"; }
  grep -q "^precision bf16 (train.precision = bf16" "$d/$fam-1.log" || fail "$fam: no 'precision bf16' line"
  losses "$d/$fam-1" > "$d/$fam-1.l"
  if [ $fam = gpt ]; then
    layouts="pp2-gpipe:2:1:1:0:gpipe pp2-1f1b:2:1:1:0:1f1b dp2-zero1:1:2:1:1:1f1b dp2-zero2:1:2:1:2:1f1b tp2:1:1:2:0:1f1b
      pp2xtp2:2:1:2:0:1f1b pp2xdp2-zero1:2:2:1:1:1f1b dp2xtp2-zero2:1:2:2:2:1f1b dp2xtp2-zero0:1:2:2:0:1f1b"
  else
    layouts="pp2-gpipe:2:1:1:0:gpipe pp2-1f1b:2:1:1:0:1f1b dp2-zero1:1:2:1:1:1f1b dp2-zero2:1:2:1:2:1f1b tp2:1:1:2:0:1f1b"
  fi
  for l in $layouts; do
    IFS=: read -r name pp dp tp zero sched <<EOF
$l
EOF
    np=$((pp * dp * tp)) run="$d/$fam-$name"
    train $np "$run.log" "$@" --set train.precision=bf16 --set dist.pp=$pp --set dist.tp=$tp --set dist.zero=$zero \
      --set dist.schedule=$sched --set train.micro_batches=$((4 / dp)) --set run.dir="$run" || { tail -5 "$run.log"; fail "$fam $name"; }
    grep -q "layout: pp $pp x dp $dp x tp $tp" "$run.log" || fail "$fam $name: not the layout asked for"
    losses "$run" > "$run.l"
    if [ "$pp" = 1 ]; then
      agree "$fam bf16 $name ($np ranks) vs 1 rank" "$d/$fam-1.l" "$run.l" "$T_LAYOUT" "$T_LAYOUT_NSP"
    else
      agree "$fam bf16 $name ($np ranks) vs 1 rank" "$d/$fam-1.l" "$run.l" "$T_MIX" "$T_MIX_NSP"
    fi
    # dp alone: at step 1 the same weights, samples and bf16 GEMMs, the loss averaged over ranks
    [ "$pp$tp" != 11 ] || [ "$first" != 1 ] || fail "$fam $name: the step-1 loss is not bitwise that of 1 rank"
  done
  cmp -s "$d/$fam-pp2-gpipe.l" "$d/$fam-pp2-1f1b.l" || fail "$fam: GPipe and 1F1B give different losses in bf16"
  cmp -s "$d/$fam-dp2-zero1.l" "$d/$fam-dp2-zero2.l" || fail "$fam: ZeRO 1 and ZeRO 2 give different losses in bf16"
  echo "$fam bf16: GPipe = 1F1B and ZeRO 1 = ZeRO 2 bitwise at every step"
  if [ $fam = gpt ]; then
    # ZeRO's all-gather moves only the low halves read in fp32; a checkpoint completes the
    # rest first (at tp 2 replica 0 sends every parameter): the same shards as ZeRO 0's
    for f in "$d/gpt-dp2xtp2-zero0/step-0000010"/shard-*.bin; do
      cmp -s "$f" "$d/gpt-dp2xtp2-zero2/step-0000010/${f##*/}" ||
        fail "gpt dp 2 x tp 2: ZeRO 2's checkpoint ${f##*/} differs from ZeRO 0's in bf16"
    done
    echo "gpt bf16 dp 2 x tp 2: ZeRO 2's step-10 checkpoint is bitwise ZeRO 0's"
  fi

  # bf16 against fp32: differs from the first step on, by more than reordering noise, but close
  train 1 "$d/$fam-fp32.log" "$@" --set train.micro_batches=4 --set train.precision=fp32 --set run.dir="$d/$fam-fp32" ||
    { tail -5 "$d/$fam-fp32.log"; fail "$fam: 1 rank in fp32"; }
  grep -q "^precision fp32 (train.precision = fp32)" "$d/$fam-fp32.log" || fail "$fam: no 'precision fp32' line"
  losses "$d/$fam-fp32" > "$d/$fam-fp32.l"
  agree "$fam bf16 vs fp32" "$d/$fam-fp32.l" "$d/$fam-1.l" "$T_MIX" "$T_MIX_NSP"
  [ "$first" = 1 ] || fail "$fam: bf16 and fp32 give the same step-1 loss: bf16 GEMMs not used"
  awk -v r="$(sed -n 's/^loss \([^ ]*\) .*/\1/p' "$d/diff")" 'BEGIN { exit !(r >= 2^-20) }' ||
    fail "$fam: bf16 and fp32 differ by less than 2^-20 (16 fp32 ulps): reordering noise, not bf16 rounding"
  # exact resume in bf16, on 1 rank (and at pp 2 for GPT): the step-5 checkpoint in a new process
  for r in 1 $( [ $fam = gpt ] && echo pp2-1f1b); do
    src="$d/$fam-$r" dst="$d/$fam-$r-resumed" np=1 lo=""
    [ "$r" = 1 ] || { np=2 lo="--set dist.pp=2"; }
    mkdir "$dst" && cp -r "$src/step-0000005" "$dst/" && ln -s step-0000005 "$dst/latest"
    head -5 "$src/metrics.jsonl" > "$dst/metrics.jsonl"
    # shellcheck disable=SC2086
    train $np "$dst.log" "$@" --set train.micro_batches=4 --set train.precision=bf16 $lo --set run.dir="$dst" --resume auto ||
      { tail -5 "$dst.log"; fail "$fam $r: bf16 resume"; }
    grep -q "resumed from .*step-0000005 (step 5)" "$dst.log" || fail "$fam $r: no resume message"
    losses "$dst" > "$dst.l"
    cmp -s "$src.l" "$dst.l" || { diff "$src.l" "$dst.l" | head -4; fail "$fam $r: bf16 losses differ after an exact resume"; }
    for f in "$src/step-0000010"/shard-*.bin; do
      cmp -s "$f" "$dst/step-0000010/${f##*/}" || fail "$fam $r: final ${f##*/} differs after an exact resume"
    done
    echo "$fam bf16 ($r): 5 steps + --resume auto + 5 steps = 10 straight steps, bitwise (losses, shards)"
  done
  # the checkpoints hold fp32 master weights and moments in both precisions
  [ "$(cd "$d/$fam-1/step-0000005" && ls -l shard-* | awk '{ print $5, $9 }')" = \
    "$(cd "$d/$fam-fp32/step-0000005" && ls -l shard-* | awk '{ print $5, $9 }')" ] ||
    fail "$fam: bf16 and fp32 checkpoints differ in files or sizes"
  # across precisions: a fp32 checkpoint resumed in bf16 and a bf16 one in fp32
  for x in fp32:bf16 bf16:fp32; do
    from=${x%:*} to=${x#*:}
    src="$d/$fam-fp32" ref="$d/$fam-fp32" other="$d/$fam-1"
    [ $from = bf16 ] && src="$d/$fam-1"
    [ $to = bf16 ] && { ref="$d/$fam-1" other="$d/$fam-fp32"; }
    dst="$d/$fam-$from-to-$to"
    train 1 "$dst.log" "$@" --set train.micro_batches=4 --set train.precision=$to --set run.dir="$dst" --resume "$src/step-0000005" ||
      { tail -5 "$dst.log"; fail "$fam: a $from checkpoint resumed in $to"; }
    grep -q "^precision $to" "$dst.log" && grep -q "resumed from .*step-0000005 (step 5)" "$dst.log" ||
      fail "$fam: $from -> $to: no 'precision $to' line or no resume message"
    losses "$dst" > "$dst.l"
    tail -5 "$ref.l" > "$d/ref.l"
    [ "$(wc -l < "$dst.l")" -eq 5 ] || fail "$fam: $from -> $to: $(wc -l < "$dst.l") metrics lines (expected steps 6-10)"
    agree "$fam $from checkpoint resumed in $to, steps 6-10 vs straight $to" "$d/ref.l" "$dst.l" "$T_MIX" "$T_MIX_NSP"
    tail -5 "$other.l" | cmp -s - "$dst.l" && fail "$fam: $from -> $to: the losses are those of a straight $( [ $to = bf16 ] && echo fp32 || echo bf16) run"
  done
done

# auto = bf16 on this CPU: bitwise the explicit bf16 run
train 1 "$d/gpt-auto.log" $BASE --set train.micro_batches=4 --set run.dir="$d/gpt-auto" || { tail -5 "$d/gpt-auto.log"; fail "auto"; }
losses "$d/gpt-auto" | cmp -s - "$d/gpt-1.l" || fail "auto on a bf16 CPU differs from explicit bf16"
echo "auto: $(grep -m1 '^precision' "$d/gpt-auto.log"), losses bitwise those of explicit bf16"
# MPILM_CPU_BF16=0 with auto (above) = explicit fp32, bitwise
losses "$d/nobf16" | cmp -s - "$d/gpt-fp32.l" || fail "MPILM_CPU_BF16=0 auto differs from explicit fp32"
echo "MPILM_CPU_BF16=0 auto: losses bitwise those of explicit fp32"

# eval --precision on a checkpoint trained on a dataset
"$MPILM" prep --train-vocab 500 --tokenizer bpe --out "$d/bpe" datasets/sample/sample.txt > "$d/prep.log" 2>&1 ||
  { cat "$d/prep.log"; fail "prep"; }
# shellcheck disable=SC2086
train 1 "$d/ev.log" $BASE --set train.steps=30 --set data.source=dataset --set data.path="$d/bpe" --set run.dir="$d/ev" ||
  { tail -5 "$d/ev.log"; fail "training on the dataset"; }
for p in fp32 bf16; do
  "$MPILM" eval --ckpt "$d/ev" --data "$d/bpe" --precision $p --json "$d/ev-$p.json" > "$d/ev-$p.log" 2>&1 ||
    { cat "$d/ev-$p.log"; fail "eval --precision $p"; }
  grep -q "precision $p" "$d/ev-$p.log" || { cat "$d/ev-$p.log"; fail "eval --precision $p does not say precision $p"; }
done
a=$(sed -n 's/.*"lm_loss": \([^,]*\),*$/\1/p' "$d/ev-fp32.json") b=$(sed -n 's/.*"lm_loss": \([^,]*\),*$/\1/p' "$d/ev-bf16.json")
[ -n "$a" ] && [ -n "$b" ] || fail "eval --json lacks lm_loss"
[ "$a" != "$b" ] || fail "eval: --precision bf16 gives the fp32 loss exactly ($a)"
awk -v a="$a" -v b="$b" -v t="$T_MIX" 'BEGIN { e = (a - b) / a; if (e < 0) e = -e; printf "eval lm_loss fp32 %s, bf16 %s: rel diff %.3g (tolerance %s)\n", a, b, e, t; exit !(e <= t) }' ||
  fail "eval: bf16 and fp32 losses differ by more than $T_MIX"
"$MPILM" eval --ckpt "$d/ev" --data "$d/bpe" --precision foo > "$d/ev-foo.log" 2>&1; rc=$?
[ $rc -eq 2 ] || { cat "$d/ev-foo.log"; fail "eval --precision foo: exit $rc (expected 2)"; }
grep -q -- "--precision" "$d/ev-foo.log" || { cat "$d/ev-foo.log"; fail "eval --precision foo: the message does not name --precision"; }
echo "eval --precision foo refused (exit 2): $(head -1 "$d/ev-foo.log")"

# BERT's MLM head multiplies only the masked positions, whose number changes from batch to
# batch (15% of 16 x 128 positions: ~300 +- 16): a bf16 run meets a new GEMM shape at nearly
# every step and must keep training (bert-mini's shape: 300 steps)
# shellcheck disable=SC2086
train 1 "$d/shapes.log" $BASE --set model.family=bert --set model.seq_len=128 --set model.max_positions=128 \
  --set train.micro_batch=16 --set train.micro_batches=1 --set train.steps=300 --set log.every=50 --set ckpt.every_steps=0 \
  --set train.precision=bf16 --set run.dir="$d/shapes" || { tail -3 "$d/shapes.log"; fail "BERT in bf16, 16 x 128 tokens per step, 300 steps"; }
[ "$(tail -1 "$d/shapes/metrics.jsonl" | sed 's/.*"step":\([0-9]*\).*/\1/')" = 300 ] || fail "BERT in bf16 (300 steps): no step 300"
echo "BERT in bf16, a varying number of masked tokens (16 x 128 positions per step): 300 steps trained"
echo "train_bf16: ok ($(( $(date +%s) - start )) s)"

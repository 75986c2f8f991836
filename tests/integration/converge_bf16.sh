#!/bin/sh
# bf16 mixed precision converges like fp32 on real text: a BPE (GPT) and a WordPiece (BERT)
# vocabulary of 8192 trained on the first ~4 MB of ../shared/corpora/train.txt, the first
# ~0.4 MB of valid.txt prepped with the same vocabularies; gpt-mini (4 layers, d_model 256,
# 4 heads, d_ff 1024; seq_len 128, micro-batch 8) and bert-mini (the same sizes; seq_len
# 128, micro-batch 16) trained 300 steps from the same seed in bf16 and in fp32 (warm-up 20,
# cosine decay to 0, dropout 0.1). Asserted, bf16 against fp32:
# - the final training loss (mean of the last 20 steps, log.every = 1) within 1%;
# - the validation loss (mpilm eval --data on valid.txt's dataset; BERT: MLM + NSP) within
#   1%, each model evaluated in its own precision and both in fp32;
# and that both runs learned (final loss at least 1.0 below the first 20 steps' mean) and
# really ran in their precision (the start-up line; their losses are not the same strings).
# Runs with 2 threads; prints the time of every phase (~3-4 minutes on 2 idle cores).
MPILM=${MPILM:-./mpilm}
SHARED=${MPILM_SHARED:-../shared}
if [ ! -f "$SHARED/corpora/train.txt" ] || [ ! -f "$SHARED/corpora/valid.txt" ]; then
  echo "skip: $SHARED/corpora/train.txt or valid.txt is absent (set MPILM_SHARED to the shared directory)"
  exit 77
fi
if [ "${SAN:-0}" = 1 ]; then
  # four 300-step runs of 5M-parameter models would take hours under ASan; the same code
  # paths run under the sanitizers in train_bf16.sh (tiny models)
  echo "skip: converge_bf16 under sanitizers (too slow there; make test runs it)"
  exit 77
fi
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL converge_bf16: $*"; exit 1; }
unset MPILM_CPU_BF16
export OMP_NUM_THREADS=2 BLIS_NUM_THREADS=2
# MFU is not under test: no timing of a 2048^3 GEMM per precision on a fresh machine
export MPILM_PEAK_GFLOPS=${MPILM_PEAK_GFLOPS:-100}
STEPS=300 LAST=20
# bf16 needs a CPU with bf16 GEMM instructions (explicit bf16 is refused without them)
"$MPILM" train --config launch/configs/gpt-mini.ini --set model.n_layer=1 --set model.d_model=32 --set model.n_head=1 \
  --set model.d_ff=32 --set model.seq_len=8 --set model.vocab_size=64 --set train.micro_batch=1 --set train.steps=1 \
  --set run.dir="$d/probe" > "$d/probe.log" 2>&1 || { tail -5 "$d/probe.log"; fail "a 1-step probe run"; }
if ! grep -q "^precision bf16 (auto: " "$d/probe.log"; then
  echo "skip: this CPU has no bf16 GEMM instructions ($(grep -m1 '^precision' "$d/probe.log"))"
  exit 77
fi
t0=$(date +%s)
lap() { now=$(date +%s); echo "  ($1: $((now - t0)) s)"; t0=$now; }
total0=$t0

# the first MAX bytes of a corpus, cut at a document boundary (a blank line)
head_docs() { awk -v max="$2" '{ n += length($0) + 1; print } n >= max && $0 == "" { exit }' "$1"; }
head_docs "$SHARED/corpora/train.txt" 4000000 > "$d/train.txt"
head_docs "$SHARED/corpora/valid.txt" 400000 > "$d/valid.txt"
for tok in bpe wordpiece; do
  "$MPILM" prep --train-vocab 8192 --tokenizer $tok --out "$d/$tok" "$d/train.txt" > "$d/prep.log" 2>&1 ||
    { cat "$d/prep.log"; fail "prep --train-vocab ($tok)"; }
  "$MPILM" prep --vocab "$d/$tok" --tokenizer $tok --out "$d/$tok-valid" "$d/valid.txt" > "$d/prep.log" 2>&1 ||
    { cat "$d/prep.log"; fail "prep --vocab of the validation text ($tok)"; }
  echo "$tok: $(tail -1 "$d/prep.log" | sed 's/ in [0-9.]* s.*//')"
done
lap "prep"

# mean of a key over the first or last N metrics lines
mean() { # file head|tail N key
  "$2" -n "$3" "$1" | sed -n "s/.*\"$4\":\([^,}]*\).*/\1/p" | awk '{ s += $1; n++ } END { if (n) printf "%.6f", s / n }'
}
# within A B LIMIT: |A - B| <= LIMIT x |B|; prints the relative difference
within() { awk -v a="$1" -v b="$2" -v l="$3" 'BEGIN { e = (a - b) / b; if (e < 0) e = -e; printf "%.3g%%", 100 * e; exit !(e <= l) }'; }
field() { sed -n "s/.*\"$2\": \([^,]*\),*$/\1/p" "$1"; }

for m in gpt:bpe bert:wordpiece; do
  fam=${m%%:*} tok=${m#*:}
  for p in fp32 bf16; do
    run="$d/$fam-$p"
    set -- --config "launch/configs/$fam-mini.ini" --set data.source=dataset --set data.path="$d/$tok" \
      --set model.seq_len=128 --set train.steps=$STEPS --set log.every=1 --set train.precision=$p --set run.dir="$run"
    [ $fam = gpt ] && set -- "$@" --set train.micro_batch=8
    "$MPILM" train "$@" > "$run.log" 2>&1 || { tail -5 "$run.log"; fail "$fam $p training"; }
    grep -q "^precision $p (train.precision = $p" "$run.log" || { grep precision "$run.log"; fail "$fam $p: no 'precision $p' line"; }
    [ "$(wc -l < "$run/metrics.jsonl")" -eq $STEPS ] || fail "$fam $p: $(wc -l < "$run/metrics.jsonl") metrics lines (expected $STEPS)"
    first=$(mean "$run/metrics.jsonl" head $LAST loss) last=$(mean "$run/metrics.jsonl" tail $LAST loss)
    eval "first_$p=$first last_$p=$last"
    echo "$fam $p: loss $first (mean of steps 1-$LAST) -> $last (mean of the last $LAST of $STEPS steps), $(grep -o '[0-9]* tok/s' "$run.log" | tail -1)"
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 1.0) }' || fail "$fam $p: the loss did not fall clearly ($first -> $last)"
    lap "$fam $p training"
    for e in fp32 bf16; do
      "$MPILM" eval --ckpt "$run" --data "$d/$tok-valid" --precision $e --json "$run-eval-$e.json" > "$run-eval-$e.log" 2>&1 ||
        { cat "$run-eval-$e.log"; fail "$fam $p: eval --precision $e"; }
      if [ $fam = gpt ]; then v=$(field "$run-eval-$e.json" lm_loss)
      else v=$(awk -v a="$(field "$run-eval-$e.json" mlm_loss)" -v b="$(field "$run-eval-$e.json" nsp_loss)" 'BEGIN { printf "%.6f", a + b }'); fi
      [ -n "$v" ] || fail "$fam $p: eval --json lacks the loss"
      eval "val_${p}_$e=$v"
    done
    echo "$fam $p: validation loss $(eval echo \$val_${p}_fp32) (eval in fp32), $(eval echo \$val_${p}_bf16) (eval in bf16) over $(field "$run-eval-fp32.json" tokens) tokens$( [ $fam = bert ] && echo "; in $p: MLM $(field "$run-eval-$p.json" mlm_loss) + NSP $(field "$run-eval-$p.json" nsp_loss)")"
    lap "$fam $p eval"
  done
  sed 's/,"lr".*//' "$d/$fam-fp32/metrics.jsonl" > "$d/a" && sed 's/,"lr".*//' "$d/$fam-bf16/metrics.jsonl" > "$d/b"
  cmp -s "$d/a" "$d/b" && fail "$fam: bf16 and fp32 give the same losses: bf16 GEMMs not used"
  # shellcheck disable=SC2154
  r=$(within "$last_bf16" "$last_fp32" 0.01) || fail "$fam: final training loss bf16 $last_bf16 vs fp32 $last_fp32: $r apart (limit 1%)"
  echo "$fam: final training loss bf16 $last_bf16 vs fp32 $last_fp32: $r apart (limit 1%)"
  # shellcheck disable=SC2154
  r=$(within "$val_bf16_bf16" "$val_fp32_fp32" 0.01) ||
    fail "$fam: validation loss bf16 $val_bf16_bf16 vs fp32 $val_fp32_fp32: $r apart (limit 1%)"
  echo "$fam: validation loss bf16 $val_bf16_bf16 vs fp32 $val_fp32_fp32 (each in its precision): $r apart (limit 1%)"
  # shellcheck disable=SC2154
  r=$(within "$val_bf16_fp32" "$val_fp32_fp32" 0.01) ||
    fail "$fam: validation loss (eval in fp32) of the bf16 model $val_bf16_fp32 vs the fp32 model $val_fp32_fp32: $r apart (limit 1%)"
  echo "$fam: validation loss, both evaluated in fp32: bf16-trained $val_bf16_fp32 vs fp32-trained $val_fp32_fp32: $r apart (limit 1%)"
done
echo "converge_bf16: ok ($(( $(date +%s) - total0 )) s)"

#!/bin/sh
# Validation during training (eval.every_steps, eval.max_samples,
# eval.data_path), the best checkpoint (ckpt.keep_best) and early stopping
# (eval.patience), on a tiny GPT and a tiny BERT trained on the first 900
# lines of the sample and validated on the rest (prepared with the same
# vocabulary):
# - a row {"step", "val_loss", ...} after every N-th step with the family's
#   keys, and the progress line showing it;
# - the training rows identical, bit for bit, with and without validation
#   (1 rank, pp = 2, tp = 2; dropout on), and a run resumed from its step-3
#   checkpoint identical to the uninterrupted one (training and val rows);
# - val_loss at step 6 equal to `mpilm eval --max-samples 40` of that step's
#   checkpoint: exactly (the same digits) on 1 rank, pp = 2 (GPipe, 1F1B) and
#   dp = 2, within 1e-6 relative at tp = 2 (1d and 2d; the vocabulary-parallel
#   loss sums in another order; measured 2e-9), in fp32 and bf16;
# - val rows across layouts within 1e-6 relative in fp32 (the layouts' own
#   training rounding; measured 2e-9) and 1e-4 in bf16 (pipeline messages
#   are bf16 in training; measured 4e-6);
# - RUN_DIR/best -> the step of the lowest val_loss, kept by pruning beyond
#   ckpt.keep = 1; patience stopping with exit 0 and its message, continued
#   across a resume; bad configurations refused naming the key (exit 2);
# - without eval.data_path, the training dataset's valid split (prep
#   --valid-fraction): val_loss = mpilm eval of that split, not the train split's.
MPILM=${MPILM:-./mpilm}
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL train_valid: $*"; exit 1; }
. tests/common/tiny.sh

head -900 datasets/sample/sample.txt > "$d/train.txt"
tail -n +901 datasets/sample/sample.txt > "$d/valid.txt"
for kind in bpe wordpiece; do
  "$MPILM" prep --train-vocab 600 --tokenizer $kind --out "$d/$kind" "$d/train.txt" > "$d/log" 2>&1 ||
    { cat "$d/log"; fail "prep $kind"; }
  "$MPILM" prep --vocab "$d/$kind" --out "$d/$kind-valid" "$d/valid.txt" > "$d/log" 2>&1 ||
    { cat "$d/log"; fail "prep $kind-valid"; }
done
tiny_ini "$d/g.ini" steps=6 vocab_size=600 || fail tiny_ini
sed -i 's/^\[train\]/[train]\nlr = 3e-3\nmicro_batches = 2/' "$d/g.ini"
printf '%s\n' '[data]' 'source = dataset' "path = $d/bpe" '[eval]' 'every_steps = 3' 'max_samples = 40' \
  "data_path = $d/bpe-valid" '[ckpt]' 'every_steps = 3' >> "$d/g.ini"

# train NAME NP [--set ...]: a run in $d/NAME
train() {
  name=$1 np=$2
  shift 2
  rm -rf "$d/$name"
  $MPIRUN -np "$np" "$MPILM" train --config "$d/g.ini" --set run.dir="$d/$name" "$@" > "$d/$name.log" 2>&1 ||
    { tail -5 "$d/$name.log"; fail "$name: training failed"; }
}
# the training rows' losses, and the val rows without their step, of a run
losses() { grep '"loss"' "$d/$1/metrics.jsonl" | sed 's/,"lr".*//'; }
vals() { grep '"val_loss"' "$d/$1/metrics.jsonl"; }
val_at() { sed -n "s/^{\"step\":$2,\"val_loss\":\([^,]*\),.*/\1/p" "$d/$1/metrics.jsonl"; }
json_field() { sed -n "s/.*\"$2\": \([^,]*\),*$/\1/p" "$1"; }
close() { # a b rel: |a - b| <= rel |a|
  awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { x = a - b; if (x < 0) x = -x; exit !(a != "" && x <= r * (a < 0 ? -a : a)) }'
}
# eval of RUN's step-6 checkpoint in PRECISION, its lm_loss (or mlm + nsp)
eval_of() {
  "$MPILM" eval --ckpt "$d/$1/step-0000006" --data "$3" --max-samples 40 --micro-batch 2 --precision "$2" \
    --json "$d/$1.json" > "$d/$1.eval.log" 2>&1 || { cat "$d/$1.eval.log"; fail "$1: eval"; }
}

# --- rows, keys, the progress line; training unchanged by validation ---
train one 1 --set train.precision=fp32
train none 1 --set train.precision=fp32 --set eval.every_steps=0
[ "$(vals one | wc -l)" -eq 2 ] || fail "expected val rows at steps 3 and 6, found: $(vals one)"
vals one | sed -n 1p | grep -q '^{"step":3,"val_loss":[0-9.]*,"val_ppl":[0-9.]*,"val_samples":40,"val_tokens":640}$' ||
  fail "GPT val row: $(vals one | sed -n 1p)"
vals one | sed -n 2p | grep -q '^{"step":6,"val_loss"' || fail "second val row: $(vals one | sed -n 2p)"
[ -z "$(vals none)" ] || fail "eval.every_steps = 0 wrote val rows"
grep -q "^step 4/6 | loss [0-9.]* (lm [0-9.]*) | val $(printf %.4f "$(val_at one 3)") | lr" "$d/one.log" ||
  fail "the progress line after step 3 does not show val $(val_at one 3): $(grep '^step 4/6' "$d/one.log")"
[ "$(losses one)" = "$(losses none)" ] || fail "validation changed the training losses (1 rank)"
for prec in fp32 bf16; do
  for lay in "pp:2:--set dist.pp=2" "tp:2:--set dist.tp=2"; do
    n=${lay%%:*} rest=${lay#*:} np=${rest%%:*} opts=${rest#*:}
    train "$n-$prec" "$np" $opts --set train.precision=$prec
    train "$n-$prec-none" "$np" $opts --set train.precision=$prec --set eval.every_steps=0
    [ "$(losses "$n-$prec")" = "$(losses "$n-$prec-none")" ] || fail "validation changed the training losses ($n, $prec)"
  done
done

# --- val_loss = eval of the step's checkpoint; layouts agree ---
for prec in fp32 bf16; do
  [ $prec = fp32 ] && tol=1e-6 || tol=1e-4
  p="--set train.precision=$prec"
  [ $prec = fp32 ] && ref=one || { train one-bf16 1 $p; ref=one-bf16; }
  train gpipe-$prec 2 $p --set dist.pp=2 --set dist.schedule=gpipe
  train dp-$prec 2 $p --set train.micro_batches=1
  [ $prec = bf16 ] || train tp2d-fp32 2 $p --set dist.tp=2 --set dist.tp_mode=2d
  [ $prec = bf16 ] || train ppdp-fp32 4 $p --set dist.pp=2 --set train.micro_batches=1 --set dist.zero=1
  runs="$ref gpipe-$prec pp-$prec dp-$prec tp-$prec"
  [ $prec = fp32 ] && runs="$runs tp2d-fp32 ppdp-fp32"
  for r in $runs; do
    eval_of $r $prec "$d/bpe-valid"
    e=$(json_field "$d/$r.json" lm_loss) v=$(val_at $r 6)
    case $r in
      tp*) close "$e" "$v" 1e-6 || fail "$r: val_loss at step 6 = $v, eval of step-0000006 = $e (expected within 1e-6)" ;;
      *) [ "$(printf %.8f "$e")" = "$(printf %.8f "$v")" ] ||
        fail "$r: val_loss at step 6 = $v, eval of step-0000006 = $e (expected the same)" ;;
    esac
    [ "$(vals $r | sed 's/.*"val_samples"//')" = "$(vals $ref | sed 's/.*"val_samples"//')" ] ||
      fail "$r: val samples and tokens differ from 1 rank's: $(vals $r)"
    for s in 3 6; do
      close "$(val_at $ref $s)" "$(val_at $r $s)" $tol ||
        fail "$r: val_loss at step $s = $(val_at $r $s), 1 rank's = $(val_at $ref $s) (expected within $tol)"
    done
  done
done

# --- resume: the same rows as the uninterrupted run ---
mkdir "$d/res"
cp -r "$d/one/step-0000003" "$d/res/"
ln -s step-0000003 "$d/res/latest"
head -4 "$d/one/metrics.jsonl" > "$d/res/metrics.jsonl"
$MPIRUN -np 1 "$MPILM" train --config "$d/g.ini" --set run.dir="$d/res" --set train.precision=fp32 --resume auto \
  > "$d/res.log" 2>&1 || { tail -5 "$d/res.log"; fail "resumed run"; }
strip() { sed 's/,"tokens_per_s".*//' "$d/$1/metrics.jsonl"; }
[ "$(strip res)" = "$(strip one)" ] || fail "the resumed run's rows differ from the uninterrupted run's:
$(strip res)
---
$(strip one)"

# --- BERT: keys, val_loss = mlm + nsp = eval's, pp = 2 equal ---
bert="--set model.family=bert --set data.path=$d/wordpiece --set eval.data_path=$d/wordpiece-valid --set train.precision=fp32"
train bert 1 $bert
train bert-pp 2 $bert --set dist.pp=2
vals bert | sed -n 1p | grep -q '^{"step":3,"val_loss":[0-9.]*,"val_mlm_loss":[0-9.]*,"val_nsp_loss":[0-9.]*,"val_mlm_accuracy":[0-9.]*,"val_nsp_accuracy":[0-9.]*,"val_samples":40,"val_tokens":[0-9]*}$' ||
  fail "BERT val row: $(vals bert | sed -n 1p)"
for r in bert bert-pp; do
  eval_of $r fp32 "$d/wordpiece-valid"
  # both figures are printed to 9 digits: their sum agrees to 1e-8
  sum=$(awk -v a="$(json_field "$d/$r.json" mlm_loss)" -v b="$(json_field "$d/$r.json" nsp_loss)" 'BEGIN { printf "%.10f", a + b }')
  close "$sum" "$(val_at $r 6)" 1e-8 || fail "$r: val_loss at step 6 = $(val_at $r 6), eval's mlm + nsp = $sum"
done
[ "$(vals bert)" = "$(vals bert-pp)" ] || close "$(val_at bert 6)" "$(val_at bert-pp 6)" 1e-6 ||
  fail "BERT val rows: 1 rank $(vals bert), pp 2 $(vals bert-pp)"

# --- best: the lowest val_loss's checkpoint, kept beyond ckpt.keep = 1 ---
# (lr 0.1 over 8 steps: val_loss 6.97, 6.21, 6.42, 6.38 at steps 2, 4, 6, 8; no checkpoint is due at 4 but for best)
bestrun="--set train.precision=fp32 --set train.lr=1e-1 --set train.steps=8 --set eval.every_steps=2
  --set ckpt.every_steps=0 --set ckpt.keep_best=true --set ckpt.keep=1"
train best 1 $bestrun
min=$(vals best | sed 's/^{"step":\([0-9]*\),"val_loss":\([^,]*\),.*/\2 \1/' | sort -g | head -1)
bs=$(printf '%07d' "${min#* }")
[ "$(readlink "$d/best/best")" = "step-$bs" ] ||
  fail "best -> $(readlink "$d/best/best"), the lowest val_loss ${min% *} is at step ${min#* }"
[ "$bs" != 0000008 ] || fail "the test's premise: val_loss should be lowest before the last step ($(vals best))"
[ "$(readlink "$d/best/latest")" = step-0000008 ] || fail "latest -> $(readlink "$d/best/latest")"
[ "$(ls -d "$d"/best/step-* | wc -l)" -eq 2 ] || fail "keep = 1 + best should leave 2 checkpoints: $(ls "$d/best")"
grep -q '"best_step":[[:space:]]*'"${min#* }" "$d/best/step-0000008/manifest.json" || fail "the manifest lacks best_step ${min#* }"
"$MPILM" inspect "$d/best/best" > "$d/log" 2>&1 || { cat "$d/log"; fail "best's checkpoint does not verify"; }
# resumed from an older checkpoint, best names that checkpoint's best (not one of the continuation given up)
ln -sfn step-0000008 "$d/best/best"
$MPIRUN -np 1 "$MPILM" train --config "$d/g.ini" --set run.dir="$d/best" $bestrun --resume "$d/best/step-$bs" \
  > "$d/best2.log" 2>&1 || { tail -5 "$d/best2.log"; fail "best: resume from step $bs"; }
[ "$(readlink "$d/best/best")" = "step-$bs" ] || fail "best after a resume from step $bs -> $(readlink "$d/best/best")"

# --- patience: lr 0 keeps val_loss constant, so evaluation 1 is the best ---
stop() { grep -c "stopping early: val_loss has not improved for $1 evaluations (best [0-9.]* at step 2)" "$d/$2.log"; }
train pat 1 --set train.lr=0 --set train.steps=20 --set eval.every_steps=2 --set eval.patience=2 --set ckpt.every_steps=0
[ "$(stop 2 pat)" = 1 ] || fail "no early-stop message: $(tail -3 "$d/pat.log")"
[ "$(readlink "$d/pat/latest")" = step-0000006 ] || fail "early stop: latest -> $(readlink "$d/pat/latest") (expected step 6)"
[ "$(grep -c '"loss"' "$d/pat/metrics.jsonl")" -eq 6 ] || fail "early stop: trained past step 6"
# resumed: the count continues (evaluations 2, 4 before; 6, 8 after: stop at 8, not 10)
train pat2 1 --set train.lr=0 --set train.steps=4 --set eval.every_steps=2 --set eval.patience=3
$MPIRUN -np 1 "$MPILM" train --config "$d/g.ini" --set run.dir="$d/pat2" --set train.lr=0 --set train.steps=20 \
  --set eval.every_steps=2 --set eval.patience=3 --resume auto > "$d/pat2.log" 2>&1 || fail "patience resume: exit $?"
[ "$(stop 3 pat2)" = 1 ] && [ "$(readlink "$d/pat2/latest")" = step-0000008 ] ||
  fail "patience did not continue across the resume: latest -> $(readlink "$d/pat2/latest"); $(tail -2 "$d/pat2.log")"
# resumed once more after stopping: stops again at once
$MPIRUN -np 1 "$MPILM" train --config "$d/g.ini" --set run.dir="$d/pat2" --set train.lr=0 --set train.steps=20 \
  --set eval.every_steps=2 --set eval.patience=3 --resume auto > "$d/pat2.log" 2>&1 || fail "patience re-resume: exit $?"
[ "$(stop 3 pat2)" = 1 ] && [ "$(grep -c '"loss"' "$d/pat2/metrics.jsonl")" -eq 8 ] || fail "a run that had stopped early trained on"

# --- a rank frozen in a validation batch ends the job (its peer's watchdog), no hang ---
start=$(date +%s)
timeout 120 $MPIRUN -np 1 "$MPILM" train --config "$d/g.ini" --set run.dir="$d/frozen" --set dist.pp=2 \
  --set dist.hang_timeout=3 : -np 1 env MPILM_TEST_STOP=valid:forward "$MPILM" train --config "$d/g.ini" \
  --set run.dir="$d/frozen" --set dist.pp=2 --set dist.hang_timeout=3 > "$d/frozen.log" 2>&1
rc=$? took=$(($(date +%s) - start))
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $took -le 40 ] || fail "frozen rank in validation: exit $rc after $took s"
grep -Eq "the validation after step 3 exceeded dist.hang_timeout = 3 s|evaluation batch 1 \(waiting for every rank\) did not finish within 3 s" "$d/frozen.log" ||
  { cat "$d/frozen.log"; fail "frozen rank in validation: no watchdog message naming the validation"; }

# --- by default the training dataset's own valid split (prep --valid-fraction) ---
"$MPILM" prep --vocab "$d/bpe" --valid-fraction 0.4 --out "$d/bpe-split" datasets/sample/sample.txt > "$d/log" 2>&1 ||
  { cat "$d/log"; fail "prep --valid-fraction"; }
train split 1 --set train.precision=fp32 --set data.path="$d/bpe-split" --set eval.data_path=
[ "$(vals split | wc -l)" -eq 2 ] || fail "default split: expected val rows at steps 3 and 6, found: $(vals split)"
eval_of split fp32 "$d/bpe-split" # mpilm eval reads the valid split of a dataset that has one
grep -q '"split": "valid"' "$d/split.json" || fail "default split: eval did not read the valid split"
e=$(json_field "$d/split.json" lm_loss) v=$(val_at split 6)
[ "$(printf %.8f "$e")" = "$(printf %.8f "$v")" ] ||
  fail "default split: val_loss at step 6 = $v, eval of the valid split = $e"
"$MPILM" eval --ckpt "$d/split/step-0000006" --data "$d/bpe-split" --split train --max-samples 40 --micro-batch 2 \
  --precision fp32 --json "$d/split-train.json" > "$d/log" 2>&1 || { cat "$d/log"; fail "eval --split train"; }
[ "$(json_field "$d/split-train.json" lm_loss)" != "$e" ] || fail "default split: the train split gave the valid split's loss"
echo "default: the training dataset's valid split (val_loss $v = eval's)"

# --- bad configurations: exit 2, the key named ---
refuse() { # KEY-IN-MESSAGE --set ...
  want=$1
  shift
  rm -rf "$d/bad"
  "$MPILM" train --config "$d/g.ini" --set run.dir="$d/bad" "$@" > "$d/bad.log" 2>&1
  rc=$?
  [ $rc -eq 2 ] && grep -q "$want" "$d/bad.log" || fail "$* gave exit $rc (expected 2 naming $want): $(cat "$d/bad.log")"
  [ ! -e "$d/bad/metrics.jsonl" ] || fail "$*: refused but wrote metrics"
}
refuse ckpt.keep_best --set eval.every_steps=0 --set ckpt.keep_best=true
refuse eval.patience --set eval.every_steps=0 --set eval.patience=3
refuse eval.data_path --set eval.data_path= # data.path has no valid split
refuse "is a blend of 2 datasets" --set eval.data_path= --set data.path="0.5 $d/bpe 0.5 $d/bpe-split"
refuse eval.data_path --set eval.data_path="$d/nowhere"
refuse eval.data_path --set eval.data_path="$d/wordpiece-valid"
refuse eval.every_steps --set eval.every_steps=-1
echo "PASS train_valid"

#!/bin/sh
# Real text: gpt-mini and bert-mini (their shipped configs, dropout on) trained
# on a prepared dataset; the loss must fall clearly within 200 steps. Uses
# ../shared/corpora/tiny.txt when present, else the shipped sample.
MPILM=${MPILM:-./mpilm}
if [ "${SAN:-0}" = 1 ]; then
  # 400 steps of 5M-parameter models take ~20 min under ASan; the same code
  # paths run under the sanitizers in train_cli.sh (tiny models)
  echo "train_text: skipped under sanitizers (too slow there; make test runs it)"
  exit 77
fi
SHARED=${MPILM_SHARED:-../shared}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL train_text: $*"; exit 1; }
text=datasets/sample/sample.txt
[ -f "$SHARED/corpora/tiny.txt" ] && text="$SHARED/corpora/tiny.txt"
loss_at() { sed -n "s/.*\"step\":$2,\"loss\":\([^,]*\),.*/\1/p" "$1/metrics.jsonl"; }

"$MPILM" prep --train-vocab 8192 --tokenizer bpe --out "$d/bpe" "$text" > "$d/prep.log" 2>&1 || { cat "$d/prep.log"; fail "prep bpe"; }
"$MPILM" prep --train-vocab 8192 --tokenizer wordpiece --out "$d/wp" "$text" > "$d/prep2.log" 2>&1 || { cat "$d/prep2.log"; fail "prep wordpiece"; }
for m in gpt-mini:bpe bert-mini:wp; do
  cfg=${m%%:*} ds=${m#*:}
  "$MPILM" train --config "launch/configs/$cfg.ini" --set data.source=dataset --set data.path="$d/$ds" \
    --set train.steps=200 --set log.every=20 --set train.micro_batch=4 --set run.dir="$d/$cfg" > "$d/$cfg.log" 2>&1 ||
    { tail -5 "$d/$cfg.log"; fail "$cfg training failed"; }
  first=$(loss_at "$d/$cfg" 20) last=$(loss_at "$d/$cfg" 200)
  echo "$cfg on $(basename "$text"): loss $first at step 20 -> $last at step 200"
  awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 1.0) }' || fail "$cfg: the loss did not fall clearly ($first -> $last)"
done
echo "train_text: ok"

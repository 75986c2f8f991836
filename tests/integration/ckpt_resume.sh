#!/bin/sh
# Exact resume: 20 steps straight vs the same run resumed in a new process
# from its step-10 checkpoint, GPT, BERT and Llama, random and dataset data, on 1 and
# 2 ranks: identical per-step losses and identical final shard files (params,
# m, v). The "small" datasets (a few hundred tokens) put several epoch
# boundaries inside the 20 steps and the checkpoint in the middle of an epoch
# after the first (each epoch has its own shuffle: a cursor that forgot its
# epoch would read other samples). Then a checkpoint of dp = 2 resumed on dp = 1 with the same global
# batch: losses within 1e-5 (fp32).
. tests/common/ckpt_common.sh
fail() { echo "FAIL ckpt_resume: $*"; exit 1; }

"$MPILM" prep --train-vocab 400 --tokenizer bpe --out "$d/bpe" datasets/sample/sample.txt > "$d/prep.log" 2>&1 ||
  { cat "$d/prep.log"; fail "prep bpe"; }
"$MPILM" prep --train-vocab 400 --tokenizer wordpiece --out "$d/wp" datasets/sample/sample.txt > "$d/prep.log" 2>&1 ||
  { cat "$d/prep.log"; fail "prep wordpiece"; }
# 3 documents of 2 sentences, a few hundred tokens: an epoch every few steps
sed -n '1,2p;3q' datasets/sample/sample.txt > "$d/small.txt"
{ echo; sed -n '3,4p' datasets/sample/sample.txt; echo; sed -n '5,6p' datasets/sample/sample.txt; } >> "$d/small.txt"
"$MPILM" prep --vocab "$d/bpe" --tokenizer bpe --out "$d/bpe-small" "$d/small.txt" > "$d/prep.log" 2>&1 ||
  { cat "$d/prep.log"; fail "prep bpe-small"; }
"$MPILM" prep --vocab "$d/wp" --tokenizer wordpiece --out "$d/wp-small" "$d/small.txt" > "$d/prep.log" 2>&1 ||
  { cat "$d/prep.log"; fail "prep wp-small"; }

for np in 1 2; do
  for case in gpt:random bert:random llama:random gpt:bpe bert:wp llama:bpe gpt:bpe-small bert:wp-small; do
    fam=${case%%:*} data=${case#*:} name="$fam-$data-np$np"
    set -- --set model.family=$fam --set ckpt.every_steps=10
    [ "$fam" = llama ] && set -- "$@" --set model.n_kv_head=1
    [ "$data" = random ] || set -- "$@" --set data.source=dataset --set data.path="$d/$data"
    train $np "$d/$name.log" "$@" --set run.dir="$d/$name" || { tail -5 "$d/$name.log"; fail "$name: straight run"; }
    # the interrupted run: everything up to its step-10 checkpoint, then a new process
    mkdir "$d/$name-r"
    cp -r "$d/$name/step-0000010" "$d/$name-r/"
    ln -s step-0000010 "$d/$name-r/latest"
    head -10 "$d/$name/metrics.jsonl" > "$d/$name-r/metrics.jsonl"
    echo '{"step":15,"loss":9}' >> "$d/$name-r/metrics.jsonl" # a line after the checkpoint: dropped on resume
    train $np "$d/$name-r.log" "$@" --set run.dir="$d/$name-r" --resume auto ||
      { tail -5 "$d/$name-r.log"; fail "$name: resumed run"; }
    grep -q "resumed from .*step-0000010 (step 10)" "$d/$name-r.log" || fail "$name: no resume message"
    [ "$(wc -l < "$d/$name-r/metrics.jsonl")" -eq 20 ] || fail "$name: metrics.jsonl of the resumed run has $(wc -l < "$d/$name-r/metrics.jsonl") lines (expected 20)"
    losses "$d/$name" > "$d/a" && losses "$d/$name-r" > "$d/b"
    cmp -s "$d/a" "$d/b" || { diff "$d/a" "$d/b" | head; fail "$name: per-step losses differ after resume"; }
    for f in "$d/$name/step-0000020"/shard-*.bin; do
      cmp "$f" "$d/$name-r/step-0000020/$(basename "$f")" || fail "$name: final $(basename "$f") differs after resume"
    done
    if [ "$data" != random ]; then
      [ -f "$d/$name/step-0000020/vocab/$(case $data in bpe*) echo encoder.json ;; *) echo vocab.txt ;; esac)" ] ||
        fail "$name: the checkpoint lacks its vocabulary"
      grep -q '"fingerprint"' "$d/$name/step-0000020/manifest.json" || fail "$name: manifest lacks the tokenizer"
    fi
    echo "$name: resumed run identical (losses and shards)"
  done
done

# another layout: saved at dp = 2 (1 micro-batch), resumed at dp = 1 (2 micro-batches), in fp32
# (within 1e-5: in bf16 the order the micro-batches' gradients are summed in moves bf16
# roundings; train_bf16.sh checks bf16 layouts with their derived tolerances)
for case in gpt:random bert:wp; do
  fam=${case%%:*} data=${case#*:}
  set -- --set model.family=$fam --set ckpt.every_steps=10 --set model.dropout=0 --set train.precision=fp32
  [ "$data" = random ] || set -- "$@" --set data.source=dataset --set data.path="$d/$data"
  train 2 "$d/l2.log" "$@" --set train.micro_batches=1 --set run.dir="$d/l2-$fam" || { tail -5 "$d/l2.log"; fail "dp=2 run"; }
  train 1 "$d/l1.log" "$@" --set train.micro_batches=2 --set run.dir="$d/l1-$fam" \
    --resume "$d/l2-$fam/step-0000010" || { tail -5 "$d/l1.log"; fail "dp=1 resume of a dp=2 checkpoint"; }
  tail -10 "$d/l2-$fam/metrics.jsonl" | sed 's/,"tokens_per_s".*//' > "$d/a"
  losses "$d/l1-$fam" > "$d/b"
  paste -d' ' "$d/a" "$d/b" | tr -d '{}' | awk '{
    split($1, a, ","); split($2, b, ",");
    for (i = 1; i <= 2; i++) { split(a[i], x, ":"); split(b[i], y, ":"); e = x[2] - y[2]; if (e < 0) e = -e;
      if (e > 1e-5 * (x[2] < 0 ? -x[2] : x[2]) + 1e-6) { print "differ: " a[i] " vs " b[i]; bad = 1 } } }
    END { exit bad || NR != 10 }' || fail "$fam-$data: dp=1 resume of a dp=2 checkpoint differs"
  echo "$fam-$data: dp=2 checkpoint resumed at dp=1 within 1e-5"
done
echo "ckpt_resume: ok"

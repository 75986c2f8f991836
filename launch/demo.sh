#!/bin/sh
# make demo: the main job end to end on the shipped sample —
#   prep (train a vocabulary on datasets/sample and tokenize it, 2 ranks, BPE and
#   WordPiece) → train a small GPT and a small BERT (MLM+NSP) on 2 ranks → checkpoints
#   → eval (2 ranks) → export to Hugging Face safetensors → loss curves → generate.
# Each step runs when its subcommand is built; a step that is not built yet is
# reported plainly and the demo ends with a summary of what ran.
MPILM=${MPILM:-./mpilm}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none

ran="" missing=""
step() { # name, command...
  name=$1; shift
  echo "== $name: $*"
  if "$@"; then ran="$ran\n  done: $name"; else
    rc=$?; missing="$missing\n  not done: $name (exit $rc)"; fi
}

step "version" "$MPILM" --version
step "config" "$MPILM" train --config launch/configs/demo-gpt.ini --print-config
step "prep gpt" mpirun --oversubscribe --bind-to none -np 2 "$MPILM" prep --train-vocab 4096 --tokenizer bpe \
  --overwrite --out datasets/demo-gpt datasets/sample/sample.txt
step "prep bert" mpirun --oversubscribe --bind-to none -np 2 "$MPILM" prep --train-vocab 4096 --tokenizer wordpiece \
  --overwrite --out datasets/demo-bert datasets/sample/sample.txt
step "inspect" "$MPILM" inspect datasets/demo-gpt
for m in gpt bert; do
  run=checkpoints/demo-$m
  # --overwrite: a demo run again starts over (the earlier demo's checkpoints and metrics go)
  step "train $m" mpirun --oversubscribe --bind-to none -np 2 "$MPILM" train --config launch/configs/demo-$m.ini \
    --overwrite
  step "checkpoint $m" "$MPILM" inspect $run/latest
  step "eval $m" mpirun --oversubscribe --bind-to none -np 2 "$MPILM" eval --ckpt $run/latest --data datasets/demo-$m \
    --json $run/eval.json
  step "export $m" "$MPILM" export --ckpt $run/latest --format hf --out $run/hf
  step "plot $m" "$MPILM" plot $run
done
step "generate" "$MPILM" generate --ckpt checkpoints/demo-gpt/latest --prompt "It is a truth universally" \
  --max-tokens 30 --temperature 0.8 --top-k 40 --seed 1

echo
echo "Where things are:"
for m in gpt bert; do
  echo "  datasets/demo-$m/            prepared dataset (vocabulary, manifest, zstd shards)"
  echo "  checkpoints/demo-$m/         latest (checkpoint), metrics.jsonl, eval.json, hf/ (Hugging Face export), curves.png/svg"
done
printf "\nmpilm demo summary:%b%b\n" "$ran" "$missing"
[ -z "$missing" ]

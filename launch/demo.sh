#!/bin/sh
# make demo: the main job end to end on the shipped sample —
#   prep (train a vocabulary on datasets/sample and tokenize it, 2 ranks)
#   → train a small GPT on 2 ranks → checkpoints → eval (2 ranks) → generate → export
#   to Hugging Face safetensors → loss curves.
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
step "prep" mpirun --oversubscribe --bind-to none -np 2 "$MPILM" prep --train-vocab 4096 --tokenizer bpe \
  --out datasets/demo-gpt datasets/sample/sample.txt
step "inspect" "$MPILM" inspect datasets/demo-gpt
step "train" mpirun --oversubscribe --bind-to none -np 2 "$MPILM" train --config launch/configs/demo-gpt.ini
step "checkpoint" "$MPILM" inspect checkpoints/demo-gpt/latest
step "eval" mpirun --oversubscribe --bind-to none -np 2 "$MPILM" eval --ckpt checkpoints/demo-gpt/latest --data datasets/demo-gpt --json checkpoints/demo-gpt/eval.json
step "generate" "$MPILM" generate --ckpt checkpoints/demo-gpt/latest --prompt "It is a truth universally" \
  --max-tokens 30 --temperature 0.8 --top-k 40 --seed 1
step "export" "$MPILM" export --ckpt checkpoints/demo-gpt/latest --format hf --out checkpoints/demo-gpt/hf
step "plot" "$MPILM" plot checkpoints/demo-gpt

printf "\nmpilm demo summary:%b%b\n" "$ran" "$missing"
[ -z "$missing" ]

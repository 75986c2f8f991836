# Shared by tests/integration/ckpt_*.sh (sourced, not run on its own).
MPILM=${MPILM:-./mpilm}
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
cat > "$d/tiny.ini" <<'INI'
[model]
family = gpt
n_layer = 2
d_model = 32
n_head = 2
d_ff = 64
seq_len = 16
max_positions = 16
vocab_size = 512
dropout = 0.1
[train]
steps = 20
micro_batch = 2
micro_batches = 2
lr = 1e-3
warmup_steps = 3
[log]
every = 1
INI
# metrics.jsonl without the timing fields (step, losses, lr, grad_norm stay)
losses() { sed 's/,"tokens_per_s".*//' "$1/metrics.jsonl"; }
# mpilm train with the tiny config; $1 = ranks (1: no mpirun), $2 = log file, rest = options
train() {
  np=$1 log=$2; shift 2
  if [ "$np" = 1 ]; then "$MPILM" train --config "$d/tiny.ini" "$@" > "$log" 2>&1
  else $MPIRUN -np "$np" "$MPILM" train --config "$d/tiny.ini" "$@" > "$log" 2>&1; fi
}

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
# close A B: two files of metrics lines (same steps, same order) whose losses
# (loss, lm_loss, mlm_loss, nsp_loss) agree within 1e-5 relative; prints the first differences
close() {
  paste -d' ' "$1" "$2" | tr -d '{}' | awk '
    function get(s, k,   i, n, f, kv) { n = split(s, f, ","); for (i = 1; i <= n; i++) { split(f[i], kv, ":");
      if (kv[1] == "\"" k "\"") return kv[2] } return "" }
    { split($0, h, " "); nk = split("step loss lm_loss mlm_loss nsp_loss", keys, " ");
      for (j = 1; j <= nk; j++) { x = get(h[1], keys[j]); y = get(h[2], keys[j]); if (x == "" && y == "") continue;
        e = x - y; if (e < 0) e = -e; m = x < 0 ? -x : x;
        if (x == "" || y == "" || e > 1e-5 * m + 1e-7) { print "line " NR ": " keys[j] " " x " vs " y; bad = 1 } } }
    END { exit bad || NR == 0 }'
}

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
# TRAIN_SET: options every run of the script starts with (before "$@", which
# may override them), e.g. "--set train.precision=fp32" where a test claims
# fp32 equalities
train() {
  np=$1 log=$2; shift 2
  # shellcheck disable=SC2086
  if [ "$np" = 1 ]; then "$MPILM" train --config "$d/tiny.ini" $TRAIN_SET "$@" > "$log" 2>&1
  else $MPIRUN -np "$np" "$MPILM" train --config "$d/tiny.ini" $TRAIN_SET "$@" > "$log" 2>&1; fi
}
# resume_from NP SRC DST options...: a new job on NP ranks resumes the step-10
# checkpoint of run SRC in run directory DST (SRC's first 10 metrics rows
# copied, so DST's metrics read as one run) and says it resumed from step 10
resume_from() {
  np=$1 src=$2 dst=$3; shift 3
  mkdir -p "$dst"
  cp -r "$src/step-0000010" "$dst/"
  ln -s step-0000010 "$dst/latest"
  head -10 "$src/metrics.jsonl" > "$dst/metrics.jsonl"
  train "$np" "$dst.log" "$@" --set run.dir="$dst" --resume auto || { tail -5 "$dst.log"; return 1; }
  grep -q "resumed from .*step-0000010 (step 10)" "$dst.log" || { echo "no resume message in $dst.log"; return 1; }
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
# loss_diff A B: two files of metrics lines (same steps, same order); for each loss key
# present (loss, lm_loss, mlm_loss, nsp_loss) prints "KEY MAXREL AT FIRST": the largest
# relative difference |a - b| / |a|, the step where it is, and the first step whose value
# strings differ (0: bitwise equal throughout); exit 1 when the steps or keys do not pair up
loss_diff() {
  paste -d' ' "$1" "$2" | tr -d '{}' | awk '
    function get(s, k,   i, n, f, kv) { n = split(s, f, ","); for (i = 1; i <= n; i++) { split(f[i], kv, ":");
      if (kv[1] == "\"" k "\"") return kv[2] } return "" }
    { split($0, h, " "); s = get(h[1], "step");
      if (s == "" || s != get(h[2], "step")) { print "line " NR ": step " s " vs " get(h[2], "step") > "/dev/stderr"; bad = 1; next }
      nk = split("loss lm_loss mlm_loss nsp_loss", keys, " ");
      for (j = 1; j <= nk; j++) { k = keys[j]; x = get(h[1], k); y = get(h[2], k); if (x == "" && y == "") continue;
        if (x == "" || y == "") { print "step " s ": " k " only on one side" > "/dev/stderr"; bad = 1; continue }
        seen[k] = 1; if (x != y && !first[k]) first[k] = s;
        e = x - y; if (e < 0) e = -e; m = x < 0 ? -x : x; r = m > 0 ? e / m : e;
        if (!(k in mx) || r > mx[k]) { mx[k] = r; at[k] = s } } }
    END { for (j = 1; j <= nk; j++) if (keys[j] in seen) printf "%s %.3g %d %d\n", keys[j], mx[keys[j]], at[keys[j]], first[keys[j]] + 0;
      exit bad || NR == 0 }'
}

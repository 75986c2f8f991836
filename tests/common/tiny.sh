# Shared by shell tests (sourced): tiny_ini FILE [KEY=VALUE...] writes the tiny
# GPT configuration (2 layers, d_model 32, seq_len 16, vocab 512, 2 steps of
# micro-batch 2) with the given keys changed; a key it does not hold is an error.
tiny_ini() {
  out=$1
  shift
  printf '%s\n' '[model]' 'family = gpt' 'n_layer = 2' 'd_model = 32' 'n_head = 2' 'd_ff = 64' 'seq_len = 16' \
    'max_positions = 16' 'vocab_size = 512' '[train]' 'steps = 2' 'micro_batch = 2' '[log]' 'every = 1' > "$out"
  for kv in "$@"; do
    k=${kv%%=*} v=${kv#*=}
    grep -q "^$k = " "$out" || { echo "tiny_ini: no key '$k' in the tiny configuration" >&2; return 1; }
    sed -i "s|^$k = .*|$k = $v|" "$out"
  done
}

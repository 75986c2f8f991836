#!/bin/sh
# pgemm: ScaLAPACK psgemm (dist/pgemm) on gpt2-small's FFN and vocabulary
# shapes at t = 1, 2, 4 ranks, 1 BLIS thread per rank, block sizes 32..256;
# the block-size table, the chosen block, times against 1 rank of plain BLIS,
# and per-rank bytes (counted MPI sends against the model, 2D against 1D
# Megatron), then the model projected to 64 ranks.
# BENCH_PGEMM_REPS (3): median over this many runs; BENCH_PGEMM_VOCAB_OPS (1):
# 1 = vocabulary forward only, 3 = forward, weight and input gradients.
# On a machine with fewer cores than 4 the t = 4 times are oversubscribed.
BIN=${BUILD:-build}/tests/bench/bench_pgemm
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
REPS=${BENCH_PGEMM_REPS:-3}
VOPS=${BENCH_PGEMM_VOCAB_OPS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1
[ -x "$BIN" ] || { echo "bench_pgemm: $BIN not built (make bench builds it)"; exit 1; }
echo "cores $(getconf _NPROCESSORS_ONLN), load $(cut -d' ' -f1-3 /proc/loadavg)"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
for t in 1 2 4; do
  $MPIRUN -np $t "$BIN" "$REPS" "$VOPS" >>"$out" || status=1
done
cat "$out"
echo
field='function val(k,  i, n, f) { n = split($0, f, " "); for (i = 1; i <= n; i++) if (index(f[i], k "=") == 1) return substr(f[i], length(k) + 2); return "" }'
best=$(awk "$field"'
  /^block_score / { score[val("block")] += val("score") }
  END { for (b in score) if (best == "" || score[b] < score[best]) best = b; print best }' "$out")
echo "block-size table: ms per GEMM (median of $REPS, slowest rank); 1rank/b$best: plain BLIS on 1 rank / pgemm at block $best"
printf "%-2s %-8s %-4s %9s %9s %9s %9s %10s\n" t layer op b=32 b=64 b=128 b=256 "1rank/b$best"
awk -v best="$best" "$field"'
  /^blis / { ref[val("layer") " " val("op")] = val("ms") }
  /^pgemm / { key = val("t") " " val("layer") " " val("op"); ms[key, val("block")] = val("ms"); keys[key] = 1 }
  END {
    for (k in keys) {
      split(k, p, " ")
      r = ref[p[2] " " p[3]]
      sp = (r != "" && ms[k, best] > 0) ? sprintf("%.2fx", r / ms[k, best]) : "-"
      printf "%-2s %-8s %-4s %9s %9s %9s %9s %10s\n", p[1], p[2], p[3], ms[k, 32], ms[k, 64], ms[k, 128], ms[k, 256], sp
    }
  }' "$out" | sort -k1,1n -k2,2 -k3,3
awk "$field"'/^block_score / { score[val("block")] += val("score") }
  END { printf "summed block score over t (1.00 per GEMM where a block is the fastest; lower is better):"
        for (b in score) printf " b=%s %.2f", b, score[b]; printf "\n" }' "$out"
echo "fastest block overall: $best"
echo
"$BIN" --project || status=1
exit $status

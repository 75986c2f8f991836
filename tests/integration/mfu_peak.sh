#!/bin/sh
# The GEMM peak MFU is measured against (train/train_peak.c):
# - MPILM_PEAK_GFLOPS sets it (the start-up line names it; metrics' mfu follows
#   from tokens_per_s, the model's flops per token and that peak);
# - otherwise it is measured once and cached under MPILM_CACHE_DIR (the line
#   says "measured now ... cached in FILE", then "measured DATE, cached in FILE");
# - a corrupt cache file is measured again and rewritten; an unwritable cache
#   directory is said ("could not cache it"), not fatal; a bad MPILM_PEAK_GFLOPS
#   is a warning, then a measurement; fp32 and bf16 have their own files.
. tests/common/ckpt_common.sh
fail() { echo "FAIL mfu_peak: $*"; exit 1; }
unset MPILM_PEAK_GFLOPS
export MPILM_CACHE_DIR="$d/cache"
run() { # log, then options
  log=$1; shift
  rm -rf "$d/run"
  train 1 "$log" --set train.steps=2 --set run.dir="$d/run" "$@" || { tail -5 "$log"; fail "train $*"; }
  grep "MFU against" "$log"
}

# an explicit peak, and mfu = tokens/s x flops/token / peak (tiny.ini: 2 layers, d_model 32,
# seq_len 16; the parameter count from the log)
line=$(MPILM_PEAK_GFLOPS=123 run "$d/a.log" --set train.precision=fp32)
echo "$line" | grep -q "fp32 GEMM peak: 123 GFLOP/s in all (rank 0: 123, MPILM_PEAK_GFLOPS = 123 per rank)" ||
  fail "MPILM_PEAK_GFLOPS not used: $line"
params=$(sed -n 's/.*model: \([0-9]*\) parameters.*/\1/p' "$d/a.log" | head -1)
tail -1 "$d/run/metrics.jsonl" | tr -d '{}' | tr ',' '\n' | awk -F: -v p="$params" '
  $1 == "\"tokens_per_s\"" { t = $2 } $1 == "\"mfu\"" { m = $2 }
  END { want = t * (6 * p + 12 * 2 * 32 * 16) / 123e9; d = m - want; if (d < 0) d = -d
        if (p == "" || t <= 0 || d > 1e-3 * want) { print "mfu " m ", expected " want; exit 1 } }' ||
  fail "metrics' mfu does not follow from the peak"

# measured, cached, read back; bf16 has its own file
line=$(run "$d/b.log" --set train.precision=fp32)
echo "$line" | grep -q "measured now, 2048^3 best of 5; cached in $MPILM_CACHE_DIR/peak-fp32-" || fail "first run: $line"
f=$(ls "$MPILM_CACHE_DIR"/peak-fp32-*.txt) || fail "no cache file"
grep -q '^gflops=[0-9.]* n=2048 reps=5 measured=' "$f" || fail "cache file content: $(cat "$f")"
g=$(sed 's/gflops=\([0-9.]*\).*/\1/' "$f")
line=$(run "$d/c.log" --set train.precision=fp32)
echo "$line" | grep -q "measured 20[0-9-]*T[0-9:]*Z, cached in $f" || fail "second run did not read the cache: $line"
echo "$line" | grep -q "in all (rank 0: $(printf '%.0f' "$g")," || fail "second run's peak is not the cached $g: $line"
if grep -q avx512_bf16 /proc/cpuinfo; then
  run "$d/d.log" --set train.precision=bf16 > /dev/null
  ls "$MPILM_CACHE_DIR"/peak-bf16-*.txt > /dev/null 2>&1 || fail "bf16 has no cache file of its own"
fi

# corrupt cache: measured again and rewritten
echo "gflops=banana" > "$f"
line=$(run "$d/e.log" --set train.precision=fp32)
echo "$line" | grep -q "measured now" || fail "a corrupt cache was used: $line"
grep -q '^gflops=[0-9.]* ' "$f" || fail "the corrupt cache was not rewritten"

# unwritable cache directory, bad override
line=$(MPILM_CACHE_DIR=/proc/mpilm-no-such-dir run "$d/f.log" --set train.precision=fp32)
echo "$line" | grep -q "could not cache it in /proc/mpilm-no-such-dir/" || fail "unwritable cache: $line"
line=$(MPILM_PEAK_GFLOPS=abc run "$d/g.log" --set train.precision=fp32)
grep -q "MPILM_PEAK_GFLOPS = 'abc' is not a positive number" "$d/g.log" || fail "bad MPILM_PEAK_GFLOPS not reported"
echo "$line" | grep -q "measured" || fail "bad MPILM_PEAK_GFLOPS: $line"
echo "mfu_peak: ok"

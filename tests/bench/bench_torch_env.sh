#!/bin/sh
# The PyTorch peer of mpilm's training benchmarks, set up as fast as this
# machine allows, plus the GEMM peaks that bound both: BLIS sgemm (fp32) and
# oneDNN bf16 x bf16 -> fp32 (bf16, the GEMM mpilm's train.precision = bf16 runs).
#
# Sourceable: other benchmarks do `. tests/bench/bench_torch_env.sh` and call
#   torch_env_check               0 when a Python with torch is there (else prints why not)
#   sgemm_peak THREADS            "sgemm N=2048 threads=T arch=A: X GFLOP/s (best of 5)"
#   fp32_peak THREADS             sgemm_peak's line, oneDNN f32's, then "fp32gemm N=2048
#                                 threads=T engine=E: X GFLOP/s (best of 5)", the faster
#   bf16_peak THREADS             "bf16gemm N=2048 threads=T: X GFLOP/s (best of 5)"
#                                 (bench_gemm --peak: mpilm's tensor_gemm_bf16, oneDNN)
#   torch_peer MODEL STEPS [THREADS...]
#       one line per thread count (default "1 2"), the best over the BLAS
#       libraries tried: "torch-peer MODEL precision=P threads=T tokens_per_s=X
#       step_ms_median=Y peak_rss_mib=Z gemm_gflops=G blas=NAME arch=A
#       jemalloc=yes|no" (arch = the BLIS kernel set in use; G = the peer's own
#       1024^3 matmul rate in precision P, a check that bf16 reached oneDNN),
#       or "torch-peer MODEL precision=P threads=T FAILED" when every run
#       failed (its error is on stderr; torch_peer then returns 1).
#       (MODEL: gpt-mini, bert-mini, gpt2-small, bert-base, llama-mini, llama-small; STEPS timed steps
#       after 2 warm-up steps; dropout 0.1 unless TORCH_DROPOUT says otherwise;
#       precision P = TORCH_PRECISION: fp32 (default) or bf16 = autocast(cpu,
#       bfloat16) around forward and loss, fp32 weights and AdamW, checked by
#       torch_bench.py, which fails when autocast did not take effect)
# Run directly (make bench does), it prints the sgemm and bf16 GEMM peaks at 1
# and 2 threads and the peer's figures for TORCH_BENCH_MODELS (default: all
# four) in each of TORCH_BENCH_PRECISIONS (default "fp32 bf16"), or says why
# it skipped.
#
# How the peer is made fast:
#  - BLAS: torch calls the system libblas.so.3 (see update-alternatives --query
#    libblas.so.3-x86_64-linux-gnu); the selected one is tried, and any
#    installed OpenBLAS too (its directory first on LD_LIBRARY_PATH).
#  - BLIS kernels: BLIS picks its kernels from the CPU, and may pick poorly in a
#    virtual machine (Debian's BLIS 0.9.0 reports "generic" or "haswell" on
#    AVX-512 hosts). BLIS_ARCH_TYPE forces a kernel set; BLIS 0.9 reads it as a
#    number (an index into its configurations, 0 = skx), so any name there,
#    "skx" included, means skx. The candidates are timed and the fastest kept.
#  - jemalloc (LD_PRELOAD): glibc returns large freed blocks to the kernel and
#    every step pays fresh page faults for its activations; jemalloc reuses them.
# Environment: PYTHON (default /usr/bin/python3), BUILD (default build),
#   TORCH_DROPOUT (0.1), TORCH_PRECISION (fp32), TORCH_BENCH_MODELS,
#   TORCH_BENCH_STEPS (5), TORCH_BENCH_PRECISIONS ("fp32 bf16").

TORCH_PYTHON=${PYTHON:-/usr/bin/python3}
TORCH_BENCH_PY=${TORCH_BENCH_PY:-tests/reference/torch_bench.py}
SGEMM_BIN=${BUILD:-build}/tests/bench/bench_sgemm
GEMM_BIN=${BUILD:-build}/tests/bench/bench_gemm

torch_env_check() {
  "$TORCH_PYTHON" -c "import torch" 2>/dev/null && return 0
  echo "torch peer: $TORCH_PYTHON cannot import torch (install it with make bench-deps, or set PYTHON); skipped"
  return 1
}

torch_env_jemalloc() {
  /sbin/ldconfig -p 2>/dev/null | sed -n 's/.*libjemalloc\.so\.2 .*=> //p' | head -1
}

# "NAME DIR" per BLAS to try: the selected libblas.so.3, then any OpenBLAS.
torch_env_blas_list() {
  te_q=$(update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null)
  te_current=$(echo "$te_q" | sed -n 's/^Value: //p')
  [ -n "$te_current" ] && echo "$(basename "$(dirname "$te_current")") $(dirname "$te_current")"
  echo "$te_q" | sed -n 's/^Alternative: //p' | grep -i openblas | grep -vx "$te_current" | while read -r te_lib; do
    echo "$(basename "$(dirname "$te_lib")") $(dirname "$te_lib")"
  done
  [ -n "$te_current" ] || echo "default -"
}

# bench_sgemm's line for "N REPS THREADS" under BLIS_ARCH_TYPE=$1 ("" = BLIS's choice).
sgemm_run() {
  te_arch=$1; shift
  env ${te_arch:+BLIS_ARCH_TYPE=$te_arch} "$SGEMM_BIN" "$@" 2>/dev/null
}

# Sets TORCH_ENV_ARCH to the fastest BLIS_ARCH_TYPE ("" when BLIS's own choice
# wins) and TORCH_ENV_KERNELS to the kernel set BLIS then reports. A candidate
# that selects kernels already timed is skipped.
torch_env_arch() {
  [ -n "${TORCH_ENV_KERNELS+set}" ] && return 0
  TORCH_ENV_ARCH="" TORCH_ENV_KERNELS=unknown te_best=0 te_seen=" "
  if [ -x "$SGEMM_BIN" ]; then
    for te_cand in "" skx zen3 haswell; do
      te_line=$(sgemm_run "$te_cand" 1024 3 1)
      te_kernels=$(echo "$te_line" | sed -n 's/.* arch=\([^:]*\):.*/\1/p')
      te_g=$(echo "$te_line" | sed -n 's/.*: \([0-9.]*\) GFLOP\/s.*/\1/p')
      [ -n "$te_g" ] || continue
      case $te_seen in *" $te_kernels "*) continue ;; esac
      te_seen="$te_seen$te_kernels "
      if awk "BEGIN { exit !($te_g > $te_best * 1.05) }"; then
        te_best=$te_g TORCH_ENV_ARCH=$te_cand TORCH_ENV_KERNELS=$te_kernels
      fi
    done
  fi
  export TORCH_ENV_ARCH TORCH_ENV_KERNELS
}

sgemm_peak() {
  [ -x "$SGEMM_BIN" ] || { echo "sgemm: $SGEMM_BIN not built (make bench builds it)"; return 1; }
  torch_env_arch
  sgemm_run "$TORCH_ENV_ARCH" 2048 5 "$1"
}

# The fp32 GEMM peak: the faster of BLIS sgemm (the peer's kernel set, as
# sgemm_peak) and oneDNN's f32 matmul (mpilm's fp32 linear layers) on 2048^3:
# "fp32gemm N=2048 threads=T engine=E: X GFLOP/s (best of 5)". MFU against a
# slower engine's rate would read above what the machine can do.
fp32_peak() {
  te_s=$(sgemm_peak "$1") || { echo "$te_s"; return 1; }
  te_d=$(OMP_NUM_THREADS="$1" BLIS_NUM_THREADS="$1" "$GEMM_BIN" --peak 2048 5 "$1" 2>&1 | grep '^dnnl32gemm ')
  echo "$te_s"
  [ -n "$te_d" ] && echo "$te_d"
  printf '%s\n%s\n' "$te_s" "$te_d" | awk '
    { for (i = 1; i <= NF; i++) if ($(i + 1) == "GFLOP/s") g = $i + 0
      e = ($1 == "sgemm") ? "blis" : "onednn"
      if (g > best) { best = g; engine = e } }
    END { printf "fp32gemm N=2048 threads=%s engine=%s: %.1f GFLOP/s (best of 5)\n", t, engine, best }' t="$1"
}

# The bf16 GEMM peak: mpilm's tensor_gemm_bf16 (oneDNN) on 2048^3 at THREADS threads.
# The BLIS kernel set plays no part in it; the thread variables are set so
# that a caller's OMP_NUM_THREADS cannot change the count.
bf16_peak() {
  [ -x "$GEMM_BIN" ] || { echo "bf16gemm: $GEMM_BIN not built (make bench builds it)"; return 1; }
  te_line=$(OMP_NUM_THREADS="$1" BLIS_NUM_THREADS="$1" "$GEMM_BIN" --peak 2048 5 "$1" 2>&1)
  echo "$te_line" | grep '^bf16gemm ' || { echo "bf16gemm: $GEMM_BIN --peak failed: $te_line"; return 1; }
}

# One run of the peer: torch_peer_run MODEL STEPS THREADS BLAS_DIR -> its JSON line.
torch_peer_run() {
  te_je=$(torch_env_jemalloc)
  te_libdir=$4
  [ "$te_libdir" = - ] && te_libdir=""
  env ${TORCH_ENV_ARCH:+BLIS_ARCH_TYPE=$TORCH_ENV_ARCH} ${te_je:+LD_PRELOAD=$te_je} \
    ${te_libdir:+LD_LIBRARY_PATH=$te_libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} \
    OMP_NUM_THREADS="$3" BLIS_NUM_THREADS="$3" OPENBLAS_NUM_THREADS="$3" \
    "$TORCH_PYTHON" "$TORCH_BENCH_PY" "$1" --threads "$3" --steps "$2" --dropout "${TORCH_DROPOUT:-0.1}" \
    --precision "${TORCH_PRECISION:-fp32}"
}

json_field() { # NAME < JSON line
  sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"
}

torch_peer() {
  te_model=$1 te_steps=$2
  shift 2
  torch_env_check || return 0
  torch_env_arch
  te_je=no te_prec=${TORCH_PRECISION:-fp32} te_status=0
  case $te_prec in fp32|bf16) ;; *) echo "torch peer: TORCH_PRECISION=$te_prec (fp32 or bf16)" >&2; return 1 ;; esac
  [ -n "$(torch_env_jemalloc)" ] && te_je=yes
  for te_threads in ${*:-1 2}; do
    te_best="" te_best_tps=0
    te_blas_list=$(torch_env_blas_list)
    echo "$te_blas_list" | { while read -r te_name te_dir; do
        te_out=$(torch_peer_run "$te_model" "$te_steps" "$te_threads" "$te_dir") || { echo "torch peer $te_model $te_prec threads=$te_threads ($te_name) failed" >&2; continue; }
        # the JSON line must say the precision asked for
        echo "$te_out" | grep -q "\"precision\": \"$te_prec\"" || { echo "torch peer $te_model ($te_name): its output does not say precision $te_prec: $te_out" >&2; continue; }
        te_tps=$(echo "$te_out" | json_field tokens_per_s)
        if awk "BEGIN { exit !($te_tps > $te_best_tps) }"; then
          te_best_tps=$te_tps
          te_best="tokens_per_s=$te_tps step_ms_median=$(echo "$te_out" | json_field step_ms_median)"
          te_best="$te_best peak_rss_mib=$(echo "$te_out" | json_field peak_rss_mib)"
          te_best="$te_best gemm_gflops=$(echo "$te_out" | json_field gemm_gflops) blas=$te_name"
        fi
      done
      [ -n "$te_best" ] || { echo "torch-peer $te_model precision=$te_prec threads=$te_threads FAILED"; exit 1; }
      echo "torch-peer $te_model precision=$te_prec threads=$te_threads $te_best arch=$TORCH_ENV_KERNELS jemalloc=$te_je"
    } || te_status=1
  done
  return $te_status
}

torch_env_main() {
  torch_env_check || exit 0
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) (figures at 2 threads suffer when other work shares the cores)"
  echo "libblas.so.3 -> $(torch_env_blas_list | head -1 | cut -d' ' -f2)"
  sgemm_peak 1 && sgemm_peak 2
  bf16_peak 1 && bf16_peak 2
  te_main_status=0
  for te_m in ${TORCH_BENCH_MODELS:-gpt-mini bert-mini gpt2-small bert-base}; do
    for te_p in ${TORCH_BENCH_PRECISIONS:-fp32 bf16}; do
      TORCH_PRECISION=$te_p torch_peer "$te_m" "${TORCH_BENCH_STEPS:-5}" || te_main_status=1
    done
  done
  return $te_main_status
}

case $0 in
  *bench_torch_env.sh) torch_env_main; exit $? ;;
esac

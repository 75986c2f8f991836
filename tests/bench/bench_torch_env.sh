#!/bin/sh
# The PyTorch peer of mpilm's training benchmarks, set up as fast as this
# machine allows, plus the BLIS sgemm peak that bounds both.
#
# Sourceable: other benchmarks do `. tests/bench/bench_torch_env.sh` and call
#   torch_env_check               0 when a Python with torch is there (else prints why not)
#   sgemm_peak THREADS            "sgemm N=2048 threads=T arch=A: X GFLOP/s (best of 5)"
#   torch_peer MODEL STEPS [THREADS...]
#       one line per thread count (default "1 2"), the best over the BLAS
#       libraries tried: "torch-peer MODEL threads=T tokens_per_s=X
#       step_ms_median=Y peak_rss_mib=Z blas=NAME arch=A jemalloc=yes|no"
#       (arch = the BLIS kernel set in use)
#       (MODEL: gpt-mini, bert-mini, gpt2-small, bert-base; STEPS timed steps
#       after 2 warm-up steps; dropout 0.1 unless TORCH_DROPOUT says otherwise)
# Run directly (make bench does), it prints the sgemm peak at 1 and 2 threads
# and the peer's figures for TORCH_BENCH_MODELS (default: all four), or says
# why it skipped.
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
#   TORCH_DROPOUT (0.1), TORCH_BENCH_MODELS, TORCH_BENCH_STEPS (5).

TORCH_PYTHON=${PYTHON:-/usr/bin/python3}
TORCH_BENCH_PY=${TORCH_BENCH_PY:-tests/reference/torch_bench.py}
SGEMM_BIN=${BUILD:-build}/tests/bench/bench_sgemm

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

# One run of the peer: torch_peer_run MODEL STEPS THREADS BLAS_DIR -> its JSON line.
torch_peer_run() {
  te_je=$(torch_env_jemalloc)
  te_libdir=$4
  [ "$te_libdir" = - ] && te_libdir=""
  env ${TORCH_ENV_ARCH:+BLIS_ARCH_TYPE=$TORCH_ENV_ARCH} ${te_je:+LD_PRELOAD=$te_je} \
    ${te_libdir:+LD_LIBRARY_PATH=$te_libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} \
    OMP_NUM_THREADS="$3" BLIS_NUM_THREADS="$3" OPENBLAS_NUM_THREADS="$3" \
    "$TORCH_PYTHON" "$TORCH_BENCH_PY" "$1" --threads "$3" --steps "$2" --dropout "${TORCH_DROPOUT:-0.1}"
}

json_field() { # NAME < JSON line
  sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"
}

torch_peer() {
  te_model=$1 te_steps=$2
  shift 2
  torch_env_check || return 0
  torch_env_arch
  te_je=no
  [ -n "$(torch_env_jemalloc)" ] && te_je=yes
  for te_threads in ${*:-1 2}; do
    te_best="" te_best_tps=0
    te_blas_list=$(torch_env_blas_list)
    echo "$te_blas_list" | { while read -r te_name te_dir; do
        te_out=$(torch_peer_run "$te_model" "$te_steps" "$te_threads" "$te_dir") || { echo "torch peer $te_model ($te_name) failed" >&2; continue; }
        te_tps=$(echo "$te_out" | json_field tokens_per_s)
        if awk "BEGIN { exit !($te_tps > $te_best_tps) }"; then
          te_best_tps=$te_tps
          te_best="tokens_per_s=$te_tps step_ms_median=$(echo "$te_out" | json_field step_ms_median)"
          te_best="$te_best peak_rss_mib=$(echo "$te_out" | json_field peak_rss_mib) blas=$te_name"
        fi
      done
      [ -n "$te_best" ] && echo "torch-peer $te_model threads=$te_threads $te_best arch=$TORCH_ENV_KERNELS jemalloc=$te_je"
    }
  done
}

torch_env_main() {
  torch_env_check || exit 0
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) (figures at 2 threads suffer when other work shares the cores)"
  echo "libblas.so.3 -> $(torch_env_blas_list | head -1 | cut -d' ' -f2)"
  sgemm_peak 1 && sgemm_peak 2
  for te_m in ${TORCH_BENCH_MODELS:-gpt-mini bert-mini gpt2-small bert-base}; do
    torch_peer "$te_m" "${TORCH_BENCH_STEPS:-5}"
  done
}

case $0 in
  *bench_torch_env.sh) torch_env_main ;;
esac

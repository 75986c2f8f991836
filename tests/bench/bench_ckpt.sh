#!/bin/sh
# Checkpoint speed: gpt2-small with its Adam state (1.5 GB) saved at layouts
# (pp, dp, zero) = (1,2,1) and (2,1,0), against writing the same bytes with
# dd conv=fsync on the same filesystem, and read back (inspect verifies every
# checksum; resume reads it). Target: a save <= 2x dd's time.
MPILM=${MPILM:-./mpilm}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
d=$(mktemp -d "${TMPDIR:-/tmp}/mpilm-ckpt-bench.XXXXXX")
trap 'rm -rf "$d"' EXIT
echo "filesystem of $d: $(df -h "$d" | tail -1 | awk '{ print $1, $2 " total,", $4 " free" }')"
for layout in "1 2 1" "2 1 0"; do
  set -- $layout
  OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1 mpirun --oversubscribe --bind-to none -np 2 "$MPILM" train \
    --config launch/configs/gpt2-small.ini --set model.seq_len=32 --set train.micro_batch=1 --set train.steps=1 \
    --set dist.pp=$1 --set dist.dp=$2 --set dist.zero=$3 --set run.dir="$d/run" > "$d/log" 2>&1 ||
    { tail -5 "$d/log"; echo "bench_ckpt: training at $layout failed"; exit 1; }
  line=$(grep "checkpoint step 1 written" "$d/log")
  secs=$(echo "$line" | sed 's/.* in \([0-9.]*\) s (\([0-9]*\) MB.*/\1/')
  mb=$(echo "$line" | sed 's/.* in \([0-9.]*\) s (\([0-9]*\) MB.*/\2/')
  sync
  t0=$(date +%s.%N)
  dd if=/dev/zero of="$d/dd.bin" bs=1M count="$mb" conv=fsync 2>/dev/null
  t1=$(date +%s.%N)
  rm -f "$d/dd.bin"
  r0=$(date +%s.%N)
  "$MPILM" inspect "$d/run" > /dev/null 2>&1 || echo "bench_ckpt: inspect failed"
  r1=$(date +%s.%N)
  awk -v l="pp=$1 dp=$2 zero=$3" -v s="$secs" -v mb="$mb" -v t0="$t0" -v t1="$t1" -v r0="$r0" -v r1="$r1" 'BEGIN {
    dd = t1 - t0; rd = r1 - r0
    printf "save %s: %d MB in %.2f s (%.0f MB/s, %.0f MB/s per rank); dd conv=fsync %.2f s (%.0f MB/s); ratio %.2f (target <= 2); read+verify %.2f s (%.0f MB/s)\n",
      l, mb, s, mb / s, mb / s / 2, dd, mb / dd, s / dd, rd, mb / rd }'
  rm -rf "$d/run"
done

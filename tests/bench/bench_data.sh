#!/bin/sh
# Data pipeline figures on ../shared/corpora/train.txt:
#   prep end to end at 1 and 2 ranks (median of REPEATS) and the ratio (target >= 1.8);
#   reader throughput of sample building on one core, causal and MLM+NSP (target
#   >= 160k tokens/s = 20x the ~8000 tokens/s a training rank consumes), with the
#   reader's peak RSS (bounded by a few frames, whatever the corpus size).
# Environment: BUILD, MPILM, MPILM_SHARED, REPEATS.
BUILD=${BUILD:-build}
MPILM=${MPILM:-./mpilm}
SHARED=${MPILM_SHARED:-../shared}
REPEATS=${REPEATS:-3}
CORPUS=$SHARED/corpora/train.txt
BENCH=$BUILD/tests/bench/bench_data
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
[ -x "$BENCH" ] || { echo "bench_data: $BENCH not built (run make bench)"; exit 1; }
[ -f "$CORPUS" ] && [ -f "$SHARED/vocab/gpt2/encoder.json" ] || { echo "bench_data: $CORPUS or vocabularies missing; skipped"; exit 0; }
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
PIN=""
command -v taskset >/dev/null && PIN="taskset -c 0"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Median wall time of mpirun -np N mpilm prep (process start-up included), and
# the median time prep itself reports (vocabulary, encoding, manifest).
prep_time() { # ranks vocab out -> "WALL INSIDE"
  for i in $(seq "$REPEATS"); do
    rm -rf "$3"
    s=$(date +%s.%N)
    $MPIRUN -np "$1" $MPILM prep --vocab "$2" --overwrite --out "$3" "$CORPUS" >"$T/log" 2>&1 || { cat "$T/log" >&2; return 1; }
    e=$(date +%s.%N)
    inside=$(sed -n 's/.* MB in \([0-9.]*\) s .*/\1/p' "$T/log")
    echo "$s $e $inside" | awk '{print $2 - $1, $3}'
  done >"$T/times"
  echo "$(cut -d' ' -f1 "$T/times" | median) $(cut -d' ' -f2 "$T/times" | median)"
}

echo "corpus: $CORPUS ($(( $(wc -c < "$CORPUS") / 1000000 )) MB), median of $REPEATS, $(getconf _NPROCESSORS_ONLN) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(the 2-rank speed-up needs two idle cores; other load on the machine lowers it)"
for vocab in gpt2 bert-base-uncased; do
  t1=$(prep_time 1 "$SHARED/vocab/$vocab" "$T/$vocab") || { echo "prep failed"; exit 1; }
  t2=$(prep_time 2 "$SHARED/vocab/$vocab" "$T/$vocab") || { echo "prep -np 2 failed"; exit 1; }
  echo "$t1 $t2" | awk -v v="$vocab" '{printf "prep (%s): wall 1 rank %.2f s, 2 ranks %.2f s, speed-up %.2fx; inside prep %.2f s / %.2f s, speed-up %.2fx (target >= 1.8x)\n", v, $1, $3, $1 / $3, $2, $4, $2 / $4}'
done
$PIN $BENCH "$T/gpt2" causal 3 || exit 1
$PIN $BENCH "$T/bert-base-uncased" mlm-nsp 3 || exit 1
$PIN $BENCH "$T/bert-base-uncased" mlm 3 || exit 1

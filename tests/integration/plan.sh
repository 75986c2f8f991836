#!/bin/sh
# mpilm plan: every layout of N ranks (pp x dp x tp, zero, schedule) with
# per-rank memory and predicted speed; JSON schema; the ranking; the
# configuration's own layout marked; refusals (does not divide, does not fit,
# bad options); the per-machine cost cache (reused, a damaged one measured
# again); predicted peak RSS against what train measures for the same layout
# and batch (dp 2 and pp 2 at 2 ranks).
MPILM=${MPILM:-./mpilm}
MPIRUN=${MPIRUN:-mpirun --oversubscribe --bind-to none}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL plan: $*"; exit 1; }
export MPILM_CACHE_DIR="$d/cache"
set -- --config /dev/null --set model.n_layer=4 --set model.d_model=64 --set model.n_head=4 --set model.d_ff=256 \
  --set model.seq_len=64 --set model.max_positions=64 --set model.vocab_size=512 --set train.micro_batch=2 \
  --set train.global_batch=8 --set train.precision=fp32 --set data.source=random

"$MPILM" plan "$@" --np 4 --json > "$d/p.json" 2> "$d/err" || { cat "$d/err"; fail "plan --np 4 exit $?"; }
python3 - "$d/p.json" <<'PY' || fail "JSON"
import json, sys
d = json.load(open(sys.argv[1]))
L = d["layouts"]
# (pp, tp) with pp tp | 4: (1,1) dp 4 zero 0-2; (1,2) dp 2 zero 0-2; (1,4); (2,1) dp 2 zero 0-2 x 2 schedules;
# (2,2) x 2 schedules; (4,1) x 2 schedules
assert len(L) == 17, len(L)
assert sorted({(l["pp"], l["dp"], l["tp"]) for l in L}) == [(1,1,4),(1,2,2),(1,4,1),(2,1,2),(2,2,1),(4,1,1)]
ok = [l for l in L if l["ok"]]
assert len(ok) == 17, [l.get("why") for l in L if not l["ok"]]
for l in ok:
    for k in ("pp","dp","tp","zero","schedule","micro_batches","per_rank_peak_mib","peak_mib","tokens_per_s","step_s","bubble","sent_mib_per_step"):
        assert k in l, k
    assert l["pp"] * l["dp"] * l["tp"] == 4
    assert l["micro_batches"] * l["dp"] * 2 == 8, l          # the global batch stays 8 sequences
    assert len(l["per_rank_peak_mib"]) == 4 and max(l["per_rank_peak_mib"]) == l["peak_mib"]
    assert l["tokens_per_s"] > 0 and abs(l["step_s"] * l["tokens_per_s"] - 8 * 64) < 1e-6 * 8 * 64
    assert (l["bubble"] > 0) == (l["pp"] > 1)
    if l["pp"] > 1:  # (m + pp - 1) slots of the slowest stage, m of them busy, at least
        assert l["bubble"] >= (l["pp"] - 1) / (l["micro_batches"] + l["pp"] - 1) - 1e-9, l
speeds = [l["tokens_per_s"] for l in ok]
assert speeds == sorted(speeds, reverse=True)
conf = [l for l in L if l["configured"]]
assert len(conf) == 1 and (conf[0]["pp"], conf[0]["dp"], conf[0]["tp"], conf[0]["zero"]) == (1, 4, 1, 0), conf
# ZeRO saves memory: at dp 4, zero 2 needs less than zero 0 on every rank
z = {l["zero"]: l for l in ok if l["dp"] == 4}
assert all(a < b for a, b in zip(z[2]["per_rank_peak_mib"], z[0]["per_rank_peak_mib"]))
# GPipe keeps all micro-batches' activations, 1F1B at most pp
g = {l["schedule"]: l for l in ok if l["pp"] == 4}
assert g["gpipe"]["per_rank_peak_mib"][0] >= g["1f1b"]["per_rank_peak_mib"][0]
print("plan: 17 layouts of 4 ranks, ranked by tokens/s; zero 2 < zero 0 and 1f1b <= gpipe in memory")
PY
"$MPILM" plan "$@" --np 4 > "$d/t1" 2>&1 || fail "table exit $?"
grep -q "from this machine's cache" "$d/t1" || { cat "$d/t1"; fail "the second plan did not use the cache"; }
grep -q '^\*  1   4   1    0' "$d/t1" || { cat "$d/t1"; fail "configured layout not marked"; }
for f in "$d"/cache/plan-*.txt; do echo "block=garbage" > "$f"; done
"$MPILM" plan "$@" --np 4 > "$d/t2" 2>&1 || fail "plan with a damaged cache: exit $?"
grep -q "measured now" "$d/t2" || { cat "$d/t2"; fail "a damaged cache was not measured again"; }
echo "cache: reused, and measured again when damaged"

# --net measure: the ranks of this launch measure the network; rank 0 alone prints; a
# slower reduce-scatter than the given network makes every dp layout slower
$MPIRUN -np 2 "$MPILM" plan "$@" --np 2 --net measure --json > "$d/m.json" 2> "$d/err" ||
  { cat "$d/err"; fail "plan --net measure under mpirun: exit $?"; }
"$MPILM" plan "$@" --np 2 --net 1000,0.01 --json > "$d/fast.json" || fail "plan --net 1000,0.01 exit $?"
python3 - "$d/m.json" "$d/fast.json" <<'PY' || fail "--net measure JSON"
import json, sys
m, f = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))  # one JSON document: rank 0 alone printed
assert m["net_measured"] is True and f["net_measured"] is False
for k in ("net_gbit_s", "net_latency_us", "net_reduce_gbit_s", "net_gather_gbit_s"):
    assert m[k] > 0, (k, m[k])
assert m["net_reduce_gbit_s"] < 1000 and f["net_reduce_gbit_s"] == f["net_gbit_s"] == 1000
key = lambda l: (l["pp"], l["dp"], l["tp"], l["zero"], l["schedule"])
fast = {key(l): l for l in f["layouts"] if l["ok"]}
for l in m["layouts"]:
    if l["ok"] and l["dp"] == 2:
        assert l["step_s"] > fast[key(l)]["step_s"], (key(l), l["step_s"], fast[key(l)]["step_s"])
print(f"--net measure: {m['net_latency_us']:.2f} us, reduce-scatter {m['net_reduce_gbit_s']:.1f} Gbit/s, "
      f"all-gather {m['net_gather_gbit_s']:.1f} Gbit/s per rank; dp layouts slower than on a 1000 Gbit/s network")
PY
"$MPILM" plan "$@" --np 2 --net measure > "$d/one" 2>&1 && fail "--net measure on one rank was accepted"
grep -q "needs the job's ranks to measure between" "$d/one" || { cat "$d/one"; fail "--net measure on one rank: message"; }

# refusals: a layout that does not fit, one that does not divide; bad options exit 2
"$MPILM" plan "$@" --np 4 --mem-per-rank 20 --json > "$d/small.json" || fail "mem-per-rank exit $?"
python3 -c "
import json,sys; L=json.load(open('$d/small.json'))['layouts']
assert not any(l['ok'] for l in L)
assert all(l['why'].startswith('does not fit: rank ') and 'a rank may use 20 MiB' in l['why'] for l in L), L[0]['why']" ||
  fail "--mem-per-rank 20: every layout should not fit"
"$MPILM" plan "$@" --np 3 > "$d/t3" 2>&1 || fail "np 3 exit $?"
grep -q "pp 1 dp 3 tp 1 zero 0 -: does not divide: the global batch of 8 sequences is not a multiple of dp 3 x train.micro_batch 2" "$d/t3" ||
  { cat "$d/t3"; fail "dp 3 not refused"; }
grep -q "pp 1 dp 1 tp 3 zero 0 -: does not divide: .*n_head" "$d/t3" || { cat "$d/t3"; fail "tp 3 not refused"; }
"$MPILM" plan "$@" --np 5 --set train.global_batch=10 > "$d/t5" 2>&1 || fail "np 5 exit $?"
grep -q "pp 5 .*does not divide: pp 5 exceeds the 4 layers" "$d/t5" || { cat "$d/t5"; fail "pp 5 not refused"; }
for bad in "--np 0" "--np x" "" "--np 2 --net 100" "--np 2 --net -1,2" "--np 2 --mem-per-rank 0"; do
  # shellcheck disable=SC2086
  "$MPILM" plan "$@" $bad > "$d/bad" 2>&1; rc=$?
  [ $rc -eq 2 ] && grep -q "plan: --" "$d/bad" || { cat "$d/bad"; fail "'$bad': exit $rc (expected 2 naming the option)"; }
done
echo "refused: does not fit, does not divide (dp, tp, pp), bad --np/--net/--mem-per-rank (exit 2)"

# predicted peak RSS against train's measured one, same layout and batch (the GEMM peak
# given: its one-off measurement on a new machine adds three 2048^2 matrices)
# (gpt-mini's shapes: at a few MiB the runtime's fixed share, taken large by the check, dominates)
set -- --config /dev/null --set model.n_layer=4 --set model.d_model=256 --set model.n_head=4 --set model.d_ff=1024 \
  --set model.seq_len=256 --set model.max_positions=256 --set model.vocab_size=8192 --set train.micro_batch=4 \
  --set train.global_batch=8 --set train.precision=fp32 --set data.source=random
"$MPILM" plan "$@" --np 2 --json > "$d/p2.json" || fail "plan --np 2"
for layout in "dist.pp=1 dist.zero=0" "dist.pp=2 dist.zero=0"; do
  sets=""; for kv in $layout; do sets="$sets --set $kv"; done
  # shellcheck disable=SC2086
  MPILM_PEAK_GFLOPS=100 $MPIRUN -np 2 "$MPILM" train "$@" $sets --set train.steps=2 --set run.dir="$d/run" --set ckpt.every_steps=0 \
    --set ckpt.every_minutes=0 --overwrite > "$d/train.log" 2>&1 || { cat "$d/train.log"; fail "train $layout"; }
  measured=$(sed -n 's/.*peak RSS per rank (MiB): //p' "$d/train.log" | tr -d ' ' | tr ',' '\n' | cut -d: -f2 | tr '\n' ' ')
  # AddressSanitizer's shadow memory and redzones are no part of the plan
  [ "${SAN:-0}" = 1 ] && { echo "$layout: RSS not compared under sanitizers"; continue; }
  python3 - "$d/p2.json" "$layout" $measured <<'PY' || fail "predicted peak RSS of $layout"
import json, sys
pp = int(sys.argv[2].split()[0].split("=")[1])
l = [l for l in json.load(open(sys.argv[1]))["layouts"] if l["pp"] == pp and l["tp"] == 1 and l["zero"] == 0
     and l["schedule"] in ("-", "1f1b")][0]
assert len(sys.argv) == 3 + 2, sys.argv
for r, m in enumerate(map(float, sys.argv[3:])):
    p = l["per_rank_peak_mib"][r]
    # measured here +7% to +15% of the prediction (fp32; bf16 +3% to +8%); the issue's 15%
    # target is bench_plan.sh's, this bound only catches a plan gone wrong
    assert 0.8 * p <= m <= 1.25 * p, f"rank {r}: predicted {p:.0f} MiB, measured {m:.0f} MiB"
    print(f"{sys.argv[2]}: rank {r} predicted {p:.0f} MiB, measured {m:.0f} MiB")
PY
done

# dist.layout = auto: train takes the plan's fastest layout (same cost cache), the global batch kept
fastest=$(python3 -c "
import json; l=[l for l in json.load(open('$d/p2.json'))['layouts'] if l['ok']][0]
print('pp %d x dp %d x tp %d, zero %d' % (l['pp'], l['dp'], l['tp'], l['zero']))")
MPILM_PEAK_GFLOPS=100 $MPIRUN -np 2 "$MPILM" train "$@" --set dist.layout=auto --set train.steps=2 --set run.dir="$d/auto" \
  --set ckpt.every_steps=0 --set ckpt.every_minutes=0 > "$d/auto.log" 2>&1 || { cat "$d/auto.log"; fail "dist.layout = auto"; }
grep -q "dist.layout = auto: $fastest" "$d/auto.log" || { grep "layout" "$d/auto.log"; fail "auto did not take the plan's fastest ($fastest)"; }
grep -q "global batch .* x 2 sequences\|global batch" "$d/auto.log" || fail "no global batch line"
MPILM_PEAK_GFLOPS=100 $MPIRUN -np 2 "$MPILM" train "$@" --set dist.layout=auto --set train.global_batch=3 \
  --set run.dir="$d/auto3" > "$d/auto3.log" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "dist.layout = auto: no layout of 2 ranks fits (does not divide" "$d/auto3.log" ||
  { cat "$d/auto3.log"; fail "dist.layout = auto without a fitting layout: exit $rc"; }
echo "dist.layout = auto: $fastest, as planned; no layout fitting refused (exit 2)"
echo "PASS plan"

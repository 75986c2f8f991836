#!/bin/sh
# mpilm plan's accuracy on this machine: for each model of BENCH_PLAN_MODELS
# and each layout of 2 ranks x 1 thread (and 1 rank), the predicted peak RSS
# (largest rank) and tokens/s of `mpilm plan --np N --json` against what
# `mpilm train` measures in the same run (peak RSS per rank from its report,
# tokens/s the median of the timed steps). Global batch fixed
# (train.global_batch), the run's precision, random data; the 2-rank plan
# measures the network among 2 ranks placed as the job's (mpirun ... plan
# --net measure). Targets (issue: plan): RSS within 15%, tokens/s within
# 25%; a row outside is marked MISSED and the bench exits 1.
# The 2-rank runs are placed as launch/mpirun.sh places ranks that fit the cores (each
# bound to its core: --map-by slot:PE=1 --bind-to core), which is what the plan predicts;
# unbound ranks of one node migrate and share cores now and then, and measured 10-15% below
# bound ones here, with one rank up to 30% slower than the other.
# Environment: BENCH_PLAN_MODELS (default "gpt-mini gpt2-small"), BENCH_STEPS
# (timed steps, default 6; 2 more warm up), MPILM, BENCH_PLAN_MPIRUN (default: the above).
MPILM=${MPILM:-./mpilm}
MPIRUN=${BENCH_PLAN_MPIRUN:-mpirun --map-by slot:PE=1 --bind-to core}
STEPS=${BENCH_STEPS:-6}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
export OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1
status=0
printf '%-11s %-14s %12s %12s %7s %10s %10s %7s\n' model layout pred_tok/s meas_tok/s err pred_MiB meas_MiB err
for model in ${BENCH_PLAN_MODELS:-gpt-mini gpt2-small}; do
  cfg=launch/configs/$model.ini
  set -- --config "$cfg" --set data.source=random --set train.global_batch=8 --set train.micro_batch=2 --set train.micro_batches=auto \
    --set ckpt.every_steps=0 --set ckpt.every_minutes=0 --set log.every=1
  "$MPILM" plan "$@" --np 1 --net 50,1 --json > "$d/p1.json" || { echo "plan --np 1 failed"; exit 1; }
  $MPIRUN -np 2 "$MPILM" plan "$@" --np 2 --net measure --json > "$d/p2.json" || { echo "plan --np 2 failed"; exit 1; }
  for layout in "1 dist.pp=1" "2 dist.pp=2:dist.schedule=1f1b" "2 dist.pp=1:dist.zero=2" "2 dist.tp=2"; do
    np=${layout%% *} sets=${layout#* }
    opts=$(echo "$sets" | tr ':' '\n' | sed 's/^/--set /' | tr '\n' ' ')
    # shellcheck disable=SC2086
    if [ "$np" = 1 ]; then "$MPILM" train "$@" $opts --set train.steps=$((STEPS + 2)) --set run.dir="$d/run" \
        --overwrite > "$d/t.log" 2>&1
    else $MPIRUN -np 2 "$MPILM" train "$@" $opts --set train.steps=$((STEPS + 2)) --set run.dir="$d/run" \
        --overwrite > "$d/t.log" 2>&1; fi || { tail -3 "$d/t.log"; echo "train $model $sets failed"; status=1; continue; }
    rss=$(sed -n 's/.*peak RSS per rank (MiB): //p' "$d/t.log" | tr ',' '\n' | cut -d: -f2 | sort -n | tail -1)
    python3 - "$d/p$np.json" "$d/run/metrics.jsonl" "$sets" "$rss" "$model" <<'PY' || status=1
import json, statistics, sys
plan, metrics, sets, rss, model = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
want = dict(kv.split("=") for kv in sets.split(":"))
pp, tp = int(want.get("dist.pp", 1)), int(want.get("dist.tp", 1))
zero = int(want.get("dist.zero", 0))
L = [l for l in json.load(open(plan))["layouts"] if l["ok"] and l["pp"] == pp and l["tp"] == tp
     and (l["dp"] == 1 or l["zero"] == zero) and l["schedule"] in ("-", "1f1b")]
assert L, f"no such layout in the plan: {sets}"
l = L[0]
rows = [json.loads(x) for x in open(metrics) if '"tokens_per_s"' in x]
meas = statistics.median(r["tokens_per_s"] for r in rows[2:])
e_t, e_m = meas / l["tokens_per_s"] - 1, rss / l["peak_mib"] - 1
ok = abs(e_t) <= 0.25 and abs(e_m) <= 0.15
print(f"{model:<11} {sets:<14} {l['tokens_per_s']:12.0f} {meas:12.0f} {100*e_t:+6.1f}% {l['peak_mib']:10.0f} "
      f"{rss:10.0f} {100*e_m:+6.1f}%{'' if ok else '  MISSED'}")
sys.exit(0 if ok else 1)
PY
  done
done
exit $status

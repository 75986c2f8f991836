#!/bin/sh
# Promises of docs/usage.md no other test holds (docs/tests.md maps each
# promise to its test): --version; an unknown command; run.threads (auto,
# a number, and BLIS_NUM_THREADS / OMP_NUM_THREADS in the environment
# winning); model.norm; train.decay = linear and cosine (the lr of every
# step); train.clip = 0 is off; MPILM_LOG; resume with another seq_len,
# dropout or recompute accepted, another model refused; export refusing a
# post-LN GPT. Tiny GPTs on random data, a few steps each.
MPILM=${MPILM:-./mpilm}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL usage_promises: $*"; exit 1; }
set -- --config /dev/null --set model.n_layer=1 --set model.d_model=16 --set model.n_head=2 --set model.d_ff=32 \
  --set model.seq_len=8 --set model.max_positions=16 --set model.vocab_size=64 --set train.micro_batch=2 \
  --set train.steps=4 --set log.every=1 --set train.precision=fp32
# field FILE KEY: the values of KEY in metrics.jsonl, one per line
field() { sed "s/.*\"$2\":\([^,}]*\).*/\1/" "$1/metrics.jsonl"; }

# --version: "mpilm X.Y.Z", exit 0; an unknown command: usage error (exit 2), named
v=$("$MPILM" --version) || fail "--version exit $?"
echo "$v" | grep -Eq '^mpilm [0-9]+\.[0-9]+\.[0-9]+$' || fail "--version printed '$v'"
msg=$("$MPILM" frobnicate 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$msg" | grep -q "unknown command 'frobnicate'" || fail "unknown command: exit $rc, $msg"

# run.threads: the environment wins (BLIS_NUM_THREADS over OMP_NUM_THREADS), then
# the key, then auto = the cores this process may use (one rank)
threads() { # expected-count expected-origin env-assignments... -- options...
  want=$1 origin=$2; shift 2
  env -u BLIS_NUM_THREADS -u OMP_NUM_THREADS "$@" --set train.steps=1 --set run.dir="$d/threads" --overwrite > "$d/t.log" 2>&1 ||
    { cat "$d/t.log"; fail "threads run: $*"; }
  grep -q ", $want threads\{0,1\} per rank ($origin)" "$d/t.log" ||
    { grep "per rank" "$d/t.log"; fail "expected $want threads ($origin): $*"; }
}
cores=$(env -u OMP_NUM_THREADS nproc)
threads "$cores" auto "$MPILM" train "$@"
threads 3 run.threads "$MPILM" train "$@" --set run.threads=3
threads 2 OMP_NUM_THREADS OMP_NUM_THREADS=2 "$MPILM" train "$@" --set run.threads=3
threads 1 BLIS_NUM_THREADS BLIS_NUM_THREADS=1 OMP_NUM_THREADS=2 "$MPILM" train "$@" --set run.threads=3
echo "run.threads: auto = $cores cores, the key, then OMP_NUM_THREADS, then BLIS_NUM_THREADS win"

# model.norm: auto is pre for GPT (manifest "norm"), post trains another model,
# and export refuses a post-LN GPT (exit 2, naming the key to change)
"$MPILM" train "$@" --set run.dir="$d/pre" > "$d/log" 2>&1 || { cat "$d/log"; fail "pre-LN run"; }
"$MPILM" train "$@" --set model.norm=post --set run.dir="$d/post" > "$d/log" 2>&1 || { cat "$d/log"; fail "post-LN run"; }
grep -q '"norm":[[:space:]]*"pre"' "$d/pre/latest/manifest.json" || fail "model.norm = auto is not pre for a GPT"
grep -q '"norm":[[:space:]]*"post"' "$d/post/latest/manifest.json" || fail "model.norm = post is not recorded"
[ "$(field "$d/pre" loss)" != "$(field "$d/post" loss)" ] || fail "model.norm = post trains the same model as pre"
msg=$("$MPILM" export --ckpt "$d/post" --format hf --out "$d/hf-post" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$msg" | grep -q "post-LN" && echo "$msg" | grep -q "model.norm" ||
  fail "export of a post-LN GPT: exit $rc, $msg"
[ ! -e "$d/hf-post/model.safetensors" ] || fail "the refused export wrote model.safetensors"
echo "model.norm: auto = pre for GPT, post trains another model and is refused by export"

# train.decay: the lr of every step (metrics.jsonl) is the documented schedule:
# warm-up t / W * lr, then lr + (min_lr - lr) p (linear) or
# min_lr + (lr - min_lr) (1 + cos(pi p)) / 2 (cosine), p = (t - W) / (steps - W)
for decay in linear cosine; do
  "$MPILM" train "$@" --set train.steps=10 --set train.warmup_steps=2 --set train.lr=1e-3 --set train.min_lr=1e-4 \
    --set train.decay=$decay --set run.dir="$d/$decay" > "$d/log" 2>&1 || { cat "$d/log"; fail "decay $decay run"; }
  sed 's/.*"step":\([0-9]*\),.*"lr":\([^,]*\),.*/\1 \2/' "$d/$decay/metrics.jsonl" |
    awk -v decay=$decay 'BEGIN { lr = 1e-3; mn = 1e-4; W = 2; S = 10; pi = atan2(0, -1) }
      { t = $1; p = (t - W) / (S - W)
        want = t <= W ? lr * t / W : decay == "linear" ? lr + (mn - lr) * p : mn + (lr - mn) * 0.5 * (1 + cos(pi * p))
        d = $2 - want; if (d < 0) d = -d
        if (d > 1e-6 * lr) { printf "step %d: lr %s, expected %.9g\n", t, $2, want; bad = 1 }; n++ }
      END { exit bad || n != 10 }' || fail "train.decay = $decay: the lr schedule differs"
done
[ "$(field "$d/linear" lr)" != "$(field "$d/cosine" lr)" ] || fail "linear and cosine give the same lr"
echo "train.decay: linear and cosine follow their formulas at every step"

# train.clip = 0 is off: the same run as a threshold no gradient reaches, not as a tight one
"$MPILM" train "$@" --set train.lr=1e-2 --set train.clip=0 --set run.dir="$d/clip0" > "$d/log" 2>&1 || fail "clip 0 run"
"$MPILM" train "$@" --set train.lr=1e-2 --set train.clip=1e9 --set run.dir="$d/clipbig" > "$d/log" 2>&1 || fail "clip 1e9 run"
"$MPILM" train "$@" --set train.lr=1e-2 --set train.clip=0.01 --set run.dir="$d/clip001" > "$d/log" 2>&1 || fail "clip 0.01 run"
[ "$(field "$d/clip0" loss)" = "$(field "$d/clipbig" loss)" ] || fail "train.clip = 0 is not the same as no clipping"
[ "$(field "$d/clip0" loss)" != "$(field "$d/clip001" loss)" ] || fail "train.clip = 0.01 changes nothing: the check is blind"
field "$d/clip0" grad_norm | awk '$1 <= 0.01 { bad = 1 } END { exit bad }' || fail "gradient norms not above 0.01"
echo "train.clip = 0: no clipping (as 1e9; 0.01 differs)"

# MPILM_LOG: error hides info and warnings, warn hides info only, info shows both
# (every save fails: step 1's is a warning under on_error = continue, the final
# one after step 2 an error, exit 1, at every level)
for level in error warn info; do
  MPILM_LOG=$level MPILM_TEST_CKPT_FAIL=write "$MPILM" train "$@" --set train.steps=2 --set ckpt.every_steps=1 \
    --set ckpt.on_error=continue --set run.dir="$d/log-$level" > "$d/out" 2> "$d/err"
  rc=$?
  [ $rc -eq 1 ] && grep -q "error: .*the final checkpoint (step 2) was not written" "$d/err" ||
    { cat "$d/out" "$d/err"; fail "MPILM_LOG=$level run: exit $rc (expected 1 with the final save's error)"; }
  info=$(grep -c "step 1/2" "$d/out") warn=$(grep -c "warning: checkpoint at step 1 failed" "$d/err")
  case $level in
    error) [ "$info" -eq 0 ] && [ "$warn" -eq 0 ] ;;
    warn) [ "$info" -eq 0 ] && [ "$warn" -eq 1 ] ;;
    info) [ "$info" -eq 1 ] && [ "$warn" -eq 1 ] ;;
  esac || fail "MPILM_LOG=$level: $info progress lines, $warn warnings"
done
echo "MPILM_LOG: error, warn and info filter as documented"

# resume: seq_len, dropout and recompute may change; the model may not (exit 2, the key named)
"$MPILM" train "$@" --set train.steps=2 --set run.dir="$d/r" > "$d/log" 2>&1 || fail "run to resume"
for change in model.seq_len=16 model.dropout=0.2 model.recompute=true; do
  rm -rf "$d/r2" && cp -r "$d/r" "$d/r2"
  "$MPILM" train "$@" --set $change --set run.dir="$d/r2" --resume auto > "$d/log" 2>&1 ||
    { tail -3 "$d/log"; fail "resume with $change refused"; }
  grep -q "resumed from .*step-0000002 (step 2)" "$d/log" && [ -d "$d/r2/step-0000004" ] ||
    fail "resume with $change did not continue from step 2"
done
rm -rf "$d/r2" && cp -r "$d/r" "$d/r2"
msg=$("$MPILM" train "$@" --set model.d_ff=64 --set run.dir="$d/r2" --resume auto 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$msg" | grep -q "d_ff" && echo "$msg" | grep -q "32" && echo "$msg" | grep -q "64" ||
  fail "resume with another d_ff: exit $rc, $msg"
echo "resume: seq_len, dropout, recompute may change; d_ff is refused with both values"
echo "usage_promises: ok"

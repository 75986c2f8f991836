#!/bin/sh
# launch/ as docs/usage.md ("Launching jobs") describes it:
# - launch/mpirun.sh trains with --resume auto (the same command continues the
#   run) and writes each job's output to RUN_DIR.launch-TIME.log too; binds
#   ranks when ranks x threads fit the cores and oversubscribes unbound
#   otherwise; with -H HOST:SLOTS or -f HOSTFILE takes the rank count from the
#   slots, binds each rank with its threads, forwards MPILM_* and the thread
#   variables (-x), sets --wdir and adds MPILM_MPIRUN_ARGS (checked through a
#   stand-in mpirun that prints its arguments and hostfile); refuses a missing
#   config, a hostfile naming no slots, more ranks than slots (exit 2);
# - launch/pbs.sh under a simulated PBS job (PBS_* variables, a node file,
#   stand-in qsub and qstat recording their arguments): threads per rank =
#   ncpus / ranks per host (ncpus=8, mpiprocs=2: 4) or ompthreads, and
#   ckpt.every_minutes = 30 when the config leaves it off (stand-in mpirun); a
#   plain run exits 0 without resubmitting; SIGTERM to every process of the
#   job (as PBS signals the session) → checkpoint → exit 75 → qsub of the same
#   script with the job's select/walltime and MPILM_RESUBMITS=1, and running
#   that submission resumes and ends as an uninterrupted run; at
#   MPILM_MAX_REQUEUES the job exits 75 without qsub and says so;
# - launch/slurm.sbatch outside Slurm (stand-in srun without pmix, mpirun): it
#   falls back to a bound mpirun, saying so, and warns when the measured step
#   and checkpoint save exceed MPILM_SIGNAL_LEAD (the real Slurm: slurm.sh);
# - every launch/configs/*.ini sets ckpt.every_minutes = 30 and ckpt.every_steps;
# - launch/demo.sh in a scratch copy of the repository with its configurations
#   cut to a few steps: every step runs and the files it announces exist.
MPILM=${MPILM:-./mpilm}
case $MPILM in /*) ;; *) MPILM=$(pwd)/$MPILM ;; esac
repo=$(pwd)
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL launch_scripts: $*"; exit 1; }
export MPILM
cat > "$d/tiny.ini" <<'INI'
[model]
n_layer = 1
d_model = 16
n_head = 2
d_ff = 32
seq_len = 8
max_positions = 8
vocab_size = 64
[train]
steps = 2
micro_batch = 2
precision = fp32
[log]
every = 1
INI

# every shipped configuration checkpoints every 30 minutes and every N steps (docs/usage.md)
for f in launch/configs/*.ini; do
  cfg=$("$MPILM" train --config "$f" --print-config 2> "$d/cfg.err") || { cat "$d/cfg.err"; fail "$f: --print-config"; }
  echo "$cfg" | grep -q "^every_minutes = 30 ; from $f:" || fail "$f does not set ckpt.every_minutes = 30"
  echo "$cfg" | grep -q "^every_steps = [1-9][0-9]* ; from $f:" || fail "$f does not set ckpt.every_steps"
done

# launch/mpirun.sh: trains, and the same command resumes
sh launch/mpirun.sh -n 2 -t 1 "$d/tiny.ini" --set run.dir="$d/m" > "$d/m1.log" 2>&1 || { tail -5 "$d/m1.log"; fail "mpirun.sh run"; }
[ -d "$d/m/step-0000002" ] || fail "mpirun.sh wrote no step-0000002"
grep -q "2 ranks" "$d/m1.log" || fail "mpirun.sh -n 2 did not start 2 ranks"
sh launch/mpirun.sh -n 2 -t 1 "$d/tiny.ini" --set run.dir="$d/m" --set train.steps=4 > "$d/m2.log" 2>&1 ||
  { tail -5 "$d/m2.log"; fail "mpirun.sh rerun"; }
grep -q "resumed from .*step-0000002 (step 2)" "$d/m2.log" && [ -d "$d/m/step-0000004" ] ||
  fail "rerunning mpirun.sh did not resume from step 2"
# placement decisions, through a stand-in mpirun
mkdir -p "$d/bin"
ls "$d"/m.launch-*.log > /dev/null 2>&1 && [ "$(ls "$d"/m.launch-*.log | wc -l)" = 2 ] ||
  fail "mpirun.sh did not write one log per job beside the run directory: $(ls "$d")"
grep -q "resumed from .*step-0000002 (step 2)" "$d"/m.launch-*.log || fail "the job's output is not in its log file"
# placement decisions, through a stand-in mpirun that prints its arguments and its hostfile
printf '#!/bin/sh\necho "mpirun $*"\nwhile [ $# -gt 1 ]; do [ "$1" = --hostfile ] && cat "$2"; shift; done\n' > "$d/bin/mpirun"
chmod +x "$d/bin/mpirun"
cores=$(getconf _NPROCESSORS_ONLN)
S="--set run.dir=$d/s"
out=$(PATH="$d/bin:$PATH" sh launch/mpirun.sh -n 1 -t 1 "$d/tiny.ini" --set train.steps=3 $S)
echo "$out" | grep -q -- "-np 1 --map-by slot:PE=1 --bind-to core .*train --config $d/tiny.ini --resume auto --set train.steps=3" ||
  fail "1 rank x 1 thread is not bound, or the options are not passed on: $out"
out=$(PATH="$d/bin:$PATH" sh launch/mpirun.sh -n $((cores + 1)) -t 1 "$d/tiny.ini" $S)
echo "$out" | grep -q -- "-np $((cores + 1)) --oversubscribe --bind-to none" ||
  fail "$((cores + 1)) ranks on $cores cores are not unbound: $out"
out=$(PATH="$d/bin:$PATH" sh launch/mpirun.sh -t 1 "$d/tiny.ini" $S)
echo "$out" | grep -q -- "-np $cores " || fail "the default rank count is not the $cores cores: $out"
msg=$(sh launch/mpirun.sh "$d/none.ini" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$msg" | grep -q "none.ini" || fail "mpirun.sh with a missing config: exit $rc, $msg"
# hosts: ranks from the slots, each rank bound with its threads, the environment and
# the directory carried to every host, extra mpirun options from MPILM_MPIRUN_ARGS
out=$(PATH="$d/bin:$PATH" MPILM_PROBE=1 MPILM_MPIRUN_ARGS="--mca btl tcp,self" sh launch/mpirun.sh -H a:2,b:3,c -t 2 "$d/tiny.ini" $S)
echo "$out" | grep -q -- "-np 6 --hostfile [^ ]* --map-by slot:PE=2 --bind-to core --wdir $repo " ||
  fail "-H a:2,b:3,c: not 6 ranks of 2 bound cores each in $repo: $out"
for x in "-x OMP_NUM_THREADS" "-x BLIS_NUM_THREADS" "-x MPILM_PROBE" "-x MPILM_MPIRUN_ARGS" "--mca btl tcp,self $MPILM train"; do
  echo "$out" | grep -q -- "$x" || fail "-H: mpirun lacks \"$x\": $out"
done
[ "$(echo "$out" | grep slots= | tr '\n' ' ')" = "a slots=2 b slots=3 c slots=1 " ] || fail "-H a:2,b:3,c: hostfile $out"
printf '# a PBS node file, and an Open MPI hostfile\nn1\nn1\nn2 slots=2 # two\nn1\n' > "$d/hostfile"
out=$(PATH="$d/bin:$PATH" sh launch/mpirun.sh -f "$d/hostfile" "$d/tiny.ini" $S)
echo "$out" | grep -q -- "-np 5 .*--map-by slot:PE=1 --bind-to core" && [ "$(echo "$out" | grep slots= | tr '\n' ' ')" = "n1 slots=3 n2 slots=2 " ] ||
  fail "-f: a host's lines are not added up to 5 ranks: $out"
printf '# nothing\nn1 slots=0\n' > "$d/noslots"
msg=$(PATH="$d/bin:$PATH" sh launch/mpirun.sh -f "$d/noslots" "$d/tiny.ini" $S 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$msg" | grep -q "names no slots" || fail "a hostfile naming no slots: exit $rc, $msg"
msg=$(PATH="$d/bin:$PATH" sh launch/mpirun.sh -n 7 -f "$d/hostfile" "$d/tiny.ini" $S 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$msg" | grep -q "7 ranks, but the hosts give 5 slots" || fail "7 ranks on 5 slots: exit $rc, $msg"
echo "launch/mpirun.sh: trains, resumes on rerun, logs each job beside the run directory, binds when it fits, ranks from host slots, forwards MPILM_* and threads, refuses a missing config and a hostfile without slots"

# launch/pbs.sh in a simulated PBS job: PBS_* variables, a node file, and
# stand-in qsub and qstat that record their arguments
command -v bash > /dev/null && command -v setsid > /dev/null ||
  { echo "launch_scripts: skipped: no bash or setsid for launch/pbs.sh"; exit 77; }
mkdir -p "$d/pbsbin" "$d/stub"
printf '#!/bin/sh\nfor a in "$@"; do printf "%%s\\n" "$a"; done >> "%s/qsub.calls"\necho 43.pbs\n' "$d" > "$d/pbsbin/qsub"
printf '#!/bin/sh\nprintf "Job Id: 42.pbs\\n    Resource_List.select = 1:ncpus=2:mpiprocs=2\\n    Resource_List.walltime = 01:00:00\\n"\n' > "$d/pbsbin/qstat"
printf '#!/bin/sh\necho "mpirun $* OMP_NUM_THREADS=$OMP_NUM_THREADS"\n' > "$d/stub/mpirun"
chmod +x "$d/pbsbin/qsub" "$d/pbsbin/qstat" "$d/stub/mpirun"
printf 'localhost\nlocalhost\n' > "$d/nodes"
pbs() { # log, extra environment...
  log=$1; shift
  env PATH="$d/pbsbin:$PATH" PBS_O_WORKDIR="$repo" PBS_NODEFILE="$d/nodes" PBS_JOBID=42.pbs PBS_JOBNAME=mpilm \
    NCPUS=2 OMP_NUM_THREADS=2 MPILM_CONFIG="$d/pbs.ini" "$@" bash launch/pbs.sh > "$log" 2>&1
}
# threads per rank: ncpus / ranks per host, or ompthreads; ckpt.every_minutes = 30 when the config leaves it off
{ cat "$d/tiny.ini"; printf '[run]\ndir = %s/t\n' "$d"; } > "$d/pbs.ini"
pbs "$d/t1.log" PATH="$d/stub:$d/pbsbin:$PATH" NCPUS=8 OMP_NUM_THREADS=8
grep -q -- "-np 2 --hostfile [^ ]* --map-by slot:PE=4 --bind-to core .*--set ckpt.every_minutes=30 OMP_NUM_THREADS=4" "$d/t1.log" ||
  { cat "$d/t1.log"; fail "ncpus=8, mpiprocs=2: not 2 ranks x 4 bound threads with a checkpoint every 30 minutes"; }
pbs "$d/t2.log" PATH="$d/stub:$d/pbsbin:$PATH" NCPUS=8 OMP_NUM_THREADS=2
grep -q -- "-np 2 .*--map-by slot:PE=2 .*OMP_NUM_THREADS=2" "$d/t2.log" || { cat "$d/t2.log"; fail "ompthreads=2: not 2 threads per rank"; }
# a plain run: exit 0, no resubmission
{ cat "$d/tiny.ini"; printf '[run]\ndir = %s/p\n' "$d"; } > "$d/pbs.ini"
pbs "$d/p1.log" || { tail -5 "$d/p1.log"; fail "pbs.sh plain run: exit $?"; }
[ -d "$d/p/step-0000002" ] && grep -q "2 ranks" "$d/p1.log" || fail "pbs.sh did not train on the 2 slots of the node file"
[ ! -e "$d/qsub.calls" ] || fail "pbs.sh resubmitted a job that ended normally"
# SIGTERM to every process of the job, as PBS signals the job's session
preempted_job() { # log, extra environment...
  log=$1; shift
  # setsid and env exec: $! is the batch shell, leader of its process group
  setsid env PATH="$d/pbsbin:$PATH" PBS_O_WORKDIR="$repo" PBS_NODEFILE="$d/nodes" PBS_JOBID=42.pbs PBS_JOBNAME=mpilm \
    NCPUS=2 OMP_NUM_THREADS=2 MPILM_CONFIG="$d/pbs.ini" MPILM_TEST_STEP_DELAY=0.05 "$@" bash launch/pbs.sh > "$log" 2>&1 &
  job=$!
  i=0
  until grep -q "step 3/400" "$log" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 600 ] || { kill $job; fail "the PBS job did not reach step 3"; }
    sleep 0.1
  done
  kill -TERM -$job
  wait $job
}
{ cat "$d/tiny.ini"; printf '[run]\ndir = %s/q\n' "$d"; } | sed 's/^steps = 2/steps = 400/' > "$d/pbs.ini"
preempted_job "$d/p2.log"; rc=$?
[ $rc -eq 75 ] || { tail -5 "$d/p2.log"; fail "pbs.sh after SIGTERM exited $rc (expected 75)"; }
grep -q "preempted by SIGUSR1 at step [0-9]*: checkpoint written, exit 75" "$d/p2.log" || fail "no preemption message"
[ -f "$d/qsub.calls" ] && [ "$(grep -c "^launch/pbs.sh\$" "$d/qsub.calls")" = 1 ] ||
  fail "pbs.sh did not qsub launch/pbs.sh once: $(cat "$d/qsub.calls" 2>&1)"
[ "$(head -6 "$d/qsub.calls" | tr '\n' ' ')" = "-l select=1:ncpus=2:mpiprocs=2 -l walltime=01:00:00 -N mpilm " ] ||
  fail "the resubmission does not ask for the job's resources: $(tr '\n' ' ' < "$d/qsub.calls")"
[ "$(sed -n 7p "$d/qsub.calls")" = -v ] || fail "the resubmission passes no -v: $(tr '\n' ' ' < "$d/qsub.calls")"
vars=$(sed -n 8p "$d/qsub.calls")
for v in "MPILM_CONFIG=$d/pbs.ini" MPILM_RESUBMITS=1 MPILM_MAX_REQUEUES=10 MPILM_TEST_STEP_DELAY=0.05; do
  echo ",$vars," | grep -q ",$v," || fail "the resubmission's -v lacks $v: $vars"
done
step=$(sed -n 's/.*preempted by SIGUSR1 at step \([0-9]*\).*/\1/p' "$d/p2.log" | head -1)
# the recorded resubmission, run as PBS would run it (without the test's delay): it
# resumes where the job stopped and ends exactly as an uninterrupted job
# shellcheck disable=SC2046
pbs "$d/p3.log" PBS_JOBID=43.pbs $(echo "$vars" | tr ',' ' ') MPILM_TEST_STEP_DELAY=0 ||
  { tail -5 "$d/p3.log"; fail "the resubmitted job: exit $?"; }
grep -q "resumed from .*(step $step)" "$d/p3.log" || fail "the resubmitted job did not resume from step $step"
grep -q "resubmission 1 of at most 10" "$d/p3.log" || fail "the resubmitted job does not count itself"
sed "s|^dir = .*|dir = $d/u|" "$d/pbs.ini" > "$d/pbs-u.ini"
pbs "$d/p4.log" MPILM_CONFIG="$d/pbs-u.ini" || fail "the uninterrupted PBS job: exit $?"
a=$(tail -1 "$d/q/metrics.jsonl" | sed 's/,"tokens_per_s".*//') b=$(tail -1 "$d/u/metrics.jsonl" | sed 's/,"tokens_per_s".*//')
[ "$a" = "$b" ] || fail "the resubmitted job ends with $a, the uninterrupted one with $b"
# the cap: a job that has used up MPILM_MAX_REQUEUES resubmissions stops with 75, saying so
rm -f "$d/qsub.calls"
{ cat "$d/tiny.ini"; printf '[run]\ndir = %s/c\n' "$d"; } | sed 's/^steps = 2/steps = 400/' > "$d/pbs.ini"
preempted_job "$d/p5.log" MPILM_RESUBMITS=2 MPILM_MAX_REQUEUES=2; rc=$?
[ $rc -eq 75 ] || { tail -5 "$d/p5.log"; fail "pbs.sh at the resubmission cap exited $rc (expected 75)"; }
[ ! -e "$d/qsub.calls" ] || fail "pbs.sh resubmitted beyond MPILM_MAX_REQUEUES=2: $(tr '\n' ' ' < "$d/qsub.calls")"
grep -q "not resubmitting: 2 resubmissions reached MPILM_MAX_REQUEUES=2" "$d/p5.log" || fail "no message at the resubmission cap"
echo "launch/pbs.sh: threads = ncpus / ranks per host (8 / 2 = 4) or ompthreads; plain run exits 0; SIGTERM to the job's processes -> checkpoint -> exit 75 -> qsub of itself with its resources and MPILM_RESUBMITS=1, which resumes exactly; the cap stops resubmission"

# launch/slurm.sbatch outside Slurm (SLURM_* variables; stand-in srun without a pmix
# plugin, scontrol, mpirun printing its arguments): the fallback to mpirun, said;
# the lead check against a measured step and save that do not fit
mkdir -p "$d/slurmbin" "$d/lead"
printf '#!/bin/sh\n[ "$1" = --mpi=list ] && { echo "MPI plugin types are..."; echo "	none"; echo "	pmi2"; exit 0; }\necho "srun $*"\n' > "$d/slurmbin/srun"
printf '#!/bin/sh\nexit 0\n' > "$d/slurmbin/scontrol"
cp "$d/stub/mpirun" "$d/slurmbin/mpirun"
chmod +x "$d/slurmbin/srun" "$d/slurmbin/scontrol"
echo '{"step":2,"loss":4.1,"step_s":50.0000,"elapsed_s":100.000}' > "$d/lead/metrics.jsonl"
echo "[rank 0] checkpoint step 2 written to $d/lead in 20.00 s (0 MB, 1 MB/s)" > "$d/lead.launch-20260101T000000.log"
out=$(env PATH="$d/slurmbin:$PATH" SLURM_SUBMIT_DIR="$repo" SLURM_JOB_ID=7 SLURM_NTASKS=2 SLURM_CPUS_PER_TASK=1 \
  MPILM_CONFIG="$d/tiny.ini" MPILM_ARGS="--set run.dir=$d/lead" MPILM_SIGNAL_LEAD=60 bash launch/slurm.sbatch 2>&1)
echo "$out" | grep -q "srun has no pmix plugin (srun --mpi=list: .*pmi2.*); launching with mpirun instead" ||
  fail "slurm.sbatch without srun's pmix plugin does not say it falls back to mpirun: $out"
echo "$out" | grep -q -- "mpirun -np 2 --map-by slot:PE=1 --bind-to core .*train --config $d/tiny.ini --resume auto --set run.dir=$d/lead" ||
  fail "slurm.sbatch's mpirun fallback: $out"
echo "$out" | grep -q "warning: preemption lead 60 s: a step (50.0000 s) and a checkpoint save (20.00 s), as last measured, do NOT fit" ||
  fail "slurm.sbatch does not warn that a 50 s step and a 20 s save exceed a 60 s lead: $out"
echo "launch/slurm.sbatch: falls back to mpirun (bound) when srun has no pmix, saying so; warns when the measured step and save exceed MPILM_SIGNAL_LEAD"

# launch/demo.sh in a scratch copy, configurations cut to 4 steps
mkdir -p "$d/demo/datasets"
cp -r launch "$d/demo/" && cp -r datasets/sample "$d/demo/datasets/"
for f in "$d"/demo/launch/configs/demo-*.ini; do
  sed -i 's/^steps = .*/steps = 4/; s/^every_steps = .*/every_steps = 2/; s/^warmup_steps = .*/warmup_steps = 1/' "$f"
done
(cd "$d/demo" && sh launch/demo.sh > "$d/demo.log" 2>&1) || { tail -20 "$d/demo.log"; fail "demo.sh failed"; }
grep -q "not done" "$d/demo.log" && { grep "not done" "$d/demo.log"; fail "demo.sh left steps undone"; }
for f in datasets/demo-gpt datasets/demo-bert checkpoints/demo-gpt/latest checkpoints/demo-bert/latest \
  checkpoints/demo-gpt/eval.json checkpoints/demo-bert/eval.json checkpoints/demo-gpt/hf/model.safetensors \
  checkpoints/demo-bert/hf/model.safetensors checkpoints/demo-gpt/metrics.jsonl; do
  [ -e "$d/demo/$f" ] || fail "demo.sh did not make $f"
done
for s in version config "prep gpt" "prep bert" inspect "train gpt" "train bert" "eval gpt" "export bert" generate; do
  grep -q "done: $s\$" "$d/demo.log" || fail "demo.sh summary lacks \"done: $s\""
done
echo "launch/demo.sh: every step done, its files where it says"
echo "launch_scripts: ok"

#!/usr/bin/env python3
"""Mutation checks: the suite must fail on code that is wrong on purpose.

    tests/mutate.py [--list] [--keep] [NAME...]        (make mutate)

tests/mutations.ini lists small source mutations, each with the tests that must
catch it. In a scratch copy of the working tree (the tracked files; ../shared
linked beside it when present) this builds everything once, then for each
mutation: replaces the `from` text of `file` (it must occur exactly once) by
`to`, rebuilds, runs the listed tests until one fails, and restores the file.
A mutation no listed test fails SURVIVED; the run ends with the kill ratio and
exits 1 if any survived or a listed test fails on the unmutated code (checked
first: a test that always fails would kill everything).

Test forms: unit:NAME (the Criterion binary build/tests/unit/NAME), mpi:NAME:NP
(build/tests/mpi/NAME under mpirun -np NP), sh:PATH (a shell test; exit 77,
skipped, counts as not failing). In from/to, \\n stands for a newline.
Environment: MUTATE_DIR (the scratch directory; default a new temporary one),
JOBS (make -j, default 2).
"""
import configparser
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_btl_vader_single_copy_mechanism="none", OMP_NUM_THREADS="1", BLIS_NUM_THREADS="1",
           BUILD="build", MPILM="./mpilm", MPIRUN="mpirun --oversubscribe --bind-to none")
TIMEOUT = 900


def load(path):
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str
    with open(path, encoding="utf-8") as f:
        cp.read_file(f)
    muts = []
    for name in cp.sections():
        sec = cp[name]
        for key in ("about", "file", "from", "to", "tests"):
            if key not in sec:
                sys.exit(f"{path}: [{name}] lacks '{key}'")
        unescape = lambda s: s.replace("\\n", "\n")
        muts.append(dict(name=name, about=sec["about"], file=sec["file"], old=unescape(sec["from"]),
                         new=unescape(sec["to"]), tests=sec["tests"].split()))
    return muts


def same_file(a, b):
    if not os.path.isfile(b) or os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as x, open(b, "rb") as y:
        return x.read() == y.read()


def copy_tree(dst):
    """The tracked files into dst; only those whose content differs are written
    (with a new mtime, so make rebuilds what depends on them: a reused MUTATE_DIR
    may hold objects built from a mutated file)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = os.path.join(ROOT, rel)
        if not os.path.isfile(src):
            continue  # deleted in the working tree
        os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
        if not same_file(src, os.path.join(dst, rel)):
            shutil.copy(src, os.path.join(dst, rel))
    shared = os.path.join(os.path.dirname(ROOT), "shared")
    link = os.path.join(os.path.dirname(dst), "shared")
    if os.path.isdir(shared) and not os.path.exists(link):
        os.symlink(shared, link)


def build(work, jobs):
    r = subprocess.run(["make", f"-j{jobs}", "tests"], cwd=work, env=ENV, capture_output=True, text=True)
    return r.returncode == 0, r.stdout + r.stderr


def run_test(work, spec):
    """Returns (failed, what happened)."""
    kind, _, rest = spec.partition(":")
    if kind == "unit":
        cmd = [f"build/tests/unit/{rest}", "--jobs", "1"]
    elif kind == "mpi":
        name, _, np = rest.partition(":")
        cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", np or "2", f"build/tests/mpi/{name}"]
    elif kind == "sh":
        cmd = ["sh", rest]
    else:
        sys.exit(f"mutations: unknown test form '{spec}' (unit:, mpi:, sh:)")
    t0 = time.time()
    try:
        r = subprocess.run(cmd, cwd=work, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
        code = r.returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
    failed = code not in (0, 77)
    return failed, f"{spec}: exit {code} in {time.time() - t0:.0f} s"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    muts = load(os.path.join(ROOT, "tests", "mutations.ini"))
    if "--list" in sys.argv:
        for m in muts:
            print(f"{m['name']}: {m['about']} ({m['file']}; caught by {' '.join(m['tests'])})")
        return 0
    if args:
        unknown = set(args) - {m["name"] for m in muts}
        if unknown:
            sys.exit(f"mutate: no mutation named {', '.join(sorted(unknown))} (--list shows them)")
        muts = [m for m in muts if m["name"] in args]
    jobs = os.environ.get("JOBS", "2")
    top = os.environ.get("MUTATE_DIR") or tempfile.mkdtemp(prefix="mpilm-mutate-")
    work = os.path.join(top, "mpilm")
    print(f"mutate: scratch copy in {work}")
    copy_tree(work)
    ok, log = build(work, jobs)
    if not ok:
        print(log[-3000:])
        sys.exit("mutate: the unmutated copy does not build")
    # every listed test must pass on the unmutated code
    status = 0
    for spec in sorted({t for m in muts for t in m["tests"]}):
        failed, what = run_test(work, spec)
        print(f"  baseline {what}")
        if failed:
            print(f"mutate: {spec} fails without any mutation: it cannot tell a mutation apart")
            status = 1
    if status:
        return status
    killed, survived = [], []
    for m in muts:
        path = os.path.join(work, m["file"])
        with open(path, encoding="utf-8") as f:
            text = f.read()
        n = text.count(m["old"])
        if n != 1:
            print(f"mutate: [{m['name']}] 'from' occurs {n} times in {m['file']} (expected once): update "
                  f"tests/mutations.ini")
            survived.append(m["name"] + " (stale)")
            continue
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(m["old"], m["new"]))
        try:
            ok, log = build(work, jobs)
            if not ok:  # a mutation that does not compile proves nothing
                print(log[-2000:])
                print(f"MUTANT {m['name']}: does not build (fix the mutation)")
                survived.append(m["name"] + " (no build)")
                continue
            caught = None
            for spec in m["tests"]:
                failed, what = run_test(work, spec)
                if failed:
                    caught = what
                    break
            if caught:
                killed.append(m["name"])
                print(f"KILLED   {m['name']}: {m['about']} -- by {caught}")
            else:
                survived.append(m["name"])
                print(f"SURVIVED {m['name']}: {m['about']} -- no test of {' '.join(m['tests'])} failed")
        finally:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    build(work, jobs)  # objects of the restored files, for a reused MUTATE_DIR
    total = len(killed) + len(survived)
    print(f"mutate: {len(killed)} of {total} mutations killed" +
          (f"; survived: {', '.join(survived)}" if survived else ""))
    if "--keep" not in sys.argv and not os.environ.get("MUTATE_DIR"):
        shutil.rmtree(top, ignore_errors=True)
    return 0 if not survived else 1


if __name__ == "__main__":
    sys.exit(main())

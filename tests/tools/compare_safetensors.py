#!/usr/bin/env python3
"""Compares the tensors of two safetensors files value by value.

    compare_safetensors.py [--tol T] [--rel] [--round-bf16] A B

A and B are safetensors files; A may also be an mpilm checkpoint (a run
directory, whose `latest` is read, or a step-NNNNNNN directory: the parameter
section of its shards, docs/formats.md). Both must hold the same tensor names
with the same shapes (F32, or BF16 widened exactly). Prints the largest
absolute difference over all tensors (and the tensor where it occurs) and exits
1 when it exceeds T (default 0: bit for bit). With --rel, T is relative to each
tensor's largest magnitude. --round-bf16 rounds A's values to bfloat16 (to
nearest, ties to even) first: B must then be A's bf16 export. Everything is
parsed here with json, struct and array (no numpy, not with mpilm's readers),
so the check is independent of the code that wrote the files.
"""
import array
import json
import os
import struct
import sys


def read(path):
    """{name: (dtype, shape, list of floats)}"""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        raw = data[base + b:base + e]
        if t["dtype"] == "F32":
            values = array.array("f", raw)
        elif t["dtype"] == "BF16":
            # the 16 bits are the upper half of a binary32: widening is exact
            half = array.array("H", raw)
            values = array.array("f", struct.pack(f"<{len(half)}I", *(h << 16 for h in half)))
        else:
            sys.exit(f"compare_safetensors: {path}: {name} has dtype {t['dtype']} (expected F32 or BF16)")
        if sys.byteorder != "little":
            values.byteswap()
        count = 1
        for s in t["shape"]:
            count *= s
        if count != len(values):
            sys.exit(f"compare_safetensors: {path}: {name} has {len(values)} values for shape {t['shape']}")
        out[name] = (t["dtype"], t["shape"], values)
    return out


def read_checkpoint(path):
    """{name: ("F32", shape, floats)} from a checkpoint's manifest and shards."""
    if os.path.exists(os.path.join(path, "latest")):
        path = os.path.join(path, "latest")
    with open(os.path.join(path, "manifest.json")) as f:
        manifest = json.load(f)
    flat = array.array("f")
    for entry in manifest["files"]:
        if entry["begin"] != len(flat):
            sys.exit(f"compare_safetensors: {path}: {entry['name']} begins at {entry['begin']}, expected {len(flat)}")
        params = entry["sections"]["params"]
        with open(os.path.join(path, entry["name"]), "rb") as f:
            f.seek(params["offset"])
            raw = f.read(params["bytes"])
        flat.frombytes(raw)
    if sys.byteorder != "little":
        flat.byteswap()
    return {t["name"]: ("F32", t["shape"], flat[t["offset"]:t["offset"] + t["numel"]]) for t in manifest["tensors"]}


def round_bf16(values):
    """float32 -> bfloat16 to nearest, ties to even, widened back (NaNs kept NaN)."""
    bits = array.array("I", values.tobytes())
    out = array.array("I", bits)
    for i, u in enumerate(bits):
        if (u & 0x7F800000) == 0x7F800000 and (u & 0x7FFFFF):
            out[i] = (u | 0x400000) & 0xFFFF0000
        else:
            out[i] = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFFFFFF) & 0xFFFF0000
    return array.array("f", out.tobytes())


def main(argv):
    tol, rel, to_bf16 = 0.0, False, False
    while argv and argv[0].startswith("--"):
        if argv[0] == "--tol":
            tol = float(argv[1])
            argv = argv[2:]
        elif argv[0] == "--rel":
            rel = True
            argv = argv[1:]
        elif argv[0] == "--round-bf16":
            to_bf16 = True
            argv = argv[1:]
        else:
            sys.exit(f"compare_safetensors: unknown option {argv[0]}")
    if len(argv) != 2:
        sys.exit(__doc__)
    a = read_checkpoint(argv[0]) if os.path.isdir(argv[0]) else read(argv[0])
    b = read(argv[1])
    if to_bf16:
        a = {name: ("BF16", shape, round_bf16(v)) for name, (_, shape, v) in a.items()}
    if sorted(a) != sorted(b):
        print(f"compare_safetensors: tensor names differ: only in A {sorted(set(a) - set(b))}, "
              f"only in B {sorted(set(b) - set(a))}")
        return 1
    worst, where, total = 0.0, "", 0
    for name in sorted(a):
        (da, sa, va), (db, sb, vb) = a[name], b[name]
        if da != db or sa != sb:
            print(f"compare_safetensors: {name}: {da} {sa} vs {db} {sb}")
            return 1
        scale = max(max(abs(x) for x in va), 1e-30) if rel else 1.0
        d = max((abs(x - y) for x, y in zip(va, vb)), default=0.0) / scale
        if d != d:
            d = float("inf")  # a NaN on one side only
        total += len(va)
        if d > worst or not where:
            worst, where = d, name
    kind = "relative" if rel else "absolute"
    print(f"compare_safetensors: {len(a)} tensors, {total} values: largest {kind} difference {worst:.3g} "
          f"({where}), tolerance {tol:.3g}")
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

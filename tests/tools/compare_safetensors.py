#!/usr/bin/env python3
"""Compares the tensors of two safetensors files value by value.

    compare_safetensors.py [--tol T] [--rel] A.safetensors B.safetensors

Both files must hold the same tensor names with the same dtypes and shapes
(F32, or BF16 widened exactly). Prints the largest absolute difference over
all tensors (and the tensor where it occurs) and exits 1 when it exceeds T
(default 0: bit for bit). With --rel, T is relative to each tensor's largest
magnitude. The files are parsed here with json, struct and array (no numpy,
not with mpilm's reader), so the check is independent of the code that wrote
them.
"""
import array
import json
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


def main(argv):
    tol, rel = 0.0, False
    while argv and argv[0].startswith("--"):
        if argv[0] == "--tol":
            tol = float(argv[1])
            argv = argv[2:]
        elif argv[0] == "--rel":
            rel = True
            argv = argv[1:]
        else:
            sys.exit(f"compare_safetensors: unknown option {argv[0]}")
    if len(argv) != 2:
        sys.exit(__doc__)
    a, b = read(argv[0]), read(argv[1])
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

#!/usr/bin/env python3
"""Checks an `mpilm export --format hf` directory with PyTorch's own modules.

    check_export.py [--fp32 FP32_HF_DIR] [--same-weights] HF_DIR LOGITS.safetensors
    check_export.py --rounded FP32_HF_DIR IMPORTED_FP32_HF_DIR
    check_export.py --greedy HF_DIR GENERATE.json

HF_DIR holds model.safetensors + config.json as mpilm exported them; LOGITS is
what tests/tools/logits_of wrote from a checkpoint (a batch and mpilm's logits,
computed in fp32). The safetensors files are parsed here with json + numpy (not
with mpilm's reader and not with the safetensors package; BF16 is widened by a
bit shift), the tensors are loaded by their Hugging Face names into the
torch.nn model of torch_models.py, and its logits must equal mpilm's:
err = max|a-b| / (max|b| + 1e-6) <= tol, with b mpilm's logits. config.json's
torch_dtype must name the file's dtype (float32 / bfloat16).

tol = TOL_FP32 = 3e-6 (the two implementations' fp32 difference, measured <=
3.8e-7 on export_torch.sh's models) for an F32 export, and for a BF16 export
with --same-weights (LOGITS came from a checkpoint holding exactly the file's
weights, such as `mpilm import` of it). A GPT whose GELU is erf instead of tanh
is 4.7e-5 off there: caught.

tol for a BF16 export against the checkpoint it was exported from (the fp32
master weights): each weight was rounded to nearest even, a relative error of
at most u = 2^-8. To first order each rounded weight stage on the way from the
ids to a logit adds at most u relative to its output (unit condition), so
tol = D * u with D the stages in series: GPT 6L + 3 (the embedding sum; per
block LN, QKV, attention projection, LN, FFN in, FFN out; ln_f; the tied head),
Llama 6L + 3 (the embedding; per block RMSNorm, q|k|v, o_proj, RMSNorm,
gate|up, down_proj; the final RMSNorm; lm_head),
BERT 6L + 5 (embedding sum, its LN, 6 per block, transform, its LN, tied
decoder; for the NSP logits 6L + 4: pooler and classifier after the blocks).

--fp32 FP32_HF_DIR (an fp32 export of the same checkpoint), for a BF16 export:
also requires every BF16 tensor to equal torch's own .bfloat16() of the fp32
one bit for bit, and prints e_round, the logit change the rounding causes in
torch alone (fp32 vs bf16 weights).

--rounded: every tensor of IMPORTED_FP32_HF_DIR (an fp32 export of `mpilm
import` of a bf16 export) equals torch's .bfloat16() of FP32_HF_DIR's, widened
back to fp32, bit for bit: import widens exactly.

--greedy: GENERATE.json is `mpilm generate --temperature 0 --json` on the
checkpoint HF_DIR was exported from ({"prompt_ids": [...], "ids": [...]}); the
torch.nn model decodes greedily from the prompt, the whole prefix through the
model at every step (no cache), and must pick mpilm's token at every step. A
step where torch's two best logits are within TIE (1e-5 of the largest |logit|)
may pick either (the implementations' rounding differs by ~4e-7): it is
counted, and decoding goes on with mpilm's token.

Exit 0 = all checks pass.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import Shape, build_model  # noqa: E402

DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "F16": np.float16}
U_BF16 = 2.0 ** -8   # unit roundoff of bfloat16 (8 significant bits, round to nearest even)
TOL_FP32 = 3e-6
TIE = 1e-5


def widen_bf16(raw):
    """BF16 bytes -> float32, exactly: the 16 bits are the upper half of a binary32."""
    return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path):
    """{name: numpy array} (BF16 widened to float32) and {name: dtype string}."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out, dtypes = {}, {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        raw = data[base + b:base + e]
        a = widen_bf16(raw) if t["dtype"] == "BF16" else np.frombuffer(raw, dtype=DTYPES[t["dtype"]])
        out[name] = a.reshape(t["shape"]).copy()
        dtypes[name] = t["dtype"]
    return out, dtypes


def read_export(hf_dir):
    with open(os.path.join(hf_dir, "config.json")) as f:
        cfg = json.load(f)
    tensors, dtypes = read_safetensors(os.path.join(hf_dir, "model.safetensors"))
    return cfg, tensors, dtypes


def shape_of(cfg, seq_len):
    if cfg["model_type"] == "llama":
        return Shape("llama", cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"],
                     cfg["intermediate_size"], seq_len, cfg["max_position_embeddings"], cfg["vocab_size"],
                     n_kv_head=cfg.get("num_key_value_heads", cfg["num_attention_heads"]),
                     norm_eps=cfg["rms_norm_eps"], rope_theta=cfg.get("rope_theta", 10000.0))
    if cfg["model_type"] == "bert":
        return Shape("bert", cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"],
                     cfg["intermediate_size"], seq_len, cfg["max_position_embeddings"], cfg["vocab_size"])
    return Shape("gpt", cfg["n_layer"], cfg["n_embd"], cfg["n_head"], cfg.get("n_inner") or 4 * cfg["n_embd"],
                 seq_len, cfg["n_positions"], cfg["vocab_size"])


def depth(cfg, key):
    """Rounded weight stages in series from the ids to output `key` (see the module docstring)."""
    if cfg["model_type"] == "gpt2":
        return 6 * cfg["n_layer"] + 3
    if cfg["model_type"] == "llama":   # embedding; per block RMSNorm, q|k|v, o, RMSNorm, gate|up, down; norm, head
        return 6 * cfg["num_hidden_layers"] + 3
    return 6 * cfg["num_hidden_layers"] + (5 if key == "logits" else 4)


def err(a, b, scale):
    return float(np.max(np.abs(a - b)) / scale)


def run_torch(cfg, tensors, ref):
    ids = torch.from_numpy(ref["input_ids"])
    model = build_model(shape_of(cfg, ids.shape[1]))
    model.train()  # dropout is 0; the training path avoids torch's fused inference kernels
    with torch.no_grad():
        for name, param, view in model.hf_layout():
            if name == "lm_head.weight" and cfg.get("tie_word_embeddings") and name not in tensors:
                name = "model.embed_tokens.weight"   # a tied Llama stores the embedding once
            if name not in tensors:
                sys.exit(f"check_export: {name} missing from model.safetensors")
            view(param).copy_(torch.from_numpy(tensors[name]))
        batch = {"input_ids": ids, "token_type_ids": torch.from_numpy(ref["token_type_ids"]),
                 "attention_mask": torch.from_numpy(ref["attention_mask"]),
                 "labels": torch.full(ids.shape, -100), "next_sentence_label": torch.zeros(ids.shape[0])}
        out = model(batch)
    res = {"logits": out["logits"].numpy()}
    if "nsp_logits" in ref:
        res["nsp_logits"] = out["nsp_logits"].numpy()
    return res


def torch_bf16(a):
    """torch's own fp32 -> bf16 rounding of a float32 array, widened back to float32."""
    return torch.from_numpy(a).bfloat16().float().numpy()


def same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def check_rounding(tensors, dtypes, fp32_tensors):
    """Every tensor of the bf16 export is torch's .bfloat16() of the fp32 export's."""
    ok = True
    if sorted(tensors) != sorted(fp32_tensors):
        print("check_export: the bf16 and fp32 exports hold different tensors")
        return False
    for name, a in fp32_tensors.items():
        if dtypes[name] != "BF16" or not same_bits(tensors[name], torch_bf16(a)):
            print(f"check_export: {name} ({dtypes[name]}) is not torch's .bfloat16() of the fp32 export")
            ok = False
    print(f"check_export: {len(tensors)} BF16 tensors equal torch's .bfloat16() of the fp32 export bit for bit: "
          f"{'yes' if ok else 'NO'}")
    return ok


def check_rounded(fp32_dir, imported_dir):
    _, orig, _ = read_export(fp32_dir)
    _, back, dtypes = read_export(imported_dir)
    ok = sorted(orig) == sorted(back)
    n = 0
    for name, a in orig.items():
        if not ok:
            break
        want = torch_bf16(a)
        if dtypes[name] != "F32" or not same_bits(back[name], want):
            print(f"check_export: imported {name} differs from the bf16 rounding of the original")
            ok = False
        n += a.size
    print(f"check_export: imported parameters ({n}) equal the bf16-rounded originals bit for bit: "
          f"{'yes' if ok else 'NO'}")
    return ok


def check_greedy(hf_dir, generated_path):
    cfg, tensors, _ = read_export(hf_dir)
    with open(generated_path) as f:
        gen = json.load(f)
    ids, ties = list(gen["prompt_ids"]), 0
    for step, want in enumerate(gen["ids"]):
        batch = np.array([ids], dtype=np.int32)
        ref = {"input_ids": batch, "token_type_ids": np.zeros_like(batch), "attention_mask": np.ones_like(batch)}
        logits = run_torch(cfg, tensors, ref)["logits"][0, -1]
        best = int(np.argmax(logits))
        if best != want:
            gap = float(logits[best] - logits[want]) / (float(np.max(np.abs(logits))) + 1e-6)
            if gap > TIE:
                print(f"check_export: greedy step {step}: torch picks {best}, mpilm picked {want} "
                      f"(relative gap {gap:.2e})")
                return False
            ties += 1
        ids.append(want)
    print(f"check_export: {cfg['model_type']} greedy decoding of {len(gen['ids'])} tokens after a prompt of "
          f"{len(gen['prompt_ids'])}: torch (no cache) picks mpilm's tokens (kv cache) at every step "
          f"({ties} near-ties)")
    return True


def main():
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "--rounded":
        sys.exit(0 if check_rounded(args[1], args[2]) else 1)
    if len(args) == 3 and args[0] == "--greedy":
        sys.exit(0 if check_greedy(args[1], args[2]) else 1)
    fp32_dir, same_weights = None, False
    while args and args[0].startswith("--"):
        if args[0] == "--fp32" and len(args) > 1:
            fp32_dir, args = args[1], args[2:]
        elif args[0] == "--same-weights":
            same_weights, args = True, args[1:]
        else:
            sys.exit(__doc__)
    if len(args) != 2:
        sys.exit(__doc__)
    hf_dir, logits_path = args
    cfg, tensors, dtypes = read_export(hf_dir)
    ref, _ = read_safetensors(logits_path)
    kinds = set(dtypes.values())
    if len(kinds) != 1 or not kinds <= {"F32", "BF16"}:
        sys.exit(f"check_export: model.safetensors holds {sorted(kinds)} (expected all F32 or all BF16)")
    bf16 = kinds == {"BF16"}
    want_dtype = "bfloat16" if bf16 else "float32"
    ok = cfg.get("torch_dtype") == want_dtype
    if not ok:
        print(f"check_export: config.json torch_dtype is {cfg.get('torch_dtype')!r} (expected {want_dtype!r})")
    out = run_torch(cfg, tensors, ref)
    fp32_out = None
    if bf16 and fp32_dir:
        _, fp32_tensors, _ = read_export(fp32_dir)
        ok = check_rounding(tensors, dtypes, fp32_tensors) and ok
        fp32_out = run_torch(cfg, fp32_tensors, ref)
    for k, got in out.items():
        scale = float(np.max(np.abs(ref[k]))) + 1e-6
        e = err(got, ref[k], scale)
        if not bf16 or same_weights:
            what = ", bf16 weights on both sides" if bf16 else ""
            print(f"check_export: {cfg['model_type']} {k}{what}: relative error {e:.2e} (tolerance {TOL_FP32:.0e})")
            ok = ok and e <= TOL_FP32
            continue
        tol = depth(cfg, k) * U_BF16
        print(f"check_export: {cfg['model_type']} {k}, bf16 weights: relative error {e:.2e} against mpilm's fp32 "
              f"logits (tolerance D*u = {depth(cfg, k)}*2^-8 = {tol:.2e})")
        ok = ok and e <= tol
        if fp32_out is not None:
            print(f"check_export: {cfg['model_type']} {k}: of which the rounding itself (torch, fp32 vs bf16 "
                  f"weights) {err(got, fp32_out[k], scale):.2e}, torch vs mpilm on fp32 weights "
                  f"{err(fp32_out[k], ref[k], scale):.2e}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

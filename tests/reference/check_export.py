#!/usr/bin/env python3
"""Checks an `mpilm export --format hf` directory with PyTorch's own modules.

    check_export.py HF_DIR LOGITS.safetensors

HF_DIR holds model.safetensors + config.json as mpilm exported them; LOGITS is
what tests/tools/logits_of wrote from the same checkpoint (a batch and mpilm's
logits). The safetensors files are parsed here with json + numpy (not with
mpilm's reader and not with the safetensors package), the tensors are loaded by
their Hugging Face names into the torch.nn model of torch_models.py, and its
logits must equal mpilm's: max|a-b| / (max|b| + 1e-6) <= 1e-4. Exit 0 = match.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import Shape, build_model  # noqa: E402

DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64}


def read_safetensors(path):
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
        out[name] = np.frombuffer(data[base + b:base + e], dtype=DTYPES[t["dtype"]]).reshape(t["shape"]).copy()
    return out


def shape_of(cfg, seq_len):
    if cfg["model_type"] == "bert":
        return Shape("bert", cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"],
                     cfg["intermediate_size"], seq_len, cfg["max_position_embeddings"], cfg["vocab_size"])
    return Shape("gpt", cfg["n_layer"], cfg["n_embd"], cfg["n_head"], cfg.get("n_inner") or 4 * cfg["n_embd"],
                 seq_len, cfg["n_positions"], cfg["vocab_size"])


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-6))


def main():
    hf_dir, logits_path = sys.argv[1], sys.argv[2]
    with open(os.path.join(hf_dir, "config.json")) as f:
        cfg = json.load(f)
    tensors = read_safetensors(os.path.join(hf_dir, "model.safetensors"))
    ref = read_safetensors(logits_path)
    ids = torch.from_numpy(ref["input_ids"])
    model = build_model(shape_of(cfg, ids.shape[1]))
    model.train()  # dropout is 0; the training path avoids torch's fused inference kernels
    with torch.no_grad():
        for name, param, view in model.hf_layout():
            if name not in tensors:
                sys.exit(f"check_export: {name} missing from model.safetensors")
            view(param).copy_(torch.from_numpy(tensors[name]))
        batch = {"input_ids": ids, "token_type_ids": torch.from_numpy(ref["token_type_ids"]),
                 "attention_mask": torch.from_numpy(ref["attention_mask"]),
                 "labels": torch.full(ids.shape, -100), "next_sentence_label": torch.zeros(ids.shape[0])}
        out = model(batch)
    errors = {"logits": rel_err(ref["logits"], out["logits"].numpy())}
    if "nsp_logits" in ref:
        errors["nsp_logits"] = rel_err(ref["nsp_logits"], out["nsp_logits"].numpy())
    for k, e in errors.items():
        print(f"check_export: {cfg['model_type']} {k}: relative error {e:.2e}")
    sys.exit(0 if all(e <= 1e-4 for e in errors.values()) else 1)


if __name__ == "__main__":
    main()

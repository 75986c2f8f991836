#!/usr/bin/env python3
"""Checks `mpilm generate --json` of a BERT checkpoint (fill-mask) with PyTorch.

    check_fill_mask.py HF_DIR PROMPT_IDS FILL.json

HF_DIR is `mpilm export --format hf` of the checkpoint (fp32), PROMPT_IDS the
prompt's ids as `mpilm tokenize` gives them (comma-separated, without [CLS] and
[SEP]), FILL.json what `mpilm generate --json` printed: one array per [MASK]
of {token, id, probability}, the top k by probability.

The model is torch_models.py's BERT (PyTorch's own modules) with the exported
tensors (read by check_export.py, not by mpilm); the input is [CLS] PROMPT
[SEP] (ids from HF_DIR/vocab.txt), token types 0, no padding. For every
[MASK] position, in order:
- each listed id's probability equals torch's softmax of the MLM logits
  within tol = 2 * TOL_FP32 * max|logit| * p + 1e-7: the two fp32 logit
  vectors differ by at most TOL_FP32 * max|logit| (check_export.py), and a
  logit error e moves log p by at most 2e;
- the token is the vocabulary's token of that id;
- the list is a top k: in torch's order up to near ties (no unlisted id is
  more probable than a listed one by more than tol), and k entries.
Exit 0 = all checks pass.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_export import TOL_FP32, read_export, shape_of  # noqa: E402
from torch_models import build_model  # noqa: E402


def mlm_logits(cfg, tensors, ids):
    model = build_model(shape_of(cfg, len(ids)))
    model.train()  # dropout is 0; the plain path, as check_export.py
    with torch.no_grad():
        for name, param, view in model.hf_layout():
            view(param).copy_(torch.from_numpy(tensors[name]))
        x = torch.tensor([ids])
        batch = {"input_ids": x, "token_type_ids": torch.zeros_like(x), "attention_mask": torch.ones_like(x),
                 "labels": torch.full(x.shape, -100), "next_sentence_label": torch.zeros(1)}
        return model(batch)["logits"][0].double().numpy()


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    hf_dir, prompt_ids, fill_path = sys.argv[1:]
    cfg, tensors, _ = read_export(hf_dir)
    with open(os.path.join(hf_dir, "vocab.txt"), encoding="utf-8") as f:
        vocab = f.read().split("\n")
    ids = [vocab.index("[CLS]")] + [int(x) for x in prompt_ids.split(",") if x] + [vocab.index("[SEP]")]
    with open(fill_path) as f:
        fills = json.load(f)
    logits = mlm_logits(cfg, tensors, ids)
    masks = [t for t, i in enumerate(ids) if i == vocab.index("[MASK]")]
    ok = len(masks) == len(fills)
    if not ok:
        print(f"check_fill_mask: {len(masks)} [MASK]s in the input, {len(fills)} lists in the output")
    worst = 0.0
    for t, fill in zip(masks, fills):
        z = logits[t]
        p = np.exp(z - z.max())
        p /= p.sum()
        scale = 2 * TOL_FP32 * float(np.abs(z).max())
        listed = set()
        for entry in fill:
            i, got = entry["id"], entry["probability"]
            tol = scale * p[i] + 1e-7
            worst = max(worst, abs(got - p[i]) / (scale * p[i] + 1e-7))
            if abs(got - p[i]) > tol or entry["token"] != vocab[i]:
                print(f"check_fill_mask: position {t}: {entry} but torch gives p = {p[i]:.9g} for "
                      f"{vocab[i]!r} (tolerance {tol:.2e})")
                ok = False
            listed.add(i)
        lowest = min(e["probability"] for e in fill)
        others = [j for j in np.argsort(-p) if j not in listed][:1]
        if others and p[others[0]] > lowest + scale * lowest + 1e-7:
            print(f"check_fill_mask: position {t}: {vocab[others[0]]!r} (p = {p[others[0]]:.9g}) is not listed but "
                  f"beats a listed fill (p = {lowest:.9g})")
            ok = False
        print(f"check_fill_mask: position {t}: top {len(fill)} of torch's softmax "
              f"{[vocab[j] for j in np.argsort(-p)[:len(fill)]]}, mpilm {[e['token'] for e in fill]}")
    print(f"check_fill_mask: {len(fills)} masks, largest error {worst:.2f} of the tolerance "
          f"(2 * {TOL_FP32:.0e} * max|logit| * p + 1e-7)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

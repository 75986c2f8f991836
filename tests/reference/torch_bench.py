#!/usr/bin/env python3
"""PyTorch peer of `make bench`: training-step speed of the models of mpilm's
bench configs, built from torch.nn modules (torch_models.py), random tokens,
AdamW with clipping, dropout as in mpilm's default training config.

    torch_bench.py MODEL [--threads N] [--warmup N] [--steps M] [--dropout P]

A step is zero_grad, forward, backward, clip_grad_norm_ and AdamW.step; N
warm-up steps are not timed. Prints one JSON line:
{"model", "threads", "tokens_per_s", "step_ms_median", "peak_rss_mib", ...}
with tokens_per_s = micro_batch * seq_len / median step time.
Thread counts of BLAS libraries are read from the environment when they load,
so the caller should also set OMP_NUM_THREADS / BLIS_NUM_THREADS (bench_torch_env.sh does).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import Shape, adamw, build_model, init_like_hf  # noqa: E402

# name: (shape without dropout, micro-batch)
MODELS = {
    "gpt-mini": (Shape("gpt", 4, 256, 4, 1024, seq_len=256, max_positions=256, vocab_size=8192), 8),
    "bert-mini": (Shape("bert", 4, 256, 4, 1024, seq_len=128, max_positions=128, vocab_size=8192), 16),
    "gpt2-small": (Shape("gpt", 12, 768, 12, 3072, seq_len=256, max_positions=1024, vocab_size=50257), 4),
    "bert-base": (Shape("bert", 12, 768, 12, 3072, seq_len=128, max_positions=512, vocab_size=30522), 8),
}


def random_batch(s, batch, g):
    """Random tokens; BERT: MLM labels at 15% of positions, random NSP labels, two segments."""
    ids = torch.randint(0, s.vocab_size, (batch, s.seq_len), generator=g)
    if s.family == "gpt":
        labels = torch.roll(ids, -1, dims=1)
        labels[:, -1] = -100
        return {"input_ids": ids, "labels": labels}
    masked = torch.rand(batch, s.seq_len, generator=g) < 0.15
    segment_b = torch.arange(s.seq_len).expand(batch, -1) >= s.seq_len // 2
    return {"input_ids": ids, "token_type_ids": segment_b.long(),
            "attention_mask": torch.ones(batch, s.seq_len, dtype=torch.long),
            "labels": torch.where(masked, ids, torch.full_like(ids, -100)),
            "next_sentence_label": torch.randint(0, 2, (batch,), generator=g)}


def train_step(model, opt, batch, clip):
    opt.zero_grad(set_to_none=True)
    loss = model(batch)["loss"]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return float(loss)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--micro-batch", type=int, default=0, help="default: the config's")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    shape, micro_batch = MODELS[a.model]
    shape = Shape(**{**shape.__dict__, "dropout": a.dropout})
    micro_batch = a.micro_batch or micro_batch
    model = build_model(shape)
    init_like_hf(model, torch.Generator().manual_seed(a.seed))
    model.train()
    opt = adamw(model, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)
    batch = random_batch(shape, micro_batch, torch.Generator().manual_seed(a.seed))

    times, losses = [], []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        losses.append(train_step(model, opt, batch, clip=1.0))
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(json.dumps({
        "model": a.model, "threads": a.threads,
        "tokens_per_s": round(micro_batch * shape.seq_len / median, 1),
        "step_ms_median": round(1e3 * median, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "micro_batch": micro_batch, "seq_len": shape.seq_len, "dropout": a.dropout,
        "warmup": a.warmup, "steps": a.steps, "params": sum(p.numel() for p in model.parameters()),
        "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4), "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()

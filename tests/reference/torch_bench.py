#!/usr/bin/env python3
"""PyTorch peer of `make bench`: training-step speed of the models of mpilm's
bench configs, built from torch.nn modules (torch_models.py), random tokens,
AdamW with clipping, dropout as in mpilm's default training config.

    torch_bench.py MODEL [--threads N] [--warmup N] [--steps M] [--dropout P]
                         [--precision fp32|bf16]

A step is zero_grad, forward, backward, clip_grad_norm_ and AdamW.step; N
warm-up steps are not timed. Prints one JSON line:
{"model", "precision", "threads", "tokens_per_s", "step_ms_median", "peak_rss_mib", ...}
with tokens_per_s = micro_batch * seq_len / median step time.

--precision bf16 is PyTorch's mixed precision on CPU, as its documentation
recommends it: torch.autocast("cpu", dtype=torch.bfloat16) around the forward
pass and the loss only, backward outside it, the weights (master copies) and
AdamW's state in fp32. Autocast runs the linear layers and the attention's
matmuls in bf16 (oneDNN), the rest in fp32. The first step checks that it
really did -- the logits, every nn.Linear's and every attention block's output
are bf16 inside autocast, parameters and gradients fp32 after backward -- and
the script exits with status 1 and says why otherwise: a peer that silently ran
fp32 would make a bf16 comparison look better than it is. fp32 checks that
nothing is bf16. "gemm_gflops" is the rate of this torch's own 1024^3 matmul
in the run's precision and thread count (a slow bf16 figure there means torch
fell back from oneDNN to its reference kernel).
torch 1.13's CPU autocast leaves layer_norm alone and its CPU kernel refuses a
bf16 input with fp32 weights (BERT's MLM head feeds its LayerNorm straight
from a linear); under bf16 a pre-hook on each nn.LayerNorm hands it the input
in fp32, as later torch versions do and as mpilm does (only GEMMs in bf16).
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
    "llama-mini": (Shape("llama", 4, 256, 4, 688, seq_len=256, max_positions=256, vocab_size=8192, n_kv_head=2), 8),
    "llama-small": (Shape("llama", 12, 768, 12, 2048, seq_len=256, max_positions=1024, vocab_size=32000,
                          n_kv_head=4), 4),
}


def random_batch(s, batch, g):
    """Random tokens; BERT: MLM labels at 15% of positions, random NSP labels, two segments."""
    ids = torch.randint(0, s.vocab_size, (batch, s.seq_len), generator=g)
    if s.family in ("gpt", "llama"):
        labels = torch.roll(ids, -1, dims=1)
        labels[:, -1] = -100
        return {"input_ids": ids, "labels": labels}
    masked = torch.rand(batch, s.seq_len, generator=g) < 0.15
    segment_b = torch.arange(s.seq_len).expand(batch, -1) >= s.seq_len // 2
    return {"input_ids": ids, "token_type_ids": segment_b.long(),
            "attention_mask": torch.ones(batch, s.seq_len, dtype=torch.long),
            "labels": torch.where(masked, ids, torch.full_like(ids, -100)),
            "next_sentence_label": torch.randint(0, 2, (batch,), generator=g)}


class PrecisionError(Exception):
    pass


def layer_norms_in_fp32(model):
    """Pre-hooks casting a bf16 input of every nn.LayerNorm to fp32 (see the module comment)."""
    def to_fp32(module, inputs):
        return tuple(t.float() if torch.is_tensor(t) and t.dtype == torch.bfloat16 else t for t in inputs)
    for m in model.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.register_forward_pre_hook(to_fp32)


def train_step(model, opt, batch, clip, autocast_bf16, check=None):
    """One step; with autocast_bf16 the forward pass and the loss run under
    CPU autocast (bf16), backward and the optimizer outside it. check(out),
    when given, runs inside the autocast region on the model's outputs."""
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16):
        out = model(batch)
        loss = out["loss"]
        if check:
            check(out)
    del out  # the logits must not outlive the step (peak RSS)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return float(loss)


def checked_step(model, opt, batch, clip, precision):
    """train_step with the checks that the precision asked for is the one run:
    forward hooks on every nn.Linear and attention block record their output
    dtypes for this one step; logits, parameters and gradients are checked."""
    want = torch.bfloat16 if precision == "bf16" else torch.float32
    seen = []

    def hook(module, inputs, output):
        t = output[0] if isinstance(output, tuple) else output
        seen.append((type(module).__name__, t.dtype))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.MultiheadAttention))]
    state = {}

    def check(out):
        state["autocast"] = torch.is_autocast_cpu_enabled()
        state["autocast_dtype"] = torch.get_autocast_cpu_dtype()
        state["logits"] = out["logits"].dtype

    try:
        loss = train_step(model, opt, batch, clip, precision == "bf16", check)
    finally:
        for h in handles:
            h.remove()
    problems = []
    if precision == "bf16" and not (state["autocast"] and state["autocast_dtype"] == torch.bfloat16):
        problems.append(f"autocast not active inside the region (enabled={state['autocast']}, "
                        f"dtype={state['autocast_dtype']})")
    if state["logits"] != want:
        problems.append(f"logits are {state['logits']}, expected {want}")
    if not seen:
        problems.append("no nn.Linear or attention block ran (hooks saw nothing)")
    wrong = sorted({f"{name} -> {dt}" for name, dt in seen if dt != want})
    if wrong:
        problems.append(f"layer outputs not {want}: {', '.join(wrong)}")
    not_fp32 = sorted({f"{n}: {p.dtype}/{None if p.grad is None else p.grad.dtype}"
                       for n, p in model.named_parameters()
                       if p.dtype != torch.float32 or (p.grad is not None and p.grad.dtype != torch.float32)})
    if not_fp32:
        problems.append(f"parameters or gradients not fp32: {', '.join(not_fp32[:5])}")
    if problems:
        raise PrecisionError(f"--precision {precision} did not take effect: " + "; ".join(problems))
    return loss, len(seen)


def gemm_gflops(precision, n=1024, reps=3):
    """This torch's own square matmul rate in the run's dtype (best of reps after a warm-up)."""
    dt = torch.bfloat16 if precision == "bf16" else torch.float32
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g).to(dt), torch.randn(n, n, generator=g).to(dt)
    best = float("inf")
    for r in range(reps + 1):
        t0 = time.perf_counter()
        c = a @ b
        dt_s = time.perf_counter() - t0
        if r:
            best = min(best, dt_s)
    if c.dtype != dt:
        raise PrecisionError(f"a {dt} matmul returned {c.dtype}")
    return round(2.0 * n ** 3 / best * 1e-9, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--micro-batch", type=int, default=0, help="default: the config's")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="bf16: autocast(cpu, bfloat16) around forward and loss, fp32 weights and AdamW")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    shape, micro_batch = MODELS[a.model]
    shape = Shape(**{**shape.__dict__, "dropout": a.dropout})
    micro_batch = a.micro_batch or micro_batch
    if a.precision == "bf16" and not torch.backends.mkldnn.is_available():
        sys.exit("torch_bench: --precision bf16 needs a torch built with oneDNN (mkldnn); this one is not")
    model = build_model(shape)
    init_like_hf(model, torch.Generator().manual_seed(a.seed))
    model.train()
    if a.precision == "bf16":
        layer_norms_in_fp32(model)
    opt = adamw(model, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)
    batch = random_batch(shape, micro_batch, torch.Generator().manual_seed(a.seed))

    try:
        # the first warm-up step (never timed) is the checked one
        loss, checked_layers = checked_step(model, opt, batch, 1.0, a.precision)
        losses = [loss]
        gflops = gemm_gflops(a.precision)
    except PrecisionError as e:
        sys.exit(f"torch_bench {a.model}: {e}")
    times = []
    for step in range(1, max(a.warmup, 1) + a.steps):
        t0 = time.perf_counter()
        losses.append(train_step(model, opt, batch, 1.0, a.precision == "bf16"))
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(json.dumps({
        "model": a.model, "precision": a.precision, "threads": a.threads,
        "tokens_per_s": round(micro_batch * shape.seq_len / median, 1),
        "step_ms_median": round(1e3 * median, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "micro_batch": micro_batch, "seq_len": shape.seq_len, "dropout": a.dropout,
        "warmup": a.warmup, "steps": a.steps, "params": sum(p.numel() for p in model.parameters()),
        "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4), "torch": torch.__version__,
        "checked_layers": checked_layers, "gemm_gflops": gflops,
    }))


if __name__ == "__main__":
    main()

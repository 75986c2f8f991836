#!/usr/bin/env python3
"""Builds the PyTorch reference fixtures of mpilm (see README.md here).

A tiny BERT and a tiny GPT are made of PyTorch's own modules (torch_models.py: nn.Embedding,
nn.TransformerEncoderLayer, nn.Linear, nn.LayerNorm, F.cross_entropy), run on
one fixed batch, differentiated, and trained for 3 AdamW steps. Their weights,
gradients and outputs are stored under Hugging Face names and layouts (the
model contract) in fixtures/{bert,gpt}-tiny.safetensors. Before writing, the
script recomputes the forward pass, the gradients and the optimizer steps in
plain tensor ops from the Hugging Face-named tensors, following the contract
formula by formula, and asserts they agree with the module path: that proves
the name/layout mapping and the contract at once.

It also writes fixtures/{bert,gpt}-tiny-bf16.safetensors: the same models,
weights, batch and 3 AdamW steps with the forward pass and the loss under
torch.autocast("cpu", bfloat16) (fp32 master weights and optimizer), for
mpilm's mixed precision (tests/unit/test_model_bf16.c).

And fixtures/llama-kernels.safetensors: RMSNorm, rotary position embeddings and
SwiGLU with their gradients (llama_kernels(), for tests/unit/test_tensor_llama.c).

And fixtures/llama-tiny.safetensors (and llama-tiny-bf16.safetensors, under autocast): a
tiny Llama (torch_models.Llama, transformers' modeling_llama conventions) checked as the two
above against llama_plain.

And fixtures/python-tiny.safetensors: one tensor of every dtype
mpilm reads, laid out as the Hugging Face writer lays files out, for the C
reader's format test.

Run with a Python that has torch (1.13 tested): python3 make_fixtures.py [OUT_DIR]
"""
import contextlib
import json
import math
import os
import struct
import sys

import torch

from torch_models import Shape, adamw, build_model

L, C, NH, FF, T, P, V, B = 2, 32, 4, 128, 16, 20, 97, 3
HS = C // NH
# the tiny Llama: grouped-query attention (2 query heads per kv head), its own gated hidden
# size, and RoPE base and RMSNorm eps away from their defaults so that the keys matter
LLAMA = dict(n_kv_head=2, d_ff=48, norm_eps=1e-6, rope_theta=1000.0)
OPT = dict(lr=1e-2, min_lr=1e-3, warmup_steps=2, total_steps=5, decay="cosine",
           beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, clip=0.5)
STEPS = 3
TOL = 1e-6
STEP3_TOL = 1e-4      # measured 2.5e-5 (BERT)
STEP3_MEAN_TOL = 1e-5  # measured 6.0e-7 (BERT)
ZERO_GRAD = 1e-6
U = 2.0 ** -8     # bf16's unit roundoff: 8 significant bits, round to nearest even

# ---- safetensors, written by hand following the format -------------------------

DTYPE_NAMES = {torch.float32: "F32", torch.float64: "F64", torch.int32: "I32", torch.int64: "I64",
               torch.float16: "F16", torch.bfloat16: "BF16", torch.uint8: "U8"}
# The Hugging Face writer orders tensors by dtype (its enum order, descending), then name.
HF_DTYPE_RANK = {"U8": 1, "F16": 7, "BF16": 8, "I32": 9, "F32": 11, "F64": 12, "I64": 13}


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def save_safetensors(path, tensors, metadata, hf_order=False):
    """tensors: list of (name, tensor). Header = compact JSON, '__metadata__'
    first, padded with spaces to a multiple of 8 bytes; data in list order
    (or the Hugging Face writer's order with hf_order)."""
    assert sys.byteorder == "little"
    items = list(tensors)
    if hf_order:
        items.sort(key=lambda kv: (-HF_DTYPE_RANK[DTYPE_NAMES[kv[1].dtype]], kv[0]))
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in items:
        assert name not in header, name
        blob = tensor_bytes(t)
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def python_tiny():
    """One tensor of each dtype, with values the C test knows exactly."""
    return [
        ("weight", torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.25 - 1),
        ("empty", torch.zeros(0, 3)),
        ("half", torch.tensor([1.0, -2.5, 65504.0, 2.0 ** -14, 2.0 ** -24, 0.0, 0.333251953125],
                              dtype=torch.float16)),
        ("bfloat", torch.tensor([1.0, -3.140625, 2.0 ** 100, -(2.0 ** -130)], dtype=torch.bfloat16)),
        ("double", torch.tensor([[0.1, -1e-3]], dtype=torch.float64)),
        ("ids", torch.tensor([1, -2, 2 ** 40], dtype=torch.int64)),
        ("count", torch.tensor(7, dtype=torch.int32)),
        ("bytes", torch.tensor([0, 127, 255], dtype=torch.uint8)),
    ]


# ---- the two models ------------------------------------------------------------------

def tiny_shape(family):
    if family == "llama":
        return Shape(family, n_layer=L, d_model=C, n_head=NH, seq_len=T, max_positions=P, vocab_size=V, **LLAMA)
    return Shape(family, n_layer=L, d_model=C, n_head=NH, d_ff=FF, seq_len=T, max_positions=P, vocab_size=V)


# Initial weights. The fp32 fixtures use LARGE: matrices and embeddings N(0, 0.2) put
# pre-activations at ~1, where GELU, softmax and tanh are far from linear (at GPT-2's
# N(0, 0.02) every nonlinearity is nearly linear and a GPT with erf GELU in place of tanh
# moved the logits by 4e-6 only, inside any sane tolerance; see gelu_swap_effect).
# The autocast fixtures keep STANDARD, the scale test_model_bf16.c's bounds were derived at.
LARGE = dict(matrix=0.2, gain=0.2, bias=0.1)
STANDARD = dict(matrix=0.02, gain=0.1, bias=0.05)


def init_parameters(model, seed, scale):
    """Matrices and embeddings N(0, scale.matrix); LayerNorm weights 1 + scale.gain N(0,1);
    every bias non-zero, scale.bias N(0,1), so that every parameter matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.dim() >= 2:
                p.copy_(scale["matrix"] * noise)
            elif name.endswith("weight"):
                p.copy_(1 + scale["gain"] * noise)
            else:
                p.copy_(scale["bias"] * noise)


def hf_tensors(layout, of):
    """HF name -> tensor in HF layout, taking `of(parameter)` (the weight or its grad)."""
    return {name: view(of(p)).detach().clone().contiguous() for name, p, view in layout}


def check_layout_covers(model, layout):
    params = {id(p): p for p in model.parameters()}
    assert {id(p) for _, p, _ in layout} == set(params), "the HF layout misses a module parameter"
    assert sum(view(p).numel() for _, p, view in layout) == sum(p.numel() for p in params.values())


# ---- the batches ---------------------------------------------------------------------

def bert_batch(g):
    lengths = [T, 11, 7]
    ids = torch.randint(5, V, (B, T), generator=g)
    pos = torch.arange(T).expand(B, T)
    length = torch.tensor(lengths).unsqueeze(1)
    real = pos < length
    segment_b = (pos >= length // 2) & real
    chosen = (torch.rand(B, T, generator=g) < 0.15) & real & (pos > 0)
    chosen[torch.arange(B), length.squeeze(1) - 2] = True     # at least one label per sequence
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    ids = torch.where(chosen, torch.full_like(ids, 4), ids)   # [MASK]
    ids = torch.where(real, ids, torch.zeros_like(ids))
    return {"input_ids": ids.int(), "token_type_ids": segment_b.int(), "attention_mask": real.int(),
            "labels": labels.int(), "next_sentence_label": torch.tensor([0, 1, 0], dtype=torch.int32)}


def gpt_batch(g):
    ids = torch.randint(0, V, (B, T), generator=g)
    labels = torch.full((B, T), -100, dtype=torch.int64)
    labels[:, :T - 1] = ids[:, 1:]
    labels[2, 3:7] = -100
    return {"input_ids": ids.int(), "labels": labels.int()}


# ---- the contract in plain tensor ops, on HF-named tensors --------------------------

def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_erf_plain(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def gelu_tanh_plain(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def attention(q, k, v, masked):
    """q, k, v [B,T,C]; masked [B or 1, 1, T, T] True where the weight must be 0."""
    heads = lambda t: t.reshape(B, T, NH, HS).transpose(1, 2)
    scores = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(HS)
    probs = torch.softmax(scores.masked_fill(masked, float("-inf")), dim=-1)
    return (probs @ heads(v)).transpose(1, 2).reshape(B, T, C)


def cross_entropy_plain(logits, labels):
    logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).long()
    keep = labels != -100
    nll = torch.logsumexp(logits[keep], -1) - logits[keep].gather(1, labels[keep].unsqueeze(1)).squeeze(1)
    return nll.mean()


def bert_plain(w, batch):
    ids, tt = batch["input_ids"].long(), batch["token_type_ids"].long()
    e = "bert.embeddings."
    x = w[e + "word_embeddings.weight"][ids] + w[e + "position_embeddings.weight"][:T] + \
        w[e + "token_type_embeddings.weight"][tt]
    x = layer_norm(x, w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"], 1e-12)
    masked = (batch["attention_mask"] == 0)[:, None, None, :]
    lin = lambda x, n: x @ w[n + ".weight"].t() + w[n + ".bias"]
    ln = lambda x, n: layer_norm(x, w[n + ".weight"], w[n + ".bias"], 1e-12)
    for i in range(L):
        p = f"bert.encoder.layer.{i}."
        a = attention(lin(x, p + "attention.self.query"), lin(x, p + "attention.self.key"),
                      lin(x, p + "attention.self.value"), masked)
        x = ln(x + lin(a, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        x = ln(x + lin(gelu_erf_plain(lin(x, p + "intermediate.dense")), p + "output.dense"), p + "output.LayerNorm")
    pooled = torch.tanh(lin(x[:, 0], "bert.pooler.dense"))
    h = ln(gelu_erf_plain(lin(x, "cls.predictions.transform.dense")), "cls.predictions.transform.LayerNorm")
    logits = h @ w[e + "word_embeddings.weight"].t() + w["cls.predictions.bias"]
    nsp_logits = lin(pooled, "cls.seq_relationship")
    mlm = cross_entropy_plain(logits, batch["labels"])
    nsp = cross_entropy_plain(nsp_logits, batch["next_sentence_label"])
    return {"logits": logits, "nsp_logits": nsp_logits, "mlm_loss": mlm, "nsp_loss": nsp, "loss": mlm + nsp}


def gpt_plain(w, batch):
    x = w["transformer.wte.weight"][batch["input_ids"].long()] + w["transformer.wpe.weight"][:T]
    masked = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)[None, None]
    conv = lambda x, n: x @ w[n + ".weight"] + w[n + ".bias"]
    ln = lambda x, n: layer_norm(x, w[n + ".weight"], w[n + ".bias"], 1e-5)
    for i in range(L):
        p = f"transformer.h.{i}."
        q, k, v = conv(ln(x, p + "ln_1"), p + "attn.c_attn").split(C, dim=-1)
        x = x + conv(attention(q, k, v, masked), p + "attn.c_proj")
        x = x + conv(gelu_tanh_plain(conv(ln(x, p + "ln_2"), p + "mlp.c_fc")), p + "mlp.c_proj")
    logits = ln(x, "transformer.ln_f") @ w["transformer.wte.weight"].t()
    lm = cross_entropy_plain(logits, batch["labels"])
    return {"logits": logits, "lm_loss": lm, "loss": lm}


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def llama_plain(w, batch):
    """LlamaForCausalLM on HF tensors, written from transformers' formulas: RoPE as complex
    rotation of the pairs (i, i + hs/2), kv heads indexed by query head // group."""
    nkv, ff, eps, theta = LLAMA["n_kv_head"], LLAMA["d_ff"], LLAMA["norm_eps"], LLAMA["rope_theta"]
    inv_freq = 1.0 / (theta ** (torch.arange(0, HS, 2, dtype=torch.int64).float() / HS))
    angle = torch.arange(T, dtype=torch.float32)[:, None] * inv_freq[None, :]
    rot = torch.polar(torch.ones_like(angle), angle)   # (T, HS/2)

    def rope(t, heads):   # t (B, T, heads*HS): pair (i, i + HS/2) as a + ib, times e^(i angle)
        t = t.reshape(B, T, heads, 2, HS // 2)
        z = torch.complex(t[..., 0, :], t[..., 1, :]) * rot[None, :, None, :]
        return torch.stack((z.real, z.imag), dim=3).reshape(B, T, heads * HS)

    x = w["model.embed_tokens.weight"][batch["input_ids"].long()]
    masked = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)[None, None]
    lin = lambda x, n: x @ w[n + ".weight"].t()
    for i in range(L):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = rope(lin(h, p + "self_attn.q_proj"), NH)
        k, v = rope(lin(h, p + "self_attn.k_proj"), nkv), lin(h, p + "self_attn.v_proj")
        group = [j // (NH // nkv) for j in range(NH)]
        expand = lambda t: t.reshape(B, T, nkv, HS)[:, :, group].reshape(B, T, C)
        x = x + lin(attention(q, expand(k), expand(v), masked), p + "self_attn.o_proj")
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate, up = lin(h, p + "mlp.gate_proj"), lin(h, p + "mlp.up_proj")
        x = x + lin(gate * torch.sigmoid(gate) * up, p + "mlp.down_proj")
    logits = lin(rms_norm(x, w["model.norm.weight"], eps), "lm_head")
    lm = cross_entropy_plain(logits, batch["labels"])
    return {"logits": logits, "lm_loss": lm, "loss": lm}


def schedule_lr(step):
    o = OPT
    if o["warmup_steps"] > 0 and step <= o["warmup_steps"]:
        return o["lr"] * step / o["warmup_steps"]
    p = min(max((step - o["warmup_steps"]) / max(1, o["total_steps"] - o["warmup_steps"]), 0.0), 1.0)
    if o["decay"] == "linear":
        return o["lr"] + (o["min_lr"] - o["lr"]) * p
    return o["min_lr"] + (o["lr"] - o["min_lr"]) * 0.5 * (1 + math.cos(math.pi * p))


def contract_steps(plain, w0, batch):
    """STEPS optimizer steps as MODEL-CONTRACT.md states them, on HF tensors."""
    o = OPT
    w = {n: t.clone().requires_grad_(True) for n, t in w0.items()}
    m = {n: torch.zeros_like(t) for n, t in w0.items()}
    v = {n: torch.zeros_like(t) for n, t in w0.items()}
    record = {"loss_steps": [], "grad_norm_steps": [], "lr_steps": [], "grads": None}
    for step in range(1, STEPS + 1):
        for t in w.values():
            t.grad = None
        loss = plain(w, batch)["loss"]
        loss.backward()
        grads = {n: t.grad.clone() for n, t in w.items()}
        record["grads"] = record["grads"] or grads
        norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads.values()))
        coef = o["clip"] / (norm + 1e-6)
        lr = schedule_lr(step)
        record["loss_steps"].append(float(loss))
        record["grad_norm_steps"].append(norm)
        record["lr_steps"].append(lr)
        with torch.no_grad():
            for n, p in w.items():
                g = grads[n] * coef if coef < 1 else grads[n]
                if p.dim() == 2:
                    p.mul_(1 - lr * o["weight_decay"])
                m[n] = o["beta1"] * m[n] + (1 - o["beta1"]) * g
                v[n] = o["beta2"] * v[n] + (1 - o["beta2"]) * g * g
                bc1, bc2 = 1 - o["beta1"] ** step, 1 - o["beta2"] ** step
                p.sub_((lr / bc1) * m[n] / (v[n].sqrt() / math.sqrt(bc2) + o["eps"]))
    record["params"] = {n: t.detach() for n, t in w.items()}
    return record


# ---- torch's path: modules, autograd, clip_grad_norm_, AdamW -------------------------

def torch_steps(model, batch, autocast=False):
    """autocast: the forward pass and the loss under torch.autocast("cpu", bfloat16)
    (backward follows the forward's dtypes); master weights and AdamW stay fp32."""
    o = OPT
    opt = adamw(model, o["lr"], (o["beta1"], o["beta2"]), o["eps"], o["weight_decay"])
    layout = model.hf_layout()
    record = {"loss_steps": [], "grad_norm_steps": [], "lr_steps": []}
    for step in range(1, STEPS + 1):
        lr = schedule_lr(step)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
            out = model(batch)
        out["loss"].backward()
        if step == 1:
            record["outputs"] = {k: t.detach().float().clone() for k, t in out.items()}
            record["grads"] = hf_tensors(layout, lambda p: p.grad)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), o["clip"])
        record["loss_steps"].append(float(out["loss"]))
        record["grad_norm_steps"].append(float(norm))
        record["lr_steps"].append(lr)
        opt.step()
    record["params"] = hf_tensors(layout, lambda p: p)
    return record


def assert_close(what, a, b, tol=TOL, scale=None):
    """max|a-b| / (max|b| + 1e-6) <= tol (relative, as the C tests measure); with scale,
    max|a-b| / scale."""
    den = scale if scale is not None else float(b.double().abs().max()) + 1e-6
    diff = float((a.double() - b.double()).abs().max()) / den if a.numel() else 0.0
    assert a.shape == b.shape and diff <= tol, f"{what}: module path and contract differ by {diff:g} (tol {tol:g})"
    return diff


def setup(family, autocast=False, scale=None):
    """The model with its initial weights (by default LARGE in fp32, STANDARD under autocast),
    and the batch (the same for fp32 and autocast)."""
    torch.manual_seed(0)
    model = build_model(tiny_shape(family))
    scale = scale or (STANDARD if autocast else LARGE)
    init_parameters(model, seed={"bert": 1, "gpt": 2, "llama": 5}[family], scale=scale)
    model.train()   # dropout is 0; training mode keeps torch off its fused inference path
    if autocast and family == "bert":
        # torch 1.13's CPU LayerNorm refuses a bf16 input with fp32 weights, and its CPU autocast
        # does not cast layer_norm: the MLM transform's LayerNorm, the one fed a bf16 tensor
        # (GELU's output), runs in fp32 instead; the decoder's autocast rounds its output to bf16.
        model.transform_ln.register_forward_pre_hook(lambda module, args: (args[0].float(),))
    batch_of = bert_batch if family == "bert" else gpt_batch
    return model, batch_of(torch.Generator().manual_seed({"bert": 3, "gpt": 4, "llama": 6}[family]))


def step3_close(n, ref, con, grad_scale, mean=False):
    """The weights after the steps, module path against contract. Adam moves an element by
    about lr whatever its gradient's size, so an element whose exact gradient is zero (BERT's
    key biases, the key third of GPT's c_attn.bias; |g| <= ZERO_GRAD of the largest) steps
    either way on rounding noise: those are held to |dp| <= 2 sum(lr) only. The others:
    max|a-b| / max|b| <= STEP3_TOL, or with mean, the mean |a-b| / max|b| (returned)."""
    a, b = ref["params"][n].double(), con["params"][n].double()
    live = ref["grads"][n].abs() > ZERO_GRAD * grad_scale
    bound = 2 * sum(ref["lr_steps"])
    assert float((a - b)[~live].abs().max()) <= bound if (~live).any() else True, f"step3.{n}: beyond 2 sum(lr)"
    d = (a - b)[live].abs()
    if not d.numel():
        return 0.0
    if mean:
        return float(d.mean() / b.abs().max())
    return assert_close("step3." + n, a[live], b[live], STEP3_TOL, float(b.abs().max()) + 1e-6)


def build(family, out_dir):
    model, batch = setup(family)
    plain = {"bert": bert_plain, "gpt": gpt_plain, "llama": llama_plain}[family]
    layout = model.hf_layout()
    check_layout_covers(model, layout)
    w0 = hf_tensors(layout, lambda p: p)

    ref = torch_steps(model, batch)
    con = contract_steps(plain, w0, batch)
    # a zero gradient's rounding noise (zero_grad) is measured on the scale of all gradients
    grad_scale = max(float(g.abs().max()) for g in ref["grads"].values())
    with torch.no_grad():
        plain_out = plain(w0, batch)
    # Relative: outputs 1e-6; gradients 1e-5 (the two paths sum in different orders: measured
    # 1.2e-6); Adam divides by sqrt(v): rounding-level gradient differences grow, hence 1e-4
    # after the steps (measured 2.5e-5) and 1e-5 for their losses and norms.
    diffs = (max(assert_close(k, ref["outputs"][k], plain_out[k]) for k in ref["outputs"]),
             max(assert_close("grad." + n, ref["grads"][n], con["grads"][n], 1e-5,
                          grad_scale if zero_grad(n) else None) for n in w0),
             max(step3_close(n, ref, con, grad_scale) for n in w0))
    mean3 = max(step3_close(n, ref, con, grad_scale, mean=True) for n in w0)
    for key in ("loss_steps", "grad_norm_steps", "lr_steps"):
        assert_close(key, torch.tensor(ref[key]), torch.tensor(con[key]), 1e-5)
    assert min(ref["grad_norm_steps"]) > OPT["clip"], "clipping must be active in every step"
    for n in w0:
        assert float(ref["grads"][n].abs().max()) > 0, f"grad.{n} is zero: the parameter does not matter"

    tensors = [("param." + n, t) for n, t in w0.items()]
    tensors += list(batch.items())
    tensors += [(k, t.reshape(1) if t.dim() == 0 else t) for k, t in ref["outputs"].items()]
    tensors += [("grad." + n, t) for n, t in ref["grads"].items()]
    for key in ("loss_steps", "grad_norm_steps", "lr_steps"):
        tensors.append((key, torch.tensor(ref[key], dtype=torch.float32)))
    tensors += [("step3." + n, t) for n, t in ref["params"].items()]
    path = os.path.join(out_dir, f"{family}-tiny.safetensors")
    save_safetensors(path, tensors, metadata(family))
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes; loss {ref['loss_steps']}, "
          f"grad norm {ref['grad_norm_steps']}; module path vs contract (max|a-b|/max|b|): forward %.1e, "
          f"grad %.1e, step3 %.1e (mean %.1e)" % (diffs + (mean3,)))
    return ref


def rel_diff(a, b):
    """max|a-b| / max|b|, in units of bf16's unit roundoff U."""
    return float((a.double() - b.double()).abs().max() / b.double().abs().max()) / U


def zero_grad(name):
    """BERT's key biases: their exact gradient is 0 (softmax ignores a shift shared by all keys),
    so what is stored is rounding noise, not comparable relative to its own max."""
    return name.endswith("attention.self.key.bias")


def build_bf16(family, out_dir):
    """The same model, weights, batch and optimizer as build(), with the forward pass and the loss
    under torch.autocast("cpu", bfloat16): fixtures/FAMILY-tiny-bf16.safetensors, with its own
    initial weights param.* (STANDARD scale)."""
    model, batch = setup(family, autocast=True)
    w0 = hf_tensors(model.hf_layout(), lambda p: p)
    ref = torch_steps(model, batch, autocast=True)
    ref32 = torch_steps(*setup(family, autocast=False, scale=STANDARD))
    logits = ref["outputs"]["logits"]
    assert torch.equal(logits, logits.bfloat16().float()), "autocast did not compute the logits in bf16"
    tensors = [("param." + n, t) for n, t in w0.items()]
    tensors += list(batch.items())
    tensors += [(k, t.reshape(1) if t.dim() == 0 else t) for k, t in ref["outputs"].items()]
    tensors += [("grad." + n, t) for n, t in ref["grads"].items()]
    for key in ("loss_steps", "grad_norm_steps", "lr_steps"):
        tensors.append((key, torch.tensor(ref[key], dtype=torch.float32)))
    tensors += [("step3." + n, t) for n, t in ref["params"].items()]
    path = os.path.join(out_dir, f"{family}-tiny-bf16.safetensors")
    save_safetensors(path, tensors, dict(metadata(family), precision="bf16-autocast"))
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes; loss {ref['loss_steps']}; "
          f"vs fp32 (max|a-b|/max|b|, units of 2^-8): logits %.2f, grad %.2f (key biases aside), step3 %.1f" %
          (rel_diff(logits, ref32["outputs"]["logits"]),
           max(rel_diff(ref["grads"][n], ref32["grads"][n]) for n in ref["grads"] if not zero_grad(n)),
           max(rel_diff(ref["params"][n], ref32["params"][n]) for n in ref["params"])))
    return ref


def metadata(family):
    meta = {"family": family, "n_layer": L, "d_model": C, "n_head": NH, "d_ff": FF, "seq_len": T,
            "max_positions": P, "vocab_size": V, "batch": B, "positions": "learned",
            "norm": "post" if family == "bert" else "pre", "dropout": 0.0, "steps": STEPS}
    if family == "llama":
        meta.update(LLAMA, positions="rope")
    meta.update(OPT)
    meta["torch"] = torch.__version__
    return {k: str(v) for k, v in meta.items()}


def gelu_swap_effect(ref32, ref_bf16):
    """How far GPT moves if its tanh GELU becomes the erf one (the mutation the bf16 test
    should catch), in U of max|reference|: printed, for tests/reference/README.md."""
    out = []
    for autocast, ref in ((False, ref32), (True, ref_bf16)):
        model, batch = setup("gpt", autocast)
        for layer in model.blocks.layers:
            layer.activation = torch.nn.functional.gelu
        swapped = torch_steps(model, batch, autocast)
        out.append((rel_diff(swapped["outputs"]["logits"], ref["outputs"]["logits"]),
                    max(rel_diff(swapped["grads"][n], ref["grads"][n]) for n in ref["grads"]),
                    max(rel_diff(swapped["params"][n], ref["params"][n]) for n in ref["params"])))
    print("GPT with erf GELU instead of tanh (max|a-b|/max|b|, units of 2^-8): fp32 logits %.4f, grad %.4f, "
          "step3 %.4f; autocast logits %.2f, grad %.2f, step3 %.1f" % (out[0] + out[1]))


# ---- Llama-style kernels (issue: the Llama decoder family) -------------------------

def llama_kernels():
    """RMSNorm, rotary position embeddings (transformers' rotate-half form, the
    cos/sin table made in float32 as LlamaRotaryEmbedding makes it) and SwiGLU,
    forward and backward against an upstream gradient R, in float64 except
    the rotary table: fixtures/llama-kernels.safetensors."""
    g = torch.Generator().manual_seed(20)
    out = []

    def rnd(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift

    def grads(fn, *inputs):
        xs = [x.clone().requires_grad_(True) for x in inputs]
        y = fn(*xs)
        r = rnd(*y.shape)
        (y * r).sum().backward()
        return y.detach(), r, [x.grad for x in xs]

    # RMSNorm: y = x / sqrt(mean(x^2) + eps) * w
    eps = 1e-5
    x, w = rnd(6, 16, scale=2.0, shift=0.3), rnd(16, scale=0.5, shift=1.0)
    y, r, (dx, dw) = grads(lambda a, b: a * torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + eps) * b, x, w)
    out += [("rms.x", x), ("rms.w", w), ("rms.y", y), ("rms.r", r), ("rms.dx", dx), ("rms.dw", dw)]
    # RoPE on (B, T, H, hs) at positions 0..T-1 (rows of H*hs), theta 10000
    B, T, H, hs, theta = 2, 5, 3, 8, 10000.0
    inv_freq = 1.0 / (theta ** (torch.arange(0, hs, 2, dtype=torch.int64).float() / hs))
    freqs = torch.arange(T, dtype=torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().double(), emb.sin().double()

    def rope(a):
        a1, a2 = a[..., :hs // 2], a[..., hs // 2:]
        return a * cos[None, :, None, :] + torch.cat((-a2, a1), dim=-1) * sin[None, :, None, :]
    x = rnd(B, T, H, hs)
    y, r, (dx,) = grads(rope, x)
    out += [("rope.cos", cos.float()), ("rope.sin", sin.float()), ("rope.x", x), ("rope.y", y), ("rope.r", r),
            ("rope.dx", dx)]
    # SwiGLU: y = silu(gate) * up
    gate, up = rnd(6, 10, scale=2.0), rnd(6, 10)
    y, r, (dg, du) = grads(lambda a, b: torch.nn.functional.silu(a) * b, gate, up)
    out += [("swiglu.gate", gate), ("swiglu.up", up), ("swiglu.y", y), ("swiglu.r", r), ("swiglu.dgate", dg),
            ("swiglu.dup", du)]
    return [(n, t.float()) for n, t in out], {"rms_eps": str(eps), "rope_theta": str(theta), "rope_heads": str(H),
                                             "rope_head_dim": str(hs)}


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                  "fixtures")
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    save_safetensors(os.path.join(out_dir, "python-tiny.safetensors"), python_tiny(), {"format": "pt"},
                     hf_order=True)
    refs = {}
    for family in ("bert", "gpt"):
        refs[family] = (build(family, out_dir), build_bf16(family, out_dir))
    gelu_swap_effect(*refs["gpt"])
    tensors, meta = llama_kernels()
    save_safetensors(os.path.join(out_dir, "llama-kernels.safetensors"), tensors, meta)
    build("llama", out_dir)
    build_bf16("llama", out_dir)


if __name__ == "__main__":
    main()

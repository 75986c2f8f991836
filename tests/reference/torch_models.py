"""mpilm's BERT, GPT and Llama made of PyTorch's own modules, any size.

Used by make_fixtures.py (tiny models whose outputs the C code must match) and
by torch_bench.py (the PyTorch peer of `make bench`). Each model can list its
parameters under Hugging Face names and layouts (hf_layout), as the model
contract requires.

Dropout: nn.TransformerEncoderLayer applies it to the attention probabilities,
after the attention output projection, after the FFN output (as Hugging Face
does) and also between the FFN's two linears (Hugging Face does not); the
models add it after the embeddings.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Shape:
    family: str          # "bert" | "gpt" | "llama"
    n_layer: int
    d_model: int
    n_head: int
    d_ff: int
    seq_len: int
    max_positions: int
    vocab_size: int
    dropout: float = 0.0
    n_kv_head: int = 0   # llama: key/value heads (0: n_head)
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def linear_layout(name, linear, weight_view):
    return [(name + ".weight", linear.weight, weight_view), (name + ".bias", linear.bias, lambda t: t)]


def norm_layout(name, norm):
    return [(name + ".weight", norm.weight, lambda t: t), (name + ".bias", norm.bias, lambda t: t)]


def encoder(s, activation, eps, norm_first):
    layer = nn.TransformerEncoderLayer(s.d_model, s.n_head, s.d_ff, dropout=s.dropout, activation=activation,
                                       layer_norm_eps=eps, batch_first=True, norm_first=norm_first)
    return nn.TransformerEncoder(layer, s.n_layer, enable_nested_tensor=False)


class Bert(nn.Module):
    """BertForPreTraining: post-LN, exact GELU, MLM head tied to the word embeddings, NSP head.
    batch: input_ids, token_type_ids, attention_mask, labels (-100 = no MLM loss),
    next_sentence_label (0 = real next sentence)."""

    def __init__(self, s):
        super().__init__()
        self.shape = s
        C = s.d_model
        self.word = nn.Embedding(s.vocab_size, C)
        self.pos = nn.Embedding(s.max_positions, C)
        self.segment = nn.Embedding(2, C)
        self.emb_ln = nn.LayerNorm(C, eps=1e-12)
        self.emb_drop = nn.Dropout(s.dropout)
        self.encoder = encoder(s, F.gelu, 1e-12, norm_first=False)
        self.pooler = nn.Linear(C, C)
        self.transform = nn.Linear(C, C)
        self.transform_ln = nn.LayerNorm(C, eps=1e-12)
        self.mlm_bias = nn.Parameter(torch.zeros(s.vocab_size))
        self.nsp = nn.Linear(C, 2)

    def forward(self, batch):
        ids = batch["input_ids"].long()
        x = self.word(ids) + self.pos(torch.arange(ids.shape[1])) + self.segment(batch["token_type_ids"].long())
        x = self.encoder(self.emb_drop(self.emb_ln(x)), src_key_padding_mask=batch["attention_mask"] == 0)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        logits = F.linear(self.transform_ln(F.gelu(self.transform(x))), self.word.weight, self.mlm_bias)
        nsp_logits = self.nsp(pooled)
        mlm_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1).long(),
                                   ignore_index=-100)
        nsp_loss = F.cross_entropy(nsp_logits, batch["next_sentence_label"].long())
        return {"logits": logits, "nsp_logits": nsp_logits, "mlm_loss": mlm_loss, "nsp_loss": nsp_loss,
                "loss": mlm_loss + nsp_loss}

    def hf_layout(self):
        """(HF name, module parameter, view of that parameter in HF layout), in contract order."""
        C, ident = self.shape.d_model, (lambda t: t)
        rows = lambda k: (lambda t: t[k * C:(k + 1) * C])
        out = [("bert.embeddings.word_embeddings.weight", self.word.weight, ident),
               ("bert.embeddings.position_embeddings.weight", self.pos.weight, ident),
               ("bert.embeddings.token_type_embeddings.weight", self.segment.weight, ident)]
        out += norm_layout("bert.embeddings.LayerNorm", self.emb_ln)
        for i, layer in enumerate(self.encoder.layers):
            pre, attn = f"bert.encoder.layer.{i}.", layer.self_attn
            for k, part in enumerate(("query", "key", "value")):
                out += [(f"{pre}attention.self.{part}.weight", attn.in_proj_weight, rows(k)),
                        (f"{pre}attention.self.{part}.bias", attn.in_proj_bias, rows(k))]
            out += linear_layout(pre + "attention.output.dense", attn.out_proj, ident)
            out += norm_layout(pre + "attention.output.LayerNorm", layer.norm1)
            out += linear_layout(pre + "intermediate.dense", layer.linear1, ident)
            out += linear_layout(pre + "output.dense", layer.linear2, ident)
            out += norm_layout(pre + "output.LayerNorm", layer.norm2)
        out += linear_layout("bert.pooler.dense", self.pooler, ident)
        out += linear_layout("cls.predictions.transform.dense", self.transform, ident)
        out += norm_layout("cls.predictions.transform.LayerNorm", self.transform_ln)
        out += [("cls.predictions.bias", self.mlm_bias, ident)]
        out += linear_layout("cls.seq_relationship", self.nsp, ident)
        return out


class Gpt(nn.Module):
    """GPT2LMHeadModel: pre-LN, tanh GELU, causal attention, LM head tied to wte.
    batch: input_ids, labels (next tokens, -100 = no loss)."""

    def __init__(self, s):
        super().__init__()
        self.shape = s
        self.wte = nn.Embedding(s.vocab_size, s.d_model)
        self.wpe = nn.Embedding(s.max_positions, s.d_model)
        self.emb_drop = nn.Dropout(s.dropout)
        self.blocks = encoder(s, gelu_tanh, 1e-5, norm_first=True)
        self.ln_f = nn.LayerNorm(s.d_model, eps=1e-5)

    def forward(self, batch):
        ids = batch["input_ids"].long()
        T = ids.shape[1]
        x = self.emb_drop(self.wte(ids) + self.wpe(torch.arange(T)))
        x = self.blocks(x, mask=torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1))
        logits = F.linear(self.ln_f(x), self.wte.weight)
        lm_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1).long(),
                                  ignore_index=-100)
        return {"logits": logits, "lm_loss": lm_loss, "loss": lm_loss}

    def hf_layout(self):
        ident, transpose = (lambda t: t), (lambda t: t.t())
        out = [("transformer.wte.weight", self.wte.weight, ident),
               ("transformer.wpe.weight", self.wpe.weight, ident)]
        for i, layer in enumerate(self.blocks.layers):
            pre, attn = f"transformer.h.{i}.", layer.self_attn
            out += norm_layout(pre + "ln_1", layer.norm1)
            out += [(pre + "attn.c_attn.weight", attn.in_proj_weight, transpose),
                    (pre + "attn.c_attn.bias", attn.in_proj_bias, ident)]
            out += linear_layout(pre + "attn.c_proj", attn.out_proj, transpose)
            out += norm_layout(pre + "ln_2", layer.norm2)
            out += linear_layout(pre + "mlp.c_fc", layer.linear1, transpose)
            out += linear_layout(pre + "mlp.c_proj", layer.linear2, transpose)
        out += norm_layout("transformer.ln_f", self.ln_f)
        return out


class RmsNorm(nn.Module):
    """transformers' LlamaRMSNorm: in float32, x * rsqrt(mean(x^2) + eps) * weight."""

    def __init__(self, C, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaLayer(nn.Module):
    """transformers' LlamaDecoderLayer: pre-norm RMSNorm, q/k/v/o without biases, rotary
    positions on q and k (rotate-half), grouped-query attention (repeat_kv), SwiGLU MLP."""

    def __init__(self, s):
        super().__init__()
        C, self.nh, self.nkv = s.d_model, s.n_head, s.n_kv_head or s.n_head
        self.hs = C // s.n_head
        self.input_layernorm = RmsNorm(C, s.norm_eps)
        self.q_proj = nn.Linear(C, self.nh * self.hs, bias=False)
        self.k_proj = nn.Linear(C, self.nkv * self.hs, bias=False)
        self.v_proj = nn.Linear(C, self.nkv * self.hs, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hs, C, bias=False)
        self.post_attention_layernorm = RmsNorm(C, s.norm_eps)
        self.gate_proj = nn.Linear(C, s.d_ff, bias=False)
        self.up_proj = nn.Linear(C, s.d_ff, bias=False)
        self.down_proj = nn.Linear(s.d_ff, C, bias=False)
        # no dropout module at 0 (the configs' llama default): nothing to run
        self.drop = nn.Dropout(s.dropout) if s.dropout > 0 else nn.Identity()

    def attention(self, x, cos, sin):
        Bn, T, _ = x.shape
        q = self.q_proj(x).view(Bn, T, self.nh, self.hs).transpose(1, 2)
        k = self.k_proj(x).view(Bn, T, self.nkv, self.hs).transpose(1, 2)
        v = self.v_proj(x).view(Bn, T, self.nkv, self.hs).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        group = self.nh // self.nkv   # repeat_kv: kv head j serves query heads j*group .. (j+1)*group-1
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        scores = q @ k.transpose(-1, -2) / (self.hs ** 0.5)
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        probs = self.drop(torch.softmax(scores.masked_fill(causal, float("-inf")).float(), dim=-1).to(q.dtype))
        return self.o_proj((probs @ v).transpose(1, 2).reshape(Bn, T, self.nh * self.hs))

    def forward(self, x, cos, sin):
        x = x + self.drop(self.attention(self.input_layernorm(x), cos, sin))
        h = self.post_attention_layernorm(x)
        return x + self.drop(self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h)))


class Llama(nn.Module):
    """LlamaForCausalLM: the layers above, a final RMSNorm and an untied lm_head.
    batch: input_ids, labels (next tokens, -100 = no loss)."""

    def __init__(self, s):
        super().__init__()
        self.shape = s
        self.embed_tokens = nn.Embedding(s.vocab_size, s.d_model)
        self.emb_drop = nn.Dropout(s.dropout) if s.dropout > 0 else nn.Identity()
        self.layers = nn.ModuleList(LlamaLayer(s) for _ in range(s.n_layer))
        self.norm = RmsNorm(s.d_model, s.norm_eps)
        self.lm_head = nn.Linear(s.d_model, s.vocab_size, bias=False)

    def rotary(self, T):
        """LlamaRotaryEmbedding: cos and sin (T, hs) in float32."""
        hs = self.shape.d_model // self.shape.n_head
        inv_freq = 1.0 / (self.shape.rope_theta ** (torch.arange(0, hs, 2, dtype=torch.int64).float() / hs))
        freqs = torch.arange(T, dtype=torch.float32)[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    def forward(self, batch):
        ids = batch["input_ids"].long()
        cos, sin = self.rotary(ids.shape[1])
        x = self.emb_drop(self.embed_tokens(ids))
        for layer in self.layers:
            x = layer(x, cos, sin)
        logits = self.lm_head(self.norm(x))
        lm_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch["labels"].reshape(-1).long(),
                                  ignore_index=-100)
        return {"logits": logits, "lm_loss": lm_loss, "loss": lm_loss}

    def hf_layout(self):
        ident = lambda t: t
        out = [("model.embed_tokens.weight", self.embed_tokens.weight, ident)]
        for i, layer in enumerate(self.layers):
            pre = f"model.layers.{i}."
            out += [(pre + "input_layernorm.weight", layer.input_layernorm.weight, ident)]
            out += [(f"{pre}self_attn.{n}.weight", getattr(layer, n).weight, ident)
                    for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
            out += [(pre + "post_attention_layernorm.weight", layer.post_attention_layernorm.weight, ident)]
            out += [(f"{pre}mlp.{n}.weight", getattr(layer, n).weight, ident)
                    for n in ("gate_proj", "up_proj", "down_proj")]
        out += [("model.norm.weight", self.norm.weight, ident), ("lm_head.weight", self.lm_head.weight, ident)]
        return out


def build_model(shape):
    return {"bert": Bert, "gpt": Gpt, "llama": Llama}[shape.family](shape)


def init_like_hf(model, generator, std=0.02):
    """As Hugging Face initialises BERT and GPT-2: matrices and embeddings
    N(0, std), biases 0, LayerNorm weights 1 (torch's defaults would give the
    tied output layer logits of magnitude sqrt(d_model))."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(std * torch.randn(p.shape, generator=generator))
            elif name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()


def adamw(model, lr, betas, eps, weight_decay):
    """torch.optim.AdamW with weight decay on 2-D tensors only (weights and embeddings)."""
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() != 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas, eps=eps)

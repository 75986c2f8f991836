"""mpilm's BERT and GPT made of PyTorch's own modules, any size.

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
    family: str          # "bert" | "gpt"
    n_layer: int
    d_model: int
    n_head: int
    d_ff: int
    seq_len: int
    max_positions: int
    vocab_size: int
    dropout: float = 0.0


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


def build_model(shape):
    return Bert(shape) if shape.family == "bert" else Gpt(shape)


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

/* model/linear — a stage's linear layers in its precision.
 *
 * fp32: BLIS. bf16 (mixed precision): the GEMM operands are bf16, the
 * products summed in fp32 (oneDNN), outputs and gradients fp32. The weights'
 * bf16 copy is made once per change of the parameters (model_stage_sync_bf16: once
 * per optimizer step; a training stage's is the high half of its bf16-pair
 * parameters, made by the update itself), the activations' when a GEMM needs them: a linear's
 * input in forward (kept in bf16 for backward where the block saves it,
 * lin_in.h), its output gradient in backward (one memory-bound pass each, a
 * few percent of the GEMM's time). */
#include "model/model_internal.h"

void model_stage_sync_bf16(model_stage *m)
{
    if (!m->cfg.bf16 || !m->wbf_stale) return;
    if (m->split) {
        for (int i = 0; i < m->n_tensors; i++) {
            const model_tensor *t = &m->tensors[i];
            if (model_mirrored(t)) bf16_join(m->params + t->offset, m->wbf + t->offset, m->plo + t->offset, t->numel);
        }
    } else {
        bf16_split_hi(m->wbf, m->params, m->n_params); /* the rounding of a training state's pairs */
    }
    m->wbf_stale = 0;
}

static const bf16 *weight_bf16(const model_stage *m, const float *w) { return m->wbf + (w - m->params); }

/* A linear's input in bf16 for forward: made from inp.f into inp.h (kept)
 * or the scratch, or inp.h as it is. */
static const bf16 *forward_input(model_stage *m, lin_in inp, int N, int C)
{
    bf16 *h = inp.h ? inp.h : m->s.xbf;
    if (inp.f) bf16_from_f32(h, inp.f, (size_t)N * C);
    return h;
}

/* A linear's input in bf16 for backward: the kept copy, or made again. */
static const bf16 *backward_input(model_stage *m, lin_in inp, int N, int C)
{
    if (inp.h) return inp.h;
    bf16_from_f32(m->s.xbf, inp.f, (size_t)N * C);
    return m->s.xbf;
}

status_t model_stage_linear_forward(model_stage *m, float *out, int ldo, lin_in inp, const float *w, const float *bias,
                              weight_layout lay, int N, int C, int OC)
{
    if (N == 0) return ST_OK;
    if (!m->cfg.bf16) {
        linear_forward(out, ldo, inp.f, w, bias, lay, N, C, OC);
        return ST_OK;
    }
    return linear_forward_bf16(out, ldo, forward_input(m, inp, N, C), weight_bf16(m, w), bias, lay, N, C, OC);
}

status_t model_stage_linear_forward_out16(model_stage *m, bf16 *out, int ldo, lin_in inp, const float *w,
                                          weight_layout lay, int N, int C, int OC)
{
    if (N == 0) return ST_OK;
    return linear_forward_bf16_out16(out, ldo, forward_input(m, inp, N, C), weight_bf16(m, w), lay, N, C, OC);
}

status_t model_stage_linear_backward_dout16(model_stage *m, float *dinp, float *dw, float *db, const bf16 *dout_bf,
                                            int ldd, lin_in inp, const float *w, weight_layout lay, int N, int C,
                                            int OC, int accumulate)
{
    if (N == 0) return ST_OK;
    return linear_backward_bf16(dinp, dw, db, NULL, dout_bf, ldd, dw ? backward_input(m, inp, N, C) : NULL,
                                weight_bf16(m, w), lay, N, C, OC, accumulate);
}

status_t model_stage_linear_backward(model_stage *m, float *dinp, float *dw, float *db, const float *dout, int ldd,
                               lin_in inp, const float *w, weight_layout lay, int N, int C, int OC, int accumulate)
{
    if (N == 0) return ST_OK;
    if (!m->cfg.bf16) {
        linear_backward(dinp, dw, db, dout, ldd, inp.f, w, lay, N, C, OC, accumulate);
        return ST_OK;
    }
    /* dout's rows with their stride (a vocabulary slice's padding included) */
    bf16_from_f32(m->s.dbf, dout, (size_t)(N - 1) * ldd + OC);
    return linear_backward_bf16(dinp, dw, db, dout, m->s.dbf, ldd, dw ? backward_input(m, inp, N, C) : NULL,
                                weight_bf16(m, w), lay, N, C, OC, accumulate);
}

lin_in model_stage_gelu(model_stage *m, const block_acts *a, size_t n, gelu_kind kind)
{
    if (!a->fch_bf) {
        gelu_forward(a->fch_gelu, a->fch, n, kind);
        return lin_f32(a->fch_gelu);
    }
    gelu_forward_bf16(m->s.xbf, a->fch_bf, n, kind);
    return (lin_in){NULL, m->s.xbf};
}

lin_in model_stage_gelu_backward(model_stage *m, const block_acts *a, size_t n, gelu_kind kind)
{
    if (a->fch_bf) {
        gelu_backward_bf16(m->s.dfch, m->s.xbf, a->fch_bf, m->s.dfch, n, kind);
        return (lin_in){NULL, m->s.xbf};
    }
    gelu_backward(m->s.dfch, a->fch_gelu, a->fch, m->s.dfch, n, kind);
    return lin_f32(a->fch_gelu);
}

lin_in model_stage_swiglu(model_stage *m, const block_acts *a)
{
    int N = m->B * m->cfg.seq_len, F = m->Fl;
    if (!a->fch_bf) {
        swiglu_forward(m->s.gelu, F, a->fch, a->fch + F, 2 * F, N, F);
        return lin_f32(m->s.gelu);
    }
    swiglu_forward_bf16(m->s.xbf, F, a->fch_bf, a->fch_bf + F, 2 * F, N, F);
    return (lin_in){NULL, m->s.xbf};
}

lin_out model_stage_swiglu_backward(model_stage *m, const block_acts *a)
{
    int N = m->B * m->cfg.seq_len, F = m->Fl;
    if (a->fch_bf) {
        swiglu_backward_bf16(a->fch_bf, a->fch_bf + F, 2 * F, m->s.dh, F, a->fch_bf, a->fch_bf + F, 2 * F, N, F);
        return (lin_out){NULL, a->fch_bf};
    }
    swiglu_backward(a->fch, a->fch + F, 2 * F, m->s.dh, F, a->fch, a->fch + F, 2 * F, N, F);
    return (lin_out){a->fch, NULL};
}

lin_in model_stage_norm_again(model_stage *m, const block_params *p, const block_acts *a, int which, const float *x)
{
    int N = m->B * m->cfg.seq_len, C = m->cfg.d_model, rms = m->cfg.family == MODEL_LLAMA;
    const float *w = which == 1 ? p->ln1_w : p->ln2_w, *rstd = which == 1 ? a->ln1_rstd : a->ln2_rstd;
    const float *mean = which == 1 ? a->ln1_mean : a->ln2_mean, *bias = which == 1 ? p->ln1_b : p->ln2_b;
    if (!m->cfg.bf16) { /* forward's scratch is free again */
        if (rms) rmsnorm_apply(m->s.gemm_in, x, rstd, w, N, C);
        else layernorm_apply(m->s.gemm_in, x, mean, rstd, w, bias, N, C);
        return lin_f32(m->s.gemm_in);
    }
    if (rms) rmsnorm_apply_bf16(m->s.ln_bf, x, rstd, w, N, C);
    else layernorm_apply_bf16(m->s.ln_bf, x, mean, rstd, w, bias, N, C);
    return (lin_in){NULL, m->s.ln_bf};
}

void model_stage_keep_qkv(model_stage *m, const block_acts *a)
{
    if (a->qkv_bf) bf16_from_f32(a->qkv_bf, a->qkv, (size_t)m->B * m->cfg.seq_len * m->Wqkv);
}

void model_stage_keep_fch(model_stage *m, const block_acts *a)
{
    if (a->fch_bf) bf16_from_f32(a->fch_bf, a->fch, m->nh);
}

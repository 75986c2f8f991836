/* model/block — one transformer block, pre-LN (GPT) or post-LN (BERT).
 *
 * pre-LN:  ln1 = LN(x); qkv = ln1 Wqkv; atty = attn(qkv);
 *          res1 = x + drop(atty Wo); ln2 = LN(res1); fch = ln2 W1;
 *          out = res2 = res1 + drop(gelu(fch) W2)
 * post-LN: qkv = x Wqkv; atty = attn(qkv); res1 = x + drop(atty Wo);
 *          ln1 = LN(res1); fch = ln1 W1; res2 = ln1 + drop(gelu(fch) W2);
 *          out = ln2 = LN(res2)
 * Dropout sites per layer: 1 attention probabilities, 2 after the attention
 * projection, 3 after the FFN.
 * Tensor parallel (Megatron-LM): qkv and fch are column-parallel (this
 * rank's heads, its FFN rows), the attention projection and the FFN output
 * row-parallel with one group sum each in forward; backward sums d(input)
 * of the two column-parallel linears. Everything between is replicated.
 * In 2d mode the FFN runs on the group's process grid (model_ffn2d.c).
 * Llama's block is model_llama.c's. */
#include <string.h>

#include "model/model_internal.h"

static float ln_eps(const model_stage *m) { return m->cfg.family == MODEL_BERT ? 1e-12f : 1e-5f; }
static gelu_kind gelu_of(const model_stage *m) { return m->cfg.family == MODEL_BERT ? GELU_ERF : GELU_TANH; }
static weight_layout layout_of(const model_stage *m)
{
    return m->cfg.family == MODEL_GPT ? W_IN_OUT : W_OUT_IN; /* Conv1D; nn.Linear (BERT, Llama) */
}


static const int32_t *key_mask_of(const model_stage *m, const batch *b)
{
    return m->cfg.family == MODEL_BERT ? b->attention_mask : NULL;
}

/* Widths are this rank's: the q/k/v channels Cl and heads NHl of its
 * heads, the FFN rows Fl (all of them at tp size 1). */

status_t row_parallel_forward(model_stage *m, float *out, lin_in inp, const float *w, const float *bias, int N,
                                     int K, int OC)
{
    if (m->tp.size == 1) {
        TRY(model_stage_linear_forward(m, out, OC, inp, w, bias, layout_of(m), N, K, OC));
        return ST_OK;
    }
    TRY(model_stage_linear_forward(m, out, OC, inp, w, NULL, layout_of(m), N, K, OC));
    TRY(model_tp_sum(m, out, (size_t)N * OC));
    if (!bias) return ST_OK;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) out[(size_t)n * OC + o] += bias[o];
    return ST_OK;
}

static status_t linear_backward_of(model_stage *m, float *dinp, float *dw, float *db, const float *dout,
                                   const bf16 *dout_bf, lin_in inp, const float *w, int N, int C, int OC, int acc)
{
    if (dout_bf)
        return model_stage_linear_backward_dout16(m, dinp, dw, db, dout_bf, OC, inp, w, layout_of(m), N, C, OC, acc);
    return model_stage_linear_backward(m, dinp, dw, db, dout, OC, inp, w, layout_of(m), N, C, OC, acc);
}

status_t column_parallel_backward(model_stage *m, float *dacc, float *dw, float *db, const float *dout,
                                  const bf16 *dout_bf, lin_in inp, const float *w, int N, int C, int OC)
{
    if (m->tp.size == 1) return linear_backward_of(m, dacc, dw, db, dout, dout_bf, inp, w, N, C, OC, 1);
    float *part = m->s.dtmp;
    TRY(linear_backward_of(m, part, dw, db, dout, dout_bf, inp, w, N, C, OC, 0));
    TRY(model_tp_sum(m, part, (size_t)N * C));
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < (size_t)N * C; i++) dacc[i] += part[i];
    return ST_OK;
}

status_t model_attention(model_stage *m, int l, const block_acts *a, float *out, const batch *b,
                         const model_pass *pass)
{
    const model_config *c = &m->cfg;
    return attention_forward_gqa(out, a->att_stat, a->qkv, a->qkv_bf, b ? key_mask_of(m, b) : NULL,
                                 c->family != MODEL_BERT, model_dropout(m, pass, l, SITE_ATT), m->B, c->seq_len,
                                 m->Cl, m->NHl, m->NKVl, c->bf16);
}

status_t model_attention_out(model_stage *m, int l, const block_acts *a, const batch *b, const model_pass *pass,
                             lin_in *out)
{
    if (!model_remakes_attention(&m->cfg)) {
        *out = (lin_in){a->atty, a->atty_bf};
        return ST_OK;
    }
    TRY(model_attention(m, l, a, m->s.tmp, b, pass));
    *out = lin_f32(m->s.tmp);
    return ST_OK;
}

/* qkv -> atty -> res1 = x + drop(atty Wo): the attention half of a block. */
static status_t attention_half(model_stage *m, int l, const block_params *p, const block_acts *a,
                               const float *x, lin_in attn_in, const batch *b, const model_pass *pass)
{
    const model_config *c = &m->cfg;
    int N = m->B * c->seq_len, C = c->d_model, Cl = m->Cl;
    TRY(model_stage_linear_forward(m, a->qkv, 3 * Cl, attn_in, p->qkv_w, p->qkv_b, layout_of(m), N, C, 3 * Cl));
    model_stage_keep_qkv(m, a);
    TRY(model_attention(m, l, a, a->atty, b, pass));
    TRY(row_parallel_forward(m, m->s.tmp, (lin_in){a->atty, a->atty_bf}, p->proj_w, p->proj_b, N, Cl, C));
    dropout_add_forward(a->res1, x, m->s.tmp, (size_t)N * C, model_dropout(m, pass, l, SITE_PROJ));
    return ST_OK;
}

status_t model_ffn_in(model_stage *m, const block_acts *a, lin_in ffn_in, const float *w, const float *bias, int OC)
{
    int N = m->B * m->cfg.seq_len, C = m->cfg.d_model;
    if (a->fch_bf && !bias) /* straight into the bf16 copy */
        return model_stage_linear_forward_out16(m, a->fch_bf, OC, ffn_in, w, layout_of(m), N, C, OC);
    TRY(model_stage_linear_forward(m, a->fch, OC, ffn_in, w, bias, layout_of(m), N, C, OC));
    model_stage_keep_fch(m, a);
    return ST_OK;
}

/* fch -> gelu -> out = res + drop(gelu W2): the FFN half. */
static status_t ffn_half(model_stage *m, int l, const block_params *p, const block_acts *a, lin_in ffn_in,
                         const float *res, float *out, const model_pass *pass)
{
    const model_config *c = &m->cfg;
    int N = m->B * c->seq_len, C = c->d_model, F = m->Fl;
    if (m->tp.grid_p > 0) {
        TRY(model_ffn2d_forward(m, p, a, ffn_in.f, m->s.tmp, gelu_of(m)));
    } else {
        TRY(model_ffn_in(m, a, ffn_in, p->fc_w, p->fc_b, F));
        lin_in h = model_stage_gelu(m, a, (size_t)N * F, gelu_of(m));
        TRY(row_parallel_forward(m, m->s.tmp, h, p->fc2_w, p->fc2_b, N, F, C));
    }
    dropout_add_forward(out, res, m->s.tmp, (size_t)N * C, model_dropout(m, pass, l, SITE_FFN));
    return ST_OK;
}

status_t model_block_forward(model_stage *m, int l, const block_params *p, const block_acts *a,
                       const float *x, const batch *b, const model_pass *pass)
{
    if (m->cfg.family == MODEL_LLAMA) return llama_block_forward(m, l, p, a, x, pass);
    int N = m->B * m->cfg.seq_len, C = m->cfg.d_model;
    float eps = ln_eps(m);
    if (m->cfg.pre_ln) {
        layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, p->ln1_w, p->ln1_b, N, C, eps);
        TRY(attention_half(m, l, p, a, x, lin_f32(a->ln1), b, pass));
        model_poll(pass);
        layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res1, p->ln2_w, p->ln2_b, N, C, eps);
        TRY(ffn_half(m, l, p, a, lin_f32(a->ln2), a->res1, a->res2, pass));
    } else {
        TRY(attention_half(m, l, p, a, x, lin_f32(x), b, pass));
        model_poll(pass);
        layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, a->res1, p->ln1_w, p->ln1_b, N, C, eps);
        TRY(ffn_half(m, l, p, a, lin_f32(a->ln1), a->ln1, a->res2, pass));
        layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, p->ln2_w, p->ln2_b, N, C, eps);
    }
    model_poll(pass);
    return ST_OK;
}

/* Given d(out of the FFN branch before dropout) in dres: adds the FFN
 * branch's gradient w.r.t. ffn_in to dacc (accumulate). */
static status_t ffn_half_backward(model_stage *m, int l, const block_params *p, const block_params *g,
                                  const block_acts *a, lin_in ffn_in, const float *dres, float *dacc,
                                  const model_pass *pass)
{
    const model_config *c = &m->cfg;
    int N = m->B * c->seq_len, C = c->d_model, F = m->Fl;
    dropout_backward(m->s.dtmp, dres, (size_t)N * C, model_dropout(m, pass, l, SITE_FFN));
    if (m->tp.grid_p > 0) {
        TRY(model_ffn2d_backward(m, p, g, a, ffn_in.f, m->s.dtmp, dacc, gelu_of(m)));
        model_poll(pass);
        return ST_OK;
    }
    if (model_remakes_ffn(c)) TRY(model_ffn_in(m, a, ffn_in, p->fc_w, p->fc_b, F));
    /* d(gelu) first (it needs no input), then one pass gives d(fch) and
       gelu(fch) again, which the weight's gradient reads */
    TRY(model_stage_linear_backward(m, m->s.dfch, NULL, g->fc2_b, m->s.dtmp, C, (lin_in){NULL, NULL}, p->fc2_w,
                                    layout_of(m), N, F, C, 0));
    lin_in h = model_stage_gelu_backward(m, a, (size_t)N * F, gelu_of(m));
    TRY(model_stage_linear_backward(m, NULL, g->fc2_w, NULL, m->s.dtmp, C, h, p->fc2_w, layout_of(m), N, F, C, 0));
    TRY(column_parallel_backward(m, dacc, g->fc_w, g->fc_b, m->s.dfch, NULL, ffn_in, p->fc_w, N, C, F));
    model_poll(pass);
    return ST_OK;
}

/* Given d(res1) in dres: adds the attention branch's gradient w.r.t. attn_in
 * to dacc (accumulate). Uses dA as scratch. */
static status_t attention_half_backward(model_stage *m, int l, const block_params *p, const block_params *g,
                                        const block_acts *a, lin_in attn_in, const float *dres, float *dacc,
                                        const batch *b, const model_pass *pass)
{
    const model_config *c = &m->cfg;
    int N = m->B * c->seq_len, C = c->d_model, Cl = m->Cl;
    lin_in atty;
    TRY(model_attention_out(m, l, a, b, pass, &atty));
    dropout_backward(m->s.dtmp, dres, (size_t)N * C, model_dropout(m, pass, l, SITE_PROJ));
    TRY(model_stage_linear_backward(m, m->s.dA, g->proj_w, g->proj_b, m->s.dtmp, C, atty, p->proj_w, layout_of(m),
                                    N, Cl, C, 0));
    TRY(attention_backward(m->s.dqkv, m->s.dA, a->qkv, a->qkv_bf, a->att_stat, key_mask_of(m, b),
                           c->family == MODEL_GPT, model_dropout(m, pass, l, SITE_ATT), m->B, c->seq_len, Cl, m->NHl,
                           c->bf16));
    TRY(column_parallel_backward(m, dacc, g->qkv_w, g->qkv_b, m->s.dqkv, NULL, attn_in, p->qkv_w, N, C,
                                 3 * Cl));
    model_poll(pass);
    return ST_OK;
}

status_t model_block_backward(model_stage *m, int l, const block_params *p, const block_params *g,
                        const block_acts *a, const float *x, float *dx, const batch *b,
                        const model_pass *pass)
{
    if (m->cfg.family == MODEL_LLAMA) return llama_block_backward(m, l, p, g, a, x, dx, pass);
    size_t N = (size_t)m->B * m->cfg.seq_len, C = m->cfg.d_model;
    float *dln = m->s.dA;
    if (m->cfg.pre_ln) {
        /* dx holds d(res2); the residual passes it to res1 unchanged */
        memset(dln, 0, N * C * sizeof(float));
        TRY(ffn_half_backward(m, l, p, g, a, model_stage_norm_again(m, p, a, 2, a->res1), dx, dln, pass));
        layernorm_backward(dx, g->ln2_w, g->ln2_b, dln, a->res1, p->ln2_w, a->ln2_mean,
                           a->ln2_rstd, (int)N, (int)C);
        /* dx = d(res1) = d(x) through the residual; dA is reused by the
         * attention backward, so d(ln1) gathers in dfch's space */
        float *dln1 = m->s.dfch;
        memset(dln1, 0, N * C * sizeof(float));
        TRY(attention_half_backward(m, l, p, g, a, model_stage_norm_again(m, p, a, 1, x), dx, dln1, b, pass));
        layernorm_backward(dx, g->ln1_w, g->ln1_b, dln1, x, p->ln1_w, a->ln1_mean, a->ln1_rstd,
                           (int)N, (int)C);
    } else {
        /* dx holds d(ln2) */
        float *dres2 = m->s.tmp;
        memset(dres2, 0, N * C * sizeof(float));
        layernorm_backward(dres2, g->ln2_w, g->ln2_b, dx, a->res2, p->ln2_w, a->ln2_mean,
                           a->ln2_rstd, (int)N, (int)C);
        /* d(ln1) = d(res2) (residual) + the FFN branch */
        TRY(ffn_half_backward(m, l, p, g, a, lin_f32(a->ln1), dres2, dres2, pass));
        memset(dx, 0, N * C * sizeof(float));
        layernorm_backward(dx, g->ln1_w, g->ln1_b, dres2, a->res1, p->ln1_w, a->ln1_mean,
                           a->ln1_rstd, (int)N, (int)C);
        /* dx = d(res1) = d(x) through the residual, + the attention branch */
        TRY(attention_half_backward(m, l, p, g, a, lin_f32(x), dx, dx, b, pass));
    }
    return ST_OK;
}

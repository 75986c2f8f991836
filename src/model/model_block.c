/* model/block — one transformer block, pre-LN (GPT) or post-LN (BERT).
 *
 * pre-LN:  ln1 = LN(x); qkv = ln1 Wqkv; atty = attn(qkv);
 *          res1 = x + drop(atty Wo); ln2 = LN(res1); fch = ln2 W1;
 *          out = res2 = res1 + drop(gelu(fch) W2)
 * post-LN: qkv = x Wqkv; atty = attn(qkv); res1 = x + drop(atty Wo);
 *          ln1 = LN(res1); fch = ln1 W1; res2 = ln1 + drop(gelu(fch) W2);
 *          out = ln2 = LN(res2)
 * Dropout sites per layer: 1 attention probabilities, 2 after the attention
 * projection, 3 after the FFN. */
#include <string.h>

#include "model/model_internal.h"

enum { SITE_ATT = 1, SITE_PROJ = 2, SITE_FFN = 3 };

static float ln_eps(const model_stage *m) { return m->cfg.family == MODEL_BERT ? 1e-12f : 1e-5f; }
static gelu_kind gelu_of(const model_stage *m) { return m->cfg.family == MODEL_BERT ? GELU_ERF : GELU_TANH; }
static weight_layout layout_of(const model_stage *m)
{
    return m->cfg.family == MODEL_BERT ? W_OUT_IN : W_IN_OUT;
}

static const int32_t *key_mask_of(const model_stage *m, const batch *b)
{
    return m->cfg.family == MODEL_BERT ? b->attention_mask : NULL;
}

/* qkv -> atty -> res1 = x + drop(atty Wo): the attention half of a block. */
static void attention_half(model_stage *m, int l, const block_params *p, const block_acts *a,
                           const float *x, const float *attn_in, const batch *b,
                           const model_pass *pass)
{
    const model_config *c = &m->cfg;
    int N = m->B * c->seq_len, C = c->d_model;
    weight_layout lay = layout_of(m);
    linear_forward(a->qkv, 3 * C, attn_in, p->qkv_w, p->qkv_b, lay, N, C, 3 * C);
    attention_forward(a->atty, a->att, m->s.datt, a->qkv, key_mask_of(m, b),
                      c->family == MODEL_GPT, model_dropout(m, pass, l, SITE_ATT), m->B,
                      c->seq_len, C, c->n_head);
    linear_forward(m->s.tmp, C, a->atty, p->proj_w, p->proj_b, lay, N, C, C);
    dropout_add_forward(a->res1, x, m->s.tmp, (size_t)N * C, model_dropout(m, pass, l, SITE_PROJ));
}

/* fch -> gelu -> out = res + drop(gelu W2): the FFN half. */
static void ffn_half(model_stage *m, int l, const block_params *p, const block_acts *a,
                     const float *ffn_in, const float *res, float *out, const model_pass *pass)
{
    const model_config *c = &m->cfg;
    int N = m->B * c->seq_len, C = c->d_model, F = c->d_ff;
    weight_layout lay = layout_of(m);
    linear_forward(a->fch, F, ffn_in, p->fc_w, p->fc_b, lay, N, C, F);
    gelu_forward(a->fch_gelu, a->fch, (size_t)N * F, gelu_of(m));
    linear_forward(m->s.tmp, C, a->fch_gelu, p->fc2_w, p->fc2_b, lay, N, F, C);
    dropout_add_forward(out, res, m->s.tmp, (size_t)N * C, model_dropout(m, pass, l, SITE_FFN));
}

void block_forward(model_stage *m, int l, const block_params *p, const block_acts *a,
                   const float *x, const batch *b, const model_pass *pass)
{
    int N = m->B * m->cfg.seq_len, C = m->cfg.d_model;
    float eps = ln_eps(m);
    if (m->cfg.pre_ln) {
        layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, p->ln1_w, p->ln1_b, N, C, eps);
        attention_half(m, l, p, a, x, a->ln1, b, pass);
        model_poll(pass);
        layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res1, p->ln2_w, p->ln2_b, N, C, eps);
        ffn_half(m, l, p, a, a->ln2, a->res1, a->res2, pass);
    } else {
        attention_half(m, l, p, a, x, x, b, pass);
        model_poll(pass);
        layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, a->res1, p->ln1_w, p->ln1_b, N, C, eps);
        ffn_half(m, l, p, a, a->ln1, a->ln1, a->res2, pass);
        layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, p->ln2_w, p->ln2_b, N, C, eps);
    }
    model_poll(pass);
}

/* Given d(out of the FFN branch before dropout) in dres: adds the FFN
 * branch's gradient w.r.t. ffn_in to dacc (accumulate). */
static void ffn_half_backward(model_stage *m, int l, const block_params *p,
                              const block_params *g, const block_acts *a, const float *ffn_in,
                              const float *dres, float *dacc, const model_pass *pass)
{
    const model_config *c = &m->cfg;
    int N = m->B * c->seq_len, C = c->d_model, F = c->d_ff;
    weight_layout lay = layout_of(m);
    dropout_backward(m->s.dtmp, dres, (size_t)N * C, model_dropout(m, pass, l, SITE_FFN));
    gelu_forward(a->fch_gelu, a->fch, (size_t)N * F, gelu_of(m));
    linear_backward(m->s.dfch, g->fc2_w, g->fc2_b, m->s.dtmp, C, a->fch_gelu, p->fc2_w, lay, N,
                    F, C, 0);
    gelu_backward(m->s.dfch, a->fch, m->s.dfch, (size_t)N * F, gelu_of(m));
    linear_backward(dacc, g->fc_w, g->fc_b, m->s.dfch, F, ffn_in, p->fc_w, lay, N, C, F, 1);
    model_poll(pass);
}

/* Given d(res1) in dres: adds the attention branch's gradient w.r.t. attn_in
 * to dacc (accumulate). Uses dA as scratch. */
static void attention_half_backward(model_stage *m, int l, const block_params *p,
                                    const block_params *g, const block_acts *a,
                                    const float *attn_in, const float *dres, float *dacc,
                                    const model_pass *pass)
{
    const model_config *c = &m->cfg;
    int N = m->B * c->seq_len, C = c->d_model;
    weight_layout lay = layout_of(m);
    dropout_backward(m->s.dtmp, dres, (size_t)N * C, model_dropout(m, pass, l, SITE_PROJ));
    linear_backward(m->s.dA, g->proj_w, g->proj_b, m->s.dtmp, C, a->atty, p->proj_w, lay, N, C,
                    C, 0);
    attention_backward(m->s.dqkv, m->s.datt, m->s.dA, a->qkv, a->att, c->family == MODEL_GPT,
                       model_dropout(m, pass, l, SITE_ATT), m->B, c->seq_len, C, c->n_head);
    linear_backward(dacc, g->qkv_w, g->qkv_b, m->s.dqkv, 3 * C, attn_in, p->qkv_w, lay, N, C,
                    3 * C, 1);
    model_poll(pass);
}

void block_backward(model_stage *m, int l, const block_params *p, const block_params *g,
                    const block_acts *a, const float *x, float *dx, const batch *b,
                    const model_pass *pass)
{
    size_t N = (size_t)m->B * m->cfg.seq_len, C = m->cfg.d_model;
    float *dln = m->s.dA;
    (void)b;
    if (m->cfg.pre_ln) {
        /* dx holds d(res2); the residual passes it to res1 unchanged */
        memset(dln, 0, N * C * sizeof(float));
        ffn_half_backward(m, l, p, g, a, a->ln2, dx, dln, pass);
        layernorm_backward(dx, g->ln2_w, g->ln2_b, dln, a->res1, p->ln2_w, a->ln2_mean,
                           a->ln2_rstd, (int)N, (int)C);
        /* dx = d(res1) = d(x) through the residual; dA is reused by the
         * attention backward, so d(ln1) gathers in dfch's space */
        float *dln1 = m->s.dfch;
        memset(dln1, 0, N * C * sizeof(float));
        attention_half_backward(m, l, p, g, a, a->ln1, dx, dln1, pass);
        layernorm_backward(dx, g->ln1_w, g->ln1_b, dln1, x, p->ln1_w, a->ln1_mean, a->ln1_rstd,
                           (int)N, (int)C);
    } else {
        /* dx holds d(ln2) */
        float *dres2 = m->s.tmp;
        memset(dres2, 0, N * C * sizeof(float));
        layernorm_backward(dres2, g->ln2_w, g->ln2_b, dx, a->res2, p->ln2_w, a->ln2_mean,
                           a->ln2_rstd, (int)N, (int)C);
        /* d(ln1) = d(res2) (residual) + the FFN branch */
        ffn_half_backward(m, l, p, g, a, a->ln1, dres2, dres2, pass);
        memset(dx, 0, N * C * sizeof(float));
        layernorm_backward(dx, g->ln1_w, g->ln1_b, dres2, a->res1, p->ln1_w, a->ln1_mean,
                           a->ln1_rstd, (int)N, (int)C);
        /* dx = d(res1) = d(x) through the residual, + the attention branch */
        attention_half_backward(m, l, p, g, a, x, dx, dx, pass);
    }
}

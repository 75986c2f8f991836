/* model/llama — one Llama block (transformers' LlamaDecoderLayer), pre-norm:
 *
 *   ln1 = RMSNorm(x); q | k | v = ln1 [Wq; Wk; Wv]^T; q, k = RoPE(q, k);
 *   atty = attn(q, repeat_kv(k), repeat_kv(v)); res1 = x + drop(atty Wo^T);
 *   ln2 = RMSNorm(res1); gate | up = ln2 [Wg; Wu]^T;
 *   out = res2 = res1 + drop((silu(gate) up) Wd^T)
 *
 * No biases. Grouped-query attention: query head h reads kv head
 * h / (NH / NKV) in place in q | k | v (attention_forward_gqa; no repeated
 * copy), and backward sums the gradients of each group's heads into their
 * kv head.
 * Dropout sites are GPT's. Linear weights are (out, in); widths are this
 * rank's: tensor parallelism (Megatron-LM's 1d split) gives each rank NH/t
 * query heads and the NKV/t kv heads of their groups (q | k | v and gate | up
 * column-parallel: one group sum of d(input) each in backward; o_proj and
 * down_proj row-parallel: one group sum each in forward).
 * Shapes: x (N,C) with N = B*T; qkv (N, C + 2 KV) with KV = NKV hs;
 * fch (N, 2F): gate | up. */
#include <string.h>

#include "model/model_internal.h"

static void rope_qk(const model_stage *m, float *qkv, void (*rope)(float *, int, int, int, int, int, const float *))
{
    int T = m->cfg.seq_len, hs = m->Cl / m->NHl;
    rope(qkv, m->Wqkv, m->B, T, m->NHl, hs, m->s.rope);
    rope(qkv + m->Cl, m->Wqkv, m->B, T, m->NKVl, hs, m->s.rope);
}

status_t llama_block_forward(model_stage *m, int l, const block_params *p, const block_acts *a, const float *x,
                             const model_pass *pass)
{
    const model_config *c = &m->cfg;
    int N = m->B * c->seq_len, C = c->d_model, F = m->Fl, W = m->Wqkv;
    rmsnorm_forward(a->ln1, a->ln1_rstd, x, p->ln1_w, N, C, c->norm_eps);
    TRY(model_stage_linear_forward(m, a->qkv, W, lin_f32(a->ln1), p->qkv_w, NULL, W_OUT_IN, N, C, W));
    rope_qk(m, a->qkv, rope_forward);
    model_stage_keep_qkv(m, a);
    TRY(model_attention(m, l, a, a->atty, NULL, pass));
    TRY(row_parallel_forward(m, m->s.tmp, (lin_in){a->atty, a->atty_bf}, p->proj_w, NULL, N, m->Cl, C));
    dropout_add_forward(a->res1, x, m->s.tmp, (size_t)N * C, model_dropout(m, pass, l, SITE_PROJ));
    model_poll(pass);
    rmsnorm_forward(a->ln2, a->ln2_rstd, a->res1, p->ln2_w, N, C, c->norm_eps);
    TRY(model_ffn_in(m, a, lin_f32(a->ln2), p->fc_w, NULL, 2 * F));
    TRY(row_parallel_forward(m, m->s.tmp, model_stage_swiglu(m, a), p->fc2_w, NULL, N, F, C));
    dropout_add_forward(a->res2, a->res1, m->s.tmp, (size_t)N * C, model_dropout(m, pass, l, SITE_FFN));
    model_poll(pass);
    return ST_OK;
}

/* dln (N,C) += d(ln2) of the FFN branch, given d(res2) in dres. */
static status_t ffn_backward(model_stage *m, int l, const block_params *p, const block_params *g,
                             const block_acts *a, const float *dres, float *dln, const model_pass *pass)
{
    int N = m->B * m->cfg.seq_len, C = m->cfg.d_model, F = m->Fl;
    lin_in ln2 = model_stage_norm_again(m, p, a, 2, a->res1);
    if (model_remakes_ffn(&m->cfg)) TRY(model_ffn_in(m, a, ln2, p->fc_w, NULL, 2 * F));
    dropout_backward(m->s.dtmp, dres, (size_t)N * C, model_dropout(m, pass, l, SITE_FFN));
    lin_in h = model_stage_swiglu(m, a); /* the down projection's input, again */
    TRY(model_stage_linear_backward(m, m->s.dh, g->fc2_w, NULL, m->s.dtmp, C, h, p->fc2_w, W_OUT_IN, N, F, C, 0));
    lin_out dfch = model_stage_swiglu_backward(m, a);
    return column_parallel_backward(m, dln, g->fc_w, NULL, dfch.f, dfch.h, ln2, p->fc_w, N, C, 2 * F);
}

/* dln (N,C) += d(ln1) of the attention branch, given d(res1) in dres and the block input x. */
static status_t attention_backward_llama(model_stage *m, int l, const block_params *p, const block_params *g,
                                         const block_acts *a, const float *x, const float *dres, float *dln,
                                         const model_pass *pass)
{
    const model_config *c = &m->cfg;
    int N = m->B * c->seq_len, C = c->d_model, W = m->Wqkv;
    lin_in atty;
    TRY(model_attention_out(m, l, a, NULL, pass, &atty));
    dropout_backward(m->s.dtmp, dres, (size_t)N * C, model_dropout(m, pass, l, SITE_PROJ));
    TRY(model_stage_linear_backward(m, m->s.dA, g->proj_w, NULL, m->s.dtmp, C, atty, p->proj_w, W_OUT_IN, N, m->Cl, C,
                                    0));
    TRY(attention_backward_gqa(m->s.dqkv, m->s.dA, a->qkv, a->qkv_bf, a->att_stat, NULL, 1,
                               model_dropout(m, pass, l, SITE_ATT), m->B, c->seq_len, m->Cl, m->NHl, m->NKVl,
                               c->bf16));
    rope_qk(m, m->s.dqkv, rope_backward);
    return column_parallel_backward(m, dln, g->qkv_w, NULL, m->s.dqkv, NULL, model_stage_norm_again(m, p, a, 1, x), p->qkv_w,
                                    N, C, W);
}

status_t llama_block_backward(model_stage *m, int l, const block_params *p, const block_params *g,
                              const block_acts *a, const float *x, float *dx, const model_pass *pass)
{
    size_t N = (size_t)m->B * m->cfg.seq_len, C = m->cfg.d_model;
    /* dx holds d(res2); the residual passes it on to res1 and then x, each
     * RMSNorm adds its branch's gradient */
    float *dln = m->s.dA;
    memset(dln, 0, N * C * sizeof(float));
    TRY(ffn_backward(m, l, p, g, a, dx, dln, pass));
    rmsnorm_backward(dx, g->ln2_w, dln, a->res1, p->ln2_w, a->ln2_rstd, (int)N, (int)C);
    model_poll(pass);
    /* dA is the attention's scratch: d(ln1) gathers in dfch's space */
    float *dln1 = m->s.dfch;
    memset(dln1, 0, N * C * sizeof(float));
    TRY(attention_backward_llama(m, l, p, g, a, x, dx, dln1, pass));
    rmsnorm_backward(dx, g->ln1_w, dln1, x, p->ln1_w, a->ln1_rstd, (int)N, (int)C);
    model_poll(pass);
    return ST_OK;
}

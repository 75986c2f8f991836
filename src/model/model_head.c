/* model/head — the output heads and their loss, with the heads' backward run
 * right away when training: the logits are made HEAD_ROWS rows at a time,
 * turned into their gradient by the fused cross-entropy and consumed, so the
 * (rows, V) matrix is never stored whole. What backward needs is left in the
 * slot's doutput: d(loss)/d(stage output).
 *
 * GPT: logits = LN_f(x) wte^T over every position with a target; Llama
 *       RMSNorm(x) lm_head^T (wte^T when tied).
 * BERT: MLM over the masked positions only (the other rows carry no loss):
 *       h = LN(gelu(x Wt + bt)); logits = h wte^T + bias;
 *       NSP on [CLS]: pooled = tanh(x_0 Wp + bp); nsp = pooled Ws + bs.
 * Tensor parallel: the tied embedding (and BERT's decoder bias) is split by
 * vocabulary rows; each rank makes the logits of its slice and the loss is a
 * parallel cross-entropy; the rest of the heads is replicated. */
#include <math.h>
#include <string.h>

#include "model/model_internal.h"

/* The loss of n rows of this rank's logits (n, nv) over the vocabulary
 * split across the tensor group: row max and sum-exp reduced over the group,
 * the target's logit from the rank that holds it; the full logits are never
 * gathered. Leaves the gradient in the logits like crossentropy_fused: the
 * fp32 rows lf, or (lg, a bf16 stage) the bf16 ones, whose bias is added as
 * they are read. */
static status_t parallel_crossentropy(model_stage *m, float *lf, bf16 *lg, const float *bias, int n,
                                      const int32_t *targets, float scale, int *correct, double *loss)
{
    scratch *k = &m->s;
    if (lg) crossentropy_slice_max_bf16(lg, m->Vl, bias, n, m->nv, k->ce_max);
    else crossentropy_slice_max(lf, m->Vl, n, m->nv, k->ce_max);
    TRY(m->tp.allreduce_max(m->tp.ctx, k->ce_max, (size_t)n));
    if (lg) crossentropy_slice_sumexp_bf16(lg, m->Vl, bias, targets, n, m->v0, m->nv, k->ce_max, k->ce_st);
    else crossentropy_slice_sumexp(lf, m->Vl, targets, n, m->v0, m->nv, k->ce_max, k->ce_st);
    TRY(model_tp_sum(m, k->ce_st, 2 * (size_t)n));
    if (lg)
        *loss += crossentropy_slice_grad_bf16(lg, m->Vl, bias, targets, n, m->v0, m->nv, k->ce_max, k->ce_st, scale,
                                              k->row_loss, correct);
    else
        *loss += crossentropy_slice_grad(lf, m->Vl, targets, n, m->v0, m->nv, k->ce_max, k->ce_st, scale,
                                         k->row_loss, correct);
    return ST_OK;
}

/* The output weight's gradient of the rows the logits buffer holds: their
 * logit gradients (from row 0, HEAD_ROWS at most, of one or more chunks and
 * micro-batches) and their inputs (head_h, head_h_bf), in one GEMM. */
static status_t head_dw_flush(model_stage *m, const float *w, float *dw)
{
    scratch *k = &m->s;
    int n = k->head_fill, C = m->cfg.d_model, V = m->nv, ld = m->Vl;
    k->head_fill = 0;
    if (!n || !V) return ST_OK;
    if (m->cfg.bf16)
        return model_stage_linear_backward_dout16(m, NULL, dw, NULL, k->logits_bf, ld, (lin_in){NULL, k->head_h_bf},
                                                  w, W_OUT_IN, n, C, V, 0);
    return model_stage_linear_backward(m, NULL, dw, NULL, k->logits, ld, lin_f32(k->head_h), w, W_OUT_IN, n, C, V, 0);
}

/* One chunk of n rows hc (n,C) of a bf16 stage's head, at row `at` of the
 * logits buffer: the logits in bf16, as autocast's linear writes them; the
 * cross-entropy reads them (the bias added in fp32) and leaves their
 * gradient in their place in bf16, which the backward GEMMs read as it is
 * (no fp32 gradient, no second copy): d(hc) now, the weight's gradient at
 * head_dw_flush (hc's bf16 copy waits in head_h_bf). */
static status_t head_chunk_bf16(model_stage *m, const float *w, const float *hc, float *dhc, int at, int n,
                                const int32_t *rows, const int32_t *targets, const float *bias, float *dbias,
                                float scale, const model_pass *pass, int *correct, double *loss)
{
    int C = m->cfg.d_model, V = m->nv, ld = m->Vl;
    bf16 *lg = m->s.logits_bf + (size_t)at * ld, *hb = m->s.head_h_bf + (size_t)at * C;
    if (V) TRY(model_stage_linear_forward_out16(m, lg, ld, (lin_in){hc, hb}, w, W_OUT_IN, n, C, V));
    if (pass->logits) {
        #pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) {
            float *dst = pass->logits + (size_t)rows[i] * V;
            const bf16 *src = lg + (size_t)i * ld;
            for (int v = 0; v < V; v++) dst[v] = bias ? bf16_value(src[v]) + bias[v] : bf16_value(src[v]);
        }
    }
    if (m->tp.size == 1)
        *loss += crossentropy_fused_bf16(lg, ld, bias, targets, n, V, scale, m->s.row_loss, correct);
    else
        TRY(parallel_crossentropy(m, NULL, lg, bias, n, targets, scale, correct, loss));
    if (pass->train && V)
        TRY(model_stage_linear_backward_dout16(m, dhc, NULL, dbias, lg, ld, (lin_in){NULL, hb}, w, W_OUT_IN, n, C, V,
                                               0));
    else if (pass->train)
        memset(dhc, 0, (size_t)n * C * sizeof(float));
    return ST_OK;
}

/* The same in fp32: the logits and their gradient in fp32, hc copied to
 * head_h for the weight's gradient. */
static status_t head_chunk(model_stage *m, const float *w, const float *hc, float *dhc, int at, int n,
                           const int32_t *rows, const int32_t *targets, const float *bias, float *dbias, float scale,
                           const model_pass *pass, int *correct, double *loss)
{
    int C = m->cfg.d_model, V = m->nv, ld = m->Vl;
    float *lf = m->s.logits + (size_t)at * ld;
    if (V) TRY(model_stage_linear_forward(m, lf, ld, lin_f32(hc), w, bias, W_OUT_IN, n, C, V));
    if (pass->logits)
        for (int i = 0; i < n; i++)
            memcpy(pass->logits + (size_t)rows[i] * V, lf + (size_t)i * ld, (size_t)V * sizeof(float));
    if (m->tp.size == 1)
        *loss += crossentropy_fused(lf, ld, targets, n, V, scale, m->s.row_loss, correct);
    else
        TRY(parallel_crossentropy(m, lf, NULL, NULL, n, targets, scale, correct, loss));
    if (!pass->train) return ST_OK;
    memcpy(m->s.head_h + (size_t)at * C, hc, (size_t)n * C * sizeof(float));
    if (V) TRY(model_stage_linear_backward(m, dhc, NULL, dbias, lf, ld, lin_f32(hc), w, W_OUT_IN, n, C, V, 0));
    else memset(dhc, 0, (size_t)n * C * sizeof(float));
    return ST_OK;
}

/* Logits of rows h (R,C) against the output weight w (V,C) — the tied
 * embedding, or Llama's lm_head; this rank's vocabulary slice — chunk by
 * chunk; fills pass->logits rows (at their batch positions)
 * if asked; when training, leaves d(loss)/d(h) in dh (R,C) (summed over the
 * tensor group) and adds to the bias grad now and to the weight's, dw, when
 * the logits buffer is full or the pass ends (not before a later pass with
 * pass->head_dw_wait: head_dw_flush). Adds the loss sum to *loss. */
static status_t tied_logits_loss(model_stage *m, const float *w, float *dw, const float *h, float *dh, int R,
                                 const int32_t *rows, const int32_t *targets, const float *bias,
                                 float *dbias, float scale, const model_pass *pass, int *correct,
                                 double *loss)
{
    int C = m->cfg.d_model;
    scratch *k = &m->s;
    FAIL_IF(k->head_fill && !pass->train, ST_ERROR,
            "model: the heads hold %d rows of a training step's gradient; an evaluation pass must wait for the "
            "step's last micro-batch", k->head_fill);
    for (int r0 = 0; r0 < R; r0 += HEAD_ROWS) {
        int n = R - r0 < HEAD_ROWS ? R - r0 : HEAD_ROWS;
        if (k->head_fill + n > HEAD_ROWS) TRY(head_dw_flush(m, w, dw));
        const float *hc = h + (size_t)r0 * C;
        status_t (*chunk)(model_stage *, const float *, const float *, float *, int, int, const int32_t *,
                          const int32_t *, const float *, float *, float, const model_pass *, int *, double *) =
            m->cfg.bf16 ? head_chunk_bf16 : head_chunk;
        TRY(chunk(m, w, hc, dh + (size_t)r0 * C, k->head_fill, n, rows + r0, targets + r0, bias, dbias, scale, pass,
                  correct, loss));
        if (pass->train) k->head_fill += n;
        model_poll(pass);
    }
    if (pass->train && !pass->head_dw_wait) TRY(head_dw_flush(m, w, dw));
    return pass->train ? model_tp_sum(m, dh, (size_t)R * C) : ST_OK;
}

static status_t check_label(const model_stage *m, int label, size_t pos)
{
    FAIL_IF(label >= m->cfg.vocab_size || (label < 0 && label != LABEL_IGNORE), ST_FORMAT,
            "model: label %d at sample %zu position %zu is neither a token id below %d nor -100",
            label, pos / m->cfg.seq_len, pos % m->cfg.seq_len, m->cfg.vocab_size);
    return ST_OK;
}

enum { ROW_GRANULE = 64 }; /* bf16: the head's row counts are multiples of this (or N) */

/* The rows that get logits: those with a target, or every row when the
 * caller wants all logits; *R of them, *valid with a target. *Rp >= *R rows
 * are computed: a bf16 stage pads the count up to a multiple of ROW_GRANULE
 * (at most N) with copies of row 0 that have no target, so the head's GEMMs
 * see a few shapes and not one per batch (BERT's masked-row count changes
 * every batch; each new shape would be a new oneDNN primitive). A padded row
 * has zero gradient: it adds nothing to any parameter and is not scattered
 * back. fp32 stages compute exactly the *R rows. */
static status_t select_rows(model_stage *m, const batch *b, const model_pass *pass, int *R, int *Rp,
                            int *valid)
{
    int N = m->B * m->cfg.seq_len, r = 0, v = 0;
    for (int i = 0; i < N; i++) {
        TRY(check_label(m, b->labels[i], (size_t)i));
        int has = b->labels[i] != LABEL_IGNORE;
        v += has;
        if (has || pass->logits) {
            m->s.rows[r] = i;
            m->s.row_targets[r++] = b->labels[i];
        }
    }
    *R = r;
    *valid = v;
    int p = m->cfg.bf16 && r > 0 ? (r + ROW_GRANULE - 1) / ROW_GRANULE * ROW_GRANULE : r;
    *Rp = p < N ? p : N;
    for (int i = r; i < *Rp; i++) {
        m->s.rows[i] = m->s.rows[0];
        m->s.row_targets[i] = LABEL_IGNORE;
    }
    return ST_OK;
}

static void gather_rows(float *dst, const float *src, const int32_t *rows, int R, int C)
{
    #pragma omp parallel for schedule(static)
    for (int r = 0; r < R; r++)
        memcpy(dst + (size_t)r * C, src + (size_t)rows[r] * C, (size_t)C * sizeof(float));
}

static void scatter_add_rows(float *dst, const float *src, const int32_t *rows, int R, int C)
{
    #pragma omp parallel for schedule(static)
    for (int r = 0; r < R; r++) {
        float *d = dst + (size_t)rows[r] * C;
        const float *s = src + (size_t)r * C;
        for (int c = 0; c < C; c++) d[c] += s[c];
    }
}

/* The output weight of the logits and its gradient: the tied embedding, or
 * Llama's lm_head when untied. */
static void out_weight(model_stage *m, float **w, float **dw)
{
    int untied = !model_tied(&m->cfg);
    *w = untied ? m->p.lm_head : m->p.wte;
    *dw = untied ? m->g.lm_head : m->g.wte;
}

status_t model_head_flush(model_stage *m, const model_pass *pass)
{
    FAIL_IF(!m->last, ST_ERROR, "model: model_head_flush on a stage without the heads (layers [%d, %d) of %d)",
            m->layer_begin, m->layer_end, m->cfg.n_layer);
    if (!m->s.head_fill) return ST_OK;
    model_stage_sync_bf16(m);
    float *w, *dw;
    out_weight(m, &w, &dw);
    TRY(head_dw_flush(m, w, dw));
    model_part_done(m, pass, m->n_local + 1);
    return ST_OK;
}

/* GPT: LN_f then the tied embedding; Llama: RMSNorm then lm_head (or the
 * tied embedding). */
static status_t lm_head(model_stage *m, slot_acts *s, const batch *b, const model_pass *pass,
                        model_losses *losses)
{
    int C = m->cfg.d_model, R, Rp, valid, llama = m->cfg.family == MODEL_LLAMA;
    const float *x = s->xs[m->n_local];
    TRY(select_rows(m, b, pass, &R, &Rp, &valid));
    gather_rows(m->s.h_in, x, m->s.rows, Rp, C);
    if (llama)
        rmsnorm_forward(m->s.h_l, m->s.h_rstd, m->s.h_in, m->p.lnf_w, Rp, C, m->cfg.norm_eps);
    else
        layernorm_forward(m->s.h_l, m->s.h_mean, m->s.h_rstd, m->s.h_in, m->p.lnf_w, m->p.lnf_b, Rp, C, 1e-5f);
    float scale = valid ? pass->loss_scale / (float)valid : 0.0f;
    float *w, *dw;
    out_weight(m, &w, &dw);
    TRY(tied_logits_loss(m, w, dw, m->s.h_l,
                         m->s.dh_l, Rp, m->s.rows, m->s.row_targets, NULL, NULL, scale, pass, &losses->lm_correct,
                         &losses->lm_loss_sum));
    losses->lm_count += valid;
    if (!pass->train) return ST_OK;
    memset(m->s.h_t, 0, (size_t)Rp * C * sizeof(float));
    if (llama)
        rmsnorm_backward(m->s.h_t, m->g.lnf_w, m->s.dh_l, m->s.h_in, m->p.lnf_w, m->s.h_rstd, Rp, C);
    else
        layernorm_backward(m->s.h_t, m->g.lnf_w, m->g.lnf_b, m->s.dh_l, m->s.h_in, m->p.lnf_w, m->s.h_mean,
                           m->s.h_rstd, Rp, C);
    memset(s->doutput, 0, (size_t)m->B * m->cfg.seq_len * C * sizeof(float));
    scatter_add_rows(s->doutput, m->s.h_t, m->s.rows, R, C);
    return ST_OK;
}

static status_t bert_mlm(model_stage *m, slot_acts *s, const batch *b, const model_pass *pass,
                         model_losses *losses)
{
    int C = m->cfg.d_model, R, Rp, valid;
    const float *x = s->xs[m->n_local];
    TRY(select_rows(m, b, pass, &R, &Rp, &valid));
    scratch *k = &m->s;
    gather_rows(k->h_in, x, k->rows, Rp, C);
    TRY(model_stage_linear_forward(m, k->h_t, C, lin_f32(k->h_in), m->p.tr_w, m->p.tr_b, W_OUT_IN, Rp, C, C));
    gelu_forward(k->h_g, k->h_t, (size_t)Rp * C, GELU_ERF);
    layernorm_forward(k->h_l, k->h_mean, k->h_rstd, k->h_g, m->p.tr_ln_w, m->p.tr_ln_b, Rp, C,
                      1e-12f);
    float scale = valid ? pass->loss_scale / (float)valid : 0.0f;
    TRY(tied_logits_loss(m, m->p.wte, m->g.wte, k->h_l, k->dh_l, Rp, k->rows, k->row_targets, m->p.dec_b, m->g.dec_b,
                         scale, pass, &losses->mlm_correct, &losses->mlm_loss_sum));
    losses->mlm_count += valid;
    if (!pass->train) return ST_OK;
    memset(k->dh_g, 0, (size_t)Rp * C * sizeof(float));
    layernorm_backward(k->dh_g, m->g.tr_ln_w, m->g.tr_ln_b, k->dh_l, k->h_g, m->p.tr_ln_w,
                       k->h_mean, k->h_rstd, Rp, C);
    gelu_backward(k->dh_g, NULL, k->h_t, k->dh_g, (size_t)Rp * C, GELU_ERF);
    TRY(model_stage_linear_backward(m, k->dh_l, m->g.tr_w, m->g.tr_b, k->dh_g, C, lin_f32(k->h_in), m->p.tr_w, W_OUT_IN, Rp,
                              C, C, 0));
    scatter_add_rows(s->doutput, k->dh_l, k->rows, R, C);
    return ST_OK;
}

static status_t bert_nsp(model_stage *m, slot_acts *s, const batch *b, const model_pass *pass,
                         model_losses *losses)
{
    int B = m->B, T = m->cfg.seq_len, C = m->cfg.d_model;
    scratch *k = &m->s;
    const float *x = s->xs[m->n_local];
    int valid = 0;
    for (int i = 0; i < B; i++) {
        int y = b->next_sentence_label[i];
        FAIL_IF(y != LABEL_IGNORE && (y < 0 || y > 1), ST_FORMAT,
                "model: NSP label %d of sample %d (expected 0 = next, 1 = random, or -100 = none)", y, i);
        valid += y != LABEL_IGNORE;
        memcpy(k->pool_in + (size_t)i * C, x + (size_t)i * T * C, (size_t)C * sizeof(float));
    }
    TRY(model_stage_linear_forward(m, k->pool, C, lin_f32(k->pool_in), m->p.pool_w, m->p.pool_b, W_OUT_IN, B, C, C));
    for (size_t i = 0; i < (size_t)B * C; i++) k->pool[i] = tanhf(k->pool[i]);
    TRY(model_stage_linear_forward(m, k->nsp, 2, lin_f32(k->pool), m->p.nsp_w, m->p.nsp_b, W_OUT_IN, B, C, 2));
    if (pass->nsp_logits) memcpy(pass->nsp_logits, k->nsp, (size_t)B * 2 * sizeof(float));
    float scale = valid ? pass->loss_scale / (float)valid : 0.0f;
    losses->nsp_loss_sum += crossentropy_fused(k->nsp, 2, b->next_sentence_label, B, 2, scale,
                                               k->row_loss, &losses->nsp_correct);
    losses->nsp_count += valid;
    if (!pass->train) return ST_OK;
    TRY(model_stage_linear_backward(m, k->dpool, m->g.nsp_w, m->g.nsp_b, k->nsp, 2, lin_f32(k->pool), m->p.nsp_w, W_OUT_IN,
                    B, C, 2, 0));
    for (size_t i = 0; i < (size_t)B * C; i++) k->dpool[i] *= 1.0f - k->pool[i] * k->pool[i];
    TRY(model_stage_linear_backward(m, k->dpool_in, m->g.pool_w, m->g.pool_b, k->dpool, C, lin_f32(k->pool_in), m->p.pool_w,
                    W_OUT_IN, B, C, C, 0));
    for (int i = 0; i < B; i++) {
        float *d = s->doutput + (size_t)i * T * C;
        for (int c = 0; c < C; c++) d[c] += k->dpool_in[(size_t)i * C + c];
    }
    return ST_OK;
}

status_t model_head_forward(model_stage *m, int slot, const batch *b, const model_pass *pass,
                      model_losses *losses)
{
    slot_acts *s = &m->slots[slot];
    if (model_causal(&m->cfg)) return lm_head(m, s, b, pass, losses);
    memset(s->doutput, 0, (size_t)m->B * m->cfg.seq_len * m->cfg.d_model * sizeof(float));
    TRY(bert_mlm(m, s, b, pass, losses));
    return bert_nsp(m, s, b, pass, losses);
}

/* model/ffn2d — the FFN of a block in 2d tensor-parallel mode: its two
 * linears as GEMMs over the tensor group's process grid (model_tp.gemm), the
 * weights and the hidden (N, d_ff) activation block-cyclic (model.h), the
 * input cut locally from the replicated residual stream, the output and the
 * input gradient gathered back to replicated (model_tp.gather). Biases are
 * replicated; the FFN-in bias gradient is the group sum of each rank's column
 * sums placed at their global columns. */
#include <string.h>

#include "model/model_internal.h"
#include "tensor/block_cyclic.h"

static void grid_pos(const model_stage *m, int *prow, int *pcol)
{
    *prow = m->tp.rank / m->tp.grid_q;
    *pcol = m->tp.rank % m->tp.grid_q;
}

/* local (packed) = this rank's part of full (rows x cols, row-major). */
static model_dmat dmat_cut(const model_stage *m, float *local, const float *full, int rows, int cols)
{
    int prow, pcol, lr, lc, nb = m->tp.block;
    grid_pos(m, &prow, &pcol);
    model_dmat_local(&m->tp, rows, cols, &lr, &lc);
    for (int i = 0; i < lr; i++) {
        const float *row = full + (size_t)block_cyclic_global(i, nb, pcol, m->tp.grid_q) * cols;
        for (int j = 0; j < lc; j += nb) {
            int n = lc - j < nb ? lc - j : nb;
            memcpy(local + (size_t)i * lc + j, row + block_cyclic_global(j, nb, prow, m->tp.grid_p),
                   (size_t)n * sizeof *local);
        }
    }
    return (model_dmat){rows, cols, local};
}

/* The linear's weight as a distributed matrix: (in, out) for GPT's Conv1D,
 * (out, in) for BERT's nn.Linear. */
static model_dmat weight_of(const model_stage *m, float *w, int in, int out)
{
    int io = m->cfg.family == MODEL_GPT;
    return (model_dmat){io ? in : out, io ? out : in, w};
}

static int weight_io(const model_stage *m) { return m->cfg.family == MODEL_GPT; }

/* y (N, out) = x w */
static status_t dlinear_forward(const model_stage *m, const model_dmat *y, const model_dmat *x, const model_dmat *w)
{
    return m->tp.gemm(m->tp.ctx, 0, !weight_io(m), 1.0f, x, w, 0.0f, y);
}

/* dw += d(w) and, when dx is not NULL, dx = d(x), from dy. */
static status_t dlinear_backward(const model_stage *m, const model_dmat *dx, const model_dmat *dw,
                                 const model_dmat *dy, const model_dmat *x, const model_dmat *w)
{
    int io = weight_io(m);
    TRY(m->tp.gemm(m->tp.ctx, 1, 0, 1.0f, io ? x : dy, io ? dy : x, 1.0f, dw));
    return dx ? m->tp.gemm(m->tp.ctx, 0, io, 1.0f, dy, w, 0.0f, dx) : ST_OK;
}

/* h += bias at each local column's global column. */
static void add_col_bias(const model_stage *m, float *h, const float *bias, int lr, int lc)
{
    int prow, pcol;
    grid_pos(m, &prow, &pcol);
    for (int i = 0; i < lr; i++)
        for (int j = 0; j < lc; j++) h[(size_t)i * lc + j] += bias[block_cyclic_global(j, m->tp.block, prow, m->tp.grid_p)];
}

status_t model_ffn2d_forward(model_stage *m, const block_params *p, const block_acts *a, const float *ffn_in, float *out,
                       gelu_kind gelu)
{
    int N = m->B * m->cfg.seq_len, C = m->cfg.d_model, F = m->cfg.d_ff, lr, lc;
    model_dmat x = dmat_cut(m, m->s.dm_x, ffn_in, N, C), y = {N, C, m->s.dm_y};
    model_dmat h = {N, F, a->fch}, g = {N, F, a->fch_gelu};
    model_dmat w1 = weight_of(m, p->fc_w, C, F), w2 = weight_of(m, p->fc2_w, F, C);
    TRY(dlinear_forward(m, &h, &x, &w1));
    model_dmat_local(&m->tp, N, F, &lr, &lc);
    add_col_bias(m, a->fch, p->fc_b, lr, lc);
    gelu_forward(a->fch_gelu, a->fch, m->nh, gelu);
    TRY(dlinear_forward(m, &y, &g, &w2));
    TRY(m->tp.gather(m->tp.ctx, &y, out));
    for (int n = 0; n < N; n++)
        for (int o = 0; o < C; o++) out[(size_t)n * C + o] += p->fc2_b[o];
    return ST_OK;
}

/* db (F) += the column sums of dh: each rank's at their global columns, then
 * the group's sum (every element of dh lives on one rank). */
static status_t col_bias_backward(model_stage *m, float *db, const float *dh, int lr, int lc)
{
    int prow, pcol, F = m->cfg.d_ff;
    grid_pos(m, &prow, &pcol);
    float *sum = m->s.dm_bias;
    memset(sum, 0, (size_t)F * sizeof *sum);
    for (int i = 0; i < lr; i++)
        for (int j = 0; j < lc; j++) sum[block_cyclic_global(j, m->tp.block, prow, m->tp.grid_p)] += dh[(size_t)i * lc + j];
    TRY(model_tp_sum(m, sum, (size_t)F));
    for (int f = 0; f < F; f++) db[f] += sum[f];
    return ST_OK;
}

status_t model_ffn2d_backward(model_stage *m, const block_params *p, const block_params *g, const block_acts *a,
                        const float *ffn_in, float *dy_full, float *dacc, gelu_kind gelu)
{
    int N = m->B * m->cfg.seq_len, C = m->cfg.d_model, F = m->cfg.d_ff, lr, lc;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < C; o++) g->fc2_b[o] += dy_full[(size_t)n * C + o];
    model_dmat dy = dmat_cut(m, m->s.dm_y, dy_full, N, C), x = dmat_cut(m, m->s.dm_x, ffn_in, N, C);
    model_dmat h = {N, F, a->fch}, gl = {N, F, a->fch_gelu}, dh = {N, F, m->s.dfch};
    model_dmat w1 = weight_of(m, p->fc_w, C, F), w2 = weight_of(m, p->fc2_w, F, C);
    model_dmat dw1 = weight_of(m, g->fc_w, C, F), dw2 = weight_of(m, g->fc2_w, F, C);
    gelu_forward(a->fch_gelu, a->fch, m->nh, gelu);
    TRY(dlinear_backward(m, &dh, &dw2, &dy, &gl, &w2));
    gelu_backward(m->s.dfch, NULL, h.data, m->s.dfch, m->nh, gelu);
    model_dmat_local(&m->tp, N, F, &lr, &lc);
    TRY(col_bias_backward(m, g->fc_b, m->s.dfch, lr, lc));
    TRY(dlinear_backward(m, NULL, &dw1, &dh, &x, &w1));
    /* x's local part is spent: d(x) takes its place, then gathers into dy_full */
    model_dmat dx = {N, C, m->s.dm_x};
    TRY(m->tp.gemm(m->tp.ctx, 0, weight_io(m), 1.0f, &dh, &w1, 0.0f, &dx));
    TRY(m->tp.gather(m->tp.ctx, &dx, dy_full));
    for (size_t i = 0; i < (size_t)N * C; i++) dacc[i] += dy_full[i];
    return ST_OK;
}

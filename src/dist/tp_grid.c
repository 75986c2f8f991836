/* dist/tp_grid — the 2d tensor-parallel model's grid operations (model_tp's
 * tensor_gemm and gather) over dist/pgemm on the tensor-parallel communicator. The
 * model hands shapes and local arrays; each shape's layout (descriptor,
 * counts, gather buffer) is made once here and its data pointer set per
 * call, so no operand is copied. */
#include <stdlib.h>

#include "dist/dist_internal.h"
#include "dist/pgemm.h"

enum { N_SHAPES = 4 };

struct dist_tp_grid {
    pgemm_grid *grid;
    int block;
    pgemm_matrix shapes[N_SHAPES]; /* (N,C), (N,F), (C,F), (F,C); data NULL */
};

/* Bytes one rank receives in the FFN's six GEMMs of a micro-batch on a P x Q
 * grid (pgemm_run_bytes; N tokens, C = d_model, F = d_ff). */
static uint64_t ffn_bytes(int P, int Q, int N, int C, int F)
{
    return pgemm_run_bytes(P, Q, N, F, C) + pgemm_run_bytes(P, Q, N, C, F)  /* forward */
           + pgemm_run_bytes(P, Q, F, C, N) + pgemm_run_bytes(P, Q, C, F, N) /* weight gradients */
           + pgemm_run_bytes(P, Q, N, C, F) + pgemm_run_bytes(P, Q, N, F, C); /* input gradients */
}

status_t dist_tp_grid_shape(int t, int N, int C, int F, int *P, int *Q)
{
    TRY(pgemm_grid_dims(t, P, Q));
    if (ffn_bytes(*Q, *P, N, C, F) < ffn_bytes(*P, *Q, N, C, F)) {
        int p = *P;
        *P = *Q;
        *Q = p;
    }
    return ST_OK;
}

void dist_tp_grid_free(dist_tp_grid *g)
{
    if (!g) return;
    for (int i = 0; i < N_SHAPES; i++)
        if (g->shapes[i].grid) pgemm_matrix_free(&g->shapes[i]);
    pgemm_grid_free(g->grid);
    free(g);
}

status_t dist_tp_grid_create(dist_tp_grid **out, MPI_Comm comm, const model_config *mc, int N, model_tp *tp)
{
    *out = NULL;
    dist_tp_grid *g = calloc(1, sizeof *g);
    FAIL_IF(!g, ST_NOMEM, "dist: out of memory for the 2d tensor-parallel grid");
    int t, P = 0, Q = 0, prow, pcol, C = mc->d_model, F = mc->d_ff;
    MPI_Comm_size(comm, &t);
    status_t st = dist_tp_grid_shape(t, N, C, F, &P, &Q);
    if (st == ST_OK) st = pgemm_grid_create_pq(&g->grid, comm, P, Q);
    if (st == ST_OK) pgemm_grid_shape(g->grid, &P, &Q, &prow, &pcol);
    int least = N < C ? N : C, block = pgemm_block_choose(P, Q, least < F ? least : F);
    /* the weights' blocks deal evenly over the process rows and columns, so
     * every rank holds 1/t of them (768 in blocks of 256 over 2 would leave
     * one rank 2/3) */
    while (block > 32 && P > 0 && (C % (block * P) || C % (block * Q) || F % (block * P) || F % (block * Q)))
        block /= 2;
    int dims[N_SHAPES][2] = {{N, C}, {N, F}, {C, F}, {F, C}};
    for (int i = 0; st == ST_OK && i < N_SHAPES; i++) {
        st = pgemm_matrix_create(&g->shapes[i], g->grid, dims[i][0], dims[i][1], block, block);
        if (st == ST_OK) {
            free(g->shapes[i].data); /* the model's arrays take its place */
            g->shapes[i].data = NULL;
        }
    }
    if (st != ST_OK) {
        dist_tp_grid_free(g);
        return st;
    }
    tp->grid_p = P;
    tp->grid_q = Q;
    tp->block = g->block = block;
    *out = g;
    return ST_OK;
}

void dist_tp_grid_describe(const dist_tp_grid *g, int *P, int *Q, int *block)
{
    int prow, pcol;
    pgemm_grid_shape(g->grid, P, Q, &prow, &pcol);
    *block = g->block;
}

static pgemm_matrix *shape_of(dist_tp_grid *g, const model_dmat *a)
{
    for (int i = 0; i < N_SHAPES; i++)
        if (g->shapes[i].rows == a->rows && g->shapes[i].cols == a->cols) return &g->shapes[i];
    return NULL;
}

/* The layout of a's shape over a's data (a copy: one shape may serve two
 * operands of a product). */
static status_t operand(dist_tp_grid *g, const model_dmat *a, pgemm_matrix *out)
{
    pgemm_matrix *s = shape_of(g, a);
    FAIL_IF(!s, ST_ERROR, "dist: the 2d grid has no layout for a %d x %d matrix (expected the FFN's shapes)", a->rows,
            a->cols);
    *out = *s;
    out->data = a->data;
    return ST_OK;
}

status_t dist_tp_grid_gemm(void *grid, int ta, int tb, float alpha, const model_dmat *A, const model_dmat *B, float beta,
                           const model_dmat *C)
{
    pgemm_matrix a, b, c;
    TRY(operand(grid, A, &a));
    TRY(operand(grid, B, &b));
    TRY(operand(grid, C, &c));
    return pgemm_run(ta, tb, alpha, &a, &b, beta, &c);
}

status_t dist_tp_grid_gather(void *grid, const model_dmat *A, float *full)
{
    pgemm_matrix *s = shape_of(grid, A);
    FAIL_IF(!s, ST_ERROR, "dist: the 2d grid has no layout for a %d x %d matrix (expected the FFN's shapes)", A->rows,
            A->cols);
    s->data = A->data;
    status_t st = pgemm_gather(s, full, A->cols);
    s->data = NULL;
    return st;
}

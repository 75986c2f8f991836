/* dist/pgemm — psgemm on a BLACS grid of a given communicator; see pgemm.h
 * for the layout (a row-major matrix is handed to ScaLAPACK as its column-major
 * transpose) and docs/design.md for the measured block size. */
#include "dist/pgemm.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/block_cyclic.h"

/* BLACS (C interface) and ScaLAPACK (Fortran) entry points; Debian ships no
 * header for them. Integers are 32-bit (LP64 build). */
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *context, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int context, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int context);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc,
               const int *icsrc, const int *context, const int *lld, int *info);
void psgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k, const float *alpha,
             const float *a, const int *ia, const int *ja, const int *desca, const float *b, const int *ib,
             const int *jb, const int *descb, const float *beta, float *c, const int *ic, const int *jc,
             const int *descc);

/* PBLAS's logical block size: the width of the K panels psgemm multiplies
 * locally in each step (pilaenv_, 32 in the reference PBLAS, which asks users
 * to tune it). Rank-32 updates keep BLIS far from its peak (its own K blocking
 * is about 256), so mpilm defines pilaenv_ to answer for the product in
 * progress the smallest multiple of its block size of at least
 * PGEMM_PANEL_MIN columns: fewer, wider steps. Measured on gpt2-small's FFN
 * at t = 2 (2 x 1, block 128; fastest call of each GEMM over 10 steps, rank
 * 0): the six GEMMs of a layer 67.4-67.8 ms with panels of 128, 62.4-63.0
 * ms with 512 or 3072 (docs/design.md). */
enum { PGEMM_PANEL_MIN = 512 };
static _Thread_local int panel_width;

int pilaenv_(const int *context, const char *precision)
{
    (void)context;
    (void)precision;
    return panel_width > 0 ? panel_width : 32;
}

struct pgemm_grid {
    MPI_Comm comm;         /* duplicate of the communicator given */
    MPI_Comm row_comm;     /* the P ranks of this process column, rank = process row */
    int context;           /* BLACS context of the P x Q grid */
    int P, Q, prow, pcol;
    int size, rank;
};

status_t pgemm_grid_dims(int t, int *P, int *Q)
{
    FAIL_IF(t < 1, ST_CONFIG, "dist.tp: %d tensor-parallel ranks cannot form a grid (expected >= 1)", t);
    int p = 1;
    for (int d = 2; d * d <= t; d++)
        if (t % d == 0) p = d;
    FAIL_IF(p == 1 && t >= 5, ST_CONFIG,
            "dist.tp: %d ranks (a prime) have no 2D grid but 1 x %d (expected 1, 2, 3 or a composite "
            "number such as 4, 6, 8, 9); choose such a dist.tp or dist.tp_mode = 1d",
            t, t);
    *P = p;
    *Q = t / p;
    return ST_OK;
}

int pgemm_block_choose(int P, int Q, int min_dim)
{
    int most = P > Q ? P : Q, b = PGEMM_BLOCK_DEFAULT;
    while (b > 32 && min_dim / b < most) b /= 2;
    return b;
}

status_t pgemm_grid_create(pgemm_grid **out, MPI_Comm comm)
{
    *out = NULL;
    int size, P = 0, Q = 0;
    FAIL_IF(comm == MPI_COMM_NULL, ST_ERROR, "pgemm: no communicator given for the grid (MPI_COMM_NULL)");
    MPI_Comm_size(comm, &size);
    TRY(pgemm_grid_dims(size, &P, &Q));
    return pgemm_grid_create_pq(out, comm, P, Q);
}

status_t pgemm_grid_create_pq(pgemm_grid **out, MPI_Comm comm, int P, int Q)
{
    *out = NULL;
    int size, rank;
    FAIL_IF(comm == MPI_COMM_NULL, ST_ERROR, "pgemm: no communicator given for the grid (MPI_COMM_NULL)");
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(comm, &rank);
    FAIL_IF(P < 1 || Q < 1 || P * Q != size, ST_ERROR,
            "pgemm: a %d x %d grid over %d ranks (expected P, Q >= 1 and P x Q = the communicator's size)", P, Q,
            size);
    pgemm_grid *g = calloc(1, sizeof *g);
    FAIL_IF(!g, ST_NOMEM, "pgemm: out of memory for a grid");
    g->context = -1;
    g->comm = g->row_comm = MPI_COMM_NULL;
    if (MPI_Comm_dup(comm, &g->comm) != MPI_SUCCESS ||
        MPI_Comm_split(g->comm, rank % Q, rank / Q, &g->row_comm) != MPI_SUCCESS) {
        pgemm_grid_free(g);
        return st_fail(ST_MPI, "pgemm: MPI_Comm_dup or MPI_Comm_split of the tensor-parallel communicator failed");
    }
    /* The system handle only names comm while the grid is made: Cblacs_gridinit
     * builds the grid's own communicators from it. It is released at once,
     * because BLACS hands the same slot to every grid of one communicator. */
    int handle = Csys2blacs_handle(g->comm);
    g->context = handle;
    Cblacs_gridinit(&g->context, "Row", P, Q);
    Cfree_blacs_system_handle(handle);
    Cblacs_gridinfo(g->context, &g->P, &g->Q, &g->prow, &g->pcol);
    g->size = size;
    g->rank = rank;
    if (g->P != P || g->Q != Q || g->prow != rank / Q || g->pcol != rank % Q) {
        status_t st = st_fail(ST_MPI,
                              "pgemm: BLACS placed rank %d at (%d, %d) of %d x %d (expected (%d, %d) of %d x %d)", rank,
                              g->prow, g->pcol, g->P, g->Q, rank / Q, rank % Q, P, Q);
        pgemm_grid_free(g);
        return st;
    }
    *out = g;
    return ST_OK;
}

void pgemm_grid_free(pgemm_grid *g)
{
    if (!g) return;
    if (g->context >= 0) Cblacs_gridexit(g->context);
    if (g->row_comm != MPI_COMM_NULL) MPI_Comm_free(&g->row_comm);
    if (g->comm != MPI_COMM_NULL) MPI_Comm_free(&g->comm);
    free(g);
}

void pgemm_grid_shape(const pgemm_grid *g, int *P, int *Q, int *prow, int *pcol)
{
    *P = g->P;
    *Q = g->Q;
    *prow = g->prow;
    *pcol = g->pcol;
}

MPI_Comm pgemm_grid_comm(const pgemm_grid *g) { return g->comm; }

MPI_Comm pgemm_grid_row_comm(const pgemm_grid *g) { return g->row_comm; }

/* Local rows and cols of rank r of the grid (rows over Q, cols over P). */
static void local_shape(const pgemm_matrix *a, int r, int *lr, int *lc)
{
    const pgemm_grid *g = a->grid;
    int zero = 0, prow = r / g->Q, pcol = r % g->Q;
    *lr = numroc_(&a->rows, &a->row_block, &pcol, &zero, &g->Q);
    *lc = numroc_(&a->cols, &a->col_block, &prow, &zero, &g->P);
}

static status_t matrix_layout(pgemm_matrix *a)
{
    const pgemm_grid *g = a->grid;
    int zero = 0, info = 0, total = 0;
    for (int r = 0; r < g->size; r++) {
        int lr, lc;
        local_shape(a, r, &lr, &lc);
        a->counts[r] = lr * lc;
        a->displs[r] = total;
        total += lr * lc;
    }
    local_shape(a, g->rank, &a->local_rows, &a->local_cols);
    a->ld = a->local_cols > 0 ? a->local_cols : 1;
    descinit_(a->desc, &a->cols, &a->rows, &a->col_block, &a->row_block, &zero, &zero, &g->context, &a->ld, &info);
    FAIL_IF(info != 0, ST_ERROR, "pgemm: descinit_ refused a %d x %d matrix in %d x %d blocks (argument %d)", a->rows,
            a->cols, a->row_block, a->col_block, -info);
    return ST_OK;
}

status_t pgemm_matrix_create(pgemm_matrix *a, const pgemm_grid *g, int rows, int cols, int row_block, int col_block)
{
    memset(a, 0, sizeof *a);
    FAIL_IF(rows < 1 || cols < 1 || row_block < 1 || col_block < 1, ST_ERROR,
            "pgemm: matrix %d x %d in blocks of %d x %d (expected every size >= 1)", rows, cols, row_block, col_block);
    FAIL_IF((int64_t)rows * cols > INT_MAX, ST_ERROR,
            "pgemm: matrix %d x %d has more than %d elements (MPI counts are int); split it", rows, cols, INT_MAX);
    a->grid = g;
    a->rows = rows;
    a->cols = cols;
    a->row_block = row_block;
    a->col_block = col_block;
    a->counts = calloc((size_t)g->size, sizeof *a->counts);
    a->displs = calloc((size_t)g->size, sizeof *a->displs);
    if (!a->counts || !a->displs) {
        pgemm_matrix_free(a);
        return st_fail(ST_NOMEM, "pgemm: out of memory for a %d x %d matrix's layout", rows, cols);
    }
    status_t st = matrix_layout(a);
    if (st == ST_OK) {
        a->data = calloc((size_t)(a->local_rows > 0 ? a->local_rows : 1) * (size_t)a->ld, sizeof *a->data);
        if (!a->data) st = st_fail(ST_NOMEM, "pgemm: out of memory for the local part of a %d x %d matrix", rows, cols);
    }
    if (st != ST_OK) pgemm_matrix_free(a);
    return st;
}

void pgemm_matrix_free(pgemm_matrix *a)
{
    free(a->data);
    free(a->counts);
    free(a->displs);
    free(a->gather_buf);
    memset(a, 0, sizeof *a);
}

int pgemm_matrix_global_row(const pgemm_matrix *a, int i)
{
    return block_cyclic_global(i, a->row_block, a->grid->pcol, a->grid->Q);
}

int pgemm_matrix_global_col(const pgemm_matrix *a, int j)
{
    return block_cyclic_global(j, a->col_block, a->grid->prow, a->grid->P);
}

/* Copies between a local part (lr x lc, row stride ld, of process (prow,
 * pcol)) and the full array, one run of a column block at a time. to_full:
 * direction. */
static void copy_part(const pgemm_matrix *a, int prow, int pcol, float *part, int lr, int lc, int ld, float *full,
                      int ldf, int to_full)
{
    const pgemm_grid *g = a->grid;
    for (int i = 0; i < lr; i++) {
        float *row = full + (size_t)block_cyclic_global(i, a->row_block, pcol, g->Q) * (size_t)ldf;
        for (int j = 0; j < lc; j += a->col_block) {
            int n = lc - j < a->col_block ? lc - j : a->col_block;
            float *f = row + block_cyclic_global(j, a->col_block, prow, g->P), *p = part + (size_t)i * ld + j;
            memcpy(to_full ? f : p, to_full ? p : f, (size_t)n * sizeof *f);
        }
    }
}

status_t pgemm_extract(pgemm_matrix *a, const float *full, int ldf)
{
    FAIL_IF(ldf < a->cols, ST_ERROR, "pgemm: extract from rows of %d floats (expected >= the matrix's %d columns)", ldf,
            a->cols);
    copy_part(a, a->grid->prow, a->grid->pcol, a->data, a->local_rows, a->local_cols, a->ld, (float *)full, ldf, 0);
    return ST_OK;
}

status_t pgemm_gather(pgemm_matrix *a, float *full, int ldf)
{
    const pgemm_grid *g = a->grid;
    FAIL_IF(ldf < a->cols, ST_ERROR, "pgemm: gather into rows of %d floats (expected >= the matrix's %d columns)", ldf,
            a->cols);
    if (!a->gather_buf) {
        a->gather_buf = malloc((size_t)a->rows * (size_t)a->cols * sizeof *a->gather_buf);
        FAIL_IF(!a->gather_buf, ST_NOMEM, "pgemm: out of memory for gathering a %d x %d matrix", a->rows, a->cols);
    }
    /* ld = local_cols whenever the part is not empty, so each part is packed. */
    int rc = MPI_Allgatherv(a->data, a->local_rows * a->local_cols, MPI_FLOAT, a->gather_buf, a->counts, a->displs,
                            MPI_FLOAT, g->comm);
    FAIL_IF(rc != MPI_SUCCESS, ST_MPI, "pgemm: MPI_Allgatherv of a %d x %d matrix failed (code %d)", a->rows, a->cols,
            rc);
    for (int r = 0; r < g->size; r++) {
        int lr, lc;
        local_shape(a, r, &lr, &lc);
        copy_part(a, r / g->Q, r % g->Q, a->gather_buf + a->displs[r], lr, lc, lc, full, ldf, 1);
    }
    return ST_OK;
}

/* Rows and cols of op(X). */
static void op_shape(const pgemm_matrix *x, int t, int *r, int *c)
{
    *r = t ? x->cols : x->rows;
    *c = t ? x->rows : x->cols;
}

status_t pgemm_run(int ta, int tb, float alpha, const pgemm_matrix *A, const pgemm_matrix *B, float beta,
                   pgemm_matrix *C)
{
    FAIL_IF(A->grid != C->grid || B->grid != C->grid, ST_ERROR,
            "pgemm: operands on different grids (expected A, B and C on one grid); create them on the same pgemm_grid");
    int am, ak, bk, bn;
    op_shape(A, ta, &am, &ak);
    op_shape(B, tb, &bk, &bn);
    FAIL_IF(ak != bk || am != C->rows || bn != C->cols, ST_ERROR,
            "pgemm: op(A) %d x %d times op(B) %d x %d into C %d x %d (expected inner sizes equal and C %d x %d)", am,
            ak, bk, bn, C->rows, C->cols, am, bn);
    /* Row-major C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ. */
    int one = 1, M = C->cols, N = C->rows, K = ak;
    const char *tra = tb ? "T" : "N", *trb = ta ? "T" : "N";
    panel_width = C->col_block * ((PGEMM_PANEL_MIN + C->col_block - 1) / C->col_block);
    psgemm_(tra, trb, &M, &N, &K, &alpha, B->data, &one, &one, B->desc, A->data, &one, &one, A->desc, &beta, C->data,
            &one, &one, C->desc);
    panel_width = 0;
    return ST_OK;
}

uint64_t pgemm_gather_bytes(const pgemm_matrix *a)
{
    return ((uint64_t)a->rows * (uint64_t)a->cols - (uint64_t)a->local_rows * (uint64_t)a->local_cols) * sizeof(float);
}

uint64_t pgemm_run_bytes(int P, int Q, int M, int N, int K)
{
    double along_rows = (double)(P - 1) / P / Q, along_cols = (double)(Q - 1) / Q / P;
    double keep_c = (double)M * K * along_rows + (double)K * N * along_cols;
    double keep_a = (double)K * N * along_cols + (double)M * N * along_rows;
    double keep_b = (double)M * K * along_rows + (double)M * N * along_cols;
    double b = keep_c < keep_a ? keep_c : keep_a;
    return (uint64_t)((b < keep_b ? b : keep_b) * sizeof(float));
}

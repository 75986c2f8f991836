/* dist/pgemm under mpirun (grids 1x1, 1x2, 2x2): psgemm equals BLIS sgemm on
 * the full matrices for the transposes of a linear layer and odd sizes;
 * extract then gather round-trips bit-exactly; bad input is refused; with 4
 * ranks, two groups of 2 run independent pgemms at the same time on grids of
 * their own communicators. Exit 0 = as expected. */
// mpirun-np: 1 2 4
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "dist/pgemm.h"
#include "tensor/tensor.h"

#include "../common/mpi_check.h"


/* The same n values in [-1, 1) on every rank, from seed. */
static float *random_floats(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof *x);
    rng_key key = rng_key_make(seed, RNG_TEST);
    for (size_t i = 0; i < n; i++) {
        uint32_t bits[4];
        rng_bits(key, i, 0, 0, bits);
        x[i] = 2.0f * rng_uniform(bits[0]) - 1.0f;
    }
    return x;
}

/* The byte model: nothing on one rank; on 1 x 2 the FFN-in forward moves
 * half of the weight (768 x 3072 / 2 floats); on 2 x 2 the cheapest variant. */
static void check_bytes_model(void)
{
    CHECK(pgemm_run_bytes(1, 1, 2048, 3072, 768) == 0, "1 x 1 moves nothing");
    CHECK(pgemm_run_bytes(1, 2, 2048, 3072, 768) == 768u * 3072 / 2 * 4, "1 x 2: %llu",
          (unsigned long long)pgemm_run_bytes(1, 2, 2048, 3072, 768));
    /* 2 x 2, M = N = K = 100: every variant moves two 100 x 100 matrices a quarter each */
    CHECK(pgemm_run_bytes(2, 2, 100, 100, 100) == 2 * 2500 * 4, "2 x 2: %llu",
          (unsigned long long)pgemm_run_bytes(2, 2, 100, 100, 100));
}

/* gpt2-small's C = 768 keeps the default up to 3 process rows or columns. */
static void check_block_choice(void)
{
    static const int want[][4] = {{1, 1, 768, 256}, {2, 2, 768, 256}, {3, 3, 768, 256}, {4, 4, 768, 128},
                                  {8, 8, 768, 64},  {8, 8, 50304, 256}, {16, 16, 768, 32}, {1, 2, 10, 32}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int b = pgemm_block_choose(want[i][0], want[i][1], want[i][2]);
        CHECK(b == want[i][3], "%d x %d, dimension %d: block %d, expected %d", want[i][0], want[i][1], want[i][2], b,
              want[i][3]);
    }
}

static void check_dims(void)
{
    static const int want[][3] = {{1, 1, 1}, {2, 1, 2}, {3, 1, 3}, {4, 2, 2}, {6, 2, 3},
                                  {8, 2, 4}, {9, 3, 3}, {12, 3, 4}, {64, 8, 8}, {96, 8, 12}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int P = 0, Q = 0;
        status_t st = pgemm_grid_dims(want[i][0], &P, &Q);
        CHECK(st == ST_OK && P == want[i][1] && Q == want[i][2], "t=%d: grid %d x %d (%s), expected %d x %d",
              want[i][0], P, Q, st_message(), want[i][1], want[i][2]);
    }
    static const int refused[] = {0, -2, 5, 7, 11, 13, 61};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        int P, Q;
        status_t st = pgemm_grid_dims(refused[i], &P, &Q);
        CHECK(st == ST_CONFIG && strstr(st_message(), "dist.tp"), "t=%d: expected refusal, got %s: %s", refused[i],
              st_name(st), st_message());
    }
}

/* A rows x cols matrix on g holding full (row-major, row stride cols). */
static pgemm_matrix distributed(const pgemm_grid *g, const float *full, int rows, int cols, int block)
{
    pgemm_matrix m;
    ok_or_die(pgemm_matrix_create(&m, g, rows, cols, block, block), "matrix");
    ok_or_die(pgemm_extract(&m, full, cols), "extract");
    return m;
}

/* got equals want within 1e-5 of want's largest element. */
static void check_close(const char *what, const float *got, const float *want, size_t n)
{
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)got[i] - want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    CHECK(worst <= 1e-5 * scale, "%s: max |pgemm - reference| = %g of %g", what, worst, scale);
}

/* C = alpha op(A) op(B) + beta C by pgemm on g and by BLIS; both relative
 * to the largest element of BLIS's C. */
static void check_product_blocks(const pgemm_grid *g, int ta, int tb, int M, int N, int K, const int blocks[3],
                                 uint64_t seed)
{
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N, block = blocks[2];
    float *a = random_floats((size_t)ar * ac, seed), *b = random_floats((size_t)br * bc, seed + 1);
    float *c = random_floats((size_t)M * N, seed + 2), *got = malloc((size_t)M * N * sizeof *got);
    pgemm_matrix A = distributed(g, a, ar, ac, blocks[0]), B = distributed(g, b, br, bc, blocks[1]);
    pgemm_matrix C = distributed(g, c, M, N, blocks[2]);
    status_t st = pgemm_run(ta, tb, 0.5f, &A, &B, 0.25f, &C);
    CHECK(st == ST_OK, "pgemm_run: %s", st_message());
    CHECK(pgemm_gather(&C, got, N) == ST_OK, "gather: %s", st_message());
    tensor_gemm(ta, tb, M, N, K, 0.5f, a, ac, b, bc, 0.25f, c, N);
    char what[64];
    snprintf(what, sizeof what, "op %d%d %dx%dx%d block %d", ta, tb, M, N, K, block);
    check_close(what, got, c, (size_t)M * N);
    pgemm_matrix_free(&A);
    pgemm_matrix_free(&B);
    pgemm_matrix_free(&C);
    free(a);
    free(b);
    free(c);
    free(got);
}

static void check_product(const pgemm_grid *g, int ta, int tb, int M, int N, int K, int block, uint64_t seed)
{
    check_product_blocks(g, ta, tb, M, N, K, (const int[3]){block, block, block}, seed);
}

static void check_products(const pgemm_grid *g, uint64_t seed)
{
    static const int shapes[][4] = {{37, 101, 70, 8}, {37, 101, 70, 32}, {64, 48, 96, 16}, {5, 3, 200, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                check_product(g, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], seed + s);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) check_product_blocks(g, ta, tb, 37, 101, 70, (const int[3]){8, 16, 4}, seed);
}

/* extract, gather into rows wider than the matrix: bit-exact, padding untouched. */
static void check_round_trip(const pgemm_grid *g, int rows, int cols, int rb, int cb)
{
    int ldf = cols + 3;
    float *full = random_floats((size_t)rows * ldf, 7), *back = malloc((size_t)rows * ldf * sizeof *back);
    for (size_t i = 0; i < (size_t)rows * ldf; i++) back[i] = -7.0f;
    pgemm_matrix m;
    status_t st = pgemm_matrix_create(&m, g, rows, cols, rb, cb);
    if (st == ST_OK) st = pgemm_extract(&m, full, ldf);
    if (st == ST_OK) st = pgemm_gather(&m, back, ldf);
    if (st == ST_OK) st = pgemm_gather(&m, back, ldf); /* the reused buffer gives the same */
    CHECK(st == ST_OK, "round trip %d x %d: %s", rows, cols, st_message());
    int same = 1;
    for (int i = 0; i < rows; i++) {
        same &= memcmp(back + (size_t)i * ldf, full + (size_t)i * ldf, (size_t)cols * sizeof *full) == 0;
        for (int j = cols; j < ldf; j++) same &= back[(size_t)i * ldf + j] == -7.0f;
    }
    CHECK(same, "round trip %d x %d in %d x %d blocks is not bit-exact", rows, cols, rb, cb);
    for (int i = 0; i < m.local_rows; i++)
        for (int j = 0; j < m.local_cols; j++) {
            int gi = pgemm_matrix_global_row(&m, i), gj = pgemm_matrix_global_col(&m, j);
            CHECK(m.data[(size_t)i * m.ld + j] == full[(size_t)gi * ldf + gj], "local (%d, %d) is not global (%d, %d)",
                  i, j, gi, gj);
        }
    pgemm_matrix_free(&m);
    free(full);
    free(back);
}

/* Row sums of a distributed matrix reduced over the row communicator equal
 * those of the full matrix. */
static void check_row_comm(const pgemm_grid *g)
{
    enum { R = 29, C = 53 };
    float *full = random_floats((size_t)R * C, 11);
    pgemm_matrix m = distributed(g, full, R, C, 4);
    double sums[R] = {0}, total[R];
    for (int i = 0; i < m.local_rows; i++)
        for (int j = 0; j < m.local_cols; j++) sums[pgemm_matrix_global_row(&m, i)] += m.data[(size_t)i * m.ld + j];
    MPI_Allreduce(sums, total, R, MPI_DOUBLE, MPI_SUM, pgemm_grid_row_comm(g));
    for (int i = 0; i < m.local_rows; i++) {
        int gi = pgemm_matrix_global_row(&m, i);
        double want = 0;
        for (int j = 0; j < C; j++) want += full[(size_t)gi * C + j];
        CHECK(fabs(total[gi] - want) < 1e-9, "row %d: sum over the row communicator %g, expected %g", gi, total[gi],
              want);
    }
    pgemm_matrix_free(&m);
    free(full);
}

static void expect_refused(status_t st, const char *needle)
{
    CHECK(st != ST_OK && strstr(st_message(), needle), "expected a refusal with '%s', got %s: %s", needle, st_name(st),
          st_message());
}

static void check_refusals(const pgemm_grid *g)
{
    pgemm_matrix a, b, c, other;
    pgemm_grid *g2;
    ok_or_die(pgemm_matrix_create(&a, g, 10, 20, 4, 4), "set-up");
    ok_or_die(pgemm_matrix_create(&b, g, 30, 20, 4, 4), "set-up");
    ok_or_die(pgemm_matrix_create(&c, g, 10, 31, 4, 4), "set-up");
    ok_or_die(pgemm_grid_create(&g2, MPI_COMM_WORLD), "set-up");
    ok_or_die(pgemm_matrix_create(&other, g2, 30, 20, 4, 4), "set-up");
    expect_refused(pgemm_run(0, 1, 1, &a, &b, 0, &c), "expected inner sizes equal and C 10 x 30");
    expect_refused(pgemm_run(0, 0, 1, &a, &b, 0, &c), "op(A) 10 x 20 times op(B) 30 x 20");
    expect_refused(pgemm_run(0, 1, 1, &a, &other, 0, &c), "different grids");
    expect_refused(pgemm_extract(&a, b.data, 19), "rows of 19 floats");
    expect_refused(pgemm_gather(&a, c.data, 5), "rows of 5 floats");
    pgemm_matrix bad;
    expect_refused(pgemm_matrix_create(&bad, g, 0, 20, 4, 4), "expected every size >= 1");
    expect_refused(pgemm_matrix_create(&bad, g, 10, 20, 4, 0), "expected every size >= 1");
    expect_refused(pgemm_matrix_create(&bad, g, 1 << 16, 1 << 16, 64, 64), "more than");
    pgemm_grid *none;
    expect_refused(pgemm_grid_create(&none, MPI_COMM_NULL), "MPI_COMM_NULL");
    pgemm_matrix_free(&a);
    pgemm_matrix_free(&b);
    pgemm_matrix_free(&c);
    pgemm_matrix_free(&other);
    pgemm_grid_free(g2);
}

/* The FFN sub-block as docs/design.md tells the model to run it in 2D mode
 * (X, biases and the output replicated; weights, hidden activations and
 * weight gradients distributed; GELU on the local parts; the fc bias gradient
 * summed over the grid) equals tensor/'s linear and GELU kernels on one rank. */
enum { FN = 37, FC = 40, FF = 72, FB = 8 };

typedef struct ffn_ref {
    float *x, *w_fc, *b_fc, *w_proj, *b_proj, *dout;    /* inputs */
    float *y1, *h, *out, *dh, *dx, *dw_fc, *db_fc, *dw_proj, *db_proj;
} ffn_ref;

static void ffn_reference(ffn_ref *r)
{
    linear_forward(r->y1, FF, r->x, r->w_fc, r->b_fc, W_OUT_IN, FN, FC, FF);
    gelu_forward(r->h, r->y1, (size_t)FN * FF, GELU_TANH);
    linear_forward(r->out, FC, r->h, r->w_proj, r->b_proj, W_OUT_IN, FN, FF, FC);
    linear_backward(r->dh, r->dw_proj, r->db_proj, r->dout, FC, r->h, r->w_proj, W_OUT_IN, FN, FF, FC, 0);
    gelu_backward(r->dh, NULL, r->y1, r->dh, (size_t)FN * FF, GELU_TANH);
    linear_backward(r->dx, r->dw_fc, r->db_fc, r->dh, FF, r->x, r->w_fc, W_OUT_IN, FN, FC, FF, 0);
}

typedef struct ffn_dist {
    pgemm_matrix x, w_fc, y1, h, w_proj, y2, dy2, dh, dw_fc, dw_proj, dx;
} ffn_dist;

static void ffn_distributed_forward(const pgemm_grid *g, ffn_dist *d, const ffn_ref *r, float *out)
{
    d->x = distributed(g, r->x, FN, FC, FB);
    d->w_fc = distributed(g, r->w_fc, FF, FC, FB);
    d->w_proj = distributed(g, r->w_proj, FC, FF, FB);
    if (pgemm_matrix_create(&d->y1, g, FN, FF, FB, FB) || pgemm_matrix_create(&d->h, g, FN, FF, FB, FB) ||
        pgemm_matrix_create(&d->y2, g, FN, FC, FB, FB) || pgemm_run(0, 1, 1, &d->x, &d->w_fc, 0, &d->y1))
        CHECK(0, "ffn forward set-up: %s", st_message());
    for (int i = 0; i < d->y1.local_rows; i++)
        for (int j = 0; j < d->y1.local_cols; j++)
            d->y1.data[(size_t)i * d->y1.ld + j] += r->b_fc[pgemm_matrix_global_col(&d->y1, j)];
    gelu_forward(d->h.data, d->y1.data, (size_t)d->y1.local_rows * d->y1.local_cols, GELU_TANH);
    CHECK(pgemm_run(0, 1, 1, &d->h, &d->w_proj, 0, &d->y2) == ST_OK && pgemm_gather(&d->y2, out, FC) == ST_OK,
          "ffn forward: %s", st_message());
    for (int i = 0; i < FN; i++)
        for (int j = 0; j < FC; j++) out[i * FC + j] += r->b_proj[j];
}

static void ffn_distributed_backward(const pgemm_grid *g, ffn_dist *d, const ffn_ref *r, float *dx, float *db_fc)
{
    d->dy2 = distributed(g, r->dout, FN, FC, FB);
    if (pgemm_matrix_create(&d->dh, g, FN, FF, FB, FB) || pgemm_matrix_create(&d->dw_fc, g, FF, FC, FB, FB) ||
        pgemm_matrix_create(&d->dw_proj, g, FC, FF, FB, FB) || pgemm_matrix_create(&d->dx, g, FN, FC, FB, FB) ||
        pgemm_run(1, 0, 1, &d->dy2, &d->h, 1, &d->dw_proj) || pgemm_run(0, 0, 1, &d->dy2, &d->w_proj, 0, &d->dh))
        CHECK(0, "ffn backward set-up: %s", st_message());
    gelu_backward(d->dh.data, NULL, d->y1.data, d->dh.data, (size_t)d->dh.local_rows * d->dh.local_cols, GELU_TANH);
    float part[FF] = {0};
    for (int i = 0; i < d->dh.local_rows; i++)
        for (int j = 0; j < d->dh.local_cols; j++)
            part[pgemm_matrix_global_col(&d->dh, j)] += d->dh.data[(size_t)i * d->dh.ld + j];
    MPI_Allreduce(part, db_fc, FF, MPI_FLOAT, MPI_SUM, pgemm_grid_comm(g));
    CHECK(pgemm_run(1, 0, 1, &d->dh, &d->x, 1, &d->dw_fc) == ST_OK &&
              pgemm_run(0, 0, 1, &d->dh, &d->w_fc, 0, &d->dx) == ST_OK && pgemm_gather(&d->dx, dx, FC) == ST_OK,
          "ffn backward: %s", st_message());
}

static void check_ffn(const pgemm_grid *g)
{
    ffn_ref r = {.x = random_floats(FN * FC, 21),     .w_fc = random_floats(FF * FC, 22),
                 .b_fc = random_floats(FF, 23),         .w_proj = random_floats(FC * FF, 24),
                 .b_proj = random_floats(FC, 25),       .dout = random_floats(FN * FC, 26)};
    float **outs[] = {&r.y1, &r.h, &r.out, &r.dh, &r.dx, &r.dw_fc, &r.db_fc, &r.dw_proj, &r.db_proj};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) /* the largest: (N or C) x F */
        *outs[i] = calloc((size_t)FF * (FN > FC ? FN : FC), sizeof(float));
    ffn_reference(&r);
    ffn_dist d;
    float *out = calloc(FN * FC, sizeof *out), *dx = calloc(FN * FC, sizeof *dx), db_fc[FF];
    float *dw_fc = calloc(FF * FC, sizeof *dw_fc), *dw_proj = calloc(FC * FF, sizeof *dw_proj);
    ffn_distributed_forward(g, &d, &r, out);
    ffn_distributed_backward(g, &d, &r, dx, db_fc);
    CHECK(pgemm_gather(&d.dw_fc, dw_fc, FC) == ST_OK && pgemm_gather(&d.dw_proj, dw_proj, FF) == ST_OK, "gather: %s",
          st_message());
    check_close("ffn out", out, r.out, FN * FC);
    check_close("ffn dx", dx, r.dx, FN * FC);
    check_close("ffn dw_fc", dw_fc, r.dw_fc, FF * FC);
    check_close("ffn db_fc", db_fc, r.db_fc, FF);
    check_close("ffn dw_proj", dw_proj, r.dw_proj, FC * FF);
    pgemm_matrix *all[] = {&d.x, &d.w_fc, &d.y1, &d.h, &d.w_proj, &d.y2, &d.dy2, &d.dh, &d.dw_fc, &d.dw_proj, &d.dx};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pgemm_matrix_free(all[i]);
    float *inputs[] = {r.x, r.w_fc, r.b_fc, r.w_proj, r.b_proj, r.dout, out, dx, dw_fc, dw_proj};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) free(inputs[i]);
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) free(*outs[i]);
}

/* Two groups of 2 ranks, each on a grid of its own communicator, run
 * different products at the same time. */
static void check_split(void)
{
    MPI_Comm half;
    int color = rank / 2;
    MPI_Comm_split(MPI_COMM_WORLD, color, rank, &half);
    pgemm_grid *g;
    ok_or_die(pgemm_grid_create(&g, half), "split grid");
    int P, Q, prow, pcol;
    pgemm_grid_shape(g, &P, &Q, &prow, &pcol);
    CHECK(P == 1 && Q == 2 && pcol == rank % 2, "split grid %d x %d at (%d, %d)", P, Q, prow, pcol);
    if (color == 0)
        check_product(g, 0, 1, 45, 77, 33, 8, 100);
    else
        check_product(g, 1, 0, 91, 13, 57, 16, 200);
    pgemm_grid_free(g);
    MPI_Comm_free(&half);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    tensor_runtime rt;
    tensor_runtime_init(1, 1, &rt);
    check_dims();
    check_bytes_model();
    check_block_choice();
    pgemm_grid *g;
    ok_or_die(pgemm_grid_create(&g, MPI_COMM_WORLD), "grid");
    int P, Q, prow, pcol;
    pgemm_grid_shape(g, &P, &Q, &prow, &pcol);
    CHECK(P * Q == world && P <= Q && prow * Q + pcol == rank, "grid %d x %d at (%d, %d)", P, Q, prow, pcol);
    check_products(g, 1);
    check_round_trip(g, 37, 101, 8, 8);
    check_round_trip(g, 37, 101, 5, 16);
    check_round_trip(g, 3, 2, 64, 64);
    check_refusals(g);
    check_row_comm(g);
    check_ffn(g);
    pgemm_grid_free(g);
    if (world == 4) check_split();
    return mpi_check_finish("pgemm");
}

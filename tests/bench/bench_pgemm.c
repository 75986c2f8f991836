/* dist/pgemm on gpt2-small shapes, one BLIS thread per rank, under mpirun -np t:
 * for the FFN-in (768 -> 3072), FFN-out (3072 -> 768) and vocabulary
 * (768 -> 50304) linear layers over N = 2 x 1024 tokens, the forward
 * (Y = X Wᵀ), weight-gradient (dW = dYᵀ X) and input-gradient (dX = dY W)
 * GEMMs at block sizes 32, 64, 128, 256: time (median over REPS of the
 * slowest rank), and the bytes each rank receives, measured by counting every
 * MPI send BLACS makes (PMPI wrappers below) next to pgemm_run_bytes' lower
 * bound.
 * At t = 1 also plain BLIS on the full matrices (the 1-rank reference).
 * Then the two ways to gather a distributed Y to every rank, and the
 * per-rank bytes of a whole FFN sub-block and of the vocabulary projection,
 * 2D (this module) against 1D (Megatron).
 * Usage: bench_pgemm [REPS [vocab_ops]]  (defaults 3, 1: the vocabulary layer
 * only forward; 3: all three ops). bench_pgemm --project prints the model of
 * the per-rank bytes for t = 1..64 and stops (no MPI work).
 * Lines are "key=value" for tests/bench/bench_pgemm.sh to tabulate. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/timer.h"
#include "dist/dist_internal.h"
#include "dist/pgemm.h"
#include "tensor/tensor.h"

enum { TOKENS = 2 * 1024, D_MODEL = 768, D_FF = 3072, VOCAB = 50304, NBLOCKS = 4, NOPS = 3 };
static const int BLOCKS[NBLOCKS] = {32, 64, 128, 256};
static const char *OP_NAMES[NOPS] = {"fwd", "dW", "dX"};

typedef struct layer {
    const char *name;
    int in, out;
} layer;
static const layer LAYERS[] = {{"ffn_in", D_MODEL, D_FF}, {"ffn_out", D_FF, D_MODEL}, {"vocab", D_MODEL, VOCAB}};
enum { NLAYERS = sizeof LAYERS / sizeof LAYERS[0] };

static int rank, world;

/* ---- bytes sent, counted while `counting` (BLACS and Open MPI call these) ---- */

static int counting;
static uint64_t counted;

static void count(int64_t n, MPI_Datatype type)
{
    int size;
    if (!counting) return;
    PMPI_Type_size(type, &size);
    counted += (uint64_t)n * (uint64_t)size;
}

int MPI_Send(const void *b, int n, MPI_Datatype t, int to, int tag, MPI_Comm c)
{
    count(n, t);
    return PMPI_Send(b, n, t, to, tag, c);
}
int MPI_Rsend(const void *b, int n, MPI_Datatype t, int to, int tag, MPI_Comm c)
{
    count(n, t);
    return PMPI_Rsend(b, n, t, to, tag, c);
}
int MPI_Isend(const void *b, int n, MPI_Datatype t, int to, int tag, MPI_Comm c, MPI_Request *r)
{
    count(n, t);
    return PMPI_Isend(b, n, t, to, tag, c, r);
}
int MPI_Sendrecv(const void *sb, int sn, MPI_Datatype st, int to, int stag, void *rb, int rn, MPI_Datatype rt,
                 int from, int rtag, MPI_Comm c, MPI_Status *s)
{
    count(sn, st);
    return PMPI_Sendrecv(sb, sn, st, to, stag, rb, rn, rt, from, rtag, c, s);
}
/* Reductions as Open MPI runs them for large messages: a tree (reduce) sends
 * each rank's part once, a ring (allreduce) 2 (p-1)/p of it from each rank. */
int MPI_Reduce(const void *sb, void *rb, int n, MPI_Datatype t, MPI_Op op, int root, MPI_Comm c)
{
    int me;
    PMPI_Comm_rank(c, &me);
    if (me != root) count(n, t);
    return PMPI_Reduce(sb, rb, n, t, op, root, c);
}
int MPI_Allreduce(const void *sb, void *rb, int n, MPI_Datatype t, MPI_Op op, MPI_Comm c)
{
    int size;
    PMPI_Comm_size(c, &size);
    count(2 * (int64_t)n * (size - 1) / size, t);
    return PMPI_Allreduce(sb, rb, n, t, op, c);
}
/* A broadcast: what every other rank of c receives. */
int MPI_Bcast(void *b, int n, MPI_Datatype t, int root, MPI_Comm c)
{
    int me, size;
    PMPI_Comm_rank(c, &me);
    PMPI_Comm_size(c, &size);
    if (me == root) for (int i = 1; i < size; i++) count(n, t);
    return PMPI_Bcast(b, n, t, root, c);
}
/* An allgather: what every other rank receives of this rank's part. */
int MPI_Allgatherv(const void *sb, int sn, MPI_Datatype st, void *rb, const int *rn, const int *displs, MPI_Datatype rt,
                   MPI_Comm c)
{
    int size;
    PMPI_Comm_size(c, &size);
    for (int i = 1; i < size; i++) count(sn, st);
    return PMPI_Allgatherv(sb, sn, st, rb, rn, displs, rt, c);
}

/* ---- measurement ------------------------------------------------------------- */

static void die(const char *what)
{
    fprintf(stderr, "bench_pgemm: rank %d: %s: %s\n", rank, what, st_message());
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median over reps of the slowest rank's time of fn(ctx), after one warm-up;
 * *bytes: the mean over ranks of the bytes one call sent. */
typedef void (*bench_fn)(void *ctx);
static double time_median(bench_fn fn, void *ctx, int reps, uint64_t *bytes)
{
    double t[16];
    counted = 0;
    counting = 1;
    fn(ctx);
    counting = 0;
    uint64_t total = 0;
    PMPI_Allreduce(&counted, &total, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    *bytes = total / (uint64_t)world;
    for (int r = 0; r < reps; r++) {
        PMPI_Barrier(MPI_COMM_WORLD);
        double t0 = time_now();
        fn(ctx);
        double dt = time_now() - t0;
        PMPI_Allreduce(&dt, &t[r], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    return t[reps / 2];
}

static void fill(pgemm_matrix *m, unsigned seed)
{
    for (size_t i = 0; i < (size_t)m->local_rows * (size_t)m->ld; i++)
        m->data[i] = (float)((i * 2654435761u + seed) % 1000) * 1e-3f - 0.5f;
}

/* One linear layer's matrices on the grid: X (N,in), W (out,in), Y (N,out),
 * and the gradients dX, dW (dY is Y's storage). */
typedef struct layer_mats {
    pgemm_matrix X, W, Y, dX, dW;
    int op;
} layer_mats;

static void run_op(void *ctx)
{
    layer_mats *m = ctx;
    status_t st = m->op == 0   ? pgemm_run(0, 1, 1, &m->X, &m->W, 0, &m->Y)
                  : m->op == 1 ? pgemm_run(1, 0, 1, &m->Y, &m->X, 1, &m->dW)
                               : pgemm_run(0, 0, 1, &m->Y, &m->W, 0, &m->dX);
    if (st != ST_OK) die("pgemm_run");
}

/* The op's GEMM shape in row-major terms (M, N, K). */
static void op_shape(const layer *l, int op, int *M, int *N, int *K)
{
    int shapes[NOPS][3] = {{TOKENS, l->out, l->in}, {l->out, l->in, TOKENS}, {TOKENS, l->in, l->out}};
    *M = shapes[op][0];
    *N = shapes[op][1];
    *K = shapes[op][2];
}

static void layer_create(layer_mats *m, const pgemm_grid *g, const layer *l, int b)
{
    if (pgemm_matrix_create(&m->X, g, TOKENS, l->in, b, b) || pgemm_matrix_create(&m->W, g, l->out, l->in, b, b) ||
        pgemm_matrix_create(&m->Y, g, TOKENS, l->out, b, b) || pgemm_matrix_create(&m->dX, g, TOKENS, l->in, b, b) ||
        pgemm_matrix_create(&m->dW, g, l->out, l->in, b, b))
        die(l->name);
    fill(&m->X, 1);
    fill(&m->W, 2);
    fill(&m->Y, 3);
}

static void layer_free(layer_mats *m)
{
    pgemm_matrix *all[] = {&m->X, &m->W, &m->Y, &m->dX, &m->dW};
    for (int i = 0; i < 5; i++) pgemm_matrix_free(all[i]);
}

/* ---- the 1-rank reference: BLIS on the full matrices ------------------------- */

static void bench_blis(int reps, int vocab_ops)
{
    for (int li = 0; li < NLAYERS; li++) {
        const layer *l = &LAYERS[li];
        float *x = calloc((size_t)TOKENS * l->in, 4), *w = calloc((size_t)l->out * l->in, 4),
              *y = calloc((size_t)TOKENS * l->out, 4), *dx = calloc((size_t)TOKENS * l->in, 4),
              *dw = calloc((size_t)l->out * l->in, 4);
        if (!x || !w || !y || !dx || !dw) die("out of memory for the BLIS reference");
        for (int op = 0; op < (li == NLAYERS - 1 ? vocab_ops : NOPS); op++) {
            double t[16];
            for (int r = 0; r <= reps; r++) {
                double t0 = time_now();
                if (op == 0) tensor_gemm(0, 1, TOKENS, l->out, l->in, 1, x, l->in, w, l->in, 0, y, l->out);
                if (op == 1) tensor_gemm(1, 0, l->out, l->in, TOKENS, 1, y, l->out, x, l->in, 1, dw, l->in);
                if (op == 2) tensor_gemm(0, 0, TOKENS, l->in, l->out, 1, y, l->out, w, l->in, 0, dx, l->in);
                if (r > 0) t[r - 1] = time_now() - t0;
            }
            qsort(t, (size_t)reps, sizeof t[0], cmp_double);
            printf("blis t=1 layer=%s op=%s ms=%.2f\n", l->name, OP_NAMES[op], t[reps / 2] * 1e3);
        }
        free(x);
        free(w);
        free(y);
        free(dx);
        free(dw);
    }
}

/* ---- the GEMMs at every block size ----------------------------------------------- */

typedef struct results {
    double ms[NLAYERS][NOPS][NBLOCKS];
    uint64_t bytes[NLAYERS][NOPS][NBLOCKS];
} results;

static void bench_layers(const pgemm_grid *g, int reps, int vocab_ops, results *res)
{
    int P, Q, prow, pcol;
    pgemm_grid_shape(g, &P, &Q, &prow, &pcol);
    for (int li = 0; li < NLAYERS; li++)
        for (int bi = 0; bi < NBLOCKS; bi++) {
            layer_mats m;
            layer_create(&m, g, &LAYERS[li], BLOCKS[bi]);
            for (m.op = 0; m.op < (li == NLAYERS - 1 ? vocab_ops : NOPS); m.op++) {
                int M, N, K;
                op_shape(&LAYERS[li], m.op, &M, &N, &K);
                double s = time_median(run_op, &m, reps, &res->bytes[li][m.op][bi]);
                res->ms[li][m.op][bi] = s * 1e3;
                if (rank == 0)
                    printf("pgemm t=%d grid=%dx%d layer=%s op=%s block=%d ms=%.2f gflops_rank=%.1f recv_MB=%.2f "
                           "bound_MB=%.2f\n",
                           world, P, Q, LAYERS[li].name, OP_NAMES[m.op], BLOCKS[bi], s * 1e3,
                           2.0 * M * N * K / s / world * 1e-9, res->bytes[li][m.op][bi] / 1e6,
                           pgemm_run_bytes(P, Q, M, N, K) / 1e6);
            }
            layer_free(&m);
        }
}

/* Per t: sum over the GEMMs of time / the best block's time (1.0 per GEMM
 * for a block that is always the fastest). */
static void print_block_scores(const results *res, int vocab_ops)
{
    for (int bi = 0; bi < NBLOCKS; bi++) {
        double score = 0;
        for (int li = 0; li < NLAYERS; li++)
            for (int op = 0; op < (li == NLAYERS - 1 ? vocab_ops : NOPS); op++) {
                double best = res->ms[li][op][0];
                for (int b = 1; b < NBLOCKS; b++)
                    if (res->ms[li][op][b] < best) best = res->ms[li][op][b];
                score += res->ms[li][op][bi] / best;
            }
        if (rank == 0) printf("block_score t=%d block=%d score=%.3f\n", world, BLOCKS[bi], score);
    }
}

/* ---- gathering a distributed Y to every rank: two ways ------------------------- */

int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *context, const char *order, int nprow, int npcol);
void Cblacs_gridexit(int context);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc,
               const int *icsrc, const int *context, const int *lld, int *info);
void Cpsgemr2d(int m, int n, float *a, int ia, int ja, int *desca, float *b, int ib, int jb, int *descb,
               int gcontext);

typedef struct gather_ctx {
    pgemm_matrix *y;
    float *full;
    int root_context;   /* 1 x 1 grid on rank 0 of the grid; -1 elsewhere */
    int root_desc[9];
} gather_ctx;

static void run_allgatherv(void *ctx)
{
    gather_ctx *c = ctx;
    if (pgemm_gather(c->y, c->full, c->y->cols) != ST_OK) die("pgemm_gather");
}

/* psgemr2d of Y onto rank 0 (the column-major cols x rows matrix), then MPI_Bcast. */
static void run_gemr2d_bcast(void *ctx)
{
    gather_ctx *c = ctx;
    pgemm_matrix *y = c->y;
    Cpsgemr2d(y->cols, y->rows, y->data, 1, 1, y->desc, c->full, 1, 1, c->root_desc, y->desc[1]);
    MPI_Bcast(c->full, y->rows * y->cols, MPI_FLOAT, 0, pgemm_grid_comm(y->grid));
}

static void root_grid(gather_ctx *c, const pgemm_grid *g)
{
    int handle = Csys2blacs_handle(pgemm_grid_comm(g)), zero = 0, info = 0;
    c->root_context = handle;
    Cblacs_gridinit(&c->root_context, "Row", 1, 1);
    Cfree_blacs_system_handle(handle);
    memset(c->root_desc, 0, sizeof c->root_desc);
    c->root_desc[1] = -1;
    if (c->root_context >= 0)
        descinit_(c->root_desc, &c->y->cols, &c->y->rows, &c->y->cols, &c->y->rows, &zero, &zero, &c->root_context,
                  &c->y->cols, &info);
    if (info != 0) die("descinit_ of the 1 x 1 grid");
}

/* Returns the bytes per rank of the Allgatherv way, the one pgemm_gather takes. */
static uint64_t bench_gather(const pgemm_grid *g, int cols, int block, int reps)
{
    pgemm_matrix y;
    if (pgemm_matrix_create(&y, g, TOKENS, cols, block, block)) die("gather matrix");
    fill(&y, 4);
    gather_ctx c = {.y = &y, .full = malloc((size_t)TOKENS * cols * sizeof(float))};
    if (!c.full) die("out of memory for a gather");
    root_grid(&c, g);
    uint64_t b1, b2;
    double t1 = time_median(run_allgatherv, &c, reps, &b1), t2 = time_median(run_gemr2d_bcast, &c, reps, &b2);
    if (rank == 0)
        printf("gather t=%d matrix=%dx%d block=%d allgatherv_ms=%.2f allgatherv_MB=%.2f gemr2d_bcast_ms=%.2f "
               "gemr2d_bcast_MB=%.2f model_MB=%.2f\n",
               world, TOKENS, cols, block, t1 * 1e3, b1 / 1e6, t2 * 1e3, b2 / 1e6, pgemm_gather_bytes(&y) / 1e6);
    if (c.root_context >= 0) Cblacs_gridexit(c.root_context);
    free(c.full);
    pgemm_matrix_free(&y);
    return b1;
}

/* ---- per-rank bytes of whole layers: 2D against 1D -------------------------------- */

/* 1D (Megatron): an FFN sub-block allreduces N x C once forward, once
 * backward; the vocabulary-parallel head allreduces N x C backward and three
 * floats per token forward (max, sum of exponentials, target logit). An
 * allreduce moves 2 (t-1)/t of its bytes into each rank. */
static double ffn_1d(int t) { return 2.0 * 2.0 * (t - 1) / t * TOKENS * D_MODEL * 4; }
static double vocab_1d(int t) { return 2.0 * (t - 1) / t * (TOKENS * D_MODEL + 3.0 * TOKENS) * 4; }

/* 2D by the model: the layer's three GEMMs per linear, plus `gathers`
 * replications of an N x C activation (the FFN's output forward and its input
 * gradient backward; the head's input gradient). */
static double layer_2d(int P, int Q, const layer *l, int gathers)
{
    double b = gathers * (double)(P * Q - 1) / (P * Q) * TOKENS * D_MODEL * 4;
    for (int op = 0; op < NOPS; op++) {
        int M, N, K;
        op_shape(l, op, &M, &N, &K);
        b += (double)pgemm_run_bytes(P, Q, M, N, K);
    }
    return b;
}

static void print_layers_measured(const results *res, int bi, uint64_t gather_nc, int vocab_ops)
{
    double ffn = 2.0 * (double)gather_nc, vocab = (double)gather_nc;
    for (int op = 0; op < NOPS; op++) ffn += (double)(res->bytes[0][op][bi] + res->bytes[1][op][bi]);
    for (int op = 0; op < vocab_ops; op++) vocab += (double)res->bytes[2][op][bi];
    printf("layer_bytes t=%d block=%d ffn_2d_MB=%.2f ffn_1d_MB=%.2f", world, BLOCKS[bi], ffn / 1e6,
           ffn_1d(world) / 1e6);
    if (vocab_ops == NOPS) printf(" vocab_2d_MB=%.2f vocab_1d_MB=%.2f", vocab / 1e6, vocab_1d(world) / 1e6);
    printf(" (measured 2D, per rank, forward + backward)\n");
}

/* The model to 64 ranks (for 2D: pgemm_run_bytes' lower bound, so 2D looks
 * better here than it measures); time at 100 Gb/s (12.5 GB/s per rank, no
 * latency). The FFN on the grid the 2d model uses (dist_tp_grid_shape: P x Q
 * or Q x P, whichever moves less), the vocabulary on pgemm_grid_dims'. */
static void print_projection(void)
{
    static const int ts[] = {1, 2, 4, 8, 9, 16, 32, 36, 64};
    printf("per-rank bytes per layer, forward + backward, N = %d tokens, C = %d, F = %d, V = %d (2D: lower bound)\n",
           TOKENS, D_MODEL, D_FF, VOCAB);
    printf("%4s %5s %10s %10s %12s %10s %10s %12s\n", "t", "grid", "ffn_1d_MB", "ffn_2d_MB", "ffn_2d_nogath",
           "voc_1d_MB", "voc_2d_MB", "voc_2d_nogath");
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        int P, Q, FP, FQ, t = ts[i];
        if (pgemm_grid_dims(t, &P, &Q) != ST_OK || dist_tp_grid_shape(t, TOKENS, D_MODEL, D_FF, &FP, &FQ) != ST_OK)
            continue;
        double f2 = layer_2d(FP, FQ, &LAYERS[0], 1) + layer_2d(FP, FQ, &LAYERS[1], 1);
        double f0 = layer_2d(FP, FQ, &LAYERS[0], 0) + layer_2d(FP, FQ, &LAYERS[1], 0);
        printf("%4d %2dx%-2d %10.2f %10.2f %12.2f %10.2f %10.2f %12.2f\n", t, FP, FQ, ffn_1d(t) / 1e6, f2 / 1e6,
               f0 / 1e6, vocab_1d(t) / 1e6, layer_2d(P, Q, &LAYERS[2], 1) / 1e6, layer_2d(P, Q, &LAYERS[2], 0) / 1e6);
    }
    printf("at 100 Gb/s, 1 MB takes 0.08 ms; compute of the FFN sub-block (12 N C F flops) at 150 GFLOP/s per rank: "
           "%.0f ms / t\n",
           12.0 * TOKENS * D_MODEL * D_FF / 150e9 * 1e3);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--project") == 0) {
        print_projection();
        return 0;
    }
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    int reps = argc > 1 ? atoi(argv[1]) : 3, vocab_ops = argc > 2 ? atoi(argv[2]) : 1;
    if (reps < 1 || reps > 15 || vocab_ops < 1 || vocab_ops > NOPS) {
        if (rank == 0) fprintf(stderr, "usage: bench_pgemm [REPS (1..15) [vocab_ops (1..3)]] | --project\n");
        MPI_Finalize();
        return 2;
    }
    tensor_runtime rt;
    tensor_runtime_init(1, world, &rt);
    pgemm_grid *g;
    if (pgemm_grid_create(&g, MPI_COMM_WORLD) != ST_OK) die("grid");
    if (rank == 0) printf("ranks=%d arch=%s threads=%d\n", world, rt.arch, rt.threads);
    if (world == 1) bench_blis(reps, vocab_ops);
    static results res;
    bench_layers(g, reps, vocab_ops, &res);
    print_block_scores(&res, vocab_ops);
    int bi = 0;
    while (BLOCKS[bi] != PGEMM_BLOCK_DEFAULT) bi++;
    bench_gather(g, D_FF, PGEMM_BLOCK_DEFAULT, reps);
    uint64_t gather_nc = bench_gather(g, D_MODEL, PGEMM_BLOCK_DEFAULT, reps);
    if (rank == 0) print_layers_measured(&res, bi, gather_nc, vocab_ops);
    pgemm_grid_free(g);
    MPI_Finalize();
    return 0;
}

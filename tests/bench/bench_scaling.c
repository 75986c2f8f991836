/* bench_scaling: the cost model of docs/scaling.md, from measurements.
 *
 * Measures, at 1 thread per rank: the forward + backward time of one block,
 * of the embeddings and of the heads for a model's shapes (stages of one
 * layer, medians), AdamW's time per float, and with 2 ranks or more the
 * point-to-point latency and bandwidth (ping-pong between ranks 0 and 1).
 * Then predicts the step time of a layout:
 *
 *   pipeline  (m + pp - 1) t_max + 2 (pp - 1) p2p(B T C 4 bytes)
 *   dp        zero 0: allreduce(n); 1: allreduce(n) + allgather(n);
 *             2: reduce-scatter(n) (less what hides under the last
 *             micro-batch's backward) + allgather(n), ring costs
 *             allreduce = 2 (p-1) (a + 4n/(p b)), reduce-scatter =
 *             all-gather = (p-1) (a + 4n/(p b))
 *   tied      pp > 1: allreduce of the word embedding over 2 ranks
 *   update    AdamW on n (zero 0) or n/dp floats
 *
 * with t_max the slowest stage of the partition mpilm uses and n its
 * parameter count; ranks beyond the cores share them (compute x ranks/cores).
 *
 * Usage: bench_scaling MODEL B M CORES [cluster]
 *   MODEL gpt-mini | bert-mini | gpt2-small | bert-base
 *   prints the component times, then "predict" lines for the layouts
 *   bench_dist measures (1 rank, pp=2, dp=2 zero 0/1/2, pp=2 x dp=2, pp=4,
 *   dp=4) on this machine's measured network; with "cluster": the best layout
 *   for 8..512 ranks on a 100 Gb/s network (2 us, 12.5 GB/s) at a global batch
 *   of 512 sequences, for ranks of one core and of 32 cores of this speed. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bigmem.h"
#include "base/timer.h"
#include "data/random_source.h"
#include "dist/dist.h"
#include "optim/optim.h"
#include "train/plan.h"
#include "tensor/tensor.h"

typedef struct costs {
    double block, embed, head; /* seconds per micro-batch, forward + backward */
    double adam;               /* seconds per float */
    size_t n_block, n_embed, n_head;
} costs;

typedef struct net {
    double lat, bw; /* seconds, bytes per second */
} net;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static model_config model_named(const char *name)
{
    int bert = strstr(name, "bert") != NULL, big = strstr(name, "mini") == NULL;
    model_config c = {.family = bert ? MODEL_BERT : MODEL_GPT, .n_layer = big ? 12 : 4, .d_model = big ? 768 : 256,
                      .n_head = big ? 12 : 4, .pre_ln = !bert, .dropout = 0.1f};
    c.d_ff = 4 * c.d_model;
    c.vocab_size = big ? (bert ? 30522 : 50257) : 8192;
    c.seq_len = c.max_positions = big ? (bert ? 512 : 1024) : (bert ? 128 : 256);
    return c;
}

/* train/plan's measurement, fresh (not from the cache), and the
 * parameters of a block, of the embeddings and of the heads. */
static costs measure_costs(const model_config *mc, int B)
{
    plan_costs p;
    int measured = 0;
    if (plan_measure_costs(mc, B, 1, 1, 0, &p, &measured) != ST_OK) st_die(ST_ERROR);
    costs c = {.block = p.block, .embed = p.embed, .head = p.head, .adam = p.adam};
    size_t n[3];
    int L = mc->n_layer, ranges[3][2] = {{1, 2}, {0, 1}, {L - 1, L}};
    for (int k = 0; k < 3; k++) {
        model_tensor *t;
        int nt;
        if (model_stage_table(mc, ranges[k][0], ranges[k][1], ranges[k][0] == 0, ranges[k][1] == L, NULL, &t, &nt,
                              &n[k]) != ST_OK)
            st_die(ST_ERROR);
        free(t);
    }
    c.n_block = n[0];
    c.n_embed = n[1] - n[0];
    c.n_head = n[2] - n[0];
    return c;
}

/* Ping-pong between ranks 0 and 1: latency from 8 bytes, bandwidth from `bytes`. */
static net measure_net(size_t bytes)
{
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    char *buf = calloc(bytes, 1);
    double res[2];
    for (int k = 0; k < 2; k++) {
        size_t len = k ? bytes : 8;
        int reps = k ? 20 : 200;
        double t[200];
        for (int r = 0; r < reps; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = time_now();
            if (rank == 0) {
                MPI_Send(buf, (int)len, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
                MPI_Recv(buf, (int)len, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else if (rank == 1) {
                MPI_Recv(buf, (int)len, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(buf, (int)len, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
            }
            t[r] = (time_now() - t0) / 2;
        }
        qsort(t, (size_t)reps, sizeof(double), cmp_double);
        res[k] = t[reps / 2];
    }
    MPI_Bcast(res, 2, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    free(buf);
    net n = {.lat = res[0], .bw = (double)bytes / (res[1] - res[0] > 0 ? res[1] - res[0] : res[1])};
    return n;
}

static double ring(const net *w, int p, double floats, int passes)
{
    return p > 1 ? passes * (p - 1) * (w->lat + 4.0 * floats / (p * w->bw)) : 0.0;
}

typedef struct layout {
    int pp, dp, zero, m, B, cores;
} layout;

/* Predicted step seconds of a layout; *bubble receives the pipeline's idle share. */
static double predict(const model_config *mc, const costs *c, const net *w, const layout *l, double *bubble)
{
    dist_config dc = {.pp = l->pp};
    int bounds[DIST_MAX_STAGES + 1];
    if (dist_partition(&dc, mc, bounds) != ST_OK) return -1;
    int W = l->pp * l->dp;
    double slow = W > l->cores ? (double)W / l->cores : 1.0, tmax = 0, comm = 0;
    double act = 4.0 * l->B * mc->seq_len * mc->d_model;
    for (int s = 0; s < l->pp; s++) {
        int a = bounds[s], b = bounds[s + 1];
        double t = (b - a) * c->block + (a == 0 ? c->embed : 0) + (b == mc->n_layer ? c->head : 0);
        double n = (double)(b - a) * c->n_block + (a == 0 ? c->n_embed : 0) + (b == mc->n_layer ? c->n_head : 0);
        t *= slow;
        tmax = t > tmax ? t : tmax;
        double red = l->zero == 2 ? ring(w, l->dp, n, 1) : ring(w, l->dp, n, 2);
        if (l->zero == 2) red = fmax(0.0, red - t); /* buckets reduce under the last backward */
        double gather = l->zero > 0 ? ring(w, l->dp, n, 1) : 0.0;
        double tied = l->pp > 1 && (a == 0 || b == mc->n_layer) ? ring(w, 2, (double)c->n_embed, 2) : 0.0;
        double upd = c->adam * slow * (l->zero > 0 ? n / l->dp : n);
        double after = red + gather + tied + upd;
        comm = after > comm ? after : comm;
    }
    double p2p = w->lat + act / w->bw;
    double pipe = (l->m + l->pp - 1) * tmax + 2.0 * (l->pp - 1) * p2p;
    *bubble = l->pp > 1 ? 1.0 - l->m * tmax / pipe : 0.0;
    return pipe + comm + w->lat * log2((double)W + 1);
}

static void print_prediction(const char *name, const model_config *mc, const costs *c, const net *w, layout l)
{
    double bubble, step = predict(mc, c, w, &l, &bubble);
    double tokens = (double)l.B * mc->seq_len * l.m * l.dp;
    printf("predict %s pp=%d dp=%d zero=%d m=%d B=%d: %.0f tokens/s, step %.3f s, bubble %.1f%%\n", name, l.pp,
           l.dp, l.zero, l.m, l.B, tokens / step, step, 100 * bubble);
}

/* Strong scaling on the cluster network (2 us, 12.5 GB/s): a global batch of
 * G sequences per step whatever the ranks; for each world size the best of
 * pp = 1, 2, 4, ... (zero 2, micro-batches of up to B sequences, as many as
 * the replica's share needs). Ranks run `speed` times this machine's single
 * thread (1: a rank per core like these; 32: a rank per 32-core node at this
 * per-core speed), which scales every compute time, not the network. */
static void cluster(const char *name, const model_config *mc, const costs *c0, int B, int G, double speed)
{
    net w = {.lat = 2e-6, .bw = 12.5e9};
    costs c = *c0;
    c.block /= speed, c.embed /= speed, c.head /= speed, c.adam /= speed;
    layout one = {.pp = 1, .dp = 1, .zero = 0, .m = G / B, .B = B, .cores = 1};
    double b1, t1 = predict(mc, &c, &w, &one, &b1), tok1 = (double)G * mc->seq_len / t1;
    printf("cluster %s, ranks of %gx one core, global batch %d x %d tokens: 1 rank %.0f tokens/s\n", name, speed, G,
           mc->seq_len, tok1);
    for (int W = 8; W <= 512; W *= 2) {
        layout best = {0};
        double best_tps = 0, best_bubble = 0, best_step = 0;
        for (int pp = 1; pp <= mc->n_layer && pp <= W; pp *= 2) {
            int dp = W / pp, per = G / dp, b = per < B ? per : B;
            if (G % dp || per < 1 || per % b) continue;
            costs cb = c;
            double f = (double)b / B;
            cb.block *= f, cb.embed *= f, cb.head *= f;
            layout l = {.pp = pp, .dp = dp, .zero = 2, .m = per / b, .B = b, .cores = W};
            double bubble, step = predict(mc, &cb, &w, &l, &bubble);
            double tps = (double)G * mc->seq_len / step;
            if (step > 0 && tps > best_tps) best = l, best_tps = tps, best_bubble = bubble, best_step = step;
        }
        if (best_tps <= 0) continue;
        printf("cluster %s x%g W=%d: pp=%d dp=%d m=%d B=%d: %.0f tokens/s, %.0f%% efficiency, step %.2f s, "
               "bubble %.1f%%\n", name, speed, W, best.pp, best.dp, best.m, best.B, best_tps, 100 * best_tps / (W * tok1),
               best_step, 100 * best_bubble);
    }
}

int main(int argc, char **argv)
{
    bigmem_keep_freed_memory(); /* as mpilm does (cli_mpi_init) */
    MPI_Init(&argc, &argv);
    if (argc < 5) {
        fprintf(stderr, "usage: bench_scaling gpt-mini|bert-mini|gpt2-small|bert-base B M CORES [cluster]\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    tensor_runtime rt;
    tensor_runtime_init(1, 1, &rt);
    model_config mc = model_named(argv[1]);
    int B = atoi(argv[2]), m = atoi(argv[3]), cores = atoi(argv[4]);
    costs c = {0};
    if (rank == 0) c = measure_costs(&mc, B);
    MPI_Bcast(&c, sizeof c, MPI_BYTE, 0, MPI_COMM_WORLD);
    net w = {.lat = 0, .bw = 1e30};
    if (world > 1) w = measure_net((size_t)4 * B * mc.seq_len * mc.d_model);
    if (rank == 0) {
        printf("measured %s (B=%d, T=%d, 1 thread): block %.4f s, embeddings %.4f s, heads %.4f s per micro-batch "
               "(heads = %.2f blocks; the partition estimates %.2f); AdamW %.2f ns/float\n", argv[1], B, mc.seq_len,
               c.block, c.embed, c.head, c.head / c.block, layout_head_cost(&mc, 0.15), 1e9 * c.adam);
        if (world > 1)
            printf("measured network (ranks 0-1): latency %.1f us, bandwidth %.2f GB/s\n", 1e6 * w.lat, w.bw / 1e9);
        layout ls[] = {{1, 1, 0, m, B, cores}, {2, 1, 0, m, B, cores}, {1, 2, 0, m / 2, B, cores},
                       {1, 2, 1, m / 2, B, cores}, {1, 2, 2, m / 2, B, cores}, {2, 2, 2, m / 2, B, cores},
                       {4, 1, 0, m, B, cores}, {1, 4, 2, m / 4, B, cores}};
        for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++)
            if (ls[i].pp <= mc.n_layer && ls[i].m >= 1) print_prediction(argv[1], &mc, &c, &w, ls[i]);
        if (argc > 5 && strcmp(argv[5], "cluster") == 0) {
            int G = 512; /* GPT-2's and BERT's global batch, in sequences */
            cluster(argv[1], &mc, &c, B, G, 1.0);
            cluster(argv[1], &mc, &c, B, G, 32.0);
        }
    }
    MPI_Finalize();
    return 0;
}

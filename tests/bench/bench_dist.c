/* bench_dist: tokens/s of dist_train_step for gpt-mini / bert-mini shapes on
 * random data (median step of STEPS after one warm-up step), the measured
 * pipeline bubble (idle share of the pipeline phase on the busiest stage, and
 * the mean over ranks, which adds the stages' imbalance) next to the ideal
 * (pp-1)/(m+pp-1), and per rank the time in compute against the time waiting
 * in point-to-point transfers and in collectives.
 * Usage: bench_dist gpt|bert PP ZERO gpipe|1f1b M MICRO_BATCH STEPS
 * (dp = ranks / PP). BENCH_PRECISION=fp32|bf16 (default fp32) sets the GEMMs'
 * precision (train.precision). BLIS's kernels are chosen as mpilm train
 * chooses them (tensor_runtime_init), one thread per rank unless
 * OMP_NUM_THREADS says otherwise. Prints on rank 0: one line of figures,
 * then one per rank. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/bigmem.h"
#include "data/random_source.h"
#include "dist/dist.h"
#include "tensor/tensor.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static status_t fill(void *ctx, uint64_t g, batch *b)
{
    random_batch_fill(b, ctx, g * (uint64_t)b->B);
    return ST_OK;
}

int main(int argc, char **argv)
{
    bigmem_keep_freed_memory(); /* as mpilm does (cli_mpi_init) */
    MPI_Init(&argc, &argv);
    if (argc != 8) {
        fprintf(stderr, "usage: bench_dist gpt|bert PP ZERO gpipe|1f1b M MICRO_BATCH STEPS\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int bert = strcmp(argv[1], "bert") == 0, T = bert ? 128 : 256;
    model_config mc = {.family = bert ? MODEL_BERT : MODEL_GPT, .n_layer = 4, .d_model = 256, .n_head = 4,
                       .d_ff = 1024, .seq_len = T, .max_positions = T, .vocab_size = 8192, .pre_ln = !bert,
                       .dropout = 0.1f};
    dist_config dc = {.pp = atoi(argv[2]), .zero = atoi(argv[3]),
                      .schedule = strcmp(argv[4], "1f1b") == 0 ? DIST_1F1B : DIST_GPIPE, .hang_timeout = 600};
    int m = atoi(argv[5]), B = atoi(argv[6]), steps = atoi(argv[7]), rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    const char *prec = getenv("BENCH_PRECISION");
    mc.bf16 = prec && strcmp(prec, "bf16") == 0;
    tensor_runtime rt;
    if (tensor_runtime_init(1, world, &rt) != ST_OK) st_die(ST_CONFIG);
    optim_config oc = {.lr = 1e-4, .total_steps = steps + 1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .clip = 1};
    random_spec spec = {.mlm = bert, .nsp = bert, .vocab_size = mc.vocab_size, .mask_prob = 0.15, .seed = 1};
    dist_engine *e;
    optim_state w;
    if (dist_engine_create(&e, &dc, &mc, &oc, B, m, 1, MPI_COMM_WORLD, &w) != ST_OK) st_die(ST_CONFIG);
    dist_step_result r;
    if (dist_train_step(e, &w, 0, fill, &spec, &r) != ST_OK) st_die(ST_ERROR); /* warm-up */
    double *step_s = calloc((size_t)steps, sizeof(double)), *bubble = calloc((size_t)steps, sizeof(double));
    double mine[5] = {0}; /* compute, p2p wait, collectives, step, early buckets */
    double bubble_mean = 0;
    for (int s = 0; s < steps; s++) {
        if (dist_train_step(e, &w, s + 1, fill, &spec, &r) != ST_OK) st_die(ST_ERROR);
        step_s[s] = r.step_s;
        bubble[s] = r.bubble;
        bubble_mean += r.bubble_mean / steps;
        mine[0] += r.busy_s + r.update_s;
        mine[1] += r.pipe_s - r.busy_s;
        mine[2] += r.comm_s;
        mine[3] += r.step_s;
        mine[4] += (double)r.early_buckets / steps;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double *all = calloc((size_t)world * 6, sizeof(double));
    double mine6[6] = {mine[0], mine[1], mine[2], mine[3], mine[4], ru.ru_maxrss / 1024.0};
    MPI_Gather(mine6, 6, MPI_DOUBLE, all, 6, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    dist_memory mem = dist_engine_memory(e);
    const dist_topology *t = dist_engine_topology(e);
    if (rank == 0) {
        qsort(step_s, (size_t)steps, sizeof(double), cmp_double);
        qsort(bubble, (size_t)steps, sizeof(double), cmp_double);
        double step = step_s[steps / 2], tokens = (double)B * m * t->dp * T;
        int pp = t->pp;
        printf("%s %s pp=%d dp=%d zero=%d %s m=%d B=%d: %.0f tokens/s, step %.3f s (median of %d), bubble %.1f%% "
               "(ideal %.1f%%; mean over ranks %.1f%%), rank 0 params %.1f MiB grads %.1f MiB optimizer %.1f MiB\n",
               argv[1], mc.bf16 ? "bf16" : "fp32", pp, t->dp, dc.zero, argv[4], m, B, tokens / step, step, steps, 100.0 * bubble[steps / 2],
               100.0 * (pp - 1) / (m + pp - 1), 100.0 * bubble_mean, mem.params / 1048576.0, mem.grads / 1048576.0,
               mem.optimizer / 1048576.0);
        for (int k = 0; k < world; k++) {
            const double *a = all + 6 * k;
            printf("  rank %d: compute %.0f%%, p2p wait %.0f%%, collectives %.0f%% of %.3f s/step; "
                   "buckets reduced during backward %.0f; peak RSS %.0f MiB\n", k, 100 * a[0] / a[3],
                   100 * a[1] / a[3], 100 * a[2] / a[3], a[3] / steps, a[4], a[5]);
        }
    }
    free(all);
    free(step_s);
    free(bubble);
    dist_engine_free(e);
    optim_state_free(&w);
    MPI_Finalize();
    return 0;
}

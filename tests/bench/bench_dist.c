/* bench_dist: tokens/s of dist_train_step for gpt-mini / bert-mini shapes on
 * random data, and the measured pipeline bubble (1 - compute time / step
 * time, averaged over ranks) next to the GPipe/1F1B ideal (pp-1)/(m+pp-1).
 * Usage: bench_dist gpt|bert PP ZERO gpipe|1f1b M MICRO_BATCH STEPS
 * (dp = ranks / PP). Prints one line of figures on rank 0. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "data/random_source.h"
#include "dist/dist.h"

static status_t fill(void *ctx, uint64_t g, batch *b)
{
    random_batch_fill(b, ctx, g * (uint64_t)b->B);
    return ST_OK;
}

int main(int argc, char **argv)
{
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
    optim_config oc = {.lr = 1e-4, .total_steps = steps + 1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .clip = 1};
    random_spec spec = {.mlm = bert, .nsp = bert, .vocab_size = mc.vocab_size, .mask_prob = 0.15, .seed = 1};
    dist_engine *e;
    if (dist_engine_create(&e, &dc, &mc, &oc, B, m, 1, MPI_COMM_WORLD) != ST_OK) st_die(ST_CONFIG);
    dist_step_result r;
    if (dist_train_step(e, 0, fill, &spec, &r) != ST_OK) st_die(ST_ERROR); /* warm-up */
    double busy = 0, total = 0;
    for (int s = 1; s <= steps; s++) {
        if (dist_train_step(e, s, fill, &spec, &r) != ST_OK) st_die(ST_ERROR);
        busy += r.busy_s;
        total += r.step_s;
    }
    double idle = 1.0 - busy / total, sum_idle = 0, max_total = 0;
    MPI_Reduce(&idle, &sum_idle, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&total, &max_total, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    dist_memory mem = dist_engine_memory(e);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long rss = ru.ru_maxrss, max_rss = 0;
    MPI_Reduce(&rss, &max_rss, 1, MPI_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
    const dist_topology *t = dist_engine_topology(e);
    if (rank == 0) {
        double tokens = (double)B * m * t->dp * T * steps;
        int pp = t->pp;
        printf("%s pp=%d dp=%d zero=%d %s m=%d B=%d: %.0f tokens/s, step %.3f s, bubble %.1f%% (ideal %.1f%%), "
               "rank 0 params %.1f MiB grads %.1f MiB optimizer %.1f MiB, peak RSS %.0f MiB\n",
               argv[1], pp, t->dp, dc.zero, argv[4], m, B, tokens / max_total, max_total / steps,
               100.0 * sum_idle / world, 100.0 * (pp - 1) / (m + pp - 1), mem.params / 1048576.0,
               mem.grads / 1048576.0, mem.optimizer / 1048576.0, max_rss / 1024.0);
    }
    dist_engine_free(e);
    MPI_Finalize();
    return 0;
}

/* dist under mpirun: layouts that do not fit the world (pp x dp x tp, tp that
 * does not divide n_head, tp_mode 2d with a t that has no grid) are refused before any work
 * with messages naming the keys; the placement lists every rank.
 * With --hang: stage 1 never joins the step, so the watchdog of stage 0 must
 * end the job with its report (tests/mpi/dist_watchdog.sh checks that).
 * Exit 0 = as expected. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "data/random_source.h"
#include "dist/dist.h"

#include "../common/mpi_check.h"

static const model_config MC = {.family = MODEL_GPT, .n_layer = 2, .d_model = 32, .n_head = 2, .d_ff = 64,
                                .seq_len = 16, .max_positions = 16, .vocab_size = 64, .pre_ln = 1};
static const optim_config OPT = {.lr = 1e-3, .total_steps = 1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};

static void expect_refused_model(dist_config dc, const model_config *mc, const char *needle)
{
    dist_engine *e = NULL;
    optim_state w;
    status_t st = dist_engine_create(&e, &dc, mc, &OPT, 2, 2, 1, MPI_COMM_WORLD, &w);
    if (st == ST_CONFIG && strstr(st_message(), needle)) return;
    failures++;
    fprintf(stderr, "rank %d: pp=%d dp=%d tp=%d: expected a refusal with '%s', got %s: %s\n", rank, dc.pp, dc.dp,
            dc.tp, needle, st_name(st), st_message());
    dist_engine_free(e);
    optim_state_free(&w);
}

static void expect_refused(dist_config dc, const char *needle) { expect_refused_model(dc, &MC, needle); }

static void check_tp_refusals(void)
{
    model_config one_head = MC;
    one_head.n_head = 1;
    if (world % 2 == 0) expect_refused_model((dist_config){.pp = 1, .tp = 2}, &one_head,
                                             "dist.tp = 2 does not divide model.n_head = 1");
    expect_refused((dist_config){.pp = 1, .dp = 2, .tp = world}, "dist.pp x dist.dp x dist.tp = 1 x 2 x");
    expect_refused((dist_config){.pp = 1, .tp = world + 1}, "dist.pp x dist.tp = 1 x");
    /* 2d needs a grid: a prime t >= 5 has none (refused before the world's size is looked at) */
    expect_refused((dist_config){.pp = 1, .tp = 5, .tp_mode = DIST_TP_2D}, "dist.tp: 5 ranks (a prime) have no 2D grid");
    expect_refused((dist_config){.pp = 1, .tp = 5, .tp_mode = DIST_TP_2D}, "dist.tp_mode = 1d");
}

/* The placement of pp = 2 (and tp = 2 when the world has 4 ranks). */
static void check_placement(void)
{
    dist_config dc = {.pp = world >= 2 ? 2 : 1, .tp = world >= 4 ? 2 : 1};
    dist_topology t;
    if (dist_topology_create(&t, &dc, &MC, MPI_COMM_WORLD) != ST_OK) {
        failures++;
        fprintf(stderr, "rank %d: topology: %s\n", rank, st_message());
        return;
    }
    char buf[4096], want[96];
    dist_topology_describe(&t, buf, sizeof buf);
    int tp = dc.tp, last = world - 1, s = last / tp % dc.pp;
    char tp_text[32] = "";
    if (tp > 1) snprintf(tp_text, sizeof tp_text, " tp %d/%d", last % tp, tp);
    snprintf(want, sizeof want, "rank %d: replica %d stage %d%s layers [%d, %d)", last, last / tp / dc.pp, s, tp_text,
             t.bounds[s], t.bounds[s + 1]);
    if (!strstr(buf, want) || t.stage != rank / tp % dc.pp || t.replica != rank / tp / dc.pp ||
        t.tp_rank != rank % tp) {
        failures++;
        fprintf(stderr, "rank %d: placement lacks '%s':\n%s", rank, want, buf);
    }
    dist_topology_free(&t);
}

static status_t fill(void *ctx, uint64_t g, batch *b)
{
    random_batch_fill(b, ctx, g * (uint64_t)b->B);
    return ST_OK;
}

static void hang(void)
{
    dist_config dc = {.pp = 2, .hang_timeout = 1.0};
    dist_engine *e;
    optim_state w;
    if (dist_engine_create(&e, &dc, &MC, &OPT, 2, 2, 1, MPI_COMM_WORLD, &w) != ST_OK) st_die(ST_CONFIG);
    random_spec spec = {.vocab_size = MC.vocab_size, .seed = 1};
    if (dist_engine_topology(e)->stage == 1) sleep(30); /* a stuck peer */
    dist_step_result r;
    status_t st = dist_train_step(e, &w, 0, fill, &spec, &r);
    if (st != ST_OK) st_die(st);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (argc > 1 && strcmp(argv[1], "--hang") == 0) hang();
    expect_refused((dist_config){.pp = 3}, "dist.pp = 3 does not divide");
    expect_refused((dist_config){.pp = 1, .dp = world + 1}, "set dist.dp = auto");
    if (world % 2 == 0) expect_refused((dist_config){.pp = 2, .zero = 3}, "dist.zero = 3");
    if (world >= 4) expect_refused((dist_config){.pp = 4}, "dist.pp = 4 exceeds model.n_layer = 2");
    if (world % 2 == 0) expect_refused((dist_config){.pp = 2, .n_stages = 2, .stages = {1, 2}}, "dist.stages sums to 3");
    check_tp_refusals();
    check_placement();
    return mpi_check_finish("dist_checks");
}

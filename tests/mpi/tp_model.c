// mpirun-np: 2 4
/* model/ split over a tensor group of all ranks (the reductions are plain
 * MPI_Allreduce here), GPT and BERT with dropout, with and without
 * recomputation, in 1d and in 2d (the FFN on dist's process grid of all
 * ranks, blocks of 32: on 2 ranks 2 x 1 for 2 x 16 tokens and 1 x 2 for
 * 8 x 16, as dist_tp_grid_shape turns it; 2 x 2 on 4, where d_ff = 96 wraps
 * round the process rows and 2 x 16 tokens leave one process column without
 * rows),
 * vocabulary 1001 (padded to a multiple of the group): one
 * forward and backward gives the loss of the unsplit model within 1e-5 and
 * every gradient, mapped through model_stage_runs, within 1e-5 of the
 * unsplit one; the padding's gradient is zero; initialisation gives each
 * slice the unsplit values; full logits are refused; 2d without a matching
 * grid or the grid's operations is refused. Exit 0 = all equal. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/random_source.h"
#include "dist/dist_internal.h"
#include "model/model.h"

#include "../common/mpi_check.h"


static status_t reduce(float *buf, size_t n, MPI_Op op)
{
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, op, MPI_COMM_WORLD);
    return ST_OK;
}
static status_t sum(void *ctx, float *buf, size_t n) { return reduce(buf, n, MPI_SUM); }
static status_t max(void *ctx, float *buf, size_t n) { return reduce(buf, n, MPI_MAX); }


static double step(model_stage *m, const batch *b)
{
    model_pass pass = {.train = 1, .seed = 3, .sample0 = 8, .loss_scale = 1.0f};
    model_losses l = {0};
    memset(model_grads(m), 0, model_n_params(m) * sizeof(float));
    ok_or_die(model_forward(m, 0, b, &pass, &l), "forward");
    ok_or_die(model_backward(m, 0, b, &pass), "backward");
    return l.lm_count ? l.lm_loss_sum / l.lm_count : l.mlm_loss_sum / l.mlm_count + l.nsp_loss_sum / l.nsp_count;
}

/* Local buffer x against the unsplit one through the runs; what no run
 * covers (padding) must be zero. Returns the worst relative difference. */
static double compare_mapped(const model_stage *part, const float *x, const float *full, const char *what,
                             const char *label)
{
    double worst = 0.0, pad = 0.0;
    char *covered = calloc(model_n_params(part), 1);
    for (int i = 0; i < model_n_tensors(part); i++) {
        const model_run *runs;
        int n = model_stage_runs(part, i, &runs);
        for (int k = 0; k < n; k++)
            for (size_t j = 0; j < runs[k].len; j++) {
                double a = x[runs[k].local + j], b = full[runs[k].full + j];
                worst = fmax(worst, fabs(a - b) / fmax(1e-2, fabs(b)));
                covered[runs[k].local + j] = 1;
            }
    }
    for (size_t j = 0; j < model_n_params(part); j++)
        if (!covered[j]) pad = fmax(pad, fabs(x[j]));
    CHECK(pad == 0.0, "%s: %s of the vocabulary padding is %g (expected 0)", label, what, pad);
    free(covered);
    return worst;
}

static void run_case(model_family f, int recompute, int mode2d, int B)
{
    char label[80];
    snprintf(label, sizeof label, "%s tp=%d %s recompute=%d B=%d", f == MODEL_BERT ? "bert" : "gpt", world,
             mode2d ? "2d" : "1d", recompute, B);
    model_config c = {.family = f, .n_layer = 2, .d_model = 32, .n_head = 4, .d_ff = 96, .seq_len = 16,
                      .max_positions = 16, .vocab_size = 1001, .pre_ln = f == MODEL_GPT, .dropout = 0.1f,
                      .recompute = recompute};
    model_tp tp = {.size = world, .rank = rank, .allreduce_sum = sum, .allreduce_max = max};
    dist_tp_grid *grid = NULL;
    if (mode2d) {
        ok_or_die(dist_tp_grid_create(&grid, MPI_COMM_WORLD, &c, B * c.seq_len, &tp), "2d grid");
        int P, Q, nb, wantP, wantQ;
        dist_tp_grid_describe(grid, &P, &Q, &nb);
        ok_or_die(dist_tp_grid_shape(world, B * c.seq_len, c.d_model, c.d_ff, &wantP, &wantQ), "grid shape");
        CHECK(P == wantP && Q == wantQ && P == tp.grid_p && Q == tp.grid_q, "%s: grid %d x %d, model told %d x %d",
              label, P, Q, tp.grid_p, tp.grid_q);
        tp.gemm = dist_tp_grid_gemm;
        tp.gather = dist_tp_grid_gather;
        tp.ctx = grid;
    }
    model_stage *full, *part;
    ok_or_die(model_stage_create(&full, &c, 0, c.n_layer, B, 1), "unsplit stage");
    ok_or_die(model_stage_create_tp(&part, &c, 0, c.n_layer, B, 1, &tp), "split stage");
    model_init_params(full, 9);
    model_init_params(part, 9);
    CHECK(compare_mapped(part, model_params(part), model_params(full), "initial value", label) == 0.0,
          "%s: a slice's initial values are not the unsplit tensor's", label);
    CHECK(model_n_params(part) < model_n_params(full), "%s: the slice is not smaller than the model", label);
    batch b;
    batch_alloc(&b, B, c.seq_len);
    random_spec spec = {.mlm = f == MODEL_BERT, .nsp = f == MODEL_BERT, .vocab_size = c.vocab_size, .mask_prob = 0.15,
                        .seed = 4};
    random_batch_fill(&b, &spec, 8);
    double want = step(full, &b), got = step(part, &b);
    CHECK(fabs(got - want) <= 1e-5 * fabs(want), "%s: loss %.9g, unsplit %.9g", label, got, want);
    double worst = compare_mapped(part, model_grads(part), model_grads(full), "gradient", label);
    CHECK(worst <= 1e-5, "%s: gradients differ from the unsplit ones by %.3g", label, worst);
    float *logits = malloc((size_t)B * c.seq_len * c.vocab_size * sizeof(float));
    model_pass eval = {.logits = logits};
    model_losses l = {0};
    CHECK(model_forward(part, 0, &b, &eval, &l) == ST_USAGE && strstr(st_message(), "never gathered"),
          "%s: full logits of a split stage were not refused", label);
    free(logits);
    batch_free(&b);
    model_stage_free(part);
    model_stage_free(full);
    dist_tp_grid_free(grid);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    for (int f = 0; f < 2; f++)
        for (int recompute = RECOMPUTE_NONE; recompute <= RECOMPUTE_LAST; recompute++)
            for (int mode2d = 0; mode2d < 2 - (recompute == RECOMPUTE_FFN || recompute == RECOMPUTE_FFN_ATTENTION);
                 mode2d++) /* ffn: 1d only */
                run_case(f ? MODEL_BERT : MODEL_GPT, recompute, mode2d, 2);
    /* 8 x 16 tokens turn the 2-rank grid to 1 x 2 (2 x 16 made it 2 x 1) */
    run_case(MODEL_GPT, 0, 1, 8);
    run_case(MODEL_BERT, 1, 1, 8);
    model_config odd = {.family = MODEL_GPT, .n_layer = 1, .d_model = 30, .n_head = 3, .d_ff = 60, .seq_len = 4,
                        .max_positions = 4, .vocab_size = 50, .pre_ln = 1};
    model_tp tp = {.size = 2, .rank = 0, .allreduce_sum = sum, .allreduce_max = max};
    model_stage *m = NULL;
    CHECK(model_stage_create_tp(&m, &odd, 0, 1, 1, 1, &tp) == ST_CONFIG && strstr(st_message(), "model.n_head = 3"),
          "n_head 3 over tp 2 was not refused: %s", st_message());
    /* 2d without a matching grid or without the grid's operations */
    model_config even = odd;
    even.n_head = 2;
    model_tp bad = {.size = 2, .rank = 0, .allreduce_sum = sum, .allreduce_max = max, .grid_p = 1, .grid_q = 1,
                    .block = 32, .gemm = dist_tp_grid_gemm, .gather = dist_tp_grid_gather};
    CHECK(model_stage_create_tp(&m, &even, 0, 1, 1, 1, &bad) == ST_CONFIG && strstr(st_message(), "found 1 x 1"),
          "a 1 x 1 grid for tp 2 was not refused: %s", st_message());
    bad.grid_q = 2;
    bad.gemm = NULL;
    CHECK(model_stage_create_tp(&m, &even, 0, 1, 1, 1, &bad) == ST_CONFIG && strstr(st_message(), "GEMM and gather"),
          "2d without the grid's GEMM was not refused: %s", st_message());
    return mpi_check_finish("tp_model");
}

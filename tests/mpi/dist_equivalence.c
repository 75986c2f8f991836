// mpirun-np: 1 2 4
/* Every layout (pp, dp, tp) of this world size x ZeRO 0/1/2 x gpipe/1f1b, for
 * GPT, BERT and Llama (4 query heads over 2 key/value heads, untied lm_head;
 * no 2d mode, tp <= 2) with dropout, trains 10 steps on random data with the same
 * global batch as a single-stage reference that rank 0 computes with model/
 * and optim/ directly: losses within TOL_LOSS relative at every step, final
 * parameters within TOL_PARAM (gathered by name; tensor-parallel slices mapped
 * into the full layout by model_stage_runs, the vocabulary padding zero),
 * the result identical on every rank, the tied embedding copies
 * bit-identical, the dp replicas identical, the gradients of replicated
 * tensors identical on every tp rank, each rank's memory accounting
 * equal to the ZeRO formulas, and under ZeRO 2 every bucket without the tied
 * embedding reduced inside the last backward (a last stage's heads, flushed
 * after its last send, included). The vocabulary (61) is not a multiple of tp.
 * Global batches: 4 micro-batches (m = 4 / dp, so m = 1 at dp = 4) and 3 dp
 * (m = 3, not divisible by pp = 2 or 4). Every layout with tp > 1 runs once
 * more in tp_mode 2d (the FFN on the tensor group's process grid; 1f1b, ZeRO
 * 2 when dp > 1, 4 micro-batches): (1,1,2) on 2 ranks, (1,1,4), (2,1,2) and
 * (1,2,2) on 4. Exit 0 = all equal. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "data/random_source.h"
#include "dist/dist_internal.h"

enum { STEPS = 10, B = 2, MAX_M = 12 };

/* Tolerances, relative: TOL_LOSS for every step's loss, TOL_PARAM for the
 * final parameters (|a - b| / max(1, |b|)). Measured over every layout at 2
 * and 4 ranks: losses <= 4.2e-8 (summation order: micro-batch means and dp
 * reductions), parameters <= 3.6e-6 (after 10 AdamW steps, which divide each
 * element's update by its own gradient's size and so magnify the order's
 * rounding in near-zero gradients). 1 rank: losses 2e-16, parameters equal.
 * Llama: losses alike; parameters 1.27e-5 at tp 2 with 3 micro-batches (one
 * element of the last layer's gate_proj, the same at pp 1 and 2, every
 * ZeRO stage and schedule; <= 1e-5 everywhere else), hence TOL_PARAM_LLAMA. */
#define TOL_LOSS 5e-7
#define TOL_PARAM 1e-5
#define TOL_PARAM_LLAMA 5e-5
static double worst_loss, worst_param; /* the largest seen over all layouts, printed at the end */

#include "../common/mpi_check.h"



static model_config tiny(model_family f)
{
    return (model_config){.family = f, .n_layer = 4, .d_model = 32, .n_head = 4, .d_ff = 64, .seq_len = 16,
                          .max_positions = 16, .vocab_size = 61, .pre_ln = f != MODEL_BERT, .dropout = 0.1f,
                          .n_kv_head = 2, .norm_eps = 1e-5f, .rope_theta = 1e4f};
}

static const optim_config OPT = {.lr = 3e-3, .min_lr = 3e-4, .warmup_steps = 3, .total_steps = STEPS,
                                 .decay = DECAY_COSINE, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
                                 .weight_decay = 0.1, .clip = 1.0};

static status_t fill(void *ctx, uint64_t g, batch *b)
{
    random_batch_fill(b, ctx, g * B);
    return ST_OK;
}

typedef struct reference {
    double loss[STEPS];
    model_stage *model;
    int replicas; /* > 1: computed in the shape of pp = tp = 1, dp = replicas (see reference_run) */
} reference;

/* Sum of squares of the gradients in [lo, hi), tensor by tensor. */
static double range_sum_squares(model_stage *m, size_t lo, size_t hi)
{
    double s = 0.0;
    for (int i = 0; i < model_n_tensors(m); i++) {
        const model_tensor *t = model_tensor_at(m, i);
        size_t a = t->offset > lo ? t->offset : lo, z = t->offset + t->numel < hi ? t->offset + t->numel : hi;
        if (z > a) s += optim_sum_squares(model_grads(m) + a, z - a);
    }
    return s;
}

/* One stage, M micro-batches per step: train.c's loop with pp = dp = 1.
 * With R = ref->replicas > 1, in the shape of the dist engine at pp = tp = 1,
 * dp = R: replica r's M / R micro-batches (global indices r M / R ...)
 * accumulated in order into their own gradients, the replicas' gradients
 * summed in replica order (for R = 2 the one sum a + b that any reduction of
 * two values makes), the squared norm summed shard by shard (ceil(n / R) floats
 * each) as the engine does. The engine must then give these parameters bit
 * for bit: a replica taking its micro-batches in another order, or a shard
 * boundary off by one float, changes the last bits. */
static void reference_run(reference *ref, const model_config *mc, random_spec *spec, int M)
{
    ok_or_die(model_stage_create(&ref->model, mc, 0, mc->n_layer, B, 1), "reference stage");
    model_stage *m = ref->model;
    model_init_params(m, spec->seed);
    size_t n = model_n_params(m);
    int R = ref->replicas > 1 ? ref->replicas : 1, per = M / R;
    float *am = calloc(n, sizeof(float)), *av = calloc(n, sizeof(float)), *g = model_grads(m);
    float *acc = calloc(n, sizeof(float));
    batch b;
    batch_alloc(&b, B, mc->seq_len);
    for (int step = 0; step < STEPS; step++) {
        double sum = 0.0;
        for (int r = 0; r < R; r++) {
            memset(g, 0, n * sizeof(float));
            for (int j = 0; j < per; j++) {
                uint64_t gi = (uint64_t)step * M + (uint64_t)r * per + j;
                random_batch_fill(&b, spec, gi * B);
                /* as the executor: the head's weight gradient waits for the replica's last micro-batch */
                model_pass pass = {.train = 1, .seed = spec->seed, .sample0 = gi * B, .loss_scale = 1.0f / M,
                                   .head_dw_wait = j < per - 1};
                model_losses l = {0};
                ok_or_die(model_forward(m, 0, &b, &pass, &l), "reference forward");
                ok_or_die(model_backward(m, 0, &b, &pass), "reference backward");
                if (l.lm_count) sum += l.lm_loss_sum / l.lm_count;
                if (l.mlm_count) sum += l.mlm_loss_sum / l.mlm_count;
                if (l.nsp_count) sum += l.nsp_loss_sum / l.nsp_count;
            }
            for (size_t i = 0; R > 1 && i < n; i++) acc[i] = r ? acc[i] + g[i] : g[i];
        }
        if (R > 1) memcpy(g, acc, n * sizeof(float));
        ref->loss[step] = sum / M;
        double sumsq = 0.0;
        size_t shard = (n + (size_t)R - 1) / (size_t)R;
        for (int r = 0; r < R; r++) {
            size_t lo = (size_t)r * shard < n ? (size_t)r * shard : n, hi = lo + shard < n ? lo + shard : n;
            sumsq += R > 1 ? range_sum_squares(m, lo, hi) : optim_sum_squares(g, n);
        }
        float clip = optim_clip_factor(&OPT, sqrt(sumsq));
        double lr = optim_lr(&OPT, step + 1);
        for (int i = 0; i < model_n_tensors(m); i++) {
            const model_tensor *t = model_tensor_at(m, i);
            optim_adamw(&OPT, step + 1, lr, model_params(m) + t->offset, g + t->offset, am + t->offset,
                        av + t->offset, t->numel, t->decay, clip);
        }
    }
    batch_free(&b);
    free(am);
    free(av);
    free(acc);
}

static status_t no_reduce(void *ctx, float *buf, size_t n) { return ST_OK; }

/* Stage s's slice on tp rank r (its buffer received from that rank) written
 * into the full stage's buffer through the runs; the floats no run covers
 * (the vocabulary padding) must be zero. */
static void unsplit(model_stage *full, model_stage *mine, const model_config *mc, const dist_topology *t, int s, int r,
                    const char *label)
{
    model_tp tp = *model_stage_tp(mine);
    tp.rank = r;
    tp.allreduce_sum = tp.allreduce_max = no_reduce;
    model_stage *part;
    ok_or_die(model_stage_create_tp(&part, mc, t->bounds[s], t->bounds[s + 1], 1, 1, &tp), "slice view");
    if (s == 0 && r == 0) memcpy(model_params(part), model_params(mine), model_n_params(mine) * sizeof(float));
    else MPI_Recv(model_params(part), (int)model_n_params(part), MPI_FLOAT, s * t->tp + r, 7, t->comm, MPI_STATUS_IGNORE);
    size_t covered = 0;
    double pad = 0.0;
    for (int i = 0; i < model_n_tensors(part); i++) {
        const model_run *runs;
        int n = model_stage_runs(part, i, &runs);
        for (int k = 0; k < n; k++) {
            memcpy(model_params(full) + runs[k].full, model_params(part) + runs[k].local, runs[k].len * sizeof(float));
            covered += runs[k].len;
        }
        const model_tensor *lt = model_tensor_at(part, i);
        size_t end = n ? runs[n - 1].local + runs[n - 1].len : lt->offset;
        for (size_t z = end; z < lt->offset + lt->numel && lt->ndim == 2 && lt->tp_split; z++)
            pad = fmax(pad, fabs(model_params(part)[z]));
    }
    CHECK(pad == 0.0, "%s: stage %d tp rank %d: vocabulary padding is not zero (%g)", label, s, r, pad);
    CHECK(covered <= model_stage_full_n_params(part), "%s: runs cover %zu floats", label, covered);
    model_stage_free(part);
}

/* Rank 0 receives stage s's parameters from replica 0 (every tp rank's
 * slice) and compares them by name. */
static void compare_params(dist_engine *e, const reference *ref, const model_config *mc, const char *label)
{
    const dist_topology *t = dist_engine_topology(e);
    model_stage *mine = dist_engine_stage(e);
    if (t->replica == 0 && rank != 0)
        MPI_Send(model_params(mine), (int)model_n_params(mine), MPI_FLOAT, 0, 7, t->comm);
    if (rank != 0) return;
    for (int s = 0; s < t->pp; s++) {
        model_stage *view;
        ok_or_die(model_stage_create(&view, mc, t->bounds[s], t->bounds[s + 1], 1, 1), "view stage");
        if (s == 0 && t->tp == 1) memcpy(model_params(view), model_params(mine), model_n_params(mine) * sizeof(float));
        else if (t->tp == 1) MPI_Recv(model_params(view), (int)model_n_params(view), MPI_FLOAT, s, 7, t->comm, MPI_STATUS_IGNORE);
        for (int r = 0; t->tp > 1 && r < t->tp; r++) unsplit(view, mine, mc, t, s, r, label);
        double worst = 0.0;
        const char *where = "";
        for (int i = 0; i < model_n_tensors(view); i++) {
            const model_tensor *a = model_tensor_at(view, i), *b = model_tensor_find(ref->model, a->name);
            CHECK(b && b->numel == a->numel, "%s: tensor %s missing from the reference", label, a->name);
            for (size_t k = 0; b && k < a->numel; k++) {
                double x = model_params(view)[a->offset + k], y = model_params(ref->model)[b->offset + k];
                double d = fabs(x - y) / fmax(1.0, fabs(y));
                if (d > worst) worst = d, where = a->name;
            }
        }
        worst_param = fmax(worst_param, worst);
        CHECK(ref->replicas <= 1 || worst == 0.0, "%s: stage %d parameters differ from the reference computed in "
              "this layout's shape by %.3g (in %s; expected bit for bit: see reference_run)", label, s, worst, where);
        double tol = mc->family == MODEL_LLAMA ? TOL_PARAM_LLAMA : TOL_PARAM;
        CHECK(worst <= tol, "%s: stage %d parameters differ from the reference by %.3g (in %s)", label, s, worst,
              where);
        model_stage_free(view);
    }
}

/* The gradients of replicated tensors (LayerNorms, positions, row-parallel
 * biases, BERT's MLM transform and NSP) are the same bits on every tp rank. */
static void compare_replicated_grads(dist_engine *e, const char *label)
{
    const dist_topology *t = dist_engine_topology(e);
    if (t->tp == 1) return;
    model_stage *m = dist_engine_stage(e);
    uint64_t h = 0;
    for (int i = 0; i < model_n_tensors(m); i++) {
        const model_tensor *x = model_tensor_at(m, i);
        if (!x->tp_split) h = h * 31 + hash_xxh3(model_grads(m) + x->offset, x->numel * sizeof(float));
    }
    uint64_t h0 = h;
    MPI_Bcast(&h0, 1, MPI_UINT64_T, 0, t->tp_comm);
    CHECK(h == h0, "%s: stage %d tp rank %d: replicated gradients differ from tp rank 0's", label, t->stage, t->tp_rank);
}

/* The last stage's copy of the word embedding against the first stage's, in every replica. */
static void compare_tied(dist_engine *e, const char *label)
{
    const dist_topology *t = dist_engine_topology(e);
    model_stage *m = dist_engine_stage(e);
    if (t->tied == MPI_COMM_NULL || !model_tied(model_stage_config(m))) return;
    const model_tensor *w = model_tensor_find(m, model_stage_config(m)->family == MODEL_BERT ? "bert.embeddings.word_embeddings.weight"
                                                                          : "transformer.wte.weight");
    float *other = malloc(w->numel * sizeof(float));
    MPI_Sendrecv(model_params(m) + w->offset, (int)w->numel, MPI_FLOAT, t->stage == 0, 3, other,
                 (int)w->numel, MPI_FLOAT, t->stage == 0, 3, t->tied, MPI_STATUS_IGNORE);
    CHECK(memcmp(other, model_params(m) + w->offset, w->numel * sizeof(float)) == 0,
          "%s: replica %d: the tied embedding copies differ", label, t->replica);
    free(other);
}

static void compare_replicas(dist_engine *e, const char *label)
{
    const dist_topology *t = dist_engine_topology(e);
    model_stage *m = dist_engine_stage(e);
    uint64_t h = hash_xxh3(model_params(m), model_n_params(m) * sizeof(float)), h0 = h;
    MPI_Bcast(&h0, 1, MPI_UINT64_T, 0, t->dp_comm);
    CHECK(h == h0, "%s: stage %d replica %d parameters differ from replica 0's", label, t->stage, t->replica);
}

static void check_memory(dist_engine *e, int zero, const char *label)
{
    const dist_topology *t = dist_engine_topology(e);
    dist_memory mem = dist_engine_memory(e);
    size_t n = model_n_params(dist_engine_stage(e)), f = sizeof(float);
    size_t s = (n + t->dp - 1) / t->dp, lo = t->replica * s < n ? t->replica * s : n;
    size_t hi = lo + s < n ? lo + s : n, shard = hi - lo;
    int sharded = zero > 0 && t->dp > 1;
    CHECK(mem.params == f * n && mem.grad_accum == f * n && mem.shard == shard, "%s: params/shard accounting", label);
    CHECK(mem.grads == (zero == 2 && t->dp > 1 ? f * shard : 0), "%s: gradient bytes %zu", label, mem.grads);
    CHECK(mem.optimizer == 2 * f * (sharded ? shard : n), "%s: optimizer bytes %zu", label, mem.optimizer);
    unsigned long long total = mem.shard;
    MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, t->dp_comm);
    CHECK(total == n, "%s: shards cover %llu of %zu floats", label, total, n);
}

static void run_case(const reference *ref, const model_config *mc, random_spec *spec, int pp, int dp, int tp,
                     dist_tp_mode mode, int zero, dist_schedule_kind kind, int m)
{
    char label[128];
    snprintf(label, sizeof label, "%s pp=%d dp=%d tp=%d %s zero=%d %s m=%d", model_family_name(mc->family),
             pp, dp, tp, mode == DIST_TP_2D ? "2d" : "1d", zero, kind == DIST_GPIPE ? "gpipe" : "1f1b", m);
    dist_config dc = {.pp = pp, .dp = dp, .tp = tp, .tp_mode = mode, .schedule = kind, .zero = zero,
                      .hang_timeout = 60, .bucket_bytes = 4096};
    dist_engine *e;
    optim_state w;
    ok_or_die(dist_engine_create(&e, &dc, mc, &OPT, B, m, spec->seed, MPI_COMM_WORLD, &w), label);
    for (int step = 0; step < STEPS; step++) {
        dist_step_result r;
        ok_or_die(dist_train_step(e, &w, step, fill, spec, &r), label);
        /* ZeRO 2 starts reduce-scatters inside the last backward, not after it: every bucket but
           the ones holding the tied embedding (they wait for its sum across the pipeline) */
        if (zero == 2 && dp > 1) {
            const layout_rank *lay = dist_engine_layout(e);
            int untied = 0;
            for (int b = 0; b < lay->n_buckets; b++)
                untied += !(lay->tied_n && lay->bucket_lo[b] < lay->tied_off + lay->tied_n &&
                            lay->tied_off < lay->bucket_lo[b + 1]);
            CHECK(r.early_buckets > 0 && r.early_buckets == untied, "%s step %d: %d of the %d buckets without the "
                  "tied embedding were reduced during the backward", label, step, r.early_buckets, untied);
        }
        /* the bubble is a share of wall time: bounds only (timings are not asserted) */
        CHECK(r.bubble >= 0 && r.bubble < 1 && r.bubble <= r.bubble_mean + 1e-12, "%s step %d: bubble %g (mean %g)",
              label, step, r.bubble, r.bubble_mean);
        double mine[2] = {r.loss, r.grad_norm}, all[8];
        MPI_Allgather(mine, 2, MPI_DOUBLE, all, 2, MPI_DOUBLE, MPI_COMM_WORLD);
        for (int k = 1; k < world; k++)
            CHECK(memcmp(all, all + 2 * k, sizeof mine) == 0, "%s step %d: rank %d's result differs", label, step, k);
        if (rank == 0) {
            worst_loss = fmax(worst_loss, fabs(r.loss - ref->loss[step]) / fabs(ref->loss[step]));
            CHECK(fabs(r.loss - ref->loss[step]) <= TOL_LOSS * fabs(ref->loss[step]),
                  "%s step %d: loss %.9g, reference %.9g", label, step, r.loss, ref->loss[step]);
        }
    }
    compare_params(e, ref, mc, label);
    compare_replicated_grads(e, label);
    compare_tied(e, label);
    compare_replicas(e, label);
    check_memory(e, zero, label);
    dist_engine_free(e);
    optim_state_free(&w);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    static const model_family families[] = {MODEL_GPT, MODEL_BERT, MODEL_LLAMA};
    for (int fam = 0; fam < 3; fam++) {
        model_config mc = tiny(families[fam]);
        int bert = mc.family == MODEL_BERT;
        random_spec spec = {.mlm = bert, .nsp = bert, .vocab_size = mc.vocab_size, .mask_prob = 0.15, .seed = 11};
        for (int tp = 1; tp <= world; tp *= 2)
            for (int pp = 1; pp * tp <= world; pp++) {
                if (world % (pp * tp) || model_tp_check(&mc, tp) != ST_OK) continue; /* llama: tp | n_kv_head */
                int dp = world / (pp * tp), ms[2] = {4 / dp, 3};
                for (int k = 0; k < 2; k++) {
                    reference ref = {.replicas = pp == 1 && tp == 1 && dp == 2 ? 2 : 1};
                    if (rank == 0) reference_run(&ref, &mc, &spec, ms[k] * dp);
                    for (int zero = 0; zero <= 2; zero++)
                        for (int kind = DIST_GPIPE; kind <= DIST_1F1B; kind++)
                            run_case(&ref, &mc, &spec, pp, dp, tp, DIST_TP_1D, zero, (dist_schedule_kind)kind, ms[k]);
                    /* 2d: one schedule, ZeRO 2 where there are replicas */
                    if (tp > 1 && k == 0 && mc.family != MODEL_LLAMA)
                        run_case(&ref, &mc, &spec, pp, dp, tp, DIST_TP_2D, dp > 1 ? 2 : 0, DIST_1F1B, ms[k]);
                    model_stage_free(ref.model);
                }
            }
    }
    if (rank == 0)
        printf("dist_equivalence: %d ranks, largest relative differences from the reference: losses %.3g, "
               "parameters %.3g\n", world, worst_loss, worst_param);
    return mpi_check_finish("dist_equivalence");
}

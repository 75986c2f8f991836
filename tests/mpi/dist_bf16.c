// mpirun-np: 2 4
/* bf16 messages (dist.h "bf16 messages"), tiny GPT and BERT with dropout.
 * u = 2^-8 is bf16's unit roundoff (round to nearest even).
 *
 * - dist_bf16_sum: known pairs (ties to even, cancellation, subnormals,
 *   infinities, NaN), 200000 random pairs against the correctly rounded sum,
 *   and the reductions the engine uses (allreduce, reduce-scatter) over the
 *   world of values whose partial sums are all exact: equal to the bf16
 *   rounding of the fp32 sum, whatever the order.
 * - bf16 stages at pp = 2 (GPipe and 1F1B, dp = world / 2): step 1's loss and
 *   stage 0's gradients equal those of the same two stages run serially on
 *   rank 0 with the boundary activation and its gradient rounded to bf16 (the
 *   messages' semantics); step 1's loss is not the 1-rank bf16 run's but
 *   within the first-order bound 2 u sum |h dL/dh| of it (h the boundary
 *   activation: rounding moves each h by at most u |h|; the factor 2 covers
 *   second-order terms); the 10 steps' losses within TOL_PIPE of it.
 * - dist.grad_reduce = bf16 at dp = world, ZeRO 0/1/2 (fp32 compute, which
 *   the key allows): after step 1 (beta1 = 0, no clipping, so AdamW's first
 *   moment is the reduced gradient) every reduced gradient is a bf16 value,
 *   some differ from the fp32 reduction's, and all lie within
 *   ((1 + u)^dp - 1 + dp 2^-24) S of it, S = sum over ranks of |g_r| (each of
 *   the dp inputs and dp - 1 sums rounds once by at most u); the 10 steps'
 *   losses within TOL_REDUCE of the fp32 reduction's, the parameters not
 *   bitwise equal. At 4 ranks pp = 2 x dp = 2 runs both bf16 kinds together.
 * - bytes, counted by PMPI wrappers of MPI_Isend (the pipeline, the tied
 *   pair) and the dp group's MPI_Iallreduce / MPI_Ireduce: per step a stage
 *   sends m B T C values of 2 bytes (4 in fp32), the reduction n values of 2
 *   bytes (4); the first and the last stage each send the tied embedding's
 *   gradient once in fp32 (the last its part, the first the sum), and only
 *   the first holds a buffer for it.
 * - bf16 stages at dp = world, ZeRO 1 and 2: the bf16-pair state's shards
 *   all-gathered into identical replicas, losses within TOL_REDUCE of ZeRO 0
 *   (measured equal at 2 ranks).
 * - the training state (rank 0 alone): parameters written into it between
 *   steps are what the next step uses; after 3 steps the state (bf16 pairs
 *   and the fp32 mirror of norms, biases, positions) evaluates bit for bit
 *   as a stage holding the same parameters as floats (GPT and BERT).
 * - results identical on every rank, replicas and tied copies identical, the
 *   bf16 buffers in dist_engine_memory.
 * Exit 0 = all as stated. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "data/random_source.h"
#include "dist/dist_internal.h"
#include "tensor/bf16.h"

#include "../common/mpi_check.h"

enum { STEPS = 10, B = 2, M = 4 }; /* M: micro-batches per step over all replicas */

static const double U = 1.0 / 256;
/* The 10 steps' losses: no bound is derived past step 1 (AdamW's normalised
 * update does not carry a gradient's relative error through linearly). At 2
 * and 4 ranks the largest relative differences measure 6.3e-5 (pp = 2,
 * BERT) and 2.9e-5 (grad_reduce, dp = 4, GPT); the tolerances, in units of
 * u, leave about 8x room. The exact checks are the step-1 ones (first comment). */
#define TOL_PIPE (U / 8)
#define TOL_REDUCE (U / 16)

/* ---- byte counts: PMPI wrappers of the calls that carry bf16 messages ---- */

static unsigned long long p2p_bytes, tied_bytes, reduce_bytes;
/* the dp group whose reductions are counted, the pipeline and the tied pair whose sends are */
static MPI_Comm counted_dp = MPI_COMM_NULL, counted_pipe = MPI_COMM_NULL, counted_tied = MPI_COMM_NULL;

static unsigned long long bytes_of(int count, MPI_Datatype type)
{
    int size;
    MPI_Type_size(type, &size);
    return (unsigned long long)count * (unsigned long long)size;
}

int MPI_Isend(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm, MPI_Request *req)
{
    if (comm == counted_pipe) p2p_bytes += bytes_of(count, type);
    if (comm == counted_tied) tied_bytes += bytes_of(count, type);
    return PMPI_Isend(buf, count, type, dest, tag, comm, req);
}

int MPI_Iallreduce(const void *in, void *out, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm, MPI_Request *req)
{
    if (comm == counted_dp) reduce_bytes += bytes_of(count, type);
    return PMPI_Iallreduce(in, out, count, type, op, comm, req);
}

/* zero 2 reduces each bucket's pieces to their owners */
int MPI_Ireduce(const void *in, void *out, int count, MPI_Datatype type, MPI_Op op, int root, MPI_Comm comm,
                MPI_Request *req)
{
    if (comm == counted_dp) reduce_bytes += bytes_of(count, type);
    return PMPI_Ireduce(in, out, count, type, op, root, comm, req);
}

/* ---- the op ---------------------------------------------------------------- */

static float sum_op(float a, float b)
{
    bf16 x = bf16_round(a), y = bf16_round(b);
    int one = 1;
    MPI_Datatype t = MPI_UINT16_T;
    dist_bf16_sum(&x, &y, &one, &t);
    return bf16_value(y);
}

static void check_known_pairs(void)
{
    static const float cases[][3] = {
        {1, 1, 2},
        {3, -1, 2},
        {1, 0x1p-8f, 1},                      /* halfway: ties to even (1.0000000) */
        {1, 3 * 0x1p-8f, 1 + 0x1p-6f},        /* halfway: ties to even (1.0000010) */
        {1 + 0x1p-7f, 0x1p-8f, 1 + 0x1p-6f},  /* halfway from an odd significand: up */
        {1, 0x1p-9f, 1},                      /* below half an ulp */
        {256, 1, 256},                        /* 257: halfway, even is 256 */
        {256, 3, 260},                        /* 259: halfway, even is 260 */
        {-1.5f, 1.5f, 0},
        {1e30f, -1e30f, 0},
        {0x1p-133f, 0x1p-133f, 0x1p-132f},    /* subnormals add exactly */
        {0x1.fep127f, 0x1.fep127f, INFINITY}, /* overflow */
        {INFINITY, -1e30f, INFINITY},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        float got = sum_op(cases[k][0], cases[k][1]);
        CHECK(got == cases[k][2] && signbit(got) == signbit(cases[k][2]), "bf16 sum %a + %a = %a, expected %a",
              cases[k][0], cases[k][1], got, cases[k][2]);
    }
    CHECK(isnan(sum_op(NAN, 1)) && isnan(sum_op(INFINITY, -INFINITY)), "bf16 sum: NaN is not kept");
}

/* The nearest bf16 to s (ties to the even significand), found among x's
 * neighbours: x's exponent is within 20 of both summands', so doubles hold
 * every quantity exactly. */
static int correctly_rounded(bf16 x, double s)
{
    double here = fabs(bf16_value(x) - s);
    for (int d = -1; d <= 1; d += 2) {
        bf16 y = (bf16)(x + d);
        double there = fabs(bf16_value(y) - s);
        if (there < here || (there == here && (y & 1) == 0)) return 0;
    }
    return 1;
}

static void check_random_pairs(uint64_t *state)
{
    int bad = 0;
    for (int k = 0; k < 200000; k++) {
        uint64_t r = *state = *state * 6364136223846793005ull + 1442695040888963407ull;
        int ea = 100 + (int)(r >> 33) % 40, eb = ea - 20 + (int)(r >> 45) % 41;
        bf16 a = (bf16)(((r >> 20) & 1) << 15 | (unsigned)ea << 7 | ((r >> 8) & 127));
        bf16 b = (bf16)(((r >> 21) & 1) << 15 | (unsigned)eb << 7 | ((r >> 52) & 127));
        bf16 y = b;
        int one = 1;
        MPI_Datatype t = MPI_UINT16_T;
        dist_bf16_sum(&a, &y, &one, &t);
        double s = (double)bf16_value(a) + bf16_value(b);
        if (s != 0 && !correctly_rounded(y, s) && bad++ < 3)
            CHECK(0, "bf16 sum %a + %a = %a is not the nearest bf16 of %a", bf16_value(a), bf16_value(b),
                  bf16_value(y), s);
        if (s == 0) CHECK(bf16_value(y) == 0, "bf16 sum of opposites is %a", bf16_value(y));
    }
}

/* Rank r's k-th value: a small integer times a power of two, so every partial
 * sum of up to 4 ranks (|sum| <= 4 x 31 < 2^8) is a bf16 value. */
static float exact_value(int r, int k) { return (float)(((r * 7 + k * 13) % 63) - 31) * ldexpf(1, k % 40 - 20); }

static void check_world_reductions(void)
{
    enum { N = 20011 }; /* more than two of the op's chunks; not a multiple of the world */
    MPI_Op op;
    MPI_Op_create(dist_bf16_sum, 1, &op);
    bf16 *in = malloc(N * sizeof(bf16)), *out = malloc(N * sizeof(bf16));
    for (int k = 0; k < N; k++) in[k] = bf16_round(exact_value(rank, k));
    MPI_Allreduce(in, out, N, MPI_UINT16_T, op, MPI_COMM_WORLD);
    int wrong = 0;
    for (int k = 0; k < N; k++) {
        float sum = 0;
        for (int r = 0; r < world; r++) sum += exact_value(r, k);
        wrong += out[k] != bf16_round(sum);
    }
    CHECK(!wrong, "bf16 allreduce over %d ranks: %d of %d sums are not bf16(fp32 sum)", world, wrong, N);
    int *counts = malloc((size_t)world * sizeof(int)), block = N / world;
    for (int r = 0; r < world; r++) counts[r] = r < world - 1 ? block : N - block * (world - 1);
    MPI_Reduce_scatter(in, out, counts, MPI_UINT16_T, op, MPI_COMM_WORLD);
    wrong = 0;
    for (int k = 0; k < counts[rank]; k++) {
        float sum = 0;
        for (int r = 0; r < world; r++) sum += exact_value(r, rank * block + k);
        wrong += out[k] != bf16_round(sum);
    }
    CHECK(!wrong, "bf16 reduce-scatter over %d ranks: %d sums are not bf16(fp32 sum)", world, wrong);
    free(counts);
    free(in);
    free(out);
    MPI_Op_free(&op);
}

/* ---- training runs --------------------------------------------------------- */

static model_config tiny(model_family f, int bf16_compute)
{
    return (model_config){.family = f, .n_layer = 4, .d_model = 32, .n_head = 4, .d_ff = 64, .seq_len = 16,
                          .max_positions = 16, .vocab_size = 61, .pre_ln = f == MODEL_GPT, .dropout = 0.1f,
                          .bf16 = bf16_compute};
}

static const optim_config OPT = {.lr = 3e-3, .min_lr = 3e-4, .warmup_steps = 3, .total_steps = STEPS,
                                 .decay = DECAY_COSINE, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
                                 .weight_decay = 0.1, .clip = 1.0};
/* beta1 = 0 and no clipping: after step 1 AdamW's m is the reduced gradient */
static const optim_config OPT_RAW = {.lr = 3e-3, .total_steps = STEPS, .beta2 = 0.95, .eps = 1e-8};

static status_t fill(void *ctx, uint64_t g, batch *b)
{
    random_batch_fill(b, ctx, g * B);
    return ST_OK;
}

typedef struct run {
    double loss[STEPS];
    unsigned long long p2p, tied, reduce; /* this rank's bytes in the last step */
} run;

/* An engine and the training state it was created over. */
typedef struct job {
    dist_engine *e;
    optim_state w;
} job;

static void job_free(job *j)
{
    dist_engine_free(j->e);
    optim_state_free(&j->w);
    free(j);
}

static job *engine(const model_config *mc, const random_spec *spec, dist_config dc, const optim_config *oc,
                   MPI_Comm comm, const char *label)
{
    int size;
    MPI_Comm_size(comm, &size);
    dc.hang_timeout = 60;
    dc.bucket_bytes = 4096;
    job *j = calloc(1, sizeof *j);
    if (!j) st_die(ST_NOMEM);
    ok_or_die(dist_engine_create(&j->e, &dc, mc, oc, B, M / (size / dc.pp), spec->seed, comm, &j->w), label);
    return j;
}

/* Steps [from, to) of e; the loss must be the same bits on every rank of comm. */
static void train(job *e, random_spec *spec, int from, int to, run *r, MPI_Comm comm, const char *label)
{
    int size;
    MPI_Comm_size(comm, &size);
    counted_dp = dist_engine_topology(e->e)->dp_comm;
    counted_pipe = dist_engine_topology(e->e)->pipe;
    counted_tied = dist_engine_topology(e->e)->tied;
    for (int step = from; step < to; step++) {
        p2p_bytes = tied_bytes = reduce_bytes = 0;
        dist_step_result res;
        ok_or_die(dist_train_step(e->e, &e->w, step, fill, spec, &res), label);
        r->loss[step] = res.loss;
        double all[4];
        MPI_Allgather(&res.loss, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, comm);
        for (int k = 1; k < size; k++) CHECK(all[k] == all[0], "%s step %d: rank %d's loss differs", label, step, k);
    }
    r->p2p = p2p_bytes;
    r->tied = tied_bytes;
    r->reduce = reduce_bytes;
    counted_dp = counted_pipe = counted_tied = MPI_COMM_NULL;
}

/* The 1-rank run of mc (rank 0 only). */
static void reference(const model_config *mc, random_spec *spec, run *r)
{
    job *e = engine(mc, spec, (dist_config){.pp = 1}, &OPT, MPI_COMM_SELF, "1-rank reference");
    train(e, spec, 0, STEPS, r, MPI_COMM_SELF, "1-rank reference");
    job_free(e);
}

/* The largest |a - b| / |b| over the steps. */
static double worst_relative(const run *a, const run *b)
{
    double w = 0;
    for (int s = 0; s < STEPS; s++) w = fmax(w, fabs(a->loss[s] - b->loss[s]) / fabs(b->loss[s]));
    return w;
}

/* The job's parameters as floats (a bf16 state holds them as bf16 pairs); free() it. */
static float *params_of(job *e)
{
    float *p = malloc(e->w.n * sizeof(float) + 1);
    if (!p) st_die(ST_NOMEM);
    optim_state_get_params(&e->w, 0, e->w.n, p);
    return p;
}

static uint64_t params_hash(job *e)
{
    float *p = params_of(e);
    uint64_t h = hash_xxh3(p, e->w.n * sizeof(float));
    free(p);
    return h;
}

/* After dist_params_complete (ZeRO's update gathers only the low halves read
 * in fp32; the rest are stale until then) every replica holds the same
 * parameters. */
static void check_replicas(job *e, const char *label)
{
    const dist_topology *t = dist_engine_topology(e->e);
    CHECK(dist_params_complete(e->e) == ST_OK, "%s: completing the parameters failed: %s", label, st_message());
    uint64_t h = params_hash(e), h0 = h;
    MPI_Bcast(&h0, 1, MPI_UINT64_T, 0, t->dp_comm);
    CHECK(h == h0, "%s: stage %d replica %d parameters differ from replica 0's", label, t->stage, t->replica);
    if (t->tied == MPI_COMM_NULL) return;
    model_stage *m = dist_engine_stage(e->e);
    const model_tensor *w = model_tensor_find(m, model_stage_config(m)->family == MODEL_BERT
                                                     ? "bert.embeddings.word_embeddings.weight"
                                                     : "transformer.wte.weight");
    float *p = params_of(e);
    uint64_t mine = hash_xxh3(p + w->offset, w->numel * sizeof(float)), other;
    free(p);
    MPI_Sendrecv(&mine, 1, MPI_UINT64_T, t->stage == 0, 5, &other, 1, MPI_UINT64_T, t->stage == 0, 5, t->tied,
                 MPI_STATUS_IGNORE);
    CHECK(mine == other, "%s: replica %d: the tied embedding copies differ", label, t->replica);
}

/* ---- pipeline: bf16 stages ------------------------------------------------- */

/* Step 1 of the two stages [0, L) and [L, n_layer) run one after the other on
 * this rank, the boundary activation and its gradient rounded to bf16 as the
 * pipeline's messages are: the loss, stage 0's gradients (the last stage's
 * tied copy added, as the engine's tied sum does) and sum |h dL/dh| over the
 * micro-batches (dL/dh: stage 1's input gradient, of the step's loss). */
typedef struct serial {
    double loss, h_dh;
    model_stage *s0;
} serial;

static void round_into(float *dst, const float *src, bf16 *tmp, size_t n)
{
    bf16_from_f32(tmp, src, n);
    bf16_to_f32(dst, tmp, n);
}

static void serial_pass(model_stage **s, random_spec *spec, batch *b, int j, bf16 *tmp, serial *out)
{
    const model_config *mc = model_stage_config(s[0]);
    size_t N = (size_t)B * mc->seq_len * mc->d_model;
    random_batch_fill(b, spec, (uint64_t)j * B);
    model_pass pass = {.train = 1, .seed = spec->seed, .sample0 = (uint64_t)j * B, .loss_scale = 1.0f / M,
                       .defer_head = 1};
    model_losses l = {0};
    ok_or_die(model_forward(s[0], 0, b, &pass, NULL), "serial forward 0");
    round_into(model_stage_input(s[1], 0), model_stage_output(s[0], 0), tmp, N);
    ok_or_die(model_forward(s[1], 0, b, &pass, NULL), "serial forward 1");
    ok_or_die(model_head(s[1], 0, b, &pass, &l), "serial heads");
    ok_or_die(model_backward(s[1], 0, b, &pass), "serial backward 1");
    const float *h = model_stage_output(s[0], 0), *dh = model_stage_dinput(s[1], 0);
    for (size_t i = 0; i < N; i++) out->h_dh += fabs((double)h[i] * dh[i]);
    round_into(model_stage_doutput(s[0], 0), dh, tmp, N);
    ok_or_die(model_backward(s[0], 0, b, &pass), "serial backward 0");
    if (l.lm_count) out->loss += l.lm_loss_sum / l.lm_count / M;
    if (l.mlm_count) out->loss += l.mlm_loss_sum / l.mlm_count / M;
    if (l.nsp_count) out->loss += l.nsp_loss_sum / l.nsp_count / M;
}

static void serial_step1(const model_config *mc, random_spec *spec, int L, serial *out)
{
    model_stage *s[2];
    ok_or_die(model_stage_create(&s[0], mc, 0, L, B, 1), "serial stage 0");
    ok_or_die(model_stage_create(&s[1], mc, L, mc->n_layer, B, 1), "serial stage 1");
    for (int k = 0; k < 2; k++) {
        model_init_params(s[k], spec->seed);
        memset(model_grads(s[k]), 0, model_n_params(s[k]) * sizeof(float));
    }
    bf16 *tmp = malloc((size_t)B * mc->seq_len * mc->d_model * sizeof(bf16));
    batch b;
    batch_alloc(&b, B, mc->seq_len);
    for (int j = 0; j < M; j++) serial_pass(s, spec, &b, j, tmp, out);
    const char *wte = mc->family == MODEL_BERT ? "bert.embeddings.word_embeddings.weight" : "transformer.wte.weight";
    const model_tensor *w0 = model_tensor_find(s[0], wte), *w1 = model_tensor_find(s[1], wte);
    for (size_t i = 0; w1 && i < w0->numel; i++) model_grads(s[0])[w0->offset + i] += model_grads(s[1])[w1->offset + i];
    batch_free(&b);
    free(tmp);
    model_stage_free(s[1]);
    out->s0 = s[0];
}

/* Rank 0 (stage 0 of replica 0) after step 1: its reduced gradients against
 * the serial run's, to fp32 summation order (the engine adds the replicas'
 * micro-batches in another order at dp > 1). */
static void check_stage0_grads(job *e, const serial *ser, const char *label)
{
    model_stage *m = dist_engine_stage(e->e);
    const float *g = model_grads(m), *want = model_grads(ser->s0);
    size_t n = model_n_params(m);
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)g[i] - want[i]));
        scale = fmax(scale, fabs(want[i]));
    }
    CHECK(n == model_n_params(ser->s0) && diff <= 1e-5 * scale,
          "%s: stage 0's step-1 gradients differ from the serial bf16-boundary run by %.3g (largest %.3g)", label,
          diff, scale);
}

static void pipeline_case(const model_config *mc, random_spec *spec, dist_schedule_kind kind, dist_grad_reduce red,
                          const run *ref, const serial *ser, const char *name)
{
    char label[128];
    snprintf(label, sizeof label, "%s pp=2 bf16 %s grad_reduce=%s", name, kind == DIST_GPIPE ? "gpipe" : "1f1b",
             red == DIST_REDUCE_BF16 ? "bf16" : "fp32");
    job *e = engine(mc, spec, (dist_config){.pp = 2, .schedule = kind, .grad_reduce = red}, &OPT,
                            MPI_COMM_WORLD, label);
    const dist_topology *t = dist_engine_topology(e->e);
    run r;
    train(e, spec, 0, 1, &r, MPI_COMM_WORLD, label);
    int m = M / t->dp;
    unsigned long long want = (unsigned long long)m * B * mc->seq_len * mc->d_model * sizeof(bf16);
    CHECK(r.p2p == want, "%s: stage %d sent %llu bytes in a step, expected m B T C x 2 = %llu", label, t->stage, r.p2p,
          want);
    /* the tied embedding's gradient: the last stage's part one way, the sum the other, in fp32 */
    size_t tied_n = dist_engine_layout(e->e)->tied_n;
    CHECK(tied_n > 0 && r.tied == 4ull * tied_n, "%s: stage %d sent %llu bytes of the tied embedding's gradient in a "
          "step, expected its %zu floats once", label, t->stage, r.tied, tied_n);
    CHECK(dist_engine_memory(e->e).tied_recv == (t->stage == 0 ? 4 * tied_n : 0), "%s: stage %d's buffer for the tied "
          "gradient is %zu bytes", label, t->stage, dist_engine_memory(e->e).tied_recv);
    size_t extra = red == DIST_REDUCE_BF16 && t->dp > 1 ? sizeof(bf16) * model_n_params(dist_engine_stage(e->e)) : 0;
    size_t slots = (size_t)dist_engine_plan(e->e)->n_slots[t->stage];
    CHECK(dist_engine_memory(e->e).messages_bf16 == extra + 3 * sizeof(bf16) * slots * B * mc->seq_len * mc->d_model,
          "%s: bf16 message buffers %zu bytes", label, dist_engine_memory(e->e).messages_bf16);
    if (rank == 0) {
        CHECK(fabs(r.loss[0] - ser->loss) <= 1e-12 * ser->loss, "%s: step 1 loss %.12g, serial bf16-boundary run %.12g",
              label, r.loss[0], ser->loss);
        double d = fabs(r.loss[0] - ref->loss[0]), bound = 2 * U * ser->h_dh;
        CHECK(d > 0 && d <= bound, "%s: step 1 loss moves by %.3g from the 1-rank run (expected in (0, 2 u sum|h dL/dh| "
              "= %.3g])", label, d, bound);
        if (red == DIST_REDUCE_FP32) check_stage0_grads(e, ser, label);
    }
    train(e, spec, 1, STEPS, &r, MPI_COMM_WORLD, label);
    check_replicas(e, label);
    if (rank == 0) {
        double w = worst_relative(&r, ref);
        printf("%s: losses within %.3g relative of the 1-rank bf16 run (step 1: %.3g, first-order bound %.3g)\n",
               label, w, fabs(r.loss[0] - ref->loss[0]) / ref->loss[0], 2 * U * ser->h_dh / ref->loss[0]);
        CHECK(w <= TOL_PIPE, "%s: losses differ from the 1-rank run by %.3g relative (tolerance %.3g)", label, w,
              TOL_PIPE);
    }
    job_free(e);
}

/* fp32 stages at pp = 2 send m B T C floats of 4 bytes. */
static void check_fp32_pipe_bytes(model_family f, random_spec *spec)
{
    model_config mc = tiny(f, 0);
    job *e = engine(&mc, spec, (dist_config){.pp = 2}, &OPT, MPI_COMM_WORLD, "fp32 pp=2");
    run r;
    train(e, spec, 0, 1, &r, MPI_COMM_WORLD, "fp32 pp=2");
    unsigned long long want =
        (unsigned long long)(M / dist_engine_topology(e->e)->dp) * B * mc.seq_len * mc.d_model * 4;
    CHECK(r.p2p == want, "fp32 pp=2: a stage sent %llu bytes in a step, expected m B T C x 4 = %llu", r.p2p, want);
    CHECK(dist_engine_memory(e->e).messages_bf16 == 0, "fp32 pp=2: %zu bytes of bf16 buffers",
          dist_engine_memory(e->e).messages_bf16);
    job_free(e);
}

static void pipeline_checks(model_family f, random_spec *spec, const char *name)
{
    model_config mc = tiny(f, 1);
    run ref = {0};
    serial ser = {0};
    if (rank == 0) {
        int bounds[DIST_MAX_STAGES + 1];
        ok_or_die(dist_partition(&(dist_config){.pp = 2}, &mc, bounds), "partition");
        reference(&mc, spec, &ref);
        serial_step1(&mc, spec, bounds[1], &ser);
    }
    for (int kind = DIST_GPIPE; kind <= DIST_1F1B; kind++)
        pipeline_case(&mc, spec, (dist_schedule_kind)kind, DIST_REDUCE_FP32, &ref, &ser, name);
    if (world == 4) pipeline_case(&mc, spec, DIST_1F1B, DIST_REDUCE_BF16, &ref, &ser, name);
    check_fp32_pipe_bytes(f, spec);
    model_stage_free(ser.s0);
}

/* ---- dist.grad_reduce = bf16 ----------------------------------------------- */

/* S: the sum over the dp group of |local gradient| after step 1 (ZeRO 2
 * leaves the local accumulation in model_grads). */
static double *local_abs_sum(const model_config *mc, random_spec *spec)
{
    job *e = engine(mc, spec, (dist_config){.pp = 1, .zero = 2}, &OPT_RAW, MPI_COMM_WORLD, "S");
    run r;
    train(e, spec, 0, 1, &r, MPI_COMM_WORLD, "S");
    size_t n = model_n_params(dist_engine_stage(e->e));
    double *S = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) S[i] = fabs(model_grads(dist_engine_stage(e->e))[i]);
    MPI_Allreduce(MPI_IN_PLACE, S, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    job_free(e);
    return S;
}

/* Step 1 of ZeRO `zero` with both reductions: the reduced gradients (AdamW's
 * m under OPT_RAW) of this rank's part, and the bytes. */
static void reduce_step1(const model_config *mc, random_spec *spec, int zero, const double *S, const char *name)
{
    char label[96];
    snprintf(label, sizeof label, "%s dp=%d zero=%d grad_reduce=bf16 step 1", name, world, zero);
    job *e[2];
    run r[2];
    for (int k = 0; k < 2; k++) {
        dist_config dc = {.pp = 1, .zero = zero, .grad_reduce = k ? DIST_REDUCE_BF16 : DIST_REDUCE_FP32};
        e[k] = engine(mc, spec, dc, &OPT_RAW, MPI_COMM_WORLD, label);
        train(e[k], spec, 0, 1, &r[k], MPI_COMM_WORLD, label);
    }
    const optim_state *a = &e[0]->w, *b = &e[1]->w;
    const layout_rank *lay = dist_engine_layout(e[1]->e);
    double tol = pow(1 + U, world) - 1 + world * 0x1p-24;
    size_t differ = 0, not_bf16 = 0, outside = 0;
    for (size_t i = 0; i < b->uhi - b->ulo; i++) {
        differ += a->m[i] != b->m[i];
        not_bf16 += bf16_value(bf16_round(b->m[i])) != b->m[i];
        outside += fabs((double)a->m[i] - b->m[i]) > tol * S[b->ulo + i];
    }
    CHECK(a->ulo == b->ulo && a->uhi == b->uhi, "%s: parts differ", label);
    CHECK(differ > 0 && !not_bf16 && !outside, "%s: of %zu reduced gradients %zu differ from fp32's, %zu are not bf16 "
          "values, %zu lie beyond ((1 + u)^dp - 1 + dp 2^-24) S", label, b->uhi - b->ulo, differ, not_bf16, outside);
    size_t n = model_n_params(dist_engine_stage(e[1]->e));
    CHECK(r[0].reduce == 4 * n && r[1].reduce == 2 * n, "%s: reductions moved %llu (fp32) and %llu (bf16) bytes for "
          "%zu floats", label, r[0].reduce, r[1].reduce, n);
    size_t shard = zero == 2 ? 2 * (lay->hi - lay->lo) : 0;
    CHECK(dist_engine_memory(e[1]->e).messages_bf16 == 2 * n + shard && dist_engine_memory(e[0]->e).messages_bf16 == 0,
          "%s: bf16 buffers %zu bytes", label, dist_engine_memory(e[1]->e).messages_bf16);
    for (int k = 0; k < 2; k++) job_free(e[k]);
}

static void reduce_steps(const model_config *mc, random_spec *spec, int zero, const char *name)
{
    char label[96];
    snprintf(label, sizeof label, "%s dp=%d zero=%d grad_reduce=bf16", name, world, zero);
    run r[2];
    uint64_t h[2];
    for (int k = 0; k < 2; k++) {
        dist_config dc = {.pp = 1, .zero = zero, .grad_reduce = k ? DIST_REDUCE_BF16 : DIST_REDUCE_FP32};
        job *e = engine(mc, spec, dc, &OPT, MPI_COMM_WORLD, label);
        train(e, spec, 0, STEPS, &r[k], MPI_COMM_WORLD, label);
        check_replicas(e, label);
        h[k] = params_hash(e);
        job_free(e);
    }
    double w = worst_relative(&r[1], &r[0]);
    if (rank == 0) printf("%s: losses within %.3g relative of grad_reduce=fp32\n", label, w);
    CHECK(w <= TOL_REDUCE, "%s: losses differ from grad_reduce=fp32 by %.3g relative (tolerance %.3g)", label, w,
          TOL_REDUCE);
    CHECK(h[0] != h[1], "%s: parameters are bitwise those of grad_reduce=fp32 (no bf16 reduction ran)", label);
}

static void reduce_checks(model_family f, random_spec *spec, const char *name)
{
    model_config mc = tiny(f, 0);
    double *S = local_abs_sum(&mc, spec);
    for (int zero = 0; zero <= 2; zero++) {
        reduce_step1(&mc, spec, zero, S, name);
        reduce_steps(&mc, spec, zero, name);
    }
    free(S);
}

/* bf16 stages at dp = world, ZeRO 1 and 2: each rank updates its shard of
 * the bf16 pairs and the all-gather must leave every replica with the high
 * halves and the low halves it reads in fp32 (the rest once
 * dist_params_complete has run: check_replicas), and the losses those of
 * ZeRO 0, which differs only in the reduction's summation order: bitwise at
 * dp = 2 (a sum of two terms has one order). */
static void zero_bf16_checks(model_family f, random_spec *spec, const char *name)
{
    if (world < 2) return;
    model_config mc = tiny(f, 1);
    run r[3];
    for (int zero = 0; zero <= 2; zero++) {
        char label[96];
        snprintf(label, sizeof label, "%s bf16 dp=%d zero=%d", name, world, zero);
        job *e = engine(&mc, spec, (dist_config){.pp = 1, .zero = zero}, &OPT, MPI_COMM_WORLD, label);
        train(e, spec, 0, STEPS, &r[zero], MPI_COMM_WORLD, label);
        check_replicas(e, label);
        job_free(e);
        if (zero == 0 || rank != 0) continue;
        double w = worst_relative(&r[zero], &r[0]);
        printf("%s: losses within %.3g relative of zero=0\n", label, w);
        double tol = world == 2 ? 0.0 : TOL_REDUCE;
        CHECK(w <= tol, "%s: losses differ from zero=0 by %.3g relative (tolerance %.3g)", label, w, tol);
    }
}

/* ---- the training state ---------------------------------------------------------- */

/* A state written between steps (as a resume writes the checkpoint's into
 * it) is what the next step computes from: job b, one step behind job a,
 * runs a validation forward (which makes its bf16 weight copy from its own
 * parameters), takes a's parameters and moments, and then steps exactly as a
 * does. Rank 0 alone, 1 rank. */
static void check_state_written_between_steps(const model_config *mc, random_spec *spec)
{
    if (rank != 0) return;
    const char *label = "a state written between steps";
    job *a = engine(mc, spec, (dist_config){.pp = 1}, &OPT, MPI_COMM_SELF, label);
    job *b = engine(mc, spec, (dist_config){.pp = 1}, &OPT, MPI_COMM_SELF, label);
    run ra = {0}, rb = {0};
    train(a, spec, 0, 2, &ra, MPI_COMM_SELF, label);
    train(b, spec, 0, 1, &rb, MPI_COMM_SELF, label);
    CHECK(params_hash(a) != params_hash(b), "%s: one more step left the parameters as they were", label);
    batch vb;
    model_losses vl = {0};
    ok_or_die(batch_alloc(&vb, B, mc->seq_len), label);
    random_batch_fill(&vb, spec, 0);
    ok_or_die(dist_eval_forward(b->e, &vb, &vl), label);
    batch_free(&vb);
    size_t n = a->w.n, u = a->w.uhi - a->w.ulo;
    float *p = params_of(a);
    optim_state_set_params(&b->w, 0, n, p);
    free(p);
    memcpy(b->w.m, a->w.m, u * sizeof(float));
    memcpy(b->w.v, a->w.v, u * sizeof(float));
    train(a, spec, 2, 3, &ra, MPI_COMM_SELF, label);
    train(b, spec, 2, 3, &rb, MPI_COMM_SELF, label);
    CHECK(memcmp(&ra.loss[2], &rb.loss[2], sizeof(double)) == 0 && params_hash(a) == params_hash(b),
          "%s: step 3 from the copied state gives loss %.9g, the original %.9g (expected the same bits)", label,
          rb.loss[2], ra.loss[2]);
    job_free(a);
    job_free(b);
}

/* A bf16 training state holds its parameters as bf16 pairs and keeps fp32
 * copies only of the norms, biases and position tables, refreshed after
 * each update. After steps, its validation forward must be bit for bit
 * that of a stage holding the same parameters as plain floats (what mpilm
 * eval loads from a checkpoint): same bf16 weights, same fp32 vectors. */
static void check_pairs_evaluate_as_floats(const model_config *mc, random_spec *spec)
{
    if (rank != 0) return;
    const char *label = "bf16 pairs against floats";
    job *a = engine(mc, spec, (dist_config){.pp = 1}, &OPT, MPI_COMM_SELF, label);
    run ra = {0};
    train(a, spec, 0, 3, &ra, MPI_COMM_SELF, label);
    batch vb;
    ok_or_die(batch_alloc(&vb, B, mc->seq_len), label);
    random_batch_fill(&vb, spec, 0);
    model_losses la = {0}, lf = {0};
    ok_or_die(dist_eval_forward(a->e, &vb, &la), label);
    model_stage *f;
    ok_or_die(model_stage_create(&f, mc, 0, mc->n_layer, B, 1), label);
    CHECK(a->w.params == NULL && a->w.hi && model_n_params(f) == a->w.n, "%s: a bf16 state holds bf16 pairs", label);
    optim_state_get_params(&a->w, 0, a->w.n, model_params(f));
    model_pass pass = {.train = 0, .loss_scale = 1.0f};
    ok_or_die(model_forward(f, 0, &vb, &pass, &lf), label);
    double x = la.lm_loss_sum + la.mlm_loss_sum + la.nsp_loss_sum, y = lf.lm_loss_sum + lf.mlm_loss_sum + lf.nsp_loss_sum;
    CHECK(x > 0 && memcmp(&x, &y, sizeof x) == 0, "%s: after 3 steps the state evaluates to %.12g, the same floats "
          "in a stage of its own to %.12g (expected the same bits)", label, x, y);
    batch_free(&vb);
    model_stage_free(f);
    job_free(a);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    uint64_t state = 99;
    check_known_pairs();
    check_random_pairs(&state);
    check_world_reductions();
    {
        model_config mc = tiny(MODEL_GPT, 1);
        random_spec spec = {.vocab_size = mc.vocab_size, .seed = 11};
        check_state_written_between_steps(&mc, &spec);
        check_pairs_evaluate_as_floats(&mc, &spec);
        model_config bc = tiny(MODEL_BERT, 1);
        random_spec bs = {.mlm = 1, .nsp = 1, .vocab_size = bc.vocab_size, .mask_prob = 0.15, .seed = 11};
        check_pairs_evaluate_as_floats(&bc, &bs);
    }
    for (int fam = 0; fam < 2; fam++) {
        model_config mc = tiny(fam ? MODEL_BERT : MODEL_GPT, 0);
        random_spec spec = {.mlm = fam, .nsp = fam, .vocab_size = mc.vocab_size, .mask_prob = 0.15, .seed = 11};
        const char *name = fam ? "bert" : "gpt";
        pipeline_checks(mc.family, &spec, name);
        reduce_checks(mc.family, &spec, name);
        zero_bf16_checks(mc.family, &spec, name);
    }
    return mpi_check_finish("dist_bf16");
}

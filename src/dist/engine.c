/* dist/engine — set-up of a rank's part of the job (topology, verified
 * plan, stage, shards, optimizer state) and the whole training step. */
#include <stdlib.h>
#include <string.h>

#include "base/bigmem.h"
#include "base/timer.h"
#include "dist/dist_internal.h"

enum { DEFAULT_BUCKET_BYTES = 4 << 20 };

static void *zalloc(size_t n, size_t size) { return calloc(n ? n : 1, size); }

/* The job's shape for layout/ (the stage's 2d grid from tp). */
static layout_spec layout_of(const dist_engine *e, const model_tp *tp)
{
    layout_spec s = {.model = e->mc, .pp = e->topo.pp, .dp = e->topo.dp, .tp = e->topo.tp, .zero = e->dc.zero,
                     .grid_p = tp->grid_p, .grid_q = tp->grid_q, .block = tp->block,
                     .bucket_floats = (e->dc.bucket_bytes ? e->dc.bucket_bytes : DEFAULT_BUCKET_BYTES) / sizeof(float)};
    memcpy(s.bounds, e->topo.bounds, sizeof s.bounds);
    return s;
}

static status_t setup_shards(dist_engine *e, const model_tp *tp)
{
    int dp = e->topo.dp;
    layout_spec spec = layout_of(e, tp);
    TRY(layout_rank_build(&spec, e->topo.rank, &e->lay));
    FAIL_IF(e->lay.n > (size_t)1 << 30, ST_CONFIG, "dist: a stage of %zu parameters is beyond this build's 2^30 per-stage "
            "limit of MPI counts; raise dist.pp", e->lay.n);
    e->counts = zalloc((size_t)dp, sizeof(int));
    e->displs = zalloc((size_t)dp, sizeof(int));
    FAIL_IF(!e->counts || !e->displs, ST_NOMEM, "dist: out of memory");
    for (int r = 0; r < dp; r++) {
        size_t lo, hi;
        layout_shard(e->lay.n, dp, r, &lo, &hi);
        e->counts[r] = (int)(hi - lo);
        e->displs[r] = (int)lo;
    }
    size_t n_req = (size_t)e->lay.n_buckets * dp + 1;
    e->coll = zalloc(n_req, sizeof(MPI_Request));
    e->bucket_counts = zalloc((size_t)e->lay.n_buckets * dp, sizeof(int));
    FAIL_IF(!e->coll || !e->bucket_counts, ST_NOMEM, "dist: out of memory");
    for (size_t i = 0; i < n_req; i++) e->coll[i] = MPI_REQUEST_NULL;
    e->bucket_posted = zalloc((size_t)e->lay.n_buckets, 1);
    FAIL_IF(!e->bucket_posted, ST_NOMEM, "dist: out of memory");
    if (!(e->dc.zero == 2 && dp > 1)) return ST_OK;
    e->grad_shard = bigmem_alloc((e->lay.hi - e->lay.lo) * sizeof(float));
    FAIL_IF(!e->grad_shard, ST_NOMEM, "dist: out of memory for the gradient shard");
    for (int b = 0; b < e->lay.n_buckets; b++) {
        size_t a = e->lay.bucket_lo[b], z = e->lay.bucket_lo[b + 1];
        for (int r = 0; r < dp; r++) {
            size_t lo = (size_t)e->displs[r], hi = lo + (size_t)e->counts[r];
            size_t x = a > lo ? a : lo, y = z < hi ? z : hi;
            e->bucket_counts[(size_t)b * dp + r] = y > x ? (int)(y - x) : 0;
        }
    }
    return ST_OK;
}

/* dist.grad_reduce = bf16 at dp > 1: the rounded gradients, zero 2's bf16
 * shard and the sum's MPI_Op. */
static status_t setup_reduce_bf16(dist_engine *e)
{
    if (e->dc.grad_reduce != DIST_REDUCE_BF16 || e->topo.dp == 1) return ST_OK;
    FAIL_IF(MPI_Op_create(dist_bf16_sum, 1, &e->bf16_sum) != MPI_SUCCESS, ST_MPI, "dist: MPI_Op_create failed");
    e->reduce_bf = bigmem_alloc(e->lay.n * sizeof(bf16));
    FAIL_IF(!e->reduce_bf, ST_NOMEM, "dist: out of memory for the bf16 gradient reduction");
    if (!e->grad_shard) return ST_OK;
    e->shard_bf = bigmem_alloc((e->lay.hi - e->lay.lo) * sizeof(bf16));
    FAIL_IF(!e->shard_bf, ST_NOMEM, "dist: out of memory for the bf16 gradient shard");
    return ST_OK;
}

/* bf16 stages at pp > 1: a receive and two send buffers per slot. */
static status_t setup_pipe_bf16(dist_engine *e)
{
    if (!e->mc.bf16 || e->topo.pp == 1) return ST_OK;
    e->pipe_bf = bigmem_alloc((size_t)e->n_slots * 3 * e->act_count * sizeof(bf16));
    FAIL_IF(!e->pipe_bf, ST_NOMEM, "dist: out of memory for the bf16 pipeline messages");
    return ST_OK;
}

static status_t setup_executor(dist_engine *e)
{
    int k = e->n_slots;
    e->batches = zalloc((size_t)k, sizeof(batch));
    e->recv_req = zalloc((size_t)k * 3, sizeof(MPI_Request));
    e->slot_mb = zalloc((size_t)k * 2, sizeof(int));
    FAIL_IF(!e->batches || !e->recv_req || !e->slot_mb, ST_NOMEM, "dist: out of memory");
    e->send_act = e->recv_req + k;
    e->send_grad = e->recv_req + 2 * k;
    e->slot_fwd = e->slot_mb + k;
    for (int i = 0; i < 3 * k; i++) e->recv_req[i] = MPI_REQUEST_NULL;
    for (int i = 0; i < k; i++) TRY(batch_alloc(&e->batches[i], e->B, e->mc.seq_len));
    e->max_final_pend = e->topo.layer_end - e->topo.layer_begin + 2; /* the embeddings, the blocks, the heads */
    e->final_pend = zalloc((size_t)e->max_final_pend * 2, sizeof(size_t));
    FAIL_IF(!e->final_pend, ST_NOMEM, "dist: out of memory");
    if (e->topo.tied != MPI_COMM_NULL && e->topo.stage == 0) {
        e->tied_peer = bigmem_alloc(e->lay.tied_n * sizeof(float));
        FAIL_IF(!e->tied_peer, ST_NOMEM, "dist: out of memory for the last stage's tied-embedding gradient");
    }
    return setup_pipe_bf16(e);
}

/* model_tp's reductions: an MPI_Iallreduce over the tensor group completed
 * through the watchdog, so a dead peer ends the job instead of hanging it. */
static status_t tp_allreduce(dist_engine *e, float *buf, size_t n, MPI_Op op, const char *what)
{
    double t0 = time_now();
    FAIL_IF(MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, op, e->topo.tp_comm, &e->tp_req) != MPI_SUCCESS,
            ST_MPI, "dist: %s failed", what);
    status_t st = dist_wait(e, &e->tp_req, what);
    e->tp_comm += time_now() - t0;
    return st;
}

static status_t tp_sum(void *ctx, float *buf, size_t n)
{
    return tp_allreduce(ctx, buf, n, MPI_SUM, "a tensor-parallel sum (activation or gradient) over the tp group");
}

static status_t tp_max(void *ctx, float *buf, size_t n)
{
    return tp_allreduce(ctx, buf, n, MPI_MAX, "the parallel cross-entropy's row max over the tp group");
}

/* 2d: the grid's GEMM (compute and SUMMA panels, not timed as a reduction)
 * and gather (timed with the reductions). */
static status_t tp_gemm(void *ctx, int ta, int tb, float alpha, const model_dmat *A, const model_dmat *B, float beta,
                        const model_dmat *C)
{
    return dist_tp_grid_gemm(((dist_engine *)ctx)->grid, ta, tb, alpha, A, B, beta, C);
}

static status_t tp_gather(void *ctx, const model_dmat *A, float *full)
{
    dist_engine *e = ctx;
    double t0 = time_now();
    status_t st = dist_tp_grid_gather(e->grid, A, full);
    e->tp_comm += time_now() - t0;
    return st;
}

/* The rank's layout, the training state sized by it, the stage over the
 * state's buffers and its parameters from the seed. */
static status_t setup_stage(dist_engine *e, const model_tp *tp, optim_state *w)
{
    TRY(setup_shards(e, tp));
    TRY(optim_state_alloc(w, e->lay.n, e->lay.ulo, e->lay.uhi, e->mc.bf16));
    TRY(model_stage_create_over(&e->stage, &e->mc, e->topo.layer_begin, e->topo.layer_end, e->B, e->n_slots, tp,
                                w->params, w->hi, w->lo, w->grads, w->n));
    model_init_params_into(e->stage, e->seed, optim_state_params_staged(w));
    optim_state_params_commit(w);
    return ST_OK;
}

static status_t engine_setup(dist_engine *e, const model_config *mc, MPI_Comm world, optim_state *w)
{
    TRY(dist_topology_create(&e->topo, &e->dc, mc, world));
    e->act_count = (size_t)e->B * mc->seq_len * mc->d_model;
    TRY(dist_plan_build(&e->plan, e->dc.schedule, e->topo.pp, e->m, e->act_count));
    TRY(dist_plan_verify(&e->plan));
    e->n_slots = e->plan.n_slots[e->topo.stage];
    model_tp tp = {.size = e->topo.tp, .rank = e->topo.tp_rank, .allreduce_sum = tp_sum, .allreduce_max = tp_max,
                   .ctx = e};
    if (e->dc.tp_mode == DIST_TP_2D && e->topo.tp > 1) {
        TRY(dist_tp_grid_create(&e->grid, e->topo.tp_comm, mc, e->B * mc->seq_len, &tp));
        tp.gemm = tp_gemm;
        tp.gather = tp_gather;
    }
    TRY(setup_stage(e, &tp, w));
    e->w = w;
    TRY(dist_lo_plan(e));
    TRY(setup_reduce_bf16(e));
    return setup_executor(e);
}

status_t dist_engine_create(dist_engine **out, const dist_config *dc, const model_config *mc,
                            const optim_config *oc, int B, int m, uint64_t seed, MPI_Comm world, optim_state *w)
{
    *out = NULL;
    *w = (optim_state){0};
    FAIL_IF(B < 1 || m < 1, ST_CONFIG, "dist: train.micro_batch = %d and train.micro_batches = %d (expected >= 1)", B, m);
    dist_engine *e = calloc(1, sizeof *e);
    FAIL_IF(!e, ST_NOMEM, "dist: out of memory");
    e->topo.comm = e->topo.pipe = e->topo.dp_comm = e->topo.tied = e->topo.tp_comm = MPI_COMM_NULL;
    e->tp_req = e->tied_req[0] = e->tied_req[1] = MPI_REQUEST_NULL;
    e->bf16_sum = MPI_OP_NULL;
    e->dc = *dc;
    e->mc = *mc;
    e->oc = *oc;
    e->B = B;
    e->m = m;
    e->seed = seed;
    status_t st = engine_setup(e, mc, world, w);
    if (st != ST_OK) {
        dist_engine_free(e);
        optim_state_free(w);
        return st;
    }
    *out = e;
    return ST_OK;
}

void dist_engine_free(dist_engine *e)
{
    if (!e) return;
    for (int i = 0; e->batches && i < e->n_slots; i++) batch_free(&e->batches[i]);
    free(e->batches);
    free(e->recv_req);
    free(e->slot_mb);
    free(e->counts);
    free(e->displs);
    free(e->lo_runs);
    free(e->lo_counts);
    free(e->lo_displs);
    free(e->lo_buf);
    free(e->grad_shard);
    free(e->reduce_bf);
    free(e->shard_bf);
    free(e->pipe_bf);
    free(e->tied_peer);
    free(e->final_pend);
    if (e->bf16_sum != MPI_OP_NULL) MPI_Op_free(&e->bf16_sum);
    free(e->coll);
    free(e->bucket_counts);
    free(e->bucket_posted);
    layout_rank_free(&e->lay);
    model_stage_free(e->stage);
    dist_tp_grid_free(e->grid);
    dist_plan_free(&e->plan);
    dist_topology_free(&e->topo);
    free(e);
}

model_stage *dist_engine_stage(dist_engine *e) { return e->stage; }
const dist_topology *dist_engine_topology(const dist_engine *e) { return &e->topo; }
const dist_plan *dist_engine_plan(const dist_engine *e) { return &e->plan; }

int dist_engine_tp_grid(const dist_engine *e, int *P, int *Q, int *block)
{
    if (!e->grid) return 0;
    dist_tp_grid_describe(e->grid, P, Q, block);
    return 1;
}

/* The training state around a stage of n floats, from the configuration
 * alone (so the estimate before allocation and the report after agree). */
static dist_memory memory_plan(const dist_engine *e, size_t n, size_t full_n, size_t mirror, size_t tied_n)
{
    size_t f = sizeof(float), h = sizeof(bf16), lo, hi;
    int dp = e->topo.dp, zero2 = e->dc.zero == 2 && dp > 1, sharded = e->dc.zero > 0 && dp > 1;
    layout_shard(n, dp, e->topo.replica, &lo, &hi);
    size_t shard = hi - lo, updated = sharded ? shard : n;
    int reduce_bf = e->dc.grad_reduce == DIST_REDUCE_BF16 && dp > 1, pipe_bf = e->mc.bf16 && e->topo.pp > 1;
    size_t messages = (reduce_bf ? h * n : 0) + (reduce_bf && zero2 ? h * shard : 0) +
                      (pipe_bf ? h * 3 * (size_t)e->n_slots * e->act_count : 0);
    size_t batches = (size_t)e->n_slots * (size_t)e->B * e->mc.seq_len * 4 * sizeof(int32_t);
    return (dist_memory){.params = f * n,
                         .params_mirror = mirror,
                         .grads = zero2 ? f * shard : 0,
                         .grad_accum = f * n,
                         .optimizer = 2 * f * updated,
                         .shard = shard,
                         .messages_bf16 = messages,
                         .tied_recv = e->topo.stage == 0 ? f * tied_n : 0,
                         .activations = batches,
                         .ckpt_part = e->topo.tp > 1 ? 3 * f * ((full_n + (size_t)(dp * e->topo.tp) - 1) /
                                                                 (size_t)(dp * e->topo.tp)) : 0};
}

dist_memory dist_engine_memory(const dist_engine *e)
{
    dist_memory m = memory_plan(e, e->lay.n, e->lay.full_n, model_stage_mirror_bytes(e->stage), e->lay.tied_n);
    m.activations += model_stage_arena_bytes(e->stage);
    return m;
}

status_t dist_memory_of_rank(const dist_config *dc, const model_config *mc, int B, int m, int dp, int rank,
                             dist_memory *out)
{
    FAIL_IF(B < 1 || m < 1, ST_CONFIG, "dist: train.micro_batch = %d and train.micro_batches = %d (expected >= 1)", B, m);
    int tp = dc->tp > 0 ? dc->tp : 1;
    FAIL_IF(dp < 1 || dc->pp < 1 || rank < 0 || rank >= dc->pp * dp * tp, ST_CONFIG,
            "dist: rank %d of pp %d x dp %d x tp %d", rank, dc->pp, dp, tp);
    dist_engine *e = calloc(1, sizeof *e);
    FAIL_IF(!e, ST_NOMEM, "dist: out of memory");
    e->dc = *dc;
    e->mc = *mc;
    e->B = B;
    e->m = m;
    e->topo = (dist_topology){.pp = dc->pp, .dp = dp, .tp = tp, .tp_rank = rank % tp, .stage = rank / tp % dc->pp,
                              .replica = rank / tp / dc->pp, .comm = MPI_COMM_NULL, .pipe = MPI_COMM_NULL,
                              .dp_comm = MPI_COMM_NULL, .tied = MPI_COMM_NULL, .tp_comm = MPI_COMM_NULL};
    status_t st = dist_partition(dc, mc, e->topo.bounds);
    e->act_count = (size_t)B * mc->seq_len * mc->d_model;
    if (st == ST_OK) st = dist_plan_build(&e->plan, e->dc.schedule, e->topo.pp, m, e->act_count);
    if (st == ST_OK) {
        e->n_slots = e->plan.n_slots[e->topo.stage];
        /* 2d: planned as 1d (the FFN's local hidden has the same size up to block rounding) */
        model_tp mtp = {.size = tp, .rank = e->topo.tp_rank, .allreduce_sum = tp_sum, .allreduce_max = tp_max,
                        .ctx = e};
        model_stage_memory sm;
        st = model_stage_plan_memory(mc, e->topo.bounds[e->topo.stage], e->topo.bounds[e->topo.stage + 1], B,
                                     e->n_slots, &mtp, &sm);
        model_tensor *full = NULL;
        int nf;
        size_t full_n = 0;
        int lb = e->topo.bounds[e->topo.stage], le = e->topo.bounds[e->topo.stage + 1];
        if (st == ST_OK) st = model_stage_table(mc, lb, le, lb == 0, le == mc->n_layer, NULL, &full, &nf, &full_n);
        free(full);
        layout_spec spec = layout_of(e, &mtp);
        layout_rank lay;
        if (st == ST_OK) st = layout_rank_build(&spec, rank, &lay);
        if (st == ST_OK) {
            *out = memory_plan(e, sm.n_params, full_n, sm.params_mirror, lay.tied_n);
            layout_rank_free(&lay);
            out->activations += sm.activations;
        }
    }
    dist_plan_free(&e->plan);
    free(e);
    return st;
}

status_t dist_memory_estimate(const dist_config *dc, const model_config *mc, int B, int m, MPI_Comm world,
                              dist_memory *out)
{
    dist_topology topo;
    status_t st = dist_topology_create(&topo, dc, mc, world);
    if (st == ST_OK) st = dist_memory_of_rank(dc, mc, B, m, topo.dp, topo.rank, out);
    dist_topology_free(&topo);
    return st;
}

const layout_rank *dist_engine_layout(const dist_engine *e) { return &e->lay; }

status_t dist_train_step(dist_engine *e, optim_state *w, int64_t step, dist_fill_fn fill, void *ctx,
                         dist_step_result *r)
{
    double t0 = time_now();
    *r = (dist_step_result){0};
    FAIL_IF(w->grads != model_grads(e->stage) || w->n != e->lay.n || w->ulo != e->lay.ulo || w->uhi != e->lay.uhi,
            ST_ERROR, "dist: the training state given to step %lld is not the one the engine was created over",
            (long long)step + 1);
    e->w = w;
    /* its parameters may have been written since the last step (a resume) */
    model_params_changed(e->stage);
    e->step = step;
    e->deadline = e->dc.hang_timeout > 0 ? t0 + e->dc.hang_timeout : 0.0;
    e->busy = e->tp_comm = 0.0;
    e->pipe_s = 0.0;
    e->sums[0] = e->sums[1] = e->sums[2] = 0.0;
    e->pc = e->plan.n_instr[e->topo.stage];
    memset(w->grads, 0, w->n * sizeof(float));
    TRY(dist_run_pipeline(e, fill, ctx));
    e->pipe_s = time_now() - t0;
    for (int b = 0; b < e->lay.n_buckets; b++) r->early_buckets += e->bucket_posted[b];
    TRY(dist_sync_grads(e));
    TRY(dist_update(e, r));
    r->step_s = time_now() - t0;
    r->pipe_s = e->pipe_s;
    r->busy_s = e->busy;
    r->comm_s = r->step_s - r->pipe_s - r->update_s;
    r->tp_comm_s = e->tp_comm;
    return ST_OK;
}

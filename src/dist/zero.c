/* dist/zero — after the pipeline phase: the tied word embedding's gradient
 * sum, the dp reduction (ZeRO 0/1: allreduce; ZeRO 2: reduce-scatter in
 * buckets into this rank's shard), the global grad norm, clipping, AdamW on
 * this rank's part split at tensor boundaries, and the parameter all-gather.
 * Every collective is non-blocking and completed through the watchdog. With
 * dist.grad_reduce = bf16 the dp reduction moves bf16 values (dist.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/timer.h"
#include "dist/dist_internal.h"

/* ---- the tied embedding's gradient across the pipeline ----------------------------
 * The first stage's copy gets gradient from the lookup, the last stage's from
 * the heads; both need the sum, bitwise the same. The last stage's part is
 * complete when its pipeline phase ends, before the first stage's last
 * backward does: it is sent then (dist_tied_send) and arrives in tied_peer
 * while that backward runs (the executor's poll progresses it). Once the
 * first stage's own part is complete, it adds the two (first + last, as the
 * allreduce this replaces did) and sends the sum back. Only the sum's way
 * back follows the last backward: one message of the stage's slice of
 * V x C floats instead of an allreduce's two and its additions on both. */
enum { TAG_TIED_PART = 1, TAG_TIED_SUM = 2 };

static float *tied_grads(dist_engine *e) { return e->w->grads + e->lay.tied_off; }

status_t dist_tied_recv(dist_engine *e)
{
    if (e->topo.tied == MPI_COMM_NULL || e->topo.stage != 0) return ST_OK;
    FAIL_IF(MPI_Irecv(e->tied_peer, (int)e->lay.tied_n, MPI_FLOAT, 1, TAG_TIED_PART, e->topo.tied, &e->tied_req[0]) !=
            MPI_SUCCESS, ST_MPI, "dist: posting the receive of the last stage's tied-embedding gradient failed");
    return ST_OK;
}

status_t dist_tied_send(dist_engine *e)
{
    if (e->topo.tied == MPI_COMM_NULL || e->topo.stage == 0) return ST_OK;
    FAIL_IF(MPI_Isend(tied_grads(e), (int)e->lay.tied_n, MPI_FLOAT, 0, TAG_TIED_PART, e->topo.tied,
                      &e->tied_req[1]) != MPI_SUCCESS, ST_MPI,
            "dist: sending the tied-embedding gradient to the first stage failed");
    return ST_OK;
}

static status_t tied_send_done(dist_engine *e)
{
    if (e->topo.tied == MPI_COMM_NULL || e->topo.stage != 0) return ST_OK;
    return dist_wait(e, &e->tied_req[1], "the last stage's receive of the tied-embedding gradient's sum");
}

/* The sum, after the pipeline phase. The first stage's send of it is
 * completed before the dp allreduce overwrites the buffer (ZeRO 0/1 at
 * dp > 1), else after the update (dist_update: nothing writes the gradients
 * before the next step). */
static status_t tied_sum(dist_engine *e)
{
    if (e->topo.tied == MPI_COMM_NULL) return ST_OK;
    float *g = tied_grads(e);
    int n = (int)e->lay.tied_n;
    if (e->topo.stage != 0) {
        TRY(dist_wait(e, &e->tied_req[1], "the first stage's receive of this stage's tied-embedding gradient"));
        FAIL_IF(MPI_Irecv(g, n, MPI_FLOAT, 0, TAG_TIED_SUM, e->topo.tied, &e->tied_req[0]) != MPI_SUCCESS, ST_MPI,
                "dist: posting the receive of the tied-embedding gradient's sum failed");
        return dist_wait(e, &e->tied_req[0], "the tied-embedding gradient's sum from the first stage");
    }
    TRY(dist_wait(e, &e->tied_req[0], "the last stage's tied-embedding gradient"));
    const float *p = e->tied_peer;
    for (int i = 0; i < n; i++) g[i] += p[i];
    FAIL_IF(MPI_Isend(g, n, MPI_FLOAT, 1, TAG_TIED_SUM, e->topo.tied, &e->tied_req[1]) != MPI_SUCCESS, ST_MPI,
            "dist: sending the tied-embedding gradient's sum to the last stage failed");
    if (e->topo.dp > 1 && e->dc.zero != 2) return tied_send_done(e);
    return ST_OK;
}

void dist_bf16_sum(void *in, void *inout, int *len, MPI_Datatype *type)
{
    enum { CHUNK = 8192 }; /* widened on the stack (64 KiB); each conversion call opens an OpenMP region (~1 us) */
    float a[CHUNK], b[CHUNK];
    const bf16 *x = in;
    bf16 *y = inout;
    for (int i = 0; i < *len; i += CHUNK) {
        int k = *len - i < CHUNK ? *len - i : CHUNK;
        bf16_to_f32(a, x + i, (size_t)k);
        bf16_to_f32(b, y + i, (size_t)k);
        for (int j = 0; j < k; j++) a[j] += b[j];
        bf16_from_f32(y + i, a, (size_t)k);
    }
}

/* The dp reduction's values and sum: fp32 and MPI_SUM, or with
 * dist.grad_reduce = bf16 the bf16 rounding of the gradients and
 * dist_bf16_sum. */
static MPI_Datatype reduce_type(const dist_engine *e) { return e->reduce_bf ? MPI_UINT16_T : MPI_FLOAT; }
static MPI_Op reduce_op(const dist_engine *e) { return e->reduce_bf ? e->bf16_sum : MPI_SUM; }

/* What the reduction sends of the final gradients [a, z): the gradients
 * themselves, or their bf16 rounding, made now. */
static void *reduce_source(dist_engine *e, size_t a, size_t z)
{
    float *g = e->w->grads + a;
    if (!e->reduce_bf) return g;
    bf16_from_f32(e->reduce_bf + a, g, z - a);
    return e->reduce_bf + a;
}

static int bucket_is_tied(const dist_engine *e, size_t a, size_t z)
{
    return e->lay.tied_n && a < e->lay.tied_off + e->lay.tied_n && e->lay.tied_off < z;
}

static void bucket_range(const dist_engine *e, int b, size_t *a, size_t *z)
{
    *a = e->lay.bucket_lo[b];
    *z = e->lay.bucket_lo[b + 1];
}

/* Bucket b's reduce-scatter: for each rank r holding part of it, an
 * MPI_Ireduce of that piece to r, in r order on every rank. Open MPI 4.1's
 * non-blocking MPI_Ireduce_scatter reduces the whole bucket to rank 0 and
 * scatters from there, so rank 0 summed everything and sent the other
 * shards back (measured: dp = 2 ZeRO 2 at 1.3-1.4x one rank on BERT);
 * reducing each piece to its owner spreads the sums over the owners and sends
 * each value once. */
static status_t post_bucket(dist_engine *e, int b)
{
    size_t a, z;
    bucket_range(e, b, &a, &z);
    int dp = e->topo.dp;
    const char *src = reduce_source(e, a, z);
    size_t elem = e->reduce_bf ? sizeof(bf16) : sizeof(float), at = a;
    e->bucket_posted[b] = 1;
    for (int r = 0; r < dp; r++) {
        int count = e->bucket_counts[(size_t)b * dp + r];
        if (!count) continue;
        void *recv = NULL;
        if (r == e->topo.replica)
            recv = e->shard_bf ? (void *)(e->shard_bf + (at - e->lay.lo)) : (void *)(e->grad_shard + (at - e->lay.lo));
        FAIL_IF(MPI_Ireduce(src + (at - a) * elem, recv, count, reduce_type(e), reduce_op(e), r, e->topo.dp_comm,
                            &e->coll[(size_t)b * dp + r]) != MPI_SUCCESS, ST_MPI,
                "dist: gradient reduction of bucket %d (floats [%zu, %zu)) to rank %d failed", b, at,
                at + (size_t)count, r);
        at += (size_t)count;
    }
    return ST_OK;
}

/* Buckets go in descending order (backward finishes the buffer from its end),
 * the same order on every rank of the dp group: those wholly at or above
 * final_lo as soon as it reaches them, except the ones holding the tied
 * embedding, which wait for its sum across the pipeline in dist_sync_grads.
 * A range that is not next below final_lo (a last stage's heads, complete
 * after its blocks when it flushes them late: finish_heads in exec.c) waits
 * in final_pend until the ranges above it are final. */
status_t dist_grads_final(dist_engine *e, size_t lo, size_t hi)
{
    if (e->dc.zero != 2 || e->topo.dp == 1 || lo >= hi) return ST_OK;
    if (hi != e->final_lo) {
        FAIL_IF(e->n_final_pend == e->max_final_pend, ST_ERROR,
                "dist: more than %d gradient ranges of stage %d finished out of order", e->max_final_pend,
                e->topo.stage);
        e->final_pend[2 * e->n_final_pend] = lo;
        e->final_pend[2 * e->n_final_pend++ + 1] = hi;
        return ST_OK;
    }
    e->final_lo = lo;
    for (int k = 0; k < e->n_final_pend;) {
        if (e->final_pend[2 * k + 1] != e->final_lo) {
            k++;
            continue;
        }
        e->final_lo = e->final_pend[2 * k];
        e->n_final_pend--;
        e->final_pend[2 * k] = e->final_pend[2 * e->n_final_pend];
        e->final_pend[2 * k + 1] = e->final_pend[2 * e->n_final_pend + 1];
        k = 0;
    }
    for (; e->next_bucket >= 0; e->next_bucket--) {
        size_t a, z;
        bucket_range(e, e->next_bucket, &a, &z);
        if (a < e->final_lo) break;
        if (!bucket_is_tied(e, a, z)) TRY(post_bucket(e, e->next_bucket));
    }
    return ST_OK;
}

static status_t reduce_scatter(dist_engine *e)
{
    for (int b = e->lay.n_buckets - 1; b >= 0; b--)
        if (!e->bucket_posted[b]) TRY(post_bucket(e, b));
    for (int b = 0; b < e->lay.n_buckets; b++)
        for (int r = 0; r < e->topo.dp; r++) {
            char what[96];
            snprintf(what, sizeof what, "the gradient reduce-scatter of bucket %d of %d (its part on dp rank %d)", b,
                     e->lay.n_buckets, r);
            TRY(dist_wait(e, &e->coll[(size_t)b * e->topo.dp + r], what));
        }
    if (e->shard_bf) bf16_to_f32(e->grad_shard, e->shard_bf, e->lay.hi - e->lay.lo);
    return ST_OK;
}

static status_t allreduce(dist_engine *e)
{
    FAIL_IF(MPI_Iallreduce(MPI_IN_PLACE, reduce_source(e, 0, e->lay.n), (int)e->lay.n, reduce_type(e), reduce_op(e),
                           e->topo.dp_comm, dist_other(e)) != MPI_SUCCESS, ST_MPI,
            "dist: gradient allreduce failed");
    TRY(dist_wait(e, dist_other(e), "the gradient allreduce over the dp group"));
    if (e->reduce_bf) bf16_to_f32(e->w->grads, e->reduce_bf, e->lay.n);
    return ST_OK;
}

status_t dist_sync_grads(dist_engine *e)
{
    TRY(tied_sum(e));
    if (e->topo.dp == 1) return ST_OK;
    return e->dc.zero == 2 ? reduce_scatter(e) : allreduce(e);
}

/* The reduced gradient of float i (lo <= i < hi). */
static const float *grad_at(dist_engine *e, size_t i)
{
    return e->grad_shard ? e->grad_shard + (i - e->lay.lo) : e->w->grads + i;
}

/* Sum of squares of this rank's shard, tensor by tensor: the last stage's
 * copy of the tied embedding is left out (the first stage counts it), and a
 * tensor replicated over the tp group counts on tp_rank 0 only. */
static double shard_sum_squares(dist_engine *e)
{
    double s = 0.0;
    for (int i = 0; i < model_n_tensors(e->stage); i++) {
        const model_tensor *t = model_tensor_at(e->stage, i);
        if (t->tied_copy || (!t->tp_split && e->topo.tp_rank != 0)) continue;
        size_t a = t->offset > e->lay.lo ? t->offset : e->lay.lo;
        size_t z = t->offset + t->numel < e->lay.hi ? t->offset + t->numel : e->lay.hi;
        if (z > a) s += optim_sum_squares(grad_at(e, a), z - a);
    }
    return s;
}

enum { SUMS = 6 }; /* per rank: grad sum of squares, 3 losses, pipeline busy and wall time */

/* Norm, losses and pipeline times from every rank, summed in rank order so
 * that every rank gets the same bits; the bubble: the idle share of the
 * busiest rank in the pipeline phase, which ends when the last rank's does. */
static status_t global_sums(dist_engine *e, double *sumsq, double *losses, dist_step_result *r)
{
    /* every rank of a tp group has the whole loss: tp_rank 0 reports it */
    double own = e->topo.tp_rank == 0 ? 1.0 : 0.0;
    double mine[SUMS] = {shard_sum_squares(e), own * e->sums[0], own * e->sums[1], own * e->sums[2], e->busy,
                         e->pipe_s};
    int W = e->topo.world;
    double *all = malloc(sizeof(double) * SUMS * (size_t)W);
    FAIL_IF(!all, ST_NOMEM, "dist: out of memory");
    status_t st = ST_MPI;
    if (MPI_Iallgather(mine, SUMS, MPI_DOUBLE, all, SUMS, MPI_DOUBLE, e->topo.comm, dist_other(e)) ==
        MPI_SUCCESS)
        st = dist_wait(e, dist_other(e), "the grad-norm and loss gather over all ranks");
    else
        st_fail(st, "dist: MPI_Iallgather of the grad norm failed");
    *sumsq = losses[0] = losses[1] = losses[2] = 0.0;
    double busiest = 0.0, phase = 0.0, busy_sum = 0.0; /* the phase ends when the last rank's does */
    for (int k = 0; st == ST_OK && k < W; k++) {
        const double *a = all + SUMS * k;
        *sumsq += a[0];
        for (int j = 0; j < 3; j++) losses[j] += a[1 + j];
        busiest = a[4] > busiest ? a[4] : busiest;
        phase = a[5] > phase ? a[5] : phase;
        busy_sum += a[4];
    }
    if (phase > 0) {
        r->bubble = 1.0 - busiest / phase;
        r->bubble_mean = 1.0 - busy_sum / W / phase;
    }
    free(all);
    return st;
}

/* AdamW on this rank's floats [ulo, uhi); returns the index of the first
 * tensor with a non-finite value after its update, or -1. The scan reads each
 * tensor's part right after the update wrote it (4 of the update's 28 bytes
 * per float, often still in cache). */
static int adamw_range(dist_engine *e, int64_t t, double lr, float clip)
{
    optim_state *w = e->w;
    int bad = -1;
    for (int i = 0; i < model_n_tensors(e->stage); i++) {
        const model_tensor *tt = model_tensor_at(e->stage, i);
        size_t a = tt->offset > e->lay.ulo ? tt->offset : e->lay.ulo;
        size_t z = tt->offset + tt->numel < e->lay.uhi ? tt->offset + tt->numel : e->lay.uhi;
        if (z <= a) continue;
        float *m = w->m + (a - e->lay.ulo), *v = w->v + (a - e->lay.ulo);
        int finite;
        if (w->params) {
            optim_adamw(&e->oc, t, lr, w->params + a, grad_at(e, a), m, v, z - a, tt->decay, clip);
            finite = optim_all_finite(w->params + a, z - a);
        } else { /* bf16 pairs: the update also makes the GEMMs' bf16 weights */
            optim_adamw_split(&e->oc, t, lr, w->hi + a, w->lo + a, grad_at(e, a), m, v, z - a, tt->decay, clip);
            finite = bf16_all_finite(w->hi + a, z - a);
        }
        if (bad < 0 && !finite) bad = i;
    }
    return bad;
}

/* Every rank agrees whether any rank's update left a non-finite parameter
 * (one tiny allreduce over all ranks); if so the lowest such rank sends the
 * tensor's name and every rank fails with the same message, so no rank goes
 * on to write a checkpoint of this step. */
static status_t agree_finite(dist_engine *e, int bad)
{
    int W = e->topo.world, rank;
    MPI_Comm_rank(e->topo.comm, &rank);
    int mine = bad >= 0 ? rank : W, first = mine;
    MPI_Request *req = &e->coll[e->lay.n_buckets];
    FAIL_IF(MPI_Iallreduce(&mine, &first, 1, MPI_INT, MPI_MIN, e->topo.comm, req) != MPI_SUCCESS, ST_MPI,
            "dist: the allreduce of the finite-parameter check failed");
    TRY(dist_wait(e, req, "the finite-parameter check over all ranks"));
    if (first == W) return ST_OK;
    char name[80] = "";
    if (rank == first) snprintf(name, sizeof name, "%s", model_tensor_at(e->stage, bad)->name);
    FAIL_IF(MPI_Ibcast(name, sizeof name, MPI_CHAR, first, e->topo.comm, req) != MPI_SUCCESS, ST_MPI,
            "dist: sending the name of the non-finite tensor failed");
    TRY(dist_wait(e, req, "the name of the non-finite tensor"));
    name[sizeof name - 1] = '\0';
    return st_fail(ST_ERROR, "dist: parameter %s is not finite after the update of step %lld (first found on rank %d); "
                   "training stopped before any checkpoint of this step, so the last checkpoint is the newest: "
                   "resume from it with a lower train.lr, a higher train.warmup_steps or train.clip, or check the "
                   "checkpoint the run started from", name, (long long)e->step + 1, first);
}

/* ---- the low halves a rank reads outside its shard ---------------------------- */

/* The floats of [a, z) inside rank r's shard. */
static size_t in_shard(const dist_engine *e, int r, size_t a, size_t z, size_t *x)
{
    size_t lo = (size_t)e->displs[r], hi = lo + (size_t)e->counts[r];
    *x = a > lo ? a : lo;
    size_t y = z < hi ? z : hi;
    return y > *x ? y - *x : 0;
}

status_t dist_lo_plan(dist_engine *e)
{
    if (!e->w->hi || e->dc.zero == 0 || e->topo.dp == 1) return ST_OK;
    int n_t = model_n_tensors(e->stage), dp = e->topo.dp;
    e->lo_runs = malloc(2 * (size_t)(n_t + 1) * sizeof *e->lo_runs);
    e->lo_counts = calloc((size_t)dp, sizeof(int));
    e->lo_displs = calloc((size_t)dp, sizeof(int));
    FAIL_IF(!e->lo_runs || !e->lo_counts || !e->lo_displs, ST_NOMEM, "dist: out of memory");
    size_t k = 0; /* ranges in offset order, adjacent ones merged */
    for (int i = 0; i < n_t; i++) {
        const model_tensor *t = model_tensor_at(e->stage, i);
        if (!model_tensor_read_fp32(e->stage, i) || t->numel == 0) continue;
        if (k && e->lo_runs[2 * k - 1] == t->offset) {
            e->lo_runs[2 * k - 1] += t->numel;
        } else {
            e->lo_runs[2 * k] = t->offset;
            e->lo_runs[2 * k + 1] = t->offset + t->numel;
            k++;
        }
    }
    e->n_lo_runs = k;
    size_t total = 0, x;
    for (int r = 0; r < dp; r++) {
        size_t c = 0;
        for (size_t j = 0; j < k; j++) c += in_shard(e, r, e->lo_runs[2 * j], e->lo_runs[2 * j + 1], &x);
        e->lo_counts[r] = (int)c;
        e->lo_displs[r] = (int)total;
        total += c;
    }
    e->lo_buf = malloc((total ? total : 1) * sizeof *e->lo_buf);
    FAIL_IF(!e->lo_buf, ST_NOMEM, "dist: out of memory for %zu low halves", total);
    return ST_OK;
}

/* rank r's part of the packed low halves from lo (pack) or into it. */
static void lo_pack(dist_engine *e, int r, int pack)
{
    uint16_t *p = e->lo_buf + e->lo_displs[r];
    for (size_t j = 0; j < e->n_lo_runs; j++) {
        size_t x, n = in_shard(e, r, e->lo_runs[2 * j], e->lo_runs[2 * j + 1], &x);
        if (pack) memcpy(p, e->w->lo + x, n * sizeof *p);
        else memcpy(e->w->lo + x, p, n * sizeof *p);
        p += n;
    }
}

/* Every rank's high halves, and the low halves of the ranges read in fp32;
 * the rest of the low halves stays stale (lo_stale). */
static status_t gather_pairs(dist_engine *e)
{
    FAIL_IF(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, e->w->hi, e->counts, e->displs, MPI_UINT16_T,
                            e->topo.dp_comm, dist_other(e)) != MPI_SUCCESS, ST_MPI,
            "dist: parameter all-gather (high halves) failed");
    TRY(dist_wait(e, dist_other(e), "the parameter all-gather over the dp group"));
    int me = e->topo.replica;
    lo_pack(e, me, 1);
    FAIL_IF(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, e->lo_buf, e->lo_counts, e->lo_displs,
                            MPI_UINT16_T, e->topo.dp_comm, dist_other(e)) != MPI_SUCCESS, ST_MPI,
            "dist: parameter all-gather (low halves read in fp32) failed");
    TRY(dist_wait(e, dist_other(e), "the parameter all-gather over the dp group"));
    for (int r = 0; r < e->topo.dp; r++)
        if (r != me) lo_pack(e, r, 0);
    e->lo_stale = 1;
    return ST_OK;
}

status_t dist_params_complete(dist_engine *e)
{
    if (!e->lo_stale) return ST_OK;
    FAIL_IF(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, e->w->lo, e->counts, e->displs, MPI_UINT16_T,
                            e->topo.dp_comm, dist_other(e)) != MPI_SUCCESS, ST_MPI,
            "dist: parameter all-gather (low halves) failed");
    TRY(dist_wait(e, dist_other(e), "the parameter all-gather (low halves) over the dp group"));
    e->lo_stale = 0;
    return ST_OK;
}

status_t dist_update(dist_engine *e, dist_step_result *r)
{
    double sumsq, losses[3];
    TRY(global_sums(e, &sumsq, losses, r));
    double scale = 1.0 / ((double)e->m * e->topo.dp);
    r->lm = losses[0] * scale;
    r->mlm = losses[1] * scale;
    r->nsp = losses[2] * scale;
    r->loss = r->lm + r->mlm + r->nsp;
    r->grad_norm = sqrt(sumsq);
    FAIL_IF(!isfinite(r->loss), ST_ERROR,
            "dist: the loss is %g at step %lld (before the update; no checkpoint of this step is written): the "
            "parameters or the data give non-finite values; resume from the last checkpoint with a lower train.lr, "
            "or check the checkpoint the run started from", r->loss, (long long)e->step + 1);
    FAIL_IF(!isfinite(r->grad_norm), ST_ERROR,
            "dist: the gradient norm is %g at step %lld (diverged: lower train.lr or raise train.warmup_steps)",
            r->grad_norm, (long long)e->step + 1);
    r->lr = optim_lr(&e->oc, e->step + 1);
    double t0 = time_now();
    int bad = adamw_range(e, e->step + 1, r->lr, optim_clip_factor(&e->oc, r->grad_norm));
    model_params_changed(e->stage); /* and the all-gather below: the bf16 copy is remade before the next pass */
    r->update_s = time_now() - t0;
    TRY(tied_send_done(e));
    TRY(agree_finite(e, bad));
    if (e->dc.zero == 0 || e->topo.dp == 1) return ST_OK;
    if (e->w->params) {
        FAIL_IF(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, e->w->params, e->counts, e->displs,
                                MPI_FLOAT, e->topo.dp_comm, dist_other(e)) != MPI_SUCCESS, ST_MPI,
                "dist: parameter all-gather failed");
        return dist_wait(e, dist_other(e), "the parameter all-gather over the dp group");
    }
    return gather_pairs(e); /* bf16 pairs */
}

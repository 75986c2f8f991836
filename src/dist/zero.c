/* dist/zero — after the pipeline phase: the tied word embedding's gradient
 * sum, the dp reduction (ZeRO 0/1: allreduce; ZeRO 2: reduce-scatter in
 * buckets into this rank's shard), the global grad norm, clipping, AdamW on
 * this rank's part split at tensor boundaries, and the parameter all-gather.
 * Every collective is non-blocking and completed through the watchdog. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "dist/dist_internal.h"

static status_t tied_sum(dist_engine *e)
{
    if (e->topo.tied == MPI_COMM_NULL) return ST_OK;
    float *g = model_grads(e->stage) + e->tied_off;
    FAIL_IF(MPI_Iallreduce(MPI_IN_PLACE, g, (int)e->tied_n, MPI_FLOAT, MPI_SUM, e->topo.tied, &e->coll[0]) !=
            MPI_SUCCESS, ST_MPI, "dist: tied-embedding allreduce failed");
    return dist_wait(e, &e->coll[0], "the tied-embedding gradient sum (first + last stage)");
}

static status_t reduce_scatter(dist_engine *e)
{
    size_t bucket = (e->n + (size_t)e->n_buckets - 1) / (size_t)e->n_buckets;
    float *g = model_grads(e->stage);
    for (int b = 0; b < e->n_buckets; b++) {
        size_t a = (size_t)b * bucket, z = a + bucket < e->n ? a + bucket : e->n;
        size_t at = a > e->lo ? a : e->lo;
        float *recv = e->grad_shard + (at < e->hi ? at - e->lo : 0);
        FAIL_IF(MPI_Ireduce_scatter(g + a, recv, e->bucket_counts + (size_t)b * e->topo.dp, MPI_FLOAT, MPI_SUM,
                                    e->topo.dp_comm, &e->coll[b]) != MPI_SUCCESS, ST_MPI,
                "dist: gradient reduce-scatter of bucket %d (floats [%zu, %zu)) failed", b, a, z);
    }
    for (int b = 0; b < e->n_buckets; b++) {
        char what[80];
        snprintf(what, sizeof what, "the gradient reduce-scatter of bucket %d of %d", b, e->n_buckets);
        TRY(dist_wait(e, &e->coll[b], what));
    }
    return ST_OK;
}

status_t dist_sync_grads(dist_engine *e)
{
    TRY(tied_sum(e));
    if (e->topo.dp == 1) return ST_OK;
    if (e->dc.zero == 2) return reduce_scatter(e);
    FAIL_IF(MPI_Iallreduce(MPI_IN_PLACE, model_grads(e->stage), (int)e->n, MPI_FLOAT, MPI_SUM, e->topo.dp_comm,
                           &e->coll[0]) != MPI_SUCCESS, ST_MPI, "dist: gradient allreduce failed");
    return dist_wait(e, &e->coll[0], "the gradient allreduce over the dp group");
}

/* The reduced gradient of float i (lo <= i < hi). */
static const float *grad_at(dist_engine *e, size_t i)
{
    return e->grad_shard ? e->grad_shard + (i - e->lo) : model_grads(e->stage) + i;
}

/* Sum of squares of this rank's shard, tensor by tensor: the last stage's
 * copy of the tied embedding is left out (the first stage counts it), and a
 * tensor replicated over the tp group counts on tp_rank 0 only. */
static double shard_sum_squares(dist_engine *e)
{
    double s = 0.0;
    for (int i = 0; i < model_n_tensors(e->stage); i++) {
        const model_tensor *t = model_tensor_at(e->stage, i);
        int tied_copy = e->tied_n && e->topo.stage == e->topo.pp - 1 && t->offset == e->tied_off;
        if (tied_copy || (!t->tp_split && e->topo.tp_rank != 0)) continue;
        size_t a = t->offset > e->lo ? t->offset : e->lo;
        size_t z = t->offset + t->numel < e->hi ? t->offset + t->numel : e->hi;
        if (z > a) s += optim_sum_squares(grad_at(e, a), z - a);
    }
    return s;
}

/* Norm and losses from every rank, summed in rank order so that every rank
 * gets the same bits. */
static status_t global_sums(dist_engine *e, double *sumsq, double *losses)
{
    /* every rank of a tp group has the whole loss: tp_rank 0 reports it */
    double own = e->topo.tp_rank == 0 ? 1.0 : 0.0;
    double mine[4] = {shard_sum_squares(e), own * e->sums[0], own * e->sums[1], own * e->sums[2]};
    int W = e->topo.world;
    double *all = malloc(sizeof(double) * 4 * (size_t)W);
    FAIL_IF(!all, ST_NOMEM, "dist: out of memory");
    status_t st = ST_MPI;
    if (MPI_Iallgather(mine, 4, MPI_DOUBLE, all, 4, MPI_DOUBLE, e->topo.comm, &e->coll[0]) == MPI_SUCCESS)
        st = dist_wait(e, &e->coll[0], "the grad-norm and loss gather over all ranks");
    else
        st_fail(st, "dist: MPI_Iallgather of the grad norm failed");
    *sumsq = losses[0] = losses[1] = losses[2] = 0.0;
    for (int r = 0; st == ST_OK && r < W; r++) {
        *sumsq += all[4 * r];
        for (int j = 0; j < 3; j++) losses[j] += all[4 * r + 1 + j];
    }
    free(all);
    return st;
}

static void adamw_range(dist_engine *e, int64_t t, double lr, float clip)
{
    float *p = model_params(e->stage);
    for (int i = 0; i < model_n_tensors(e->stage); i++) {
        const model_tensor *tt = model_tensor_at(e->stage, i);
        size_t a = tt->offset > e->ulo ? tt->offset : e->ulo;
        size_t z = tt->offset + tt->numel < e->uhi ? tt->offset + tt->numel : e->uhi;
        if (z <= a) continue;
        optim_adamw(&e->oc, t, lr, p + a, grad_at(e, a), e->adam_m + (a - e->ulo), e->adam_v + (a - e->ulo), z - a,
                    tt->decay, clip);
    }
}

status_t dist_update(dist_engine *e, dist_step_result *r)
{
    double sumsq, losses[3];
    TRY(global_sums(e, &sumsq, losses));
    double scale = 1.0 / ((double)e->m * e->topo.dp);
    r->lm = losses[0] * scale;
    r->mlm = losses[1] * scale;
    r->nsp = losses[2] * scale;
    r->loss = r->lm + r->mlm + r->nsp;
    r->grad_norm = sqrt(sumsq);
    FAIL_IF(!isfinite(r->grad_norm), ST_ERROR,
            "dist: the gradient norm is %g at step %lld (diverged: lower train.lr or raise train.warmup_steps)",
            r->grad_norm, (long long)e->step + 1);
    r->lr = optim_lr(&e->oc, e->step + 1);
    adamw_range(e, e->step + 1, r->lr, optim_clip_factor(&e->oc, r->grad_norm));
    if (e->dc.zero == 0 || e->topo.dp == 1) return ST_OK;
    FAIL_IF(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, model_params(e->stage), e->counts, e->displs,
                            MPI_FLOAT, e->topo.dp_comm, &e->coll[0]) != MPI_SUCCESS, ST_MPI,
            "dist: parameter all-gather failed");
    return dist_wait(e, &e->coll[0], "the parameter all-gather over the dp group");
}

/* dist/dist_internal — the engine's state, shared by the executor (exec.c)
 * and the step (engine.c, zero.c). Not part of the module's API. */
#ifndef MPILM_DIST_DIST_INTERNAL_H
#define MPILM_DIST_DIST_INTERNAL_H

#include "dist/dist.h"
#include "tensor/bf16.h"

struct dist_engine {
    dist_config dc;
    model_config mc;
    optim_config oc;
    dist_topology topo;
    dist_plan plan;
    model_stage *stage;
    dist_tp_grid *grid;           /* dist.tp_mode = 2d at tp > 1, else NULL */
    int B, m, n_slots;
    uint64_t seed;
    batch *batches;               /* [n_slots]: the micro-batch each slot holds */

    /* which floats of the stage this rank holds, reduces, updates and saves:
     * its dp shard [lay.lo, lay.hi) of the lay.n floats, the update range
     * [lay.ulo, lay.uhi), the buckets and the tied embedding (layout.h) */
    layout_rank lay;
    int *counts, *displs;         /* [dp] every rank's shard, for the all-gather */
    float *adam_m, *adam_v;       /* [uhi - ulo] */
    float *grad_shard;            /* zero 2: [hi - lo] reduced gradients */
    int *bucket_counts;           /* [n_buckets][dp] the floats of bucket b in rank r's shard */
    MPI_Request *coll;            /* [n_buckets dp + 1]: zero 2's reductions of bucket b's piece owned by
                                     rank r at [b dp + r], then one other collective (dist_other) */
    unsigned char *bucket_posted; /* [n_buckets] this step */
    int next_bucket;              /* zero 2: the next bucket to post, descending */
    size_t final_lo;              /* zero 2: gradients [final_lo, n) are final this step */
    MPI_Request tp_req;           /* the model's tensor-group reduction in flight */
    double tp_comm;               /* seconds in tensor-group reductions this step */

    /* bf16 messages (dist.h): NULL when that traffic is fp32 */
    MPI_Op bf16_sum;              /* dist_bf16_sum; MPI_OP_NULL unless grad_reduce = bf16 at dp > 1 */
    bf16 *reduce_bf;              /* [n]: the gradients rounded for the dp reduction (grad_reduce = bf16, dp > 1) */
    bf16 *shard_bf;               /* [hi - lo]: zero 2's reduce-scatter result before widening into grad_shard */
    bf16 *pipe_bf;                /* [n_slots][3][act_count]: per slot a receive, an activation send and a
                                     gradient send buffer (bf16 stages, pp > 1) */
    size_t act_count;             /* values of one pipeline message (B T C) */

    /* executor state of the current step */
    MPI_Request *recv_req, *send_act, *send_grad; /* [n_slots] */
    int *slot_mb, *slot_fwd;                       /* [n_slots]: live micro-batch (-1 free), forward done */
    int pc, next_recv;
    int last_fwd, last_bwd;       /* pc of this stage's last forward and backward */
    int final_pass;               /* the running pass is the stage's last forward or backward */
    status_t poll_status;         /* an error inside model_pass.poll, returned after the pass */
    int64_t step;
    int validating;               /* inside dist_eval_forward (after step `step`), for the hang report */
    double deadline, busy, pipe_s; /* this step: compute in the pipeline phase, its wall time */
    double sums[3];               /* per micro-batch mean lm, mlm, nsp losses (last stage) */
};

/* The request of the step's collectives other than zero 2's buckets (one at
 * a time). */
static inline MPI_Request *dist_other(dist_engine *e) { return &e->coll[(size_t)e->lay.n_buckets * e->topo.dp]; }

/* Waits for *req, polling MPI_Test against the step's deadline; what names
 * the wait in the watchdog's report. */
status_t dist_wait(dist_engine *e, MPI_Request *req, const char *what);

/* ZeRO 2: gradients [lo, hi) are final for this step; posts the buckets that
 * became complete. */
status_t dist_grads_final(dist_engine *e, size_t lo, size_t hi);

/* The schedule's forwards and backwards of one step on this stage. */
status_t dist_run_pipeline(dist_engine *e, dist_fill_fn fill, void *ctx);

/* Tied-embedding sum and the dp reduction of the gradients (ZeRO 0/1/2);
 * then the update of this rank's part and the parameter all-gather. */
status_t dist_sync_grads(dist_engine *e);
status_t dist_update(dist_engine *e, dist_step_result *r);

#endif

/* dist/dist_internal — not part of the module's API (train/ uses dist.h):
 * pipeline schedules as instruction lists and their verification, the 2d
 * tensor-parallel grid behind model_tp, the bf16 sum of the dp reduction, and
 * the engine's state shared by the executor (exec.c) and the step (engine.c,
 * zero.c). Unit tests and benchmarks include it. */
#ifndef MPILM_DIST_DIST_INTERNAL_H
#define MPILM_DIST_DIST_INTERNAL_H

#include "dist/dist.h"
#include "model/model_tp.h"
#include "tensor/bf16.h"

/* ---- 2d tensor parallelism: the model's grid operations ------------------------
 * model_tp's tensor_gemm and gather for dist.tp_mode = 2d, over dist/pgemm on the
 * tensor-parallel communicator. ctx of both is the dist_tp_grid. */
typedef struct dist_tp_grid dist_tp_grid;
/* The grid of comm (collective over comm) with the layouts of the FFN's
 * matrices for N = B T rows; sets tp->grid_p, grid_q and block (from
 * pgemm_block_choose over N, d_model, d_ff, halved while the weights' blocks
 * do not deal evenly over the grid, so every rank holds 1/t of them). */
status_t dist_tp_grid_create(dist_tp_grid **out, MPI_Comm comm, const model_config *mc, int N, model_tp *tp);
void dist_tp_grid_free(dist_tp_grid *g);
/* The grid for t ranks and the FFN of N tokens, d_model C, d_ff F:
 * pgemm_grid_dims's P x Q, turned to Q x P when the FFN's six GEMMs move fewer
 * bytes so (pgemm_run_bytes). In row-major terms P deals the matrices'
 * columns and Q their rows, so 1 x 2 sends half of a weight per GEMM and
 * 2 x 1 half of an activation; which moves less depends on N against C and
 * F (the bytes and times measured: docs/design.md, "Tensor parallelism 2d").
 * Pure. */
status_t dist_tp_grid_shape(int t, int N, int C, int F, int *P, int *Q);
/* The grid's P x Q and block size. */
void dist_tp_grid_describe(const dist_tp_grid *g, int *P, int *Q, int *block);
status_t dist_tp_grid_gemm(void *grid, int ta, int tb, float alpha, const model_dmat *A, const model_dmat *B,
                           float beta, const model_dmat *C);
status_t dist_tp_grid_gather(void *grid, const model_dmat *A, float *full);

/* ---- schedules ----------------------------------------------------------------- */

typedef enum { DIST_RECV_ACT, DIST_FWD, DIST_SEND_ACT, DIST_RECV_GRAD, DIST_BWD, DIST_SEND_GRAD } dist_op;

typedef struct dist_instr {
    dist_op op;
    int mb;        /* micro-batch of the step, 0..m-1 */
    int slot;      /* activation slot holding mb on this stage */
    int peer;      /* stage sent to / received from; -1 for compute */
    int tag;       /* 2 mb + (0 activation | 1 gradient) */
    size_t count;  /* values moved: floats, or bf16 values (2 bytes) when the stages compute in bf16 */
} dist_instr;

/* Every stage's instruction list for one step of m micro-batches.
 * Invariant (checked by dist_plan_verify): messages pair up, the lists run to
 * completion with sends that do not block and receives that do, a slot holds
 * one micro-batch from its receive/forward to its backward/gradient send, and
 * no stage has more than dist_plan_bound() micro-batches in flight. */
typedef struct dist_plan {
    dist_schedule_kind kind;
    int pp, m;
    int *n_instr;          /* [pp] */
    int *n_slots;          /* [pp] activation slots each stage needs */
    dist_instr **instr;    /* [pp][n_instr[s]] */
} dist_plan;

const char *dist_op_name(dist_op op);
/* The documented in-flight bound: gpipe m; 1f1b min(pp - stage, m). */
int dist_plan_bound(dist_schedule_kind kind, int pp, int m, int stage);
/* count: floats of one activation (B T C). */
status_t dist_plan_build(dist_plan *p, dist_schedule_kind kind, int pp, int m, size_t count);
/* Simulates all stages; on failure names the offending stages and micro-batch. */
status_t dist_plan_verify(const dist_plan *p);
void dist_plan_free(dist_plan *p);

/* ---- bf16 messages (dist.h) ----------------------------------------------------- */

/* The MPI_User_function of that sum, over MPI_UINT16_T values holding bf16:
 * inout[i] = bf16(in[i] + inout[i]), both widened exactly and added in fp32.
 * That is the correctly rounded (nearest even) bf16 sum: two bf16 values'
 * exact sum needs at most 24 bits when their exponents differ by 15 or less,
 * and otherwise the smaller is far below half a bf16 ulp of the larger, so
 * the fp32 rounding never moves the sum across a bf16 rounding boundary.
 * Commutative (as MPI_Op_create is told), not associative. */
void dist_bf16_sum(void *in, void *inout, int *len, MPI_Datatype *type);

/* ---- the engine ------------------------------------------------------------------ */


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
    /* bf16 pairs under ZeRO: the all-gather after the update moves every high
       half (the GEMMs' weights) but only the low halves the stage reads in
       fp32 (model_tensor_read_fp32: norms, biases, position tables, the
       word embedding's lookup), packed: lo_runs [2 n_lo_runs] start, end of
       those ranges; lo_counts, lo_displs [dp] each rank's packed part of
       lo_buf. The other low halves of other ranks' shards are stale until
       dist_params_complete (a checkpoint reads every parameter). */
    size_t *lo_runs, n_lo_runs;
    int *lo_counts, *lo_displs;
    uint16_t *lo_buf;
    int lo_stale;
    optim_state *w;               /* the training state of the running step (dist_train_step's) */
    float *grad_shard;            /* zero 2: [hi - lo] reduced gradients */
    int *bucket_counts;           /* [n_buckets][dp] the floats of bucket b in rank r's shard */
    MPI_Request *coll;            /* [n_buckets dp + 1]: zero 2's reductions of bucket b's piece owned by
                                     rank r at [b dp + r], then one other collective (dist_other) */
    unsigned char *bucket_posted; /* [n_buckets] this step */
    int next_bucket;              /* zero 2: the next bucket to post, descending */
    size_t final_lo;              /* zero 2: gradients [final_lo, n) are final this step */
    size_t *final_pend;           /* zero 2: [2 max_final_pend] ranges lo, hi final this step but not
                                     yet joined to [final_lo, n) */
    int n_final_pend, max_final_pend;
    /* the tied embedding's gradient sum across the pipeline (pp > 1): the last
       stage's part arrives in the first stage's tied_peer [lay.tied_n] during
       the pipeline phase, the sum goes back after it; tied_req: the receive,
       the send */
    float *tied_peer;
    MPI_Request tied_req[2];
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
/* bf16 pairs under ZeRO (dp > 1): which low halves the update's all-gather
 * moves (lo_runs ...), made once the stage exists. */
status_t dist_lo_plan(dist_engine *e);

/* ZeRO 2: gradients [lo, hi) are final for this step; posts the buckets that
 * became complete. */
status_t dist_grads_final(dist_engine *e, size_t lo, size_t hi);

/* The schedule's forwards and backwards of one step on this stage. */
status_t dist_run_pipeline(dist_engine *e, dist_fill_fn fill, void *ctx);

/* Tied-embedding sum and the dp reduction of the gradients (ZeRO 0/1/2);
 * then the update of this rank's part and the parameter all-gather. */
status_t dist_sync_grads(dist_engine *e);
/* The tied sum's first half: on the first stage, the receive of the last
 * stage's part (posted when the pipeline phase starts); on the last, its send
 * (once that part is complete). No-ops elsewhere and at pp = 1. */
status_t dist_tied_recv(dist_engine *e);
status_t dist_tied_send(dist_engine *e);
status_t dist_update(dist_engine *e, dist_step_result *r);

/* The engine's verified plan (tests). */
const dist_plan *dist_engine_plan(const dist_engine *e);

#endif

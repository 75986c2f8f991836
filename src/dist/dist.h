/* dist — pipeline, data and tensor parallelism over MPI.
 *
 * Owns: the process topology (world = pp x dp x tp; rank = (replica * pp +
 * stage) * tp + tp_rank; pipeline, data-parallel, tied-embedding and
 * tensor-parallel communicators), the MPI reductions behind a stage's
 * model_tp, the partition of
 * layers over stages, pipeline schedules as per-stage instruction lists and
 * their verification by simulation, the executor that runs one step's
 * micro-batches with MPI_Isend/MPI_Irecv, the watchdog, the tied word
 * embedding's gradient sum, ZeRO 0/1/2 over the dp communicator, global
 * grad-norm clipping and the AdamW update of a rank's shard (in the training
 * state it is given: optim_state, sized here, owned by train/), and which of
 * those messages travel in bf16 (pipeline messages of bf16 stages,
 * dist.grad_reduce = bf16).
 * Must not touch: files, data sources (micro-batches come from a callback),
 * the model's internals (only model.h), printing (only base/log on a hang).
 */
#ifndef MPILM_DIST_DIST_H
#define MPILM_DIST_DIST_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "layout/layout.h"
#include "model/model.h"
#include "optim/optim.h"

enum { DIST_MAX_STAGES = LAYOUT_MAX_STAGES };

typedef enum { DIST_GPIPE = 0, DIST_1F1B = 1 } dist_schedule_kind;
typedef enum { DIST_TP_1D = 0, DIST_TP_2D = 1 } dist_tp_mode;
typedef enum { DIST_REDUCE_FP32 = 0, DIST_REDUCE_BF16 = 1 } dist_grad_reduce;

/* ---- topology ---------------------------------------------------------------- */

typedef struct dist_config {
    int pp;                       /* dist.pp: pipeline stages */
    int dp;                       /* dist.dp: replicas; <= 0 derives world / (pp tp) */
    int tp;                       /* dist.tp: tensor-parallel ranks per stage (0 = 1) */
    dist_tp_mode tp_mode;         /* dist.tp_mode: 1d (Megatron) or 2d (the FFN over a ScaLAPACK grid) */
    dist_schedule_kind schedule;  /* dist.schedule */
    int zero;                     /* dist.zero: 0, 1 or 2 */
    int n_stages;                 /* dist.stages: explicit layer counts (0 = by cost) */
    int stages[DIST_MAX_STAGES];
    double hang_timeout;          /* dist.hang_timeout: seconds per step; <= 0 = none */
    size_t bucket_bytes;          /* ZeRO-2 reduce-scatter bucket (0 = 4 MiB) */
    double mask_prob;             /* data.mask_prob: BERT's MLM head in the partition's cost (0 = 0.15) */
    dist_grad_reduce grad_reduce; /* dist.grad_reduce: what the dp gradient reduction moves and sums in */
} dist_config;

/* Parses dist.stages ("5,7": layer counts per stage) into c->stages. */
status_t dist_parse_stages(dist_config *c, const char *text);

/* Layer boundaries (layout_partition of dc->pp, dc->stages and dc->mask_prob). */
status_t dist_partition(const dist_config *dc, const model_config *mc, int *bounds);

typedef struct dist_topology {
    int world, rank;              /* in the communicator given */
    int pp, dp, tp;               /* rank = (replica * pp + stage) * tp + tp_rank */
    int stage, replica, tp_rank;
    int bounds[DIST_MAX_STAGES + 1];
    int layer_begin, layer_end;   /* this rank's stage */
    MPI_Comm comm;                /* duplicate of the world given */
    MPI_Comm pipe;                /* the pp ranks of this replica and tp_rank; rank = stage */
    MPI_Comm dp_comm;             /* the dp ranks of this stage and tp_rank; rank = replica */
    MPI_Comm tied;                /* first + last stage of this replica and tp_rank (pp > 1), else MPI_COMM_NULL */
    MPI_Comm tp_comm;             /* the tp consecutive ranks of this stage and replica; rank = tp_rank */
} dist_topology;

/* The replicas (dist.dp, auto resolved) a job of world ranks has, after the
 * same checks as dist_topology_create; not collective. */
status_t dist_layout_dp(const dist_config *dc, int world, int *dp);

/* Checks the layout against the world (before any work) and builds the
 * communicators. Collective over world. */
status_t dist_topology_create(dist_topology *t, const dist_config *dc, const model_config *mc, MPI_Comm world);
void dist_topology_free(dist_topology *t);
/* The placement, one line per rank: "rank R: replica D stage S layers [a, b)",
 * with " tp r/t" after the stage when tp > 1. */
void dist_topology_describe(const dist_topology *t, char *buf, size_t n);

/* ---- bf16 messages --------------------------------------------------------------
 * With model_config.bf16 the activations and their gradients between pipeline
 * stages travel as bf16: the sender rounds the fp32 array to nearest even into
 * a bf16 buffer of the slot, the receiver widens its slot's bf16 buffer
 * (exactly) into the fp32 array when the receive completes; count values of 2
 * bytes, half the bytes of fp32. With dist.grad_reduce = bf16 the dp gradient
 * reduction (ZeRO 0/1 allreduce, ZeRO 2 reduce-scatter buckets) rounds the
 * gradients to bf16 and sums them with dist_bf16_sum; the result is widened
 * back into the fp32 gradients (or ZeRO 2's shard). The tied-embedding sum
 * and the tensor-parallel reductions stay fp32. */

/* ---- the step ------------------------------------------------------------------ */

/* The global index g of micro-batch mb (of m per replica and step) of
 * data-parallel replica `replica` (of dp) at step: (step dp + replica) m + mb.
 * A step's micro-batches are numbered replica by replica, so a replica's part
 * of a step is contiguous; the samples of g are g B .. g B + B - 1. */
uint64_t dist_microbatch_index(int64_t step, int dp, int replica, int m, int mb);

/* Fills b with global micro-batch g (dist_microbatch_index). Every stage calls it for every micro-batch it runs:
 * the first stage reads ids and types, every stage attention_mask, the last
 * the labels. Returns a status (a data error ends the step). */
typedef status_t (*dist_fill_fn)(void *ctx, uint64_t g, batch *b);

typedef struct dist_engine dist_engine;

/* Per-rank bytes of persistent training state. */
typedef struct dist_memory {
    size_t params;       /* the stage's parameters: 4 n */
    size_t params_mirror; /* train.precision = bf16: the parameters are bf16 pairs (4 n above, the
                             GEMMs read their high halves: no second copy); this is the fp32 copy of
                             the tensors read outside GEMMs (norms, biases, position tables); else 0 */
    size_t grads;        /* zero 2's reduced gradient shard: 4 shard (zero 0/1 reduce in place in
                            the accumulation buffer: 0) */
    size_t grad_accum;   /* the model's accumulation buffer over micro-batches: 4 n */
    size_t optimizer;    /* AdamW moments: 8 n (zero 0), 8 shard (zero 1/2) */
    size_t shard;        /* floats this rank updates: ceil(n / dp), the last shards shorter */
    size_t messages_bf16; /* bf16 message buffers: the dp reduction's 2 n (+ 2 shard at zero 2) with
                             dist.grad_reduce = bf16 at dp > 1; the pipeline's 3 x slots x 2 B T C
                             (a receive and two sends per slot) with bf16 stages at pp > 1 */
    size_t tied_recv;    /* the first stage at pp > 1 with a tied word embedding: the last stage's part of
                            its gradient, received during the pipeline phase (4 x its V x C slice) */
    size_t activations;  /* the stage's arena (activations of its slots and scratch) and the
                            slots' micro-batches */
    size_t ckpt_part;    /* tp > 1: a checkpoint save's part of the unsplit stage, parameters, m
                            and v: 12 x full_n / (dp tp) (at tp = 1 saves write from the buffers) */
} dist_memory;

typedef struct dist_step_result {
    double loss, lm, mlm, nsp;   /* means over the global batch's micro-batches */
    double grad_norm, lr;
    /* this rank's times, seconds */
    double step_s;               /* the whole step */
    double pipe_s;               /* the pipeline phase: forwards, backwards, waits on p2p */
    double busy_s;               /* compute inside the pipeline phase */
    double comm_s;               /* after it: waits in the tied sum, dp reduction, norm, all-gather */
    double update_s;             /* AdamW on this rank's part */
    /* the job's, the same on every rank: the idle share of the pipeline
     * phase on the busiest stage (the pipeline bubble, comparable with
     * (pp-1)/(m+pp-1)) and the mean over ranks (adds the stages' imbalance) */
    double bubble, bubble_mean;
    int early_buckets;           /* zero 2: buckets reduced while backward still ran */
    double tp_comm_s;            /* of busy_s, this rank's time in tensor-group reductions (waits included) */
} dist_step_result;

/* Topology, plan (verified), layout, and the training state *w (the
 * caller's: optim_state_free after dist_engine_free): sized by the rank's
 * layout (its stage's floats, the floats it updates), the stage's views bound
 * to its buffers, its parameters from seed, its moments zero. B: sequences
 * per micro-batch; m: micro-batches per step and replica. On failure *w is
 * left empty. Collective over world. */
status_t dist_engine_create(dist_engine **out, const dist_config *dc, const model_config *mc,
                            const optim_config *oc, int B, int m, uint64_t seed, MPI_Comm world, optim_state *w);
void dist_engine_free(dist_engine *e);

model_stage *dist_engine_stage(dist_engine *e);
const dist_topology *dist_engine_topology(const dist_engine *e);
dist_memory dist_engine_memory(const dist_engine *e);
/* dist_engine_memory of the engine dist_engine_create would make with these
 * arguments, computed without allocating it (collective over world: builds
 * the topology and frees it). */
status_t dist_memory_estimate(const dist_config *dc, const model_config *mc, int B, int m, MPI_Comm world,
                              dist_memory *out);
/* The same for rank `rank` of a job of dc->pp x dp x dc->tp ranks, without
 * MPI (the layout is not checked against a world: mpilm plan). */
status_t dist_memory_of_rank(const dist_config *dc, const model_config *mc, int B, int m, int dp, int rank,
                             dist_memory *out);
/* dist.tp_mode = 2d at tp > 1: 1 and the grid's P x Q and block; else 0. */
int dist_engine_tp_grid(const dist_engine *e, int *P, int *Q, int *block);

/* Which floats of the stage this rank holds, updates and saves. */
const layout_rank *dist_engine_layout(const dist_engine *e);

/* One training step (step = 0, 1, ...) on the state w the engine was
 * created over (else ST_ERROR): the schedule's forwards and backwards (loss
 * scale 1/(m dp)) into w's gradients, the tied-embedding gradient sum, the
 * ZeRO reduction, global clipping, AdamW on the floats this rank updates (w's
 * moments), the parameter all-gather. w's parameters may be written between
 * steps (a resume): the step starts from what they hold. The result is identical on every rank. On a hang longer than
 * dist.hang_timeout, every rank logs the instruction it waits in and its
 * pending requests and returns ST_MPI with that report (the caller ends the
 * job with st_die, which calls MPI_Abort). */
status_t dist_train_step(dist_engine *e, optim_state *w, int64_t step, dist_fill_fn fill, void *ctx,
                         dist_step_result *r);

/* Validation between steps: the forward of batch b (B sequences, the same
 * on every stage and tp rank of the replica) through this replica's
 * pipeline, without dropout or gradients, in slot 0. A non-first stage
 * receives its input from the previous stage, a non-last one sends its
 * output to the next, in fp32 whatever the precision (so the stages' sums are
 * those of one whole model); the last stage adds the batch's loss sums to
 * *losses (the others leave it alone). Each wait and tensor-group reduction
 * runs against dist.hang_timeout from the call, with the watchdog's report.
 * The parameters, moments, gradients and everything the next step reads are
 * untouched. Collective over the replica's pipeline and tensor group. */
status_t dist_eval_forward(dist_engine *e, const batch *b, model_losses *losses);
/* Collective over the dp group: makes every parameter of the stage whole on
 * this rank. Under ZeRO a bf16 state's update all-gathers the high halves
 * but only the low halves read in fp32 (docs/design.md); a checkpoint, which
 * reads every parameter, calls this first (nothing to do otherwise). */
status_t dist_params_complete(dist_engine *e);

#endif

/* train/plan — before a job: every layout of N ranks for a configuration,
 * with its per-rank memory (the engine's own allocation plan, as the memory
 * check before training uses it), its predicted step time and tokens/s, the
 * pipeline bubble and the bytes each rank sends per step; ranked, each
 * refused layout with its reason (mpilm plan, docs/usage.md).
 *
 * Time model (docs/scaling.md): the forward + backward of one block, of the
 * embeddings and of the heads, measured on this machine at the run's shapes,
 * precision and threads for each tensor-parallel width (cached per machine);
 * the pipeline (m + pp - 1) t_max + 2 (pp - 1) p2p; tensor parallelism's
 * 4 group sums of B T C per block and micro-batch; the dp reduction and ZeRO's
 * all-gather as rings; the tied embedding's sum; AdamW per float. Network:
 * latency and bandwidth given (--net) for the target cluster. */
#ifndef MPILM_TRAIN_PLAN_H
#define MPILM_TRAIN_PLAN_H

#include "train/train.h"

typedef struct plan_net {
    double latency_s, bytes_per_s;
} plan_net;

/* Seconds per micro-batch of B sequences (forward + backward) of a block,
 * of what the embeddings and the heads add, on one rank of a tp-wide group,
 * and AdamW's seconds per float: medians of 5 after a warm-up, at this
 * process's threads. cache: read from and kept in the per-machine cache
 * (keyed by the shapes, precision, tp and threads); *measured says whether
 * they were measured now. */
typedef struct plan_costs {
    double block, embed, head, adam;
} plan_costs;
status_t plan_measure_costs(const model_config *mc, int B, int tp, int threads, int cache, plan_costs *c,
                            int *measured);

typedef struct plan_options {
    int np;             /* ranks */
    plan_net net;
    double rank_mib;    /* memory a rank may use (0: this node's, shared by min(np, cores) ranks) */
    int threads;        /* per rank (the run's run.threads resolution) */
} plan_options;

typedef struct plan_layout {
    int pp, dp, tp, zero, m, configured;
    dist_schedule_kind schedule;
    int ok;                 /* divides and fits */
    char why[256];          /* when not ok */
    double step_s, tokens_per_s, bubble;
    double peak_mib;        /* the largest rank's predicted peak RSS */
    double *rank_mib;       /* [np] each rank's */
    double sent_mib;        /* the most any rank sends per step */
} plan_layout;

typedef struct plan_result {
    plan_layout *layouts;   /* ok ones first, fastest first; then the refused */
    int n;
    double rank_budget_mib; /* what a rank may use */
    char budget_source[128];
    double block_s, embed_s, head_s; /* measured at tp 1, seconds per micro-batch */
    int measured;           /* 1: measured now, 0: from the cache */
    int global_batch;       /* sequences per step */
} plan_result;

/* Every (pp, dp, tp, zero, schedule) of o->np ranks for tc's model, batch and
 * precision; tc's own layout marked configured. */
status_t plan_layouts(const train_config *tc, const plan_options *o, plan_result *out);
void plan_result_free(plan_result *r);

#endif

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
 * all-gather as rings (a sum: a reduce-scatter then an all-gather); the tied
 * embedding's sum; AdamW per float. Network: latency and bandwidth given
 * (--net) for the target cluster, or measured among the job's ranks
 * (--net measure under mpirun). */
#ifndef MPILM_TRAIN_PLAN_H
#define MPILM_TRAIN_PLAN_H

#include <mpi.h>

#include "train/train.h"

/* The network: point-to-point latency and bandwidth, and the rates at which
 * a rank moves its part of a reduce-scatter (sends, receives and sums) and
 * of an all-gather, in bytes per second of the (p - 1) / p share it moves.
 * Given (--net GBIT_S,LATENCY_US: the three rates equal), or measured among
 * the ranks of a job placed like the one planned (plan_net_measure). */
typedef struct plan_net {
    double latency_s, bytes_per_s;
    double reduce_bytes_per_s, gather_bytes_per_s;
    int measured;
} plan_net;

/* A given network of gbit_s Gbit/s and latency_us: the three rates equal. */
plan_net plan_net_given(double gbit_s, double latency_us);



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
    double baseline;    /* what a rank holds before training, bytes (0: this process's resident bytes now) */
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

/* o->net measured among the ranks of comm (at least 2): latency and
 * bandwidth by ping-pong between ranks 0 and 1 (medians of 200 round trips
 * of 4 bytes, of 8 of 16 MiB), a reduce-scatter and an all-gather of 64 MiB
 * per rank over all of comm (medians of 3 after a warm-up); every rank gets
 * rank 0's figures. o->baseline is taken first (the process keeps the
 * measurement's buffers: bigmem_keep_freed_memory). Collective over comm. */
status_t plan_measure_network(MPI_Comm comm, plan_options *o);

/* Every (pp, dp, tp, zero, schedule) of o->np ranks for tc's model, batch and
 * precision; tc's own layout marked configured. */
status_t plan_layouts(const train_config *tc, const plan_options *o, plan_result *out);
void plan_result_free(plan_result *r);

#endif

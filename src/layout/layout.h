/* layout — which float lives on which rank. From the model's tensor table
 * (model/model_tensors.h) and the job's shape (pp x dp x tp, ZeRO stage):
 * the pipeline's layer partition, each rank's coordinates, the floats of its
 * stage, its ZeRO shard and the floats its optimizer updates, the tied word
 * embedding's copies, the gradient buckets, and the runs of the global
 * (checkpoint) order it writes; and the cost model (FLOPs per token) that the
 * partition, the MFU figure and the benchmarks share.
 *
 * Pure arithmetic: no MPI, no model buffers, so any layout can be computed
 * (and tested) on one process. dist/ builds its communicators and buffers
 * from it, train/ saves and restores checkpoints by it. */
#ifndef MPILM_LAYOUT_LAYOUT_H
#define MPILM_LAYOUT_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "model/model.h"

enum { LAYOUT_MAX_STAGES = 64 };

/* ---- cost model ------------------------------------------------------------ */

/* FLOPs per token of one block's forward and backward: the GEMMs (8 C^2 +
 * 4 C F forward, twice that backward) and attention's QK^T and AV (4 T C
 * forward, half of it under a causal mask, whose invisible key blocks are
 * skipped). */
double layout_block_flops(const model_config *mc);
/* The partition's cost of the embeddings and of the heads, in blocks: the
 * lookup and its scatter-add backward move a few C-vectors per token (~8 C);
 * GPT's tied projection is three GEMMs (6 C V per row); BERT's MLM head runs
 * on the masked rows only (mask_prob of them) and adds its C x C transform;
 * pooler and NSP are per sequence and negligible. Checked against measured
 * stage times in docs/scaling.md. */
double layout_embed_cost(const model_config *mc);
double layout_head_cost(const model_config *mc, double mask_prob);
/* Model FLOPs per token of a training step, the MFU numerator (PaLM's
 * definition): 6 x parameters (forward and backward of every weight) plus
 * attention's 12 L C T, whatever recompute or masking really executes. An
 * untied input embedding (Llama's) is a lookup, not a matmul: its V C
 * parameters are not counted (a tied one is the output head's GEMM). */
double layout_model_flops_per_token(const model_config *mc);

/* ---- the pipeline's layers --------------------------------------------------- */

/* Layer boundaries: stage s holds [bounds[s], bounds[s+1]), bounds[pp] =
 * n_layer. From stages[0..n_stages) (layer counts) when n_stages > 0, else
 * the contiguous split that minimises the most expensive stage under the
 * cost model (BERT's head at mask_prob). Refuses pp > n_layer and lists that
 * do not sum to n_layer, naming dist.pp / dist.stages. */
status_t layout_partition(const model_config *mc, int pp, const int *stages, int n_stages, double mask_prob,
                          int *bounds);

/* ---- a rank's part ------------------------------------------------------------- */

/* Shard r of n floats over parts ranks (ZeRO's split): [r s, (r + 1) s)
 * clipped to n, s = ceil(n / parts). */
void layout_shard(size_t n, int parts, int r, size_t *lo, size_t *hi);

/* The job's shape. rank = (replica * pp + stage) * tp + tp_rank. */
typedef struct layout_spec {
    model_config model;
    int pp, dp, tp, zero;
    int grid_p, grid_q, block;  /* tp 2d: the FFN's P x Q grid and block (0 = 1d) */
    int bounds[LAYOUT_MAX_STAGES + 1]; /* layout_partition's */
    size_t bucket_floats;       /* ZeRO 2's gradient bucket (floats, > 0) */
} layout_spec;

enum { LAYOUT_MAX_PIECES = 2 };

/* A run of the global (checkpoint) order, floats [begin, end), that a rank
 * writes from float `local` of its stage's buffer (tp = 1) or of its stage's
 * unsplit buffer (tp > 1). */
typedef struct layout_piece {
    uint64_t begin, end;
    size_t local;
} layout_piece;

typedef struct layout_rank {
    int stage, replica, tp_rank;
    int layer_begin, layer_end, first, last;
    size_t n;                 /* floats of the stage's buffer on this rank */
    size_t full_n;            /* floats of the stage unsplit (= n at tp = 1) */
    size_t lo, hi;            /* its dp shard of [0, n): ZeRO 2 keeps these gradients */
    size_t ulo, uhi;          /* what its optimizer updates: the shard at zero >= 1 and
                                 dp > 1, else [0, n) */
    size_t tied_off, tied_n;  /* the tied word embedding in the buffer, summed over the
                                 pipeline's ends (0, 0: pp = 1 or a middle stage) */
    int n_buckets;            /* gradient buckets: ZeRO 2 at dp > 1 cuts [0, n) before and
                                 after the tied embedding (whose buckets wait for its sum
                                 over the pipeline) and each piece into equal buckets of
                                 about bucket_floats; otherwise one bucket */
    size_t *bucket_lo;        /* [n_buckets + 1] */
    size_t part_lo, part_hi;  /* tp > 1: the floats of the unsplit stage [0, full_n) it saves,
                                 its (replica tp + tp_rank)-th of dp tp parts (the stage's
                                 ranks gather each part from the slices that hold it) */
    int n_pieces;             /* what it saves, minus the last stage's copy of the tied
                                 embedding (stage 0 saves it): at tp = 1 its dp shard of
                                 the stage's buffer, at tp > 1 its part of the unsplit
                                 stage. Each piece is contiguous in the global order. */
    layout_piece pieces[LAYOUT_MAX_PIECES];
} layout_rank;

/* Rank `rank`'s part of the job s. Free with layout_rank_free. */
status_t layout_rank_build(const layout_spec *s, int rank, layout_rank *out);
void layout_rank_free(layout_rank *r);

#endif

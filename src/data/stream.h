/* data/stream — the training sample stream of a dataset: streaming reader,
 * epoch shuffle, the sampler that gives each data-parallel rank its samples,
 * and the sample builders of the objectives (causal LM, MLM with optional NSP).
 * Owns: which sample comes next for a rank, and what it holds.
 * Must not touch: models, MPI (the rank's place arrives as integers).
 *
 * The global sample rule (layout independence). Each epoch defines one global
 * sequence of samples g = 0, 1, 2, ...; epochs follow one another without a
 * gap. With dp ranks and chunk c samples per rank per step, step s gives rank
 * r the samples s*c*dp + r*c ... s*c*dp + r*c + c-1 of that sequence, in order;
 * the union of a step over the ranks, in rank order, is the dp = 1 stream.
 *
 * Reading. The unit of shuffling is a block = one data frame of one shard.
 * Each epoch permutes the blocks (seeded); consecutive blocks of that order
 * form groups (STREAM_GROUP_FRAMES frames; for NSP a group grows until it
 * holds two documents). A group's samples are packed from its documents and
 * permuted within the group (the bounded shuffle buffer). Memory is a group's
 * frames plus one frame per open shard, whatever the corpus size.
 *
 * Randomness (base/rng): block order and group shuffle use RNG_SHUFFLE keyed
 * by (epoch, position); NSP packing uses RNG_NSP keyed by (epoch, group,
 * draw); masks use RNG_MASK keyed by (epoch, sample index g, position). None
 * depends on dp or on a resume.
 */
#ifndef MPILM_DATA_STREAM_H
#define MPILM_DATA_STREAM_H

#include <stdint.h>

#include "base/status.h"
#include "data/batch.h"
#include "data/dataset.h"

#define STREAM_GROUP_FRAMES 4     /* frames per shuffle group */
#define STREAM_GROUP_FRAMES_MAX 8 /* NSP: a group may grow to this to hold two documents */
#define STREAM_SHORT_SEQ_PROB 0.1 /* NSP: BERT's short_seq_prob */

typedef enum stream_objective { STREAM_CAUSAL, STREAM_MLM } stream_objective; /* MLM: + NSP if spec.nsp */

#define STREAM_BLEND_MAX 16 /* datasets in a blend */

typedef struct stream_spec {
    const char *path;           /* dataset directory (with blend: data.path, maybe weighted pairs) */
    dataset_split split; /* which shards: DATASET_SPLIT_TRAIN (0, the default) or DATASET_SPLIT_VALID */
    stream_objective objective;
    int seq_len;                /* T */
    double mask_prob;           /* MLM: 0.15 */
    int nsp;                    /* MLM: 1 = sentence pairs with NSP labels */
    uint64_t seed;
    int dp_rank, dp_size;       /* this rank's place in the data-parallel group */
    int chunk;                  /* samples per rank per step (micro_batch * micro_batches) */
    int vocab_size;             /* the model's; the dataset's vocabulary must fit (else ST_CONFIG) */
    int blend;                  /* 1: path may be a blend "W1 PATH1 W2 PATH2 ..." (stream_blend_parse) */
} stream_spec;

/* data.path: one dataset directory, or a blend of weighted datasets
 * "0.7 datasets/a 0.3 datasets/b" (Megatron's weight-path pairs; the text is
 * a blend when its first word is a number; blend paths hold no spaces).
 * Weights are normalised to sum 1.
 *
 * Blending rule. Sample g of the blend comes from the dataset whose lag
 * w_d (g + 1) - c_d(g) is largest (c_d(g) = samples of d among 0 .. g-1;
 * ties to the first), Megatron's greedy blending index, computed in integers
 * (weights in units of 2^-32). Hence at every g, for D datasets:
 *     -(D-1)^2/D <= c_d(g) - w_d g <= (D-1)/D.
 * Each dataset is its own stream (its epochs, shuffle and masks, keyed by
 * the seed for the first dataset and a seed derived from it and d for the
 * others); the k-th sample drawn from d is sample k of d's stream. */
typedef struct stream_blend {
    int n;                                   /* 1 = a single dataset */
    double weight[STREAM_BLEND_MAX];         /* normalised */
    char path[STREAM_BLEND_MAX][1024];
} stream_blend;

/* Parses data.path (ST_CONFIG naming data.path and what was expected). */
status_t stream_blend_parse(const char *text, stream_blend *out);

/* Where one dataset of a blend is at a step boundary: its next sample
 * (epoch, sample) and the samples drawn from it so far (over epochs). */
typedef struct stream_source_pos {
    uint64_t epoch, sample, drawn;
} stream_source_pos;

/* Where the stream is: the first sample of the current step in the global
 * stream (epoch, sample) and extra[0] = samples this rank has already taken
 * of the step. The same for every rank at a step boundary, so a checkpoint may
 * keep rank 0's and resume on any layout. extra[1..5] are reserved (0).
 * A blend: epoch 0, sample = the blend's sample index, and n_sources > 0
 * datasets' positions (0 for one dataset). */
typedef struct stream_cursor {
    uint64_t epoch, sample;
    uint64_t extra[6];
    int n_sources;
    stream_source_pos source[STREAM_BLEND_MAX];
} stream_cursor;

typedef struct stream stream;

status_t stream_open(stream **out, const stream_spec *spec);
/* Fills the b->B rows of b (b->T must be spec.seq_len) with this rank's next samples. */
status_t stream_next(stream *s, batch *b);
void stream_cursor_get(const stream *s, stream_cursor *c);
/* Datasets read: 1, or a blend's count. */
int stream_n_sources(const stream *s);
/* At a step boundary: each dataset's epoch of its next sample (0 = the
 * first; stream_n_sources entries), carrying over an epoch's end. Reads that
 * sample's group boundaries, which the stream passes next anyway. */
status_t stream_epochs(stream *s, uint64_t *epochs);
/* At a step boundary: the samples drawn from each dataset of a blend so far
 * (stream_n_sources entries, over every epoch). One dataset: drawn[0] = 0
 * (its stream counts within an epoch only; the trainer knows the total). */
void stream_drawn(const stream *s, uint64_t *drawn);
/* Continues exactly where the cursor was taken (also in a new process). */
status_t stream_cursor_set(stream *s, const stream_cursor *c);
void stream_close(stream *s);

const dataset_info *stream_info(const stream *s);

/* Where row `row` of the last stream_next batch came from (tests, eval). */
typedef struct stream_origin {
    uint64_t epoch, sample;     /* its place in the global stream */
    uint64_t doc_a, doc_b;      /* documents of segment A and B (B = A without NSP) */
    int source;                 /* the dataset of a blend (0 for one dataset); epoch, sample are its */
} stream_origin;
void stream_last_origin(const stream *s, int row, stream_origin *o);

#endif

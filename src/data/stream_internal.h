/* data/stream internals shared by the reader (stream.c) and the objectives
 * (objective.c). Not part of the API. */
#ifndef MPILM_DATA_STREAM_INTERNAL_H
#define MPILM_DATA_STREAM_INTERNAL_H

#include "base/rng.h"
#include "data/shard.h"
#include "data/stream.h"

#define STREAM_OPEN_SHARDS 4   /* shard files kept open at once */
#define STREAM_EPOCH_RING 64   /* epoch sample totals remembered */

/* One data frame of one shard, in dataset order. */
typedef struct stream_block {
    uint32_t shard, frame;
    uint32_t n_records;
    uint64_t first_doc;   /* global document id of the frame's first record */
} stream_block;

/* A sentence (or a piece of one) of the loaded group. Its tokens are
 * tokens[start, start+len). */
typedef struct group_sentence {
    uint32_t start, len;
    uint64_t doc;
} group_sentence;

/* A run of consecutive sentences of one document in the group. */
typedef struct group_doc {
    uint32_t first, n;    /* sentences [first, first+n) */
    uint64_t doc;
} group_doc;

/* A sample as packing decides it: token ranges of the group. Causal: a = the
 * window of T+1 tokens; MLM: a (and b with NSP). label: NSP label or -100. */
typedef struct sample_desc {
    uint32_t a_start, a_len, b_start, b_len;
    uint64_t a_doc, b_doc;
    int32_t label;
} sample_desc;

/* Draws of one group's packing: RNG_NSP at (epoch, group, counter). */
typedef struct pack_rng {
    rng_key key;
    uint64_t epoch;
    uint32_t group, counter, have;
    uint32_t bits[4];
} pack_rng;

typedef struct stream_group {
    int valid, tokens_loaded;
    uint64_t epoch;
    uint32_t index;             /* group number within the epoch */
    uint32_t first, n_blocks;   /* positions in the epoch's block order */
    uint64_t base, count;       /* its samples are base .. base+count-1 of the epoch */
    group_sentence *sents;
    uint32_t n_sents, sents_cap;
    group_doc *docs;
    uint32_t n_docs, docs_cap;
    uint32_t *tokens;           /* causal: documents joined by end-of-text tokens */
    uint32_t n_tokens, tokens_cap;
    sample_desc *descs;
    uint32_t n_descs, descs_cap;
    uint32_t *order;            /* sample i of the group is descs[order[i]] */
    uint32_t order_cap;
} stream_group;

/* Sample i of a blend's step: its dataset and how many of that dataset's
 * samples come before it in the step. */
typedef struct blend_slot {
    uint32_t source;
    uint32_t k;
} blend_slot;

struct stream {
    stream_spec spec;
    dataset ds;
    char path[4096];
    stream_block *blocks;
    uint32_t n_blocks;
    uint32_t *perm;             /* block order of perm_epoch */
    uint64_t perm_epoch;
    int perm_valid;
    shard_reader *open[STREAM_OPEN_SHARDS];
    uint32_t open_shard[STREAM_OPEN_SHARDS], open_used[STREAM_OPEN_SHARDS], open_clock;
    uint32_t *records, *frame_tokens;  /* one frame's boundary records and tokens */
    stream_group g;
    uint64_t epoch, step;       /* first sample of the current step */
    uint64_t taken;             /* samples of this step taken by this rank */
    uint64_t totals[STREAM_EPOCH_RING], totals_epoch[STREAM_EPOCH_RING];
    int32_t special_ids[6];
    int32_t *special_sorted;    /* the special ids in increasing order (n_special) */
    int n_special;
    int32_t eot;                /* the causal document separator */
    rng_key key_mask, key_shuffle, key_nsp;
    stream_origin *origins;
    int origins_cap;
    /* A blend reads its datasets through one stream each (these fields
     * only; the ones above stay unused but origins). */
    int n_sources;              /* 0: this stream reads its own dataset */
    stream *sources[STREAM_BLEND_MAX];
    uint64_t quota[STREAM_BLEND_MAX];        /* weights in units of 2^-32, summing to 2^32 */
    stream_source_pos pos[STREAM_BLEND_MAX]; /* at the current step's start */
    blend_slot *plan;           /* the current step's samples (chunk x dp_size) */
    int plan_valid;
    uint64_t plan_n[STREAM_BLEND_MAX];       /* samples of each dataset in the step */
};

/* objective.c */
status_t objective_pack(stream *s);  /* fills g.descs from g.sents/g.docs */
void stream_objective_build(stream *s, const sample_desc *d, uint64_t epoch, uint64_t sample, batch *b, int row);
status_t stream_grow_array(void **p, uint32_t *cap, uint32_t need, size_t elem);

#endif

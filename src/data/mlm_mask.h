/* data/mlm_mask — BERT's masking of one token, for the dataset objective
 * (objective.c) and random data (random_source.c): chosen with probability
 * mask_prob; a chosen token's label is its id, and it becomes [MASK] (80%),
 * a random token (10%) or stays (10%).
 *
 * The two sources read their four Philox words in two ways (mlm_draws), kept
 * as they were so that every sample, and so every loss, stays bit for bit
 * what it was: the thresholds differ in the last bits (a 24-bit uniform
 * against a 32-bit integer), so neither can take the other's.
 * Must not touch: the draws themselves (the callers key and count them).
 */
#ifndef MPILM_DATA_MLM_MASK_H
#define MPILM_DATA_MLM_MASK_H

#include <stdint.h>

typedef enum mlm_draws {
    /* datasets: bits[0] chooses (rng_uniform < mask_prob as a float); bits[1]
     * acts (rng_uniform: [MASK] below 0.8, random below 0.9); bits[2] is the
     * random token's */
    MLM_DRAWS_UNIFORM,
    /* random data (bits[0] drew the token): bits[1] chooses (below
     * mask_prob * 2^32); bits[2] acts (rng_below 10: [MASK] under 8, random at
     * 8); bits[3] is the random token's */
    MLM_DRAWS_INTEGER,
} mlm_draws;

typedef struct mlm_masking {
    mlm_draws draws;
    float p;            /* MLM_DRAWS_UNIFORM: mask_prob */
    uint32_t choose;    /* MLM_DRAWS_INTEGER: mask_prob * 2^32, at most 2^32 - 1 */
    int32_t mask_id;
    int32_t (*random_token)(const void *ctx, uint32_t bits); /* a uniform non-special id from bits */
    const void *ctx;
} mlm_masking;

mlm_masking mlm_masking_make(double mask_prob, mlm_draws draws, int32_t mask_id,
                             int32_t (*random_token)(const void *ctx, uint32_t bits), const void *ctx);

/* Masks the token *id of a text position with its draws bits[0..4): when it
 * is chosen, *label = the original *id and *id its replacement; else neither
 * changes. */
void mlm_mask_token(const mlm_masking *m, const uint32_t bits[4], int32_t *id, int32_t *label);

#endif

/* base/rng — counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
 *
 * Owns: every random decision of mpilm. There is no generator state: a draw is
 * a pure function of (key, counter), so masks, NSP choices, dropout and
 * initialisation are the same whatever the number of ranks or a resume.
 * Callers build the counter from what identifies the decision, by convention
 *     key     = rng_key(seed, purpose)
 *     counter = { index lo, index hi, position, sub-stream (epoch, layer, ...) }
 * Must not touch: anything but libc.
 */
#ifndef MPILM_BASE_RNG_H
#define MPILM_BASE_RNG_H

#include <stdint.h>

typedef struct rng_key { uint32_t k[2]; } rng_key;
typedef struct rng_ctr { uint32_t c[4]; } rng_ctr;

/* The purposes that select independent streams from one seed. */
enum rng_purpose {
    RNG_INIT = 1,        /* parameter initialisation */
    RNG_DROPOUT = 2,
    RNG_MASK = 3,        /* MLM: which positions, and what they become */
    RNG_NSP = 4,         /* NSP: true next or random segment */
    RNG_SHUFFLE = 5,     /* epoch permutation of blocks and the shuffle buffer */
    RNG_RANDOM_DATA = 6, /* data.source = random */
    RNG_SAMPLE = 7,      /* generation: sampling the next token */
    RNG_SPLIT = 8,       /* prep: which documents are held out (valid split) */
    RNG_TEST = 99,
};

/* The raw block function: 4 × 32 random bits from (counter, key). */
void rng_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

rng_key rng_key_make(uint64_t seed, uint32_t purpose);

/* 4 × 32 random bits for counter (a, b, c) where a is 64-bit. */
void rng_bits(rng_key key, uint64_t a, uint32_t b, uint32_t c, uint32_t out[4]);

/* Conversions of 32 random bits. */
float rng_uniform(uint32_t bits);                 /* [0, 1) with 24 random bits */
uint32_t rng_below(uint32_t bits, uint32_t n);    /* [0, n), Lemire's multiply-shift */
/* Two standard normals from two uniforms' worth of bits (Box-Muller). */
void rng_normal2(uint32_t bits0, uint32_t bits1, float out[2]);

/* Fills out[0..n) with N(0, std²) draws, counter (stream, i/4, 0, 0). */
void rng_fill_normal(rng_key key, uint64_t stream, float std, float *out, uint64_t n);
/* The draws first .. first + n - 1 of that sequence: a slice of a tensor gets
 * the values the whole tensor would have there. */
void rng_fill_normal_at(rng_key key, uint64_t stream, float std, uint64_t first, float *out,
                        uint64_t n);

#endif

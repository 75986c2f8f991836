#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline void philox_round(uint32_t c[4], const uint32_t k[2])
{
    uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c[1] ^ k[0];
    uint32_t n2 = hi0 ^ c[3] ^ k[1];
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
}

void rng_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c[4] = {counter[0], counter[1], counter[2], counter[3]};
    uint32_t k[2] = {key[0], key[1]};
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k[0] += PHILOX_W0;
            k[1] += PHILOX_W1;
        }
        philox_round(c, k);
    }
    for (int i = 0; i < 4; i++) out[i] = c[i];
}

rng_key rng_key_make(uint64_t seed, uint32_t purpose)
{
    /* Mix the purpose into the key through one Philox block so that nearby
     * seeds and purposes give unrelated keys. */
    uint32_t ctr[4] = {(uint32_t)seed, (uint32_t)(seed >> 32), purpose, 0x6d70696cu};
    uint32_t k0[2] = {0x243f6a88u, 0x85a308d3u};
    uint32_t out[4];
    rng_philox4x32_10(ctr, k0, out);
    rng_key key = {{out[0], out[1]}};
    return key;
}

void rng_bits(rng_key key, uint64_t a, uint32_t b, uint32_t c, uint32_t out[4])
{
    uint32_t ctr[4] = {(uint32_t)a, (uint32_t)(a >> 32), b, c};
    rng_philox4x32_10(ctr, key.k, out);
}

float rng_uniform(uint32_t bits) { return (float)(bits >> 8) * (1.0f / 16777216.0f); }

uint32_t rng_below(uint32_t bits, uint32_t n) { return (uint32_t)(((uint64_t)bits * n) >> 32); }

void rng_normal2(uint32_t bits0, uint32_t bits1, float out[2])
{
    /* u1 in (0, 1] so log() is finite. */
    double u1 = ((double)(bits0 >> 8) + 1.0) * (1.0 / 16777216.0);
    double u2 = (double)(bits1 >> 8) * (1.0 / 16777216.0);
    double r = sqrt(-2.0 * log(u1));
    out[0] = (float)(r * cos(2.0 * M_PI * u2));
    out[1] = (float)(r * sin(2.0 * M_PI * u2));
}

void rng_fill_normal(rng_key key, uint64_t stream, float std, float *out, uint64_t n)
{
    rng_fill_normal_at(key, stream, std, 0, out, n);
}

void rng_fill_normal_at(rng_key key, uint64_t stream, float std, uint64_t first, float *out,
                        uint64_t n)
{
    /* blocks of 4 are independent (counter-based): the same values on any number of threads */
    int64_t b0 = (int64_t)(first / 4), b1 = (int64_t)((first + n + 3) / 4);
    #pragma omp parallel for schedule(static) if (b1 - b0 > 16384)
    for (int64_t blk = b0; blk < b1; blk++) {
        uint64_t i = (uint64_t)blk * 4;
        uint32_t bits[4];
        rng_bits(key, stream, (uint32_t)(i / 4), (uint32_t)((i / 4) >> 32), bits);
        float z[4];
        rng_normal2(bits[0], bits[1], z);
        rng_normal2(bits[2], bits[3], z + 2);
        for (uint64_t j = 0; j < 4; j++)
            if (i + j >= first && i + j < first + n) out[i + j - first] = std * z[j];
    }
}

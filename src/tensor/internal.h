/* tensor/internal — helpers shared by the kernel files; not part of the API. */
#ifndef MPILM_TENSOR_INTERNAL_H
#define MPILM_TENSOR_INTERNAL_H

#include <math.h>

#include "tensor/tensor.h"

/* Dropout masks. The keep/drop decision of element i is byte (i % 8) of a
 * 64-bit keyed hash (splitmix64's finaliser) of (key, stream, i / 8):
 * counter-based like Philox but a few cycles per 8 elements, so backward
 * regenerates the mask instead of storing it. An element is dropped when its
 * byte < thr = round(256 p); kept ones are scaled by 1 / (1 - thr/256), the
 * exact keep probability. */
static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct drop_plan {
    uint64_t base;
    unsigned thr;
    float scale;
} drop_plan;

static inline drop_plan drop_plan_make(dropout_site d)
{
    drop_plan pl;
    uint64_t k = ((uint64_t)d.key.k[1] << 32) | d.key.k[0];
    pl.base = mix64(k ^ mix64(d.stream + 0x9E3779B97F4A7C15ull));
    pl.thr = d.p > 0.0f ? (unsigned)lrintf(d.p * 256.0f) : 0;
    if (pl.thr > 255) pl.thr = 255;
    pl.scale = 1.0f / (1.0f - (float)pl.thr / 256.0f);
    return pl;
}

static inline float drop_factor(const drop_plan *pl, size_t i)
{
    uint64_t h = mix64(pl->base + (uint64_t)(i >> 3) * 0x9E3779B97F4A7C15ull);
    unsigned byte = (unsigned)(h >> ((i & 7) * 8)) & 0xFF;
    return byte < pl->thr ? 0.0f : pl->scale;
}

#endif

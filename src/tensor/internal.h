/* tensor/internal — helpers shared by the kernel files; not part of the API. */
#ifndef MPILM_TENSOR_INTERNAL_H
#define MPILM_TENSOR_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tensor/tensor.h"

/* Vectorisable exp, tanh and erf for float (libm's are scalar calls and were
 * a third of a GPT step). exp: Cody-Waite reduction x = n ln2 + r, |r| <=
 * ln2/2, degree-6 polynomial (Cephes expf), scaled by 2^n through the
 * exponent bits; relative error < 2e-7 over the float range. */
static inline float exp_fast(float x)
{
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* NaN x: r and p carry the NaN; the exponent only has to keep the int
       conversion defined. Selecting it here, not n above, leaves one
       polynomial per vector (the select on n made the compiler evaluate it
       for both choices): 22% faster, the same bits for every float
       (checked over all 2^32 inputs). */
    float e = n >= -127.0f ? n : -127.0f;
    int32_t bits = ((int32_t)e + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* tanh(u) = 1 - 2 / (exp(2u) + 1): absolute error ~1e-7 (what GELU needs). */
static inline float tanh_fast(float u) { return 1.0f - 2.0f / (exp_fast(2.0f * u) + 1.0f); }

/* erf by Abramowitz & Stegun 7.1.26: absolute error < 1.5e-7. */
static inline float erf_fast(float x)
{
    float a = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float y = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    float e = 1.0f - y * exp_fast(-a * a);
    return x < 0.0f ? -e : e;
}

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

/* The mask bytes of elements 8g .. 8g+7. */
static inline uint64_t drop_word(const drop_plan *pl, size_t g)
{
    return mix64(pl->base + (uint64_t)g * 0x9E3779B97F4A7C15ull);
}

static inline float drop_factor(const drop_plan *pl, size_t i)
{
    unsigned byte = (unsigned)(drop_word(pl, i >> 3) >> ((i & 7) * 8)) & 0xFF;
    return byte < pl->thr ? 0.0f : pl->scale;
}

/* out[i] = res[i] + inp[i] * factor(first + i) for i < n (res may be NULL:
 * no residual; out may alias inp), one hash per 8 mask elements. Serial. */
static inline void drop_span(const drop_plan *pl, float *out, const float *res, const float *inp, size_t n,
                             size_t first)
{
    size_t i = 0;
    for (; i < n && ((first + i) & 7); i++) {
        float f = drop_factor(pl, first + i);
        out[i] = res ? res[i] + inp[i] * f : inp[i] * f;
    }
    /* 64 elements at a time: 8 hashes side by side (vectorised 64-bit
       multiplies), then their bytes as the 64 mask bytes in order (x86 is
       little-endian: byte j of word g is element 8 g + j, as drop_factor
       reads it); two loops, so that each vectorises (a residual test inside
       made the residual form 4x slower) */
    for (; i + 64 <= n; i += 64) {
        uint64_t h[8];
        size_t g0 = (first + i) >> 3;
        #pragma omp simd
        for (int g = 0; g < 8; g++) h[g] = drop_word(pl, g0 + (size_t)g);
        unsigned char b[64];
        memcpy(b, h, sizeof b);
        const int thr = (int)pl->thr;
        const float scale = pl->scale;
        float f[64];
        #pragma omp simd
        for (int j = 0; j < 64; j++) f[j] = (int)b[j] < thr ? 0.0f : scale;
        float *o = out + i;
        const float *x = inp + i;
        if (res) {
            const float *r = res + i;
            #pragma omp simd
            for (int j = 0; j < 64; j++) o[j] = r[j] + x[j] * f[j];
        } else {
            #pragma omp simd
            for (int j = 0; j < 64; j++) o[j] = x[j] * f[j];
        }
    }
    if (res) {
        for (; i + 8 <= n; i += 8) {
            uint64_t h = drop_word(pl, (first + i) >> 3);
            for (int j = 0; j < 8; j++) {
                float f = ((unsigned)(h >> (j * 8)) & 0xFF) < pl->thr ? 0.0f : pl->scale;
                out[i + j] = res[i + j] + inp[i + j] * f;
            }
        }
    } else {
        for (; i + 8 <= n; i += 8) {
            uint64_t h = drop_word(pl, (first + i) >> 3);
            for (int j = 0; j < 8; j++) {
                float f = ((unsigned)(h >> (j * 8)) & 0xFF) < pl->thr ? 0.0f : pl->scale;
                out[i + j] = inp[i + j] * f;
            }
        }
    }
    for (; i < n; i++) {
        float f = drop_factor(pl, first + i);
        out[i] = res ? res[i] + inp[i] * f : inp[i] * f;
    }
}

/* drop_span over elements 0 .. n-1, in parallel chunks. */
static inline void drop_apply(const drop_plan *pl, float *out, const float *res, const float *inp,
                              size_t n)
{
    enum { CHUNK = 8192 }; /* a multiple of 8 */
    size_t chunks = (n + CHUNK - 1) / CHUNK;
    #pragma omp parallel for schedule(static)
    for (size_t c = 0; c < chunks; c++) {
        size_t a = c * CHUNK, len = n - a < CHUNK ? n - a : CHUNK;
        drop_span(pl, out + a, res ? res + a : NULL, inp + a, len, a);
    }
}

/* C (M x N, row stride ldc) = alpha op(A) op(B) + beta C, beta 0 or 1, on the
 * calling thread alone: A and B fp32, rounded to bf16 (nearest even) as they
 * are packed, products summed in fp32 with AVX512-BF16 (gemm_bf16_1t.c).
 * Returns 0, having done nothing, when the thread's packing buffer cannot be
 * had or the CPU lacks AVX512-BF16 (the caller then runs tensor_gemm_1t). */
int gemm_bf16_1t(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc);
/* A buffer of at least bytes (64-byte aligned) private to the calling
 * OpenMP thread, one per slot: grown on its first need and kept, so later
 * calls of the same size allocate nothing. NULL when it cannot be had. */
enum { TB_GEMM_PACK = 0, TB_ATTENTION = 1, TB_CROSSENTROPY = 2, TB_SLOTS = 3 };
void *thread_buffer(int slot, size_t bytes);
/* Frees every thread's buffers (tensor_gemm_bf16_shutdown). */
void thread_buffers_release(void);

#endif

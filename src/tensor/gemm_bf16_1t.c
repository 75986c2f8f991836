/* tensor/gemm_bf16_1t — a one-thread bf16 GEMM for the small products of
 * attention (tensor/attention.c), which run inside a parallel loop over
 * (sequence, head) pairs where oneDNN's primitives, made for one caller at a
 * time, do not fit.
 *
 * The fp32 operands are rounded to bf16 (nearest even, as bf16_round) while
 * they are packed, 16 at a time:
 *   A into panels of MR = 8 rows of words (a[i][k], a[i][k+1]), by rows or by
 *   pairs of k, whichever its storage reads contiguously;
 *   B into panels of NR = 32 columns: per pair of k, 32 words (b[k][j], b[k+1][j]).
 * The kernel keeps an 8 x 32 tile of C in 16 zmm registers and adds, per pair
 * of k, a broadcast A word times two B vectors with vdpbf16ps (two bf16
 * products summed into each fp32 lane). The products of bf16 values are
 * exact in fp32; each addition rounds once, so an entry is within
 * K 2^-24 sum|a b| of the exact dot product of the rounded operands, as the
 * oneDNN GEMM (bf16.h's bound B). vdpbf16ps treats denormal inputs and
 * results as zero (bf16 activations of a trained model are never that small
 * where it matters; the tests use normal values).
 *
 * Each OpenMP thread packs into its own buffer (thread_buffer, also here),
 * grown on its first need (the first step) and kept: later calls allocate
 * nothing. */
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/bf16.h"
#include "tensor/internal.h"

enum { MR = 8, NR = 32, MAX_THREADS = 256 };

static void *thread_buf[TB_SLOTS][MAX_THREADS];
static size_t thread_cap[TB_SLOTS][MAX_THREADS];

void *thread_buffer(int slot, size_t bytes)
{
    int t = omp_get_thread_num();
    if (t >= MAX_THREADS || slot < 0 || slot >= TB_SLOTS) return NULL;
    if (thread_cap[slot][t] < bytes) {
        free(thread_buf[slot][t]);
        thread_buf[slot][t] = aligned_alloc(64, (bytes + 63) / 64 * 64);
        thread_cap[slot][t] = thread_buf[slot][t] ? bytes : 0;
    }
    return thread_buf[slot][t];
}

void thread_buffers_release(void)
{
    for (int s = 0; s < TB_SLOTS; s++)
        for (int t = 0; t < MAX_THREADS; t++) {
            free(thread_buf[s][t]);
            thread_buf[s][t] = NULL;
            thread_cap[s][t] = 0;
        }
}

/* bf16_round of 16 floats in 32-bit lanes (nearest even, NaN kept quiet). */
static inline __m512i round16(__m512 x)
{
    __m512i u = _mm512_castps_si512(x);
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF),
                                                     _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
    r = _mm512_srli_epi32(r, 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)),
                                            _mm512_set1_epi32(0x7F800000));
    return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}

static inline __mmask16 first(int n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1u); }

/* n (<= 32) contiguous floats to n bf16 at dst (the rest of 32 zero). */
static inline void row32(uint16_t *dst, const float *src, int n)
{
    __m512i a = round16(_mm512_maskz_loadu_ps(first(n), src));
    __m512i b = round16(_mm512_maskz_loadu_ps(first(n - 16), src + 16));
    _mm256_storeu_si256((__m256i *)dst, _mm512_cvtepi32_epi16(a));
    _mm256_storeu_si256((__m256i *)(dst + 16), _mm512_cvtepi32_epi16(b));
}

/* 16 words (lo[j], hi[j]) of two float rows, n (<= 16) of them valid. */
static inline __m512i words16(const float *lo, const float *hi, int n)
{
    __mmask16 m = first(n);
    __m512i a = round16(_mm512_maskz_loadu_ps(m, lo));
    __m512i b = hi ? round16(_mm512_maskz_loadu_ps(m, hi)) : _mm512_setzero_si512();
    return _mm512_maskz_or_epi32(m, a, _mm512_slli_epi32(b, 16));
}

/* op(A) (M x K) into ceil(M / MR) panels of MR x Kh words, Kh = ceil(K / 2).
 * ta = 0: a panel holds its rows one after the other (row r's pair p at
 * r Kh + p: a row of A converted in order); ta = 1: pair by pair (at p MR +
 * r: two rows of A's storage give MR words). *rs, *ps: the kernel's strides. */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void pack_a(uint32_t *dst, int ta, int M, int K,
                                                                         const float *A, int lda, int *rs, int *ps)
{
    int Kh = (K + 1) / 2;
    *rs = ta ? 1 : Kh;
    *ps = ta ? MR : 1;
    for (int i0 = 0; i0 < M; i0 += MR, dst += (size_t)Kh * MR) {
        int mr = M - i0 < MR ? M - i0 : MR;
        if (!ta) {
            for (int r = 0; r < MR; r++) {
                uint16_t *d = (uint16_t *)(dst + (size_t)r * Kh);
                if (r >= mr) {
                    memset(d, 0, (size_t)Kh * sizeof(uint32_t));
                    continue;
                }
                const float *a = A + (size_t)(i0 + r) * lda;
                for (int k = 0; k < 2 * Kh; k += 32) {
                    uint16_t tmp[32];
                    int n = K - k < 32 ? K - k : 32;
                    if (2 * Kh - k >= 32) {
                        row32(d + k, a + k, n);
                    } else { /* the row's last words: no store past the panel */
                        row32(tmp, a + k, n);
                        memcpy(d + k, tmp, (size_t)(2 * Kh - k) * sizeof(uint16_t));
                    }
                }
            }
        } else {
            for (int p = 0; p < Kh; p++) {
                int k = 2 * p;
                __m512i w = words16(A + (size_t)k * lda + i0, k + 1 < K ? A + (size_t)(k + 1) * lda + i0 : NULL, mr);
                _mm256_storeu_si256((__m256i *)(dst + (size_t)p * MR), _mm512_castsi512_si256(w));
            }
        }
    }
}

/* op(B) (K x N) into ceil(N / NR) panels of Kh x NR words (pair p, column c
 * at p NR + c). tb = 0: two rows of B give a pair's 32 words; tb = 1: each
 * column of op(B) (a row of B's storage) is converted in order into tmp,
 * then the panel is transposed into place. */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void pack_b(uint32_t *dst, uint32_t *tmp, int tb, int N,
                                                                         int K, const float *B, int ldb)
{
    int Kh = (K + 1) / 2;
    for (int j0 = 0; j0 < N; j0 += NR, dst += (size_t)Kh * NR) {
        int nr = N - j0 < NR ? N - j0 : NR;
        if (!tb) {
            for (int p = 0; p < Kh; p++) {
                int k = 2 * p;
                const float *lo = B + (size_t)k * ldb + j0, *hi = k + 1 < K ? lo + ldb : NULL;
                _mm512_store_si512((void *)(dst + (size_t)p * NR), words16(lo, hi, nr));
                _mm512_store_si512((void *)(dst + (size_t)p * NR + 16),
                                   words16(lo + 16, hi ? hi + 16 : NULL, nr - 16));
            }
        } else {
            int Kw = (Kh + 15) / 16 * 16; /* tmp rows: whole 32-bf16 groups */
            for (int c = 0; c < NR; c++) {
                uint16_t *t = (uint16_t *)(tmp + (size_t)c * Kw);
                if (c >= nr) {
                    memset(t, 0, (size_t)Kw * sizeof(uint32_t));
                    continue;
                }
                for (int k = 0; k < 2 * Kw; k += 32) row32(t + k, B + (size_t)(j0 + c) * ldb + k, K - k);
            }
            for (int p = 0; p < Kh; p++) {
                __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                 _mm512_set1_epi32(Kw));
                __m512i g0 = _mm512_i32gather_epi32(idx, (const void *)(tmp + p), 4);
                __m512i g1 = _mm512_i32gather_epi32(idx, (const void *)(tmp + (size_t)16 * Kw + p), 4);
                _mm512_store_si512((void *)(dst + (size_t)p * NR), g0);
                _mm512_store_si512((void *)(dst + (size_t)p * NR + 16), g1);
            }
        }
    }
}

__attribute__((target("avx512f,avx512bf16"))) static void tile(int Kh, const uint32_t *a, int rs, int ps,
                                                                const uint32_t *b, float *C, int ldc, int mr, int nr,
                                                                float alpha, float beta)
{
    __m512 acc[MR][2];
    #pragma GCC unroll 8
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < Kh; p++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)(b + (size_t)p * NR));
        __m512bh b1 = (__m512bh)_mm512_load_si512((const void *)(b + (size_t)p * NR + 16));
        const uint32_t *ap = a + (size_t)p * ps;
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)ap[(size_t)r * rs]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
        }
    }
    __mmask16 m0 = first(nr), m1 = first(nr - 16);
    __m512 va = _mm512_set1_ps(alpha);
    for (int r = 0; r < mr; r++) {
        float *c = C + (size_t)r * ldc;
        __m512 y0 = _mm512_mul_ps(va, acc[r][0]), y1 = _mm512_mul_ps(va, acc[r][1]);
        if (beta != 0.0f) {
            y0 = _mm512_add_ps(y0, _mm512_maskz_loadu_ps(m0, c));
            y1 = _mm512_add_ps(y1, _mm512_maskz_loadu_ps(m1, c + 16));
        }
        _mm512_mask_storeu_ps(c, m0, y0);
        _mm512_mask_storeu_ps(c + 16, m1, y1);
    }
}

int gemm_bf16_1t(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return 1;
    /* MPILM_CPU_BF16=1 may claim bf16 on a CPU without it (tests of the
       choice): the caller's BLIS path then, not an illegal instruction */
    if (!__builtin_cpu_supports("avx512bf16")) return 0;
    int Kh = (K + 1) / 2, Kw = (Kh + 15) / 16 * 16, Mp = (M + MR - 1) / MR * MR, Np = (N + NR - 1) / NR * NR;
    size_t na = ((size_t)Mp * Kh + 15) / 16 * 16, nb = (size_t)Np * Kh, nt = tb ? (size_t)NR * Kw : 0;
    uint32_t *buf = thread_buffer(TB_GEMM_PACK, (na + nb + nt) * sizeof(uint32_t));
    if (!buf) return 0;
    uint32_t *pa = buf, *pb = buf + na, *pt = pb + nb; /* 64-byte aligned: na, nb are multiples of 16 */
    int rs, ps;
    pack_a(pa, ta, M, K, A, lda, &rs, &ps);
    pack_b(pb, pt, tb, N, K, B, ldb);
    for (int j0 = 0; j0 < N; j0 += NR)
        for (int i0 = 0; i0 < M; i0 += MR)
            tile(Kh, pa + (size_t)(i0 / MR) * Kh * MR, rs, ps, pb + (size_t)(j0 / NR) * Kh * NR,
                 C + (size_t)i0 * ldc + j0, ldc, M - i0 < MR ? M - i0 : MR, N - j0 < NR ? N - j0 : NR, alpha, beta);
    return 1;
}

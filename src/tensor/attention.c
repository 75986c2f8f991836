/* tensor/attention — multi-head scaled dot-product attention.
 *
 * Each (sequence, head) pair is independent: one thread takes a pair and runs
 * its small GEMMs on one BLIS thread. Rows are processed in blocks of RB
 * queries; with a causal mask a block only multiplies the keys it can see
 * (keys < the block's end), which halves the work of a causal layer. */
#include <math.h>
#include <string.h>

#include "tensor/internal.h"

enum { RB = 64 };

static inline int key_end(int causal, int i1, int T) { return causal ? i1 : T; }

/* Softmax of rows [i0, i1) of S (T,T) in place; entries j >= kend, j > i
 * (causal) or with key_mask[j] == 0 get probability exactly 0. */
static void softmax_rows(float *S, int i0, int i1, int T, int kend, int causal,
                         const int32_t *key_mask)
{
    for (int i = i0; i < i1; i++) {
        float *row = S + (size_t)i * T;
        int jend = causal ? i + 1 : kend;
        float mx = -INFINITY, sum = 0.0f;
        /* SIMD reductions (a fixed order per row: deterministic) */
        if (!key_mask) {
            #pragma omp simd reduction(max : mx)
            for (int j = 0; j < jend; j++) mx = row[j] > mx ? row[j] : mx;
            #pragma omp simd reduction(+ : sum)
            for (int j = 0; j < jend; j++) {
                row[j] = exp_fast(row[j] - mx);
                sum += row[j];
            }
        } else {
            #pragma omp simd reduction(max : mx)
            for (int j = 0; j < jend; j++) mx = key_mask[j] && row[j] > mx ? row[j] : mx;
            #pragma omp simd reduction(+ : sum)
            for (int j = 0; j < jend; j++) {
                row[j] = key_mask[j] ? exp_fast(row[j] - mx) : 0.0f;
                sum += row[j];
            }
        }
        float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        for (int j = 0; j < jend; j++) row[j] *= inv;
        for (int j = jend; j < T; j++) row[j] = 0.0f;
    }
}

/* Rows [i0, i1) of Pd = dropout(P), element index base + i*T + j. */
static void dropout_rows(float *Pd, const float *P, int i0, int i1, int T, int kend,
                         const drop_plan *pl, size_t base)
{
    for (int i = i0; i < i1; i++) {
        size_t at = (size_t)i * T;
        drop_span(pl, Pd + at, NULL, P + at, (size_t)kend, base + at);
    }
}

/* First mask element of (sequence b, local head h): keyed by the global head. */
static size_t mask_base(const dropout_site *d, int b, int h, int NH, int T)
{
    int heads = d->n_head ? d->n_head : NH;
    return ((size_t)b * heads + (size_t)d->head0 + h) * T * T;
}

void attention_forward(float *out, float *att, float *scratch, const float *qkv,
                       const int32_t *key_mask, int causal, dropout_site drop, int B, int T,
                       int C, int NH)
{
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    drop_plan pl = drop_plan_make(drop);
    #pragma omp parallel for schedule(dynamic, 1)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        const float *Q = qkv + (size_t)b * T * C3 + h * hs, *K = Q + C, *V = Q + 2 * C;
        size_t base = mask_base(&drop, b, h, NH, T);
        float *S = att + (size_t)bh * T * T;
        float *Pd = drop.p > 0.0f ? scratch + (size_t)bh * T * T : S;
        float *O = out + (size_t)b * T * C + h * hs;
        const int32_t *km = key_mask ? key_mask + (size_t)b * T : NULL;
        for (int i0 = 0; i0 < T; i0 += RB) {
            int i1 = i0 + RB < T ? i0 + RB : T, kend = key_end(causal, i1, T);
            float *Si = S + (size_t)i0 * T;
            gemm_1t(0, 1, i1 - i0, kend, hs, scale, Q + (size_t)i0 * C3, C3, K, C3, 0.0f, Si, T);
            softmax_rows(S, i0, i1, T, kend, causal, km);
            if (drop.p > 0.0f) dropout_rows(Pd, S, i0, i1, T, kend, &pl, base);
            gemm_1t(0, 0, i1 - i0, hs, kend, 1.0f, Pd + (size_t)i0 * T, T, V, C3, 0.0f,
                    O + (size_t)i0 * C, C);
        }
    }
}

/* dS = P * (dP - rowsum(P * dP)) * scale, in place over dP, rows [i0, i1). */
static void softmax_backward_rows(float *dP, const float *P, int i0, int i1, int T, int kend,
                                  float scale)
{
    for (int i = i0; i < i1; i++) {
        float *d = dP + (size_t)i * T;
        const float *p = P + (size_t)i * T;
        float dot = 0.0f;
        #pragma omp simd reduction(+ : dot)
        for (int j = 0; j < kend; j++) dot += p[j] * d[j];
        for (int j = 0; j < kend; j++) d[j] = p[j] * (d[j] - dot) * scale;
    }
}

void attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                        const float *att, int causal, dropout_site drop, int B, int T, int C,
                        int NH)
{
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    drop_plan pl = drop_plan_make(drop);
    #pragma omp parallel for schedule(dynamic, 1)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        const float *Q = qkv + (size_t)b * T * C3 + h * hs, *K = Q + C, *V = Q + 2 * C;
        float *dQ = dqkv + (size_t)b * T * C3 + h * hs, *dK = dQ + C, *dV = dQ + 2 * C;
        const float *P = att + (size_t)bh * T * T;
        float *dS = datt + (size_t)bh * T * T;
        const float *dO = dout + (size_t)b * T * C + h * hs;
        size_t base = mask_base(&drop, b, h, NH, T);
        /* dV = dropout(P)^T dO, the dropped P rebuilt in dS first */
        const float *Pd = P;
        if (drop.p > 0.0f) {
            dropout_rows(dS, P, 0, T, T, T, &pl, base);
            Pd = dS;
        }
        gemm_1t(1, 0, T, hs, T, 1.0f, Pd, T, dO, C, 0.0f, dV, C3);
        for (int i0 = 0; i0 < T; i0 += RB) {
            int i1 = i0 + RB < T ? i0 + RB : T, kend = key_end(causal, i1, T);
            float *dSi = dS + (size_t)i0 * T;
            gemm_1t(0, 1, i1 - i0, kend, hs, 1.0f, dO + (size_t)i0 * C, C, V, C3, 0.0f, dSi, T);
            if (drop.p > 0.0f)
                for (int i = i0; i < i1; i++) {
                    float *row = dS + (size_t)i * T;
                    drop_span(&pl, row, NULL, row, (size_t)kend, base + (size_t)i * T);
                }
            softmax_backward_rows(dS, P, i0, i1, T, kend, scale);
            for (int i = i0; i < i1; i++)
                memset(dS + (size_t)i * T + kend, 0, (size_t)(T - kend) * sizeof(float));
        }
        /* dQ = dS K, dK = dS^T Q (dS is zero beyond each block's visible keys) */
        gemm_1t(0, 0, T, hs, T, 1.0f, dS, T, K, C3, 0.0f, dQ, C3);
        gemm_1t(1, 0, T, hs, T, 1.0f, dS, T, Q, C3, 0.0f, dK, C3);
    }
}

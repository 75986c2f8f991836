/* tensor/attention — multi-head scaled dot-product attention.
 *
 * Each (sequence, head) pair is independent: one thread takes a pair and runs
 * its small GEMMs on one BLIS thread, or with half (bf16 stages) on
 * gemm_bf16_1t: operands rounded to bf16 as autocast's matmuls take them,
 * sums in fp32; the softmax, its statistics and dropout stay fp32. Rows are processed in blocks of RB
 * queries; with a causal mask a block only multiplies the keys it can see
 * (keys < the block's end), which halves the work of a causal layer.
 *
 * Nothing of size T x T is kept between forward and backward: forward keeps
 * each row's softmax maximum and 1 / sum (2 floats a row), and backward
 * recomputes each block's probabilities from q and k with forward's GEMM
 * call (the same shapes, so the same logits) and the same exp and product
 * (so bitwise the same probabilities), and the dropout mask from its key.
 * Memory per layer drops by B NH T^2 floats (gpt2-small, T = 1024: 48 MiB a
 * layer) for one more q k^T GEMM and exp per block in backward. A thread
 * works in a buffer of its own (thread_buffer: made on its first call, then
 * kept): two blocks of probabilities of the pair at hand.
 *
 * A bf16 stage keeps q | k | v in bf16 (qkv_bf): each thread widens the
 * head at hand into its buffer too (T x 3 hs floats, in cache) before its
 * GEMMs, which round them back to the same bf16 values, so keeping them so
 * changes no result.
 *
 * Grouped-query attention (NKV < NH key/value heads, Llama): a row is
 * q (C) | k (KV) | v (KV), KV = NKV hs, and query head h reads kv head
 * h / (NH / NKV) in place: no repeated copy. Backward takes the heads of one
 * kv head as one task (one thread), so their d(k), d(v) add up in place, in
 * head order. */
#include <math.h>
#include <string.h>

#include "tensor/bf16.h"
#include "tensor/internal.h"

enum { RB = 64 };

static inline int key_end(int causal, int i1, int T) { return causal ? i1 : T; }
/* The keys query row i sees: [0, row_end) of the block's [0, kend). */
static inline int row_end(int causal, int i, int kend) { return causal ? i + 1 : kend; }

/* Softmax in place of query rows [i0, i1), held in S (row i at S + (i - i0) T);
 * entries j >= kend, j > i (causal) or with key_mask[j] == 0 get probability
 * exactly 0. stat[2 i], stat[2 i + 1] receive row i's maximum and 1 / sum. */
static void softmax_rows(float *S, float *stat, int i0, int i1, int T, int kend, int causal,
                         const int32_t *key_mask)
{
    for (int i = i0; i < i1; i++) {
        float *row = S + (size_t)(i - i0) * T;
        int jend = row_end(causal, i, kend);
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
        stat[2 * i] = mx, stat[2 * i + 1] = inv;
    }
}

/* The probabilities softmax_rows made, from the logits and its stat: the same
 * operations on the same values, so bitwise the same. */
static void softmax_again(float *S, const float *stat, int i0, int i1, int T, int kend, int causal,
                          const int32_t *key_mask)
{
    for (int i = i0; i < i1; i++) {
        float *row = S + (size_t)(i - i0) * T;
        int jend = row_end(causal, i, kend);
        float mx = stat[2 * i], inv = stat[2 * i + 1];
        if (!key_mask) {
            #pragma omp simd
            for (int j = 0; j < jend; j++) row[j] = exp_fast(row[j] - mx) * inv;
        } else {
            #pragma omp simd
            for (int j = 0; j < jend; j++) row[j] = key_mask[j] ? exp_fast(row[j] - mx) * inv : 0.0f;
        }
        for (int j = jend; j < kend; j++) row[j] = 0.0f;
    }
}

/* Pd = dropout(P) for query rows [i0, i1) held as in softmax_rows (Pd may
 * be P); the mask element of (i, j) is base + i T + j. */
static void dropout_rows(float *Pd, const float *P, int i0, int i1, int T, int kend,
                         const drop_plan *pl, size_t base)
{
    for (int i = i0; i < i1; i++) {
        size_t at = (size_t)(i - i0) * T;
        drop_span(pl, Pd + at, NULL, P + at, (size_t)kend, base + (size_t)i * T);
    }
}

/* One of attention's GEMMs on this thread: bf16 operands (rounded as they
 * are packed, fp32 sums) when half, else fp32 (BLIS). */
static void att_gemm(int half, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc)
{
    if (half && gemm_bf16_1t(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
    tensor_gemm_1t(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* The logits of query rows [i0, i1) against keys [0, kend) into P (rows of
 * T): scale q k^T (q and k rows ld floats apart). Forward and backward both
 * call it. */
static void logits_block(float *P, const float *Q, const float *K, int i0, int i1, int kend, int hs, int T, int ld,
                         float scale, int half)
{
    att_gemm(half, 0, 1, i1 - i0, kend, hs, scale, Q + (size_t)i0 * ld, ld, K, ld, 0.0f, P, T);
}

/* The shape of one call: heads, kv heads, widths. A row of q | k | v is
 * W = C + 2 KV wide; query head h reads kv head h / group. */
typedef struct att_shape {
    int B, T, C, NH, NKV, hs, group, KV, W;
} att_shape;

static att_shape shape_of(int B, int T, int C, int NH, int NKV)
{
    int hs = C / NH;
    return (att_shape){B, T, C, NH, NKV, hs, NH / NKV, NKV * hs, C + 2 * NKV * hs};
}

/* Head h of sequence b: returns its q (T rows, *ld floats apart), its k and
 * v at *k and *v floats past each q row: read in place in qkv (rows of W),
 * or widened from the bf16 copy into wide (rows of 3 hs: q | k | v). */
static const float *head_qkv(const float *qkv, const bf16 *qkv_bf, float *wide, const att_shape *s, int b, int h,
                             int *ld, size_t *k, size_t *v)
{
    size_t row0 = (size_t)b * s->T * s->W, q = (size_t)h * s->hs;
    size_t ko = (size_t)s->C + (size_t)(h / s->group) * s->hs, vo = ko + (size_t)s->KV;
    if (!qkv_bf) {
        *ld = s->W;
        *k = ko - q;
        *v = vo - q;
        return qkv + row0 + q;
    }
    int hs = s->hs;
    for (int t = 0; t < s->T; t++) {
        const bf16 *src = qkv_bf + row0 + (size_t)t * s->W;
        float *dst = wide + (size_t)t * 3 * hs;
        #pragma omp simd
        for (int i = 0; i < hs; i++) dst[i] = bf16_value(src[q + i]);
        #pragma omp simd
        for (int i = 0; i < hs; i++) dst[hs + i] = bf16_value(src[ko + i]);
        #pragma omp simd
        for (int i = 0; i < hs; i++) dst[2 * hs + i] = bf16_value(src[vo + i]);
    }
    *ld = 3 * hs;
    *k = (size_t)hs;
    *v = 2 * (size_t)hs;
    return wide;
}

/* The start of pair (b, h): *P the calling thread's buffer, two blocks of
 * probabilities (block floats each) followed, from a bf16 copy, by the head's
 * q | k | v widened to fp32; returns q as head_qkv does, or NULL when the
 * buffer cannot be had. */
static const float *pair_begin(const float *qkv, const bf16 *qkv_bf, size_t block, const att_shape *s, int b, int h,
                               float **P, int *ld, size_t *k, size_t *v)
{
    size_t n = 2 * block + (qkv_bf ? (size_t)s->T * 3 * s->hs : 0);
    *P = thread_buffer(TB_ATTENTION, n * sizeof(float));
    return *P ? head_qkv(qkv, qkv_bf, *P + 2 * block, s, b, h, ld, k, v) : NULL;
}

/* First mask element of (sequence b, local head h): keyed by the global head. */
static size_t mask_base(const dropout_site *d, int b, int h, int NH, int T)
{
    int heads = d->n_head ? d->n_head : NH;
    return ((size_t)b * heads + (size_t)d->head0 + h) * T * T;
}

status_t attention_forward_gqa(float *out, float *stat, const float *qkv, const bf16 *qkv_bf,
                               const int32_t *key_mask, int causal, dropout_site drop, int B, int T, int C, int NH,
                               int NKV, int half)
{
    att_shape sh = shape_of(B, T, C, NH, NKV);
    int hs = sh.hs, failed = 0;
    float scale = 1.0f / sqrtf((float)hs);
    size_t block = (T < RB ? (size_t)T : RB) * T;
    drop_plan pl = drop_plan_make(drop);
    #pragma omp parallel for schedule(dynamic, 1) reduction(| : failed)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH, ld;
        size_t ko, vo;
        float *P;
        const float *Q = pair_begin(qkv, qkv_bf, block, &sh, b, h, &P, &ld, &ko, &vo);
        if (!Q) {
            failed = 1;
            continue;
        }
        float *Pd = drop.p > 0.0f ? P + block : P;
        const float *K = Q + ko, *V = Q + vo;
        size_t base = mask_base(&drop, b, h, NH, T);
        float *O = out + (size_t)b * T * C + h * hs;
        const int32_t *km = key_mask ? key_mask + (size_t)b * T : NULL;
        for (int i0 = 0; i0 < T; i0 += RB) {
            int i1 = i0 + RB < T ? i0 + RB : T, kend = key_end(causal, i1, T);
            logits_block(P, Q, K, i0, i1, kend, hs, T, ld, scale, half);
            softmax_rows(P, stat + (size_t)bh * 2 * T, i0, i1, T, kend, causal, km);
            if (drop.p > 0.0f) dropout_rows(Pd, P, i0, i1, T, kend, &pl, base);
            att_gemm(half, 0, 0, i1 - i0, hs, kend, 1.0f, Pd, T, V, ld, 0.0f, O + (size_t)i0 * C, C);
        }
    }
    FAIL_IF(failed, ST_NOMEM, "attention: out of memory for a thread's %zu-byte buffer",
            (2 * block + (qkv_bf ? (size_t)T * 3 * hs : 0)) * sizeof(float));
    return ST_OK;
}

/* dS = P * (dP - rowsum(P * dP)) * scale, in place over dP, for the i1 - i0
 * rows of a block (rows of T). */
static void softmax_backward_rows(float *dP, const float *P, int rows, int T, int kend, float scale)
{
    for (int i = 0; i < rows; i++) {
        float *d = dP + (size_t)i * T;
        const float *p = P + (size_t)i * T;
        float dot = 0.0f;
        #pragma omp simd reduction(+ : dot)
        for (int j = 0; j < kend; j++) dot += p[j] * d[j];
        for (int j = 0; j < kend; j++) d[j] = p[j] * (d[j] - dot) * scale;
    }
}

/* Head h of sequence b, per block of query rows, with its probabilities P
 * recomputed and Pd their dropout: dV += Pd^T dO, dP = dO V^T (then
 * dropout's backward), dS from the softmax's backward, dQ = dS K (the
 * block's rows), dK += dS^T Q. dK, dV (rows of W) add to what is there.
 * Returns 0 when the thread's buffer cannot be had. */
static int head_backward(float *dqkv, const float *dout, const float *qkv, const bf16 *qkv_bf, const float *stat,
                         const int32_t *key_mask, int causal, const dropout_site *drop, const drop_plan *pl,
                         const att_shape *s, int b, int h, int half)
{
    int T = s->T, C = s->C, W = s->W, hs = s->hs, ld;
    float scale = 1.0f / sqrtf((float)hs);
    size_t block = (T < RB ? (size_t)T : RB) * T, ko, vo;
    float *P;
    const float *Q = pair_begin(qkv, qkv_bf, block, s, b, h, &P, &ld, &ko, &vo);
    if (!Q) return 0;
    float *dP = P + block;
    const float *K = Q + ko, *V = Q + vo;
    size_t row0 = (size_t)b * T * W, kvo = (size_t)C + (size_t)(h / s->group) * hs;
    float *dQ = dqkv + row0 + (size_t)h * hs, *dK = dqkv + row0 + kvo, *dV = dK + s->KV;
    const float *dO = dout + (size_t)b * T * C + (size_t)h * hs;
    const int32_t *km = key_mask ? key_mask + (size_t)b * T : NULL;
    size_t base = mask_base(drop, b, h, s->NH, T);
    stat += ((size_t)b * s->NH + h) * 2 * T;
    for (int i0 = 0; i0 < T; i0 += RB) {
        int i1 = i0 + RB < T ? i0 + RB : T, kend = key_end(causal, i1, T), rows = i1 - i0;
        logits_block(P, Q, K, i0, i1, kend, hs, T, ld, scale, half);
        softmax_again(P, stat, i0, i1, T, kend, causal, km);
        const float *Pd = P;
        if (drop->p > 0.0f) { /* the dropped probabilities, in dP until dP is made */
            dropout_rows(dP, P, i0, i1, T, kend, pl, base);
            Pd = dP;
        }
        att_gemm(half, 1, 0, kend, hs, rows, 1.0f, Pd, T, dO + (size_t)i0 * C, C, 1.0f, dV, W);
        att_gemm(half, 0, 1, rows, kend, hs, 1.0f, dO + (size_t)i0 * C, C, V, ld, 0.0f, dP, T);
        if (drop->p > 0.0f) dropout_rows(dP, dP, i0, i1, T, kend, pl, base);
        softmax_backward_rows(dP, P, rows, T, kend, scale);
        att_gemm(half, 0, 0, rows, hs, kend, 1.0f, dP, T, K, ld, 0.0f, dQ + (size_t)i0 * W, W);
        att_gemm(half, 1, 0, kend, hs, rows, 1.0f, dP, T, Q + (size_t)i0 * ld, ld, 1.0f, dK, W);
    }
    return 1;
}

/* One task per (sequence, kv head): its d(k), d(v) zeroed, then each query
 * head of its group adds to them, in head order (deterministic). */
status_t attention_backward_gqa(float *dqkv, const float *dout, const float *qkv, const bf16 *qkv_bf,
                                const float *stat, const int32_t *key_mask, int causal, dropout_site drop, int B,
                                int T, int C, int NH, int NKV, int half)
{
    att_shape sh = shape_of(B, T, C, NH, NKV);
    int failed = 0;
    drop_plan pl = drop_plan_make(drop);
    #pragma omp parallel for schedule(dynamic, 1) reduction(| : failed)
    for (int bg = 0; bg < B * NKV; bg++) {
        int b = bg / NKV, g = bg % NKV;
        float *dK = dqkv + (size_t)b * T * sh.W + C + (size_t)g * sh.hs, *dV = dK + sh.KV;
        for (int t = 0; t < T; t++) {
            memset(dK + (size_t)t * sh.W, 0, (size_t)sh.hs * sizeof(float));
            memset(dV + (size_t)t * sh.W, 0, (size_t)sh.hs * sizeof(float));
        }
        for (int h = g * sh.group; h < (g + 1) * sh.group && !failed; h++)
            if (!head_backward(dqkv, dout, qkv, qkv_bf, stat, key_mask, causal, &drop, &pl, &sh, b, h, half))
                failed = 1;
    }
    size_t block = (T < RB ? (size_t)T : RB) * T;
    FAIL_IF(failed, ST_NOMEM, "attention: out of memory for a thread's %zu-byte buffer",
            (2 * block + (qkv_bf ? (size_t)T * 3 * sh.hs : 0)) * sizeof(float));
    return ST_OK;
}

/* tensor/linear — the fp32 GEMM (oneDNN's f32 matmul or BLIS) and the linear
 * layers built on it, in fp32 and in mixed precision (bf16 operands, fp32
 * results, oneDNN). */
#include <blis.h>
#include <omp.h>
#include <string.h>

#include "tensor/bf16.h"
#include "tensor/tensor.h"

static void gemm_rntm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *Bm, int ldb, float beta, float *Cm, int ldc, rntm_t *rntm)
{
    if (M == 0 || N == 0) return;
    /* Row-major operands are BLIS matrices with row stride ld, column stride 1. */
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 M, N, K, &alpha, (float *)A, lda, 1, (float *)Bm, ldb, 1, &beta, Cm, ldc, 1,
                 NULL, rntm);
}

void tensor_gemm_blis(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *Bm, int ldb,
               float beta, float *Cm, int ldc)
{
    gemm_rntm(ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, Cm, ldc, NULL);
}

/* oneDNN's f32 matmul where it applies (alpha 1, beta 0 or 1: every linear
 * layer's GEMM), BLIS otherwise: oneDNN measured faster at most of the
 * model's shapes and within a few percent at the others (bench_gemm, table
 * in docs/design.md). A fixed rule, not a per-run timing, so a run and its
 * resume compute the same bits. */
void tensor_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *Bm, int ldb, float beta, float *Cm, int ldc)
{
    if (alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && !omp_in_parallel()) {
        if (tensor_gemm_onednn_f32(ta, tb, M, N, K, A, lda, Bm, ldb, beta, Cm, ldc) == ST_OK) return;
        st_clear(); /* a primitive oneDNN cannot make: BLIS computes it */
    }
    tensor_gemm_blis(ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, Cm, ldc);
}

void tensor_gemm_1t(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *Bm, int ldb, float beta, float *Cm, int ldc)
{
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    gemm_rntm(ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, Cm, ldc, &rntm);
}

/* inp (N,C), weight (OC,C) [W_OUT_IN] or (C,OC) [W_IN_OUT], out (N,OC) stride ldo. */
/* Every row of out (N,OC) stride ldo = bias; the GEMM then adds (beta 1). */
static float bias_fill(float *out, int ldo, const float *bias, int N, int OC)
{
    if (!bias) return 0.0f;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * ldo, bias, (size_t)OC * sizeof(float));
    return 1.0f;
}

void linear_forward(float *out, int ldo, const float *inp, const float *weight,
                    const float *bias, weight_layout lay, int N, int C, int OC)
{
    if (bias && !omp_in_parallel()) { /* oneDNN adds the bias as it writes (tensor_gemm's rule for its f32 path) */
        int t = lay == W_OUT_IN;
        if (tensor_gemm_onednn_f32_bias(0, t, N, OC, C, inp, C, weight, t ? C : OC, bias, out, ldo) == ST_OK) return;
        st_clear();
    }
    float beta = bias_fill(out, ldo, bias, N, OC);
    if (lay == W_OUT_IN)
        tensor_gemm(0, 1, N, OC, C, 1.0f, inp, C, weight, C, beta, out, ldo);
    else
        tensor_gemm(0, 0, N, OC, C, 1.0f, inp, C, weight, OC, beta, out, ldo);
}

/* Column sums of dout (N,OC) added to dbias (OC). Each thread owns a block of
 * columns, so the sum needs no reduction step and stays deterministic. */
static void bias_backward(float *dbias, const float *dout, int ldd, int N, int OC)
{
    #pragma omp parallel for schedule(static)
    for (int o0 = 0; o0 < OC; o0 += 64) {
        int o1 = o0 + 64 < OC ? o0 + 64 : OC;
        float acc[64] = {0};
        for (int n = 0; n < N; n++) {
            const float *row = dout + (size_t)n * ldd;
            for (int o = o0; o < o1; o++) acc[o - o0] += row[o];
        }
        for (int o = o0; o < o1; o++) dbias[o] += acc[o - o0];
    }
}

void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, int ldd,
                     const float *inp, const float *weight, weight_layout lay, int N, int C,
                     int OC, int accumulate)
{
    float beta = accumulate ? 1.0f : 0.0f;
    /* the weight's gradient first: then dinp may be inp */
    if (lay == W_OUT_IN) {
        /* dW (OC,C) += dout^T inp; dinp (N,C) = dout (N,OC) W (OC,C) */
        if (dweight) tensor_gemm(1, 0, OC, C, N, 1.0f, dout, ldd, inp, C, 1.0f, dweight, C);
        if (dinp) tensor_gemm(0, 0, N, C, OC, 1.0f, dout, ldd, weight, C, beta, dinp, C);
    } else {
        /* dW (C,OC) += inp^T dout, W (C,OC); dinp (N,C) = dout (N,OC) W^T */
        if (dweight) tensor_gemm(1, 0, C, OC, N, 1.0f, inp, C, dout, ldd, 1.0f, dweight, OC);
        if (dinp) tensor_gemm(0, 1, N, C, OC, 1.0f, dout, ldd, weight, OC, beta, dinp, C);
    }
    if (dbias) bias_backward(dbias, dout, ldd, N, OC);
}

status_t linear_forward_bf16(float *out, int ldo, const bf16 *inp_bf, const bf16 *w_bf, const float *bias,
                             weight_layout lay, int N, int C, int OC)
{
    int t = lay == W_OUT_IN;
    if (bias) return tensor_gemm_bf16_bias(0, t, N, OC, C, inp_bf, C, w_bf, t ? C : OC, bias, out, ldo);
    return tensor_gemm_bf16(0, t, N, OC, C, inp_bf, C, w_bf, t ? C : OC, 0.0f, out, ldo);
}

status_t linear_forward_bf16_out16(bf16 *out, int ldo, const bf16 *inp_bf, const bf16 *w_bf, weight_layout lay, int N,
                                   int C, int OC)
{
    if (lay == W_OUT_IN) return tensor_gemm_bf16_out16(0, 1, N, OC, C, inp_bf, C, w_bf, C, out, ldo);
    return tensor_gemm_bf16_out16(0, 0, N, OC, C, inp_bf, C, w_bf, OC, out, ldo);
}

/* bias_backward of a bf16 dout. */
static void bias_backward_bf16(float *dbias, const bf16 *dout, int ldd, int N, int OC)
{
    #pragma omp parallel for schedule(static)
    for (int o0 = 0; o0 < OC; o0 += 64) {
        int o1 = o0 + 64 < OC ? o0 + 64 : OC;
        float acc[64] = {0};
        for (int n = 0; n < N; n++) {
            const bf16 *row = dout + (size_t)n * ldd;
            for (int o = o0; o < o1; o++) acc[o - o0] += bf16_value(row[o]);
        }
        for (int o = o0; o < o1; o++) dbias[o] += acc[o - o0];
    }
}

status_t linear_backward_bf16(float *dinp, float *dweight, float *dbias, const float *dout, const bf16 *dout_bf,
                              int ldd, const bf16 *inp_bf, const bf16 *w_bf, weight_layout lay, int N, int C,
                              int OC, int accumulate)
{
    float beta = accumulate ? 1.0f : 0.0f;
    if (lay == W_OUT_IN) {
        if (dinp) TRY(tensor_gemm_bf16(0, 0, N, C, OC, dout_bf, ldd, w_bf, C, beta, dinp, C));
        if (dweight) TRY(tensor_gemm_bf16(1, 0, OC, C, N, dout_bf, ldd, inp_bf, C, 1.0f, dweight, C));
    } else {
        if (dinp) TRY(tensor_gemm_bf16(0, 1, N, C, OC, dout_bf, ldd, w_bf, OC, beta, dinp, C));
        if (dweight) TRY(tensor_gemm_bf16(1, 0, C, OC, N, inp_bf, C, dout_bf, ldd, 1.0f, dweight, OC));
    }
    if (dbias && dout) bias_backward(dbias, dout, ldd, N, OC);
    else if (dbias) bias_backward_bf16(dbias, dout_bf, ldd, N, OC);
    return ST_OK;
}

/* tensor/bf16 — mixed precision: bfloat16 storage, conversions, and the
 * bf16 x bf16 -> fp32 GEMM through oneDNN.
 *
 * Owns: the CPU's bf16 capability, the fp32 <-> bf16 conversions (round to
 * nearest even, as PyTorch's .bfloat16()), the oneDNN engine, stream,
 * matmul primitives (one per shape, created on its first call and reused)
 * and their scratchpad.
 * Must not touch: MPI, models, files.
 *
 * bf16 keeps fp32's 8 exponent bits and 8 of its 24 significant bits: a
 * conversion's relative error is at most u = 2^-8 (round to nearest even),
 * so a product of two rounded operands is within ~2u of the exact one; sums
 * run in fp32 inside the GEMM. A K-term dot product of rounded operands then
 * differs from the exact one by at most (2u + u^2 + K 2^-24) sum|a_k b_k|
 * (the bound tests/unit/test_tensor_bf16.c checks).
 */
#ifndef MPILM_TENSOR_BF16_H
#define MPILM_TENSOR_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/status.h"
#include "tensor/tensor.h"

/* 1 when this CPU has bf16 dot-product instructions (AVX512-BF16 or
 * AMX-BF16). MPILM_CPU_BF16=0 (or 1) overrides the detection, for tests of
 * the fallback; *why receives a short reason for the start-up line. */
int bf16_cpu_supported(const char **why);

/* dst[i] = bf16(src[i]), round to nearest even (NaN stays NaN). Threaded. */
void bf16_from_f32(bf16 *dst, const float *src, size_t n);
/* dst[i] = float(src[i]) (exact). Threaded. */
void bf16_to_f32(float *dst, const bf16 *src, size_t n);
/* One value each way (inline, so loops over them vectorise). */
static inline bf16 bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (bf16)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}

static inline float bf16_value(bf16 x)
{
    uint32_t u = (uint32_t)x << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- fp32 as a bf16 pair -------------------------------------------------
 * A float's 32 bits held as two 16-bit halves (a bf16 training state): hi is
 * the float rounded to bf16 -- the GEMMs' weight, no separate copy -- and lo
 * the low 16 bits of the float, so join(split(x)) == x bit for bit. hi
 * rounds to nearest with ties (low half exactly 0x8000) toward the smaller
 * magnitude instead of to even: that is the one rounding for which hi and lo
 * determine the float (an even hi with low half 0x8000 would otherwise come
 * from two floats). It differs from bf16_round on 1 float in 65,536. NaN and
 * Inf round as their bits do (a non-finite master fails the step anyway). */
static inline void bf16_split_one(float x, bf16 *hi, uint16_t *lo)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    *lo = (uint16_t)u;
    *hi = (bf16)((u >> 16) + ((u & 0xFFFFu) > 0x8000u));
}

static inline float bf16_join_one(bf16 hi, uint16_t lo)
{
    uint32_t u = ((uint32_t)(uint16_t)(hi - (lo > 0x8000u)) << 16) | lo;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* hi[i], lo[i] = split(src[i]); dst[i] = join(hi[i], lo[i]). Threaded. */
void bf16_split(bf16 *hi, uint16_t *lo, const float *src, size_t n);
/* hi alone: how every stage rounds its weights for the GEMMs (a training
 * state's pairs and an evaluation's fp32 parameters give the same bf16). */
void bf16_split_hi(bf16 *hi, const float *src, size_t n);
void bf16_join(float *dst, const bf16 *hi, const uint16_t *lo, size_t n);
/* 1 when every hi[i] is finite (a finite float whose bf16 rounds to Inf is not). */
int bf16_all_finite(const bf16 *hi, size_t n);

/* embedding_slice_forward (tensor.h) of a word table held as bf16 pairs:
 * out row n = join(hi, lo) row ids[n] - v0 when it is in [0, nv), else 0. */
void embedding_slice_forward_split(float *out, const int32_t *ids, const bf16 *hi, const uint16_t *lo, int v0,
                                   int nv, int N, int C);

/* ---- pointwise kernels on activations kept in bf16 ------------------------
 * A bf16 stage keeps the FFN's pre-activation (and Llama's gate | up) and
 * attention's q | k | v in bf16 for backward, as autocast does: each value is
 * the fp32 kernel's on the input's bf16 value, in fp32. */

/* layernorm_forward's / rmsnorm_forward's output (tensor.h) in bf16, remade
 * from their input and the statistics they kept: bitwise their output
 * rounded to nearest even (a bf16 stage remakes the normalised input of the
 * QKV and FFN GEMMs in backward instead of keeping it). */
void layernorm_apply_bf16(bf16 *out, const float *inp, const float *mean, const float *rstd, const float *weight,
                          const float *bias, int N, int C);
void rmsnorm_apply_bf16(bf16 *out, const float *inp, const float *rstd, const float *weight, int N, int C);

/* out = bf16(gelu(inp)), n elements: the FFN's second GEMM input. */
void gelu_forward_bf16(bf16 *out, const bf16 *inp, size_t n, gelu_kind kind);
/* dinp = gelu'(inp) * dout (fp32; dinp may alias dout); out, when not NULL,
 * = bf16(gelu(inp)) in the same pass (bitwise gelu_forward_bf16's). */
void gelu_backward_bf16(float *dinp, bf16 *out, const bf16 *inp, const float *dout, size_t n, gelu_kind kind);
/* swiglu_forward / swiglu_backward (tensor.h) from bf16 gate and up; their
 * outputs rounded to bf16 (the GEMM inputs: the down projection's in
 * forward, d(gate | up) for the gate | up GEMM's backward). dgate, dup may
 * be gate, up (in place). */
void swiglu_forward_bf16(bf16 *out, int ldo, const bf16 *gate, const bf16 *up, int ld, int N, int F);
void swiglu_backward_bf16(bf16 *dgate, bf16 *dup, int ldd, const float *dout, int ldo, const bf16 *gate,
                          const bf16 *up, int ld, int N, int F);

/* Row-major C[M,N] (fp32, row stride ldc) = op(A) op(B) + beta C with
 * op(X) = X^T when tX; A and B are bf16 with row strides lda, ldb; the
 * products are summed in fp32. beta is 0 or 1. The first call of a shape
 * creates its oneDNN primitive (and may grow the shared scratchpad); later
 * calls of that shape allocate nothing. Not reentrant: call it from one
 * thread (it runs on the OpenMP threads of tensor_runtime). */
status_t tensor_gemm_bf16(int ta, int tb, int M, int N, int K, const bf16 *A, int lda, const bf16 *Bm, int ldb,
                   float beta, float *Cm, int ldc);

/* C = op(A) op(B) + bias, bias (N floats) added to every row by oneDNN as
 * it writes C (a linear layer's forward: no pass that fills C with the bias
 * first, no read of C by the GEMM). */
status_t tensor_gemm_bf16_bias(int ta, int tb, int M, int N, int K, const bf16 *A, int lda, const bf16 *Bm, int ldb,
                               const float *bias, float *Cm, int ldc);

/* C = op(A) op(B) (beta 0) rounded to bf16 (nearest even) by oneDNN as it
 * writes it: the bf16 head's logits, which the cross-entropy reads in bf16
 * as autocast's does (crossentropy_fused_bf16). */
status_t tensor_gemm_bf16_out16(int ta, int tb, int M, int N, int K, const bf16 *A, int lda, const bf16 *Bm, int ldb,
                                bf16 *Cm, int ldc);

/* The same GEMM with fp32 operands through oneDNN's f32 matmul (what
 * tensor.h's tensor_gemm runs for the linear layers in fp32). */
status_t tensor_gemm_onednn_f32(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *Bm, int ldb,
                         float beta, float *Cm, int ldc);
status_t tensor_gemm_onednn_f32_bias(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *Bm,
                                     int ldb, const float *bias, float *Cm, int ldc);

/* crossentropy_fused and the crossentropy_slice_* phases (tensor.h) over
 * bf16 logits (N, V or nv) row stride ld, with bias (V or nv, fp32; NULL:
 * none) added to each logit as it is read: the same arithmetic on those
 * values, except that the exponentials are computed again where the
 * gradient is written instead of being stored by sumexp (which then leaves
 * the logits as they are). The gradient overwrites the logits rounded to
 * bf16 (nearest even). */
double crossentropy_fused_bf16(bf16 *logits, int ld, const float *bias, const int32_t *targets, int N, int V,
                               float scale, float *row_loss, int *correct);
void crossentropy_slice_max_bf16(const bf16 *logits, int ld, const float *bias, int N, int nv, float *mx);
void crossentropy_slice_sumexp_bf16(const bf16 *logits, int ld, const float *bias, const int32_t *targets, int N,
                                    int v0, int nv, const float *mx, float *st);
double crossentropy_slice_grad_bf16(bf16 *logits, int ld, const float *bias, const int32_t *targets, int N, int v0,
                                    int nv, const float *mx, const float *st, float scale, float *row_loss,
                                    int *correct);

/* ---- linear layers in mixed precision --------------------------------------
 * The bf16 twins of linear_forward / linear_backward (tensor.h, same shapes,
 * layouts and accumulate rules): the operands are bf16 copies made by the
 * caller, outputs and gradients fp32. */

/* out (N,OC) row stride ldo = inp (N,C) W + bias; inp_bf (N,C) packed, w_bf
 * (OC,C) or (C,OC); bias (OC) fp32 or NULL. */
status_t linear_forward_bf16(float *out, int ldo, const bf16 *inp_bf, const bf16 *w_bf, const float *bias,
                             weight_layout lay, int N, int C, int OC);
/* out (N,OC) row stride ldo = inp W in bf16 (rounded as oneDNN writes it),
 * no bias: the bf16 head's logits (its bias is added as they are read). */
status_t linear_forward_bf16_out16(bf16 *out, int ldo, const bf16 *inp_bf, const bf16 *w_bf, weight_layout lay, int N,
                                   int C, int OC);
/* dout (N,OC) fp32 row stride ldd (for the bias gradient) and its bf16 copy
 * dout_bf with the same row stride; dinp (N,C) overwritten or accumulated,
 * may be NULL; dweight (fp32) and dbias accumulate, either may be NULL. dout NULL: the bias
 * gradient sums dout_bf (the bf16 head's, whose gradient exists only so). */
status_t linear_backward_bf16(float *dinp, float *dweight, float *dbias, const float *dout, const bf16 *dout_bf,
                              int ldd, const bf16 *inp_bf, const bf16 *w_bf, weight_layout lay, int N, int C,
                              int OC, int accumulate);

/* Primitives held (tests check that a repeated shape reuses one), and how
 * many were replaced because more than the table's 256 shapes came. */
int tensor_gemm_bf16_primitives(void);
uint64_t tensor_gemm_bf16_evictions(void);
/* Frees every primitive, the scratchpad, the stream and the engine. */
void tensor_gemm_bf16_shutdown(void);

#endif

/* tensor — the numerical kernels of mpilm: forward/backward pairs on plain
 * float arrays, GEMM through BLIS, the rest fused loops threaded with OpenMP.
 *
 * Owns: BLIS set-up (kernel set, threads), the fp32 GEMM (oneDNN's f32
 * matmul or BLIS; bf16 ones in tensor/bf16.h), linear layers, LayerNorm,
 * GELU, softmax-attention, embeddings, fused softmax cross-entropy, dropout.
 * Must not touch: MPI, models, files.
 *
 * Dimension letters (as everywhere in mpilm): B batch, T time (sequence),
 * C channels (d_model), OC output channels, NH heads, hs = C/NH head size,
 * V vocabulary, N rows (= B*T unless said otherwise).
 * Conventions (llm.c's): forward functions overwrite their outputs; backward
 * functions ACCUMULATE (+=) into parameter gradients, and into input
 * gradients where the comment says so, so residual branches and tied weights
 * need no special case. Nothing here allocates.
 */
#ifndef MPILM_TENSOR_TENSOR_H
#define MPILM_TENSOR_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "base/rng.h"
#include "base/status.h"

/* a bfloat16 value: the high 16 bits of a float (tensor/bf16.h) */
typedef uint16_t bf16;

/* ---- runtime: BLIS kernel set and threads ---------------------------------- */

typedef struct tensor_runtime {
    int threads;          /* threads per rank used by BLIS and OpenMP */
    char arch[32];        /* BLIS kernel set in use, e.g. "skx" */
    int arch_chosen;      /* 1: mpilm set it from the CPU features (BLIS_ARCH_TYPE unset) */
    char threads_origin[32]; /* "run.threads", "auto", "BLIS_NUM_THREADS", "OMP_NUM_THREADS" */
} tensor_runtime;

/* Chooses the BLIS kernel set and the thread count; call once before any
 * kernel. requested: run.threads (-1 = auto); local_ranks: ranks of this job on
 * this node (auto divides the usable cores among them). A user's
 * BLIS_ARCH_TYPE, BLIS_NUM_THREADS or OMP_NUM_THREADS wins. */
status_t tensor_runtime_init(int requested, int local_ranks, tensor_runtime *rt);

/* The GEMM rate this rank reaches (GFLOP/s): best of reps n^3 GEMMs after a
 * warm-up, through the linear layers' engine: fp32 (tensor_gemm) or, with use_bf16,
 * bf16 x bf16 -> fp32 (tensor_gemm_bf16). What MFU
 * is measured against (train/ caches it per machine). Set-up time only: it
 * allocates; 0 on failure. */
double tensor_gemm_peak_gflops(int use_bf16, int n, int reps);

/* ---- GEMM ------------------------------------------------------------------ */

/* Row-major C[M,N] = alpha * op(A) op(B) + beta * C, op = transpose when ta/tb.
 * lda, ldb, ldc are row strides. Uses the runtime's threads: oneDNN's f32
 * matmul when alpha is 1 and beta 0 or 1 (the linear layers), else BLIS. */
void tensor_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *Bm, int ldb, float beta, float *Cm, int ldc);
/* The same always through BLIS (benchmarks, tests). */
void tensor_gemm_blis(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *Bm, int ldb,
               float beta, float *Cm, int ldc);
/* BLIS on one thread, for calls from inside a parallel region. */
void tensor_gemm_1t(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *Bm, int ldb, float beta, float *Cm, int ldc);

/* ---- linear: out = inp W (+ bias) ---------------------------------------- */

typedef enum { W_OUT_IN = 0, W_IN_OUT = 1 } weight_layout; /* nn.Linear / Conv1D */

/* inp (N,C), weight (OC,C) or (C,OC), bias (OC) or NULL, out (N,OC) with row stride ldo. */
void linear_forward(float *out, int ldo, const float *inp, const float *weight,
                    const float *bias, weight_layout lay, int N, int C, int OC);
/* dout (N,OC) row stride ldd. dinp (N,C): overwritten (accumulate = 0) or
 * added to (1); may be NULL, or inp itself (the weight's gradient is made
 * first). dweight, dbias accumulate (either may be NULL). */
void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, int ldd,
                     const float *inp, const float *weight, weight_layout lay, int N, int C,
                     int OC, int accumulate);

/* ---- LayerNorm ------------------------------------------------------------ */

/* inp, out (N,C); mean, rstd (N) saved for backward; weight, bias (C). */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int N, int C, float eps);
/* out (N,C) = forward's output again from inp and its mean, rstd: bitwise
 * what layernorm_forward wrote (a pre-norm block remakes it in backward
 * rather than keeping it). */
void layernorm_apply(float *out, const float *inp, const float *mean, const float *rstd, const float *weight,
                     const float *bias, int N, int C);
/* dinp (N,C) accumulates; dweight, dbias accumulate. */
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean,
                        const float *rstd, int N, int C);

/* ---- GELU ------------------------------------------------------------------ */

typedef enum { GELU_ERF = 0, GELU_TANH = 1 } gelu_kind;

/* out = gelu(inp), n elements. */
void gelu_forward(float *out, const float *inp, size_t n, gelu_kind kind);
/* dinp = gelu'(inp) * dout (overwrites; dinp may alias dout); out, when not
 * NULL, = gelu(inp) again in the same pass (bitwise gelu_forward's: the
 * second linear's input for its weight gradient, made with the slope's erf
 * or tanh rather than by a second pass). */
void gelu_backward(float *dinp, float *out, const float *inp, const float *dout, size_t n, gelu_kind kind);

/* ---- attention ------------------------------------------------------------- */

/* qkv (B,T,3C): q | k | v on the channel axis, head h in columns [h*hs, (h+1)*hs)
 * of each. out (B,T,C). causal: key j > query i is masked; key_mask (B,T) or
 * NULL: key j of sequence b is masked when key_mask[b*T + j] == 0. Masked
 * weights are exactly 0. dropout_p > 0 drops probabilities with the mask of
 * (key, stream) (see dropout). No T x T probabilities are kept: forward
 * writes stat (B,NH,T,2: each row's softmax maximum and 1 / sum) and backward
 * recomputes the probabilities, bitwise as forward had them, from qkv and stat. */
typedef struct dropout_site {
    rng_key key;     /* rng_key_make(seed, RNG_DROPOUT) */
    uint64_t stream; /* unique per (step, sample block, layer, site) */
    float p;         /* 0 = off */
    /* attention only: the global index of head 0 of this call and the global
       head count (0, 0: the call's heads are all of them), so a head's mask
       is the same however the heads are split over tensor-parallel ranks */
    int head0, n_head;
} dropout_site;

/* out (B,T,C) from qkv (B,T,W): rows of q (C = NH hs) | k | v (NKV hs each,
 * W = C + 2 NKV hs); query head h attends with kv head h / (NH / NKV)
 * (grouped-query attention; NKV = NH: multi-head, W = 3C). stat (B,NH,T,2)
 * kept for backward. half = 1 (a bf16 stage, on a CPU with AVX512-BF16):
 * the GEMMs q k^T, P v and those of backward take bf16-rounded operands and
 * sum in fp32; softmax, its statistics and dropout stay fp32. qkv_bf, when
 * not NULL, is q | k | v in bf16 and read instead of qkv (which may be NULL):
 * a bf16 stage keeps them so, and the result is bitwise that of qkv holding
 * the same values. Each thread works in a buffer of its own (the pair's
 * probabilities; the head's q | k | v widened from qkv_bf), made on its first
 * call and kept (tensor/internal.h thread_buffer: later calls of the same
 * shape allocate nothing); the calls fail only when it cannot be had. */
status_t attention_forward_gqa(float *out, float *stat, const float *qkv, const bf16 *qkv_bf,
                               const int32_t *key_mask, int causal, dropout_site drop, int B, int T, int C, int NH,
                               int NKV, int half);
/* dqkv (same rows as qkv) overwritten, given d(out) and forward's qkv (or
 * qkv_bf), stat, key_mask, causal, drop and half; a kv head's d(k), d(v) sum
 * over its query heads. */
status_t attention_backward_gqa(float *dqkv, const float *dout, const float *qkv, const bf16 *qkv_bf,
                                const float *stat, const int32_t *key_mask, int causal, dropout_site drop, int B,
                                int T, int C, int NH, int NKV, int half);
/* Multi-head attention: NKV = NH, rows of 3C. */
static inline status_t attention_forward(float *out, float *stat, const float *qkv, const bf16 *qkv_bf,
                                         const int32_t *key_mask, int causal, dropout_site drop, int B, int T, int C,
                                         int NH, int half)
{
    return attention_forward_gqa(out, stat, qkv, qkv_bf, key_mask, causal, drop, B, T, C, NH, NH, half);
}
static inline status_t attention_backward(float *dqkv, const float *dout, const float *qkv, const bf16 *qkv_bf,
                                          const float *stat, const int32_t *key_mask, int causal, dropout_site drop,
                                          int B, int T, int C, int NH, int half)
{
    return attention_backward_gqa(dqkv, dout, qkv, qkv_bf, stat, key_mask, causal, drop, B, T, C, NH, NH, half);
}

/* ---- Llama-style decoder kernels (tensor/llama.c) ----------------------------- */

/* out (N,C) = inp / sqrt(mean(inp^2) + eps) * weight; rstd (N) kept for backward. */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps);
/* out (N,C) = forward's output again from inp and rstd (bitwise the same). */
void rmsnorm_apply(float *out, const float *inp, const float *rstd, const float *weight, int N, int C);
/* dinp += d(inp), dweight += d(weight), given dout and forward's inp and rstd. */
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int N, int C);
/* cs (T, hs): per position t, cos then sin of t / theta^(2i/hs), i < hs/2, as
 * transformers' LlamaRotaryEmbedding makes them (float32). */
void rope_table(float *cs, int T, int hs, float theta);
/* Rotary embedding in place on heads [0, heads) of each row of x (B*T rows of
 * stride ld, position = row % T), rotate-half pairing (i, i + hs/2). */
void rope_forward(float *x, int ld, int B, int T, int heads, int hs, const float *cs);
/* The gradient through rope_forward, in place (the inverse rotation). */
void rope_backward(float *dx, int ld, int B, int T, int heads, int hs, const float *cs);
/* out = silu(gate) * up, N rows of F (gate and up rows of stride ld, out ldo). */
void swiglu_forward(float *out, int ldo, const float *gate, const float *up, int ld, int N, int F);
/* dgate, dup (stride ldd) overwritten, given dout (stride ldo) and forward's
 * gate and up; dgate, dup may be gate, up (in place, ldd = ld). */
void swiglu_backward(float *dgate, float *dup, int ldd, const float *dout, int ldo, const float *gate,
                     const float *up, int ld, int N, int F);

/* ---- dropout ---------------------------------------------------------------- */

/* out = inp * mask / (1-p) with mask regenerated from (key, stream, index), so
 * backward needs no stored mask. out may alias inp. p = 0: copy. */
void dropout_forward(float *out, const float *inp, size_t n, dropout_site d);
/* dinp = dout * mask / (1-p); dinp may alias dout. */
void dropout_backward(float *dinp, const float *dout, size_t n, dropout_site d);
/* out += dropout(inp): the residual add of a dropped branch in one pass. */
void dropout_add_forward(float *out, const float *res, const float *inp, size_t n,
                         dropout_site d);

/* ---- embeddings ------------------------------------------------------------ */

/* out (B*T,C) = wte[ids] + wpe[t] (wpe may be NULL) + wtt[types] (wtt may be NULL). */
void embedding_forward(float *out, const int32_t *ids, const int32_t *types, const float *wte,
                       const float *wpe, const float *wtt, int B, int T, int C);
/* dwte, dwpe, dwtt accumulate (each may be NULL). */
void embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout,
                        const int32_t *ids, const int32_t *types, int B, int T, int C);
/* A vocabulary slice [v0, v0 + nv) of the word embedding, wte (nv,C):
 * out (N,C) = wte[ids - v0] for ids in the slice, 0 for the others. */
void embedding_slice_forward(float *out, const int32_t *ids, const float *wte, int v0, int nv,
                             int N, int C);
/* dwte (nv,C) accumulates the rows of ids in the slice. */
void embedding_slice_backward(float *dwte, const float *dout, const int32_t *ids, int v0, int nv,
                              int N, int C);
/* out (B*T,C) += wpe[t] (wpe may be NULL) + wtt[types] (wtt may be NULL): the
 * rest of embedding_forward after a word lookup, same rounding order. */
void embedding_add_positions(float *out, const int32_t *types, const float *wpe, const float *wtt,
                             int B, int T, int C);
/* pe (P,C): the sinusoidal table of "Attention is all you need". */
void sinusoidal_positions(float *pe, int P, int C);

/* ---- cross-entropy, fused with softmax ------------------------------------ */

/* logits (N,V) row stride ld, overwritten by scale * d(loss_n)/d(logits_n)
 * (softmax minus one-hot); rows whose target is negative (-100) get zero
 * gradient and loss. row_loss (N) receives each row's loss. Returns the SUM
 * of the row losses; *correct (may be NULL) gains the rows whose argmax is the
 * target. Targets >= V must be rejected by the caller. */
double crossentropy_fused(float *logits, int ld, const int32_t *targets, int N, int V,
                          float scale, float *row_loss, int *correct);

/* The same over a vocabulary split into slices (a vocab-parallel head): this
 * rank's logits (N,nv) are columns [v0, v0 + nv) of the full (N,V). Three
 * phases, the caller reducing over the slices' ranks between them:
 *   1. crossentropy_slice_max: mx[n] = the slice's row max (-inf if nv = 0);
 *      the caller takes the max over the group;
 *   2. crossentropy_slice_sumexp: logits <- exp(logits - mx); st[2n] = their
 *      sum, st[2n+1] = the target's logit when this slice holds it, else 0;
 *      the caller sums st over the group;
 *   3. crossentropy_slice_grad: logits <- scale * (softmax - one-hot); returns
 *      the sum of the row losses log(sum) - (target logit - mx) (every rank
 *      gets the whole loss); row_loss (N); *correct gains the rows whose
 *      target logit is the maximum.
 * Rows with a negative target get zero gradient and loss. */
void crossentropy_slice_max(const float *logits, int ld, int N, int nv, float *mx);
void crossentropy_slice_sumexp(float *logits, int ld, const int32_t *targets, int N, int v0, int nv,
                               const float *mx, float *st);
double crossentropy_slice_grad(float *logits, int ld, const int32_t *targets, int N, int v0, int nv,
                               const float *mx, const float *st, float scale, float *row_loss,
                               int *correct);

#endif

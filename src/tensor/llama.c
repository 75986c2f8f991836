/* tensor/llama — the kernels of the Llama-style decoder family: RMSNorm,
 * rotary position embeddings (transformers' rotate-half form) and SwiGLU.
 * Checked against PyTorch (tests/reference/make_fixtures.py, llama_kernels)
 * and by finite differences (tests/unit/test_tensor_llama.c). */
#include <math.h>

#include "tensor/bf16.h"
#include "tensor/internal.h"

/* One RMSNorm output: forward and the remakes share it (bitwise the same). */
static inline float rms_value(float x, float r, float w) { return x * r * w; }

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        float ss = 0.0f;
        #pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        rstd[n] = r;
        #pragma omp simd
        for (int c = 0; c < C; c++) y[c] = rms_value(x[c], r, weight[c]);
    }
}

void rmsnorm_apply(float *out, const float *inp, const float *rstd, const float *weight, int N, int C)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        float r = rstd[n];
        #pragma omp simd
        for (int c = 0; c < C; c++) y[c] = rms_value(x[c], r, weight[c]);
    }
}

void rmsnorm_apply_bf16(bf16 *out, const float *inp, const float *rstd, const float *weight, int N, int C)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        bf16 *y = out + (size_t)n * C;
        float r = rstd[n];
        #pragma omp simd
        for (int c = 0; c < C; c++) y[c] = bf16_round(rms_value(x[c], r, weight[c]));
    }
}

/* y = x r w with r = (mean(x^2) + eps)^-1/2: dx = r (w dy) - x r^3 mean(x w dy),
 * dw = sum over rows of x r dy. dweight is summed over the rows in a fixed
 * order (deterministic), then added. */
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int N, int C)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C, r = rstd[n], dot = 0.0f;
        #pragma omp simd reduction(+ : dot)
        for (int c = 0; c < C; c++) dot += x[c] * weight[c] * dy[c];
        float k = r * r * r * dot / (float)C;
        #pragma omp simd
        for (int c = 0; c < C; c++) dx[c] += r * weight[c] * dy[c] - x[c] * k;
    }
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float s = 0.0f;
        for (int n = 0; n < N; n++) s += inp[(size_t)n * C + c] * rstd[n] * dout[(size_t)n * C + c];
        dweight[c] += s;
    }
}

void rope_table(float *cs, int T, int hs, float theta)
{
    int half = hs / 2;
    for (int i = 0; i < half; i++) {
        /* as transformers: 1 / theta^(2i / hs) in float32, angle = t * inv_freq in float32 */
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)hs);
        for (int t = 0; t < T; t++) {
            float a = (float)t * inv_freq;
            cs[(size_t)t * hs + i] = cosf(a);
            cs[(size_t)t * hs + half + i] = sinf(a);
        }
    }
}

/* Rotates heads [0, heads) of each row in place: for pair (i, i + hs/2) at
 * position t, (a, b) -> (a cos - b sin, b cos + a sin); sign = -1 rotates
 * back (the transpose: backward). */
static void rope_rotate(float *x, int ld, int B, int T, int heads, int hs, const float *cs, float sign)
{
    int half = hs / 2;
    #pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        const float *c = cs + (size_t)(bt % T) * hs, *s = c + half;
        float *row = x + (size_t)bt * ld;
        for (int h = 0; h < heads; h++) {
            float *a = row + (size_t)h * hs, *b = a + half;
            #pragma omp simd
            for (int i = 0; i < half; i++) {
                float ai = a[i], bi = b[i], si = sign * s[i];
                a[i] = ai * c[i] - bi * si;
                b[i] = bi * c[i] + ai * si;
            }
        }
    }
}

void rope_forward(float *x, int ld, int B, int T, int heads, int hs, const float *cs)
{
    rope_rotate(x, ld, B, T, heads, hs, cs, 1.0f);
}

void rope_backward(float *dx, int ld, int B, int T, int heads, int hs, const float *cs)
{
    rope_rotate(dx, ld, B, T, heads, hs, cs, -1.0f);
}

static inline float sigmoid_fast(float g) { return 1.0f / (1.0f + exp_fast(-g)); }

/* silu(g) u and its partial derivatives, y = g s(g) u:
 * dg = dy u s(g) (1 + g (1 - s(g))), du = dy g s(g). */
static inline float swiglu(float g, float u) { return g * sigmoid_fast(g) * u; }
static inline void swiglu_grad(float g, float u, float dy, float *dg, float *du)
{
    float s = sigmoid_fast(g);
    *dg = dy * u * s * (1.0f + g * (1.0f - s));
    *du = dy * g * s;
}

void swiglu_forward(float *out, int ldo, const float *gate, const float *up, int ld, int N, int F)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = gate + (size_t)n * ld, *u = up + (size_t)n * ld;
        float *y = out + (size_t)n * ldo;
        #pragma omp simd
        for (int f = 0; f < F; f++) y[f] = swiglu(g[f], u[f]);
    }
}

void swiglu_backward(float *dgate, float *dup, int ldd, const float *dout, int ldo, const float *gate,
                     const float *up, int ld, int N, int F)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = gate + (size_t)n * ld, *u = up + (size_t)n * ld, *dy = dout + (size_t)n * ldo;
        float *dg = dgate + (size_t)n * ldd, *du = dup + (size_t)n * ldd;
        #pragma omp simd
        for (int f = 0; f < F; f++) swiglu_grad(g[f], u[f], dy[f], &dg[f], &du[f]);
    }
}

void swiglu_forward_bf16(bf16 *out, int ldo, const bf16 *gate, const bf16 *up, int ld, int N, int F)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const bf16 *g = gate + (size_t)n * ld, *u = up + (size_t)n * ld;
        bf16 *y = out + (size_t)n * ldo;
        #pragma omp simd
        for (int f = 0; f < F; f++) y[f] = bf16_round(swiglu(bf16_value(g[f]), bf16_value(u[f])));
    }
}

void swiglu_backward_bf16(bf16 *dgate, bf16 *dup, int ldd, const float *dout, int ldo, const bf16 *gate,
                          const bf16 *up, int ld, int N, int F)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const bf16 *g = gate + (size_t)n * ld, *u = up + (size_t)n * ld;
        const float *dy = dout + (size_t)n * ldo;
        bf16 *dg = dgate + (size_t)n * ldd, *du = dup + (size_t)n * ldd;
        #pragma omp simd
        for (int f = 0; f < F; f++) {
            float a, b;
            swiglu_grad(bf16_value(g[f]), bf16_value(u[f]), dy[f], &a, &b);
            dg[f] = bf16_round(a);
            du[f] = bf16_round(b);
        }
    }
}

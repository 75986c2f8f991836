/* tensor/embedding — token/position/segment embeddings and the fused softmax
 * cross-entropy of the output heads. */
#include <math.h>
#include <string.h>

#include "tensor/bf16.h"
#include "tensor/internal.h"

void embedding_forward(float *out, const int32_t *ids, const int32_t *types, const float *wte,
                       const float *wpe, const float *wtt, int B, int T, int C)
{
    #pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        float *o = out + (size_t)bt * C;
        const float *w = wte + (size_t)ids[bt] * C;
        const float *p = wpe ? wpe + (size_t)(bt % T) * C : NULL;
        const float *s = wtt ? wtt + (size_t)types[bt] * C : NULL;
        for (int c = 0; c < C; c++) o[c] = w[c] + (p ? p[c] : 0.0f) + (s ? s[c] : 0.0f);
    }
}

/* Scatter-add. Threads own blocks of channels, so rows that share a token id
 * never race and the sums are in a fixed order. */
void embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout,
                        const int32_t *ids, const int32_t *types, int B, int T, int C)
{
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += 16) {
        int c1 = c0 + 16 < C ? c0 + 16 : C;
        for (int bt = 0; bt < B * T; bt++) {
            const float *d = dout + (size_t)bt * C;
            for (int c = c0; c < c1; c++) {
                if (dwte) dwte[(size_t)ids[bt] * C + c] += d[c];
                if (dwpe) dwpe[(size_t)(bt % T) * C + c] += d[c];
                if (dwtt) dwtt[(size_t)types[bt] * C + c] += d[c];
            }
        }
    }
}

void embedding_slice_forward(float *out, const int32_t *ids, const float *wte, int v0, int nv,
                             int N, int C)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * C;
        int v = ids[n] - v0;
        if (v >= 0 && v < nv) memcpy(o, wte + (size_t)v * C, (size_t)C * sizeof(float));
        else memset(o, 0, (size_t)C * sizeof(float));
    }
}

void embedding_slice_forward_split(float *out, const int32_t *ids, const bf16 *hi, const uint16_t *lo, int v0,
                                   int nv, int N, int C)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * C;
        int v = ids[n] - v0;
        if (v >= 0 && v < nv) {
            const bf16 *h = hi + (size_t)v * C;
            const uint16_t *l = lo + (size_t)v * C;
            #pragma omp simd
            for (int c = 0; c < C; c++) o[c] = bf16_join_one(h[c], l[c]);
        } else {
            memset(o, 0, (size_t)C * sizeof(float));
        }
    }
}

void embedding_slice_backward(float *dwte, const float *dout, const int32_t *ids, int v0, int nv,
                              int N, int C)
{
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += 16) {
        int c1 = c0 + 16 < C ? c0 + 16 : C;
        for (int n = 0; n < N; n++) {
            int v = ids[n] - v0;
            if (v < 0 || v >= nv) continue;
            for (int c = c0; c < c1; c++) dwte[(size_t)v * C + c] += dout[(size_t)n * C + c];
        }
    }
}

void embedding_add_positions(float *out, const int32_t *types, const float *wpe, const float *wtt,
                             int B, int T, int C)
{
    #pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        float *o = out + (size_t)bt * C;
        const float *p = wpe ? wpe + (size_t)(bt % T) * C : NULL;
        const float *s = wtt ? wtt + (size_t)types[bt] * C : NULL;
        for (int c = 0; c < C; c++) o[c] = o[c] + (p ? p[c] : 0.0f) + (s ? s[c] : 0.0f);
    }
}

void sinusoidal_positions(float *pe, int P, int C)
{
    for (int t = 0; t < P; t++)
        for (int i = 0; i < C; i += 2) {
            double angle = t / pow(10000.0, (double)i / C);
            pe[(size_t)t * C + i] = (float)sin(angle);
            if (i + 1 < C) pe[(size_t)t * C + i + 1] = (float)cos(angle);
        }
}

/* A row's loss, -log softmax at the target: log(sum of exp(x - max)) - (x_y - max). */
static inline float ce_row_loss(float sum, float xy, float mx) { return logf(sum) - (xy - mx); }

/* The cross-entropy kernels' end: the hits counted, the row losses summed in
 * row order (deterministic, whatever the threads). */
static double ce_total(const float *row_loss, int N, int hits, int *correct)
{
    if (correct) *correct += hits;
    double loss = 0.0;
    for (int n = 0; n < N; n++) loss += row_loss[n];
    return loss;
}

/* One pass for the max, one for the sum of exponentials, one writing the
 * gradient over the logits: the probabilities are never stored apart. The
 * max and the sum are SIMD reductions (a fixed order per row: deterministic,
 * whatever the threads). Row losses go to row_loss and are summed in row
 * order. */
double crossentropy_fused(float *logits, int ld, const int32_t *targets, int N, int V,
                          float scale, float *row_loss, int *correct)
{
    int hits = 0;
    #pragma omp parallel for schedule(static) reduction(+ : hits)
    for (int n = 0; n < N; n++) {
        float *row = logits + (size_t)n * ld;
        int y = targets[n];
        row_loss[n] = 0.0f;
        if (y < 0) {
            memset(row, 0, (size_t)V * sizeof(float));
            continue;
        }
        float mx = row[0];
        #pragma omp simd reduction(max : mx)
        for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        float xy = row[y], sum = 0.0f;
        /* the argmax (the first maximum) is the target: only rows whose
           target holds the maximum look for an earlier one */
        int first = xy == mx;
        for (int v = 0; first && v < y; v++) first = row[v] != mx;
        hits += first;
        #pragma omp simd reduction(+ : sum)
        for (int v = 0; v < V; v++) {
            row[v] = exp_fast(row[v] - mx);
            sum += row[v];
        }
        row_loss[n] = ce_row_loss(sum, xy, mx);
        float k = scale / sum;
        for (int v = 0; v < V; v++) row[v] *= k;
        row[y] -= scale;
    }
    return ce_total(row_loss, N, hits, correct);
}

void crossentropy_slice_max(const float *logits, int ld, int N, int nv, float *mx)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *row = logits + (size_t)n * ld;
        float m = -INFINITY;
        #pragma omp simd reduction(max : m)
        for (int v = 0; v < nv; v++) m = row[v] > m ? row[v] : m;
        mx[n] = m;
    }
}

void crossentropy_slice_sumexp(float *logits, int ld, const int32_t *targets, int N, int v0, int nv,
                               const float *mx, float *st)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *row = logits + (size_t)n * ld;
        int y = targets[n] - v0;
        st[2 * n] = st[2 * n + 1] = 0.0f;
        if (targets[n] < 0) continue;
        if (y >= 0 && y < nv) st[2 * n + 1] = row[y];
        float sum = 0.0f, m = mx[n];
        #pragma omp simd reduction(+ : sum)
        for (int v = 0; v < nv; v++) {
            row[v] = exp_fast(row[v] - m);
            sum += row[v];
        }
        st[2 * n] = sum;
    }
}

double crossentropy_slice_grad(float *logits, int ld, const int32_t *targets, int N, int v0, int nv,
                               const float *mx, const float *st, float scale, float *row_loss,
                               int *correct)
{
    int hits = 0;
    #pragma omp parallel for schedule(static) reduction(+ : hits)
    for (int n = 0; n < N; n++) {
        float *row = logits + (size_t)n * ld;
        row_loss[n] = 0.0f;
        if (targets[n] < 0) {
            memset(row, 0, (size_t)nv * sizeof(float));
            continue;
        }
        float sum = st[2 * n], xy = st[2 * n + 1];
        hits += xy >= mx[n];
        row_loss[n] = ce_row_loss(sum, xy, mx[n]);
        float k = scale / sum;
        for (int v = 0; v < nv; v++) row[v] *= k;
        int y = targets[n] - v0;
        if (y >= 0 && y < nv) row[y] -= scale;
    }
    return ce_total(row_loss, N, hits, correct);
}

/* ---- cross-entropy over bf16 logits ---------------------------------------
 * A bf16 stage's head writes its logits in bf16 (as autocast's linear does)
 * and these kernels read them, add the bias (if any) in fp32, and compute as
 * the fp32 kernels above. The gradient is rounded to bf16 in place: the GEMMs
 * of the head's backward read it so. A row is read in tiles widened to fp32
 * on the stack, so every loop is the fp32 kernels' (vectorised) loop. The
 * exponentials of a row are kept in fp32 between the sum and the gradient in
 * a buffer of the thread's (V floats, L1/L2-resident) when the whole row is
 * one thread's (crossentropy_fused_bf16; 256 x 8192 logits 2.92 -> 1.36 ms);
 * the slices of a tensor-parallel row, whose passes a reduction separates,
 * compute them again where the gradient is written (the same exp_fast of the
 * same value, so the same bits either way). */
enum { CE_TILE = 1024 };

/* t[0, n) = the logits [v0, v0 + n) of row, widened, plus the bias. */
static inline void ce_widen(float *t, const bf16 *row, const float *bias, int v0, int n)
{
    if (bias) {
        #pragma omp simd
        for (int i = 0; i < n; i++) t[i] = bf16_value(row[v0 + i]) + bias[v0 + i];
    } else {
        #pragma omp simd
        for (int i = 0; i < n; i++) t[i] = bf16_value(row[v0 + i]);
    }
}

static inline float ce_logit(const bf16 *row, const float *bias, int v)
{
    return bias ? bf16_value(row[v]) + bias[v] : bf16_value(row[v]);
}

static float ce_row_max(const bf16 *row, const float *bias, int nv)
{
    float t[CE_TILE], mx = -INFINITY;
    for (int v0 = 0; v0 < nv; v0 += CE_TILE) {
        int n = nv - v0 < CE_TILE ? nv - v0 : CE_TILE;
        ce_widen(t, row, bias, v0, n);
        #pragma omp simd reduction(max : mx)
        for (int i = 0; i < n; i++) mx = t[i] > mx ? t[i] : mx;
    }
    return mx;
}

/* The sum of exp(x - mx) over the row's nv entries; with e, the
 * exponentials are also left in e[0, nv). */
static float ce_row_sumexp(const bf16 *row, const float *bias, int nv, float mx, float *e)
{
    float t[CE_TILE], sum = 0.0f;
    for (int v0 = 0; v0 < nv; v0 += CE_TILE) {
        int n = nv - v0 < CE_TILE ? nv - v0 : CE_TILE;
        ce_widen(t, row, bias, v0, n);
        if (e) {
            float *ev = e + v0;
            #pragma omp simd reduction(+ : sum)
            for (int i = 0; i < n; i++) {
                ev[i] = exp_fast(t[i] - mx);
                sum += ev[i];
            }
        } else {
            #pragma omp simd reduction(+ : sum)
            for (int i = 0; i < n; i++) sum += exp_fast(t[i] - mx);
        }
    }
    return sum;
}

/* The gradient row scale * (exp(x - mx) / sum - one-hot(y)) rounded to
 * bf16 in place, over nv entries (y outside [0, nv): no one-hot term); the
 * exponentials from e (ce_row_sumexp's), or made again when e is NULL. */
static void ce_row_grad(bf16 *row, const float *bias, int nv, int y, float mx, float sum, float scale,
                        const float *e)
{
    float t[CE_TILE], k = scale / sum;
    int hot = y >= 0 && y < nv;
    float ey = !hot ? 0.0f : e ? e[y] : exp_fast(ce_logit(row, bias, y) - mx); /* before the row is overwritten */
    for (int v0 = 0; v0 < nv; v0 += CE_TILE) {
        int n = nv - v0 < CE_TILE ? nv - v0 : CE_TILE;
        if (e) {
            const float *ev = e + v0;
            #pragma omp simd
            for (int i = 0; i < n; i++) row[v0 + i] = bf16_round(ev[i] * k);
            continue;
        }
        ce_widen(t, row, bias, v0, n);
        #pragma omp simd
        for (int i = 0; i < n; i++) t[i] = exp_fast(t[i] - mx) * k;
        #pragma omp simd
        for (int i = 0; i < n; i++) row[v0 + i] = bf16_round(t[i]);
    }
    if (hot) row[y] = bf16_round(ey * k - scale);
}

double crossentropy_fused_bf16(bf16 *logits, int ld, const float *bias, const int32_t *targets, int N, int V,
                               float scale, float *row_loss, int *correct)
{
    int hits = 0;
    #pragma omp parallel for schedule(static) reduction(+ : hits)
    for (int n = 0; n < N; n++) {
        bf16 *row = logits + (size_t)n * ld;
        int y = targets[n];
        row_loss[n] = 0.0f;
        if (y < 0) {
            memset(row, 0, (size_t)V * sizeof(bf16));
            continue;
        }
        float mx = ce_row_max(row, bias, V), xy = ce_logit(row, bias, y);
        /* the argmax (the first maximum) is the target: only rows whose
           target holds the maximum look for an earlier one */
        int first = xy == mx;
        for (int v = 0; first && v < y; v++) first = ce_logit(row, bias, v) != mx;
        hits += first;
        float *e = thread_buffer(TB_CROSSENTROPY, (size_t)V * sizeof(float)); /* NULL: made again */
        float sum = ce_row_sumexp(row, bias, V, mx, e);
        row_loss[n] = ce_row_loss(sum, xy, mx);
        ce_row_grad(row, bias, V, y, mx, sum, scale, e);
    }
    return ce_total(row_loss, N, hits, correct);
}

void crossentropy_slice_max_bf16(const bf16 *logits, int ld, const float *bias, int N, int nv, float *mx)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) mx[n] = ce_row_max(logits + (size_t)n * ld, bias, nv);
}

void crossentropy_slice_sumexp_bf16(const bf16 *logits, int ld, const float *bias, const int32_t *targets, int N,
                                    int v0, int nv, const float *mx, float *st)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const bf16 *row = logits + (size_t)n * ld;
        int y = targets[n] - v0;
        st[2 * n] = st[2 * n + 1] = 0.0f;
        if (targets[n] < 0) continue;
        if (y >= 0 && y < nv) st[2 * n + 1] = ce_logit(row, bias, y);
        st[2 * n] = ce_row_sumexp(row, bias, nv, mx[n], NULL);
    }
}

double crossentropy_slice_grad_bf16(bf16 *logits, int ld, const float *bias, const int32_t *targets, int N, int v0,
                                    int nv, const float *mx, const float *st, float scale, float *row_loss,
                                    int *correct)
{
    int hits = 0;
    #pragma omp parallel for schedule(static) reduction(+ : hits)
    for (int n = 0; n < N; n++) {
        bf16 *row = logits + (size_t)n * ld;
        row_loss[n] = 0.0f;
        if (targets[n] < 0) {
            memset(row, 0, (size_t)nv * sizeof(bf16));
            continue;
        }
        float sum = st[2 * n], xy = st[2 * n + 1];
        hits += xy >= mx[n];
        row_loss[n] = ce_row_loss(sum, xy, mx[n]);
        ce_row_grad(row, bias, nv, targets[n] - v0, mx[n], sum, scale, NULL);
    }
    return ce_total(row_loss, N, hits, correct);
}

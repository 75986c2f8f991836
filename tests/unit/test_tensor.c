/* tensor kernels: every backward against central finite differences of a
 * scalar loss L = sum(out * R) (R fixed random), accumulated in double. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/block_cyclic.h"
#include "tensor/internal.h"
#include "tensor/tensor.h"

static void fill(float *x, size_t n, uint64_t stream, float std)
{
    rng_fill_normal(rng_key_make(7, RNG_TEST), stream, std, x, n);
}

static float *vec(size_t n, uint64_t stream, float std)
{
    float *x = calloc(n ? n : 1, sizeof *x);
    if (stream) fill(x, n, stream, std);
    return x;
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* A kernel under test: forward writes ctx->out from the inputs. */
typedef struct fd_case {
    void (*forward)(struct fd_case *);
    float *out, *R;
    size_t n_out;
    void *ctx;
} fd_case;

static double fd_loss(fd_case *c)
{
    c->forward(c);
    return dot(c->out, c->R, c->n_out);
}

/* Compares grad (analytic) with central differences (L(x_i + h) -
 * L(x_i - h)) / 2h on every entry of x (a sample once lined up with one
 * attention channel and missed the others). Error |num - grad| / (|num| +
 * |grad| + 1e-2): truncation h^2 |L'''| / 6 plus the fp32 forward's rounding
 * and the fast exp/tanh/erf's approximation error over h (a smaller h, or
 * Richardson extrapolation, made it worse: the rounding term dominates).
 * Measured <= 1.4e-3 (attention with dropout), <= 1.1e-3 elsewhere; FD_TOL =
 * 4e-3, so a gradient off by 1% (error 5e-3) fails. */
#define FD_TOL 4e-3
static void fd_check(fd_case *c, float *x, const float *grad, size_t n, const char *what)
{
    float h = 1e-2f;
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = keep + h;
        double lp = fd_loss(c);
        x[i] = keep - h;
        double lm = fd_loss(c);
        x[i] = keep;
        double num = (lp - lm) / (2.0 * h);
        double err = fabs(num - grad[i]) / (fabs(num) + fabs(grad[i]) + 1e-2);
        if (err > worst) worst = err;
    }
    c->forward(c);
    cr_log_info("%s: worst relative error %.3g over %zu entries", what, worst, n);
    cr_expect(worst < FD_TOL, "%s: finite differences disagree (worst relative error %g, tolerance %g)", what, worst,
              FD_TOL);
}

TestSuite(tensor, .init = NULL);

static void setup(void) { tensor_runtime rt; tensor_runtime_init(1, 1, &rt); }

/* ---- linear ---- */
typedef struct { float *inp, *w, *b; int N, C, OC; weight_layout lay; } lin_ctx;
static void lin_fwd(fd_case *c)
{
    lin_ctx *k = c->ctx;
    linear_forward(c->out, k->OC, k->inp, k->w, k->b, k->lay, k->N, k->C, k->OC);
}

static void check_linear(weight_layout lay)
{
    setup();
    lin_ctx k = {.N = 5, .C = 7, .OC = 6, .lay = lay};
    k.inp = vec(35, 1, 1), k.w = vec(42, 2, 1), k.b = vec(6, 3, 1);
    fd_case c = {lin_fwd, vec(30, 0, 0), vec(30, 4, 1), 30, &k};
    float *dinp = vec(35, 5, 1), *dw = vec(42, 0, 0), *db = vec(6, 0, 0);
    float *dinp0 = vec(35, 5, 1);
    linear_forward(c.out, 6, k.inp, k.w, k.b, lay, 5, 7, 6);
    linear_backward(dinp, dw, db, c.R, 6, k.inp, k.w, lay, 5, 7, 6, 1);
    for (int i = 0; i < 35; i++) dinp[i] -= dinp0[i]; /* accumulate = 1 added to the old values */
    fd_check(&c, k.inp, dinp, 35, "linear dinp");
    fd_check(&c, k.w, dw, 42, "linear dweight");
    fd_check(&c, k.b, db, 6, "linear dbias");
    /* accumulate = 0 overwrites */
    float *dinp2 = vec(35, 9, 1);
    float *dw2 = vec(42, 0, 0), *db2 = vec(6, 0, 0);
    linear_backward(dinp2, dw2, db2, c.R, 6, k.inp, k.w, lay, 5, 7, 6, 0);
    for (int i = 0; i < 35; i++) cr_expect_float_eq(dinp2[i], dinp[i], 1e-5);
}

Test(tensor, linear_out_in_backward_matches_finite_differences) { check_linear(W_OUT_IN); }
Test(tensor, linear_in_out_backward_matches_finite_differences) { check_linear(W_IN_OUT); }

Test(tensor, gemm_transposes_match_naive_loops)
{
    setup();
    int M = 9, N = 11, K = 13;
    float *A = vec((size_t)M * K, 1, 1), *B = vec((size_t)K * N, 2, 1), *C = vec((size_t)M * N, 0, 0);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            /* op(A) is M x K: stored K x M when transposed */
            tensor_gemm(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, C, N);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double s = 0.0;
                    for (int k = 0; k < K; k++)
                        s += (double)(ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
                    cr_expect(fabs(s - C[i * N + j]) < 1e-4, "tensor_gemm(%d,%d)[%d,%d]", ta, tb, i, j);
                }
        }
}

/* ---- layernorm ---- */
typedef struct { float *inp, *w, *b, *mean, *rstd; int N, C; } ln_ctx;
static void ln_fwd(fd_case *c)
{
    ln_ctx *k = c->ctx;
    layernorm_forward(c->out, k->mean, k->rstd, k->inp, k->w, k->b, k->N, k->C, 1e-5f);
}

Test(tensor, layernorm_backward_matches_finite_differences)
{
    setup();
    ln_ctx k = {.N = 4, .C = 9};
    k.inp = vec(36, 1, 2), k.w = vec(9, 2, 1), k.b = vec(9, 3, 1), k.mean = vec(4, 0, 0), k.rstd = vec(4, 0, 0);
    for (int i = 0; i < 9; i++) k.inp[i] += 3.0f; /* a row with a large mean */
    fd_case c = {ln_fwd, vec(36, 0, 0), vec(36, 4, 1), 36, &k};
    float *dinp = vec(36, 0, 0), *dw = vec(9, 0, 0), *db = vec(9, 0, 0);
    ln_fwd(&c);
    layernorm_backward(dinp, dw, db, c.R, k.inp, k.w, k.mean, k.rstd, 4, 9);
    fd_check(&c, k.inp, dinp, 36, "layernorm dinp");
    fd_check(&c, k.w, dw, 9, "layernorm dweight");
    fd_check(&c, k.b, db, 9, "layernorm dbias");
}

Test(tensor, layernorm_output_is_normalised)
{
    setup();
    float *x = vec(64, 1, 5), *y = vec(64, 0, 0), *w = vec(64, 0, 0), *b = vec(64, 0, 0), m, r;
    for (int i = 0; i < 64; i++) w[i] = 1.0f;
    layernorm_forward(y, &m, &r, x, w, b, 1, 64, 1e-5f);
    double s = 0, s2 = 0;
    for (int i = 0; i < 64; i++) s += y[i], s2 += (double)y[i] * y[i];
    cr_expect(fabs(s / 64) < 1e-5 && fabs(s2 / 64 - 1.0) < 1e-3, "mean %g var %g", s / 64, s2 / 64);
}

/* ---- gelu ---- */
typedef struct { float *inp; size_t n; gelu_kind kind; } gelu_ctx;
static void gelu_fwd(fd_case *c) { gelu_ctx *k = c->ctx; gelu_forward(c->out, k->inp, k->n, k->kind); }

static void check_gelu(gelu_kind kind)
{
    setup();
    gelu_ctx k = {vec(50, 1, 2), 50, kind};
    fd_case c = {gelu_fwd, vec(50, 0, 0), vec(50, 2, 1), 50, &k};
    float *d = vec(50, 0, 0), *again = vec(50, 0, 0), *y = vec(50, 0, 0);
    gelu_backward(d, again, k.inp, c.R, 50, kind);
    fd_check(&c, k.inp, d, 50, kind == GELU_ERF ? "gelu erf" : "gelu tanh");
    /* the value made again in the same pass is the forward's, bit for bit */
    gelu_forward(y, k.inp, 50, kind);
    cr_expect(memcmp(y, again, 50 * sizeof(float)) == 0, "gelu kind %d: backward's value differs from forward's",
              (int)kind);
    float *d2 = vec(50, 0, 0);
    gelu_backward(d2, NULL, k.inp, c.R, 50, kind);
    cr_expect(memcmp(d, d2, 50 * sizeof(float)) == 0, "gelu kind %d: the slope depends on out", (int)kind);
}

Test(tensor, gelu_erf_backward_matches_finite_differences) { check_gelu(GELU_ERF); }
Test(tensor, gelu_tanh_backward_matches_finite_differences) { check_gelu(GELU_TANH); }

Test(tensor, gelu_forms_match_known_values)
{
    float x[3] = {-1.0f, 0.5f, 2.0f}, y[3], z[3];
    gelu_forward(y, x, 3, GELU_ERF);
    gelu_forward(z, x, 3, GELU_TANH);
    /* torch.nn.functional.gelu(x) and gelu(x, approximate='tanh') */
    cr_expect_float_eq(y[0], -0.15865526f, 1e-6);
    cr_expect_float_eq(y[2], 1.9544997f, 1e-6);
    cr_expect_float_eq(z[0], -0.15880801f, 1e-6);
    cr_expect_float_eq(z[1], 0.34571401f, 1e-6);
}

/* ---- attention ---- */
typedef struct { float *qkv, *stat; int32_t *mask; int causal, B, T, C, NH; dropout_site d; } att_ctx;
static void att_fwd(fd_case *c)
{
    att_ctx *k = c->ctx;
    attention_forward(c->out, k->stat, k->qkv, NULL, k->mask, k->causal, k->d, k->B, k->T, k->C, k->NH, 0);
}

/* T > 64 spans several blocks of query rows (the kernel's RB), whose dK and dV
 * contributions backward accumulates. */
static void check_attention(int causal, int masked, float p, int B, int T)
{
    setup();
    int C = 8, NH = 2;
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
    att_ctx k = {.qkv = vec(nq, 1, 1), .stat = vec((size_t)B * NH * T * 2, 0, 0),
                 .causal = causal, .B = B, .T = T, .C = C, .NH = NH};
    k.d.key = rng_key_make(3, RNG_DROPOUT);
    k.d.stream = 11;
    k.d.p = p;
    int32_t *mask = malloc((size_t)B * T * sizeof(int32_t));
    for (int i = 0; i < B * T; i++) mask[i] = !(i % T == 5 || i % T == 6 || (i % T) % 17 == 16);
    if (masked) k.mask = mask;
    fd_case c = {att_fwd, vec(no, 0, 0), vec(no, 2, 1), no, &k};
    if (T > 64) /* the loss over a few query rows of each block (fewer fp32 terms: finite differences stay
                   sharp), so that dK and dV gather the contributions of both blocks */
        for (int t = 0; t < B * T; t++)
            if (t % T != 3 && t % T != 40 && t % T != 66 && t % T != T - 1) memset(c.R + (size_t)t * C, 0, C * sizeof(float));
    float *dqkv = vec(nq, 0, 0);
    att_fwd(&c);
    attention_backward(dqkv, c.R, k.qkv, NULL, k.stat, k.mask, causal, k.d, B, T, C, NH, 0);
    fd_check(&c, k.qkv, dqkv, nq, "attention dqkv");
    if (p == 0.0f) {
        /* rows sum to 1 (all values 1 give outputs 1), masked and future keys
           weigh exactly 0 (changing their values changes nothing) */
        float *ones = vec(nq, 0, 0), *o1 = vec(no, 0, 0), *o2 = vec(no, 0, 0);
        memcpy(ones, k.qkv, nq * sizeof(float));
        for (int bt = 0; bt < B * T; bt++)
            for (int ch = 0; ch < C; ch++) ones[(size_t)bt * 3 * C + 2 * C + ch] = 1.0f;
        attention_forward(o1, k.stat, ones, NULL, k.mask, causal, k.d, B, T, C, NH, 0);
        for (size_t i = 0; i < no; i++) cr_expect(fabsf(o1[i] - 1.0f) < 1e-5f, "output %zu = %g, not 1", i, o1[i]);
        attention_forward(o1, k.stat, k.qkv, NULL, k.mask, causal, k.d, B, T, C, NH, 0);
        for (int bt = 0; bt < B * T; bt++)
            if (masked && !mask[bt])
                for (int ch = C; ch < 3 * C; ch++) k.qkv[(size_t)bt * 3 * C + ch] += 5.0f;
        attention_forward(o2, k.stat, k.qkv, NULL, k.mask, causal, k.d, B, T, C, NH, 0);
        for (size_t i = 0; i < no; i++) cr_expect(o1[i] == o2[i], "a masked key changed output %zu", i);
        free(ones), free(o1), free(o2);
    }
    free(mask), free(dqkv), free(c.out), free(c.R), free(k.qkv), free(k.stat);
}

Test(tensor, attention_plain_backward_matches_finite_differences) { check_attention(0, 0, 0, 2, 7); }
Test(tensor, attention_causal_backward_matches_finite_differences) { check_attention(1, 0, 0, 2, 7); }
Test(tensor, attention_padding_backward_matches_finite_differences) { check_attention(0, 1, 0, 2, 7); }
Test(tensor, attention_dropout_backward_matches_finite_differences) { check_attention(1, 0, 0.3f, 2, 7); }
Test(tensor, attention_blocks_backward_matches_finite_differences) { check_attention(1, 0, 0.3f, 1, 70); }
Test(tensor, attention_blocks_padding_backward_matches_finite_differences) { check_attention(0, 1, 0, 1, 70); }

/* Forward against a plain reference: P = softmax(q k^T / sqrt(hs)) with the
 * causal mask, dropped as dropout_forward drops a (B,NH,T,T) tensor of the
 * same site (element (b, h, i, j)), then P V; T = 70 spans two row blocks. */
Test(tensor, attention_forward_matches_a_plain_reference_with_dropout)
{
    setup();
    int B = 2, T = 70, C = 8, NH = 2, hs = C / NH;
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, na = (size_t)B * NH * T * T;
    float *qkv = vec(nq, 1, 1), *out = vec(no, 0, 0);
    float *P = vec(na, 0, 0), *Pd = vec(na, 0, 0), *stat = vec((size_t)B * NH * T * 2, 0, 0);
    dropout_site d = {.key = rng_key_make(5, RNG_DROPOUT), .stream = 23, .p = 0.3f};
    attention_forward(out, stat, qkv, NULL, NULL, 1, d, B, T, C, NH, 0);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                double row[70], mx = -1e30, sum = 0;
                for (int j = 0; j <= i; j++) {
                    double dot = 0;
                    for (int e = 0; e < hs; e++)
                        dot += (double)qkv[((size_t)b * T + i) * 3 * C + h * hs + e] *
                               qkv[((size_t)b * T + j) * 3 * C + C + h * hs + e];
                    row[j] = dot / sqrt((double)hs);
                    mx = row[j] > mx ? row[j] : mx;
                }
                for (int j = 0; j <= i; j++) sum += row[j] = exp(row[j] - mx);
                for (int j = 0; j <= i; j++) P[(((size_t)b * NH + h) * T + i) * T + j] = (float)(row[j] / sum);
            }
    dropout_forward(Pd, P, na, d);
    double worst = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++)
                for (int e = 0; e < hs; e++) {
                    double o = 0;
                    for (int j = 0; j <= i; j++)
                        o += (double)Pd[(((size_t)b * NH + h) * T + i) * T + j] *
                             qkv[((size_t)b * T + j) * 3 * C + 2 * C + h * hs + e];
                    double err = fabs(o - out[((size_t)b * T + i) * C + h * hs + e]);
                    worst = err > worst ? err : worst;
                }
    cr_expect(worst < 1e-5, "attention with dropout differs from the reference by %g", worst);
    free(qkv), free(out), free(P), free(Pd), free(stat);
}

Test(tensor, causal_attention_ignores_future_tokens)
{
    setup();
    int B = 1, T = 6, C = 4, NH = 1;
    float *qkv = vec(72, 1, 1), *o1 = vec(24, 0, 0),
          *o2 = vec(24, 0, 0), *stat = vec((size_t)B * NH * T * 2, 0, 0);
    dropout_site d = {0};
    attention_forward(o1, stat, qkv, NULL, NULL, 1, d, B, T, C, NH, 0);
    for (int c = 0; c < 12; c++) qkv[5 * 12 + c] += 10.0f; /* change the last token */
    attention_forward(o2, stat, qkv, NULL, NULL, 1, d, B, T, C, NH, 0);
    for (int i = 0; i < 20; i++) cr_expect(o1[i] == o2[i], "position %d changed", i / 4);
    free(qkv), free(o1), free(o2), free(stat);
}

/* ---- dropout ---- */
Test(tensor, dropout_keeps_the_expected_fraction_and_is_reproducible)
{
    size_t n = 1 << 20;
    float *x = vec(n, 0, 0), *y = vec(n, 0, 0), *z = vec(n, 0, 0);
    for (size_t i = 0; i < n; i++) x[i] = 1.0f;
    dropout_site d = {.key = rng_key_make(1, RNG_DROPOUT), .stream = 5, .p = 0.1f};
    dropout_forward(y, x, n, d);
    dropout_forward(z, x, n, d);
    size_t zeros = 0;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        zeros += y[i] == 0.0f;
        sum += y[i];
        cr_assert(y[i] == z[i]);
    }
    cr_expect(fabs((double)zeros / n - 26.0 / 256) < 0.002, "dropped %g", (double)zeros / n);
    cr_expect(fabs(sum / n - 1.0) < 0.01, "mean %g (expected 1: inverted dropout)", sum / n);
    d.stream = 6;
    dropout_forward(z, x, n, d);
    cr_expect(memcmp(y, z, n * sizeof(float)) != 0, "another stream gives another mask");
}

/* The mask depends on the element's index only: a short call (whose last
 * elements take the per-element path) masks its elements as the long one,
 * and the fused residual add and the backward use the same mask. */
Test(tensor, dropout_mask_depends_on_the_index_only)
{
    size_t n = 4099, m = 1003;
    float *x = vec(n, 3, 1.0f), *r = vec(n, 4, 1.0f), *y = vec(n, 0, 0), *z = vec(n, 0, 0);
    dropout_site d = {.key = rng_key_make(2, RNG_DROPOUT), .stream = 9, .p = 0.3f};
    dropout_forward(y, x, n, d);
    dropout_forward(z, x, m, d);
    cr_assert(memcmp(y, z, m * sizeof(float)) == 0, "a shorter call gives another mask");
    dropout_add_forward(z, r, x, n, d);
    for (size_t i = 0; i < n; i++) cr_assert(z[i] == r[i] + y[i], "element %zu", i);
    memcpy(z, x, n * sizeof(float));
    dropout_backward(z, z, n, d);
    cr_assert(memcmp(y, z, n * sizeof(float)) == 0, "backward in place masks as forward");
    free(x), free(r), free(y), free(z);
}

/* ---- embeddings ---- */
typedef struct { int32_t *ids, *types; float *wte, *wpe, *wtt; int B, T, C; } emb_ctx;
static void emb_fwd(fd_case *c)
{
    emb_ctx *k = c->ctx;
    embedding_forward(c->out, k->ids, k->types, k->wte, k->wpe, k->wtt, k->B, k->T, k->C);
}

Test(tensor, embedding_backward_matches_finite_differences)
{
    setup();
    int32_t ids[6] = {3, 1, 3, 0, 4, 3}, types[6] = {0, 0, 1, 0, 1, 1};
    emb_ctx k = {ids, types, vec(25, 1, 1), vec(15, 2, 1), vec(10, 3, 1), 2, 3, 5};
    fd_case c = {emb_fwd, vec(30, 0, 0), vec(30, 4, 1), 30, &k};
    float *dwte = vec(25, 0, 0), *dwpe = vec(15, 0, 0), *dwtt = vec(10, 0, 0);
    emb_fwd(&c);
    embedding_backward(dwte, dwpe, dwtt, c.R, ids, types, 2, 3, 5);
    fd_check(&c, k.wte, dwte, 25, "embedding dwte");
    fd_check(&c, k.wpe, dwpe, 15, "embedding dwpe");
    fd_check(&c, k.wtt, dwtt, 10, "embedding dwtt");
}

Test(tensor, sinusoidal_positions_follow_the_formula)
{
    float pe[4 * 6];
    sinusoidal_positions(pe, 4, 6);
    cr_expect_float_eq(pe[0], 0.0f, 1e-7);
    cr_expect_float_eq(pe[1], 1.0f, 1e-7);
    cr_expect_float_eq(pe[3 * 6 + 2], (float)sin(3.0 / pow(10000.0, 2.0 / 6)), 1e-6);
    cr_expect_float_eq(pe[3 * 6 + 3], (float)cos(3.0 / pow(10000.0, 2.0 / 6)), 1e-6);
}

/* ---- cross-entropy ---- */
Test(tensor, crossentropy_gradient_matches_finite_differences_and_ignores_minus_100)
{
    int N = 4, V = 7;
    int32_t t[4] = {2, -100, 6, 0};
    float *x = vec(28, 1, 2), *g = vec(28, 0, 0), *rl = vec(4, 0, 0);
    memcpy(g, x, 28 * sizeof(float));
    int correct = 0;
    double loss = crossentropy_fused(g, V, t, N, V, 1.0f, rl, &correct);
    for (int v = 0; v < V; v++) cr_expect(g[V + v] == 0.0f, "ignored row has zero gradient");
    cr_expect(rl[1] == 0.0f);
    float *tmp = vec(28, 0, 0);
    for (int i = 0; i < 28; i += 1) {
        float keep = x[i];
        x[i] = keep + 1e-2f;
        memcpy(tmp, x, 28 * sizeof(float));
        double lp = crossentropy_fused(tmp, V, t, N, V, 1.0f, rl, NULL);
        x[i] = keep - 1e-2f;
        memcpy(tmp, x, 28 * sizeof(float));
        double lm = crossentropy_fused(tmp, V, t, N, V, 1.0f, rl, NULL);
        x[i] = keep;
        cr_expect(fabs((lp - lm) / 2e-2 - g[i]) < 2e-3, "dlogit %d: %g vs %g", i, (lp - lm) / 2e-2, g[i]);
    }
    /* the loss of one row by hand */
    double z = 0;
    for (int v = 0; v < V; v++) z += exp(x[v]);
    double row0 = log(z) - x[2];
    cr_expect(fabs(rl[0] - row0) < 1e-5 && loss > row0, "row loss %g vs %g", rl[0], row0);
}

Test(tensor, crossentropy_counts_a_hit_only_when_the_target_is_the_first_maximum)
{
    enum { V = 37 }; /* odd: the SIMD max has a tail */
    float x[4 * V], rl[4];
    for (int i = 0; i < 4 * V; i++) x[i] = 0.01f * (float)(i % 11);
    x[0 * V + 30] = 5.0f;                       /* row 0: target 30 is the only max: a hit */
    x[1 * V + 3] = 5.0f, x[1 * V + 20] = 5.0f;  /* row 1: target 20 ties with an earlier 3: a miss */
    x[2 * V + 3] = 5.0f, x[2 * V + 20] = 5.0f;  /* row 2: target 3 is the first of the tie: a hit */
    x[3 * V + 36] = 6.0f;                       /* row 3: the max in the tail, target 0: a miss */
    int32_t t[4] = {30, 20, 3, 0};
    int correct = 0;
    crossentropy_fused(x, V, t, 4, V, 1.0f, rl, &correct);
    cr_expect_eq(correct, 2, "hits %d (expected rows 0 and 2)", correct);
    cr_expect(rl[3] > 5.9f && rl[3] < 6.1f, "row 3's loss %g: the max in the tail must be found", rl[3]);
}

/* ---- vocabulary-parallel cross-entropy and head-split attention ---- */

/* t ranks simulated in one process: each holds columns [r Vl, (r+1) Vl) of
 * the (N,V) logits in a (N,Vl) buffer whose padding columns hold 1e9 (they
 * must never count); the group max and sums are taken over the slices by
 * hand. Returns the loss every slice reports (they must agree) and leaves
 * the assembled gradient in grad (N,V). */
static double sliced_crossentropy(const float *logits, const int32_t *targets, int N, int V, int t, float *grad,
                                  int *correct)
{
    int Vl = (V + t - 1) / t;
    float *local = vec((size_t)t * N * Vl, 0, 0), *mx = vec((size_t)N, 0, 0), *part = vec((size_t)N, 0, 0);
    float *st = vec((size_t)2 * N, 0, 0), *st_r = vec((size_t)2 * N, 0, 0), *rl = vec((size_t)N, 0, 0);
    for (int n = 0; n < N; n++) mx[n] = -INFINITY;
    for (int r = 0; r < t; r++) {
        float *L = local + (size_t)r * N * Vl;
        int nv = V - r * Vl < Vl ? V - r * Vl : Vl;
        for (int n = 0; n < N; n++)
            for (int v = 0; v < Vl; v++) L[(size_t)n * Vl + v] = v < nv ? logits[(size_t)n * V + r * Vl + v] : 1e9f;
        crossentropy_slice_max(L, Vl, N, nv, part);
        for (int n = 0; n < N; n++) mx[n] = fmaxf(mx[n], part[n]);
    }
    for (int r = 0; r < t; r++) {
        int nv = V - r * Vl < Vl ? V - r * Vl : Vl;
        crossentropy_slice_sumexp(local + (size_t)r * N * Vl, Vl, targets, N, r * Vl, nv, mx, st_r);
        for (int i = 0; i < 2 * N; i++) st[i] += st_r[i];
    }
    double loss = 0.0;
    for (int r = 0; r < t; r++) {
        float *L = local + (size_t)r * N * Vl;
        int nv = V - r * Vl < Vl ? V - r * Vl : Vl, hits = 0;
        double l = crossentropy_slice_grad(L, Vl, targets, N, r * Vl, nv, mx, st, 1.0f, rl, &hits);
        cr_expect(r == 0 || fabs(l - loss) < 1e-12, "slice %d reports loss %g, slice 0 %g", r, l, loss);
        cr_expect(r == 0 || hits == *correct, "slice %d counts %d correct rows, slice 0 %d", r, hits, *correct);
        loss = l, *correct = hits;
        for (int n = 0; n < N; n++)
            for (int v = 0; v < Vl; v++) {
                if (v < nv) grad[(size_t)n * V + r * Vl + v] = L[(size_t)n * Vl + v];
                else cr_expect(L[(size_t)n * Vl + v] == 1e9f, "padding column touched");
            }
    }
    free(local), free(mx), free(part), free(st), free(st_r), free(rl);
    return loss;
}

Test(tensor, parallel_crossentropy_equals_the_gathered_one_and_padding_never_counts)
{
    int N = 6, V = 1001;
    int32_t targets[6] = {0, 1000, -100, 500, 250, 753}; /* slice edges of t = 4 (Vl = 251) */
    float *x = vec((size_t)N * V, 5, 3), *g1 = vec((size_t)N * V, 0, 0), *gt = vec((size_t)N * V, 0, 0);
    float *rl = vec((size_t)N, 0, 0);
    x[3 * V + 500] = 40.0f; /* a row whose target is the argmax */
    memcpy(g1, x, (size_t)N * V * sizeof(float));
    int c1 = 0;
    double ref = crossentropy_fused(g1, V, targets, N, V, 1.0f, rl, &c1);
    int ts[3] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        int c = 0;
        double loss = sliced_crossentropy(x, targets, N, V, ts[k], gt, &c);
        cr_expect(fabs(loss - ref) <= 1e-5 * fabs(ref), "t = %d: loss %.9g, gathered %.9g", ts[k], loss, ref);
        cr_expect(c == c1, "t = %d: %d correct rows, gathered %d", ts[k], c, c1);
        double worst = 0.0;
        for (size_t i = 0; i < (size_t)N * V; i++) worst = fmax(worst, fabs(gt[i] - g1[i]));
        cr_expect(worst < 1e-6, "t = %d: gradient differs from the gathered one by %g", ts[k], worst);
    }
    free(x), free(g1), free(gt), free(rl);
}

/* Attention of heads [h0, h0 + nh) alone (their q, k, v columns) with the
 * dropout keyed by the global head gives those heads' output of the whole
 * attention: what a tensor-parallel rank computes. */
Test(tensor, attention_of_a_head_slice_matches_the_whole_with_dropout)
{
    setup();
    int B = 2, T = 9, NH = 4, hs = 3, C = NH * hs;
    float *qkv = vec((size_t)B * T * 3 * C, 1, 1), *out = vec((size_t)B * T * C, 0, 0);
    float *stat = vec((size_t)B * NH * T * 2, 0, 0);
    dropout_site d = {.key = rng_key_make(3, RNG_DROPOUT), .stream = 17, .p = 0.3f};
    attention_forward(out, stat, qkv, NULL, NULL, 1, d, B, T, C, NH, 0);
    for (int h0 = 0; h0 < NH; h0 += 2) {
        int nh = 2, Cl = nh * hs;
        float *lq = vec((size_t)B * T * 3 * Cl, 0, 0), *lo = vec((size_t)B * T * Cl, 0, 0);
        for (int bt = 0; bt < B * T; bt++)
            for (int p = 0; p < 3; p++)
                memcpy(lq + (size_t)bt * 3 * Cl + p * Cl, qkv + (size_t)bt * 3 * C + p * C + h0 * hs,
                       (size_t)Cl * sizeof(float));
        dropout_site dl = d;
        dl.head0 = h0, dl.n_head = NH;
        attention_forward(lo, stat, lq, NULL, NULL, 1, dl, B, T, Cl, nh, 0);
        for (int bt = 0; bt < B * T; bt++)
            for (int c = 0; c < Cl; c++)
                cr_expect(lo[(size_t)bt * Cl + c] == out[(size_t)bt * C + h0 * hs + c],
                          "heads from %d: position %d channel %d differs", h0, bt, c);
        free(lq), free(lo);
    }
    free(qkv), free(out), free(stat);
}

/* The block-cyclic arithmetic deals every index of a dimension to exactly one
 * process, in increasing order within a process, in blocks of nb dealt
 * round-robin; counts match ScaLAPACK's numroc (spot values). */
Test(tensor, block_cyclic_deals_every_index_once)
{
    for (int n = 1; n <= 70; n++)
        for (int nb = 1; nb <= 9; nb++)
            for (int np = 1; np <= 4; np++) {
                int seen[70] = {0}, total = 0;
                for (int p = 0; p < np; p++) {
                    int count = block_cyclic_count(n, nb, p, np), prev = -1;
                    total += count;
                    for (int i = 0; i < count; i++) {
                        int g = block_cyclic_global(i, nb, p, np);
                        cr_assert(g > prev && g < n, "n %d nb %d np %d: p %d local %d -> %d", n, nb, np, p, i, g);
                        cr_assert_eq(g / nb % np, p, "index %d is in a block of process %d, not %d", g, g / nb % np, p);
                        seen[g]++;
                        prev = g;
                    }
                }
                cr_assert_eq(total, n, "n %d nb %d np %d: counts sum to %d", n, nb, np, total);
                for (int g = 0; g < n; g++) cr_assert_eq(seen[g], 1, "index %d dealt %d times", g, seen[g]);
            }
    cr_assert_eq(block_cyclic_count(768, 256, 0, 2), 512);
    cr_assert_eq(block_cyclic_count(768, 256, 1, 2), 256);
    cr_assert_eq(block_cyclic_count(10, 4, 2, 3), 2);
    cr_assert_eq(block_cyclic_count(10, 4, 1, 3), 4);
}

/* Grouped-query attention (NKV < NH kv heads, rows q | k | v of C + 2 NKV hs)
 * computes what multi-head attention computes on the kv heads repeated per
 * query head (head h reads kv head h / (NH / NKV)); its backward gives each
 * kv head the sum of its query heads' d(k), d(v). Causal with dropout, and a
 * key mask; 70 positions span two query blocks; fp32 and bf16 operands. */
Test(tensor, grouped_query_attention_equals_attention_on_repeated_kv_heads)
{
    setup();
    enum { B = 2, T = 70, NH = 4, NKV = 2, hs = 4, C = NH * hs, KV = NKV * hs, W = C + 2 * KV, G = NH / NKV };
    size_t rows = (size_t)B * T;
    float *qkv = vec(rows * W, 3, 1), *wide = vec(rows * 3 * C, 0, 0), *dout = vec(rows * C, 4, 1);
    float *o1 = vec(rows * C, 0, 0), *o2 = vec(rows * C, 0, 0), *s1 = vec((size_t)B * NH * T * 2, 0, 0);
    float *s2 = vec((size_t)B * NH * T * 2, 0, 0), *d1 = vec(rows * W, 0, 0), *d2 = vec(rows * 3 * C, 0, 0);
    int32_t km[B * T];
    for (int i = 0; i < B * T; i++) km[i] = (i % T) < T - 5 * (i / T + 1);
    for (size_t r = 0; r < rows; r++) {
        memcpy(wide + r * 3 * C, qkv + r * W, C * sizeof(float));
        for (int h = 0; h < NH; h++) {
            memcpy(wide + r * 3 * C + C + h * hs, qkv + r * W + C + (h / G) * hs, hs * sizeof(float));
            memcpy(wide + r * 3 * C + 2 * C + h * hs, qkv + r * W + C + KV + (h / G) * hs, hs * sizeof(float));
        }
    }
    for (int half = 0; half <= 1; half++)
        for (int causal = 0; causal <= 1; causal++) {
            dropout_site d = {.key = rng_key_make(5, RNG_DROPOUT), .stream = 9, .p = causal ? 0.3f : 0.0f};
            const int32_t *mask = causal ? NULL : km;
            cr_assert_eq(attention_forward_gqa(o1, s1, qkv, NULL, mask, causal, d, B, T, C, NH, NKV, half), ST_OK);
            cr_assert_eq(attention_forward(o2, s2, wide, NULL, mask, causal, d, B, T, C, NH, half), ST_OK);
            for (size_t i = 0; i < rows * C; i++)
                cr_assert(fabsf(o1[i] - o2[i]) <= 1e-6f * (1.0f + fabsf(o2[i])), "half %d causal %d: out[%zu] %g vs %g",
                          half, causal, i, o1[i], o2[i]);
            memset(d1, 0xFF, rows * W * sizeof *d1); /* every gradient must be written */
            cr_assert_eq(attention_backward_gqa(d1, dout, qkv, NULL, s1, mask, causal, d, B, T, C, NH, NKV, half),
                         ST_OK);
            cr_assert_eq(attention_backward(d2, dout, wide, NULL, s2, mask, causal, d, B, T, C, NH, half), ST_OK);
            for (size_t r = 0; r < rows; r++)
                for (int c = 0; c < W; c++) {
                    double want = 0.0;
                    if (c < C) {
                        want = d2[r * 3 * C + c];
                    } else { /* kv head g's channel i: its query heads' sum */
                        int part = c < C + KV ? 1 : 2, g = (c - C - (part - 1) * KV) / hs, i = (c - C) % hs;
                        for (int h = g * G; h < (g + 1) * G; h++) want += d2[r * 3 * C + part * C + h * hs + i];
                    }
                    float got = d1[r * W + c];
                    cr_assert(fabs(got - want) <= 1e-5 * (1.0 + fabs(want)), "half %d causal %d: d[%zu][%d] %g vs %g",
                              half, causal, r, c, got, want);
                }
        }
    free(qkv), free(wide), free(dout), free(o1), free(o2), free(s1), free(s2), free(d1), free(d2);
}

/* exp_fast (tensor/internal.h, under softmax, GELU, SiLU and the
 * cross-entropy): within its stated 2e-7 relative error of exp over the
 * clamp's range [-87, 88], beyond it the clamp's values, NaN in NaN out. */
Test(tensor, exp_fast_is_within_its_bound_and_keeps_nan)
{
    double worst = 0;
    for (int i = 0; i <= 2000000; i++) {
        float x = -87.0f + 175.0f * (float)i / 2000000.0f;
        double e = exp((double)x), r = fabs(exp_fast(x) - e) / e;
        if (r > worst) worst = r;
    }
    cr_expect(worst < 2e-7, "relative error %.3g", worst);
    cr_expect(exp_fast(-1000.0f) == exp_fast(-87.0f) && exp_fast(-INFINITY) == exp_fast(-87.0f));
    cr_expect(exp_fast(1000.0f) == exp_fast(88.0f) && exp_fast(INFINITY) == exp_fast(88.0f));
    cr_expect(exp_fast(0.0f) == 1.0f);
    float in[64], out[64];
    for (int i = 0; i < 64; i++) in[i] = i % 3 ? (float)i / 8.0f : NAN;
    #pragma omp simd
    for (int i = 0; i < 64; i++) out[i] = exp_fast(in[i]);
    for (int i = 0; i < 64; i++)
        cr_expect(i % 3 ? out[i] == exp_fast((float)i / 8.0f) : isnan(out[i]), "lane %d: exp_fast(%g) = %g", i,
                  in[i], out[i]);
}


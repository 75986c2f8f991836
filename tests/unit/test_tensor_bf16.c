/* tensor/bf16: conversions, the bf16 GEMM in every transpose/stride/beta
 * combination, the mixed-precision linear layers, and the CPU check.
 *
 * Tolerances. Rounding to bf16 (8 significant bits, 7 stored; round to
 * nearest even) has unit roundoff u = 2^-8: |bf16(x) - x| <= u |x|. A product of two
 * rounded operands is within (2u + u^2) |a b| of the exact one, and the GEMM
 * sums in fp32 (unit roundoff 2^-24), so an entry of a K-term dot product
 * differs from the exact (double) one by at most
 *     (2u + u^2 + K 2^-24) sum_k |a_k b_k|                          (bound A)
 * and from the same dot product of the ROUNDED operands by at most
 *     K 2^-24 sum_k |a_k b_k|                                        (bound B)
 * Each entry is checked against both, with a margin of 1.01 for the double
 * reference's own rounding. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/float_bits.h"
#include "base/rng.h"
#include "tensor/bf16.h"
#include "tensor/tensor.h"
#include "tensor/internal.h"

static const double U = 1.0 / 256.0;      /* bf16 unit roundoff */
static const double EPS32 = 1.0 / 16777216.0;

static void fill(float *x, size_t n, uint64_t stream, float std)
{
    rng_fill_normal(rng_key_make(11, RNG_TEST), stream, std, x, n);
}

Test(bf16, rounds_to_nearest_even_and_keeps_specials)
{
    cr_expect_eq(bf16_round(1.0f), 0x3F80);
    /* 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even 1 */
    cr_expect_eq(bf16_round(1.0f + 1.0f / 256), 0x3F80);
    /* 1 + 3 2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even) */
    cr_expect_eq(bf16_round(1.0f + 3.0f / 256), 0x3F82);
    /* just above a tie rounds up */
    cr_expect_eq(bf16_round(float_of(0x3F808001u)), 0x3F81);
    cr_expect_eq(bf16_round(-2.0f), 0xC000);
    cr_expect_eq(bf16_round(INFINITY), 0x7F80);
    cr_expect_eq(bf16_round(-INFINITY), 0xFF80);
    /* the largest float rounds up to infinity, as in PyTorch */
    cr_expect_eq(bf16_round(float_of(0x7F7FFFFFu)), 0x7F80);
    cr_expect(isnan(bf16_value(bf16_round(NAN))), "NaN must stay NaN");
    cr_expect(isnan(bf16_value(bf16_round(float_of(0x7F800001u)))), "a NaN with a low payload must not become inf");
    /* a subnormal keeps its value (no flush to zero) */
    cr_expect_eq(bf16_value(bf16_round(float_of(0x00010000u))), float_of(0x00010000u));
}

/* The bf16 pair of a training state: every float comes back bit for bit,
 * and hi is the nearest bf16 (a tie toward the smaller magnitude). */
Test(bf16, a_split_float_joins_back_exactly_and_hi_is_the_nearest_bf16)
{
    enum { N = 1 << 20 };
    float *x = malloc(N * sizeof *x), *back = malloc(N * sizeof *back);
    bf16 *hi = malloc(N * sizeof *hi);
    uint16_t *lo = malloc(N * sizeof *lo);
    cr_assert(x && back && hi && lo);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < N; i++) { /* every bit pattern class: random words, then edge cases */
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = float_of((uint32_t)s);
    }
    const uint32_t edge[] = {0x00000000u, 0x80000000u, 0x3F808000u, 0x3F818000u, 0xBF808000u, 0x3F808001u,
                             0x3F807FFFu, 0x7F7FFFFFu, 0x7F800000u, 0xFF800000u, 0x0000FFFFu, 0x00008000u,
                             0x7FFFFFFFu, 0xFFFFFFFFu, 0x3FFFFFFFu};
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++) x[i] = float_of(edge[i]);
    bf16_split(hi, lo, x, N);
    bf16_join(back, hi, lo, N);
    bf16 *hi_alone = malloc(N * sizeof *hi_alone);
    cr_assert(hi_alone);
    bf16_split_hi(hi_alone, x, N);
    cr_expect_eq(memcmp(hi_alone, hi, N * sizeof *hi), 0, "bf16_split_hi must round as bf16_split");
    free(hi_alone);
    size_t differ = 0;
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(bits_of(back[i]), bits_of(x[i]), "float %zu (0x%08x) came back as 0x%08x", i, bits_of(x[i]),
                     bits_of(back[i]));
        uint32_t u = bits_of(x[i]);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) continue; /* NaN: only the round trip matters */
        if (hi[i] != bf16_round(x[i])) {
            cr_assert_eq(u & 0xFFFFu, 0x8000u, "0x%08x: hi 0x%04x is not the nearest bf16 0x%04x", u, hi[i],
                         bf16_round(x[i]));
            cr_assert_eq(hi[i], u >> 16, "0x%08x: a tie must go to the smaller magnitude", u);
            differ++;
        }
    }
    /* ties with an odd hi round up under nearest-even and down here */
    cr_expect_eq(hi[2], 0x3F80);
    cr_expect_eq(hi[3], 0x3F81);
    cr_expect_eq(hi[5], 0x3F81);
    cr_expect_eq(hi[8], 0x7F80);
    cr_expect(differ < 64, "%zu floats rounded apart from nearest-even (expected ~N / 2^17)", differ);
    bf16 fin[3] = {0x3F80, 0xFF7F, 0x0001}, inf[3] = {0x3F80, 0xFF80, 0x0001}, nan[2] = {0x7FC0, 0};
    cr_expect(bf16_all_finite(fin, 3));
    cr_expect(!bf16_all_finite(inf, 3));
    cr_expect(!bf16_all_finite(nan, 2));
    free(x), free(back), free(hi), free(lo);
}

Test(bf16, relative_error_is_at_most_half_an_ulp)
{
    enum { N = 100003 }; /* odd: exercises the tail of a chunk */
    float *x = malloc(N * sizeof *x), *back = malloc(N * sizeof *back);
    bf16 *h = malloc(N * sizeof *h);
    fill(x, N, 1, 3.0f);
    x[0] = 0.0f;
    bf16_from_f32(h, x, N);
    bf16_to_f32(back, h, N);
    double worst = 0.0;
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(h[i], bf16_round(x[i]), "threaded conversion differs from the scalar one at %zu", i);
        cr_assert_eq(bits_of(back[i]), (uint32_t)h[i] << 16, "widening must be exact at %zu", i);
        if (x[i] != 0.0f) worst = fmax(worst, fabs((double)back[i] - x[i]) / fabs((double)x[i]));
    }
    cr_expect(worst <= U, "relative error %.3g exceeds 2^-8", worst);
    cr_expect(worst > U / 2, "relative error %.3g: rounding looks too exact to be bf16", worst);
    free(x), free(back), free(h);
}

/* C (M,N) = alpha op(A) op(B) (+ C0) against double references on the
 * rounded and the unrounded operands (bounds A and B above), strides wider
 * than the matrices, the padding of C never written. one_thread = 0: the
 * oneDNN GEMM on operands the caller rounded (alpha 1); 1: the one-thread
 * GEMM of attention (gemm_bf16_1t), which rounds fp32 operands as it packs
 * them. */
static void check_gemm(int one_thread, int ta, int tb, int M, int N, int K, int beta)
{
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    int lda = ac + 3, ldb = bc + 5, ldc = N + 7;
    float *a = calloc((size_t)ar * lda, sizeof *a), *b = calloc((size_t)br * ldb, sizeof *b);
    float *c = calloc((size_t)M * ldc, sizeof *c), *c0 = calloc((size_t)M * ldc, sizeof *c0);
    bf16 *ah = calloc((size_t)ar * lda, sizeof *ah), *bh = calloc((size_t)br * ldb, sizeof *bh);
    fill(a, (size_t)ar * lda, 2 + 3 * (uint64_t)one_thread, 1.0f);
    fill(b, (size_t)br * ldb, 3 + 3 * (uint64_t)one_thread, 1.0f);
    fill(c0, (size_t)M * ldc, 4 + 3 * (uint64_t)one_thread, 1.0f);
    memcpy(c, c0, (size_t)M * ldc * sizeof *c);
    bf16_from_f32(ah, a, (size_t)ar * lda);
    bf16_from_f32(bh, b, (size_t)br * ldb);
    const float alpha = one_thread ? 0.375f : 1.0f;
    if (one_thread)
        cr_assert(gemm_bf16_1t(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta ? 1.0f : 0.0f, c, ldc));
    else
        cr_assert_eq(tensor_gemm_bf16(ta, tb, M, N, K, ah, lda, bh, ldb, beta ? 1.0f : 0.0f, c, ldc), ST_OK, "%s",
                     st_message());
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double exact = 0.0, rounded = 0.0, mag = 0.0;
            for (int k = 0; k < K; k++) {
                size_t ia = ta ? (size_t)k * lda + i : (size_t)i * lda + k;
                size_t ib = tb ? (size_t)j * ldb + k : (size_t)k * ldb + j;
                exact += (double)a[ia] * b[ib];
                rounded += (double)bf16_value(ah[ia]) * bf16_value(bh[ib]);
                mag += fabs((double)a[ia] * b[ib]);
            }
            double base = beta ? c0[(size_t)i * ldc + j] : 0.0, got = c[(size_t)i * ldc + j];
            double slack = 2 * EPS32 * (fabs(base) + alpha * fabs(exact));
            double bound_a = 1.01 * alpha * (2 * U + U * U + K * EPS32) * mag + slack;
            double bound_b = 1.01 * alpha * K * EPS32 * mag + slack;
            cr_assert(fabs(got - (base + alpha * exact)) <= bound_a, "%s ta %d tb %d beta %d: C[%d,%d] = %.8g, exact "
                      "%.8g, beyond bound A %.3g", one_thread ? "1t" : "onednn", ta, tb, beta, i, j, got,
                      base + alpha * exact, bound_a);
            cr_assert(fabs(got - (base + alpha * rounded)) <= bound_b, "%s ta %d tb %d beta %d: C[%d,%d] = %.8g, "
                      "rounded-operand product %.8g, beyond bound B %.3g", one_thread ? "1t" : "onednn", ta, tb, beta,
                      i, j, got, base + alpha * rounded, bound_b);
        }
        for (int j = N; j < ldc; j++)
            cr_assert_eq(bits_of(c[(size_t)i * ldc + j]), bits_of(c0[(size_t)i * ldc + j]), "padding of row %d written", i);
    }
    free(a), free(b), free(c), free(c0), free(ah), free(bh);
}

Test(bf16, gemm_matches_the_bound_in_every_transpose_and_beta)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int beta = 0; beta < 2; beta++) check_gemm(0, ta, tb, 37, 29, 67, beta);
    check_gemm(0, 0, 0, 1, 1, 1, 0);
    check_gemm(0, 1, 0, 64, 48, 300, 1); /* a weight gradient's shape: a long reduction */
}

Test(bf16, a_repeated_shape_reuses_its_primitive)
{
    enum { M = 16, N = 24, K = 8 };
    bf16 a[M * K], b[K * N];
    float c[M * N];
    for (int i = 0; i < M * K; i++) a[i] = bf16_round(0.5f);
    for (int i = 0; i < K * N; i++) b[i] = bf16_round(0.25f);
    cr_assert_eq(tensor_gemm_bf16(0, 0, M, N, K, a, K, b, N, 0.0f, c, N), ST_OK);
    int made = tensor_gemm_bf16_primitives();
    for (int r = 0; r < 5; r++) cr_assert_eq(tensor_gemm_bf16(0, 0, M, N, K, a, K, b, N, 0.0f, c, N), ST_OK);
    cr_expect_eq(tensor_gemm_bf16_primitives(), made, "the same shape created another primitive");
    cr_expect_eq(c[0], 1.0f, "0.5 x 0.25 summed over 8 = 1");
    cr_assert_eq(tensor_gemm_bf16(0, 0, M, N, K, a, K, b, N, 1.0f, c, N), ST_OK);
    cr_expect_eq(tensor_gemm_bf16_primitives(), made + 1, "beta = 1 is its own primitive (an accumulate post-op)");
    cr_expect_eq(c[0], 2.0f, "beta = 1 adds to C");
}

Test(bf16, gemm_refuses_a_beta_it_cannot_apply)
{
    bf16 a[4] = {0}, b[4] = {0};
    float c[4] = {0};
    cr_expect_eq(tensor_gemm_bf16(0, 0, 2, 2, 2, a, 2, b, 2, 0.5f, c, 2), ST_ERROR);
    cr_expect(strstr(st_message(), "beta") != NULL, "message: %s", st_message());
}

/* The mixed-precision linear layers equal the fp32 ones computed on rounded
 * operands, in both weight layouts, with and without accumulation. */
Test(bf16, linear_layers_equal_fp32_on_rounded_operands)
{
    enum { N = 19, C = 24, OC = 40 };
    for (int lay = 0; lay < 2; lay++) {
        float x[N * C], w[OC * C], bias[OC], dout[N * OC];
        fill(x, N * C, 5, 1.0f);
        fill(w, OC * C, 6, 0.2f);
        fill(bias, OC, 7, 0.1f);
        fill(dout, N * OC, 8, 1.0f);
        bf16 xh[N * C], wh[OC * C], dh[N * OC];
        bf16_from_f32(xh, x, N * C);
        bf16_from_f32(wh, w, OC * C);
        bf16_from_f32(dh, dout, N * OC);
        float xr[N * C], wr[OC * C], dr[N * OC];
        bf16_to_f32(xr, xh, N * C);
        bf16_to_f32(wr, wh, OC * C);
        bf16_to_f32(dr, dh, N * OC);
        float out[N * OC], ref[N * OC];
        cr_assert_eq(linear_forward_bf16(out, OC, xh, wh, bias, (weight_layout)lay, N, C, OC), ST_OK);
        linear_forward(ref, OC, xr, wr, bias, (weight_layout)lay, N, C, OC);
        for (int i = 0; i < N * OC; i++)
            cr_assert(fabsf(out[i] - ref[i]) <= 1e-5f * (1.0f + fabsf(ref[i])), "forward layout %d at %d: %g vs %g",
                      lay, i, out[i], ref[i]);
        float dx[N * C], dxr[N * C], dw[OC * C] = {0}, dwr[OC * C] = {0}, db[OC] = {0}, dbr[OC] = {0};
        for (int i = 0; i < N * C; i++) dx[i] = dxr[i] = 1.0f; /* accumulate onto ones */
        cr_assert_eq(linear_backward_bf16(dx, dw, db, dout, dh, OC, xh, wh, (weight_layout)lay, N, C, OC, 1), ST_OK);
        linear_backward(dxr, dwr, dbr, dr, OC, xr, wr, (weight_layout)lay, N, C, OC, 1);
        for (int i = 0; i < N * C; i++)
            cr_assert(fabsf(dx[i] - dxr[i]) <= 1e-5f * (1.0f + fabsf(dxr[i])), "d(x) layout %d at %d", lay, i);
        for (int i = 0; i < OC * C; i++)
            cr_assert(fabsf(dw[i] - dwr[i]) <= 1e-5f * (1.0f + fabsf(dwr[i])), "d(W) layout %d at %d", lay, i);
        /* the bias gradient sums the fp32 dout, not its bf16 copy */
        for (int o = 0; o < OC; o++) {
            double s = 0.0;
            for (int n = 0; n < N; n++) s += dout[n * OC + o];
            cr_assert(fabs(db[o] - s) <= 1e-5 * (1.0 + fabs(s)), "d(bias) layout %d at %d: %g vs %g", lay, o, db[o], s);
        }
    }
}

Test(bf16, the_cpu_check_obeys_the_override)
{
    const char *why;
    setenv("MPILM_CPU_BF16", "0", 1);
    cr_expect_eq(bf16_cpu_supported(&why), 0);
    cr_expect(strstr(why, "MPILM_CPU_BF16=0") != NULL, "%s", why);
    setenv("MPILM_CPU_BF16", "1", 1);
    cr_expect_eq(bf16_cpu_supported(&why), 1);
    unsetenv("MPILM_CPU_BF16");
    int has = bf16_cpu_supported(&why);
    cr_expect(strstr(why, has ? "has" : "neither") != NULL, "%s", why);
}

/* oneDNN's f32 matmul (bench_gemm's alternative fp32 engine) computes what
 * BLIS computes, to fp32 summation order. */
Test(bf16, onednn_f32_gemm_equals_blis)
{
    enum { M = 33, N = 21, K = 45 };
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float a[M * K], b[K * N], c[M * N], ref[M * N];
            fill(a, M * K, 9, 1.0f);
            fill(b, K * N, 10, 1.0f);
            fill(c, M * N, 11, 1.0f);
            memcpy(ref, c, sizeof c);
            int lda = ta ? M : K, ldb = tb ? K : N;
            cr_assert_eq(tensor_gemm_onednn_f32(ta, tb, M, N, K, a, lda, b, ldb, 1.0f, c, N), ST_OK, "%s", st_message());
            tensor_gemm_blis(ta, tb, M, N, K, 1.0f, a, lda, b, ldb, 1.0f, ref, N);
            for (int i = 0; i < M * N; i++)
                cr_assert(fabsf(c[i] - ref[i]) <= 1e-5f * (1.0f + fabsf(ref[i])), "ta %d tb %d at %d: %g vs %g", ta,
                          tb, i, c[i], ref[i]);
        }
}

/* More shapes than the primitive table holds: the least recently used ones
 * are replaced, the results stay right, and nothing fails. */
Test(bf16, more_shapes_than_the_table_evicts_and_stays_correct)
{
    enum { SHAPES = 300, K = 4, N = 8 };
    bf16 a[SHAPES * K], b[K * N];
    float c[SHAPES * N];
    for (int i = 0; i < SHAPES * K; i++) a[i] = bf16_round(1.0f);
    for (int i = 0; i < K * N; i++) b[i] = bf16_round(0.5f);
    for (int M = 1; M <= SHAPES; M++) {
        cr_assert_eq(tensor_gemm_bf16(0, 0, M, N, K, a, K, b, N, 0.0f, c, N), ST_OK, "M = %d: %s", M, st_message());
        cr_assert_eq(c[(M - 1) * N + N - 1], 2.0f, "M = %d: the last entry", M);
    }
    cr_expect(tensor_gemm_bf16_primitives() <= 256, "%d primitives held", tensor_gemm_bf16_primitives());
    cr_expect(tensor_gemm_bf16_evictions() >= SHAPES - 256, "%llu evictions", (unsigned long long)tensor_gemm_bf16_evictions());
    /* an early shape again: made anew, still right */
    cr_assert_eq(tensor_gemm_bf16(0, 0, 1, N, K, a, K, b, N, 0.0f, c, N), ST_OK);
    cr_expect_eq(c[0], 2.0f);
}

/* The one-thread GEMM of attention (gemm_bf16_1t): sizes that leave tails in
 * every dimension of its 8 x 32 tile, an odd K (the last pair half empty)
 * and K = 0. */
Test(bf16, one_thread_gemm_matches_the_bounds_in_every_transpose_and_beta)
{
    if (!bf16_cpu_supported(NULL)) cr_skip_test("the CPU has no AVX512-BF16");
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int beta = 0; beta < 2; beta++) {
                check_gemm(1, ta, tb, 13, 37, 9, beta);   /* tails everywhere, odd K */
                check_gemm(1, ta, tb, 64, 70, 64, beta);  /* attention's q k^T of a block */
                check_gemm(1, ta, tb, 70, 64, 33, beta);
            }
    check_gemm(1, 0, 0, 1, 1, 1, 0);
    check_gemm(1, 0, 1, 3, 5, 0, 1); /* K = 0: C = beta C */
}

/* Attention in bf16 against fp32 attention. Rounding q and k moves logit
 * (i, j) by at most d_ij = (2u + u^2) scale sum_d |q_id k_jd|, so a row's
 * probabilities move by a factor within exp(+-2 D_i), D_i = max_j d_ij; P and
 * v are then rounded (2u + u^2 more). Each output of the fp32 attention O_i
 * therefore lies within
 *     sum_j P_ij |v_j| (exp(2 D_i) - 1 + 2u + u^2) + fp32 slack
 * of the bf16 one (P from a double softmax of the fp32 logits). Backward: the
 * gradients agree with fp32's to 2^-5 in relative norm (a gross-error check;
 * the model tests compare with PyTorch autocast). */
Test(bf16, attention_in_bf16_stays_within_its_rounding_bound_of_fp32)
{
    if (!bf16_cpu_supported(NULL)) cr_skip_test("the CPU has no AVX512-BF16");
    enum { B = 2, T = 70, C = 32, NH = 2, hs = C / NH };
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
    float *qkv = malloc(nq * sizeof *qkv), *o32 = malloc(no * sizeof *o32), *o16 = malloc(no * sizeof *o16);
    float *st32 = calloc((size_t)B * NH * T * 2, sizeof(float));
    float *st16 = calloc((size_t)B * NH * T * 2, sizeof(float)), *dout = malloc(no * sizeof *dout);
    float *d32 = malloc(nq * sizeof *d32), *d16 = malloc(nq * sizeof *d16);
    fill(qkv, nq, 8, 1.0f);
    fill(dout, no, 9, 1.0f);
    dropout_site off = {0};
    attention_forward(o32, st32, qkv, NULL, NULL, 1, off, B, T, C, NH, 0);
    attention_forward(o16, st16, qkv, NULL, NULL, 1, off, B, T, C, NH, 1);
    double scale = 1.0 / sqrt((double)hs), worst = 0.0;
    int differ = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const float *q = qkv + ((size_t)b * T + i) * 3 * C + h * hs;
                double logit[T], D = 0.0, mx = -INFINITY, sum = 0.0;
                for (int j = 0; j <= i; j++) {
                    const float *k = qkv + ((size_t)b * T + j) * 3 * C + C + h * hs;
                    double s = 0.0, mag = 0.0;
                    for (int d = 0; d < hs; d++) s += (double)q[d] * k[d], mag += fabs((double)q[d] * k[d]);
                    logit[j] = s * scale;
                    D = fmax(D, (2 * U + U * U) * scale * mag);
                    mx = fmax(mx, logit[j]);
                }
                for (int j = 0; j <= i; j++) sum += exp(logit[j] - mx);
                for (int ch = 0; ch < hs; ch++) {
                    double pv = 0.0;
                    for (int j = 0; j <= i; j++)
                        pv += exp(logit[j] - mx) / sum * fabs((double)qkv[((size_t)b * T + j) * 3 * C + 2 * C + h * hs + ch]);
                    size_t at = ((size_t)b * T + i) * C + h * hs + ch;
                    double bound = 1.01 * pv * (expm1(2 * D) + 2 * U + U * U) + 1e-6 * (1.0 + fabs(o32[at]));
                    double diff = fabs((double)o16[at] - o32[at]);
                    cr_assert(diff <= bound, "b %d h %d row %d ch %d: bf16 %.8g, fp32 %.8g, beyond %.3g", b, h, i, ch,
                              o16[at], o32[at], bound);
                    worst = fmax(worst, diff / bound);
                    differ += o16[at] != o32[at];
                }
            }
    cr_log_info("bf16 attention: worst |bf16 - fp32| / bound = %.3f", worst);
    cr_expect(differ > (int)no / 2, "only %d of %zu outputs differ from fp32: is the bf16 path taken?", differ, no);
    attention_backward(d32, dout, qkv, NULL, st32, NULL, 1, off, B, T, C, NH, 0);
    attention_backward(d16, dout, qkv, NULL, st16, NULL, 1, off, B, T, C, NH, 1);
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < nq; i++) num += ((double)d16[i] - d32[i]) * ((double)d16[i] - d32[i]), den += (double)d32[i] * d32[i];
    cr_expect(den > 0 && sqrt(num / den) < 1.0 / 32, "bf16 attention gradients differ from fp32 by %.3g in relative norm",
              sqrt(num / den));
    cr_expect(sqrt(num / den) > 0, "bf16 attention gradients equal fp32's: is the bf16 path taken?");
    free(qkv), free(o32), free(o16), free(st32), free(st16), free(dout), free(d32), free(d16);
}

/* A bf16 stage keeps q | k | v in bf16 and attention widens each head from
 * that copy: with the same values (qkv holding the bf16 values as floats) the
 * results are bitwise those of the fp32 input, in both GEMM paths (half: the
 * GEMMs round to the same bf16; not half: the same fp32 operands), with a
 * causal or a key mask and with dropout. */
Test(bf16, attention_from_a_bf16_qkv_equals_attention_from_its_values)
{
    enum { B = 2, T = 70, C = 48, NH = 3 };
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
    size_t nst = (size_t)B * NH * T * 2;
    float *qkv = malloc(nq * sizeof *qkv), *dout = malloc(no * sizeof *dout);
    float *o1 = malloc(no * sizeof *o1), *o2 = malloc(no * sizeof *o2), *s1 = calloc(nst, sizeof *s1);
    float *s2 = calloc(nst, sizeof *s2), *d1 = malloc(nq * sizeof *d1), *d2 = malloc(nq * sizeof *d2);
    bf16 *qb = malloc(nq * sizeof *qb);
    int32_t mask[B * T];
    for (int i = 0; i < B * T; i++) mask[i] = (i * 7) % 5 != 0;
    fill(qkv, nq, 21, 1.0f);
    fill(dout, no, 22, 1.0f);
    bf16_from_f32(qb, qkv, nq);
    bf16_to_f32(qkv, qb, nq);
    int halves = bf16_cpu_supported(NULL) ? 2 : 1;
    for (int half = 0; half < halves; half++)
        for (int causal = 0; causal < 2; causal++)
            for (int drop = 0; drop < 2; drop++) {
                dropout_site d = {0};
                if (drop) d = (dropout_site){rng_key_make(5, RNG_DROPOUT), 77, 0.25f, 0, 0};
                const int32_t *km = causal ? NULL : mask;
                cr_assert_eq(attention_forward(o1, s1, qkv, NULL, km, causal, d, B, T, C, NH, half), ST_OK);
                cr_assert_eq(attention_forward(o2, s2, NULL, qb, km, causal, d, B, T, C, NH, half), ST_OK);
                cr_assert(memcmp(o1, o2, no * sizeof *o1) == 0 && memcmp(s1, s2, nst * sizeof *s1) == 0,
                          "half %d causal %d dropout %d: the forward from the bf16 copy differs", half, causal, drop);
                cr_assert_eq(attention_backward(d1, dout, qkv, NULL, s1, km, causal, d, B, T, C, NH, half),
                             ST_OK);
                memset(d2, 0xFF, nq * sizeof *d2); /* every gradient must be written */
                cr_assert_eq(attention_backward(d2, dout, NULL, qb, s2, km, causal, d, B, T, C, NH, half),
                             ST_OK);
                cr_assert(memcmp(d1, d2, nq * sizeof *d1) == 0,
                          "half %d causal %d dropout %d: the backward from the bf16 copy differs", half, causal, drop);
            }
    free(qkv), free(dout), free(o1), free(o2), free(s1), free(s2), free(d1), free(d2), free(qb);
}

/* |a - b| within a few fp32 roundings of |a| (the same formula on the same
 * input; only the compiler's vector code may contract it differently). */
static void expect_close(const float *a, const float *b, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        cr_assert(fabsf(a[i] - b[i]) <= 4 * EPS32 * fabsf(a[i]) + 1e-30f, "%s[%zu]: %.9g against %.9g", what, i,
                  a[i], b[i]);
}

/* b is y rounded to bf16 (nearest even), y taken within a few fp32
 * roundings (see expect_close). */
static int is_rounding_of(bf16 b, float y)
{
    float d = 4 * (float)EPS32 * fabsf(y);
    return b == bf16_round(y) || b == bf16_round(y - d) || b == bf16_round(y + d);
}

/* GELU (both forms) and SwiGLU from a bf16 input compute what the fp32
 * kernels compute on the input's values; the forward's output is that value
 * rounded to bf16 (nearest even). Inputs span the range where the
 * activations bend (|x| < 6) and beyond. */
Test(bf16, gelu_and_swiglu_from_bf16_inputs_equal_the_fp32_kernels_on_their_values)
{
    enum { N = 5, F = 203, n = 2 * N * F };
    float *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy), *y = malloc(n * sizeof *y);
    float *g1 = malloc(n * sizeof *g1), *g2 = malloc(n * sizeof *g2), *g3 = malloc(n * sizeof *g3);
    bf16 *xb = malloc(n * sizeof *xb), *yb = malloc(n * sizeof *yb);
    fill(x, n, 31, 3.0f);
    fill(dy, n, 32, 1.0f);
    x[0] = 0.0f, x[1] = -20.0f, x[2] = 20.0f;
    bf16_from_f32(xb, x, n);
    bf16_to_f32(x, xb, n);
    for (int kind = GELU_ERF; kind <= GELU_TANH; kind++) {
        gelu_forward(y, x, n, (gelu_kind)kind);
        gelu_forward_bf16(yb, xb, n, (gelu_kind)kind);
        for (size_t i = 0; i < n; i++)
            cr_assert(is_rounding_of(yb[i], y[i]), "gelu kind %d [%zu]: bf16 %.9g, fp32 %.9g", kind, i,
                      bf16_value(yb[i]), y[i]);
        gelu_backward(g1, NULL, x, dy, n, (gelu_kind)kind);
        gelu_backward_bf16(g2, NULL, xb, dy, n, (gelu_kind)kind);
        expect_close(g1, g2, n, "gelu backward");
        memcpy(g3, dy, n * sizeof *g3); /* in place over dout, the value again, as the model calls it */
        bf16 *again = malloc(n * sizeof *again);
        gelu_backward_bf16(g3, again, xb, g3, n, (gelu_kind)kind);
        expect_close(g1, g3, n, "gelu backward in place");
        cr_expect(memcmp(again, yb, n * sizeof *yb) == 0, "gelu kind %d: backward's bf16 value differs from forward's",
                  kind);
        free(again);
    }
    /* SwiGLU over (N, 2F) rows: gate | up */
    swiglu_forward(y, F, x, x + F, 2 * F, N, F);
    swiglu_forward_bf16(yb, F, xb, xb + F, 2 * F, N, F);
    for (size_t i = 0; i < (size_t)N * F; i++)
        cr_assert(is_rounding_of(yb[i], y[i]), "swiglu [%zu]: bf16 %.9g, fp32 %.9g", i, bf16_value(yb[i]), y[i]);
    swiglu_backward(g1, g1 + F, 2 * F, dy, F, x, x + F, 2 * F, N, F);
    memcpy(g3, x, (size_t)N * 2 * F * sizeof *g3);
    swiglu_backward(g3, g3 + F, 2 * F, dy, F, g3, g3 + F, 2 * F, N, F); /* in place, as the model calls it */
    cr_assert(memcmp(g1, g3, (size_t)N * 2 * F * sizeof *g3) == 0, "swiglu backward in place (fp32) differs");
    swiglu_backward_bf16(yb, yb + F, 2 * F, dy, F, xb, xb + F, 2 * F, N, F);
    for (size_t i = 0; i < (size_t)N * 2 * F; i++)
        cr_assert(is_rounding_of(yb[i], g1[i]), "swiglu backward [%zu]: bf16 %.9g, fp32 %.9g", i, bf16_value(yb[i]),
                  g1[i]);
    swiglu_backward_bf16(xb, xb + F, 2 * F, dy, F, xb, xb + F, 2 * F, N, F); /* in place over gate | up */
    cr_assert(memcmp(xb, yb, (size_t)N * 2 * F * sizeof *xb) == 0, "swiglu backward in place differs");
    free(x), free(dy), free(y), free(g1), free(g2), free(g3), free(xb), free(yb);
}

/* The bf16 GELU passes look the value and the slope up in tables made once:
 * for every one of the 65,536 bf16 inputs (NaN, infinities and subnormals
 * included; 7 more at the end for the scalar tail), the bits of the fp32
 * kernels on the input's value — the value rounded to bf16 (nearest even),
 * the slope times d(out) — in and out of place. */
Test(bf16, gelu_tables_give_the_fp32_kernels_bits_for_every_bf16_input)
{
    enum { n = 65536 + 7 };
    bf16 *xb = malloc(n * sizeof *xb), *yb = malloc(n * sizeof *yb), *again = malloc(n * sizeof *again);
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *dy = malloc(n * sizeof *dy);
    float *g1 = malloc(n * sizeof *g1), *g2 = malloc(n * sizeof *g2);
    for (int i = 0; i < n; i++) xb[i] = (bf16)(i < 65536 ? i : 0x3F80 + i);
    bf16_to_f32(x, xb, n);
    fill(dy, n, 33, 1.0f);
    for (int kind = GELU_ERF; kind <= GELU_TANH; kind++) {
        gelu_forward(y, x, n, (gelu_kind)kind);
        gelu_forward_bf16(yb, xb, n, (gelu_kind)kind);
        gelu_backward(g1, NULL, x, dy, n, (gelu_kind)kind);
        memcpy(g2, dy, n * sizeof *g2);
        gelu_backward_bf16(g2, again, xb, g2, n, (gelu_kind)kind);
        for (int i = 0; i < n; i++) {
            int nan = isnan(x[i]);
            cr_assert(nan ? isnan(bf16_value(yb[i])) : yb[i] == bf16_round(y[i]), "kind %d input 0x%04x: value 0x%04x, "
                      "fp32 kernel %.9g", kind, xb[i], yb[i], y[i]);
            cr_assert(again[i] == yb[i] || (nan && isnan(bf16_value(again[i]))), "kind %d input 0x%04x: backward's "
                      "value differs", kind, xb[i]);
            cr_assert(nan ? isnan(g2[i]) : memcmp(&g1[i], &g2[i], sizeof *g1) == 0, "kind %d input 0x%04x: d(in) %.9g, "
                      "fp32 kernel %.9g", kind, xb[i], g2[i], g1[i]);
        }
        gelu_backward_bf16(g2, NULL, xb, dy, n, (gelu_kind)kind); /* without the value, not in place */
        for (int i = 0; i < n; i++)
            cr_assert(isnan(x[i]) ? isnan(g2[i]) : memcmp(&g1[i], &g2[i], sizeof *g1) == 0, "kind %d input 0x%04x",
                      kind, xb[i]);
    }
    free(xb), free(yb), free(again), free(x), free(y), free(dy), free(g1), free(g2);
}

/* A stage remakes a pre-norm block's normalised GEMM input in backward from
 * the norm's input and kept statistics: it must be bitwise forward's output
 * (fp32), or that output rounded to bf16, or backward's weight gradients
 * would multiply other values than forward did. Rows with a large mean and a
 * constant row too. */
Test(bf16, norms_remade_are_forwards_output_bitwise)
{
    enum { N = 9, C = 200 };
    float *x = malloc(N * C * sizeof *x), *w = malloc(C * sizeof *w), *b = malloc(C * sizeof *b);
    float *y = malloc(N * C * sizeof *y), *y2 = malloc(N * C * sizeof *y2), mean[N], rstd[N];
    bf16 *want = malloc(N * C * sizeof *want), *got = malloc(N * C * sizeof *got);
    fill(x, N * C, 41, 2.0f);
    fill(w, C, 42, 1.0f);
    fill(b, C, 43, 0.5f);
    for (int c = 0; c < C; c++) x[3 * C + c] += 1000.0f, x[5 * C + c] = 0.25f;
    layernorm_forward(y, mean, rstd, x, w, b, N, C, 1e-5f);
    memset(y2, 0xFF, N * C * sizeof *y2);
    layernorm_apply(y2, x, mean, rstd, w, b, N, C);
    cr_assert(memcmp(y, y2, N * C * sizeof *y2) == 0, "LayerNorm remade in fp32 differs from forward's");
    bf16_from_f32(want, y, N * C);
    memset(got, 0xFF, N * C * sizeof *got);
    layernorm_apply_bf16(got, x, mean, rstd, w, b, N, C);
    cr_assert(memcmp(want, got, N * C * sizeof *got) == 0, "LayerNorm remade in bf16 differs from forward's");
    rmsnorm_forward(y, rstd, x, w, N, C, 1e-5f);
    memset(y2, 0xFF, N * C * sizeof *y2);
    rmsnorm_apply(y2, x, rstd, w, N, C);
    cr_assert(memcmp(y, y2, N * C * sizeof *y2) == 0, "RMSNorm remade in fp32 differs from forward's");
    bf16_from_f32(want, y, N * C);
    memset(got, 0xFF, N * C * sizeof *got);
    rmsnorm_apply_bf16(got, x, rstd, w, N, C);
    cr_assert(memcmp(want, got, N * C * sizeof *got) == 0, "RMSNorm remade in bf16 differs from forward's");
    free(x), free(w), free(b), free(y), free(y2), free(want), free(got);
}

/* The bf16 head's GEMM rounds its fp32 sums to bf16 as it writes them: each
 * entry within half a bf16 ulp of a value within bound B of the exact
 * product of the (bf16) operands. */
Test(bf16, gemm_with_a_bf16_result_rounds_the_fp32_product)
{
    enum { M = 37, N = 301, K = 96 };
    float *a = malloc(M * K * sizeof *a), *b = malloc(N * K * sizeof *b);
    bf16 *ab = malloc(M * K * sizeof *ab), *bb = malloc(N * K * sizeof *bb), *c = malloc(M * N * sizeof *c);
    fill(a, M * K, 51, 1.0f);
    fill(b, N * K, 52, 1.0f);
    bf16_from_f32(ab, a, M * K);
    bf16_from_f32(bb, b, N * K);
    cr_assert_eq(tensor_gemm_bf16_out16(0, 1, M, N, K, ab, K, bb, K, c, N), ST_OK, "%s", st_message());
    int exact = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double d = 0.0, mag = 0.0;
            for (int k = 0; k < K; k++) {
                double p = (double)bf16_value(ab[i * K + k]) * bf16_value(bb[j * K + k]);
                d += p, mag += fabs(p);
            }
            double got = bf16_value(c[i * N + j]), slack = K * EPS32 * mag * 1.01;
            cr_assert(fabs(got - d) <= U * (fabs(d) + slack) + slack, "(%d, %d): %.9g against %.9g", i, j, got, d);
            exact += c[i * N + j] == bf16_round((float)d);
        }
    cr_expect(exact > M * N * 9 / 10, "only %d of %d entries are the nearest bf16 of the exact product", exact, M * N);
    free(a), free(b), free(ab), free(bb), free(c);
}

/* Cross-entropy over bf16 logits (plus an fp32 bias) computes what the fp32
 * kernel computes over those values, its gradient rounded to bf16; the
 * vocabulary-split phases, reduced as the tensor group reduces them, give
 * the same losses and gradients. Rows with target -100 have no loss and a
 * zero gradient. */
Test(bf16, crossentropy_over_bf16_logits_equals_the_fp32_kernel_on_their_values)
{
    enum { N = 6, V = 333, S = 140 }; /* two slices: [0, S), [S, V) */
    float *x = malloc(N * V * sizeof *x), *bias = malloc(V * sizeof *bias), *g = malloc(N * V * sizeof *g);
    bf16 *lb = malloc(N * V * sizeof *lb), *ls = malloc(N * V * sizeof *ls);
    int32_t targets[N] = {5, 332, -100, 0, 139, 140};
    float rl32[N], rl16[N], rls[N], mx[N], mx2[N], st[2 * N], st2[2 * N];
    fill(x, N * V, 61, 3.0f);
    fill(bias, V, 62, 0.5f);
    bf16_from_f32(lb, x, N * V);
    memcpy(ls, lb, N * V * sizeof *ls);
    for (int n = 0; n < N; n++)
        for (int v = 0; v < V; v++) g[n * V + v] = bf16_value(lb[n * V + v]) + bias[v];
    int c32 = 0, c16 = 0, cs = 0;
    double l32 = crossentropy_fused(g, V, targets, N, V, 0.25f, rl32, &c32);
    double l16 = crossentropy_fused_bf16(lb, V, bias, targets, N, V, 0.25f, rl16, &c16);
    cr_assert(fabs(l16 - l32) <= 1e-6 * fabs(l32), "loss %.9g over bf16 logits, %.9g in fp32", l16, l32);
    cr_assert_eq(c16, c32, "correct rows %d against %d", c16, c32);
    for (int i = 0; i < N * V; i++)
        cr_assert(is_rounding_of(lb[i], g[i]), "gradient [%d]: %.9g, fp32 %.9g", i, bf16_value(lb[i]), g[i]);
    for (int v = 0; v < V; v++) cr_assert_eq(lb[2 * V + v], 0, "an ignored row has a gradient");
    /* the split: each slice's phases, then the group's max and sum */
    crossentropy_slice_max_bf16(ls, V, bias, N, S, mx);
    crossentropy_slice_max_bf16(ls + S, V, bias + S, N, V - S, mx2);
    for (int n = 0; n < N; n++) mx[n] = mx2[n] = fmaxf(mx[n], mx2[n]);
    crossentropy_slice_sumexp_bf16(ls, V, bias, targets, N, 0, S, mx, st);
    crossentropy_slice_sumexp_bf16(ls + S, V, bias + S, targets, N, S, V - S, mx2, st2);
    for (int i = 0; i < 2 * N; i++) st[i] = st2[i] = st[i] + st2[i];
    double ls1 = crossentropy_slice_grad_bf16(ls, V, bias, targets, N, 0, S, mx, st, 0.25f, rls, &cs);
    double ls2 = crossentropy_slice_grad_bf16(ls + S, V, bias + S, targets, N, S, V - S, mx2, st2, 0.25f, rls, NULL);
    cr_assert(fabs(ls1 - l32) <= 1e-5 * fabs(l32) && ls1 == ls2, "split loss %.9g / %.9g, fused %.9g", ls1, ls2, l32);
    for (int i = 0; i < N * V; i++)
        cr_assert(is_rounding_of(ls[i], g[i]) || fabsf(bf16_value(ls[i]) - g[i]) <= 1e-6f * 0.25f,
                  "split gradient [%d]: %.9g, fp32 %.9g", i, bf16_value(ls[i]), g[i]);
    free(x), free(bias), free(g), free(lb), free(ls);
}

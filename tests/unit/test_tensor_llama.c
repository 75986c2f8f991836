/* The Llama-style decoder kernels (tensor/llama.c): RMSNorm, rotary position
 * embeddings and SwiGLU against PyTorch (tests/reference/fixtures/
 * llama-kernels.safetensors, made by make_fixtures.py's llama_kernels) and by
 * finite differences, plus RoPE's defining properties. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/safetensors.h"
#include "tensor/tensor.h"

#define FIXTURE "tests/reference/fixtures/llama-kernels.safetensors"

static safet_file *fx;

static void open_fixture(void)
{
    tensor_runtime rt;
    tensor_runtime_init(1, 1, &rt);
    cr_assert_eq(safet_open(&fx, FIXTURE), ST_OK, "%s", st_message());
}
static void close_fixture(void) { safet_close(fx); }

TestSuite(llama, .init = open_fixture, .fini = close_fixture);

/* Tensor name of the fixture as n floats (malloc'd). */
static float *get(const char *name, size_t n)
{
    float *x = malloc(n * sizeof(float));
    cr_assert(x);
    cr_assert_eq(safet_read_f32(fx, name, x, (int64_t)n), ST_OK, "%s", st_message());
    return x;
}

/* Largest |a - b| / (|b| + floor) over n values. */
static double rel_err(const float *a, const float *b, size_t n, double floor)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / (fabs((double)b[i]) + floor);
        worst = e > worst ? e : worst;
    }
    return worst;
}

/* Central differences of L = sum(f(x) * R) in double over every entry of x. */
typedef double (*loss_fn)(void *ctx);
static double fd_worst(loss_fn loss, void *ctx, float *x, const float *grad, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        float keep = x[i], h = 1e-2f * (fabsf(keep) > 1.0f ? fabsf(keep) : 1.0f);
        x[i] = keep + h;
        double lp = loss(ctx);
        x[i] = keep - h;
        double lm = loss(ctx);
        x[i] = keep;
        double num = (lp - lm) / (2.0 * (double)h);
        double e = fabs(num - grad[i]) / (fabs(num) + fabs((double)grad[i]) + 1e-2);
        worst = e > worst ? e : worst;
    }
    return worst;
}
#define FD_TOL 2e-3

/* ---- RMSNorm ---- */
enum { RN = 6, RC = 16 };
typedef struct { float *x, *w, *r; float eps; } rms_ctx;
static double rms_loss(void *p)
{
    rms_ctx *k = p;
    float y[RN * RC], rstd[RN];
    rmsnorm_forward(y, rstd, k->x, k->w, RN, RC, k->eps);
    double s = 0;
    for (int i = 0; i < RN * RC; i++) s += (double)y[i] * k->r[i];
    return s;
}

Test(llama, rmsnorm_matches_pytorch_and_finite_differences)
{
    rms_ctx k = {get("rms.x", RN * RC), get("rms.w", RC), get("rms.r", RN * RC),
                 (float)atof(safet_metadata(fx, "rms_eps"))};
    float *ty = get("rms.y", RN * RC), *tdx = get("rms.dx", RN * RC), *tdw = get("rms.dw", RC);
    float y[RN * RC], rstd[RN], dx[RN * RC], dw[RC];
    rmsnorm_forward(y, rstd, k.x, k.w, RN, RC, k.eps);
    /* backward accumulates: start from 1 and take it off again */
    for (int i = 0; i < RN * RC; i++) dx[i] = 1.0f;
    for (int i = 0; i < RC; i++) dw[i] = 1.0f;
    rmsnorm_backward(dx, dw, k.r, k.x, k.w, rstd, RN, RC);
    for (int i = 0; i < RN * RC; i++) dx[i] -= 1.0f;
    for (int i = 0; i < RC; i++) dw[i] -= 1.0f;
    double ey = rel_err(y, ty, RN * RC, 1e-3), edx = rel_err(dx, tdx, RN * RC, 1e-2), edw = rel_err(dw, tdw, RC, 1e-2);
    cr_log_info("rmsnorm vs PyTorch: y %.2g, dx %.2g, dw %.2g", ey, edx, edw);
    cr_expect(ey < 1e-6, "rmsnorm output differs from PyTorch by %g", ey);
    cr_expect(edx < 1e-5 && edw < 1e-5, "rmsnorm gradients differ from PyTorch: dx %g, dw %g", edx, edw);
    cr_expect(fd_worst(rms_loss, &k, k.x, dx, RN * RC) < FD_TOL, "rmsnorm dx: finite differences disagree");
    cr_expect(fd_worst(rms_loss, &k, k.w, dw, RC) < FD_TOL, "rmsnorm dw: finite differences disagree");
    free(k.x), free(k.w), free(k.r), free(ty), free(tdx), free(tdw);
}

/* ---- RoPE ---- */
enum { PB = 2, PT = 5, PH = 3, PS = 8, PROW = PH * PS };
typedef struct { float *x, *r, *cs; } rope_ctx;
static double rope_loss(void *p)
{
    rope_ctx *k = p;
    float y[PB * PT * PROW];
    memcpy(y, k->x, sizeof y);
    rope_forward(y, PROW, PB, PT, PH, PS, k->cs);
    double s = 0;
    for (int i = 0; i < PB * PT * PROW; i++) s += (double)y[i] * k->r[i];
    return s;
}

Test(llama, rope_matches_pytorch_and_finite_differences)
{
    float theta = (float)atof(safet_metadata(fx, "rope_theta"));
    float cs[PT * PS], *tcos = get("rope.cos", PT * PS), *tsin = get("rope.sin", PT * PS);
    rope_table(cs, PT, PS, theta);
    /* transformers' table repeats the half: cos[t][i] = cos[t][i + hs/2] */
    for (int t = 0; t < PT; t++)
        for (int i = 0; i < PS / 2; i++) {
            cr_expect(fabsf(cs[t * PS + i] - tcos[t * PS + i]) <= 1e-7f, "cos at t %d, i %d", t, i);
            cr_expect(fabsf(cs[t * PS + PS / 2 + i] - tsin[t * PS + i]) <= 1e-7f, "sin at t %d, i %d", t, i);
        }
    size_t n = PB * PT * PROW;
    rope_ctx k = {get("rope.x", n), get("rope.r", n), cs};
    float *ty = get("rope.y", n), *tdx = get("rope.dx", n), *y = malloc(n * sizeof(float)), *dx = malloc(n * sizeof(float));
    memcpy(y, k.x, n * sizeof(float));
    rope_forward(y, PROW, PB, PT, PH, PS, cs);
    memcpy(dx, k.r, n * sizeof(float));
    rope_backward(dx, PROW, PB, PT, PH, PS, cs);
    double ey = rel_err(y, ty, n, 1e-3), edx = rel_err(dx, tdx, n, 1e-3);
    cr_log_info("rope vs PyTorch: y %.2g, dx %.2g", ey, edx);
    cr_expect(ey < 1e-6 && edx < 1e-6, "rope differs from PyTorch: y %g, dx %g", ey, edx);
    cr_expect(fd_worst(rope_loss, &k, k.x, dx, n) < FD_TOL, "rope dx: finite differences disagree");
    free(k.x), free(k.r), free(ty), free(tdx), free(y), free(dx), free(tcos), free(tsin);
}

/* The point of RoPE: q . k after rotation depends on the positions only
 * through their difference; rotations keep norms; backward undoes forward. */
Test(llama, rope_scores_depend_on_the_position_difference)
{
    enum { T = 40, HS = 16 };
    float cs[T * HS], q[T * HS], k[T * HS];
    rope_table(cs, T, HS, 10000.0f);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < HS; i++) {
            q[t * HS + i] = sinf(0.7f * (float)i + 1.0f); /* the same vector at every position */
            k[t * HS + i] = cosf(1.3f * (float)i - 0.5f);
        }
    float q0[T * HS];
    memcpy(q0, q, sizeof q);
    rope_forward(q, HS, 1, T, 1, HS, cs);
    rope_forward(k, HS, 1, T, 1, HS, cs);
    for (int t = 0; t < T; t++) {
        double n0 = 0, n1 = 0;
        for (int i = 0; i < HS; i++) n0 += (double)q0[t * HS + i] * q0[t * HS + i], n1 += (double)q[t * HS + i] * q[t * HS + i];
        cr_expect(fabs(n0 - n1) < 1e-5 * n0, "position %d: the rotation changed the norm", t);
    }
    for (int d = 0; d < 5; d++) {
        double ref = 0;
        for (int i = 0; i < HS; i++) ref += (double)q[(d + 3) * HS + i] * k[3 * HS + i];
        for (int t = 3; t + d < T; t += 7) {
            double s = 0;
            for (int i = 0; i < HS; i++) s += (double)q[(t + d) * HS + i] * k[t * HS + i];
            cr_expect(fabs(s - ref) < 1e-4, "q(t + %d) . k(t) at t = %d is %g, at t = 3 %g", d, t, s, ref);
        }
    }
    rope_backward(q, HS, 1, T, 1, HS, cs);
    for (int i = 0; i < T * HS; i++) cr_expect(fabsf(q[i] - q0[i]) < 1e-5f, "backward does not undo forward at %d", i);
}

/* ---- SwiGLU ---- */
enum { SN = 6, SF = 10 };
typedef struct { float *g, *u, *r; } swi_ctx;
static double swi_loss(void *p)
{
    swi_ctx *k = p;
    float y[SN * SF];
    swiglu_forward(y, SF, k->g, k->u, SF, SN, SF);
    double s = 0;
    for (int i = 0; i < SN * SF; i++) s += (double)y[i] * k->r[i];
    return s;
}

Test(llama, swiglu_matches_pytorch_and_finite_differences)
{
    swi_ctx k = {get("swiglu.gate", SN * SF), get("swiglu.up", SN * SF), get("swiglu.r", SN * SF)};
    float *ty = get("swiglu.y", SN * SF), *tdg = get("swiglu.dgate", SN * SF), *tdu = get("swiglu.dup", SN * SF);
    float y[SN * SF], dg[SN * SF], du[SN * SF];
    swiglu_forward(y, SF, k.g, k.u, SF, SN, SF);
    swiglu_backward(dg, du, SF, k.r, SF, k.g, k.u, SF, SN, SF);
    double ey = rel_err(y, ty, SN * SF, 1e-3), eg = rel_err(dg, tdg, SN * SF, 1e-3), eu = rel_err(du, tdu, SN * SF, 1e-3);
    cr_log_info("swiglu vs PyTorch: y %.2g, dgate %.2g, dup %.2g", ey, eg, eu);
    cr_expect(ey < 1e-6 && eg < 1e-6 && eu < 1e-6, "swiglu differs from PyTorch: y %g, dgate %g, dup %g", ey, eg, eu);
    cr_expect(fd_worst(swi_loss, &k, k.g, dg, SN * SF) < FD_TOL, "swiglu dgate: finite differences disagree");
    cr_expect(fd_worst(swi_loss, &k, k.u, du, SN * SF) < FD_TOL, "swiglu dup: finite differences disagree");
    free(k.g), free(k.u), free(k.r), free(ty), free(tdg), free(tdu);
}

/* The model's GEMMs in both precisions: BLIS sgemm (the fp32 path, kernels
 * chosen by tensor_runtime) against oneDNN bf16 x bf16 -> fp32 (the bf16
 * path), at every shape a linear layer runs: forward out = x W, backward
 * d(x) = d(out) W^T and d(W) += x^T d(out) (GPT's Conv1D layout (C, OC)).
 * Also oneDNN's f32 matmul (dnnl32: the alternative fp32 engine) and the
 * cost of converting the activation operand to bf16.
 * Usage: bench_gemm [REPS [THREADS]]  (defaults 7, auto)
 * Prints one line per shape: GFLOP/s of each (median of REPS after a warm-up)
 * and the ratio; a closing line with the geometric mean ratio.
 *
 * bench_gemm --peak [N [REPS [THREADS]]] (defaults 2048 5 1): the peaks that MFU is measured against
 * (tests/bench/bench_torch_env.sh, bf16_peak): C = A B on N x N x N, best of
 * REPS after a warm-up, through tensor_gemm_bf16 (operands converted beforehand, not
 * timed), tensor_gemm_blis (BLIS sgemm, tensor_runtime's kernel set) and
 * tensor_gemm (oneDNN's f32 matmul, the engine of mpilm's fp32 linear layers).
 * Prints
 *   "bf16gemm N=2048 threads=T: X GFLOP/s (best of R)"
 *   "sgemm N=2048 threads=T arch=A: Y GFLOP/s (best of R)"
 *   "dnnl32gemm N=2048 threads=T: Z GFLOP/s (best of R)"
 * (T = the threads tensor_runtime settled on: OMP_NUM_THREADS or
 * BLIS_NUM_THREADS, when set, win over THREADS). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/timer.h"
#include "tensor/bf16.h"
#include "tensor/tensor.h"

typedef struct shape {
    const char *what;
    int ta, tb, M, N, K;
} shape;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* Row-major storage of op(X) (rows, cols): (cols, rows) when transposed. */
static int ld_of(int t, int rows, int cols) { return t ? rows : cols; }

static int peak(int n, int reps, int threads)
{
    tensor_runtime rt;
    if (tensor_runtime_init(threads, 1, &rt) != ST_OK) {
        fprintf(stderr, "bench_gemm: %s\n", st_message());
        return 1;
    }
    size_t nn = (size_t)n * (size_t)n;
    float *a = malloc(nn * sizeof(float)), *b = malloc(nn * sizeof(float)), *c = calloc(nn, sizeof(float));
    bf16 *a16 = malloc(nn * sizeof(bf16)), *b16 = malloc(nn * sizeof(bf16));
    if (!a || !b || !c || !a16 || !b16) {
        fprintf(stderr, "bench_gemm: out of memory for N=%d\n", n);
        return 1;
    }
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)(i % 7) * 0.25f;
        b[i] = (float)(i % 5) * 0.5f;
    }
    bf16_from_f32(a16, a, nn);
    bf16_from_f32(b16, b, nn);
    double best16 = 1e30, best32 = 1e30, bestd32 = 1e30;
    for (int r = 0; r <= reps; r++) { /* r = 0 warms caches, packing buffers and creates the primitive */
        double t0 = time_now();
        if (tensor_gemm_bf16(0, 0, n, n, n, a16, n, b16, n, 0.0f, c, n) != ST_OK) {
            fprintf(stderr, "bench_gemm: %s\n", st_message());
            return 1;
        }
        double t1 = time_now();
        tensor_gemm_blis(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double t2 = time_now();
        tensor_gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double t3 = time_now();
        if (r == 0) continue;
        if (t3 - t2 < bestd32) bestd32 = t3 - t2;
        if (t1 - t0 < best16) best16 = t1 - t0;
        if (t2 - t1 < best32) best32 = t2 - t1;
    }
    double flops = 2.0 * n * n * (double)n;
    printf("bf16gemm N=%d threads=%d: %.1f GFLOP/s (best of %d)\n", n, rt.threads, flops / best16 * 1e-9, reps);
    printf("sgemm N=%d threads=%d arch=%s: %.1f GFLOP/s (best of %d)\n", n, rt.threads, rt.arch,
           flops / best32 * 1e-9, reps);
    printf("dnnl32gemm N=%d threads=%d: %.1f GFLOP/s (best of %d)\n", n, rt.threads, flops / bestd32 * 1e-9, reps);
    free(a), free(b), free(c), free(a16), free(b16);
    tensor_gemm_bf16_shutdown();
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--peak") == 0) {
        int n = argc > 2 ? atoi(argv[2]) : 2048, reps = argc > 3 ? atoi(argv[3]) : 5;
        int threads = argc > 4 ? atoi(argv[4]) : 1;
        if (argc > 5 || n <= 0 || reps <= 0 || threads <= 0) {
            fprintf(stderr, "usage: bench_gemm --peak [N [REPS [THREADS]]]  (defaults 2048 5 1)\n");
            return 2;
        }
        return peak(n, reps, threads);
    }
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    int threads = argc > 2 ? atoi(argv[2]) : -1;
    tensor_runtime rt;
    tensor_runtime_init(threads, 1, &rt);
    /* N tokens of a micro-batch: gpt2-small 4 x 256, gpt-mini 8 x 256 */
    static const shape shapes[] = {
        {"gpt2-small qkv fwd", 0, 0, 1024, 2304, 768},   {"gpt2-small qkv dx", 0, 1, 1024, 768, 2304},
        {"gpt2-small qkv dW", 1, 0, 768, 2304, 1024},    {"gpt2-small fc fwd", 0, 0, 1024, 3072, 768},
        {"gpt2-small fc dx", 0, 1, 1024, 768, 3072},     {"gpt2-small fc dW", 1, 0, 768, 3072, 1024},
        {"gpt2-small fc2 fwd", 0, 0, 1024, 768, 3072},   {"gpt2-small fc2 dx", 0, 1, 1024, 3072, 768},
        {"gpt2-small fc2 dW", 1, 0, 3072, 768, 1024},    {"gpt2-small head fwd", 0, 1, 256, 50257, 768},
        {"gpt2-small head dx", 0, 0, 256, 768, 50257},   {"gpt2-small head dW", 1, 0, 50257, 768, 256},
        {"gpt-mini fc fwd", 0, 0, 2048, 1024, 256},      {"gpt-mini fc dx", 0, 1, 2048, 256, 1024},
        {"gpt-mini fc dW", 1, 0, 256, 1024, 2048},       {"gpt-mini fc2 fwd", 0, 0, 2048, 256, 1024},
        {"gpt-mini head fwd", 0, 1, 256, 8192, 256},     {"gpt-mini head dx", 0, 0, 256, 256, 8192},
        {"gpt-mini head dW", 1, 0, 8192, 256, 256},
    };
    int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    double *t32 = malloc(sizeof(double) * (size_t)reps), *t16 = malloc(sizeof(double) * (size_t)reps);
    double *tdn = malloc(sizeof(double) * (size_t)reps);
    double log_sum = 0.0, log_dnn = 0.0;
    printf("%-22s %6s %6s %6s %10s %10s %10s %6s %10s\n", "shape", "M", "N", "K", "fp32_GF/s", "dnnl32_GF/s",
           "bf16_GF/s", "ratio", "cvt_ms");
    for (int s = 0; s < n_shapes; s++) {
        const shape *p = &shapes[s];
        size_t na = (size_t)p->M * p->K, nb = (size_t)p->K * p->N, nc = (size_t)p->M * p->N;
        float *a = malloc(na * sizeof(float)), *b = malloc(nb * sizeof(float)), *c = calloc(nc, sizeof(float));
        bf16 *a16 = malloc(na * sizeof(bf16)), *b16 = malloc(nb * sizeof(bf16));
        if (!a || !b || !c || !a16 || !b16 || !t32 || !t16 || !tdn) return 1;
        for (size_t i = 0; i < na; i++) a[i] = (float)((i * 7) % 13) * 0.01f - 0.06f;
        for (size_t i = 0; i < nb; i++) b[i] = (float)((i * 5) % 11) * 0.01f - 0.05f;
        bf16_from_f32(b16, b, nb);
        int lda = ld_of(p->ta, p->M, p->K), ldb = ld_of(p->tb, p->K, p->N);
        double cvt = 0.0;
        for (int r = -1; r < reps; r++) {
            double t0 = time_now();
            tensor_gemm_blis(p->ta, p->tb, p->M, p->N, p->K, 1.0f, a, lda, b, ldb, 0.0f, c, p->N);
            double t1 = time_now();
            bf16_from_f32(a16, a, na);
            double t2 = time_now();
            if (tensor_gemm_bf16(p->ta, p->tb, p->M, p->N, p->K, a16, lda, b16, ldb, 0.0f, c, p->N) != ST_OK) {
                fprintf(stderr, "bench_gemm: %s\n", st_message());
                return 1;
            }
            double t3 = time_now();
            if (tensor_gemm_onednn_f32(p->ta, p->tb, p->M, p->N, p->K, a, lda, b, ldb, 0.0f, c, p->N) != ST_OK) {
                fprintf(stderr, "bench_gemm: %s\n", st_message());
                return 1;
            }
            double t4 = time_now();
            if (r < 0) continue;
            t32[r] = t1 - t0;
            t16[r] = t3 - t2;
            tdn[r] = t4 - t3;
            cvt += (t2 - t1) / reps;
        }
        double flops = 2.0 * p->M * p->N * (double)p->K;
        double g32 = flops / median(t32, reps) * 1e-9, g16 = flops / median(t16, reps) * 1e-9;
        double gdn = flops / median(tdn, reps) * 1e-9;
        log_sum += log(g16 / g32);
        log_dnn += log(gdn / g32);
        printf("%-22s %6d %6d %6d %10.0f %10.0f %10.0f %6.2f %10.3f\n", p->what, p->M, p->N, p->K, g32, gdn, g16,
               g16 / g32, 1e3 * cvt);
        free(a), free(b), free(c), free(a16), free(b16);
    }
    printf("bf16/fp32 geometric mean over %d shapes: %.2f; oneDNN f32 / BLIS: %.2f (threads %d, BLIS %s)\n",
           n_shapes, exp(log_sum / n_shapes), exp(log_dnn / n_shapes), rt.threads, rt.arch);
    free(tdn);
    free(t32);
    free(t16);
    tensor_gemm_bf16_shutdown();
    return 0;
}

/* BLIS single-precision GEMM peak: C = A B on N x N x N, best of REPS runs.
 * Usage: bench_sgemm [N [REPS [THREADS]]]  (defaults 2048 5 1)
 * Prints: "sgemm N=2048 threads=T arch=NAME: X GFLOP/s (best of R)". The
 * kernel set is BLIS's choice, or BLIS_ARCH_TYPE's when that is set. */
#include <blis.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/timer.h"

int main(int argc, char **argv)
{
    dim_t n = argc > 1 ? atol(argv[1]) : 2048;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    int threads = argc > 3 ? atoi(argv[3]) : 1;
    if (n <= 0 || reps <= 0 || threads <= 0) {
        fprintf(stderr, "usage: bench_sgemm [N [REPS [THREADS]]]\n");
        return 2;
    }
    float *a = malloc(sizeof(float) * (size_t)(n * n)), *b = malloc(sizeof(float) * (size_t)(n * n)),
          *c = malloc(sizeof(float) * (size_t)(n * n));
    if (!a || !b || !c) {
        fprintf(stderr, "bench_sgemm: out of memory for N=%ld\n", (long)n);
        return 1;
    }
    for (dim_t i = 0; i < n * n; i++) {
        a[i] = (float)(i % 7) * 0.25f;
        b[i] = (float)(i % 5) * 0.5f;
        c[i] = 0;
    }
    bli_thread_set_num_threads(threads);
    float one = 1, zero = 0;
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {   /* the first run warms caches and packing buffers */
        double t0 = time_now();
        bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, n, n, n, &one, a, n, 1, b, n, 1, &zero, c, n, 1);
        double dt = time_now() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    printf("sgemm N=%ld threads=%d arch=%s: %.1f GFLOP/s (best of %d)\n", (long)n, threads,
           bli_arch_string(bli_arch_query_id()), 2.0 * n * n * n / best * 1e-9, reps);
    free(a);
    free(b);
    free(c);
    return 0;
}

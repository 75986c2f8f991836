/* tensor/runtime — which BLIS kernels run, on how many threads.
 *
 * Debian's BLIS 0.9.0 does not recognise some recent x86-64 CPUs and then
 * silently runs its portable "generic" kernels, ~5x slower than its own
 * AVX-512/AVX2 ones. It reads BLIS_ARCH_TYPE once, when it initialises, and
 * parses it as a NUMBER (the arch_t id; a name such as "skx" reads as 0, which
 * only happens to be skx). So before the first BLIS call, unless the user set
 * it, we set the id of the kernel set the CPU's features call for: skx for
 * AVX-512 (F, DQ, BW, VL), haswell for AVX2 + FMA; both run on any CPU with
 * those features, Intel or AMD. */
#include <blis.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/timer.h"
#include "tensor/bf16.h"
#include "tensor/tensor.h"

/* The arch_t id for this CPU, or -1 to leave the choice to BLIS. */
static int arch_for_cpu(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return BLIS_ARCH_SKX;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return BLIS_ARCH_HASWELL;
    return -1;
}

/* Cores this process may run on; when it may run on all of the node's cores
 * (not bound), its share is the node's cores divided among the local ranks. */
static int auto_threads(int local_ranks)
{
    cpu_set_t set;
    int usable = 1;
    if (sched_getaffinity(0, sizeof set, &set) == 0) usable = CPU_COUNT(&set);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (local_ranks > 1 && online > 0 && usable >= online) usable = (int)online / local_ranks;
    return usable < 1 ? 1 : usable;
}

static int env_threads(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    int n = atoi(v);
    return n > 0 ? n : 0;
}

status_t tensor_runtime_init(int requested, int local_ranks, tensor_runtime *rt)
{
    memset(rt, 0, sizeof *rt);
    const char *user_arch = getenv("BLIS_ARCH_TYPE");
    if (!user_arch || !*user_arch) {
        int arch = arch_for_cpu();
        if (arch >= 0) {
            char id[16];
            snprintf(id, sizeof id, "%d", arch);
            setenv("BLIS_ARCH_TYPE", id, 1);
            rt->arch_chosen = 1;
        }
    }
    int n;
    if ((n = env_threads("BLIS_NUM_THREADS")) > 0) {
        snprintf(rt->threads_origin, sizeof rt->threads_origin, "BLIS_NUM_THREADS");
    } else if ((n = env_threads("OMP_NUM_THREADS")) > 0) {
        snprintf(rt->threads_origin, sizeof rt->threads_origin, "OMP_NUM_THREADS");
    } else if (requested > 0) {
        n = requested;
        snprintf(rt->threads_origin, sizeof rt->threads_origin, "run.threads");
    } else {
        n = auto_threads(local_ranks);
        snprintf(rt->threads_origin, sizeof rt->threads_origin, "auto");
    }
    rt->threads = n;
    omp_set_num_threads(n);
    bli_thread_set_num_threads(n);
    snprintf(rt->arch, sizeof rt->arch, "%s", bli_arch_string(bli_arch_query_id()));
    return ST_OK;
}

/* One n^3 GEMM of the linear layers' engine: fp32 (tensor.h's tensor_gemm) or bf16. */
static status_t peak_gemm(int use_bf16, int n, const void *a, const void *b, float *c)
{
    if (use_bf16) return tensor_gemm_bf16(0, 0, n, n, n, a, n, b, n, 0.0f, c, n);
    tensor_gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    return ST_OK;
}

/* Best of reps n^3 GEMMs after one warm-up, in GFLOP/s, on the runtime's
 * threads, through the engine the linear layers use in that precision.
 * Allocates (set-up time only); 0 when memory or the GEMM fails. */
double tensor_gemm_peak_gflops(int use_bf16, int n, int reps)
{
    size_t nn = (size_t)n * n, elt = use_bf16 ? sizeof(bf16) : sizeof(float);
    float *x = aligned_alloc(64, nn * sizeof(float)), *c = aligned_alloc(64, nn * sizeof(float));
    void *a = aligned_alloc(64, nn * elt), *b = aligned_alloc(64, nn * elt);
    double best = 0.0;
    if (x && c && a && b) {
        for (size_t i = 0; i < nn; i++) x[i] = 1e-3f * (float)(i % 97);
        if (use_bf16) {
            bf16_from_f32(a, x, nn);
            bf16_from_f32(b, x, nn);
        } else {
            memcpy(a, x, nn * sizeof(float));
            memcpy(b, x, nn * sizeof(float));
        }
        for (int r = 0; r <= reps; r++) {
            double t0 = time_now();
            if (peak_gemm(use_bf16, n, a, b, c) != ST_OK) break;
            double g = 2.0 * (double)n * n * n / (time_now() - t0) / 1e9;
            if (r > 0 && g > best) best = g; /* the first run warms up */
        }
    }
    free(x), free(c), free(a), free(b);
    return best;
}

/* tensor/runtime — which BLIS kernels run, on how many threads.
 *
 * Debian's BLIS 0.9.0 does not recognise recent x86-64 CPUs and silently runs
 * its portable "generic" kernels, ~5x slower than its own AVX-512/AVX2 ones.
 * BLIS reads BLIS_ARCH_TYPE once, when it initialises, so the choice must be
 * made before the first BLIS call: when the user has not set it, we pick the
 * kernel set from the CPU's features (skx for AVX-512, haswell for AVX2+FMA);
 * both run on any CPU with those features, Intel or AMD. */
#include <blis.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/tensor.h"

static const char *arch_for_cpu(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return "skx";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "haswell";
    return NULL;
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
        const char *arch = arch_for_cpu();
        if (arch) {
            setenv("BLIS_ARCH_TYPE", arch, 1);
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

/* train/memory — before anything big is allocated, the per-rank memory the
 * layout needs (dist_memory_estimate: the same plan the engine allocates)
 * against what this process may use: the cgroup's limit and MemAvailable,
 * both shared by the job's ranks on this node, and RLIMIT_AS. Refusing here
 * gives a message and exit 2 instead of the kernel's OOM kill (exit 137, no
 * message) or an allocation failure deep inside set-up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/memlimit.h"
#include "train/train_internal.h"

/* What the process holds beyond the plan: the estimate is of the large
 * buffers only; allocator slack, the kernels' packing buffers and the data
 * stream add a few percent and a few MiB (measured, docs/design.md "Memory
 * check"). */
#define PLAN_SLACK 1.10
#define RUNTIME_MIB 32.0
/* What a rank expects beyond the plan and its start-up: BLIS's packing
 * buffers and oneDNN's JIT kernels and scratchpad (made at the first
 * GEMMs), the data stream's buffers, MPI's shared-memory FIFOs and the
 * temporaries its collectives keep (bigmem_keep_freed_memory): 12-20 MiB
 * measured on gpt-mini and gpt2-small, 1 and 2 ranks (bench_plan). */
#define RUNTIME_EXPECTED_MIB 16.0
/* Address space reserved but not used: thread stacks and malloc arenas. */
#define VIRTUAL_MIB 256.0

static const double MIB = 1048576.0;

status_t trainer_local_ranks(MPI_Comm comm, int *n)
{
    MPI_Comm node;
    FAIL_IF(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) != MPI_SUCCESS,
            ST_MPI, "train: MPI_Comm_split_type failed");
    int size_rc = MPI_Comm_size(node, n);
    FAIL_IF(MPI_Comm_free(&node) != MPI_SUCCESS || size_rc != MPI_SUCCESS, ST_MPI,
            "train: MPI_Comm_size or MPI_Comm_free of the node's communicator failed");
    return ST_OK;
}

static double plan_bytes(const dist_memory *m)
{
    return (double)(m->params + m->params_mirror + m->grad_accum + m->grads + m->optimizer + m->messages_bf16 +
                    m->tied_recv + m->activations + m->ckpt_part);
}

/* VmRSS of this process now, bytes (0 when unknown). */
static double resident_now(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %llu", &kib) == 1) break;
    if (f) fclose(f);
    return (double)kib * 1024.0;
}

double train_memory_resident(const dist_memory *m, double baseline)
{
    return baseline + plan_bytes(m) * PLAN_SLACK + RUNTIME_MIB * MIB;
}

double train_memory_expected(const dist_memory *m, double baseline)
{
    return baseline + plan_bytes(m) + RUNTIME_EXPECTED_MIB * MIB;
}

double train_memory_baseline(void) { return resident_now(); }

typedef struct memory_need {
    double plan;      /* the estimate of the large buffers */
    double resident;  /* what a limit on resident memory must leave room for */
    double virt;      /* what RLIMIT_AS must leave room for */
} memory_need;

static status_t refuse(const trainer *t, const memory_need *n, const dist_memory *m, double share, const char *source,
                       int shared)
{
    char split[96] = "";
    if (shared) snprintf(split, sizeof split, ", shared by the %d ranks on this node", t->local_ranks);
    return st_fail(ST_CONFIG,
                   "memory: this layout needs about %.0f MiB on rank %d (params %.1f + gradients %.1f + optimizer %.1f"
                   " + activations %.1f + other buffers %.1f MiB, plus %.0f%% and %.0f MiB for the runtime), but the "
                   "rank may use %.0f MiB (%s%s); "
                   "lower it with model.recompute = ffn (or true), a larger dist.pp or dist.tp, dist.zero = 2, or a smaller "
                   "train.micro_batch (MPILM_MEMORY_CHECK=0 skips this check)",
                   (shared ? n->resident : n->virt) / MIB, t->rank, (m->params + m->params_mirror) / MIB,
                   (m->grad_accum + m->grads) / MIB, m->optimizer / MIB, m->activations / MIB,
                   (m->messages_bf16 + m->tied_recv + m->ckpt_part) / MIB, 100.0 * (PLAN_SLACK - 1.0), shared ? RUNTIME_MIB : VIRTUAL_MIB,
                   share / MIB, source, split);
}

status_t trainer_check_memory(trainer *t)
{
    const train_config *tc = &t->tc;
    dist_memory m;
    TRY(dist_memory_estimate(&tc->dist, &tc->model, tc->micro_batch, tc->micro_batches, t->comm, &m));
    const char *env = getenv("MPILM_MEMORY_CHECK");
    if (env && strcmp(env, "0") == 0) {
        log_msg(LOG_INFO, "memory check skipped (MPILM_MEMORY_CHECK=0)");
        return ST_OK;
    }
    memory_need n = {.plan = plan_bytes(&m)};
    n.resident = train_memory_resident(&m, resident_now());
    n.virt = (double)memlimit_virtual_size("") + n.plan * PLAN_SLACK + VIRTUAL_MIB * MIB;
    /* bf16: the fp32 mirror reserves the whole stage's address range, of which
       only params_mirror becomes resident (model_stage_create_over) */
    if (m.params_mirror) n.virt += (double)(m.params - m.params_mirror);
    mem_limit lim;
    if (memlimit_cgroup("", &lim) && n.resident > (double)lim.bytes / t->local_ranks)
        return refuse(t, &n, &m, (double)lim.bytes / t->local_ranks, lim.source, 1);
    /* MemAvailable already leaves out what runs now, this process included */
    double fresh = n.plan * PLAN_SLACK + RUNTIME_MIB * MIB;
    if (memlimit_available("", &lim) && fresh > (double)lim.bytes / t->local_ranks) {
        n.resident = fresh;
        return refuse(t, &n, &m, (double)lim.bytes / t->local_ranks, lim.source, 1);
    }
    if (memlimit_address_space(&lim) && n.virt > (double)lim.bytes)
        return refuse(t, &n, &m, (double)lim.bytes, lim.source, 0);
    log_msg(LOG_DEBUG, "rank %d memory check: plan %.1f MiB, resident %.1f MiB, virtual %.1f MiB", t->rank,
            n.plan / MIB, n.resident / MIB, n.virt / MIB);
    return ST_OK;
}

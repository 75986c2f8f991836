/* base/memlimit — how much memory this process may use, and where that
 * limit comes from: the cgroup's memory limit (v2 memory.max or v1
 * memory.limit_in_bytes, the smallest from the process's own cgroup up to
 * the root, as Slurm and container runtimes set them), MemAvailable of
 * /proc/meminfo, and RLIMIT_AS (ulimit -v).
 * Owns: reading and parsing those files. The readers take the root of the
 * file tree ("" for the real one) so tests can point them at a fake
 * /proc and /sys/fs/cgroup.
 * Must not touch: anything above libc.
 */
#ifndef MPILM_BASE_MEMLIMIT_H
#define MPILM_BASE_MEMLIMIT_H

#include <stdint.h>

/* A limit in bytes and where it comes from (a file and its value, or
 * "ulimit -v (RLIMIT_AS)"). */
typedef struct mem_limit {
    uint64_t bytes;
    char source[512];
} mem_limit;

/* "max", or a decimal number of bytes (v1 writes "unlimited" as a number
 * near 2^63, taken as none). Returns 1 and sets *bytes for a limit, 0 for
 * none or text that is neither. */
int memlimit_parse(const char *text, uint64_t *bytes);

/* The smallest memory limit of this process's cgroup and its ancestors:
 * ROOT/proc/self/cgroup gives the cgroup path; v2 (a "0::PATH" line) reads
 * ROOT/sys/fs/cgroup/PATH/memory.max, v1 (a line whose controllers include
 * "memory") ROOT/sys/fs/cgroup/memory/PATH/memory.limit_in_bytes, then each
 * parent directory up to the mount point. Missing files are skipped. Returns
 * 1 with the limit, 0 when there is none. */
int memlimit_cgroup(const char *root, mem_limit *out);

/* MemAvailable of ROOT/proc/meminfo. Returns 1 with it, 0 when absent. */
int memlimit_available(const char *root, mem_limit *out);

/* This process's current virtual size (VmSize of ROOT/proc/self/status) in
 * bytes, 0 when unknown. */
uint64_t memlimit_virtual_size(const char *root);

/* The soft RLIMIT_AS. Returns 1 with it, 0 when unlimited. */
int memlimit_address_space(mem_limit *out);

#endif

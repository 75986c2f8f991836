/* base/bigmem — the big long-lived buffers of training (parameters,
 * gradients, moments, the bf16 weight copy, the activation arena).
 * Owns: their allocation, aligned to 2 MiB when at least that large and
 * advised as transparent huge pages (madvise MADV_HUGEPAGE: one page fault
 * and one TLB entry per 2 MiB instead of 512 of each where the kernel's
 * transparent_hugepage setting is "madvise" or "always"; a no-op where it is
 * "never"), and zeroed now, so every page is resident before the first step.
 * Must not touch: anything above libc.
 */
#ifndef MPILM_BASE_BIGMEM_H
#define MPILM_BASE_BIGMEM_H

#include <stddef.h>

/* bytes zeroed (every page touched), 64-byte aligned at least; NULL when out
 * of memory. Free with free(). */
void *bigmem_alloc(size_t bytes);

#endif

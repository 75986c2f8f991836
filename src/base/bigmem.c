/* base/bigmem — big buffers on transparent huge pages (bigmem.h). */
#include <limits.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/bigmem.h"

enum { HUGE_PAGE = 2 << 20 };

void *bigmem_alloc(size_t bytes)
{
    size_t align = bytes >= HUGE_PAGE ? HUGE_PAGE : 64;
    size_t size = (bytes + align - 1) / align * align;
    void *p = aligned_alloc(align, size ? size : align);
    if (!p) return NULL;
#ifdef MADV_HUGEPAGE
    if (align == HUGE_PAGE) (void)madvise(p, size, MADV_HUGEPAGE); /* advice: nothing to do when refused */
#endif
    memset(p, 0, size);
    return p;
}

void bigmem_keep_freed_memory(void)
{
#ifdef M_MMAP_MAX
    (void)mallopt(M_MMAP_MAX, 0);
    (void)mallopt(M_TRIM_THRESHOLD, INT_MAX);
#endif
}

/* safetensors_dump FILE: what mpilm's safetensors reader (ckpt/safetensors)
 * reads from FILE, in the dump format of tests/tools/safetensors.js, for
 * tests/integration/safetensors_format.sh to compare with the independent
 * reader's:
 *   meta KEY VALUE                                  per metadata entry
 *   tensor NAME DTYPE [D0,D1,...] BYTES FNV [f32 FNV32]
 *                                                   per tensor
 * both sorted by name (strcmp). FNV is FNV-1a 64 (hex) of the tensor's bytes;
 * FNV32, for float dtypes, that of its values read as float32 by
 * safet_read_f32. A file the reader refuses: its message on stderr, exit 1. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/safetensors.h"

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static status_t print_tensor(const safet_file *f, const safet_tensor *t)
{
    printf("tensor %s %s [", t->name, safet_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++) printf("%s%lld", d ? "," : "", (long long)t->shape[d]);
    uint64_t bytes = t->end - t->begin;
    printf("] %llu %016llx", (unsigned long long)bytes,
           (unsigned long long)fnv1a64(safet_data(f, t), (size_t)bytes));
    if (t->dtype == SAFET_F32 || t->dtype == SAFET_F64 || t->dtype == SAFET_F16 || t->dtype == SAFET_BF16) {
        int64_t n = safet_numel(t);
        float *values = malloc((size_t)(n ? n : 1) * sizeof *values);
        FAIL_IF(!values, ST_NOMEM, "out of memory for %lld values", (long long)n);
        status_t st = safet_read_f32(f, t->name, values, n);
        if (st == ST_OK) printf(" f32 %016llx", (unsigned long long)fnv1a64((const uint8_t *)values, (size_t)n * 4));
        free(values);
        TRY(st);
    }
    printf("\n");
    return ST_OK;
}

static status_t dump(const safet_file *f)
{
    int nm = safet_metadata_count(f), nt = safet_count(f);
    const char **names = malloc((size_t)(nm + nt + 1) * sizeof *names);
    FAIL_IF(!names, ST_NOMEM, "out of memory");
    for (int i = 0; i < nm; i++) names[i] = safet_metadata_key(f, i);
    qsort(names, (size_t)nm, sizeof *names, compare_names);
    for (int i = 0; i < nm; i++) printf("meta %s %s\n", names[i], safet_metadata(f, names[i]));
    for (int i = 0; i < nt; i++) names[i] = safet_at(f, i)->name;
    qsort(names, (size_t)nt, sizeof *names, compare_names);
    status_t st = ST_OK;
    for (int i = 0; i < nt && st == ST_OK; i++) st = print_tensor(f, safet_find(f, names[i]));
    free(names);
    return st;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: safetensors_dump FILE\n");
        return 2;
    }
    safet_file *f;
    status_t st = safet_open(&f, argv[1]);
    if (st == ST_OK) {
        st = dump(f);
        safet_close(f);
    }
    if (st != ST_OK) {
        fprintf(stderr, "safetensors_dump: %s\n", st_message());
        return 1;
    }
    return 0;
}

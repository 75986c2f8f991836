/* tests/common/ref_jsonl — reads the reference encodings of ../shared/vocab/reference
 * ({"text": "...", "ids": [...], ...} per line), texts as (pointer, length)
 * since they may hold NUL. */
#ifndef MPILM_TESTS_REF_JSONL_H
#define MPILM_TESTS_REF_JSONL_H

#include <stddef.h>
#include <stdint.h>

typedef struct ref_record {
    char *text;      /* decoded UTF-8, NUL-terminated, may contain NUL */
    size_t text_len;
    uint32_t *ids;
    size_t n_ids;
} ref_record;

/* Path of a file under the shared directory: $MPILM_SHARED/rel, or ../shared/rel. */
const char *ref_shared_path(const char *rel, char *buf, size_t size);

/* Reads every record of a .jsonl file; returns the count, or -1 on error. */
long ref_read_jsonl(const char *path, ref_record **out);
void ref_free(ref_record *r, long n);

#endif

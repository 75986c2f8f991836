/* Fuzz target safetensors: a whole .safetensors file (ckpt/safetensors.c):
 * header length, JSON header, metadata, then every tensor read as float32. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/safetensors.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[4200];
    fuzz_write("model.safetensors", data, size, path, sizeof path);
    safet_file *f;
    if (safet_open(&f, path) == ST_OK) {
        safet_metadata(f, "format");
        for (int i = 0; i < safet_count(f); i++) {
            const safet_tensor *t = safet_at(f, i);
            FUZZ_CHECK(safet_find(f, t->name) == t, "tensor \"%s\" not found by name", t->name);
            FUZZ_CHECK(i == 0 || safet_at(f, i - 1)->end <= t->begin, "tensors %d and %d overlap", i - 1, i);
            int64_t n = safet_numel(t);
            if (n > (1 << 20) || t->dtype == SAFET_I32 || t->dtype == SAFET_I64 || t->dtype == SAFET_U8) continue;
            float *dst = malloc(((size_t)n + 1) * sizeof *dst);
            FUZZ_CHECK(dst, "out of memory");
            FUZZ_CHECK(safet_read_f32(f, t->name, dst, n) == ST_OK, "tensor \"%s\" does not read: %s", t->name,
                       st_message());
            free(dst);
        }
        safet_close(f);
    }
    st_clear();
    return 0;
}

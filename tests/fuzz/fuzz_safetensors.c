/* Fuzz target safetensors: a whole .safetensors file (ckpt/safetensors.c):
 * header length, JSON header, metadata, then every float tensor read as float32
 * and every other (integer, bool, fp8) refused with a message naming it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/safetensors.h"
#include "fuzz_common.h"

static int is_float(safet_dtype d)
{
    return d == SAFET_F32 || d == SAFET_F64 || d == SAFET_F16 || d == SAFET_BF16;
}

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
            if (n > (1 << 20)) continue;
            float *dst = malloc(((size_t)n + 1) * sizeof *dst);
            FUZZ_CHECK(dst, "out of memory");
            status_t st = safet_read_f32(f, t->name, dst, n);
            if (is_float(t->dtype)) {
                FUZZ_CHECK(st == ST_OK, "tensor \"%s\" does not read: %s", t->name, st_message());
            } else {
                /* Integer, bool and fp8 tensors are refused, naming the tensor. */
                FUZZ_CHECK(st != ST_OK && strstr(st_message(), t->name), "%s tensor \"%s\" read as float32: %s",
                           safet_dtype_name(t->dtype), t->name, st == ST_OK ? "ok" : st_message());
                st_clear();
            }
            free(dst);
        }
        safet_close(f);
    }
    st_clear();
    return 0;
}

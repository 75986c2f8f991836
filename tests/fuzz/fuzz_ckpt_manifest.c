/* Fuzz target ckpt_manifest: manifest.json of a checkpoint step directory
 * (ckpt/checkpoint.c, ckpt/checkpoint_manifest.c), read by ckpt_open. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/checkpoint.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[4200];
    if (!dir[0]) fuzz_subdir("step-0000001", dir, sizeof dir);
    char path[4300];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f && (size == 0 || fwrite(data, 1, size, f) == size) && fclose(f) == 0, "cannot write %s", path);
    ckpt_reader *r;
    if (ckpt_open(&r, dir) == ST_OK) {
        ckpt_config_value(r, "data.path");
        ckpt_check_model(r, ckpt_model(r));
        ckpt_close(r);
    }
    st_clear();
    return 0;
}

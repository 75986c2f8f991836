#include "hash.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

struct hash_stream { XXH3_state_t *state; };

uint64_t hash_xxh3(const void *data, size_t len) { return XXH3_64bits(data, len); }

hash_stream *hash_stream_new(void)
{
    hash_stream *h = (hash_stream *)XXH3_createState();
    if (h) XXH3_64bits_reset((XXH3_state_t *)h);
    return h;
}

void hash_stream_update(hash_stream *h, const void *data, size_t len)
{
    XXH3_64bits_update((XXH3_state_t *)h, data, len);
}

uint64_t hash_stream_digest(const hash_stream *h) { return XXH3_64bits_digest((const XXH3_state_t *)h); }

void hash_stream_free(hash_stream *h) { XXH3_freeState((XXH3_state_t *)h); }

status_t hash_file(const char *path, uint64_t *out)
{
    FILE *f = fopen(path, "rb");
    FAIL_IF(!f, ST_IO, "%s: cannot open for checksum (%s); check the path", path, strerror(errno));
    XXH3_state_t *state = XXH3_createState();
    if (!state) {
        fclose(f);
        return st_fail(ST_NOMEM, "%s: out of memory for checksum state", path);
    }
    XXH3_64bits_reset(state);
    static _Thread_local unsigned char block[1 << 16];
    size_t n;
    while ((n = fread(block, 1, sizeof block, f)) > 0) XXH3_64bits_update(state, block, n);
    int failed = ferror(f);
    fclose(f);
    *out = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    FAIL_IF(failed, ST_IO, "%s: read error while computing checksum", path);
    return ST_OK;
}

void hash_to_hex(uint64_t h, char out[17]) { snprintf(out, 17, "%016llx", (unsigned long long)h); }

int hash_from_hex(const char *hex, uint64_t *out)
{
    uint64_t v = 0;
    int i = 0;
    for (; hex[i]; i++) {
        char c = hex[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0 || i >= 16) return 0;
        v = v << 4 | (uint64_t)d;
    }
    if (i != 16) return 0;
    *out = v;
    return 1;
}

/* Fuzz target shard: a whole token shard (data/shard.c): header, index,
 * boundary frames and zstd data frames, opened and verified frame by frame.
 *
 * Every part of a shard carries an XXH3 checksum, which random bytes never
 * match. So each input is read twice: as it is, then (when that differs) with
 * every checksum recomputed where the layout fields let one find the bytes,
 * which lets the fuzzer reach the layout checks behind the checksums. */
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "data/shard.h"
#include "fuzz_common.h"

#define HEAD 8u /* a skippable frame's magic + size */

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* 1 when [at, at + len) lies inside a file of size bytes. */
static int inside(uint64_t at, uint64_t len, uint64_t size) { return at <= size && len <= size - at; }

/* Recomputes the frame, index and header checksums of the shard s[0..size). */
static void fix_checksums(uint8_t *s, size_t size)
{
    if (size < HEAD + SHARD_HEADER_BYTES) return;
    uint8_t *h = s + HEAD;
    uint64_t index = get64(h + 56), n_frames = get32(h + 28);
    uint64_t payload = 16 + n_frames * SHARD_INDEX_ENTRY;
    if (inside(index, HEAD + payload, size)) {
        uint8_t *p = s + index + HEAD;
        for (uint64_t i = 0; i < n_frames; i++) {
            uint8_t *e = p + 16 + i * SHARD_INDEX_ENTRY;
            uint64_t offset = get64(e), bounds = get32(e + 8), data = get32(e + 12), records = get32(e + 20);
            if (inside(offset + HEAD, 4 * records, size) && offset < size)
                put64(e + 32, hash_xxh3(s + offset + HEAD, 4 * records));
            if (inside(offset + bounds, data, size) && offset < size) put64(e + 40, hash_xxh3(s + offset + bounds, data));
        }
        put64(h + 64, hash_xxh3(p, payload));
    }
    put64(h + 72, hash_xxh3(h, 72));
}

static void read_shard(const char *path)
{
    shard_is_shard(path);
    shard_reader *r;
    if (shard_reader_open(&r, path) != ST_OK) return;
    const shard_header *h = shard_reader_header(r);
    FUZZ_CHECK(h->token_width == 2 || h->token_width == 4, "token width %u accepted", h->token_width);
    if (shard_reader_verify(r) == ST_OK && h->n_frames > 0) {
        const shard_frame *e = shard_reader_frame(r, 0);
        FUZZ_CHECK(e->n_tokens <= SHARD_FRAME_TOKENS && e->n_records <= e->n_tokens, "frame 0 out of bounds");
        shard_reader_read(r, 0, NULL, NULL);
    }
    shard_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[4200];
    fuzz_write("shard.zst", data, size, path, sizeof path);
    read_shard(path);
    uint8_t *fixed = malloc(size + 1);
    FUZZ_CHECK(fixed, "out of memory");
    memcpy(fixed, data, size);
    fix_checksums(fixed, size);
    if (memcmp(fixed, data, size) != 0) {
        fuzz_write("shard.zst", fixed, size, path, sizeof path);
        read_shard(path);
    }
    free(fixed);
    st_clear();
    return 0;
}

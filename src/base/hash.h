/* base/hash — checksums for shards, checkpoints and vocab fingerprints.
 *
 * Owns: the one hash of mpilm, XXH3-64 (libxxhash), and its hex form.
 * Must not touch: anything but libc and libxxhash.
 */
#ifndef MPILM_BASE_HASH_H
#define MPILM_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

uint64_t hash_xxh3(const void *data, size_t len);

/* Streaming form for data that does not fit in memory at once. */
typedef struct hash_stream hash_stream;
hash_stream *hash_stream_new(void);
void hash_stream_update(hash_stream *h, const void *data, size_t len);
uint64_t hash_stream_digest(const hash_stream *h);
void hash_stream_free(hash_stream *h);

/* XXH3-64 of a whole file, read in blocks. */
status_t hash_file(const char *path, uint64_t *out);

/* 16 lowercase hex digits + NUL, and back (parse fails on anything else). */
void hash_to_hex(uint64_t h, char out[17]);
int hash_from_hex(const char *hex, uint64_t *out);

#endif

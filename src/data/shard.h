/* data/shard — one token shard file (docs/formats.md, "Token shards").
 *
 * Owns: writing and reading a shard: the header and index (zstd skippable
 * frames), per-frame boundary tables (skippable frames) and the zstd data
 * frames of token ids, and every checksum of them.
 * Must not touch: tokenizers, sample building, MPI.
 *
 * A shard is a valid zstd stream: `zstd -d` yields the raw token ids
 * (little-endian, 2 or 4 bytes each). Layout:
 *     HEADER  { BOUNDARIES DATA }*  INDEX
 * Sentences are never split between frames unless a sentence alone is longer
 * than SHARD_FRAME_TOKENS; its pieces then carry SHARD_SENT_CONTINUES.
 */
#ifndef MPILM_DATA_SHARD_H
#define MPILM_DATA_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

#define SHARD_VERSION 1
#define SHARD_FRAME_TOKENS 65536u /* tokens per data frame at most (≤ 256 KiB) */

/* Skippable-frame magics (zstd reserves 0x184D2A50..5F for them). */
#define SHARD_MAGIC_HEADER 0x184D2A50u
#define SHARD_MAGIC_BOUNDS 0x184D2A51u
#define SHARD_MAGIC_INDEX 0x184D2A52u
#define SHARD_HEADER_BYTES 80u   /* header payload */
#define SHARD_INDEX_ENTRY 48u    /* bytes per index entry */

/* A boundary record (one u32 per sentence piece of a frame). */
#define SHARD_SENT_DOC_START (1u << 31) /* the sentence starts a document */
#define SHARD_SENT_CONTINUES (1u << 30) /* piece continues the previous frame's sentence */
#define SHARD_SENT_LEN_MASK ((1u << 30) - 1)
/* Index entry flag: the frame's first record does not start a document. */
#define SHARD_FRAME_DOC_CONTINUES 1u

typedef struct shard_header {
    uint32_t version;
    uint32_t token_width;   /* bytes per token: 2 when vocab_size <= 65536, else 4 */
    uint64_t fingerprint;   /* tokenizer_fingerprint() of the vocabulary */
    uint32_t vocab_size;
    uint32_t n_frames;
    uint64_t n_documents, n_sentences, n_tokens;
    uint64_t index_offset;  /* file offset of the index frame */
    uint64_t index_hash;    /* XXH3-64 of the index payload */
} shard_header;

/* One index entry: where a frame is and what it holds. */
typedef struct shard_frame {
    uint64_t offset;          /* file offset of the boundary frame */
    uint32_t bounds_size;     /* bytes of the boundary frame, its 8-byte frame header included */
    uint32_t data_size;       /* bytes of the zstd data frame that follows it */
    uint32_t n_tokens;
    uint32_t n_records;       /* boundary records (sentence pieces) */
    uint32_t n_doc_starts;    /* records with SHARD_SENT_DOC_START */
    uint32_t flags;           /* SHARD_FRAME_DOC_CONTINUES */
    uint64_t bounds_hash;     /* XXH3-64 of the boundary payload */
    uint64_t data_hash;       /* XXH3-64 of the whole data frame */
} shard_frame;

typedef struct shard_writer shard_writer;

/* Creates path (atomically: nothing appears until shard_writer_close). */
status_t shard_writer_open(shard_writer **out, const char *path, uint64_t fingerprint, uint32_t vocab_size);
/* Appends one sentence of n >= 1 ids; doc_start marks the first of a document. */
status_t shard_writer_add(shard_writer *w, const uint32_t *ids, size_t n, int doc_start);
/* Writes the last frame, the index and the header; commits the file; frees w.
 * hdr (may be NULL) receives the header written. */
status_t shard_writer_close(shard_writer *w, shard_header *hdr);
void shard_writer_abort(shard_writer *w);

typedef struct shard_reader shard_reader;

/* Opens path and checks the header and the index (magic, version, size,
 * checksums); frames are checked as they are read. */
status_t shard_reader_open(shard_reader **out, const char *path);
const shard_header *shard_reader_header(const shard_reader *r);
const shard_frame *shard_reader_frame(const shard_reader *r, uint32_t i);
/* Reads frame i: records[n_records] (may be NULL) and tokens[n_tokens] widened
 * to u32 (may be NULL); checks both checksums and the zstd content checksum. */
status_t shard_reader_read(shard_reader *r, uint32_t i, uint32_t *records, uint32_t *tokens);
/* Reads every frame and checks the totals against the header. */
status_t shard_reader_verify(shard_reader *r);
void shard_reader_close(shard_reader *r);

/* 1 when the file at path starts with a shard header frame. */
int shard_is_shard(const char *path);

#endif

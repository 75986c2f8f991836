/* data/prep — raw text to a dataset (mpilm prep).
 *
 * Owns: cutting the input into pieces at document boundaries, checking (or
 * repairing) UTF-8, tokenizing sentences into shards, and finishing the
 * dataset with its manifest.
 * Must not touch: MPI (a caller with several ranks gives each rank the pieces
 * i with i % size == rank; the plan does not depend on the rank count, so the
 * dataset is byte-identical for any number of ranks), models, sample building.
 *
 * Input: UTF-8 text, one sentence per line, blank lines (empty or only spaces
 * and tabs) between documents; a trailing '\r' is dropped. A line that
 * tokenizes to nothing is skipped.
 */
#ifndef MPILM_DATA_PREP_H
#define MPILM_DATA_PREP_H

#include <stdint.h>

#include "base/status.h"
#include "data/dataset.h"
#include "data/tokenizer.h"

#define PREP_PIECE_MIN (1ull << 20)   /* input bytes per shard, at least */
#define PREP_PIECE_MAX (256ull << 20) /* and at most; in between total / 64 */

/* Bytes [begin, end) of input file `file`, starting at a document. Piece i
 * becomes shard i. */
typedef struct prep_piece {
    int file;
    uint64_t begin, end;
} prep_piece;

typedef struct prep_plan {
    prep_piece *pieces;
    int n_pieces;
    uint64_t total_bytes;
} prep_plan;

typedef struct prep_stats {
    uint64_t bytes, documents, sentences, tokens;
    uint64_t replaced;   /* invalid bytes replaced by U+FFFD */
} prep_stats;

status_t prep_plan_make(const char *const *files, int n_files, prep_plan *plan);
void prep_plan_free(prep_plan *plan);

/* Tokenizes one piece into the shard file out_path. Invalid UTF-8 fails with
 * the file, line and byte offset unless replace_invalid. */
status_t prep_piece_encode(tokenizer *t, const char *const *files, const prep_piece *piece, int replace_invalid,
                           const char *out_path, prep_stats *stats);

/* Writes the manifest over shards 0..n_shards-1 of dir; fails when the input
 * held no sentence. */
status_t prep_finish(const char *dir, const tokenizer *t, int n_shards, dataset_info *info);

/* The output directory. A dataset is built in a staging directory, a hidden
 * sibling of out (same parent, so publishing it is a rename), and replaces
 * out only once complete: a failed prep leaves out as it was.
 *
 * prep_output_check: out may be absent or an empty directory; an existing
 * dataset (a directory with manifest.json) only with overwrite; anything else
 * is refused (ST_USAGE) naming what is there and what to do. */
status_t prep_output_check(const char *out, int overwrite);
/* "PARENT/.NAME.prep-staging" for out = PARENT/NAME (trailing '/' ignored). */
status_t prep_staging_path(const char *out, char *buf, size_t cap);
/* Syncs the staging directory and puts it in place of out, atomically when
 * out exists (renameat2 RENAME_EXCHANGE; the replaced dataset is removed
 * after the exchange), then syncs the parent. */
status_t prep_publish(const char *staging, const char *out);

/* Offset of the first byte of s[0..n) that is not valid UTF-8, or n. */
size_t utf8_check(const unsigned char *s, size_t n);

#endif

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
 * tokenizes to nothing is skipped. Or (--jsonl) one JSON object per line whose
 * text is one document, its lines the sentences. Either may be zstd or gzip
 * compressed (data/input.h).
 *
 * Held-out split (valid_fraction F > 0). A document goes to the valid split
 * when prep_document_held_out(file, offset, F): a pure function of the input
 * file's index among the inputs and the byte offset of the document's first
 * sentence in that file, through base/rng (RNG_SPLIT, seed PREP_SPLIT_SEED).
 * Neither depends on the plan's pieces or the rank count, so the two splits
 * are the same for any -np. Piece i writes train-i and valid-i.
 */
#ifndef MPILM_DATA_PREP_H
#define MPILM_DATA_PREP_H

#include <stdint.h>

#include "base/status.h"
#include "data/dataset.h"
#include "data/tokenizer.h"

#define PREP_PIECE_MIN (1ull << 20)   /* input bytes per shard, at least */
#define PREP_PIECE_MAX (256ull << 20) /* and at most; in between total / 64 */
#define PREP_SPLIT_SEED 0x6d70696c6d5eull /* the held-out choice's fixed seed */

/* Bytes [begin, end) of input file `file`, starting at a document. Piece i
 * becomes shard i. A compressed file (data/input.h) is one piece, the whole
 * file (compressed: begin 0, end its size); the offsets that identify its
 * documents are then offsets in the decompressed text. */
typedef struct prep_piece {
    int file;
    uint64_t begin, end;
    int compressed;
} prep_piece;

/* How the input is read. */
typedef struct prep_input {
    int jsonl;              /* one JSON object per line, one document each (blank lines skipped) */
    const char *text_key;   /* --jsonl: the key of the document's text ("text") */
    int split_sentences;    /* every line (of text, or of a JSON text) cut by data/sentence.h */
    int replace_invalid;    /* invalid UTF-8 → U+FFFD instead of an error */
    double valid_fraction;  /* documents held out into the valid split (0 = none) */
} prep_input;

typedef struct prep_plan {
    prep_piece *pieces;
    int n_pieces;
    uint64_t total_bytes;
} prep_plan;

typedef struct prep_stats {
    uint64_t bytes, documents, sentences, tokens;  /* both splits */
    uint64_t valid_documents;
    uint64_t replaced;   /* invalid bytes replaced by U+FFFD */
} prep_stats;

status_t prep_plan_make(const char *const *files, int n_files, prep_plan *plan);
/* The same for the input's format (--jsonl pieces are cut at any line end). */
status_t prep_plan_make_input(const char *const *files, int n_files, const prep_input *input, prep_plan *plan);
void prep_plan_free(prep_plan *plan);

/* Tokenizes one piece into the shard file out_path. Invalid UTF-8 fails with
 * the file, line and byte offset unless replace_invalid. */
status_t prep_piece_encode(tokenizer *t, const char *const *files, const prep_piece *piece, int replace_invalid,
                           const char *out_path, prep_stats *stats);

/* The same for the input's format, with a held-out split: documents chosen
 * by prep_document_held_out go to valid_out_path instead (valid_fraction 0:
 * none, valid_out_path unused). A bad --jsonl line fails (ST_FORMAT) naming
 * file:line and what was expected; corrupt or truncated compressed input
 * fails naming the file and the compressed byte offset. */
status_t prep_piece_encode_input(tokenizer *t, const char *const *files, const prep_piece *piece,
                                 const prep_input *input, const char *out_path, const char *valid_out_path,
                                 prep_stats *stats);

/* 1 when the document whose first sentence starts at byte `offset` of input
 * file number `file` belongs to the valid split (probability valid_fraction). */
int prep_document_held_out(int file, uint64_t offset, double valid_fraction);

/* Writes the manifest over shards 0..n_shards-1 of dir; fails when the input
 * held no sentence. */
status_t prep_finish(const char *dir, const tokenizer *t, int n_shards, dataset_info *info);
/* The same with a valid split (dataset_manifest_write_splits); fails (ST_USAGE)
 * when either split is empty, saying what to do. valid may be NULL. */
status_t prep_finish_split(const char *dir, const tokenizer *t, int n_pieces, double valid_fraction,
                           dataset_info *train, dataset_info *valid);

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
size_t prep_utf8_check(const unsigned char *s, size_t n);

#endif

/* data/dataset — a dataset directory as mpilm prep makes it:
 *     DIR/manifest.json     format version, tokenizer, vocab size and fingerprint,
 *                           special ids, every shard with size, xxh3 and counts, totals
 *     DIR/vocab files       as tokenizer_save writes them
 *     DIR/train-NNNNN.zst   shards of the train split (data/shard.h)
 *     DIR/valid-NNNNN.zst   shards of the held-out split (prep --valid-fraction)
 * Owns: the manifest (writing, reading, checking it against the vocabulary and
 * the shards).
 * Must not touch: sample building, models, MPI.
 */
#ifndef MPILM_DATA_DATASET_H
#define MPILM_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "data/shard.h"
#include "data/tokenizer.h"

#define DATASET_VERSION 1
#define DATASET_MANIFEST "manifest.json"

/* A dataset holds a train split and, when prep held documents out, a valid
 * split. Each split has its own shard list and totals in the manifest. */
typedef enum dataset_split { DATASET_SPLIT_TRAIN = 0, DATASET_SPLIT_VALID = 1 } dataset_split;

typedef struct dataset_info {
    tokenizer_kind kind;
    uint32_t vocab_size;
    uint64_t fingerprint;
    int32_t special[6];     /* indexed by special_token (pad, unk, cls, sep, mask, eot); -1 = none */
    uint32_t token_width;   /* bytes per token in the shards */
    int n_shards;
    uint64_t n_documents, n_sentences, n_tokens, n_bytes;  /* of the split opened */
    double valid_fraction;  /* prep --valid-fraction (0 = the dataset has no valid split) */
} dataset_info;

typedef struct dataset_shard {
    char file[64];          /* name inside the dataset directory */
    uint64_t bytes, hash;   /* file size and XXH3-64 of the whole file */
    uint64_t n_documents, n_sentences, n_tokens;
    uint32_t n_frames;
} dataset_shard;

typedef struct dataset {
    char dir[4096];
    dataset_split split;    /* the split whose shards are listed */
    dataset_info info;
    dataset_shard *shards;
} dataset;

/* The name of train shard i ("train-00007.zst"). */
void dataset_shard_name(int i, char *buf, size_t len);
/* The name of shard i of a split ("train-00007.zst", "valid-00007.zst"). */
void dataset_split_shard_name(dataset_split split, int i, char *buf, size_t len);
const char *dataset_split_label(dataset_split split); /* "train", "valid" */

/* Writes DIR/manifest.json for shards 0..n_shards-1 already in DIR, reading
 * their headers and hashing them; info receives the totals (may be NULL). */
status_t dataset_manifest_write(const char *dir, const tokenizer *t, int n_shards, dataset_info *info);

/* The same for a dataset made with a valid split (valid_fraction > 0): shard
 * i of each split is NAME-i (dataset_split_shard_name) for i < n_pieces; a
 * shard that holds no sentence is removed and not listed (so the numbers of a
 * split may have gaps). train and valid receive each split's totals (may be
 * NULL). With valid_fraction == 0 this is dataset_manifest_write. */
status_t dataset_manifest_write_splits(const char *dir, const tokenizer *t, int n_pieces, double valid_fraction,
                                       dataset_info *train, dataset_info *valid);

/* Reads the manifest and checks it against the vocabulary files in dir;
 * lists the train split's shards. */
status_t dataset_open(dataset *d, const char *dir);
/* The same for either split; the valid split of a dataset without one is
 * ST_USAGE naming the dataset and how to make one. */
status_t dataset_open_split(dataset *d, const char *dir, dataset_split split);
/* 1 when dir is a dataset that has that split (the train split: any dataset). */
int dataset_has_split(const char *dir, dataset_split split);
void dataset_close(dataset *d);
status_t dataset_info_read(const char *dir, dataset_info *info);
/* A 64-bit hash (xxh3, fingerprint, run id) as the manifests hold it, a JSON
 * string of 16 lowercase hex digits (hash_to_hex): the dataset's and the
 * checkpoint's. NULL when out of memory, which cJSON's adders then skip. */
struct cJSON *dataset_json_hex(uint64_t v);
void dataset_shard_path(const dataset *d, int i, char *buf, size_t len);

/* Checks a shard's header against the manifest (fingerprint, width, counts). */
status_t dataset_check_shard(const dataset *d, int i, const shard_header *h);

/* Checks shard i completely: size and XXH3 of the file against the manifest,
 * its header against the manifest, then every frame (shard_reader_verify). */
status_t dataset_verify_shard(const dataset *d, int i);

/* 1 when dir holds a manifest.json. */
int dataset_is_dataset(const char *dir);

#endif

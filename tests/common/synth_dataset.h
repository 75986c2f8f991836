/* Synthetic datasets for the data tests: a WordPiece vocabulary of V tokens
 * ([PAD] [UNK] [CLS] [SEP] [MASK] then w5 ... w{V-1}) and shards of random
 * documents written with the shard writer, then the manifest. */
#ifndef MPILM_TESTS_SYNTH_DATASET_H
#define MPILM_TESTS_SYNTH_DATASET_H

#include <stddef.h>
#include <stdint.h>

typedef struct synth_spec {
    uint32_t vocab_size;
    int n_shards;
    int docs_per_shard;
    int max_sents;       /* sentences per document: 2 .. max_sents */
    int max_len;         /* tokens per sentence: 1 .. max_len */
    uint64_t seed;
} synth_spec;

/* Writes dir/vocab.txt, n_shards shards and dir/manifest.json; the content is
 * a pure function of the spec. Returns 0 on success. */
int synth_dataset_make(const char *dir, const synth_spec *spec);

/* Makes a fresh temporary directory (mkdtemp) under $TMPDIR; returns 0 on success. */
int synth_tmpdir(char *buf, size_t len, const char *name);
/* rm -rf dir */
void synth_rmdir(const char *dir);

#endif

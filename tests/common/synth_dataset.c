#include "synth_dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "data/dataset.h"
#include "data/shard.h"

static int write_vocab(const char *dir, uint32_t v)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", f);
    for (uint32_t i = 5; i < v; i++) fprintf(f, "w%u\n", i);
    return fclose(f);
}

static int write_shard(const char *dir, int i, const synth_spec *sp, uint64_t fp)
{
    char name[64], path[4200];
    dataset_shard_name(i, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    shard_writer *w;
    if (shard_writer_open(&w, path, fp, sp->vocab_size) != ST_OK) return -1;
    rng_key key = rng_key_make(sp->seed, RNG_TEST);
    uint32_t ids[4096], bits[4];
    uint64_t draw = (uint64_t)i << 40;
    for (int d = 0; d < sp->docs_per_shard; d++) {
        rng_bits(key, draw++, 0, 0, bits);
        int n_sents = 2 + (int)rng_below(bits[0], (uint32_t)sp->max_sents - 1);
        for (int s = 0; s < n_sents; s++) {
            rng_bits(key, draw++, 0, 0, bits);
            uint32_t len = 1 + rng_below(bits[0], (uint32_t)sp->max_len);
            for (uint32_t k = 0; k < len; k++) {
                rng_bits(key, draw, k, 1, bits);
                ids[k] = 5 + rng_below(bits[0], sp->vocab_size - 5);
            }
            draw++;
            if (shard_writer_add(w, ids, len, s == 0) != ST_OK) {
                shard_writer_abort(w);
                return -1;
            }
        }
    }
    return shard_writer_close(w, NULL) == ST_OK ? 0 : -1;
}

int synth_dataset_make(const char *dir, const synth_spec *sp)
{
    if (write_vocab(dir, sp->vocab_size) != 0) return -1;
    tokenizer *t;
    if (tokenizer_load(dir, TOKENIZER_WORDPIECE, &t) != ST_OK) return -1;
    int rc = 0;
    for (int i = 0; rc == 0 && i < sp->n_shards; i++) rc = write_shard(dir, i, sp, tokenizer_fingerprint(t));
    if (rc == 0 && dataset_manifest_write(dir, t, sp->n_shards, NULL) != ST_OK) rc = -1;
    tokenizer_free(t);
    return rc;
}

int synth_tmpdir(char *buf, size_t len, const char *name)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, len, "%s/mpilm-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    return mkdtemp(buf) ? 0 : -1;
}

void synth_rmdir(const char *dir)
{
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

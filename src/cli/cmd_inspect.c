/* mpilm inspect: describe and verify a shard, a dataset or a checkpoint. Each kind of path has an inspector: a detector and a run
 * function; the first whose detector accepts the path runs. */
#include <stdio.h>

#include "ckpt/checkpoint.h"
#include "cli.h"
#include "data/dataset.h"
#include "data/shard.h"

typedef struct inspector {
    const char *what;
    int (*detect)(const char *path);
    status_t (*run)(const char *path);
} inspector;

static void print_header(const shard_header *h)
{
    printf("  format version %u, token width %u bytes, vocab %u tokens, fingerprint %016llx\n", h->version,
           h->token_width, h->vocab_size, (unsigned long long)h->fingerprint);
    printf("  %u frames, %llu documents, %llu sentences, %llu tokens\n", h->n_frames,
           (unsigned long long)h->n_documents, (unsigned long long)h->n_sentences, (unsigned long long)h->n_tokens);
}

static status_t inspect_shard(const char *path)
{
    shard_reader *r;
    TRY(shard_reader_open(&r, path));
    printf("shard %s\n", path);
    print_header(shard_reader_header(r));
    status_t st = shard_reader_verify(r);
    shard_reader_close(r);
    if (st == ST_OK) printf("  every checksum verified: ok\n");
    return st;
}

/* One split: its totals, then every shard verified. */
static status_t inspect_split(const char *path, dataset_split split)
{
    dataset d;
    TRY(dataset_open_split(&d, path, split));
    const dataset_info *in = &d.info;
    printf("  %s split: %d shards, %llu bytes, %llu documents, %llu sentences, %llu tokens\n",
           dataset_split_label(split), in->n_shards, (unsigned long long)in->n_bytes,
           (unsigned long long)in->n_documents, (unsigned long long)in->n_sentences,
           (unsigned long long)in->n_tokens);
    status_t st = ST_OK;
    for (int i = 0; st == ST_OK && i < in->n_shards; i++) {
        st = dataset_verify_shard(&d, i);
        if (st == ST_OK) printf("  %s: %llu tokens, ok\n", d.shards[i].file, (unsigned long long)d.shards[i].n_tokens);
    }
    dataset_close(&d);
    return st;
}

static status_t inspect_dataset(const char *path)
{
    dataset d;
    TRY(dataset_open(&d, path));
    const dataset_info *in = &d.info;
    printf("dataset %s\n", path);
    printf("  tokenizer %s, vocab %u tokens, fingerprint %016llx, token width %u\n",
           in->kind == TOKENIZER_BPE ? "bpe" : "wordpiece", in->vocab_size, (unsigned long long)in->fingerprint,
           in->token_width);
    printf("  special ids: pad %d, unk %d, cls %d, sep %d, mask %d, eot %d\n", in->special[TOKEN_PAD],
           in->special[TOKEN_UNK], in->special[TOKEN_CLS], in->special[TOKEN_SEP], in->special[TOKEN_MASK],
           in->special[TOKEN_EOT]);
    double fraction = in->valid_fraction;
    dataset_close(&d);
    if (fraction > 0) printf("  valid fraction %g (documents held out by mpilm prep --valid-fraction)\n", fraction);
    else printf("  no valid split\n");
    status_t st = inspect_split(path, DATASET_SPLIT_TRAIN);
    if (st == ST_OK && fraction > 0) st = inspect_split(path, DATASET_SPLIT_VALID);
    if (st == ST_OK) printf("  every checksum verified: ok\n");
    return st;
}

static void print_checkpoint(const ckpt_reader *r)
{
    const ckpt_meta *m = ckpt_meta_of(r);
    const model_config *c = &m->model;
    printf("checkpoint %s\n", ckpt_path(r));
    printf("  format %s version %d; step %lld, %lld tokens seen, lr %.6g, seed %llu\n", CKPT_FORMAT, CKPT_VERSION,
           (long long)m->step, (long long)m->tokens_seen, m->lr, (unsigned long long)m->seed);
    printf("  model %s:", model_family_name(c->family)); /* every field of its family, as model.KEY reads */
    for (int i = 1, first = 1; i < MODEL_N_FIELDS; i++) {
        if (!model_field_of(&model_fields[i], c->family)) continue;
        char value[32];
        model_field_format(&model_fields[i], c, value, sizeof value);
        printf("%s %s %s", first ? "" : ",", model_fields[i].key.key, value);
        first = 0;
    }
    printf("\n");
    printf("  written by world %d: pp %d, dp %d, tp %d, zero %d; data %s%s%s\n", m->topo.world, m->topo.pp,
           m->topo.dp, m->topo.tp, m->topo.zero, m->random_data ? "random" : "dataset ",
           m->random_data ? "" : m->data_path, ckpt_vocab_dir(r) ? "; vocabulary in vocab/" : "");
    for (int i = 0; i < ckpt_n_files(r); i++) {
        const ckpt_file *f = ckpt_file_at(r, i);
        printf("  %s: rank %d, elements [%llu, %llu), %llu bytes, ok\n", f->name, f->rank,
               (unsigned long long)f->begin, (unsigned long long)f->end,
               (unsigned long long)(f->offset[CKPT_SECTIONS - 1] + f->bytes[CKPT_SECTIONS - 1]));
    }
}

static status_t inspect_checkpoint(const char *path)
{
    ckpt_reader *r;
    TRY(ckpt_open(&r, path));
    print_checkpoint(r);
    ckpt_close(r);
    printf("  every checksum verified: ok\n");
    return ST_OK;
}

static const inspector inspectors[] = {
    {"checkpoint", ckpt_is_checkpoint, inspect_checkpoint},
    {"dataset", dataset_is_dataset, inspect_dataset},
    {"shard", shard_is_shard, inspect_shard},
};

int cmd_inspect(int argc, char **argv)
{
    if (argc != 2) return cli_finish(st_fail(ST_USAGE, "inspect: give one SHARD, DATASET or CHECKPOINT path"));
    const char *path = argv[1];
    for (size_t i = 0; i < sizeof inspectors / sizeof inspectors[0]; i++)
        if (inspectors[i].detect(path)) return cli_finish(inspectors[i].run(path));
    return cli_finish(st_fail(ST_USAGE, "%s: not a shard, dataset or checkpoint; pass a *.zst shard, a dataset "
                                        "directory with manifest.json or a checkpoint directory", path));
}

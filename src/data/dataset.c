/* data/dataset: manifest.json of a dataset directory (docs/formats.md). */
#include "dataset.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/hash.h"

static const char *const special_keys[6] = {"pad", "unk", "cls", "sep", "mask", "eot"};

const char *dataset_split_label(dataset_split split) { return split == DATASET_SPLIT_VALID ? "valid" : "train"; }

void dataset_split_shard_name(dataset_split split, int i, char *buf, size_t len)
{
    snprintf(buf, len, "%s-%05d.zst", dataset_split_label(split), i);
}

void dataset_shard_name(int i, char *buf, size_t len) { dataset_split_shard_name(DATASET_SPLIT_TRAIN, i, buf, len); }

void dataset_shard_path(const dataset *d, int i, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", d->dir, d->shards[i].file);
}

int dataset_is_dataset(const char *dir)
{
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, DATASET_MANIFEST);
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Reads shard i's header and hashes the file. */
static status_t describe_shard(const char *dir, dataset_split split, int i, dataset_shard *s, shard_header *h)
{
    char path[4200];
    dataset_split_shard_name(split, i, s->file, sizeof s->file);
    snprintf(path, sizeof path, "%s/%s", dir, s->file);
    shard_reader *r;
    TRY(shard_reader_open(&r, path));
    *h = *shard_reader_header(r);
    shard_reader_close(r);
    struct stat sb;
    FAIL_IF(stat(path, &sb) != 0, ST_IO, "%s: cannot stat the shard", path);
    TRY(hash_file(path, &s->hash));
    s->bytes = (uint64_t)sb.st_size;
    s->n_documents = h->n_documents, s->n_sentences = h->n_sentences, s->n_tokens = h->n_tokens;
    s->n_frames = h->n_frames;
    return ST_OK;
}

cJSON *dataset_json_hex(uint64_t v)
{
    char hex[17];
    hash_to_hex(v, hex);
    return cJSON_CreateString(hex);
}

static cJSON *shard_json(const dataset_shard *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", s->file);
    cJSON_AddNumberToObject(o, "bytes", (double)s->bytes);
    cJSON_AddItemToObject(o, "xxh3", dataset_json_hex(s->hash));
    cJSON_AddNumberToObject(o, "frames", s->n_frames);
    cJSON_AddNumberToObject(o, "documents", (double)s->n_documents);
    cJSON_AddNumberToObject(o, "sentences", (double)s->n_sentences);
    cJSON_AddNumberToObject(o, "tokens", (double)s->n_tokens);
    return o;
}

static void add_totals(cJSON *m, const char *key, const dataset_info *in)
{
    cJSON *tot = cJSON_AddObjectToObject(m, key);
    cJSON_AddNumberToObject(tot, "shards", in->n_shards);
    cJSON_AddNumberToObject(tot, "bytes", (double)in->n_bytes);
    cJSON_AddNumberToObject(tot, "documents", (double)in->n_documents);
    cJSON_AddNumberToObject(tot, "sentences", (double)in->n_sentences);
    cJSON_AddNumberToObject(tot, "tokens", (double)in->n_tokens);
}

static void add_shards(cJSON *m, const char *key, const dataset_info *in, const dataset_shard *shards)
{
    cJSON *arr = cJSON_AddArrayToObject(m, key);
    for (int i = 0; i < in->n_shards; i++) cJSON_AddItemToArray(arr, shard_json(&shards[i]));
}

/* The train split keeps the keys of version 1 ("shards", "totals"); a valid
 * split adds "valid_fraction", "valid_shards" and "valid_totals". */
static cJSON *manifest_json(const dataset *train, const dataset *valid)
{
    const dataset_info *in = &train->info;
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "format", "mpilm-dataset");
    cJSON_AddNumberToObject(m, "version", DATASET_VERSION);
    cJSON_AddStringToObject(m, "tokenizer", in->kind == TOKENIZER_BPE ? "bpe" : "wordpiece");
    cJSON_AddNumberToObject(m, "vocab_size", in->vocab_size);
    cJSON_AddItemToObject(m, "fingerprint", dataset_json_hex(in->fingerprint));
    cJSON_AddNumberToObject(m, "token_width", in->token_width);
    cJSON *sp = cJSON_AddObjectToObject(m, "special");
    for (int k = 0; k < 6; k++) cJSON_AddNumberToObject(sp, special_keys[k], in->special[k]);
    add_shards(m, "shards", in, train->shards);
    add_totals(m, "totals", in);
    if (valid) {
        cJSON_AddNumberToObject(m, "valid_fraction", in->valid_fraction);
        add_shards(m, "valid_shards", &valid->info, valid->shards);
        add_totals(m, "valid_totals", &valid->info);
    }
    return m;
}

static void info_from_tokenizer(const tokenizer *t, dataset_info *in)
{
    memset(in, 0, sizeof *in);
    in->kind = tokenizer_get_kind(t);
    in->vocab_size = tokenizer_vocab_size(t);
    in->fingerprint = tokenizer_fingerprint(t);
    in->token_width = in->vocab_size <= 65536 ? 2 : 4;
    for (int k = 0; k < 6; k++) in->special[k] = tokenizer_special(t, (special_token)k);
}

/* Describes shards 0..n-1 of d->split in d->dir into d->shards; with
 * drop_empty a shard without a sentence is removed from the directory and
 * from the list. */
static status_t describe_split(dataset *d, int n, int drop_empty)
{
    d->info.n_shards = 0;
    for (int i = 0; i < n; i++) {
        dataset_shard *s = &d->shards[d->info.n_shards];
        shard_header h = {0};
        TRY(describe_shard(d->dir, d->split, i, s, &h));
        if (drop_empty && h.n_sentences == 0) {
            char path[4200];
            snprintf(path, sizeof path, "%s/%s", d->dir, s->file);
            FAIL_IF(unlink(path) != 0, ST_IO, "%s: cannot remove the empty shard", path);
            continue;
        }
        d->info.n_shards++;
        TRY(dataset_check_shard(d, d->info.n_shards - 1, &h));
        d->info.n_bytes += s->bytes;
        d->info.n_documents += h.n_documents, d->info.n_sentences += h.n_sentences, d->info.n_tokens += h.n_tokens;
    }
    return ST_OK;
}

static status_t split_init(dataset *d, const char *dir, const tokenizer *t, dataset_split split, int n,
                           double valid_fraction)
{
    memset(d, 0, sizeof *d);
    d->shards = calloc((size_t)n + 1, sizeof(dataset_shard));
    FAIL_IF(!d->shards, ST_NOMEM, "%s: out of memory for the manifest", dir);
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    d->split = split;
    info_from_tokenizer(t, &d->info);
    d->info.valid_fraction = valid_fraction;
    return ST_OK;
}

status_t dataset_manifest_write_splits(const char *dir, const tokenizer *t, int n_pieces, double valid_fraction,
                                       dataset_info *train, dataset_info *valid)
{
    int with_valid = valid_fraction > 0;
    dataset d[2] = {0};
    status_t st = split_init(&d[0], dir, t, DATASET_SPLIT_TRAIN, n_pieces, valid_fraction);
    if (st == ST_OK && with_valid) st = split_init(&d[1], dir, t, DATASET_SPLIT_VALID, n_pieces, valid_fraction);
    for (int k = 0; st == ST_OK && k <= with_valid; k++) st = describe_split(&d[k], n_pieces, with_valid);
    char *text = NULL;
    if (st == ST_OK) {
        cJSON *m = manifest_json(&d[0], with_valid ? &d[1] : NULL);
        text = cJSON_Print(m);
        cJSON_Delete(m);
        if (!text) st = st_fail(ST_NOMEM, "%s: out of memory writing the manifest", dir);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, DATASET_MANIFEST);
    if (st == ST_OK) st = fileio_write_atomic(path, text, strlen(text));
    free(text);
    if (st == ST_OK && train) *train = d[0].info;
    if (st == ST_OK && valid) *valid = d[1].info;
    free(d[0].shards);
    free(d[1].shards);
    return st;
}

status_t dataset_manifest_write(const char *dir, const tokenizer *t, int n_shards, dataset_info *info)
{
    return dataset_manifest_write_splits(dir, t, n_shards, 0, info, NULL);
}

status_t dataset_check_shard(const dataset *d, int i, const shard_header *h)
{
    const dataset_shard *s = &d->shards[i];
    FAIL_IF(h->fingerprint != d->info.fingerprint, ST_FORMAT,
            "%s/%s: vocabulary fingerprint mismatch at byte 24 (the shard has %016llx, the dataset vocabulary %016llx); "
            "the shard was made with another vocabulary, re-run mpilm prep", d->dir, s->file,
            (unsigned long long)h->fingerprint, (unsigned long long)d->info.fingerprint);
    FAIL_IF(h->vocab_size != d->info.vocab_size || h->token_width != d->info.token_width, ST_FORMAT,
            "%s/%s: vocabulary size %u / token width %u differ from the dataset's (%u / %u); re-run mpilm prep", d->dir,
            s->file, h->vocab_size, h->token_width, d->info.vocab_size, d->info.token_width);
    FAIL_IF(s->n_tokens && (h->n_tokens != s->n_tokens || h->n_documents != s->n_documents ||
                            h->n_sentences != s->n_sentences || h->n_frames != s->n_frames), ST_FORMAT,
            "%s/%s: counts differ from %s (shard: %llu tokens, manifest: %llu); re-run mpilm prep", d->dir, s->file,
            DATASET_MANIFEST, (unsigned long long)h->n_tokens, (unsigned long long)s->n_tokens);
    return ST_OK;
}

status_t dataset_verify_shard(const dataset *d, int i)
{
    const dataset_shard *s = &d->shards[i];
    char path[4200];
    dataset_shard_path(d, i, path, sizeof path);
    struct stat sb;
    FAIL_IF(stat(path, &sb) != 0, ST_IO, "%s: missing shard listed in %s; re-run mpilm prep", path, DATASET_MANIFEST);
    FAIL_IF((uint64_t)sb.st_size != s->bytes, ST_FORMAT,
            "%s: size %llu bytes differs from %s (%llu bytes); the shard is truncated or replaced, re-run mpilm prep",
            path, (unsigned long long)sb.st_size, DATASET_MANIFEST, (unsigned long long)s->bytes);
    shard_reader *r;
    TRY(shard_reader_open(&r, path));
    status_t st = dataset_check_shard(d, i, shard_reader_header(r));
    if (st == ST_OK) st = shard_reader_verify(r);
    shard_reader_close(r);
    uint64_t h = 0;
    if (st == ST_OK) st = hash_file(path, &h);
    if (st == ST_OK && h != s->hash)
        st = st_fail(ST_FORMAT, "%s: file checksum mismatch at byte 0 (expected %016llx from %s, found %016llx); the "
                     "shard was changed after mpilm prep", path, (unsigned long long)s->hash, DATASET_MANIFEST,
                     (unsigned long long)h);
    return st;
}

/* ---------------------------------------------------------------- reading */

typedef struct json_ctx { const char *path; const cJSON *obj; } json_ctx;

static status_t json_u64(json_ctx c, const char *key, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c.obj, key);
    FAIL_IF(!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < 0x1p64), ST_FORMAT,
            "%s: \"%s\" is missing or not a number from 0 to 2^64; re-run mpilm prep", c.path, key);
    *out = (uint64_t)v->valuedouble;
    return ST_OK;
}

static status_t json_hex(json_ctx c, const char *key, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c.obj, key);
    FAIL_IF(!cJSON_IsString(v) || !hash_from_hex(v->valuestring, out), ST_FORMAT,
            "%s: \"%s\" is missing or not 16 hex digits; re-run mpilm prep", c.path, key);
    return ST_OK;
}

static status_t parse_shard(json_ctx c, dataset_shard *s)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(c.obj, "file");
    FAIL_IF(!cJSON_IsString(f) || strlen(f->valuestring) >= sizeof s->file || strchr(f->valuestring, '/'), ST_FORMAT,
            "%s: a shard's \"file\" is missing or not a plain file name", c.path);
    snprintf(s->file, sizeof s->file, "%s", f->valuestring);
    uint64_t frames;
    TRY(json_u64(c, "bytes", &s->bytes));
    TRY(json_hex(c, "xxh3", &s->hash));
    TRY(json_u64(c, "frames", &frames));
    TRY(json_u64(c, "documents", &s->n_documents));
    TRY(json_u64(c, "sentences", &s->n_sentences));
    TRY(json_u64(c, "tokens", &s->n_tokens));
    s->n_frames = (uint32_t)frames;
    return ST_OK;
}

static status_t parse_manifest(const char *path, const cJSON *m, dataset *d)
{
    const char *split_key = d->split == DATASET_SPLIT_VALID ? "valid_shards" : "shards";
    json_ctx c = {path, m};
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(m, "format");
    FAIL_IF(!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "mpilm-dataset") != 0, ST_FORMAT,
            "%s: not an mpilm dataset manifest (\"format\" is not \"mpilm-dataset\")", path);
    uint64_t version = 0, vocab = 0, width = 0;
    TRY(json_u64(c, "version", &version));
    FAIL_IF(version > DATASET_VERSION, ST_FORMAT,
            "%s: dataset format version %llu is newer than this mpilm reads (%d); use a newer mpilm", path,
            (unsigned long long)version, DATASET_VERSION);
    TRY(json_u64(c, "vocab_size", &vocab));
    TRY(json_u64(c, "token_width", &width));
    TRY(json_hex(c, "fingerprint", &d->info.fingerprint));
    d->info.vocab_size = (uint32_t)vocab, d->info.token_width = (uint32_t)width;
    const cJSON *fraction = cJSON_GetObjectItemCaseSensitive(m, "valid_fraction");
    FAIL_IF(fraction && !(cJSON_IsNumber(fraction) && fraction->valuedouble > 0 && fraction->valuedouble < 1),
            ST_FORMAT, "%s: \"valid_fraction\" is not a number above 0 and below 1; re-run mpilm prep", path);
    d->info.valid_fraction = fraction ? fraction->valuedouble : 0;
    FAIL_IF(!fraction && cJSON_GetObjectItemCaseSensitive(m, "valid_shards"), ST_FORMAT,
            "%s: \"valid_shards\" without \"valid_fraction\"; re-run mpilm prep", path);
    FAIL_IF(d->split == DATASET_SPLIT_VALID && !fraction, ST_USAGE,
            "%s: the dataset has no valid split (no \"valid_fraction\" in %s); make one with mpilm prep "
            "--valid-fraction F (e.g. 0.01), or use the train split", d->dir, DATASET_MANIFEST);
    const cJSON *shards = cJSON_GetObjectItemCaseSensitive(m, split_key);
    FAIL_IF(!cJSON_IsArray(shards) || cJSON_GetArraySize(shards) == 0, ST_FORMAT,
            "%s: \"%s\" is missing or empty; re-run mpilm prep", path, split_key);
    d->info.n_shards = cJSON_GetArraySize(shards);
    d->shards = calloc((size_t)d->info.n_shards, sizeof *d->shards);
    FAIL_IF(!d->shards, ST_NOMEM, "%s: out of memory", path);
    int i = 0;
    for (const cJSON *s = shards->child; s; s = s->next, i++) {
        TRY(parse_shard((json_ctx){path, s}, &d->shards[i]));
        d->info.n_bytes += d->shards[i].bytes;
        d->info.n_documents += d->shards[i].n_documents;
        d->info.n_sentences += d->shards[i].n_sentences;
        d->info.n_tokens += d->shards[i].n_tokens;
    }
    return ST_OK;
}

/* The vocabulary files in the directory must be the ones the manifest names. */
static status_t check_vocab(dataset *d)
{
    tokenizer_kind kind;
    tokenizer *t;
    TRY(tokenizer_detect(d->dir, &kind));
    TRY(tokenizer_load(d->dir, kind, &t));
    dataset_info from_vocab;
    info_from_tokenizer(t, &from_vocab);
    tokenizer_free(t);
    FAIL_IF(from_vocab.fingerprint == d->info.fingerprint && from_vocab.vocab_size != d->info.vocab_size, ST_FORMAT,
            "%s/%s: vocab_size %u differs from the %u tokens of the vocabulary files in the directory (their "
            "fingerprint %016llx is the manifest's, so the manifest was edited); put back vocab_size %u or re-run mpilm "
            "prep", d->dir, DATASET_MANIFEST, d->info.vocab_size, from_vocab.vocab_size,
            (unsigned long long)from_vocab.fingerprint, from_vocab.vocab_size);
    FAIL_IF(from_vocab.fingerprint != d->info.fingerprint, ST_FORMAT,
            "%s/%s: vocabulary fingerprint mismatch (the manifest says %016llx with %u tokens, the vocabulary files in "
            "the directory give %016llx with %u); put back the dataset's vocabulary or re-run mpilm prep", d->dir,
            DATASET_MANIFEST, (unsigned long long)d->info.fingerprint, d->info.vocab_size,
            (unsigned long long)from_vocab.fingerprint, from_vocab.vocab_size);
    d->info.kind = from_vocab.kind;
    memcpy(d->info.special, from_vocab.special, sizeof d->info.special);
    return ST_OK;
}

status_t dataset_open(dataset *d, const char *dir) { return dataset_open_split(d, dir, DATASET_SPLIT_TRAIN); }

int dataset_has_split(const char *dir, dataset_split split)
{
    dataset d;
    if (dataset_open(&d, dir) != ST_OK) return 0;
    int has = split == DATASET_SPLIT_TRAIN || d.info.valid_fraction > 0;
    dataset_close(&d);
    return has;
}

status_t dataset_open_split(dataset *d, const char *dir, dataset_split split)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    d->split = split;
    char path[4200], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/%s", dir, DATASET_MANIFEST);
    FAIL_IF(!dataset_is_dataset(dir), ST_IO, "%s: no %s there; pass a directory made by mpilm prep", dir,
            DATASET_MANIFEST);
    TRY(fileio_read_file(path, &text, &len));
    cJSON *m = cJSON_ParseWithLength(text, len);
    status_t st = ST_OK;
    if (!m || !cJSON_IsObject(m))
        st = st_fail(ST_FORMAT, "%s: malformed JSON near byte %ld; re-run mpilm prep", path,
                     m ? 0L : (long)(cJSON_GetErrorPtr() - text));
    if (st == ST_OK) st = parse_manifest(path, m, d);
    if (st == ST_OK) st = check_vocab(d);
    cJSON_Delete(m);
    free(text);
    if (st != ST_OK) dataset_close(d);
    return st;
}

void dataset_close(dataset *d)
{
    free(d->shards);
    d->shards = NULL;
}

status_t dataset_info_read(const char *dir, dataset_info *info)
{
    dataset d;
    TRY(dataset_open(&d, dir));
    *info = d.info;
    dataset_close(&d);
    return ST_OK;
}

/* The kind-independent part of the tokenizer: detection, loading dispatch,
 * accessors, fingerprint, saving, special tokens inside text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/hash.h"
#include "tokenizer_internal.h"

const char *const tokenizer_special_names[6] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<|endoftext|>"};

static int file_exists(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, R_OK) == 0;
}

status_t tokenizer_detect(const char *dir, tokenizer_kind *kind)
{
    if (file_exists(dir, "vocab.txt")) {
        *kind = TOKENIZER_WORDPIECE;
        return ST_OK;
    }
    if (file_exists(dir, "encoder.json") || file_exists(dir, "vocab.json")) {
        *kind = TOKENIZER_BPE;
        return ST_OK;
    }
    return st_fail(ST_IO,
                   "%s: no vocabulary found (expected vocab.txt for WordPiece, or encoder.json/vocab.json "
                   "+ vocab.bpe/merges.txt for BPE); check --vocab",
                   dir);
}

status_t tokenizer_load(const char *dir, tokenizer_kind kind, tokenizer **out)
{
    *out = NULL;
    tokenizer *t = calloc(1, sizeof *t);
    FAIL_IF(!t, ST_NOMEM, "out of memory creating a tokenizer");
    t->kind = kind;
    for (int i = 0; i < 6; i++) t->special[i] = -1;
    status_t st = tokenizer_word_cache_init(&t->cache);
    if (st == ST_OK) st = bytes_reserve(&t->word_buf, &t->word_cap, 256);
    if (st == ST_OK) st = kind == TOKENIZER_BPE ? bpe_load(t, dir) : wordpiece_load(t, dir);
    if (st != ST_OK) {
        tokenizer_free(t);
        return st;
    }
    hash_stream *h = hash_stream_new();
    if (!h) {
        tokenizer_free(t);
        return st_fail(ST_NOMEM, "out of memory hashing the vocabulary");
    }
    for (int i = 0; i < 2; i++)
        if (t->file_data[i]) hash_stream_update(h, t->file_data[i], t->file_len[i]);
    t->fingerprint = hash_stream_digest(h);
    hash_stream_free(h);
    *out = t;
    return ST_OK;
}

void tokenizer_free(tokenizer *t)
{
    if (!t) return;
    strmap_free(&t->vocab);
    tokenizer_word_cache_free(&t->cache);
    free(t->token_text);
    free(t->token_arena);
    free(t->token_raw);
    free(t->token_raw_len);
    free(t->merges.keys);
    free(t->merges.rank);
    free(t->merges.merged);
    for (int i = 0; i < 2; i++) free(t->file_data[i]);
    free(t->work_ids);
    free(t->work_rank);
    free(t->work_next);
    free(t->work_heap);
    free(t->word_buf);
    free(t);
}

tokenizer_kind tokenizer_get_kind(const tokenizer *t) { return t->kind; }
uint32_t tokenizer_vocab_size(const tokenizer *t) { return t->n_vocab; }
int32_t tokenizer_special(const tokenizer *t, special_token which) { return t->special[which]; }
uint64_t tokenizer_fingerprint(const tokenizer *t) { return t->fingerprint; }

void tokenizer_set_case(tokenizer *t, int lowercase, int strip_accents)
{
    /* The word cache is keyed by normalized words, so it stays valid. */
    t->lowercase = lowercase;
    t->strip_accents = strip_accents;
}

void tokenizer_get_case(const tokenizer *t, int *lowercase, int *strip_accents)
{
    *lowercase = t->kind == TOKENIZER_WORDPIECE && t->lowercase;
    *strip_accents = t->kind == TOKENIZER_WORDPIECE && t->strip_accents;
}

const char *tokenizer_token(const tokenizer *t, uint32_t id)
{
    return id < t->n_vocab ? t->token_text[id] : NULL;
}

/* The special token whose string starts text[0..len) (its length in
 * *match_len), or -1. */
static int tokenizer_match_special(const tokenizer *t, const char *text, size_t len, size_t *match_len)
{
    for (int i = 0; i < 6; i++) {
        if (t->special[i] < 0) continue;
        size_t n = strlen(tokenizer_special_names[i]);
        if (n <= len && memcmp(text, tokenizer_special_names[i], n) == 0) {
            *match_len = n;
            return i;
        }
    }
    return -1;
}

status_t tokenizer_encode(tokenizer *t, const char *text, size_t len, uint32_t **ids, size_t *n, size_t *cap)
{
    /* Special-token strings are matched in the raw text first (as Hugging
     * Face's added tokens): the text between them is encoded normally. */
    const char opener = t->kind == TOKENIZER_BPE ? '<' : '[';
    size_t start = 0;
    for (const char *p = memchr(text, opener, len); p; p = memchr(p + 1, opener, len - (size_t)(p + 1 - text))) {
        size_t at = (size_t)(p - text), match_len;
        int which = tokenizer_match_special(t, p, len - at, &match_len);
        if (which < 0) continue;
        TRY(t->kind == TOKENIZER_BPE ? bpe_encode(t, text + start, at - start, ids, n, cap)
                                     : wordpiece_encode(t, text + start, at - start, ids, n, cap));
        TRY(ids_reserve(ids, cap, *n + 1));
        (*ids)[(*n)++] = (uint32_t)t->special[which];
        start = at + match_len;
        if (start >= len) return ST_OK;
        p = text + start - 1;
    }
    return t->kind == TOKENIZER_BPE ? bpe_encode(t, text + start, len - start, ids, n, cap)
                                    : wordpiece_encode(t, text + start, len - start, ids, n, cap);
}

status_t tokenizer_decode(const tokenizer *t, const uint32_t *ids, size_t n_ids, char **out, size_t *n, size_t *cap)
{
    for (size_t i = 0; i < n_ids; i++)
        FAIL_IF(ids[i] >= t->n_vocab, ST_FORMAT,
                "decode: token id %u at position %zu is outside the vocabulary (expected < %u)", ids[i], i,
                t->n_vocab);
    return t->kind == TOKENIZER_BPE ? bpe_decode(t, ids, n_ids, out, n, cap)
                                    : wordpiece_decode(t, ids, n_ids, out, n, cap);
}

status_t tokenizer_save(const tokenizer *t, const char *dir)
{
    TRY(fileio_make_dirs(dir, 0755));
    static const char *const names[2][2] = {{"encoder.json", "vocab.bpe"}, {"vocab.txt", NULL}};
    const int k = t->kind == TOKENIZER_BPE ? 0 : 1;
    for (int i = 0; i < 2 && names[k][i]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[k][i]);
        TRY(fileio_write_atomic(path, t->file_data[i], t->file_len[i]));
    }
    return ST_OK;
}

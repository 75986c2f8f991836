/* The string → value hash map, the word cache and growable arrays of the tokenizers. */
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "tokenizer_internal.h"

uint64_t strmap_hash(const char *key, size_t len) { return hash_xxh3(key, len); }

status_t strmap_init(strmap *m, uint32_t expected)
{
    memset(m, 0, sizeof *m);
    uint32_t slots = 16;
    while (slots < 2 * (uint64_t)expected) slots *= 2;
    m->slots = calloc(slots, sizeof *m->slots);
    m->cap = slots / 2;
    m->key_off = malloc(m->cap * sizeof *m->key_off);
    m->key_len = malloc(m->cap * sizeof *m->key_len);
    m->value = malloc(m->cap * sizeof *m->value);
    m->arena_cap = 16 * (size_t)m->cap;
    m->arena = malloc(m->arena_cap);
    m->mask = slots - 1;
    if (!m->slots || !m->key_off || !m->key_len || !m->value || !m->arena) {
        strmap_free(m);
        return st_fail(ST_NOMEM, "out of memory for a hash map of %u entries", expected);
    }
    return ST_OK;
}

void strmap_free(strmap *m)
{
    free(m->arena);
    free(m->key_off);
    free(m->key_len);
    free(m->value);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

void strmap_clear(strmap *m)
{
    memset(m->slots, 0, ((size_t)m->mask + 1) * sizeof *m->slots);
    m->n = 0;
    m->arena_len = 0;
}

int64_t strmap_find(const strmap *m, const char *key, size_t len, uint64_t hash)
{
    for (uint32_t h = (uint32_t)hash & m->mask;; h = (h + 1) & m->mask) {
        uint32_t s = m->slots[h];
        if (s == 0) return -1;
        uint32_t i = s - 1;
        if (m->key_len[i] == len && memcmp(m->arena + m->key_off[i], key, len) == 0) return i;
    }
}

static status_t strmap_grow(strmap *m)
{
    uint32_t cap = m->cap * 2, slots = cap * 2;
    uint32_t *off = realloc(m->key_off, cap * sizeof *off);
    if (off) m->key_off = off;
    uint32_t *klen = realloc(m->key_len, cap * sizeof *klen);
    if (klen) m->key_len = klen;
    uint32_t *val = realloc(m->value, cap * sizeof *val);
    if (val) m->value = val;
    uint32_t *sl = calloc(slots, sizeof *sl);
    if (!off || !klen || !val || !sl) {
        free(sl);
        return st_fail(ST_NOMEM, "out of memory growing a hash map to %u entries", cap);
    }
    free(m->slots);
    m->slots = sl;
    m->cap = cap;
    m->mask = slots - 1;
    for (uint32_t i = 0; i < m->n; i++) {
        uint32_t h = (uint32_t)strmap_hash(m->arena + m->key_off[i], m->key_len[i]) & m->mask;
        while (m->slots[h]) h = (h + 1) & m->mask;
        m->slots[h] = i + 1;
    }
    return ST_OK;
}

status_t strmap_add(strmap *m, const char *key, size_t len, uint64_t hash, uint32_t value, uint32_t *index)
{
    if (m->n == m->cap) TRY(strmap_grow(m));
    TRY(bytes_reserve(&m->arena, &m->arena_cap, m->arena_len + len + 1));
    uint32_t i = m->n++;
    m->key_off[i] = (uint32_t)m->arena_len;
    m->key_len[i] = (uint32_t)len;
    m->value[i] = value;
    memcpy(m->arena + m->arena_len, key, len);
    m->arena[m->arena_len + len] = 0;
    m->arena_len += len + 1;
    uint32_t h = (uint32_t)hash & m->mask;
    while (m->slots[h]) h = (h + 1) & m->mask;
    m->slots[h] = i + 1;
    if (index) *index = i;
    return ST_OK;
}

status_t tokenizer_array_reserve(void **array, size_t *cap, size_t need, size_t elem_size)
{
    if (need <= *cap) return ST_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *p = realloc(*array, c * elem_size);
    FAIL_IF(!p, ST_NOMEM, "out of memory growing an array to %zu elements of %zu bytes", c, elem_size);
    *array = p;
    *cap = c;
    return ST_OK;
}

/* Bounds of the word cache: past either, it starts over empty. */
enum { CACHE_MAX_WORDS = 1 << 17, CACHE_MAX_IDS = 1 << 21, CACHE_MAX_KEY = 256 };

status_t tokenizer_word_cache_init(word_cache *c)
{
    memset(c, 0, sizeof *c);
    TRY(strmap_init(&c->map, CACHE_MAX_WORDS));
    return ids_reserve(&c->ids, &c->cap_ids, 1 << 16);
}

void tokenizer_word_cache_free(word_cache *c)
{
    strmap_free(&c->map);
    free(c->ids);
    memset(c, 0, sizeof *c);
}

const uint32_t *tokenizer_word_cache_get(const word_cache *c, const char *key, size_t len, uint64_t hash, uint32_t *count)
{
    int64_t i = strmap_find(&c->map, key, len, hash);
    if (i < 0) return NULL;
    const uint32_t *p = c->ids + c->map.value[i];
    *count = p[0];
    return p + 1;
}

status_t tokenizer_word_cache_put(word_cache *c, const char *key, size_t len, uint64_t hash, const uint32_t *ids, uint32_t count)
{
    if (len > CACHE_MAX_KEY) return ST_OK;
    if (c->map.n + 1 >= CACHE_MAX_WORDS || c->n_ids + count + 1 > CACHE_MAX_IDS) {
        strmap_clear(&c->map);
        c->n_ids = 0;
    }
    TRY(ids_reserve(&c->ids, &c->cap_ids, c->n_ids + count + 1));
    TRY(strmap_add(&c->map, key, len, hash, (uint32_t)c->n_ids, NULL));
    c->ids[c->n_ids] = count;
    memcpy(c->ids + c->n_ids + 1, ids, count * sizeof *ids);
    c->n_ids += count + 1;
    return ST_OK;
}

status_t tokenizer_encode_sink_word(void *ctx, const char *word, size_t len)
{
    encode_sink *sink = ctx;
    tokenizer *t = sink->t;
    uint64_t h = strmap_hash(word, len);
    uint32_t count;
    const uint32_t *hit = tokenizer_word_cache_get(&t->cache, word, len, h, &count);
    if (!hit) {
        TRY(sink->encode_word(t, word, len, &count));
        hit = t->work_ids;
        TRY(tokenizer_word_cache_put(&t->cache, word, len, h, hit, count));
    }
    TRY(ids_reserve(sink->ids, sink->cap, *sink->n + count));
    memcpy(*sink->ids + *sink->n, hit, count * sizeof *hit);
    *sink->n += count;
    return ST_OK;
}

/* data/tokenizer_internal — what the tokenizer's files share (not a public API).
 *
 * Owns: the tokenizer object, the string → value hash map used for vocabularies
 * and word caches, and the per-kind entry points that tokenizer.c dispatches to.
 * Included only by src/data/{tokenizer,tokenizer_train,bpe,wordpiece,strmap}.c
 * and the tokenizer's unit test. Must not touch: shards, models, MPI.
 */
#ifndef MPILM_DATA_TOKENIZER_INTERNAL_H
#define MPILM_DATA_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* Open-addressing map from byte strings to uint32 values. Keys are copied into
 * one arena; entries are numbered 0.. in insertion order.
 * Invariant: slots[h] == 0 (empty) or 1 + the index of an entry whose key hashes
 * to a probe sequence passing through h; load factor <= 1/2. */
typedef struct strmap {
    char *arena;
    size_t arena_len, arena_cap;
    uint32_t *key_off, *key_len, *value;
    uint32_t n, cap;  /* entries, capacity of the entry arrays */
    uint32_t *slots;
    uint32_t mask;    /* number of slots - 1 */
} strmap;

status_t strmap_init(strmap *m, uint32_t expected);
void strmap_free(strmap *m);
void strmap_clear(strmap *m);
/* Entry index of key, or -1. */
int64_t strmap_find(const strmap *m, const char *key, size_t len, uint64_t hash);
/* Adds key (absent) with value; returns its entry index through *index. */
status_t strmap_add(strmap *m, const char *key, size_t len, uint64_t hash, uint32_t value, uint32_t *index);
uint64_t strmap_hash(const char *key, size_t len);
static inline const char *strmap_key(const strmap *m, uint32_t i) { return m->arena + m->key_off[i]; }

/* Cache of encoded words: key bytes → ids, bounded; cleared whole when full. */
typedef struct word_cache {
    strmap map;       /* value = offset in ids of [count, id...] */
    uint32_t *ids;
    size_t n_ids, cap_ids;
} word_cache;

status_t tokenizer_word_cache_init(word_cache *c);
void tokenizer_word_cache_free(word_cache *c);
/* The ids of key, or NULL; *count receives their number. */
const uint32_t *tokenizer_word_cache_get(const word_cache *c, const char *key, size_t len, uint64_t hash, uint32_t *count);
status_t tokenizer_word_cache_put(word_cache *c, const char *key, size_t len, uint64_t hash, const uint32_t *ids, uint32_t count);

/* Growable arrays: room for need elements of elem_size bytes in *array
 * (capacity *cap, doubled as needed). */
status_t tokenizer_array_reserve(void **array, size_t *cap, size_t need, size_t elem_size);
static inline status_t ids_reserve(uint32_t **ids, size_t *cap, size_t need)
{
    return tokenizer_array_reserve((void **)ids, cap, need, sizeof **ids);
}
static inline status_t bytes_reserve(char **buf, size_t *cap, size_t need)
{
    return tokenizer_array_reserve((void **)buf, cap, need, 1);
}

/* Where encoded ids go, and how a word missing from the word cache is encoded
 * (into t->work_ids, its count in *count). */
typedef struct encode_sink {
    tokenizer *t;
    uint32_t **ids;
    size_t *n, *cap;
    status_t (*encode_word)(tokenizer *t, const char *word, size_t len, uint32_t *count);
} encode_sink;

/* A pretoken_fn (ctx: an encode_sink) that appends the ids of one word,
 * through the word cache. */
status_t tokenizer_encode_sink_word(void *ctx, const char *word, size_t len);

/* Merge table of byte-level BPE: (left, right) → (rank, merged id). */
typedef struct merge_table {
    uint64_t *keys;   /* left << 32 | right, or UINT64_MAX for an empty slot */
    uint32_t *rank, *merged;
    uint32_t mask;
} merge_table;

struct tokenizer {
    tokenizer_kind kind;
    uint32_t n_vocab;
    uint64_t fingerprint;
    int32_t special[6];         /* by special_token; -1 when absent */
    strmap vocab;               /* token bytes → id (BPE: raw bytes; WordPiece: the piece) */
    char **token_text;          /* id → token string as in the vocab file (NUL-terminated) */
    char *token_arena;
    /* the vocab files' bytes, for tokenizer_save */
    char *file_data[2];
    size_t file_len[2];
    /* BPE */
    uint32_t byte_id[256];      /* id of the single-byte token of each byte */
    char **token_raw;           /* id → raw bytes (BPE) */
    uint32_t *token_raw_len;
    merge_table merges;
    /* WordPiece */
    int lowercase, strip_accents;
    /* both */
    word_cache cache;
    uint32_t *work_ids;         /* scratch of one word's symbols / ids */
    int32_t *work_rank;         /* BPE: short words, rank of the pair at each position; long words, previous symbol */
    int32_t *work_next;         /* BPE, long words: linked list of symbols ... */
    uint64_t *work_heap;        /* ... and a min-heap of (rank, position) */
    size_t work_cap;
    char *word_buf;             /* scratch of one normalized word */
    size_t word_cap;
};

/* GPT-2's bytes_to_unicode: the code point that stands for byte b. */
uint32_t bpe_byte_to_unicode(unsigned b);
/* Its inverse: the byte of code point cp, or -1. */
int bpe_unicode_to_byte(uint32_t cp);

/* Calls emit(ctx, start, len) for every GPT-2 pre-token of text[0..len). */
typedef status_t (*pretoken_fn)(void *ctx, const char *piece, size_t len);
status_t bpe_pretokenize(const char *text, size_t len, pretoken_fn emit, void *ctx);

/* BERT's normalizer + pre-tokenizer: calls emit for every word (normalized). */
status_t wordpiece_pretokenize(tokenizer *t, const char *text, size_t len, pretoken_fn emit, void *ctx);

status_t bpe_load(tokenizer *t, const char *dir);
status_t bpe_encode(tokenizer *t, const char *text, size_t len, uint32_t **ids, size_t *n, size_t *cap);
status_t bpe_decode(const tokenizer *t, const uint32_t *ids, size_t n_ids, char **out, size_t *n, size_t *cap);
status_t wordpiece_load(tokenizer *t, const char *dir);
status_t wordpiece_encode(tokenizer *t, const char *text, size_t len, uint32_t **ids, size_t *n, size_t *cap);
status_t wordpiece_decode(const tokenizer *t, const uint32_t *ids, size_t n_ids, char **out, size_t *n, size_t *cap);

extern const char *const tokenizer_special_names[6];

#endif

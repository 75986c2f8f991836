/* Byte-level BPE exactly as GPT-2: the byte ↔ unicode table, the split regex
 * implemented by hand, merges by rank, encoder.json + vocab.bpe loading. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/fileio.h"
#include "tokenizer_internal.h"
#include "unicode_props.h"

/* bytes_to_unicode(): printable Latin-1 bytes stand for themselves; the other
 * 68 bytes take U+0100.. in increasing byte order. */
static int byte_printable(unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

uint32_t bpe_byte_to_unicode(unsigned b)
{
    if (byte_printable(b)) return b;
    uint32_t k = 0;
    for (unsigned x = 0; x < b; x++) k += !byte_printable(x);
    return 256 + k;
}

int bpe_unicode_to_byte(uint32_t cp)
{
    if (cp < 256) return byte_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t k = 0;
    for (unsigned b = 0; b < 256; b++)
        if (!byte_printable(b) && k++ == cp - 256) return (int)b;
    return -1;
}

/* ---- pre-tokenization: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */

enum { C_OTHER, C_L, C_N, C_WS };

/* Class of each ASCII byte. */
static const unsigned char ascii_class[128] = {
    ['\t' ... '\r'] = C_WS, [' '] = C_WS, ['0' ... '9'] = C_N, ['A' ... 'Z'] = C_L, ['a' ... 'z'] = C_L,
};

/* Class of the character at s[i] (i < n); its byte length in *len. */
static inline int char_class(const unsigned char *s, size_t n, size_t i, int *len)
{
    if (s[i] < 0x80) {
        *len = 1;
        return ascii_class[s[i]];
    }
    uint32_t cp;
    *len = unicode_utf8_decode(s + i, n - i, &cp);
    unsigned f = unicode_flags(cp);
    return f & U_WS ? C_WS : f & U_L ? C_L : f & U_N ? C_N : C_OTHER;
}

/* Length of a contraction ('s 't 're 've 'm 'll 'd, lower case only) at s[i], or 0. */
static inline size_t contraction_len(const unsigned char *s, size_t n, size_t i)
{
    if (i + 1 >= n) return 0;
    unsigned a = s[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= n) return 0;
    unsigned b = s[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* End of the piece that starts at s[i]. */
static inline size_t pretoken_end(const unsigned char *s, size_t n, size_t i)
{
    if (s[i] == '\'') {
        size_t c = contraction_len(s, n, i);
        if (c) return i + c;
    }
    int len, cls = char_class(s, n, i, &len);
    size_t j = i + (size_t)len;
    if (s[i] == ' ' && j < n) { /* " ?X+": the space joins a following L, N or other run */
        int len2, cls2 = char_class(s, n, j, &len2);
        if (cls2 != C_WS) {
            cls = cls2;
            j += (size_t)len2;
        }
    }
    if (cls != C_WS) {
        while (j < n) {
            if (cls == C_L && s[j] < 0x80) { /* ASCII letters: the common case */
                if (ascii_class[s[j]] != C_L) break;
                j++;
                continue;
            }
            if (char_class(s, n, j, &len) != cls) break;
            j += (size_t)len;
        }
        return j;
    }
    /* \s+(?!\S) then \s+: a whitespace run leaves its last character to the
     * next piece when a non-space follows and the run has more than one. */
    size_t last = i;
    while (j < n && char_class(s, n, j, &len) == C_WS) {
        last = j;
        j += (size_t)len;
    }
    return j == n || last == i ? j : last;
}

status_t bpe_pretokenize(const char *text, size_t len, pretoken_fn emit, void *ctx)
{
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t j = pretoken_end(s, len, i);
        TRY(emit(ctx, text + i, j - i));
        i = j;
    }
    return ST_OK;
}

/* ---- merges */

static inline uint64_t merge_key(uint32_t left, uint32_t right) { return (uint64_t)left << 32 | right; }
static inline uint32_t merge_slot(uint64_t key, uint32_t mask)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

/* Rank of the merge (left, right), or -1; its result in *merged. */
static inline int32_t merge_find(const merge_table *m, uint32_t left, uint32_t right, uint32_t *merged)
{
    uint64_t key = merge_key(left, right);
    for (uint32_t h = merge_slot(key, m->mask);; h = (h + 1) & m->mask) {
        if (m->keys[h] == key) {
            *merged = m->merged[h];
            return (int32_t)m->rank[h];
        }
        if (m->keys[h] == UINT64_MAX) return -1;
    }
}

static status_t merge_table_init(merge_table *m, uint32_t n)
{
    uint32_t slots = 16;
    while (slots < 2 * (uint64_t)n) slots *= 2;
    m->keys = malloc(slots * sizeof *m->keys);
    m->rank = malloc(slots * sizeof *m->rank);
    m->merged = malloc(slots * sizeof *m->merged);
    FAIL_IF(!m->keys || !m->rank || !m->merged, ST_NOMEM, "out of memory for %u merges", n);
    memset(m->keys, 0xFF, slots * sizeof *m->keys);
    m->mask = slots - 1;
    return ST_OK;
}

/* Adds a merge unless the pair is already there (the first rank wins). */
static void merge_table_add(merge_table *m, uint32_t left, uint32_t right, uint32_t rank, uint32_t merged)
{
    uint64_t key = merge_key(left, right);
    uint32_t h = merge_slot(key, m->mask);
    while (m->keys[h] != UINT64_MAX) {
        if (m->keys[h] == key) return;
        h = (h + 1) & m->mask;
    }
    m->keys[h] = key;
    m->rank[h] = rank;
    m->merged[h] = merged;
}

/* ---- loading */

static status_t read_first(const char *dir, const char *const names[2], char *path, size_t path_size,
                           char **data, size_t *len)
{
    for (int i = 0; i < 2; i++) {
        snprintf(path, path_size, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        fclose(f);
        return fileio_read_file(path, data, len);
    }
    snprintf(path, path_size, "%s/%s", dir, names[0]);
    return st_fail(ST_IO, "%s: missing (neither %s nor %s is in %s); check --vocab", path, names[0], names[1], dir);
}

/* Decodes a byte-level token string into raw bytes (out has room for len). */
static int token_to_raw(const char *tok, size_t len, char *out, size_t *out_len)
{
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += (size_t)unicode_utf8_decode((const unsigned char *)tok + i, len - i, &cp);
        int b = bpe_unicode_to_byte(cp);
        if (b < 0) return -1;
        out[k++] = (char)b;
    }
    *out_len = k;
    return 0;
}

static status_t bpe_set_token(tokenizer *t, const char *path, uint32_t id, const char *tok, size_t len,
                              size_t *arena_used)
{
    FAIL_IF(t->token_text[id], ST_FORMAT, "%s: id %u is given twice (to \"%s\" and \"%s\"); ids must be unique",
            path, id, t->token_text[id], tok);
    char *text = t->token_arena + *arena_used;
    memcpy(text, tok, len + 1);
    t->token_text[id] = text;
    char *raw = text + len + 1;
    size_t raw_len;
    if (strcmp(tok, tokenizer_special_names[TOKEN_EOT]) == 0) {
        t->special[TOKEN_EOT] = (int32_t)id;
        memcpy(raw, tok, len);
        raw_len = len;
    } else {
        FAIL_IF(token_to_raw(tok, len, raw, &raw_len) != 0, ST_FORMAT,
                "%s: token \"%s\" (id %u) has a character outside GPT-2's byte alphabet; "
                "the file is not a byte-level BPE vocabulary",
                path, tok, id);
        uint64_t h = strmap_hash(raw, raw_len);
        int64_t other = strmap_find(&t->vocab, raw, raw_len, h);
        FAIL_IF(other >= 0, ST_FORMAT, "%s: duplicate token \"%s\" (ids %u and %u); tokens must be unique", path, tok,
                t->vocab.value[other], id);
        TRY(strmap_add(&t->vocab, raw, raw_len, h, id, NULL));
        if (raw_len == 1) t->byte_id[(unsigned char)raw[0]] = id;
    }
    t->token_raw[id] = raw;
    t->token_raw_len[id] = (uint32_t)raw_len;
    *arena_used += 2 * (len + 1);
    return ST_OK;
}

static status_t bpe_load_encoder(tokenizer *t, const char *path, const char *data, size_t len)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= data && at <= data + len ? (size_t)(at - data) : 0;
        return st_fail(ST_FORMAT, "%s: malformed JSON at byte offset %zu; expected an object {\"token\": id, ...}",
                       path, off);
    }
    status_t st = ST_OK;
    int n = cJSON_IsObject(root) ? cJSON_GetArraySize(root) : -1;
    if (n <= 0) {
        st = st_fail(ST_FORMAT, "%s: %s at byte offset 0; expected a non-empty object {\"token\": id, ...}", path,
                     n < 0 ? "not a JSON object" : "empty vocabulary");
        goto done;
    }
    t->n_vocab = (uint32_t)n;
    t->token_text = calloc((size_t)n, sizeof *t->token_text);
    t->token_raw = calloc((size_t)n, sizeof *t->token_raw);
    t->token_raw_len = calloc((size_t)n, sizeof *t->token_raw_len);
    t->token_arena = malloc(2 * len + 16);
    if (!t->token_text || !t->token_raw || !t->token_raw_len || !t->token_arena) {
        st = st_fail(ST_NOMEM, "%s: out of memory for %d tokens", path, n);
        goto done;
    }
    st = strmap_init(&t->vocab, (uint32_t)n);
    size_t arena_used = 0;
    int k = 0;
    for (const cJSON *e = root->child; e && st == ST_OK; e = e->next, k++) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (v < 0 || v >= n || v != (double)(uint32_t)v) {
            st = st_fail(ST_FORMAT, "%s: entry %d (\"%s\") has id %s (expected an integer in [0, %d)); ids must be 0..N-1",
                         path, k, e->string, cJSON_IsNumber(e) ? "out of range" : "not a number", n);
            break;
        }
        st = bpe_set_token(t, path, (uint32_t)v, e->string, strlen(e->string), &arena_used);
    }
    for (int id = 0; st == ST_OK && id < n; id++)
        if (!t->token_text[id]) st = st_fail(ST_FORMAT, "%s: no token has id %d; ids must be 0..N-1", path, id);
    for (int b = 0; st == ST_OK && b < 256; b++)
        if (strmap_find(&t->vocab, (const char[]){(char)b}, 1, strmap_hash((const char[]){(char)b}, 1)) < 0)
            st = st_fail(ST_FORMAT, "%s: byte 0x%02X has no single-byte token; a byte-level vocabulary needs all 256",
                         path, b);
done:
    cJSON_Delete(root);
    return st;
}

/* One side of a merge line, raw bytes → id. */
static status_t bpe_merge_side(const tokenizer *t, const char *path, int line, const char *tok, size_t len,
                               uint32_t *id, char *raw, size_t *raw_len)
{
    int64_t i = -1;
    if (token_to_raw(tok, len, raw, raw_len) == 0) i = strmap_find(&t->vocab, raw, *raw_len, strmap_hash(raw, *raw_len));
    FAIL_IF(i < 0, ST_FORMAT, "%s: line %d: merge names the unknown token \"%.*s\"; the merges do not belong to this vocabulary",
            path, line, (int)len, tok);
    *id = t->vocab.value[i];
    return ST_OK;
}

static status_t bpe_load_merges(tokenizer *t, const char *path, const char *data, size_t len)
{
    /* Room for every line: a vocabulary's tokens can be split in more ways than it has tokens, and a full
     * open-addressing table would never find an empty slot. */
    uint32_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += data[i] == '\n';
    TRY(merge_table_init(&t->merges, lines > t->n_vocab ? lines : t->n_vocab));
    uint32_t rank = 0;
    char raw[1024];
    int line = 0;
    for (size_t i = 0; i < len;) {
        const char *s = data + i;
        const char *nl = memchr(s, '\n', len - i);
        size_t n = nl ? (size_t)(nl - s) : len - i;
        i += n + 1;
        line++;
        if (n > 0 && s[n - 1] == '\r') n--;
        if (n == 0 || (line == 1 && n >= 9 && memcmp(s, "#version:", 9) == 0)) continue;
        const char *sp = memchr(s, ' ', n);
        FAIL_IF(!sp || sp == s || sp == s + n - 1 || memchr(sp + 1, ' ', (size_t)(s + n - sp - 1)), ST_FORMAT,
                "%s: line %d: malformed merge \"%.*s\" (expected two tokens separated by one space)", path, line,
                (int)n, s);
        size_t a_len = (size_t)(sp - s), b_len = n - a_len - 1;
        FAIL_IF(n >= sizeof raw, ST_FORMAT, "%s: line %d: merge longer than %zu bytes", path, line, sizeof raw);
        uint32_t a = 0, b = 0;
        size_t ra, rb;
        TRY(bpe_merge_side(t, path, line, s, a_len, &a, raw, &ra));
        TRY(bpe_merge_side(t, path, line, sp + 1, b_len, &b, raw + ra, &rb));
        int64_t m = strmap_find(&t->vocab, raw, ra + rb, strmap_hash(raw, ra + rb));
        FAIL_IF(m < 0, ST_FORMAT, "%s: line %d: the merge of \"%.*s\" is not in the vocabulary", path, line, (int)n, s);
        merge_table_add(&t->merges, a, b, rank++, t->vocab.value[m]);
    }
    return ST_OK;
}

status_t bpe_load(tokenizer *t, const char *dir)
{
    static const char *const vocab_names[2] = {"encoder.json", "vocab.json"};
    static const char *const merge_names[2] = {"vocab.bpe", "merges.txt"};
    char path[4096];
    TRY(read_first(dir, vocab_names, path, sizeof path, &t->file_data[0], &t->file_len[0]));
    TRY(bpe_load_encoder(t, path, t->file_data[0], t->file_len[0]));
    TRY(read_first(dir, merge_names, path, sizeof path, &t->file_data[1], &t->file_len[1]));
    return bpe_load_merges(t, path, t->file_data[1], t->file_len[1]);
}

/* ---- encoding */

/* Applies the merges to the symbols sym[0..n) of a short word; returns the
 * final count. Lowest rank first; equal pairs left to right. Quadratic in n,
 * which beats a heap for the short words that make up nearly all text. */
static size_t bpe_merge_short(const tokenizer *t, uint32_t *sym, int32_t *rank, size_t n)
{
    uint32_t merged;
    for (size_t i = 0; i + 1 < n; i++) rank[i] = merge_find(&t->merges, sym[i], sym[i + 1], &merged);
    while (n > 1) {
        int32_t best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < n; i++)
            if (rank[i] >= 0 && (best < 0 || rank[i] < best)) {
                best = rank[i];
                at = i;
            }
        if (best < 0) break;
        uint32_t a = sym[at], b = sym[at + 1], into = 0;
        merge_find(&t->merges, a, b, &into);
        size_t k = at;
        for (size_t i = at; i < n;) {
            if (i + 1 < n && sym[i] == a && sym[i + 1] == b) {
                sym[k++] = into;
                i += 2;
            } else {
                sym[k++] = sym[i++];
            }
        }
        n = k;
        for (size_t i = at > 0 ? at - 1 : 0; i + 1 < n; i++) rank[i] = merge_find(&t->merges, sym[i], sym[i + 1], &merged);
    }
    return n;
}

/* Min-heap of (rank << 32 | position): lowest rank, then leftmost, first. */
static void heap_push_u64(uint64_t *heap, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i > 0 && heap[(i - 1) / 2] > v) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = v;
}

static uint64_t heap_pop_u64(uint64_t *heap, size_t *n)
{
    uint64_t top = heap[0], last = heap[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap[c + 1] < heap[c]) c++;
        if (heap[c] >= last) break;
        heap[i] = heap[c];
        i = c;
    }
    if (*n) heap[i] = last;
    return top;
}

/* The same merges for a long word in O(n log n), as Hugging Face does: the
 * symbols form a linked list (next[i], or -1; a merged-away symbol has
 * next[i] == -2) and a heap holds every candidate pair; an entry whose pair
 * has changed since it was pushed is skipped when popped. */
static size_t bpe_merge_long(const tokenizer *t, uint32_t *sym, int32_t *next, int32_t *prev, uint64_t *heap, size_t n)
{
    size_t n_heap = 0;
    uint32_t merged;
    for (size_t i = 0; i < n; i++) {
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        prev[i] = (int32_t)i - 1;
        int32_t r = i + 1 < n ? merge_find(&t->merges, sym[i], sym[i + 1], &merged) : -1;
        if (r >= 0) heap_push_u64(heap, &n_heap, (uint64_t)r << 32 | i);
    }
    while (n_heap) {
        uint64_t top = heap_pop_u64(heap, &n_heap);
        uint32_t pos = (uint32_t)top, rank = (uint32_t)(top >> 32);
        int32_t nx = next[pos];
        if (nx < 0 || merge_find(&t->merges, sym[pos], sym[nx], &merged) != (int32_t)rank) continue;
        sym[pos] = merged;
        next[pos] = next[nx];
        if (next[nx] >= 0) prev[next[nx]] = (int32_t)pos;
        next[nx] = -2;
        int32_t r;
        if (prev[pos] >= 0 && (r = merge_find(&t->merges, sym[prev[pos]], sym[pos], &merged)) >= 0)
            heap_push_u64(heap, &n_heap, (uint64_t)r << 32 | (uint32_t)prev[pos]);
        if (next[pos] >= 0 && (r = merge_find(&t->merges, sym[pos], sym[next[pos]], &merged)) >= 0)
            heap_push_u64(heap, &n_heap, (uint64_t)r << 32 | pos);
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) sym[k++] = sym[i];
    return k;
}

enum { BPE_LONG_WORD = 64 };

/* Scratch for a word of len bytes. */
static status_t bpe_reserve_work(tokenizer *t, size_t len)
{
    if (len <= t->work_cap) return ST_OK;
    size_t cap = t->work_cap;
    TRY(ids_reserve(&t->work_ids, &cap, len));
    int32_t *r = realloc(t->work_rank, cap * sizeof *r);
    if (r) t->work_rank = r;
    int32_t *nx = realloc(t->work_next, cap * sizeof *nx);
    if (nx) t->work_next = nx;
    uint64_t *h = realloc(t->work_heap, 2 * cap * sizeof *h);
    if (h) t->work_heap = h;
    FAIL_IF(!r || !nx || !h, ST_NOMEM, "out of memory encoding a word of %zu bytes", len);
    t->work_cap = cap;
    return ST_OK;
}

/* The merged ids of one pre-token into t->work_ids. */
static status_t bpe_word(tokenizer *t, const char *piece, size_t len, uint32_t *count)
{
    TRY(bpe_reserve_work(t, len));
    for (size_t i = 0; i < len; i++) t->work_ids[i] = t->byte_id[(unsigned char)piece[i]];
    *count = (uint32_t)(len < BPE_LONG_WORD ? bpe_merge_short(t, t->work_ids, t->work_rank, len)
                                            : bpe_merge_long(t, t->work_ids, t->work_next, t->work_rank,
                                                             t->work_heap, len));
    return ST_OK;
}

status_t bpe_encode(tokenizer *t, const char *text, size_t len, uint32_t **ids, size_t *n, size_t *cap)
{
    encode_sink sink = {t, ids, n, cap, bpe_word};
    return bpe_pretokenize(text, len, tokenizer_encode_sink_word, &sink);
}

status_t bpe_decode(const tokenizer *t, const uint32_t *ids, size_t n_ids, char **out, size_t *n, size_t *cap)
{
    size_t need = *n;
    for (size_t i = 0; i < n_ids; i++) need += t->token_raw_len[ids[i]];
    TRY(bytes_reserve(out, cap, need + 1));
    for (size_t i = 0; i < n_ids; i++) {
        memcpy(*out + *n, t->token_raw[ids[i]], t->token_raw_len[ids[i]]);
        *n += t->token_raw_len[ids[i]];
    }
    (*out)[*n] = 0;
    return ST_OK;
}

/* Training a vocabulary: BPE merges by iterated most-frequent pair, with
 * incremental pair counting.
 *
 * Method (docs/usage.md, "Training a vocabulary"):
 *  1. The corpus is pre-tokenized (GPT-2's split for BPE; BERT's normalizer +
 *     pre-tokenizer for WordPiece) and identical words are counted.
 *  2. Each distinct word becomes a sequence of symbols: its bytes (BPE), or
 *     its characters with "##" on every non-initial one (WordPiece, as Hugging
 *     Face's WordPieceTrainer).
 *  3. Repeatedly the most frequent adjacent pair (ties: smaller symbol ids
 *     first) is merged into a new symbol, until the vocabulary is full or no
 *     pair is left. Pair counts are kept incrementally: merging a pair only
 *     revisits the words that contain it (the positions index), subtracting
 *     their old pairs and adding their new ones; a max-heap with lazy updates
 *     (a popped entry whose count is stale is pushed again with the current
 *     count) finds the next pair. There is never a full recount.
 * Everything is deterministic: words are numbered in order of first occurrence.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "data/input.h"
#include "base/log.h"
#include "tokenizer_internal.h"

/* Pairs of symbols: (a, b) → pair index, counts, the words that hold them. */
typedef struct pair_info {
    uint32_t a, b;
    int64_t count;
    uint32_t *words; /* indices of words that held the pair when it was counted (may repeat or be stale) */
    size_t n_words, cap_words;
    uint32_t touched; /* last merge that raised the count */
} pair_info;

typedef struct heap_entry {
    int64_t count;
    uint32_t pair;
} heap_entry;

typedef struct trainer {
    int wordpiece;
    /* symbols: id → string, string → id */
    strmap symbols;
    /* distinct words: symbol sequences in one array */
    uint32_t *sym;
    size_t n_sym, cap_sym;
    uint64_t *word_off;  /* start of word w in sym */
    uint32_t *word_len;
    int64_t *word_count;
    uint32_t *word_stamp; /* last merge that visited the word */
    uint32_t n_words;
    /* pairs */
    pair_info *pairs;
    uint32_t n_pairs;
    size_t cap_pairs;
    uint64_t *pair_keys; /* open addressing: a << 32 | b, UINT64_MAX empty */
    uint32_t *pair_slots;
    uint32_t pair_mask;
    heap_entry *heap;
    size_t n_heap, cap_heap;
    uint32_t *touched; /* pairs whose count rose during the current merge */
    size_t n_touched, cap_touched;
    /* the merges made, in order */
    uint32_t (*merges)[3]; /* a, b, result */
    uint32_t n_merges;
    size_t cap_merges;
} trainer;

/* ---- pair index */

static inline uint32_t pair_hash(uint64_t key, uint32_t mask)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

static status_t pair_index_grow(trainer *tr)
{
    uint32_t slots = tr->pair_mask ? 2 * (tr->pair_mask + 1) : 1 << 16;
    uint64_t *keys = malloc(slots * sizeof *keys);
    uint32_t *idx = malloc(slots * sizeof *idx);
    if (!keys || !idx) {
        free(keys);
        free(idx);
        return st_fail(ST_NOMEM, "out of memory for %u symbol pairs", slots / 2);
    }
    memset(keys, 0xFF, slots * sizeof *keys);
    for (uint32_t p = 0; p < tr->n_pairs; p++) {
        uint64_t key = (uint64_t)tr->pairs[p].a << 32 | tr->pairs[p].b;
        uint32_t h = pair_hash(key, slots - 1);
        while (keys[h] != UINT64_MAX) h = (h + 1) & (slots - 1);
        keys[h] = key;
        idx[h] = p;
    }
    free(tr->pair_keys);
    free(tr->pair_slots);
    tr->pair_keys = keys;
    tr->pair_slots = idx;
    tr->pair_mask = slots - 1;
    return ST_OK;
}

/* The pair (a, b), created with count 0 when new. */
static status_t pair_get(trainer *tr, uint32_t a, uint32_t b, uint32_t *out)
{
    uint64_t key = (uint64_t)a << 32 | b;
    uint32_t h = pair_hash(key, tr->pair_mask);
    for (; tr->pair_keys[h] != UINT64_MAX; h = (h + 1) & tr->pair_mask)
        if (tr->pair_keys[h] == key) {
            *out = tr->pair_slots[h];
            return ST_OK;
        }
    if (2 * (tr->n_pairs + 1) > tr->pair_mask + 1) {
        TRY(pair_index_grow(tr));
        return pair_get(tr, a, b, out);
    }
    TRY(tokenizer_array_reserve((void **)&tr->pairs, &tr->cap_pairs, (size_t)tr->n_pairs + 1, sizeof *tr->pairs));
    tr->pair_keys[h] = key;
    tr->pair_slots[h] = tr->n_pairs;
    tr->pairs[tr->n_pairs] = (pair_info){.a = a, .b = b};
    *out = tr->n_pairs++;
    return ST_OK;
}

static status_t pair_add_word(pair_info *p, uint32_t w)
{
    if (p->n_words && p->words[p->n_words - 1] == w) return ST_OK;
    TRY(ids_reserve(&p->words, &p->cap_words, p->n_words + 1));
    p->words[p->n_words++] = w;
    return ST_OK;
}

static status_t pair_touch(trainer *tr, uint32_t p)
{
    if (tr->pairs[p].touched == tr->n_merges + 1) return ST_OK;
    tr->pairs[p].touched = tr->n_merges + 1;
    TRY(ids_reserve(&tr->touched, &tr->cap_touched, tr->n_touched + 1));
    tr->touched[tr->n_touched++] = p;
    return ST_OK;
}

/* Adds sign * count of word w to each of its adjacent pairs. When adding, also
 * records w in the positions of the pairs that hold symbol index_sym (every
 * pair when index_sym is UINT32_MAX) and lists those pairs as touched. */
static status_t word_count_pairs(trainer *tr, uint32_t w, int sign, uint32_t index_sym)
{
    const uint32_t *s = tr->sym + tr->word_off[w];
    for (uint32_t i = 0; i + 1 < tr->word_len[w]; i++) {
        uint32_t p = 0;
        TRY(pair_get(tr, s[i], s[i + 1], &p));
        tr->pairs[p].count += sign * tr->word_count[w];
        if (sign > 0 && (index_sym == UINT32_MAX || s[i] == index_sym || s[i + 1] == index_sym)) {
            TRY(pair_add_word(&tr->pairs[p], w));
            TRY(pair_touch(tr, p));
        }
    }
    return ST_OK;
}

/* ---- heap: largest count first, then smaller (a, b) */

static int heap_before(const trainer *tr, heap_entry x, heap_entry y)
{
    if (x.count != y.count) return x.count > y.count;
    const pair_info *p = &tr->pairs[x.pair], *q = &tr->pairs[y.pair];
    return p->a != q->a ? p->a < q->a : p->b < q->b;
}

static status_t heap_push(trainer *tr, uint32_t pair)
{
    TRY(tokenizer_array_reserve((void **)&tr->heap, &tr->cap_heap, tr->n_heap + 1, sizeof *tr->heap));
    heap_entry e = {tr->pairs[pair].count, pair};
    size_t i = tr->n_heap++;
    while (i > 0 && heap_before(tr, e, tr->heap[(i - 1) / 2])) {
        tr->heap[i] = tr->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    tr->heap[i] = e;
    return ST_OK;
}

static heap_entry heap_pop(trainer *tr)
{
    heap_entry top = tr->heap[0], last = tr->heap[--tr->n_heap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= tr->n_heap) break;
        if (c + 1 < tr->n_heap && heap_before(tr, tr->heap[c + 1], tr->heap[c])) c++;
        if (!heap_before(tr, tr->heap[c], last)) break;
        tr->heap[i] = tr->heap[c];
        i = c;
    }
    if (tr->n_heap) tr->heap[i] = last;
    return top;
}

/* ---- symbols and words */

static status_t symbol_id(trainer *tr, const char *s, size_t len, uint32_t *id)
{
    uint64_t h = strmap_hash(s, len);
    int64_t i = strmap_find(&tr->symbols, s, len, h);
    if (i >= 0) {
        *id = (uint32_t)i;
        return ST_OK;
    }
    return strmap_add(&tr->symbols, s, len, h, tr->symbols.n, id);
}

/* Counts of distinct words, filled by the pre-tokenizer callback. */
typedef struct word_counter {
    strmap words;
    int64_t *counts;
    size_t cap;
} word_counter;

static status_t count_word(void *ctx, const char *word, size_t len)
{
    word_counter *c = ctx;
    uint64_t h = strmap_hash(word, len);
    int64_t i = strmap_find(&c->words, word, len, h);
    if (i >= 0) {
        c->counts[i]++;
        return ST_OK;
    }
    uint32_t e;
    TRY(strmap_add(&c->words, word, len, h, 0, &e));
    TRY(tokenizer_array_reserve((void **)&c->counts, &c->cap, (size_t)e + 1, sizeof *c->counts));
    c->counts[e] = 1;
    return ST_OK;
}

/* Counts the words of every line of path, streaming (the corpus may be large). */
static status_t count_file_words(tokenizer *norm, const char *path, word_counter *c)
{
    input_file *in;
    TRY(input_open(&in, path)); /* plain, zstd or gzip */
    FILE *f = input_stream(in);
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t n;
    status_t st = ST_OK;
    while (st == ST_OK && (n = getline(&line, &line_cap, f)) >= 0) {
        if (n > 0 && line[n - 1] == '\n') n--;
        st = norm ? wordpiece_pretokenize(norm, line, (size_t)n, count_word, c)
                  : bpe_pretokenize(line, (size_t)n, count_word, c);
    }
    if (st == ST_OK) st = input_check(in);
    free(line);
    input_close(in);
    return st;
}

/* Symbol string of byte b in the byte-level alphabet. */
static int byte_symbol(unsigned b, char out[4])
{
    uint32_t cp = bpe_byte_to_unicode(b);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 63));
    return 2;
}

/* Appends word (raw text) as symbols: bytes (BPE) or characters with "##". */
static status_t trainer_add_word(trainer *tr, const char *word, size_t len, int64_t count)
{
    TRY(ids_reserve(&tr->sym, &tr->cap_sym, tr->n_sym + len));
    uint32_t w = tr->n_words++, n = 0;
    tr->word_off[w] = tr->n_sym;
    for (size_t i = 0; i < len;) {
        char buf[8];
        size_t k;
        if (!tr->wordpiece) {
            k = (size_t)byte_symbol((unsigned char)word[i], buf);
            i++;
        } else {
            size_t c = 1;
            while (i + c < len && ((unsigned char)word[i + c] & 0xC0) == 0x80) c++;
            k = 0;
            if (i > 0) buf[k++] = '#', buf[k++] = '#';
            memcpy(buf + k, word + i, c);
            k += c;
            i += c;
        }
        TRY(symbol_id(tr, buf, k, &tr->sym[tr->n_sym + n]));
        n++;
    }
    tr->word_len[w] = n;
    tr->word_count[w] = count;
    tr->n_sym += n;
    return ST_OK;
}

/* ---- merging */

/* Merges every (a, b) in word w into c (left to right). Returns whether any. */
static int word_merge(trainer *tr, uint32_t w, uint32_t a, uint32_t b, uint32_t c)
{
    uint32_t *s = tr->sym + tr->word_off[w], n = tr->word_len[w], k = 0;
    for (uint32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            s[k++] = c;
            i += 2;
        } else {
            s[k++] = s[i++];
        }
    }
    tr->word_len[w] = k;
    return k != n;
}

/* The string of the merge of a and b ("##" of b dropped for WordPiece). */
static status_t merged_symbol(trainer *tr, uint32_t a, uint32_t b, uint32_t *id)
{
    const char *sa = strmap_key(&tr->symbols, a), *sb = strmap_key(&tr->symbols, b);
    size_t la = tr->symbols.key_len[a], lb = tr->symbols.key_len[b];
    if (tr->wordpiece && lb > 2 && sb[0] == '#' && sb[1] == '#') sb += 2, lb -= 2;
    char *buf = malloc(la + lb);
    FAIL_IF(!buf, ST_NOMEM, "out of memory merging symbols");
    memcpy(buf, sa, la);
    memcpy(buf + la, sb, lb);
    status_t st = symbol_id(tr, buf, la + lb, id);
    free(buf);
    return st;
}

static status_t trainer_merge_pair(trainer *tr, uint32_t p)
{
    uint32_t a = tr->pairs[p].a, b = tr->pairs[p].b, c;
    TRY(merged_symbol(tr, a, b, &c));
    uint32_t stamp = tr->n_merges + 1;
    TRY(tokenizer_array_reserve((void **)&tr->merges, &tr->cap_merges, stamp, sizeof *tr->merges));
    tr->merges[stamp - 1][0] = a;
    tr->merges[stamp - 1][1] = b;
    tr->merges[stamp - 1][2] = c;
    tr->n_touched = 0;
    /* The positions list may grow while we walk it (new pairs only), so walk by index. */
    for (uint32_t k = 0; k < tr->pairs[p].n_words; k++) {
        uint32_t w = tr->pairs[p].words[k];
        if (tr->word_stamp[w] == stamp) continue;
        tr->word_stamp[w] = stamp;
        TRY(word_count_pairs(tr, w, -1, 0));
        word_merge(tr, w, a, b, c);
        TRY(word_count_pairs(tr, w, +1, c));
    }
    /* Pairs holding c gained counts: (re)enter them in the heap. Other pairs
     * only lost counts; their stale heap entries are fixed when popped. */
    for (size_t i = 0; i < tr->n_touched; i++)
        if (tr->pairs[tr->touched[i]].count > 0) TRY(heap_push(tr, tr->touched[i]));
    tr->n_merges = stamp;
    return ST_OK;
}

/* The most frequent pair, skipping stale heap entries; *found = 0 when none. */
static status_t trainer_next_pair(trainer *tr, uint32_t *p, int *found)
{
    *found = 0;
    while (tr->n_heap) {
        heap_entry e = heap_pop(tr);
        int64_t now = tr->pairs[e.pair].count;
        if (now == e.count) {
            *p = e.pair;
            *found = 1;
            return ST_OK;
        }
        if (now > 0 && now < e.count) TRY(heap_push(tr, e.pair));
    }
    return ST_OK;
}

static void trainer_free(trainer *tr)
{
    strmap_free(&tr->symbols);
    free(tr->sym);
    free(tr->word_off);
    free(tr->word_len);
    free(tr->word_count);
    free(tr->word_stamp);
    for (uint32_t p = 0; p < tr->n_pairs; p++) free(tr->pairs[p].words);
    free(tr->pairs);
    free(tr->pair_keys);
    free(tr->pair_slots);
    free(tr->heap);
    free(tr->touched);
    free(tr->merges);
}

/* Symbols, words and pair counts from the counted words. */
static status_t trainer_init(trainer *tr, const word_counter *c)
{
    uint32_t n = c->words.n;
    TRY(strmap_init(&tr->symbols, 1024));
    tr->word_off = malloc(((size_t)n + 1) * sizeof *tr->word_off);
    tr->word_len = malloc(((size_t)n + 1) * sizeof *tr->word_len);
    tr->word_count = malloc(((size_t)n + 1) * sizeof *tr->word_count);
    tr->word_stamp = calloc((size_t)n + 1, sizeof *tr->word_stamp);
    FAIL_IF(!tr->word_off || !tr->word_len || !tr->word_count || !tr->word_stamp, ST_NOMEM,
            "out of memory for %u distinct words", n);
    if (!tr->wordpiece) /* the 256 byte symbols first, in GPT-2's id order */
        for (int pass = 0; pass < 2; pass++)
            for (unsigned b = 0; b < 256; b++) {
                char buf[4];
                uint32_t id;
                if ((bpe_byte_to_unicode(b) < 256) == (pass == 0)) TRY(symbol_id(tr, buf, (size_t)byte_symbol(b, buf), &id));
            }
    for (uint32_t w = 0; w < n; w++)
        TRY(trainer_add_word(tr, strmap_key(&c->words, w), c->words.key_len[w], c->counts[w]));
    TRY(pair_index_grow(tr));
    for (uint32_t w = 0; w < n; w++) TRY(word_count_pairs(tr, w, +1, UINT32_MAX));
    for (uint32_t p = 0; p < tr->n_pairs; p++) TRY(heap_push(tr, p));
    return ST_OK;
}

/* ---- output files */

typedef struct text_buf {
    char *data;
    size_t len, cap;
} text_buf;

static status_t text_append(text_buf *b, const char *s, size_t n)
{
    TRY(bytes_reserve(&b->data, &b->cap, b->len + n + 1));
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return ST_OK;
}

static status_t text_json_string(text_buf *b, const char *s, size_t n)
{
    TRY(text_append(b, "\"", 1));
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') TRY(text_append(b, "\\", 1));
        TRY(text_append(b, s + i, 1));
    }
    return text_append(b, "\"", 1);
}

static status_t write_out(const char *dir, const char *name, const text_buf *b)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return fileio_write_atomic(path, b->data, b->len);
}

static status_t write_bpe_files(const trainer *tr, const char *dir)
{
    text_buf enc = {0}, merges = {0};
    char num[32];
    status_t st = text_append(&enc, "{", 1);
    for (uint32_t i = 0; st == ST_OK && i < tr->symbols.n; i++) {
        st = text_json_string(&enc, strmap_key(&tr->symbols, i), tr->symbols.key_len[i]);
        int k = snprintf(num, sizeof num, ": %u, ", i);
        if (st == ST_OK) st = text_append(&enc, num, (size_t)k);
    }
    int k = snprintf(num, sizeof num, ": %u}", tr->symbols.n);
    if (st == ST_OK) st = text_json_string(&enc, tokenizer_special_names[TOKEN_EOT], strlen(tokenizer_special_names[TOKEN_EOT]));
    if (st == ST_OK) st = text_append(&enc, num, (size_t)k);
    if (st == ST_OK) st = text_append(&merges, "#version: 0.2\n", 14);
    for (uint32_t m = 0; st == ST_OK && m < tr->n_merges; m++) {
        uint32_t a = tr->merges[m][0], b = tr->merges[m][1];
        st = text_append(&merges, strmap_key(&tr->symbols, a), tr->symbols.key_len[a]);
        if (st == ST_OK) st = text_append(&merges, " ", 1);
        if (st == ST_OK) st = text_append(&merges, strmap_key(&tr->symbols, b), tr->symbols.key_len[b]);
        if (st == ST_OK) st = text_append(&merges, "\n", 1);
    }
    if (st == ST_OK) st = write_out(dir, "encoder.json", &enc);
    if (st == ST_OK) st = write_out(dir, "vocab.bpe", &merges);
    free(enc.data);
    free(merges.data);
    return st;
}

static status_t write_wordpiece_file(const trainer *tr, const char *dir)
{
    text_buf v = {0};
    status_t st = ST_OK;
    for (int s = 0; st == ST_OK && s < TOKEN_EOT; s++) {
        st = text_append(&v, tokenizer_special_names[s], strlen(tokenizer_special_names[s]));
        if (st == ST_OK) st = text_append(&v, "\n", 1);
    }
    for (uint32_t i = 0; st == ST_OK && i < tr->symbols.n; i++) {
        st = text_append(&v, strmap_key(&tr->symbols, i), tr->symbols.key_len[i]);
        if (st == ST_OK) st = text_append(&v, "\n", 1);
    }
    if (st == ST_OK) st = write_out(dir, "vocab.txt", &v);
    free(v.data);
    return st;
}

/* ---- entry point */

static status_t count_corpus_words(tokenizer_kind kind, const char *const *files, int n_files, word_counter *c)
{
    TRY(strmap_init(&c->words, 1 << 16));
    tokenizer *norm = NULL;
    if (kind == TOKENIZER_WORDPIECE) { /* BERT's normalizer settings of bert-base-uncased */
        norm = calloc(1, sizeof *norm);
        FAIL_IF(!norm, ST_NOMEM, "out of memory");
        norm->lowercase = norm->strip_accents = 1;
    }
    status_t st = ST_OK;
    for (int f = 0; st == ST_OK && f < n_files; f++) st = count_file_words(norm, files[f], c);
    tokenizer_free(norm);
    return st;
}

static status_t train_merges(trainer *tr, uint32_t n_symbols)
{
    while (tr->symbols.n < n_symbols) {
        uint32_t p;
        int found;
        TRY(trainer_next_pair(tr, &p, &found));
        if (!found) break;
        TRY(trainer_merge_pair(tr, p));
    }
    return ST_OK;
}

status_t tokenizer_train(tokenizer_kind kind, const char *const *files, int n_files, uint32_t vocab_size,
                         const char *out_dir)
{
    const int wordpiece = kind == TOKENIZER_WORDPIECE;
    const uint32_t reserved = wordpiece ? TOKEN_EOT : 1; /* specials: [PAD]..[MASK], or <|endoftext|> */
    FAIL_IF(!wordpiece && vocab_size < 257, ST_USAGE,
            "train: a byte-level BPE vocabulary needs at least 257 tokens (256 bytes + <|endoftext|>), asked for %u",
            vocab_size);
    FAIL_IF(n_files < 1, ST_USAGE, "train: no input files");
    word_counter c = {0};
    trainer tr = {.wordpiece = wordpiece};
    status_t st = count_corpus_words(kind, files, n_files, &c);
    if (st == ST_OK) st = trainer_init(&tr, &c);
    if (st == ST_OK && tr.symbols.n + reserved > vocab_size)
        st = st_fail(ST_USAGE, "train: the corpus has %u distinct WordPiece symbols (characters and ##characters); "
                     "ask for a vocabulary of at least %u tokens (asked for %u)",
                     tr.symbols.n, tr.symbols.n + reserved, vocab_size);
    if (st == ST_OK) st = train_merges(&tr, vocab_size - reserved);
    if (st == ST_OK) st = fileio_make_dirs(out_dir, 0755);
    if (st == ST_OK) st = wordpiece ? write_wordpiece_file(&tr, out_dir) : write_bpe_files(&tr, out_dir);
    if (st == ST_OK && tr.symbols.n + reserved < vocab_size)
        log_warn("the corpus ran out of pairs to merge: the vocabulary has %u tokens, not the %u asked for",
                 tr.symbols.n + reserved, vocab_size);
    if (st == ST_OK)
        log_info("trained a %s vocabulary of %u tokens (%u merges) from %u distinct words into %s",
                 wordpiece ? "WordPiece" : "BPE", tr.symbols.n + reserved, tr.n_merges, c.words.n, out_dir);
    trainer_free(&tr);
    strmap_free(&c.words);
    free(c.counts);
    return st;
}

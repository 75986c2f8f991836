/* Tests of data/tokenizer: exact agreement with Hugging Face's tokenizers on
 * every reference line, round trips, special tokens, bad vocabularies, and
 * training. The vocabularies are read from ../shared/vocab (or $MPILM_SHARED). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <unistd.h>

#include "../common/ref_jsonl.h"
#include "base/status.h"
#include "data/tokenizer.h"
#include "data/tokenizer_internal.h"
#include "data/unicode_props.h"

/* The path of rel under the shared test data (MPILM_SHARED, default
 * ../shared); the test is skipped, saying why, when that data is absent. */
static const char *shared(const char *rel, char *buf, size_t size)
{
    ref_shared_path(rel, buf, size);
    if (access(buf, R_OK) != 0)
        cr_skip_test("%s is absent: the shared vocabularies and corpora are needed (set MPILM_SHARED)", buf);
    return buf;
}

static tokenizer *load_shared(const char *rel, tokenizer_kind kind)
{
    char dir[4096];
    shared(rel, dir, sizeof dir);
    tokenizer *t = NULL;
    status_t st = tokenizer_load(dir, kind, &t);
    cr_assert_eq(st, ST_OK, "loading %s: %s", dir, st_message());
    return t;
}

static long load_reference(const char *name, ref_record **recs)
{
    char path[4096];
    shared(name, path, sizeof path);
    long n = ref_read_jsonl(path, recs);
    cr_assert_eq(n, 2000, "%s: expected 2000 records, read %ld", path, n);
    return n;
}

static void print_ids(const char *what, const uint32_t *ids, size_t n)
{
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %u", ids[i]);
    fprintf(stderr, "\n");
}

/* Encodes every reference text and counts the lines that differ. */
static void check_reference(const char *vocab_rel, tokenizer_kind kind, const char *ref_rel)
{
    tokenizer *t = load_shared(vocab_rel, kind);
    ref_record *recs;
    long n = load_reference(ref_rel, &recs);
    uint32_t *ids = NULL;
    size_t cap = 0;
    long bad = 0;
    for (long i = 0; i < n; i++) {
        size_t got = 0;
        cr_assert_eq(tokenizer_encode(t, recs[i].text, recs[i].text_len, &ids, &got, &cap), ST_OK);
        if (got == recs[i].n_ids && (got == 0 || memcmp(ids, recs[i].ids, got * sizeof *ids) == 0)) continue;
        if (bad++ < 10) {
            fprintf(stderr, "%s line %ld differs: %s\n", ref_rel, i + 1, recs[i].text);
            print_ids("expected", recs[i].ids, recs[i].n_ids);
            print_ids("got     ", ids, got);
        }
    }
    cr_expect_eq(bad, 0, "%ld of %ld reference lines encode differently", bad, n);
    free(ids);
    ref_free(recs, n);
    tokenizer_free(t);
}

Test(tokenizer, bpe_encodes_every_reference_line_exactly)
{
    check_reference("vocab/gpt2", TOKENIZER_BPE, "vocab/reference/gpt2.jsonl");
}

Test(tokenizer, wordpiece_encodes_every_reference_line_exactly)
{
    check_reference("vocab/bert-base-uncased", TOKENIZER_WORDPIECE, "vocab/reference/bert-base-uncased.jsonl");
}

Test(tokenizer, bpe_decode_reproduces_every_reference_text_byte_for_byte)
{
    tokenizer *t = load_shared("vocab/gpt2", TOKENIZER_BPE);
    ref_record *recs;
    long n = load_reference("vocab/reference/gpt2.jsonl", &recs);
    uint32_t *ids = NULL;
    char *text = NULL;
    size_t cap = 0, text_cap = 0;
    long bad = 0;
    for (long i = 0; i < n; i++) {
        size_t got = 0, text_len = 0;
        cr_assert_eq(tokenizer_encode(t, recs[i].text, recs[i].text_len, &ids, &got, &cap), ST_OK);
        cr_assert_eq(tokenizer_decode(t, ids, got, &text, &text_len, &text_cap), ST_OK);
        bad += text_len != recs[i].text_len || (text_len && memcmp(text, recs[i].text, text_len) != 0);
    }
    cr_expect_eq(bad, 0, "%ld reference texts do not round-trip", bad);
    free(ids);
    free(text);
    ref_free(recs, n);
    tokenizer_free(t);
}

/* Encodes text (a C string) and returns the ids in a static array. */
static size_t encode_str(tokenizer *t, const char *text, uint32_t **ids)
{
    size_t n = 0, cap = 0;
    *ids = NULL;
    cr_assert_eq(tokenizer_encode(t, text, strlen(text), ids, &n, &cap), ST_OK, "%s", st_message());
    return n;
}

static void expect_decode(tokenizer *t, const char *text, const char *expected)
{
    uint32_t *ids;
    size_t n = encode_str(t, text, &ids);
    char *out = NULL;
    size_t len = 0, cap = 0;
    cr_assert_eq(tokenizer_decode(t, ids, n, &out, &len, &cap), ST_OK);
    cr_expect_str_eq(out, expected, "decode(encode(\"%s\"))", text);
    free(out);
    free(ids);
}

Test(tokenizer, wordpiece_decode_joins_pieces_and_cleans_up_spaces)
{
    tokenizer *t = load_shared("vocab/bert-base-uncased", TOKENIZER_WORDPIECE);
    expect_decode(t, "Hello, World!", "hello, world!");
    expect_decode(t, "Tokenization isn't unaffordable.", "tokenization isn't unaffordable.");
    expect_decode(t, "It's a  (test) ?", "it's a ( test )?");
    expect_decode(t, "", "");
    tokenizer_free(t);
}

Test(tokenizer, special_tokens_in_text_become_their_ids)
{
    tokenizer *bpe = load_shared("vocab/gpt2", TOKENIZER_BPE);
    cr_assert_eq(tokenizer_special(bpe, TOKEN_EOT), 50256);
    cr_assert_eq(tokenizer_special(bpe, TOKEN_PAD), -1);
    cr_assert_eq(tokenizer_vocab_size(bpe), 50257);
    uint32_t *ids;
    size_t n = encode_str(bpe, "Hi<|endoftext|> there<|endoftext|>", &ids);
    uint32_t want[] = {17250, 50256, 612, 50256};
    cr_assert_eq(n, 4);
    cr_expect_arr_eq(ids, want, sizeof want);
    free(ids);
    cr_expect_str_eq(tokenizer_token(bpe, 220), "\xc4\xa0"); /* "Ġ" */
    cr_expect_null(tokenizer_token(bpe, 50257));
    tokenizer_free(bpe);

    tokenizer *wp = load_shared("vocab/bert-base-uncased", TOKENIZER_WORDPIECE);
    cr_assert_eq(tokenizer_special(wp, TOKEN_PAD), 0);
    cr_assert_eq(tokenizer_special(wp, TOKEN_UNK), 100);
    cr_assert_eq(tokenizer_special(wp, TOKEN_CLS), 101);
    cr_assert_eq(tokenizer_special(wp, TOKEN_SEP), 102);
    cr_assert_eq(tokenizer_special(wp, TOKEN_MASK), 103);
    cr_assert_eq(tokenizer_special(wp, TOKEN_EOT), -1);
    n = encode_str(wp, "[CLS] hello [MASK][SEP]", &ids);
    uint32_t want_wp[] = {101, 7592, 103, 102};
    cr_assert_eq(n, 4);
    cr_expect_arr_eq(ids, want_wp, sizeof want_wp);
    free(ids);
    tokenizer_free(wp);
}

/* A fresh temporary directory for each test that declares these fixtures. */
static char tmp_dir[64];

static void make_tmp_dir(void)
{
    strcpy(tmp_dir, "/tmp/mpilm-tok-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_dir));
}

static void remove_tmp_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_dir);
    cr_assert_eq(system(cmd), 0);
}

Test(tokenizer, detect_and_fingerprint_and_save, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    char dir[4096];
    tokenizer_kind kind;
    cr_assert_eq(tokenizer_detect(shared("vocab/gpt2", dir, sizeof dir), &kind), ST_OK);
    cr_expect_eq(kind, TOKENIZER_BPE);
    cr_assert_eq(tokenizer_detect(shared("vocab/bert-base-uncased", dir, sizeof dir), &kind), ST_OK);
    cr_expect_eq(kind, TOKENIZER_WORDPIECE);
    cr_expect_neq(tokenizer_detect("/nonexistent-dir", &kind), ST_OK);
    cr_expect(strstr(st_message(), "no vocabulary found"));

    tokenizer *a = load_shared("vocab/gpt2", TOKENIZER_BPE);
    cr_assert_eq(tokenizer_save(a, tmp_dir), ST_OK);
    tokenizer *b = NULL;
    cr_assert_eq(tokenizer_load(tmp_dir, TOKENIZER_BPE, &b), ST_OK);
    cr_expect_eq(tokenizer_fingerprint(a), tokenizer_fingerprint(b));
    tokenizer *c = load_shared("vocab/bert-base-uncased", TOKENIZER_WORDPIECE);
    cr_expect_neq(tokenizer_fingerprint(a), tokenizer_fingerprint(c));
    tokenizer_free(a);
    tokenizer_free(b);
    tokenizer_free(c);
}

/* ---- bad vocabularies: each message names the file and the position */

static void write_file(const char *name, const char *content)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs(content, f);
    fclose(f);
}

/* Loading fails with a message holding every one of the given fragments. */
static void expect_load_error(tokenizer_kind kind, const char *frag1, const char *frag2)
{
    tokenizer *t = NULL;
    status_t st = tokenizer_load(tmp_dir, kind, &t);
    cr_assert_neq(st, ST_OK, "loading should fail (%s)", frag1);
    cr_assert_null(t);
    cr_expect(strstr(st_message(), frag1), "message \"%s\" lacks \"%s\"", st_message(), frag1);
    if (frag2) cr_expect(strstr(st_message(), frag2), "message \"%s\" lacks \"%s\"", st_message(), frag2);
}

/* Writes an encoder.json of the 256-byte alphabet + "ab", with extra entries appended. */
static void write_tiny_encoder(const char *extra)
{
    size_t cap = 8192, n = 0;
    char *s = malloc(cap);
    n += (size_t)snprintf(s + n, cap - n, "{");
    for (unsigned b = 0; b < 256; b++) n += (size_t)snprintf(s + n, cap - n, "\"\\u%04x\": %u, ", bpe_byte_to_unicode(b), b);
    snprintf(s + n, cap - n, "\"ab\": 256%s}", extra);
    write_file("encoder.json", s);
    free(s);
}

Test(tokenizer_bad_input, missing_files_are_named, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    expect_load_error(TOKENIZER_BPE, "encoder.json: missing", NULL);
    expect_load_error(TOKENIZER_WORDPIECE, "vocab.txt: missing", NULL);
    write_tiny_encoder("");
    expect_load_error(TOKENIZER_BPE, "vocab.bpe: missing", NULL);
}

Test(tokenizer_bad_input, malformed_json_gives_the_byte_offset, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    write_file("encoder.json", "{\"a\": 0, \"b\" 1}");
    write_file("vocab.bpe", "#version: 0.2\n");
    expect_load_error(TOKENIZER_BPE, "encoder.json: malformed JSON at byte offset 13", NULL);
    write_file("encoder.json", "{}");
    expect_load_error(TOKENIZER_BPE, "empty vocabulary", NULL);
    write_file("encoder.json", "{\"a\": 0, \"b\": 5}");
    expect_load_error(TOKENIZER_BPE, "entry 1 (\"b\")", "ids must be 0..N-1");
}

Test(tokenizer_bad_input, merge_naming_an_unknown_token_gives_the_line, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    write_tiny_encoder("");
    write_file("vocab.bpe", "#version: 0.2\na b\nab zz\n");
    expect_load_error(TOKENIZER_BPE, "vocab.bpe: line 3", "unknown token \"zz\"");
    write_file("vocab.bpe", "#version: 0.2\na  b\n");
    expect_load_error(TOKENIZER_BPE, "vocab.bpe: line 2: malformed merge", NULL);
    write_file("vocab.bpe", "#version: 0.2\na b\n");
    tokenizer *t = NULL;
    cr_assert_eq(tokenizer_load(tmp_dir, TOKENIZER_BPE, &t), ST_OK, "%s", st_message());
    uint32_t *ids;
    size_t n = encode_str(t, "abab", &ids);
    cr_expect_eq(n, 2);
    cr_expect_eq(ids[0], 256);
    free(ids);
    tokenizer_free(t);
}

Test(tokenizer_bad_input, duplicate_tokens_are_refused, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    write_tiny_encoder(", \"ab\": 257");
    write_file("vocab.bpe", "#version: 0.2\n");
    expect_load_error(TOKENIZER_BPE, "encoder.json: duplicate token \"ab\"", "ids 256 and 257");
    write_file("vocab.txt", "[PAD]\n[UNK]\nhello\nworld\nhello\n");
    expect_load_error(TOKENIZER_WORDPIECE, "vocab.txt: line 5: duplicate token \"hello\" (first at line 3)", NULL);
}

Test(tokenizer_bad_input, empty_or_unkless_wordpiece_vocab_is_refused, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    write_file("vocab.txt", "");
    expect_load_error(TOKENIZER_WORDPIECE, "vocab.txt: empty vocabulary", NULL);
    write_file("vocab.txt", "[PAD]\n\nhello\n");
    expect_load_error(TOKENIZER_WORDPIECE, "vocab.txt: line 2: empty token", NULL);
    write_file("vocab.txt", "[PAD]\nhello\n");
    expect_load_error(TOKENIZER_WORDPIECE, "no [UNK] token", NULL);
}

Test(tokenizer_bad_input, decode_refuses_ids_outside_the_vocabulary)
{
    tokenizer *t = load_shared("vocab/bert-base-uncased", TOKENIZER_WORDPIECE);
    uint32_t ids[] = {7592, 30522};
    char *out = NULL;
    size_t n = 0, cap = 0;
    cr_expect_neq(tokenizer_decode(t, ids, 2, &out, &n, &cap), ST_OK);
    cr_expect(strstr(st_message(), "token id 30522 at position 1"), "%s", st_message());
    free(out);
    tokenizer_free(t);
}

/* ---- training */

/* Trains on tiny.txt into tmp_dir/sub and loads the result. */
static tokenizer *train_tiny(tokenizer_kind kind, uint32_t vocab_size, const char *sub)
{
    char corpus[4096], out[256];
    const char *files[1] = {shared("corpora/tiny.txt", corpus, sizeof corpus)};
    snprintf(out, sizeof out, "%s/%s", tmp_dir, sub);
    cr_assert_eq(tokenizer_train(kind, files, 1, vocab_size, out), ST_OK, "%s", st_message());
    tokenizer *t = NULL;
    tokenizer_kind detected;
    cr_assert_eq(tokenizer_detect(out, &detected), ST_OK);
    cr_assert_eq(detected, kind);
    cr_assert_eq(tokenizer_load(out, kind, &t), ST_OK, "%s", st_message());
    return t;
}

static void expect_round_trip(tokenizer *t, const char *text, const char *expected)
{
    expect_decode(t, text, expected ? expected : text);
}

Test(tokenizer_train, bpe_vocab_has_the_size_loads_round_trips_and_is_deterministic, .init = make_tmp_dir,
     .fini = remove_tmp_dir)
{
    tokenizer *a = train_tiny(TOKENIZER_BPE, 600, "a");
    tokenizer *b = train_tiny(TOKENIZER_BPE, 600, "b");
    cr_expect_eq(tokenizer_vocab_size(a), 600);
    cr_expect_eq(tokenizer_special(a, TOKEN_EOT), 599);
    cr_expect_eq(tokenizer_fingerprint(a), tokenizer_fingerprint(b), "training is not deterministic");
    /* every line of the corpus round-trips, and merges shorten it */
    char path[4096];
    char *data;
    size_t len, n_ids = 0, cap = 0;
    uint32_t *ids = NULL;
    FILE *f = fopen(shared("corpora/tiny.txt", path, sizeof path), "rb");
    cr_assert_not_null(f);
    data = malloc(1 << 20);
    len = fread(data, 1, 1 << 20, f);
    fclose(f);
    cr_assert_eq(tokenizer_encode(a, data, len, &ids, &n_ids, &cap), ST_OK);
    cr_expect_lt(n_ids, len / 2, "%zu tokens for %zu bytes: merges hardly apply", n_ids, len);
    char *out = NULL;
    size_t out_len = 0, out_cap = 0;
    cr_assert_eq(tokenizer_decode(a, ids, n_ids, &out, &out_len, &out_cap), ST_OK);
    cr_expect(out_len == len && memcmp(out, data, len) == 0, "the corpus does not round-trip");
    expect_round_trip(a, "Zürich: naïve façade, 42 €<|endoftext|>", NULL);
    free(out);
    free(ids);
    free(data);
    tokenizer_free(a);
    tokenizer_free(b);
}

Test(tokenizer_train, wordpiece_vocab_has_the_size_specials_first_and_round_trips, .init = make_tmp_dir,
     .fini = remove_tmp_dir)
{
    tokenizer *a = train_tiny(TOKENIZER_WORDPIECE, 500, "a");
    tokenizer *b = train_tiny(TOKENIZER_WORDPIECE, 500, "b");
    cr_expect_eq(tokenizer_vocab_size(a), 500);
    for (int s = TOKEN_PAD; s <= TOKEN_MASK; s++) cr_expect_eq(tokenizer_special(a, (special_token)s), s);
    cr_expect_eq(tokenizer_fingerprint(a), tokenizer_fingerprint(b), "training is not deterministic");
    expect_round_trip(a, "The parser was copied from the original version.", "the parser was copied from the original version.");
    expect_round_trip(a, "Python code, and Protocol packets!", "python code, and protocol packets!");
    uint32_t *ids;
    size_t n = encode_str(a, "\xe4\xb8\xad", &ids); /* a character never seen: [UNK] */
    cr_expect_eq(n, 1);
    cr_expect_eq(ids[0], (uint32_t)tokenizer_special(a, TOKEN_UNK));
    free(ids);
    tokenizer_free(a);
    tokenizer_free(b);
}

Test(tokenizer_train, refuses_too_small_vocabularies_and_missing_files, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    char corpus[4096];
    const char *files[1] = {shared("corpora/tiny.txt", corpus, sizeof corpus)};
    cr_expect_eq(tokenizer_train(TOKENIZER_BPE, files, 1, 200, tmp_dir), ST_USAGE);
    cr_expect(strstr(st_message(), "at least 257 tokens"), "%s", st_message());
    cr_expect_eq(tokenizer_train(TOKENIZER_WORDPIECE, files, 1, 50, tmp_dir), ST_USAGE);
    cr_expect(strstr(st_message(), "distinct WordPiece symbols"), "%s", st_message());
    const char *missing[1] = {"/nonexistent/corpus.txt"};
    cr_expect_eq(tokenizer_train(TOKENIZER_BPE, missing, 1, 300, tmp_dir), ST_IO);
    cr_expect(strstr(st_message(), "/nonexistent/corpus.txt"), "%s", st_message());
}

/* ---- the incremental trainer against a naive one (full recount per merge) */

enum { NAIVE_MAX_SYMBOLS = 700 };

typedef struct naive {
    strmap words;   /* distinct pre-tokens */
    long counts[1 << 14];
    char *sym[NAIVE_MAX_SYMBOLS]; /* byte-level strings */
    uint32_t n_sym;
} naive;

static status_t naive_count(void *ctx, const char *piece, size_t len)
{
    naive *nv = ctx;
    uint64_t h = strmap_hash(piece, len);
    int64_t i = strmap_find(&nv->words, piece, len, h);
    if (i >= 0) {
        nv->counts[i]++;
        return ST_OK;
    }
    uint32_t e;
    TRY(strmap_add(&nv->words, piece, len, h, 0, &e));
    cr_assert_lt(e, 1 << 14);
    nv->counts[e] = 1;
    return ST_OK;
}

static uint32_t naive_symbol(naive *nv, const char *s)
{
    for (uint32_t i = 0; i < nv->n_sym; i++)
        if (strcmp(nv->sym[i], s) == 0) return i;
    cr_assert_lt(nv->n_sym, NAIVE_MAX_SYMBOLS);
    nv->sym[nv->n_sym] = strdup(s);
    return nv->n_sym++;
}

Test(tokenizer_train, incremental_bpe_makes_the_same_merges_as_a_full_recount, .init = make_tmp_dir,
     .fini = remove_tmp_dir)
{
    enum { N_MERGES = 120 };
    const char *text = "the quick brown fox jumps over the lazy dog; the dog sleeps, the fox thinks\n"
                       "a aa aaa aaaa aaaaa banana bandana ananas -- 1234 12345 1212 'tis they're\n"
                       "the theory of these thermal themes: there, then, them, theirs!!";
    char corpus[256];
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", tmp_dir);
    FILE *f = fopen(corpus, "wb");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    const char *files[1] = {corpus};
    char out[256];
    snprintf(out, sizeof out, "%s/bpe", tmp_dir);
    cr_assert_eq(tokenizer_train(TOKENIZER_BPE, files, 1, 257 + N_MERGES, out), ST_OK, "%s", st_message());

    static naive nv;
    memset(&nv, 0, sizeof nv);
    cr_assert_eq(strmap_init(&nv.words, 64), ST_OK);
    for (const char *line = text; *line;) {
        size_t n = strcspn(line, "\n");
        cr_assert_eq(bpe_pretokenize(line, n, naive_count, &nv), ST_OK);
        line += n + (line[n] == '\n');
    }
    for (int pass = 0; pass < 2; pass++) /* byte symbols in GPT-2's id order */
        for (unsigned b = 0; b < 256; b++) {
            uint32_t cp = bpe_byte_to_unicode(b);
            if ((cp < 256) != (pass == 0)) continue;
            char s[4] = {0};
            if (cp < 0x80) s[0] = (char)cp;
            else s[0] = (char)(0xC0 | cp >> 6), s[1] = (char)(0x80 | (cp & 63));
            naive_symbol(&nv, s);
        }
    static uint32_t seq[1 << 14][64], len[1 << 14];
    for (uint32_t w = 0; w < nv.words.n; w++) {
        len[w] = nv.words.key_len[w];
        for (uint32_t i = 0; i < len[w]; i++) {
            uint32_t cp = bpe_byte_to_unicode((unsigned char)strmap_key(&nv.words, w)[i]);
            for (uint32_t s = 0; s < 256; s++) {
                uint32_t c0;
                unicode_utf8_decode((const unsigned char *)nv.sym[s], strlen(nv.sym[s]), &c0);
                if (c0 == cp) seq[w][i] = s;
            }
        }
    }
    static long pc[NAIVE_MAX_SYMBOLS][NAIVE_MAX_SYMBOLS];
    char expected[1 << 14] = "#version: 0.2\n";
    for (int m = 0; m < N_MERGES; m++) {
        memset(pc, 0, sizeof pc);
        for (uint32_t w = 0; w < nv.words.n; w++)
            for (uint32_t i = 0; i + 1 < len[w]; i++) pc[seq[w][i]][seq[w][i + 1]] += nv.counts[w];
        long best = 0;
        uint32_t ba = 0, bb = 0;
        for (uint32_t a = 0; a < nv.n_sym; a++)
            for (uint32_t b = 0; b < nv.n_sym; b++)
                if (pc[a][b] > best) best = pc[a][b], ba = a, bb = b;
        if (best == 0) break;
        char merged[256];
        snprintf(merged, sizeof merged, "%s%s", nv.sym[ba], nv.sym[bb]);
        uint32_t c = naive_symbol(&nv, merged);
        snprintf(expected + strlen(expected), sizeof expected - strlen(expected), "%s %s\n", nv.sym[ba], nv.sym[bb]);
        for (uint32_t w = 0; w < nv.words.n; w++) {
            uint32_t k = 0;
            for (uint32_t i = 0; i < len[w];) {
                if (i + 1 < len[w] && seq[w][i] == ba && seq[w][i + 1] == bb) seq[w][k++] = c, i += 2;
                else seq[w][k++] = seq[w][i++];
            }
            len[w] = k;
        }
    }
    char path[300], got[1 << 14] = {0};
    snprintf(path, sizeof path, "%s/vocab.bpe", out);
    f = fopen(path, "rb");
    cr_assert_not_null(f);
    size_t n = fread(got, 1, sizeof got - 1, f);
    fclose(f);
    got[n] = 0;
    cr_expect_str_eq(got, expected);
    for (uint32_t i = 0; i < nv.n_sym; i++) free(nv.sym[i]);
    strmap_free(&nv.words);
}

/* ---- the subtle rules of ../shared/vocab/reference/README.md, one by one */

static void expect_ids(tokenizer *t, const char *text, size_t len, const uint32_t *want, size_t n_want)
{
    uint32_t *ids = NULL;
    size_t n = 0, cap = 0;
    cr_assert_eq(tokenizer_encode(t, text, len, &ids, &n, &cap), ST_OK);
    cr_expect_eq(n, n_want, "\"%s\": %zu ids, expected %zu", text, n, n_want);
    if (n == n_want && n) cr_expect_arr_eq(ids, want, n * sizeof *ids, "\"%s\"", text);
    free(ids);
}

#define EXPECT_IDS(t, text, ...)                                                                                    \
    do {                                                                                                            \
        const uint32_t want_[] = {__VA_ARGS__};                                                                     \
        expect_ids(t, text, sizeof text - 1, want_, sizeof want_ / sizeof *want_);                                 \
    } while (0)

Test(tokenizer_rules, bpe_whitespace_contractions_and_classes)
{
    tokenizer *t = load_shared("vocab/gpt2", TOKENIZER_BPE);
    EXPECT_IDS(t, " \xc2\x85x", 220, 126, 227, 87);  /* U+0085 is \s */
    EXPECT_IDS(t, "I'M", 40, 6, 44);                  /* contractions in lower case only */
    EXPECT_IDS(t, "she'S", 7091, 6, 50);
    EXPECT_IDS(t, "hello  world", 31373, 220, 995);  /* the last space joins the word */
    EXPECT_IDS(t, "a\x00" "b", 64, 188, 65);          /* NUL is an ordinary byte */
    tokenizer_free(t);
}

Test(tokenizer_rules, wordpiece_cleaning_sigma_and_long_words)
{
    tokenizer *t = load_shared("vocab/bert-base-uncased", TOKENIZER_WORDPIECE);
    EXPECT_IDS(t, "a\x0b" "b", 11113);                /* \v is Cc: dropped, the neighbours glue ("ab") */
    EXPECT_IDS(t, "\xce\xa3\xce\x8a\xce\xa3", 1173, 18199, 29733); /* ΣΊΣ → σ ##ι ##σ: no final sigma */
    char word[102];
    memset(word, 'a', 101);
    word[101] = 0;
    uint32_t *ids;
    size_t n = encode_str(t, word, &ids);         /* 101 characters: [UNK] */
    cr_expect(n == 1 && ids[0] == 100);
    free(ids);
    word[100] = 0;
    n = encode_str(t, word, &ids);                /* 100 characters: pieces */
    cr_expect(n > 1);
    free(ids);
    tokenizer_free(t);
}

Test(tokenizer_rules, case_folding_follows_the_vocabulary_and_can_be_set, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    write_file("vocab.txt", "[PAD]\n[UNK]\nHello\nhello\ncafe\ncaf\n##\xc3\xa9\n");
    tokenizer *t = NULL;
    cr_assert_eq(tokenizer_load(tmp_dir, TOKENIZER_WORDPIECE, &t), ST_OK, "%s", st_message());
    EXPECT_IDS(t, "Hello hello caf\xc3\xa9", 2, 3, 5, 6); /* cased vocabulary: no folding */
    tokenizer_set_case(t, 1, 1);
    EXPECT_IDS(t, "Hello hello caf\xc3\xa9", 3, 3, 4);
    tokenizer_set_case(t, 1, 0);
    EXPECT_IDS(t, "HELLO CAF\xc3\x89", 3, 5, 6);
    tokenizer_free(t);
}

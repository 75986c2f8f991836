/* Tests of data/tokenizer: exact agreement with Hugging Face's tokenizers on
 * every reference line, round trips, special tokens, bad vocabularies, and
 * training. The vocabularies are read from ../shared/vocab (or $MPILM_SHARED). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/ref_jsonl.h"
#include "base/status.h"
#include "data/tokenizer.h"

static tokenizer *load_shared(const char *rel, tokenizer_kind kind)
{
    char dir[4096];
    ref_shared_path(rel, dir, sizeof dir);
    tokenizer *t = NULL;
    status_t st = tokenizer_load(dir, kind, &t);
    cr_assert_eq(st, ST_OK, "loading %s: %s", dir, st_message());
    return t;
}

static long load_reference(const char *name, ref_record **recs)
{
    char path[4096];
    ref_shared_path(name, path, sizeof path);
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
        if (got == recs[i].n_ids && memcmp(ids, recs[i].ids, got * sizeof *ids) == 0) continue;
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
        bad += text_len != recs[i].text_len || memcmp(text, recs[i].text, text_len) != 0;
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

Test(tokenizer, detect_and_fingerprint_and_save)
{
    char dir[4096];
    tokenizer_kind kind;
    cr_assert_eq(tokenizer_detect(ref_shared_path("vocab/gpt2", dir, sizeof dir), &kind), ST_OK);
    cr_expect_eq(kind, TOKENIZER_BPE);
    cr_assert_eq(tokenizer_detect(ref_shared_path("vocab/bert-base-uncased", dir, sizeof dir), &kind), ST_OK);
    cr_expect_eq(kind, TOKENIZER_WORDPIECE);
    cr_expect_neq(tokenizer_detect("/nonexistent-dir", &kind), ST_OK);
    cr_expect(strstr(st_message(), "no vocabulary found"));

    tokenizer *a = load_shared("vocab/gpt2", TOKENIZER_BPE);
    char tmp[] = "/tmp/mpilm-tok-XXXXXX";
    cr_assert_not_null(mkdtemp(tmp));
    cr_assert_eq(tokenizer_save(a, tmp), ST_OK);
    tokenizer *b = NULL;
    cr_assert_eq(tokenizer_load(tmp, TOKENIZER_BPE, &b), ST_OK);
    cr_expect_eq(tokenizer_fingerprint(a), tokenizer_fingerprint(b));
    tokenizer *c = load_shared("vocab/bert-base-uncased", TOKENIZER_WORDPIECE);
    cr_expect_neq(tokenizer_fingerprint(a), tokenizer_fingerprint(c));
    tokenizer_free(a);
    tokenizer_free(b);
    tokenizer_free(c);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    cr_assert_eq(system(cmd), 0);
}

/* ---- bad vocabularies: each message names the file and the position */

static char bad_dir[64];

static void write_file(const char *name, const char *content)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", bad_dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs(content, f);
    fclose(f);
}

static void make_bad_dir(void)
{
    strcpy(bad_dir, "/tmp/mpilm-tokbad-XXXXXX");
    cr_assert_not_null(mkdtemp(bad_dir));
}

static void remove_bad_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", bad_dir);
    cr_assert_eq(system(cmd), 0);
}

/* Loading fails with a message holding every one of the given fragments. */
static void expect_load_error(tokenizer_kind kind, const char *frag1, const char *frag2)
{
    tokenizer *t = NULL;
    status_t st = tokenizer_load(bad_dir, kind, &t);
    cr_assert_neq(st, ST_OK, "loading should fail (%s)", frag1);
    cr_assert_null(t);
    cr_expect(strstr(st_message(), frag1), "message \"%s\" lacks \"%s\"", st_message(), frag1);
    if (frag2) cr_expect(strstr(st_message(), frag2), "message \"%s\" lacks \"%s\"", st_message(), frag2);
}

/* A 256-byte alphabet + "ab" as encoder.json text, with extra entries appended. */
static char *tiny_encoder(const char *extra)
{
    size_t cap = 8192, n = 0;
    char *s = malloc(cap);
    n += (size_t)snprintf(s + n, cap - n, "{");
    for (int b = 0; b < 256; b++) {
        unsigned cp = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE ? (unsigned)b : 0;
        if (!cp) {
            unsigned k = 0;
            for (int x = 0; x < b; x++) k += !((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE);
            cp = 256 + k;
        }
        n += (size_t)snprintf(s + n, cap - n, "\"\\u%04x\": %d, ", cp, b);
    }
    snprintf(s + n, cap - n, "\"ab\": 256%s}", extra);
    return s;
}

Test(tokenizer_bad_input, missing_files_are_named, .init = make_bad_dir, .fini = remove_bad_dir)
{
    expect_load_error(TOKENIZER_BPE, "encoder.json: missing", NULL);
    expect_load_error(TOKENIZER_WORDPIECE, "vocab.txt: missing", NULL);
    char *enc = tiny_encoder("");
    write_file("encoder.json", enc);
    free(enc);
    expect_load_error(TOKENIZER_BPE, "vocab.bpe: missing", NULL);
}

Test(tokenizer_bad_input, malformed_json_gives_the_byte_offset, .init = make_bad_dir, .fini = remove_bad_dir)
{
    write_file("encoder.json", "{\"a\": 0, \"b\" 1}");
    write_file("vocab.bpe", "#version: 0.2\n");
    expect_load_error(TOKENIZER_BPE, "encoder.json: malformed JSON at byte offset 13", NULL);
    write_file("encoder.json", "{}");
    expect_load_error(TOKENIZER_BPE, "empty vocabulary", NULL);
    write_file("encoder.json", "{\"a\": 0, \"b\": 5}");
    expect_load_error(TOKENIZER_BPE, "entry 1 (\"b\")", "ids must be 0..N-1");
}

Test(tokenizer_bad_input, merge_naming_an_unknown_token_gives_the_line, .init = make_bad_dir, .fini = remove_bad_dir)
{
    char *enc = tiny_encoder("");
    write_file("encoder.json", enc);
    free(enc);
    write_file("vocab.bpe", "#version: 0.2\na b\nab zz\n");
    expect_load_error(TOKENIZER_BPE, "vocab.bpe: line 3", "unknown token \"zz\"");
    write_file("vocab.bpe", "#version: 0.2\na  b\n");
    expect_load_error(TOKENIZER_BPE, "vocab.bpe: line 2: malformed merge", NULL);
    write_file("vocab.bpe", "#version: 0.2\na b\n");
    tokenizer *t = NULL;
    cr_assert_eq(tokenizer_load(bad_dir, TOKENIZER_BPE, &t), ST_OK, "%s", st_message());
    uint32_t *ids;
    size_t n = encode_str(t, "abab", &ids);
    cr_expect_eq(n, 2);
    cr_expect_eq(ids[0], 256);
    free(ids);
    tokenizer_free(t);
}

Test(tokenizer_bad_input, duplicate_tokens_are_refused, .init = make_bad_dir, .fini = remove_bad_dir)
{
    char *enc = tiny_encoder(", \"ab\": 257");
    write_file("encoder.json", enc);
    free(enc);
    write_file("vocab.bpe", "#version: 0.2\n");
    expect_load_error(TOKENIZER_BPE, "encoder.json: duplicate token \"ab\"", "ids 256 and 257");
    write_file("vocab.txt", "[PAD]\n[UNK]\nhello\nworld\nhello\n");
    expect_load_error(TOKENIZER_WORDPIECE, "vocab.txt: line 5: duplicate token \"hello\" (first at line 3)", NULL);
}

Test(tokenizer_bad_input, empty_or_unkless_wordpiece_vocab_is_refused, .init = make_bad_dir, .fini = remove_bad_dir)
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

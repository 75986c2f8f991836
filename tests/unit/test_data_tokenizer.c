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

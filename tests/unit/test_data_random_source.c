/* data/random_source (data.source = random): docs/usage.md's promises —
 * BERT samples are [CLS] A [SEP] B [SEP] with 15% of the text chosen and
 * 80/10/10 [MASK]/random/kept, random NSP labels; GPT windows carry
 * next-token labels; every sample is a pure function of (seed, global index)
 * and data.random_samples = N cycles through N samples. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "data/mlm_mask.h"
#include "data/random_source.h"

enum { T = 64, V = 30000 };

Test(random_source, bert_samples_have_the_documented_layout)
{
    batch b;
    cr_assert_eq(batch_alloc(&b, 16, T), ST_OK);
    random_spec spec = {.mlm = 1, .nsp = 1, .vocab_size = V, .mask_prob = 0.15, .seed = 5};
    random_batch_fill(&b, &spec, 100);
    for (int s = 0; s < b.B; s++) {
        const int32_t *ids = b.input_ids + s * T, *types = b.token_type_ids + s * T, *labels = b.labels + s * T;
        for (int t = 0; t < T; t++) {
            int special = t == 0 || t == T / 2 || t == T - 1;
            int32_t want = t == 0 ? RANDOM_CLS : RANDOM_SEP;
            if (special) cr_assert_eq(ids[t], want, "sample %d position %d: id %d", s, t, ids[t]);
            else cr_assert(ids[t] == RANDOM_MASK || ids[t] >= RANDOM_FIRST_TEXT, "sample %d position %d: id %d", s, t, ids[t]);
            cr_assert(ids[t] < V);
            cr_assert_eq(types[t], t > T / 2, "sample %d position %d: token type %d", s, t, types[t]);
            cr_assert_eq(b.attention_mask[s * T + t], 1);
            if (special) cr_assert_eq(labels[t], LABEL_IGNORE, "specials are never targets");
            else if (labels[t] != LABEL_IGNORE) cr_assert(labels[t] >= RANDOM_FIRST_TEXT && labels[t] < V);
            else cr_assert_neq(ids[t], RANDOM_MASK, "a [MASK] without a target");
        }
        cr_assert(b.next_sentence_label[s] == 0 || b.next_sentence_label[s] == 1);
    }
    spec.nsp = 0;
    random_batch_fill(&b, &spec, 100);
    for (int s = 0; s < b.B; s++) cr_assert_eq(b.next_sentence_label[s], LABEL_IGNORE, "nsp = 0: no NSP label");
    batch_free(&b);
}

/* 20,000 samples of 61 text positions, seed 9: sigma of the chosen share
 * 0.0003 (bound 0.15 +- 0.002: 6 sigma), of the [MASK] share 0.0009 (0.8 +-
 * 0.005: 5 sigma), of the random and kept shares 0.0007 (0.1 +- 0.004: 6
 * sigma), of the NSP share 0.0035 (0.5 +- 0.02: 5.7 sigma). A random
 * replacement equal to its target (1/V) counts as kept. Measured: chosen
 * 0.15024, [MASK] 0.79889, random 0.10034, kept 0.10077, next 0.49715 (all
 * within 1.2 sigma); [MASK] at 70% or NSP at a third fail by 10 sigma or more. */
Test(random_source, bert_masking_is_15_percent_then_80_10_10_and_nsp_is_half)
{
    enum { B = 500, BATCHES = 40 };
    batch b;
    cr_assert_eq(batch_alloc(&b, B, T), ST_OK);
    random_spec spec = {.mlm = 1, .nsp = 1, .vocab_size = V, .mask_prob = 0.15, .seed = 9};
    double text = 0, chosen = 0, masked = 0, replaced = 0, kept = 0, next = 0, samples = 0;
    for (int k = 0; k < BATCHES; k++) {
        random_batch_fill(&b, &spec, (uint64_t)k * B);
        for (int i = 0; i < B * T; i++) {
            int t = i % T;
            if (t == 0 || t == T / 2 || t == T - 1) continue;
            text++;
            if (b.labels[i] == LABEL_IGNORE) continue;
            chosen++;
            masked += b.input_ids[i] == RANDOM_MASK;
            kept += b.input_ids[i] == b.labels[i];
            replaced += b.input_ids[i] != RANDOM_MASK && b.input_ids[i] != b.labels[i];
        }
        for (int s = 0; s < B; s++) next += b.next_sentence_label[s] == 0;
        samples += B;
    }
    double c = chosen / text, m = masked / chosen, r = replaced / chosen, kk = kept / chosen, n = next / samples;
    fprintf(stderr, "random source: chosen %.5f, [MASK] %.5f, random %.5f, kept %.5f, NSP next %.5f\n", c, m, r, kk, n);
    cr_expect(fabs(c - 0.15) < 0.002, "chosen share %.5f", c);
    cr_expect(fabs(m - 0.80) < 0.005, "[MASK] share %.5f", m);
    cr_expect(fabs(r - 0.10) < 0.004, "random share %.5f", r);
    cr_expect(fabs(kk - 0.10) < 0.004, "kept share %.5f", kk);
    cr_expect(fabs(n - 0.5) < 0.02, "NSP next share %.5f", n);
    batch_free(&b);
}

static int rows_equal(const batch *a, int ra, const batch *b, int rb)
{
    size_t n = T * sizeof(int32_t), oa = (size_t)ra * T, ob = (size_t)rb * T;
    return !memcmp(a->input_ids + oa, b->input_ids + ob, n) && !memcmp(a->labels + oa, b->labels + ob, n) &&
           !memcmp(a->token_type_ids + oa, b->token_type_ids + ob, n) &&
           a->next_sentence_label[ra] == b->next_sentence_label[rb];
}

Test(random_source, samples_are_functions_of_seed_and_global_index)
{
    batch big, one;
    cr_assert_eq(batch_alloc(&big, 8, T), ST_OK);
    cr_assert_eq(batch_alloc(&one, 1, T), ST_OK);
    for (int mlm = 0; mlm <= 1; mlm++) {
        random_spec spec = {.mlm = mlm, .nsp = mlm, .vocab_size = V, .mask_prob = 0.15, .seed = 3};
        random_batch_fill(&big, &spec, 40);
        for (int s = 0; s < 8; s++) {
            random_batch_fill(&one, &spec, 40 + (uint64_t)s);
            cr_assert(rows_equal(&big, s, &one, 0), "mlm %d: sample %d depends on its place in the batch", mlm, 40 + s);
        }
        cr_assert(!rows_equal(&big, 0, &big, 1), "mlm %d: samples 40 and 41 are equal", mlm);
        spec.seed = 4;
        random_batch_fill(&one, &spec, 40);
        cr_assert(!rows_equal(&big, 0, &one, 0), "mlm %d: seeds 3 and 4 give the same sample", mlm);
        spec.seed = 3;
        spec.samples = 5; /* data.random_samples = 5: sample g is sample g % 5 */
        random_batch_fill(&big, &spec, 0);
        random_batch_fill(&one, &spec, 7);
        cr_assert(rows_equal(&big, 2, &one, 0), "mlm %d: random_samples 5 does not repeat sample 2 as 7", mlm);
        cr_assert(rows_equal(&big, 0, &big, 5) && rows_equal(&big, 2, &big, 7), "mlm %d: no cycle of 5", mlm);
    }
    batch_free(&big);
    batch_free(&one);
}

Test(random_source, gpt_windows_label_the_next_token)
{
    batch b;
    cr_assert_eq(batch_alloc(&b, 4, T), ST_OK);
    random_spec spec = {.mlm = 0, .vocab_size = V, .seed = 2};
    random_batch_fill(&b, &spec, 0);
    for (int s = 0; s < 4; s++) {
        for (int t = 0; t + 1 < T; t++) cr_assert_eq(b.labels[s * T + t], b.input_ids[s * T + t + 1]);
        for (int t = 0; t < T; t++) {
            cr_assert(b.input_ids[s * T + t] >= RANDOM_FIRST_TEXT && b.input_ids[s * T + t] < V);
            cr_assert(b.labels[s * T + t] >= RANDOM_FIRST_TEXT && b.labels[s * T + t] < V, "every position has a target");
        }
        cr_assert_eq(b.next_sentence_label[s], LABEL_IGNORE);
    }
    batch_free(&b);
}

static int32_t token_99(const void *ctx, uint32_t bits) { return 99; }

/* data/mlm_mask: each source's way of reading its four words, at the edges
 * of its thresholds (the sample streams rest on them bit for bit). */
Test(random_source, mlm_mask_token_reads_each_sources_words_at_their_thresholds)
{
    mlm_masking u = mlm_masking_make(0.5, MLM_DRAWS_UNIFORM, 3, token_99, NULL);
    mlm_masking n = mlm_masking_make(0.5, MLM_DRAWS_INTEGER, 3, token_99, NULL);
    /* uniform: bits[0] chooses below 0.5 (24 bits), bits[1] acts at 0.8f / 0.9f */
    struct { uint32_t bits[4]; int32_t id, label; } uc[] = {
        {{0x80000000u, 0, 0, 0}, 7, LABEL_IGNORE},          /* not chosen */
        {{0x7FFFFFFFu, 0, 0, 0}, 3, 7},                     /* [MASK] */
        {{0, 13421773u << 8, 0, 0}, 99, 7},                 /* 0.8f: random */
        {{0, (13421773u << 8) - 1, 0, 0}, 3, 7},            /* just below 0.8f: [MASK] */
        {{0, 0xFFFFFFFFu, 0, 0}, 7, 7},                     /* kept */
    }, nc[] = {
        {{0, 0x80000000u, 0, 0}, 7, LABEL_IGNORE},          /* not chosen */
        {{0xFFFFFFFFu, 0x7FFFFFFFu, 0, 0}, 3, 7},           /* bits[0] is not read: [MASK] */
        {{0, 0, 3435973837u, 0}, 99, 7},                    /* rng_below 10 = 8: random */
        {{0, 0, 3435973836u, 0}, 3, 7},                     /* 7: [MASK] */
        {{0, 0, 0xFFFFFFFFu, 0}, 7, 7},                     /* 9: kept */
    };
    for (int i = 0; i < 5; i++) {
        int32_t id = 7, label = LABEL_IGNORE;
        mlm_mask_token(&u, uc[i].bits, &id, &label);
        cr_assert(id == uc[i].id && label == uc[i].label, "uniform case %d: id %d label %d", i, id, label);
        id = 7, label = LABEL_IGNORE;
        mlm_mask_token(&n, nc[i].bits, &id, &label);
        cr_assert(id == nc[i].id && label == nc[i].label, "integer case %d: id %d label %d", i, id, label);
    }
}

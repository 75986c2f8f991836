/* data/random_source — random samples, a pure function of (seed, sample, position). */
#include "base/rng.h"
#include "data/mlm_mask.h"
#include "data/random_source.h"

static void fill_causal(batch *b, int s, const random_spec *spec, rng_key key, uint64_t g)
{
    int T = b->T;
    uint32_t text = (uint32_t)(spec->vocab_size - RANDOM_FIRST_TEXT);
    /* a window of T + 1 tokens: inputs are the first T, labels the last T */
    for (int t = 0; t <= T; t++) {
        uint32_t r[4];
        rng_bits(key, g, (uint32_t)t, 0, r);
        int32_t tok = RANDOM_FIRST_TEXT + (int32_t)rng_below(r[0], text);
        if (t < T) {
            b->input_ids[s * T + t] = tok;
            b->token_type_ids[s * T + t] = 0;
            b->attention_mask[s * T + t] = 1;
        }
        if (t > 0) b->labels[s * T + t - 1] = tok;
    }
}

/* A uniform text token (ctx: the number of text ids). */
static int32_t random_text(const void *ctx, uint32_t bits)
{
    return RANDOM_FIRST_TEXT + (int32_t)rng_below(bits, *(const uint32_t *)ctx);
}

/* [CLS] A [SEP] B [SEP] with the boundary at T/2; MLM as BERT (data/mlm_mask)
 * on the text positions. */
static void fill_mlm(batch *b, int s, const random_spec *spec, rng_key key, uint64_t g)
{
    int T = b->T;
    uint32_t text = (uint32_t)(spec->vocab_size - RANDOM_FIRST_TEXT);
    mlm_masking m = mlm_masking_make(spec->mask_prob, MLM_DRAWS_INTEGER, RANDOM_MASK, random_text, &text);
    for (int t = 0; t < T; t++) {
        int32_t *id = &b->input_ids[s * T + t], *label = &b->labels[s * T + t];
        uint32_t r[4];
        rng_bits(key, g, (uint32_t)t, 0, r);
        b->token_type_ids[s * T + t] = t > T / 2;
        b->attention_mask[s * T + t] = 1;
        *label = LABEL_IGNORE;
        if (t == 0 || t == T / 2 || t == T - 1) {
            *id = t == 0 ? RANDOM_CLS : RANDOM_SEP;
            continue;
        }
        *id = random_text(&text, r[0]);
        mlm_mask_token(&m, r, id, label);
    }
    uint32_t r[4];
    rng_bits(key, g, (uint32_t)T, 1, r);
    b->next_sentence_label[s] = spec->nsp ? (int32_t)(r[0] & 1) : LABEL_IGNORE;
}

void random_batch_fill(batch *b, const random_spec *spec, uint64_t sample0)
{
    rng_key key = rng_key_make(spec->seed, RNG_RANDOM_DATA);
    for (int s = 0; s < b->B; s++) {
        uint64_t g = sample0 + (uint64_t)s;
        if (spec->samples) g %= spec->samples;
        if (spec->mlm)
            fill_mlm(b, s, spec, key, g);
        else
            fill_causal(b, s, spec, key, g);
        if (!spec->mlm) b->next_sentence_label[s] = LABEL_IGNORE;
    }
}

/* data/stream objectives: packing a group's documents into samples and
 * building a sample's rows (docs/design.md, "Data: shards, reader, sampler,
 * objectives").
 *   causal  documents joined by end-of-text; windows of T+1 tokens, stride T
 *   mlm     [CLS] sentences of one document [SEP], packed to T, padded
 *   mlm+nsp [CLS] A [SEP] B [SEP] as BERT's create_pretraining_data
 */
#include <string.h>

#include "data/mlm_mask.h"
#include "stream_internal.h"

static uint32_t pack_draw(pack_rng *r)
{
    if (r->have == 0) {
        rng_bits(r->key, r->epoch, r->group, r->counter++, r->bits);
        r->have = 4;
    }
    return r->bits[--r->have];
}

static uint32_t pack_below(pack_rng *r, uint32_t n) { return rng_below(pack_draw(r), n); }

static status_t emit(stream_group *g, sample_desc d)
{
    TRY(stream_grow_array((void **)&g->descs, &g->descs_cap, g->n_descs + 1, sizeof *g->descs));
    g->descs[g->n_descs++] = d;
    return ST_OK;
}

static status_t pack_causal(stream *s)
{
    stream_group *g = &s->g;
    uint32_t T = (uint32_t)s->spec.seq_len;
    uint32_t n = g->n_tokens > T ? (g->n_tokens - 1) / T : 0;
    for (uint32_t j = 0; j < n; j++) {
        /* the document of the window's first token, for stream_last_origin */
        uint32_t start = j * T, lo = 0, hi = g->n_sents;
        while (hi - lo > 1) {
            uint32_t mid = (lo + hi) / 2;
            if (g->sents[mid].start <= start) lo = mid;
            else hi = mid;
        }
        TRY(emit(g, (sample_desc){start, T + 1, 0, 0, g->sents[lo].doc, g->sents[lo].doc, LABEL_IGNORE}));
    }
    return ST_OK;
}

/* Whole sentences of one document up to T-2 tokens; longer sentences in pieces. */
static status_t pack_mlm(stream *s)
{
    stream_group *g = &s->g;
    uint32_t max = (uint32_t)s->spec.seq_len - 2;
    for (uint32_t d = 0; d < g->n_docs; d++) {
        const group_doc *doc = &g->docs[d];
        uint32_t start = g->sents[doc->first].start, len = 0;
        for (uint32_t i = doc->first; i < doc->first + doc->n; i++) {
            uint32_t sl = g->sents[i].len;
            if (len > 0 && len + sl > max) {
                TRY(emit(g, (sample_desc){start, len, 0, 0, doc->doc, doc->doc, LABEL_IGNORE}));
                start = g->sents[i].start, len = 0;
            }
            len += sl;
            while (len > max) {
                TRY(emit(g, (sample_desc){start, max, 0, 0, doc->doc, doc->doc, LABEL_IGNORE}));
                start += max, len -= max;
            }
        }
        if (len > 0) TRY(emit(g, (sample_desc){start, len, 0, 0, doc->doc, doc->doc, LABEL_IGNORE}));
    }
    return ST_OK;
}

/* A random document run other than `doc` (the group holds two documents or more). */
static const group_doc *random_other_doc(stream_group *g, pack_rng *r, uint64_t doc)
{
    uint32_t k = pack_below(r, g->n_docs);
    for (int tries = 0; tries < 10 && g->docs[k].doc == doc; tries++) k = pack_below(r, g->n_docs);
    while (g->docs[k].doc == doc) k = (k + 1) % g->n_docs;
    return &g->docs[k];
}

/* BERT's truncate_seq_pair: trim the longer side, from the front or the back at random. */
static void truncate_pair(sample_desc *d, uint32_t max, pack_rng *r)
{
    while (d->a_len + d->b_len > max) {
        int a = d->a_len > d->b_len;
        uint32_t *start = a ? &d->a_start : &d->b_start, *len = a ? &d->a_len : &d->b_len;
        if (pack_draw(r) & 1) (*start)++;
        (*len)--;
    }
}

/* One NSP instance from the chunk of sentences [c0, c1] of document `doc`;
 * returns how many of its sentences were used (the rest go back, as in BERT). */
static status_t nsp_instance(stream *s, pack_rng *r, const group_doc *doc, uint32_t c0, uint32_t c1,
                             uint32_t target, uint32_t *used)
{
    stream_group *g = &s->g;
    const group_sentence *se = g->sents;
    uint32_t n_chunk = c1 - c0 + 1;
    uint32_t a_end = n_chunk >= 2 ? 1 + pack_below(r, n_chunk - 1) : 1;
    int random_next = pack_draw(r) >> 31;
    sample_desc d = {se[c0].start, 0, 0, 0, doc->doc, doc->doc, 0};
    for (uint32_t i = c0; i < c0 + a_end; i++) d.a_len += se[i].len;
    *used = n_chunk;
    if (!random_next && n_chunk == 1 && se[c0].len < 2) random_next = 1;
    if (random_next) {
        const group_doc *other = random_other_doc(g, r, doc->doc);
        uint32_t j = other->first + pack_below(r, other->n);
        uint32_t target_b = target > d.a_len ? target - d.a_len : 1;
        d.b_start = se[j].start, d.b_doc = other->doc, d.label = 1;
        for (; j < other->first + other->n && d.b_len < target_b; j++) d.b_len += se[j].len;
        *used = a_end;
    } else if (n_chunk == 1) {
        /* One sentence: a true next segment needs a cut inside it (BERT would
         * force a random one here, pulling positives below 50%). */
        d.a_len = 1 + pack_below(r, se[c0].len - 1);
        d.b_start = se[c0].start + d.a_len, d.b_len = se[c0].len - d.a_len;
    } else {
        d.b_start = se[c0 + a_end].start;
        for (uint32_t i = c0 + a_end; i <= c1; i++) d.b_len += se[i].len;
    }
    truncate_pair(&d, (uint32_t)s->spec.seq_len - 3, r);
    return emit(g, d);
}

/* create_instances_from_document over every document run of the group. */
static status_t pack_nsp(stream *s)
{
    stream_group *g = &s->g;
    pack_rng r = {s->key_nsp, g->epoch, g->index, 0, 0, {0}};
    uint32_t max = (uint32_t)s->spec.seq_len - 3;
    for (uint32_t d = 0; d < g->n_docs; d++) {
        const group_doc *doc = &g->docs[d];
        uint32_t target = max;
        if (rng_uniform(pack_draw(&r)) < STREAM_SHORT_SEQ_PROB) target = 2 + pack_below(&r, max - 1);
        uint32_t end = doc->first + doc->n, c0 = doc->first, len = 0;
        for (uint32_t i = doc->first; i < end; i++) {
            len += g->sents[i].len;
            if (i + 1 < end && len < target) continue;
            uint32_t used;
            TRY(nsp_instance(s, &r, doc, c0, i, target, &used));
            i = c0 + used - 1;
            c0 = i + 1, len = 0;
        }
    }
    return ST_OK;
}

status_t objective_pack(stream *s)
{
    s->g.n_descs = 0;
    if (s->spec.objective == STREAM_CAUSAL) return pack_causal(s);
    return s->spec.nsp ? pack_nsp(s) : pack_mlm(s);
}

/* ------------------------------------------------------------ building */

static int is_special(const stream *s, int32_t id)
{
    for (int k = 0; k < s->n_special; k++)
        if (s->special_sorted[k] == id) return id != s->special_ids[TOKEN_UNK];
    return 0;
}

/* A uniform draw among the ids that are not special (ctx: the stream). */
static int32_t random_nonspecial(const void *ctx, uint32_t bits)
{
    const stream *s = ctx;
    int32_t id = (int32_t)rng_below(bits, s->ds.info.vocab_size - (uint32_t)s->n_special);
    for (int k = 0; k < s->n_special && s->special_sorted[k] <= id; k++) id++;
    return id;
}

/* Dynamic masking of row positions [from, to): 80% [MASK], 10% random, 10% kept. */
static void mask_row(const stream *s, uint64_t epoch, uint64_t sample, int32_t *ids, int32_t *labels, int from, int to)
{
    mlm_masking m = mlm_masking_make(s->spec.mask_prob, MLM_DRAWS_UNIFORM, s->special_ids[TOKEN_MASK],
                                     random_nonspecial, s);
    for (int t = from; t < to; t++) {
        if (is_special(s, ids[t])) continue;
        uint32_t bits[4];
        rng_bits(s->key_mask, sample, (uint32_t)t, (uint32_t)epoch, bits);
        mlm_mask_token(&m, bits, &ids[t], &labels[t]);
    }
}

static void build_causal(const stream *s, const sample_desc *d, int32_t *ids, int32_t *types, int32_t *att,
                         int32_t *labels)
{
    const uint32_t *w = s->g.tokens + d->a_start;
    for (int t = 0; t < s->spec.seq_len; t++) {
        ids[t] = (int32_t)w[t];
        labels[t] = (int32_t)w[t + 1];
        types[t] = 0;
        att[t] = 1;
    }
}

static int put_segment(const stream *s, int32_t *ids, int32_t *types, int t, uint32_t start, uint32_t len, int type)
{
    for (uint32_t i = 0; i < len; i++, t++) ids[t] = (int32_t)s->g.tokens[start + i], types[t] = type;
    ids[t] = s->special_ids[TOKEN_SEP], types[t] = type;
    return t + 1;
}

static void build_mlm(const stream *s, const sample_desc *d, uint64_t epoch, uint64_t sample, int32_t *ids,
                      int32_t *types, int32_t *att, int32_t *labels)
{
    int T = s->spec.seq_len;
    ids[0] = s->special_ids[TOKEN_CLS], types[0] = 0;
    int t = put_segment(s, ids, types, 1, d->a_start, d->a_len, 0);
    if (s->spec.nsp) t = put_segment(s, ids, types, t, d->b_start, d->b_len, 1);
    for (int i = 0; i < T; i++) att[i] = i < t, labels[i] = LABEL_IGNORE;
    for (int i = t; i < T; i++) ids[i] = s->special_ids[TOKEN_PAD], types[i] = 0;
    mask_row(s, epoch, sample, ids, labels, 0, t);
}

void stream_objective_build(stream *s, const sample_desc *d, uint64_t epoch, uint64_t sample, batch *b, int row)
{
    size_t o = (size_t)row * (size_t)b->T;
    int32_t *ids = b->input_ids + o, *types = b->token_type_ids + o, *att = b->attention_mask + o;
    int32_t *labels = b->labels + o;
    if (s->spec.objective == STREAM_CAUSAL) build_causal(s, d, ids, types, att, labels);
    else build_mlm(s, d, epoch, sample, ids, types, att, labels);
    b->next_sentence_label[row] = s->spec.objective == STREAM_MLM && s->spec.nsp ? d->label : LABEL_IGNORE;
}

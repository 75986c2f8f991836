/* data/stream: the reader, the epoch shuffle and the sampler (stream.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream_internal.h"

status_t stream_grow_array(void **p, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap) return ST_OK;
    uint32_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    FAIL_IF(!q, ST_NOMEM, "out of memory for %u stream entries", c);
    *p = q, *cap = c;
    return ST_OK;
}

/* ------------------------------------------------------------ open shards */

/* The reader of a shard, from a small cache of open files (least recently used goes). */
static status_t shard_get(stream *s, uint32_t shard, shard_reader **out)
{
    int victim = 0;
    for (int i = 0; i < STREAM_OPEN_SHARDS; i++) {
        if (s->open[i] && s->open_shard[i] == shard) {
            s->open_used[i] = ++s->open_clock;
            *out = s->open[i];
            return ST_OK;
        }
        if (!s->open[i] || (s->open[victim] && s->open_used[i] < s->open_used[victim])) victim = i;
    }
    shard_reader_close(s->open[victim]);
    s->open[victim] = NULL;
    char path[4200];
    dataset_shard_path(&s->ds, (int)shard, path, sizeof path);
    TRY(shard_reader_open(&s->open[victim], path));
    TRY(dataset_check_shard(&s->ds, (int)shard, shard_reader_header(s->open[victim])));
    s->open_shard[victim] = shard;
    s->open_used[victim] = ++s->open_clock;
    *out = s->open[victim];
    return ST_OK;
}

/* Reads every shard's header and index into the block table. */
static status_t load_blocks(stream *s)
{
    uint64_t docs = 0;
    for (uint32_t i = 0; i < (uint32_t)s->ds.info.n_shards; i++) {
        shard_reader *r;
        TRY(shard_get(s, i, &r));
        const shard_header *h = shard_reader_header(r);
        uint32_t cap = s->n_blocks;
        TRY(stream_grow_array((void **)&s->blocks, &cap, s->n_blocks + h->n_frames + 1, sizeof *s->blocks));
        for (uint32_t f = 0; f < h->n_frames; f++) {
            const shard_frame *e = shard_reader_frame(r, f);
            uint64_t first = docs + !(e->flags & SHARD_FRAME_DOC_CONTINUES);
            s->blocks[s->n_blocks++] = (stream_block){i, f, e->n_records, first};
            docs += e->n_doc_starts;
        }
    }
    FAIL_IF(s->n_blocks == 0, ST_CONFIG, "%s: the dataset holds no tokens; prepare it from non-empty text", s->path);
    s->perm = malloc(s->n_blocks * sizeof *s->perm);
    FAIL_IF(!s->perm, ST_NOMEM, "out of memory for the block order of %u frames", s->n_blocks);
    return ST_OK;
}

/* ------------------------------------------------------------ groups */

static void make_perm(stream *s, uint64_t epoch)
{
    for (uint32_t i = 0; i < s->n_blocks; i++) s->perm[i] = i;
    for (uint32_t i = s->n_blocks; i > 1; i--) {
        uint32_t bits[4];
        rng_bits(s->key_shuffle, epoch, i - 1, UINT32_MAX, bits);
        uint32_t j = rng_below(bits[0], i), t = s->perm[i - 1];
        s->perm[i - 1] = s->perm[j], s->perm[j] = t;
    }
    s->perm_epoch = epoch;
    s->perm_valid = 1;
}

/* Appends the sentences of the block at position pos of the epoch order. */
static status_t group_add_block(stream *s, uint32_t pos)
{
    stream_group *g = &s->g;
    const stream_block *bl = &s->blocks[s->perm[pos]];
    shard_reader *r;
    TRY(shard_get(s, bl->shard, &r));
    TRY(shard_reader_read(r, bl->frame, s->records, NULL));
    TRY(stream_grow_array((void **)&g->sents, &g->sents_cap, g->n_sents + bl->n_records, sizeof *g->sents));
    int causal = s->spec.objective == STREAM_CAUSAL;
    uint64_t doc = bl->first_doc;
    for (uint32_t k = 0; k < bl->n_records; k++) {
        if (k > 0 && (s->records[k] & SHARD_SENT_DOC_START)) doc++;
        if (causal && g->n_sents > 0 && g->sents[g->n_sents - 1].doc != doc) g->n_tokens++; /* end-of-text */
        uint32_t len = s->records[k] & SHARD_SENT_LEN_MASK;
        g->sents[g->n_sents++] = (group_sentence){g->n_tokens, len, doc};
        g->n_tokens += len;
    }
    g->n_blocks++;
    return ST_OK;
}

/* Splits the group's sentences into runs of one document; returns how many
 * distinct documents there are, 1 or 2 meaning "two or more". */
static status_t group_find_docs(stream_group *g, int *distinct)
{
    g->n_docs = 0;
    *distinct = g->n_sents > 0;
    for (uint32_t i = 0; i < g->n_sents; i++) {
        if (i > 0 && g->sents[i].doc == g->sents[i - 1].doc) {
            g->docs[g->n_docs - 1].n++;
            continue;
        }
        TRY(stream_grow_array((void **)&g->docs, &g->docs_cap, g->n_docs + 1, sizeof *g->docs));
        g->docs[g->n_docs++] = (group_doc){i, 1, g->sents[i].doc};
        if (g->sents[i].doc != g->docs[0].doc) *distinct = 2;
    }
    return ST_OK;
}

/* The group order: a seeded permutation of its samples. */
static void group_shuffle(stream *s)
{
    stream_group *g = &s->g;
    for (uint32_t i = 0; i < g->n_descs; i++) g->order[i] = i;
    for (uint32_t i = g->n_descs; i > 1; i--) {
        uint32_t bits[4];
        rng_bits(s->key_shuffle, g->epoch, i - 1, g->index, bits);
        uint32_t j = rng_below(bits[0], i), t = g->order[i - 1];
        g->order[i - 1] = g->order[j], g->order[j] = t;
    }
}

/* Loads group `index` of epoch e, starting at block position first, whose
 * samples begin at base: boundaries only (tokens come when a sample is built). */
static status_t group_load(stream *s, uint64_t e, uint32_t index, uint32_t first, uint64_t base)
{
    stream_group *g = &s->g;
    if (!s->perm_valid || s->perm_epoch != e) make_perm(s, e);
    g->valid = 0;
    g->tokens_loaded = 0;
    g->epoch = e, g->index = index, g->first = first, g->base = base;
    g->n_blocks = g->n_sents = g->n_tokens = 0;
    int nsp = s->spec.objective == STREAM_MLM && s->spec.nsp, distinct = 0;
    uint32_t limit = nsp ? STREAM_GROUP_FRAMES_MAX : STREAM_GROUP_FRAMES;
    while (first + g->n_blocks < s->n_blocks && g->n_blocks < limit) {
        TRY(group_add_block(s, first + g->n_blocks));
        if (g->n_blocks < STREAM_GROUP_FRAMES) continue;
        TRY(group_find_docs(g, &distinct));
        if (!nsp || distinct == 2) break;
    }
    TRY(group_find_docs(g, &distinct));
    FAIL_IF(nsp && distinct < 2, ST_CONFIG,
            "%s: NSP needs two documents within %d frames of %u tokens, but epoch %llu group %u holds only one; use a "
            "dataset with more documents or data.nsp = false", s->path, STREAM_GROUP_FRAMES_MAX, SHARD_FRAME_TOKENS,
            (unsigned long long)e, index);
    TRY(objective_pack(s));
    TRY(stream_grow_array((void **)&g->order, &g->order_cap, g->n_descs + 1, sizeof *g->order));
    group_shuffle(s);
    g->count = g->n_descs;
    g->valid = 1;
    return ST_OK;
}

/* Decompresses the group's frames into its token layout. */
static status_t group_load_tokens(stream *s)
{
    stream_group *g = &s->g;
    TRY(stream_grow_array((void **)&g->tokens, &g->tokens_cap, g->n_tokens + 1, sizeof *g->tokens));
    uint32_t sent = 0;
    for (uint32_t p = 0; p < g->n_blocks; p++) {
        const stream_block *bl = &s->blocks[s->perm[g->first + p]];
        shard_reader *r;
        TRY(shard_get(s, bl->shard, &r));
        TRY(shard_reader_read(r, bl->frame, NULL, s->frame_tokens));
        const uint32_t *src = s->frame_tokens;
        for (uint32_t k = 0; k < bl->n_records; k++, sent++) {
            const group_sentence *se = &g->sents[sent];
            if (sent > 0 && se->start != g->sents[sent - 1].start + g->sents[sent - 1].len)
                g->tokens[se->start - 1] = (uint32_t)s->eot;
            memcpy(g->tokens + se->start, src, se->len * sizeof *src);
            src += se->len;
        }
    }
    g->tokens_loaded = 1;
    return ST_OK;
}

/* ------------------------------------------------------------ positions */

static int epoch_total(const stream *s, uint64_t e, uint64_t *total)
{
    int slot = (int)(e % STREAM_EPOCH_RING);
    if (s->totals_epoch[slot] != e + 1) return 0;
    *total = s->totals[slot];
    return 1;
}

/* Moves the loaded group to the one holding sample x of epoch *e, carrying
 * x over into the following epochs when it is past the end of *e. */
static status_t locate(stream *s, uint64_t *e, uint64_t *x)
{
    for (;;) {
        uint64_t total;
        if (epoch_total(s, *e, &total) && *x >= total) {
            *x -= total, (*e)++;
            continue;
        }
        stream_group *g = &s->g;
        if (!g->valid || g->epoch != *e || *x < g->base) TRY(group_load(s, *e, 0, 0, 0));
        while (*x >= g->base + g->count) {
            uint32_t next = g->first + g->n_blocks;
            if (next >= s->n_blocks) break;
            TRY(group_load(s, *e, g->index + 1, next, g->base + g->count));
        }
        if (*x < g->base + g->count) return ST_OK;
        total = g->base + g->count;
        FAIL_IF(total == 0, ST_CONFIG, "%s: the dataset gives no sample of seq_len %d in epoch %llu; use a shorter "
                "seq_len or more text", s->path, s->spec.seq_len, (unsigned long long)*e);
        int slot = (int)(*e % STREAM_EPOCH_RING);
        s->totals[slot] = total, s->totals_epoch[slot] = *e + 1;
    }
}

static void step_advance(stream *s)
{
    if (++s->taken < (uint64_t)s->spec.chunk) return;
    s->taken = 0;
    s->step += (uint64_t)s->spec.chunk * (uint64_t)s->spec.dp_size;
    uint64_t total;
    while (epoch_total(s, s->epoch, &total) && s->step >= total) s->step -= total, s->epoch++;
}

/* Builds sample x of epoch e (carried over epochs) of this dataset into row. */
static status_t sample_at(stream *s, uint64_t e, uint64_t x, batch *b, int row, stream_origin *o)
{
    TRY(locate(s, &e, &x));
    if (!s->g.tokens_loaded) TRY(group_load_tokens(s));
    const sample_desc *d = &s->g.descs[s->g.order[x - s->g.base]];
    stream_objective_build(s, d, e, x, b, row);
    *o = (stream_origin){e, x, d->a_doc, d->b_doc, 0};
    return ST_OK;
}

/* ------------------------------------------------------------ blends */

/* The step's blending: Megatron's greedy rule (stream.h) from the counts at
 * the step's start. The lag w_d (t + 1) - c_d in units of 2^-32 is computed
 * modulo 2^64 and read as signed: its true value lies within +-D 2^32. */
static void blend_plan(stream *s)
{
    uint64_t n = (uint64_t)s->spec.chunk * (uint64_t)s->spec.dp_size, c[STREAM_BLEND_MAX];
    for (int d = 0; d < s->n_sources; d++) c[d] = s->pos[d].drawn, s->plan_n[d] = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t t = s->step + i;
        int best = 0;
        int64_t best_lag = 0;
        for (int d = 0; d < s->n_sources; d++) {
            int64_t lag = (int64_t)(s->quota[d] * (t + 1) - (c[d] << 32));
            if (d == 0 || lag > best_lag) best = d, best_lag = lag;
        }
        s->plan[i] = (blend_slot){(uint32_t)best, (uint32_t)s->plan_n[best]++};
        c[best]++;
    }
    s->plan_valid = 1;
}

static void blend_advance(stream *s)
{
    if (++s->taken < (uint64_t)s->spec.chunk) return;
    s->taken = 0;
    for (int d = 0; d < s->n_sources; d++) s->pos[d].sample += s->plan_n[d], s->pos[d].drawn += s->plan_n[d];
    s->step += (uint64_t)s->spec.chunk * (uint64_t)s->spec.dp_size;
    s->plan_valid = 0;
}

static status_t blend_next(stream *s, batch *b)
{
    for (int row = 0; row < b->B; row++) {
        if (!s->plan_valid) blend_plan(s);
        const blend_slot *sl = &s->plan[(uint64_t)s->spec.dp_rank * (uint64_t)s->spec.chunk + s->taken];
        const stream_source_pos *p = &s->pos[sl->source];
        TRY(sample_at(s->sources[sl->source], p->epoch, p->sample + sl->k, b, row, &s->origins[row]));
        s->origins[row].source = (int)sl->source;
        blend_advance(s);
    }
    return ST_OK;
}

status_t stream_next(stream *s, batch *b)
{
    FAIL_IF(b->T != s->spec.seq_len, ST_CONFIG, "stream: batch has T = %d, the stream seq_len = %d", b->T,
            s->spec.seq_len);
    if (b->B > s->origins_cap) {
        stream_origin *o = realloc(s->origins, (size_t)b->B * sizeof *o);
        FAIL_IF(!o, ST_NOMEM, "out of memory for %d sample origins", b->B);
        s->origins = o, s->origins_cap = b->B;
    }
    if (s->n_sources) return blend_next(s, b);
    for (int row = 0; row < b->B; row++) {
        uint64_t x = s->step + (uint64_t)s->spec.dp_rank * (uint64_t)s->spec.chunk + s->taken;
        TRY(sample_at(s, s->epoch, x, b, row, &s->origins[row]));
        step_advance(s);
    }
    return ST_OK;
}

void stream_last_origin(const stream *s, int row, stream_origin *o) { *o = s->origins[row]; }

void stream_cursor_get(const stream *s, stream_cursor *c)
{
    memset(c, 0, sizeof *c);
    c->epoch = s->epoch;
    c->sample = s->step;
    c->extra[0] = s->taken;
    c->n_sources = s->n_sources;
    memcpy(c->source, s->pos, sizeof s->pos);
}

int stream_n_sources(const stream *s) { return s->n_sources ? s->n_sources : 1; }

/* Carries (epoch, sample) over the ends of epochs (locating the sample). */
static status_t normalise(stream *s, uint64_t *epoch, uint64_t *sample)
{
    uint64_t e = *epoch, x = *sample;
    TRY(locate(s, &e, &x));
    *epoch = e, *sample = x;
    return ST_OK;
}

status_t stream_epochs(stream *s, uint64_t *epochs)
{
    if (!s->n_sources) {
        if (s->taken == 0) TRY(normalise(s, &s->epoch, &s->step));
        epochs[0] = s->epoch;
        return ST_OK;
    }
    for (int d = 0; d < s->n_sources; d++) {
        if (s->taken == 0) TRY(normalise(s->sources[d], &s->pos[d].epoch, &s->pos[d].sample));
        epochs[d] = s->pos[d].epoch;
    }
    return ST_OK;
}

void stream_drawn(const stream *s, uint64_t *drawn)
{
    if (!s->n_sources) drawn[0] = 0;
    for (int d = 0; d < s->n_sources; d++) drawn[d] = s->pos[d].drawn;
}

status_t stream_cursor_set(stream *s, const stream_cursor *c)
{
    FAIL_IF(c->extra[0] >= (uint64_t)s->spec.chunk, ST_CONFIG,
            "stream cursor: %llu samples taken of a step of %d per rank (expected fewer); the cursor belongs to "
            "another configuration", (unsigned long long)c->extra[0], s->spec.chunk);
    FAIL_IF(c->n_sources != s->n_sources, ST_CONFIG, "stream cursor: it holds the positions of %d datasets, data.path "
            "names %d (a blend has 2 or more, one dataset 0); resume with the data.path of the checkpoint",
            c->n_sources, s->n_sources);
    s->epoch = c->epoch, s->step = c->sample, s->taken = c->extra[0];
    s->g.valid = 0;
    memset(s->totals_epoch, 0, sizeof s->totals_epoch);
    memcpy(s->pos, c->source, sizeof s->pos);
    s->plan_valid = 0;
    return ST_OK;
}

/* ------------------------------------------------------------ open, close */

static status_t check_spec(const stream_spec *sp, const dataset_info *in)
{
    FAIL_IF(sp->dp_size < 1 || sp->dp_rank < 0 || sp->dp_rank >= sp->dp_size || sp->chunk < 1, ST_CONFIG,
            "stream: data-parallel rank %d of %d with %d samples per step (expected 0 <= rank < size, chunk >= 1)",
            sp->dp_rank, sp->dp_size, sp->chunk);
    int min_t = sp->objective == STREAM_CAUSAL ? 1 : sp->nsp ? 5 : 3;
    FAIL_IF(sp->seq_len < min_t, ST_CONFIG, "stream: seq_len %d is too short for this objective (at least %d)",
            sp->seq_len, min_t);
    FAIL_IF(!(sp->mask_prob >= 0 && sp->mask_prob <= 1), ST_CONFIG, "stream: mask_prob %g is outside [0, 1]",
            sp->mask_prob);
    FAIL_IF(sp->vocab_size < 1 || in->vocab_size > (uint32_t)sp->vocab_size, ST_CONFIG,
            "%s: the dataset's vocabulary has %u tokens, more than the model's vocab_size %d; set model.vocab_size "
            ">= %u", sp->path, in->vocab_size, sp->vocab_size, in->vocab_size);
    const int32_t *sp_ids = in->special;
    FAIL_IF(sp->objective == STREAM_MLM && (sp_ids[TOKEN_CLS] < 0 || sp_ids[TOKEN_SEP] < 0 || sp_ids[TOKEN_MASK] < 0 ||
                                            sp_ids[TOKEN_PAD] < 0), ST_CONFIG,
            "%s: MLM needs [CLS] [SEP] [MASK] [PAD] in the vocabulary (this %s vocabulary lacks one); prepare the "
            "data with a WordPiece vocabulary", sp->path, in->kind == TOKENIZER_BPE ? "BPE" : "WordPiece");
    FAIL_IF(sp->objective == STREAM_CAUSAL && sp_ids[TOKEN_EOT] < 0 && sp_ids[TOKEN_SEP] < 0, ST_CONFIG,
            "%s: causal LM needs <|endoftext|> or [SEP] in the vocabulary to separate documents", sp->path);
    return ST_OK;
}

/* The special ids, sorted, for drawing uniformly among the others. */
static status_t setup_specials(stream *s)
{
    const int32_t *sp = s->ds.info.special;
    s->eot = sp[TOKEN_EOT] >= 0 ? sp[TOKEN_EOT] : sp[TOKEN_SEP];
    s->special_sorted = malloc(6 * sizeof *s->special_sorted);
    FAIL_IF(!s->special_sorted, ST_NOMEM, "out of memory");
    for (int k = 0; k < 6; k++) {
        int32_t id = sp[k];
        if (id < 0) continue;
        int i = s->n_special++;
        while (i > 0 && s->special_sorted[i - 1] > id) s->special_sorted[i] = s->special_sorted[i - 1], i--;
        s->special_sorted[i] = id;
    }
    memcpy(s->special_ids, sp, sizeof s->special_ids);
    return ST_OK;
}

static status_t stream_setup(stream *s, const stream_spec *spec)
{
    snprintf(s->path, sizeof s->path, "%s", spec->path);
    s->spec = *spec;
    s->spec.path = s->path;
    TRY(dataset_open_split(&s->ds, spec->path, spec->split));
    TRY(check_spec(&s->spec, &s->ds.info));
    TRY(setup_specials(s));
    s->records = malloc(SHARD_FRAME_TOKENS * sizeof *s->records);
    s->frame_tokens = malloc(SHARD_FRAME_TOKENS * sizeof *s->frame_tokens);
    FAIL_IF(!s->records || !s->frame_tokens, ST_NOMEM, "out of memory for the stream");
    TRY(load_blocks(s));
    s->key_mask = rng_key_make(spec->seed, RNG_MASK);
    s->key_shuffle = rng_key_make(spec->seed, RNG_SHUFFLE);
    s->key_nsp = rng_key_make(spec->seed, RNG_NSP);
    return ST_OK;
}

/* ------------------------------------------------------------ blend set-up */

/* One word of data.path as a weight: a finite number > 0. */
static int parse_weight(const char *word, double *w)
{
    char *end;
    *w = strtod(word, &end);
    return end != word && *end == '\0';
}

status_t stream_blend_parse(const char *text, stream_blend *out)
{
    memset(out, 0, sizeof *out);
    char buf[STREAM_BLEND_MAX * 1100], *words[2 * STREAM_BLEND_MAX + 1], *save = NULL;
    double w;
    FAIL_IF(strlen(text) >= sizeof buf, ST_CONFIG, "data.path is %zu characters long (expected fewer than %zu)",
            strlen(text), sizeof buf);
    snprintf(buf, sizeof buf, "%s", text);
    int n = 0;
    for (char *t = strtok_r(buf, " \t", &save); t && n <= 2 * STREAM_BLEND_MAX; t = strtok_r(NULL, " \t", &save))
        words[n++] = t;
    if (n == 0 || !parse_weight(words[0], &w)) { /* one dataset, spaces and all */
        FAIL_IF(strlen(text) >= sizeof out->path[0], ST_CONFIG, "data.path is too long (at most %zu characters)",
                sizeof out->path[0] - 1);
        out->n = 1, out->weight[0] = 1.0;
        snprintf(out->path[0], sizeof out->path[0], "%s", text);
        return ST_OK;
    }
    FAIL_IF(n > 2 * STREAM_BLEND_MAX, ST_CONFIG, "data.path = '%s' blends more than %d datasets (expected at most "
            "%d WEIGHT PATH pairs)", text, STREAM_BLEND_MAX, STREAM_BLEND_MAX);
    FAIL_IF(n % 2, ST_CONFIG, "data.path = '%s' has %d words (expected WEIGHT PATH pairs, e.g. '0.7 datasets/a 0.3 "
            "datasets/b'; a weight without its path?)", text, n);
    double sum = 0;
    for (int i = 0; i < n; i += 2) {
        FAIL_IF(!parse_weight(words[i], &w) || !(w > 0 && w < 1e300), ST_CONFIG, "data.path = '%s': weight '%s' of "
                "pair %d is not a positive number (expected WEIGHT PATH pairs, e.g. '0.7 datasets/a 0.3 datasets/b')",
                text, words[i], i / 2 + 1);
        FAIL_IF(parse_weight(words[i + 1], &w), ST_CONFIG, "data.path = '%s': '%s' where pair %d's path belongs is a "
                "number (expected WEIGHT PATH pairs; write ./%s for a directory of that name)", text, words[i + 1],
                i / 2 + 1, words[i + 1]);
        FAIL_IF(strlen(words[i + 1]) >= sizeof out->path[0], ST_CONFIG, "data.path: path %d is too long", i / 2 + 1);
        out->weight[out->n] = strtod(words[i], NULL);
        snprintf(out->path[out->n++], sizeof out->path[0], "%s", words[i + 1]);
        sum += out->weight[out->n - 1];
    }
    for (int d = 0; d < out->n; d++) out->weight[d] /= sum;
    return ST_OK;
}

/* Dataset d of a blend reads with seed, the others with seeds derived from it. */
static uint64_t source_seed(uint64_t seed, int d) { return d == 0 ? seed : seed + 0x9E3779B97F4A7C15ULL * (uint64_t)d; }

static status_t check_same_vocab(const stream *s, int d)
{
    const dataset_info *a = &s->sources[0]->ds.info, *b = &s->sources[d]->ds.info;
    FAIL_IF(a->kind != b->kind || a->fingerprint != b->fingerprint || a->vocab_size != b->vocab_size, ST_CONFIG,
            "data.path: the blend's datasets %s (%s, %u tokens, fingerprint %016llx) and %s (%s, %u tokens, "
            "fingerprint %016llx) have different vocabularies (expected one); prepare them with one vocabulary "
            "(mpilm prep --vocab %s ...)", s->sources[0]->path, a->kind == TOKENIZER_BPE ? "bpe" : "wordpiece",
            a->vocab_size, (unsigned long long)a->fingerprint, s->sources[d]->path,
            b->kind == TOKENIZER_BPE ? "bpe" : "wordpiece", b->vocab_size, (unsigned long long)b->fingerprint,
            s->sources[0]->path);
    return ST_OK;
}

static status_t blend_setup(stream *s, const stream_spec *spec, const stream_blend *bl)
{
    s->spec = *spec;
    snprintf(s->path, sizeof s->path, "%s", spec->path);
    s->spec.path = s->path;
    uint64_t total = 0;
    int largest = 0;
    for (int d = 0; d < bl->n; d++) {
        stream_spec sub = *spec;
        sub.path = bl->path[d], sub.blend = 0, sub.seed = source_seed(spec->seed, d);
        TRY(stream_open(&s->sources[d], &sub));
        s->n_sources = d + 1;
        TRY(check_same_vocab(s, d));
        s->quota[d] = (uint64_t)(bl->weight[d] * 0x1p32);
        if (s->quota[d] == 0) s->quota[d] = 1;
        total += s->quota[d];
        if (bl->weight[d] > bl->weight[largest]) largest = d;
    }
    s->quota[largest] += (1ULL << 32) - total; /* the quotas sum to 2^32 exactly */
    s->plan = malloc((size_t)spec->chunk * (size_t)spec->dp_size * sizeof *s->plan);
    FAIL_IF(!s->plan, ST_NOMEM, "out of memory for the blend plan of %d x %d samples", spec->chunk, spec->dp_size);
    return ST_OK;
}

status_t stream_open(stream **out, const stream_spec *spec)
{
    *out = NULL;
    stream_blend bl = {.n = 1};
    stream_spec one = *spec;
    if (spec->blend) TRY(stream_blend_parse(spec->path, &bl));
    if (spec->blend) one.path = bl.path[0], one.blend = 0; /* "1 datasets/a" is datasets/a */
    stream *s = calloc(1, sizeof *s);
    FAIL_IF(!s, ST_NOMEM, "out of memory for a stream");
    status_t st = bl.n > 1 ? blend_setup(s, spec, &bl) : stream_setup(s, &one);
    if (st != ST_OK) {
        stream_close(s);
        return st;
    }
    *out = s;
    return ST_OK;
}

const dataset_info *stream_info(const stream *s) { return s->n_sources ? &s->sources[0]->ds.info : &s->ds.info; }

void stream_close(stream *s)
{
    if (!s) return;
    for (int d = 0; d < s->n_sources; d++) stream_close(s->sources[d]);
    free(s->plan);
    for (int i = 0; i < STREAM_OPEN_SHARDS; i++) shard_reader_close(s->open[i]);
    dataset_close(&s->ds);
    free(s->blocks);
    free(s->perm);
    free(s->records);
    free(s->frame_tokens);
    free(s->special_sorted);
    free(s->origins);
    free(s->g.sents);
    free(s->g.docs);
    free(s->g.tokens);
    free(s->g.descs);
    free(s->g.order);
    free(s);
}

/* model/table — the named parameter table of a layer range, in Hugging Face
 * names and layouts (docs/design.md lists it), and views into flat buffers. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"
#include "model/model_tensors.h"
#include "tensor/block_cyclic.h"

typedef struct table_builder {
    model_tensor *t;
    tensor_split *split;
    int n, cap, tp;
    const model_tp *grid; /* 2d: the FFN's weights are block-cyclic over it; else NULL */
    size_t total;
    int global;           /* the next tensor's index in the full table */
    size_t global_offset; /* and its offset there */
} table_builder;

/* One entry of the lists of model_tensors.h. */
typedef struct tensor_spec {
    int when, view;
    const char *name;
    int split, rows, cols;
} tensor_spec;

#define NO_VIEW (-1)
#define BV(f) ((int)offsetof(block_params, f))
#define SV(f) ((int)offsetof(stage_params, f))
#define BLOCK_SPEC(view, name, split, rows, cols) {TW_ALWAYS, view, name, split, rows, cols},
#define STAGE_SPEC(when, view, name, split, rows, cols) {when, view, name, split, rows, cols},
static const tensor_spec gpt_block[] = {MODEL_GPT_BLOCK(BLOCK_SPEC)};
static const tensor_spec bert_block[] = {MODEL_BERT_BLOCK(BLOCK_SPEC)};
static const tensor_spec gpt_embed[] = {MODEL_GPT_EMBED(STAGE_SPEC)};
static const tensor_spec bert_embed[] = {MODEL_BERT_EMBED(STAGE_SPEC)};
static const tensor_spec gpt_head[] = {MODEL_GPT_HEAD(STAGE_SPEC)};
static const tensor_spec bert_head[] = {MODEL_BERT_HEAD(STAGE_SPEC)};
static const tensor_spec llama_block[] = {MODEL_LLAMA_BLOCK(BLOCK_SPEC)};
static const tensor_spec llama_embed[] = {MODEL_LLAMA_EMBED(STAGE_SPEC)};
static const tensor_spec llama_head[] = {MODEL_LLAMA_HEAD(STAGE_SPEC)};
#undef BV
#undef SV

typedef struct spec_list {
    const tensor_spec *s;
    int n;
} spec_list;

#define LIST(a) ((spec_list){a, (int)(sizeof a / sizeof a[0])})
static spec_list block_list(const model_config *c)
{
    return c->family == MODEL_BERT ? LIST(bert_block) : c->family == MODEL_LLAMA ? LIST(llama_block) : LIST(gpt_block);
}
static spec_list embed_list(const model_config *c)
{
    return c->family == MODEL_BERT ? LIST(bert_embed) : c->family == MODEL_LLAMA ? LIST(llama_embed) : LIST(gpt_embed);
}
static spec_list head_list(const model_config *c)
{
    return c->family == MODEL_BERT ? LIST(bert_head) : c->family == MODEL_LLAMA ? LIST(llama_head) : LIST(gpt_head);
}
#undef LIST

void model_dmat_local(const model_tp *tp, int rows, int cols, int *lr, int *lc)
{
    int prow = tp->rank / tp->grid_q, pcol = tp->rank % tp->grid_q;
    *lr = block_cyclic_count(rows, tp->block, pcol, tp->grid_q);
    *lc = block_cyclic_count(cols, tp->block, prow, tp->grid_p);
}

static int64_t dim(const model_config *c, int d)
{
    switch (d) {
    case TD_C: return c->d_model;
    case TD_3C: return 3 * (int64_t)c->d_model;
    case TD_F: return c->d_ff;
    case TD_V: return c->vocab_size;
    case TD_P: return c->max_positions;
    case TD_2: return 2;
    case TD_KV: return (int64_t)model_kv_heads(c) * (c->d_model / c->n_head);
    default: return 0;
    }
}

/* The split kind of a spec: in 2d the FFN's weights are block-cyclic and its
 * bias replicated. */
static split_kind spec_split(const table_builder *tb, int split)
{
    switch (split) {
    case TS_ROWS: return SPLIT_ROWS;
    case TS_COLS: return SPLIT_COLS;
    case TS_COLS3: return SPLIT_COLS3;
    case TS_FFN_ROWS: return tb->grid ? SPLIT_BLOCK_CYCLIC : SPLIT_ROWS;
    case TS_FFN_COLS: return tb->grid ? SPLIT_BLOCK_CYCLIC : SPLIT_COLS;
    case TS_FFN_BIAS: return tb->grid ? SPLIT_NONE : SPLIT_COLS;
    default: return SPLIT_NONE;
    }
}

static int spec_present(const model_config *c, const tensor_spec *s, int first)
{
    return s->when == TW_ALWAYS || (s->when == TW_LEARNED_POS && !c->sinusoidal) ||
           (s->when == TW_TIED_COPY && !first && model_tied(c)) || (s->when == TW_UNTIED && !model_tied(c));
}

/* Floats of a list's tensors, unsplit. */
static size_t list_numel(const model_config *c, spec_list l, int first)
{
    size_t n = 0;
    for (int i = 0; i < l.n; i++)
        if (spec_present(c, &l.s[i], first) && l.s[i].when != TW_TIED_COPY)
            n += (size_t)dim(c, l.s[i].rows) * (size_t)(l.s[i].cols ? dim(c, l.s[i].cols) : 1);
    return n;
}

static int list_count(const model_config *c, spec_list l)
{
    int n = 0;
    for (int i = 0; i < l.n; i++) n += spec_present(c, &l.s[i], 1) && l.s[i].when != TW_TIED_COPY;
    return n;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Appends the entry of spec s (its name printf'd with the layer when >= 0).
 * The entry gets the LOCAL shape of a split over tb->tp ranks: the split axis
 * (a vector's only one) has ceil(extent / tp) per part, the rest padding.
 * Weight decay for 2-D tensors only. */
static status_t add(table_builder *tb, const model_config *c, const tensor_spec *s, int layer)
{
    if (tb->n == tb->cap) {
        int cap = tb->cap ? 2 * tb->cap : 64;
        model_tensor *t = realloc(tb->t, (size_t)cap * sizeof *t);
        tensor_split *sp = realloc(tb->split, (size_t)cap * sizeof *sp);
        if (t) tb->t = t;
        if (sp) tb->split = sp;
        FAIL_IF(!t || !sp, ST_NOMEM, "model: out of memory for the tensor table");
        tb->cap = cap;
    }
    int64_t d0 = dim(c, s->rows), d1 = dim(c, s->cols);
    split_kind kind = tb->tp == 1 ? SPLIT_NONE : spec_split(tb, s->split);
    tb->split[tb->n] = (tensor_split){.kind = kind, .full = {d0, d1}};
    model_tensor *t = &tb->t[tb->n++];
    memset(t, 0, sizeof *t);
    if (layer >= 0) {
        const char *prefix = c->family == MODEL_BERT    ? MODEL_BERT_BLOCK_PREFIX
                             : c->family == MODEL_LLAMA ? MODEL_LLAMA_BLOCK_PREFIX
                                                        : MODEL_GPT_BLOCK_PREFIX;
        int k = snprintf(t->name, sizeof t->name, prefix, layer);
        snprintf(t->name + k, sizeof t->name - (size_t)k, "%s", s->name);
    } else {
        snprintf(t->name, sizeof t->name, "%s", s->name);
    }
    int parts = kind == SPLIT_COLS3 ? 3 : 1;
    if (kind == SPLIT_BLOCK_CYCLIC) {
        int lr, lc;
        model_dmat_local(tb->grid, (int)d0, (int)d1, &lr, &lc);
        d0 = lr;
        d1 = lc;
    }
    if (kind == SPLIT_ROWS) d0 = ceil_div(d0, tb->tp);
    int cols = kind == SPLIT_COLS || kind == SPLIT_COLS3;
    if (cols && d1) d1 = parts * ceil_div(d1 / parts, tb->tp);
    if (cols && !d1) d0 = parts * ceil_div(d0 / parts, tb->tp);
    t->ndim = d1 || kind == SPLIT_BLOCK_CYCLIC ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->numel = (size_t)d0 * (size_t)(t->ndim == 2 ? d1 : 1);
    t->offset = tb->total;
    t->decay = t->ndim == 2;
    t->tp_split = kind != SPLIT_NONE;
    t->layer = layer;
    t->view = s->view;
    t->tied = layer < 0 && s->view == (int)offsetof(stage_params, wte) && model_tied(c);
    t->tied_copy = s->when == TW_TIED_COPY;
    tb->total += t->numel;
    if (t->tied_copy) { /* the original: the full table's first tensor */
        t->global = 0;
        t->global_offset = 0;
    } else {
        t->global = tb->global++;
        t->global_offset = tb->global_offset;
        tb->global_offset += (size_t)dim(c, s->rows) * (size_t)(s->cols ? dim(c, s->cols) : 1);
    }
    return ST_OK;
}

static status_t add_list(table_builder *tb, const model_config *c, spec_list l, int layer, int first)
{
    for (int i = 0; i < l.n; i++)
        if (spec_present(c, &l.s[i], first)) TRY(add(tb, c, &l.s[i], layer));
    return ST_OK;
}

status_t model_table_build(const model_config *c, int layer_begin, int layer_end, int first,
                           int last, const model_tp *tp, model_tensor **out, tensor_split **split, int *n,
                           size_t *total, size_t *part_end)
{
    table_builder tb = {.tp = tp ? tp->size : 1, .grid = tp && tp->grid_p > 0 ? tp : NULL};
    spec_list emb = embed_list(c), blk = block_list(c), head = head_list(c);
    size_t emb_n = list_numel(c, emb, 1), blk_n = list_numel(c, blk, 1);
    int emb_k = list_count(c, emb), blk_k = list_count(c, blk);
    status_t st = ST_OK;
    if (first) st = add_list(&tb, c, emb, -1, first);
    if (part_end) part_end[0] = 0, part_end[1] = tb.total;
    for (int i = layer_begin; st == ST_OK && i < layer_end; i++) {
        tb.global = emb_k + i * blk_k;
        tb.global_offset = emb_n + (size_t)i * blk_n;
        st = add_list(&tb, c, blk, i, first);
        if (part_end) part_end[2 + i - layer_begin] = tb.total;
    }
    if (st == ST_OK && last) {
        tb.global = emb_k + c->n_layer * blk_k;
        tb.global_offset = emb_n + (size_t)c->n_layer * blk_n;
        st = add_list(&tb, c, head, -1, first);
    }
    if (part_end) part_end[2 + layer_end - layer_begin] = tb.total;
    if (st != ST_OK) {
        free(tb.t);
        free(tb.split);
        return st;
    }
    if (split) *split = tb.split; else free(tb.split);
    *out = tb.t;
    *n = tb.n;
    *total = tb.total;
    return ST_OK;
}

status_t model_stage_table(const model_config *c, int layer_begin, int layer_end, int first, int last,
                           const model_tp *tp, model_tensor **table, int *n, size_t *total)
{
    return model_table_build(c, layer_begin, layer_end, first, last, tp && tp->size > 1 ? tp : NULL, table, NULL, n,
                             total, NULL);
}

status_t model_full_table(const model_config *cfg, model_tensor **table, int *n)
{
    size_t total;
    return model_table_build(cfg, 0, cfg->n_layer, 1, 1, NULL, table, NULL, n, &total, NULL);
}

size_t model_full_n_params(const model_config *cfg)
{
    model_tensor *t;
    int n;
    size_t total;
    if (model_table_build(cfg, 0, cfg->n_layer, 1, 1, NULL, &t, NULL, &n, &total, NULL) != ST_OK) return 0;
    free(t);
    return total;
}

/* Each tensor's view: the pointer at byte t->view of the stage's views or of
 * its block's. Tensors absent from a stage leave their views NULL. */
status_t model_views(const model_stage *m, float *base, stage_params *v)
{
    block_params *blocks = v->blocks;
    memset(v, 0, sizeof *v);
    if (m->n_local) memset(blocks, 0, (size_t)m->n_local * sizeof *blocks);
    v->blocks = blocks;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        if (t->view < 0) continue;
        char *at = t->layer >= 0 ? (char *)&blocks[t->layer - m->layer_begin] : (char *)v;
        float *p = base + t->offset;
        memcpy(at + t->view, &p, sizeof p);
    }
    return ST_OK;
}

/* ---- the runs of the tensor-parallel split ------------------------------------ */

/* The runs of a block-cyclic local tensor t (2d): each local row's column
 * blocks. */
static int block_cyclic_runs(const model_tensor *t, const tensor_split *sp, const model_tp *tp, size_t fo,
                             model_run *out)
{
    int prow = tp->rank / tp->grid_q, pcol = tp->rank % tp->grid_q, nb = tp->block, n = 0;
    int64_t lr = t->shape[0], lc = t->shape[1];
    for (int64_t i = 0; i < lr; i++) {
        int64_t gr = block_cyclic_global((int)i, nb, pcol, tp->grid_q);
        for (int64_t j = 0; j < lc; j += nb, n++) {
            int64_t len = lc - j < nb ? lc - j : nb, gc = block_cyclic_global((int)j, nb, prow, tp->grid_p);
            if (out)
                out[n] = (model_run){t->offset + (size_t)(i * lc + j), fo + (size_t)(gr * sp->full[1] + gc),
                                     (size_t)len};
        }
    }
    return n;
}

/* The runs of local tensor t (split sp) on rank tp->rank, its full tensor at
 * offset fo, written to out when not NULL; returns how many. */
static int tensor_runs(const model_tensor *t, const tensor_split *sp, const model_tp *tp, size_t fo, model_run *out)
{
    int r = tp->rank;
    if (sp->kind == SPLIT_NONE) {
        if (out) out[0] = (model_run){t->offset, fo, t->numel};
        return 1;
    }
    if (sp->kind == SPLIT_BLOCK_CYCLIC) return block_cyclic_runs(t, sp, tp, fo, out);
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    if (sp->kind == SPLIT_ROWS) {
        int64_t r0 = (int64_t)r * rows, valid = sp->full[0] - r0;
        valid = valid < 0 ? 0 : valid > rows ? rows : valid;
        if (!valid) return 0;
        if (out) out[0] = (model_run){t->offset, fo + (size_t)(r0 * cols), (size_t)(valid * cols)};
        return 1;
    }
    int parts = sp->kind == SPLIT_COLS3 ? 3 : 1;
    int64_t fcols = t->ndim == 2 ? sp->full[1] : sp->full[0];
    int64_t lp = cols / parts, fp = fcols / parts, c0 = (int64_t)r * lp, valid = fp - c0;
    valid = valid < 0 ? 0 : valid > lp ? lp : valid;
    if (!valid) return 0;
    int n = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int q = 0; q < parts; q++, n++)
            if (out)
                out[n] = (model_run){t->offset + (size_t)(i * cols + q * lp),
                                     fo + (size_t)(i * fcols + q * fp + c0), (size_t)valid};
    return n;
}

status_t model_runs_build(model_stage *m)
{
    int n;
    TRY(model_table_build(&m->cfg, m->layer_begin, m->layer_end, m->first, m->last, NULL, &m->full_tensors, NULL,
                          &n, &m->full_n_params, NULL));
    const model_tensor *full = m->full_tensors;
    m->run_at = calloc((size_t)m->n_tensors + 1, sizeof(int));
    int total = 0;
    for (int i = 0; m->run_at && i < m->n_tensors; i++) {
        m->run_at[i] = total;
        total += tensor_runs(&m->tensors[i], &m->splits[i], &m->tp, full[i].offset, NULL);
    }
    m->runs = calloc((size_t)total + 1, sizeof(model_run));
    FAIL_IF(!m->run_at || !m->runs, ST_NOMEM, "model: out of memory for the tensor-parallel map");
    m->run_at[m->n_tensors] = total;
    for (int i = 0; i < m->n_tensors; i++)
        tensor_runs(&m->tensors[i], &m->splits[i], &m->tp, full[i].offset, m->runs + m->run_at[i]);
    return ST_OK;
}

int model_stage_runs(const model_stage *m, int i, const model_run **runs)
{
    *runs = m->runs + m->run_at[i];
    return m->run_at[i + 1] - m->run_at[i];
}

const model_tensor *model_stage_full_tensor(const model_stage *m, int i) { return &m->full_tensors[i]; }
size_t model_stage_full_n_params(const model_stage *m) { return m->full_n_params; }

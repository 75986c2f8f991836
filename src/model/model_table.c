/* model/table — the named parameter table of a layer range, in Hugging Face
 * names and layouts (docs/design.md lists it), and views into flat buffers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"
#include "tensor/block_cyclic.h"

typedef struct table_builder {
    model_tensor *t;
    tensor_split *split;
    int n, cap, tp;
    const model_tp *grid; /* 2d: the FFN's weights are block-cyclic over it; else NULL */
    size_t total;
} table_builder;

void model_dmat_local(const model_tp *tp, int rows, int cols, int *lr, int *lc)
{
    int prow = tp->rank / tp->grid_q, pcol = tp->rank % tp->grid_q;
    *lr = block_cyclic_count(rows, tp->block, pcol, tp->grid_q);
    *lc = block_cyclic_count(cols, tp->block, prow, tp->grid_p);
}

/* The FFN's split: 1d's kind, or block-cyclic (weights) and replicated
 * (the FFN-in bias) in 2d. */
static split_kind ffn_split(const table_builder *tb, split_kind kind, int weight)
{
    return !tb->grid ? kind : weight ? SPLIT_BLOCK_CYCLIC : SPLIT_NONE;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static status_t add(table_builder *tb, split_kind kind, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* d1 == 0: a vector of d0. Weight decay for 2-D tensors only. The entry
 * gets the LOCAL shape of a split over tb->tp ranks: the split axis (a
 * vector's only one) has ceil(extent / tp) per part, the rest padding. */
static status_t add(table_builder *tb, split_kind kind, int64_t d0, int64_t d1, const char *fmt, ...)
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
    if (tb->tp == 1) kind = SPLIT_NONE;
    tb->split[tb->n] = (tensor_split){.kind = kind, .full = {d0, d1}};
    model_tensor *t = &tb->t[tb->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
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
    tb->total += t->numel;
    return ST_OK;
}

static status_t add_bert_layer(table_builder *tb, const model_config *c, int i)
{
    int64_t C = c->d_model, F = c->d_ff;
    const char *pre = "bert.encoder.layer";
    /* query, key, value weights back to back: one (3C, C) matrix */
    TRY(add(tb, SPLIT_ROWS, C, C, "%s.%d.attention.self.query.weight", pre, i));
    TRY(add(tb, SPLIT_ROWS, C, C, "%s.%d.attention.self.key.weight", pre, i));
    TRY(add(tb, SPLIT_ROWS, C, C, "%s.%d.attention.self.value.weight", pre, i));
    TRY(add(tb, SPLIT_COLS, C, 0, "%s.%d.attention.self.query.bias", pre, i));
    TRY(add(tb, SPLIT_COLS, C, 0, "%s.%d.attention.self.key.bias", pre, i));
    TRY(add(tb, SPLIT_COLS, C, 0, "%s.%d.attention.self.value.bias", pre, i));
    TRY(add(tb, SPLIT_COLS, C, C, "%s.%d.attention.output.dense.weight", pre, i));
    TRY(add(tb, SPLIT_NONE, C, 0, "%s.%d.attention.output.dense.bias", pre, i));
    TRY(add(tb, SPLIT_NONE, C, 0, "%s.%d.attention.output.LayerNorm.weight", pre, i));
    TRY(add(tb, SPLIT_NONE, C, 0, "%s.%d.attention.output.LayerNorm.bias", pre, i));
    TRY(add(tb, ffn_split(tb, SPLIT_ROWS, 1), F, C, "%s.%d.intermediate.dense.weight", pre, i));
    TRY(add(tb, ffn_split(tb, SPLIT_COLS, 0), F, 0, "%s.%d.intermediate.dense.bias", pre, i));
    TRY(add(tb, ffn_split(tb, SPLIT_COLS, 1), C, F, "%s.%d.output.dense.weight", pre, i));
    TRY(add(tb, SPLIT_NONE, C, 0, "%s.%d.output.dense.bias", pre, i));
    TRY(add(tb, SPLIT_NONE, C, 0, "%s.%d.output.LayerNorm.weight", pre, i));
    TRY(add(tb, SPLIT_NONE, C, 0, "%s.%d.output.LayerNorm.bias", pre, i));
    return ST_OK;
}

static status_t add_gpt_layer(table_builder *tb, const model_config *c, int i)
{
    int64_t C = c->d_model, F = c->d_ff;
    TRY(add(tb, SPLIT_NONE, C, 0, "transformer.h.%d.ln_1.weight", i));
    TRY(add(tb, SPLIT_NONE, C, 0, "transformer.h.%d.ln_1.bias", i));
    TRY(add(tb, SPLIT_COLS3, C, 3 * C, "transformer.h.%d.attn.c_attn.weight", i));
    TRY(add(tb, SPLIT_COLS3, 3 * C, 0, "transformer.h.%d.attn.c_attn.bias", i));
    TRY(add(tb, SPLIT_ROWS, C, C, "transformer.h.%d.attn.c_proj.weight", i));
    TRY(add(tb, SPLIT_NONE, C, 0, "transformer.h.%d.attn.c_proj.bias", i));
    TRY(add(tb, SPLIT_NONE, C, 0, "transformer.h.%d.ln_2.weight", i));
    TRY(add(tb, SPLIT_NONE, C, 0, "transformer.h.%d.ln_2.bias", i));
    TRY(add(tb, ffn_split(tb, SPLIT_COLS, 1), C, F, "transformer.h.%d.mlp.c_fc.weight", i));
    TRY(add(tb, ffn_split(tb, SPLIT_COLS, 0), F, 0, "transformer.h.%d.mlp.c_fc.bias", i));
    TRY(add(tb, ffn_split(tb, SPLIT_ROWS, 1), F, C, "transformer.h.%d.mlp.c_proj.weight", i));
    TRY(add(tb, SPLIT_NONE, C, 0, "transformer.h.%d.mlp.c_proj.bias", i));
    return ST_OK;
}

static const char *wte_name(const model_config *c)
{
    return c->family == MODEL_BERT ? "bert.embeddings.word_embeddings.weight" : "transformer.wte.weight";
}

static status_t add_embeddings(table_builder *tb, const model_config *c)
{
    int64_t C = c->d_model;
    TRY(add(tb, SPLIT_ROWS, c->vocab_size, C, "%s", wte_name(c)));
    if (c->family == MODEL_BERT) {
        if (!c->sinusoidal) TRY(add(tb, SPLIT_NONE, c->max_positions, C, "bert.embeddings.position_embeddings.weight"));
        TRY(add(tb, SPLIT_NONE, 2, C, "bert.embeddings.token_type_embeddings.weight"));
        TRY(add(tb, SPLIT_NONE, C, 0, "bert.embeddings.LayerNorm.weight"));
        TRY(add(tb, SPLIT_NONE, C, 0, "bert.embeddings.LayerNorm.bias"));
    } else if (!c->sinusoidal) {
        TRY(add(tb, SPLIT_NONE, c->max_positions, C, "transformer.wpe.weight"));
    }
    return ST_OK;
}

/* The heads; a last stage that is not also the first holds its own copy of
 * the tied word embedding (the pipeline keeps the two copies equal). */
static status_t add_heads(table_builder *tb, const model_config *c, int first)
{
    int64_t C = c->d_model;
    if (!first) TRY(add(tb, SPLIT_ROWS, c->vocab_size, C, "%s", wte_name(c)));
    if (c->family == MODEL_GPT) {
        TRY(add(tb, SPLIT_NONE, C, 0, "transformer.ln_f.weight"));
        TRY(add(tb, SPLIT_NONE, C, 0, "transformer.ln_f.bias"));
        return ST_OK;
    }
    TRY(add(tb, SPLIT_NONE, C, C, "bert.pooler.dense.weight"));
    TRY(add(tb, SPLIT_NONE, C, 0, "bert.pooler.dense.bias"));
    TRY(add(tb, SPLIT_NONE, C, C, "cls.predictions.transform.dense.weight"));
    TRY(add(tb, SPLIT_NONE, C, 0, "cls.predictions.transform.dense.bias"));
    TRY(add(tb, SPLIT_NONE, C, 0, "cls.predictions.transform.LayerNorm.weight"));
    TRY(add(tb, SPLIT_NONE, C, 0, "cls.predictions.transform.LayerNorm.bias"));
    TRY(add(tb, SPLIT_COLS, c->vocab_size, 0, "cls.predictions.bias"));
    TRY(add(tb, SPLIT_NONE, 2, C, "cls.seq_relationship.weight"));
    TRY(add(tb, SPLIT_NONE, 2, 0, "cls.seq_relationship.bias"));
    return ST_OK;
}

status_t model_table_build(const model_config *c, int layer_begin, int layer_end, int first,
                           int last, const model_tp *tp, model_tensor **out, tensor_split **split, int *n,
                           size_t *total, size_t *part_end)
{
    table_builder tb = {.tp = tp ? tp->size : 1, .grid = tp && tp->grid_p > 0 ? tp : NULL};
    status_t st = ST_OK;
    if (first) st = add_embeddings(&tb, c);
    if (part_end) part_end[0] = 0, part_end[1] = tb.total;
    for (int i = layer_begin; st == ST_OK && i < layer_end; i++) {
        st = c->family == MODEL_BERT ? add_bert_layer(&tb, c, i) : add_gpt_layer(&tb, c, i);
        if (part_end) part_end[2 + i - layer_begin] = tb.total;
    }
    if (st == ST_OK && last) st = add_heads(&tb, c, first);
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

static float *view(const model_stage *m, float *base, const char *fmt, int i)
{
    char name[80];
    snprintf(name, sizeof name, fmt, i);
    const model_tensor *t = model_tensor_find(m, name);
    return t ? base + t->offset : NULL;
}

static void block_views(const model_stage *m, float *base, int i, block_params *b)
{
    if (m->cfg.family == MODEL_BERT) {
        const char *pre = "bert.encoder.layer.%d.";
        char f[128];
#define V(field, suffix) (snprintf(f, sizeof f, "%s%s", pre, suffix), b->field = view(m, base, f, i))
        V(qkv_w, "attention.self.query.weight");
        V(qkv_b, "attention.self.query.bias");
        V(proj_w, "attention.output.dense.weight");
        V(proj_b, "attention.output.dense.bias");
        V(ln1_w, "attention.output.LayerNorm.weight");
        V(ln1_b, "attention.output.LayerNorm.bias");
        V(fc_w, "intermediate.dense.weight");
        V(fc_b, "intermediate.dense.bias");
        V(fc2_w, "output.dense.weight");
        V(fc2_b, "output.dense.bias");
        V(ln2_w, "output.LayerNorm.weight");
        V(ln2_b, "output.LayerNorm.bias");
#undef V
        return;
    }
    b->ln1_w = view(m, base, "transformer.h.%d.ln_1.weight", i);
    b->ln1_b = view(m, base, "transformer.h.%d.ln_1.bias", i);
    b->qkv_w = view(m, base, "transformer.h.%d.attn.c_attn.weight", i);
    b->qkv_b = view(m, base, "transformer.h.%d.attn.c_attn.bias", i);
    b->proj_w = view(m, base, "transformer.h.%d.attn.c_proj.weight", i);
    b->proj_b = view(m, base, "transformer.h.%d.attn.c_proj.bias", i);
    b->ln2_w = view(m, base, "transformer.h.%d.ln_2.weight", i);
    b->ln2_b = view(m, base, "transformer.h.%d.ln_2.bias", i);
    b->fc_w = view(m, base, "transformer.h.%d.mlp.c_fc.weight", i);
    b->fc_b = view(m, base, "transformer.h.%d.mlp.c_fc.bias", i);
    b->fc2_w = view(m, base, "transformer.h.%d.mlp.c_proj.weight", i);
    b->fc2_b = view(m, base, "transformer.h.%d.mlp.c_proj.bias", i);
}

status_t model_views(const model_stage *m, float *base, stage_params *v)
{
    block_params *blocks = v->blocks;
    memset(v, 0, sizeof *v);
    v->blocks = blocks;
    int bert = m->cfg.family == MODEL_BERT;
    v->wte = view(m, base, bert ? "bert.embeddings.word_embeddings.weight" : "transformer.wte.weight", 0);
    v->wpe = view(m, base, bert ? "bert.embeddings.position_embeddings.weight" : "transformer.wpe.weight", 0);
    v->wtt = view(m, base, "bert.embeddings.token_type_embeddings.weight", 0);
    v->emb_ln_w = view(m, base, "bert.embeddings.LayerNorm.weight", 0);
    v->emb_ln_b = view(m, base, "bert.embeddings.LayerNorm.bias", 0);
    for (int i = 0; i < m->n_local; i++) block_views(m, base, m->layer_begin + i, &v->blocks[i]);
    v->lnf_w = view(m, base, "transformer.ln_f.weight", 0);
    v->lnf_b = view(m, base, "transformer.ln_f.bias", 0);
    v->pool_w = view(m, base, "bert.pooler.dense.weight", 0);
    v->pool_b = view(m, base, "bert.pooler.dense.bias", 0);
    v->tr_w = view(m, base, "cls.predictions.transform.dense.weight", 0);
    v->tr_b = view(m, base, "cls.predictions.transform.dense.bias", 0);
    v->tr_ln_w = view(m, base, "cls.predictions.transform.LayerNorm.weight", 0);
    v->tr_ln_b = view(m, base, "cls.predictions.transform.LayerNorm.bias", 0);
    v->dec_b = view(m, base, "cls.predictions.bias", 0);
    v->nsp_w = view(m, base, "cls.seq_relationship.weight", 0);
    v->nsp_b = view(m, base, "cls.seq_relationship.bias", 0);
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

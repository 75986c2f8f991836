/* model — stage creation (the buffer plan), initialisation, forward and
 * backward of a stage. Blocks and heads are in model_block.c, model_head.c. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/bigmem.h"
#include "base/hash.h"
#include "model/model_internal.h"

/* ---- the buffer plan --------------------------------------------------------
 * Two passes over the same carving code: the first counts floats, the second
 * hands out pointers into one 64-byte aligned arena. */
typedef struct carver {
    float *base;
    size_t used;
} carver;

static float *carve(carver *cv, size_t n)
{
    float *p = cv->base ? cv->base + cv->used : NULL;
    cv->used += (n + 15) & ~(size_t)15; /* keep every buffer 64-byte aligned */
    return p;
}

static bf16 *carve_bf16(carver *cv, size_t n) { return (bf16 *)carve(cv, (n + 1) / 2); }

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* Widths are this rank's: q/k/v channels Cl, heads NHl, FFN rows Fl. */
static void carve_block(carver *cv, const model_stage *m, block_acts *a, float *out)
{
    size_t N = (size_t)m->B * m->cfg.seq_len, C = m->cfg.d_model, Cl = m->Cl;
    int half = m->cfg.bf16; /* GEMM-only inputs kept in bf16, their fp32 in one scratch */
    a->atty_bf = a->qkv_bf = a->fch_bf = NULL;
    if (m->cfg.pre_ln) { /* not kept: model_stage_norm_again */
        a->ln1 = m->s.gemm_in;
    } else {
        a->ln1 = carve(cv, N * C);
    }
    a->ln1_mean = carve(cv, N);
    a->ln1_rstd = carve(cv, N);
    if (half) { /* kept in bf16; the GEMM's fp32 output in backward's dqkv */
        a->qkv = m->s.dqkv;
        a->qkv_bf = carve_bf16(cv, N * (size_t)m->Wqkv);
    } else {
        a->qkv = carve(cv, N * (size_t)m->Wqkv);
    }
    a->att_stat = carve(cv, (size_t)m->B * m->NHl * m->cfg.seq_len * 2);
    if (model_remakes_attention(&m->cfg)) { /* made again in backward (model_attention_out) */
        a->atty = m->s.dA;
    } else {
        a->atty = half ? m->s.gemm_in : carve(cv, N * Cl);
        if (half) a->atty_bf = carve_bf16(cv, N * Cl);
    }
    a->res1 = carve(cv, N * C);
    a->ln2_mean = carve(cv, N);
    a->ln2_rstd = carve(cv, N);
    int ffn_again = model_remakes_ffn(&m->cfg); /* one pre-activation, made again in backward */
    if (half) { /* likewise, in backward's dfch (Llama: gate | up written in bf16 only) */
        a->fch = m->cfg.family == MODEL_LLAMA ? NULL : m->s.dfch;
        a->fch_bf = ffn_again ? m->s.fch_bf : carve_bf16(cv, m->nh);
    } else {
        a->fch = ffn_again ? m->s.fch : carve(cv, m->nh);
    }
    a->fch_gelu = m->s.gelu; /* shared: backward recomputes it from fch */
    /* the block output is the next layer's input: pre-LN res2, post-LN ln2 */
    if (m->cfg.pre_ln) {
        a->ln2 = m->s.gemm_in;
        a->res2 = out;
    } else {
        a->res2 = carve(cv, N * C);
        a->ln2 = out;
    }
}

static void carve_slot(carver *cv, model_stage *m, slot_acts *s)
{
    size_t N = (size_t)m->B * m->cfg.seq_len, C = m->cfg.d_model;
    for (int i = 0; i <= m->n_local; i++) s->xs[i] = carve(cv, N * C);
    for (int i = 0; i < m->n_local; i++) {
        block_acts *a = &s->blocks[i];
        if (m->cfg.recompute == RECOMPUTE_FULL) {
            *a = m->shared;
            if (m->cfg.pre_ln) a->res2 = s->xs[i + 1]; else a->ln2 = s->xs[i + 1];
        } else {
            carve_block(cv, m, a, s->xs[i + 1]);
        }
    }
    if (m->first && m->cfg.family == MODEL_BERT) {
        s->emb_sum = carve(cv, N * C);
        s->emb_mean = carve(cv, N);
        s->emb_rstd = carve(cv, N);
    }
    /* backward updates the gradient in place: dinput is doutput afterwards */
    s->doutput = carve(cv, N * C);
    s->dinput = m->first ? NULL : s->doutput;
}

static void carve_scratch(carver *cv, model_stage *m)
{
    const model_config *c = &m->cfg;
    size_t N = (size_t)m->B * c->seq_len, C = c->d_model, V = m->Vl;
    scratch *s = &m->s;
    if (c->family == MODEL_LLAMA) { /* silu(gate) up in fp32 (bf16: made in bf16, model_stage_swiglu) */
        s->gelu = c->bf16 ? NULL : carve(cv, N * (size_t)m->Fl);
        /* d(silu(gate) up): fp32 stages write it over silu(gate) up (the down
           projection's backward reads its input before it writes d(input)) */
        s->dh = c->bf16 ? carve(cv, N * (size_t)m->Fl) : s->gelu;
        s->rope = carve(cv, (size_t)c->seq_len * (C / (size_t)c->n_head));
    } else {
        s->gelu = c->bf16 ? NULL : carve(cv, m->nh); /* bf16: made in bf16 (model_stage_gelu) */
    }
    if (c->bf16 || c->pre_ln) s->gemm_in = carve(cv, N * C); /* Cl <= C */
    s->tmp = carve(cv, N * C);
    s->dA = carve(cv, N * C);
    s->dtmp = carve(cv, N * C);
    if (model_remakes_ffn(c)) { /* the one FFN pre-activation (carve_block) */
        if (c->bf16) s->fch_bf = carve_bf16(cv, m->nh);
        else s->fch = carve(cv, m->nh);
    }
    /* d(fch), GPT's and BERT's fch in a bf16 forward; also d(ln1) of a
       pre-LN block and the heads' dh_l. Llama's d(gate | up) overwrites
       gate | up (model_stage_swiglu_backward). */
    s->dfch = carve(cv, c->family == MODEL_LLAMA ? N * C : max_size(m->nh, N * C));
    if (m->tp.grid_p > 0) {
        int lr, lc;
        model_dmat_local(&m->tp, (int)N, (int)C, &lr, &lc);
        s->dm_x = carve(cv, (size_t)lr * lc);
        s->dm_y = carve(cv, (size_t)lr * lc);
        s->dm_bias = carve(cv, (size_t)c->d_ff);
    }
    s->dqkv = carve(cv, N * (size_t)m->Wqkv);
    if (m->last) {
        if (c->bf16) s->logits_bf = carve_bf16(cv, (size_t)HEAD_ROWS * V);
        else s->logits = carve(cv, (size_t)HEAD_ROWS * V);
        if (c->bf16) s->head_h_bf = carve_bf16(cv, (size_t)HEAD_ROWS * C);
        else s->head_h = carve(cv, (size_t)HEAD_ROWS * C);
        s->ce_max = carve(cv, HEAD_ROWS);
        s->ce_st = carve(cv, 2 * HEAD_ROWS);
        s->row_loss = carve(cv, N);
        /* the heads' rows (at most N, C wide) in the blocks' scratch: the
           heads run between the blocks' forward and their backward, each
           of which uses it only within one block */
        s->h_in = s->tmp;
        s->h_t = s->dtmp;
        s->h_l = s->dA;
        s->dh_l = s->dfch;
        if (c->family == MODEL_BERT) s->h_g = carve(cv, N * C); /* the MLM transform's GELU */
        s->h_mean = carve(cv, N);
        s->h_rstd = carve(cv, N);
        if (c->family == MODEL_BERT) s->dh_g = carve(cv, N * C);
        s->rows = (int32_t *)carve(cv, N);
        s->row_targets = (int32_t *)carve(cv, N);
        s->pool_in = carve(cv, (size_t)m->B * C);
        s->pool = carve(cv, (size_t)m->B * C);
        s->dpool = carve(cv, (size_t)m->B * C);
        s->dpool_in = carve(cv, (size_t)m->B * C);
        s->nsp = carve(cv, (size_t)m->B * 2);
    }
    if (m->cfg.recompute == RECOMPUTE_FULL) carve_block(cv, m, &m->shared, NULL); /* after the scratch it points into */
    if (c->sinusoidal && m->first) s->sin_pos = carve(cv, (size_t)c->max_positions * C);
    if (c->bf16) {
        /* a linear's input: (N,C), (N,Cl), the FFN hidden (Llama's:
           silu(gate) up, half of gate | up), head rows; its output's
           gradient: (N,Wqkv), (N,C), GPT's and BERT's FFN pre-activation
           (Llama's and the head's logits have theirs in bf16 in place) */
        int llama = c->family == MODEL_LLAMA;
        s->xbf = carve_bf16(cv, max_size(N * C, llama ? m->nh / 2 : m->nh));
        if (c->pre_ln) s->ln_bf = carve_bf16(cv, N * C);
        s->dbf = carve_bf16(cv, max_size(N * (size_t)m->Wqkv, max_size(N * C, llama ? 0 : m->nh)));
    }
}

static void carve_all(carver *cv, model_stage *m)
{
    carve_scratch(cv, m);
    for (int i = 0; i < m->n_slots; i++) carve_slot(cv, m, &m->slots[i]);
}

static status_t alloc_slots(model_stage *m)
{
    m->slots = calloc((size_t)m->n_slots, sizeof *m->slots);
    FAIL_IF(!m->slots, ST_NOMEM, "model: out of memory");
    for (int i = 0; i < m->n_slots; i++) {
        m->slots[i].xs = calloc((size_t)m->n_local + 1, sizeof(float *));
        m->slots[i].blocks = calloc((size_t)m->n_local + 1, sizeof(block_acts));
        FAIL_IF(!m->slots[i].xs || !m->slots[i].blocks, ST_NOMEM, "model: out of memory");
    }
    m->p.blocks = calloc((size_t)m->n_local + 1, sizeof(block_params));
    m->g.blocks = calloc((size_t)m->n_local + 1, sizeof(block_params));
    FAIL_IF(!m->p.blocks || !m->g.blocks, ST_NOMEM, "model: out of memory");
    return ST_OK;
}

/* n floats, zeroed and every page touched now, so the first training step
 * pays no page faults (on huge pages where the kernel allows: bigmem.h). */
static float *alloc_touched(size_t n) { return bigmem_alloc(n * sizeof(float)); }

/* The tensor table and the slot records: everything but the big buffers. */
static status_t stage_tables(model_stage *m)
{
    m->part_end = malloc((size_t)(m->n_local + 3) * sizeof *m->part_end);
    FAIL_IF(!m->part_end, ST_NOMEM, "model: out of memory for the part table");
    TRY(model_table_build(&m->cfg, m->layer_begin, m->layer_end, m->first, m->last, &m->tp,
                          &m->tensors, &m->splits, &m->n_tensors, &m->n_params, m->part_end));
    TRY(model_runs_build(m));
    return alloc_slots(m);
}

int model_mirrored(const model_tensor *t)
{
    return t->ndim == 1 ||
           (t->layer < 0 && (t->view == (int)offsetof(stage_params, wpe) || t->view == (int)offsetof(stage_params, wtt)));
}

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

/* The split stage's fp32 mirror: n_params floats of address space, written
 * only where model_mirrored tensors lie; the whole pages of the others are
 * made inaccessible. */
static status_t mirror_create(model_stage *m)
{
    size_t bytes = m->n_params * sizeof(float), pg = page_size();
    if (bytes == 0) bytes = pg;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    FAIL_IF(p == MAP_FAILED, ST_NOMEM, "model: cannot map %.1f MiB of address space for the fp32 mirror",
            (double)bytes / 1048576.0);
    m->params = p;
    madvise(p, bytes, MADV_NOHUGEPAGE); /* 4 KiB pages: only the mirrored tensors' pages become resident */
    uintptr_t base = (uintptr_t)p;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        if (model_mirrored(t)) continue;
        uintptr_t a = (base + t->offset * sizeof(float) + pg - 1) / pg * pg;
        uintptr_t z = (base + (t->offset + t->numel) * sizeof(float)) / pg * pg;
        if (z > a) mprotect((void *)a, z - a, PROT_NONE);
    }
    return ST_OK;
}

int model_table_read_fp32(const model_tensor *t, int first)
{
    return model_mirrored(t) || (first && t->layer < 0 && t->view == (int)offsetof(stage_params, wte));
}

int model_tensor_read_fp32(const model_stage *m, int i) { return model_table_read_fp32(&m->tensors[i], m->first); }

size_t model_stage_mirror_bytes(const model_stage *m)
{
    if (!m->cfg.bf16) return 0;
    size_t floats = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (model_mirrored(&m->tensors[i])) floats += m->tensors[i].numel;
    return floats * sizeof(float);
}

/* The buffers: params and grads the caller's (n floats each; bf16 stages:
 * the parameters as bf16 pairs hi, lo) or, when none are given, the stage's
 * own. */
static status_t stage_plan(model_stage *m, float *params, bf16 *hi, uint16_t *lo, float *grads, size_t n)
{
    TRY(stage_tables(m));
    if (params || hi) {
        FAIL_IF(!grads || n != m->n_params, ST_ERROR, "model: buffers of %zu floats given for a stage of %zu "
                "parameters", n, m->n_params);
        FAIL_IF(hi && (!lo || !m->cfg.bf16 || params), ST_ERROR,
                "model: parameters as bf16 pairs are for a bf16 stage, instead of fp32 ones");
        m->grads = grads;
        if (hi) {
            m->split = 1;
            m->wbf = hi;
            m->plo = lo;
            TRY(mirror_create(m));
        } else {
            m->params = params;
        }
    } else {
        m->owns_buffers = 1;
        m->params = alloc_touched(m->n_params);
        m->grads = alloc_touched(m->n_params);
    }
    if (m->cfg.bf16 && !m->split) {
        m->wbf = (bf16 *)alloc_touched((m->n_params + 1) / 2);
        FAIL_IF(!m->wbf, ST_NOMEM, "model: out of memory for the bf16 copy of %zu parameters", m->n_params);
    }
    m->wbf_stale = 1;
    carver cv = {0};
    carve_all(&cv, m);
    m->arena = alloc_touched(cv.used);
    m->arena_bytes = sizeof(float) * cv.used;
    FAIL_IF(!m->params || !m->grads || !m->arena, ST_NOMEM,
            "model: out of memory allocating %.1f MiB of parameters, gradients and activations "
            "(lower train.micro_batch or model sizes, or set model.recompute = ffn or true)",
            (2.0 * m->n_params + cv.used) * 4.0 / 1048576.0);
    cv = (carver){.base = m->arena};
    carve_all(&cv, m);
    TRY(model_views(m, m->params, &m->p));
    TRY(model_views(m, m->grads, &m->g));
    if (m->s.rope) rope_table(m->s.rope, m->cfg.seq_len, m->cfg.d_model / m->cfg.n_head, m->cfg.rope_theta);
    if (m->s.sin_pos) {
        sinusoidal_positions(m->s.sin_pos, m->cfg.max_positions, m->cfg.d_model);
        m->p.wpe = m->s.sin_pos;
        m->g.wpe = NULL;
    }
    return ST_OK;
}

status_t model_tp_check(const model_config *cfg, int size)
{
    FAIL_IF(size < 1, ST_CONFIG, "dist.tp = %d (expected >= 1)", size);
    FAIL_IF(cfg->family == MODEL_LLAMA && cfg->n_kv_head % size != 0, ST_CONFIG,
            "dist.tp = %d does not divide model.n_kv_head = %d (each tensor-parallel rank takes n_kv_head / tp "
            "key/value heads with their query heads); choose a dist.tp that divides model.n_kv_head", size,
            cfg->n_kv_head);
    FAIL_IF(cfg->n_head % size != 0, ST_CONFIG,
            "dist.tp = %d does not divide model.n_head = %d (each tensor-parallel rank takes n_head / tp "
            "heads); choose a dist.tp that divides model.n_head", size, cfg->n_head);
    FAIL_IF(cfg->d_ff % size != 0, ST_CONFIG,
            "dist.tp = %d does not divide model.d_ff = %d (each tensor-parallel rank takes d_ff / tp rows "
            "of the FFN); choose a dist.tp that divides model.d_ff", size, cfg->d_ff);
    return ST_OK;
}

/* The tensor-parallel widths of rank tp->rank. */
static status_t stage_set_tp(model_stage *m, const model_tp *tp)
{
    m->tp = tp ? *tp : (model_tp){.size = 1};
    const model_config *c = &m->cfg;
    int t = m->tp.size;
    TRY(model_tp_check(c, t));
    FAIL_IF(m->tp.rank < 0 || m->tp.rank >= t, ST_CONFIG, "model: tensor-parallel rank %d outside [0, %d)",
            m->tp.rank, t);
    FAIL_IF(t > 1 && (!m->tp.allreduce_sum || !m->tp.allreduce_max), ST_CONFIG,
            "model: a tensor-parallel stage (tp = %d) needs the group's reductions", t);
    m->Cl = c->d_model / t;
    m->NHl = c->n_head / t;
    m->Fl = c->d_ff / t;
    m->nh = (size_t)m->B * c->seq_len * m->Fl;
    m->NKVl = model_kv_heads(c) / t;
    m->KVl = m->NKVl * (c->d_model / c->n_head);
    m->Wqkv = m->Cl + 2 * m->KVl;
    if (c->family == MODEL_LLAMA) m->nh *= 2; /* fch holds gate | up */
    if (t > 1 && m->tp.grid_p > 0) {
        FAIL_IF(m->tp.grid_p * m->tp.grid_q != t || m->tp.block < 1 || !m->tp.gemm || !m->tp.gather, ST_CONFIG,
                "model: a 2d tensor-parallel stage needs a grid of dist.tp = %d ranks (found %d x %d), a block size "
                "(found %d) and the grid's GEMM and gather", t, m->tp.grid_p, m->tp.grid_q, m->tp.block);
        int lr, lc;
        model_dmat_local(&m->tp, m->B * c->seq_len, c->d_ff, &lr, &lc);
        m->nh = (size_t)lr * lc;
        FAIL_IF(c->family == MODEL_LLAMA, ST_CONFIG,
                "dist.tp_mode = 2d with model.family = llama: the 2d FFN is GELU's two linears, not SwiGLU's "
                "three; set dist.tp_mode = 1d");
        FAIL_IF(c->bf16, ST_CONFIG,
                "train.precision = bf16 with dist.tp_mode = 2d: the 2d FFN multiplies over ScaLAPACK, which has "
                "no bf16 GEMM; set train.precision = fp32, or dist.tp_mode = 1d to train in bf16");
        FAIL_IF(model_remakes_ffn(c), ST_CONFIG,
                "model.recompute = %s with dist.tp_mode = 2d: the 2d FFN keeps its distributed pre-activation; "
                "set model.recompute = attention, true or false, or dist.tp_mode = 1d",
                model_recompute_name(c->recompute));
    } else {
        m->tp.grid_p = m->tp.grid_q = 0;
    }
    m->Vl = (c->vocab_size + t - 1) / t;
    m->v0 = m->tp.rank * m->Vl;
    m->nv = c->vocab_size - m->v0 < m->Vl ? c->vocab_size - m->v0 : m->Vl;
    if (m->nv < 0) m->nv = 0;
    return ST_OK;
}

status_t model_stage_create(model_stage **out, const model_config *cfg, int layer_begin,
                            int layer_end, int B, int n_slots)
{
    return model_stage_create_tp(out, cfg, layer_begin, layer_end, B, n_slots, NULL);
}

/* A stage record with its shapes and split set, no buffers yet. */
static status_t stage_new(model_stage **out, const model_config *cfg, int layer_begin, int layer_end, int B,
                          int n_slots, const model_tp *tp)
{
    *out = NULL;
    TRY(model_config_check(cfg));
    FAIL_IF(layer_begin < 0 || layer_end > cfg->n_layer || layer_begin > layer_end, ST_CONFIG,
            "model: layer range [%d, %d) is outside [0, %d)", layer_begin, layer_end, cfg->n_layer);
    FAIL_IF(B < 1 || n_slots < 1, ST_CONFIG, "model: micro-batch %d and slots %d must be >= 1", B, n_slots);
    model_stage *m = calloc(1, sizeof *m);
    FAIL_IF(!m, ST_NOMEM, "model: out of memory");
    *out = m;
    m->cfg = *cfg;
    m->layer_begin = layer_begin;
    m->layer_end = layer_end;
    m->n_local = layer_end - layer_begin;
    m->B = B;
    m->n_slots = n_slots;
    m->first = layer_begin == 0;
    m->last = layer_end == cfg->n_layer;
    return stage_set_tp(m, tp);
}

status_t model_stage_create_tp(model_stage **out, const model_config *cfg, int layer_begin,
                               int layer_end, int B, int n_slots, const model_tp *tp)
{
    return model_stage_create_over(out, cfg, layer_begin, layer_end, B, n_slots, tp, NULL, NULL, NULL, NULL, 0);
}

status_t model_stage_create_over(model_stage **out, const model_config *cfg, int layer_begin, int layer_end, int B,
                                 int n_slots, const model_tp *tp, float *params, bf16 *hi, uint16_t *lo,
                                 float *grads, size_t n)
{
    model_stage *m;
    status_t st = stage_new(&m, cfg, layer_begin, layer_end, B, n_slots, tp);
    if (st == ST_OK) st = stage_plan(m, params, hi, lo, grads, n);
    if (st != ST_OK) {
        model_stage_free(m);
        return st;
    }
    *out = m;
    return ST_OK;
}

status_t model_stage_plan_memory(const model_config *cfg, int layer_begin, int layer_end, int B, int n_slots,
                                 const model_tp *tp, model_stage_memory *out)
{
    model_stage *m;
    status_t st = stage_new(&m, cfg, layer_begin, layer_end, B, n_slots, tp);
    if (st == ST_OK) st = stage_tables(m);
    if (st == ST_OK) {
        carver cv = {0};
        carve_all(&cv, m); /* the counting pass of stage_plan */
        *out = (model_stage_memory){.n_params = m->n_params,
                                    .params = sizeof(float) * m->n_params,
                                    .grads = sizeof(float) * m->n_params,
                                    .params_bf16 = m->cfg.bf16 ? sizeof(bf16) * m->n_params : 0,
                                    .activations = sizeof(float) * cv.used,
                                    .params_mirror = model_stage_mirror_bytes(m)};
    }
    model_stage_free(m);
    return st;
}

void model_stage_free(model_stage *m)
{
    if (!m) return;
    for (int i = 0; m->slots && i < m->n_slots; i++) {
        free(m->slots[i].xs);
        free(m->slots[i].blocks);
    }
    free(m->slots);
    free(m->p.blocks);
    free(m->g.blocks);
    free(m->tensors);
    free(m->part_end);
    free(m->splits);
    free(m->full_tensors);
    free(m->runs);
    free(m->run_at);
    if (m->owns_buffers) {
        free(m->params);
        free(m->grads);
    }
    if (m->split && m->params) munmap(m->params, m->n_params ? m->n_params * sizeof(float) : page_size());
    if (!m->split) free(m->wbf);
    free(m->arena);
    free(m);
}

const model_tp *model_stage_tp(const model_stage *m) { return &m->tp; }
int model_stage_first(const model_stage *m) { return m->first; }
int model_stage_last(const model_stage *m) { return m->last; }
const model_config *model_stage_config(const model_stage *m) { return &m->cfg; }
int model_stage_batch(const model_stage *m) { return m->B; }
float *model_params(model_stage *m)
{
    m->wbf_stale = 1;
    return m->split ? NULL : m->params;
}
float *model_grads(model_stage *m) { return m->grads; }
void model_params_changed(model_stage *m) { m->wbf_stale = 1; }
size_t model_stage_arena_bytes(const model_stage *m) { return m->arena_bytes; }
size_t model_n_params(const model_stage *m) { return m->n_params; }
int model_n_tensors(const model_stage *m) { return m->n_tensors; }
const model_tensor *model_tensor_at(const model_stage *m, int i) { return &m->tensors[i]; }

const model_tensor *model_tensor_find(const model_stage *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

float *model_stage_input(model_stage *m, int slot) { return m->slots[slot].xs[0]; }
float *model_stage_output(model_stage *m, int slot) { return m->slots[slot].xs[m->n_local]; }
float *model_stage_dinput(model_stage *m, int slot) { return m->slots[slot].dinput; }
float *model_stage_doutput(model_stage *m, int slot) { return m->slots[slot].doutput; }

/* ---- initialisation ---------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int is_layernorm(const char *name)
{
    return strstr(name, "LayerNorm") || strstr(name, "ln_") || strstr(name, "layernorm") ||
           strcmp(name, "model.norm.weight") == 0;
}

void model_init_params(model_stage *m, uint64_t seed) { model_init_params_into(m, seed, m->params); }

void model_init_params_into(model_stage *m, uint64_t seed, float *params)
{
    rng_key key = rng_key_make(seed, RNG_INIT);
    m->wbf_stale = 1;
    float std_resid = 0.02f / sqrtf(2.0f * (float)m->cfg.n_layer);
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        float *p = params + t->offset;
        if (t->ndim == 2) {
            /* the stream is the name's hash and a slice draws the values of
             * its place in the whole tensor: the same tensor gets the same
             * values in whatever stage and tensor-parallel split it lives */
            uint64_t stream = hash_xxh3(t->name, strlen(t->name));
            int resid = m->cfg.family == MODEL_GPT && ends_with(t->name, "c_proj.weight");
            const model_run *runs;
            int n = model_stage_runs(m, i, &runs);
            for (int k = 0; k < n; k++)
                rng_fill_normal_at(key, stream, resid ? std_resid : 0.02f, runs[k].full - m->full_tensors[i].offset,
                                   params + runs[k].local, runs[k].len);
        } else {
            float v = is_layernorm(t->name) && ends_with(t->name, "weight") ? 1.0f : 0.0f;
            for (size_t j = 0; j < t->numel; j++) p[j] = v;
        }
    }
}

/* ---- forward and backward of a stage ------------------------------------------ */

dropout_site model_dropout(const model_stage *m, const model_pass *pass, int layer, int site)
{
    dropout_site d = {0};
    if (!pass->train || m->cfg.dropout <= 0.0f) return d;
    d.key = rng_key_make(pass->seed, RNG_DROPOUT);
    d.stream = (pass->sample0 << 20) | ((uint64_t)(layer + 1) << 4) | (uint64_t)site;
    d.p = m->cfg.dropout;
    d.head0 = m->tp.rank * m->NHl; /* attention masks are keyed by the global head */
    d.n_head = m->cfg.n_head;
    return d;
}

enum { SITE_EMB = 0 };

static status_t check_ids(const model_stage *m, const batch *b)
{
    size_t N = (size_t)m->B * m->cfg.seq_len;
    FAIL_IF(b->B != m->B || b->T != m->cfg.seq_len, ST_ERROR,
            "model: batch is %dx%d, the stage was planned for %dx%d", b->B, b->T, m->B, m->cfg.seq_len);
    for (size_t i = 0; i < N; i++) {
        FAIL_IF(b->input_ids[i] < 0 || b->input_ids[i] >= m->cfg.vocab_size, ST_FORMAT,
                "model: token id %d at sample %zu position %zu is outside the vocabulary [0, %d) "
                "(the dataset's vocabulary does not match model.vocab_size)",
                b->input_ids[i], i / m->cfg.seq_len, i % m->cfg.seq_len, m->cfg.vocab_size);
        FAIL_IF(m->cfg.family == MODEL_BERT && (b->token_type_ids[i] < 0 || b->token_type_ids[i] > 1),
                ST_FORMAT, "model: token type %d at position %zu (expected 0 or 1)", b->token_type_ids[i], i);
    }
    return ST_OK;
}

/* out (N,C) = word + position (+ type) embeddings. Vocab-parallel: each
 * rank looks up the ids of its slice (zeros for the others) and the group
 * sums, so every rank holds the whole embedding. */
static status_t embed_lookup(model_stage *m, float *out, const batch *b)
{
    const model_config *c = &m->cfg;
    const int32_t *types = c->family == MODEL_BERT ? b->token_type_ids : NULL;
    const float *wtt = c->family == MODEL_BERT ? m->p.wtt : NULL;
    int N = m->B * c->seq_len;
    if (m->split) { /* the word rows joined from the pairs (the mirror does not hold them) */
        size_t off = (size_t)(m->p.wte - m->params);
        embedding_slice_forward_split(out, b->input_ids, m->wbf + off, m->plo + off, m->v0, m->nv, N, c->d_model);
    } else if (m->tp.size == 1) {
        embedding_forward(out, b->input_ids, types, m->p.wte, m->p.wpe, wtt, m->B, c->seq_len, c->d_model);
        return ST_OK;
    } else {
        embedding_slice_forward(out, b->input_ids, m->p.wte, m->v0, m->nv, N, c->d_model);
    }
    if (m->tp.size > 1) TRY(model_tp_sum(m, out, (size_t)N * c->d_model));
    embedding_add_positions(out, types, m->p.wpe, wtt, m->B, c->seq_len, c->d_model);
    return ST_OK;
}

static status_t embed_forward(model_stage *m, slot_acts *s, const batch *b, const model_pass *pass)
{
    const model_config *c = &m->cfg;
    size_t N = (size_t)m->B * c->seq_len;
    float *x0 = s->xs[0];
    if (c->family == MODEL_BERT) {
        TRY(embed_lookup(m, s->emb_sum, b));
        layernorm_forward(x0, s->emb_mean, s->emb_rstd, s->emb_sum, m->p.emb_ln_w,
                          m->p.emb_ln_b, (int)N, c->d_model, 1e-12f);
    } else {
        TRY(embed_lookup(m, x0, b));
    }
    dropout_forward(x0, x0, N * c->d_model, model_dropout(m, pass, -1, SITE_EMB));
    return ST_OK;
}

static void embed_backward(model_stage *m, slot_acts *s, float *dx, const batch *b,
                           const model_pass *pass)
{
    const model_config *c = &m->cfg;
    size_t N = (size_t)m->B * c->seq_len;
    dropout_backward(dx, dx, N * c->d_model, model_dropout(m, pass, -1, SITE_EMB));
    float *demb = dx;
    if (c->family == MODEL_BERT) {
        demb = m->s.dA;
        memset(demb, 0, N * c->d_model * sizeof(float));
        layernorm_backward(demb, m->g.emb_ln_w, m->g.emb_ln_b, dx, s->emb_sum, m->p.emb_ln_w,
                           s->emb_mean, s->emb_rstd, (int)N, c->d_model);
    }
    int split = m->tp.size > 1;
    embedding_backward(split ? NULL : m->g.wte, m->g.wpe, m->g.wtt, demb, b->input_ids, b->token_type_ids,
                       m->B, c->seq_len, c->d_model);
    if (split) embedding_slice_backward(m->g.wte, demb, b->input_ids, m->v0, m->nv, (int)N, c->d_model);
}

status_t model_forward(model_stage *m, int slot, const batch *b, const model_pass *pass,
                       model_losses *losses)
{
    FAIL_IF(slot < 0 || slot >= m->n_slots, ST_ERROR, "model: slot %d outside [0, %d)", slot, m->n_slots);
    FAIL_IF(pass->logits && m->tp.size > 1, ST_USAGE,
            "model: the full logits of a tensor-parallel stage (tp = %d) are never gathered; evaluate "
            "logits on an unsplit stage", m->tp.size);
    slot_acts *s = &m->slots[slot];
    model_stage_sync_bf16(m);
    if (m->first) {
        TRY(check_ids(m, b));
        TRY(embed_forward(m, s, b, pass));
    }
    for (int i = 0; i < m->n_local; i++)
        TRY(model_block_forward(m, m->layer_begin + i, &m->p.blocks[i], &s->blocks[i], s->xs[i], b, pass));
    if (m->last && !(pass->defer_head && pass->train)) TRY(model_head(m, slot, b, pass, losses));
    return ST_OK;
}

status_t model_head(model_stage *m, int slot, const batch *b, const model_pass *pass,
                    model_losses *losses)
{
    FAIL_IF(!m->last, ST_ERROR, "model: model_head on a stage without the heads (layers [%d, %d) of %d)",
            m->layer_begin, m->layer_end, m->cfg.n_layer);
    FAIL_IF(slot < 0 || slot >= m->n_slots, ST_ERROR, "model: slot %d outside [0, %d)", slot, m->n_slots);
    model_stage_sync_bf16(m);
    TRY(model_head_forward(m, slot, b, pass, losses));
    /* with rows held (pass->head_dw_wait) the heads' gradients are complete
       only after model_head_flush, which reports them */
    if (pass->train && !m->s.head_fill) model_part_done(m, pass, m->n_local + 1);
    return ST_OK;
}

status_t model_backward(model_stage *m, int slot, const batch *b, const model_pass *pass)
{
    FAIL_IF(slot < 0 || slot >= m->n_slots, ST_ERROR, "model: slot %d outside [0, %d)", slot, m->n_slots);
    slot_acts *s = &m->slots[slot];
    model_stage_sync_bf16(m);
    /* the gradient flows backward through one buffer, updated in place */
    float *dx = s->doutput;
    for (int i = m->n_local - 1; i >= 0; i--) {
        if (m->cfg.recompute == RECOMPUTE_FULL)
            TRY(model_block_forward(m, m->layer_begin + i, &m->p.blocks[i], &s->blocks[i], s->xs[i], b, pass));
        TRY(model_block_backward(m, m->layer_begin + i, &m->p.blocks[i], &m->g.blocks[i], &s->blocks[i],
                           s->xs[i], dx, b, pass));
        model_part_done(m, pass, 1 + i);
    }
    if (m->first) {
        embed_backward(m, s, dx, b, pass);
        model_part_done(m, pass, 0);
    }
    return ST_OK;
}

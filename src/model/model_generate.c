/* model/generate — GPT and Llama decoding with a key/value cache: one
 * position per call through every block (pre-norm), attention of the new
 * query over the cached keys and values, the LM head. The cache holds the
 * model's key/value heads only: n_kv_head of them for a grouped-query Llama
 * (query head h reads kv head h / (n_head / n_kv_head)), so it is
 * n_head / n_kv_head times smaller than a cache of every query head's keys.
 * Buffers planned at creation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

struct model_decoder {
    model_stage *m;
    int max_len, len;
    uint64_t work;      /* position-passes through the blocks */
    int KV;             /* key (and value) width: n_kv_head * head size (GPT: C) */
    float *kv;          /* (L, max_len, 2 KV): keys then values of each position */
    float *rope;        /* Llama: (max_len, hs) RoPE's cos | sin */
    float *x, *h, *qkv, *att, *y, *f, *tmp, *logits, *scores, stat[2];
};

status_t model_decoder_create(model_decoder **out, model_stage *m, int max_len)
{
    const model_config *c = &m->cfg;
    FAIL_IF(!model_causal(c) || !m->first || !m->last || !c->pre_ln || m->tp.size > 1, ST_USAGE,
            "generate: needs a whole pre-LN GPT or Llama model (this one is %s)",
            !model_causal(c) ? "BERT" : !c->pre_ln ? "post-LN" : m->tp.size > 1 ? "tensor-parallel" :
            "a pipeline stage");
    if (max_len > c->max_positions) max_len = c->max_positions;
    model_decoder *d = calloc(1, sizeof *d);
    FAIL_IF(!d, ST_NOMEM, "generate: out of memory");
    size_t C = c->d_model, hs = C / (size_t)c->n_head;
    int llama = c->family == MODEL_LLAMA;
    d->m = m;
    d->max_len = max_len;
    d->KV = model_kv_heads(c) * (int)hs;
    d->kv = calloc((size_t)c->n_layer * max_len * 2 * d->KV, sizeof(float));
    d->rope = llama ? calloc((size_t)max_len * hs, sizeof(float)) : NULL;
    d->x = calloc(C, sizeof(float));
    d->h = calloc(C, sizeof(float));
    d->qkv = calloc(C + 2 * (size_t)d->KV, sizeof(float));
    d->att = calloc(C, sizeof(float));
    d->y = calloc(C, sizeof(float));
    d->f = calloc((size_t)(llama ? 2 : 1) * c->d_ff, sizeof(float)); /* Llama: gate | up */
    d->tmp = calloc((size_t)c->d_ff, sizeof(float));
    d->logits = calloc((size_t)c->vocab_size, sizeof(float));
    d->scores = calloc((size_t)max_len, sizeof(float));
    if (!d->kv || !d->x || !d->h || !d->qkv || !d->att || !d->y || !d->f || !d->tmp || !d->logits || !d->scores ||
        (llama && !d->rope)) {
        model_decoder_free(d);
        return st_fail(ST_NOMEM, "generate: out of memory for a cache of %d positions", max_len);
    }
    if (llama) rope_table(d->rope, max_len, (int)hs, c->rope_theta);
    *out = d;
    return ST_OK;
}

void model_decoder_free(model_decoder *d)
{
    if (!d) return;
    free(d->kv);
    free(d->rope);
    free(d->x);
    free(d->h);
    free(d->qkv);
    free(d->att);
    free(d->y);
    free(d->f);
    free(d->tmp);
    free(d->logits);
    free(d->scores);
    free(d);
}

uint64_t model_decoder_work(const model_decoder *d) { return d->work; }
size_t model_decoder_cache_floats(const model_decoder *d)
{
    return (size_t)d->m->cfg.n_layer * d->max_len * 2 * d->KV;
}

/* Attention of the new query (in qkv) over positions 0..t of layer l's
 * cache; query head h reads kv head h / group. */
static void attend(model_decoder *d, const float *cache, int t)
{
    const model_config *c = &d->m->cfg;
    int C = c->d_model, hs = C / c->n_head, KV = d->KV, group = c->n_head / model_kv_heads(c);
    float scale = 1.0f / sqrtf((float)hs);
    for (int h = 0; h < c->n_head; h++) {
        const float *q = d->qkv + h * hs;
        int kvh = h / group;
        float mx = -INFINITY, sum = 0.0f;
        for (int j = 0; j <= t; j++) {
            const float *k = cache + (size_t)j * 2 * KV + kvh * hs;
            float s = 0.0f;
            for (int i = 0; i < hs; i++) s += q[i] * k[i];
            d->scores[j] = s * scale;
            mx = d->scores[j] > mx ? d->scores[j] : mx;
        }
        for (int j = 0; j <= t; j++) {
            d->scores[j] = expf(d->scores[j] - mx);
            sum += d->scores[j];
        }
        float *o = d->att + h * hs;
        memset(o, 0, (size_t)hs * sizeof(float));
        for (int j = 0; j <= t; j++) {
            const float *v = cache + (size_t)j * 2 * KV + KV + kvh * hs;
            float p = d->scores[j] / sum;
            for (int i = 0; i < hs; i++) o[i] += p * v[i];
        }
    }
}

/* A Llama block at position t: RMSNorm, q | k | v, RoPE at t, the new k and
 * v into the cache, attention, o_proj; RMSNorm, SwiGLU. */
static void llama_block_step(model_decoder *d, int l, const block_params *p, int t)
{
    const model_config *c = &d->m->cfg;
    int C = c->d_model, F = c->d_ff, KV = d->KV, W = C + 2 * KV, hs = C / c->n_head;
    float *cache = d->kv + (size_t)l * d->max_len * 2 * KV;
    rmsnorm_forward(d->h, &d->stat[0], d->x, p->ln1_w, 1, C, c->norm_eps);
    linear_forward(d->qkv, W, d->h, p->qkv_w, NULL, W_OUT_IN, 1, C, W);
    /* one row: rope_forward's position is row % 1 = 0 of the table row t */
    rope_forward(d->qkv, W, 1, 1, c->n_head, hs, d->rope + (size_t)t * hs);
    rope_forward(d->qkv + C, W, 1, 1, model_kv_heads(c), hs, d->rope + (size_t)t * hs);
    memcpy(cache + (size_t)t * 2 * KV, d->qkv + C, 2 * (size_t)KV * sizeof(float));
    attend(d, cache, t);
    linear_forward(d->y, C, d->att, p->proj_w, NULL, W_OUT_IN, 1, C, C);
    for (int i = 0; i < C; i++) d->x[i] += d->y[i];
    rmsnorm_forward(d->h, &d->stat[0], d->x, p->ln2_w, 1, C, c->norm_eps);
    linear_forward(d->f, 2 * F, d->h, p->fc_w, NULL, W_OUT_IN, 1, C, 2 * F);
    swiglu_forward(d->tmp, F, d->f, d->f + F, 2 * F, 1, F);
    linear_forward(d->y, C, d->tmp, p->fc2_w, NULL, W_OUT_IN, 1, F, C);
    for (int i = 0; i < C; i++) d->x[i] += d->y[i];
}

static void block_step(model_decoder *d, int l, const block_params *p, int t)
{
    const model_config *c = &d->m->cfg;
    int C = c->d_model, F = c->d_ff;
    float *cache = d->kv + (size_t)l * d->max_len * 2 * C;
    layernorm_forward(d->h, &d->stat[0], &d->stat[1], d->x, p->ln1_w, p->ln1_b, 1, C, 1e-5f);
    linear_forward(d->qkv, 3 * C, d->h, p->qkv_w, p->qkv_b, W_IN_OUT, 1, C, 3 * C);
    memcpy(cache + (size_t)t * 2 * C, d->qkv + C, 2 * (size_t)C * sizeof(float));
    attend(d, cache, t);
    linear_forward(d->y, C, d->att, p->proj_w, p->proj_b, W_IN_OUT, 1, C, C);
    for (int i = 0; i < C; i++) d->x[i] += d->y[i];
    layernorm_forward(d->h, &d->stat[0], &d->stat[1], d->x, p->ln2_w, p->ln2_b, 1, C, 1e-5f);
    linear_forward(d->f, F, d->h, p->fc_w, p->fc_b, W_IN_OUT, 1, C, F);
    gelu_forward(d->tmp, d->f, (size_t)F, GELU_TANH);
    linear_forward(d->y, C, d->tmp, p->fc2_w, p->fc2_b, W_IN_OUT, 1, F, C);
    for (int i = 0; i < C; i++) d->x[i] += d->y[i];
}

status_t model_decoder_step(model_decoder *d, int32_t id, const float **logits)
{
    model_stage *m = d->m;
    const model_config *c = &m->cfg;
    int C = c->d_model, t = d->len;
    FAIL_IF(t >= d->max_len, ST_USAGE, "generate: the sequence reached %d tokens, the model's limit "
            "(model.max_positions or --max-tokens)", d->max_len);
    FAIL_IF(id < 0 || id >= c->vocab_size, ST_USAGE, "generate: token id %d outside the vocabulary [0, %d)", id,
            c->vocab_size);
    if (c->family == MODEL_LLAMA) {
        memcpy(d->x, m->p.wte + (size_t)id * C, (size_t)C * sizeof(float));
        for (int l = 0; l < m->n_local; l++) llama_block_step(d, l, &m->p.blocks[l], t);
        rmsnorm_forward(d->h, &d->stat[0], d->x, m->p.lnf_w, 1, C, c->norm_eps);
    } else {
        for (int i = 0; i < C; i++) d->x[i] = m->p.wte[(size_t)id * C + i] + m->p.wpe[(size_t)t * C + i];
        for (int l = 0; l < m->n_local; l++) block_step(d, l, &m->p.blocks[l], t);
        layernorm_forward(d->h, &d->stat[0], &d->stat[1], d->x, m->p.lnf_w, m->p.lnf_b, 1, C, 1e-5f);
    }
    d->work++;
    const float *head = model_tied(c) ? m->p.wte : m->p.lm_head;
    linear_forward(d->logits, c->vocab_size, d->h, head, NULL, W_OUT_IN, 1, C, c->vocab_size);
    d->len++;
    *logits = d->logits;
    return ST_OK;
}

/* Sorts indices by probability, descending (qsort context through a static:
 * generation is single-threaded). */
static const float *sort_p;
static int by_prob(const void *a, const void *b)
{
    float pa = sort_p[*(const int32_t *)a], pb = sort_p[*(const int32_t *)b];
    return pa < pb ? 1 : pa > pb ? -1 : (*(const int32_t *)a > *(const int32_t *)b) - (*(const int32_t *)a < *(const int32_t *)b);
}

int32_t model_sample(const float *logits, int V, const sample_params *sp, uint64_t step, float *p, int32_t *idx)
{
    int32_t best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    if (sp->temperature <= 0.0f) return best;
    double sum = 0.0;
    for (int v = 0; v < V; v++) {
        p[v] = expf((logits[v] - logits[best]) / sp->temperature);
        sum += p[v];
        idx[v] = v;
    }
    for (int v = 0; v < V; v++) p[v] = (float)(p[v] / sum);
    sort_p = p;
    qsort(idx, (size_t)V, sizeof *idx, by_prob);
    int keep = sp->top_k > 0 && sp->top_k < V ? sp->top_k : V;
    double mass = 0.0;
    for (int i = 0; i < keep; i++) {
        mass += p[idx[i]];
        if (sp->top_p < 1.0f && mass >= sp->top_p) {
            keep = i + 1;
            break;
        }
    }
    double kept = 0.0;
    for (int i = 0; i < keep; i++) kept += p[idx[i]];
    uint32_t bits[4];
    rng_bits(rng_key_make(sp->seed, RNG_SAMPLE), step, 0, 0, bits);
    double u = rng_uniform(bits[0]) * kept, acc = 0.0;
    for (int i = 0; i < keep; i++) {
        acc += p[idx[i]];
        if (u < acc) return idx[i];
    }
    return idx[keep - 1];
}

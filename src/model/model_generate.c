/* model/generate — GPT decoding with a key/value cache: one position per
 * call through every block (pre-LN), attention of the new query over the
 * cached keys and values, the tied LM head. Buffers planned at creation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

struct model_decoder {
    model_stage *m;
    int max_len, len;
    uint64_t work;      /* position-passes through the blocks */
    float *kv;          /* (L, max_len, 2C): keys then values of each position */
    float *x, *h, *qkv, *att, *y, *f, *tmp, *logits, *scores, stat[2];
};

status_t model_decoder_create(model_decoder **out, model_stage *m, int max_len)
{
    const model_config *c = &m->cfg;
    FAIL_IF(c->family != MODEL_GPT || !m->first || !m->last || !c->pre_ln || m->tp.size > 1, ST_USAGE,
            "generate: needs a whole pre-LN GPT model (this one is %s)",
            c->family == MODEL_LLAMA ? "llama: generation is not implemented for it yet" :
            c->family != MODEL_GPT ? "BERT" : !c->pre_ln ? "post-LN" : m->tp.size > 1 ? "tensor-parallel" :
            "a pipeline stage");
    if (max_len > c->max_positions) max_len = c->max_positions;
    model_decoder *d = calloc(1, sizeof *d);
    FAIL_IF(!d, ST_NOMEM, "generate: out of memory");
    size_t C = c->d_model;
    d->m = m;
    d->max_len = max_len;
    d->kv = calloc((size_t)c->n_layer * max_len * 2 * C, sizeof(float));
    d->x = calloc(C, sizeof(float));
    d->h = calloc(C, sizeof(float));
    d->qkv = calloc(3 * C, sizeof(float));
    d->att = calloc(C, sizeof(float));
    d->y = calloc(C, sizeof(float));
    d->f = calloc((size_t)c->d_ff, sizeof(float));
    d->tmp = calloc((size_t)c->d_ff, sizeof(float));
    d->logits = calloc((size_t)c->vocab_size, sizeof(float));
    d->scores = calloc((size_t)max_len, sizeof(float));
    if (!d->kv || !d->x || !d->h || !d->qkv || !d->att || !d->y || !d->f || !d->tmp || !d->logits || !d->scores) {
        model_decoder_free(d);
        return st_fail(ST_NOMEM, "generate: out of memory for a cache of %d positions", max_len);
    }
    *out = d;
    return ST_OK;
}

void model_decoder_free(model_decoder *d)
{
    if (!d) return;
    free(d->kv);
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

/* Attention of the new query (in qkv) over positions 0..t of layer l's cache. */
static void attend(model_decoder *d, const float *cache, int t)
{
    const model_config *c = &d->m->cfg;
    int C = c->d_model, hs = C / c->n_head;
    float scale = 1.0f / sqrtf((float)hs);
    for (int h = 0; h < c->n_head; h++) {
        const float *q = d->qkv + h * hs;
        float mx = -INFINITY, sum = 0.0f;
        for (int j = 0; j <= t; j++) {
            const float *k = cache + (size_t)j * 2 * C + h * hs;
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
            const float *v = cache + (size_t)j * 2 * C + C + h * hs;
            float p = d->scores[j] / sum;
            for (int i = 0; i < hs; i++) o[i] += p * v[i];
        }
    }
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
    for (int i = 0; i < C; i++) d->x[i] = m->p.wte[(size_t)id * C + i] + m->p.wpe[(size_t)t * C + i];
    for (int l = 0; l < m->n_local; l++) block_step(d, l, &m->p.blocks[l], t);
    d->work++;
    layernorm_forward(d->h, &d->stat[0], &d->stat[1], d->x, m->p.lnf_w, m->p.lnf_b, 1, C, 1e-5f);
    linear_forward(d->logits, c->vocab_size, d->h, m->p.wte, NULL, W_OUT_IN, 1, C, c->vocab_size);
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

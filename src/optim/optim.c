/* optim — AdamW (torch.optim.AdamW), schedules, clipping. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/bigmem.h"
#include "optim/optim.h"
#include "tensor/bf16.h"

double optim_lr(const optim_config *c, int64_t t)
{
    if (c->warmup_steps > 0 && t <= c->warmup_steps) return c->lr * (double)t / (double)c->warmup_steps;
    int64_t span = c->total_steps - c->warmup_steps;
    double p = (double)(t - c->warmup_steps) / (double)(span > 1 ? span : 1);
    p = p < 0.0 ? 0.0 : p > 1.0 ? 1.0 : p;
    if (c->decay == DECAY_LINEAR) return c->lr + (c->min_lr - c->lr) * p;
    return c->min_lr + (c->lr - c->min_lr) * 0.5 * (1.0 + cos(M_PI * p));
}

double optim_sum_squares(const float *g, size_t n)
{
    enum { BLOCKS = 64 };
    double part[BLOCKS] = {0};
    size_t per = (n + BLOCKS - 1) / BLOCKS;
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < BLOCKS; b++) {
        size_t i0 = (size_t)b * per, i1 = i0 + per < n ? i0 + per : n;
        double s = 0.0; /* omp simd: several partial sums, not one latency-bound chain */
        #pragma omp simd reduction(+ : s)
        for (size_t i = i0; i < i1; i++) s += (double)g[i] * g[i];
        part[b] = s;
    }
    double s = 0.0;
    for (int b = 0; b < BLOCKS; b++) s += part[b];
    return s;
}

int optim_all_finite(const float *x, size_t n)
{
    uint32_t worst = 0;
    #pragma omp simd reduction(max : worst)
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, x + i, sizeof bits);
        bits &= 0x7fffffffu;
        worst = bits > worst ? bits : worst;
    }
    return worst < 0x7f800000u;
}

float optim_clip_factor(const optim_config *c, double norm)
{
    if (c->clip <= 0.0) return 1.0f;
    double coef = c->clip / (norm + 1e-6);
    return coef < 1.0 ? (float)coef : 1.0f;
}

/* The update's constants for step t. */
typedef struct adamw_k {
    float b1, b2, eps, step, sqrt_bc2, shrink;
} adamw_k;

static adamw_k adamw_constants(const optim_config *c, int64_t t, double lr, int decay)
{
    double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    return (adamw_k){.b1 = (float)c->beta1, .b2 = (float)c->beta2, .eps = (float)c->eps, .step = (float)(lr / bc1),
                     .sqrt_bc2 = (float)sqrt(bc2), .shrink = decay ? (float)(1.0 - lr * c->weight_decay) : 1.0f};
}

/* One element: moments updated in place, the new parameter returned. */
static inline float adamw_one(const adamw_k *k, float p, float g, float *m, float *v)
{
    float mi = k->b1 * *m + (1.0f - k->b1) * g;
    float vi = k->b2 * *v + (1.0f - k->b2) * g * g;
    *m = mi;
    *v = vi;
    return p * k->shrink - k->step * mi / (sqrtf(vi) / k->sqrt_bc2 + k->eps);
}

void optim_adamw(const optim_config *c, int64_t t, double lr, float *p, const float *g,
                 float *m, float *v, size_t n, int decay, float grad_scale)
{
    adamw_k k = adamw_constants(c, t, lr, decay);
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) p[i] = adamw_one(&k, p[i], g[i] * grad_scale, m + i, v + i);
}

void optim_adamw_split(const optim_config *c, int64_t t, double lr, bf16 *hi, uint16_t *lo, const float *g,
                       float *m, float *v, size_t n, int decay, float grad_scale)
{
    adamw_k k = adamw_constants(c, t, lr, decay);
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        bf16_split_one(adamw_one(&k, bf16_join_one(hi[i], lo[i]), g[i] * grad_scale, m + i, v + i), hi + i, lo + i);
}

status_t optim_state_alloc(optim_state *s, size_t n, size_t ulo, size_t uhi, int split)
{
    *s = (optim_state){.n = n, .ulo = ulo, .uhi = uhi};
    FAIL_IF(ulo > uhi || uhi > n, ST_ERROR, "optim: update range [%zu, %zu) outside a stage of %zu floats", ulo, uhi,
            n);
    int ok;
    if (split) {
        s->hi = bigmem_alloc(n * sizeof(bf16));
        s->lo = bigmem_alloc(n * sizeof(uint16_t));
        ok = s->hi && s->lo;
    } else {
        s->params = bigmem_alloc(n * sizeof(float));
        ok = s->params != NULL;
    }
    s->grads = bigmem_alloc(n * sizeof(float));
    s->m = bigmem_alloc((uhi - ulo) * sizeof(float));
    s->v = bigmem_alloc((uhi - ulo) * sizeof(float));
    if (ok && s->grads && s->m && s->v) return ST_OK;
    optim_state_free(s);
    return st_fail(ST_NOMEM, "optim: out of memory for the training state (%.1f MiB of parameters, gradients and "
                   "AdamW moments); raise dist.pp, dist.tp or dist.zero, or use more nodes",
                   (2.0 * (double)n + 2.0 * (double)(uhi - ulo)) * 4.0 / 1048576.0);
}

void optim_state_free(optim_state *s)
{
    free(s->params);
    free(s->hi);
    free(s->lo);
    free(s->grads);
    free(s->m);
    free(s->v);
    *s = (optim_state){0};
}

void optim_state_get_params(const optim_state *s, size_t lo, size_t hi, float *dst)
{
    if (s->params) memcpy(dst, s->params + lo, (hi - lo) * sizeof(float));
    else bf16_join(dst, s->hi + lo, s->lo + lo, hi - lo);
}

void optim_state_set_params(optim_state *s, size_t lo, size_t hi, const float *src)
{
    if (s->params) memcpy(s->params + lo, src, (hi - lo) * sizeof(float));
    else bf16_split(s->hi + lo, s->lo + lo, src, hi - lo);
}

float *optim_state_params_staged(optim_state *s)
{
    if (s->params) return s->params;
    bf16_join(s->grads, s->hi, s->lo, s->n);
    return s->grads;
}

void optim_state_params_commit(optim_state *s)
{
    if (s->params) return;
    bf16_split(s->hi, s->lo, s->grads, s->n);
    memset(s->grads, 0, s->n * sizeof(float));
}

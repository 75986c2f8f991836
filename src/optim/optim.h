/* optim — AdamW, learning-rate schedules and global grad-norm clipping on any
 * contiguous slice of the flat parameter buffers (ZeRO hands out shards).
 *
 * Owns: the update rule and its hyper-parameters, exactly torch.optim.AdamW's
 * semantics (docs/design.md); the schedule; clipping as clip_grad_norm_.
 * Must not touch: models, MPI (callers reduce the squared norms of shards).
 */
#ifndef MPILM_OPTIM_OPTIM_H
#define MPILM_OPTIM_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

typedef enum { DECAY_LINEAR = 0, DECAY_COSINE = 1 } lr_decay;

typedef struct optim_config {
    double lr, min_lr;
    int64_t warmup_steps, total_steps;
    lr_decay decay;
    double beta1, beta2, eps, weight_decay;
    double clip;    /* 0 = no clipping */
} optim_config;

/* Learning rate of step t = 1, 2, ...: linear warm-up to lr over warmup_steps,
 * then linear or cosine decay to min_lr at total_steps. */
double optim_lr(const optim_config *c, int64_t t);

/* Sum of squares in double, deterministic (fixed blocks added in order). */
double optim_sum_squares(const float *g, size_t n);

/* 1 when every x[i] is finite (no Inf, no NaN). One read of x, vectorised:
 * an integer max over the bits without the sign (non-finite floats are the
 * ones whose exponent bits are all set). */
int optim_all_finite(const float *x, size_t n);

/* clip_grad_norm_'s factor for the global norm: min(1, clip / (norm + 1e-6)). */
float optim_clip_factor(const optim_config *c, double norm);

/* One AdamW step (t = 1, 2, ...) on n elements: g is used as g * grad_scale
 * (the clip factor); decay = 1 applies weight decay (2-D weights only). */
void optim_adamw(const optim_config *c, int64_t t, double lr, float *p, const float *g,
                 float *m, float *v, size_t n, int decay, float grad_scale);

/* The floats one rank trains: its stage's n parameters and their gradient
 * buffer (accumulated over a step's micro-batches), and the AdamW moments of
 * the floats [ulo, uhi) its optimizer updates (the whole stage, or its ZeRO
 * shard). train/ owns it (train_state); dist/ sizes it from the rank's layout
 * and binds the model's views to it; a step reads and writes it; checkpoints
 * save and restore it. */
typedef struct optim_state {
    size_t n, ulo, uhi;
    float *params, *grads; /* [n], 64-byte aligned, zeroed */
    float *m, *v;          /* [uhi - ulo], zeroed */
} optim_state;

/* Allocates the buffers, zeroed and every page touched now (the first step
 * pays no page faults). ST_NOMEM names the bytes. */
status_t optim_state_alloc(optim_state *s, size_t n, size_t ulo, size_t uhi);
void optim_state_free(optim_state *s);

#endif

/* optim — AdamW, learning-rate schedules and global grad-norm clipping on any
 * contiguous slice of the flat parameter buffers (ZeRO hands out shards).
 *
 * Owns: the update rule and its hyper-parameters, exactly torch.optim.AdamW's
 * semantics (docs/design.md); the schedule; clipping as clip_grad_norm_.
 * Must not touch: models, MPI (callers reduce the squared norms of shards).
 * Uses: tensor/bf16 (a bf16 state's parameters as bf16 pairs).
 */
#ifndef MPILM_OPTIM_OPTIM_H
#define MPILM_OPTIM_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "tensor/bf16.h"

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

/* optim_adamw on parameters held as bf16 pairs (tensor/bf16.h: hi the bf16
 * rounding the GEMMs read, lo the low bits): each is joined to its fp32
 * value, updated exactly as optim_adamw updates it, and split again, so the
 * fp32 masters are bit for bit those of optim_adamw and hi is their
 * rounding, made in the same pass. */
void optim_adamw_split(const optim_config *c, int64_t t, double lr, bf16 *hi, uint16_t *lo, const float *g,
                       float *m, float *v, size_t n, int decay, float grad_scale);

/* The floats one rank trains: its stage's n parameters and their gradient
 * buffer (accumulated over a step's micro-batches), and the AdamW moments of
 * the floats [ulo, uhi) its optimizer updates (the whole stage, or its ZeRO
 * shard). train/ owns it (train_state); dist/ sizes it from the rank's layout
 * and binds the model's views to it; a step reads and writes it; checkpoints
 * save and restore it.
 *
 * fp32 training holds the parameters as floats (params). bf16 training holds
 * the same fp32 values as bf16 pairs (hi, lo; params NULL): the same 4 bytes
 * a parameter, and hi is the bf16 copy the GEMMs read, so mixed precision
 * needs no second copy of the weights. Code that wants floats reads and
 * writes through optim_state_get_params / _set_params, or, between steps,
 * the whole stage through optim_state_params_staged / _commit. */
typedef struct optim_state {
    size_t n, ulo, uhi;
    float *params;         /* [n] fp32 training, else NULL; 64-byte aligned, zeroed */
    bf16 *hi;              /* [n] bf16 training: the parameters' bf16 rounding */
    uint16_t *lo;          /* [n] bf16 training: their low 16 bits */
    float *grads;          /* [n] */
    float *m, *v;          /* [uhi - ulo], zeroed */
} optim_state;

/* Allocates the buffers (split: parameters as bf16 pairs), zeroed and every
 * page touched now (the first step pays no page faults). ST_NOMEM names the
 * bytes. */
status_t optim_state_alloc(optim_state *s, size_t n, size_t ulo, size_t uhi, int split);
void optim_state_free(optim_state *s);

/* Parameters [lo, hi) as floats, into dst / from src. */
void optim_state_get_params(const optim_state *s, size_t lo, size_t hi, float *dst);
void optim_state_set_params(optim_state *s, size_t lo, size_t hi, const float *src);

/* Between steps only: the n parameters as floats. fp32: params itself. bf16:
 * joined into the gradient buffer (free between steps: a step clears it
 * first) and returned. After writing them, optim_state_params_commit stores
 * them back (bf16: splits them and clears the gradient buffer again). */
float *optim_state_params_staged(optim_state *s);
void optim_state_params_commit(optim_state *s);

#endif

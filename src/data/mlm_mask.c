/* data/mlm_mask — BERT's 80/10/10 masking of one token (mlm_mask.h). */
#include "base/rng.h"
#include "data/mlm_mask.h"

mlm_masking mlm_masking_make(double mask_prob, mlm_draws draws, int32_t mask_id,
                             int32_t (*random_token)(const void *ctx, uint32_t bits), const void *ctx)
{
    double scaled = mask_prob * 4294967296.0;
    return (mlm_masking){.draws = draws, .p = (float)mask_prob,
                         .choose = (uint32_t)(scaled > 4294967295.0 ? 4294967295.0 : scaled), .mask_id = mask_id,
                         .random_token = random_token, .ctx = ctx};
}

enum { ACT_MASK, ACT_RANDOM, ACT_KEEP };

void mlm_mask_token(const mlm_masking *m, const uint32_t bits[4], int32_t *id, int32_t *label)
{
    int uniform = m->draws == MLM_DRAWS_UNIFORM;
    int chosen = uniform ? rng_uniform(bits[0]) < m->p : bits[1] < m->choose;
    if (!chosen) return;
    *label = *id;
    int act;
    if (uniform) {
        float a = rng_uniform(bits[1]);
        act = a < 0.8f ? ACT_MASK : a < 0.9f ? ACT_RANDOM : ACT_KEEP;
    } else {
        uint32_t what = rng_below(bits[2], 10);
        act = what < 8 ? ACT_MASK : what == 8 ? ACT_RANDOM : ACT_KEEP;
    }
    if (act == ACT_MASK) *id = m->mask_id;
    else if (act == ACT_RANDOM) *id = m->random_token(m->ctx, bits[uniform ? 2 : 3]);
}

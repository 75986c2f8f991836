/* tests/common/fixture — settings of the PyTorch fixtures (see fixture.h). */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

static status_t need(const safet_file *f, const char *k, const char **v)
{
    *v = safet_metadata(f, k);
    FAIL_IF(!*v, ST_FORMAT, "fixture lacks metadata %s (regenerate with make reference)", k);
    return ST_OK;
}

/* The numbers of keys[] into out[] (atof). */
static status_t numbers(const safet_file *f, const char *const *keys, double *out, int n)
{
    for (int i = 0; i < n; i++) {
        const char *v;
        TRY(need(f, keys[i], &v));
        out[i] = atof(v);
    }
    return ST_OK;
}

status_t fixture_configs(const safet_file *f, model_config *c, optim_config *o)
{
    static const char *const mk[] = {"n_layer", "d_model", "n_head", "d_ff", "seq_len", "max_positions", "vocab_size"};
    static const char *const ok[] = {"lr", "min_lr", "warmup_steps", "total_steps", "beta1", "beta2", "eps",
                                     "weight_decay", "clip"};
    double m[7], p[9];
    const char *family, *decay;
    TRY(need(f, "family", &family));
    TRY(need(f, "decay", &decay));
    TRY(numbers(f, mk, m, 7));
    TRY(numbers(f, ok, p, 9));
    model_family fam = MODEL_GPT;
    FAIL_IF(model_family_parse(family, &fam) != 0, ST_FORMAT, "fixture: family %s (expected gpt, bert or llama)",
            family);
    *c = (model_config){.family = fam, .n_layer = (int)m[0],
                        .d_model = (int)m[1], .n_head = (int)m[2], .d_ff = (int)m[3], .seq_len = (int)m[4],
                        .max_positions = (int)m[5], .vocab_size = (int)m[6]};
    c->pre_ln = c->family != MODEL_BERT;
    if (c->family == MODEL_LLAMA) {
        static const char *const lk[] = {"n_kv_head", "norm_eps", "rope_theta"};
        double l[3];
        TRY(numbers(f, lk, l, 3));
        c->n_kv_head = (int)l[0];
        c->norm_eps = (float)l[1];
        c->rope_theta = (float)l[2];
    }
    *o = (optim_config){.lr = p[0], .min_lr = p[1], .warmup_steps = (int64_t)p[2], .total_steps = (int64_t)p[3],
                        .decay = strcmp(decay, "cosine") == 0 ? DECAY_COSINE : DECAY_LINEAR, .beta1 = p[4],
                        .beta2 = p[5], .eps = p[6], .weight_decay = p[7], .clip = p[8]};
    return ST_OK;
}

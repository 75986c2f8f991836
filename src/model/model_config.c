/* model/model_config — the model's configuration, its checks, and the one
 * table of its fields (model_config.h says who reads it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_config.h"

static const char *const family_names[] = {"gpt", "bert", "llama"};

const char *model_family_name(model_family f) { return family_names[f]; }

const char *model_recompute_name(int r)
{
    static const char *const names[] = {"false", "true", "ffn", "attention", "ffn+attention"};
    return names[r];
}

int model_family_parse(const char *name, model_family *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, family_names[i]) == 0) {
            *out = (model_family)i;
            return 0;
        }
    return -1;
}

/* ---- the field table ----------------------------------------------------------- */

#define NO_RANGE 1, 0
#define ALL (1u << MODEL_GPT | 1u << MODEL_BERT | 1u << MODEL_LLAMA)
#define LLAMA (1u << MODEL_LLAMA)
#define AT(field) offsetof(model_config, field)
/* config.json's key: the same in every family, or llama's only */
#define HF_ALL(name) {name, name, name}
#define HF_LLAMA(name) {NULL, NULL, name}
#define NO_HF {NULL, NULL, NULL}

const model_field model_fields[MODEL_N_FIELDS] = {
    {{"model", "family", CFG_ENUM, "gpt", "gpt|bert|llama", NO_RANGE, "model family"},
     MODEL_FIELD_FAMILY, AT(family), ALL, 1, NO_HF, 0},
    {{"model", "n_layer", CFG_INT, "4", NULL, 1, MODEL_MAX_LAYERS, "transformer blocks"},
     MODEL_FIELD_INT, AT(n_layer), ALL, 1, {"n_layer", "num_hidden_layers", "num_hidden_layers"}, 0},
    {{"model", "d_model", CFG_INT, "256", NULL, 8, MODEL_MAX_D_MODEL, "hidden size"},
     MODEL_FIELD_INT, AT(d_model), ALL, 1, {"n_embd", "hidden_size", "hidden_size"}, 0},
    {{"model", "n_head", CFG_INT, "4", NULL, 1, MODEL_MAX_HEADS, "attention heads (must divide d_model)"},
     MODEL_FIELD_INT, AT(n_head), ALL, 1, {"n_head", "num_attention_heads", "num_attention_heads"}, 0},
    /* GPT-2's n_inner may be null: 4 n_embd (import fills it in) */
    {{"model", "d_ff", CFG_INT, "1024", NULL, 1, MODEL_MAX_D_FF, "feed-forward inner size"},
     MODEL_FIELD_INT, AT(d_ff), ALL, 1, {"n_inner", "intermediate_size", "intermediate_size"}, 1u << MODEL_GPT},
    /* not Hugging Face's: the training sequence length, so import restores it */
    {{"model", "seq_len", CFG_INT, "128", NULL, 2, MODEL_MAX_POSITIONS, "tokens per training sequence"},
     MODEL_FIELD_INT, AT(seq_len), ALL, 0, HF_ALL("mpilm_seq_len"), ALL},
    {{"model", "max_positions", CFG_INT, "512", NULL, 2, MODEL_MAX_POSITIONS,
      "rows of the position table (>= seq_len)"},
     MODEL_FIELD_INT, AT(max_positions), ALL, 1,
     {"n_positions", "max_position_embeddings", "max_position_embeddings"}, 0},
    {{"model", "vocab_size", CFG_INT, "8192", "auto", 8, MODEL_MAX_VOCAB,
      "vocabulary size; auto = the dataset's, rounded up to a multiple of 64"},
     MODEL_FIELD_INT, AT(vocab_size), ALL, 1, HF_ALL("vocab_size"), 0},
    {{"model", "positions", CFG_ENUM, "learned", "learned|sinusoidal", NO_RANGE,
      "position embeddings (llama: rotary, leave it)"},
     MODEL_FIELD_POSITIONS, AT(sinusoidal), ALL, 1, NO_HF, 0},
    {{"model", "norm", CFG_ENUM, "auto", "auto|pre|post", NO_RANGE,
      "LayerNorm placement; auto = post for bert, pre for gpt and llama"},
     MODEL_FIELD_NORM, AT(pre_ln), ALL, 1, NO_HF, 0},
    /* export writes it under each family's names (GPT-2 has three) */
    {{"model", "dropout", CFG_FLOAT, "0.1", NULL, 0, 0.99, "dropout probability"},
     MODEL_FIELD_FLOAT, AT(dropout), ALL, 0, NO_HF, 0},
    {{"model", "recompute", CFG_ENUM, "false", "false|ffn|attention|ffn+attention|true", NO_RANGE,
      "activations made again in backward instead of kept: ffn = the FFN's pre-activation (one more GEMM a "
      "block), attention = the attention's output (the attention kernel again), ffn+attention = both, true = "
      "all but each block's input (its whole forward again)"},
     MODEL_FIELD_RECOMPUTE, AT(recompute), ALL, 0, NO_HF, 0},
    /* transformers reads an absent num_key_value_heads as num_attention_heads */
    {{"model", "n_kv_head", CFG_INT, "auto", "auto", 1, MODEL_MAX_HEADS,
      "llama: key/value heads of grouped-query attention (must divide n_head); auto = n_head"},
     MODEL_FIELD_INT, AT(n_kv_head), LLAMA, 1, HF_LLAMA("num_key_value_heads"), LLAMA},
    {{"model", "norm_eps", CFG_FLOAT, "1e-5", NULL, 1e-12, 1, "llama: RMSNorm epsilon"},
     MODEL_FIELD_FLOAT, AT(norm_eps), LLAMA, 1, HF_LLAMA("rms_norm_eps"), 0},
    {{"model", "rope_theta", CFG_FLOAT, "10000", NULL, 2, 1e9, "llama: RoPE base"},
     MODEL_FIELD_FLOAT, AT(rope_theta), LLAMA, 1, HF_LLAMA("rope_theta"), LLAMA},
    {{"model", "tie_embeddings", CFG_BOOL, "false", NULL, NO_RANGE,
      "llama: lm_head is the word embedding (gpt and bert are always tied)"},
     MODEL_FIELD_BOOL, AT(tie_embeddings), LLAMA, 1, HF_LLAMA("tie_word_embeddings"), LLAMA},
};
_Static_assert(sizeof model_fields / sizeof model_fields[0] == MODEL_N_FIELDS, "MODEL_N_FIELDS");

const model_field *model_field_find(const char *key)
{
    for (int i = 0; i < MODEL_N_FIELDS; i++)
        if (strcmp(model_fields[i].key.key, key) == 0) return &model_fields[i];
    return NULL;
}

static int *int_at(const model_field *f, const model_config *c) { return (int *)((char *)c + f->offset); }
static float *float_at(const model_field *f, const model_config *c) { return (float *)((char *)c + f->offset); }

double model_field_get(const model_field *f, const model_config *c)
{
    if (f->type == MODEL_FIELD_FLOAT) return *float_at(f, c);
    if (f->type == MODEL_FIELD_FAMILY) return (double)c->family;
    return *int_at(f, c);
}

void model_field_set(const model_field *f, model_config *c, double v)
{
    if (f->type == MODEL_FIELD_FLOAT)
        *float_at(f, c) = (float)v;
    else if (f->type == MODEL_FIELD_FAMILY)
        c->family = (model_family)(int)v;
    else
        *int_at(f, c) = (int)v;
}

double model_field_default(const model_field *f)
{
    const char *d = f->key.default_value;
    if (f->key.choices && strcmp(d, f->key.choices) == 0) return -1.0; /* auto */
    return f->type == MODEL_FIELD_BOOL ? strcmp(d, "true") == 0 : strtod(d, NULL);
}

const char *model_field_name(const model_field *f, const model_config *c)
{
    switch (f->type) {
    case MODEL_FIELD_FAMILY: return model_family_name(c->family);
    case MODEL_FIELD_POSITIONS: return c->family == MODEL_LLAMA ? "rope" : c->sinusoidal ? "sinusoidal" : "learned";
    case MODEL_FIELD_NORM: return c->pre_ln ? "pre" : "post";
    case MODEL_FIELD_RECOMPUTE: return model_recompute_name(c->recompute);
    default: return NULL;
    }
}

int model_field_set_name(const model_field *f, model_config *c, const char *name)
{
    switch (f->type) {
    case MODEL_FIELD_FAMILY: return model_family_parse(name, &c->family);
    case MODEL_FIELD_POSITIONS:
        c->sinusoidal = 0;
        if (c->family == MODEL_LLAMA) return strcmp(name, "rope") == 0 ? 0 : -1;
        if (strcmp(name, "learned") != 0 && strcmp(name, "sinusoidal") != 0) return -1;
        c->sinusoidal = strcmp(name, "sinusoidal") == 0;
        return 0;
    case MODEL_FIELD_NORM:
        if (strcmp(name, "pre") != 0 && strcmp(name, "post") != 0) return -1;
        c->pre_ln = strcmp(name, "pre") == 0;
        return 0;
    case MODEL_FIELD_RECOMPUTE:
        for (int r = RECOMPUTE_NONE; r <= RECOMPUTE_LAST; r++)
            if (strcmp(name, model_recompute_name(r)) == 0) {
                c->recompute = r;
                return 0;
            }
        return -1;
    default: return -1;
    }
}

double model_float_decimal(float v)
{
    char buf[32];
    for (int digits = 1; digits < 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
        if (strtof(buf, NULL) == v) return strtod(buf, NULL);
    }
    return (double)v;
}

void model_field_format(const model_field *f, const model_config *c, char *buf, size_t len)
{
    switch (f->type) {
    case MODEL_FIELD_INT: snprintf(buf, len, "%d", *int_at(f, c)); break;
    case MODEL_FIELD_FLOAT: snprintf(buf, len, "%.9g", model_float_decimal(*float_at(f, c))); break;
    case MODEL_FIELD_BOOL: snprintf(buf, len, "%s", *int_at(f, c) ? "true" : "false"); break;
    default: snprintf(buf, len, "%s", model_field_name(f, c)); break;
    }
}

/* ---- checks ---------------------------------------------------------------------- */

/* Llama's own keys: grouped-query heads, RoPE's even head size, RMSNorm's
 * eps and RoPE's base; pre-norm blocks (model.norm = post has no Llama). */
static status_t llama_config_check(const model_config *c)
{
    FAIL_IF(c->n_kv_head < 1 || c->n_head % c->n_kv_head != 0, ST_CONFIG,
            "model.n_kv_head = %d does not divide model.n_head = %d (each key/value head serves n_head / n_kv_head "
            "query heads); choose a divisor of model.n_head, e.g. %d", c->n_kv_head, c->n_head, c->n_head);
    FAIL_IF((c->d_model / c->n_head) % 2 != 0, ST_CONFIG,
            "model.d_model / model.n_head = %d / %d = %d is odd: RoPE rotates pairs of a head's channels (expected "
            "an even head size); change model.d_model or model.n_head", c->d_model, c->n_head, c->d_model / c->n_head);
    FAIL_IF(!(c->norm_eps > 0.0f) || !(c->rope_theta > 1.0f), ST_CONFIG,
            "model.norm_eps = %g and model.rope_theta = %g (expected norm_eps > 0 and rope_theta > 1)", c->norm_eps,
            c->rope_theta);
    FAIL_IF(!c->pre_ln || c->sinusoidal, ST_CONFIG,
            "model.family = llama has pre-norm blocks and rotary positions (found %s%s); leave model.norm and "
            "model.positions at their defaults", !c->pre_ln ? "model.norm = post" : "",
            c->sinusoidal ? " model.positions = sinusoidal" : "");
    return ST_OK;
}

status_t model_config_check(const model_config *c)
{
    FAIL_IF(c->n_head < 1 || c->d_model < 1, ST_CONFIG, "model: n_head and d_model must be >= 1 (found %d, %d)",
            c->n_head, c->d_model);
    FAIL_IF(c->d_model % c->n_head != 0, ST_CONFIG,
            "model.n_head = %d does not divide model.d_model = %d (expected a divisor, e.g. %d)",
            c->n_head, c->d_model, c->d_model / 64 > 0 ? c->d_model / 64 : 1);
    FAIL_IF(c->seq_len > c->max_positions, ST_CONFIG,
            "model.seq_len = %d exceeds model.max_positions = %d (raise max_positions or lower seq_len)",
            c->seq_len, c->max_positions);
    FAIL_IF(c->n_layer < 1 || c->d_ff < 1 || c->vocab_size < 8, ST_CONFIG,
            "model: n_layer, d_ff must be >= 1 and vocab_size >= 8 (found %d, %d, %d)",
            c->n_layer, c->d_ff, c->vocab_size);
    FAIL_IF(c->dropout < 0.0f || c->dropout >= 1.0f, ST_CONFIG,
            "model.dropout = %g is outside [0, 1)", c->dropout);
    if (c->family == MODEL_LLAMA) TRY(llama_config_check(c));
    for (int i = 0; i < MODEL_N_FIELDS; i++) { /* the schema's upper bounds: beyond them is damage, not a model */
        const model_field *f = &model_fields[i];
        if (f->type != MODEL_FIELD_INT || !model_field_of(f, c->family)) continue;
        FAIL_IF(*int_at(f, c) > f->key.max, ST_CONFIG, "model.%s = %d exceeds the largest mpilm takes (%.0f)",
                f->key.key, *int_at(f, c), f->key.max);
    }
    return ST_OK;
}

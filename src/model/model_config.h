/* model/model_config — what a model is: its configuration, and one table of
 * its fields that every place naming them walks.
 *
 * Owns: model_config, the family names, the checks of a configuration, and
 * model_fields[]: one row per model.* key with its schema row (type, default,
 * range, help), where it lives in model_config, the families that have it,
 * whether a checkpoint must agree with the configuration on it, and its name
 * in each family's Hugging Face config.json. The configuration schema
 * (cli/schema.c), train_config, the checkpoint manifest (written, read and
 * compared on resume), mpilm inspect and export/import read the table, so a
 * new model key is one row here.
 * Must not touch: files, JSON, MPI (callers format the values themselves).
 */
#ifndef MPILM_MODEL_MODEL_CONFIG_H
#define MPILM_MODEL_MODEL_CONFIG_H

#include <stddef.h>

#include "base/config.h"
#include "base/status.h"

typedef enum { MODEL_GPT = 0, MODEL_BERT = 1, MODEL_LLAMA = 2 } model_family;

/* model.recompute: keep every activation backward reads (false); keep only
 * each block's input and run the block's forward again in backward (true);
 * keep all but the FFN's pre-activation (GELU's input, Llama's gate | up),
 * which backward makes again from the remade norm output with the FFN's
 * first GEMM (ffn: the widest activation for one more GEMM a block); keep
 * all but the attention's output, which backward makes again with the
 * attention kernel from the kept q | k | v and softmax statistics
 * (attention: Megatron-LM's selective recomputation); both (ffn+attention). */
typedef enum {
    RECOMPUTE_NONE = 0,
    RECOMPUTE_FULL = 1,
    RECOMPUTE_FFN = 2,
    RECOMPUTE_ATTENTION = 3,
    RECOMPUTE_FFN_ATTENTION = 4,
    RECOMPUTE_LAST = RECOMPUTE_FFN_ATTENTION
} model_recompute;

typedef struct model_config {
    model_family family;
    int n_layer, d_model, n_head, d_ff, seq_len, max_positions, vocab_size;
    int sinusoidal;   /* 1: fixed sinusoidal positions instead of a learned table */
    int pre_ln;       /* 1: pre-LN blocks (GPT's), 0: post-LN (BERT's) */
    float dropout;
    int recompute;    /* model_recompute: what backward makes again instead of keeping */
    int bf16;         /* 1: mixed precision (train.precision = bf16): the linear layers'
                         GEMMs take bf16 copies of their weights and inputs and sum in
                         fp32; parameters, gradients, LayerNorm, softmax, GELU, the
                         residual stream and the loss stay fp32. A run's setting, not
                         the model's: checkpoints do not record it. */
    /* Llama only (GPT and BERT ignore them: their heads are n_head, their
       embedding tied, their LayerNorm eps fixed, their positions a table) */
    int n_kv_head;      /* key/value heads of grouped-query attention (divides n_head) */
    int tie_embeddings; /* 1: lm_head is the word embedding (not stored) */
    float norm_eps;     /* RMSNorm epsilon */
    float rope_theta;   /* RoPE base */
} model_config;

/* "gpt", "bert", "llama"; and back (0, or -1 for an unknown name). */
const char *model_family_name(model_family f);
/* model.recompute's name of a model_recompute: false, true or ffn. */
const char *model_recompute_name(int r);
/* Whether backward makes the attention's output again (attention,
 * ffn+attention), the FFN's pre-activation (ffn, ffn+attention). */
static inline int model_remakes_attention(const model_config *c)
{
    return c->recompute == RECOMPUTE_ATTENTION || c->recompute == RECOMPUTE_FFN_ATTENTION;
}
static inline int model_remakes_ffn(const model_config *c)
{
    return c->recompute == RECOMPUTE_FFN || c->recompute == RECOMPUTE_FFN_ATTENTION;
}
int model_family_parse(const char *name, model_family *out);

/* Causal-LM families (GPT, Llama): the LM objective, data and loss. */
static inline int model_causal(const model_config *c) { return c->family != MODEL_BERT; }
/* Key/value heads: n_kv_head for Llama, n_head otherwise. */
static inline int model_kv_heads(const model_config *c) { return c->family == MODEL_LLAMA ? c->n_kv_head : c->n_head; }
/* The output head is the word embedding (GPT and BERT always; Llama when
   tie_embeddings). */
static inline int model_tied(const model_config *c) { return c->family != MODEL_LLAMA || c->tie_embeddings; }

/* The largest model dimensions mpilm takes (the config schema's ranges too):
 * a checkpoint or config.json beyond them is damaged, not a model. */
#define MODEL_MAX_LAYERS 1024
#define MODEL_MAX_D_MODEL 65536
#define MODEL_MAX_HEADS 1024
#define MODEL_MAX_D_FF (1 << 20)
#define MODEL_MAX_POSITIONS (1 << 20)
#define MODEL_MAX_VOCAB (1 << 24)

/* Checks the shapes (n_head divides d_model, seq_len <= max_positions, ...)
 * and the ranges of the field table; the message names the config key. */
status_t model_config_check(const model_config *c);

/* ---- the field table -------------------------------------------------------- */

/* How a field's value is held and written: a number (int or float), a
 * boolean, or one of a few names (family; positions: learned, sinusoidal, or
 * rope for Llama; norm: pre or post; recompute: false, ffn or true). */
typedef enum model_field_type {
    MODEL_FIELD_INT,
    MODEL_FIELD_FLOAT,
    MODEL_FIELD_BOOL,
    MODEL_FIELD_FAMILY,
    MODEL_FIELD_POSITIONS,
    MODEL_FIELD_NORM,
    MODEL_FIELD_RECOMPUTE,
} model_field_type;

typedef struct model_field {
    config_key key;      /* model.KEY in the configuration: its schema row */
    model_field_type type;
    size_t offset;       /* of its int or float in model_config */
    unsigned families;   /* bit 1 << family for each family that has it */
    int identity;        /* 1: part of what the model is; a checkpoint resumed, or
                            loaded under a configuration, must agree on it */
    const char *hf[3];   /* its key in config.json by family (NULL: absent, or
                            written by export's per-family code) */
    unsigned hf_optional; /* bit 1 << family: that family's config.json may lack it
                             (import puts transformers' default) */
} model_field;

/* In manifest order: family first (the others depend on it). */
#define MODEL_N_FIELDS 16
extern const model_field model_fields[MODEL_N_FIELDS];

/* The field of model.KEY, or NULL. */
const model_field *model_field_find(const char *key);
/* Whether family f has the field (the others ignore it and leave it 0). */
static inline int model_field_of(const model_field *f, model_family fam) { return (f->families >> fam) & 1u; }
/* Its value as a number: ints, floats, booleans (0/1), and a name's index. */
double model_field_get(const model_field *f, const model_config *c);
void model_field_set(const model_field *f, model_config *c, double v);
/* The schema default of a number or boolean field as model_field_get gives
 * it (auto: -1). */
double model_field_default(const model_field *f);
/* A name-valued field's name ("gpt", "rope", "pre"); NULL for the others. */
const char *model_field_name(const model_field *f, const model_config *c);
/* Sets a name-valued field from NAME; -1 when NAME is not one of its names
 * (positions: learned or sinusoidal, or rope for Llama; set the family first). */
int model_field_set_name(const model_field *f, model_config *c, const char *name);
/* The value as text: "%d", the shortest decimal that reads back as the float,
 * "true"/"false", or the name. */
void model_field_format(const model_field *f, const model_config *c, char *buf, size_t len);
/* The shortest decimal that reads back as the float v (1e-5f as 1e-05, not
 * 9.99999974737875e-06). */
double model_float_decimal(float v);

#endif

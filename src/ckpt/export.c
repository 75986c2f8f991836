/* ckpt/export — Hugging Face safetensors + config.json, both ways. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "base/log.h"
#include "ckpt/export.h"
#include "ckpt/export_internal.h"
#include "ckpt/safetensors.h"
#include "tensor/tensor.h"

static status_t check_expressible(const model_config *c)
{
    int bert = c->family == MODEL_BERT;
    FAIL_IF(bert == c->pre_ln, ST_USAGE,
            "export: a %s model with %s-LN blocks has no Hugging Face equivalent (%s is %s-LN); "
            "train with model.norm = auto to export", bert ? "BERT" : "GPT", c->pre_ln ? "pre" : "post",
            bert ? "BertForPreTraining" : "GPT2LMHeadModel", bert ? "post" : "pre");
    FAIL_IF(c->dropout > 0.0f && c->family == MODEL_LLAMA, ST_USAGE,
            "export: a llama model trained with model.dropout = %g has dropout sites LlamaForCausalLM lacks (after "
            "the embeddings and each branch); train with model.dropout = 0 to export", c->dropout);
    return ST_OK;
}

status_t export_dtype_parse(const char *name, safet_dtype *out)
{
    if (strcmp(name, "fp32") == 0) *out = SAFET_F32;
    else if (strcmp(name, "bf16") == 0) *out = SAFET_BF16;
    else
        return st_fail(ST_USAGE, "export: --dtype %s is not known (expected fp32 or bf16)", name);
    return ST_OK;
}

/* config.json's special ids: a number inside the vocabulary, or null where
 * the vocabulary has no such token (never a default outside it). */
static void add_id(cJSON *j, const char *key, int32_t id)
{
    if (id >= 0) cJSON_AddNumberToObject(j, key, id);
    else cJSON_AddNullToObject(j, key);
}

/* What config.json says of each family beyond model_fields' keys: the class,
 * the activation, the fixed LayerNorm eps, and the dropout under its names. */
static void family_json(cJSON *j, const model_config *c)
{
    if (c->family == MODEL_BERT) {
        cJSON_AddItemToObject(j, "architectures", cJSON_CreateStringArray((const char *[]){"BertForPreTraining"}, 1));
        cJSON_AddStringToObject(j, "model_type", "bert");
        cJSON_AddStringToObject(j, "hidden_act", "gelu");
        cJSON_AddNumberToObject(j, "hidden_dropout_prob", model_float_decimal(c->dropout));
        cJSON_AddNumberToObject(j, "attention_probs_dropout_prob", model_float_decimal(c->dropout));
        cJSON_AddNumberToObject(j, "type_vocab_size", 2);
        cJSON_AddNumberToObject(j, "layer_norm_eps", 1e-12);
        cJSON_AddStringToObject(j, "position_embedding_type", "absolute");
    } else if (c->family == MODEL_LLAMA) {
        cJSON_AddItemToObject(j, "architectures", cJSON_CreateStringArray((const char *[]){"LlamaForCausalLM"}, 1));
        cJSON_AddStringToObject(j, "model_type", "llama");
        cJSON_AddStringToObject(j, "hidden_act", "silu");
        cJSON_AddBoolToObject(j, "attention_bias", 0);
        cJSON_AddBoolToObject(j, "mlp_bias", 0);
        cJSON_AddNumberToObject(j, "attention_dropout", 0.0);
    } else {
        cJSON_AddItemToObject(j, "architectures", cJSON_CreateStringArray((const char *[]){"GPT2LMHeadModel"}, 1));
        cJSON_AddStringToObject(j, "model_type", "gpt2");
        cJSON_AddNumberToObject(j, "n_ctx", c->max_positions);
        cJSON_AddStringToObject(j, "activation_function", "gelu_new");
        cJSON_AddNumberToObject(j, "resid_pdrop", model_float_decimal(c->dropout));
        cJSON_AddNumberToObject(j, "embd_pdrop", model_float_decimal(c->dropout));
        cJSON_AddNumberToObject(j, "attn_pdrop", model_float_decimal(c->dropout));
        cJSON_AddNumberToObject(j, "layer_norm_epsilon", 1e-5);
    }
    if (c->family != MODEL_LLAMA) cJSON_AddBoolToObject(j, "tie_word_embeddings", 1); /* always tied */
}

static cJSON *config_json(const model_config *c, safet_dtype dtype, const hf_token_ids *ids)
{
    cJSON *j = cJSON_CreateObject();
    family_json(j, c);
    for (int i = 0; i < MODEL_N_FIELDS; i++) { /* the fields config.json names (model_fields' hf) */
        const model_field *f = &model_fields[i];
        const char *key = model_field_of(f, c->family) ? f->hf[c->family] : NULL;
        if (!key) continue;
        double v = model_field_get(f, c);
        if (f->type == MODEL_FIELD_BOOL) cJSON_AddBoolToObject(j, key, v != 0);
        else cJSON_AddNumberToObject(j, key, f->type == MODEL_FIELD_FLOAT ? model_float_decimal((float)v) : v);
    }
    add_id(j, "bos_token_id", ids->bos);
    add_id(j, "eos_token_id", ids->eos);
    if (c->family == MODEL_BERT) add_id(j, "pad_token_id", ids->pad);
    cJSON_AddNumberToObject(j, "initializer_range", 0.02);
    cJSON_AddStringToObject(j, "torch_dtype", dtype == SAFET_BF16 ? "bfloat16" : "float32");
    return j;
}

static status_t write_tensors(const model_config *c, const float *params, const char *path, float *sin_pos,
                              safet_dtype dtype)
{
    model_tensor *t;
    int n;
    TRY(model_full_table(c, &t, &n));
    safet_writer w;
    status_t st = safet_writer_init(&w);
    for (int i = 0; st == ST_OK && i < n; i++)
        st = safet_writer_add_f32(&w, t[i].name, dtype, t[i].ndim, t[i].shape, params + t[i].offset);
    if (st == ST_OK && sin_pos) {
        /* Hugging Face has no sinusoidal option: the fixed table becomes the learned one */
        int64_t shape[2] = {c->max_positions, c->d_model};
        st = safet_writer_add_f32(&w, c->family == MODEL_BERT ? "bert.embeddings.position_embeddings.weight"
                                                              : "transformer.wpe.weight",
                                  dtype, 2, shape, sin_pos);
    }
    if (st == ST_OK) st = safet_writer_meta(&w, "format", "pt");
    if (st == ST_OK) st = safet_writer_write(&w, path);
    safet_writer_free(&w);
    free(t);
    return st;
}

status_t export_hf(const model_config *c, const float *params, const char *vocab_dir, const char *out_dir,
                   safet_dtype dtype)
{
    FAIL_IF(dtype != SAFET_F32 && dtype != SAFET_BF16, ST_USAGE,
            "export: tensors can be written as F32 or BF16, not %s",
            (int)dtype >= 0 && dtype <= SAFET_U8 ? safet_dtype_name(dtype) : "an unknown dtype");
    TRY(check_expressible(c));
    TRY(fileio_make_dirs(out_dir, 0755));
    char path[4096];
    float *sin_pos = NULL;
    if (c->sinusoidal) {
        sin_pos = malloc((size_t)c->max_positions * c->d_model * sizeof(float));
        FAIL_IF(!sin_pos, ST_NOMEM, "export: out of memory");
        sinusoidal_positions(sin_pos, c->max_positions, c->d_model);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    status_t st = write_tensors(c, params, path, sin_pos, dtype);
    free(sin_pos);
    TRY(st);
    hf_token_ids ids;
    TRY(export_tokenizer_files(c, vocab_dir, out_dir, &ids));
    if (!vocab_dir)
        log_warn("export: the checkpoint has no vocabulary (trained on random data): no tokenizer files, and "
                 "config.json's token ids are null");
    cJSON *j = config_json(c, dtype, &ids);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    FAIL_IF(!text, ST_NOMEM, "export: out of memory");
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    st = fileio_write_atomic(path, text, strlen(text));
    free(text);
    return st;
}

/* ---- import ------------------------------------------------------------------ */

/* config.json's key for field f as its value, checked against the field's
 * range (the configuration's, model.* in docs/usage.md) before anything is
 * sized from it (2^40 is out of range, not "out of memory"). An optional key
 * that is absent or null leaves the field at -1 (ints: the caller puts
 * transformers' default) or the schema's default. */
static status_t json_field(const cJSON *j, const char *path, const model_field *f, model_config *c)
{
    const char *key = f->hf[c->family];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if ((!v || cJSON_IsNull(v)) && ((f->hf_optional >> c->family) & 1u)) {
        model_field_set(f, c, f->type == MODEL_FIELD_INT ? -1 : model_field_default(f));
        return ST_OK;
    }
    if (f->type == MODEL_FIELD_BOOL) {
        FAIL_IF(!cJSON_IsBool(v), ST_FORMAT, "%s: \"%s\" is missing or not true/false", path, key);
        model_field_set(f, c, cJSON_IsTrue(v));
        return ST_OK;
    }
    FAIL_IF(!cJSON_IsNumber(v), ST_FORMAT, "%s: \"%s\" is missing or not a number", path, key);
    double d = v->valuedouble, lo = f->key.min, hi = f->key.max;
    int integer = f->type == MODEL_FIELD_INT;
    char range[64];
    snprintf(range, sizeof range, integer ? "an integer from %.0f to %.0f" : "a number from %g to %g", lo, hi);
    FAIL_IF(!(d >= lo && d <= hi) || (integer && d != (double)(int64_t)d), ST_FORMAT, /* range first: the cast needs it */
            "%s: %s %.17g is out of range (expected %s); config.json is damaged or not a model mpilm can hold", path,
            key, d, range);
    model_field_set(f, c, d);
    return ST_OK;
}

/* What LlamaForCausalLM's config.json may hold that mpilm does not implement:
 * rope_scaling, attention or MLP biases, an activation other than silu. */
static status_t llama_check_json(const cJSON *j, const char *path)
{
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "hidden_act");
    int biases = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "attention_bias")) ||
                 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "mlp_bias"));
    FAIL_IF((scaling && !cJSON_IsNull(scaling)) || biases ||
                (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0)),
            ST_FORMAT, "%s: rope_scaling, attention or MLP biases, or a hidden_act other than silu: a Llama variant "
            "mpilm does not implement", path);
    return ST_OK;
}

static status_t config_from_json(const cJSON *j, const char *path, model_config *c)
{
    memset(c, 0, sizeof *c);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    FAIL_IF(!cJSON_IsString(type), ST_FORMAT,
            "%s: \"model_type\" is missing (expected \"bert\", \"gpt2\" or \"llama\")", path);
    if (strcmp(type->valuestring, "bert") == 0) c->family = MODEL_BERT;
    else if (strcmp(type->valuestring, "gpt2") == 0) c->family = MODEL_GPT;
    else if (strcmp(type->valuestring, "llama") == 0) c->family = MODEL_LLAMA;
    else
        return st_fail(ST_FORMAT, "%s: model_type \"%s\" is not supported (expected \"bert\", \"gpt2\" or \"llama\")",
                       path, type->valuestring);
    if (c->family == MODEL_LLAMA) TRY(llama_check_json(j, path));
    for (int i = 0; i < MODEL_N_FIELDS; i++)
        if (model_field_of(&model_fields[i], c->family) && model_fields[i].hf[c->family])
            TRY(json_field(j, path, &model_fields[i], c));
    /* what transformers reads for the absent optional keys */
    if (c->d_ff < 0) c->d_ff = 4 * c->d_model; /* GPT-2's n_inner = null */
    if (c->n_kv_head < 0) c->n_kv_head = c->n_head;
    if (c->seq_len < 0) c->seq_len = c->max_positions < 512 ? c->max_positions : 512;
    c->pre_ln = c->family != MODEL_BERT;
    c->dropout = c->family == MODEL_LLAMA ? 0.0f : 0.1f;
    return model_config_check(c);
}

static status_t read_config(const char *hf_dir, model_config *c)
{
    char path[4096], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", hf_dir);
    TRY(fileio_read_file(path, &text, &len));
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    FAIL_IF(!j, ST_FORMAT, "%s: not valid JSON", path);
    status_t st = config_from_json(j, path, c);
    cJSON_Delete(j);
    return st;
}

/* What Hugging Face files may hold besides the parameters: attention-mask
 * buffers, position ids, and the tied decoder / lm_head (a copy of the word
 * embedding). */
static int is_known_extra(const char *name)
{
    static const char *const exact[] = {"bert.embeddings.position_ids", "lm_head.weight",
                                        "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(name, exact[i]) == 0) return 1;
    size_t n = strlen(name);
    return (n > 10 && strcmp(name + n - 10, ".attn.bias") == 0) ||
           (n > 20 && strcmp(name + n - 20, ".rotary_emb.inv_freq") == 0) ||
           (n > 17 && strcmp(name + n - 17, ".attn.masked_bias") == 0);
}

static void shape_text(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && used < len; d++)
        used += (size_t)snprintf(buf + used, len - used, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (used < len) snprintf(buf + used, len - used, "]");
}

static void describe_config(char *buf, size_t len, const model_config *c)
{
    snprintf(buf, len, "%d layers, hidden %d, %d heads, d_ff %d, vocab %d, %d positions", c->n_layer, c->d_model,
             c->n_head, c->d_ff, c->vocab_size, c->max_positions);
}

/* Every tensor config.json implies is in the file with its shape, and the
 * file holds no other parameter (an extra layer would be dropped silently). */
static status_t check_tensors(const safet_file *f, const model_config *c, const model_tensor *t, int n)
{
    char cfg[160];
    describe_config(cfg, sizeof cfg, c);
    for (int i = 0; i < n; i++) {
        const safet_tensor *s = safet_find(f, t[i].name);
        FAIL_IF(!s, ST_FORMAT, "%s: tensor %s is missing, but config.json (%s) implies it; config.json does not "
                "match the tensors: fix config.json or export the model again", safet_path(f), t[i].name, cfg);
        int same = s->ndim == t[i].ndim;
        for (int d = 0; same && d < s->ndim; d++) same = s->shape[d] == t[i].shape[d];
        char have[64], want[64];
        shape_text(have, sizeof have, s->ndim, s->shape);
        shape_text(want, sizeof want, t[i].ndim, t[i].shape);
        FAIL_IF(!same, ST_FORMAT, "%s: tensor %s has shape %s (expected %s from config.json: %s); config.json "
                "does not match the tensors: fix config.json or export the model again", safet_path(f), t[i].name,
                have, want, cfg);
    }
    for (int k = 0; k < safet_count(f); k++) {
        const char *name = safet_at(f, k)->name;
        int known = is_known_extra(name);
        for (int i = 0; !known && i < n; i++) known = strcmp(name, t[i].name) == 0;
        FAIL_IF(!known, ST_FORMAT, "%s: tensor %s is not part of the model config.json describes (%s); it would be "
                "dropped: fix config.json (e.g. the layer count) or remove the tensor", safet_path(f), name, cfg);
    }
    return ST_OK;
}

status_t export_import_hf(const char *hf_dir, model_config *c, float **params)
{
    TRY(read_config(hf_dir, c));
    model_tensor *t;
    int n;
    TRY(model_full_table(c, &t, &n));
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", hf_dir);
    safet_file *f = NULL;
    status_t st = safet_open(&f, path);
    if (st == ST_OK) st = check_tensors(f, c, t, n);
    size_t total = t[n - 1].offset + t[n - 1].numel;
    float *p = st == ST_OK ? malloc(total * sizeof(float)) : NULL;
    if (st == ST_OK && !p)
        st = st_fail(ST_NOMEM, "import: out of memory for %zu parameters (%.1f MiB)", total, total * 4.0 / 1048576.0);
    for (int i = 0; st == ST_OK && i < n; i++)
        st = safet_read_f32(f, t[i].name, p + t[i].offset, (int64_t)t[i].numel);
    safet_close(f);
    free(t);
    if (st != ST_OK) {
        free(p);
        return st;
    }
    *params = p;
    return ST_OK;
}

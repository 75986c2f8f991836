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

/* The shortest decimal that reads back as the float v (1e-5f as 1e-05, not
 * 9.99999974737875e-06), as a double for config.json. */
static double float_decimal(float v)
{
    char buf[32];
    for (int digits = 1; digits < 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
        if (strtof(buf, NULL) == v) return strtod(buf, NULL);
    }
    return (double)v;
}

static cJSON *config_json(const model_config *c, safet_dtype dtype, const hf_token_ids *ids)
{
    cJSON *j = cJSON_CreateObject();
    if (c->family == MODEL_BERT) {
        cJSON_AddItemToObject(j, "architectures", cJSON_CreateStringArray((const char *[]){"BertForPreTraining"}, 1));
        cJSON_AddStringToObject(j, "model_type", "bert");
        cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(j, "hidden_size", c->d_model);
        cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layer);
        cJSON_AddNumberToObject(j, "num_attention_heads", c->n_head);
        cJSON_AddNumberToObject(j, "intermediate_size", c->d_ff);
        cJSON_AddStringToObject(j, "hidden_act", "gelu");
        cJSON_AddNumberToObject(j, "hidden_dropout_prob", c->dropout);
        cJSON_AddNumberToObject(j, "attention_probs_dropout_prob", c->dropout);
        cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_positions);
        cJSON_AddNumberToObject(j, "type_vocab_size", 2);
        cJSON_AddNumberToObject(j, "layer_norm_eps", 1e-12);
        cJSON_AddStringToObject(j, "position_embedding_type", "absolute");
    } else if (c->family == MODEL_LLAMA) {
        cJSON_AddItemToObject(j, "architectures", cJSON_CreateStringArray((const char *[]){"LlamaForCausalLM"}, 1));
        cJSON_AddStringToObject(j, "model_type", "llama");
        cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(j, "hidden_size", c->d_model);
        cJSON_AddNumberToObject(j, "intermediate_size", c->d_ff);
        cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layer);
        cJSON_AddNumberToObject(j, "num_attention_heads", c->n_head);
        cJSON_AddNumberToObject(j, "num_key_value_heads", c->n_kv_head);
        cJSON_AddStringToObject(j, "hidden_act", "silu");
        cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_positions);
        cJSON_AddNumberToObject(j, "rms_norm_eps", float_decimal(c->norm_eps));
        cJSON_AddNumberToObject(j, "rope_theta", float_decimal(c->rope_theta));
        cJSON_AddBoolToObject(j, "attention_bias", 0);
        cJSON_AddBoolToObject(j, "mlp_bias", 0);
        cJSON_AddNumberToObject(j, "attention_dropout", 0.0);
    } else {
        cJSON_AddItemToObject(j, "architectures", cJSON_CreateStringArray((const char *[]){"GPT2LMHeadModel"}, 1));
        cJSON_AddStringToObject(j, "model_type", "gpt2");
        cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(j, "n_embd", c->d_model);
        cJSON_AddNumberToObject(j, "n_layer", c->n_layer);
        cJSON_AddNumberToObject(j, "n_head", c->n_head);
        cJSON_AddNumberToObject(j, "n_inner", c->d_ff);
        cJSON_AddNumberToObject(j, "n_positions", c->max_positions);
        cJSON_AddNumberToObject(j, "n_ctx", c->max_positions);
        cJSON_AddStringToObject(j, "activation_function", "gelu_new");
        cJSON_AddNumberToObject(j, "resid_pdrop", c->dropout);
        cJSON_AddNumberToObject(j, "embd_pdrop", c->dropout);
        cJSON_AddNumberToObject(j, "attn_pdrop", c->dropout);
        cJSON_AddNumberToObject(j, "layer_norm_epsilon", 1e-5);
    }
    add_id(j, "bos_token_id", ids->bos);
    add_id(j, "eos_token_id", ids->eos);
    if (c->family == MODEL_BERT) add_id(j, "pad_token_id", ids->pad);
    cJSON_AddNumberToObject(j, "initializer_range", 0.02);
    /* not Hugging Face's: the training sequence length, so import restores it */
    cJSON_AddNumberToObject(j, "mpilm_seq_len", c->seq_len);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", model_tied(c));
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

/* config.json key `key` as an integer in [lo, hi]: checked before anything
 * is sized from it (2^40 is out of range, not "out of memory"). The ranges
 * are the configuration's (model.* in docs/usage.md). */
static status_t json_int(const cJSON *j, const char *path, const char *key, double lo, double hi, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    FAIL_IF(!cJSON_IsNumber(v), ST_FORMAT, "%s: \"%s\" is missing or not a number", path, key);
    double d = v->valuedouble;
    FAIL_IF(!(d >= lo && d <= hi) || d != (double)(int64_t)d, ST_FORMAT, /* range first: the cast needs it */
            "%s: %s %.17g is out of range (expected an integer from %.0f to %.0f); config.json is damaged or "
            "not a model mpilm can hold", path, key, d, lo, hi);
    *out = (int)d;
    return ST_OK;
}

/* config.json key `key` as a number > lo (Llama's eps and RoPE base). */
static status_t json_positive(const cJSON *j, const char *path, const char *key, double lo, float *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    FAIL_IF(!cJSON_IsNumber(v) || !(v->valuedouble > lo && v->valuedouble < 1e30), ST_FORMAT,
            "%s: \"%s\" is missing or not a number above %g", path, key, lo);
    *out = (float)v->valuedouble;
    return ST_OK;
}

/* LlamaForCausalLM's config.json (num_key_value_heads absent: n_head, as
 * transformers reads it; rope_scaling and biases are refused). */
static status_t llama_from_json(const cJSON *j, const char *path, model_config *c)
{
    const int layers = 1024, width = 65536, heads = 1024, ffn = 1 << 20, positions = 1 << 20;
    c->family = MODEL_LLAMA;
    c->pre_ln = 1;
    TRY(json_int(j, path, "hidden_size", 8, width, &c->d_model));
    TRY(json_int(j, path, "num_hidden_layers", 1, layers, &c->n_layer));
    TRY(json_int(j, path, "num_attention_heads", 1, heads, &c->n_head));
    TRY(json_int(j, path, "intermediate_size", 1, ffn, &c->d_ff));
    TRY(json_int(j, path, "max_position_embeddings", 2, positions, &c->max_positions));
    c->n_kv_head = c->n_head;
    if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "num_key_value_heads")))
        TRY(json_int(j, path, "num_key_value_heads", 1, heads, &c->n_kv_head));
    TRY(json_positive(j, path, "rms_norm_eps", 0.0, &c->norm_eps));
    c->rope_theta = 10000.0f;
    if (cJSON_GetObjectItemCaseSensitive(j, "rope_theta"))
        TRY(json_positive(j, path, "rope_theta", 1.0, &c->rope_theta));
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
    c->tie_embeddings = cJSON_IsTrue(tie);
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
    const int layers = 1024, width = 65536, heads = 1024, ffn = 1 << 20, positions = 1 << 20;
    if (strcmp(type->valuestring, "bert") == 0) {
        c->family = MODEL_BERT;
        TRY(json_int(j, path, "hidden_size", 8, width, &c->d_model));
        TRY(json_int(j, path, "num_hidden_layers", 1, layers, &c->n_layer));
        TRY(json_int(j, path, "num_attention_heads", 1, heads, &c->n_head));
        TRY(json_int(j, path, "intermediate_size", 1, ffn, &c->d_ff));
        TRY(json_int(j, path, "max_position_embeddings", 2, positions, &c->max_positions));
    } else if (strcmp(type->valuestring, "gpt2") == 0) {
        c->family = MODEL_GPT;
        c->pre_ln = 1;
        TRY(json_int(j, path, "n_embd", 8, width, &c->d_model));
        TRY(json_int(j, path, "n_layer", 1, layers, &c->n_layer));
        TRY(json_int(j, path, "n_head", 1, heads, &c->n_head));
        TRY(json_int(j, path, "n_positions", 2, positions, &c->max_positions));
        c->d_ff = 4 * c->d_model;
        if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "n_inner")))
            TRY(json_int(j, path, "n_inner", 1, ffn, &c->d_ff));
    } else if (strcmp(type->valuestring, "llama") == 0) {
        TRY(llama_from_json(j, path, c));
    } else {
        return st_fail(ST_FORMAT, "%s: model_type \"%s\" is not supported (expected \"bert\", \"gpt2\" or \"llama\")",
                       path,
                       type->valuestring);
    }
    TRY(json_int(j, path, "vocab_size", 8, 1 << 24, &c->vocab_size));
    c->seq_len = c->max_positions < 512 ? c->max_positions : 512;
    if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "mpilm_seq_len")))
        TRY(json_int(j, path, "mpilm_seq_len", 2, c->max_positions, &c->seq_len));
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

static void config_text(char *buf, size_t len, const model_config *c)
{
    snprintf(buf, len, "%d layers, hidden %d, %d heads, d_ff %d, vocab %d, %d positions", c->n_layer, c->d_model,
             c->n_head, c->d_ff, c->vocab_size, c->max_positions);
}

/* Every tensor config.json implies is in the file with its shape, and the
 * file holds no other parameter (an extra layer would be dropped silently). */
static status_t check_tensors(const safet_file *f, const model_config *c, const model_tensor *t, int n)
{
    char cfg[160];
    config_text(cfg, sizeof cfg, c);
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

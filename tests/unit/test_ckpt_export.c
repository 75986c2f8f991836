/* ckpt/export: Hugging Face model.safetensors + config.json; export then
 * import gives back the same model (fp32), or its bf16 rounding exactly
 * (--dtype bf16); F16 files import exactly; Hugging Face's names and shapes;
 * models Hugging Face cannot express are refused; damaged input is named. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/synth_dataset.h"
#include "base/fileio.h"
#include "ckpt/export.h"
#include "ckpt/safetensors.h"
#include "tensor/bf16.h"
#include "tensor/tensor.h"

static char dir[512];
static void setup(void) { cr_assert_eq(synth_tmpdir(dir, sizeof dir, "export"), 0); }
static void teardown(void) { synth_rmdir(dir); }
TestSuite(export, .init = setup, .fini = teardown);

static model_config tiny(model_family f)
{
    model_config c = {.family = f, .n_layer = 2, .d_model = 16, .n_head = 2, .d_ff = 40, .seq_len = 12,
                      .max_positions = 12, .vocab_size = 30, .pre_ln = f == MODEL_GPT, .dropout = 0.1f};
    return c;
}

static float *params_of(const model_config *c, size_t *n)
{
    model_stage *m;
    cr_assert_eq(model_stage_create(&m, c, 0, c->n_layer, 1, 1), ST_OK, "%s", st_message());
    model_init_params(m, 9);
    *n = model_n_params(m);
    float *p = malloc(*n * sizeof(float));
    memcpy(p, model_params(m), *n * sizeof(float));
    model_stage_free(m);
    return p;
}

static void round_trip(model_family f)
{
    model_config c = tiny(f), back;
    size_t n;
    float *p = params_of(&c, &n), *q = NULL;
    cr_assert_eq(export_hf(&c, p, NULL, dir, SAFET_F32), ST_OK, "%s", st_message());
    cr_assert_eq(export_import_hf(dir, &back, &q), ST_OK, "%s", st_message());
    cr_expect(back.family == c.family && back.n_layer == 2 && back.d_model == 16 && back.n_head == 2 &&
              back.d_ff == 40 && back.max_positions == 12 && back.vocab_size == 30 && back.pre_ln == c.pre_ln);
    cr_expect(memcmp(p, q, n * sizeof(float)) == 0, "parameters changed on the way");
    free(p);
    free(q);
}

Test(export, gpt_export_then_import_gives_the_same_model) { round_trip(MODEL_GPT); }
Test(export, bert_export_then_import_gives_the_same_model) { round_trip(MODEL_BERT); }

Test(export, files_use_hugging_face_names_shapes_and_config_keys)
{
    model_config c = tiny(MODEL_GPT);
    size_t n;
    float *p = params_of(&c, &n);
    cr_assert_eq(export_hf(&c, p, NULL, dir, SAFET_F32), ST_OK, "%s", st_message());
    char path[600], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    safet_file *f;
    cr_assert_eq(safet_open(&f, path), ST_OK, "%s", st_message());
    const safet_tensor *t = safet_find(f, "transformer.h.1.attn.c_attn.weight");
    cr_expect(t && t->ndim == 2 && t->shape[0] == 16 && t->shape[1] == 48, "Conv1D layout (in, out)");
    cr_expect(safet_find(f, "transformer.wte.weight") && safet_find(f, "transformer.ln_f.bias"));
    cr_expect(!safet_find(f, "lm_head.weight"), "the tied head is not stored");
    safet_close(f);
    snprintf(path, sizeof path, "%s/config.json", dir);
    cr_assert_eq(fileio_read_file(path, &text, &len), ST_OK);
    cr_expect(strstr(text, "\"GPT2LMHeadModel\"") && strstr(text, "\"gelu_new\"") && strstr(text, "\"n_inner\":\t40") &&
              strstr(text, "\"torch_dtype\":\t\"float32\""), "%s", text);
    free(text);
    free(p);
}

Test(export, sinusoidal_positions_become_the_position_table)
{
    model_config c = tiny(MODEL_BERT), back;
    c.sinusoidal = 1;
    size_t n;
    float *p = params_of(&c, &n), *q = NULL;
    cr_assert_eq(export_hf(&c, p, NULL, dir, SAFET_F32), ST_OK, "%s", st_message());
    cr_assert_eq(export_import_hf(dir, &back, &q), ST_OK, "%s", st_message());
    cr_expect(!back.sinusoidal, "Hugging Face has only learned positions");
    model_tensor *t;
    int nt;
    cr_assert_eq(model_full_table(&back, &t, &nt), ST_OK);
    float pe[12 * 16];
    sinusoidal_positions(pe, 12, 16);
    int found = -1;
    for (int i = 0; i < nt; i++)
        if (strcmp(t[i].name, "bert.embeddings.position_embeddings.weight") == 0) found = i;
    cr_assert(found >= 0, "the imported model has no position table");
    cr_assert_eq(t[found].numel, 12 * 16);
    cr_expect(memcmp(q + t[found].offset, pe, sizeof pe) == 0, "the position table is not the sinusoids");
    free(t);
    free(p);
    free(q);
}

Test(export, models_hugging_face_cannot_express_are_refused)
{
    model_config c = tiny(MODEL_BERT);
    c.pre_ln = 1;
    size_t n;
    float *p = params_of(&c, &n);
    cr_expect_eq(export_hf(&c, p, NULL, dir, SAFET_F32), ST_USAGE);
    cr_expect(strstr(st_message(), "pre-LN") && strstr(st_message(), "BertForPreTraining"), "%s", st_message());
    free(p);
}

Test(export, import_names_what_is_missing)
{
    model_config c;
    float *q = NULL;
    cr_expect_neq(export_import_hf(dir, &c, &q), ST_OK);
    cr_expect(strstr(st_message(), "config.json"), "%s", st_message());
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *cfg = "{\"model_type\": \"gpt2\", \"n_embd\": 16, \"n_layer\": 1, \"n_head\": 2, "
                      "\"n_positions\": 8, \"vocab_size\": 30}";
    cr_assert_eq(fileio_write_atomic(path, cfg, strlen(cfg)), ST_OK);
    safet_writer w;
    safet_writer_init(&w);
    float x[30 * 16] = {0};
    int64_t shape[2] = {30, 16};
    safet_writer_add(&w, "transformer.wte.weight", SAFET_F32, 2, shape, x);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(safet_writer_write(&w, path), ST_OK);
    safet_writer_free(&w);
    cr_expect_neq(export_import_hf(dir, &c, &q), ST_OK);
    cr_expect(strstr(st_message(), "transformer.wpe.weight"), "%s", st_message());
    cfg = "{\"model_type\": \"t5\"}";
    snprintf(path, sizeof path, "%s/config.json", dir);
    cr_assert_eq(fileio_write_atomic(path, cfg, strlen(cfg)), ST_OK);
    cr_expect_neq(export_import_hf(dir, &c, &q), ST_OK);
    cr_expect(strstr(st_message(), "t5"), "%s", st_message());
}

/* ---- --dtype bf16 ---------------------------------------------------------- */

static char *exported_config_json(void)
{
    char path[600], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", dir);
    cr_assert_eq(fileio_read_file(path, &text, &len), ST_OK);
    return text;
}

static void bf16_round_trip(model_config c)
{
    model_config back;
    size_t n;
    float *p = params_of(&c, &n), *q = NULL;
    cr_assert_eq(export_hf(&c, p, NULL, dir, SAFET_BF16), ST_OK, "%s", st_message());
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    safet_file *f;
    cr_assert_eq(safet_open(&f, path), ST_OK, "%s", st_message());
    int64_t stored = 0;
    for (int i = 0; i < safet_count(f); i++) {
        const safet_tensor *t = safet_at(f, i);
        cr_expect_eq(t->dtype, SAFET_BF16, "%s is %s", t->name, safet_dtype_name(t->dtype));
        stored += safet_numel(t);
    }
    safet_close(f);
    char *text = exported_config_json();
    cr_expect(strstr(text, "\"torch_dtype\":\t\"bfloat16\""), "%s", text);
    free(text);

    cr_assert_eq(export_import_hf(dir, &back, &q), ST_OK, "%s", st_message());
    cr_expect(back.family == c.family && back.n_layer == c.n_layer && back.d_model == c.d_model &&
              back.vocab_size == c.vocab_size && back.pre_ln == c.pre_ln);
    model_tensor *t, *t0;
    int nt, nt0;
    cr_assert_eq(model_full_table(&back, &t, &nt), ST_OK);
    cr_assert_eq(model_full_table(&c, &t0, &nt0), ST_OK);
    size_t total = t[nt - 1].offset + t[nt - 1].numel;
    cr_expect_eq((size_t)stored, total);
    /* the exported values by name; sinusoidal positions become the learned table they are */
    float *want = malloc(total * sizeof(float));
    for (int i = 0; i < nt; i++) {
        int j = 0;
        while (j < nt0 && strcmp(t0[j].name, t[i].name) != 0) j++;
        if (j < nt0) memcpy(want + t[i].offset, p + t0[j].offset, t[i].numel * sizeof(float));
        else {
            cr_assert(c.sinusoidal && t[i].numel == (size_t)c.max_positions * c.d_model, "%s", t[i].name);
            sinusoidal_positions(want + t[i].offset, c.max_positions, c.d_model);
        }
    }
    size_t changed = 0;
    for (size_t i = 0; i < total; i++) {
        float r = bf16_value(bf16_round(want[i]));
        cr_assert_eq(memcmp(&q[i], &r, sizeof r), 0, "parameter %zu: %a imported as %a (expected bf16 %a)", i,
                     (double)want[i], (double)q[i], (double)r);
        changed += q[i] != want[i];
    }
    cr_expect_gt(changed, total / 2, "only %zu of %zu parameters changed: not rounded?", changed, total);
    free(want);
    free(t);
    free(t0);
    free(p);
    free(q);
}

Test(export, gpt_bf16_export_imports_as_the_bf16_rounding_exactly) { bf16_round_trip(tiny(MODEL_GPT)); }
Test(export, bert_bf16_export_imports_as_the_bf16_rounding_exactly) { bf16_round_trip(tiny(MODEL_BERT)); }
Test(export, sinusoidal_positions_are_rounded_too)
{
    model_config c = tiny(MODEL_GPT);
    c.sinusoidal = 1;
    bf16_round_trip(c);
}

Test(export, dtype_names_are_fp32_and_bf16_only)
{
    safet_dtype dt = SAFET_U8;
    cr_expect_eq(export_dtype_parse("fp32", &dt), ST_OK);
    cr_expect_eq(dt, SAFET_F32);
    cr_expect_eq(export_dtype_parse("bf16", &dt), ST_OK);
    cr_expect_eq(dt, SAFET_BF16);
    const char *bad[] = {"fp16", "foo", "", "BF16", "float32"};
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(export_dtype_parse(bad[i], &dt), ST_USAGE, "%s accepted", bad[i]);
        cr_expect(strstr(st_message(), "--dtype") && strstr(st_message(), "fp32 or bf16"), "%s", st_message());
    }
    model_config c = tiny(MODEL_GPT);
    size_t n;
    float *p = params_of(&c, &n);
    cr_expect_eq(export_hf(&c, p, NULL, dir, SAFET_F16), ST_USAGE);
    free(p);
}

/* IEEE binary16 bits of x, for values binary16 holds exactly (normal or 0). */
static uint16_t f16_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7FFFFFFFu) == 0) return (uint16_t)(u >> 16);
    return (uint16_t)((u >> 16 & 0x8000) | (((u >> 23 & 0xFF) - 127 + 15) << 10) | (u >> 13 & 0x3FF));
}

Test(export, f16_files_import_exactly)
{
    model_config c = tiny(MODEL_GPT), back;
    size_t n;
    float *p = params_of(&c, &n), *q = NULL;
    for (size_t i = 0; i < n; i++) p[i] = (float)((int)(i * 37 % 255) - 127) / 256.0f;   /* exact in binary16 */
    cr_assert_eq(export_hf(&c, p, NULL, dir, SAFET_F32), ST_OK, "%s", st_message());
    model_tensor *t;
    int nt;
    cr_assert_eq(model_full_table(&c, &t, &nt), ST_OK);
    uint16_t *h = malloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = f16_bits(p[i]);
    safet_writer w;
    safet_writer_init(&w);
    for (int i = 0; i < nt; i++)
        cr_assert_eq(safet_writer_add(&w, t[i].name, SAFET_F16, t[i].ndim, t[i].shape, h + t[i].offset), ST_OK);
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(safet_writer_write(&w, path), ST_OK, "%s", st_message());
    safet_writer_free(&w);
    cr_assert_eq(export_import_hf(dir, &back, &q), ST_OK, "%s", st_message());
    cr_expect(memcmp(p, q, n * sizeof(float)) == 0, "F16 parameters did not widen exactly");
    free(h);
    free(t);
    free(p);
    free(q);
}

/* ---- model_fields in config.json (model/model_config.h) ----------------------- */

/* c's initial parameters, exported to dir as F32 (the caller frees them). */
static float *export_tiny(const model_config *c)
{
    size_t n;
    float *p = params_of(c, &n);
    cr_assert_eq(export_hf(c, p, NULL, dir, SAFET_F32), ST_OK, "%s", st_message());
    return p;
}

static model_config tiny_llama(void)
{
    model_config c = tiny(MODEL_LLAMA);
    c.pre_ln = 1, c.dropout = 0.0f, c.n_kv_head = 1, c.norm_eps = 1e-6f, c.rope_theta = 500.0f, c.tie_embeddings = 1;
    return c;
}

/* Every field config.json names comes back as it went out, for each family. */
Test(export, every_field_config_json_names_round_trips)
{
    model_config cs[] = {tiny(MODEL_GPT), tiny(MODEL_BERT), tiny_llama()};
    cs[0].seq_len = 10;
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        const model_config *c = &cs[k];
        model_config back;
        float *p = export_tiny(c), *q = NULL;
        cr_assert_eq(export_import_hf(dir, &back, &q), ST_OK, "%s", st_message());
        for (int i = 0; i < MODEL_N_FIELDS; i++) {
            const model_field *f = &model_fields[i];
            if (!model_field_of(f, c->family) || (!f->hf[c->family] && f->type != MODEL_FIELD_FAMILY)) continue;
            char a[32], b[32];
            model_field_format(f, c, a, sizeof a);
            model_field_format(f, &back, b, sizeof b);
            cr_expect_str_eq(b, a, "%s: model.%s", model_family_name(c->family), f->key.key);
        }
        free(p);
        free(q);
    }
}

/* LlamaForCausalLM's config.json keys, as transformers names them. */
Test(export, llama_config_json_uses_transformers_keys)
{
    model_config c = tiny_llama();
    float *p = export_tiny(&c);
    char *text = exported_config_json();
    const char *want[] = {"\"LlamaForCausalLM\"", "\"model_type\":\t\"llama\"", "\"hidden_size\":\t16",
                          "\"intermediate_size\":\t40", "\"num_hidden_layers\":\t2", "\"num_attention_heads\":\t2",
                          "\"num_key_value_heads\":\t1", "\"max_position_embeddings\":\t12", "\"vocab_size\":\t30",
                          "\"rms_norm_eps\":\t1e-06", "\"rope_theta\":\t500", "\"tie_word_embeddings\":\ttrue",
                          "\"hidden_act\":\t\"silu\"", "\"mpilm_seq_len\":\t12"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) cr_expect(strstr(text, want[i]), "no %s in %s", want[i], text);
    free(text);
    free(p);
}

/* config.json as export wrote it, less KEYS (NULL-terminated). */
static void drop_config_keys(const char *const *keys)
{
    char path[600], *text = exported_config_json();
    cJSON *j = cJSON_Parse(text);
    free(text);
    for (int i = 0; keys[i]; i++) {
        cr_assert(cJSON_GetObjectItemCaseSensitive(j, keys[i]), "export wrote no %s", keys[i]);
        cJSON_DeleteItemFromObjectCaseSensitive(j, keys[i]);
    }
    text = cJSON_Print(j);
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/config.json", dir);
    cr_assert_eq(fileio_write_atomic(path, text, strlen(text)), ST_OK);
    free(text);
}

/* Keys transformers' config classes may omit get transformers' defaults:
 * GPT-2's n_inner 4 n_embd, Llama's num_key_value_heads = num_attention_heads,
 * rope_theta 10000, untied; no mpilm_seq_len: min(positions, 512). */
Test(export, optional_keys_absent_from_config_json_take_transformers_defaults)
{
    model_config c = tiny(MODEL_GPT), back;
    c.d_ff = 64;
    float *p = export_tiny(&c), *q = NULL;
    drop_config_keys((const char *[]){"n_inner", "mpilm_seq_len", NULL});
    cr_assert_eq(export_import_hf(dir, &back, &q), ST_OK, "%s", st_message());
    cr_expect(back.d_ff == 64 && back.seq_len == 12, "d_ff %d (expected 4 x 16), seq_len %d", back.d_ff, back.seq_len);
    free(p), free(q), q = NULL;

    c = tiny_llama();
    c.n_kv_head = 2, c.rope_theta = 10000.0f, c.tie_embeddings = 0;
    p = export_tiny(&c);
    drop_config_keys((const char *[]){"num_key_value_heads", "rope_theta", "tie_word_embeddings", NULL});
    cr_assert_eq(export_import_hf(dir, &back, &q), ST_OK, "%s", st_message());
    cr_expect(back.n_kv_head == 2 && back.rope_theta == 10000.0f && !back.tie_embeddings && back.norm_eps == 1e-6f,
              "n_kv_head %d, rope_theta %g, tie %d, norm_eps %g", back.n_kv_head, back.rope_theta,
              back.tie_embeddings, back.norm_eps);
    free(p), free(q);

    /* a required one is named */
    p = export_tiny(&c);
    drop_config_keys((const char *[]){"rms_norm_eps", NULL});
    cr_expect_eq(export_import_hf(dir, &back, &q), ST_FORMAT);
    cr_expect(strstr(st_message(), "config.json: \"rms_norm_eps\" is missing or not a number"), "%s", st_message());
    free(p);
}

/* ckpt/export: Hugging Face model.safetensors + config.json; export then
 * import gives back the same model; Hugging Face's names and shapes; models
 * Hugging Face cannot express are refused; damaged input is named. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/synth_dataset.h"
#include "base/fileio.h"
#include "ckpt/export.h"
#include "ckpt/safetensors.h"
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
    cr_assert_eq(export_hf(&c, p, NULL, dir), ST_OK, "%s", st_message());
    cr_assert_eq(import_hf(dir, &back, &q), ST_OK, "%s", st_message());
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
    cr_assert_eq(export_hf(&c, p, NULL, dir), ST_OK, "%s", st_message());
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
    cr_assert_eq(read_file(path, &text, &len), ST_OK);
    cr_expect(strstr(text, "\"GPT2LMHeadModel\"") && strstr(text, "\"gelu_new\"") && strstr(text, "\"n_inner\":\t40"),
              "%s", text);
    free(text);
    free(p);
}

Test(export, sinusoidal_positions_become_the_position_table)
{
    model_config c = tiny(MODEL_BERT), back;
    c.sinusoidal = 1;
    size_t n;
    float *p = params_of(&c, &n), *q = NULL;
    cr_assert_eq(export_hf(&c, p, NULL, dir), ST_OK, "%s", st_message());
    cr_assert_eq(import_hf(dir, &back, &q), ST_OK, "%s", st_message());
    cr_expect(!back.sinusoidal, "Hugging Face has only learned positions");
    model_tensor *t;
    int nt;
    cr_assert_eq(model_full_table(&back, &t, &nt), ST_OK);
    float pe[12 * 16];
    sinusoidal_positions(pe, 12, 16);
    for (int i = 0; i < nt; i++)
        if (strcmp(t[i].name, "bert.embeddings.position_embeddings.weight") == 0)
            cr_expect(memcmp(q + t[i].offset, pe, sizeof pe) == 0);
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
    cr_expect_eq(export_hf(&c, p, NULL, dir), ST_USAGE);
    cr_expect(strstr(st_message(), "pre-LN") && strstr(st_message(), "BertForPreTraining"), "%s", st_message());
    free(p);
}

Test(export, import_names_what_is_missing)
{
    model_config c;
    float *q = NULL;
    cr_expect_neq(import_hf(dir, &c, &q), ST_OK);
    cr_expect(strstr(st_message(), "config.json"), "%s", st_message());
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *cfg = "{\"model_type\": \"gpt2\", \"n_embd\": 16, \"n_layer\": 1, \"n_head\": 2, "
                      "\"n_positions\": 8, \"vocab_size\": 30}";
    cr_assert_eq(atomic_write_file(path, cfg, strlen(cfg)), ST_OK);
    safet_writer w;
    safet_writer_init(&w);
    float x[30 * 16] = {0};
    int64_t shape[2] = {30, 16};
    safet_writer_add(&w, "transformer.wte.weight", SAFET_F32, 2, shape, x);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(safet_writer_write(&w, path), ST_OK);
    safet_writer_free(&w);
    cr_expect_neq(import_hf(dir, &c, &q), ST_OK);
    cr_expect(strstr(st_message(), "transformer.wpe.weight"), "%s", st_message());
    cfg = "{\"model_type\": \"t5\"}";
    snprintf(path, sizeof path, "%s/config.json", dir);
    cr_assert_eq(atomic_write_file(path, cfg, strlen(cfg)), ST_OK);
    cr_expect_neq(import_hf(dir, &c, &q), ST_OK);
    cr_expect(strstr(st_message(), "t5"), "%s", st_message());
}

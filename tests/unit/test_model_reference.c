/* model + optim against PyTorch: the fixtures of tests/reference (a tiny BERT
 * and GPT built from torch.nn modules, in Hugging Face names and layouts).
 * Everything must agree to max|a-b| / (max|b| + 1e-6) <= 1e-4: logits,
 * losses, every parameter gradient, and the parameters after 3 AdamW steps
 * with warm-up, cosine decay and clipping. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/safetensors.h"
#include "../common/fixture.h"
#include "model/model.h"
#include "optim/optim.h"
#include "tensor/tensor.h"

#define TOL 1e-4

static const char *meta(const safet_file *f, const char *k)
{
    const char *v = safet_metadata(f, k);
    cr_assert(v, "fixture lacks metadata %s", k);
    return v;
}

/* max|a-b| / (max|b| + 1e-6) */
static double rel_err(const float *a, const float *b, size_t n)
{
    double d = 0.0, m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        d = e > d ? e : d;
        m = fabs(b[i]) > m ? fabs(b[i]) : m;
    }
    return d / (m + 1e-6);
}

static float *read_f32(const safet_file *f, const char *name, size_t n)
{
    float *x = malloc(n * sizeof *x);
    cr_assert_eq(safet_read_f32(f, name, x, (int64_t)n), ST_OK, "%s", st_message());
    return x;
}

static void read_i32(const safet_file *f, const char *name, int32_t *dst, size_t n)
{
    const safet_tensor *t = safet_find(f, name);
    cr_assert(t && t->dtype == SAFET_I32 && (size_t)safet_numel(t) == n, "fixture tensor %s", name);
    memcpy(dst, safet_data(f, t), n * sizeof(int32_t));
}

/* Compares tensor by tensor: prefix.NAME of the fixture against buf. */
static void expect_tensors(const safet_file *f, model_stage *m, const float *buf, const char *prefix)
{
    for (int i = 0; i < model_n_tensors(m); i++) {
        const model_tensor *t = model_tensor_at(m, i);
        char name[128];
        snprintf(name, sizeof name, "%s.%s", prefix, t->name);
        float *ref = read_f32(f, name, t->numel);
        double e = rel_err(buf + t->offset, ref, t->numel);
        cr_expect(e <= TOL, "%s: relative error %g", name, e);
        free(ref);
    }
}

static double total_loss(const model_losses *l)
{
    if (l->lm_count) return l->lm_loss_sum / l->lm_count;
    return l->mlm_loss_sum / l->mlm_count + l->nsp_loss_sum / l->nsp_count;
}

static void check_fixture(const char *file)
{
    tensor_runtime rt;
    tensor_runtime_init(1, 1, &rt);
    safet_file *f;
    cr_assert_eq(safet_open(&f, file), ST_OK, "%s", st_message());
    model_config c;
    optim_config o;
    cr_assert_eq(fixture_configs(f, &c, &o), ST_OK, "%s", st_message());
    int B = atoi(meta(f, "batch")), T = c.seq_len, V = c.vocab_size;
    model_stage *m;
    cr_assert_eq(model_stage_create(&m, &c, 0, c.n_layer, B, 1), ST_OK, "%s", st_message());
    for (int i = 0; i < model_n_tensors(m); i++) {
        const model_tensor *t = model_tensor_at(m, i);
        char name[128];
        snprintf(name, sizeof name, "param.%s", t->name);
        cr_assert_eq(safet_read_f32(f, name, model_params(m) + t->offset, (int64_t)t->numel), ST_OK,
                     "%s", st_message());
    }
    batch b;
    batch_alloc(&b, B, T);
    size_t N = (size_t)B * T;
    read_i32(f, "input_ids", b.input_ids, N);
    read_i32(f, "labels", b.labels, N);
    if (c.family == MODEL_BERT) {
        read_i32(f, "token_type_ids", b.token_type_ids, N);
        read_i32(f, "attention_mask", b.attention_mask, N);
        read_i32(f, "next_sentence_label", b.next_sentence_label, (size_t)B);
    }
    float *logits = calloc(N * V, sizeof(float)), nsp[64];
    model_pass pass = {.train = 1, .loss_scale = 1.0f, .logits = logits,
                       .nsp_logits = c.family == MODEL_BERT ? nsp : NULL};
    model_losses l = {0};
    memset(model_grads(m), 0, model_n_params(m) * sizeof(float));
    cr_assert_eq(model_forward(m, 0, &b, &pass, &l), ST_OK, "%s", st_message());
    cr_assert_eq(model_backward(m, 0, &b, &pass), ST_OK, "%s", st_message());

    float *ref = read_f32(f, "logits", N * V);
    cr_expect(rel_err(logits, ref, N * V) <= TOL, "logits: relative error %g", rel_err(logits, ref, N * V));
    free(ref);
    float loss = (float)total_loss(&l);
    ref = read_f32(f, "loss", 1);
    cr_expect(rel_err(&loss, ref, 1) <= TOL, "loss %g vs %g", loss, ref[0]);
    free(ref);
    if (c.family == MODEL_BERT) {
        ref = read_f32(f, "nsp_logits", (size_t)B * 2);
        cr_expect(rel_err(nsp, ref, (size_t)B * 2) <= TOL, "nsp logits");
        free(ref);
        float mlm = (float)(l.mlm_loss_sum / l.mlm_count), ns = (float)(l.nsp_loss_sum / l.nsp_count);
        ref = read_f32(f, "mlm_loss", 1);
        cr_expect(rel_err(&mlm, ref, 1) <= TOL, "mlm loss %g vs %g", mlm, ref[0]);
        free(ref);
        ref = read_f32(f, "nsp_loss", 1);
        cr_expect(rel_err(&ns, ref, 1) <= TOL, "nsp loss %g vs %g", ns, ref[0]);
        free(ref);
    }
    expect_tensors(f, m, model_grads(m), "grad");

    /* three AdamW steps on the same batch, the training path (no logits kept) */
    size_t n = model_n_params(m);
    float *mom = calloc(n, sizeof(float)), *var = calloc(n, sizeof(float));
    float *loss_ref = read_f32(f, "loss_steps", 3), *norm_ref = read_f32(f, "grad_norm_steps", 3);
    float *lr_ref = read_f32(f, "lr_steps", 3);
    pass.logits = NULL;
    pass.nsp_logits = NULL;
    for (int t = 1; t <= 3; t++) {
        memset(model_grads(m), 0, n * sizeof(float));
        model_losses ls = {0};
        cr_assert_eq(model_forward(m, 0, &b, &pass, &ls), ST_OK, "%s", st_message());
        cr_assert_eq(model_backward(m, 0, &b, &pass), ST_OK, "%s", st_message());
        float lt = (float)total_loss(&ls), norm = (float)sqrt(optim_sum_squares(model_grads(m), n));
        float lr = (float)optim_lr(&o, t);
        cr_expect(rel_err(&lt, &loss_ref[t - 1], 1) <= TOL, "step %d loss %g vs %g", t, lt, loss_ref[t - 1]);
        cr_expect(rel_err(&norm, &norm_ref[t - 1], 1) <= TOL, "step %d grad norm %g vs %g", t, norm, norm_ref[t - 1]);
        cr_expect(rel_err(&lr, &lr_ref[t - 1], 1) <= 1e-6, "step %d lr %g vs %g", t, lr, lr_ref[t - 1]);
        float clip = optim_clip_factor(&o, norm);
        cr_expect(clip < 1.0f, "clipping is active in the fixture");
        for (int i = 0; i < model_n_tensors(m); i++) {
            const model_tensor *tt = model_tensor_at(m, i);
            optim_adamw(&o, t, lr, model_params(m) + tt->offset, model_grads(m) + tt->offset, mom + tt->offset,
                        var + tt->offset, tt->numel, tt->decay, clip);
        }
    }
    expect_tensors(f, m, model_params(m), "step3");
    free(loss_ref);
    free(norm_ref);
    free(lr_ref);
    free(mom);
    free(var);
    free(logits);
    batch_free(&b);
    model_stage_free(m);
    safet_close(f);
}

Test(model_reference, gpt_matches_pytorch) { check_fixture("tests/reference/fixtures/gpt-tiny.safetensors"); }
Test(model_reference, bert_matches_pytorch) { check_fixture("tests/reference/fixtures/bert-tiny.safetensors"); }

/* model: whole-model gradients against finite differences, stage composition
 * (a pipeline split computes what one stage computes), recompute, dropout
 * determinism, bad batches. The comparison against PyTorch is in
 * test_model_reference.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "model/model.h"
#include "model/model_tp.h"
#include "tensor/bf16.h"
#include "tensor/tensor.h"

static model_config tiny(model_family f)
{
    model_config c = {.family = f, .n_layer = 2, .d_model = 16, .n_head = 2, .d_ff = 24,
                      .seq_len = 6, .max_positions = 8, .vocab_size = 19,
                      .pre_ln = f != MODEL_BERT};
    if (f == MODEL_LLAMA) { /* query heads 0, 1 share kv head 0, heads 2, 3 kv head 1 */
        c.d_model = 24;
        c.n_head = 4;
        c.n_kv_head = 2;
        c.norm_eps = 1e-5f;
        c.rope_theta = 100.0f;
    }
    return c;
}

static void fill_batch(batch *b, model_family f, int V)
{
    rng_key k = rng_key_make(5, RNG_TEST);
    int N = b->B * b->T;
    for (int i = 0; i < N; i++) {
        uint32_t r[4];
        rng_bits(k, (uint64_t)i, 0, 0, r);
        b->input_ids[i] = (int32_t)rng_below(r[0], (uint32_t)V);
        b->token_type_ids[i] = f == MODEL_BERT && (i % b->T) >= b->T / 2;
        b->attention_mask[i] = 1;
        b->labels[i] = LABEL_IGNORE;
        if (f == MODEL_BERT && rng_below(r[1], 3) == 0) b->labels[i] = (int32_t)rng_below(r[2], (uint32_t)V);
    }
    for (int s = 0; s < b->B; s++) {
        b->next_sentence_label[s] = s % 2;
        for (int t = 0; f != MODEL_BERT && t + 1 < b->T; t++)
            b->labels[s * b->T + t] = b->input_ids[s * b->T + t + 1];
    }
    if (f == MODEL_BERT) { /* padding at the tail of the last sequence */
        for (int t = b->T - 2; t < b->T; t++) {
            b->attention_mask[(b->B - 1) * b->T + t] = 0;
            b->labels[(b->B - 1) * b->T + t] = LABEL_IGNORE;
        }
        b->labels[1] = 4; /* at least one masked position */
    }
}

static double mean_loss(const model_losses *l)
{
    if (l->lm_count) return l->lm_loss_sum / l->lm_count;
    return (l->mlm_count ? l->mlm_loss_sum / l->mlm_count : 0.0) + l->nsp_loss_sum / l->nsp_count;
}

/* Forward (and backward) through stages in order, passing activations. */
static double run(model_stage **st, int n, const batch *b, model_pass *pass, int backward)
{
    model_losses l = {0};
    for (int i = 0; i < n; i++) {
        if (i > 0) {
            size_t bytes = (size_t)b->B * b->T * model_stage_config(st[i])->d_model * sizeof(float);
            memcpy(model_stage_input(st[i], 0), model_stage_output(st[i - 1], 0), bytes);
        }
        cr_assert_eq(model_forward(st[i], 0, b, pass, &l), ST_OK, "%s", st_message());
    }
    for (int i = n - 1; backward && i >= 0; i--) {
        if (i < n - 1) {
            size_t bytes = (size_t)b->B * b->T * model_stage_config(st[i])->d_model * sizeof(float);
            memcpy(model_stage_doutput(st[i], 0), model_stage_dinput(st[i + 1], 0), bytes);
        }
        cr_assert_eq(model_backward(st[i], 0, b, pass), ST_OK, "%s", st_message());
    }
    return mean_loss(&l);
}

static void init(void) { tensor_runtime rt; tensor_runtime_init(1, 1, &rt); }

static void check_gradients(model_config c)
{
    init();
    model_stage *m;
    cr_assert_eq(model_stage_create(&m, &c, 0, c.n_layer, 2, 1), ST_OK, "%s", st_message());
    model_init_params(m, 42);
    /* non-trivial LayerNorm and bias values so every parameter matters */
    float *p = model_params(m);
    for (int i = 0; i < model_n_tensors(m); i++) {
        const model_tensor *t = model_tensor_at(m, i);
        if (t->ndim == 1) rng_fill_normal(rng_key_make(9, RNG_TEST), (uint64_t)i, 0.1f, p + t->offset, t->numel);
        if (t->ndim == 1 && strstr(t->name, "weight"))
            for (size_t j = 0; j < t->numel; j++) p[t->offset + j] += 1.0f;
    }
    for (int i = 0; i < model_n_tensors(m); i++) {
        const model_tensor *t = model_tensor_at(m, i);
        if (t->ndim == 2) for (size_t j = 0; j < t->numel; j++) p[t->offset + j] *= 10.0f;
    }
    batch b;
    batch_alloc(&b, 2, c.seq_len);
    fill_batch(&b, c.family, c.vocab_size);
    model_pass pass = {.train = 1, .seed = 1, .loss_scale = 1.0f};
    memset(model_grads(m), 0, model_n_params(m) * sizeof(float));
    run(&m, 1, &b, &pass, 1);
    float *g = malloc(model_n_params(m) * sizeof(float));
    memcpy(g, model_grads(m), model_n_params(m) * sizeof(float));
    model_pass eval = pass;
    eval.train = 0;
    double worst = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < model_n_tensors(m); i++) {
        const model_tensor *t = model_tensor_at(m, i);
        for (size_t j = 0; j < t->numel; j += t->numel / 5 + 1) {
            size_t at = t->offset + j;
            float keep = p[at], h = 1e-2f;
            p[at] = keep + h;
            double lp = run(&m, 1, &b, &eval, 0);
            p[at] = keep - h;
            double lm = run(&m, 1, &b, &eval, 0);
            p[at] = keep;
            double num = (lp - lm) / (2.0 * h);
            double err = fabs(num - g[at]) / (fabs(num) + fabs(g[at]) + 1e-3);
            if (err > worst) { worst = err; worst_name = t->name; }
        }
    }
    cr_expect(worst < 3e-2, "gradient of %s disagrees with finite differences (relative %g)", worst_name, worst);
    free(g);
    batch_free(&b);
    model_stage_free(m);
}

Test(model, gpt_gradients_match_finite_differences) { check_gradients(tiny(MODEL_GPT)); }
Test(model, bert_gradients_match_finite_differences) { check_gradients(tiny(MODEL_BERT)); }

Test(model, llama_gradients_match_finite_differences) { check_gradients(tiny(MODEL_LLAMA)); }

Test(model, llama_tied_gradients_match_finite_differences)
{
    model_config c = tiny(MODEL_LLAMA);
    c.tie_embeddings = 1;
    c.n_kv_head = 4;
    check_gradients(c);
}

Test(model, bert_sinusoidal_pre_ln_gradients_match_finite_differences)
{
    model_config c = tiny(MODEL_BERT);
    c.sinusoidal = 1;
    c.pre_ln = 1;
    check_gradients(c);
}

/* Copies every tensor of src into the tensor of the same name in dst. */
static void copy_by_name(model_stage *dst, model_stage *src)
{
    for (int i = 0; i < model_n_tensors(dst); i++) {
        const model_tensor *t = model_tensor_at(dst, i);
        const model_tensor *s = model_tensor_find(src, t->name);
        cr_assert(s, "%s missing", t->name);
        memcpy(model_params(dst) + t->offset, model_params(src) + s->offset, t->numel * sizeof(float));
    }
}

static void check_split(model_family f, int recompute)
{
    init();
    model_config c = tiny(f);
    c.n_layer = 3;
    c.dropout = 0.2f;
    model_stage *whole, *st[3];
    cr_assert_eq(model_stage_create(&whole, &c, 0, 3, 2, 1), ST_OK);
    model_init_params(whole, 7);
    c.recompute = recompute;
    cr_assert_eq(model_stage_create(&st[0], &c, 0, 1, 2, 2), ST_OK);
    cr_assert_eq(model_stage_create(&st[1], &c, 1, 2, 2, 2), ST_OK);
    cr_assert_eq(model_stage_create(&st[2], &c, 2, 3, 2, 2), ST_OK);
    for (int i = 0; i < 3; i++) model_init_params(st[i], 7); /* the same values by name... */
    /* ...which copy_by_name must not change */
    float *before = malloc(model_n_params(st[2]) * sizeof(float));
    memcpy(before, model_params(st[2]), model_n_params(st[2]) * sizeof(float));
    copy_by_name(st[2], whole);
    cr_expect(memcmp(before, model_params(st[2]), model_n_params(st[2]) * sizeof(float)) == 0,
              "initialisation depends on the split");
    batch b;
    batch_alloc(&b, 2, c.seq_len);
    fill_batch(&b, f, c.vocab_size);
    model_pass pass = {.train = 1, .seed = 3, .sample0 = 10, .loss_scale = 1.0f};
    double l1 = run(&whole, 1, &b, &pass, 1);
    double l3 = run(st, 3, &b, &pass, 1);
    cr_expect(fabs(l1 - l3) < 1e-6, "split loss %g vs %g", l3, l1);
    double worst = 0.0;
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < model_n_tensors(st[s]); i++) {
            const model_tensor *t = model_tensor_at(st[s], i);
            const model_tensor *w = model_tensor_find(whole, t->name);
            for (size_t j = 0; j < t->numel; j++) {
                float a = model_grads(st[s])[t->offset + j];
                /* the tied embedding's gradient is split between the first and last stage */
                if (t->tied && s == 0) a += model_grads(st[2])[model_tensor_find(st[2], t->name)->offset + j];
                if (t->tied_copy) continue;
                double e = fabs(a - model_grads(whole)[w->offset + j]);
                if (e > worst) worst = e;
            }
        }
    cr_expect(worst < 1e-5, "split gradients differ by %g", worst);
    free(before);
    batch_free(&b);
    for (int i = 0; i < 3; i++) model_stage_free(st[i]);
    model_stage_free(whole);
}

Test(model, gpt_three_stages_compute_what_one_stage_computes) { check_split(MODEL_GPT, 0); }
Test(model, bert_three_stages_compute_what_one_stage_computes) { check_split(MODEL_BERT, 0); }
Test(model, llama_three_stages_compute_what_one_stage_computes) { check_split(MODEL_LLAMA, 0); }
Test(model, recompute_gives_the_same_gradients)
{
    for (int r = RECOMPUTE_FULL; r <= RECOMPUTE_LAST; r++) {
        check_split(MODEL_GPT, r);
        check_split(MODEL_BERT, r);
        check_split(MODEL_LLAMA, r);
    }
}

/* A bf16 stage with recomputation (true: each block's activations; ffn: the
 * FFN's pre-activation; attention: the attention output; ffn+attention:
 * both) remakes them kept in bf16 where the stage keeps them
 * so (q | k | v, the FFN's pre-activation, the attention output) and remade
 * where it remakes them (the pre-norm outputs): bitwise the same loss and
 * gradients as without (dropout on, so the masks must be remade alike too). */
static void check_recompute(model_family f, int half)
{
    init();
    model_config c = tiny(f);
    c.dropout = 0.2f;
    c.bf16 = half;
    model_stage *st[RECOMPUTE_LAST + 1];
    for (int r = RECOMPUTE_NONE; r <= RECOMPUTE_LAST; r++) {
        c.recompute = r;
        cr_assert_eq(model_stage_create(&st[r], &c, 0, c.n_layer, 2, 1), ST_OK, "%s", st_message());
        model_init_params(st[r], 7);
    }
    batch b;
    batch_alloc(&b, 2, c.seq_len);
    fill_batch(&b, f, c.vocab_size);
    model_pass pass = {.train = 1, .seed = 3, .sample0 = 10, .loss_scale = 1.0f};
    double l0 = run(&st[0], 1, &b, &pass, 1);
    for (int r = RECOMPUTE_FULL; r <= RECOMPUTE_LAST; r++) {
        double l = run(&st[r], 1, &b, &pass, 1);
        const char *name = model_recompute_name(r);
        cr_expect(l0 == l, "family %d bf16 %d: loss %.9g with recompute = %s, %.9g without", (int)f, half, l, name,
                  l0);
        cr_expect(memcmp(model_grads(st[0]), model_grads(st[r]), model_n_params(st[0]) * sizeof(float)) == 0,
                  "family %d bf16 %d: gradients differ with recompute = %s", (int)f, half, name);
    }
    batch_free(&b);
    for (int r = RECOMPUTE_NONE; r <= RECOMPUTE_LAST; r++) model_stage_free(st[r]);
}

/* What each value of model.recompute keeps: attention drops each block's
 * attention output (N x C floats, or its bf16 copy in a bf16 stage) from
 * every slot, ffn the FFN's pre-activation, ffn+attention both, true all but
 * each block's input. */
Test(model, recompute_keeps_less)
{
    init();
    for (int f = MODEL_GPT; f <= MODEL_LLAMA; f++)
        for (int half = 0; half <= bf16_cpu_supported(NULL); half++) {
            model_config c = tiny((model_family)f);
            c.bf16 = half;
            size_t bytes[RECOMPUTE_LAST + 1];
            for (int r = RECOMPUTE_NONE; r <= RECOMPUTE_LAST; r++) {
                model_stage *m;
                c.recompute = r;
                cr_assert_eq(model_stage_create(&m, &c, 0, c.n_layer, 2, 2), ST_OK, "%s", st_message());
                bytes[r] = model_stage_arena_bytes(m);
                model_stage_free(m);
            }
            size_t N = 2 * (size_t)c.seq_len, atty = N * c.d_model * (half ? 2 : 4);
            cr_expect_eq(bytes[RECOMPUTE_NONE] - bytes[RECOMPUTE_ATTENTION], 2 * c.n_layer * atty,
                         "family %d bf16 %d: attention keeps %zu bytes instead of %zu", f, half,
                         bytes[RECOMPUTE_ATTENTION], bytes[RECOMPUTE_NONE] - 2 * c.n_layer * atty);
            cr_expect_eq(bytes[RECOMPUTE_FFN] - bytes[RECOMPUTE_FFN_ATTENTION], 2 * c.n_layer * atty,
                         "family %d bf16 %d", f, half);
            cr_expect_lt(bytes[RECOMPUTE_FFN], bytes[RECOMPUTE_ATTENTION], "family %d bf16 %d", f, half);
            cr_expect_lt(bytes[RECOMPUTE_FULL], bytes[RECOMPUTE_FFN_ATTENTION], "family %d bf16 %d", f, half);
        }
}

Test(model, bf16_recompute_gives_bitwise_the_same_gradients)
{
    if (!bf16_cpu_supported(NULL)) cr_skip_test("the CPU has no AVX512-BF16");
    check_recompute(MODEL_GPT, 1);
    check_recompute(MODEL_BERT, 1);
    check_recompute(MODEL_LLAMA, 1);
}

/* The same in fp32: a block's forward run again (true), the FFN's first GEMM
 * (ffn) or the attention kernel (attention) run again on the same inputs
 * gives bitwise the same values. */
Test(model, fp32_recompute_gives_bitwise_the_same_gradients)
{
    check_recompute(MODEL_GPT, 0);
    check_recompute(MODEL_BERT, 0);
    check_recompute(MODEL_LLAMA, 0);
}

/* poll: records the finished gradient ranges in the order reported */
typedef struct ranges { int n, polls; size_t lo[16], hi[16]; } ranges;
static void record_range(void *ctx, size_t lo, size_t hi)
{
    ranges *r = ctx;
    r->polls++;
    if (lo < hi && r->n < 16) r->lo[r->n] = lo, r->hi[r->n++] = hi;
}

/* model_head after a forward with defer_head gives the fused forward's loss
 * and gradients bit for bit; poll reports the heads, each block and the
 * embeddings as finished, from the end of the buffer down to 0. */
/* Two whole stages of c with the same parameters, and a batch for them. */
static void twin_stages(const model_config *c, model_stage **a, model_stage **d, batch *b)
{
    cr_assert_eq(model_stage_create(a, c, 0, c->n_layer, 2, 1), ST_OK, "%s", st_message());
    cr_assert_eq(model_stage_create(d, c, 0, c->n_layer, 2, 1), ST_OK, "%s", st_message());
    model_init_params(*a, 3);
    model_init_params(*d, 3);
    batch_alloc(b, 2, c->seq_len);
    fill_batch(b, c->family, c->vocab_size);
}

static void check_deferred_head(model_family f)
{
    init();
    model_config c = tiny(f);
    c.dropout = 0.1f;
    model_stage *a, *d;
    batch b;
    twin_stages(&c, &a, &d, &b);
    model_pass pass = {.train = 1, .seed = 3, .sample0 = 4, .loss_scale = 1.0f};
    double fused = run(&a, 1, &b, &pass, 1);
    ranges r = {0};
    model_pass later = pass;
    later.defer_head = 1;
    later.poll = record_range;
    later.poll_ctx = &r;
    model_losses none = {0}, l = {0};
    cr_assert_eq(model_forward(d, 0, &b, &later, &none), ST_OK, "%s", st_message());
    cr_expect(none.lm_count + none.mlm_count + none.nsp_count == 0, "the deferred forward ran the heads");
    cr_assert_eq(model_head(d, 0, &b, &later, &l), ST_OK, "%s", st_message());
    cr_assert_eq(model_backward(d, 0, &b, &later), ST_OK, "%s", st_message());
    cr_expect(mean_loss(&l) == fused, "deferred loss %.9g, fused %.9g", mean_loss(&l), fused);
    cr_expect(memcmp(model_grads(a), model_grads(d), model_n_params(a) * sizeof(float)) == 0,
              "the deferred heads give other gradients");
    cr_expect(r.polls > 2 * c.n_layer, "poll was called %d times", r.polls);
    cr_assert_eq(r.n, c.n_layer + 2, "%d finished ranges", r.n);
    cr_expect(r.hi[0] == model_n_params(d) && r.lo[r.n - 1] == 0, "ranges do not cover the buffer");
    for (int i = 1; i < r.n; i++) cr_expect(r.hi[i] == r.lo[i - 1], "range %d is not adjacent below %d", i, i - 1);
    /* a stage without the heads refuses model_head */
    model_stage *mid;
    cr_assert_eq(model_stage_create(&mid, &c, 0, 1, 2, 1), ST_OK);
    cr_expect_eq(model_head(mid, 0, &b, &later, &l), ST_ERROR);
    model_stage_free(mid);
    batch_free(&b);
    model_stage_free(a);
    model_stage_free(d);
}

Test(model, deferred_heads_match_the_fused_forward)
{
    check_deferred_head(MODEL_GPT);
    check_deferred_head(MODEL_BERT);
    check_deferred_head(MODEL_LLAMA);
}

/* With pass.head_dw_wait the output weight's gradient of 30 micro-batches'
 * rows is made once per full logits buffer (HEAD_ROWS rows; GPT's and
 * Llama's 10 rows a micro-batch overflow it) and at the last micro-batch, or
 * (flush = 1: the last one waits too) by model_head_flush after its
 * backward: the same gradients as making it every micro-batch, to the
 * summation order (the loss bitwise); before the last micro-batch (before
 * the flush) it is incomplete and poll has not reported the heads' range; an
 * evaluation pass between them is refused. */
static void check_head_dw_wait(model_family f, int half, int flush)
{
    init();
    model_config c = tiny(f);
    c.dropout = 0.1f;
    c.bf16 = half;
    model_stage *a, *d;
    batch b;
    twin_stages(&c, &a, &d, &b);
    enum { M = 30 };
    size_t n = model_n_params(a);
    const char *out_w = f == MODEL_GPT    ? "transformer.wte.weight"
                        : f == MODEL_BERT ? "bert.embeddings.word_embeddings.weight"
                                          : "lm_head.weight";
    const model_tensor *wt = model_tensor_find(a, out_w);
    cr_assert(wt);
    for (int mb = 0; mb < M; mb++) {
        model_pass now = {.train = 1, .seed = 3, .sample0 = 2 * (uint64_t)mb, .loss_scale = 1.0f / M};
        model_pass wait = now;
        wait.head_dw_wait = mb < M - 1 || flush;
        ranges r = {0};
        wait.poll = record_range;
        wait.poll_ctx = &r;
        double la = run(&a, 1, &b, &now, 1), ld = run(&d, 1, &b, &wait, 1);
        cr_assert(la == ld, "family %d bf16 %d micro-batch %d: loss %.9g, waiting %.9g", f, half, mb, la, ld);
        int heads_reported = r.n > 0 && r.hi[0] == n;
        if (mb == M - 1 && flush) {
            cr_expect(!heads_reported, "family %d bf16 %d: the heads were reported final with rows held", f, half);
            model_losses l = {0};
            cr_expect_eq(model_forward(d, 0, &b, &(model_pass){.seed = 3}, &l), ST_ERROR);
            cr_assert_eq(model_head_flush(d, &wait), ST_OK, "%s", st_message());
            cr_expect(r.n > 0 && r.hi[r.n - 1] == n, "family %d bf16 %d: the flush did not report the heads", f,
                      half);
            cr_expect_eq(model_head_flush(d, &wait), ST_OK, "a second flush has nothing to do");
        } else if (mb == M - 1) {
            cr_expect(heads_reported, "family %d bf16 %d: the complete heads were not reported", f, half);
        }
        if (mb == M - 2) {
            cr_expect(memcmp(model_grads(a) + wt->offset, model_grads(d) + wt->offset, wt->numel * sizeof(float)),
                      "family %d bf16 %d: the output weight's gradient did not wait", f, half);
            model_pass eval = {.seed = 3};
            model_losses l = {0};
            cr_expect_eq(model_forward(d, 0, &b, &eval, &l), ST_ERROR, "family %d: an evaluation ran between the "
                         "micro-batches of a step whose head gradient waits", f);
        }
    }
    double worst = 0, big = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(model_grads(a)[i] - model_grads(d)[i]);
        if (e > worst) worst = e;
        if (fabs(model_grads(a)[i]) > big) big = fabs(model_grads(a)[i]);
    }
    cr_expect(worst <= 1e-5 * big, "family %d bf16 %d: gradients differ by %g (largest %g)", f, half, worst, big);
    batch_free(&b);
    model_stage_free(a);
    model_stage_free(d);
}

Test(model, head_weight_gradient_waits_for_the_step)
{
    for (int half = 0; half <= bf16_cpu_supported(NULL); half++) {
        for (int flush = 0; flush <= 1; flush++) {
            check_head_dw_wait(MODEL_GPT, half, flush);
            check_head_dw_wait(MODEL_BERT, half, flush);
            check_head_dw_wait(MODEL_LLAMA, half, flush);
        }
    }
    /* a stage without the heads has nothing to flush */
    model_config c = tiny(MODEL_GPT);
    model_stage *mid;
    cr_assert_eq(model_stage_create(&mid, &c, 0, 1, 2, 1), ST_OK);
    cr_expect_eq(model_head_flush(mid, &(model_pass){.train = 1}), ST_ERROR);
    cr_expect(strstr(st_message(), "without the heads"), "%s", st_message());
    model_stage_free(mid);
}

Test(model, dropout_depends_on_seed_and_sample_not_on_repetition)
{
    init();
    model_config c = tiny(MODEL_GPT);
    c.dropout = 0.1f;
    model_stage *m;
    cr_assert_eq(model_stage_create(&m, &c, 0, 2, 2, 1), ST_OK);
    model_init_params(m, 1);
    batch b;
    batch_alloc(&b, 2, c.seq_len);
    fill_batch(&b, MODEL_GPT, c.vocab_size);
    model_pass pass = {.train = 1, .seed = 3, .loss_scale = 1.0f};
    double a = run(&m, 1, &b, &pass, 0), a2 = run(&m, 1, &b, &pass, 0);
    pass.sample0 = 2;
    double d = run(&m, 1, &b, &pass, 0);
    pass.train = 0;
    double e = run(&m, 1, &b, &pass, 0);
    cr_expect(a == a2, "same seed and sample, same loss");
    cr_expect(a != d && a != e, "other samples or eval mode give other masks");
    batch_free(&b);
    model_stage_free(m);
}

Test(model, bad_token_ids_and_labels_are_refused_with_their_position)
{
    init();
    model_config c = tiny(MODEL_GPT);
    model_stage *m;
    cr_assert_eq(model_stage_create(&m, &c, 0, 2, 2, 1), ST_OK);
    batch b;
    batch_alloc(&b, 2, c.seq_len);
    fill_batch(&b, MODEL_GPT, c.vocab_size);
    model_pass pass = {.train = 1, .loss_scale = 1.0f};
    model_losses l = {0};
    b.input_ids[7] = 19;
    cr_expect_eq(model_forward(m, 0, &b, &pass, &l), ST_FORMAT);
    cr_expect(strstr(st_message(), "sample 1 position 1") && strstr(st_message(), "vocab"), "%s", st_message());
    b.input_ids[7] = 3;
    b.labels[2] = -5;
    cr_expect_eq(model_forward(m, 0, &b, &pass, &l), ST_FORMAT);
    cr_expect(strstr(st_message(), "label -5"), "%s", st_message());
    batch_free(&b);
    model_stage_free(m);
}

Test(model, bad_shapes_are_refused_naming_the_key)
{
    model_config c = tiny(MODEL_BERT);
    c.n_head = 3;
    model_stage *m;
    cr_expect_eq(model_stage_create(&m, &c, 0, 2, 2, 1), ST_CONFIG);
    cr_expect(strstr(st_message(), "model.n_head"), "%s", st_message());
    c = tiny(MODEL_BERT);
    c.seq_len = 9;
    cr_expect_eq(model_stage_create(&m, &c, 0, 2, 2, 1), ST_CONFIG);
    cr_expect(strstr(st_message(), "max_positions"), "%s", st_message());
}

Test(model, llama_bad_kv_heads_and_odd_head_size_are_refused_naming_the_key)
{
    model_config c = tiny(MODEL_LLAMA);
    c.n_head = 4;
    c.n_kv_head = 3;
    model_stage *m;
    cr_expect_eq(model_stage_create(&m, &c, 0, 2, 2, 1), ST_CONFIG);
    cr_expect(strstr(st_message(), "model.n_kv_head = 3 does not divide model.n_head = 4"), "%s", st_message());
    c = tiny(MODEL_LLAMA);
    c.n_head = 8; /* head size 3 */
    c.n_kv_head = 8;
    cr_expect_eq(model_stage_create(&m, &c, 0, 2, 2, 1), ST_CONFIG);
    cr_expect(strstr(st_message(), "is odd: RoPE"), "%s", st_message());
    c = tiny(MODEL_LLAMA);
    c.n_kv_head = 1;
    cr_expect_eq(model_tp_check(&c, 2), ST_CONFIG);
    cr_expect(strstr(st_message(), "dist.tp = 2 does not divide model.n_kv_head = 1"), "%s", st_message());
}

Test(model, llama_table_uses_hugging_face_names_and_shapes)
{
    model_config c = tiny(MODEL_LLAMA);
    model_stage *m;
    cr_assert_eq(model_stage_create(&m, &c, 0, 2, 2, 1), ST_OK, "%s", st_message());
    const model_tensor *k = model_tensor_find(m, "model.layers.1.self_attn.k_proj.weight");
    cr_assert(k && k->shape[0] == 12 && k->shape[1] == 24, "k_proj is (n_kv_head hs, C) = (2 x 6, 24)");
    const model_tensor *q = model_tensor_find(m, "model.layers.1.self_attn.q_proj.weight");
    cr_expect(k->offset == q->offset + q->numel, "k_proj follows q_proj (one fused GEMM)");
    const model_tensor *up = model_tensor_find(m, "model.layers.0.mlp.up_proj.weight");
    cr_assert(up && up->shape[0] == 24 && up->shape[1] == 24, "up_proj is (d_ff, C)");
    const model_tensor *head = model_tensor_find(m, "lm_head.weight");
    cr_assert(head && !head->tied && !model_tensor_find(m, "model.embed_tokens.weight")->tied, "untied head");
    cr_expect(model_tensor_find(m, "model.norm.weight") && !model_tensor_find(m, "transformer.wpe.weight"));
    model_stage_free(m);
    c.tie_embeddings = 1;
    cr_assert_eq(model_stage_create(&m, &c, 0, 2, 2, 1), ST_OK, "%s", st_message());
    cr_expect(!model_tensor_find(m, "lm_head.weight") && model_tensor_find(m, "model.embed_tokens.weight")->tied);
    model_stage_free(m);
}

Test(model, tensor_table_uses_hugging_face_names_and_shapes)
{
    model_config c = tiny(MODEL_GPT);
    model_stage *m;
    cr_assert_eq(model_stage_create(&m, &c, 0, 2, 1, 1), ST_OK);
    const model_tensor *t = model_tensor_find(m, "transformer.h.1.attn.c_attn.weight");
    cr_assert(t);
    cr_expect(t->shape[0] == 16 && t->shape[1] == 48 && t->decay);
    t = model_tensor_find(m, "transformer.h.0.ln_1.bias");
    cr_expect(t && !t->decay);
    size_t expect = 19 * 16 + 8 * 16 + 2 * (4 * 16 + 16 * 48 + 48 + 16 * 16 + 16 + 16 * 24 + 24 + 24 * 16 + 16) + 32;
    cr_expect_eq(model_n_params(m), expect);
    model_stage_free(m);
}

/* The cached decoder must give, position by position, the logits of a full
 * forward pass over the same tokens. */
/* The decoder's logits at every position equal the full forward's (so greedy
 * decoding with the cache picks what it picks without); its cache holds
 * n_layer x max_len x 2 x (key/value heads x head size) floats. */
static void check_kv_cache(model_family f)
{
    init();
    model_config c = tiny(f);
    model_stage *m;
    cr_assert_eq(model_stage_create(&m, &c, 0, 2, 1, 1), ST_OK);
    model_init_params(m, 4);
    batch b;
    batch_alloc(&b, 1, c.seq_len);
    fill_batch(&b, f, c.vocab_size);
    float *full = calloc((size_t)c.seq_len * c.vocab_size, sizeof(float));
    model_pass pass = {.loss_scale = 1.0f, .logits = full};
    model_losses l = {0};
    cr_assert_eq(model_forward(m, 0, &b, &pass, &l), ST_OK, "%s", st_message());
    model_decoder *d;
    cr_assert_eq(model_decoder_create(&d, m, 64), ST_OK, "%s", st_message());
    for (int t = 0; t < c.seq_len; t++) {
        const float *lg;
        cr_assert_eq(model_decoder_step(d, b.input_ids[t], &lg), ST_OK, "%s", st_message());
        for (int v = 0; v < c.vocab_size; v++)
            cr_expect(fabsf(lg[v] - full[(size_t)t * c.vocab_size + v]) < 1e-4f, "position %d token %d: %g vs %g", t, v,
                      lg[v], full[(size_t)t * c.vocab_size + v]);
    }
    cr_expect_eq(model_decoder_work(d), (uint64_t)c.seq_len, "one position-pass per token, whatever the prefix");
    size_t kv_width = (size_t)(f == MODEL_LLAMA ? c.n_kv_head : c.n_head) * (c.d_model / c.n_head);
    cr_expect_eq(model_decoder_cache_floats(d), (size_t)c.n_layer * c.max_positions * 2 * kv_width,
                 "the cache holds the key/value heads only (%zu floats)", model_decoder_cache_floats(d));
    const float *lg;
    for (int t = c.seq_len; t < c.max_positions; t++) cr_assert_eq(model_decoder_step(d, 1, &lg), ST_OK);
    cr_expect_neq(model_decoder_step(d, 1, &lg), ST_OK, "past max_positions is refused");
    cr_expect(strstr(st_message(), "limit"), "%s", st_message());
    model_decoder_free(d);
    free(full);
    batch_free(&b);
    model_stage_free(m);
}

Test(model, kv_cache_decoder_matches_the_full_forward) { check_kv_cache(MODEL_GPT); }
Test(model, llama_kv_cache_of_the_kv_heads_matches_the_full_forward)
{
    check_kv_cache(MODEL_LLAMA); /* 4 query heads over 2 kv heads: half the cache of one per query head */
}

Test(model, sampling_is_greedy_at_temperature_zero_and_respects_top_k)
{
    float logits[6] = {0.1f, 2.0f, 0.5f, 1.9f, -3.0f, 0.0f}, p[6];
    int32_t idx[6];
    sample_params greedy = {.temperature = 0.0f, .top_p = 1.0f, .seed = 1};
    cr_expect_eq(model_sample(logits, 6, &greedy, 0, p, idx), 1);
    sample_params top2 = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 2, .seed = 1};
    int seen[6] = {0};
    for (uint64_t s = 0; s < 400; s++) seen[model_sample(logits, 6, &top2, s, p, idx)]++;
    cr_expect(seen[1] > 100 && seen[3] > 100 && seen[0] + seen[2] + seen[4] + seen[5] == 0, "top-k 2: %d %d", seen[1], seen[3]);
    sample_params nucleus = {.temperature = 1.0f, .top_p = 0.3f, .seed = 1};
    for (uint64_t s = 0; s < 50; s++) cr_expect_eq(model_sample(logits, 6, &nucleus, s, p, idx), 1);
}

/* Top-2 at temperature 1 keeps tokens 1 and 3 with probabilities
 * 1 / (1 + e^-0.1) and e^-0.1 / (1 + e^-0.1): step s draws u from the
 * sampling stream of the seed and takes token 1 when u falls below the first.
 * Computed here from the stream itself, the draw of every step is known. */
Test(model, sampling_draws_from_the_seed_and_step_stream)
{
    float logits[6] = {0.1f, 2.0f, 0.5f, 1.9f, -3.0f, 0.0f}, p[6];
    int32_t idx[6];
    double p1 = 1.0 / (1.0 + exp(-0.1));
    int differ = 0;
    for (uint64_t seed = 1; seed <= 2; seed++) {
        sample_params top2 = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 2, .seed = seed};
        for (uint64_t s = 0; s < 200; s++) {
            uint32_t bits[4];
            rng_bits(rng_key_make(seed, RNG_SAMPLE), s, 0, 0, bits);
            double u = rng_uniform(bits[0]);
            if (fabs(u - p1) < 1e-5) continue; /* too close to the edge for float sums */
            int32_t got = model_sample(logits, 6, &top2, s, p, idx);
            cr_expect_eq(got, u < p1 ? 1 : 3, "seed %llu step %llu: u %.6f", (unsigned long long)seed,
                         (unsigned long long)s, u);
            if (seed == 2) {
                sample_params other = top2;
                other.seed = 1;
                differ += got != model_sample(logits, 6, &other, s, p, idx);
            }
        }
    }
    cr_expect(differ > 50, "seeds 1 and 2 differ at only %d of 200 steps", differ);
}

/* Shapes beyond what mpilm takes are refused naming the key (a damaged
 * checkpoint manifest or config.json claiming 600,000 layers took seconds to
 * tabulate before: a fuzz finding, tests/fuzz/regressions/ckpt_manifest). */
Test(model, config_check_refuses_dimensions_beyond_the_limits)
{
    model_config c = {.family = MODEL_GPT, .n_layer = 2, .d_model = 32, .n_head = 2, .d_ff = 64, .seq_len = 16,
                      .max_positions = 16, .vocab_size = 64};
    cr_assert_eq(model_config_check(&c), ST_OK, "%s", st_message());
    c.n_layer = MODEL_MAX_LAYERS + 1;
    cr_expect_eq(model_config_check(&c), ST_CONFIG);
    cr_expect(strstr(st_message(), "model.n_layer = 1025 exceeds"), "%s", st_message());
    c.n_layer = 2, c.vocab_size = MODEL_MAX_VOCAB + 1;
    cr_expect_eq(model_config_check(&c), ST_CONFIG);
    cr_expect(strstr(st_message(), "model.vocab_size"), "%s", st_message());
}

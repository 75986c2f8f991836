/* train/eval: figures are token-weighted over one pass of the dataset, so they
 * do not depend on the micro-batch; max_samples limits the pass; the JSON has
 * the keys evaluation scripts read. (Under several ranks: tests/integration.) */
#include <criterion/criterion.h>
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "../common/synth_dataset.h"
#include "base/fileio.h"
#include "data/stream.h"
#include "tensor/tensor.h"
#include "train/eval.h"

static char dir[512];

static void setup(void)
{
    int init;
    MPI_Initialized(&init);
    if (!init) MPI_Init(NULL, NULL);
    tensor_runtime rt;
    tensor_runtime_init(1, 1, &rt);
    synth_spec sp = {.vocab_size = 60, .n_shards = 2, .docs_per_shard = 12, .max_sents = 5, .max_len = 9, .seed = 3};
    cr_assert_eq(synth_tmpdir(dir, sizeof dir, "eval"), 0);
    cr_assert_eq(synth_dataset_make(dir, &sp), 0);
}

static void teardown(void)
{
    synth_rmdir(dir);
    MPI_Finalize();
}

TestSuite(eval, .init = setup, .fini = teardown);

static eval_result run(model_family f, int B, uint64_t max_samples)
{
    model_config c = {.family = f, .n_layer = 1, .d_model = 16, .n_head = 2, .d_ff = 32, .seq_len = 16,
                      .max_positions = 16, .vocab_size = 64, .pre_ln = f == MODEL_GPT};
    model_stage *m;
    cr_assert_eq(model_stage_create(&m, &c, 0, 1, B, 1), ST_OK, "%s", st_message());
    model_init_params(m, 5);
    eval_spec spec = {.data_path = dir, .seed = 11, .mask_prob = 0.15, .nsp = 1, .max_samples = max_samples};
    eval_result r;
    cr_assert_eq(eval_run(m, &spec, MPI_COMM_WORLD, &r), ST_OK, "%s", st_message());
    model_stage_free(m);
    return r;
}

Test(eval, gpt_figures_do_not_depend_on_the_micro_batch)
{
    eval_result a = run(MODEL_GPT, 2, 0), b = run(MODEL_GPT, 5, 0);
    cr_expect(a.samples > 10 && a.samples == b.samples, "samples %llu vs %llu", (unsigned long long)a.samples,
              (unsigned long long)b.samples);
    cr_expect(fabs(a.lm_loss - b.lm_loss) < 1e-5 * a.lm_loss, "lm loss %g vs %g", a.lm_loss, b.lm_loss);
    cr_expect(fabs(a.perplexity - exp(a.lm_loss)) < 1e-6 * a.perplexity);
    /* an untrained model is close to uniform over the vocabulary */
    cr_expect(a.lm_loss > 0.8 * log(64.0) && a.lm_loss < 1.2 * log(64.0), "lm loss %g", a.lm_loss);
    cr_expect(a.mlm_targets == 0 && a.nsp_targets == 0 && a.tokens >= a.samples * 16);
}

Test(eval, bert_masks_are_deterministic_and_weighted_by_token)
{
    eval_result a = run(MODEL_BERT, 3, 0), b = run(MODEL_BERT, 4, 0);
    cr_expect(a.samples == b.samples && a.mlm_targets == b.mlm_targets && a.mlm_targets > 0);
    cr_expect(fabs(a.mlm_loss - b.mlm_loss) < 1e-5 * a.mlm_loss, "mlm %g vs %g", a.mlm_loss, b.mlm_loss);
    cr_expect(fabs(a.nsp_loss - b.nsp_loss) < 1e-5, "nsp %g vs %g", a.nsp_loss, b.nsp_loss);
    cr_expect(a.nsp_targets == a.samples, "every sample has an NSP label");
}

/* Counts, over the pass eval makes (one epoch of the stream with its spec),
 * the MLM targets equal to each token and the NSP labels equal to 0. */
static void count_targets(int B, uint64_t *per_token, int V, uint64_t *mlm, uint64_t *nsp_next, uint64_t *nsp)
{
    stream_spec ss = {.path = dir, .objective = STREAM_MLM, .seq_len = 16, .mask_prob = 0.15, .nsp = 1, .seed = 11,
                      .dp_rank = 0, .dp_size = 1, .chunk = B, .vocab_size = V};
    stream *s;
    batch b;
    cr_assert_eq(stream_open(&s, &ss), ST_OK, "%s", st_message());
    cr_assert_eq(batch_alloc(&b, B, 16), ST_OK);
    memset(per_token, 0, (size_t)V * sizeof *per_token);
    *mlm = *nsp_next = *nsp = 0;
    for (int done = 0; !done;) {
        cr_assert_eq(stream_next(s, &b), ST_OK, "%s", st_message());
        for (int r = 0; r < B; r++) {
            stream_origin o;
            stream_last_origin(s, r, &o);
            if (o.epoch > 0) {
                done = 1;
                continue;
            }
            for (int t = 0; t < 16; t++) {
                int32_t y = b.labels[r * 16 + t];
                if (y == LABEL_IGNORE) continue;
                per_token[y]++;
                ++*mlm;
            }
            *nsp_next += b.next_sentence_label[r] == 0;
            ++*nsp;
        }
    }
    batch_free(&b);
    stream_close(s);
}

/* All parameters zero but the output biases: the MLM logits are then
 * cls.predictions.bias for every position and the NSP logits
 * cls.seq_relationship.bias, so the model always predicts the token whose
 * bias is largest and "is next"; the accuracies are the shares of the
 * targets with that value, counted here from the stream itself. */
Test(eval, bert_accuracy_is_the_share_of_targets_the_argmax_hits)
{
    enum { V = 64 };
    uint64_t per_token[V], mlm, nsp_next, nsp;
    count_targets(3, per_token, V, &mlm, &nsp_next, &nsp);
    int best = 0;
    for (int v = 1; v < V; v++)
        if (per_token[v] > per_token[best]) best = v;
    cr_assert(per_token[best] > 0 && per_token[best] < mlm && nsp_next > 0 && nsp_next < nsp,
              "the constructed case needs both hits and misses: %llu of %llu, %llu of %llu",
              (unsigned long long)per_token[best], (unsigned long long)mlm, (unsigned long long)nsp_next,
              (unsigned long long)nsp);
    model_config c = {.family = MODEL_BERT, .n_layer = 1, .d_model = 16, .n_head = 2, .d_ff = 32, .seq_len = 16,
                      .max_positions = 16, .vocab_size = V};
    model_stage *m;
    cr_assert_eq(model_stage_create(&m, &c, 0, 1, 3, 1), ST_OK, "%s", st_message());
    float *p = model_params(m);
    memset(p, 0, model_n_params(m) * sizeof(float));
    const model_tensor *dec_b = model_tensor_find(m, "cls.predictions.bias");
    const model_tensor *nsp_b = model_tensor_find(m, "cls.seq_relationship.bias");
    cr_assert(dec_b && nsp_b);
    p[dec_b->offset + best] = 1.0f;
    p[nsp_b->offset + 0] = 1.0f;
    eval_spec spec = {.data_path = dir, .seed = 11, .mask_prob = 0.15, .nsp = 1};
    eval_result r;
    cr_assert_eq(eval_run(m, &spec, MPI_COMM_WORLD, &r), ST_OK, "%s", st_message());
    cr_expect_eq(r.mlm_targets, mlm);
    cr_expect_eq(r.nsp_targets, nsp);
    cr_expect(r.mlm_accuracy == (double)per_token[best] / (double)mlm, "mlm accuracy %.9g, expected %llu/%llu",
              r.mlm_accuracy, (unsigned long long)per_token[best], (unsigned long long)mlm);
    cr_expect(r.nsp_accuracy == (double)nsp_next / (double)nsp, "nsp accuracy %.9g, expected %llu/%llu",
              r.nsp_accuracy, (unsigned long long)nsp_next, (unsigned long long)nsp);
    model_stage_free(m);
}

/* All parameters zero: every logit is 0, the distribution uniform, so the
 * loss is exactly ln(V) and the perplexity V: an answer known in advance. */
Test(eval, a_model_with_forced_uniform_logits_scores_ln_v)
{
    model_config c = {.family = MODEL_GPT, .n_layer = 1, .d_model = 16, .n_head = 2, .d_ff = 32, .seq_len = 16,
                      .max_positions = 16, .vocab_size = 64, .pre_ln = 1};
    model_stage *m;
    cr_assert_eq(model_stage_create(&m, &c, 0, 1, 3, 1), ST_OK);
    memset(model_params(m), 0, model_n_params(m) * sizeof(float));
    eval_spec spec = {.data_path = dir, .seed = 11};
    eval_result r;
    cr_assert_eq(eval_run(m, &spec, MPI_COMM_WORLD, &r), ST_OK, "%s", st_message());
    cr_expect(fabs(r.lm_loss - log(64.0)) < 1e-5, "lm loss %.7f, expected ln 64 = %.7f", r.lm_loss, log(64.0));
    cr_expect(fabs(r.perplexity - 64.0) < 1e-3, "perplexity %g", r.perplexity);
    model_stage_free(m);
}

Test(eval, max_samples_limits_the_pass)
{
    eval_result a = run(MODEL_GPT, 4, 6);
    cr_expect_eq(a.samples, 6);
}

Test(eval, json_has_the_keys_scripts_read)
{
    eval_result a = run(MODEL_GPT, 4, 0);
    char path[600], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/eval.json", dir);
    cr_assert_eq(eval_write_json(&a, path), ST_OK);
    cr_assert_eq(fileio_read_file(path, &text, &len), ST_OK);
    const char *keys[] = {"\"perplexity\": ", "\"lm_loss\": ", "\"mlm_loss\": null", "\"mlm_accuracy\": null",
                          "\"nsp_loss\": null", "\"nsp_accuracy\": null", "\"samples\": ", "\"tokens\": "};
    for (int i = 0; i < 8; i++) cr_expect(strstr(text, keys[i]), "%s missing in %s", keys[i], text);
    free(text);
}

Test(eval, missing_dataset_is_named)
{
    model_config c = {.family = MODEL_GPT, .n_layer = 1, .d_model = 16, .n_head = 2, .d_ff = 32, .seq_len = 16,
                      .max_positions = 16, .vocab_size = 64, .pre_ln = 1};
    model_stage *m;
    cr_assert_eq(model_stage_create(&m, &c, 0, 1, 2, 1), ST_OK);
    eval_spec spec = {.data_path = "/nonexistent/ds", .seed = 1};
    eval_result r;
    cr_expect_neq(eval_run(m, &spec, MPI_COMM_WORLD, &r), ST_OK);
    cr_expect(strstr(st_message(), "/nonexistent/ds"), "%s", st_message());
    model_stage_free(m);
}

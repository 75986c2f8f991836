/* ckpt/checkpoint: shard ranges tile the parameters; a checkpoint written as
 * several shards (as dp ranks write it) reads back onto any layer range by
 * name and global offset, moments included; ckpt_write_model (import's path)
 * with its vocabulary; keep prunes the oldest of the saving run only; damaged
 * or foreign directories are refused with the file named; the run directory's
 * lock, its check for an earlier run and --overwrite's clearing. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/checkpoint.h"
#include "layout/layout.h"
#include "../common/synth_dataset.h"

static char dir[512];

static void setup(void) { cr_assert_eq(synth_tmpdir(dir, sizeof dir, "ckpt"), 0); }
static void teardown(void) { synth_rmdir(dir); }

TestSuite(ckpt, .init = setup, .fini = teardown);

static model_config tiny_config(model_family family)
{
    return (model_config){.family = family, .n_layer = 3, .d_model = 16, .n_head = 2, .d_ff = 32, .seq_len = 8,
                          .max_positions = 8, .vocab_size = 40, .pre_ln = family == MODEL_GPT, .dropout = 0.1f};
}

static size_t full_size(const model_config *c)
{
    model_tensor *t;
    int n;
    cr_assert_eq(model_full_table(c, &t, &n), ST_OK);
    size_t total = t[n - 1].offset + t[n - 1].numel;
    free(t);
    return total;
}

#define RUN_ID 0x1234abcdULL

/* Writes a 3-shard checkpoint of `step` by run run_id (0: none) with
 * params[i] = i, m = -i, v = 2i. */
static void write_checkpoint(const model_config *c, const char *run, int keep, int64_t step, uint64_t run_id,
                             const ckpt_validation *valid, int best)
{
    size_t n = full_size(c);
    float *p = malloc(n * sizeof *p), *m = malloc(n * sizeof *m), *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) p[i] = (float)i, m[i] = -(float)i, v[i] = 2.0f * (float)i;
    char tmp[4200];
    cr_assert_eq(ckpt_begin(run, step, tmp, sizeof tmp), ST_OK, "%s", st_message());
    ckpt_file files[3];
    for (int r = 0; r < 3; r++) {
        size_t b, e;
        layout_shard(n, 3, r, &b, &e);
        cr_assert_eq(ckpt_shard_write(tmp, r, b, e, p + b, m + b, v + b, &files[r]), ST_OK, "%s", st_message());
    }
    ckpt_meta meta = {.model = *c, .step = step, .seed = 99, .lr = 1e-3, .random_data = 1, .next_sample = 56,
                      .topo = {3, 1, 3, 1, 0}, .run_id = run_id, .config_text = "[data]\npath = somewhere\n"};
    if (valid) meta.validation = *valid;
    cr_assert_eq(ckpt_manifest_write(tmp, &meta, files, 3), ST_OK, "%s", st_message());
    cr_assert_eq(ckpt_commit(run, step, tmp, run_id, keep, best), ST_OK, "%s", st_message());
    free(p), free(m), free(v);
}

static void write_shards_of_run(const model_config *c, const char *run, int keep, int64_t step, uint64_t run_id)
{
    write_checkpoint(c, run, keep, step, run_id, NULL, 0);
}

static void write_three_shards(const model_config *c, const char *run, int keep, int64_t step)
{
    write_shards_of_run(c, run, keep, step, RUN_ID);
}

/* The step directories of run as "10 20 ..." (ascending). */
static void steps_of(const char *run, char *buf, size_t len)
{
    int64_t *steps;
    int n;
    cr_assert_eq(ckpt_list_steps(run, &steps, &n), ST_OK);
    buf[0] = '\0';
    for (int i = n - 1; i >= 0; i--)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%lld", i < n - 1 ? " " : "", (long long)steps[i]);
    free(steps);
}

Test(ckpt, three_shards_read_back_onto_a_middle_and_a_last_stage)
{
    model_config c = tiny_config(MODEL_GPT);
    char run[600];
    snprintf(run, sizeof run, "%s/run", dir);
    write_three_shards(&c, run, 3, 7);
    ckpt_reader *r;
    cr_assert_eq(ckpt_open(&r, run), ST_OK, "%s", st_message());
    cr_assert_eq(ckpt_step(r), 7);
    cr_assert_str_eq(ckpt_config_value(r, "data.path"), "somewhere");
    cr_assert_null(ckpt_config_value(r, "data.nothing"));
    cr_assert_null(ckpt_vocab_dir(r));
    cr_assert_eq(ckpt_model(r)->d_model, 16);
    cr_assert_eq(ckpt_meta_of(r)->next_sample, 56);
    cr_assert_eq(ckpt_n_files(r), 3);
    model_tensor *full;
    int nfull;
    cr_assert_eq(model_full_table(&c, &full, &nfull), ST_OK);
    for (int first = 1; first <= 2; first++) {
        model_stage *s;
        cr_assert_eq(model_stage_create(&s, &c, first, 3, 1, 1), ST_OK, "%s", st_message());
        size_t n = model_n_params(s);
        float *p = calloc(n, sizeof *p), *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
        cr_assert_eq(ckpt_read_stage(r, s, p, m, v), ST_OK, "%s", st_message());
        for (int i = 0; i < model_n_tensors(s); i++) {
            const model_tensor *t = model_tensor_at(s, i);
            size_t g = 0;
            for (int j = 0; j < nfull; j++)
                if (strcmp(full[j].name, t->name) == 0) g = full[j].offset;
            for (size_t k = 0; k < t->numel; k += 7) {
                cr_assert_eq(p[t->offset + k], (float)(g + k), "%s[%zu]", t->name, k);
                cr_assert_eq(m[t->offset + k], -(float)(g + k));
                cr_assert_eq(v[t->offset + k], 2.0f * (float)(g + k));
            }
        }
        free(p), free(m), free(v);
        model_stage_free(s);
    }
    free(full);
    ckpt_close(r);
}

/* The global offset of local float k of stage s (by tensor name). */
static size_t global_of(const model_stage *s, const model_tensor *full, int nfull, size_t k)
{
    for (int i = 0; i < model_n_tensors(s); i++) {
        const model_tensor *t = model_tensor_at(s, i);
        if (k < t->offset || k >= t->offset + t->numel) continue;
        for (int j = 0; j < nfull; j++)
            if (strcmp(full[j].name, t->name) == 0) return full[j].offset + (k - t->offset);
    }
    cr_assert_fail("local float %zu is in no tensor", k);
    return 0;
}

Test(ckpt, a_range_of_a_last_stage_reads_only_its_floats_and_refuses_another_model)
{
    model_config c = tiny_config(MODEL_GPT);
    char run[600];
    snprintf(run, sizeof run, "%s/run", dir);
    write_three_shards(&c, run, 3, 7);
    ckpt_reader *r;
    cr_assert_eq(ckpt_open(&r, run), ST_OK, "%s", st_message());
    model_tensor *full;
    int nfull;
    cr_assert_eq(model_full_table(&c, &full, &nfull), ST_OK);
    model_stage *s;
    cr_assert_eq(model_stage_create(&s, &c, 2, 3, 1, 1), ST_OK, "%s", st_message());
    /* from inside the last layer, across the tied embedding copy, into the heads */
    size_t n = model_n_params(s), lo = 5, hi = n - 3, k = hi - lo;
    float *m = malloc((k + 2) * sizeof *m), *v = malloc(k * sizeof *v);
    m[k] = m[k + 1] = 42.0f;
    cr_assert_eq(ckpt_read_stage_range(r, s, lo, hi, NULL, m, v), ST_OK, "%s", st_message());
    for (size_t i = 0; i < k; i++) {
        size_t g = global_of(s, full, nfull, lo + i);
        cr_assert_eq(m[i], -(float)g, "m at local %zu (global %zu)", lo + i, g);
        cr_assert_eq(v[i], 2.0f * (float)g, "v at local %zu", lo + i);
    }
    cr_assert(m[k] == 42.0f && m[k + 1] == 42.0f, "wrote past the range");
    model_stage_free(s);
    model_config other = c;
    other.d_model = 32;
    cr_assert_eq(model_stage_create(&s, &other, 2, 3, 1, 1), ST_OK);
    cr_assert_eq(ckpt_read_stage_range(r, s, 0, 8, NULL, m, NULL), ST_FORMAT);
    cr_assert(strstr(st_message(), "the model does not match"), "%s", st_message());
    st_clear();
    model_stage_free(s);
    free(m), free(v), free(full);
    ckpt_close(r);
}

Test(ckpt, write_model_has_zero_moments_step_0_and_its_vocabulary)
{
    model_config c = tiny_config(MODEL_BERT);
    char vocab[600], run[600];
    snprintf(vocab, sizeof vocab, "%s/ds", dir);
    snprintf(run, sizeof run, "%s/imported", dir);
    cr_assert_eq(mkdir(vocab, 0755), 0);
    synth_spec spec = {.vocab_size = 40, .n_shards = 1, .docs_per_shard = 2, .max_sents = 2, .max_len = 3, .seed = 1};
    cr_assert_eq(synth_dataset_make(vocab, &spec), 0);
    size_t n = full_size(&c);
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = 0.5f * (float)i;
    cr_assert_eq(ckpt_write_model(run, &c, p, vocab), ST_OK, "%s", st_message());
    ckpt_reader *r;
    cr_assert_eq(ckpt_open(&r, run), ST_OK, "%s", st_message());
    cr_assert_eq(ckpt_step(r), 0);
    cr_assert_not_null(ckpt_vocab_dir(r));
    char path[1200];
    snprintf(path, sizeof path, "%s/vocab.txt", ckpt_vocab_dir(r));
    cr_assert_eq(access(path, R_OK), 0, "no %s", path);
    model_stage *s;
    cr_assert_eq(model_stage_create(&s, &c, 0, 3, 1, 1), ST_OK);
    float *q = calloc(n, sizeof *q), *m = malloc(n * sizeof *m);
    memset(m, 0xff, n * sizeof *m);
    cr_assert_eq(model_n_params(s), n);
    cr_assert_eq(ckpt_read_stage(r, s, q, m, NULL), ST_OK, "%s", st_message());
    cr_assert_eq(memcmp(p, q, n * sizeof *p), 0);
    for (size_t i = 0; i < n; i++) cr_assert_eq(m[i], 0.0f);
    free(p), free(q), free(m);
    model_stage_free(s);
    ckpt_close(r);
}

Test(ckpt, keep_prunes_the_oldest_and_latest_names_the_newest)
{
    model_config c = tiny_config(MODEL_GPT);
    char run[600];
    snprintf(run, sizeof run, "%s/run", dir);
    for (int64_t step = 10; step <= 40; step += 10) write_three_shards(&c, run, 2, step);
    int64_t *steps;
    int n;
    cr_assert_eq(ckpt_list_steps(run, &steps, &n), ST_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(steps[0], 40);
    cr_assert_eq(steps[1], 30);
    free(steps);
    char link[700], target[64] = "";
    snprintf(link, sizeof link, "%s/latest", run);
    cr_assert_gt(readlink(link, target, sizeof target - 1), 0);
    cr_assert_str_eq(target, "step-0000040");
}

Test(ckpt, pruning_removes_only_the_saving_runs_older_checkpoints)
{
    model_config c = tiny_config(MODEL_GPT);
    char run[600], have[128], path[700];
    snprintf(run, sizeof run, "%s/run", dir);
    write_shards_of_run(&c, run, 100, 10, 0x77);  /* another run */
    write_shards_of_run(&c, run, 100, 20, 0);     /* no run id: an import or an older mpilm */
    write_shards_of_run(&c, run, 100, 90, RUN_ID); /* this run, above the steps written next */
    for (int64_t step = 30; step <= 60; step += 10) write_shards_of_run(&c, run, 2, step, RUN_ID);
    steps_of(run, have, sizeof have);
    cr_assert_str_eq(have, "10 20 50 60 90", "after keep = 2: %s", have);
    /* keep = 1 keeps the one just written even below another of this run */
    write_shards_of_run(&c, run, 1, 70, RUN_ID);
    steps_of(run, have, sizeof have);
    cr_assert_str_eq(have, "10 20 70 90", "after keep = 1: %s", have);
    uint64_t id = 1;
    snprintf(path, sizeof path, "%s/step-0000020", run);
    cr_assert_eq(ckpt_run_id(path, &id), ST_OK, "%s", st_message());
    cr_assert_eq(id, 0);
    ckpt_reader *r = NULL;
    cr_assert_eq(ckpt_open(&r, path), ST_OK, "a manifest without run_id: %s", st_message());
    cr_assert_eq(ckpt_meta_of(r)->run_id, 0);
    ckpt_close(r);
    snprintf(path, sizeof path, "%s/step-0000070", run);
    cr_assert_eq(ckpt_open(&r, path), ST_OK, "%s", st_message());
    cr_assert_eq(ckpt_meta_of(r)->run_id, RUN_ID);
    ckpt_close(r);
}

static void best_of(const char *run, char *target, size_t len)
{
    char link[700];
    snprintf(link, sizeof link, "%s/best", run);
    ssize_t k = readlink(link, target, len - 1);
    target[k > 0 ? k : 0] = '\0';
}

Test(ckpt, the_validation_state_round_trips_and_an_older_manifest_has_none)
{
    model_config c = tiny_config(MODEL_GPT);
    char run[600], path[700];
    snprintf(run, sizeof run, "%s/run", dir);
    ckpt_validation v = {.present = 1, .has_best = 1, .best_val_loss = 6.2149173345416786, .best_step = 4,
                         .evals_since_best = 2};
    write_checkpoint(&c, run, 10, 10, RUN_ID, &v, 0);
    write_shards_of_run(&c, run, 10, 20, RUN_ID);
    ckpt_validation none = {.present = 1, .has_best = 0, .best_step = 0, .evals_since_best = 3};
    write_checkpoint(&c, run, 10, 30, RUN_ID, &none, 0);
    ckpt_reader *r = NULL;
    snprintf(path, sizeof path, "%s/step-0000010", run);
    cr_assert_eq(ckpt_open(&r, path), ST_OK, "%s", st_message());
    const ckpt_validation *got = &ckpt_meta_of(r)->validation;
    cr_assert(got->present && got->has_best);
    cr_assert_eq(got->best_val_loss, v.best_val_loss, "best_val_loss %.17g (expected exactly %.17g)",
                 got->best_val_loss, v.best_val_loss);
    cr_assert_eq(got->best_step, 4);
    cr_assert_eq(got->evals_since_best, 2);
    ckpt_close(r);
    snprintf(path, sizeof path, "%s/step-0000020", run);
    cr_assert_eq(ckpt_open(&r, path), ST_OK, "a manifest without validation: %s", st_message());
    cr_assert(!ckpt_meta_of(r)->validation.present);
    ckpt_close(r);
    snprintf(path, sizeof path, "%s/step-0000030", run);
    cr_assert_eq(ckpt_open(&r, path), ST_OK, "best_val_loss null: %s", st_message());
    cr_assert(ckpt_meta_of(r)->validation.present && !ckpt_meta_of(r)->validation.has_best);
    cr_assert_eq(ckpt_meta_of(r)->validation.evals_since_best, 3);
    ckpt_close(r);
}

Test(ckpt, pruning_keeps_the_checkpoint_best_names_and_set_best_repoints_it)
{
    model_config c = tiny_config(MODEL_GPT);
    char run[600], have[128], target[64];
    snprintf(run, sizeof run, "%s/run", dir);
    write_checkpoint(&c, run, 1, 10, RUN_ID, NULL, 1);
    write_shards_of_run(&c, run, 1, 20, RUN_ID);
    write_shards_of_run(&c, run, 1, 30, RUN_ID);
    steps_of(run, have, sizeof have);
    cr_assert_str_eq(have, "10 30", "keep = 1 with best at 10: %s", have);
    best_of(run, target, sizeof target);
    cr_assert_str_eq(target, "step-0000010");
    cr_assert_eq(ckpt_run_set_best(run, 30), ST_OK, "%s", st_message());
    best_of(run, target, sizeof target);
    cr_assert_str_eq(target, "step-0000030");
    cr_assert_eq(ckpt_run_set_best(run, 20), ST_OK, "%s", st_message()); /* no such checkpoint: best goes */
    best_of(run, target, sizeof target);
    cr_assert_str_eq(target, "");
    write_shards_of_run(&c, run, 1, 40, RUN_ID);
    steps_of(run, have, sizeof have);
    cr_assert_str_eq(have, "40", "keep = 1 without best: %s", have);
}

Test(ckpt, a_second_lock_on_a_run_directory_is_refused_naming_the_holder)
{
    char run[600], pid[32];
    snprintf(run, sizeof run, "%s/locked", dir);
    int a = -1, b = -1;
    cr_assert_eq(ckpt_run_lock(run, &a), ST_OK, "%s", st_message());
    cr_assert_eq(ckpt_run_lock(run, &b), ST_USAGE);
    cr_assert_eq(b, -1);
    snprintf(pid, sizeof pid, "pid %d on ", (int)getpid());
    cr_assert(strstr(st_message(), run) && strstr(st_message(), "in use by another mpilm run") &&
              strstr(st_message(), pid), "%s", st_message());
    ckpt_run_unlock(a);
    cr_assert_eq(ckpt_run_lock(run, &b), ST_OK, "after the release: %s", st_message());
    ckpt_run_unlock(b);
    cr_assert_neq(ckpt_run_new_id(), ckpt_run_new_id());
}

Test(ckpt, an_earlier_run_is_found_and_overwrite_removes_only_what_a_run_writes)
{
    model_config c = tiny_config(MODEL_GPT);
    char run[600], path[700], what[512];
    snprintf(run, sizeof run, "%s/run", dir);
    cr_assert_eq(ckpt_run_check_new(run), ST_OK, "a missing directory: %s", st_message());
    write_three_shards(&c, run, 3, 4);
    write_three_shards(&c, run, 3, 8);
    cr_assert_eq(ckpt_run_check_new(run), ST_USAGE);
    cr_assert(strstr(st_message(), "step 8") && strstr(st_message(), "--resume auto") &&
              strstr(st_message(), "--overwrite"), "%s", st_message());
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *f = fopen(path, "w");
    fputs("{\"step\":9,\"loss\":1}\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/notes.txt", run);
    fclose(fopen(path, "w"));
    snprintf(path, sizeof path, "%s/step-0000001", run); /* a step-like directory mpilm did not write */
    cr_assert_eq(mkdir(path, 0755), 0);
    cr_assert_eq(ckpt_run_clear(run, what, sizeof what), ST_OK, "%s", st_message());
    cr_assert_str_eq(what, "latest, step-0000004, step-0000008, metrics.jsonl");
    struct stat st;
    snprintf(path, sizeof path, "%s/notes.txt", run);
    cr_assert_eq(stat(path, &st), 0, "notes.txt was removed");
    snprintf(path, sizeof path, "%s/step-0000001", run);
    cr_assert_eq(stat(path, &st), 0, "a directory mpilm did not write was removed");
    cr_assert_eq(rmdir(path), 0);
    cr_assert_eq(ckpt_run_check_new(run), ST_OK, "after clearing: %s", st_message());
}

Test(ckpt, foreign_or_damaged_directories_are_refused)
{
    ckpt_reader *r = NULL;
    cr_assert_eq(ckpt_open(&r, dir), ST_IO);
    cr_assert(strstr(st_message(), "not a checkpoint"), "%s", st_message());
    cr_assert_null(r);
    cr_assert_eq(ckpt_is_checkpoint(dir), 0);
    model_config c = tiny_config(MODEL_GPT);
    char run[600], manifest[700];
    snprintf(run, sizeof run, "%s/run", dir);
    write_three_shards(&c, run, 1, 5);
    cr_assert_eq(ckpt_is_checkpoint(run), 1);
    /* a manifest whose first file does not start at element 0 */
    snprintf(manifest, sizeof manifest, "%s/step-0000005/manifest.json", run);
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "sed -i '0,/\"begin\":\\t[0-9]*/s//\"begin\":\\t3/' %s", manifest);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(ckpt_open(&r, run), ST_FORMAT);
    cr_assert(strstr(st_message(), "manifest.json: shard-00000.bin: section params holds"), "%s", st_message());
    /* another model shape */
    snprintf(run, sizeof run, "%s/run2", dir);
    write_three_shards(&c, run, 1, 5);
    cr_assert_eq(ckpt_open(&r, run), ST_OK, "%s", st_message());
    model_config other = c;
    other.n_layer = 4;
    cr_assert_eq(ckpt_check_model(r, &other), ST_CONFIG);
    cr_assert(strstr(st_message(), "model.n_layer is 3 in the checkpoint but 4"), "%s", st_message());
    cr_assert_eq(ckpt_check_model(r, &c), ST_OK);
    ckpt_close(r);
}

/* A configuration whose every field differs from its default and from the
 * others' (so a field read into another's place shows). */
static model_config distinct_config(model_family family)
{
    model_config c = tiny_config(family);
    c.seq_len = 7, c.dropout = 0.25f, c.sinusoidal = family == MODEL_BERT;
    /* two names, and a boolean */
    c.recompute = family == MODEL_LLAMA ? RECOMPUTE_FFN : family == MODEL_BERT ? RECOMPUTE_FFN_ATTENTION : RECOMPUTE_FULL;
    if (family == MODEL_LLAMA)
        c.pre_ln = 1, c.n_kv_head = 1, c.norm_eps = 1e-6f, c.rope_theta = 500.0f, c.tie_embeddings = 1;
    return c;
}

/* Every field of each family (model_fields) survives manifest.json, and a
 * checkpoint refuses a configuration that differs in any field that makes
 * the model, naming it, but not in the run's settings (seq_len, dropout,
 * recompute). */
Test(ckpt, every_model_field_round_trips_and_each_identity_field_is_checked)
{
    for (int fam = 0; fam < 3; fam++) {
        model_config c = distinct_config((model_family)fam);
        char run[600];
        snprintf(run, sizeof run, "%s/run-%d", dir, fam);
        write_three_shards(&c, run, 1, 5);
        ckpt_reader *r;
        cr_assert_eq(ckpt_open(&r, run), ST_OK, "%s", st_message());
        for (int i = 0; i < MODEL_N_FIELDS; i++) {
            const model_field *f = &model_fields[i];
            if (!model_field_of(f, c.family)) continue;
            char want[32], got[32];
            model_field_format(f, &c, want, sizeof want);
            model_field_format(f, ckpt_model(r), got, sizeof got);
            cr_expect_str_eq(got, want, "%s: model.%s", model_family_name(c.family), f->key.key);
            if (f->type == MODEL_FIELD_POSITIONS && c.family == MODEL_LLAMA) continue; /* rope only */
            model_config other = c;
            double v = model_field_get(f, &c);
            model_field_set(f, &other, f->type == MODEL_FIELD_FLOAT ? 2 * v + 1
                                       : f->type == MODEL_FIELD_INT ? v + 1
                                       : f->type == MODEL_FIELD_FAMILY ? (double)((fam + 1) % 3) : !v);
            status_t st = ckpt_check_model(r, &other);
            const char *k = f->key.key; /* the run's settings, named here, not taken from the table */
            int identity = strcmp(k, "seq_len") != 0 && strcmp(k, "dropout") != 0 && strcmp(k, "recompute") != 0;
            cr_expect_eq(f->identity, identity, "model.%s: identity flag %d", k, f->identity);
            if (!identity) {
                cr_expect_eq(st, ST_OK, "model.%s is a run's setting: %s", f->key.key, st_message());
                continue;
            }
            char expect[96];
            snprintf(expect, sizeof expect, "model.%s is %s in the checkpoint but ", f->key.key, want);
            cr_expect_eq(st, ST_CONFIG, "%s: model.%s changed, yet accepted", model_family_name(c.family), f->key.key);
            cr_expect(strstr(st_message(), expect), "%s", st_message());
        }
        ckpt_close(r);
    }
}

/* train/eval — one pass over a dataset's sample stream without dropout or
 * gradients, the losses summed over tokens (not averaged per batch), so the
 * figures do not depend on the micro-batch size or the number of ranks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/watchdog.h"
#include "base/fileio.h"
#include "data/stream.h"
#include "train/eval.h"

/* Sums reduced over ranks, in this order. */
enum { S_LM, S_MLM, S_NSP, S_LM_N, S_MLM_N, S_NSP_N, S_MLM_OK, S_NSP_OK, S_SAMPLES, S_TOKENS, S_N };

/* Marks the rows of this batch that are not part of the pass (past the end of
 * the first epoch or beyond max_samples) as having no target. Returns the rows
 * kept; *done is set when this rank has reached the end. */
static int keep_rows(stream *s, batch *b, uint64_t first_global, uint64_t max_samples, int *done)
{
    int kept = 0;
    for (int r = 0; r < b->B; r++) {
        stream_origin o;
        stream_last_origin(s, r, &o);
        int drop = o.epoch > 0 || (max_samples && first_global + (uint64_t)r >= max_samples);
        if (!drop) {
            kept++;
            continue;
        }
        *done = 1;
        for (int t = 0; t < b->T; t++) b->labels[r * b->T + t] = LABEL_IGNORE;
        b->next_sentence_label[r] = LABEL_IGNORE;
    }
    return kept;
}

static void add_losses(double *sum, const model_losses *l, const batch *b, int kept_rows)
{
    sum[S_LM] += l->lm_loss_sum;
    sum[S_MLM] += l->mlm_loss_sum;
    sum[S_NSP] += l->nsp_loss_sum;
    sum[S_LM_N] += l->lm_count;
    sum[S_MLM_N] += l->mlm_count;
    sum[S_NSP_N] += l->nsp_count;
    sum[S_MLM_OK] += l->mlm_correct;
    sum[S_NSP_OK] += l->nsp_correct;
    sum[S_SAMPLES] += kept_rows;
    for (int r = 0; r < b->B; r++) {
        int has_target = 0;
        for (int t = 0; t < b->T && !has_target; t++) has_target = b->labels[r * b->T + t] != LABEL_IGNORE;
        if (!has_target && b->next_sentence_label[r] == LABEL_IGNORE) continue;
        for (int t = 0; t < b->T; t++) sum[S_TOKENS] += b->attention_mask[r * b->T + t] != 0;
    }
}

static void finish(const double *sum, int family, eval_result *out)
{
    memset(out, 0, sizeof *out);
    out->family = family;
    out->lm_targets = (uint64_t)sum[S_LM_N];
    out->mlm_targets = (uint64_t)sum[S_MLM_N];
    out->nsp_targets = (uint64_t)sum[S_NSP_N];
    out->samples = (uint64_t)sum[S_SAMPLES];
    out->tokens = (uint64_t)sum[S_TOKENS];
    if (sum[S_LM_N] > 0) {
        out->lm_loss = sum[S_LM] / sum[S_LM_N];
        out->perplexity = exp(out->lm_loss);
    }
    if (sum[S_MLM_N] > 0) {
        out->mlm_loss = sum[S_MLM] / sum[S_MLM_N];
        out->mlm_accuracy = sum[S_MLM_OK] / sum[S_MLM_N];
    }
    if (sum[S_NSP_N] > 0) {
        out->nsp_loss = sum[S_NSP] / sum[S_NSP_N];
        out->nsp_accuracy = sum[S_NSP_OK] / sum[S_NSP_N];
    }
}

static status_t eval_loop(stream *s, batch *b, const eval_spec *spec, const eval_part *part, MPI_Comm comm,
                          double *sum)
{
    int B = b->B;
    for (uint64_t it = 0;; it++) {
        TRY(stream_next(s, b));
        int done = 0;
        uint64_t first = (it * (uint64_t)part->replicas + (uint64_t)part->replica) * (uint64_t)B;
        int kept = keep_rows(s, b, first, spec->max_samples, &done);
        model_losses l = {0};
        if (kept > 0) { /* the same on every rank of a replica: they read the same samples */
            TRY(part->forward(part->ctx, b, &l));
            if (part->counts) add_losses(sum, &l, b, kept);
        }
        /* every rank stops together once any has reached the end */
        char what[80];
        snprintf(what, sizeof what, "evaluation batch %llu (waiting for every rank)", (unsigned long long)it + 1);
        watchdog_arm(what, spec->hang_timeout);
        FAIL_IF(MPI_Allreduce(MPI_IN_PLACE, &done, 1, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS, ST_MPI,
                "eval: MPI_Allreduce failed");
        watchdog_disarm();
        if (done) return ST_OK;
    }
}

status_t eval_run_parts(const model_config *c, int B, const eval_spec *spec, const eval_part *part, MPI_Comm comm,
                        eval_result *out)
{
    int bert = c->family == MODEL_BERT;
    batch b;
    TRY(batch_alloc(&b, B, c->seq_len));
    stream_spec ss = {.path = spec->data_path, .split = spec->split, .objective = bert ? STREAM_MLM : STREAM_CAUSAL,
                      .seq_len = c->seq_len, .mask_prob = spec->mask_prob, .nsp = bert && spec->nsp,
                      .seed = spec->seed, .dp_rank = part->replica, .dp_size = part->replicas, .chunk = b.B,
                      .vocab_size = c->vocab_size};
    stream *s = NULL;
    double sum[S_N] = {0};
    status_t st = stream_open(&s, &ss);
    if (st == ST_OK) st = eval_loop(s, &b, spec, part, comm, sum);
    if (s) stream_close(s);
    batch_free(&b);
    TRY(st);
    watchdog_arm("the evaluation's final sums over all ranks", spec->hang_timeout);
    FAIL_IF(MPI_Allreduce(MPI_IN_PLACE, sum, S_N, MPI_DOUBLE, MPI_SUM, comm) != MPI_SUCCESS, ST_MPI,
            "eval: MPI_Allreduce failed");
    watchdog_disarm();
    finish(sum, c->family, out);
    out->split = spec->split;
    FAIL_IF(out->samples == 0, ST_FORMAT, "%s: eval found no samples (is the dataset empty?)", spec->data_path);
    return ST_OK;
}

/* eval_forward_fn of a whole model on this rank. */
static status_t whole_model_forward(void *ctx, batch *b, model_losses *l)
{
    model_pass pass = {.train = 0, .loss_scale = 1.0f};
    return model_forward(ctx, 0, b, &pass, l);
}

status_t eval_run(model_stage *m, const eval_spec *spec, MPI_Comm comm, eval_result *out)
{
    FAIL_IF(!model_stage_first(m) || !model_stage_last(m), ST_ERROR, "eval: needs a whole model (one stage)");
    eval_part part = {.forward = whole_model_forward, .ctx = m, .counts = 1};
    MPI_Comm_rank(comm, &part.replica);
    MPI_Comm_size(comm, &part.replicas);
    return eval_run_parts(model_stage_config(m), model_stage_batch(m), spec, &part, comm, out);
}

/* JSON has no NaN or infinity: such a figure is written as null (and
 * eval_first_nonfinite makes the command fail). */
static void put_figure(FILE *f, const char *key, double v, int present, int last)
{
    if (present && isfinite(v)) fprintf(f, "  \"%s\": %.9g%s\n", key, v, last ? "" : ",");
    else fprintf(f, "  \"%s\": null%s\n", key, last ? "" : ",");
}

const char *eval_first_nonfinite(const eval_result *r)
{
    int lm = r->lm_targets > 0, mlm = r->mlm_targets > 0, nsp = r->nsp_targets > 0;
    const struct { const char *key; double v; int present; } figures[] = {
        {"perplexity", r->perplexity, lm}, {"lm_loss", r->lm_loss, lm},        {"mlm_loss", r->mlm_loss, mlm},
        {"mlm_accuracy", r->mlm_accuracy, mlm}, {"nsp_loss", r->nsp_loss, nsp}, {"nsp_accuracy", r->nsp_accuracy, nsp},
    };
    for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++)
        if (figures[i].present && !isfinite(figures[i].v)) return figures[i].key;
    return NULL;
}

status_t eval_write_json(const eval_result *r, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    FAIL_IF(!f, ST_NOMEM, "eval: out of memory");
    int lm = r->lm_targets > 0, mlm = r->mlm_targets > 0, nsp = r->nsp_targets > 0;
    fprintf(f, "{\n");
    put_figure(f, "perplexity", r->perplexity, lm, 0);
    put_figure(f, "lm_loss", r->lm_loss, lm, 0);
    put_figure(f, "mlm_loss", r->mlm_loss, mlm, 0);
    put_figure(f, "mlm_accuracy", r->mlm_accuracy, mlm, 0);
    put_figure(f, "nsp_loss", r->nsp_loss, nsp, 0);
    put_figure(f, "nsp_accuracy", r->nsp_accuracy, nsp, 0);
    fprintf(f, "  \"samples\": %llu,\n  \"tokens\": %llu,\n  \"split\": \"%s\"\n}\n",
            (unsigned long long)r->samples, (unsigned long long)r->tokens, dataset_split_label(r->split));
    fclose(f);
    status_t st = fileio_write_atomic(path, text, len);
    free(text);
    return st;
}

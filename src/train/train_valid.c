/* train/valid — validation during training (eval.*): every eval.every_steps
 * steps, after the update, one evaluation of the held-out samples through
 * the run's own layout (dist_eval_forward: pipeline stages, tensor groups,
 * replicas sharing the samples), with eval's definitions (train/eval.c: the
 * fixed EVAL_SEED, sums over tokens), so val_loss equals what `mpilm eval
 * --max-samples N` prints for that step's checkpoint. It reads its own
 * stream: the training stream, its cursor, the RNG and the parameters stay
 * as they were. The best val_loss, its step and the evaluations since
 * (eval.patience) travel with the checkpoints. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/fileio.h"
#include "base/log.h"
#include "base/watchdog.h"
#include "data/dataset.h"
#include "data/stream.h"
#include "train/eval.h"
#include "train/train_internal.h"

/* Which dataset and split the validation reads: eval.data_path (its valid
 * split when it has one, as mpilm eval reads it), by default the training
 * dataset's valid split (prep --valid-fraction). path points into tc or bl. */
static status_t valid_data_path(const train_config *tc, stream_blend *bl, const char **path, dataset_split *split)
{
    if (tc->eval_data_path[0]) {
        *path = tc->eval_data_path;
        *split = dataset_has_split(*path, DATASET_SPLIT_VALID) ? DATASET_SPLIT_VALID : DATASET_SPLIT_TRAIN;
        return ST_OK;
    }
    *split = DATASET_SPLIT_VALID;
    FAIL_IF(tc->random_data, ST_CONFIG, "eval.every_steps = %lld with data.source = random needs eval.data_path (a "
            "dataset directory made by mpilm prep with a vocabulary of at most model.vocab_size tokens)",
            (long long)tc->eval_every_steps);
    TRY(stream_blend_parse(tc->data_path, bl));
    FAIL_IF(bl->n > 1, ST_CONFIG, "eval.every_steps = %lld: data.path is a blend of %d datasets, so there is no one "
            "valid split to read by default; set eval.data_path to one dataset prepared with the training vocabulary "
            "(e.g. one of the blend's; its valid split is read when it has one)", (long long)tc->eval_every_steps,
            bl->n);
    *path = bl->path[0];
    FAIL_IF(!dataset_has_split(*path, DATASET_SPLIT_VALID), ST_CONFIG, "eval.every_steps = %lld validates on the "
            "training dataset's valid split by default, but data.path = %s has none; prepare it with mpilm prep "
            "--valid-fraction F (e.g. 0.01), or set eval.data_path to a dataset prepared with the training vocabulary",
            (long long)tc->eval_every_steps, *path);
    return ST_OK;
}

status_t trainer_valid_check(trainer *t)
{
    const train_config *tc = &t->tc;
    t->best_val_loss = INFINITY;
    t->last_val_loss = NAN;
    if (tc->eval_every_steps == 0) return ST_OK;
    const char *path;
    dataset_split split;
    stream_blend vb;
    TRY(valid_data_path(tc, &vb, &path, &split));
    dataset_info vi, di;
    if (dataset_info_read(path, &vi) != ST_OK)
        return st_context(ST_CONFIG, "eval.data_path = %s is not a dataset that can be read (expected a directory "
                          "made by mpilm prep): ", path);
    FAIL_IF(vi.vocab_size > (uint32_t)tc->model.vocab_size, ST_CONFIG, "eval.data_path = %s has a vocabulary of %u "
            "tokens, more than model.vocab_size = %d; prepare it with the training vocabulary (mpilm prep --vocab ...)",
            path, vi.vocab_size, tc->model.vocab_size);
    if (tc->random_data) return ST_OK;
    stream_blend bl; /* a blend's datasets share one vocabulary */
    TRY(stream_blend_parse(tc->data_path, &bl));
    TRY(dataset_info_read(bl.path[0], &di));
    FAIL_IF(vi.kind != di.kind || vi.fingerprint != di.fingerprint, ST_CONFIG, "eval.data_path = %s is tokenized "
            "with another vocabulary than data.path = %s (%s, fingerprint %016llx against %s, %016llx); prepare it "
            "with the training vocabulary (mpilm prep --vocab %s ...)", path, tc->data_path,
            vi.kind == TOKENIZER_BPE ? "bpe" : "wordpiece", (unsigned long long)vi.fingerprint,
            di.kind == TOKENIZER_BPE ? "bpe" : "wordpiece", (unsigned long long)di.fingerprint, tc->data_path);
    return ST_OK;
}

static status_t forward_through_layout(void *ctx, batch *b, model_losses *l)
{
    fileio_crash_point("valid:forward"); /* tests: MPILM_TEST_STOP=valid:forward freezes this rank here */
    return dist_eval_forward(ctx, b, l);
}

/* GPT: the LM loss; BERT: MLM + NSP (NSP when evaluated). */
static double val_loss_of(const eval_result *r)
{
    if (r->family != MODEL_BERT) return r->lm_loss;
    return r->mlm_loss + (r->nsp_targets ? r->nsp_loss : 0.0);
}

/* The evaluation's figures, the same on every rank (rank 0's, broadcast:
 * every rank then takes the same best/patience decisions). */
static status_t evaluate(trainer *t, int64_t step, eval_result *r)
{
    const train_config *tc = &t->tc;
    const char *path;
    dataset_split split;
    stream_blend vb;
    TRY(valid_data_path(tc, &vb, &path, &split));
    eval_spec spec = {.data_path = path, .split = split, .seed = EVAL_SEED, .mask_prob = tc->mask_prob,
                      .nsp = tc->nsp, .max_samples = tc->eval_max_samples, .hang_timeout = tc->dist.hang_timeout};
    const dist_topology *p = t->topo;
    eval_part part = {.replica = p->replica, .replicas = p->dp, .counts = p->stage == p->pp - 1 && p->tp_rank == 0,
                      .forward = forward_through_layout, .ctx = t->engine};
    TRY(eval_run_parts(&tc->model, tc->micro_batch, &spec, &part, t->comm, r));
    char what[96];
    snprintf(what, sizeof what, "the validation result after step %lld (broadcast)", (long long)step);
    watchdog_arm(what, tc->dist.hang_timeout);
    FAIL_IF(MPI_Bcast(r, sizeof *r, MPI_BYTE, 0, t->comm) != MPI_SUCCESS, ST_MPI, "train: MPI_Bcast failed");
    watchdog_disarm();
    return ST_OK;
}

/* "best X at step S", or that there is none yet. */
static void describe_best(const trainer *t, char *buf, size_t n)
{
    if (t->has_best) snprintf(buf, n, "best %.4f at step %lld", t->best_val_loss, (long long)t->best_step);
    else snprintf(buf, n, "no finite val_loss yet");
}

status_t trainer_validate(trainer *t, int64_t step, int *improved, int *stop)
{
    const train_config *tc = &t->tc;
    *improved = *stop = 0;
    eval_result *r = &t->last_val;
    TRY(evaluate(t, step, r));
    double v = val_loss_of(r);
    t->last_val_loss = v;
    t->valid_present = 1;
    if (isfinite(v) && (!t->has_best || v < t->best_val_loss)) {
        t->has_best = 1;
        t->best_val_loss = v;
        t->best_step = step;
        t->evals_since_best = 0;
        *improved = 1;
    } else {
        t->evals_since_best++;
        *stop = tc->eval_patience > 0 && t->evals_since_best >= tc->eval_patience;
    }
    char best[96];
    describe_best(t, best, sizeof best);
    log_msg(LOG_INFO, "validation at step %lld: val_loss %.4f on %llu samples (%s)%s", (long long)step, v,
            (unsigned long long)r->samples, best, *improved ? ", a new best" : "");
    if (!isfinite(v) && t->rank == 0)
        log_msg(LOG_WARN, "validation at step %lld: val_loss is not finite (written as null)", (long long)step);
    return ST_OK;
}

/* "key":value, or null where JSON has no number for it. */
static void put(FILE *f, const char *key, double v)
{
    if (isfinite(v)) fprintf(f, ",\"%s\":%.9g", key, v);
    else fprintf(f, ",\"%s\":null", key);
}

void trainer_valid_row(trainer *t, int64_t step)
{
    if (!t->metrics) return;
    const eval_result *r = &t->last_val;
    fprintf(t->metrics, "{\"step\":%lld", (long long)step);
    put(t->metrics, "val_loss", t->last_val_loss);
    if (r->family != MODEL_BERT) {
        put(t->metrics, "val_ppl", r->perplexity);
    } else {
        int nsp = r->nsp_targets > 0;
        put(t->metrics, "val_mlm_loss", r->mlm_loss);
        put(t->metrics, "val_nsp_loss", nsp ? r->nsp_loss : NAN);
        put(t->metrics, "val_mlm_accuracy", r->mlm_accuracy);
        put(t->metrics, "val_nsp_accuracy", nsp ? r->nsp_accuracy : NAN);
    }
    fprintf(t->metrics, ",\"val_samples\":%llu,\"val_tokens\":%llu}\n", (unsigned long long)r->samples,
            (unsigned long long)r->tokens);
    fflush(t->metrics);
}

int trainer_patience_spent(const trainer *t)
{
    return t->tc.eval_patience > 0 && t->evals_since_best >= t->tc.eval_patience;
}

void trainer_log_early_stop(const trainer *t)
{
    char best[96];
    describe_best(t, best, sizeof best);
    log_msg(LOG_INFO, "stopping early: val_loss has not improved for %lld evaluations (%s)",
            (long long)t->evals_since_best, best);
}

void trainer_valid_save(const trainer *t, ckpt_validation *v)
{
    *v = (ckpt_validation){.present = t->valid_present, .has_best = t->has_best, .best_val_loss = t->best_val_loss,
                           .best_step = t->has_best ? t->best_step : 0, .evals_since_best = t->evals_since_best};
}

void trainer_valid_restore(trainer *t, const ckpt_validation *v)
{
    if (!v->present) return;
    t->valid_present = 1;
    t->has_best = v->has_best;
    t->best_val_loss = v->has_best ? v->best_val_loss : INFINITY;
    t->best_step = v->best_step;
    t->evals_since_best = v->evals_since_best;
}

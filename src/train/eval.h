/* train/eval — evaluation of a model over a prepared dataset: causal-LM loss
 * and perplexity, MLM loss and accuracy (deterministic masks from a fixed
 * seed), NSP loss and accuracy; distributed over the ranks of a communicator
 * (each reads its part of the sample stream, the sums are reduced).
 * Must not touch: checkpoints and files other than the dataset (the caller
 * loads the parameters), command-line parsing.
 */
#ifndef MPILM_TRAIN_EVAL_H
#define MPILM_TRAIN_EVAL_H

#include <mpi.h>
#include <stdint.h>

#include "base/status.h"
#include "data/dataset.h"
#include "model/model.h"

/* The watchdog's deadline per evaluation batch in `mpilm eval`: the default
 * of dist.hang_timeout. */
#define EVAL_HANG_TIMEOUT 600.0
/* The default seed of eval's MLM masks and NSP pairs (mpilm eval --seed),
 * also training's validation: the same samples for every run. */
#define EVAL_SEED 12345

typedef struct eval_spec {
    const char *data_path;
    dataset_split split;    /* which split of the dataset (DATASET_SPLIT_TRAIN = 0) */
    uint64_t seed;          /* masks and NSP pairs: the same for every run and layout */
    double mask_prob;       /* MLM */
    int nsp;                /* BERT: evaluate NSP (when the dataset can pair sentences) */
    uint64_t max_samples;   /* 0 = one pass over the whole dataset */
    double hang_timeout;    /* > 0: each batch's collective is under the watchdog (base/watchdog.h) */
} eval_spec;

typedef struct eval_result {
    int family;             /* model_family */
    dataset_split split;    /* the split evaluated */
    double lm_loss, perplexity;           /* GPT */
    double mlm_loss, mlm_accuracy;        /* BERT */
    double nsp_loss, nsp_accuracy;        /* BERT with NSP */
    uint64_t samples, tokens;             /* over all ranks */
    uint64_t lm_targets, mlm_targets, nsp_targets;
} eval_result;

/* Runs stage m (a whole model: first and last) over the dataset. Collective
 * over comm. */
status_t eval_run(model_stage *m, const eval_spec *spec, MPI_Comm comm, eval_result *out);

/* The forward of one batch on this rank's part of the model: the losses'
 * sums are added to *l where this rank computes them. */
typedef status_t (*eval_forward_fn)(void *ctx, batch *b, model_losses *l);

/* How the ranks of comm share an evaluation: this rank reads part `replica`
 * of `replicas` of the sample stream (every rank of a replica reads the
 * same batches and calls forward on each), and its losses enter the sums
 * when `counts` (one rank per replica). */
typedef struct eval_part {
    int replica, replicas;
    int counts;
    eval_forward_fn forward;
    void *ctx;
} eval_part;

/* eval_run over any split of the model (training's validation runs through
 * the pipeline, data and tensor layout): batches of B sequences, the same
 * samples, masks and sums as eval_run. Collective over comm. */
status_t eval_run_parts(const model_config *c, int B, const eval_spec *spec, const eval_part *part, MPI_Comm comm,
                        eval_result *out);

/* Writes the result as one JSON object (the keys of docs/usage.md's
 * mpilm eval --json: perplexity, lm_loss, mlm_loss, mlm_accuracy, nsp_loss,
 * nsp_accuracy, samples, tokens; and "split": "train" or "valid";
 * null where the family has no such figure or the figure is not finite),
 * atomically. */
/* The key of the first figure of r that the family has but that is NaN or
 * infinite (the model gives non-finite values), or NULL. */
const char *eval_first_nonfinite(const eval_result *r);

status_t eval_write_json(const eval_result *r, const char *path);

#endif

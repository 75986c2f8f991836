/* train — the training loop: data → micro-batches → model → gradients →
 * AdamW, with progress lines and RUN_DIR/metrics.jsonl.
 *
 * Owns: turning the configuration into a layout, model, optimizer and data
 * plan; feeding micro-batches to the pipeline/ZeRO engine (dist/), which runs
 * every step on every layout (pp = 1, zero = 0 is just a layout); metrics;
 * when checkpoints are written, the collective save of what each rank owns,
 * resume onto any layout, and preemption (files and format: ckpt/).
 * Sits above dist/, model/, optim/, data/, ckpt/ and uses MPI for the job.
 * Must not touch: command-line parsing (cli/), kernel internals (tensor/).
 */
#ifndef MPILM_TRAIN_TRAIN_H
#define MPILM_TRAIN_TRAIN_H

#include <mpi.h>
#include <stdint.h>

#include "base/config.h"
#include "base/status.h"
#include "dist/dist.h"
#include "model/model.h"
#include "optim/optim.h"

#define TRAIN_VOCAB_PAD 64 /* model.vocab_size = auto rounds the dataset's vocabulary up to a multiple of this */

typedef struct train_config {
    char run_name[128];
    char run_dir[1024];
    int threads;              /* -1 = auto */
    model_config model;       /* model.bf16 from train.precision (train_precision_resolve) */
    uint32_t vocab_dataset;   /* model.vocab_size = auto: the dataset's vocabulary it was resolved from; else 0 */
    char precision_why[160];  /* why that precision, for the start-up line */
    optim_config optim;
    int64_t steps;            /* from train.tokens when that is set (train_resolve_batch) */
    int64_t tokens;           /* train.tokens; 0 = off */
    int micro_batch, micro_batches; /* micro_batches <= 0: auto (train_resolve_batch) */
    int64_t global_batch;     /* train.global_batch; <= 0 = auto */
    int layout_auto;          /* dist.layout = auto: mpilm plan's fastest layout at the job's ranks */
    uint64_t seed;
    int random_data;          /* data.source = random */
    char data_path[1024];
    double mask_prob;
    int nsp;
    int64_t random_samples;   /* data.random_samples: > 0 repeats that many samples */
    int log_every;
    dist_config dist;         /* dist.*: pp, dp (<= 0 auto), schedule, zero, stages, hang_timeout */
    int64_t ckpt_every_steps; /* 0 = off */
    double ckpt_every_minutes;/* 0 = off */
    int ckpt_keep;
    int ckpt_continue;        /* ckpt.on_error = continue */
    int ckpt_restart;         /* ckpt.if_none_valid = restart */
    double ckpt_io_timeout;   /* ckpt.io_timeout: seconds per save or resume read (0 = none) */
    int ckpt_keep_best;       /* ckpt.keep_best: RUN_DIR/best, never pruned */
    int64_t eval_every_steps; /* eval.every_steps: validation after the update of every N-th step (0 = off) */
    uint64_t eval_max_samples;/* eval.max_samples (0 = the whole split) */
    char eval_data_path[1024];/* eval.data_path ("" = the default, train_valid.c) */
    int64_t eval_patience;    /* eval.patience: evaluations without improvement before stopping (0 = never) */
    char resume[1024];        /* --resume: "", "auto" or a path */
    int overwrite;            /* --overwrite: clear the run directory's earlier run first */
    char config_text[16384];  /* the effective configuration (config_print), for manifests */
} train_config;

/* train.precision ("auto", "fp32" or "bf16") into m->bf16: auto is bf16 when
 * the CPU has bf16 instructions (bf16_cpu_supported) and the layout can use
 * them (not dist.tp_mode = 2d), else fp32; explicit bf16 without them is
 * refused. why (n bytes) receives the reason, e.g. "bf16 (auto: the CPU has
 * AVX512-BF16)". eval and the other commands use it too. */
status_t train_precision_resolve(const char *requested, int tp_2d, model_config *m, char *why, size_t n);

/* Reads the configuration's keys (docs/design.md, "Configuration"); errors
 * name the key. */
status_t train_config_load(const config *cfg, train_config *tc);

/* train.global_batch and train.micro_batches at a job of world ranks: with a
 * global batch, micro_batches = global_batch / (dp x micro_batch) (a given
 * micro_batches must agree, the division must be exact), so the same run
 * resumes on another rank count with the same samples; without one,
 * micro_batches auto is 1. With train.tokens it also derives the steps:
 * ceil(tokens / (global batch x seq_len)). */
status_t train_resolve_batch(train_config *tc, int world);

typedef struct trainer trainer;

/* Plans and allocates everything for this rank of comm (world = dist.pp x
 * dist.dp; a bad layout is refused before any work) and prints the runtime
 * set-up, the placement and this rank's memory. */
status_t trainer_create(trainer **out, const train_config *tc, MPI_Comm comm);
/* Runs the configured steps; writes progress, RUN_DIR/metrics.jsonl and
 * checkpoints (every ckpt.every_steps / ckpt.every_minutes and at the end).
 * On SIGTERM or SIGUSR1 every rank stops at the next step boundary after a
 * checkpoint and ST_PREEMPTED is returned. */
status_t trainer_run(trainer *t);
void trainer_free(trainer *t);

/* The step training continues from (0, or the checkpoint's after a resume). */
int64_t trainer_start_step(const trainer *t);

/* For tests: this rank's stage of the model, and the mean loss of the last step. */
model_stage *trainer_model(trainer *t);
double trainer_last_loss(const trainer *t);

#endif

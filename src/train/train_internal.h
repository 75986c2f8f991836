/* train internals: the trainer's state, shared by the loop (train.c) and the
 * checkpoint side (train_ckpt.c: collective save, resume, preemption). */
#ifndef MPILM_TRAIN_TRAIN_INTERNAL_H
#define MPILM_TRAIN_TRAIN_INTERNAL_H

#include <stdio.h>

#include "ckpt/checkpoint.h"
#include "data/random_source.h"
#include "data/stream.h"
#include "dist/dist.h"
#include "tensor/tensor.h"
#include "train/eval.h"
#include "train/train.h"

/* What training advances and a checkpoint records (train_ckpt.c saves and
 * restores exactly this): this rank's floats (parameters, gradients, AdamW
 * moments: the engine sizes them by the rank's layout, dist_train_step
 * updates them), the steps done, and on a dataset the stream's cursor after
 * them. The trainer owns it. */
typedef struct train_state {
    optim_state w;
    int64_t step;
    stream_cursor cursor;
} train_state;

struct trainer {
    train_config tc;
    MPI_Comm comm;
    int rank, size;
    tensor_runtime rt;
    int local_ranks;           /* ranks of the job on this node */
    double peak_gflops;        /* sum over ranks */
    dist_engine *engine;       /* the layout, this rank's stage over state.w, the collectives */
    train_state state;
    const dist_topology *topo; /* the engine's */
    random_spec random;        /* data.source = random */
    stream *stream;            /* data.source = dataset: this replica's samples */
    uint64_t next_g;           /* the micro-batch the stream gives next (checked against the engine's) */
    FILE *metrics;
    double last_loss;
    double last_lr;             /* LR of the last step (for the manifest) */
    int64_t start_step;         /* the step this process started at: 0, or the checkpoint's resumed from */
    int lock_fd;                /* rank 0: RUN_DIR/.lock, held for the whole job; else -1 */
    uint64_t run_id;            /* this run's id in its manifests (kept across resumes) */
    char last_ckpt[4200];       /* the last valid checkpoint: resumed from or written; "" = none */
    double last_save_time;
    double elapsed_base;        /* training seconds before this process (the checkpoint's elapsed_s) */
    double run_start;           /* time_now() when this process's training began */
    uint64_t data_epoch[STREAM_BLEND_MAX]; /* rank 0: each dataset's epoch of its next sample (wraps logged once) */
    char vocab_dir[1024];       /* dataset run: the dataset whose vocabulary checkpoints carry */
    double step_delay;          /* test hook MPILM_TEST_STEP_DELAY: seconds slept per step */
    /* validation (train_valid.c); the best and the count continue across resumes */
    int valid_present;          /* an evaluation has run in this run (before or after a resume) */
    int has_best;               /* a finite val_loss has been seen */
    double best_val_loss;       /* the lowest (INFINITY: none) */
    int64_t best_step;
    int64_t evals_since_best;   /* evaluations without a lower val_loss (eval.patience) */
    double last_val_loss;       /* the latest, for the progress line (NAN: none in this job) */
    eval_result last_val;
};

/* t->peak_gflops (the sum over ranks of the GEMM rate in the run's
 * precision) from MPILM_PEAK_GFLOPS, the per-machine cache or a measurement,
 * and the start-up line that says which (train_peak.c). Collective. */
status_t trainer_measure_peak(trainer *t);
/* Sequences per step over all replicas: micro_batch x micro_batches x dp. */
uint64_t trainer_global_batch(const trainer *t);
/* Rank 0 locks RUN_DIR (a second run there is refused at once) and, for a
 * run that neither resumes nor overwrites, refuses a directory holding an
 * earlier run; every rank learns the outcome. Collective. */
status_t trainer_claim_run_dir(trainer *t);
/* --overwrite: rank 0 removes the earlier run's checkpoints, latest and
 * metrics.jsonl, saying what it removed. Collective. */
status_t trainer_clear_run_dir(trainer *t);
/* Chooses and loads the checkpoint of tc.resume (auto or a path) on every
 * rank: its stage's parameters and its shard's moments by global offset, on
 * any layout; leaves the trainer at its step and takes over its run id. Sets
 * start_step = 0 when there is none. */
status_t trainer_resume(trainer *t);
/* At the boundary after step `done`: agrees with every rank on a preemption
 * signal or a due checkpoint, saves when one is due; returns ST_PREEMPTED
 * (checkpoint written) when a signal asked to stop. `best`: the validation
 * of this step found a new best and ckpt.keep_best wants it: a checkpoint is
 * saved and RUN_DIR/best names it. `last`: the run ends here (early stop),
 * the save is the final one. */
status_t trainer_step_boundary(trainer *t, int64_t done, int best, int last);

/* --- validation (train_valid.c) --- */
/* Sets the "none yet" state and, with eval.every_steps > 0, checks the
 * validation dataset (readable, its vocabulary fits the model and is the
 * training dataset's); ST_CONFIG naming eval.data_path. */
status_t trainer_valid_check(trainer *t);
/* The evaluation after step `step`: figures, best and patience updated, a
 * log line; *improved: a new lowest val_loss; *stop: eval.patience is
 * spent. Collective. */
status_t trainer_validate(trainer *t, int64_t step, int *improved, int *stop);
/* Rank 0: the evaluation's metrics.jsonl row. */
void trainer_valid_row(trainer *t, int64_t step);
int trainer_patience_spent(const trainer *t);
void trainer_log_early_stop(const trainer *t);
/* The state a checkpoint records, and its restoring on resume. */
void trainer_valid_save(const trainer *t, ckpt_validation *v);
void trainer_valid_restore(trainer *t, const ckpt_validation *v);
/* The job's ranks on this node (MPI_COMM_TYPE_SHARED). Collective. */
status_t trainer_local_ranks(MPI_Comm comm, int *n);
/* Refuses (ST_CONFIG, with the estimate, the limit and its source, and what
 * to change) a layout whose per-rank memory (dist_memory_estimate) does not
 * fit what this process may use: the cgroup limit and MemAvailable divided
 * among the ranks on this node, RLIMIT_AS. MPILM_MEMORY_CHECK=0 skips it.
 * Needs t->local_ranks; collective (train_memory.c). */
status_t trainer_check_memory(trainer *t);
/* Catches SIGTERM, SIGINT and SIGUSR1 (flag only) for trainer_step_boundary. */
void trainer_catch_signals(void);

/* Seconds the step's watchdog backstop waits beyond dist.hang_timeout, so the
 * engine's own, more detailed report comes first. */
#define WATCHDOG_GRACE 10.0

/* The per-machine cache (MPILM_CACHE_DIR, else $XDG_CACHE_HOME/mpilm, else
 * ~/.cache/mpilm): the file PREFIX-HASH.txt for key (with this CPU's model);
 * 0 when there is no place for it. train_cache_store writes line to it
 * atomically (a temporary file renamed); 0 when it could not. */
int train_cache_file(const char *prefix, const char *key, char *path, size_t n);
int train_cache_store(const char *path, const char *line);

/* The peak resident bytes a rank with memory plan m is predicted to reach
 * (the plan's buffers, allocator and kernel slack, the runtime) on top of
 * baseline, what the process holds before training (train_memory_baseline:
 * its resident bytes now). */
double train_memory_resident(const dist_memory *m, double baseline);
/* The peak resident bytes expected without the check's margins (allocator
 * slack, runtime): what mpilm plan predicts. */
double train_memory_expected(const dist_memory *m, double baseline);
double train_memory_baseline(void);

#endif

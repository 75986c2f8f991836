/* train internals: the trainer's state, shared by the loop (train.c) and the
 * checkpoint side (train_ckpt.c: collective save, resume, preemption). */
#ifndef MPILM_TRAIN_TRAIN_INTERNAL_H
#define MPILM_TRAIN_TRAIN_INTERNAL_H

#include <stdio.h>

#include "data/random_source.h"
#include "data/stream.h"
#include "tensor/tensor.h"
#include "train/train.h"

struct trainer {
    train_config tc;
    MPI_Comm comm;
    int rank, size;
    tensor_runtime rt;
    double peak_gflops;        /* sum over ranks */
    model_stage *model;
    float *m, *v;              /* AdamW moments, the parameters' layout */
    batch batch;
    random_spec random;        /* data.source = random */
    stream *stream;            /* data.source = dataset */
    FILE *metrics;
    double last_loss;
    double last_lr;             /* LR of the last step (for the manifest) */
    int64_t start_step;         /* 0, or the step of the checkpoint resumed from */
    uint64_t sample_base;       /* global index of the first sample of start_step */
    double last_save_time;
    double step_delay;          /* test hook MPILM_TEST_STEP_DELAY: seconds slept per step */
};

/* Checkpoints write the stage's buffer as the global flat order (pp = 1):
 * checks, by name and offset, that the two agree. */
status_t trainer_check_global_order(const trainer *t);
/* Chooses and loads the checkpoint of tc.resume (auto or a path) on every
 * rank; leaves the trainer at its step. Sets start_step = 0 when there is none. */
status_t trainer_resume(trainer *t);
/* At the boundary after step `done`: agrees with every rank on a preemption
 * signal or a due checkpoint, saves when one is due; returns ST_PREEMPTED
 * (checkpoint written) when a signal asked to stop. */
status_t trainer_step_boundary(trainer *t, int64_t done);
/* Catches SIGTERM and SIGUSR1 (flag only) for trainer_step_boundary. */
void trainer_catch_signals(void);

#endif

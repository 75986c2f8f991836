/* ckpt/checkpoint — training checkpoints: RUN_DIR/step-NNNNNNN/ with
 * manifest.json and shard files addressed by global element offsets
 * (docs/formats.md, "Checkpoints").
 *
 * Owns: the manifest (writing, reading, checking), the shard files (one
 * contiguous global element range of the parameters, then AdamW's m, then v),
 * the commit protocol of a step directory (temp dir → rename → latest →
 * pruning), the reader that fills any stage from any layout, and the
 * inspector's verification.
 * Must not touch: MPI (train/ runs the collective protocol and calls the
 * pieces here in order), the training loop, command-line parsing.
 *
 * Invariant: a directory RUN_DIR/step-N is complete (every shard fsynced, the
 * manifest fsynced, the directory fsynced) before its name exists; RUN_DIR/latest
 * only ever names such a directory. Pruning removes only step directories
 * whose manifest carries the saving run's id, never the one just written.
 */
#ifndef MPILM_CKPT_CHECKPOINT_H
#define MPILM_CKPT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "data/stream.h"
#include "model/model.h"

#define CKPT_FORMAT "mpilm-checkpoint"
#define CKPT_VERSION 1
#define CKPT_MANIFEST "manifest.json"
#define CKPT_SECTIONS 3 /* params, exp_avg, exp_avg_sq */

typedef struct ckpt_topology {
    int world, pp, dp, tp, zero;
} ckpt_topology;

/* The tokenizer a checkpoint carries in its vocab/ directory (the manifest's
 * "tokenizer" object; absent for a run on random data). */
typedef struct ckpt_tokenizer {
    int present;
    char kind[16];                /* "bpe" or "wordpiece" */
    uint64_t fingerprint;         /* tokenizer_fingerprint() of the vocabulary */
    uint32_t vocab_size;          /* 0 in manifests written before it was recorded */
} ckpt_tokenizer;

/* Training's validation state (the manifest's "validation" object; absent
 * before the first evaluation and in older checkpoints): the lowest val_loss
 * so far and its step, and the evaluations since (eval.patience's count). */
typedef struct ckpt_validation {
    int present;
    int has_best;                 /* 0: no finite val_loss yet (best_val_loss null) */
    double best_val_loss;
    int64_t best_step;
    int64_t evals_since_best;
} ckpt_validation;

/* Everything the manifest records besides the model tables and the files. */
typedef struct ckpt_meta {
    model_config model;
    int64_t step, tokens_seen;
    uint64_t seed;
    double lr;                    /* the LR of the last step */
    double elapsed_s;             /* wall seconds of training up to this step, over every resume (0 in older manifests) */
    int random_data;              /* data.source = random */
    char data_path[1024];
    stream_cursor cursor;         /* dataset: rank 0's cursor at the step boundary */
    uint64_t next_sample;         /* the next global sample index (random data; dropout keys) */
    ckpt_topology topo;
    uint64_t run_id;              /* the run that wrote it; 0 = none (import, or an older mpilm) */
    const char *config_text;      /* config_print output (no origins), or NULL */
    const char *vocab_src;        /* directory of vocabulary files to copy, or NULL */
    ckpt_tokenizer tokenizer;     /* read from the manifest (writing describes vocab_src instead) */
    ckpt_validation validation;
} ckpt_meta;

/* One shard file: its global element range and where each section lies. */
typedef struct ckpt_file {
    char name[32];
    int rank;
    uint64_t begin, end;
    uint64_t offset[CKPT_SECTIONS], bytes[CKPT_SECTIONS], hash[CKPT_SECTIONS];
} ckpt_file;

/* Names: "step-0000100", "shard-00003.bin". */
void ckpt_step_name(int64_t step, char *buf, size_t len);

/* --- writing (the collective protocol calls these in this order) --- */

/* Removes a stale temp dir of that step and creates RUN_DIR/.step-N.tmp;
 * tmp receives its path. */
status_t ckpt_begin(const char *run_dir, int64_t step, char *tmp, size_t len);
/* Writes shard file `index` into tmp: elements [begin, end) of the global
 * flat order, which params, m, v hold ([end - begin] floats each; m, v may be
 * NULL: zeros), fsynced. Test hook:
 * MPILM_TEST_CKPT_FAIL=write (or write:INDEX) fails it as a full disk would. */
status_t ckpt_shard_write(const char *tmp, int index, uint64_t begin, uint64_t end, const float *params,
                          const float *m, const float *v, ckpt_file *out);
/* Writes tmp/manifest.json (and tmp/vocab/ from meta->vocab_src), fsynced. */
status_t ckpt_manifest_write(const char *tmp, const ckpt_meta *meta, const ckpt_file *files, int n_files);
/* Renames tmp to RUN_DIR/step-N, replaces RUN_DIR/latest (and RUN_DIR/best
 * when `best`), then prunes: of the step directories whose manifest carries
 * run_id (0: prune nothing), the `keep` - 1 newest below step stay besides
 * step-N, older ones are removed; the one RUN_DIR/best names (kept besides
 * the `keep`), directories of other runs, without a run id, unreadable or
 * above step are never touched. fsyncs RUN_DIR after each change. */
status_t ckpt_commit(const char *run_dir, int64_t step, const char *tmp, uint64_t run_id, int keep, int best);
/* Removes the temp dir after a failure. */
void ckpt_abort(const char *tmp);

/* Writes a checkpoint of a full model from one process (import uses it):
   params of the full table, no optimizer state (moments zero), step 0. */
status_t ckpt_write_model(const char *run_dir, const model_config *c, const float *params,
                          const char *vocab_dir /* may be NULL */);

/* --- reading --- */

typedef struct ckpt_reader ckpt_reader;

/* dir: a step directory, or a run directory (its latest). Verifies every checksum. */
status_t ckpt_open(ckpt_reader **out, const char *dir);
const model_config *ckpt_model(const ckpt_reader *r);
const char *ckpt_path(const ckpt_reader *r);        /* the step directory */
const char *ckpt_vocab_dir(const ckpt_reader *r);   /* step dir/vocab, or NULL */
int64_t ckpt_step(const ckpt_reader *r);
const char *ckpt_config_value(const ckpt_reader *r, const char *key); /* "data.path" ... */
/* The training state the manifest holds (model, step, data position, topology). */
const ckpt_meta *ckpt_meta_of(const ckpt_reader *r);
int ckpt_n_files(const ckpt_reader *r);
const ckpt_file *ckpt_file_at(const ckpt_reader *r, int i);
/* Fills the parameters of stage m (any layer range) from the checkpoint by name and
   global offset; moments too when m_out/v_out are not NULL (same layout as params). */
status_t ckpt_read_stage(const ckpt_reader *r, const model_stage *m, float *params,
                         float *m_out, float *v_out);
/* The same for the stage's floats [lo, hi) only: each buffer that is not NULL
   receives hi - lo floats (a ZeRO shard's moments). */
status_t ckpt_read_stage_range(const ckpt_reader *r, const model_stage *m, size_t lo, size_t hi, float *params,
                               float *m_out, float *v_out);
void ckpt_close(ckpt_reader *r);

/* Refuses a checkpoint whose model differs from c in a key that fixes the
 * parameters' shapes or meaning; the message names the key and both values. */
status_t ckpt_check_model(const ckpt_reader *r, const model_config *c);

/* Refuses a tokenizer other than the one the checkpoint was trained with
 * (a checkpoint without one accepts any): kind ("bpe"/"wordpiece"),
 * fingerprint and vocab_size of `what` (e.g. "the dataset DIR"); the
 * message names both tokenizers and ends with `todo`. ST_CONFIG. */
status_t ckpt_check_tokenizer(const ckpt_reader *r, const char *kind, uint64_t fingerprint, uint32_t vocab_size,
                              const char *what, const char *todo);

/* 1 when dir looks like a step directory (a checkpoint manifest.json or
 * shard-00000.bin) or a run directory with a latest link. */
int ckpt_is_checkpoint(const char *dir);

/* The step directories of run_dir, newest first (caller frees with free());
 * *n receives the count. */
status_t ckpt_list_steps(const char *run_dir, int64_t **steps, int *n);

/* The run id in step_dir's manifest (0 when it has none); an error when the
 * manifest cannot be read or its run_id is malformed. */
status_t ckpt_run_id(const char *step_dir, uint64_t *run_id);

/* --- the run directory (docs/formats.md, "Run directory") --- */

/* A fresh random run id, never 0. */
uint64_t ckpt_run_new_id(void);
/* Creates run_dir and takes an exclusive flock on run_dir/.lock without
 * waiting; *fd keeps it (the kernel releases it when the process ends).
 * Writes "pid PID on HOST since TIME" into the file. A lock held elsewhere is
 * ST_USAGE naming the directory and what the holder wrote. */
status_t ckpt_run_lock(const char *run_dir, int *fd);
/* Empties the lock file and releases the lock (fd < 0: nothing). */
void ckpt_run_unlock(int fd);
/* ST_USAGE when run_dir holds a run (a step directory, latest or
 * metrics.jsonl): the message names the newest step found and the choices
 * --resume auto and --overwrite. */
status_t ckpt_run_check_new(const char *run_dir);
/* After a resume: RUN_DIR/best -> step-N of the resumed checkpoint's best
 * step (step < 0: none) when that checkpoint exists; otherwise best is
 * removed (it named a checkpoint of the abandoned continuation, or of a time
 * when ckpt.keep_best was off). Atomic, like latest. */
status_t ckpt_run_set_best(const char *run_dir, int64_t step);
/* --overwrite: removes what a run writes in run_dir (latest, best, step
 * directories that are checkpoints, temporary and moved-aside save
 * directories, metrics.jsonl), latest first; nothing else. what (len bytes)
 * receives a description of what was removed ("" when nothing). */
status_t ckpt_run_clear(const char *run_dir, char *what, size_t len);

#endif

/* train/ckpt — the collective side of checkpoints: when to save (steps,
 * minutes on rank 0's clock, a preemption signal), the save protocol over the
 * data-parallel group (docs/formats.md, "Atomic save protocol"), and resume.
 * Every failure on any rank reaches every rank (agree()), so none waits. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/timer.h"
#include "ckpt/checkpoint.h"
#include "train/train_internal.h"

static volatile sig_atomic_t preempt_signal;

static void on_signal(int signo) { preempt_signal = signo; }

void trainer_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

/* Every rank learns the first failure (lowest rank among the worst codes)
 * with its message. */
static status_t agree(trainer *t, status_t st)
{
    struct { int code, rank; } mine = {(int)st, st == ST_OK ? t->size : t->rank}, worst;
    mine.rank = -mine.rank; /* MAXLOC keeps the lowest rank among equal codes */
    MPI_Allreduce(&mine, &worst, 1, MPI_2INT, MPI_MAXLOC, t->comm);
    if (worst.code == ST_OK) return ST_OK;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", st_message());
    MPI_Bcast(msg, sizeof msg, MPI_CHAR, -worst.rank, t->comm);
    return st_fail((status_t)worst.code, "%s", msg);
}

status_t trainer_check_global_order(const trainer *t)
{
    model_tensor *full;
    int n;
    TRY(model_full_table(&t->tc.model, &full, &n));
    status_t st = ST_OK;
    if (n != model_n_tensors(t->model)) st = st_fail(ST_ERROR, "train: the stage holds %d tensors, the full model %d "
                                                               "(expected one stage = the whole model for pp = 1)",
                                                     model_n_tensors(t->model), n);
    for (int i = 0; st == ST_OK && i < n; i++) {
        const model_tensor *m = model_tensor_at(t->model, i);
        if (strcmp(m->name, full[i].name) != 0 || m->offset != full[i].offset)
            st = st_fail(ST_ERROR, "train: stage tensor %d is %s at %zu but the checkpoint order has %s at %zu "
                                   "(expected the same order for pp = 1)", i, m->name, m->offset, full[i].name,
                         full[i].offset);
    }
    free(full);
    return st;
}

static uint64_t global_batch(const trainer *t)
{
    return (uint64_t)t->tc.micro_batch * (uint64_t)t->tc.micro_batches * (uint64_t)t->size;
}

static void fill_meta(const trainer *t, int64_t step, ckpt_meta *meta)
{
    const train_config *tc = &t->tc;
    memset(meta, 0, sizeof *meta);
    meta->model = tc->model;
    meta->step = step;
    meta->next_sample = t->sample_base + (uint64_t)(step - t->start_step) * global_batch(t);
    meta->tokens_seen = (int64_t)meta->next_sample * tc->model.seq_len;
    meta->seed = tc->seed;
    meta->lr = t->last_lr;
    meta->random_data = tc->random_data;
    snprintf(meta->data_path, sizeof meta->data_path, "%s", tc->data_path);
    if (t->stream) stream_cursor_get(t->stream, &meta->cursor);
    meta->topo = (ckpt_topology){.world = t->size, .pp = 1, .dp = t->size, .tp = 1, .zero = 0};
    meta->config_text = tc->config_text;
    meta->vocab_src = tc->random_data ? NULL : tc->data_path;
}

/* The collective save of step `step`: temp dir (rank 0), every rank's shard
 * in parallel, then manifest, rename, latest and pruning on rank 0. */
static status_t save(trainer *t, int64_t step)
{
    char tmp[4200] = "";
    status_t st = t->rank == 0 ? ckpt_begin(t->tc.run_dir, step, tmp, sizeof tmp) : ST_OK;
    TRY(agree(t, st));
    MPI_Bcast(tmp, sizeof tmp, MPI_CHAR, 0, t->comm);
    uint64_t begin, end;
    ckpt_shard_range(model_n_params(t->model), t->rank, t->size, &begin, &end);
    ckpt_file file, *files = t->rank == 0 ? calloc((size_t)t->size, sizeof *files) : NULL;
    st = t->rank == 0 && !files ? st_fail(ST_NOMEM, "checkpoint: out of memory for %d file entries", t->size) : ST_OK;
    if (st == ST_OK) st = ckpt_shard_write(tmp, t->rank, begin, end, model_params(t->model), t->m, t->v, &file);
    st = agree(t, st);
    if (st == ST_OK) {
        MPI_Gather(&file, sizeof file, MPI_BYTE, files, sizeof file, MPI_BYTE, 0, t->comm);
        if (t->rank == 0) {
            ckpt_meta meta;
            fill_meta(t, step, &meta);
            st = ckpt_manifest_write(tmp, &meta, files, t->size);
            if (st == ST_OK) st = ckpt_commit(t->tc.run_dir, step, tmp, t->tc.ckpt_keep);
        }
        st = agree(t, st);
    }
    if (st != ST_OK && t->rank == 0) ckpt_abort(tmp);
    free(files);
    return st;
}

static const char *signal_name(int signo) { return signo == SIGTERM ? "SIGTERM" : signo == SIGUSR1 ? "SIGUSR1" : "a signal"; }

status_t trainer_step_boundary(trainer *t, int64_t done)
{
    const train_config *tc = &t->tc;
    int flags[2] = {preempt_signal, 0};
    if (t->rank == 0 && tc->ckpt_every_minutes > 0)
        flags[1] = time_now() - t->last_save_time >= tc->ckpt_every_minutes * 60.0;
    MPI_Allreduce(MPI_IN_PLACE, flags, 2, MPI_INT, MPI_MAX, t->comm);
    int every = tc->ckpt_every_steps > 0 && done % tc->ckpt_every_steps == 0;
    if (!flags[0] && !flags[1] && !every && done != tc->steps) return ST_OK;
    status_t st = save(t, done);
    t->last_save_time = time_now();
    if (st == ST_OK) {
        log_msg(LOG_INFO, "checkpoint step %lld written to %s", (long long)done, tc->run_dir);
    } else if (!flags[0] && tc->ckpt_continue) {
        if (t->rank == 0)
            log_msg(LOG_WARN, "checkpoint at step %lld failed, training goes on (ckpt.on_error = continue): %s",
                    (long long)done, st_message());
        st_clear();
    } else {
        return st_context(st, "checkpoint at step %lld failed (the previous checkpoint and latest are intact): ",
                          (long long)done);
    }
    if (!flags[0]) return ST_OK;
    log_msg(LOG_INFO, "preempted by %s at step %lld: checkpoint written, exit 75", signal_name(flags[0]),
            (long long)done);
    return st_fail(ST_PREEMPTED, "preempted by %s at step %lld: checkpoint written, exit 75", signal_name(flags[0]),
                   (long long)done);
}

/* --- resume --- */

/* auto: latest, else the newest step directory that verifies, else none. */
static status_t choose_auto(const trainer *t, ckpt_reader **out)
{
    const char *run = t->tc.run_dir;
    char latest[4200];
    snprintf(latest, sizeof latest, "%s/latest", run);
    char tried[PATH_MAX] = "", why[1024] = "";
    if (ckpt_open(out, run) == ST_OK) return ST_OK;
    snprintf(why, sizeof why, "%s", st_message());
    if (!realpath(latest, tried)) tried[0] = '\0';
    int64_t *steps;
    int n;
    TRY(ckpt_list_steps(run, &steps, &n));
    for (int i = 0; i < n && !*out; i++) {
        char path[4200], name[32], real[PATH_MAX];
        ckpt_step_name(steps[i], name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", run, name);
        if (tried[0] && realpath(path, real) && strcmp(real, tried) == 0) continue;
        if (ckpt_open(out, path) != ST_OK) {
            log_msg(LOG_WARN, "resume: %s", st_message());
            continue;
        }
        log_msg(LOG_WARN, "resume: %s is not usable (%s); resuming from %s instead", latest, why, path);
    }
    free(steps);
    if (!*out) log_msg(LOG_WARN, "resume: no valid checkpoint in %s (%s); starting from scratch", run, why);
    st_clear();
    return ST_OK;
}

/* Rank 0 chooses and verifies; every rank then opens the chosen directory. */
static status_t open_chosen(trainer *t, ckpt_reader **r)
{
    char chosen[PATH_MAX] = "";
    status_t st = ST_OK;
    if (t->rank == 0) {
        st = strcmp(t->tc.resume, "auto") == 0 ? choose_auto(t, r) : ckpt_open(r, t->tc.resume);
        if (*r) snprintf(chosen, sizeof chosen, "%s", ckpt_path(*r));
    }
    TRY(agree(t, st));
    MPI_Bcast(chosen, sizeof chosen, MPI_CHAR, 0, t->comm);
    if (t->rank != 0 && chosen[0]) st = ckpt_open(r, chosen);
    return agree(t, st);
}

static status_t restore(trainer *t, const ckpt_reader *r)
{
    const ckpt_meta *meta = ckpt_meta_of(r);
    TRY(ckpt_check_model(r, &t->tc.model));
    FAIL_IF(meta->random_data != t->tc.random_data, ST_CONFIG,
            "%s: the checkpoint was trained on data.source = %s (expected the same source to resume)", ckpt_path(r),
            meta->random_data ? "random" : "dataset");
    FAIL_IF(meta->step > t->tc.steps, ST_CONFIG, "%s: the checkpoint is at step %lld, beyond train.steps = %lld; "
            "raise train.steps", ckpt_path(r), (long long)meta->step, (long long)t->tc.steps);
    TRY(ckpt_read_stage(r, t->model, model_params(t->model), t->m, t->v));
    if (t->stream) TRY(stream_cursor_set(t->stream, &meta->cursor));
    t->start_step = meta->step;
    t->sample_base = meta->next_sample;
    t->last_lr = meta->lr;
    return ST_OK;
}

status_t trainer_resume(trainer *t)
{
    ckpt_reader *r = NULL;
    TRY(open_chosen(t, &r));
    if (!r) return ST_OK;
    status_t st = agree(t, restore(t, r));
    if (st == ST_OK)
        log_msg(LOG_INFO, "resumed from %s (step %lld)", ckpt_path(r), (long long)ckpt_step(r));
    ckpt_close(r);
    return st;
}

/* train — the training loop: every layout runs through dist_train_step; this
 * file feeds it micro-batches and reports. */
#include <math.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/fileio.h"
#include "base/log.h"
#include "base/testhook.h"
#include "base/timer.h"
#include "base/watchdog.h"
#include "layout/layout.h"
#include "ckpt/checkpoint.h"
#include "data/random_source.h"
#include "data/stream.h"
#include "tensor/tensor.h"
#include "train/plan.h"
#include "train/train_internal.h"


static status_t setup_runtime(trainer *t)
{
    TRY(tensor_runtime_init(t->tc.threads, t->local_ranks, &t->rt));
    log_msg(LOG_INFO, "BLIS kernels %s%s, %d thread%s per rank (%s), %d rank%s",
            t->rt.arch, t->rt.arch_chosen ? " (chosen by mpilm from the CPU features; BLIS_ARCH_TYPE overrides)" : " (BLIS_ARCH_TYPE)",
            t->rt.threads, t->rt.threads == 1 ? "" : "s", t->rt.threads_origin, t->size,
            t->size == 1 ? "" : "s");
    log_msg(LOG_INFO, "precision %s", t->tc.precision_why);
    return trainer_measure_peak(t);
}

/* After a resume from step s, the lines of steps <= s are kept and the run
 * appends; otherwise the file starts empty. */
static status_t keep_metrics_until(const char *path, int64_t step)
{
    char *text;
    size_t len;
    if (fileio_read_file(path, &text, &len) != ST_OK) {
        st_clear();
        return ST_OK;
    }
    size_t kept = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
        const char *at = strstr(line, "\"step\":");
        if (at && at < line + n && strtoll(at + 7, NULL, 10) <= step) {
            memmove(text + kept, line, n);
            kept += n;
        }
        line += n;
    }
    status_t st = fileio_write_atomic(path, text, kept);
    free(text);
    return st;
}

static status_t open_metrics(trainer *t)
{
    if (t->rank != 0) return ST_OK;
    TRY(fileio_make_dirs(t->tc.run_dir, 0755));
    char path[1100];
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->tc.run_dir);
    if (t->start_step > 0) TRY(keep_metrics_until(path, t->start_step));
    t->metrics = fopen(path, t->start_step > 0 ? "a" : "w");
    FAIL_IF(!t->metrics, ST_IO, "%s: cannot open for writing; check that the run directory is writable", path);
    return ST_OK;
}

static status_t setup_data(trainer *t)
{
    const train_config *tc = &t->tc;
    int bert = tc->model.family == MODEL_BERT;
    if (tc->random_data) {
        t->random = (random_spec){.mlm = bert, .nsp = bert && tc->nsp, .vocab_size = tc->model.vocab_size, .mask_prob = tc->mask_prob,
                                  .seed = tc->seed, .samples = (uint64_t)tc->random_samples};
        return ST_OK;
    }
    /* every stage of a replica reads the replica's samples (the same micro-batches) */
    stream_spec spec = {.path = tc->data_path, .objective = bert ? STREAM_MLM : STREAM_CAUSAL,
                        .seq_len = tc->model.seq_len, .mask_prob = tc->mask_prob, .nsp = bert && tc->nsp,
                        .seed = tc->seed, .dp_rank = t->topo->replica, .dp_size = t->topo->dp,
                        .chunk = tc->micro_batch * tc->micro_batches, .vocab_size = tc->model.vocab_size,
                        .blend = 1};
    TRY(stream_open(&t->stream, &spec));
    stream_blend bl;
    TRY(stream_blend_parse(tc->data_path, &bl));
    snprintf(t->vocab_dir, sizeof t->vocab_dir, "%s", bl.path[0]); /* a blend's datasets share it */
    const dataset_info *di = stream_info(t->stream);
    if (bl.n == 1)
        log_msg(LOG_INFO, "data: %s (%llu tokens, %llu documents, vocabulary %u)", bl.path[0],
                (unsigned long long)di->n_tokens, (unsigned long long)di->n_documents, di->vocab_size);
    for (int d = 0; bl.n > 1 && d < bl.n; d++) {
        dataset_info info;
        TRY(dataset_info_read(bl.path[d], &info));
        log_msg(LOG_INFO, "data: blend %d of %d: %s, weight %.4g (%llu tokens, %llu documents, vocabulary %u)", d + 1,
                bl.n, bl.path[d], bl.weight[d], (unsigned long long)info.n_tokens,
                (unsigned long long)info.n_documents, info.vocab_size);
    }
    return ST_OK;
}

/* The placement of every rank and its persistent training state. */
static status_t describe_layout(trainer *t)
{
    dist_memory m = dist_engine_memory(t->engine);
    enum { K = 8 };
    double mine[K] = {m.params / 1048576.0, m.params_mirror / 1048576.0, m.grad_accum / 1048576.0,
                      m.grads / 1048576.0, m.optimizer / 1048576.0, m.messages_bf16 / 1048576.0,
                      m.activations / 1048576.0, m.tied_recv / 1048576.0};
    double *all = t->rank == 0 ? malloc(sizeof mine * (size_t)t->size) : NULL;
    FAIL_IF(t->rank == 0 && !all, ST_NOMEM, "train: out of memory");
    if (MPI_Gather(mine, K, MPI_DOUBLE, all, K, MPI_DOUBLE, 0, t->comm) != MPI_SUCCESS) {
        free(all);
        return st_fail(ST_MPI, "train: gathering every rank's memory plan (MPI_Gather) failed");
    }
    char *text = t->rank == 0 ? malloc((size_t)t->size * 128 + 1) : NULL;
    if (text) {
        const dist_topology *p = t->topo;
        dist_topology_describe(p, text, (size_t)t->size * 128 + 1);
        size_t len = strlen(text);
        if (len && text[len - 1] == '\n') text[len - 1] = '\0';
        char mode[64] = "1d";
        int P, Q, block;
        if (dist_engine_tp_grid(t->engine, &P, &Q, &block))
            snprintf(mode, sizeof mode, "2d: FFN on a %d x %d grid, blocks of %d", P, Q, block);
        else if (t->tc.dist.tp_mode == DIST_TP_2D)
            snprintf(mode, sizeof mode, "2d");
        log_msg(LOG_INFO, "layout: pp %d x dp %d x tp %d (%s), %s schedule, ZeRO %d; placement:\n%s", p->pp, p->dp,
                p->tp, mode, t->tc.dist.schedule == DIST_GPIPE ? "gpipe" : "1f1b", t->tc.dist.zero, text);
        for (int r = 0; r < t->size; r++) {
            const double *a = all + K * r;
            char bf[80] = "", shard[48] = "", msg[48] = "", tied[64] = "";
            if (a[1] > 0) snprintf(bf, sizeof bf, " (bf16 pairs) + fp32 vectors and position tables %.1f", a[1]);
            if (a[3] > 0) snprintf(shard, sizeof shard, " + reduced-gradient shard %.1f", a[3]);
            if (a[5] > 0) snprintf(msg, sizeof msg, " + bf16 message buffers %.1f", a[5]);
            if (a[7] > 0) snprintf(tied, sizeof tied, " + the last stage's tied-embedding gradient %.1f", a[7]);
            log_msg(LOG_INFO, "rank %d memory: params %.1f%s + gradients %.1f%s + optimizer %.1f%s%s + activations %.1f = "
                    "%.1f MiB", r, a[0], bf, a[2], shard, a[4], msg, tied, a[6],
                    a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7]);
        }
    }
    free(text);
    free(all);
    return t->rank == 0 && !text ? st_fail(ST_NOMEM, "train: out of memory") : ST_OK;
}

/* dist.layout = auto: rank 0 plans every layout of the job's ranks (mpilm
 * plan, its costs measured once per machine and cached) and every rank takes
 * the fastest that fits; the global batch stays what the configuration gives. */
static status_t choose_layout(trainer *t)
{
    train_config *tc = &t->tc;
    int pick[6] = {0, 0, 0, 0, 0, 0}; /* ok, pp, tp, zero, schedule, global batch */
    char why[320] = "";
    status_t st = ST_OK;
    if (t->rank == 0) {
        plan_options o = {.np = t->size, .net = plan_net_given(100, 2), .threads = t->rt.threads};
        plan_result r;
        st = plan_layouts(tc, &o, &r);
        if (st == ST_OK) {
            const plan_layout *l = &r.layouts[0];
            if (r.n && l->ok) {
                pick[0] = 1, pick[1] = l->pp, pick[2] = l->tp, pick[3] = l->zero, pick[4] = (int)l->schedule;
                pick[5] = r.global_batch;
                log_msg(LOG_INFO, "dist.layout = auto: pp %d x dp %d x tp %d, zero %d, %s (the fastest of %d layouts "
                        "mpilm plan predicts at %d ranks: %.0f tokens/s, %.0f MiB on the largest rank)", l->pp, l->dp,
                        l->tp, l->zero, l->pp == 1 ? "no pipeline" : l->schedule == DIST_GPIPE ? "gpipe" : "1f1b", r.n,
                        t->size, l->tokens_per_s, l->peak_mib);
            } else {
                snprintf(why, sizeof why, "%s", r.n ? r.layouts[0].why : "no layout");
            }
            plan_result_free(&r);
        }
    }
    int bad = st != ST_OK;
    FAIL_IF(MPI_Bcast(&bad, 1, MPI_INT, 0, t->comm) != MPI_SUCCESS || MPI_Bcast(pick, 6, MPI_INT, 0, t->comm) !=
            MPI_SUCCESS || MPI_Bcast(why, sizeof why, MPI_CHAR, 0, t->comm) != MPI_SUCCESS, ST_MPI,
            "train: rank %d: receiving the planned layout failed (MPI_Bcast)", t->rank);
    if (bad) return t->rank == 0 ? st : st_fail(ST_CONFIG, "dist.layout = auto: planning failed on rank 0");
    FAIL_IF(!pick[0], ST_CONFIG, "dist.layout = auto: no layout of %d ranks fits (%s); add ranks, lower "
            "train.micro_batch or set model.recompute = ffn or true", t->size, why);
    tc->dist.pp = pick[1], tc->dist.tp = pick[2], tc->dist.dp = 0, tc->dist.zero = pick[3];
    tc->dist.schedule = (dist_schedule_kind)pick[4], tc->dist.tp_mode = DIST_TP_1D, tc->dist.n_stages = 0;
    tc->global_batch = pick[5];
    tc->micro_batches = 0; /* follows dp */
    return ST_OK;
}

status_t trainer_create(trainer **out, const train_config *tc, MPI_Comm comm)
{
    trainer *t = calloc(1, sizeof *t);
    FAIL_IF(!t, ST_NOMEM, "train: out of memory");
    *out = t;
    t->lock_fd = -1;
    t->tc = *tc;
    t->comm = comm;
    MPI_Comm_rank(comm, &t->rank);
    MPI_Comm_size(comm, &t->size);
    TRY(trainer_local_ranks(comm, &t->local_ranks));
    TRY(setup_runtime(t));
    if (t->tc.layout_auto) TRY(choose_layout(t));
    TRY(train_resolve_batch(&t->tc, t->size));
    tc = &t->tc;
    TRY(trainer_check_memory(t));
    TRY(dist_engine_create(&t->engine, &tc->dist, &tc->model, &tc->optim, tc->micro_batch, tc->micro_batches,
                           tc->seed, comm, &t->state.w));
    t->topo = dist_engine_topology(t->engine);
    TRY(trainer_claim_run_dir(t));
    TRY(setup_data(t));
    TRY(trainer_valid_check(t));
    const char *delay = testhook_get(TESTHOOK_STEP_DELAY);
    t->step_delay = delay ? atof(delay) : 0.0;
    if (tc->overwrite) TRY(trainer_clear_run_dir(t));
    TRY(watchdog_start(t->rank));
    if (tc->resume[0]) {
        watchdog_arm("the resume (choosing, verifying and reading the checkpoint)", tc->ckpt_io_timeout);
        TRY(trainer_resume(t));
        watchdog_disarm();
    }
    if (!t->run_id) t->run_id = ckpt_run_new_id(); /* a new run (only rank 0's is used: it writes the manifests) */
    t->next_g = dist_microbatch_index(t->start_step, t->topo->dp, t->topo->replica, tc->micro_batches, 0);
    TRY(open_metrics(t));
    TRY(describe_layout(t));
    model_tensor *full;
    int n_full;
    TRY(model_full_table(&tc->model, &full, &n_full));
    size_t n = full[n_full - 1].offset + full[n_full - 1].numel;
    free(full);
    log_msg(LOG_INFO, "%s model: %zu parameters, %d layers, d_model %d; global batch %d x %d x %d sequences of %d tokens",
            tc->model.family == MODEL_BERT ? "BERT" : tc->model.family == MODEL_LLAMA ? "Llama" : "GPT", n,
            tc->model.n_layer, tc->model.d_model,
            tc->micro_batch, tc->micro_batches, t->topo->dp, tc->model.seq_len);
    if (tc->vocab_dataset)
        log_msg(LOG_INFO, "model.vocab_size = auto → %d (dataset vocabulary %u, padded to a multiple of %d)",
                tc->model.vocab_size, tc->vocab_dataset, TRAIN_VOCAB_PAD);
    if (tc->tokens > 0) {
        uint64_t per_step = trainer_global_batch(t) * (uint64_t)tc->model.seq_len;
        log_msg(LOG_INFO, "train.tokens = %lld -> %lld steps of %llu tokens (%llu tokens in all)",
                (long long)tc->tokens, (long long)tc->steps, (unsigned long long)per_step,
                (unsigned long long)per_step * (uint64_t)tc->steps);
    }
    return ST_OK;
}

void trainer_free(trainer *t)
{
    if (!t) return;
    if (t->metrics) fclose(t->metrics);
    if (t->stream) stream_close(t->stream);
    dist_engine_free(t->engine);
    optim_state_free(&t->state.w);
    ckpt_run_unlock(t->lock_fd);
    free(t);
}

model_stage *trainer_model(trainer *t) { return dist_engine_stage(t->engine); }
int64_t trainer_start_step(const trainer *t) { return t->start_step; }
double trainer_last_loss(const trainer *t) { return t->last_loss; }

uint64_t trainer_global_batch(const trainer *t)
{
    return (uint64_t)t->tc.micro_batch * (uint64_t)t->tc.micro_batches * (uint64_t)t->topo->dp;
}

/* dist_fill_fn: global micro-batch g (dist_microbatch_index) = its samples
 * g B .. g B + B - 1. The stream gives a replica's micro-batches in order;
 * every stage forwards them in that order, and after a step's last comes the
 * first of the replica's next step. */
static status_t fill_batch(void *ctx, uint64_t g, batch *b)
{
    trainer *t = ctx;
    if (!t->stream) {
        random_batch_fill(b, &t->random, g * (uint64_t)t->tc.micro_batch);
        return ST_OK;
    }
    int m = t->tc.micro_batches, dp = t->topo->dp;
    FAIL_IF(g != t->next_g, ST_ERROR, "train: the schedule asked for micro-batch %llu but the data stream is at "
            "%llu (expected micro-batches in order)", (unsigned long long)g, (unsigned long long)t->next_g);
    int64_t step = (int64_t)(g / ((uint64_t)m * (uint64_t)dp));
    int last = g % (uint64_t)m == (uint64_t)m - 1;
    t->next_g = last ? dist_microbatch_index(step + 1, dp, t->topo->replica, m, 0) : g + 1;
    return stream_next(t->stream, b);
}

static void format_eta(char *buf, size_t n, double s)
{
    if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

/* metrics: "blend_samples":[n0,n1,...] (samples drawn from each dataset
 * so far, data.path order) and "epochs" per dataset. */
static void report_blend(trainer *t)
{
    uint64_t drawn[STREAM_BLEND_MAX];
    int n = stream_n_sources(t->stream);
    stream_drawn(t->stream, drawn);
    fprintf(t->metrics, ",\"blend_samples\":[");
    for (int d = 0; d < n; d++) fprintf(t->metrics, "%s%llu", d ? "," : "", (unsigned long long)drawn[d]);
    fprintf(t->metrics, "],\"epochs\":[");
    for (int d = 0; d < n; d++) fprintf(t->metrics, "%s%llu", d ? "," : "", (unsigned long long)t->data_epoch[d] + 1);
    fprintf(t->metrics, "]");
}

/* The data part of the progress line: " | epoch E | N tok" (tokens seen over
 * every resume; the epoch of a dataset run, counted from 1). */
static void format_data(const trainer *t, int64_t step, char *buf, size_t n)
{
    double tokens = (double)step * (double)trainer_global_batch(t) * t->tc.model.seq_len;
    const char *unit = tokens >= 1e9 ? "G" : tokens >= 1e6 ? "M" : tokens >= 1e3 ? "k" : "";
    double scale = tokens >= 1e9 ? 1e9 : tokens >= 1e6 ? 1e6 : tokens >= 1e3 ? 1e3 : 1;
    int used = t->stream ? snprintf(buf, n, " | epoch ") : 0;
    for (int d = 0; t->stream && d < stream_n_sources(t->stream) && (size_t)used < n; d++)
        used += snprintf(buf + used, n - (size_t)used, "%s%llu", d ? "," : "", (unsigned long long)t->data_epoch[d] + 1);
    if ((size_t)used >= n) return;
    snprintf(buf + used, n - (size_t)used, " | %.*f%s tok", *unit ? 2 : 0, tokens / scale, unit);
}

static void report(trainer *t, int64_t step, const dist_step_result *r, double tokens_per_s, double elapsed,
                   double eta)
{
    const train_config *tc = &t->tc;
    double flops_per_token = layout_model_flops_per_token(&tc->model);
    double mfu = t->peak_gflops > 0 ? tokens_per_s * flops_per_token / (t->peak_gflops * 1e9) : 0.0;
    int bert = tc->model.family == MODEL_BERT;
    char parts[128], eta_s[32], bubble[32] = "", val[32] = "", data[256];
    if (bert) snprintf(parts, sizeof parts, "mlm %.4f nsp %.4f", r->mlm, r->nsp);
    else snprintf(parts, sizeof parts, "lm %.4f", r->lm);
    format_eta(eta_s, sizeof eta_s, eta);
    if (t->topo->pp > 1) snprintf(bubble, sizeof bubble, " | bubble %.1f%%", 100.0 * r->bubble);
    if (t->last_val.samples) snprintf(val, sizeof val, " | val %.4f", t->last_val_loss); /* evaluated in this job */
    format_data(t, step, data, sizeof data);
    log_msg(LOG_INFO, "step %lld/%lld | loss %.4f (%s)%s | lr %.2e | grad %.3f | %.0f tok/s | MFU %.1f%%%s%s | ETA %s",
            (long long)step, (long long)tc->steps, r->loss, parts, val, r->lr, r->grad_norm, tokens_per_s,
            100.0 * mfu, bubble, data, eta_s);
    if (!t->metrics) return;
    fprintf(t->metrics, "{\"step\":%lld,\"loss\":%.9g,", (long long)step, r->loss);
    if (bert) fprintf(t->metrics, "\"mlm_loss\":%.9g,\"nsp_loss\":%.9g,", r->mlm, r->nsp);
    else fprintf(t->metrics, "\"lm_loss\":%.9g,", r->lm);
    fprintf(t->metrics, "\"lr\":%.9g,\"grad_norm\":%.9g,\"tokens_per_s\":%.3f,\"mfu\":%.6f,\"bubble\":%.4f,"
            "\"step_s\":%.4f,\"elapsed_s\":%.3f", r->lr, r->grad_norm, tokens_per_s, mfu, r->bubble, r->step_s,
            elapsed);
    if (t->topo->tp > 1) fprintf(t->metrics, ",\"tp_comm_s\":%.4f", r->tp_comm_s);
    fprintf(t->metrics, ",\"tokens\":%llu", (unsigned long long)step * trainer_global_batch(t) *
            (unsigned long long)tc->model.seq_len);
    if (t->stream && stream_n_sources(t->stream) > 1) report_blend(t);
    else if (t->stream) fprintf(t->metrics, ",\"epoch\":%llu", (unsigned long long)t->data_epoch[0] + 1);
    fprintf(t->metrics, "}\n");
    fflush(t->metrics);
}

/* Rank 0 prints one value per rank, gathered (a collective). */
static status_t report_per_rank(trainer *t, const char *what, const char *fmt, double mine)
{
    double *all = malloc(sizeof(double) * (size_t)t->size);
    FAIL_IF(!all, ST_NOMEM, "train: out of memory");
    int rc = MPI_Gather(&mine, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, 0, t->comm);
    if (rc == MPI_SUCCESS && t->rank == 0) {
        char line[1024];
        size_t used = 0;
        for (int k = 0; k < t->size && used < sizeof line; k++) {
            used += (size_t)snprintf(line + used, sizeof line - used, "%s%d: ", k ? ", " : "", k);
            if (used < sizeof line) used += (size_t)snprintf(line + used, sizeof line - used, fmt, all[k]);
        }
        log_msg(LOG_INFO, "%s: %s", what, line);
    }
    free(all);
    FAIL_IF(rc != MPI_SUCCESS, ST_MPI, "train: gathering the %s of the ranks failed", what);
    return ST_OK;
}

/* Every rank's peak RSS, and with a pipeline its compute per step (what
 * dist.stages would balance). */
static status_t report_ranks(trainer *t, double compute_per_step)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    TRY(report_per_rank(t, "peak RSS per rank (MiB)", "%.0f", ru.ru_maxrss / 1024.0));
    if (t->topo->pp == 1) return ST_OK;
    return report_per_rank(t, "compute per step per rank (s; stages are consecutive ranks)", "%.3f",
                           compute_per_step);
}

/* Rank 0 of a dataset run: the epoch of the next sample; a new one is
 * logged once (after a resume, only wraps after the checkpoint). */
static status_t track_epoch(trainer *t, int64_t done, int quiet)
{
    if (t->rank != 0 || !t->stream) return ST_OK;
    uint64_t e[STREAM_BLEND_MAX];
    TRY(stream_epochs(t->stream, e));
    int n = stream_n_sources(t->stream);
    stream_blend bl;
    if (n > 1) TRY(stream_blend_parse(t->tc.data_path, &bl));
    for (int d = 0; d < n; d++) {
        if (!quiet && e[d] > t->data_epoch[d])
            log_msg(LOG_INFO, "data: %s read through %s%llu time%s by step %lld; epoch %llu begins (reshuffled)",
                    n > 1 ? bl.path[d] : t->tc.data_path, e[d] > t->data_epoch[d] + 1 ? "more than once, " : "",
                    (unsigned long long)e[d], e[d] == 1 ? "" : "s", (long long)done, (unsigned long long)e[d] + 1);
        t->data_epoch[d] = e[d];
    }
    return ST_OK;
}

static void sleep_seconds(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

status_t trainer_run(trainer *t)
{
    const train_config *tc = &t->tc;
    double tokens_per_step = (double)trainer_global_batch(t) * tc->model.seq_len;
    double start = time_now(), mark = start, compute = 0.0;
    int64_t mark_step = t->start_step;
    t->last_save_time = start;
    t->run_start = start;
    TRY(track_epoch(t, t->start_step, 1));
    trainer_catch_signals();
    double hang = tc->dist.hang_timeout;
    int64_t end = tc->steps;
    if (t->start_step > 0 && trainer_patience_spent(t)) { /* a resumed run that had stopped early */
        trainer_log_early_stop(t);
        end = t->start_step;
    }
    for (int64_t step = t->start_step; step < end; step++) {
        dist_step_result r;
        char what[96];
        /* a backstop: inside the step the engine's own watchdog reports first, in detail */
        snprintf(what, sizeof what, "step %lld", (long long)step + 1);
        watchdog_arm(what, hang > 0 ? hang + WATCHDOG_GRACE : 0);
        TRY(dist_train_step(t->engine, &t->state.w, step, fill_batch, t, &r));
        t->state.step = step + 1;
        if (t->stream) stream_cursor_get(t->stream, &t->state.cursor);
        compute += r.busy_s + r.update_s;
        t->last_loss = r.loss;
        t->last_lr = r.lr;
        TRY(track_epoch(t, step + 1, 0));
        int valid = tc->eval_every_steps > 0 && (step + 1) % tc->eval_every_steps == 0, best = 0, stop = 0;
        if (valid) { /* its time is left out of the interval's tokens/s */
            double v0 = time_now();
            TRY(trainer_validate(t, step + 1, &best, &stop));
            mark += time_now() - v0;
        }
        if ((step + 1) % tc->log_every == 0 || step + 1 == tc->steps || stop) {
            double now = time_now();
            double rate = tokens_per_step * (double)(step + 1 - mark_step) / (now - mark);
            double eta = (now - start) / (double)(step + 1 - t->start_step) * (double)(tc->steps - step - 1);
            report(t, step + 1, &r, rate, t->elapsed_base + now - start, eta);
            mark = now;
            mark_step = step + 1;
        }
        if (valid) trainer_valid_row(t, step + 1);
        if (t->step_delay > 0) sleep_seconds(t->step_delay);
        TRY(trainer_step_boundary(t, step + 1, best && tc->ckpt_keep_best, stop));
        if (stop) {
            trainer_log_early_stop(t);
            end = step + 1;
        }
    }
    log_msg(LOG_INFO, "done: %lld steps in %.1f s", (long long)(end - t->start_step), time_now() - start);
    int64_t ran = end - t->start_step;
    watchdog_arm("the end-of-run report (gathers over all ranks)", hang);
    status_t st = report_ranks(t, ran > 0 ? compute / (double)ran : 0.0);
    watchdog_disarm();
    return st;
}

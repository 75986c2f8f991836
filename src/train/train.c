/* train — the training loop (pp = tp = 1; data parallel over comm). */
#include <math.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/fileio.h"
#include "base/log.h"
#include "base/timer.h"
#include "data/random_source.h"
#include "data/stream.h"
#include "tensor/tensor.h"
#include "train/train_internal.h"


static status_t local_ranks(MPI_Comm comm, int *n)
{
    MPI_Comm node;
    FAIL_IF(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) != MPI_SUCCESS,
            ST_MPI, "train: MPI_Comm_split_type failed");
    MPI_Comm_size(node, n);
    MPI_Comm_free(&node);
    return ST_OK;
}

static status_t setup_runtime(trainer *t)
{
    int local;
    TRY(local_ranks(t->comm, &local));
    TRY(tensor_runtime_init(t->tc.threads, local, &t->rt));
    double peak = tensor_sgemm_peak_gflops();
    MPI_Allreduce(&peak, &t->peak_gflops, 1, MPI_DOUBLE, MPI_SUM, t->comm);
    log_msg(LOG_INFO, "BLIS kernels %s%s, %d thread%s per rank (%s), %d rank%s; sgemm peak %.0f GFLOP/s in all",
            t->rt.arch, t->rt.arch_chosen ? " (chosen by mpilm from the CPU features; BLIS_ARCH_TYPE overrides)" : " (BLIS_ARCH_TYPE)",
            t->rt.threads, t->rt.threads == 1 ? "" : "s", t->rt.threads_origin, t->size,
            t->size == 1 ? "" : "s", t->peak_gflops);
    return ST_OK;
}

/* After a resume from step s, the lines of steps <= s are kept and the run
 * appends; otherwise the file starts empty. */
static status_t keep_metrics_until(const char *path, int64_t step)
{
    char *text;
    size_t len;
    if (read_file(path, &text, &len) != ST_OK) {
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
    status_t st = atomic_write_file(path, text, kept);
    free(text);
    return st;
}

static status_t open_metrics(trainer *t)
{
    if (t->rank != 0) return ST_OK;
    TRY(make_dirs(t->tc.run_dir, 0755));
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
    TRY(batch_alloc(&t->batch, tc->micro_batch, tc->model.seq_len));
    if (tc->random_data) {
        t->random = (random_spec){.mlm = bert, .nsp = bert && tc->nsp, .vocab_size = tc->model.vocab_size, .mask_prob = tc->mask_prob,
                                  .seed = tc->seed, .samples = (uint64_t)tc->random_samples};
        return ST_OK;
    }
    stream_spec spec = {.path = tc->data_path, .objective = bert ? STREAM_MLM : STREAM_CAUSAL,
                        .seq_len = tc->model.seq_len, .mask_prob = tc->mask_prob, .nsp = bert && tc->nsp,
                        .seed = tc->seed, .dp_rank = t->rank, .dp_size = t->size,
                        .chunk = tc->micro_batch * tc->micro_batches, .vocab_size = tc->model.vocab_size};
    TRY(stream_open(&t->stream, &spec));
    const dataset_info *di = stream_info(t->stream);
    log_msg(LOG_INFO, "data: %s (%llu tokens, %llu documents, vocabulary %u)", tc->data_path,
            (unsigned long long)di->n_tokens, (unsigned long long)di->n_documents, di->vocab_size);
    return ST_OK;
}

status_t trainer_create(trainer **out, const train_config *tc, MPI_Comm comm)
{
    trainer *t = calloc(1, sizeof *t);
    FAIL_IF(!t, ST_NOMEM, "train: out of memory");
    *out = t;
    t->tc = *tc;
    t->comm = comm;
    MPI_Comm_rank(comm, &t->rank);
    MPI_Comm_size(comm, &t->size);
    FAIL_IF(tc->dp > 0 && tc->dp != t->size, ST_CONFIG,
            "dist.dp = %d but the job has %d rank%s (expected dp = ranks / (pp x tp) = %d; "
            "set dist.dp = auto or launch %d ranks)", tc->dp, t->size, t->size == 1 ? "" : "s", t->size, tc->dp);
    TRY(setup_runtime(t));
    TRY(model_stage_create(&t->model, &tc->model, 0, tc->model.n_layer, tc->micro_batch, 1));
    model_init_params(t->model, tc->seed);
    size_t n = model_n_params(t->model);
    t->m = calloc(n, sizeof(float));
    t->v = calloc(n, sizeof(float));
    FAIL_IF(!t->m || !t->v, ST_NOMEM, "train: out of memory for the optimizer state (%zu parameters)", n);
    TRY(setup_data(t));
    TRY(trainer_check_global_order(t));
    const char *delay = getenv("MPILM_TEST_STEP_DELAY");
    t->step_delay = delay ? atof(delay) : 0.0;
    if (tc->resume[0]) TRY(trainer_resume(t));
    TRY(open_metrics(t));
    log_msg(LOG_INFO, "%s model: %zu parameters, %d layers, d_model %d; global batch %d x %d x %d sequences of %d tokens",
            tc->model.family == MODEL_BERT ? "BERT" : "GPT", n, tc->model.n_layer, tc->model.d_model,
            tc->micro_batch, tc->micro_batches, t->size, tc->model.seq_len);
    return ST_OK;
}

void trainer_free(trainer *t)
{
    if (!t) return;
    if (t->metrics) fclose(t->metrics);
    model_stage_free(t->model);
    if (t->stream) stream_close(t->stream);
    free(t->m);
    free(t->v);
    batch_free(&t->batch);
    free(t);
}

model_stage *trainer_model(trainer *t) { return t->model; }
int64_t trainer_start_step(const trainer *t) { return t->start_step; }
double trainer_last_loss(const trainer *t) { return t->last_loss; }

/* The losses of one step, summed over micro-batches and ranks. */
typedef struct step_result {
    double loss, lm, mlm, nsp; /* means over the step's micro-batches */
    double grad_norm, lr;
} step_result;

static status_t accumulate(trainer *t, int64_t step, step_result *r)
{
    const train_config *tc = &t->tc;
    int mb = tc->micro_batches;
    float scale = 1.0f / (float)(mb * t->size);
    double sums[3] = {0};
    for (int j = 0; j < mb; j++) {
        /* sample index: rank r's part of step s is contiguous (DESIGN §4) */
        uint64_t steps_done = (uint64_t)(step - t->start_step);
        uint64_t sample0 = t->sample_base +
                           (steps_done * (uint64_t)t->size + (uint64_t)t->rank) * (uint64_t)mb * tc->micro_batch +
                           (uint64_t)j * tc->micro_batch;
        if (t->stream)
            TRY(stream_next(t->stream, &t->batch));
        else
            random_batch_fill(&t->batch, &t->random, sample0);
        model_pass pass = {.train = 1, .seed = tc->seed, .sample0 = sample0, .loss_scale = scale};
        model_losses l = {0};
        TRY(model_forward(t->model, 0, &t->batch, &pass, &l));
        TRY(model_backward(t->model, 0, &t->batch, &pass));
        if (l.lm_count) sums[0] += l.lm_loss_sum / l.lm_count;
        if (l.mlm_count) sums[1] += l.mlm_loss_sum / l.mlm_count;
        if (l.nsp_count) sums[2] += l.nsp_loss_sum / l.nsp_count;
    }
    MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, t->comm);
    r->lm = sums[0] * scale;
    r->mlm = sums[1] * scale;
    r->nsp = sums[2] * scale;
    r->loss = r->lm + r->mlm + r->nsp;
    return ST_OK;
}

static status_t update(trainer *t, int64_t step, step_result *r)
{
    size_t n = model_n_params(t->model);
    float *g = model_grads(t->model), *p = model_params(t->model);
    if (t->size > 1)
        FAIL_IF(MPI_Allreduce(MPI_IN_PLACE, g, (int)n, MPI_FLOAT, MPI_SUM, t->comm) != MPI_SUCCESS, ST_MPI,
                "train: gradient allreduce failed");
    r->grad_norm = sqrt(optim_sum_squares(g, n));
    FAIL_IF(!isfinite(r->grad_norm), ST_ERROR,
            "train: the gradient norm is %g at step %lld (diverged: lower train.lr or raise warmup_steps)",
            r->grad_norm, (long long)step + 1);
    float clip = optim_clip_factor(&t->tc.optim, r->grad_norm);
    r->lr = optim_lr(&t->tc.optim, step + 1);
    for (int i = 0; i < model_n_tensors(t->model); i++) {
        const model_tensor *tt = model_tensor_at(t->model, i);
        optim_adamw(&t->tc.optim, step + 1, r->lr, p + tt->offset, g + tt->offset, t->m + tt->offset,
                    t->v + tt->offset, tt->numel, tt->decay, clip);
    }
    return ST_OK;
}

static void format_eta(char *buf, size_t n, double s)
{
    if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

static void report(trainer *t, int64_t step, const step_result *r, double tokens_per_s, double elapsed,
                   double eta)
{
    const train_config *tc = &t->tc;
    double flops_per_token = model_flops_per_microbatch(&tc->model, 1) / tc->model.seq_len;
    double mfu = t->peak_gflops > 0 ? tokens_per_s * flops_per_token / (t->peak_gflops * 1e9) : 0.0;
    int bert = tc->model.family == MODEL_BERT;
    char parts[128], eta_s[32];
    if (bert) snprintf(parts, sizeof parts, "mlm %.4f nsp %.4f", r->mlm, r->nsp);
    else snprintf(parts, sizeof parts, "lm %.4f", r->lm);
    format_eta(eta_s, sizeof eta_s, eta);
    log_msg(LOG_INFO, "step %lld/%lld | loss %.4f (%s) | lr %.2e | grad %.3f | %.0f tok/s | MFU %.1f%% | ETA %s",
            (long long)step, (long long)tc->steps, r->loss, parts, r->lr, r->grad_norm, tokens_per_s,
            100.0 * mfu, eta_s);
    if (!t->metrics) return;
    fprintf(t->metrics, "{\"step\":%lld,\"loss\":%.9g,", (long long)step, r->loss);
    if (bert) fprintf(t->metrics, "\"mlm_loss\":%.9g,\"nsp_loss\":%.9g,", r->mlm, r->nsp);
    else fprintf(t->metrics, "\"lm_loss\":%.9g,", r->lm);
    fprintf(t->metrics, "\"lr\":%.9g,\"grad_norm\":%.9g,\"tokens_per_s\":%.3f,\"mfu\":%.6f,\"elapsed_s\":%.3f}\n",
            r->lr, r->grad_norm, tokens_per_s, mfu, elapsed);
    fflush(t->metrics);
}

static void sleep_seconds(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

status_t trainer_run(trainer *t)
{
    const train_config *tc = &t->tc;
    double tokens_per_step = (double)tc->micro_batch * tc->micro_batches * t->size * tc->model.seq_len;
    double start = time_now(), mark = start;
    int64_t mark_step = t->start_step;
    t->last_save_time = start;
    trainer_catch_signals();
    for (int64_t step = t->start_step; step < tc->steps; step++) {
        memset(model_grads(t->model), 0, model_n_params(t->model) * sizeof(float));
        step_result r = {0};
        TRY(accumulate(t, step, &r));
        TRY(update(t, step, &r));
        t->last_loss = r.loss;
        t->last_lr = r.lr;
        if ((step + 1) % tc->log_every == 0 || step + 1 == tc->steps) {
            double now = time_now();
            double rate = tokens_per_step * (double)(step + 1 - mark_step) / (now - mark);
            double eta = (now - start) / (double)(step + 1 - t->start_step) * (double)(tc->steps - step - 1);
            report(t, step + 1, &r, rate, now - start, eta);
            mark = now;
            mark_step = step + 1;
        }
        if (t->step_delay > 0) sleep_seconds(t->step_delay);
        TRY(trainer_step_boundary(t, step + 1));
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    log_msg(LOG_INFO, "done: %lld steps in %.1f s; peak RSS %.0f MiB (rank 0)", (long long)(tc->steps - t->start_step),
            time_now() - start, ru.ru_maxrss / 1024.0);
    return ST_OK;
}

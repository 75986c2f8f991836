/* train/plan — every layout of N ranks, its memory and predicted speed (plan.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/memlimit.h"
#include "base/timer.h"
#include "data/random_source.h"
#include "layout/layout.h"
#include "model/model_tp.h"
#include "train/plan.h"
#include "train/train_internal.h"

static const double MIB = 1048576.0;

typedef plan_costs costs;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0, n) (sorts v). */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* The group sums of a tp slice timed alone: no partner, so they do nothing
 * (the time model adds the communication). */
static status_t no_sum(void *ctx, float *buf, size_t n) { return ST_OK; }

/* Median seconds of a training forward + backward of layers [a, b) as tp
 * rank 0 of tp computes it. */
static status_t time_stage(const model_config *mc, int a, int b, int B, int tp, double *out)
{
    model_tp t = {.size = tp, .rank = 0, .allreduce_sum = no_sum, .allreduce_max = no_sum};
    model_stage *m;
    TRY(model_stage_create_tp(&m, mc, a, b, B, 1, &t));
    model_init_params(m, 1);
    batch bt;
    status_t st = batch_alloc(&bt, B, mc->seq_len);
    if (st != ST_OK) {
        model_stage_free(m);
        return st;
    }
    random_spec spec = {.mlm = mc->family == MODEL_BERT, .nsp = mc->family == MODEL_BERT,
                        .vocab_size = mc->vocab_size, .mask_prob = 0.15, .seed = 1};
    random_batch_fill(&bt, &spec, 0);
    size_t act = (size_t)B * mc->seq_len * mc->d_model;
    for (size_t i = 0; i < act && a > 0; i++) model_stage_input(m, 0)[i] = 0.01f * (float)(i % 97);
    for (size_t i = 0; i < act && b < mc->n_layer; i++) model_stage_doutput(m, 0)[i] = 1e-4f;
    enum { REPS = 5 };
    double t_run[REPS];
    for (int r = -1; st == ST_OK && r < REPS; r++) {
        /* as in training: the head's weight gradient waits for later
           micro-batches' rows (model_pass.head_dw_wait), complete at the last */
        model_pass pass = {.train = 1, .seed = 1, .sample0 = 0, .loss_scale = 1.0f, .head_dw_wait = r < REPS - 1};
        model_losses l = {0};
        double t0 = time_now();
        st = model_forward(m, 0, &bt, &pass, &l);
        if (st == ST_OK) st = model_backward(m, 0, &bt, &pass);
        if (r >= 0) t_run[r] = time_now() - t0;
    }
    batch_free(&bt);
    model_stage_free(m);
    if (st != ST_OK) return st;
    *out = median(t_run, REPS);
    return ST_OK;
}

static double adam_per_float(void)
{
    size_t n = (size_t)1 << 22;
    float *p = calloc(n, sizeof(float)), *g = calloc(n, sizeof(float)), *m1 = calloc(n, sizeof(float)),
          *v = calloc(n, sizeof(float));
    double best = 1e30;
    optim_config oc = {.lr = 1e-4, .total_steps = 10, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    for (int r = 0; p && g && m1 && v && r < 5; r++) {
        double t0 = time_now();
        optim_adamw(&oc, r + 1, 1e-4, p, g, m1, v, n, 1, 1.0f);
        double dt = time_now() - t0;
        best = dt < best ? dt : best;
    }
    free(p), free(g), free(m1), free(v);
    return best < 1e30 ? best / (double)n : 1e-9;
}

/* The costs at tp from the cache, else measured (block from a middle layer,
 * the embeddings and heads as what a first or last one-layer stage adds). */
status_t plan_measure_costs(const model_config *mc, int B, int tp, int threads, int cache, plan_costs *c,
                            int *measured)
{
    char key[512], path[2200], line[256];
    snprintf(key, sizeof key, "plan v2 %d L%d C%d F%d H%d T%d V%d P%d sin%d pre%d B%d tp%d bf16 %d rec%d drop%d thr%d",
             (int)mc->family, mc->n_layer > 2, mc->d_model, mc->d_ff, mc->n_head, mc->seq_len, mc->vocab_size,
             mc->max_positions, mc->sinusoidal, mc->pre_ln, B, tp, mc->bf16, mc->recompute, mc->dropout > 0, threads);
    int cached = cache && train_cache_file("plan", key, path, sizeof path);
    FILE *f = cached ? fopen(path, "r") : NULL;
    if (f) {
        int ok = fgets(line, sizeof line, f) &&
                 sscanf(line, "block=%lf embed=%lf head=%lf adam=%lf", &c->block, &c->embed, &c->head, &c->adam) == 4;
        fclose(f);
        if (ok && c->block > 0 && c->adam > 0) return ST_OK;
    }
    int L = mc->n_layer, mid = L > 2 ? 1 : 0;
    double first, last;
    TRY(time_stage(mc, mid, mid + 1, B, tp, &c->block));
    TRY(time_stage(mc, 0, 1, B, tp, &first));
    TRY(time_stage(mc, L - 1, L, B, tp, &last));
    if (L == 1) { /* one stage holds it all: split the rest evenly */
        c->embed = c->head = 0.0;
    } else {
        c->embed = fmax(0.0, first - c->block);
        c->head = fmax(0.0, last - c->block);
    }
    c->adam = adam_per_float();
    *measured = 1;
    snprintf(line, sizeof line, "block=%.9g embed=%.9g head=%.9g adam=%.9g\n", c->block, c->embed, c->head, c->adam);
    if (cached && !train_cache_store(path, line))
        log_msg(LOG_WARN, "plan: could not write the cost cache %s; measuring again next time", path);
    return ST_OK;
}

/* A ring's reduce-scatter or all-gather of `floats` floats over p ranks:
 * p - 1 steps of floats / p each, at the network's rate for that kind. */
static double ring_pass(const plan_net *w, int p, double floats, double bytes_per_s)
{
    return p > 1 ? (p - 1) * (w->latency_s + 4.0 * floats / (p * bytes_per_s)) : 0.0;
}

static double reduce_scatter(const plan_net *w, int p, double floats)
{
    return ring_pass(w, p, floats, w->reduce_bytes_per_s);
}

static double all_gather(const plan_net *w, int p, double floats)
{
    return ring_pass(w, p, floats, w->gather_bytes_per_s);
}

plan_net plan_net_given(double gbit_s, double latency_us)
{
    double bytes = gbit_s * 1e9 / 8.0;
    return (plan_net){.latency_s = latency_us * 1e-6, .bytes_per_s = bytes, .reduce_bytes_per_s = bytes,
                      .gather_bytes_per_s = bytes};
}

/* A sum over p ranks (all-reduce): a reduce-scatter, then an all-gather. */
static double all_reduce(const plan_net *w, int p, double floats)
{
    return reduce_scatter(w, p, floats) + all_gather(w, p, floats);
}

/* ---- measuring the network ---------------------------------------------------- */

/* Half the median round trip of `count` floats between ranks 0 and 1 (the
 * others wait). */
static status_t ping_pong(MPI_Comm comm, int rank, float *buf, int count, int trips, double *out)
{
    double *t = calloc((size_t)trips, sizeof *t);
    FAIL_IF(!t, ST_NOMEM, "plan: out of memory");
    int rc = MPI_SUCCESS;
    for (int i = 0; rc == MPI_SUCCESS && i < trips; i++) {
        double t0 = MPI_Wtime();
        if (rank == 0) {
            rc = MPI_Send(buf, count, MPI_FLOAT, 1, 1, comm);
            if (rc == MPI_SUCCESS) rc = MPI_Recv(buf, count, MPI_FLOAT, 1, 2, comm, MPI_STATUS_IGNORE);
        } else if (rank == 1) {
            rc = MPI_Recv(buf, count, MPI_FLOAT, 0, 1, comm, MPI_STATUS_IGNORE);
            if (rc == MPI_SUCCESS) rc = MPI_Send(buf, count, MPI_FLOAT, 0, 2, comm);
        }
        t[i] = (MPI_Wtime() - t0) / 2;
    }
    *out = median(t, trips);
    free(t);
    FAIL_IF(rc != MPI_SUCCESS, ST_MPI, "plan: the ping-pong of %d floats between ranks 0 and 1 failed", count);
    return ST_OK;
}

/* Median seconds of 3 (after a warm-up) of a reduce-scatter (gather = 0) or
 * all-gather (1) of n floats per rank over comm. */
static status_t time_collective(MPI_Comm comm, int p, float *a, float *b, int n, int gather, double *out)
{
    double t[3];
    for (int i = -1; i < 3; i++) {
        FAIL_IF(MPI_Barrier(comm) != MPI_SUCCESS, ST_MPI, "plan: MPI_Barrier failed while measuring the network");
        double t0 = MPI_Wtime();
        int rc = gather ? MPI_Allgather(a, n / p, MPI_FLOAT, b, n / p, MPI_FLOAT, comm)
                        : MPI_Reduce_scatter_block(a, b, n / p, MPI_FLOAT, MPI_SUM, comm);
        FAIL_IF(rc != MPI_SUCCESS, ST_MPI, "plan: the %s of %d floats failed while measuring the network",
                gather ? "all-gather" : "reduce-scatter", n);
        double s = MPI_Wtime() - t0;
        FAIL_IF(MPI_Allreduce(MPI_IN_PLACE, &s, 1, MPI_DOUBLE, MPI_MAX, comm) != MPI_SUCCESS, ST_MPI,
                "plan: MPI_Allreduce failed while measuring the network");
        if (i >= 0) t[i] = s;
    }
    *out = median(t, 3);
    return ST_OK;
}

static status_t measure(MPI_Comm comm, int rank, int p, float *a, float *b, plan_net *w)
{
    enum { BIG = 16 << 20 }; /* floats: 64 MiB */
    double lat, big;
    TRY(ping_pong(comm, rank, a, 1, 200, &lat));
    TRY(ping_pong(comm, rank, a, (4 << 20), 8, &big)); /* 16 MiB */
    int n = BIG / p * p;
    double rs, ag;
    TRY(time_collective(comm, p, a, b, n, 0, &rs));
    TRY(time_collective(comm, p, a, b, n, 1, &ag));
    double share = 4.0 * n * (p - 1) / p;
    *w = (plan_net){.latency_s = lat, .bytes_per_s = 4.0 * (4 << 20) / fmax(big - lat, 1e-9),
                    .reduce_bytes_per_s = share / rs, .gather_bytes_per_s = share / ag, .measured = 1};
    return ST_OK;
}

status_t plan_measure_network(MPI_Comm comm, plan_options *o)
{
    plan_net *out = &o->net;
    o->baseline = train_memory_baseline();
    int rank, p;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &p);
    FAIL_IF(p < 2, ST_USAGE, "plan: --net measure needs the job's ranks to measure between: run it as mpirun -np N "
            "mpilm plan ... --net measure, with N >= 2 ranks placed as the job's will be (or give --net "
            "GBIT_S,LATENCY_US)");
    float *a = calloc(16u << 20, sizeof(float)), *b = calloc(16u << 20, sizeof(float));
    status_t st = a && b ? measure(comm, rank, p, a, b, out) : st_fail(ST_NOMEM, "plan: out of memory (128 MiB) "
                                                                             "measuring the network");
    free(a);
    free(b);
    TRY(st);
    double v[4] = {out->latency_s, out->bytes_per_s, out->reduce_bytes_per_s, out->gather_bytes_per_s};
    FAIL_IF(MPI_Bcast(v, 4, MPI_DOUBLE, 0, comm) != MPI_SUCCESS, ST_MPI, "plan: MPI_Bcast of the network figures "
            "failed");
    *out = (plan_net){v[0], v[1], v[2], v[3], 1};
    return ST_OK;
}

typedef struct job {
    const train_config *tc;
    const plan_options *o;
    costs *by_tp;   /* [np + 1], measured on demand (block 0: not yet) */
    int measured;
} job;

/* Predicted step seconds of l; its bubble and the most bytes a rank sends. */
static status_t predict(job *j, plan_layout *l)
{
    const model_config *mc = &j->tc->model;
    int B = j->tc->micro_batch;
    costs *c = &j->by_tp[l->tp];
    if (c->block <= 0) TRY(plan_measure_costs(mc, B, l->tp, j->o->threads, 1, c, &j->measured));
    dist_config dc = j->tc->dist;
    dc.pp = l->pp;
    int bounds[LAYOUT_MAX_STAGES + 1];
    TRY(dist_partition(&dc, mc, bounds));
    const plan_net *w = &j->o->net;
    double act = (double)B * mc->seq_len * mc->d_model, tmax = 0, after_max = 0, sent = 0;
    for (int s = 0; s < l->pp; s++) {
        int a = bounds[s], b = bounds[s + 1], first = a == 0, last = b == mc->n_layer;
        double tpc = 4.0 * (b - a) * all_reduce(w, l->tp, act); /* two sums forward, two backward per block */
        double t = (b - a) * c->block + (first ? c->embed : 0) + (last ? c->head : 0) + tpc;
        tmax = fmax(tmax, t);
        model_tensor *tab;
        int nt;
        size_t n;
        model_tp mtp = {.size = l->tp, .rank = 0};
        TRY(model_stage_table(mc, a, b, first, last, &mtp, &tab, &nt, &n));
        double wte = 0.0, read32 = 0.0; /* the tied embedding, summed over the pipeline's ends */
        for (int i = 0; i < nt; i++) {
            if (l->pp > 1 && tab[i].tied) wte = (double)tab[i].numel;
            if (model_table_read_fp32(&tab[i], first)) read32 += (double)tab[i].numel;
        }
        free(tab);
        /* what the messages carry, in floats' worth (4 bytes): bf16 states gather the parameters'
           high halves and the low halves of what is read in fp32 (dist_params_complete), send
           pipeline activations in bf16, and reduce in bf16 with dist.grad_reduce = bf16 */
        double half = mc->bf16 ? 0.5 : 1.0, rw = dc.grad_reduce == DIST_REDUCE_BF16 ? 0.5 : 1.0;
        double gw = mc->bf16 ? 0.5 * ((double)n + read32) : (double)n;
        double red = l->zero == 2 ? reduce_scatter(w, l->dp, rw * n) : all_reduce(w, l->dp, rw * n);
        /* zero 2 posts its buckets during the last backward, but a rank's MPI progress and the sums
           run on its own cores between layers (shared memory, or a NIC without reduction offload),
           so the reduction is not taken as hidden */
        double gather = l->zero > 0 ? all_gather(w, l->dp, gw) : 0.0;
        double tied = all_reduce(w, 2, wte);
        double upd = c->adam * (l->zero > 0 && l->dp > 1 ? (double)n / l->dp : (double)n);
        after_max = fmax(after_max, red + gather + tied + upd);
        /* ring passes of (dp - 1) / dp of the message each: zero 0 an all-reduce (2), zero 1 also
           the all-gather, zero 2 a reduce-scatter and the all-gather */
        double dp_floats = rw * n * (l->zero == 2 ? 1.0 : 2.0) + (l->zero > 0 ? gw : 0.0);
        double dp_bytes = l->dp > 1 ? 4.0 * dp_floats * (l->dp - 1) / l->dp : 0.0;
        double pipe_bytes = 4.0 * half * act * l->m * ((s > 0) + (s < l->pp - 1));
        double tp_bytes = l->tp > 1 ? 4.0 * (b - a) * l->m * 2.0 * 4.0 * act * (l->tp - 1) / l->tp : 0.0;
        sent = fmax(sent, dp_bytes + pipe_bytes + tp_bytes + 4.0 * wte);
    }
    double p2p = w->latency_s + (mc->bf16 ? 2.0 : 4.0) * act / w->bytes_per_s;
    double pipe = (l->m + l->pp - 1) * tmax + 2.0 * (l->pp - 1) * p2p;
    l->bubble = l->pp > 1 ? 1.0 - l->m * tmax / pipe : 0.0;
    l->step_s = pipe + after_max + w->latency_s * log2((double)j->o->np + 1);
    l->tokens_per_s = (double)B * mc->seq_len * l->m * l->dp / l->step_s;
    l->sent_mib = sent / MIB;
    return ST_OK;
}

/* Per-rank predicted peak RSS; l->ok cleared with the reason when a rank
 * does not fit budget bytes. */
static status_t memory(job *j, plan_layout *l, double baseline, double budget)
{
    dist_config dc = j->tc->dist;
    dc.pp = l->pp, dc.tp = l->tp, dc.dp = l->dp, dc.zero = l->zero, dc.schedule = l->schedule;
    dc.tp_mode = DIST_TP_1D;
    l->rank_mib = calloc((size_t)j->o->np, sizeof(double));
    FAIL_IF(!l->rank_mib, ST_NOMEM, "plan: out of memory");
    int worst = 0;
    double need = 0; /* what train's memory check will ask for (its margins included) */
    for (int r = 0; r < j->o->np; r++) {
        dist_memory m;
        TRY(dist_memory_of_rank(&dc, &j->tc->model, j->tc->micro_batch, l->m, l->dp, r, &m));
        l->rank_mib[r] = train_memory_expected(&m, baseline) / MIB;
        if (l->rank_mib[r] > l->rank_mib[worst]) worst = r;
        need = fmax(need, train_memory_resident(&m, baseline));
    }
    l->peak_mib = l->rank_mib[worst];
    if (budget > 0 && need > budget) {
        l->ok = 0;
        snprintf(l->why, sizeof l->why, "does not fit: rank %d needs %.0f MiB with the memory check's margins, a "
                 "rank may use %.0f MiB", worst, need / MIB, budget / MIB);
    }
    return ST_OK;
}

/* What a rank may use: o->rank_mib, else this node's cgroup limit or
 * MemAvailable shared by the ranks that fit on its cores. */
static double rank_budget(const plan_options *o, char *src, size_t n)
{
    if (o->rank_mib > 0) {
        snprintf(src, n, "--mem-per-rank");
        return o->rank_mib * MIB;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int per_node = o->np < cores / (o->threads > 0 ? o->threads : 1) ? o->np : (int)(cores / (o->threads ? o->threads : 1));
    if (per_node < 1) per_node = 1;
    mem_limit lim;
    double b = 0;
    if (memlimit_cgroup("", &lim)) b = (double)lim.bytes, snprintf(src, n, "%s", lim.source);
    if (memlimit_available("", &lim) && (b == 0 || (double)lim.bytes < b))
        b = (double)lim.bytes, snprintf(src, n, "%s", lim.source);
    if (b > 0) {
        size_t used = strlen(src);
        snprintf(src + used, n - used, " / %d ranks on this node", per_node);
    }
    return b / per_node;
}

static int by_speed(const void *a, const void *b)
{
    const plan_layout *x = a, *y = b;
    if (x->ok != y->ok) return y->ok - x->ok;
    if (!x->ok) return 0;
    if (x->tokens_per_s != y->tokens_per_s) return x->tokens_per_s < y->tokens_per_s ? 1 : -1;
    return (x->peak_mib > y->peak_mib) - (x->peak_mib < y->peak_mib);
}

/* Whether l is a layout at all for this model and batch; the reason if not. */
static int divides(const train_config *tc, int G, plan_layout *l)
{
    const model_config *mc = &tc->model;
    l->ok = 0;
    if (l->pp > mc->n_layer)
        return snprintf(l->why, sizeof l->why, "does not divide: pp %d exceeds the %d layers", l->pp, mc->n_layer), 0;
    if (l->tp > 1 && model_tp_check(mc, l->tp) != ST_OK)
        return snprintf(l->why, sizeof l->why, "does not divide: %s", st_message()), 0;
    if (G % (l->dp * tc->micro_batch) != 0)
        return snprintf(l->why, sizeof l->why,
                        "does not divide: the global batch of %d sequences is not a multiple of dp %d x "
                        "train.micro_batch %d", G, l->dp, tc->micro_batch), 0;
    l->m = G / (l->dp * tc->micro_batch);
    if (tc->global_batch > 0 && tc->micro_batches > 0 && tc->micro_batches != l->m)
        return snprintf(l->why, sizeof l->why,
                        "does not divide: train.micro_batches = %d disagrees with train.global_batch = %d (%d here; "
                        "leave train.micro_batches out)", tc->micro_batches, G, l->m), 0;
    l->ok = 1;
    return 1;
}

status_t plan_layouts(const train_config *tc, const plan_options *o, plan_result *out)
{
    memset(out, 0, sizeof *out);
    FAIL_IF(o->np < 1 || o->np > 4096, ST_USAGE, "plan: --np %d (expected 1 to 4096 ranks)", o->np);
    const dist_config *d = &tc->dist;
    int tp0 = d->tp > 0 ? d->tp : 1;
    int dp0 = d->dp > 0 ? d->dp : o->np / (d->pp * tp0) > 0 ? o->np / (d->pp * tp0) : 1;
    int G = tc->global_batch > 0 ? (int)tc->global_batch
                                 : tc->micro_batch * (tc->micro_batches > 0 ? tc->micro_batches : 1) * dp0;
    out->global_batch = G;
    int cap = 0;
    for (int pp = 1; pp <= o->np; pp++)
        for (int tp = 1; pp * tp <= o->np; tp++)
            if (o->np % (pp * tp) == 0) cap += 5;
    out->layouts = calloc((size_t)cap, sizeof *out->layouts);
    job j = {.tc = tc, .o = o, .by_tp = calloc((size_t)o->np + 1, sizeof(costs))};
    FAIL_IF(!out->layouts || !j.by_tp, ST_NOMEM, "plan: out of memory");
    double budget = rank_budget(o, out->budget_source, sizeof out->budget_source), baseline = o->baseline > 0 ? o->baseline : train_memory_baseline();
    out->rank_budget_mib = budget / MIB;
    status_t st = ST_OK;
    for (int pp = 1; st == ST_OK && pp <= o->np; pp++)
        for (int tp = 1; st == ST_OK && pp * tp <= o->np; tp++) {
            if (o->np % (pp * tp)) continue;
            int dp = o->np / (pp * tp);
            for (int zero = 0; st == ST_OK && zero <= (dp > 1 ? 2 : 0); zero++)
                for (int sch = 0; st == ST_OK && sch < (pp > 1 ? 2 : 1); sch++) {
                    plan_layout *l = &out->layouts[out->n++];
                    *l = (plan_layout){.pp = pp, .dp = dp, .tp = tp, .zero = zero,
                                       .schedule = pp == 1 ? d->schedule : sch ? DIST_GPIPE : DIST_1F1B};
                    l->configured = pp == d->pp && tp == tp0 && dp == dp0 && (dp == 1 || zero == d->zero) &&
                                    (pp == 1 || l->schedule == d->schedule);
                    if (!divides(tc, G, l)) continue;
                    st = memory(&j, l, baseline, budget);
                    if (st == ST_OK && l->ok) st = predict(&j, l);
                }
        }
    out->measured = j.measured;
    out->block_s = j.by_tp[1].block, out->embed_s = j.by_tp[1].embed, out->head_s = j.by_tp[1].head;
    free(j.by_tp);
    if (st != ST_OK) {
        plan_result_free(out);
        return st;
    }
    qsort(out->layouts, (size_t)out->n, sizeof *out->layouts, by_speed);
    return ST_OK;
}

void plan_result_free(plan_result *r)
{
    for (int i = 0; r->layouts && i < r->n; i++) free(r->layouts[i].rank_mib);
    free(r->layouts);
    memset(r, 0, sizeof *r);
}

/* train/ckpt — the collective side of checkpoints: when to save (steps,
 * minutes on rank 0's clock, a preemption signal), the save protocol over the
 * whole job (each rank writes what it owns; docs/formats.md, "Atomic save
 * protocol"), and resume onto any layout.
 * Every failure on any rank reaches every rank (agree()), so none waits. */
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/log.h"
#include "base/timer.h"
#include "base/watchdog.h"
#include "ckpt/checkpoint.h"
#include "layout/layout.h"
#include "model/model_tp.h"
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
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    /* A file-size limit (ulimit -f, a quota) must fail the write with EFBIG
     * and a message, not kill the rank mid-save. */
    signal(SIGXFSZ, SIG_IGN);
}

/* Every rank learns the first failure (lowest rank among the worst codes)
 * with its message. */
static status_t agree(trainer *t, status_t st)
{
    struct { int code, rank; } mine = {(int)st, st == ST_OK ? t->size : t->rank}, worst;
    mine.rank = -mine.rank; /* MAXLOC keeps the lowest rank among equal codes */
    /* a failing collective ends here with its own message: st_die's MPI_Abort then ends every rank */
    FAIL_IF(MPI_Allreduce(&mine, &worst, 1, MPI_2INT, MPI_MAXLOC, t->comm) != MPI_SUCCESS, ST_MPI,
            "checkpoint: rank %d: the agreement on the save's outcome failed (MPI_Allreduce)", t->rank);
    if (worst.code == ST_OK) return ST_OK;
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", st_message());
    FAIL_IF(MPI_Bcast(msg, sizeof msg, MPI_CHAR, -worst.rank, t->comm) != MPI_SUCCESS, ST_MPI,
            "checkpoint: rank %d: broadcasting rank %d's error failed (MPI_Bcast); its error was code %d", t->rank,
            -worst.rank, worst.code);
    return st_fail((status_t)worst.code, "%s", msg);
}

enum { MAX_PIECES = LAYOUT_MAX_PIECES };
typedef layout_piece piece;

/* What a rank writes: parameters, m and v, each holding float base + k of
 * the buffer the pieces' local offsets index (the stage's at tp = 1, the
 * unsplit stage's at tp > 1). */
typedef struct ckpt_source {
    const float *params, *m, *v;
    size_t pbase, mbase;
    float *owned; /* allocation to free, or NULL */
} ckpt_source;

/* A segment of the unsplit stage sent to the rank whose part holds it: its
 * offset and length, and whether it carries parameters (one block) or
 * moments (a block of m, then one of v). Sent as two uint64. */
typedef struct segment {
    uint64_t at, len_kind; /* len | kind << 62 */
} segment;

enum { SEG_PARAMS = 0, SEG_MOMENTS = 1 };
static const uint64_t SEG_LEN = ((uint64_t)1 << 62) - 1;

/* tp > 1: the segments this rank sends, grouped by destination (the
 * stage's ranks, numbered replica tp + tp_rank like their parts), with where
 * their values are (no copy: the all-to-all reads them in place). Every
 * float comes from one rank: parameters from replica 0, a replicated
 * tensor's from tp rank 0, moments from their ZeRO owner (at zero 0 from
 * replica 0). A first pass (seg NULL) counts. */
typedef struct outbox {
    int *segs, *seg_at;     /* [dp tp] */
    segment *seg;
    const float **src;      /* [segments][2]: the values (moments: m, v) */
} outbox;

static void add_segment(outbox *o, int q, uint64_t at, uint64_t len, int kind, const float *a, const float *b)
{
    if (o->seg) {
        int i = o->seg_at[q] + o->segs[q];
        o->seg[i] = (segment){at, len | (uint64_t)kind << 62};
        o->src[2 * i] = a, o->src[2 * i + 1] = b;
    }
    o->segs[q]++;
}

/* Local floats [x, y) of run r (local >= base of a, b), cut at the parts'
 * boundaries of the unsplit stage. */
static void add_run(trainer *t, outbox *o, const model_run *r, size_t x, size_t y, int kind, const float *a,
                    const float *b, size_t base)
{
    const layout_rank *lay = dist_engine_layout(t->engine);
    int parts = t->topo->dp * t->topo->tp;
    while (x < y) {
        size_t full = r->full + (x - r->local), lo, hi;
        int q = (int)(full / ((lay->full_n + (size_t)parts - 1) / (size_t)parts));
        layout_shard(lay->full_n, parts, q, &lo, &hi);
        size_t len = hi - full < y - x ? hi - full : y - x;
        add_segment(o, q, full, len, kind, a + (x - base), b ? b + (x - base) : NULL);
        x += len;
    }
}

static void fill_outbox(trainer *t, const float *params, outbox *o)
{
    model_stage *m = dist_engine_stage(t->engine);
    const optim_state *w = &t->state.w;
    int sharded = w->ulo != 0 || w->uhi != w->n, first = t->topo->replica == 0;
    for (int i = 0; i < model_n_tensors(m); i++) {
        if (!model_tensor_at(m, i)->tp_split && t->topo->tp_rank != 0) continue;
        const model_run *runs;
        int k = model_stage_runs(m, i, &runs);
        for (int j = 0; j < k; j++) {
            const model_run *r = &runs[j];
            if (first) add_run(t, o, r, r->local, r->local + r->len, SEG_PARAMS, params, NULL, 0);
            if (!sharded && !first) continue;
            size_t x = r->local > w->ulo ? r->local : w->ulo;
            size_t y = r->local + r->len < w->uhi ? r->local + r->len : w->uhi;
            if (y > x) add_run(t, o, r, x, y, SEG_MOMENTS, w->m, w->v, w->ulo);
        }
    }
}

/* An hindexed type of absolute addresses: blocks [k] = (addr[k], len[k])
 * floats; MPI_DATATYPE_NULL when it could not be made. */
static status_t block_type(int n, const int *len, const MPI_Aint *addr, MPI_Datatype *out)
{
    *out = MPI_DATATYPE_NULL;
    MPI_Datatype t;
    FAIL_IF(MPI_Type_create_hindexed(n, len, addr, MPI_FLOAT, &t) != MPI_SUCCESS, ST_MPI,
            "checkpoint: building the part exchange's datatype failed");
    if (MPI_Type_commit(&t) != MPI_SUCCESS) {
        MPI_Type_free(&t);
        return st_fail(ST_MPI, "checkpoint: committing the part exchange's datatype failed");
    }
    *out = t;
    return ST_OK;
}

/* The blocks of segments seg[0, n): to sources (send) or into part (receive,
 * part of n_part floats starting at lo). */
static status_t segment_type(const segment *seg, const float *const *src, int n, float *part, size_t lo,
                             size_t n_part, MPI_Datatype *out)
{
    int *len = malloc(sizeof(int) * 2 * ((size_t)n + 1));
    MPI_Aint *addr = malloc(sizeof(MPI_Aint) * 2 * ((size_t)n + 1));
    FAIL_IF(!len || !addr, (free(len), free(addr), ST_NOMEM), "checkpoint: out of memory for the part exchange");
    int k = 0;
    status_t st = ST_OK;
    for (int i = 0; st == ST_OK && i < n; i++) {
        uint64_t l = seg[i].len_kind & SEG_LEN;
        int kind = (int)(seg[i].len_kind >> 62);
        if (!src && (seg[i].at < lo || seg[i].at + l > lo + n_part || l > INT_MAX)) {
            st = st_fail(ST_ERROR, "checkpoint: received floats [%llu, %llu) outside this rank's part [%zu, %zu)",
                         (unsigned long long)seg[i].at, (unsigned long long)(seg[i].at + l), lo, lo + n_part);
            break;
        }
        for (int b = 0; b < (kind == SEG_MOMENTS ? 2 : 1); b++) {
            const float *p = src ? src[2 * i + b] : part + (kind == SEG_MOMENTS ? (1 + b) * n_part : 0) + (seg[i].at - lo);
            MPI_Get_address(p, &addr[k]);
            len[k++] = (int)l;
        }
    }
    if (st == ST_OK) st = block_type(k, len, addr, out);
    free(len);
    free(addr);
    return st;
}

/* The headers (counts, then segments), then every float in place with one
 * MPI_Alltoallw of hindexed types; the part must receive every parameter and
 * every moment exactly once. */
static status_t exchange(trainer *t, MPI_Comm stage, outbox *o, float *part, size_t lo, size_t n)
{
    int P = t->topo->dp * t->topo->tp, total = 0;
    int *in = calloc((size_t)P * 6, sizeof(int)), *in_at = in + P, *sc = in + 2 * P, *sd = in + 3 * P,
        *rc = in + 4 * P, *rd = in + 5 * P;
    MPI_Datatype *types = calloc((size_t)P * 2, sizeof(MPI_Datatype));
    FAIL_IF(!in || !types, (free(in), free(types), ST_NOMEM), "checkpoint: out of memory");
    status_t st = ST_OK;
    if (MPI_Alltoall(o->segs, 1, MPI_INT, in, 1, MPI_INT, stage) != MPI_SUCCESS)
        st = st_fail(ST_MPI, "checkpoint: the stage's part exchange failed (MPI_Alltoall)");
    for (int q = 0; q < P; q++) {
        in_at[q] = total, total += in[q];
        sc[q] = 2 * o->segs[q], sd[q] = 2 * o->seg_at[q], rc[q] = 2 * in[q], rd[q] = 2 * in_at[q];
    }
    segment *seg = malloc(((size_t)total + 1) * sizeof *seg);
    if (st == ST_OK && !seg) st = st_fail(ST_NOMEM, "checkpoint: out of memory receiving the part's segments");
    if (st == ST_OK && MPI_Alltoallv(o->seg, sc, sd, MPI_UINT64_T, seg, rc, rd, MPI_UINT64_T, stage) != MPI_SUCCESS)
        st = st_fail(ST_MPI, "checkpoint: the stage's part exchange failed (MPI_Alltoallv of the segments)");
    /* every float of the part once as a parameter and once as a moment */
    uint64_t got[2] = {0, 0};
    for (int i = 0; st == ST_OK && i < total; i++) got[seg[i].len_kind >> 62] += seg[i].len_kind & SEG_LEN;
    if (st == ST_OK && (got[0] != n || got[1] != n))
        st = st_fail(ST_ERROR, "checkpoint: rank %d's part of stage %d would receive %llu parameters and %llu moments "
                     "of %zu floats", t->rank, t->topo->stage, (unsigned long long)got[0], (unsigned long long)got[1], n);
    for (int q = 0; q < 2 * P; q++) types[q] = MPI_DATATYPE_NULL;
    for (int q = 0; st == ST_OK && q < P; q++) {
        st = segment_type(o->seg + o->seg_at[q], o->src + 2 * o->seg_at[q], o->segs[q], NULL, 0, 0, &types[q]);
        if (st == ST_OK) st = segment_type(seg + in_at[q], NULL, in[q], part, lo, n, &types[P + q]);
    }
    /* collective whatever st (nothing moves then), so no rank waits for one that failed */
    for (int q = 0; q < P; q++) {
        sc[q] = st == ST_OK && types[q] != MPI_DATATYPE_NULL;
        rc[q] = st == ST_OK && types[P + q] != MPI_DATATYPE_NULL;
        sd[q] = rd[q] = 0;
    }
    for (int q = 0; q < 2 * P; q++)
        if (types[q] == MPI_DATATYPE_NULL) types[q] = MPI_FLOAT;
    if (MPI_Alltoallw(MPI_BOTTOM, sc, sd, types, MPI_BOTTOM, rc, rd, types + P, stage) != MPI_SUCCESS && st == ST_OK)
        st = st_fail(ST_MPI, "checkpoint: the stage's part exchange failed (MPI_Alltoallw)");
    for (int q = 0; q < 2 * P; q++)
        if (types[q] != MPI_FLOAT) MPI_Type_free(&types[q]);
    free(seg);
    free(types);
    free(in);
    return st;
}

/* tp > 1: this rank's part of the unsplit stage (layout.h part_lo, part_hi):
 * parameters and moments sent in place by the slices that hold them (one
 * all-to-all over the stage's ranks), so no rank holds more than its part. */
static status_t redistribute_stage(trainer *t, const float *params, ckpt_source *src)
{
    const layout_rank *lay = dist_engine_layout(t->engine);
    int P = t->topo->dp * t->topo->tp;
    size_t lo = lay->part_lo, n = lay->part_hi - lay->part_lo;
    outbox o = {.segs = calloc((size_t)P * 2, sizeof(int))};
    FAIL_IF(!o.segs, ST_NOMEM, "checkpoint: out of memory");
    o.seg_at = o.segs + P;
    fill_outbox(t, params, &o); /* counts */
    int segs = 0;
    for (int q = 0; q < P; q++) o.seg_at[q] = segs, segs += o.segs[q];
    float *part = malloc((3 * n + 1) * sizeof(float));
    o.seg = malloc(((size_t)segs + 1) * sizeof(segment));
    o.src = malloc(((size_t)segs + 1) * 2 * sizeof(float *));
    status_t st = ST_OK;
    if (2LL * segs > INT_MAX)
        st = st_fail(ST_CONFIG, "checkpoint: rank %d's slice is %d segments, beyond MPI's int counts; raise dist.pp",
                     t->rank, segs);
    else if (!part || !o.seg || !o.src)
        st = st_fail(ST_NOMEM, "checkpoint: out of memory for the stage's part (%.1f MiB)", 12.0 * n / 1048576.0);
    memset(o.segs, 0, sizeof(int) * (size_t)P);
    if (st == ST_OK) fill_outbox(t, params, &o);
    MPI_Comm stage;
    /* collective whatever st: the others wait in it otherwise (agree() reports the failure) */
    if (MPI_Comm_split(t->comm, t->topo->stage, t->rank, &stage) != MPI_SUCCESS) {
        free(o.segs), free(o.seg), free(o.src), free(part);
        return st_fail(ST_MPI, "checkpoint: rank %d: MPI_Comm_split of stage %d's ranks failed", t->rank,
                       t->topo->stage);
    }
    status_t ex = exchange(t, stage, &o, part, lo, n);
    MPI_Comm_free(&stage);
    if (st == ST_OK) st = ex;
    free(o.segs);
    free(o.seg);
    free(o.src);
    if (st != ST_OK) {
        free(part);
        return st;
    }
    *src = (ckpt_source){.params = part, .m = part + n, .v = part + 2 * n, .pbase = lo, .mbase = lo, .owned = part};
    return ST_OK;
}

/* This rank's pieces (layout.h: its dp shard of its stage at tp = 1, its
 * part of the unsplit stage at tp > 1) and their source. */
static status_t rank_pieces(trainer *t, piece *p, int *n, ckpt_source *src)
{
    const layout_rank *lay = dist_engine_layout(t->engine);
    optim_state *w = &t->state.w;
    *n = lay->n_pieces;
    memcpy(p, lay->pieces, sizeof lay->pieces);
    /* between steps: bf16 pairs are joined into the (idle) gradient buffer */
    const float *params = optim_state_params_staged(w);
    if (t->topo->tp == 1) {
        *src = (ckpt_source){.params = params, .m = w->m, .v = w->v, .pbase = 0, .mbase = w->ulo};
        return ST_OK;
    }
    return redistribute_stage(t, params, src);
}

/* Shard file number of each piece: its place in the global order over all
 * ranks' pieces (so the files tile the parameters in name order). */
static status_t number_pieces(trainer *t, const piece *mine, int n, int *index)
{
    uint64_t send[2 * MAX_PIECES], *all = malloc(sizeof send * (size_t)t->size);
    FAIL_IF(!all, ST_NOMEM, "checkpoint: out of memory numbering the shard files");
    for (int k = 0; k < MAX_PIECES; k++) send[2 * k] = k < n ? mine[k].begin : UINT64_MAX;
    for (int k = 0; k < MAX_PIECES; k++) send[2 * k + 1] = k < n ? mine[k].end : UINT64_MAX;
    if (MPI_Allgather(send, 2 * MAX_PIECES, MPI_UINT64_T, all, 2 * MAX_PIECES, MPI_UINT64_T, t->comm) !=
        MPI_SUCCESS) {
        free(all);
        return st_fail(ST_MPI, "checkpoint: rank %d: numbering the shard files failed (MPI_Allgather)", t->rank);
    }
    for (int k = 0; k < n; k++) {
        index[k] = 0;
        for (int j = 0; j < 2 * MAX_PIECES * t->size; j += 2)
            if (all[j] != all[j + 1] && all[j] < mine[k].begin) index[k]++;
    }
    free(all);
    return ST_OK;
}

static int by_begin(const void *a, const void *b)
{
    const ckpt_file *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

/* Writes this rank's pieces (params, m, v) as shard files; files[k].name is
 * empty for unused entries. */
static status_t write_pieces(trainer *t, const char *tmp, ckpt_file files[MAX_PIECES])
{
    piece p[MAX_PIECES];
    int n, index[MAX_PIECES];
    memset(files, 0, MAX_PIECES * sizeof *files);
    ckpt_source src = {0};
    status_t st = rank_pieces(t, p, &n, &src);
    if (st == ST_OK) st = number_pieces(t, p, n, index);
    for (int k = 0; st == ST_OK && k < n; k++) {
        size_t at = p[k].local - src.mbase;
        st = ckpt_shard_write(tmp, index[k], p[k].begin, p[k].end, src.params + (p[k].local - src.pbase), src.m + at,
                              src.v + at, &files[k]);
        files[k].rank = t->rank;
    }
    free(src.owned);
    return st;
}

static void fill_meta(const trainer *t, ckpt_meta *meta)
{
    const train_config *tc = &t->tc;
    int64_t step = t->state.step;
    memset(meta, 0, sizeof *meta);
    meta->model = tc->model;
    meta->step = step;
    meta->next_sample = (uint64_t)step * trainer_global_batch(t);
    meta->tokens_seen = (int64_t)meta->next_sample * tc->model.seq_len;
    meta->seed = tc->seed;
    meta->lr = t->last_lr;
    meta->elapsed_s = t->elapsed_base + (t->run_start > 0 ? time_now() - t->run_start : 0.0);
    meta->random_data = tc->random_data;
    snprintf(meta->data_path, sizeof meta->data_path, "%s", tc->data_path);
    if (t->stream) meta->cursor = t->state.cursor;
    meta->topo = (ckpt_topology){.world = t->size, .pp = t->topo->pp, .dp = t->topo->dp, .tp = t->topo->tp,
                                 .zero = tc->dist.zero};
    meta->run_id = t->run_id;
    meta->config_text = tc->config_text;
    meta->vocab_src = tc->random_data ? NULL : t->vocab_dir;
    trainer_valid_save(t, &meta->validation);
}

/* Rank 0: the manifest of every rank's entries, in global order. */
static status_t finish_manifest(trainer *t, const char *tmp, ckpt_file *all, int best)
{
    int n = 0;
    for (int i = 0; i < MAX_PIECES * t->size; i++)
        if (all[i].name[0]) all[n++] = all[i];
    qsort(all, (size_t)n, sizeof *all, by_begin);
    ckpt_meta meta;
    fill_meta(t, &meta);
    TRY(ckpt_manifest_write(tmp, &meta, all, n));
    return ckpt_commit(t->tc.run_dir, t->state.step, tmp, t->run_id, t->tc.ckpt_keep, best);
}

/* The collective save of the state (its step): temp dir (rank 0), every
 * rank's pieces in parallel, then manifest, rename, latest (and best) and
 * pruning on rank 0. */
static status_t save(trainer *t, int best)
{
    int64_t step = t->state.step;
    char tmp[4200] = "";
    TRY(agree(t, dist_params_complete(t->engine))); /* the low halves the update did not gather */
    status_t st = t->rank == 0 ? ckpt_begin(t->tc.run_dir, step, tmp, sizeof tmp) : ST_OK;
    TRY(agree(t, st));
    FAIL_IF(MPI_Bcast(tmp, sizeof tmp, MPI_CHAR, 0, t->comm) != MPI_SUCCESS, ST_MPI,
            "checkpoint: rank %d: receiving the save's directory failed (MPI_Bcast)", t->rank);
    ckpt_file mine[MAX_PIECES], *all = t->rank == 0 ? calloc((size_t)t->size * MAX_PIECES, sizeof *all) : NULL;
    st = t->rank == 0 && !all ? st_fail(ST_NOMEM, "checkpoint: out of memory for %d file entries", t->size) : ST_OK;
    if (st == ST_OK) st = write_pieces(t, tmp, mine);
    st = agree(t, st);
    if (st == ST_OK) {
        if (MPI_Gather(mine, sizeof mine, MPI_BYTE, all, sizeof mine, MPI_BYTE, 0, t->comm) != MPI_SUCCESS)
            st = st_fail(ST_MPI, "checkpoint: rank %d: gathering the shard files' entries failed (MPI_Gather)",
                         t->rank);
        else if (t->rank == 0)
            st = finish_manifest(t, tmp, all, best);
        st = agree(t, st);
    }
    if (st != ST_OK && t->rank == 0) ckpt_abort(tmp);
    free(all);
    return st;
}

static const char *signal_name(int signo)
{
    return signo == SIGTERM ? "SIGTERM" : signo == SIGINT ? "SIGINT" : signo == SIGUSR1 ? "SIGUSR1" : "a signal";
}

status_t trainer_step_boundary(trainer *t, int64_t done, int best, int last)
{
    const train_config *tc = &t->tc;
    int flags[2] = {preempt_signal, 0};
    if (t->rank == 0 && tc->ckpt_every_minutes > 0)
        flags[1] = time_now() - t->last_save_time >= tc->ckpt_every_minutes * 60.0;
    char what[96];
    snprintf(what, sizeof what, "the step boundary after step %lld (the checkpoint decision)", (long long)done);
    watchdog_arm(what, tc->dist.hang_timeout);
    FAIL_IF(MPI_Allreduce(MPI_IN_PLACE, flags, 2, MPI_INT, MPI_MAX, t->comm) != MPI_SUCCESS, ST_MPI,
            "checkpoint: rank %d: the checkpoint decision after step %lld failed (MPI_Allreduce)", t->rank,
            (long long)done);
    int every = tc->ckpt_every_steps > 0 && done % tc->ckpt_every_steps == 0;
    last = last || done == tc->steps;
    char name[32];
    if (!flags[0] && !flags[1] && !every && !last && !best) {
        watchdog_disarm();
        return ST_OK;
    }
    double t0 = time_now();
    snprintf(what, sizeof what, "the checkpoint save of step %lld", (long long)done);
    watchdog_arm(what, tc->ckpt_io_timeout);
    FAIL_IF(done != t->state.step, ST_ERROR, "checkpoint: the step boundary after step %lld is not the state's "
            "step %lld", (long long)done, (long long)t->state.step);
    status_t st = save(t, best);
    watchdog_disarm();
    t->last_save_time = time_now();
    if (st == ST_OK) {
        ckpt_step_name(done, name, sizeof name);
        snprintf(t->last_ckpt, sizeof t->last_ckpt, "%s/%s", tc->run_dir, name);
        /* parameters, m and v of the full model in float32 */
        double mb = 12.0 * (double)model_full_n_params(&tc->model) / 1e6, s = t->last_save_time - t0;
        log_msg(LOG_INFO, "checkpoint step %lld written to %s in %.2f s (%.0f MB, %.0f MB/s)%s", (long long)done,
                tc->run_dir, s, mb, s > 0 ? mb / s : 0.0, best ? "; best names it (the lowest val_loss)" : "");
    } else if (!flags[0] && tc->ckpt_continue && last) {
        /* training goes on after a failed save, but must not end as if it had been written */
        if (t->last_ckpt[0])
            return st_context(st, "the final checkpoint (step %lld) was not written (ckpt.on_error = continue "
                              "trained on, but the run ends here); the last valid checkpoint is %s: ",
                              (long long)done, t->last_ckpt);
        return st_context(st, "the final checkpoint (step %lld) was not written (ckpt.on_error = continue trained "
                          "on, but the run ends here); there is no valid checkpoint of this run: ", (long long)done);
    } else if (!flags[0] && tc->ckpt_continue) {
        if (t->rank == 0)
            log_msg(LOG_WARN, "checkpoint at step %lld failed, training goes on (ckpt.on_error = continue): %s",
                    (long long)done, st_message());
        st_clear();
    } else {
        char latest[1100];
        struct stat sb;
        snprintf(latest, sizeof latest, "%s/latest", tc->run_dir);
        return st_context(st, "checkpoint at step %lld failed (%s): ", (long long)done, lstat(latest, &sb) == 0 ?
                          "the previous checkpoint and latest are intact" :
                          "no earlier checkpoint exists in the run directory, so nothing is lost but nothing is saved");
    }
    if (!flags[0]) return ST_OK;
    log_msg(LOG_INFO, "preempted by %s at step %lld: checkpoint written, exit 75", signal_name(flags[0]),
            (long long)done);
    return st_fail(ST_PREEMPTED, "preempted by %s at step %lld: checkpoint written, exit 75", signal_name(flags[0]),
                   (long long)done);
}

/* --- resume --- */

/* auto: latest, else the newest step directory that verifies. With none:
 * a directory without checkpoints (a new run, a first submission) starts from
 * scratch; one whose checkpoints all fail to verify is an error naming each
 * and why, unless ckpt.if_none_valid = restart. */
static status_t choose_auto(const trainer *t, ckpt_reader **out)
{
    const char *run = t->tc.run_dir;
    char latest[4200], tried[PATH_MAX] = "", why[2048] = "";
    snprintf(latest, sizeof latest, "%s/latest", run);
    struct stat sb;
    int has_latest = lstat(latest, &sb) == 0;
    if (ckpt_open(out, run) == ST_OK) return ST_OK;
    size_t used = has_latest ? (size_t)snprintf(why, sizeof why, "latest: %s", st_message()) : 0;
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
            if (used < sizeof why) used += (size_t)snprintf(why + used, sizeof why - used, "%s%s", used ? "; " : "",
                                                            st_message());
            continue;
        }
        log_msg(LOG_WARN, "resume: %s is not usable (%s); resuming from %s instead", latest, why, path);
    }
    free(steps);
    st_clear();
    if (*out) return ST_OK;
    if (!has_latest && n == 0) {
        log_msg(LOG_INFO, "resume: no checkpoint in %s; starting from scratch", run);
        return ST_OK;
    }
    if (t->tc.ckpt_restart) {
        log_msg(LOG_WARN, "resume: no valid checkpoint in %s (%s); starting from scratch (ckpt.if_none_valid = "
                "restart)", run, why);
        return ST_OK;
    }
    return st_fail(ST_FORMAT, "resume: no valid checkpoint in %s, which holds checkpoints (%s); restore a valid "
                   "one (mpilm inspect verifies a checkpoint), resume from one with --resume PATH, or set "
                   "ckpt.if_none_valid = restart to start from scratch", run, why);
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
    FAIL_IF(MPI_Bcast(chosen, sizeof chosen, MPI_CHAR, 0, t->comm) != MPI_SUCCESS, ST_MPI,
            "resume: rank %d: receiving the chosen checkpoint failed (MPI_Bcast)", t->rank);
    if (t->rank != 0 && chosen[0]) st = ckpt_open(r, chosen);
    return agree(t, st);
}

/* A blend resumes only as the same blend: its datasets' count and weights
 * decide which sample comes from where. Paths may change (a moved dataset),
 * as for one dataset; the tokenizer check follows. */
static status_t check_blend(const trainer *t, const ckpt_reader *r)
{
    const ckpt_meta *meta = ckpt_meta_of(r);
    stream_blend was, now;
    TRY(stream_blend_parse(meta->data_path, &was));
    TRY(stream_blend_parse(t->tc.data_path, &now));
    int same = was.n == now.n && meta->cursor.n_sources == (now.n > 1 ? now.n : 0);
    for (int d = 0; same && d < now.n; d++) same = fabs(was.weight[d] - now.weight[d]) <= 1e-12; /* '7 a 3 b' = '0.7 a 0.3 b' */
    FAIL_IF(!same, ST_CONFIG, "%s: data.path = '%s' (%d dataset%s) differs from the checkpoint's '%s' (%d); a blend "
            "resumes only with the same datasets' count and weights (paths may move); resume with data.path = '%s' "
            "or start a new run", ckpt_path(r), t->tc.data_path, now.n, now.n == 1 ? "" : "s", meta->data_path,
            was.n, meta->data_path);
    return ST_OK;
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
    uint64_t want = (uint64_t)meta->step * trainer_global_batch(t);
    FAIL_IF(meta->next_sample != want, ST_CONFIG, "%s: the checkpoint is at sample %llu after %lld steps, but this "
            "configuration's global batch of %llu sequences puts step %lld at sample %llu; resume with the same "
            "global batch (train.micro_batch x train.micro_batches x dist.dp; set train.global_batch to keep it on any rank "
            "count)", ckpt_path(r),
            (unsigned long long)meta->next_sample, (long long)meta->step, (unsigned long long)trainer_global_batch(t),
            (long long)meta->step, (unsigned long long)want);
    if (t->stream) {
        TRY(check_blend(t, r));
        const dataset_info *di = stream_info(t->stream);
        char what[1100];
        snprintf(what, sizeof what, "the dataset %s", t->tc.data_path);
        TRY(ckpt_check_tokenizer(r, di->kind == TOKENIZER_BPE ? "bpe" : "wordpiece", di->fingerprint, di->vocab_size,
                                 what, "resume on a dataset prepared with the checkpoint's vocabulary (mpilm prep "
                                 "--vocab CHECKPOINT/vocab), or start a new run"));
    }
    /* into the state, by the stage's runs of the global order (any layout) */
    const model_stage *m = dist_engine_stage(t->engine);
    train_state *s = &t->state;
    TRY(ckpt_read_stage(r, m, optim_state_params_staged(&s->w), NULL, NULL));
    optim_state_params_commit(&s->w);
    TRY(ckpt_read_stage_range(r, m, s->w.ulo, s->w.uhi, NULL, s->w.m, s->w.v));
    s->step = meta->step;
    s->cursor = meta->cursor;
    if (t->stream) TRY(stream_cursor_set(t->stream, &s->cursor));
    t->start_step = s->step;
    t->last_lr = meta->lr;
    t->elapsed_base = meta->elapsed_s;
    trainer_valid_restore(t, &meta->validation);
    return ST_OK;
}

status_t trainer_resume(trainer *t)
{
    ckpt_reader *r = NULL;
    TRY(open_chosen(t, &r));
    if (!r) return ST_OK;
    status_t st = agree(t, restore(t, r));
    /* best must name the resumed manifest's best, not a checkpoint of a continuation given up */
    if (st == ST_OK) st = agree(t, t->rank == 0 && t->tc.ckpt_keep_best ?
                                ckpt_run_set_best(t->tc.run_dir, t->has_best ? t->best_step : -1) : ST_OK);
    if (st == ST_OK) {
        log_msg(LOG_INFO, "resumed from %s (step %lld)", ckpt_path(r), (long long)ckpt_step(r));
        t->run_id = ckpt_meta_of(r)->run_id;
        snprintf(t->last_ckpt, sizeof t->last_ckpt, "%s", ckpt_path(r));
    }
    ckpt_close(r);
    return st;
}

/* --- the run directory --- */

status_t trainer_claim_run_dir(trainer *t)
{
    status_t st = ST_OK;
    if (t->rank == 0) {
        st = ckpt_run_lock(t->tc.run_dir, &t->lock_fd);
        if (st == ST_OK && !t->tc.resume[0] && !t->tc.overwrite) st = ckpt_run_check_new(t->tc.run_dir);
    }
    return agree(t, st);
}

status_t trainer_clear_run_dir(trainer *t)
{
    status_t st = ST_OK;
    if (t->rank == 0) {
        char what[2048];
        st = ckpt_run_clear(t->tc.run_dir, what, sizeof what);
        if (st == ST_OK && what[0]) log_msg(LOG_INFO, "overwrite: removed %s from %s", what, t->tc.run_dir);
        else if (st == ST_OK) log_msg(LOG_INFO, "overwrite: %s holds no earlier run; nothing removed", t->tc.run_dir);
    }
    return agree(t, st);
}

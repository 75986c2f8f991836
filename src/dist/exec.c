/* dist/exec — runs a stage's instruction list with MPI_Isend/MPI_Irecv, and
 * the watchdog.
 *
 * Receives are posted early: before each forward or backward, the next
 * receives of the list are posted as soon as their buffer is free (an
 * activation's slot holds no live micro-batch; a gradient's micro-batch has
 * been forwarded), so the transfer overlaps the compute. Sends are
 * MPI_Isend; a slot's sends are completed before a forward writes into the
 * slot again and at the end of the pipeline phase. Stages computing in bf16
 * send bf16 (dist.h): the sender rounds into the slot's bf16 buffer, the
 * receiver widens into the stage's fp32 array when the receive instruction's
 * wait returns, before the forward or backward that reads it.
 *
 * Watchdog: every wait polls MPI_Test against the step's deadline
 * (dist.hang_timeout seconds from its start). Past it the rank logs which
 * instruction and which wait it is in and its pending requests, gives the
 * other ranks a moment to log theirs, and returns ST_MPI with that report.
 */
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/timer.h"
#include "dist/dist_internal.h"

static void describe_pending(const dist_engine *e, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int k = 0; k < e->n_slots && used < n; k++) {
        const MPI_Request *r[3] = {&e->recv_req[k], &e->send_act[k], &e->send_grad[k]};
        static const char *kind[3] = {"receive into", "activation send from", "gradient send from"};
        for (int j = 0; j < 3 && used < n; j++)
            if (*r[j] != MPI_REQUEST_NULL)
                used += (size_t)snprintf(buf + used, n - used, "%s%s slot %d (micro-batch %d)",
                                         used ? ", " : "", kind[j], k, e->slot_mb[k]);
    }
    static const char *tied[2] = {"the tied-embedding gradient's receive", "the tied-embedding gradient's send"};
    for (int k = 0; k < 2 && used < n; k++)
        if (e->tied_req[k] != MPI_REQUEST_NULL)
            used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? ", " : "", tied[k]);
    if (!used) snprintf(buf, n, "none besides this wait");
}

static status_t hang(dist_engine *e, const char *what)
{
    char pending[512], where[160] = "after the pipeline phase";
    describe_pending(e, pending, sizeof pending);
    int s = e->topo.stage;
    if (e->validating) snprintf(where, sizeof where, "in a validation batch's forward");
    else if (e->pc < e->plan.n_instr[s]) {
        const dist_instr *in = &e->plan.instr[s][e->pc];
        snprintf(where, sizeof where, "at instruction %d (%s micro-batch %d, peer stage %d)", e->pc,
                 dist_op_name(in->op), in->mb, in->peer);
    }
    char report[1024], phase[64];
    snprintf(phase, sizeof phase, e->validating ? "the validation after step %lld" : "step %lld",
             (long long)e->step + 1);
    snprintf(report, sizeof report,
             "dist: %s exceeded dist.hang_timeout = %g s on rank %d (replica %d, stage %d) %s, waiting for %s; "
             "pending requests: %s; a peer rank is stuck or dead (see its report) — raise dist.hang_timeout if "
             "steps are legitimately this slow", phase, e->dc.hang_timeout, e->topo.rank,
             e->topo.replica, s, where, what, pending);
    log_error("%s", report);
    sleep(2); /* let the peers reach their own deadline and log before one aborts the job */
    return st_fail(ST_MPI, "%s", report);
}

status_t dist_wait(dist_engine *e, MPI_Request *req, const char *what)
{
    for (;;) {
        int done = 0;
        FAIL_IF(MPI_Test(req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS, ST_MPI, "dist: MPI_Test failed waiting for %s",
                what);
        if (done) return ST_OK;
        if (e->deadline > 0 && time_now() > e->deadline) return hang(e, what);
        sched_yield();
    }
}

/* model_pass.poll: between sub-blocks of a forward or backward, tests every
 * pending request of the step. Open MPI moves a large message (a rendezvous,
 * in fragments) and advances a non-blocking collective only while its ranks
 * are inside MPI calls; without these tests a transfer posted before a compute
 * would wait for its end, and a GPipe stage running its forwards back to back
 * would serialise its peers. In the stage's last pass of the step, finished
 * gradient ranges start their ZeRO-2 reduce-scatter (dist_grads_final). */
static void poll(void *ctx, size_t lo, size_t hi)
{
    dist_engine *e = ctx;
    int done;
    if (lo < hi && e->final_pass && e->poll_status == ST_OK) e->poll_status = dist_grads_final(e, lo, hi);
    for (int k = 0; k < e->n_slots; k++) {
        MPI_Request *r[3] = {&e->recv_req[k], &e->send_act[k], &e->send_grad[k]};
        for (int j = 0; j < 3; j++)
            if (*r[j] != MPI_REQUEST_NULL) MPI_Test(r[j], &done, MPI_STATUS_IGNORE);
    }
    for (size_t i = 0, n = (size_t)e->lay.n_buckets * e->topo.dp + 1; i < n; i++)
        if (e->coll[i] != MPI_REQUEST_NULL) MPI_Test(&e->coll[i], &done, MPI_STATUS_IGNORE);
    for (int k = 0; k < 2; k++)
        if (e->tied_req[k] != MPI_REQUEST_NULL) MPI_Test(&e->tied_req[k], &done, MPI_STATUS_IGNORE);
}

/* The fp32 array a message fills or comes from. */
static float *stage_buffer(dist_engine *e, const dist_instr *in)
{
    switch (in->op) {
    case DIST_RECV_ACT: return model_stage_input(e->stage, in->slot);
    case DIST_RECV_GRAD: return model_stage_doutput(e->stage, in->slot);
    case DIST_SEND_ACT: return model_stage_output(e->stage, in->slot);
    default: return model_stage_dinput(e->stage, in->slot);
    }
}

/* With bf16 stages, the slot's bf16 buffer of a message: a slot has one
 * receive in flight at a time (its activation's is complete before its
 * gradient's is posted) but may have both sends (an activation send completes
 * only before the slot's next forward). */
static bf16 *message_bf16(dist_engine *e, const dist_instr *in)
{
    size_t which = in->op == DIST_SEND_ACT ? 1 : in->op == DIST_SEND_GRAD ? 2 : 0;
    return e->pipe_bf + ((size_t)in->slot * 3 + which) * e->act_count;
}

static status_t post_recv(dist_engine *e, const dist_instr *in)
{
    if (in->op == DIST_RECV_ACT) e->slot_mb[in->slot] = in->mb, e->slot_fwd[in->slot] = 0;
    void *buf = e->pipe_bf ? (void *)message_bf16(e, in) : (void *)stage_buffer(e, in);
    MPI_Datatype type = e->pipe_bf ? MPI_UINT16_T : MPI_FLOAT;
    FAIL_IF(MPI_Irecv(buf, (int)in->count, type, in->peer, in->tag, e->topo.pipe, &e->recv_req[in->slot]) !=
            MPI_SUCCESS, ST_MPI, "dist: MPI_Irecv of %s micro-batch %d failed", dist_op_name(in->op), in->mb);
    return ST_OK;
}

static int recv_ready(const dist_engine *e, const dist_instr *in)
{
    if (in->op == DIST_RECV_ACT) return e->slot_mb[in->slot] == -1;
    return e->slot_mb[in->slot] == in->mb && e->slot_fwd[in->slot];
}

/* Posts the list's next receives, in order, while their buffers are free. */
static status_t prefetch(dist_engine *e)
{
    int s = e->topo.stage;
    for (; e->next_recv < e->plan.n_instr[s]; e->next_recv++) {
        const dist_instr *in = &e->plan.instr[s][e->next_recv];
        if (in->op != DIST_RECV_ACT && in->op != DIST_RECV_GRAD) continue;
        if (!recv_ready(e, in)) return ST_OK;
        TRY(post_recv(e, in));
    }
    return ST_OK;
}

static status_t run_recv(dist_engine *e, const dist_instr *in)
{
    if (e->next_recv <= e->pc) {
        TRY(post_recv(e, in));
        e->next_recv = e->pc + 1;
    }
    char what[96];
    snprintf(what, sizeof what, "the %s of micro-batch %d from stage %d", in->op == DIST_RECV_ACT ? "activation" :
             "gradient", in->mb, in->peer);
    TRY(dist_wait(e, &e->recv_req[in->slot], what));
    if (e->pipe_bf) bf16_to_f32(stage_buffer(e, in), message_bf16(e, in), in->count);
    return ST_OK;
}

static status_t run_send(dist_engine *e, const dist_instr *in)
{
    int act = in->op == DIST_SEND_ACT;
    void *buf = stage_buffer(e, in);
    MPI_Datatype type = MPI_FLOAT;
    if (e->pipe_bf) {
        bf16_from_f32(message_bf16(e, in), buf, in->count);
        buf = message_bf16(e, in);
        type = MPI_UINT16_T;
    }
    MPI_Request *r = act ? &e->send_act[in->slot] : &e->send_grad[in->slot];
    FAIL_IF(MPI_Isend(buf, (int)in->count, type, in->peer, in->tag, e->topo.pipe, r) != MPI_SUCCESS, ST_MPI,
            "dist: MPI_Isend of %s micro-batch %d failed", dist_op_name(in->op), in->mb);
    if (!act) e->slot_mb[in->slot] = -1;
    return ST_OK;
}

static status_t finish_sends(dist_engine *e, int slot)
{
    TRY(dist_wait(e, &e->send_act[slot], "an activation send to complete"));
    return dist_wait(e, &e->send_grad[slot], "a gradient send to complete");
}

uint64_t dist_microbatch_index(int64_t step, int dp, int replica, int m, int mb)
{
    return ((uint64_t)step * (uint64_t)dp + (uint64_t)replica) * (uint64_t)m + (uint64_t)mb;
}

static status_t run_compute(dist_engine *e, const dist_instr *in, dist_fill_fn fill, void *ctx)
{
    TRY(prefetch(e));
    double t0 = time_now();
    int s = e->topo.stage;
    batch *b = &e->batches[in->slot];
    uint64_t g = dist_microbatch_index(e->step, e->topo.dp, e->topo.replica, e->m, in->mb);
    model_pass pass = {.train = 1, .seed = e->seed, .sample0 = g * (uint64_t)e->B,
                       .loss_scale = 1.0f / (float)(e->m * e->topo.dp), .poll = poll, .poll_ctx = e,
                       .defer_head = 1};
    e->final_pass = e->pc == (in->op == DIST_FWD ? e->last_fwd : e->last_bwd);
    /* a last stage after others flushes the heads' rows once the step's last
       gradient is on its way (finish_heads), a single stage at its last pass */
    pass.head_dw_wait = !e->final_pass || s > 0;
    if (in->op == DIST_FWD) {
        TRY(finish_sends(e, in->slot));
        e->slot_mb[in->slot] = in->mb;
        TRY(fill(ctx, g, b));
        TRY(model_forward(e->stage, in->slot, b, &pass, NULL));
        e->slot_fwd[in->slot] = 1;
    } else {
        if (model_stage_last(e->stage)) {
            model_losses l = {0};
            TRY(model_head(e->stage, in->slot, b, &pass, &l));
            if (l.lm_count) e->sums[0] += l.lm_loss_sum / l.lm_count;
            if (l.mlm_count) e->sums[1] += l.mlm_loss_sum / l.mlm_count;
            if (l.nsp_count) e->sums[2] += l.nsp_loss_sum / l.nsp_count;
        }
        TRY(model_backward(e->stage, in->slot, b, &pass));
        if (e->topo.stage == 0) e->slot_mb[in->slot] = -1;
    }
    TRY(e->poll_status);
    e->busy += time_now() - t0;
    return ST_OK;
}

/* A last stage after others, once its last gradient send is posted: the
 * output weight's gradient of the rows its heads still hold, which the
 * previous stage's last backward does not wait for; then that stage's part of
 * the tied embedding's gradient is complete and goes to the first stage. */
static status_t finish_heads(dist_engine *e)
{
    if (e->topo.stage == 0 || !model_stage_last(e->stage)) return ST_OK;
    double t0 = time_now();
    model_pass pass = {.train = 1, .poll = poll, .poll_ctx = e};
    TRY(model_head_flush(e->stage, &pass));
    TRY(e->poll_status);
    e->busy += time_now() - t0;
    return dist_tied_send(e);
}

status_t dist_run_pipeline(dist_engine *e, dist_fill_fn fill, void *ctx)
{
    int s = e->topo.stage;
    for (int k = 0; k < e->n_slots; k++) e->slot_mb[k] = -1, e->slot_fwd[k] = 0;
    e->next_recv = 0;
    e->last_fwd = e->last_bwd = -1;
    for (int i = 0; i < e->plan.n_instr[s]; i++) {
        if (e->plan.instr[s][i].op == DIST_FWD) e->last_fwd = i;
        if (e->plan.instr[s][i].op == DIST_BWD) e->last_bwd = i;
    }
    e->poll_status = ST_OK;
    e->final_lo = e->lay.n;
    e->n_final_pend = 0;
    e->next_bucket = e->lay.n_buckets - 1;
    memset(e->bucket_posted, 0, (size_t)e->lay.n_buckets);
    TRY(dist_tied_recv(e));
    for (e->pc = 0; e->pc < e->plan.n_instr[s]; e->pc++) {
        const dist_instr *in = &e->plan.instr[s][e->pc];
        switch (in->op) {
        case DIST_RECV_ACT:
        case DIST_RECV_GRAD: TRY(run_recv(e, in)); break;
        case DIST_SEND_ACT:
        case DIST_SEND_GRAD: TRY(run_send(e, in)); break;
        case DIST_FWD:
        case DIST_BWD: TRY(run_compute(e, in, fill, ctx)); break;
        }
    }
    TRY(finish_heads(e));
    for (int k = 0; k < e->n_slots; k++) TRY(finish_sends(e, k));
    return ST_OK;
}

/* Tag of the validation's activations: above every step's 2 m + 1 (the
 * step's messages are all complete before validation runs anyway). */
enum { EVAL_TAG = 32767 };

static status_t eval_forward_stage(dist_engine *e, const batch *b, model_losses *losses)
{
    int s = e->topo.stage, last = s == e->topo.pp - 1;
    int count = (int)e->act_count;
    char what[96];
    if (s > 0) {
        FAIL_IF(MPI_Irecv(model_stage_input(e->stage, 0), count, MPI_FLOAT, s - 1, EVAL_TAG, e->topo.pipe,
                          &e->recv_req[0]) != MPI_SUCCESS, ST_MPI, "dist: MPI_Irecv of a validation activation failed");
        snprintf(what, sizeof what, "the validation activation from stage %d", s - 1);
        TRY(dist_wait(e, &e->recv_req[0], what));
    }
    model_pass pass = {.train = 0, .loss_scale = 1.0f};
    TRY(model_forward(e->stage, 0, b, &pass, last ? losses : NULL));
    if (last) return ST_OK;
    FAIL_IF(MPI_Isend(model_stage_output(e->stage, 0), count, MPI_FLOAT, s + 1, EVAL_TAG, e->topo.pipe,
                      &e->send_act[0]) != MPI_SUCCESS, ST_MPI, "dist: MPI_Isend of a validation activation failed");
    snprintf(what, sizeof what, "the validation activation's send to stage %d", s + 1);
    return dist_wait(e, &e->send_act[0], what);
}

status_t dist_eval_forward(dist_engine *e, const batch *b, model_losses *losses)
{
    e->deadline = e->dc.hang_timeout > 0 ? time_now() + e->dc.hang_timeout : 0.0;
    e->pc = e->plan.n_instr[e->topo.stage]; /* the report says: outside the pipeline phase */
    e->slot_mb[0] = -1;
    e->validating = 1;
    status_t st = eval_forward_stage(e, b, losses);
    e->validating = 0;
    return st;
}

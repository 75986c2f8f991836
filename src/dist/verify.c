/* dist/verify — runs a plan's instruction lists in a simulator with the
 * executor's semantics: sends never block (MPI_Isend, completed later),
 * receives block until the matching message (same peer and tag, MPI's
 * matching) exists. Every rank steps as far as it can; a round in which no
 * rank moves while some have instructions left is a deadlock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist_internal.h"

typedef struct message {
    int src, dst, tag, mb, grad, consumed;
    size_t count;
} message;

typedef struct slot_state {
    int mb, fwd, grad, bwd; /* mb = -1: free */
} slot_state;

typedef struct sim {
    const dist_plan *p;
    int *pc, *in_flight, *fwd_count, *bwd_count; /* counts: [pp][m] */
    slot_state **slots;
    message *msgs;
    int n_msgs;
} sim;

static status_t bad(int s, const dist_instr *in, int i, const char *what)
{
    return st_fail(ST_ERROR, "dist: schedule check failed at stage %d instruction %d (%s micro-batch %d slot %d): %s",
                   s, i, dist_op_name(in->op), in->mb, in->slot, what);
}

/* Static checks of one instruction: ranges, peer, tag. */
static status_t check_fields(const dist_plan *p, int s, int i)
{
    const dist_instr *in = &p->instr[s][i];
    FAIL_IF(in->mb < 0 || in->mb >= p->m, ST_ERROR, "dist: schedule check failed at stage %d instruction %d: "
            "micro-batch %d outside [0, %d)", s, i, in->mb, p->m);
    if (in->slot < 0 || in->slot >= p->n_slots[s]) return bad(s, in, i, "slot outside the stage's slots");
    int grad = in->op == DIST_RECV_GRAD || in->op == DIST_SEND_GRAD;
    int want_peer = -1;
    if (in->op == DIST_RECV_ACT || in->op == DIST_SEND_GRAD) want_peer = s - 1;
    if (in->op == DIST_SEND_ACT || in->op == DIST_RECV_GRAD) want_peer = s + 1;
    if (want_peer != -1 && (want_peer < 0 || want_peer >= p->pp || in->peer != want_peer))
        return bad(s, in, i, "peer is not the neighbouring stage in that direction");
    if (want_peer != -1 && in->tag != 2 * in->mb + grad) return bad(s, in, i, "tag is not 2 mb + direction");
    return ST_OK;
}

static message *find_message(sim *sm, int src, int dst, int tag)
{
    for (int i = 0; i < sm->n_msgs; i++) {
        message *g = &sm->msgs[i];
        if (!g->consumed && g->src == src && g->dst == dst && g->tag == tag) return g;
    }
    return NULL;
}

static status_t occupy(sim *sm, int s, const dist_instr *in, int i)
{
    slot_state *sl = &sm->slots[s][in->slot];
    if (sl->mb != -1) {
        char what[96];
        snprintf(what, sizeof what, "slot still holds live micro-batch %d (would be overwritten)", sl->mb);
        return bad(s, in, i, what);
    }
    *sl = (slot_state){.mb = in->mb};
    int bound = dist_plan_bound(sm->p->kind, sm->p->pp, sm->p->m, s);
    if (++sm->in_flight[s] > bound) return bad(s, in, i, "more micro-batches in flight than the schedule's bound");
    return ST_OK;
}

static void release(sim *sm, int s, int slot)
{
    sm->slots[s][slot].mb = -1;
    sm->in_flight[s]--;
}

/* Executes instruction pc of stage s if it can run; *moved = 1 if it did. */
static status_t step_stage(sim *sm, int s, int *moved)
{
    const dist_plan *p = sm->p;
    int i = sm->pc[s];
    const dist_instr *in = &p->instr[s][i];
    *moved = 0;
    TRY(check_fields(p, s, i));
    slot_state *sl = &sm->slots[s][in->slot];
    int first = s == 0, last = s == p->pp - 1, holds = sl->mb == in->mb;
    if (in->op == DIST_RECV_ACT || in->op == DIST_RECV_GRAD) {
        message *g = find_message(sm, in->peer, s, in->tag);
        if (!g) return ST_OK;
        if (g->count != in->count) return bad(s, in, i, "message size differs from the sender's");
        if (in->op == DIST_RECV_ACT) TRY(occupy(sm, s, in, i));
        else if (!holds || !sl->fwd) return bad(s, in, i, "gradient arrives for a micro-batch not forwarded in this slot");
        g->consumed = 1;
        sl->grad = in->op == DIST_RECV_GRAD;
    } else if (in->op == DIST_FWD) {
        if (first) TRY(occupy(sm, s, in, i));
        else if (!holds || sl->fwd) return bad(s, in, i, "forward without its received activation");
        sl->fwd = 1;
        sm->fwd_count[s * p->m + in->mb]++;
    } else if (in->op == DIST_BWD) {
        if (!holds || !sl->fwd || (!last && !sl->grad)) return bad(s, in, i, "backward before its forward or gradient");
        sl->bwd = 1;
        sm->bwd_count[s * p->m + in->mb]++;
        if (first) release(sm, s, in->slot);
    } else {
        int grad = in->op == DIST_SEND_GRAD;
        if (!holds || !(grad ? sl->bwd : sl->fwd)) return bad(s, in, i, "send before the data is computed");
        sm->msgs[sm->n_msgs++] = (message){.src = s, .dst = in->peer, .tag = in->tag, .mb = in->mb, .grad = grad,
                                           .count = in->count};
        if (grad) release(sm, s, in->slot);
    }
    sm->pc[s]++;
    *moved = 1;
    return ST_OK;
}

static status_t report_deadlock(const sim *sm)
{
    char buf[1024];
    size_t used = 0;
    for (int s = 0; s < sm->p->pp && used < sizeof buf; s++) {
        if (sm->pc[s] == sm->p->n_instr[s]) continue;
        const dist_instr *in = &sm->p->instr[s][sm->pc[s]];
        used += (size_t)snprintf(buf + used, sizeof buf - used, "%sstage %d waits at instruction %d (%s micro-batch %d "
                                 "from stage %d)", used ? "; " : "", s, sm->pc[s], dist_op_name(in->op), in->mb, in->peer);
    }
    return st_fail(ST_ERROR, "dist: schedule deadlock: %s; no stage can move (a receive has no matching send "
                   "before it)", buf);
}

static status_t check_complete(const sim *sm)
{
    const dist_plan *p = sm->p;
    for (int s = 0; s < p->pp; s++)
        for (int j = 0; j < p->m; j++)
            FAIL_IF(sm->fwd_count[s * p->m + j] != 1 || sm->bwd_count[s * p->m + j] != 1, ST_ERROR,
                    "dist: schedule check failed: stage %d runs micro-batch %d forward %d and backward %d times "
                    "(expected once each)", s, j, sm->fwd_count[s * p->m + j], sm->bwd_count[s * p->m + j]);
    for (int i = 0; i < sm->n_msgs; i++)
        FAIL_IF(!sm->msgs[i].consumed, ST_ERROR, "dist: schedule check failed: stage %d sends %s of micro-batch %d "
                "to stage %d that is never received", sm->msgs[i].src, sm->msgs[i].grad ? "the gradient" : "the activation",
                sm->msgs[i].mb, sm->msgs[i].dst);
    return ST_OK;
}

static status_t run(sim *sm)
{
    const dist_plan *p = sm->p;
    for (;;) {
        int progress = 0, done = 1;
        for (int s = 0; s < p->pp; s++) {
            int moved = 1;
            while (moved && sm->pc[s] < p->n_instr[s]) {
                TRY(step_stage(sm, s, &moved));
                progress |= moved;
            }
            done &= sm->pc[s] == p->n_instr[s];
        }
        if (done) return check_complete(sm);
        if (!progress) return report_deadlock(sm);
    }
}

status_t dist_plan_verify(const dist_plan *p)
{
    sim sm = {.p = p};
    int total = 0;
    for (int s = 0; s < p->pp; s++) total += p->n_instr[s];
    sm.pc = calloc((size_t)p->pp * 2, sizeof(int));
    sm.fwd_count = calloc((size_t)p->pp * p->m * 2, sizeof(int));
    sm.slots = calloc((size_t)p->pp, sizeof(slot_state *));
    sm.msgs = calloc((size_t)total + 1, sizeof(message));
    status_t st = ST_NOMEM;
    if (sm.pc && sm.fwd_count && sm.slots && sm.msgs) {
        sm.in_flight = sm.pc + p->pp;
        sm.bwd_count = sm.fwd_count + (size_t)p->pp * p->m;
        st = ST_OK;
        for (int s = 0; s < p->pp && st == ST_OK; s++) {
            sm.slots[s] = malloc(sizeof(slot_state) * (size_t)(p->n_slots[s] > 0 ? p->n_slots[s] : 1));
            if (!sm.slots[s]) st = ST_NOMEM;
            for (int k = 0; sm.slots[s] && k < p->n_slots[s]; k++) sm.slots[s][k].mb = -1;
        }
        if (st == ST_OK) st = run(&sm);
    }
    if (st == ST_NOMEM) st_fail(st, "dist: out of memory verifying the schedule");
    for (int s = 0; sm.slots && s < p->pp; s++) free(sm.slots[s]);
    free(sm.slots);
    free(sm.msgs);
    free(sm.fwd_count);
    free(sm.pc);
    return st;
}

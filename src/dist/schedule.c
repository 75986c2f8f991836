/* dist/schedule — pipeline schedules as per-stage instruction lists, and a
 * simulator that proves a set of lists runs (no deadlock, messages paired,
 * slots never overwritten while live, in-flight bound kept). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist_internal.h"

const char *dist_op_name(dist_op op)
{
    static const char *names[] = {"RECV_ACT", "FWD", "SEND_ACT", "RECV_GRAD", "BWD", "SEND_GRAD"};
    return op <= DIST_SEND_GRAD ? names[op] : "?";
}

int dist_plan_bound(dist_schedule_kind kind, int pp, int m, int stage)
{
    if (kind == DIST_GPIPE) return m;
    return pp - stage < m ? pp - stage : m;
}

/* The global schedule: stage s's compute order as (forward?, micro-batch). */
static int compute_order(dist_schedule_kind kind, int pp, int m, int s, int *fwd, int *mb)
{
    int n = 0;
    if (kind == DIST_GPIPE) {
        for (int j = 0; j < m; j++) fwd[n] = 1, mb[n++] = j;
        for (int j = 0; j < m; j++) fwd[n] = 0, mb[n++] = j;
        return n;
    }
    int warm = dist_plan_bound(kind, pp, m, s) - (pp - s <= m ? 1 : 0);
    for (int j = 0; j < warm; j++) fwd[n] = 1, mb[n++] = j;
    for (int j = 0; j < m - warm; j++) {
        fwd[n] = 1, mb[n++] = warm + j;
        fwd[n] = 0, mb[n++] = j;
    }
    for (int j = m - warm; j < m; j++) fwd[n] = 0, mb[n++] = j;
    return n;
}

static void emit(dist_plan *p, int s, dist_op op, int mb, int slot, int peer, size_t count)
{
    int dir = op == DIST_RECV_GRAD || op == DIST_SEND_GRAD;
    int comm = op != DIST_FWD && op != DIST_BWD;
    p->instr[s][p->n_instr[s]++] = (dist_instr){.op = op, .mb = mb, .slot = slot, .peer = comm ? peer : -1,
                                                .tag = comm ? 2 * mb + dir : -1, .count = comm ? count : 0};
}

/* Expands stage s's compute order into instructions, giving each
 * micro-batch the lowest free slot from its forward to its backward. */
static void expand_stage(dist_plan *p, int s, const int *fwd, const int *mb, int n, size_t count, int *slot_of,
                         int *busy)
{
    int first = s == 0, last = s == p->pp - 1;
    for (int i = 0; i < n; i++) {
        int j = mb[i];
        if (fwd[i]) {
            int k = 0;
            while (busy[k]) k++;
            busy[k] = 1;
            slot_of[j] = k;
            if (k + 1 > p->n_slots[s]) p->n_slots[s] = k + 1;
            if (!first) emit(p, s, DIST_RECV_ACT, j, k, s - 1, count);
            emit(p, s, DIST_FWD, j, k, -1, count);
            if (!last) emit(p, s, DIST_SEND_ACT, j, k, s + 1, count);
        } else {
            int k = slot_of[j];
            if (!last) emit(p, s, DIST_RECV_GRAD, j, k, s + 1, count);
            emit(p, s, DIST_BWD, j, k, -1, count);
            if (!first) emit(p, s, DIST_SEND_GRAD, j, k, s - 1, count);
            busy[k] = 0;
        }
    }
}

status_t dist_plan_build(dist_plan *p, dist_schedule_kind kind, int pp, int m, size_t count)
{
    memset(p, 0, sizeof *p);
    FAIL_IF(pp < 1 || m < 1, ST_CONFIG, "dist: a schedule needs dist.pp >= 1 and train.micro_batches >= 1 (found %d, %d)",
            pp, m);
    p->kind = kind;
    p->pp = pp;
    p->m = m;
    p->n_instr = calloc((size_t)pp, sizeof(int));
    p->n_slots = calloc((size_t)pp, sizeof(int));
    p->instr = calloc((size_t)pp, sizeof(dist_instr *));
    int *work = malloc(sizeof(int) * (size_t)(6 * m));
    FAIL_IF(!p->n_instr || !p->n_slots || !p->instr || !work, ST_NOMEM, "dist: out of memory for the schedule");
    int *fwd = work, *mb = work + 2 * m, *slot_of = work + 4 * m, *busy = work + 5 * m;
    for (int s = 0; s < pp; s++) {
        p->instr[s] = malloc(sizeof(dist_instr) * (size_t)(6 * m));
        FAIL_IF(!p->instr[s], ST_NOMEM, "dist: out of memory for the schedule");
        memset(busy, 0, sizeof(int) * (size_t)m);
        int n = compute_order(kind, pp, m, s, fwd, mb);
        expand_stage(p, s, fwd, mb, n, count, slot_of, busy);
    }
    free(work);
    return ST_OK;
}

void dist_plan_free(dist_plan *p)
{
    for (int s = 0; p->instr && s < p->pp; s++) free(p->instr[s]);
    free(p->instr);
    free(p->n_instr);
    free(p->n_slots);
    memset(p, 0, sizeof *p);
}

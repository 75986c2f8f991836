/* dist/topology — layout checks, the layer partition and the communicators. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "dist/pgemm.h"
#include "model/model_tp.h"

status_t dist_parse_stages(dist_config *c, const char *text)
{
    c->n_stages = 0;
    const char *p = text;
    while (p && *p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        FAIL_IF(end == p || errno || v < 1 || v > 1000000, ST_CONFIG,
                "dist.stages = '%s': bad layer count at '%s' (expected positive integers separated by commas, "
                "e.g. 5,7)", text, p);
        FAIL_IF(c->n_stages == DIST_MAX_STAGES, ST_CONFIG, "dist.stages = '%s': more than %d stages", text,
                DIST_MAX_STAGES);
        c->stages[c->n_stages++] = (int)v;
        while (*end == ' ') end++;
        FAIL_IF(*end && *end != ',', ST_CONFIG, "dist.stages = '%s': unexpected '%c' (expected a comma)", text, *end);
        p = *end ? end + 1 : end;
    }
    return ST_OK;
}

status_t dist_partition(const dist_config *dc, const model_config *mc, int *bounds)
{
    return layout_partition(mc, dc->pp, dc->stages, dc->n_stages, dc->mask_prob > 0 ? dc->mask_prob : 0.15, bounds);
}

static status_t check_layout(const dist_config *dc, int world, int *dp, int *tp)
{
    *tp = dc->tp > 0 ? dc->tp : 1;
    FAIL_IF(dc->pp < 1, ST_CONFIG, "dist.pp = %d (expected >= 1)", dc->pp);
    int P, Q;
    if (dc->tp_mode == DIST_TP_2D) TRY(pgemm_grid_dims(*tp, &P, &Q));
    FAIL_IF(*tp == 1 && world % dc->pp != 0, ST_CONFIG,
            "dist.pp = %d does not divide the %d ranks of the job (expected ranks = dist.pp x dist.dp); "
            "change dist.pp or the rank count", dc->pp, world);
    FAIL_IF(world % (dc->pp * *tp) != 0, ST_CONFIG,
            "dist.pp x dist.tp = %d x %d does not divide the %d ranks of the job (expected ranks = dist.pp x "
            "dist.dp x dist.tp); change dist.pp, dist.tp or the rank count", dc->pp, *tp, world);
    *dp = dc->dp > 0 ? dc->dp : world / (dc->pp * *tp);
    FAIL_IF(*tp == 1 && *dp * dc->pp != world, ST_CONFIG,
            "dist.pp x dist.dp = %d x %d = %d but the job has %d ranks; set dist.dp = auto or launch %d ranks",
            dc->pp, *dp, dc->pp * *dp, world, dc->pp * *dp);
    FAIL_IF(*dp * dc->pp * *tp != world, ST_CONFIG,
            "dist.pp x dist.dp x dist.tp = %d x %d x %d = %d but the job has %d ranks; set dist.dp = auto or "
            "launch %d ranks", dc->pp, *dp, *tp, dc->pp * *dp * *tp, world, dc->pp * *dp * *tp);
    FAIL_IF(dc->zero < 0 || dc->zero > 2, ST_CONFIG, "dist.zero = %d (expected 0, 1 or 2)", dc->zero);
    return ST_OK;
}

static status_t split(MPI_Comm comm, int color, int key, MPI_Comm *out)
{
    FAIL_IF(MPI_Comm_split(comm, color, key, out) != MPI_SUCCESS, ST_MPI, "dist: MPI_Comm_split failed");
    return ST_OK;
}

status_t dist_layout_dp(const dist_config *dc, int world, int *dp)
{
    int tp;
    return check_layout(dc, world, dp, &tp);
}

status_t dist_topology_create(dist_topology *t, const dist_config *dc, const model_config *mc, MPI_Comm world)
{
    memset(t, 0, sizeof *t);
    t->comm = t->pipe = t->dp_comm = t->tied = t->tp_comm = MPI_COMM_NULL;
    MPI_Comm_size(world, &t->world);
    MPI_Comm_rank(world, &t->rank);
    TRY(check_layout(dc, t->world, &t->dp, &t->tp));
    TRY(model_tp_check(mc, t->tp));
    t->pp = dc->pp;
    TRY(dist_partition(dc, mc, t->bounds));
    t->tp_rank = t->rank % t->tp;
    t->stage = t->rank / t->tp % t->pp;
    t->replica = t->rank / t->tp / t->pp;
    t->layer_begin = t->bounds[t->stage];
    t->layer_end = t->bounds[t->stage + 1];
    FAIL_IF(MPI_Comm_dup(world, &t->comm) != MPI_SUCCESS, ST_MPI, "dist: MPI_Comm_dup failed");
    TRY(split(t->comm, t->replica * t->tp + t->tp_rank, t->stage, &t->pipe));
    TRY(split(t->comm, t->stage * t->tp + t->tp_rank, t->replica, &t->dp_comm));
    TRY(split(t->comm, t->replica * t->pp + t->stage, t->tp_rank, &t->tp_comm));
    int end = t->pp > 1 && (t->stage == 0 || t->stage == t->pp - 1);
    TRY(split(t->comm, end ? t->replica * t->tp + t->tp_rank : MPI_UNDEFINED, t->stage, &t->tied));
    return ST_OK;
}

void dist_topology_free(dist_topology *t)
{
    MPI_Comm *c[] = {&t->tied, &t->tp_comm, &t->dp_comm, &t->pipe, &t->comm};
    for (size_t i = 0; i < sizeof c / sizeof *c; i++)
        if (*c[i] != MPI_COMM_NULL) MPI_Comm_free(c[i]);
}

void dist_topology_describe(const dist_topology *t, char *buf, size_t n)
{
    size_t used = 0;
    if (n) buf[0] = '\0';
    for (int r = 0; r < t->world && used < n; r++) {
        int s = r / t->tp % t->pp;
        char tp[32] = "";
        if (t->tp > 1) snprintf(tp, sizeof tp, " tp %d/%d", r % t->tp, t->tp);
        used += (size_t)snprintf(buf + used, n - used, "rank %d: replica %d stage %d%s layers [%d, %d)%s%s\n", r,
                                 r / t->tp / t->pp, s, tp, t->bounds[s], t->bounds[s + 1],
                                 s == 0 ? " +embeddings" : "", s == t->pp - 1 ? " +heads" : "");
    }
}

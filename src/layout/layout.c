/* layout — which float lives on which rank (layout.h). */
#include <stdlib.h>
#include <string.h>

#include "layout/layout.h"
#include "model/model_tp.h"

/* ---- cost model ------------------------------------------------------------ */

double layout_block_flops(const model_config *mc)
{
    double C = mc->d_model, F = mc->d_ff, T = mc->seq_len;
    if (mc->family == MODEL_LLAMA) { /* q, o; k, v of the kv heads; gate, up, down: 3 x 2 flops per weight */
        double KV = (double)model_kv_heads(mc) * (C / mc->n_head);
        return 12.0 * C * C + 12.0 * C * KV + 18.0 * C * F + 6.0 * T * C;
    }
    return 24.0 * C * C + 12.0 * C * F + (mc->family == MODEL_GPT ? 6.0 : 12.0) * T * C;
}

double layout_embed_cost(const model_config *mc) { return 8.0 * mc->d_model / layout_block_flops(mc); }

double layout_head_cost(const model_config *mc, double mask_prob)
{
    double C = mc->d_model, V = mc->vocab_size;
    double f = model_causal(mc) ? 6.0 * C * V : mask_prob * (6.0 * C * V + 6.0 * C * C);
    return f / layout_block_flops(mc);
}

double layout_model_flops_per_token(const model_config *mc)
{
    double params = (double)model_full_n_params(mc) - (model_tied(mc) ? 0.0 : (double)mc->vocab_size * mc->d_model);
    return 6.0 * params + 12.0 * mc->n_layer * mc->d_model * (double)mc->seq_len;
}

/* ---- the pipeline's layers --------------------------------------------------- */

static double range_cost(const model_config *mc, double mask_prob, int a, int b)
{
    return (double)(b - a) + (a == 0 ? layout_embed_cost(mc) : 0.0) +
           (b == mc->n_layer ? layout_head_cost(mc, mask_prob) : 0.0);
}

/* Exact min-max contiguous split (L and pp are small): best[s][l] = the least
 * maximum stage cost of layers [0, l) over s stages. */
static status_t partition_by_cost(const model_config *mc, int pp, double mask_prob, int *bounds)
{
    int L = mc->n_layer;
    double *best = malloc(sizeof(double) * (size_t)(pp + 1) * (L + 1));
    int *cut = malloc(sizeof(int) * (size_t)(pp + 1) * (L + 1));
    if (!best || !cut) {
        free(best);
        free(cut);
        return st_fail(ST_NOMEM, "layout: out of memory partitioning %d layers", L);
    }
    for (int l = 0; l <= L; l++) best[l] = l == 0 ? 0.0 : 1e300;
    for (int s = 1; s <= pp; s++)
        for (int l = 0; l <= L; l++) {
            double b = 1e300;
            int c = -1;
            for (int k = s - 1; k < l; k++) {
                double prev = best[(s - 1) * (L + 1) + k], here = range_cost(mc, mask_prob, k, l);
                double v = prev > here ? prev : here;
                if (v < b - 1e-12) b = v, c = k;
            }
            best[s * (L + 1) + l] = b;
            cut[s * (L + 1) + l] = c;
        }
    bounds[pp] = L;
    for (int s = pp; s >= 1; s--) bounds[s - 1] = cut[s * (L + 1) + bounds[s]];
    free(best);
    free(cut);
    return ST_OK;
}

status_t layout_partition(const model_config *mc, int pp, const int *stages, int n_stages, double mask_prob,
                          int *bounds)
{
    int L = mc->n_layer;
    FAIL_IF(pp < 1 || pp > LAYOUT_MAX_STAGES, ST_CONFIG, "dist.pp = %d is outside [1, %d]", pp, LAYOUT_MAX_STAGES);
    FAIL_IF(pp > L, ST_CONFIG,
            "dist.pp = %d exceeds model.n_layer = %d (expected at most one stage per layer); lower dist.pp", pp, L);
    if (n_stages == 0) return partition_by_cost(mc, pp, mask_prob, bounds);
    FAIL_IF(n_stages != pp, ST_CONFIG, "dist.stages lists %d stage%s but dist.pp = %d; give one layer count per stage",
            n_stages, n_stages == 1 ? "" : "s", pp);
    bounds[0] = 0;
    for (int s = 0; s < pp; s++) bounds[s + 1] = bounds[s] + stages[s];
    FAIL_IF(bounds[pp] != L, ST_CONFIG,
            "dist.stages sums to %d layers (expected model.n_layer = %d); fix the layer counts", bounds[pp], L);
    return ST_OK;
}

/* ---- a rank's part ------------------------------------------------------------- */

void layout_shard(size_t n, int parts, int r, size_t *lo, size_t *hi)
{
    size_t s = (n + (size_t)parts - 1) / (size_t)parts;
    *lo = (size_t)r * s < n ? (size_t)r * s : n;
    *hi = (size_t)(r + 1) * s < n ? (size_t)(r + 1) * s : n;
}

static status_t plan_buckets(const layout_spec *s, layout_rank *r)
{
    size_t bucket = s->bucket_floats ? s->bucket_floats : 1;
    size_t cuts[4] = {0, r->tied_off, r->tied_off + r->tied_n, r->n}, pieces[3] = {0, 0, 0}, total = 0;
    for (int k = 0; k < 3; k++) {
        size_t len = cuts[k + 1] - cuts[k];
        pieces[k] = len ? (len + bucket - 1) / bucket : 0;
        total += pieces[k];
    }
    if (!(s->zero == 2 && s->dp > 1)) { /* one bucket of everything */
        cuts[1] = r->n;
        pieces[0] = total = 1, pieces[1] = pieces[2] = 0;
    }
    r->bucket_lo = calloc(total + 1, sizeof(size_t));
    FAIL_IF(!r->bucket_lo, ST_NOMEM, "layout: out of memory for %zu gradient buckets", total);
    size_t b = 0;
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < pieces[k]; i++) /* equal pieces, none empty */
            r->bucket_lo[b++] = cuts[k] + (cuts[k + 1] - cuts[k]) * i / pieces[k];
    r->bucket_lo[total] = r->n;
    r->n_buckets = (int)total;
    return ST_OK;
}

/* The global runs of floats [a, z) of table t (its tensors' global offsets),
 * leaving out the last stage's copy of the tied embedding; runs contiguous
 * in both orders merge. */
static status_t add_pieces(layout_rank *r, const model_tensor *t, int n, size_t a, size_t z)
{
    for (int i = 0; i < n; i++) {
        size_t x = t[i].offset > a ? t[i].offset : a;
        size_t y = t[i].offset + t[i].numel < z ? t[i].offset + t[i].numel : z;
        if (t[i].tied_copy || y <= x) continue;
        uint64_t gx = t[i].global_offset + (x - t[i].offset);
        layout_piece *p = r->n_pieces ? &r->pieces[r->n_pieces - 1] : NULL;
        if (p && p->end == gx && p->local + (p->end - p->begin) == x) {
            p->end += y - x;
            continue;
        }
        FAIL_IF(r->n_pieces == LAYOUT_MAX_PIECES, ST_ERROR,
                "layout: stage %d's part [%zu, %zu) is not %d contiguous runs of the global order (at %s)",
                r->stage, a, z, LAYOUT_MAX_PIECES, t[i].name);
        r->pieces[r->n_pieces++] = (layout_piece){gx, gx + (y - x), x};
    }
    return ST_OK;
}

static status_t tables(const layout_spec *s, layout_rank *r)
{
    const model_config *c = &s->model;
    model_tp tp = {.size = s->tp, .rank = r->tp_rank, .grid_p = s->grid_p, .grid_q = s->grid_q, .block = s->block};
    model_tensor *t = NULL, *full = NULL;
    int n = 0, nf = 0;
    status_t st = model_stage_table(c, r->layer_begin, r->layer_end, r->first, r->last, s->tp > 1 ? &tp : NULL, &t,
                                    &n, &r->n);
    if (st == ST_OK) st = model_stage_table(c, r->layer_begin, r->layer_end, r->first, r->last, NULL, &full, &nf,
                                            &r->full_n);
    for (int i = 0; st == ST_OK && i < n; i++)
        if (t[i].tied && s->pp > 1) r->tied_off = t[i].offset, r->tied_n = t[i].numel;
    layout_shard(r->n, s->dp, r->replica, &r->lo, &r->hi);
    int sharded = s->zero > 0 && s->dp > 1;
    r->ulo = sharded ? r->lo : 0;
    r->uhi = sharded ? r->hi : r->n;
    if (st == ST_OK && s->tp == 1) st = add_pieces(r, t, n, r->lo, r->hi);
    if (s->tp > 1) layout_shard(r->full_n, s->dp * s->tp, r->replica * s->tp + r->tp_rank, &r->part_lo, &r->part_hi);
    if (st == ST_OK && s->tp > 1) st = add_pieces(r, full, nf, r->part_lo, r->part_hi);
    free(t);
    free(full);
    return st;
}

status_t layout_rank_build(const layout_spec *s, int rank, layout_rank *out)
{
    memset(out, 0, sizeof *out);
    FAIL_IF(s->pp < 1 || s->dp < 1 || s->tp < 1 || s->pp > LAYOUT_MAX_STAGES || rank < 0 ||
            rank >= s->pp * s->dp * s->tp, ST_CONFIG, "layout: rank %d of pp %d x dp %d x tp %d", rank, s->pp,
            s->dp, s->tp);
    out->tp_rank = rank % s->tp;
    out->stage = rank / s->tp % s->pp;
    out->replica = rank / s->tp / s->pp;
    out->layer_begin = s->bounds[out->stage];
    out->layer_end = s->bounds[out->stage + 1];
    out->first = out->stage == 0;
    out->last = out->stage == s->pp - 1;
    status_t st = tables(s, out);
    if (st == ST_OK) st = plan_buckets(s, out);
    if (st != ST_OK) layout_rank_free(out);
    return st;
}

void layout_rank_free(layout_rank *r)
{
    free(r->bucket_lo);
    r->bucket_lo = NULL;
    r->n_buckets = 0;
}

/* layout/ — which float lives on which rank, for every small pp x dp x tp x
 * zero shape of both families: the stage tables point into the full table,
 * the dp shards tile each stage, every float of the model is saved by
 * exactly one rank, buckets cut where ZeRO 2 needs them, the tied copies are
 * found, and the partition is the min-max optimum of its cost model. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "layout/layout.h"
#include "model/model_tp.h"

static model_config family(model_family f, int L, int sinusoidal)
{
    return (model_config){.family = f, .n_layer = L, .d_model = 24, .n_head = 4, .d_ff = 40, .seq_len = 8,
                          .max_positions = 16, .vocab_size = 101, .sinusoidal = f != MODEL_LLAMA && sinusoidal,
                          .pre_ln = f != MODEL_BERT, .n_kv_head = 2, .norm_eps = 1e-5f, .rope_theta = 1e4f};
}

Test(layout, shards_tile_a_buffer_in_rank_order)
{
    for (size_t n = 0; n <= 1001; n += 143)
        for (int parts = 1; parts <= 7; parts++) {
            size_t next = 0, s = (n + (size_t)parts - 1) / (size_t)parts;
            for (int r = 0; r < parts; r++) {
                size_t lo, hi;
                layout_shard(n, parts, r, &lo, &hi);
                cr_assert_eq(lo, next, "n %zu parts %d rank %d starts at %zu", n, parts, r, lo);
                cr_assert(hi - lo == s || (hi == n && hi - lo <= s), "n %zu parts %d rank %d: %zu floats", n, parts,
                          r, hi - lo);
                next = hi;
            }
            cr_assert_eq(next, n);
        }
}

/* Every tensor of a stage table names its place in the full table. */
static void check_globals(const model_config *c, int lb, int le, int first, int last, const model_tp *tp)
{
    model_tensor *full, *t;
    int nf, n;
    size_t total;
    cr_assert_eq(model_full_table(c, &full, &nf), ST_OK);
    cr_assert_eq(model_stage_table(c, lb, le, first, last, tp, &t, &n, &total), ST_OK, "%s", st_message());
    int copies = 0;
    for (int i = 0; i < n; i++) {
        cr_assert(t[i].global >= 0 && t[i].global < nf, "%s: global %d", t[i].name, t[i].global);
        const model_tensor *g = &full[t[i].global];
        cr_assert_str_eq(g->name, t[i].name);
        cr_assert_eq(t[i].global_offset, g->offset, "%s", t[i].name);
        cr_assert_eq(t[i].tied, t[i].global == 0, "%s", t[i].name);
        cr_assert_eq(t[i].layer >= 0, strstr(t[i].name, ".h.") || strstr(t[i].name, ".layer."), "%s", t[i].name);
        copies += t[i].tied_copy;
        if (!tp) cr_assert_eq(t[i].numel, g->numel, "%s", t[i].name);
    }
    cr_assert_eq(copies, !first && last, "[%d, %d) first %d last %d", lb, le, first, last);
    free(full);
    free(t);
}

Test(layout, stage_tables_name_their_place_in_the_full_table)
{
    for (int f = 0; f < 2; f++)
        for (int sin = 0; sin < 2; sin++) {
            model_config c = family(f ? MODEL_BERT : MODEL_GPT, 3, sin);
            int ranges[][4] = {{0, 3, 1, 1}, {0, 1, 1, 0}, {1, 2, 0, 0}, {2, 3, 0, 1}, {1, 3, 0, 1}};
            for (int r = 0; r < 5; r++) {
                check_globals(&c, ranges[r][0], ranges[r][1], ranges[r][2], ranges[r][3], NULL);
                for (int k = 0; k < 2; k++) {
                    model_tp tp = {.size = 2, .rank = k};
                    check_globals(&c, ranges[r][0], ranges[r][1], ranges[r][2], ranges[r][3], &tp);
                }
                for (int k = 0; k < 4; k++) {
                    model_tp tp = {.size = 4, .rank = k, .grid_p = 2, .grid_q = 2, .block = 8};
                    check_globals(&c, ranges[r][0], ranges[r][1], ranges[r][2], ranges[r][3], &tp);
                }
            }
        }
}

typedef struct span {
    uint64_t begin, end;
} span;

static int by_begin(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

/* One whole job: every rank's layout checked on its own and against the others. */
static void check_job(const model_config *c, int pp, int dp, int tp, int zero)
{
    layout_spec s = {.model = *c, .pp = pp, .dp = dp, .tp = tp, .zero = zero, .bucket_floats = 300};
    cr_assert_eq(layout_partition(c, pp, NULL, 0, 0.15, s.bounds), ST_OK, "%s", st_message());
    int world = pp * dp * tp, n_spans = 0;
    span *spans = calloc((size_t)world * LAYOUT_MAX_PIECES, sizeof *spans);
    layout_rank *all = calloc((size_t)world, sizeof *all);
    for (int rank = 0; rank < world; rank++) {
        layout_rank *r = &all[rank];
        cr_assert_eq(layout_rank_build(&s, rank, r), ST_OK, "%s", st_message());
        cr_assert_eq(rank, (r->replica * pp + r->stage) * tp + r->tp_rank);
        cr_assert_eq(r->layer_begin, s.bounds[r->stage]);
        cr_assert(r->lo <= r->hi && r->hi <= r->n);
        int sharded = zero > 0 && dp > 1;
        cr_assert(sharded ? r->ulo == r->lo && r->uhi == r->hi : r->ulo == 0 && r->uhi == r->n);
        /* the tied embedding: at both ends of a pipeline, the stage's word embedding
           (an untied Llama has none) */
        model_tp mtp = {.size = tp, .rank = r->tp_rank};
        model_tensor *t;
        int n;
        size_t total;
        cr_assert_eq(model_stage_table(c, r->layer_begin, r->layer_end, r->first, r->last, &mtp, &t, &n, &total),
                     ST_OK);
        cr_assert_eq(total, r->n);
        if (pp > 1 && (r->first || r->last) && model_tied(c)) {
            const model_tensor *w = r->first ? &t[0] : NULL;
            for (int i = 0; !w && i < n; i++)
                if (t[i].tied_copy) w = &t[i];
            cr_assert(w && w->tied);
            cr_assert(r->tied_off == w->offset && r->tied_n == w->numel, "stage %d tied at %zu+%zu", r->stage,
                      r->tied_off, r->tied_n);
        } else {
            cr_assert_eq(r->tied_n, 0);
        }
        /* the buckets: increasing from 0 to n; ZeRO 2 cuts at the tied embedding */
        cr_assert(r->n_buckets >= 1 && r->bucket_lo[0] == 0 && r->bucket_lo[r->n_buckets] == r->n);
        for (int b = 0; b < r->n_buckets; b++) cr_assert_lt(r->bucket_lo[b], r->bucket_lo[b + 1]);
        if (zero == 2 && dp > 1) {
            int cut_lo = r->tied_off == 0, cut_hi = r->tied_off + r->tied_n == r->n;
            for (int b = 0; b <= r->n_buckets; b++) {
                cut_lo |= r->bucket_lo[b] == r->tied_off;
                cut_hi |= r->bucket_lo[b] == r->tied_off + r->tied_n;
                if (b < r->n_buckets) cr_assert_leq(r->bucket_lo[b + 1] - r->bucket_lo[b], s.bucket_floats);
            }
            cr_assert(cut_lo && cut_hi, "stage %d: no bucket cut at the tied embedding", r->stage);
        } else {
            cr_assert_eq(r->n_buckets, 1);
        }
        /* the pieces: inside the buffer saved, each a run of the same floats in both orders */
        size_t limit = tp == 1 ? r->n : r->full_n;
        model_tensor *u = t;
        if (tp > 1) {
            free(t);
            cr_assert_eq(model_stage_table(c, r->layer_begin, r->layer_end, r->first, r->last, NULL, &u, &n, &total),
                         ST_OK);
        }
        for (int k = 0; k < r->n_pieces; k++) {
            const layout_piece *p = &r->pieces[k];
            cr_assert(p->begin < p->end && p->local + (p->end - p->begin) <= limit);
            if (tp == 1) cr_assert(p->local >= r->lo && p->local + (p->end - p->begin) <= r->hi);
            else cr_assert(p->local >= r->part_lo && p->local + (p->end - p->begin) <= r->part_hi);
            for (int i = 0; i < n; i++) { /* where a piece overlaps a tensor, offsets agree */
                size_t x = u[i].offset > p->local ? u[i].offset : p->local;
                size_t y = u[i].offset + u[i].numel;
                if (y > p->local + (p->end - p->begin)) y = p->local + (p->end - p->begin);
                if (y <= x) continue;
                cr_assert(!u[i].tied_copy, "rank %d saves the tied copy", rank);
                cr_assert_eq(u[i].global_offset + (x - u[i].offset), p->begin + (x - p->local), "rank %d %s", rank,
                             u[i].name);
            }
            spans[n_spans++] = (span){p->begin, p->end};
        }
        free(u);
    }
    /* the replicas' shards tile each stage */
    for (int rank = 0; rank < world; rank++) {
        const layout_rank *r = &all[rank];
        size_t lo = 0;
        for (int q = 0; q < r->replica; q++) {
            const layout_rank *o = &all[(q * pp + r->stage) * tp + r->tp_rank];
            cr_assert_eq(o->n, r->n);
            lo = o->hi;
        }
        cr_assert_eq(r->lo, lo, "rank %d's shard starts at %zu, after %zu", rank, r->lo, lo);
        if (r->replica == dp - 1) cr_assert_eq(r->hi, r->n);
    }
    /* every float of the model saved once */
    qsort(spans, (size_t)n_spans, sizeof *spans, by_begin);
    uint64_t next = 0;
    for (int i = 0; i < n_spans; i++) {
        cr_assert_eq(spans[i].begin, next, "pp %d dp %d tp %d zero %d: a gap or overlap at %llu", pp, dp, tp, zero,
                     (unsigned long long)next);
        next = spans[i].end;
    }
    cr_assert_eq(next, model_full_n_params(c), "pp %d dp %d tp %d zero %d", pp, dp, tp, zero);
    for (int rank = 0; rank < world; rank++) layout_rank_free(&all[rank]);
    free(all);
    free(spans);
}

Test(layout, every_float_has_one_owner_on_every_small_layout)
{
    static const model_family families[] = {MODEL_GPT, MODEL_BERT, MODEL_LLAMA};
    for (int f = 0; f < 3; f++)
        for (int pp = 1; pp <= 3; pp++)
            for (int dp = 1; dp <= 3; dp++)
                for (int tp = 1; tp <= 2; tp++)
                    for (int zero = 0; zero <= 2; zero++) {
                        model_config c = family(families[f], 3, (pp + dp) % 2);
                        check_job(&c, pp, dp, tp, zero);
                    }
}

/* The least maximum stage cost over every split of L layers into pp stages. */
static double best_cost(const model_config *c, int pp, double mask, int from, int stages_left)
{
    int L = c->n_layer;
    double best = 1e300;
    for (int to = from + 1; to <= L - (stages_left - 1); to++) {
        double here = (double)(to - from) + (from == 0 ? layout_embed_cost(c) : 0.0) +
                      (to == L ? layout_head_cost(c, mask) : 0.0);
        double rest = stages_left == 1 ? (to == L ? 0.0 : 1e300) : best_cost(c, pp, mask, to, stages_left - 1);
        double v = here > rest ? here : rest;
        if (v < best) best = v;
    }
    return best;
}

Test(layout, partition_is_the_min_max_split_of_its_cost_model)
{
    for (int f = 0; f < 2; f++)
        for (int L = 1; L <= 7; L++)
            for (int pp = 1; pp <= L; pp++)
                for (int v = 0; v < 3; v++) {
                    model_config c = family(f ? MODEL_BERT : MODEL_GPT, L, 0);
                    c.d_model = 64, c.d_ff = 256, c.vocab_size = (int[]){100, 3000, 30000}[v];
                    double mask = f ? 0.15 : 0.0;
                    int b[LAYOUT_MAX_STAGES + 1];
                    cr_assert_eq(layout_partition(&c, pp, NULL, 0, mask, b), ST_OK);
                    double worst = 0.0;
                    for (int s = 0; s < pp; s++) {
                        cr_assert_lt(b[s], b[s + 1]);
                        double cost = (double)(b[s + 1] - b[s]) + (s == 0 ? layout_embed_cost(&c) : 0.0) +
                                      (s == pp - 1 ? layout_head_cost(&c, mask) : 0.0);
                        if (cost > worst) worst = cost;
                    }
                    cr_assert(b[0] == 0 && b[pp] == L);
                    cr_assert_float_eq(worst, best_cost(&c, pp, mask, 0, pp), 1e-9, "L %d pp %d V %d", L, pp,
                                       c.vocab_size);
                }
}

Test(layout, the_mask_rate_weighs_berts_head)
{
    model_config c = family(MODEL_BERT, 8, 0);
    c.d_model = 64, c.d_ff = 256, c.vocab_size = 30000;
    int few[LAYOUT_MAX_STAGES + 1], many[LAYOUT_MAX_STAGES + 1];
    cr_assert_eq(layout_partition(&c, 2, NULL, 0, 0.05, few), ST_OK);
    cr_assert_eq(layout_partition(&c, 2, NULL, 0, 0.5, many), ST_OK);
    cr_assert_lt(many[1] - many[0], 8);
    cr_assert_gt(many[1], few[1], "more masked rows should move layers off the last stage: %d vs %d", many[1], few[1]);
    cr_assert_float_eq(layout_head_cost(&c, 0.5), 0.5 * (6.0 * 64 * 30000 + 6.0 * 64 * 64) / layout_block_flops(&c),
                       1e-12);
}

Test(layout, explicit_stages_and_refusals)
{
    model_config c = family(MODEL_GPT, 12, 0);
    int b[LAYOUT_MAX_STAGES + 1];
    cr_assert_eq(layout_partition(&c, 2, (int[]){5, 7}, 2, 0.15, b), ST_OK);
    cr_assert(b[0] == 0 && b[1] == 5 && b[2] == 12);
    cr_assert_eq(layout_partition(&c, 2, (int[]){5, 6}, 2, 0.15, b), ST_CONFIG);
    cr_assert(strstr(st_message(), "dist.stages sums to 11"), "%s", st_message());
    cr_assert_eq(layout_partition(&c, 13, NULL, 0, 0.15, b), ST_CONFIG);
    cr_assert(strstr(st_message(), "dist.pp = 13 exceeds model.n_layer = 12"), "%s", st_message());
    layout_spec s = {.model = c, .pp = 2, .dp = 2, .tp = 1, .bucket_floats = 100};
    cr_assert_eq(layout_partition(&c, 2, NULL, 0, 0.15, s.bounds), ST_OK);
    layout_rank r;
    cr_assert_eq(layout_rank_build(&s, 4, &r), ST_CONFIG);
    cr_assert(strstr(st_message(), "rank 4"), "%s", st_message());
    cr_assert_eq(layout_rank_build(&s, -1, &r), ST_CONFIG);
}

Test(layout, model_flops_count_every_weight_and_attention)
{
    model_config c = family(MODEL_GPT, 12, 0);
    c.d_model = 768, c.d_ff = 3072, c.vocab_size = 50257, c.max_positions = 1024, c.seq_len = 1024, c.n_head = 12;
    double params = (double)model_full_n_params(&c);
    cr_assert_float_eq(params, 124439808.0, 0.5); /* GPT-2 small */
    cr_assert_float_eq(layout_model_flops_per_token(&c), 6.0 * params + 12.0 * 12 * 768 * 1024, 1.0);
    cr_assert_float_eq(layout_block_flops(&c), 24.0 * 768 * 768 + 12.0 * 768 * 3072 + 6.0 * 1024 * 768, 1.0);
}

/* Llama's untied input embedding is a lookup: its V C parameters are not
 * matmul FLOPs; the untied lm_head's are (and a tied Llama counts V C once). */
Test(layout, model_flops_leave_out_an_untied_input_embedding)
{
    model_config c = family(MODEL_LLAMA, 4, 0);
    c.tie_embeddings = 0;
    double untied = (double)model_full_n_params(&c), V = c.vocab_size, C = c.d_model;
    double attention = 12.0 * c.n_layer * C * c.seq_len;
    cr_assert_float_eq(layout_model_flops_per_token(&c), 6.0 * (untied - V * C) + attention, 1.0);
    c.tie_embeddings = 1;
    double tied = (double)model_full_n_params(&c);
    cr_assert_float_eq(tied, untied - V * C, 0.5, "a tied Llama stores the embedding once");
    cr_assert_float_eq(layout_model_flops_per_token(&c), 6.0 * tied + attention, 1.0);
}

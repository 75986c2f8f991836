/* Tests of data/stream's blends (data.path = "0.7 A 0.3 B"): the greedy
 * blending bound at every sample and the ±3% proportions over thousands of
 * samples, the same global stream on dp = 1, 2, 4, exact resume from a cursor
 * on another layout, one weight = the plain dataset, each dataset's own
 * epochs, and the refusals (bad syntax, different vocabularies). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "data/stream.h"
#include "stream_fixture.h"

#define V 1000
#define T 32

static char dirs[4][4200];
static char path[20000];

/* A, B, C share one vocabulary (V tokens) and differ in content and size
 * (C is small, so it wraps often); D has another vocabulary. */
static void setup(void)
{
    const int docs[4] = {200, 120, 15, 50};
    for (int i = 0; i < 4; i++) {
        synth_spec sp = {.vocab_size = i == 3 ? V + 24 : V, .n_shards = 2, .docs_per_shard = docs[i], .max_sents = 8,
                         .max_len = 30, .seed = 11 + (uint64_t)i};
        stream_fixture_dataset(dirs[i], sizeof dirs[i], "blend", &sp);
    }
}

static void cleanup(void)
{
    for (int i = 0; i < 4; i++) synth_rmdir(dirs[i]);
}

static stream_spec spec_of(const char *p, int rank, int size, int chunk)
{
    return (stream_spec){.path = p, .objective = STREAM_MLM, .seq_len = T, .mask_prob = 0.15, .nsp = 0, .seed = 42,
                         .dp_rank = rank, .dp_size = size, .chunk = chunk, .vocab_size = V + 24, .blend = 1};
}

static const char *blend3(void)
{
    snprintf(path, sizeof path, "0.5 %s 3 %s 1.5 %s", dirs[0], dirs[1], dirs[2]); /* 0.1, 0.6, 0.3 */
    return path;
}

/* The bound of stream.h at every sample g: -(D-1)^2/D <= c_d(g) - w_d g <= (D-1)/D,
 * hence the shares of 3,000 samples within ±0.2% (the issue asks ±3%). */
static void check_bound(const char *p, int D, const double *w)
{
    const int chunk = 10, steps = 300;
    stream *s = stream_fixture_open(spec_of(p, 0, 1, chunk));
    batch b;
    batch_alloc(&b, chunk, T);
    uint64_t c[STREAM_BLEND_MAX] = {0}, g = 0;
    double lo = -(double)(D - 1) * (D - 1) / D - 1e-6, hi = (double)(D - 1) / D + 1e-6;
    for (int step = 0; step < steps; step++) {
        stream_fixture_next(s, &b);
        for (int r = 0; r < chunk; r++, g++) {
            stream_origin o;
            stream_last_origin(s, r, &o);
            cr_assert(o.source >= 0 && o.source < D);
            c[o.source]++;
            for (int d = 0; d < D; d++) {
                double dev = (double)c[d] - w[d] * (double)(g + 1);
                cr_assert(dev >= lo && dev <= hi, "sample %llu: dataset %d has %llu samples, %g from its share %g "
                          "(bound [%g, %g])", (unsigned long long)g, d, (unsigned long long)c[d], dev,
                          w[d] * (double)(g + 1), lo, hi);
            }
        }
    }
    uint64_t drawn[STREAM_BLEND_MAX];
    stream_drawn(s, drawn);
    for (int d = 0; d < D; d++) {
        cr_assert_eq(drawn[d], c[d], "stream_drawn of dataset %d", d);
        cr_assert(fabs((double)c[d] / (double)g - w[d]) <= 0.03, "dataset %d: share %g, weight %g", d,
                  (double)c[d] / (double)g, w[d]);
    }
    stream_close(s);
    batch_free(&b);
}

Test(blend, proportions_stay_within_the_greedy_bound_at_every_sample, .init = setup, .fini = cleanup)
{
    char two[10000];
    snprintf(two, sizeof two, "0.7 %s 0.3 %s", dirs[0], dirs[1]);
    check_bound(two, 2, (double[]){0.7, 0.3});
    check_bound(blend3(), 3, (double[]){0.1, 0.6, 0.3});
}

/* Each dataset keeps its own sample sequence: the k-th sample drawn from d is
 * sample k of d's stream, wrapping into new epochs on its own (C, small). */
Test(blend, each_dataset_reads_its_own_stream_and_wraps_on_its_own, .init = setup, .fini = cleanup)
{
    stream *s = stream_fixture_open(spec_of(blend3(), 0, 1, 8));
    stream *plain = stream_fixture_open(spec_of(dirs[0], 0, 1, 1)); /* dataset 0 alone, with the blend's seed */
    batch b, one;
    batch_alloc(&b, 8, T);
    batch_alloc(&one, 1, T);
    uint64_t next_k[3] = {0}, wraps[3] = {0}, last_epoch[3] = {0};
    for (int step = 0; step < 400; step++) {
        stream_fixture_next(s, &b);
        for (int r = 0; r < 8; r++) {
            stream_origin o;
            stream_last_origin(s, r, &o);
            if (o.source == 0) {
                stream_fixture_next(plain, &one);
                cr_assert(stream_fixture_rows_equal(&b, r, &one, 0), "step %d row %d: not the next sample of dataset 0's stream",
                          step, r);
            }
            if (o.epoch != last_epoch[o.source]) {
                cr_assert_eq(o.epoch, last_epoch[o.source] + 1, "dataset %d jumped epochs", o.source);
                cr_assert_eq(o.sample, 0, "dataset %d's new epoch starts at sample %llu", o.source,
                             (unsigned long long)o.sample);
                wraps[o.source]++, last_epoch[o.source] = o.epoch;
            } else {
                cr_assert_eq(o.sample, next_k[o.source], "dataset %d: sample %llu after %llu", o.source,
                             (unsigned long long)o.sample, (unsigned long long)next_k[o.source]);
            }
            next_k[o.source] = o.sample + 1;
        }
    }
    uint64_t e[STREAM_BLEND_MAX];
    cr_assert_eq(stream_epochs(s, e), ST_OK, "%s", st_message());
    cr_assert_eq(stream_n_sources(s), 3);
    for (int d = 0; d < 3; d++) cr_assert(e[d] >= last_epoch[d] && e[d] <= last_epoch[d] + 1, "epoch of %d", d);
    cr_assert(wraps[2] > wraps[1] && wraps[2] >= 2, "the small dataset wrapped %llu times, the large one %llu",
              (unsigned long long)wraps[2], (unsigned long long)wraps[1]);
    stream_close(s);
    stream_close(plain);
    batch_free(&b);
    batch_free(&one);
}

/* dp = 2 and 4 (chunk c each) give the dp = 1 stream of chunk c x dp. */
Test(blend, dp_1_2_4_give_the_same_global_stream, .init = setup, .fini = cleanup)
{
    const int c = 3;
    for (int dp = 2; dp <= 4; dp *= 2) {
        stream *ranks[4], *one = stream_fixture_open(spec_of(blend3(), 0, 1, c * dp));
        batch bb[4], ob;
        batch_alloc(&ob, c * dp, T);
        for (int r = 0; r < dp; r++) ranks[r] = stream_fixture_open(spec_of(blend3(), r, dp, c)), batch_alloc(&bb[r], c, T);
        for (int step = 0; step < 300; step++) {
            stream_fixture_next(one, &ob);
            for (int r = 0; r < dp; r++) {
                stream_fixture_next(ranks[r], &bb[r]);
                for (int i = 0; i < c; i++)
                    cr_assert(stream_fixture_rows_equal(&ob, r * c + i, &bb[r], i), "dp %d step %d rank %d row %d differs", dp, step,
                              r, i);
            }
        }
        for (int r = 0; r < dp; r++) stream_close(ranks[r]), batch_free(&bb[r]);
        stream_close(one);
        batch_free(&ob);
    }
}

/* k steps at dp = 2, the cursor of rank 0, then dp = 1 (and dp = 4) from it:
 * the same samples as an uninterrupted dp = 1 stream. */
Test(blend, cursor_resume_on_another_layout_continues_exactly, .init = setup, .fini = cleanup)
{
    const int c = 4, k = 137;
    stream *a0 = stream_fixture_open(spec_of(blend3(), 0, 2, c)), *a1 = stream_fixture_open(spec_of(blend3(), 1, 2, c));
    stream *ref = stream_fixture_open(spec_of(blend3(), 0, 1, 2 * c));
    batch b4, b8, r8;
    batch_alloc(&b4, c, T), batch_alloc(&b8, 2 * c, T), batch_alloc(&r8, 2 * c, T);
    for (int i = 0; i < k; i++) stream_fixture_next(a0, &b4), stream_fixture_next(a1, &b4), stream_fixture_next(ref, &r8);
    stream_cursor cur, cur1;
    uint64_t e[STREAM_BLEND_MAX];
    cr_assert_eq(stream_epochs(a0, e), ST_OK, "%s", st_message()); /* as rank 0 of a run: positions carried over epochs */
    stream_cursor_get(a0, &cur);
    stream_cursor_get(a1, &cur1);
    cr_assert_eq(cur.n_sources, 3);
    cr_assert(cur.source[2].epoch >= 1, "the small dataset has wrapped (its position is not its count)");
    for (int d = 0; d < 3; d++) cr_assert_eq(cur.source[d].drawn, cur1.source[d].drawn, "ranks disagree on %d", d);
    cr_assert_eq(e[2], cur.source[2].epoch);
    stream *b = stream_fixture_open(spec_of(blend3(), 0, 1, 2 * c));
    cr_assert_eq(stream_cursor_set(b, &cur), ST_OK, "%s", st_message());
    stream *q[4];
    batch qb[4];
    for (int r = 0; r < 4; r++) {
        q[r] = stream_fixture_open(spec_of(blend3(), r, 4, c / 2)), batch_alloc(&qb[r], c / 2, T);
        cr_assert_eq(stream_cursor_set(q[r], &cur), ST_OK, "%s", st_message());
    }
    for (int i = 0; i < 300; i++) {
        stream_fixture_next(ref, &r8);
        stream_fixture_next(b, &b8);
        for (int r = 0; r < 2 * c; r++) cr_assert(stream_fixture_rows_equal(&r8, r, &b8, r), "step %d row %d differs after resume", i, r);
        for (int r = 0; r < 4; r++) {
            stream_fixture_next(q[r], &qb[r]);
            for (int j = 0; j < c / 2; j++)
                cr_assert(stream_fixture_rows_equal(&r8, r * (c / 2) + j, &qb[r], j), "dp 4: step %d rank %d row %d differs", i, r, j);
        }
    }
    stream_cursor one_cursor;
    stream_cursor_get(ref, &one_cursor);
    stream *plain = stream_fixture_open((stream_spec){.path = dirs[0], .objective = STREAM_MLM, .seq_len = T,
                                              .mask_prob = 0.15, .seed = 42, .dp_rank = 0, .dp_size = 1,
                                              .chunk = 2 * c, .vocab_size = V + 24});
    cr_assert_eq(stream_cursor_set(plain, &one_cursor), ST_CONFIG, "a blend's cursor set on one dataset");
    cr_assert(strstr(st_message(), "positions of 3 datasets"), "%s", st_message());
    for (int r = 0; r < 4; r++) stream_close(q[r]), batch_free(&qb[r]);
    stream_close(plain), stream_close(a0), stream_close(a1), stream_close(ref), stream_close(b);
    batch_free(&b4), batch_free(&b8), batch_free(&r8);
}

/* "1 A" is A: the same samples as the plain path (the first dataset keeps the seed). */
Test(blend, one_weighted_dataset_is_the_plain_dataset, .init = setup, .fini = cleanup)
{
    char one[5000];
    snprintf(one, sizeof one, "1 %s", dirs[0]);
    stream *a = stream_fixture_open(spec_of(one, 0, 1, 8)), *b = stream_fixture_open(spec_of(dirs[0], 0, 1, 8));
    cr_assert_eq(stream_n_sources(a), 1);
    batch x, y;
    batch_alloc(&x, 8, T), batch_alloc(&y, 8, T);
    for (int i = 0; i < 50; i++) {
        stream_fixture_next(a, &x), stream_fixture_next(b, &y);
        for (int r = 0; r < 8; r++) cr_assert(stream_fixture_rows_equal(&x, r, &y, r), "batch %d row %d", i, r);
    }
    stream_close(a), stream_close(b);
    batch_free(&x), batch_free(&y);
}

static void refused(const char *text, const char *want)
{
    stream *s = NULL;
    cr_assert_eq(stream_open(&s, &(stream_spec){.path = text, .objective = STREAM_MLM, .seq_len = T, .seed = 1,
                                                  .dp_size = 1, .chunk = 1, .vocab_size = V + 24, .blend = 1}),
                 ST_CONFIG, "'%s' accepted", text);
    cr_assert_null(s);
    cr_assert(strstr(st_message(), "data.path") && strstr(st_message(), want), "'%s': %s", text, st_message());
}

Test(blend, refuses_bad_syntax_and_different_vocabularies, .init = setup, .fini = cleanup)
{
    char buf[10000];
    snprintf(buf, sizeof buf, "0.7 %s 0.3", dirs[0]);
    refused(buf, "expected WEIGHT PATH pairs");                   /* a weight without its path */
    snprintf(buf, sizeof buf, "0.7 %s 0 %s", dirs[0], dirs[1]);
    refused(buf, "weight '0' of pair 2 is not a positive number");
    snprintf(buf, sizeof buf, "0.7 %s -1 %s", dirs[0], dirs[1]);
    refused(buf, "weight '-1' of pair 2 is not a positive number");
    snprintf(buf, sizeof buf, "0.7 %s x %s", dirs[0], dirs[1]);
    refused(buf, "weight 'x' of pair 2 is not a positive number");
    snprintf(buf, sizeof buf, "0.7 %s nan %s", dirs[0], dirs[1]);
    refused(buf, "weight 'nan' of pair 2");
    snprintf(buf, sizeof buf, "0.7 0.3 %s %s", dirs[0], dirs[1]);
    refused(buf, "where pair 1's path belongs is a number");
    snprintf(buf, sizeof buf, "0.5 %s 0.5 %s", dirs[0], dirs[3]);
    refused(buf, "different vocabularies");
    cr_assert(strstr(st_message(), dirs[0]) && strstr(st_message(), dirs[3]), "both paths named: %s", st_message());
    stream_blend bl;
    snprintf(buf, sizeof buf, "%s/with space", dirs[0]);
    cr_assert_eq(stream_blend_parse(buf, &bl), ST_OK);
    cr_assert(bl.n == 1 && strcmp(bl.path[0], buf) == 0, "a single path keeps its spaces");
    cr_assert_eq(stream_blend_parse("2 a 6 b", &bl), ST_OK);
    cr_assert(bl.n == 2 && bl.weight[0] == 0.25 && bl.weight[1] == 0.75 && strcmp(bl.path[1], "b") == 0);
}

/* dist without MPI: the layer partition (by cost and explicit), the schedule
 * generator (order, slots, bound, tags) and the verifier, including broken
 * lists it must reject. The executor and ZeRO run in tests/mpi/dist_*.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "dist/dist_internal.h"

static model_config gpt(int L, int C, int V)
{
    return (model_config){.family = MODEL_GPT, .n_layer = L, .d_model = C, .n_head = 2, .d_ff = 4 * C,
                          .seq_len = 16, .max_positions = 16, .vocab_size = V, .pre_ln = 1};
}

static dist_plan built(dist_schedule_kind kind, int pp, int m)
{
    dist_plan p;
    cr_assert_eq(dist_plan_build(&p, kind, pp, m, 100), ST_OK, "%s", st_message());
    return p;
}

Test(dist, every_small_schedule_verifies_with_the_documented_slots)
{
    for (int kind = DIST_GPIPE; kind <= DIST_1F1B; kind++)
        for (int pp = 1; pp <= 5; pp++)
            for (int m = 1; m <= 9; m++) {
                dist_plan p = built((dist_schedule_kind)kind, pp, m);
                cr_assert_eq(dist_plan_verify(&p), ST_OK, "kind %d pp %d m %d: %s", kind, pp, m, st_message());
                for (int s = 0; s < pp; s++) {
                    cr_assert_eq(p.n_slots[s], dist_plan_bound((dist_schedule_kind)kind, pp, m, s),
                                 "kind %d pp %d m %d stage %d", kind, pp, m, s);
                    cr_assert_eq(p.n_instr[s], 2 * m + (s > 0) * 2 * m + (s < pp - 1) * 2 * m);
                }
                dist_plan_free(&p);
            }
    cr_assert_eq(dist_plan_bound(DIST_1F1B, 4, 8, 0), 4);
    cr_assert_eq(dist_plan_bound(DIST_1F1B, 4, 2, 0), 2);
    cr_assert_eq(dist_plan_bound(DIST_GPIPE, 4, 8, 3), 8);
}

static void expect_ops(const dist_plan *p, int s, const char *want)
{
    char got[512] = "";
    for (int i = 0; i < p->n_instr[s]; i++) {
        char one[32];
        snprintf(one, sizeof one, "%s%s%d", i ? " " : "", dist_op_name(p->instr[s][i].op), p->instr[s][i].mb);
        strcat(got, one);
    }
    cr_assert_str_eq(got, want, "stage %d", s);
}

Test(dist, one_f_one_b_warms_up_then_alternates)
{
    dist_plan p = built(DIST_1F1B, 2, 3);
    expect_ops(&p, 0, "FWD0 SEND_ACT0 FWD1 SEND_ACT1 RECV_GRAD0 BWD0 FWD2 SEND_ACT2 RECV_GRAD1 BWD1 RECV_GRAD2 BWD2");
    expect_ops(&p, 1, "RECV_ACT0 FWD0 BWD0 SEND_GRAD0 RECV_ACT1 FWD1 BWD1 SEND_GRAD1 RECV_ACT2 FWD2 BWD2 SEND_GRAD2");
    dist_plan_free(&p);
    p = built(DIST_GPIPE, 2, 2);
    expect_ops(&p, 0, "FWD0 SEND_ACT0 FWD1 SEND_ACT1 RECV_GRAD0 BWD0 RECV_GRAD1 BWD1");
    dist_plan_free(&p);
}

Test(dist, tags_are_unique_per_micro_batch_and_direction)
{
    dist_plan p = built(DIST_1F1B, 4, 6);
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < p.n_instr[s]; i++)
            for (int j = i + 1; j < p.n_instr[s]; j++) {
                const dist_instr *a = &p.instr[s][i], *b = &p.instr[s][j];
                if (a->tag < 0 || a->op != b->op) continue;
                cr_assert_neq(a->tag, b->tag, "stage %d instructions %d and %d share tag %d", s, i, j, a->tag);
            }
    dist_plan_free(&p);
}

static int find(const dist_plan *p, int s, dist_op op, int mb)
{
    for (int i = 0; i < p->n_instr[s]; i++)
        if (p->instr[s][i].op == op && p->instr[s][i].mb == mb) return i;
    cr_assert_fail("no %s %d on stage %d", dist_op_name(op), mb, s);
    return -1;
}

static void expect_rejected(const dist_plan *p, const char *needle)
{
    cr_assert_neq(dist_plan_verify(p), ST_OK, "a broken plan passed");
    cr_assert(strstr(st_message(), needle), "message '%s' lacks '%s'", st_message(), needle);
}

Test(dist, verifier_reports_a_deadlock_with_the_waiting_stages)
{
    dist_plan p = built(DIST_GPIPE, 2, 2);
    /* stage 0 waits for gradient 0 before sending activation 0 */
    int r = find(&p, 0, DIST_RECV_GRAD, 0), snd = find(&p, 0, DIST_SEND_ACT, 0);
    dist_instr t = p.instr[0][r];
    memmove(&p.instr[0][snd + 1], &p.instr[0][snd], sizeof(dist_instr) * (size_t)(r - snd));
    p.instr[0][snd] = t;
    expect_rejected(&p, "deadlock");
    cr_assert(strstr(st_message(), "stage 0 waits") && strstr(st_message(), "stage 1 waits"), "%s", st_message());
    cr_assert(strstr(st_message(), "RECV_GRAD micro-batch 0"), "%s", st_message());
    dist_plan_free(&p);
}

Test(dist, verifier_rejects_mismatched_sizes_slots_bounds_and_peers)
{
    dist_plan p = built(DIST_1F1B, 2, 4);
    p.instr[1][find(&p, 1, DIST_RECV_ACT, 2)].count = 99;
    expect_rejected(&p, "size");
    cr_assert(strstr(st_message(), "stage 1") && strstr(st_message(), "micro-batch 2"), "%s", st_message());
    dist_plan_free(&p);

    p = built(DIST_1F1B, 2, 4); /* micro-batch 1 forwarded into the slot micro-batch 0 still holds */
    for (int i = 0; i < p.n_instr[0]; i++)
        if (p.instr[0][i].mb == 1) p.instr[0][i].slot = p.instr[0][find(&p, 0, DIST_FWD, 0)].slot;
    expect_rejected(&p, "overwritten");
    dist_plan_free(&p);

    p = built(DIST_GPIPE, 3, 4); /* gpipe's lists exceed 1F1B's in-flight bound */
    p.kind = DIST_1F1B;
    expect_rejected(&p, "in flight");
    dist_plan_free(&p);

    p = built(DIST_GPIPE, 3, 2);
    p.instr[1][find(&p, 1, DIST_SEND_ACT, 1)].peer = 0;
    expect_rejected(&p, "peer");
    dist_plan_free(&p);

    p = built(DIST_GPIPE, 2, 2); /* a receive dropped: the activation is never received */
    int r = find(&p, 1, DIST_RECV_ACT, 1);
    memmove(&p.instr[1][r], &p.instr[1][r + 1], sizeof(dist_instr) * (size_t)(p.n_instr[1] - r - 1));
    p.n_instr[1]--;
    expect_rejected(&p, "micro-batch 1");
    dist_plan_free(&p);
}

Test(dist, partition_balances_blocks_against_embeddings_and_heads)
{
    dist_config dc = {.pp = 2};
    model_config small = gpt(4, 32, 64);
    int b[DIST_MAX_STAGES + 1];
    cr_assert_eq(dist_partition(&dc, &small, b), ST_OK, "%s", st_message());
    cr_assert(b[0] == 0 && b[1] == 2 && b[2] == 4, "%d %d %d", b[0], b[1], b[2]);
    /* GPT-2 small (T = 1024): the heads weigh 6 C V / (72 C^2 + 6 T C) = 4.9 blocks */
    model_config big = gpt(12, 768, 50257);
    big.seq_len = 1024;
    dc.pp = 4;
    cr_assert_eq(dist_partition(&dc, &big, b), ST_OK, "%s", st_message());
    cr_assert_eq(b[0], 0);
    cr_assert_eq(b[4], 12);
    cr_assert_eq(b[4] - b[3], 1, "the heads' stage should hold one layer: %d %d %d %d %d", b[0], b[1], b[2], b[3],
                 b[4]);
    for (int s = 0; s < 4; s++) cr_assert_gt(b[s + 1], b[s]);
    cr_assert_float_eq(layout_head_cost(&big, 0.15), 6.0 * 768 * 50257 / (72.0 * 768 * 768 + 6.0 * 1024 * 768), 1e-9);
    cr_assert_lt(layout_embed_cost(&big), 0.01);
    /* gpt-mini: heads 2.5 blocks -> layers 3 + 1; bert-mini: MLM on 15% of rows, 0.4 blocks -> 2 + 2 */
    model_config mini = gpt(4, 256, 8192);
    mini.seq_len = 256;
    dc.pp = 2;
    cr_assert_eq(dist_partition(&dc, &mini, b), ST_OK, "%s", st_message());
    cr_assert(b[1] == 3, "gpt-mini split at %d", b[1]);
    mini.family = MODEL_BERT;
    mini.seq_len = 128;
    cr_assert_float_eq(layout_head_cost(&mini, 0.15), 0.15 * (6.0 * 256 * 8192 + 6.0 * 256 * 256) / (72.0 * 256 * 256 + 12.0 * 128 * 256), 1e-9);
    cr_assert_eq(dist_partition(&dc, &mini, b), ST_OK, "%s", st_message());
    cr_assert(b[1] == 2, "bert-mini split at %d", b[1]);
}

Test(dist, explicit_stages_and_bad_layouts)
{
    model_config c = gpt(12, 32, 64);
    dist_config dc = {.pp = 2};
    int b[DIST_MAX_STAGES + 1];
    cr_assert_eq(dist_parse_stages(&dc, "5,7"), ST_OK, "%s", st_message());
    cr_assert_eq(dist_partition(&dc, &c, b), ST_OK, "%s", st_message());
    cr_assert(b[1] == 5 && b[2] == 12);
    cr_assert_eq(dist_parse_stages(&dc, "5, 6"), ST_OK);
    cr_assert_eq(dist_partition(&dc, &c, b), ST_CONFIG);
    cr_assert(strstr(st_message(), "dist.stages sums to 11") && strstr(st_message(), "model.n_layer = 12"), "%s",
              st_message());
    cr_assert_eq(dist_parse_stages(&dc, "12"), ST_OK);
    cr_assert_eq(dist_partition(&dc, &c, b), ST_CONFIG);
    cr_assert(strstr(st_message(), "dist.pp = 2"), "%s", st_message());
    cr_assert_eq(dist_parse_stages(&dc, "5,x"), ST_CONFIG);
    cr_assert(strstr(st_message(), "dist.stages"), "%s", st_message());
    cr_assert_eq(dist_parse_stages(&dc, "0,12"), ST_CONFIG);
    dist_config many = {.pp = 13};
    cr_assert_eq(dist_partition(&many, &c, b), ST_CONFIG);
    cr_assert(strstr(st_message(), "dist.pp = 13 exceeds model.n_layer = 12"), "%s", st_message());
}

/* The 2d grid's orientation follows the byte model: gpt2-small's FFN on 512
 * tokens sends half of each activation on 2 x 1 but half of each weight on
 * 1 x 2; gpt-mini's on 2048 tokens the other way round. */
Test(dist, tp_grid_turns_to_the_orientation_that_moves_fewer_bytes)
{
    int P, Q;
    cr_assert_eq(dist_tp_grid_shape(2, 512, 768, 3072, &P, &Q), ST_OK);
    cr_expect(P == 2 && Q == 1, "gpt2-small, 512 tokens, t = 2: %d x %d", P, Q);
    cr_assert_eq(dist_tp_grid_shape(2, 2048, 256, 1024, &P, &Q), ST_OK);
    cr_expect(P == 1 && Q == 2, "gpt-mini, 2048 tokens, t = 2: %d x %d", P, Q);
    cr_assert_eq(dist_tp_grid_shape(4, 512, 768, 3072, &P, &Q), ST_OK);
    cr_expect(P == 2 && Q == 2, "t = 4: %d x %d", P, Q);
    cr_assert_eq(dist_tp_grid_shape(8, 512, 768, 3072, &P, &Q), ST_OK);
    cr_expect(P * Q == 8 && (P == 4 || P == 2), "t = 8: %d x %d", P, Q);
    cr_expect_eq(dist_tp_grid_shape(7, 512, 768, 3072, &P, &Q), ST_CONFIG, "a prime t >= 5 has no grid");
}

/* optim: the training state's two parameter forms. A bf16 state holds each
 * parameter as a bf16 pair (tensor/bf16.h); its update must leave the very
 * fp32 masters the fp32 update leaves, its high halves must be their bf16
 * rounding, and the accessors must move floats in and out unchanged. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/float_bits.h"
#include "base/rng.h"
#include "optim/optim.h"
#include "tensor/bf16.h"

enum { N = 40009 }; /* odd, several OpenMP chunks */

static const optim_config OC = {.lr = 1e-2, .warmup_steps = 0, .total_steps = 10, .beta1 = 0.9, .beta2 = 0.999,
                                .eps = 1e-8, .weight_decay = 0.1};

static void fill(float *x, size_t n, uint64_t stream, float std)
{
    rng_fill_normal(rng_key_make(17, RNG_TEST), stream, std, x, n);
}

Test(optim, the_update_of_bf16_pairs_leaves_the_fp32_update_s_masters)
{
    optim_state a, b;
    cr_assert_eq(optim_state_alloc(&a, N, 0, N, 0), ST_OK);
    cr_assert_eq(optim_state_alloc(&b, N, 0, N, 1), ST_OK);
    cr_assert(a.params && !a.hi && !b.params && b.hi && b.lo, "fp32 state: floats; bf16 state: pairs");
    float *p0 = malloc(N * sizeof *p0), *got = malloc(N * sizeof *got);
    fill(p0, N, 1, 0.05f);
    optim_state_set_params(&a, 0, N, p0);
    optim_state_set_params(&b, 0, N, p0);
    for (int64_t t = 1; t <= 3; t++) {
        fill(a.grads, N, 10 + (uint64_t)t, 1.0f);
        memcpy(b.grads, a.grads, N * sizeof(float));
        double lr = optim_lr(&OC, t);
        optim_adamw(&OC, t, lr, a.params, a.grads, a.m, a.v, N, 1, 0.5f);
        optim_adamw_split(&OC, t, lr, b.hi, b.lo, b.grads, b.m, b.v, N, 1, 0.5f);
    }
    optim_state_get_params(&b, 0, N, got);
    size_t moved = 0;
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(bits_of(got[i]), bits_of(a.params[i]), "parameter %zu: %.9g after the pair update, %.9g after "
                     "the fp32 one", i, got[i], a.params[i]);
        uint32_t u = bits_of(a.params[i]);
        if ((u & 0xFFFFu) != 0x8000u) cr_assert_eq(b.hi[i], bf16_round(a.params[i]), "parameter %zu: high half", i);
        moved += a.params[i] != p0[i];
    }
    cr_expect(moved > N / 2, "the update must move the parameters (%zu of %d moved)", moved, N);
    cr_expect_eq(memcmp(a.m, b.m, N * sizeof(float)), 0, "first moments");
    cr_expect_eq(memcmp(a.v, b.v, N * sizeof(float)), 0, "second moments");
    free(p0), free(got);
    optim_state_free(&a);
    optim_state_free(&b);
}

Test(optim, staged_parameters_go_through_the_gradient_buffer_and_come_back)
{
    optim_state b;
    cr_assert_eq(optim_state_alloc(&b, N, 100, 200, 1), ST_OK);
    float *p0 = malloc(N * sizeof *p0), *got = malloc(N * sizeof *got);
    fill(p0, N, 2, 1.0f);
    float *st = optim_state_params_staged(&b);
    cr_assert_eq(st, b.grads, "a bf16 state stages its floats in the gradient buffer");
    for (size_t i = 0; i < N; i++) cr_assert_eq(st[i], 0.0f, "a new state's parameters are zero");
    memcpy(st, p0, N * sizeof(float));
    optim_state_params_commit(&b);
    for (size_t i = 0; i < N; i++) cr_assert_eq(b.grads[i], 0.0f, "commit clears the gradient buffer again");
    optim_state_get_params(&b, 5, N, got);
    cr_assert_eq(memcmp(got, p0 + 5, (N - 5) * sizeof(float)), 0, "the floats written come back bit for bit");
    st = optim_state_params_staged(&b);
    cr_assert_eq(memcmp(st, p0, N * sizeof(float)), 0, "staging again gives the same floats");
    optim_state a;
    cr_assert_eq(optim_state_alloc(&a, N, 0, N, 0), ST_OK);
    cr_assert_eq(optim_state_params_staged(&a), a.params, "an fp32 state stages nothing");
    free(p0), free(got);
    optim_state_free(&a);
    optim_state_free(&b);
}

Test(optim, a_state_refuses_an_update_range_outside_it)
{
    optim_state s;
    cr_expect_eq(optim_state_alloc(&s, 10, 4, 11, 1), ST_ERROR);
    cr_expect(strstr(st_message(), "[4, 11)") != NULL, "%s", st_message());
    cr_expect_eq(optim_state_alloc(&s, 10, 5, 4, 0), ST_ERROR);
}

/* A float's bit pattern and back (tests of rounding and special values). */
#ifndef MPILM_TESTS_FLOAT_BITS_H
#define MPILM_TESTS_FLOAT_BITS_H

#include <stdint.h>
#include <string.h>

static inline uint32_t bits_of(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float float_of(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

#endif

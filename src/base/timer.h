/* base/timer — monotonic wall time. Must not touch: anything but libc. */
#ifndef MPILM_BASE_TIMER_H
#define MPILM_BASE_TIMER_H

#include <time.h>

static inline double time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif

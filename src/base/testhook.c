/* base/testhook — the test suite's fault-injection hooks (testhook.h). */
#include "testhook.h"

#include <stdlib.h>

static const char *const names[TESTHOOK_COUNT] = {
    [TESTHOOK_CRASH] = "MPILM_TEST_CRASH",
    [TESTHOOK_STOP] = "MPILM_TEST_STOP",
    [TESTHOOK_PAUSE] = "MPILM_TEST_PAUSE",
    [TESTHOOK_CKPT_FAIL] = "MPILM_TEST_CKPT_FAIL",
    [TESTHOOK_STEP_DELAY] = "MPILM_TEST_STEP_DELAY",
};

const char *testhook_get(testhook hook) { return getenv(names[hook]); }

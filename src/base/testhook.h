/* base/testhook — the fault-injection hooks of the test suite: the one place
 * production code asks whether a test wants a crash, a pause, a frozen rank,
 * a failed write or a slow step.
 *
 * Owns: the hooks' names (environment variables MPILM_TEST_*) and reading
 * them. docs/design.md ("Test hooks") lists each hook, where it acts and
 * which test sets it; no other module reads an MPILM_TEST_* variable.
 * A hook is read each time it is asked for, not once: tests set and clear
 * one between calls in one process (tests/unit/test_base.c,
 * tests/mpi/error_path.c), and every place asks at a phase, never in a
 * loop over data.
 * Must not touch: anything but libc.
 */
#ifndef MPILM_BASE_TESTHOOK_H
#define MPILM_BASE_TESTHOOK_H

typedef enum testhook {
    TESTHOOK_CRASH,      /* MPILM_TEST_CRASH=PHASE: SIGKILL at fileio_crash_point(PHASE) */
    TESTHOOK_STOP,       /* MPILM_TEST_STOP=PHASE: SIGSTOP at fileio_crash_point(PHASE) */
    TESTHOOK_PAUSE,      /* MPILM_TEST_PAUSE=PHASE:SECONDS: a sleep at fileio_crash_point(PHASE) */
    TESTHOOK_CKPT_FAIL,  /* MPILM_TEST_CKPT_FAIL=write or write:I: a checkpoint shard write fails */
    TESTHOOK_STEP_DELAY, /* MPILM_TEST_STEP_DELAY=SECONDS: each training step sleeps that long */
    TESTHOOK_COUNT
} testhook;

/* The hook's value, or NULL when the test does not set it. */
const char *testhook_get(testhook hook);

#endif

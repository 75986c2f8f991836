/* base/watchdog — a deadline over any blocking stretch of a rank's work.
 *
 * Owns: one thread per process that sleeps until the armed deadline; if the
 * stretch is still running then, it prints "mpilm: error: [rank R] watchdog:
 * WHAT did not finish within S s ..." and ends the process with exit status 1
 * (_exit: no atexit handlers, no MPI call, which may be what hangs). Under
 * mpirun a rank that exits non-zero ends the whole job, so a peer that is
 * stopped (SIGSTOP), dead or hung in a blocking collective or in I/O cannot
 * keep the job waiting forever.
 * Must not touch: MPI (the thread never calls it; the main thread may hold it).
 *
 * Use: watchdog_start once; then watchdog_arm(WHAT, SECONDS) before each
 * stretch (a step boundary's collectives, a checkpoint save, an evaluation)
 * and watchdog_disarm after. Arming again replaces the stretch. The dist
 * engine's own watchdog (dist/exec.c) gives a finer report inside a step;
 * the trainer arms this one a few seconds later there, as a backstop.
 */
#ifndef MPILM_BASE_WATCHDOG_H
#define MPILM_BASE_WATCHDOG_H

#include "base/status.h"

/* Starts the thread; rank names the process in the message. Idempotent. */
status_t watchdog_start(int rank);

/* From now on, WHAT (a phrase: "the checkpoint save of step 20") must end
 * within seconds (> 0; 0 or less disarms). what is copied. */
void watchdog_arm(const char *what, double seconds);
void watchdog_disarm(void);

/* What to do when a deadline passes: the default prints and _exit(1)s; a
 * test installs its own (called on the watchdog thread with the message). */
typedef void (*watchdog_fire_fn)(const char *message);
void watchdog_set_fire(watchdog_fire_fn fn);

/* Stops and joins the thread (at exit, and for tests). */
void watchdog_stop(void);

#endif

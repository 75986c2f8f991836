/* base/status — the one error mechanism of mpilm.
 *
 * Owns: status codes, the per-thread error message, the exit-status mapping and
 * the fatal path that ends a whole MPI job with one rank's message.
 * Must not touch: anything above libc and MPI's abort/rank queries.
 *
 * Pattern (as zstd's RETURN_ERROR_IF / FORWARD_IF_ERROR): a function that can
 * fail returns status_t; on failure it records a message with st_fail() and
 * returns the code; callers forward it with TRY(). Only cli/ prints and exits
 * (st_die). Messages follow docs/design.md, "Errors: one mechanism":
 *     FILE: what is wrong at WHERE (expected X, found Y); what to do
 */
#ifndef MPILM_BASE_STATUS_H
#define MPILM_BASE_STATUS_H

#include <stdarg.h>

typedef enum status {
    ST_OK = 0,
    ST_ERROR,     /* runtime failure of any other kind           → exit 1 */
    ST_IO,        /* a file could not be read or written          → exit 1 */
    ST_FORMAT,    /* a file's content is malformed or corrupt     → exit 1 */
    ST_NOMEM,     /* allocation failed                            → exit 1 */
    ST_MPI,       /* an MPI call failed or a peer misbehaved      → exit 1 */
    ST_USAGE,     /* bad command line                             → exit 2 */
    ST_CONFIG,    /* bad configuration value or file              → exit 2 */
    ST_PREEMPTED, /* stopped by a signal after a checkpoint       → exit 75 */
} status_t;

/* Exit statuses of the mpilm binary (docs/usage.md). */
enum {
    EXIT_OK = 0,
    EXIT_ERROR = 1,
    EXIT_USAGE = 2,
    EXIT_PREEMPTED = 75, /* EX_TEMPFAIL: a checkpoint was written; requeue */
};

/* Records the message (printf format) for this thread and returns code. */
status_t st_fail(status_t code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
status_t st_vfail(status_t code, const char *fmt, va_list ap);

/* Prepends context to the recorded message ("loading X: " + old) and returns code. */
status_t st_context(status_t code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The message recorded by the last st_fail() on this thread ("" if none). */
const char *st_message(void);
void st_clear(void);

const char *st_name(status_t code);
int st_exit_code(status_t code);

/* Prints "mpilm: error: [rank R] MESSAGE" to stderr and ends the process with
 * st_exit_code(code); when MPI runs with more than one rank it ends the whole
 * job with MPI_Abort so no peer is left waiting. Never returns. */
_Noreturn void st_die(status_t code);

/* Forward a failure to the caller. */
#define TRY(expr)                                                              \
    do {                                                                       \
        status_t try_status_ = (expr);                                         \
        if (try_status_ != ST_OK) return try_status_;                          \
    } while (0)

/* Fail with a message when cond holds. */
#define FAIL_IF(cond, code, ...)                                               \
    do {                                                                       \
        if (cond) return st_fail((code), __VA_ARGS__);                         \
    } while (0)

#endif

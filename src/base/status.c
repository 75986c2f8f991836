#include "status.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MESSAGE_MAX 2048

static _Thread_local char message[MESSAGE_MAX];

status_t st_vfail(status_t code, const char *fmt, va_list ap)
{
    vsnprintf(message, sizeof message, fmt, ap);
    return code;
}

status_t st_fail(status_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    st_vfail(code, fmt, ap);
    va_end(ap);
    return code;
}

status_t st_context(status_t code, const char *fmt, ...)
{
    char old[MESSAGE_MAX];
    memcpy(old, message, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof message)
        snprintf(message + n, sizeof message - (size_t)n, "%s", old);
    return code;
}

const char *st_message(void) { return message; }

void st_clear(void) { message[0] = '\0'; }

const char *st_name(status_t code)
{
    switch (code) {
    case ST_OK: return "ok";
    case ST_ERROR: return "error";
    case ST_IO: return "i/o error";
    case ST_FORMAT: return "format error";
    case ST_NOMEM: return "out of memory";
    case ST_MPI: return "mpi error";
    case ST_USAGE: return "usage error";
    case ST_CONFIG: return "config error";
    case ST_PREEMPTED: return "preempted";
    }
    return "unknown status";
}

int st_exit_code(status_t code)
{
    switch (code) {
    case ST_OK: return EXIT_OK;
    case ST_USAGE:
    case ST_CONFIG: return EXIT_USAGE;
    case ST_PREEMPTED: return EXIT_PREEMPTED;
    default: return EXIT_ERROR;
    }
}

_Noreturn void st_die(status_t code)
{
    int initialized = 0, finalized = 0, rank = 0, size = 1;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    int mpi_live = initialized && !finalized;
    if (mpi_live) {
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
    }
    const char *msg = message[0] ? message : st_name(code);
    if (size > 1)
        fprintf(stderr, "mpilm: error: [rank %d] %s\n", rank, msg);
    else
        fprintf(stderr, "mpilm: error: %s\n", msg);
    fflush(stderr);
    fflush(stdout);
    int exit_code = st_exit_code(code);
    if (mpi_live && size > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
    if (mpi_live) MPI_Finalize();
    exit(exit_code);
}

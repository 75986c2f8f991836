/* Checks for the multi-rank tests (the .c files of tests/mpi, one translation unit each):
 * CHECK counts a failure on this rank and says where; ok_or_die ends the job
 * on an error that leaves nothing to check; mpi_check_finish sums the
 * failures over the ranks, prints the verdict on rank 0 and finalises MPI. */
#ifndef MPILM_TESTS_MPI_CHECK_H
#define MPILM_TESTS_MPI_CHECK_H

#include <mpi.h>
#include <stdio.h>

#include "base/status.h"

static int rank, world, failures;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            failures++;                                                                   \
            fprintf(stderr, "rank %d: %s:%d: ", rank, __FILE__, __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

static inline void ok_or_die(status_t st, const char *what)
{
    if (st == ST_OK) return;
    fprintf(stderr, "rank %d: %s: %s\n", rank, what, st_message());
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* Returns the process's exit status: 0 when no rank failed a check. */
static inline int mpi_check_finish(const char *name)
{
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("%s on %d rank%s: %s (%d failed checks)\n", name, world, world == 1 ? "" : "s", total ? "FAIL" : "ok",
               total);
    MPI_Finalize();
    return total ? 1 : 0;
}

#endif

/* The fatal path of base/status under MPI.
 *   error_path                 every rank reports, a collective completes, exit 0
 *   error_path --fail-rank R   rank R fails with a message while the others wait
 *                              in a collective; st_die must end the whole job
 *                              (tests/mpi/error_path.sh checks message and time) */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/status.h"

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int fail_rank = argc == 3 && strcmp(argv[1], "--fail-rank") == 0 ? atoi(argv[2]) : -1;
    if (rank == fail_rank) {
        usleep(200000); /* the others are already blocked in the barrier */
        st_die(st_fail(ST_FORMAT, "shard-00003.zst: checksum mismatch in frame 7 at byte 123456 "
                                  "(expected 0123456789abcdef, found fedcba9876543210); re-run mpilm prep"));
    }
    int one = 1, sum = 0;
    MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    int ok = sum == size;
    if (!ok) fprintf(stderr, "rank %d: allreduce gave %d, expected %d\n", rank, sum, size);
    MPI_Finalize();
    return ok ? 0 : 1;
}

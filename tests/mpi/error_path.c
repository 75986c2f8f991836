/* How one rank's failure reaches the whole job, in mpilm's own code.
 *   error_path                 for every rank R in turn, a two-step training
 *                              run in which only rank R cannot write its
 *                              checkpoint shard: trainer_run must return the
 *                              same error with R's message on every rank
 *                              (train's agreement on a save), and the ranks
 *                              must go on together afterwards; exit 0 = pass
 *   error_path --fail-rank R   rank R fails with a message while the others wait
 *                              in a collective; st_die must end the whole job
 *                              (tests/mpi/error_path.sh checks message and time) */
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/status.h"
#include "cli/cli.h"
#include "train/train.h"

#include "../common/mpi_check.h"

static void die_on_rank(int fail_rank)
{
    if (rank == fail_rank) {
        usleep(200000); /* the others are already blocked in the barrier */
        st_die(st_fail(ST_FORMAT, "shard-00003.zst: checksum mismatch in frame 7 at byte 123456 "
                                  "(expected 0123456789abcdef, found fedcba9876543210); re-run mpilm prep"));
    }
    MPI_Barrier(MPI_COMM_WORLD);
    fprintf(stderr, "rank %d: passed the barrier although rank %d died\n", rank, fail_rank);
}

/* A tiny GPT on random tokens, pure data parallelism: rank r writes
 * shard-0000r.bin of the final checkpoint into run_dir. */
static status_t run_training(const char *run_dir)
{
    char dir_set[600];
    snprintf(dir_set, sizeof dir_set, "run.dir=%s", run_dir);
    char *sets[] = {"model.n_layer=1", "model.d_model=16", "model.n_head=2", "model.d_ff=32", "model.seq_len=8",
                    "model.max_positions=8", "model.vocab_size=64", "train.steps=2", "train.micro_batch=1",
                    "train.micro_batches=1", "train.precision=fp32", "data.source=random", "log.every=100", dir_set};
    config *cfg;
    TRY(cli_load_config(&cfg, NULL, sets, (int)(sizeof sets / sizeof sets[0])));
    static train_config tc;
    status_t st = train_config_load(cfg, &tc);
    config_free(cfg);
    TRY(st);
    trainer *t;
    TRY(trainer_create(&t, &tc, MPI_COMM_WORLD));
    st = trainer_run(t);
    trainer_free(t);
    return st;
}

/* A rank left waiting for a failed peer is the bug under test: fail in
 * seconds (the whole mode takes about one) rather than at the suite's timeout. */
static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "error_path: no result within 120 s: a rank waits for a failed peer\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
    _exit(2);
}

static void one_rank_cannot_save(const char *base, int fail_rank)
{
    char run_dir[512], shard[64];
    snprintf(run_dir, sizeof run_dir, "%s/fail-%d", base, fail_rank);
    snprintf(shard, sizeof shard, "shard-%05d.bin: write failed", fail_rank);
    if (rank == fail_rank) setenv("MPILM_TEST_CKPT_FAIL", "write", 1);
    else unsetenv("MPILM_TEST_CKPT_FAIL");
    status_t st = run_training(run_dir);
    unsetenv("MPILM_TEST_CKPT_FAIL");
    char msg[1024] = "", first[1024] = "";
    snprintf(msg, sizeof msg, "%s", st_message());
    CHECK(st == ST_IO, "rank %d fails its save: status %s on rank %d (expected ST_IO): %s", fail_rank, st_name(st),
          rank, msg);
    CHECK(strstr(msg, shard) != NULL, "rank %d fails its save: rank %d's message lacks \"%s\": %s", fail_rank, rank,
          shard, msg);
    if (rank == 0) memcpy(first, msg, sizeof first);
    MPI_Bcast(first, sizeof first, MPI_CHAR, 0, MPI_COMM_WORLD);
    CHECK(strcmp(first, msg) == 0, "rank %d fails its save: ranks 0 and %d report different messages:\n  %s\n  %s",
          fail_rank, rank, first, msg);
}

int main(int argc, char **argv)
{
    cli_mpi_init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (argc == 3 && strcmp(argv[1], "--fail-rank") == 0) {
        die_on_rank(atoi(argv[2]));
        MPI_Finalize();
        return 1;
    }
    signal(SIGALRM, on_alarm);
    alarm(120);
    char base[256] = "/tmp/mpilm-error-path-XXXXXX";
    if (rank == 0 && !mkdtemp(base)) base[0] = '\0';
    MPI_Bcast(base, sizeof base, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (!base[0]) ok_or_die(st_fail(ST_IO, "cannot create a temporary directory"), "setup");
    for (int r = 0; r < world; r++) one_rank_cannot_save(base, r);
    /* after every failure the ranks still agree: a run without one succeeds */
    char run_dir[512];
    snprintf(run_dir, sizeof run_dir, "%s/ok", base);
    status_t st = run_training(run_dir);
    CHECK(st == ST_OK, "a run without failures: %s", st_message());
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", base);
    }
    return mpi_check_finish("error_path");
}

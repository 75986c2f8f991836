/* Layout independence of data/stream under mpirun: each rank streams its part
 * (dp = world size), rank 0 gathers a checksum of every sample and compares
 * them, step by step, with the dp = 1 stream it reads itself. Causal and
 * MLM+NSP, over more than one epoch. Exit 0 = the global streams are equal. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/synth_dataset.h"
#include "base/hash.h"
#include "data/stream.h"

enum { C = 3, T = 32, STEPS = 300 };

static uint64_t row_hash(const batch *b, int r)
{
    size_t o = (size_t)r * T, n = T * sizeof(int32_t);
    uint64_t h[5] = {hash_xxh3(b->input_ids + o, n), hash_xxh3(b->labels + o, n), hash_xxh3(b->token_type_ids + o, n),
                     hash_xxh3(b->attention_mask + o, n), (uint64_t)b->next_sentence_label[r]};
    return hash_xxh3(h, sizeof h);
}

static stream *open_or_die(const char *dir, stream_objective obj, int rank, int size, int chunk)
{
    stream_spec sp = {.path = dir, .objective = obj, .seq_len = T, .mask_prob = 0.15, .nsp = obj == STREAM_MLM,
                      .seed = 99, .dp_rank = rank, .dp_size = size, .chunk = chunk, .vocab_size = 400};
    stream *s;
    if (stream_open(&s, &sp) != ST_OK) {
        fprintf(stderr, "rank %d: stream_open: %s\n", rank, st_message());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return s;
}

static void next_or_die(stream *s, batch *b)
{
    if (stream_next(s, b) != ST_OK) {
        fprintf(stderr, "stream_next: %s\n", st_message());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

static int check(const char *dir, stream_objective obj, int rank, int size)
{
    stream *mine = open_or_die(dir, obj, rank, size, C);
    stream *one = rank == 0 ? open_or_die(dir, obj, 0, 1, C * size) : NULL;
    batch b, ob;
    batch_alloc(&b, C, T);
    batch_alloc(&ob, C * size, T);
    uint64_t *all = malloc(sizeof(uint64_t) * C * size), h[C];
    int bad = 0;
    uint64_t last_epoch = 0;
    for (int step = 0; step < STEPS; step++) {
        next_or_die(mine, &b);
        for (int i = 0; i < C; i++) h[i] = row_hash(&b, i);
        MPI_Gather(h, C, MPI_UINT64_T, all, C, MPI_UINT64_T, 0, MPI_COMM_WORLD);
        if (rank != 0) continue;
        next_or_die(one, &ob);
        for (int i = 0; i < C * size; i++)
            if (row_hash(&ob, i) != all[i] && bad++ < 5)
                fprintf(stderr, "objective %d step %d sample %d: dp=%d differs from dp=1\n", obj, step, i, size);
        stream_origin o;
        stream_last_origin(one, C * size - 1, &o);
        last_epoch = o.epoch;
    }
    if (rank == 0 && last_epoch < 1) fprintf(stderr, "objective %d: the test did not cross an epoch\n", obj), bad++;
    stream_close(mine);
    stream_close(one);
    batch_free(&b);
    batch_free(&ob);
    free(all);
    return bad;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char dir[4200] = {0};
    if (rank == 0) {
        synth_spec sp = {.vocab_size = 400, .n_shards = 2, .docs_per_shard = 60, .max_sents = 8, .max_len = 30, .seed = 5};
        if (synth_tmpdir(dir, sizeof dir, "layout") != 0 || synth_dataset_make(dir, &sp) != 0) {
            fprintf(stderr, "cannot make the dataset: %s\n", st_message());
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    int bad = check(dir, STREAM_CAUSAL, rank, size) + check(dir, STREAM_MLM, rank, size);
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        synth_rmdir(dir);
        printf("stream_layout: dp=%d %s\n", size, bad ? "DIFFERS" : "equals dp=1");
    }
    MPI_Finalize();
    return bad ? 1 : 0;
}

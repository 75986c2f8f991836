/* mpilm prep: raw text → datasets/NAME/ (vocab files, shards, manifest.json).
 * Under mpirun rank r encodes the pieces i with i % size == r; rank 0 writes
 * the vocabulary first and the manifest last, all into a staging directory
 * beside NAME that rank 0 renames into place once everything succeeded
 * (prep.h); on any failure it removes the staging directory, so the dataset
 * that was at NAME is never damaged. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "base/log.h"
#include "base/timer.h"
#include "cli.h"
#include "data/prep.h"

typedef struct prep_options {
    const char *vocab, *kind, *out;
    char staging[4200]; /* where the dataset is built */
    long train_vocab;
    prep_input input;        /* --jsonl, --text-key, --split-sentences, --replace-invalid, --valid-fraction */
    int overwrite;
    const char *const *files;
    int n_files;
} prep_options;

static status_t set_option(void *ctx, int key, const char *text, double v)
{
    prep_options *o = ctx;
    if (key == 'f') {
        FAIL_IF(v >= 1, ST_USAGE, "prep: --valid-fraction '%s' must be below 1 (the share of documents held out "
                "into the valid split; e.g. 0.01)", text);
        o->input.valid_fraction = v;
    } else {
        o->train_vocab = (long)v;
    }
    return ST_OK;
}

static status_t parse_options(int argc, char **argv, prep_options *o)
{
    const cli_option options[] = {
        {"vocab", .text = &o->vocab},
        {"train-vocab", .key = 'n', .min = 2, .max = (double)(1L << 31), .integer = 1},
        {"tokenizer", .text = &o->kind},
        {"out", .text = &o->out},
        {"replace-invalid", .flag = &o->input.replace_invalid},
        {"overwrite", .flag = &o->overwrite},
        {"valid-fraction", .key = 'f', .min = 0, .max = 1},
        {"jsonl", .flag = &o->input.jsonl},
        {"text-key", .text = &o->input.text_key},
        {"split-sentences", .flag = &o->input.split_sentences},
        {0},
    };
    int first;
    TRY(cli_parse_options("prep", argc, argv, options, set_option, o, &first));
    FAIL_IF(!o->vocab == !o->train_vocab, ST_USAGE, "prep: give exactly one of --vocab DIR and --train-vocab N");
    FAIL_IF(!o->out, ST_USAGE, "prep: --out DIR is required (e.g. --out datasets/NAME)");
    FAIL_IF(o->train_vocab && !o->kind, ST_USAGE, "prep: --train-vocab needs --tokenizer bpe|wordpiece");
    FAIL_IF(o->kind && strcmp(o->kind, "bpe") != 0 && strcmp(o->kind, "wordpiece") != 0, ST_USAGE,
            "prep: --tokenizer must be bpe or wordpiece (found '%s')", o->kind);
    FAIL_IF(o->input.text_key && !o->input.jsonl, ST_USAGE, "prep: --text-key needs --jsonl");
    FAIL_IF(o->input.text_key && !*o->input.text_key, ST_USAGE, "prep: --text-key must not be empty");
    FAIL_IF(o->input.jsonl && o->train_vocab, ST_USAGE, "prep: --train-vocab reads text files; train the vocabulary "
            "on text, or give --vocab DIR with --jsonl");
    if (!o->input.text_key) o->input.text_key = "text";
    FAIL_IF(first >= argc, ST_USAGE, "prep: no input FILE given (see mpilm prep --help)");
    o->files = (const char *const *)argv + first;
    o->n_files = argc - first;
    return prep_staging_path(o->out, o->staging, sizeof o->staging);
}

/* Rank 0 makes an empty staging directory (removing one a crashed prep left)
 * and puts the vocabulary into it (trained or copied). */
static status_t write_vocab(const prep_options *o, tokenizer_kind kind)
{
    TRY(fileio_remove_tree(o->staging));
    TRY(fileio_make_dirs(o->staging, 0755));
    if (o->train_vocab) {
        log_info("prep: training a %s vocabulary of %ld tokens", o->kind, o->train_vocab);
        return tokenizer_train(kind, o->files, o->n_files, (uint32_t)o->train_vocab, o->staging);
    }
    tokenizer *t;
    TRY(tokenizer_load(o->vocab, kind, &t));
    status_t st = tokenizer_save(t, o->staging);
    tokenizer_free(t);
    return st;
}

static status_t encode_pieces(const prep_options *o, tokenizer *t, const prep_plan *plan, int rank, int size)
{
    double t0 = time_now();
    uint64_t done = 0;
    for (int i = rank; i < plan->n_pieces; i += size) {
        char name[64], valid_name[64], path[4300], valid_path[4300];
        dataset_split_shard_name(DATASET_SPLIT_TRAIN, i, name, sizeof name);
        dataset_split_shard_name(DATASET_SPLIT_VALID, i, valid_name, sizeof valid_name);
        snprintf(path, sizeof path, "%s/%s", o->staging, name);
        snprintf(valid_path, sizeof valid_path, "%s/%s", o->staging, valid_name);
        prep_stats stats;
        TRY(prep_piece_encode_input(t, o->files, &plan->pieces[i], &o->input, path, valid_path, &stats));
        done += stats.bytes;
        if (stats.replaced) log_warn("prep: %s: %llu invalid UTF-8 bytes replaced by U+FFFD", name,
                                     (unsigned long long)stats.replaced);
        log_info("prep: %s done (%d of %d), %.1f MB/s on rank 0", name, i + 1, plan->n_pieces,
                 (double)done / 1e6 / (time_now() - t0 + 1e-9));
    }
    return ST_OK;
}

/* Every rank learns whether any rank failed (a collective). On a failure rank
 * 0 removes the staging directory, and once it has (a barrier) the failing
 * ranks end the job with their message; the others wait in a second barrier,
 * which the failing ranks never enter, until that ends them too. */
static void agree(status_t st, const prep_options *o, int rank)
{
    int failed = st != ST_OK, any = failed;
    if (MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) any = 1;
    if (!any) return;
    char message[2048];
    snprintf(message, sizeof message, "%s", st_message()); /* the removal may record another */
    if (rank == 0 && fileio_remove_tree(o->staging) != ST_OK)
        log_warn("prep: could not remove the staging directory %s (%s); remove it by hand", o->staging, st_message());
    MPI_Barrier(MPI_COMM_WORLD);
    if (failed) st_die(st_fail(st, "%s", message));
    MPI_Barrier(MPI_COMM_WORLD);
    st_die(st_fail(ST_ERROR, "prep: another rank failed (its message is above)"));
}

static status_t run_prep(const prep_options *o, int rank, int size)
{
    double t0 = time_now();
    tokenizer_kind kind = TOKENIZER_BPE;
    if (o->kind) kind = strcmp(o->kind, "bpe") == 0 ? TOKENIZER_BPE : TOKENIZER_WORDPIECE;
    else TRY(tokenizer_detect(o->vocab, &kind));
    prep_plan plan;
    TRY(prep_plan_make_input(o->files, o->n_files, &o->input, &plan));
    TRY(prep_output_check(o->out, o->overwrite));
    agree(rank == 0 ? write_vocab(o, kind) : ST_OK, o, rank);
    tokenizer *t = NULL;
    status_t st = tokenizer_load(o->staging, kind, &t);
    if (st == ST_OK) st = encode_pieces(o, t, &plan, rank, size);
    agree(st, o, rank);
    dataset_info info, valid = {0};
    if (rank == 0) st = prep_finish_split(o->staging, t, plan.n_pieces, o->input.valid_fraction, &info, &valid);
    if (rank == 0 && st == ST_OK) st = prep_publish(o->staging, o->out);
    agree(st, o, rank);
    double secs = time_now() - t0;
    if (rank == 0)
        log_info("prep: %s: %d shards, %llu documents, %llu sentences, %llu tokens from %.1f MB in %.2f s "
                 "(%.1f MB/s on %d ranks)", o->out, plan.n_pieces, (unsigned long long)info.n_documents,
                 (unsigned long long)info.n_sentences, (unsigned long long)info.n_tokens,
                 (double)plan.total_bytes / 1e6, secs, (double)plan.total_bytes / 1e6 / secs, size);
    if (rank == 0 && o->input.valid_fraction > 0)
        log_info("prep: valid split (--valid-fraction %g): %d shards, %llu documents, %llu sentences, %llu tokens "
                 "(train: the figures above)", o->input.valid_fraction, valid.n_shards,
                 (unsigned long long)valid.n_documents, (unsigned long long)valid.n_sentences,
                 (unsigned long long)valid.n_tokens);
    tokenizer_free(t);
    prep_plan_free(&plan);
    return ST_OK;
}

int cmd_prep(int argc, char **argv)
{
    prep_options o = {0};
    status_t st = parse_options(argc, argv, &o);
    if (st != ST_OK) return cli_finish(st);
    cli_mpi_init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return cli_finish(run_prep(&o, rank, size));
}

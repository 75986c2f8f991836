/* mpilm train: options and configuration; the training loop lives in
 * train/ (over model/, optim/, data/). */
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"
#include "cli.h"
#include "train/train.h"

typedef struct train_options {
    const char *config_path;
    const char *resume;
    char **sets;
    int n_sets;
    int print_config;
    int overwrite;
} train_options;

/* --set KEY=VALUE, kept in the order given */
static status_t add_set(void *ctx, int key, const char *text, double number)
{
    train_options *o = ctx;
    o->sets[o->n_sets++] = (char *)text;
    return ST_OK;
}

static status_t parse_options(int argc, char **argv, train_options *o)
{
    const cli_option options[] = {
        {"config", .text = &o->config_path},
        {"set", .key = 's'},
        {"resume", .text = &o->resume},
        {"print-config", .flag = &o->print_config},
        {"overwrite", .flag = &o->overwrite},
        {0},
    };
    o->sets = calloc((size_t)argc, sizeof *o->sets);
    FAIL_IF(!o->sets, ST_NOMEM, "out of memory parsing options");
    int first;
    TRY(cli_parse_options("train", argc, argv, options, add_set, o, &first));
    FAIL_IF(first < argc, ST_USAGE, "train: unexpected argument '%s' (see mpilm train --help)", argv[first]);
    FAIL_IF(!o->config_path, ST_USAGE, "train: --config FILE is required (examples in launch/configs/)");
    FAIL_IF(o->resume && o->overwrite, ST_USAGE, "train: --resume and --overwrite exclude each other (--resume "
            "continues the run in RUN_DIR, --overwrite removes it and starts over); pass one of them");
    return ST_OK;
}

static status_t run_training(const config *cfg, const train_options *o)
{
    static train_config tc;
    TRY(train_config_load(cfg, &tc));
    if (o->resume) snprintf(tc.resume, sizeof tc.resume, "%s", o->resume);
    tc.overwrite = o->overwrite;
    trainer *t = NULL;
    status_t st = trainer_create(&t, &tc, MPI_COMM_WORLD);
    if (st == ST_OK) st = trainer_run(t);
    trainer_free(t);
    return st;
}

int cmd_train(int argc, char **argv)
{
    train_options o = {0};
    status_t st = parse_options(argc, argv, &o);
    config *cfg = NULL;
    if (st == ST_OK) st = cli_load_config(&cfg, o.config_path, o.sets, o.n_sets);
    free(o.sets);
    if (st != ST_OK) return cli_finish(st);
    if (o.print_config) {
        config_print(cfg, stdout, 1);
        config_free(cfg);
        return 0;
    }
    if (o.resume && !*o.resume) {
        config_free(cfg);
        return cli_finish(st_fail(ST_USAGE, "train: --resume needs auto or a checkpoint path"));
    }
    cli_mpi_init(&argc, &argv);
    st = run_training(cfg, &o);
    config_free(cfg);
    /* Every rank agreed to stop after a checkpoint: a clean exit, no abort. */
    if (st == ST_PREEMPTED) {
        cli_mpi_finalize();
        return EXIT_PREEMPTED;
    }
    return cli_finish(st);
}

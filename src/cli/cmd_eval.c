/* mpilm eval: a checkpoint's loss, perplexity and accuracies on a dataset,
 * under any number of ranks (whatever layout wrote the checkpoint). */
#include <stdio.h>
#include <sys/stat.h>
#include <string.h>

#include "base/log.h"
#include "base/watchdog.h"
#include "ckpt/checkpoint.h"
#include "data/dataset.h"
#include "data/stream.h"
#include "cli.h"
#include "tensor/tensor.h"
#include "train/eval.h"
#include "train/train.h"

typedef struct eval_options {
    const char *ckpt, *data, *json, *precision, *split; /* split: NULL = valid when there is one */
    uint64_t max_samples, seed;
    int micro_batch;
} eval_options;

static status_t set_option(void *ctx, int key, const char *text, double v)
{
    eval_options *o = ctx;
    switch (key) {
    case 'S':
        FAIL_IF(strcmp(text, "train") != 0 && strcmp(text, "valid") != 0, ST_USAGE,
                "eval: --split must be train or valid (found '%s')", text);
        o->split = text;
        break;
    case 'n': o->max_samples = (uint64_t)v; break;
    case 's': o->seed = (uint64_t)v; break;
    case 'b': o->micro_batch = (int)v; break;
    }
    return ST_OK;
}

static status_t parse_options(int argc, char **argv, eval_options *o)
{
    *o = (eval_options){.seed = EVAL_SEED, .micro_batch = 8, .precision = "auto"};
    const cli_option options[] = {
        {"ckpt", .text = &o->ckpt},
        {"data", .text = &o->data},
        {"max-samples", .key = 'n', .min = 0, .max = 1e15, .integer = 1},
        {"json", .text = &o->json},
        {"seed", .key = 's', .min = 0, .max = 1e15, .integer = 1},
        {"micro-batch", .key = 'b', .min = 1, .max = 1 << 20, .integer = 1},
        {"precision", .text = &o->precision},
        {"split", .key = 'S'},
        {0},
    };
    int first;
    TRY(cli_parse_options("eval", argc, argv, options, set_option, o, &first));
    FAIL_IF(first < argc, ST_USAGE, "eval: unexpected argument '%s' (see mpilm eval --help)", argv[first]);
    FAIL_IF(!o->ckpt || !o->data, ST_USAGE, "eval: --ckpt PATH and --data DATASET are required");
    /* a directory of that name goes through: only what is no directory is read as a blend */
    stream_blend bl;
    struct stat sb;
    if (stat(o->data, &sb) != 0 && stream_blend_parse(o->data, &bl) == ST_OK && bl.n > 1)
        return st_fail(ST_USAGE, "eval: --data '%s' is a blend of %d datasets (expected one dataset directory; blends "
                       "are for training); evaluate each dataset on its own, e.g. --data %s", o->data, bl.n,
                       bl.path[0]);
    st_clear();
    return ST_OK;
}

static void print_table(const eval_result *r)
{
    printf("eval results\n");
    printf("  %-12s %llu\n  %-12s %llu\n", "samples", (unsigned long long)r->samples, "tokens",
           (unsigned long long)r->tokens);
    if (r->lm_targets) printf("  %-12s %.4f\n  %-12s %.3f\n", "lm_loss", r->lm_loss, "perplexity", r->perplexity);
    if (r->mlm_targets)
        printf("  %-12s %.4f\n  %-12s %.4f\n", "mlm_loss", r->mlm_loss, "mlm_accuracy", r->mlm_accuracy);
    if (r->nsp_targets)
        printf("  %-12s %.4f\n  %-12s %.4f\n", "nsp_loss", r->nsp_loss, "nsp_accuracy", r->nsp_accuracy);
}

/* --split, or the valid split when the dataset has one, else train; the valid
 * split of a dataset without one is a usage error (dataset_open_split's). */
static status_t choose_split(const eval_options *o, dataset_split *split)
{
    if (!o->split) {
        *split = dataset_has_split(o->data, DATASET_SPLIT_VALID) ? DATASET_SPLIT_VALID : DATASET_SPLIT_TRAIN;
        return ST_OK;
    }
    *split = strcmp(o->split, "valid") == 0 ? DATASET_SPLIT_VALID : DATASET_SPLIT_TRAIN;
    dataset d;
    status_t st = dataset_open_split(&d, o->data, *split);
    if (st != ST_OK) return st_context(st, "eval --split %s: ", o->split);
    dataset_close(&d);
    return ST_OK;
}

/* The dataset must be tokenized as the checkpoint was trained. */
static status_t check_dataset_tokenizer(const ckpt_reader *r, const char *data)
{
    dataset_info di;
    TRY(dataset_info_read(data, &di));
    char what[4200];
    snprintf(what, sizeof what, "the dataset %s", data);
    return ckpt_check_tokenizer(r, di.kind == TOKENIZER_BPE ? "bpe" : "wordpiece", di.fingerprint, di.vocab_size,
                                what, "evaluate on a dataset prepared with the checkpoint's vocabulary (mpilm prep "
                                "--vocab CHECKPOINT/vocab ...)");
}

/* The objective settings the checkpoint was trained with (data.mask_prob,
 * data.nsp), read from its manifest's configuration as train reads a config
 * file's: through the schema, validated, its default where the manifest
 * records none (an imported checkpoint). */
static status_t trained_objective(const ckpt_reader *r, eval_spec *spec)
{
    static const char *const keys[][2] = {{"data", "mask_prob"}, {"data", "nsp"}};
    config *cfg;
    TRY(cli_load_config(&cfg, NULL, NULL, 0));
    status_t st = ST_OK;
    for (int i = 0; st == ST_OK && i < 2; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.%s", keys[i][0], keys[i][1]);
        const char *value = ckpt_config_value(r, name);
        if (value) st = config_set(cfg, keys[i][0], keys[i][1], value, ckpt_path(r));
    }
    if (st == ST_OK) {
        spec->mask_prob = config_float(cfg, "data.mask_prob");
        spec->nsp = config_bool(cfg, "data.nsp");
    }
    config_free(cfg);
    return st;
}

static status_t run_eval(const eval_options *o)
{
    int size, rank;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    ckpt_reader *r;
    TRY(ckpt_open(&r, o->ckpt));
    model_config c = *ckpt_model(r);
    c.dropout = 0.0f;
    char why[160];
    dataset_split split = DATASET_SPLIT_TRAIN;
    status_t st = choose_split(o, &split);
    if (st == ST_OK) st = check_dataset_tokenizer(r, o->data);
    if (st == ST_OK) {
        st = train_precision_resolve(o->precision, 0, &c, why, sizeof why);
        if (st != ST_OK) st = st_context(ST_USAGE, "eval --precision: ");
    }
    tensor_runtime rt;
    model_stage *m = NULL;
    if (st == ST_OK) st = tensor_runtime_init(-1, size, &rt);
    if (st == ST_OK) st = cli_load_model(r, &c, o->micro_batch, &m);
    eval_spec spec = {.data_path = o->data, .split = split, .seed = o->seed, .max_samples = o->max_samples,
                      .hang_timeout = EVAL_HANG_TIMEOUT};
    if (st == ST_OK) st = trained_objective(r, &spec);
    if (st == ST_OK) st = watchdog_start(rank);
    eval_result res;
    if (st == ST_OK) {
        log_msg(LOG_INFO, "eval: %s (step %lld) on %s, %s split, %d rank%s, precision %s", ckpt_path(r),
                (long long)ckpt_step(r), o->data, dataset_split_label(split), size, size == 1 ? "" : "s", why);
        st = eval_run(m, &spec, MPI_COMM_WORLD, &res);
    }
    if (st == ST_OK && rank == 0) {
        print_table(&res);
        if (o->json) st = eval_write_json(&res, o->json);
    }
    const char *bad = st == ST_OK ? eval_first_nonfinite(&res) : NULL;
    if (bad)
        st = st_fail(ST_ERROR, "%s: eval's %s is not finite (the model gives NaN or infinite values on %s)%s; check "
                     "the checkpoint (an earlier one, or one trained with a lower train.lr)", ckpt_path(r), bad, o->data,
                     o->json ? " and is null in the --json file" : "");
    model_stage_free(m);
    ckpt_close(r);
    return st;
}

int cmd_eval(int argc, char **argv)
{
    eval_options o;
    status_t st = parse_options(argc, argv, &o);
    if (st != ST_OK) return cli_finish(st);
    cli_mpi_init(&argc, &argv);
    st = run_eval(&o);
    if (st == ST_OK) cli_mpi_finalize();
    return cli_finish(st);
}

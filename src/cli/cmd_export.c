/* mpilm export / import: a checkpoint to Hugging Face safetensors + config.json
 * and back (ckpt/export). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/checkpoint.h"
#include "ckpt/export.h"
#include "cli.h"

static status_t export_checkpoint(const char *ckpt, const char *out, safet_dtype dtype)
{
    ckpt_reader *r;
    TRY(ckpt_open(&r, ckpt));
    model_config c = *ckpt_model(r);
    model_stage *m = NULL;
    status_t st = model_stage_create(&m, &c, 0, c.n_layer, 1, 1);
    if (st == ST_OK) st = ckpt_read_stage(r, m, model_params(m), NULL, NULL);
    if (st == ST_OK) st = export_hf(&c, model_params(m), ckpt_vocab_dir(r), out, dtype);
    if (st == ST_OK) printf("export: %s (step %lld) -> %s/model.safetensors (%s), config.json%s\n", ckpt_path(r),
                            (long long)ckpt_step(r), out, safet_dtype_name(dtype),
                            ckpt_vocab_dir(r) ? ", tokenizer files" : "");
    model_stage_free(m);
    ckpt_close(r);
    return st;
}

int cmd_export(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"ckpt", required_argument, 0, 'c'}, {"format", required_argument, 0, 'f'},
        {"out", required_argument, 0, 'o'},  {"dtype", required_argument, 0, 'd'},
        {0, 0, 0, 0},
    };
    const char *ckpt = NULL, *format = "hf", *out = NULL, *dtype_name = "fp32";
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (ch) {
        case 'c': ckpt = optarg; break;
        case 'f': format = optarg; break;
        case 'o': out = optarg; break;
        case 'd': dtype_name = optarg; break;
        default:
            return cli_finish(st_fail(ST_USAGE, "export: unknown or incomplete option '%s' (see mpilm export --help)",
                                      argv[optind - 1]));
        }
    }
    if (!ckpt || !out || optind < argc)
        return cli_finish(st_fail(ST_USAGE, "export: --ckpt PATH --format hf --out DIR are required"));
    if (strcmp(format, "hf") != 0)
        return cli_finish(st_fail(ST_USAGE, "export: --format %s is not known (expected hf)", format));
    safet_dtype dtype;
    status_t st = export_dtype_parse(dtype_name, &dtype);
    return cli_finish(st == ST_OK ? export_checkpoint(ckpt, out, dtype) : st);
}

/* 1 when dir holds vocabulary files (vocab.txt, or vocab.json / encoder.json):
 * an export of a run without one (random data) has none, and imports as such. */
static int has_vocab(const char *dir)
{
    static const char *const names[] = {"vocab.txt", "vocab.json", "encoder.json"};
    char path[4096];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (access(path, F_OK) == 0) return 1;
    }
    return 0;
}

int cmd_import(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"hf", required_argument, 0, 'h'}, {"out", required_argument, 0, 'o'}, {0, 0, 0, 0},
    };
    const char *hf = NULL, *out = NULL;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (ch) {
        case 'h': hf = optarg; break;
        case 'o': out = optarg; break;
        default:
            return cli_finish(st_fail(ST_USAGE, "import: unknown or incomplete option '%s' (see mpilm import --help)",
                                      argv[optind - 1]));
        }
    }
    if (!hf || !out || optind < argc) return cli_finish(st_fail(ST_USAGE, "import: --hf DIR --out RUN_DIR are required"));
    model_config c;
    float *params = NULL;
    status_t st = import_hf(hf, &c, &params);
    int vocab = has_vocab(hf);
    if (st == ST_OK) st = ckpt_write_model(out, &c, params, vocab ? hf : NULL);
    if (st == ST_OK) printf("import: %s -> %s/latest%s\n", hf, out, vocab ? "" : " (no vocabulary files: none kept)");
    free(params);
    return cli_finish(st);
}

/* mpilm export / import: a checkpoint to Hugging Face safetensors + config.json
 * and back (ckpt/export). */
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
    status_t st = cli_load_model(r, &c, 1, &m);
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
    const char *ckpt = NULL, *format = "hf", *out = NULL, *dtype_name = "fp32";
    const cli_option options[] = {
        {"ckpt", .text = &ckpt}, {"format", .text = &format}, {"out", .text = &out}, {"dtype", .text = &dtype_name},
        {0},
    };
    int first;
    status_t parsed = cli_parse_options("export", argc, argv, options, NULL, NULL, &first);
    if (parsed != ST_OK) return cli_finish(parsed);
    if (!ckpt || !out || first < argc)
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
    const char *hf = NULL, *out = NULL;
    const cli_option options[] = {{"hf", .text = &hf}, {"out", .text = &out}, {0}};
    int first;
    status_t parsed = cli_parse_options("import", argc, argv, options, NULL, NULL, &first);
    if (parsed != ST_OK) return cli_finish(parsed);
    if (!hf || !out || first < argc) return cli_finish(st_fail(ST_USAGE, "import: --hf DIR --out RUN_DIR are required"));
    model_config c;
    float *params = NULL;
    status_t st = export_import_hf(hf, &c, &params);
    int vocab = has_vocab(hf);
    if (st == ST_OK) st = ckpt_write_model(out, &c, params, vocab ? hf : NULL);
    if (st == ST_OK) printf("import: %s -> %s/latest%s\n", hf, out, vocab ? "" : " (no vocabulary files: none kept)");
    free(params);
    return cli_finish(st);
}

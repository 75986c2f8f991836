#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "base/bigmem.h"
#include "base/log.h"
#include "cli.h"
#include "data/prep.h"

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return 1;
    return 0;
}

status_t cli_load_config(config **out, const char *path, char *const *sets, int n_sets)
{
    int n_keys;
    const config_key *schema = cli_schema(&n_keys);
    config *c = config_new(schema, n_keys);
    FAIL_IF(!c, ST_NOMEM, "out of memory creating the configuration");
    status_t st = path ? config_load_file(c, path) : ST_OK;
    /* An empty file (or a truncated one) would train the default model without
     * a word; it is fine when --set chooses the model (--config /dev/null). */
    int model_set = 0;
    for (int i = 0; i < n_sets; i++) model_set |= strncmp(sets[i] + strspn(sets[i], " \t"), "model.", 6) == 0;
    if (st == ST_OK && path && config_n_given(c) == 0 && !model_set)
        st = st_fail(ST_CONFIG, "%s: the config file sets no key (it is empty, or only comments and section "
                     "headers), so the default model would be trained; give the keys (examples in "
                     "launch/configs/), or choose the model with --set model.KEY=VALUE", path);
    for (int i = 0; st == ST_OK && i < n_sets; i++) st = config_set_arg(c, sets[i]);
    if (st != ST_OK) {
        config_free(c);
        return st;
    }
    *out = c;
    return ST_OK;
}

void cli_mpi_init(int *argc, char ***argv)
{
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;
    bigmem_keep_freed_memory();
    int provided;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    /* Errors come back as return codes so they can be reported with context
     * and end the job through st_die(). */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    log_set_rank(rank, size);
}

void cli_mpi_finalize(void)
{
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized) MPI_Finalize();
}

status_t cli_number(const char *cmd, const char *option, const char *text, double min, double max, int integer,
                    double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    /* written so that NaN fails the range test too */
    FAIL_IF(end == text || *end || errno || !(v >= min && v <= max) || (integer && v != floor(v)), ST_USAGE,
            "%s: %s '%s' is not %s in [%.15g, %.15g]; see mpilm %s --help", cmd, option, text,
            integer ? "an integer" : "a number", min, max, cmd);
    *out = v;
    return ST_OK;
}

/* getopt_long's value of option i: above any character it returns itself */
#define OPTION_VALUE(i) (256 + (i))
#define MAX_OPTIONS 32

static status_t set_option(const char *cmd, const cli_option *opt, const char *text, cli_option_handler handle,
                           void *ctx)
{
    if (opt->text) {
        *opt->text = text;
        return ST_OK;
    }
    if (opt->flag) {
        *opt->flag = 1;
        return ST_OK;
    }
    double number = 0;
    if (opt->max > opt->min) {
        char dashed[64];
        snprintf(dashed, sizeof dashed, "--%s", opt->name);
        TRY(cli_number(cmd, dashed, text, opt->min, opt->max, opt->integer, &number));
    }
    return handle(ctx, opt->key, text, number);
}

status_t cli_parse_options(const char *cmd, int argc, char **argv, const cli_option *options,
                           cli_option_handler handle, void *ctx, int *first_operand)
{
    struct option long_options[MAX_OPTIONS + 1] = {{0}};
    int n = 0;
    for (; options[n].name; n++) {
        FAIL_IF(n == MAX_OPTIONS, ST_ERROR, "%s: more than %d options", cmd, MAX_OPTIONS);
        long_options[n] = (struct option){options[n].name, options[n].flag ? no_argument : required_argument, 0,
                                          OPTION_VALUE(n)};
    }
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        if (ch < OPTION_VALUE(0) || ch >= OPTION_VALUE(n))
            return st_fail(ST_USAGE, "%s: unknown or incomplete option '%s' (see mpilm %s --help)", cmd,
                           argv[optind - 1], cmd);
        TRY(set_option(cmd, &options[ch - OPTION_VALUE(0)], optarg, handle, ctx));
    }
    *first_operand = optind;
    return ST_OK;
}

void cli_json_string(FILE *out, const char *s, size_t n)
{
    putc('"', out);
    for (size_t i = 0; i < n;) {
        size_t valid = prep_utf8_check((const unsigned char *)s + i, n - i);
        for (size_t end = i + valid; i < end; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
            else if (c < 0x20) fprintf(out, "\\u%04x", c);
            else putc(c, out);
        }
        if (i < n) fputs("\xEF\xBF\xBD", out), i++; /* U+FFFD for the invalid byte */
    }
    putc('"', out);
}

status_t cli_load_model(const ckpt_reader *r, const model_config *c, int B, model_stage **out)
{
    model_stage *m = NULL;
    *out = NULL;
    status_t st = model_stage_create(&m, c, 0, c->n_layer, B, 1);
    if (st == ST_OK) st = ckpt_read_stage(r, m, model_params(m), NULL, NULL);
    if (st != ST_OK) {
        model_stage_free(m);
        return st;
    }
    *out = m;
    return ST_OK;
}

int cli_finish(status_t st)
{
    if (st != ST_OK) st_die(st);
    cli_mpi_finalize();
    return 0;
}

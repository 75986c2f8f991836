/* cli — the mpilm command line: one file per subcommand, no library logic.
 *
 * Owns: option parsing, loading the configuration (the schema of
 * docs/design.md's "Configuration" is in schema.c), MPI start-up for the
 * commands that need it, turning a status into a message and an exit code.
 * Must not touch: anything a library module should own.
 */
#ifndef MPILM_CLI_H
#define MPILM_CLI_H

#include <stdio.h>

#include "base/config.h"
#include "base/status.h"
#include "ckpt/checkpoint.h"

#define MPILM_VERSION "0.1.0"

typedef struct command {
    const char *name;
    const char *summary;
    const char *usage;              /* full --help text */
    int (*run)(int argc, char **argv);
} command;

extern const command commands[];
extern const int n_commands;

/* The configuration schema (docs/design.md, "Configuration"). */
const config_key *cli_schema(int *n_keys);

/* 1 if argv holds -h or --help. */
int cli_wants_help(int argc, char **argv);

/* A config from the schema defaults, FILE (may be NULL) and "--set" overrides. */
status_t cli_load_config(config **out, const char *path, char *const *sets, int n_sets);

/* MPI_Init_thread (funneled) and the log's rank prefix; idempotent. */
void cli_mpi_init(int *argc, char ***argv);
void cli_mpi_finalize(void);

/* One option of a subcommand for cli_parse_options, named without "--". It
 * has exactly one target: text (takes a value, kept as given), flag (takes
 * none, set to 1) or key (takes a value, passed with key to the command's
 * handler; when max > min the value is first read by cli_number in
 * [min, max], an integer when integer is set, and passed as number). A table
 * ends with an entry whose name is NULL. */
typedef struct cli_option {
    const char *name;
    const char **text;
    int *flag;
    int key;
    double min, max;
    int integer;
} cli_option;

typedef status_t (*cli_option_handler)(void *ctx, int key, const char *text, double number);

/* Reads the options of argv (getopt_long, long options only, operands
 * permuted to the end) into their targets in the order given; stops at the
 * first failure: an unknown option, or one without its value, is ST_USAGE
 * "CMD: unknown or incomplete option 'ARG' (see mpilm CMD --help)".
 * *first_operand is the index of the first operand (argc when none). */
status_t cli_parse_options(const char *cmd, int argc, char **argv, const cli_option *options,
                           cli_option_handler handle, void *ctx, int *first_operand);

/* Reads the value of a numeric command-line option: the whole text must be a
 * number in [min, max] (integer when integer is set); else ST_USAGE naming
 * the command, the option, what was found and what is expected. */
status_t cli_number(const char *cmd, const char *option, const char *text, double min, double max, int integer,
                    double *out);

/* Writes s[0..n) as a JSON string: '"', '\\' and control characters
 * escaped, valid UTF-8 kept as it is, each byte of an invalid sequence
 * replaced by U+FFFD (as prep --replace-invalid does), so the output is
 * valid JSON whatever the bytes. */
void cli_json_string(FILE *out, const char *s, size_t n);

/* The whole model of checkpoint r (layers 0 to n_layer in one stage) for
 * micro-batches of B sequences, its parameters read: the model eval,
 * generate and export run. c is the checkpoint's model config as the command
 * adjusts it (dropout, seq_len, precision). On failure *out is NULL. */
status_t cli_load_model(const ckpt_reader *r, const model_config *c, int B, model_stage **out);

/* Ends the command: message through st_die() unless st is ST_OK. */
int cli_finish(status_t st);

#endif

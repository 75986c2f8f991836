/* mpilm — train transformer language models on CPU clusters with MPI. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void print_usage(FILE *out)
{
    fprintf(out, "usage: mpilm COMMAND [options]   (mpilm COMMAND --help for its options)\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++) fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nmpilm --version prints the version. Documentation: docs/usage.md\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("mpilm %s\n", MPILM_VERSION);
        return EXIT_OK;
    }
    for (int i = 0; i < n_commands; i++) {
        const command *cmd = &commands[i];
        if (strcmp(argv[1], cmd->name) != 0) continue;
        if (cli_wants_help(argc - 1, argv + 1)) {
            fputs(cmd->usage, stdout);
            return EXIT_OK;
        }
        return cmd->run(argc - 1, argv + 1);
    }
    fprintf(stderr, "mpilm: error: unknown command '%s'\n", argv[1]);
    print_usage(stderr);
    return EXIT_USAGE;
}

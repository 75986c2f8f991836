/* Fuzz target config: an INI file against mpilm's own schema (base/config.c),
 * and each of its lines as a --set argument. What loads must print as an INI
 * file that loads back to the same configuration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "cli/cli.h"
#include "fuzz_common.h"

/* config_print of c, malloc'd. */

static config *fuzz_config_new(void)
{
    int n;
    const config_key *schema = cli_schema(&n);
    return config_new(schema, n);
}
static char *print_config(const config *c, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    FUZZ_CHECK(f, "open_memstream failed");
    config_print(c, f, 0);
    fclose(f);
    return text;
}

static void check_round_trip(const config *c)
{
    size_t len1, len2;
    char *first = print_config(c, &len1), path[4200];
    fuzz_write("printed.ini", first, len1, path, sizeof path);
    config *again = fuzz_config_new();
    FUZZ_CHECK(again, "out of memory");
    FUZZ_CHECK(config_load_file(again, path) == ST_OK, "the printed configuration does not load back: %s",
               st_message());
    char *second = print_config(again, &len2);
    FUZZ_CHECK(len1 == len2 && memcmp(first, second, len1) == 0, "the printed configuration loads back different");
    free(first);
    free(second);
    config_free(again);
}

static void set_lines(const uint8_t *data, size_t size)
{
    config *c = fuzz_config_new();
    FUZZ_CHECK(c, "out of memory");
    char line[1100];
    for (size_t i = 0, lines = 0; i < size && lines < 8; lines++) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t n = nl ? (size_t)(nl - (data + i)) : size - i;
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line - 1 ? n : sizeof line - 1), (const char *)data + i);
        config_set_arg(c, line);
        i += n + 1;
    }
    config_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[4200];
    fuzz_write("config.ini", data, size, path, sizeof path);
    config *c = fuzz_config_new();
    FUZZ_CHECK(c, "out of memory");
    if (config_load_file(c, path) == ST_OK) check_round_trip(c);
    config_free(c);
    set_lines(data, size);
    st_clear();
    return 0;
}

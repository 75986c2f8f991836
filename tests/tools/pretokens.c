/* pretokens < LINES: for each input line, the byte lengths of the pieces that
 * GPT-2's split regex (bpe_pretokenize) cuts it into, separated by spaces.
 * tests/integration/tokenizer_unicode.sh compares them with Hugging Face's
 * ByteLevel pre-tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_internal.h"

static status_t piece(void *ctx, const char *p, size_t len)
{
    (void)p;
    int *first = ctx;
    printf(*first ? "%zu" : " %zu", len);
    *first = 0;
    return ST_OK;
}

int main(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        if (n > 0 && line[n - 1] == '\n') n--;
        int first = 1;
        if (bpe_pretokenize(line, (size_t)n, piece, &first) != ST_OK) {
            fprintf(stderr, "pretokens: %s\n", st_message());
            return 1;
        }
        putchar('\n');
    }
    free(line);
    return 0;
}

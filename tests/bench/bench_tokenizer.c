/* Tokenizer encoding speed: encodes every line of a text file, REPEATS times,
 * on one thread, and prints the median MB/s with the token count and a
 * checksum of the ids (h = h*31 + id over all ids, uint32) so that a peer's
 * run can be checked for identical output.
 *
 *   bench_tokenizer VOCAB_DIR bpe|wordpiece FILE [REPEATS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "base/timer.h"
#include "data/tokenizer.h"

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One pass over all lines from a fresh tokenizer (cold word cache); returns seconds. */
static double encode_all(const char *vocab, tokenizer_kind kind, const char *data, size_t len, size_t *tokens,
                         uint32_t *checksum)
{
    tokenizer *t;
    status_t st = tokenizer_load(vocab, kind, &t);
    if (st != ST_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", st_message());
        exit(1);
    }
    uint32_t *ids = NULL;
    size_t cap = 0;
    *tokens = 0;
    *checksum = 0;
    double t0 = time_now();
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(data + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - data - i) : len - i, got = 0;
        if (tokenizer_encode(t, data + i, n, &ids, &got, &cap) != ST_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", st_message());
            exit(1);
        }
        for (size_t k = 0; k < got; k++) *checksum = *checksum * 31 + ids[k];
        *tokens += got;
        i += n + 1;
    }
    double dt = time_now() - t0;
    free(ids);
    tokenizer_free(t);
    return dt;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench_tokenizer VOCAB_DIR bpe|wordpiece FILE [REPEATS]\n");
        return 2;
    }
    tokenizer_kind kind = strcmp(argv[2], "bpe") == 0 ? TOKENIZER_BPE : TOKENIZER_WORDPIECE;
    int repeats = argc > 4 ? atoi(argv[4]) : 3;
    if (repeats < 1 || repeats > 100) repeats = 3;
    char *data;
    size_t len;
    if (fileio_read_file(argv[3], &data, &len) != ST_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", st_message());
        return 1;
    }
    double mbps[100];
    size_t tokens = 0;
    uint32_t checksum = 0;
    for (int r = 0; r < repeats; r++) mbps[r] = (double)len / 1e6 / encode_all(argv[1], kind, data, len, &tokens, &checksum);
    qsort(mbps, (size_t)repeats, sizeof *mbps, compare_double);
    printf("mpilm %s: %.2f MB/s (median of %d), %zu tokens, checksum %08x\n", argv[2], mbps[repeats / 2], repeats,
           tokens, checksum);
    free(data);
    return 0;
}

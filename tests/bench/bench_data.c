/* Reader throughput of data/stream on one core: builds samples of one
 * objective from a dataset and prints tokens/s (T tokens per sample) and the
 * peak resident memory of the process.
 *   bench_data DATASET causal|mlm-nsp|mlm [SECONDS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/timer.h"
#include "data/stream.h"

static long peak_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_data DATASET causal|mlm-nsp|mlm [SECONDS]\n");
        return 2;
    }
    double seconds = argc > 3 ? atof(argv[3]) : 3.0;
    int causal = strcmp(argv[2], "causal") == 0, T = 128, B = 32;
    stream_spec sp = {.path = argv[1], .objective = causal ? STREAM_CAUSAL : STREAM_MLM, .seq_len = T,
                      .mask_prob = 0.15, .nsp = strcmp(argv[2], "mlm-nsp") == 0, .seed = 1, .dp_rank = 0,
                      .dp_size = 1, .chunk = B, .vocab_size = 1 << 30};
    long rss_before = peak_rss_kb();
    stream *s;
    batch b;
    if (stream_open(&s, &sp) != ST_OK || batch_alloc(&b, B, T) != ST_OK) {
        fprintf(stderr, "bench_data: %s\n", st_message());
        return 1;
    }
    uint64_t samples = 0;
    double t0 = time_now(), t;
    do {
        if (stream_next(s, &b) != ST_OK) {
            fprintf(stderr, "bench_data: %s\n", st_message());
            return 1;
        }
        samples += (uint64_t)B;
    } while ((t = time_now() - t0) < seconds);
    stream_cursor c;
    stream_cursor_get(s, &c);
    printf("%s: %.0f tokens/s (%llu samples of %d in %.2f s, %llu epochs begun), peak RSS %ld MB (%ld MB before open)\n",
           argv[2], (double)samples * T / t, (unsigned long long)samples, T, t, (unsigned long long)c.epoch + 1,
           peak_rss_kb() / 1024, rss_before / 1024);
    stream_close(s);
    batch_free(&b);
    return 0;
}

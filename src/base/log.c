#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int log_rank = 0, log_size = 1;
static log_level log_threshold = LOG_INFO;

static void log_init_from_env(void)
{
    static int done = 0;
    if (done) return;
    done = 1;
    const char *level = getenv("MPILM_LOG");
    if (level && log_level_parse(level) >= 0) log_threshold = (log_level)log_level_parse(level);
}

void log_set_rank(int rank, int world_size)
{
    log_rank = rank;
    log_size = world_size;
}


log_level log_get_level(void)
{
    log_init_from_env();
    return log_threshold;
}

int log_level_parse(const char *name)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

void log_msg(log_level level, const char *fmt, ...)
{
    if (level > log_get_level()) return;
    if (level >= LOG_INFO && log_rank != 0) return;
    /* Warnings and errors go to stderr so they survive `> log` redirection. */
    FILE *out = level <= LOG_WARN ? stderr : stdout;
    char line[4096];
    int n = 0;
    if (log_size > 1) n = snprintf(line, sizeof line, "[rank %d] ", log_rank);
    if (level == LOG_WARN) n += snprintf(line + n, sizeof line - (size_t)n, "warning: ");
    if (level == LOG_ERROR) n += snprintf(line + n, sizeof line - (size_t)n, "error: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One fputs per line keeps lines of different ranks from interleaving. */
    fputs(line, out);
    fputc('\n', out);
    fflush(out);
}

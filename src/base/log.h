/* base/log — leveled logging with a rank prefix.
 *
 * Owns: where informational output goes and which ranks print it.
 * By default only rank 0 prints info/debug; warnings and errors print on every
 * rank, prefixed "[rank R]" when the job has more than one rank.
 * Must not touch: MPI (the caller tells it the rank with log_set_rank).
 */
#ifndef MPILM_BASE_LOG_H
#define MPILM_BASE_LOG_H

typedef enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG } log_level;

void log_set_rank(int rank, int world_size);
log_level log_get_level(void);

/* Parses "error|warn|info|debug"; returns -1 for anything else. */
int log_level_parse(const char *name);

void log_msg(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif

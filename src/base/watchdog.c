/* base/watchdog — see watchdog.h. One mutex guards the armed stretch; the
 * thread waits on a condition variable (CLOCK_MONOTONIC) until the deadline
 * or a change, so arming and disarming cost a lock and a signal. */
#include "base/watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/timer.h"

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int running, stopping, rank;
    unsigned long generation; /* bumped by every arm and disarm */
    double deadline, seconds; /* deadline 0: disarmed */
    char what[256];
    watchdog_fire_fn fire;
} wd = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void fire_default(const char *message)
{
    /* one write: no stdio locks, which the stuck thread may hold */
    char line[640];
    int n = snprintf(line, sizeof line, "mpilm: error: %s\n", message);
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        (void)w;
    }
    _exit(1);
}

static struct timespec abs_time(double t)
{
    /* t is on the monotonic clock, as the condition variable's */
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    return ts;
}

static void *watch(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&wd.mu);
    while (!wd.stopping) {
        if (wd.deadline <= 0) {
            pthread_cond_wait(&wd.cv, &wd.mu);
            continue;
        }
        unsigned long gen = wd.generation;
        struct timespec ts = abs_time(wd.deadline);
        int rc = pthread_cond_timedwait(&wd.cv, &wd.mu, &ts);
        if (rc == ETIMEDOUT && !wd.stopping && wd.generation == gen && wd.deadline > 0 && time_now() >= wd.deadline) {
            char message[512];
            snprintf(message, sizeof message,
                     "[rank %d] watchdog: %s did not finish within %g s; a peer rank is stopped, dead or hung (see "
                     "its own message, if any), or the file system stalls; the whole job ends. If this stretch is "
                     "legitimately this slow, raise dist.hang_timeout (collectives) or ckpt.io_timeout (checkpoint "
                     "I/O)", wd.rank, wd.what, wd.seconds);
            watchdog_fire_fn fn = wd.fire ? wd.fire : fire_default;
            wd.deadline = 0; /* fires once per arming */
            pthread_mutex_unlock(&wd.mu);
            fn(message);
            pthread_mutex_lock(&wd.mu);
        }
    }
    pthread_mutex_unlock(&wd.mu);
    return NULL;
}

status_t watchdog_start(int rank)
{
    pthread_mutex_lock(&wd.mu);
    wd.rank = rank;
    if (wd.running) {
        pthread_mutex_unlock(&wd.mu);
        return ST_OK;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&wd.cv, &attr);
    pthread_condattr_destroy(&attr);
    wd.stopping = 0;
    wd.deadline = 0;
    int rc = pthread_create(&wd.thread, NULL, watch, NULL);
    wd.running = rc == 0;
    pthread_mutex_unlock(&wd.mu);
    if (rc != 0) return st_fail(ST_ERROR, "watchdog: cannot start its thread (%s)", strerror(rc));
    return ST_OK;
}

void watchdog_arm(const char *what, double seconds)
{
    pthread_mutex_lock(&wd.mu);
    wd.generation++;
    wd.seconds = seconds;
    wd.deadline = seconds > 0 ? time_now() + seconds : 0;
    snprintf(wd.what, sizeof wd.what, "%s", what ? what : "an operation");
    if (wd.running) pthread_cond_signal(&wd.cv);
    pthread_mutex_unlock(&wd.mu);
}

void watchdog_disarm(void) { watchdog_arm(NULL, 0); }

void watchdog_set_fire(watchdog_fire_fn fn)
{
    pthread_mutex_lock(&wd.mu);
    wd.fire = fn;
    pthread_mutex_unlock(&wd.mu);
}

void watchdog_stop(void)
{
    pthread_mutex_lock(&wd.mu);
    if (!wd.running) {
        pthread_mutex_unlock(&wd.mu);
        return;
    }
    wd.stopping = 1;
    pthread_cond_signal(&wd.cv);
    pthread_mutex_unlock(&wd.mu);
    pthread_join(wd.thread, NULL);
    pthread_mutex_lock(&wd.mu);
    wd.running = 0;
    wd.deadline = 0;
    pthread_cond_destroy(&wd.cv);
    pthread_mutex_unlock(&wd.mu);
}

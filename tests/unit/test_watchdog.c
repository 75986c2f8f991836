/* base/watchdog: a deadline fires once, with the stretch and the rank named;
 * disarming and re-arming cancel or move it; the default ends the process
 * with status 1 and the message on stderr. Timings use margins of 10x or
 * more (the machine may be busy): a deadline of 0.1 s is checked at 1 s. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/watchdog.h"

static char fired[512];
static int n_fired;

static void record(const char *message)
{
    snprintf(fired, sizeof fired, "%s", message);
    __atomic_add_fetch(&n_fired, 1, __ATOMIC_SEQ_CST);
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int count(void) { return __atomic_load_n(&n_fired, __ATOMIC_SEQ_CST); }

static void setup(void)
{
    n_fired = 0;
    fired[0] = '\0';
    watchdog_set_fire(record);
    cr_assert_eq(watchdog_start(3), ST_OK);
}

static void teardown(void) { watchdog_stop(); }

TestSuite(watchdog, .init = setup, .fini = teardown);

Test(watchdog, fires_once_naming_the_stretch_and_rank)
{
    watchdog_arm("the checkpoint save of step 7", 0.1);
    sleep_s(1.0);
    cr_assert_eq(count(), 1, "fired %d times", count());
    cr_expect(strstr(fired, "[rank 3]"), "%s", fired);
    cr_expect(strstr(fired, "the checkpoint save of step 7 did not finish within 0.1 s"), "%s", fired);
    sleep_s(0.3);
    cr_expect_eq(count(), 1, "fired again without being armed again");
}

Test(watchdog, disarm_cancels)
{
    watchdog_arm("a collective", 0.3);
    sleep_s(0.05);
    watchdog_disarm();
    sleep_s(1.0);
    cr_expect_eq(count(), 0);
}

Test(watchdog, rearming_moves_the_deadline)
{
    watchdog_arm("step 1", 0.4);
    sleep_s(0.2);
    watchdog_arm("step 2", 5.0); /* would have fired at 0.4 s */
    sleep_s(0.8);
    cr_expect_eq(count(), 0, "fired for a replaced stretch: %s", fired);
    watchdog_arm("step 3", 0.05);
    sleep_s(1.0);
    cr_assert_eq(count(), 1);
    cr_expect(strstr(fired, "step 3"), "%s", fired);
}

Test(watchdog, zero_seconds_means_disarmed)
{
    watchdog_arm("never", 0);
    sleep_s(0.3);
    cr_expect_eq(count(), 0);
}

/* The default action, in a child: exit status 1 and one line on stderr. */
Test(watchdog, default_ends_the_process_with_status_1)
{
    watchdog_stop(); /* the suite's thread would not survive fork() */
    int fd[2];
    cr_assert_eq(pipe(fd), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], STDERR_FILENO);
        close(fd[0]);
        watchdog_set_fire(NULL);
        if (watchdog_start(5) != ST_OK) _exit(3);
        watchdog_arm("the metrics gather after step 4", 0.1);
        sleep_s(10.0);
        _exit(0); /* not reached when the watchdog works */
    }
    close(fd[1]);
    char out[1024] = {0};
    size_t used = 0;
    ssize_t r;
    while (used < sizeof out - 1 && (r = read(fd[0], out + used, sizeof out - 1 - used)) > 0) used += (size_t)r;
    close(fd[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 1, "child status %#x", status);
    cr_expect(strstr(out, "mpilm: error: [rank 5] watchdog: the metrics gather after step 4 did not finish within "
                          "0.1 s"), "stderr: %s", out);
}

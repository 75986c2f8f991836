/* ckpt/run_dir — the run directory as a whole (docs/formats.md, "Run
 * directory"): its lock, whether it holds a run, and --overwrite's clearing.
 * What a run writes there: step-NNNNNNN/ (checkpoints), .step-NNNNNNN.tmp and
 * .step-NNNNNNN.old (a save in progress or moved aside), latest, .latest.tmp,
 * best, .best.tmp (ckpt.keep_best),
 * metrics.jsonl (and its .metrics.jsonl.tmp), .lock. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/hash.h"
#include "ckpt/checkpoint_internal.h"

#define LOCK_NAME ".lock"

uint64_t ckpt_run_new_id(void)
{
    uint64_t id = 0;
    while (id == 0) {
        if (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id) {
            /* no entropy source: the clock and the pid still differ between runs */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t mix[3] = {(uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec, (uint64_t)getpid()};
            id = hash_xxh3(mix, sizeof mix);
        }
    }
    return id;
}

/* "pid PID on HOST since TIME" of this process. */
static void describe_holder(char *buf, size_t len)
{
    char host[256] = "?", when[64] = "?";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = '\0';
    time_t now = time(NULL);
    struct tm tm;
    if (localtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %z", &tm);
    snprintf(buf, len, "pid %d on %s since %s\n", (int)getpid(), host, when);
}

status_t ckpt_run_lock(const char *run_dir, int *fd)
{
    char path[4200], holder[512];
    *fd = -1;
    TRY(fileio_make_dirs(run_dir, 0755));
    snprintf(path, sizeof path, "%s/%s", run_dir, LOCK_NAME);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    FAIL_IF(f < 0, ST_IO, "%s: cannot open the run directory's lock file (%s); check that the run directory is "
            "writable", path, strerror(errno));
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        ssize_t n = pread(f, holder, sizeof holder - 1, 0);
        close(f);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        FAIL_IF(err != EWOULDBLOCK, ST_IO, "%s: cannot lock (%s); the run directory must be on a file system "
                "with flock", path, strerror(err));
        return st_fail(ST_USAGE, "%s: the run directory is in use by another mpilm run (%s holds %s); wait for "
                       "that run to end, or set run.dir to another directory", run_dir,
                       holder[0] ? holder : "another process", path);
    }
    describe_holder(holder, sizeof holder);
    size_t len = strlen(holder);
    if (ftruncate(f, 0) != 0 || pwrite(f, holder, len, 0) != (ssize_t)len) {
        int err = errno;
        close(f);
        return st_fail(ST_IO, "%s: cannot write (%s); check that the run directory is writable", path,
                       strerror(err));
    }
    *fd = f;
    return ST_OK;
}

void ckpt_run_unlock(int fd)
{
    if (fd < 0) return;
    /* emptied: no stale holder for a later refusal to name (a crash leaves it) */
    if (ftruncate(fd, 0) != 0) {
        /* the lock is released all the same */
    }
    close(fd);
}

/* The step of the last line of RUN_DIR/metrics.jsonl, or -1. */
static int64_t metrics_last_step(const char *path)
{
    char *text;
    size_t len;
    if (fileio_read_file(path, &text, &len) != ST_OK) {
        st_clear();
        return -1;
    }
    int64_t step = -1;
    for (const char *at = strstr(text, "\"step\":"); at; at = strstr(at + 7, "\"step\":"))
        step = strtoll(at + 7, NULL, 10);
    free(text);
    return step;
}

status_t ckpt_run_check_new(const char *run_dir)
{
    int64_t *steps;
    int n;
    TRY(ckpt_list_steps(run_dir, &steps, &n));
    int64_t newest = n > 0 ? steps[0] : -1;
    free(steps);
    char path[4200], target[256] = "", found[1024] = "";
    size_t used = 0;
    if (newest >= 0)
        used += (size_t)snprintf(found + used, sizeof found - used, "checkpoints up to step %lld (step-%07lld)",
                                 (long long)newest, (long long)newest);
    snprintf(path, sizeof path, "%s/latest", run_dir);
    ssize_t k = readlink(path, target, sizeof target - 1);
    if (k >= 0 && used < sizeof found) {
        target[k] = '\0';
        used += (size_t)snprintf(found + used, sizeof found - used, "%slatest -> %s", used ? ", " : "", target);
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    struct stat st;
    if (lstat(path, &st) == 0 && used < sizeof found) {
        int64_t last = metrics_last_step(path);
        if (last >= 0)
            snprintf(found + used, sizeof found - used, "%smetrics.jsonl up to step %lld", used ? ", " : "",
                     (long long)last);
        else
            snprintf(found + used, sizeof found - used, "%san empty metrics.jsonl", used ? ", " : "");
    }
    if (!found[0]) return ST_OK;
    return st_fail(ST_USAGE, "%s: holds an earlier run (%s), and train was not told what to do with it; pass "
                   "--resume auto to continue it, --overwrite to start over (removes its checkpoints, latest and "
                   "metrics.jsonl), or set run.dir to a new directory", run_dir, found);
}

/* step-NNNNNNN, or with dot and suffix: .step-NNNNNNN.tmp / .step-NNNNNNN.old */
static int is_step_name(const char *d, int hidden)
{
    const char *s = d + (hidden ? 1 : 0);
    if (hidden && d[0] != '.') return 0;
    if (strncmp(s, "step-", 5) != 0 || strspn(s + 5, "0123456789") != 7) return 0;
    if (!hidden) return s[12] == '\0';
    return strcmp(s + 12, ".tmp") == 0 || strcmp(s + 12, ".old") == 0;
}

static void note(char *what, size_t len, const char *name)
{
    size_t used = strlen(what);
    if (used < len) snprintf(what + used, len - used, "%s%s", used ? ", " : "", name);
}

/* Removes run_dir/name (a file or link) when it exists, noting it. */
static status_t remove_file(const char *run_dir, const char *name, char *what, size_t len)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", run_dir, name);
    if (unlink(path) == 0) {
        note(what, len, name);
        return ST_OK;
    }
    FAIL_IF(errno != ENOENT, ST_IO, "%s: cannot remove (%s); remove it by hand or set run.dir to a new directory",
            path, strerror(errno));
    return ST_OK;
}

/* A checkpoint directory goes by renaming it to .step-N.old first, so a crash
 * leaves no half-removed step-N that resume would have to reject. */
static status_t remove_step(const char *run_dir, const char *name, char *what, size_t len)
{
    char path[4200], aside[4200];
    snprintf(path, sizeof path, "%s/%s", run_dir, name);
    if (!ckpt_is_checkpoint(path)) return ST_OK; /* not one mpilm wrote: left alone */
    snprintf(aside, sizeof aside, "%s/.%s.old", run_dir, name);
    ckpt_remove_tree(aside);
    FAIL_IF(rename(path, aside) != 0, ST_IO, "%s: cannot move it aside to remove it (%s); remove it by hand or set "
            "run.dir to a new directory", path, strerror(errno));
    ckpt_remove_tree(aside);
    note(what, len, name);
    return ST_OK;
}

status_t ckpt_run_clear(const char *run_dir, char *what, size_t len)
{
    what[0] = '\0';
    /* latest first: from here on nothing names a checkpoint being removed */
    TRY(remove_file(run_dir, "latest", what, len));
    TRY(remove_file(run_dir, ".latest.tmp", what, len));
    TRY(remove_file(run_dir, "best", what, len));
    TRY(remove_file(run_dir, ".best.tmp", what, len));
    TRY(fileio_fsync_dir(run_dir));
    struct dirent **names;
    int k = scandir(run_dir, &names, NULL, alphasort);
    if (k < 0) return ST_OK; /* no run directory: nothing to clear */
    status_t st = ST_OK;
    for (int i = 0; i < k; i++) {
        const char *d = names[i]->d_name;
        if (st == ST_OK && is_step_name(d, 0)) st = remove_step(run_dir, d, what, len);
        else if (st == ST_OK && is_step_name(d, 1)) {
            char path[4200];
            snprintf(path, sizeof path, "%s/%s", run_dir, d);
            ckpt_remove_tree(path);
            note(what, len, d);
        }
        free(names[i]);
    }
    free(names);
    TRY(st);
    TRY(remove_file(run_dir, "metrics.jsonl", what, len));
    TRY(remove_file(run_dir, ".metrics.jsonl.tmp", what, len));
    return fileio_fsync_dir(run_dir);
}

status_t ckpt_run_set_best(const char *run_dir, int64_t step)
{
    char name[32] = "", path[4200], target[64] = "";
    snprintf(path, sizeof path, "%s/best", run_dir);
    ssize_t len = readlink(path, target, sizeof target - 1);
    target[len > 0 ? len : 0] = '\0';
    if (step >= 0) {
        ckpt_step_name(step, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", run_dir, name);
        if (!ckpt_is_checkpoint(path)) name[0] = '\0';
    }
    if (strcmp(name, target) == 0) return ST_OK;
    if (name[0]) return ckpt_replace_link(run_dir, "best", name);
    char removed[64] = "";
    TRY(remove_file(run_dir, "best", removed, sizeof removed));
    return fileio_fsync_dir(run_dir);
}

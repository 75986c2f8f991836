#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testhook.h"

/* MPILM_TEST_PAUSE=PHASE:SECONDS: announce the pause on stderr (a test waits
 * for the line), then sleep the whole time, whatever signals arrive. */
static void pause_point(const char *phase)
{
    const char *want = testhook_get(TESTHOOK_PAUSE);
    size_t n = strlen(phase);
    if (!want || strncmp(want, phase, n) != 0 || want[n] != ':') return;
    double seconds = atof(want + n + 1);
    if (seconds <= 0) return;
    fprintf(stderr, "mpilm: test pause: %g s at %s\n", seconds, phase);
    fflush(stderr);
    struct timespec left = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&left, &left) != 0 && errno == EINTR) continue;
}

void fileio_crash_point(const char *phase)
{
    pause_point(phase);
    const char *want = testhook_get(TESTHOOK_CRASH);
    if (want && strcmp(want, phase) == 0) {
        fflush(NULL);
        raise(SIGKILL);
    }
    want = testhook_get(TESTHOOK_STOP); /* a rank frozen there, as by SIGSTOP: its peers' watchdogs must end the job */
    if (want && strcmp(want, phase) == 0) {
        fflush(NULL);
        raise(SIGSTOP);
    }
}

static void dir_of(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash) snprintf(out, cap, ".");
    else if (slash == out) out[1] = '\0';
    else *slash = '\0';
}

status_t fileio_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    FAIL_IF(fd < 0, ST_IO, "%s: cannot open directory to sync it (%s)", dir, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    FAIL_IF(rc != 0, ST_IO, "%s: fsync of directory failed (%s)", dir, strerror(err));
    return ST_OK;
}

status_t fileio_atomic_open(atomic_file *af, const char *path)
{
    memset(af, 0, sizeof *af);
    FAIL_IF(strlen(path) + 32 >= sizeof af->path, ST_IO, "%s: path too long", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(af->tmp_path, sizeof af->tmp_path, "%s/.%s.tmp", dir, base);
    af->f = fopen(af->tmp_path, "wb");
    FAIL_IF(!af->f, ST_IO, "%s: cannot create temporary file %s (%s); check that the directory exists and is writable",
            path, af->tmp_path, strerror(errno));
    return ST_OK;
}

status_t fileio_atomic_write(atomic_file *af, const void *data, size_t len)
{
    if (len == 0) return ST_OK;
    if (fwrite(data, 1, len, af->f) != len) {
        int err = errno;
        fileio_atomic_abort(af);
        return st_fail(ST_IO, "%s: write failed (%s)%s", af->path, strerror(err),
                       err == ENOSPC ? "; the disk is full: free space and retry" : "");
    }
    return ST_OK;
}

status_t fileio_atomic_commit(atomic_file *af)
{
    int err = 0;
    if (fflush(af->f) != 0) err = errno;
    fileio_crash_point("atomic:before_fsync");
    if (!err && fsync(fileno(af->f)) != 0) err = errno;
    if (fclose(af->f) != 0 && !err) err = errno;
    af->f = NULL;
    if (err) {
        unlink(af->tmp_path);
        return st_fail(ST_IO, "%s: writing failed (%s)%s; the previous file is unchanged", af->path,
                       strerror(err), err == ENOSPC ? "; the disk is full: free space and retry" : "");
    }
    fileio_crash_point("atomic:before_rename");
    if (rename(af->tmp_path, af->path) != 0) {
        err = errno;
        unlink(af->tmp_path);
        return st_fail(ST_IO, "%s: cannot rename %s into place (%s)", af->path, af->tmp_path, strerror(err));
    }
    fileio_crash_point("atomic:before_dir_fsync");
    char dir[4096];
    dir_of(af->path, dir, sizeof dir);
    return fileio_fsync_dir(dir);
}

void fileio_atomic_abort(atomic_file *af)
{
    if (af->f) fclose(af->f);
    af->f = NULL;
    unlink(af->tmp_path);
}

status_t fileio_write_atomic(const char *path, const void *data, size_t len)
{
    atomic_file af;
    TRY(fileio_atomic_open(&af, path));
    TRY(fileio_atomic_write(&af, data, len));
    return fileio_atomic_commit(&af);
}

status_t fileio_read_file(const char *path, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    FAIL_IF(!f, ST_IO, "%s: cannot open (%s); check the path", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf) {
            fclose(f);
            return st_fail(ST_NOMEM, "%s: out of memory reading the file", path);
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        char *grown = realloc(buf, cap + 1);
        if (!grown) free(buf);
        buf = grown;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return st_fail(ST_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return ST_OK;
}

status_t fileio_make_dirs(const char *path, int mode)
{
    char buf[4096];
    FAIL_IF(strlen(path) >= sizeof buf, ST_IO, "%s: path too long", path);
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST)
            return st_fail(ST_IO, "%s: cannot create directory %s (%s)", path, buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST)
        return st_fail(ST_IO, "%s: cannot create directory (%s)", path, strerror(errno));
    return ST_OK;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

status_t fileio_remove_tree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0 && errno == ENOENT) return ST_OK;
    FAIL_IF(nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0, ST_IO, "%s: cannot remove (%s)", path,
            strerror(errno));
    return ST_OK;
}

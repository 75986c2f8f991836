/* base/fileio — whole-file I/O and crash-safe replacement of files.
 *
 * Owns: the atomic write protocol used by every writer of mpilm:
 *   1. write into "DIR/.NAME.tmp" (same directory, so rename is atomic),
 *   2. fsync the file, close it,
 *   3. rename over NAME,
 *   4. fsync DIR so the rename itself is durable.
 * A crash before 3 leaves the old NAME intact (the stale temp file is ignored
 * and removed by the next writer of NAME); after 3 the new content is complete.
 * Must not touch: anything above libc.
 */
#ifndef MPILM_BASE_FILEIO_H
#define MPILM_BASE_FILEIO_H

#include <stddef.h>
#include <stdio.h>

#include "status.h"
#include "testhook.h"

/* Streaming atomic writer. */
typedef struct atomic_file {
    FILE *f;
    char path[4096];
    char tmp_path[4096];
} atomic_file;

status_t fileio_atomic_open(atomic_file *af, const char *path);
status_t fileio_atomic_write(atomic_file *af, const void *data, size_t len);
status_t fileio_atomic_commit(atomic_file *af);   /* steps 2-4; closes af */
void fileio_atomic_abort(atomic_file *af);        /* removes the temp file */

/* One-shot form: the whole content at once. */
status_t fileio_write_atomic(const char *path, const void *data, size_t len);

/* fsync a directory (after creating, renaming or removing entries in it). */
status_t fileio_fsync_dir(const char *dir);

/* Reads a whole file into a NUL-terminated malloc'd buffer. */
status_t fileio_read_file(const char *path, char **data, size_t *len);

/* mkdir -p. */
status_t fileio_make_dirs(const char *path, int mode);

/* Removes path and everything below it (rm -r, never following symbolic
 * links); a path that does not exist is not an error. */
status_t fileio_remove_tree(const char *path);

/* Test hooks (base/testhook): when MPILM_TEST_CRASH names a phase
 * ("atomic:before_fsync", "atomic:before_rename", ...), the process kills
 * itself with SIGKILL on reaching that phase, simulating a crash there;
 * MPILM_TEST_STOP stops it there with SIGSTOP (a frozen rank);
 * MPILM_TEST_PAUSE=PHASE:SECONDS prints "mpilm: test pause: SECONDS s at
 * PHASE" on stderr and sleeps there first (signals do not shorten it), so a
 * test can act while a save is in progress. */
void fileio_crash_point(const char *phase);

#endif

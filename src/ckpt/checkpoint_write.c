/* ckpt/write — shard files, the manifest and the commit protocol of a step
 * directory (docs/formats.md, "Atomic save protocol"). */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/hash.h"
#include "base/log.h"
#include "ckpt/checkpoint_internal.h"
#include "data/tokenizer.h"

#define FREE_SPACE_HINT "free space or set run.dir to another disk"

void ckpt_step_name(int64_t step, char *buf, size_t len) { snprintf(buf, len, "step-%07lld", (long long)step); }

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

void ckpt_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0) nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

status_t ckpt_begin(const char *run_dir, int64_t step, char *tmp, size_t len)
{
    char name[32];
    ckpt_step_name(step, name, sizeof name);
    TRY(fileio_make_dirs(run_dir, 0755));
    snprintf(tmp, len, "%s/.%s.tmp", run_dir, name);
    ckpt_remove_tree(tmp);
    FAIL_IF(mkdir(tmp, 0755) != 0, ST_IO, "%s: cannot create the checkpoint directory (%s); %s", tmp,
            strerror(errno), FREE_SPACE_HINT);
    return ST_OK;
}

/* MPILM_TEST_CKPT_FAIL=write fails every shard write, write:I only shard I. */
static int test_write_fails(int index)
{
    const char *v = testhook_get(TESTHOOK_CKPT_FAIL);
    if (!v || strncmp(v, "write", 5) != 0) return 0;
    return v[5] == '\0' || (v[5] == ':' && atoi(v + 6) == index);
}

static status_t write_section(FILE *f, const char *path, const float *data, uint64_t n, uint64_t *hash, int fail)
{
    static const float zeros[1024];
    if (data) {
        *hash = hash_xxh3(data, n * sizeof(float));
        if (!fail && fwrite(data, sizeof(float), n, f) == n) return ST_OK;
    } else {
        hash_stream *h = hash_stream_new();
        FAIL_IF(!h, ST_NOMEM, "%s: out of memory for a checksum", path);
        for (uint64_t i = 0; i < n && !fail; i += 1024) {
            size_t k = n - i < 1024 ? (size_t)(n - i) : 1024;
            hash_stream_update(h, zeros, k * sizeof(float));
            if (fwrite(zeros, sizeof(float), k, f) != k) fail = 1;
        }
        *hash = hash_stream_digest(h);
        hash_stream_free(h);
        if (!fail) return ST_OK;
    }
    int err = errno ? errno : ENOSPC;
    return st_fail(ST_IO, "%s: write failed (%s); %s", path, strerror(fail ? ENOSPC : err), FREE_SPACE_HINT);
}

status_t ckpt_shard_write(const char *tmp, int index, uint64_t begin, uint64_t end, const float *params,
                          const float *m, const float *v, ckpt_file *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "shard-%05d.bin", index);
    out->rank = index, out->begin = begin, out->end = end;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", tmp, out->name);
    FILE *f = fopen(path, "wb");
    FAIL_IF(!f, ST_IO, "%s: cannot create (%s); %s", path, strerror(errno), FREE_SPACE_HINT);
    const float *src[CKPT_SECTIONS] = {params, m, v};
    uint64_t n = end - begin, bytes = n * sizeof(float);
    status_t st = ST_OK;
    errno = 0;
    for (int s = 0; st == ST_OK && s < CKPT_SECTIONS; s++) {
        out->offset[s] = (uint64_t)s * bytes;
        out->bytes[s] = bytes;
        st = write_section(f, path, src[s], n, &out->hash[s], test_write_fails(index));
    }
    if (st == ST_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        st = st_fail(ST_IO, "%s: flushing to disk failed (%s); %s", path, strerror(errno), FREE_SPACE_HINT);
    if (fclose(f) != 0 && st == ST_OK)
        st = st_fail(ST_IO, "%s: closing failed (%s); %s", path, strerror(errno), FREE_SPACE_HINT);
    fileio_crash_point("ckpt:after_shard");
    return st;
}

status_t ckpt_copy_vocab(const char *src, const char *dst, ckpt_tokenizer *tok)
{
    tokenizer_kind kind;
    tokenizer *t;
    TRY(tokenizer_detect(src, &kind));
    TRY(tokenizer_load(src, kind, &t));
    status_t st = fileio_make_dirs(dst, 0755);
    if (st == ST_OK) st = tokenizer_save(t, dst);
    if (st == ST_OK) st = fileio_fsync_dir(dst);
    tok->present = 1;
    snprintf(tok->kind, sizeof tok->kind, "%s", kind == TOKENIZER_BPE ? "bpe" : "wordpiece");
    tok->fingerprint = tokenizer_fingerprint(t);
    tok->vocab_size = tokenizer_vocab_size(t);
    tokenizer_free(t);
    return st;
}

status_t ckpt_manifest_write(const char *tmp, const ckpt_meta *meta, const ckpt_file *files, int n_files)
{
    fileio_crash_point("ckpt:before_manifest");
    ckpt_tokenizer tok = {0};
    char path[4200];
    if (meta->vocab_src) {
        snprintf(path, sizeof path, "%s/vocab", tmp);
        TRY(ckpt_copy_vocab(meta->vocab_src, path, &tok));
    }
    cJSON *m;
    TRY(ckpt_manifest_build(meta, &tok, files, n_files, &m));
    char *text = cJSON_Print(m);
    cJSON_Delete(m);
    FAIL_IF(!text, ST_NOMEM, "%s: out of memory printing the manifest", tmp);
    snprintf(path, sizeof path, "%s/%s", tmp, CKPT_MANIFEST);
    status_t st = fileio_write_atomic(path, text, strlen(text));
    free(text);
    return st == ST_OK ? ST_OK : st_context(st, "checkpoint manifest (%s): ", FREE_SPACE_HINT);
}

status_t ckpt_replace_link(const char *run_dir, const char *link, const char *name)
{
    char link_tmp[4200], latest[4200];
    snprintf(link_tmp, sizeof link_tmp, "%s/.%s.tmp", run_dir, link);
    snprintf(latest, sizeof latest, "%s/%s", run_dir, link);
    unlink(link_tmp);
    FAIL_IF(symlink(name, link_tmp) != 0, ST_IO, "%s: cannot create a symbolic link (%s)", link_tmp, strerror(errno));
    if (rename(link_tmp, latest) != 0) {
        int err = errno;
        unlink(link_tmp);
        return st_fail(ST_IO, "%s: cannot replace it with %s (%s)", latest, link_tmp, strerror(err));
    }
    return fileio_fsync_dir(run_dir);
}

/* Of this run's step directories below `step` (newest first), keep - 1 stay
 * besides step-N; the rest go. Anything whose manifest does not carry run_id
 * (another run, an import, an older mpilm, a damaged manifest) stays. */
static status_t prune(const char *run_dir, int64_t step, uint64_t run_id, int keep)
{
    int64_t *steps;
    int n, kept = 1, removed = 0;
    if (run_id == 0) return ST_OK;
    char best[4200], target[64] = "";
    snprintf(best, sizeof best, "%s/best", run_dir);
    ssize_t len = readlink(best, target, sizeof target - 1);
    target[len > 0 ? len : 0] = '\0';
    TRY(ckpt_list_steps(run_dir, &steps, &n));
    for (int i = 0; i < n; i++) {
        char path[4200], name[32];
        uint64_t owner = 0;
        if (steps[i] >= step) continue;
        ckpt_step_name(steps[i], name, sizeof name);
        if (strcmp(name, target) == 0) continue; /* RUN_DIR/best's: kept whatever keep says */
        snprintf(path, sizeof path, "%s/%s", run_dir, name);
        if (ckpt_run_id(path, &owner) != ST_OK) st_clear();
        if (owner != run_id || kept++ < keep) continue;
        ckpt_remove_tree(path);
        removed = 1;
    }
    free(steps);
    return removed ? fileio_fsync_dir(run_dir) : ST_OK;
}

/* A directory of the step being written that this run did not write
 * (another run's, an import's, or one whose manifest cannot be read) is kept
 * as STEP.replaced-HEX (HEX: its run id, or 0) instead of being removed: a
 * run never deletes what it did not write. */
static status_t keep_foreign_step(const char *final, uint64_t run_id)
{
    struct stat sb;
    uint64_t owner = 0;
    if (lstat(final, &sb) != 0) return ST_OK;
    if (ckpt_run_id(final, &owner) != ST_OK) st_clear();
    if (run_id != 0 && owner == run_id) return ST_OK;
    char kept[4300];
    snprintf(kept, sizeof kept, "%s.replaced-%016llx", final, (unsigned long long)owner);
    FAIL_IF(rename(final, kept) != 0, ST_IO, "%s: another run's checkpoint of this step is in the way and cannot be "
            "moved aside to %s (%s); move it by hand or set run.dir to a new directory", final, kept, strerror(errno));
    log_msg(LOG_WARN, "%s belonged to another run (run id %016llx); kept as %s", final, (unsigned long long)owner,
            kept);
    return ST_OK;
}

status_t ckpt_commit(const char *run_dir, int64_t step, const char *tmp, uint64_t run_id, int keep, int best)
{
    char name[32], final[4200], old[4200];
    ckpt_step_name(step, name, sizeof name);
    snprintf(final, sizeof final, "%s/%s", run_dir, name);
    snprintf(old, sizeof old, "%s/.%s.old", run_dir, name);
    TRY(fileio_fsync_dir(tmp));
    fileio_crash_point("ckpt:before_rename");
    TRY(keep_foreign_step(final, run_id));
    /* This run's own directory of that step (a resume from an older step) is
     * moved aside and removed, not merged. */
    ckpt_remove_tree(old);
    if (rename(final, old) != 0 && errno != ENOENT)
        return st_fail(ST_IO, "%s: cannot move the earlier checkpoint aside (%s)", final, strerror(errno));
    FAIL_IF(rename(tmp, final) != 0, ST_IO, "%s: cannot rename %s into place (%s)", final, tmp, strerror(errno));
    TRY(fileio_fsync_dir(run_dir));
    ckpt_remove_tree(old);
    fileio_crash_point("ckpt:before_latest");
    TRY(ckpt_replace_link(run_dir, "latest", name));
    /* best before pruning, so the checkpoint it named before is prunable
     * only once nothing names it */
    if (best) TRY(ckpt_replace_link(run_dir, "best", name));
    return prune(run_dir, step, run_id, keep);
}

void ckpt_abort(const char *tmp) { ckpt_remove_tree(tmp); }

status_t ckpt_write_model(const char *run_dir, const model_config *c, const float *params, const char *vocab_dir)
{
    model_tensor *table;
    int n;
    TRY(model_full_table(c, &table, &n));
    uint64_t total = table[n - 1].offset + table[n - 1].numel;
    free(table);
    ckpt_meta meta = {.model = *c, .random_data = 1, .topo = {1, 1, 1, 1, 0}, .vocab_src = vocab_dir};
    char tmp[4200];
    ckpt_file file;
    TRY(ckpt_begin(run_dir, 0, tmp, sizeof tmp));
    status_t st = ckpt_shard_write(tmp, 0, 0, total, params, NULL, NULL, &file);
    if (st == ST_OK) st = ckpt_manifest_write(tmp, &meta, &file, 1);
    if (st == ST_OK) st = ckpt_commit(run_dir, 0, tmp, 0, 1, 0);
    if (st != ST_OK) ckpt_abort(tmp);
    return st;
}

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

status_t ckpt_list_steps(const char *run_dir, int64_t **steps, int *n)
{
    *steps = NULL;
    *n = 0;
    struct dirent **names;
    int k = scandir(run_dir, &names, NULL, NULL);
    if (k < 0) return ST_OK; /* no run directory: no checkpoints */
    int64_t *s = malloc(((size_t)k + 1) * sizeof *s);
    int count = 0;
    for (int i = 0; i < k; i++) {
        const char *d = names[i]->d_name;
        if (s && strlen(d) == 12 && strncmp(d, "step-", 5) == 0 && strspn(d + 5, "0123456789") == 7)
            s[count++] = atoll(d + 5);
        free(names[i]);
    }
    free(names);
    FAIL_IF(!s, ST_NOMEM, "%s: out of memory listing checkpoints", run_dir);
    qsort(s, (size_t)count, sizeof *s, cmp_desc);
    *steps = s;
    *n = count;
    return ST_OK;
}

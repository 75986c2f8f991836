/* data/prep: raw text → shards → manifest (prep.h). */
#include "prep.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/rng.h"
#include "data/shard.h"

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, at most U+10FFFF), or 0 when it is invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (len == 0 || n < len) return 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c == 0xE0) lo = 0xA0;
    else if (c == 0xED) hi = 0x9F;
    else if (c == 0xF0) lo = 0x90;
    else if (c == 0xF4) hi = 0x8F;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

size_t utf8_check(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_sequence(s + i, n - i);
        if (k == 0) return i;
        i += k;
    }
    return n;
}

/* Replaces each invalid byte of line[0..*len) by U+FFFD, into *out. */
static status_t utf8_repair(const char *line, size_t len, char **out, size_t *out_cap, size_t *out_len,
                            uint64_t *replaced)
{
    if (*out_cap < 3 * len + 1) {
        char *p = realloc(*out, 3 * len + 1);
        FAIL_IF(!p, ST_NOMEM, "out of memory repairing a line of %zu bytes", len);
        *out = p, *out_cap = 3 * len + 1;
    }
    const unsigned char *s = (const unsigned char *)line;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_sequence(s + i, len - i);
        if (k == 0) {
            memcpy(*out + o, "\xEF\xBF\xBD", 3), o += 3, i++, (*replaced)++;
            continue;
        }
        memcpy(*out + o, s + i, k), o += k, i += k;
    }
    *out_len = o;
    return ST_OK;
}

/* ------------------------------------------------------------ plan */

/* Offset just after the first blank line ("\n\n") at or after from, or size. */
static status_t next_document(FILE *f, const char *path, uint64_t from, uint64_t size, uint64_t *cut)
{
    char buf[65536];
    int prev_nl = 0;
    uint64_t at = from;
    FAIL_IF(fseeko(f, (off_t)from, SEEK_SET) != 0, ST_IO, "%s: cannot seek to byte %llu", path,
            (unsigned long long)from);
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < got; i++, at++) {
            if (buf[i] == '\n' && prev_nl) {
                *cut = at + 1;
                return ST_OK;
            }
            prev_nl = buf[i] == '\n';
        }
    }
    *cut = size;
    return ST_OK;
}

static status_t plan_add(prep_plan *plan, int file, uint64_t begin, uint64_t end)
{
    prep_piece *p = realloc(plan->pieces, (size_t)(plan->n_pieces + 1) * sizeof *p);
    FAIL_IF(!p, ST_NOMEM, "out of memory planning the shards");
    plan->pieces = p;
    plan->pieces[plan->n_pieces++] = (prep_piece){file, begin, end};
    return ST_OK;
}

static status_t plan_file(prep_plan *plan, const char *path, int file, uint64_t size, uint64_t piece)
{
    FILE *f = fopen(path, "rb");
    FAIL_IF(!f, ST_IO, "%s: cannot open (%s); check the path", path, strerror(errno));
    status_t st = ST_OK;
    for (uint64_t begin = 0; st == ST_OK && begin < size;) {
        uint64_t cut = size;
        if (begin + piece < size) st = next_document(f, path, begin + piece - 1, size, &cut);
        if (st == ST_OK) st = plan_add(plan, file, begin, cut);
        begin = cut;
    }
    fclose(f);
    return st;
}

status_t prep_plan_make(const char *const *files, int n_files, prep_plan *plan)
{
    memset(plan, 0, sizeof *plan);
    FAIL_IF(n_files < 1, ST_USAGE, "prep: no input FILE given");
    uint64_t *sizes = calloc((size_t)n_files, sizeof *sizes);
    FAIL_IF(!sizes, ST_NOMEM, "out of memory");
    status_t st = ST_OK;
    for (int i = 0; st == ST_OK && i < n_files; i++) {
        struct stat sb;
        if (stat(files[i], &sb) != 0)
            st = st_fail(errno == ENOENT || errno == ENOTDIR ? ST_USAGE : ST_IO,
                         "%s: cannot read the input (%s); check the path", files[i], strerror(errno));
        else if (S_ISDIR(sb.st_mode))
            st = st_fail(ST_USAGE, "%s: the input is a directory (expected a text file); give the text files in it, "
                         "e.g. %s/*.txt", files[i], files[i]);
        else if (!S_ISREG(sb.st_mode))
            st = st_fail(ST_USAGE, "%s: the input is not a regular file (expected a text file); give a file",
                         files[i]);
        else sizes[i] = (uint64_t)sb.st_size, plan->total_bytes += sizes[i];
    }
    if (st == ST_OK && plan->total_bytes == 0)
        st = st_fail(ST_USAGE, "%s%s: empty input (0 bytes); give text with one sentence per line", files[0],
                     n_files > 1 ? " and the other inputs" : "");
    uint64_t piece = plan->total_bytes / 64;
    piece = piece < PREP_PIECE_MIN ? PREP_PIECE_MIN : piece > PREP_PIECE_MAX ? PREP_PIECE_MAX : piece;
    for (int i = 0; st == ST_OK && i < n_files; i++) st = plan_file(plan, files[i], i, sizes[i], piece);
    free(sizes);
    if (st != ST_OK) prep_plan_free(plan);
    return st;
}

void prep_plan_free(prep_plan *plan)
{
    free(plan->pieces);
    memset(plan, 0, sizeof *plan);
}

/* ------------------------------------------------------------ encoding */

static uint64_t line_number(const char *path, uint64_t offset)
{
    FILE *f = fopen(path, "rb");
    uint64_t line = 1, at = 0;
    char buf[65536];
    size_t got;
    while (f && at < offset && (got = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < got && at < offset; i++, at++) line += buf[i] == '\n';
    if (f) fclose(f);
    return line;
}

typedef struct piece_state {
    tokenizer *t;
    shard_writer *w, *valid, *cur;  /* train, valid, the current document's */
    double valid_fraction;
    const char *path;
    int file, replace_invalid, in_doc;
    char *fixed;
    size_t fixed_cap;
    uint32_t *ids;
    size_t ids_cap;
    prep_stats *stats;
} piece_state;

static int is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t') return 0;
    return 1;
}

/* One input line (without '\n') at file offset `at`. */
static status_t encode_line(piece_state *ps, const char *line, size_t len, uint64_t at)
{
    if (len > 0 && line[len - 1] == '\r') len--;
    if (is_blank(line, len)) {
        ps->in_doc = 0;
        return ST_OK;
    }
    size_t bad = utf8_check((const unsigned char *)line, len);
    if (bad < len && !ps->replace_invalid)
        return st_fail(ST_FORMAT, "%s: invalid UTF-8 at line %llu, byte offset %llu (byte 0x%02x); fix the text or "
                       "pass --replace-invalid to replace it with U+FFFD", ps->path,
                       (unsigned long long)line_number(ps->path, at), (unsigned long long)(at + bad),
                       (unsigned char)line[bad]);
    if (bad < len) {
        TRY(utf8_repair(line, len, &ps->fixed, &ps->fixed_cap, &len, &ps->stats->replaced));
        line = ps->fixed;
    }
    size_t n = 0;
    TRY(tokenizer_encode(ps->t, line, len, &ps->ids, &n, &ps->ids_cap));
    if (n == 0) return ST_OK;
    if (!ps->in_doc) {
        int held_out = ps->valid && prep_document_held_out(ps->file, at, ps->valid_fraction);
        ps->cur = held_out ? ps->valid : ps->w;
        ps->stats->valid_documents += held_out;
    }
    TRY(shard_writer_add(ps->cur, ps->ids, n, !ps->in_doc));
    ps->stats->documents += !ps->in_doc;
    ps->stats->sentences++;
    ps->stats->tokens += n;
    ps->in_doc = 1;
    return ST_OK;
}

static status_t encode_lines(piece_state *ps, FILE *f, const prep_piece *piece)
{
    FAIL_IF(fseeko(f, (off_t)piece->begin, SEEK_SET) != 0, ST_IO, "%s: cannot seek to byte %llu", ps->path,
            (unsigned long long)piece->begin);
    char *line = NULL;
    size_t cap = 0;
    uint64_t at = piece->begin;
    ssize_t len;
    status_t st = ST_OK;
    while (st == ST_OK && at < piece->end && (len = getline(&line, &cap, f)) > 0) {
        size_t n = (size_t)len;
        if (at + n > piece->end) n = (size_t)(piece->end - at);
        st = encode_line(ps, line, n > 0 && line[n - 1] == '\n' ? n - 1 : n, at);
        at += n;
    }
    if (st == ST_OK && ferror(f)) st = st_fail(ST_IO, "%s: read error near byte %llu", ps->path, (unsigned long long)at);
    free(line);
    return st;
}

int prep_document_held_out(int file, uint64_t offset, double valid_fraction)
{
    uint32_t bits[4];
    rng_bits(rng_key_make(PREP_SPLIT_SEED, RNG_SPLIT), offset, (uint32_t)file, 0, bits);
    double u = (double)((((uint64_t)bits[0] << 32) | bits[1]) >> 11) * 0x1p-53; /* [0, 1), 53 bits */
    return u < valid_fraction;
}

status_t prep_piece_encode_split(tokenizer *t, const char *const *files, const prep_piece *piece, int replace_invalid,
                                 double valid_fraction, const char *out_path, const char *valid_out_path,
                                 prep_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    piece_state ps = {.t = t, .path = files[piece->file], .file = piece->file, .replace_invalid = replace_invalid,
                      .valid_fraction = valid_fraction, .stats = stats};
    FILE *f = fopen(ps.path, "rb");
    FAIL_IF(!f, ST_IO, "%s: cannot open (%s)", ps.path, strerror(errno));
    uint64_t fingerprint = tokenizer_fingerprint(t);
    status_t st = shard_writer_open(&ps.w, out_path, fingerprint, tokenizer_vocab_size(t));
    if (st == ST_OK && valid_fraction > 0)
        st = shard_writer_open(&ps.valid, valid_out_path, fingerprint, tokenizer_vocab_size(t));
    if (st == ST_OK) st = encode_lines(&ps, f, piece);
    if (st == ST_OK) st = shard_writer_close(ps.w, NULL), ps.w = NULL;
    if (st == ST_OK && ps.valid) st = shard_writer_close(ps.valid, NULL), ps.valid = NULL;
    if (ps.w) shard_writer_abort(ps.w);
    if (ps.valid) shard_writer_abort(ps.valid);
    fclose(f);
    free(ps.fixed);
    free(ps.ids);
    stats->bytes = piece->end - piece->begin;
    return st;
}

status_t prep_piece_encode(tokenizer *t, const char *const *files, const prep_piece *piece, int replace_invalid,
                           const char *out_path, prep_stats *stats)
{
    return prep_piece_encode_split(t, files, piece, replace_invalid, 0, out_path, NULL, stats);
}

status_t prep_finish(const char *dir, const tokenizer *t, int n_shards, dataset_info *info)
{
    return prep_finish_split(dir, t, n_shards, 0, info, NULL);
}

status_t prep_finish_split(const char *dir, const tokenizer *t, int n_pieces, double valid_fraction,
                           dataset_info *train, dataset_info *valid)
{
    dataset_info in, held = {0};
    TRY(dataset_manifest_write_splits(dir, t, n_pieces, valid_fraction, &in, &held));
    FAIL_IF(in.n_sentences + held.n_sentences == 0, ST_USAGE,
            "%s: empty input: no sentence in the text (only blank lines, or lines with no token); give text with one "
            "sentence per line", dir);
    FAIL_IF(valid_fraction > 0 && held.n_documents == 0, ST_USAGE,
            "%s: --valid-fraction %g held out no document of the %llu in the input (the choice is per document); "
            "raise --valid-fraction or give more documents (blank lines between them)", dir, valid_fraction,
            (unsigned long long)in.n_documents);
    FAIL_IF(in.n_documents == 0, ST_USAGE,
            "%s: --valid-fraction %g held out every document (%llu), so the train split is empty; lower "
            "--valid-fraction or give more documents", dir, valid_fraction, (unsigned long long)held.n_documents);
    if (train) *train = in;
    if (valid) *valid = held;
    return ST_OK;
}

/* ------------------------------------------------------------ output directory */

/* The first entry of dir other than . and .., into name ("" when empty). */
static status_t first_entry(const char *dir, char *name, size_t cap)
{
    DIR *d = opendir(dir);
    FAIL_IF(!d, ST_IO, "%s: cannot list the directory (%s); check its permissions", dir, strerror(errno));
    name[0] = '\0';
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(name, cap, "%s", e->d_name);
            break;
        }
    closedir(d);
    return ST_OK;
}

status_t prep_output_check(const char *out, int overwrite)
{
    struct stat sb;
    if (stat(out, &sb) != 0) {
        FAIL_IF(errno != ENOENT, ST_IO, "%s: cannot examine the output directory (%s)", out, strerror(errno));
        return ST_OK;
    }
    FAIL_IF(!S_ISDIR(sb.st_mode), ST_USAGE, "%s: --out exists and is not a directory; choose another --out", out);
    char found[256], manifest[4200];
    TRY(first_entry(out, found, sizeof found));
    if (!found[0]) return ST_OK;
    snprintf(manifest, sizeof manifest, "%s/%s", out, DATASET_MANIFEST);
    int is_dataset = access(manifest, F_OK) == 0;
    FAIL_IF(!overwrite, ST_USAGE, "%s: --out exists and is not empty (found '%s'%s); pass --overwrite to replace %s, "
            "or choose another --out", out, is_dataset ? DATASET_MANIFEST : found, is_dataset ? ", a dataset" : "",
            is_dataset ? "that dataset" : "it");
    FAIL_IF(!is_dataset, ST_USAGE, "%s: --overwrite replaces only a dataset made by mpilm prep, but this directory has no "
            "%s (found '%s'); choose another --out, or empty the directory yourself", out, DATASET_MANIFEST, found);
    return ST_OK;
}

status_t prep_staging_path(const char *out, char *buf, size_t cap)
{
    char path[4096];
    FAIL_IF(strlen(out) >= sizeof path, ST_USAGE, "%.64s...: --out path too long", out);
    snprintf(path, sizeof path, "%s", out);
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') path[--n] = '\0';
    char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    FAIL_IF(!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0, ST_USAGE,
            "%s: --out must name the dataset directory (e.g. --out datasets/NAME)", out);
    if (!slash) snprintf(buf, cap, ".%s.prep-staging", base);
    else snprintf(buf, cap, "%.*s/.%s.prep-staging", (int)(slash - path), path, base);
    return ST_OK;
}

status_t prep_publish(const char *staging, const char *out)
{
    TRY(fsync_dir(staging));
    char parent[4096], old[4200];
    snprintf(parent, sizeof parent, "%s", staging);
    char *slash = strrchr(parent, '/');
    if (slash) *slash = '\0';
    else snprintf(parent, sizeof parent, ".");
    if (rename(staging, out) != 0) { /* out holds a dataset (checked by prep_output_check) */
        FAIL_IF(errno != ENOTEMPTY && errno != EEXIST, ST_IO, "%s: cannot rename %s into place (%s)", out, staging,
                strerror(errno));
        if (renameat2(AT_FDCWD, staging, AT_FDCWD, out, RENAME_EXCHANGE) == 0) {
            snprintf(old, sizeof old, "%s", staging); /* the replaced dataset is there now */
        } else {
            /* no atomic exchange on this file system: set the old one aside first */
            snprintf(old, sizeof old, "%s.old", staging);
            TRY(dir_remove_tree(old));
            FAIL_IF(rename(out, old) != 0, ST_IO, "%s: cannot move the old dataset aside to %s (%s)", out, old,
                    strerror(errno));
            FAIL_IF(rename(staging, out) != 0, ST_IO, "%s: cannot rename %s into place (%s); the old dataset is in %s",
                    out, staging, strerror(errno), old);
        }
        TRY(fsync_dir(parent));
        return dir_remove_tree(old);
    }
    return fsync_dir(parent);
}

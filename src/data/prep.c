/* data/prep: raw text → shards → manifest (prep.h). */
#include "prep.h"

#include <cjson/cJSON.h>
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
#include "data/input.h"
#include "data/sentence.h"
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

size_t prep_utf8_check(const unsigned char *s, size_t n)
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

/* Offset just after the first blank line ("\n\n") at or after from, or size;
 * with jsonl (a document per line) just after the first '\n'. */
static status_t next_document(FILE *f, const char *path, uint64_t from, uint64_t size, int jsonl, uint64_t *cut)
{
    char buf[65536];
    int prev_nl = 0;
    uint64_t at = from;
    FAIL_IF(fseeko(f, (off_t)from, SEEK_SET) != 0, ST_IO, "%s: cannot seek to byte %llu", path,
            (unsigned long long)from);
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < got; i++, at++) {
            if (buf[i] == '\n' && (prev_nl || jsonl)) {
                *cut = at + 1;
                return ST_OK;
            }
            prev_nl = buf[i] == '\n';
        }
    }
    *cut = size;
    return ST_OK;
}

static status_t plan_add(prep_plan *plan, int file, uint64_t begin, uint64_t end, int compressed)
{
    prep_piece *p = realloc(plan->pieces, (size_t)(plan->n_pieces + 1) * sizeof *p);
    FAIL_IF(!p, ST_NOMEM, "out of memory planning the shards");
    plan->pieces = p;
    plan->pieces[plan->n_pieces++] = (prep_piece){file, begin, end, compressed};
    return ST_OK;
}

/* A compressed file cannot be entered in the middle: it is one piece. */
static status_t plan_file(prep_plan *plan, const char *path, int file, uint64_t size, uint64_t piece, int jsonl)
{
    input_compression kind;
    TRY(input_detect(path, &kind));
    if (kind != INPUT_PLAIN) return plan_add(plan, file, 0, size, 1);
    FILE *f = fopen(path, "rb");
    FAIL_IF(!f, ST_IO, "%s: cannot open (%s); check the path", path, strerror(errno));
    status_t st = ST_OK;
    for (uint64_t begin = 0; st == ST_OK && begin < size;) {
        uint64_t cut = size;
        if (begin + piece < size) st = next_document(f, path, begin + piece - 1, size, jsonl, &cut);
        if (st == ST_OK) st = plan_add(plan, file, begin, cut, 0);
        begin = cut;
    }
    fclose(f);
    return st;
}

status_t prep_plan_make(const char *const *files, int n_files, prep_plan *plan)
{
    prep_input input = {.text_key = "text"};
    return prep_plan_make_input(files, n_files, &input, plan);
}

status_t prep_plan_make_input(const char *const *files, int n_files, const prep_input *input, prep_plan *plan)
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
    for (int i = 0; st == ST_OK && i < n_files; i++) st = plan_file(plan, files[i], i, sizes[i], piece, input->jsonl);
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
    const prep_input *input;
    const prep_piece *piece;
    const char *path;
    int in_doc;
    uint64_t lines;                 /* lines read before the current one, from the piece's start */
    char *fixed;
    size_t fixed_cap;
    uint32_t *ids;
    size_t ids_cap;
    prep_stats *stats;
} piece_state;

/* The current line's number in its file (counted from the piece's start). */
static unsigned long long current_line(const piece_state *ps)
{
    return (unsigned long long)((ps->piece->begin == 0 ? 1 : line_number(ps->path, ps->piece->begin)) + ps->lines);
}

static int is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t') return 0;
    return 1;
}

/* Checks line[0..*len) is UTF-8, or repairs it into ps->fixed; `at` is its
 * file offset (for the message), what names it. */
static status_t valid_utf8(piece_state *ps, const char **line, size_t *len, uint64_t at, const char *what)
{
    size_t bad = prep_utf8_check((const unsigned char *)*line, *len);
    if (bad == *len) return ST_OK;
    FAIL_IF(!ps->input->replace_invalid, ST_FORMAT, "%s: invalid UTF-8 at line %llu, byte offset %llu (byte 0x%02x)%s; "
            "fix the text or pass --replace-invalid to replace it with U+FFFD", ps->path, current_line(ps),
            (unsigned long long)(at + bad), (unsigned char)(*line)[bad], what);
    TRY(utf8_repair(*line, *len, &ps->fixed, &ps->fixed_cap, len, &ps->stats->replaced));
    *line = ps->fixed;
    return ST_OK;
}

/* One sentence of the document that starts at file offset doc_at. */
static status_t encode_sentence(piece_state *ps, const char *text, size_t len, uint64_t doc_at)
{
    size_t n = 0;
    TRY(tokenizer_encode(ps->t, text, len, &ps->ids, &n, &ps->ids_cap));
    if (n == 0) return ST_OK;
    if (!ps->in_doc) {
        int held_out = ps->valid && prep_document_held_out(ps->piece->file, doc_at, ps->input->valid_fraction);
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

/* A line of text: one sentence, or several with --split-sentences. */
static status_t encode_text_line(piece_state *ps, const char *text, size_t len, uint64_t doc_at)
{
    if (!ps->input->split_sentences) return encode_sentence(ps, text, len, doc_at);
    for (size_t i = sentence_space(text, len); i < len;) {
        size_t k = sentence_length(text + i, len - i);
        TRY(encode_sentence(ps, text + i, k, doc_at));
        i += k;
        i += sentence_space(text + i, len - i);
    }
    return ST_OK;
}

/* The text of a JSON line: split at newlines (a trailing '\r' dropped, blank
 * ones skipped) into the lines of one document. */
static status_t encode_json_text(piece_state *ps, const char *text, size_t len, uint64_t at)
{
    /* a \u escape may decode to no valid UTF-8 (the line itself was checked);
     * ps->fixed is free again: the line is parsed already */
    TRY(valid_utf8(ps, &text, &len, 0, " of the decoded text value"));
    status_t st = ST_OK;
    ps->in_doc = 0;
    for (size_t b = 0; st == ST_OK && b < len;) {
        const char *nl = memchr(text + b, '\n', len - b);
        size_t e = nl ? (size_t)(nl - text) : len, k = e - b;
        if (k > 0 && text[b + k - 1] == '\r') k--;
        if (!is_blank(text + b, k)) st = encode_text_line(ps, text + b, k, at);
        b = e + 1;
    }
    ps->in_doc = 0;
    return st;
}

static status_t json_line_error(const piece_state *ps, const char *found)
{
    return st_fail(ST_FORMAT, "%s: line %llu: expected a JSON object with a string \"%s\" (--jsonl: one object per "
                   "line), found %s; fix the line, or use --text-key for another key", ps->path, current_line(ps),
                   ps->input->text_key, found);
}

/* --jsonl: one JSON object per line, its text_key string is one document. */
static status_t encode_json_line(piece_state *ps, const char *line, size_t len, uint64_t at)
{
    if (is_blank(line, len)) return ST_OK;
    cJSON *o = cJSON_ParseWithLength(line, len);
    status_t st = ST_OK;
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, ps->input->text_key) : NULL;
    if (!o) st = json_line_error(ps, "text that is not valid JSON");
    else if (!cJSON_IsObject(o)) st = json_line_error(ps, "JSON that is not an object");
    else if (!v) st = json_line_error(ps, "an object without that key");
    else if (!cJSON_IsString(v)) st = json_line_error(ps, "a value that is not a string");
    else st = encode_json_text(ps, v->valuestring, strlen(v->valuestring), at);
    cJSON_Delete(o);
    return st;
}

/* One input line (without '\n') at file offset `at`. */
static status_t encode_line(piece_state *ps, const char *line, size_t len, uint64_t at)
{
    if (len > 0 && line[len - 1] == '\r') len--;
    TRY(valid_utf8(ps, &line, &len, at, ""));
    if (ps->input->jsonl) return encode_json_line(ps, line, len, at);
    if (is_blank(line, len)) {
        ps->in_doc = 0;
        return ST_OK;
    }
    return encode_text_line(ps, line, len, ps->in_doc ? 0 : at);
}

static status_t encode_lines(piece_state *ps, input_file *in, const prep_piece *piece)
{
    FILE *f = input_stream(in);
    uint64_t end = piece->compressed ? UINT64_MAX : piece->end;
    FAIL_IF(!piece->compressed && fseeko(f, (off_t)piece->begin, SEEK_SET) != 0, ST_IO, "%s: cannot seek to byte %llu",
            ps->path, (unsigned long long)piece->begin);
    char *line = NULL;
    size_t cap = 0;
    uint64_t at = piece->compressed ? 0 : piece->begin;
    ssize_t len;
    status_t st = ST_OK;
    while (st == ST_OK && at < end && (len = getline(&line, &cap, f)) > 0) {
        size_t n = (size_t)len;
        if (at + n > end) n = (size_t)(end - at);
        st = encode_line(ps, line, n > 0 && line[n - 1] == '\n' ? n - 1 : n, at);
        at += n;
        ps->lines++;
    }
    if (st == ST_OK) st = input_check(in);
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

status_t prep_piece_encode_input(tokenizer *t, const char *const *files, const prep_piece *piece,
                                 const prep_input *input, const char *out_path, const char *valid_out_path,
                                 prep_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    piece_state ps = {.t = t, .path = files[piece->file], .piece = piece, .input = input, .stats = stats};
    input_file *in;
    TRY(input_open(&in, ps.path));
    uint64_t fingerprint = tokenizer_fingerprint(t);
    status_t st = shard_writer_open(&ps.w, out_path, fingerprint, tokenizer_vocab_size(t));
    if (st == ST_OK && input->valid_fraction > 0)
        st = shard_writer_open(&ps.valid, valid_out_path, fingerprint, tokenizer_vocab_size(t));
    if (st == ST_OK) st = encode_lines(&ps, in, piece);
    if (st == ST_OK) st = shard_writer_close(ps.w, NULL), ps.w = NULL;
    if (st == ST_OK && ps.valid) st = shard_writer_close(ps.valid, NULL), ps.valid = NULL;
    if (ps.w) shard_writer_abort(ps.w);
    if (ps.valid) shard_writer_abort(ps.valid);
    input_close(in);
    free(ps.fixed);
    free(ps.ids);
    stats->bytes = piece->end - piece->begin;
    return st;
}

status_t prep_piece_encode(tokenizer *t, const char *const *files, const prep_piece *piece, int replace_invalid,
                           const char *out_path, prep_stats *stats)
{
    prep_input input = {.replace_invalid = replace_invalid, .text_key = "text"};
    return prep_piece_encode_input(t, files, piece, &input, out_path, NULL, stats);
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
    TRY(fileio_fsync_dir(staging));
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
            TRY(fileio_remove_tree(old));
            FAIL_IF(rename(out, old) != 0, ST_IO, "%s: cannot move the old dataset aside to %s (%s)", out, old,
                    strerror(errno));
            FAIL_IF(rename(staging, out) != 0, ST_IO, "%s: cannot rename %s into place (%s); the old dataset is in %s",
                    out, staging, strerror(errno), old);
        }
        TRY(fileio_fsync_dir(parent));
        return fileio_remove_tree(old);
    }
    return fileio_fsync_dir(parent);
}

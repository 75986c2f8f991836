/* A reader of the reference .jsonl files: just the "text" string and the
 * "ids" array, with JSON string escapes (\uXXXX with surrogate pairs). */
#include "ref_jsonl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ref_shared_path(const char *rel, char *buf, size_t size)
{
    const char *root = getenv("MPILM_SHARED");
    snprintf(buf, size, "%s/%s", root && *root ? root : "../shared", rel);
    return buf;
}

static unsigned hex4(const char *s)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 32) - 'a' + 10);
    }
    return v;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 63)); o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 63));
    o[2] = (char)(0x80 | (cp >> 6 & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* Decodes the JSON string starting after the opening quote at s. */
static int parse_string(const char *s, char **out, size_t *len)
{
    char *o = malloc(strlen(s) + 1);
    size_t n = 0;
    while (*s && *s != '"') {
        if (*s != '\\') { o[n++] = *s++; continue; }
        s++;
        switch (*s) {
        case 'n': o[n++] = '\n'; break;
        case 't': o[n++] = '\t'; break;
        case 'r': o[n++] = '\r'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'u': {
            unsigned cp = hex4(s + 1);
            s += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && s[1] == '\\' && s[2] == 'u') {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(s + 3) - 0xDC00);
                s += 6;
            }
            n += put_utf8(o + n, cp);
            break;
        }
        default: o[n++] = *s;
        }
        s++;
    }
    if (*s != '"') { free(o); return -1; }
    o[n] = 0;
    *out = o;
    *len = n;
    return 0;
}

static int parse_record(const char *line, ref_record *r)
{
    const char *t = strstr(line, "\"text\":\"");
    const char *ids = strstr(line, "\"ids\":[");
    if (!t || !ids || parse_string(t + 8, &r->text, &r->text_len) != 0) return -1;
    size_t cap = 16;
    r->ids = malloc(cap * sizeof *r->ids);
    r->n_ids = 0;
    for (const char *p = ids + 7; *p != ']';) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p) return -1;
        if (r->n_ids == cap) r->ids = realloc(r->ids, (cap *= 2) * sizeof *r->ids);
        r->ids[r->n_ids++] = (uint32_t)v;
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}

long ref_read_jsonl(const char *path, ref_record **out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    long n = 0, cap = 256;
    ref_record *recs = calloc((size_t)cap, sizeof *recs);
    char *line = NULL;
    size_t line_cap = 0;
    while (getline(&line, &line_cap, f) > 0) {
        if (n == cap) {
            recs = realloc(recs, (size_t)(cap *= 2) * sizeof *recs);
            memset(recs + n, 0, (size_t)(cap - n) * sizeof *recs);
        }
        if (parse_record(line, &recs[n]) != 0) { n = -1; break; }
        n++;
    }
    free(line);
    fclose(f);
    if (n < 0) { free(recs); return -1; }
    *out = recs;
    return n;
}

void ref_free(ref_record *r, long n)
{
    for (long i = 0; i < n; i++) {
        free(r[i].text);
        free(r[i].ids);
    }
    free(r);
}

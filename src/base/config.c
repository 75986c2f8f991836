#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"

#define ORIGIN_MAX 512

typedef struct config_value {
    char *text;
    char origin[ORIGIN_MAX];
} config_value;

struct config {
    const config_key *schema;
    int n;
    config_value *values;
};

static char *dup_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

config *config_new(const config_key *schema, int n_keys)
{
    config *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->schema = schema;
    c->n = n_keys;
    c->values = calloc((size_t)n_keys, sizeof *c->values);
    if (!c->values) {
        free(c);
        return NULL;
    }
    for (int i = 0; i < n_keys; i++) {
        c->values[i].text = dup_string(schema[i].default_value ? schema[i].default_value : "");
        snprintf(c->values[i].origin, ORIGIN_MAX, "default");
    }
    return c;
}

void config_free(config *c)
{
    if (!c) return;
    for (int i = 0; i < c->n; i++) free(c->values[i].text);
    free(c->values);
    free(c);
}

static int section_known(const config *c, const char *section)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->schema[i].section, section) == 0) return 1;
    return 0;
}

static int find_key(const config *c, const char *section, const char *key)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->schema[i].section, section) == 0 && strcmp(c->schema[i].key, key) == 0) return i;
    return -1;
}

/* "a, b, c" of the keys of a section, or of the sections. */
static void list_keys(const config *c, const char *section, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < c->n && n < cap; i++) {
        const char *name = section ? c->schema[i].key : c->schema[i].section;
        if (section && strcmp(c->schema[i].section, section) != 0) continue;
        if (!section) { /* each section once */
            int seen = 0;
            for (int j = 0; j < i; j++) seen |= strcmp(c->schema[j].section, name) == 0;
            if (seen) continue;
        }
        n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? ", " : "", name);
    }
}

static int parse_int(const char *s, int64_t *out)
{
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return 0;
    *out = v;
    return 1;
}

static int parse_float(const char *s, double *out)
{
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static int parse_bool(const char *s, int *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, yes[i]) == 0) return *out = 1, 1;
        if (strcmp(s, no[i]) == 0) return *out = 0, 1;
    }
    return 0;
}

static int enum_has(const char *choices, const char *value)
{
    size_t len = strlen(value);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, value, n) == 0) return 1;
        p += n + (bar ? 1 : 0);
    }
    return 0;
}

/* An enum whose choices include false and true (a boolean that grew more
 * values) takes every boolean spelling for those two: the name it stands for. */
static const char *enum_bool_name(const config_key *k, const char *value)
{
    int b;
    if (enum_has(k->choices, "false") && enum_has(k->choices, "true") && parse_bool(value, &b))
        return b ? "true" : "false";
    return value;
}

static status_t check_value(const config_key *k, const char *value, const char *origin)
{
    int64_t i;
    double f;
    int b;
    const int bounded = k->min <= k->max;
    switch (k->type) {
    case CFG_INT:
        if (k->choices && strcmp(value, k->choices) == 0) return ST_OK;
        if (!parse_int(value, &i))
            return st_fail(ST_CONFIG, "%s: bad value for %s.%s (expected an integer%s%s, found '%s')", origin,
                           k->section, k->key, k->choices ? " or " : "", k->choices ? k->choices : "", value);
        if (bounded && ((double)i < k->min || (double)i > k->max))
            return st_fail(ST_CONFIG, "%s: %s.%s = %s is out of range (expected %g to %g)", origin, k->section,
                           k->key, value, k->min, k->max);
        return ST_OK;
    case CFG_FLOAT:
        if (!parse_float(value, &f))
            return st_fail(ST_CONFIG, "%s: bad value for %s.%s (expected a number, found '%s')", origin,
                           k->section, k->key, value);
        if (bounded && (f < k->min || f > k->max))
            return st_fail(ST_CONFIG, "%s: %s.%s = %s is out of range (expected %g to %g)", origin, k->section,
                           k->key, value, k->min, k->max);
        return ST_OK;
    case CFG_BOOL:
        if (!parse_bool(value, &b))
            return st_fail(ST_CONFIG, "%s: bad value for %s.%s (expected true or false, found '%s')", origin,
                           k->section, k->key, value);
        return ST_OK;
    case CFG_ENUM:
        if (!enum_has(k->choices, enum_bool_name(k, value)))
            return st_fail(ST_CONFIG, "%s: bad value for %s.%s (expected one of %s, found '%s')", origin,
                           k->section, k->key, k->choices, value);
        return ST_OK;
    case CFG_STRING:
        return ST_OK;
    }
    return ST_OK;
}

/* Where a comment starts in s: ';' or '#' at the start or after whitespace; NULL if none. */
static const char *comment_mark(const char *s)
{
    for (const char *p = s; *p; p++)
        if ((*p == ';' || *p == '#') && (p == s || isspace((unsigned char)p[-1]))) return p;
    return NULL;
}

status_t config_set(config *c, const char *section, const char *key, const char *value, const char *origin)
{
    char valid[1024];
    if (!section_known(c, section)) {
        list_keys(c, NULL, valid, sizeof valid);
        return st_fail(ST_CONFIG, "%s: unknown section [%s] (valid: %s)", origin, section, valid);
    }
    int i = find_key(c, section, key);
    if (i < 0) {
        list_keys(c, section, valid, sizeof valid);
        return st_fail(ST_CONFIG, "%s: unknown key '%s' in [%s] (valid: %s)", origin, key, section, valid);
    }
    TRY(check_value(&c->schema[i], value, origin));
    /* config_print writes "key = value": a value a config file would cut there would not load back. */
    const char *mark = comment_mark(value);
    FAIL_IF(mark || strpbrk(value, "\r\n"), ST_CONFIG,
            "%s: the value of %s.%s has %s (found '%s'); a config file would cut the value there, so remove it",
            origin, c->schema[i].section, c->schema[i].key,
            mark ? (*mark == ';' ? "a ';' at its start or after a space" : "a '#' at its start or after a space")
                 : "a line break", value);
    if (c->schema[i].type == CFG_ENUM) value = enum_bool_name(&c->schema[i], value);
    char *text = dup_string(value);
    FAIL_IF(!text, ST_NOMEM, "%s: out of memory", origin);
    free(c->values[i].text);
    c->values[i].text = text;
    snprintf(c->values[i].origin, ORIGIN_MAX, "%s", origin);
    return ST_OK;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1])) *--end = '\0';
    return s;
}

/* Strips a comment: ';' or '#' at the start or after whitespace. */
static void strip_comment(char *s)
{
    const char *p = comment_mark(s);
    if (p) s[p - s] = '\0';
}

typedef struct seen_list {
    char (*names)[128];
    int n, cap;
} seen_list;

static int seen_add(seen_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0) return 0;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 32;
        void *grown = realloc(l->names, (size_t)cap * sizeof *l->names);
        if (!grown) return -1;
        l->names = grown;
        l->cap = cap;
    }
    snprintf(l->names[l->n++], 128, "%s", name);
    return 1;
}

static status_t parse_line(config *c, char *line, const char *origin, char *section, seen_list *sections,
                           seen_list *keys)
{
    strip_comment(line);
    char *s = trim(line);
    if (!*s) return ST_OK;
    if (*s == '[') {
        char *close = strchr(s, ']');
        FAIL_IF(!close || *trim(close + 1), ST_CONFIG,
                "%s: malformed section header (expected [name], found '%s')", origin, s);
        *close = '\0';
        char *name = trim(s + 1);
        FAIL_IF(strlen(name) >= 64, ST_CONFIG, "%s: section name too long", origin);
        int added = seen_add(sections, name);
        FAIL_IF(added < 0, ST_NOMEM, "%s: out of memory", origin);
        FAIL_IF(added == 0, ST_CONFIG, "%s: duplicate section [%s]; merge its keys into the first [%s]", origin,
                name, name);
        if (!section_known(c, name)) {
            char valid[1024];
            list_keys(c, NULL, valid, sizeof valid);
            return st_fail(ST_CONFIG, "%s: unknown section [%s] (valid: %s)", origin, name, valid);
        }
        snprintf(section, 64, "%s", name);
        return ST_OK;
    }
    char *eq = strchr(s, '=');
    FAIL_IF(!eq, ST_CONFIG, "%s: expected 'key = value', found '%s'", origin, s);
    *eq = '\0';
    char *key = trim(s), *value = trim(eq + 1);
    FAIL_IF(!*key, ST_CONFIG, "%s: missing key before '='", origin);
    FAIL_IF(!*section, ST_CONFIG, "%s: key '%s' before any [section]; put it under its section", origin, key);
    char full[128];
    snprintf(full, sizeof full, "%s.%s", section, key);
    int added = seen_add(keys, full);
    FAIL_IF(added < 0, ST_NOMEM, "%s: out of memory", origin);
    FAIL_IF(added == 0, ST_CONFIG, "%s: duplicate key %s; keep one of them", origin, full);
    return config_set(c, section, key, value, origin);
}

status_t config_load_file(config *c, const char *path)
{
    char *text;
    size_t len;
    if (fileio_read_file(path, &text, &len) != ST_OK) {
        /* fileio_read_file says "PATH: cannot open (REASON); ..."; keep the reason. */
        char reason[256] = "unreadable";
        const char *open_paren = strchr(st_message(), '('), *close_paren = strchr(st_message(), ')');
        if (open_paren && close_paren > open_paren)
            snprintf(reason, sizeof reason, "%.*s", (int)(close_paren - open_paren - 1), open_paren + 1);
        return st_fail(ST_CONFIG, "%s: cannot read the config file (%s); check the --config path", path, reason);
    }
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        int line = 1;
        for (const char *p = text; p < nul; p++) line += *p == '\n';
        size_t offset = (size_t)(nul - text);
        free(text);
        return st_fail(ST_CONFIG, "%s:%d: a NUL byte at byte offset %zu (expected text); the file is damaged or not "
                       "a config file: remove the byte or give the right --config", path, line, offset);
    }
    seen_list sections = {0}, keys = {0};
    char section[64] = "";
    status_t st = ST_OK;
    int lineno = 0;
    for (char *line = text; line && st == ST_OK;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        lineno++;
        char origin[ORIGIN_MAX];
        snprintf(origin, sizeof origin, "%s:%d", path, lineno);
        line[strcspn(line, "\r")] = '\0';
        st = parse_line(c, line, origin, section, &sections, &keys);
        line = next;
    }
    free(sections.names);
    free(keys.names);
    free(text);
    return st;
}

status_t config_set_arg(config *c, const char *assignment)
{
    char buf[1024];
    FAIL_IF(strlen(assignment) >= sizeof buf, ST_CONFIG, "--set %.40s...: too long", assignment);
    snprintf(buf, sizeof buf, "%s", assignment);
    char *eq = strchr(buf, '=');
    char *dot = strchr(buf, '.');
    FAIL_IF(!eq || !dot || dot > eq, ST_CONFIG,
            "--set %s: expected section.key=value (for example --set train.steps=100)", assignment);
    *eq = '\0';
    *dot = '\0';
    char origin[ORIGIN_MAX];
    snprintf(origin, sizeof origin, "--set %s", assignment);
    return config_set(c, trim(buf), trim(dot + 1), trim(eq + 1), origin);
}

/* The key "section.key", or -1. */
static int find_name(const config *c, const char *name)
{
    const char *dot = strchr(name, '.');
    if (!dot) return -1;
    char section[64];
    snprintf(section, sizeof section, "%.*s", (int)(dot - name), name);
    return find_key(c, section, dot + 1);
}

static int lookup(const config *c, const char *name, config_type want)
{
    int i = find_name(c, name);
    if (i >= 0 && (c->schema[i].type == want || (want == CFG_STRING && c->schema[i].type == CFG_ENUM))) return i;
    fprintf(stderr, "mpilm: internal error: config key '%s' is not in the schema with that type\n", name);
    abort();
}

int64_t config_int(const config *c, const char *name)
{
    int i = lookup(c, name, CFG_INT);
    int64_t v;
    if (c->schema[i].choices && strcmp(c->values[i].text, c->schema[i].choices) == 0) return -1;
    return parse_int(c->values[i].text, &v) ? v : 0;
}

double config_float(const config *c, const char *name)
{
    double v;
    return parse_float(c->values[lookup(c, name, CFG_FLOAT)].text, &v) ? v : 0.0;
}

int config_bool(const config *c, const char *name)
{
    int v;
    return parse_bool(c->values[lookup(c, name, CFG_BOOL)].text, &v) ? v : 0;
}

const char *config_str(const config *c, const char *name) { return c->values[lookup(c, name, CFG_STRING)].text; }


const char *config_text(const config *c, const char *name)
{
    int i = find_name(c, name);
    return i >= 0 ? c->values[i].text : "";
}

const char *config_origin(const config *c, const char *name)
{
    int i = find_name(c, name);
    return i >= 0 ? c->values[i].origin : "unknown";
}

void config_print(const config *c, FILE *out, int with_origin)
{
    const char *section = "";
    for (int i = 0; i < c->n; i++) {
        if (strcmp(c->schema[i].section, section) != 0) {
            section = c->schema[i].section;
            fprintf(out, "%s[%s]\n", i ? "\n" : "", section);
        }
        if (with_origin)
            fprintf(out, "%s = %s ; from %s\n", c->schema[i].key, c->values[i].text, c->values[i].origin);
        else
            fprintf(out, "%s = %s\n", c->schema[i].key, c->values[i].text);
    }
}

int config_n_given(const config *c)
{
    int n = 0;
    for (int i = 0; i < c->n; i++) n += strcmp(c->values[i].origin, "default") != 0;
    return n;
}

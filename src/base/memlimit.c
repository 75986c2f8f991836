/* base/memlimit — cgroup, MemAvailable and RLIMIT_AS limits (memlimit.h). */
#include "base/memlimit.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* v1 "unlimited" is LONG_MAX rounded down to a page; anything this large is none. */
#define NO_LIMIT ((uint64_t)1 << 60)

int memlimit_parse(const char *text, uint64_t *bytes)
{
    while (isspace((unsigned char)*text)) text++;
    if (!isdigit((unsigned char)*text)) return 0; /* "max", empty, garbage */
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    while (isspace((unsigned char)*end)) end++;
    if (*end || v >= NO_LIMIT) return 0;
    *bytes = v;
    return 1;
}

/* The first line of a small file, without its newline; 0 when unreadable. */
static int read_line(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fgets(buf, (int)len, f) != NULL;
    fclose(f);
    if (ok) buf[strcspn(buf, "\n")] = '\0';
    return ok;
}

/* This process's cgroup path: v2's "0::PATH", or v1's memory hierarchy. */
static int own_cgroup(const char *root, int *v2, char *path, size_t len)
{
    char file[4200], line[4200];
    snprintf(file, sizeof file, "%s/proc/self/cgroup", root);
    FILE *f = fopen(file, "r");
    if (!f) return 0;
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c1 = *c2 = '\0'; /* line = hierarchy id, c1 + 1 = controllers, c2 + 1 = path */
        if (strcmp(line, "0") == 0 && !c1[1]) {
            *v2 = 1; /* keep looking: a v1 memory line wins in a hybrid setup */
            snprintf(path, len, "%s", c2 + 1);
            found = 0;
            continue;
        }
        for (char *tok = strtok(c1 + 1, ","); tok; tok = strtok(NULL, ","))
            if (strcmp(tok, "memory") == 0) found = 1;
        if (found) {
            *v2 = 0;
            snprintf(path, len, "%s", c2 + 1);
        }
    }
    fclose(f);
    return found || *v2;
}

int memlimit_cgroup(const char *root, mem_limit *out)
{
    int v2 = 0, found = 0;
    char path[4096];
    if (!own_cgroup(root, &v2, path, sizeof path)) return 0;
    const char *mount = v2 ? "sys/fs/cgroup" : "sys/fs/cgroup/memory";
    const char *name = v2 ? "memory.max" : "memory.limit_in_bytes";
    for (;;) { /* PATH, its parent, ..., "/" */
        char file[8400], text[128];
        uint64_t bytes;
        snprintf(file, sizeof file, "%s/%s%s%s/%s", root, mount, path[0] == '/' ? "" : "/",
                 strcmp(path, "/") == 0 ? "" : path, name);
        if (read_line(file, text, sizeof text) && memlimit_parse(text, &bytes) && (!found || bytes < out->bytes)) {
            out->bytes = bytes;
            snprintf(out->source, sizeof out->source, "the cgroup limit %s = %s", file, text);
            found = 1;
        }
        char *slash = strrchr(path, '/');
        if (!slash || strcmp(path, "/") == 0 || !path[0]) break;
        if (slash == path) snprintf(path, sizeof path, "/");
        else *slash = '\0';
    }
    return found;
}

/* "Key:   123 kB" of a /proc file, in bytes. */
static int proc_kib(const char *file, const char *key, uint64_t *bytes)
{
    FILE *f = fopen(file, "r");
    if (!f) return 0;
    char line[256];
    size_t n = strlen(key);
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long long kib;
        if (strncmp(line, key, n) == 0 && line[n] == ':' && sscanf(line + n + 1, "%llu", &kib) == 1) {
            *bytes = (uint64_t)kib * 1024;
            found = 1;
        }
    }
    fclose(f);
    return found;
}

int memlimit_available(const char *root, mem_limit *out)
{
    char file[4200];
    snprintf(file, sizeof file, "%s/proc/meminfo", root);
    if (!proc_kib(file, "MemAvailable", &out->bytes)) return 0;
    snprintf(out->source, sizeof out->source, "MemAvailable in %s = %llu kB", file,
             (unsigned long long)(out->bytes / 1024));
    return 1;
}

uint64_t memlimit_virtual_size(const char *root)
{
    char file[4200];
    uint64_t bytes = 0;
    snprintf(file, sizeof file, "%s/proc/self/status", root);
    return proc_kib(file, "VmSize", &bytes) ? bytes : 0;
}

int memlimit_address_space(mem_limit *out)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 0;
    out->bytes = (uint64_t)rl.rlim_cur;
    snprintf(out->source, sizeof out->source, "ulimit -v (RLIMIT_AS) = %llu kB",
             (unsigned long long)(out->bytes / 1024));
    return 1;
}

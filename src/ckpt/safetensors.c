#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"
#include "tensor/bf16.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader assumes a little-endian host"
#endif

/* The reference implementation refuses headers above 100 MB; so do we, which
 * also bounds what a corrupt length field can make us parse. */
#define HEADER_MAX 100000000ull
/* Largest integer a JSON number (double) holds exactly. */
#define JSON_INT_MAX 9007199254740992.0

static const struct {
    const char *name;
    int size;
} dtype_info[] = {
    [SAFET_F32] = {"F32", 4}, [SAFET_F64] = {"F64", 8}, [SAFET_I32] = {"I32", 4},
    [SAFET_I64] = {"I64", 8}, [SAFET_F16] = {"F16", 2}, [SAFET_BF16] = {"BF16", 2},
    [SAFET_U8] = {"U8", 1}, [SAFET_BOOL] = {"BOOL", 1}, [SAFET_I8] = {"I8", 1}, [SAFET_I16] = {"I16", 2},
    [SAFET_U16] = {"U16", 2}, [SAFET_U32] = {"U32", 4}, [SAFET_U64] = {"U64", 8},
    [SAFET_F8_E4M3] = {"F8_E4M3", 1}, [SAFET_F8_E5M2] = {"F8_E5M2", 1},
};
#define DTYPE_LIST "F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64, BOOL, F8_E4M3 or F8_E5M2"
#define N_DTYPES ((int)(sizeof dtype_info / sizeof dtype_info[0]))

/* Invariants after safet_open: tensors sorted by begin, tiling [0, data_len)
 * exactly (each begins where the previous ends); by_name points at the
 * tensors sorted by name, no two equal. */
struct safet_file {
    char *path;
    const uint8_t *map;
    size_t map_len;
    uint64_t data_start, data_len;    /* data area = map[data_start, data_start + data_len) */
    const char *header;               /* JSON text = map[8, data_start) */
    safet_tensor *tensors;
    int count;
    const safet_tensor **by_name;
    char **meta_keys, **meta_values;
    int meta_count;
};

struct safet_entry {
    char *name;
    safet_dtype dtype;
    int ndim;
    int64_t shape[SAFET_MAX_DIMS];
    const void *data;
    int from_f32;                     /* data is float32, converted to dtype when written */
};

struct safet_meta {
    char *key, *value;
};

int safet_dtype_size(safet_dtype dt) { return dtype_info[dt].size; }
const char *safet_dtype_name(safet_dtype dt) { return dtype_info[dt].name; }

int64_t safet_numel(const safet_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

static uint64_t read_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static status_t stream_grow_array(void **array, int *cap, int need, size_t elem)
{
    if (need <= *cap) return ST_OK;
    int cap_new = *cap ? *cap * 2 : 16;
    while (cap_new < need) cap_new *= 2;
    void *grown = realloc(*array, (size_t)cap_new * elem);
    FAIL_IF(!grown, ST_NOMEM, "safetensors: out of memory for %d entries", cap_new);
    *array = grown;
    *cap = cap_new;
    return ST_OK;
}

/* ---- reading: header ------------------------------------------------------- */

/* File byte offset of a tensor's entry in the header: where its quoted name
 * first appears (the header start when the name is written with escapes). */
static uint64_t entry_offset(const safet_file *f, const char *name)
{
    size_t len = strlen(name);
    const char *h = f->header, *end = f->header + (f->data_start - 8);
    for (const char *p = h; p + len + 2 <= end; p++)
        if (p[0] == '"' && p[len + 1] == '"' && memcmp(p + 1, name, len) == 0) return 8 + (uint64_t)(p - h);
    return 8;
}

/* Fails with "PATH: tensor "NAME" at byte B: " + the formatted rest. */
static status_t entry_fail(const safet_file *f, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static status_t entry_fail(const safet_file *f, const char *name, const char *fmt, ...)
{
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return st_fail(ST_FORMAT, "%s: tensor \"%s\" at byte %llu of the header: %s", f->path, name,
                   (unsigned long long)entry_offset(f, name), what);
}

static int json_to_u64(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item)) return 0;
    double d = item->valuedouble;
    if (!(d >= 0 && d < JSON_INT_MAX) || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static status_t parse_dtype(const safet_file *f, const char *name, const cJSON *item, safet_dtype *out)
{
    const char *s = cJSON_GetStringValue(item);
    for (int i = 0; s && i < N_DTYPES; i++)
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (safet_dtype)i;
            return ST_OK;
        }
    static const char *const newer[] = {"F8_E8M0", "C64", "F4", "F6_E2M3", "F6_E3M2"};
    for (size_t i = 0; s && i < sizeof newer / sizeof newer[0]; i++)
        if (strcmp(s, newer[i]) == 0)
            return entry_fail(f, name, "dtype %s, of newer versions of the format, is not read by mpilm (expected "
                              DTYPE_LIST "); convert the tensor to one of these", s);
    return entry_fail(f, name, "unknown dtype (expected " DTYPE_LIST ", found %s); the header is corrupt or not "
                      "safetensors", s ? s : "no dtype string");
}

static status_t parse_shape(const safet_file *f, const char *name, const cJSON *item, safet_tensor *t)
{
    int n = cJSON_IsArray(item) ? cJSON_GetArraySize(item) : -1;
    if (n < 0 || n > SAFET_MAX_DIMS)
        return entry_fail(f, name, "bad shape (expected an array of at most %d dims, found %s)", SAFET_MAX_DIMS,
                          n < 0 ? "no array" : "more dims");
    t->ndim = n;
    for (int d = 0; d < n; d++) {
        const cJSON *v = cJSON_GetArrayItem(item, d);
        uint64_t dim;
        if (json_to_u64(v, &dim)) {
            t->shape[d] = (int64_t)dim;
            continue;
        }
        if (cJSON_IsNumber(v) && v->valuedouble >= JSON_INT_MAX)
            return entry_fail(f, name, "bad shape: dim %d is %.0f, too large (expected below 2^53, the largest "
                              "integer a JSON number holds exactly; no tensor is that big): the header is corrupt", d,
                              v->valuedouble);
        if (cJSON_IsNumber(v))
            return entry_fail(f, name, "bad shape: dim %d is not a non-negative integer (found %.17g)", d,
                              v->valuedouble);
        return entry_fail(f, name, "bad shape: dim %d is not a non-negative integer (found no number)", d);
    }
    return ST_OK;
}

/* Offsets in range and consistent with dtype and shape. */
static status_t parse_offsets(const safet_file *f, const char *name, const cJSON *item, safet_tensor *t)
{
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2 || !json_to_u64(cJSON_GetArrayItem(item, 0), &t->begin) ||
        !json_to_u64(cJSON_GetArrayItem(item, 1), &t->end) || t->begin > t->end)
        return entry_fail(f, name, "bad data_offsets (expected [begin, end] with 0 <= begin <= end)");
    if (t->end > f->data_len)
        return entry_fail(f, name, "data_offsets [%llu, %llu] out of range (expected end <= %llu, the size of the data "
                          "area at byte %llu); the file is truncated or corrupt", (unsigned long long)t->begin,
                          (unsigned long long)t->end, (unsigned long long)f->data_len,
                          (unsigned long long)f->data_start);
    uint64_t bytes = (uint64_t)safet_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++)
        if (__builtin_mul_overflow(bytes, (uint64_t)t->shape[d], &bytes))
            return entry_fail(f, name, "shape too large (the byte size overflows 64 bits)");
    if (t->end - t->begin != bytes)
        return entry_fail(f, name, "data_offsets [%llu, %llu] hold %llu bytes (expected %llu = %llu elements of %s)",
                          (unsigned long long)t->begin, (unsigned long long)t->end,
                          (unsigned long long)(t->end - t->begin), (unsigned long long)bytes,
                          (unsigned long long)(bytes / (uint64_t)safet_dtype_size(t->dtype)),
                          safet_dtype_name(t->dtype));
    return ST_OK;
}

static status_t parse_tensor(safet_file *f, const cJSON *entry, safet_tensor *t)
{
    const char *name = entry->string;
    FAIL_IF(!cJSON_IsObject(entry), ST_FORMAT,
            "%s: tensor \"%s\" at byte %llu of the header: expected an object {dtype, shape, data_offsets}", f->path,
            name, (unsigned long long)entry_offset(f, name));
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    FAIL_IF(!t->name, ST_NOMEM, "%s: out of memory for tensor names", f->path);
    TRY(parse_dtype(f, name, cJSON_GetObjectItemCaseSensitive(entry, "dtype"), &t->dtype));
    TRY(parse_shape(f, name, cJSON_GetObjectItemCaseSensitive(entry, "shape"), t));
    return parse_offsets(f, name, cJSON_GetObjectItemCaseSensitive(entry, "data_offsets"), t);
}

static status_t parse_metadata(safet_file *f, const cJSON *meta)
{
    uint64_t at = entry_offset(f, "__metadata__");
    FAIL_IF(!cJSON_IsObject(meta), ST_FORMAT, "%s: \"__metadata__\" at byte %llu of the header is not an object of strings",
            f->path, (unsigned long long)at);
    int n = cJSON_GetArraySize(meta);
    f->meta_keys = calloc((size_t)n + 1, sizeof *f->meta_keys);
    f->meta_values = calloc((size_t)n + 1, sizeof *f->meta_values);
    FAIL_IF(!f->meta_keys || !f->meta_values, ST_NOMEM, "%s: out of memory for metadata", f->path);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, meta) {
        FAIL_IF(!cJSON_IsString(kv), ST_FORMAT, "%s: \"__metadata__\" entry \"%s\" at byte %llu of the header is not "
                "a string (the format allows only string values)", f->path, kv->string, (unsigned long long)at);
        f->meta_keys[f->meta_count] = strdup(kv->string);
        f->meta_values[f->meta_count] = strdup(kv->valuestring);
        f->meta_count++;
        FAIL_IF(!f->meta_keys[f->meta_count - 1] || !f->meta_values[f->meta_count - 1], ST_NOMEM,
                "%s: out of memory for metadata", f->path);
    }
    return ST_OK;
}

static status_t parse_entries(safet_file *f, const cJSON *root)
{
    int n = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
    FAIL_IF(!f->tensors, ST_NOMEM, "%s: out of memory for %d tensors", f->path, n);
    const cJSON *entry;
    cJSON_ArrayForEach(entry, root) {
        if (strcmp(entry->string, "__metadata__") == 0) {
            FAIL_IF(f->meta_keys, ST_FORMAT, "%s: \"__metadata__\" appears twice in the header", f->path);
            TRY(parse_metadata(f, entry));
            continue;
        }
        TRY(parse_tensor(f, entry, &f->tensors[f->count]));
        f->count++;
    }
    return ST_OK;
}

/* Offset of the first byte of s[0, n) that is not part of well-formed UTF-8
 * (no overlong forms, surrogates or code points above U+10FFFF); n if none. */
static size_t utf8_invalid_at(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        int len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (len == 0 || i + (size_t)len > n) return i;
        /* the second byte's range excludes overlong forms, surrogates and > U+10FFFF */
        uint8_t lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80, hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
        if (len > 1 && (s[i + 1] < lo || s[i + 1] > hi)) return i;
        for (int k = 2; k < len; k++)
            if ((s[i + (size_t)k] & 0xc0) != 0x80) return i;
        i += (size_t)len;
    }
    return n;
}

static status_t parse_header(safet_file *f)
{
    uint64_t n = read_le64(f->map), room = f->map_len - 8;
    FAIL_IF(n > room || n > HEADER_MAX, ST_FORMAT, "%s: header length at byte 0 runs beyond the file (expected at "
            "most %llu bytes, found %llu); the file is truncated or not safetensors", f->path,
            (unsigned long long)(room < HEADER_MAX ? room : HEADER_MAX), (unsigned long long)n);
    f->header = (const char *)f->map + 8;
    f->data_start = 8 + n;
    f->data_len = f->map_len - f->data_start;
    size_t bad = utf8_invalid_at((const uint8_t *)f->header, (size_t)n);
    FAIL_IF(bad < n, ST_FORMAT, "%s: header byte 0x%02x at byte %llu is not UTF-8 (expected a UTF-8 JSON header); the "
            "file is corrupt or not safetensors", f->path, (unsigned)(uint8_t)f->header[bad],
            (unsigned long long)(8 + bad));
    FAIL_IF(n == 0, ST_FORMAT, "%s: empty header (N = 0 at byte 0; expected a JSON object); the file is corrupt or "
            "not safetensors", f->path);
    FAIL_IF(f->header[0] != '{', ST_FORMAT, "%s: header at byte 8 begins with byte 0x%02x (expected \"{\": the format "
            "requires the JSON object to start the header); the file is corrupt or not safetensors", f->path,
            (unsigned)(uint8_t)f->header[0]);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(f->header, (size_t)n, &end, 0);
    if (!root || !cJSON_IsObject(root)) {   /* a parse error points at its byte; a non-object at the start */
        int parsed = root != NULL;
        uint64_t at = 8 + (uint64_t)((!parsed && end ? end : f->header) - f->header);
        cJSON_Delete(root);
        return st_fail(ST_FORMAT, "%s: invalid JSON header at byte %llu (expected one JSON object naming the tensors, "
                       "found %s); the file is corrupt or not safetensors", f->path, (unsigned long long)at,
                       parsed ? "another JSON value" : "a syntax error");
    }
    while (end < f->header + n && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    status_t st = end == f->header + n ? parse_entries(f, root)
                  : st_fail(ST_FORMAT, "%s: unexpected byte 0x%02x after the JSON header at byte %llu (expected space "
                            "padding up to byte %llu)", f->path, (unsigned)(uint8_t)*end,
                            (unsigned long long)(8 + (uint64_t)(end - f->header)), (unsigned long long)f->data_start);
    cJSON_Delete(root);
    return st;
}

/* ---- reading: layout checks -------------------------------------------------- */

static int compare_begin(const void *a, const void *b)
{
    const safet_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int compare_name(const void *a, const void *b)
{
    return strcmp((*(const safet_tensor *const *)a)->name, (*(const safet_tensor *const *)b)->name);
}

/* The format's rule (the reference's Metadata::validate and read_metadata):
 * sorted by offset, the tensors tile the data area: the first begins at 0,
 * each where the previous ends, the last at the end of the file. A hole or
 * trailing bytes could hide a second file format in the same bytes. */
static status_t check_cover(const safet_file *f)
{
    uint64_t at = 0;
    for (int i = 0; i < f->count; i++) {
        const safet_tensor *b = &f->tensors[i];
        const char *prev = i ? f->tensors[i - 1].name : NULL;
        FAIL_IF(b->begin < at, ST_FORMAT, "%s: tensors \"%s\" and \"%s\" overlap at byte %llu of the file (data "
                "offsets [%llu, %llu] and [%llu, %llu]); the header is corrupt", f->path, prev, b->name,
                (unsigned long long)(f->data_start + b->begin), (unsigned long long)f->tensors[i - 1].begin,
                (unsigned long long)at, (unsigned long long)b->begin, (unsigned long long)b->end);
        FAIL_IF(b->begin > at, ST_FORMAT, "%s: a hole of %llu bytes in the data area at byte %llu of the file, before "
                "tensor \"%s\" (expected each tensor to begin where the %s, at data offset %llu; the format allows "
                "no holes); the header is corrupt", f->path, (unsigned long long)(b->begin - at),
                (unsigned long long)(f->data_start + at), b->name, prev ? "previous one ends" : "data area begins",
                (unsigned long long)at);
        at = b->end;
    }
    FAIL_IF(at != f->data_len, ST_FORMAT, "%s: %llu bytes after the last tensor at byte %llu of the file (expected "
            "the tensors to end at the end of the file; the format allows no trailing bytes); the file is corrupt or "
            "another format", f->path, (unsigned long long)(f->data_len - at),
            (unsigned long long)(f->data_start + at));
    return ST_OK;
}

static status_t check_layout(safet_file *f)
{
    qsort(f->tensors, (size_t)f->count, sizeof *f->tensors, compare_begin);
    TRY(check_cover(f));
    f->by_name = malloc(((size_t)f->count + 1) * sizeof *f->by_name);
    FAIL_IF(!f->by_name, ST_NOMEM, "%s: out of memory for the tensor index", f->path);
    for (int i = 0; i < f->count; i++) f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, (size_t)f->count, sizeof *f->by_name, compare_name);
    for (int i = 1; i < f->count; i++) {
        const char *name = f->by_name[i]->name;
        if (strcmp(f->by_name[i - 1]->name, name) == 0)
            return entry_fail(f, name, "the name appears twice in the header (expected unique tensor names)");
    }
    return ST_OK;
}

static status_t map_file(safet_file *f, const char *path)
{
    int fd = open(path, O_RDONLY);
    FAIL_IF(fd < 0, ST_IO, "%s: cannot open (%s); check the path", path, strerror(errno));
    struct stat sb;
    int rc = fstat(fd, &sb);
    if (rc != 0 || sb.st_size < 8) {
        close(fd);
        return st_fail(rc ? ST_IO : ST_FORMAT, "%s: truncated header at byte 0 (expected at least 8 bytes for the "
                       "header length, found %lld); the file is not a complete safetensors file", path,
                       rc ? -1LL : (long long)sb.st_size);
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    FAIL_IF(map == MAP_FAILED, ST_IO, "%s: cannot map %lld bytes (%s)", path, (long long)sb.st_size, strerror(err));
    f->map = map;
    f->map_len = (size_t)sb.st_size;
    return ST_OK;
}

status_t safet_open(safet_file **out, const char *path)
{
    *out = NULL;
    safet_file *f = calloc(1, sizeof *f);
    FAIL_IF(!f, ST_NOMEM, "%s: out of memory", path);
    f->path = strdup(path);
    status_t st = f->path ? map_file(f, path) : st_fail(ST_NOMEM, "%s: out of memory", path);
    if (st == ST_OK) st = parse_header(f);
    if (st == ST_OK) st = check_layout(f);
    if (st != ST_OK) {
        safet_close(f);
        return st;
    }
    *out = f;
    return ST_OK;
}

void safet_close(safet_file *f)
{
    if (!f) return;
    if (f->map) munmap((void *)f->map, f->map_len);
    for (int i = 0; i < f->count + 1 && f->tensors; i++) free((char *)f->tensors[i].name);
    for (int i = 0; i < f->meta_count; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->tensors);
    free(f->by_name);
    free(f->path);
    free(f);
}

/* ---- reading: access ----------------------------------------------------------- */

int safet_count(const safet_file *f) { return f->count; }
const safet_tensor *safet_at(const safet_file *f, int i) { return &f->tensors[i]; }
const char *safet_path(const safet_file *f) { return f->path; }

const safet_tensor *safet_find(const safet_file *f, const char *name)
{
    int lo = 0, hi = f->count;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const void *safet_data(const safet_file *f, const safet_tensor *t) { return f->map + f->data_start + t->begin; }

const char *safet_metadata(const safet_file *f, const char *key)
{
    for (int i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

int safet_metadata_count(const safet_file *f) { return f->meta_count; }
const char *safet_metadata_key(const safet_file *f, int i) { return f->meta_keys[i]; }

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {   /* zero or subnormal: mant * 2^-24 */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31) bits = sign | 0x7f800000u | mant << 13;
    else bits = sign | (exp + 112) << 23 | mant << 13;
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static float element_to_float(const uint8_t *p, safet_dtype dt)
{
    float f32;
    double f64;
    uint16_t h;
    uint32_t bits;
    switch (dt) {
    case SAFET_F64: memcpy(&f64, p, 8); return (float)f64;
    case SAFET_F16: memcpy(&h, p, 2); return half_to_float(h);
    case SAFET_BF16:
        memcpy(&h, p, 2);
        bits = (uint32_t)h << 16;
        memcpy(&f32, &bits, 4);
        return f32;
    default: memcpy(&f32, p, 4); return f32;
    }
}

status_t safet_read_f32(const safet_file *f, const char *name, float *dst, int64_t count)
{
    const safet_tensor *t = safet_find(f, name);
    FAIL_IF(!t, ST_FORMAT, "%s: tensor \"%s\" not found (the file has %d tensors); check the name or the file",
            f->path, name, f->count);
    FAIL_IF(t->dtype != SAFET_F32 && t->dtype != SAFET_F64 && t->dtype != SAFET_F16 && t->dtype != SAFET_BF16,
            ST_FORMAT, "%s: tensor \"%s\" at byte %llu: cannot read as float32 (expected F32, F64, F16 or BF16, "
            "found %s)", f->path, name, (unsigned long long)(f->data_start + t->begin), safet_dtype_name(t->dtype));
    int64_t n = safet_numel(t);
    FAIL_IF(n != count, ST_FORMAT, "%s: tensor \"%s\" at byte %llu has %lld elements (expected %lld); the file "
            "belongs to a model of another shape", f->path, name, (unsigned long long)(f->data_start + t->begin),
            (long long)n, (long long)count);
    const uint8_t *p = safet_data(f, t);
    int size = safet_dtype_size(t->dtype);
    if (t->dtype == SAFET_F32) memcpy(dst, p, (size_t)n * 4);
    else
        for (int64_t i = 0; i < n; i++) dst[i] = element_to_float(p + i * size, t->dtype);
    return ST_OK;
}

/* ---- writing ------------------------------------------------------------------------- */

status_t safet_writer_init(safet_writer *w)
{
    memset(w, 0, sizeof *w);
    return ST_OK;
}

static uint64_t entry_bytes(const struct safet_entry *e)
{
    uint64_t n = (uint64_t)safet_dtype_size(e->dtype);
    for (int d = 0; d < e->ndim; d++) n *= (uint64_t)e->shape[d];
    return n;
}

static status_t add_entry(safet_writer *w, const char *name, safet_dtype dt, int ndim, const int64_t *shape,
                          const void *data, int from_f32)
{
    FAIL_IF(!name[0] || strcmp(name, "__metadata__") == 0, ST_ERROR,
            "safetensors writer: bad tensor name \"%s\" (expected a non-empty name other than __metadata__)", name);
    FAIL_IF((int)dt < 0 || (int)dt >= N_DTYPES, ST_ERROR, "safetensors writer: tensor \"%s\": unknown dtype %d", name,
            (int)dt);
    FAIL_IF(ndim < 0 || ndim > SAFET_MAX_DIMS, ST_ERROR,
            "safetensors writer: tensor \"%s\" has %d dims (expected 0 to %d)", name, ndim, SAFET_MAX_DIMS);
    for (int i = 0; i < w->count; i++)
        FAIL_IF(strcmp(w->entries[i].name, name) == 0, ST_ERROR,
                "safetensors writer: tensor \"%s\" added twice; give each tensor a unique name", name);
    TRY(stream_grow_array((void **)&w->entries, &w->cap, w->count + 1, sizeof *w->entries));
    struct safet_entry *e = &w->entries[w->count];
    memset(e, 0, sizeof *e);
    e->dtype = dt;
    e->ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        FAIL_IF(shape[d] < 0, ST_ERROR, "safetensors writer: tensor \"%s\" dim %d is negative (%lld)", name, d,
                (long long)shape[d]);
        e->shape[d] = shape[d];
    }
    FAIL_IF(!data && entry_bytes(e) > 0, ST_ERROR, "safetensors writer: tensor \"%s\" has no data", name);
    e->data = data;
    e->from_f32 = from_f32;
    e->name = strdup(name);
    FAIL_IF(!e->name, ST_NOMEM, "safetensors writer: out of memory");
    w->count++;
    return ST_OK;
}

status_t safet_writer_add(safet_writer *w, const char *name, safet_dtype dt, int ndim, const int64_t *shape,
                          const void *data)
{
    return add_entry(w, name, dt, ndim, shape, data, 0);
}

status_t safet_writer_add_f32(safet_writer *w, const char *name, safet_dtype dt, int ndim, const int64_t *shape,
                              const float *data)
{
    FAIL_IF(dt != SAFET_F32 && dt != SAFET_BF16, ST_ERROR,
            "safetensors writer: tensor \"%s\": float32 data can be stored as F32 or BF16, not %s", name,
            (int)dt >= 0 && (int)dt < N_DTYPES ? safet_dtype_name(dt) : "an unknown dtype");
    return add_entry(w, name, dt, ndim, shape, data, dt != SAFET_F32);
}

status_t safet_writer_meta(safet_writer *w, const char *key, const char *value)
{
    for (int i = 0; i < w->meta_count; i++)
        FAIL_IF(strcmp(w->meta[i].key, key) == 0, ST_ERROR, "safetensors writer: metadata key \"%s\" set twice", key);
    TRY(stream_grow_array((void **)&w->meta, &w->meta_cap, w->meta_count + 1, sizeof *w->meta));
    struct safet_meta *m = &w->meta[w->meta_count];
    m->key = strdup(key);
    m->value = strdup(value);
    if (!m->key || !m->value) {
        free(m->key);
        free(m->value);
        return st_fail(ST_NOMEM, "safetensors writer: out of memory");
    }
    w->meta_count++;
    return ST_OK;
}

static cJSON *header_entry(const struct safet_entry *e, uint64_t begin)
{
    cJSON *obj = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offsets = cJSON_CreateArray();
    cJSON_AddItemToObject(obj, "dtype", cJSON_CreateString(safet_dtype_name(e->dtype)));
    cJSON_AddItemToObject(obj, "shape", shape);
    for (int d = 0; d < e->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
    cJSON_AddItemToObject(obj, "data_offsets", offsets);
    cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)begin));
    cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(begin + entry_bytes(e))));
    return obj;
}

/* The JSON header text (malloc'd); NULL when out of memory. */
static char *header_text(const safet_writer *w)
{
    cJSON *root = cJSON_CreateObject();
    if (w->meta_count) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < w->meta_count; i++) cJSON_AddStringToObject(meta, w->meta[i].key, w->meta[i].value);
    }
    uint64_t begin = 0;
    for (int i = 0; i < w->count; i++) {
        cJSON_AddItemToObject(root, w->entries[i].name, header_entry(&w->entries[i], begin));
        begin += entry_bytes(&w->entries[i]);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* A float32 entry stored as BF16: rounded chunk by chunk into a bounded buffer. */
static status_t write_converted(atomic_file *af, const struct safet_entry *e, const char *path)
{
    enum { CHUNK = 1 << 16 };
    size_t n = (size_t)(entry_bytes(e) / (uint64_t)safet_dtype_size(e->dtype));
    if (n == 0) return ST_OK;
    bf16 *buf = malloc((n < CHUNK ? n : CHUNK) * sizeof *buf);
    FAIL_IF(!buf, ST_NOMEM, "%s: out of memory converting tensor \"%s\" to BF16", path, e->name);
    const float *src = e->data;
    status_t st = ST_OK;
    for (size_t i = 0; i < n && st == ST_OK; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK;
        bf16_from_f32(buf, src + i, m);
        st = fileio_atomic_write(af, buf, m * sizeof *buf);
    }
    free(buf);
    return st;
}

status_t safet_writer_write(const safet_writer *w, const char *path)
{
    char *text = header_text(w);
    FAIL_IF(!text, ST_NOMEM, "%s: out of memory building the safetensors header", path);
    size_t len = strlen(text), padded = len + (8 - len % 8) % 8;
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++) prefix[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    atomic_file af;
    status_t st = fileio_atomic_open(&af, path);
    if (st == ST_OK) st = fileio_atomic_write(&af, prefix, sizeof prefix);
    if (st == ST_OK) st = fileio_atomic_write(&af, text, len);
    if (st == ST_OK) st = fileio_atomic_write(&af, spaces, padded - len);
    for (int i = 0; i < w->count && st == ST_OK; i++)
        st = w->entries[i].from_f32 ? write_converted(&af, &w->entries[i], path)
                                    : fileio_atomic_write(&af, w->entries[i].data, (size_t)entry_bytes(&w->entries[i]));
    free(text);
    return st == ST_OK ? fileio_atomic_commit(&af) : st;
}

void safet_writer_free(safet_writer *w)
{
    for (int i = 0; i < w->count; i++) free(w->entries[i].name);
    for (int i = 0; i < w->meta_count; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->entries);
    free(w->meta);
    memset(w, 0, sizeof *w);
}

/* ckpt/safetensors: round trip, a file laid out by the Hugging Face writer's
 * rules, malformed files (each error names the file and the byte), and the
 * PyTorch reference fixtures' contents. Run from the repository root. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/float_bits.h"
#include "base/fileio.h"
#include "ckpt/safetensors.h"
#include "tensor/bf16.h"

#define FIXTURES "tests/reference/fixtures/"

static char tmp_dir[256];

static void make_tmp_dir(void)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/mpilm-test-safet-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_dir));
}

static void remove_tmp_dir(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(safetensors, .init = make_tmp_dir, .fini = remove_tmp_dir);

static const char *tmp_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

/* Writes [le64 header length][header][data_len zero bytes]. */
static const char *write_raw(const char *name, uint64_t declared_len, const char *header, size_t data_len)
{
    size_t hlen = strlen(header), len = 8 + hlen + data_len;
    unsigned char *buf = calloc(1, len);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(declared_len >> (8 * i));
    memcpy(buf + 8, header, hlen);
    const char *path = tmp_path(name);
    cr_assert_eq(fileio_write_atomic(path, buf, len), ST_OK, "%s", st_message());
    free(buf);
    return path;
}

static const char *write_header(const char *name, const char *header, size_t data_len)
{
    return write_raw(name, strlen(header), header, data_len);
}

/* Opening fails with code, and the message names the file and "byte AT". */
static void assert_open_fails(const char *path, status_t code, long at, const char *what)
{
    safet_file *f = (safet_file *)1;
    cr_assert_eq(safet_open(&f, path), code, "expected failure for %s, message: %s", path, st_message());
    cr_assert_null(f);
    char where[64];
    snprintf(where, sizeof where, "byte %ld", at);
    cr_assert_not_null(strstr(st_message(), path), "message does not name the file: %s", st_message());
    cr_assert_not_null(strstr(st_message(), where), "message does not say %s: %s", where, st_message());
    cr_assert_not_null(strstr(st_message(), what), "message does not say '%s': %s", what, st_message());
}

/* ---- round trip ------------------------------------------------------------ */

Test(safetensors, writer_round_trip_keeps_order_shapes_bytes_and_metadata)
{
    float w[6] = {1.5f, -2, 3, 0.25f, 1e-30f, -7};
    int32_t ids[2] = {7, -9};
    double d = 0.1;
    uint8_t bytes[3] = {1, 2, 255};
    int64_t shape_w[2] = {2, 3}, shape_ids[1] = {2}, shape_b[1] = {3};
    safet_writer wr;
    cr_assert_eq(safet_writer_init(&wr), ST_OK);
    cr_assert_eq(safet_writer_add(&wr, "z.weight", SAFET_F32, 2, shape_w, w), ST_OK);
    cr_assert_eq(safet_writer_add(&wr, "a.ids", SAFET_I32, 1, shape_ids, ids), ST_OK);
    cr_assert_eq(safet_writer_add(&wr, "scalar", SAFET_F64, 0, NULL, &d), ST_OK);
    cr_assert_eq(safet_writer_add(&wr, "m.bytes \"quoted\"", SAFET_U8, 1, shape_b, bytes), ST_OK);
    cr_assert_eq(safet_writer_meta(&wr, "family", "gpt"), ST_OK);
    cr_assert_eq(safet_writer_meta(&wr, "note", "a \"quoted\" value"), ST_OK);
    const char *path = tmp_path("round.safetensors");
    cr_assert_eq(safet_writer_write(&wr, path), ST_OK, "%s", st_message());
    safet_writer_free(&wr);

    safet_file *f;
    cr_assert_eq(safet_open(&f, path), ST_OK, "%s", st_message());
    cr_assert_eq(safet_count(f), 4);
    const char *order[4] = {"z.weight", "a.ids", "scalar", "m.bytes \"quoted\""};
    for (int i = 0; i < 4; i++) cr_assert_str_eq(safet_at(f, i)->name, order[i]);
    const safet_tensor *t = safet_find(f, "z.weight");
    cr_assert(t && t->dtype == SAFET_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    cr_assert_eq(memcmp(safet_data(f, t), w, sizeof w), 0);
    t = safet_find(f, "a.ids");
    cr_assert(t && t->dtype == SAFET_I32 && t->begin == 24 && t->end == 32);
    cr_assert_eq(memcmp(safet_data(f, t), ids, sizeof ids), 0);
    t = safet_find(f, "scalar");
    cr_assert(t && t->ndim == 0 && safet_numel(t) == 1);
    t = safet_find(f, "m.bytes \"quoted\"");
    cr_assert(t && t->dtype == SAFET_U8 && memcmp(safet_data(f, t), bytes, 3) == 0);
    cr_assert_null(safet_find(f, "absent"));
    cr_assert_str_eq(safet_metadata(f, "family"), "gpt");
    cr_assert_str_eq(safet_metadata(f, "note"), "a \"quoted\" value");
    cr_assert_null(safet_metadata(f, "absent"));
    float back[6];
    cr_assert_eq(safet_read_f32(f, "z.weight", back, 6), ST_OK);
    cr_assert_eq(memcmp(back, w, sizeof w), 0);
    float scalar;
    cr_assert_eq(safet_read_f32(f, "scalar", &scalar, 1), ST_OK);
    cr_assert_eq(scalar, 0.1f);
    safet_close(f);
}

/* ---- float32 stored as BF16 ------------------------------------------------ */

/* The BF16 tensor's header entry: "NAME":{"dtype":"BF16",... in the raw file. */
static void expect_header_dtype(const char *path, const char *name, const char *dtype)
{
    char *raw;
    size_t n;
    cr_assert_eq(fileio_read_file(path, &raw, &n), ST_OK);
    char want[128];
    snprintf(want, sizeof want, "\"%s\":{\"dtype\":\"%s\"", name, dtype);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | (unsigned char)raw[i];
    char *header = strndup(raw + 8, (size_t)hlen);
    cr_expect_not_null(strstr(header, want), "header lacks %s: %s", want, header);
    free(header);
    free(raw);
}

Test(safetensors, float32_stored_as_bf16_is_rounded_to_nearest_even)
{
    /* hand-checked cases first, then random bit patterns across three conversion chunks */
    static const struct {
        uint32_t in;
        uint16_t out;
    } known[] = {
        {0x3F800000u, 0x3F80}, /* 1 */
        {0x3F808000u, 0x3F80}, /* 1 + 2^-8: a tie, to the even 1 */
        {0x3F818000u, 0x3F82}, /* 1 + 3*2^-8: a tie, to the even 1 + 2^-6 */
        {0x3F808001u, 0x3F81}, /* just above the tie: up */
        {0x3F807FFFu, 0x3F80}, /* just below: down */
        {0xBF818000u, 0xBF82}, /* negative tie */
        {0x00000000u, 0x0000}, {0x80000000u, 0x8000},   /* +0, -0 */
        {0x00000001u, 0x0000}, /* the smallest subnormal rounds to 0 */
        {0x00018000u, 0x0002}, /* subnormal tie to even */
        {0x7F7FFFFFu, 0x7F80}, /* FLT_MAX overflows to infinity, as in torch */
        {0x7F800000u, 0x7F80}, {0xFF800000u, 0xFF80},   /* +inf, -inf */
    };
    enum { K = sizeof known / sizeof known[0], NAN_AT = K, N = 3 * 65536 + 17 };
    float *x = malloc(N * sizeof *x), *back = malloc(N * sizeof *back);
    for (int i = 0; i < K; i++) x[i] = float_of(known[i].in);
    const uint32_t nans[4] = {0x7FC00000u, 0xFFC00000u, 0x7F800001u /* signalling */, 0xFFFFFFFFu};
    for (int i = 0; i < 4; i++) x[NAN_AT + i] = float_of(nans[i]);
    uint64_t state = 0x9E3779B97F4A7C15ull;
    for (int i = NAN_AT + 4; i < N; i++) {   /* xorshift: every exponent, sign and mantissa */
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        x[i] = float_of((uint32_t)state);
    }
    float w[3] = {1.5f, -0.1f, 3e38f};
    int64_t shape[2] = {N / 7, 7}, rest = N % 7, three = 3;
    uint8_t u8[3] = {9, 8, 7};
    safet_writer wr;
    safet_writer_init(&wr);
    cr_assert_eq(safet_writer_add_f32(&wr, "f32", SAFET_F32, 1, &three, w), ST_OK, "%s", st_message());
    cr_assert_eq(safet_writer_add_f32(&wr, "bf16", SAFET_BF16, 2, shape, x), ST_OK, "%s", st_message());
    cr_assert_eq(safet_writer_add_f32(&wr, "bf16.tail", SAFET_BF16, 1, &rest, x + N - rest), ST_OK);
    cr_assert_eq(safet_writer_add(&wr, "raw", SAFET_U8, 1, &three, u8), ST_OK);
    const char *path = tmp_path("bf16.safetensors");
    cr_assert_eq(safet_writer_write(&wr, path), ST_OK, "%s", st_message());
    safet_writer_free(&wr);
    expect_header_dtype(path, "bf16", "BF16");
    expect_header_dtype(path, "f32", "F32");

    safet_file *f;
    cr_assert_eq(safet_open(&f, path), ST_OK, "%s", st_message());
    const safet_tensor *t = safet_find(f, "bf16"), *tail = safet_find(f, "bf16.tail"), *raw = safet_find(f, "raw");
    cr_assert(t && t->dtype == SAFET_BF16 && t->ndim == 2 && t->shape[0] == N / 7 && t->shape[1] == 7);
    cr_assert(t->begin == 12 && t->end == 12 + 2 * (uint64_t)(N - rest), "[%llu, %llu)",
              (unsigned long long)t->begin, (unsigned long long)t->end);
    cr_assert(tail && tail->dtype == SAFET_BF16 && tail->begin == t->end && tail->end == t->end + 2 * rest);
    cr_assert(raw && raw->begin == tail->end && memcmp(safet_data(f, raw), u8, 3) == 0);
    cr_assert_eq(memcmp(safet_data(f, safet_find(f, "f32")), w, sizeof w), 0, "F32 stays bit for bit");

    const uint8_t *stored = safet_data(f, t);   /* the stored bytes: bf16_round of the input */
    for (int i = 0; i < N; i++) {
        const uint8_t *p = i < N - rest ? stored + 2 * i : (const uint8_t *)safet_data(f, tail) + 2 * (i - (N - rest));
        uint16_t h = (uint16_t)(p[0] | p[1] << 8);
        if (i < K) cr_assert_eq(h, known[i].out, "0x%08x -> 0x%04x (expected 0x%04x)", known[i].in, h, known[i].out);
        if (i >= NAN_AT && i < NAN_AT + 4)
            cr_assert((h & 0x7F80) == 0x7F80 && (h & 0x7F), "NaN 0x%08x became 0x%04x", nans[i - NAN_AT], h);
        else cr_assert_eq(h, bf16_round(x[i]), "element %d: 0x%08x -> 0x%04x (expected 0x%04x)", i, bits_of(x[i]), h,
                          bf16_round(x[i]));
    }
    /* read back: exactly the bf16 values widened (NaN as NaN, infinities as infinities) */
    cr_assert_eq(safet_read_f32(f, "bf16", back, N - rest), ST_OK, "%s", st_message());
    cr_assert_eq(safet_read_f32(f, "bf16.tail", back + N - rest, rest), ST_OK, "%s", st_message());
    int nan_seen = 0, inf_seen = 0;
    for (int i = 0; i < N; i++) {
        float want = bf16_value(bf16_round(x[i]));
        if (isnan(x[i])) {
            cr_assert(isnan(back[i]), "element %d: NaN read back as %g", i, back[i]);
            nan_seen++;
            continue;
        }
        inf_seen += isinf(back[i]) != 0;
        cr_assert_eq(bits_of(back[i]), bits_of(want), "element %d: %a read back as %a (expected %a)", i, x[i],
                     back[i], want);
    }
    cr_assert_geq(nan_seen, 4);
    cr_assert_geq(inf_seen, 3);
    safet_close(f);
    free(x);
    free(back);
}

Test(safetensors, float32_can_be_stored_only_as_f32_or_bf16)
{
    safet_writer wr;
    safet_writer_init(&wr);
    float x[2] = {1, 2};
    int64_t two = 2;
    cr_assert_eq(safet_writer_add_f32(&wr, "x", SAFET_F16, 1, &two, x), ST_ERROR);
    cr_assert_not_null(strstr(st_message(), "F32 or BF16, not F16"), "%s", st_message());
    cr_assert_eq(safet_writer_add_f32(&wr, "x", SAFET_I32, 1, &two, x), ST_ERROR);
    cr_assert_eq(safet_writer_add_f32(&wr, "x", SAFET_BF16, 1, &two, NULL), ST_ERROR);
    cr_assert_eq(wr.count, 0);
    int64_t zero = 0;   /* an empty BF16 tensor is fine and takes no bytes */
    cr_assert_eq(safet_writer_add_f32(&wr, "empty", SAFET_BF16, 1, &zero, NULL), ST_OK, "%s", st_message());
    cr_assert_eq(safet_writer_add_f32(&wr, "x", SAFET_BF16, 1, &two, x), ST_OK, "%s", st_message());
    const char *path = tmp_path("empty.safetensors");
    cr_assert_eq(safet_writer_write(&wr, path), ST_OK, "%s", st_message());
    safet_writer_free(&wr);
    safet_file *f;
    cr_assert_eq(safet_open(&f, path), ST_OK, "%s", st_message());
    const safet_tensor *e = safet_find(f, "empty"), *t = safet_find(f, "x");
    cr_assert(e && e->begin == 0 && e->end == 0 && t && t->begin == 0 && t->end == 4);
    safet_close(f);
}

Test(safetensors, header_is_space_padded_so_data_starts_at_a_multiple_of_8)
{
    float x = 2;
    int64_t one = 1;
    for (int len = 1; len <= 8; len++) {   /* names of 8 lengths hit every remainder */
        char name[16] = "abcdefgh";
        name[len] = '\0';
        safet_writer wr;
        safet_writer_init(&wr);
        cr_assert_eq(safet_writer_add(&wr, name, SAFET_F32, 1, &one, &x), ST_OK);
        const char *path = tmp_path("pad.safetensors");
        cr_assert_eq(safet_writer_write(&wr, path), ST_OK, "%s", st_message());
        safet_writer_free(&wr);
        char *raw;
        size_t n;
        cr_assert_eq(fileio_read_file(path, &raw, &n), ST_OK);
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--) hlen = hlen << 8 | (unsigned char)raw[i];
        cr_assert_eq((8 + hlen) % 8, 0);
        cr_assert_eq(n, 8 + hlen + 4);
        cr_assert_eq(raw[8 + hlen - 1] == ' ' || raw[8 + hlen - 1] == '}', 1);
        cr_assert_eq(memcmp(raw + 8 + hlen, &x, 4), 0);
        free(raw);
    }
}

Test(safetensors, an_empty_writer_writes_a_valid_empty_file)
{
    safet_writer wr;
    safet_writer_init(&wr);
    const char *path = tmp_path("empty.safetensors");
    cr_assert_eq(safet_writer_write(&wr, path), ST_OK, "%s", st_message());
    safet_writer_free(&wr);
    safet_file *f;
    cr_assert_eq(safet_open(&f, path), ST_OK, "%s", st_message());
    cr_assert_eq(safet_count(f), 0);
    safet_close(f);
}

/* ---- a file laid out as the Hugging Face writer does -------------------------- */

Test(safetensors, python_written_file_reads_with_exact_values)
{
    safet_file *f;
    cr_assert_eq(safet_open(&f, FIXTURES "python-tiny.safetensors"), ST_OK, "%s", st_message());
    /* Hugging Face order: dtype descending (I64, F64, F32, I32, BF16, F16, U8), then name. */
    const char *order[8] = {"ids", "double", "empty", "weight", "count", "bfloat", "half", "bytes"};
    cr_assert_eq(safet_count(f), 8);
    for (int i = 0; i < 8; i++) cr_assert_str_eq(safet_at(f, i)->name, order[i]);
    cr_assert_str_eq(safet_metadata(f, "format"), "pt");

    float weight[12];
    cr_assert_eq(safet_read_f32(f, "weight", weight, 12), ST_OK);
    for (int i = 0; i < 12; i++) cr_assert_eq(weight[i], i * 0.25f - 1);
    float half[7], want_half[7] = {1, -2.5f, 65504, 0x1p-14f, 0x1p-24f, 0, 0.333251953125f};
    cr_assert_eq(safet_read_f32(f, "half", half, 7), ST_OK);
    for (int i = 0; i < 7; i++) cr_assert_eq(half[i], want_half[i], "half[%d] = %g", i, half[i]);
    float bf[4], want_bf[4] = {1, -3.140625f, 0x1p100f, -0x1p-130f};
    cr_assert_eq(safet_read_f32(f, "bfloat", bf, 4), ST_OK);
    for (int i = 0; i < 4; i++) cr_assert_eq(bf[i], want_bf[i], "bfloat[%d] = %g", i, bf[i]);
    float dbl[2];
    cr_assert_eq(safet_read_f32(f, "double", dbl, 2), ST_OK);
    cr_assert(dbl[0] == 0.1f && dbl[1] == -1e-3f);

    const safet_tensor *t = safet_find(f, "ids");
    int64_t ids[3];
    memcpy(ids, safet_data(f, t), sizeof ids);
    cr_assert(t->dtype == SAFET_I64 && ids[0] == 1 && ids[1] == -2 && ids[2] == (int64_t)1 << 40);
    t = safet_find(f, "count");
    int32_t count;
    memcpy(&count, safet_data(f, t), 4);
    cr_assert(t->ndim == 0 && count == 7);
    t = safet_find(f, "empty");
    cr_assert(t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 3 && safet_numel(t) == 0 && t->begin == t->end);
    t = safet_find(f, "bytes");
    cr_assert_eq(memcmp(safet_data(f, t), "\x00\x7f\xff", 3), 0);
    safet_close(f);
}

Test(safetensors, read_f32_refuses_missing_tensors_other_counts_and_integer_dtypes)
{
    safet_file *f;
    const char *path = FIXTURES "python-tiny.safetensors";
    cr_assert_eq(safet_open(&f, path), ST_OK, "%s", st_message());
    float dst[16];
    cr_assert_eq(safet_read_f32(f, "nope", dst, 1), ST_FORMAT);
    cr_assert(strstr(st_message(), path) && strstr(st_message(), "\"nope\" not found"), "%s", st_message());
    cr_assert_eq(safet_read_f32(f, "weight", dst, 11), ST_FORMAT);
    cr_assert(strstr(st_message(), path) && strstr(st_message(), "has 12 elements (expected 11)"), "%s",
              st_message());
    cr_assert_eq(safet_read_f32(f, "ids", dst, 3), ST_FORMAT);
    cr_assert(strstr(st_message(), "at byte ") && strstr(st_message(), "found I64"), "%s", st_message());
    safet_close(f);
}

/* ---- malformed files ----------------------------------------------------------- */

Test(safetensors, truncated_header_length_is_reported_at_byte_0)
{
    const char *path = tmp_path("short.safetensors");
    cr_assert_eq(fileio_write_atomic(path, "\x10\x00\x00", 3), ST_OK);
    assert_open_fails(path, ST_FORMAT, 0, "truncated header");
}

Test(safetensors, header_length_beyond_the_file_is_reported_at_byte_0)
{
    const char *path = write_raw("long.safetensors", 1000, "{}", 0);
    assert_open_fails(path, ST_FORMAT, 0, "runs beyond the file (expected at most 2 bytes, found 1000)");
    path = write_raw("huge.safetensors", UINT64_MAX, "{}", 0);
    assert_open_fails(path, ST_FORMAT, 0, "runs beyond the file");
}

Test(safetensors, bad_json_is_reported_at_the_byte_where_parsing_stopped)
{
    const char *path = write_header("json.safetensors", "{\"a\":x}", 0);
    assert_open_fails(path, ST_FORMAT, 8 + 5, "invalid JSON header");
    path = write_header("array.safetensors", "[1,2]   ", 0);
    assert_open_fails(path, ST_FORMAT, 8, "begins with byte 0x5b (expected \"{\"");
    path = write_header("empty.safetensors", "", 0);
    assert_open_fails(path, ST_FORMAT, 0, "empty header (N = 0");
    path = write_header("lead.safetensors", " {}     ", 0);
    assert_open_fails(path, ST_FORMAT, 8, "begins with byte 0x20 (expected \"{\"");
    path = write_header("utf8.safetensors", "{\"\xc3(\":{}}", 0);
    assert_open_fails(path, ST_FORMAT, 8 + 2, "header byte 0xc3 at byte 10 is not UTF-8");
    path = write_header("surrogate.safetensors", "{\"\xed\xa0\x80\":{}}", 0);
    assert_open_fails(path, ST_FORMAT, 8 + 2, "is not UTF-8");
    path = write_header("trail.safetensors", "{}  xx  ", 0);
    assert_open_fails(path, ST_FORMAT, 8 + 4, "unexpected byte 0x78 after the JSON header");
}

Test(safetensors, offsets_beyond_the_data_area_are_reported)
{
    const char *path = write_header("range.safetensors",
                                    "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
    assert_open_fails(path, ST_FORMAT, 9, "data_offsets [0, 16] out of range (expected end <= 8");
    path = write_header("reversed.safetensors",
                        "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8);
    assert_open_fails(path, ST_FORMAT, 9, "bad data_offsets");
}

Test(safetensors, overlapping_tensors_are_reported_with_the_file_byte)
{
    const char *header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}";
    const char *path = write_header("overlap.safetensors", header, 24);
    assert_open_fails(path, ST_FORMAT, (long)(8 + strlen(header) + 8), "\"a\" and \"b\" overlap");
}

Test(safetensors, holes_and_trailing_bytes_are_reported_with_the_file_byte)
{
    const char *header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}";
    const char *path = write_header("hole.safetensors", header, 20);
    assert_open_fails(path, ST_FORMAT, (long)(8 + strlen(header) + 8), "a hole of 4 bytes in the data area");
    header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    path = write_header("hole0.safetensors", header, 12);
    assert_open_fails(path, ST_FORMAT, (long)(8 + strlen(header)), "before tensor \"a\"");
    header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    path = write_header("trailing.safetensors", header, 11);
    assert_open_fails(path, ST_FORMAT, (long)(8 + strlen(header) + 8), "3 bytes after the last tensor");
    path = write_header("only-bytes.safetensors", "{}", 1);
    assert_open_fails(path, ST_FORMAT, 8 + 2, "1 bytes after the last tensor");
}

Test(safetensors, unknown_dtype_and_size_mismatch_are_reported_at_the_entry)
{
    const char *path = write_header("dtype.safetensors",
                                    "{\"__metadata__\":{},\"w\":{\"dtype\":\"Q8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
    assert_open_fails(path, ST_FORMAT, 8 + 19, "unknown dtype (expected F32, F64, F16, BF16, I8, I16, I32, I64, U8, "
                      "U16, U32, U64, BOOL, F8_E4M3 or F8_E5M2, found Q8)");
    path = write_header("f4.safetensors", "{\"w\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1);
    assert_open_fails(path, ST_FORMAT, 9, "dtype F4, of newer versions of the format, is not read by mpilm");
    path = write_header("size.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,8]}}", 8);
    assert_open_fails(path, ST_FORMAT, 9, "hold 8 bytes (expected 16 = 4 elements of F32)");
    path = write_header("shape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0);
    assert_open_fails(path, ST_FORMAT, 9, "dim 0 is not a non-negative integer (found -1)");
    /* 2^62 is an integer: the message says it is too large, not that it is no integer */
    path = write_header("huge.safetensors",
                        "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,4611686018427387904],\"data_offsets\":[0,0]}}", 0);
    assert_open_fails(path, ST_FORMAT, 9, "dim 1 is 4611686018427387904, too large (expected below 2^53");
    path = write_header("dims.safetensors",
                        "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1);
    assert_open_fails(path, ST_FORMAT, 9, "at most 8 dims");
}

Test(safetensors, duplicate_names_and_non_string_metadata_are_reported)
{
    const char *path = write_header("dup.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                                    "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2);
    assert_open_fails(path, ST_FORMAT, 9, "appears twice");
    path = write_header("meta.safetensors", "{\"__metadata__\":{\"n\":3}}", 0);
    assert_open_fails(path, ST_FORMAT, 9, "\"n\"");
}

Test(safetensors, a_missing_file_is_an_io_error_naming_it)
{
    safet_file *f;
    const char *path = tmp_path("absent.safetensors");
    cr_assert_eq(safet_open(&f, path), ST_IO);
    cr_assert_not_null(strstr(st_message(), path));
}

Test(safetensors, writer_refuses_duplicate_reserved_and_malformed_tensors)
{
    safet_writer wr;
    safet_writer_init(&wr);
    float x[2] = {0};
    int64_t shape[9] = {2, 1, 1, 1, 1, 1, 1, 1, 1}, negative = -1;
    cr_assert_eq(safet_writer_add(&wr, "x", SAFET_F32, 1, shape, x), ST_OK);
    cr_assert_eq(safet_writer_add(&wr, "x", SAFET_F32, 1, shape, x), ST_ERROR);
    cr_assert_not_null(strstr(st_message(), "\"x\" added twice"));
    cr_assert_eq(safet_writer_add(&wr, "__metadata__", SAFET_F32, 1, shape, x), ST_ERROR);
    cr_assert_eq(safet_writer_add(&wr, "", SAFET_F32, 1, shape, x), ST_ERROR);
    cr_assert_eq(safet_writer_add(&wr, "y", SAFET_F32, 9, shape, x), ST_ERROR);
    cr_assert_eq(safet_writer_add(&wr, "y", SAFET_F32, 1, &negative, x), ST_ERROR);
    cr_assert_eq(safet_writer_add(&wr, "y", SAFET_F32, 1, shape, NULL), ST_ERROR);
    cr_assert_eq(safet_writer_meta(&wr, "k", "v"), ST_OK);
    cr_assert_eq(safet_writer_meta(&wr, "k", "w"), ST_ERROR);
    cr_assert_eq(wr.count, 1);
    cr_assert_eq(safet_writer_write(&wr, "/nonexistent-dir/x.safetensors"), ST_IO);
    cr_assert_not_null(strstr(st_message(), "/nonexistent-dir/x.safetensors"));
    safet_writer_free(&wr);
}

/* ---- the PyTorch reference fixtures ------------------------------------------- */

enum { L = 2, C = 32, F = 128, T = 16, P = 20, V = 97, B = 3 };

typedef struct expected_tensor {
    const char *name;
    int ndim;
    int64_t shape[3];
} expected_tensor;

static const expected_tensor bert_params[] = {
    {"bert.embeddings.word_embeddings.weight", 2, {V, C}},
    {"bert.embeddings.position_embeddings.weight", 2, {P, C}},
    {"bert.embeddings.token_type_embeddings.weight", 2, {2, C}},
    {"bert.embeddings.LayerNorm.weight", 1, {C}}, {"bert.embeddings.LayerNorm.bias", 1, {C}},
    {"bert.pooler.dense.weight", 2, {C, C}}, {"bert.pooler.dense.bias", 1, {C}},
    {"cls.predictions.transform.dense.weight", 2, {C, C}}, {"cls.predictions.transform.dense.bias", 1, {C}},
    {"cls.predictions.transform.LayerNorm.weight", 1, {C}}, {"cls.predictions.transform.LayerNorm.bias", 1, {C}},
    {"cls.predictions.bias", 1, {V}},
    {"cls.seq_relationship.weight", 2, {2, C}}, {"cls.seq_relationship.bias", 1, {2}},
};
static const expected_tensor bert_layer[] = {
    {"attention.self.query.weight", 2, {C, C}}, {"attention.self.query.bias", 1, {C}},
    {"attention.self.key.weight", 2, {C, C}}, {"attention.self.key.bias", 1, {C}},
    {"attention.self.value.weight", 2, {C, C}}, {"attention.self.value.bias", 1, {C}},
    {"attention.output.dense.weight", 2, {C, C}}, {"attention.output.dense.bias", 1, {C}},
    {"attention.output.LayerNorm.weight", 1, {C}}, {"attention.output.LayerNorm.bias", 1, {C}},
    {"intermediate.dense.weight", 2, {F, C}}, {"intermediate.dense.bias", 1, {F}},
    {"output.dense.weight", 2, {C, F}}, {"output.dense.bias", 1, {C}},
    {"output.LayerNorm.weight", 1, {C}}, {"output.LayerNorm.bias", 1, {C}},
};
static const expected_tensor bert_data[] = {
    {"input_ids", 2, {B, T}}, {"token_type_ids", 2, {B, T}}, {"attention_mask", 2, {B, T}},
    {"labels", 2, {B, T}}, {"next_sentence_label", 1, {B}},
};
static const expected_tensor bert_outputs[] = {
    {"logits", 3, {B, T, V}}, {"nsp_logits", 2, {B, 2}}, {"loss", 1, {1}}, {"mlm_loss", 1, {1}},
    {"nsp_loss", 1, {1}}, {"loss_steps", 1, {3}}, {"grad_norm_steps", 1, {3}}, {"lr_steps", 1, {3}},
};
static const expected_tensor gpt_params[] = {
    {"transformer.wte.weight", 2, {V, C}}, {"transformer.wpe.weight", 2, {P, C}},
    {"transformer.ln_f.weight", 1, {C}}, {"transformer.ln_f.bias", 1, {C}},
};
static const expected_tensor gpt_layer[] = {
    {"ln_1.weight", 1, {C}}, {"ln_1.bias", 1, {C}},
    {"attn.c_attn.weight", 2, {C, 3 * C}}, {"attn.c_attn.bias", 1, {3 * C}},
    {"attn.c_proj.weight", 2, {C, C}}, {"attn.c_proj.bias", 1, {C}},
    {"ln_2.weight", 1, {C}}, {"ln_2.bias", 1, {C}},
    {"mlp.c_fc.weight", 2, {C, F}}, {"mlp.c_fc.bias", 1, {F}},
    {"mlp.c_proj.weight", 2, {F, C}}, {"mlp.c_proj.bias", 1, {C}},
};
static const expected_tensor gpt_data[] = {{"input_ids", 2, {B, T}}, {"labels", 2, {B, T}}};
static const expected_tensor gpt_outputs[] = {
    {"logits", 3, {B, T, V}}, {"loss", 1, {1}}, {"lm_loss", 1, {1}},
    {"loss_steps", 1, {3}}, {"grad_norm_steps", 1, {3}}, {"lr_steps", 1, {3}},
};
#define N_OF(a) ((int)(sizeof(a) / sizeof(a)[0]))

/* Checks prefix+name exists with this dtype and shape; returns 1. */
static int expect_tensor(const safet_file *f, const char *prefix, const expected_tensor *e, safet_dtype dt)
{
    char name[256];
    snprintf(name, sizeof name, "%s%s", prefix, e->name);
    const safet_tensor *t = safet_find(f, name);
    cr_assert_not_null(t, "%s: tensor %s missing", safet_path(f), name);
    cr_assert_eq(t->dtype, dt, "%s: dtype %s", name, safet_dtype_name(t->dtype));
    cr_assert_eq(t->ndim, e->ndim, "%s: ndim %d", name, t->ndim);
    for (int d = 0; d < e->ndim; d++) cr_assert_eq(t->shape[d], e->shape[d], "%s: dim %d", name, d);
    return 1;
}

/* Every parameter under param., grad. and step3.; returns the tensors checked. */
static int expect_params(const safet_file *f, const expected_tensor *global, int n_global,
                         const expected_tensor *layer, int n_layer, const char *layer_prefix)
{
    static const char *const kinds[3] = {"param.", "grad.", "step3."};
    int checked = 0;
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < n_global; i++) checked += expect_tensor(f, kinds[k], &global[i], SAFET_F32);
        for (int l = 0; l < L; l++) {
            char prefix[128];
            snprintf(prefix, sizeof prefix, "%s%s%d.", kinds[k], layer_prefix, l);
            for (int i = 0; i < n_layer; i++) checked += expect_tensor(f, prefix, &layer[i], SAFET_F32);
        }
    }
    return checked;
}

static void expect_metadata(const safet_file *f, const char *family)
{
    static const char *const keys[] = {"n_layer", "d_model", "n_head", "d_ff", "seq_len", "max_positions",
                                       "vocab_size", "lr", "min_lr", "warmup_steps", "total_steps", "decay",
                                       "beta1", "beta2", "eps", "weight_decay", "clip", "torch"};
    cr_assert_str_eq(safet_metadata(f, "family"), family);
    for (int i = 0; i < N_OF(keys); i++) cr_assert_not_null(safet_metadata(f, keys[i]), "metadata %s missing", keys[i]);
    cr_assert_str_eq(safet_metadata(f, "vocab_size"), "97");
}

Test(safetensors, bert_fixture_holds_every_expected_tensor)
{
    safet_file *f;
    cr_assert_eq(safet_open(&f, FIXTURES "bert-tiny.safetensors"), ST_OK, "%s", st_message());
    int n = expect_params(f, bert_params, N_OF(bert_params), bert_layer, N_OF(bert_layer), "bert.encoder.layer.");
    for (int i = 0; i < N_OF(bert_data); i++) n += expect_tensor(f, "", &bert_data[i], SAFET_I32);
    for (int i = 0; i < N_OF(bert_outputs); i++) n += expect_tensor(f, "", &bert_outputs[i], SAFET_F32);
    cr_assert_eq(safet_count(f), n, "unexpected extra tensors");
    expect_metadata(f, "bert");
    float loss, mlm, nsp;
    cr_assert_eq(safet_read_f32(f, "loss", &loss, 1), ST_OK);
    cr_assert_eq(safet_read_f32(f, "mlm_loss", &mlm, 1), ST_OK);
    cr_assert_eq(safet_read_f32(f, "nsp_loss", &nsp, 1), ST_OK);
    cr_assert_float_eq(loss, mlm + nsp, 1e-6);
    safet_close(f);
}

Test(safetensors, gpt_fixture_holds_every_expected_tensor)
{
    safet_file *f;
    cr_assert_eq(safet_open(&f, FIXTURES "gpt-tiny.safetensors"), ST_OK, "%s", st_message());
    int n = expect_params(f, gpt_params, N_OF(gpt_params), gpt_layer, N_OF(gpt_layer), "transformer.h.");
    for (int i = 0; i < N_OF(gpt_data); i++) n += expect_tensor(f, "", &gpt_data[i], SAFET_I32);
    for (int i = 0; i < N_OF(gpt_outputs); i++) n += expect_tensor(f, "", &gpt_outputs[i], SAFET_F32);
    cr_assert_eq(safet_count(f), n, "unexpected extra tensors");
    expect_metadata(f, "gpt");
    float lr[3];
    cr_assert_eq(safet_read_f32(f, "lr_steps", lr, 3), ST_OK);
    cr_assert_float_eq(lr[0], 5e-3f, 1e-9);
    cr_assert_float_eq(lr[1], 1e-2f, 1e-9);
    cr_assert_float_eq(lr[2], 7.75e-3f, 1e-9);   /* cosine at p = 1/3: 1e-3 + 9e-3 * 0.75 */
    safet_close(f);
}

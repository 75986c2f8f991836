/* data/input: plain, zstd or gzip input files as one byte stream (input.h). */
#include "input.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#define INPUT_BUFFER (128u << 10) /* compressed bytes read at a time */

struct input_file {
    const char *path;
    input_compression kind;
    FILE *raw;                    /* the file as it is on disk */
    FILE *stream;                 /* what the caller reads: raw, or the decompressing cookie stream */
    unsigned char *buf;           /* compressed bytes [pos, len) not yet decoded */
    size_t pos, len;
    uint64_t consumed;            /* compressed bytes before buf[0] */
    int eof, in_frame;            /* raw at its end; inside an unfinished frame or member */
    status_t error;               /* the first fault, its message recorded in message */
    char message[1024];
    ZSTD_DStream *zstd;
    z_stream gz;
};

const char *input_compression_name(input_compression c)
{
    return c == INPUT_ZSTD ? "zstd" : c == INPUT_GZIP ? "gzip" : "plain";
}

static input_compression compression_of(const unsigned char *b, size_t n)
{
    if (n >= 4 && b[0] == 0x28 && b[1] == 0xB5 && b[2] == 0x2F && b[3] == 0xFD) return INPUT_ZSTD;
    if (n >= 2 && b[0] == 0x1F && b[1] == 0x8B) return INPUT_GZIP;
    return INPUT_PLAIN;
}

status_t input_detect(const char *path, input_compression *out)
{
    FILE *f = fopen(path, "rb");
    FAIL_IF(!f, ST_IO, "%s: cannot open (%s); check the path", path, strerror(errno));
    unsigned char magic[4];
    size_t n = fread(magic, 1, sizeof magic, f);
    fclose(f);
    *out = compression_of(magic, n);
    return ST_OK;
}

/* Records the first fault; the cookie read then reports an error (-1). */
static ssize_t fault(input_file *in, const char *what, const char *detail)
{
    if (in->error == ST_OK) {
        in->error = ST_FORMAT;
        snprintf(in->message, sizeof in->message, "%s: %s %s data at compressed byte %llu%s%s; %s", in->path,
                 what, input_compression_name(in->kind), (unsigned long long)(in->consumed + in->pos),
                 detail ? " " : "", detail ? detail : "",
                 "the file is damaged or incomplete: compress it again, or give the uncompressed text");
    }
    errno = EIO;
    return -1;
}

/* Makes compressed bytes available; 0 at the end of the raw file. */
static int refill(input_file *in)
{
    if (in->pos < in->len) return 1;
    if (in->eof) return 0;
    in->consumed += in->len;
    in->pos = 0;
    in->len = fread(in->buf, 1, INPUT_BUFFER, in->raw);
    if (in->len == 0) in->eof = 1;
    return in->len > 0;
}

static ssize_t read_zstd(void *cookie, char *out, size_t size)
{
    input_file *in = cookie;
    if (in->error != ST_OK) return -1;
    ZSTD_outBuffer o = {out, size, 0};
    while (o.pos == 0) {
        if (!refill(in)) {
            if (ferror(in->raw)) return fault(in, "read error in", NULL);
            return in->in_frame ? fault(in, "truncated", "(the file ends inside a frame)") : 0;
        }
        ZSTD_inBuffer i = {in->buf, in->len, in->pos};
        size_t r = ZSTD_decompressStream(in->zstd, &o, &i);
        if (ZSTD_isError(r)) return fault(in, "corrupt", ZSTD_getErrorName(r));
        in->pos = i.pos;
        in->in_frame = r != 0;
    }
    return (ssize_t)o.pos;
}

static ssize_t read_gzip(void *cookie, char *out, size_t size)
{
    input_file *in = cookie;
    if (in->error != ST_OK) return -1;
    size_t produced = 0;
    while (produced == 0) {
        if (!refill(in)) {
            if (ferror(in->raw)) return fault(in, "read error in", NULL);
            return in->in_frame ? fault(in, "truncated", "(the file ends inside a member)") : 0;
        }
        if (!in->in_frame && inflateReset(&in->gz) != Z_OK) return fault(in, "corrupt", "(zlib reset)");
        in->in_frame = 1;
        in->gz.next_in = in->buf + in->pos, in->gz.avail_in = (uInt)(in->len - in->pos);
        in->gz.next_out = (Bytef *)out, in->gz.avail_out = (uInt)(size > (1u << 30) ? 1u << 30 : size);
        uInt before = in->gz.avail_out;
        int r = inflate(&in->gz, Z_NO_FLUSH);
        in->pos = (size_t)(in->gz.next_in - in->buf);
        produced = before - in->gz.avail_out;
        if (r == Z_STREAM_END) in->in_frame = 0;
        else if (r != Z_OK && !(r == Z_BUF_ERROR && in->gz.avail_in == 0))
            return fault(in, "corrupt", in->gz.msg ? in->gz.msg : "(zlib error)");
    }
    return (ssize_t)produced;
}

static int close_cookie(void *cookie)
{
    (void)cookie;
    return 0;
}

static status_t open_decoder(input_file *in)
{
    in->buf = malloc(INPUT_BUFFER);
    FAIL_IF(!in->buf, ST_NOMEM, "%s: out of memory for decompression", in->path);
    cookie_io_functions_t io = {.read = in->kind == INPUT_ZSTD ? read_zstd : read_gzip, .close = close_cookie};
    if (in->kind == INPUT_ZSTD) {
        in->zstd = ZSTD_createDStream();
        FAIL_IF(!in->zstd || ZSTD_isError(ZSTD_initDStream(in->zstd)), ST_NOMEM, "%s: cannot start zstd decompression",
                in->path);
    } else {
        FAIL_IF(inflateInit2(&in->gz, 15 + 16) != Z_OK, ST_NOMEM, "%s: cannot start gzip decompression", in->path);
        in->in_frame = 1; /* a fresh inflate state: no reset before the first member */
    }
    in->stream = fopencookie(in, "rb", io);
    FAIL_IF(!in->stream, ST_NOMEM, "%s: cannot open a decompressing stream", in->path);
    return ST_OK;
}

status_t input_open(input_file **out, const char *path)
{
    *out = NULL;
    input_file *in = calloc(1, sizeof *in);
    FAIL_IF(!in, ST_NOMEM, "%s: out of memory", path);
    in->path = path;
    status_t st = input_detect(path, &in->kind);
    if (st == ST_OK && !(in->raw = fopen(path, "rb")))
        st = st_fail(ST_IO, "%s: cannot open (%s); check the path", path, strerror(errno));
    if (st == ST_OK && in->kind == INPUT_PLAIN) in->stream = in->raw;
    else if (st == ST_OK) st = open_decoder(in);
    if (st != ST_OK) {
        input_close(in);
        return st;
    }
    *out = in;
    return ST_OK;
}

FILE *input_stream(input_file *in) { return in->stream; }
input_compression input_kind(const input_file *in) { return in->kind; }

status_t input_check(input_file *in)
{
    if (in->error != ST_OK) return st_fail(in->error, "%s", in->message);
    FAIL_IF(ferror(in->stream) || ferror(in->raw), ST_IO, "%s: read error (%s)", in->path, strerror(errno));
    return ST_OK;
}

void input_close(input_file *in)
{
    if (!in) return;
    if (in->stream && in->stream != in->raw) fclose(in->stream);
    if (in->raw) fclose(in->raw);
    if (in->zstd) ZSTD_freeDStream(in->zstd);
    if (in->kind == INPUT_GZIP && in->buf) inflateEnd(&in->gz);
    free(in->buf);
    free(in);
}

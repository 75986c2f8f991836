/* data/shard: the shard writer and reader (format in docs/formats.md). */
#include "shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

#include "base/fileio.h"
#include "base/hash.h"

#define FRAME_HEAD 8u /* a skippable frame's magic + size */
#define ZSTD_LEVEL 3
static const char header_magic[8] = {'M', 'P', 'I', 'L', 'M', 'S', 'H', 'D'};
static const char index_magic[8] = {'M', 'P', 'I', 'L', 'M', 'I', 'D', 'X'};

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

/* Header payload (80 bytes) with its checksum in the last 8. */
static void header_encode(const shard_header *h, uint8_t p[SHARD_HEADER_BYTES])
{
    memcpy(p, header_magic, 8);
    put32(p + 8, h->version);
    put32(p + 12, h->token_width);
    put64(p + 16, h->fingerprint);
    put32(p + 24, h->vocab_size);
    put32(p + 28, h->n_frames);
    put64(p + 32, h->n_documents);
    put64(p + 40, h->n_sentences);
    put64(p + 48, h->n_tokens);
    put64(p + 56, h->index_offset);
    put64(p + 64, h->index_hash);
    put64(p + 72, hash_xxh3(p, 72));
}

static void header_decode(const uint8_t p[SHARD_HEADER_BYTES], shard_header *h)
{
    h->version = get32(p + 8);
    h->token_width = get32(p + 12);
    h->fingerprint = get64(p + 16);
    h->vocab_size = get32(p + 24);
    h->n_frames = get32(p + 28);
    h->n_documents = get64(p + 32);
    h->n_sentences = get64(p + 40);
    h->n_tokens = get64(p + 48);
    h->index_offset = get64(p + 56);
    h->index_hash = get64(p + 64);
}

static void entry_encode(const shard_frame *e, uint8_t p[SHARD_INDEX_ENTRY])
{
    put64(p, e->offset);
    put32(p + 8, e->bounds_size);
    put32(p + 12, e->data_size);
    put32(p + 16, e->n_tokens);
    put32(p + 20, e->n_records);
    put32(p + 24, e->n_doc_starts);
    put32(p + 28, e->flags);
    put64(p + 32, e->bounds_hash);
    put64(p + 40, e->data_hash);
}

static void entry_decode(const uint8_t p[SHARD_INDEX_ENTRY], shard_frame *e)
{
    e->offset = get64(p);
    e->bounds_size = get32(p + 8);
    e->data_size = get32(p + 12);
    e->n_tokens = get32(p + 16);
    e->n_records = get32(p + 20);
    e->n_doc_starts = get32(p + 24);
    e->flags = get32(p + 28);
    e->bounds_hash = get64(p + 32);
    e->data_hash = get64(p + 40);
}

static size_t data_frame_bound(uint32_t width) { return ZSTD_compressBound((size_t)SHARD_FRAME_TOKENS * width); }

/* ---------------------------------------------------------------- writer */

struct shard_writer {
    atomic_file af;
    shard_header hdr;
    ZSTD_CCtx *cctx;
    uint8_t *tokens;     /* this frame's tokens at token_width (SHARD_FRAME_TOKENS) */
    uint32_t n_tokens;
    uint8_t *bounds;     /* skippable frame: head + records (SHARD_FRAME_TOKENS) */
    uint32_t n_records, n_doc_starts;
    uint8_t *cbuf;       /* compressed frame */
    size_t cbuf_cap;
    shard_frame *frames;
    uint32_t frames_cap;
    uint64_t offset;     /* bytes written so far */
};

static status_t writer_put(shard_writer *w, const void *data, size_t len)
{
    TRY(fileio_atomic_write(&w->af, data, len));
    w->offset += len;
    return ST_OK;
}

status_t shard_writer_open(shard_writer **out, const char *path, uint64_t fingerprint, uint32_t vocab_size)
{
    *out = NULL;
    shard_writer *w = calloc(1, sizeof *w);
    FAIL_IF(!w, ST_NOMEM, "%s: out of memory for a shard writer", path);
    w->hdr = (shard_header){.version = SHARD_VERSION, .token_width = vocab_size <= 65536 ? 2 : 4,
                            .fingerprint = fingerprint, .vocab_size = vocab_size};
    w->cbuf_cap = data_frame_bound(w->hdr.token_width);
    w->tokens = malloc((size_t)SHARD_FRAME_TOKENS * w->hdr.token_width);
    w->bounds = malloc(FRAME_HEAD + (size_t)SHARD_FRAME_TOKENS * 4);
    w->cbuf = malloc(w->cbuf_cap);
    w->cctx = ZSTD_createCCtx();
    if (!w->tokens || !w->bounds || !w->cbuf || !w->cctx) {
        shard_writer_abort(w);
        return st_fail(ST_NOMEM, "%s: out of memory for a shard writer", path);
    }
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, ZSTD_LEVEL);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_contentSizeFlag, 1);
    uint8_t head[FRAME_HEAD + SHARD_HEADER_BYTES] = {0}; /* rewritten by close */
    status_t st = fileio_atomic_open(&w->af, path);
    if (st == ST_OK) st = writer_put(w, head, sizeof head);
    if (st != ST_OK) {
        shard_writer_abort(w);
        return st;
    }
    *out = w;
    return ST_OK;
}

static status_t writer_flush(shard_writer *w)
{
    if (w->n_records == 0) return ST_OK;
    if (w->hdr.n_frames == w->frames_cap) {
        uint32_t cap = w->frames_cap ? 2 * w->frames_cap : 64;
        shard_frame *f = realloc(w->frames, cap * sizeof *f);
        FAIL_IF(!f, ST_NOMEM, "%s: out of memory for the shard index", w->af.path);
        w->frames = f, w->frames_cap = cap;
    }
    size_t csize = ZSTD_compress2(w->cctx, w->cbuf, w->cbuf_cap, w->tokens, (size_t)w->n_tokens * w->hdr.token_width);
    FAIL_IF(ZSTD_isError(csize), ST_ERROR, "%s: zstd compression failed: %s", w->af.path, ZSTD_getErrorName(csize));
    uint32_t payload = 4 * w->n_records;
    put32(w->bounds, SHARD_MAGIC_BOUNDS);
    put32(w->bounds + 4, payload);
    shard_frame *e = &w->frames[w->hdr.n_frames++];
    *e = (shard_frame){.offset = w->offset, .bounds_size = FRAME_HEAD + payload, .data_size = (uint32_t)csize,
                       .n_tokens = w->n_tokens, .n_records = w->n_records, .n_doc_starts = w->n_doc_starts,
                       .flags = get32(w->bounds + FRAME_HEAD) & SHARD_SENT_DOC_START ? 0 : SHARD_FRAME_DOC_CONTINUES,
                       .bounds_hash = hash_xxh3(w->bounds + FRAME_HEAD, payload), .data_hash = hash_xxh3(w->cbuf, csize)};
    TRY(writer_put(w, w->bounds, e->bounds_size));
    TRY(writer_put(w, w->cbuf, csize));
    w->n_tokens = w->n_records = w->n_doc_starts = 0;
    return ST_OK;
}

/* Appends one record of n ids (fits in the current frame). */
static void writer_append(shard_writer *w, const uint32_t *ids, uint32_t n, uint32_t flags)
{
    uint8_t *p = w->tokens + (size_t)w->n_tokens * w->hdr.token_width;
    if (w->hdr.token_width == 2)
        for (uint32_t i = 0; i < n; i++) p[2 * i] = (uint8_t)ids[i], p[2 * i + 1] = (uint8_t)(ids[i] >> 8);
    else
        for (uint32_t i = 0; i < n; i++) put32(p + 4 * i, ids[i]);
    put32(w->bounds + FRAME_HEAD + 4 * w->n_records++, n | flags);
    w->n_tokens += n;
    w->hdr.n_tokens += n;
    if (flags & SHARD_SENT_DOC_START) w->n_doc_starts++, w->hdr.n_documents++;
    if (!(flags & SHARD_SENT_CONTINUES)) w->hdr.n_sentences++;
}

status_t shard_writer_add(shard_writer *w, const uint32_t *ids, size_t n, int doc_start)
{
    FAIL_IF(n == 0, ST_ERROR, "%s: empty sentence given to the shard writer", w->af.path);
    for (size_t i = 0; i < n; i++)
        FAIL_IF(ids[i] >= w->hdr.vocab_size, ST_ERROR, "%s: token id %u out of the vocabulary (size %u)",
                w->af.path, ids[i], w->hdr.vocab_size);
    /* A sentence starts a fresh frame when it does not fit; only a sentence
     * longer than a whole frame is cut into pieces. */
    if (w->n_tokens + n > SHARD_FRAME_TOKENS) TRY(writer_flush(w));
    uint32_t flags = doc_start ? SHARD_SENT_DOC_START : 0;
    while (n > SHARD_FRAME_TOKENS - w->n_tokens) {
        uint32_t take = SHARD_FRAME_TOKENS - w->n_tokens;
        writer_append(w, ids, take, flags);
        TRY(writer_flush(w));
        ids += take, n -= take;
        flags = SHARD_SENT_CONTINUES;
    }
    writer_append(w, ids, (uint32_t)n, flags);
    return ST_OK;
}

static status_t writer_finish(shard_writer *w)
{
    TRY(writer_flush(w));
    size_t payload = 16 + (size_t)w->hdr.n_frames * SHARD_INDEX_ENTRY;
    uint8_t *index = malloc(FRAME_HEAD + payload);
    FAIL_IF(!index, ST_NOMEM, "%s: out of memory for the shard index", w->af.path);
    put32(index, SHARD_MAGIC_INDEX);
    put32(index + 4, (uint32_t)payload);
    memcpy(index + FRAME_HEAD, index_magic, 8);
    put32(index + FRAME_HEAD + 8, w->hdr.n_frames);
    put32(index + FRAME_HEAD + 12, SHARD_INDEX_ENTRY);
    for (uint32_t i = 0; i < w->hdr.n_frames; i++) entry_encode(&w->frames[i], index + FRAME_HEAD + 16 + i * SHARD_INDEX_ENTRY);
    w->hdr.index_offset = w->offset;
    w->hdr.index_hash = hash_xxh3(index + FRAME_HEAD, payload);
    status_t st = writer_put(w, index, FRAME_HEAD + payload);
    free(index);
    TRY(st);
    uint8_t head[FRAME_HEAD + SHARD_HEADER_BYTES];
    put32(head, SHARD_MAGIC_HEADER);
    put32(head + 4, SHARD_HEADER_BYTES);
    header_encode(&w->hdr, head + FRAME_HEAD);
    FAIL_IF(fseeko(w->af.f, 0, SEEK_SET) != 0 || fwrite(head, sizeof head, 1, w->af.f) != 1, ST_IO,
            "%s: cannot rewrite the shard header", w->af.path);
    return fileio_atomic_commit(&w->af);
}

status_t shard_writer_close(shard_writer *w, shard_header *hdr)
{
    status_t st = writer_finish(w);
    if (st != ST_OK) {
        shard_writer_abort(w);
        return st;
    }
    if (hdr) *hdr = w->hdr;
    w->af.f = NULL;
    shard_writer_abort(w);
    return ST_OK;
}

void shard_writer_abort(shard_writer *w)
{
    if (!w) return;
    if (w->af.f) fileio_atomic_abort(&w->af);
    ZSTD_freeCCtx(w->cctx);
    free(w->tokens);
    free(w->bounds);
    free(w->cbuf);
    free(w->frames);
    free(w);
}

/* ---------------------------------------------------------------- reader */

struct shard_reader {
    char path[4096];
    FILE *f;
    uint64_t size;
    shard_header hdr;
    shard_frame *frames;
    ZSTD_DCtx *dctx;
    uint8_t *buf;   /* one boundary frame + one data frame as stored */
    size_t buf_cap;
    uint8_t *raw;   /* one decompressed data frame */
};

static status_t read_at(shard_reader *r, uint64_t offset, void *buf, size_t len, const char *what)
{
    FAIL_IF(offset + len > r->size, ST_FORMAT,
            "%s: truncated at byte %llu (the %s needs %zu bytes there, the file has %llu); re-run mpilm prep",
            r->path, (unsigned long long)offset, what, len, (unsigned long long)r->size);
    FAIL_IF(fseeko(r->f, (off_t)offset, SEEK_SET) != 0 || fread(buf, 1, len, r->f) != len, ST_IO,
            "%s: cannot read the %s at byte %llu", r->path, what, (unsigned long long)offset);
    return ST_OK;
}

static status_t reader_read_header(shard_reader *r)
{
    uint8_t head[FRAME_HEAD + SHARD_HEADER_BYTES];
    FAIL_IF(r->size < sizeof head, ST_FORMAT,
            "%s: not an mpilm shard: %llu bytes is shorter than a shard header (%zu); re-run mpilm prep", r->path,
            (unsigned long long)r->size, sizeof head);
    TRY(read_at(r, 0, head, sizeof head, "header"));
    const uint8_t *p = head + FRAME_HEAD;
    FAIL_IF(get32(head) != SHARD_MAGIC_HEADER || get32(head + 4) != SHARD_HEADER_BYTES || memcmp(p, header_magic, 8) != 0,
            ST_FORMAT, "%s: not an mpilm shard: wrong magic at byte 0 (expected a skippable frame 0x%08x holding "
            "\"MPILMSHD\", found 0x%08x); pass a file made by mpilm prep", r->path, SHARD_MAGIC_HEADER, get32(head));
    header_decode(p, &r->hdr);
    FAIL_IF(r->hdr.version > SHARD_VERSION || r->hdr.version == 0, ST_FORMAT,
            "%s: format version %u at byte 16 is not supported (this mpilm reads version %d); use a newer mpilm or "
            "re-run mpilm prep", r->path, r->hdr.version, SHARD_VERSION);
    uint64_t want = get64(p + 72), got = hash_xxh3(p, 72);
    FAIL_IF(want != got, ST_FORMAT,
            "%s: header checksum mismatch at byte 80 (expected %016llx, found %016llx); the shard is corrupt, re-run "
            "mpilm prep", r->path, (unsigned long long)want, (unsigned long long)got);
    FAIL_IF(r->hdr.token_width != 2 && r->hdr.token_width != 4, ST_FORMAT,
            "%s: token width %u at byte 20 (expected 2 or 4); the shard is corrupt", r->path, r->hdr.token_width);
    /* Bounds first: the end below cannot wrap around, and no index is allocated for frames that cannot be there. */
    FAIL_IF(r->hdr.index_offset > r->size || r->hdr.n_frames > r->size / SHARD_INDEX_ENTRY, ST_FORMAT,
            "%s: the index at byte %llu with %u frames (header bytes 64 and 36) lies beyond the end of the file (%llu "
            "bytes); the shard is corrupt, re-run mpilm prep", r->path, (unsigned long long)r->hdr.index_offset,
            r->hdr.n_frames, (unsigned long long)r->size);
    uint64_t end = r->hdr.index_offset + FRAME_HEAD + 16 + (uint64_t)r->hdr.n_frames * SHARD_INDEX_ENTRY;
    FAIL_IF(end > r->size, ST_FORMAT,
            "%s: truncated at byte %llu (the header says the file ends at byte %llu); re-run mpilm prep", r->path,
            (unsigned long long)r->size, (unsigned long long)end);
    FAIL_IF(end < r->size, ST_FORMAT, "%s: %llu unexpected bytes after the index at byte %llu; re-run mpilm prep",
            r->path, (unsigned long long)(r->size - end), (unsigned long long)end);
    return ST_OK;
}

/* Checks that the index entries tile the file and add up to the header. */
static status_t reader_check_index(shard_reader *r)
{
    uint64_t offset = FRAME_HEAD + SHARD_HEADER_BYTES, tokens = 0, docs = 0;
    size_t max_data = data_frame_bound(r->hdr.token_width);
    for (uint32_t i = 0; i < r->hdr.n_frames; i++) {
        const shard_frame *e = &r->frames[i];
        FAIL_IF(e->offset != offset || e->bounds_size != FRAME_HEAD + 4 * e->n_records || e->n_records == 0 ||
                    e->n_tokens > SHARD_FRAME_TOKENS || e->n_records > e->n_tokens || e->data_size > max_data,
                ST_FORMAT, "%s: index entry %u at byte %llu is inconsistent (frame at %llu, %u records, %u tokens); "
                "the shard is corrupt, re-run mpilm prep", r->path, i,
                (unsigned long long)(r->hdr.index_offset + FRAME_HEAD + 16 + (uint64_t)i * SHARD_INDEX_ENTRY),
                (unsigned long long)e->offset, e->n_records, e->n_tokens);
        offset += e->bounds_size + e->data_size;
        tokens += e->n_tokens;
        docs += e->n_doc_starts;
    }
    FAIL_IF(offset != r->hdr.index_offset || tokens != r->hdr.n_tokens || docs != r->hdr.n_documents, ST_FORMAT,
            "%s: the index does not match the header (frames end at byte %llu, index at %llu; %llu tokens and %llu "
            "documents, header %llu and %llu); the shard is corrupt", r->path, (unsigned long long)offset,
            (unsigned long long)r->hdr.index_offset, (unsigned long long)tokens, (unsigned long long)docs,
            (unsigned long long)r->hdr.n_tokens, (unsigned long long)r->hdr.n_documents);
    return ST_OK;
}

static status_t reader_read_index(shard_reader *r)
{
    size_t payload = 16 + (size_t)r->hdr.n_frames * SHARD_INDEX_ENTRY;
    uint8_t *index = malloc(FRAME_HEAD + payload);
    FAIL_IF(!index, ST_NOMEM, "%s: out of memory for the index of %u frames", r->path, r->hdr.n_frames);
    status_t st = read_at(r, r->hdr.index_offset, index, FRAME_HEAD + payload, "index");
    const uint8_t *p = index + FRAME_HEAD;
    if (st == ST_OK && (get32(index) != SHARD_MAGIC_INDEX || get32(index + 4) != payload || memcmp(p, index_magic, 8) != 0 ||
                        get32(p + 8) != r->hdr.n_frames || get32(p + 12) != SHARD_INDEX_ENTRY))
        st = st_fail(ST_FORMAT, "%s: wrong index magic or size at byte %llu; the shard is corrupt, re-run mpilm prep",
                     r->path, (unsigned long long)r->hdr.index_offset);
    uint64_t got = st == ST_OK ? hash_xxh3(p, payload) : 0;
    if (st == ST_OK && got != r->hdr.index_hash)
        st = st_fail(ST_FORMAT, "%s: index checksum mismatch at byte %llu (expected %016llx, found %016llx); the "
                     "shard is corrupt, re-run mpilm prep", r->path, (unsigned long long)r->hdr.index_offset,
                     (unsigned long long)r->hdr.index_hash, (unsigned long long)got);
    r->frames = st == ST_OK ? calloc(r->hdr.n_frames + 1, sizeof *r->frames) : NULL;
    if (st == ST_OK && !r->frames) st = st_fail(ST_NOMEM, "%s: out of memory for the index", r->path);
    for (uint32_t i = 0; st == ST_OK && i < r->hdr.n_frames; i++) entry_decode(p + 16 + i * SHARD_INDEX_ENTRY, &r->frames[i]);
    free(index);
    return st == ST_OK ? reader_check_index(r) : st;
}

status_t shard_reader_open(shard_reader **out, const char *path)
{
    *out = NULL;
    shard_reader *r = calloc(1, sizeof *r);
    FAIL_IF(!r, ST_NOMEM, "%s: out of memory for a shard reader", path);
    snprintf(r->path, sizeof r->path, "%s", path);
    struct stat sb;
    status_t st = ST_OK;
    r->f = fopen(path, "rb");
    if (!r->f || fstat(fileno(r->f), &sb) != 0) st = st_fail(ST_IO, "%s: cannot open the shard", path);
    if (st == ST_OK) r->size = (uint64_t)sb.st_size;
    if (st == ST_OK) st = reader_read_header(r);
    if (st == ST_OK) st = reader_read_index(r);
    if (st == ST_OK) {
        r->buf_cap = FRAME_HEAD + 4 * (size_t)SHARD_FRAME_TOKENS + data_frame_bound(r->hdr.token_width);
        r->buf = malloc(r->buf_cap);
        r->raw = malloc((size_t)SHARD_FRAME_TOKENS * r->hdr.token_width);
        r->dctx = ZSTD_createDCtx();
        if (!r->buf || !r->raw || !r->dctx) st = st_fail(ST_NOMEM, "%s: out of memory for a shard reader", path);
    }
    if (st != ST_OK) {
        shard_reader_close(r);
        return st;
    }
    *out = r;
    return ST_OK;
}

const shard_header *shard_reader_header(const shard_reader *r) { return &r->hdr; }
const shard_frame *shard_reader_frame(const shard_reader *r, uint32_t i) { return &r->frames[i]; }

static status_t check_hash(const shard_reader *r, const char *what, uint32_t i, uint64_t offset, uint64_t want,
                           const void *data, size_t len)
{
    uint64_t got = hash_xxh3(data, len);
    FAIL_IF(got != want, ST_FORMAT,
            "%s: checksum mismatch in the %s of frame %u at byte %llu (expected %016llx, found %016llx); the shard is "
            "corrupt, re-run mpilm prep", r->path, what, i, (unsigned long long)offset, (unsigned long long)want,
            (unsigned long long)got);
    return ST_OK;
}

static status_t check_records(const shard_reader *r, uint32_t i, const uint8_t *p)
{
    const shard_frame *e = &r->frames[i];
    uint64_t tokens = 0;
    uint32_t docs = 0;
    for (uint32_t k = 0; k < e->n_records; k++) {
        uint32_t rec = get32(p + 4 * k);
        tokens += rec & SHARD_SENT_LEN_MASK;
        docs += (rec & SHARD_SENT_DOC_START) != 0;
        FAIL_IF((rec & SHARD_SENT_LEN_MASK) == 0 || ((rec & SHARD_SENT_CONTINUES) && (k > 0 || i == 0)), ST_FORMAT,
                "%s: bad boundary record %u of frame %u at byte %llu (0x%08x); the shard is corrupt", r->path, k, i,
                (unsigned long long)(e->offset + FRAME_HEAD + 4 * k), rec);
    }
    int continues = !(get32(p) & SHARD_SENT_DOC_START);
    FAIL_IF(tokens != e->n_tokens || docs != e->n_doc_starts || continues != (int)(e->flags & SHARD_FRAME_DOC_CONTINUES),
            ST_FORMAT,
            "%s: the boundaries of frame %u at byte %llu hold %llu tokens and %u documents (index: %u and %u); the "
            "shard is corrupt", r->path, i, (unsigned long long)e->offset, (unsigned long long)tokens, docs,
            e->n_tokens, e->n_doc_starts);
    return ST_OK;
}

static status_t decompress_frame(shard_reader *r, uint32_t i, const uint8_t *data, uint32_t *tokens)
{
    const shard_frame *e = &r->frames[i];
    uint64_t at = e->offset + e->bounds_size;
    size_t want = (size_t)e->n_tokens * r->hdr.token_width;
    size_t got = ZSTD_decompressDCtx(r->dctx, r->raw, want, data, e->data_size);
    FAIL_IF(ZSTD_isError(got), ST_FORMAT, "%s: data frame %u at byte %llu does not decompress (%s); the shard is "
            "corrupt, re-run mpilm prep", r->path, i, (unsigned long long)at, ZSTD_getErrorName(got));
    FAIL_IF(got != want, ST_FORMAT, "%s: data frame %u at byte %llu holds %zu bytes (expected %zu)", r->path, i,
            (unsigned long long)at, got, want);
    if (r->hdr.token_width == 2)
        for (uint32_t k = 0; k < e->n_tokens; k++) tokens[k] = (uint32_t)r->raw[2 * k] | (uint32_t)r->raw[2 * k + 1] << 8;
    else
        for (uint32_t k = 0; k < e->n_tokens; k++) tokens[k] = get32(r->raw + 4 * k);
    return ST_OK;
}

status_t shard_reader_read(shard_reader *r, uint32_t i, uint32_t *records, uint32_t *tokens)
{
    const shard_frame *e = &r->frames[i];
    size_t len = e->bounds_size + (tokens ? e->data_size : 0);
    TRY(read_at(r, e->offset, r->buf, len, "frame"));
    FAIL_IF(get32(r->buf) != SHARD_MAGIC_BOUNDS || get32(r->buf + 4) != 4 * e->n_records, ST_FORMAT,
            "%s: wrong boundary frame magic or size at byte %llu (frame %u); the shard is corrupt, re-run mpilm prep",
            r->path, (unsigned long long)e->offset, i);
    TRY(check_hash(r, "boundaries", i, e->offset, e->bounds_hash, r->buf + FRAME_HEAD, 4 * (size_t)e->n_records));
    TRY(check_records(r, i, r->buf + FRAME_HEAD));
    if (records)
        for (uint32_t k = 0; k < e->n_records; k++) records[k] = get32(r->buf + FRAME_HEAD + 4 * k);
    if (!tokens) return ST_OK;
    const uint8_t *data = r->buf + e->bounds_size;
    TRY(check_hash(r, "data", i, e->offset + e->bounds_size, e->data_hash, data, e->data_size));
    return decompress_frame(r, i, data, tokens);
}

status_t shard_reader_verify(shard_reader *r)
{
    uint32_t *records = malloc(4 * (size_t)SHARD_FRAME_TOKENS), *tokens = malloc(4 * (size_t)SHARD_FRAME_TOKENS);
    status_t st = records && tokens ? ST_OK : st_fail(ST_NOMEM, "%s: out of memory verifying", r->path);
    uint64_t sentences = 0;
    for (uint32_t i = 0; st == ST_OK && i < r->hdr.n_frames; i++) {
        st = shard_reader_read(r, i, records, tokens);
        for (uint32_t k = 0; st == ST_OK && k < r->frames[i].n_records; k++) sentences += !(records[k] & SHARD_SENT_CONTINUES);
        for (uint32_t k = 0; st == ST_OK && k < r->frames[i].n_tokens; k++)
            if (tokens[k] >= r->hdr.vocab_size)
                st = st_fail(ST_FORMAT, "%s: token %u of frame %u is id %u, outside the vocabulary (size %u)", r->path,
                             k, i, tokens[k], r->hdr.vocab_size);
    }
    if (st == ST_OK && sentences != r->hdr.n_sentences)
        st = st_fail(ST_FORMAT, "%s: the frames hold %llu sentences, the header says %llu; the shard is corrupt",
                     r->path, (unsigned long long)sentences, (unsigned long long)r->hdr.n_sentences);
    free(records);
    free(tokens);
    return st;
}

void shard_reader_close(shard_reader *r)
{
    if (!r) return;
    if (r->f) fclose(r->f);
    ZSTD_freeDCtx(r->dctx);
    free(r->frames);
    free(r->buf);
    free(r->raw);
    free(r);
}

int shard_is_shard(const char *path)
{
    uint8_t head[FRAME_HEAD + 8];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ok = fread(head, 1, sizeof head, f) == sizeof head && get32(head) == SHARD_MAGIC_HEADER &&
             memcmp(head + FRAME_HEAD, header_magic, 8) == 0;
    fclose(f);
    return ok;
}

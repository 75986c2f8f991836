/* Tests of data/prep: text → shards → read back gives exactly the token
 * stream and the document/sentence boundaries of a direct tokenization; the
 * plan cuts at document boundaries; invalid UTF-8 is refused with file, line
 * and byte offset (or replaced); empty input; a 10 MB single line; the
 * held-out split: the documents the rule picks, whatever the pieces, read by
 * dataset_open_split and stream_spec.split, refused where there is none. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/synth_dataset.h"
#include "base/status.h"
#include "data/prep.h"
#include "data/shard.h"
#include "data/stream.h"

static char dir[4200], text[4300], out[4300];
static tokenizer *tok;

static void setup(void)
{
    cr_assert_eq(synth_tmpdir(dir, sizeof dir, "prep"), 0);
    synth_spec sp = {.vocab_size = 500, .n_shards = 0, .seed = 1};
    cr_assert_eq(synth_dataset_make(dir, &sp), 0); /* only the vocabulary */
    cr_assert_eq(tokenizer_load(dir, TOKENIZER_WORDPIECE, &tok), ST_OK, "%s", st_message());
    snprintf(text, sizeof text, "%s/in.txt", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    cr_assert_eq(tokenizer_save(tok, out), ST_OK);
}
static void cleanup(void)
{
    tokenizer_free(tok);
    synth_rmdir(dir);
}

/* ~bytes of documents of words w5..w499, with extra blank lines and a CRLF. */
static void write_text(size_t bytes)
{
    FILE *f = fopen(text, "w");
    unsigned x = 12345;
    size_t n = 0;
    for (int doc = 0; n < bytes; doc++) {
        int sents = 2 + doc % 7;
        for (int s = 0; s < sents; s++) {
            int words = 1 + (int)((x = x * 1103515245u + 12345u) >> 16) % 30;
            for (int w = 0; w < words; w++) n += (size_t)fprintf(f, w ? " w%u" : "w%u", 5 + (x = x * 1103515245u + 12345u) % 495);
            n += (size_t)fprintf(f, doc % 11 == 3 && s == 0 ? " .\r\n" : " .\n");
        }
        n += (size_t)fprintf(f, doc % 13 == 5 ? "\n  \n" : "\n");
    }
    fclose(f);
}

static int run_prep(int replace)
{
    prep_plan plan;
    const char *files[1] = {text};
    status_t st = prep_plan_make(files, 1, &plan);
    for (int i = 0; st == ST_OK && i < plan.n_pieces; i++) {
        char name[64], path[4400];
        dataset_shard_name(i, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", out, name);
        prep_stats stats;
        st = prep_piece_encode(tok, files, &plan.pieces[i], replace, path, &stats);
    }
    int n = plan.n_pieces;
    if (st == ST_OK) st = prep_finish(out, tok, n, NULL);
    prep_plan_free(&plan);
    return st == ST_OK ? n : -(int)st;
}

/* The expected stream: every sentence's ids with its document-start flag. */
typedef struct stream_ref { uint32_t *ids; size_t n, cap; uint8_t *start; size_t n_sent; uint32_t *sent_len; } stream_ref;

static void direct_tokenization(stream_ref *ref)
{
    FILE *f = fopen(text, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int in_doc = 0;
    memset(ref, 0, sizeof *ref);
    ref->start = malloc(1 << 20), ref->sent_len = malloc(4 << 20);
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (strspn(line, " \t") >= (size_t)len) { in_doc = 0; continue; }
        size_t before = ref->n;
        cr_assert_eq(tokenizer_encode(tok, line, (size_t)len, &ref->ids, &ref->n, &ref->cap), ST_OK);
        if (ref->n == before) continue;
        ref->start[ref->n_sent] = !in_doc;
        ref->sent_len[ref->n_sent++] = (uint32_t)(ref->n - before);
        in_doc = 1;
    }
    free(line);
    fclose(f);
}

static void check_against(const stream_ref *ref, int n_shards)
{
    size_t at = 0, sent = 0;
    uint32_t *rec = malloc(4 * SHARD_FRAME_TOKENS), *tk = malloc(4 * SHARD_FRAME_TOKENS);
    for (int i = 0; i < n_shards; i++) {
        char name[64], path[4400];
        dataset_shard_name(i, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", out, name);
        shard_reader *r;
        cr_assert_eq(shard_reader_open(&r, path), ST_OK, "%s", st_message());
        for (uint32_t fr = 0; fr < shard_reader_header(r)->n_frames; fr++) {
            cr_assert_eq(shard_reader_read(r, fr, rec, tk), ST_OK, "%s", st_message());
            const uint32_t *p = tk;
            for (uint32_t q = 0; q < shard_reader_frame(r, fr)->n_records; q++, sent++) {
                uint32_t len = rec[q] & SHARD_SENT_LEN_MASK;
                cr_assert_eq(len, ref->sent_len[sent], "sentence %zu length", sent);
                cr_assert_eq(!!(rec[q] & SHARD_SENT_DOC_START), ref->start[sent], "sentence %zu document start", sent);
                cr_assert_eq(memcmp(p, ref->ids + at, 4 * (size_t)len), 0, "sentence %zu tokens", sent);
                p += len, at += len;
            }
        }
        shard_reader_close(r);
    }
    cr_assert_eq(sent, ref->n_sent);
    cr_assert_eq(at, ref->n);
    free(rec);
    free(tk);
}

Test(prep, read_back_equals_direct_tokenization_with_boundaries, .init = setup, .fini = cleanup)
{
    write_text(2500000);
    int n = run_prep(0);
    cr_assert_geq(n, 2, "2.5 MB must give several pieces (got %d: %s)", n, st_message());
    stream_ref ref;
    direct_tokenization(&ref);
    check_against(&ref, n);
    dataset_info info;
    cr_assert_eq(dataset_info_read(out, &info), ST_OK, "%s", st_message());
    cr_assert_eq(info.n_tokens, ref.n);
    cr_assert_eq(info.n_sentences, ref.n_sent);
    free(ref.ids), free(ref.start), free(ref.sent_len);
}

static void write_raw(const char *s, size_t n)
{
    FILE *f = fopen(text, "wb");
    fwrite(s, 1, n, f);
    fclose(f);
}

Test(prep, invalid_utf8_is_refused_with_file_line_and_byte_offset, .init = setup, .fini = cleanup)
{
    const char s[] = "w5 w6 .\nw7 .\n\nw8 \xC3\x28 w9 .\n";
    write_raw(s, sizeof s - 1);
    cr_assert_lt(run_prep(0), 0);
    char want[4400];
    snprintf(want, sizeof want, "%s: invalid UTF-8 at line 4, byte offset 17 (byte 0xc3)", text);
    cr_assert(strstr(st_message(), want), "message: %s", st_message());
    cr_assert(strstr(st_message(), "--replace-invalid"));
    cr_assert_eq(run_prep(1), 1, "%s", st_message());
    cr_assert_eq(prep_utf8_check((const unsigned char *)"\xED\xA0\x80", 3), 0, "a surrogate is invalid");
    cr_assert_eq(prep_utf8_check((const unsigned char *)"a\xF4\x90\x80\x80", 5), 1, "above U+10FFFF is invalid");
    cr_assert_eq(prep_utf8_check((const unsigned char *)"\xC0\xAF", 2), 0, "an overlong form is invalid");
    cr_assert_eq(prep_utf8_check((const unsigned char *)"\xF0\x9F\x98\x80", 4), 4);
}

Test(prep, empty_input_is_a_clear_error, .init = setup, .fini = cleanup)
{
    write_raw("", 0);
    cr_assert_lt(run_prep(0), 0);
    cr_assert(strstr(st_message(), "empty input (0 bytes)"), "%s", st_message());
    write_raw("\n \n\t\n", 5);
    cr_assert_lt(run_prep(0), 0);
    cr_assert(strstr(st_message(), "empty input: no sentence"), "%s", st_message());
}

Test(prep, a_10_mb_single_line_is_one_sentence_across_frames, .init = setup, .fini = cleanup)
{
    FILE *f = fopen(text, "w");
    for (int i = 0; i < 10 * 1024 * 1024 / 5; i++) fputs("w123 ", f);
    fputs("\n", f);
    fclose(f);
    cr_assert_eq(run_prep(0), 1, "%s", st_message());
    dataset_info info;
    cr_assert_eq(dataset_info_read(out, &info), ST_OK, "%s", st_message());
    cr_assert_eq(info.n_sentences, 1);
    cr_assert_eq(info.n_documents, 1);
    cr_assert_eq(info.n_tokens, 10 * 1024 * 1024 / 5);
}

/* ---------------------------------------------------------------- held-out split */

/* Appends every token of split `split`'s shards 0..n-1 in out (absent ones
 * skipped) to *ids. */
static size_t split_tokens(dataset_split split, int n, uint32_t **ids)
{
    size_t count = 0, cap = 0;
    uint32_t *rec = malloc(4 * SHARD_FRAME_TOKENS), *tk = malloc(4 * SHARD_FRAME_TOKENS);
    *ids = NULL;
    for (int i = 0; i < n; i++) {
        char name[64], path[4400];
        dataset_split_shard_name(split, i, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", out, name);
        struct stat sb;
        if (stat(path, &sb) != 0) continue;
        shard_reader *r;
        cr_assert_eq(shard_reader_open(&r, path), ST_OK, "%s", st_message());
        for (uint32_t fr = 0; fr < shard_reader_header(r)->n_frames; fr++) {
            cr_assert_eq(shard_reader_read(r, fr, rec, tk), ST_OK, "%s", st_message());
            size_t k = shard_reader_frame(r, fr)->n_tokens;
            if (count + k > cap) *ids = realloc(*ids, 4 * (cap = 2 * (count + k)));
            memcpy(*ids + count, tk, 4 * k), count += k;
        }
        shard_reader_close(r);
    }
    free(rec);
    free(tk);
    return count;
}

/* Encodes `text` as the given pieces with a valid split, then the manifest. */
static status_t run_split(const prep_piece *pieces, int n, double fraction)
{
    const char *files[1] = {text};
    status_t st = ST_OK;
    for (int i = 0; st == ST_OK && i < n; i++) {
        char name[64], valid[64], path[4400], vpath[4400];
        dataset_split_shard_name(DATASET_SPLIT_TRAIN, i, name, sizeof name);
        dataset_split_shard_name(DATASET_SPLIT_VALID, i, valid, sizeof valid);
        snprintf(path, sizeof path, "%s/%s", out, name);
        snprintf(vpath, sizeof vpath, "%s/%s", out, valid);
        prep_stats stats;
        prep_input input = {.text_key = "text", .valid_fraction = fraction};
        st = prep_piece_encode_input(tok, files, &pieces[i], &input, path, vpath, &stats);
    }
    return st == ST_OK ? prep_finish_split(out, tok, n, fraction, NULL, NULL) : st;
}

/* The tokens of the documents whose first sentence's offset is held out. */
static size_t expected_valid(double fraction, uint32_t **ids)
{
    FILE *f = fopen(text, "r");
    char *line = NULL;
    size_t cap = 0, n = 0, ids_cap = 0;
    ssize_t len;
    int in_doc = 0, held = 0;
    long at = 0;
    *ids = NULL;
    for (; (len = getline(&line, &cap, f)) >= 0; at += len) {
        ssize_t k = len;
        while (k > 0 && (line[k - 1] == '\n' || line[k - 1] == '\r')) k--;
        if (strspn(line, " \t") >= (size_t)k) { in_doc = 0; continue; }
        if (!in_doc) held = prep_document_held_out(0, (uint64_t)at, fraction);
        in_doc = 1;
        if (held) cr_assert_eq(tokenizer_encode(tok, line, (size_t)k, ids, &n, &ids_cap), ST_OK);
    }
    free(line);
    fclose(f);
    return n;
}

Test(prep, held_out_documents_are_a_function_of_their_offset_not_of_the_pieces, .init = setup, .fini = cleanup)
{
    write_text(400000);
    struct stat sb;
    cr_assert_eq(stat(text, &sb), 0);
    uint64_t size = (uint64_t)sb.st_size, cut = 0;
    FILE *f = fopen(text, "r");
    char buf[2];
    for (uint64_t at = size / 3; !cut && fseek(f, (long)at, SEEK_SET) == 0 && fread(buf, 1, 2, f) == 2; at++)
        if (buf[0] == '\n' && buf[1] == '\n') cut = at + 2;
    fclose(f);
    cr_assert_gt(cut, 0);
    prep_piece whole = {0, 0, size, 0}, halves[2] = {{0, 0, cut, 0}, {0, cut, size, 0}};
    uint32_t *a, *b, *want, *train_ids;

    cr_assert_eq(run_split(&whole, 1, 0.2), ST_OK, "%s", st_message());
    size_t na = split_tokens(DATASET_SPLIT_VALID, 1, &a), n_train = split_tokens(DATASET_SPLIT_TRAIN, 1, &train_ids);
    dataset d;
    cr_assert_eq(dataset_open_split(&d, out, DATASET_SPLIT_VALID), ST_OK, "%s", st_message());
    cr_assert_eq(d.info.n_tokens, na);
    cr_assert_float_eq(d.info.valid_fraction, 0.2, 1e-12);
    dataset_close(&d);
    cr_assert(dataset_has_split(out, DATASET_SPLIT_VALID) && dataset_has_split(out, DATASET_SPLIT_TRAIN));
    for (int split = 0; split < 2; split++) { /* stream_spec.split picks the shards */
        stream_spec ss = {.path = out, .split = (dataset_split)split, .objective = STREAM_CAUSAL, .seq_len = 16,
                          .dp_size = 1, .chunk = 2, .vocab_size = 500};
        stream *s;
        cr_assert_eq(stream_open(&s, &ss), ST_OK, "%s", st_message());
        cr_assert_eq(stream_info(s)->n_tokens, split ? na : n_train);
        stream_close(s);
    }

    cr_assert_eq(run_split(halves, 2, 0.2), ST_OK, "%s", st_message());
    size_t nb = split_tokens(DATASET_SPLIT_VALID, 2, &b);
    size_t nw = expected_valid(0.2, &want);
    cr_assert_gt(nw, 0);
    cr_assert_eq(na, nw, "one piece: %zu valid tokens, expected %zu", na, nw);
    cr_assert_eq(nb, nw, "two pieces: %zu valid tokens, expected %zu", nb, nw);
    cr_assert_eq(memcmp(a, want, 4 * nw), 0, "one piece: other valid documents than the rule gives");
    cr_assert_eq(memcmp(b, want, 4 * nw), 0, "two pieces: other valid documents than the rule gives");
    stream_ref ref;
    direct_tokenization(&ref);
    cr_assert_eq(n_train + na, ref.n, "train %zu + valid %zu tokens != %zu in the input", n_train, na, ref.n);
    free(ref.ids), free(ref.start), free(ref.sent_len);
    free(a), free(b), free(want), free(train_ids);
}

Test(prep, a_dataset_without_a_valid_split_refuses_to_open_one, .init = setup, .fini = cleanup)
{
    write_text(20000);
    cr_assert_eq(run_prep(0), 1, "%s", st_message());
    cr_assert(!dataset_has_split(out, DATASET_SPLIT_VALID));
    cr_assert(dataset_has_split(out, DATASET_SPLIT_TRAIN));
    dataset d;
    cr_assert_eq(dataset_open_split(&d, out, DATASET_SPLIT_VALID), ST_USAGE);
    cr_assert(strstr(st_message(), "has no valid split") && strstr(st_message(), "--valid-fraction"), "%s",
              st_message());
    cr_assert_eq(dataset_open_split(&d, out, DATASET_SPLIT_TRAIN), ST_OK, "%s", st_message());
    cr_assert_eq(d.info.valid_fraction, 0);
    dataset_close(&d);
}

/* Tests of data/shard and data/dataset: the writer/reader round trip at both
 * token widths, sentences longer than a frame, and every kind of damage the
 * reader must name: truncation, a flipped byte, wrong magic, a newer version,
 * a vocabulary fingerprint that differs from the dataset's. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/synth_dataset.h"
#include "base/rng.h"
#include "base/status.h"
#include "data/dataset.h"
#include "data/shard.h"

static char dir[4200], path[4300];

static void setup(void)
{
    cr_assert_eq(synth_tmpdir(dir, sizeof dir, "shard"), 0);
    snprintf(path, sizeof path, "%s/s.zst", dir);
}
static void cleanup(void) { synth_rmdir(dir); }

/* Sentence k has length len_of(k) and token i of it is tok_of(k, i, vocab). */
static uint32_t len_of(uint32_t k) { return k == 7 ? 3 * SHARD_FRAME_TOKENS + 5 : 1 + (k * 37) % 90; }
static uint32_t tok_of(uint32_t k, uint32_t i, uint32_t vocab) { return (k * 7919u + i * 104729u) % vocab; }

static void write_shard(uint32_t vocab, uint32_t n_sents)
{
    shard_writer *w;
    cr_assert_eq(shard_writer_open(&w, path, 0x1234, vocab), ST_OK, "%s", st_message());
    uint32_t *ids = malloc(4 * (size_t)len_of(7));
    for (uint32_t k = 0; k < n_sents; k++) {
        for (uint32_t i = 0; i < len_of(k); i++) ids[i] = tok_of(k, i, vocab);
        cr_assert_eq(shard_writer_add(w, ids, len_of(k), k % 5 == 0), ST_OK, "%s", st_message());
    }
    free(ids);
    shard_header h;
    cr_assert_eq(shard_writer_close(w, &h), ST_OK, "%s", st_message());
    cr_assert_eq(h.n_sentences, n_sents);
    cr_assert_eq(h.n_documents, (n_sents + 4) / 5);
}

/* Reads the shard back and checks every token and every boundary. */
static void check_round_trip(uint32_t vocab, uint32_t n_sents)
{
    shard_reader *r;
    cr_assert_eq(shard_reader_open(&r, path), ST_OK, "%s", st_message());
    const shard_header *h = shard_reader_header(r);
    cr_assert_eq(h->token_width, vocab <= 65536 ? 2u : 4u);
    cr_assert_eq(h->fingerprint, 0x1234);
    uint32_t *rec = malloc(4 * SHARD_FRAME_TOKENS), *tok = malloc(4 * SHARD_FRAME_TOKENS);
    uint32_t k = 0, i = 0; /* sentence, position within it */
    for (uint32_t f = 0; f < h->n_frames; f++) {
        cr_assert_eq(shard_reader_read(r, f, rec, tok), ST_OK, "%s", st_message());
        uint32_t at = 0;
        for (uint32_t q = 0; q < shard_reader_frame(r, f)->n_records; q++) {
            uint32_t len = rec[q] & SHARD_SENT_LEN_MASK;
            if (rec[q] & SHARD_SENT_CONTINUES) cr_assert(q == 0 && i > 0, "continuation must open a frame");
            else cr_assert_eq(i, 0, "sentence %u was cut short", k);
            cr_assert_eq(!!(rec[q] & SHARD_SENT_DOC_START), i == 0 && k % 5 == 0, "document start of sentence %u", k);
            for (uint32_t j = 0; j < len; j++, i++) cr_assert_eq(tok[at++], tok_of(k, i, vocab), "sentence %u token %u", k, i);
            if (i == len_of(k)) k++, i = 0;
        }
    }
    cr_assert_eq(k, n_sents);
    cr_assert_eq(shard_reader_verify(r), ST_OK, "%s", st_message());
    free(rec);
    free(tok);
    shard_reader_close(r);
}

Test(shard, round_trip_16_bit_with_a_sentence_longer_than_three_frames, .init = setup, .fini = cleanup)
{
    write_shard(30522, 3000);
    check_round_trip(30522, 3000);
}

Test(shard, round_trip_32_bit_when_the_vocabulary_exceeds_65536, .init = setup, .fini = cleanup)
{
    write_shard(100000, 500);
    check_round_trip(100000, 500);
}

Test(shard, writer_refuses_ids_outside_the_vocabulary_and_empty_sentences, .init = setup, .fini = cleanup)
{
    shard_writer *w;
    cr_assert_eq(shard_writer_open(&w, path, 1, 100), ST_OK);
    uint32_t ids[2] = {5, 100};
    cr_assert_neq(shard_writer_add(w, ids, 2, 1), ST_OK);
    cr_assert(strstr(st_message(), "token id 100 out of the vocabulary"), "%s", st_message());
    cr_assert_neq(shard_writer_add(w, ids, 0, 1), ST_OK);
    shard_writer_abort(w);
    cr_assert_neq(access(path, F_OK), 0, "an aborted shard must leave no file");
}

static void patch(long offset, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "r+b");
    cr_assert(f);
    fseek(f, offset, SEEK_SET);
    fwrite(bytes, 1, n, f);
    fclose(f);
}

static void expect_open_error(const char *what)
{
    shard_reader *r;
    status_t st = shard_reader_open(&r, path);
    if (st == ST_OK) {
        st = shard_reader_verify(r);
        shard_reader_close(r);
    }
    cr_assert_eq(st, ST_FORMAT, "expected a format error mentioning '%s'", what);
    cr_assert(strstr(st_message(), what), "message: %s", st_message());
    cr_assert(strstr(st_message(), path), "the message names the file: %s", st_message());
}

Test(shard, truncated_shard_is_named_with_its_size, .init = setup, .fini = cleanup)
{
    write_shard(30522, 200);
    struct stat sb;
    stat(path, &sb);
    cr_assert_eq(truncate(path, sb.st_size - 10), 0);
    expect_open_error("truncated at byte");
}

Test(shard, flipped_byte_in_a_data_frame_fails_its_checksum, .init = setup, .fini = cleanup)
{
    write_shard(30522, 200);
    shard_reader *r;
    cr_assert_eq(shard_reader_open(&r, path), ST_OK);
    const shard_frame *e = shard_reader_frame(r, 0);
    long at = (long)(e->offset + e->bounds_size + e->data_size / 2);
    shard_reader_close(r);
    unsigned char b;
    FILE *f = fopen(path, "rb");
    fseek(f, at, SEEK_SET);
    cr_assert_eq(fread(&b, 1, 1, f), 1);
    fclose(f);
    b ^= 0x10;
    patch(at, &b, 1);
    expect_open_error("checksum mismatch in the data of frame 0 at byte");
}

Test(shard, wrong_magic_is_not_a_shard, .init = setup, .fini = cleanup)
{
    write_shard(30522, 20);
    patch(9, "X", 1);
    expect_open_error("not an mpilm shard: wrong magic at byte 0");
    cr_assert_eq(shard_is_shard(path), 0);
}

Test(shard, newer_format_version_is_refused, .init = setup, .fini = cleanup)
{
    write_shard(30522, 20);
    unsigned char v[4] = {SHARD_VERSION + 1, 0, 0, 0};
    patch(16, v, 4);
    expect_open_error("format version 2 at byte 16 is not supported (this mpilm reads version 1)");
}

Test(shard, shard_from_another_vocabulary_is_refused_by_the_dataset, .init = setup, .fini = cleanup)
{
    synth_spec sp = {.vocab_size = 300, .n_shards = 2, .docs_per_shard = 20, .max_sents = 5, .max_len = 20, .seed = 1};
    cr_assert_eq(synth_dataset_make(dir, &sp), 0, "%s", st_message());
    dataset d;
    cr_assert_eq(dataset_open(&d, dir), ST_OK, "%s", st_message());
    cr_assert_eq(dataset_verify_shard(&d, 1), ST_OK, "%s", st_message());
    char shard1[4300];
    dataset_shard_path(&d, 1, shard1, sizeof shard1);
    shard_writer *w;
    uint32_t ids[3] = {5, 6, 7};
    cr_assert_eq(shard_writer_open(&w, shard1, 0xdeadbeef, 300), ST_OK);
    cr_assert_eq(shard_writer_add(w, ids, 3, 1), ST_OK);
    cr_assert_eq(shard_writer_close(w, NULL), ST_OK);
    cr_assert_eq(dataset_verify_shard(&d, 1), ST_FORMAT);
    cr_assert(strstr(st_message(), "train-00001.zst: size") || strstr(st_message(), "fingerprint mismatch"), "%s",
              st_message());
    shard_reader *r;
    cr_assert_eq(shard_reader_open(&r, shard1), ST_OK);
    cr_assert_eq(dataset_check_shard(&d, 1, shard_reader_header(r)), ST_FORMAT);
    cr_assert(strstr(st_message(), "vocabulary fingerprint mismatch at byte 24"), "%s", st_message());
    shard_reader_close(r);
    dataset_close(&d);
    /* the vocabulary files themselves replaced */
    char vocab[4300];
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
    FILE *f = fopen(vocab, "a");
    fputs("extra\n", f);
    fclose(f);
    cr_assert_eq(dataset_open(&d, dir), ST_FORMAT);
    cr_assert(strstr(st_message(), "manifest.json: vocabulary fingerprint mismatch"), "%s", st_message());
}

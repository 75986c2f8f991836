/* Fuzz target prep_input: prep's input readers (data/prep.c, data/input.c,
 * data/sentence.c) end to end, as fuzz_prep_text does for plain text: the
 * --jsonl reader, --split-sentences, --valid-fraction and zstd/gzip input
 * (told by the first bytes of the file, so the fuzzer reaches the decoders
 * through the compressed seeds). The first input byte holds the flags: bit 0
 * BPE (else WordPiece), bit 1 --replace-invalid, bit 2 --jsonl, bit 3
 * --split-sentences, bit 4 --valid-fraction 0.5; the rest is the file.
 * Every made dataset must open and verify (both splits), and the sentence
 * splitter must cut the raw bytes into non-empty pieces that cover them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/prep.h"
#include "data/sentence.h"
#include "fuzz_common.h"

static void check_splitter(const char *s, size_t n)
{
    for (size_t i = sentence_space(s, n); i < n;) {
        size_t k = sentence_length(s + i, n - i);
        FUZZ_CHECK(k >= 1 && k <= n - i, "sentence_length %zu at %zu of %zu", k, i, n);
        i += k;
        i += sentence_space(s + i, n - i);
    }
}

static void check_dataset(const char *dir, dataset_split split)
{
    dataset d;
    FUZZ_CHECK(dataset_open_split(&d, dir, split) == ST_OK, "the dataset just made does not open: %s", st_message());
    for (int i = 0; i < d.info.n_shards; i++)
        FUZZ_CHECK(dataset_verify_shard(&d, i) == ST_OK, "shard %s just made does not verify: %s", d.shards[i].file,
                   st_message());
    dataset_close(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    check_splitter((const char *)data + 1, size - 1);
    static char dirs[2][4200];
    tokenizer_kind kind = data[0] & 1 ? TOKENIZER_BPE : TOKENIZER_WORDPIECE;
    tokenizer *t = fuzz_tokenizer(kind);
    char *dir = dirs[kind];
    if (!dir[0]) {
        fuzz_subdir(kind == TOKENIZER_BPE ? "input-bpe" : "input-wordpiece", dir, sizeof dirs[0]);
        FUZZ_CHECK(tokenizer_save(t, dir) == ST_OK, "cannot save the vocabulary: %s", st_message());
    }
    prep_input in = {.replace_invalid = (data[0] >> 1) & 1, .jsonl = (data[0] >> 2) & 1, .text_key = "text",
                     .split_sentences = (data[0] >> 3) & 1, .valid_fraction = (data[0] >> 4) & 1 ? 0.5 : 0};
    char input[4200];
    fuzz_write("input.bin", data + 1, size - 1, input, sizeof input);
    const char *files[1] = {input};
    prep_plan plan;
    if (prep_plan_make_input(files, 1, &in, &plan) != ST_OK) {
        st_clear();
        return 0;
    }
    status_t st = ST_OK;
    uint64_t tokens = 0;
    for (int i = 0; st == ST_OK && i < plan.n_pieces; i++) {
        char name[64], valid[64], shard[4300], valid_shard[4300];
        prep_stats stats;
        dataset_split_shard_name(DATASET_SPLIT_TRAIN, i, name, sizeof name);
        dataset_split_shard_name(DATASET_SPLIT_VALID, i, valid, sizeof valid);
        snprintf(shard, sizeof shard, "%s/%s", dir, name);
        snprintf(valid_shard, sizeof valid_shard, "%s/%s", dir, valid);
        st = prep_piece_encode_input(t, files, &plan.pieces[i], &in, shard, valid_shard, &stats);
        tokens += stats.tokens;
    }
    dataset_info train, held = {0};
    if (st == ST_OK && prep_finish_split(dir, t, plan.n_pieces, in.valid_fraction, &train, &held) == ST_OK) {
        FUZZ_CHECK(train.n_tokens + held.n_tokens == tokens, "the manifest counts %llu tokens, the pieces %llu",
                   (unsigned long long)(train.n_tokens + held.n_tokens), (unsigned long long)tokens);
        check_dataset(dir, DATASET_SPLIT_TRAIN);
        if (in.valid_fraction > 0) check_dataset(dir, DATASET_SPLIT_VALID);
    }
    prep_plan_free(&plan);
    st_clear();
    return 0;
}

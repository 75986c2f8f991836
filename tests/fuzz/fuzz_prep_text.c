/* Fuzz target prep_text: prep's text reader (data/prep.c) end to end: a text
 * file planned into pieces, each tokenized into a shard, the manifest written,
 * then the dataset opened and every shard verified. The first input byte
 * chooses the tokenizer (bit 0: BPE, else WordPiece) and --replace-invalid
 * (bit 1); the rest is the text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/prep.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    static char dirs[2][4200];
    tokenizer_kind kind = data[0] & 1 ? TOKENIZER_BPE : TOKENIZER_WORDPIECE;
    tokenizer *t = fuzz_tokenizer(kind);
    char *dir = dirs[kind];
    if (!dir[0]) {
        fuzz_subdir(kind == TOKENIZER_BPE ? "prep-bpe" : "prep-wordpiece", dir, sizeof dirs[0]);
        FUZZ_CHECK(tokenizer_save(t, dir) == ST_OK, "cannot save the vocabulary: %s", st_message());
    }
    char input[4200];
    fuzz_write("input.txt", data + 1, size - 1, input, sizeof input);
    const char *files[1] = {input};
    prep_plan plan;
    if (prep_plan_make(files, 1, &plan) != ST_OK) {
        st_clear();
        return 0;
    }
    status_t st = ST_OK;
    uint64_t tokens = 0;
    for (int i = 0; st == ST_OK && i < plan.n_pieces; i++) {
        char name[64], shard[4300];
        prep_stats stats;
        dataset_shard_name(i, name, sizeof name);
        snprintf(shard, sizeof shard, "%s/%s", dir, name);
        st = prep_piece_encode(t, files, &plan.pieces[i], (data[0] >> 1) & 1, shard, &stats);
        tokens += stats.tokens;
    }
    dataset_info info;
    if (st == ST_OK && prep_finish(dir, t, plan.n_pieces, &info) == ST_OK) {
        FUZZ_CHECK(info.n_tokens == tokens, "the manifest counts %llu tokens, the pieces %llu",
                   (unsigned long long)info.n_tokens, (unsigned long long)tokens);
        dataset d;
        FUZZ_CHECK(dataset_open(&d, dir) == ST_OK, "the dataset just made does not open: %s", st_message());
        for (int i = 0; i < d.info.n_shards; i++)
            FUZZ_CHECK(dataset_verify_shard(&d, i) == ST_OK, "shard %d just made does not verify: %s", i,
                       st_message());
        dataset_close(&d);
    }
    prep_plan_free(&plan);
    st_clear();
    return 0;
}

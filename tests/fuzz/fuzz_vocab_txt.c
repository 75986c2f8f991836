/* Fuzz target vocab_txt: a WordPiece vocab.txt (data/wordpiece.c loader),
 * then a fixed sentence encoded and decoded with it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "fuzz_common.h"

static const char sentence[] = "The [CLS] Dashwoods' estate, Norland Park -- 12 miles; caf\xc3\xa9 \xe4\xb8\xad [MASK]ed ##s!";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[4200];
    if (!dir[0]) fuzz_subdir("vocab-txt", dir, sizeof dir);
    char path[4300];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f && (size == 0 || fwrite(data, 1, size, f) == size) && fclose(f) == 0, "cannot write %s", path);
    tokenizer_kind kind;
    tokenizer *t;
    if (tokenizer_detect(dir, &kind) == ST_OK && tokenizer_load(dir, kind, &t) == ST_OK) {
        uint32_t *ids = NULL, n_vocab = tokenizer_vocab_size(t);
        size_t n = 0, cap = 0, out_n = 0, out_cap = 0;
        char *out = NULL;
        for (uint32_t i = 0; i < n_vocab; i++) FUZZ_CHECK(tokenizer_token(t, i), "id %u has no token", i);
        FUZZ_CHECK(tokenizer_encode(t, sentence, strlen(sentence), &ids, &n, &cap) == ST_OK, "encode failed: %s",
                   st_message());
        for (size_t i = 0; i < n; i++) FUZZ_CHECK(ids[i] < n_vocab, "id %u out of the vocabulary (%u)", ids[i], n_vocab);
        FUZZ_CHECK(tokenizer_decode(t, ids, n, &out, &out_n, &out_cap) == ST_OK, "decode failed: %s", st_message());
        free(ids);
        free(out);
        tokenizer_free(t);
    }
    st_clear();
    return 0;
}

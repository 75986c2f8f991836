/* Fuzz target bpe_vocab: encoder.json and vocab.bpe of a byte-level BPE
 * vocabulary (data/bpe.c loader). The input is encoder.json, a NUL byte, then
 * vocab.bpe (empty when there is no NUL). A vocabulary that loads must encode
 * a fixed text and decode it back to the same bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "fuzz_common.h"

static const char text[] = "The sound of his carriage had died away,  and    she thought\t<|endoftext|> of it's 12 caf\xc3\xa9s \xff.";

static void write_in(const char *dir, const char *name, const uint8_t *data, size_t size)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f && (size == 0 || fwrite(data, 1, size, f) == size) && fclose(f) == 0, "cannot write %s", path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[4200];
    if (!dir[0]) fuzz_subdir("vocab-json", dir, sizeof dir);
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    write_in(dir, "encoder.json", data, json_len);
    write_in(dir, "vocab.bpe", nul ? nul + 1 : data, nul ? size - json_len - 1 : 0);
    tokenizer *t;
    if (tokenizer_load(dir, TOKENIZER_BPE, &t) == ST_OK) {
        uint32_t *ids = NULL, n_vocab = tokenizer_vocab_size(t);
        size_t n = 0, cap = 0, out_n = 0, out_cap = 0, len = strlen(text);
        char *out = NULL;
        FUZZ_CHECK(tokenizer_encode(t, text, len, &ids, &n, &cap) == ST_OK, "encode failed: %s", st_message());
        for (size_t i = 0; i < n; i++) FUZZ_CHECK(ids[i] < n_vocab, "id %u out of the vocabulary (%u)", ids[i], n_vocab);
        FUZZ_CHECK(tokenizer_decode(t, ids, n, &out, &out_n, &out_cap) == ST_OK, "decode failed: %s", st_message());
        FUZZ_CHECK(out_n == len && memcmp(out, text, len) == 0, "decode(encode(text)) differs from the text");
        free(ids);
        free(out);
        tokenizer_free(t);
    }
    st_clear();
    return 0;
}

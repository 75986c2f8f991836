/* Fuzz target bpe_encode: arbitrary bytes through the byte-level BPE encoder
 * (data/bpe.c pre-tokenizer and merges) of a fixed small vocabulary. BPE is
 * lossless: decoding must give back the input bytes. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tokenizer *t = fuzz_tokenizer(TOKENIZER_BPE);
    uint32_t *ids = NULL, n_vocab = tokenizer_vocab_size(t);
    size_t n = 0, cap = 0, out_n = 0, out_cap = 0;
    char *out = NULL;
    FUZZ_CHECK(tokenizer_encode(t, (const char *)data, size, &ids, &n, &cap) == ST_OK, "encode failed: %s",
               st_message());
    FUZZ_CHECK(n <= size, "%zu ids for %zu bytes", n, size);
    for (size_t i = 0; i < n; i++) FUZZ_CHECK(ids[i] < n_vocab, "id %u out of the vocabulary (%u)", ids[i], n_vocab);
    FUZZ_CHECK(tokenizer_decode(t, ids, n, &out, &out_n, &out_cap) == ST_OK, "decode failed: %s", st_message());
    FUZZ_CHECK(out_n == size && (size == 0 || memcmp(out, data, size) == 0), "decode(encode(input)) differs");
    free(ids);
    free(out);
    return 0;
}

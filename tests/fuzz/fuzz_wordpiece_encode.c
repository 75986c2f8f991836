/* Fuzz target wordpiece_encode: arbitrary bytes through BERT's normalizer,
 * pre-tokenizer and WordPiece (data/wordpiece.c) of a fixed small vocabulary.
 * The first byte chooses lowercasing (bit 0) and accent stripping (bit 1). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    tokenizer *t = fuzz_tokenizer(TOKENIZER_WORDPIECE);
    tokenizer_set_case(t, data[0] & 1, (data[0] >> 1) & 1);
    uint32_t *ids = NULL, n_vocab = tokenizer_vocab_size(t);
    size_t n = 0, cap = 0, out_n = 0, out_cap = 0;
    char *out = NULL;
    FUZZ_CHECK(tokenizer_encode(t, (const char *)data + 1, size - 1, &ids, &n, &cap) == ST_OK, "encode failed: %s",
               st_message());
    for (size_t i = 0; i < n; i++) FUZZ_CHECK(ids[i] < n_vocab, "id %u out of the vocabulary (%u)", ids[i], n_vocab);
    FUZZ_CHECK(tokenizer_decode(t, ids, n, &out, &out_n, &out_cap) == ST_OK, "decode failed: %s", st_message());
    free(ids);
    free(out);
    return 0;
}

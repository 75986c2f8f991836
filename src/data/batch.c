#include "batch.h"

#include <stdlib.h>
#include <string.h>

status_t batch_alloc(batch *b, int B, int T)
{
    memset(b, 0, sizeof *b);
    b->B = B;
    b->T = T;
    size_t n = (size_t)B * (size_t)T;
    b->input_ids = calloc(n, sizeof(int32_t));
    b->token_type_ids = calloc(n, sizeof(int32_t));
    b->attention_mask = calloc(n, sizeof(int32_t));
    b->labels = calloc(n, sizeof(int32_t));
    b->next_sentence_label = calloc((size_t)B, sizeof(int32_t));
    if (!b->input_ids || !b->token_type_ids || !b->attention_mask || !b->labels || !b->next_sentence_label) {
        batch_free(b);
        return st_fail(ST_NOMEM, "out of memory for a batch of %d x %d tokens", B, T);
    }
    return ST_OK;
}

void batch_free(batch *b)
{
    free(b->input_ids);
    free(b->token_type_ids);
    free(b->attention_mask);
    free(b->labels);
    free(b->next_sentence_label);
    memset(b, 0, sizeof *b);
}

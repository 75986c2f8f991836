/* data/batch — one micro-batch of training samples, as every objective fills it
 * and every model consumes it. Plain arrays, allocated once by batch_alloc()
 * from the shapes and reused every step.
 *
 * Conventions (Hugging Face's, so fixtures and exports compare directly):
 *   input_ids[b*T + t]      token ids (B,T); padding positions hold the [PAD] id (or 0)
 *   token_type_ids[b*T + t] segment ids (B,T): 0 for segment A, 1 for B; all 0 for GPT
 *   attention_mask[b*T + t] 1 for a real token, 0 for padding (B,T)
 *   labels[b*T + t]         (B,T) the target id at this position, or -100 (ignored):
 *                           GPT: the next token (inputs shifted by one);
 *                           BERT: the original token at masked positions, else -100
 *   next_sentence_label[b]  (B) BERT NSP: 0 = B is the true next segment, 1 = random
 * Must not touch: models, MPI.
 */
#ifndef MPILM_DATA_BATCH_H
#define MPILM_DATA_BATCH_H

#include <stdint.h>

#include "base/status.h"

#define LABEL_IGNORE (-100)

typedef struct batch {
    int B, T;
    int32_t *input_ids;
    int32_t *token_type_ids;
    int32_t *attention_mask;
    int32_t *labels;
    int32_t *next_sentence_label;
} batch;

status_t batch_alloc(batch *b, int B, int T);
void batch_free(batch *b);

#endif

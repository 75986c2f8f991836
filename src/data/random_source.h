/* data/random_source — data.source = random: uniformly random tokens shaped
 * as the objectives shape real text, for benchmarks and layout tests.
 *
 * Every value is a pure function of (seed, global sample index, position), so
 * any layout, any number of ranks and any resume see the same samples.
 * Token ids: 0 [PAD], 1 [CLS], 2 [SEP], 3 [MASK] (BERT); text tokens are
 * uniform over [4, vocab_size).
 * Must not touch: models, MPI.
 */
#ifndef MPILM_DATA_RANDOM_SOURCE_H
#define MPILM_DATA_RANDOM_SOURCE_H

#include <stdint.h>

#include "data/batch.h"

typedef struct random_spec {
    int mlm;            /* 0: causal LM; 1: MLM */
    int nsp;            /* MLM: random NSP labels (else -100: no NSP loss) */
    int vocab_size;
    double mask_prob;   /* MLM */
    uint64_t seed;
    uint64_t samples;   /* > 0: sample g is sample g % samples (a repeating set) */
} random_spec;

enum { RANDOM_PAD = 0, RANDOM_CLS = 1, RANDOM_SEP = 2, RANDOM_MASK = 3, RANDOM_FIRST_TEXT = 4 };

/* Fills b's B samples with global indices sample0, sample0 + 1, ... */
void random_batch_fill(batch *b, const random_spec *spec, uint64_t sample0);

#endif

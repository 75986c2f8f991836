/* ckpt/export_internal — what export.c and export_tokenizer.c share (not a
 * public API). Must not touch: training state, MPI. */
#ifndef MPILM_CKPT_EXPORT_INTERNAL_H
#define MPILM_CKPT_EXPORT_INTERNAL_H

#include <stdint.h>

#include "base/status.h"
#include "model/model.h"

/* The special ids config.json names; -1 = none (written as null, so that
 * Hugging Face's defaults, e.g. GPT2Config's 50256, cannot point outside the
 * vocabulary). GPT: bos = eos = the end-of-text token; BERT: bos = [CLS],
 * eos = [SEP], pad = [PAD]. */
typedef struct hf_token_ids {
    int32_t bos, eos, pad;
} hf_token_ids;

/* Writes the tokenizer files of the vocabulary in vocab_dir into out_dir
 * (GPT: vocab.json, merges.txt, tokenizer.json, tokenizer_config.json,
 * special_tokens_map.json, generation_config.json; BERT: vocab.txt,
 * tokenizer.json, tokenizer_config.json, special_tokens_map.json) and
 * returns the special ids. Every id is checked to lie inside the model's
 * vocab_size. vocab_dir NULL: nothing written, every id -1. */
status_t export_tokenizer_files(const model_config *c, const char *vocab_dir, const char *out_dir,
                                hf_token_ids *ids);

#endif

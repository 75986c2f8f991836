/* ckpt/export — Hugging Face format: model.safetensors + config.json (+ the
 * tokenizer files under Hugging Face's names), loadable as BertForPreTraining
 * or GPT2LMHeadModel; and the way back.
 *
 * Owns: the mapping between mpilm's model config and Hugging Face's
 * config.json, and which tensors a Hugging Face model file holds. The tensor
 * names and layouts are already Hugging Face's (model/), so this is a copy.
 * Must not touch: training state, MPI.
 */
#ifndef MPILM_CKPT_EXPORT_H
#define MPILM_CKPT_EXPORT_H

#include "base/status.h"
#include "model/model.h"

/* Writes out_dir/model.safetensors and out_dir/config.json from the full
 * model's parameters (model_full_table order) and copies the vocabulary from
 * vocab_dir (may be NULL) as vocab.txt, or vocab.json + merges.txt. Sinusoidal
 * positions are written as the position table they are; a model Hugging Face
 * cannot express (pre-LN BERT, post-LN GPT) is refused. */
status_t export_hf(const model_config *c, const float *params, const char *vocab_dir, const char *out_dir);

/* Reads hf_dir/config.json and model.safetensors into a config and a newly
 * allocated full parameter buffer (model_full_table order); *params is the
 * caller's to free. Missing or misshaped tensors are named. */
status_t import_hf(const char *hf_dir, model_config *c, float **params);

#endif

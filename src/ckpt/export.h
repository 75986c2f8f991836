/* ckpt/export — Hugging Face format: model.safetensors + config.json (+ the
 * tokenizer files under Hugging Face's names), loadable as BertForPreTraining,
 * GPT2LMHeadModel or LlamaForCausalLM; and the way back.
 *
 * Owns: the mapping between mpilm's model config and Hugging Face's
 * config.json, and which tensors a Hugging Face model file holds. The tensor
 * names and layouts are already Hugging Face's (model/), so this is a copy.
 * Must not touch: training state, MPI.
 */
#ifndef MPILM_CKPT_EXPORT_H
#define MPILM_CKPT_EXPORT_H

#include "base/status.h"
#include "ckpt/safetensors.h"
#include "model/model.h"

/* Writes out_dir/model.safetensors and out_dir/config.json from the full
 * model's parameters (model_full_table order) and, from the vocabulary in
 * vocab_dir (may be NULL: none), the tokenizer files Hugging Face loads:
 * vocab.txt, or vocab.json + merges.txt, tokenizer.json,
 * tokenizer_config.json, special_tokens_map.json, and for GPT
 * generation_config.json; config.json names the special ids (bos, eos; BERT
 * also pad) inside the vocabulary, null where there is none. Sinusoidal
 * positions are written as the position table they are; a model Hugging Face
 * cannot express (pre-LN BERT, post-LN GPT) is refused. dtype is SAFET_F32
 * (the parameters bit for bit; config.json "torch_dtype": "float32") or
 * SAFET_BF16 (every tensor rounded to nearest even, as PyTorch's .bfloat16();
 * "torch_dtype": "bfloat16"); anything else is refused (ST_USAGE). */
status_t export_hf(const model_config *c, const float *params, const char *vocab_dir, const char *out_dir,
                   safet_dtype dtype);

/* "fp32" -> SAFET_F32, "bf16" -> SAFET_BF16 (the names of export --dtype);
 * anything else fails with ST_USAGE naming --dtype and the accepted values. */
status_t export_dtype_parse(const char *name, safet_dtype *out);

/* Reads hf_dir/config.json and model.safetensors into a config and a newly
 * allocated full parameter buffer (model_full_table order); *params is the
 * caller's to free. Tensors may be F32, BF16 or F16 (widened to float32
 * exactly) or F64 (rounded to nearest); config.json's torch_dtype is not
 * needed. Missing or misshaped tensors are named. */
status_t export_import_hf(const char *hf_dir, model_config *c, float **params);

#endif

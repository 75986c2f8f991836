/* The PyTorch fixtures of tests/reference: their model and optimizer
 * settings, read from the safetensors metadata (shared by the fp32 and the
 * bf16 reference tests). */
#ifndef MPILM_TESTS_FIXTURE_H
#define MPILM_TESTS_FIXTURE_H

#include "base/status.h"
#include "ckpt/safetensors.h"
#include "model/model.h"
#include "optim/optim.h"

/* The fixture's model (dropout 0, learned positions, GPT pre-LN, BERT
 * post-LN; Llama's kv heads, RMSNorm eps and RoPE base, untied) and AdamW settings; ST_FORMAT naming the first missing key. */
status_t fixture_configs(const safet_file *f, model_config *c, optim_config *o);

#endif

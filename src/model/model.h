/* model — BERT, GPT and Llama over a range of layers (a pipeline stage is just a range).
 *
 * Owns: the model configuration, the flat parameter table (Hugging Face names
 * and layouts, docs/design.md), parameter initialisation, the activation plan,
 * and forward/backward of layers [layer_begin, layer_end) with the embeddings
 * on the first range and the heads (MLM+NSP or LM) and the loss on the last.
 * Must not touch: MPI, pipelines, optimizers, files.
 *
 * All parameters of a stage live in one contiguous float buffer; gradients use
 * the same layout. A stage keeps the activations of n_slots micro-batches in
 * flight (a pipeline schedule's need); slot s is independent of the others.
 */
#ifndef MPILM_MODEL_MODEL_H
#define MPILM_MODEL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "base/rng.h"
#include "base/status.h"
#include "data/batch.h"
#include "model/model_config.h"

typedef struct model_tensor {
    char name[80];
    int ndim;
    int64_t shape[2];
    size_t offset, numel; /* in floats, within the stage's buffer */
    int decay;            /* AdamW weight decay applies (2-D weights) */
    int tp_split;         /* 1: each tensor-parallel rank holds its own slice; 0: replicated */
    int layer;            /* the block's layer, -1 for the embeddings and heads */
    int view;             /* byte offset of the pointer bound to it in the block's or the
                             stage's views (model_tensors.h), -1 for none */
    int tied;             /* the tied word embedding: stage 0's, or the last stage's copy */
    int tied_copy;        /* the last stage's copy (stage 0's is the one saved and counted) */
    int global;           /* its index in model_full_table (a copy: the original's) */
    size_t global_offset; /* where its unsplit tensor starts in model_full_table's flat order */
} model_tensor;

/* What one forward pass of the last stage measured (sums, so micro-batches and
 * ranks add up; divide by the counts for means). */
typedef struct model_losses {
    double lm_loss_sum, mlm_loss_sum, nsp_loss_sum;
    int lm_count, mlm_count, nsp_count;       /* rows that had a target */
    int lm_correct, mlm_correct, nsp_correct; /* argmax == target */
} model_losses;

typedef struct model_stage model_stage;

/* A stage over layers [layer_begin, layer_end) for micro-batches of B
 * sequences of cfg->seq_len tokens, with n_slots micro-batches in flight.
 * Plans and allocates every buffer now (parameters, gradients, activations,
 * scratch); nothing is allocated afterwards. */
status_t model_stage_create(model_stage **out, const model_config *cfg, int layer_begin,
                            int layer_end, int B, int n_slots);
void model_stage_free(model_stage *m);

/* What model_stage_create(_tp) allocates, in bytes, computed without
 * allocating it (the same plan): parameters, gradients, their bf16 copy
 * (bf16 stages) and the arena of activations and scratch. */
typedef struct model_stage_memory {
    size_t n_params;
    size_t params, grads, params_bf16, activations;
    size_t params_mirror; /* over bf16 pairs (training): model_stage_mirror_bytes */
} model_stage_memory;

/* The stage's tensor-parallel split (model_tp.h: for the modules that split
 * stages -- dist/, layout/, checkpoints). */
typedef struct model_tp model_tp;

int model_stage_first(const model_stage *m); /* holds the embeddings */
int model_stage_last(const model_stage *m);  /* holds the heads */
const model_config *model_stage_config(const model_stage *m);
int model_stage_batch(const model_stage *m); /* B: sequences per micro-batch */

/* The fp32 (master) parameters. Whoever takes this pointer may write through
 * it, so a bf16 stage refreshes its bf16 weight copy before its next pass.
 * NULL for a stage over bf16 pairs (model_stage_create_over): its owner
 * holds them (optim_state). */
float *model_params(model_stage *m);
float *model_grads(model_stage *m);
/* The parameters were written through a pointer taken earlier (a training
 * state's, a checkpoint restore): the bf16 weight copy is refreshed before
 * the next pass. */
void model_params_changed(model_stage *m);
size_t model_stage_arena_bytes(const model_stage *m); /* activations and scratch */
size_t model_n_params(const model_stage *m);
int model_n_tensors(const model_stage *m);
const model_tensor *model_tensor_at(const model_stage *m, int i);
const model_tensor *model_tensor_find(const model_stage *m, const char *name);

/* The tensor table of the whole model (all layers, one copy of the tied
 * embedding), for checkpoints and exports. *n receives its length; the
 * offsets are global. Caller frees. */
status_t model_full_table(const model_config *cfg, model_tensor **table, int *n);
/* The tensor table of layers [layer_begin, layer_end), with the embeddings
 * when first and the heads when last, as tensor-parallel rank tp->rank of
 * tp->size holds it (tp NULL: unsplit); *total its floats. The order and
 * the names are model_tensors.h's. Caller frees *table. */
status_t model_stage_table(const model_config *c, int layer_begin, int layer_end, int first, int last,
                           const model_tp *tp, model_tensor **table, int *n, size_t *total);
/* Parameters of the whole model (one copy of the tied embedding); 0 if the
 * table cannot be built. */
size_t model_full_n_params(const model_config *cfg);

/* Initialises every parameter from (seed, tensor name), so any split into
 * stages gives the same values: normal(0, 0.02) for weights and embeddings
 * (GPT's residual projections scaled by 1/sqrt(2 n_layer)), zero biases,
 * LayerNorm weight 1. */
void model_init_params(model_stage *m, uint64_t seed);
/* The same values written to params (n_params floats, the stage's order)
 * instead of the stage's own: a stage over bf16 pairs is initialised
 * through floats its owner then splits. */
void model_init_params_into(model_stage *m, uint64_t seed, float *params);
/* Bytes of a split stage's fp32 mirror (the tensors read outside GEMMs), 0
 * for fp32 stages. */
size_t model_stage_mirror_bytes(const model_stage *m);
/* Tensor i of a stage over bf16 pairs is read in fp32, low halves included
 * (its fp32 mirror, or the first stage's word embedding, whose lookup joins
 * the pairs); the others are read as their high halves only (GEMMs). */
int model_tensor_read_fp32(const model_stage *m, int i);
/* The same for an entry of a stage's table (model_stage_table), first: the
 * table's stage holds the embeddings. */
int model_table_read_fp32(const model_tensor *t, int first);

/* The activation a non-first stage receives (B,T,C) and the one a non-last
 * stage sends, for slot s; and their gradients. Backward consumes doutput in
 * place and leaves dinput there (the two are one buffer). */
float *model_stage_input(model_stage *m, int slot);
float *model_stage_output(model_stage *m, int slot);
float *model_stage_dinput(model_stage *m, int slot);
float *model_stage_doutput(model_stage *m, int slot);

/* What a forward pass does with randomness and the loss. */
typedef struct model_pass {
    int train;          /* 1: dropout on, and the last stage starts backward */
    uint64_t seed;      /* dropout key */
    uint64_t sample0;   /* global index of the micro-batch's first sample: the
                           dropout stream, so masks do not depend on the layout */
    float loss_scale;   /* d(total loss)/d(this micro-batch's mean loss) */
    float *logits;      /* if not NULL: (B,T,V) logits of every position (tests, eval) */
    float *nsp_logits;  /* if not NULL: (B,2) */
    /* if not NULL: called between sub-blocks (each attention and FFN half, each
       chunk of head rows), so the caller can progress communication that
       overlaps this compute (dist polls its pending MPI requests), and with
       lo < hi when this pass has finished adding to the gradients of floats
       [lo, hi) of the stage's buffer (a block in backward, the heads in the
       last stage's training forward, the embeddings): after a stage's last
       pass of a step those gradients are final and may be reduced while the
       rest of the backward runs. It must not touch the stage. */
    void (*poll)(void *ctx, size_t lo, size_t hi);
    void *poll_ctx;
    /* 1: the last stage's training forward stops at the heads' input; the
       caller runs model_head (the heads' forward, loss and backward fused)
       before model_backward. dist does so for every schedule: the heads'
       work then falls in the backward phase and every stage has the same
       forward/backward proportion the schedules' bubble assumes (with the
       heads in the forward, GPipe's last stage is forward-heavy and the
       first backward-heavy, and the pipeline drains late). */
    int defer_head;
    /* 1: the heads' output-weight gradient may wait for later micro-batches'
       rows (the logits buffer keeps up to HEAD_ROWS rows of logit gradients
       and one GEMM adds them up: BERT's MLM head has ~15% of a micro-batch's
       rows, and its (V, C) gradient read and written once per micro-batch
       made it memory-bound). The caller sets 0 on the step's last
       micro-batch (the gradient is then complete), or calls
       model_head_flush after it: dist does the latter on a last stage at
       pp > 1, the former on a single stage. 0: complete after every
       model_head. */
    int head_dw_wait;
} model_pass;

/* Forward of slot s. The first stage reads b->input_ids / token_type_ids;
 * every stage reads b->attention_mask (BERT); the last stage runs model_head
 * (unless training with pass->defer_head; losses may then be NULL): reads the
 * labels, adds to *losses and, when training, already runs the heads'
 * backward (the logits are consumed chunk by chunk and never stored whole). */
status_t model_forward(model_stage *m, int slot, const batch *b, const model_pass *pass,
                       model_losses *losses);

/* The heads of the last stage for slot s (after model_forward with
 * pass->defer_head): logits, losses added to *losses, and when training the
 * heads' backward down to d(last block output). */
status_t model_head(model_stage *m, int slot, const batch *b, const model_pass *pass,
                    model_losses *losses);

/* After a training model_head with pass->head_dw_wait: makes the output
 * weight's gradient of the rows the heads hold (from that and earlier passes)
 * and reports the heads' gradients final through pass->poll. Nothing to do
 * when no rows are held. dist calls it on a last stage after the step's last
 * micro-batch has sent its gradient on to the previous stage, so that GEMM
 * runs while the previous stage's last backward does. */
status_t model_head_flush(model_stage *m, const model_pass *pass);

/* Backward of slot s: from the heads' gradient (last stage) or
 * model_stage_doutput (others) down to model_stage_dinput (non-first) or the
 * embeddings. Gradients ACCUMULATE into model_grads (zero them per step). */
status_t model_backward(model_stage *m, int slot, const batch *b, const model_pass *pass);

/* ---- generation with a key/value cache (GPT, Llama) -----------------------
 * A decoder that keeps every layer's keys and values of the positions seen so
 * far, so each new token costs one position's work, not the whole prefix's.
 * Llama's cache holds its n_kv_head key/value heads only. It reads the
 * parameters of a whole-model stage (first and last). */
typedef struct model_decoder model_decoder;

status_t model_decoder_create(model_decoder **out, model_stage *m, int max_len);
void model_decoder_free(model_decoder *d);
/* Feeds token id at the next position; logits (V) of the next token. Fails
 * when max_len or max_positions is reached. */
status_t model_decoder_step(model_decoder *d, int32_t id, const float **logits);
/* Work done so far, in position-passes through the blocks (a cache makes it
 * one per token; recomputing the prefix would make it quadratic). */
uint64_t model_decoder_work(const model_decoder *d);
/* Floats of the key/value cache: n_layer * max_len * 2 * n_kv_head * hs. */
size_t model_decoder_cache_floats(const model_decoder *d);

/* The next token from logits (V): greedy when temperature is 0, else a draw
 * from softmax(logits / temperature) restricted to the top_k most likely (0 =
 * all) and to the smallest set whose probability reaches top_p (1 = all). The
 * draw is a pure function of (seed, step). work: V floats and V ints. */
typedef struct sample_params {
    float temperature, top_p;
    int top_k;
    uint64_t seed;
} sample_params;
int32_t model_sample(const float *logits, int V, const sample_params *sp, uint64_t step, float *work_p,
                     int32_t *work_idx);


#endif

/* model/model_tp — a stage split over a tensor-parallel group: what dist/
 * (which supplies the group's reductions), layout/ and the checkpoints (which
 * map local slices to the unsplit model) need of the model. Train, eval,
 * generate and export use model.h only.
 * Must not touch: MPI (the reductions come in model_tp).
 */
#ifndef MPILM_MODEL_MODEL_TP_H
#define MPILM_MODEL_MODEL_TP_H

#include "model/model.h"
#include "tensor/bf16.h"

/* ---- tensor parallelism (Megatron-LM's 1D split) ---------------------------
 * A stage split over a group of `size` ranks: each holds the heads [r NH/t,
 * (r+1) NH/t) of q, k, v and the attention-out rows that consume them, rows
 * [r F/t, (r+1) F/t) of the FFN, and rows [r Vp/t, (r+1) Vp/t) of the word
 * embedding and the tied head (Vp = vocab padded up to a multiple of t; the
 * padded rows are zero and stay zero). LayerNorms, position and type
 * embeddings, row-parallel biases and BERT's MLM transform and NSP head are
 * replicated. The group's reductions come from the caller (dist supplies MPI
 * ones), so model/ stays MPI-free; every rank of the group must run the same
 * passes in the same order. */
/* ---- 2d mode (grid_p > 0) --------------------------------------------------
 * Attention and the vocabulary stay as above; the FFN's two linears are
 * GEMMs on the group's grid_p x grid_q process grid (rank r is process
 * (r / grid_q, r % grid_q)). A distributed matrix (rows x cols, row-major) is
 * dealt block-cyclically (tensor/block_cyclic.h, blocks of `block`): its rows
 * over the grid_q process columns, its columns over the grid_p process rows;
 * a rank holds its pieces as one packed row-major array in global order.
 * fc_w and fc2_w are stored so (model_stage_runs maps the pieces), the hidden
 * N x d_ff activation stays distributed between the two GEMMs; the FFN input
 * is cut from the replicated residual stream locally and the output gathered
 * back. The model hands the caller only shapes and local arrays. */
typedef struct model_dmat {
    int rows, cols;  /* global */
    float *data;     /* this rank's packed local part */
} model_dmat;

struct model_tp {
    int size, rank;                       /* 1, 0 = no tensor parallelism */
    /* in-place sum / max over the tensor group (dist supplies MPI versions) */
    status_t (*allreduce_sum)(void *ctx, float *buf, size_t n);
    status_t (*allreduce_max)(void *ctx, float *buf, size_t n);
    /* 2d: grid_p x grid_q = size (0, 0: 1d), the block size; C = alpha
     * op(A) op(B) + beta C over distributed matrices (op(X) = X^T when tX);
     * and the whole of A, row-major, into full on every rank. */
    int grid_p, grid_q, block;
    status_t (*gemm)(void *ctx, int ta, int tb, float alpha, const model_dmat *A, const model_dmat *B, float beta,
                     const model_dmat *C);
    status_t (*gather)(void *ctx, const model_dmat *A, float *full);
    void *ctx;
};

/* Refuses a split the model cannot take (n_head or d_ff not divisible by
 * size), naming dist.tp and the key. */
status_t model_tp_check(const model_config *cfg, int size);

/* model_stage_create for tensor-parallel rank tp->rank of tp->size (tp = NULL:
 * size 1). The tensor table then lists this rank's LOCAL tensors (Hugging Face
 * names, local shapes and offsets). */
status_t model_stage_create_tp(model_stage **out, const model_config *cfg, int layer_begin,
                               int layer_end, int B, int n_slots, const model_tp *tp);

/* model_stage_create_tp over the caller's buffers, params and grads of n
 * floats each (the stage's size, else ST_ERROR), which the stage views but
 * neither owns nor frees: a training state's (optim_state), sized by the
 * rank's layout. A bf16 stage may take its parameters as bf16 pairs instead
 * (params NULL; hi, lo of n each, tensor/bf16.h): its GEMMs read hi
 * directly, and it keeps fp32 values only of the tensors read outside the
 * GEMMs (model_stage_mirror_bytes), refreshed from the pairs after
 * model_params_changed. */
status_t model_stage_create_over(model_stage **out, const model_config *cfg, int layer_begin, int layer_end, int B,
                                 int n_slots, const model_tp *tp, float *params, bf16 *hi, uint16_t *lo,
                                 float *grads, size_t n);

/* model_stage_memory of model_stage_create_tp with these arguments (the
 * tables are built and freed; the big buffers are not allocated). */
status_t model_stage_plan_memory(const model_config *cfg, int layer_begin, int layer_end, int B, int n_slots,
                                 const model_tp *tp, model_stage_memory *out);

/* Where local tensor i lives in the stage's FULL (tp = 1) buffer: contiguous
 * runs of `len` floats from `local` (offset in this stage's buffer) to `full`
 * (offset in the buffer of model_stage_create over the same layers). Padding
 * has no run. *runs points into the stage; returns the count (1 for an
 * unsplit tensor). Checkpoints, exports and tests map slices with it. */
typedef struct model_run {
    size_t local, full, len;
} model_run;
int model_stage_runs(const model_stage *m, int i, const model_run **runs);
/* Local tensor i unsplit: its name, full shape and offset in the stage's full
 * buffer (the table model_stage_create gives over the same layers). */
const model_tensor *model_stage_full_tensor(const model_stage *m, int i);
/* Floats of the stage's full (tp = 1) buffer. */
size_t model_stage_full_n_params(const model_stage *m);
/* The stage's tensor-parallel split (size 1 when none): with another rank
 * it describes that rank's slice (model_stage_create_tp of a view). */
const model_tp *model_stage_tp(const model_stage *m);

#endif

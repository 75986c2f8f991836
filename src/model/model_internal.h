/* model/internal — the stage's layout: named views into the flat buffers and
 * the activation plan. Shared by the model's files only. */
#ifndef MPILM_MODEL_INTERNAL_H
#define MPILM_MODEL_INTERNAL_H

#include "model/model_tp.h"
#include "tensor/bf16.h"
#include "tensor/tensor.h"

/* One block's parameters (views into the params or the grads buffer). BERT's
 * query/key/value weights are stored back to back, so qkv_w is one (3C,C)
 * matrix and qkv_b one (3C) vector. */
typedef struct block_params {
    float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    float *ln2_w, *ln2_b, *fc_w, *fc_b, *fc2_w, *fc2_b;
} block_params;

typedef struct stage_params {
    float *wte, *wpe, *wtt, *emb_ln_w, *emb_ln_b;          /* first stage */
    block_params *blocks;                                  /* n_local */
    float *lnf_w, *lnf_b;                                  /* GPT head (Llama: lnf_w) */
    float *lm_head;                                        /* Llama's untied output head */
    float *pool_w, *pool_b, *tr_w, *tr_b, *tr_ln_w, *tr_ln_b, *dec_b, *nsp_w, *nsp_b; /* BERT */
} stage_params;

/* One block's activations. Pre-LN: res2 is the block output; post-LN: ln2 is.
 * fch_gelu points to one shared scratch: it is recomputed from fch in backward
 * (one cheap pass) instead of being kept per layer (N x d_ff floats each); a
 * bf16 stage makes it in bf16 straight into the GEMM scratch (fch_gelu NULL). */
typedef struct block_acts {
    float *ln1, *ln1_mean, *ln1_rstd, *qkv, *att_stat, *atty, *res1; /* att_stat: (B,NHl,T,2) */
    float *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu, *res2;
    /* The pre-LN ln1 and ln2 are not kept at all (backward remakes them
       from the block input / res1 and the statistics:
       model_stage_norm_again). bf16 stages: the attention output, a
       GEMM-only input, is kept for backward in bf16 (atty_bf; NULL in fp32
       stages). The fp32 pointers of what is not kept share one scratch
       (gemm_in), valid only between the forward's norm / attention and its
       GEMM; a post-LN ln1 is the residual too and is kept in fp32. */
    bf16 *atty_bf;
    /* bf16 stages: the GEMM outputs backward reads, kept in bf16 as autocast
       keeps them: q | k | v (after RoPE; attention rounds them to bf16
       anyway) and the FFN's pre-activation (Llama: gate | up), from which
       GELU / SwiGLU and their backward compute. Their fp32 pointers are the
       GEMM's output in a backward-only scratch (dqkv, dfch), valid only until
       the forward has made the bf16 copy and the activation from it. */
    bf16 *qkv_bf, *fch_bf;
} block_acts;

typedef struct slot_acts {
    float **xs;          /* n_local + 1 layer inputs; xs[n_local] is the output */
    block_acts *blocks;  /* n_local (shared set when recomputing) */
    float *emb_sum, *emb_mean, *emb_rstd; /* BERT embedding LayerNorm input */
    float *dinput, *doutput;
} slot_acts;

typedef struct scratch {
    float *tmp, *dA, *dtmp, *dfch, *dqkv;
    float *dm_x, *dm_y;               /* 2d: local parts of (N,C) FFN inputs, outputs and gradients */
    float *dm_bias;                   /* 2d: (d_ff) the FFN-in bias gradient's group sum */
    float *ce_max, *ce_st;            /* parallel cross-entropy: (HEAD_ROWS), (2 HEAD_ROWS) */
    float *gelu;                      /* gelu(fch) of the block at hand (N,F); Llama: silu(gate) up */
    float *logits, *row_loss;         /* (RC,V) fp32 stages, (B*T) */
    bf16 *logits_bf;                  /* (RC,V) bf16 stages: the head's logits and their gradient */
    float *head_h;                    /* (RC,C) the input rows of the gradient rows the logits hold */
    bf16 *head_h_bf;                  /* the same in a bf16 stage */
    int head_fill;                    /* gradient rows held, their weight gradient not yet made */
    float *h_in, *h_t, *h_g, *h_l, *h_mean, *h_rstd, *dh_l, *dh_g; /* head rows (B*T,C); h_in, h_t, h_l
                                                                        and dh_l are tmp, dtmp, dA, dfch */
    int32_t *rows, *row_targets;      /* head rows and their targets (B*T) */
    float *pool_in, *pool, *dpool, *dpool_in, *nsp; /* (B,C) and (B,2) */
    float *sin_pos;                   /* (P,C) sinusoidal table, or NULL */
    float *rope;                      /* Llama: (T,hs) RoPE's cos | sin per position */
    float *dh;                        /* Llama: (N,Fl) d(silu(gate) up) */
    bf16 *xbf, *dbf;                  /* bf16: a linear's input and its output's gradient */
    bf16 *ln_bf;                      /* bf16: (N,C) a pre-norm block's LayerNorm / RMSNorm output remade */
    float *gemm_in;                   /* bf16: fp32 (N, max(C, Cl)) of the inputs kept in bf16 */
    float *fch;                       /* recompute = ffn: the FFN pre-activation every block shares, */
    bf16 *fch_bf;                     /* in the stage's precision (model_ffn_in makes it again) */
} scratch;

/* How a tensor is split over tensor-parallel ranks: not at all, by rows,
 * by columns (a vector: its entries), by columns in three equal parts
 * (GPT's q | k | v), each part split alike, or (2d) block-cyclically over
 * the grid (model_tp). full: the unsplit shape. */
typedef enum { SPLIT_NONE = 0, SPLIT_ROWS = 1, SPLIT_COLS = 2, SPLIT_COLS3 = 3, SPLIT_BLOCK_CYCLIC = 4 } split_kind;
typedef struct tensor_split {
    split_kind kind;
    int64_t full[2];
} tensor_split;

struct model_stage {
    model_config cfg;
    int layer_begin, layer_end, n_local, B, n_slots, first, last;
    model_tp tp;
    /* local widths: q/k/v channels, heads, FFN rows, vocabulary rows (padded)
       and the vocabulary slice [v0, v0 + nv) this rank holds */
    int Cl, NHl, Fl, Vl, v0, nv;
    /* the fused q | k | v row: its width Wqkv (3 Cl; Llama Cl + 2 KVl) and
       Llama's local key/value width KVl and heads NKVl */
    int Wqkv, KVl, NKVl;
    size_t nh;               /* floats of this rank's part of the FFN's hidden (N, d_ff) activation */
    model_tensor *tensors;
    tensor_split *splits;    /* [n_tensors] */
    model_tensor *full_tensors; /* [n_tensors]: the same tensors unsplit (the tp = 1 table) */
    model_run *runs;         /* every tensor's runs, tensor i's from run_at[i] to run_at[i + 1] */
    int *run_at;
    size_t full_n_params;
    int n_tensors;
    size_t n_params;
    size_t *part_end;        /* [n_local + 3]: 0, end of the embeddings, of each block, of the heads */
    float *params, *grads;   /* [n_params]: the stage's own, or a caller's (model_stage_create_over);
                                split stages: params is the fp32 mirror (below) */
    int owns_buffers;        /* params and grads are freed with the stage */
    bf16 *wbf;               /* bf16 stages: params rounded to bf16, same offsets (split: the
                                caller's hi, not freed) */
    int wbf_stale;           /* params may have changed since wbf (split: the mirror) was made */
    /* split: the parameters are the caller's bf16 pairs (wbf = hi, plo = lo;
       tensor/bf16.h). params is then an address range of n_params floats
       (mmap, not touched) of which only the mirrored tensors' pages are
       written: the fp32 values of the tensors read outside the GEMMs
       (model_mirrored). The rest is PROT_NONE, so a stray fp32 read of a GEMM
       weight faults instead of reading zeros. */
    int split;
    uint16_t *plo;
    stage_params p, g;       /* views into params and grads */
    slot_acts *slots;
    block_acts shared;       /* recompute: the one set of block activations */
    scratch s;
    void *arena;             /* activations and scratch, one allocation */
    size_t arena_bytes;
};

enum { HEAD_ROWS = 256 };   /* rows of logits materialised at once */

/* Dropout sites of a block (with SITE_EMB = 0 for the embeddings). */
enum { SITE_ATT = 1, SITE_PROJ = 2, SITE_FFN = 3 };

/* tensor table of a range (model_table.c) */
/* part_end (optional, n_local + 3 entries): where each part ends, see
 * model_stage.part_end. */
/* tp: the split (NULL: none). */
status_t model_table_build(const model_config *c, int layer_begin, int layer_end, int first,
                           int last, const model_tp *tp, model_tensor **out, tensor_split **split, int *n,
                           size_t *total, size_t *part_end);
/* 2d: this rank's local rows and cols of a distributed rows x cols matrix. */
void model_dmat_local(const model_tp *tp, int rows, int cols, int *lr, int *lc);
/* m->full_tensors, m->runs, m->run_at and m->full_n_params from m->tensors
 * and m->splits. */
status_t model_runs_build(model_stage *m);
status_t model_views(const model_stage *m, float *base, stage_params *v);

/* blocks and heads (model_block.c, model_head.c) */
status_t model_block_forward(model_stage *m, int l, const block_params *p, const block_acts *a,
                       const float *x, const batch *b, const model_pass *pass);
status_t model_block_backward(model_stage *m, int l, const block_params *p, const block_params *g,
                        const block_acts *a, const float *x, float *dx, const batch *b,
                        const model_pass *pass);
/* Llama's block (model_llama.c): pre-norm RMSNorm, RoPE, grouped-query
 * attention, SwiGLU; model_block_forward / model_block_backward hand Llama stages to these. */
status_t llama_block_forward(model_stage *m, int l, const block_params *p, const block_acts *a, const float *x,
                             const model_pass *pass);
status_t llama_block_backward(model_stage *m, int l, const block_params *p, const block_params *g,
                              const block_acts *a, const float *x, float *dx, const model_pass *pass);
/* 2d FFN (model_ffn2d.c): out (N,C) = gelu(ffn_in W1 + b1) W2 + b2, the
 * hidden kept in a->fch; backward from dy_full (N,C, used as scratch after)
 * adds d(ffn_in) to dacc and the weights' gradients to g. */
status_t model_ffn2d_forward(model_stage *m, const block_params *p, const block_acts *a, const float *ffn_in, float *out,
                       gelu_kind gelu);
status_t model_ffn2d_backward(model_stage *m, const block_params *p, const block_params *g, const block_acts *a,
                        const float *ffn_in, float *dy_full, float *dacc, gelu_kind gelu);
status_t model_head_forward(model_stage *m, int slot, const batch *b, const model_pass *pass,
                      model_losses *losses);

/* A linear layer's input: its fp32 values f and, in a bf16 stage, where its
 * bf16 copy is kept for backward (h; NULL: made in the scratch when needed).
 * Forward reads f (and writes h); backward reads h when there is one, else f.
 * f = NULL: h already holds the input (made in bf16 directly). */
typedef struct lin_in {
    const float *f;
    bf16 *h;
} lin_in;
static inline lin_in lin_f32(const float *f) { return (lin_in){f, NULL}; }

/* The stage's linear layers, in its precision (model_linear.c): the fp32
 * kernels, or bf16 copies of the input / dout and of the weight (the stage's
 * wbf at w's offset) with fp32 outputs. Same shapes and rules as
 * linear_forward / linear_backward; w points into the stage's params. */
status_t model_stage_linear_forward(model_stage *m, float *out, int ldo, lin_in inp, const float *w, const float *bias,
                              weight_layout lay, int N, int C, int OC);
status_t model_stage_linear_backward(model_stage *m, float *dinp, float *dw, float *db, const float *dout, int ldd,
                               lin_in inp, const float *w, weight_layout lay, int N, int C, int OC, int accumulate);
/* A bf16 stage's head (model_head.c): the logits written in bf16, and the
 * backward of that linear from their bf16 gradient (dout_bf, row stride
 * ldd; the bias gradient, if any, sums it). Shapes as above, no bias. */
status_t model_stage_linear_forward_out16(model_stage *m, bf16 *out, int ldo, lin_in inp, const float *w,
                                          weight_layout lay, int N, int C, int OC);
status_t model_stage_linear_backward_dout16(model_stage *m, float *dinp, float *dw, float *db, const bf16 *dout_bf,
                                            int ldd, lin_in inp, const float *w, weight_layout lay, int N, int C,
                                            int OC, int accumulate);
/* The block's FFN activation, n elements, as the FFN's second GEMM takes it:
 * gelu(fch) in fp32 into fch_gelu, or (bf16 stage) gelu(fch_bf) in bf16
 * straight into the GEMM scratch; Llama's silu(gate) up likewise (into the
 * gelu scratch or the GEMM scratch). GELU's backward overwrites dfch (the
 * gradient of the activation on entry) with that of fch, and makes the
 * activation again in the same pass, where model_stage_gelu puts it (the
 * second GEMM's weight gradient reads it, returned). SwiGLU's takes
 * d(silu(gate) up) in dh and writes d(gate) | d(up) over gate | up (a->fch,
 * or a->fch_bf in bf16: the gate | up GEMM's backward reads it as it is),
 * which backward needs no more, and returns where. */
typedef struct lin_out { /* a linear's output gradient: fp32 f, or bf16 h */
    const float *f;
    const bf16 *h;
} lin_out;
lin_in model_stage_gelu(model_stage *m, const block_acts *a, size_t n, gelu_kind kind);
lin_in model_stage_gelu_backward(model_stage *m, const block_acts *a, size_t n, gelu_kind kind);
lin_in model_stage_swiglu(model_stage *m, const block_acts *a);
lin_out model_stage_swiglu_backward(model_stage *m, const block_acts *a);
/* A pre-norm block's normalised input of its QKV (which = 1) or FFN (2)
 * GEMM, for backward, remade from the norm's input x (the block input or
 * res1) and the statistics forward kept: bitwise forward's output, in fp32
 * into s.gemm_in (fp32 stages) or rounded to bf16 into s.ln_bf. */
lin_in model_stage_norm_again(model_stage *m, const block_params *p, const block_acts *a, int which, const float *x);
/* bf16 stages: a->qkv_bf, a->fch_bf from the GEMMs' fp32 outputs (once the
 * forward has made them; a Llama stage's gate | up GEMM writes fch_bf
 * itself); fp32 stages: nothing. */
void model_stage_keep_qkv(model_stage *m, const block_acts *a);
void model_stage_keep_fch(model_stage *m, const block_acts *a);
/* bf16 stages: remakes wbf from params when they may have changed. */
void model_stage_sync_bf16(model_stage *m);
/* A split stage keeps this tensor's fp32 values in its mirror: the vectors
 * (norms, biases) and the position and token-type tables. The word
 * embedding is looked up from the pairs; every other tensor is a GEMM's. */
int model_mirrored(const model_tensor *t);

/* The tensor-parallel linears (model_block.c), in the family's weight
 * layout. row_parallel_forward: out (N,OC) = inp (N,K) W + bias of a
 * row-parallel linear: each rank's K inputs give a partial product, the group
 * sums, and the bias (may be NULL) is added once after the sum.
 * column_parallel_backward: dacc (N,C) += d(inp) of a column-parallel linear
 * inp (N,C) -> (N,OC): each rank's OC outputs give a partial d(inp) that the
 * group sums (in dtmp, which must be free), so every rank continues with the
 * whole gradient; dout_bf (not NULL, a bf16 stage, no bias) gives d(out) in
 * bf16 instead of dout. At tp size 1 both are the stage's linear. */
status_t row_parallel_forward(model_stage *m, float *out, lin_in inp, const float *w, const float *bias, int N, int K,
                              int OC);
status_t column_parallel_backward(model_stage *m, float *dacc, float *dw, float *db, const float *dout,
                                  const bf16 *dout_bf, lin_in inp, const float *w, int N, int C, int OC);
/* The attention of a block (its family's mask and causality), out (N,Cl)
 * from a->qkv (or a->qkv_bf), writing a->att_stat: forward, and backward
 * again when model.recompute = attention or ffn (the same inputs and dropout
 * site: bitwise forward's values). b NULL: no key mask (GPT, Llama). */
status_t model_attention(model_stage *m, int l, const block_acts *a, float *out, const batch *b,
                         const model_pass *pass);
/* The attention output as the output projection's input in backward: the
 * kept one, or made again into the scratch tmp (model_remakes_attention). */
status_t model_attention_out(model_stage *m, int l, const block_acts *a, const batch *b, const model_pass *pass,
                             lin_in *out);
/* The FFN's first (column-parallel) GEMM, ffn_in (N,C) -> the pre-activation
 * (N,OC) in a->fch, or a->fch_bf in a bf16 stage: forward, and backward again
 * when model.recompute = ffn (the same inputs: bitwise forward's values). */
status_t model_ffn_in(model_stage *m, const block_acts *a, lin_in ffn_in, const float *w, const float *bias, int OC);

dropout_site model_dropout(const model_stage *m, const model_pass *pass, int layer, int site);
/* The tensor group's in-place sum (nothing at tp size 1). */
static inline status_t model_tp_sum(const model_stage *m, float *buf, size_t n)
{
    return m->tp.size > 1 ? m->tp.allreduce_sum(m->tp.ctx, buf, n) : ST_OK;
}
static inline void model_poll(const model_pass *pass)
{
    if (pass->poll) pass->poll(pass->poll_ctx, 0, 0);
}
/* Tells the pass that part k's gradients are complete (0: embeddings, 1 + i:
 * local block i, n_local + 1: heads). */
static inline void model_part_done(const model_stage *m, const model_pass *pass, int k)
{
    if (pass->poll) pass->poll(pass->poll_ctx, m->part_end[k], m->part_end[k + 1]);
}

#endif

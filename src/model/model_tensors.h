/* model/tensors — every parameter tensor of each family, once: its Hugging
 * Face name, the view it binds (a field of block_params or stage_params),
 * how tensor parallelism splits it, and its shape in the model's dimensions.
 * The table (model_table.c), the views, the checkpoint and export names and
 * the flat order of every buffer all come from these lists, in this order
 * (docs/formats.md: the order is part of the checkpoint format).
 *
 * X(view, name, split, rows, cols)
 *   view   BV(field) / SV(field): the field of block_params / stage_params
 *          that points at the tensor; NO_VIEW for the key and value parts of
 *          BERT's fused q | k | v (the query's view spans all three)
 *   split  TS_*, below
 *   rows, cols  TD_*, below; cols TD_0 = a vector of rows
 * Stage-level lists add a condition first: X(when, view, name, split, rows, cols). */
#ifndef MPILM_MODEL_TENSORS_H
#define MPILM_MODEL_TENSORS_H

/* The split over tensor-parallel ranks: none; by rows; by columns (a vector:
 * its entries); by columns in three equal parts (GPT's q | k | v); an FFN
 * weight split by rows or columns in 1d and block-cyclic over the grid in
 * 2d; the FFN-in bias, split by entries in 1d and replicated in 2d. */
enum { TS_NONE, TS_ROWS, TS_COLS, TS_COLS3, TS_FFN_ROWS, TS_FFN_COLS, TS_FFN_BIAS };

/* Dimensions: d_model, 3 d_model, d_ff, vocab_size, max_positions, 2 (token
 * types, NSP classes), none; Llama's key/value width n_kv_head * head size. */
enum { TD_0, TD_C, TD_3C, TD_F, TD_V, TD_P, TD_2, TD_KV };

/* Conditions of stage-level tensors: always; learned positions
 * (model.positions = learned); the last stage's own copy of the tied word
 * embedding (a tied model's last stage that is not also the first); an
 * untied output head (Llama's lm_head without tie_embeddings). */
enum { TW_ALWAYS, TW_LEARNED_POS, TW_TIED_COPY, TW_UNTIED };

/* GPT-2 block i: "transformer.h.<i>." + name. */
#define MODEL_GPT_BLOCK(X)                                               \
    X(BV(ln1_w), "ln_1.weight", TS_NONE, TD_C, TD_0)                     \
    X(BV(ln1_b), "ln_1.bias", TS_NONE, TD_C, TD_0)                       \
    X(BV(qkv_w), "attn.c_attn.weight", TS_COLS3, TD_C, TD_3C)            \
    X(BV(qkv_b), "attn.c_attn.bias", TS_COLS3, TD_3C, TD_0)              \
    X(BV(proj_w), "attn.c_proj.weight", TS_ROWS, TD_C, TD_C)             \
    X(BV(proj_b), "attn.c_proj.bias", TS_NONE, TD_C, TD_0)               \
    X(BV(ln2_w), "ln_2.weight", TS_NONE, TD_C, TD_0)                     \
    X(BV(ln2_b), "ln_2.bias", TS_NONE, TD_C, TD_0)                       \
    X(BV(fc_w), "mlp.c_fc.weight", TS_FFN_COLS, TD_C, TD_F)              \
    X(BV(fc_b), "mlp.c_fc.bias", TS_FFN_BIAS, TD_F, TD_0)                \
    X(BV(fc2_w), "mlp.c_proj.weight", TS_FFN_ROWS, TD_F, TD_C)           \
    X(BV(fc2_b), "mlp.c_proj.bias", TS_NONE, TD_C, TD_0)

/* BERT block i: "bert.encoder.layer.<i>." + name; query, key and value
 * back to back form one (3C, C) matrix and one 3C bias. */
#define MODEL_BERT_BLOCK(X)                                                        \
    X(BV(qkv_w), "attention.self.query.weight", TS_ROWS, TD_C, TD_C)               \
    X(NO_VIEW, "attention.self.key.weight", TS_ROWS, TD_C, TD_C)                   \
    X(NO_VIEW, "attention.self.value.weight", TS_ROWS, TD_C, TD_C)                 \
    X(BV(qkv_b), "attention.self.query.bias", TS_COLS, TD_C, TD_0)                 \
    X(NO_VIEW, "attention.self.key.bias", TS_COLS, TD_C, TD_0)                     \
    X(NO_VIEW, "attention.self.value.bias", TS_COLS, TD_C, TD_0)                   \
    X(BV(proj_w), "attention.output.dense.weight", TS_COLS, TD_C, TD_C)            \
    X(BV(proj_b), "attention.output.dense.bias", TS_NONE, TD_C, TD_0)              \
    X(BV(ln1_w), "attention.output.LayerNorm.weight", TS_NONE, TD_C, TD_0)         \
    X(BV(ln1_b), "attention.output.LayerNorm.bias", TS_NONE, TD_C, TD_0)           \
    X(BV(fc_w), "intermediate.dense.weight", TS_FFN_ROWS, TD_F, TD_C)              \
    X(BV(fc_b), "intermediate.dense.bias", TS_FFN_BIAS, TD_F, TD_0)                \
    X(BV(fc2_w), "output.dense.weight", TS_FFN_COLS, TD_C, TD_F)                   \
    X(BV(fc2_b), "output.dense.bias", TS_NONE, TD_C, TD_0)                         \
    X(BV(ln2_w), "output.LayerNorm.weight", TS_NONE, TD_C, TD_0)                   \
    X(BV(ln2_b), "output.LayerNorm.bias", TS_NONE, TD_C, TD_0)

/* Llama block i: "model.layers.<i>." + name; q, k and v back to back form
 * one (C + 2 KV, C) matrix, gate and up one (2F, C) matrix, so one GEMM
 * computes each; Linear weights are (out, in) as in transformers. Split by
 * heads (q rows, and the kv rows of their groups) and FFN rows. */
#define MODEL_LLAMA_BLOCK(X)                                                     \
    X(BV(ln1_w), "input_layernorm.weight", TS_NONE, TD_C, TD_0)                  \
    X(BV(qkv_w), "self_attn.q_proj.weight", TS_ROWS, TD_C, TD_C)                 \
    X(NO_VIEW, "self_attn.k_proj.weight", TS_ROWS, TD_KV, TD_C)                  \
    X(NO_VIEW, "self_attn.v_proj.weight", TS_ROWS, TD_KV, TD_C)                  \
    X(BV(proj_w), "self_attn.o_proj.weight", TS_COLS, TD_C, TD_C)                \
    X(BV(ln2_w), "post_attention_layernorm.weight", TS_NONE, TD_C, TD_0)         \
    X(BV(fc_w), "mlp.gate_proj.weight", TS_FFN_ROWS, TD_F, TD_C)                 \
    X(NO_VIEW, "mlp.up_proj.weight", TS_FFN_ROWS, TD_F, TD_C)                    \
    X(BV(fc2_w), "mlp.down_proj.weight", TS_FFN_COLS, TD_C, TD_F)

/* The first stage's tensors (the word embedding first: the tied weight). */
#define MODEL_GPT_EMBED(X)                                                         \
    X(TW_ALWAYS, SV(wte), "transformer.wte.weight", TS_ROWS, TD_V, TD_C)           \
    X(TW_LEARNED_POS, SV(wpe), "transformer.wpe.weight", TS_NONE, TD_P, TD_C)

#define MODEL_LLAMA_EMBED(X) \
    X(TW_ALWAYS, SV(wte), "model.embed_tokens.weight", TS_ROWS, TD_V, TD_C)

#define MODEL_BERT_EMBED(X)                                                                             \
    X(TW_ALWAYS, SV(wte), "bert.embeddings.word_embeddings.weight", TS_ROWS, TD_V, TD_C)                \
    X(TW_LEARNED_POS, SV(wpe), "bert.embeddings.position_embeddings.weight", TS_NONE, TD_P, TD_C)       \
    X(TW_ALWAYS, SV(wtt), "bert.embeddings.token_type_embeddings.weight", TS_NONE, TD_2, TD_C)          \
    X(TW_ALWAYS, SV(emb_ln_w), "bert.embeddings.LayerNorm.weight", TS_NONE, TD_C, TD_0)                 \
    X(TW_ALWAYS, SV(emb_ln_b), "bert.embeddings.LayerNorm.bias", TS_NONE, TD_C, TD_0)

/* The last stage's tensors; its copy of the tied word embedding first (the
 * pipeline keeps the two copies equal). */
#define MODEL_GPT_HEAD(X)                                                          \
    X(TW_TIED_COPY, SV(wte), "transformer.wte.weight", TS_ROWS, TD_V, TD_C)        \
    X(TW_ALWAYS, SV(lnf_w), "transformer.ln_f.weight", TS_NONE, TD_C, TD_0)        \
    X(TW_ALWAYS, SV(lnf_b), "transformer.ln_f.bias", TS_NONE, TD_C, TD_0)

#define MODEL_LLAMA_HEAD(X)                                                        \
    X(TW_TIED_COPY, SV(wte), "model.embed_tokens.weight", TS_ROWS, TD_V, TD_C)      \
    X(TW_ALWAYS, SV(lnf_w), "model.norm.weight", TS_NONE, TD_C, TD_0)              \
    X(TW_UNTIED, SV(lm_head), "lm_head.weight", TS_ROWS, TD_V, TD_C)

#define MODEL_BERT_HEAD(X)                                                                              \
    X(TW_TIED_COPY, SV(wte), "bert.embeddings.word_embeddings.weight", TS_ROWS, TD_V, TD_C)             \
    X(TW_ALWAYS, SV(pool_w), "bert.pooler.dense.weight", TS_NONE, TD_C, TD_C)                           \
    X(TW_ALWAYS, SV(pool_b), "bert.pooler.dense.bias", TS_NONE, TD_C, TD_0)                             \
    X(TW_ALWAYS, SV(tr_w), "cls.predictions.transform.dense.weight", TS_NONE, TD_C, TD_C)               \
    X(TW_ALWAYS, SV(tr_b), "cls.predictions.transform.dense.bias", TS_NONE, TD_C, TD_0)                 \
    X(TW_ALWAYS, SV(tr_ln_w), "cls.predictions.transform.LayerNorm.weight", TS_NONE, TD_C, TD_0)        \
    X(TW_ALWAYS, SV(tr_ln_b), "cls.predictions.transform.LayerNorm.bias", TS_NONE, TD_C, TD_0)          \
    X(TW_ALWAYS, SV(dec_b), "cls.predictions.bias", TS_COLS, TD_V, TD_0)                                \
    X(TW_ALWAYS, SV(nsp_w), "cls.seq_relationship.weight", TS_NONE, TD_2, TD_C)                         \
    X(TW_ALWAYS, SV(nsp_b), "cls.seq_relationship.bias", TS_NONE, TD_2, TD_0)

/* Block name prefixes (printf formats of the layer index). */
#define MODEL_GPT_BLOCK_PREFIX "transformer.h.%d."
#define MODEL_BERT_BLOCK_PREFIX "bert.encoder.layer.%d."
#define MODEL_LLAMA_BLOCK_PREFIX "model.layers.%d."

#endif

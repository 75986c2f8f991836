/* logits_of CKPT OUT.safetensors [B] [SEED]: runs a checkpoint's model on a
 * random batch (BERT: two segments, padding at the tail of the last sequence)
 * and writes the batch and mpilm's logits (and NSP logits) to OUT, for
 * tests/reference/check_export.py to compare against PyTorch on the exported
 * Hugging Face files. */
#include <stdio.h>
#include <stdlib.h>

#include "ckpt/checkpoint.h"
#include "ckpt/safetensors.h"
#include "tensor/tensor.h"

static void fill(batch *b, const model_config *c, uint64_t seed)
{
    rng_key k = rng_key_make(seed, RNG_TEST);
    for (int i = 0; i < b->B * b->T; i++) {
        uint32_t r[4];
        rng_bits(k, (uint64_t)i, 0, 0, r);
        int t = i % b->T, last = i / b->T == b->B - 1;
        b->input_ids[i] = (int32_t)rng_below(r[0], (uint32_t)c->vocab_size);
        b->token_type_ids[i] = c->family == MODEL_BERT && t >= b->T / 2;
        b->attention_mask[i] = !(c->family == MODEL_BERT && last && t >= b->T - 3);
        b->labels[i] = LABEL_IGNORE;
    }
    for (int s = 0; s < b->B; s++) b->next_sentence_label[s] = s % 2;
}

static status_t run(const char *ckpt, const char *out, int B, uint64_t seed)
{
    ckpt_reader *r;
    TRY(ckpt_open(&r, ckpt));
    model_config c = *ckpt_model(r);
    c.dropout = 0.0f;
    tensor_runtime rt;
    tensor_runtime_init(1, 1, &rt);
    model_stage *m = NULL;
    batch b = {0};
    size_t N = (size_t)B * c.seq_len;
    float *logits = malloc(N * (size_t)c.vocab_size * sizeof(float)), *nsp = malloc((size_t)B * 2 * sizeof(float));
    status_t st = logits && nsp ? model_stage_create(&m, &c, 0, c.n_layer, B, 1) : st_fail(ST_NOMEM, "out of memory");
    if (st == ST_OK) st = ckpt_read_stage(r, m, model_params(m), NULL, NULL);
    if (st == ST_OK) st = batch_alloc(&b, B, c.seq_len);
    if (st == ST_OK) {
        fill(&b, &c, seed);
        model_pass pass = {.loss_scale = 1.0f, .logits = logits, .nsp_logits = c.family == MODEL_BERT ? nsp : NULL};
        model_losses l = {0};
        st = model_forward(m, 0, &b, &pass, &l);
    }
    if (st == ST_OK) {
        safet_writer w;
        int64_t bt[2] = {B, c.seq_len}, btv[3] = {B, c.seq_len, c.vocab_size}, b2[2] = {B, 2};
        safet_writer_init(&w);
        safet_writer_add(&w, "input_ids", SAFET_I32, 2, bt, b.input_ids);
        safet_writer_add(&w, "token_type_ids", SAFET_I32, 2, bt, b.token_type_ids);
        safet_writer_add(&w, "attention_mask", SAFET_I32, 2, bt, b.attention_mask);
        safet_writer_add(&w, "logits", SAFET_F32, 3, btv, logits);
        if (c.family == MODEL_BERT) safet_writer_add(&w, "nsp_logits", SAFET_F32, 2, b2, nsp);
        st = safet_writer_write(&w, out);
        safet_writer_free(&w);
    }
    batch_free(&b);
    model_stage_free(m);
    free(logits);
    free(nsp);
    ckpt_close(r);
    return st;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: logits_of CKPT OUT.safetensors [B] [SEED]\n");
        return 2;
    }
    status_t st = run(argv[1], argv[2], argc > 3 ? atoi(argv[3]) : 2, argc > 4 ? strtoull(argv[4], NULL, 10) : 1);
    if (st != ST_OK) {
        fprintf(stderr, "logits_of: %s\n", st_message());
        return 1;
    }
    return 0;
}

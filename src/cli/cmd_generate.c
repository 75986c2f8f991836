/* mpilm generate: text from a GPT checkpoint with a key/value cache; greedy,
 * temperature, top-k, top-p; from a BERT checkpoint, the top-k fills of each
 * [MASK] of the prompt with their probabilities (fill-mask); --json for
 * scripts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/checkpoint.h"
#include "cli.h"
#include "data/tokenizer.h"
#include "tensor/tensor.h"

typedef struct gen_options {
    const char *ckpt, *prompt;
    int max_tokens, json;
    sample_params sp;
    const char *sampling_option; /* the first option given that only GPT's sampling takes, or NULL */
    int top_k_given;
} gen_options;

static status_t set_option(void *ctx, int key, const char *text, double v)
{
    gen_options *o = ctx;
    switch (key) {
    case 'n': o->max_tokens = (int)v; break;
    case 't': o->sp.temperature = (float)v; break;
    case 'k': o->sp.top_k = (int)v; o->top_k_given = 1; break;
    case 'P': o->sp.top_p = (float)v; break;
    case 's': o->sp.seed = (uint64_t)v; break;
    }
    for (int i = 0; !o->sampling_option && i < 4; i++)
        if (key == "ntPs"[i]) o->sampling_option = (const char *[]){"--max-tokens", "--temperature", "--top-p", "--seed"}[i];
    return ST_OK;
}

static status_t parse_options(int argc, char **argv, gen_options *o)
{
    *o = (gen_options){.max_tokens = 50, .sp = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 0, .seed = 1}};
    const cli_option options[] = {
        {"ckpt", .text = &o->ckpt},
        {"prompt", .text = &o->prompt},
        {"max-tokens", .key = 'n', .min = 1, .max = 1 << 20, .integer = 1},
        {"temperature", .key = 't', .min = 0, .max = 100},
        {"top-k", .key = 'k', .min = 0, .max = 1 << 24, .integer = 1},
        {"top-p", .key = 'P', .min = 1e-6, .max = 1},
        {"seed", .key = 's', .min = 0, .max = 1e15, .integer = 1},
        {"json", .flag = &o->json},
        {0},
    };
    int first;
    TRY(cli_parse_options("generate", argc, argv, options, set_option, o, &first));
    FAIL_IF(first < argc, ST_USAGE, "generate: unexpected argument '%s'", argv[first]);
    FAIL_IF(!o->ckpt || !o->prompt, ST_USAGE, "generate: --ckpt PATH and --prompt TEXT are required");
    return ST_OK;
}

static void print_json_ids(const char *key, const uint32_t *ids, size_t n)
{
    printf("\"%s\":[", key);
    for (size_t i = 0; i < n; i++) printf("%s%u", i ? "," : "", ids[i]);
    printf("]");
}

typedef struct gen_state {
    tokenizer *tok;
    model_stage *m;
    model_decoder *d;
    uint32_t *ids;       /* prompt then generated */
    size_t n, cap, n_prompt;
    float *p;
    int32_t *idx;
} gen_state;

static status_t generate(gen_state *g, const gen_options *o)
{
    const model_config *c = model_stage_config(g->m);
    TRY(tokenizer_encode(g->tok, o->prompt, strlen(o->prompt), &g->ids, &g->n, &g->cap));
    FAIL_IF(g->n == 0, ST_USAGE, "generate: the prompt encodes to no tokens");
    FAIL_IF(g->n >= (size_t)c->max_positions, ST_USAGE, "generate: the prompt encodes to %zu tokens, but the model "
            "has max_positions %d, which must hold the prompt and at least one new token; shorten the prompt",
            g->n, c->max_positions);
    FAIL_IF(g->n + (size_t)o->max_tokens > (size_t)c->max_positions, ST_USAGE, "generate: --max-tokens %d with a "
            "prompt of %zu tokens needs %zu positions, but the model has max_positions %d; give --max-tokens %zu "
            "at most (or a shorter prompt)", o->max_tokens, g->n, g->n + (size_t)o->max_tokens, c->max_positions,
            (size_t)c->max_positions - g->n);
    g->n_prompt = g->n;
    uint32_t *grown = realloc(g->ids, (g->n + (size_t)o->max_tokens) * sizeof *g->ids);
    FAIL_IF(!grown, ST_NOMEM, "generate: out of memory");
    g->ids = grown;
    TRY(model_decoder_create(&g->d, g->m, (int)(g->n + (size_t)o->max_tokens)));
    g->p = malloc((size_t)c->vocab_size * sizeof *g->p);
    g->idx = malloc((size_t)c->vocab_size * sizeof *g->idx);
    FAIL_IF(!g->p || !g->idx, ST_NOMEM, "generate: out of memory");
    const float *logits = NULL;
    for (size_t i = 0; i < g->n_prompt; i++) TRY(model_decoder_step(g->d, (int32_t)g->ids[i], &logits));
    int32_t eot = tokenizer_special(g->tok, TOKEN_EOT);
    int n_real = (int)tokenizer_vocab_size(g->tok) < c->vocab_size ? (int)tokenizer_vocab_size(g->tok) : c->vocab_size;
    for (int k = 0; k < o->max_tokens; k++) {
        /* never a padded row (model.vocab_size above the vocabulary's): it has no token */
        int32_t next = model_sample(logits, n_real, &o->sp, (uint64_t)k, g->p, g->idx);
        g->ids[g->n++] = (uint32_t)next;
        if (next == eot || k + 1 == o->max_tokens) break;
        TRY(model_decoder_step(g->d, next, &logits));
    }
    return ST_OK;
}

static status_t output(const gen_state *g, const gen_options *o)
{
    char *text = NULL;
    size_t len = 0, cap = 0;
    const uint32_t *gen = g->ids + g->n_prompt;
    size_t n_gen = g->n - g->n_prompt;
    TRY(tokenizer_decode(g->tok, gen, n_gen, &text, &len, &cap));
    if (o->json) {
        printf("{");
        print_json_ids("prompt_ids", g->ids, g->n_prompt);
        printf(",");
        print_json_ids("ids", gen, n_gen);
        printf(",\"text\":");
        cli_json_string(stdout, text ? text : "", len);
        printf("}\n");
    } else {
        printf("%s%.*s\n", o->prompt, (int)len, text ? text : "");
    }
    free(text);
    return ST_OK;
}

/* ---- fill-mask (BERT) -------------------------------------------------------- */

typedef struct fill_state {
    model_stage *m;
    batch b;
    uint32_t *ids;       /* [CLS] prompt [SEP] */
    size_t n, cap;
    float *logits;       /* (T, V) */
    double *p;           /* V: one mask's probabilities */
    int32_t *order;      /* V: ids by probability */
} fill_state;

static status_t ids_push(uint32_t **ids, size_t *n, size_t *cap, uint32_t id)
{
    if (*n == *cap) {
        size_t grown_cap = *cap ? 2 * *cap : 64;
        uint32_t *grown = realloc(*ids, grown_cap * sizeof **ids);
        FAIL_IF(!grown, ST_NOMEM, "generate: out of memory");
        *ids = grown;
        *cap = grown_cap;
    }
    (*ids)[(*n)++] = id;
    return ST_OK;
}

/* [CLS] prompt [SEP], checked: at least one [MASK], within max_positions. */
static status_t fill_encode(fill_state *f, tokenizer *tok, const model_config *c, const gen_options *o)
{
    int32_t cls = tokenizer_special(tok, TOKEN_CLS), sep = tokenizer_special(tok, TOKEN_SEP),
            mask = tokenizer_special(tok, TOKEN_MASK);
    FAIL_IF(cls < 0 || sep < 0 || mask < 0, ST_FORMAT, "generate: the checkpoint's vocabulary has no %s token, "
            "which BERT's fill-mask needs ([CLS] prompt [SEP] with [MASK]s); use a checkpoint trained on a "
            "WordPiece dataset", cls < 0 ? "[CLS]" : sep < 0 ? "[SEP]" : "[MASK]");
    TRY(ids_push(&f->ids, &f->n, &f->cap, (uint32_t)cls));
    TRY(tokenizer_encode(tok, o->prompt, strlen(o->prompt), &f->ids, &f->n, &f->cap));
    TRY(ids_push(&f->ids, &f->n, &f->cap, (uint32_t)sep));
    int masks = 0;
    for (size_t i = 0; i < f->n; i++) masks += f->ids[i] == (uint32_t)mask;
    FAIL_IF(masks == 0, ST_USAGE, "generate: the prompt has no [MASK]; a BERT checkpoint fills masked words: write "
            "[MASK] where a word is missing (e.g. --prompt \"the [MASK] sat\"); text continuation needs a GPT "
            "checkpoint");
    FAIL_IF(f->n > (size_t)c->max_positions, ST_USAGE, "generate: the prompt encodes to %zu tokens with [CLS] and "
            "[SEP], but the model has max_positions %d; shorten the prompt", f->n, c->max_positions);
    return ST_OK;
}

/* The MLM head's logits of every position of [CLS] prompt [SEP] (token types
 * 0, no padding, no dropout). */
static status_t fill_forward(fill_state *f, ckpt_reader *r, const model_config *ckpt_cfg)
{
    model_config c = *ckpt_cfg;
    c.dropout = 0.0f;
    c.seq_len = (int)f->n;
    size_t V = (size_t)c.vocab_size;
    TRY(cli_load_model(r, &c, 1, &f->m));
    TRY(batch_alloc(&f->b, 1, c.seq_len));
    for (int t = 0; t < c.seq_len; t++) {
        f->b.input_ids[t] = (int32_t)f->ids[t];
        f->b.token_type_ids[t] = 0;
        f->b.attention_mask[t] = 1;
        f->b.labels[t] = LABEL_IGNORE;
    }
    f->b.next_sentence_label[0] = 0;
    f->logits = malloc(f->n * V * sizeof *f->logits);
    f->p = malloc(V * sizeof *f->p);
    f->order = malloc(V * sizeof *f->order);
    FAIL_IF(!f->logits || !f->p || !f->order, ST_NOMEM, "generate: out of memory for %zu x %zu logits", f->n, V);
    model_pass pass = {.loss_scale = 1.0f, .logits = f->logits};
    model_losses losses = {0};
    return model_forward(f->m, 0, &f->b, &pass, &losses);
}

/* qsort context (generation is single-threaded): descending probability,
 * then ascending id. */
static const double *fill_p;
static int by_fill_prob(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return fill_p[x] < fill_p[y] ? 1 : fill_p[x] > fill_p[y] ? -1 : (x > y) - (x < y);
}

/* softmax of one position's logits (in double), ids sorted by it */
static void fill_rank(fill_state *f, const float *logits, int V)
{
    float mx = logits[0];
    for (int v = 1; v < V; v++) mx = logits[v] > mx ? logits[v] : mx;
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += f->p[v] = exp((double)logits[v] - mx);
    for (int v = 0; v < V; v++) {
        f->p[v] /= sum;
        f->order[v] = v;
    }
    fill_p = f->p;
    qsort(f->order, (size_t)V, sizeof *f->order, by_fill_prob);
}

/* For each [MASK] of f->ids, in order, its k most probable fills: as text,
 * or with json one array per mask of {token, id, probability}. */
static void fill_print(fill_state *f, const tokenizer *tok, int V, int k, int json)
{
    uint32_t mask = (uint32_t)tokenizer_special(tok, TOKEN_MASK);
    int nth = 0;
    if (json) printf("[");
    for (size_t t = 0; t < f->n; t++) {
        if (f->ids[t] != mask) continue;
        fill_rank(f, f->logits + t * (size_t)V, V);
        if (json) printf("%s[", nth ? "," : "");
        else printf("[MASK] %d (position %zu of %zu):\n", nth + 1, t, f->n);
        for (int i = 0; i < k; i++) {
            int32_t id = f->order[i];
            const char *token = tokenizer_token(tok, (uint32_t)id);
            if (!token) token = "";
            if (json) {
                printf("%s{\"token\":", i ? "," : "");
                cli_json_string(stdout, token, strlen(token));
                printf(",\"id\":%d,\"probability\":%.9g}", id, f->p[id]);
            } else {
                printf("  %-20s %.6f\n", token, f->p[id]);
            }
        }
        if (json) printf("]");
        nth++;
    }
    if (json) printf("]\n");
}

static status_t fill_mask(ckpt_reader *r, tokenizer *tok, const model_config *c, const gen_options *o)
{
    FAIL_IF(o->sampling_option, ST_USAGE, "generate: %s is for a GPT checkpoint's sampling; %s is BERT, whose "
            "generate fills the prompt's [MASK]s (options --top-k, --json)", o->sampling_option, ckpt_path(r));
    fill_state f = {0};
    status_t st = fill_encode(&f, tok, c, o);
    if (st == ST_OK) st = fill_forward(&f, r, c);
    int V = c->vocab_size, k = o->top_k_given ? o->sp.top_k : 5;
    if (k <= 0 || k > V) k = V; /* --top-k 0: the whole vocabulary */
    if (st == ST_OK) fill_print(&f, tok, V, k, o->json);
    batch_free(&f.b);
    model_stage_free(f.m);
    free(f.ids);
    free(f.logits);
    free(f.p);
    free(f.order);
    return st;
}

static status_t run_generate(const gen_options *o)
{
    ckpt_reader *r;
    TRY(ckpt_open(&r, o->ckpt));
    gen_state g = {0};
    model_config c = *ckpt_model(r);
    c.dropout = 0.0f;
    tensor_runtime rt;
    tokenizer_kind kind;
    const char *vocab = ckpt_vocab_dir(r);
    status_t st = vocab ? ST_OK : st_fail(ST_FORMAT, "%s: the checkpoint has no vocabulary (vocab/); it was trained "
                                                   "on random data, so its tokens mean nothing", ckpt_path(r));
    if (st == ST_OK) st = tokenizer_detect(vocab, &kind);
    if (st == ST_OK) st = tokenizer_load(vocab, kind, &g.tok);
    if (st == ST_OK)
        st = ckpt_check_tokenizer(r, kind == TOKENIZER_BPE ? "bpe" : "wordpiece", tokenizer_fingerprint(g.tok),
                                  tokenizer_vocab_size(g.tok), "the vocabulary files in its vocab/ directory",
                                  "the vocab/ directory was changed after the checkpoint was written; put the "
                                  "original files back or use another checkpoint");
    if (st == ST_OK) st = tensor_runtime_init(-1, 1, &rt);
    if (st == ST_OK && c.family == MODEL_BERT) {
        st = fill_mask(r, g.tok, &c, o);
    } else {
        if (st == ST_OK) st = cli_load_model(r, &c, 1, &g.m);
        if (st == ST_OK) st = generate(&g, o);
        if (st == ST_OK) st = output(&g, o);
    }
    model_decoder_free(g.d);
    model_stage_free(g.m);
    tokenizer_free(g.tok);
    free(g.ids);
    free(g.p);
    free(g.idx);
    ckpt_close(r);
    return st;
}

int cmd_generate(int argc, char **argv)
{
    gen_options o;
    status_t st = parse_options(argc, argv, &o);
    if (st == ST_OK) st = run_generate(&o);
    return cli_finish(st);
}

/* mpilm generate: text from a GPT checkpoint with a key/value cache; greedy,
 * temperature, top-k, top-p; --json for scripts. */
#include <getopt.h>
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
} gen_options;

static status_t parse_options(int argc, char **argv, gen_options *o)
{
    static const struct option long_options[] = {
        {"ckpt", required_argument, 0, 'c'},   {"prompt", required_argument, 0, 'p'},
        {"max-tokens", required_argument, 0, 'n'}, {"temperature", required_argument, 0, 't'},
        {"top-k", required_argument, 0, 'k'},  {"top-p", required_argument, 0, 'P'},
        {"seed", required_argument, 0, 's'},   {"json", no_argument, 0, 'j'},
        {0, 0, 0, 0},
    };
    *o = (gen_options){.max_tokens = 50, .sp = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 0, .seed = 1}};
    optind = 1;
    opterr = 0;
    int ch;
    double v;
    while ((ch = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (ch) {
        case 'c': o->ckpt = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'n': TRY(cli_number("generate", "--max-tokens", optarg, 1, 1 << 20, 1, &v)); o->max_tokens = (int)v; break;
        case 't': TRY(cli_number("generate", "--temperature", optarg, 0, 100, 0, &v)); o->sp.temperature = (float)v; break;
        case 'k': TRY(cli_number("generate", "--top-k", optarg, 0, 1 << 24, 1, &v)); o->sp.top_k = (int)v; break;
        case 'P': TRY(cli_number("generate", "--top-p", optarg, 1e-6, 1, 0, &v)); o->sp.top_p = (float)v; break;
        case 's': TRY(cli_number("generate", "--seed", optarg, 0, 1e15, 1, &v)); o->sp.seed = (uint64_t)v; break;
        case 'j': o->json = 1; break;
        default:
            return st_fail(ST_USAGE, "generate: unknown or incomplete option '%s' (see mpilm generate --help)",
                           argv[optind - 1]);
        }
    }
    FAIL_IF(optind < argc, ST_USAGE, "generate: unexpected argument '%s'", argv[optind]);
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
    if (st == ST_OK) st = model_stage_create(&g.m, &c, 0, c.n_layer, 1, 1);
    if (st == ST_OK) st = ckpt_read_stage(r, g.m, model_params(g.m), NULL, NULL);
    if (st == ST_OK) st = generate(&g, o);
    if (st == ST_OK) st = output(&g, o);
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

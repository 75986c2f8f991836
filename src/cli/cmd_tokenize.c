/* mpilm tokenize: stdin lines → token ids, one output line per input line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "data/tokenizer.h"

typedef struct tokenize_options {
    const char *vocab;
    const char *kind;
    int json;
} tokenize_options;

static status_t parse_options(int argc, char **argv, tokenize_options *o)
{
    const cli_option options[] = {
        {"vocab", .text = &o->vocab}, {"tokenizer", .text = &o->kind}, {"json", .flag = &o->json}, {0},
    };
    int first;
    TRY(cli_parse_options("tokenize", argc, argv, options, NULL, o, &first));
    FAIL_IF(first < argc, ST_USAGE, "tokenize: unexpected argument '%s' (see mpilm tokenize --help)", argv[first]);
    FAIL_IF(!o->vocab, ST_USAGE, "tokenize: --vocab DIR is required");
    FAIL_IF(o->kind && strcmp(o->kind, "bpe") != 0 && strcmp(o->kind, "wordpiece") != 0, ST_USAGE,
            "tokenize: --tokenizer must be bpe or wordpiece (found '%s')", o->kind);
    return ST_OK;
}

static void write_line(FILE *out, const tokenizer *t, const uint32_t *ids, size_t n, int json)
{
    if (!json) {
        for (size_t i = 0; i < n; i++) fprintf(out, i ? " %u" : "%u", ids[i]);
        putc('\n', out);
        return;
    }
    fputs("{\"ids\":[", out);
    for (size_t i = 0; i < n; i++) fprintf(out, i ? ",%u" : "%u", ids[i]);
    fputs("],\"tokens\":[", out);
    for (size_t i = 0; i < n; i++) {
        if (i) putc(',', out);
        const char *token = tokenizer_token(t, ids[i]);
        cli_json_string(out, token, strlen(token));
    }
    fputs("]}\n", out);
}

static status_t tokenize_stream(tokenizer *t, FILE *in, FILE *out, int json)
{
    char *line = NULL;
    size_t line_cap = 0, cap = 0;
    uint32_t *ids = NULL;
    ssize_t len;
    status_t st = ST_OK;
    while (st == ST_OK && (len = getline(&line, &line_cap, in)) >= 0) {
        if (len > 0 && line[len - 1] == '\n') len--;
        size_t n = 0;
        st = tokenizer_encode(t, line, (size_t)len, &ids, &n, &cap);
        if (st == ST_OK) write_line(out, t, ids, n, json);
    }
    free(line);
    free(ids);
    if (st == ST_OK && (ferror(in) || fflush(out) != 0)) st = st_fail(ST_IO, "tokenize: error reading stdin or writing stdout");
    return st;
}

int cmd_tokenize(int argc, char **argv)
{
    tokenize_options o = {0};
    status_t st = parse_options(argc, argv, &o);
    tokenizer_kind kind = TOKENIZER_BPE;
    if (st == ST_OK && o.kind) kind = strcmp(o.kind, "bpe") == 0 ? TOKENIZER_BPE : TOKENIZER_WORDPIECE;
    else if (st == ST_OK) st = tokenizer_detect(o.vocab, &kind);
    tokenizer *t = NULL;
    if (st == ST_OK) st = tokenizer_load(o.vocab, kind, &t);
    if (st == ST_OK) st = tokenize_stream(t, stdin, stdout, o.json);
    tokenizer_free(t);
    return cli_finish(st);
}

/* ckpt/export_tokenizer — the tokenizer files of a Hugging Face export: the
 * vocabulary under Hugging Face's names, tokenizer.json (the fast tokenizer
 * AutoTokenizer loads first), tokenizer_config.json, special_tokens_map.json
 * and, for GPT, generation_config.json. The settings are those of Hugging
 * Face's gpt2 and bert-base-uncased files, under which its tokenizers give
 * mpilm's ids (docs/formats.md, "Hugging Face export"). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "ckpt/export_internal.h"
#include "data/tokenizer.h"

static status_t write_json(const char *out_dir, const char *name, cJSON *j, int formatted)
{
    char *text = formatted ? cJSON_Print(j) : cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    FAIL_IF(!text, ST_NOMEM, "export: out of memory writing %s", name);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    size_t len = strlen(text);
    text[len] = '\n'; /* over the NUL: a text file ends with a newline */
    status_t st = fileio_write_atomic(path, text, len + 1);
    free(text);
    return st;
}

/* Copies one vocabulary file under its Hugging Face name, if present. */
static status_t copy_vocab_file(const char *vocab_dir, const char *from, const char *out_dir, const char *to)
{
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/%s", vocab_dir, from);
    snprintf(dst, sizeof dst, "%s/%s", out_dir, to);
    char *data;
    size_t len;
    if (fileio_read_file(src, &data, &len) != ST_OK) return ST_OK; /* that file is not this kind's */
    status_t st = fileio_write_atomic(dst, data, len);
    free(data);
    return st;
}

/* The special token's string, or NULL when the vocabulary has none. */
static const char *special_text(const tokenizer *t, special_token which)
{
    int32_t id = tokenizer_special(t, which);
    return id < 0 ? NULL : tokenizer_token(t, (uint32_t)id);
}

static void add_string_or_null(cJSON *j, const char *key, const char *value)
{
    if (value) cJSON_AddStringToObject(j, key, value);
    else cJSON_AddNullToObject(j, key);
}

static cJSON *added_token(const tokenizer *t, special_token which, int normalized)
{
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", tokenizer_special(t, which));
    cJSON_AddStringToObject(a, "content", special_text(t, which));
    cJSON_AddBoolToObject(a, "single_word", 0);
    cJSON_AddBoolToObject(a, "lstrip", 0);
    cJSON_AddBoolToObject(a, "rstrip", 0);
    cJSON_AddBoolToObject(a, "normalized", normalized);
    cJSON_AddBoolToObject(a, "special", 1);
    return a;
}

/* token string -> id for every id of the vocabulary */
static cJSON *vocab_object(const tokenizer *t)
{
    cJSON *v = cJSON_CreateObject();
    for (uint32_t id = 0; id < tokenizer_vocab_size(t); id++) {
        const char *tok = tokenizer_token(t, id);
        if (tok) cJSON_AddNumberToObject(v, tok, id);
    }
    return v;
}

/* The merges of vocab.bpe / merges.txt as [left, right] pairs (the form
 * tokenizers writes since 0.20; it reads the older "left right" too). */
static status_t merges_array(const char *vocab_dir, cJSON *merges)
{
    char path[4096], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/vocab.bpe", vocab_dir);
    if (fileio_read_file(path, &text, &len) != ST_OK) {
        snprintf(path, sizeof path, "%s/merges.txt", vocab_dir);
        TRY(fileio_read_file(path, &text, &len));
    }
    status_t st = ST_OK;
    int lineno = 0;
    for (char *line = text; st == ST_OK && line < text + len;) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        if (!end) end = text + len;
        *end = '\0';
        lineno++;
        int header = lineno == 1 && strncmp(line, "#version", 8) == 0;
        char *space = strchr(line, ' ');
        if (!header && *line) {
            if (!space || space == line || !space[1] || strchr(space + 1, ' ')) {
                st = st_fail(ST_FORMAT, "%s: line %d is not a merge (expected two tokens separated by one space, "
                             "found '%.40s'); the vocabulary files are damaged", path, lineno, line);
            } else {
                *space = '\0';
                const char *pair[2] = {line, space + 1};
                cJSON_AddItemToArray(merges, cJSON_CreateStringArray(pair, 2));
            }
        }
        line = end + 1;
    }
    free(text);
    return st;
}

static cJSON *byte_level(int add_prefix_space, int trim_offsets)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "ByteLevel");
    cJSON_AddBoolToObject(b, "add_prefix_space", add_prefix_space);
    cJSON_AddBoolToObject(b, "trim_offsets", trim_offsets);
    cJSON_AddBoolToObject(b, "use_regex", 1);
    return b;
}

static cJSON *tokenizer_json_start(void)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "version", "1.0");
    cJSON_AddNullToObject(j, "truncation");
    cJSON_AddNullToObject(j, "padding");
    return j;
}

/* GPT-2's tokenizer.json: BPE over ByteLevel without a prefix space. */
static status_t bpe_tokenizer_json(const tokenizer *t, const char *vocab_dir, cJSON **out)
{
    cJSON *j = tokenizer_json_start(), *added = cJSON_AddArrayToObject(j, "added_tokens");
    if (tokenizer_special(t, TOKEN_EOT) >= 0) cJSON_AddItemToArray(added, added_token(t, TOKEN_EOT, 1));
    cJSON_AddNullToObject(j, "normalizer");
    cJSON_AddItemToObject(j, "pre_tokenizer", byte_level(0, 1));
    cJSON_AddItemToObject(j, "post_processor", byte_level(1, 0));
    cJSON_AddItemToObject(j, "decoder", byte_level(1, 1));
    cJSON *m = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddStringToObject(m, "continuing_subword_prefix", "");
    cJSON_AddStringToObject(m, "end_of_word_suffix", "");
    cJSON_AddBoolToObject(m, "fuse_unk", 0);
    cJSON_AddBoolToObject(m, "byte_fallback", 0);
    cJSON_AddBoolToObject(m, "ignore_merges", 0);
    cJSON_AddItemToObject(m, "vocab", vocab_object(t));
    status_t st = merges_array(vocab_dir, cJSON_AddArrayToObject(m, "merges"));
    if (st != ST_OK) {
        cJSON_Delete(j);
        return st;
    }
    *out = j;
    return ST_OK;
}

/* One piece of a TemplateProcessing template. */
static cJSON *template_piece(const char *kind, const char *id, int type_id)
{
    cJSON *p = cJSON_CreateObject(), *body = cJSON_AddObjectToObject(p, kind);
    cJSON_AddStringToObject(body, "id", id);
    cJSON_AddNumberToObject(body, "type_id", type_id);
    return p;
}

/* [CLS] $A [SEP] and [CLS] $A [SEP] $B:1 [SEP]:1, as bert-base-uncased. */
static cJSON *bert_post_processor(const tokenizer *t)
{
    const char *cls = special_text(t, TOKEN_CLS), *sep = special_text(t, TOKEN_SEP);
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", "TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(p, "single"), *pair = cJSON_AddArrayToObject(p, "pair");
    cJSON_AddItemToArray(single, template_piece("SpecialToken", cls, 0));
    cJSON_AddItemToArray(single, template_piece("Sequence", "A", 0));
    cJSON_AddItemToArray(single, template_piece("SpecialToken", sep, 0));
    cJSON_AddItemToArray(pair, template_piece("SpecialToken", cls, 0));
    cJSON_AddItemToArray(pair, template_piece("Sequence", "A", 0));
    cJSON_AddItemToArray(pair, template_piece("SpecialToken", sep, 0));
    cJSON_AddItemToArray(pair, template_piece("Sequence", "B", 1));
    cJSON_AddItemToArray(pair, template_piece("SpecialToken", sep, 1));
    cJSON *specials = cJSON_AddObjectToObject(p, "special_tokens");
    const special_token which[2] = {TOKEN_CLS, TOKEN_SEP};
    for (int i = 0; i < 2; i++) {
        const char *text = special_text(t, which[i]);
        double id = tokenizer_special(t, which[i]);
        cJSON *s = cJSON_AddObjectToObject(specials, text);
        cJSON_AddStringToObject(s, "id", text);
        cJSON_AddItemToObject(s, "ids", cJSON_CreateDoubleArray(&id, 1));
        cJSON_AddItemToObject(s, "tokens", cJSON_CreateStringArray(&text, 1));
    }
    return p;
}

/* bert-base-uncased's tokenizer.json, with the vocabulary's case handling. */
static status_t wordpiece_tokenizer_json(const tokenizer *t, cJSON **out)
{
    int lower, strip;
    tokenizer_get_case(t, &lower, &strip);
    cJSON *j = tokenizer_json_start(), *added = cJSON_AddArrayToObject(j, "added_tokens");
    for (int k = TOKEN_PAD; k <= TOKEN_MASK; k++)
        if (tokenizer_special(t, (special_token)k) >= 0) cJSON_AddItemToArray(added, added_token(t, (special_token)k, 0));
    cJSON *n = cJSON_AddObjectToObject(j, "normalizer");
    cJSON_AddStringToObject(n, "type", "BertNormalizer");
    cJSON_AddBoolToObject(n, "clean_text", 1);
    cJSON_AddBoolToObject(n, "handle_chinese_chars", 1);
    cJSON_AddBoolToObject(n, "strip_accents", strip);
    cJSON_AddBoolToObject(n, "lowercase", lower);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(j, "pre_tokenizer"), "type", "BertPreTokenizer");
    if (tokenizer_special(t, TOKEN_CLS) >= 0 && tokenizer_special(t, TOKEN_SEP) >= 0)
        cJSON_AddItemToObject(j, "post_processor", bert_post_processor(t));
    else
        cJSON_AddNullToObject(j, "post_processor");
    cJSON *d = cJSON_AddObjectToObject(j, "decoder");
    cJSON_AddStringToObject(d, "type", "WordPiece");
    cJSON_AddStringToObject(d, "prefix", "##");
    cJSON_AddBoolToObject(d, "cleanup", 1);
    cJSON *m = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(m, "type", "WordPiece");
    cJSON_AddStringToObject(m, "unk_token", special_text(t, TOKEN_UNK)); /* loading requires [UNK] */
    cJSON_AddStringToObject(m, "continuing_subword_prefix", "##");
    cJSON_AddNumberToObject(m, "max_input_chars_per_word", 100);
    cJSON_AddItemToObject(m, "vocab", vocab_object(t));
    *out = j;
    return ST_OK;
}

/* tokenizer_config.json and special_tokens_map.json (the slow tokenizers'
 * view: GPT2Tokenizer / BertTokenizer and their special tokens). */
static status_t tokenizer_configs(const tokenizer *t, const model_config *c, const char *out_dir)
{
    cJSON *cfg = cJSON_CreateObject(), *map = cJSON_CreateObject();
    if (tokenizer_get_kind(t) == TOKENIZER_BPE) {
        const char *eot = special_text(t, TOKEN_EOT);
        cJSON_AddStringToObject(cfg, "tokenizer_class", "GPT2Tokenizer");
        cJSON_AddBoolToObject(cfg, "add_prefix_space", 0);
        cJSON_AddStringToObject(cfg, "errors", "replace");
        static const char *const keys[3] = {"bos_token", "eos_token", "unk_token"};
        for (int i = 0; i < 3; i++) {
            add_string_or_null(cfg, keys[i], eot);
            if (eot) cJSON_AddStringToObject(map, keys[i], eot);
        }
        cJSON_AddBoolToObject(cfg, "clean_up_tokenization_spaces", 0);
    } else {
        int lower, strip;
        tokenizer_get_case(t, &lower, &strip);
        cJSON_AddStringToObject(cfg, "tokenizer_class", "BertTokenizer");
        cJSON_AddBoolToObject(cfg, "do_lower_case", lower);
        cJSON_AddBoolToObject(cfg, "strip_accents", strip);
        cJSON_AddBoolToObject(cfg, "tokenize_chinese_chars", 1);
        static const char *const keys[5] = {"pad_token", "unk_token", "cls_token", "sep_token", "mask_token"};
        for (int k = TOKEN_PAD; k <= TOKEN_MASK; k++) {
            const char *text = special_text(t, (special_token)k);
            add_string_or_null(cfg, keys[k], text);
            if (text) cJSON_AddStringToObject(map, keys[k], text);
        }
        cJSON_AddBoolToObject(cfg, "clean_up_tokenization_spaces", 1);
    }
    cJSON_AddNumberToObject(cfg, "model_max_length", c->max_positions);
    status_t st = write_json(out_dir, "special_tokens_map.json", map, 1);
    if (st != ST_OK) {
        cJSON_Delete(cfg);
        return st;
    }
    return write_json(out_dir, "tokenizer_config.json", cfg, 1);
}

static status_t generation_config(const hf_token_ids *ids, const char *out_dir)
{
    cJSON *g = cJSON_CreateObject();
    if (ids->bos >= 0) cJSON_AddNumberToObject(g, "bos_token_id", ids->bos);
    else cJSON_AddNullToObject(g, "bos_token_id");
    if (ids->eos >= 0) cJSON_AddNumberToObject(g, "eos_token_id", ids->eos);
    else cJSON_AddNullToObject(g, "eos_token_id");
    cJSON_AddBoolToObject(g, "_from_model_config", 1);
    return write_json(out_dir, "generation_config.json", g, 1);
}

/* The ids config.json names, each inside the model's vocabulary. */
static status_t special_ids(const tokenizer *t, const model_config *c, const char *vocab_dir, hf_token_ids *ids)
{
    uint32_t n = tokenizer_vocab_size(t);
    FAIL_IF(n > (uint32_t)c->vocab_size, ST_FORMAT, "%s: the vocabulary has %u tokens, more than the model's "
            "vocab_size %d; the checkpoint's vocab/ does not belong to this model", vocab_dir, n, c->vocab_size);
    if (tokenizer_get_kind(t) == TOKENIZER_BPE) {
        *ids = (hf_token_ids){tokenizer_special(t, TOKEN_EOT), tokenizer_special(t, TOKEN_EOT), -1};
    } else {
        *ids = (hf_token_ids){tokenizer_special(t, TOKEN_CLS), tokenizer_special(t, TOKEN_SEP),
                              tokenizer_special(t, TOKEN_PAD)};
    }
    return ST_OK;
}

static status_t write_files(const tokenizer *t, const model_config *c, const char *vocab_dir, const char *out_dir,
                            const hf_token_ids *ids)
{
    int bpe = tokenizer_get_kind(t) == TOKENIZER_BPE;
    if (bpe) {
        TRY(copy_vocab_file(vocab_dir, "encoder.json", out_dir, "vocab.json"));
        TRY(copy_vocab_file(vocab_dir, "vocab.json", out_dir, "vocab.json"));
        TRY(copy_vocab_file(vocab_dir, "vocab.bpe", out_dir, "merges.txt"));
        TRY(copy_vocab_file(vocab_dir, "merges.txt", out_dir, "merges.txt"));
    } else {
        TRY(copy_vocab_file(vocab_dir, "vocab.txt", out_dir, "vocab.txt"));
    }
    cJSON *j;
    TRY(bpe ? bpe_tokenizer_json(t, vocab_dir, &j) : wordpiece_tokenizer_json(t, &j));
    TRY(write_json(out_dir, "tokenizer.json", j, 0));
    TRY(tokenizer_configs(t, c, out_dir));
    return model_causal(c) ? generation_config(ids, out_dir) : ST_OK;
}

status_t export_tokenizer_files(const model_config *c, const char *vocab_dir, const char *out_dir,
                                hf_token_ids *ids)
{
    *ids = (hf_token_ids){-1, -1, -1};
    if (!vocab_dir) return ST_OK;
    tokenizer_kind kind;
    tokenizer *t = NULL;
    TRY(tokenizer_detect(vocab_dir, &kind));
    TRY(tokenizer_load(vocab_dir, kind, &t));
    status_t st = special_ids(t, c, vocab_dir, ids);
    if (st == ST_OK) st = write_files(t, c, vocab_dir, out_dir, ids);
    tokenizer_free(t);
    return st;
}

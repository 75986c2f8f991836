/* WordPiece exactly as BERT (Hugging Face's BertNormalizer, BertPreTokenizer
 * and WordPiece model): text cleaning, CJK splitting, accent stripping,
 * lowercasing, punctuation splitting, greedy longest-match-first with "##". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "tokenizer_internal.h"
#include "unicode_props.h"

enum { MAX_WORD_CHARS = 100 };

/* ---- normalizer + pre-tokenizer */

/* What BERT does with each ASCII byte: control characters go, \t \n \r and
 * space separate words, the ASCII punctuation ranges are words of their own. */
enum { A_KEEP, A_DROP, A_SPACE, A_PUNCT, A_UPPER };
static const unsigned char ascii_action[128] = {
    [0 ... 8] = A_DROP, ['\t'] = A_SPACE, ['\n'] = A_SPACE, [0x0B ... 0x0C] = A_DROP, ['\r'] = A_SPACE,
    [0x0E ... 0x1F] = A_DROP, [' '] = A_SPACE, ['!' ... '/'] = A_PUNCT, [':' ... '@'] = A_PUNCT,
    ['A' ... 'Z'] = A_UPPER, ['[' ... '`'] = A_PUNCT, ['{' ... '~'] = A_PUNCT, [0x7F] = A_DROP,
};

typedef struct word_builder {
    tokenizer *t;
    size_t len;
    pretoken_fn emit;
    void *ctx;
} word_builder;

static status_t word_flush(word_builder *w)
{
    if (w->len == 0) return ST_OK;
    size_t n = w->len;
    w->len = 0;
    return w->emit(w->ctx, w->t->word_buf, n);
}

static inline status_t word_append(word_builder *w, uint32_t cp)
{
    TRY(bytes_reserve(&w->t->word_buf, &w->t->word_cap, w->len + 4));
    w->len += (size_t)unicode_utf8_encode(cp, w->t->word_buf + w->len);
    return ST_OK;
}

/* One normalized character: whitespace ends the word, punctuation is a word of
 * its own, anything else extends the word. */
static status_t word_add_char(word_builder *w, uint32_t cp)
{
    unsigned f = unicode_flags(cp);
    if (f & U_WS) return word_flush(w);
    if (f & U_PUNCT) {
        TRY(word_flush(w));
        TRY(word_append(w, cp));
        return word_flush(w);
    }
    return word_append(w, cp);
}

/* Strip accents (NFD, drop Mn) then lowercase, as BertNormalizer orders them. */
static status_t word_add_normalized(word_builder *w, uint32_t cp)
{
    const tokenizer *t = w->t;
    uint32_t d[8], lower[2];
    int nd = 1;
    d[0] = cp;
    if (t->strip_accents) nd = unicode_nfd_char(cp, d);
    for (int i = 0; i < nd; i++) {
        if (t->strip_accents && (unicode_flags(d[i]) & U_MN)) continue;
        int nl = 1;
        lower[0] = d[i];
        if (t->lowercase) nl = unicode_lower_char(d[i], lower);
        for (int k = 0; k < nl; k++) TRY(word_add_char(w, lower[k]));
    }
    return ST_OK;
}

status_t wordpiece_pretokenize(tokenizer *t, const char *text, size_t len, pretoken_fn emit, void *ctx)
{
    const unsigned char *s = (const unsigned char *)text;
    word_builder w = {t, 0, emit, ctx};
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            switch (ascii_action[c]) {
            case A_DROP: break;
            case A_SPACE: TRY(word_flush(&w)); break;
            case A_PUNCT:
                TRY(word_flush(&w));
                t->word_buf[0] = (char)c;
                w.len = 1;
                TRY(word_flush(&w));
                break;
            case A_UPPER:
                TRY(bytes_reserve(&t->word_buf, &t->word_cap, w.len + 1));
                t->word_buf[w.len++] = (char)(t->lowercase ? c + 32 : c);
                break;
            default:
                TRY(bytes_reserve(&t->word_buf, &t->word_cap, w.len + 1));
                t->word_buf[w.len++] = (char)c;
            }
            continue;
        }
        uint32_t cp;
        i += (size_t)unicode_utf8_decode(s + i, len - i, &cp);
        unsigned f = unicode_flags(cp);
        if (cp == 0xFFFD || (f & U_CTRL)) continue; /* clean_text drops these */
        if (f & U_WS) {
            TRY(word_flush(&w));
            continue;
        }
        if (f & U_CJK) { /* handle_chinese_chars: a word of its own */
            TRY(word_flush(&w));
            TRY(word_add_normalized(&w, cp));
            TRY(word_flush(&w));
            continue;
        }
        TRY(word_add_normalized(&w, cp));
    }
    return word_flush(&w);
}

/* ---- WordPiece model */

static int64_t vocab_find(const tokenizer *t, const char *s, size_t n)
{
    return strmap_find(&t->vocab, s, n, strmap_hash(s, n));
}

/* Greedy longest-match-first of one word into t->work_ids; returns the count. */
static status_t wordpiece_word(tokenizer *t, const char *word, size_t len, uint32_t *count)
{
    size_t chars = 0;
    for (size_t i = 0; i < len; i++) chars += ((unsigned char)word[i] & 0xC0) != 0x80;
    TRY(ids_reserve(&t->work_ids, &t->work_cap, len + 1));
    uint32_t n = 0;
    if (chars > MAX_WORD_CHARS) goto unknown;
    char piece[4 * MAX_WORD_CHARS + 3] = "##";
    for (size_t start = 0; start < len;) {
        int64_t found = -1;
        size_t end = len;
        for (; end > start; end--) {
            while (end < len && ((unsigned char)word[end] & 0xC0) == 0x80) end--; /* char boundary */
            if (end <= start) break;
            if (start == 0) {
                found = vocab_find(t, word, end);
            } else {
                memcpy(piece + 2, word + start, end - start);
                found = vocab_find(t, piece, end - start + 2);
            }
            if (found >= 0) break;
        }
        if (found < 0) goto unknown;
        t->work_ids[n++] = t->vocab.value[found];
        start = end;
    }
    *count = n;
    return ST_OK;
unknown:
    t->work_ids[0] = (uint32_t)t->special[TOKEN_UNK];
    *count = 1;
    return ST_OK;
}

status_t wordpiece_encode(tokenizer *t, const char *text, size_t len, uint32_t **ids, size_t *n, size_t *cap)
{
    encode_sink sink = {t, ids, n, cap, wordpiece_word};
    return wordpiece_pretokenize(t, text, len, tokenizer_encode_sink_word, &sink);
}

/* ---- decoding: BERT's detokenization */

/* Hugging Face's clean_up_tokenization: these replacements, in this order. */
static const char *const cleanup_rules[][2] = {
    {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
    {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
};

/* Replaces every from in s[0..len) by the shorter to, in place; returns the new length. */
static size_t replace_all(char *s, size_t len, const char *from, const char *to)
{
    size_t from_len = strlen(from), to_len = strlen(to), k = 0;
    for (size_t i = 0; i < len;) {
        if (i + from_len <= len && memcmp(s + i, from, from_len) == 0) {
            memcpy(s + k, to, to_len);
            k += to_len;
            i += from_len;
        } else {
            s[k++] = s[i++];
        }
    }
    return k;
}

/* Tokens joined by spaces, "##" pieces glued to the previous one, then the
 * clean-up rules (as Hugging Face's WordPiece decoder with cleanup on). */
status_t wordpiece_decode(const tokenizer *t, const uint32_t *ids, size_t n_ids, char **out, size_t *n, size_t *cap)
{
    size_t start = *n;
    for (size_t i = 0; i < n_ids; i++) {
        const char *tok = t->token_text[ids[i]];
        size_t len = strlen(tok);
        int glue = len > 2 && tok[0] == '#' && tok[1] == '#';
        if (glue) {
            tok += 2;
            len -= 2;
        }
        TRY(bytes_reserve(out, cap, *n + len + 2));
        if (*n > start && !glue) (*out)[(*n)++] = ' ';
        memcpy(*out + *n, tok, len);
        *n += len;
    }
    TRY(bytes_reserve(out, cap, *n + 1)); /* first: *out may still be NULL when there are no ids */
    for (size_t r = 0; r < sizeof cleanup_rules / sizeof *cleanup_rules; r++)
        *n = start + replace_all(*out + start, *n - start, cleanup_rules[r][0], cleanup_rules[r][1]);
    (*out)[*n] = 0;
    return ST_OK;
}

/* ---- loading */

status_t wordpiece_load(tokenizer *t, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    FILE *f = fopen(path, "rb");
    FAIL_IF(!f, ST_IO, "%s: missing (cannot open it); check --vocab", path);
    fclose(f);
    TRY(fileio_read_file(path, &t->file_data[0], &t->file_len[0]));
    const char *data = t->file_data[0];
    size_t len = t->file_len[0];
    int cased = 0;
    uint32_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += data[i] == '\n';
    if (len > 0 && data[len - 1] != '\n') lines++;
    FAIL_IF(lines == 0, ST_FORMAT, "%s: empty vocabulary (expected one token per line); check the file", path);
    TRY(strmap_init(&t->vocab, lines));
    t->token_text = calloc(lines, sizeof *t->token_text);
    FAIL_IF(!t->token_text, ST_NOMEM, "%s: out of memory for %u tokens", path, lines);
    uint32_t id = 0;
    for (size_t i = 0; i < len; id++) {
        const char *s = data + i;
        const char *nl = memchr(s, '\n', len - i);
        size_t n = nl ? (size_t)(nl - s) : len - i;
        i += n + 1;
        if (n > 0 && s[n - 1] == '\r') n--;
        FAIL_IF(n == 0, ST_FORMAT, "%s: line %u: empty token (expected one token per line)", path, id + 1);
        uint64_t h = strmap_hash(s, n);
        int64_t other = strmap_find(&t->vocab, s, n, h);
        FAIL_IF(other >= 0, ST_FORMAT, "%s: line %u: duplicate token \"%.*s\" (first at line %u); tokens must be unique",
                path, id + 1, (int)n, s, t->vocab.value[other] + 1);
        uint32_t e;
        TRY(strmap_add(&t->vocab, s, n, h, id, &e));
        for (size_t k = 0; s[0] != '[' && k < n && !cased; k++) cased = s[k] >= 'A' && s[k] <= 'Z';
        for (int k = 0; k < TOKEN_EOT; k++)
            if (strlen(tokenizer_special_names[k]) == n && memcmp(s, tokenizer_special_names[k], n) == 0)
                t->special[k] = (int32_t)id;
    }
    t->n_vocab = id;
    t->lowercase = t->strip_accents = !cased;
    for (uint32_t k = 0; k < id; k++) t->token_text[t->vocab.value[k]] = (char *)strmap_key(&t->vocab, k);
    FAIL_IF(t->special[TOKEN_UNK] < 0, ST_FORMAT, "%s: no [UNK] token (WordPiece needs one); add a line [UNK]", path);
    return ST_OK;
}

/* tests/fuzz: scratch files and fixed vocabularies for the harnesses. */
#include "fuzz_common.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"
#include "data/unicode_props.h"

static char scratch[4096];

_Noreturn void fuzz_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s:%d: fuzz check failed: ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    remove(path);
    return 0;
}

/* rm -r of the scratch directory. */
static void remove_scratch(void) { nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

const char *fuzz_dir(void)
{
    if (scratch[0]) return scratch;
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/mpilm-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    FUZZ_CHECK(mkdtemp(scratch), "cannot make a scratch directory %s (%s)", scratch, strerror(errno));
    if (!getenv("MPILM_FUZZ_KEEP")) atexit(remove_scratch);
    return scratch;
}

void fuzz_write(const char *name, const void *data, size_t len, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f, "cannot write %s (%s)", path, strerror(errno));
    FUZZ_CHECK(len == 0 || fwrite(data, 1, len, f) == len, "cannot write %s", path);
    FUZZ_CHECK(fclose(f) == 0, "cannot write %s", path);
}

void fuzz_remove(const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    unlink(path);
}

void fuzz_subdir(const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", fuzz_dir(), name);
    FUZZ_CHECK(mkdir(path, 0700) == 0 || errno == EEXIST, "cannot make %s (%s)", path, strerror(errno));
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

void fuzz_write_wordpiece_vocab(const char *dir)
{
    static const char *const words[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "and", "of",
                                        "to",    "her",   "was",   "##ed",  "##ing",  "##ly",  "##er"};
    char text[2048] = "";
    size_t n = 0;
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) n += (size_t)sprintf(text + n, "%s\n", words[i]);
    for (int c = 0; c < 128; c++)
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c > ' ' && c < 127 && !(c >= 'A' && c <= 'Z')))
            n += (size_t)sprintf(text + n, "%c\n##%c\n", c, c);
    write_text(dir, "vocab.txt", text);
}

/* GPT-2's bytes_to_unicode, as data/bpe.c has it (not a public API there). */
static int byte_printable(unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }
static uint32_t byte_to_unicode(unsigned b)
{
    uint32_t k = 0;
    if (byte_printable(b)) return b;
    for (unsigned x = 0; x < b; x++) k += !byte_printable(x);
    return 256 + k;
}

void fuzz_write_bpe_vocab(const char *dir)
{
    /* Merges in GPT-2's unicode form ("\xc4\xa0" = U+0120 stands for a space). */
#define SP "\xc4\xa0"
    static const char *const merges[][2] = {
        {"t", "h"},  {"h", "e"},       {"e", "r"},      {"i", "n"},   {"a", "n"}, {SP, "t"}, {SP, "a"},
        {"th", "e"}, {SP "t", "he"},   {"an", "d"},     {SP "a", "n"}, {SP "an", "d"}, {"o", "f"}, {SP, "of"}, {"in", "g"},
        {"e", "d"},  {SP, SP},        {SP SP, SP},
    };
#undef SP
    const int n_merges = (int)(sizeof merges / sizeof *merges);
    cJSON *enc = cJSON_CreateObject();
    int id = 0;
    for (unsigned b = 0; b < 256; b++) {
        char tok[8] = {0};
        unicode_utf8_encode(byte_to_unicode(b), tok);
        cJSON_AddNumberToObject(enc, tok, id++);
    }
    char bpe[4096] = "#version: 0.2\n";
    size_t n = strlen(bpe);
    for (int i = 0; i < n_merges; i++) {
        char tok[64];
        snprintf(tok, sizeof tok, "%s%s", merges[i][0], merges[i][1]);
        if (!cJSON_GetObjectItemCaseSensitive(enc, tok)) cJSON_AddNumberToObject(enc, tok, id++);
        n += (size_t)snprintf(bpe + n, sizeof bpe - n, "%s %s\n", merges[i][0], merges[i][1]);
    }
    cJSON_AddNumberToObject(enc, "<|endoftext|>", id++);
    char *json = cJSON_PrintUnformatted(enc);
    FUZZ_CHECK(json, "out of memory");
    write_text(dir, "encoder.json", json);
    write_text(dir, "vocab.bpe", bpe);
    cJSON_free(json);
    cJSON_Delete(enc);
}

static tokenizer *loaded[2];

static void free_tokenizers(void)
{
    for (int k = 0; k < 2; k++) tokenizer_free(loaded[k]);
}

tokenizer *fuzz_tokenizer(tokenizer_kind kind)
{
    if (loaded[kind]) return loaded[kind];
    char dir[4200];
    fuzz_subdir(kind == TOKENIZER_BPE ? "vocab-bpe" : "vocab-wordpiece", dir, sizeof dir);
    if (kind == TOKENIZER_BPE) fuzz_write_bpe_vocab(dir);
    else fuzz_write_wordpiece_vocab(dir);
    FUZZ_CHECK(tokenizer_load(dir, kind, &loaded[kind]) == ST_OK, "the fixed vocabulary does not load: %s",
               st_message());
    if (!loaded[!kind]) atexit(free_tokenizers);
    return loaded[kind];
}

/* tests/fuzz — what the libFuzzer harnesses share.
 *
 * Each harness (fuzz_<target>.c) defines LLVMFuzzerTestOneInput for one parser
 * of outside input. The parsers read files, so a harness writes the input into
 * a private temporary directory, made once per process and removed at exit.
 * Everything here is deterministic: same input, same calls.
 */
#ifndef MPILM_FUZZ_COMMON_H
#define MPILM_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"

/* The per-process scratch directory ("$TMPDIR/mpilm-fuzz-XXXXXX"), removed at
 * exit unless MPILM_FUZZ_KEEP is set (tests/fuzz/make_corpus.sh keeps it). */
const char *fuzz_dir(void);

/* Writes data[0..len) to fuzz_dir()/name (truncating); returns its path in a
 * static buffer of this call site's choosing (path, cap). Aborts on I/O errors:
 * they are the machine's, not the parser's. */
void fuzz_write(const char *name, const void *data, size_t len, char *path, size_t cap);

/* Removes fuzz_dir()/name when present. */
void fuzz_remove(const char *name);

/* Makes the subdirectory fuzz_dir()/name when missing; its path into path. */
void fuzz_subdir(const char *name, char *path, size_t cap);

/* Small, fixed vocabularies written into dir, as a dataset carries them:
 * WordPiece (vocab.txt: the specials, ASCII letters and digits, a few words
 * and ## pieces) and byte-level BPE (encoder.json: the 256 byte tokens, a few
 * merged ones, <|endoftext|>; vocab.bpe: their merges). */
void fuzz_write_wordpiece_vocab(const char *dir);
void fuzz_write_bpe_vocab(const char *dir);

/* Loads one of the vocabularies above once per process (kept until exit). */
tokenizer *fuzz_tokenizer(tokenizer_kind kind);

/* Aborts (a finding for libFuzzer) with a message when cond fails. */
#define FUZZ_CHECK(cond, ...)                                                                                          \
    do {                                                                                                               \
        if (!(cond)) fuzz_fail(__FILE__, __LINE__, __VA_ARGS__);                                                       \
    } while (0)
_Noreturn void fuzz_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

/* data/tokenizer — byte-level BPE (GPT-2) and WordPiece (BERT) tokenizers.
 *
 * Owns: loading vocabularies (encoder.json/vocab.json + vocab.bpe/merges.txt,
 * or vocab.txt), encoding text to ids exactly as Hugging Face's tokenizers do
 * for the real GPT-2 and bert-base-uncased vocabularies, decoding, training a
 * vocabulary from a corpus, and the vocab fingerprint stored in shard headers.
 * Must not touch: shards, models, MPI.
 *
 * A tokenizer is not thread-safe (BPE keeps a cache of encoded words); use one
 * per thread.
 */
#ifndef MPILM_DATA_TOKENIZER_H
#define MPILM_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

typedef enum tokenizer_kind { TOKENIZER_BPE, TOKENIZER_WORDPIECE } tokenizer_kind;

/* Special tokens; tokenizer_special() returns -1 where a kind has none
 * (BPE has only TOKEN_EOT, WordPiece all but TOKEN_EOT). */
typedef enum special_token { TOKEN_PAD, TOKEN_UNK, TOKEN_CLS, TOKEN_SEP, TOKEN_MASK, TOKEN_EOT } special_token;

typedef struct tokenizer tokenizer;

/* Which kind the vocabulary files in dir are (vocab.txt → WordPiece,
 * encoder.json or vocab.json → BPE). */
status_t tokenizer_detect(const char *dir, tokenizer_kind *kind);
status_t tokenizer_load(const char *dir, tokenizer_kind kind, tokenizer **out);
void tokenizer_free(tokenizer *t);

tokenizer_kind tokenizer_get_kind(const tokenizer *t);
uint32_t tokenizer_vocab_size(const tokenizer *t);
int32_t tokenizer_special(const tokenizer *t, special_token which);
/* WordPiece only (no effect on BPE): lowercasing and accent stripping (NFD,
 * then nonspacing marks removed), as BERT's do_lower_case. Loading turns both
 * on for an uncased vocabulary (no token outside [brackets] holds an ASCII
 * capital, as bert-base-uncased) and off otherwise (bert-base-cased). */
void tokenizer_set_case(tokenizer *t, int lowercase, int strip_accents);
/* The WordPiece case handling in force (0, 0 for BPE), as an export
 * describes it to Hugging Face (BertNormalizer, do_lower_case). */
void tokenizer_get_case(const tokenizer *t, int *lowercase, int *strip_accents);
/* XXH3-64 over the vocabulary files' bytes, in a fixed order. */
uint64_t tokenizer_fingerprint(const tokenizer *t);
/* The token string of id (BPE: in its byte-to-unicode form), or NULL. */
const char *tokenizer_token(const tokenizer *t, uint32_t id);

/* Encodes text[0..len) (one line, no trailing newline) and appends the ids to
 * the growable array *ids (length *n, capacity *cap; realloc'd as needed). */
status_t tokenizer_encode(tokenizer *t, const char *text, size_t len, uint32_t **ids, size_t *n, size_t *cap);

/* Decodes ids to text, appended to the growable byte array *out. */
status_t tokenizer_decode(const tokenizer *t, const uint32_t *ids, size_t n_ids, char **out, size_t *n, size_t *cap);

/* Writes the vocabulary files into dir (as a dataset carries them). */
status_t tokenizer_save(const tokenizer *t, const char *dir);

/* Trains a vocabulary of vocab_size tokens (specials included) from raw text
 * files and writes its files into out_dir. */
status_t tokenizer_train(tokenizer_kind kind, const char *const *files, int n_files, uint32_t vocab_size,
                         const char *out_dir);

#endif

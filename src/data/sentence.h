/* data/sentence — the rule-based sentence splitter of prep --split-sentences.
 *
 * A sentence ends after a run of terminators (. ! ?) and the closing quotes
 * and brackets right after it (" ' ) ] } and the UTF-8 ” ’ »), when that is
 * followed by a space or tab, or is the end of the text. It does not end at a
 * single '.' after
 *   - an abbreviation of SENTENCE_ABBREVIATIONS (case-insensitive, after
 *     opening quotes and brackets are removed from the word), e.g. "Dr." "etc.";
 *   - initials and dotted letters: a word of single letters joined by '.',
 *     e.g. "J." "U.S." "e.g." "i.e.";
 * and never inside a token without following whitespace ("3.14", "a.m.x").
 * The whitespace between sentences belongs to neither.
 * Owns: only that rule. Must not touch: anything else (pure functions).
 */
#ifndef MPILM_DATA_SENTENCE_H
#define MPILM_DATA_SENTENCE_H

#include <stddef.h>

#define SENTENCE_ABBREVIATIONS                                                                                  \
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "cf", "al", "inc", "ltd", "co", "corp", "mt", \
        "fig", "gen", "col", "lt", "sgt", "capt", "rev", "hon", "esp", "approx", "dept", "est", "jan", "feb",    \
        "aug", "sept", "oct", "nov", "dec"

/* Length of the first sentence of s[0..n) (at least 1 when n > 0; n when
 * the text has no further boundary), without the whitespace after it. */
size_t sentence_length(const char *s, size_t n);

/* Length of the spaces and tabs at the start of s[0..n). */
size_t sentence_space(const char *s, size_t n);

#endif

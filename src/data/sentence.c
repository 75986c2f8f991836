/* data/sentence: the rule of sentence.h. */
#include "sentence.h"

#include <string.h>

static const char *const abbreviations[] = {SENTENCE_ABBREVIATIONS};

static int is_space(char c) { return c == ' ' || c == '\t'; }
static int is_terminator(char c) { return c == '.' || c == '!' || c == '?'; }
static int is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* Bytes of the closing quote or bracket at s[0..n), or 0. */
static size_t closer(const char *s, size_t n)
{
    if (n >= 1 && strchr("\"')]}", s[0]) && s[0]) return 1;
    if (n >= 3 && (unsigned char)s[0] == 0xE2 && (unsigned char)s[1] == 0x80 &&
        ((unsigned char)s[2] == 0x9D || (unsigned char)s[2] == 0x99))
        return 3;
    if (n >= 2 && (unsigned char)s[0] == 0xC2 && (unsigned char)s[1] == 0xBB) return 2;
    return 0;
}

/* "J", "U.S", "e.g": single letters joined by '.'. */
static int dotted_letters(const char *w, size_t n)
{
    if (n == 0 || n % 2 == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (i % 2 == 0 ? !is_letter(w[i]) : w[i] != '.') return 0;
    return 1;
}

static int abbreviation(const char *w, size_t n)
{
    for (size_t k = 0; k < sizeof abbreviations / sizeof abbreviations[0]; k++)
        if (strlen(abbreviations[k]) == n && strncasecmp(w, abbreviations[k], n) == 0) return 1;
    return 0;
}

/* 1 when the single '.' at s[dot] ends a word that keeps the sentence going. */
static int keeps_going(const char *s, size_t dot)
{
    size_t b = dot;
    while (b > 0 && !is_space(s[b - 1])) b--;
    while (b < dot && strchr("\"'([{", s[b])) b++;
    return dotted_letters(s + b, dot - b) || abbreviation(s + b, dot - b);
}

size_t sentence_length(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_terminator(s[i])) continue;
        size_t j = i;
        while (j < n && is_terminator(s[j])) j++;
        for (size_t c; j < n && (c = closer(s + j, n - j)) > 0;) j += c;
        if (j < n && !is_space(s[j])) {
            i = j - 1;
            continue;
        }
        if (!(j == i + 1 && s[i] == '.' && keeps_going(s, i))) return j;
        i = j - 1;
    }
    return n;
}

size_t sentence_space(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && is_space(s[i])) i++;
    return i;
}

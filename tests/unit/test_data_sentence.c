/* Tests of data/sentence (prep --split-sentences): each rule of sentence.h,
 * its exceptions (abbreviations, initials, dotted letters, numbers), closing
 * quotes and brackets, and degenerate input. */
#include <criterion/criterion.h>
#include <string.h>

#include "data/sentence.h"

/* The sentences of s joined by '|'. */
static void split(const char *s, char *out, size_t cap)
{
    size_t n = strlen(s), o = 0;
    for (size_t i = sentence_space(s, n); i < n;) {
        size_t k = sentence_length(s + i, n - i);
        cr_assert(k >= 1 && k <= n - i);
        if (o) out[o++] = '|';
        cr_assert_lt(o + k, cap);
        memcpy(out + o, s + i, k), o += k;
        i += k;
        i += sentence_space(s + i, n - i);
    }
    out[o] = '\0';
}

static void expect(const char *in, const char *want)
{
    char got[1024];
    split(in, got, sizeof got);
    cr_expect_str_eq(got, want, "split of \"%s\"", in);
}

Test(sentence, splits_after_terminators_followed_by_whitespace)
{
    expect("It rained. It poured!  Did it?\tYes.", "It rained.|It poured!|Did it?|Yes.");
    expect("Wait... what?! Fine", "Wait...|what?!|Fine");
}

Test(sentence, keeps_closing_quotes_and_brackets_with_the_sentence)
{
    expect("He said \"Go.\" Then left. (Quite.) Next", "He said \"Go.\"|Then left.|(Quite.)|Next");
    expect("\xe2\x80\x9cOh.\xe2\x80\x9d She \xc2\xabnon.\xc2\xbb Ja", "\xe2\x80\x9cOh.\xe2\x80\x9d|She \xc2\xabnon.\xc2\xbb|Ja");
}

Test(sentence, does_not_split_after_abbreviations_initials_or_inside_numbers)
{
    expect("Dr. Smith and Mrs. Jones met at St. Paul etc. today. Then", "Dr. Smith and Mrs. Jones met at St. Paul etc. today.|Then");
    expect("J. R. R. Tolkien wrote it. Yes", "J. R. R. Tolkien wrote it.|Yes");
    expect("The U.S. team won, e.g. twice, i.e. often. Next", "The U.S. team won, e.g. twice, i.e. often.|Next");
    expect("Pi is 3.14 or so. It is 1990. Then", "Pi is 3.14 or so.|It is 1990.|Then");
    expect("(Dr. Who) vs. them. End", "(Dr. Who) vs. them.|End");
    expect("DR. NO. MR. X", "DR. NO.|MR. X");
}

Test(sentence, degenerate_input)
{
    expect("", "");
    expect("   ", "");
    expect(".", ".");
    expect("no terminator at all", "no terminator at all");
    expect(". . !", ".|.|!");
    cr_assert_eq(sentence_length("a.b", 3), 3);
}

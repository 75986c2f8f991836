#include "stream_fixture.h"

#include <criterion/criterion.h>
#include <string.h>

#include "base/status.h"

void stream_fixture_dataset(char *dir, size_t len, const char *name, const synth_spec *spec)
{
    cr_assert_eq(synth_tmpdir(dir, len, name), 0);
    cr_assert_eq(synth_dataset_make(dir, spec), 0, "synthetic dataset: %s", st_message());
}

stream *stream_fixture_open(stream_spec spec)
{
    stream *s;
    status_t st = stream_open(&s, &spec);
    cr_assert_eq(st, ST_OK, "stream_open: %s", st_message());
    return s;
}

void stream_fixture_next(stream *s, batch *b)
{
    status_t st = stream_next(s, b);
    cr_assert_eq(st, ST_OK, "stream_next: %s", st_message());
}

int stream_fixture_rows_equal(const batch *a, int ra, const batch *b, int rb)
{
    size_t T = (size_t)a->T, oa = (size_t)ra * T, ob = (size_t)rb * T, n = T * sizeof(int32_t);
    return !memcmp(a->input_ids + oa, b->input_ids + ob, n) && !memcmp(a->labels + oa, b->labels + ob, n) &&
           !memcmp(a->token_type_ids + oa, b->token_type_ids + ob, n) &&
           !memcmp(a->attention_mask + oa, b->attention_mask + ob, n) &&
           a->next_sentence_label[ra] == b->next_sentence_label[rb];
}

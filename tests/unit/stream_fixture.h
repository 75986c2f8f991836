/* Shared by the data/stream tests (test_data_stream.c, test_data_stream_blend.c):
 * a synthetic dataset in a fresh temporary directory, and streams opened,
 * advanced and compared under Criterion assertions (a failure ends the test
 * with stream's message). Linked only into those tests (Makefile). */
#ifndef MPILM_TESTS_STREAM_FIXTURE_H
#define MPILM_TESTS_STREAM_FIXTURE_H

#include <stddef.h>

#include "../common/synth_dataset.h"
#include "data/batch.h"
#include "data/stream.h"

/* Makes a temporary directory named after `name` in dir (len bytes) and the
 * dataset of spec in it; remove it with synth_rmdir(dir). */
void stream_fixture_dataset(char *dir, size_t len, const char *name, const synth_spec *spec);

stream *stream_fixture_open(stream_spec spec);
void stream_fixture_next(stream *s, batch *b);

/* Row ra of a and row rb of b hold the same ids, labels, token types,
 * attention mask and NSP label. */
int stream_fixture_rows_equal(const batch *a, int ra, const batch *b, int rb);

#endif

/* data/input — an input text file as a stream of bytes, whatever its
 * compression: plain, zstd (magic 28 B5 2F FD) or gzip (magic 1F 8B), told by
 * the first bytes, not by the name. Compressed files are decompressed while
 * they are read (libzstd's streaming API, zlib's inflate): memory is a fixed
 * buffer plus the decoder's window, no temporary file. Concatenated frames
 * (zstd) and members (gzip) are read one after the other.
 * Owns: opening, decompressing, reporting corrupt or truncated compressed data
 * with the file and the compressed byte offset.
 * Must not touch: what the bytes mean (prep, tokenizer training).
 */
#ifndef MPILM_DATA_INPUT_H
#define MPILM_DATA_INPUT_H

#include <stdint.h>
#include <stdio.h>

#include "base/status.h"

typedef enum input_compression { INPUT_PLAIN = 0, INPUT_ZSTD = 1, INPUT_GZIP = 2 } input_compression;

typedef struct input_file input_file;

/* The compression of path from its first bytes. */
status_t input_detect(const char *path, input_compression *out);
const char *input_compression_name(input_compression c); /* "plain", "zstd", "gzip" */

/* Opens path for reading; input_stream gives a FILE* of the (decompressed)
 * bytes for fread/getline. */
status_t input_open(input_file **out, const char *path);
FILE *input_stream(input_file *in);
input_compression input_kind(const input_file *in);
/* After reading stopped (EOF or a read error): ST_OK when the whole input was
 * read cleanly, else the error, e.g. "FILE: truncated zstd data: the input ends
 * at compressed byte N inside a frame; ...". */
status_t input_check(input_file *in);
void input_close(input_file *in);

#endif

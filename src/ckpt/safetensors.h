/* ckpt/safetensors — Hugging Face safetensors files, read and written in C.
 *
 * Owns: the safetensors container (docs/formats.md, "safetensors"): an 8-byte
 * little-endian header length N, N bytes of JSON naming every tensor with its
 * dtype, shape and byte range in the data area, optional string metadata,
 * then the data area. Reading validates the whole header before any tensor is
 * used; writing goes through the atomic file protocol of base/fileio.
 * Must not touch: model, optimizer or MPI state — this module knows tensors
 * only as names, shapes and bytes; ckpt/ callers map them onto the model.
 *
 * Tensor data in a file is little-endian and, as the format allows, need not
 * be aligned: safet_data() may return an address unsuitable for a direct
 * float load; safet_read_f32() copies and converts safely.
 */
#ifndef MPILM_CKPT_SAFETENSORS_H
#define MPILM_CKPT_SAFETENSORS_H

#include <stdint.h>

#include "base/status.h"

#define SAFET_MAX_DIMS 8

/* The format's dtypes. mpilm computes with the float ones (safet_read_f32);
 * the others are read and written as bytes, so a file holding, say, a BOOL
 * mask or an I8 table beside the weights still opens. */
typedef enum safet_dtype {
    SAFET_F32,
    SAFET_F64,
    SAFET_I32,
    SAFET_I64,
    SAFET_F16,
    SAFET_BF16,
    SAFET_U8,
    SAFET_BOOL,
    SAFET_I8,
    SAFET_I16,
    SAFET_U16,
    SAFET_U32,
    SAFET_U64,
    SAFET_F8_E4M3,
    SAFET_F8_E5M2,
} safet_dtype;

typedef struct safet_tensor {
    const char *name;
    safet_dtype dtype;
    int ndim;                        /* 0 for a scalar (one element) */
    int64_t shape[SAFET_MAX_DIMS];
    uint64_t begin, end;             /* byte offsets in the data area; end - begin = numel * size */
} safet_tensor;

/* An open file: header parsed and validated, data mapped read-only. */
typedef struct safet_file safet_file;

/* Size in bytes of one element and the format's name ("F32", ...). */
int safet_dtype_size(safet_dtype dt);
const char *safet_dtype_name(safet_dtype dt);

/* Number of elements (product of the shape; 1 for a scalar). */
int64_t safet_numel(const safet_tensor *t);

/* Opens path: reads the header, validates that it is UTF-8 JSON beginning with
 * "{", that every tensor has a known dtype, a shape of at most SAFET_MAX_DIMS
 * non-negative dims, offsets whose length matches the shape, that the tensors
 * cover the data area exactly (no hole, no overlap, nothing after the last)
 * and no name is given twice; maps the data. Errors (ST_IO, ST_FORMAT) name
 * the file and byte offset. */
status_t safet_open(safet_file **out, const char *path);
void safet_close(safet_file *f);

/* Tensors in data-area order (ascending begin), i in [0, safet_count). */
int safet_count(const safet_file *f);
const safet_tensor *safet_at(const safet_file *f, int i);
const safet_tensor *safet_find(const safet_file *f, const char *name);   /* NULL if absent */
const void *safet_data(const safet_file *f, const safet_tensor *t);
const char *safet_path(const safet_file *f);

/* Value of a "__metadata__" entry; NULL if absent. */
const char *safet_metadata(const safet_file *f, const char *key);
/* The metadata keys in header order, i in [0, safet_metadata_count). */
int safet_metadata_count(const safet_file *f);
const char *safet_metadata_key(const safet_file *f, int i);

/* Reads tensor `name` as float32 into dst (count elements), converting from
 * F32, F64, F16 or BF16. Fails naming the file when the tensor is absent, has
 * an integer dtype, or holds a different number of elements than count. */
status_t safet_read_f32(const safet_file *f, const char *name, float *dst, int64_t count);

/* Writer: tensors are collected (names and shapes copied, data pointers kept,
 * not copied, until safet_writer_write) and written in the order added.
 * safet_writer_add takes the bytes of any dtype as they are to be stored. */
typedef struct safet_writer {
    struct safet_entry *entries;
    int count, cap;
    struct safet_meta *meta;
    int meta_count, meta_cap;
} safet_writer;

status_t safet_writer_init(safet_writer *w);
status_t safet_writer_add(safet_writer *w, const char *name, safet_dtype dt, int ndim,
                          const int64_t *shape, const void *data);
/* Adds a float32 tensor to be stored as dt: SAFET_F32 (the bytes as they are)
 * or SAFET_BF16 (each value rounded to nearest even at write time, as
 * PyTorch's .bfloat16(): infinities stay infinite, NaN stays NaN, values
 * beyond bf16's largest finite round to infinity). Other dtypes are refused
 * (ST_ERROR). The data pointer is kept, not copied, until safet_writer_write;
 * the conversion uses a bounded buffer, not a copy of the tensor. */
status_t safet_writer_add_f32(safet_writer *w, const char *name, safet_dtype dt, int ndim, const int64_t *shape,
                              const float *data);
status_t safet_writer_meta(safet_writer *w, const char *key, const char *value);
/* Writes path atomically (temp file, fsync, rename): header padded with spaces
 * so the data area starts at a multiple of 8 bytes, then each tensor's bytes. */
status_t safet_writer_write(const safet_writer *w, const char *path);
void safet_writer_free(safet_writer *w);

#endif

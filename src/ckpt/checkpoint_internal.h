/* ckpt/checkpoint internals: the manifest as JSON, shared by the writer and
 * the reader. Must not touch: MPI. */
#ifndef MPILM_CKPT_CHECKPOINT_INTERNAL_H
#define MPILM_CKPT_CHECKPOINT_INTERNAL_H

#include <cjson/cJSON.h>

#include "ckpt/checkpoint.h"

extern const char *const ckpt_section_names[CKPT_SECTIONS];

/* The whole manifest as a cJSON tree (caller deletes it). */
status_t ckpt_manifest_build(const ckpt_meta *meta, const ckpt_tokenizer *tok, const ckpt_file *files,
                             int n_files, cJSON **out);

/* Reads the fields of a parsed manifest; path names the file in messages. */
status_t ckpt_manifest_parse_meta(const char *path, const cJSON *root, ckpt_meta *meta);
/* The optional "run_id" (0 when absent); malformed is ST_FORMAT. */
status_t ckpt_manifest_parse_run_id(const char *path, const cJSON *root, uint64_t *run_id);
status_t ckpt_manifest_parse_files(const char *path, const cJSON *root, ckpt_file **files, int *n_files);
/* Checks the manifest's tensor table against model_full_table of its model;
 * returns that table (caller frees). */
status_t ckpt_manifest_check_tensors(const char *path, const cJSON *root, const model_config *c,
                                     model_tensor **table, int *n);

/* Removes path and everything under it (symbolic links as links); nothing
 * when it does not exist. */
void ckpt_remove_tree(const char *path);

/* RUN_DIR/link (latest or best) -> name, atomically: a new link .link.tmp
 * renamed over it, RUN_DIR fsynced. */
status_t ckpt_replace_link(const char *run_dir, const char *link, const char *name);

/* Copies the vocabulary files of src (a dataset or vocab directory) into dst
 * and describes them. */
status_t ckpt_copy_vocab(const char *src, const char *dst, ckpt_tokenizer *tok);

#endif

/* base/config — INI configuration with a schema, overrides and typed getters.
 *
 * Owns: parsing "key = value" files with [sections] and ';' or '#' comments,
 * "--set section.key=value" overrides, validation against a schema (type,
 * range, choices), and printing the effective configuration.
 * Errors name the file and line (or the --set argument) and the valid choices:
 *     launch/x.ini:12: unknown key 'n_layers' in [model] (valid: n_layer, d_model, ...)
 * Must not touch: the meaning of keys — the schema is supplied by the caller
 * (cli/ for mpilm), so base/ knows nothing of models or training.
 */
#ifndef MPILM_BASE_CONFIG_H
#define MPILM_BASE_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "status.h"

typedef enum config_type { CFG_INT, CFG_FLOAT, CFG_BOOL, CFG_STRING, CFG_ENUM } config_type;

/* One key of the schema. For CFG_ENUM, choices is "a|b|c". For CFG_INT,
 * choices "auto" also admits the word auto (read back as -1), and min/max
 * bound the value (ignored when min > max). */
typedef struct config_key {
    const char *section;
    const char *key;
    config_type type;
    const char *default_value;
    const char *choices;
    double min, max;
    const char *help;
} config_key;

typedef struct config config;

config *config_new(const config_key *schema, int n_keys);
void config_free(config *c);

/* Applies a whole INI file. A missing file, a NUL byte, a syntax error, an
 * unknown section or key, a duplicated section or key, or a value of the wrong
 * type is an ST_CONFIG failure naming path:line. */
status_t config_load_file(config *c, const char *path);

/* Applies "section.key=value" (from --set); origin names it in errors. */
status_t config_set_arg(config *c, const char *assignment);

/* Sets one value, validated; origin is "file:line" or "--set" for messages. */
status_t config_set(config *c, const char *section, const char *key, const char *value, const char *origin);

/* Typed getters. "name" is "section.key"; a name not in the schema is a
 * programming error and aborts. Values were validated when set. */
int64_t config_int(const config *c, const char *name);
double config_float(const config *c, const char *name);
int config_bool(const config *c, const char *name);
const char *config_str(const config *c, const char *name);
/* The value of any key as written (after defaults and overrides); "" for a key not in the schema. */
const char *config_text(const config *c, const char *name);
/* Where the value came from: "default", "FILE:LINE" or "--set". */
const char *config_origin(const config *c, const char *name);

/* Writes the effective configuration as an INI file that loads back to the
 * same values; with_origin adds "; from FILE:LINE" comments. */
void config_print(const config *c, FILE *out, int with_origin);

/* How many keys were given (by a file or --set) rather than defaulted. */
int config_n_given(const config *c);

#endif

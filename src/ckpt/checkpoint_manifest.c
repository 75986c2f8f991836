/* ckpt/manifest — manifest.json of a checkpoint, built and parsed
 * (docs/formats.md, "Checkpoint manifest"). */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "ckpt/checkpoint_internal.h"

const char *const ckpt_section_names[CKPT_SECTIONS] = {"params", "exp_avg", "exp_avg_sq"};

static cJSON *hex_item(uint64_t v) { return dataset_json_hex(v); }

/* Every field of the model's family (model_fields), in the table's order. */
static cJSON *model_json(const model_config *c)
{
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < MODEL_N_FIELDS; i++) {
        const model_field *f = &model_fields[i];
        if (!model_field_of(f, c->family)) continue;
        if (f->type == MODEL_FIELD_RECOMPUTE && (c->recompute == RECOMPUTE_NONE || c->recompute == RECOMPUTE_FULL))
            /* a boolean, as before ffn and attention */
            cJSON_AddBoolToObject(o, f->key.key, c->recompute == RECOMPUTE_FULL);
        else if (model_field_name(f, c))
            cJSON_AddStringToObject(o, f->key.key, model_field_name(f, c));
        else if (f->type == MODEL_FIELD_BOOL)
            cJSON_AddBoolToObject(o, f->key.key, model_field_get(f, c) != 0);
        else if (f->type == MODEL_FIELD_FLOAT)
            cJSON_AddNumberToObject(o, f->key.key, model_float_decimal((float)model_field_get(f, c)));
        else
            cJSON_AddNumberToObject(o, f->key.key, model_field_get(f, c));
    }
    return o;
}

/* config_print's "[section]" / "key = value" lines as {"section.key": "value"}. */
static cJSON *config_json(const char *text)
{
    cJSON *o = cJSON_CreateObject();
    char section[64] = "";
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        int len = nl ? (int)(nl - line) : (int)strlen(line);
        const char *eq = memchr(line, '=', (size_t)len);
        if (len > 2 && line[0] == '[') {
            snprintf(section, sizeof section, "%.*s", len - 2, line + 1);
        } else if (eq && eq - line >= 2 && eq[-1] == ' ') {
            char key[160];
            snprintf(key, sizeof key, "%s.%.*s", section, (int)(eq - line - 1), line);
            int vlen = len - (int)(eq - line) - 1;
            char *value = malloc((size_t)vlen + 1);
            if (!value) break;
            snprintf(value, (size_t)vlen + 1, "%.*s", vlen, eq + 1);
            cJSON_AddStringToObject(o, key, value + (value[0] == ' '));
            free(value);
        }
        line = nl ? nl + 1 : NULL;
    }
    return o;
}

static cJSON *data_json(const ckpt_meta *m)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "source", m->random_data ? "random" : "dataset");
    cJSON_AddStringToObject(o, "path", m->data_path);
    cJSON_AddNumberToObject(o, "next_sample", (double)m->next_sample);
    if (m->random_data) return o;
    cJSON *c = cJSON_AddObjectToObject(o, "cursor");
    cJSON_AddNumberToObject(c, "epoch", (double)m->cursor.epoch);
    cJSON_AddNumberToObject(c, "sample", (double)m->cursor.sample);
    cJSON *extra = cJSON_AddArrayToObject(c, "extra");
    for (int i = 0; i < 6; i++) cJSON_AddItemToArray(extra, cJSON_CreateNumber((double)m->cursor.extra[i]));
    if (m->cursor.n_sources == 0) return o;
    cJSON *sources = cJSON_AddArrayToObject(c, "sources"); /* a blend: each dataset's position */
    for (int d = 0; d < m->cursor.n_sources; d++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "epoch", (double)m->cursor.source[d].epoch);
        cJSON_AddNumberToObject(p, "sample", (double)m->cursor.source[d].sample);
        cJSON_AddNumberToObject(p, "drawn", (double)m->cursor.source[d].drawn);
        cJSON_AddItemToArray(sources, p);
    }
    return o;
}

static status_t tensors_json(const model_config *c, cJSON *arr)
{
    model_tensor *table;
    int n;
    TRY(model_full_table(c, &table, &n));
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "name", table[i].name);
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < table[i].ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)table[i].shape[d]));
        cJSON_AddNumberToObject(t, "offset", (double)table[i].offset);
        cJSON_AddNumberToObject(t, "numel", (double)table[i].numel);
        cJSON_AddItemToArray(arr, t);
    }
    free(table);
    return ST_OK;
}

static cJSON *file_json(const ckpt_file *f)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", f->name);
    cJSON_AddNumberToObject(o, "rank", f->rank);
    cJSON_AddNumberToObject(o, "begin", (double)f->begin);
    cJSON_AddNumberToObject(o, "end", (double)f->end);
    cJSON *sections = cJSON_AddObjectToObject(o, "sections");
    for (int s = 0; s < CKPT_SECTIONS; s++) {
        cJSON *sec = cJSON_AddObjectToObject(sections, ckpt_section_names[s]);
        cJSON_AddNumberToObject(sec, "offset", (double)f->offset[s]);
        cJSON_AddNumberToObject(sec, "bytes", (double)f->bytes[s]);
        cJSON_AddItemToObject(sec, "xxh3", hex_item(f->hash[s]));
    }
    return o;
}

static cJSON *validation_json(const ckpt_validation *v)
{
    cJSON *o = cJSON_CreateObject();
    if (v->has_best && isfinite(v->best_val_loss)) cJSON_AddNumberToObject(o, "best_val_loss", v->best_val_loss);
    else cJSON_AddNullToObject(o, "best_val_loss");
    cJSON_AddNumberToObject(o, "best_step", (double)v->best_step);
    cJSON_AddNumberToObject(o, "evals_since_best", (double)v->evals_since_best);
    return o;
}

status_t ckpt_manifest_build(const ckpt_meta *meta, const ckpt_tokenizer *tok, const ckpt_file *files,
                             int n_files, cJSON **out)
{
    cJSON *m = cJSON_CreateObject();
    FAIL_IF(!m, ST_NOMEM, "checkpoint: out of memory building the manifest");
    cJSON_AddStringToObject(m, "format", CKPT_FORMAT);
    cJSON_AddNumberToObject(m, "version", CKPT_VERSION);
    cJSON_AddItemToObject(m, "model", model_json(&meta->model));
    cJSON_AddItemToObject(m, "train", config_json(meta->config_text));
    cJSON_AddNumberToObject(m, "step", (double)meta->step);
    cJSON_AddNumberToObject(m, "tokens_seen", (double)meta->tokens_seen);
    char seed[24];
    snprintf(seed, sizeof seed, "%" PRIu64, meta->seed);
    cJSON_AddStringToObject(m, "seed", seed);
    cJSON_AddNumberToObject(m, "lr", meta->lr);
    cJSON_AddNumberToObject(m, "elapsed_s", meta->elapsed_s);
    if (meta->run_id) cJSON_AddItemToObject(m, "run_id", hex_item(meta->run_id));
    cJSON_AddItemToObject(m, "data", data_json(meta));
    if (meta->validation.present) cJSON_AddItemToObject(m, "validation", validation_json(&meta->validation));
    cJSON *topo = cJSON_AddObjectToObject(m, "topology");
    cJSON_AddNumberToObject(topo, "world", meta->topo.world);
    cJSON_AddNumberToObject(topo, "pp", meta->topo.pp);
    cJSON_AddNumberToObject(topo, "dp", meta->topo.dp);
    cJSON_AddNumberToObject(topo, "tp", meta->topo.tp);
    cJSON_AddNumberToObject(topo, "zero", meta->topo.zero);
    status_t st = tensors_json(&meta->model, cJSON_AddArrayToObject(m, "tensors"));
    cJSON *arr = cJSON_AddArrayToObject(m, "files");
    for (int i = 0; i < n_files; i++) cJSON_AddItemToArray(arr, file_json(&files[i]));
    if (tok->present) {
        cJSON *t = cJSON_AddObjectToObject(m, "tokenizer");
        cJSON_AddStringToObject(t, "kind", tok->kind);
        cJSON_AddItemToObject(t, "fingerprint", hex_item(tok->fingerprint));
        cJSON_AddNumberToObject(t, "vocab_size", tok->vocab_size);
    }
    if (st != ST_OK) {
        cJSON_Delete(m);
        return st;
    }
    *out = m;
    return ST_OK;
}

/* ---- parsing ---- */

typedef struct json_ctx {
    const char *path;
    const cJSON *obj;
    const char *where; /* "model", "files[2]", ... */
} json_ctx;

static status_t get_num(json_ctx c, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c.obj, key);
    FAIL_IF(!cJSON_IsNumber(v), ST_FORMAT,
            "%s: %s.%s is missing or not a number; the checkpoint is damaged, use another one", c.path, c.where, key);
    *out = v->valuedouble;
    return ST_OK;
}

/* Counts, offsets and steps: a double in [0, 2^63), so that it converts to both uint64_t and int64_t. */
static int json_count(double d) { return d >= 0 && d < 0x1p63; }

static status_t get_u64(json_ctx c, const char *key, uint64_t *out)
{
    double d = 0;
    TRY(get_num(c, key, &d));
    FAIL_IF(!json_count(d), ST_FORMAT, "%s: %s.%s = %g is out of range (expected 0 to 2^63); the checkpoint is damaged",
            c.path, c.where, key, d);
    *out = (uint64_t)d;
    return ST_OK;
}

static status_t get_int(json_ctx c, const char *key, int *out)
{
    uint64_t v = 0;
    TRY(get_u64(c, key, &v));
    FAIL_IF(v > INT_MAX, ST_FORMAT, "%s: %s.%s = %llu is out of range (expected 0 to %d); the checkpoint is damaged",
            c.path, c.where, key, (unsigned long long)v, INT_MAX);
    *out = (int)v;
    return ST_OK;
}

static status_t get_str(json_ctx c, const char *key, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c.obj, key);
    FAIL_IF(!cJSON_IsString(v), ST_FORMAT,
            "%s: %s.%s is missing or not a string; the checkpoint is damaged, use another one", c.path, c.where, key);
    *out = v->valuestring;
    return ST_OK;
}

static status_t get_obj(json_ctx c, const char *key, json_ctx *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c.obj, key);
    FAIL_IF(!cJSON_IsObject(v), ST_FORMAT, "%s: \"%s\" is missing or not an object; the checkpoint is damaged",
            c.path, key);
    *out = (json_ctx){c.path, v, key};
    return ST_OK;
}

/* One field of model (model_fields): a name, a boolean or a number
 * (recompute: a boolean, or the name "ffn", "attention" or "ffn+attention"). */
static status_t parse_model_field(json_ctx c, const model_field *f, model_config *m)
{
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(c.obj, f->key.key);
    if (f->type == MODEL_FIELD_RECOMPUTE && cJSON_IsBool(b)) {
        m->recompute = cJSON_IsTrue(b) ? RECOMPUTE_FULL : RECOMPUTE_NONE;
    } else if (f->type == MODEL_FIELD_BOOL) {
        FAIL_IF(!cJSON_IsBool(b), ST_FORMAT, "%s: model.%s is missing or not a boolean; the checkpoint is damaged",
                c.path, f->key.key);
        model_field_set(f, m, cJSON_IsTrue(b));
    } else if (f->type == MODEL_FIELD_INT) {
        int v = 0;
        TRY(get_int(c, f->key.key, &v));
        model_field_set(f, m, v);
    } else if (f->type == MODEL_FIELD_FLOAT) {
        double v = 0;
        TRY(get_num(c, f->key.key, &v));
        model_field_set(f, m, v);
    } else {
        const char *name = "";
        TRY(get_str(c, f->key.key, &name));
        int family = f->type == MODEL_FIELD_FAMILY;
        FAIL_IF(model_field_set_name(f, m, name) != 0, ST_FORMAT,
                "%s: model.%s = \"%s\" (expected %s%s); the checkpoint is damaged", c.path, f->key.key, name,
                family ? "gpt, bert or llama" : "a value mpilm writes for model.family = ",
                family ? "" : model_family_name(m->family));
    }
    return ST_OK;
}

static status_t parse_model(json_ctx c, model_config *m)
{
    memset(m, 0, sizeof *m);
    for (int i = 0; i < MODEL_N_FIELDS; i++) /* family first: it says which fields follow */
        if (model_field_of(&model_fields[i], m->family)) TRY(parse_model_field(c, &model_fields[i], m));
    status_t st = model_config_check(m);
    return st == ST_OK ? ST_OK : st_context(ST_FORMAT, "%s: model: ", c.path);
}

/* data.cursor.sources: a blend's datasets' positions (absent for one dataset). */
static status_t parse_sources(json_ctx cur, ckpt_meta *m)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(cur.obj, "sources");
    if (!arr) return ST_OK;
    int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
    FAIL_IF(n < 2 || n > STREAM_BLEND_MAX, ST_FORMAT, "%s: data.cursor.sources is not an array of 2 to %d positions; "
            "the checkpoint is damaged", cur.path, STREAM_BLEND_MAX);
    json_ctx p = cur;
    p.where = "data.cursor.sources[]";
    int d = 0;
    for (const cJSON *e = arr->child; e; e = e->next, d++) {
        p.obj = e;
        TRY(get_u64(p, "epoch", &m->cursor.source[d].epoch));
        TRY(get_u64(p, "sample", &m->cursor.source[d].sample));
        TRY(get_u64(p, "drawn", &m->cursor.source[d].drawn));
    }
    m->cursor.n_sources = n;
    return ST_OK;
}

static status_t parse_data(json_ctx c, ckpt_meta *m)
{
    const char *source = "", *path = "";
    TRY(get_str(c, "source", &source));
    TRY(get_str(c, "path", &path));
    m->random_data = strcmp(source, "random") == 0;
    snprintf(m->data_path, sizeof m->data_path, "%s", path);
    TRY(get_u64(c, "next_sample", &m->next_sample));
    if (m->random_data) return ST_OK;
    json_ctx cur = c;
    TRY(get_obj(c, "cursor", &cur));
    cur.where = "data.cursor";
    TRY(get_u64(cur, "epoch", &m->cursor.epoch));
    TRY(get_u64(cur, "sample", &m->cursor.sample));
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(cur.obj, "extra");
    FAIL_IF(!cJSON_IsArray(extra) || cJSON_GetArraySize(extra) != 6, ST_FORMAT,
            "%s: data.cursor.extra is missing or not 6 numbers; the checkpoint is damaged", c.path);
    for (int i = 0; i < 6; i++) {
        const cJSON *v = cJSON_GetArrayItem(extra, i);
        FAIL_IF(!cJSON_IsNumber(v) || !json_count(v->valuedouble), ST_FORMAT,
                "%s: data.cursor.extra[%d] is not a number from 0 to 2^63; the checkpoint is damaged", c.path, i);
        m->cursor.extra[i] = (uint64_t)v->valuedouble;
    }
    return parse_sources(cur, m);
}

static status_t parse_topology(json_ctx c, ckpt_topology *t)
{
    TRY(get_int(c, "world", &t->world));
    TRY(get_int(c, "pp", &t->pp));
    TRY(get_int(c, "dp", &t->dp));
    TRY(get_int(c, "tp", &t->tp));
    return get_int(c, "zero", &t->zero);
}

status_t ckpt_manifest_parse_run_id(const char *path, const cJSON *root, uint64_t *run_id)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "run_id");
    *run_id = 0;
    if (!v) return ST_OK; /* written by import or before run ids */
    FAIL_IF(!cJSON_IsString(v) || !hash_from_hex(v->valuestring, run_id) || *run_id == 0, ST_FORMAT,
            "%s: run_id is not 16 hex digits other than 0; the checkpoint is damaged, use another one", path);
    return ST_OK;
}

/* The optional "tokenizer" object: kind, fingerprint, vocab_size (absent in
 * manifests written before it was recorded). */
static status_t parse_tokenizer(json_ctx c, ckpt_tokenizer *t)
{
    if (!cJSON_GetObjectItemCaseSensitive(c.obj, "tokenizer")) return ST_OK;
    json_ctx sub = c;
    const char *kind = "", *hex = "";
    TRY(get_obj(c, "tokenizer", &sub));
    TRY(get_str(sub, "kind", &kind));
    TRY(get_str(sub, "fingerprint", &hex));
    FAIL_IF(!hash_from_hex(hex, &t->fingerprint), ST_FORMAT,
            "%s: tokenizer.fingerprint \"%s\" is not 16 hex digits; the checkpoint is damaged", c.path, hex);
    snprintf(t->kind, sizeof t->kind, "%s", kind);
    uint64_t size = 0;
    if (cJSON_GetObjectItemCaseSensitive(sub.obj, "vocab_size")) TRY(get_u64(sub, "vocab_size", &size));
    t->vocab_size = (uint32_t)size;
    t->present = 1;
    return ST_OK;
}

/* Optional (older checkpoints have none): absent = no evaluation yet. */
static status_t parse_validation(json_ctx c, ckpt_validation *v)
{
    memset(v, 0, sizeof *v);
    if (!cJSON_GetObjectItemCaseSensitive(c.obj, "validation")) return ST_OK;
    json_ctx sub = c;
    uint64_t step = 0, since = 0;
    TRY(get_obj(c, "validation", &sub));
    TRY(get_u64(sub, "best_step", &step));
    TRY(get_u64(sub, "evals_since_best", &since));
    const cJSON *best = cJSON_GetObjectItemCaseSensitive(sub.obj, "best_val_loss");
    FAIL_IF(!cJSON_IsNull(best) && !cJSON_IsNumber(best), ST_FORMAT, "%s: validation.best_val_loss is missing or "
            "not a number or null; the checkpoint is damaged, use another one", c.path);
    v->present = 1;
    v->has_best = cJSON_IsNumber(best);
    v->best_val_loss = v->has_best ? best->valuedouble : 0.0;
    v->best_step = (int64_t)step;
    v->evals_since_best = (int64_t)since;
    return ST_OK;
}

status_t ckpt_manifest_parse_meta(const char *path, const cJSON *root, ckpt_meta *meta)
{
    json_ctx c = {path, root, "manifest"}, sub = c;
    const char *format = "", *seed = "";
    double version = 0;
    memset(meta, 0, sizeof *meta);
    TRY(get_str(c, "format", &format));
    FAIL_IF(strcmp(format, CKPT_FORMAT) != 0, ST_FORMAT, "%s: format is \"%s\" (expected \"%s\"); not a checkpoint",
            path, format, CKPT_FORMAT);
    TRY(get_num(c, "version", &version));
    FAIL_IF(version > CKPT_VERSION || version < 1, ST_FORMAT,
            "%s: checkpoint format version %g is not supported (this mpilm reads version %d); use the mpilm that "
            "wrote it or a newer one", path, version, CKPT_VERSION);
    TRY(get_obj(c, "model", &sub));
    TRY(parse_model(sub, &meta->model));
    uint64_t step = 0, tokens = 0;
    TRY(get_u64(c, "step", &step));
    TRY(get_u64(c, "tokens_seen", &tokens));
    meta->step = (int64_t)step, meta->tokens_seen = (int64_t)tokens;
    TRY(get_str(c, "seed", &seed));
    meta->seed = strtoull(seed, NULL, 10);
    TRY(get_num(c, "lr", &meta->lr));
    if (cJSON_GetObjectItemCaseSensitive(root, "elapsed_s")) { /* absent before it was recorded: 0 */
        TRY(get_num(c, "elapsed_s", &meta->elapsed_s));
        FAIL_IF(!(meta->elapsed_s >= 0 && meta->elapsed_s < 1e15), ST_FORMAT,
                "%s: elapsed_s = %g is not a number of seconds from 0 to 1e15; the checkpoint is damaged", path,
                meta->elapsed_s);
    }
    TRY(ckpt_manifest_parse_run_id(path, root, &meta->run_id));
    TRY(get_obj(c, "data", &sub));
    TRY(parse_data(sub, meta));
    TRY(get_obj(c, "topology", &sub));
    TRY(parse_topology(sub, &meta->topo));
    TRY(parse_validation(c, &meta->validation));
    return parse_tokenizer(c, &meta->tokenizer);
}

static status_t parse_file(json_ctx c, ckpt_file *f)
{
    const char *name = "";
    TRY(get_str(c, "name", &name));
    FAIL_IF(strlen(name) >= sizeof f->name || strchr(name, '/'), ST_FORMAT,
            "%s: %s.name \"%s\" is not a shard file name (expected shard-NNNNN.bin)", c.path, c.where, name);
    snprintf(f->name, sizeof f->name, "%s", name);
    TRY(get_int(c, "rank", &f->rank));
    TRY(get_u64(c, "begin", &f->begin));
    TRY(get_u64(c, "end", &f->end));
    json_ctx secs = c;
    TRY(get_obj(c, "sections", &secs));
    for (int s = 0; s < CKPT_SECTIONS; s++) {
        json_ctx sec = secs;
        TRY(get_obj(secs, ckpt_section_names[s], &sec));
        const char *hex = "";
        TRY(get_u64(sec, "offset", &f->offset[s]));
        TRY(get_u64(sec, "bytes", &f->bytes[s]));
        TRY(get_str(sec, "xxh3", &hex));
        FAIL_IF(!hash_from_hex(hex, &f->hash[s]), ST_FORMAT, "%s: %s: xxh3 \"%s\" is not 16 hex digits", c.path,
                f->name, hex);
        FAIL_IF(f->bytes[s] != (f->end - f->begin) * sizeof(float), ST_FORMAT,
                "%s: %s: section %s holds %llu bytes (expected %llu for elements [%llu, %llu))", c.path, f->name,
                ckpt_section_names[s], (unsigned long long)f->bytes[s],
                (unsigned long long)((f->end - f->begin) * sizeof(float)), (unsigned long long)f->begin,
                (unsigned long long)f->end);
    }
    return ST_OK;
}

status_t ckpt_manifest_parse_files(const char *path, const cJSON *root, ckpt_file **files, int *n_files)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "files");
    FAIL_IF(!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) < 1, ST_FORMAT,
            "%s: \"files\" is missing or empty; the checkpoint is damaged", path);
    int n = cJSON_GetArraySize(arr);
    ckpt_file *f = calloc((size_t)n, sizeof *f);
    FAIL_IF(!f, ST_NOMEM, "%s: out of memory for %d file entries", path, n);
    status_t st = ST_OK;
    uint64_t next = 0;
    for (int i = 0; st == ST_OK && i < n; i++) {
        char where[32];
        snprintf(where, sizeof where, "files[%d]", i);
        st = parse_file((json_ctx){path, cJSON_GetArrayItem(arr, i), where}, &f[i]);
        if (st == ST_OK && (f[i].begin != next || f[i].end < f[i].begin))
            st = st_fail(ST_FORMAT, "%s: %s covers elements [%llu, %llu) (expected to start at %llu); the files must "
                                    "tile the parameters in order", path, f[i].name, (unsigned long long)f[i].begin,
                         (unsigned long long)f[i].end, (unsigned long long)next);
        next = f[i].end;
    }
    if (st != ST_OK) {
        free(f);
        return st;
    }
    *files = f;
    *n_files = n;
    return ST_OK;
}

static status_t check_tensor(const char *path, const cJSON *item, int i, const model_tensor *want)
{
    json_ctx c = {path, item, "tensors[]"};
    const char *name = "";
    uint64_t offset = 0, numel = 0;
    TRY(get_str(c, "name", &name));
    TRY(get_u64(c, "offset", &offset));
    TRY(get_u64(c, "numel", &numel));
    FAIL_IF(strcmp(name, want->name) != 0 || offset != want->offset || numel != want->numel, ST_FORMAT,
            "%s: tensors[%d] is %s at offset %llu with %llu elements (expected %s at %zu with %zu for this model); "
            "the checkpoint is damaged", path, i, name, (unsigned long long)offset, (unsigned long long)numel,
            want->name, want->offset, want->numel);
    return ST_OK;
}

status_t ckpt_manifest_check_tensors(const char *path, const cJSON *root, const model_config *c,
                                     model_tensor **table, int *n)
{
    TRY(model_full_table(c, table, n));
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "tensors");
    status_t st = ST_OK;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != *n)
        st = st_fail(ST_FORMAT, "%s: \"tensors\" is missing or has %d entries (expected %d for this model)", path,
                     cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0, *n);
    for (int i = 0; st == ST_OK && i < *n; i++) st = check_tensor(path, cJSON_GetArrayItem(arr, i), i, &(*table)[i]);
    if (st != ST_OK) {
        free(*table);
        *table = NULL;
    }
    return st;
}

/* ckpt/read — opening, verifying and reading a checkpoint onto any stage. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/hash.h"
#include "ckpt/checkpoint_internal.h"
#include "model/model_tp.h"

struct ckpt_reader {
    char path[PATH_MAX];
    char vocab[PATH_MAX + 8];
    int has_vocab;
    cJSON *root;
    ckpt_meta meta;
    model_tensor *table;
    int n_tensors;
    ckpt_file *files;
    int *fds;
    int n_files;
};

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* A step directory as given, or a run directory's latest. */
static status_t resolve(const char *dir, char *out, size_t len)
{
    char probe[PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/%s", dir, CKPT_MANIFEST);
    if (exists(probe)) {
        snprintf(out, len, "%s", dir);
        return ST_OK;
    }
    snprintf(probe, sizeof probe, "%s/latest", dir);
    char target[PATH_MAX];
    ssize_t n = readlink(probe, target, sizeof target - 1);
    FAIL_IF(n < 0, ST_IO, "%s: not a checkpoint (no %s, no latest link); pass a step directory "
                          "RUN_DIR/step-NNNNNNN or a run directory holding latest", dir, CKPT_MANIFEST);
    target[n] = '\0';
    if (target[0] == '/') snprintf(out, len, "%s", target);
    else snprintf(out, len, "%s/%s", dir, target);
    return ST_OK;
}

int ckpt_is_checkpoint(const char *dir)
{
    char probe[PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/latest", dir);
    if (exists(probe)) return 1;
    snprintf(probe, sizeof probe, "%s/shard-00000.bin", dir);
    if (exists(probe)) return 1;
    snprintf(probe, sizeof probe, "%s/%s", dir, CKPT_MANIFEST);
    char *text;
    size_t len;
    if (fileio_read_file(probe, &text, &len) != ST_OK) {
        st_clear();
        return 0;
    }
    int yes = strstr(text, "\"" CKPT_FORMAT "\"") != NULL;
    free(text);
    return yes;
}

status_t ckpt_run_id(const char *step_dir, uint64_t *run_id)
{
    char path[PATH_MAX + 32], *text;
    size_t len;
    *run_id = 0;
    snprintf(path, sizeof path, "%s/%s", step_dir, CKPT_MANIFEST);
    TRY(fileio_read_file(path, &text, &len));
    cJSON *root = cJSON_Parse(text);
    free(text);
    FAIL_IF(!root, ST_FORMAT, "%s: not valid JSON; the checkpoint is damaged", path);
    status_t st = ckpt_manifest_parse_run_id(path, root, run_id);
    cJSON_Delete(root);
    return st;
}

/* Size first (a truncated file), then each section's checksum. */
static status_t verify_file(const ckpt_reader *r, int i)
{
    const ckpt_file *f = &r->files[i];
    struct stat st;
    FAIL_IF(fstat(r->fds[i], &st) != 0, ST_IO, "%s/%s: cannot stat (%s)", r->path, f->name, strerror(errno));
    uint64_t want = f->offset[CKPT_SECTIONS - 1] + f->bytes[CKPT_SECTIONS - 1];
    FAIL_IF((uint64_t)st.st_size != want, ST_FORMAT,
            "%s/%s: the file is %lld bytes (expected %llu: truncated or damaged at byte offset %lld); the checkpoint "
            "is corrupt, use another one", r->path, f->name, (long long)st.st_size, (unsigned long long)want,
            (long long)(st.st_size < (off_t)want ? st.st_size : (off_t)want));
    static _Thread_local unsigned char block[1 << 20];
    for (int s = 0; s < CKPT_SECTIONS; s++) {
        hash_stream *h = hash_stream_new();
        FAIL_IF(!h, ST_NOMEM, "%s/%s: out of memory for a checksum", r->path, f->name);
        uint64_t done = 0;
        while (done < f->bytes[s]) {
            size_t k = f->bytes[s] - done < sizeof block ? (size_t)(f->bytes[s] - done) : sizeof block;
            ssize_t got = pread(r->fds[i], block, k, (off_t)(f->offset[s] + done));
            if (got <= 0) {
                hash_stream_free(h);
                return st_fail(ST_IO, "%s/%s: read error at byte offset %llu", r->path, f->name,
                               (unsigned long long)(f->offset[s] + done));
            }
            hash_stream_update(h, block, (size_t)got);
            done += (uint64_t)got;
        }
        uint64_t got = hash_stream_digest(h);
        hash_stream_free(h);
        char a[17], b[17];
        hash_to_hex(f->hash[s], a);
        hash_to_hex(got, b);
        FAIL_IF(got != f->hash[s], ST_FORMAT,
                "%s/%s: checksum mismatch in section %s at byte offset %llu (%llu bytes; expected xxh3 %s, found %s); "
                "the checkpoint is corrupt, use another one", r->path, f->name, ckpt_section_names[s],
                (unsigned long long)f->offset[s], (unsigned long long)f->bytes[s], a, b);
    }
    return ST_OK;
}

static status_t open_files(ckpt_reader *r)
{
    r->fds = malloc((size_t)r->n_files * sizeof *r->fds);
    FAIL_IF(!r->fds, ST_NOMEM, "%s: out of memory", r->path);
    for (int i = 0; i < r->n_files; i++) r->fds[i] = -1;
    uint64_t total = r->table[r->n_tensors - 1].offset + r->table[r->n_tensors - 1].numel;
    FAIL_IF(r->files[r->n_files - 1].end != total, ST_FORMAT,
            "%s/%s: the files cover %llu elements (expected %llu for this model); the checkpoint is damaged", r->path,
            CKPT_MANIFEST, (unsigned long long)r->files[r->n_files - 1].end, (unsigned long long)total);
    for (int i = 0; i < r->n_files; i++) {
        char path[PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/%s", r->path, r->files[i].name);
        r->fds[i] = open(path, O_RDONLY);
        FAIL_IF(r->fds[i] < 0, ST_IO, "%s: cannot open (%s); the checkpoint is incomplete, use another one", path,
                strerror(errno));
        TRY(verify_file(r, i));
    }
    return ST_OK;
}

static status_t load(ckpt_reader *r, const char *dir)
{
    TRY(resolve(dir, r->path, sizeof r->path));
    char path[PATH_MAX + 32], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/%s", r->path, CKPT_MANIFEST);
    TRY(fileio_read_file(path, &text, &len));
    r->root = cJSON_Parse(text);
    free(text);
    FAIL_IF(!r->root, ST_FORMAT, "%s: not valid JSON; the checkpoint is damaged, use another one", path);
    TRY(ckpt_manifest_parse_meta(path, r->root, &r->meta));
    TRY(ckpt_manifest_check_tensors(path, r->root, &r->meta.model, &r->table, &r->n_tensors));
    TRY(ckpt_manifest_parse_files(path, r->root, &r->files, &r->n_files));
    TRY(open_files(r));
    snprintf(r->vocab, sizeof r->vocab, "%s/vocab", r->path);
    r->has_vocab = exists(r->vocab);
    return ST_OK;
}

status_t ckpt_open(ckpt_reader **out, const char *dir)
{
    *out = NULL;
    ckpt_reader *r = calloc(1, sizeof *r);
    FAIL_IF(!r, ST_NOMEM, "%s: out of memory opening the checkpoint", dir);
    status_t st = load(r, dir);
    if (st != ST_OK) {
        ckpt_close(r);
        return st;
    }
    *out = r;
    return ST_OK;
}

void ckpt_close(ckpt_reader *r)
{
    if (!r) return;
    for (int i = 0; r->fds && i < r->n_files; i++)
        if (r->fds[i] >= 0) close(r->fds[i]);
    free(r->fds);
    free(r->files);
    free(r->table);
    cJSON_Delete(r->root);
    free(r);
}

const model_config *ckpt_model(const ckpt_reader *r) { return &r->meta.model; }
const char *ckpt_path(const ckpt_reader *r) { return r->path; }
const char *ckpt_vocab_dir(const ckpt_reader *r) { return r->has_vocab ? r->vocab : NULL; }
int64_t ckpt_step(const ckpt_reader *r) { return r->meta.step; }
const ckpt_meta *ckpt_meta_of(const ckpt_reader *r) { return &r->meta; }
int ckpt_n_files(const ckpt_reader *r) { return r->n_files; }
const ckpt_file *ckpt_file_at(const ckpt_reader *r, int i) { return &r->files[i]; }

const char *ckpt_config_value(const ckpt_reader *r, const char *key)
{
    const cJSON *train = cJSON_GetObjectItemCaseSensitive(r->root, "train");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(train, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Elements [begin, begin + n) of section s of the global flat buffer, from
 * whichever files hold them. */
static status_t read_range(const ckpt_reader *r, int s, uint64_t begin, uint64_t n, float *dst)
{
    for (int i = 0; i < r->n_files && n > 0; i++) {
        const ckpt_file *f = &r->files[i];
        if (begin >= f->end || begin < f->begin) continue;
        uint64_t k = f->end - begin < n ? f->end - begin : n;
        size_t bytes = (size_t)k * sizeof(float);
        off_t at = (off_t)(f->offset[s] + (begin - f->begin) * sizeof(float));
        FAIL_IF(pread(r->fds[i], dst, bytes, at) != (ssize_t)bytes, ST_IO,
                "%s/%s: read error at byte offset %lld", r->path, f->name, (long long)at);
        dst += k, begin += k, n -= k;
    }
    return ST_OK;
}

/* Tensor by tensor, through the stage's runs: a tensor-parallel slice reads
 * its pieces of the unsplit tensor (one run when the stage is not split). */
status_t ckpt_read_stage_range(const ckpt_reader *r, const model_stage *m, size_t lo, size_t hi, float *params,
                               float *m_out, float *v_out)
{
    float *dst[CKPT_SECTIONS] = {params, m_out, v_out};
    for (int i = 0; i < model_n_tensors(m); i++) {
        const model_tensor *t = model_tensor_at(m, i), *f = model_stage_full_tensor(m, i);
        if (t->offset + t->numel <= lo || t->offset >= hi) continue;
        const model_tensor *g = t->global < r->n_tensors ? &r->table[t->global] : NULL;
        if (g && strcmp(g->name, t->name) != 0) g = NULL;
        FAIL_IF(!g || g->numel != f->numel, ST_FORMAT,
                "%s: tensor %s (%zu elements) is %s in the checkpoint; the model does not match it", r->path, t->name,
                f->numel, g ? "of another size" : "missing");
        const model_run *runs;
        int n = model_stage_runs(m, i, &runs);
        for (int k = 0; k < n; k++) {
            size_t a = runs[k].local > lo ? runs[k].local : lo;
            size_t z = runs[k].local + runs[k].len < hi ? runs[k].local + runs[k].len : hi;
            if (z <= a) continue;
            uint64_t at = g->offset + (runs[k].full - f->offset) + (a - runs[k].local);
            for (int s = 0; s < CKPT_SECTIONS; s++)
                if (dst[s]) TRY(read_range(r, s, at, z - a, dst[s] + (a - lo)));
        }
    }
    return ST_OK;
}

status_t ckpt_read_stage(const ckpt_reader *r, const model_stage *m, float *params, float *m_out, float *v_out)
{
    return ckpt_read_stage_range(r, m, 0, model_n_params(m), params, m_out, v_out);
}

static status_t differ(const ckpt_reader *r, const char *key, const char *have, const char *want)
{
    return st_fail(ST_CONFIG, "%s: model.%s is %s in the checkpoint but %s in the configuration (expected equal); "
                              "set model.%s = %s or start a new run", r->path, key, have, want, key, have);
}

/* The fields that make the model (model_field.identity) of the checkpoint's
 * family, family first: a checkpoint of another family stops at the first. */
status_t ckpt_check_model(const ckpt_reader *r, const model_config *c)
{
    const model_config *k = &r->meta.model;
    for (int i = 0; i < MODEL_N_FIELDS; i++) {
        const model_field *f = &model_fields[i];
        if (!f->identity || !model_field_of(f, k->family) || model_field_get(f, k) == model_field_get(f, c)) continue;
        char have[32], want[32];
        model_field_format(f, k, have, sizeof have);
        model_field_format(f, c, want, sizeof want);
        return differ(r, f->key.key, have, want);
    }
    return ST_OK;
}

/* "bpe, 4000 tokens, fingerprint 0123456789abcdef" (the size when known) */
static void describe_tokenizer(char *buf, size_t len, const char *kind, uint32_t vocab_size, uint64_t fingerprint)
{
    char size[32] = "";
    if (vocab_size) snprintf(size, sizeof size, "%u tokens, ", vocab_size);
    snprintf(buf, len, "%s, %sfingerprint %016llx", kind, size, (unsigned long long)fingerprint);
}

status_t ckpt_check_tokenizer(const ckpt_reader *r, const char *kind, uint64_t fingerprint, uint32_t vocab_size,
                              const char *what, const char *todo)
{
    const ckpt_tokenizer *k = &r->meta.tokenizer;
    if (!k->present || (k->fingerprint == fingerprint && strcmp(k->kind, kind) == 0)) return ST_OK;
    char have[96], want[96];
    describe_tokenizer(have, sizeof have, k->kind, k->vocab_size, k->fingerprint);
    describe_tokenizer(want, sizeof want, kind, vocab_size, fingerprint);
    return st_fail(ST_CONFIG, "%s: the checkpoint was trained with another tokenizer than %s (expected the "
                              "checkpoint's %s, found %s): the token ids would mean other words; %s",
                   r->path, what, have, want, todo);
}

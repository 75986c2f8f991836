/* train/config — the configuration's keys (docs/design.md, "Configuration"; the
 * list in docs/usage.md) into a train_config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/stream.h"
#include "tensor/bf16.h"
#include "train/train.h"

status_t train_precision_resolve(const char *requested, int tp_2d, model_config *m, char *why, size_t n)
{
    const char *cpu;
    int has = bf16_cpu_supported(&cpu);
    if (strcmp(requested, "fp32") == 0) {
        m->bf16 = 0;
        snprintf(why, n, "fp32 (train.precision = fp32)");
    } else if (strcmp(requested, "bf16") == 0) {
        FAIL_IF(!has, ST_CONFIG,
                "train.precision = bf16, but %s: its bf16 GEMMs would be emulated, slower than fp32; "
                "set train.precision = fp32 (or auto, which picks fp32 here)", cpu);
        FAIL_IF(tp_2d, ST_CONFIG,
                "train.precision = bf16 with dist.tp_mode = 2d: the 2d FFN multiplies over ScaLAPACK, which has no "
                "bf16 GEMM; set train.precision = fp32 (or auto), or dist.tp_mode = 1d to train in bf16");
        m->bf16 = 1;
        snprintf(why, n, "bf16 (train.precision = bf16; %s)", cpu);
    } else if (strcmp(requested, "auto") == 0) {
        m->bf16 = has && !tp_2d;
        if (has && tp_2d)
            snprintf(why, n, "fp32 (auto: dist.tp_mode = 2d has no bf16 GEMM)");
        else
            snprintf(why, n, "%s (auto: %s)", m->bf16 ? "bf16" : "fp32", cpu);
    } else {
        return st_fail(ST_CONFIG, "train.precision = '%s' (expected auto, fp32 or bf16)", requested);
    }
    return ST_OK;
}

/* model.KEY differs from the schema's default (auto: -1). */
static int differs_from_default(const config *cfg, const model_field *f, const char *name)
{
    switch (f->key.type) {
    case CFG_INT: return (double)config_int(cfg, name) != model_field_default(f);
    case CFG_FLOAT: return config_float(cfg, name) != model_field_default(f);
    case CFG_BOOL: return config_bool(cfg, name) != model_field_default(f);
    default: return strcmp(config_str(cfg, name), f->key.default_value) != 0;
    }
}

/* model.KEY into its model_config field (model_fields); auto reads as -1. */
static void load_field(const config *cfg, const model_field *f, const char *name, model_config *m)
{
    switch (f->key.type) {
    case CFG_INT: model_field_set(f, m, (double)config_int(cfg, name)); break;
    case CFG_FLOAT: model_field_set(f, m, config_float(cfg, name)); break;
    case CFG_BOOL: model_field_set(f, m, config_bool(cfg, name)); break;
    default: {
        const char *v = config_str(cfg, name);
        if (f->type == MODEL_FIELD_NORM && strcmp(v, "auto") == 0) v = m->family == MODEL_BERT ? "post" : "pre";
        if (f->type == MODEL_FIELD_POSITIONS && m->family == MODEL_LLAMA) v = "rope";
        model_field_set_name(f, m, v); /* the schema admitted only its names */
    }
    }
}

/* Every model.* key (model_fields), family first. A key of another family
 * (Llama's, given to GPT or BERT) is refused unless it is the default, so a
 * printed configuration loads back; Llama refuses sinusoidal positions and
 * post-LN (it has rotary positions and pre-norm RMSNorm blocks). */
static status_t load_model(const config *cfg, model_config *m)
{
    memset(m, 0, sizeof *m);
    for (int i = 0; i < MODEL_N_FIELDS; i++) {
        const model_field *f = &model_fields[i];
        char name[64];
        snprintf(name, sizeof name, "model.%s", f->key.key);
        if (model_field_of(f, m->family)) {
            load_field(cfg, f, name, m);
            continue;
        }
        FAIL_IF(differs_from_default(cfg, f, name), ST_CONFIG,
                "%s: %s = %s, but model.family = %s does not take it (a llama key: %s always ties its embedding "
                "and has its own heads, norm and positions); remove it", config_origin(cfg, name), name,
                config_text(cfg, name), model_family_name(m->family), model_family_name(m->family));
    }
    if (m->family == MODEL_LLAMA) {
        const char *positions = config_str(cfg, "model.positions"), *norm = config_str(cfg, "model.norm");
        int post = strcmp(norm, "post") == 0;
        FAIL_IF(strcmp(positions, "sinusoidal") == 0 || post, ST_CONFIG,
                "%s: %s, but model.family = llama has rotary positions and pre-norm RMSNorm blocks; remove it",
                config_origin(cfg, post ? "model.norm" : "model.positions"),
                post ? "model.norm = post" : "model.positions = sinusoidal");
        if (m->n_kv_head < 0) m->n_kv_head = m->n_head; /* auto */
    }
    return m->vocab_size < 0 ? ST_OK : model_config_check(m); /* auto: checked once resolved */
}

/* model.vocab_size = auto: the dataset's vocabulary rounded up to a multiple
 * of TRAIN_VOCAB_PAD (as nanoGPT and Megatron pad, for the GEMMs' sake); the
 * padded rows are never targets, since every id of the dataset is below its
 * vocabulary size. */
static status_t resolve_vocab(const config *cfg, train_config *tc)
{
    if (tc->model.vocab_size >= 0) return ST_OK;
    FAIL_IF(tc->random_data, ST_CONFIG, "%s: model.vocab_size = auto needs a dataset to take the vocabulary from, but "
            "data.source = random; set model.vocab_size to a number or data.source = dataset with data.path",
            config_origin(cfg, "model.vocab_size"));
    dataset_info info;
    stream_blend bl;
    TRY(stream_blend_parse(tc->data_path, &bl));
    TRY(dataset_info_read(bl.path[0], &info)); /* a blend's datasets share it (checked when the stream opens) */
    tc->vocab_dataset = info.vocab_size;
    tc->model.vocab_size = (int)((info.vocab_size + TRAIN_VOCAB_PAD - 1) / TRAIN_VOCAB_PAD * TRAIN_VOCAB_PAD);
    return model_config_check(&tc->model);
}

/* AdamW's beta1 and beta2 must be in [0, 1) (1 divides by the bias
 * correction 1 - beta^t = 0) and eps > 0 (0 divides 0 by 0 wherever a
 * gradient is 0): either would make every parameter NaN at step 1. */
static status_t check_optim(const config *cfg, const optim_config *o)
{
    const char *beta_bad = o->beta1 >= 1.0 ? "beta1" : o->beta2 >= 1.0 ? "beta2" : NULL;
    if (beta_bad) {
        char name[32];
        snprintf(name, sizeof name, "train.%s", beta_bad);
        return st_fail(ST_CONFIG, "%s: %s = %g is out of range (expected 0 <= %s < 1, e.g. 0.9 or 0.999: at 1 the "
                       "update divides by zero); lower it", config_origin(cfg, name), name, config_float(cfg, name),
                       beta_bad);
    }
    FAIL_IF(o->eps <= 0.0, ST_CONFIG, "%s: train.eps = %g is out of range (expected eps > 0, e.g. 1e-8: at 0 the "
            "update divides zero by zero); raise it", config_origin(cfg, "train.eps"), o->eps);
    return ST_OK;
}

static void load_optim(const config *cfg, optim_config *o, int64_t steps)
{
    o->lr = config_float(cfg, "train.lr");
    o->min_lr = config_float(cfg, "train.min_lr");
    o->warmup_steps = config_int(cfg, "train.warmup_steps");
    o->total_steps = steps;
    o->decay = strcmp(config_str(cfg, "train.decay"), "linear") == 0 ? DECAY_LINEAR : DECAY_COSINE;
    o->beta1 = config_float(cfg, "train.beta1");
    o->beta2 = config_float(cfg, "train.beta2");
    o->eps = config_float(cfg, "train.eps");
    o->weight_decay = config_float(cfg, "train.weight_decay");
    o->clip = config_float(cfg, "train.clip");
}

/* dist.*: the layout (checked against the world and the model by
 * dist_topology_create, before any work). */
static status_t load_dist(const config *cfg, dist_config *d)
{
    memset(d, 0, sizeof *d);
    d->pp = (int)config_int(cfg, "dist.pp");
    d->tp = (int)config_int(cfg, "dist.tp");
    d->tp_mode = strcmp(config_str(cfg, "dist.tp_mode"), "2d") == 0 ? DIST_TP_2D : DIST_TP_1D;
    d->dp = (int)config_int(cfg, "dist.dp");
    d->schedule = strcmp(config_str(cfg, "dist.schedule"), "gpipe") == 0 ? DIST_GPIPE : DIST_1F1B;
    d->zero = (int)config_int(cfg, "dist.zero");
    d->hang_timeout = config_float(cfg, "dist.hang_timeout");
    d->grad_reduce = strcmp(config_str(cfg, "dist.grad_reduce"), "bf16") == 0 ? DIST_REDUCE_BF16 : DIST_REDUCE_FP32;
    return dist_parse_stages(d, config_str(cfg, "dist.stages"));
}

/* eval.* and ckpt.keep_best: both need validation to be on. */
static status_t load_eval(const config *cfg, train_config *tc)
{
    tc->ckpt_keep_best = config_bool(cfg, "ckpt.keep_best");
    tc->eval_every_steps = config_int(cfg, "eval.every_steps");
    tc->eval_max_samples = (uint64_t)config_int(cfg, "eval.max_samples");
    tc->eval_patience = config_int(cfg, "eval.patience");
    snprintf(tc->eval_data_path, sizeof tc->eval_data_path, "%s", config_str(cfg, "eval.data_path"));
    if (tc->eval_every_steps > 0) return ST_OK;
    FAIL_IF(tc->ckpt_keep_best, ST_CONFIG, "%s: ckpt.keep_best = true needs validation, but eval.every_steps = 0 "
            "(off); set eval.every_steps = N (e.g. 100) or drop ckpt.keep_best", config_origin(cfg, "ckpt.keep_best"));
    FAIL_IF(tc->eval_patience > 0, ST_CONFIG, "%s: eval.patience = %lld counts evaluations, but eval.every_steps = 0 "
            "(off); set eval.every_steps = N (e.g. 100) or drop eval.patience", config_origin(cfg, "eval.patience"),
            (long long)tc->eval_patience);
    return ST_OK;
}

static status_t resolve_micro_batches(train_config *tc, int world, int dp)
{
    long long G = (long long)tc->global_batch, B = tc->micro_batch, unit = (long long)dp * B;
    if (G <= 0) {
        if (tc->micro_batches <= 0) tc->micro_batches = 1;
        return ST_OK;
    }
    FAIL_IF(G % unit != 0, ST_CONFIG,
            "train.global_batch = %lld is not a multiple of dist.dp x train.micro_batch = %d x %lld = %lld (at %d "
            "ranks); choose a global batch divisible by %lld, another train.micro_batch or another rank count",
            G, dp, B, unit, world, unit);
    long long m = G / unit;
    FAIL_IF(tc->micro_batches > 0 && tc->micro_batches != m, ST_CONFIG,
            "train.micro_batches = %d disagrees with train.global_batch = %lld: dist.dp x train.micro_batch x "
            "train.micro_batches = %d x %lld x %d = %lld at %d ranks; leave train.micro_batches out (auto gives %lld "
            "here) or drop train.global_batch", tc->micro_batches, G, dp, B, tc->micro_batches,
            unit * tc->micro_batches, world, m);
    FAIL_IF(m > (1 << 20), ST_CONFIG, "train.global_batch = %lld needs %lld micro-batches per replica (expected at "
            "most %d); raise train.micro_batch", G, m, 1 << 20);
    tc->micro_batches = (int)m;
    return ST_OK;
}

/* train.tokens: the steps that read at least that many tokens. */
static void derive_steps(train_config *tc, int dp)
{
    if (tc->tokens <= 0) return;
    uint64_t per_step = (uint64_t)tc->micro_batch * (uint64_t)tc->micro_batches * (uint64_t)dp *
                        (uint64_t)tc->model.seq_len;
    tc->steps = (int64_t)(((uint64_t)tc->tokens + per_step - 1) / per_step);
    tc->optim.total_steps = tc->steps;
}

status_t train_resolve_batch(train_config *tc, int world)
{
    int dp;
    TRY(dist_layout_dp(&tc->dist, world, &dp));
    TRY(resolve_micro_batches(tc, world, dp));
    derive_steps(tc, dp);
    return ST_OK;
}

/* One budget: train.steps or train.tokens (then steps is auto or left at its
 * default, and train_resolve_batch derives it). */
static status_t check_budget(const config *cfg, const train_config *tc)
{
    const char *origin = config_origin(cfg, "train.steps");
    FAIL_IF(tc->tokens > 0 && tc->steps >= 0 && strcmp(origin, "default") != 0, ST_CONFIG,
            "%s: train.steps = %lld and train.tokens = %lld are both set (expected one budget); set train.steps = "
            "auto (or remove it) to train for the tokens, or train.tokens = 0 to train for the steps", origin,
            (long long)tc->steps, (long long)tc->tokens);
    FAIL_IF(tc->steps < 0 && tc->tokens <= 0, ST_CONFIG,
            "%s: train.steps = auto needs train.tokens (expected a token budget > 0 to derive the steps from); set "
            "train.tokens or a number of steps", origin);
    return ST_OK;
}

status_t train_config_load(const config *cfg, train_config *tc)
{
    memset(tc, 0, sizeof *tc);
    snprintf(tc->run_name, sizeof tc->run_name, "%s", config_str(cfg, "run.name"));
    const char *dir = config_str(cfg, "run.dir");
    if (*dir)
        snprintf(tc->run_dir, sizeof tc->run_dir, "%s", dir);
    else
        snprintf(tc->run_dir, sizeof tc->run_dir, "checkpoints/%s", tc->run_name);
    tc->threads = (int)config_int(cfg, "run.threads");
    TRY(load_model(cfg, &tc->model));
    tc->steps = config_int(cfg, "train.steps");
    tc->tokens = config_int(cfg, "train.tokens");
    TRY(check_budget(cfg, tc));
    tc->micro_batch = (int)config_int(cfg, "train.micro_batch");
    tc->micro_batches = (int)config_int(cfg, "train.micro_batches");
    tc->global_batch = config_int(cfg, "train.global_batch");
    tc->seed = (uint64_t)config_int(cfg, "train.seed");
    load_optim(cfg, &tc->optim, tc->steps);
    TRY(check_optim(cfg, &tc->optim));
    FAIL_IF(tc->optim.min_lr > tc->optim.lr, ST_CONFIG,
            "train.min_lr = %g exceeds train.lr = %g (expected min_lr <= lr)", tc->optim.min_lr, tc->optim.lr);
    tc->random_data = strcmp(config_str(cfg, "data.source"), "random") == 0;
    snprintf(tc->data_path, sizeof tc->data_path, "%s", config_str(cfg, "data.path"));
    FAIL_IF(!tc->random_data && !*tc->data_path, ST_CONFIG,
            "data.source = dataset needs data.path (a directory written by mpilm prep)");
    tc->mask_prob = config_float(cfg, "data.mask_prob");
    tc->nsp = config_bool(cfg, "data.nsp");
    TRY(resolve_vocab(cfg, tc));
    tc->random_samples = config_int(cfg, "data.random_samples");
    tc->log_every = (int)config_int(cfg, "log.every");
    TRY(load_dist(cfg, &tc->dist));
    tc->layout_auto = strcmp(config_str(cfg, "dist.layout"), "auto") == 0;
    TRY(train_precision_resolve(config_str(cfg, "train.precision"), tc->dist.tp_mode == DIST_TP_2D && tc->dist.tp > 1,
                                &tc->model, tc->precision_why, sizeof tc->precision_why));
    tc->ckpt_every_steps = config_int(cfg, "ckpt.every_steps");
    tc->ckpt_every_minutes = config_float(cfg, "ckpt.every_minutes");
    tc->ckpt_keep = (int)config_int(cfg, "ckpt.keep");
    tc->ckpt_continue = strcmp(config_str(cfg, "ckpt.on_error"), "continue") == 0;
    tc->ckpt_restart = strcmp(config_str(cfg, "ckpt.if_none_valid"), "restart") == 0;
    tc->ckpt_io_timeout = config_float(cfg, "ckpt.io_timeout");
    TRY(load_eval(cfg, tc));
    FILE *text = fmemopen(tc->config_text, sizeof tc->config_text - 1, "w");
    FAIL_IF(!text, ST_NOMEM, "train: out of memory recording the configuration");
    config_print(cfg, text, 0);
    fclose(text);
    return ST_OK;
}

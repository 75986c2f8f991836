/* The configuration contract (docs/design.md, "Configuration"). Keys may be
 * added; none renamed without an alias. docs/usage.md lists them with the
 * same defaults. */
#include "cli.h"
#include "model/model.h"

#define NO_RANGE 1, 0
#define ANY_COUNT 1e18

static const config_key run_keys[] = {
    {"run", "name", CFG_STRING, "run", NULL, NO_RANGE, "run name; run directory = checkpoints/NAME/ unless dir is set"},
    {"run", "dir", CFG_STRING, "", NULL, NO_RANGE, "run directory (overrides checkpoints/NAME/)"},
    {"run", "threads", CFG_INT, "auto", "auto", 1, 1024, "threads per rank; BLIS_NUM_THREADS / OMP_NUM_THREADS win"},
};

/* after the model.* keys (model/model_config.c's field table) */
static const config_key other_keys[] = {
    {"data", "source", CFG_ENUM, "random", "dataset|random", NO_RANGE, "training samples from a prepared dataset or random tokens"},
    {"data", "path", CFG_STRING, "", NULL, NO_RANGE,
     "dataset directory written by mpilm prep, or a weighted blend '0.7 datasets/a 0.3 datasets/b'"},
    {"data", "mask_prob", CFG_FLOAT, "0.15", NULL, 0, 1, "MLM: fraction of tokens chosen"},
    {"data", "nsp", CFG_BOOL, "true", NULL, NO_RANGE, "BERT: next-sentence prediction"},
    {"data", "random_samples", CFG_INT, "0", NULL, 0, ANY_COUNT, "data.source = random: repeat this many samples (0 = never repeat)"},

    {"train", "steps", CFG_INT, "100", "auto", 0, ANY_COUNT, "optimizer steps; auto = derived from train.tokens"},
    {"train", "tokens", CFG_INT, "0", NULL, 0, ANY_COUNT,
     "token budget instead of train.steps: steps = ceil(tokens / (global batch * seq_len)); 0 = off"},
    {"train", "micro_batch", CFG_INT, "8", NULL, 1, 1 << 20, "sequences per micro-batch"},
    {"train", "micro_batches", CFG_INT, "auto", "auto", 1, 1 << 20,
     "micro-batches per step and replica; auto = global_batch / (dp * micro_batch), or 1 without global_batch"},
    {"train", "global_batch", CFG_INT, "auto", "auto", 1, 1 << 30,
     "sequences per step over all replicas, kept on any rank count; auto = micro_batch * micro_batches * dp"},
    {"train", "lr", CFG_FLOAT, "3e-4", NULL, 0, 10, "peak learning rate"},
    {"train", "min_lr", CFG_FLOAT, "0", NULL, 0, 10, "learning rate at the end of decay"},
    {"train", "warmup_steps", CFG_INT, "0", NULL, 0, ANY_COUNT, "linear warm-up steps"},
    {"train", "decay", CFG_ENUM, "cosine", "linear|cosine", NO_RANGE, "decay after warm-up"},
    {"train", "weight_decay", CFG_FLOAT, "0.01", NULL, 0, 10, "AdamW decoupled weight decay"},
    {"train", "beta1", CFG_FLOAT, "0.9", NULL, 0, 1, "AdamW beta1"},
    {"train", "beta2", CFG_FLOAT, "0.999", NULL, 0, 1, "AdamW beta2"},
    {"train", "eps", CFG_FLOAT, "1e-8", NULL, 0, 1, "AdamW epsilon"},
    {"train", "clip", CFG_FLOAT, "1.0", NULL, 0, 1e9, "global grad-norm clip (0 = off)"},
    {"train", "precision", CFG_ENUM, "auto", "auto|fp32|bf16", NO_RANGE, "GEMM precision; auto = bf16 where the CPU has AVX512-BF16 or AMX-BF16, else fp32"},
    {"train", "seed", CFG_INT, "1234", NULL, 0, ANY_COUNT, "seed of every random decision"},

    {"dist", "layout", CFG_ENUM, "manual", "manual|auto", NO_RANGE, "auto: the layout mpilm plan predicts fastest for the job's ranks (pp, dp, tp 1d, zero, schedule replace the keys)"},
    {"dist", "pp", CFG_INT, "1", NULL, 1, 4096, "pipeline stages"},
    {"dist", "dp", CFG_INT, "auto", "auto", 1, 1 << 20, "data-parallel replicas; auto = world / (pp * tp)"},
    {"dist", "tp", CFG_INT, "1", NULL, 1, 4096, "tensor-parallel ranks per stage"},
    {"dist", "schedule", CFG_ENUM, "1f1b", "gpipe|1f1b", NO_RANGE, "pipeline schedule"},
    {"dist", "zero", CFG_INT, "0", NULL, 0, 2, "ZeRO stage"},
    {"dist", "stages", CFG_STRING, "", NULL, NO_RANGE, "optional layer counts per stage, e.g. 5,7"},
    {"dist", "tp_mode", CFG_ENUM, "1d", "1d|2d", NO_RANGE, "tensor-parallel mode"},
    {"dist", "hang_timeout", CFG_FLOAT, "600", NULL, 1, 1e9, "seconds before the watchdog reports and ends the job"},
    {"dist", "grad_reduce", CFG_ENUM, "fp32", "fp32|bf16", NO_RANGE, "what the data-parallel gradient reduction moves and sums in"},

    {"ckpt", "every_steps", CFG_INT, "0", NULL, 0, ANY_COUNT, "checkpoint every N steps (0 = off)"},
    {"ckpt", "every_minutes", CFG_FLOAT, "0", NULL, 0, 1e9, "checkpoint every N minutes (0 = off)"},
    {"ckpt", "keep", CFG_INT, "3", NULL, 1, 1 << 20, "checkpoints kept"},
    {"ckpt", "on_error", CFG_ENUM, "stop", "stop|continue", NO_RANGE, "what a failed save does"},
    {"ckpt", "io_timeout", CFG_FLOAT, "1800", NULL, 0, 1e9, "seconds a checkpoint save or a resume's reading may take before the watchdog ends the job (0 = no limit)"},
    {"ckpt", "keep_best", CFG_BOOL, "false", NULL, NO_RANGE, "keep RUN_DIR/best: the checkpoint of the lowest val_loss, never pruned (needs eval.every_steps)"},
    {"ckpt", "if_none_valid", CFG_ENUM, "fail", "fail|restart", NO_RANGE, "--resume auto finding checkpoints but none valid: fail, or start from scratch"},

    {"eval", "every_steps", CFG_INT, "0", NULL, 0, ANY_COUNT, "validation every N steps, after the update (0 = off)"},
    {"eval", "max_samples", CFG_INT, "1024", NULL, 0, ANY_COUNT, "validation samples per evaluation (0 = the whole split)"},
    {"eval", "data_path", CFG_STRING, "", NULL, NO_RANGE, "validation dataset directory"},
    {"eval", "patience", CFG_INT, "0", NULL, 0, ANY_COUNT, "stop after this many evaluations without a lower val_loss (0 = never)"},

    {"log", "every", CFG_INT, "10", NULL, 1, ANY_COUNT, "progress line every N steps"},
};

#define COUNT(a) (int)(sizeof(a) / sizeof(a)[0])

const config_key *cli_schema(int *n)
{
    static config_key all[COUNT(run_keys) + MODEL_N_FIELDS + COUNT(other_keys)];
    static int len;
    if (len == 0) {
        for (int i = 0; i < COUNT(run_keys); i++) all[len++] = run_keys[i];
        for (int i = 0; i < MODEL_N_FIELDS; i++) all[len++] = model_fields[i].key;
        for (int i = 0; i < COUNT(other_keys); i++) all[len++] = other_keys[i];
    }
    *n = len;
    return all;
}

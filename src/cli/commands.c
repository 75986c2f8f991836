/* The subcommand table: names, one-line summaries and --help texts (the
 * commands and options of docs/usage.md). */
#include "cli.h"

int cmd_train(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_prep(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);

const command commands[] = {
    {"prep", "tokenize raw text into a dataset of zstd token shards",
     "usage: mpilm prep (--vocab DIR | --train-vocab N) --tokenizer bpe|wordpiece --out datasets/NAME [--overwrite] FILE...\n"
     "                  [--valid-fraction F] [--jsonl [--text-key K]] [--split-sentences]\n"
     "\n"
     "Tokenizes raw UTF-8 text (one sentence per line, a blank line between documents)\n"
     "into datasets/NAME/: the vocab files, manifest.json and *.zst shards. An input\n"
     "compressed with zstd or gzip (told by its first bytes) is read directly.\n"
     "Runs in parallel under mpirun: the input is cut into pieces at document boundaries\n"
     "(independent of the rank count, so the dataset is the same for any -np) and the\n"
     "ranks share them.\n"
     "\n"
     "  --vocab DIR          use the vocabulary in DIR (vocab.txt, or encoder.json + vocab.bpe)\n"
     "  --train-vocab N      train a vocabulary of N tokens from the input first\n"
     "  --tokenizer KIND     bpe (GPT-2 byte-level) or wordpiece (BERT)\n"
     "  --out DIR            dataset directory to create (built beside it, moved into place when complete)\n"
     "  --overwrite          replace the dataset already in DIR (only once the new one is complete)\n"
     "  --replace-invalid    replace invalid UTF-8 with U+FFFD instead of refusing it\n"
     "  --valid-fraction F   hold out about F (0 <= F < 1) of the documents, whole, into valid-NNNNN.zst\n"
     "                       (a fixed per-document choice: the same for any -np)\n"
     "  --jsonl              input: one JSON object per line, one document each; its text's lines\n"
     "                       are the sentences (an empty text is skipped)\n"
     "  --text-key K         --jsonl: the key of the text (default text)\n"
     "  --split-sentences    also cut each line into sentences by the rule of docs/usage.md\n",
     cmd_prep},
    {"train", "train a model (under mpirun for pipeline and data parallelism)",
     "usage: mpilm train --config FILE [--set section.key=value]... [--resume auto|PATH | --overwrite]\n"
     "                   [--print-config]\n"
     "\n"
     "Trains the model of FILE; keys and defaults in docs/usage.md. Writes\n"
     "RUN_DIR/metrics.jsonl and checkpoints RUN_DIR/step-NNNNNNN/ with RUN_DIR/latest.\n"
     "One run at a time per RUN_DIR (RUN_DIR/.lock); a RUN_DIR that holds an earlier run\n"
     "needs --resume or --overwrite. eval.every_steps = N validates on eval.data_path every\n"
     "N steps (rows with val_loss; ckpt.keep_best keeps RUN_DIR/best, eval.patience stops early).\n"
     "\n"
     "  --config FILE        INI configuration (launch/configs/ has examples)\n"
     "  --set S.K=V          override one key (repeatable), e.g. --set train.steps=50\n"
     "  --resume auto|PATH   continue from RUN_DIR/latest (auto) or from a checkpoint\n"
     "  --overwrite          remove RUN_DIR's earlier run (checkpoints, latest, metrics.jsonl;\n"
     "                       nothing else) and start over\n"
     "  --print-config       print the effective configuration with the origin of each value and exit\n",
     cmd_train},
    {"plan", "before a job: every layout of N ranks with its memory per rank and predicted speed",
     "usage: mpilm plan --config FILE [--set section.key=value]... --np N [--json]\n"
     "                  [--net GBIT_S,LATENCY_US] [--mem-per-rank MIB]\n"
     "\n"
     "For the model, batch and precision of FILE: every (pp, dp, tp, zero, schedule) of N\n"
     "ranks (tp 1d), each rank's predicted peak resident memory (the allocation plan train\n"
     "checks before it starts), the predicted step time and tokens/s (block, embedding and\n"
     "head times measured on this machine at the run's shapes, cached; communication from\n"
     "--net), the pipeline bubble and the bytes a rank sends per step; fastest first, then\n"
     "each refused layout with its reason (does not divide, does not fit). With\n"
     "train.global_batch the batch stays fixed and micro_batches follows dp; otherwise the\n"
     "global batch is train.micro_batch x train.micro_batches x the configuration's dp.\n"
     "\n"
     "  --np N               ranks of the job\n"
     "  --net G,L            network of the target cluster: G Gbit/s, L us latency (default 100,2)\n"
     "  --mem-per-rank MIB   what a rank may use (default: this node's cgroup limit or\n"
     "                       MemAvailable, shared by the ranks its cores hold)\n"
     "  --json               JSON: layouts[] with pp, dp, tp, zero, schedule, micro_batches,\n"
     "                       per_rank_peak_mib[], peak_mib, tokens_per_s, step_s, bubble,\n"
     "                       sent_mib_per_step, ok and why\n",
     cmd_plan},
    {"eval", "evaluate a checkpoint on a dataset",
     "usage: mpilm eval --ckpt PATH --data DATASET [--split train|valid] [--max-samples N] [--json FILE]\n"
     "                  [--seed S] [--micro-batch B] [--precision auto|fp32|bf16]\n"
     "\n"
     "One pass over the dataset (or its first N samples): causal-LM loss and perplexity, or\n"
     "MLM loss/accuracy and NSP loss/accuracy, as means over target tokens. Runs under mpirun\n"
     "with any number of ranks. --json FILE writes perplexity, lm_loss, mlm_loss,\n"
     "mlm_accuracy, nsp_loss, nsp_accuracy, samples, tokens. MLM masks come from --seed\n"
     "(default 12345). --precision: as train.precision (auto = bf16 where the CPU has bf16\n"
     "instructions); fp32 checks a bf16 figure. --split: the dataset's split to evaluate\n"
     "(default valid when the dataset has one, made by prep --valid-fraction, else train).\n",
     cmd_eval},
    {"generate", "generate text from a GPT checkpoint, or fill [MASK]s with a BERT one",
     "usage: mpilm generate --ckpt PATH --prompt TEXT [--max-tokens N] [--temperature T]\n"
     "                      [--top-k K] [--top-p P] [--seed S] [--json]\n"
     "       mpilm generate --ckpt BERT_CKPT --prompt \"the [MASK] sat\" [--top-k K] [--json]\n"
     "\n"
     "GPT, Llama: --temperature 0 is greedy (default 1); --top-k 0 and --top-p 1 keep every token.\n"
     "The prompt and --max-tokens (default 50) must fit in the model's max_positions.\n"
     "--json prints {\"prompt_ids\":[...],\"ids\":[...],\"text\":\"...\"} (ids: generated only).\n"
     "BERT (fill-mask): [CLS] TEXT [SEP] through the MLM head once; for each [MASK] the\n"
     "--top-k (default 5; 0 = all) tokens with their softmax probabilities; --json prints\n"
     "an array per mask of {\"token\",\"id\",\"probability\"}.\n",
     cmd_generate},
    {"export", "export a checkpoint to Hugging Face safetensors",
     "usage: mpilm export --ckpt PATH --format hf --out DIR [--dtype fp32|bf16]\n"
     "\n"
     "Writes DIR/model.safetensors and config.json (BertForPreTraining / GPT2LMHeadModel /\n"
     "LlamaForCausalLM names, with bos/eos/pad ids of the vocabulary) and the tokenizer\n"
     "files Hugging Face loads (vocab files, tokenizer.json, tokenizer_config.json,\n"
     "special_tokens_map.json, GPT and Llama: generation_config.json). --dtype fp32\n"
     "(default) writes the fp32 weights as they are; bf16 rounds each to nearest even\n"
     "(as torch's .bfloat16()), half the size.\n",
     cmd_export},
    {"import", "import a Hugging Face safetensors model as a checkpoint",
     "usage: mpilm import --hf DIR --out RUN_DIR\n"
     "\n"
     "Reads DIR/config.json and model.safetensors (bert or gpt2) into RUN_DIR/step-0000000.\n"
     "F32, BF16 and F16 tensors are widened to fp32 exactly (F64 is rounded).\n",
     cmd_import},
    {"inspect", "verify and describe a shard, dataset or checkpoint",
     "usage: mpilm inspect SHARD|DATASET|CHECKPOINT\n"
     "\n"
     "Prints the header or manifest and verifies every checksum; exits non-zero on any fault.\n",
     cmd_inspect},
    {"plot", "draw loss, learning-rate, grad-norm and throughput curves of runs",
     "usage: mpilm plot RUN_DIR... [--out PREFIX]\n"
     "\n"
     "Draws the runs overlaid, each series titled by its run directory's name, in four\n"
     "panels against step from each RUN_DIR/metrics.jsonl: loss (per objective, and the\n"
     "validation loss where there is one), learning rate, grad norm, tokens/s; into\n"
     "PREFIX.png and PREFIX.svg (default PREFIX = RUN_DIR/curves for one run, ./curves for\n"
     "several), keeping the data (PREFIX.dat) and the gnuplot script (PREFIX.gp) beside them.\n",
     cmd_plot},
    {"tokenize", "tokenize stdin lines to token ids",
     "usage: mpilm tokenize --vocab DIR [--tokenizer bpe|wordpiece] [--json]\n"
     "\n"
     "One output line per input line: token ids separated by spaces, or with --json\n"
     "{\"ids\":[...],\"tokens\":[...]}. No [CLS]/[SEP] or end-of-text token is added;\n"
     "special-token strings in the text ([CLS], <|endoftext|>, ...) become their ids.\n"
     "\n"
     "  --vocab DIR          vocab.txt (WordPiece), or encoder.json/vocab.json + vocab.bpe/merges.txt (BPE)\n"
     "  --tokenizer KIND     bpe or wordpiece (default: detected from the files in DIR)\n"
     "  --json               one JSON object per line with the ids and the token strings\n",
     cmd_tokenize},
};

const int n_commands = (int)(sizeof commands / sizeof commands[0]);

// The peer of bench_tokenizer.c: Hugging Face's tokenizers (npm "tokenizers",
// Rust core) with the same vocabulary files and the settings of Hugging Face's
// gpt2 / bert-base-uncased tokenizer.json. Prints the median MB/s, the token
// count and the same ids checksum as bench_tokenizer.c.
//   node bench_tokenizer.js VOCAB_DIR bpe|wordpiece FILE [REPEATS]
"use strict";
const fs = require("fs");
const path = require("path");
const hf = require("tokenizers");

function bpeJson(dir) {
  const vocab = JSON.parse(fs.readFileSync(path.join(dir, "encoder.json"), "utf8"));
  const merges = fs.readFileSync(path.join(dir, "vocab.bpe"), "utf8").split("\n")
    .filter((l, i) => l.length > 0 && !(i === 0 && l.startsWith("#version")));
  return {
    version: "1.0", truncation: null, padding: null, added_tokens: [], normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null, decoder: null,
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "",
             fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  };
}

function wordpieceJson(dir) {
  const lines = fs.readFileSync(path.join(dir, "vocab.txt"), "utf8").split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  const vocab = {};
  lines.forEach((t, i) => { vocab[t] = i; });
  return {
    version: "1.0", truncation: null, padding: null, added_tokens: [],
    normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: "BertPreTokenizer" }, post_processor: null, decoder: null,
    model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab },
  };
}

async function main() {
  const [dir, kind, file, reps] = process.argv.slice(2);
  const repeats = Number(reps || 3);
  const bytes = fs.statSync(file).size;
  const lines = fs.readFileSync(file, "utf8").split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  const json = kind === "bpe" ? bpeJson(dir) : wordpieceJson(dir);
  const speeds = [];
  let tokens = 0, checksum = 0;
  for (let r = 0; r < repeats; r++) {
    const tok = hf.Tokenizer.fromString(JSON.stringify(json));
    tokens = 0;
    checksum = 0;
    const all = [];
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < lines.length; i += 4096) {
      const out = await tok.encodeBatch(lines.slice(i, i + 4096), { addSpecialTokens: false });
      for (const e of out) all.push(e.getIds());
    }
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    speeds.push(bytes / 1e6 / dt);
    for (const ids of all) {   // the checksum is not timed
      tokens += ids.length;
      for (const id of ids) checksum = (Math.imul(checksum, 31) + id) >>> 0;
    }
  }
  speeds.sort((a, b) => a - b);
  console.log(`hf-tokenizers ${kind}: ${speeds[Math.floor(repeats / 2)].toFixed(2)} MB/s (median of ${repeats}), ` +
              `${tokens} tokens, checksum ${checksum.toString(16).padStart(8, "0")}`);
}

main().catch((e) => { console.error(e); process.exit(1); });

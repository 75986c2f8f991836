// Hugging Face's own tokenizers (npm "tokenizers", the Rust core) on the
// tokenizer files of an `mpilm export --format hf` directory.
//
//   node hf_export_tokenizer.js texts OUT CORPUS... REFERENCE.jsonl...
//       writes OUT: the texts to compare, one per line: every line of each
//       CORPUS, the "text" of every REFERENCE line, and hard cases (accents,
//       CJK, emoji, control characters, long words, special-token strings)
//   node hf_export_tokenizer.js encode HF_DIR TEXTS OUT_PREFIX
//       encodes every line of TEXTS (no special tokens added) with
//       HF_DIR/tokenizer.json (Tokenizer.fromFile) into OUT_PREFIX.file and
//       with a tokenizer built from vocab.json + merges.txt / vocab.txt by the
//       package's model constructors into OUT_PREFIX.model, one line of
//       space-separated ids per text (as `mpilm tokenize` writes them); then
//       checks config.json, generation_config.json, tokenizer_config.json and
//       special_tokens_map.json: the special ids inside vocab_size (which
//       equals the embedding's rows in model.safetensors) and naming the right
//       tokens, [CLS] A [SEP] from the post-processor, and for BPE that
//       decoding gives the text back. Exit 0 = every check passed.
"use strict";
const fs = require("fs");
const path = require("path");
const hf = require("tokenizers");

function fail(msg) {
  console.error("hf_export_tokenizer: " + msg);
  process.exit(1);
}

function lines(file) {
  const l = fs.readFileSync(file, "utf8").split("\n");
  if (l[l.length - 1] === "") l.pop();
  return l;
}

const HARD = [
  "", " ", "   leading and trailing   ", "tab\there\tand\tthere", "naïve café Ångström Œuvre façade",
  "ÀÉÎÕÜ àéîõü ñ Ñ ß ẞ", "İstanbul ΣΊΣΥΦΟΣ Straße", "e\u0301 a\u0308 combining marks", "ﬁ ﬂ ligatures ½ ²",
  "你好世界，中文字符。", "日本語のテキストとカタカナ", "한국어 텍스트", "𠀀𪜀 extension ideographs",
  "👨‍👩‍👧‍👦 family 🇩🇪 flag 👍🏽", "emoji😀glued😀together", "ctl\u0001\u0002\u001fchars\u007f",
  "zero\u200bwidth\u200djoiner\ufeffbom", "soft\u00adhyphen nbsp\u00a0here", "\u0085next line \u2028 separator",
  "العربية من اليمين", "עברית", "Ελληνικά κείμενο", "русский текст Ёё", "ไทย ภาษา", "हिन्दी देवनागरी",
  "x".repeat(99), "y".repeat(100), "z".repeat(101), "supercalifragilistic".repeat(12),
  "don't I'm we'll they've she'd it's YOU'RE", "12345 3.14159 1,000,000 2nd 1/2",
  "punctuation!!! ??? ... --- ((()))[]{}<>", "mixed123numbers456", "\\back\\slash \"quotes\" 'single'",
  "<|endoftext|>", "before<|endoftext|>after", "a <|endoftext|> b <|endoftext|>", "<|endoftext|",
  "[CLS] [SEP] [MASK] [PAD] [UNK]", "the [MASK] sat on the [MASK].", "[cls] lowercase brackets [mask]",
  "[CLS]glued[SEP]", "trailing spaces   ", "multiple     inner     spaces", "\u3000ideographic space\u3000",
];

function writeTexts(out, inputs) {
  const texts = [];
  for (const f of inputs) {
    if (f.endsWith(".jsonl")) for (const l of lines(f)) texts.push(JSON.parse(l).text);
    else texts.push(...lines(f));
  }
  texts.push(...HARD);
  for (const t of texts) if (t.includes("\n")) fail("a text holds a newline: " + JSON.stringify(t));
  fs.writeFileSync(out, texts.join("\n") + "\n");
  console.log(`hf_export_tokenizer: ${texts.length} texts (${HARD.length} hard cases)`);
}

function readJson(dir, name) {
  const p = path.join(dir, name);
  if (!fs.existsSync(p)) fail(`${p} is missing`);
  return JSON.parse(fs.readFileSync(p, "utf8"));
}

// rows of the word embedding in model.safetensors (its header, read here)
function embeddingRows(dir) {
  const data = fs.readFileSync(path.join(dir, "model.safetensors"));
  const n = Number(data.readBigUInt64LE(0));
  const header = JSON.parse(data.subarray(8, 8 + n).toString("utf8"));
  const t = header["transformer.wte.weight"] || header["bert.embeddings.word_embeddings.weight"];
  if (!t) fail("model.safetensors has no word embedding");
  return t.shape[0];
}

async function modelTokenizer(dir, bpe, tokCfg, specials) {
  let tok;
  if (bpe) {
    tok = new hf.Tokenizer(await hf.BPE.fromFile(path.join(dir, "vocab.json"), path.join(dir, "merges.txt")));
    tok.setPreTokenizer(hf.byteLevelPreTokenizer(false, true));
  } else {
    tok = new hf.Tokenizer(await hf.WordPiece.fromFile(path.join(dir, "vocab.txt"), { unkToken: tokCfg.unk_token }));
    tok.setNormalizer(hf.bertNormalizer({ cleanText: true, handleChineseChars: true,
                                          stripAccents: tokCfg.strip_accents, lowercase: tokCfg.do_lower_case }));
    tok.setPreTokenizer(hf.bertPreTokenizer());
  }
  tok.addSpecialTokens(specials);
  return tok;
}

async function encodeAll(tok, texts) {
  const out = [];
  for (let i = 0; i < texts.length; i += 2048) {
    const enc = await tok.encodeBatch(texts.slice(i, i + 2048), { addSpecialTokens: false });
    for (const e of enc) out.push(e.getIds().join(" "));
  }
  return out.join("\n") + "\n";
}

function checkId(what, id, vocabSize, tok, want) {
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) fail(`${what} ${id} is not an id in [0, ${vocabSize})`);
  const got = tok.idToToken(id);
  if (got !== want) fail(`${what} ${id} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
}

async function checkFiles(dir, tok, bpe, texts) {
  const cfg = readJson(dir, "config.json");
  const rows = embeddingRows(dir);
  if (cfg.vocab_size !== rows) fail(`config.json vocab_size ${cfg.vocab_size} != embedding rows ${rows}`);
  const tokCfg = readJson(dir, "tokenizer_config.json"), map = readJson(dir, "special_tokens_map.json");
  if (bpe) {
    const eot = map.eos_token;
    if (!eot || map.bos_token !== eot || tokCfg.eos_token !== eot) fail("special_tokens_map / tokenizer_config lack the end-of-text token");
    checkId("config.json bos_token_id", cfg.bos_token_id, rows, tok, eot);
    checkId("config.json eos_token_id", cfg.eos_token_id, rows, tok, eot);
    if ("pad_token_id" in cfg && cfg.pad_token_id !== null) checkId("config.json pad_token_id", cfg.pad_token_id, rows, tok, eot);
    const gen = readJson(dir, "generation_config.json");
    checkId("generation_config.json bos_token_id", gen.bos_token_id, rows, tok, eot);
    checkId("generation_config.json eos_token_id", gen.eos_token_id, rows, tok, eot);
    if (tokCfg.add_prefix_space !== false) fail("tokenizer_config.json add_prefix_space is not false");
    let n = 0;
    for (const t of texts) {
      if (t.includes("\ufffd") || t.includes("<|endoftext|>")) continue;
      const e = await tok.encode(t, null, { addSpecialTokens: false });
      const back = await tok.decode(e.getIds(), false);
      if (back !== t) fail(`tokenizer.json decodes ${JSON.stringify(t)} to ${JSON.stringify(back)}`);
      n++;
    }
    console.log(`hf_export_tokenizer: config ids = ${eot} (${cfg.eos_token_id}); ${n} texts decode back exactly`);
  } else {
    checkId("config.json bos_token_id", cfg.bos_token_id, rows, tok, map.cls_token);
    checkId("config.json eos_token_id", cfg.eos_token_id, rows, tok, map.sep_token);
    checkId("config.json pad_token_id", cfg.pad_token_id, rows, tok, map.pad_token);
    if (map.cls_token !== "[CLS]" || map.sep_token !== "[SEP]" || map.mask_token !== "[MASK]" ||
        map.unk_token !== "[UNK]" || map.pad_token !== "[PAD]") fail("special_tokens_map.json: " + JSON.stringify(map));
    if (typeof tokCfg.do_lower_case !== "boolean") fail("tokenizer_config.json lacks do_lower_case");
    const e = await tok.encode("hello world", "second part", { addSpecialTokens: true });
    const ids = e.getIds(), types = e.getTypeIds();
    const cls = tok.tokenToId("[CLS]"), sep = tok.tokenToId("[SEP]");
    if (ids[0] !== cls || ids[ids.length - 1] !== sep || ids.filter((x) => x === sep).length !== 2 ||
        types[0] !== 0 || types[types.length - 1] !== 1) fail(`pair template: ids ${ids} types ${types}`);
    console.log(`hf_export_tokenizer: config ids [CLS] ${cfg.bos_token_id} [SEP] ${cfg.eos_token_id} [PAD] ` +
                `${cfg.pad_token_id}; do_lower_case ${tokCfg.do_lower_case}; [CLS] A [SEP] B [SEP] with type ids`);
  }
  return tokCfg;
}

async function encode(dir, textsFile, prefix) {
  const bpe = fs.existsSync(path.join(dir, "vocab.json"));
  const texts = lines(textsFile);
  const fromFile = hf.Tokenizer.fromFile(path.join(dir, "tokenizer.json"));
  const tokCfg = await checkFiles(dir, fromFile, bpe, texts);
  const map = readJson(dir, "special_tokens_map.json");
  const specials = [...new Set(Object.values(map))];
  const fromModel = await modelTokenizer(dir, bpe, tokCfg, specials);
  fs.writeFileSync(prefix + ".file", await encodeAll(fromFile, texts));
  fs.writeFileSync(prefix + ".model", await encodeAll(fromModel, texts));
}

const [mode, ...args] = process.argv.slice(2);
(mode === "texts" ? Promise.resolve(writeTexts(args[0], args.slice(1)))
  : mode === "encode" ? encode(args[0], args[1], args[2])
  : Promise.reject(new Error("usage: hf_export_tokenizer.js texts OUT FILE... | encode HF_DIR TEXTS OUT_PREFIX")))
  .catch((e) => fail(e.stack || String(e)));

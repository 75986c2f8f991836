// Every Unicode code point through Hugging Face's tokenizers (npm "tokenizers",
// the Rust core), for tests/integration/tokenizer_unicode.sh:
//   node hf_unicode.js lines-bert CPS    "a<c>b É<c>" per code point (not \n, \r);
//                                        CPS gets each line's code point (hex)
//   node hf_unicode.js vocab             a WordPiece vocabulary holding every single
//                                        character and its ## form (not white space
//                                        or A-Z, so it is an uncased vocabulary)
//   node hf_unicode.js encode-bert VOCAB_DIR FILE
//                                        ids per line: BertNormalizer (clean text,
//                                        Chinese characters, lowercase, strip accents),
//                                        BertPreTokenizer, WordPiece
//   node hf_unicode.js lines-gpt CPS     "a<c>a1<c>1 <c>!" per code point (not \n)
//   node hf_unicode.js pretok-gpt FILE   byte lengths of GPT-2's ByteLevel pre-tokens
"use strict";
const fs = require("fs");
const path = require("path");
const hf = require("tokenizers");

const WHITE_SPACE = new Set([0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003,
  0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000]);

function* codePoints(skip) {
  for (let cp = 0; cp < 0x110000; cp++)
    if ((cp < 0xd800 || cp > 0xdfff) && !skip(cp)) yield cp;
}

function write(lines) {
  fs.writeFileSync(1, lines.join("\n") + "\n");
}

function readLines(file) {
  const lines = fs.readFileSync(file, "utf8").split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

async function encodeAll(tok, lines) {
  const out = [];
  for (let i = 0; i < lines.length; i += 4096) {
    const encs = await tok.encodeBatch(lines.slice(i, i + 4096), { addSpecialTokens: false });
    for (const e of encs) out.push(e.getIds().join(" "));
  }
  return out;
}

async function main() {
  const [mode, a, b] = process.argv.slice(2);
  if (mode === "lines-bert" || mode === "lines-gpt") {
    const bert = mode === "lines-bert";
    const out = [], cps = [];
    for (const cp of codePoints((c) => c === 0x0a || (bert && c === 0x0d))) {
      const c = String.fromCodePoint(cp);
      out.push(bert ? `a${c}b É${c}` : `a${c}a1${c}1 ${c}!`);
      cps.push("U+" + cp.toString(16).toUpperCase().padStart(4, "0"));
    }
    fs.writeFileSync(a, cps.join("\n") + "\n");
    write(out);
  } else if (mode === "vocab") {
    const skip = (c) => WHITE_SPACE.has(c) || (c >= 0x41 && c <= 0x5a) || (c >= 0x1c && c <= 0x1f);
    const out = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    for (const cp of codePoints(skip)) out.push(String.fromCodePoint(cp));
    for (const cp of codePoints(skip)) out.push("##" + String.fromCodePoint(cp));
    write(out);
  } else if (mode === "encode-bert") {
    const vocab = {};
    readLines(path.join(a, "vocab.txt")).forEach((t, i) => { vocab[t] = i; });
    const tok = hf.Tokenizer.fromString(JSON.stringify({
      version: "1.0", truncation: null, padding: null, added_tokens: [],
      normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
      pre_tokenizer: { type: "BertPreTokenizer" }, post_processor: null, decoder: null,
      model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab },
    }));
    write(await encodeAll(tok, readLines(b)));
  } else if (mode === "pretok-gpt") {
    const pre = hf.byteLevelPreTokenizer(false, true);
    write(readLines(a).map((l) => pre.preTokenizeString(l).map((p) => [...p[0]].length).join(" ")));
  } else {
    console.error("usage: node hf_unicode.js lines-bert CPS|vocab|encode-bert VOCAB_DIR FILE|lines-gpt CPS|pretok-gpt FILE");
    process.exit(2);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });

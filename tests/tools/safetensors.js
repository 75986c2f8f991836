// An independent safetensors writer and reader (Node.js, no packages), written
// from the published format, not from mpilm's code, for
// tests/integration/safetensors_format.sh:
//   node safetensors.js write-valid DIR     valid files NAME.safetensors, each with
//                                           NAME.expect: the dump a reader must give
//   node safetensors.js write-invalid DIR   files that break one rule each
//   node safetensors.js dump [--writer] FILE
//                                           reads FILE, checking every rule below
//                                           (--writer: also the reference writer's
//                                           layout), prints the dump; exit 1 naming
//                                           the broken rule
//
// The format (Hugging Face safetensors: the README's "Format" section and
// safetensors/src/tensor.rs, SafeTensors::read_metadata, Metadata::validate,
// prepare() and Dtype, in github.com/huggingface/safetensors):
//  1. Bytes 0-7: N, an unsigned 64-bit little-endian integer, the header's length.
//     8 + N must not pass the end of the file (read_metadata: InvalidHeaderLength);
//     the reference refuses N > 100,000,000 (HeaderTooLarge).
//  2. Bytes 8 .. 8+N-1: the header, UTF-8 (read_metadata: from_utf8, else
//     InvalidHeader) JSON text of one object. The README: it MUST begin with "{"
//     (0x7B) and MAY be padded at its end with spaces (0x20); serde_json, the
//     reference's parser, also takes the other JSON white space there.
//  3. The reference writer (prepare()) pads the header with spaces so that its
//     length N is a multiple of 8: the byte buffer then starts at an 8-byte aligned
//     file offset, and tensors sorted by falling alignment stay aligned.
//  4. Each key but "__metadata__" names a tensor: {"dtype": D, "shape": [d0, ...],
//     "data_offsets": [BEGIN, END]}, BEGIN/END byte offsets relative to the start of
//     the byte buffer (the bytes after the header), END one past the last byte.
//     Names are unique (README: "Duplicate keys are disallowed").
//  5. dtypes and their sizes in bytes (enum Dtype, size()): BOOL 1, U8 1, I8 1,
//     F8_E5M2 1, F8_E4M3 1, I16 2, U16 2, F16 2, BF16 2, I32 4, U32 4, F32 4, F64 8,
//     I64 8, U64 8; newer versions add F8_E8M0 1, C64 8 and the sub-byte F4, F6_E2M3,
//     F6_E3M2 (not written here).
//  6. "__metadata__", optional, is an object of string -> string
//     (HashMetadata: Option<HashMap<String, String>>).
//  7. END - BEGIN = product(shape) * size(dtype) (validate: TensorInvalidInfo);
//     shape [] is a scalar of one element, a 0 in a shape an empty tensor with
//     BEGIN == END (README notes).
//  8. Sorted by offsets, the tensors cover the byte buffer exactly: the first
//     starts at 0, each starts where the previous ends, no holes and no overlaps
//     (validate: InvalidOffset), and the last ends at the end of the file
//     (read_metadata: MetadataIncompleteBuffer; the README: the buffer "cannot
//     contain holes", which prevents polyglot files). The key order in the JSON
//     need not follow the offsets (the reference sorts them).
//  9. Data is little-endian, row-major (C order), not strided (README notes).
"use strict";
const fs = require("fs");
const path = require("path");

const DTYPE_SIZE = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1, I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8, C64: 8,
};
const FLOAT_DTYPES = new Set(["F32", "F64", "F16", "BF16"]);
const HEADER_MAX = 100000000;

// ---- checksums and values -----------------------------------------------------

// FNV-1a, 64 bits, of a byte array: the dump's checksum of a tensor's bytes.
function fnv1a64(bytes) {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h.toString(16).padStart(16, "0");
}

// binary16 -> number, from IEEE 754's definition (exact, subnormals included).
function halfToNumber(h) {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

// The float32 values a reader widening (or, F64, rounding) to float32 gives,
// as little-endian bytes: F32 as stored, BF16 the upper half of a binary32,
// F16 and F64 through their numeric value.
function float32Bytes(dtype, raw) {
  const n = raw.length / DTYPE_SIZE[dtype], out = Buffer.alloc(4 * n);
  for (let i = 0; i < n; i++) {
    if (dtype === "F32") raw.copy(out, 4 * i, 4 * i, 4 * i + 4);
    else if (dtype === "BF16") out.writeUInt32LE(raw.readUInt16LE(2 * i) * 65536, 4 * i);
    else if (dtype === "F16") out.writeFloatLE(halfToNumber(raw.readUInt16LE(2 * i)), 4 * i);
    else out.writeFloatLE(raw.readDoubleLE(8 * i), 4 * i);
  }
  return out;
}

// ---- reading ----------------------------------------------------------------------

class FormatError extends Error {}
function refuse(rule, what) { throw new FormatError(`rule ${rule}: ${what}`); }

// Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
function isUtf8(bytes) {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

// JSON.parse keeps the last of duplicate keys; the raw text is scanned for the
// keys of the top-level object to find a name given twice.
function topLevelKeys(text) {
  const keys = [];
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1 && /^\s*:/.test(text.slice(j + 1, j + 40))) keys.push(JSON.parse(text.slice(i, j + 1)));
      i = j;
    } else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
  }
  return keys;
}

function isCount(x) { return Number.isSafeInteger(x) && x >= 0; }

// Reads and checks a whole file: {headerLength, metadata, tensors: [{name, dtype,
// shape, begin, end, raw}]}; throws FormatError naming the rule broken.
function read(file, writerLayout) {
  const buf = fs.readFileSync(file);
  if (buf.length < 8) refuse(1, `${buf.length} bytes, fewer than the 8 of the header length`);
  const n64 = buf.readBigUInt64LE(0);
  if (n64 > BigInt(HEADER_MAX)) refuse(1, `header length ${n64} above the reference's limit ${HEADER_MAX}`);
  const n = Number(n64);
  if (8 + n > buf.length) refuse(1, `header length ${n} runs past the end of the file (${buf.length} bytes)`);
  const headerBytes = buf.subarray(8, 8 + n);
  if (!isUtf8(headerBytes)) refuse(2, "the header is not UTF-8");
  const text = headerBytes.toString("utf-8");
  if (text[0] !== "{") refuse(2, "the header does not begin with {");
  let header;
  try {
    header = JSON.parse(text);
  } catch (e) {
    refuse(2, `the header is not JSON (${e.message})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) refuse(2, "the header is not a JSON object");
  if (writerLayout) {
    if (n % 8 !== 0) refuse(3, `header length ${n} is not a multiple of 8 (the byte buffer starts unaligned)`);
    if (!/^ *$/.test(text.slice(text.lastIndexOf("}") + 1))) refuse(3, "the header is padded with other than spaces");
  }
  const keys = topLevelKeys(text);
  const dup = keys.find((k, i) => keys.indexOf(k) !== i);
  if (dup !== undefined) refuse(4, `the name "${dup}" appears twice`);

  let metadata = null;
  const tensors = [];
  const bufferLength = buf.length - 8 - n;
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") {
      if (info === null || typeof info !== "object" || Array.isArray(info)) refuse(6, "__metadata__ is not an object");
      for (const [k, v] of Object.entries(info))
        if (typeof v !== "string") refuse(6, `__metadata__ "${k}" is not a string`);
      metadata = info;
      continue;
    }
    if (info === null || typeof info !== "object") refuse(4, `"${name}" is not an object`);
    const { dtype, shape, data_offsets: offsets } = info;
    if (!(dtype in DTYPE_SIZE)) refuse(5, `"${name}": unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every(isCount)) refuse(4, `"${name}": shape is not a list of counts`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1])
      refuse(4, `"${name}": data_offsets is not [BEGIN, END] with BEGIN <= END`);
    const [begin, end] = offsets;
    const bytes = shape.reduce((a, d) => a * d, 1) * DTYPE_SIZE[dtype];
    if (end - begin !== bytes) refuse(7, `"${name}": ${end - begin} bytes for ${bytes} of shape and dtype`);
    if (end > bufferLength) refuse(8, `"${name}": END ${end} past the byte buffer (${bufferLength} bytes)`);
    tensors.push({ name, dtype, shape, begin, end, raw: buf.subarray(8 + n + begin, 8 + n + end) });
  }
  checkCover(tensors, bufferLength);
  if (writerLayout)
    for (const t of tensors)
      if ((8 + n + t.begin) % DTYPE_SIZE[t.dtype] !== 0) refuse(3, `"${t.name}" starts unaligned for ${t.dtype}`);
  return { headerLength: n, metadata, tensors };
}

function checkCover(tensors, bufferLength) {
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const t of sorted) {
    if (t.begin > at) refuse(8, `a hole of ${t.begin - at} bytes before "${t.name}" at ${at}`);
    if (t.begin < at) refuse(8, `"${t.name}" overlaps the previous tensor (begins at ${t.begin}, before ${at})`);
    at = t.end;
  }
  if (at !== bufferLength) refuse(8, `the tensors end at ${at}, the byte buffer at ${bufferLength}`);
}

// The dump both readers print: one line per metadata entry and per tensor,
// sorted by UTF-8 bytes (as C's strcmp); float tensors also give the checksum
// of their values as float32.
function dump(file, writerLayout = false) {
  const lines = [], { metadata, tensors } = read(file, writerLayout);
  const byBytes = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b));
  for (const k of Object.keys(metadata || {}).sort(byBytes)) lines.push(`meta ${k} ${metadata[k]}`);
  for (const t of tensors.sort((a, b) => byBytes(a.name, b.name))) {
    let line = `tensor ${t.name} ${t.dtype} [${t.shape.join(",")}] ${t.raw.length} ${fnv1a64(t.raw)}`;
    if (FLOAT_DTYPES.has(t.dtype)) line += ` f32 ${fnv1a64(float32Bytes(t.dtype, t.raw))}`;
    lines.push(line);
  }
  return lines.join("\n") + "\n";
}

// ---- writing ----------------------------------------------------------------------

// Deterministic bytes: a xorshift32 stream seeded per tensor.
function randomBytes(count, seed) {
  const out = Buffer.alloc(count);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s & 0xff;
  }
  return out;
}

// Element bytes of a dtype, random but without NaNs in F16 and F64 (their NaN
// payloads need not survive a conversion to float32; F32 and BF16 keep theirs
// and get some).
function tensorBytes(dtype, count, seed) {
  const raw = randomBytes(count * DTYPE_SIZE[dtype], seed);
  for (let i = 0; i < count; i++) {
    if (dtype === "F16" && (raw.readUInt16LE(2 * i) & 0x7c00) === 0x7c00) raw.writeUInt16LE(0x7c00, 2 * i);
    if (dtype === "F64" && !Number.isFinite(raw.readDoubleLE(8 * i))) raw.writeDoubleLE(i - 0.1, 8 * i);
    if (dtype === "F64" && i === 0) raw.writeDoubleLE(1 + 2 ** -30, 0);   // rounds to 1 in float32
  }
  if (dtype === "F16" && count > 2) raw.writeUInt16LE(0x0001, 2), raw.writeUInt16LE(0x8000, 4);   // subnormal, -0
  return raw;
}

// tensors: [{name, dtype, shape, raw?}], laid out in the given (data) order;
// keyOrder: the names in JSON order (default: data order). pad: "align" (spaces
// to a multiple of 8, as the reference writer), "none", or a string to append.
// meta: an object or null. Returns the file's bytes.
function serialize(tensors, { keyOrder, pad = "align", meta = null, edit = (h) => h } = {}) {
  let at = 0;
  const entries = {};
  for (const t of tensors) {
    const count = t.shape.reduce((a, d) => a * d, 1);
    t.raw = t.raw || tensorBytes(t.dtype, count, t.seed || at + 7);
    entries[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.raw.length] };
    at += t.raw.length;
  }
  const header = {};
  if (meta) header.__metadata__ = meta;
  for (const name of keyOrder || tensors.map((t) => t.name)) header[name] = entries[name];
  let text = edit(JSON.stringify(header));
  if (pad === "align") text += " ".repeat((8 - (Buffer.byteLength(text) % 8)) % 8);
  else if (pad !== "none") text += pad;
  const headerBytes = Buffer.from(text, "utf-8"), length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(headerBytes.length));
  return Buffer.concat([length, headerBytes, ...tensors.map((t) => t.raw)]);
}

const MIXED = () => [
  { name: "wte.weight", dtype: "F32", shape: [5, 3] },
  { name: "h.0.attn.bias", dtype: "BF16", shape: [7] },
  { name: "h.0.mlp.half", dtype: "F16", shape: [2, 2, 3] },
  { name: "ids", dtype: "I64", shape: [3] },
  { name: "counts", dtype: "I32", shape: [2, 1] },
  { name: "double", dtype: "F64", shape: [4] },
  { name: "bytes", dtype: "U8", shape: [5] },
];

// Valid files, each making one of the format's freedoms visible.
const VALID = {
  // several dtypes, the JSON keys in reverse data order, padded to 8, metadata
  "dtypes-keys-reversed": () => {
    const t = MIXED();
    return serialize(t, { keyOrder: t.map((x) => x.name).reverse(), meta: { format: "pt", note: "key order != offsets" } });
  },
  // the same tensors, header not padded (N odd: the byte buffer starts unaligned), no metadata
  "unpadded-unaligned": () => {
    const t = MIXED();
    return serialize(t, { pad: "none", edit: (h) => (Buffer.byteLength(h) % 8 ? h : h.replace("{", "{ ")) });
  },
  // padded with more spaces than alignment needs, and with the other JSON white space
  "padded-extra-spaces": () => serialize([{ name: "a", dtype: "F32", shape: [2] }], { pad: "\n\t\r          " }),
  // scalar, empty tensors (one at the same offset as a non-empty one), a 3-d tensor, a UTF-8 name
  "scalar-and-empty": () => serialize([
    { name: "scalar", dtype: "F32", shape: [] },
    { name: "empty", dtype: "F32", shape: [0] },
    { name: "empty.2d", dtype: "BF16", shape: [3, 0] },
    { name: "caf\u00e9.\u03b1", dtype: "F32", shape: [1, 2, 2] },
    { name: "scalar.i64", dtype: "I64", shape: [] },
  ], { keyOrder: ["caf\u00e9.\u03b1", "empty.2d", "scalar.i64", "empty", "scalar"], meta: {} }),
  // the other dtypes of the format, stored and named as bytes
  "other-dtypes": () => serialize(["BOOL", "I8", "I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2"].map(
    (dtype, i) => ({ name: `t.${dtype}`, dtype, shape: [i + 1] }))),
  // no tensors at all
  "no-tensors": () => serialize([], { meta: { format: "pt" } }),
};

// Invalid files: each breaks one rule; the shell test names what mpilm must say.
const TWO = () => [{ name: "a", dtype: "F32", shape: [2] }, { name: "b", dtype: "F32", shape: [2] }];
const withOffsets = (a, b) => (h) => h.replace('"data_offsets":[0,8]', `"data_offsets":${a}`)
  .replace('"data_offsets":[8,16]', `"data_offsets":${b}`);
const INVALID = {
  "header-past-end": () => { const f = serialize(TWO()); f.writeBigUInt64LE(BigInt(f.length)); return f; },
  "hole": () => Buffer.concat([serialize(TWO(), { edit: withOffsets("[0,8]", "[12,20]") }), Buffer.alloc(4)]),
  "hole-at-start": () => Buffer.concat([serialize(TWO(), { edit: withOffsets("[4,12]", "[12,20]") }), Buffer.alloc(4)]),
  "overlap": () => serialize(TWO(), { edit: withOffsets("[0,8]", "[4,12]") }).subarray(0, -4),
  "size-mismatch": () => serialize(TWO(), { edit: (h) => h.replace('"shape":[2]', '"shape":[3]') }),
  "past-buffer": () => serialize(TWO()).subarray(0, -4),
  "trailing-bytes": () => Buffer.concat([serialize(TWO()), Buffer.from("polyglot")]),
  "not-utf8": () => {
    const f = serialize([{ name: "a\u00e9", dtype: "F32", shape: [2] }]);
    f[f.indexOf(Buffer.from("\u00e9")) + 1] = 0x28;   // C3 28: a lead byte without its continuation
    return f;
  },
  "not-json": () => serialize(TWO(), { edit: (h) => h.slice(0, -1) }),
  "not-object": () => serialize([], { edit: () => "[1,2]" }),
  "leading-space": () => serialize(TWO(), { edit: (h) => " " + h }),
  "unknown-dtype": () => serialize(TWO(), { edit: (h) => h.replace('"dtype":"F32"', '"dtype":"float32"') }),
  "duplicate-name": () => serialize(TWO(), { edit: (h) => h.replace('"b":', '"a":') }),
  "metadata-not-string": () => serialize(TWO(), { meta: { epoch: 3 } }),
  "padded-with-nul": () => serialize(TWO(), { pad: "none", edit: (h) => h + "\0\0\0\0\0\0\0\0".slice(0, 8 - (h.length % 8)) }),
};

function writeAll(table, dir, withExpect) {
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, make] of Object.entries(table)) {
    const file = path.join(dir, `${name}.safetensors`);
    fs.writeFileSync(file, make());
    if (withExpect) fs.writeFileSync(path.join(dir, `${name}.expect`), dump(file));
  }
}

function main(argv) {
  const [cmd, ...rest] = argv;
  if (cmd === "write-valid" && rest.length === 1) return writeAll(VALID, rest[0], true);
  if (cmd === "write-invalid" && rest.length === 1) return writeAll(INVALID, rest[0], false);
  if (cmd === "dump" && rest.length >= 1) {
    const file = rest[rest.length - 1];
    try {
      return process.stdout.write(dump(file, rest[0] === "--writer"));
    } catch (e) {
      if (!(e instanceof FormatError)) throw e;
      process.stderr.write(`${file}: ${e.message}\n`);
      process.exit(1);
    }
  }
  process.stderr.write("usage: node safetensors.js write-valid DIR | write-invalid DIR | dump [--writer] FILE\n");
  process.exit(2);
}

main(process.argv.slice(2));

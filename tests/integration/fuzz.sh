#!/bin/sh
# The libFuzzer targets of tests/fuzz (ASan + UBSan), briefly: builds them,
# replays every seed and every committed regression input, then fuzzes each
# target FUZZ_SECONDS (default 8) seconds; any crash, hang, leak or sanitizer
# report fails. Skips (77) without clang's libFuzzer (make fuzz-deps).
BUILD=${BUILD:-build}
[ "${SAN:-0}" != 1 ] || { echo "skip: the fuzz targets carry their own ASan + UBSan; make test runs them"; exit 77; }
command -v clang >/dev/null || { echo "skip: no clang (make fuzz-deps installs clang and libclang-rt-14-dev)"; exit 77; }
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' > "$t/probe.c"
clang -fsanitize=fuzzer,address,undefined -o "$t/probe" "$t/probe.c" > "$t/probe.log" 2>&1 ||
  { echo "skip: clang cannot link -fsanitize=fuzzer,address,undefined (make fuzz-deps installs libclang-rt-14-dev): $(head -1 "$t/probe.log")"; exit 77; }
make -s -j2 fuzz-build BUILD="$BUILD" > "$t/build.log" 2>&1 || { tail -20 "$t/build.log"; echo "fuzz: build failed"; exit 1; }
BUILD="$BUILD" FUZZ_SECONDS=${FUZZ_SECONDS:-8} sh tests/fuzz/run.sh

# mpilm — build, test, benchmark, install.
#
#   make deps      install missing Debian packages (idempotent; root or sudo)
#   make           build ./mpilm
#   make test      deps + test-deps + build + every unit test and every multi-rank test
#   make test-deps what some tests need besides (PyTorch for the reference checks,
#                  Slurm + munge for the launch test, sshd for the multi-host test);
#                  without root they skip, saying why
#   make check     the same tests built with AddressSanitizer + UBSan
#   make bench     benchmarks against the named peers
#   make mutate    mutation checks: tests/mutations.ini's mutants must each fail a test
#   make fuzz      libFuzzer targets (clang, ASan + UBSan) of every parser of outside
#                  input, FUZZ_SECONDS=N each (default 60); make fuzz-deps installs clang
#   make bench-deps  the peers' packages (PyTorch, jemalloc); make deps never needs them
#   make demo      the main job end to end on the shipped sample
#   make install PREFIX=/usr/local
#
# Every source file under src/<module>/ is part of libmpilm.a except src/cli/
# (the command line: libmpilm_cli.a, main.c apart); every tests/unit/test_*.c is a Criterion test binary and every
# tests/mpi/*.c a program run under mpirun. New files need no edit here.

PREFIX  ?= /usr/local
BUILD   ?= build
SAN     ?= 0
PORTABLE ?= 0

CC := mpicc

# The best instruction set this CPU runs, or plain x86-64 with PORTABLE=1
# (for a binary that must run on other machines of a cluster).
CPU_FLAGS := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
ifeq ($(PORTABLE),1)
  MARCH := x86-64
else ifneq ($(and $(findstring avx512f,$(CPU_FLAGS)),$(findstring avx512bw,$(CPU_FLAGS)),$(findstring avx512vl,$(CPU_FLAGS)),$(findstring avx512dq,$(CPU_FLAGS))),)
  MARCH := x86-64-v4
else ifneq ($(and $(findstring avx2,$(CPU_FLAGS)),$(findstring fma,$(CPU_FLAGS)),$(findstring bmi2,$(CPU_FLAGS))),)
  MARCH := x86-64-v3
else
  MARCH := x86-64
endif

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter -Wno-format-truncation
CFLAGS  ?= -O3
CFLAGS  += -std=c17 -D_GNU_SOURCE -march=$(MARCH) -fopenmp -fno-math-errno -fno-trapping-math -g $(WARN) -Isrc -MMD -MP
LDLIBS  := -lscalapack-openmpi -lblis -ldnnl -lzstd -lz -lxxhash -lcjson -lm
LDFLAGS += -fopenmp

ifeq ($(SAN),1)
  CFLAGS  += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif

LIB_SRC   := $(filter-out src/cli/%,$(sort $(wildcard src/*/*.c)))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC   := $(filter-out src/cli/main.c,$(sort $(wildcard src/cli/*.c)))
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
LIBS_A    := $(BUILD)/libmpilm_cli.a $(BUILD)/libmpilm.a
MAIN_OBJ  := $(BUILD)/src/cli/main.o
UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
MPI_SRC   := $(sort $(wildcard tests/mpi/*.c))
MPI_BIN   := $(MPI_SRC:tests/mpi/%.c=$(BUILD)/tests/mpi/%)
BENCH_SRC := $(sort $(wildcard tests/bench/*.c))
BENCH_BIN := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/tests/bench/%)
TOOL_SRC  := $(sort $(wildcard tests/tools/*.c))
TOOL_BIN  := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/tools/%)
TEST_HELPERS := $(sort $(wildcard tests/common/*.c))
TEST_HELPER_OBJ := $(TEST_HELPERS:%.c=$(BUILD)/%.o)

# The mpilm binary lives at the top for users; sanitizer builds keep theirs
# under their build directory.
ifeq ($(SAN),1)
  MPILM := $(BUILD)/mpilm
else
  MPILM := mpilm
endif

DEB_PACKAGES := build-essential libopenmpi-dev openmpi-bin libscalapack-openmpi-dev libblis-dev \
                libzstd-dev zstd zlib1g-dev libdnnl-dev libcriterion-dev libxxhash-dev libcjson-dev pkg-config gnuplot-nox
BENCH_DEB_PACKAGES := python3-torch libjemalloc2
TEST_DEB_PACKAGES := python3-torch python3-numpy slurm-wlm munge openssh-server openssh-client procps clang libclang-rt-14-dev strace
FUZZ_DEB_PACKAGES := clang libclang-rt-14-dev

.PHONY: all deps test-deps node-deps bench-deps fuzz-deps test check bench demo install clean tests reference mutate fuzz fuzz-build
.DEFAULT_GOAL := all
# Keep test objects between builds (they are intermediate files of pattern rules).
.SECONDARY: $(UNIT_BIN:%=%.o) $(MPI_BIN:%=%.o) $(BENCH_BIN:%=%.o) $(TOOL_BIN:%=%.o)

all: $(MPILM)

$(MPILM): $(MAIN_OBJ) $(LIBS_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libmpilm.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libmpilm_cli.a: $(CLI_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(TEST_HELPER_OBJ) $(LIBS_A)
	$(CC) $(LDFLAGS) -o $@ $(filter-out %.a,$^) $(LIBS_A) -lcriterion $(LDLIBS)

# The data/stream tests share tests/unit/stream_fixture.c (it asserts with Criterion,
# so it cannot join tests/common, which the MPI programs link too).
$(BUILD)/tests/unit/test_data_stream $(BUILD)/tests/unit/test_data_stream_blend: $(BUILD)/tests/unit/stream_fixture.o

$(BUILD)/tests/mpi/%: $(BUILD)/tests/mpi/%.o $(TEST_HELPER_OBJ) $(LIBS_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/bench/%: $(BUILD)/tests/bench/%.o $(BUILD)/libmpilm.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Programs the shell tests call (not tests themselves).
$(BUILD)/tests/tools/%: $(BUILD)/tests/tools/%.o $(BUILD)/libmpilm.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

tests: $(MPILM) $(UNIT_BIN) $(MPI_BIN) $(TOOL_BIN)

# Installs only what is missing of $(1); a no-op when everything is present.
# $(2) = soft: a failure to install is a warning (the tests needing them skip).
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "$@: all present"; exit 0; fi; \
	fail() { if [ "$(2)" = soft ]; then echo "$@: warning: $$1; the tests needing them will skip" >&2; exit 0; \
	  else echo "$@: $$1" >&2; exit 1; fi; }; \
	echo "$@: installing$$missing"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	else fail "need root (or sudo) to install:$$missing"; fi; \
	{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; } || \
	  fail "could not install$$missing"
endef

deps:
	$(call install_missing,$(DEB_PACKAGES))

# Only for the PyTorch peer of make bench and make reference; make deps never needs torch.
bench-deps:
	$(call install_missing,$(BENCH_DEB_PACKAGES))

# PyTorch (reference checks of exports), Slurm + munge (tests/integration/slurm.sh),
# Hugging Face's tokenizers from npm (tokenizer checks against the Rust original).
test-deps:
	$(call install_missing,$(TEST_DEB_PACKAGES),soft)
	@command -v npm >/dev/null || $(MAKE) --no-print-directory node-deps
	@. tests/common/hf_tokenizers.sh && hf_tokenizers_path >/dev/null && \
	  echo "test-deps: Hugging Face tokenizers $$HF_TOKENIZERS_VERSION (npm) present" || \
	  echo "test-deps: warning: the tests against Hugging Face's tokenizers will skip" >&2

# Node.js and npm, only where no node is installed (a NodeSource node brings its own npm).
node-deps:
	$(call install_missing,nodejs npm,soft)

# clang with libFuzzer and its sanitizer runtimes (make fuzz, tests/integration/fuzz.sh).
fuzz-deps:
	$(call install_missing,$(FUZZ_DEB_PACKAGES))

test: deps test-deps
	$(MAKE) tests
	BUILD=$(BUILD) MPILM=./$(MPILM) sh tests/run.sh

check: deps
	$(MAKE) SAN=1 BUILD=build/san tests
	BUILD=build/san MPILM=./build/san/mpilm SAN=1 sh tests/run.sh

bench: deps $(MPILM) $(BENCH_BIN)
	BUILD=$(BUILD) MPILM=./$(MPILM) sh tests/bench/run.sh

mutate: deps test-deps
	python3 tests/mutate.py

demo: deps $(MPILM)
	MPILM=./$(MPILM) sh launch/demo.sh

# Regenerates the PyTorch fixtures under tests/reference/ (needs python3-torch).
reference:
	sh tests/reference/make.sh

install: $(MPILM)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/mpilm
	install -m 755 $(MPILM) $(DESTDIR)$(PREFIX)/bin/mpilm
	cp -r launch $(DESTDIR)$(PREFIX)/share/mpilm/

# libFuzzer targets: tests/fuzz/fuzz_NAME.c, built with clang, ASan and UBSan
# against the library modules the parsers live in (compiled again with the
# same instrumentation under $(BUILD)/fuzz). tests/fuzz/run.sh runs them.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := $(BUILD)/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c17 -D_GNU_SOURCE -march=$(MARCH) -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
                -fopenmp -Wall -Wextra -Werror -Wno-unused-parameter -Isrc -Itests/fuzz $(shell mpicc --showme:compile) -MMD -MP
FUZZ_LIB_SRC := $(sort $(wildcard src/base/*.c src/data/*.c)) src/ckpt/checkpoint.c src/ckpt/checkpoint_manifest.c \
                src/ckpt/safetensors.c src/model/model.c src/model/model_table.c src/cli/schema.c
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/%.o) $(FUZZ_BUILD)/tests/fuzz/fuzz_common.o
FUZZ_SRC     := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN     := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(filter-out tests/fuzz/fuzz_common.c,$(FUZZ_SRC)))

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_BUILD)/libfuzzmpilm.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The model's kernels (needed by model.c, never run by a parser) come uninstrumented from libmpilm.a.
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/libfuzzmpilm.a $(BUILD)/libmpilm.a
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(shell mpicc --showme:link) -fopenmp $(LDLIBS)

fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-deps
	$(MAKE) fuzz-build
	BUILD=$(BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz/run.sh

clean:
	rm -rf build mpilm

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

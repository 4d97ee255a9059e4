# ndgrad — build with `make`; `make test` runs the test suite; `make demo` runs the main job.
CC ?= cc
CSTD = -std=c11
WARN = -Wall -Wextra -Wpedantic
OPT ?= -O3
CFLAGS ?=
EXTRA_CFLAGS ?=
LDFLAGS ?=
# -fno-math-errno: nothing reads errno after libm calls, and without it sqrt and friends cannot
# be vectorised (they must stay calls that may set errno). -fno-trapping-math: nothing reads the
# floating-point exception flags, and without it gcc keeps every select on a float comparison a
# branch below AVX-512 (no masked compares), so exp, tanh and GELU stayed scalar at the AVX2 and
# generic levels (a third of the GPT step at AVX2).
ALL_CFLAGS = $(CSTD) $(WARN) $(OPT) -fno-math-errno -fno-trapping-math -g -fPIC -Iinclude -Isrc $(CFLAGS) $(EXTRA_CFLAGS)
LIBS = -lz -lm -lpthread
# make BLAS=openblas: GEMM through OpenBLAS (Debian's libopenblas-dev), for comparison.
ifeq ($(BLAS),openblas)
ALL_CFLAGS += -DND_USE_OPENBLAS -I/usr/include/x86_64-linux-gnu/openblas-pthread
LIBS += -lopenblas
endif
BUILD ?= build

# The CPU kernels (src/backend/cpu/cpu_*.c) are compiled once per vector level, each copy with
# its level's -march, and the library picks one copy at run time (src/backend/cpu/isa.c): on
# x86-64 baseline (generic), x86-64-v3 (avx2) and x86-64-v4 (avx512); elsewhere generic only.
ISA_SRC = $(wildcard src/backend/cpu/cpu_*.c)
ifneq ($(filter x86_64%,$(shell $(CC) -dumpmachine)),)
ISA_LEVELS = generic avx2 avx512
else
ISA_LEVELS = generic
endif
ISA_FLAGS_generic = -DND_ISA_LEVEL=0
ISA_FLAGS_avx2 = -DND_ISA_LEVEL=1 -march=x86-64-v3 -ffp-contract=fast
ISA_FLAGS_avx512 = -DND_ISA_LEVEL=2 -march=x86-64-v4 -mprefer-vector-width=512 -ffp-contract=fast
LIB_SRC = $(filter-out $(ISA_SRC),$(wildcard src/core/*.c src/autograd/*.c src/ops/*.c src/backend/*.c src/backend/cpu/*.c src/nn/*.c src/optim/*.c src/io/*.c))
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(foreach l,$(ISA_LEVELS),$(ISA_SRC:%.c=$(BUILD)/obj/%.$(l).o))
HEADERS = $(wildcard include/*.h src/*/*.h src/*/*/*.h)

TEST_SRC = $(wildcard tests/test_*.c)
TEST_BIN = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all lib seed demo test tests examples bench bench-scaling bench-compilers clean
all: lib $(BUILD)/ndgrad-inspect

lib: $(BUILD)/libndgrad.a $(BUILD)/libndgrad.so

$(BUILD)/obj/%.o: %.c $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

define ISA_RULE
$$(BUILD)/obj/%.$(1).o: %.c $$(HEADERS) Makefile
	@mkdir -p $$(dir $$@)
	$$(CC) $$(ALL_CFLAGS) $$(ISA_FLAGS_$(1)) -c $$< -o $$@
endef
$(foreach l,$(ISA_LEVELS),$(eval $(call ISA_RULE,$(l))))

$(BUILD)/libndgrad.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libndgrad.so: $(LIB_OBJ)
	$(CC) -shared $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(LIBS)

$(BUILD)/ndgrad-inspect: tools/ndgrad-inspect.c $(BUILD)/libndgrad.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libndgrad.a $(LDFLAGS) $(LIBS)

$(BUILD)/examples/%: examples/%.c $(BUILD)/libndgrad.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libndgrad.a $(LDFLAGS) $(LIBS)

EXAMPLES = $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
examples: $(EXAMPLES)

seed: $(BUILD)/examples/seed
	./$(BUILD)/examples/seed

demo: $(EXAMPLES)
	@./tools/demo.sh $(BUILD)

# One binary per test file, so a broken file never hides the results of the others.
$(BUILD)/tests/%: tests/%.c tests/harness.c tests/harness.h $(BUILD)/libndgrad.a $(BUILD)/ndgrad-inspect
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -o $@ $< tests/harness.c $(BUILD)/libndgrad.a $(LDFLAGS) $(LIBS)

tests: $(TEST_BIN) $(BUILD)/libndgrad.so

# make test ORACLE=0 skips the PyTorch suites (counted as skipped); otherwise tests/setup.sh installs
# PyTorch and the examples' data when missing (as root) or fails saying what to install.
ORACLE ?= 1
test: $(BUILD)/libndgrad.so $(EXAMPLES)
	@ORACLE=$(ORACLE) ./tests/run_all.sh $(BUILD)

$(BUILD)/bench_ndgrad: bench/bench_ndgrad.c examples/gpt_model.h $(BUILD)/libndgrad.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libndgrad.a $(LDFLAGS) $(LIBS) -ldl

# Benchmarks side by side with PyTorch and OpenBLAS, 1 and 2 threads: writes $(BUILD)/bench.json,
# $(BUILD)/bench_scaling.json and .svg. `make bench ISA=avx2` caps every side at AVX2 (files get an
# _avx2 suffix); `make bench-compilers` compares the GEMM rows of a clang build with this one.
bench: $(BUILD)/bench_ndgrad $(BUILD)/libndgrad.so
	/usr/bin/python3 bench/run_bench.py $(BUILD) $(if $(ISA),--isa $(ISA))

bench-scaling: $(BUILD)/bench_ndgrad $(BUILD)/libndgrad.so
	/usr/bin/python3 bench/run_bench.py $(BUILD) $(if $(ISA),--isa $(ISA)) --scaling-only

bench-compilers: $(BUILD)/bench_ndgrad
	$(MAKE) CC=clang BUILD=$(BUILD)-clang $(BUILD)-clang/bench_ndgrad
	/usr/bin/python3 bench/run_bench.py $(BUILD) $(if $(ISA),--isa $(ISA)) --compare-build $(BUILD)-clang

clean:
	rm -rf $(BUILD)

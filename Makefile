# ndgrad — build with `make`; `make test` runs the test suite; `make demo` runs the main job.
CC ?= cc
CSTD = -std=c11
WARN = -Wall -Wextra -Wpedantic
OPT ?= -O3
CFLAGS ?=
EXTRA_CFLAGS ?=
LDFLAGS ?=
# -fno-math-errno: nothing reads errno after libm calls, and without it sqrt and friends cannot
# be vectorised (they must stay calls that may set errno).
ALL_CFLAGS = $(CSTD) $(WARN) $(OPT) -fno-math-errno -g -fPIC -Iinclude -Isrc $(CFLAGS) $(EXTRA_CFLAGS)
LIBS = -lz -lm -lpthread
# make BLAS=openblas: GEMM through OpenBLAS (Debian's libopenblas-dev), for comparison.
ifeq ($(BLAS),openblas)
ALL_CFLAGS += -DND_USE_OPENBLAS -I/usr/include/x86_64-linux-gnu/openblas-pthread
LIBS += -lopenblas
endif
BUILD ?= build

LIB_SRC = $(wildcard src/core/*.c src/autograd/*.c src/ops/*.c src/backend/*.c src/backend/cpu/*.c src/nn/*.c src/optim/*.c src/io/*.c)
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
HEADERS = $(wildcard include/*.h src/*/*.h src/*/*/*.h)

TEST_SRC = $(wildcard tests/test_*.c)
TEST_BIN = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all lib seed demo test tests examples bench clean
all: lib $(BUILD)/ndgrad-inspect

lib: $(BUILD)/libndgrad.a $(BUILD)/libndgrad.so

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

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

test: $(BUILD)/libndgrad.so $(EXAMPLES)
	@./tests/run_all.sh $(BUILD)

$(BUILD)/bench_ndgrad: bench/bench_ndgrad.c examples/gpt_model.h $(BUILD)/libndgrad.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libndgrad.a $(LDFLAGS) $(LIBS) -ldl

# Benchmarks side by side with PyTorch, 1 and 2 threads; writes $(BUILD)/bench.json.
bench: $(BUILD)/bench_ndgrad $(BUILD)/libndgrad.so
	/usr/bin/python3 bench/run_bench.py $(BUILD)

clean:
	rm -rf $(BUILD)

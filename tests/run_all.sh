#!/usr/bin/env bash
# make test: builds and runs every test and prints one closing line "N passed, N failed, N skipped".
#
# What runs:
#   - every C test binary (tests/test_*.c) and the PyTorch suites, once per vector level this CPU
#     has (avx512, avx2, generic: NDGRAD_ISA selects each), so every kernel path is tested here and
#     a level the CPU lacks is counted as skipped;
#   - tests/check_kernels.sh (the micro-kernels keep their accumulators in registers with gcc and
#     clang at -O2 and -O3), the example programs end to end, the seed example's printed values.
# Verdicts are strict: a test that cannot run is skipped with its own count, never passed; a suite
# that is missing, crashes or prints no verdict fails the run. The PyTorch suites need Debian's
# python3-torch and python3-numpy, the examples need dataset-fashion-mnist and fortunes:
# tests/setup.sh installs them (as root with apt-get) or the run fails saying what to install.
# Only ORACLE=0 (make test ORACLE=0) skips the PyTorch suites, and they are then counted as skipped.
# Exits non-zero if anything failed or did not build.
set -u
build=${1:-build}
cd "$(dirname "$0")/.."
ORACLE=${ORACLE:-1}
passed=0; failed=0; skipped=0

# add_verdict LABEL LINE: LINE is "N passed, N failed[, N skipped]" or "N cases, M failed".
add_verdict() {
    local p f s
    if [[ $2 =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
        p=${BASH_REMATCH[1]}; f=${BASH_REMATCH[2]}; s=${BASH_REMATCH[4]:-0}
    elif [[ $2 =~ ([0-9]+)\ cases,\ ([0-9]+)\ failed ]]; then
        p=$((BASH_REMATCH[1] - BASH_REMATCH[2])); f=${BASH_REMATCH[2]}; s=0
    else
        echo "FAIL $1: no verdict line"; failed=$((failed + 1)); return
    fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
}

if ! ./tests/setup.sh; then
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi

# Build every test binary first, so a broken file never hides the results of the others.
for src in tests/test_*.c; do
    name=$(basename "$src" .c)
    if ! make -s "$build/tests/$name" BUILD="$build" >"$build/$name.build.log" 2>&1; then
        echo "BUILD FAILED: $name"; cat "$build/$name.build.log"; failed=$((failed + 1))
    fi
done

# run_c_tests LEVEL: every built C test binary with NDGRAD_ISA=LEVEL.
run_c_tests() {
    local level=$1 src name bin out rc line
    for src in tests/test_*.c; do
        name=$(basename "$src" .c); bin="$build/tests/$name"
        [ -x "$bin" ] || continue
        out=$(NDGRAD_ISA=$level "$bin" 2>&1); rc=$?
        line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
        if [ -z "$line" ]; then
            printf '%s\n' "$out" | tail -n 30; echo "CRASHED: $name [$level] (exit $rc)"; failed=$((failed + 1)); continue
        fi
        if [[ $line =~ ,\ ([1-9][0-9]*)\ failed ]] || [ $rc -ne 0 ]; then printf '%s\n' "$out" | grep -v '^ok ' | tail -n 60; fi
        printf '%s\n' "$out" | grep '^SKIP ' | sed "s/^/  [$level] /"
        echo "$name [$level]: $line"
        add_verdict "$name [$level]" "$line"
        if [ $rc -ne 0 ] && ! [[ $line =~ ,\ ([1-9][0-9]*)\ failed ]]; then
            echo "FAIL $name [$level]: exit $rc"; failed=$((failed + 1))
        fi
    done
}

# run_python_suite LEVEL LABEL SCRIPT: a PyTorch comparison (Debian's python3-torch through
# /usr/bin/python3); its last line is "<label>: N cases, M failed".
run_python_suite() {
    local level=$1 label=$2 script=$3 out rc line
    if [ ! -f "$script" ]; then
        echo "FAIL $label: the suite $script is missing"; failed=$((failed + 1)); return
    fi
    if [ "$ORACLE" = 0 ]; then
        echo "$label [$level]: skipped (ORACLE=0)"; skipped=$((skipped + 1)); return
    fi
    out=$(NDGRAD_ISA=$level /usr/bin/python3 "$script" "$build/libndgrad.so" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep -E "^$label: " | tail -n 1)
    if ! [[ $line =~ [0-9]+\ cases,\ [0-9]+\ failed ]]; then
        printf '%s\n' "$out" | tail -n 30; echo "FAIL $label [$level]: no verdict (exit $rc)"; failed=$((failed + 1)); return
    fi
    [[ $line =~ ,\ ([1-9][0-9]*)\ failed ]] && printf '%s\n' "$out" | grep -v "^$label: " | tail -n 40
    echo "$label [$level]: ${line#"$label: "}"
    add_verdict "$label [$level]" "$line"
    if [ $rc -ne 0 ] && ! [[ $line =~ ,\ ([1-9][0-9]*)\ failed ]]; then
        echo "FAIL $label [$level]: exit $rc"; failed=$((failed + 1))
    fi
}

# Every vector level, best first; a level this CPU (or build) cannot run is skipped as a whole.
for level in avx512 avx2 generic; do
    got=$(NDGRAD_ISA=$level "$build/tests/test_gemm" the_requested 2>/dev/null | sed -nE 's/^ *vector level: ([a-z0-9]+).*/\1/p' | head -n 1)
    if [ "$got" != "$level" ]; then
        echo "level $level: skipped (this CPU or build runs ${got:-nothing} when asked for it)"; skipped=$((skipped + 1))
        continue
    fi
    echo "== vector level $level"
    run_c_tests "$level"
    run_python_suite "$level" oracle tests/oracle/oracle.py
    run_python_suite "$level" blocks tests/blocks/blocks.py
    run_python_suite "$level" training tests/training/training.py
    run_python_suite "$level" model tests/model/model_oracle.py
done

echo "== kernels, examples"
# The micro-kernels' generated code, with every compiler installed (a missing one is skipped).
out=$(./tests/check_kernels.sh 2>&1); rc=$?
printf '%s\n' "$out" | grep -E '^(FAIL|  |kernels: skipped)'
line=$(printf '%s\n' "$out" | grep -E '^kernels: [0-9]+ cases' | tail -n 1)
echo "$line"; add_verdict kernels "$line"
skipped=$((skipped + $(printf '%s\n' "$out" | grep -c '^kernels: skipped')))
[ $rc -ne 0 ] && ! [[ $line =~ ,\ ([1-9][0-9]*)\ failed ]] && { echo "FAIL check_kernels.sh: exit $rc"; failed=$((failed + 1)); }

# The example programs end to end (short runs; tests/setup.sh made sure their data is here).
if [ ! -x tests/examples_test.sh ]; then
    echo "FAIL examples: tests/examples_test.sh is missing"; failed=$((failed + 1))
else
    out=$(./tests/examples_test.sh "$build" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep -E '^examples: ' | tail -n 1)
    printf '%s\n' "$out" | grep '^FAIL'; echo "$line"
    add_verdict examples "$line"
    [ $rc -ne 0 ] && ! [[ $line =~ ,\ ([1-9][0-9]*)\ failed ]] && { echo "FAIL examples_test.sh: exit $rc"; failed=$((failed + 1)); }
fi

# The seed example must print PyTorch's values.
if [ -x "$build/examples/seed" ] && "$build/examples/seed" | diff -q - tests/seed.expected >/dev/null; then
    passed=$((passed + 1))
else
    echo "FAIL examples/seed is missing or its output differs from tests/seed.expected"; failed=$((failed + 1))
fi
# The quick examples must run cleanly (under the sanitizer build a leak fails it); the training
# programs are exercised by tests/examples_test.sh above.
for ex in "$build"/examples/*; do
    [ -x "$ex" ] || continue
    case "$(basename "$ex")" in seed|fashion_mlp|fashion_cnn|char_gpt) continue;; esac
    if "$ex" >/dev/null 2>"$build/example.err"; then passed=$((passed + 1));
    else echo "FAIL example $(basename "$ex")"; cat "$build/example.err"; failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]

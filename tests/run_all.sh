#!/usr/bin/env bash
# Builds and runs every C test binary and the PyTorch oracle, then prints one closing line
# "N passed, N failed, N skipped". Exits non-zero if anything failed or did not build.
set -u
build=${1:-build}
cd "$(dirname "$0")/.."
passed=0; failed=0; skipped=0; gemm_built=
for src in tests/test_*.c; do
    name=$(basename "$src" .c)
    bin="$build/tests/$name"
    if ! make -s "$bin" BUILD="$build" >"$build/$name.build.log" 2>&1; then
        echo "BUILD FAILED: $name"; cat "$build/$name.build.log"; failed=$((failed + 1)); continue
    fi
    [ "$name" = test_gemm ] && gemm_built=1
    out=$("$bin" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$line" ]; then
        printf '%s\n' "$out"; echo "CRASHED: $name (exit $rc)"; failed=$((failed + 1)); continue
    fi
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/'); f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    if [ "$f" -gt 0 ] || [ $rc -ne 0 ]; then printf '%s\n' "$out"; fi
    [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
    echo "$name: $line"
    passed=$((passed + p)); failed=$((failed + f))
done
# Every GEMM micro-kernel this CPU can run, not only the one it picks (only when test_gemm built
# just now; a kernel the CPU lacks, or an OpenBLAS build, is reported as skipped).
for kernel in avx2 generic; do
    [ -n "$gemm_built" ] || break
    out=$(NDGRAD_GEMM=$kernel "$build/tests/test_gemm" 2>&1); rc=$?
    used=$(printf '%s\n' "$out" | sed -nE 's/^ *GEMM kernel: ([a-z0-9]+).*/\1/p' | head -n 1)
    if [ -n "$used" ] && [ "$used" != "$kernel" ]; then
        echo "test_gemm (NDGRAD_GEMM=$kernel): skipped (this build or CPU runs $used)"; skipped=$((skipped + 1)); continue
    fi
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    f=$(echo "$line" | sed -nE 's/.* ([0-9]+) failed.*/\1/p')
    if [ -z "$line" ] || [ $rc -ne 0 ] || [ "${f:-1}" -gt 0 ]; then
        printf '%s\n' "$out"; echo "FAILED: test_gemm with NDGRAD_GEMM=$kernel"; failed=$((failed + 1)); continue
    fi
    echo "test_gemm (NDGRAD_GEMM=$kernel): $line"
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/'); passed=$((passed + p))
done
# The PyTorch comparisons (Debian's python3-torch through /usr/bin/python3): each prints a last
# line "<label>: N cases, M failed", or "<label>: skipped ..." when PyTorch is missing.
run_python_suite() {
    local label=$1 script=$2
    if [ -n "${ND_SKIP_ORACLE:-}" ]; then
        echo "$label: skipped (ND_SKIP_ORACLE is set: this run is the sanitizer build)"; skipped=$((skipped + 1)); return
    fi
    [ -f "$script" ] || return
    local out rc line cases bad
    out=$(/usr/bin/python3 "$script" "$build/libndgrad.so" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep -E "^$label: " | tail -n 1)
    if echo "$line" | grep -q skipped; then
        echo "$line"; skipped=$((skipped + 1))
    elif [ -z "$line" ] || ! echo "$line" | grep -qE 'cases, [0-9]+ failed'; then
        printf '%s\n' "$out" | tail -n 30; echo "CRASHED: $script (exit $rc)"; failed=$((failed + 1))
    else
        cases=$(echo "$line" | sed -E "s/^$label: ([0-9]+) cases.*/\1/"); bad=$(echo "$line" | sed -E 's/.*, ([0-9]+) failed.*/\1/')
        [ "$bad" -gt 0 ] && printf '%s\n' "$out" | grep -v "^$label: " | tail -n 40
        [ $rc -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
        echo "$line"
        passed=$((passed + cases - bad)); failed=$((failed + bad))
    fi
}
run_python_suite oracle tests/oracle/oracle.py
run_python_suite blocks tests/blocks/blocks.py
run_python_suite training tests/training/training.py
run_python_suite model tests/model/model_oracle.py
# The example programs end to end (short runs; skipped without their data).
out=$(./tests/examples_test.sh "$build" 2>&1); rc=$?
line=$(printf '%s\n' "$out" | grep -E '^examples: ' | tail -n 1)
printf '%s\n' "$out" | grep '^FAIL' ; echo "$line"
if echo "$line" | grep -q skipped; then skipped=$((skipped + 1))
elif echo "$line" | grep -qE 'cases, [0-9]+ failed'; then
    c=$(echo "$line" | sed -E 's/^examples: ([0-9]+) cases.*/\1/'); b=$(echo "$line" | sed -E 's/.*, ([0-9]+) failed.*/\1/')
    passed=$((passed + c - b)); failed=$((failed + b))
else failed=$((failed + 1)); fi
# The seed example must print PyTorch's values.
if [ -x "$build/examples/seed" ]; then
    if "$build/examples/seed" | diff -q - tests/seed.expected >/dev/null; then passed=$((passed + 1));
    else echo "FAIL examples/seed output differs from tests/seed.expected"; failed=$((failed + 1)); fi
fi
# The quick examples must run cleanly (under the sanitizer build a leak fails it); the training
# programs are exercised with short runs by tests/examples_test.sh above.
for ex in "$build"/examples/*; do
    [ -x "$ex" ] || continue
    case "$(basename "$ex")" in seed|fashion_mlp|fashion_cnn|char_gpt) continue;; esac
    if "$ex" >/dev/null 2>"$build/example.err"; then passed=$((passed + 1));
    else echo "FAIL example $(basename "$ex")"; cat "$build/example.err"; failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]

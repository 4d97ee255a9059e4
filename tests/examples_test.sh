#!/usr/bin/env bash
# End-to-end checks of the example programs: usage and exit 2 on a bad flag, the final
# machine-readable line, CSV and SVG output, and resuming from a checkpoint. Short runs only
# (--steps). Prints "examples: N cases, M failed"; missing data is a failure (tests/setup.sh
# installs it before make test gets here).
set -u
build=${1:-build}
build=$(cd "$build" && pwd)
cases=0; failed=0
check() { # check NAME COMMAND...: the command must succeed
    local name=$1; shift
    cases=$((cases + 1))
    if ! "$@" >/dev/null 2>&1; then echo "FAIL $name"; failed=$((failed + 1)); fi
}
data=/usr/share/datasets/fashion-mnist
if [ ! -f "$data/train-images-idx3-ubyte.gz" ] || [ ! -d /usr/share/games/fortunes ]; then
    echo "FAIL examples: their data is missing (apt-get install dataset-fashion-mnist fortunes)"
    echo "examples: 1 cases, 1 failed"; exit 1
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
for ex in fashion_mlp fashion_cnn char_gpt; do
    bin="$build/examples/$ex"
    "$bin" --bogus 1 >out.txt 2>err.txt; rc=$?
    check "$ex: a bad flag exits 2 with usage" test $rc -eq 2 -a -s err.txt
    check "$ex: usage names the flags" grep -q -- "--epochs" err.txt
    "$bin" --epochs x >/dev/null 2>&1; rc=$?
    check "$ex: a bad value exits 2" test $rc -eq 2
    "$bin" --epochs 1 --steps 3 --save "$ex.safetensors" --csv "$ex.csv" --svg "$ex.svg" >run1.txt 2>&1; rc=$?
    check "$ex: short run succeeds" test $rc -eq 0
    check "$ex: final line" grep -qE '^final (test_accuracy|train_loss)=[0-9.]+ ' run1.txt
    check "$ex: CSV has a header and a row" test "$(wc -l <"$ex.csv")" -ge 2
    check "$ex: SVG is written" grep -q "<polyline" "$ex.svg"
    check "$ex: checkpoint is inspectable" "$build/ndgrad-inspect" "$ex.safetensors"
    "$bin" --epochs 2 --steps 3 --load "$ex.safetensors" --csv "$ex.2.csv" --svg "$ex.2.svg" >run2.txt 2>&1; rc=$?
    check "$ex: resumes from the checkpoint" test $rc -eq 0
    check "$ex: says it resumed" grep -q "resumed from" run2.txt
    check "$ex: resumed run trains only the remaining epoch" test "$(grep -c '^epoch [0-9]*:' run2.txt)" -eq 1
    printf 'garbage' >bad.safetensors
    "$bin" --epochs 1 --steps 1 --load bad.safetensors >/dev/null 2>err.txt; rc=$?
    check "$ex: a corrupt checkpoint is refused with a reason" test $rc -eq 1 -a -s err.txt
done
"$build/examples/fashion_mlp" --epochs 1 --steps 1 --data /nonexistent >/dev/null 2>err.txt; rc=$?
check "missing data: says how to install it" grep -q "apt-get install dataset-fashion-mnist" err.txt
echo "examples: $cases cases, $failed failed"
[ "$failed" -eq 0 ]

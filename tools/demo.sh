#!/usr/bin/env bash
# make demo: the seed examples, then one epoch of fashion_mlp on Fashion-MNIST with its test
# accuracy. Installs the dataset when it is missing and we are root with apt; otherwise says how.
set -u
build=${1:-build}
data=/usr/share/datasets/fashion-mnist
echo "== seed examples (values as PyTorch prints them)"
"$build/examples/seed" || exit 1
echo
if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "Fashion-MNIST is missing: installing it (apt-get install dataset-fashion-mnist)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
    fi
    if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
        echo "Fashion-MNIST is missing. Install it with: apt-get install dataset-fashion-mnist"
        exit 1
    fi
fi
echo "== fashion_mlp: one epoch on Fashion-MNIST (the full recipe is: $build/examples/fashion_mlp --epochs 10)"
mkdir -p "$build/demo"
cd "$build/demo" && ../examples/fashion_mlp --epochs 1

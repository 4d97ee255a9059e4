#!/usr/bin/env bash
# make test's own set-up, as make demo does its own: what the tests need beyond the compiler.
#   - PyTorch and numpy for /usr/bin/python3 (Debian's python3-torch, python3-numpy): the oracle
#     the PyTorch suites compare against. Not needed with ORACLE=0, which skips those suites.
#   - dataset-fashion-mnist and fortunes: the example programs' data (tests/examples_test.sh).
#   - clang: tests/check_kernels.sh reads the micro-kernels as clang compiles them too.
# Run as root with apt-get, it installs what is missing; otherwise it names what to install and
# exits 1, so a missing oracle can never turn into a passing run.
set -u
ORACLE=${ORACLE:-1}
missing=()
have_torch() { /usr/bin/python3 -c 'import numpy, torch' >/dev/null 2>&1; }
[ "$ORACLE" = 0 ] || have_torch || missing+=(python3-torch python3-numpy)
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
[ -d /usr/share/games/fortunes ] || missing+=(fortunes)
command -v clang >/dev/null 2>&1 || missing+=(clang)
command -v objdump >/dev/null 2>&1 || missing+=(binutils)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "make test: installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }
    still=()
    [ "$ORACLE" = 0 ] || have_torch || still+=(python3-torch python3-numpy)
    [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || still+=(dataset-fashion-mnist)
    [ -d /usr/share/games/fortunes ] || still+=(fortunes)
    command -v clang >/dev/null 2>&1 || still+=(clang)
    command -v objdump >/dev/null 2>&1 || still+=(binutils)
    [ ${#still[@]} -eq 0 ] && exit 0
    missing=("${still[@]}")
fi
echo "make test: missing ${missing[*]}."
echo "  Install them with: apt-get install ${missing[*]}"
case " ${missing[*]} " in
*" python3-torch "*) echo "  (or run make test ORACLE=0 to skip the PyTorch suites; they are then counted as skipped)" ;;
esac
exit 1

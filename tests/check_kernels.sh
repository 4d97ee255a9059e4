#!/usr/bin/env bash
# Register-blocked kernels keep their accumulators in registers, and the float32 elementwise
# kernels are vectorised, with every compiler and level.
#
# Compiles src/backend/cpu/cpu_gemm.c (the GEMM micro-kernels, their edge variants and the packing
# transposes) for each
# vector level with gcc and clang at -O2 and -O3, disassembles it, and for each register-blocked
# kernel checks (no timing, so the verdict is the same on any machine):
#   1. no instruction moves a vector register to or from the stack (a spill of an accumulator or of
#      a value the kernel keeps in a register), anywhere in the function;
#   2. no instruction inside a loop (between a backward jump and its target) touches the stack.
# gcc once kept the AVX2 kernel's `__m256 acc[6][2]` in memory and stored ten accumulators per k
# step; this check fails on that code. A kernel that is not found as a function of its own (inlined
# or renamed) fails too, so the check cannot pass by looking at nothing.
#
# It also compiles src/backend/cpu/cpu_elementwise.c at -O3 (the build's level) and checks that the
# float32 loops of exp, tanh, sigmoid, GELU (tanh form) and its gradient, ReLU's gradient and add
# are vectorised at the level's full width (a packed float instruction on zmm at avx512, ymm at avx2,
# xmm at generic): gcc once left exp, tanh and GELU scalar below AVX-512 (jump threading through
# their selects, and -ftrapping-math), a third of a GPT step at AVX2.
#
# Prints one line per failure and a last line "kernels: N cases, M failed" (a compiler that is not
# installed is named in a line "kernels: skipped CC (not installed)" before it). Exits 1 on a failure.
set -u
cd "$(dirname "$0")/.."
src=src/backend/cpu/cpu_gemm.c
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cases=0; failed=0; skipped=0

# edge_T_V_R: the edge kernels of R rows and V vectors (all but the full tile, which is ukernel_T)
edges() { # edges MR
    local t v r out=""
    for t in f32 f64; do for v in 1 2; do for r in $(seq 1 "$1"); do
        [ "$v" = 2 ] && [ "$r" = "$1" ] && continue
        out="$out edge_${t}_${v}_$r"
    done; done; done
    echo "$out"
}
# level name | flags | kernels that must be register-blocked
levels=(
    "generic|-DND_ISA_LEVEL=0|ukernel_f32 ukernel_f64"
    "avx2|-DND_ISA_LEVEL=1 -march=x86-64-v3 -ffp-contract=fast|ukernel_f32 ukernel_f64 transpose_pack_f32 $(edges 6)"
    "avx512|-DND_ISA_LEVEL=2 -march=x86-64-v4 -mprefer-vector-width=512 -ffp-contract=fast|ukernel_f32 ukernel_f64 transpose_block16 $(edges 12)"
)
if [ -z "$(gcc -dumpmachine 2>/dev/null | grep x86_64)" ]; then
    levels=("${levels[0]}")
fi

# check_functions OBJDUMP_FILE "F1 F2 ...": one line "F: problem" per offending instruction, and
# "F: not found ..." for a function that is not there; nothing when all are clean.
check_functions() {
    awk -v list="$2" '
        function hex(s,    i, v) { v = 0; for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1; return v }
        function finish(    i, l, stack) {
            if (cur == "") return
            for (i = 1; i <= n; i++) {
                stack = text[i] ~ /\(%rsp[),]/ || (frame && text[i] ~ /\(%rbp[),]/)
                if (!stack) continue
                if (text[i] ~ /%[xyz]mm[0-9]+/) { print cur ": vector register spilled or reloaded:" text[i]; continue }
                for (l = 1; l <= loops; l++)
                    if (at[i] >= lo[l] && at[i] <= hi[l]) { print cur ": stack access inside a loop:" text[i]; break }
            }
            cur = ""
        }
        BEGIN { split(list, names, " "); for (i in names) wanted[names[i]] = 1 }
        /^[0-9a-f]+ <.*>:$/ {
            finish()
            name = $2; sub(/^</, "", name); sub(/>:$/, "", name); sub(/\..*/, "", name)
            if (name in wanted) { cur = name; found[name] = 1; n = 0; loops = 0; frame = 0 }
            next
        }
        cur != "" && /^ +[0-9a-f]+:/ {
            addr = hex(substr($1, 1, length($1) - 1)); n++; at[n] = addr; text[n] = $0
            if ($0 ~ /mov +%rsp,%rbp/) frame = 1   # %rbp is the frame pointer only when set from %rsp
            if ($0 ~ /\t+j[a-z]+ +[0-9a-f]+ </) {
                split($0, parts, /\t+j[a-z]+ +/); target = hex(parts[2])
                if (target <= addr) { loops++; lo[loops] = target; hi[loops] = addr }
            }
        }
        END {
            finish()
            for (f in wanted) if (!(f in found)) print f ": not found as a function of its own (inlined or renamed?)"
        }' "$1" || echo "(all): the disassembly could not be read (awk failed)"
}

# check_vectorised OBJDUMP_FILE FUNCTION REGISTER: prints why not, if the function has no packed
# float arithmetic on that register width.
check_vectorised() {
    awk -v want="$2" -v reg="$3" '
        /^[0-9a-f]+ <.*>:$/ {
            name = $2; sub(/^</, "", name); sub(/>:$/, "", name); sub(/\..*/, "", name)
            inside = (name == want); if (inside) found = 1; next
        }
        inside && $0 ~ ("v(add|sub|mul|div|fmadd[0-9]+|fnmadd[0-9]+|fmsub[0-9]+|max|min|blendm|cmp[a-z]*)ps.*%" reg) { vec++ }
        inside && reg == "xmm" && $0 ~ /[^v](add|mul|div|max|min|and)ps .*%xmm/ { vec++ }
        END {
            if (!found) print "  not found as a function of its own"
            else if (!vec) print "  no packed float arithmetic on " reg ": the loop is scalar"
        }' "$1"
}
elementwise_kernels="exp_f32 tanh_f32 sigmoid_f32 gelu_tanh_f32 gelu_tanh_grad_f32 relu_grad_f32 add_f32"

for cc in gcc clang; do
    if ! command -v "$cc" >/dev/null 2>&1; then
        echo "kernels: skipped $cc (not installed)"; skipped=$((skipped + 1)); continue
    fi
    for opt in -O2 -O3; do
        for entry in "${levels[@]}"; do
            IFS='|' read -r level flags kernels <<<"$entry"
            obj="$tmp/$cc$opt$level.o"
            # shellcheck disable=SC2086
            if ! "$cc" -std=c11 $opt -fno-math-errno -fno-trapping-math -Iinclude -Isrc $flags -c "$src" -o "$obj" 2>"$tmp/err"; then
                cases=$((cases + 1)); failed=$((failed + 1))
                echo "FAIL kernels: $cc $opt $level does not compile"; cat "$tmp/err"; continue
            fi
            objdump -d --no-show-raw-insn "$obj" >"$obj.s"
            out=$(check_functions "$obj.s" "$kernels")
            for k in $kernels; do
                cases=$((cases + 1))
                bad=$(printf '%s\n' "$out" | grep "^$k: ")
                if [ -n "$bad" ]; then
                    failed=$((failed + 1)); echo "FAIL kernels: $k ($level, $cc $opt)"; printf '%s\n' "$bad" | head -n 12 | sed 's/^/  /'
                fi
            done
            if printf '%s\n' "$out" | grep -q '^(all)'; then
                cases=$((cases + 1)); failed=$((failed + 1)); echo "FAIL kernels: $level, $cc $opt: $out"
            fi
            [ "$opt" = -O3 ] || continue # the build's level (Makefile OPT): gcc's -O2 vectorises no loop that needs an alias check
            ew="$tmp/ew$cc$opt$level.o"
            # shellcheck disable=SC2086
            if ! "$cc" -std=c11 $opt -fno-math-errno -fno-trapping-math -Iinclude -Isrc $flags -c src/backend/cpu/cpu_elementwise.c \
                    -o "$ew" 2>"$tmp/err"; then
                cases=$((cases + 1)); failed=$((failed + 1))
                echo "FAIL kernels: cpu_elementwise.c ($level, $cc $opt) does not compile"; cat "$tmp/err"; continue
            fi
            objdump -d --no-show-raw-insn "$ew" >"$ew.s"
            reg=xmm; [ "$level" = avx2 ] && reg=ymm; [ "$level" = avx512 ] && reg=zmm
            for k in $elementwise_kernels; do
                cases=$((cases + 1))
                out=$(check_vectorised "$ew.s" "$k" "$reg")
                if [ -n "$out" ]; then
                    failed=$((failed + 1)); echo "FAIL kernels: $k is not vectorised ($level, $cc $opt)"; printf '%s\n' "$out"
                fi
            done
        done
    done
done
echo "kernels: $cases cases, $failed failed"
[ "$failed" -eq 0 ]

/* Picks the CPU backend's vector level once per process: the best level the CPU and the OS
 * support (read with CPUID and XGETBV, the same way on every compiler), capped by the
 * environment variable NDGRAD_ISA=avx512|avx2|generic (NDGRAD_GEMM, its older name, is read
 * when NDGRAD_ISA is unset). A cap above what the machine has, or an unknown word, changes
 * nothing; nd_cpu_isa() says what runs. */
#include "backend/backend.h"
#include "backend/cpu/isa.h"

#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define ND_HAVE_X86_LEVELS 1
#endif

/* Every level's copy of the backend (built by the Makefile on x86-64; generic elsewhere). */
extern const nd_backend nd_cpu_backend_generic;
#ifdef ND_HAVE_X86_LEVELS
extern const nd_backend nd_cpu_backend_avx2;
extern const nd_backend nd_cpu_backend_avx512;
#endif

static int supported_level(void)
{
#ifdef ND_HAVE_X86_LEVELS
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return ND_ISA_GENERIC;
    bool fma = c & (1u << 12), movbe = c & (1u << 22), osxsave = c & (1u << 27), avx = c & (1u << 28),
         f16c = c & (1u << 29);
    if (!(osxsave && avx))
        return ND_ISA_GENERIC;
    /* XGETBV: the OS saves the vector state: XMM and YMM (bits 1-2), and for AVX-512 the opmask and
     * both halves of the ZMM registers (bits 5-7). */
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    if ((xcr0_lo & 0x6) != 0x6)
        return ND_ISA_GENERIC;
    if (__get_cpuid_max(0, NULL) < 7)
        return ND_ISA_GENERIC;
    __cpuid_count(7, 0, a, b, c, d);
    bool bmi1 = b & (1u << 3), avx2 = b & (1u << 5), bmi2 = b & (1u << 8), f = b & (1u << 16), dq = b & (1u << 17),
         cd = b & (1u << 28), bw = b & (1u << 30), vl = b & (1u << 31);
    unsigned ea, eb, ec, ed;
    bool lzcnt = __get_cpuid(0x80000001, &ea, &eb, &ec, &ed) && (ec & (1u << 5));
    if (!(avx2 && fma && bmi1 && bmi2 && f16c && movbe && lzcnt))
        return ND_ISA_GENERIC;
    if (f && dq && cd && bw && vl && (xcr0_lo & 0xE0) == 0xE0)
        return ND_ISA_AVX512;
    return ND_ISA_AVX2;
#else
    return ND_ISA_GENERIC;
#endif
}

static int cap_from_environment(void)
{
    const char *s = getenv("NDGRAD_ISA");
    if (!s || !*s)
        s = getenv("NDGRAD_GEMM");
    if (!s)
        return ND_ISA_COUNT - 1;
    for (int level = 0; level < ND_ISA_COUNT; level++)
        if (!strcmp(s, nd_cpu_isa_level_name(level)))
            return level;
    return ND_ISA_COUNT - 1;
}

const char *nd_cpu_isa_level_name(int level)
{
    static const char *const names[ND_ISA_COUNT] = {"generic", "avx2", "avx512"};
    return level >= 0 && level < ND_ISA_COUNT ? names[level] : "unknown";
}

static int chosen_level = -1; /* set once; depends only on the machine and the environment */

int nd_cpu_isa_level(void)
{
    int level = __atomic_load_n(&chosen_level, __ATOMIC_ACQUIRE);
    if (level < 0) {
        int have = supported_level(), cap = cap_from_environment();
        level = have < cap ? have : cap;
        __atomic_store_n(&chosen_level, level, __ATOMIC_RELEASE);
    }
    return level;
}

const nd_backend *nd_backend_get(void)
{
    static const nd_backend *const tables[ND_ISA_COUNT] = {
        &nd_cpu_backend_generic,
#ifdef ND_HAVE_X86_LEVELS
        &nd_cpu_backend_avx2,
        &nd_cpu_backend_avx512,
#else
        &nd_cpu_backend_generic,
        &nd_cpu_backend_generic,
#endif
    };
    return tables[nd_cpu_isa_level()];
}

const char *nd_cpu_isa(void) { return nd_cpu_isa_level_name(nd_cpu_isa_level()); }

/* Vector ISA levels of the CPU backend. Every src/backend/cpu/cpu_*.c file is compiled once per
 * level (the Makefile adds the level's -march flags and defines ND_ISA_LEVEL), so each level has
 * its own copy of every kernel and its own backend table, and the compiler vectorises each copy
 * for its level. isa.c picks the table at first use: the best level the CPU and OS support,
 * capped by NDGRAD_ISA. Names the copies export get the level as a suffix (ND_ISA_NAME), so the
 * copies link side by side; kernel code is written once and never names its level. */
#ifndef ND_CPU_ISA_H
#define ND_CPU_ISA_H

#define ND_ISA_GENERIC 0 /* baseline of the target (SSE2 on x86-64): runs anywhere */
#define ND_ISA_AVX2 1    /* x86-64-v3: AVX2, FMA, BMI1/2, F16C */
#define ND_ISA_AVX512 2  /* x86-64-v4: AVX-512 F, BW, CD, DQ, VL */
#define ND_ISA_COUNT 3

#ifndef ND_ISA_LEVEL
#define ND_ISA_LEVEL ND_ISA_GENERIC /* a file compiled outside the Makefile's per-level rules */
#endif

#define ND_ISA_CAT_(a, b) a##b
#define ND_ISA_CAT(a, b) ND_ISA_CAT_(a, b)
#if ND_ISA_LEVEL == ND_ISA_AVX512
#define ND_ISA_NAME(name) ND_ISA_CAT(name, _avx512)
#define ND_ISA_STRING "avx512"
#elif ND_ISA_LEVEL == ND_ISA_AVX2
#define ND_ISA_NAME(name) ND_ISA_CAT(name, _avx2)
#define ND_ISA_STRING "avx2"
#else
#define ND_ISA_NAME(name) ND_ISA_CAT(name, _generic)
#define ND_ISA_STRING "generic"
#endif

/* The flags a level's copy was compiled with must really be in force: a mismatch would put
 * instructions of one level into another level's table. */
#if ND_ISA_LEVEL == ND_ISA_AVX512 && !(defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__FMA__))
#error "the avx512 level needs -march=x86-64-v4 (AVX-512 F/BW/VL/DQ and FMA)"
#endif
#if ND_ISA_LEVEL == ND_ISA_AVX2 && !(defined(__AVX2__) && defined(__FMA__))
#error "the avx2 level needs -march=x86-64-v3 (AVX2 and FMA)"
#endif

/* The level in use (chosen once per process) and its name: "avx512", "avx2" or "generic". */
int nd_cpu_isa_level(void);
const char *nd_cpu_isa_level_name(int level);

#endif

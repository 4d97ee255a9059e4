/* GEMM: C = A @ B for any strides. Blocked as in the Goto/BLIS scheme: B is packed into KC x NR
 * column panels shared by all threads, each thread packs its MC x KC block of A into MR-row
 * panels (both in per-thread scratch slots, threads.c), and a register-blocked micro-kernel
 * multiplies one MR x KC panel by one KC x NR panel.
 * Each vector level's copy of this file (isa.h) has its own micro-kernel (AVX-512, AVX2+FMA, or
 * portable C) and tile size. Every element of C is computed by exactly one thread with the same K blocking,
 * so results do not depend on the thread count (unless a thread cannot get its packing buffer:
 * its rows are then summed by a plain loop, which may differ in the last bits). */
#include "backend/backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/threads.h"
#include "core/internal.h"

#include <stdlib.h>
#include <string.h>
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

/* A thread's packed A block is MC_ROWS x KC (96 x 384 floats, 144 KB), well inside a 1 MB L2
 * beside the B panels streaming through it: 192 rows (288 KB) measured 5-7% slower on 1024- and
 * 2048-cubed products at AVX-512 (medians of five interleaved runs; AVX2 and the smaller
 * products unchanged). */
enum { KC = 384, MC_ROWS = 96, NC = 3072, MAX_MR = 12, MAX_NR = 32 };

/* ------------------------------------------------------------------ micro-kernels */

/* A micro-kernel: C[i*rs + j] (+)= sum_p A[p*MR + i] * B[p*NR + j] over one full MR x NR tile.
 * Layouts: A is a packed MR-row panel (column p holds MR consecutive values), B a packed NR-column
 * panel (row p holds NR consecutive values, 64-byte aligned), C row-major with row stride rs.
 * The SIMD kernels name every accumulator (c0a, c0b, ...) instead of indexing an array: gcc kept
 * an `__m256 acc[6][2]` array in memory and stored ten accumulators to the stack on every k step
 * (2.5x slower); named values stay in registers with both compilers. tests/check_kernels.sh reads
 * the compiled code of every micro-kernel, with gcc and clang at -O2 and -O3, and fails on any
 * stack access. One level's copy of this file holds only its own kernels. */

/* The SIMD kernels are written once over these vector names, defined per level and type just
 * before each kernel is stamped out: VEC the register type, W floats or doubles per vector. */
#define KERNEL_(NAME, T, MR, W, RL) /* RL lists the rows whose accumulators it keeps */          \
    __attribute__((noinline)) static void NAME(int64_t k, const T *a, int64_t as, int64_t ars, const T *b, T *c,  \
                                               int64_t rs, const T *add, int64_t adds)             \
    {                                                                                              \
        RL(DECLARE_)                                                                               \
        for (int64_t p = 0; p < k; p++, a += as, b += 2 * W) {                                     \
            VEC b0 = VLOAD(b), b1 = VLOAD(b + W);                                                  \
            RL(UPDATE_)                                                                            \
        }                                                                                          \
        RL(STORE_)                                                                                 \
    }
#define DECLARE_(i) VEC c##i##a = VZERO(), c##i##b = c##i##a;
#define UPDATE_(i)                                                                                 \
    {                                                                                              \
        VEC ai = VSET1(a[i * ars]);                                                                      \
        c##i##a = VFMA(ai, b0, c##i##a);                                                           \
        c##i##b = VFMA(ai, b1, c##i##b);                                                           \
    }
#define STORE_(i)                                                                                  \
    if (add) {                                                                                     \
        c##i##a = VADD(c##i##a, VLOADU(add + i * adds));                                           \
        c##i##b = VADD(c##i##b, VLOADU(add + i * adds + VW));                                      \
    }                                                                                              \
    VSTOREU(c + i * rs, c##i##a);                                                                  \
    VSTOREU(c + i * rs + VW, c##i##b);

/* Edge kernels for tiles with fewer rows than MR or columns that fit one vector: the same loop on
 * only the accumulators they need (KERNEL_ with fewer rows in RL, or EDGE1_ for one vector of
 * columns; panels keep their full MR x NR layout), so a 4-row or 16-column edge costs a third or
 * a half of a full tile instead of a full one. The driver picks them from a table
 * [vectors - 1][rows - 1]. */
#define EDGE1_(NAME, T, MR, W, RL)                                                                  \
    __attribute__((noinline)) static void NAME(int64_t k, const T *a, int64_t as, int64_t ars, const T *b, T *c,  \
                                               int64_t rs, const T *add, int64_t adds)             \
    {                                                                                              \
        RL(DECLARE1_)                                                                              \
        for (int64_t p = 0; p < k; p++, a += as, b += 2 * W) {                                     \
            VEC b0 = VLOAD(b);                                                                     \
            RL(UPDATE1_)                                                                           \
        }                                                                                          \
        RL(STORE1_)                                                                                \
    }
#define DECLARE1_(i) VEC c##i##a = VZERO();
#define UPDATE1_(i) c##i##a = VFMA(VSET1(a[i * ars]), b0, c##i##a);
#define STORE1_(i)                                                                                 \
    if (add)                                                                                       \
        c##i##a = VADD(c##i##a, VLOADU(add + i * adds));                                           \
    VSTOREU(c + i * rs, c##i##a);
#define RL1_(X) X(0)
#define RL2_(X) RL1_(X) X(1)
#define RL3_(X) RL2_(X) X(2)
#define RL4_(X) RL3_(X) X(3)
#define RL5_(X) RL4_(X) X(4)
#define RL6_(X) RL5_(X) X(5)
#define RL7_(X) RL6_(X) X(6)
#define RL8_(X) RL7_(X) X(7)
#define RL9_(X) RL8_(X) X(8)
#define RL10_(X) RL9_(X) X(9)
#define RL11_(X) RL10_(X) X(10)
#define RL12_(X) RL11_(X) X(11)
typedef void (*tile_kernel_f32)(int64_t, const float *, int64_t, int64_t, const float *, float *, int64_t, const float *,
                                int64_t);
typedef void (*tile_kernel_f64)(int64_t, const double *, int64_t, int64_t, const double *, double *, int64_t,
                                const double *, int64_t);

#if ND_ISA_LEVEL == ND_ISA_AVX512
#include <immintrin.h>
/* float32 12 x 32 (24 zmm accumulators, two B vectors, one broadcast at a time); float64 12 x 16. */
enum { MR32 = 12, NR32 = 32, MR64 = 12, NR64 = 16 };
#define ROWS_(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define VEC __m512
#define VW 16
#define VZERO _mm512_setzero_ps
#define VLOAD _mm512_load_ps
#define VLOADU _mm512_loadu_ps
#define VSET1 _mm512_set1_ps
#define VFMA _mm512_fmadd_ps
#define VADD _mm512_add_ps
#define VSTOREU _mm512_storeu_ps
KERNEL_(ukernel_f32, float, 12, 16, ROWS_)
#define EDGES12_(SUF, T, W)                                                                         \
    EDGE1_(edge_##SUF##_1_1, T, 12, W, RL1_) EDGE1_(edge_##SUF##_1_2, T, 12, W, RL2_)               \
    EDGE1_(edge_##SUF##_1_3, T, 12, W, RL3_) EDGE1_(edge_##SUF##_1_4, T, 12, W, RL4_)               \
    EDGE1_(edge_##SUF##_1_5, T, 12, W, RL5_) EDGE1_(edge_##SUF##_1_6, T, 12, W, RL6_)               \
    EDGE1_(edge_##SUF##_1_7, T, 12, W, RL7_) EDGE1_(edge_##SUF##_1_8, T, 12, W, RL8_)               \
    EDGE1_(edge_##SUF##_1_9, T, 12, W, RL9_) EDGE1_(edge_##SUF##_1_10, T, 12, W, RL10_)             \
    EDGE1_(edge_##SUF##_1_11, T, 12, W, RL11_) EDGE1_(edge_##SUF##_1_12, T, 12, W, RL12_)           \
    KERNEL_(edge_##SUF##_2_1, T, 12, W, RL1_) KERNEL_(edge_##SUF##_2_2, T, 12, W, RL2_)             \
    KERNEL_(edge_##SUF##_2_3, T, 12, W, RL3_) KERNEL_(edge_##SUF##_2_4, T, 12, W, RL4_)             \
    KERNEL_(edge_##SUF##_2_5, T, 12, W, RL5_) KERNEL_(edge_##SUF##_2_6, T, 12, W, RL6_)             \
    KERNEL_(edge_##SUF##_2_7, T, 12, W, RL7_) KERNEL_(edge_##SUF##_2_8, T, 12, W, RL8_)             \
    KERNEL_(edge_##SUF##_2_9, T, 12, W, RL9_) KERNEL_(edge_##SUF##_2_10, T, 12, W, RL10_)           \
    KERNEL_(edge_##SUF##_2_11, T, 12, W, RL11_)                                                     \
    static const tile_kernel_##SUF edges_##SUF[2][12] = {                                          \
        {edge_##SUF##_1_1, edge_##SUF##_1_2, edge_##SUF##_1_3, edge_##SUF##_1_4, edge_##SUF##_1_5,   \
         edge_##SUF##_1_6, edge_##SUF##_1_7, edge_##SUF##_1_8, edge_##SUF##_1_9, edge_##SUF##_1_10,  \
         edge_##SUF##_1_11, edge_##SUF##_1_12},                                                    \
        {edge_##SUF##_2_1, edge_##SUF##_2_2, edge_##SUF##_2_3, edge_##SUF##_2_4, edge_##SUF##_2_5,   \
         edge_##SUF##_2_6, edge_##SUF##_2_7, edge_##SUF##_2_8, edge_##SUF##_2_9, edge_##SUF##_2_10,  \
         edge_##SUF##_2_11, ukernel_##SUF}};
EDGES12_(f32, float, 16)
#undef VEC
#undef VW
#undef VZERO
#undef VLOAD
#undef VLOADU
#undef VSET1
#undef VFMA
#undef VADD
#undef VSTOREU
#define VEC __m512d
#define VW 8
#define VZERO _mm512_setzero_pd
#define VLOAD _mm512_load_pd
#define VLOADU _mm512_loadu_pd
#define VSET1 _mm512_set1_pd
#define VFMA _mm512_fmadd_pd
#define VADD _mm512_add_pd
#define VSTOREU _mm512_storeu_pd
KERNEL_(ukernel_f64, double, 12, 8, ROWS_)
EDGES12_(f64, double, 8)

/* Packing: dst[p * width + r] = src[r * rs + p] for r < rows (zeros for rows <= r < width), p < kc:
 * rows of src, each contiguous along p, interleaved into the panel layout. 16 x 16 blocks go
 * through a register transpose (unpack 32-bit, unpack 64-bit, then two 128-bit lane shuffles). A
 * block narrower than 16 (width 12) is stored as whole vectors in increasing column order: each
 * store's extra lanes land on the next column's slots, which the next store overwrites, and the
 * last one's on data packed later or on the buffer's slack (the driver allocates 16 floats of it).
 * Masked stores that leave lanes unwritten were several times slower here. Columns past the last
 * whole block are copied one by one. */
#define HAVE_TRANSPOSE_PACK 1
#define R16_(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
/* One 16 x 16 block: `valid` rows of 16 floats at s0 (rows rs apart, the rest zeros) into 16
 * columns of w lanes at d0 (columns `width` floats apart). A function of its own, so the
 * compiler never unrolls two blocks into one body and runs out of the 32 registers. */
__attribute__((noinline)) static void transpose_block16(const float *s0, int64_t rs, int valid, int w, float *d0, int width)
{
#define LOAD_(i) __m512 r##i = i < valid ? _mm512_loadu_ps(s0 + i * rs) : _mm512_setzero_ps();
    R16_(LOAD_)
#undef LOAD_
#define PAIR_(a, b) __m512 t##a = _mm512_unpacklo_ps(r##a, r##b), t##b = _mm512_unpackhi_ps(r##a, r##b);
    PAIR_(0, 1) PAIR_(2, 3) PAIR_(4, 5) PAIR_(6, 7) PAIR_(8, 9) PAIR_(10, 11) PAIR_(12, 13) PAIR_(14, 15)
#undef PAIR_
#define QUAD_(a, b, c, d)                                                                           \
    __m512 u##a = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t##a), _mm512_castps_pd(t##c))); \
    __m512 u##b = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t##a), _mm512_castps_pd(t##c))); \
    __m512 u##c = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t##b), _mm512_castps_pd(t##d))); \
    __m512 u##d = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t##b), _mm512_castps_pd(t##d)));
    QUAD_(0, 1, 2, 3) QUAD_(4, 5, 6, 7) QUAD_(8, 9, 10, 11) QUAD_(12, 13, 14, 15)
#undef QUAD_
    /* u(4g + j) holds, in 128-bit lane L, element 4L + j of rows 4g..4g+3; column 4L + j is lane L
     * of u(j), u(4 + j), u(8 + j), u(12 + j) */
#define COLS_(j, a, b, c, e)                                                                        \
    __m512 x##j = _mm512_shuffle_f32x4(u##a, u##b, _MM_SHUFFLE(2, 0, 2, 0));                        \
    __m512 y##j = _mm512_shuffle_f32x4(u##a, u##b, _MM_SHUFFLE(3, 1, 3, 1));                        \
    __m512 x2##j = _mm512_shuffle_f32x4(u##c, u##e, _MM_SHUFFLE(2, 0, 2, 0));                       \
    __m512 y2##j = _mm512_shuffle_f32x4(u##c, u##e, _MM_SHUFFLE(3, 1, 3, 1));                       \
    __m512 col##j = _mm512_shuffle_f32x4(x##j, x2##j, _MM_SHUFFLE(2, 0, 2, 0));                     \
    __m512 col8##j = _mm512_shuffle_f32x4(x##j, x2##j, _MM_SHUFFLE(3, 1, 3, 1));                    \
    __m512 col4##j = _mm512_shuffle_f32x4(y##j, y2##j, _MM_SHUFFLE(2, 0, 2, 0));                    \
    __m512 col12##j = _mm512_shuffle_f32x4(y##j, y2##j, _MM_SHUFFLE(3, 1, 3, 1));
    COLS_(0, 0, 4, 8, 12) COLS_(1, 1, 5, 9, 13) COLS_(2, 2, 6, 10, 14) COLS_(3, 3, 7, 11, 15)
#undef COLS_
    (void)w; /* whole vectors whatever w is: in increasing column order, see above */
#define TSTORE_(j, v) _mm512_storeu_ps(d0 + (j) * width, v);
    TSTORE_(0, col0) TSTORE_(1, col1) TSTORE_(2, col2) TSTORE_(3, col3) TSTORE_(4, col40) TSTORE_(5, col41)
    TSTORE_(6, col42) TSTORE_(7, col43) TSTORE_(8, col80) TSTORE_(9, col81) TSTORE_(10, col82) TSTORE_(11, col83)
    TSTORE_(12, col120) TSTORE_(13, col121) TSTORE_(14, col122) TSTORE_(15, col123)
#undef TSTORE_
}

__attribute__((noinline)) static void transpose_pack_f32(const float *src, int64_t rs, int rows, int width, int64_t kc,
                                                         float *dst)
{
    int64_t p = 0;
    for (; p + 16 <= kc; p += 16)
        for (int row0 = 0; row0 < width; row0 += 16) {
            int w = width - row0 < 16 ? width - row0 : 16, valid = rows - row0 < w ? rows - row0 : w;
            transpose_block16(src + row0 * rs + p, rs, valid > 0 ? valid : 0, w, dst + p * width + row0, width);
        }
    for (; p < kc; p++) {
        for (int r = 0; r < rows; r++)
            dst[p * width + r] = src[r * rs + p];
        for (int r = rows; r < width; r++)
            dst[p * width + r] = 0;
    }
}

#elif ND_ISA_LEVEL == ND_ISA_AVX2
#include <immintrin.h>
/* float32 6 x 16 (12 ymm accumulators, two B vectors, one broadcast at a time); float64 6 x 8. */
enum { MR32 = 6, NR32 = 16, MR64 = 6, NR64 = 8 };
#define ROWS_(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define VEC __m256
#define VW 8
#define VZERO _mm256_setzero_ps
#define VLOAD _mm256_load_ps
#define VLOADU _mm256_loadu_ps
#define VSET1 _mm256_set1_ps
#define VFMA _mm256_fmadd_ps
#define VADD _mm256_add_ps
#define VSTOREU _mm256_storeu_ps
KERNEL_(ukernel_f32, float, 6, 8, ROWS_)
#define EDGES6_(SUF, T, W)                                                                          \
    EDGE1_(edge_##SUF##_1_1, T, 6, W, RL1_) EDGE1_(edge_##SUF##_1_2, T, 6, W, RL2_)                 \
    EDGE1_(edge_##SUF##_1_3, T, 6, W, RL3_) EDGE1_(edge_##SUF##_1_4, T, 6, W, RL4_)                 \
    EDGE1_(edge_##SUF##_1_5, T, 6, W, RL5_) EDGE1_(edge_##SUF##_1_6, T, 6, W, RL6_)                 \
    KERNEL_(edge_##SUF##_2_1, T, 6, W, RL1_) KERNEL_(edge_##SUF##_2_2, T, 6, W, RL2_)               \
    KERNEL_(edge_##SUF##_2_3, T, 6, W, RL3_) KERNEL_(edge_##SUF##_2_4, T, 6, W, RL4_)               \
    KERNEL_(edge_##SUF##_2_5, T, 6, W, RL5_)                                                        \
    static const tile_kernel_##SUF edges_##SUF[2][12] = {                                          \
        {edge_##SUF##_1_1, edge_##SUF##_1_2, edge_##SUF##_1_3, edge_##SUF##_1_4, edge_##SUF##_1_5,   \
         edge_##SUF##_1_6},                                                                        \
        {edge_##SUF##_2_1, edge_##SUF##_2_2, edge_##SUF##_2_3, edge_##SUF##_2_4, edge_##SUF##_2_5,   \
         ukernel_##SUF}};
EDGES6_(f32, float, 8)
#undef VEC
#undef VW
#undef VZERO
#undef VLOAD
#undef VLOADU
#undef VSET1
#undef VFMA
#undef VADD
#undef VSTOREU
#define VEC __m256d
#define VW 4
#define VZERO _mm256_setzero_pd
#define VLOAD _mm256_load_pd
#define VLOADU _mm256_loadu_pd
#define VSET1 _mm256_set1_pd
#define VFMA _mm256_fmadd_pd
#define VADD _mm256_add_pd
#define VSTOREU _mm256_storeu_pd
KERNEL_(ukernel_f64, double, 6, 4, ROWS_)
EDGES6_(f64, double, 4)

/* Packing: dst[p * width + r] = src[r * rs + p] for r < width, p < kc (width rows of src, each
 * contiguous along p, interleaved into the panel layout), 8 x 8 blocks at a time through a register
 * transpose. A block narrower than 8 rows (width 6) is stored 8 lanes at a time in increasing
 * order, each store's two extra lanes overwritten by the next one, and the block's last column
 * lane by lane. Columns past the last whole block are copied one by one. */
#define HAVE_TRANSPOSE_PACK 1
__attribute__((noinline)) static void transpose_pack_f32(const float *src, int64_t rs, int rows, int width, int64_t kc,
                                                         float *dst)
{
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8)
        for (int row0 = 0; row0 < width; row0 += 8) {
            int w = width - row0 < 8 ? width - row0 : 8, valid = rows - row0 < w ? rows - row0 : w;
            const float *s0 = src + row0 * rs + p;
#define LOAD_(i) __m256 r##i = i < valid ? _mm256_loadu_ps(s0 + i * rs) : _mm256_setzero_ps();
            LOAD_(0) LOAD_(1) LOAD_(2) LOAD_(3) LOAD_(4) LOAD_(5) LOAD_(6) LOAD_(7)
#undef LOAD_
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            __m256 c0 = _mm256_permute2f128_ps(u0, u4, 0x20), c1 = _mm256_permute2f128_ps(u1, u5, 0x20);
            __m256 c2 = _mm256_permute2f128_ps(u2, u6, 0x20), c3 = _mm256_permute2f128_ps(u3, u7, 0x20);
            __m256 c4 = _mm256_permute2f128_ps(u0, u4, 0x31), c5 = _mm256_permute2f128_ps(u1, u5, 0x31);
            __m256 c6 = _mm256_permute2f128_ps(u2, u6, 0x31), c7 = _mm256_permute2f128_ps(u3, u7, 0x31);
            float *d0 = dst + p * width + row0;
            _mm256_storeu_ps(d0, c0);
            _mm256_storeu_ps(d0 + width, c1);
            _mm256_storeu_ps(d0 + 2 * width, c2);
            _mm256_storeu_ps(d0 + 3 * width, c3);
            _mm256_storeu_ps(d0 + 4 * width, c4);
            _mm256_storeu_ps(d0 + 5 * width, c5);
            _mm256_storeu_ps(d0 + 6 * width, c6);
            if (w == 8) {
                _mm256_storeu_ps(d0 + 7 * width, c7);
            } else { /* w == 6, the only narrower width (MR) */
                _mm_storeu_ps(d0 + 7 * width, _mm256_castps256_ps128(c7));
                _mm_storel_pi((__m64 *)(void *)(d0 + 7 * width + 4), _mm256_extractf128_ps(c7, 1));
            }
        }
    for (; p < kc; p++) {
        for (int r = 0; r < rows; r++)
            dst[p * width + r] = src[r * rs + p];
        for (int r = rows; r < width; r++)
            dst[p * width + r] = 0;
    }
}

#else
/* Portable: GNU C vector types of 16 bytes, which gcc and clang map to SSE2 on x86-64 (and to NEON
 * or plain registers elsewhere). float32 4 x 8, float64 4 x 4: eight accumulators. No FMA at
 * this level: a multiply and an add, which C11 keeps unfused. */
enum { MR32 = 4, NR32 = 8, MR64 = 4, NR64 = 4 };
typedef float v4f __attribute__((vector_size(16)));
typedef double v2d __attribute__((vector_size(16)));
static inline v4f load_v4f(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline v2d load_v2d(const double *p)
{
    v2d v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void store_v4f(float *p, v4f v) { memcpy(p, &v, sizeof v); }
static inline void store_v2d(double *p, v2d v) { memcpy(p, &v, sizeof v); }
#define ROWS_(X) X(0) X(1) X(2) X(3)
#define VEC v4f
#define VW 4
#define VZERO() ((v4f){0, 0, 0, 0})
#define VLOAD load_v4f
#define VLOADU load_v4f
#define VSET1(x) ((v4f){(x), (x), (x), (x)})
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VADD(a, b) ((a) + (b))
#define VSTOREU store_v4f
KERNEL_(ukernel_f32, float, 4, 4, ROWS_)
#undef VEC
#undef VW
#undef VZERO
#undef VLOAD
#undef VLOADU
#undef VSET1
#undef VFMA
#undef VADD
#undef VSTOREU
#define VEC v2d
#define VW 2
#define VZERO() ((v2d){0, 0})
#define VLOAD load_v2d
#define VLOADU load_v2d
#define VSET1(x) ((v2d){(x), (x)})
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VADD(a, b) ((a) + (b))
#define VSTOREU store_v2d
KERNEL_(ukernel_f64, double, 4, 2, ROWS_)
/* no edge kernels at this level: edge tiles run the full kernel into a scratch tile */
static const tile_kernel_f32 edges_f32[2][12];
static const tile_kernel_f64 edges_f64[2][12];
#endif

#ifndef HAVE_TRANSPOSE_PACK
#define transpose_pack_f32(src, rs, rows, width, kc, dst) ((void)0)
#define TRANSPOSE_PACK(T) 0
#else
#define TRANSPOSE_PACK(T) (sizeof(T) == 4)
#endif

/* One panel: dst[p * width + r] = src[r * rs + p * ps] for r < rows and p < kc, zeros for rows <= r <
 * width. An A panel is `rows` rows of A (rs its row stride, ps its column stride); a B panel is
 * `rows` columns of B (rs its column stride, ps its row stride). Panels whose values for one p are
 * adjacent are row copies; float32 panels whose rows run along p are transposed in registers; the
 * rest go element by element. Called with width a compile-time constant. The transposing packer
 * may write up to 16 floats past the panel (see it), into panels packed later or the slack. */
#define PACK_PANEL(T, SUFFIX)                                                                        \
    static inline void pack_panel_##SUFFIX(const T *src, int64_t rs, int64_t ps, int64_t rows, int width, int64_t kc, \
                                           T *dst)                                                   \
    {                                                                                                \
        if (rs == 1 && rows == width) {                                                              \
            for (int64_t p = 0; p < kc; p++)                                                         \
                memcpy(dst + p * width, src + p * ps, sizeof(T) * (size_t)width);                    \
            return;                                                                                  \
        }                                                                                            \
        if (TRANSPOSE_PACK(T) && ps == 1) {                                                          \
            transpose_pack_f32((const float *)src, rs, (int)rows, width, kc, (float *)dst);          \
            return;                                                                                  \
        }                                                                                            \
        if (rs == 1) {                                                                               \
            for (int64_t p = 0; p < kc; p++) {                                                       \
                T *d = dst + p * width;                                                              \
                memcpy(d, src + p * ps, sizeof(T) * (size_t)rows);                                   \
                for (int64_t r = rows; r < width; r++)                                               \
                    d[r] = 0;                                                                        \
            }                                                                                        \
            return;                                                                                  \
        }                                                                                            \
        for (int64_t p = 0; p < kc; p++) {                                                           \
            T *d = dst + p * width;                                                                  \
            for (int64_t r = 0; r < rows; r++)                                                       \
                d[r] = src[r * rs + p * ps];                                                         \
            for (int64_t r = rows; r < width; r++)                                                   \
                d[r] = 0;                                                                            \
        }                                                                                            \
    }
PACK_PANEL(float, f32)
PACK_PANEL(double, f64)

#ifdef ND_USE_OPENBLAS
const char *nd_cpu_gemm_kernel_name(void) { return "openblas"; } /* for every layout it can take */
#else
const char *nd_cpu_gemm_kernel_name(void) { return ND_ISA_STRING; }
#endif

/* ------------------------------------------------------------------ the blocked driver */

/* Asks for the lines of the next C tile while the micro-kernel works on this one: a tile of a
 * large C is read (when accumulating) and written only after the kernel's k loop, each of its rows
 * a different, far line (every K block passes over all of C), so without this the stores wait on
 * memory (a quarter of a 2048 x 2048 product's time here). The kernel itself issues no prefetches:
 * they cost its loop registers and measured slower. `first` is the tile's first element, `rows`
 * rows of `row_bytes` (whole lines are asked for), `stride` bytes apart. */
static inline void prefetch_tile(const void *first, int64_t rows, int64_t stride, int64_t row_bytes)
{
#if defined(__SSE__) || defined(__x86_64__)
    const char *p = first;
    for (int64_t r = 0; r < rows; r++, p += stride) {
        _mm_prefetch(p, _MM_HINT_T0);
        _mm_prefetch(p + row_bytes - 1, _MM_HINT_T0);
    }
#else
    (void)first, (void)rows, (void)stride, (void)row_bytes;
#endif
}

#define GEMM_DRIVER(T, SUFFIX, MR, NR)                                        \
    typedef struct job_##SUFFIX {                                                                      \
        int64_t m, n, k;                                                                               \
        const T *a;                                                                                    \
        int64_t ar, ac;                                                                                \
        const T *b;                                                                                    \
        int64_t br, bc;                                                                                \
        T *c;                                                                                          \
        int64_t cr, cc;                                                                                \
        int64_t jc, nc, pc, kc;                                                                        \
        T *bpack;                                                                                      \
        int mr, nr;                                                                                    \
        tile_kernel_##SUFFIX kernel;                                                                   \
        const tile_kernel_##SUFFIX (*edges)[12]; /* [vectors - 1][rows - 1], or entries NULL */     \
        bool accumulate; /* add to C instead of overwriting it */                                     \
        const T *col_add; /* or NULL: n values added to every row of C (a bias), when not accumulating */ \
        int shape;       /* nd_gemm_shape: which tiles and which part of K each tile needs */          \
    } job_##SUFFIX;                                                                                    \
                                                                                                       \
    /* Column panels [begin, end) of the current B block, zero-padded to NR. */                        \
    static void pack_b_##SUFFIX(void *ctx, int64_t begin, int64_t end, int chunk)                      \
    {                                                                                                  \
        (void)chunk;                                                                                   \
        job_##SUFFIX *j = ctx;                                                                         \
        const int nr = j->nr;                                                                          \
        for (int64_t panel = begin; panel < end; panel++) {                                            \
            T *dst = j->bpack + panel * j->kc * nr;                                                    \
            int64_t col0 = j->jc + panel * nr, cols = j->jc + j->nc - col0 < nr ? j->jc + j->nc - col0 : nr; \
            pack_panel_##SUFFIX(j->b + j->pc * j->br + col0 * j->bc, j->bc, j->br, cols, NR, j->kc, dst);   \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    /* Row panels [begin, end): pack A a block at a time and run the micro-kernel on every tile. */   \
    static void compute_##SUFFIX(void *ctx, int64_t begin, int64_t end, int chunk)                     \
    {                                                                                                  \
        (void)chunk;                                                                                   \
        job_##SUFFIX *j = ctx;                                                                         \
        const int mr = j->mr, nr = j->nr;                                                              \
        const int64_t panels_per_block = MC_ROWS / mr;                                                 \
        T *apack = nd_thread_scratch(ND_SCRATCH_GEMM_A, (size_t)(panels_per_block * mr * j->kc + 16) * sizeof(T)); \
        if (!apack) { /* no packing buffer: these rows of this block, slowly but exactly once, so    \
                       * rows other threads have already added to are never added twice */      \
            int64_t r1 = end * mr < j->m ? end * mr : j->m;                                            \
            for (int64_t i = begin * mr; i < r1; i++)                                                  \
                for (int64_t q = j->jc; q < j->jc + j->nc; q++) {                                      \
                    T sum = 0;                                                                         \
                    for (int64_t p = j->pc; p < j->pc + j->kc; p++)                                    \
                        sum += j->a[i * j->ar + p * j->ac] * j->b[p * j->br + q * j->bc];              \
                    T *dst = j->c + i * j->cr + q * j->cc;                                             \
                    *dst = j->pc > 0 || j->accumulate ? *dst + sum : j->col_add ? sum + j->col_add[q] : sum; \
                }                                                                                      \
            return;                                                                                    \
        }                                                                                              \
        T tile[MAX_MR * MAX_NR];                                                                       \
        int64_t col_panels = (j->nc + nr - 1) / nr;                                                    \
        for (int64_t pb = begin; pb < end; pb += panels_per_block) {                                   \
            int64_t pe = pb + panels_per_block < end ? pb + panels_per_block : end;                    \
            /* A with a unit stride (rows adjacent, as a weight gradient's gᵀ, or each row          \
             * contiguous, as activations) is not packed: the kernels read A(i, p) at a[i * ars +  \
             * p * as] in place, a broadcast costing the same from any address. Copying it into     \
             * panels was 3% (gᵀ) and 7% (row-major A) of a GPT step. Row-major A is read in place  \
             * only for up to 512 columns of C: its 12 rows a stride apart cost the kernel a little  \
             * per use, which a packed panel, reused by every column panel, amortises for wide C     \
             * (1024^3 measured slower in place). Edge kernels read only their rows; without them a   \
             * partial panel must be packed. */                                                     \
            const bool direct_a = (j->ar == 1 || (j->ac == 1 && j->nc <= 512)) && (j->edges[0][0] || j->m >= pe * mr);     \
            const int64_t ars = !direct_a || j->ar == 1 ? 1 : j->ar;                                   \
            if (!direct_a)                                                                             \
                for (int64_t panel = pb; panel < pe; panel++) {                                        \
                    int64_t row0 = panel * mr, rows = j->m - row0 < mr ? j->m - row0 : mr;             \
                    pack_panel_##SUFFIX(j->a + row0 * j->ar + j->pc * j->ac, j->ar, j->ac, rows, MR, j->kc, \
                                        apack + (panel - pb) * j->kc * mr);                            \
                }                                                                                      \
            for (int64_t cp = 0; cp < col_panels; cp++) {                                              \
                const T *bp = j->bpack + cp * j->kc * nr;                                              \
                int64_t col0 = j->jc + cp * nr, cols = j->jc + j->nc - col0 < nr ? j->jc + j->nc - col0 : nr; \
                for (int64_t panel = pb; panel < pe; panel++) {                                        \
                    int64_t row0 = panel * mr, rows = j->m - row0 < mr ? j->m - row0 : mr;             \
                    const T *ap = direct_a ? j->a + row0 * j->ar + j->pc * j->ac : apack + (panel - pb) * j->kc * mr; \
                    const int64_t as = direct_a ? j->ac : mr;                                          \
                    T *cp0 = j->c + row0 * j->cr + col0 * j->cc;                                       \
                    /* the epilogue adds C's old values, or the bias (stride 0: the same NR values \
                     * for every row) in the first K block */                                       \
                    const bool accumulate = j->pc > 0 || j->accumulate;                                \
                    const T *bias = !accumulate && j->col_add ? j->col_add + col0 : NULL;              \
                    const T *add = accumulate ? cp0 : bias;                                            \
                    const int64_t adds = accumulate ? j->cr : 0;                                       \
                    if (j->cc == 1 && panel + 1 < pe) /* the next tile: the next row panel, or the first */ \
                        prefetch_tile(cp0 + mr * j->cr, j->m - row0 - mr < mr ? j->m - row0 - mr : mr, \
                                      j->cr * (int64_t)sizeof(T), nr * (int64_t)sizeof(T));           \
                    else if (j->cc == 1 && cp + 1 < col_panels) /* one of the next column panel */     \
                        prefetch_tile(j->c + pb * mr * j->cr + col0 + nr, j->m - pb * mr < mr ? j->m - pb * mr : mr, \
                                      j->cr * (int64_t)sizeof(T),                                      \
                                      (cols < nr ? cols : nr) * (int64_t)sizeof(T));                   \
                    /* causal shapes: tiles wholly above the diagonal are skipped, and a tile runs \
                     * only the part of K whose A values can be nonzero for its rows */              \
                    int64_t k0 = 0, k1 = j->kc;                                                        \
                    if (j->shape == ND_GEMM_LOWER_C && col0 > row0 + rows - 1)                         \
                        continue;                                                                      \
                    if (j->shape == ND_GEMM_K_FROM_ROW && row0 > j->pc)                                \
                        k0 = row0 - j->pc < j->kc ? row0 - j->pc : j->kc;                              \
                    if (j->shape == ND_GEMM_K_TO_ROW)                                                  \
                        k1 = row0 + rows - j->pc <= 0 ? 0 : row0 + rows - j->pc < j->kc ? row0 + rows - j->pc : j->kc; \
                    const int vw = nr / 2; /* floats or doubles per vector: tiles are two wide */     \
                    tile_kernel_##SUFFIX edge = j->edges[(cols + vw - 1) / vw - 1][rows - 1];           \
                    if (rows == mr && cols == nr && j->cc == 1) {                                      \
                        j->kernel(k1 - k0, ap + k0 * as, as, ars, bp + k0 * nr, cp0, j->cr, add, adds);     \
                    } else if (edge && j->cc == 1 && cols % vw == 0) { /* whole vectors: straight into C */ \
                        edge(k1 - k0, ap + k0 * as, as, ars, bp + k0 * nr, cp0, j->cr, add, adds);         \
                    } else {                                                                           \
                        (edge ? edge : j->kernel)(k1 - k0, ap + k0 * as, as, ars, bp + k0 * nr, tile, nr, NULL, 0); \
                        /* one loop per case: a test inside made gcc read C or the bias with masked \
                         * loads (vmaskmovps), microcoded on AMD: 6% of a convolution at AVX2 */     \
                        for (int64_t r = 0; r < rows; r++) {                                           \
                            T *dst = cp0 + r * j->cr;                                                  \
                            const T *t = tile + r * nr;                                                \
                            if (accumulate)                                                            \
                                for (int64_t q = 0; q < cols; q++)                                     \
                                    dst[q * j->cc] += t[q];                                            \
                            else if (bias)                                                             \
                                for (int64_t q = 0; q < cols; q++)                                     \
                                    dst[q * j->cc] = t[q] + bias[q];                                   \
                            else                                                                       \
                                for (int64_t q = 0; q < cols; q++)                                     \
                                    dst[q * j->cc] = t[q];                                             \
                        }                                                                              \
                    }                                                                                  \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    static bool gemm_##SUFFIX(int64_t m, int64_t n, int64_t k, const T *a, int64_t ar, int64_t ac,     \
                              const T *b, int64_t br, int64_t bc, T *c, int64_t cr, int64_t cc,        \
                              bool accumulate, const T *col_add, int shape)                            \
    {                                                                                                  \
        if (k == 0) { /* an empty sum: zeros (or the bias), or C unchanged when accumulating */       \
            for (int64_t i = 0; !accumulate && i < m; i++)                                             \
                for (int64_t q = 0; q < n; q++)                                                        \
                    c[i * cr + q * cc] = col_add ? col_add[q] : 0;                                     \
            return true;                                                                               \
        }                                                                                              \
        /* Fewer columns than a micro-tile is wide, more rows: compute Cᵀ = Bᵀ Aᵀ instead, so the    \
         * tiles are filled (a convolution's weight gradient with 9 columns runs 2-3x faster). A bias \
         * per column would become one per row there, which the kernels do not add. */              \
        if (n < NR && m > n && shape == ND_GEMM_DENSE && !col_add)                                     \
            return gemm_##SUFFIX(n, m, k, b, bc, br, a, ac, ar, c, cc, cr, accumulate, NULL, shape);  \
        job_##SUFFIX j = {m, n, k, a, ar, ac, b, br, bc, c, cr, cc, 0, 0, 0, 0, NULL, MR, NR,         \
                          ukernel_##SUFFIX, edges_##SUFFIX, accumulate, col_add, shape};                \
        int64_t row_panels = (m + j.mr - 1) / j.mr;                                                    \
        /* Enough rows per thread that packing B once pays off; small products stay on one thread. */ \
        int64_t min_panels = (int64_t)(4096 * 64 / (n * k > 0 ? n * k : 1)) + 1;                       \
        for (j.jc = 0; j.jc < n; j.jc += NC) {                                                         \
            j.nc = n - j.jc < NC ? n - j.jc : NC;                                                      \
            int64_t col_panels = (j.nc + j.nr - 1) / j.nr;                                             \
            for (j.pc = 0; j.pc < k; j.pc += KC) {                                                     \
                j.kc = k - j.pc < KC ? k - j.pc : KC;                                                  \
                j.bpack = nd_thread_scratch(ND_SCRATCH_GEMM_B, (size_t)(col_panels * j.nr * j.kc + 16) * sizeof(T)); \
                if (!j.bpack) /* only the first block can fail (it needs the most): C is untouched */  \
                    return false;                                                                      \
                nd_parallel_for(col_panels, 8, pack_b_##SUFFIX, &j);                                   \
                nd_parallel_for(row_panels, min_panels, compute_##SUFFIX, &j);                         \
            }                                                                                          \
        }                                                                                              \
        return true;                                                                                   \
    }

GEMM_DRIVER(float, f32, MR32, NR32)
GEMM_DRIVER(double, f64, MR64, NR64)

/* The fallback when no packing buffer can be had: slow, but correct and allocation-free. */
#define NAIVE(T)                                                                                       \
    for (int64_t i = 0; i < m; i++)                                                                    \
        for (int64_t q = 0; q < n; q++) {                                                              \
            T s = accumulate ? C[i * cs[1] + q * cs[2]] : 0;                                           \
            for (int64_t p = 0; p < k; p++)                                                            \
                s += A[i * as[1] + p * as[2]] * B[p * bs[1] + q * bs[2]];                              \
            C[i * cs[1] + q * cs[2]] = s;                                                              \
        }

#ifdef ND_USE_OPENBLAS
#include <cblas.h>
/* `make BLAS=openblas`: hand the product to OpenBLAS when its layout can express the strides
 * (each operand unit-stride along one dim, C row-major); otherwise ndgrad's own kernel runs. */
static bool blas_layout(int64_t rows_stride, int64_t cols_stride, int64_t rows, int64_t cols, bool *trans, int64_t *ld)
{
    if (cols_stride == 1 && (rows_stride >= (cols > 1 ? cols : 1) || rows <= 1)) {
        *trans = false;
        *ld = rows <= 1 ? (cols > 1 ? cols : 1) : rows_stride;
        return true;
    }
    if (rows_stride == 1 && (cols_stride >= (rows > 1 ? rows : 1) || cols <= 1)) {
        *trans = true;
        *ld = cols <= 1 ? (rows > 1 ? rows : 1) : cols_stride;
        return true;
    }
    return false;
}

static bool blas_gemm(nd_dtype dtype, int64_t m, int64_t n, int64_t k, const void *a, const int64_t as[3], const void *b,
                      const int64_t bs[3], void *c, const int64_t cs[3], bool accumulate)
{
    bool ta, tb, tc;
    int64_t lda, ldb, ldc;
    if (!blas_layout(as[1], as[2], m, k, &ta, &lda) || !blas_layout(bs[1], bs[2], k, n, &tb, &ldb) ||
        !blas_layout(cs[1], cs[2], m, n, &tc, &ldc) || tc)
        return false;
    openblas_set_num_threads(nd_get_num_threads());
    if (dtype == ND_FLOAT32)
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
                    1.0f, a, (int)lda, b, (int)ldb, accumulate ? 1.0f : 0.0f, c, (int)ldc);
    else
        cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
                    1.0, a, (int)lda, b, (int)ldb, accumulate ? 1.0 : 0.0, c, (int)ldc);
    return true;
}
#endif

void nd_cpu_gemm(nd_dtype dtype, int64_t batch, int64_t m, int64_t n, int64_t k, const void *a,
                 const int64_t as[3], const void *b, const int64_t bs[3], void *c, const int64_t cs[3], bool accumulate)
{
    for (int64_t p = 0; p < batch; p++) {
#ifdef ND_USE_OPENBLAS
        size_t es = dtype == ND_FLOAT32 ? 4 : 8;
        /* not from a pool worker: OpenBLAS's thread setting is process-wide and its own threads
         * would oversubscribe the cores */
        if (!nd_parallel_inside() &&
            blas_gemm(dtype, m, n, k, (const char *)a + p * as[0] * (int64_t)es, as, (const char *)b + p * bs[0] * (int64_t)es,
                      bs, (char *)c + p * cs[0] * (int64_t)es, cs, accumulate))
            continue;
#endif
        if (dtype == ND_FLOAT32) {
            const float *A = (const float *)a + p * as[0], *B = (const float *)b + p * bs[0];
            float *C = (float *)c + p * cs[0];
            if (!gemm_f32(m, n, k, A, as[1], as[2], B, bs[1], bs[2], C, cs[1], cs[2], accumulate, NULL, ND_GEMM_DENSE)) {
                NAIVE(float)
            }
        } else {
            const double *A = (const double *)a + p * as[0], *B = (const double *)b + p * bs[0];
            double *C = (double *)c + p * cs[0];
            if (!gemm_f64(m, n, k, A, as[1], as[2], B, bs[1], bs[2], C, cs[1], cs[2], accumulate, NULL, ND_GEMM_DENSE)) {
                NAIVE(double)
            }
        }
    }
}

void nd_cpu_gemm_shaped(nd_dtype dtype, int64_t m, int64_t n, int64_t k, const void *a, int64_t ar, int64_t ac,
                        const void *b, int64_t br, int64_t bc, void *c, int64_t cr, nd_gemm_shape shape)
{
#ifndef ND_USE_OPENBLAS
    if (dtype == ND_FLOAT32 ? gemm_f32(m, n, k, a, ar, ac, b, br, bc, c, cr, 1, false, NULL, shape)
                            : gemm_f64(m, n, k, a, ar, ac, b, br, bc, c, cr, 1, false, NULL, shape))
        return;
#else
    (void)shape;
#endif
    /* no packing buffer (or OpenBLAS): the whole product, which the zeros make the same */
    nd_cpu_gemm_2d(dtype, m, n, k, a, ar, ac, b, br, bc, c, cr, false);
}

void nd_cpu_gemm_bias(nd_dtype dtype, int64_t m, int64_t n, int64_t k, const void *a, const int64_t as[3], const void *b,
                      const int64_t bs[3], void *c, int64_t cr, const void *bias)
{
#ifndef ND_USE_OPENBLAS
    if (dtype == ND_FLOAT32 ? gemm_f32(m, n, k, a, as[1], as[2], b, bs[1], bs[2], c, cr, 1, false, bias, ND_GEMM_DENSE)
                            : gemm_f64(m, n, k, a, as[1], as[2], b, bs[1], bs[2], c, cr, 1, false, bias, ND_GEMM_DENSE))
        return;
#endif
    /* no packing buffer (or OpenBLAS): the bias in every row, and the product added to it */
    size_t es = dtype == ND_FLOAT32 ? 4 : 8;
    for (int64_t i = 0; i < m; i++)
        memcpy((char *)c + (size_t)(i * cr) * es, bias, (size_t)n * es);
    const int64_t cs[3] = {0, cr, 1};
    nd_cpu_gemm(dtype, 1, m, n, k, a, as, b, bs, c, cs, true);
}

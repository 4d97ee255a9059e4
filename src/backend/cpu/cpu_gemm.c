/* GEMM: C = A @ B for any strides. Blocked as in the Goto/BLIS scheme: B is packed into KC x NR
 * column panels shared by all threads, each thread packs its MC x KC block of A into MR-row
 * panels (both in per-thread scratch slots, threads.c), and a register-blocked micro-kernel
 * multiplies one MR x KC panel by one KC x NR panel.
 * The micro-kernel is chosen at run time (AVX-512, AVX2+FMA, or portable C), so one binary runs
 * on any x86-64. Every element of C is computed by exactly one thread with the same K blocking,
 * so results do not depend on the thread count (unless a thread cannot get its packing buffer:
 * its rows are then summed by a plain loop, which may differ in the last bits). */
#include "backend/backend.h"
#include "backend/cpu/threads.h"
#include "core/internal.h"

#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { KC = 384, MC_ROWS = 192, NC = 3072, MAX_MR = 12, MAX_NR = 32 };

/* A micro-kernel: c[i*rs + j] (+)= sum_p a[p*MR + i] * b[p*NR + j] for the full MR x NR tile. */
typedef void (*kernel_f32)(int64_t k, const float *a, const float *b, float *c, int64_t rs, bool accumulate);
typedef void (*kernel_f64)(int64_t k, const double *a, const double *b, double *c, int64_t rs, bool accumulate);

typedef struct gemm_arch {
    const char *name;
    int mr32, nr32, mr64, nr64;
    kernel_f32 k32;
    kernel_f64 k64;
} gemm_arch;

/* ------------------------------------------------------------------ portable kernels */

#define GENERIC_KERNEL(NAME, T, MR, NR)                                                           \
    static void NAME(int64_t k, const T *a, const T *b, T *c, int64_t rs, bool accumulate)        \
    {                                                                                             \
        T acc[MR][NR] = {{0}};                                                                    \
        for (int64_t p = 0; p < k; p++)                                                           \
            for (int i = 0; i < MR; i++) {                                                        \
                T av = a[p * MR + i];                                                             \
                for (int j = 0; j < NR; j++)                                                      \
                    acc[i][j] += av * b[p * NR + j];                                              \
            }                                                                                     \
        for (int i = 0; i < MR; i++)                                                              \
            for (int j = 0; j < NR; j++)                                                          \
                c[i * rs + j] = accumulate ? c[i * rs + j] + acc[i][j] : acc[i][j];               \
    }

GENERIC_KERNEL(generic_f32, float, 4, 8)
GENERIC_KERNEL(generic_f64, double, 4, 4)

/* ------------------------------------------------------------------ AVX2 + FMA kernels */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_KERNELS 1

/* 6 x 16 floats: 12 ymm accumulators. */
__attribute__((target("avx2,fma"))) static void avx2_f32(int64_t k, const float *a, const float *b, float *c,
                                                         int64_t rs, bool accumulate)
{
    __m256 acc[6][2];
    for (int i = 0; i < 6; i++)
        acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t p = 0; p < k; p++) {
        __m256 b0 = _mm256_loadu_ps(b + p * 16), b1 = _mm256_loadu_ps(b + p * 16 + 8);
        for (int i = 0; i < 6; i++) {
            __m256 av = _mm256_broadcast_ss(a + p * 6 + i);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < 6; i++) {
        float *row = c + i * rs;
        if (accumulate) {
            acc[i][0] = _mm256_add_ps(acc[i][0], _mm256_loadu_ps(row));
            acc[i][1] = _mm256_add_ps(acc[i][1], _mm256_loadu_ps(row + 8));
        }
        _mm256_storeu_ps(row, acc[i][0]);
        _mm256_storeu_ps(row + 8, acc[i][1]);
    }
}

/* 6 x 8 doubles: 12 ymm accumulators. */
__attribute__((target("avx2,fma"))) static void avx2_f64(int64_t k, const double *a, const double *b, double *c,
                                                         int64_t rs, bool accumulate)
{
    __m256d acc[6][2];
    for (int i = 0; i < 6; i++)
        acc[i][0] = acc[i][1] = _mm256_setzero_pd();
    for (int64_t p = 0; p < k; p++) {
        __m256d b0 = _mm256_loadu_pd(b + p * 8), b1 = _mm256_loadu_pd(b + p * 8 + 4);
        for (int i = 0; i < 6; i++) {
            __m256d av = _mm256_broadcast_sd(a + p * 6 + i);
            acc[i][0] = _mm256_fmadd_pd(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_pd(av, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < 6; i++) {
        double *row = c + i * rs;
        if (accumulate) {
            acc[i][0] = _mm256_add_pd(acc[i][0], _mm256_loadu_pd(row));
            acc[i][1] = _mm256_add_pd(acc[i][1], _mm256_loadu_pd(row + 4));
        }
        _mm256_storeu_pd(row, acc[i][0]);
        _mm256_storeu_pd(row + 4, acc[i][1]);
    }
}

/* ------------------------------------------------------------------ AVX-512 kernels */

/* 12 x 32 floats: 24 zmm accumulators, two B vectors, one broadcast. */
__attribute__((target("avx512f"))) static void avx512_f32(int64_t k, const float *a, const float *b, float *c,
                                                          int64_t rs, bool accumulate)
{
    __m512 acc[12][2];
    for (int i = 0; i < 12; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k; p++) {
        __m512 b0 = _mm512_loadu_ps(b + p * 32), b1 = _mm512_loadu_ps(b + p * 32 + 16);
        const float *ap = a + p * 12;
        for (int i = 0; i < 12; i++) {
            __m512 av = _mm512_set1_ps(ap[i]);
            acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < 12; i++) {
        float *row = c + i * rs;
        if (accumulate) {
            acc[i][0] = _mm512_add_ps(acc[i][0], _mm512_loadu_ps(row));
            acc[i][1] = _mm512_add_ps(acc[i][1], _mm512_loadu_ps(row + 16));
        }
        _mm512_storeu_ps(row, acc[i][0]);
        _mm512_storeu_ps(row + 16, acc[i][1]);
    }
}

/* 12 x 16 doubles: 24 zmm accumulators. */
__attribute__((target("avx512f"))) static void avx512_f64(int64_t k, const double *a, const double *b, double *c,
                                                          int64_t rs, bool accumulate)
{
    __m512d acc[12][2];
    for (int i = 0; i < 12; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_pd();
    for (int64_t p = 0; p < k; p++) {
        __m512d b0 = _mm512_loadu_pd(b + p * 16), b1 = _mm512_loadu_pd(b + p * 16 + 8);
        const double *ap = a + p * 12;
        for (int i = 0; i < 12; i++) {
            __m512d av = _mm512_set1_pd(ap[i]);
            acc[i][0] = _mm512_fmadd_pd(av, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_pd(av, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < 12; i++) {
        double *row = c + i * rs;
        if (accumulate) {
            acc[i][0] = _mm512_add_pd(acc[i][0], _mm512_loadu_pd(row));
            acc[i][1] = _mm512_add_pd(acc[i][1], _mm512_loadu_pd(row + 8));
        }
        _mm512_storeu_pd(row, acc[i][0]);
        _mm512_storeu_pd(row + 8, acc[i][1]);
    }
}
#endif

static const gemm_arch ARCH_GENERIC = {"generic", 4, 8, 4, 4, generic_f32, generic_f64};
#ifdef HAVE_X86_KERNELS
static const gemm_arch ARCH_AVX2 = {"avx2", 6, 16, 6, 8, avx2_f32, avx2_f64};
static const gemm_arch ARCH_AVX512 = {"avx512", 12, 32, 12, 16, avx512_f32, avx512_f64};
#endif

static const gemm_arch *choose_arch(void)
{
    const char *force = getenv("NDGRAD_GEMM");
#ifdef HAVE_X86_KERNELS
    __builtin_cpu_init();
    bool avx512 = __builtin_cpu_supports("avx512f");
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (force && !strcmp(force, "generic"))
        return &ARCH_GENERIC;
    if (force && !strcmp(force, "avx2") && avx2)
        return &ARCH_AVX2;
    if (avx512)
        return &ARCH_AVX512;
    if (avx2)
        return &ARCH_AVX2;
#else
    (void)force;
#endif
    return &ARCH_GENERIC;
}

static const gemm_arch *arch(void)
{
    static const gemm_arch *chosen; /* set once; the choice depends only on the CPU */
    const gemm_arch *a = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (!a) {
        a = choose_arch();
        __atomic_store_n(&chosen, a, __ATOMIC_RELEASE);
    }
    return a;
}

#ifdef ND_USE_OPENBLAS
const char *nd_cpu_gemm_kernel_name(void) { return "openblas"; } /* for every layout it can take */
#else
const char *nd_cpu_gemm_kernel_name(void) { return arch()->name; }
#endif

/* ------------------------------------------------------------------ the blocked driver */

#define GEMM_DRIVER(T, SUFFIX, KERNEL_FIELD, MR_FIELD, NR_FIELD)                                        \
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
        void (*kernel)(int64_t, const T *, const T *, T *, int64_t, bool);                             \
        bool accumulate; /* add to C instead of overwriting it */                                     \
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
            for (int64_t p = 0; p < j->kc; p++) {                                                      \
                const T *src = j->b + (j->pc + p) * j->br + col0 * j->bc;                              \
                T *d = dst + p * nr;                                                                   \
                if (j->bc == 1)                                                                        \
                    for (int64_t q = 0; q < cols; q++)                                                 \
                        d[q] = src[q];                                                                 \
                else                                                                                   \
                    for (int64_t q = 0; q < cols; q++)                                                 \
                        d[q] = src[q * j->bc];                                                         \
                for (int64_t q = cols; q < nr; q++)                                                    \
                    d[q] = 0;                                                                          \
            }                                                                                          \
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
        T *apack = nd_thread_scratch(ND_SCRATCH_GEMM_A, (size_t)(panels_per_block * mr * j->kc) * sizeof(T)); \
        if (!apack) { /* no packing buffer: these rows of this block, slowly but exactly once, so    \
                       * rows other threads have already added to are never added twice */      \
            int64_t r1 = end * mr < j->m ? end * mr : j->m;                                            \
            for (int64_t i = begin * mr; i < r1; i++)                                                  \
                for (int64_t q = j->jc; q < j->jc + j->nc; q++) {                                      \
                    T sum = 0;                                                                         \
                    for (int64_t p = j->pc; p < j->pc + j->kc; p++)                                    \
                        sum += j->a[i * j->ar + p * j->ac] * j->b[p * j->br + q * j->bc];              \
                    T *dst = j->c + i * j->cr + q * j->cc;                                             \
                    *dst = j->pc > 0 || j->accumulate ? *dst + sum : sum;                              \
                }                                                                                      \
            return;                                                                                    \
        }                                                                                              \
        T tile[MAX_MR * MAX_NR];                                                                       \
        int64_t col_panels = (j->nc + nr - 1) / nr;                                                    \
        for (int64_t pb = begin; pb < end; pb += panels_per_block) {                                   \
            int64_t pe = pb + panels_per_block < end ? pb + panels_per_block : end;                    \
            for (int64_t panel = pb; panel < pe; panel++) {                                            \
                T *dst = apack + (panel - pb) * j->kc * mr;                                            \
                int64_t row0 = panel * mr, rows = j->m - row0 < mr ? j->m - row0 : mr;                 \
                for (int64_t p = 0; p < j->kc; p++) {                                                  \
                    const T *src = j->a + row0 * j->ar + (j->pc + p) * j->ac;                          \
                    T *d = dst + p * mr;                                                               \
                    for (int64_t r = 0; r < rows; r++)                                                 \
                        d[r] = src[r * j->ar];                                                         \
                    for (int64_t r = rows; r < mr; r++)                                                \
                        d[r] = 0;                                                                      \
                }                                                                                      \
            }                                                                                          \
            for (int64_t cp = 0; cp < col_panels; cp++) {                                              \
                const T *bp = j->bpack + cp * j->kc * nr;                                              \
                int64_t col0 = j->jc + cp * nr, cols = j->jc + j->nc - col0 < nr ? j->jc + j->nc - col0 : nr; \
                for (int64_t panel = pb; panel < pe; panel++) {                                        \
                    int64_t row0 = panel * mr, rows = j->m - row0 < mr ? j->m - row0 : mr;             \
                    const T *ap = apack + (panel - pb) * j->kc * mr;                                   \
                    T *cp0 = j->c + row0 * j->cr + col0 * j->cc;                                       \
                    bool accumulate = j->pc > 0 || j->accumulate;                                      \
                    if (rows == mr && cols == nr && j->cc == 1) {                                      \
                        j->kernel(j->kc, ap, bp, cp0, j->cr, accumulate);                              \
                    } else {                                                                           \
                        j->kernel(j->kc, ap, bp, tile, nr, false);                                     \
                        for (int64_t r = 0; r < rows; r++)                                             \
                            for (int64_t q = 0; q < cols; q++) {                                       \
                                T *dst = cp0 + r * j->cr + q * j->cc;                                  \
                                *dst = accumulate ? *dst + tile[r * nr + q] : tile[r * nr + q];        \
                            }                                                                          \
                    }                                                                                  \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    static bool gemm_##SUFFIX(int64_t m, int64_t n, int64_t k, const T *a, int64_t ar, int64_t ac,     \
                              const T *b, int64_t br, int64_t bc, T *c, int64_t cr, int64_t cc,        \
                              bool accumulate)                                                         \
    {                                                                                                  \
        const gemm_arch *ar_ = arch();                                                                 \
        if (k == 0) { /* an empty sum: zeros, or C unchanged when accumulating */                      \
            for (int64_t i = 0; !accumulate && i < m; i++)                                             \
                for (int64_t q = 0; q < n; q++)                                                        \
                    c[i * cr + q * cc] = 0;                                                            \
            return true;                                                                               \
        }                                                                                              \
        /* Fewer columns than a micro-tile is wide, more rows: compute Cᵀ = Bᵀ Aᵀ instead, so the    \
         * tiles are filled (a convolution's weight gradient with 9 columns runs 2-3x faster). */  \
        if (n < ar_->NR_FIELD && m > n)                                                                \
            return gemm_##SUFFIX(n, m, k, b, bc, br, a, ac, ar, c, cc, cr, accumulate);               \
        job_##SUFFIX j = {m, n, k, a, ar, ac, b, br, bc, c, cr, cc, 0, 0, 0, 0, NULL, ar_->MR_FIELD,   \
                          ar_->NR_FIELD, ar_->KERNEL_FIELD, accumulate};                        \
        int64_t row_panels = (m + j.mr - 1) / j.mr;                                                    \
        /* Enough rows per thread that packing B once pays off; small products stay on one thread. */ \
        int64_t min_panels = (int64_t)(4096 * 64 / (n * k > 0 ? n * k : 1)) + 1;                       \
        for (j.jc = 0; j.jc < n; j.jc += NC) {                                                         \
            j.nc = n - j.jc < NC ? n - j.jc : NC;                                                      \
            int64_t col_panels = (j.nc + j.nr - 1) / j.nr;                                             \
            for (j.pc = 0; j.pc < k; j.pc += KC) {                                                     \
                j.kc = k - j.pc < KC ? k - j.pc : KC;                                                  \
                j.bpack = nd_thread_scratch(ND_SCRATCH_GEMM_B, (size_t)(col_panels * j.nr * j.kc) * sizeof(T)); \
                if (!j.bpack) /* only the first block can fail (it needs the most): C is untouched */  \
                    return false;                                                                      \
                nd_parallel_for(col_panels, 8, pack_b_##SUFFIX, &j);                                   \
                nd_parallel_for(row_panels, min_panels, compute_##SUFFIX, &j);                         \
            }                                                                                          \
        }                                                                                              \
        return true;                                                                                   \
    }

GEMM_DRIVER(float, f32, k32, mr32, nr32)
GEMM_DRIVER(double, f64, k64, mr64, nr64)

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
            if (!gemm_f32(m, n, k, A, as[1], as[2], B, bs[1], bs[2], C, cs[1], cs[2], accumulate)) {
                NAIVE(float)
            }
        } else {
            const double *A = (const double *)a + p * as[0], *B = (const double *)b + p * bs[0];
            double *C = (double *)c + p * cs[0];
            if (!gemm_f64(m, n, k, A, as[1], as[2], B, bs[1], bs[2], C, cs[1], cs[2], accumulate)) {
                NAIVE(double)
            }
        }
    }
}

/* Portable blocked GEMM: C = A @ B with any strides. Rows of B are read contiguously (packed
 * first when B's columns are strided) and each C row is built by vectorisable axpy loops over a
 * cache-sized block of B. Issue 5 replaces this with packed SIMD micro-kernels. */
#include "backend/backend.h"

#include <stdlib.h>
#include <string.h>

enum { BLOCK_N = 512, BLOCK_K = 128 };

#define GEMM_IMPL(NAME, T)                                                                              \
    static void NAME(int64_t batch, int64_t m, int64_t n, int64_t k, const T *a, const int64_t as[3],   \
                     const T *b, const int64_t bs[3], T *c, const int64_t cs[3])                        \
    {                                                                                                   \
        bool pack_b = bs[2] != 1 && n > 1;                                                              \
        bool temp_c = cs[2] != 1 && n > 1;                                                              \
        T *bpack = pack_b ? malloc((size_t)(k * n) * sizeof(T) + 1) : NULL;                             \
        T *crow = temp_c ? malloc((size_t)n * sizeof(T) + 1) : NULL;                                    \
        if ((pack_b && !bpack) || (temp_c && !crow)) { /* no memory: slow but correct */                \
            free(bpack);                                                                                \
            free(crow);                                                                                 \
            for (int64_t p = 0; p < batch; p++)                                                         \
                for (int64_t i = 0; i < m; i++)                                                         \
                    for (int64_t j = 0; j < n; j++) {                                                   \
                        T s = 0;                                                                        \
                        for (int64_t q = 0; q < k; q++)                                                 \
                            s += a[p * as[0] + i * as[1] + q * as[2]] * b[p * bs[0] + q * bs[1] + j * bs[2]]; \
                        c[p * cs[0] + i * cs[1] + j * cs[2]] = s;                                       \
                    }                                                                                   \
            return;                                                                                     \
        }                                                                                               \
        for (int64_t p = 0; p < batch; p++) {                                                           \
            const T *ab = a + p * as[0];                                                                \
            const T *bb = b + p * bs[0];                                                                \
            T *cb = c + p * cs[0];                                                                      \
            int64_t brow = bs[1];                                                                       \
            if (pack_b) {                                                                               \
                for (int64_t q = 0; q < k; q++)                                                         \
                    for (int64_t j = 0; j < n; j++)                                                     \
                        bpack[q * n + j] = bb[q * bs[1] + j * bs[2]];                                   \
                bb = bpack;                                                                             \
                brow = n;                                                                               \
            } else if (n == 1) {                                                                        \
                brow = bs[1];                                                                           \
            }                                                                                           \
            for (int64_t j0 = 0; j0 < n; j0 += BLOCK_N) {                                               \
                int64_t nb = n - j0 < BLOCK_N ? n - j0 : BLOCK_N;                                       \
                for (int64_t i = 0; i < m; i++) {                                                       \
                    T *out = temp_c ? crow : cb + i * cs[1] + j0;                                       \
                    for (int64_t j = 0; j < nb; j++)                                                    \
                        out[j] = 0;                                                                     \
                    for (int64_t q0 = 0; q0 < k; q0 += BLOCK_K) {                                       \
                        int64_t qe = q0 + BLOCK_K < k ? q0 + BLOCK_K : k;                               \
                        for (int64_t q = q0; q < qe; q++) {                                             \
                            const T av = ab[i * as[1] + q * as[2]];                                     \
                            const T *br = bb + q * brow + j0;                                           \
                            for (int64_t j = 0; j < nb; j++)                                            \
                                out[j] += av * br[j];                                                   \
                        }                                                                               \
                    }                                                                                   \
                    if (temp_c)                                                                         \
                        for (int64_t j = 0; j < nb; j++)                                                \
                            cb[i * cs[1] + (j0 + j) * cs[2]] = crow[j];                                 \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
        free(bpack);                                                                                    \
        free(crow);                                                                                     \
    }

GEMM_IMPL(gemm_f32, float)
GEMM_IMPL(gemm_f64, double)

void nd_cpu_gemm(nd_dtype dtype, int64_t batch, int64_t m, int64_t n, int64_t k, const void *a,
                 const int64_t a_strides[3], const void *b, const int64_t b_strides[3], void *c,
                 const int64_t c_strides[3])
{
    if (dtype == ND_FLOAT32)
        gemm_f32(batch, m, n, k, a, a_strides, b, b_strides, c, c_strides);
    else
        gemm_f64(batch, m, n, k, a, a_strides, b, b_strides, c, c_strides);
}

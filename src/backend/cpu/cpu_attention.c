/* Scaled dot-product attention as one kernel per (batch, head) slice, so the L x S score matrix
 * lives only in a per-thread scratch buffer and never becomes a tensor. The forward keeps each
 * row's log-sum-exp; the backward recomputes the probabilities from it (one extra q kᵀ product)
 * instead of saving them, which is what lets a GPT's activations fit in half of PyTorch's memory.
 * Slices are split across the pool; each slice is computed the same way on any thread, so
 * results do not depend on the thread count. */
#define _POSIX_C_SOURCE 200809L
#include "backend/backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/fast_math.h"
#include "backend/cpu/threads.h"
#include "core/internal.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ row kernels */

/* Keys a query row may see: all S, or with the causal mask (top-left aligned, as PyTorch's
 * is_causal) keys 0..i. */
static inline int64_t visible(const nd_attention_geometry *g, int64_t i)
{
    return g->causal ? (i + 1 < g->S ? i + 1 : g->S) : g->S;
}

/* The row helpers below take the row's n visible scores and zero the masked ones up to `width`
 * (row_width: as far as the causal products read). */

/* max_j row[j] * scale, NaNs skipped (-inf for none): in vector lanes where the level has them, as
 * one chain of scalar compares waits on each (gcc does not vectorise the compare-select). A
 * maximum is the same in any order. */
#if ND_ISA_LEVEL == ND_ISA_AVX512
#include <immintrin.h>
static float max_scaled_f32(const float *row, int64_t n, float scale)
{
    const __m512 s = _mm512_set1_ps(scale), none = _mm512_set1_ps(-INFINITY);
    __m512 m = none;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) /* max_ps(x, m) is m when x is NaN: x > m ? x : m */
        m = _mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(row + j), s), m);
    if (j < n) {
        const __mmask16 k = (__mmask16)((1u << (n - j)) - 1u);
        m = _mm512_mask_max_ps(m, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row + j), s), m);
    }
    return _mm512_reduce_max_ps(m);
}
#elif ND_ISA_LEVEL == ND_ISA_AVX2
#include <immintrin.h>
static float max_scaled_f32(const float *row, int64_t n, float scale)
{
    const __m256 s = _mm256_set1_ps(scale);
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        m = _mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(row + j), s), m);
    float lanes[8], mx = -INFINITY;
    _mm256_storeu_ps(lanes, m);
    for (int l = 0; l < 8; l++)
        mx = lanes[l] > mx ? lanes[l] : mx;
    for (; j < n; j++) {
        float x = row[j] * scale;
        mx = x > mx ? x : mx;
    }
    return mx;
}
#else
static float max_scaled_f32(const float *row, int64_t n, float scale)
{
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        float x = row[j] * scale;
        mx = x > mx ? x : mx;
    }
    return mx;
}
#endif

/* Row i of scores -> probabilities in place; returns the row's log-sum-exp. Masked keys get 0. */
static float softmax_row_f32(float *row, int64_t n, int64_t width, float scale)
{
    float mx = max_scaled_f32(row, n, scale);
    if (mx == -INFINITY) /* every visible score is -inf: uniform over nothing, as softmax gives NaN */
        mx = 0;
    for (int64_t j = 0; j < n; j++)
        row[j] = fast_expf(row[j] * scale - mx);
    float part[8] = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++)
            part[l] += row[j + l];
    float sum = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    for (; j < n; j++)
        sum += row[j];
    float inv = 1.0f / sum;
    for (j = 0; j < n; j++)
        row[j] *= inv;
    for (j = n; j < width; j++)
        row[j] = 0;
    return mx + logf(sum);
}

static double softmax_row_f64(double *row, int64_t n, int64_t width, double scale)
{
    double mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        double x = row[j] * scale;
        mx = x > mx ? x : mx;
    }
    if (mx == -INFINITY)
        mx = 0;
    double sum = 0;
    for (int64_t j = 0; j < n; j++)
        sum += row[j] = exp(row[j] * scale - mx);
    double inv = 1.0 / sum;
    for (int64_t j = 0; j < n; j++)
        row[j] *= inv;
    for (int64_t j = n; j < width; j++)
        row[j] = 0;
    return mx + log(sum);
}

/* Probabilities again from the scores and the saved log-sum-exp. */
static void recompute_row_f32(float *row, int64_t n, int64_t width, float scale, float lse)
{
    for (int64_t j = 0; j < n; j++)
        row[j] = fast_expf(row[j] * scale - lse);
    for (int64_t j = n; j < width; j++)
        row[j] = 0;
}

static void recompute_row_f64(double *row, int64_t n, int64_t width, double scale, double lse)
{
    for (int64_t j = 0; j < n; j++)
        row[j] = exp(row[j] * scale - lse);
    for (int64_t j = n; j < width; j++)
        row[j] = 0;
}

/* dS = P (dP - Σ_j P dP) scale, in place over dP. */
#define SCORE_GRAD_ROW(T)                                                                            \
    static void score_grad_row_##T(const T *p, T *dp, int64_t n, int64_t width, T scale) \
    {                                                                                                \
        /* Σ p dp in eight lanes, summed in a fixed order (the same at every vector level) */      \
        double lane[8] = {0};                                                                        \
        int64_t j0 = 0;                                                                              \
        for (; j0 + 8 <= n; j0 += 8)                                                                 \
            for (int l = 0; l < 8; l++)                                                              \
                lane[l] += (double)p[j0 + l] * (double)dp[j0 + l];                                   \
        double dot = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7])); \
        for (; j0 < n; j0++)                                                                         \
            dot += (double)p[j0] * (double)dp[j0];                                                   \
        T d = (T)dot;                                                                                \
        for (int64_t j = 0; j < n; j++)                                                              \
            dp[j] = p[j] * (dp[j] - d) * scale;                                                      \
        for (int64_t j = n; j < width; j++)                                                          \
            dp[j] = 0;                                                                               \
    }
SCORE_GRAD_ROW(float)
SCORE_GRAD_ROW(double)

/* ------------------------------------------------------------------ slices */

typedef struct attention_job {
    nd_dtype dtype;
    const nd_attention_geometry *g;
    const char *q, *k, *v, *dout, *lse;
    char *out, *out_lse, *dq, *dk, *dv;
    atomic_bool failed; /* set by any worker whose scratch memory runs out */
} attention_job;

/* Element offset of slice s (an index over the batch shape) in an operand with these batch strides. */
static int64_t slice_offset(const nd_attention_geometry *g, int64_t s, const int64_t *strides)
{
    int64_t off = 0;
    for (int d = g->nbatch - 1; d >= 0; d--) {
        off += s % g->batch[d] * strides[d];
        s /= g->batch[d];
    }
    return off;
}

/* Causal attention skips the score tiles above the diagonal: each product of a slice is one GEMM
 * with a causal shape (nd_gemm_shape): the scores and their gradient keep only the tiles that
 * touch the lower triangle (LOWER_C), and the products that read a score matrix run, per tile,
 * only the part of it that can be nonzero (K_TO_ROW for P V and dS K, K_FROM_ROW for Pᵀ dO and
 * dSᵀ Q). The masked scores of every row are zeros, so the skipped parts contribute nothing, and
 * each operand is packed once per product. For L = S = 128 about 55% of the full products'
 * work; without a mask the shapes are dense. */
static inline nd_gemm_shape causal_shape(const nd_attention_geometry *g, nd_gemm_shape shape)
{
    return g->causal ? shape : ND_GEMM_DENSE;
}

/* The columns of row i (n of them visible) that must hold a probability or a zero: the products
 * with a causal shape read row i only up to the end of its tile of A rows, i + MR - 1 at most
 * (MR <= 16 at every level), so masked columns past that are never read and not zeroed. */
static inline int64_t row_width(const nd_attention_geometry *g, int64_t n)
{
    return g->causal && n + 16 < g->S ? n + 16 : g->S;
}

/* P = softmax(q kᵀ scale) into the scratch rows (row stride S); fills lse when asked (forward) or
 * uses it. */
static void probabilities(const attention_job *j, void *P, const char *q, const char *k, const void *lse_in,
                          void *lse_out)
{
    const nd_attention_geometry *g = j->g;
    const int nb = g->nbatch;
    nd_cpu_gemm_shaped(j->dtype, g->L, g->S, g->E, q, g->q_strides[nb], g->q_strides[nb + 1], k, g->k_strides[nb + 1],
                       g->k_strides[nb], P, g->S, causal_shape(g, ND_GEMM_LOWER_C));
    for (int64_t i = 0; i < g->L; i++) {
        int64_t n = visible(g, i);
        if (j->dtype == ND_FLOAT32) {
            float *row = (float *)P + i * g->S;
            if (lse_out)
                ((float *)lse_out)[i] = softmax_row_f32(row, n, row_width(g, n), (float)g->scale);
            else
                recompute_row_f32(row, n, row_width(g, n), (float)g->scale, ((const float *)lse_in)[i]);
        } else {
            double *row = (double *)P + i * g->S;
            if (lse_out)
                ((double *)lse_out)[i] = softmax_row_f64(row, n, row_width(g, n), g->scale);
            else
                recompute_row_f64(row, n, row_width(g, n), g->scale, ((const double *)lse_in)[i]);
        }
    }
}

static void forward_slices(void *ctx, int64_t begin, int64_t end, int chunk)
{
    (void)chunk;
    attention_job *j = ctx;
    const nd_attention_geometry *g = j->g;
    const int64_t es = j->dtype == ND_FLOAT32 ? 4 : 8, nb = g->nbatch;
    void *P = nd_thread_scratch(ND_SCRATCH_SCORES, (size_t)(g->L * g->S * es));
    if (!P) {
        atomic_store(&j->failed, true);
        return;
    }
    for (int64_t s = begin; s < end; s++) {
        const char *q = j->q + slice_offset(g, s, g->q_strides) * es, *k = j->k + slice_offset(g, s, g->k_strides) * es;
        const char *v = j->v + slice_offset(g, s, g->v_strides) * es;
        probabilities(j, P, q, k, NULL, j->out_lse + s * g->L * es);
        nd_cpu_gemm_shaped(j->dtype, g->L, g->Ev, g->S, P, g->S, 1, v, g->v_strides[nb], g->v_strides[nb + 1],
                           j->out + slice_offset(g, s, g->out_strides) * es, g->out_strides[nb],
                           causal_shape(g, ND_GEMM_K_TO_ROW));
    }
}

static void backward_slices(void *ctx, int64_t begin, int64_t end, int chunk)
{
    (void)chunk;
    attention_job *j = ctx;
    const nd_attention_geometry *g = j->g;
    const int64_t es = j->dtype == ND_FLOAT32 ? 4 : 8, nb = g->nbatch, LS = g->L * g->S;
    char *P = nd_thread_scratch(ND_SCRATCH_SCORES, (size_t)(2 * LS * es));
    if (!P) {
        atomic_store(&j->failed, true);
        return;
    }
    char *dP = P + LS * es;
    for (int64_t s = begin; s < end; s++) {
        const char *q = j->q + slice_offset(g, s, g->q_strides) * es, *k = j->k + slice_offset(g, s, g->k_strides) * es;
        const char *v = j->v + slice_offset(g, s, g->v_strides) * es;
        const char *dout = j->dout + slice_offset(g, s, g->dout_strides) * es;
        const int64_t dor = g->dout_strides[nb], doc = g->dout_strides[nb + 1];
        char *dq = j->dq + slice_offset(g, s, g->dq_strides) * es, *dk = j->dk + slice_offset(g, s, g->dk_strides) * es;
        char *dv = j->dv + slice_offset(g, s, g->dv_strides) * es;
        probabilities(j, P, q, k, j->lse + s * g->L * es, NULL);
        /* dV = Pᵀ dO,  dP = dO Vᵀ */
        nd_cpu_gemm_shaped(j->dtype, g->S, g->Ev, g->L, P, 1, g->S, dout, dor, doc, dv, g->dv_strides[nb],
                           causal_shape(g, ND_GEMM_K_FROM_ROW));
        nd_cpu_gemm_shaped(j->dtype, g->L, g->S, g->Ev, dout, dor, doc, v, g->v_strides[nb + 1], g->v_strides[nb], dP, g->S,
                           causal_shape(g, ND_GEMM_LOWER_C));
        for (int64_t i = 0; i < g->L; i++) {
            int64_t n = visible(g, i);
            if (j->dtype == ND_FLOAT32)
                score_grad_row_float((const float *)P + i * g->S, (float *)dP + i * g->S, n, row_width(g, n),
                                     (float)g->scale);
            else
                score_grad_row_double((const double *)P + i * g->S, (double *)dP + i * g->S, n, row_width(g, n),
                                      g->scale);
        }
        /* dQ = dS K,  dK = dSᵀ Q */
        nd_cpu_gemm_shaped(j->dtype, g->L, g->E, g->S, dP, g->S, 1, k, g->k_strides[nb], g->k_strides[nb + 1], dq,
                           g->dq_strides[nb], causal_shape(g, ND_GEMM_K_TO_ROW));
        nd_cpu_gemm_shaped(j->dtype, g->S, g->E, g->L, dP, 1, g->S, q, g->q_strides[nb], g->q_strides[nb + 1], dk,
                           g->dk_strides[nb], causal_shape(g, ND_GEMM_K_FROM_ROW));
    }
}

static int64_t slices(const nd_attention_geometry *g)
{
    int64_t n = 1;
    for (int d = 0; d < g->nbatch; d++)
        n *= g->batch[d];
    return n;
}

bool nd_cpu_attention_forward(nd_dtype dtype, const nd_attention_geometry *g, const void *q, const void *k,
                              const void *v, void *out, void *lse)
{
    attention_job j = {dtype, g, q, k, v, NULL, NULL, out, lse, NULL, NULL, NULL, false};
    nd_parallel_for(slices(g), 1, forward_slices, &j);
    return !atomic_load(&j.failed);
}

bool nd_cpu_attention_backward(nd_dtype dtype, const nd_attention_geometry *g, const void *q, const void *k,
                               const void *v, const void *lse, const void *dout, void *dq, void *dk, void *dv)
{
    attention_job j = {dtype, g, q, k, v, dout, lse, NULL, NULL, dq, dk, dv, false};
    nd_parallel_for(slices(g), 1, backward_slices, &j);
    return !atomic_load(&j.failed);
}

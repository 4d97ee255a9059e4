/* Window sweeps for convolution and pooling over dense NCHW data. im2col writes each output
 * position's receptive field as a column so a convolution becomes one GEMM. */
#include "backend/backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/fast_math.h"
#include "backend/cpu/threads.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

/* The output columns [lo, hi) whose kernel column j lands inside the input row (the rest meet
 * padding), so the copy loops need no test per element. */
static inline void inside_columns(const nd_conv_geometry *g, int64_t j, int64_t *lo, int64_t *hi)
{
    int64_t off = j * g->dw - g->pw; /* input column of output column 0 */
    *lo = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;
    *hi = g->w - 1 - off < 0 ? 0 : (g->w - 1 - off) / g->sw + 1;
    if (*hi > g->ow)
        *hi = g->ow;
    if (*lo > g->ow)
        *lo = g->ow;
    if (*hi < *lo)
        *hi = *lo;
}

/* Columns are laid out [C*kh*kw, N*oh*ow]: one row per (channel, kernel offset), one column per
 * output position of every image, so a convolution is the single product W[O, K] @ cols. The
 * inside range of a kernel column is the same for every output row, so it is found once per
 * column row (it divides), and the copies are plain loops the compiler vectorises (a memcpy call
 * per 14-float row cost more than the copy). */
#define IM2COL_IMPL(NAME, T)                                                                        \
    static void NAME(const nd_conv_geometry *g, const T *x, T *cols, int64_t row_begin, int64_t row_end) \
    {                                                                                               \
        int64_t L = g->oh * g->ow, NL = g->n * L;                                                   \
        for (int64_t row = row_begin; row < row_end; row++) {                                       \
            int64_t c = row / (g->kh * g->kw), i = row / g->kw % g->kh, j = row % g->kw;            \
            int64_t lo, hi;                                                                         \
            inside_columns(g, j, &lo, &hi);                                                         \
            for (int64_t n = 0; n < g->n; n++) {                                                    \
                T *dst = cols + row * NL + n * L;                                                   \
                const T *plane = x + (n * g->c + c) * g->h * g->w;                                  \
                for (int64_t oy = 0; oy < g->oh; oy++) {                                            \
                    int64_t y = oy * g->sh - g->ph + i * g->dh;                                     \
                    T *restrict d = dst + oy * g->ow;                                               \
                    if (y < 0 || y >= g->h) {                                                       \
                        for (int64_t ox = 0; ox < g->ow; ox++)                                      \
                            d[ox] = 0;                                                              \
                        continue;                                                                   \
                    }                                                                               \
                    const T *restrict src = plane + y * g->w + (j * g->dw - g->pw);                 \
                    for (int64_t ox = 0; ox < lo; ox++)                                             \
                        d[ox] = 0;                                                                  \
                    if (g->sw == 1)                                                                 \
                        for (int64_t ox = lo; ox < hi; ox++)                                        \
                            d[ox] = src[ox];                                                        \
                    else                                                                            \
                        for (int64_t ox = lo; ox < hi; ox++)                                        \
                            d[ox] = src[ox * g->sw];                                                \
                    for (int64_t ox = hi; ox < g->ow; ox++)                                         \
                        d[ox] = 0;                                                                  \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
    }

/* The transpose: each (image, channel) plane gathers the kh*kw rows that read from it, so the
 * planes can be filled in parallel and every sum is taken in the same order. */
#define COL2IM_IMPL(NAME, T)                                                                        \
    static void NAME(const nd_conv_geometry *g, const T *cols, T *x, int64_t plane_begin, int64_t plane_end) \
    {                                                                                               \
        int64_t L = g->oh * g->ow, NL = g->n * L;                                                   \
        for (int64_t pl = plane_begin; pl < plane_end; pl++) {                                      \
            int64_t n = pl / g->c, c = pl % g->c;                                                   \
            T *plane = x + pl * g->h * g->w;                                                        \
            memset(plane, 0, sizeof(T) * (size_t)(g->h * g->w));                                    \
            for (int64_t i = 0; i < g->kh; i++)                                                     \
                for (int64_t j = 0; j < g->kw; j++) {                                               \
                    const T *src = cols + ((c * g->kh + i) * g->kw + j) * NL + n * L;               \
                    int64_t lo, hi;                                                                 \
                    inside_columns(g, j, &lo, &hi);                                                 \
                    for (int64_t oy = 0; oy < g->oh; oy++) {                                        \
                        int64_t y = oy * g->sh - g->ph + i * g->dh;                                 \
                        if (y < 0 || y >= g->h)                                                     \
                            continue;                                                               \
                        T *restrict d = plane + y * g->w + (j * g->dw - g->pw);                     \
                        const T *restrict s = src + oy * g->ow;                                     \
                        if (g->sw == 1)                                                             \
                            for (int64_t ox = lo; ox < hi; ox++)                                    \
                                d[ox] += s[ox];                                                     \
                        else                                                                        \
                            for (int64_t ox = lo; ox < hi; ox++)                                    \
                                d[ox * g->sw] += s[ox];                                             \
                    }                                                                               \
                }                                                                                   \
        }                                                                                           \
    }

#define MAXPOOL_IMPL(NAME, T)                                                                       \
    static void NAME(const nd_conv_geometry *g, const T *x, T *out, int64_t *indices, int64_t p_begin, int64_t p_end) \
    {                                                                                               \
        bool inside = g->ph == 0 && g->pw == 0; /* windows never leave the plane: no checks */        \
        for (int64_t p = p_begin; p < p_end; p++) {                                                 \
            const T *plane = x + p * g->h * g->w;                                                   \
            if (inside) {                                                                           \
                for (int64_t oy = 0; oy < g->oh; oy++)                                              \
                    for (int64_t ox = 0; ox < g->ow; ox++) {                                        \
                        int64_t y0 = oy * g->sh, x0 = ox * g->sw, at = y0 * g->w + x0;              \
                        T best = plane[at];                                                         \
                        /* selects, not branches: which element wins is data, and unpredictable */  \
                        for (int64_t i = 0; i < g->kh; i++)                                         \
                            for (int64_t j = 0; j < g->kw; j++) {                                   \
                                int64_t q = (y0 + i * g->dh) * g->w + x0 + j * g->dw;               \
                                T v = plane[q];                                                     \
                                bool take = (v > best) | (v != v); /* the last NaN wins, as PyTorch's */     \
                                best = take ? v : best;                                             \
                                at = take ? q : at;                                                 \
                            }                                                                       \
                        int64_t o = (p * g->oh + oy) * g->ow + ox;                                  \
                        out[o] = best;                                                              \
                        indices[o] = at;                                                            \
                    }                                                                               \
                continue;                                                                           \
            }                                                                                       \
            for (int64_t oy = 0; oy < g->oh; oy++)                                                  \
                for (int64_t ox = 0; ox < g->ow; ox++) {                                            \
                    T best = 0;                                                                     \
                    int64_t at = -1;                                                                \
                    for (int64_t i = 0; i < g->kh; i++) {                                           \
                        int64_t y = oy * g->sh - g->ph + i * g->dh;                                 \
                        if (y < 0 || y >= g->h)                                                     \
                            continue;                                                               \
                        for (int64_t j = 0; j < g->kw; j++) {                                       \
                            int64_t xx = ox * g->sw - g->pw + j * g->dw;                            \
                            if (xx < 0 || xx >= g->w)                                               \
                                continue;                                                           \
                            T v = plane[y * g->w + xx];                                             \
                            if (at < 0 || v > best || v != v)                                       \
                                best = v, at = y * g->w + xx;                                       \
                        }                                                                           \
                    }                                                                               \
                    int64_t o = (p * g->oh + oy) * g->ow + ox;                                      \
                    out[o] = best;                                                                  \
                    indices[o] = at;                                                                \
                }                                                                                   \
        }                                                                                           \
    }

IM2COL_IMPL(im2col_f32, float)
IM2COL_IMPL(im2col_f64, double)
COL2IM_IMPL(col2im_f32, float)
COL2IM_IMPL(col2im_f64, double)

/* rows x n floats from src (rows src_stride apart) to the contiguous rows of dst (n apart), and
 * the same added into dst rows (dst_stride apart) from contiguous src rows. The vector versions
 * copy a row in whole vectors: the last store's lanes past n land on the next row, which the next
 * row's stores overwrite, so only the last row ends in a partial tail; the loads past n read the
 * next source row (src_stride >= the spill, checked). The adds cannot spill, and end every row in
 * a partial tail. Each level supplies its vector (ROW_W floats) and its tail: masked at AVX-512,
 * plain overlapping or narrower vectors at AVX2, whose masked stores were several times slower
 * than plain ones here. */
#if ND_ISA_LEVEL == ND_ISA_AVX512
#include <immintrin.h>
#define ROW_W 16
typedef __m512 row_vec;
static inline row_vec row_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void row_store(float *p, row_vec v) { _mm512_storeu_ps(p, v); }
static inline row_vec row_add(row_vec a, row_vec b) { return _mm512_add_ps(a, b); }
/* a mask of the first n lanes (also the pooling rows' below) */
static inline __mmask16 first_lanes(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u); }
/* the last n (< ROW_W) floats of a row, `done` floats of it before them already written */
static inline void tail_copy(float *d, const float *s, int64_t n, int64_t done)
{
    (void)done;
    _mm512_mask_storeu_ps(d, first_lanes(n), _mm512_maskz_loadu_ps(first_lanes(n), s));
}
static inline void tail_add(float *d, const float *s, int64_t n)
{
    const __mmask16 m = first_lanes(n);
    _mm512_mask_storeu_ps(d, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), _mm512_maskz_loadu_ps(m, s)));
}
#define HAVE_ROW_HELPERS 1
#elif ND_ISA_LEVEL == ND_ISA_AVX2
#include <immintrin.h>
#define ROW_W 8
typedef __m256 row_vec;
static inline row_vec row_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void row_store(float *p, row_vec v) { _mm256_storeu_ps(p, v); }
static inline row_vec row_add(row_vec a, row_vec b) { return _mm256_add_ps(a, b); }
/* A copied row of at least a vector ends in one vector ending at its end, over lanes already
 * written (rewritten with the same values); an added row ends in four lanes and single ones. Masked
 * stores and the compiler's masked loads (vmaskmovps) are microcoded on AMD. */
static inline void tail_copy(float *d, const float *s, int64_t n, int64_t done)
{
    if (n > 0 && done + n >= 8) {
        _mm256_storeu_ps(d + n - 8, _mm256_loadu_ps(s + n - 8));
        return;
    }
    for (int64_t i = 0; i < n; i++)
        d[i] = s[i];
}
static inline void tail_add(float *d, const float *s, int64_t n)
{
    int64_t i = 0; /* not an overlapping vector: it would load what the row's last store just wrote */
    if (n >= 4) {
        _mm_storeu_ps(d, _mm_add_ps(_mm_loadu_ps(d), _mm_loadu_ps(s)));
        i = 4;
    }
    for (; i < n; i++)
        d[i] += s[i];
}
#define HAVE_ROW_HELPERS 1
#endif

#ifdef HAVE_ROW_HELPERS
static void copy_rows_f32(float *dst, const float *src, int64_t src_stride, int64_t rows, int64_t n)
{
    const int64_t vectors = (n + ROW_W - 1) / ROW_W;
    if (rows <= 0 || n <= 0)
        return;
    if (src_stride < vectors * ROW_W - n) { /* rows too close for the spill: element by element */
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < n; i++)
                dst[r * n + i] = src[r * src_stride + i];
        return;
    }
    if (vectors == 1) /* a convolution's short rows: one store each, no inner loop */
        for (int64_t r = 0; r + 1 < rows; r++)
            row_store(dst + r * n, row_load(src + r * src_stride));
    else
        for (int64_t r = 0; r + 1 < rows; r++)
            for (int64_t v = 0; v < vectors; v++)
                row_store(dst + r * n + ROW_W * v, row_load(src + r * src_stride + ROW_W * v));
    float *d = dst + (rows - 1) * n;
    const float *s = src + (rows - 1) * src_stride;
    int64_t i = 0;
    for (; i + ROW_W <= n; i += ROW_W)
        row_store(d + i, row_load(s + i));
    tail_copy(d + i, s + i, n - i, i);
}
/* rows x n floats between strided rows, nothing written past a row's n (the padding around a
 * padded plane's rows must stay zero) */
static void copy_rows_exact_f32(float *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows,
                                int64_t n)
{
    for (int64_t r = 0; r < rows; r++) {
        float *d = dst + r * dst_stride;
        const float *sr = src + r * src_stride;
        int64_t i = 0;
        for (; i + ROW_W <= n; i += ROW_W)
            row_store(d + i, row_load(sr + i));
        tail_copy(d + i, sr + i, n - i, i);
    }
}
static void add_rows_f32(float *dst, int64_t dst_stride, const float *src, int64_t rows, int64_t n)
{
    for (int64_t r = 0; r < rows; r++) {
        float *d = dst + r * dst_stride;
        const float *s = src + r * n;
        int64_t i = 0;
        for (; i + ROW_W <= n; i += ROW_W)
            row_store(d + i, row_add(row_load(d + i), row_load(s + i)));
        tail_add(d + i, s + i, n - i);
    }
}
#endif

/* One image's im2col and col2im through a zero-padded copy of its planes ([C, h + 2 ph, w + 2 pw]
 * in `padded`), so every column row is a plain copy (or add) of whole output rows, with no bounds
 * to test and no inside range to find: the convolution's own per-image path. */
#define PADDED_IMPL(T)                                                                              \
    /* x's planes into the inside of the padded planes; `borders` also zeroes the padding, which  \
     * only this writes, so a worker does it once for all the images it converts */              \
    static void pad_image_##T(const nd_conv_geometry *g, const T *x, T *padded, bool borders)       \
    {                                                                                               \
        const int64_t hp = g->h + 2 * g->ph, wp = g->w + 2 * g->pw;                                 \
        if (borders)                                                                                \
            memset(padded, 0, sizeof(T) * (size_t)(g->c * hp * wp));                                \
        for (int64_t c = 0; c < g->c; c++) {                                                        \
            T *inside = padded + c * hp * wp + g->ph * wp + g->pw;                                  \
            const T *src = x + c * g->h * g->w;                                                     \
            if (ROW_HELPERS(T)) {                                                                   \
                copy_rows_exact_f32((float *)inside, wp, (const float *)src, g->w, g->h, g->w);     \
                continue;                                                                           \
            }                                                                                       \
            for (int64_t y = 0; y < g->h; y++)                                                      \
                for (int64_t xx = 0; xx < g->w; xx++)                                               \
                    inside[y * wp + xx] = src[y * g->w + xx];                                       \
        }                                                                                           \
    }                                                                                               \
    /* cols [C*kh*kw, oh*ow] from the padded planes */                                              \
    static void padded_im2col_##T(const nd_conv_geometry *g, const T *padded, T *cols)              \
    {                                                                                               \
        const int64_t hp = g->h + 2 * g->ph, wp = g->w + 2 * g->pw, L = g->oh * g->ow;              \
        for (int64_t row = 0, c = 0, i = 0, j = 0; row < g->c * g->kh * g->kw; row++) {             \
            const T *base = padded + c * hp * wp + i * g->dh * wp + j * g->dw;                      \
            if (++j == g->kw) /* the next row's (c, i, j) */                                        \
                j = 0, i = i + 1 == g->kh ? (c++, 0) : i + 1;                                       \
            if (ROW_HELPERS(T) && g->sw == 1) {                                                     \
                copy_rows_f32((float *)(cols + row * L), (const float *)base, g->sh * wp, g->oh, g->ow); \
                continue;                                                                           \
            }                                                                                       \
            for (int64_t oy = 0; oy < g->oh; oy++) {                                                \
                T *restrict d = cols + row * L + oy * g->ow;                                        \
                const T *restrict src = base + oy * g->sh * wp;                                     \
                if (g->sw == 1)                                                                     \
                    for (int64_t ox = 0; ox < g->ow; ox++)                                          \
                        d[ox] = src[ox];                                                            \
                else                                                                                \
                    for (int64_t ox = 0; ox < g->ow; ox++)                                          \
                        d[ox] = src[ox * g->sw];                                                    \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
    /* dx (one image) = col2im(dcols): column rows added into zeroed padded planes in row order   \
     * (the same order as col2im's), then the inside copied out */                                  \
    static void padded_col2im_##T(const nd_conv_geometry *g, const T *dcols, T *padded, T *dx)      \
    {                                                                                               \
        const int64_t hp = g->h + 2 * g->ph, wp = g->w + 2 * g->pw, L = g->oh * g->ow;              \
        memset(padded, 0, sizeof(T) * (size_t)(g->c * hp * wp));                                    \
        for (int64_t c = 0; c < g->c; c++)                                                          \
            for (int64_t i = 0; i < g->kh; i++)                                                     \
                for (int64_t j = 0; j < g->kw; j++) {                                               \
                    const T *src = dcols + ((c * g->kh + i) * g->kw + j) * L;                       \
                    T *base = padded + c * hp * wp + i * g->dh * wp + j * g->dw;                    \
                    if (ROW_HELPERS(T) && g->sw == 1) {                                             \
                        add_rows_f32((float *)base, g->sh * wp, (const float *)src, g->oh, g->ow);  \
                        continue;                                                                   \
                    }                                                                               \
                    for (int64_t oy = 0; oy < g->oh; oy++) {                                        \
                        T *restrict d = base + oy * g->sh * wp;                                     \
                        const T *restrict s = src + oy * g->ow;                                     \
                        if (g->sw == 1)                                                             \
                            for (int64_t ox = 0; ox < g->ow; ox++)                                  \
                                d[ox] += s[ox];                                                     \
                        else                                                                        \
                            for (int64_t ox = 0; ox < g->ow; ox++)                                  \
                                d[ox * g->sw] += s[ox];                                             \
                    }                                                                               \
                }                                                                                   \
        for (int64_t c = 0; c < g->c; c++) {                                                        \
            const T *inside = padded + (c * hp + g->ph) * wp + g->pw;                               \
            if (ROW_HELPERS(T)) {                                                                   \
                copy_rows_exact_f32((float *)(dx + c * g->h * g->w), g->w, (const float *)inside, wp, g->h, g->w); \
                continue;                                                                           \
            }                                                                                       \
            for (int64_t y = 0; y < g->h; y++)                                                      \
                for (int64_t xx = 0; xx < g->w; xx++)                                               \
                    dx[(c * g->h + y) * g->w + xx] = inside[y * wp + xx];                           \
        }                                                                                           \
    }
#ifdef HAVE_ROW_HELPERS
#define ROW_HELPERS(T) (sizeof(T) == 4)
#else
#define ROW_HELPERS(T) 0
#define copy_rows_f32(dst, src, src_stride, rows, n) ((void)0)
#define copy_rows_exact_f32(dst, dst_stride, src, src_stride, rows, n) ((void)0)
#define add_rows_f32(dst, dst_stride, src, rows, n) ((void)0)
#endif
PADDED_IMPL(float)
PADDED_IMPL(double)
MAXPOOL_IMPL(maxpool_f32, float)
MAXPOOL_IMPL(maxpool_f64, double)

typedef struct conv_job {
    nd_dtype dtype;
    const nd_conv_geometry *g;
    const void *in;
    void *out;
    int64_t *indices;
} conv_job;

static void im2col_part(void *ctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    const conv_job *j = ctx;
    if (j->dtype == ND_FLOAT32)
        im2col_f32(j->g, j->in, j->out, b, e);
    else
        im2col_f64(j->g, j->in, j->out, b, e);
}

static void col2im_part(void *ctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    const conv_job *j = ctx;
    if (j->dtype == ND_FLOAT32)
        col2im_f32(j->g, j->in, j->out, b, e);
    else
        col2im_f64(j->g, j->in, j->out, b, e);
}

/* a when t, else b, bit for bit (signed zeros and NaN payloads included), by masking: a select
 * on data this unpredictable became a branch. */
static inline float pick_float(bool t, float a, float b)
{
    uint32_t x, y, mask = (uint32_t)0 - (uint32_t)t;
    memcpy(&x, &a, sizeof x);
    memcpy(&y, &b, sizeof y);
    x = (x & mask) | (y & ~mask);
    memcpy(&a, &x, sizeof a);
    return a;
}
static inline double pick_double(bool t, double a, double b)
{
    uint64_t x, y, mask = (uint64_t)0 - (uint64_t)t;
    memcpy(&x, &a, sizeof x);
    memcpy(&y, &b, sizeof y);
    x = (x & mask) | (y & ~mask);
    memcpy(&a, &x, sizeof a);
    return a;
}

/* The 2x2 stride-2 float32 pooling rows, explicitly vectorised (pooled rows are only 7 or 14 wide
 * in a small CNN, too short for the compiler's own vector loops): W windows at a time from two
 * input rows, even and odd columns split by permutes, masked loads and stores at the row's end.
 * Layout: r0, r1 are two consecutive input rows (2 * ow floats used), o / dy one pooled row of ow,
 * d0, d1 the two gradient rows. NaN wins, and the last NaN, as in PyTorch. */
#if ND_ISA_LEVEL == ND_ISA_AVX512
#include <immintrin.h>
#define HAVE_POOL_ROWS 1

/* 16 floats at p, of which the first n are wanted: a plain load when the 16 lie inside the input
 * (which ends at end), else a masked one. Lanes past n then hold the next row's values, which the
 * callers compute on but never store: masked loads were four times slower than plain ones on a
 * stream of short rows here (a 2x2 pooling of [128, 32, 28, 28]: 3.5 ms against 0.9 ms). */
static inline __m512 load_row(const float *p, int64_t n, const float *end)
{
    return end - p >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(first_lanes(n > 0 ? n : 0), p);
}

/* Columns 2i (even) or 2i+1 (odd) of 32 floats at p, of which only `valid` are wanted. */
static inline void split_pairs(const float *p, int64_t valid, const float *end, __m512 *even, __m512 *odd)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    __m512 lo = load_row(p, valid, end);
    __m512 hi = load_row(p + 16, valid - 16, end);
    *even = _mm512_permutex2var_ps(lo, ev, hi);
    *odd = _mm512_permutex2var_ps(lo, od, hi);
}

/* The first n lanes of v to dst (none when n <= 0). Below `limit` the lanes past n may be stored
 * too: the callers write everything from dst up to limit after this store, so they are
 * overwritten with the right values. That is why the row loops take a row's partial tail vector
 * first: its extra lanes fall past the row's end, on the next row, whose stores all come later.
 * Masked stores that leave part of a vector unwritten were as slow as the masked loads (pooling's
 * backward 2.4 -> 1.0 ms). */
static inline void store_row(float *dst, int64_t n, __m512 v, const float *limit)
{
    if (n >= 16 || (n > 0 && limit - dst >= 16))
        _mm512_storeu_ps(dst, v);
    else if (n > 0)
        _mm512_mask_storeu_ps(dst, first_lanes(n), v);
}

/* m, or v where v > m or v is NaN (so a NaN wins, and the last NaN) */
static inline __m512 max_step(__m512 m, __m512 v)
{
    __mmask16 take = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_blend_ps(take, m, v);
}

static void pair_max_row(const float *r0, const float *r1, const float *end, float *o, int64_t ow, const float *limit)
{
    for (int64_t ox = (ow - 1) / 16 * 16; ox >= 0; ox -= 16) { /* the row's tail first: see store_row */
        int64_t n = ow - ox < 16 ? ow - ox : 16;
        __m512 a, b, c, d;
        split_pairs(r0 + 2 * ox, 2 * n, end, &a, &b);
        split_pairs(r1 + 2 * ox, 2 * n, end, &c, &d);
        store_row(o + ox, n, max_step(max_step(max_step(a, b), c), d), limit);
    }
}

/* dy of each window to its first maximum (or last NaN); writes all four places of every window. */
static void pair_max_grad_row(const float *r0, const float *r1, const float *end, const float *dy, const float *dy_end,
                              float *d0, float *d1, int64_t ow, const float *limit)
{
    const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (int64_t ox = (ow - 1) / 16 * 16; ox >= 0; ox -= 16) { /* the row's tail first: see store_row */
        int64_t n = ow - ox < 16 ? ow - ox : 16;
        __m512 a, b, c, d;
        split_pairs(r0 + 2 * ox, 2 * n, end, &a, &b);
        split_pairs(r1 + 2 * ox, 2 * n, end, &c, &d);
        __m512 m = max_step(max_step(max_step(a, b), c), d), g = load_row(dy + ox, n, dy_end);
        __mmask16 nan = _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q);
        __mmask16 nb = _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q);
        __mmask16 nc = _mm512_cmp_ps_mask(c, c, _CMP_UNORD_Q), nd = _mm512_cmp_ps_mask(d, d, _CMP_UNORD_Q);
        __mmask16 ea = _mm512_cmp_ps_mask(a, m, _CMP_EQ_OQ), eb = _mm512_cmp_ps_mask(b, m, _CMP_EQ_OQ);
        __mmask16 ec = _mm512_cmp_ps_mask(c, m, _CMP_EQ_OQ);
        /* numbers: the first equal place; NaN: the last NaN place */
        __mmask16 td = (nan & nd) | (~nan & ~ea & ~eb & ~ec);
        __mmask16 tc = (nan & ~nd & nc) | (~nan & ~ea & ~eb & ec);
        __mmask16 tb = (nan & ~nd & ~nc & nb) | (~nan & ~ea & eb);
        __mmask16 ta = (nan & ~nd & ~nc & ~nb) | (~nan & ea);
        __m512 ga = _mm512_maskz_mov_ps(ta, g), gb = _mm512_maskz_mov_ps(tb, g);
        __m512 gc = _mm512_maskz_mov_ps(tc, g), gd = _mm512_maskz_mov_ps(td, g);
        int64_t valid = 2 * n;
        /* d0's spill lands on d1, stored just after; d1's on the next row pair */
        store_row(d0 + 2 * ox, valid, _mm512_permutex2var_ps(ga, lo_idx, gb), limit);
        store_row(d0 + 2 * ox + 16, valid - 16, _mm512_permutex2var_ps(ga, hi_idx, gb), limit);
        store_row(d1 + 2 * ox, valid, _mm512_permutex2var_ps(gc, lo_idx, gd), limit);
        store_row(d1 + 2 * ox + 16, valid - 16, _mm512_permutex2var_ps(gc, hi_idx, gd), limit);
    }
}

#elif ND_ISA_LEVEL == ND_ISA_AVX2
#include <immintrin.h>
#define HAVE_POOL_ROWS 1

/* A load/store mask of the first n (0..8) lanes. */
static inline __m256i first_lanes(int64_t n)
{
    static const int32_t ones_then_zeros[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_loadu_si256((const __m256i *)(ones_then_zeros + 8 - n));
}

/* 8 floats at p, of which the first n are wanted: a plain load when the 8 lie inside the input
 * (which ends at end), else a masked one (masked loads are several times slower on a stream). */
static inline __m256 load_row(const float *p, int64_t n, const float *end)
{
    return end - p >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, first_lanes(n));
}

/* Columns 2i (even) or 2i+1 (odd) of 16 floats at p, of which only `valid` are wanted. The in-lane
 * shuffle gives [e0 e1 E0 E1 | e2 e3 E2 E3] (e from the low vector, E from the high one); the
 * 64-bit permute puts the lanes in order. */
static inline void split_pairs(const float *p, int64_t valid, const float *end, __m256 *even, __m256 *odd)
{
    __m256 lo = load_row(p, valid, end), hi = load_row(p + 8, valid - 8, end);
    __m256 e = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)), o = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* The first n (up to 8) lanes of v to dst: a plain store when all 8 are wanted or the extra lanes
 * land below `limit` (the callers write everything up to there after this store: the row loops take
 * a row's tail first, so its extra lanes fall on the next row), else a masked one (slow on AMD). */
static inline void store_row(float *dst, int64_t n, __m256 v, const float *limit)
{
    if (n >= 8 || (n > 0 && limit - dst >= 8))
        _mm256_storeu_ps(dst, v);
    else if (n > 0)
        _mm256_maskstore_ps(dst, first_lanes(n), v);
}

static inline __m256 is_nan(__m256 v) { return _mm256_cmp_ps(v, v, _CMP_UNORD_Q); }

/* m, or v where v > m or v is NaN (so a NaN wins, and the last NaN) */
static inline __m256 max_step(__m256 m, __m256 v)
{
    return _mm256_blendv_ps(m, v, _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ), is_nan(v)));
}

static void pair_max_row(const float *r0, const float *r1, const float *end, float *o, int64_t ow, const float *limit)
{
    for (int64_t ox = (ow - 1) / 8 * 8; ox >= 0; ox -= 8) { /* the row's tail first: see store_row */
        int64_t n = ow - ox < 8 ? ow - ox : 8;
        __m256 a, b, c, d;
        split_pairs(r0 + 2 * ox, 2 * n, end, &a, &b);
        split_pairs(r1 + 2 * ox, 2 * n, end, &c, &d);
        store_row(o + ox, n, max_step(max_step(max_step(a, b), c), d), limit);
    }
}

/* Even-place values a and odd-place values b back into one row: [a0 b0 a1 b1 ...] in two vectors. */
static inline void interleave_store(float *dst, int64_t valid, __m256 a, __m256 b, const float *limit)
{
    __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b); /* [a0 b0 a1 b1 | a4 b4 a5 b5], [a2 ..| a6 ..] */
    store_row(dst, valid, _mm256_permute2f128_ps(lo, hi, 0x20), limit);
    store_row(dst + 8, valid - 8, _mm256_permute2f128_ps(lo, hi, 0x31), limit);
}

/* dy of each window to its first maximum (or last NaN); writes all four places of every window. */
static void pair_max_grad_row(const float *r0, const float *r1, const float *end, const float *dy, const float *dy_end,
                              float *d0, float *d1, int64_t ow, const float *limit)
{
    for (int64_t ox = (ow - 1) / 8 * 8; ox >= 0; ox -= 8) { /* the row's tail first: see store_row */
        int64_t n = ow - ox < 8 ? ow - ox : 8;
        __m256 a, b, c, d;
        split_pairs(r0 + 2 * ox, 2 * n, end, &a, &b);
        split_pairs(r1 + 2 * ox, 2 * n, end, &c, &d);
        __m256 m = max_step(max_step(max_step(a, b), c), d), g = load_row(dy + ox, n, dy_end);
        __m256 nan = is_nan(m), nb = is_nan(b), nc = is_nan(c), nd = is_nan(d);
        __m256 ea = _mm256_cmp_ps(a, m, _CMP_EQ_OQ), eb = _mm256_cmp_ps(b, m, _CMP_EQ_OQ);
        __m256 ec = _mm256_cmp_ps(c, m, _CMP_EQ_OQ);
        /* numbers: the first equal place; NaN: the last NaN place (andnot(x, y) is ~x & y) */
        const __m256 ones = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
        __m256 td = _mm256_or_ps(_mm256_and_ps(nan, nd),
                                 _mm256_andnot_ps(_mm256_or_ps(_mm256_or_ps(nan, ea), _mm256_or_ps(eb, ec)), ones));
        __m256 tc = _mm256_or_ps(_mm256_and_ps(nan, _mm256_andnot_ps(nd, nc)),
                                 _mm256_andnot_ps(_mm256_or_ps(nan, _mm256_or_ps(ea, eb)), ec));
        __m256 tb = _mm256_or_ps(_mm256_and_ps(nan, _mm256_andnot_ps(_mm256_or_ps(nd, nc), nb)),
                                 _mm256_andnot_ps(_mm256_or_ps(nan, ea), eb));
        __m256 ta = _mm256_or_ps(_mm256_andnot_ps(_mm256_or_ps(_mm256_or_ps(nd, nc), nb), nan), _mm256_andnot_ps(nan, ea));
        interleave_store(d0 + 2 * ox, 2 * n, _mm256_and_ps(ta, g), _mm256_and_ps(tb, g), limit);
        interleave_store(d1 + 2 * ox, 2 * n, _mm256_and_ps(tc, g), _mm256_and_ps(td, g), limit);
    }
}
#endif

/* The common pooling window: 2x2, stride 2, no padding or dilation (fast paths below). */
static inline bool pool_2x2(const nd_conv_geometry *g)
{
    return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0 && g->dh == 1 && g->dw == 1;
}

#ifdef HAVE_POOL_ROWS
#define POOL_ROWS(T) (sizeof(T) == 4)
#else
#define POOL_ROWS(T) 0
#define pair_max_row(r0, r1, end, o, ow, limit) ((void)0)
#define pair_max_grad_row(r0, r1, end, dy, dy_end, d0, d1, ow, limit) ((void)0)
#endif

/* Window maxima without indices (the backward finds each window's first maximum again from the
 * input). NaN wins, as in PyTorch. The common 2x2 stride-2 window without padding
 * has a loop the compiler vectorises. */
#define MAXPOOL_VALUES_IMPL(NAME, T)                                                                \
    static void NAME(const nd_conv_geometry *g, const T *x, T *out, int64_t p_begin, int64_t p_end) \
    {                                                                                               \
        bool pair = pool_2x2(g);                                                                    \
        const T *x_end = x + g->n * g->c * g->h * g->w; /* where reading past a row must stop */   \
        const T *out_end = out + p_end * g->oh * g->ow; /* where this chunk's writing stops */     \
        (void)x_end, (void)out_end;                                                                 \
        for (int64_t p = p_begin; p < p_end; p++) {                                                 \
            const T *plane = x + p * g->h * g->w;                                                   \
            T *o = out + p * g->oh * g->ow;                                                         \
            for (int64_t oy = 0; oy < g->oh; oy++) {                                                \
                if (pair) {                                                                         \
                    const T *r0 = plane + 2 * oy * g->w, *r1 = r0 + g->w;                           \
                    if (POOL_ROWS(T)) {                                                             \
                        /* stores may spill onto the pooled rows this chunk writes later */     \
                        pair_max_row((const float *)r0, (const float *)r1, (const float *)x_end,      \
                                     (float *)o + oy * g->ow, g->ow, (const float *)out_end);        \
                        continue;                                                                   \
                    }                                                                               \
                    for (int64_t ox = 0; ox < g->ow; ox++) {                                        \
                        T m = r0[2 * ox], v = r0[2 * ox + 1];                                       \
                        m = pick_##T((v > m) | (v != v), v, m);                                     \
                        v = r1[2 * ox];                                                             \
                        m = pick_##T((v > m) | (v != v), v, m);                                     \
                        v = r1[2 * ox + 1];                                                         \
                        m = pick_##T((v > m) | (v != v), v, m);                                     \
                        o[oy * g->ow + ox] = m;                                                     \
                    }                                                                               \
                    continue;                                                                       \
                }                                                                                   \
                for (int64_t ox = 0; ox < g->ow; ox++) {                                            \
                    T m = 0;                                                                        \
                    bool any = false;                                                               \
                    for (int64_t i = 0; i < g->kh; i++) {                                           \
                        int64_t y = oy * g->sh - g->ph + i * g->dh;                                 \
                        for (int64_t j = 0; y >= 0 && y < g->h && j < g->kw; j++) {                 \
                            int64_t xx = ox * g->sw - g->pw + j * g->dw;                            \
                            if (xx < 0 || xx >= g->w)                                               \
                                continue;                                                           \
                            T v = plane[y * g->w + xx];                                             \
                            m = !any || (v > m) | (v != v) ? v : m;                                 \
                            any = true;                                                             \
                        }                                                                           \
                    }                                                                               \
                    o[oy * g->ow + ox] = m;                                                         \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
    }

/* dx: each window's gradient goes to its first maximum (or its last NaN, as PyTorch), found again
 * from x, so nothing but the input is kept for the backward (and an in-place change to the
 * pooled output does not matter, as in PyTorch); planes in parallel, windows in order. */
#define MAXPOOL_BACKWARD_IMPL(NAME, T)                                                              \
    static void NAME(const nd_conv_geometry *g, const T *x, const T *dy, T *dx, int64_t p_begin,   \
                                   int64_t p_end)                                                   \
    {                                                                                               \
        bool pair = pool_2x2(g);                                                                    \
        const T *x_end = x + g->n * g->c * g->h * g->w, *dy_end = dy + g->n * g->c * g->oh * g->ow; \
        const bool tiled = g->h == 2 * g->oh && g->w == 2 * g->ow;                                  \
        const T *dx_end = dx + p_end * g->h * g->w; /* where this chunk's writing stops */         \
        (void)x_end, (void)dy_end, (void)tiled, (void)dx_end;                                       \
        for (int64_t p = p_begin; p < p_end; p++) {                                                 \
            const T *plane = x + p * g->h * g->w;                                                   \
            T *d = dx + p * g->h * g->w;                                                            \
            if (!pair || g->h % 2 || g->w % 2) /* else the pair path writes every place */          \
                memset(d, 0, sizeof(T) * (size_t)(g->h * g->w));                                    \
            if (pair) { /* windows do not overlap: selects write each of the four places once */     \
                for (int64_t oy = 0; oy < g->oh; oy++) {                                            \
                    const T *r0 = plane + 2 * oy * g->w, *r1 = r0 + g->w;                           \
                    T *d0 = d + 2 * oy * g->w, *d1 = d0 + g->w;                                     \
                    const T *go = dy + (p * g->oh + oy) * g->ow;                                    \
                    if (POOL_ROWS(T)) {                                                             \
                        /* stores may spill onto the rows this chunk writes later, when the    \
                         * windows tile the plane exactly (every place is written again) */        \
                        pair_max_grad_row((const float *)r0, (const float *)r1, (const float *)x_end, \
                                          (const float *)go, (const float *)dy_end, (float *)d0,    \
                                          (float *)d1, g->ow, (const float *)(tiled ? dx_end : d0)); \
                        continue;                                                                   \
                    }                                                                               \
                    for (int64_t ox = 0; ox < g->ow; ox++) {                                        \
                        T gv = go[ox], a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox];         \
                        T e = r1[2 * ox + 1], m = a;                                                \
                        m = pick_##T((b > m) | (b != b), b, m);                                     \
                        m = pick_##T((c > m) | (c != c), c, m);                                     \
                        m = pick_##T((e > m) | (e != e), e, m);                                     \
                        bool nan = m != m;                                                          \
                        /* a NaN output came from the last NaN, a number from its first maximum */  \
                        bool td = nan ? e != e : 0, tc = (!td) & (nan ? c != c : 0);                \
                        bool tb = (!td) & (!tc) & (nan ? b != b : 0);                               \
                        bool ta = nan ? (!td) & (!tc) & (!tb) : a == m;                             \
                        tb |= (!nan) & (!ta) & (b == m);                                            \
                        tc |= (!nan) & (!ta) & (!tb) & (c == m);                                    \
                        td |= (!nan) & (!ta) & (!tb) & (!tc);                                       \
                        d0[2 * ox] = pick_##T(ta, gv, 0);                                             \
                        d0[2 * ox + 1] = pick_##T(tb, gv, 0);                                         \
                        d1[2 * ox] = pick_##T(tc, gv, 0);                                             \
                        d1[2 * ox + 1] = pick_##T(td, gv, 0);                                         \
                    }                                                                               \
                }                                                                                   \
                continue;                                                                           \
            }                                                                                       \
            for (int64_t oy = 0; oy < g->oh; oy++)                                                  \
                for (int64_t ox = 0; ox < g->ow; ox++) {                                            \
                    int64_t o = (p * g->oh + oy) * g->ow + ox, at = -1;                             \
                    T best = 0;                                                                     \
                    for (int64_t i = 0; i < g->kh; i++) {                                           \
                        int64_t y = oy * g->sh - g->ph + i * g->dh;                                 \
                        for (int64_t j = 0; y >= 0 && y < g->h && j < g->kw; j++) {                 \
                            int64_t xx = ox * g->sw - g->pw + j * g->dw;                            \
                            if (xx < 0 || xx >= g->w)                                               \
                                continue;                                                           \
                            T v = plane[y * g->w + xx];                                             \
                            if (at < 0 || v > best || v != v) /* the first maximum, or the last NaN */ \
                                best = v, at = y * g->w + xx;                                       \
                        }                                                                           \
                    }                                                                               \
                    if (at >= 0)                                                                    \
                        d[at] += dy[o];                                                             \
                }                                                                                   \
        }                                                                                           \
    }

MAXPOOL_VALUES_IMPL(maxpool_values_f32, float)
MAXPOOL_VALUES_IMPL(maxpool_values_f64, double)
MAXPOOL_BACKWARD_IMPL(maxpool_backward_f32, float)
MAXPOOL_BACKWARD_IMPL(maxpool_backward_f64, double)

typedef struct pool_backward_job {
    nd_dtype dtype;
    const nd_conv_geometry *g;
    const void *x, *dy;
    void *dx;
} pool_backward_job;

static void maxpool_backward_part(void *ctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    const pool_backward_job *j = ctx;
    if (j->dtype == ND_FLOAT32)
        maxpool_backward_f32(j->g, j->x, j->dy, j->dx, b, e);
    else
        maxpool_backward_f64(j->g, j->x, j->dy, j->dx, b, e);
}

static void maxpool_part(void *ctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    const conv_job *j = ctx;
    if (!j->indices)
        j->dtype == ND_FLOAT32 ? maxpool_values_f32(j->g, j->in, j->out, b, e)
                               : maxpool_values_f64(j->g, j->in, j->out, b, e);
    else if (j->dtype == ND_FLOAT32)
        maxpool_f32(j->g, j->in, j->out, j->indices, b, e);
    else
        maxpool_f64(j->g, j->in, j->out, j->indices, b, e);
}

/* Work items are rows of the column matrix or (image, channel) planes; each is big enough to
 * split when the whole sweep is. */
static int64_t min_items(int64_t items, int64_t per_item_elements)
{
    int64_t total = items * per_item_elements;
    if (total < (1 << 15))
        return items; /* small: one chunk */
    int64_t m = (1 << 14) / (per_item_elements > 0 ? per_item_elements : 1);
    return m > 0 ? m : 1;
}

void nd_cpu_im2col(nd_dtype dtype, const nd_conv_geometry *g, const void *x, void *cols)
{
    conv_job j = {dtype, g, x, cols, NULL};
    int64_t rows = g->c * g->kh * g->kw;
    nd_parallel_for(rows, min_items(rows, g->n * g->oh * g->ow), im2col_part, &j);
}

void nd_cpu_col2im(nd_dtype dtype, const nd_conv_geometry *g, const void *cols, void *x)
{
    conv_job j = {dtype, g, cols, x, NULL};
    int64_t planes = g->n * g->c;
    nd_parallel_for(planes, min_items(planes, g->kh * g->kw * g->oh * g->ow), col2im_part, &j);
}

void nd_cpu_max_pool2d(nd_dtype dtype, const nd_conv_geometry *g, const void *x, void *out, int64_t *indices)
{
    conv_job j = {dtype, g, x, out, indices};
    int64_t planes = g->n * g->c;
    nd_parallel_for(planes, min_items(planes, g->kh * g->kw * g->oh * g->ow), maxpool_part, &j);
}

void nd_cpu_max_pool2d_backward(nd_dtype dtype, const nd_conv_geometry *g, const void *x, const void *dy, void *dx)
{
    pool_backward_job j = {dtype, g, x, dy, dx};
    int64_t planes = g->n * g->c;
    nd_parallel_for(planes, min_items(planes, g->kh * g->kw * g->oh * g->ow), maxpool_backward_part, &j);
}

/* ------------------------------------------------------------------ convolution, image by image */

/* A convolution is a GEMM per image over that image's columns, which stay in a per-thread
 * scratch buffer (in cache) instead of a [C·kh·kw, N·oh·ow] tensor for the whole batch. The
 * weight gradient sums images in fixed chunks of CONV_CHUNK, each chunk into its own partial,
 * and then the partials in chunk order, so the thread count never changes a result.
 * The bias rides in the GEMMs as one more column row of ones: the forward multiplies [w | bias]
 * [O, K + 1] by it (no pass filling y with the bias first), and the weight gradient's product
 * gives Σ dy over the image in the extra partial row, which is the bias gradient (no separate sum
 * over dy). */
enum { CONV_CHUNK = 8 };

typedef struct conv2d_job {
    nd_dtype dtype;
    nd_conv_geometry one; /* the geometry of a single image */
    int64_t images, out_channels;
    int64_t rows; /* column rows: C·kh·kw, plus the row of ones when the bias is in the product */
    const char *x, *w, *dy;
    char *y, *dx, *partials;
    atomic_bool failed; /* set by any worker whose scratch memory runs out */
} conv2d_job;


/* Elements of one image's zero-padded planes. */
static int64_t padded_size(const nd_conv_geometry *g) { return g->c * (g->h + 2 * g->ph) * (g->w + 2 * g->pw); }

/* The image's columns into cols ([j->rows, oh·ow]), through its padded planes in `padded`. `first`:
 * the buffers' first image in this worker, which also writes what stays the same from image to
 * image (the padding's zeros, the bias row's ones). */
static void image_columns(const conv2d_job *j, int64_t image, void *cols, void *padded, bool first)
{
    const int64_t es = j->dtype == ND_FLOAT32 ? 4 : 8, K = j->one.c * j->one.kh * j->one.kw;
    const int64_t L = j->one.oh * j->one.ow;
    const char *x = j->x + image * j->one.c * j->one.h * j->one.w * es;
    if (j->dtype == ND_FLOAT32) {
        pad_image_float(&j->one, (const float *)x, padded, first);
        padded_im2col_float(&j->one, padded, cols);
        for (int64_t l = 0; first && j->rows > K && l < L; l++)
            ((float *)cols)[K * L + l] = 1.0f;
    } else {
        pad_image_double(&j->one, (const double *)x, padded, first);
        padded_im2col_double(&j->one, padded, cols);
        for (int64_t l = 0; first && j->rows > K && l < L; l++)
            ((double *)cols)[K * L + l] = 1.0;
    }
}

/* y_n [O, L] = w [O, rows] cols_n [rows, L], w here the weight with the bias as its last column
 * when the bias is in the product. */
static void conv_forward_images(void *ctx, int64_t begin, int64_t end, int chunk)
{
    (void)chunk;
    conv2d_job *j = ctx;
    const int64_t K = j->rows, L = j->one.oh * j->one.ow, O = j->out_channels;
    const int64_t es = j->dtype == ND_FLOAT32 ? 4 : 8;
    char *cols = nd_thread_scratch(ND_SCRATCH_COLUMNS, (size_t)((K * L + padded_size(&j->one)) * es));
    if (!cols) {
        atomic_store(&j->failed, true);
        return;
    }
    char *padded = cols + K * L * es;
    for (int64_t n = begin; n < end; n++) {
        image_columns(j, n, cols, padded, n == begin);
        nd_cpu_gemm_2d(j->dtype, O, L, K, j->w, K, 1, cols, L, 1, j->y + n * O * L * es, L, false);
    }
}

static void conv_backward_chunks(void *ctx, int64_t begin, int64_t end, int chunk)
{
    (void)chunk;
    conv2d_job *j = ctx;
    const int64_t K = j->one.c * j->one.kh * j->one.kw, R = j->rows, L = j->one.oh * j->one.ow, O = j->out_channels;
    const int64_t es = j->dtype == ND_FLOAT32 ? 4 : 8, N = j->images;
    const int64_t P = padded_size(&j->one);
    char *cols = nd_thread_scratch(ND_SCRATCH_COLUMNS, (size_t)((R * L + K * L + 2 * P) * es));
    if (!cols) {
        atomic_store(&j->failed, true);
        return;
    }
    /* x's padded planes keep their zero borders, and cols its row of ones, from image to image;
     * col2im sums into padded planes of its own */
    char *dcols = cols + R * L * es, *padded = dcols + K * L * es, *dpadded = padded + P * es;
    bool first = true;
    for (int64_t c = begin; c < end; c++) {
        for (int64_t n = c * CONV_CHUNK; n < (c + 1) * CONV_CHUNK && n < N; n++) {
            const char *dy = j->dy + n * O * L * es;
            if (j->partials) { /* [dW | db]_cᵀ (+)= cols dy_nᵀ: transposed, so that the operand the
                                * GEMM packs across its rows is dy [O, L], not the R / O times larger
                                * columns [R, L]; the partials are [R, O] */
                image_columns(j, n, cols, padded, first);
                first = false;
                nd_cpu_gemm_2d(j->dtype, R, O, L, cols, L, 1, dy, 1, L, j->partials + c * O * R * es, O, n != c * CONV_CHUNK);
            }
            if (j->dx) { /* dx_n = col2im(wᵀ dy_n) */
                nd_cpu_gemm_2d(j->dtype, K, L, O, j->w, 1, K, dy, L, 1, dcols, L, false);
                char *dx = j->dx + n * j->one.c * j->one.h * j->one.w * es;
                if (j->dtype == ND_FLOAT32)
                    padded_col2im_float(&j->one, (const float *)dcols, (float *)dpadded, (float *)dx);
                else
                    padded_col2im_double(&j->one, (const double *)dcols, (double *)dpadded, (double *)dx);
            }
        }
    }
}

bool nd_cpu_conv2d_forward(nd_dtype dtype, const nd_conv_geometry *g, int64_t out_channels, const void *x,
                           const void *w, const void *bias, void *y)
{
    const int64_t K = g->c * g->kh * g->kw, O = out_channels, es = dtype == ND_FLOAT32 ? 4 : 8;
    conv2d_job j = {dtype, *g, g->n, out_channels, K, x, w, NULL, y, NULL, NULL, false};
    j.one.n = 1;
    if (bias) { /* [w | bias], [O, K + 1], shared by every worker */
        char *wb = nd_thread_scratch(ND_SCRATCH_PARTIALS, (size_t)(O * (K + 1) * es));
        if (!wb)
            return false;
        for (int64_t o = 0; o < O; o++) {
            memcpy(wb + o * (K + 1) * es, (const char *)w + o * K * es, (size_t)(K * es));
            memcpy(wb + (o * (K + 1) + K) * es, (const char *)bias + o * es, (size_t)es);
        }
        j.w = wb, j.rows = K + 1;
    }
    nd_parallel_for(g->n, 1, conv_forward_images, &j);
    return !atomic_load(&j.failed);
}

bool nd_cpu_conv2d_backward(nd_dtype dtype, const nd_conv_geometry *g, int64_t out_channels, const void *x,
                            const void *w, const void *dy, void *dx, void *dw, void *db)
{
    const int64_t K = g->c * g->kh * g->kw, R = K + (db != NULL), O = out_channels, es = dtype == ND_FLOAT32 ? 4 : 8;
    const int64_t chunks = (g->n + CONV_CHUNK - 1) / CONV_CHUNK;
    conv2d_job j = {dtype, *g, g->n, out_channels, R, x, w, dy, NULL, dx, NULL, false};
    j.one.n = 1;
    if ((dw || db) && chunks > 0 && !(j.partials = nd_thread_scratch(ND_SCRATCH_PARTIALS, (size_t)(chunks * O * R * es))))
        return false;
    nd_parallel_for(chunks, 1, conv_backward_chunks, &j);
    if (atomic_load(&j.failed))
        return false;
    /* [dW | db] [O, R] = the chunks' [R, O] partials summed in chunk order (into the first
     * chunk's, a row of O at a time, which vectorises), then transposed */
    if ((!dw && !db) || chunks == 0)
        return true;
    for (int64_t c = 1; c < chunks; c++)
        for (int64_t at = 0; at < R * O; at++) {
            if (dtype == ND_FLOAT32)
                ((float *)j.partials)[at] += ((const float *)j.partials)[c * O * R + at];
            else
                ((double *)j.partials)[at] += ((const double *)j.partials)[c * O * R + at];
        }
    for (int64_t kk = 0; kk < R; kk++) {
        if (kk < K ? !dw : !db)
            continue;
        for (int64_t o = 0; o < O; o++) {
            char *dst = kk < K ? (char *)dw + (o * K + kk) * es : (char *)db + o * es;
            memcpy(dst, j.partials + (kk * O + o) * es, (size_t)es);
        }
    }
    return true;
}

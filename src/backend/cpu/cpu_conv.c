/* Window sweeps for convolution and pooling over dense NCHW data. im2col writes each output
 * position's receptive field as a column so a convolution becomes one GEMM. */
#include "backend/backend.h"
#include "backend/cpu/threads.h"

#include <math.h>
#include <string.h>

/* Columns are laid out [C*kh*kw, N*oh*ow]: one row per (channel, kernel offset), one column per
 * output position of every image, so a convolution is the single product W[O, K] @ cols. */
#define IM2COL_IMPL(NAME, T)                                                                        \
    static void NAME(const nd_conv_geometry *g, const T *x, T *cols, int64_t row_begin, int64_t row_end) \
    {                                                                                               \
        int64_t L = g->oh * g->ow, NL = g->n * L;                                                   \
        for (int64_t row = row_begin; row < row_end; row++) {                                       \
            int64_t c = row / (g->kh * g->kw), i = row / g->kw % g->kh, j = row % g->kw;            \
            for (int64_t n = 0; n < g->n; n++) {                                                    \
                T *dst = cols + row * NL + n * L;                                                   \
                const T *plane = x + (n * g->c + c) * g->h * g->w;                                  \
                for (int64_t oy = 0; oy < g->oh; oy++) {                                            \
                    int64_t y = oy * g->sh - g->ph + i * g->dh;                                     \
                    T *d = dst + oy * g->ow;                                                        \
                    if (y < 0 || y >= g->h) {                                                       \
                        for (int64_t ox = 0; ox < g->ow; ox++)                                      \
                            d[ox] = 0;                                                              \
                        continue;                                                                   \
                    }                                                                               \
                    const T *src = plane + y * g->w;                                                \
                    for (int64_t ox = 0; ox < g->ow; ox++) {                                        \
                        int64_t xx = ox * g->sw - g->pw + j * g->dw;                                \
                        d[ox] = xx >= 0 && xx < g->w ? src[xx] : 0;                                 \
                    }                                                                               \
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
                    for (int64_t oy = 0; oy < g->oh; oy++) {                                        \
                        int64_t y = oy * g->sh - g->ph + i * g->dh;                                 \
                        if (y < 0 || y >= g->h)                                                     \
                            continue;                                                               \
                        T *d = plane + y * g->w;                                                    \
                        const T *s = src + oy * g->ow;                                              \
                        for (int64_t ox = 0; ox < g->ow; ox++) {                                    \
                            int64_t xx = ox * g->sw - g->pw + j * g->dw;                            \
                            if (xx >= 0 && xx < g->w)                                               \
                                d[xx] += s[ox];                                                     \
                        }                                                                           \
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
                        for (int64_t i = 0; i < g->kh; i++)                                         \
                            for (int64_t j = 0; j < g->kw; j++) {                                   \
                                int64_t q = (y0 + i * g->dh) * g->w + x0 + j * g->dw;               \
                                T v = plane[q];                                                     \
                                if (v > best || (v != v && best == best))                           \
                                    best = v, at = q;                                               \
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
                            if (at < 0 || v > best || (v != v && best == best))                     \
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

static void maxpool_part(void *ctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    const conv_job *j = ctx;
    if (j->dtype == ND_FLOAT32)
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

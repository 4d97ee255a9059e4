/* Window sweeps for convolution and pooling over dense NCHW data. im2col writes each output
 * position's receptive field as a column so a convolution becomes one GEMM. */
#include "backend/backend.h"

#include <math.h>
#include <string.h>

#define IM2COL_IMPL(NAME, T)                                                                        \
    static void NAME(const nd_conv_geometry *g, const T *x, T *cols)                                \
    {                                                                                               \
        int64_t L = g->oh * g->ow, K = g->c * g->kh * g->kw;                                        \
        for (int64_t n = 0; n < g->n; n++)                                                          \
            for (int64_t c = 0; c < g->c; c++)                                                      \
                for (int64_t i = 0; i < g->kh; i++)                                                 \
                    for (int64_t j = 0; j < g->kw; j++) {                                           \
                        int64_t row = (c * g->kh + i) * g->kw + j;                                  \
                        T *dst = cols + (n * K + row) * L;                                          \
                        const T *plane = x + (n * g->c + c) * g->h * g->w;                          \
                        for (int64_t oy = 0; oy < g->oh; oy++) {                                    \
                            int64_t y = oy * g->sh - g->ph + i * g->dh;                             \
                            T *d = dst + oy * g->ow;                                                \
                            if (y < 0 || y >= g->h) {                                               \
                                for (int64_t ox = 0; ox < g->ow; ox++)                              \
                                    d[ox] = 0;                                                      \
                                continue;                                                           \
                            }                                                                       \
                            const T *src = plane + y * g->w;                                        \
                            for (int64_t ox = 0; ox < g->ow; ox++) {                                \
                                int64_t xx = ox * g->sw - g->pw + j * g->dw;                        \
                                d[ox] = xx >= 0 && xx < g->w ? src[xx] : 0;                         \
                            }                                                                       \
                        }                                                                           \
                    }                                                                               \
    }

#define COL2IM_IMPL(NAME, T)                                                                        \
    static void NAME(const nd_conv_geometry *g, const T *cols, T *x)                                \
    {                                                                                               \
        int64_t L = g->oh * g->ow, K = g->c * g->kh * g->kw;                                        \
        memset(x, 0, sizeof(T) * (size_t)(g->n * g->c * g->h * g->w));                              \
        for (int64_t n = 0; n < g->n; n++)                                                          \
            for (int64_t c = 0; c < g->c; c++)                                                      \
                for (int64_t i = 0; i < g->kh; i++)                                                 \
                    for (int64_t j = 0; j < g->kw; j++) {                                           \
                        int64_t row = (c * g->kh + i) * g->kw + j;                                  \
                        const T *src = cols + (n * K + row) * L;                                    \
                        T *plane = x + (n * g->c + c) * g->h * g->w;                                \
                        for (int64_t oy = 0; oy < g->oh; oy++) {                                    \
                            int64_t y = oy * g->sh - g->ph + i * g->dh;                             \
                            if (y < 0 || y >= g->h)                                                 \
                                continue;                                                           \
                            T *d = plane + y * g->w;                                                \
                            const T *s = src + oy * g->ow;                                          \
                            for (int64_t ox = 0; ox < g->ow; ox++) {                                \
                                int64_t xx = ox * g->sw - g->pw + j * g->dw;                        \
                                if (xx >= 0 && xx < g->w)                                           \
                                    d[xx] += s[ox];                                                 \
                            }                                                                       \
                        }                                                                           \
                    }                                                                               \
    }

#define MAXPOOL_IMPL(NAME, T)                                                                       \
    static void NAME(const nd_conv_geometry *g, const T *x, T *out, int64_t *indices)               \
    {                                                                                               \
        for (int64_t p = 0; p < g->n * g->c; p++) {                                                 \
            const T *plane = x + p * g->h * g->w;                                                   \
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

void nd_cpu_im2col(nd_dtype dtype, const nd_conv_geometry *g, const void *x, void *cols)
{
    if (dtype == ND_FLOAT32)
        im2col_f32(g, x, cols);
    else
        im2col_f64(g, x, cols);
}

void nd_cpu_col2im(nd_dtype dtype, const nd_conv_geometry *g, const void *cols, void *x)
{
    if (dtype == ND_FLOAT32)
        col2im_f32(g, cols, x);
    else
        col2im_f64(g, cols, x);
}

void nd_cpu_max_pool2d(nd_dtype dtype, const nd_conv_geometry *g, const void *x, void *out, int64_t *indices)
{
    if (dtype == ND_FLOAT32)
        maxpool_f32(g, x, out, indices);
    else
        maxpool_f64(g, x, out, indices);
}

/* Layer norm over rows of d elements, forward and backward, in one pass each instead of a chain
 * of elementwise ops. Rows are split across the pool; the weight and bias gradients sum over rows
 * column by column in row order, so results do not depend on the thread count. */
#include "backend/backend.h"
#include "backend/cpu/threads.h"

#include <math.h>

typedef struct ln_job {
    nd_dtype dtype;
    int64_t d;
    double eps;
    const void *x, *w, *b, *g, *mean, *rstd;
    void *y, *out_mean, *out_rstd, *dx, *dw, *db;
} ln_job;

#define LN_FORWARD(T)                                                                                \
    static void ln_forward_##T(const ln_job *j, int64_t r0, int64_t r1)                              \
    {                                                                                                \
        const T *x = j->x, *w = j->w, *b = j->b;                                                     \
        T *y = j->y, *mean = j->out_mean, *rstd = j->out_rstd;                                       \
        for (int64_t r = r0; r < r1; r++) {                                                          \
            const T *xr = x + r * j->d;                                                              \
            T *yr = y + r * j->d;                                                                    \
            double s = 0;                                                                            \
            for (int64_t i = 0; i < j->d; i++)                                                       \
                s += xr[i];                                                                          \
            double m = s / (double)j->d, v = 0;                                                      \
            for (int64_t i = 0; i < j->d; i++)                                                       \
                v += ((double)xr[i] - m) * ((double)xr[i] - m);                                      \
            double rs = 1.0 / sqrt(v / (double)j->d + j->eps);                                       \
            T tm = (T)m, trs = (T)rs;                                                                \
            for (int64_t i = 0; i < j->d; i++) {                                                     \
                T h = (xr[i] - tm) * trs;                                                            \
                yr[i] = w ? (b ? h * w[i] + b[i] : h * w[i]) : (b ? h + b[i] : h);                   \
            }                                                                                        \
            mean[r] = tm;                                                                            \
            rstd[r] = trs;                                                                           \
        }                                                                                            \
    }

/* dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = g w, xhat = (x - mean) rstd. */
#define LN_BACKWARD_DX(T)                                                                            \
    static void ln_backward_dx_##T(const ln_job *j, int64_t r0, int64_t r1)                          \
    {                                                                                                \
        const T *x = j->x, *w = j->w, *g = j->g, *mean = j->mean, *rstd = j->rstd;                   \
        T *dx = j->dx;                                                                               \
        for (int64_t r = r0; r < r1; r++) {                                                          \
            const T *xr = x + r * j->d, *gr = g + r * j->d;                                          \
            double a = 0, c = 0;                                                                     \
            for (int64_t i = 0; i < j->d; i++) {                                                     \
                double dh = (double)gr[i] * (w ? (double)w[i] : 1.0);                                \
                double h = ((double)xr[i] - mean[r]) * rstd[r];                                      \
                a += dh;                                                                             \
                c += dh * h;                                                                         \
            }                                                                                        \
            a /= (double)j->d;                                                                       \
            c /= (double)j->d;                                                                       \
            for (int64_t i = 0; i < j->d; i++) {                                                     \
                double dh = (double)gr[i] * (w ? (double)w[i] : 1.0);                                \
                double h = ((double)xr[i] - mean[r]) * rstd[r];                                      \
                dx[r * j->d + i] = (T)(rstd[r] * (dh - a - h * c));                                  \
            }                                                                                        \
        }                                                                                            \
    }

/* Columns [c0, c1) of dw = Σ_rows g xhat and db = Σ_rows g, rows in order. */
#define LN_BACKWARD_DW(T)                                                                            \
    static void ln_backward_dw_##T(const ln_job *j, int64_t rows, int64_t c0, int64_t c1)            \
    {                                                                                                \
        const T *x = j->x, *g = j->g, *mean = j->mean, *rstd = j->rstd;                              \
        T *dw = j->dw, *db = j->db;                                                                  \
        for (int64_t i = c0; i < c1; i++) {                                                          \
            double sw = 0, sb = 0;                                                                   \
            for (int64_t r = 0; r < rows; r++) {                                                     \
                double gv = g[r * j->d + i];                                                         \
                sw += gv * (((double)x[r * j->d + i] - mean[r]) * rstd[r]);                          \
                sb += gv;                                                                            \
            }                                                                                        \
            if (dw)                                                                                  \
                dw[i] = (T)sw;                                                                       \
            if (db)                                                                                  \
                db[i] = (T)sb;                                                                       \
        }                                                                                            \
    }

LN_FORWARD(float)
LN_FORWARD(double)
LN_BACKWARD_DX(float)
LN_BACKWARD_DX(double)
LN_BACKWARD_DW(float)
LN_BACKWARD_DW(double)

typedef struct ln_task {
    const ln_job *job;
    int64_t rows;
    int which; /* 0 forward, 1 dx, 2 dw/db */
} ln_task;

static void ln_part(void *ctx, int64_t begin, int64_t end, int chunk)
{
    (void)chunk;
    const ln_task *t = ctx;
    bool f32 = t->job->dtype == ND_FLOAT32;
    if (t->which == 0)
        f32 ? ln_forward_float(t->job, begin, end) : ln_forward_double(t->job, begin, end);
    else if (t->which == 1)
        f32 ? ln_backward_dx_float(t->job, begin, end) : ln_backward_dx_double(t->job, begin, end);
    else
        f32 ? ln_backward_dw_float(t->job, t->rows, begin, end) : ln_backward_dw_double(t->job, t->rows, begin, end);
}

static int64_t min_rows(int64_t d) { return (1 << 14) / (d > 0 ? d : 1) + 1; }

void nd_cpu_layer_norm_forward(nd_dtype dtype, int64_t rows, int64_t d, const void *x, const void *w, const void *b,
                               double eps, void *y, void *mean, void *rstd)
{
    ln_job j = {dtype, d, eps, x, w, b, NULL, NULL, NULL, y, mean, rstd, NULL, NULL, NULL};
    ln_task t = {&j, rows, 0};
    nd_parallel_for(rows, min_rows(d), ln_part, &t);
}

void nd_cpu_layer_norm_backward(nd_dtype dtype, int64_t rows, int64_t d, const void *x, const void *w, const void *g,
                                const void *mean, const void *rstd, void *dx, void *dw, void *db)
{
    ln_job j = {dtype, d, 0, x, w, NULL, g, mean, rstd, NULL, NULL, NULL, dx, dw, db};
    if (dx) {
        ln_task t = {&j, rows, 1};
        nd_parallel_for(rows, min_rows(d), ln_part, &t);
    }
    if (dw || db) {
        ln_task t = {&j, rows, 2};
        nd_parallel_for(d, min_rows(rows), ln_part, &t);
    }
}

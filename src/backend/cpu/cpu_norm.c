/* Row-wise kernels: layer norm, softmax backward and cross-entropy, each one pass per row instead
 * of a chain of elementwise ops. Layer norm over rows of d elements, forward and backward. Rows are split across the pool; the weight and bias gradients sum over rows
 * column by column in row order, so results do not depend on the thread count. */
#include "backend/backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/fast_math.h"
#include "backend/cpu/threads.h"

#include <math.h>

typedef struct ln_job {
    nd_dtype dtype;
    int64_t d;
    double eps;
    const void *x, *w, *b, *g, *mean, *rstd;
    void *y, *out_mean, *out_rstd, *dx, *dw, *db;
} ln_job;

/* Σ x and Σ (x - m)² of a row with LANES partial sums in the accumulation type AT (float for
 * float32 rows, as PyTorch's CPU kernel; double for float64): the compiler vectorises the lanes,
 * where one running sum would wait on each add. The lanes add up in a fixed order, so the thread
 * count never changes a result. Rows are short (a model's width), so float lanes lose nothing
 * against the 1e-4 tolerance, and run twice as wide as double ones. */
#define ROW_SUMS(T, AT, LANES)                                                                       \
    static inline AT row_sum_##T(const T *x, int64_t d, AT shift, bool square)                      \
    {                                                                                                \
        AT part[LANES] = {0};                                                                        \
        int64_t i = 0;                                                                               \
        for (; i + LANES <= d; i += LANES)                                                           \
            for (int l = 0; l < LANES; l++) {                                                        \
                AT v = (AT)x[i + l] - shift;                                                         \
                part[l] += square ? v * v : v;                                                       \
            }                                                                                        \
        for (int w = LANES / 2; w > 0; w /= 2) /* pairwise, in a fixed order */                     \
            for (int l = 0; l < w; l++)                                                              \
                part[l] += part[l + w];                                                              \
        AT s = part[0];                                                                              \
        for (; i < d; i++) {                                                                         \
            AT v = (AT)x[i] - shift;                                                                 \
            s += square ? v * v : v;                                                                 \
        }                                                                                            \
        return s;                                                                                    \
    }
ROW_SUMS(float, float, 16)
ROW_SUMS(double, double, 8)

#define LN_FORWARD(T, AT)                                                                            \
    static void ln_forward_##T(const ln_job *j, int64_t r0, int64_t r1)                              \
    {                                                                                                \
        const T *x = j->x, *w = j->w, *b = j->b;                                                     \
        T *y = j->y, *mean = j->out_mean, *rstd = j->out_rstd;                                       \
        for (int64_t r = r0; r < r1; r++) {                                                          \
            const T *xr = x + r * j->d;                                                              \
            T *yr = y + r * j->d;                                                                    \
            AT m = row_sum_##T(xr, j->d, 0, false) / (AT)j->d;                                       \
            AT v = row_sum_##T(xr, j->d, m, true);                                                   \
            AT rs = (AT)(1.0 / sqrt((double)v / (double)j->d + j->eps));                             \
            T tm = (T)m, trs = (T)rs;                                                                \
            if (w && b)                                                                              \
                for (int64_t i = 0; i < j->d; i++)                                                   \
                    yr[i] = (xr[i] - tm) * trs * w[i] + b[i];                                        \
            else                                                                                     \
                for (int64_t i = 0; i < j->d; i++) {                                                 \
                    T h = (xr[i] - tm) * trs;                                                        \
                    yr[i] = w ? h * w[i] : b ? h + b[i] : h;                                         \
                }                                                                                    \
            mean[r] = tm;                                                                            \
            rstd[r] = trs;                                                                           \
        }                                                                                            \
    }

/* dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = g w, xhat = (x - mean) rstd. */
#define LN_BACKWARD_DX(T, AT, LANES)                                                                 \
    static void ln_backward_dx_##T(const ln_job *j, int64_t r0, int64_t r1)                          \
    {                                                                                                \
        const T *x = j->x, *w = j->w, *g = j->g, *mean = j->mean, *rstd = j->rstd;                   \
        T *dx = j->dx;                                                                               \
        for (int64_t r = r0; r < r1; r++) {                                                          \
            const T *xr = x + r * j->d, *gr = g + r * j->d;                                          \
            AT pa[LANES] = {0}, pc[LANES] = {0}, m = mean[r], rs = rstd[r];                          \
            int64_t i = 0;                                                                           \
            for (; i + LANES <= j->d; i += LANES)                                                    \
                for (int l = 0; l < LANES; l++) {                                                    \
                    AT dh = (AT)gr[i + l] * (w ? (AT)w[i + l] : (AT)1);                              \
                    pa[l] += dh;                                                                     \
                    pc[l] += dh * (((AT)xr[i + l] - m) * rs);                                        \
                }                                                                                    \
            for (int wd = LANES / 2; wd > 0; wd /= 2)                                                \
                for (int l = 0; l < wd; l++)                                                         \
                    pa[l] += pa[l + wd], pc[l] += pc[l + wd];                                        \
            AT a = pa[0], c = pc[0];                                                                 \
            for (; i < j->d; i++) {                                                                  \
                AT dh = (AT)gr[i] * (w ? (AT)w[i] : (AT)1);                                          \
                a += dh;                                                                             \
                c += dh * (((AT)xr[i] - m) * rs);                                                    \
            }                                                                                        \
            T ta = (T)(a / (AT)j->d), tc = (T)(c / (AT)j->d), tm = (T)m, trs = (T)rs;                \
            for (i = 0; i < j->d; i++) {                                                             \
                T dh = gr[i] * (w ? w[i] : (T)1);                                                    \
                dx[r * j->d + i] = trs * (dh - ta - (xr[i] - tm) * trs * tc);                        \
            }                                                                                        \
        }                                                                                            \
    }

/* Columns [c0, c1) of dw = Σ_rows g xhat and db = Σ_rows g: rows in order for every column (so
 * the sums never depend on the thread count), a block of columns at a time, row-major reads. */
#define LN_BACKWARD_DW(T)                                                                            \
    static void ln_backward_dw_##T(const ln_job *j, int64_t rows, int64_t c0, int64_t c1) \
    {                                                                                                \
        const T *x = j->x, *g = j->g, *mean = j->mean, *rstd = j->rstd;                              \
        T *dw = j->dw, *db = j->db;                                                                  \
        enum { BLOCK = 256 };                                                                        \
        double sw[BLOCK], sb[BLOCK];                                                                 \
        for (int64_t b0 = c0; b0 < c1; b0 += BLOCK) {                                                \
            int64_t n = c1 - b0 < BLOCK ? c1 - b0 : BLOCK;                                           \
            for (int64_t i = 0; i < n; i++)                                                          \
                sw[i] = sb[i] = 0;                                                                   \
            for (int64_t r = 0; r < rows; r++) {                                                     \
                const T *gr = g + r * j->d + b0, *xr = x + r * j->d + b0;                            \
                double m = mean[r], rs = rstd[r];                                                    \
                for (int64_t i = 0; i < n; i++) {                                                    \
                    sw[i] += (double)gr[i] * (((double)xr[i] - m) * rs);                             \
                    sb[i] += (double)gr[i];                                                          \
                }                                                                                    \
            }                                                                                        \
            for (int64_t i = 0; i < n; i++) {                                                        \
                if (dw)                                                                              \
                    dw[b0 + i] = (T)sw[i];                                                           \
                if (db)                                                                              \
                    db[b0 + i] = (T)sb[i];                                                           \
            }                                                                                        \
        }                                                                                            \
    }

LN_FORWARD(float, float)
LN_FORWARD(double, double)
LN_BACKWARD_DX(float, float, 16)
LN_BACKWARD_DX(double, double, 8)
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

/* ------------------------------------------------------------------ softmax backward */

/* Rows of n contiguous elements: softmax dx = y (g - Σ g y); log_softmax dx = g - e^y Σ g. Row sums
 * in double, in order, so the thread count never changes a result. */
#define SOFTMAX_BACKWARD(T, EXP)                                                                     \
    static void softmax_bw_##T(bool log_form, int64_t r0, int64_t r1, int64_t n, const T *y, const T *g, T *dx) \
    {                                                                                                \
        for (int64_t r = r0; r < r1; r++) {                                                          \
            const T *yr = y + r * n, *gr = g + r * n;                                                \
            T *dr = dx + r * n;                                                                      \
            double s = 0;                                                                            \
            for (int64_t j = 0; j < n; j++)                                                          \
                s += log_form ? (double)gr[j] : (double)gr[j] * (double)yr[j];                       \
            T ts = (T)s;                                                                             \
            if (log_form)                                                                            \
                for (int64_t j = 0; j < n; j++)                                                      \
                    dr[j] = gr[j] - EXP(yr[j]) * ts;                                                 \
            else                                                                                     \
                for (int64_t j = 0; j < n; j++)                                                      \
                    dr[j] = yr[j] * (gr[j] - ts);                                                    \
        }                                                                                            \
    }
SOFTMAX_BACKWARD(float, fast_expf)
SOFTMAX_BACKWARD(double, exp)

/* ------------------------------------------------------------------ cross-entropy */

/* Rows of C logits with one class index each: per row, lse = (max, log Σ e^(x - max)) and loss =
 * max + log Σ - x[t] (all 0 where t is ignore_index); the backward writes coef (e^(x - lse) - [j = t]), 0 on
 * ignored rows. */
#define CROSS_ENTROPY(T, EXP)                                                                        \
    static void ce_forward_##T(int64_t r0, int64_t r1, int64_t C, const T *x, const int64_t *t, int64_t ignore, \
                               T *lse, T *loss)                                                      \
    {                                                                                                \
        for (int64_t r = r0; r < r1; r++) {                                                          \
            const T *xr = x + r * C;                                                                 \
            if (t[r] == ignore) {                                                                    \
                lse[2 * r] = lse[2 * r + 1] = loss[r] = 0;                                           \
                continue;                                                                            \
            }                                                                                        \
            T mx = xr[0];                                                                            \
            for (int64_t j = 1; j < C; j++)                                                          \
                mx = xr[j] > mx || xr[j] != xr[j] ? xr[j] : mx;                                      \
            double s = 0;                                                                            \
            for (int64_t j = 0; j < C; j++)                                                          \
                s += (double)EXP(xr[j] - mx);                                                        \
            /* the max and log Σ apart: their float sum would lose the small part at large logits */ \
            lse[2 * r] = mx;                                                                         \
            lse[2 * r + 1] = (T)log(s);                                                              \
            loss[r] = (T)((double)mx + log(s) - (double)xr[t[r]]);                                   \
        }                                                                                            \
    }                                                                                                \
    static void ce_backward_##T(int64_t r0, int64_t r1, int64_t C, const T *x, const int64_t *t, int64_t ignore, \
                                const T *lse, double coef, T *dx)                                    \
    {                                                                                                \
        T c = (T)coef;                                                                               \
        for (int64_t r = r0; r < r1; r++) {                                                          \
            const T *xr = x + r * C;                                                                 \
            T *dr = dx + r * C;                                                                      \
            if (t[r] == ignore) {                                                                    \
                for (int64_t j = 0; j < C; j++)                                                      \
                    dr[j] = 0;                                                                       \
                continue;                                                                            \
            }                                                                                        \
            T mx = lse[2 * r], ls = lse[2 * r + 1];                                                  \
            for (int64_t j = 0; j < C; j++)                                                          \
                dr[j] = c * EXP((xr[j] - mx) - ls);                                                  \
            dr[t[r]] -= c;                                                                           \
        }                                                                                            \
    }
CROSS_ENTROPY(float, fast_expf)
CROSS_ENTROPY(double, exp)

typedef struct rows_job {
    nd_dtype dtype;
    int which; /* 0 softmax backward, 1 cross-entropy forward, 2 cross-entropy backward */
    bool log_form;
    int64_t n, ignore;
    const void *a, *b, *c;
    const int64_t *targets;
    void *out, *out2;
    double coef;
} rows_job;

static void rows_part(void *ctx, int64_t r0, int64_t r1, int chunk)
{
    (void)chunk;
    const rows_job *j = ctx;
    bool f = j->dtype == ND_FLOAT32;
    switch (j->which) {
    case 0:
        f ? softmax_bw_float(j->log_form, r0, r1, j->n, j->a, j->b, j->out)
          : softmax_bw_double(j->log_form, r0, r1, j->n, j->a, j->b, j->out);
        break;
    case 1:
        f ? ce_forward_float(r0, r1, j->n, j->a, j->targets, j->ignore, j->out, j->out2)
          : ce_forward_double(r0, r1, j->n, j->a, j->targets, j->ignore, j->out, j->out2);
        break;
    default:
        f ? ce_backward_float(r0, r1, j->n, j->a, j->targets, j->ignore, j->b, j->coef, j->out)
          : ce_backward_double(r0, r1, j->n, j->a, j->targets, j->ignore, j->b, j->coef, j->out);
    }
}

void nd_cpu_softmax_backward(nd_dtype dtype, bool log_form, int64_t rows, int64_t n, const void *y, const void *g,
                             void *dx)
{
    rows_job j = {dtype, 0, log_form, n, 0, y, g, NULL, NULL, dx, NULL, 0};
    nd_parallel_for(rows, min_rows(n), rows_part, &j);
}

void nd_cpu_cross_entropy_forward(nd_dtype dtype, int64_t rows, int64_t classes, const void *x, const int64_t *targets,
                                  int64_t ignore_index, void *lse, void *loss)
{
    rows_job j = {dtype, 1, false, classes, ignore_index, x, NULL, NULL, targets, lse, loss, 0};
    nd_parallel_for(rows, min_rows(classes), rows_part, &j);
}

void nd_cpu_cross_entropy_backward(nd_dtype dtype, int64_t rows, int64_t classes, const void *x, const int64_t *targets,
                                   int64_t ignore_index, const void *lse, double coef, void *dx)
{
    rows_job j = {dtype, 2, false, classes, ignore_index, x, lse, NULL, targets, dx, NULL, coef};
    nd_parallel_for(rows, min_rows(classes), rows_part, &j);
}

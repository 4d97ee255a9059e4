/* Hand-vectorised kernels against plain loops, at whichever vector level runs (tests/run_all.sh
 * runs this file once per level the CPU has): the 2x2 max-pooling rows (forward and backward,
 * rows of every width around the vector sizes, NaN, ties, -inf; they read whole vectors past a
 * row's end, which must never change a result), checked against the window scan that also
 * reports indices. */
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Deterministic awkward values: ties (several windows hold equal maxima), -inf, NaN, signed zeros. */
static double awkward(int64_t i, int kind)
{
    static const double pool[] = {1.0, -2.0, 1.0, 0.5, -0.0, 0.0, 3.0, 3.0, -INFINITY, 2.5, -1.0, 1.0};
    if (kind == 1 && i % 37 == 5)
        return NAN;
    if (kind == 2 && i % 11 == 3)
        return NAN;
    return pool[(i * 7 + i / 5) % 12] + (kind == 3 ? (double)(i % 5) * 0.25 : 0.0);
}

static nd_tensor *filled(nd_dtype dt, int64_t n, int64_t c, int64_t h, int64_t w, int kind)
{
    int64_t total = n * c * h * w;
    double *v = malloc(sizeof(double) * (size_t)total);
    for (int64_t i = 0; v && i < total; i++)
        v[i] = awkward(i, kind);
    nd_tensor *t = v ? nd_to(nd_from_f64(v, ND_SHAPE(n, c, h, w)), dt) : NULL;
    CHECK(t != NULL);
    free(v);
    return t;
}

/* Values equal, NaN where NaN, signed zeros alike. */
static bool same_values(nd_tensor *a, nd_tensor *b)
{
    int64_t n = nd_numel(a);
    if (n != nd_numel(b))
        return false;
    double *x = malloc(sizeof(double) * (size_t)(n + 1)), *y = malloc(sizeof(double) * (size_t)(n + 1));
    bool ok = x && y && nd_copy_out(a, x, sizeof(double) * (size_t)n, ND_FLOAT64) == ND_OK &&
              nd_copy_out(b, y, sizeof(double) * (size_t)n, ND_FLOAT64) == ND_OK;
    for (int64_t i = 0; ok && i < n; i++)
        if (!(isnan(x[i]) && isnan(y[i])) && !(x[i] == y[i] && signbit(x[i]) == signbit(y[i]))) {
            fprintf(stderr, "  element %lld: %g vs %g\n", (long long)i, x[i], y[i]);
            ok = false;
        }
    free(x);
    free(y);
    return ok;
}

TEST(max_pool_2x2_rows_match_the_window_scan)
{
    const int64_t k[2] = {2, 2}, pad[2] = {0, 0};
    for (int dt = 0; dt < 2; dt++)
        for (int kind = 0; kind < 4; kind++)
            for (int64_t w = 2; w <= 70; w += (w < 36 ? 1 : 7)) {
                nd_scope_begin();
                int64_t h = 2 + (w % 3); /* odd heights too: the last row is outside every window */
                nd_tensor *x = filled(dt ? ND_FLOAT64 : ND_FLOAT32, 2, 3, h, w, kind);
                nd_set_requires_grad(x, true);
                nd_tensor *idx = NULL;
                nd_tensor *fast = nd_max_pool2d(x, k, NULL, pad, NULL);
                nd_tensor *scan = nd_max_pool2d(x, k, NULL, pad, &idx);
                CHECK(fast && scan && idx);
                if (!fast || !scan || !idx) {
                    nd_scope_end();
                    continue;
                }
                if (!same_values(fast, scan)) {
                    fprintf(stderr, "  forward differs: width %lld, kind %d, dtype %d\n", (long long)w, kind, dt);
                    CHECK(false);
                }
                /* backward of sum(pool(x) * G): G to each window's index (its first maximum, last NaN) */
                nd_tensor *G = nd_randn_like(fast);
                CHECK(nd_backward(nd_sum(nd_mul(fast, G))) == ND_OK);
                int64_t planes = 2 * 3, oh = h / 2, ow = w / 2, n_out = planes * oh * ow;
                double *want = calloc((size_t)(planes * h * w), sizeof(double)), *g = malloc(sizeof(double) * (size_t)n_out);
                int64_t *at = malloc(sizeof(int64_t) * (size_t)n_out);
                CHECK(want && g && at && nd_copy_out(G, g, sizeof(double) * (size_t)n_out, ND_FLOAT64) == ND_OK &&
                      nd_copy_out(idx, at, sizeof(int64_t) * (size_t)n_out, ND_INT64) == ND_OK);
                for (int64_t o = 0; want && g && at && o < n_out; o++)
                    want[(o / (oh * ow)) * h * w + at[o]] += g[o];
                nd_tensor *expected = want ? nd_from_f64(want, ND_SHAPE(2, 3, h, w)) : NULL;
                if (!expected || !same_values(nd_grad(x), expected)) {
                    fprintf(stderr, "  gradient differs: width %lld, kind %d, dtype %d\n", (long long)w, kind, dt);
                    CHECK(false);
                }
                free(want);
                free(g);
                free(at);
                nd_scope_end();
            }
}

void run_suite(void) { RUN(max_pool_2x2_rows_match_the_window_scan); }

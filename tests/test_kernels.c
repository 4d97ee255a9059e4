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

/* One shape [n, c, h, w] through the fast 2x2 rows (no indices asked) and through the window scan
 * that reports indices: the same values, and the same gradient as G sent to each index. */
static void check_pool(int dt, int kind, int64_t n, int64_t c, int64_t h, int64_t w)
{
    const int64_t k[2] = {2, 2}, pad[2] = {0, 0};
    nd_scope_begin();
    nd_tensor *x = filled(dt ? ND_FLOAT64 : ND_FLOAT32, n, c, h, w, kind);
    nd_set_requires_grad(x, true);
    nd_tensor *idx = NULL;
    nd_tensor *fast = nd_max_pool2d(x, k, NULL, pad, NULL);
    nd_tensor *scan = nd_max_pool2d(x, k, NULL, pad, &idx);
    CHECK(fast && scan && idx);
    if (fast && scan && idx) {
        if (!same_values(fast, scan)) {
            fprintf(stderr, "  forward differs: [%lld, %lld, %lld, %lld], kind %d, dtype %d\n", (long long)n, (long long)c,
                    (long long)h, (long long)w, kind, dt);
            CHECK(false);
        }
        nd_tensor *G = nd_randn_like(fast);
        CHECK(nd_backward(nd_sum(nd_mul(fast, G))) == ND_OK);
        int64_t planes = n * c, oh = h / 2, ow = w / 2, n_out = planes * oh * ow;
        double *want = calloc((size_t)(planes * h * w), sizeof(double)), *g = malloc(sizeof(double) * (size_t)n_out + 1);
        int64_t *at = malloc(sizeof(int64_t) * (size_t)n_out + 1);
        bool ok = want && g && at && nd_copy_out(G, g, sizeof(double) * (size_t)n_out, ND_FLOAT64) == ND_OK &&
                  nd_copy_out(idx, at, sizeof(int64_t) * (size_t)n_out, ND_INT64) == ND_OK;
        for (int64_t o = 0; ok && o < n_out; o++)
            want[(o / (oh * ow)) * h * w + at[o]] += g[o];
        nd_tensor *expected = ok ? nd_from_f64(want, ND_SHAPE(n, c, h, w)) : NULL;
        if (!expected || !same_values(nd_grad(x), expected)) {
            fprintf(stderr, "  gradient differs: [%lld, %lld, %lld, %lld], kind %d, dtype %d\n", (long long)n, (long long)c,
                    (long long)h, (long long)w, kind, dt);
            CHECK(false);
        }
        free(want);
        free(g);
        free(at);
    }
    nd_scope_end();
}

TEST(max_pool_2x2_rows_match_the_window_scan)
{
    for (int dt = 0; dt < 2; dt++)
        for (int kind = 0; kind < 4; kind++)
            for (int64_t w = 2; w <= 70; w += (w < 36 ? 1 : 7))
                check_pool(dt, kind, 2, 3, 2 + (w % 3), w); /* odd heights too: a last row outside every window */
}

/* Large enough to be split across threads: the vector stores that run past a row must stay
 * inside their thread's planes. */
TEST(max_pool_2x2_rows_split_across_threads)
{
    int threads = nd_get_num_threads();
    CHECK(nd_set_num_threads(2) == ND_OK);
    for (int kind = 0; kind < 4; kind++) {
        check_pool(0, kind, 4, 17, 20, 36);
        check_pool(0, kind, 3, 33, 14, 14);
        check_pool(0, kind, 5, 21, 28, 28);
        check_pool(1, kind, 4, 17, 21, 15);
    }
    CHECK(nd_set_num_threads(threads) == ND_OK);
}

void run_suite(void)
{
    RUN(max_pool_2x2_rows_match_the_window_scan);
    RUN(max_pool_2x2_rows_split_across_threads);
}

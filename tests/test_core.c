/* Core tensor tests: dtypes, dims, creation, random numbers and seeding (per thread), element
 * access, copies, dtype conversion, reference counting and scopes, and printing compared with the
 * exact text of PyTorch 1.13's repr (expected strings were produced by running PyTorch). */
#include "harness.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

static bool shape_is(const nd_tensor *t, int ndim, const int64_t *shape)
{
    if (!t || nd_ndim(t) != ndim)
        return false;
    for (int i = 0; i < ndim; i++)
        if (nd_shape(t)[i] != shape[i])
            return false;
    return true;
}

static bool strides_are(const nd_tensor *t, int ndim, const int64_t *strides)
{
    if (!t || nd_ndim(t) != ndim)
        return false;
    for (int i = 0; i < ndim; i++)
        if (nd_strides(t)[i] != strides[i])
            return false;
    return true;
}

/* Reads element idx as a double, or NaN when nd_get fails. */
static double get_at(const nd_tensor *t, const int64_t *idx)
{
    double v = NAN;
    if (nd_get(t, idx, &v) != ND_OK)
        return NAN;
    return v;
}
#define AT(t, ...) get_at((t), (const int64_t[]){__VA_ARGS__})

/* ------------------------------------------------------------------ dtypes and dims */

TEST(dtype_sizes_and_names)
{
    CHECK(nd_dtype_size(ND_FLOAT32) == 4);
    CHECK(nd_dtype_size(ND_FLOAT64) == 8);
    CHECK(nd_dtype_size(ND_INT64) == 8);
    CHECK(nd_dtype_size(ND_BOOL) == 1);
    CHECK(strcmp(nd_dtype_name(ND_FLOAT32), "float32") == 0);
    CHECK(strcmp(nd_dtype_name(ND_FLOAT64), "float64") == 0);
    CHECK(strcmp(nd_dtype_name(ND_INT64), "int64") == 0);
    CHECK(strcmp(nd_dtype_name(ND_BOOL), "bool") == 0);
}

TEST(dtype_of_created_tensors)
{
    nd_scope_begin();
    const nd_dtype all[] = {ND_FLOAT32, ND_FLOAT64, ND_INT64, ND_BOOL};
    for (int i = 0; i < 4; i++) {
        nd_tensor *z = nd_zeros(all[i], ND_SHAPE(2, 3));
        CHECK(z && nd_dtype_of(z) == all[i]);
        CHECK(nd_numel(z) == 6);
        CHECK_VALUES(z, 0, 0, 0, 0, 0, 0, 0);
        nd_tensor *o = nd_ones(all[i], ND_SHAPE(3));
        CHECK(o && nd_dtype_of(o) == all[i]);
        CHECK_VALUES(o, 0, 1, 1, 1);
    }
    const bool flags[] = {true, false, true};
    nd_tensor *b = nd_from_data(flags, ND_BOOL, ND_SHAPE(3));
    CHECK(nd_dtype_of(b) == ND_BOOL);
    CHECK_VALUES(b, 0, 1, 0, 1);
    nd_scope_end();
}

TEST(up_to_eight_dims)
{
    nd_scope_begin();
    nd_tensor *t = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 1, 2, 1, 2, 1, 2, 3));
    CHECK(t != NULL);
    CHECK(nd_ndim(t) == 8);
    CHECK(nd_numel(t) == 48);
    CHECK(strides_are(t, ND_SHAPE(24, 24, 12, 12, 6, 6, 3, 1)));
    CHECK(nd_size(t, -1) == 3);
    CHECK(nd_size(t, 0) == 2);
    CHECK_STATUS(nd_set(t, (const int64_t[]){1, 0, 1, 0, 1, 0, 1, 2}, 5.0), ND_OK);
    CHECK(AT(t, -1, -1, -1, -1, -1, -1, -1, -1) == 5.0);
    CHECK(AT(t, 0, 0, 0, 0, 0, 0, 0, 0) == 0.0);
    float data[256];
    for (int i = 0; i < 256; i++)
        data[i] = (float)i;
    nd_tensor *f = nd_from_f32(data, ND_SHAPE(2, 2, 2, 2, 2, 2, 2, 2));
    CHECK(nd_ndim(f) == 8);
    CHECK(AT(f, 1, 1, 1, 1, 1, 1, 1, 1) == 255.0);
    CHECK(AT(f, 1, 0, 0, 0, 0, 0, 0, 1) == 129.0);
    nd_scope_end();
}

TEST(nine_dims_refused)
{
    nd_scope_begin();
    nd_tensor *t = nd_zeros(ND_FLOAT32, ND_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1));
    CHECK(t == NULL);
    CHECK(nd_last_status() == ND_ERR_DIM);
    nd_clear_error();
    float v[1] = {1};
    CHECK(nd_from_f32(v, ND_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1)) == NULL);
    CHECK(nd_last_status() == ND_ERR_DIM);
    nd_clear_error();
    nd_tensor *e = nd_ones(ND_FLOAT32, ND_SHAPE(1, 1, 1, 1, 1, 1, 1, 1));
    CHECK(e != NULL);
    CHECK(nd_unsqueeze(e, 0) == NULL);
    CHECK(nd_last_status() == ND_ERR_DIM);
    nd_clear_error();
    CHECK(nd_view(e, ND_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1)) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_clear_error();
    CHECK(nd_expand(e, ND_SHAPE(2, 1, 1, 1, 1, 1, 1, 1, 1)) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_scope_end();
}

/* ------------------------------------------------------------------ creation */

TEST(from_data_copies_the_array)
{
    nd_scope_begin();
    float f[6] = {1, 2, 3, 4, 5, 6};
    nd_tensor *t = nd_from_f32(f, ND_SHAPE(2, 3));
    f[0] = 100;
    f[5] = -7;
    CHECK(shape_is(t, ND_SHAPE(2, 3)));
    CHECK(strides_are(t, ND_SHAPE(3, 1)));
    CHECK(nd_is_contiguous(t));
    CHECK(nd_dtype_of(t) == ND_FLOAT32);
    CHECK_VALUES(t, 0, 1, 2, 3, 4, 5, 6);

    double d[3] = {0.1, 0.2, 0.3};
    nd_tensor *td = nd_from_f64(d, ND_SHAPE(3));
    d[1] = 9;
    CHECK(nd_dtype_of(td) == ND_FLOAT64);
    CHECK(AT(td, 1) == 0.2); /* float64 keeps every bit */

    int64_t i[4] = {-3, 0, 7, 1000000};
    nd_tensor *ti = nd_from_i64(i, ND_SHAPE(4, 1));
    i[2] = 8;
    CHECK(nd_dtype_of(ti) == ND_INT64);
    CHECK_VALUES(ti, 0, -3, 0, 7, 1000000);

    double s = 2.5;
    nd_tensor *sc = nd_from_data(&s, ND_FLOAT64, ND_SCALAR_SHAPE);
    s = 0;
    CHECK(nd_ndim(sc) == 0);
    CHECK(nd_numel(sc) == 1);
    CHECK(nd_item(sc) == 2.5);

    /* The library's copy does not alias the caller's memory. */
    CHECK(nd_data_ptr(t) != (void *)f);
    nd_scope_end();
}

TEST(zeros_ones_full_scalar)
{
    nd_scope_begin();
    nd_tensor *z = nd_zeros(ND_FLOAT64, ND_SHAPE(2, 2));
    CHECK(shape_is(z, ND_SHAPE(2, 2)));
    CHECK_VALUES(z, 0, 0, 0, 0, 0);
    nd_tensor *o = nd_ones(ND_INT64, ND_SHAPE(3));
    CHECK_VALUES(o, 0, 1, 1, 1);
    nd_tensor *f = nd_full(-2.5, ND_FLOAT32, ND_SHAPE(2, 1, 2));
    CHECK(shape_is(f, ND_SHAPE(2, 1, 2)));
    CHECK_VALUES(f, 0, -2.5, -2.5, -2.5, -2.5);
    nd_tensor *fi = nd_full(7, ND_INT64, ND_SHAPE(2));
    CHECK_VALUES(fi, 0, 7, 7);
    nd_tensor *fb = nd_full(1, ND_BOOL, ND_SHAPE(2));
    CHECK_VALUES(fb, 0, 1, 1);
    nd_tensor *s = nd_scalar(3.25, ND_FLOAT32);
    CHECK(nd_ndim(s) == 0);
    CHECK(nd_item(s) == 3.25);
    nd_tensor *e = nd_zeros(ND_FLOAT32, ND_SHAPE(0, 4));
    CHECK(e && nd_numel(e) == 0 && nd_ndim(e) == 2);
    nd_tensor *empty = nd_empty(ND_FLOAT32, ND_SHAPE(5, 2));
    CHECK(shape_is(empty, ND_SHAPE(5, 2)));
    CHECK(nd_is_contiguous(empty));
    /* Negative sizes are refused. */
    CHECK(nd_zeros(ND_FLOAT32, ND_SHAPE(2, -1)) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_scope_end();
}

TEST(arange_like_torch)
{
    nd_scope_begin();
    /* torch.arange(0, 5) (float32 here) */
    nd_tensor *a = nd_arange(0, 5, 1, ND_FLOAT32);
    CHECK(shape_is(a, ND_SHAPE(5)));
    CHECK_VALUES(a, 0, 0, 1, 2, 3, 4);
    /* torch.arange(0, 1, 0.1): 10 elements */
    nd_tensor *b = nd_arange(0, 1, 0.1, ND_FLOAT32);
    CHECK(nd_numel(b) == 10);
    CHECK_VALUES(b, 1e-6, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9);
    /* torch.arange(1, 1.3, 0.1): 4 elements (1.3 is included by float rounding) */
    nd_tensor *c = nd_arange(1, 1.3, 0.1, ND_FLOAT32);
    CHECK(nd_numel(c) == 4);
    CHECK_VALUES(c, 1e-6, 1.0, 1.1, 1.2, 1.3);
    /* torch.arange(0, 0.3, 0.1): 3 elements */
    CHECK(nd_numel(nd_arange(0, 0.3, 0.1, ND_FLOAT32)) == 3);
    /* torch.arange(1, 2.5, 0.5) */
    CHECK_VALUES(nd_arange(1, 2.5, 0.5, ND_FLOAT32), 0, 1.0, 1.5, 2.0);
    /* Negative steps: torch.arange(5, 0, -1.5), torch.arange(2.5, -1, -0.5, dtype=float64) */
    CHECK_VALUES(nd_arange(5, 0, -1.5, ND_FLOAT32), 0, 5.0, 3.5, 2.0, 0.5);
    nd_tensor *d = nd_arange(2.5, -1, -0.5, ND_FLOAT64);
    CHECK(nd_dtype_of(d) == ND_FLOAT64);
    CHECK_VALUES(d, 0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0, -0.5);
    /* int64: torch.arange(0, 10, 3), torch.arange(10, 0, -3), torch.arange(-3, 3, 2) */
    nd_tensor *i = nd_arange(0, 10, 3, ND_INT64);
    CHECK(nd_dtype_of(i) == ND_INT64);
    CHECK_VALUES(i, 0, 0, 3, 6, 9);
    CHECK_VALUES(nd_arange(10, 0, -3, ND_INT64), 0, 10, 7, 4, 1);
    CHECK_VALUES(nd_arange(-3, 3, 2, ND_INT64), 0, -3, -1, 1);
    /* Empty range: torch.arange(3, 3) */
    nd_tensor *e = nd_arange(3, 3, 1, ND_INT64);
    CHECK(e && nd_numel(e) == 0 && nd_ndim(e) == 1);
    /* Errors: zero step, step of the wrong sign */
    CHECK(nd_arange(0, 5, 0, ND_FLOAT32) == NULL);
    CHECK(nd_last_status() == ND_ERR_VALUE);
    nd_clear_error();
    CHECK(nd_arange(0, 5, -1, ND_FLOAT32) == NULL);
    CHECK(nd_last_status() == ND_ERR_VALUE);
    nd_scope_end();
}

TEST(eye_square_and_rectangular)
{
    nd_scope_begin();
    nd_tensor *e = nd_eye(3, 3, ND_FLOAT32);
    CHECK(shape_is(e, ND_SHAPE(3, 3)));
    CHECK_VALUES(e, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1);
    nd_tensor *w = nd_eye(2, 4, ND_FLOAT64);
    CHECK(shape_is(w, ND_SHAPE(2, 4)));
    CHECK(nd_dtype_of(w) == ND_FLOAT64);
    CHECK_VALUES(w, 0, 1, 0, 0, 0, 0, 1, 0, 0);
    nd_tensor *tall = nd_eye(4, 2, ND_INT64);
    CHECK(shape_is(tall, ND_SHAPE(4, 2)));
    CHECK_VALUES(tall, 0, 1, 0, 0, 1, 0, 0, 0, 0);
    nd_tensor *z = nd_eye(0, 3, ND_FLOAT32);
    CHECK(z && nd_numel(z) == 0);
    CHECK(nd_eye(-1, 2, ND_FLOAT32) == NULL);
    nd_scope_end();
}

TEST(rand_in_unit_interval)
{
    nd_scope_begin();
    nd_manual_seed(1);
    const nd_dtype dts[] = {ND_FLOAT32, ND_FLOAT64};
    for (int k = 0; k < 2; k++) {
        nd_tensor *r = nd_rand(dts[k], ND_SHAPE(100, 100));
        CHECK(shape_is(r, ND_SHAPE(100, 100)));
        CHECK(nd_dtype_of(r) == dts[k]);
        static double v[10000];
        CHECK_STATUS(nd_copy_out(r, v, sizeof v, ND_FLOAT64), ND_OK);
        double lo = 1, hi = 0, sum = 0;
        int distinct_from_prev = 0;
        for (int i = 0; i < 10000; i++) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
            sum += v[i];
            if (i && v[i] != v[i - 1])
                distinct_from_prev++;
        }
        CHECK(lo >= 0.0);
        CHECK(hi < 1.0);
        CHECK(lo < 0.01);
        CHECK(hi > 0.99);
        CHECK_NEAR(sum / 10000, 0.5, 0.02);
        CHECK(distinct_from_prev > 9900);
    }
    /* Integer dtypes are refused, like torch.rand(dtype=torch.int64). */
    CHECK(nd_rand(ND_INT64, ND_SHAPE(2)) == NULL);
    CHECK(nd_last_status() == ND_ERR_DTYPE);
    nd_clear_error();
    CHECK(nd_randn(ND_BOOL, ND_SHAPE(2)) == NULL);
    CHECK(nd_last_status() == ND_ERR_DTYPE);
    nd_scope_end();
}

static void moments(const nd_tensor *t, double *mean, double *std)
{
    int64_t n = nd_numel(t);
    double *v = malloc((size_t)n * sizeof *v);
    double s = 0, ss = 0;
    if (v && nd_copy_out(t, v, (size_t)n * sizeof *v, ND_FLOAT64) == ND_OK) {
        for (int64_t i = 0; i < n; i++)
            s += v[i];
        double m = s / (double)n;
        for (int64_t i = 0; i < n; i++)
            ss += (v[i] - m) * (v[i] - m);
        *mean = m;
        *std = sqrt(ss / (double)(n - 1));
    } else {
        *mean = *std = NAN;
    }
    free(v);
}

TEST(randn_mean_and_std)
{
    nd_scope_begin();
    nd_manual_seed(123);
    double m, s;
    nd_tensor *r = nd_randn(ND_FLOAT32, ND_SHAPE(100000));
    CHECK(nd_dtype_of(r) == ND_FLOAT32);
    moments(r, &m, &s);
    CHECK_NEAR(m, 0.0, 0.015);
    CHECK_NEAR(s, 1.0, 0.015);
    nd_tensor *r64 = nd_randn(ND_FLOAT64, ND_SHAPE(200, 500));
    moments(r64, &m, &s);
    CHECK_NEAR(m, 0.0, 0.015);
    CHECK_NEAR(s, 1.0, 0.015);
    /* Some samples are beyond 3 sigma, as a normal distribution has (~0.27%). */
    nd_tensor *big = nd_gt(nd_mul(r, r), nd_scalar(9.0, ND_FLOAT32));
    nd_tensor *cnt = nd_sum(nd_to(big, ND_FLOAT64));
    CHECK(nd_item(cnt) > 150 && nd_item(cnt) < 400);
    nd_scope_end();
}

static bool same_numbers(const nd_tensor *a, const nd_tensor *b)
{
    int64_t n = nd_numel(a);
    if (!a || !b || n != nd_numel(b))
        return false;
    double *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    bool ok = x && y && nd_copy_out(a, x, (size_t)n * sizeof *x, ND_FLOAT64) == ND_OK &&
              nd_copy_out(b, y, (size_t)n * sizeof *y, ND_FLOAT64) == ND_OK;
    for (int64_t i = 0; ok && i < n; i++)
        ok = x[i] == y[i];
    free(x);
    free(y);
    return ok;
}

TEST(manual_seed_reproducible)
{
    nd_scope_begin();
    nd_manual_seed(42);
    nd_tensor *a1 = nd_rand(ND_FLOAT32, ND_SHAPE(50));
    nd_tensor *a2 = nd_randn(ND_FLOAT64, ND_SHAPE(51));
    nd_manual_seed(42);
    nd_tensor *b1 = nd_rand(ND_FLOAT32, ND_SHAPE(50));
    nd_tensor *b2 = nd_randn(ND_FLOAT64, ND_SHAPE(51));
    CHECK(same_numbers(a1, b1));
    CHECK(same_numbers(a2, b2));
    /* The stream advances: a second draw differs from the first. */
    nd_manual_seed(42);
    nd_tensor *c1 = nd_rand(ND_FLOAT32, ND_SHAPE(50));
    nd_tensor *c2 = nd_rand(ND_FLOAT32, ND_SHAPE(50));
    CHECK(same_numbers(a1, c1));
    CHECK(!same_numbers(c1, c2));
    /* A different seed gives different numbers. */
    nd_manual_seed(43);
    nd_tensor *d1 = nd_rand(ND_FLOAT32, ND_SHAPE(50));
    CHECK(!same_numbers(a1, d1));
    nd_manual_seed(0);
    nd_tensor *e1 = nd_randn(ND_FLOAT64, ND_SHAPE(51));
    CHECK(!same_numbers(a2, e1));
    /* One big draw equals two smaller ones from the same seed (one stream). */
    nd_manual_seed(7);
    nd_tensor *whole = nd_rand(ND_FLOAT64, ND_SHAPE(20));
    nd_manual_seed(7);
    nd_tensor *part1 = nd_rand(ND_FLOAT64, ND_SHAPE(8));
    nd_tensor *part2 = nd_rand(ND_FLOAT64, ND_SHAPE(12));
    CHECK(same_numbers(nd_slice(whole, 0, 0, 8, 1), part1));
    CHECK(same_numbers(nd_slice(whole, 0, 8, 20, 1), part2));
    nd_scope_end();
}

typedef struct draw_job {
    uint64_t seed;
    double uniform[32];
    double normal[32];
    bool ok;
} draw_job;

static void *draw_in_thread(void *arg)
{
    draw_job *job = arg;
    nd_manual_seed(job->seed);
    nd_scope_begin();
    nd_tensor *u = nd_rand(ND_FLOAT64, ND_SHAPE(32));
    nd_tensor *n = nd_randn(ND_FLOAT32, ND_SHAPE(32));
    job->ok = u && n && nd_copy_out(u, job->uniform, sizeof job->uniform, ND_FLOAT64) == ND_OK &&
              nd_copy_out(n, job->normal, sizeof job->normal, ND_FLOAT64) == ND_OK;
    nd_scope_end();
    return NULL;
}

TEST(seed_same_in_another_thread)
{
    nd_scope_begin();
    nd_manual_seed(42);
    nd_tensor *u = nd_rand(ND_FLOAT64, ND_SHAPE(32));
    nd_tensor *n = nd_randn(ND_FLOAT32, ND_SHAPE(32));
    double mu[32], mn[32];
    CHECK_STATUS(nd_copy_out(u, mu, sizeof mu, ND_FLOAT64), ND_OK);
    CHECK_STATUS(nd_copy_out(n, mn, sizeof mn, ND_FLOAT64), ND_OK);
    nd_scope_end();

    draw_job job = {.seed = 42};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, draw_in_thread, &job) == 0);
    pthread_join(th, NULL);
    CHECK(job.ok);
    CHECK(memcmp(job.uniform, mu, sizeof mu) == 0);
    CHECK(memcmp(job.normal, mn, sizeof mn) == 0);
}

TEST(generator_is_per_thread)
{
    /* The main thread's stream: seed 7, draw 16, draw 16 more. */
    double ref[2][16], got[2][16];
    nd_scope_begin();
    nd_manual_seed(7);
    nd_copy_out(nd_rand(ND_FLOAT64, ND_SHAPE(16)), ref[0], sizeof ref[0], ND_FLOAT64);
    nd_copy_out(nd_rand(ND_FLOAT64, ND_SHAPE(16)), ref[1], sizeof ref[1], ND_FLOAT64);
    nd_scope_end();

    /* The same, with another thread seeding and drawing in between: the main stream is untouched. */
    nd_scope_begin();
    nd_manual_seed(7);
    nd_copy_out(nd_rand(ND_FLOAT64, ND_SHAPE(16)), got[0], sizeof got[0], ND_FLOAT64);
    draw_job job = {.seed = 99};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, draw_in_thread, &job) == 0);
    pthread_join(th, NULL);
    CHECK(job.ok);
    nd_copy_out(nd_rand(ND_FLOAT64, ND_SHAPE(16)), got[1], sizeof got[1], ND_FLOAT64);
    nd_scope_end();
    CHECK(memcmp(ref, got, sizeof ref) == 0);

    /* Two threads with the same seed running at once agree. */
    draw_job j1 = {.seed = 5}, j2 = {.seed = 5};
    pthread_t t1, t2;
    CHECK(pthread_create(&t1, NULL, draw_in_thread, &j1) == 0);
    CHECK(pthread_create(&t2, NULL, draw_in_thread, &j2) == 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK(j1.ok && j2.ok);
    CHECK(memcmp(j1.uniform, j2.uniform, sizeof j1.uniform) == 0);
    CHECK(memcmp(j1.normal, j2.normal, sizeof j1.normal) == 0);
    CHECK(memcmp(j1.uniform, job.uniform, sizeof j1.uniform) != 0);
}

TEST(like_variants)
{
    nd_scope_begin();
    nd_tensor *src = nd_from_f64((const double[]){1, 2, 3, 4, 5, 6}, ND_SHAPE(3, 2));
    nd_tensor *z = nd_zeros_like(src);
    CHECK(shape_is(z, ND_SHAPE(3, 2)) && nd_dtype_of(z) == ND_FLOAT64);
    CHECK_VALUES(z, 0, 0, 0, 0, 0, 0, 0);
    CHECK(!nd_shares_storage(z, src));
    nd_tensor *o = nd_ones_like(src);
    CHECK(shape_is(o, ND_SHAPE(3, 2)) && nd_dtype_of(o) == ND_FLOAT64);
    CHECK_VALUES(o, 0, 1, 1, 1, 1, 1, 1);
    nd_tensor *f = nd_full_like(src, 4.5);
    CHECK_VALUES(f, 0, 4.5, 4.5, 4.5, 4.5, 4.5, 4.5);
    nd_tensor *e = nd_empty_like(src);
    CHECK(shape_is(e, ND_SHAPE(3, 2)) && nd_dtype_of(e) == ND_FLOAT64);
    nd_tensor *r = nd_rand_like(src);
    CHECK(shape_is(r, ND_SHAPE(3, 2)) && nd_dtype_of(r) == ND_FLOAT64);
    double v[6];
    CHECK_STATUS(nd_copy_out(r, v, sizeof v, ND_FLOAT64), ND_OK);
    for (int i = 0; i < 6; i++)
        CHECK(v[i] >= 0 && v[i] < 1);
    nd_tensor *rn = nd_randn_like(nd_zeros(ND_FLOAT32, ND_SHAPE(4)));
    CHECK(shape_is(rn, ND_SHAPE(4)) && nd_dtype_of(rn) == ND_FLOAT32);
    /* int64 source */
    nd_tensor *is = nd_arange(0, 4, 1, ND_INT64);
    nd_tensor *io = nd_ones_like(is);
    CHECK(nd_dtype_of(io) == ND_INT64);
    CHECK_VALUES(io, 0, 1, 1, 1, 1);
    nd_tensor *ifl = nd_full_like(is, 3);
    CHECK(nd_dtype_of(ifl) == ND_INT64);
    CHECK_VALUES(ifl, 0, 3, 3, 3, 3);
    /* rand_like of an integer tensor is refused like torch.rand_like(torch.arange(4)). */
    CHECK(nd_rand_like(is) == NULL);
    nd_clear_error();
    /* Like of a 0-dim tensor and of a transposed view keep the (logical) shape. */
    nd_tensor *zs = nd_zeros_like(nd_scalar(2, ND_FLOAT32));
    CHECK(zs && nd_ndim(zs) == 0);
    nd_tensor *zt = nd_zeros_like(nd_t(src));
    CHECK(shape_is(zt, ND_SHAPE(2, 3)));
    nd_scope_end();
}

/* ------------------------------------------------------------------ element access */

TEST(get_set_item)
{
    nd_scope_begin();
    nd_tensor *t = nd_from_f32((const float[]){0, 1, 2, 3, 4, 5}, ND_SHAPE(2, 3));
    CHECK(AT(t, 0, 0) == 0);
    CHECK(AT(t, 1, 2) == 5);
    CHECK(AT(t, -1, -1) == 5);
    CHECK(AT(t, -2, 1) == 1);
    CHECK(AT(t, 1, -3) == 3);
    CHECK_STATUS(nd_set(t, (const int64_t[]){-1, 0}, 30), ND_OK);
    CHECK(AT(t, 1, 0) == 30);
    CHECK_STATUS(nd_set(t, (const int64_t[]){0, -1}, -2.5), ND_OK);
    CHECK_VALUES(t, 0, 0, 1, -2.5, 30, 4, 5);
    /* Out of range, both signs */
    double v = 0;
    CHECK_STATUS(nd_get(t, (const int64_t[]){2, 0}, &v), ND_ERR_INDEX);
    CHECK_STATUS(nd_get(t, (const int64_t[]){0, -4}, &v), ND_ERR_INDEX);
    CHECK_STATUS(nd_set(t, (const int64_t[]){0, 3}, 1), ND_ERR_INDEX);
    nd_clear_error();
    /* int64 and bool elements */
    nd_tensor *i = nd_from_i64((const int64_t[]){5, -6}, ND_SHAPE(2));
    CHECK(AT(i, -1) == -6);
    CHECK_STATUS(nd_set(i, (const int64_t[]){0}, 9), ND_OK);
    CHECK_VALUES(i, 0, 9, -6);
    nd_tensor *b = nd_zeros(ND_BOOL, ND_SHAPE(3));
    CHECK_STATUS(nd_set(b, (const int64_t[]){1}, 1), ND_OK);
    CHECK_VALUES(b, 0, 0, 1, 0);
    /* item: one-element tensors of any rank */
    CHECK(nd_item(nd_scalar(-1.5, ND_FLOAT64)) == -1.5);
    CHECK(nd_item(nd_full(4, ND_INT64, ND_SHAPE(1, 1, 1))) == 4);
    CHECK(nd_item(nd_select(nd_select(t, 0, 1), 0, 2)) == 5);
    double bad = nd_item(t);
    CHECK(isnan(bad));
    CHECK(nd_last_status() == ND_ERR_SHAPE);
    nd_clear_error();
    /* 0-dim get/set take no index */
    nd_tensor *s = nd_scalar(1, ND_FLOAT32);
    CHECK_STATUS(nd_set(s, NULL, 8), ND_OK);
    CHECK_STATUS(nd_get(s, NULL, &v), ND_OK);
    CHECK(v == 8);
    nd_scope_end();
}

TEST(set_on_leaf_requiring_grad)
{
    nd_scope_begin();
    nd_tensor *w = nd_zeros(ND_FLOAT32, ND_SHAPE(2));
    CHECK_STATUS(nd_set_requires_grad(w, true), ND_OK);
    CHECK(nd_set(w, (const int64_t[]){0}, 1) != ND_OK);
    CHECK(nd_last_status() == ND_ERR_GRAD);
    nd_clear_error();
    CHECK_VALUES(w, 0, 0, 0);
    nd_no_grad_begin();
    CHECK_STATUS(nd_set(w, (const int64_t[]){0}, 1), ND_OK);
    nd_no_grad_end();
    CHECK_VALUES(w, 0, 1, 0);
    /* requires_grad is refused for integer tensors */
    CHECK(nd_set_requires_grad(nd_zeros(ND_INT64, ND_SHAPE(2)), true) == ND_ERR_DTYPE);
    nd_scope_end();
}

/* ------------------------------------------------------------------ copies and dtype */

TEST(contiguous_and_clone)
{
    nd_scope_begin();
    nd_tensor *a = nd_arange(0, 6, 1, ND_FLOAT32);
    nd_tensor *m = nd_view(a, ND_SHAPE(2, 3));
    CHECK(nd_contiguous(m) == m); /* already contiguous: the same tensor */
    nd_tensor *tt = nd_t(m);
    CHECK(!nd_is_contiguous(tt));
    nd_tensor *c = nd_contiguous(tt);
    CHECK(c != tt);
    CHECK(nd_is_contiguous(c));
    CHECK(shape_is(c, ND_SHAPE(3, 2)));
    CHECK(strides_are(c, ND_SHAPE(2, 1)));
    CHECK(!nd_shares_storage(c, tt));
    CHECK_VALUES(c, 0, 0, 3, 1, 4, 2, 5);

    nd_tensor *k = nd_clone(m);
    CHECK(k != m);
    CHECK(!nd_shares_storage(k, m));
    CHECK(nd_is_contiguous(k));
    CHECK_VALUES(k, 0, 0, 1, 2, 3, 4, 5);
    CHECK_STATUS(nd_set(k, (const int64_t[]){0, 0}, 100), ND_OK);
    CHECK(AT(m, 0, 0) == 0);
    CHECK_STATUS(nd_set(m, (const int64_t[]){1, 1}, -1), ND_OK);
    CHECK(AT(k, 1, 1) == 4);
    /* clone of a transposed view is dense with the view's values */
    nd_tensor *kt = nd_clone(tt);
    CHECK_VALUES(kt, 0, 0, 3, 1, -1, 2, 5);
    CHECK(!nd_shares_storage(kt, a));
    /* clone keeps the dtype */
    nd_tensor *ki = nd_clone(nd_arange(0, 3, 1, ND_INT64));
    CHECK(nd_dtype_of(ki) == ND_INT64);
    nd_scope_end();
}

TEST(dtype_conversion)
{
    nd_scope_begin();
    nd_tensor *f = nd_from_f32((const float[]){-2.7f, -0.5f, 0.5f, 2.9f, -0.0f}, ND_SHAPE(5));
    nd_tensor *i = nd_to(f, ND_INT64);
    CHECK(nd_dtype_of(i) == ND_INT64);
    CHECK_VALUES(i, 0, -2, 0, 0, 2, 0); /* truncation toward zero */
    CHECK(!nd_shares_storage(i, f));
    nd_tensor *b = nd_to(nd_from_f32((const float[]){0, -0.5f, 2, NAN}, ND_SHAPE(4)), ND_BOOL);
    CHECK(nd_dtype_of(b) == ND_BOOL);
    CHECK_VALUES(b, 0, 0, 1, 1, 1); /* torch: tensor([False,  True,  True,  True]) */
    nd_tensor *ib = nd_to(nd_from_i64((const int64_t[]){0, 3, -1}, ND_SHAPE(3)), ND_BOOL);
    CHECK_VALUES(ib, 0, 0, 1, 1);
    nd_tensor *bf = nd_to(ib, ND_FLOAT32);
    CHECK(nd_dtype_of(bf) == ND_FLOAT32);
    CHECK_VALUES(bf, 0, 0, 1, 1);
    nd_tensor *d = nd_to(nd_from_f64((const double[]){0.1, 1e300}, ND_SHAPE(2)), ND_FLOAT32);
    CHECK(nd_dtype_of(d) == ND_FLOAT32);
    CHECK(AT(d, 0) == (double)0.1f);
    CHECK(isinf(AT(d, 1)));
    nd_tensor *id = nd_to(nd_from_i64((const int64_t[]){-4, 5}, ND_SHAPE(2)), ND_FLOAT64);
    CHECK(nd_dtype_of(id) == ND_FLOAT64);
    CHECK_VALUES(id, 0, -4, 5);
    /* Same dtype: the same tensor, not a copy. */
    CHECK(nd_to(f, ND_FLOAT32) == f);
    /* Converting a non-contiguous view follows logical order. */
    nd_tensor *tv = nd_t(nd_view(nd_arange(0, 6, 1, ND_FLOAT64), ND_SHAPE(2, 3)));
    nd_tensor *ti = nd_to(tv, ND_INT64);
    CHECK(shape_is(ti, ND_SHAPE(3, 2)));
    CHECK_VALUES(ti, 0, 0, 3, 1, 4, 2, 5);
    nd_scope_end();
}

TEST(int64_values_exact)
{
    /* int64 values beyond 2^53 must survive copies (they do not fit a double). */
    nd_scope_begin();
    const int64_t big[4] = {9007199254740993LL, -9007199254740995LL, INT64_MAX, 3};
    nd_tensor *t = nd_from_i64(big, ND_SHAPE(2, 2));
    int64_t out[4] = {0};
    CHECK_STATUS(nd_copy_out(t, out, sizeof out, ND_INT64), ND_OK);
    CHECK(memcmp(out, big, sizeof big) == 0);
    nd_tensor *k = nd_clone(t);
    CHECK_STATUS(nd_copy_out(k, out, sizeof out, ND_INT64), ND_OK);
    CHECK(memcmp(out, big, sizeof big) == 0);
    /* Through a transposed view: logical order is big[0], big[2], big[1], big[3]. */
    nd_tensor *tt = nd_t(t);
    CHECK_STATUS(nd_copy_out(tt, out, sizeof out, ND_INT64), ND_OK);
    CHECK(out[0] == big[0] && out[1] == big[2] && out[2] == big[1] && out[3] == big[3]);
    nd_tensor *c = nd_contiguous(tt);
    CHECK_STATUS(nd_copy_out(c, out, sizeof out, ND_INT64), ND_OK);
    CHECK(out[0] == big[0] && out[1] == big[2] && out[2] == big[1] && out[3] == big[3]);
    nd_scope_end();
}

TEST(copy_out_and_copy_in)
{
    nd_scope_begin();
    nd_tensor *m = nd_view(nd_arange(0, 6, 1, ND_FLOAT32), ND_SHAPE(2, 3));
    float f[6];
    CHECK_STATUS(nd_copy_out(m, f, sizeof f, ND_FLOAT32), ND_OK);
    for (int i = 0; i < 6; i++)
        CHECK(f[i] == (float)i);
    /* Transposed: row-major logical order. */
    double d[6];
    CHECK_STATUS(nd_copy_out(nd_t(m), d, sizeof d, ND_FLOAT64), ND_OK);
    const double want[6] = {0, 3, 1, 4, 2, 5};
    CHECK(memcmp(d, want, sizeof d) == 0);
    /* Converted to int64 (truncation) and bool. */
    nd_tensor *h = nd_from_f32((const float[]){1.5f, -1.5f, 0}, ND_SHAPE(3));
    int64_t iv[3];
    CHECK_STATUS(nd_copy_out(h, iv, sizeof iv, ND_INT64), ND_OK);
    CHECK(iv[0] == 1 && iv[1] == -1 && iv[2] == 0);
    bool bv[3];
    CHECK_STATUS(nd_copy_out(h, bv, sizeof bv, ND_BOOL), ND_OK);
    CHECK(bv[0] && bv[1] && !bv[2]);
    /* A buffer too small is refused and nothing is written past it. */
    float small[5] = {-1, -1, -1, -1, -1};
    CHECK(nd_copy_out(m, small, sizeof small, ND_FLOAT32) != ND_OK);
    CHECK(small[0] == -1 && small[4] == -1);
    nd_clear_error();
    /* A larger buffer is fine. */
    float large[10];
    CHECK_STATUS(nd_copy_out(m, large, sizeof large, ND_FLOAT32), ND_OK);

    /* copy_in: row-major data into any layout, visible through the base. */
    nd_tensor *base = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 3));
    const float src[6] = {10, 11, 12, 13, 14, 15};
    CHECK_STATUS(nd_copy_in(nd_t(base), src, sizeof src), ND_OK);
    CHECK_VALUES(base, 0, 10, 12, 14, 11, 13, 15);
    CHECK_STATUS(nd_copy_in(base, src, sizeof src), ND_OK);
    CHECK_VALUES(base, 0, 10, 11, 12, 13, 14, 15);
    /* Into a column slice only */
    CHECK_STATUS(nd_copy_in(nd_select(base, 1, 1), (const float[]){-1, -2}, 2 * sizeof(float)), ND_OK);
    CHECK_VALUES(base, 0, 10, -1, 12, 13, -2, 15);
    /* Wrong byte counts are refused. */
    CHECK(nd_copy_in(base, src, sizeof src - 4) != ND_OK);
    CHECK(nd_copy_in(base, src, sizeof src + 4) != ND_OK);
    CHECK_VALUES(base, 0, 10, -1, 12, 13, -2, 15);
    nd_clear_error();
    /* copy_in to a leaf requiring grad: only under no_grad */
    nd_tensor *w = nd_zeros(ND_FLOAT32, ND_SHAPE(2));
    nd_set_requires_grad(w, true);
    CHECK(nd_copy_in(w, src, 2 * sizeof(float)) != ND_OK);
    nd_no_grad_begin();
    CHECK_STATUS(nd_copy_in(w, src, 2 * sizeof(float)), ND_OK);
    nd_no_grad_end();
    CHECK_VALUES(w, 0, 10, 11);
    nd_scope_end();
}

TEST(is_contiguous_cases)
{
    nd_scope_begin();
    nd_tensor *m = nd_zeros(ND_FLOAT32, ND_SHAPE(4, 3));
    CHECK(nd_is_contiguous(m));
    CHECK(!nd_is_contiguous(nd_t(m)));
    CHECK(nd_is_contiguous(nd_slice(m, 0, 1, 3, 1)));  /* rows: still dense */
    CHECK(!nd_is_contiguous(nd_slice(m, 1, 0, 2, 1))); /* columns: gaps */
    CHECK(!nd_is_contiguous(nd_slice(m, 0, 0, 4, 2))); /* every other row */
    CHECK(nd_is_contiguous(nd_select(m, 0, 2)));
    CHECK(!nd_is_contiguous(nd_select(m, 1, 2)));
    CHECK(nd_is_contiguous(nd_unsqueeze(m, 1)));
    CHECK(!nd_is_contiguous(nd_expand(nd_zeros(ND_FLOAT32, ND_SHAPE(3, 1)), ND_SHAPE(3, 4))));
    CHECK(nd_is_contiguous(nd_scalar(1, ND_FLOAT32)));
    CHECK(nd_is_contiguous(nd_zeros(ND_FLOAT32, ND_SHAPE(0, 3))));
    /* A transposed tensor with a size-1 dim is still contiguous (as torch says). */
    CHECK(nd_is_contiguous(nd_t(nd_zeros(ND_FLOAT32, ND_SHAPE(1, 5)))));
    nd_scope_end();
}

/* ------------------------------------------------------------------ reference counting */

TEST(keep_out_of_scope)
{
    int64_t t0 = nd_live_tensors();
    nd_scope_begin();
    nd_tensor *a = nd_arange(0, 4, 1, ND_FLOAT32);
    nd_tensor *b = nd_mul_scalar(a, 2);
    nd_tensor *tmp = nd_add(a, b);
    (void)tmp;
    CHECK(nd_keep(b) == b);
    CHECK_STATUS(nd_scope_end(), ND_OK);
    /* b survives the scope; a and tmp are gone (b's graph holds nothing since no grad). */
    CHECK(nd_live_tensors() == t0 + 1);
    CHECK_VALUES(b, 0, 0, 2, 4, 6);
    CHECK(shape_is(b, ND_SHAPE(4)));
    nd_release(b);
    CHECK(nd_live_tensors() == t0);
    CHECK(nd_live_storages() == 0);
}

TEST(keep_view_keeps_storage)
{
    nd_scope_begin();
    nd_tensor *base = nd_arange(0, 6, 1, ND_FLOAT32);
    nd_tensor *v = nd_keep(nd_slice(base, 0, 2, 6, 2));
    nd_scope_end();
    /* The view alone keeps the storage alive. */
    CHECK(nd_live_storages() == 1);
    CHECK_VALUES(v, 0, 2, 4);
    nd_release(v);
    CHECK(nd_live_storages() == 0);
    CHECK(nd_live_tensors() == 0);
}

TEST(nested_scopes)
{
    nd_scope_begin();
    nd_tensor *outer = nd_ones(ND_FLOAT32, ND_SHAPE(3));
    int64_t after_outer = nd_live_tensors();
    nd_scope_begin();
    nd_tensor *inner = nd_add(outer, outer);
    nd_tensor *inner2 = nd_mul(inner, inner);
    CHECK(nd_live_tensors() == after_outer + 2);
    nd_tensor *kept = nd_keep(inner2);
    nd_scope_begin();
    nd_tensor *deep = nd_zeros(ND_FLOAT32, ND_SHAPE(100));
    (void)deep;
    CHECK_STATUS(nd_scope_end(), ND_OK);
    CHECK(nd_live_tensors() == after_outer + 2);
    CHECK_STATUS(nd_scope_end(), ND_OK);
    /* inner is freed; kept survives; outer is still alive and usable. */
    CHECK(nd_live_tensors() == after_outer + 1);
    CHECK_VALUES(outer, 0, 1, 1, 1);
    CHECK_VALUES(kept, 0, 4, 4, 4);
    /* A new op on `kept` in the outer scope belongs to the outer scope. */
    nd_tensor *sum = nd_sum(kept);
    CHECK(nd_item(sum) == 12);
    nd_release(kept);
    CHECK_STATUS(nd_scope_end(), ND_OK);
    CHECK(nd_live_tensors() == 0);
    /* Closing a scope that is not open is an error. */
    CHECK(nd_scope_end() == ND_ERR_STATE);
}

TEST(outside_scope_needs_release)
{
    nd_tensor *t = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 2));
    CHECK(nd_live_tensors() == 1);
    CHECK(nd_live_storages() == 1);
    nd_tensor *v = nd_t(t); /* a view made outside a scope: also ours */
    CHECK(nd_live_tensors() == 2);
    CHECK(nd_live_storages() == 1);
    nd_release(t);
    /* The view still works after the base is released. */
    CHECK(nd_live_storages() == 1);
    CHECK_VALUES(v, 0, 0, 0, 0, 0);
    nd_release(v);
    CHECK(nd_live_tensors() == 0);
    CHECK(nd_live_storages() == 0);
    nd_release(NULL); /* ignored */

    /* keep twice, release twice */
    nd_tensor *k = nd_ones(ND_FLOAT32, ND_SHAPE(1));
    nd_keep(k);
    nd_release(k);
    CHECK(nd_live_tensors() == 1);
    CHECK_VALUES(k, 0, 1);
    nd_release(k);
    CHECK(nd_live_tensors() == 0);
}

TEST(release_of_scope_owned_refused)
{
    nd_scope_begin();
    nd_tensor *t = nd_zeros(ND_FLOAT32, ND_SHAPE(2));
    nd_release(t); /* the scope owns it: refused, nothing freed */
    CHECK(nd_last_status() == ND_ERR_STATE);
    nd_clear_error();
    CHECK(nd_live_tensors() == 1);
    CHECK_VALUES(t, 0, 0, 0);
    nd_scope_end();
    CHECK(nd_live_tensors() == 0);
}

TEST(null_propagates)
{
    nd_scope_begin();
    nd_tensor *bad = nd_zeros(ND_FLOAT32, ND_SHAPE(-2));
    CHECK(bad == NULL);
    nd_status first = nd_last_status();
    CHECK(nd_add(nd_exp(bad), nd_ones(ND_FLOAT32, ND_SHAPE(2))) == NULL);
    CHECK(nd_last_status() == first);
    CHECK(nd_to_string(NULL) == NULL);
    nd_scope_end();
}

/* ------------------------------------------------------------------ printing */

TEST(print_ints_and_bools)
{
    nd_scope_begin();
    CHECK_STR(nd_from_i64((const int64_t[]){1, 2, 3}, ND_SHAPE(3)), "tensor([1, 2, 3])");
    CHECK_STR(nd_from_i64((const int64_t[]){-5, 10, 200}, ND_SHAPE(3)), "tensor([ -5,  10, 200])");
    CHECK_STR(nd_from_data((const bool[]){true, false}, ND_BOOL, ND_SHAPE(2)), "tensor([ True, False])");
    CHECK_STR(nd_from_data((const bool[]){true, true, false, true}, ND_BOOL, ND_SHAPE(2, 2)),
              "tensor([[ True,  True],\n"
              "        [False,  True]])");
    CHECK_STR(nd_zeros(ND_BOOL, ND_SHAPE(2, 3)),
              "tensor([[False, False, False],\n"
              "        [False, False, False]])");
    CHECK_STR(nd_t(nd_from_data((const bool[]){true, false, true}, ND_BOOL, ND_SHAPE(1, 3))),
              "tensor([[ True],\n"
              "        [False],\n"
              "        [ True]])");
    nd_scope_end();
}

TEST(print_int64_exact)
{
    nd_scope_begin();
    CHECK_STR(nd_from_i64((const int64_t[]){9007199254740993LL, -3}, ND_SHAPE(2)),
              "tensor([9007199254740993,               -3])");
    nd_scope_end();
}

TEST(print_float_modes)
{
    nd_scope_begin();
    CHECK_STR(nd_from_f32((const float[]){1, 2}, ND_SHAPE(2)), "tensor([1., 2.])");
    CHECK_STR(nd_zeros(ND_FLOAT32, ND_SHAPE(3)), "tensor([0., 0., 0.])");
    CHECK_STR(nd_from_f32((const float[]){0.5f, 1.25f, -3.0f}, ND_SHAPE(3)), "tensor([ 0.5000,  1.2500, -3.0000])");
    CHECK_STR(nd_from_f32((const float[]){-1.5f, 2.0f, -0.25f}, ND_SHAPE(3)), "tensor([-1.5000,  2.0000, -0.2500])");
    CHECK_STR(nd_from_f32((const float[]){0.1f, 0.2f, 1.0f / 3}, ND_SHAPE(3)), "tensor([0.1000, 0.2000, 0.3333])");
    CHECK_STR(nd_from_f32((const float[]){100, -0.5f}, ND_SHAPE(2)), "tensor([100.0000,  -0.5000])");
    CHECK_STR(nd_from_f32((const float[]){-0.0f, 1}, ND_SHAPE(2)), "tensor([-0., 1.])");
    CHECK_STR(nd_from_f64((const double[]){1.5, 2.25}, ND_SHAPE(2)), "tensor([1.5000, 2.2500], dtype=torch.float64)");
    CHECK_STR(nd_from_f64((const double[]){1, 2}, ND_SHAPE(2)), "tensor([1., 2.], dtype=torch.float64)");
    CHECK_STR(nd_mul_scalar(nd_ones(ND_FLOAT32, ND_SHAPE(1, 1, 1)), 0.5), "tensor([[[0.5000]]])");
    nd_scope_end();
}

TEST(print_sci_mode)
{
    nd_scope_begin();
    CHECK_STR(nd_from_f32((const float[]){1e-5f, 2e-5f}, ND_SHAPE(2)), "tensor([1.0000e-05, 2.0000e-05])");
    CHECK_STR(nd_from_f32((const float[]){1e9f, 2.0f}, ND_SHAPE(2)), "tensor([1.0000e+09, 2.0000e+00])");
    CHECK_STR(nd_from_f32((const float[]){0.1f, 200.0f}, ND_SHAPE(2)), "tensor([1.0000e-01, 2.0000e+02])");
    CHECK_STR(nd_from_f32((const float[]){1e9f, 1.0f}, ND_SHAPE(2)), "tensor([1.0000e+09, 1.0000e+00])");
    CHECK_STR(nd_from_f32((const float[]){1, 5000, -20}, ND_SHAPE(3)),
              "tensor([ 1.0000e+00,  5.0000e+03, -2.0000e+01])");
    CHECK_STR(nd_from_f32((const float[]){-1e-5f, 1.0f, 0.0f}, ND_SHAPE(3)),
              "tensor([-1.0000e-05,  1.0000e+00,  0.0000e+00])");
    CHECK_STR(nd_from_f64((const double[]){123456789.0, 1.0}, ND_SHAPE(2)),
              "tensor([1.2346e+08, 1.0000e+00], dtype=torch.float64)");
    nd_scope_end();
}

TEST(print_nan_inf)
{
    nd_scope_begin();
    CHECK_STR(nd_from_f32((const float[]){1, NAN, INFINITY, -INFINITY}, ND_SHAPE(4)), "tensor([1., nan, inf, -inf])");
    CHECK_STR(nd_from_f32((const float[]){0.5f, NAN, -INFINITY, 12.25f}, ND_SHAPE(4)),
              "tensor([ 0.5000,     nan,    -inf, 12.2500])");
    CHECK_STR(nd_from_f32((const float[]){NAN, NAN}, ND_SHAPE(2)), "tensor([nan, nan])");
    CHECK_STR(nd_from_f32((const float[]){1e-5f, NAN, 0.0f}, ND_SHAPE(3)), "tensor([1.0000e-05,        nan, 0.0000e+00])");
    nd_scope_end();
}

TEST(print_scalars)
{
    nd_scope_begin();
    CHECK_STR(nd_scalar(3.5, ND_FLOAT32), "tensor(3.5000)");
    CHECK_STR(nd_scalar(7, ND_INT64), "tensor(7)");
    CHECK_STR(nd_scalar(2, ND_FLOAT64), "tensor(2., dtype=torch.float64)");
    CHECK_STR(nd_scalar(1, ND_BOOL), "tensor(True)");
    CHECK_STR(nd_scalar(1e-6, ND_FLOAT32), "tensor(1.0000e-06)");
    CHECK_STR(nd_mean(nd_from_f64((const double[]){1, 2, 3, 4}, ND_SHAPE(2, 2))), "tensor(2.5000, dtype=torch.float64)");
    nd_scope_end();
}

TEST(print_multidim)
{
    nd_scope_begin();
    CHECK_STR(nd_from_f32((const float[]){1.5f, -2, 3, 4.25f}, ND_SHAPE(2, 2)),
              "tensor([[ 1.5000, -2.0000],\n"
              "        [ 3.0000,  4.2500]])");
    CHECK_STR(nd_view(nd_arange(0, 12, 1, ND_FLOAT32), ND_SHAPE(2, 2, 3)),
              "tensor([[[ 0.,  1.,  2.],\n"
              "         [ 3.,  4.,  5.]],\n"
              "\n"
              "        [[ 6.,  7.,  8.],\n"
              "         [ 9., 10., 11.]]])");
    CHECK_STR(nd_view(nd_arange(-4, 4, 1, ND_INT64), ND_SHAPE(2, 2, 2)),
              "tensor([[[-4, -3],\n"
              "         [-2, -1]],\n"
              "\n"
              "        [[ 0,  1],\n"
              "         [ 2,  3]]])");
    CHECK_STR(nd_view(nd_arange(0, 16, 1, ND_INT64), ND_SHAPE(2, 2, 2, 2)),
              "tensor([[[[ 0,  1],\n"
              "          [ 2,  3]],\n"
              "\n"
              "         [[ 4,  5],\n"
              "          [ 6,  7]]],\n"
              "\n"
              "\n"
              "        [[[ 8,  9],\n"
              "          [10, 11]],\n"
              "\n"
              "         [[12, 13],\n"
              "          [14, 15]]]])");
    nd_scope_end();
}

TEST(print_wrapping)
{
    nd_scope_begin();
    CHECK_STR(nd_mul_scalar(nd_arange(0, 30, 1, ND_FLOAT32), 1.5),
              "tensor([ 0.0000,  1.5000,  3.0000,  4.5000,  6.0000,  7.5000,  9.0000, 10.5000,\n"
              "        12.0000, 13.5000, 15.0000, 16.5000, 18.0000, 19.5000, 21.0000, 22.5000,\n"
              "        24.0000, 25.5000, 27.0000, 28.5000, 30.0000, 31.5000, 33.0000, 34.5000,\n"
              "        36.0000, 37.5000, 39.0000, 40.5000, 42.0000, 43.5000])");
    CHECK_STR(nd_add_scalar(nd_view(nd_arange(0, 40, 1, ND_FLOAT32), ND_SHAPE(2, 20)), 0.5),
              "tensor([[ 0.5000,  1.5000,  2.5000,  3.5000,  4.5000,  5.5000,  6.5000,  7.5000,\n"
              "          8.5000,  9.5000, 10.5000, 11.5000, 12.5000, 13.5000, 14.5000, 15.5000,\n"
              "         16.5000, 17.5000, 18.5000, 19.5000],\n"
              "        [20.5000, 21.5000, 22.5000, 23.5000, 24.5000, 25.5000, 26.5000, 27.5000,\n"
              "         28.5000, 29.5000, 30.5000, 31.5000, 32.5000, 33.5000, 34.5000, 35.5000,\n"
              "         36.5000, 37.5000, 38.5000, 39.5000]])");
    nd_scope_end();
}

TEST(print_summarised)
{
    nd_scope_begin();
    CHECK_STR(nd_arange(0, 2000, 1, ND_FLOAT32),
              "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n"
              "        1.9990e+03])");
    CHECK_STR(nd_view(nd_arange(0, 1200, 1, ND_INT64), ND_SHAPE(30, 40)),
              "tensor([[   0,    1,    2,  ...,   37,   38,   39],\n"
              "        [  40,   41,   42,  ...,   77,   78,   79],\n"
              "        [  80,   81,   82,  ...,  117,  118,  119],\n"
              "        ...,\n"
              "        [1080, 1081, 1082,  ..., 1117, 1118, 1119],\n"
              "        [1120, 1121, 1122,  ..., 1157, 1158, 1159],\n"
              "        [1160, 1161, 1162,  ..., 1197, 1198, 1199]])");
    CHECK_STR(nd_view(nd_arange(0, 2000, 1, ND_FLOAT32), ND_SHAPE(10, 10, 20)),
              "tensor([[[0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.7000e+01,\n"
              "          1.8000e+01, 1.9000e+01],\n"
              "         [2.0000e+01, 2.1000e+01, 2.2000e+01,  ..., 3.7000e+01,\n"
              "          3.8000e+01, 3.9000e+01],\n"
              "         [4.0000e+01, 4.1000e+01, 4.2000e+01,  ..., 5.7000e+01,\n"
              "          5.8000e+01, 5.9000e+01],\n"
              "         ...,\n"
              "         [1.4000e+02, 1.4100e+02, 1.4200e+02,  ..., 1.5700e+02,\n"
              "          1.5800e+02, 1.5900e+02],\n"
              "         [1.6000e+02, 1.6100e+02, 1.6200e+02,  ..., 1.7700e+02,\n"
              "          1.7800e+02, 1.7900e+02],\n"
              "         [1.8000e+02, 1.8100e+02, 1.8200e+02,  ..., 1.9700e+02,\n"
              "          1.9800e+02, 1.9900e+02]],\n"
              "\n"
              "        [[2.0000e+02, 2.0100e+02, 2.0200e+02,  ..., 2.1700e+02,\n"
              "          2.1800e+02, 2.1900e+02],\n"
              "         [2.2000e+02, 2.2100e+02, 2.2200e+02,  ..., 2.3700e+02,\n"
              "          2.3800e+02, 2.3900e+02],\n"
              "         [2.4000e+02, 2.4100e+02, 2.4200e+02,  ..., 2.5700e+02,\n"
              "          2.5800e+02, 2.5900e+02],\n"
              "         ...,\n"
              "         [3.4000e+02, 3.4100e+02, 3.4200e+02,  ..., 3.5700e+02,\n"
              "          3.5800e+02, 3.5900e+02],\n"
              "         [3.6000e+02, 3.6100e+02, 3.6200e+02,  ..., 3.7700e+02,\n"
              "          3.7800e+02, 3.7900e+02],\n"
              "         [3.8000e+02, 3.8100e+02, 3.8200e+02,  ..., 3.9700e+02,\n"
              "          3.9800e+02, 3.9900e+02]],\n"
              "\n"
              "        [[4.0000e+02, 4.0100e+02, 4.0200e+02,  ..., 4.1700e+02,\n"
              "          4.1800e+02, 4.1900e+02],\n"
              "         [4.2000e+02, 4.2100e+02, 4.2200e+02,  ..., 4.3700e+02,\n"
              "          4.3800e+02, 4.3900e+02],\n"
              "         [4.4000e+02, 4.4100e+02, 4.4200e+02,  ..., 4.5700e+02,\n"
              "          4.5800e+02, 4.5900e+02],\n"
              "         ...,\n"
              "         [5.4000e+02, 5.4100e+02, 5.4200e+02,  ..., 5.5700e+02,\n"
              "          5.5800e+02, 5.5900e+02],\n"
              "         [5.6000e+02, 5.6100e+02, 5.6200e+02,  ..., 5.7700e+02,\n"
              "          5.7800e+02, 5.7900e+02],\n"
              "         [5.8000e+02, 5.8100e+02, 5.8200e+02,  ..., 5.9700e+02,\n"
              "          5.9800e+02, 5.9900e+02]],\n"
              "\n"
              "        ...,\n"
              "\n"
              "        [[1.4000e+03, 1.4010e+03, 1.4020e+03,  ..., 1.4170e+03,\n"
              "          1.4180e+03, 1.4190e+03],\n"
              "         [1.4200e+03, 1.4210e+03, 1.4220e+03,  ..., 1.4370e+03,\n"
              "          1.4380e+03, 1.4390e+03],\n"
              "         [1.4400e+03, 1.4410e+03, 1.4420e+03,  ..., 1.4570e+03,\n"
              "          1.4580e+03, 1.4590e+03],\n"
              "         ...,\n"
              "         [1.5400e+03, 1.5410e+03, 1.5420e+03,  ..., 1.5570e+03,\n"
              "          1.5580e+03, 1.5590e+03],\n"
              "         [1.5600e+03, 1.5610e+03, 1.5620e+03,  ..., 1.5770e+03,\n"
              "          1.5780e+03, 1.5790e+03],\n"
              "         [1.5800e+03, 1.5810e+03, 1.5820e+03,  ..., 1.5970e+03,\n"
              "          1.5980e+03, 1.5990e+03]],\n"
              "\n"
              "        [[1.6000e+03, 1.6010e+03, 1.6020e+03,  ..., 1.6170e+03,\n"
              "          1.6180e+03, 1.6190e+03],\n"
              "         [1.6200e+03, 1.6210e+03, 1.6220e+03,  ..., 1.6370e+03,\n"
              "          1.6380e+03, 1.6390e+03],\n"
              "         [1.6400e+03, 1.6410e+03, 1.6420e+03,  ..., 1.6570e+03,\n"
              "          1.6580e+03, 1.6590e+03],\n"
              "         ...,\n"
              "         [1.7400e+03, 1.7410e+03, 1.7420e+03,  ..., 1.7570e+03,\n"
              "          1.7580e+03, 1.7590e+03],\n"
              "         [1.7600e+03, 1.7610e+03, 1.7620e+03,  ..., 1.7770e+03,\n"
              "          1.7780e+03, 1.7790e+03],\n"
              "         [1.7800e+03, 1.7810e+03, 1.7820e+03,  ..., 1.7970e+03,\n"
              "          1.7980e+03, 1.7990e+03]],\n"
              "\n"
              "        [[1.8000e+03, 1.8010e+03, 1.8020e+03,  ..., 1.8170e+03,\n"
              "          1.8180e+03, 1.8190e+03],\n"
              "         [1.8200e+03, 1.8210e+03, 1.8220e+03,  ..., 1.8370e+03,\n"
              "          1.8380e+03, 1.8390e+03],\n"
              "         [1.8400e+03, 1.8410e+03, 1.8420e+03,  ..., 1.8570e+03,\n"
              "          1.8580e+03, 1.8590e+03],\n"
              "         ...,\n"
              "         [1.9400e+03, 1.9410e+03, 1.9420e+03,  ..., 1.9570e+03,\n"
              "          1.9580e+03, 1.9590e+03],\n"
              "         [1.9600e+03, 1.9610e+03, 1.9620e+03,  ..., 1.9770e+03,\n"
              "          1.9780e+03, 1.9790e+03],\n"
              "         [1.9800e+03, 1.9810e+03, 1.9820e+03,  ..., 1.9970e+03,\n"
              "          1.9980e+03, 1.9990e+03]]])");
    nd_scope_end();
}

TEST(print_empty)
{
    nd_scope_begin();
    CHECK_STR(nd_zeros(ND_FLOAT32, ND_SHAPE(0)), "tensor([])");
    CHECK_STR(nd_zeros(ND_FLOAT32, ND_SHAPE(0, 3)), "tensor([], size=(0, 3))");
    CHECK_STR(nd_zeros(ND_INT64, ND_SHAPE(0)), "tensor([], dtype=torch.int64)");
    CHECK_STR(nd_zeros(ND_FLOAT64, ND_SHAPE(2, 0)), "tensor([], size=(2, 0), dtype=torch.float64)");
    CHECK_STR(nd_zeros(ND_FLOAT32, ND_SHAPE(2, 0, 3)), "tensor([], size=(2, 0, 3))");
    nd_scope_end();
}

TEST(print_requires_grad)
{
    nd_scope_begin();
    nd_tensor *l = nd_from_f32((const float[]){1, 2, 3, 4}, ND_SHAPE(2, 2));
    nd_set_requires_grad(l, true);
    CHECK_STR(l, "tensor([[1., 2.],\n"
                 "        [3., 4.]], requires_grad=True)");
    nd_tensor *l64 = nd_from_f64((const double[]){1, 2}, ND_SHAPE(2));
    nd_set_requires_grad(l64, true);
    CHECK_STR(l64, "tensor([1., 2.], dtype=torch.float64, requires_grad=True)");
    nd_tensor *l5 = nd_from_f32((const float[]){1.25f, 2.5f, 3.75f, 5.0f, 6.25f}, ND_SHAPE(5));
    nd_set_requires_grad(l5, true);
    CHECK_STR(l5, "tensor([1.2500, 2.5000, 3.7500, 5.0000, 6.2500], requires_grad=True)");
    nd_tensor *l6 = nd_from_f32((const float[]){1.25f, 2.5f, 3.75f, 5.0f, 6.25f, 7.5f}, ND_SHAPE(6));
    nd_set_requires_grad(l6, true);
    CHECK_STR(l6, "tensor([1.2500, 2.5000, 3.7500, 5.0000, 6.2500, 7.5000], requires_grad=True)");
    /* Under no_grad, results carry no grad_fn and print plainly. */
    nd_no_grad_begin();
    CHECK_STR(nd_add(l64, l64), "tensor([2., 4.], dtype=torch.float64)");
    nd_no_grad_end();
    /* A detached tensor prints without requires_grad. */
    CHECK_STR(nd_detach(l64), "tensor([1., 2.], dtype=torch.float64)");
    nd_scope_end();
}

TEST(print_grad_fn)
{
    nd_scope_begin();
    nd_tensor *a = nd_from_f32((const float[]){1, 2, 3}, ND_SHAPE(3));
    nd_set_requires_grad(a, true);
    nd_tensor *b = nd_from_f32((const float[]){4, 5, 6}, ND_SHAPE(3));
    nd_tensor *m = nd_from_f32((const float[]){1, 2, 3, 4}, ND_SHAPE(2, 2));
    nd_set_requires_grad(m, true);
    nd_tensor *col = nd_from_f32((const float[]){1, 2}, ND_SHAPE(2, 1));
    nd_set_requires_grad(col, true);
    nd_tensor *r = nd_from_f32((const float[]){-1, 2}, ND_SHAPE(2));
    nd_set_requires_grad(r, true);

    CHECK_STR(nd_add(a, b), "tensor([5., 7., 9.], grad_fn=<AddBackward0>)");
    CHECK_STR(nd_mul(a, b), "tensor([ 4., 10., 18.], grad_fn=<MulBackward0>)");
    CHECK_STR(nd_sum(nd_mul(a, b)), "tensor(32., grad_fn=<SumBackward0>)");
    CHECK_STR(nd_mean(a), "tensor(2., grad_fn=<MeanBackward0>)");
    CHECK_STR(nd_mm(m, m), "tensor([[ 7., 10.],\n"
                           "        [15., 22.]], grad_fn=<MmBackward0>)");
    CHECK_STR(nd_relu(r), "tensor([0., 2.], grad_fn=<ReluBackward0>)");
    CHECK_STR(nd_view(m, ND_SHAPE(4)), "tensor([1., 2., 3., 4.], grad_fn=<ViewBackward0>)");
    CHECK_STR(nd_transpose(m, 0, 1), "tensor([[1., 3.],\n"
                                     "        [2., 4.]], grad_fn=<TransposeBackward0>)");
    CHECK_STR(nd_t(m), "tensor([[1., 3.],\n"
                       "        [2., 4.]], grad_fn=<TBackward0>)");
    CHECK_STR(nd_expand(col, ND_SHAPE(2, 3)), "tensor([[1., 1., 1.],\n"
                                              "        [2., 2., 2.]], grad_fn=<ExpandBackward0>)");
    /* nd_grad_fn_name agrees */
    const char *name = nd_grad_fn_name(nd_add(a, b));
    CHECK(name && strcmp(name, "AddBackward0") == 0);
    name = nd_grad_fn_name(nd_mul_scalar(a, 2));
    CHECK(name && strcmp(name, "MulBackward0") == 0);
    CHECK(nd_grad_fn_name(a) == NULL);
    nd_scope_end();
}

TEST(print_suffix_wraps)
{
    nd_scope_begin();
    nd_tensor *x = nd_add_scalar(nd_arange(0, 8, 1, ND_FLOAT32), 0.125);
    nd_set_requires_grad(x, true);
    CHECK_STR(nd_mul_scalar(x, 2),
              "tensor([ 0.2500,  2.2500,  4.2500,  6.2500,  8.2500, 10.2500, 12.2500, 14.2500],\n"
              "       grad_fn=<MulBackward0>)");
    nd_tensor *y = nd_reshape(nd_arange(0, 9, 1, ND_FLOAT64), ND_SHAPE(1, 9));
    nd_set_requires_grad(y, true);
    CHECK_STR(nd_add_scalar(y, 0.5),
              "tensor([[0.5000, 1.5000, 2.5000, 3.5000, 4.5000, 5.5000, 6.5000, 7.5000, 8.5000]],\n"
              "       dtype=torch.float64, grad_fn=<AddBackward0>)");
    nd_scope_end();
}

TEST(print_suffix_wrap_boundary)
{
    /* The line length limit at its exact boundary: torch.ones(12/13, requires_grad=True). */
    nd_scope_begin();
    nd_tensor *o12 = nd_ones(ND_FLOAT32, ND_SHAPE(12));
    nd_set_requires_grad(o12, true);
    CHECK_STR(o12, "tensor([1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1.], requires_grad=True)");
    nd_tensor *o13 = nd_ones(ND_FLOAT32, ND_SHAPE(13));
    nd_set_requires_grad(o13, true);
    CHECK_STR(o13, "tensor([1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1.],\n"
                   "       requires_grad=True)");
    nd_tensor *o11 = nd_ones(ND_FLOAT32, ND_SHAPE(11));
    nd_set_requires_grad(o11, true);
    CHECK_STR(nd_mul_scalar(o11, 2), "tensor([2., 2., 2., 2., 2., 2., 2., 2., 2., 2., 2.], grad_fn=<MulBackward0>)");
    CHECK_STR(nd_mul_scalar(o12, 2), "tensor([2., 2., 2., 2., 2., 2., 2., 2., 2., 2., 2., 2.],\n"
                                     "       grad_fn=<MulBackward0>)");
    nd_scope_end();
}

TEST(print_noncontiguous)
{
    nd_scope_begin();
    nd_tensor *t = nd_t(nd_view(nd_arange(0, 6, 1, ND_FLOAT32), ND_SHAPE(2, 3)));
    CHECK(!nd_is_contiguous(t));
    CHECK_STR(t, "tensor([[0., 3.],\n"
                 "        [1., 4.],\n"
                 "        [2., 5.]])");
    CHECK_STR(nd_slice(t, 0, 1, 3, 1), "tensor([[1., 4.],\n"
                                       "        [2., 5.]])");
    nd_scope_end();
}

TEST(print_and_fprint)
{
    nd_scope_begin();
    FILE *f = tmpfile();
    CHECK(f != NULL);
    if (f) {
        CHECK_STATUS(nd_fprint(f, nd_from_i64((const int64_t[]){1, 2}, ND_SHAPE(2))), ND_OK);
        rewind(f);
        char buf[64] = {0};
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        CHECK(strcmp(buf, "tensor([1, 2])\n") == 0);
        fclose(f);
    }
    nd_scope_end();
}

/* The reference values of nd_manual_seed (documented in ndgrad.h and the README): the same seed
 * gives these numbers on every machine, compiler, vector level and thread. Uniforms are integer
 * arithmetic, so they must match to the bit; normals go through libm's log, sin and cos, so they
 * may differ in the last bit of a float64 between C libraries (1e-15 relative allowed). */
static const double SEED0_RAND_F64[4] = {0.60126299941790484, 0.74777409254723981, 0.10301998939503632, 0.4165890778296456};
static const double SEED0_RANDN_F64[4] = {1.6251100012755157, -0.0025686863690826036, -1.0212488312794932,
                                          -0.23269227649071378};
static const float SEED0_RAND_F32[4] = {0.855517149f, 0.918857992f, 0.11429745f, 0.0672318339f};
static const float SEED0_RANDN_F32[3] = {-0.267391711f, -0.392569155f, -0.33625254f};

/* Draws the documented sequence after nd_manual_seed(0); counts the elements that differ. */
static int seed0_mismatches(void)
{
    int bad = 0;
    nd_scope_begin();
    nd_manual_seed(0);
    nd_tensor *u = nd_rand(ND_FLOAT64, ND_SHAPE(4)), *n = nd_randn(ND_FLOAT64, ND_SHAPE(4));
    nd_tensor *uf = nd_rand(ND_FLOAT32, ND_SHAPE(4)), *nf = nd_randn(ND_FLOAT32, ND_SHAPE(3));
    double d[4];
    float f[4];
    if (nd_copy_out(u, d, sizeof d, ND_FLOAT64) != ND_OK)
        bad++;
    for (int i = 0; i < 4; i++)
        bad += d[i] != SEED0_RAND_F64[i];
    if (nd_copy_out(n, d, sizeof d, ND_FLOAT64) != ND_OK)
        bad++;
    for (int i = 0; i < 4; i++)
        bad += !(fabs(d[i] - SEED0_RANDN_F64[i]) <= 1e-15 * fabs(SEED0_RANDN_F64[i]));
    if (nd_copy_out(uf, f, sizeof f, ND_FLOAT32) != ND_OK)
        bad++;
    for (int i = 0; i < 4; i++)
        bad += f[i] != SEED0_RAND_F32[i];
    if (nd_copy_out(nf, f, 3 * sizeof(float), ND_FLOAT32) != ND_OK)
        bad++;
    for (int i = 0; i < 3; i++)
        bad += f[i] != SEED0_RANDN_F32[i];
    nd_scope_end();
    return bad;
}

static void *seed0_in_thread(void *out)
{
    *(int *)out = seed0_mismatches();
    return NULL;
}

/* index_select / index_add / embedding move whole rows when the index runs along an outer dim:
 * every dtype, repeated indices summing in order, and the element-by-element path beside it. */
TEST(index_ops_by_rows_every_dtype)
{
    nd_scope_begin();
    nd_tensor *idx = nd_from_i64((const int64_t[]){2, 0, 2}, ND_SHAPE(3));
    nd_tensor *a = nd_from_i64((const int64_t[]){1, 2, 3, 4, 5, 6}, ND_SHAPE(3, 2));
    CHECK_VALUES(nd_index_select(a, 0, idx), 0, 5, 6, 1, 2, 5, 6);
    CHECK_VALUES(nd_index_select(a, 1, nd_from_i64((const int64_t[]){1, 1}, ND_SHAPE(2))), 0, 2, 2, 4, 4, 6, 6);
    nd_tensor *src = nd_from_i64((const int64_t[]){10, 20, 30, 40, 50, 60}, ND_SHAPE(3, 2));
    CHECK_VALUES(nd_index_add(a, 0, idx, src), 0, 31, 42, 3, 4, 65, 86); /* row 2 gets 10,20 and 50,60 */
    uint8_t bits[6] = {1, 0, 0, 0, 0, 1};
    nd_tensor *b = nd_from_data(bits, ND_BOOL, ND_SHAPE(3, 2));
    CHECK_VALUES(nd_index_select(b, 0, idx), 0, 0, 1, 1, 0, 0, 1);
    nd_tensor *bsrc = nd_from_data((const uint8_t[]){0, 1, 0, 0, 1, 0}, ND_BOOL, ND_SHAPE(3, 2));
    CHECK_VALUES(nd_index_add(b, 0, idx, bsrc), 0, 1, 0, 0, 0, 1, 1); /* or, as PyTorch */
    nd_tensor *w = nd_from_f64((const double[]){0.5, 1.5, 2.5, 3.5, 4.5, 5.5}, ND_SHAPE(3, 2));
    CHECK_VALUES(nd_embedding(w, nd_from_i64((const int64_t[]){1, 1, 0, 2}, ND_SHAPE(2, 2))), 0, 2.5, 3.5, 2.5, 3.5,
                 0.5, 1.5, 4.5, 5.5);
    CHECK_VALUES(nd_index_add(nd_to(w, ND_FLOAT32), 0, idx, nd_to(w, ND_FLOAT32)), 0, 3, 5, 2.5, 3.5, 9.5, 12.5);
    nd_scope_end();
}

TEST(manual_seed_gives_the_documented_numbers)
{
    CHECK(seed0_mismatches() == 0);
    CHECK(seed0_mismatches() == 0); /* reseeding starts the same sequence again */
    /* Each thread has its own generator: seeded alike, it draws alike. */
    int in_thread = -1;
    pthread_t th;
    CHECK(pthread_create(&th, NULL, seed0_in_thread, &in_thread) == 0);
    pthread_join(th, NULL);
    CHECK(in_thread == 0);
}

void run_suite(void)
{
    RUN(dtype_sizes_and_names);
    RUN(index_ops_by_rows_every_dtype);
    RUN(manual_seed_gives_the_documented_numbers);
    RUN(dtype_of_created_tensors);
    RUN(up_to_eight_dims);
    RUN(nine_dims_refused);
    RUN(from_data_copies_the_array);
    RUN(zeros_ones_full_scalar);
    RUN(arange_like_torch);
    RUN(eye_square_and_rectangular);
    RUN(rand_in_unit_interval);
    RUN(randn_mean_and_std);
    RUN(manual_seed_reproducible);
    RUN(seed_same_in_another_thread);
    RUN(generator_is_per_thread);
    RUN(like_variants);
    RUN(get_set_item);
    RUN(set_on_leaf_requiring_grad);
    RUN(contiguous_and_clone);
    RUN(dtype_conversion);
    RUN(int64_values_exact);
    RUN(copy_out_and_copy_in);
    RUN(is_contiguous_cases);
    RUN(keep_out_of_scope);
    RUN(keep_view_keeps_storage);
    RUN(nested_scopes);
    RUN(outside_scope_needs_release);
    RUN(release_of_scope_owned_refused);
    RUN(null_propagates);
    RUN(print_ints_and_bools);
    RUN(print_int64_exact);
    RUN(print_float_modes);
    RUN(print_sci_mode);
    RUN(print_nan_inf);
    RUN(print_scalars);
    RUN(print_multidim);
    RUN(print_wrapping);
    RUN(print_summarised);
    RUN(print_empty);
    RUN(print_requires_grad);
    RUN(print_grad_fn);
    RUN(print_suffix_wraps);
    RUN(print_suffix_wrap_boundary);
    RUN(print_noncontiguous);
    RUN(print_and_fprint);
}

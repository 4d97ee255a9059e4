/* Threads: results do not depend on the thread count, the pool is configurable and safe to use
 * from several caller threads, every chunk of a region runs once, and optimizer state flushes
 * denormals instead of going subnormal. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"
#include "backend/cpu/threads.h"

#include <float.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

static double *values(nd_tensor *t, int64_t *n)
{
    *n = nd_numel(t);
    double *v = malloc((size_t)*n * sizeof *v + 1);
    nd_copy_out(t, v, (size_t)*n * sizeof *v, ND_FLOAT64);
    return v;
}

/* The same computation at 1 and 2 threads, compared bit for bit. */
static bool same_at_1_and_2(nd_tensor *(*compute)(void))
{
    double *r[2];
    int64_t n[2];
    for (int t = 1; t <= 2; t++) {
        nd_set_num_threads(t);
        nd_scope_begin();
        nd_manual_seed(11);
        nd_tensor *out = compute();
        r[t - 1] = out ? values(out, &n[t - 1]) : NULL;
        nd_scope_end();
    }
    nd_set_num_threads(2);
    bool same = r[0] && r[1] && n[0] == n[1] && memcmp(r[0], r[1], (size_t)n[0] * sizeof(double)) == 0;
    free(r[0]);
    free(r[1]);
    return same;
}

static nd_tensor *big_matmul(void)
{
    nd_tensor *a = nd_randn(ND_FLOAT32, ND_SHAPE(301, 517)), *b = nd_randn(ND_FLOAT32, ND_SHAPE(517, 263));
    return nd_mm(a, b);
}

static nd_tensor *transposed_matmul(void)
{
    nd_tensor *a = nd_randn(ND_FLOAT64, ND_SHAPE(400, 300)), *b = nd_randn(ND_FLOAT64, ND_SHAPE(200, 400));
    return nd_mm(nd_t(a), nd_t(b));
}

static nd_tensor *batched(void)
{
    nd_tensor *a = nd_randn(ND_FLOAT32, ND_SHAPE(3, 130, 70)), *b = nd_randn(ND_FLOAT32, ND_SHAPE(3, 70, 90));
    return nd_bmm(a, b);
}

static nd_tensor *training_steps(void)
{
    nd_tensor *w = nd_mul_scalar(nd_randn(ND_FLOAT32, ND_SHAPE(784, 256)), 0.05);
    nd_tensor *v = nd_mul_scalar(nd_randn(ND_FLOAT32, ND_SHAPE(256, 10)), 0.05);
    nd_set_requires_grad(w, true);
    nd_set_requires_grad(v, true);
    nd_tensor *x = nd_rand(ND_FLOAT32, ND_SHAPE(128, 784));
    int64_t lab[128];
    for (int i = 0; i < 128; i++)
        lab[i] = (i * 7) % 10;
    nd_tensor *y = nd_from_i64(lab, ND_SHAPE(128));
    nd_tensor *params[2] = {w, v};
    nd_optimizer *opt = nd_adam_new(2, params, 1e-2, 0.9, 0.999, 1e-8, 0);
    for (int s = 0; s < 5; s++) {
        nd_scope_begin();
        nd_backward(nd_cross_entropy(nd_matmul(nd_relu(nd_matmul(x, w)), v), y, NULL, -100, ND_REDUCTION_MEAN, 0));
        nd_optimizer_step(opt);
        nd_optimizer_zero_grad(opt);
        nd_scope_end();
    }
    nd_optimizer_free(opt);
    return nd_cat(2, (nd_tensor *[]){nd_flatten(w, 0, -1), nd_flatten(v, 0, -1)}, 0);
}

/* The fused attention forward and backward: slices go to different threads at 2 threads. */
static nd_tensor *attention(void)
{
    nd_tensor *qkv = nd_randn(ND_FLOAT32, ND_SHAPE(3, 40, 3 * 32));
    nd_set_requires_grad(qkv, true);
    nd_tensor *heads[3];
    for (int i = 0; i < 3; i++)
        heads[i] = nd_transpose(nd_reshape(nd_narrow(qkv, 2, i * 32, 32), ND_SHAPE(3, 40, 4, 8)), 1, 2);
    nd_tensor *out = nd_scaled_dot_product_attention(heads[0], heads[1], heads[2], NULL, 0.0, true, 0.0);
    if (nd_backward(nd_sum(nd_square(out))) != ND_OK)
        return NULL;
    return nd_cat(2, (nd_tensor *[]){nd_flatten(out, 0, -1), nd_flatten(nd_grad(qkv), 0, -1)}, 0);
}

/* conv2d (image by image, weight gradient in fixed chunks) and max pooling, forward and backward. */
static nd_tensor *convolution(void)
{
    nd_tensor *x = nd_randn(ND_FLOAT32, ND_SHAPE(21, 3, 12, 12));
    nd_tensor *w = nd_randn(ND_FLOAT32, ND_SHAPE(8, 3, 3, 3)), *b = nd_randn(ND_FLOAT32, ND_SHAPE(8));
    nd_set_requires_grad(x, true);
    nd_set_requires_grad(w, true);
    nd_set_requires_grad(b, true);
    nd_tensor *y = nd_max_pool2d(nd_relu(nd_conv2d(x, w, b, (const int64_t[]){1, 1}, (const int64_t[]){1, 1},
                                                   (const int64_t[]){1, 1}, 1)),
                                 (const int64_t[]){2, 2}, NULL, (const int64_t[]){0, 0}, NULL);
    if (nd_backward(nd_sum(nd_square(y))) != ND_OK)
        return NULL;
    return nd_cat(4, (nd_tensor *[]){nd_flatten(y, 0, -1), nd_flatten(nd_grad(x), 0, -1), nd_flatten(nd_grad(w), 0, -1),
                                     nd_grad(b)}, 0);
}

TEST(results_do_not_depend_on_the_thread_count)
{
    CHECK(same_at_1_and_2(convolution));
    CHECK(same_at_1_and_2(attention));
    CHECK(same_at_1_and_2(big_matmul));
    CHECK(same_at_1_and_2(transposed_matmul));
    CHECK(same_at_1_and_2(batched));
    CHECK(same_at_1_and_2(training_steps));
}

TEST(thread_count_is_configurable)
{
    CHECK(nd_set_num_threads(0) == ND_ERR_VALUE);
    CHECK(nd_set_num_threads(100000) == ND_ERR_VALUE);
    CHECK(nd_set_num_threads(3) == ND_OK && nd_get_num_threads() == 3);
    nd_scope_begin();
    nd_tensor *a = nd_randn(ND_FLOAT32, ND_SHAPE(200, 200));
    nd_tensor *c3 = nd_mm(a, a);
    nd_set_num_threads(1);
    nd_tensor *c1 = nd_mm(a, a);
    CHECK(nd_item(nd_sum(nd_ne(c1, c3))) == 0);
    nd_scope_end();
    nd_set_num_threads(2);
}

static void *caller(void *arg)
{
    nd_scope_begin();
    nd_manual_seed((uint64_t)(intptr_t)arg);
    nd_tensor *a = nd_randn(ND_FLOAT32, ND_SHAPE(180, 180));
    nd_tensor *c = nd_mm(a, a);
    /* Compare with a product computed element by element. */
    double got, want = 0;
    int64_t idx[2] = {17, 101};
    nd_get(c, idx, &got);
    for (int64_t k = 0; k < 180; k++) {
        double x, y;
        nd_get(a, (const int64_t[]){17, k}, &x);
        nd_get(a, (const int64_t[]){k, 101}, &y);
        want += x * y;
    }
    nd_scope_end();
    return (void *)(intptr_t)(fabs(got - want) < 1e-3);
}

TEST(several_callers_share_the_pool_safely)
{
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, caller, (void *)(intptr_t)(i + 1));
    for (int i = 0; i < 4; i++) {
        void *ok;
        pthread_join(th[i], &ok);
        CHECK(ok == (void *)1);
    }
}

/* Every region runs each chunk exactly once, over the fixed range n*c/k .. n*(c+1)/k, with
 * back-to-back regions and with idle gaps long enough for workers to sleep. */
typedef struct chunk_log {
    atomic_int runs[64];
    atomic_int bad_range;
    int64_t n;
    int chunks;
} chunk_log;

static void log_chunk(void *ctx, int64_t begin, int64_t end, int chunk)
{
    chunk_log *l = ctx;
    atomic_fetch_add(&l->runs[chunk], 1);
    if (begin != l->n * chunk / l->chunks || end != l->n * (chunk + 1) / l->chunks)
        atomic_store(&l->bad_range, 1);
}

TEST(every_chunk_runs_once)
{
    int before = nd_get_num_threads();
    CHECK(nd_set_num_threads(2) == ND_OK);
    for (int region = 0; region < 3000; region++) {
        chunk_log l = {.n = 1000 + region % 7, .chunks = nd_parallel_chunks(1000 + region % 7, 1)};
        if (region % 500 == 0) /* let the workers go to sleep */
            nanosleep(&(struct timespec){0, 5000000}, NULL);
        nd_parallel_for(l.n, 1, log_chunk, &l);
        for (int c = 0; c < l.chunks; c++)
            CHECK(atomic_load(&l.runs[c]) == 1);
        CHECK(!atomic_load(&l.bad_range));
    }
    CHECK(nd_set_num_threads(before) == ND_OK);
}

TEST(adam_state_flushes_denormals)
{
    /* One gradient, then many zero gradients: the first moment decays by beta1 every step and
     * would go subnormal after ~800 steps; with flush-to-zero it becomes exactly 0 instead. */
    nd_tensor *w = nd_ones(ND_FLOAT32, ND_SHAPE(4));
    nd_set_requires_grad(w, true);
    nd_optimizer *opt = nd_adam_new(1, &w, 1e-3, 0.9, 0.999, 1e-8, 0);
    nd_param_list *state = nd_params_new();
    nd_optimizer_state(opt, "opt", state);
    for (int s = 0; s < 1000; s++) {
        nd_scope_begin();
        nd_tensor *loss = nd_sum(nd_mul_scalar(w, s == 0 ? 1.0 : 0.0));
        nd_backward(loss);
        nd_optimizer_step(opt);
        nd_optimizer_zero_grad(opt);
        nd_scope_end();
    }
    nd_tensor *m = nd_params_find(state, "opt.0.exp_avg");
    float v[4];
    nd_copy_out(m, v, sizeof v, ND_FLOAT32);
    for (int i = 0; i < 4; i++)
        CHECK(v[i] == 0.0f || fabsf(v[i]) >= FLT_MIN);
    nd_params_free(state);
    nd_optimizer_free(opt);
    nd_release(w);
}

void run_suite(void)
{
    RUN(results_do_not_depend_on_the_thread_count);
    RUN(thread_count_is_configurable);
    RUN(several_callers_share_the_pool_safely);
    RUN(every_chunk_runs_once);
    RUN(adam_state_flushes_denormals);
}

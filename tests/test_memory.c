/* Memory rules: scopes free everything they own, kept tensors survive, and a training loop of
 * 10,000 steps keeps its live-object counts and its resident memory flat. */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

/* AddressSanitizer holds freed memory in quarantine, so RSS says nothing about leaks there. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_MEANINGFUL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_MEANINGFUL 0
#endif
#endif
#ifndef RSS_MEANINGFUL
#define RSS_MEANINGFUL 1
#endif

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

TEST(chained_expression_in_scope_leaks_nothing)
{
    int64_t before = nd_live_tensors();
    nd_scope_begin();
    nd_tensor *x = nd_randn(ND_FLOAT32, ND_SHAPE(8, 4));
    nd_tensor *w = nd_randn(ND_FLOAT32, ND_SHAPE(4, 3));
    nd_set_requires_grad(w, true);
    nd_tensor *loss = nd_sum(nd_relu(nd_matmul(x, w)));
    CHECK(nd_backward(loss) == ND_OK);
    CHECK(nd_live_tensors() > before);
    nd_scope_end();
    CHECK(nd_live_tensors() == before);
}

TEST(results_outside_a_scope_are_owned_by_the_caller)
{
    /* Outside any scope every result is the caller's: one nd_release per result. */
    nd_tensor *a = nd_randn(ND_FLOAT64, ND_SHAPE(3, 3));
    nd_tensor *at = nd_t(a);
    nd_tensor *b = nd_matmul(a, at);
    CHECK(b != NULL);
    nd_release(a);   /* b's graph does not hold a (no grad needed), at still views a's storage */
    nd_release(b);
    CHECK(nd_live_tensors() == 1 && nd_live_storages() == 1);
    nd_release(at);
}

TEST(kept_tensor_survives_its_scope)
{
    nd_tensor *kept;
    nd_scope_begin();
    nd_tensor *x = nd_from_f32((const float[]){1, 2, 3}, ND_SHAPE(3));
    kept = nd_keep(nd_mul_scalar(x, 2));
    nd_scope_end();
    CHECK_VALUES(kept, 0, 2, 4, 6);
    nd_release(kept);
}

TEST(nested_scopes_free_in_order)
{
    nd_scope_begin();
    nd_tensor *outer = nd_ones(ND_FLOAT32, ND_SHAPE(2));
    int64_t mid = nd_live_tensors();
    nd_scope_begin();
    nd_tensor *inner = nd_add(outer, outer);
    CHECK(inner != NULL);
    nd_scope_end();
    CHECK(nd_live_tensors() == mid);
    CHECK_VALUES(outer, 0, 1, 1);
    nd_scope_end();
}

typedef struct loop_result {
    bool counts_flat;
    double first_loss, last_loss;
    long rss_at_1000, rss_at_end; /* kB */
} loop_result;

/* 10,000 steps of a 2-16-1 tanh MLP fitted to y = x0 * x1 with plain SGD. */
static loop_result training_loop(void)
{
    loop_result r = {true, 0, 0, 0, 0};
    nd_manual_seed(1);
    nd_scope_begin();
    nd_tensor *params[4] = {
        nd_keep(nd_mul_scalar(nd_randn(ND_FLOAT32, ND_SHAPE(2, 16)), 0.5)),
        nd_keep(nd_zeros(ND_FLOAT32, ND_SHAPE(16))),
        nd_keep(nd_mul_scalar(nd_randn(ND_FLOAT32, ND_SHAPE(16, 1)), 0.5)),
        nd_keep(nd_zeros(ND_FLOAT32, ND_SHAPE(1))),
    };
    nd_scope_end();
    nd_tensor *w1 = params[0], *b1 = params[1], *w2 = params[2], *b2 = params[3];
    for (int i = 0; i < 4; i++)
        nd_set_requires_grad(params[i], true);
    int64_t counts_at_100 = -1;
    for (int step = 0; step < 10000; step++) {
        nd_scope_begin();
        nd_tensor *x = nd_sub_scalar(nd_mul_scalar(nd_rand(ND_FLOAT32, ND_SHAPE(32, 2)), 2), 1);
        nd_tensor *y = nd_mul(nd_select(x, 1, 0), nd_select(x, 1, 1));
        nd_tensor *h = nd_tanh(nd_add(nd_matmul(x, w1), b1));
        nd_tensor *pred = nd_squeeze_dim(nd_add(nd_matmul(h, w2), b2), 1);
        nd_tensor *err = nd_sub(pred, y);
        nd_tensor *loss = nd_mean(nd_mul(err, err));
        if (!loss || nd_backward(loss) != ND_OK) {
            CHECK(false);
            nd_scope_end();
            break;
        }
        if (step == 0)
            r.first_loss = nd_item(loss);
        r.last_loss = nd_item(loss);
        nd_no_grad_begin();
        for (int i = 0; i < 4; i++) {
            nd_sub_(params[i], nd_mul_scalar(nd_grad(params[i]), 0.1));
            nd_zero_grad(params[i]);
        }
        nd_no_grad_end();
        nd_scope_end();
        int64_t live = nd_live_tensors() + nd_live_storages() + nd_live_nodes();
        if (step == 100)
            counts_at_100 = live;
        if (step > 100 && live != counts_at_100) {
            fprintf(stderr, "  live objects changed at step %d: %lld vs %lld\n", step, (long long)live,
                    (long long)counts_at_100);
            r.counts_flat = false;
            break;
        }
        if (step == 1000)
            r.rss_at_1000 = rss_kb();
    }
    r.rss_at_end = rss_kb();
    for (int i = 0; i < 4; i++)
        nd_release(params[i]);
    return r;
}

TEST(training_loop_keeps_counts_flat)
{
    loop_result r = training_loop();
    printf("  training loop: loss %.4f -> %.4f\n", r.first_loss, r.last_loss);
    CHECK(r.counts_flat);
    CHECK(r.last_loss < r.first_loss * 0.2);
}

TEST(training_loop_keeps_rss_flat)
{
    if (!RSS_MEANINGFUL)
        SKIP("AddressSanitizer keeps freed memory in quarantine, so resident memory says nothing here");
    loop_result r = training_loop();
    printf("  training loop: RSS %ld kB at step 1000, %ld kB at step 10000\n", r.rss_at_1000, r.rss_at_end);
    CHECK(r.rss_at_1000 > 0 && r.rss_at_end > 0);
    CHECK(r.rss_at_end - r.rss_at_1000 < 1024); /* flat: less than 1 MB of drift over 9,000 steps */
}

void run_suite(void)
{
    RUN(chained_expression_in_scope_leaks_nothing);
    RUN(results_outside_a_scope_are_owned_by_the_caller);
    RUN(kept_tensor_survives_its_scope);
    RUN(nested_scopes_free_in_order);
    RUN(training_loop_keeps_counts_flat);
    RUN(training_loop_keeps_rss_flat);
}

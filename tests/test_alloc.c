/* Zero-allocation steady state: after the first steps, a training step (forward, backward,
 * optimizer) calls malloc zero times. This binary replaces malloc and friends with counting
 * versions that forward to glibc, so every allocation of the library is seen. (Under
 * AddressSanitizer, which owns malloc, the count is not available: those tests are skipped.) */
#include "harness.h"

#include "../examples/gpt_model.h"

#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define COUNTING 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COUNTING 0
#endif
#endif
#ifndef COUNTING
#define COUNTING 1
#endif

static long allocations;

#if COUNTING
void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);
void __libc_free(void *);

void *malloc(size_t n)
{
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t s)
{
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __libc_calloc(n, s);
}
void *realloc(void *p, size_t n)
{
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __libc_realloc(p, n);
}
int posix_memalign(void **out, size_t align, size_t n)
{
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    void *p = __libc_memalign(align, n);
    if (!p)
        return 12; /* ENOMEM */
    *out = p;
    return 0;
}
void free(void *p) { __libc_free(p); }
#endif

/* Runs `warm` steps, then counts the allocations of `measured` more. */
static long count_steps(void (*step)(void *), void *ctx, int warm, int measured)
{
    for (int i = 0; i < warm; i++)
        step(ctx);
    long before = __atomic_load_n(&allocations, __ATOMIC_RELAXED);
    for (int i = 0; i < measured; i++)
        step(ctx);
    return __atomic_load_n(&allocations, __ATOMIC_RELAXED) - before;
}

typedef struct mlp_ctx {
    nd_module *model;
    nd_optimizer *opt;
    nd_tensor *x, *y;
} mlp_ctx;

static void mlp_step(void *arg)
{
    mlp_ctx *c = arg;
    nd_scope_begin();
    nd_backward(nd_cross_entropy(nd_forward(c->model, c->x), c->y, NULL, -100, ND_REDUCTION_MEAN, 0));
    nd_optimizer_step(c->opt);
    nd_optimizer_zero_grad(c->opt);
    nd_scope_end();
}

TEST(mlp_training_step_allocates_nothing)
{
    if (!COUNTING)
        SKIP("allocation counting is unavailable under AddressSanitizer (checked in the normal build)");
    nd_manual_seed(0);
    mlp_ctx c;
    c.model = nd_sequential_module();
    nd_module_add(c.model, "fc1", nd_linear_module(784, 512, true, ND_FLOAT32));
    nd_module_add(c.model, "relu1", nd_relu_module());
    nd_module_add(c.model, "fc2", nd_linear_module(512, 256, true, ND_FLOAT32));
    nd_module_add(c.model, "relu2", nd_relu_module());
    nd_module_add(c.model, "fc3", nd_linear_module(256, 10, true, ND_FLOAT32));
    nd_param_list *p = nd_params_new();
    nd_module_parameters(c.model, "", p);
    c.opt = nd_adam_new(nd_params_count(p), nd_params_tensors(p), 1e-3, 0.9, 0.999, 1e-8, 0);
    nd_scope_begin();
    c.x = nd_rand(ND_FLOAT32, ND_SHAPE(128, 784));
    int64_t lab[128];
    for (int i = 0; i < 128; i++)
        lab[i] = i % 10;
    c.y = nd_from_i64(lab, ND_SHAPE(128));
    long n = count_steps(mlp_step, &c, 3, 10);
    printf("  MLP: %ld allocations in 10 steady-state steps\n", n);
    CHECK(n == 0);
    nd_scope_end();
    nd_optimizer_free(c.opt);
    nd_params_free(p);
    nd_module_free(c.model);
}

typedef struct gpt_ctx {
    gpt_config cfg;
    nd_param_list *params;
    nd_optimizer *opt;
    nd_tensor *x, *y;
} gpt_ctx;

static void gpt_step(void *arg)
{
    gpt_ctx *c = arg;
    nd_scope_begin();
    nd_backward(gpt_loss(&c->cfg, gpt_forward(&c->cfg, c->params, c->x), c->y));
    nd_clip_grad_norm(nd_params_count(c->params), nd_params_tensors(c->params), 1.0, NULL);
    nd_optimizer_step(c->opt);
    nd_optimizer_zero_grad(c->opt);
    nd_scope_end();
}

TEST(char_gpt_training_step_allocates_nothing)
{
    if (!COUNTING)
        SKIP("allocation counting is unavailable under AddressSanitizer (checked in the normal build)");
    gpt_ctx c = {.cfg = {.vocab = 60, .block = 32, .layers = 2, .heads = 4, .embd = 32}};
    nd_manual_seed(0);
    c.params = nd_params_new();
    CHECK(gpt_init(&c.cfg, c.params) == ND_OK);
    c.opt = nd_adamw_new(nd_params_count(c.params), nd_params_tensors(c.params), 1e-3, 0.9, 0.95, 1e-8, 0.1);
    int64_t tok[8 * 33];
    for (int i = 0; i < 8 * 33; i++)
        tok[i] = (i * 13 + 5) % 60;
    nd_scope_begin();
    nd_tensor *all = nd_from_i64(tok, ND_SHAPE(8, 33));
    c.x = nd_contiguous(nd_narrow(all, 1, 0, 32));
    c.y = nd_contiguous(nd_narrow(all, 1, 1, 32));
    long n = count_steps(gpt_step, &c, 3, 10);
    printf("  char GPT: %ld allocations in 10 steady-state steps\n", n);
    CHECK(n == 0);
    nd_scope_end();
    nd_optimizer_free(c.opt);
    nd_params_free(c.params);
}

TEST(cached_memory_can_be_released)
{
    if (!COUNTING)
        SKIP("allocation counting is unavailable under AddressSanitizer (checked in the normal build)");
    nd_scope_begin();
    for (int i = 0; i < 10; i++)
        nd_zeros(ND_FLOAT32, ND_SHAPE(1000, 100));
    nd_scope_end();
    nd_release_cached_memory();
    long before = __atomic_load_n(&allocations, __ATOMIC_RELAXED);
    nd_scope_begin();
    nd_zeros(ND_FLOAT32, ND_SHAPE(1000, 100));
    nd_scope_end();
    /* After a release the next tensor needs fresh memory again. */
    CHECK(__atomic_load_n(&allocations, __ATOMIC_RELAXED) - before >= 1);
    /* Kernel scratch goes too (attention's score rows here), and grows back when needed. */
    nd_scope_begin();
    nd_tensor *q = nd_randn(ND_FLOAT32, ND_SHAPE(2, 3, 40, 8));
    nd_tensor *first = nd_scaled_dot_product_attention(q, q, q, NULL, 0.0, true, 0.0);
    nd_release_cached_memory();
    before = __atomic_load_n(&allocations, __ATOMIC_RELAXED);
    nd_tensor *again = nd_scaled_dot_product_attention(q, q, q, NULL, 0.0, true, 0.0);
    CHECK(__atomic_load_n(&allocations, __ATOMIC_RELAXED) - before >= 2);
    CHECK(first && again && nd_item(nd_max(nd_abs(nd_sub(first, again)))) == 0);
    nd_scope_end();
}

/* Not a count: results after the caches are dropped are the same (runs in every build). */
TEST(results_are_the_same_after_releasing_cached_memory)
{
    nd_scope_begin();
    nd_tensor *q = nd_randn(ND_FLOAT32, ND_SHAPE(2, 3, 40, 8));
    nd_tensor *first = nd_scaled_dot_product_attention(q, q, q, NULL, 0.0, true, 0.0);
    nd_tensor *mm_first = nd_matmul(q, nd_transpose(q, 2, 3));
    nd_release_cached_memory();
    nd_tensor *again = nd_scaled_dot_product_attention(q, q, q, NULL, 0.0, true, 0.0);
    nd_tensor *mm_again = nd_matmul(q, nd_transpose(q, 2, 3));
    CHECK(first && again && nd_item(nd_max(nd_abs(nd_sub(first, again)))) == 0);
    CHECK(mm_first && mm_again && nd_item(nd_max(nd_abs(nd_sub(mm_first, mm_again)))) == 0);
    nd_scope_end();
}

void run_suite(void)
{
    RUN(mlp_training_step_allocates_nothing);
    RUN(char_gpt_training_step_allocates_nothing);
    RUN(cached_memory_can_be_released);
    RUN(results_are_the_same_after_releasing_cached_memory);
}

/* The ndgrad side of `make bench`: one benchmark per invocation, printing one line
 * "<name> <threads> <unit> <value>". bench/run_bench.py runs the PyTorch side of the same work in
 * the same run and writes the table and build/bench.json.
 * Usage: bench_ndgrad NAME THREADS [DATA_DIR]
 *   NAME: fma_peak (the FMA throughput of the vector level in use), sgemm_N, openblas_sgemm_N,
 *   op_overhead_add, op_overhead_fwd_bwd, mlp_step (batch 128) or mlp_step_bN (batch N), fc_epoch,
 *   cnn_step, gpt_step (context 128) or gpt_step_tN (context N), gpt2_124m_step, mlp_peak_rss,
 *   gpt_peak_rss, gpt2_124m_peak_rss.
 * The line ends with the vector level the library ran (isa=avx512|avx2|generic, NDGRAD_ISA caps
 * it) and, for openblas_*, OpenBLAS's own kernel name (blas=Haswell, ...). */
#define _POSIX_C_SOURCE 200809L
#include <ndgrad.h>

#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "../examples/gpt_model.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The 10th percentile of n values (the op-overhead rounds; see op_overhead_add). */
static double low_decile(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 10];
}

#define CHECK(x)                                                                 \
    do {                                                                         \
        if (!(x)) {                                                              \
            fprintf(stderr, "bench: %s failed: %s\n", #x, nd_last_error());      \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

/* ---------------------------------------------------------------- FMA throughput probe */

/* The machine's limit for the vector level the library runs: independent chains of vector FMAs
 * (of multiplies and adds at the generic level, which has no FMA), each chain in a register of
 * its own, enough of them to cover latency times the FMA pipes of current cores. Written per
 * level with a target attribute, so one binary measures whichever level NDGRAD_ISA selects. */
#define CHAINS12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#if defined(__x86_64__)
#define CHAINS16(X) CHAINS12(X) X(12) X(13) X(14) X(15)
__attribute__((target("avx512f"))) static double fma_loop_avx512(long iters)
{
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
#define DECL(i) __m512 a##i = _mm512_set1_ps((float)(i));
    CHAINS16(DECL)
#undef DECL
    for (long it = 0; it < iters; it++) {
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, x, y);
        CHAINS16(STEP)
#undef STEP
    }
    __m512 s = a0;
#define SUM(i) s = _mm512_add_ps(s, a##i);
    CHAINS16(SUM)
#undef SUM
    float sink[16];
    _mm512_storeu_ps(sink, s);
    return sink[0];
}

__attribute__((target("avx2,fma"))) static double fma_loop_avx2(long iters)
{
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
#define DECL(i) __m256 a##i = _mm256_set1_ps((float)(i));
    CHAINS12(DECL)
#undef DECL
    for (long it = 0; it < iters; it++) {
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, x, y);
        CHAINS12(STEP)
#undef STEP
    }
    __m256 s = a0;
#define SUM(i) s = _mm256_add_ps(s, a##i);
    CHAINS12(SUM)
#undef SUM
    float sink[8];
    _mm256_storeu_ps(sink, s);
    return sink[0];
}

/* SSE2: a multiply and an add per chain step (2 flops per lane). */
static double mul_add_loop_sse(long iters)
{
    const __m128 x = _mm_set1_ps(0.999999f), y = _mm_set1_ps(1e-7f);
#define DECL(i) __m128 a##i = _mm_set1_ps((float)(i));
    CHAINS12(DECL)
#undef DECL
    for (long it = 0; it < iters; it++) {
#define STEP(i) a##i = _mm_add_ps(_mm_mul_ps(a##i, x), y);
        CHAINS12(STEP)
#undef STEP
    }
    __m128 s = a0;
#define SUM(i) s = _mm_add_ps(s, a##i);
    CHAINS12(SUM)
#undef SUM
    float sink[4];
    _mm_storeu_ps(sink, s);
    return sink[0];
}
#endif

typedef struct probe {
    long iters;
    double seconds;
    int level; /* 2 avx512, 1 avx2, 0 generic */
} probe;

/* Floating-point operations one probe iteration does at each level. */
static const double PROBE_FLOPS[3] = {12 * 4 * 2, 12 * 8 * 2, 16 * 16 * 2};

static void *probe_thread(void *arg)
{
    probe *p = arg;
    double t0 = now();
    volatile double sink = 0;
#if defined(__x86_64__)
    sink = p->level == 2 ? fma_loop_avx512(p->iters) : p->level == 1 ? fma_loop_avx2(p->iters) : mul_add_loop_sse(p->iters);
#endif
    (void)sink;
    p->seconds = now() - t0;
    return NULL;
}

static double fma_peak(int threads)
{
    const char *isa = nd_cpu_isa();
    int level = !strcmp(isa, "avx512") ? 2 : !strcmp(isa, "avx2") ? 1 : 0;
    long iters = 20000000;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        probe p[64];
        pthread_t th[64];
        for (int t = 0; t < threads; t++) {
            p[t].iters = iters;
            p[t].level = level;
            pthread_create(&th[t], NULL, probe_thread, &p[t]);
        }
        double slowest = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(th[t], NULL);
            slowest = p[t].seconds > slowest ? p[t].seconds : slowest;
        }
        double gflops = (double)threads * (double)iters * PROBE_FLOPS[level] / slowest / 1e9;
        best = gflops > best ? gflops : best;
    }
    return best;
}

/* ---------------------------------------------------------------- GEMM */

static double sgemm(int64_t n, int reps)
{
    nd_scope_begin();
    nd_tensor *a = nd_randn(ND_FLOAT32, ND_SHAPE(n, n)), *b = nd_randn(ND_FLOAT32, ND_SHAPE(n, n));
    CHECK(nd_mm(a, b)); /* warm-up: packing buffers, threads */
    double t[64];
    for (int r = 0; r < reps; r++) {
        nd_scope_begin();
        double t0 = now();
        CHECK(nd_mm(a, b));
        t[r] = now() - t0;
        nd_scope_end();
    }
    nd_scope_end();
    return 2.0 * (double)n * (double)n * (double)n / median(t, reps) / 1e9;
}

/* OpenBLAS called directly, when libopenblas is installed (looked up at run time). */
typedef void (*cblas_sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                               float *, int);
static char openblas_core[64] = "";
static double openblas_sgemm(int64_t n, int threads, int reps)
{
    void *lib = dlopen("libopenblas.so.0", RTLD_NOW);
    if (!lib)
        lib = dlopen("libopenblas.so", RTLD_NOW);
    if (!lib)
        return -1;
    /* POSIX guarantees dlsym results convert to function pointers; copy through memcpy so ISO C's
     * rule against object-to-function pointer casts is not broken. */
    cblas_sgemm_fn gemm = NULL;
    void (*set_threads)(int) = NULL;
    void *sym = dlsym(lib, "cblas_sgemm");
    memcpy(&gemm, &sym, sizeof gemm);
    sym = dlsym(lib, "openblas_set_num_threads");
    memcpy(&set_threads, &sym, sizeof set_threads);
    char *(*corename)(void) = NULL;
    sym = dlsym(lib, "openblas_get_corename");
    memcpy(&corename, &sym, sizeof corename);
    if (corename && corename())
        snprintf(openblas_core, sizeof openblas_core, "%s", corename());
    if (!gemm)
        return -1;
    if (set_threads)
        set_threads(threads);
    float *a = malloc(sizeof(float) * (size_t)(n * n)), *b = malloc(sizeof(float) * (size_t)(n * n)),
          *c = malloc(sizeof(float) * (size_t)(n * n));
    for (int64_t i = 0; i < n * n; i++)
        a[i] = (float)((i * 7) % 13) / 13.0f, b[i] = (float)((i * 5) % 11) / 11.0f;
    gemm(101, 111, 111, (int)n, (int)n, (int)n, 1.0f, a, (int)n, b, (int)n, 0.0f, c, (int)n);
    double t[64];
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        gemm(101, 111, 111, (int)n, (int)n, (int)n, 1.0f, a, (int)n, b, (int)n, 0.0f, c, (int)n);
        t[r] = now() - t0;
    }
    free(a), free(b), free(c);
    return 2.0 * (double)n * (double)n * (double)n / median(t, reps) / 1e9;
}

/* ---------------------------------------------------------------- op overhead */

/* Op overhead is timed in 100 rounds of about 2 ms each and reported as the 10th percentile of
 * the rounds, on both sides (run_bench.py times PyTorch the same way). This VM's speed flips
 * between two states about 1.8x apart every few milliseconds (another tenant on the host; a
 * process timing 40-ns adds with timestamps sees runs of 40 and of 75 ns per op), so a median of
 * longer rounds measured how much of the run the neighbour was busy, not the op's cost: the
 * low decile of short rounds is the uncontended cost, as timeit's docs recommend its minimum. */
enum { OVERHEAD_ROUNDS = 100 };

static double op_overhead_add(void)
{
    nd_scope_begin();
    nd_tensor *a = nd_randn(ND_FLOAT32, ND_SHAPE(16)), *b = nd_randn(ND_FLOAT32, ND_SHAPE(16));
    double t[OVERHEAD_ROUNDS];
    const int ops = 50000;
    for (int r = -5; r < OVERHEAD_ROUNDS; r++) { /* five unmeasured rounds warm the free lists */
        double t0 = now();
        for (int i = 0; i < ops; i += 100) {
            nd_scope_begin(); /* scopes as a training loop uses them: results freed as it goes */
            for (int k = 0; k < 100; k++)
                nd_add(a, b);
            nd_scope_end();
        }
        if (r >= 0)
            t[r] = (now() - t0) / ops * 1e9;
    }
    nd_scope_end();
    return low_decile(t, OVERHEAD_ROUNDS);
}

static double op_overhead_fwd_bwd(void)
{
    nd_scope_begin();
    nd_tensor *a = nd_randn(ND_FLOAT32, ND_SHAPE(16)), *b = nd_randn(ND_FLOAT32, ND_SHAPE(16));
    nd_set_requires_grad(a, true);
    nd_set_requires_grad(b, true);
    double t[OVERHEAD_ROUNDS];
    const int iters = 3000;
    for (int r = -5; r < OVERHEAD_ROUNDS; r++) {
        double t0 = now();
        for (int i = 0; i < iters; i++) {
            nd_scope_begin();
            CHECK(nd_backward(nd_sum(nd_add(nd_mul(a, b), a))) == ND_OK);
            nd_zero_grad(a);
            nd_zero_grad(b);
            nd_scope_end();
        }
        if (r >= 0)
            t[r] = (now() - t0) / iters * 1e9;
    }
    nd_scope_end();
    return low_decile(t, OVERHEAD_ROUNDS);
}

/* ---------------------------------------------------------------- training steps */

static nd_module *mlp(const int64_t *sizes, int n)
{
    nd_module *m = nd_sequential_module();
    for (int i = 0; i + 1 < n; i++) {
        nd_module_add(m, NULL, nd_linear_module(sizes[i], sizes[i + 1], true, ND_FLOAT32));
        if (i + 2 < n)
            nd_module_add(m, NULL, nd_relu_module());
    }
    return m;
}

/* Median ms of `steps` Adam steps of a classifier on a fixed random batch of inputs of the given
 * shape (shape[0] is the batch; after `warm` unmeasured steps); frees the model. */
static double classifier_step_ms(nd_module *m, int ndim, const int64_t *shape, int warm, int steps)
{
    nd_param_list *p = nd_params_new();
    nd_module_parameters(m, "", p);
    nd_optimizer *opt = nd_adam_new(nd_params_count(p), nd_params_tensors(p), 1e-3, 0.9, 0.999, 1e-8, 0);
    nd_scope_begin();
    nd_tensor *x = nd_rand(ND_FLOAT32, ndim, shape);
    int64_t *lab = malloc(sizeof(int64_t) * (size_t)shape[0]);
    CHECK(lab);
    for (int64_t i = 0; i < shape[0]; i++)
        lab[i] = i % 10;
    nd_tensor *y = nd_from_i64(lab, ND_SHAPE(shape[0]));
    free(lab);
    double t[400];
    for (int s = 0; s < steps + warm; s++) {
        double t0 = now();
        nd_scope_begin();
        CHECK(nd_backward(nd_cross_entropy(nd_forward(m, x), y, NULL, -100, ND_REDUCTION_MEAN, 0)) == ND_OK);
        nd_optimizer_step(opt);
        nd_optimizer_zero_grad(opt);
        nd_scope_end();
        if (s >= warm)
            t[s - warm] = (now() - t0) * 1e3;
    }
    nd_scope_end();
    nd_optimizer_free(opt);
    nd_params_free(p);
    nd_module_free(m);
    return median(t, steps);
}

static double mlp_step(int64_t batch, int steps)
{
    nd_manual_seed(0);
    const int64_t sizes[4] = {784, 512, 256, 10};
    return classifier_step_ms(mlp(sizes, 4), ND_SHAPE(batch, 784), 5, steps);
}

/* ggml's MNIST workload: 784-500-10, N(0, 0.01²) init, logical batch 1000 as two micro-batches of
 * 500 with accumulated gradients (each loss halved), Adam 1e-3; 57,000 images per epoch. */
static double fc_epoch(const char *data_dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", data_dir);
    nd_scope_begin();
    nd_tensor *images = nd_idx_load(path, ND_FLOAT32);
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", data_dir);
    nd_tensor *labels = nd_idx_load(path, ND_INT64);
    CHECK(images && labels);
    nd_tensor *x_all = nd_div_scalar(nd_reshape(images, ND_SHAPE(60000, 784)), 255.0);
    nd_manual_seed(0);
    const int64_t sizes[3] = {784, 500, 10};
    nd_module *m = mlp(sizes, 3);
    nd_param_list *p = nd_params_new();
    nd_module_parameters(m, "", p);
    for (int i = 0; i < nd_params_count(p); i++)
        nd_init_normal(nd_params_get(p, i), 0.0, 0.01);
    nd_optimizer *opt = nd_adam_new(nd_params_count(p), nd_params_tensors(p), 1e-3, 0.9, 0.999, 1e-8, 0);
    double t0 = now();
    for (int64_t start = 0; start + 1000 <= 57000; start += 1000) {
        for (int half = 0; half < 2; half++) {
            nd_scope_begin();
            nd_tensor *x = nd_narrow(x_all, 0, start + half * 500, 500);
            nd_tensor *y = nd_narrow(labels, 0, start + half * 500, 500);
            nd_tensor *loss = nd_mul_scalar(nd_cross_entropy(nd_forward(m, x), y, NULL, -100, ND_REDUCTION_MEAN, 0), 0.5);
            CHECK(nd_backward(loss) == ND_OK);
            nd_scope_end();
        }
        nd_optimizer_step(opt);
        nd_optimizer_zero_grad(opt);
    }
    double seconds = now() - t0;
    nd_optimizer_free(opt);
    nd_params_free(p);
    nd_module_free(m);
    nd_scope_end();
    return seconds;
}

static double cnn_step(int steps)
{
    nd_manual_seed(0);
    nd_module *m = nd_sequential_module();
    nd_module_add(m, NULL, nd_conv2d_module(1, 32, 3, 1, 1, 1, true, ND_FLOAT32));
    nd_module_add(m, NULL, nd_relu_module());
    nd_module_add(m, NULL, nd_max_pool2d_module(2, 2));
    nd_module_add(m, NULL, nd_conv2d_module(32, 64, 3, 1, 1, 1, true, ND_FLOAT32));
    nd_module_add(m, NULL, nd_relu_module());
    nd_module_add(m, NULL, nd_max_pool2d_module(2, 2));
    nd_module_add(m, NULL, nd_flatten_module(1, -1));
    nd_module_add(m, NULL, nd_linear_module(3136, 128, true, ND_FLOAT32));
    nd_module_add(m, NULL, nd_relu_module());
    nd_module_add(m, NULL, nd_linear_module(128, 10, true, ND_FLOAT32));
    return classifier_step_ms(m, ND_SHAPE(128, 1, 28, 28), 2, steps);
}

/* Median ms of `steps` AdamW steps (lr 3e-4, betas 0.9/0.95, weight decay 0.1 on every
 * parameter) of a GPT on a fixed batch of B sequences of T tokens, after two unmeasured steps. */
static double gpt_steps(const gpt_config *cfg, int64_t B, int64_t T, int steps)
{
    nd_manual_seed(0);
    nd_param_list *p = nd_params_new();
    CHECK(gpt_init(cfg, p) == ND_OK);
    nd_optimizer *opt = nd_adamw_new(nd_params_count(p), nd_params_tensors(p), 3e-4, 0.9, 0.95, 1e-8, 0.1);
    int64_t *tok = malloc(sizeof(int64_t) * (size_t)(B * (T + 1)));
    CHECK(tok);
    for (int64_t i = 0; i < B * (T + 1); i++)
        tok[i] = (i * 31 + 7) % cfg->vocab;
    nd_scope_begin();
    nd_tensor *all = nd_from_i64(tok, ND_SHAPE(B, T + 1));
    nd_tensor *x = nd_contiguous(nd_narrow(all, 1, 0, T)), *y = nd_contiguous(nd_narrow(all, 1, 1, T));
    double t[100];
    for (int s = 0; s < steps + 2; s++) {
        double t0 = now();
        nd_scope_begin();
        CHECK(nd_backward(gpt_loss(cfg, gpt_forward(cfg, p, x), y)) == ND_OK);
        nd_optimizer_step(opt);
        nd_optimizer_zero_grad(opt);
        nd_scope_end();
        if (s >= 2)
            t[s - 2] = (now() - t0) * 1e3;
    }
    nd_scope_end();
    free(tok);
    nd_optimizer_free(opt);
    nd_params_free(p);
    return median(t, steps);
}

/* The char_gpt model at 4 layers, 4 heads, 128 channels, batch 32, context T (128 by default). */
static double gpt_step(int64_t T, int steps)
{
    gpt_config cfg = {.vocab = 96, .block = T, .layers = 4, .heads = 4, .embd = 128};
    return gpt_steps(&cfg, 32, T, steps);
}

/* GPT-2 small's shape: 12 layers, 12 heads, 768 channels, vocabulary 50257, 1024 positions, tied
 * embeddings (124M parameters), trained on batches of 4 sequences of 64 tokens. */
static double gpt2_124m_step(int steps)
{
    gpt_config cfg = {.vocab = 50257, .block = 1024, .layers = 12, .heads = 12, .embd = 768, .tied = true};
    return gpt_steps(&cfg, 4, 64, steps);
}

/* Peak resident memory of this process image: VmHWM, which starts afresh at exec (ru_maxrss
 * would carry over the peak of the process that forked us). */
static double peak_rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb / 1024.0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_ndgrad NAME THREADS [DATA_DIR]\n");
        return 2;
    }
    const char *name = argv[1];
    int threads = atoi(argv[2]);
    if (nd_set_num_threads(threads) != ND_OK) {
        fprintf(stderr, "bench: %s\n", nd_last_error());
        return 2;
    }
    double v;
    const char *unit;
    if (!strcmp(name, "fma_peak"))
        v = fma_peak(threads), unit = "GFLOP/s";
    else if (!strncmp(name, "sgemm_", 6))
        v = sgemm(atoll(name + 6), atoll(name + 6) >= 2048 ? 5 : 15), unit = "GFLOP/s";
    else if (!strncmp(name, "openblas_sgemm_", 15))
        v = openblas_sgemm(atoll(name + 15), threads, atoll(name + 15) >= 2048 ? 5 : 15), unit = "GFLOP/s";
    else if (!strcmp(name, "op_overhead_add"))
        v = op_overhead_add(), unit = "ns/op";
    else if (!strcmp(name, "op_overhead_fwd_bwd"))
        v = op_overhead_fwd_bwd(), unit = "ns/op";
    else if (!strcmp(name, "mlp_step"))
        v = mlp_step(128, 40), unit = "ms";
    else if (!strncmp(name, "mlp_step_b", 10) && atoll(name + 10) > 0)
        v = mlp_step(atoll(name + 10), atoll(name + 10) > 256 ? 15 : 40), unit = "ms";
    else if (!strcmp(name, "fc_epoch"))
        v = fc_epoch(argc > 3 ? argv[3] : "/usr/share/datasets/fashion-mnist"), unit = "s";
    else if (!strcmp(name, "cnn_step"))
        v = cnn_step(8), unit = "ms";
    else if (!strcmp(name, "gpt_step"))
        v = gpt_step(128, 5), unit = "ms";
    else if (!strncmp(name, "gpt_step_t", 10) && atoll(name + 10) > 0)
        v = gpt_step(atoll(name + 10), 5), unit = "ms";
    else if (!strcmp(name, "gpt2_124m_step"))
        v = gpt2_124m_step(5), unit = "ms";
    else if (!strcmp(name, "mlp_peak_rss"))
        mlp_step(128, 20), v = peak_rss_mb(), unit = "MB";
    else if (!strcmp(name, "gpt_peak_rss"))
        gpt_step(128, 3), v = peak_rss_mb(), unit = "MB";
    else if (!strcmp(name, "gpt2_124m_peak_rss"))
        gpt2_124m_step(3), v = peak_rss_mb(), unit = "MB";
    else {
        fprintf(stderr, "bench: unknown benchmark %s\n", name);
        return 2;
    }
    printf("%s %d %s %.6g isa=%s", name, threads, unit, v, nd_cpu_isa());
    if (openblas_core[0])
        printf(" blas=%s", openblas_core);
    printf("\n");
    return 0;
}

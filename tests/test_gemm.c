/* GEMM against a plain triple loop: float32 and float64, every transpose combination, edge
 * tiles, a K longer than one block, accumulation (linear's bias), at the vector level the process
 * picked. tests/run_all.sh runs every test file once per level (NDGRAD_ISA=avx512|avx2|generic),
 * so every micro-kernel is checked on a machine that has it; the first test here tells it which
 * level really ran. */
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* max |got - want| / (1 + |want|) over the product a @ b (a [m,k], b [k,n], any layout). */
static double worst_error(nd_tensor *a, nd_tensor *b, nd_tensor *got)
{
    int64_t m = nd_size(a, 0), k = nd_size(a, 1), n = nd_size(b, 1);
    double *A = malloc(sizeof(double) * (size_t)(m * k)), *B = malloc(sizeof(double) * (size_t)(k * n));
    double *C = malloc(sizeof(double) * (size_t)(m * n) + 1);
    double worst = INFINITY;
    if (A && B && C && nd_copy_out(a, A, sizeof(double) * (size_t)(m * k), ND_FLOAT64) == ND_OK &&
        nd_copy_out(b, B, sizeof(double) * (size_t)(k * n), ND_FLOAT64) == ND_OK &&
        nd_copy_out(got, C, sizeof(double) * (size_t)(m * n), ND_FLOAT64) == ND_OK) {
        worst = 0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t p = 0; p < k; p++)
                    s += A[i * k + p] * B[p * n + j];
                double e = fabs(C[i * n + j] - s) / (1 + fabs(s));
                worst = e > worst ? e : worst;
            }
    }
    free(A);
    free(B);
    free(C);
    return worst;
}

/* a [m,k] and b [k,n], each made directly or as the transpose of its transpose. */
static nd_tensor *operand(nd_dtype dt, int64_t rows, int64_t cols, bool transposed)
{
    return transposed ? nd_t(nd_randn(dt, ND_SHAPE(cols, rows))) : nd_randn(dt, ND_SHAPE(rows, cols));
}

TEST(the_requested_level_is_used)
{
    const char *want = getenv("NDGRAD_ISA");
    printf("  vector level: %s, GEMM kernel: %s\n", nd_cpu_isa(), nd_gemm_kernel());
    CHECK(!strcmp(nd_cpu_isa(), "avx512") || !strcmp(nd_cpu_isa(), "avx2") || !strcmp(nd_cpu_isa(), "generic"));
    CHECK(!strcmp(nd_gemm_kernel(), nd_cpu_isa()) || !strcmp(nd_gemm_kernel(), "openblas"));
    /* generic runs everywhere, so asking for it must get it; a higher level only where the CPU has it */
    if (want && !strcmp(want, "generic"))
        CHECK(!strcmp(nd_cpu_isa(), "generic"));
    if (want && !strcmp(want, "avx2"))
        CHECK(!strcmp(nd_cpu_isa(), "avx2") || !strcmp(nd_cpu_isa(), "generic"));
}

TEST(products_match_a_plain_loop)
{
    /* edge tiles, narrow C (the transposed product), K over one block, many row panels (split
     * across threads), more columns than one block (NC = 3072) */
    static const int64_t shapes[][3] = {{1, 1, 1},    {7, 5, 3},     {13, 33, 17},   {12, 32, 8},
                                        {25, 70, 41}, {100, 3, 50},  {3, 100, 50},   {64, 9, 784},
                                        {37, 29, 900}, {300, 200, 64}, {20, 3100, 8}};
    for (int dt = 0; dt < 2; dt++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int layout = 0; layout < 4; layout++) {
                nd_scope_begin();
                nd_dtype d = dt ? ND_FLOAT64 : ND_FLOAT32;
                int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
                nd_tensor *a = operand(d, m, k, layout & 1), *b = operand(d, k, n, layout & 2);
                double err = worst_error(a, b, nd_mm(a, b));
                double tol = dt ? 1e-12 : 1e-4;
                if (!(err <= tol)) {
                    printf("  %s [%lld,%lld] @ [%lld,%lld] layout %d: error %g\n", dt ? "f64" : "f32", (long long)m,
                           (long long)k, (long long)k, (long long)n, layout, err);
                    nd_test_failures++;
                }
                nd_scope_end();
            }
}

/* linear adds its bias in the product's epilogue: plain, narrow (kept untransposed), edge tiles, K
 * over one block (the bias added once, in the first), split across threads, and K = 0 (the output
 * is the bias, or zeros without one). */
TEST(products_with_a_bias_add_it_once)
{
    static const int64_t shapes[][3] = {{45, 33, 70}, {200, 9, 800}, {300, 64, 500}, {5, 7, 0}, {13, 100, 17}};
    for (int dt = 0; dt < 2; dt++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            nd_scope_begin();
            nd_dtype d = dt ? ND_FLOAT64 : ND_FLOAT32;
            double tol = dt ? 1e-10 : 1e-3;
            int64_t m = shapes[i][0], n = shapes[i][1], k = shapes[i][2];
            nd_tensor *x = nd_randn(d, ND_SHAPE(m, k)), *w = nd_randn(d, ND_SHAPE(n, k));
            nd_tensor *b = nd_randn(d, ND_SHAPE(n));
            nd_tensor *diff = nd_sub(nd_linear(x, w, b), nd_add(nd_matmul(x, nd_t(w)), b));
            CHECK(diff && nd_item(nd_max(nd_abs(diff))) < tol);
            nd_tensor *plain = nd_linear(x, w, NULL);
            CHECK(plain && nd_item(nd_max(nd_abs(nd_sub(plain, nd_matmul(x, nd_t(w)))))) < tol);
            nd_scope_end();
        }
}

void run_suite(void)
{
    RUN(the_requested_level_is_used);
    RUN(products_match_a_plain_loop);
    RUN(products_with_a_bias_add_it_once);
}

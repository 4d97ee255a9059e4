/* A small test harness: suites are functions that run checks; every test ends by asserting that
 * no tensor, storage or graph node is left alive. A test that cannot run here says so with SKIP
 * and is counted as skipped, never as passed. The runner prints "N passed, N failed, N skipped". */
#ifndef ND_TEST_HARNESS_H
#define ND_TEST_HARNESS_H

#include <ndgrad.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

extern int nd_test_failures;   /* failures within the current test */
extern int nd_tests_passed, nd_tests_failed, nd_tests_skipped;
extern const char *nd_test_filter;

void nd_test_begin(const char *name);
void nd_test_end(void);
int nd_test_selected(const char *name);
void nd_test_skip(const char *reason);

/* Ends the current test as skipped, with the reason it cannot run here (only before any CHECK has
 * failed: a test that failed and then skips is a failure). */
#define SKIP(reason)                                                                                 \
    do {                                                                                             \
        nd_test_skip(reason);                                                                        \
        return;                                                                                      \
    } while (0)

#define CHECK(cond)                                                                                  \
    do {                                                                                             \
        if (!(cond)) {                                                                               \
            nd_test_failures++;                                                                      \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed [last error: %s]\n", __FILE__, __LINE__, #cond, \
                    nd_last_error());                                                                \
        }                                                                                            \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                        \
    do {                                                                                             \
        double a_ = (a), b_ = (b);                                                                   \
        if (!(fabs(a_ - b_) <= (tol))) {                                                             \
            nd_test_failures++;                                                                      \
            fprintf(stderr, "  %s:%d: %s = %.10g, expected %.10g (tol %g)\n", __FILE__, __LINE__, #a, a_, b_, \
                    (double)(tol));                                                                  \
        }                                                                                            \
    } while (0)

#define CHECK_STATUS(expr, status) CHECK((expr) == (status))

/* The error message must contain a substring. */
#define CHECK_ERROR_HAS(sub)                                                                         \
    do {                                                                                             \
        if (!strstr(nd_last_error(), (sub))) {                                                       \
            nd_test_failures++;                                                                      \
            fprintf(stderr, "  %s:%d: error \"%s\" does not mention \"%s\"\n", __FILE__, __LINE__,   \
                    nd_last_error(), (sub));                                                         \
        }                                                                                            \
    } while (0)

/* Each test file defines run_suite(), which lists its tests with RUN(name).
 * TEST(name) { ... } defines one test. */
void run_suite(void);
#define TEST(name) static void test_##name(void)
#define RUN(name)                                                                                    \
    do {                                                                                             \
        if (nd_test_selected(#name)) {                                                               \
            nd_test_begin(#name);                                                                    \
            test_##name();                                                                           \
            nd_test_end();                                                                           \
        }                                                                                            \
    } while (0)

/* Compares every element of t (any dtype/layout) with expected values. */
int nd_test_values(const nd_tensor *t, const double *expected, int64_t n, double tol);
#define CHECK_VALUES(t, tol, ...)                                                                    \
    do {                                                                                             \
        const double exp_[] = {__VA_ARGS__};                                                         \
        if (!nd_test_values((t), exp_, (int64_t)(sizeof exp_ / sizeof exp_[0]), (tol))) {            \
            nd_test_failures++;                                                                      \
            fprintf(stderr, "  %s:%d: values of %s differ\n", __FILE__, __LINE__, #t);               \
        }                                                                                            \
    } while (0)

/* Compares nd_to_string(t) with PyTorch's text. */
#define CHECK_STR(t, text)                                                                           \
    do {                                                                                             \
        char *s_ = nd_to_string(t);                                                                  \
        if (!s_ || strcmp(s_, (text)) != 0) {                                                        \
            nd_test_failures++;                                                                      \
            fprintf(stderr, "  %s:%d: printed\n%s\nexpected\n%s\n", __FILE__, __LINE__, s_ ? s_ : "(null)", (text)); \
        }                                                                                            \
        free(s_);                                                                                    \
    } while (0)

#endif

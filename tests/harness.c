/* Test runner linked into every tests/test_*.c binary: runs that file's suite (only the tests whose
 * names contain argv[1], if given) and prints the closing line "N passed, N failed, N skipped". */
#include "harness.h"

#include <stdlib.h>

int nd_test_failures;
int nd_tests_passed, nd_tests_failed, nd_tests_skipped;
const char *nd_test_filter;

static const char *current;
static const char *skip_reason;
static int64_t base_tensors, base_storages, base_nodes;

void nd_test_begin(const char *name)
{
    current = name;
    /* Measured from the start of each test, so one leak is reported once, by its own test. */
    base_tensors = nd_live_tensors();
    base_storages = nd_live_storages();
    base_nodes = nd_live_nodes();
    nd_test_failures = 0;
    skip_reason = NULL;
    nd_clear_error();
}

void nd_test_skip(const char *reason) { skip_reason = reason ? reason : "no reason given"; }

void nd_test_end(void)
{
    /* Every test must leave nothing alive: this is the leak check of the ownership rules. */
    int64_t dt = nd_live_tensors() - base_tensors, ds = nd_live_storages() - base_storages,
            dn = nd_live_nodes() - base_nodes;
    if (dt || ds || dn) {
        fprintf(stderr, "  %s: leaked %lld tensors, %lld storages, %lld nodes\n", current, (long long)dt,
                (long long)ds, (long long)dn);
        nd_test_failures++;
    }
    while (nd_scope_end() == ND_OK) { /* close scopes a failed test left open */
        nd_test_failures++;
        fprintf(stderr, "  %s: left a scope open\n", current);
    }
    nd_set_grad_enabled(true);
    if (nd_test_failures) {
        nd_tests_failed++;
        printf("FAIL %s\n", current);
    } else if (skip_reason) {
        nd_tests_skipped++;
        printf("SKIP %s: %s\n", current, skip_reason);
    } else {
        nd_tests_passed++;
        if (getenv("ND_TEST_VERBOSE"))
            printf("ok   %s\n", current);
    }
    fflush(stdout);
}

int nd_test_selected(const char *name) { return !nd_test_filter || strstr(name, nd_test_filter) != NULL; }

int nd_test_values(const nd_tensor *t, const double *expected, int64_t n, double tol)
{
    if (!t || nd_numel(t) != n)
        return 0;
    double *v = malloc((size_t)n * sizeof *v + 1);
    int ok = v && nd_copy_out(t, v, (size_t)n * sizeof *v, ND_FLOAT64) == ND_OK;
    for (int64_t i = 0; ok && i < n; i++) {
        bool both_nan = isnan(v[i]) && isnan(expected[i]);
        if (!both_nan && !(fabs(v[i] - expected[i]) <= tol + tol * fabs(expected[i]))) {
            fprintf(stderr, "  element %lld: %.10g, expected %.10g\n", (long long)i, v[i], expected[i]);
            ok = 0;
        }
    }
    free(v);
    return ok;
}

void run_suite(void);

int main(int argc, char **argv)
{
    if (argc > 1)
        nd_test_filter = argv[1];
    run_suite();
    if (nd_live_tensors() || nd_live_storages() || nd_live_nodes()) {
        printf("FAIL live objects at exit: %lld tensors, %lld storages, %lld nodes\n", (long long)nd_live_tensors(),
               (long long)nd_live_storages(), (long long)nd_live_nodes());
        nd_tests_failed++;
    }
    printf("%d passed, %d failed, %d skipped\n", nd_tests_passed, nd_tests_failed, nd_tests_skipped);
    return nd_tests_failed ? 1 : 0;
}

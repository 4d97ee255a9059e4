/* Finite-difference gradchecks (float64, eps 1e-6, atol 1e-5, rtol 1e-3) of every differentiable
 * op: broadcast and non-contiguous operands, repeated use of one tensor, a long composite, and
 * the behaviour of nd_gradcheck itself (rejected inputs, a detected mismatch, restored inputs). */
#include "harness.h"

#include <stdlib.h>

#define GC_EPS 1e-6
#define GC_ATOL 1e-5
#define GC_RTOL 1e-3

/* ------------------------------------------------------------------ leaves */

/* Value families for leaves: any sign, strictly positive, away from zero, very small. */
enum { ANY, POS, AWAY, SMALL };

static int leaf_counter;

static double leaf_value(int kind, int64_t i, int salt)
{
    double s = sin(1.37 * (double)i + 0.71 * (double)salt + 0.4);
    switch (kind) {
    case POS: return 0.6 + 0.5 * (1.0 + s);             /* [0.6, 1.6] */
    case AWAY: return s >= 0 ? 0.2 + 0.8 * s : -0.2 + 0.8 * s; /* |v| >= 0.2 */
    case SMALL: return 0.002 * s;                       /* |v| <= 0.002: float32 round trips stay exact enough */
    default: return 0.9 * s;                            /* [-0.9, 0.9] */
    }
}

/* A float64 leaf that requires grad, owned by the current scope. */
static nd_tensor *leaf(int kind, int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v)
        return NULL;
    int salt = ++leaf_counter;
    for (int64_t i = 0; i < n; i++)
        v[i] = leaf_value(kind, i, salt);
    nd_tensor *t = nd_from_f64(v, ndim, shape);
    free(v);
    if (t && nd_set_requires_grad(t, true) != ND_OK)
        return NULL;
    return t;
}

/* ------------------------------------------------------------------ running a check */

static void gc_at(const char *file, int line, const char *label, nd_function fn, void *user, int n,
                  nd_tensor *const *inputs)
{
    for (int i = 0; i < n; i++)
        if (!inputs[i]) {
            nd_test_failures++;
            fprintf(stderr, "  %s:%d: [%s] input %d could not be made: %s\n", file, line, label, i, nd_last_error());
            return;
        }
    nd_status st = nd_gradcheck(fn, user, n, inputs, GC_EPS, GC_ATOL, GC_RTOL);
    if (st != ND_OK) {
        nd_test_failures++;
        fprintf(stderr, "  %s:%d: [%s] gradcheck returned %s: %s\n", file, line, label, nd_status_name(st),
                nd_last_error());
    }
    nd_clear_error();
}

#define N_INPUTS(...) ((int)(sizeof((nd_tensor *[]){__VA_ARGS__}) / sizeof(nd_tensor *)))
#define GC(label, fn, user, ...) \
    gc_at(__FILE__, __LINE__, (label), (fn), (user), N_INPUTS(__VA_ARGS__), (nd_tensor *const[]){__VA_ARGS__})

/* ------------------------------------------------------------------ binary ops */

typedef nd_tensor *(*binop)(nd_tensor *, nd_tensor *);

/* How fn presents its two leaves to the op. */
enum {
    PLAIN,        /* op(a, b) */
    T_AND_STEP2,  /* a [4,3] transposed, b [3,8] sliced with step 2 along dim 1: both [3,4] */
    EXPAND_AND_T, /* a [3,1] expanded to [3,4], b [4,3] transposed with nd_t */
    STEP2_AND_BC, /* a [6,4] sliced with step 2 along dim 0 -> [3,4], b [4] broadcast */
    T_AND_SCALAR, /* a [4,3] transposed -> [3,4], b 0-dim */
};

typedef struct bin_ctx {
    binop op;
    int layout;
} bin_ctx;

static nd_tensor *fn_binary(nd_tensor *const *in, void *user)
{
    const bin_ctx *c = user;
    nd_tensor *a = in[0], *b = in[1];
    switch (c->layout) {
    case T_AND_STEP2:
        a = nd_transpose(a, 0, 1);
        b = nd_slice(b, 1, 0, 8, 2);
        break;
    case EXPAND_AND_T:
        a = nd_expand(a, ND_SHAPE(3, 4));
        b = nd_t(b);
        break;
    case STEP2_AND_BC:
        a = nd_slice(a, 0, 1, 6, 2);
        break;
    case T_AND_SCALAR:
        a = nd_transpose(a, -1, -2);
        break;
    default:
        break;
    }
    return c->op(a, b);
}

/* Every layout of one binary op; ka/kb are the value families of the first/second operand. */
static void check_binary(const char *name, binop op, int ka, int kb)
{
    nd_scope_begin();
    bin_ctx plain = {op, PLAIN};
    char label[96];
#define LBL(what) (snprintf(label, sizeof label, "%s %s", name, what), label)
    GC(LBL("[2,3] with [2,3]"), fn_binary, &plain, leaf(ka, ND_SHAPE(2, 3)), leaf(kb, ND_SHAPE(2, 3)));
    GC(LBL("[3,1] with [4]"), fn_binary, &plain, leaf(ka, ND_SHAPE(3, 1)), leaf(kb, ND_SHAPE(4)));
    GC(LBL("[4] with [3,1]"), fn_binary, &plain, leaf(ka, ND_SHAPE(4)), leaf(kb, ND_SHAPE(3, 1)));
    GC(LBL("[2,3,4] with [3,1]"), fn_binary, &plain, leaf(ka, ND_SHAPE(2, 3, 4)), leaf(kb, ND_SHAPE(3, 1)));
    GC(LBL("[3,1] with [2,1,4]"), fn_binary, &plain, leaf(ka, ND_SHAPE(3, 1)), leaf(kb, ND_SHAPE(2, 1, 4)));
    GC(LBL("0-dim with [2,3]"), fn_binary, &plain, leaf(ka, ND_SCALAR_SHAPE), leaf(kb, ND_SHAPE(2, 3)));
    GC(LBL("[2,3] with 0-dim"), fn_binary, &plain, leaf(ka, ND_SHAPE(2, 3)), leaf(kb, ND_SCALAR_SHAPE));
    GC(LBL("0-dim with 0-dim"), fn_binary, &plain, leaf(ka, ND_SCALAR_SHAPE), leaf(kb, ND_SCALAR_SHAPE));
    bin_ctx l1 = {op, T_AND_STEP2}, l2 = {op, EXPAND_AND_T}, l3 = {op, STEP2_AND_BC}, l4 = {op, T_AND_SCALAR};
    GC(LBL("transposed with step-2 slice"), fn_binary, &l1, leaf(ka, ND_SHAPE(4, 3)), leaf(kb, ND_SHAPE(3, 8)));
    GC(LBL("expanded with nd_t"), fn_binary, &l2, leaf(ka, ND_SHAPE(3, 1)), leaf(kb, ND_SHAPE(4, 3)));
    GC(LBL("step-2 slice with broadcast [4]"), fn_binary, &l3, leaf(ka, ND_SHAPE(6, 4)), leaf(kb, ND_SHAPE(4)));
    GC(LBL("transposed with 0-dim"), fn_binary, &l4, leaf(ka, ND_SHAPE(4, 3)), leaf(kb, ND_SCALAR_SHAPE));
#undef LBL
    nd_scope_end();
}

TEST(add) { check_binary("nd_add", nd_add, ANY, ANY); }
TEST(sub) { check_binary("nd_sub", nd_sub, ANY, ANY); }
TEST(mul) { check_binary("nd_mul", nd_mul, ANY, ANY); }
TEST(div) { check_binary("nd_div", nd_div, ANY, POS); }
TEST(pow_tensor_exponent) { check_binary("nd_pow", nd_pow, POS, ANY); }

/* One leaf used several times in one expression: the gradients must accumulate. */
static nd_tensor *fn_x_plus_x_times_x(nd_tensor *const *in, void *u) { (void)u; return nd_mul(nd_add(in[0], in[0]), in[0]); }
static nd_tensor *fn_x_times_x(nd_tensor *const *in, void *u) { (void)u; return nd_mul(in[0], in[0]); }
static nd_tensor *fn_matmul_x_x(nd_tensor *const *in, void *u) { (void)u; return nd_matmul(in[0], in[0]); }
static nd_tensor *fn_x_minus_x(nd_tensor *const *in, void *u) { (void)u; return nd_sub(in[0], in[0]); }
static nd_tensor *fn_x_div_x_plus(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_div(nd_mul_scalar(in[0], 3.0), nd_add(in[0], in[0]));
}
static nd_tensor *fn_x_pow_x(nd_tensor *const *in, void *u) { (void)u; return nd_pow(in[0], in[0]); }
/* x * xᵀ: the same storage seen through two layouts. */
static nd_tensor *fn_x_times_xt(nd_tensor *const *in, void *u) { (void)u; return nd_mul(in[0], nd_t(in[0])); }
static nd_tensor *fn_matmul_x_xt(nd_tensor *const *in, void *u) { (void)u; return nd_matmul(in[0], nd_t(in[0])); }

TEST(repeated_use_of_one_tensor)
{
    nd_scope_begin();
    GC("(x+x)*x", fn_x_plus_x_times_x, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("x*x", fn_x_times_x, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("x*x 0-dim", fn_x_times_x, NULL, leaf(ANY, ND_SCALAR_SHAPE));
    GC("matmul(x, x)", fn_matmul_x_x, NULL, leaf(ANY, ND_SHAPE(3, 3)));
    GC("matmul(x, x) batched", fn_matmul_x_x, NULL, leaf(ANY, ND_SHAPE(2, 3, 3)));
    GC("matmul(x, x) 1-D", fn_matmul_x_x, NULL, leaf(ANY, ND_SHAPE(4)));
    GC("x-x", fn_x_minus_x, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("3x/(x+x)", fn_x_div_x_plus, NULL, leaf(POS, ND_SHAPE(2, 3)));
    GC("x^x", fn_x_pow_x, NULL, leaf(POS, ND_SHAPE(2, 3)));
    GC("x*t(x)", fn_x_times_xt, NULL, leaf(ANY, ND_SHAPE(3, 3)));
    GC("matmul(x, t(x))", fn_matmul_x_xt, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    nd_scope_end();
}

/* ------------------------------------------------------------------ scalar ops */

typedef struct scalar_ctx {
    nd_tensor *(*op)(nd_tensor *, double);
    double s;
    bool transposed; /* apply to the transpose of the leaf */
} scalar_ctx;

static nd_tensor *rsub_swapped(nd_tensor *a, double s) { return nd_rsub_scalar(s, a); }

static nd_tensor *fn_scalar(nd_tensor *const *in, void *user)
{
    const scalar_ctx *c = user;
    return c->op(c->transposed ? nd_t(in[0]) : in[0], c->s);
}

static void check_scalar(const char *name, nd_tensor *(*op)(nd_tensor *, double), double s, int kind)
{
    nd_scope_begin();
    char label[96];
    scalar_ctx c = {op, s, false}, ct = {op, s, true};
    snprintf(label, sizeof label, "%s(x, %g) [2,3]", name, s);
    GC(label, fn_scalar, &c, leaf(kind, ND_SHAPE(2, 3)));
    snprintf(label, sizeof label, "%s(x, %g) 0-dim", name, s);
    GC(label, fn_scalar, &c, leaf(kind, ND_SCALAR_SHAPE));
    snprintf(label, sizeof label, "%s(x, %g) transposed", name, s);
    GC(label, fn_scalar, &ct, leaf(kind, ND_SHAPE(3, 2)));
    nd_scope_end();
}

TEST(pow_scalar)
{
    check_scalar("nd_pow_scalar", nd_pow_scalar, 2.0, ANY);
    check_scalar("nd_pow_scalar", nd_pow_scalar, 3.0, ANY);
    check_scalar("nd_pow_scalar", nd_pow_scalar, 0.5, POS);
    check_scalar("nd_pow_scalar", nd_pow_scalar, -1.0, AWAY);
    check_scalar("nd_pow_scalar", nd_pow_scalar, 0.0, ANY);
    check_scalar("nd_pow_scalar", nd_pow_scalar, 1.0, ANY);
    check_scalar("nd_pow_scalar", nd_pow_scalar, -2.5, POS);
}

TEST(add_scalar) { check_scalar("nd_add_scalar", nd_add_scalar, 1.5, ANY); }
TEST(sub_scalar) { check_scalar("nd_sub_scalar", nd_sub_scalar, -0.75, ANY); }
TEST(rsub_scalar) { check_scalar("nd_rsub_scalar", rsub_swapped, 2.5, ANY); }
TEST(mul_scalar)
{
    check_scalar("nd_mul_scalar", nd_mul_scalar, -3.0, ANY);
    check_scalar("nd_mul_scalar", nd_mul_scalar, 0.0, ANY);
}
TEST(div_scalar) { check_scalar("nd_div_scalar", nd_div_scalar, 0.4, ANY); }

/* ------------------------------------------------------------------ unary ops */

typedef struct unary_ctx {
    nd_tensor *(*op)(nd_tensor *);
    int layout; /* 0 plain, 1 transpose of the leaf, 2 step-2 slice of the leaf */
} unary_ctx;

static nd_tensor *fn_unary(nd_tensor *const *in, void *user)
{
    const unary_ctx *c = user;
    nd_tensor *x = in[0];
    if (c->layout == 1)
        x = nd_transpose(x, 0, 1);
    else if (c->layout == 2)
        x = nd_slice(x, 1, 1, 7, 2);
    return c->op(x);
}

static void check_unary(const char *name, nd_tensor *(*op)(nd_tensor *), int kind)
{
    nd_scope_begin();
    char label[96];
    unary_ctx c0 = {op, 0}, c1 = {op, 1}, c2 = {op, 2};
    snprintf(label, sizeof label, "%s [2,3]", name);
    GC(label, fn_unary, &c0, leaf(kind, ND_SHAPE(2, 3)));
    snprintf(label, sizeof label, "%s 0-dim", name);
    GC(label, fn_unary, &c0, leaf(kind, ND_SCALAR_SHAPE));
    snprintf(label, sizeof label, "%s [2,2,2]", name);
    GC(label, fn_unary, &c0, leaf(kind, ND_SHAPE(2, 2, 2)));
    snprintf(label, sizeof label, "%s transposed", name);
    GC(label, fn_unary, &c1, leaf(kind, ND_SHAPE(3, 2)));
    snprintf(label, sizeof label, "%s step-2 slice", name);
    GC(label, fn_unary, &c2, leaf(kind, ND_SHAPE(2, 7)));
    nd_scope_end();
}

TEST(neg) { check_unary("nd_neg", nd_neg, ANY); }
TEST(relu) { check_unary("nd_relu", nd_relu, AWAY); }
TEST(exp) { check_unary("nd_exp", nd_exp, ANY); }
TEST(log) { check_unary("nd_log", nd_log, POS); }
TEST(tanh) { check_unary("nd_tanh", nd_tanh, ANY); }
TEST(sigmoid) { check_unary("nd_sigmoid", nd_sigmoid, ANY); }

/* ------------------------------------------------------------------ where */

static nd_tensor *fn_where_same(nd_tensor *const *in, void *u)
{
    (void)u;
    const bool c[6] = {true, false, true, false, false, true};
    return nd_where(nd_from_data(c, ND_BOOL, ND_SHAPE(2, 3)), in[0], in[1]);
}

/* cond [3,1], a [4], b 0-dim -> [3,4] */
static nd_tensor *fn_where_broadcast(nd_tensor *const *in, void *u)
{
    (void)u;
    const bool c[3] = {true, false, true};
    return nd_where(nd_from_data(c, ND_BOOL, ND_SHAPE(3, 1)), in[0], in[1]);
}

/* cond [1,4], a transposed [4,3] -> [3,4], b [3,8] sliced with step 2 -> [3,4] */
static nd_tensor *fn_where_noncontig(nd_tensor *const *in, void *u)
{
    (void)u;
    const bool c[4] = {false, true, true, false};
    return nd_where(nd_from_data(c, ND_BOOL, ND_SHAPE(1, 4)), nd_t(in[0]), nd_slice(in[1], 1, 0, 8, 2));
}

/* Leaky relu: the condition comes from the input itself (values kept away from 0). */
static nd_tensor *fn_where_leaky(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *zero = nd_scalar(0.0, ND_FLOAT64);
    return nd_where(nd_gt(in[0], zero), in[0], nd_mul_scalar(in[0], 0.1));
}

/* Both branches are the same tensor. */
static nd_tensor *fn_where_same_tensor(nd_tensor *const *in, void *u)
{
    (void)u;
    const bool c[6] = {true, false, false, true, true, false};
    return nd_where(nd_from_data(c, ND_BOOL, ND_SHAPE(2, 3)), in[0], nd_mul(in[0], in[0]));
}

TEST(where)
{
    nd_scope_begin();
    GC("where same shapes", fn_where_same, NULL, leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(2, 3)));
    GC("where broadcast [3,1] [4] 0-dim", fn_where_broadcast, NULL, leaf(ANY, ND_SHAPE(4)), leaf(ANY, ND_SCALAR_SHAPE));
    GC("where non-contiguous", fn_where_noncontig, NULL, leaf(ANY, ND_SHAPE(4, 3)), leaf(ANY, ND_SHAPE(3, 8)));
    GC("where leaky relu", fn_where_leaky, NULL, leaf(AWAY, ND_SHAPE(2, 5)));
    GC("where one tensor in both branches", fn_where_same_tensor, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    nd_scope_end();
}

/* Only one branch requires grad: the other gets none and the check still holds. */
static nd_tensor *fn_where_const_b(nd_tensor *const *in, void *u)
{
    (void)u;
    const bool c[6] = {true, false, true, false, false, true};
    return nd_where(nd_from_data(c, ND_BOOL, ND_SHAPE(2, 3)), in[0], in[1]);
}

TEST(where_one_branch_requires_grad)
{
    nd_scope_begin();
    nd_tensor *b = nd_full(0.25, ND_FLOAT64, ND_SHAPE(2, 3));
    GC("where, b constant", fn_where_const_b, NULL, leaf(ANY, ND_SHAPE(2, 3)), b);
    nd_scope_end();
}

/* ------------------------------------------------------------------ reductions */

static nd_tensor *fn_sum(nd_tensor *const *in, void *u) { (void)u; return nd_sum(in[0]); }
static nd_tensor *fn_mean(nd_tensor *const *in, void *u) { (void)u; return nd_mean(in[0]); }
static nd_tensor *fn_sum_t(nd_tensor *const *in, void *u) { (void)u; return nd_sum(nd_transpose(in[0], 0, 2)); }
static nd_tensor *fn_mean_step2(nd_tensor *const *in, void *u) { (void)u; return nd_mean(nd_slice(in[0], 0, 0, 5, 2)); }

TEST(sum_and_mean)
{
    nd_scope_begin();
    GC("sum [2,3,4]", fn_sum, NULL, leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("sum 0-dim", fn_sum, NULL, leaf(ANY, ND_SCALAR_SHAPE));
    GC("sum transposed", fn_sum_t, NULL, leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("mean [2,3,4]", fn_mean, NULL, leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("mean 0-dim", fn_mean, NULL, leaf(ANY, ND_SCALAR_SHAPE));
    GC("mean step-2 slice", fn_mean_step2, NULL, leaf(ANY, ND_SHAPE(5, 3)));
    nd_scope_end();
}

typedef struct dims_ctx {
    bool mean;
    int ndims;
    int64_t dims[4];
    bool keepdim;
    bool permuted; /* reduce permute(x, (2, 0, 1)) instead of x */
} dims_ctx;

static nd_tensor *fn_reduce_dims(nd_tensor *const *in, void *user)
{
    const dims_ctx *c = user;
    nd_tensor *x = c->permuted ? nd_permute(in[0], ND_DIMS(2, 0, 1)) : in[0];
    return c->mean ? nd_mean_dims(x, c->ndims, c->dims, c->keepdim) : nd_sum_dims(x, c->ndims, c->dims, c->keepdim);
}

static void check_reduce_dims(bool mean)
{
    static const struct {
        int ndims;
        int64_t dims[4];
    } lists[] = {
        {1, {0}}, {1, {1}}, {1, {-1}}, {2, {0, 2}}, {2, {-1, -3}}, {2, {1, -1}}, {3, {0, 1, 2}}, {3, {-1, 0, -2}}, {0, {0}},
    };
    nd_scope_begin();
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        for (int keep = 0; keep < 2; keep++)
            for (int perm = 0; perm < 2; perm++) {
                dims_ctx c = {mean, lists[i].ndims, {0}, keep, perm};
                memcpy(c.dims, lists[i].dims, sizeof c.dims);
                char label[128];
                snprintf(label, sizeof label, "%s dims list #%zu (ndims %d) keepdim=%d permuted=%d",
                         mean ? "nd_mean_dims" : "nd_sum_dims", i, c.ndims, keep, perm);
                GC(label, fn_reduce_dims, &c, leaf(ANY, ND_SHAPE(2, 3, 4)));
            }
    /* A size-1 dim and a 1-D input. */
    dims_ctx one = {mean, 1, {1}, false, false};
    GC("reduce over a size-1 dim", fn_reduce_dims, &one, leaf(ANY, ND_SHAPE(3, 1, 2)));
    dims_ctx vec = {mean, 1, {0}, true, false};
    GC("reduce a 1-D tensor keepdim", fn_reduce_dims, &vec, leaf(ANY, ND_SHAPE(5)));
    nd_scope_end();
}

TEST(sum_dims) { check_reduce_dims(false); }
TEST(mean_dims) { check_reduce_dims(true); }

/* ------------------------------------------------------------------ matrix products */

typedef struct mm_ctx {
    binop op;
    bool ta, tb; /* transpose the last two dims of the leaf inside fn */
} mm_ctx;

static nd_tensor *fn_mm(nd_tensor *const *in, void *user)
{
    const mm_ctx *c = user;
    nd_tensor *a = c->ta ? nd_transpose(in[0], -1, -2) : in[0];
    nd_tensor *b = c->tb ? nd_transpose(in[1], -1, -2) : in[1];
    return c->op(a, b);
}

TEST(matmul)
{
    nd_scope_begin();
    mm_ctx m = {nd_matmul, false, false};
    GC("matmul 1-D . 1-D", fn_mm, &m, leaf(ANY, ND_SHAPE(3)), leaf(ANY, ND_SHAPE(3)));
    GC("matmul 2-D . 1-D", fn_mm, &m, leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(3)));
    GC("matmul 1-D . 2-D", fn_mm, &m, leaf(ANY, ND_SHAPE(3)), leaf(ANY, ND_SHAPE(3, 4)));
    GC("matmul 2-D . 2-D", fn_mm, &m, leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(3, 4)));
    GC("matmul 3-D . 3-D", fn_mm, &m, leaf(ANY, ND_SHAPE(2, 2, 3)), leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("matmul 3-D . 2-D", fn_mm, &m, leaf(ANY, ND_SHAPE(2, 2, 3)), leaf(ANY, ND_SHAPE(3, 4)));
    GC("matmul 4-D . 2-D", fn_mm, &m, leaf(ANY, ND_SHAPE(2, 2, 2, 3)), leaf(ANY, ND_SHAPE(3, 2)));
    GC("matmul 3-D . 1-D", fn_mm, &m, leaf(ANY, ND_SHAPE(2, 2, 3)), leaf(ANY, ND_SHAPE(3)));
    GC("matmul 1-D . 3-D", fn_mm, &m, leaf(ANY, ND_SHAPE(3)), leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("matmul 2-D . 3-D", fn_mm, &m, leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("matmul broadcast batch [2,1,2,3] . [3,3,2]", fn_mm, &m, leaf(ANY, ND_SHAPE(2, 1, 2, 3)),
       leaf(ANY, ND_SHAPE(3, 3, 2)));
    GC("matmul broadcast batch [1,2,3] . [2,3,2]", fn_mm, &m, leaf(ANY, ND_SHAPE(1, 2, 3)), leaf(ANY, ND_SHAPE(2, 3, 2)));
    GC("matmul broadcast batch [3,1,2,3] . [1,2,3,2]", fn_mm, &m, leaf(ANY, ND_SHAPE(3, 1, 2, 3)),
       leaf(ANY, ND_SHAPE(1, 2, 3, 2)));
    mm_ctx ta = {nd_matmul, true, false}, tb = {nd_matmul, false, true}, tab = {nd_matmul, true, true};
    GC("matmul 2-D transposed a", fn_mm, &ta, leaf(ANY, ND_SHAPE(3, 2)), leaf(ANY, ND_SHAPE(3, 4)));
    GC("matmul 2-D transposed b", fn_mm, &tb, leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(4, 3)));
    GC("matmul 3-D . 2-D, both transposed", fn_mm, &tab, leaf(ANY, ND_SHAPE(2, 3, 2)), leaf(ANY, ND_SHAPE(4, 3)));
    GC("matmul batched, both transposed", fn_mm, &tab, leaf(ANY, ND_SHAPE(2, 3, 2)), leaf(ANY, ND_SHAPE(2, 4, 3)));
    nd_scope_end();
}

/* a [3,1] expanded to [3,4] and b [2,8] sliced with step 2 -> [2,4], transposed -> [4,2]. */
static nd_tensor *fn_matmul_expand_slice(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_matmul(nd_expand(in[0], ND_SHAPE(3, 4)), nd_t(nd_slice(in[1], 1, 0, 8, 2)));
}

/* A batch dim made by expand: [1,2,3] -> [4,2,3] against [4,3,2]. */
static nd_tensor *fn_matmul_expanded_batch(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_matmul(nd_expand(in[0], ND_SHAPE(4, 2, 3)), in[1]);
}

TEST(matmul_non_contiguous)
{
    nd_scope_begin();
    GC("matmul expanded . sliced-transposed", fn_matmul_expand_slice, NULL, leaf(ANY, ND_SHAPE(3, 1)),
       leaf(ANY, ND_SHAPE(2, 8)));
    GC("matmul expanded batch", fn_matmul_expanded_batch, NULL, leaf(ANY, ND_SHAPE(1, 2, 3)),
       leaf(ANY, ND_SHAPE(4, 3, 2)));
    nd_scope_end();
}

TEST(mm)
{
    nd_scope_begin();
    mm_ctx p = {nd_mm, false, false}, ta = {nd_mm, true, false}, tab = {nd_mm, true, true};
    GC("mm [2,3].[3,4]", fn_mm, &p, leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(3, 4)));
    GC("mm [1,3].[3,1]", fn_mm, &p, leaf(ANY, ND_SHAPE(1, 3)), leaf(ANY, ND_SHAPE(3, 1)));
    GC("mm transposed a", fn_mm, &ta, leaf(ANY, ND_SHAPE(3, 2)), leaf(ANY, ND_SHAPE(3, 4)));
    GC("mm both transposed", fn_mm, &tab, leaf(ANY, ND_SHAPE(3, 2)), leaf(ANY, ND_SHAPE(4, 3)));
    nd_scope_end();
}

TEST(bmm)
{
    nd_scope_begin();
    mm_ctx p = {nd_bmm, false, false}, tb = {nd_bmm, false, true}, tab = {nd_bmm, true, true};
    GC("bmm [2,2,3].[2,3,4]", fn_mm, &p, leaf(ANY, ND_SHAPE(2, 2, 3)), leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("bmm transposed b", fn_mm, &tb, leaf(ANY, ND_SHAPE(3, 2, 3)), leaf(ANY, ND_SHAPE(3, 2, 3)));
    GC("bmm both transposed", fn_mm, &tab, leaf(ANY, ND_SHAPE(2, 3, 2)), leaf(ANY, ND_SHAPE(2, 4, 3)));
    nd_scope_end();
}

/* ------------------------------------------------------------------ views */

static nd_tensor *fn_view_34(nd_tensor *const *in, void *u) { (void)u; return nd_view(in[0], ND_SHAPE(3, 4)); }
static nd_tensor *fn_view_infer(nd_tensor *const *in, void *u) { (void)u; return nd_view(in[0], ND_SHAPE(-1, 2, 2)); }
static nd_tensor *fn_view_flat(nd_tensor *const *in, void *u) { (void)u; return nd_view(in[0], ND_SHAPE(12)); }
/* A view that follows the transposed layout: [4,3]ᵀ = [3,4] viewed as [3,2,2]. */
static nd_tensor *fn_view_of_t(nd_tensor *const *in, void *u) { (void)u; return nd_view(nd_t(in[0]), ND_SHAPE(3, 2, 2)); }
/* Elementwise work after a view, so the gradient flowing back is not all ones. */
static nd_tensor *fn_view_then_mul(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *v = nd_view(in[0], ND_SHAPE(4, 3));
    return nd_mul(v, v);
}

TEST(view)
{
    nd_scope_begin();
    GC("view [2,6] -> [3,4]", fn_view_34, NULL, leaf(ANY, ND_SHAPE(2, 6)));
    GC("view [2,6] -> [-1,2,2]", fn_view_infer, NULL, leaf(ANY, ND_SHAPE(2, 6)));
    GC("view [2,2,3] -> [12]", fn_view_flat, NULL, leaf(ANY, ND_SHAPE(2, 2, 3)));
    GC("view of a transpose, split dim", fn_view_of_t, NULL, leaf(ANY, ND_SHAPE(4, 3)));
    GC("view then mul", fn_view_then_mul, NULL, leaf(ANY, ND_SHAPE(2, 6)));
    nd_scope_end();
}

static nd_tensor *fn_reshape_43(nd_tensor *const *in, void *u) { (void)u; return nd_reshape(in[0], ND_SHAPE(4, 3)); }
static nd_tensor *fn_reshape_infer(nd_tensor *const *in, void *u) { (void)u; return nd_reshape(in[0], ND_SHAPE(2, -1)); }
static nd_tensor *fn_reshape_scalar(nd_tensor *const *in, void *u) { (void)u; return nd_reshape(in[0], ND_SCALAR_SHAPE); }
/* Must copy: a transposed [3,4] -> [4,3] has no view as [2,6]. */
static nd_tensor *fn_reshape_of_t(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *r = nd_reshape(nd_t(in[0]), ND_SHAPE(2, 6));
    return nd_mul(r, nd_add_scalar(r, 1.0));
}
static nd_tensor *fn_reshape_of_step2(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_reshape(nd_slice(in[0], 1, 0, 6, 2), ND_SHAPE(-1));
}

TEST(reshape)
{
    nd_scope_begin();
    GC("reshape [2,6] -> [4,3]", fn_reshape_43, NULL, leaf(ANY, ND_SHAPE(2, 6)));
    GC("reshape [3,4] -> [2,-1]", fn_reshape_infer, NULL, leaf(ANY, ND_SHAPE(3, 4)));
    GC("reshape [1,1] -> 0-dim", fn_reshape_scalar, NULL, leaf(ANY, ND_SHAPE(1, 1)));
    GC("reshape of a transpose (copies)", fn_reshape_of_t, NULL, leaf(ANY, ND_SHAPE(3, 4)));
    GC("reshape of a step-2 slice (copies)", fn_reshape_of_step2, NULL, leaf(ANY, ND_SHAPE(2, 6)));
    /* The transposed case really is the copying path. */
    nd_tensor *x = leaf(ANY, ND_SHAPE(3, 4));
    nd_tensor *r = nd_reshape(nd_t(x), ND_SHAPE(2, 6));
    CHECK(r && !nd_shares_storage(r, x));
    nd_scope_end();
}

static nd_tensor *fn_transpose_02(nd_tensor *const *in, void *u) { (void)u; return nd_transpose(in[0], 0, 2); }
static nd_tensor *fn_transpose_neg(nd_tensor *const *in, void *u) { (void)u; return nd_transpose(in[0], -1, -2); }
static nd_tensor *fn_transpose_same(nd_tensor *const *in, void *u) { (void)u; return nd_transpose(in[0], 1, 1); }
static nd_tensor *fn_transpose_mul(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *t = nd_transpose(in[0], 0, 1);
    return nd_mul(t, nd_exp(t));
}

TEST(transpose)
{
    nd_scope_begin();
    GC("transpose(0, 2)", fn_transpose_02, NULL, leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("transpose(-1, -2)", fn_transpose_neg, NULL, leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("transpose(1, 1)", fn_transpose_same, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("transpose then elementwise", fn_transpose_mul, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    nd_scope_end();
}

static nd_tensor *fn_t(nd_tensor *const *in, void *u) { (void)u; return nd_t(in[0]); }
static nd_tensor *fn_t_t(nd_tensor *const *in, void *u) { (void)u; return nd_mul_scalar(nd_t(nd_t(in[0])), 2.0); }

TEST(t)
{
    nd_scope_begin();
    GC("t [2,3]", fn_t, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("t [3]", fn_t, NULL, leaf(ANY, ND_SHAPE(3)));
    GC("t 0-dim", fn_t, NULL, leaf(ANY, ND_SCALAR_SHAPE));
    GC("t(t(x))", fn_t_t, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    nd_scope_end();
}

static nd_tensor *fn_permute_201(nd_tensor *const *in, void *u) { (void)u; return nd_permute(in[0], ND_DIMS(2, 0, 1)); }
static nd_tensor *fn_permute_neg(nd_tensor *const *in, void *u) { (void)u; return nd_permute(in[0], ND_DIMS(1, -1, 0)); }
static nd_tensor *fn_permute_4d(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_sigmoid(nd_permute(in[0], ND_DIMS(3, 1, 0, 2)));
}

TEST(permute)
{
    nd_scope_begin();
    GC("permute (2,0,1)", fn_permute_201, NULL, leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("permute (1,-1,0)", fn_permute_neg, NULL, leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("permute 4-D then sigmoid", fn_permute_4d, NULL, leaf(ANY, ND_SHAPE(2, 1, 3, 2)));
    nd_scope_end();
}

static nd_tensor *fn_squeeze(nd_tensor *const *in, void *u) { (void)u; return nd_squeeze(in[0]); }
static nd_tensor *fn_squeeze_dim1(nd_tensor *const *in, void *u) { (void)u; return nd_squeeze_dim(in[0], 1); }
static nd_tensor *fn_squeeze_dim_noop(nd_tensor *const *in, void *u) { (void)u; return nd_squeeze_dim(in[0], -1); }
static nd_tensor *fn_unsqueeze0(nd_tensor *const *in, void *u) { (void)u; return nd_unsqueeze(in[0], 0); }
static nd_tensor *fn_unsqueeze_last(nd_tensor *const *in, void *u) { (void)u; return nd_unsqueeze(in[0], -1); }
static nd_tensor *fn_unsqueeze_mid(nd_tensor *const *in, void *u)
{
    (void)u;
    /* Broadcast against the unsqueezed tensor so the new dim matters. */
    nd_tensor *a = nd_unsqueeze(in[0], 1);
    return nd_mul(a, nd_unsqueeze(in[0], 0));
}

TEST(squeeze_and_unsqueeze)
{
    nd_scope_begin();
    GC("squeeze [2,1,3,1]", fn_squeeze, NULL, leaf(ANY, ND_SHAPE(2, 1, 3, 1)));
    GC("squeeze [1,1]", fn_squeeze, NULL, leaf(ANY, ND_SHAPE(1, 1)));
    GC("squeeze_dim(1) [2,1,3]", fn_squeeze_dim1, NULL, leaf(ANY, ND_SHAPE(2, 1, 3)));
    GC("squeeze_dim(-1) of size 3 (no-op)", fn_squeeze_dim_noop, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("unsqueeze(0)", fn_unsqueeze0, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("unsqueeze(-1)", fn_unsqueeze_last, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("unsqueeze 0-dim", fn_unsqueeze0, NULL, leaf(ANY, ND_SCALAR_SHAPE));
    GC("unsqueeze(1) * unsqueeze(0)", fn_unsqueeze_mid, NULL, leaf(ANY, ND_SHAPE(3)));
    nd_scope_end();
}

static nd_tensor *fn_expand_lead(nd_tensor *const *in, void *u) { (void)u; return nd_expand(in[0], ND_SHAPE(2, 3, 4)); }
static nd_tensor *fn_expand_keep(nd_tensor *const *in, void *u) { (void)u; return nd_expand(in[0], ND_SHAPE(-1, 2, -1)); }
static nd_tensor *fn_expand_scalar(nd_tensor *const *in, void *u) { (void)u; return nd_expand(in[0], ND_SHAPE(2, 2)); }
static nd_tensor *fn_expand_mul(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *e = nd_expand(in[0], ND_SHAPE(3, 4));
    return nd_mul(e, nd_t(nd_expand(in[0], ND_SHAPE(4, 3))));
}

TEST(expand)
{
    nd_scope_begin();
    GC("expand [3,1] -> [2,3,4]", fn_expand_lead, NULL, leaf(ANY, ND_SHAPE(3, 1)));
    GC("expand [4,1,3] -> [-1,2,-1]", fn_expand_keep, NULL, leaf(ANY, ND_SHAPE(4, 1, 3)));
    GC("expand 0-dim -> [2,2]", fn_expand_scalar, NULL, leaf(ANY, ND_SCALAR_SHAPE));
    GC("expand [1,1] twice, one transposed", fn_expand_mul, NULL, leaf(ANY, ND_SHAPE(1, 1)));
    nd_scope_end();
}

static nd_tensor *fn_slice_rows(nd_tensor *const *in, void *u) { (void)u; return nd_slice(in[0], 0, 1, 7, 2); }
static nd_tensor *fn_slice_cols(nd_tensor *const *in, void *u) { (void)u; return nd_slice(in[0], -1, 0, 100, 2); }
static nd_tensor *fn_slice_neg(nd_tensor *const *in, void *u) { (void)u; return nd_slice(in[0], 1, -3, -1, 1); }
static nd_tensor *fn_slice_twice(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *s = nd_slice(nd_slice(in[0], 0, 0, 7, 2), 0, 1, 4, 2);
    return nd_mul(s, s);
}

TEST(slice)
{
    nd_scope_begin();
    GC("slice dim 0 [1:7:2]", fn_slice_rows, NULL, leaf(ANY, ND_SHAPE(7, 4)));
    GC("slice dim -1 [0:100:2]", fn_slice_cols, NULL, leaf(ANY, ND_SHAPE(3, 5)));
    GC("slice negative bounds", fn_slice_neg, NULL, leaf(ANY, ND_SHAPE(2, 5)));
    GC("slice of a slice, squared", fn_slice_twice, NULL, leaf(ANY, ND_SHAPE(7, 2)));
    nd_scope_end();
}

static nd_tensor *fn_select_last(nd_tensor *const *in, void *u) { (void)u; return nd_select(in[0], 1, -1); }
static nd_tensor *fn_select_row(nd_tensor *const *in, void *u) { (void)u; return nd_select(in[0], 0, 2); }
static nd_tensor *fn_select_to_scalar(nd_tensor *const *in, void *u) { (void)u; return nd_select(in[0], 0, 1); }
static nd_tensor *fn_select_two(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_mul(nd_select(in[0], 0, 0), nd_select(in[0], 0, 2));
}

TEST(select)
{
    nd_scope_begin();
    GC("select(1, -1)", fn_select_last, NULL, leaf(ANY, ND_SHAPE(3, 4)));
    GC("select(0, 2)", fn_select_row, NULL, leaf(ANY, ND_SHAPE(3, 4)));
    GC("select of a 1-D tensor", fn_select_to_scalar, NULL, leaf(ANY, ND_SHAPE(3)));
    GC("select two rows, multiplied", fn_select_two, NULL, leaf(ANY, ND_SHAPE(3, 2, 2)));
    nd_scope_end();
}

static nd_tensor *fn_narrow(nd_tensor *const *in, void *u) { (void)u; return nd_narrow(in[0], 1, 1, 3); }
static nd_tensor *fn_narrow_neg(nd_tensor *const *in, void *u) { (void)u; return nd_narrow(in[0], -2, -2, 2); }

TEST(narrow)
{
    nd_scope_begin();
    GC("narrow(1, 1, 3)", fn_narrow, NULL, leaf(ANY, ND_SHAPE(3, 5)));
    GC("narrow(-2, -2, 2)", fn_narrow_neg, NULL, leaf(ANY, ND_SHAPE(2, 4, 3)));
    nd_scope_end();
}

static nd_tensor *fn_flatten_all(nd_tensor *const *in, void *u) { (void)u; return nd_flatten(in[0], 0, -1); }
static nd_tensor *fn_flatten_12(nd_tensor *const *in, void *u) { (void)u; return nd_flatten(in[0], 1, 2); }
static nd_tensor *fn_flatten_t(nd_tensor *const *in, void *u) { (void)u; return nd_flatten(nd_transpose(in[0], 0, 2), 0, 1); }

TEST(flatten)
{
    nd_scope_begin();
    GC("flatten(0, -1)", fn_flatten_all, NULL, leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("flatten(1, 2)", fn_flatten_12, NULL, leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("flatten of a transpose", fn_flatten_t, NULL, leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("flatten 0-dim", fn_flatten_all, NULL, leaf(ANY, ND_SCALAR_SHAPE));
    nd_scope_end();
}

/* ------------------------------------------------------------------ copies and dtype */

static nd_tensor *fn_clone(nd_tensor *const *in, void *u) { (void)u; return nd_clone(in[0]); }
static nd_tensor *fn_clone_t(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *c = nd_clone(nd_t(in[0]));
    return nd_mul(c, c);
}
static nd_tensor *fn_contiguous_t(nd_tensor *const *in, void *u) { (void)u; return nd_contiguous(nd_t(in[0])); }
static nd_tensor *fn_contiguous_plain(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_mul_scalar(nd_contiguous(in[0]), 2.0);
}
static nd_tensor *fn_contiguous_step2(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_tanh(nd_contiguous(nd_slice(in[0], 0, 0, 5, 2)));
}

TEST(clone_and_contiguous)
{
    nd_scope_begin();
    GC("clone", fn_clone, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("clone of a transpose, squared", fn_clone_t, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("contiguous of a transpose", fn_contiguous_t, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("contiguous of a contiguous tensor", fn_contiguous_plain, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("contiguous of a step-2 slice", fn_contiguous_step2, NULL, leaf(ANY, ND_SHAPE(5, 2)));
    nd_scope_end();
}

/* float64 -> float32 -> float64. The inputs are tiny (|x| <= 0.002), so float32 rounding moves the
 * central difference by well under rtol. */
static nd_tensor *fn_to_f32_and_back(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_mul_scalar(nd_to(nd_to(in[0], ND_FLOAT32), ND_FLOAT64), 3.0);
}
static nd_tensor *fn_to_same(nd_tensor *const *in, void *u) { (void)u; return nd_mul(nd_to(in[0], ND_FLOAT64), in[0]); }
/* float32 work in the middle of the graph: the gradient comes back as float64. */
static nd_tensor *fn_to_f32_plus_x(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *f = nd_to(in[0], ND_FLOAT32);
    return nd_add(nd_to(f, ND_FLOAT64), in[0]);
}

TEST(to_dtype)
{
    nd_scope_begin();
    GC("to float32 and back", fn_to_f32_and_back, NULL, leaf(SMALL, ND_SHAPE(2, 3)));
    GC("to float32 and back, added to x", fn_to_f32_plus_x, NULL, leaf(SMALL, ND_SHAPE(3)));
    GC("to float64 (same dtype)", fn_to_same, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    /* The float32 copy carries a ToCopyBackward0 node and its gradient reaches x as float64. */
    nd_tensor *x = leaf(ANY, ND_SHAPE(2));
    nd_tensor *y = nd_sum(nd_to(x, ND_FLOAT32));
    CHECK(y && nd_dtype_of(y) == ND_FLOAT32);
    CHECK(nd_backward(y) == ND_OK);
    CHECK(nd_grad(x) && nd_dtype_of(nd_grad(x)) == ND_FLOAT64);
    CHECK_VALUES(nd_grad(x), 0, 1, 1);
    nd_scope_end();
}

/* ------------------------------------------------------------------ composites */

/* loss = mean((tanh(x W1 + b1) W2 + b2 - y)²); inputs x, W1, b1, W2, b2, y (y needs no grad). */
static nd_tensor *fn_mlp(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *h = nd_tanh(nd_add(nd_matmul(in[0], in[1]), in[2]));
    nd_tensor *out = nd_add(nd_matmul(h, in[3]), in[4]);
    nd_tensor *err = nd_sub(out, in[5]);
    return nd_mean(nd_mul(err, err));
}

TEST(mlp_two_layer_tanh)
{
    nd_scope_begin();
    nd_tensor *y = leaf(ANY, ND_SHAPE(4, 2));
    CHECK(nd_set_requires_grad(y, false) == ND_OK);
    GC("2-layer tanh MLP", fn_mlp, NULL, leaf(ANY, ND_SHAPE(4, 3)), leaf(ANY, ND_SHAPE(3, 5)), leaf(ANY, ND_SHAPE(5)),
       leaf(ANY, ND_SHAPE(5, 2)), leaf(ANY, ND_SHAPE(2)), y);
    nd_scope_end();
}

/* A long chain through most op kinds: views, broadcasting, reductions, every unary op. */
static nd_tensor *fn_long_chain(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *x = in[0], *w = in[1], *s = in[2];
    nd_tensor *a = nd_sigmoid(nd_matmul(nd_permute(x, ND_DIMS(1, 0, 2)), w));        /* [3,2,4] */
    nd_tensor *b = nd_exp(nd_mul_scalar(nd_sum_dims(a, ND_DIMS(1), true), 0.5));     /* [3,1,4] */
    nd_tensor *c = nd_div(nd_log(nd_add_scalar(nd_mul(a, b), 1.0)), nd_pow_scalar(b, 0.5));
    nd_tensor *d = nd_relu(nd_sub(c, nd_mul_scalar(nd_select(c, 0, 0), 0.5)));       /* broadcast [2,4] */
    nd_tensor *e = nd_tanh(nd_mul(nd_flatten(d, 1, 2), s));                           /* [3,8] */
    nd_tensor *f = nd_mean_dims(nd_view(e, ND_SHAPE(3, 2, 4)), ND_DIMS(-1), false);   /* [3,2] */
    nd_tensor *g = nd_rsub_scalar(1.5, nd_neg(nd_mean_dims(f, ND_DIMS(0), true)));     /* [1,2] */
    return nd_sum(nd_pow(nd_add_scalar(f, 2.0), g));
}

TEST(long_chain)
{
    nd_scope_begin();
    GC("long chain", fn_long_chain, NULL, leaf(ANY, ND_SHAPE(2, 3, 2)), leaf(ANY, ND_SHAPE(2, 4)),
       leaf(ANY, ND_SCALAR_SHAPE));
    nd_scope_end();
}

/* ------------------------------------------------------------------ nd_gradcheck itself */

static nd_tensor *fn_square_sum(nd_tensor *const *in, void *u) { (void)u; return nd_sum(nd_mul(in[0], in[0])); }

TEST(gradcheck_passes_for_correct_function)
{
    nd_scope_begin();
    nd_tensor *x = leaf(ANY, ND_SHAPE(2, 3));
    double before[6], after[6];
    CHECK(nd_copy_out(x, before, sizeof before, ND_FLOAT64) == ND_OK);
    CHECK(nd_gradcheck(fn_square_sum, NULL, 1, (nd_tensor *const[]){x}, GC_EPS, GC_ATOL, GC_RTOL) == ND_OK);
    CHECK(nd_last_status() == ND_OK);
    /* The perturbed elements are restored and no .grad is touched. */
    CHECK(nd_copy_out(x, after, sizeof after, ND_FLOAT64) == ND_OK);
    CHECK(memcmp(before, after, sizeof before) == 0);
    CHECK(nd_grad(x) == NULL);
    nd_scope_end();
}

TEST(gradcheck_rejects_float32_inputs)
{
    nd_scope_begin();
    nd_tensor *x = nd_ones(ND_FLOAT32, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(x, true) == ND_OK);
    nd_clear_error();
    CHECK(nd_gradcheck(fn_square_sum, NULL, 1, (nd_tensor *const[]){x}, GC_EPS, GC_ATOL, GC_RTOL) == ND_ERR_DTYPE);
    CHECK(nd_last_status() == ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_gradcheck");
    CHECK_ERROR_HAS("float32");
    CHECK_VALUES(x, 0, 1, 1, 1, 1, 1, 1);
    nd_scope_end();
}

TEST(gradcheck_rejects_expanded_inputs)
{
    nd_scope_begin();
    nd_tensor *base = nd_from_f64((const double[]){1, 2, 3}, ND_SHAPE(3, 1));
    nd_tensor *e = nd_expand(base, ND_SHAPE(3, 4));
    CHECK(e && nd_is_leaf(e));
    CHECK(nd_set_requires_grad(e, true) == ND_OK);
    nd_clear_error();
    nd_status st = nd_gradcheck(fn_square_sum, NULL, 1, (nd_tensor *const[]){e}, GC_EPS, GC_ATOL, GC_RTOL);
    CHECK(st != ND_OK);
    CHECK(nd_last_status() == st);
    CHECK_ERROR_HAS("nd_gradcheck");
    CHECK_ERROR_HAS("expanded");
    CHECK_VALUES(base, 0, 1, 2, 3);
    nd_scope_end();
}

/* x * detach(x): the analytic gradient sees only one factor (x), the numeric one both (2x). */
static nd_tensor *fn_wrong_gradient(nd_tensor *const *in, void *u) { (void)u; return nd_mul(in[0], nd_detach(in[0])); }
/* relu at exactly 0: analytic 0, central difference 0.5. */
static nd_tensor *fn_relu(nd_tensor *const *in, void *u) { (void)u; return nd_relu(in[0]); }

TEST(gradcheck_reports_a_mismatch)
{
    nd_scope_begin();
    nd_tensor *x = nd_from_f64((const double[]){0.5, -1.0, 2.0}, ND_SHAPE(3));
    CHECK(nd_set_requires_grad(x, true) == ND_OK);
    nd_clear_error();
    CHECK(nd_gradcheck(fn_wrong_gradient, NULL, 1, (nd_tensor *const[]){x}, GC_EPS, GC_ATOL, GC_RTOL) == ND_ERR_GRAD);
    CHECK_ERROR_HAS("nd_gradcheck");
    CHECK_ERROR_HAS("mismatch");
    CHECK_ERROR_HAS("analytic 0.5"); /* element 0: analytic x = 0.5, numeric 2x = 1 */
    CHECK_VALUES(x, 0, 0.5, -1.0, 2.0);

    nd_tensor *z = nd_from_f64((const double[]){1.0, 0.0}, ND_SHAPE(2));
    CHECK(nd_set_requires_grad(z, true) == ND_OK);
    nd_clear_error();
    CHECK(nd_gradcheck(fn_relu, NULL, 1, (nd_tensor *const[]){z}, GC_EPS, GC_ATOL, GC_RTOL) == ND_ERR_GRAD);
    CHECK_ERROR_HAS("input 0, element 1");
    nd_scope_end();
}

static nd_tensor *fn_bad_shapes(nd_tensor *const *in, void *u) { (void)u; return nd_add(in[0], in[1]); }

TEST(gradcheck_other_refusals)
{
    nd_scope_begin();
    /* No input requires grad. */
    nd_tensor *c = nd_ones(ND_FLOAT64, ND_SHAPE(2));
    nd_clear_error();
    CHECK(nd_gradcheck(fn_square_sum, NULL, 1, (nd_tensor *const[]){c}, GC_EPS, GC_ATOL, GC_RTOL) == ND_ERR_GRAD);
    CHECK_ERROR_HAS("nd_gradcheck");
    /* fn fails: its own error comes back. */
    nd_tensor *a = leaf(ANY, ND_SHAPE(2, 3)), *b = leaf(ANY, ND_SHAPE(4));
    nd_clear_error();
    CHECK(nd_gradcheck(fn_bad_shapes, NULL, 2, (nd_tensor *const[]){a, b}, GC_EPS, GC_ATOL, GC_RTOL) == ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_add");
    /* NULL function / input. */
    nd_clear_error();
    CHECK(nd_gradcheck(NULL, NULL, 1, (nd_tensor *const[]){a}, GC_EPS, GC_ATOL, GC_RTOL) == ND_ERR_NULL);
    nd_clear_error();
    CHECK(nd_gradcheck(fn_square_sum, NULL, 1, (nd_tensor *const[]){NULL}, GC_EPS, GC_ATOL, GC_RTOL) == ND_ERR_NULL);
    CHECK_ERROR_HAS("nd_gradcheck");
    nd_scope_end();
}

void run_suite(void)
{
    RUN(add);
    RUN(sub);
    RUN(mul);
    RUN(div);
    RUN(pow_tensor_exponent);
    RUN(repeated_use_of_one_tensor);
    RUN(pow_scalar);
    RUN(add_scalar);
    RUN(sub_scalar);
    RUN(rsub_scalar);
    RUN(mul_scalar);
    RUN(div_scalar);
    RUN(neg);
    RUN(relu);
    RUN(exp);
    RUN(log);
    RUN(tanh);
    RUN(sigmoid);
    RUN(where);
    RUN(where_one_branch_requires_grad);
    RUN(sum_and_mean);
    RUN(sum_dims);
    RUN(mean_dims);
    RUN(matmul);
    RUN(matmul_non_contiguous);
    RUN(mm);
    RUN(bmm);
    RUN(view);
    RUN(reshape);
    RUN(transpose);
    RUN(t);
    RUN(permute);
    RUN(squeeze_and_unsqueeze);
    RUN(expand);
    RUN(slice);
    RUN(select);
    RUN(narrow);
    RUN(flatten);
    RUN(clone_and_contiguous);
    RUN(to_dtype);
    RUN(mlp_two_layer_tanh);
    RUN(long_chain);
    RUN(gradcheck_passes_for_correct_function);
    RUN(gradcheck_rejects_float32_inputs);
    RUN(gradcheck_rejects_expanded_inputs);
    RUN(gradcheck_reports_a_mismatch);
    RUN(gradcheck_other_refusals);
}

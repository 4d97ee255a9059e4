/* Finite-difference gradchecks (float64, eps 1e-6, atol 1e-5, rtol 1e-3) of the ops added after
 * the core set: unary math and activations, maximum/minimum/masked_fill, the extra reductions,
 * the shape and indexing ops, with broadcast and non-contiguous operands; second-order checks
 * (the gradient, built with create_graph, checked again) for a few of them; quick checks of the
 * core ops; and a closing coverage test: every recorded op's backward rule must have run in this
 * binary. Inputs are kept well away (>= 0.1) from kinks, bounds, ties and zeros unless a test
 * is about exactly that. */
#include "harness.h"

#include <math.h>
#include <stdlib.h>

#define GC_EPS 1e-6
#define GC_ATOL 1e-5
#define GC_RTOL 1e-3

/* ------------------------------------------------------------------ leaves */

/* Families of leaf values.
 * ANY      sin-based, in [-0.9, 0.9]
 * POS      in [0.6, 1.6]
 * AWAY     |v| >= 0.2, in [-1, 1]
 * GRID     12 fixed values, each >= 0.15 from 0, +-0.5 and +-1 (the kinks and bounds used below)
 * OFFGRID  12 other fixed values, each >= 0.1 from every GRID value (no ties or kinks in
 *          maximum/minimum/l1 between a GRID and an OFFGRID operand)
 * DISTINCT a permutation of evenly spaced values >= 0.1 apart (no ties in max/min/max_dim)
 * SMALL    |v| <= 0.002 (float32 round trips stay accurate relative to eps) */
enum { ANY, POS, AWAY, GRID, OFFGRID, DISTINCT, SMALL };

static const double grid_values[12] = {-1.45, -1.15, -0.85, -0.65, -0.3, -0.15, 0.15, 0.3, 0.65, 0.85, 1.15, 1.45};
static const double offgrid_values[12] = {-1.75, -1.3, -1.0, -0.75, -0.475, 0.0, 0.475, 0.75, 1.0, 1.3, 1.6, -1.6};

static int salt_counter;

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t r = a % b;
        a = b;
        b = r;
    }
    return a;
}

static void fill_values(int kind, int64_t n, int salt, double *v)
{
    int64_t step = 7;
    while (n > 1 && gcd64(step, n) != 1)
        step++;
    for (int64_t i = 0; i < n; i++) {
        double s = sin(1.37 * (double)i + 0.71 * (double)salt + 0.4);
        switch (kind) {
        case POS: v[i] = 1.1 + 0.5 * s; break;
        case AWAY: v[i] = s >= 0 ? 0.2 + 0.8 * s : -0.2 + 0.8 * s; break;
        case GRID: v[i] = grid_values[(i * 5 + salt) % 12]; break;
        case OFFGRID: v[i] = offgrid_values[(i * 7 + salt) % 12]; break;
        case DISTINCT: v[i] = -1.2 + 2.4 * ((double)((i * step + salt) % n) + 0.5) / (double)n; break;
        case SMALL: v[i] = 0.002 * s; break;
        default: v[i] = 0.9 * s; break;
        }
    }
}

static nd_tensor *require(nd_tensor *t)
{
    if (t && nd_set_requires_grad(t, true) != ND_OK)
        return NULL;
    return t;
}

/* A float64 leaf requiring grad, owned by the current scope. */
static nd_tensor *leaf(int kind, int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v)
        return NULL;
    fill_values(kind, n, ++salt_counter, v);
    nd_tensor *t = nd_from_f64(v, ndim, shape);
    free(v);
    return require(t);
}

/* A float64 leaf requiring grad with the given values. */
static nd_tensor *leaf_of(const double *values, int ndim, const int64_t *shape)
{
    return require(nd_from_f64(values, ndim, shape));
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
    nd_clear_error();
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

/* Constants made inside fn (owned by the scope fn runs in). */
static nd_tensor *idx(const int64_t *values, int ndim, const int64_t *shape) { return nd_from_i64(values, ndim, shape); }
static nd_tensor *bools(const bool *values, int ndim, const int64_t *shape)
{
    return nd_from_data(values, ND_BOOL, ndim, shape);
}

/* ------------------------------------------------------------------ unary ops */

/* An op on one tensor with up to two C parameters. */
typedef nd_tensor *(*unary_op)(nd_tensor *x, const double *p);

static nd_tensor *u_abs(nd_tensor *x, const double *p) { (void)p; return nd_abs(x); }
static nd_tensor *u_sqrt(nd_tensor *x, const double *p) { (void)p; return nd_sqrt(x); }
static nd_tensor *u_rsqrt(nd_tensor *x, const double *p) { (void)p; return nd_rsqrt(x); }
static nd_tensor *u_square(nd_tensor *x, const double *p) { (void)p; return nd_square(x); }
static nd_tensor *u_sin(nd_tensor *x, const double *p) { (void)p; return nd_sin(x); }
static nd_tensor *u_cos(nd_tensor *x, const double *p) { (void)p; return nd_cos(x); }
static nd_tensor *u_log1p(nd_tensor *x, const double *p) { (void)p; return nd_log1p(x); }
static nd_tensor *u_expm1(nd_tensor *x, const double *p) { (void)p; return nd_expm1(x); }
static nd_tensor *u_erf(nd_tensor *x, const double *p) { (void)p; return nd_erf(x); }
static nd_tensor *u_gelu(nd_tensor *x, const double *p) { (void)p; return nd_gelu(x, false); }
static nd_tensor *u_gelu_tanh(nd_tensor *x, const double *p) { (void)p; return nd_gelu(x, true); }
static nd_tensor *u_silu(nd_tensor *x, const double *p) { (void)p; return nd_silu(x); }
static nd_tensor *u_softplus(nd_tensor *x, const double *p) { return nd_softplus(x, p[0], p[1]); }
static nd_tensor *u_leaky_relu(nd_tensor *x, const double *p) { return nd_leaky_relu(x, p[0]); }
static nd_tensor *u_elu(nd_tensor *x, const double *p) { return nd_elu(x, p[0]); }
static nd_tensor *u_hardtanh(nd_tensor *x, const double *p) { return nd_hardtanh(x, p[0], p[1]); }
static nd_tensor *u_clamp(nd_tensor *x, const double *p) { return nd_clamp(x, p[0], p[1]); }
static nd_tensor *u_sign(nd_tensor *x, const double *p) { (void)p; return nd_sign(x); }
static nd_tensor *u_reciprocal(nd_tensor *x, const double *p) { (void)p; return nd_reciprocal(x); }

/* How fn presents its leaf to the op. */
enum {
    U_PLAIN,     /* the leaf itself */
    U_TRANSPOSE, /* leaf [3,2] transposed -> [2,3] */
    U_STEP2,     /* leaf [2,7] sliced [1:7:2] along dim 1 -> [2,3] */
    U_EXPAND,    /* leaf [3,1] expanded -> [3,4] */
};

typedef struct unary_ctx {
    unary_op op;
    double p[2];
    int layout;
} unary_ctx;

static nd_tensor *present(nd_tensor *x, int layout)
{
    switch (layout) {
    case U_TRANSPOSE: return nd_transpose(x, 0, 1);
    case U_STEP2: return nd_slice(x, 1, 1, 7, 2);
    case U_EXPAND: return nd_expand(x, ND_SHAPE(3, 4));
    default: return x;
    }
}

static nd_tensor *fn_unary(nd_tensor *const *in, void *user)
{
    const unary_ctx *c = user;
    return c->op(present(in[0], c->layout), c->p);
}

static void check_unary_p(const char *name, unary_op op, double p0, double p1, int kind)
{
    nd_scope_begin();
    char label[128];
    unary_ctx c = {op, {p0, p1}, U_PLAIN};
#define LBL(what) (snprintf(label, sizeof label, "%s(%g, %g) %s", name, p0, p1, what), label)
    GC(LBL("[2,3]"), fn_unary, &c, leaf(kind, ND_SHAPE(2, 3)));
    GC(LBL("0-dim"), fn_unary, &c, leaf(kind, ND_SCALAR_SHAPE));
    GC(LBL("[2,2,3]"), fn_unary, &c, leaf(kind, ND_SHAPE(2, 2, 3)));
    unary_ctx ct = {op, {p0, p1}, U_TRANSPOSE}, cs = {op, {p0, p1}, U_STEP2}, ce = {op, {p0, p1}, U_EXPAND};
    GC(LBL("transposed"), fn_unary, &ct, leaf(kind, ND_SHAPE(3, 2)));
    GC(LBL("step-2 slice"), fn_unary, &cs, leaf(kind, ND_SHAPE(2, 7)));
    GC(LBL("expanded [3,1] -> [3,4]"), fn_unary, &ce, leaf(kind, ND_SHAPE(3, 1)));
#undef LBL
    nd_scope_end();
}

static void check_unary(const char *name, unary_op op, int kind) { check_unary_p(name, op, 0, 0, kind); }

TEST(abs) { check_unary("nd_abs", u_abs, GRID); }
TEST(sqrt) { check_unary("nd_sqrt", u_sqrt, POS); }
TEST(rsqrt) { check_unary("nd_rsqrt", u_rsqrt, POS); }
TEST(square) { check_unary("nd_square", u_square, ANY); }
TEST(sin) { check_unary("nd_sin", u_sin, GRID); }
TEST(cos) { check_unary("nd_cos", u_cos, GRID); }
TEST(log1p) { check_unary("nd_log1p", u_log1p, ANY); }
TEST(expm1) { check_unary("nd_expm1", u_expm1, GRID); }
TEST(erf) { check_unary("nd_erf", u_erf, GRID); }
TEST(gelu_exact) { check_unary("nd_gelu exact", u_gelu, GRID); }
TEST(gelu_tanh) { check_unary("nd_gelu tanh", u_gelu_tanh, GRID); }
TEST(silu) { check_unary("nd_silu", u_silu, GRID); }
TEST(softplus)
{
    check_unary_p("nd_softplus", u_softplus, 1.0, 20.0, GRID);
    check_unary_p("nd_softplus", u_softplus, 2.5, 20.0, GRID);
    /* beta 2, threshold 1: values above 0.5 are in the linear part, the rest are not. */
    check_unary_p("nd_softplus", u_softplus, 2.0, 1.0, GRID);
    check_unary_p("nd_softplus", u_softplus, -1.0, 20.0, GRID);
}
TEST(leaky_relu)
{
    check_unary_p("nd_leaky_relu", u_leaky_relu, 0.01, 0, GRID);
    check_unary_p("nd_leaky_relu", u_leaky_relu, 0.2, 0, GRID);
    check_unary_p("nd_leaky_relu", u_leaky_relu, -0.5, 0, GRID);
}
TEST(elu)
{
    check_unary_p("nd_elu", u_elu, 1.0, 0, GRID);
    check_unary_p("nd_elu", u_elu, 0.5, 0, GRID);
}
TEST(hardtanh)
{
    check_unary_p("nd_hardtanh", u_hardtanh, -1.0, 1.0, GRID);
    check_unary_p("nd_hardtanh", u_hardtanh, -0.5, 1.0, GRID);
}
TEST(clamp)
{
    check_unary_p("nd_clamp", u_clamp, -0.5, 1.0, GRID);
    check_unary_p("nd_clamp", u_clamp, -INFINITY, 0.5, GRID);
    check_unary_p("nd_clamp", u_clamp, -1.0, INFINITY, GRID);
    check_unary_p("nd_clamp", u_clamp, -INFINITY, INFINITY, GRID);
}
TEST(sign) { check_unary("nd_sign", u_sign, GRID); }
TEST(reciprocal) { check_unary("nd_reciprocal", u_reciprocal, AWAY); }

/* Activations inside a small composite, so the gradient reaching them is not all ones. */
static nd_tensor *fn_activation_chain(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *h = nd_matmul(in[0], in[1]);                                    /* [3,4] */
    nd_tensor *a = nd_gelu(h, false), *b = nd_silu(h), *c = nd_softplus(h, 1.0, 20.0);
    nd_tensor *d = nd_elu(nd_mul_scalar(h, 2.0), 1.0);
    return nd_sum(nd_mul(nd_add(nd_add(a, b), nd_mul(c, d)), nd_erf(h)));
}

TEST(activation_chain)
{
    nd_scope_begin();
    GC("gelu/silu/softplus/elu/erf chain", fn_activation_chain, NULL, leaf(ANY, ND_SHAPE(3, 2)), leaf(ANY, ND_SHAPE(2, 4)));
    nd_scope_end();
}

/* ------------------------------------------------------------------ binary ops */

typedef nd_tensor *(*binop)(nd_tensor *, nd_tensor *);

enum {
    B_PLAIN,        /* op(a, b) */
    B_T_AND_STEP2,  /* a [4,3] transposed, b [3,8] sliced with step 2 along dim 1: both [3,4] */
    B_EXPAND_AND_T, /* a [3,1] expanded to [3,4], b [4,3] through nd_t */
};

typedef struct bin_ctx {
    binop op;
    int layout;
} bin_ctx;

static nd_tensor *fn_binary(nd_tensor *const *in, void *user)
{
    const bin_ctx *c = user;
    nd_tensor *a = in[0], *b = in[1];
    if (c->layout == B_T_AND_STEP2) {
        a = nd_transpose(a, 0, 1);
        b = nd_slice(b, 1, 0, 8, 2);
    } else if (c->layout == B_EXPAND_AND_T) {
        a = nd_expand(a, ND_SHAPE(3, 4));
        b = nd_t(b);
    }
    return c->op(a, b);
}

static void check_binary(const char *name, binop op, int ka, int kb)
{
    nd_scope_begin();
    char label[128];
    bin_ctx p = {op, B_PLAIN}, l1 = {op, B_T_AND_STEP2}, l2 = {op, B_EXPAND_AND_T};
#define LBL(what) (snprintf(label, sizeof label, "%s %s", name, what), label)
    GC(LBL("[2,3] with [2,3]"), fn_binary, &p, leaf(ka, ND_SHAPE(2, 3)), leaf(kb, ND_SHAPE(2, 3)));
    GC(LBL("[3,1] with [4]"), fn_binary, &p, leaf(ka, ND_SHAPE(3, 1)), leaf(kb, ND_SHAPE(4)));
    GC(LBL("[2,3,4] with [3,1]"), fn_binary, &p, leaf(ka, ND_SHAPE(2, 3, 4)), leaf(kb, ND_SHAPE(3, 1)));
    GC(LBL("0-dim with [2,3]"), fn_binary, &p, leaf(ka, ND_SCALAR_SHAPE), leaf(kb, ND_SHAPE(2, 3)));
    GC(LBL("[2,3] with 0-dim"), fn_binary, &p, leaf(ka, ND_SHAPE(2, 3)), leaf(kb, ND_SCALAR_SHAPE));
    GC(LBL("transposed with step-2 slice"), fn_binary, &l1, leaf(ka, ND_SHAPE(4, 3)), leaf(kb, ND_SHAPE(3, 8)));
    GC(LBL("expanded with nd_t"), fn_binary, &l2, leaf(ka, ND_SHAPE(3, 1)), leaf(kb, ND_SHAPE(4, 3)));
#undef LBL
    nd_scope_end();
}

TEST(maximum) { check_binary("nd_maximum", nd_maximum, GRID, OFFGRID); }
TEST(minimum) { check_binary("nd_minimum", nd_minimum, OFFGRID, GRID); }

/* One operand constant: only the other gets a gradient. */
static nd_tensor *fn_maximum_const(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_maximum(in[0], nd_full(0.05, ND_FLOAT64, ND_SHAPE(3)));
}

static nd_tensor *fn_minimum_self_t(nd_tensor *const *in, void *u)
{
    (void)u;
    /* x against its own transpose shifted by 0.4: DISTINCT values are 0.27 apart, so every pair
     * is >= 0.13 from a tie */
    return nd_minimum(in[0], nd_add_scalar(nd_t(in[0]), 0.4));
}

TEST(maximum_minimum_more)
{
    nd_scope_begin();
    GC("maximum with a constant", fn_maximum_const, NULL, leaf(GRID, ND_SHAPE(2, 3)));
    GC("minimum(x, t(x) + 0.5)", fn_minimum_self_t, NULL, leaf(DISTINCT, ND_SHAPE(3, 3)));
    nd_scope_end();
}

/* masked_fill: the filled positions get no gradient. */
typedef struct mask_ctx {
    int which;
} mask_ctx;

static nd_tensor *fn_masked_fill(nd_tensor *const *in, void *user)
{
    const mask_ctx *c = user;
    static const bool m23[6] = {true, false, false, true, false, true};
    static const bool m3[3] = {false, true, false};
    static const bool m21[2] = {true, false};
    switch (c->which) {
    case 0: return nd_masked_fill(in[0], bools(m23, ND_SHAPE(2, 3)), 7.0);
    case 1: return nd_masked_fill(in[0], bools(m3, ND_SHAPE(3)), -2.0);
    case 2: return nd_masked_fill(in[0], bools(m21, ND_SHAPE(2, 1)), 0.0);
    case 3: return nd_masked_fill(nd_t(in[0]), bools(m23, ND_SHAPE(2, 3)), 1.5);    /* leaf [3,2] */
    case 4: return nd_masked_fill(nd_slice(in[0], 1, 0, 6, 2), bools(m3, ND_SHAPE(3)), 3.0); /* leaf [2,6] */
    default: return nd_masked_fill(nd_mul(in[0], in[0]), bools(m23, ND_SHAPE(2, 3)), 7.0);
    }
}

TEST(masked_fill)
{
    nd_scope_begin();
    mask_ctx c0 = {0}, c1 = {1}, c2 = {2}, c3 = {3}, c4 = {4}, c5 = {5};
    GC("masked_fill same shape", fn_masked_fill, &c0, leaf(ANY, ND_SHAPE(2, 3)));
    GC("masked_fill mask [3] broadcast", fn_masked_fill, &c1, leaf(ANY, ND_SHAPE(2, 3)));
    GC("masked_fill mask [2,1] broadcast", fn_masked_fill, &c2, leaf(ANY, ND_SHAPE(2, 3)));
    GC("masked_fill of a transpose", fn_masked_fill, &c3, leaf(ANY, ND_SHAPE(3, 2)));
    GC("masked_fill of a step-2 slice", fn_masked_fill, &c4, leaf(ANY, ND_SHAPE(2, 6)));
    GC("masked_fill of x*x", fn_masked_fill, &c5, leaf(ANY, ND_SHAPE(2, 3)));
    nd_scope_end();
}

/* ------------------------------------------------------------------ max / min */

static nd_tensor *fn_max(nd_tensor *const *in, void *u) { (void)u; return nd_max(in[0]); }
static nd_tensor *fn_min(nd_tensor *const *in, void *u) { (void)u; return nd_min(in[0]); }
static nd_tensor *fn_max_t(nd_tensor *const *in, void *u) { (void)u; return nd_max(nd_t(in[0])); }
static nd_tensor *fn_min_step2(nd_tensor *const *in, void *u) { (void)u; return nd_min(nd_slice(in[0], 0, 0, 5, 2)); }
static nd_tensor *fn_max_times_min(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_mul(nd_max(in[0]), nd_min(nd_mul_scalar(in[0], 2.0)));
}

TEST(max_min_all)
{
    nd_scope_begin();
    GC("max [2,3]", fn_max, NULL, leaf(DISTINCT, ND_SHAPE(2, 3)));
    GC("max 0-dim", fn_max, NULL, leaf(DISTINCT, ND_SCALAR_SHAPE));
    GC("max [2,3,4]", fn_max, NULL, leaf(DISTINCT, ND_SHAPE(2, 3, 4)));
    GC("max of a transpose", fn_max_t, NULL, leaf(DISTINCT, ND_SHAPE(3, 4)));
    GC("min [2,3]", fn_min, NULL, leaf(DISTINCT, ND_SHAPE(2, 3)));
    GC("min [5]", fn_min, NULL, leaf(DISTINCT, ND_SHAPE(5)));
    GC("min of a step-2 slice", fn_min_step2, NULL, leaf(DISTINCT, ND_SHAPE(5, 3)));
    GC("max(x) * min(2x)", fn_max_times_min, NULL, leaf(DISTINCT, ND_SHAPE(2, 3)));
    nd_scope_end();
}

typedef struct dim_ctx {
    bool is_min;
    int dim;
    bool keepdim;
    int layout; /* U_PLAIN / U_TRANSPOSE / U_STEP2 */
    bool want_indices;
} dim_ctx;

static nd_tensor *fn_extreme_dim(nd_tensor *const *in, void *user)
{
    const dim_ctx *c = user;
    nd_tensor *x = present(in[0], c->layout);
    nd_tensor *indices = NULL;
    nd_tensor **ip = c->want_indices ? &indices : NULL;
    nd_tensor *v = c->is_min ? nd_min_dim(x, c->dim, c->keepdim, ip) : nd_max_dim(x, c->dim, c->keepdim, ip);
    if (v && c->want_indices && (!indices || nd_dtype_of(indices) != ND_INT64))
        return NULL;
    /* Squared so the gradient reaching the op is not constant. */
    return nd_mul(v, v);
}

static void check_extreme_dim(bool is_min)
{
    nd_scope_begin();
    const char *name = is_min ? "min_dim" : "max_dim";
    char label[128];
    static const int dims[] = {0, 1, -1, -2};
    for (int i = 0; i < 4; i++)
        for (int keep = 0; keep < 2; keep++) {
            dim_ctx c = {is_min, dims[i], keep, U_PLAIN, i % 2 == 0};
            snprintf(label, sizeof label, "%s dim %d keepdim %d [3,4]", name, dims[i], keep);
            GC(label, fn_extreme_dim, &c, leaf(DISTINCT, ND_SHAPE(3, 4)));
        }
    dim_ctx c3 = {is_min, 1, false, U_PLAIN, true};
    snprintf(label, sizeof label, "%s dim 1 [2,3,4]", name);
    GC(label, fn_extreme_dim, &c3, leaf(DISTINCT, ND_SHAPE(2, 3, 4)));
    dim_ctx c1 = {is_min, 0, false, U_PLAIN, false};
    snprintf(label, sizeof label, "%s 1-D", name);
    GC(label, fn_extreme_dim, &c1, leaf(DISTINCT, ND_SHAPE(5)));
    dim_ctx ct = {is_min, 1, true, U_TRANSPOSE, true};
    snprintf(label, sizeof label, "%s of a transpose", name);
    GC(label, fn_extreme_dim, &ct, leaf(DISTINCT, ND_SHAPE(3, 2)));
    dim_ctx cs = {is_min, 1, false, U_STEP2, false};
    snprintf(label, sizeof label, "%s of a step-2 slice", name);
    GC(label, fn_extreme_dim, &cs, leaf(DISTINCT, ND_SHAPE(2, 7)));
    nd_scope_end();
}

TEST(max_dim) { check_extreme_dim(false); }
TEST(min_dim) { check_extreme_dim(true); }

/* ------------------------------------------------------------------ prod */

typedef struct prod_ctx {
    bool all;
    int dim;
    bool keepdim;
    int layout;
} prod_ctx;

static nd_tensor *fn_prod(nd_tensor *const *in, void *user)
{
    const prod_ctx *c = user;
    nd_tensor *x = present(in[0], c->layout);
    nd_tensor *p = c->all ? nd_prod(x) : nd_prod_dim(x, c->dim, c->keepdim);
    return nd_mul(p, nd_add_scalar(p, 1.0));
}

TEST(prod)
{
    nd_scope_begin();
    prod_ctx all = {true, 0, false, U_PLAIN}, allt = {true, 0, false, U_TRANSPOSE};
    GC("prod all [2,3]", fn_prod, &all, leaf(POS, ND_SHAPE(2, 3)));
    GC("prod all 0-dim", fn_prod, &all, leaf(POS, ND_SCALAR_SHAPE));
    GC("prod all with negatives", fn_prod, &all, leaf(AWAY, ND_SHAPE(2, 2)));
    GC("prod all of a transpose", fn_prod, &allt, leaf(POS, ND_SHAPE(3, 2)));
    prod_ctx d0 = {false, 0, false, U_PLAIN}, d1 = {false, 1, true, U_PLAIN}, dl = {false, -1, false, U_PLAIN};
    prod_ctx ds = {false, 1, false, U_STEP2}, de = {false, 1, false, U_EXPAND};
    GC("prod_dim 0", fn_prod, &d0, leaf(POS, ND_SHAPE(3, 4)));
    GC("prod_dim 1 keepdim", fn_prod, &d1, leaf(AWAY, ND_SHAPE(3, 4)));
    GC("prod_dim -1 [2,3,2]", fn_prod, &dl, leaf(POS, ND_SHAPE(2, 3, 2)));
    GC("prod_dim of a step-2 slice", fn_prod, &ds, leaf(POS, ND_SHAPE(2, 7)));
    GC("prod_dim of an expanded tensor", fn_prod, &de, leaf(POS, ND_SHAPE(3, 1)));
    nd_scope_end();
}

/* Zeros: one zero in a slice gets the product of the rest; two zeros give a zero gradient. */
TEST(prod_with_zeros)
{
    nd_scope_begin();
    prod_ctx all = {true, 0, false, U_PLAIN}, d1 = {false, 1, false, U_PLAIN}, d0 = {false, 0, true, U_PLAIN};
    const double one_zero[6] = {0.7, -1.3, 0.0, 1.2, 0.9, 1.4};
    GC("prod all, one zero", fn_prod, &all, leaf_of(one_zero, ND_SHAPE(2, 3)));
    /* row 0 has one zero, row 1 two zeros, row 2 none */
    const double rows[12] = {0.8, 0.0, 1.3, -0.6, 0.0, 1.1, 0.0, 0.9, 1.2, 0.7, -1.4, 0.5};
    GC("prod_dim 1, rows with 1, 2 and 0 zeros", fn_prod, &d1, leaf_of(rows, ND_SHAPE(3, 4)));
    GC("prod_dim 0 keepdim, columns with zeros", fn_prod, &d0, leaf_of(rows, ND_SHAPE(3, 4)));
    const double two_zeros[4] = {0.0, 1.5, 0.0, -0.8};
    GC("prod all, two zeros", fn_prod, &all, leaf_of(two_zeros, ND_SHAPE(4)));
    nd_scope_end();
}

/* ------------------------------------------------------------------ var / std */

typedef struct stat_ctx {
    bool std;
    int ndims;
    int64_t dims[3];
    double correction;
    bool keepdim;
    bool transposed;
} stat_ctx;

static nd_tensor *fn_stat(nd_tensor *const *in, void *user)
{
    const stat_ctx *c = user;
    nd_tensor *x = c->transposed ? nd_transpose(in[0], 0, -1) : in[0];
    return c->std ? nd_std(x, c->ndims, c->dims, c->correction, c->keepdim)
                  : nd_var(x, c->ndims, c->dims, c->correction, c->keepdim);
}

static void check_stat(bool std)
{
    static const struct {
        int ndims;
        int64_t dims[3];
    } lists[] = {{0, {0}}, {1, {0}}, {1, {1}}, {1, {-1}}, {2, {0, 2}}, {2, {-1, 1}}, {3, {0, 1, 2}}};
    static const double corrections[] = {1.0, 0.0, 2.0};
    nd_scope_begin();
    char label[160];
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        for (int k = 0; k < 3; k++) {
            stat_ctx c = {std, lists[i].ndims, {0}, corrections[k], (i + (size_t)k) % 2 == 1, k == 1};
            memcpy(c.dims, lists[i].dims, sizeof c.dims);
            snprintf(label, sizeof label, "%s dims #%zu (ndims %d) correction %g keepdim %d transposed %d",
                     std ? "std" : "var", i, c.ndims, c.correction, c.keepdim, c.transposed);
            GC(label, fn_stat, &c, leaf(ANY, ND_SHAPE(3, 3, 4)));
        }
    stat_ctx v1 = {std, 0, {0}, 1.0, false, false};
    GC(std ? "std 1-D" : "var 1-D", fn_stat, &v1, leaf(ANY, ND_SHAPE(5)));
    nd_scope_end();
}

TEST(var) { check_stat(false); }
TEST(std) { check_stat(true); }

/* ------------------------------------------------------------------ logsumexp */

typedef struct lse_ctx {
    int ndims;
    int64_t dims[3];
    bool keepdim;
    int layout; /* 0 plain, 1 permuted (2,0,1), 2 shifted by +1000 */
} lse_ctx;

static nd_tensor *fn_logsumexp(nd_tensor *const *in, void *user)
{
    const lse_ctx *c = user;
    nd_tensor *x = in[0];
    if (c->layout == 1)
        x = nd_permute(x, ND_DIMS(2, 0, 1));
    else if (c->layout == 2)
        x = nd_add_scalar(x, 1000.0);
    nd_tensor *r = nd_logsumexp(x, c->ndims, c->dims, c->keepdim);
    return c->layout == 2 ? nd_sub_scalar(r, 1000.0) : r;
}

TEST(logsumexp)
{
    static const struct {
        int ndims;
        int64_t dims[3];
    } lists[] = {{1, {0}}, {1, {1}}, {1, {-1}}, {2, {0, 2}}, {2, {-1, -3}}, {2, {1, 0}}, {3, {0, 1, 2}}, {0, {0}}};
    nd_scope_begin();
    char label[160];
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        for (int keep = 0; keep < 2; keep++)
            for (int layout = 0; layout < 3; layout++) {
                lse_ctx c = {lists[i].ndims, {0}, keep, layout};
                memcpy(c.dims, lists[i].dims, sizeof c.dims);
                snprintf(label, sizeof label, "logsumexp dims #%zu (ndims %d) keepdim %d layout %d", i, c.ndims, keep,
                         layout);
                GC(label, fn_logsumexp, &c, leaf(ANY, ND_SHAPE(2, 3, 4)));
            }
    lse_ctx one = {1, {0}, false, 0};
    GC("logsumexp 1-D", fn_logsumexp, &one, leaf(ANY, ND_SHAPE(5)));
    lse_ctx scalar = {0, {0}, false, 0};
    GC("logsumexp 0-dim", fn_logsumexp, &scalar, leaf(ANY, ND_SCALAR_SHAPE));
    nd_scope_end();
}

/* ------------------------------------------------------------------ norm */

typedef struct norm_ctx {
    double p;
    int ndims;
    int64_t dims[3];
    bool keepdim;
    int layout;
} norm_ctx;

static nd_tensor *fn_norm(nd_tensor *const *in, void *user)
{
    const norm_ctx *c = user;
    nd_tensor *x = present(in[0], c->layout);
    nd_tensor *n = nd_norm(x, c->p, c->ndims, c->dims, c->keepdim);
    return nd_mul(n, nd_add_scalar(n, 0.5));
}

TEST(norm)
{
    nd_scope_begin();
    char label[128];
    for (int p = 1; p <= 2; p++) {
        int kind = p == 1 ? AWAY : ANY;
        norm_ctx all = {p, 0, {0}, false, U_PLAIN}, allk = {p, 0, {0}, true, U_PLAIN};
        norm_ctx d1 = {p, 1, {1}, false, U_PLAIN}, d0k = {p, 1, {0}, true, U_PLAIN};
        norm_ctx both = {p, 2, {-1, 0}, false, U_PLAIN}, t = {p, 1, {0}, false, U_TRANSPOSE};
        norm_ctx s = {p, 1, {-1}, true, U_STEP2}, e = {p, 1, {1}, false, U_EXPAND};
#define LBL(what) (snprintf(label, sizeof label, "norm p=%d %s", p, what), label)
        GC(LBL("all [2,3]"), fn_norm, &all, leaf(kind, ND_SHAPE(2, 3)));
        GC(LBL("all keepdim [2,3]"), fn_norm, &allk, leaf(kind, ND_SHAPE(2, 3)));
        GC(LBL("all 0-dim"), fn_norm, &all, leaf(kind, ND_SCALAR_SHAPE));
        GC(LBL("dim 1"), fn_norm, &d1, leaf(kind, ND_SHAPE(3, 4)));
        GC(LBL("dim 0 keepdim"), fn_norm, &d0k, leaf(kind, ND_SHAPE(3, 4)));
        GC(LBL("dims (-1, 0) [2,3,4]"), fn_norm, &both, leaf(kind, ND_SHAPE(2, 3, 4)));
        GC(LBL("dim 0 of a transpose"), fn_norm, &t, leaf(kind, ND_SHAPE(3, 2)));
        GC(LBL("dim -1 keepdim of a step-2 slice"), fn_norm, &s, leaf(kind, ND_SHAPE(2, 7)));
        GC(LBL("dim 1 of an expanded tensor"), fn_norm, &e, leaf(kind, ND_SHAPE(3, 1)));
#undef LBL
    }
    nd_scope_end();
}

/* ------------------------------------------------------------------ cumsum */

typedef struct cumsum_ctx {
    int dim;
    int layout;
} cumsum_ctx;

static nd_tensor *fn_cumsum(nd_tensor *const *in, void *user)
{
    const cumsum_ctx *c = user;
    nd_tensor *s = nd_cumsum(present(in[0], c->layout), c->dim);
    return nd_mul(s, s);
}

TEST(cumsum)
{
    nd_scope_begin();
    cumsum_ctx d0 = {0, U_PLAIN}, d1 = {1, U_PLAIN}, dl = {-1, U_PLAIN}, dt = {0, U_TRANSPOSE}, ds = {1, U_STEP2};
    cumsum_ctx de = {1, U_EXPAND}, de0 = {0, U_EXPAND};
    GC("cumsum dim 0 [3,4]", fn_cumsum, &d0, leaf(ANY, ND_SHAPE(3, 4)));
    GC("cumsum dim 1 [3,4]", fn_cumsum, &d1, leaf(ANY, ND_SHAPE(3, 4)));
    GC("cumsum dim -1 [2,3,4]", fn_cumsum, &dl, leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("cumsum dim 1 [2,3,4]", fn_cumsum, &d1, leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("cumsum 1-D", fn_cumsum, &d0, leaf(ANY, ND_SHAPE(6)));
    GC("cumsum 0-dim", fn_cumsum, &d0, leaf(ANY, ND_SCALAR_SHAPE));
    GC("cumsum of a transpose", fn_cumsum, &dt, leaf(ANY, ND_SHAPE(3, 2)));
    GC("cumsum of a step-2 slice", fn_cumsum, &ds, leaf(ANY, ND_SHAPE(2, 7)));
    GC("cumsum along an expanded dim", fn_cumsum, &de, leaf(ANY, ND_SHAPE(3, 1)));
    GC("cumsum across an expanded dim", fn_cumsum, &de0, leaf(ANY, ND_SHAPE(3, 1)));
    nd_scope_end();
}

/* ------------------------------------------------------------------ cat / stack */

static nd_tensor *fn_cat_dim1(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_cat(2, (nd_tensor *[]){in[0], in[1]}, 1); /* [2,3] + [2,2] */
}
static nd_tensor *fn_cat_three_dim0(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *c = nd_cat(3, (nd_tensor *[]){in[0], in[1], in[2]}, 0); /* [1,3] + [2,3] + [3,3] */
    return nd_mul(c, c);
}
static nd_tensor *fn_cat_last_noncontig(nd_tensor *const *in, void *u)
{
    (void)u;
    /* t(a [3,2]) -> [2,3]; b [2,8] step 2 -> [2,4]; c [2,1] expanded -> [2,2] */
    nd_tensor *parts[3] = {nd_t(in[0]), nd_slice(in[1], 1, 0, 8, 2), nd_expand(in[2], ND_SHAPE(2, 2))};
    return nd_tanh(nd_cat(3, parts, -1));
}
static nd_tensor *fn_cat_same_twice(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *c = nd_cat(3, (nd_tensor *[]){in[0], nd_mul_scalar(in[0], 3.0), in[0]}, 0);
    return nd_mul(c, nd_sin(c));
}
static nd_tensor *fn_cat_with_constant(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *k = nd_full(0.25, ND_FLOAT64, ND_SHAPE(2, 2, 1));
    return nd_square(nd_cat(2, (nd_tensor *[]){k, in[0]}, 2)); /* [2,2,1] + [2,2,3] */
}
static nd_tensor *fn_cat_one(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_cat(1, (nd_tensor *[]){in[0]}, 0);
}

TEST(cat)
{
    nd_scope_begin();
    GC("cat dim 1 [2,3]+[2,2]", fn_cat_dim1, NULL, leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(2, 2)));
    GC("cat three along dim 0", fn_cat_three_dim0, NULL, leaf(ANY, ND_SHAPE(1, 3)), leaf(ANY, ND_SHAPE(2, 3)),
       leaf(ANY, ND_SHAPE(3, 3)));
    GC("cat dim -1 of transposed, step-2 and expanded", fn_cat_last_noncontig, NULL, leaf(ANY, ND_SHAPE(3, 2)),
       leaf(ANY, ND_SHAPE(2, 8)), leaf(ANY, ND_SHAPE(2, 1)));
    GC("cat of one tensor used twice", fn_cat_same_twice, NULL, leaf(ANY, ND_SHAPE(2, 2)));
    GC("cat with a constant", fn_cat_with_constant, NULL, leaf(ANY, ND_SHAPE(2, 2, 3)));
    GC("cat of a single tensor", fn_cat_one, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    nd_scope_end();
}

typedef struct stack_ctx {
    int dim;
    bool noncontig;
} stack_ctx;

static nd_tensor *fn_stack(nd_tensor *const *in, void *user)
{
    const stack_ctx *c = user;
    nd_tensor *parts[3] = {in[0], in[1], in[2]};
    if (c->noncontig) { /* leaves [3,2], [2,6], [2,1] -> [2,3] each */
        parts[0] = nd_t(in[0]);
        parts[1] = nd_slice(in[1], 1, 1, 6, 2);
        parts[2] = nd_expand(in[2], ND_SHAPE(2, 3));
    }
    nd_tensor *s = nd_stack(3, parts, c->dim);
    return nd_mul(s, nd_cos(s));
}

TEST(stack)
{
    nd_scope_begin();
    static const int dims[] = {0, 1, 2, -1, -3};
    char label[64];
    for (int i = 0; i < 5; i++) {
        stack_ctx c = {dims[i], false};
        snprintf(label, sizeof label, "stack three [2,3] along %d", dims[i]);
        GC(label, fn_stack, &c, leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(2, 3)));
    }
    stack_ctx nc = {1, true};
    GC("stack of transposed, step-2 and expanded", fn_stack, &nc, leaf(ANY, ND_SHAPE(3, 2)), leaf(ANY, ND_SHAPE(2, 6)),
       leaf(ANY, ND_SHAPE(2, 1)));
    nd_scope_end();
}

/* ------------------------------------------------------------------ split / chunk */

typedef struct split_ctx {
    bool chunk;
    int64_t size_or_count;
    int dim;
    bool transposed;
    int expect; /* number of pieces */
} split_ctx;

/* sum_i (i + 1) * sum(piece_i * piece_i): a wrong piece, order or element changes the gradient. */
static nd_tensor *fn_split(nd_tensor *const *in, void *user)
{
    const split_ctx *c = user;
    nd_tensor *x = c->transposed ? nd_t(in[0]) : in[0];
    nd_tensor *pieces[8] = {NULL};
    int n = c->chunk ? nd_chunk(x, c->size_or_count, c->dim, 8, pieces)
                     : nd_split(x, c->size_or_count, c->dim, 8, pieces);
    if (n != c->expect) {
        if (n >= 0)
            fprintf(stderr, "  %s gave %d pieces, expected %d\n", c->chunk ? "nd_chunk" : "nd_split", n, c->expect);
        return NULL;
    }
    nd_tensor *total = NULL;
    for (int i = 0; i < n; i++) {
        nd_tensor *term = nd_mul_scalar(nd_sum(nd_mul(pieces[i], pieces[i])), (double)(i + 1));
        total = total ? nd_add(total, term) : term;
    }
    return total;
}

TEST(split)
{
    nd_scope_begin();
    split_ctx s0 = {false, 2, 0, false, 3}, s1 = {false, 2, 1, false, 3}, s4 = {false, 4, 1, false, 2};
    split_ctx sb = {false, 10, 0, false, 1}, st = {false, 1, 0, true, 3}, sl = {false, 3, -1, false, 2};
    GC("split size 2 dim 0 of [5,3] (uneven)", fn_split, &s0, leaf(ANY, ND_SHAPE(5, 3)));
    GC("split size 2 dim 1 of [2,6]", fn_split, &s1, leaf(ANY, ND_SHAPE(2, 6)));
    GC("split size 4 dim 1 of [2,7]", fn_split, &s4, leaf(ANY, ND_SHAPE(2, 7)));
    GC("split size larger than the dim", fn_split, &sb, leaf(ANY, ND_SHAPE(3, 2)));
    GC("split size 1 of a transpose", fn_split, &st, leaf(ANY, ND_SHAPE(2, 3)));
    GC("split size 3 dim -1 of [2,2,5]", fn_split, &sl, leaf(ANY, ND_SHAPE(2, 2, 5)));
    nd_scope_end();
}

TEST(chunk)
{
    nd_scope_begin();
    split_ctx c3 = {true, 3, 0, false, 3}, c2 = {true, 2, 1, false, 2}, c4 = {true, 4, 0, false, 3};
    split_ctx cb = {true, 5, 1, false, 2}, ct = {true, 2, -1, true, 2};
    GC("chunk 3 of [6,2]", fn_split, &c3, leaf(ANY, ND_SHAPE(6, 2)));
    GC("chunk 2 dim 1 of [2,5] (uneven)", fn_split, &c2, leaf(ANY, ND_SHAPE(2, 5)));
    GC("chunk 4 of [6,2] gives 3 pieces", fn_split, &c4, leaf(ANY, ND_SHAPE(6, 2)));
    GC("chunk 5 of a dim of 2 gives 2 pieces", fn_split, &cb, leaf(ANY, ND_SHAPE(3, 2)));
    GC("chunk 2 dim -1 of a transpose", fn_split, &ct, leaf(ANY, ND_SHAPE(3, 2)));
    nd_scope_end();
}

/* ------------------------------------------------------------------ flip / repeat / pad */

typedef struct list_ctx {
    int n;
    int64_t v[8];
    int layout;
    double value;
} list_ctx;

static nd_tensor *fn_flip(nd_tensor *const *in, void *user)
{
    const list_ctx *c = user;
    nd_tensor *f = nd_flip(present(in[0], c->layout), c->n, c->v);
    return nd_mul(f, nd_exp(nd_slice(in[0], 0, 0, 1, 1))); /* the flipped tensor times its own first row */
}

/* 1, 2, 3, ... in t's shape: position-dependent weights, so a misplaced gradient shows. */
static nd_tensor *weights_like(nd_tensor *t)
{
    if (!t)
        return NULL;
    return nd_reshape(nd_arange(1, 1 + (double)nd_numel(t), 1, ND_FLOAT64), nd_ndim(t), nd_shape(t));
}

static nd_tensor *fn_flip_weighted(nd_tensor *const *in, void *user)
{
    const list_ctx *c = user;
    nd_tensor *f = nd_flip(present(in[0], c->layout), c->n, c->v);
    return nd_mul(nd_mul(f, f), weights_like(f));
}

TEST(flip)
{
    nd_scope_begin();
    list_ctx f0 = {1, {0}, U_PLAIN, 0}, f1 = {1, {1}, U_PLAIN, 0}, f01 = {2, {0, 1}, U_PLAIN, 0};
    list_ctx fl = {1, {-1}, U_PLAIN, 0}, fn = {0, {0}, U_PLAIN, 0}, ft = {1, {1}, U_TRANSPOSE, 0};
    list_ctx fs = {2, {-2, -1}, U_STEP2, 0}, fe = {1, {0}, U_EXPAND, 0}, f3 = {2, {0, 2}, U_PLAIN, 0};
    GC("flip dim 0", fn_flip_weighted, &f0, leaf(ANY, ND_SHAPE(3, 4)));
    GC("flip dim 1", fn_flip_weighted, &f1, leaf(ANY, ND_SHAPE(3, 4)));
    GC("flip dims (0, 1)", fn_flip_weighted, &f01, leaf(ANY, ND_SHAPE(3, 4)));
    GC("flip dim -1", fn_flip_weighted, &fl, leaf(ANY, ND_SHAPE(2, 5)));
    GC("flip no dims", fn_flip_weighted, &fn, leaf(ANY, ND_SHAPE(2, 3)));
    GC("flip dims (0, 2) of [2,3,4]", fn_flip_weighted, &f3, leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("flip of a transpose", fn_flip_weighted, &ft, leaf(ANY, ND_SHAPE(3, 2)));
    GC("flip of a step-2 slice", fn_flip_weighted, &fs, leaf(ANY, ND_SHAPE(2, 7)));
    GC("flip of an expanded tensor", fn_flip_weighted, &fe, leaf(ANY, ND_SHAPE(3, 1)));
    GC("flip times a slice of its input", fn_flip, &f01, leaf(ANY, ND_SHAPE(3, 4)));
    nd_scope_end();
}

static nd_tensor *fn_repeat(nd_tensor *const *in, void *user)
{
    const list_ctx *c = user;
    nd_tensor *r = nd_repeat(present(in[0], c->layout), c->n, c->v);
    return nd_mul(r, nd_sin(r));
}

TEST(repeat)
{
    nd_scope_begin();
    list_ctx r21 = {2, {2, 1}, U_PLAIN, 0}, r13 = {2, {1, 3}, U_PLAIN, 0}, r22 = {2, {2, 2}, U_PLAIN, 0};
    list_ctx r312 = {3, {3, 1, 2}, U_PLAIN, 0}, r11 = {2, {1, 1}, U_PLAIN, 0}, r23 = {2, {2, 3}, U_PLAIN, 0};
    list_ctx rt = {2, {2, 2}, U_TRANSPOSE, 0}, rs = {3, {2, 1, 2}, U_STEP2, 0}, r0 = {1, {4}, U_PLAIN, 0};
    GC("repeat (2,1)", fn_repeat, &r21, leaf(ANY, ND_SHAPE(2, 3)));
    GC("repeat (1,3)", fn_repeat, &r13, leaf(ANY, ND_SHAPE(2, 3)));
    GC("repeat (2,2)", fn_repeat, &r22, leaf(ANY, ND_SHAPE(2, 3)));
    GC("repeat (3,1,2): more dims than the input", fn_repeat, &r312, leaf(ANY, ND_SHAPE(2, 3)));
    GC("repeat (1,1)", fn_repeat, &r11, leaf(ANY, ND_SHAPE(2, 3)));
    GC("repeat (2,3) of a 1-D tensor", fn_repeat, &r23, leaf(ANY, ND_SHAPE(3)));
    GC("repeat (4) of a 0-dim tensor", fn_repeat, &r0, leaf(ANY, ND_SCALAR_SHAPE));
    GC("repeat of a transpose", fn_repeat, &rt, leaf(ANY, ND_SHAPE(3, 2)));
    GC("repeat of a step-2 slice", fn_repeat, &rs, leaf(ANY, ND_SHAPE(2, 7)));
    nd_scope_end();
}

static nd_tensor *fn_pad(nd_tensor *const *in, void *user)
{
    const list_ctx *c = user;
    nd_tensor *p = nd_pad(present(in[0], c->layout), c->n, c->v, c->value);
    return nd_mul(p, nd_cos(p));
}

TEST(pad)
{
    nd_scope_begin();
    list_ctx p1 = {2, {1, 2}, U_PLAIN, 0.0}, p2 = {4, {1, 0, 0, 2}, U_PLAIN, 0.5};
    list_ctx crop = {2, {-1, 1}, U_PLAIN, 0.0}, crop2 = {4, {-1, -1, 1, -1}, U_PLAIN, -0.3};
    list_ctx p3 = {6, {1, 1, -1, 0, 0, 1}, U_PLAIN, 0.25}, zero = {2, {0, 0}, U_PLAIN, 0.0};
    list_ctx all_crop = {4, {-2, 0, 0, -1}, U_PLAIN, 1.0};
    list_ctx pt = {4, {1, -1, 2, 0}, U_TRANSPOSE, 0.0}, ps = {2, {-1, 2}, U_STEP2, 0.0}, pe = {4, {0, 1, 1, 0}, U_EXPAND, 2.0};
    GC("pad (1,2)", fn_pad, &p1, leaf(ANY, ND_SHAPE(2, 3)));
    GC("pad (1,0,0,2) value 0.5", fn_pad, &p2, leaf(ANY, ND_SHAPE(2, 3)));
    GC("pad (-1,1): crop left, pad right", fn_pad, &crop, leaf(ANY, ND_SHAPE(2, 3)));
    GC("pad (-1,-1,1,-1)", fn_pad, &crop2, leaf(ANY, ND_SHAPE(3, 4)));
    GC("pad three dims (1,1,-1,0,0,1)", fn_pad, &p3, leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("pad (0,0)", fn_pad, &zero, leaf(ANY, ND_SHAPE(2, 3)));
    GC("pad (-2,0,0,-1): crops only", fn_pad, &all_crop, leaf(ANY, ND_SHAPE(3, 4)));
    GC("pad of a transpose", fn_pad, &pt, leaf(ANY, ND_SHAPE(3, 2)));
    GC("pad of a step-2 slice", fn_pad, &ps, leaf(ANY, ND_SHAPE(2, 7)));
    GC("pad of an expanded tensor", fn_pad, &pe, leaf(ANY, ND_SHAPE(3, 1)));
    nd_scope_end();
}

/* ------------------------------------------------------------------ tril / triu */

typedef struct tri_ctx {
    bool upper;
    int64_t k;
    int layout;
} tri_ctx;

static nd_tensor *fn_tri(nd_tensor *const *in, void *user)
{
    const tri_ctx *c = user;
    nd_tensor *x = present(in[0], c->layout);
    nd_tensor *r = c->upper ? nd_triu(x, c->k) : nd_tril(x, c->k);
    return nd_mul(r, nd_exp(r));
}

static void check_tri(bool upper)
{
    nd_scope_begin();
    const char *name = upper ? "triu" : "tril";
    char label[96];
    static const int64_t ks[] = {0, 1, -1, 2, -3};
    for (int i = 0; i < 5; i++) {
        tri_ctx c = {upper, ks[i], U_PLAIN};
        snprintf(label, sizeof label, "%s k=%lld [3,4]", name, (long long)ks[i]);
        GC(label, fn_tri, &c, leaf(ANY, ND_SHAPE(3, 4)));
        snprintf(label, sizeof label, "%s k=%lld [4,3]", name, (long long)ks[i]);
        GC(label, fn_tri, &c, leaf(ANY, ND_SHAPE(4, 3)));
    }
    tri_ctx b = {upper, 0, U_PLAIN}, t = {upper, 1, U_TRANSPOSE}, s = {upper, -1, U_STEP2}, e = {upper, 0, U_EXPAND};
    snprintf(label, sizeof label, "%s batched [2,3,3]", name);
    GC(label, fn_tri, &b, leaf(ANY, ND_SHAPE(2, 3, 3)));
    snprintf(label, sizeof label, "%s of a transpose", name);
    GC(label, fn_tri, &t, leaf(ANY, ND_SHAPE(3, 2)));
    snprintf(label, sizeof label, "%s of a step-2 slice", name);
    GC(label, fn_tri, &s, leaf(ANY, ND_SHAPE(2, 7)));
    snprintf(label, sizeof label, "%s of an expanded tensor", name);
    GC(label, fn_tri, &e, leaf(ANY, ND_SHAPE(3, 1)));
    nd_scope_end();
}

TEST(tril) { check_tri(false); }
TEST(triu) { check_tri(true); }

/* ------------------------------------------------------------------ indexing */

typedef struct index_ctx {
    int which;
} index_ctx;

static nd_tensor *fn_index_select(nd_tensor *const *in, void *user)
{
    const index_ctx *c = user;
    nd_tensor *r;
    switch (c->which) {
    case 0: r = nd_index_select(in[0], 0, idx((const int64_t[]){3, 0, 3, 1}, ND_SHAPE(4))); break;  /* [4,3] */
    case 1: r = nd_index_select(in[0], 1, idx((const int64_t[]){2, 0}, ND_SHAPE(2))); break;        /* [4,3] */
    case 2: r = nd_index_select(in[0], -1, idx((const int64_t[]){1}, ND_SCALAR_SHAPE)); break;      /* 0-d index */
    case 3: r = nd_index_select(nd_t(in[0]), 0, idx((const int64_t[]){2, 2, 0}, ND_SHAPE(3))); break; /* leaf [4,3] */
    case 4: r = nd_index_select(nd_slice(in[0], 1, 0, 7, 2), 1, idx((const int64_t[]){3, 1, 1}, ND_SHAPE(3))); break;
    case 5: r = nd_index_select(in[0], 0, idx((const int64_t[]){1, 1, 0}, ND_SHAPE(3))); break;      /* 1-D leaf */
    default: r = nd_index_select(in[0], 1, idx((const int64_t[]){0, 2, 1, 2}, ND_SHAPE(4))); break;  /* [2,3,2] */
    }
    return nd_mul(r, nd_sin(r));
}

TEST(index_select)
{
    nd_scope_begin();
    index_ctx c0 = {0}, c1 = {1}, c2 = {2}, c3 = {3}, c4 = {4}, c5 = {5}, c6 = {6};
    GC("index_select dim 0, repeated indices", fn_index_select, &c0, leaf(ANY, ND_SHAPE(4, 3)));
    GC("index_select dim 1", fn_index_select, &c1, leaf(ANY, ND_SHAPE(4, 3)));
    GC("index_select dim -1, 0-d index", fn_index_select, &c2, leaf(ANY, ND_SHAPE(4, 3)));
    GC("index_select of a transpose", fn_index_select, &c3, leaf(ANY, ND_SHAPE(4, 3)));
    GC("index_select of a step-2 slice", fn_index_select, &c4, leaf(ANY, ND_SHAPE(2, 7)));
    GC("index_select 1-D", fn_index_select, &c5, leaf(ANY, ND_SHAPE(3)));
    GC("index_select middle dim of [2,3,2]", fn_index_select, &c6, leaf(ANY, ND_SHAPE(2, 3, 2)));
    nd_scope_end();
}

static nd_tensor *fn_index_add(nd_tensor *const *in, void *user)
{
    const index_ctx *c = user;
    nd_tensor *r;
    switch (c->which) {
    case 0: /* t [4,3], src [3,3] at rows 1, 3, 1 */
        r = nd_index_add(in[0], 0, idx((const int64_t[]){1, 3, 1}, ND_SHAPE(3)), in[1]);
        break;
    case 1: /* t [4,3], src [4,2] at columns 2, 0 */
        r = nd_index_add(in[0], 1, idx((const int64_t[]){2, 0}, ND_SHAPE(2)), in[1]);
        break;
    case 2: /* t [3,4] transposed -> [4,3]; src [2,4] transposed -> [4,2]; columns 1, 1 */
        r = nd_index_add(nd_t(in[0]), -1, idx((const int64_t[]){1, 1}, ND_SHAPE(2)), nd_t(in[1]));
        break;
    default: /* t [3,1] expanded to [3,4]; src [3,2] at columns 0, 3 */
        r = nd_index_add(nd_expand(in[0], ND_SHAPE(3, 4)), 1, idx((const int64_t[]){0, 3}, ND_SHAPE(2)), in[1]);
        break;
    }
    return nd_mul(r, r);
}

TEST(index_add)
{
    nd_scope_begin();
    index_ctx c0 = {0}, c1 = {1}, c2 = {2}, c3 = {3};
    GC("index_add dim 0, repeated rows", fn_index_add, &c0, leaf(ANY, ND_SHAPE(4, 3)), leaf(ANY, ND_SHAPE(3, 3)));
    GC("index_add dim 1", fn_index_add, &c1, leaf(ANY, ND_SHAPE(4, 3)), leaf(ANY, ND_SHAPE(4, 2)));
    GC("index_add of transposes, repeated column", fn_index_add, &c2, leaf(ANY, ND_SHAPE(3, 4)), leaf(ANY, ND_SHAPE(2, 4)));
    GC("index_add into an expanded tensor", fn_index_add, &c3, leaf(ANY, ND_SHAPE(3, 1)), leaf(ANY, ND_SHAPE(3, 2)));
    /* Only src requires grad. */
    nd_tensor *t = nd_zeros(ND_FLOAT64, ND_SHAPE(4, 3));
    GC("index_add, constant input", fn_index_add, &c0, t, leaf(ANY, ND_SHAPE(3, 3)));
    nd_scope_end();
}

static nd_tensor *fn_gather(nd_tensor *const *in, void *user)
{
    const index_ctx *c = user;
    nd_tensor *r;
    switch (c->which) {
    case 0: /* [3,4] along 1, index [3,3] with repeats */
        r = nd_gather(in[0], 1, idx((const int64_t[]){0, 3, 3, 1, 1, 0, 2, 0, 1}, ND_SHAPE(3, 3)));
        break;
    case 1: /* [3,4] along 0, index [2,4] */
        r = nd_gather(in[0], 0, idx((const int64_t[]){2, 0, 1, 0, 0, 2, 2, 1}, ND_SHAPE(2, 4)));
        break;
    case 2: /* index smaller than the input outside dim: [3,4] along -1, index [2,2] */
        r = nd_gather(in[0], -1, idx((const int64_t[]){3, 0, 2, 2}, ND_SHAPE(2, 2)));
        break;
    case 3: /* leaf [4,3] transposed -> [3,4], along 1 */
        r = nd_gather(nd_t(in[0]), 1, idx((const int64_t[]){1, 2, 0, 3, 3, 3}, ND_SHAPE(3, 2)));
        break;
    case 4: /* 3-D along the middle dim */
        r = nd_gather(in[0], 1, idx((const int64_t[]){2, 0, 1, 1, 0, 2, 2, 2}, ND_SHAPE(2, 2, 2)));
        break;
    default: /* 1-D, longer index than input */
        r = nd_gather(in[0], 0, idx((const int64_t[]){2, 0, 2, 1, 2}, ND_SHAPE(5)));
        break;
    }
    return nd_mul(r, nd_exp(r));
}

TEST(gather)
{
    nd_scope_begin();
    index_ctx c0 = {0}, c1 = {1}, c2 = {2}, c3 = {3}, c4 = {4}, c5 = {5};
    GC("gather dim 1 with repeats", fn_gather, &c0, leaf(ANY, ND_SHAPE(3, 4)));
    GC("gather dim 0", fn_gather, &c1, leaf(ANY, ND_SHAPE(3, 4)));
    GC("gather with a smaller index", fn_gather, &c2, leaf(ANY, ND_SHAPE(3, 4)));
    GC("gather of a transpose", fn_gather, &c3, leaf(ANY, ND_SHAPE(4, 3)));
    GC("gather 3-D along dim 1", fn_gather, &c4, leaf(ANY, ND_SHAPE(2, 3, 2)));
    GC("gather 1-D, index longer than input", fn_gather, &c5, leaf(ANY, ND_SHAPE(3)));
    nd_scope_end();
}

static nd_tensor *fn_scatter_add(nd_tensor *const *in, void *user)
{
    const index_ctx *c = user;
    nd_tensor *r;
    switch (c->which) {
    case 0: /* a [3,4], src [3,2] along 1 with a repeated column in row 1 */
        r = nd_scatter_add(in[0], 1, idx((const int64_t[]){0, 3, 2, 2, 1, 0}, ND_SHAPE(3, 2)), in[1]);
        break;
    case 1: /* a [3,4] along 0, src [2,4] */
        r = nd_scatter_add(in[0], 0, idx((const int64_t[]){2, 0, 1, 2, 2, 0, 1, 2}, ND_SHAPE(2, 4)), in[1]);
        break;
    case 2: /* src [3,3] larger than index [2,2]: its other elements get no gradient */
        r = nd_scatter_add(in[0], 1, idx((const int64_t[]){1, 1, 3, 0}, ND_SHAPE(2, 2)), in[1]);
        break;
    default: /* a [4,3] transposed -> [3,4]; src [2,3] transposed -> [3,2] */
        r = nd_scatter_add(nd_t(in[0]), 1, idx((const int64_t[]){3, 3, 0, 1, 2, 0}, ND_SHAPE(3, 2)), nd_t(in[1]));
        break;
    }
    return nd_mul(r, r);
}

TEST(scatter_add)
{
    nd_scope_begin();
    index_ctx c0 = {0}, c1 = {1}, c2 = {2}, c3 = {3};
    GC("scatter_add dim 1 with repeats", fn_scatter_add, &c0, leaf(ANY, ND_SHAPE(3, 4)), leaf(ANY, ND_SHAPE(3, 2)));
    GC("scatter_add dim 0", fn_scatter_add, &c1, leaf(ANY, ND_SHAPE(3, 4)), leaf(ANY, ND_SHAPE(2, 4)));
    GC("scatter_add with src larger than index", fn_scatter_add, &c2, leaf(ANY, ND_SHAPE(3, 4)), leaf(ANY, ND_SHAPE(3, 3)));
    GC("scatter_add of transposes", fn_scatter_add, &c3, leaf(ANY, ND_SHAPE(4, 3)), leaf(ANY, ND_SHAPE(2, 3)));
    nd_tensor *a = nd_zeros(ND_FLOAT64, ND_SHAPE(3, 4));
    GC("scatter_add, constant input", fn_scatter_add, &c0, a, leaf(ANY, ND_SHAPE(3, 2)));
    nd_scope_end();
}

static nd_tensor *fn_embedding(nd_tensor *const *in, void *user)
{
    const index_ctx *c = user;
    nd_tensor *r;
    switch (c->which) {
    case 0: /* weight [5,3], indices [2,3] with repeats */
        r = nd_embedding(in[0], idx((const int64_t[]){0, 2, 0, 4, 2, 2}, ND_SHAPE(2, 3)));
        break;
    case 1: /* 1-D indices, every row twice */
        r = nd_embedding(in[0], idx((const int64_t[]){1, 0, 1, 0}, ND_SHAPE(4)));
        break;
    case 2: /* 0-d index */
        r = nd_embedding(in[0], idx((const int64_t[]){3}, ND_SCALAR_SHAPE));
        break;
    default: /* weight leaf [3,5] transposed -> [5,3] */
        r = nd_embedding(nd_t(in[0]), idx((const int64_t[]){4, 4, 1, 4}, ND_SHAPE(2, 2)));
        break;
    }
    return nd_mul(r, nd_sin(r));
}

TEST(embedding)
{
    nd_scope_begin();
    index_ctx c0 = {0}, c1 = {1}, c2 = {2}, c3 = {3};
    GC("embedding [2,3] indices with repeats", fn_embedding, &c0, leaf(ANY, ND_SHAPE(5, 3)));
    GC("embedding 1-D indices", fn_embedding, &c1, leaf(ANY, ND_SHAPE(2, 4)));
    GC("embedding 0-d index", fn_embedding, &c2, leaf(ANY, ND_SHAPE(5, 3)));
    GC("embedding of a transposed weight", fn_embedding, &c3, leaf(ANY, ND_SHAPE(3, 5)));
    nd_scope_end();
}

typedef struct spec_ctx {
    int n;
    nd_index_spec s[5];
    bool transposed;
} spec_ctx;

static nd_tensor *fn_index(nd_tensor *const *in, void *user)
{
    const spec_ctx *c = user;
    nd_tensor *x = c->transposed ? nd_transpose(in[0], 0, 2) : in[0];
    nd_tensor *r = nd_index(x, c->n, c->s);
    return nd_mul(r, nd_tanh(r));
}

TEST(index)
{
    nd_scope_begin();
    spec_ctx a = {2, {ND_I(-1), ND_SLICE(1, 5, 2)}, false};
    spec_ctx b = {4, {ND_ALL, ND_NEWAXIS, ND_I(2), ND_SLICE(-3, INT64_MAX, 1)}, false};
    spec_ctx c = {0, {ND_ALL}, false};
    spec_ctx d = {3, {ND_I(0), ND_I(1), ND_I(2)}, false};
    spec_ctx e = {3, {ND_NEWAXIS, ND_SLICE(0, 3, 2), ND_NEWAXIS}, false};
    spec_ctx f = {3, {ND_SLICE(1, 100, 1), ND_I(-2), ND_SLICE(0, 5, 3)}, true};
    GC("x[-1, 1:5:2]", fn_index, &a, leaf(ANY, ND_SHAPE(3, 4, 5)));
    GC("x[:, None, 2, -3:]", fn_index, &b, leaf(ANY, ND_SHAPE(3, 4, 5)));
    GC("x[] (whole tensor)", fn_index, &c, leaf(ANY, ND_SHAPE(2, 3)));
    GC("x[0, 1, 2] (one element)", fn_index, &d, leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("x[None, 0:3:2, None]", fn_index, &e, leaf(ANY, ND_SHAPE(3, 2)));
    GC("transpose(x)[1:, -2, ::3]", fn_index, &f, leaf(ANY, ND_SHAPE(5, 3, 2)));
    nd_scope_end();
}

/* ------------------------------------------------------------------ neural-network functions */

typedef struct softmax_ctx {
    bool log;
    int dim;
    int layout; /* U_PLAIN / U_TRANSPOSE / U_STEP2 / U_EXPAND, or 9: shifted by +1000 */
} softmax_ctx;

static nd_tensor *fn_softmax(nd_tensor *const *in, void *user)
{
    const softmax_ctx *c = user;
    nd_tensor *x = c->layout == 9 ? nd_add_scalar(in[0], 1000.0) : present(in[0], c->layout);
    return c->log ? nd_log_softmax(x, c->dim) : nd_softmax(x, c->dim);
}

static void check_softmax(bool log)
{
    nd_scope_begin();
    const char *name = log ? "log_softmax" : "softmax";
    char label[96];
    static const int dims[] = {0, 1, -1};
    for (int i = 0; i < 3; i++) {
        softmax_ctx c = {log, dims[i], U_PLAIN};
        snprintf(label, sizeof label, "%s dim %d [3,4]", name, dims[i]);
        GC(label, fn_softmax, &c, leaf(ANY, ND_SHAPE(3, 4)));
        snprintf(label, sizeof label, "%s dim %d [2,3,4]", name, dims[i]);
        GC(label, fn_softmax, &c, leaf(ANY, ND_SHAPE(2, 3, 4)));
    }
    softmax_ctx one = {log, 0, U_PLAIN}, t = {log, 1, U_TRANSPOSE}, s = {log, -1, U_STEP2}, e = {log, 1, U_EXPAND};
    softmax_ctx big = {log, 1, 9};
    snprintf(label, sizeof label, "%s 1-D", name);
    GC(label, fn_softmax, &one, leaf(ANY, ND_SHAPE(5)));
    snprintf(label, sizeof label, "%s 0-dim", name);
    GC(label, fn_softmax, &one, leaf(ANY, ND_SCALAR_SHAPE));
    snprintf(label, sizeof label, "%s of a transpose", name);
    GC(label, fn_softmax, &t, leaf(ANY, ND_SHAPE(3, 2)));
    snprintf(label, sizeof label, "%s of a step-2 slice", name);
    GC(label, fn_softmax, &s, leaf(ANY, ND_SHAPE(2, 7)));
    snprintf(label, sizeof label, "%s along an expanded dim", name);
    GC(label, fn_softmax, &e, leaf(ANY, ND_SHAPE(3, 1)));
    snprintf(label, sizeof label, "%s of x + 1000", name);
    GC(label, fn_softmax, &big, leaf(ANY, ND_SHAPE(2, 3)));
    nd_scope_end();
}

TEST(softmax) { check_softmax(false); }
TEST(log_softmax) { check_softmax(true); }

static nd_tensor *fn_linear(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_linear(in[0], in[1], in[2]);
}
static nd_tensor *fn_linear_nobias(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_linear(in[0], in[1], NULL);
}
static nd_tensor *fn_linear_noncontig(nd_tensor *const *in, void *u)
{
    (void)u;
    /* x leaf [3,4] transposed -> [4,3]; weight leaf [3,2] through nd_t -> [2,3]; bias [1] expanded -> [2] */
    return nd_linear(nd_t(in[0]), nd_t(in[1]), nd_expand(in[2], ND_SHAPE(2)));
}

static nd_tensor *fn_linear_unfoldable(nd_tensor *const *in, void *u)
{
    (void)u;
    /* x leaf [3,2,4] -> [2,3,4] with batch dims that do not fold into one row stride */
    return nd_linear(nd_transpose(in[0], 0, 1), in[1], in[2]);
}

static nd_tensor *fn_linear_size1_layout(nd_tensor *const *in, void *u)
{
    (void)u;
    /* leaf [2,1,6,4] narrowed to [2,1,3,4]: the size-1 dim's stride says nothing, the batch dim
     * does not fold into the rows */
    return nd_linear(nd_narrow(in[0], 2, 0, 3), in[1], NULL);
}

TEST(linear)
{
    nd_scope_begin();
    GC("linear [4,3] x [2,3] + [2]", fn_linear, NULL, leaf(ANY, ND_SHAPE(4, 3)), leaf(ANY, ND_SHAPE(2, 3)),
       leaf(ANY, ND_SHAPE(2)));
    GC("linear 3-D input", fn_linear, NULL, leaf(ANY, ND_SHAPE(2, 2, 3)), leaf(ANY, ND_SHAPE(4, 3)), leaf(ANY, ND_SHAPE(4)));
    GC("linear 1-D input", fn_linear, NULL, leaf(ANY, ND_SHAPE(3)), leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(2)));
    GC("linear without bias", fn_linear_nobias, NULL, leaf(ANY, ND_SHAPE(4, 3)), leaf(ANY, ND_SHAPE(2, 3)));
    GC("linear of transposed / expanded operands", fn_linear_noncontig, NULL, leaf(ANY, ND_SHAPE(3, 4)),
       leaf(ANY, ND_SHAPE(3, 2)), leaf(ANY, ND_SHAPE(1)));
    GC("linear of a 3-D input whose batch dims do not fold", fn_linear_unfoldable, NULL, leaf(ANY, ND_SHAPE(3, 2, 4)),
       leaf(ANY, ND_SHAPE(5, 4)), leaf(ANY, ND_SHAPE(5)));
    GC("linear of a narrowed input with a size-1 dim", fn_linear_size1_layout, NULL, leaf(ANY, ND_SHAPE(2, 1, 6, 4)),
       leaf(ANY, ND_SHAPE(5, 4)));
    {   /* the same values as matmul, and no features at all */
        nd_tensor *a = nd_randn(ND_FLOAT32, ND_SHAPE(2, 1, 6, 4)), *w = nd_randn(ND_FLOAT32, ND_SHAPE(5, 4));
        nd_tensor *x = nd_narrow(a, 2, 0, 3);
        nd_tensor *diff = nd_sub(nd_linear(x, w, NULL), nd_matmul(x, nd_t(w)));
        CHECK(diff && nd_item(nd_max(nd_abs(diff))) < 1e-5);
        nd_tensor *x0 = nd_randn(ND_FLOAT64, ND_SHAPE(3, 4)), *w0 = nd_zeros(ND_FLOAT64, ND_SHAPE(0, 4));
        nd_set_requires_grad(x0, true);
        nd_set_requires_grad(w0, true);
        nd_tensor *y0 = nd_linear(x0, w0, NULL);
        CHECK(y0 && nd_size(y0, 1) == 0);
        CHECK(nd_backward(nd_sum(y0)) == ND_OK);
        CHECK(nd_grad(x0) && nd_item(nd_sum(nd_abs(nd_grad(x0)))) == 0);
    }
    nd_scope_end();
}

/* Class-index losses: cases by number. */
static nd_tensor *class_weight3(void) { return nd_from_f64((const double[]){0.2, 1.0, 2.5}, ND_SHAPE(3)); }

static nd_tensor *fn_cross_entropy(nd_tensor *const *in, void *user)
{
    const index_ctx *c = user;
    nd_tensor *t4 = idx((const int64_t[]){2, 0, 1, 2}, ND_SHAPE(4));
    nd_tensor *x = in[0];
    switch (c->which) {
    case 0: return nd_cross_entropy(x, t4, NULL, -100, ND_REDUCTION_MEAN, 0.0);
    case 1: return nd_cross_entropy(x, t4, NULL, -100, ND_REDUCTION_SUM, 0.0);
    case 2: return nd_cross_entropy(x, t4, NULL, -100, ND_REDUCTION_NONE, 0.0);
    case 3: return nd_cross_entropy(x, t4, class_weight3(), -100, ND_REDUCTION_MEAN, 0.0);
    case 4: /* the target 1 is ignored */
        return nd_cross_entropy(x, idx((const int64_t[]){2, 1, 0, 1}, ND_SHAPE(4)), NULL, 1, ND_REDUCTION_MEAN, 0.0);
    case 5: /* label smoothing with weights and an ignored target (-100) */
        return nd_cross_entropy(x, idx((const int64_t[]){2, -100, 0, 1}, ND_SHAPE(4)), class_weight3(), -100,
                                ND_REDUCTION_MEAN, 0.1);
    case 6: /* [N, C, d] = [2,3,2] with targets [2,2] */
        return nd_cross_entropy(x, idx((const int64_t[]){0, 2, 1, 1}, ND_SHAPE(2, 2)), NULL, -100, ND_REDUCTION_MEAN, 0.0);
    case 7: /* a [C] input and a 0-d target */
        return nd_cross_entropy(x, idx((const int64_t[]){1}, ND_SCALAR_SHAPE), NULL, -100, ND_REDUCTION_MEAN, 0.0);
    case 8: /* logits leaf [3,4] transposed -> [4,3] */
        return nd_cross_entropy(nd_t(x), t4, NULL, -100, ND_REDUCTION_SUM, 0.0);
    case 9: /* label smoothing, no reduction, one ignored target */
        return nd_cross_entropy(x, idx((const int64_t[]){2, 0, 5, 1}, ND_SHAPE(4)), NULL, 5, ND_REDUCTION_NONE, 0.2);
    default: /* label smoothing, sum, [N, C, d] */
        return nd_cross_entropy(x, idx((const int64_t[]){0, 2, 1, 1}, ND_SHAPE(2, 2)), class_weight3(), -100,
                                ND_REDUCTION_SUM, 0.3);
    }
}

TEST(cross_entropy)
{
    nd_scope_begin();
    index_ctx c[11];
    for (int i = 0; i < 11; i++)
        c[i].which = i;
    GC("cross_entropy mean", fn_cross_entropy, &c[0], leaf(ANY, ND_SHAPE(4, 3)));
    GC("cross_entropy sum", fn_cross_entropy, &c[1], leaf(ANY, ND_SHAPE(4, 3)));
    GC("cross_entropy none", fn_cross_entropy, &c[2], leaf(ANY, ND_SHAPE(4, 3)));
    GC("cross_entropy class weights", fn_cross_entropy, &c[3], leaf(ANY, ND_SHAPE(4, 3)));
    GC("cross_entropy ignore_index", fn_cross_entropy, &c[4], leaf(ANY, ND_SHAPE(4, 3)));
    GC("cross_entropy label smoothing, weights, ignore", fn_cross_entropy, &c[5], leaf(ANY, ND_SHAPE(4, 3)));
    GC("cross_entropy [N,C,d]", fn_cross_entropy, &c[6], leaf(ANY, ND_SHAPE(2, 3, 2)));
    GC("cross_entropy [C] with 0-d target", fn_cross_entropy, &c[7], leaf(ANY, ND_SHAPE(3)));
    GC("cross_entropy of transposed logits", fn_cross_entropy, &c[8], leaf(ANY, ND_SHAPE(3, 4)));
    GC("cross_entropy label smoothing, none, ignore", fn_cross_entropy, &c[9], leaf(ANY, ND_SHAPE(4, 3)));
    GC("cross_entropy label smoothing, sum, [N,C,d], weights", fn_cross_entropy, &c[10], leaf(ANY, ND_SHAPE(2, 3, 2)));
    nd_scope_end();
}

static nd_tensor *fn_nll_loss(nd_tensor *const *in, void *user)
{
    const index_ctx *c = user;
    nd_tensor *t4 = idx((const int64_t[]){1, 0, 2, 2}, ND_SHAPE(4));
    switch (c->which) {
    case 0: return nd_nll_loss(in[0], t4, NULL, -100, ND_REDUCTION_MEAN);
    case 1: return nd_nll_loss(in[0], t4, class_weight3(), -100, ND_REDUCTION_SUM);
    case 2: return nd_nll_loss(in[0], t4, class_weight3(), 2, ND_REDUCTION_MEAN);
    case 3: return nd_nll_loss(in[0], idx((const int64_t[]){0, 2, 1, 1}, ND_SHAPE(2, 2)), NULL, -100, ND_REDUCTION_NONE);
    case 4: return nd_nll_loss(nd_log_softmax(in[0], 1), t4, class_weight3(), -100, ND_REDUCTION_MEAN);
    default: return nd_nll_loss(nd_log_softmax(in[0], 0), idx((const int64_t[]){2}, ND_SCALAR_SHAPE), NULL, -100,
                                ND_REDUCTION_MEAN);
    }
}

TEST(nll_loss)
{
    nd_scope_begin();
    index_ctx c0 = {0}, c1 = {1}, c2 = {2}, c3 = {3}, c4 = {4}, c5 = {5};
    GC("nll_loss mean", fn_nll_loss, &c0, leaf(ANY, ND_SHAPE(4, 3)));
    GC("nll_loss weighted sum", fn_nll_loss, &c1, leaf(ANY, ND_SHAPE(4, 3)));
    GC("nll_loss weighted mean, ignore_index 2", fn_nll_loss, &c2, leaf(ANY, ND_SHAPE(4, 3)));
    GC("nll_loss [N,C,d] none", fn_nll_loss, &c3, leaf(ANY, ND_SHAPE(2, 3, 2)));
    GC("nll_loss of log_softmax, weighted mean", fn_nll_loss, &c4, leaf(ANY, ND_SHAPE(4, 3)));
    GC("nll_loss [C] of log_softmax", fn_nll_loss, &c5, leaf(ANY, ND_SHAPE(3)));
    nd_scope_end();
}

/* Regression losses: input and target both require grad (PyTorch differentiates both). */
typedef struct loss_ctx {
    int kind; /* 0 mse, 1 l1, 2 smooth_l1 */
    nd_reduction reduction;
    double beta;
    int layout; /* 0 plain, 1 transposed input, 2 target broadcast */
} loss_ctx;

static nd_tensor *fn_regression_loss(nd_tensor *const *in, void *user)
{
    const loss_ctx *c = user;
    nd_tensor *x = c->layout == 1 ? nd_t(in[0]) : in[0];
    switch (c->kind) {
    case 0: return nd_mse_loss(x, in[1], c->reduction);
    case 1: return nd_l1_loss(x, in[1], c->reduction);
    default: return nd_smooth_l1_loss(x, in[1], c->reduction, c->beta);
    }
}

static void check_regression_loss(int kind, double beta)
{
    static const char *names[3] = {"mse_loss", "l1_loss", "smooth_l1_loss"};
    static const nd_reduction reds[3] = {ND_REDUCTION_MEAN, ND_REDUCTION_SUM, ND_REDUCTION_NONE};
    nd_scope_begin();
    char label[128];
    for (int r = 0; r < 3; r++) {
        loss_ctx c = {kind, reds[r], beta, 0};
        snprintf(label, sizeof label, "%s beta %g reduction %d", names[kind], beta, r);
        GC(label, fn_regression_loss, &c, leaf(GRID, ND_SHAPE(2, 3)), leaf(OFFGRID, ND_SHAPE(2, 3)));
    }
    loss_ctx t = {kind, ND_REDUCTION_MEAN, beta, 1}, b = {kind, ND_REDUCTION_SUM, beta, 2};
    snprintf(label, sizeof label, "%s beta %g transposed input", names[kind], beta);
    GC(label, fn_regression_loss, &t, leaf(GRID, ND_SHAPE(3, 2)), leaf(OFFGRID, ND_SHAPE(2, 3)));
    snprintf(label, sizeof label, "%s beta %g broadcast target", names[kind], beta);
    GC(label, fn_regression_loss, &b, leaf(GRID, ND_SHAPE(2, 3)), leaf(OFFGRID, ND_SHAPE(3)));
    nd_tensor *target = nd_from_f64((const double[]){0.07, -0.4, 1.0, 0.5, -1.0, 0.22}, ND_SHAPE(2, 3));
    loss_ctx k = {kind, ND_REDUCTION_MEAN, beta, 0};
    snprintf(label, sizeof label, "%s beta %g constant target", names[kind], beta);
    GC(label, fn_regression_loss, &k, leaf(GRID, ND_SHAPE(2, 3)), target);
    nd_scope_end();
}

TEST(mse_loss) { check_regression_loss(0, 0); }
TEST(l1_loss) { check_regression_loss(1, 0); }
TEST(smooth_l1_loss)
{
    check_regression_loss(2, 1.0);
    check_regression_loss(2, 0.5);
    check_regression_loss(2, 0.0);
}

/* Binary cross-entropy: probabilities 0.5 * POS in [0.3, 0.8]; target and weight constants unless
 * the case says otherwise. */
static nd_tensor *fn_bce(nd_tensor *const *in, void *user)
{
    const index_ctx *c = user;
    nd_tensor *p = nd_mul_scalar(in[0], 0.5);
    nd_tensor *y = nd_from_f64((const double[]){0, 1, 0.3, 1, 0, 0.75}, ND_SHAPE(2, 3));
    nd_tensor *w = nd_from_f64((const double[]){0.5, 2.0, 1.0}, ND_SHAPE(3));
    switch (c->which) {
    case 0: return nd_binary_cross_entropy(p, y, NULL, ND_REDUCTION_MEAN);
    case 1: return nd_binary_cross_entropy(p, y, w, ND_REDUCTION_SUM);
    case 2: return nd_binary_cross_entropy(p, y, NULL, ND_REDUCTION_NONE);
    case 3: return nd_binary_cross_entropy(nd_t(p), y, w, ND_REDUCTION_MEAN); /* leaf [3,2] */
    default: return nd_binary_cross_entropy(p, in[1], w, ND_REDUCTION_MEAN);      /* target requires grad */
    }
}

static nd_tensor *fn_bce_logits(nd_tensor *const *in, void *user)
{
    const index_ctx *c = user;
    nd_tensor *x = nd_mul_scalar(in[0], 3.0);
    nd_tensor *y = nd_from_f64((const double[]){0, 1, 0.3, 1, 0, 0.75}, ND_SHAPE(2, 3));
    nd_tensor *w = nd_from_f64((const double[]){0.5, 2.0, 1.0}, ND_SHAPE(3));
    nd_tensor *pw = nd_from_f64((const double[]){3.0, 0.5, 1.5}, ND_SHAPE(3));
    switch (c->which) {
    case 0: return nd_binary_cross_entropy_with_logits(x, y, NULL, NULL, ND_REDUCTION_MEAN);
    case 1: return nd_binary_cross_entropy_with_logits(x, y, w, NULL, ND_REDUCTION_SUM);
    case 2: return nd_binary_cross_entropy_with_logits(x, y, NULL, pw, ND_REDUCTION_NONE);
    case 3: return nd_binary_cross_entropy_with_logits(x, y, w, pw, ND_REDUCTION_MEAN);
    case 4: /* large logits: stable, gradient sigma(x) - y */
        return nd_binary_cross_entropy_with_logits(nd_mul_scalar(x, 40.0), y, NULL, NULL, ND_REDUCTION_SUM);
    case 5: return nd_binary_cross_entropy_with_logits(nd_t(x), y, NULL, NULL, ND_REDUCTION_MEAN); /* leaf [3,2] */
    default: return nd_binary_cross_entropy_with_logits(x, in[1], w, pw, ND_REDUCTION_MEAN); /* target requires grad */
    }
}

TEST(binary_cross_entropy)
{
    nd_scope_begin();
    index_ctx c0 = {0}, c1 = {1}, c2 = {2}, c3 = {3};
    GC("bce mean", fn_bce, &c0, leaf(POS, ND_SHAPE(2, 3)));
    GC("bce weighted sum", fn_bce, &c1, leaf(POS, ND_SHAPE(2, 3)));
    GC("bce none", fn_bce, &c2, leaf(POS, ND_SHAPE(2, 3)));
    GC("bce of transposes", fn_bce, &c3, leaf(POS, ND_SHAPE(3, 2)));
    nd_scope_end();
}

TEST(binary_cross_entropy_with_logits)
{
    nd_scope_begin();
    index_ctx c0 = {0}, c1 = {1}, c2 = {2}, c3 = {3}, c4 = {4}, c5 = {5};
    GC("bce_with_logits mean", fn_bce_logits, &c0, leaf(ANY, ND_SHAPE(2, 3)));
    GC("bce_with_logits weighted sum", fn_bce_logits, &c1, leaf(ANY, ND_SHAPE(2, 3)));
    GC("bce_with_logits pos_weight none", fn_bce_logits, &c2, leaf(ANY, ND_SHAPE(2, 3)));
    GC("bce_with_logits weight and pos_weight", fn_bce_logits, &c3, leaf(ANY, ND_SHAPE(2, 3)));
    GC("bce_with_logits large logits", fn_bce_logits, &c4, leaf(AWAY, ND_SHAPE(2, 3)));
    GC("bce_with_logits of transposes", fn_bce_logits, &c5, leaf(ANY, ND_SHAPE(3, 2)));
    nd_scope_end();
}

/* PyTorch differentiates both BCE forms with respect to the target too. */
TEST(binary_cross_entropy_target_gradient)
{
    nd_scope_begin();
    index_ctx c = {9};
    GC("bce, target requires grad", fn_bce, &c, leaf(POS, ND_SHAPE(2, 3)), leaf(POS, ND_SHAPE(2, 3)));
    GC("bce_with_logits, target requires grad", fn_bce_logits, &c, leaf(ANY, ND_SHAPE(2, 3)), leaf(POS, ND_SHAPE(2, 3)));
    nd_scope_end();
}

/* Dropout: the mask is drawn after reseeding, so every evaluation of fn sees the same mask. */
static nd_tensor *fn_dropout(nd_tensor *const *in, void *user)
{
    const index_ctx *c = user;
    nd_manual_seed(1234);
    switch (c->which) {
    case 0: return nd_dropout(in[0], 0.3, true);
    case 1: return nd_dropout(in[0], 0.5, false); /* eval: identity */
    case 2: return nd_dropout(in[0], 0.0, true);
    case 3: return nd_dropout(in[0], 1.0, true);  /* everything dropped: zero gradient */
    default: return nd_mul(nd_dropout(nd_t(in[0]), 0.6, true), nd_t(in[0])); /* leaf [4,3] */
    }
}

TEST(dropout)
{
    nd_scope_begin();
    index_ctx c0 = {0}, c1 = {1}, c2 = {2}, c3 = {3}, c4 = {4};
    GC("dropout p 0.3 training", fn_dropout, &c0, leaf(ANY, ND_SHAPE(4, 5)));
    GC("dropout eval", fn_dropout, &c1, leaf(ANY, ND_SHAPE(2, 3)));
    GC("dropout p 0", fn_dropout, &c2, leaf(ANY, ND_SHAPE(2, 3)));
    GC("dropout p 1", fn_dropout, &c3, leaf(ANY, ND_SHAPE(2, 3)));
    GC("dropout of a transpose, times it", fn_dropout, &c4, leaf(ANY, ND_SHAPE(4, 3)));
    nd_scope_end();
}

/* Normalisation layers. */
static nd_tensor *fn_layer_norm(nd_tensor *const *in, void *user)
{
    const index_ctx *c = user;
    switch (c->which) {
    case 0: return nd_layer_norm(in[0], 1, (const int64_t[]){4}, in[1], in[2], 1e-5);
    case 1: return nd_layer_norm(in[0], 2, (const int64_t[]){3, 4}, in[1], in[2], 1e-5);
    case 2: return nd_layer_norm(in[0], 1, (const int64_t[]){4}, NULL, NULL, 1e-5);
    case 3: return nd_layer_norm(nd_transpose(in[0], 1, 2), 1, (const int64_t[]){3}, in[1], NULL, 0.1); /* leaf [2,3,4] */
    default: return nd_layer_norm(in[0], 1, (const int64_t[]){5}, in[1], in[2], 1e-5);                 /* 1-D */
    }
}

static nd_tensor *fn_rms_norm(nd_tensor *const *in, void *user)
{
    const index_ctx *c = user;
    switch (c->which) {
    case 0: return nd_rms_norm(in[0], 1, (const int64_t[]){4}, in[1], 1e-6);
    case 1: return nd_rms_norm(in[0], 2, (const int64_t[]){3, 4}, in[1], 1e-6);
    case 2: return nd_rms_norm(in[0], 1, (const int64_t[]){4}, NULL, 1e-6);
    default: return nd_rms_norm(nd_slice(in[0], 1, 0, 7, 2), 1, (const int64_t[]){4}, in[1], 0.01); /* leaf [3,7] */
    }
}

TEST(layer_norm)
{
    nd_scope_begin();
    index_ctx c0 = {0}, c1 = {1}, c2 = {2}, c3 = {3}, c4 = {4};
    GC("layer_norm [4] with weight and bias", fn_layer_norm, &c0, leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(4)),
       leaf(ANY, ND_SHAPE(4)));
    GC("layer_norm [3,4]", fn_layer_norm, &c1, leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(3, 4)),
       leaf(ANY, ND_SHAPE(3, 4)));
    GC("layer_norm without affine", fn_layer_norm, &c2, leaf(ANY, ND_SHAPE(3, 4)));
    GC("layer_norm of a transpose, eps 0.1", fn_layer_norm, &c3, leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(3)));
    GC("layer_norm 1-D", fn_layer_norm, &c4, leaf(ANY, ND_SHAPE(5)), leaf(ANY, ND_SHAPE(5)), leaf(ANY, ND_SHAPE(5)));
    nd_scope_end();
}

TEST(rms_norm)
{
    nd_scope_begin();
    index_ctx c0 = {0}, c1 = {1}, c2 = {2}, c3 = {3};
    GC("rms_norm [4] with weight", fn_rms_norm, &c0, leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(4)));
    GC("rms_norm [3,4]", fn_rms_norm, &c1, leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(3, 4)));
    GC("rms_norm without weight", fn_rms_norm, &c2, leaf(ANY, ND_SHAPE(3, 4)));
    GC("rms_norm of a step-2 slice", fn_rms_norm, &c3, leaf(ANY, ND_SHAPE(3, 7)), leaf(ANY, ND_SHAPE(4)));
    nd_scope_end();
}

static nd_tensor *fn_batch_norm(nd_tensor *const *in, void *user)
{
    const index_ctx *c = user;
    nd_tensor *rm = nd_from_f64((const double[]){0.1, -0.2, 0.3}, ND_SHAPE(3));
    nd_tensor *rv = nd_from_f64((const double[]){0.5, 1.5, 2.0}, ND_SHAPE(3));
    switch (c->which) {
    case 0: return nd_batch_norm(in[0], NULL, NULL, in[1], in[2], true, 0.1, 1e-5);   /* [4,3,2] */
    case 1: return nd_batch_norm(in[0], rm, rv, in[1], in[2], true, 0.1, 1e-5);       /* updates rm, rv */
    case 2: return nd_batch_norm(in[0], rm, rv, in[1], in[2], false, 0.1, 1e-5);      /* eval */
    case 3: return nd_batch_norm(in[0], NULL, NULL, NULL, NULL, true, 0.1, 1e-5);     /* [3,3,2,2] */
    case 4: return nd_batch_norm(nd_transpose(in[0], 0, 1), NULL, NULL, in[1], NULL, true, 0.1, 1e-3); /* leaf [3,4] */
    default: return nd_batch_norm(in[0], rm, rv, NULL, NULL, false, 0.1, 1e-5);       /* eval, no affine */
    }
}

TEST(batch_norm)
{
    nd_scope_begin();
    index_ctx c0 = {0}, c1 = {1}, c2 = {2}, c3 = {3}, c4 = {4}, c5 = {5};
    GC("batch_norm training [4,3,2]", fn_batch_norm, &c0, leaf(ANY, ND_SHAPE(4, 3, 2)), leaf(ANY, ND_SHAPE(3)),
       leaf(ANY, ND_SHAPE(3)));
    GC("batch_norm training with running stats", fn_batch_norm, &c1, leaf(ANY, ND_SHAPE(4, 3)), leaf(ANY, ND_SHAPE(3)),
       leaf(ANY, ND_SHAPE(3)));
    GC("batch_norm eval", fn_batch_norm, &c2, leaf(ANY, ND_SHAPE(2, 3, 2)), leaf(ANY, ND_SHAPE(3)), leaf(ANY, ND_SHAPE(3)));
    GC("batch_norm training 4-D without affine", fn_batch_norm, &c3, leaf(ANY, ND_SHAPE(3, 3, 2, 2)));
    GC("batch_norm of a transpose", fn_batch_norm, &c4, leaf(ANY, ND_SHAPE(3, 4)), leaf(ANY, ND_SHAPE(3)));
    GC("batch_norm eval without affine", fn_batch_norm, &c5, leaf(ANY, ND_SHAPE(2, 3)));
    nd_scope_end();
}

static nd_tensor *fn_group_norm(nd_tensor *const *in, void *user)
{
    const index_ctx *c = user;
    switch (c->which) {
    case 0: return nd_group_norm(in[0], 2, in[1], in[2], 1e-5);  /* [2,4,3] */
    case 1: return nd_group_norm(in[0], 1, in[1], in[2], 1e-5);
    case 2: return nd_group_norm(in[0], 4, NULL, NULL, 1e-5);
    case 3: return nd_group_norm(in[0], 3, in[1], NULL, 1e-5);   /* [2,6] */
    default: return nd_group_norm(nd_transpose(in[0], 1, 2), 2, in[1], in[2], 1e-5); /* leaf [2,3,4] */
    }
}

TEST(group_norm)
{
    nd_scope_begin();
    index_ctx c0 = {0}, c1 = {1}, c2 = {2}, c3 = {3}, c4 = {4};
    GC("group_norm 2 groups", fn_group_norm, &c0, leaf(ANY, ND_SHAPE(2, 4, 3)), leaf(ANY, ND_SHAPE(4)), leaf(ANY, ND_SHAPE(4)));
    GC("group_norm 1 group", fn_group_norm, &c1, leaf(ANY, ND_SHAPE(2, 4, 3)), leaf(ANY, ND_SHAPE(4)), leaf(ANY, ND_SHAPE(4)));
    GC("group_norm 4 groups, no affine", fn_group_norm, &c2, leaf(ANY, ND_SHAPE(2, 4, 3)));
    GC("group_norm [2,6] 3 groups", fn_group_norm, &c3, leaf(ANY, ND_SHAPE(2, 6)), leaf(ANY, ND_SHAPE(6)));
    GC("group_norm of a transpose", fn_group_norm, &c4, leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(4)),
       leaf(ANY, ND_SHAPE(4)));
    nd_scope_end();
}

/* Convolutions: inputs x, w and (when the case has one) bias. */
typedef struct conv_ctx {
    int64_t stride[2], padding[2], dilation[2], groups;
    bool bias;
    int layout; /* 0 plain, 1 x transposed in its last two dims */
} conv_ctx;

static nd_tensor *fn_conv2d(nd_tensor *const *in, void *user)
{
    const conv_ctx *c = user;
    nd_tensor *x = c->layout == 1 ? nd_transpose(in[0], -1, -2) : in[0];
    return nd_conv2d(x, in[1], c->bias ? in[2] : NULL, c->stride, c->padding, c->dilation, c->groups);
}

static nd_tensor *fn_conv1d(nd_tensor *const *in, void *user)
{
    const conv_ctx *c = user;
    nd_tensor *x = c->layout == 1 ? nd_transpose(in[0], -1, -2) : in[0];
    return nd_conv1d(x, in[1], c->bias ? in[2] : NULL, c->stride[0], c->padding[0], c->dilation[0], c->groups);
}

TEST(conv1d)
{
    nd_scope_begin();
    conv_ctx plain = {{1, 1}, {0, 0}, {1, 1}, 1, true, 0}, strided = {{2, 1}, {1, 0}, {1, 1}, 1, true, 0};
    conv_ctx dilated = {{1, 1}, {2, 0}, {2, 1}, 1, false, 0}, grouped = {{1, 1}, {1, 0}, {1, 1}, 2, true, 0};
    conv_ctx trans = {{1, 1}, {0, 0}, {1, 1}, 1, true, 1};
    GC("conv1d", fn_conv1d, &plain, leaf(ANY, ND_SHAPE(2, 2, 5)), leaf(ANY, ND_SHAPE(3, 2, 3)), leaf(ANY, ND_SHAPE(3)));
    GC("conv1d stride 2 padding 1", fn_conv1d, &strided, leaf(ANY, ND_SHAPE(2, 2, 5)), leaf(ANY, ND_SHAPE(3, 2, 3)),
       leaf(ANY, ND_SHAPE(3)));
    GC("conv1d dilation 2 padding 2, no bias", fn_conv1d, &dilated, leaf(ANY, ND_SHAPE(1, 2, 5)),
       leaf(ANY, ND_SHAPE(2, 2, 2)));
    GC("conv1d 2 groups", fn_conv1d, &grouped, leaf(ANY, ND_SHAPE(1, 4, 4)), leaf(ANY, ND_SHAPE(2, 2, 3)),
       leaf(ANY, ND_SHAPE(2)));
    GC("conv1d of a transposed input", fn_conv1d, &trans, leaf(ANY, ND_SHAPE(2, 5, 2)), leaf(ANY, ND_SHAPE(3, 2, 3)),
       leaf(ANY, ND_SHAPE(3)));
    nd_scope_end();
}

TEST(conv2d)
{
    nd_scope_begin();
    conv_ctx plain = {{1, 1}, {0, 0}, {1, 1}, 1, true, 0}, mixed = {{2, 1}, {1, 0}, {1, 2}, 1, true, 0};
    conv_ctx grouped = {{1, 1}, {1, 1}, {1, 1}, 2, false, 0}, trans = {{1, 2}, {0, 1}, {1, 1}, 1, true, 1};
    GC("conv2d", fn_conv2d, &plain, leaf(ANY, ND_SHAPE(1, 2, 4, 4)), leaf(ANY, ND_SHAPE(3, 2, 2, 2)),
       leaf(ANY, ND_SHAPE(3)));
    GC("conv2d stride (2,1) padding (1,0) dilation (1,2)", fn_conv2d, &mixed, leaf(ANY, ND_SHAPE(2, 2, 4, 4)),
       leaf(ANY, ND_SHAPE(2, 2, 2, 2)), leaf(ANY, ND_SHAPE(2)));
    GC("conv2d 2 groups padding 1", fn_conv2d, &grouped, leaf(ANY, ND_SHAPE(1, 4, 3, 3)), leaf(ANY, ND_SHAPE(2, 2, 2, 2)));
    GC("conv2d of a transposed input", fn_conv2d, &trans, leaf(ANY, ND_SHAPE(1, 2, 3, 4)), leaf(ANY, ND_SHAPE(2, 2, 2, 2)),
       leaf(ANY, ND_SHAPE(2)));
    nd_scope_end();
}

typedef struct pool_ctx {
    int64_t kernel[2], stride[2], padding[2];
    bool no_stride;
    bool want_indices;
    bool transposed;
} pool_ctx;

static nd_tensor *fn_max_pool(nd_tensor *const *in, void *user)
{
    const pool_ctx *c = user;
    nd_tensor *x = c->transposed ? nd_transpose(in[0], -1, -2) : in[0];
    nd_tensor *indices = NULL;
    nd_tensor *y = nd_max_pool2d(x, c->kernel, c->no_stride ? NULL : c->stride, c->padding,
                                 c->want_indices ? &indices : NULL);
    if (y && c->want_indices && (!indices || nd_dtype_of(indices) != ND_INT64))
        return NULL;
    return y;
}

static nd_tensor *fn_avg_pool(nd_tensor *const *in, void *user)
{
    const pool_ctx *c = user;
    nd_tensor *x = c->transposed ? nd_transpose(in[0], -1, -2) : in[0];
    return nd_avg_pool2d(x, c->kernel, c->no_stride ? NULL : c->stride, c->padding);
}

TEST(max_pool2d)
{
    nd_scope_begin();
    pool_ctx p22 = {{2, 2}, {0, 0}, {0, 0}, true, false, false};
    pool_ctx p33 = {{3, 3}, {2, 1}, {1, 1}, false, true, false};
    pool_ctx p23 = {{2, 3}, {1, 2}, {0, 1}, false, true, false};
    pool_ctx pt = {{2, 2}, {1, 1}, {1, 0}, false, false, true};
    GC("max_pool2d 2x2", fn_max_pool, &p22, leaf(DISTINCT, ND_SHAPE(1, 2, 4, 5)));
    GC("max_pool2d 3x3 stride (2,1) padding 1, overlapping", fn_max_pool, &p33, leaf(DISTINCT, ND_SHAPE(1, 2, 4, 5)));
    GC("max_pool2d 2x3 stride (1,2) padding (0,1)", fn_max_pool, &p23, leaf(DISTINCT, ND_SHAPE(2, 1, 3, 5)));
    GC("max_pool2d of a transposed input", fn_max_pool, &pt, leaf(DISTINCT, ND_SHAPE(1, 2, 4, 3)));
    nd_scope_end();
}

/* No input channels: the output is the bias (PyTorch gives the same), the weight gradient empty. */
TEST(conv2d_without_input_channels)
{
    nd_scope_begin();
    for (int round = 0; round < 2; round++) { /* the second round reuses this thread's scratch */
        nd_tensor *x = nd_randn(ND_FLOAT32, ND_SHAPE(2, 0, 5, 5)), *w = nd_randn(ND_FLOAT32, ND_SHAPE(3, 0, 3, 3));
        nd_tensor *b = nd_from_f64((const double[]){1, -2, 3}, ND_SHAPE(3));
        nd_tensor *conv = nd_conv2d(nd_randn(ND_FLOAT32, ND_SHAPE(2, 2, 5, 5)), nd_randn(ND_FLOAT32, ND_SHAPE(3, 2, 3, 3)),
                                    NULL, (const int64_t[]){1, 1}, (const int64_t[]){1, 1}, (const int64_t[]){1, 1}, 1);
        CHECK(conv != NULL);
        nd_tensor *y = nd_conv2d(x, w, nd_to(b, ND_FLOAT32), (const int64_t[]){1, 1}, (const int64_t[]){1, 1},
                                 (const int64_t[]){1, 1}, 1);
        CHECK(y && nd_size(y, 1) == 3 && nd_item(nd_sum(y)) == 2 * 25 * (1 - 2 + 3));
        nd_tensor *y0 = nd_conv2d(x, w, NULL, (const int64_t[]){1, 1}, (const int64_t[]){1, 1}, (const int64_t[]){1, 1}, 1);
        CHECK(y0 && nd_item(nd_sum(nd_abs(y0))) == 0);
    }
    nd_scope_end();
}

/* NaN, signed zeros and ties, in float32 and float64, with and without indices (two kernels),
 * on the 2x2 fast path and on an overlapping padded window; expected values from PyTorch 1.13:
 * a NaN window reports and receives the gradient at its last NaN, a tie at its first maximum. */
/* The pooled output changed in place (no grad) before the backward: as in PyTorch the gradient
 * still reaches the maxima the forward found, since the op keeps only its input. */
TEST(max_pool2d_output_changed_in_place)
{
    nd_scope_begin();
    nd_tensor *x = nd_from_f64((const double[]){1, 4, 2, 3, 0, 0, 5, 1, 7, 2, 0, 0, 1, 1, 1, 9}, ND_SHAPE(1, 1, 4, 4));
    nd_set_requires_grad(x, true);
    nd_tensor *y = nd_max_pool2d(x, (const int64_t[]){2, 2}, NULL, (const int64_t[]){0, 0}, NULL);
    bool was = nd_set_grad_enabled(false);
    CHECK(nd_fill_(y, -3.0) == ND_OK);
    nd_set_grad_enabled(was);
    CHECK(nd_backward(nd_sum(y)) == ND_OK);
    CHECK_VALUES(nd_grad(x), 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1);
    nd_scope_end();
}

TEST(max_pool2d_nan_zero_and_ties)
{
    const double n = NAN;
    const double plane[16] = {1, n, 3, 3, n, 2, 3, 1, -0.0, -0.0, 5, 5, -0.0, -0.0, 5, 4};
    for (int dt = 0; dt < 2; dt++)
        for (int with_idx = 0; with_idx < 2; with_idx++) {
            nd_scope_begin();
            nd_tensor *x = nd_to(nd_from_f64(plane, ND_SHAPE(1, 1, 4, 4)), dt ? ND_FLOAT64 : ND_FLOAT32);
            nd_set_requires_grad(x, true);
            nd_tensor *idx = NULL;
            nd_tensor *y = nd_max_pool2d(x, (const int64_t[]){2, 2}, NULL, (const int64_t[]){0, 0}, with_idx ? &idx : NULL);
            CHECK_VALUES(y, 0, n, 3, -0.0, 5);
            double first_zero = 1;
            CHECK(y && nd_copy_out(nd_narrow(nd_flatten(y, 0, -1), 0, 2, 1), &first_zero, sizeof first_zero, ND_FLOAT64) == ND_OK &&
                  signbit(first_zero));
            if (with_idx)
                CHECK_VALUES(idx, 0, 4, 2, 8, 10);
            nd_tensor *w = nd_to(nd_from_f64((const double[]){1, 2, 3, 4}, ND_SHAPE(1, 1, 2, 2)), nd_dtype_of(x));
            CHECK(nd_backward(nd_sum(nd_mul(y, w))) == ND_OK);
            CHECK_VALUES(nd_grad(x), 0, 0, 0, 2, 0, 1, 0, 0, 0, 3, 0, 4, 0, 0, 0, 0, 0);
            nd_tensor *y3 = nd_max_pool2d(nd_detach(x), (const int64_t[]){3, 3}, (const int64_t[]){1, 1},
                                          (const int64_t[]){1, 1}, with_idx ? &idx : NULL);
            CHECK_VALUES(y3, 0, n, n, n, 3, n, n, n, 5, n, n, 5, 5, -0.0, 5, 5, 5);
            if (with_idx)
                CHECK_VALUES(idx, 0, 4, 4, 1, 2, 4, 4, 1, 10, 4, 4, 10, 10, 8, 10, 10, 10);
            nd_tensor *x3 = nd_detach(x);
            nd_set_requires_grad(x3, true);
            nd_tensor *w3 = nd_to(nd_arange(1, 17, 1, ND_FLOAT64), nd_dtype_of(x));
            y3 = nd_max_pool2d(x3, (const int64_t[]){3, 3}, (const int64_t[]){1, 1}, (const int64_t[]){1, 1}, NULL);
            CHECK(nd_backward(nd_sum(nd_mul(nd_flatten(y3, 0, -1), w3))) == ND_OK);
            CHECK_VALUES(nd_grad(x3), 0, 0, 10, 4, 0, 33, 0, 0, 0, 13, 0, 76, 0, 0, 0, 0, 0);
            nd_scope_end();
        }
}

TEST(avg_pool2d)
{
    nd_scope_begin();
    pool_ctx p22 = {{2, 2}, {0, 0}, {0, 0}, true, false, false};
    pool_ctx p32 = {{3, 2}, {2, 1}, {1, 0}, false, false, false};
    pool_ctx pt = {{2, 2}, {1, 1}, {1, 1}, false, false, true};
    GC("avg_pool2d 2x2", fn_avg_pool, &p22, leaf(ANY, ND_SHAPE(1, 2, 4, 4)));
    GC("avg_pool2d 3x2 stride (2,1) padding (1,0)", fn_avg_pool, &p32, leaf(ANY, ND_SHAPE(2, 1, 5, 4)));
    GC("avg_pool2d of a transposed input, padding 1", fn_avg_pool, &pt, leaf(ANY, ND_SHAPE(1, 2, 3, 4)));
    nd_scope_end();
}

typedef struct adaptive_ctx {
    int64_t oh, ow;
    bool transposed;
} adaptive_ctx;

static nd_tensor *fn_adaptive(nd_tensor *const *in, void *user)
{
    const adaptive_ctx *c = user;
    nd_tensor *y = nd_adaptive_avg_pool2d(c->transposed ? nd_transpose(in[0], -1, -2) : in[0], c->oh, c->ow);
    return nd_mul(y, y);
}

TEST(adaptive_avg_pool2d)
{
    nd_scope_begin();
    adaptive_ctx a23 = {2, 3, false}, a11 = {1, 1, false}, a33 = {3, 3, false}, same = {5, 4, false}, t = {2, 2, true};
    GC("adaptive_avg_pool2d to (2,3)", fn_adaptive, &a23, leaf(ANY, ND_SHAPE(1, 2, 5, 4)));
    GC("adaptive_avg_pool2d to (1,1)", fn_adaptive, &a11, leaf(ANY, ND_SHAPE(2, 2, 3, 3)));
    GC("adaptive_avg_pool2d to (3,3), overlapping", fn_adaptive, &a33, leaf(ANY, ND_SHAPE(1, 1, 5, 4)));
    GC("adaptive_avg_pool2d to its own size", fn_adaptive, &same, leaf(ANY, ND_SHAPE(1, 1, 5, 4)));
    GC("adaptive_avg_pool2d of a transposed input", fn_adaptive, &t, leaf(ANY, ND_SHAPE(1, 2, 3, 5)));
    nd_scope_end();
}

static nd_tensor *fn_attention(nd_tensor *const *in, void *user)
{
    const index_ctx *c = user;
    nd_tensor *q = in[0], *k = in[1], *v = in[2];
    switch (c->which) {
    case 0: return nd_scaled_dot_product_attention(q, k, v, NULL, 0.0, false, 0.0);
    case 1: return nd_scaled_dot_product_attention(q, k, v, NULL, 0.0, false, 0.7);
    case 2: { /* bool mask [3,5], every row keeps at least one key */
        static const bool m[15] = {true, false, true, true, false, false, true, false, false, true,
                                   true, true, true, true, true};
        return nd_scaled_dot_product_attention(q, k, v, bools(m, ND_SHAPE(3, 5)), 0.0, false, 0.0);
    }
    case 3: { /* float mask added to the scores */
        nd_tensor *m = nd_from_f64((const double[]){0, -1, 0.5, 0, 2, -0.3, 0, 0, 1, -2, 0.1, 0.2, 0.3, 0.4, 0.5},
                                   ND_SHAPE(3, 5));
        return nd_scaled_dot_product_attention(q, k, v, m, 0.0, false, 0.0);
    }
    case 4: return nd_scaled_dot_product_attention(q, k, v, NULL, 0.0, true, 0.0); /* causal, L = S */
    case 5: /* dropout on the attention weights, reseeded so every call sees one mask */
        nd_manual_seed(99);
        return nd_scaled_dot_product_attention(q, k, v, NULL, 0.3, false, 0.0);
    case 7: /* causal with L != S (top-left aligned: query i sees keys 0..i) */
        return nd_scaled_dot_product_attention(q, k, v, NULL, 0.0, true, 0.0);
    default: /* k given transposed: leaf [2,4,5] -> [2,5,4] */
        return nd_scaled_dot_product_attention(q, nd_transpose(k, -1, -2), v, NULL, 0.0, false, 0.0);
    }
}

/* x [2,3] through a fixed linear layer [4,3] + [4], for the second-order checks. */
static nd_tensor *fn_fixed_linear(nd_tensor *const *in, void *user)
{
    (void)user;
    nd_tensor *w = nd_from_f64((const double[]){0.5, -1, 0.2, 0.3, 0.8, -0.4, 1.1, 0, -0.6, -0.2, 0.7, 0.9}, ND_SHAPE(4, 3));
    nd_tensor *b = nd_from_f64((const double[]){0.1, -0.2, 0.3, 0}, ND_SHAPE(4));
    return nd_linear(in[0], w, b);
}

/* GPT layout: heads cut from one packed [B, T, 3*H*D] leaf, every operand strided. */
static nd_tensor *fn_packed_heads_attention(nd_tensor *const *in, void *user)
{
    (void)user;
    nd_tensor *h[3];
    for (int i = 0; i < 3; i++)
        h[i] = nd_transpose(nd_reshape(nd_narrow(in[0], 2, i * 6, 6), ND_SHAPE(2, 4, 2, 3)), 1, 2);
    return nd_scaled_dot_product_attention(h[0], h[1], h[2], NULL, 0.0, true, 0.0);
}

/* Self-attention of one tensor, for the second-order checks: x is q, k and v at once. */
static nd_tensor *fn_self_attention(nd_tensor *const *in, void *user)
{
    const bool *causal = user;
    return nd_scaled_dot_product_attention(in[0], in[0], in[0], NULL, 0.0, *causal, 0.0);
}

TEST(scaled_dot_product_attention)
{
    nd_scope_begin();
    index_ctx c0 = {0}, c1 = {1}, c2 = {2}, c3 = {3}, c4 = {4}, c5 = {5}, c6 = {6};
    GC("sdpa", fn_attention, &c0, leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(2, 5, 4)), leaf(ANY, ND_SHAPE(2, 5, 2)));
    GC("sdpa scale 0.7", fn_attention, &c1, leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(2, 5, 4)),
       leaf(ANY, ND_SHAPE(2, 5, 2)));
    GC("sdpa bool mask", fn_attention, &c2, leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(2, 5, 4)),
       leaf(ANY, ND_SHAPE(2, 5, 2)));
    GC("sdpa float mask", fn_attention, &c3, leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(2, 5, 4)),
       leaf(ANY, ND_SHAPE(2, 5, 2)));
    GC("sdpa causal", fn_attention, &c4, leaf(ANY, ND_SHAPE(2, 4, 3)), leaf(ANY, ND_SHAPE(2, 4, 3)),
       leaf(ANY, ND_SHAPE(2, 4, 2)));
    GC("sdpa with dropout", fn_attention, &c5, leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(2, 5, 4)),
       leaf(ANY, ND_SHAPE(2, 5, 2)));
    GC("sdpa broadcast batch, k transposed", fn_attention, &c6, leaf(ANY, ND_SHAPE(2, 1, 3, 4)),
       leaf(ANY, ND_SHAPE(2, 4, 5)), leaf(ANY, ND_SHAPE(1, 2, 5, 2)));
    index_ctx c7 = {7};
    GC("sdpa causal, fewer queries than keys", fn_attention, &c7, leaf(ANY, ND_SHAPE(2, 3, 4)),
       leaf(ANY, ND_SHAPE(2, 5, 4)), leaf(ANY, ND_SHAPE(2, 5, 2)));
    GC("sdpa causal, more queries than keys", fn_attention, &c7, leaf(ANY, ND_SHAPE(2, 5, 4)),
       leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(2, 3, 2)));
    GC("sdpa causal, heads cut from a packed qkv", fn_packed_heads_attention, NULL, leaf(ANY, ND_SHAPE(2, 4, 18)));
    /* Causal attention skips the score tiles above the diagonal (tiles of 12 or 6 rows and 32 or
     * 16 columns, and parts of K): lengths over several tiles, not multiples of one, queries fewer
     * or more than keys. */
    GC("sdpa causal, several tiles", fn_attention, &c7, leaf(ANY, ND_SHAPE(1, 53, 3)), leaf(ANY, ND_SHAPE(1, 53, 3)),
       leaf(ANY, ND_SHAPE(1, 53, 2)));
    GC("sdpa causal, several tiles, fewer queries", fn_attention, &c7, leaf(ANY, ND_SHAPE(1, 29, 2)),
       leaf(ANY, ND_SHAPE(1, 61, 2)), leaf(ANY, ND_SHAPE(1, 61, 2)));
    GC("sdpa causal, several tiles, more queries", fn_attention, &c7, leaf(ANY, ND_SHAPE(1, 61, 2)),
       leaf(ANY, ND_SHAPE(1, 29, 2)), leaf(ANY, ND_SHAPE(1, 29, 2)));
    GC("sdpa causal, whole tiles", fn_attention, &c7, leaf(ANY, ND_SHAPE(1, 48, 2)), leaf(ANY, ND_SHAPE(1, 48, 2)),
       leaf(ANY, ND_SHAPE(1, 48, 1)));
    nd_scope_end();
}


/* The global-norm helpers are not differentiable ops: check their values on real gradients. */
TEST(global_norm_and_clip)
{
    nd_scope_begin();
    nd_tensor *a = leaf_of((const double[]){1, 2, 3}, ND_SHAPE(3));
    nd_tensor *b = leaf_of((const double[]){0.5, -1}, ND_SHAPE(2, 1));
    nd_tensor *c = leaf_of((const double[]){4}, ND_SCALAR_SHAPE); /* gets no gradient */
    /* loss = 2 sum(a) + 3 sum(b^2) / 2  ->  grad a = [2, 2, 2], grad b = [1.5, -3] */
    nd_tensor *loss = nd_add(nd_mul_scalar(nd_sum(a), 2.0), nd_mul_scalar(nd_sum(nd_square(b)), 1.5));
    CHECK(nd_backward(loss) == ND_OK);
    double want = sqrt(4 + 4 + 4 + 2.25 + 9);
    double norm = -1;
    nd_tensor *grads[3] = {nd_grad(a), nd_grad(b), nd_grad(c)};
    CHECK(grads[2] == NULL);
    CHECK(nd_global_norm(3, grads, &norm) == ND_OK);
    CHECK_NEAR(norm, want, 1e-12);
    double total = -1;
    nd_tensor *params[3] = {a, b, c};
    /* A max_norm above the total leaves the gradients alone. */
    CHECK(nd_clip_grad_norm(3, params, 100.0, &total) == ND_OK);
    CHECK_NEAR(total, want, 1e-12);
    CHECK_VALUES(nd_grad(a), 1e-12, 2, 2, 2);
    /* Clipping to 1 scales every gradient by 1 / (total + 1e-6), as PyTorch. */
    CHECK(nd_clip_grad_norm(3, params, 1.0, &total) == ND_OK);
    double coef = 1.0 / (want + 1e-6);
    CHECK_NEAR(total, want, 1e-12);
    CHECK_VALUES(nd_grad(a), 1e-12, 2 * coef, 2 * coef, 2 * coef);
    CHECK_VALUES(nd_grad(b), 1e-12, 1.5 * coef, -3 * coef);
    grads[0] = nd_grad(a);
    grads[1] = nd_grad(b);
    CHECK(nd_global_norm(2, grads, &norm) == ND_OK);
    CHECK_NEAR(norm, want * coef, 1e-9);
    nd_scope_end();
}

/* ------------------------------------------------------------------ second order */

/* fn returns d/dx <v, y(x)> built with create_graph, where y = inner(x) (squared when `square`,
 * so linear ops get an x-dependent gradient). Checking it against finite differences checks the
 * backward rules of the backward pass: inputs are x and v. */
typedef struct second_ctx {
    nd_function inner;
    void *inner_user;
    bool square;
} second_ctx;

static nd_tensor *fn_second(nd_tensor *const *in, void *user)
{
    const second_ctx *c = user;
    bool was = nd_set_grad_enabled(true); /* gradcheck evaluates fn in no-grad mode */
    nd_tensor *x = in[0], *v = in[1];
    nd_tensor *y = c->inner((nd_tensor *const[]){x}, c->inner_user);
    if (y && c->square)
        y = nd_mul(y, y);
    nd_tensor *g = NULL;
    nd_status st = y ? nd_autograd_grad(1, &y, &v, 1, &x, &g, true) : nd_last_status();
    nd_set_grad_enabled(was);
    return st == ND_OK ? g : NULL;
}

static nd_tensor *fn_plain_unary(nd_tensor *const *in, void *user)
{
    const unary_ctx *c = user;
    return c->op(present(in[0], c->layout), c->p);
}

static nd_tensor *fn_plain_lse(nd_tensor *const *in, void *user)
{
    const lse_ctx *c = user;
    return nd_logsumexp(c->layout == 1 ? nd_permute(in[0], ND_DIMS(2, 0, 1)) : in[0], c->ndims, c->dims, c->keepdim);
}

static nd_tensor *fn_plain_prod(nd_tensor *const *in, void *user)
{
    const prod_ctx *c = user;
    nd_tensor *x = present(in[0], c->layout);
    return c->all ? nd_prod(x) : nd_prod_dim(x, c->dim, c->keepdim);
}

static nd_tensor *fn_plain_cumsum(nd_tensor *const *in, void *user)
{
    const cumsum_ctx *c = user;
    return nd_cumsum(present(in[0], c->layout), c->dim);
}

static nd_tensor *fn_plain_gather(nd_tensor *const *in, void *user)
{
    (void)user;
    return nd_gather(in[0], 1, idx((const int64_t[]){0, 3, 3, 1, 1, 0, 2, 0, 1}, ND_SHAPE(3, 3)));
}

static nd_tensor *fn_plain_slice(nd_tensor *const *in, void *user)
{
    (void)user;
    return nd_slice(in[0], 1, 1, 7, 2);
}

static nd_tensor *fn_plain_select(nd_tensor *const *in, void *user)
{
    (void)user;
    return nd_select(in[0], 0, 1);
}

/* The fused attention's backward, recorded with create_graph, checked again. */
TEST(second_order_attention)
{
    nd_scope_begin();
    bool plain = false, causal = true;
    second_ctx s1 = {fn_self_attention, &plain, false}, s2 = {fn_self_attention, &causal, true};
    GC("d/dx attention(x, x, x)", fn_second, &s1, leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(2, 3, 4)));
    GC("d/dx causal attention(x, x, x)^2", fn_second, &s2, leaf(ANY, ND_SHAPE(2, 4, 3)), leaf(ANY, ND_SHAPE(2, 4, 3)));
    second_ctx s3 = {fn_fixed_linear, NULL, true};
    GC("d/dx linear(x)^2", fn_second, &s3, leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(2, 4)));
    nd_scope_end();
}

TEST(second_order_gelu)
{
    nd_scope_begin();
    unary_ctx exact = {u_gelu, {0, 0}, U_PLAIN}, approx = {u_gelu_tanh, {0, 0}, U_PLAIN};
    unary_ctx exact_t = {u_gelu, {0, 0}, U_TRANSPOSE};
    second_ctx s1 = {fn_plain_unary, &exact, false}, s2 = {fn_plain_unary, &approx, false};
    second_ctx s3 = {fn_plain_unary, &exact_t, true};
    GC("d/dx gelu exact", fn_second, &s1, leaf(GRID, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(2, 3)));
    GC("d/dx gelu tanh", fn_second, &s2, leaf(GRID, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(2, 3)));
    GC("d/dx gelu(t(x))^2", fn_second, &s3, leaf(GRID, ND_SHAPE(3, 2)), leaf(ANY, ND_SHAPE(2, 3)));
    nd_scope_end();
}

TEST(second_order_softplus)
{
    nd_scope_begin();
    unary_ctx sp = {u_softplus, {1.0, 20.0}, U_PLAIN}, sp2 = {u_softplus, {2.0, 1.0}, U_STEP2};
    second_ctx s1 = {fn_plain_unary, &sp, false}, s2 = {fn_plain_unary, &sp2, true};
    GC("d/dx softplus", fn_second, &s1, leaf(GRID, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(2, 3)));
    GC("d/dx softplus(beta 2, threshold 1)^2 of a step-2 slice", fn_second, &s2, leaf(GRID, ND_SHAPE(2, 7)),
       leaf(ANY, ND_SHAPE(2, 3)));
    nd_scope_end();
}

TEST(second_order_logsumexp)
{
    nd_scope_begin();
    lse_ctx one = {1, {1}, false, 0}, several = {2, {0, 2}, true, 0}, all = {0, {0}, false, 0}, perm = {2, {-1, 1}, false, 1};
    second_ctx s1 = {fn_plain_lse, &one, false}, s2 = {fn_plain_lse, &several, false};
    second_ctx s3 = {fn_plain_lse, &all, false}, s4 = {fn_plain_lse, &perm, true};
    GC("d/dx logsumexp dim 1", fn_second, &s1, leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(2, 4)));
    GC("d/dx logsumexp dims (0, 2) keepdim", fn_second, &s2, leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(1, 3, 1)));
    GC("d/dx logsumexp all", fn_second, &s3, leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SCALAR_SHAPE));
    GC("d/dx logsumexp(permuted)^2 dims (-1, 1)", fn_second, &s4, leaf(ANY, ND_SHAPE(2, 3, 4)), leaf(ANY, ND_SHAPE(4)));
    nd_scope_end();
}

TEST(second_order_prod)
{
    nd_scope_begin();
    prod_ctx all = {true, 0, false, U_PLAIN}, d1 = {false, 1, false, U_PLAIN}, d0k = {false, 0, true, U_TRANSPOSE};
    second_ctx s1 = {fn_plain_prod, &all, false}, s2 = {fn_plain_prod, &d1, false}, s3 = {fn_plain_prod, &d0k, true};
    GC("d/dx prod all", fn_second, &s1, leaf(POS, ND_SHAPE(2, 3)), leaf(ANY, ND_SCALAR_SHAPE));
    GC("d/dx prod_dim 1", fn_second, &s2, leaf(AWAY, ND_SHAPE(3, 4)), leaf(ANY, ND_SHAPE(3)));
    GC("d/dx prod_dim(t(x), 0, keepdim)^2", fn_second, &s3, leaf(POS, ND_SHAPE(3, 2)), leaf(ANY, ND_SHAPE(1, 3)));
    nd_scope_end();
}

/* A slice with exactly one zero: d2/dx_j dx_zero of the product is the product of the rest,
 * which the first-order rule must keep differentiable (PyTorch's gradgradcheck passes here). */
TEST(second_order_prod_with_one_zero)
{
    nd_scope_begin();
    prod_ctx all = {true, 0, false, U_PLAIN}, d1 = {false, 1, false, U_PLAIN};
    second_ctx s1 = {fn_plain_prod, &all, false}, s2 = {fn_plain_prod, &d1, false};
    const double one_zero[4] = {0.7, 0.0, -1.3, 1.2};
    GC("d/dx prod all, one zero", fn_second, &s1, leaf_of(one_zero, ND_SHAPE(4)), leaf(ANY, ND_SCALAR_SHAPE));
    const double rows[6] = {0.8, 0.0, 1.3, -0.6, 1.5, 1.1};
    GC("d/dx prod_dim 1, one zero in row 0", fn_second, &s2, leaf_of(rows, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(2)));
    nd_scope_end();
}

TEST(second_order_cumsum)
{
    nd_scope_begin();
    cumsum_ctx d1 = {1, U_PLAIN}, d0 = {0, U_TRANSPOSE};
    second_ctx s1 = {fn_plain_cumsum, &d1, true}, s2 = {fn_plain_cumsum, &d0, true}, s3 = {fn_plain_cumsum, &d1, false};
    GC("d/dx cumsum(x, 1)^2", fn_second, &s1, leaf(ANY, ND_SHAPE(3, 4)), leaf(ANY, ND_SHAPE(3, 4)));
    GC("d/dx cumsum(t(x), 0)^2", fn_second, &s2, leaf(ANY, ND_SHAPE(3, 2)), leaf(ANY, ND_SHAPE(2, 3)));
    /* Linear: the gradient depends on v only. */
    GC("d/dx cumsum(x, 1)", fn_second, &s3, leaf(ANY, ND_SHAPE(3, 4)), leaf(ANY, ND_SHAPE(3, 4)));
    nd_scope_end();
}

TEST(second_order_gather)
{
    nd_scope_begin();
    second_ctx s1 = {fn_plain_gather, NULL, true}, s2 = {fn_plain_gather, NULL, false};
    GC("d/dx gather(x)^2", fn_second, &s1, leaf(ANY, ND_SHAPE(3, 4)), leaf(ANY, ND_SHAPE(3, 3)));
    GC("d/dx gather(x)", fn_second, &s2, leaf(ANY, ND_SHAPE(3, 4)), leaf(ANY, ND_SHAPE(3, 3)));
    nd_scope_end();
}

/* conv2d with a constant weight: its first-order rule goes through col2im, whose own backward
 * rule (im2col) runs here. */
static nd_tensor *fn_plain_conv2d(nd_tensor *const *in, void *user)
{
    (void)user;
    nd_tensor *w = nd_from_f64((const double[]){0.3, -0.2, 0.5, 0.1, -0.4, 0.25, 0.6, -0.15}, ND_SHAPE(2, 1, 2, 2));
    return nd_conv2d(in[0], w, NULL, (const int64_t[]){1, 1}, (const int64_t[]){1, 0}, (const int64_t[]){1, 1}, 1);
}

static nd_tensor *fn_plain_avg_pool(nd_tensor *const *in, void *user)
{
    (void)user;
    return nd_avg_pool2d(in[0], (const int64_t[]){2, 2}, (const int64_t[]){1, 1}, (const int64_t[]){0, 0});
}

TEST(second_order_conv_and_pool)
{
    nd_scope_begin();
    second_ctx s1 = {fn_plain_conv2d, NULL, true}, s2 = {fn_plain_avg_pool, NULL, true};
    GC("d/dx conv2d(x)^2", fn_second, &s1, leaf(ANY, ND_SHAPE(1, 1, 3, 3)), leaf(ANY, ND_SHAPE(1, 2, 4, 2)));
    GC("d/dx avg_pool2d(x)^2", fn_second, &s2, leaf(ANY, ND_SHAPE(1, 1, 3, 3)), leaf(ANY, ND_SHAPE(1, 1, 2, 2)));
    nd_scope_end();
}

/* Second order of more ops, each through a generic check: v gets the shape of inner(x). */
static void second_at(const char *file, int line, const char *label, nd_function inner, void *user, bool square,
                      nd_tensor *x)
{
    if (!x) {
        nd_test_failures++;
        fprintf(stderr, "  %s:%d: [%s] input could not be made: %s\n", file, line, label, nd_last_error());
        return;
    }
    nd_tensor *y = inner((nd_tensor *const[]){x}, user);
    if (!y) {
        nd_test_failures++;
        fprintf(stderr, "  %s:%d: [%s] fn failed: %s\n", file, line, label, nd_last_error());
        return;
    }
    second_ctx c = {inner, user, square};
    gc_at(file, line, label, fn_second, &c, 2, (nd_tensor *const[]){x, leaf(ANY, nd_ndim(y), nd_shape(y))});
}

#define SECOND(label, inner, user, square, x) second_at(__FILE__, __LINE__, (label), (inner), (user), (square), (x))

static nd_tensor *s_softmax(nd_tensor *const *in, void *u) { (void)u; return nd_softmax(in[0], 1); }
static nd_tensor *s_log_softmax(nd_tensor *const *in, void *u) { (void)u; return nd_log_softmax(nd_t(in[0]), 0); }
static nd_tensor *s_norm2(nd_tensor *const *in, void *u) { (void)u; return nd_norm(in[0], 2.0, ND_DIMS(1), false); }
static nd_tensor *s_norm2_all(nd_tensor *const *in, void *u) { (void)u; return nd_norm(in[0], 2.0, 0, NULL, false); }
static nd_tensor *s_norm1(nd_tensor *const *in, void *u) { (void)u; return nd_norm(in[0], 1.0, ND_DIMS(0), true); }
static nd_tensor *s_var(nd_tensor *const *in, void *u) { (void)u; return nd_var(in[0], ND_DIMS(1), 1.0, false); }
static nd_tensor *s_std(nd_tensor *const *in, void *u) { (void)u; return nd_std(in[0], 0, NULL, 0.0, false); }
static nd_tensor *s_max_all(nd_tensor *const *in, void *u) { (void)u; return nd_max(in[0]); }
static nd_tensor *s_min_dim(nd_tensor *const *in, void *u) { (void)u; return nd_min_dim(in[0], 1, false, NULL); }
static nd_tensor *s_masked_fill(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_masked_fill(in[0], bools((const bool[]){true, false, false}, ND_SHAPE(3)), 0.5);
}
static nd_tensor *s_embedding(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_embedding(in[0], idx((const int64_t[]){2, 0, 2, 3}, ND_SHAPE(2, 2)));
}
static nd_tensor *s_index_select(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_index_select(in[0], 1, idx((const int64_t[]){2, 2, 0}, ND_SHAPE(3)));
}
static nd_tensor *s_index_add(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *src = nd_from_f64((const double[]){0.5, -1.0, 2.0, 0.25, 1.5, -0.5}, ND_SHAPE(2, 3));
    return nd_index_add(nd_mul(in[0], in[0]), 0, idx((const int64_t[]){1, 1}, ND_SHAPE(2)), src);
}
static nd_tensor *s_scatter_add(nd_tensor *const *in, void *u)
{
    (void)u;
    /* the input is the src here: its gradient is a gather */
    return nd_scatter_add(nd_zeros(ND_FLOAT64, ND_SHAPE(3, 4)), 1, idx((const int64_t[]){0, 3, 3, 1, 2, 2}, ND_SHAPE(3, 2)),
                          in[0]);
}
static nd_tensor *s_cat(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_cat(2, (nd_tensor *[]){in[0], nd_slice(in[0], 1, 0, 2, 1)}, 1);
}
static nd_tensor *s_stack(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_stack(2, (nd_tensor *[]){in[0], nd_t(nd_t(in[0]))}, 1);
}
static nd_tensor *s_repeat(nd_tensor *const *in, void *u) { (void)u; return nd_repeat(in[0], ND_SHAPE(2, 1, 2)); }
static nd_tensor *s_pad(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_pad(in[0], 4, (const int64_t[]){1, -1, 0, 2}, 0.5);
}
static nd_tensor *s_flip(nd_tensor *const *in, void *u) { (void)u; return nd_flip(in[0], ND_DIMS(0, 1)); }
static nd_tensor *s_tril(nd_tensor *const *in, void *u) { (void)u; return nd_tril(in[0], 0); }
static nd_tensor *s_triu(nd_tensor *const *in, void *u) { (void)u; return nd_triu(in[0], 1); }
static nd_tensor *s_layer_norm(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_layer_norm(in[0], 1, (const int64_t[]){3}, NULL, NULL, 1e-5);
}
static nd_tensor *s_cross_entropy(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_cross_entropy(in[0], idx((const int64_t[]){2, 0, 1}, ND_SHAPE(3)), NULL, -100, ND_REDUCTION_MEAN, 0.1);
}
/* The fused cross-entropy (2-d, no weights or smoothing), one row ignored, mean and sum. */
static nd_tensor *s_cross_entropy_fused(nd_tensor *const *in, void *u)
{
    const nd_reduction *r = u;
    return nd_cross_entropy(in[0], idx((const int64_t[]){2, -100, 1}, ND_SHAPE(3)), NULL, -100, *r, 0.0);
}
static nd_tensor *s_log_softmax_last(nd_tensor *const *in, void *u) { (void)u; return nd_log_softmax(in[0], -1); }
static nd_tensor *s_bce(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *y = nd_from_f64((const double[]){0, 1, 0.3, 1, 0, 0.75}, ND_SHAPE(2, 3));
    return nd_binary_cross_entropy(nd_mul_scalar(in[0], 0.5), y, NULL, ND_REDUCTION_SUM);
}
static nd_tensor *s_bce_logits(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *y = nd_from_f64((const double[]){0, 1, 0.3, 1, 0, 0.75}, ND_SHAPE(2, 3));
    nd_tensor *pw = nd_from_f64((const double[]){3.0, 0.5, 1.5}, ND_SHAPE(3));
    return nd_binary_cross_entropy_with_logits(in[0], y, NULL, pw, ND_REDUCTION_SUM);
}
static nd_tensor *s_max_pool(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_max_pool2d(in[0], (const int64_t[]){2, 2}, (const int64_t[]){1, 1}, (const int64_t[]){0, 0}, NULL);
}
static nd_tensor *s_adaptive(nd_tensor *const *in, void *u) { (void)u; return nd_adaptive_avg_pool2d(in[0], 2, 2); }
static nd_tensor *s_attention(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *k = nd_from_f64((const double[]){0.3, -0.2, 0.5, 0.1, -0.4, 0.25}, ND_SHAPE(3, 2));
    nd_tensor *v = nd_from_f64((const double[]){1.0, -0.5, 0.2, 0.7, -0.3, 0.4}, ND_SHAPE(3, 2));
    return nd_scaled_dot_product_attention(in[0], k, v, NULL, 0.0, false, 0.0);
}

/* Every target ignored: PyTorch gives a NaN mean (0/0) and a zero gradient; the sum is 0. */
TEST(cross_entropy_all_ignored)
{
    nd_scope_begin();
    nd_tensor *x = nd_randn(ND_FLOAT32, ND_SHAPE(3, 4));
    nd_set_requires_grad(x, true);
    nd_tensor *t = idx((const int64_t[]){-100, -100, -100}, ND_SHAPE(3));
    nd_tensor *mean = nd_cross_entropy(x, t, NULL, -100, ND_REDUCTION_MEAN, 0.0);
    CHECK(mean && isnan(nd_item(mean)));
    CHECK(nd_backward(mean) == ND_OK);
    CHECK_VALUES(nd_grad(x), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    nd_tensor *sum = nd_cross_entropy(x, t, NULL, -100, ND_REDUCTION_SUM, 0.0);
    CHECK(sum && nd_item(sum) == 0);
    nd_scope_end();
}

TEST(second_order_more)
{
    nd_scope_begin();
    SECOND("d/dx softmax", s_softmax, NULL, false, leaf(ANY, ND_SHAPE(2, 3)));
    SECOND("d/dx log_softmax(t(x))", s_log_softmax, NULL, false, leaf(ANY, ND_SHAPE(3, 2)));
    SECOND("d/dx norm p=2 dim 1", s_norm2, NULL, false, leaf(ANY, ND_SHAPE(2, 3)));
    SECOND("d/dx norm p=2 all", s_norm2_all, NULL, true, leaf(ANY, ND_SHAPE(2, 3)));
    SECOND("d/dx norm p=1 dim 0 keepdim, squared", s_norm1, NULL, true, leaf(AWAY, ND_SHAPE(2, 3)));
    SECOND("d/dx var dim 1", s_var, NULL, false, leaf(ANY, ND_SHAPE(2, 3)));
    SECOND("d/dx std all", s_std, NULL, false, leaf(ANY, ND_SHAPE(2, 3)));
    SECOND("d/dx max(x)^2", s_max_all, NULL, true, leaf(DISTINCT, ND_SHAPE(2, 3)));
    SECOND("d/dx min_dim(x)^2", s_min_dim, NULL, true, leaf(DISTINCT, ND_SHAPE(2, 3)));
    SECOND("d/dx masked_fill(x)^2", s_masked_fill, NULL, true, leaf(ANY, ND_SHAPE(2, 3)));
    SECOND("d/dx embedding(x)^2", s_embedding, NULL, true, leaf(ANY, ND_SHAPE(4, 2)));
    SECOND("d/dx index_select(x)^2", s_index_select, NULL, true, leaf(ANY, ND_SHAPE(2, 3)));
    SECOND("d/dx index_add(x*x)", s_index_add, NULL, false, leaf(ANY, ND_SHAPE(3, 3)));
    SECOND("d/dx scatter_add(src=x)^2", s_scatter_add, NULL, true, leaf(ANY, ND_SHAPE(3, 2)));
    SECOND("d/dx cat(x, x[:, :2])^2", s_cat, NULL, true, leaf(ANY, ND_SHAPE(2, 3)));
    SECOND("d/dx stack(x, x)^2", s_stack, NULL, true, leaf(ANY, ND_SHAPE(2, 3)));
    SECOND("d/dx repeat(x)^2", s_repeat, NULL, true, leaf(ANY, ND_SHAPE(2, 3)));
    SECOND("d/dx pad(x)^2", s_pad, NULL, true, leaf(ANY, ND_SHAPE(2, 3)));
    SECOND("d/dx flip(x)^2", s_flip, NULL, true, leaf(ANY, ND_SHAPE(2, 3)));
    SECOND("d/dx tril(x)^2", s_tril, NULL, true, leaf(ANY, ND_SHAPE(3, 3)));
    SECOND("d/dx triu(x)^2", s_triu, NULL, true, leaf(ANY, ND_SHAPE(3, 3)));
    SECOND("d/dx layer_norm", s_layer_norm, NULL, false, leaf(ANY, ND_SHAPE(2, 3)));
    SECOND("d/dx cross_entropy with label smoothing", s_cross_entropy, NULL, false, leaf(ANY, ND_SHAPE(3, 3)));
    nd_reduction mean = ND_REDUCTION_MEAN, sum = ND_REDUCTION_SUM;
    SECOND("d/dx cross_entropy (fused, mean, a row ignored)", s_cross_entropy_fused, &mean, false, leaf(ANY, ND_SHAPE(3, 4)));
    SECOND("d/dx cross_entropy (fused, sum, a row ignored)^2", s_cross_entropy_fused, &sum, true, leaf(ANY, ND_SHAPE(3, 4)));
    SECOND("d/dx log_softmax over the last dim (fused backward)", s_log_softmax_last, NULL, true, leaf(ANY, ND_SHAPE(2, 3)));
    SECOND("d/dx binary_cross_entropy", s_bce, NULL, false, leaf(POS, ND_SHAPE(2, 3)));
    SECOND("d/dx binary_cross_entropy_with_logits", s_bce_logits, NULL, false, leaf(ANY, ND_SHAPE(2, 3)));
    SECOND("d/dx max_pool2d(x)^2", s_max_pool, NULL, true, leaf(DISTINCT, ND_SHAPE(1, 1, 3, 3)));
    SECOND("d/dx adaptive_avg_pool2d(x)^2", s_adaptive, NULL, true, leaf(ANY, ND_SHAPE(1, 1, 3, 3)));
    SECOND("d/dx attention in q", s_attention, NULL, false, leaf(ANY, ND_SHAPE(2, 2)));
    nd_scope_end();
}

/* The double backward of slice and select runs slice_backward's own backward rule. */
TEST(second_order_slice_select)
{
    nd_scope_begin();
    second_ctx s1 = {fn_plain_slice, NULL, true}, s2 = {fn_plain_select, NULL, true};
    GC("d/dx slice(x)^2", fn_second, &s1, leaf(ANY, ND_SHAPE(2, 7)), leaf(ANY, ND_SHAPE(2, 3)));
    GC("d/dx select(x)^2", fn_second, &s2, leaf(ANY, ND_SHAPE(3, 2)), leaf(ANY, ND_SHAPE(2)));
    nd_scope_end();
}

/* ------------------------------------------------------------------ core ops, quickly */

static nd_tensor *c_add(nd_tensor *const *in, void *u) { (void)u; return nd_add(in[0], in[1]); }
static nd_tensor *c_sub(nd_tensor *const *in, void *u) { (void)u; return nd_sub(in[0], in[1]); }
static nd_tensor *c_rsub(nd_tensor *const *in, void *u) { (void)u; return nd_mul(nd_rsub_scalar(2.5, in[0]), in[0]); }
static nd_tensor *c_mul(nd_tensor *const *in, void *u) { (void)u; return nd_mul(in[0], in[1]); }
static nd_tensor *c_div(nd_tensor *const *in, void *u) { (void)u; return nd_div(in[0], in[1]); }
static nd_tensor *c_pow(nd_tensor *const *in, void *u) { (void)u; return nd_pow(in[0], in[1]); }
static nd_tensor *c_pow_scalar(nd_tensor *const *in, void *u) { (void)u; return nd_pow_scalar(in[0], 3.0); }
static nd_tensor *c_neg(nd_tensor *const *in, void *u) { (void)u; return nd_neg(in[0]); }
static nd_tensor *c_relu(nd_tensor *const *in, void *u) { (void)u; return nd_relu(in[0]); }
static nd_tensor *c_exp(nd_tensor *const *in, void *u) { (void)u; return nd_exp(in[0]); }
static nd_tensor *c_log(nd_tensor *const *in, void *u) { (void)u; return nd_log(in[0]); }
static nd_tensor *c_tanh(nd_tensor *const *in, void *u) { (void)u; return nd_tanh(in[0]); }
static nd_tensor *c_sigmoid(nd_tensor *const *in, void *u) { (void)u; return nd_sigmoid(in[0]); }
static nd_tensor *c_where(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_where(bools((const bool[]){true, false, true}, ND_SHAPE(3)), in[0], in[1]);
}
static nd_tensor *c_sum(nd_tensor *const *in, void *u) { (void)u; return nd_sum(nd_mul(in[0], in[0])); }
static nd_tensor *c_sum_dims(nd_tensor *const *in, void *u) { (void)u; return nd_sum_dims(in[0], ND_DIMS(1), false); }
static nd_tensor *c_mean(nd_tensor *const *in, void *u) { (void)u; return nd_mean(in[0]); }
static nd_tensor *c_mean_dims(nd_tensor *const *in, void *u) { (void)u; return nd_mean_dims(in[0], ND_DIMS(0), true); }
static nd_tensor *c_mm(nd_tensor *const *in, void *u) { (void)u; return nd_mm(in[0], in[1]); }
static nd_tensor *c_bmm(nd_tensor *const *in, void *u) { (void)u; return nd_bmm(in[0], in[1]); }
static nd_tensor *c_dot(nd_tensor *const *in, void *u) { (void)u; return nd_matmul(in[0], in[1]); }
static nd_tensor *c_view(nd_tensor *const *in, void *u) { (void)u; return nd_view(in[0], ND_SHAPE(3, 2)); }
static nd_tensor *c_reshape_copy(nd_tensor *const *in, void *u)
{
    (void)u;
    nd_tensor *r = nd_reshape(nd_t(in[0]), ND_SHAPE(6));
    return nd_mul(r, nd_arange(1, 7, 1, ND_FLOAT64));
}
static nd_tensor *c_transpose(nd_tensor *const *in, void *u) { (void)u; return nd_transpose(in[0], 0, 1); }
static nd_tensor *c_t(nd_tensor *const *in, void *u) { (void)u; return nd_t(in[0]); }
static nd_tensor *c_permute(nd_tensor *const *in, void *u) { (void)u; return nd_permute(in[0], ND_DIMS(2, 0, 1)); }
static nd_tensor *c_squeeze(nd_tensor *const *in, void *u) { (void)u; return nd_squeeze(in[0]); }
static nd_tensor *c_squeeze_dim(nd_tensor *const *in, void *u) { (void)u; return nd_squeeze_dim(in[0], 1); }
static nd_tensor *c_unsqueeze(nd_tensor *const *in, void *u) { (void)u; return nd_unsqueeze(in[0], 1); }
static nd_tensor *c_expand(nd_tensor *const *in, void *u) { (void)u; return nd_expand(in[0], ND_SHAPE(2, 3, 2)); }
static nd_tensor *c_slice(nd_tensor *const *in, void *u) { (void)u; return nd_slice(in[0], 0, 1, 5, 2); }
static nd_tensor *c_select(nd_tensor *const *in, void *u) { (void)u; return nd_select(in[0], 1, -1); }
static nd_tensor *c_clone(nd_tensor *const *in, void *u) { (void)u; return nd_clone(in[0]); }
static nd_tensor *c_to(nd_tensor *const *in, void *u)
{
    (void)u;
    return nd_mul_scalar(nd_to(nd_to(in[0], ND_FLOAT32), ND_FLOAT64), 2.0);
}

TEST(core_ops_quick)
{
    nd_scope_begin();
    GC("add [2,3] + [3]", c_add, NULL, leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(3)));
    GC("sub [3,1] - [2]", c_sub, NULL, leaf(ANY, ND_SHAPE(3, 1)), leaf(ANY, ND_SHAPE(2)));
    GC("rsub 2.5 - x", c_rsub, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("mul [2,3] * 0-dim", c_mul, NULL, leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SCALAR_SHAPE));
    GC("div [2,3] / [2,1]", c_div, NULL, leaf(ANY, ND_SHAPE(2, 3)), leaf(POS, ND_SHAPE(2, 1)));
    GC("pow [2,3] ^ [3]", c_pow, NULL, leaf(POS, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(3)));
    GC("pow_scalar x^3", c_pow_scalar, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("neg", c_neg, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("relu", c_relu, NULL, leaf(AWAY, ND_SHAPE(2, 3)));
    GC("exp", c_exp, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("log", c_log, NULL, leaf(POS, ND_SHAPE(2, 3)));
    GC("tanh", c_tanh, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("sigmoid", c_sigmoid, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("where", c_where, NULL, leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(2, 1)));
    GC("sum", c_sum, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("sum_dims", c_sum_dims, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("mean", c_mean, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("mean_dims", c_mean_dims, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("mm", c_mm, NULL, leaf(ANY, ND_SHAPE(2, 3)), leaf(ANY, ND_SHAPE(3, 2)));
    GC("bmm", c_bmm, NULL, leaf(ANY, ND_SHAPE(2, 2, 3)), leaf(ANY, ND_SHAPE(2, 3, 2)));
    GC("matmul 1-D . 1-D (dot)", c_dot, NULL, leaf(ANY, ND_SHAPE(4)), leaf(ANY, ND_SHAPE(4)));
    GC("matmul 2-D . 1-D (mv)", c_dot, NULL, leaf(ANY, ND_SHAPE(2, 4)), leaf(ANY, ND_SHAPE(4)));
    GC("view", c_view, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("reshape of a transpose (copies)", c_reshape_copy, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("transpose", c_transpose, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("t", c_t, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("permute", c_permute, NULL, leaf(ANY, ND_SHAPE(2, 3, 2)));
    GC("squeeze", c_squeeze, NULL, leaf(ANY, ND_SHAPE(2, 1, 3)));
    GC("squeeze_dim", c_squeeze_dim, NULL, leaf(ANY, ND_SHAPE(2, 1, 3)));
    GC("unsqueeze", c_unsqueeze, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("expand", c_expand, NULL, leaf(ANY, ND_SHAPE(3, 1)));
    GC("slice", c_slice, NULL, leaf(ANY, ND_SHAPE(5, 2)));
    GC("select", c_select, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("clone", c_clone, NULL, leaf(ANY, ND_SHAPE(2, 3)));
    GC("to float32 and back", c_to, NULL, leaf(SMALL, ND_SHAPE(2, 3)));
    nd_scope_end();
}

/* ------------------------------------------------------------------ coverage */

/* Every recorded op's backward rule must have run in this process: the gradchecks above reach
 * all of them. (Run last: it reads the counters the other tests moved.) */
TEST(coverage)
{
    if (nd_test_filter) /* only some tests ran: the counters say nothing */
        SKIP("coverage is not checked when a test filter is given");
    int n = nd_op_count();
    CHECK(n > 0);
    int missing = 0;
    char list[4096] = "";
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        const char *name = nd_op_name(i);
        CHECK(name != NULL);
        if (nd_op_backward_calls(i) > 0)
            continue;
        missing++;
        int w = snprintf(list + used, sizeof list - used, "%s%s", missing > 1 ? ", " : "", name ? name : "(null)");
        if (w > 0 && (size_t)w < sizeof list - used)
            used += (size_t)w;
    }
    CHECK(nd_op_name(n) == NULL && nd_op_backward_calls(n) == -1);
    CHECK(nd_op_name(-1) == NULL && nd_op_backward_calls(-1) == -1);
    if (missing) {
        nd_test_failures++;
        fprintf(stderr, "  coverage: %d of %d ops never ran their backward rule in this binary: %s\n", missing, n, list);
    }
}

void run_suite(void)
{
    RUN(abs);
    RUN(sqrt);
    RUN(rsqrt);
    RUN(square);
    RUN(sin);
    RUN(cos);
    RUN(log1p);
    RUN(expm1);
    RUN(erf);
    RUN(gelu_exact);
    RUN(gelu_tanh);
    RUN(silu);
    RUN(softplus);
    RUN(leaky_relu);
    RUN(elu);
    RUN(hardtanh);
    RUN(clamp);
    RUN(sign);
    RUN(reciprocal);
    RUN(activation_chain);
    RUN(maximum);
    RUN(minimum);
    RUN(maximum_minimum_more);
    RUN(masked_fill);
    RUN(max_min_all);
    RUN(max_dim);
    RUN(min_dim);
    RUN(prod);
    RUN(prod_with_zeros);
    RUN(var);
    RUN(std);
    RUN(logsumexp);
    RUN(norm);
    RUN(cumsum);
    RUN(cat);
    RUN(stack);
    RUN(split);
    RUN(chunk);
    RUN(flip);
    RUN(repeat);
    RUN(pad);
    RUN(tril);
    RUN(triu);
    RUN(index_select);
    RUN(index_add);
    RUN(gather);
    RUN(scatter_add);
    RUN(embedding);
    RUN(index);
    RUN(softmax);
    RUN(log_softmax);
    RUN(linear);
    RUN(cross_entropy);
    RUN(nll_loss);
    RUN(mse_loss);
    RUN(l1_loss);
    RUN(smooth_l1_loss);
    RUN(binary_cross_entropy);
    RUN(binary_cross_entropy_with_logits);
    RUN(binary_cross_entropy_target_gradient);
    RUN(dropout);
    RUN(layer_norm);
    RUN(rms_norm);
    RUN(batch_norm);
    RUN(group_norm);
    RUN(conv1d);
    RUN(conv2d);
    RUN(max_pool2d);
    RUN(max_pool2d_nan_zero_and_ties);
    RUN(max_pool2d_output_changed_in_place);
    RUN(conv2d_without_input_channels);
    RUN(avg_pool2d);
    RUN(adaptive_avg_pool2d);
    RUN(scaled_dot_product_attention);
    RUN(global_norm_and_clip);
    RUN(second_order_attention);
    RUN(second_order_gelu);
    RUN(second_order_softplus);
    RUN(second_order_logsumexp);
    RUN(second_order_prod);
    RUN(second_order_prod_with_one_zero);
    RUN(second_order_cumsum);
    RUN(second_order_gather);
    RUN(second_order_conv_and_pool);
    RUN(second_order_slice_select);
    RUN(cross_entropy_all_ignored);
    RUN(second_order_more);
    RUN(core_ops_quick);
    RUN(coverage);
}

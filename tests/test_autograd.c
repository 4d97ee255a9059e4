/* Autograd semantics: accumulation, retain_grad, detach, no-grad regions, deep graphs,
 * create_graph (second derivatives, Hessian-vector products), in-place safety. */
#include "harness.h"

#include <pthread.h>
#include <stdlib.h>

static nd_tensor *leaf(const double *v, int ndim, const int64_t *shape)
{
    nd_tensor *t = nd_from_f64(v, ndim, shape);
    nd_set_requires_grad(t, true);
    return t;
}

TEST(seed_examples_match_pytorch)
{
    nd_scope_begin();
    nd_tensor *x = leaf((const double[]){2}, ND_SHAPE(1));
    nd_tensor *y = leaf((const double[]){3}, ND_SHAPE(1));
    nd_tensor *z = nd_add_scalar(nd_mul(x, y), 4);
    CHECK(nd_backward(z) == ND_OK);
    CHECK_VALUES(z, 0, 10);
    CHECK_VALUES(nd_grad(x), 0, 3);
    CHECK_VALUES(nd_grad(y), 0, 2);

    nd_tensor *a = leaf((const double[]){1, 2, 3, 4}, ND_SHAPE(2, 2));
    nd_tensor *b = leaf((const double[]){5, 6, 7, 8}, ND_SHAPE(2, 2));
    nd_tensor *c = nd_mm(a, b);
    CHECK(nd_backward_with(c, nd_ones_like(c), false) == ND_OK);
    CHECK_VALUES(c, 0, 19, 22, 43, 50);
    CHECK_VALUES(nd_grad(a), 0, 11, 15, 11, 15);
    CHECK_VALUES(nd_grad(b), 0, 4, 4, 6, 6);
    nd_scope_end();
}

TEST(leaves_accumulate_until_zeroed)
{
    nd_scope_begin();
    nd_tensor *x = leaf((const double[]){1, 2, 3}, ND_SHAPE(3));
    nd_tensor *loss = nd_sum(nd_mul(x, x));
    CHECK(nd_backward(loss) == ND_OK);
    CHECK_VALUES(nd_grad(x), 0, 2, 4, 6);
    /* The graph stays usable (retain_graph semantics): a second pass adds. */
    CHECK(nd_backward(loss) == ND_OK);
    CHECK_VALUES(nd_grad(x), 0, 4, 8, 12);
    CHECK(nd_zero_grad(x) == ND_OK);
    CHECK(nd_grad(x) == NULL);
    CHECK(nd_backward(loss) == ND_OK);
    CHECK_VALUES(nd_grad(x), 0, 2, 4, 6);
    nd_scope_end();
}

TEST(repeated_use_of_one_tensor)
{
    nd_scope_begin();
    nd_tensor *x = leaf((const double[]){1, -2, 3}, ND_SHAPE(3));
    /* (x + x) * x = 2x², d/dx = 4x */
    CHECK(nd_backward(nd_sum(nd_mul(nd_add(x, x), x))) == ND_OK);
    CHECK_VALUES(nd_grad(x), 1e-12, 4, -8, 12);
    nd_scope_end();
}

TEST(broadcast_gradients_have_input_shapes)
{
    nd_scope_begin();
    nd_tensor *a = leaf((const double[]){1, 2, 3}, ND_SHAPE(3, 1));
    nd_tensor *b = leaf((const double[]){10, 20, 30, 40}, ND_SHAPE(4));
    nd_tensor *s = leaf((const double[]){2}, ND_SCALAR_SHAPE);
    nd_tensor *out = nd_mul(nd_add(a, b), s);
    CHECK(nd_ndim(out) == 2 && nd_shape(out)[0] == 3 && nd_shape(out)[1] == 4);
    CHECK(nd_backward(nd_sum(out)) == ND_OK);
    CHECK(nd_ndim(nd_grad(a)) == 2 && nd_shape(nd_grad(a))[0] == 3 && nd_shape(nd_grad(a))[1] == 1);
    CHECK(nd_ndim(nd_grad(b)) == 1 && nd_shape(nd_grad(b))[0] == 4);
    CHECK(nd_ndim(nd_grad(s)) == 0);
    CHECK_VALUES(nd_grad(a), 0, 8, 8, 8);
    CHECK_VALUES(nd_grad(b), 0, 6, 6, 6, 6);
    CHECK_VALUES(nd_grad(s), 0, (1 + 2 + 3) * 4 + (10 + 20 + 30 + 40) * 3);
    nd_scope_end();
}

TEST(retain_grad_on_non_leaf)
{
    nd_scope_begin();
    nd_tensor *x = leaf((const double[]){1, 2}, ND_SHAPE(2));
    nd_tensor *h = nd_mul_scalar(x, 3);
    CHECK(nd_retain_grad(h) == ND_OK);
    nd_tensor *y = nd_sum(nd_mul(h, h));
    CHECK(nd_backward(y) == ND_OK);
    CHECK_VALUES(nd_grad(h), 1e-12, 6, 12);
    CHECK_VALUES(nd_grad(x), 1e-12, 18, 36);
    CHECK(!nd_is_leaf(h) && nd_is_leaf(x));
    nd_scope_end();
}

/* relu and GELU write their gradient over the incoming one when the pass alone holds it; a
 * gradient the caller passed, a retained one, or one still needed elsewhere must stay intact. */
TEST(fused_backward_in_place_only_when_exclusive)
{
    nd_scope_begin();
    nd_tensor *x = leaf((const double[]){-1, 2, -3, 4}, ND_SHAPE(4));
    nd_tensor *r = nd_relu(x);
    nd_tensor *g = nd_from_f64((const double[]){5, 6, 7, 8}, ND_SHAPE(4));
    CHECK(nd_backward_with(r, g, false) == ND_OK);
    CHECK_VALUES(g, 0, 5, 6, 7, 8);          /* the caller's gradient is not overwritten */
    CHECK_VALUES(nd_grad(x), 0, 0, 6, 0, 8);
    CHECK(nd_zero_grad(x) == ND_OK);
    /* the gradient of h reaches relu and gelu both, and is retained: in place nowhere */
    nd_tensor *h = nd_mul_scalar(x, 2);
    CHECK(nd_retain_grad(h) == ND_OK);
    nd_tensor *y = nd_add(nd_sum(nd_mul(nd_relu(h), h)), nd_sum(nd_gelu(nd_relu(h), false)));
    CHECK(nd_backward(y) == ND_OK);
    nd_scope_begin();
    nd_tensor *x2 = leaf((const double[]){-1, 2, -3, 4}, ND_SHAPE(4));
    nd_tensor *h2 = nd_mul_scalar(x2, 2);
    nd_tensor *y2 = nd_add(nd_sum(nd_mul(nd_relu(h2), h2)), nd_sum(nd_gelu(nd_relu(h2), false)));
    nd_tensor *gx = NULL; /* the same gradient through a recorded (never in-place) backward */
    CHECK(nd_autograd_grad(1, &y2, NULL, 1, &x2, &gx, true) == ND_OK);
    for (int i = 0; i < 4; i++)
        CHECK_NEAR(nd_item(nd_select(nd_grad(x), 0, i)), nd_item(nd_select(gx, 0, i)), 1e-12);
    CHECK_VALUES(nd_grad(h), 1e-12, 0, 9.000503649661226, 0, 17.00000000000004); /* PyTorch's */
    CHECK_VALUES(nd_grad(x), 1e-12, 0, 18.001007299322453, 0, 34.00000000000008);
    nd_scope_end();
    nd_scope_end();
}

TEST(detach_cuts_the_graph)
{
    nd_scope_begin();
    nd_tensor *x = leaf((const double[]){1, 2}, ND_SHAPE(2));
    nd_tensor *d = nd_detach(nd_mul(x, x));
    CHECK(!nd_requires_grad(d) && nd_is_leaf(d));
    nd_tensor *y = nd_sum(nd_mul(x, d));
    CHECK(nd_backward(y) == ND_OK);
    CHECK_VALUES(nd_grad(x), 0, 1, 4); /* d is a constant: dy/dx = d */
    nd_scope_end();
}

TEST(no_grad_regions_nest_and_record_nothing)
{
    nd_scope_begin();
    nd_tensor *x = leaf((const double[]){1, 2}, ND_SHAPE(2));
    CHECK(nd_is_grad_enabled());
    nd_no_grad_begin();
    nd_no_grad_begin();
    nd_tensor *a = nd_mul(x, x);
    nd_no_grad_end();
    CHECK(!nd_is_grad_enabled());
    nd_tensor *b = nd_exp(x);
    nd_no_grad_end();
    CHECK(nd_is_grad_enabled());
    CHECK(!nd_requires_grad(a) && nd_grad_fn_name(a) == NULL);
    CHECK(!nd_requires_grad(b));
    nd_tensor *c = nd_mul(x, x);
    CHECK(nd_requires_grad(c) && strcmp(nd_grad_fn_name(c), "MulBackward0") == 0);
    CHECK(nd_set_grad_enabled(false) == true);
    CHECK(nd_set_grad_enabled(true) == false);
    nd_scope_end();
}

static void *other_thread(void *arg)
{
    nd_tensor *x = arg;
    /* Grad mode is per thread: the main thread's no-grad region does not reach here. */
    nd_scope_begin();
    nd_tensor *y = nd_mul(x, x);
    intptr_t recorded = nd_is_grad_enabled() && nd_requires_grad(y);
    nd_scope_end();
    return (void *)recorded;
}

TEST(grad_mode_is_thread_local)
{
    nd_tensor *x = leaf((const double[]){1, 2}, ND_SHAPE(2));
    nd_no_grad_begin();
    pthread_t th;
    void *result = NULL;
    CHECK(pthread_create(&th, NULL, other_thread, x) == 0);
    pthread_join(th, &result);
    nd_no_grad_end();
    CHECK(result == (void *)1);
    nd_release(x);
}

TEST(million_op_chain_backpropagates)
{
    /* The traversal and the release are iterative: neither may overflow the stack. */
    nd_scope_begin();
    nd_tensor *x = nd_full(1.0, ND_FLOAT32, ND_SCALAR_SHAPE);
    nd_set_requires_grad(x, true);
    nd_tensor *y = x;
    for (int i = 0; i < 1000000 && y; i++)
        y = nd_add_scalar(y, 1e-6);
    CHECK(y != NULL);
    CHECK(nd_backward(y) == ND_OK);
    CHECK_NEAR(nd_item(nd_grad(x)), 1.0, 0);
    nd_scope_end();
}

TEST(million_op_chain_outside_scope_releases_iteratively)
{
    nd_tensor *x = nd_full(1.0, ND_FLOAT64, ND_SCALAR_SHAPE);
    nd_set_requires_grad(x, true);
    nd_tensor *y = nd_keep(x);
    for (int i = 0; i < 1000000 && y; i++) {
        nd_tensor *next = nd_mul_scalar(y, 1.0);
        nd_release(y); /* the graph keeps what it needs */
        y = next;
    }
    CHECK(nd_backward(y) == ND_OK);
    CHECK_NEAR(nd_item(nd_grad(x)), 1.0, 0);
    nd_release(y);
    nd_release(x);
}

TEST(second_derivative_of_cube)
{
    nd_scope_begin();
    nd_tensor *x = leaf((const double[]){-1.5, 0.5, 2}, ND_SHAPE(3));
    nd_tensor *y = nd_sum(nd_pow_scalar(x, 3));
    nd_tensor *g = NULL, *gg = NULL;
    CHECK(nd_autograd_grad(1, &y, NULL, 1, &x, &g, true) == ND_OK);
    CHECK_VALUES(g, 1e-12, 3 * 2.25, 3 * 0.25, 12);
    CHECK(nd_requires_grad(g));
    nd_tensor *gs = nd_sum(g);
    CHECK(nd_autograd_grad(1, &gs, NULL, 1, &x, &gg, false) == ND_OK);
    CHECK_VALUES(gg, 1e-12, -9, 3, 12); /* d²/dx² x³ = 6x */
    CHECK(nd_grad(x) == NULL);           /* autograd_grad never touches .grad */

    /* The same through backward(create_graph) and the leaf's .grad. */
    CHECK(nd_backward_with(y, NULL, true) == ND_OK);
    nd_tensor *xg = nd_keep(nd_grad(x));
    nd_zero_grad(x);
    CHECK(nd_backward(nd_sum(xg)) == ND_OK);
    CHECK_VALUES(nd_grad(x), 1e-12, -9, 3, 12);
    nd_release(xg);
    nd_scope_end();
}

TEST(second_derivatives_of_unary_ops)
{
    nd_scope_begin();
    const double xs[] = {-0.7, 0.3, 1.1};
    nd_tensor *x = leaf(xs, ND_SHAPE(3));
    nd_tensor *(*fns[])(nd_tensor *) = {nd_exp, nd_tanh, nd_sigmoid, nd_log};
    for (int f = 0; f < 4; f++) {
        nd_tensor *in = f == 3 ? nd_add_scalar(x, 2.0) : x; /* log needs positive input */
        nd_tensor *y = nd_sum(fns[f](in));
        nd_tensor *g, *gg;
        CHECK(nd_autograd_grad(1, &y, NULL, 1, &x, &g, true) == ND_OK);
        nd_tensor *gs = nd_sum(g);
        CHECK(nd_autograd_grad(1, &gs, NULL, 1, &x, &gg, false) == ND_OK);
        for (int i = 0; i < 3; i++) {
            double v = xs[i], expect;
            double t = tanh(v), s = 1 / (1 + exp(-v));
            switch (f) {
            case 0: expect = exp(v); break;
            case 1: expect = -2 * t * (1 - t * t); break;
            case 2: expect = s * (1 - s) * (1 - 2 * s); break;
            default: expect = -1 / ((v + 2) * (v + 2)); break;
            }
            double got;
            CHECK(nd_get(gg, (const int64_t[]){i}, &got) == ND_OK);
            CHECK_NEAR(got, expect, 1e-10);
        }
    }
    nd_scope_end();
}

/* A small MLP loss as a function of one flat parameter vector p (so a Hessian is a matrix). */
typedef struct mlp_problem {
    nd_tensor *x, *y;
} mlp_problem;

static nd_tensor *mlp_loss(const mlp_problem *pr, nd_tensor *p)
{
    /* p = [W1 (3x4) | b1 (4) | W2 (4x1) | b2 (1)] */
    nd_tensor *w1 = nd_view(nd_narrow(p, 0, 0, 12), ND_SHAPE(3, 4));
    nd_tensor *b1 = nd_narrow(p, 0, 12, 4);
    nd_tensor *w2 = nd_view(nd_narrow(p, 0, 16, 4), ND_SHAPE(4, 1));
    nd_tensor *b2 = nd_narrow(p, 0, 20, 1);
    nd_tensor *h = nd_tanh(nd_add(nd_matmul(pr->x, w1), b1));
    nd_tensor *out = nd_sigmoid(nd_add(nd_matmul(h, w2), b2));
    nd_tensor *err = nd_sub(out, pr->y);
    return nd_mean(nd_mul(err, err));
}

static nd_tensor *mlp_grad(const mlp_problem *pr, nd_tensor *p, bool create_graph)
{
    nd_tensor *g = NULL;
    nd_tensor *loss = mlp_loss(pr, p);
    nd_autograd_grad(1, &loss, NULL, 1, &p, &g, create_graph);
    return g;
}

TEST(hessian_vector_product_matches_finite_differences)
{
    nd_scope_begin();
    nd_manual_seed(7);
    mlp_problem pr = {nd_randn(ND_FLOAT64, ND_SHAPE(5, 3)), nd_rand(ND_FLOAT64, ND_SHAPE(5, 1))};
    nd_tensor *p = nd_mul_scalar(nd_randn(ND_FLOAT64, ND_SHAPE(21)), 0.5);
    nd_set_requires_grad(p, true);
    nd_tensor *v = nd_randn(ND_FLOAT64, ND_SHAPE(21));

    /* Hv = d/dp (grad(p) · v) */
    nd_tensor *g = mlp_grad(&pr, p, true);
    nd_tensor *gv = nd_sum(nd_mul(g, v));
    nd_tensor *hv = NULL;
    CHECK(nd_autograd_grad(1, &gv, NULL, 1, &p, &hv, false) == ND_OK);

    /* (grad(p + eps v) - grad(p - eps v)) / 2 eps */
    const double eps = 1e-5;
    nd_no_grad_begin();
    nd_tensor *pp = nd_add(p, nd_mul_scalar(v, eps));
    nd_tensor *pm = nd_sub(p, nd_mul_scalar(v, eps));
    nd_no_grad_end();
    nd_set_requires_grad(pp, true);
    nd_set_requires_grad(pm, true);
    nd_tensor *fd = nd_div_scalar(nd_sub(mlp_grad(&pr, pp, false), mlp_grad(&pr, pm, false)), 2 * eps);
    double a[21], b[21];
    CHECK(nd_copy_out(hv, a, sizeof a, ND_FLOAT64) == ND_OK);
    CHECK(nd_copy_out(fd, b, sizeof b, ND_FLOAT64) == ND_OK);
    double max_abs = 0;
    for (int i = 0; i < 21; i++)
        if (fabs(b[i]) > max_abs)
            max_abs = fabs(b[i]);
    CHECK(max_abs > 1e-3); /* a non-trivial Hessian */
    for (int i = 0; i < 21; i++)
        CHECK_NEAR(a[i], b[i], 1e-6 + 1e-5 * fabs(b[i]));
    nd_scope_end();
}

TEST(explicit_gradient_for_non_scalar)
{
    nd_scope_begin();
    nd_tensor *x = leaf((const double[]){1, 2, 3, 4}, ND_SHAPE(2, 2));
    nd_tensor *y = nd_mul(x, x);
    nd_tensor *g = nd_from_f64((const double[]){1, 0.5, -1, 2}, ND_SHAPE(2, 2));
    CHECK(nd_backward_with(y, g, false) == ND_OK);
    CHECK_VALUES(nd_grad(x), 1e-12, 2, 2, -6, 16);
    /* A float32 gradient for a float64 output is converted. */
    nd_zero_grad(x);
    CHECK(nd_backward_with(y, nd_ones(ND_FLOAT32, ND_SHAPE(2, 2)), false) == ND_OK);
    CHECK_VALUES(nd_grad(x), 1e-12, 2, 4, 6, 8);
    nd_scope_end();
}

TEST(autograd_grad_of_non_leaf_and_unreached_inputs)
{
    nd_scope_begin();
    nd_tensor *x = leaf((const double[]){1, 2}, ND_SHAPE(2));
    nd_tensor *unused = leaf((const double[]){5}, ND_SHAPE(1));
    nd_tensor *h = nd_mul_scalar(x, 2);
    nd_tensor *y = nd_sum(nd_mul(h, h));
    nd_tensor *inputs[3] = {h, x, unused}, *grads[3];
    CHECK(nd_autograd_grad(1, &y, NULL, 3, inputs, grads, false) == ND_OK);
    CHECK_VALUES(grads[0], 1e-12, 4, 8);
    CHECK_VALUES(grads[1], 1e-12, 8, 16);
    CHECK_VALUES(grads[2], 0, 0);
    CHECK(nd_grad(x) == NULL);
    nd_scope_end();
}

TEST(inplace_change_of_saved_tensor_is_detected)
{
    nd_scope_begin();
    nd_tensor *x = leaf((const double[]){1, 2}, ND_SHAPE(2));
    nd_tensor *c = nd_from_f64((const double[]){3, 4}, ND_SHAPE(2));
    nd_tensor *y = nd_sum(nd_mul(x, c));
    CHECK(nd_fill_(c, 0.0) == ND_OK);
    CHECK(nd_backward(y) == ND_ERR_GRAD);
    CHECK_ERROR_HAS("modified in place");
    CHECK(nd_grad(x) == NULL);
    nd_scope_end();
}

TEST(optimizer_step_in_no_grad_region)
{
    nd_tensor *w = nd_from_f32((const float[]){1, 2}, ND_SHAPE(2));
    nd_set_requires_grad(w, true);
    for (int step = 0; step < 3; step++) {
        nd_scope_begin();
        nd_tensor *loss = nd_sum(nd_mul(w, w));
        CHECK(nd_backward(loss) == ND_OK);
        CHECK(nd_sub_(w, nd_grad(w)) == ND_ERR_GRAD); /* refused with grad mode on */
        nd_no_grad_begin();
        CHECK(nd_sub_(w, nd_mul_scalar(nd_grad(w), 0.25)) == ND_OK);
        nd_no_grad_end();
        nd_zero_grad(w);
        nd_scope_end();
    }
    CHECK_VALUES(w, 1e-6, 0.125, 0.25); /* w *= 0.5 each step */
    nd_release(w);
}

TEST(grad_fn_names_match_pytorch)
{
    nd_scope_begin();
    nd_tensor *x = leaf((const double[]){1, 2, 3, 4}, ND_SHAPE(2, 2));
    struct { nd_tensor *t; const char *name; } cases[] = {
        {nd_add(x, x), "AddBackward0"},          {nd_sub(x, x), "SubBackward0"},
        {nd_mul(x, x), "MulBackward0"},          {nd_div(x, x), "DivBackward0"},
        {nd_pow_scalar(x, 2), "PowBackward0"},   {nd_pow(x, x), "PowBackward1"},
        {nd_rsub_scalar(1, x), "RsubBackward1"}, {nd_neg(x), "NegBackward0"},
        {nd_relu(x), "ReluBackward0"},           {nd_exp(x), "ExpBackward0"},
        {nd_log(x), "LogBackward0"},             {nd_tanh(x), "TanhBackward0"},
        {nd_sigmoid(x), "SigmoidBackward0"},     {nd_sum(x), "SumBackward0"},
        {nd_sum_dims(x, ND_DIMS(0), false), "SumBackward1"},
        {nd_mean(x), "MeanBackward0"},           {nd_mean_dims(x, ND_DIMS(1), true), "MeanBackward1"},
        {nd_mm(x, x), "MmBackward0"},            {nd_matmul(x, x), "MmBackward0"},
        {nd_view(x, ND_SHAPE(4)), "ViewBackward0"}, {nd_transpose(x, 0, 1), "TransposeBackward0"},
        {nd_t(x), "TBackward0"},                 {nd_permute(x, ND_DIMS(1, 0)), "PermuteBackward0"},
        {nd_unsqueeze(x, 0), "UnsqueezeBackward0"}, {nd_expand(x, ND_SHAPE(3, 2, 2)), "ExpandBackward0"},
        {nd_slice(x, 0, 0, 1, 1), "SliceBackward0"}, {nd_select(x, 0, 1), "SelectBackward0"},
        {nd_clone(x), "CloneBackward0"},         {nd_to(x, ND_FLOAT32), "ToCopyBackward0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = nd_grad_fn_name(cases[i].t);
        if (!got || strcmp(got, cases[i].name) != 0) {
            fprintf(stderr, "  case %zu: got %s, expected %s\n", i, got ? got : "(null)", cases[i].name);
            nd_test_failures++;
        }
    }
    nd_scope_end();
}

/* d/d(x, w, b) of sum(v * d(sum(u * layer_norm(x)))/dx): exercises layer_norm's backward as
 * recorded ops (create_graph), against finite differences. */
static nd_tensor *layer_norm_grad_fn(nd_tensor *const *in, void *user)
{
    (void)user;
    nd_tensor *x = in[0], *w = in[1], *b = in[2], *u = in[3], *v = in[4];
    bool was = nd_set_grad_enabled(true); /* the inner gradient is needed in every evaluation */
    nd_tensor *y = nd_sum(nd_mul(u, nd_layer_norm(x, 1, (const int64_t[]){5}, w, b, 1e-5)));
    nd_tensor *wrt[3] = {x, w, b}, *g[3];
    nd_status st = nd_autograd_grad(1, &y, NULL, 3, wrt, g, true);
    nd_set_grad_enabled(was);
    if (st != ND_OK)
        return NULL;
    return nd_add(nd_sum(nd_mul(v, g[0])), nd_add(nd_sum(nd_mul(g[1], g[1])), nd_sum(nd_mul(g[2], w))));
}

TEST(layer_norm_second_order_matches_finite_differences)
{
    nd_scope_begin();
    nd_manual_seed(3);
    nd_tensor *in[5] = {nd_randn(ND_FLOAT64, ND_SHAPE(3, 5)), nd_add_scalar(nd_randn(ND_FLOAT64, ND_SHAPE(5)), 1.0),
                        nd_randn(ND_FLOAT64, ND_SHAPE(5)), nd_randn(ND_FLOAT64, ND_SHAPE(3, 5)),
                        nd_randn(ND_FLOAT64, ND_SHAPE(3, 5))};
    for (int i = 0; i < 3; i++)
        nd_set_requires_grad(in[i], true);
    CHECK(nd_gradcheck(layer_norm_grad_fn, NULL, 5, in, 1e-6, 1e-5, 1e-3) == ND_OK);
    nd_scope_end();
}

/* Slices of one tensor hand their gradients straight to its accumulator (no full-size tensor per
 * slice): overlapping windows, steps, a leaf and a non-leaf input, one slice seen twice, and the
 * same with a graph of the backward recorded (the general path) must all give the plain sums. */
TEST(slice_gradients_accumulate_into_their_input)
{
    nd_scope_begin();
    double xv[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    nd_tensor *x = nd_from_f64(xv, ND_SHAPE(8));
    nd_set_requires_grad(x, true);
    for (int pass = 0; pass < 2; pass++) {
        nd_tensor *base = pass == 0 ? x : nd_mul_scalar(x, 3.0); /* a leaf, then a non-leaf */
        nd_tensor *a = nd_slice(base, 0, 0, 5, 1);             /* elements 0..4 */
        nd_tensor *b = nd_slice(base, 0, 3, 8, 2);             /* 3, 5, 7 */
        nd_tensor *c = nd_slice(base, 0, 1, 3, 1);             /* 1, 2 */
        nd_tensor *loss = nd_add(nd_add(nd_sum(nd_mul_scalar(a, 2.0)), nd_sum(nd_mul_scalar(b, 10.0))),
                                 nd_add(nd_sum(c), nd_sum(nd_mul_scalar(c, 0.5))));
        CHECK(nd_backward(loss) == ND_OK);
        double k = pass == 0 ? 1.0 : 3.0;
        /* d/dx: 2 on 0..4, +10 on 3,5,7, +1.5 on 1,2 (times 3 through the non-leaf) */
        CHECK_VALUES(nd_grad(x), 1e-12, 2 * k, 3.5 * k, 3.5 * k, 12 * k, 2 * k, 10 * k, 0, 10 * k);
        nd_zero_grad(x);
    }
    /* with create_graph the general (differentiable) path runs: the same values */
    nd_tensor *y = nd_mul(x, x);
    nd_tensor *g = NULL;
    nd_tensor *l2 = nd_add(nd_sum(nd_slice(y, 0, 0, 4, 1)), nd_sum(nd_slice(y, 0, 2, 8, 3)));
    CHECK(nd_autograd_grad(1, &l2, NULL, 1, &x, &g, true) == ND_OK);
    CHECK_VALUES(g, 1e-12, 2, 4, 12, 8, 0, 12, 0, 0); /* x² summed at 0..3 and at 2, 5: 2x, twice at 2 */
    nd_scope_end();
}

void run_suite(void)
{
    RUN(slice_gradients_accumulate_into_their_input);
    RUN(layer_norm_second_order_matches_finite_differences);
    RUN(seed_examples_match_pytorch);
    RUN(leaves_accumulate_until_zeroed);
    RUN(repeated_use_of_one_tensor);
    RUN(broadcast_gradients_have_input_shapes);
    RUN(retain_grad_on_non_leaf);
    RUN(fused_backward_in_place_only_when_exclusive);
    RUN(detach_cuts_the_graph);
    RUN(no_grad_regions_nest_and_record_nothing);
    RUN(grad_mode_is_thread_local);
    RUN(million_op_chain_backpropagates);
    RUN(million_op_chain_outside_scope_releases_iteratively);
    RUN(second_derivative_of_cube);
    RUN(second_derivatives_of_unary_ops);
    RUN(hessian_vector_product_matches_finite_differences);
    RUN(explicit_gradient_for_non_scalar);
    RUN(autograd_grad_of_non_leaf_and_unreached_inputs);
    RUN(inplace_change_of_saved_tensor_is_detected);
    RUN(optimizer_step_in_no_grad_region);
    RUN(grad_fn_names_match_pytorch);
}

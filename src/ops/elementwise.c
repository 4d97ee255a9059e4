/* Elementwise ops, forward and backward side by side. Binary ops broadcast; every gradient is
 * summed back to its input's shape and converted to its dtype by nd_reduce_grad. Backward rules
 * use ndgrad ops, so with create_graph they are differentiable again. */
#include "ops/common.h"

#include <math.h>
#include <string.h>

#define WANT(i) (node->inputs[i] && node->inputs[i]->requires_grad)
#define IN(i) (node->inputs[i])

/* add: out = a + b.  da = g, db = g (each summed to its input's shape). */
nd_tensor *nd_add(nd_tensor *a, nd_tensor *b) { return nd_binary_op("nd_add", ND_OP_ADD, ND_BIN_ADD, a, b); }

nd_status nd_bw_add(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    for (int i = 0; i < 2; i++)
        if (WANT(i) && !(gi[i] = nd_reduce_grad(g, IN(i))))
            return nd_last_status();
    return ND_OK;
}

/* sub: out = a - b (rsub: out = s - a, same rule with the scalar as input 0).  da = g, db = -g. */
nd_tensor *nd_sub(nd_tensor *a, nd_tensor *b) { return nd_binary_op("nd_sub", ND_OP_SUB, ND_BIN_SUB, a, b); }

nd_status nd_bw_sub(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    if (WANT(0) && !(gi[0] = nd_reduce_grad(g, IN(0))))
        return nd_last_status();
    if (WANT(1) && !(gi[1] = nd_reduce_grad(nd_neg(g), IN(1))))
        return nd_last_status();
    return ND_OK;
}

/* mul: out = a * b.  da = g * b, db = g * a.  Saves both inputs (held as node inputs). */
nd_tensor *nd_mul(nd_tensor *a, nd_tensor *b) { return nd_binary_op("nd_mul", ND_OP_MUL, ND_BIN_MUL, a, b); }

nd_status nd_bw_mul(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    if (WANT(0) && !(gi[0] = nd_reduce_grad(nd_mul(g, IN(1)), IN(0))))
        return nd_last_status();
    if (WANT(1) && !(gi[1] = nd_reduce_grad(nd_mul(g, IN(0)), IN(1))))
        return nd_last_status();
    return ND_OK;
}

/* div: out = a / b (true division).  da = g / b, db = -g * a / b². */
nd_tensor *nd_div(nd_tensor *a, nd_tensor *b) { return nd_binary_op("nd_div", ND_OP_DIV, ND_BIN_DIV, a, b); }

nd_status nd_bw_div(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    if (WANT(0) && !(gi[0] = nd_reduce_grad(nd_div(g, IN(1)), IN(0))))
        return nd_last_status();
    if (WANT(1) && !(gi[1] = nd_reduce_grad(nd_neg(nd_div(nd_mul(g, IN(0)), nd_mul(IN(1), IN(1)))), IN(1))))
        return nd_last_status();
    return ND_OK;
}

/* pow with a tensor exponent: out = a^b.
 * da = g * b * a^(b-1), zero where b == 0;  db = g * a^b * log(a), zero where a == 0 and b >= 0
 * (PyTorch's conventions, which keep 0^0 and 0^b from producing NaN gradients). */
nd_tensor *nd_pow(nd_tensor *a, nd_tensor *b) { return nd_binary_op("nd_pow", ND_OP_POW, ND_BIN_POW, a, b); }

nd_status nd_bw_pow(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *a = IN(0), *b = IN(1);
    if (WANT(0)) {
        nd_tensor *d = nd_mul(nd_mul(g, b), nd_pow(a, nd_sub_scalar(b, 1.0)));
        d = nd_where(nd_mask(ND_BIN_EQ, b, 0.0, ND_BOOL), nd_register(nd_k_wrapped_scalar(0.0, ND_FLOAT32)), d);
        if (!(gi[0] = nd_reduce_grad(d, a)))
            return nd_last_status();
    }
    if (WANT(1)) {
        nd_tensor *out = nd_pow(a, b);
        nd_tensor *d = nd_mul(nd_mul(g, out), nd_log(a));
        nd_tensor *a_zero = nd_mask(ND_BIN_EQ, a, 0.0, ND_BOOL);
        nd_tensor *b_nonneg = nd_mask(ND_BIN_GE, b, 0.0, ND_BOOL);
        nd_tensor *both = nd_binary_op("nd_pow backward", ND_OP_MUL, ND_BIN_MUL, a_zero, b_nonneg);
        d = nd_where(both, nd_register(nd_k_wrapped_scalar(0.0, ND_FLOAT32)), d);
        if (!(gi[1] = nd_reduce_grad(d, b)))
            return nd_last_status();
    }
    return ND_OK;
}

/* pow with a C exponent e: out = a^e.  da = g * e * a^(e-1) (zero when e == 0). */
nd_tensor *nd_pow_scalar(nd_tensor *a, double exponent)
{
    if (!a)
        return nd_fail_null("nd_pow_scalar", 0);
    nd_tensor *e = nd_k_wrapped_scalar(exponent, ND_FLOAT64);
    if (!e)
        return NULL;
    nd_tensor *out = nd_binary_op("nd_pow_scalar", ND_OP_POW_SCALAR, ND_BIN_POW, a, e);
    nd_unref(e); /* the node keeps its own reference */
    if (out && out->grad_fn)
        out->grad_fn->dparams[0] = exponent;
    return out;
}

nd_status nd_bw_pow_scalar(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    double e = node->dparams[0];
    if (!WANT(0))
        return ND_OK;
    nd_tensor *d = e == 0.0 ? nd_mul_scalar(g, 0.0) : nd_mul(g, nd_mul_scalar(nd_pow_scalar(IN(0), e - 1.0), e));
    gi[0] = nd_reduce_grad(d, IN(0));
    return gi[0] ? ND_OK : nd_last_status();
}

/* Scalar variants: the C number takes part as a wrapped 0-dim tensor (PyTorch's promotion). */
static nd_tensor *scalar_op(const char *name, nd_op op, nd_binop kernel, nd_tensor *a, double s, bool scalar_first)
{
    if (!a)
        return nd_fail_null(name, 0);
    /* An integral number keeps an integer tensor integral, as a Python int would. */
    bool integral = !nd_dtype_is_float(a->dtype) && s == floor(s) && fabs(s) < 9e15;
    nd_tensor *w = nd_k_wrapped_scalar(s, integral ? ND_INT64 : ND_FLOAT64);
    if (!w)
        return NULL;
    nd_tensor *out = scalar_first ? nd_binary_op(name, op, kernel, w, a) : nd_binary_op(name, op, kernel, a, w);
    nd_unref(w); /* the node keeps its own reference */
    return out;
}

nd_tensor *nd_add_scalar(nd_tensor *a, double s) { return scalar_op("nd_add_scalar", ND_OP_ADD, ND_BIN_ADD, a, s, false); }
nd_tensor *nd_sub_scalar(nd_tensor *a, double s) { return scalar_op("nd_sub_scalar", ND_OP_SUB, ND_BIN_SUB, a, s, false); }
nd_tensor *nd_rsub_scalar(double s, nd_tensor *a) { return scalar_op("nd_rsub_scalar", ND_OP_RSUB, ND_BIN_SUB, a, s, true); }
nd_tensor *nd_mul_scalar(nd_tensor *a, double s) { return scalar_op("nd_mul_scalar", ND_OP_MUL, ND_BIN_MUL, a, s, false); }
nd_tensor *nd_div_scalar(nd_tensor *a, double s) { return scalar_op("nd_div_scalar", ND_OP_DIV, ND_BIN_DIV, a, s, false); }

/* neg: out = -a.  da = -g. */
nd_tensor *nd_neg(nd_tensor *a) { return nd_unary_op("nd_neg", ND_OP_NEG, ND_UN_NEG, a); }

nd_status nd_bw_neg(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    (void)node;
    gi[0] = nd_neg(g);
    return gi[0] ? ND_OK : nd_last_status();
}

/* relu: out = max(a, 0).  da = g * !(a <= 0) (NaN passes the gradient, as in PyTorch); the mask
 * is a constant, so relu's second derivative is zero. */
nd_tensor *nd_relu(nd_tensor *a) { return nd_unary_op("nd_relu", ND_OP_RELU, ND_UN_RELU, a); }

nd_status nd_bw_relu(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    if ((gi[0] = nd_fused_grad(ND_BIN_RELU_GRAD, IN(0), g)))
        return ND_OK;
    gi[0] = nd_mul(g, nd_rsub_scalar(1.0, nd_mask(ND_BIN_LE, IN(0), 0.0, g->dtype)));
    return gi[0] ? ND_OK : nd_last_status();
}

/* The saved output, or (when building a graph of the backward) the output recomputed from the
 * input, so the second derivative flows through it. */
static nd_tensor *output_of(nd_node *node, nd_tensor *(*forward)(nd_tensor *))
{
    return nd_is_grad_enabled() ? forward(IN(0)) : node->saved[0];
}

/* exp: out = e^a.  da = g * out.  Saves out. */
nd_tensor *nd_exp(nd_tensor *a) { return nd_unary_op("nd_exp", ND_OP_EXP, ND_UN_EXP, a); }

nd_status nd_bw_exp(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    gi[0] = nd_mul(g, output_of(node, nd_exp));
    return gi[0] ? ND_OK : nd_last_status();
}

/* log: out = ln a.  da = g / a. */
nd_tensor *nd_log(nd_tensor *a) { return nd_unary_op("nd_log", ND_OP_LOG, ND_UN_LOG, a); }

nd_status nd_bw_log(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    gi[0] = nd_div(g, IN(0));
    return gi[0] ? ND_OK : nd_last_status();
}

/* tanh: out = tanh a.  da = g * (1 - out²).  Saves out. */
nd_tensor *nd_tanh(nd_tensor *a) { return nd_unary_op("nd_tanh", ND_OP_TANH, ND_UN_TANH, a); }

nd_status nd_bw_tanh(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *y = output_of(node, nd_tanh);
    gi[0] = nd_mul(g, nd_rsub_scalar(1.0, nd_mul(y, y)));
    return gi[0] ? ND_OK : nd_last_status();
}

/* sigmoid: out = 1 / (1 + e^-a).  da = g * out * (1 - out).  Saves out. */
nd_tensor *nd_sigmoid(nd_tensor *a) { return nd_unary_op("nd_sigmoid", ND_OP_SIGMOID, ND_UN_SIGMOID, a); }

nd_status nd_bw_sigmoid(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *y = output_of(node, nd_sigmoid);
    gi[0] = nd_mul(g, nd_mul(y, nd_rsub_scalar(1.0, y)));
    return gi[0] ? ND_OK : nd_last_status();
}

/* where: out = cond ? a : b (cond bool, all broadcast).  da = where(cond, g, 0), db = where(cond, 0, g). */
nd_tensor *nd_where(nd_tensor *cond, nd_tensor *a, nd_tensor *b)
{
    const char *name = "nd_where";
    nd_tensor *ins[3] = {cond, a, b};
    if (!nd_check_inputs(name, 3, ins))
        return NULL;
    if (cond->dtype != ND_BOOL)
        return nd_fail(ND_ERR_DTYPE, "%s: the condition must be a bool tensor, got %s", name, nd_dtype_name(cond->dtype));
    int n1, nd;
    int64_t s1[ND_MAX_DIMS], shape[ND_MAX_DIMS];
    if (!nd_broadcast_shapes(cond->ndim, cond->shape, a->ndim, a->shape, &n1, s1) ||
        !nd_broadcast_shapes(n1, s1, b->ndim, b->shape, &nd, shape)) {
        char c1[ND_SHAPE_BUF], c2[ND_SHAPE_BUF], c3[ND_SHAPE_BUF];
        return nd_fail(ND_ERR_SHAPE, "%s: shapes %s (condition), %s and %s cannot be broadcast together", name,
                       nd_shape_str(c1, sizeof c1, cond->ndim, cond->shape), nd_shape_str(c2, sizeof c2, a->ndim, a->shape),
                       nd_shape_str(c3, sizeof c3, b->ndim, b->shape));
    }
    nd_dtype dtype = nd_promote(a, b);
    nd_tensor *xa = a->dtype == dtype ? a : nd_k_copy(a, dtype);
    nd_tensor *xb = b->dtype == dtype ? b : nd_k_copy(b, dtype);
    nd_tensor *out = xa && xb ? nd_alloc(dtype, nd, shape, false) : NULL;
    if (out) {
        int64_t sc[ND_MAX_DIMS], sa[ND_MAX_DIMS], sb[ND_MAX_DIMS];
        nd_broadcast_strides(cond, nd, shape, sc);
        nd_broadcast_strides(xa, nd, shape, sa);
        nd_broadcast_strides(xb, nd, shape, sb);
        char *ptrs[4] = {nd_data_ptr(out), nd_data_ptr(cond), nd_data_ptr(xa), nd_data_ptr(xb)};
        const int64_t *strides[4] = {out->strides, sc, sa, sb};
        size_t es = nd_dtype_size(dtype);
        size_t sizes[4] = {es, 1, es, es};
        nd_iter it;
        nd_iter_init(&it, nd, shape, 4, ptrs, strides, sizes);
        nd_backend_get()->where(dtype, &it);
    }
    if (xa != a)
        nd_unref(xa);
    if (xb != b)
        nd_unref(xb);
    if (!out)
        return NULL;
    return nd_finish(out, ND_OP_WHERE, 3, ins, NULL);
}

nd_status nd_bw_where(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *zero = nd_register(nd_k_wrapped_scalar(0.0, ND_FLOAT32));
    if (!zero)
        return nd_last_status();
    if (WANT(1) && !(gi[1] = nd_reduce_grad(nd_where(IN(0), g, zero), IN(1))))
        return nd_last_status();
    if (WANT(2) && !(gi[2] = nd_reduce_grad(nd_where(IN(0), zero, g), IN(2))))
        return nd_last_status();
    return ND_OK;
}

/* maximum / minimum: elementwise, NaN-propagating.  As PyTorch: a tie splits the gradient, the
 * losing side gets none, and a NaN comparison (neither wins) passes it to both:
 * da = g (1 - [a loses] - ½ [a == b]), db likewise. */
nd_tensor *nd_maximum(nd_tensor *a, nd_tensor *b) { return nd_binary_op("nd_maximum", ND_OP_MAXIMUM, ND_BIN_MAXIMUM, a, b); }
nd_tensor *nd_minimum(nd_tensor *a, nd_tensor *b) { return nd_binary_op("nd_minimum", ND_OP_MINIMUM, ND_BIN_MINIMUM, a, b); }

nd_status nd_bw_maximum(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *a = IN(0), *b = IN(1);
    nd_binop wins = node->op == ND_OP_MAXIMUM ? ND_BIN_GT : ND_BIN_LT;
    nd_binop loses = node->op == ND_OP_MAXIMUM ? ND_BIN_LT : ND_BIN_GT;
    nd_tensor *tie = nd_mul_scalar(nd_to(nd_compare("nd_maximum backward", ND_BIN_EQ, a, b), g->dtype), 0.5);
    if (WANT(0)) {
        nd_tensor *lost = nd_to(nd_compare("nd_maximum backward", loses, a, b), g->dtype);
        nd_tensor *w = nd_sub(nd_rsub_scalar(1.0, lost), tie);
        if (!(gi[0] = nd_reduce_grad(nd_mul(g, w), a)))
            return nd_last_status();
    }
    if (WANT(1)) {
        nd_tensor *lost = nd_to(nd_compare("nd_maximum backward", wins, a, b), g->dtype);
        nd_tensor *w = nd_sub(nd_rsub_scalar(1.0, lost), tie);
        if (!(gi[1] = nd_reduce_grad(nd_mul(g, w), b)))
            return nd_last_status();
    }
    return ND_OK;
}

/* masked_fill: value where mask (bool, broadcast to t's shape) is true, t elsewhere.
 * da = g with the masked positions zeroed. */
nd_tensor *nd_masked_fill(nd_tensor *t, nd_tensor *mask, double value)
{
    const char *name = "nd_masked_fill";
    nd_tensor *ins[2] = {t, mask};
    if (!nd_check_inputs(name, 2, ins))
        return NULL;
    if (mask->dtype != ND_BOOL)
        return nd_fail(ND_ERR_DTYPE, "%s: expected a bool mask, got %s", name, nd_dtype_name(mask->dtype));
    int nd;
    int64_t shape[ND_MAX_DIMS];
    if (!nd_broadcast_shapes(t->ndim, t->shape, mask->ndim, mask->shape, &nd, shape) || nd != t->ndim ||
        memcmp(shape, t->shape, sizeof(int64_t) * (size_t)nd) != 0) {
        char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
        return nd_fail(ND_ERR_SHAPE, "%s: mask of shape %s cannot be broadcast to the input's shape %s", name,
                       nd_shape_str(s1, sizeof s1, mask->ndim, mask->shape), nd_shape_str(s2, sizeof s2, t->ndim, t->shape));
    }
    nd_tensor *v = nd_k_full(t->dtype, 0, NULL, value);
    nd_tensor *out = v ? nd_alloc(t->dtype, t->ndim, t->shape, false) : NULL;
    if (out) {
        int64_t sm[ND_MAX_DIMS], sv[ND_MAX_DIMS] = {0};
        nd_broadcast_strides(mask, t->ndim, t->shape, sm);
        char *ptrs[4] = {nd_data_ptr(out), nd_data_ptr(mask), nd_data_ptr(v), nd_data_ptr(t)};
        const int64_t *strides[4] = {out->strides, sm, sv, t->strides};
        size_t es = nd_dtype_size(t->dtype);
        size_t sizes[4] = {es, 1, es, es};
        nd_iter it;
        nd_iter_init(&it, t->ndim, t->shape, 4, ptrs, strides, sizes);
        nd_backend_get()->where(t->dtype, &it);
    }
    nd_unref(v);
    if (!out)
        return NULL;
    return nd_finish(out, ND_OP_MASKED_FILL, 2, ins, NULL);
}

nd_status nd_bw_masked_fill(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *zero = nd_register(nd_k_wrapped_scalar(0.0, ND_FLOAT32));
    gi[0] = zero ? nd_where(IN(1), zero, g) : NULL;
    return gi[0] ? ND_OK : nd_last_status();
}

/* Comparisons: bool results, no gradient. */
nd_tensor *nd_eq(nd_tensor *a, nd_tensor *b) { return nd_compare("nd_eq", ND_BIN_EQ, a, b); }
nd_tensor *nd_ne(nd_tensor *a, nd_tensor *b) { return nd_compare("nd_ne", ND_BIN_NE, a, b); }
nd_tensor *nd_lt(nd_tensor *a, nd_tensor *b) { return nd_compare("nd_lt", ND_BIN_LT, a, b); }
nd_tensor *nd_le(nd_tensor *a, nd_tensor *b) { return nd_compare("nd_le", ND_BIN_LE, a, b); }
nd_tensor *nd_gt(nd_tensor *a, nd_tensor *b) { return nd_compare("nd_gt", ND_BIN_GT, a, b); }
nd_tensor *nd_ge(nd_tensor *a, nd_tensor *b) { return nd_compare("nd_ge", ND_BIN_GE, a, b); }

/* ------------------------------------------------------------------ in place (no autograd) */

static nd_status check_inplace_target(const char *name, const nd_tensor *a)
{
    if (a->requires_grad && nd_is_grad_enabled())
        return nd_fail_status(ND_ERR_GRAD,
                              "%s: a tensor that requires grad cannot be modified in place while grad mode is on "
                              "(wrap the update in nd_no_grad_begin/nd_no_grad_end)", name);
    for (int i = 0; i < a->ndim; i++)
        if (a->strides[i] == 0 && a->shape[i] > 1)
            return nd_fail_status(ND_ERR_STATE, "%s: more than one element of the written-to tensor refers to a "
                                  "single memory location (it is expanded); clone it first", name);
    return ND_OK;
}

static nd_status inplace(const char *name, nd_binop kernel, nd_tensor *a, nd_tensor *b)
{
    nd_tensor *ins[2] = {a, b};
    if (!nd_check_inputs(name, 2, ins))
        return nd_last_status();
    nd_status st = check_inplace_target(name, a);
    if (st != ND_OK)
        return st;
    int nd;
    int64_t shape[ND_MAX_DIMS];
    char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
    if (!nd_broadcast_shapes(a->ndim, a->shape, b->ndim, b->shape, &nd, shape) || nd != a->ndim ||
        memcmp(shape, a->shape, sizeof(int64_t) * (size_t)nd) != 0)
        return nd_fail_status(ND_ERR_SHAPE, "%s: a tensor of shape %s cannot be broadcast to the in-place target's shape %s",
                              name, nd_shape_str(s1, sizeof s1, b->ndim, b->shape), nd_shape_str(s2, sizeof s2, a->ndim, a->shape));
    nd_dtype result = nd_promote(a, b);
    bool lossy = (nd_dtype_is_float(result) && !nd_dtype_is_float(a->dtype)) ||
                 (result == ND_INT64 && a->dtype == ND_BOOL);
    if (lossy)
        return nd_fail_status(ND_ERR_DTYPE, "%s: result type %s can't be cast to the desired output type %s", name,
                              nd_dtype_name(result), nd_dtype_name(a->dtype));
    if (a->dtype == ND_BOOL && kernel == ND_BIN_SUB)
        return nd_fail_status(ND_ERR_DTYPE, "%s: subtraction is not supported for bool tensors", name);
    /* Reading b while writing a is only safe when they do not share memory. */
    nd_tensor *xb = (b->dtype != a->dtype || b->storage == a->storage) ? nd_k_copy(b, a->dtype) : b;
    if (!xb)
        return nd_last_status();
    nd_k_binary_into(kernel, a, a, xb);
    if (xb != b)
        nd_unref(xb);
    nd_bump_version(a);
    return ND_OK;
}

nd_status nd_add_(nd_tensor *a, nd_tensor *b) { return inplace("nd_add_", ND_BIN_ADD, a, b); }
nd_status nd_sub_(nd_tensor *a, nd_tensor *b) { return inplace("nd_sub_", ND_BIN_SUB, a, b); }
nd_status nd_mul_(nd_tensor *a, nd_tensor *b) { return inplace("nd_mul_", ND_BIN_MUL, a, b); }

nd_status nd_fill_(nd_tensor *a, double value)
{
    if (!a)
        return nd_fail_null("nd_fill_", 0), nd_last_status();
    nd_status st = check_inplace_target("nd_fill_", a);
    if (st != ND_OK)
        return st;
    nd_tensor *v = nd_k_full(a->dtype, 0, NULL, value);
    if (!v)
        return nd_last_status();
    nd_k_copy_into(a, v);
    nd_unref(v);
    nd_bump_version(a);
    return ND_OK;
}

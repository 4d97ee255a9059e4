/* Unary math and activation functions, forward and backward side by side. Integer inputs to
 * float functions give float32 (as in PyTorch); abs, square, sign and clamp keep int64. */
#include "ops/common.h"

#include <math.h>
#include <string.h>

#define IN0 (node->inputs[0])
#define DONE(expr) return (gi[0] = (expr)) ? ND_OK : nd_last_status()

/* The saved output, or the output recomputed from the input when the backward pass is itself
 * being recorded (so that the second derivative flows through it). */
static nd_tensor *saved_output(nd_node *node, nd_tensor *(*forward)(nd_tensor *))
{
    return nd_is_grad_enabled() ? forward(IN0) : node->saved[0];
}



/* abs: |a|.  da = g * sign(a). */
nd_tensor *nd_abs(nd_tensor *a) { return nd_unary_op("nd_abs", ND_OP_ABS, ND_UN_ABS, a); }
nd_status nd_bw_abs(nd_node *node, nd_tensor *g, nd_tensor **gi) { DONE(nd_mul(g, nd_sign(IN0))); }

/* sqrt: √a.  da = g / (2 out).  Saves out. */
nd_tensor *nd_sqrt(nd_tensor *a) { return nd_unary_op("nd_sqrt", ND_OP_SQRT, ND_UN_SQRT, a); }
nd_status nd_bw_sqrt(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    DONE(nd_div(g, nd_mul_scalar(saved_output(node, nd_sqrt), 2.0)));
}

/* rsqrt: 1/√a.  da = -g out³ / 2.  Saves out. */
nd_tensor *nd_rsqrt(nd_tensor *a) { return nd_unary_op("nd_rsqrt", ND_OP_RSQRT, ND_UN_RSQRT, a); }
nd_status nd_bw_rsqrt(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    DONE(nd_mul(g, nd_mul_scalar(nd_pow_scalar(saved_output(node, nd_rsqrt), 3.0), -0.5)));
}

/* square: a².  da = 2 a g. */
nd_tensor *nd_square(nd_tensor *a) { return nd_unary_op("nd_square", ND_OP_SQUARE, ND_UN_SQUARE, a); }
nd_status nd_bw_square(nd_node *node, nd_tensor *g, nd_tensor **gi) { DONE(nd_mul(g, nd_mul_scalar(IN0, 2.0))); }

/* sin: da = g cos a.   cos: da = -g sin a. */
nd_tensor *nd_sin(nd_tensor *a) { return nd_unary_op("nd_sin", ND_OP_SIN, ND_UN_SIN, a); }
nd_status nd_bw_sin(nd_node *node, nd_tensor *g, nd_tensor **gi) { DONE(nd_mul(g, nd_cos(IN0))); }
nd_tensor *nd_cos(nd_tensor *a) { return nd_unary_op("nd_cos", ND_OP_COS, ND_UN_COS, a); }
nd_status nd_bw_cos(nd_node *node, nd_tensor *g, nd_tensor **gi) { DONE(nd_mul(g, nd_neg(nd_sin(IN0)))); }

/* log1p: ln(1 + a).  da = g / (1 + a). */
nd_tensor *nd_log1p(nd_tensor *a) { return nd_unary_op("nd_log1p", ND_OP_LOG1P, ND_UN_LOG1P, a); }
nd_status nd_bw_log1p(nd_node *node, nd_tensor *g, nd_tensor **gi) { DONE(nd_div(g, nd_add_scalar(IN0, 1.0))); }

/* expm1: e^a - 1.  da = g (out + 1).  Saves out. */
nd_tensor *nd_expm1(nd_tensor *a) { return nd_unary_op("nd_expm1", ND_OP_EXPM1, ND_UN_EXPM1, a); }
nd_status nd_bw_expm1(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    DONE(nd_mul(g, nd_add_scalar(saved_output(node, nd_expm1), 1.0)));
}

/* erf: da = g 2/√π e^(-a²). */
nd_tensor *nd_erf(nd_tensor *a) { return nd_unary_op("nd_erf", ND_OP_ERF, ND_UN_ERF, a); }
nd_status nd_bw_erf(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    DONE(nd_mul(g, nd_mul_scalar(nd_exp(nd_neg(nd_square(IN0))), 1.1283791670955126)));
}

/* sign: -1, 0 or 1 (NaN stays NaN).  No gradient: da = 0. */
nd_tensor *nd_sign(nd_tensor *a) { return nd_unary_op("nd_sign", ND_OP_SIGN, ND_UN_SIGN, a); }
nd_status nd_bw_sign(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    (void)node;
    DONE(nd_mul_scalar(g, 0.0));
}

/* reciprocal: 1/a.  da = -g out².  Saves out. */
nd_tensor *nd_reciprocal(nd_tensor *a) { return nd_unary_op("nd_reciprocal", ND_OP_RECIPROCAL, ND_UN_RECIPROCAL, a); }
nd_status nd_bw_reciprocal(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *y = saved_output(node, nd_reciprocal);
    DONE(nd_neg(nd_mul(g, nd_mul(y, y))));
}

/* gelu, exact: a Φ(a).  da = g (Φ(a) + a φ(a)), Φ the normal CDF and φ its density.
 * gelu, tanh approximation: 0.5 a (1 + tanh(u)), u = k (a + c a³), k = √(2/π), c = 0.044715.
 *   da = g (0.5 (1 + t) + 0.5 a (1 - t²) k (1 + 3 c a²)), t = tanh(u). */
nd_tensor *nd_gelu(nd_tensor *a, bool tanh_approximation)
{
    return tanh_approximation ? nd_unary_op("nd_gelu", ND_OP_GELU_TANH, ND_UN_GELU_TANH, a)
                              : nd_unary_op("nd_gelu", ND_OP_GELU, ND_UN_GELU, a);
}

/* Without a graph to record, GELU's backward is one fused pass: g * gelu'(a). */
nd_status nd_bw_gelu(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    if ((gi[0] = nd_fused_grad(ND_BIN_GELU_GRAD, IN0, g)))
        return ND_OK;
    nd_tensor *a = IN0;
    nd_tensor *cdf = nd_mul_scalar(nd_add_scalar(nd_erf(nd_mul_scalar(a, 0.70710678118654752440)), 1.0), 0.5);
    nd_tensor *pdf = nd_mul_scalar(nd_exp(nd_mul_scalar(nd_square(a), -0.5)), 0.3989422804014327);
    DONE(nd_mul(g, nd_add(cdf, nd_mul(a, pdf))));
}

nd_status nd_bw_gelu_tanh(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    if ((gi[0] = nd_fused_grad(ND_BIN_GELU_TANH_GRAD, IN0, g)))
        return ND_OK;
    const double k = 0.7978845608028654, c = 0.044715;
    nd_tensor *a = IN0;
    nd_tensor *a2 = nd_square(a);
    nd_tensor *t = nd_tanh(nd_mul_scalar(nd_add(a, nd_mul_scalar(nd_mul(a2, a), c)), k));
    nd_tensor *left = nd_mul_scalar(nd_add_scalar(t, 1.0), 0.5);
    nd_tensor *right = nd_mul(nd_mul_scalar(nd_mul(a, nd_rsub_scalar(1.0, nd_square(t))), 0.5 * k),
                              nd_add_scalar(nd_mul_scalar(a2, 3 * c), 1.0));
    DONE(nd_mul(g, nd_add(left, right)));
}

/* silu: a σ(a).  da = g σ(a) (1 + a (1 - σ(a))). */
nd_tensor *nd_silu(nd_tensor *a) { return nd_unary_op("nd_silu", ND_OP_SILU, ND_UN_SILU, a); }
nd_status nd_bw_silu(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *s = nd_sigmoid(IN0);
    DONE(nd_mul(g, nd_mul(s, nd_add_scalar(nd_mul(IN0, nd_rsub_scalar(1.0, s)), 1.0))));
}

/* softplus: ln(1 + e^(βa)) / β, or a where βa > threshold.  da = g σ(βa), or g past the threshold. */
nd_tensor *nd_softplus(nd_tensor *a, double beta, double threshold)
{
    if (!(beta != 0) || isnan(beta) || isnan(threshold))
        return nd_fail(ND_ERR_VALUE, "nd_softplus: beta must be non-zero and threshold a number (beta=%g, threshold=%g)",
                       beta, threshold);
    const double p[2] = {beta, threshold};
    return nd_unary_op_p("nd_softplus", ND_OP_SOFTPLUS, ND_UN_SOFTPLUS, a, p);
}

nd_status nd_bw_softplus(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    double beta = node->dparams[0], threshold = node->dparams[1];
    nd_tensor *z = nd_mul_scalar(IN0, beta);
    nd_tensor *linear = nd_mask(ND_BIN_GT, z, threshold, ND_BOOL);
    DONE(nd_where(linear, g, nd_mul(g, nd_sigmoid(z))));
}

/* leaky_relu: a if a > 0 else slope a.  da = g (a > 0 ? 1 : slope). */
nd_tensor *nd_leaky_relu(nd_tensor *a, double negative_slope)
{
    const double p[2] = {negative_slope, 0};
    return nd_unary_op_p("nd_leaky_relu", ND_OP_LEAKY_RELU, ND_UN_LEAKY_RELU, a, p);
}

nd_status nd_bw_leaky_relu(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    double slope = node->dparams[0];
    nd_tensor *positive = nd_mask(ND_BIN_GT, IN0, 0.0, g->dtype);
    DONE(nd_mul(g, nd_add_scalar(nd_mul_scalar(positive, 1.0 - slope), slope)));
}

/* elu: a if a > 0 else α (e^a - 1).  da = g, or g α e^a. */
nd_tensor *nd_elu(nd_tensor *a, double alpha)
{
    const double p[2] = {alpha, 0};
    return nd_unary_op_p("nd_elu", ND_OP_ELU, ND_UN_ELU, a, p);
}

nd_status nd_bw_elu(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    /* Tested as a <= 0, so NaN takes the identity branch, as in PyTorch. */
    nd_tensor *negative = nd_mask(ND_BIN_LE, IN0, 0.0, ND_BOOL);
    DONE(nd_where(negative, nd_mul(g, nd_mul_scalar(nd_exp(IN0), node->dparams[0])), g));
}

/* hardtanh: a clamped to [min, max].  da = 0 where a <= min or a >= max, else g (so NaN passes
 * the gradient, as in PyTorch). */
nd_tensor *nd_hardtanh(nd_tensor *a, double min_val, double max_val)
{
    if (!(min_val <= max_val))
        return nd_fail(ND_ERR_VALUE, "nd_hardtanh: min_val (%g) must not exceed max_val (%g)", min_val, max_val);
    const double p[2] = {min_val, max_val};
    return nd_unary_op_p("nd_hardtanh", ND_OP_HARDTANH, ND_UN_HARDTANH, a, p);
}

nd_status nd_bw_hardtanh(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *outside = nd_add(nd_mask(ND_BIN_LE, IN0, node->dparams[0], g->dtype),
                                nd_mask(ND_BIN_GE, IN0, node->dparams[1], g->dtype));
    DONE(nd_mul(g, nd_rsub_scalar(1.0, nd_clamp(outside, 0.0, 1.0))));
}

/* clamp: a limited to [min, max] (-INFINITY / INFINITY for no bound).  da = g where
 * min <= a <= max, else 0 (PyTorch's gradient at the bounds). */
nd_tensor *nd_clamp(nd_tensor *a, double min_val, double max_val)
{
    if (isnan(min_val) || isnan(max_val))
        return nd_fail(ND_ERR_VALUE, "nd_clamp: bounds must not be NaN (min=%g, max=%g)", min_val, max_val);
    const double p[2] = {min_val, max_val};
    return nd_unary_op_p("nd_clamp", ND_OP_CLAMP, ND_UN_CLAMP, a, p);
}

nd_status nd_bw_clamp(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *inside = nd_mul(nd_mask(ND_BIN_GE, IN0, node->dparams[0], g->dtype),
                               nd_mask(ND_BIN_LE, IN0, node->dparams[1], g->dtype));
    DONE(nd_mul(g, inside));
}


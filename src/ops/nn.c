/* Neural-network functions: softmax and log_softmax (stable, with their own backward rules),
 * linear, the losses, dropout, scaled dot-product attention and gradient clipping helpers. */
#include "ops/common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool require_float(const char *name, const nd_tensor *t, const char *what)
{
    if (!nd_dtype_is_float(t->dtype)) {
        nd_fail(ND_ERR_DTYPE, "%s: %s must be floating point, got %s", name, what, nd_dtype_name(t->dtype));
        return false;
    }
    return true;
}

/* softmax along dim: e^(a - max) / Σ e^(a - max).  da = out (g - Σ g·out).  Saves out.
 * log_softmax: a - max - ln Σ e^(a - max).      da = g - e^out Σ g.         Saves out. */
static nd_tensor *softmax_impl(const char *name, nd_op op, nd_rowop row, nd_tensor *t, int dim)
{
    if (!t)
        return nd_fail_null(name, 0);
    if (!require_float(name, t, "the input") || !nd_check_dim(name, &dim, t->ndim, true))
        return NULL;
    nd_tensor *out = nd_alloc(t->dtype, t->ndim, t->shape, false);
    if (!out)
        return NULL;
    if (nd_numel(t) > 0)
        nd_k_rows(row, out, NULL, t, dim);
    nd_node *node = NULL;
    out = nd_finish(out, op, 1, &t, &node);
    if (node) {
        node->iparams[0] = dim;
        if (!nd_node_save(node, 0, out))
            return NULL;
    }
    return out;
}

nd_tensor *nd_softmax(nd_tensor *t, int dim) { return softmax_impl("nd_softmax", ND_OP_SOFTMAX, ND_ROW_SOFTMAX, t, dim); }
nd_tensor *nd_log_softmax(nd_tensor *t, int dim)
{
    return softmax_impl("nd_log_softmax", ND_OP_LOG_SOFTMAX, ND_ROW_LOG_SOFTMAX, t, dim);
}

nd_status nd_bw_softmax(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    int dim = (int)node->iparams[0];
    const int64_t d[1] = {dim};
    int nd = node->inputs[0]->ndim ? 1 : 0;
    bool log_form = node->op == ND_OP_LOG_SOFTMAX;
    nd_tensor *x = node->inputs[0];
    if (!nd_is_grad_enabled() && dim == x->ndim - 1 && nd_is_contiguous(node->saved[0]) && g->dtype == x->dtype) {
        /* rows along the last dim: one fused pass */
        nd_tensor *gd = nd_dense(g), *dx = gd ? nd_alloc(x->dtype, x->ndim, x->shape, false) : NULL;
        int64_t n = x->ndim ? x->shape[x->ndim - 1] : 1, rows = n ? nd_numel(x) / n : 0;
        if (dx && rows > 0)
            nd_backend_get()->softmax_backward(x->dtype, log_form, rows, n, nd_data_ptr(node->saved[0]), nd_data_ptr(gd),
                                               nd_data_ptr(dx));
        if (gd != g)
            nd_unref(gd);
        gi[0] = nd_register(dx);
        return dx ? ND_OK : nd_last_status();
    }
    nd_tensor *y = nd_is_grad_enabled() ? (log_form ? nd_log_softmax(x, dim) : nd_softmax(x, dim)) : node->saved[0];
    if (log_form)
        gi[0] = nd_sub(g, nd_mul(nd_exp(y), nd_sum_dims(g, nd, d, true)));
    else
        gi[0] = nd_mul(y, nd_sub(g, nd_sum_dims(nd_mul(g, y), nd, d, true)));
    return gi[0] ? ND_OK : nd_last_status();
}

/* linear: x @ wᵀ + b, w [out, in], b [out] or NULL, as one op: the output starts as b in every
 * row and one GEMM adds x wᵀ to it, so no separate product tensor is made or kept alive by the
 * graph.  dx = g w;  dw = gᵀ x (x and g flattened to rows);  db = Σ_rows g. */
static bool linear_rows(const nd_tensor *x, int64_t *rows, int64_t *row_stride, int64_t *col_stride)
{
    int64_t in = x->shape[x->ndim - 1];
    *rows = in ? nd_numel(x) / in : 1;
    if (in == 0)
        for (int i = 0; i < x->ndim - 1; i++)
            *rows *= x->shape[i];
    *col_stride = x->strides[x->ndim - 1];
    if (x->ndim == 1) {
        *row_stride = 0;
        return true;
    }
    /* The leading dims must fold into one row index with one stride. Size-1 dims say nothing
     * about the layout (their stride is arbitrary), so they are skipped, as nd_is_contiguous does. */
    *row_stride = 0;
    int64_t expect = 0;
    bool first = true;
    for (int i = x->ndim - 2; i >= 0; i--) {
        if (x->shape[i] == 1)
            continue;
        if (first)
            *row_stride = x->strides[i], first = false;
        else if (x->strides[i] != expect)
            return false;
        expect = x->strides[i] * x->shape[i];
    }
    return true;
}

/* PyTorch's grad_fn for linear follows the input's case: addmm for a matrix with a bias, mm
 * without; a contiguous 3-d input with a bias is a view of one addmm; otherwise matmul (an unsafe
 * view of one mm), then an add for the bias; a vector input squeezes the product. */
static const char *linear_grad_fn_name(const nd_tensor *x, bool bias)
{
    if (x->ndim == 1)
        return bias ? "AddBackward0" : "SqueezeBackward3";
    if (x->ndim == 2)
        return bias ? "AddmmBackward0" : "MmBackward0";
    if (!bias)
        return "UnsafeViewBackward0";
    return x->ndim == 3 && nd_is_contiguous(x) ? "ViewBackward0" : "AddBackward0";
}

nd_tensor *nd_linear(nd_tensor *x, nd_tensor *weight, nd_tensor *bias)
{
    const char *name = "nd_linear";
    nd_tensor *ins[3] = {x, weight, bias};
    if (!nd_check_inputs(name, 2, ins))
        return NULL;
    char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
    if (weight->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != weight->shape[1])
        return nd_fail(ND_ERR_SHAPE, "%s: input %s and weight %s cannot be multiplied (the weight must be [out, in] "
                       "with in equal to the input's last dim)", name, nd_shape_str(s1, sizeof s1, x->ndim, x->shape),
                       nd_shape_str(s2, sizeof s2, weight->ndim, weight->shape));
    if (bias && (bias->ndim != 1 || bias->shape[0] != weight->shape[0]))
        return nd_fail(ND_ERR_SHAPE, "%s: bias %s must be 1-d of the weight's output size %lld", name,
                       nd_shape_str(s1, sizeof s1, bias->ndim, bias->shape), (long long)weight->shape[0]);
    if (!nd_dtype_is_float(x->dtype) || x->dtype != weight->dtype || (bias && bias->dtype != x->dtype)) {
        /* mixed or integer dtypes: the composed ops promote or report exactly as matmul and add do */
        nd_composite_begin();
        nd_tensor *y = nd_matmul(x, nd_t(weight));
        return nd_composite_end(nd_name_grad_fn(bias ? nd_add(y, bias) : y, linear_grad_fn_name(x, bias), 3, ins));
    }
    int64_t rows, xr, xc, out_f = weight->shape[0], in_f = weight->shape[1];
    nd_tensor *xd = linear_rows(x, &rows, &xr, &xc) ? x : nd_k_copy(x, x->dtype);
    if (!xd)
        return NULL;
    if (xd != x)
        linear_rows(xd, &rows, &xr, &xc); /* a dense copy always folds */
    int64_t shape[ND_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = out_f;
    nd_tensor *out = xd ? nd_alloc(x->dtype, x->ndim, shape, bias == NULL && in_f == 0) : NULL;
    if (out && rows > 0 && out_f > 0) {
        /* the bias is added by the product's epilogue: C is written once */
        const int64_t as[3] = {0, xr, xc}, bs[3] = {0, weight->strides[1], weight->strides[0]}, cs[3] = {0, out_f, 1};
        nd_tensor *bd = bias ? nd_dense(bias) : NULL;
        if (bias && !bd) {
            nd_unref(out);
            out = NULL;
        } else if (bd) {
            nd_backend_get()->gemm_bias(x->dtype, rows, out_f, in_f, nd_data_ptr(xd), as, nd_data_ptr(weight), bs,
                                        nd_data_ptr(out), out_f, nd_data_ptr(bd));
            if (bd != bias)
                nd_unref(bd);
        } else if (in_f > 0) {
            nd_backend_get()->gemm(x->dtype, 1, rows, out_f, in_f, nd_data_ptr(xd), as, nd_data_ptr(weight), bs,
                                   nd_data_ptr(out), cs, false);
        }
    }
    if (xd != x)
        nd_unref(xd);
    return out ? nd_name_grad_fn(nd_finish(out, ND_OP_LINEAR, bias ? 3 : 2, ins, NULL), linear_grad_fn_name(x, bias), 3, ins)
               : NULL;
}

nd_status nd_bw_linear(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *x = node->inputs[0], *w = node->inputs[1], *b = node->n_inputs > 2 ? node->inputs[2] : NULL;
    int64_t out_f = w->shape[0], in_f = w->shape[1], rows = 1;
    for (int i = 0; i < x->ndim - 1; i++) /* from x: g has no elements to count when out_f is 0 */
        rows *= x->shape[i];
    nd_tensor *g2 = nd_reshape(g, ND_SHAPE(rows, out_f));
    nd_tensor *x2 = w->requires_grad ? nd_reshape(x, ND_SHAPE(rows, in_f)) : NULL;
    if (!g2 || (w->requires_grad && !x2))
        return nd_last_status();
    if (x->requires_grad && !(gi[0] = nd_reshape(nd_mm(g2, w), x->ndim, x->shape)))
        return nd_last_status();
    if (w->requires_grad && !(gi[1] = nd_mm(nd_t(g2), x2)))
        return nd_last_status();
    if (b && b->requires_grad && !(gi[2] = nd_sum_to(g2, 1, b->shape, b->dtype)))
        return nd_last_status();
    return ND_OK;
}

/* ------------------------------------------------------------------ losses */

static nd_tensor *reduce_loss(const char *name, nd_tensor *losses, nd_reduction reduction)
{
    switch (reduction) {
    case ND_REDUCTION_NONE: return losses;
    case ND_REDUCTION_SUM: return nd_sum(losses);
    case ND_REDUCTION_MEAN: return nd_mean(losses);
    }
    return nd_fail(ND_ERR_VALUE, "%s: unknown reduction %d", name, (int)reduction);
}

static bool check_reduction(const char *name, nd_reduction r)
{
    if (r != ND_REDUCTION_NONE && r != ND_REDUCTION_SUM && r != ND_REDUCTION_MEAN) {
        nd_fail(ND_ERR_VALUE, "%s: unknown reduction %d", name, (int)r);
        return false;
    }
    return true;
}

/* Input and target must broadcast; both floating point. */
static bool check_pair(const char *name, const nd_tensor *input, const nd_tensor *target)
{
    int nd;
    int64_t shape[ND_MAX_DIMS];
    if (!require_float(name, input, "the input") || !require_float(name, target, "the target"))
        return false;
    if (!nd_broadcast_shapes(input->ndim, input->shape, target->ndim, target->shape, &nd, shape)) {
        char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
        nd_fail(ND_ERR_SHAPE, "%s: input %s and target %s cannot be broadcast together", name,
                nd_shape_str(s1, sizeof s1, input->ndim, input->shape), nd_shape_str(s2, sizeof s2, target->ndim, target->shape));
        return false;
    }
    return true;
}

nd_tensor *nd_mse_loss(nd_tensor *input, nd_tensor *target, nd_reduction reduction)
{
    const char *name = "nd_mse_loss";
    nd_tensor *ins[2] = {input, target};
    if (!nd_check_inputs(name, 2, ins) || !check_pair(name, input, target) || !check_reduction(name, reduction))
        return NULL;
    nd_composite_begin();
    return nd_composite_end(nd_name_grad_fn(reduce_loss(name, nd_square(nd_sub(input, target)), reduction), "MseLossBackward0", 2, ins));
}

nd_tensor *nd_l1_loss(nd_tensor *input, nd_tensor *target, nd_reduction reduction)
{
    const char *name = "nd_l1_loss";
    nd_tensor *ins[2] = {input, target};
    if (!nd_check_inputs(name, 2, ins) || !check_pair(name, input, target) || !check_reduction(name, reduction))
        return NULL;
    nd_composite_begin();
    return nd_composite_end(reduce_loss(name, nd_abs(nd_sub(input, target)), reduction));
}

/* smooth_l1: 0.5 d² / beta where |d| < beta, |d| - 0.5 beta elsewhere (beta 0: plain L1). */
nd_tensor *nd_smooth_l1_loss(nd_tensor *input, nd_tensor *target, nd_reduction reduction, double beta)
{
    const char *name = "nd_smooth_l1_loss";
    nd_tensor *ins[2] = {input, target};
    if (!nd_check_inputs(name, 2, ins) || !check_pair(name, input, target) || !check_reduction(name, reduction))
        return NULL;
    if (!(beta >= 0))
        return nd_fail(ND_ERR_VALUE, "%s: beta must be non-negative, got %g", name, beta);
    nd_composite_begin();
    nd_tensor *d = nd_sub(input, target);
    nd_tensor *ad = nd_abs(d);
    nd_tensor *losses = beta == 0 ? ad
                                  : nd_where(nd_mask(ND_BIN_LT, ad, beta, ND_BOOL), nd_mul_scalar(nd_square(d), 0.5 / beta),
                                             nd_sub_scalar(ad, 0.5 * beta));
    return nd_composite_end(nd_name_grad_fn(reduce_loss(name, losses, reduction), "SmoothL1LossBackward0", 2, ins));
}

/* binary_cross_entropy on probabilities: -w (y ln p + (1-y) ln(1-p)) elementwise, logs clamped at
 * -100 as PyTorch does.  dp = g w (p - y) / max(p (1-p), 1e-12);  dy = g w (ln(1-p) - ln p)
 * (PyTorch's formulas, finite at p = 0 and 1).  Inputs: p, y, weight (or NULL). */
static nd_tensor *clamped_log(nd_tensor *x) { return nd_clamp(nd_log(x), -100.0, INFINITY); }

static nd_tensor *bce_elementwise(nd_tensor *p, nd_tensor *y, nd_tensor *w)
{
    nd_tensor *ins[3] = {p, y, w};
    nd_scope_begin();
    bool was = nd_set_grad_enabled(false);
    nd_tensor *losses = nd_neg(nd_add(nd_mul(y, clamped_log(p)), nd_mul(nd_rsub_scalar(1.0, y), clamped_log(nd_rsub_scalar(1.0, p)))));
    if (w)
        losses = nd_mul(losses, w);
    nd_tensor *out = losses ? nd_k_copy(losses, losses->dtype) : NULL;
    nd_set_grad_enabled(was);
    nd_scope_end();
    return out ? nd_finish(out, ND_OP_BCE, 3, ins, NULL) : NULL;
}

nd_status nd_bw_bce(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *p = node->inputs[0], *y = node->inputs[1], *w = node->inputs[2];
    nd_tensor *gw = w ? nd_mul(g, w) : g;
    if (p->requires_grad) {
        /* PyTorch's EPSILON is the float 1e-12f for every dtype. */
        nd_tensor *denom = nd_clamp(nd_mul(p, nd_rsub_scalar(1.0, p)), (double)1e-12f, INFINITY);
        if (!(gi[0] = nd_reduce_grad(nd_div(nd_mul(gw, nd_sub(p, y)), denom), p)))
            return nd_last_status();
    }
    if (y->requires_grad &&
        !(gi[1] = nd_reduce_grad(nd_mul(gw, nd_sub(clamped_log(nd_rsub_scalar(1.0, p)), clamped_log(p))), y)))
        return nd_last_status();
    if (w && w->requires_grad && !(gi[2] = nd_reduce_grad(nd_mul(g, bce_elementwise(p, y, NULL)), w)))
        return nd_last_status();
    return ND_OK;
}

nd_tensor *nd_binary_cross_entropy(nd_tensor *input, nd_tensor *target, nd_tensor *weight, nd_reduction reduction)
{
    const char *name = "nd_binary_cross_entropy";
    nd_tensor *ins[2] = {input, target};
    if (!nd_check_inputs(name, 2, ins) || !check_pair(name, input, target) || !check_reduction(name, reduction))
        return NULL;
    if (input->ndim != target->ndim || memcmp(input->shape, target->shape, sizeof(int64_t) * (size_t)input->ndim)) {
        char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
        return nd_fail(ND_ERR_SHAPE, "%s: using a target size %s that is different to the input size %s", name,
                       nd_shape_str(s1, sizeof s1, target->ndim, target->shape),
                       nd_shape_str(s2, sizeof s2, input->ndim, input->shape));
    }
    int64_t n = nd_numel(input);
    for (int64_t i = 0; i < n; i++) {
        double p = nd_load(nd_elem_ptr(input, i), input->dtype);
        if (!(p >= 0 && p <= 1))
            return nd_fail(ND_ERR_VALUE, "%s: all elements of input should be between 0 and 1 (element %lld is %g)", name,
                           (long long)i, p);
    }
    if (weight) {
        int nd;
        int64_t shape[ND_MAX_DIMS];
        if (!nd_broadcast_shapes(input->ndim, input->shape, weight->ndim, weight->shape, &nd, shape) || nd != input->ndim ||
            memcmp(shape, input->shape, sizeof(int64_t) * (size_t)nd) != 0) {
            char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
            return nd_fail(ND_ERR_SHAPE, "%s: weight %s does not broadcast to the input's shape %s", name,
                           nd_shape_str(s1, sizeof s1, weight->ndim, weight->shape),
                           nd_shape_str(s2, sizeof s2, input->ndim, input->shape));
        }
    }
    nd_composite_begin();
    return nd_composite_end(nd_name_grad_fn(reduce_loss(name, bce_elementwise(input, target, weight), reduction),
                                            "BinaryCrossEntropyBackward0", 2, ins));
}

/* binary_cross_entropy_with_logits: (1-y) x + (1 + (pw-1) y) softplus(-x), weighted. softplus
 * is smooth and stable for any |x|, so the gradient is σ(x)-y style everywhere, even at x = 0. */
nd_tensor *nd_binary_cross_entropy_with_logits(nd_tensor *input, nd_tensor *target, nd_tensor *weight,
                                               nd_tensor *pos_weight, nd_reduction reduction)
{
    const char *name = "nd_binary_cross_entropy_with_logits";
    nd_tensor *ins[2] = {input, target};
    if (!nd_check_inputs(name, 2, ins) || !check_pair(name, input, target) || !check_reduction(name, reduction))
        return NULL;
    if (input->ndim != target->ndim || memcmp(input->shape, target->shape, sizeof(int64_t) * (size_t)input->ndim)) {
        char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
        return nd_fail(ND_ERR_SHAPE, "%s: target size %s must be the same as input size %s", name,
                       nd_shape_str(s1, sizeof s1, target->ndim, target->shape),
                       nd_shape_str(s2, sizeof s2, input->ndim, input->shape));
    }
    nd_composite_begin();
    nd_tensor *sp = nd_softplus(nd_neg(input), 1.0, 20.0);
    nd_tensor *coef = pos_weight ? nd_add_scalar(nd_mul(nd_sub_scalar(pos_weight, 1.0), target), 1.0) : NULL;
    nd_tensor *losses = nd_add(nd_mul(nd_rsub_scalar(1.0, target), input), coef ? nd_mul(coef, sp) : sp);
    if (weight)
        losses = nd_mul(losses, weight);
    return nd_composite_end(nd_name_grad_fn(reduce_loss(name, losses, reduction), "BinaryCrossEntropyWithLogitsBackward0", 2, ins));
}

/* Moves the class dim (1) of [N, C, d...] last: [N, d..., C]; a [C] input stays as it is. */
static nd_tensor *classes_last(nd_tensor *input)
{
    if (input->ndim <= 2)
        return input;
    int64_t perm[ND_MAX_DIMS];
    int k = 0;
    perm[k++] = 0;
    for (int i = 2; i < input->ndim; i++)
        perm[k++] = i;
    perm[k++] = 1;
    return nd_permute(input, input->ndim, perm);
}

/* Checks the target against [N, C, d...] / [C] input; out: class count. */
static bool check_class_target(const char *name, const nd_tensor *input, const nd_tensor *target, int64_t ignore_index,
                               int64_t *classes)
{
    char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
    if (target->dtype != ND_INT64) {
        nd_fail(ND_ERR_DTYPE, "%s: expected an int64 class-index target, got %s", name, nd_dtype_name(target->dtype));
        return false;
    }
    if (input->ndim < 1) {
        nd_fail(ND_ERR_SHAPE, "%s: the input must have a class dim; got a 0-d tensor", name);
        return false;
    }
    bool ok;
    if (input->ndim == 1) {
        ok = target->ndim == 0;
        *classes = input->shape[0];
    } else {
        ok = target->ndim == input->ndim - 1 && target->shape[0] == input->shape[0];
        for (int i = 2; ok && i < input->ndim; i++)
            ok = target->shape[i - 1] == input->shape[i];
        *classes = input->shape[1];
    }
    if (!ok) {
        nd_fail(ND_ERR_SHAPE, "%s: expected a target of shape [N, d...] for an input [N, C, d...] (or 0-d for [C]); got "
                "input %s and target %s", name, nd_shape_str(s1, sizeof s1, input->ndim, input->shape),
                nd_shape_str(s2, sizeof s2, target->ndim, target->shape));
        return false;
    }
    int64_t n = nd_numel(target);
    for (int64_t i = 0; i < n; i++) {
        int64_t v = *(const int64_t *)nd_elem_ptr(target, i);
        if (v != ignore_index && (v < 0 || v >= *classes)) {
            nd_fail(ND_ERR_INDEX, "%s: target %lld is out of bounds for %lld classes", name, (long long)v, (long long)*classes);
            return false;
        }
    }
    return true;
}

/* The pieces shared by nll_loss and cross_entropy: per-element weights w (0 at ignored targets,
 * weight[target] or 1 elsewhere), and the picked log-probabilities. */
typedef struct class_terms {
    nd_tensor *logp_last; /* [.., C] */
    nd_tensor *safe_target;
    nd_tensor *w;         /* target-shaped weights */
    nd_tensor *picked;    /* target-shaped log p[target] */
} class_terms;

static bool class_terms_make(nd_tensor *logp, nd_tensor *target, nd_tensor *weight, int64_t ignore_index, class_terms *ct)
{
    int64_t n = nd_numel(target);
    nd_tensor *safe = nd_alloc(ND_INT64, target->ndim, target->shape, false);
    nd_tensor *keep = safe ? nd_alloc(logp->dtype, target->ndim, target->shape, false) : NULL;
    if (!keep) {
        nd_unref(safe);
        return false;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t v = *(const int64_t *)nd_elem_ptr(target, i);
        ((int64_t *)safe->storage->data)[i] = v == ignore_index ? 0 : v;
        nd_store((char *)keep->storage->data + i * (int64_t)nd_dtype_size(keep->dtype), keep->dtype,
                 v == ignore_index ? 0.0 : 1.0);
    }
    nd_register(safe);
    nd_register(keep);
    ct->safe_target = safe;
    ct->logp_last = classes_last(logp);
    ct->picked = nd_squeeze_dim(nd_gather(ct->logp_last, -1, nd_unsqueeze(safe, -1)), -1);
    ct->w = keep;
    if (weight) {
        int64_t flat = n;
        nd_tensor *wsel = nd_index_select(nd_to(weight, logp->dtype), 0, nd_reshape(safe, 1, &flat));
        ct->w = nd_mul(nd_reshape(wsel, target->ndim, target->shape), keep);
    }
    return ct->picked && ct->w;
}

static bool check_weight(const char *name, const nd_tensor *weight, int64_t classes)
{
    if (weight && (weight->ndim != 1 || weight->shape[0] != classes || !nd_dtype_is_float(weight->dtype))) {
        char b[ND_SHAPE_BUF];
        nd_fail(ND_ERR_SHAPE, "%s: weight must be a float tensor of shape [%lld], got %s %s", name, (long long)classes,
                nd_dtype_name(weight->dtype), nd_shape_str(b, sizeof b, weight->ndim, weight->shape));
        return false;
    }
    return true;
}

/* The mean reduction of per-element losses by their total weight. When every target is ignored
 * the loss is NaN (0/0, as PyTorch) but the gradient is 0: the weights are normalised by a total
 * that is never 0, and the NaN is added as a constant. */
static nd_tensor *weighted_mean(nd_tensor *weighted_losses_unnormalised, nd_tensor *w)
{
    nd_tensor *total = nd_sum(w);
    if (!total)
        return NULL;
    bool empty = nd_item(total) == 0;
    nd_tensor *safe_total = empty ? nd_add_scalar(total, 1.0) : total;
    nd_tensor *mean = nd_div(nd_sum(weighted_losses_unnormalised), safe_total);
    return empty ? nd_add_scalar(mean, NAN) : mean;
}

/* PyTorch's grad_fn for nll_loss (and cross_entropy without smoothing): NllLoss for [C] and
 * [N, C] inputs, NllLoss2d for more dims (other than 4 they are reshaped to 4 and back, so their
 * unreduced losses come out of a view). */
static const char *nll_grad_fn_name(const nd_tensor *input, nd_reduction reduction)
{
    if (input->ndim <= 2)
        return "NllLossBackward0";
    return reduction == ND_REDUCTION_NONE && input->ndim != 4 ? "ViewBackward0" : "NllLoss2DBackward0";
}

/* nll_loss on log-probabilities: -w[t] logp[t], mean divides by Σ w over non-ignored targets. */
nd_tensor *nd_nll_loss(nd_tensor *input, nd_tensor *target, nd_tensor *weight, int64_t ignore_index,
                       nd_reduction reduction)
{
    const char *name = "nd_nll_loss";
    nd_tensor *ins[2] = {input, target};
    int64_t classes;
    if (!nd_check_inputs(name, 2, ins) || !require_float(name, input, "the input") ||
        !check_class_target(name, input, target, ignore_index, &classes) || !check_weight(name, weight, classes) ||
        !check_reduction(name, reduction))
        return NULL;
    nd_composite_begin();
    class_terms ct;
    if (!class_terms_make(input, target, weight, ignore_index, &ct))
        return nd_composite_end(NULL);
    nd_tensor *losses = nd_neg(nd_mul(ct.picked, ct.w));
    nd_tensor *out = reduction == ND_REDUCTION_NONE ? losses
                   : reduction == ND_REDUCTION_SUM  ? nd_sum(losses)
                                                    : weighted_mean(losses, ct.w);
    return nd_composite_end(nd_name_grad_fn(out, nll_grad_fn_name(input, reduction), 2, ins));
}

/* cross_entropy of [N, C] logits against class indices, without class weights or smoothing and
 * reduced to a sum or mean: one op whose kernel takes each row's log-sum-exp once. Saves the
 * row maxima and log-sum-exps.  dx = g s (softmax(x) - one_hot(t)) on rows whose target is not ignore_index, with
 * s = 1 / (rows counted) for the mean and 1 for the sum.  iparams: ignore_index;  dparams: s. */
static nd_tensor *cross_entropy_fused(nd_tensor *input, nd_tensor *target, int64_t ignore_index, nd_reduction reduction)
{
    int64_t rows = input->shape[0], classes = input->shape[1];
    nd_tensor *xd = nd_dense(input), *td = nd_dense(target);
    nd_tensor *lse = xd && td ? nd_alloc(input->dtype, 2, (const int64_t[]){rows, 2}, false) : NULL;
    nd_tensor *loss = lse ? nd_alloc(input->dtype, 1, &rows, false) : NULL;
    nd_tensor *out = loss ? nd_alloc(input->dtype, 0, NULL, false) : NULL;
    int64_t counted = 0;
    double total = 0;
    if (out && rows > 0 && classes > 0) {
        nd_backend_get()->cross_entropy_forward(input->dtype, rows, classes, nd_data_ptr(xd), nd_data_ptr(td), ignore_index,
                                                nd_data_ptr(lse), nd_data_ptr(loss));
        const int64_t *t = nd_data_ptr(td);
        for (int64_t r = 0; r < rows; r++) { /* in row order: the same sum at any thread count */
            counted += t[r] != ignore_index;
            total += nd_load((const char *)nd_data_ptr(loss) + r * (int64_t)nd_dtype_size(input->dtype), input->dtype);
        }
    }
    bool mean = reduction == ND_REDUCTION_MEAN;
    if (out)
        nd_store(nd_data_ptr(out), input->dtype, mean ? (counted ? total / (double)counted : NAN) : total);
    if (xd != input)
        nd_unref(xd);
    if (td != target)
        nd_unref(td);
    nd_unref(loss);
    if (!out) {
        nd_unref(lse);
        return NULL;
    }
    nd_tensor *ins[2] = {input, target};
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_CROSS_ENTROPY, 2, ins, &node);
    if (node) {
        node->iparams[0] = ignore_index;
        node->dparams[0] = mean ? 1.0 / (double)(counted ? counted : 1) : 1.0;
    }
    nd_node_keep(node, 0, lse);
    return out;
}

nd_status nd_bw_cross_entropy(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *x = node->inputs[0], *target = node->inputs[1];
    int64_t ignore_index = node->iparams[0], rows = x->shape[0], classes = x->shape[1];
    double s = node->dparams[0];
    if (!x->requires_grad)
        return ND_OK;
    if (!nd_is_grad_enabled()) {
        nd_tensor *xd = nd_dense(x), *td = nd_dense(target);
        nd_tensor *dx = xd && td ? nd_alloc(x->dtype, 2, x->shape, rows == 0 || classes == 0) : NULL;
        if (dx && rows > 0 && classes > 0)
            nd_backend_get()->cross_entropy_backward(x->dtype, rows, classes, nd_data_ptr(xd), nd_data_ptr(td), ignore_index,
                                                     nd_data_ptr(node->saved[0]), nd_item(g) * s, nd_data_ptr(dx));
        if (xd != x)
            nd_unref(xd);
        if (td != target)
            nd_unref(td);
        gi[0] = nd_register(dx);
        return dx ? ND_OK : nd_last_status();
    }
    /* Recording a graph of the backward: (softmax(x) - one_hot) kept rows, times g s. */
    nd_tensor *hot = nd_register(nd_alloc(x->dtype, 2, x->shape, true));
    nd_tensor *keep = nd_register(nd_alloc(x->dtype, 2, (const int64_t[]){rows, 1}, true));
    nd_tensor *td = hot && keep ? nd_dense(target) : NULL;
    if (!td)
        return nd_last_status();
    const int64_t *t = nd_data_ptr(td);
    for (int64_t r = 0; r < rows; r++)
        if (t[r] != ignore_index) {
            nd_store((char *)nd_data_ptr(hot) + (r * classes + t[r]) * (int64_t)nd_dtype_size(x->dtype), x->dtype, 1.0);
            nd_store((char *)nd_data_ptr(keep) + r * (int64_t)nd_dtype_size(x->dtype), x->dtype, 1.0);
        }
    if (td != target)
        nd_unref(td);
    gi[0] = nd_mul(nd_mul(nd_sub(nd_softmax(x, 1), hot), keep), nd_mul_scalar(g, s));
    return gi[0] ? ND_OK : nd_last_status();
}

/* cross_entropy from logits with class-index targets: log_softmax over the class dim, then
 * (1 - ε) nll + ε/C · smooth, smooth = -Σ_c w_c logp_c at non-ignored positions, reduced like
 * the nll part (PyTorch's label_smoothing). */
nd_tensor *nd_cross_entropy(nd_tensor *input, nd_tensor *target, nd_tensor *weight, int64_t ignore_index,
                            nd_reduction reduction, double label_smoothing)
{
    const char *name = "nd_cross_entropy";
    nd_tensor *ins[2] = {input, target};
    int64_t classes;
    if (!nd_check_inputs(name, 2, ins) || !require_float(name, input, "the input") ||
        !check_class_target(name, input, target, ignore_index, &classes) || !check_weight(name, weight, classes) ||
        !check_reduction(name, reduction))
        return NULL;
    if (!(label_smoothing >= 0 && label_smoothing <= 1))
        return nd_fail(ND_ERR_VALUE, "%s: label_smoothing must be between 0.0 and 1.0, got %g", name, label_smoothing);
    if (input->ndim == 2 && !weight && label_smoothing == 0 && reduction != ND_REDUCTION_NONE)
        return cross_entropy_fused(input, target, ignore_index, reduction);
    nd_composite_begin();
    nd_tensor *logp = nd_log_softmax(input, input->ndim == 1 ? 0 : 1);
    class_terms ct;
    if (!logp || !class_terms_make(logp, target, weight, ignore_index, &ct))
        return nd_composite_end(NULL);
    nd_tensor *nll = nd_neg(nd_mul(ct.picked, ct.w));
    nd_tensor *out;
    if (label_smoothing > 0) {
        nd_tensor *lp = ct.logp_last;
        if (weight)
            lp = nd_mul(lp, nd_to(weight, lp->dtype));
        nd_tensor *keep = nd_mask(ND_BIN_NE, nd_to(target, lp->dtype), (double)ignore_index, lp->dtype);
        nd_tensor *smooth = nd_mul(nd_neg(nd_sum_dims(lp, 1, (const int64_t[]){-1}, false)), keep);
        nd_tensor *mix = nd_add(nd_mul_scalar(nll, 1.0 - label_smoothing), nd_mul_scalar(smooth, label_smoothing / (double)classes));
        out = reduction == ND_REDUCTION_NONE ? mix : reduction == ND_REDUCTION_SUM ? nd_sum(mix) : weighted_mean(mix, ct.w);
    } else {
        out = reduction == ND_REDUCTION_NONE ? nll : reduction == ND_REDUCTION_SUM ? nd_sum(nll) : weighted_mean(nll, ct.w);
    }
    /* PyTorch mixes the smoothed loss in with an add; without smoothing it is nll_loss's */
    return nd_composite_end(nd_name_grad_fn(out, label_smoothing > 0 ? "AddBackward0" : nll_grad_fn_name(input, reduction), 2, ins));
}

/* dropout: zero each element with probability p, scale the rest by 1/(1-p); identity in eval
 * mode. The mask comes from the calling thread's seeded generator. */
nd_tensor *nd_dropout(nd_tensor *t, double p, bool training)
{
    const char *name = "nd_dropout";
    if (!t)
        return nd_fail_null(name, 0);
    if (!(p >= 0 && p <= 1))
        return nd_fail(ND_ERR_VALUE, "%s: dropout probability has to be between 0 and 1, but got %g", name, p);
    if (!require_float(name, t, "the input"))
        return NULL;
    if (!training || p == 0)
        return nd_return_same(t);
    nd_tensor *mask = nd_alloc(t->dtype, t->ndim, t->shape, false);
    if (!mask)
        return NULL;
    int64_t n = nd_numel(mask);
    double scale = p == 1 ? 0.0 : 1.0 / (1.0 - p);
    for (int64_t i = 0; i < n; i++)
        nd_store((char *)mask->storage->data + i * (int64_t)nd_dtype_size(t->dtype), t->dtype,
                 nd_rng_uniform() >= p ? scale : 0.0);
    nd_composite_begin();
    nd_tensor *out = nd_mul(t, nd_register(mask));
    return nd_composite_end(out);
}

/* Scaled dot-product attention: softmax(q kᵀ · scale + mask) v over the last two dims.
 * attn_mask: bool (true = may attend) or float (added), broadcast to [.., L, S]; is_causal masks
 * the upper triangle; scale <= 0 means 1/√E. */
/* softmax(q kᵀ scale) with the causal mask (query i sees keys 0..i) or a bool mask (true = may
 * attend) or a float mask added to the scores: the attention weights, in differentiable ops. */
static nd_tensor *attention_weights(nd_tensor *q, nd_tensor *k, nd_tensor *attn_mask, bool is_causal, double sc)
{
    int64_t L = q->shape[q->ndim - 2], S = k->shape[k->ndim - 2];
    nd_tensor *scores = nd_mul_scalar(nd_matmul(q, nd_transpose(k, -2, -1)), sc);
    nd_tensor *blocked = NULL;
    if (is_causal) {
        int64_t shape[2] = {L, S};
        blocked = nd_gt(nd_triu(nd_ones(ND_FLOAT32, 2, shape), 1), nd_register(nd_k_wrapped_scalar(0.0, ND_FLOAT32)));
    } else if (attn_mask && attn_mask->dtype == ND_BOOL) {
        blocked = nd_eq(attn_mask, nd_register(nd_k_wrapped_scalar(0.0, ND_BOOL)));
    } else if (attn_mask) {
        scores = nd_add(scores, attn_mask);
    }
    if (blocked)
        scores = nd_masked_fill(scores, blocked, -INFINITY);
    return nd_softmax(scores, -1);
}

/* The fused kernel's geometry: q, k, v of one float dtype, non-empty, batch dims that broadcast
 * together. False when the case is not one the kernel takes (then the op is composed instead). */
/* A fresh tensor of `shape` laid out in memory in the order of `like`'s dims (its strides sorted,
 * the last dim innermost), when like has that shape and a unit last stride; dense otherwise. An
 * attention's heads are usually cut from one [B, T, 3C] tensor, so q is [B, H, T, D] over a
 * [B, T, H, D] layout: its output and gradients made that way need no copy to go back to [B, T, C]
 * (PyTorch's own CPU attention returns its output so too). Unregistered; NULL when out of memory. */
static nd_tensor *alloc_in_layout_of(const nd_tensor *like, nd_dtype dtype, int ndim, const int64_t *shape)
{
    if (like->ndim != ndim || like->strides[ndim - 1] != 1 || memcmp(like->shape, shape, sizeof(int64_t) * (size_t)ndim))
        return nd_alloc(dtype, ndim, shape, false);
    int order[ND_MAX_DIMS]; /* dims from outermost to innermost */
    for (int d = 0; d < ndim; d++)
        order[d] = d;
    for (int a = 1; a < ndim - 1; a++) /* insertion sort of the leading dims by descending stride */
        for (int b = a; b > 0 && like->strides[order[b]] > like->strides[order[b - 1]]; b--) {
            int t = order[b];
            order[b] = order[b - 1], order[b - 1] = t;
        }
    int64_t strides[ND_MAX_DIMS], n = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[order[i]] = n;
        n *= shape[order[i]];
    }
    nd_tensor *flat = nd_alloc(dtype, 1, &n, false);
    nd_tensor *view = flat ? nd_alias(flat, ndim, shape, strides, 0) : NULL;
    nd_unref(flat);
    return view;
}

/* The batch strides and row stride of t (of the full batch shape) into the geometry's list. */
static void result_strides(const nd_attention_geometry *g, const nd_tensor *t, int64_t *out)
{
    for (int d = 0; d < g->nbatch + 2; d++)
        out[d] = t->strides[d];
}

static bool attention_geometry(nd_tensor *q, nd_tensor *k, nd_tensor *v, bool causal, double scale,
                               nd_attention_geometry *g)
{
    if (q->dtype != k->dtype || q->dtype != v->dtype || !nd_dtype_is_float(q->dtype) || nd_numel(q) == 0 ||
        nd_numel(k) == 0 || nd_numel(v) == 0)
        return false;
    int nb, nb2;
    int64_t b1[ND_MAX_DIMS], b2[ND_MAX_DIMS];
    if (!nd_broadcast_shapes(q->ndim - 2, q->shape, k->ndim - 2, k->shape, &nb, b1) ||
        !nd_broadcast_shapes(nb, b1, v->ndim - 2, v->shape, &nb2, b2))
        return false;
    memset(g, 0, sizeof *g);
    g->nbatch = nb2;
    memcpy(g->batch, b2, sizeof(int64_t) * (size_t)nb2);
    nd_tensor *ts[3] = {q, k, v};
    int64_t *strides[3] = {g->q_strides, g->k_strides, g->v_strides};
    for (int t = 0; t < 3; t++) {
        int lead = nb2 - (ts[t]->ndim - 2);
        for (int d = 0; d < nb2; d++) {
            int src = d - lead;
            strides[t][d] = src < 0 || ts[t]->shape[src] == 1 ? 0 : ts[t]->strides[src];
        }
        strides[t][nb2] = ts[t]->strides[ts[t]->ndim - 2];
        strides[t][nb2 + 1] = ts[t]->strides[ts[t]->ndim - 1];
    }
    g->L = q->shape[q->ndim - 2], g->S = k->shape[k->ndim - 2];
    g->E = q->shape[q->ndim - 1], g->Ev = v->shape[v->ndim - 1];
    g->scale = scale;
    g->causal = causal;
    return true;
}

/* One op: the fused kernel, saving only each row's log-sum-exp (the backward recomputes the
 * weights), so no L x S tensor is made or kept.  iparams: causal;  dparams: scale. */
static nd_tensor *attention_fused(const char *name, nd_tensor *q, nd_tensor *k, nd_tensor *v, nd_attention_geometry *g)
{
    int64_t shape[ND_MAX_DIMS];
    memcpy(shape, g->batch, sizeof(int64_t) * (size_t)g->nbatch);
    shape[g->nbatch] = g->L, shape[g->nbatch + 1] = g->Ev;
    nd_tensor *out = alloc_in_layout_of(q, q->dtype, g->nbatch + 2, shape);
    nd_tensor *lse = out ? nd_alloc(q->dtype, g->nbatch + 1, shape, false) : NULL;
    if (out)
        result_strides(g, out, g->out_strides);
    if (!lse || !nd_backend_get()->attention_forward(q->dtype, g, nd_data_ptr(q), nd_data_ptr(k), nd_data_ptr(v), nd_data_ptr(out),
                                                     nd_data_ptr(lse))) {
        nd_unref(out);
        nd_unref(lse);
        return lse ? nd_fail(ND_ERR_NOMEM, "%s: out of memory for the score rows", name) : NULL;
    }
    nd_tensor *ins[3] = {q, k, v};
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_ATTENTION, 3, ins, &node);
    if (node) {
        node->iparams[0] = g->causal;
        node->dparams[0] = g->scale;
    }
    nd_node_keep(node, 0, lse);
    return out;
}

/* dV = Pᵀ g;  dP = g Vᵀ;  dS = P (dP - Σ_j P dP) scale;  dQ = dS K;  dK = dSᵀ Q (each summed down
 * to its input's batch shape). Fused unless a graph of the backward is being recorded. */
nd_status nd_bw_attention(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *q = node->inputs[0], *k = node->inputs[1], *v = node->inputs[2];
    bool causal = node->iparams[0] != 0;
    double scale = node->dparams[0];
    nd_tensor *dq, *dk, *dv;
    if (!nd_is_grad_enabled()) {
        nd_attention_geometry geo;
        attention_geometry(q, k, v, causal, scale, &geo);
        int64_t shape[ND_MAX_DIMS];
        memcpy(shape, geo.batch, sizeof(int64_t) * (size_t)geo.nbatch);
        int nd = geo.nbatch + 2;
        /* gradients laid out as their inputs (no copy on the way back to a packed q, k, v) */
        shape[nd - 2] = geo.L, shape[nd - 1] = geo.E;
        dq = nd_register(alloc_in_layout_of(q, q->dtype, nd, shape));
        shape[nd - 2] = geo.S;
        dk = nd_register(alloc_in_layout_of(k, q->dtype, nd, shape));
        shape[nd - 1] = geo.Ev;
        dv = nd_register(alloc_in_layout_of(v, q->dtype, nd, shape));
        /* the output gradient is read in place when its columns are adjacent (a transposed view of
         * the next layer's dense gradient, usually); copied otherwise */
        nd_tensor *gc = g->strides[nd - 1] == 1 ? g : nd_k_copy(g, g->dtype);
        if (!dq || !dk || !dv || !gc) {
            if (gc && gc != g)
                nd_unref(gc);
            return nd_last_status();
        }
        result_strides(&geo, gc, geo.dout_strides);
        result_strides(&geo, dq, geo.dq_strides);
        result_strides(&geo, dk, geo.dk_strides);
        result_strides(&geo, dv, geo.dv_strides);
        bool ok = nd_backend_get()->attention_backward(q->dtype, &geo, nd_data_ptr(q), nd_data_ptr(k), nd_data_ptr(v),
                                                       nd_data_ptr(node->saved[0]), nd_data_ptr(gc), nd_data_ptr(dq),
                                                       nd_data_ptr(dk), nd_data_ptr(dv));
        if (gc != g)
            nd_unref(gc);
        if (!ok)
            return nd_fail_status(ND_ERR_NOMEM, "nd_scaled_dot_product_attention backward: out of memory for the score rows");
    } else {
        nd_tensor *p = attention_weights(q, k, NULL, causal, scale);
        int64_t last[1] = {p ? p->ndim - 1 : 0};
        dv = nd_matmul(nd_transpose(p, -2, -1), g);
        nd_tensor *dp = nd_matmul(g, nd_transpose(v, -2, -1));
        nd_tensor *ds = nd_mul_scalar(nd_mul(p, nd_sub(dp, nd_sum_dims(nd_mul(dp, p), 1, last, true))), scale);
        dq = nd_matmul(ds, k);
        dk = nd_matmul(nd_transpose(ds, -2, -1), q);
        if (!dq || !dk || !dv)
            return nd_last_status();
    }
    gi[0] = q->requires_grad ? nd_reduce_grad(dq, q) : NULL;
    gi[1] = k->requires_grad ? nd_reduce_grad(dk, k) : NULL;
    gi[2] = v->requires_grad ? nd_reduce_grad(dv, v) : NULL;
    if ((q->requires_grad && !gi[0]) || (k->requires_grad && !gi[1]) || (v->requires_grad && !gi[2]))
        return nd_last_status();
    return ND_OK;
}

nd_tensor *nd_scaled_dot_product_attention(nd_tensor *q, nd_tensor *k, nd_tensor *v, nd_tensor *attn_mask,
                                           double dropout_p, bool is_causal, double scale)
{
    const char *name = "nd_scaled_dot_product_attention";
    nd_tensor *ins[3] = {q, k, v};
    if (!nd_check_inputs(name, 3, ins))
        return NULL;
    char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF], s3[ND_SHAPE_BUF];
    if (q->ndim < 2 || k->ndim < 2 || v->ndim < 2 || q->shape[q->ndim - 1] != k->shape[k->ndim - 1] ||
        k->shape[k->ndim - 2] != v->shape[v->ndim - 2])
        return nd_fail(ND_ERR_SHAPE, "%s: expected q [.., L, E], k [.., S, E], v [.., S, Ev]; got %s, %s, %s", name,
                       nd_shape_str(s1, sizeof s1, q->ndim, q->shape), nd_shape_str(s2, sizeof s2, k->ndim, k->shape),
                       nd_shape_str(s3, sizeof s3, v->ndim, v->shape));
    if (is_causal && attn_mask)
        return nd_fail(ND_ERR_VALUE, "%s: pass either attn_mask or is_causal, not both", name);
    if (!(dropout_p >= 0 && dropout_p <= 1))
        return nd_fail(ND_ERR_VALUE, "%s: dropout_p must be in [0, 1], got %g", name, dropout_p);
    double sc = scale > 0 ? scale : 1.0 / sqrt((double)q->shape[q->ndim - 1]);
    nd_attention_geometry geo;
    if (!attn_mask && dropout_p == 0 && attention_geometry(q, k, v, is_causal, sc, &geo))
        return attention_fused(name, q, k, v, &geo);
    nd_composite_begin();
    nd_tensor *attn = attention_weights(q, k, attn_mask, is_causal, sc);
    if (dropout_p > 0)
        attn = nd_dropout(attn, dropout_p, true);
    return nd_composite_end(nd_matmul(attn, v));
}

/* ------------------------------------------------------------------ gradient clipping */

nd_status nd_global_norm(int n, nd_tensor *const *tensors, double *norm)
{
    const char *name = "nd_global_norm";
    if (n < 0 || (n > 0 && !tensors) || !norm)
        return nd_fail_status(ND_ERR_NULL, "%s: needs a tensor list and an output pointer", name);
    double total = 0;
    for (int i = 0; i < n; i++) {
        const nd_tensor *t = tensors[i];
        if (!t)
            continue; /* parameters without a gradient simply do not count */
        int64_t m = nd_numel(t);
        for (int64_t j = 0; j < m; j++) {
            double v = nd_load(nd_elem_ptr(t, j), t->dtype);
            total += v * v;
        }
    }
    *norm = sqrt(total);
    return ND_OK;
}

nd_status nd_clip_grad_norm(int n, nd_tensor *const *params, double max_norm, double *total_norm)
{
    const char *name = "nd_clip_grad_norm";
    if (n < 0 || (n > 0 && !params))
        return nd_fail_status(ND_ERR_NULL, "%s: needs a parameter list", name);
    if (!(max_norm > 0))
        return nd_fail_status(ND_ERR_VALUE, "%s: max_norm must be positive, got %g", name, max_norm);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        const nd_tensor *g = params[i] ? params[i]->grad : NULL;
        for (int64_t j = 0, m = g ? nd_numel(g) : 0; j < m; j++) {
            double v = nd_load(nd_elem_ptr(g, j), g->dtype);
            sum += v * v;
        }
    }
    double total = sqrt(sum);
    if (total_norm)
        *total_norm = total;
    double coef = max_norm / (total + 1e-6); /* PyTorch's clip coefficient */
    for (int i = 0; coef < 1 && i < n; i++) {
        nd_tensor *g = params[i] ? params[i]->grad : NULL;
        if (!g)
            continue;
        int64_t m = nd_numel(g);
        for (int64_t j = 0; j < m; j++) {
            char *p = nd_elem_ptr(g, j);
            nd_store(p, g->dtype, nd_load(p, g->dtype) * coef);
        }
        nd_bump_version(g);
    }
    return ND_OK;
}

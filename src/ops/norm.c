/* Normalisation layers built from differentiable ops: layer_norm, batch_norm (with running
 * statistics), group_norm and rms_norm. Their gradients follow from the ops they are made of. */
#include "ops/common.h"

#include <string.h>

static bool float_input(const char *name, const nd_tensor *t)
{
    if (!nd_dtype_is_float(t->dtype)) {
        nd_fail(ND_ERR_DTYPE, "%s: expected a floating point input, got %s", name, nd_dtype_name(t->dtype));
        return false;
    }
    return true;
}

/* The trailing dims of x must equal normalized_shape; fills dims with their indices. */
static bool trailing(const char *name, const nd_tensor *x, int n, const int64_t *normalized_shape, int64_t *dims)
{
    bool ok = n >= 1 && n <= x->ndim && normalized_shape;
    for (int i = 0; ok && i < n; i++)
        ok = x->shape[x->ndim - n + i] == normalized_shape[i];
    if (!ok) {
        char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
        nd_fail(ND_ERR_SHAPE, "%s: given normalized_shape=%s, expected an input whose trailing dims match it, but got "
                "input of size %s", name, nd_shape_str(s1, sizeof s1, n > 0 && normalized_shape ? n : 0, normalized_shape),
                nd_shape_str(s2, sizeof s2, x->ndim, x->shape));
        return false;
    }
    for (int i = 0; i < n; i++)
        dims[i] = x->ndim - n + i;
    return true;
}

static bool affine_shape(const char *name, const char *what, const nd_tensor *p, int n, const int64_t *shape)
{
    if (!p)
        return true;
    if (p->ndim != n || memcmp(p->shape, shape, sizeof(int64_t) * (size_t)n) != 0) {
        char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
        nd_fail(ND_ERR_SHAPE, "%s: %s of shape %s must have shape %s", name, what, nd_shape_str(s1, sizeof s1, p->ndim, p->shape),
                nd_shape_str(s2, sizeof s2, n, shape));
        return false;
    }
    return true;
}

/* layer_norm: (x - mean) / √(var + eps) · w + b over the trailing normalized_shape dims, with the
 * biased variance; one op with a one-pass kernel. Saves each row's mean and 1/std.
 * dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = g w;  dw = Σ g xhat;  db = Σ g
 * (sums over the leading dims). Fused when no graph of the backward is recorded, otherwise the
 * same formulas in differentiable ops.  iparams: n;  dparams: eps. */
nd_tensor *nd_layer_norm(nd_tensor *x, int n, const int64_t *normalized_shape, nd_tensor *weight, nd_tensor *bias,
                         double eps)
{
    const char *name = "nd_layer_norm";
    if (!x)
        return nd_fail_null(name, 0);
    int64_t dims[ND_MAX_DIMS];
    if (!float_input(name, x) || !trailing(name, x, n, normalized_shape, dims) ||
        !affine_shape(name, "weight", weight, n, normalized_shape) || !affine_shape(name, "bias", bias, n, normalized_shape))
        return NULL;
    if ((weight && weight->dtype != x->dtype) || (bias && bias->dtype != x->dtype))
        return nd_fail(ND_ERR_DTYPE, "%s: weight and bias must have the input's dtype (%s)", name, nd_dtype_name(x->dtype));
    int64_t d = nd_shape_numel(n, normalized_shape), rows = d ? nd_numel(x) / d : 0;
    nd_tensor *xc = nd_dense(x), *wc = nd_dense(weight), *bc = nd_dense(bias);
    nd_tensor *out = xc && (!weight || wc) && (!bias || bc) ? nd_alloc(x->dtype, x->ndim, x->shape, false) : NULL;
    nd_tensor *mean = out ? nd_alloc(x->dtype, 1, &rows, false) : NULL;
    nd_tensor *rstd = mean ? nd_alloc(x->dtype, 1, &rows, false) : NULL;
    if (rstd && rows > 0)
        nd_backend_get()->layer_norm_forward(x->dtype, rows, d, nd_data_ptr(xc), wc ? nd_data_ptr(wc) : NULL,
                                             bc ? nd_data_ptr(bc) : NULL, eps, nd_data_ptr(out), nd_data_ptr(mean),
                                             nd_data_ptr(rstd));
    if (xc != x)
        nd_unref(xc);
    if (wc != weight)
        nd_unref(wc);
    if (bc != bias)
        nd_unref(bc);
    if (!rstd) {
        nd_unref(out);
        nd_unref(mean);
        return NULL;
    }
    nd_tensor *ins[3] = {x, weight, bias};
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_LAYER_NORM, 3, ins, &node);
    if (node) {
        node->iparams[0] = n;
        node->dparams[0] = eps;
    }
    nd_node_keep(node, 0, mean);
    nd_node_keep(node, 1, rstd);
    return out;
}

nd_status nd_bw_layer_norm(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *x = node->inputs[0], *w = node->inputs[1], *b = node->inputs[2];
    int n = (int)node->iparams[0];
    int64_t d = nd_shape_numel(n, x->shape + x->ndim - n), rows = d ? nd_numel(x) / d : 0;
    bool want_x = x->requires_grad, want_w = w && w->requires_grad, want_b = b && b->requires_grad;
    if (!nd_is_grad_enabled()) {
        nd_tensor *xc = nd_dense(x), *wc = nd_dense(w), *gc = nd_dense(g);
        nd_tensor *dx = want_x ? nd_alloc(x->dtype, x->ndim, x->shape, false) : NULL;
        nd_tensor *dw = want_w ? nd_alloc(x->dtype, w->ndim, w->shape, false) : NULL;
        nd_tensor *db = want_b ? nd_alloc(x->dtype, b->ndim, b->shape, false) : NULL;
        bool ok = xc && (!w || wc) && gc && (!want_x || dx) && (!want_w || dw) && (!want_b || db);
        if (ok && rows > 0)
            nd_backend_get()->layer_norm_backward(x->dtype, rows, d, nd_data_ptr(xc), wc ? nd_data_ptr(wc) : NULL,
                                                  nd_data_ptr(gc), nd_data_ptr(node->saved[0]),
                                                  nd_data_ptr(node->saved[1]), dx ? nd_data_ptr(dx) : NULL,
                                                  dw ? nd_data_ptr(dw) : NULL, db ? nd_data_ptr(db) : NULL);
        if (ok && rows == 0) { /* nothing to sum: zero gradients for the affine parameters */
            if (dw)
                memset(dw->storage->data, 0, dw->storage->nbytes);
            if (db)
                memset(db->storage->data, 0, db->storage->nbytes);
        }
        if (xc != x)
            nd_unref(xc);
        if (wc != w)
            nd_unref(wc);
        if (gc != g)
            nd_unref(gc);
        gi[0] = nd_register(dx), gi[1] = nd_register(dw), gi[2] = nd_register(db);
        return ok ? ND_OK : nd_last_status();
    }
    /* Recording a graph of the backward: the same formulas in differentiable ops. */
    int64_t dims[ND_MAX_DIMS];
    for (int i = 0; i < n; i++)
        dims[i] = x->ndim - n + i;
    nd_tensor *centered = nd_sub(x, nd_mean_dims(x, n, dims, true));
    nd_tensor *rstd = nd_rsqrt(nd_add_scalar(nd_mean_dims(nd_square(centered), n, dims, true), node->dparams[0]));
    nd_tensor *xhat = nd_mul(centered, rstd);
    nd_tensor *dxhat = w ? nd_mul(g, w) : g;
    if (want_x) {
        nd_tensor *a = nd_mean_dims(dxhat, n, dims, true), *c = nd_mean_dims(nd_mul(dxhat, xhat), n, dims, true);
        if (!(gi[0] = nd_mul(rstd, nd_sub(nd_sub(dxhat, a), nd_mul(xhat, c)))))
            return nd_last_status();
    }
    if (want_w && !(gi[1] = nd_reduce_grad(nd_mul(g, xhat), w)))
        return nd_last_status();
    if (want_b && !(gi[2] = nd_reduce_grad(g, b)))
        return nd_last_status();
    return ND_OK;
}

/* rms_norm: x / √(mean(x²) + eps) · w over the trailing dims. */
nd_tensor *nd_rms_norm(nd_tensor *x, int n, const int64_t *normalized_shape, nd_tensor *weight, double eps)
{
    const char *name = "nd_rms_norm";
    if (!x)
        return nd_fail_null(name, 0);
    int64_t dims[ND_MAX_DIMS];
    if (!float_input(name, x) || !trailing(name, x, n, normalized_shape, dims) ||
        !affine_shape(name, "weight", weight, n, normalized_shape))
        return NULL;
    nd_composite_begin();
    nd_tensor *y = nd_mul(x, nd_rsqrt(nd_add_scalar(nd_mean_dims(nd_square(x), n, dims, true), eps)));
    return nd_composite_end(weight ? nd_mul(y, weight) : y);
}

/* A per-channel [C] tensor shaped to broadcast against [N, C, d...]. */
static nd_tensor *per_channel(nd_tensor *p, int ndim)
{
    int64_t shape[ND_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        shape[i] = i == 1 ? p->shape[0] : 1;
    return nd_reshape(p, ndim, shape);
}

/* batch_norm over [N, C, d...]: training uses the batch statistics (biased variance) and moves
 * the running ones by momentum (unbiased variance, updated in place without autograd); eval
 * uses the running statistics. */
nd_tensor *nd_batch_norm(nd_tensor *x, nd_tensor *running_mean, nd_tensor *running_var, nd_tensor *weight,
                         nd_tensor *bias, bool training, double momentum, double eps)
{
    const char *name = "nd_batch_norm";
    if (!x)
        return nd_fail_null(name, 0);
    if (!float_input(name, x))
        return NULL;
    if (x->ndim < 2) {
        char b[ND_SHAPE_BUF];
        return nd_fail(ND_ERR_SHAPE, "%s: expected an input [N, C, ...] with at least 2 dims, got %s", name,
                       nd_shape_str(b, sizeof b, x->ndim, x->shape));
    }
    int64_t C = x->shape[1];
    int64_t cshape[1] = {C};
    if (!affine_shape(name, "weight", weight, 1, cshape) || !affine_shape(name, "bias", bias, 1, cshape) ||
        !affine_shape(name, "running_mean", running_mean, 1, cshape) || !affine_shape(name, "running_var", running_var, 1, cshape))
        return NULL;
    if ((running_mean == NULL) != (running_var == NULL))
        return nd_fail(ND_ERR_VALUE, "%s: pass both running_mean and running_var, or neither", name);
    if (!training && !running_mean)
        return nd_fail(ND_ERR_VALUE, "%s: evaluation mode needs running_mean and running_var", name);
    int64_t dims[ND_MAX_DIMS];
    int nd = 0;
    int64_t count = 1;
    for (int i = 0; i < x->ndim; i++)
        if (i != 1)
            dims[nd++] = i, count *= x->shape[i];
    if (training && count <= 1) {
        char b[ND_SHAPE_BUF];
        return nd_fail(ND_ERR_VALUE, "%s: expected more than 1 value per channel when training, got input size %s", name,
                       nd_shape_str(b, sizeof b, x->ndim, x->shape));
    }
    nd_composite_begin();
    nd_tensor *mean, *var;
    if (training) {
        mean = nd_mean_dims(x, nd, dims, true);
        var = nd_mean_dims(nd_square(nd_sub(x, mean)), nd, dims, true);
        if (running_mean && mean && var) {
            nd_no_grad_begin();
            nd_tensor *m = nd_reshape(mean, 1, cshape);
            nd_tensor *v = nd_mul_scalar(nd_reshape(var, 1, cshape), (double)count / (double)(count - 1));
            nd_status st = nd_mul_(running_mean, nd_register(nd_k_wrapped_scalar(1.0 - momentum, ND_FLOAT64)));
            if (st == ND_OK)
                st = nd_add_(running_mean, nd_mul_scalar(m, momentum));
            if (st == ND_OK)
                st = nd_mul_(running_var, nd_register(nd_k_wrapped_scalar(1.0 - momentum, ND_FLOAT64)));
            if (st == ND_OK)
                st = nd_add_(running_var, nd_mul_scalar(v, momentum));
            nd_no_grad_end();
            if (st != ND_OK)
                return nd_composite_end(NULL);
        }
    } else {
        mean = per_channel(running_mean, x->ndim);
        var = per_channel(running_var, x->ndim);
    }
    nd_tensor *y = nd_mul(nd_sub(x, mean), nd_rsqrt(nd_add_scalar(var, eps)));
    if (weight)
        y = nd_mul(y, per_channel(weight, x->ndim));
    if (bias)
        y = nd_add(y, per_channel(bias, x->ndim));
    nd_tensor *ins[3] = {x, weight, bias};
    return nd_composite_end(nd_name_grad_fn(y, "NativeBatchNormBackward0", 3, ins));
}

/* group_norm over [N, C, d...]: channels split into groups normalised together, then a
 * per-channel affine transform. */
nd_tensor *nd_group_norm(nd_tensor *x, int64_t num_groups, nd_tensor *weight, nd_tensor *bias, double eps)
{
    const char *name = "nd_group_norm";
    if (!x)
        return nd_fail_null(name, 0);
    if (!float_input(name, x))
        return NULL;
    if (x->ndim < 2 || num_groups <= 0 || x->shape[1] % num_groups != 0) {
        char b[ND_SHAPE_BUF];
        return nd_fail(ND_ERR_SHAPE, "%s: expected an input [N, C, ...] with C divisible by num_groups (%lld), got %s", name,
                       (long long)num_groups, nd_shape_str(b, sizeof b, x->ndim, x->shape));
    }
    int64_t cshape[1] = {x->shape[1]};
    if (!affine_shape(name, "weight", weight, 1, cshape) || !affine_shape(name, "bias", bias, 1, cshape))
        return NULL;
    int64_t grouped[3] = {x->shape[0], num_groups, -1};
    const int64_t last[1] = {2};
    nd_composite_begin();
    nd_tensor *g = nd_reshape(x, 3, grouped);
    nd_tensor *centered = nd_sub(g, nd_mean_dims(g, 1, last, true));
    nd_tensor *var = nd_mean_dims(nd_square(centered), 1, last, true);
    nd_tensor *y = nd_reshape(nd_mul(centered, nd_rsqrt(nd_add_scalar(var, eps))), x->ndim, x->shape);
    if (weight)
        y = nd_mul(y, per_channel(weight, x->ndim));
    if (bias)
        y = nd_add(y, per_channel(bias, x->ndim));
    nd_tensor *ins[3] = {x, weight, bias};
    return nd_composite_end(nd_name_grad_fn(y, "NativeGroupNormBackward0", 3, ins));
}

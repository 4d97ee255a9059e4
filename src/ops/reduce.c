/* Sum and mean, over all elements or a list of dims, forward and backward.
 * Float inputs accumulate in float64 and integer/bool inputs in int64, so the result does not
 * depend on the order of a long float32 sum beyond the final rounding. */
#include "ops/common.h"

#include <math.h>

/* sum:  out = Σ over reduced dims.  da = g reshaped with the reduced dims as size 1, expanded
 * to a's shape.  mean: the same divided by the count.  iparams: [keepdim, mask of reduced dims]. */
static nd_tensor *reduce(const char *name, nd_op op, nd_tensor *t, int ndims, const int64_t *dims, bool keepdim,
                         bool all, bool mean)
{
    if (!t)
        return nd_fail_null(name, 0);
    bool mask[ND_MAX_DIMS];
    if (all || ndims == 0) {
        for (int i = 0; i < ND_MAX_DIMS; i++)
            mask[i] = i < t->ndim;
    } else if (!nd_dims_mask(name, t->ndim, ndims, dims, mask)) {
        return NULL;
    }
    if (mean && !nd_dtype_is_float(t->dtype))
        return nd_fail(ND_ERR_DTYPE, "%s: could not infer output dtype; input dtype must be floating point, got %s",
                       name, nd_dtype_name(t->dtype));
    nd_dtype out_dtype = nd_dtype_is_float(t->dtype) ? t->dtype : ND_INT64;
    nd_dtype acc_dtype = nd_dtype_is_float(t->dtype) ? ND_FLOAT64 : ND_INT64;

    int64_t keep_shape[ND_MAX_DIMS], out_shape[ND_MAX_DIMS];
    int out_ndim = 0;
    int64_t count = 1;
    for (int i = 0; i < t->ndim; i++) {
        keep_shape[i] = mask[i] ? 1 : t->shape[i];
        if (mask[i])
            count *= t->shape[i];
        if (!mask[i] || keepdim)
            out_shape[out_ndim++] = keep_shape[i];
    }
    if (all)
        out_ndim = 0;

    nd_tensor *acc = nd_alloc(acc_dtype, t->ndim, keep_shape, true);
    nd_tensor *out = acc ? nd_alloc(out_dtype, out_ndim, out_shape, false) : NULL;
    if (!out) {
        nd_unref(acc);
        return NULL;
    }
    int64_t acc_strides[ND_MAX_DIMS];
    nd_broadcast_strides(acc, t->ndim, t->shape, acc_strides);
    char *ptrs[2] = {nd_data_ptr(acc), nd_data_ptr(t)};
    const int64_t *strides[2] = {acc_strides, t->strides};
    size_t sizes[2] = {8, nd_dtype_size(t->dtype)};
    nd_iter it;
    nd_iter_init(&it, t->ndim, t->shape, 2, ptrs, strides, sizes);
    nd_backend_get()->accumulate(t->dtype, &it);
    if (mean) {
        double *d = acc->storage->data;
        int64_t n = nd_numel(acc);
        for (int64_t i = 0; i < n; i++)
            d[i] = count ? d[i] / (double)count : NAN;
    }
    /* acc is dense with the same element order as out: copy through out's geometry. */
    nd_tensor *acc_view = nd_alias(acc, out_ndim, out_shape, out->strides, 0);
    if (acc_view)
        nd_k_copy_into(out, acc_view);
    nd_unref(acc_view);
    nd_unref(acc);
    if (!acc_view) {
        nd_unref(out);
        return NULL;
    }
    nd_node *node = NULL;
    out = nd_finish(out, op, 1, &t, &node);
    if (node) {
        node->iparams[0] = keepdim || all;
        for (int i = 0; i < t->ndim; i++)
            node->iparams[1 + i] = mask[i];
        node->dparams[0] = (double)count;
    }
    return out;
}

nd_tensor *nd_sum(nd_tensor *t) { return reduce("nd_sum", ND_OP_SUM, t, 0, NULL, false, true, false); }
nd_tensor *nd_mean(nd_tensor *t) { return reduce("nd_mean", ND_OP_MEAN, t, 0, NULL, false, true, true); }

nd_tensor *nd_sum_dims(nd_tensor *t, int ndims, const int64_t *dims, bool keepdim)
{
    return reduce("nd_sum_dims", ND_OP_SUM_DIMS, t, ndims, dims, keepdim, false, false);
}

nd_tensor *nd_mean_dims(nd_tensor *t, int ndims, const int64_t *dims, bool keepdim)
{
    return reduce("nd_mean_dims", ND_OP_MEAN_DIMS, t, ndims, dims, keepdim, false, true);
}

/* The output gradient laid back over the input's shape. */
static nd_tensor *expand_back(nd_node *node, nd_tensor *g)
{
    const nd_tensor *in = node->inputs[0];
    int64_t keep_shape[ND_MAX_DIMS];
    for (int i = 0; i < in->ndim; i++)
        keep_shape[i] = node->iparams[1 + i] ? 1 : in->shape[i];
    nd_tensor *r = g;
    if (!node->iparams[0] || g->ndim != in->ndim)
        r = nd_reshape(g, in->ndim, keep_shape);
    return nd_expand(r, in->ndim, in->shape);
}

nd_status nd_bw_sum(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    gi[0] = expand_back(node, g);
    return gi[0] ? ND_OK : nd_last_status();
}

nd_status nd_bw_mean(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    gi[0] = nd_div_scalar(expand_back(node, g), node->dparams[0]);
    return gi[0] ? ND_OK : nd_last_status();
}

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

/* A per-output tensor (gradient or result) reshaped with the reduced dims kept as size 1.
 * Works for every reduction node here: iparams = [keepdim, mask of reduced dims]. */
static nd_tensor *keep_dims(nd_node *node, nd_tensor *t)
{
    const nd_tensor *in = node->inputs[0];
    int64_t keep_shape[ND_MAX_DIMS];
    for (int i = 0; i < in->ndim; i++)
        keep_shape[i] = node->iparams[1 + i] ? 1 : in->shape[i];
    if (node->iparams[0] && t->ndim == in->ndim)
        return t;
    return nd_reshape(t, in->ndim, keep_shape);
}

/* The output gradient laid back over the input's shape. */
static nd_tensor *expand_back(nd_node *node, nd_tensor *g)
{
    const nd_tensor *in = node->inputs[0];
    return nd_expand(keep_dims(node, g), in->ndim, in->shape);
}

static void set_reduce_params(nd_node *node, const nd_tensor *t, const bool *mask, bool keepdim)
{
    if (!node)
        return;
    node->iparams[0] = keepdim;
    for (int i = 0; i < t->ndim; i++)
        node->iparams[1 + i] = mask[i];
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

/* ------------------------------------------------------------------ row reductions */

/* A 1-d view of all of t's elements (a dense copy when t is not contiguous); unregistered. */
static nd_tensor *flat(const nd_tensor *t)
{
    int64_t n = nd_numel(t);
    if (nd_is_contiguous(t))
        return nd_alias(t, 1, &n, (const int64_t[]){1}, t->offset);
    nd_tensor *c = nd_k_copy(t, t->dtype);
    if (!c)
        return NULL;
    nd_tensor *v = nd_alias(c, 1, &n, (const int64_t[]){1}, 0);
    nd_unref(c);
    return v;
}

/* Runs a row op along dim; returns unregistered out (and *aux for max/min). */
static nd_tensor *row_reduce(const char *name, nd_rowop op, const nd_tensor *t, int dim, bool keepdim,
                             nd_dtype out_dtype, nd_tensor **aux)
{
    bool extreme = op == ND_ROW_MAX || op == ND_ROW_MIN;
    if (t->ndim > 0 && t->shape[dim] == 0 && extreme) {
        char b[ND_SHAPE_BUF];
        return nd_fail(ND_ERR_SHAPE, "%s: cannot reduce over dim %d of size 0 (shape %s): the operation has no identity",
                       name, dim, nd_shape_str(b, sizeof b, t->ndim, t->shape));
    }
    int64_t keep_shape[ND_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++)
        keep_shape[i] = i == dim ? 1 : t->shape[i];
    nd_tensor *out = nd_alloc(out_dtype, t->ndim, keep_shape, false);
    nd_tensor *idx = out && aux ? nd_alloc(ND_INT64, t->ndim, keep_shape, false) : NULL;
    if (!out || (aux && !idx)) {
        nd_unref(out);
        return NULL;
    }
    nd_k_rows(op, out, idx, t, dim);
    if (!keepdim && t->ndim > 0) {
        nd_tensor *o2 = nd_k_drop_dim(out, dim), *i2 = idx ? nd_k_drop_dim(idx, dim) : NULL;
        nd_unref(out);
        nd_unref(idx);
        out = o2, idx = i2;
        if (!out || (aux && !idx)) {
            nd_unref(out);
            nd_unref(idx);
            return NULL;
        }
    }
    if (aux)
        *aux = idx;
    return out;
}

/* All elements as one row: out is 0-dim. */
static nd_tensor *row_reduce_all(const char *name, nd_rowop op, const nd_tensor *t, nd_dtype out_dtype)
{
    if (nd_numel(t) == 0 && (op == ND_ROW_MAX || op == ND_ROW_MIN))
        return nd_fail(ND_ERR_SHAPE, "%s: expected a non-empty tensor; specify a dim to reduce an empty one", name);
    nd_tensor *f = flat(t);
    if (!f)
        return NULL;
    nd_tensor *out = row_reduce(name, op, f, 0, false, out_dtype, NULL);
    nd_unref(f);
    return out;
}

/* max / min of all elements.  da = g spread evenly over the positions equal to the result
 * (ties share the gradient, as PyTorch's evenly_distribute_backward). */
static nd_tensor *extreme_all(const char *name, nd_op op, nd_rowop row, nd_tensor *t)
{
    if (!t)
        return nd_fail_null(name, 0);
    nd_tensor *out = row_reduce_all(name, row, t, t->dtype);
    if (!out)
        return NULL;
    nd_node *node = NULL;
    out = nd_finish(out, op, 1, &t, &node);
    if (node && !nd_node_save(node, 0, out))
        return NULL;
    return out;
}

nd_tensor *nd_max(nd_tensor *t) { return extreme_all("nd_max", ND_OP_MAX_ALL, ND_ROW_MAX, t); }
nd_tensor *nd_min(nd_tensor *t) { return extreme_all("nd_min", ND_OP_MIN_ALL, ND_ROW_MIN, t); }

nd_status nd_bw_extreme_all(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *a = node->inputs[0], *out = node->saved[0];
    /* The positions holding the result; a NaN result is held by the NaN positions (PyTorch). */
    nd_tensor *hits = nd_compare("max/min backward", ND_BIN_EQ, a, out);
    if (hits && nd_item(out) != nd_item(out))
        hits = nd_compare("max/min backward", ND_BIN_NE, a, a);
    nd_tensor *count = hits ? nd_sum(nd_to(hits, g->dtype)) : NULL;
    nd_tensor *zero = nd_register(nd_k_wrapped_scalar(0.0, ND_FLOAT32));
    gi[0] = count && zero ? nd_where(hits, nd_div(g, count), zero) : NULL;
    return gi[0] ? ND_OK : nd_last_status();
}

/* max / min along dim: values and int64 indices of the first extreme.  da = g placed at the
 * indices (scatter_add into zeros). Saves the indices. */
static nd_tensor *extreme_dim(const char *name, nd_op op, nd_rowop row, nd_tensor *t, int dim, bool keepdim,
                              nd_tensor **indices)
{
    if (indices)
        *indices = NULL;
    if (!t)
        return nd_fail_null(name, 0);
    if (!nd_check_dim(name, &dim, t->ndim, true))
        return NULL;
    nd_tensor *idx = NULL;
    nd_tensor *out = row_reduce(name, row, t, dim, keepdim, t->dtype, &idx);
    if (!out)
        return NULL;
    nd_node *node = NULL;
    out = nd_finish(out, op, 1, &t, &node);
    if (!out) {
        nd_unref(idx);
        return NULL;
    }
    if (node) {
        bool mask[ND_MAX_DIMS] = {false};
        mask[dim] = true;
        set_reduce_params(node, t, mask, keepdim);
        node->iparams[1 + ND_MAX_DIMS] = dim;
        node->saved[0] = nd_ref(idx);
        node->saved_versions[0] = atomic_load(&idx->storage->version);
    }
    if (indices)
        *indices = nd_register(idx);
    else
        nd_unref(idx);
    return out;
}

nd_tensor *nd_max_dim(nd_tensor *t, int dim, bool keepdim, nd_tensor **indices)
{
    return extreme_dim("nd_max_dim", ND_OP_MAX_DIM, ND_ROW_MAX, t, dim, keepdim, indices);
}

nd_tensor *nd_min_dim(nd_tensor *t, int dim, bool keepdim, nd_tensor **indices)
{
    return extreme_dim("nd_min_dim", ND_OP_MIN_DIM, ND_ROW_MIN, t, dim, keepdim, indices);
}

nd_status nd_bw_extreme_dim(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *a = node->inputs[0];
    int dim = (int)node->iparams[1 + ND_MAX_DIMS];
    nd_tensor *zeros = nd_register(nd_k_full(g->dtype, a->ndim, a->shape, 0.0));
    gi[0] = zeros ? nd_scatter_add(zeros, dim, keep_dims(node, node->saved[0]), keep_dims(node, g)) : NULL;
    return gi[0] ? ND_OK : nd_last_status();
}

static nd_tensor *arg_extreme(const char *name, nd_rowop row, nd_tensor *t, int dim, bool all, bool keepdim)
{
    if (!t)
        return nd_fail_null(name, 0);
    nd_tensor *idx = NULL, *vals;
    if (all) {
        if (nd_numel(t) == 0)
            return nd_fail(ND_ERR_SHAPE, "%s: expected a non-empty tensor", name);
        nd_tensor *f = flat(t);
        vals = f ? row_reduce(name, row, f, 0, false, t->dtype, &idx) : NULL;
        nd_unref(f);
    } else {
        if (!nd_check_dim(name, &dim, t->ndim, true))
            return NULL;
        vals = row_reduce(name, row, t, dim, keepdim, t->dtype, &idx);
    }
    nd_unref(vals);
    return vals ? nd_register(idx) : NULL;
}

nd_tensor *nd_argmax(nd_tensor *t) { return arg_extreme("nd_argmax", ND_ROW_MAX, t, 0, true, false); }
nd_tensor *nd_argmin(nd_tensor *t) { return arg_extreme("nd_argmin", ND_ROW_MIN, t, 0, true, false); }
nd_tensor *nd_argmax_dim(nd_tensor *t, int dim, bool keepdim) { return arg_extreme("nd_argmax_dim", ND_ROW_MAX, t, dim, false, keepdim); }
nd_tensor *nd_argmin_dim(nd_tensor *t, int dim, bool keepdim) { return arg_extreme("nd_argmin_dim", ND_ROW_MIN, t, dim, false, keepdim); }

/* prod: out = Π a.  da = g · (product of the other elements): out / a where the slice has no
 * zero; where it has exactly one, the zero's position gets the product of the rest; else 0. */
static nd_tensor *prod_impl(const char *name, nd_op op, nd_tensor *t, int dim, bool all, bool keepdim)
{
    if (!t)
        return nd_fail_null(name, 0);
    if (!all && !nd_check_dim(name, &dim, t->ndim, true))
        return NULL;
    nd_dtype out_dtype = nd_dtype_is_float(t->dtype) ? t->dtype : ND_INT64;
    nd_tensor *out = all ? row_reduce_all(name, ND_ROW_PROD, t, out_dtype)
                         : row_reduce(name, ND_ROW_PROD, t, dim, keepdim, out_dtype, NULL);
    if (!out)
        return NULL;
    nd_node *node = NULL;
    out = nd_finish(out, op, 1, &t, &node);
    if (node) {
        bool mask[ND_MAX_DIMS];
        for (int i = 0; i < ND_MAX_DIMS; i++)
            mask[i] = all ? i < t->ndim : i == dim;
        set_reduce_params(node, t, mask, keepdim && !all);
        node->iparams[1 + ND_MAX_DIMS] = all ? -1 : dim;
    }
    return out;
}

nd_tensor *nd_prod(nd_tensor *t) { return prod_impl("nd_prod", ND_OP_PROD, t, 0, true, false); }
nd_tensor *nd_prod_dim(nd_tensor *t, int dim, bool keepdim) { return prod_impl("nd_prod_dim", ND_OP_PROD_DIM, t, dim, false, keepdim); }

nd_status nd_bw_prod(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *a = node->inputs[0];
    int dim = (int)node->iparams[1 + ND_MAX_DIMS];
    const int64_t d[1] = {dim};
    nd_tensor *is_zero = nd_mask(ND_BIN_EQ, a, 0.0, ND_BOOL);
    nd_tensor *zero_f = nd_to(is_zero, g->dtype);
    nd_tensor *one = nd_register(nd_k_wrapped_scalar(1.0, ND_FLOAT32));
    nd_tensor *zero = nd_register(nd_k_wrapped_scalar(0.0, ND_FLOAT32));
    nd_tensor *nonzero = nd_where(is_zero, one, a); /* zeros replaced by 1 */
    nd_tensor *zero_count = dim < 0 ? nd_sum(zero_f) : nd_sum_dims(zero_f, 1, d, true);
    nd_tensor *prod_rest = dim < 0 ? nd_prod(nonzero) : nd_prod_dim(nonzero, dim, true);
    /* The zero entry itself (0 in value, but its derivative matters for the second order). */
    nd_tensor *a_zero = dim < 0 ? nd_sum(nd_mul(a, zero_f)) : nd_sum_dims(nd_mul(a, zero_f), 1, d, true);
    nd_tensor *out = dim < 0 ? nd_prod(a) : nd_prod_dim(a, dim, true);
    if (!zero_count || !prod_rest || !out || !a_zero)
        return nd_last_status();
    /* Π_{j≠i} a_j: out / a_i without zeros; with one zero z, Π_rest at z and a_z Π_rest / a_i
     * elsewhere; with more, 0 (as PyTorch). */
    nd_tensor *no_zero = nd_mask(ND_BIN_EQ, zero_count, 0.0, ND_BOOL);
    nd_tensor *one_zero = nd_mask(ND_BIN_EQ, zero_count, 1.0, ND_BOOL);
    nd_tensor *with_one;
    if (!nd_is_grad_enabled()) {
        /* First order: the product of the others as prefix × suffix, exactly as PyTorch (no
         * division, so an inf elsewhere in the slice gives 0 · inf only where it should). */
        nd_tensor *src = nd_k_copy(a, a->dtype);
        nd_tensor *others = src ? nd_alloc(a->dtype, a->ndim, a->shape, false) : NULL;
        nd_tensor *flat_src = NULL, *flat_out = NULL;
        if (others && dim < 0) {
            int64_t n = nd_numel(a);
            flat_src = nd_alias(src, 1, &n, (const int64_t[]){1}, 0);
            flat_out = nd_alias(others, 1, &n, (const int64_t[]){1}, 0);
        }
        if (others && (dim >= 0 || (flat_src && flat_out)))
            nd_k_rows(ND_ROW_PROD_OTHERS, dim < 0 ? flat_out : others, NULL, dim < 0 ? flat_src : src, dim < 0 ? 0 : dim);
        bool ok = others && (dim >= 0 || (flat_src && flat_out));
        nd_unref(flat_src);
        nd_unref(flat_out);
        nd_unref(src);
        if (!ok) {
            nd_unref(others);
            return nd_last_status();
        }
        with_one = nd_register(others);
    } else {
        /* With a graph: a_z Π_rest / a_i has value 0 off the zero and the right derivative. */
        with_one = nd_where(is_zero, prod_rest, nd_div(nd_mul(a_zero, prod_rest), nonzero));
    }
    nd_tensor *local = nd_where(no_zero, nd_div(out, nonzero), nd_where(one_zero, with_one, zero));
    gi[0] = nd_mul(expand_back(node, g), local);
    return gi[0] ? ND_OK : nd_last_status();
}

/* The dims mask of a dims list (all dims when ndims is 0). */
static bool reduce_mask(const char *name, const nd_tensor *t, int ndims, const int64_t *dims, bool *mask)
{
    if (ndims == 0) {
        for (int i = 0; i < ND_MAX_DIMS; i++)
            mask[i] = i < t->ndim;
        return true;
    }
    return nd_dims_mask(name, t->ndim, ndims, dims, mask);
}

/* Evaluates f's value with no graph and returns a fresh, unregistered copy (so the caller can
 * record one node of its own on it). */
static nd_tensor *untracked_value(nd_tensor *v)
{
    return v ? nd_k_copy(v, v->dtype) : NULL;
}

/* var / std with Bessel-style correction over a dims list (all dims when ndims is 0):
 * var = Σ (a - mean)² / (N - correction).
 * dvar = g 2 (a - mean) / (N - correction);  dstd = g (a - mean) / ((N - correction) std), 0
 * where std is 0 (PyTorch's convention for constant inputs).
 * iparams: [keepdim, mask]; dparams: [correction, N]. Saves the result. */
static nd_tensor *var_impl(const char *name, nd_op op, nd_tensor *t, int ndims, const int64_t *dims, double correction,
                           bool keepdim)
{
    if (!t)
        return nd_fail_null(name, 0);
    if (!nd_dtype_is_float(t->dtype))
        return nd_fail(ND_ERR_DTYPE, "%s: expected a floating point tensor, got %s", name, nd_dtype_name(t->dtype));
    bool mask[ND_MAX_DIMS];
    if (!reduce_mask(name, t, ndims, dims, mask))
        return NULL;
    int64_t count = 1, list[ND_MAX_DIMS];
    int nl = 0;
    for (int i = 0; i < t->ndim; i++)
        if (mask[i])
            count *= t->shape[i], list[nl++] = i;
    double denom = (double)count - correction;
    nd_scope_begin();
    bool was = nd_set_grad_enabled(false);
    nd_tensor *d = nd_sub(t, nd_mean_dims(t, nl, list, true));
    nd_tensor *v = nd_div_scalar(nd_sum_dims(nd_mul(d, d), nl, list, keepdim), denom > 0 ? denom : 0.0);
    if (op == ND_OP_STD)
        v = nd_sqrt(v);
    nd_tensor *out = untracked_value(v);
    nd_set_grad_enabled(was);
    nd_scope_end();
    if (!out)
        return NULL;
    nd_node *node = NULL;
    out = nd_finish(out, op, 1, &t, &node);
    if (node) {
        set_reduce_params(node, t, mask, keepdim);
        node->dparams[0] = correction;
        node->dparams[1] = (double)count;
        if (!nd_node_save(node, 0, out))
            return NULL;
    }
    return out;
}

nd_tensor *nd_var(nd_tensor *t, int ndims, const int64_t *dims, double correction, bool keepdim)
{
    return var_impl("nd_var", ND_OP_VAR, t, ndims, dims, correction, keepdim);
}

nd_tensor *nd_std(nd_tensor *t, int ndims, const int64_t *dims, double correction, bool keepdim)
{
    return var_impl("nd_std", ND_OP_STD, t, ndims, dims, correction, keepdim);
}

static int reduced_dims(const nd_node *node, int64_t *dims)
{
    int n = 0;
    for (int i = 0; i < node->inputs[0]->ndim; i++)
        if (node->iparams[1 + i])
            dims[n++] = i;
    return n;
}

nd_status nd_bw_var(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *a = node->inputs[0];
    int64_t dims[ND_MAX_DIMS];
    int nd = reduced_dims(node, dims);
    double denom = node->dparams[1] - node->dparams[0];
    nd_tensor *centered = nd_sub(a, nd_mean_dims(a, nd, dims, true));
    if (node->op == ND_OP_VAR) {
        gi[0] = nd_mul(expand_back(node, g), nd_mul_scalar(centered, 2.0 / denom));
    } else {
        nd_tensor *out = keep_dims(node, nd_is_grad_enabled() ? nd_std(a, nd, dims, node->dparams[0], true) : node->saved[0]);
        nd_tensor *zero = nd_register(nd_k_wrapped_scalar(0.0, ND_FLOAT32));
        nd_tensor *scale = out && zero ? nd_where(nd_mask(ND_BIN_EQ, out, 0.0, ND_BOOL), zero,
                                                  nd_div(expand_back(node, g), nd_mul_scalar(out, denom)))
                                       : NULL;
        gi[0] = nd_mul(scale, centered);
    }
    return gi[0] ? ND_OK : nd_last_status();
}

/* logsumexp over dims: out = m + ln Σ e^(a - m), m the max (0 for infinite rows), computed
 * along one folded dim.  da = g e^(a - out).  Saves out. */
static nd_tensor *logsumexp_value(nd_tensor *t, const bool *mask, bool keepdim)
{
    int reduced = 0, last = 0;
    for (int i = 0; i < t->ndim; i++)
        if (mask[i])
            reduced++, last = i;
    nd_tensor *src = nd_dtype_is_float(t->dtype) ? t : NULL;
    nd_tensor *converted = NULL;
    if (!src)
        src = converted = nd_k_copy(t, ND_FLOAT32);
    if (!src)
        return NULL;
    nd_tensor *out = NULL;
    if (t->ndim == 0 || reduced == 1) {
        out = row_reduce("nd_logsumexp", ND_ROW_LOGSUMEXP, src, t->ndim ? last : 0, keepdim, src->dtype, NULL);
    } else {
        /* Move the reduced dims last and fold them into one. */
        int64_t perm[ND_MAX_DIMS], folded[ND_MAX_DIMS], keep_shape[ND_MAX_DIMS], out_shape[ND_MAX_DIMS];
        int np = 0, nf = 0, no = 0;
        int64_t inner = 1;
        for (int i = 0; i < t->ndim; i++)
            if (!mask[i])
                perm[np++] = i, folded[nf++] = t->shape[i];
        for (int i = 0; i < t->ndim; i++)
            if (mask[i])
                perm[np++] = i, inner *= t->shape[i];
        folded[nf++] = inner;
        for (int i = 0; i < t->ndim; i++) {
            keep_shape[i] = mask[i] ? 1 : t->shape[i];
            if (!mask[i])
                out_shape[no++] = t->shape[i];
        }
        nd_scope_begin();
        bool was = nd_set_grad_enabled(false);
        nd_tensor *f = nd_contiguous(nd_reshape(nd_permute(src, t->ndim, perm), nf, folded));
        nd_tensor *r = f ? row_reduce("nd_logsumexp", ND_ROW_LOGSUMEXP, f, nf - 1, false, src->dtype, NULL) : NULL;
        nd_tensor *shaped = r ? nd_reshape(nd_register(r), keepdim ? t->ndim : no, keepdim ? keep_shape : out_shape) : NULL;
        out = untracked_value(shaped);
        nd_set_grad_enabled(was);
        nd_scope_end();
    }
    nd_unref(converted);
    return out;
}

nd_tensor *nd_logsumexp(nd_tensor *t, int ndims, const int64_t *dims, bool keepdim)
{
    const char *name = "nd_logsumexp";
    if (!t)
        return nd_fail_null(name, 0);
    bool mask[ND_MAX_DIMS];
    if (!reduce_mask(name, t, ndims, dims, mask))
        return NULL;
    nd_tensor *out = logsumexp_value(t, mask, keepdim);
    if (!out)
        return NULL;
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_LOGSUMEXP, 1, &t, &node);
    if (node) {
        set_reduce_params(node, t, mask, keepdim);
        if (!nd_node_save(node, 0, out))
            return NULL;
    }
    return out;
}

nd_status nd_bw_logsumexp(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *a = node->inputs[0];
    int64_t dims[ND_MAX_DIMS];
    int nd = reduced_dims(node, dims);
    nd_tensor *out = nd_is_grad_enabled() ? nd_logsumexp(a, nd ? nd : 0, dims, true) : keep_dims(node, node->saved[0]);
    gi[0] = nd_mul(expand_back(node, g), nd_exp(nd_sub(a, out)));
    return gi[0] ? ND_OK : nd_last_status();
}

/* norm with p = 2 (√Σa²) or p = 1 (Σ|a|) over a dims list (all when ndims is 0).
 * da = g a / out (0 where out is 0) for p = 2;  da = g sign(a) for p = 1. */
nd_tensor *nd_norm(nd_tensor *t, double p, int ndims, const int64_t *dims, bool keepdim)
{
    const char *name = "nd_norm";
    if (!t)
        return nd_fail_null(name, 0);
    if (p != 1.0 && p != 2.0)
        return nd_fail(ND_ERR_VALUE, "%s: p must be 1 or 2, got %g", name, p);
    if (!nd_dtype_is_float(t->dtype))
        return nd_fail(ND_ERR_DTYPE, "%s: expected a floating point tensor, got %s", name, nd_dtype_name(t->dtype));
    bool mask[ND_MAX_DIMS];
    if (ndims == 0) {
        for (int i = 0; i < ND_MAX_DIMS; i++)
            mask[i] = i < t->ndim;
    } else if (!nd_dims_mask(name, t->ndim, ndims, dims, mask)) {
        return NULL;
    }
    /* The value comes from existing kernels without recording; the node is NORM's own. */
    nd_scope_begin();
    bool was = nd_set_grad_enabled(false);
    nd_tensor *v = p == 2.0 ? nd_sqrt(nd_sum_dims(nd_square(t), ndims, dims, keepdim))
                            : nd_sum_dims(nd_abs(t), ndims, dims, keepdim);
    if (v && ndims == 0 && !keepdim)
        v = nd_reshape(v, 0, NULL);
    nd_tensor *out = v ? nd_k_copy(v, v->dtype) : NULL;
    nd_set_grad_enabled(was);
    nd_scope_end();
    if (!out)
        return NULL;
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_NORM, 1, &t, &node);
    if (node) {
        set_reduce_params(node, t, mask, keepdim || (ndims == 0 && false));
        node->dparams[0] = p;
        if (!nd_node_save(node, 0, out))
            return NULL;
    }
    return out;
}

nd_status nd_bw_norm(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *a = node->inputs[0];
    if (node->dparams[0] == 1.0) {
        gi[0] = nd_mul(expand_back(node, g), nd_sign(a));
        return gi[0] ? ND_OK : nd_last_status();
    }
    nd_tensor *out = keep_dims(node, nd_is_grad_enabled() ? nd_sqrt(nd_sum_dims(nd_square(a), 0, NULL, false)) : node->saved[0]);
    if (nd_is_grad_enabled()) { /* recompute with the node's own dims so the graph reaches a */
        int64_t dims[ND_MAX_DIMS];
        int nd = 0;
        for (int i = 0; i < a->ndim; i++)
            if (node->iparams[1 + i])
                dims[nd++] = i;
        out = nd_sqrt(nd_sum_dims(nd_square(a), nd, dims, true));
    }
    nd_tensor *zero = nd_register(nd_k_wrapped_scalar(0.0, ND_FLOAT32));
    nd_tensor *scale = nd_where(nd_mask(ND_BIN_EQ, out, 0.0, ND_BOOL), zero, nd_div(expand_back(node, g), out));
    gi[0] = nd_mul(scale, a);
    return gi[0] ? ND_OK : nd_last_status();
}

/* cumsum along dim (int and bool inputs give int64).  da = reverse cumsum of g. */
nd_tensor *nd_cumsum(nd_tensor *t, int dim)
{
    const char *name = "nd_cumsum";
    if (!t)
        return nd_fail_null(name, 0);
    if (!nd_check_dim(name, &dim, t->ndim, true))
        return NULL;
    nd_dtype out_dtype = nd_dtype_is_float(t->dtype) ? t->dtype : ND_INT64;
    nd_tensor *out = nd_alloc(out_dtype, t->ndim, t->shape, false);
    if (!out)
        return NULL;
    nd_k_rows(ND_ROW_CUMSUM, out, NULL, t, dim);
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_CUMSUM, 1, &t, &node);
    if (node)
        node->iparams[0] = dim;
    return out;
}

nd_status nd_bw_cumsum(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    int dim = (int)node->iparams[0];
    if (node->inputs[0]->ndim == 0) {
        gi[0] = g;
        return ND_OK;
    }
    const int64_t d[1] = {dim};
    gi[0] = nd_flip(nd_cumsum(nd_flip(g, 1, d), dim), 1, d);
    return gi[0] ? ND_OK : nd_last_status();
}

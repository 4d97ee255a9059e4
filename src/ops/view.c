/* Views: new geometry over the same storage, no data copied (reshape copies only when the
 * strides leave no choice). Each records a node whose backward maps the gradient back. */
#include "ops/common.h"

#include <string.h>

/* Registers a view of t and records its node (params copied into the node by the caller). */
static nd_tensor *make_view(nd_tensor *t, nd_op op, int ndim, const int64_t *shape, const int64_t *strides,
                            int64_t offset, nd_node **node)
{
    nd_tensor *v = nd_alias(t, ndim, shape, strides, offset);
    if (!v)
        return NULL;
    *node = NULL;
    return nd_finish(v, op, 1, &t, node);
}

/* Shape with one -1 resolved, checked against numel. */
static bool infer_shape(const char *name, const nd_tensor *t, int ndim, const int64_t *shape, int64_t *out)
{
    if (ndim < 0 || ndim > ND_MAX_DIMS) {
        nd_fail(ND_ERR_DIM, "%s: %d dims requested; ndgrad supports 0 to %d", name, ndim, ND_MAX_DIMS);
        return false;
    }
    if (ndim > 0 && !shape) {
        nd_fail(ND_ERR_NULL, "%s: shape is NULL", name);
        return false;
    }
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == -1) {
            if (infer >= 0) {
                nd_fail(ND_ERR_VALUE, "%s: only one dimension can be inferred (-1)", name);
                return false;
            }
            infer = i;
        } else if (shape[i] < 0) {
            nd_fail(ND_ERR_VALUE, "%s: invalid shape dimension %lld", name, (long long)shape[i]);
            return false;
        } else {
            if (shape[i] && known > INT64_MAX / shape[i]) {
                nd_fail(ND_ERR_VALUE, "%s: shape is too large", name);
                return false;
            }
            known *= shape[i];
        }
        out[i] = shape[i];
    }
    int64_t numel = nd_numel(t);
    char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
    if (infer >= 0) {
        if (known == 0 || numel % known != 0) {
            nd_fail(ND_ERR_SHAPE, "%s: shape %s is invalid for input of size %lld (shape %s)", name,
                    nd_shape_str(s1, sizeof s1, ndim, shape), (long long)numel, nd_shape_str(s2, sizeof s2, t->ndim, t->shape));
            return false;
        }
        out[infer] = numel / known;
    } else if (known != numel) {
        nd_fail(ND_ERR_SHAPE, "%s: shape %s is invalid for input of size %lld (shape %s)", name,
                nd_shape_str(s1, sizeof s1, ndim, shape), (long long)numel, nd_shape_str(s2, sizeof s2, t->ndim, t->shape));
        return false;
    }
    return true;
}

/* Strides that present t's elements in the new shape without copying, when they exist: each run
 * of old dims that is contiguous within itself must be split exactly by new dims. */
static bool view_strides(const nd_tensor *t, int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t numel = nd_numel(t);
    if (numel == 0 || t->ndim == 0) {
        nd_contiguous_strides(ndim, shape, strides);
        return true;
    }
    int view_d = ndim - 1;
    int64_t chunk_base = t->strides[t->ndim - 1];
    int64_t tensor_numel = 1, view_numel = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        tensor_numel *= t->shape[d];
        if (d == 0 || (t->shape[d - 1] != 1 && t->strides[d - 1] != tensor_numel * chunk_base)) {
            while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
                strides[view_d] = view_numel * chunk_base;
                view_numel *= shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel)
                return false;
            if (d > 0) {
                chunk_base = t->strides[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

/* view: same elements, new shape.  da = reshape(g, a.shape). */
nd_tensor *nd_view(nd_tensor *t, int ndim, const int64_t *shape)
{
    const char *name = "nd_view";
    if (!t)
        return nd_fail_null(name, 0);
    int64_t sh[ND_MAX_DIMS], st[ND_MAX_DIMS];
    if (!infer_shape(name, t, ndim, shape, sh))
        return NULL;
    if (!view_strides(t, ndim, sh, st)) {
        char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF], s3[ND_SHAPE_BUF];
        return nd_fail(ND_ERR_STATE, "%s: shape %s is not compatible with the input's size %s and stride %s (at least "
                       "one dimension spans across two contiguous subspaces); use nd_reshape instead", name,
                       nd_shape_str(s1, sizeof s1, ndim, sh), nd_shape_str(s2, sizeof s2, t->ndim, t->shape),
                       nd_shape_str(s3, sizeof s3, t->ndim, t->strides));
    }
    nd_node *node;
    return make_view(t, ND_OP_VIEW, ndim, sh, st, t->offset, &node);
}

nd_tensor *nd_reshape(nd_tensor *t, int ndim, const int64_t *shape)
{
    const char *name = "nd_reshape";
    if (!t)
        return nd_fail_null(name, 0);
    int64_t sh[ND_MAX_DIMS], st[ND_MAX_DIMS];
    if (!infer_shape(name, t, ndim, shape, sh))
        return NULL;
    nd_node *node;
    if (view_strides(t, ndim, sh, st))
        return make_view(t, ND_OP_VIEW, ndim, sh, st, t->offset, &node);
    nd_composite_begin();
    nd_tensor *c = nd_clone(t);
    nd_contiguous_strides(ndim, sh, st);
    return nd_composite_end(c ? make_view(c, ND_OP_UNSAFE_VIEW, ndim, sh, st, c->offset, &node) : NULL);
}

nd_status nd_bw_view(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    const nd_tensor *in = node->inputs[0];
    gi[0] = nd_reshape(g, in->ndim, in->shape);
    return gi[0] ? ND_OK : nd_last_status();
}

/* transpose: swap two dims.  da = transpose(g) with the same dims. */
nd_tensor *nd_transpose(nd_tensor *t, int dim0, int dim1)
{
    const char *name = "nd_transpose";
    if (!t)
        return nd_fail_null(name, 0);
    if (!nd_check_dim(name, &dim0, t->ndim, true) || !nd_check_dim(name, &dim1, t->ndim, true))
        return NULL;
    int64_t sh[ND_MAX_DIMS], st[ND_MAX_DIMS];
    memcpy(sh, t->shape, sizeof sh);
    memcpy(st, t->strides, sizeof st);
    if (t->ndim > 0) {
        sh[dim0] = t->shape[dim1], sh[dim1] = t->shape[dim0];
        st[dim0] = t->strides[dim1], st[dim1] = t->strides[dim0];
    }
    nd_node *node;
    nd_tensor *v = make_view(t, ND_OP_TRANSPOSE, t->ndim, sh, st, t->offset, &node);
    if (node)
        node->iparams[0] = dim0, node->iparams[1] = dim1;
    return v;
}

nd_tensor *nd_t(nd_tensor *t)
{
    if (!t)
        return nd_fail_null("nd_t", 0);
    if (t->ndim > 2)
        return nd_fail(ND_ERR_DIM, "nd_t: expects a tensor with <= 2 dimensions, but the input is %d-D", t->ndim);
    int64_t sh[2] = {0, 0}, st[2] = {0, 0};
    for (int i = 0; i < t->ndim; i++)
        sh[i] = t->shape[t->ndim - 1 - i], st[i] = t->strides[t->ndim - 1 - i];
    nd_node *node;
    return make_view(t, ND_OP_T, t->ndim, sh, st, t->offset, &node);
}

nd_status nd_bw_transpose(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    gi[0] = node->op == ND_OP_T ? nd_t(g) : nd_transpose(g, (int)node->iparams[0], (int)node->iparams[1]);
    return gi[0] ? ND_OK : nd_last_status();
}

/* permute: out dim i is input dim p[i].  da = permute(g, inverse of p). */
nd_tensor *nd_permute(nd_tensor *t, int ndim, const int64_t *dims)
{
    const char *name = "nd_permute";
    if (!t)
        return nd_fail_null(name, 0);
    if (ndim != t->ndim || (ndim > 0 && !dims))
        return nd_fail(ND_ERR_DIM, "%s: number of dims don't match in permute (input has %d, %d given)", name, t->ndim, ndim);
    bool used[ND_MAX_DIMS] = {false};
    int64_t sh[ND_MAX_DIMS] = {0}, st[ND_MAX_DIMS] = {0}, p[ND_MAX_DIMS] = {0};
    for (int i = 0; i < ndim; i++) {
        int d = dims[i] < INT32_MIN || dims[i] > INT32_MAX ? -1 : nd_wrap_dim((int)dims[i], ndim);
        if (d < 0)
            return nd_fail(ND_ERR_DIM, "%s: dimension %lld out of range for a %d-d tensor", name, (long long)dims[i], ndim);
        if (used[d])
            return nd_fail(ND_ERR_DIM, "%s: repeated dim %d in permute", name, d);
        used[d] = true;
        p[i] = d;
        sh[i] = t->shape[d];
        st[i] = t->strides[d];
    }
    nd_node *node;
    nd_tensor *v = make_view(t, ND_OP_PERMUTE, ndim, sh, st, t->offset, &node);
    if (node)
        for (int i = 0; i < ndim; i++)
            node->iparams[i] = p[i];
    return v;
}

nd_status nd_bw_permute(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    int n = node->inputs[0]->ndim;
    int64_t inv[ND_MAX_DIMS];
    for (int i = 0; i < n; i++)
        inv[node->iparams[i]] = i;
    gi[0] = nd_permute(g, n, inv);
    return gi[0] ? ND_OK : nd_last_status();
}

nd_tensor *nd_squeeze(nd_tensor *t)
{
    if (!t)
        return nd_fail_null("nd_squeeze", 0);
    int64_t sh[ND_MAX_DIMS], st[ND_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != 1)
            sh[n] = t->shape[i], st[n] = t->strides[i], n++;
    nd_node *node;
    return make_view(t, ND_OP_SQUEEZE, n, sh, st, t->offset, &node);
}

nd_tensor *nd_squeeze_dim(nd_tensor *t, int dim)
{
    const char *name = "nd_squeeze_dim";
    if (!t)
        return nd_fail_null(name, 0);
    if (!nd_check_dim(name, &dim, t->ndim, true))
        return NULL;
    int64_t sh[ND_MAX_DIMS], st[ND_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++)
        if (i != dim || t->shape[i] != 1)
            sh[n] = t->shape[i], st[n] = t->strides[i], n++;
    nd_node *node;
    return make_view(t, ND_OP_SQUEEZE_DIM, n, sh, st, t->offset, &node);
}

nd_tensor *nd_unsqueeze(nd_tensor *t, int dim)
{
    const char *name = "nd_unsqueeze";
    if (!t)
        return nd_fail_null(name, 0);
    if (t->ndim >= ND_MAX_DIMS)
        return nd_fail(ND_ERR_DIM, "%s: the result would have more than %d dims", name, ND_MAX_DIMS);
    int d = nd_wrap_dim(dim, t->ndim + 1);
    if (d < 0)
        return nd_fail(ND_ERR_DIM, "%s: dimension out of range (expected to be in range of [%d, %d], but got %d)", name,
                       -t->ndim - 1, t->ndim, dim);
    int64_t sh[ND_MAX_DIMS], st[ND_MAX_DIMS];
    for (int i = 0, j = 0; i <= t->ndim; i++) {
        if (i == d) {
            sh[i] = 1;
            st[i] = d < t->ndim ? t->shape[d] * t->strides[d] : 1;
        } else {
            sh[i] = t->shape[j], st[i] = t->strides[j], j++;
        }
    }
    nd_node *node;
    return make_view(t, ND_OP_UNSQUEEZE, t->ndim + 1, sh, st, t->offset, &node);
}

/* expand: size-1 dims repeat with stride 0.  da = g summed back to a's shape. */
nd_tensor *nd_expand(nd_tensor *t, int ndim, const int64_t *shape)
{
    const char *name = "nd_expand";
    if (!t)
        return nd_fail_null(name, 0);
    char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
    if (ndim > ND_MAX_DIMS)
        return nd_fail(ND_ERR_DIM, "%s: %d dims requested; ndgrad supports at most %d", name, ndim, ND_MAX_DIMS);
    if (ndim > 0 && !shape)
        return nd_fail(ND_ERR_NULL, "%s: shape is NULL", name);
    if (ndim < t->ndim)
        return nd_fail(ND_ERR_SHAPE, "%s: the number of sizes provided (%d) must be greater or equal to the number of "
                       "dimensions in the tensor (%d)", name, ndim, t->ndim);
    int64_t sh[ND_MAX_DIMS], st[ND_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int j = i - lead;
        int64_t want = shape[i];
        if (j < 0) {
            if (want < 0)
                return nd_fail(ND_ERR_SHAPE, "%s: the expanded size of the tensor (%lld) isn't allowed in a leading, "
                               "non-existing dimension %d", name, (long long)want, i);
            sh[i] = want, st[i] = 0;
            continue;
        }
        if (want == -1)
            want = t->shape[j];
        if (want != t->shape[j]) {
            if (t->shape[j] != 1 || want < 0)
                return nd_fail(ND_ERR_SHAPE, "%s: the expanded size of the tensor (%lld) must match the existing size "
                               "(%lld) at non-singleton dimension %d; target sizes: %s, tensor sizes: %s", name,
                               (long long)want, (long long)t->shape[j], i, nd_shape_str(s1, sizeof s1, ndim, shape),
                               nd_shape_str(s2, sizeof s2, t->ndim, t->shape));
            sh[i] = want, st[i] = 0;
        } else {
            sh[i] = want, st[i] = t->strides[j];
        }
    }
    nd_node *node;
    return make_view(t, ND_OP_EXPAND, ndim, sh, st, t->offset, &node);
}

nd_status nd_bw_expand(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    gi[0] = nd_reduce_grad(g, node->inputs[0]);
    return gi[0] ? ND_OK : nd_last_status();
}

/* slice: every step-th element of [start, end) along dim.  da = g placed into zeros of a's
 * shape at the same positions (slice_backward, itself differentiable). iparams: dim, start, end, step. */
nd_tensor *nd_slice(nd_tensor *t, int dim, int64_t start, int64_t end, int64_t step)
{
    const char *name = "nd_slice";
    if (!t)
        return nd_fail_null(name, 0);
    if (t->ndim == 0)
        return nd_fail(ND_ERR_DIM, "%s: slicing cannot be applied to a 0-dim tensor", name);
    if (!nd_check_dim(name, &dim, t->ndim, true))
        return NULL;
    if (step <= 0)
        return nd_fail(ND_ERR_VALUE, "%s: slice step must be positive, got %lld", name, (long long)step);
    int64_t n = t->shape[dim];
    if (start < 0)
        start += n;
    if (end < 0)
        end += n;
    start = start < 0 ? 0 : start > n ? n : start;
    end = end < start ? start : end > n ? n : end;
    int64_t sh[ND_MAX_DIMS], st[ND_MAX_DIMS];
    memcpy(sh, t->shape, sizeof sh);
    memcpy(st, t->strides, sizeof st);
    sh[dim] = (end - start + step - 1) / step;
    st[dim] = t->strides[dim] * step;
    nd_node *node;
    nd_tensor *v = make_view(t, ND_OP_SLICE, t->ndim, sh, st, t->offset + start * t->strides[dim], &node);
    if (node)
        node->iparams[0] = dim, node->iparams[1] = start, node->iparams[2] = end, node->iparams[3] = step;
    return v;
}

nd_tensor *nd_narrow(nd_tensor *t, int dim, int64_t start, int64_t length)
{
    const char *name = "nd_narrow";
    if (!t)
        return nd_fail_null(name, 0);
    if (t->ndim == 0)
        return nd_fail(ND_ERR_DIM, "%s: narrow cannot be applied to a 0-dim tensor", name);
    if (!nd_check_dim(name, &dim, t->ndim, true))
        return NULL;
    int64_t n = t->shape[dim];
    if (start < -n || start > n)
        return nd_fail(ND_ERR_INDEX, "%s: start (%lld) out of range for dimension %d of size %lld", name,
                       (long long)start, dim, (long long)n);
    if (start < 0)
        start += n;
    if (length < 0 || start + length > n)
        return nd_fail(ND_ERR_INDEX, "%s: start (%lld) + length (%lld) exceeds dimension size (%lld)", name,
                       (long long)start, (long long)length, (long long)n);
    return nd_slice(t, dim, start, start + length, 1);
}

/* select: index along dim, dropping the dim.  da = slice_backward of unsqueeze(g, dim). */
nd_tensor *nd_select(nd_tensor *t, int dim, int64_t index)
{
    const char *name = "nd_select";
    if (!t)
        return nd_fail_null(name, 0);
    if (t->ndim == 0)
        return nd_fail(ND_ERR_DIM, "%s: select cannot be applied to a 0-dim tensor", name);
    if (!nd_check_dim(name, &dim, t->ndim, true))
        return NULL;
    int64_t n = t->shape[dim];
    if (index < -n || index >= n)
        return nd_fail(ND_ERR_INDEX, "%s: index %lld out of range for tensor of size %lld at dimension %d", name,
                       (long long)index, (long long)n, dim);
    if (index < 0)
        index += n;
    int64_t sh[ND_MAX_DIMS], st[ND_MAX_DIMS];
    for (int i = 0, j = 0; i < t->ndim; i++)
        if (i != dim)
            sh[j] = t->shape[i], st[j] = t->strides[i], j++;
    nd_node *node;
    nd_tensor *v = make_view(t, ND_OP_SELECT, t->ndim - 1, sh, st, t->offset + index * t->strides[dim], &node);
    if (node)
        node->iparams[0] = dim, node->iparams[1] = index;
    return v;
}

/* slice_backward (internal): zeros of `shape` with g written at the slice.  dg = slice of gg. */
static nd_tensor *slice_backward(nd_tensor *g, int ndim, const int64_t *shape, int dim, int64_t start, int64_t end,
                                 int64_t step)
{
    nd_tensor *out = nd_alloc(g->dtype, ndim, shape, true);
    if (!out)
        return NULL;
    nd_tensor *window = nd_alias(out, ndim, out->shape, out->strides, start * out->strides[dim]);
    if (!window) {
        nd_unref(out);
        return NULL;
    }
    window->shape[dim] = (end - start + step - 1) / step;
    window->strides[dim] *= step;
    nd_k_copy_into(window, g);
    nd_unref(window);
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_SLICE_BACKWARD, 1, &g, &node);
    if (node)
        node->iparams[0] = dim, node->iparams[1] = start, node->iparams[2] = end, node->iparams[3] = step;
    return out;
}

nd_status nd_bw_slice(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    const nd_tensor *in = node->inputs[0];
    gi[0] = slice_backward(g, in->ndim, in->shape, (int)node->iparams[0], node->iparams[1], node->iparams[2],
                           node->iparams[3]);
    return gi[0] ? ND_OK : nd_last_status();
}

nd_status nd_bw_select(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    const nd_tensor *in = node->inputs[0];
    int dim = (int)node->iparams[0];
    nd_tensor *u = nd_unsqueeze(g, dim);
    gi[0] = u ? slice_backward(u, in->ndim, in->shape, dim, node->iparams[1], node->iparams[1] + 1, 1) : NULL;
    return gi[0] ? ND_OK : nd_last_status();
}

nd_status nd_bw_slice_backward(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    gi[0] = nd_slice(g, (int)node->iparams[0], node->iparams[1], node->iparams[2], node->iparams[3]);
    return gi[0] ? ND_OK : nd_last_status();
}

nd_tensor *nd_flatten(nd_tensor *t, int start_dim, int end_dim)
{
    const char *name = "nd_flatten";
    if (!t)
        return nd_fail_null(name, 0);
    if (!nd_check_dim(name, &start_dim, t->ndim, true) || !nd_check_dim(name, &end_dim, t->ndim, true))
        return NULL;
    if (t->ndim == 0)
        return nd_reshape(t, 1, (const int64_t[]){1});
    if (start_dim > end_dim)
        return nd_fail(ND_ERR_DIM, "%s: start_dim (%d) cannot come after end_dim (%d)", name, start_dim, end_dim);
    if (start_dim == end_dim) /* nothing to merge: PyTorch returns the input itself */
        return nd_return_same(t);
    int64_t sh[ND_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i > start_dim && i <= end_dim)
            sh[n - 1] *= t->shape[i];
        else
            sh[n++] = t->shape[i];
    }
    return nd_reshape(t, n, sh);
}

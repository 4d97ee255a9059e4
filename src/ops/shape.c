/* Shape ops: cat, stack, split, chunk, flip, repeat, pad, tril, triu — forward and backward. */
#include "ops/common.h"

#include <stdlib.h>
#include <string.h>

/* An unregistered alias of t with one dim narrowed to [start, start + len). */
static nd_tensor *window(const nd_tensor *t, int dim, int64_t start, int64_t len)
{
    nd_tensor *w = nd_alias(t, t->ndim, t->shape, t->strides, t->offset + start * t->strides[dim]);
    if (w)
        w->shape[dim] = len;
    return w;
}

/* cat: inputs joined along dim (1-d empty tensors are skipped, as in PyTorch).
 * d(input i) = narrow(g, dim, offset_i, size_i).  iparams: dim. */
nd_tensor *nd_cat(int n, nd_tensor *const *tensors, int dim)
{
    const char *name = "nd_cat";
    if (n <= 0 || !tensors)
        return nd_fail(ND_ERR_VALUE, "%s: expected a non-empty list of tensors", name);
    if (!nd_check_inputs(name, n, tensors))
        return NULL;
    const nd_tensor *ref = NULL;
    for (int i = 0; i < n; i++)
        if (!(tensors[i]->ndim == 1 && tensors[i]->shape[0] == 0)) {
            ref = tensors[i];
            break;
        }
    if (!ref)
        ref = tensors[0];
    if (ref->ndim == 0)
        return nd_fail(ND_ERR_DIM, "%s: zero-dimensional tensor (input %d) cannot be concatenated", name, 0);
    if (!nd_check_dim(name, &dim, ref->ndim, false))
        return NULL;
    nd_dtype dtype = tensors[0]->dtype;
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        const nd_tensor *t = tensors[i];
        dtype = nd_promote_types(dtype, t->dtype);
        if (t->ndim == 1 && t->shape[0] == 0 && t != ref)
            continue;
        bool ok = t->ndim == ref->ndim;
        for (int d = 0; ok && d < t->ndim; d++)
            if (d != dim && t->shape[d] != ref->shape[d])
                ok = false;
        if (!ok) {
            char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
            return nd_fail(ND_ERR_SHAPE, "%s: sizes of tensors must match except in dimension %d: input %d has shape %s, "
                           "input 0 has shape %s", name, dim, i, nd_shape_str(s1, sizeof s1, t->ndim, t->shape),
                           nd_shape_str(s2, sizeof s2, ref->ndim, ref->shape));
        }
        total += t->shape[dim];
    }
    int64_t shape[ND_MAX_DIMS];
    memcpy(shape, ref->shape, sizeof shape);
    shape[dim] = total;
    nd_tensor *out = nd_alloc(dtype, ref->ndim, shape, false);
    if (!out)
        return NULL;
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const nd_tensor *t = tensors[i];
        if (t->ndim == 1 && t->shape[0] == 0 && t != ref)
            continue;
        nd_tensor *w = window(out, dim, offset, t->shape[dim]);
        if (!w) {
            nd_unref(out);
            return NULL;
        }
        nd_k_copy_into(w, t);
        nd_unref(w);
        offset += t->shape[dim];
    }
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_CAT, n, tensors, &node);
    if (node)
        node->iparams[0] = dim;
    return out;
}

nd_status nd_bw_cat(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    int dim = (int)node->iparams[0];
    int64_t offset = 0;
    for (int i = 0; i < node->n_inputs; i++) {
        nd_tensor *t = node->inputs[i];
        bool skipped = t->ndim == 1 && t->shape[0] == 0 && g->ndim != 1;
        int64_t len = skipped ? 0 : t->shape[dim];
        if (t->requires_grad) {
            gi[i] = skipped ? nd_register(nd_k_full(t->dtype, 1, t->shape, 0.0))
                            : nd_to(nd_narrow(g, dim, offset, len), t->dtype);
            if (!gi[i])
                return nd_last_status();
        }
        offset += len;
    }
    return ND_OK;
}

/* stack: inputs of one shape joined along a new dim.  d(input i) = select(g, dim, i). */
nd_tensor *nd_stack(int n, nd_tensor *const *tensors, int dim)
{
    const char *name = "nd_stack";
    if (n <= 0 || !tensors)
        return nd_fail(ND_ERR_VALUE, "%s: expected a non-empty list of tensors", name);
    if (!nd_check_inputs(name, n, tensors))
        return NULL;
    const nd_tensor *ref = tensors[0];
    nd_dtype dtype = ref->dtype;
    for (int i = 1; i < n; i++) {
        if (tensors[i]->ndim != ref->ndim ||
            memcmp(tensors[i]->shape, ref->shape, sizeof(int64_t) * (size_t)ref->ndim) != 0) {
            char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
            return nd_fail(ND_ERR_SHAPE, "%s: stack expects each tensor to be equal size, but got %s at entry 0 and %s "
                           "at entry %d", name, nd_shape_str(s1, sizeof s1, ref->ndim, ref->shape),
                           nd_shape_str(s2, sizeof s2, tensors[i]->ndim, tensors[i]->shape), i);
        }
        dtype = nd_promote_types(dtype, tensors[i]->dtype);
    }
    if (ref->ndim >= ND_MAX_DIMS)
        return nd_fail(ND_ERR_DIM, "%s: the result would have more than %d dims", name, ND_MAX_DIMS);
    int d = nd_wrap_dim(dim, ref->ndim + 1);
    if (d < 0)
        return nd_fail(ND_ERR_DIM, "%s: dimension out of range (expected to be in range of [%d, %d], but got %d)", name,
                       -ref->ndim - 1, ref->ndim, dim);
    int64_t shape[ND_MAX_DIMS];
    for (int i = 0, j = 0; i <= ref->ndim; i++)
        shape[i] = i == d ? n : ref->shape[j++];
    nd_tensor *out = nd_alloc(dtype, ref->ndim + 1, shape, false);
    if (!out)
        return NULL;
    for (int i = 0; i < n; i++) {
        int64_t sh[ND_MAX_DIMS], st[ND_MAX_DIMS];
        for (int k = 0, j = 0; k <= ref->ndim; k++)
            if (k != d)
                sh[j] = out->shape[k], st[j] = out->strides[k], j++;
        nd_tensor *slot = nd_alias(out, ref->ndim, sh, st, i * out->strides[d]);
        if (!slot) {
            nd_unref(out);
            return NULL;
        }
        nd_k_copy_into(slot, tensors[i]);
        nd_unref(slot);
    }
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_STACK, n, tensors, &node);
    if (node)
        node->iparams[0] = d;
    return out;
}

nd_status nd_bw_stack(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    for (int i = 0; i < node->n_inputs; i++)
        if (node->inputs[i]->requires_grad &&
            !(gi[i] = nd_to(nd_select(g, (int)node->iparams[0], i), node->inputs[i]->dtype)))
            return nd_last_status();
    return ND_OK;
}

/* split / chunk: views (narrow) along dim; return the number of pieces, or -1 on error. */
static int pieces(const char *name, nd_tensor *t, int dim, int64_t size, int64_t count, int max_outputs,
                  nd_tensor **outputs)
{
    if (!outputs || max_outputs < count)
        return nd_fail(ND_ERR_VALUE, "%s: %lld pieces do not fit in an output array of %d", name, (long long)count,
                       max_outputs), -1;
    nd_tensor *made[64];
    nd_tensor **list = count <= 64 ? made : calloc((size_t)count, sizeof *list);
    if (!list)
        return nd_fail(ND_ERR_NOMEM, "%s: out of memory", name), -1;
    nd_composite_begin();
    bool ok = true;
    for (int64_t i = 0; i < count && ok; i++) {
        int64_t start = i * size, len = t->shape[dim] - start < size ? t->shape[dim] - start : size;
        /* PyTorch's chunk is a split, and a split's pieces all have its grad_fn */
        ok = (list[i] = nd_ref(nd_name_grad_fn(nd_narrow(t, dim, start, len), "SplitBackward0", 1, &t))) != NULL;
        if (!ok)
            for (int64_t j = 0; j < i; j++)
                nd_unref(list[j]);
    }
    nd_scope_end();
    if (ok)
        for (int64_t i = 0; i < count; i++)
            outputs[i] = nd_register(list[i]);
    if (list != made)
        free(list);
    return ok ? (int)count : -1;
}

int nd_split(nd_tensor *t, int64_t split_size, int dim, int max_outputs, nd_tensor **outputs)
{
    const char *name = "nd_split";
    if (!t)
        return nd_fail_null(name, 0), -1;
    if (!nd_check_dim(name, &dim, t->ndim, false))
        return -1;
    if (split_size <= 0 && !(split_size == 0 && t->shape[dim] == 0))
        return nd_fail(ND_ERR_VALUE, "%s: split_size must be positive, got %lld", name, (long long)split_size), -1;
    int64_t n = t->shape[dim];
    int64_t count = split_size ? (n + split_size - 1) / split_size : 1;
    if (count == 0)
        count = 1;
    return pieces(name, t, dim, split_size ? split_size : 0, count, max_outputs, outputs);
}

int nd_chunk(nd_tensor *t, int64_t chunks, int dim, int max_outputs, nd_tensor **outputs)
{
    const char *name = "nd_chunk";
    if (!t)
        return nd_fail_null(name, 0), -1;
    if (!nd_check_dim(name, &dim, t->ndim, false))
        return -1;
    if (chunks <= 0)
        return nd_fail(ND_ERR_VALUE, "%s: chunks must be positive, got %lld", name, (long long)chunks), -1;
    int64_t n = t->shape[dim];
    int64_t size = (n + chunks - 1) / chunks;
    if (size == 0)
        return pieces(name, t, dim, 0, 1, max_outputs, outputs);
    return pieces(name, t, dim, size, (n + size - 1) / size, max_outputs, outputs);
}

/* flip: reverse the order along each listed dim (a copy, as in PyTorch).  da = flip(g). */
nd_tensor *nd_flip(nd_tensor *t, int ndims, const int64_t *dims)
{
    const char *name = "nd_flip";
    if (!t)
        return nd_fail_null(name, 0);
    bool mask[ND_MAX_DIMS];
    if (!nd_dims_mask(name, t->ndim, ndims, dims, mask))
        return NULL;
    nd_tensor *rev = nd_alias(t, t->ndim, t->shape, t->strides, t->offset);
    if (!rev)
        return NULL;
    for (int i = 0; i < t->ndim; i++)
        if (mask[i] && t->shape[i] > 0) {
            rev->offset += (t->shape[i] - 1) * t->strides[i];
            rev->strides[i] = -t->strides[i];
        }
    nd_tensor *out = nd_k_copy(rev, t->dtype);
    nd_unref(rev);
    if (!out)
        return NULL;
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_FLIP, 1, &t, &node);
    if (node)
        for (int i = 0; i < t->ndim; i++)
            node->iparams[i] = mask[i];
    return out;
}

nd_status nd_bw_flip(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    int64_t dims[ND_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < node->inputs[0]->ndim; i++)
        if (node->iparams[i])
            dims[n++] = i;
    gi[0] = nd_flip(g, n, dims);
    return gi[0] ? ND_OK : nd_last_status();
}

/* repeat: tile t reps[i] times along each dim (reps may have more dims than t).
 * da = g folded as [.., r_i, s_i, ..] per dim and summed over the r_i, then over the new leading
 * dims.  iparams: reps. */
nd_tensor *nd_repeat(nd_tensor *t, int n, const int64_t *reps)
{
    const char *name = "nd_repeat";
    if (!t)
        return nd_fail_null(name, 0);
    if (n < t->ndim || (n > 0 && !reps))
        return nd_fail(ND_ERR_VALUE, "%s: number of repeat dims (%d) can not be smaller than the number of tensor dims (%d)",
                       name, n, t->ndim);
    if (n > ND_MAX_DIMS)
        return nd_fail(ND_ERR_DIM, "%s: too many dims (%d)", name, n);
    for (int i = 0; i < n; i++)
        if (reps[i] < 0)
            return nd_fail(ND_ERR_VALUE, "%s: repeats must be non-negative, got %lld", name, (long long)reps[i]);
    int64_t src[ND_MAX_DIMS], shape[ND_MAX_DIMS];
    int lead = n - t->ndim;
    for (int i = 0; i < n; i++) {
        src[i] = i < lead ? 1 : t->shape[i - lead];
        shape[i] = src[i] * reps[i];
    }
    nd_tensor *out = nd_alloc(t->dtype, n, shape, false);
    nd_tensor *base = out ? nd_alias(t, n, src, t->strides, t->offset) : NULL;
    if (!base) {
        nd_unref(out);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        base->strides[i] = i < lead ? 0 : t->strides[i - lead];
    /* Copy every tile: tile k covers [k_i s_i, (k_i + 1) s_i) along each dim i. */
    int64_t tiles = nd_shape_numel(n, reps);
    for (int64_t k = 0; k < tiles; k++) {
        nd_tensor *w = nd_alias(out, n, src, out->strides, 0);
        if (!w)
            break;
        int64_t rest = k;
        for (int i = n - 1; i >= 0; i--) {
            w->offset += (rest % reps[i]) * src[i] * out->strides[i];
            rest /= reps[i];
        }
        nd_k_copy_into(w, base);
        nd_unref(w);
    }
    nd_unref(base);
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_REPEAT, 1, &t, &node);
    if (node) {
        node->n_iparams = n;
        for (int i = 0; i < n; i++)
            node->iparams[i] = reps[i];
    }
    return out;
}

nd_status nd_bw_repeat(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    const nd_tensor *t = node->inputs[0];
    int n = node->n_iparams, lead = n - t->ndim;
    nd_tensor *r = g;
    /* One dim at a time, so the folded shape never exceeds ND_MAX_DIMS + 1 dims. */
    for (int i = n - 1; i >= lead && r; i--) {
        int64_t reps = node->iparams[i], size = t->shape[i - lead];
        if (reps == 1)
            continue;
        int64_t sh[ND_MAX_DIMS + 1];
        int k = 0;
        for (int j = 0; j < r->ndim; j++) {
            if (j == i) {
                sh[k++] = reps;
                sh[k++] = size;
            } else {
                sh[k++] = r->shape[j];
            }
        }
        if (k > ND_MAX_DIMS)
            return nd_fail_status(ND_ERR_DIM, "nd_repeat backward: too many dims");
        r = nd_sum_dims(nd_reshape(r, k, sh), 1, (const int64_t[]){i}, false);
    }
    if (r && lead > 0) {
        int64_t dims[ND_MAX_DIMS];
        for (int i = 0; i < lead; i++)
            dims[i] = i;
        r = nd_sum_dims(r, lead, dims, false);
    }
    gi[0] = r ? nd_reshape(r, t->ndim, t->shape) : NULL;
    return gi[0] ? ND_OK : nd_last_status();
}

/* pad: constant padding, pads = (left, right) pairs starting from the last dim; negative values
 * crop.  da = pad(g, -pads) (the transpose of padding is cropping).  iparams: pads. */
nd_tensor *nd_pad(nd_tensor *t, int npads, const int64_t *pads, double value)
{
    const char *name = "nd_pad";
    if (!t)
        return nd_fail_null(name, 0);
    if (npads < 0 || npads % 2 || npads / 2 > t->ndim || (npads > 0 && !pads))
        return nd_fail(ND_ERR_VALUE, "%s: padding length must be even and at most twice the number of dims (%d), got %d",
                       name, t->ndim, npads);
    int64_t shape[ND_MAX_DIMS], in_start[ND_MAX_DIMS], out_start[ND_MAX_DIMS], len[ND_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) {
        int k = t->ndim - 1 - d; /* pair index for this dim */
        int64_t l = 2 * k < npads ? pads[2 * k] : 0, r = 2 * k < npads ? pads[2 * k + 1] : 0;
        shape[d] = t->shape[d] + l + r;
        if (shape[d] < 0) {
            char b[ND_SHAPE_BUF];
            return nd_fail(ND_ERR_SHAPE, "%s: padding (%lld, %lld) of dim %d makes the size negative (input shape %s)", name,
                           (long long)l, (long long)r, d, nd_shape_str(b, sizeof b, t->ndim, t->shape));
        }
        in_start[d] = l < 0 ? -l : 0;
        out_start[d] = l > 0 ? l : 0;
        len[d] = t->shape[d] - in_start[d] - (r < 0 ? -r : 0);
        if (len[d] < 0)
            len[d] = 0;
    }
    nd_tensor *out = nd_k_full(t->dtype, t->ndim, shape, value);
    if (!out)
        return NULL;
    nd_tensor *dst = nd_alias(out, t->ndim, len, out->strides, 0);
    nd_tensor *src = nd_alias(t, t->ndim, len, t->strides, t->offset);
    if (dst && src) {
        for (int d = 0; d < t->ndim; d++) {
            dst->offset += out_start[d] * out->strides[d];
            src->offset += in_start[d] * t->strides[d];
        }
        nd_k_copy_into(dst, src);
    }
    bool ok = dst && src;
    nd_unref(dst);
    nd_unref(src);
    if (!ok) {
        nd_unref(out);
        return NULL;
    }
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_PAD, 1, &t, &node);
    if (node) {
        node->n_iparams = npads;
        for (int i = 0; i < npads; i++)
            node->iparams[i] = pads[i];
    }
    return out;
}

nd_status nd_bw_pad(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    int64_t neg[2 * ND_MAX_DIMS];
    for (int i = 0; i < node->n_iparams; i++)
        neg[i] = -node->iparams[i];
    gi[0] = nd_pad(g, node->n_iparams, neg, 0.0);
    return gi[0] ? ND_OK : nd_last_status();
}

/* tril / triu: keep the elements on and below (above) the k-th diagonal of the last two dims.
 * da = tril(g, k) / triu(g, k).  iparams: k. */
static nd_tensor *triangle(const char *name, nd_op op, nd_tensor *t, int64_t k)
{
    if (!t)
        return nd_fail_null(name, 0);
    if (t->ndim < 2)
        return nd_fail(ND_ERR_DIM, "%s: input tensor must have at least 2 dimensions, got %d", name, t->ndim);
    int64_t rows = t->shape[t->ndim - 2], cols = t->shape[t->ndim - 1];
    int64_t mshape[2] = {rows, cols};
    nd_tensor *keep = nd_alloc(ND_BOOL, 2, mshape, false);
    nd_tensor *zero = keep ? nd_k_full(t->dtype, 0, NULL, 0.0) : NULL;
    nd_tensor *out = zero ? nd_alloc(t->dtype, t->ndim, t->shape, false) : NULL;
    if (out) {
        uint8_t *m = keep->storage->data;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++)
                m[i * cols + j] = op == ND_OP_TRIL ? j - i <= k : j - i >= k;
        int64_t sc[ND_MAX_DIMS], sz[ND_MAX_DIMS] = {0};
        nd_broadcast_strides(keep, t->ndim, t->shape, sc);
        char *ptrs[4] = {nd_data_ptr(out), nd_data_ptr(keep), nd_data_ptr(t), nd_data_ptr(zero)};
        const int64_t *strides[4] = {out->strides, sc, t->strides, sz};
        size_t es = nd_dtype_size(t->dtype);
        size_t sizes[4] = {es, 1, es, es};
        nd_iter it;
        nd_iter_init(&it, t->ndim, t->shape, 4, ptrs, strides, sizes);
        nd_backend_get()->where(t->dtype, &it);
    }
    nd_unref(keep);
    nd_unref(zero);
    if (!out)
        return NULL;
    nd_node *node = NULL;
    out = nd_finish(out, op, 1, &t, &node);
    if (node)
        node->iparams[0] = k;
    return out;
}

nd_tensor *nd_tril(nd_tensor *t, int64_t k) { return triangle("nd_tril", ND_OP_TRIL, t, k); }
nd_tensor *nd_triu(nd_tensor *t, int64_t k) { return triangle("nd_triu", ND_OP_TRIU, t, k); }

nd_status nd_bw_triangle(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    gi[0] = node->op == ND_OP_TRIL ? nd_tril(g, node->iparams[0]) : nd_triu(g, node->iparams[0]);
    return gi[0] ? ND_OK : nd_last_status();
}

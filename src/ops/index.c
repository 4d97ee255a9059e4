/* Indexing ops: gather, scatter_add, index_select, index_add, embedding, one_hot and basic
 * integer/slice indexing. Each linear op's backward is its transpose, which is again an op here,
 * so gradients of gradients work. Every index is checked before any kernel runs. */
#include "ops/common.h"

#include <string.h>

#define WANT(i) (node->inputs[i] && node->inputs[i]->requires_grad)

/* All index values within [0, size): otherwise an error naming the op and the first bad one. */
static bool check_index_values(const char *name, const nd_tensor *index, int64_t size, int dim)
{
    int64_t n = nd_numel(index);
    if (nd_is_contiguous(index)) { /* the common case: one pass over the data */
        const int64_t *d = nd_data_ptr(index);
        int64_t bad = -1;
        for (int64_t i = 0; i < n; i++)
            if ((uint64_t)d[i] >= (uint64_t)size)
                bad = bad < 0 ? i : bad;
        if (bad < 0)
            return true;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t v = *(const int64_t *)nd_elem_ptr(index, i);
        if (v < 0 || v >= size) {
            nd_fail(ND_ERR_INDEX, "%s: index %lld is out of bounds for dimension %d with size %lld", name, (long long)v,
                    dim, (long long)size);
            return false;
        }
    }
    return true;
}

static bool check_index_dtype(const char *name, const nd_tensor *index)
{
    if (index->dtype != ND_INT64) {
        nd_fail(ND_ERR_DTYPE, "%s: expected an int64 index tensor, got %s", name, nd_dtype_name(index->dtype));
        return false;
    }
    return true;
}

/* Runs the gather kernel: out (index's shape) = base[index along dim]. index_strides lets
 * index_select pass a broadcast 1-d index. */
static void run_gather(nd_tensor *out, const nd_tensor *base, int dim, const nd_tensor *index, const int64_t *index_strides)
{
    int64_t bs[ND_MAX_DIMS];
    for (int i = 0; i < out->ndim; i++)
        bs[i] = i == dim ? 0 : base->strides[i];
    char *ptrs[3] = {nd_data_ptr(out), nd_data_ptr(index), nd_data_ptr(base)};
    const int64_t *strides[3] = {out->strides, index_strides, bs};
    size_t es = nd_dtype_size(base->dtype);
    size_t sizes[3] = {es, 8, es};
    nd_iter it;
    nd_iter_init(&it, out->ndim, out->shape, 3, ptrs, strides, sizes);
    nd_backend_get()->gather(base->dtype, &it, base->ndim ? base->strides[dim] * (int64_t)es : 0);
}

/* Runs the scatter-add kernel: target[index along dim] += src over src's (index's) shape. */
static void run_scatter_add(nd_tensor *target, int dim, const nd_tensor *index, const int64_t *index_strides,
                            const nd_tensor *src, const int64_t *shape, int ndim)
{
    int64_t ts[ND_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        ts[i] = i == dim ? 0 : target->strides[i];
    char *ptrs[3] = {nd_data_ptr(target), nd_data_ptr(index), nd_data_ptr(src)};
    const int64_t *strides[3] = {ts, index_strides, src->strides};
    size_t es = nd_dtype_size(target->dtype);
    size_t sizes[3] = {es, 8, es};
    nd_iter it;
    nd_iter_init(&it, ndim, shape, 3, ptrs, strides, sizes);
    nd_backend_get()->scatter_add(target->dtype, &it, target->ndim ? target->strides[dim] * (int64_t)es : 0);
}

/* gather: out[..i..] = a[..index[..i..]..] along dim (out has index's shape).
 * da = scatter_add(zeros like a, dim, index, g). */
nd_tensor *nd_gather(nd_tensor *a, int dim, nd_tensor *index)
{
    const char *name = "nd_gather";
    nd_tensor *ins[2] = {a, index};
    if (!nd_check_inputs(name, 2, ins) || !check_index_dtype(name, index) || !nd_check_dim(name, &dim, a->ndim, true))
        return NULL;
    char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
    bool ok = index->ndim == a->ndim || (nd_numel(index) == 0);
    for (int i = 0; ok && i < a->ndim; i++)
        if (i != dim && index->shape[i] > a->shape[i])
            ok = false;
    if (!ok)
        return nd_fail(ND_ERR_SHAPE, "%s: index shape %s does not fit input shape %s (same number of dims, and no "
                       "larger than the input outside dim %d)", name, nd_shape_str(s1, sizeof s1, index->ndim, index->shape),
                       nd_shape_str(s2, sizeof s2, a->ndim, a->shape), dim);
    if (!check_index_values(name, index, a->ndim ? a->shape[dim] : 1, dim))
        return NULL;
    nd_tensor *out = nd_alloc(a->dtype, index->ndim, index->shape, false);
    if (!out)
        return NULL;
    run_gather(out, a, dim, index, index->strides);
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_GATHER, 2, ins, &node);
    if (node)
        node->iparams[0] = dim;
    return out;
}

nd_status nd_bw_gather(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *a = node->inputs[0];
    nd_tensor *zeros = nd_register(nd_k_full(g->dtype, a->ndim, a->shape, 0.0));
    gi[0] = zeros ? nd_scatter_add(zeros, (int)node->iparams[0], node->inputs[1], g) : NULL;
    return gi[0] ? ND_OK : nd_last_status();
}

/* scatter_add: out = a with src added at index along dim (out of place).
 * da = g;  dsrc = gather(g, dim, index). */
nd_tensor *nd_scatter_add(nd_tensor *a, int dim, nd_tensor *index, nd_tensor *src)
{
    const char *name = "nd_scatter_add";
    nd_tensor *ins[3] = {a, index, src};
    if (!nd_check_inputs(name, 3, ins) || !check_index_dtype(name, index) || !nd_check_dim(name, &dim, a->ndim, true))
        return NULL;
    if (src->dtype != a->dtype)
        return nd_fail(ND_ERR_DTYPE, "%s: src (%s) must have the dtype of the input (%s)", name, nd_dtype_name(src->dtype),
                       nd_dtype_name(a->dtype));
    char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF], s3[ND_SHAPE_BUF];
    bool ok = nd_numel(index) == 0 || (index->ndim == a->ndim && src->ndim == a->ndim);
    for (int i = 0; ok && nd_numel(index) && i < a->ndim; i++)
        if (index->shape[i] > src->shape[i] || (i != dim && index->shape[i] > a->shape[i]))
            ok = false;
    if (!ok)
        return nd_fail(ND_ERR_SHAPE, "%s: index %s must be no larger than src %s, and than the input %s outside dim %d",
                       name, nd_shape_str(s1, sizeof s1, index->ndim, index->shape),
                       nd_shape_str(s2, sizeof s2, src->ndim, src->shape), nd_shape_str(s3, sizeof s3, a->ndim, a->shape), dim);
    if (!check_index_values(name, index, a->ndim ? a->shape[dim] : 1, dim))
        return NULL;
    nd_tensor *out = nd_k_copy(a, a->dtype);
    if (!out)
        return NULL;
    if (nd_numel(index))
        run_scatter_add(out, dim, index, index->strides, src, index->shape, index->ndim);
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_SCATTER_ADD, 3, ins, &node);
    if (node)
        node->iparams[0] = dim;
    return out;
}

nd_status nd_bw_scatter_add(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    int dim = (int)node->iparams[0];
    if (WANT(0))
        gi[0] = g;
    if (WANT(2)) {
        nd_tensor *index = node->inputs[1], *src = node->inputs[2];
        nd_tensor *picked = nd_gather(g, dim, index);
        /* src may be larger than index: its other elements get no gradient. */
        if (picked && nd_numel(index) != nd_numel(src)) {
            int64_t pads[2 * ND_MAX_DIMS];
            for (int i = 0; i < src->ndim; i++) {
                int k = src->ndim - 1 - i;
                pads[2 * i] = 0;
                pads[2 * i + 1] = src->shape[k] - index->shape[k];
            }
            picked = nd_pad(picked, 2 * src->ndim, pads, 0.0);
        }
        if (!(gi[2] = picked))
            return nd_last_status();
    }
    return ND_OK;
}

/* A 1-d (or 0-d) index seen as a tensor of `shape` varying only along dim. */
static void broadcast_index_strides(const nd_tensor *index, int ndim, int dim, int64_t *strides)
{
    for (int i = 0; i < ndim; i++)
        strides[i] = i == dim && index->ndim == 1 ? index->strides[0] : 0;
}

/* index_select: the entries index[0..n) of a along dim.  da = index_add(zeros, dim, index, g). */
nd_tensor *nd_index_select(nd_tensor *a, int dim, nd_tensor *index)
{
    const char *name = "nd_index_select";
    nd_tensor *ins[2] = {a, index};
    if (!nd_check_inputs(name, 2, ins) || !check_index_dtype(name, index) || !nd_check_dim(name, &dim, a->ndim, true))
        return NULL;
    if (index->ndim > 1) {
        char b[ND_SHAPE_BUF];
        return nd_fail(ND_ERR_SHAPE, "%s: index must be 0-d or 1-d, got shape %s", name,
                       nd_shape_str(b, sizeof b, index->ndim, index->shape));
    }
    if (!check_index_values(name, index, a->ndim ? a->shape[dim] : 1, dim))
        return NULL;
    int64_t shape[ND_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++)
        shape[i] = i == dim ? nd_numel(index) : a->shape[i];
    nd_tensor *out = nd_alloc(a->dtype, a->ndim, shape, false);
    if (!out)
        return NULL;
    int64_t is[ND_MAX_DIMS];
    broadcast_index_strides(index, a->ndim, dim, is);
    if (a->ndim == 0) /* a scalar: index 0 selects it */
        nd_k_copy_into(out, a);
    else
        run_gather(out, a, dim, index, is);
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_INDEX_SELECT, 2, ins, &node);
    if (node)
        node->iparams[0] = dim;
    return out;
}

nd_status nd_bw_index_select(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *a = node->inputs[0];
    nd_tensor *zeros = nd_register(nd_k_full(g->dtype, a->ndim, a->shape, 0.0));
    gi[0] = zeros ? nd_index_add(zeros, (int)node->iparams[0], node->inputs[1], g) : NULL;
    return gi[0] ? ND_OK : nd_last_status();
}

/* index_add: out = a with src's slices added at rows index[i] along dim (repeats accumulate).
 * da = g;  dsrc = index_select(g, dim, index). */
nd_tensor *nd_index_add(nd_tensor *a, int dim, nd_tensor *index, nd_tensor *src)
{
    const char *name = "nd_index_add";
    nd_tensor *ins[3] = {a, index, src};
    if (!nd_check_inputs(name, 3, ins) || !check_index_dtype(name, index) || !nd_check_dim(name, &dim, a->ndim, true))
        return NULL;
    if (src->dtype != a->dtype)
        return nd_fail(ND_ERR_DTYPE, "%s: src (%s) must have the dtype of the input (%s)", name, nd_dtype_name(src->dtype),
                       nd_dtype_name(a->dtype));
    bool ok = index->ndim <= 1 && src->ndim == a->ndim;
    for (int i = 0; ok && i < a->ndim; i++)
        if (src->shape[i] != (i == dim ? nd_numel(index) : a->shape[i]))
            ok = false;
    if (!ok) {
        char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF], s3[ND_SHAPE_BUF];
        return nd_fail(ND_ERR_SHAPE, "%s: src %s must have the input's shape %s with dim %d of the index's length (index %s)",
                       name, nd_shape_str(s1, sizeof s1, src->ndim, src->shape), nd_shape_str(s2, sizeof s2, a->ndim, a->shape),
                       dim, nd_shape_str(s3, sizeof s3, index->ndim, index->shape));
    }
    if (!check_index_values(name, index, a->ndim ? a->shape[dim] : 1, dim))
        return NULL;
    nd_tensor *out = nd_k_copy(a, a->dtype);
    if (!out)
        return NULL;
    int64_t is[ND_MAX_DIMS];
    broadcast_index_strides(index, a->ndim, dim, is);
    if (nd_numel(src))
        run_scatter_add(out, dim, index, is, src, src->shape, src->ndim);
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_INDEX_ADD, 3, ins, &node);
    if (node)
        node->iparams[0] = dim;
    return out;
}

nd_status nd_bw_index_add(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    if (WANT(0))
        gi[0] = g;
    if (WANT(2) && !(gi[2] = nd_index_select(g, (int)node->iparams[0], node->inputs[1])))
        return nd_last_status();
    return ND_OK;
}

/* embedding: rows of weight [V, D] picked by int64 indices of any shape -> indices.shape + [D].
 * dweight = index_add(zeros, 0, indices, g rows): repeated indices accumulate. */
nd_tensor *nd_embedding(nd_tensor *weight, nd_tensor *indices)
{
    const char *name = "nd_embedding";
    nd_tensor *ins[2] = {weight, indices};
    if (!nd_check_inputs(name, 2, ins) || !check_index_dtype(name, indices))
        return NULL;
    if (weight->ndim != 2) {
        char b[ND_SHAPE_BUF];
        return nd_fail(ND_ERR_SHAPE, "%s: weight must be 2-d [num_embeddings, dim], got %s", name,
                       nd_shape_str(b, sizeof b, weight->ndim, weight->shape));
    }
    if (indices->ndim >= ND_MAX_DIMS)
        return nd_fail(ND_ERR_DIM, "%s: indices have too many dims (%d)", name, indices->ndim);
    if (!check_index_values(name, indices, weight->shape[0], 0))
        return NULL;
    int64_t shape[ND_MAX_DIMS];
    for (int i = 0; i < indices->ndim; i++)
        shape[i] = indices->shape[i];
    int64_t D = weight->shape[1], n = nd_numel(indices);
    shape[indices->ndim] = D;
    nd_tensor *out = nd_alloc(weight->dtype, indices->ndim + 1, shape, false);
    nd_tensor *flat_idx = out ? nd_alias(indices, 1, &n, (const int64_t[]){0}, indices->offset) : NULL;
    nd_tensor *idx = flat_idx && !nd_is_contiguous(indices) ? nd_k_copy(indices, ND_INT64) : NULL;
    if (!flat_idx || (!nd_is_contiguous(indices) && !idx)) {
        nd_unref(out);
        nd_unref(flat_idx);
        return NULL;
    }
    nd_unref(flat_idx);
    const nd_tensor *src_idx = idx ? idx : indices;
    int64_t rows[2] = {n, D};
    nd_tensor *out2 = nd_alias(out, 2, rows, (const int64_t[]){D, 1}, 0);
    int64_t is[2] = {1, 0};
    nd_tensor *idx_view = out2 ? nd_alias(src_idx, 1, &n, (const int64_t[]){1}, src_idx->offset) : NULL;
    if (idx_view)
        run_gather(out2, weight, 0, idx_view, is);
    bool ok = idx_view != NULL;
    nd_unref(idx_view);
    nd_unref(out2);
    nd_unref(idx);
    if (!ok) {
        nd_unref(out);
        return NULL;
    }
    return nd_finish(out, ND_OP_EMBEDDING, 2, ins, NULL);
}

nd_status nd_bw_embedding(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *weight = node->inputs[0], *indices = node->inputs[1];
    int64_t n = nd_numel(indices), rows[2] = {n, weight->shape[1]};
    nd_tensor *zeros = nd_register(nd_k_full(g->dtype, 2, weight->shape, 0.0));
    gi[0] = zeros ? nd_index_add(zeros, 0, nd_reshape(indices, 1, &n), nd_reshape(g, 2, rows)) : NULL;
    return gi[0] ? ND_OK : nd_last_status();
}

/* one_hot: int64 [.., C] with a 1 at each index (num_classes < 0: max index + 1). */
nd_tensor *nd_one_hot(nd_tensor *indices, int64_t num_classes)
{
    const char *name = "nd_one_hot";
    if (!indices)
        return nd_fail_null(name, 0);
    if (!check_index_dtype(name, indices))
        return NULL;
    if (indices->ndim >= ND_MAX_DIMS)
        return nd_fail(ND_ERR_DIM, "%s: indices have too many dims (%d)", name, indices->ndim);
    int64_t n = nd_numel(indices);
    if (num_classes < 0) {
        if (n == 0)
            return nd_fail(ND_ERR_VALUE, "%s: can not infer the number of classes from an empty tensor", name);
        num_classes = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t v = *(const int64_t *)nd_elem_ptr(indices, i);
            if (v + 1 > num_classes)
                num_classes = v + 1;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t v = *(const int64_t *)nd_elem_ptr(indices, i);
        if (v < 0 || v >= num_classes)
            return nd_fail(ND_ERR_INDEX, "%s: class values must be in [0, %lld), got %lld", name, (long long)num_classes,
                           (long long)v);
    }
    int64_t shape[ND_MAX_DIMS];
    for (int i = 0; i < indices->ndim; i++)
        shape[i] = indices->shape[i];
    shape[indices->ndim] = num_classes;
    nd_tensor *out = nd_alloc(ND_INT64, indices->ndim + 1, shape, true);
    if (!out)
        return NULL;
    int64_t *d = out->storage->data;
    for (int64_t i = 0; i < n; i++)
        d[i * num_classes + *(const int64_t *)nd_elem_ptr(indices, i)] = 1;
    return nd_register(out);
}

/* Basic indexing, t[spec0, spec1, ...]: integers select (dropping the dim), slices keep it,
 * ND_NEWAXIS inserts a size-1 dim. Built from select / slice / unsqueeze views. */
nd_tensor *nd_index(nd_tensor *t, int n, const nd_index_spec *specs)
{
    const char *name = "nd_index";
    if (!t)
        return nd_fail_null(name, 0);
    if (n < 0 || (n > 0 && !specs))
        return nd_fail(ND_ERR_VALUE, "%s: invalid index list", name);
    int consumed = 0;
    for (int i = 0; i < n; i++)
        if (specs[i].kind != ND_INDEX_NEWAXIS)
            consumed++;
    if (consumed > t->ndim)
        return nd_fail(ND_ERR_INDEX, "%s: too many indices for a tensor of dimension %d (got %d)", name, t->ndim, consumed);
    nd_composite_begin();
    nd_tensor *r = t;
    int dim = 0;
    for (int i = 0; i < n && r; i++) {
        switch (specs[i].kind) {
        case ND_INDEX_INT:
            r = nd_select(r, dim, specs[i].start);
            break;
        case ND_INDEX_SLICE:
            r = nd_slice(r, dim, specs[i].start, specs[i].stop, specs[i].step);
            dim++;
            break;
        case ND_INDEX_NEWAXIS:
            r = nd_unsqueeze(r, dim);
            dim++;
            break;
        default:
            r = nd_fail(ND_ERR_VALUE, "%s: unknown index kind %d at position %d", name, (int)specs[i].kind, i);
        }
    }
    if (r == t) /* no specs: a plain view, as t[...] in PyTorch */
        r = nd_view(t, t->ndim, t->shape);
    return nd_composite_end(r);
}

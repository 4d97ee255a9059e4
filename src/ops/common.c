/* Shared op machinery: broadcasting geometry, graph-free kernel calls, gradient reduction. */
#include "ops/common.h"

#include <string.h>

void nd_broadcast_strides(const nd_tensor *t, int ndim, const int64_t *shape, int64_t *strides)
{
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int j = i - lead;
        strides[i] = (j < 0 || (t->shape[j] == 1 && shape[i] != 1)) ? 0 : t->strides[j];
    }
}

bool nd_check_dim(const char *op, int *dim, int ndim, bool allow_scalar)
{
    int d = nd_wrap_dim(*dim, ndim);
    if (d < 0 || (ndim == 0 && !allow_scalar)) {
        nd_fail(ND_ERR_DIM, "%s: dimension out of range (expected to be in range of [%d, %d], but got %d)", op,
                ndim ? -ndim : -1, ndim ? ndim - 1 : 0, *dim);
        return false;
    }
    *dim = ndim ? d : 0;
    return true;
}

static char *base_ptr(const nd_tensor *t) { return nd_data_ptr(t); }

void nd_k_copy_into(nd_tensor *dst, const nd_tensor *src)
{
    int64_t ss[ND_MAX_DIMS];
    nd_broadcast_strides(src, dst->ndim, dst->shape, ss);
    char *ptrs[2] = {base_ptr(dst), base_ptr(src)};
    const int64_t *strides[2] = {dst->strides, ss};
    size_t sizes[2] = {nd_dtype_size(dst->dtype), nd_dtype_size(src->dtype)};
    nd_iter it;
    nd_iter_init(&it, dst->ndim, dst->shape, 2, ptrs, strides, sizes);
    nd_backend_get()->cast(dst->dtype, src->dtype, &it);
}

nd_tensor *nd_k_copy(const nd_tensor *src, nd_dtype dtype)
{
    nd_tensor *out = nd_alloc(dtype, src->ndim, src->shape, false);
    if (out)
        nd_k_copy_into(out, src);
    return out;
}

/* a has out's shape and is dense: the common case, which needs no broadcast or dim merging. */
static bool dense_like(const nd_tensor *a, const nd_tensor *out)
{
    if (a->ndim != out->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != out->shape[i])
            return false;
    return nd_is_contiguous(a);
}

void nd_k_binary_into(nd_binop op, nd_tensor *out, const nd_tensor *a, const nd_tensor *b)
{
    if (dense_like(a, out) && dense_like(b, out) && nd_is_contiguous(out)) { /* one flat row */
        nd_iter it; /* only the fields a 1-d, 3-operand iteration reads (the struct is large) */
        it.ndim = 1, it.nops = 3, it.shape[0] = nd_numel(out);
        it.ptr[0] = base_ptr(out), it.ptr[1] = base_ptr(a), it.ptr[2] = base_ptr(b);
        it.strides[0][0] = (int64_t)nd_dtype_size(out->dtype);
        it.strides[1][0] = it.strides[2][0] = (int64_t)nd_dtype_size(a->dtype);
        nd_backend_get()->binary(op, a->dtype, &it);
        return;
    }
    int64_t sa[ND_MAX_DIMS], sb[ND_MAX_DIMS];
    nd_broadcast_strides(a, out->ndim, out->shape, sa);
    nd_broadcast_strides(b, out->ndim, out->shape, sb);
    char *ptrs[3] = {base_ptr(out), base_ptr(a), base_ptr(b)};
    const int64_t *strides[3] = {out->strides, sa, sb};
    size_t es = nd_dtype_size(a->dtype);
    size_t sizes[3] = {nd_dtype_size(out->dtype), es, es};
    nd_iter it;
    nd_iter_init(&it, out->ndim, out->shape, 3, ptrs, strides, sizes);
    nd_backend_get()->binary(op, a->dtype, &it);
}

nd_tensor *nd_k_full(nd_dtype dtype, int ndim, const int64_t *shape, double value)
{
    nd_tensor *out = nd_alloc(dtype, ndim, shape, false);
    if (!out)
        return NULL;
    uint64_t cell = 0; /* one element of dtype, broadcast with stride 0 */
    nd_store(&cell, dtype, value);
    int64_t zero[ND_MAX_DIMS] = {0};
    char *ptrs[2] = {base_ptr(out), (char *)&cell};
    const int64_t *strides[2] = {out->strides, zero};
    size_t es = nd_dtype_size(dtype);
    size_t sizes[2] = {es, es};
    nd_iter it;
    nd_iter_init(&it, ndim, shape, 2, ptrs, strides, sizes);
    nd_backend_get()->cast(dtype, dtype, &it);
    return out;
}

nd_tensor *nd_k_wrapped_scalar(double value, nd_dtype dtype)
{
    nd_tensor *t = nd_alloc(dtype, 0, NULL, false);
    if (!t)
        return NULL;
    nd_store(t->storage->data, dtype, value);
    t->wrapped_number = true;
    return t;
}

nd_tensor *nd_sum_to(nd_tensor *g, int ndim, const int64_t *shape, nd_dtype dtype)
{
    if (!g)
        return NULL;
    int lead = g->ndim - ndim;
    int64_t dims[ND_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < g->ndim; i++)
        if (i < lead || (shape[i - lead] == 1 && g->shape[i] != 1))
            dims[nd++] = i;
    if (nd == 0 && g->dtype == dtype)
        return g;
    nd_composite_begin();
    nd_tensor *r = g;
    if (nd > 0) {
        r = nd_sum_dims(g, nd, dims, true);
        if (r && lead > 0)
            r = nd_reshape(r, ndim, shape);
    }
    if (r && r->dtype != dtype)
        r = nd_to(r, dtype);
    return nd_composite_end(r);
}

nd_tensor *nd_reduce_grad(nd_tensor *g, const nd_tensor *input)
{
    return nd_sum_to(g, input->ndim, input->shape, input->dtype);
}

nd_tensor *nd_mask(nd_binop op, nd_tensor *a, double b, nd_dtype dtype)
{
    nd_tensor *scalar = nd_k_full(a->dtype, 0, NULL, b);
    nd_tensor *bits = nd_alloc(ND_BOOL, a->ndim, a->shape, false);
    nd_tensor *out = bits ? nd_alloc(dtype, a->ndim, a->shape, false) : NULL;
    if (scalar && bits && out) {
        nd_k_binary_into(op, bits, a, scalar);
        nd_k_copy_into(out, bits);
    } else {
        nd_unref(out);
        out = NULL;
    }
    nd_unref(scalar);
    nd_unref(bits);
    return nd_register(out);
}

/* Broadcast shape of a and b, or an error in PyTorch's words. */
static bool broadcast_or_fail(const char *name, const nd_tensor *a, const nd_tensor *b, int *nd, int64_t *shape)
{
    if (a->ndim == b->ndim) { /* equal shapes, the usual case, need no broadcasting rules */
        int i = 0;
        while (i < a->ndim && a->shape[i] == b->shape[i])
            shape[i] = a->shape[i], i++;
        if (i == a->ndim) {
            *nd = a->ndim;
            return true;
        }
    }
    if (nd_broadcast_shapes(a->ndim, a->shape, b->ndim, b->shape, nd, shape))
        return true;
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < n; i++) {
        int ia = i - (n - a->ndim), ib = i - (n - b->ndim);
        int64_t da = ia < 0 ? 1 : a->shape[ia], db = ib < 0 ? 1 : b->shape[ib];
        if (da != db && da != 1 && db != 1) {
            char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
            nd_fail(ND_ERR_SHAPE,
                    "%s: shapes %s and %s cannot be broadcast: the size of tensor a (%lld) must match the "
                    "size of tensor b (%lld) at non-singleton dimension %d",
                    name, nd_shape_str(s1, sizeof s1, a->ndim, a->shape), nd_shape_str(s2, sizeof s2, b->ndim, b->shape),
                    (long long)da, (long long)db, i);
            break;
        }
    }
    return false;
}

/* Operand converted to the compute dtype: t itself, or a temporary copy the caller unrefs. */
static nd_tensor *as_dtype(nd_tensor *t, nd_dtype dtype, bool *copied)
{
    *copied = t->dtype != dtype;
    return *copied ? nd_k_copy(t, dtype) : t;
}

nd_tensor *nd_binary_op(const char *name, nd_op op, nd_binop kernel, nd_tensor *a, nd_tensor *b)
{
    nd_tensor *ins[2] = {a, b};
    if (!nd_check_inputs(name, 2, ins))
        return NULL;
    nd_dtype dtype = nd_promote(a, b);
    if (kernel == ND_BIN_DIV && !nd_dtype_is_float(dtype))
        dtype = ND_FLOAT32; /* true division */
    if (dtype == ND_BOOL && (kernel == ND_BIN_SUB || kernel == ND_BIN_POW))
        return nd_fail(ND_ERR_DTYPE, "%s: %s is not supported for two bool tensors", name,
                       kernel == ND_BIN_SUB ? "subtraction" : "pow");
    int nd;
    int64_t shape[ND_MAX_DIMS];
    if (!broadcast_or_fail(name, a, b, &nd, shape))
        return NULL;
    bool ca, cb;
    nd_tensor *xa = as_dtype(a, dtype, &ca), *xb = as_dtype(b, dtype, &cb);
    nd_tensor *out = xa && xb ? nd_alloc(dtype, nd, shape, false) : NULL;
    if (out)
        nd_k_binary_into(kernel, out, xa, xb);
    if (ca)
        nd_unref(xa);
    if (cb)
        nd_unref(xb);
    if (!out)
        return NULL;
    return nd_finish(out, op, 2, ins, NULL);
}

nd_tensor *nd_compare(const char *name, nd_binop kernel, nd_tensor *a, nd_tensor *b)
{
    nd_tensor *ins[2] = {a, b};
    if (!nd_check_inputs(name, 2, ins))
        return NULL;
    nd_dtype dtype = nd_promote(a, b);
    int nd;
    int64_t shape[ND_MAX_DIMS];
    if (!broadcast_or_fail(name, a, b, &nd, shape))
        return NULL;
    bool ca, cb;
    nd_tensor *xa = as_dtype(a, dtype, &ca), *xb = as_dtype(b, dtype, &cb);
    nd_tensor *out = xa && xb ? nd_alloc(ND_BOOL, nd, shape, false) : NULL;
    if (out)
        nd_k_binary_into(kernel, out, xa, xb);
    if (ca)
        nd_unref(xa);
    if (cb)
        nd_unref(xb);
    return nd_register(out);
}

nd_tensor *nd_unary_op(const char *name, nd_op op, nd_unop kernel, nd_tensor *a)
{
    return nd_unary_op_p(name, op, kernel, a, NULL);
}

nd_tensor *nd_unary_op_p(const char *name, nd_op op, nd_unop kernel, nd_tensor *a, const double *params)
{
    if (!a)
        return nd_fail_null(name, 0);
    nd_dtype dtype = a->dtype;
    if (!nd_unop_keeps_integers(kernel) && !nd_dtype_is_float(dtype))
        dtype = ND_FLOAT32; /* exp, sqrt, sin... of integers give float32, as in PyTorch */
    if (dtype == ND_BOOL)
        return nd_fail(ND_ERR_DTYPE, "%s: not supported for bool tensors", name);
    bool copied;
    nd_tensor *x = as_dtype(a, dtype, &copied);
    nd_tensor *out = x ? nd_alloc(dtype, a->ndim, a->shape, false) : NULL;
    if (out) {
        char *ptrs[2] = {nd_data_ptr(out), nd_data_ptr(x)};
        const int64_t *strides[2] = {out->strides, x->strides};
        size_t es = nd_dtype_size(dtype);
        size_t sizes[2] = {es, es};
        nd_iter it;
        nd_iter_init(&it, a->ndim, a->shape, 2, ptrs, strides, sizes);
        nd_backend_get()->unary(kernel, dtype, params, &it);
    }
    if (copied)
        nd_unref(x);
    if (!out)
        return NULL;
    nd_node *node = NULL;
    out = nd_finish(out, op, 1, &a, &node);
    if (node && params) {
        node->dparams[0] = params[0];
        node->dparams[1] = params[1];
    }
    /* Ops that differentiate through their output keep it (a detached alias: no cycle). */
    bool saves_output = op == ND_OP_EXP || op == ND_OP_TANH || op == ND_OP_SIGMOID || op == ND_OP_SQRT ||
                        op == ND_OP_RSQRT || op == ND_OP_EXPM1 || op == ND_OP_RECIPROCAL;
    if (out && node && saves_output && !nd_node_save(node, 0, out))
        return NULL; /* the scope still frees out */
    return out;
}

void nd_k_rows(nd_rowop op, nd_tensor *out, nd_tensor *aux, const nd_tensor *in, int dim)
{
    int64_t shape[ND_MAX_DIMS], so[ND_MAX_DIMS], sa[ND_MAX_DIMS], si[ND_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < in->ndim; i++) {
        if (i == dim)
            continue;
        shape[nd] = in->shape[i];
        so[nd] = out->strides[i];
        sa[nd] = aux ? aux->strides[i] : 0;
        si[nd] = in->strides[i];
        nd++;
    }
    int64_t n = in->ndim ? in->shape[dim] : 1;
    size_t es = nd_dtype_size(in->dtype), eo = nd_dtype_size(out->dtype);
    int64_t in_row = in->ndim ? in->strides[dim] * (int64_t)es : 0;
    int64_t out_row = out->ndim ? out->strides[dim] * (int64_t)eo : 0;
    int64_t scratch = 0; /* stands in for a missing aux operand: never a NULL pointer walk */
    char *ptrs[3] = {nd_data_ptr(out), aux ? nd_data_ptr(aux) : (char *)&scratch, nd_data_ptr(in)};
    const int64_t *strides[3] = {so, sa, si};
    size_t sizes[3] = {eo, 8, es};
    nd_iter it;
    nd_iter_init(&it, nd, shape, 3, ptrs, strides, sizes);
    nd_backend_get()->rows(op, in->dtype, &it, n, in_row, out_row);
}

nd_tensor *nd_k_drop_dim(const nd_tensor *t, int dim)
{
    int64_t sh[ND_MAX_DIMS], st[ND_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++)
        if (i != dim)
            sh[n] = t->shape[i], st[n] = t->strides[i], n++;
    return nd_alias(t, n, sh, st, t->offset);
}

nd_tensor *nd_fused_grad(nd_binop kernel, nd_tensor *a, nd_tensor *g)
{
    if (nd_is_grad_enabled() || !nd_dtype_is_float(a->dtype) || g->dtype != a->dtype || g->ndim != a->ndim ||
        memcmp(g->shape, a->shape, sizeof(int64_t) * (size_t)a->ndim) != 0)
        return NULL;
    if (nd_exclusive(g)) { /* the pass's own gradient takes the result: no new buffer to fill */
        nd_k_binary_into(kernel, g, a, g);
        return nd_register(nd_ref(g));
    }
    nd_tensor *out = nd_alloc(a->dtype, a->ndim, a->shape, false);
    if (out)
        nd_k_binary_into(kernel, out, a, g);
    return nd_register(out);
}

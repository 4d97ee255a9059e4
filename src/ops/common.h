/* Helpers shared by the op files: input checks, graph-free kernel calls and gradient reduction. */
#ifndef ND_OPS_COMMON_H
#define ND_OPS_COMMON_H

#include "autograd/node.h"
#include "backend/backend.h"
#include "core/internal.h"

/* Returns false (recording the sticky NULL error) when any of the n inputs is NULL. */
static inline bool nd_check_inputs(const char *op, int n, nd_tensor *const *inputs)
{
    for (int i = 0; i < n; i++)
        if (!inputs[i]) {
            nd_fail_null(op, i);
            return false;
        }
    return true;
}

/* Normalises a possibly negative dim in place; false (error recorded in PyTorch's words) when it
 * is out of range, or when ndim is 0 and a scalar has no dim to take (allow_scalar false). */
bool nd_check_dim(const char *op, int *dim, int ndim, bool allow_scalar);

/* Expanded geometry of t as seen from an out shape (broadcast dims get stride 0). */
void nd_broadcast_strides(const nd_tensor *t, int ndim, const int64_t *shape, int64_t *strides);

/* Ops built from other ops run inside their own scope, so their intermediates never become the
 * caller's to free when no scope is open: begin, build, then hand back only the result. */
static inline void nd_composite_begin(void) { nd_scope_begin(); }
static inline nd_tensor *nd_composite_end(nd_tensor *result)
{
    nd_ref(result);
    nd_scope_end();
    return nd_register(result);
}
/* Gives result's graph node PyTorch's grad_fn name for the op that made it (a composite's last
 * node, or a fused op whose name depends on its inputs' case), unless that node is one of the
 * inputs' own (the op handed an input back unchanged). Returns result. */
static inline nd_tensor *nd_name_grad_fn(nd_tensor *result, const char *grad_fn_name, int n_inputs,
                                         nd_tensor *const *inputs)
{
    if (!result || !result->grad_fn)
        return result;
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] && inputs[i]->grad_fn == result->grad_fn)
            return result;
    result->grad_fn->grad_fn_name = grad_fn_name;
    return result;
}
/* An op that returns its input unchanged still hands the caller a reference of its own. */
static inline nd_tensor *nd_return_same(nd_tensor *t) { return nd_register(nd_ref(t)); }

/* ---- graph-free kernels: results are fresh, unregistered, refcount-1 tensors ---- */
/* Dense copy of src converted to dtype. */
nd_tensor *nd_k_copy(const nd_tensor *src, nd_dtype dtype);
/* dst[...] = src broadcast to dst's shape, converted to dst's dtype. */
void nd_k_copy_into(nd_tensor *dst, const nd_tensor *src);
/* out = a op b with broadcasting; a and b already of the compute dtype. */
void nd_k_binary_into(nd_binop op, nd_tensor *out, const nd_tensor *a, const nd_tensor *b);
/* A dense copy of t when it is not contiguous (unregistered); t itself otherwise. */
static inline nd_tensor *nd_dense(nd_tensor *t) { return !t || nd_is_contiguous(t) ? t : nd_k_copy(t, t->dtype); }
/* Fresh tensor of value everywhere. */
nd_tensor *nd_k_full(nd_dtype dtype, int ndim, const int64_t *shape, double value);
/* An internal 0-dim constant that promotes like a C number (see nd_promote). */
nd_tensor *nd_k_wrapped_scalar(double value, nd_dtype dtype);

/* Applies a row op along dim of in (see nd_backend.rows). out has in's ndim (size 1 at dim for
 * reductions, the full size for scans); aux (int64, like out) receives max/min indices or is NULL. */
void nd_k_rows(nd_rowop op, nd_tensor *out, nd_tensor *aux, const nd_tensor *in, int dim);
/* A view of t without dim (which must have size 1), for dropping keepdim. Unregistered alias. */
nd_tensor *nd_k_drop_dim(const nd_tensor *t, int dim);

/* ---- gradient helpers (use differentiable ops: they record when create_graph is on) ---- */
/* Sums g over broadcast dims down to shape/ndim and converts to dtype; returns g itself when
 * nothing is needed. Registered in the current scope. */
nd_tensor *nd_sum_to(nd_tensor *g, int ndim, const int64_t *shape, nd_dtype dtype);
/* Same as nd_sum_to with the geometry of an input tensor. */
nd_tensor *nd_reduce_grad(nd_tensor *g, const nd_tensor *input);
/* A backward rule as one fused kernel out = kernel(a, g) (GELU_GRAD, RELU_GRAD, ...), when no graph
 * of the backward is being recorded and a and g match in shape and float dtype; NULL otherwise,
 * and the caller composes the rule from differentiable ops. When the backward pass alone holds g,
 * the result is written over g and g is returned. */
nd_tensor *nd_fused_grad(nd_binop kernel, nd_tensor *a, nd_tensor *g);
/* Comparison mask as a float tensor of dtype (no graph): (a op b) ? 1 : 0 */
nd_tensor *nd_mask(nd_binop op, nd_tensor *a, double b, nd_dtype dtype);

/* Binary / unary op entry points shared by the public wrappers. */
nd_tensor *nd_binary_op(const char *name, nd_op op, nd_binop kernel, nd_tensor *a, nd_tensor *b);
nd_tensor *nd_unary_op(const char *name, nd_op op, nd_unop kernel, nd_tensor *a);
/* The same with kernel parameters (recorded in node->dparams). */
nd_tensor *nd_unary_op_p(const char *name, nd_op op, nd_unop kernel, nd_tensor *a, const double *params);
/* Comparison a op b → bool tensor, never recorded. */
nd_tensor *nd_compare(const char *name, nd_binop kernel, nd_tensor *a, nd_tensor *b);

#endif

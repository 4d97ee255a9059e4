/* Graph nodes: what an op recorded so its backward can run. An output tensor holds its node; a
 * node holds its inputs and saved tensors, never its output, so the graph has no cycles. */
#ifndef ND_NODE_H
#define ND_NODE_H

#include "core/internal.h"
#include "ops/op_list.h"

#define ND_NODE_MAX_SAVED 2
#define ND_NODE_MAX_IPARAMS (2 * ND_MAX_DIMS + 4)

struct nd_node {
    atomic_int refcount;
    nd_op op;
    /* PyTorch's grad_fn name where it is not the op list's: ops PyTorch names by their input's
     * case (linear), and ops built from others, named for the whole op. NULL: the op list's. */
    const char *grad_fn_name;
    int n_inputs;
    nd_tensor **inputs;             /* owned references; an entry is NULL for a non-tensor slot */
    uint64_t *input_versions;       /* storage versions at record time */
    nd_tensor *saved[ND_NODE_MAX_SAVED]; /* owned, detached aliases (e.g. the output's data) */
    uint64_t saved_versions[ND_NODE_MAX_SAVED];
    nd_tensor *retained;            /* weak: the output tensor that asked retain_grad */
    int out_ndim;
    nd_dtype out_dtype;
    int64_t out_shape[ND_MAX_DIMS];
    int n_iparams;
    int64_t iparams[ND_NODE_MAX_IPARAMS];
    double dparams[2];
    /* Engine scratch: one backward pass over a graph at a time. */
    uint64_t epoch;
    int64_t pending;
    nd_tensor *grad_acc;
    nd_node *dead_next;
};

/* Records a node for `out` when a gradient is needed (grad mode on and an input requires grad):
 * sets out->grad_fn and out->requires_grad. Returns the node, NULL when none was needed, and
 * sets *failed on allocation failure. Inputs may contain NULL (non-tensor slots). */
nd_node *nd_record(nd_tensor *out, nd_op op, int n_inputs, nd_tensor *const *inputs, bool *failed);
/* Saves a detached alias of t in slot i of node (no cycle even when t is the node's output). */
bool nd_node_save(nd_node *node, int slot, const nd_tensor *t);
/* Hands the node a tensor the op made for its backward alone (row statistics and the like: no one
 * else can write to it, so there is no version to check), or frees it when no node was recorded
 * (node NULL). Takes the caller's reference either way. */
void nd_node_keep(nd_node *node, int slot, nd_tensor *t);
/* Creates the node of an op, or fails; returns out on success and NULL (releasing out) on failure. */
nd_tensor *nd_finish(nd_tensor *out, nd_op op, int n_inputs, nd_tensor *const *inputs, nd_node **node_out);

/* The node's grad_fn name as PyTorch gives it. */
static inline const char *nd_node_name(const nd_node *n)
{
    return n->grad_fn_name ? n->grad_fn_name : nd_op_table[n->op].grad_fn_name;
}

void nd_count_backward(int op);
/* Bytes of a node with n inputs (the node and its input arrays are one block). */
static inline size_t nd_node_bytes(int n_inputs)
{
    return sizeof(nd_node) + (size_t)n_inputs * (sizeof(nd_tensor *) + sizeof(uint64_t));
}
void nd_engine_scratch_release(void);
void nd_mem_trim(void);

#endif

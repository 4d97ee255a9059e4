/* Recording graph nodes, and the op table generated from op_list.h. */
#include "autograd/node.h"

#include <stdlib.h>

const nd_op_info nd_op_table[ND_OP_COUNT_] = {
#define ND_OP_ROW_(e, name, bw) [ND_OP_##e] = {name, bw},
    ND_OP_LIST(ND_OP_ROW_)
#undef ND_OP_ROW_
};

/* Debug statistics: how often each op's backward rule ran (coverage checks in the tests). */
static atomic_llong backward_calls[ND_OP_COUNT_];

static const char *const op_names[ND_OP_COUNT_] = {
#define ND_OP_NAME_(e, name, bw) [ND_OP_##e] = #e,
    ND_OP_LIST(ND_OP_NAME_)
#undef ND_OP_NAME_
};

int nd_op_count(void) { return ND_OP_COUNT_; }
const char *nd_op_name(int op) { return op >= 0 && op < ND_OP_COUNT_ ? op_names[op] : NULL; }
const char *nd_op_grad_fn_name(int op) { return op >= 0 && op < ND_OP_COUNT_ ? nd_op_table[op].grad_fn_name : NULL; }
int64_t nd_op_backward_calls(int op) { return op >= 0 && op < ND_OP_COUNT_ ? atomic_load(&backward_calls[op]) : -1; }
void nd_count_backward(int op) { atomic_fetch_add(&backward_calls[op], 1); }

bool nd_grad_needed(int n, nd_tensor *const *inputs)
{
    for (int i = 0; i < n; i++)
        if (inputs[i] && inputs[i]->requires_grad)
            return nd_is_grad_enabled(); /* the cheaper test first: most tensors need no gradient */
    return false;
}

nd_node *nd_record(nd_tensor *out, nd_op op, int n_inputs, nd_tensor *const *inputs, bool *failed)
{
    *failed = false;
    if (!nd_grad_needed(n_inputs, inputs) || !nd_dtype_is_float(out->dtype))
        return NULL;
    nd_node *node = nd_mem_alloc(nd_node_bytes(n_inputs), true);
    if (!node) {
        *failed = true;
        nd_fail(ND_ERR_NOMEM, "out of memory recording a graph node for %s", nd_op_table[op].grad_fn_name);
        return NULL;
    }
    nd_count_live(ND_COUNT_NODES, 1);
    atomic_init(&node->refcount, 1);
    node->op = op;
    node->n_inputs = n_inputs;
    node->inputs = (nd_tensor **)(node + 1);
    node->input_versions = (uint64_t *)(node->inputs + n_inputs);
    for (int i = 0; i < n_inputs; i++) {
        node->inputs[i] = nd_ref(inputs[i]);
        node->input_versions[i] = inputs[i] ? atomic_load(&inputs[i]->storage->version) : 0;
    }
    node->out_ndim = out->ndim;
    node->out_dtype = out->dtype;
    for (int i = 0; i < out->ndim; i++)
        node->out_shape[i] = out->shape[i];
    out->grad_fn = node;
    out->requires_grad = true;
    return node;
}

bool nd_node_save(nd_node *node, int slot, const nd_tensor *t)
{
    nd_tensor *alias = nd_alias(t, t->ndim, t->shape, t->strides, t->offset);
    if (!alias)
        return false;
    node->saved[slot] = alias;
    node->saved_versions[slot] = atomic_load(&t->storage->version);
    return true;
}

void nd_node_keep(nd_node *node, int slot, nd_tensor *t)
{
    if (!node) {
        nd_unref(t);
        return;
    }
    node->saved[slot] = t;
    node->saved_versions[slot] = 0;
}

nd_tensor *nd_finish(nd_tensor *out, nd_op op, int n_inputs, nd_tensor *const *inputs, nd_node **node_out)
{
    bool failed;
    nd_node *node = nd_record(out, op, n_inputs, inputs, &failed);
    if (failed) {
        nd_unref(out);
        return NULL;
    }
    if (node_out)
        *node_out = node;
    return nd_register(out);
}

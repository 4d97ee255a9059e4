/* The backward engine. Nodes reachable from the roots are found with an explicit stack (no
 * recursion, so a 1,000,000-op chain is fine), counted by incoming edges, and run in topological
 * order. Each node's backward runs inside its own scope and the engine keeps only the gradients it
 * still needs, so memory follows the frontier of the traversal, not the size of the graph. */
#include "ops/common.h"

#include <stdlib.h>
#include <string.h>

static atomic_uint_fast64_t epoch_counter = 1;

typedef struct node_vec {
    nd_node **items;
    size_t count, cap;
} node_vec;

static bool vec_push(node_vec *v, nd_node *n)
{
    if (v->count == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        nd_node **items = realloc(v->items, cap * sizeof *items);
        if (!items)
            return false;
        v->items = items;
        v->cap = cap;
    }
    v->items[v->count++] = n;
    return true;
}

/* What the caller wants: accumulate into leaves' .grad (backward), or capture the gradients of
 * chosen tensors (autograd_grad). */
typedef struct capture {
    int n;
    nd_tensor *const *targets;
    nd_tensor **results; /* engine-owned references until handed over */
} capture;

/* One backward pass. Leaf gradients are collected in the leaves' pending_grad and committed to
 * .grad only when the whole pass has succeeded, so a failed pass changes no tensor. */
typedef struct pass {
    const char *op;
    bool create_graph;
    capture *cap;
    node_vec ready;
    nd_tensor **leaves;
    size_t n_leaves, cap_leaves;
} pass;

bool nd_exclusive(const nd_tensor *t)
{
    return atomic_load(&t->refcount) == 1 && atomic_load(&t->storage->refcount) == 1 && !t->grad_fn &&
           !t->requires_grad && nd_is_contiguous(t) && t->offset == 0 &&
           (size_t)nd_numel(t) * nd_dtype_size(t->dtype) == t->storage->nbytes;
}

static bool same_geometry(const nd_tensor *a, const nd_tensor *b)
{
    return a->dtype == b->dtype && a->ndim == b->ndim && memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0;
}

/* acc = acc + g, both engine-owned references (g's reference is consumed). Outside a recorded
 * graph the sum goes into acc itself when the pass holds it alone (no allocation, one pass less). */
static nd_status accumulate(nd_tensor **acc, nd_tensor *g)
{
    if (!*acc) {
        *acc = g;
        return ND_OK;
    }
    if (!g->requires_grad && nd_exclusive(*acc) && same_geometry(*acc, g)) {
        nd_k_binary_into(ND_BIN_ADD, *acc, *acc, g);
        nd_unref(g);
        return ND_OK;
    }
    nd_scope_begin();
    nd_tensor *sum = nd_ref(nd_add(*acc, g));
    nd_scope_end();
    nd_unref(g);
    if (!sum)
        return nd_last_status();
    nd_unref(*acc);
    *acc = sum;
    return ND_OK;
}

/* A leaf's .grad: the first gradient is stored (copied unless this pass owns it outright), later
 * ones are added in place, or out of place when a graph is being built. */
static nd_status commit_leaf(nd_tensor *leaf, nd_tensor *g, bool create_graph)
{
    if (!leaf->grad) {
        if (create_graph || nd_exclusive(g)) {
            leaf->grad = g;
            return ND_OK;
        }
        nd_tensor *copy = nd_k_copy(g, leaf->dtype);
        nd_unref(g);
        if (!copy)
            return nd_last_status();
        leaf->grad = copy;
        return ND_OK;
    }
    if (create_graph || leaf->grad->grad_fn || g->grad_fn)
        return accumulate(&leaf->grad, g);
    nd_k_binary_into(ND_BIN_ADD, leaf->grad, leaf->grad, g);
    nd_bump_version(leaf->grad);
    nd_unref(g);
    return ND_OK;
}

static int capture_index(const capture *cap, const nd_tensor *t, const nd_node *node)
{
    if (!cap)
        return -1;
    for (int i = 0; i < cap->n; i++)
        if ((t && cap->targets[i] == t) || (node && cap->targets[i]->grad_fn == node))
            return i;
    return -1;
}

/* Collects a gradient for a leaf; the first one of the pass enlists the leaf for the commit. */
static nd_status accumulate_leaf(pass *ps, nd_tensor *leaf, nd_tensor *g)
{
    if (!leaf->pending_grad) {
        if (ps->n_leaves == ps->cap_leaves) {
            size_t cap = ps->cap_leaves ? ps->cap_leaves * 2 : 16;
            nd_tensor **l = realloc(ps->leaves, cap * sizeof *l);
            if (!l) {
                nd_unref(g);
                return nd_fail_status(ND_ERR_NOMEM, "%s: out of memory", ps->op);
            }
            ps->leaves = l;
            ps->cap_leaves = cap;
        }
        ps->leaves[ps->n_leaves++] = leaf;
    }
    return accumulate(&leaf->pending_grad, g);
}

/* acc += g placed in the window [start, end) step `step` along dim of a tensor shaped like `in`
 * (zeros elsewhere): a slice's backward without the full-size zeros-and-copy tensor it would make
 * for every slice, when a pass builds no graph. Three slices of one tensor (a GPT's q, k, v) then
 * cost one zero fill and three window copies or adds instead of three fills and two full adds.
 * g's reference is consumed. */
static nd_status accumulate_window(nd_tensor **acc, const nd_tensor *in, int dim, int64_t start, int64_t end,
                                   int64_t step, nd_tensor *g)
{
    nd_tensor *full = *acc;
    bool fresh = !full;
    if (fresh && !(full = nd_alloc(g->dtype, in->ndim, in->shape, true))) {
        nd_unref(g);
        return nd_last_status();
    }
    if (!fresh && !(nd_exclusive(full) && full->dtype == g->dtype)) { /* shared: add a full-size copy */
        nd_tensor *spread = nd_alloc(g->dtype, in->ndim, in->shape, true);
        nd_status st = spread ? accumulate_window(&spread, in, dim, start, end, step, g) : nd_last_status();
        if (!spread)
            nd_unref(g);
        return st == ND_OK ? accumulate(acc, spread) : st;
    }
    nd_tensor *window = nd_alias(full, full->ndim, full->shape, full->strides, start * full->strides[dim]);
    if (!window) {
        if (fresh)
            nd_unref(full);
        nd_unref(g);
        return nd_last_status();
    }
    window->shape[dim] = (end - start + step - 1) / step;
    window->strides[dim] *= step;
    if (fresh)
        nd_k_copy_into(window, g);
    else
        nd_k_binary_into(ND_BIN_ADD, window, window, g);
    nd_unref(window);
    nd_unref(g);
    *acc = full;
    return ND_OK;
}

/* Delivers gradient g (engine-owned) flowing into tensor `in`. */
static nd_status deliver(pass *ps, nd_tensor *in, nd_tensor *g)
{
    if (!in->requires_grad) {
        nd_unref(g);
        return ND_OK;
    }
    nd_node *child = in->grad_fn;
    if (child) {
        nd_status st = accumulate(&child->grad_acc, g);
        if (--child->pending == 0 && !vec_push(&ps->ready, child))
            return nd_fail_status(ND_ERR_NOMEM, "%s: out of memory", ps->op);
        return st;
    }
    if (ps->cap) {
        int k = capture_index(ps->cap, in, NULL);
        if (k < 0) {
            nd_unref(g);
            return ND_OK;
        }
        return accumulate(&ps->cap->results[k], g);
    }
    return accumulate_leaf(ps, in, g);
}

static nd_status check_versions(const char *op, const nd_node *n)
{
    for (int i = 0; i < n->n_inputs + ND_NODE_MAX_SAVED; i++) {
        const nd_tensor *t = i < n->n_inputs ? n->inputs[i] : n->saved[i - n->n_inputs];
        uint64_t expected = i < n->n_inputs ? n->input_versions[i] : n->saved_versions[i - n->n_inputs];
        if (!t)
            continue;
        uint64_t now = atomic_load(&t->storage->version);
        if (now != expected) {
            char b[ND_SHAPE_BUF];
            return nd_fail_status(ND_ERR_GRAD,
                                  "%s: one of the tensors needed by %s (a %s tensor of shape %s) was "
                                  "modified in place after it was used (version %llu, expected %llu)",
                                  op, nd_node_name(n), nd_dtype_name(t->dtype),
                                  nd_shape_str(b, sizeof b, t->ndim, t->shape), (unsigned long long)now,
                                  (unsigned long long)expected);
        }
    }
    return ND_OK;
}

/* Runs one node's backward rule and hands each input its gradient. */
static nd_status run_node(pass *ps, nd_node *n)
{
    bool create_graph = ps->create_graph;
    capture *cap = ps->cap;
    nd_tensor *g = n->grad_acc;
    n->grad_acc = NULL;
    nd_status st = check_versions(ps->op, n);
    if (st != ND_OK) {
        nd_unref(g);
        return st;
    }
    if (n->retained && !cap) {
        nd_tensor *r = n->retained;
        nd_tensor *gr = create_graph ? nd_ref(g) : nd_k_copy(g, g->dtype);
        if (!gr) {
            nd_unref(g);
            return nd_last_status();
        }
        if ((st = accumulate(&r->grad, gr)) != ND_OK) {
            nd_unref(g);
            return st;
        }
    }
    int k = capture_index(cap, NULL, n);
    if (k >= 0 && (st = accumulate(&cap->results[k], nd_ref(g))) != ND_OK) {
        nd_unref(g);
        return st;
    }

    /* A slice's gradient goes straight into its input's accumulator (see accumulate_window). */
    nd_tensor *in0 = n->inputs[0];
    if (n->op == ND_OP_SLICE && !create_graph && !cap && !g->requires_grad && in0 && in0->requires_grad) {
        nd_count_backward(n->op);
        int dim = (int)n->iparams[0];
        if (in0->grad_fn) {
            nd_node *child = in0->grad_fn;
            st = accumulate_window(&child->grad_acc, in0, dim, n->iparams[1], n->iparams[2], n->iparams[3], g);
            if (--child->pending == 0 && !vec_push(&ps->ready, child))
                st = nd_fail_status(ND_ERR_NOMEM, "%s: out of memory", ps->op);
            return st;
        }
        if (in0->pending_grad) /* enlisted already: add into its pending gradient */
            return accumulate_window(&in0->pending_grad, in0, dim, n->iparams[1], n->iparams[2], n->iparams[3], g);
        nd_tensor *first = NULL;
        st = accumulate_window(&first, in0, dim, n->iparams[1], n->iparams[2], n->iparams[3], g);
        return st == ND_OK ? accumulate_leaf(ps, in0, first) : st;
    }

    nd_tensor *stack_grads[4] = {0};
    nd_tensor **grads = n->n_inputs <= 4 ? stack_grads : calloc((size_t)n->n_inputs, sizeof *grads);
    if (!grads) {
        nd_unref(g);
        return nd_fail_status(ND_ERR_NOMEM, "%s: out of memory", ps->op);
    }
    nd_scope_begin();
    nd_count_backward(n->op);
    st = nd_op_table[n->op].backward(n, g, grads);
    for (int i = 0; i < n->n_inputs; i++)
        nd_ref(grads[i]); /* survive the scope */
    nd_scope_end();
    nd_unref(g);
    for (int i = 0; i < n->n_inputs; i++) {
        nd_tensor *in = n->inputs[i];
        if (st != ND_OK || !in || !grads[i]) {
            nd_unref(grads[i]);
            /* An input that requires grad but got none still counts as visited. */
            if (st == ND_OK && in && in->requires_grad && in->grad_fn && --in->grad_fn->pending == 0)
                if (!vec_push(&ps->ready, in->grad_fn))
                    st = nd_fail_status(ND_ERR_NOMEM, "%s: out of memory", ps->op);
            continue;
        }
        nd_status s2 = deliver(ps, in, grads[i]);
        if (st == ND_OK)
            st = s2;
    }
    if (grads != stack_grads)
        free(grads);
    return st;
}

/* The traversal's arrays are kept per thread between passes (grow-only), so a steady-state
 * backward pass allocates nothing; a nested pass (rare) uses arrays of its own. */
typedef struct engine_scratch {
    node_vec seen, stack, ready;
    nd_tensor **leaves;
    size_t cap_leaves;
    int depth;
} engine_scratch;

static ND_THREAD_LOCAL engine_scratch scratch;

void nd_engine_scratch_release(void)
{
    if (scratch.depth)
        return;
    free(scratch.seen.items);
    free(scratch.stack.items);
    free(scratch.ready.items);
    free(scratch.leaves);
    memset(&scratch, 0, sizeof scratch);
}

static nd_status run_backward(const char *op, int n_roots, nd_tensor *const *roots, nd_tensor *const *root_grads,
                              bool create_graph, capture *cap)
{
    uint64_t epoch = atomic_fetch_add(&epoch_counter, 1);
    bool reuse = scratch.depth++ == 0;
    node_vec seen = {0}, stack = {0};
    pass ps = {op, create_graph, cap, {0}, NULL, 0, 0};
    if (reuse) {
        seen = scratch.seen, stack = scratch.stack, ps.ready = scratch.ready;
        seen.count = stack.count = ps.ready.count = 0;
        ps.leaves = scratch.leaves;
        ps.cap_leaves = scratch.cap_leaves;
    }
    nd_status st = ND_OK;

    /* Discover reachable nodes and count the edges into each. */
    for (int r = 0; r < n_roots && st == ND_OK; r++) {
        nd_node *root = roots[r]->grad_fn;
        if (!root || root->epoch == epoch)
            continue;
        root->epoch = epoch;
        root->pending = 0;
        root->grad_acc = NULL;
        if (!vec_push(&seen, root) || !vec_push(&stack, root))
            st = ND_ERR_NOMEM;
        while (st == ND_OK && stack.count) {
            nd_node *n = stack.items[--stack.count];
            for (int i = 0; i < n->n_inputs; i++) {
                nd_tensor *in = n->inputs[i];
                if (!in || !in->requires_grad || !in->grad_fn)
                    continue;
                nd_node *c = in->grad_fn;
                if (c->epoch != epoch) {
                    c->epoch = epoch;
                    c->pending = 0;
                    c->grad_acc = NULL;
                    if (!vec_push(&seen, c) || !vec_push(&stack, c)) {
                        st = ND_ERR_NOMEM;
                        break;
                    }
                }
                c->pending++;
            }
        }
    }
    if (st != ND_OK)
        st = nd_fail_status(ND_ERR_NOMEM, "%s: out of memory", op);

    /* Seed the roots. */
    for (int r = 0; r < n_roots && st == ND_OK; r++) {
        nd_tensor *g = nd_ref(root_grads[r]);
        if (roots[r]->grad_fn) {
            st = accumulate(&roots[r]->grad_fn->grad_acc, g);
        } else if (cap) {
            int k = capture_index(cap, roots[r], NULL);
            if (k >= 0)
                st = accumulate(&cap->results[k], g);
            else
                nd_unref(g);
        } else {
            st = accumulate_leaf(&ps, roots[r], g);
        }
    }
    for (int r = 0; r < n_roots && st == ND_OK; r++) {
        nd_node *root = roots[r]->grad_fn;
        if (root && root->pending == 0 && root->epoch == epoch) {
            root->pending = -1; /* queued once even if named twice */
            if (!vec_push(&ps.ready, root))
                st = nd_fail_status(ND_ERR_NOMEM, "%s: out of memory", op);
        }
    }

    bool previous_mode = nd_set_grad_enabled(create_graph);
    while (st == ND_OK && ps.ready.count)
        st = run_node(&ps, ps.ready.items[--ps.ready.count]);
    nd_set_grad_enabled(previous_mode);

    /* Commit the leaves' gradients only now: a failed pass leaves every .grad as it was. */
    for (size_t i = 0; i < ps.n_leaves; i++) {
        nd_tensor *leaf = ps.leaves[i];
        nd_tensor *g = leaf->pending_grad;
        leaf->pending_grad = NULL;
        if (st == ND_OK)
            st = commit_leaf(leaf, g, create_graph);
        else
            nd_unref(g);
    }
    /* After an error some nodes may still hold partial gradients: drop them. */
    for (size_t i = 0; i < seen.count; i++) {
        nd_unref(seen.items[i]->grad_acc);
        seen.items[i]->grad_acc = NULL;
    }
    scratch.depth--;
    if (reuse) {
        scratch.seen = seen, scratch.stack = stack, scratch.ready = ps.ready;
        scratch.leaves = ps.leaves;
        scratch.cap_leaves = ps.cap_leaves;
    } else {
        free(seen.items);
        free(stack.items);
        free(ps.ready.items);
        free(ps.leaves);
    }
    return st;
}

static nd_status check_root(const char *op, const nd_tensor *t, int index)
{
    if (!t)
        return nd_fail_null(op, index), nd_last_status();
    if (!t->requires_grad)
        return nd_fail_status(ND_ERR_GRAD, "%s: element %d of tensors does not require grad and does not have a grad_fn",
                              op, index);
    return ND_OK;
}

/* The gradient to start from: ones for a one-element root, else the given one (checked). */
static nd_tensor *root_grad(const char *op, nd_tensor *t, nd_tensor *grad)
{
    char b1[ND_SHAPE_BUF], b2[ND_SHAPE_BUF];
    if (!grad) {
        if (nd_numel(t) != 1)
            return nd_fail(ND_ERR_GRAD, "%s: grad can be implicitly created only for scalar outputs "
                           "(the tensor has shape %s); pass a gradient of that shape", op,
                           nd_shape_str(b1, sizeof b1, t->ndim, t->shape));
        return nd_k_full(t->dtype, t->ndim, t->shape, 1.0);
    }
    if (grad->ndim != t->ndim || memcmp(grad->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) != 0)
        return nd_fail(ND_ERR_SHAPE, "%s: mismatch in shape: grad_output has a shape of %s and output has a shape of %s",
                       op, nd_shape_str(b1, sizeof b1, grad->ndim, grad->shape),
                       nd_shape_str(b2, sizeof b2, t->ndim, t->shape));
    if (!nd_dtype_is_float(grad->dtype))
        return nd_fail(ND_ERR_DTYPE, "%s: the gradient must be a floating point tensor, got %s", op,
                       nd_dtype_name(grad->dtype));
    if (grad->dtype != t->dtype)
        return nd_k_copy(grad, t->dtype);
    return nd_ref(grad);
}

nd_status nd_backward_with(nd_tensor *t, nd_tensor *grad, bool create_graph)
{
    const char *op = "nd_backward";
    nd_status st = check_root(op, t, 0);
    if (st != ND_OK)
        return st;
    nd_tensor *g = root_grad(op, t, grad);
    if (!g)
        return nd_last_status();
    st = run_backward(op, 1, &t, &g, create_graph, NULL);
    nd_unref(g);
    return st;
}

nd_status nd_backward(nd_tensor *t) { return nd_backward_with(t, NULL, false); }

nd_status nd_autograd_grad(int n_outputs, nd_tensor *const *outputs, nd_tensor *const *grad_outputs,
                           int n_inputs, nd_tensor *const *inputs, nd_tensor **grads, bool create_graph)
{
    const char *op = "nd_autograd_grad";
    if (n_outputs <= 0 || n_inputs <= 0 || !outputs || !inputs || !grads)
        return nd_fail_status(ND_ERR_VALUE, "%s: needs at least one output and one input, and a grads array", op);
    for (int i = 0; i < n_inputs; i++)
        grads[i] = NULL;
    for (int i = 0; i < n_outputs; i++) {
        nd_status st = check_root(op, outputs[i], i);
        if (st != ND_OK)
            return st;
    }
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i])
            return nd_fail_null(op, i), nd_last_status();
        if (!inputs[i]->requires_grad)
            return nd_fail_status(ND_ERR_GRAD, "%s: input %d does not require grad", op, i);
    }
    nd_tensor **seeds = calloc((size_t)n_outputs, sizeof *seeds);
    nd_tensor **results = calloc((size_t)n_inputs, sizeof *results);
    if (!seeds || !results) {
        free(seeds);
        free(results);
        return nd_fail_status(ND_ERR_NOMEM, "%s: out of memory", op);
    }
    nd_status st = ND_OK;
    for (int i = 0; i < n_outputs && st == ND_OK; i++) {
        seeds[i] = root_grad(op, outputs[i], grad_outputs ? grad_outputs[i] : NULL);
        if (!seeds[i])
            st = nd_last_status();
    }
    capture cap = {n_inputs, inputs, results};
    if (st == ND_OK)
        st = run_backward(op, n_outputs, outputs, seeds, create_graph, &cap);
    /* Complete every result first, and hand them over only when all succeeded. */
    for (int i = 0; i < n_inputs && st == ND_OK; i++) {
        nd_tensor *r = results[i];
        if (!r) /* not reached: its gradient is zero */
            r = nd_k_full(inputs[i]->dtype, inputs[i]->ndim, inputs[i]->shape, 0.0);
        else if (!create_graph && r->grad_fn) {
            r = nd_k_copy(r, r->dtype);
            nd_unref(results[i]);
        }
        results[i] = r;
        if (!r)
            st = nd_last_status();
    }
    for (int i = 0; i < n_inputs; i++) {
        if (st == ND_OK)
            grads[i] = nd_register(results[i]);
        else
            nd_unref(results[i]);
    }
    for (int i = 0; i < n_outputs; i++)
        nd_unref(seeds[i]);
    free(seeds);
    free(results);
    return st;
}

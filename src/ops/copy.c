/* Copies: clone, contiguous, dtype conversion, forward and backward. */
#include "ops/common.h"

/* clone: a dense copy.  da = g. */
nd_tensor *nd_clone(nd_tensor *t)
{
    if (!t)
        return nd_fail_null("nd_clone", 0);
    nd_tensor *out = nd_k_copy(t, t->dtype);
    if (!out)
        return NULL;
    return nd_finish(out, ND_OP_CLONE, 1, &t, NULL);
}

nd_status nd_bw_clone(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    (void)node;
    gi[0] = g;
    return ND_OK;
}

nd_tensor *nd_contiguous(nd_tensor *t)
{
    if (!t)
        return nd_fail_null("nd_contiguous", 0);
    return nd_is_contiguous(t) ? nd_return_same(t) : nd_clone(t);
}

/* to: converted copy.  da = g converted back to a's dtype (only float <-> float is recorded). */
nd_tensor *nd_to(nd_tensor *t, nd_dtype dtype)
{
    if (!t)
        return nd_fail_null("nd_to", 0);
    if (!nd_dtype_valid((int)dtype))
        return nd_fail(ND_ERR_DTYPE, "nd_to: invalid dtype %d", (int)dtype);
    if (t->dtype == dtype)
        return nd_return_same(t);
    nd_tensor *out = nd_k_copy(t, dtype);
    if (!out)
        return NULL;
    return nd_finish(out, ND_OP_TO_COPY, 1, &t, NULL);
}

nd_status nd_bw_to_copy(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    gi[0] = nd_to(g, node->inputs[0]->dtype);
    return gi[0] ? ND_OK : nd_last_status();
}

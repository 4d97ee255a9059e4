/* The README's example: fit w in y = x @ w by gradient descent. */
#include <ndgrad.h>
#include <stdio.h>

int main(void)
{
    nd_manual_seed(0);
    nd_scope_begin();                                     /* setup temporaries */
    nd_tensor *x = nd_keep(nd_randn(ND_FLOAT32, ND_SHAPE(64, 3)));
    nd_tensor *y = nd_keep(nd_matmul(x, nd_full(0.5, ND_FLOAT32, ND_SHAPE(3, 1))));
    nd_tensor *w = nd_keep(nd_zeros(ND_FLOAT32, ND_SHAPE(3, 1)));
    nd_scope_end();                                       /* x, y, w survive: we kept them */
    nd_set_requires_grad(w, true);
    for (int step = 0; step < 200; step++) {
        nd_scope_begin();                                 /* temporaries belong to the scope */
        nd_tensor *err = nd_sub(nd_matmul(x, w), y);
        nd_tensor *loss = nd_mean(nd_mul(err, err));
        if (!loss || nd_backward(loss) != ND_OK) {        /* one check covers the whole chain */
            fprintf(stderr, "%s\n", nd_last_error());
            nd_scope_end();
            return 1;
        }
        nd_no_grad_begin();
        nd_sub_(w, nd_mul_scalar(nd_grad(w), 0.1));       /* w -= 0.1 * w.grad */
        nd_no_grad_end();
        nd_zero_grad(w);
        nd_scope_end();                                   /* frees the graph and temporaries */
    }
    nd_print(w);
    nd_release(w), nd_release(x), nd_release(y);
    return 0;
}

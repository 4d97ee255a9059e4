/* The four computations of the Python toy ndgrad grew from, printed as PyTorch prints them. */
#include <ndgrad.h>
#include <stdio.h>

#define CHECK(x)                                                  \
    do {                                                          \
        if (!(x)) {                                               \
            fprintf(stderr, "seed: %s\n", nd_last_error());       \
            nd_scope_end();                                       \
            return 1;                                             \
        }                                                         \
    } while (0)

static void show(const char *label, const nd_tensor *t)
{
    printf("%s = ", label);
    nd_print(t);
}

int main(void)
{
    nd_scope_begin();

    /* 1. z = x * y + 4 */
    nd_tensor *x = nd_from_f32((const float[]){2}, ND_SHAPE(1));
    nd_tensor *y = nd_from_f32((const float[]){3}, ND_SHAPE(1));
    CHECK(x && y);
    nd_set_requires_grad(x, true);
    nd_set_requires_grad(y, true);
    nd_tensor *z = nd_add(nd_mul(x, y), nd_from_f32((const float[]){4}, ND_SHAPE(1)));
    CHECK(z && nd_backward(z) == ND_OK);
    printf("# 1. z = x * y + 4\n");
    show("z", z);
    show("x.grad", nd_grad(x));
    show("y.grad", nd_grad(y));

    /* 2. y = relu(x), backward with a ones gradient */
    nd_tensor *x2 = nd_from_f32((const float[]){-1, 2, -3, 4}, ND_SHAPE(4));
    CHECK(x2);
    nd_set_requires_grad(x2, true);
    nd_tensor *y2 = nd_relu(x2);
    CHECK(y2 && nd_backward_with(y2, nd_ones_like(y2), false) == ND_OK);
    printf("\n# 2. y = relu(x)\n");
    show("y", y2);
    show("x.grad", nd_grad(x2));

    /* 3. C = A.mm(B), backward with ones */
    nd_tensor *A = nd_from_f32((const float[]){1, 2, 3, 4}, ND_SHAPE(2, 2));
    nd_tensor *B = nd_from_f32((const float[]){5, 6, 7, 8}, ND_SHAPE(2, 2));
    CHECK(A && B);
    nd_set_requires_grad(A, true);
    nd_set_requires_grad(B, true);
    nd_tensor *C = nd_mm(A, B);
    CHECK(C && nd_backward_with(C, nd_ones_like(C), false) == ND_OK);
    printf("\n# 3. C = A.mm(B)\n");
    show("C", C);
    show("A.grad", nd_grad(A));
    show("B.grad", nd_grad(B));

    /* 4. y = x.sum() */
    nd_tensor *x4 = nd_from_f32((const float[]){1, 2, 3, 4}, ND_SHAPE(4));
    CHECK(x4);
    nd_set_requires_grad(x4, true);
    nd_tensor *y4 = nd_sum(x4);
    CHECK(y4 && nd_backward(y4) == ND_OK);
    printf("\n# 4. y = x.sum()\n");
    show("y", y4);
    show("x.grad", nd_grad(x4));

    nd_scope_end();
    return 0;
}

/* Building strided iterations: dims of size 1 are dropped and neighbouring dims that are
 * contiguous with each other in every operand are merged, so most loops become one long loop. */
#include "backend/backend.h"

void nd_iter_init(nd_iter *it, int ndim, const int64_t *shape, int nops, char *const *ptrs,
                  const int64_t *const *elem_strides, const size_t *elem_sizes)
{
    it->nops = nops;
    for (int o = 0; o < nops; o++)
        it->ptr[o] = ptrs[o];
    int n = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1)
            continue;
        if (n > 0) {
            bool mergeable = true;
            for (int o = 0; o < nops; o++)
                if (it->strides[o][n - 1] != elem_strides[o][d] * (int64_t)elem_sizes[o] * shape[d])
                    mergeable = false;
            if (mergeable) {
                it->shape[n - 1] *= shape[d];
                for (int o = 0; o < nops; o++)
                    it->strides[o][n - 1] = elem_strides[o][d] * (int64_t)elem_sizes[o];
                continue;
            }
        }
        it->shape[n] = shape[d];
        for (int o = 0; o < nops; o++)
            it->strides[o][n] = elem_strides[o][d] * (int64_t)elem_sizes[o];
        n++;
    }
    for (int d = 0; d < ndim; d++)
        if (shape[d] == 0) { /* empty: one zero-length dim says it all */
            it->ndim = 1;
            it->shape[0] = 0;
            for (int o = 0; o < nops; o++)
                it->strides[o][0] = 0;
            return;
        }
    if (n == 0) { /* a single element */
        it->shape[0] = 1;
        for (int o = 0; o < nops; o++)
            it->strides[o][0] = 0;
        n = 1;
    }
    it->ndim = n;
}

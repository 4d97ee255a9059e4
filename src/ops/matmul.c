/* Matrix products: mm, bmm, dot, mv, and matmul with PyTorch's dispatch rules. The GEMM kernel
 * takes any strides, so transposed operands in the backward pass are never copied. */
#include "ops/common.h"

#include <string.h>

static bool check_float_pair(const char *name, const nd_tensor *a, const nd_tensor *b)
{
    if (!nd_dtype_is_float(a->dtype) || a->dtype != b->dtype) {
        nd_fail(ND_ERR_DTYPE, "%s: expected both operands to be float32 or both float64, got %s and %s", name,
                nd_dtype_name(a->dtype), nd_dtype_name(b->dtype));
        return false;
    }
    return true;
}

static nd_tensor *shape_error(const char *name, const nd_tensor *a, const nd_tensor *b, const char *why)
{
    char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
    return nd_fail(ND_ERR_SHAPE, "%s: shapes %s and %s cannot be multiplied (%s)", name,
                   nd_shape_str(s1, sizeof s1, a->ndim, a->shape), nd_shape_str(s2, sizeof s2, b->ndim, b->shape), why);
}

/* Runs GEMM on [batch, m, k] x [batch, k, n] geometries given as (batch, row, col) strides. */
static void gemm(nd_dtype dtype, int64_t batch, int64_t m, int64_t n, int64_t k, const nd_tensor *a,
                 const int64_t as[3], const nd_tensor *b, const int64_t bs[3], nd_tensor *out, const int64_t cs[3])
{
    if (batch == 0 || m == 0 || n == 0)
        return;
    if (k == 0) { /* an empty inner dim sums nothing */
        memset(out->storage->data, 0, out->storage->nbytes);
        return;
    }
    nd_backend_get()->gemm(dtype, batch, m, n, k, nd_data_ptr(a), as, nd_data_ptr(b), bs, nd_data_ptr(out), cs, false);
}

/* mm: out[n,m] = a[n,k] @ b[k,m].  da = g @ bᵀ, db = aᵀ @ g. */
static nd_tensor *mm_named(const char *name, nd_tensor *a, nd_tensor *b)
{
    nd_tensor *ins[2] = {a, b};
    if (!nd_check_inputs(name, 2, ins))
        return NULL;
    if (a->ndim != 2 || b->ndim != 2)
        return shape_error(name, a, b, "both must be 2-D");
    if (a->shape[1] != b->shape[0]) {
        char why[96];
        snprintf(why, sizeof why, "%lld != %lld", (long long)a->shape[1], (long long)b->shape[0]);
        return shape_error(name, a, b, why);
    }
    if (!check_float_pair(name, a, b))
        return NULL;
    int64_t shape[2] = {a->shape[0], b->shape[1]};
    nd_tensor *out = nd_alloc(a->dtype, 2, shape, false);
    if (!out)
        return NULL;
    int64_t as[3] = {0, a->strides[0], a->strides[1]}, bs[3] = {0, b->strides[0], b->strides[1]},
            cs[3] = {0, out->strides[0], out->strides[1]};
    gemm(a->dtype, 1, shape[0], shape[1], a->shape[1], a, as, b, bs, out, cs);
    return nd_finish(out, ND_OP_MM, 2, ins, NULL);
}

nd_tensor *nd_mm(nd_tensor *a, nd_tensor *b) { return mm_named("nd_mm", a, b); }

/* bmm: out[p,n,m] = a[p,n,k] @ b[p,k,m].  da = g @ bᵀ, db = aᵀ @ g (per batch). */
nd_tensor *nd_bmm(nd_tensor *a, nd_tensor *b)
{
    const char *name = "nd_bmm";
    nd_tensor *ins[2] = {a, b};
    if (!nd_check_inputs(name, 2, ins))
        return NULL;
    if (a->ndim != 3 || b->ndim != 3)
        return shape_error(name, a, b, "both must be 3-D");
    if (a->shape[0] != b->shape[0])
        return shape_error(name, a, b, "batch sizes differ");
    if (a->shape[2] != b->shape[1]) {
        char why[96];
        snprintf(why, sizeof why, "%lld != %lld", (long long)a->shape[2], (long long)b->shape[1]);
        return shape_error(name, a, b, why);
    }
    if (!check_float_pair(name, a, b))
        return NULL;
    int64_t shape[3] = {a->shape[0], a->shape[1], b->shape[2]};
    nd_tensor *out = nd_alloc(a->dtype, 3, shape, false);
    if (!out)
        return NULL;
    gemm(a->dtype, shape[0], shape[1], shape[2], a->shape[2], a, a->strides, b, b->strides, out, out->strides);
    return nd_finish(out, ND_OP_BMM, 2, ins, NULL);
}

nd_status nd_bw_mm(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *a = node->inputs[0], *b = node->inputs[1];
    bool batched = node->op == ND_OP_BMM;
    nd_tensor *(*product)(nd_tensor *, nd_tensor *) = batched ? nd_bmm : nd_mm;
    int r = batched ? 1 : 0;
    if (a->requires_grad && !(gi[0] = product(g, nd_transpose(b, r, r + 1))))
        return nd_last_status();
    if (b->requires_grad && !(gi[1] = product(nd_transpose(a, r, r + 1), g)))
        return nd_last_status();
    return ND_OK;
}

/* dot: out = Σ a_i b_i (1-D).  da = g * b, db = g * a. */
static nd_tensor *dot(const char *name, nd_tensor *a, nd_tensor *b)
{
    nd_tensor *ins[2] = {a, b};
    if (a->shape[0] != b->shape[0]) {
        char why[96];
        snprintf(why, sizeof why, "1-D tensors of different lengths %lld and %lld", (long long)a->shape[0],
                 (long long)b->shape[0]);
        return shape_error(name, a, b, why);
    }
    if (!check_float_pair(name, a, b))
        return NULL;
    nd_tensor *out = nd_alloc(a->dtype, 0, NULL, false);
    if (!out)
        return NULL;
    int64_t as[3] = {0, 0, a->strides[0]}, bs[3] = {0, b->strides[0], 0}, cs[3] = {0, 0, 0};
    gemm(a->dtype, 1, 1, 1, a->shape[0], a, as, b, bs, out, cs);
    return nd_finish(out, ND_OP_DOT, 2, ins, NULL);
}

nd_status nd_bw_dot(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    if (node->inputs[0]->requires_grad && !(gi[0] = nd_mul(g, node->inputs[1])))
        return nd_last_status();
    if (node->inputs[1]->requires_grad && !(gi[1] = nd_mul(g, node->inputs[0])))
        return nd_last_status();
    return ND_OK;
}

/* mv: out[n] = a[n,k] @ b[k].  da = outer(g, b), db = aᵀ @ g. */
static nd_tensor *mv(const char *name, nd_tensor *a, nd_tensor *b)
{
    nd_tensor *ins[2] = {a, b};
    if (a->shape[1] != b->shape[0]) {
        char why[96];
        snprintf(why, sizeof why, "%lld != %lld", (long long)a->shape[1], (long long)b->shape[0]);
        return shape_error(name, a, b, why);
    }
    if (!check_float_pair(name, a, b))
        return NULL;
    nd_tensor *out = nd_alloc(a->dtype, 1, a->shape, false);
    if (!out)
        return NULL;
    int64_t as[3] = {0, a->strides[0], a->strides[1]}, bs[3] = {0, b->strides[0], 0}, cs[3] = {0, out->strides[0], 0};
    gemm(a->dtype, 1, a->shape[0], 1, a->shape[1], a, as, b, bs, out, cs);
    return nd_finish(out, ND_OP_MV, 2, ins, NULL);
}

nd_status nd_bw_mv(nd_node *node, nd_tensor *g, nd_tensor **gi)
{
    nd_tensor *a = node->inputs[0], *b = node->inputs[1];
    if (a->requires_grad && !(gi[0] = nd_mul(nd_unsqueeze(g, 1), nd_unsqueeze(b, 0))))
        return nd_last_status();
    if (b->requires_grad && !(gi[1] = nd_matmul(nd_t(a), g)))
        return nd_last_status();
    return ND_OK;
}

static nd_tensor *batched_matmul(const char *name, nd_tensor *a, nd_tensor *b, int64_t k);

/* torch.matmul's dispatch: dot, mv, mm, vector-matrix, then the batched cases. N-d @ 2-d folds
 * the batch into the rows (one GEMM, no copies of a contiguous a); otherwise batch dims
 * broadcast and the work goes to bmm. */
nd_tensor *nd_matmul(nd_tensor *a, nd_tensor *b)
{
    const char *name = "nd_matmul";
    nd_tensor *ins[2] = {a, b};
    if (!nd_check_inputs(name, 2, ins))
        return NULL;
    int da = a->ndim, db = b->ndim;
    if (da == 0 || db == 0)
        return shape_error(name, a, b, "both arguments to matmul need to be at least 1-D");
    if (da == 1 && db == 1)
        return dot(name, a, b);
    if (da == 2 && db == 1)
        return mv(name, a, b);
    if (da == 1 && db == 2) {
        if (!check_float_pair(name, a, b))
            return NULL;
        if (a->shape[0] != b->shape[0]) {
            char why[96];
            snprintf(why, sizeof why, "%lld != %lld", (long long)a->shape[0], (long long)b->shape[0]);
            return shape_error(name, a, b, why);
        }
        nd_composite_begin();
        return nd_composite_end(nd_squeeze_dim(nd_mm(nd_unsqueeze(a, 0), b), 0));
    }
    if (da == 2 && db == 2)
        return mm_named(name, a, b);

    int64_t k = a->shape[da - 1];
    int64_t kb = db == 1 ? b->shape[0] : b->shape[db - 2];
    if (k != kb) {
        char why[96];
        snprintf(why, sizeof why, "%lld != %lld", (long long)k, (long long)kb);
        return shape_error(name, a, b, why);
    }
    if (!check_float_pair(name, a, b))
        return NULL;
    nd_composite_begin();
    return nd_composite_end(batched_matmul(name, a, b, k));
}

static nd_tensor *batched_matmul(const char *name, nd_tensor *a, nd_tensor *b, int64_t k)
{
    int da = a->ndim, db = b->ndim;
    if (da >= 3 && db <= 2) {
        /* Fold a's batch into rows: [..., n, k] -> [B*n, k]. */
        int64_t rows = nd_numel(a) / (k ? k : 1);
        if (k == 0) {
            rows = 1;
            for (int i = 0; i < da - 1; i++)
                rows *= a->shape[i];
        }
        int64_t flat[2] = {rows, k};
        nd_tensor *a2 = nd_reshape(a, 2, flat);
        nd_tensor *b2 = db == 1 ? nd_unsqueeze(b, 1) : b;
        nd_tensor *o = nd_mm(a2, b2);
        if (!o)
            return NULL;
        int64_t shape[ND_MAX_DIMS];
        int nd = 0;
        for (int i = 0; i < da - 1; i++)
            shape[nd++] = a->shape[i];
        if (db == 2)
            shape[nd++] = b->shape[1];
        return nd_view(o, nd, shape);
    }
    /* General batched case. */
    nd_tensor *a3 = da == 1 ? nd_unsqueeze(a, 0) : a;
    nd_tensor *b3 = db == 1 ? nd_unsqueeze(b, 1) : b;
    if (!a3 || !b3)
        return NULL;
    int na = a3->ndim - 2, nb = b3->ndim - 2;
    int nbatch;
    int64_t batch[ND_MAX_DIMS];
    if (!nd_broadcast_shapes(na, a3->shape, nb, b3->shape, &nbatch, batch))
        return shape_error(name, a, b, "batch dimensions cannot be broadcast");
    int64_t n = a3->shape[a3->ndim - 2], m = b3->shape[b3->ndim - 1];
    int64_t ea[ND_MAX_DIMS], eb[ND_MAX_DIMS];
    int64_t bcount = 1;
    for (int i = 0; i < nbatch; i++) {
        ea[i] = eb[i] = batch[i];
        bcount *= batch[i];
    }
    ea[nbatch] = n, ea[nbatch + 1] = k;
    eb[nbatch] = k, eb[nbatch + 1] = m;
    int64_t fa[3] = {bcount, n, k}, fb[3] = {bcount, k, m};
    nd_tensor *o = nd_bmm(nd_reshape(nd_expand(a3, nbatch + 2, ea), 3, fa), nd_reshape(nd_expand(b3, nbatch + 2, eb), 3, fb));
    if (!o)
        return NULL;
    int64_t shape[ND_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < nbatch; i++)
        shape[nd++] = batch[i];
    if (da > 1)
        shape[nd++] = n;
    if (db > 1)
        shape[nd++] = m;
    return nd_reshape(o, nd, shape);
}

const char *nd_gemm_kernel(void) { return nd_backend_get()->gemm_kernel_name(); }

/* One test per error path: the op returns NULL (or the expected status), nd_last_error() names the
 * op and the offending shapes / dims / dtypes, nothing leaks (checked by the harness), and the
 * tensors that already existed are left exactly as they were. */
#include "harness.h"

#include <stdlib.h>

/* ------------------------------------------------------------------ helpers */

/* A tensor of dtype holding 0, 1, 2, ... in the given shape (owned by the current scope). */
static nd_tensor *iota(nd_dtype dtype, int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    nd_tensor *r = nd_arange(0, (double)n, 1, dtype);
    return nd_reshape(r, ndim, shape);
}

/* Snapshot of a tensor's values, to prove an error left it untouched. */
typedef struct snap {
    int64_t n;
    double v[64];
    int ndim;
    int64_t shape[ND_MAX_DIMS];
    nd_dtype dtype;
    bool requires_grad;
} snap;

static snap take(const nd_tensor *t)
{
    snap s;
    memset(&s, 0, sizeof s);
    if (!t)
        return s;
    s.n = nd_numel(t);
    s.ndim = nd_ndim(t);
    s.dtype = nd_dtype_of(t);
    s.requires_grad = nd_requires_grad(t);
    for (int i = 0; i < s.ndim; i++)
        s.shape[i] = nd_shape(t)[i];
    if (s.n <= 64 && nd_copy_out(t, s.v, sizeof s.v, ND_FLOAT64) != ND_OK)
        s.n = -1;
    return s;
}

static bool same_as(const nd_tensor *t, const snap *before)
{
    if (!t)
        return false;
    snap now = take(t);
    return now.n == before->n && now.n >= 0 && now.ndim == before->ndim && now.dtype == before->dtype &&
           now.requires_grad == before->requires_grad &&
           memcmp(now.shape, before->shape, sizeof now.shape) == 0 &&
           memcmp(now.v, before->v, sizeof now.v) == 0;
}

#define CHECK_UNCHANGED(t, s) CHECK(same_as((t), &(s)))

/* The op returned NULL with this status. */
#define CHECK_NULL_WITH(expr, status)                                                                \
    do {                                                                                             \
        nd_clear_error();                                                                            \
        CHECK((expr) == NULL);                                                                       \
        CHECK(nd_last_status() == (status));                                                         \
    } while (0)

/* The call returned this status and recorded it. */
#define CHECK_FAILS_WITH(expr, status)                                                               \
    do {                                                                                             \
        nd_clear_error();                                                                            \
        CHECK((expr) == (status));                                                                   \
        CHECK(nd_last_status() == (status));                                                         \
    } while (0)

/* ------------------------------------------------------------------ shape mismatches */

TEST(add_shape_mismatch)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3)), *b = iota(ND_FLOAT32, ND_SHAPE(4));
    snap sa = take(a), sb = take(b);
    int64_t live = nd_live_tensors();
    CHECK_NULL_WITH(nd_add(a, b), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_add");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_ERROR_HAS("[4]");
    CHECK(nd_live_tensors() == live);
    CHECK_UNCHANGED(a, sa);
    CHECK_UNCHANGED(b, sb);
    nd_scope_end();
}

TEST(mul_shape_mismatch)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT64, ND_SHAPE(2, 3, 4)), *b = iota(ND_FLOAT64, ND_SHAPE(3, 2));
    CHECK(nd_set_requires_grad(a, true) == ND_OK);
    snap sa = take(a), sb = take(b);
    int64_t live = nd_live_tensors(), nodes = nd_live_nodes();
    CHECK_NULL_WITH(nd_mul(a, b), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_mul");
    CHECK_ERROR_HAS("[2, 3, 4]");
    CHECK_ERROR_HAS("[3, 2]");
    CHECK(nd_live_tensors() == live && nd_live_nodes() == nodes);
    CHECK_UNCHANGED(a, sa);
    CHECK_UNCHANGED(b, sb);
    CHECK(nd_grad(a) == NULL);
    nd_scope_end();
}

TEST(sub_div_pow_compare_shape_mismatch)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(3, 2)), *b = iota(ND_FLOAT32, ND_SHAPE(3));
    snap sa = take(a), sb = take(b);
    CHECK_NULL_WITH(nd_sub(a, b), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_sub");
    CHECK_ERROR_HAS("[3, 2]");
    CHECK_NULL_WITH(nd_div(a, b), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_div");
    CHECK_NULL_WITH(nd_pow(a, b), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_pow");
    CHECK_NULL_WITH(nd_lt(a, b), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_lt");
    CHECK_ERROR_HAS("[3]");
    CHECK_UNCHANGED(a, sa);
    CHECK_UNCHANGED(b, sb);
    nd_scope_end();
}

TEST(where_shape_mismatch)
{
    nd_scope_begin();
    nd_tensor *c = nd_gt(iota(ND_FLOAT32, ND_SHAPE(2, 3)), nd_scalar(1, ND_FLOAT32));
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3)), *b = iota(ND_FLOAT32, ND_SHAPE(2));
    snap sa = take(a), sb = take(b);
    CHECK_NULL_WITH(nd_where(c, a, b), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_where");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_ERROR_HAS("[2]");
    CHECK_UNCHANGED(a, sa);
    CHECK_UNCHANGED(b, sb);
    nd_scope_end();
}

/* A 2-D · 2-D product is dispatched to nd_mm internally, but the user called nd_matmul. */
TEST(matmul_shape_mismatch_2d)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3)), *b = iota(ND_FLOAT32, ND_SHAPE(4, 5));
    snap sa = take(a), sb = take(b);
    CHECK_NULL_WITH(nd_matmul(a, b), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_matmul");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_ERROR_HAS("[4, 5]");
    CHECK_UNCHANGED(a, sa);
    CHECK_UNCHANGED(b, sb);
    nd_scope_end();
}

TEST(matmul_shape_mismatch_other_ranks)
{
    nd_scope_begin();
    nd_tensor *v3 = iota(ND_FLOAT32, ND_SHAPE(3)), *v4 = iota(ND_FLOAT32, ND_SHAPE(4));
    nd_tensor *m23 = iota(ND_FLOAT32, ND_SHAPE(2, 3)), *m45 = iota(ND_FLOAT32, ND_SHAPE(4, 5));
    nd_tensor *b223 = iota(ND_FLOAT32, ND_SHAPE(2, 2, 3)), *b345 = iota(ND_FLOAT32, ND_SHAPE(3, 4, 5));
    nd_tensor *s = nd_scalar(2, ND_FLOAT32);
    snap s1 = take(v3), s2 = take(b223);
    CHECK_NULL_WITH(nd_matmul(v3, v4), ND_ERR_SHAPE); /* dot */
    CHECK_ERROR_HAS("nd_matmul");
    CHECK_ERROR_HAS("[3]");
    CHECK_ERROR_HAS("[4]");
    CHECK_NULL_WITH(nd_matmul(m23, v4), ND_ERR_SHAPE); /* mv */
    CHECK_ERROR_HAS("nd_matmul");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_NULL_WITH(nd_matmul(v3, m45), ND_ERR_SHAPE); /* vector-matrix */
    CHECK_ERROR_HAS("nd_matmul");
    CHECK_ERROR_HAS("[4, 5]");
    CHECK_NULL_WITH(nd_matmul(b223, m45), ND_ERR_SHAPE); /* N-d · 2-d */
    CHECK_ERROR_HAS("nd_matmul");
    CHECK_ERROR_HAS("[2, 2, 3]");
    CHECK_NULL_WITH(nd_matmul(b223, b345), ND_ERR_SHAPE); /* batched */
    CHECK_ERROR_HAS("nd_matmul");
    CHECK_ERROR_HAS("[3, 4, 5]");
    nd_tensor *b233 = iota(ND_FLOAT32, ND_SHAPE(2, 3, 3)), *b333 = iota(ND_FLOAT32, ND_SHAPE(3, 3, 3));
    CHECK_NULL_WITH(nd_matmul(b233, b333), ND_ERR_SHAPE); /* batch dims 2 and 3 do not broadcast */
    CHECK_ERROR_HAS("nd_matmul");
    CHECK_ERROR_HAS("[2, 3, 3]");
    CHECK_NULL_WITH(nd_matmul(s, v3), ND_ERR_SHAPE); /* 0-dim operand */
    CHECK_ERROR_HAS("nd_matmul");
    CHECK_UNCHANGED(v3, s1);
    CHECK_UNCHANGED(b223, s2);
    nd_scope_end();
}

TEST(mm_shape_mismatch)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT64, ND_SHAPE(2, 3)), *b = iota(ND_FLOAT64, ND_SHAPE(4, 5));
    nd_tensor *c = iota(ND_FLOAT64, ND_SHAPE(2, 3, 4));
    snap sa = take(a), sb = take(b);
    CHECK_NULL_WITH(nd_mm(a, b), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_mm");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_ERROR_HAS("[4, 5]");
    CHECK_NULL_WITH(nd_mm(c, b), ND_ERR_SHAPE); /* not 2-D */
    CHECK_ERROR_HAS("nd_mm");
    CHECK_ERROR_HAS("[2, 3, 4]");
    CHECK_UNCHANGED(a, sa);
    CHECK_UNCHANGED(b, sb);
    nd_scope_end();
}

TEST(bmm_shape_mismatch)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 2, 3)), *b = iota(ND_FLOAT32, ND_SHAPE(2, 4, 5));
    nd_tensor *c = iota(ND_FLOAT32, ND_SHAPE(3, 3, 5)), *m = iota(ND_FLOAT32, ND_SHAPE(3, 5));
    snap sa = take(a), sb = take(b);
    CHECK_NULL_WITH(nd_bmm(a, b), ND_ERR_SHAPE); /* inner dims */
    CHECK_ERROR_HAS("nd_bmm");
    CHECK_ERROR_HAS("[2, 2, 3]");
    CHECK_ERROR_HAS("[2, 4, 5]");
    CHECK_NULL_WITH(nd_bmm(a, c), ND_ERR_SHAPE); /* batch sizes */
    CHECK_ERROR_HAS("nd_bmm");
    CHECK_ERROR_HAS("[3, 3, 5]");
    CHECK_NULL_WITH(nd_bmm(a, m), ND_ERR_SHAPE); /* not 3-D */
    CHECK_ERROR_HAS("nd_bmm");
    CHECK_ERROR_HAS("[3, 5]");
    CHECK_UNCHANGED(a, sa);
    CHECK_UNCHANGED(b, sb);
    nd_scope_end();
}

TEST(view_shape_mismatch)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    snap sa = take(a);
    CHECK_NULL_WITH(nd_view(a, ND_SHAPE(4)), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_view");
    CHECK_ERROR_HAS("[4]");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_NULL_WITH(nd_view(a, ND_SHAPE(-1, 4)), ND_ERR_SHAPE); /* 6 is not a multiple of 4 */
    CHECK_ERROR_HAS("nd_view");
    CHECK_ERROR_HAS("[-1, 4]");
    CHECK_NULL_WITH(nd_view(a, ND_SHAPE(-1, -1)), ND_ERR_VALUE); /* two inferred dims */
    CHECK_ERROR_HAS("nd_view");
    CHECK_NULL_WITH(nd_reshape(a, ND_SHAPE(5)), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_reshape");
    CHECK_ERROR_HAS("[5]");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_UNCHANGED(a, sa);
    nd_scope_end();
}

/* view of a transposed tensor needs a copy: refused (reshape would copy). */
TEST(view_incompatible_strides)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    nd_tensor *t = nd_t(a);
    snap st = take(t);
    nd_clear_error();
    CHECK(nd_view(t, ND_SHAPE(6)) == NULL);
    CHECK(nd_last_status() != ND_OK);
    CHECK_ERROR_HAS("nd_view");
    CHECK_ERROR_HAS("[3, 2]"); /* the offending input's shape */
    CHECK_UNCHANGED(t, st);
    nd_tensor *r = nd_reshape(t, ND_SHAPE(6));
    CHECK_VALUES(r, 0, 0, 3, 1, 4, 2, 5);
    nd_scope_end();
}

TEST(expand_shape_mismatch)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    snap sa = take(a);
    CHECK_NULL_WITH(nd_expand(a, ND_SHAPE(4, 3)), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_expand");
    CHECK_ERROR_HAS("[4, 3]");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_NULL_WITH(nd_expand(a, ND_SHAPE(3)), ND_ERR_SHAPE); /* fewer dims than the tensor */
    CHECK_ERROR_HAS("nd_expand");
    CHECK_NULL_WITH(nd_expand(a, ND_SHAPE(-1, 2, 3)), ND_ERR_SHAPE); /* -1 in a new leading dim */
    CHECK_ERROR_HAS("nd_expand");
    CHECK_UNCHANGED(a, sa);
    nd_scope_end();
}

/* ------------------------------------------------------------------ dtypes */

TEST(int64_into_mm)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_INT64, ND_SHAPE(2, 3)), *b = iota(ND_INT64, ND_SHAPE(3, 2));
    nd_tensor *f = iota(ND_FLOAT32, ND_SHAPE(3, 2)), *d = iota(ND_FLOAT64, ND_SHAPE(3, 2));
    snap sa = take(a), sb = take(b);
    CHECK_NULL_WITH(nd_mm(a, b), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_mm");
    CHECK_ERROR_HAS("int64");
    CHECK_NULL_WITH(nd_matmul(a, f), ND_ERR_DTYPE); /* int64 with float32 */
    CHECK_ERROR_HAS("nd_matmul");
    CHECK_ERROR_HAS("int64");
    CHECK_ERROR_HAS("float32");
    nd_tensor *g = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    CHECK_NULL_WITH(nd_mm(g, d), ND_ERR_DTYPE); /* float32 with float64 */
    CHECK_ERROR_HAS("nd_mm");
    CHECK_ERROR_HAS("float64");
    CHECK_UNCHANGED(a, sa);
    CHECK_UNCHANGED(b, sb);
    nd_scope_end();
}

TEST(requires_grad_on_int64)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_INT64, ND_SHAPE(2, 3));
    nd_tensor *b = nd_gt(a, nd_scalar(2, ND_INT64));
    snap sa = take(a);
    CHECK_FAILS_WITH(nd_set_requires_grad(a, true), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_set_requires_grad");
    CHECK_ERROR_HAS("int64");
    CHECK(!nd_requires_grad(a));
    CHECK_UNCHANGED(a, sa);
    CHECK_FAILS_WITH(nd_set_requires_grad(b, true), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("bool");
    CHECK(!nd_requires_grad(b));
    /* Turning it off is always allowed. */
    nd_clear_error();
    CHECK(nd_set_requires_grad(a, false) == ND_OK);
    nd_scope_end();
}

TEST(bool_subtraction)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    nd_tensor *a = nd_gt(x, nd_scalar(2, ND_FLOAT32)), *b = nd_lt(x, nd_scalar(4, ND_FLOAT32));
    snap sa = take(a), sb = take(b);
    CHECK_NULL_WITH(nd_sub(a, b), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_sub");
    CHECK_ERROR_HAS("bool");
    CHECK_FAILS_WITH(nd_sub_(a, b), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_sub_");
    CHECK_ERROR_HAS("bool");
    CHECK_NULL_WITH(nd_neg(a), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_neg");
    CHECK_UNCHANGED(a, sa);
    CHECK_UNCHANGED(b, sb);
    nd_scope_end();
}

TEST(where_with_float_condition)
{
    nd_scope_begin();
    nd_tensor *c = nd_ones(ND_FLOAT32, ND_SHAPE(2, 3));
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3)), *b = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 3));
    snap sc = take(c), sa = take(a);
    CHECK_NULL_WITH(nd_where(c, a, b), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_where");
    CHECK_ERROR_HAS("float32");
    CHECK_UNCHANGED(c, sc);
    CHECK_UNCHANGED(a, sa);
    nd_scope_end();
}

TEST(mean_of_int64)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_INT64, ND_SHAPE(2, 3));
    CHECK_NULL_WITH(nd_mean(a), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_mean");
    CHECK_ERROR_HAS("int64");
    CHECK_NULL_WITH(nd_mean_dims(a, ND_DIMS(0), false), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_mean_dims");
    nd_scope_end();
}

/* ------------------------------------------------------------------ dims out of range */

TEST(transpose_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    snap sa = take(a);
    CHECK_NULL_WITH(nd_transpose(a, 0, 2), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_transpose");
    CHECK_ERROR_HAS("[-2, 1]");
    CHECK_ERROR_HAS("got 2");
    CHECK_NULL_WITH(nd_transpose(a, -3, 0), ND_ERR_DIM);
    CHECK_ERROR_HAS("got -3");
    nd_tensor *c = iota(ND_FLOAT32, ND_SHAPE(2, 3, 4));
    CHECK_NULL_WITH(nd_t(c), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_t");
    CHECK_UNCHANGED(a, sa);
    nd_scope_end();
}

TEST(sum_dims_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3, 4));
    snap sa = take(a);
    CHECK_NULL_WITH(nd_sum_dims(a, ND_DIMS(3), false), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_sum_dims");
    CHECK_ERROR_HAS("3");
    CHECK_NULL_WITH(nd_sum_dims(a, ND_DIMS(0, -4), true), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_sum_dims");
    CHECK_ERROR_HAS("-4");
    CHECK_NULL_WITH(nd_mean_dims(a, ND_DIMS(1, 7), false), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_mean_dims");
    CHECK_ERROR_HAS("7");
    CHECK_UNCHANGED(a, sa);
    nd_scope_end();
}

TEST(sum_dims_repeated_dim)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3, 4));
    CHECK_NULL_WITH(nd_sum_dims(a, ND_DIMS(0, -3), false), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_sum_dims");
    CHECK_ERROR_HAS("more than once");
    CHECK_NULL_WITH(nd_mean_dims(a, ND_DIMS(2, 2), true), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_mean_dims");
    nd_scope_end();
}

TEST(select_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    snap sa = take(a);
    CHECK_NULL_WITH(nd_select(a, 2, 0), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_select");
    CHECK_ERROR_HAS("got 2");
    CHECK_NULL_WITH(nd_select(nd_scalar(1, ND_FLOAT32), 0, 0), ND_ERR_DIM); /* 0-dim */
    CHECK_ERROR_HAS("nd_select");
    CHECK_UNCHANGED(a, sa);
    nd_scope_end();
}

TEST(unsqueeze_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    CHECK_NULL_WITH(nd_unsqueeze(a, 3), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_unsqueeze");
    CHECK_ERROR_HAS("[-3, 2]");
    CHECK_ERROR_HAS("got 3");
    CHECK_NULL_WITH(nd_unsqueeze(a, -4), ND_ERR_DIM);
    CHECK_ERROR_HAS("got -4");
    nd_scope_end();
}

TEST(squeeze_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 1));
    CHECK_NULL_WITH(nd_squeeze_dim(a, 2), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_squeeze_dim");
    CHECK_ERROR_HAS("got 2");
    CHECK_NULL_WITH(nd_squeeze_dim(a, -3), ND_ERR_DIM);
    CHECK_ERROR_HAS("got -3");
    nd_scope_end();
}

TEST(slice_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    CHECK_NULL_WITH(nd_slice(a, 2, 0, 1, 1), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_slice");
    CHECK_ERROR_HAS("got 2");
    CHECK_NULL_WITH(nd_slice(a, 0, 0, 2, 0), ND_ERR_VALUE); /* step 0 */
    CHECK_ERROR_HAS("nd_slice");
    CHECK_NULL_WITH(nd_slice(a, 0, 0, 2, -1), ND_ERR_VALUE); /* negative step */
    CHECK_ERROR_HAS("step");
    nd_scope_end();
}

TEST(narrow_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    CHECK_NULL_WITH(nd_narrow(a, -3, 0, 1), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_narrow");
    CHECK_ERROR_HAS("got -3");
    nd_scope_end();
}

TEST(flatten_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3, 4));
    CHECK_NULL_WITH(nd_flatten(a, 0, 3), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_flatten");
    CHECK_ERROR_HAS("got 3");
    CHECK_NULL_WITH(nd_flatten(a, 2, 1), ND_ERR_DIM); /* start after end */
    CHECK_ERROR_HAS("nd_flatten");
    nd_scope_end();
}

TEST(permute_bad_dims)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    snap sa = take(a);
    CHECK_NULL_WITH(nd_permute(a, ND_DIMS(0, 2)), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_permute");
    CHECK_ERROR_HAS("2");
    CHECK_NULL_WITH(nd_permute(a, ND_DIMS(0, 0)), ND_ERR_DIM); /* repeated */
    CHECK_ERROR_HAS("nd_permute");
    CHECK_ERROR_HAS("repeated");
    nd_clear_error();
    CHECK(nd_permute(a, ND_DIMS(1, -2)) != NULL); /* -2 is dim 0: valid */
    CHECK_NULL_WITH(nd_permute(a, ND_DIMS(1, 0, 2)), ND_ERR_DIM); /* wrong count */
    CHECK_ERROR_HAS("nd_permute");
    CHECK_UNCHANGED(a, sa);
    nd_scope_end();
}

/* ------------------------------------------------------------------ indices out of range */

TEST(select_index_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    snap sa = take(a);
    CHECK_NULL_WITH(nd_select(a, 1, 3), ND_ERR_INDEX);
    CHECK_ERROR_HAS("nd_select");
    CHECK_ERROR_HAS("index 3");
    CHECK_NULL_WITH(nd_select(a, 0, -3), ND_ERR_INDEX);
    CHECK_ERROR_HAS("index -3");
    CHECK_UNCHANGED(a, sa);
    nd_scope_end();
}

TEST(narrow_index_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    CHECK_NULL_WITH(nd_narrow(a, 1, 2, 2), ND_ERR_INDEX); /* 2 + 2 > 3 */
    CHECK_ERROR_HAS("nd_narrow");
    CHECK_NULL_WITH(nd_narrow(a, 1, 4, 0), ND_ERR_INDEX); /* start beyond the end */
    CHECK_ERROR_HAS("nd_narrow");
    CHECK_NULL_WITH(nd_narrow(a, 0, 0, -1), ND_ERR_INDEX); /* negative length */
    CHECK_ERROR_HAS("nd_narrow");
    nd_scope_end();
}

TEST(get_index_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    double v = 42;
    CHECK_FAILS_WITH(nd_get(a, (const int64_t[]){2, 0}, &v), ND_ERR_INDEX);
    CHECK_ERROR_HAS("nd_get");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK(v == 42); /* not written */
    CHECK_FAILS_WITH(nd_get(a, (const int64_t[]){0, -4}, &v), ND_ERR_INDEX);
    CHECK_ERROR_HAS("nd_get");
    CHECK_FAILS_WITH(nd_get(a, NULL, &v), ND_ERR_NULL);
    CHECK_ERROR_HAS("nd_get");
    CHECK_FAILS_WITH(nd_get(a, (const int64_t[]){0, 0}, NULL), ND_ERR_NULL);
    CHECK_ERROR_HAS("nd_get");
    nd_scope_end();
}

TEST(set_index_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    snap sa = take(a);
    CHECK_FAILS_WITH(nd_set(a, (const int64_t[]){0, 3}, 9.0), ND_ERR_INDEX);
    CHECK_ERROR_HAS("nd_set");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_FAILS_WITH(nd_set(a, (const int64_t[]){-3, 0}, 9.0), ND_ERR_INDEX);
    CHECK_ERROR_HAS("nd_set");
    CHECK_UNCHANGED(a, sa);
    nd_scope_end();
}

/* ------------------------------------------------------------------ NULL inputs */

/* Each op given NULL returns NULL (or ND_ERR_NULL) and names itself. */
#define NULL_OP(expr, name)                                                                          \
    do {                                                                                             \
        CHECK_NULL_WITH(expr, ND_ERR_NULL);                                                          \
        CHECK_ERROR_HAS(name);                                                                       \
    } while (0)
#define NULL_STATUS(expr, name)                                                                      \
    do {                                                                                             \
        CHECK_FAILS_WITH(expr, ND_ERR_NULL);                                                         \
        CHECK_ERROR_HAS(name);                                                                       \
    } while (0)

TEST(null_input_elementwise)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    nd_tensor *c = nd_gt(x, nd_scalar(1, ND_FLOAT32));
    snap sx = take(x);
    NULL_OP(nd_add(NULL, x), "nd_add");
    CHECK_ERROR_HAS("input 0");
    NULL_OP(nd_add(x, NULL), "nd_add");
    CHECK_ERROR_HAS("input 1");
    NULL_OP(nd_sub(NULL, x), "nd_sub");
    NULL_OP(nd_mul(x, NULL), "nd_mul");
    NULL_OP(nd_div(NULL, NULL), "nd_div");
    NULL_OP(nd_pow(x, NULL), "nd_pow");
    NULL_OP(nd_neg(NULL), "nd_neg");
    NULL_OP(nd_relu(NULL), "nd_relu");
    NULL_OP(nd_exp(NULL), "nd_exp");
    NULL_OP(nd_log(NULL), "nd_log");
    NULL_OP(nd_tanh(NULL), "nd_tanh");
    NULL_OP(nd_sigmoid(NULL), "nd_sigmoid");
    NULL_OP(nd_where(NULL, x, x), "nd_where");
    NULL_OP(nd_where(c, x, NULL), "nd_where");
    NULL_OP(nd_eq(NULL, x), "nd_eq");
    NULL_OP(nd_ge(x, NULL), "nd_ge");
    CHECK_UNCHANGED(x, sx);
    nd_scope_end();
}

TEST(null_input_scalar_ops)
{
    NULL_OP(nd_add_scalar(NULL, 1), "nd_add_scalar");
    NULL_OP(nd_sub_scalar(NULL, 1), "nd_sub_scalar");
    NULL_OP(nd_rsub_scalar(1, NULL), "nd_rsub_scalar");
    NULL_OP(nd_mul_scalar(NULL, 1), "nd_mul_scalar");
    NULL_OP(nd_div_scalar(NULL, 1), "nd_div_scalar");
    NULL_OP(nd_pow_scalar(NULL, 2), "nd_pow_scalar");
}

TEST(null_input_reductions_and_linalg)
{
    nd_scope_begin();
    nd_tensor *m = iota(ND_FLOAT32, ND_SHAPE(2, 2));
    nd_tensor *b = iota(ND_FLOAT32, ND_SHAPE(1, 2, 2));
    NULL_OP(nd_sum(NULL), "nd_sum");
    NULL_OP(nd_mean(NULL), "nd_mean");
    NULL_OP(nd_sum_dims(NULL, ND_DIMS(0), false), "nd_sum_dims");
    NULL_OP(nd_mean_dims(NULL, ND_DIMS(0), true), "nd_mean_dims");
    NULL_OP(nd_matmul(NULL, m), "nd_matmul");
    NULL_OP(nd_matmul(m, NULL), "nd_matmul");
    NULL_OP(nd_mm(NULL, m), "nd_mm");
    NULL_OP(nd_bmm(b, NULL), "nd_bmm");
    nd_scope_end();
}

TEST(null_input_views_and_copies)
{
    NULL_OP(nd_view(NULL, ND_SHAPE(2)), "nd_view");
    NULL_OP(nd_reshape(NULL, ND_SHAPE(2)), "nd_reshape");
    NULL_OP(nd_transpose(NULL, 0, 1), "nd_transpose");
    NULL_OP(nd_t(NULL), "nd_t");
    NULL_OP(nd_permute(NULL, ND_DIMS(0)), "nd_permute");
    NULL_OP(nd_squeeze(NULL), "nd_squeeze");
    NULL_OP(nd_squeeze_dim(NULL, 0), "nd_squeeze_dim");
    NULL_OP(nd_unsqueeze(NULL, 0), "nd_unsqueeze");
    NULL_OP(nd_expand(NULL, ND_SHAPE(2)), "nd_expand");
    NULL_OP(nd_slice(NULL, 0, 0, 1, 1), "nd_slice");
    NULL_OP(nd_select(NULL, 0, 0), "nd_select");
    NULL_OP(nd_narrow(NULL, 0, 0, 1), "nd_narrow");
    NULL_OP(nd_flatten(NULL, 0, -1), "nd_flatten");
    NULL_OP(nd_clone(NULL), "nd_clone");
    NULL_OP(nd_contiguous(NULL), "nd_contiguous");
    NULL_OP(nd_to(NULL, ND_FLOAT64), "nd_to");
    NULL_OP(nd_detach(NULL), "nd_detach");
}

TEST(null_input_creation_and_inspection)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT32, ND_SHAPE(2));
    NULL_OP(nd_from_data(NULL, ND_FLOAT32, ND_SHAPE(2)), "nd_from_data");
    NULL_OP(nd_from_f64(NULL, ND_SHAPE(2, 2)), "nd_from");
    NULL_OP(nd_zeros(ND_FLOAT32, 2, NULL), "nd_zeros");
    NULL_OP(nd_zeros_like(NULL), "nd_zeros_like");
    NULL_OP(nd_ones_like(NULL), "nd_ones_like");
    NULL_OP(nd_empty_like(NULL), "nd_empty_like");
    NULL_OP(nd_full_like(NULL, 1), "nd_full_like");
    NULL_OP(nd_rand_like(NULL), "nd_rand_like");
    NULL_OP(nd_randn_like(NULL), "nd_randn_like");
    nd_clear_error();
    CHECK(isnan(nd_item(NULL)));
    CHECK(nd_last_status() == ND_ERR_NULL);
    CHECK_ERROR_HAS("nd_item");
    double v;
    NULL_STATUS(nd_get(NULL, (const int64_t[]){0}, &v), "nd_get");
    NULL_STATUS(nd_set(NULL, (const int64_t[]){0}, 1), "nd_set");
    NULL_STATUS(nd_copy_out(NULL, &v, sizeof v, ND_FLOAT64), "nd_copy_out");
    NULL_STATUS(nd_copy_out(x, NULL, 8, ND_FLOAT64), "nd_copy_out");
    NULL_STATUS(nd_copy_in(NULL, &v, sizeof v), "nd_copy_in");
    NULL_STATUS(nd_copy_in(x, NULL, 8), "nd_copy_in");
    NULL_OP(nd_to_string(NULL), "nd_to_string");
    NULL_STATUS(nd_fprint(NULL, x), "nd_fprint");
    NULL_STATUS(nd_fprint(stdout, NULL), "nd_fprint");
    nd_scope_end();
}

TEST(null_input_inplace_and_autograd)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT32, ND_SHAPE(2));
    snap sx = take(x);
    NULL_STATUS(nd_add_(NULL, x), "nd_add_");
    NULL_STATUS(nd_add_(x, NULL), "nd_add_");
    NULL_STATUS(nd_sub_(x, NULL), "nd_sub_");
    NULL_STATUS(nd_mul_(NULL, x), "nd_mul_");
    NULL_STATUS(nd_fill_(NULL, 1), "nd_fill_");
    CHECK_UNCHANGED(x, sx);
    NULL_STATUS(nd_backward(NULL), "nd_backward");
    NULL_STATUS(nd_backward_with(NULL, x, false), "nd_backward");
    NULL_STATUS(nd_set_requires_grad(NULL, true), "nd_set_requires_grad");
    NULL_STATUS(nd_zero_grad(NULL), "nd_zero_grad");
    NULL_STATUS(nd_retain_grad(NULL), "nd_retain_grad");
    nd_clear_error();
    CHECK(nd_grad(NULL) == NULL);
    CHECK(!nd_requires_grad(NULL));
    CHECK(nd_grad_fn_name(NULL) == NULL);
    CHECK(nd_ndim(NULL) == -1);
    nd_release(NULL); /* ignored */
    CHECK(nd_last_status() == ND_OK);
    nd_scope_end();
}

/* The first error survives a chain of ops that received NULL. */
TEST(null_propagation_keeps_first_error)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3)), *bad = iota(ND_FLOAT32, ND_SHAPE(4, 5));
    nd_tensor *c = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    snap sa = take(a), sbad = take(bad), sc = take(c);
    nd_clear_error();
    nd_tensor *r = nd_add(nd_mul(a, bad), c);
    CHECK(r == NULL);
    CHECK(nd_last_status() == ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_mul");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_ERROR_HAS("[4, 5]");
    CHECK(strstr(nd_last_error(), "nd_add") == NULL);
    /* A longer chain through every kind of op. */
    nd_clear_error();
    nd_tensor *s = nd_sum(nd_exp(nd_mul_scalar(nd_t(nd_matmul(nd_transpose(a, 0, 5), c)), 2.0)));
    CHECK(s == NULL);
    CHECK(nd_last_status() == ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_transpose");
    double v = nd_item(s);
    CHECK(isnan(v));
    CHECK_ERROR_HAS("nd_transpose");
    CHECK(nd_backward(s) == ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_transpose");
    CHECK_UNCHANGED(a, sa);
    CHECK_UNCHANGED(bad, sbad);
    CHECK_UNCHANGED(c, sc);
    nd_scope_end();
}

/* ------------------------------------------------------------------ autograd errors */

TEST(backward_without_requires_grad)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    nd_tensor *y = nd_sum(nd_mul_scalar(x, 2));
    CHECK(y && !nd_requires_grad(y));
    CHECK_FAILS_WITH(nd_backward(y), ND_ERR_GRAD);
    CHECK_ERROR_HAS("nd_backward");
    CHECK_ERROR_HAS("does not require grad");
    CHECK(nd_grad(x) == NULL);
    CHECK(nd_grad(y) == NULL);
    nd_scope_end();
}

TEST(backward_non_scalar_without_gradient)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(x, true) == ND_OK);
    nd_tensor *y = nd_mul_scalar(x, 2);
    snap sy = take(y);
    CHECK_FAILS_WITH(nd_backward(y), ND_ERR_GRAD);
    CHECK_ERROR_HAS("nd_backward");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_ERROR_HAS("scalar");
    CHECK(nd_grad(x) == NULL);
    CHECK_UNCHANGED(y, sy);
    /* The graph still works afterwards. */
    nd_clear_error();
    CHECK(nd_backward(nd_sum(y)) == ND_OK);
    CHECK_VALUES(nd_grad(x), 0, 2, 2, 2, 2, 2, 2);
    nd_scope_end();
}

TEST(backward_gradient_of_wrong_shape)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(x, true) == ND_OK);
    nd_tensor *y = nd_mul_scalar(x, 2);
    nd_tensor *g = nd_ones(ND_FLOAT32, ND_SHAPE(3, 2));
    snap sg = take(g);
    CHECK_FAILS_WITH(nd_backward_with(y, g, false), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_backward");
    CHECK_ERROR_HAS("[3, 2]");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK(nd_grad(x) == NULL);
    CHECK_UNCHANGED(g, sg);
    /* A gradient with the right number of elements but fewer dims is refused too. */
    nd_tensor *g6 = nd_ones(ND_FLOAT32, ND_SHAPE(6));
    CHECK_FAILS_WITH(nd_backward_with(y, g6, false), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("[6]");
    /* An integer gradient is a dtype error. */
    nd_tensor *gi = nd_ones(ND_INT64, ND_SHAPE(2, 3));
    CHECK_FAILS_WITH(nd_backward_with(y, gi, false), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_backward");
    CHECK_ERROR_HAS("int64");
    CHECK(nd_grad(x) == NULL);
    nd_scope_end();
}

/* ------------------------------------------------------------------ ownership and scopes */

TEST(release_of_scope_owned_tensor)
{
    nd_scope_begin();
    nd_tensor *t = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    snap st = take(t);
    int64_t live = nd_live_tensors(), storages = nd_live_storages();
    nd_clear_error();
    nd_release(t);
    CHECK(nd_last_status() == ND_ERR_STATE);
    CHECK_ERROR_HAS("nd_release");
    CHECK(nd_live_tensors() == live && nd_live_storages() == storages);
    CHECK_UNCHANGED(t, st);
    /* Kept, it can be released once; the scope still frees its own reference. */
    nd_clear_error();
    CHECK(nd_keep(t) == t);
    nd_release(t);
    CHECK(nd_last_status() == ND_OK);
    nd_release(t);
    CHECK(nd_last_status() == ND_ERR_STATE);
    CHECK_UNCHANGED(t, st);
    nd_scope_end();
}

TEST(scope_end_without_scope)
{
    nd_clear_error();
    CHECK(nd_scope_end() == ND_ERR_STATE);
    CHECK(nd_last_status() == ND_ERR_STATE);
    CHECK_ERROR_HAS("nd_scope_end");
    /* Nested scopes: two ends succeed, the third fails. */
    nd_scope_begin();
    nd_scope_begin();
    CHECK(nd_scope_end() == ND_OK);
    CHECK(nd_scope_end() == ND_OK);
    CHECK(nd_scope_end() == ND_ERR_STATE);
}

/* ------------------------------------------------------------------ in-place rules */

TEST(inplace_on_leaf_requiring_grad_refused)
{
    nd_scope_begin();
    nd_tensor *w = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(w, true) == ND_OK);
    nd_tensor *d = nd_ones(ND_FLOAT32, ND_SHAPE(2, 3));
    snap sw = take(w), sd = take(d);
    CHECK(nd_is_grad_enabled());
    CHECK_FAILS_WITH(nd_add_(w, d), ND_ERR_GRAD);
    CHECK_ERROR_HAS("nd_add_");
    CHECK_ERROR_HAS("requires grad");
    CHECK_FAILS_WITH(nd_sub_(w, d), ND_ERR_GRAD);
    CHECK_ERROR_HAS("nd_sub_");
    CHECK_FAILS_WITH(nd_mul_(w, d), ND_ERR_GRAD);
    CHECK_ERROR_HAS("nd_mul_");
    CHECK_FAILS_WITH(nd_fill_(w, 7), ND_ERR_GRAD);
    CHECK_ERROR_HAS("nd_fill_");
    CHECK_FAILS_WITH(nd_set(w, (const int64_t[]){0, 0}, 7), ND_ERR_GRAD);
    CHECK_ERROR_HAS("nd_set");
    const float data[6] = {9, 9, 9, 9, 9, 9};
    CHECK_FAILS_WITH(nd_copy_in(w, data, sizeof data), ND_ERR_GRAD);
    CHECK_ERROR_HAS("nd_copy_in");
    CHECK_UNCHANGED(w, sw);
    CHECK_UNCHANGED(d, sd);
    CHECK(nd_grad(w) == NULL);
    nd_scope_end();
}

TEST(inplace_on_leaf_requiring_grad_allowed_in_no_grad)
{
    nd_scope_begin();
    nd_tensor *w = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(w, true) == ND_OK);
    nd_tensor *d = nd_full(0.5, ND_FLOAT32, ND_SHAPE(3));
    nd_no_grad_begin();
    CHECK(!nd_is_grad_enabled());
    nd_clear_error();
    CHECK(nd_add_(w, d) == ND_OK); /* broadcast [3] into [2,3] */
    CHECK(nd_mul_(w, nd_scalar(2, ND_FLOAT32)) == ND_OK);
    CHECK(nd_sub_(w, nd_ones(ND_FLOAT32, ND_SHAPE(2, 3))) == ND_OK);
    CHECK(nd_set(w, (const int64_t[]){1, 2}, -1) == ND_OK);
    nd_no_grad_end();
    CHECK(nd_is_grad_enabled());
    CHECK(nd_last_status() == ND_OK);
    CHECK_VALUES(w, 0, 0, 2, 4, 6, 8, -1);
    CHECK(nd_requires_grad(w) && nd_is_leaf(w));
    CHECK(nd_grad_fn_name(w) == NULL);
    nd_scope_end();
}

TEST(inplace_other_refusals)
{
    nd_scope_begin();
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    nd_tensor *i = iota(ND_INT64, ND_SHAPE(2, 3));
    snap sa = take(a), si = take(i);
    /* b does not broadcast to a's shape (though the two would broadcast together). */
    CHECK_FAILS_WITH(nd_add_(a, nd_ones(ND_FLOAT32, ND_SHAPE(2, 2, 3))), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_add_");
    CHECK_ERROR_HAS("[2, 2, 3]");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_FAILS_WITH(nd_mul_(a, nd_ones(ND_FLOAT32, ND_SHAPE(2))), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_mul_");
    /* A float result cannot be written into an int64 tensor. */
    CHECK_FAILS_WITH(nd_add_(i, nd_ones(ND_FLOAT32, ND_SHAPE(3))), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_add_");
    CHECK_ERROR_HAS("int64");
    /* An expanded target has several elements in one place. */
    nd_tensor *e = nd_expand(nd_ones(ND_FLOAT32, ND_SHAPE(1, 3)), ND_SHAPE(2, 3));
    CHECK_FAILS_WITH(nd_add_(e, a), ND_ERR_STATE);
    CHECK_ERROR_HAS("nd_add_");
    CHECK_FAILS_WITH(nd_fill_(e, 3), ND_ERR_STATE);
    CHECK_VALUES(e, 0, 1, 1, 1, 1, 1, 1);
    CHECK_UNCHANGED(a, sa);
    CHECK_UNCHANGED(i, si);
    nd_scope_end();
}

/* w is saved by MulBackward0 (for x's gradient); changing it afterwards makes backward refuse. */
TEST(inplace_modification_of_saved_tensor)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(x, true) == ND_OK);
    nd_tensor *w = nd_full(2, ND_FLOAT32, ND_SHAPE(2, 3));
    nd_tensor *y = nd_sum(nd_mul(x, w));
    CHECK(y != NULL);
    nd_clear_error();
    CHECK(nd_fill_(w, 5) == ND_OK); /* w needs no grad: allowed */
    CHECK_FAILS_WITH(nd_backward(y), ND_ERR_GRAD);
    CHECK_ERROR_HAS("modified in place");
    CHECK_ERROR_HAS("MulBackward0");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK(nd_grad(x) == NULL);
    CHECK_VALUES(w, 0, 5, 5, 5, 5, 5, 5);
    nd_scope_end();
}

/* tanh saves its output; changing the output (under no-grad) breaks its backward. */
TEST(inplace_modification_of_saved_output)
{
    nd_scope_begin();
    nd_tensor *x = nd_from_f64((const double[]){0.1, 0.2, 0.3}, ND_SHAPE(3));
    CHECK(nd_set_requires_grad(x, true) == ND_OK);
    nd_tensor *y = nd_tanh(x);
    nd_no_grad_begin();
    nd_clear_error();
    CHECK(nd_mul_(y, nd_scalar(2, ND_FLOAT64)) == ND_OK);
    nd_no_grad_end();
    nd_tensor *loss = nd_sum(y);
    CHECK_FAILS_WITH(nd_backward(loss), ND_ERR_GRAD);
    CHECK_ERROR_HAS("modified in place");
    CHECK_ERROR_HAS("TanhBackward0");
    CHECK_ERROR_HAS("[3]");
    CHECK(nd_grad(x) == NULL);
    nd_scope_end();
}

/* Writing into a view bumps the shared storage's version too. */
TEST(inplace_modification_through_a_view)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT64, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(x, true) == ND_OK);
    nd_tensor *w = iota(ND_FLOAT64, ND_SHAPE(2, 3));
    nd_tensor *y = nd_sum(nd_mul(x, w));
    nd_tensor *row = nd_select(w, 0, 1);
    nd_clear_error();
    CHECK(nd_add_(row, nd_scalar(1, ND_FLOAT64)) == ND_OK);
    CHECK_VALUES(w, 0, 0, 1, 2, 4, 5, 6);
    CHECK_FAILS_WITH(nd_backward(y), ND_ERR_GRAD);
    CHECK_ERROR_HAS("modified in place");
    CHECK(nd_grad(x) == NULL);
    nd_scope_end();
}

/* ------------------------------------------------------------------ invalid arguments */

TEST(invalid_dtype_enum)
{
    nd_scope_begin();
    nd_dtype bad = (nd_dtype)7;
    nd_tensor *x = iota(ND_FLOAT32, ND_SHAPE(2));
    snap sx = take(x);
    CHECK_NULL_WITH(nd_zeros(bad, ND_SHAPE(2, 3)), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_zeros");
    CHECK_ERROR_HAS("7");
    CHECK_NULL_WITH(nd_empty(bad, ND_SHAPE(2)), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_empty");
    CHECK_NULL_WITH(nd_full(1, bad, ND_SHAPE(2)), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_full");
    CHECK_NULL_WITH(nd_from_data((const float[]){1, 2}, bad, ND_SHAPE(2)), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_from_data");
    CHECK_NULL_WITH(nd_arange(0, 3, 1, bad), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_arange");
    CHECK_NULL_WITH(nd_eye(2, 2, bad), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_eye");
    CHECK_NULL_WITH(nd_rand(bad, ND_SHAPE(2)), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_rand");
    CHECK_NULL_WITH(nd_to(x, bad), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_to");
    CHECK_ERROR_HAS("7");
    double buf[2];
    CHECK_FAILS_WITH(nd_copy_out(x, buf, sizeof buf, bad), ND_ERR_DTYPE);
    CHECK_ERROR_HAS("nd_copy_out");
    CHECK_UNCHANGED(x, sx);
    nd_scope_end();
}

TEST(negative_shape)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    snap sx = take(x);
    CHECK_NULL_WITH(nd_zeros(ND_FLOAT32, ND_SHAPE(2, -1)), ND_ERR_VALUE);
    CHECK_ERROR_HAS("nd_zeros");
    CHECK_ERROR_HAS("[2, -1]");
    CHECK_NULL_WITH(nd_ones(ND_FLOAT64, ND_SHAPE(-3)), ND_ERR_VALUE);
    CHECK_ERROR_HAS("nd_ones");
    CHECK_ERROR_HAS("[-3]");
    CHECK_NULL_WITH(nd_randn(ND_FLOAT32, ND_SHAPE(-2, 2)), ND_ERR_VALUE);
    CHECK_ERROR_HAS("nd_randn");
    CHECK_NULL_WITH(nd_reshape(x, ND_SHAPE(-2, 3)), ND_ERR_VALUE);
    CHECK_ERROR_HAS("nd_reshape");
    CHECK_ERROR_HAS("-2");
    CHECK_NULL_WITH(nd_eye(-1, 2, ND_FLOAT32), ND_ERR_VALUE);
    CHECK_ERROR_HAS("nd_eye");
    CHECK_NULL_WITH(nd_expand(x, ND_SHAPE(2, -2)), ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_expand");
    CHECK_UNCHANGED(x, sx);
    nd_scope_end();
}

TEST(more_than_eight_dims)
{
    nd_scope_begin();
    nd_tensor *x = nd_ones(ND_FLOAT32, ND_SHAPE(1, 1, 1, 1, 1, 1, 1, 1));
    CHECK(x != NULL);
    snap sx = take(x);
    CHECK_NULL_WITH(nd_zeros(ND_FLOAT32, ND_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1)), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_zeros");
    CHECK_ERROR_HAS("9");
    CHECK_NULL_WITH(nd_unsqueeze(x, 0), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_unsqueeze");
    CHECK_NULL_WITH(nd_reshape(x, ND_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1)), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_reshape");
    CHECK_NULL_WITH(nd_expand(x, ND_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 2)), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_expand");
    CHECK_ERROR_HAS("9");
    CHECK_NULL_WITH(nd_from_f32((const float[]){1}, 9, (const int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}), ND_ERR_DIM);
    CHECK_ERROR_HAS("nd_from");
    CHECK_UNCHANGED(x, sx);
    nd_scope_end();
}

TEST(item_of_multi_element_tensor)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    snap sx = take(x);
    nd_clear_error();
    CHECK(isnan(nd_item(x)));
    CHECK(nd_last_status() == ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_item");
    CHECK_ERROR_HAS("[2, 3]");
    nd_tensor *empty = nd_zeros(ND_FLOAT32, ND_SHAPE(0));
    nd_clear_error();
    CHECK(isnan(nd_item(empty)));
    CHECK(nd_last_status() == ND_ERR_SHAPE);
    CHECK_ERROR_HAS("[0]");
    /* One element of any rank is fine. */
    nd_clear_error();
    CHECK(nd_item(nd_ones(ND_FLOAT32, ND_SHAPE(1, 1, 1))) == 1.0);
    CHECK(nd_last_status() == ND_OK);
    CHECK_UNCHANGED(x, sx);
    nd_scope_end();
}

/* A failing op must not leave anything behind, even with a graph attached. */
TEST(failed_ops_leave_no_objects)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT64, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(x, true) == ND_OK);
    nd_tensor *h = nd_tanh(x);
    int64_t t0 = nd_live_tensors(), s0 = nd_live_storages(), n0 = nd_live_nodes();
    CHECK(nd_matmul(h, h) == NULL);
    CHECK(nd_add(h, nd_t(nd_t(nd_reshape(h, ND_SHAPE(3, 2))))) == NULL);
    CHECK(nd_sum_dims(h, ND_DIMS(0, 0), false) == NULL);
    CHECK(nd_view(nd_t(h), ND_SHAPE(6)) == NULL);
    /* Only the successful intermediates above (the reshape, the two t views, the t view) remain. */
    CHECK(nd_live_nodes() - n0 <= 4);
    CHECK(nd_live_storages() == s0);
    CHECK(nd_live_tensors() - t0 <= 4);
    nd_scope_end();
}

/* A backward that fails part-way must not leave a partial gradient in a leaf: here the branch
 * sum(x) reaches x before MulBackward0 finds w modified (PyTorch accumulates into x only once
 * every branch has delivered, so x.grad stays unset). */
TEST(failed_backward_leaves_no_partial_gradient)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(x, true) == ND_OK);
    nd_tensor *w = nd_full(2, ND_FLOAT32, ND_SHAPE(2, 3));
    nd_tensor *y = nd_add(nd_sum(nd_mul(x, w)), nd_sum(x));
    CHECK(y != NULL);
    nd_clear_error();
    CHECK(nd_fill_(w, 5) == ND_OK);
    CHECK_FAILS_WITH(nd_backward(y), ND_ERR_GRAD);
    CHECK_ERROR_HAS("modified in place");
    CHECK(nd_grad(x) == NULL);
    nd_scope_end();
}

static int handler_calls;
static nd_status handler_status;
static void count_errors(nd_status status, const char *message, void *user)
{
    (void)message;
    handler_calls++;
    handler_status = status;
    *(int *)user += 1;
}

TEST(error_handler_sees_each_error)
{
    nd_scope_begin();
    int user = 0;
    handler_calls = 0;
    nd_set_error_handler(count_errors, &user);
    nd_tensor *a = iota(ND_FLOAT32, ND_SHAPE(2, 3)), *b = iota(ND_FLOAT32, ND_SHAPE(4));
    CHECK(handler_calls == 0);
    nd_clear_error();
    CHECK(nd_add(nd_mul(a, b), a) == NULL); /* one error: the NULL passed on is not a new one */
    CHECK(handler_calls == 1 && user == 1 && handler_status == ND_ERR_SHAPE);
    CHECK(nd_transpose(a, 0, 9) == NULL);
    CHECK(handler_calls == 2 && handler_status == ND_ERR_DIM);
    nd_set_error_handler(NULL, NULL);
    CHECK(nd_sum_dims(a, ND_DIMS(4), false) == NULL);
    CHECK(handler_calls == 2);
    nd_scope_end();
}

TEST(no_grad_end_without_begin)
{
    nd_clear_error();
    nd_no_grad_end();
    CHECK(nd_last_status() == ND_ERR_STATE);
    CHECK_ERROR_HAS("nd_no_grad_end");
    CHECK(nd_is_grad_enabled());
    /* Nested regions restore the outer mode. */
    nd_no_grad_begin();
    nd_no_grad_begin();
    nd_no_grad_end();
    CHECK(!nd_is_grad_enabled());
    nd_no_grad_end();
    CHECK(nd_is_grad_enabled());
}

TEST(autograd_flag_misuse)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    nd_tensor *c = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(x, true) == ND_OK);
    nd_tensor *y = nd_mul_scalar(x, 2);
    /* A non-leaf cannot stop requiring grad. */
    CHECK_FAILS_WITH(nd_set_requires_grad(y, false), ND_ERR_GRAD);
    CHECK_ERROR_HAS("nd_set_requires_grad");
    CHECK_ERROR_HAS("MulBackward0");
    CHECK(nd_requires_grad(y));
    /* retain_grad on a tensor that does not require grad. */
    CHECK_FAILS_WITH(nd_retain_grad(c), ND_ERR_GRAD);
    CHECK_ERROR_HAS("nd_retain_grad");
    /* autograd_grad with respect to a tensor that does not require grad. */
    nd_tensor *s = nd_sum(y);
    nd_tensor *g[1] = {x};
    CHECK_FAILS_WITH(nd_autograd_grad(1, &s, NULL, 1, &c, g, false), ND_ERR_GRAD);
    CHECK_ERROR_HAS("nd_autograd_grad");
    CHECK(g[0] == NULL);
    CHECK(nd_grad(x) == NULL);
    nd_scope_end();
}

TEST(copy_in_and_out_sizes)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    snap sx = take(x);
    double small[4] = {-1, -1, -1, -1};
    CHECK_FAILS_WITH(nd_copy_out(x, small, sizeof small, ND_FLOAT64), ND_ERR_VALUE);
    CHECK_ERROR_HAS("nd_copy_out");
    CHECK(small[0] == -1 && small[3] == -1);
    const float data[4] = {9, 9, 9, 9};
    CHECK_FAILS_WITH(nd_copy_in(x, data, sizeof data), ND_ERR_VALUE);
    CHECK_ERROR_HAS("nd_copy_in");
    CHECK_UNCHANGED(x, sx);
    CHECK_NULL_WITH(nd_arange(0, 5, -1, ND_FLOAT32), ND_ERR_VALUE);
    CHECK_ERROR_HAS("nd_arange");
    CHECK_NULL_WITH(nd_arange(0, 5, 0, ND_FLOAT32), ND_ERR_VALUE);
    CHECK_ERROR_HAS("nd_arange");
    nd_scope_end();
}

/* Every error of a nd_backward call names nd_backward, including the ones found while the
 * engine runs (a tensor modified in place). */
TEST(backward_errors_name_nd_backward)
{
    nd_scope_begin();
    nd_tensor *x = iota(ND_FLOAT32, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(x, true) == ND_OK);
    nd_tensor *w = nd_full(2, ND_FLOAT32, ND_SHAPE(2, 3));
    nd_tensor *y = nd_sum(nd_mul(x, w));
    nd_clear_error();
    CHECK(nd_fill_(w, 5) == ND_OK);
    CHECK_FAILS_WITH(nd_backward(y), ND_ERR_GRAD);
    CHECK_ERROR_HAS("nd_backward");
    nd_scope_end();
}

void run_suite(void)
{
    RUN(add_shape_mismatch);
    RUN(mul_shape_mismatch);
    RUN(sub_div_pow_compare_shape_mismatch);
    RUN(where_shape_mismatch);
    RUN(matmul_shape_mismatch_2d);
    RUN(matmul_shape_mismatch_other_ranks);
    RUN(mm_shape_mismatch);
    RUN(bmm_shape_mismatch);
    RUN(view_shape_mismatch);
    RUN(view_incompatible_strides);
    RUN(expand_shape_mismatch);
    RUN(int64_into_mm);
    RUN(requires_grad_on_int64);
    RUN(bool_subtraction);
    RUN(where_with_float_condition);
    RUN(mean_of_int64);
    RUN(transpose_dim_out_of_range);
    RUN(sum_dims_dim_out_of_range);
    RUN(sum_dims_repeated_dim);
    RUN(select_dim_out_of_range);
    RUN(unsqueeze_dim_out_of_range);
    RUN(squeeze_dim_out_of_range);
    RUN(slice_dim_out_of_range);
    RUN(narrow_dim_out_of_range);
    RUN(flatten_dim_out_of_range);
    RUN(permute_bad_dims);
    RUN(select_index_out_of_range);
    RUN(narrow_index_out_of_range);
    RUN(get_index_out_of_range);
    RUN(set_index_out_of_range);
    RUN(null_input_elementwise);
    RUN(null_input_scalar_ops);
    RUN(null_input_reductions_and_linalg);
    RUN(null_input_views_and_copies);
    RUN(null_input_creation_and_inspection);
    RUN(null_input_inplace_and_autograd);
    RUN(null_propagation_keeps_first_error);
    RUN(backward_without_requires_grad);
    RUN(backward_non_scalar_without_gradient);
    RUN(backward_gradient_of_wrong_shape);
    RUN(release_of_scope_owned_tensor);
    RUN(scope_end_without_scope);
    RUN(inplace_on_leaf_requiring_grad_refused);
    RUN(inplace_on_leaf_requiring_grad_allowed_in_no_grad);
    RUN(inplace_other_refusals);
    RUN(inplace_modification_of_saved_tensor);
    RUN(inplace_modification_of_saved_output);
    RUN(inplace_modification_through_a_view);
    RUN(invalid_dtype_enum);
    RUN(negative_shape);
    RUN(more_than_eight_dims);
    RUN(item_of_multi_element_tensor);
    RUN(failed_ops_leave_no_objects);
    RUN(failed_backward_leaves_no_partial_gradient);
    RUN(error_handler_sees_each_error);
    RUN(no_grad_end_without_begin);
    RUN(autograd_flag_misuse);
    RUN(copy_in_and_out_sizes);
    RUN(backward_errors_name_nd_backward);
}

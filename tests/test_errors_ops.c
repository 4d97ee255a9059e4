/* Error paths of the ops added after the core set, one test per error PyTorch raises (and the
 * documented refusals of ndgrad's narrower ops): the op returns NULL / -1 / a status, records
 * a status and a message naming the op and the offending shape or value, creates no object
 * (checked around each call, and by the harness for the whole test), and leaves every input —
 * values, shape, dtype, requires_grad, gradient — exactly as it was. */
#include "harness.h"

#include <stdlib.h>

/* ------------------------------------------------------------------ helpers */

/* 0, 1, 2, ... of dtype in the given shape (owned by the current scope). */
static nd_tensor *seq(nd_dtype dtype, int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return nd_reshape(nd_arange(0, (double)n, 1, dtype), ndim, shape);
}

static nd_tensor *ints(const int64_t *values, int ndim, const int64_t *shape) { return nd_from_i64(values, ndim, shape); }
static nd_tensor *f64(const double *values, int ndim, const int64_t *shape) { return nd_from_f64(values, ndim, shape); }

/* What an input looked like before the failing call. */
typedef struct before {
    int64_t n;
    double v[64];
    int ndim;
    int64_t shape[ND_MAX_DIMS];
    nd_dtype dtype;
    bool requires_grad, has_grad;
    int64_t offset;
} before;

static before look(const nd_tensor *t)
{
    before b;
    memset(&b, 0, sizeof b);
    if (!t) {
        b.n = -2;
        return b;
    }
    b.n = nd_numel(t);
    b.ndim = nd_ndim(t);
    for (int i = 0; i < b.ndim; i++)
        b.shape[i] = nd_shape(t)[i];
    b.dtype = nd_dtype_of(t);
    b.requires_grad = nd_requires_grad(t);
    b.has_grad = nd_grad(t) != NULL;
    b.offset = nd_offset(t);
    if (b.n > 64 || nd_copy_out(t, b.v, sizeof b.v, ND_FLOAT64) != ND_OK)
        b.n = -1;
    return b;
}

static bool unchanged(const nd_tensor *t, const before *b)
{
    before now = look(t);
    bool same = t && b->n >= 0 && now.n == b->n && now.ndim == b->ndim && now.dtype == b->dtype &&
                now.requires_grad == b->requires_grad && now.has_grad == b->has_grad && now.offset == b->offset &&
                memcmp(now.shape, b->shape, sizeof now.shape) == 0;
    for (int64_t i = 0; same && i < b->n; i++)
        same = (isnan(now.v[i]) && isnan(b->v[i])) || now.v[i] == b->v[i];
    return same;
}

#define CHECK_UNCHANGED(t, b) CHECK(unchanged((t), &(b)))

/* The message mentions `v` as a number of its own (not inside a longer number or after a '-'). */
static bool mentions_number(const char *msg, long long v)
{
    char num[32];
    snprintf(num, sizeof num, "%lld", v);
    size_t len = strlen(num);
    for (const char *p = strstr(msg, num); p; p = strstr(p + 1, num)) {
        char before_c = p > msg ? p[-1] : ' ', after_c = p[len];
        bool digit_before = (before_c >= '0' && before_c <= '9') || before_c == '.' || (v >= 0 && before_c == '-');
        bool digit_after = (after_c >= '0' && after_c <= '9') || (after_c == '.' && p[len + 1] >= '0' && p[len + 1] <= '9');
        if (!digit_before && !digit_after)
            return true;
    }
    return false;
}

#define CHECK_ERROR_NUM(v)                                                                           \
    do {                                                                                             \
        if (!mentions_number(nd_last_error(), (v))) {                                                \
            nd_test_failures++;                                                                      \
            fprintf(stderr, "  %s:%d: error \"%s\" does not mention the value %lld\n", __FILE__, __LINE__, \
                    nd_last_error(), (long long)(v));                                                \
        }                                                                                            \
    } while (0)

/* The message contains at least one of two substrings. */
#define CHECK_ERROR_HAS_EITHER(a, b)                                                                 \
    do {                                                                                             \
        if (!strstr(nd_last_error(), (a)) && !strstr(nd_last_error(), (b))) {                        \
            nd_test_failures++;                                                                      \
            fprintf(stderr, "  %s:%d: error \"%s\" mentions neither \"%s\" nor \"%s\"\n", __FILE__, __LINE__, \
                    nd_last_error(), (a), (b));                                                      \
        }                                                                                            \
    } while (0)

/* expr returns NULL with `status`, makes no tensor or node, and the message names `op`. */
#define FAILS(expr, status, op)                                                                      \
    do {                                                                                             \
        nd_clear_error();                                                                            \
        int64_t t0_ = nd_live_tensors(), s0_ = nd_live_storages(), n0_ = nd_live_nodes();            \
        nd_tensor *r_ = (expr);                                                                      \
        CHECK(r_ == NULL);                                                                           \
        CHECK(nd_last_status() == (status));                                                         \
        CHECK(nd_live_tensors() == t0_ && nd_live_storages() == s0_ && nd_live_nodes() == n0_);      \
        CHECK_ERROR_HAS(op);                                                                         \
    } while (0)

/* The same for calls that return a count (-1 on error). */
#define FAILS_COUNT(expr, status, op)                                                                \
    do {                                                                                             \
        nd_clear_error();                                                                            \
        int64_t t0_ = nd_live_tensors(), s0_ = nd_live_storages(), n0_ = nd_live_nodes();            \
        int r_ = (expr);                                                                             \
        CHECK(r_ == -1);                                                                             \
        CHECK(nd_last_status() == (status));                                                         \
        CHECK(nd_live_tensors() == t0_ && nd_live_storages() == s0_ && nd_live_nodes() == n0_);      \
        CHECK_ERROR_HAS(op);                                                                         \
    } while (0)

/* The same for calls that return a status. */
#define FAILS_STATUS(expr, status, op)                                                               \
    do {                                                                                             \
        nd_clear_error();                                                                            \
        int64_t t0_ = nd_live_tensors(), s0_ = nd_live_storages(), n0_ = nd_live_nodes();            \
        nd_status r_ = (expr);                                                                       \
        CHECK(r_ == (status));                                                                       \
        CHECK(nd_last_status() == (status));                                                         \
        CHECK(nd_live_tensors() == t0_ && nd_live_storages() == s0_ && nd_live_nodes() == n0_);      \
        CHECK_ERROR_HAS(op);                                                                         \
    } while (0)

/* ------------------------------------------------------------------ dims out of range */

TEST(gather_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3)), *i = ints((const int64_t[]){0, 1, 1, 0}, ND_SHAPE(2, 2));
    before ba = look(a), bi = look(i);
    FAILS(nd_gather(a, 2, i), ND_ERR_DIM, "nd_gather");
    CHECK_ERROR_NUM(2);
    FAILS(nd_gather(a, -3, i), ND_ERR_DIM, "nd_gather");
    CHECK_ERROR_NUM(-3);
    CHECK_UNCHANGED(a, ba);
    CHECK_UNCHANGED(i, bi);
    nd_scope_end();
}

TEST(scatter_add_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT64, ND_SHAPE(2, 3)), *i = ints((const int64_t[]){0, 1}, ND_SHAPE(1, 2));
    nd_tensor *src = seq(ND_FLOAT64, ND_SHAPE(1, 2));
    before ba = look(a), bs = look(src);
    FAILS(nd_scatter_add(a, 2, i, src), ND_ERR_DIM, "nd_scatter_add");
    CHECK_ERROR_NUM(2);
    FAILS(nd_scatter_add(a, -3, i, src), ND_ERR_DIM, "nd_scatter_add");
    CHECK_ERROR_NUM(-3);
    CHECK_UNCHANGED(a, ba);
    CHECK_UNCHANGED(src, bs);
    nd_scope_end();
}

TEST(index_select_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3)), *i = ints((const int64_t[]){0}, ND_SHAPE(1));
    before ba = look(a);
    FAILS(nd_index_select(a, 2, i), ND_ERR_DIM, "nd_index_select");
    CHECK_ERROR_NUM(2);
    FAILS(nd_index_select(a, -3, i), ND_ERR_DIM, "nd_index_select");
    CHECK_ERROR_NUM(-3);
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(index_add_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3)), *i = ints((const int64_t[]){0}, ND_SHAPE(1));
    nd_tensor *src = seq(ND_FLOAT32, ND_SHAPE(1, 3));
    before ba = look(a);
    FAILS(nd_index_add(a, 5, i, src), ND_ERR_DIM, "nd_index_add");
    CHECK_ERROR_NUM(5);
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(cat_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3)), *b = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a), bb = look(b);
    FAILS(nd_cat(2, (nd_tensor *[]){a, b}, 2), ND_ERR_DIM, "nd_cat");
    CHECK_ERROR_NUM(2);
    FAILS(nd_cat(2, (nd_tensor *[]){a, b}, -3), ND_ERR_DIM, "nd_cat");
    CHECK_ERROR_NUM(-3);
    CHECK_UNCHANGED(a, ba);
    CHECK_UNCHANGED(b, bb);
    nd_scope_end();
}

TEST(stack_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3)), *b = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    /* stack accepts dims in [-3, 2] for 2-d inputs */
    FAILS(nd_stack(2, (nd_tensor *[]){a, b}, 3), ND_ERR_DIM, "nd_stack");
    CHECK_ERROR_NUM(3);
    FAILS(nd_stack(2, (nd_tensor *[]){a, b}, -4), ND_ERR_DIM, "nd_stack");
    CHECK_ERROR_NUM(-4);
    nd_clear_error();
    CHECK(nd_stack(2, (nd_tensor *[]){a, b}, 2) != NULL);
    CHECK(nd_stack(2, (nd_tensor *[]){a, b}, -3) != NULL);
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(split_and_chunk_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    nd_tensor *out[4] = {NULL, NULL, NULL, NULL};
    FAILS_COUNT(nd_split(a, 1, 2, 4, out), ND_ERR_DIM, "nd_split");
    CHECK_ERROR_NUM(2);
    FAILS_COUNT(nd_chunk(a, 2, -3, 4, out), ND_ERR_DIM, "nd_chunk");
    CHECK_ERROR_NUM(-3);
    CHECK(!out[0] && !out[1] && !out[2] && !out[3]);
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(cumsum_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT64, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(a, true) == ND_OK);
    before ba = look(a);
    FAILS(nd_cumsum(a, 2), ND_ERR_DIM, "nd_cumsum");
    CHECK_ERROR_NUM(2);
    FAILS(nd_cumsum(a, -3), ND_ERR_DIM, "nd_cumsum");
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(max_min_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    nd_tensor *indices = a; /* must be reset, never left pointing at something */
    FAILS(nd_max_dim(a, 2, false, &indices), ND_ERR_DIM, "nd_max_dim");
    CHECK_ERROR_NUM(2);
    CHECK(indices == NULL);
    FAILS(nd_min_dim(a, -3, true, NULL), ND_ERR_DIM, "nd_min_dim");
    CHECK_ERROR_NUM(-3);
    FAILS(nd_argmax_dim(a, 2, false), ND_ERR_DIM, "nd_argmax_dim");
    FAILS(nd_argmin_dim(a, -3, false), ND_ERR_DIM, "nd_argmin_dim");
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(prod_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    FAILS(nd_prod_dim(a, -3, false), ND_ERR_DIM, "nd_prod_dim");
    CHECK_ERROR_NUM(-3);
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(reduction_dims_lists_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT64, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(a, true) == ND_OK);
    before ba = look(a);
    FAILS(nd_logsumexp(a, ND_DIMS(3), false), ND_ERR_DIM, "nd_logsumexp");
    CHECK_ERROR_NUM(3);
    FAILS(nd_logsumexp(a, ND_DIMS(0, 0), false), ND_ERR_DIM, "nd_logsumexp"); /* repeated */
    FAILS(nd_var(a, ND_DIMS(2), 1.0, false), ND_ERR_DIM, "nd_var");
    CHECK_ERROR_NUM(2);
    FAILS(nd_std(a, ND_DIMS(0, -3), 1.0, true), ND_ERR_DIM, "nd_std");
    CHECK_ERROR_NUM(-3);
    FAILS(nd_norm(a, 2.0, ND_DIMS(5), false), ND_ERR_DIM, "nd_norm");
    CHECK_ERROR_NUM(5);
    FAILS(nd_norm(a, 1.0, ND_DIMS(1, -1), false), ND_ERR_DIM, "nd_norm"); /* repeated */
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(flip_bad_dims)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    FAILS(nd_flip(a, ND_DIMS(2)), ND_ERR_DIM, "nd_flip");
    CHECK_ERROR_NUM(2);
    FAILS(nd_flip(a, ND_DIMS(0, -2)), ND_ERR_DIM, "nd_flip"); /* dim 0 twice */
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(softmax_dim_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    FAILS(nd_softmax(a, 2), ND_ERR_DIM, "nd_softmax");
    CHECK_ERROR_NUM(2);
    FAILS(nd_log_softmax(a, -3), ND_ERR_DIM, "nd_log_softmax");
    CHECK_ERROR_NUM(-3);
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

/* PyTorch: "Dimension out of range (expected to be in range of [-1, 0], but got -2)". */
TEST(tril_triu_need_two_dims)
{
    nd_scope_begin();
    nd_tensor *v = seq(ND_FLOAT32, ND_SHAPE(3)), *s = nd_scalar(1.0, ND_FLOAT32);
    before bv = look(v), bs = look(s);
    FAILS(nd_tril(v, 0), ND_ERR_DIM, "nd_tril");
    CHECK_ERROR_HAS_EITHER("[3]", "got 1");
    FAILS(nd_triu(v, 1), ND_ERR_DIM, "nd_triu");
    FAILS(nd_triu(s, 0), ND_ERR_DIM, "nd_triu");
    CHECK_ERROR_HAS_EITHER("[]", "got 0");
    CHECK_UNCHANGED(v, bv);
    CHECK_UNCHANGED(s, bs);
    nd_scope_end();
}

/* ------------------------------------------------------------------ mismatched shapes */

TEST(cat_sizes_differ)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3)), *b = seq(ND_FLOAT32, ND_SHAPE(3, 3));
    CHECK(nd_set_requires_grad(a, true) == ND_OK);
    before ba = look(a), bb = look(b);
    /* along dim 1 the sizes of dim 0 (2 and 3) must match */
    FAILS(nd_cat(2, (nd_tensor *[]){a, b}, 1), ND_ERR_SHAPE, "nd_cat");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_ERROR_HAS("[3, 3]");
    nd_clear_error();
    CHECK(nd_cat(2, (nd_tensor *[]){a, b}, 0) != NULL); /* along dim 0 they fit */
    CHECK_UNCHANGED(a, ba);
    CHECK_UNCHANGED(b, bb);
    nd_scope_end();
}

TEST(cat_ranks_differ)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3)), *b = seq(ND_FLOAT32, ND_SHAPE(2, 3, 1));
    before ba = look(a), bb = look(b);
    FAILS(nd_cat(2, (nd_tensor *[]){a, b}, 0), ND_ERR_SHAPE, "nd_cat");
    CHECK_ERROR_HAS("[2, 3, 1]");
    CHECK_UNCHANGED(a, ba);
    CHECK_UNCHANGED(b, bb);
    nd_scope_end();
}

/* PyTorch: "zero-dimensional tensor (at position 0) cannot be concatenated"; an empty list is
 * refused too. */
TEST(cat_of_scalars_or_nothing)
{
    nd_scope_begin();
    nd_tensor *a = nd_scalar(1, ND_FLOAT32), *b = nd_scalar(2, ND_FLOAT32);
    before ba = look(a);
    nd_clear_error();
    CHECK(nd_cat(2, (nd_tensor *[]){a, b}, 0) == NULL);
    CHECK(nd_last_status() == ND_ERR_DIM || nd_last_status() == ND_ERR_SHAPE);
    CHECK_ERROR_HAS("nd_cat");
    CHECK_ERROR_HAS_EITHER("zero-dim", "0-d");
    FAILS(nd_cat(0, (nd_tensor *[]){a}, 0), ND_ERR_VALUE, "nd_cat");
    FAILS(nd_stack(0, (nd_tensor *[]){a}, 0), ND_ERR_VALUE, "nd_stack");
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(stack_shapes_differ)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3)), *b = seq(ND_FLOAT32, ND_SHAPE(3, 2));
    before ba = look(a), bb = look(b);
    FAILS(nd_stack(2, (nd_tensor *[]){a, b}, 0), ND_ERR_SHAPE, "nd_stack");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_ERROR_HAS("[3, 2]");
    CHECK_UNCHANGED(a, ba);
    CHECK_UNCHANGED(b, bb);
    nd_scope_end();
}

/* PyTorch: "Size does not match at dimension 0 expected index [3, 3] to be smaller than self
 * [2, 3] apart from dimension 1". */
TEST(gather_index_larger_than_input)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT64, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(a, true) == ND_OK);
    nd_tensor *i = nd_zeros(ND_INT64, ND_SHAPE(3, 3));
    before ba = look(a), bi = look(i);
    FAILS(nd_gather(a, 1, i), ND_ERR_SHAPE, "nd_gather");
    CHECK_ERROR_HAS("[3, 3]");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_UNCHANGED(a, ba);
    CHECK_UNCHANGED(i, bi);
    nd_scope_end();
}

/* PyTorch: "Index tensor must have the same number of dimensions as input tensor". */
TEST(gather_index_rank_differs)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3)), *i = ints((const int64_t[]){0, 1}, ND_SHAPE(2));
    before ba = look(a);
    FAILS(nd_gather(a, 1, i), ND_ERR_SHAPE, "nd_gather");
    CHECK_ERROR_HAS("[2]");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(scatter_add_src_smaller_than_index)
{
    nd_scope_begin();
    nd_tensor *a = nd_zeros(ND_FLOAT32, ND_SHAPE(3, 3)), *i = nd_zeros(ND_INT64, ND_SHAPE(2, 3));
    nd_tensor *src = seq(ND_FLOAT32, ND_SHAPE(1, 3));
    before ba = look(a), bs = look(src);
    FAILS(nd_scatter_add(a, 0, i, src), ND_ERR_SHAPE, "nd_scatter_add");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_ERROR_HAS("[1, 3]");
    CHECK_UNCHANGED(a, ba);
    CHECK_UNCHANGED(src, bs);
    nd_scope_end();
}

/* PyTorch: index_add_ needs source.size(dim) == len(index) and the other sizes of self. */
TEST(index_add_src_shape)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT64, ND_SHAPE(2, 3)), *i = ints((const int64_t[]){0, 1}, ND_SHAPE(2));
    CHECK(nd_set_requires_grad(a, true) == ND_OK);
    nd_tensor *narrow = nd_ones(ND_FLOAT64, ND_SHAPE(2, 2)), *tall = nd_ones(ND_FLOAT64, ND_SHAPE(3, 3));
    nd_tensor *flat = nd_ones(ND_FLOAT64, ND_SHAPE(6));
    before ba = look(a), bn = look(narrow), bt = look(tall);
    FAILS(nd_index_add(a, 0, i, narrow), ND_ERR_SHAPE, "nd_index_add");
    CHECK_ERROR_HAS("[2, 2]");
    CHECK_ERROR_HAS("[2, 3]");
    FAILS(nd_index_add(a, 0, i, tall), ND_ERR_SHAPE, "nd_index_add"); /* 3 rows for 2 indices */
    CHECK_ERROR_HAS("[3, 3]");
    FAILS(nd_index_add(a, 0, i, flat), ND_ERR_SHAPE, "nd_index_add");
    CHECK_ERROR_HAS("[6]");
    CHECK_UNCHANGED(a, ba);
    CHECK_UNCHANGED(narrow, bn);
    CHECK_UNCHANGED(tall, bt);
    nd_scope_end();
}

/* PyTorch: "index_select(): Index is supposed to be a vector". */
TEST(index_select_matrix_index)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3)), *i = ints((const int64_t[]){0, 1}, ND_SHAPE(1, 2));
    before ba = look(a);
    FAILS(nd_index_select(a, 1, i), ND_ERR_SHAPE, "nd_index_select");
    CHECK_ERROR_HAS("[1, 2]");
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(maximum_minimum_shape_mismatch)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3)), *b = seq(ND_FLOAT32, ND_SHAPE(2));
    before ba = look(a), bb = look(b);
    FAILS(nd_maximum(a, b), ND_ERR_SHAPE, "nd_maximum");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_ERROR_HAS("[2]");
    FAILS(nd_minimum(b, a), ND_ERR_SHAPE, "nd_minimum");
    CHECK_UNCHANGED(a, ba);
    CHECK_UNCHANGED(b, bb);
    nd_scope_end();
}

TEST(masked_fill_bad_mask)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    nd_tensor *wide = nd_zeros(ND_BOOL, ND_SHAPE(3, 3)), *grow = nd_zeros(ND_BOOL, ND_SHAPE(2, 2, 3));
    nd_tensor *fmask = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    FAILS(nd_masked_fill(a, wide, 1.0), ND_ERR_SHAPE, "nd_masked_fill");
    CHECK_ERROR_HAS("[3, 3]");
    CHECK_ERROR_HAS("[2, 3]");
    /* the mask may broadcast to the input, never the input to the mask */
    FAILS(nd_masked_fill(a, grow, 1.0), ND_ERR_SHAPE, "nd_masked_fill");
    CHECK_ERROR_HAS("[2, 2, 3]");
    FAILS(nd_masked_fill(a, fmask, 1.0), ND_ERR_DTYPE, "nd_masked_fill");
    CHECK_ERROR_HAS("float32");
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

/* ------------------------------------------------------------------ index dtypes */

TEST(gather_float_index)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3)), *i = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 2));
    before ba = look(a), bi = look(i);
    FAILS(nd_gather(a, 1, i), ND_ERR_DTYPE, "nd_gather");
    CHECK_ERROR_HAS("float32");
    CHECK_UNCHANGED(a, ba);
    CHECK_UNCHANGED(i, bi);
    nd_scope_end();
}

TEST(index_select_float_index)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3)), *i = nd_zeros(ND_FLOAT64, ND_SHAPE(2));
    before ba = look(a);
    FAILS(nd_index_select(a, 1, i), ND_ERR_DTYPE, "nd_index_select");
    CHECK_ERROR_HAS("float64");
    nd_tensor *b = nd_zeros(ND_BOOL, ND_SHAPE(2));
    FAILS(nd_index_select(a, 0, b), ND_ERR_DTYPE, "nd_index_select");
    CHECK_ERROR_HAS("bool");
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(embedding_float_index)
{
    nd_scope_begin();
    nd_tensor *w = seq(ND_FLOAT32, ND_SHAPE(5, 3)), *i = nd_ones(ND_FLOAT32, ND_SHAPE(2));
    CHECK(nd_set_requires_grad(w, true) == ND_OK);
    before bw = look(w);
    FAILS(nd_embedding(w, i), ND_ERR_DTYPE, "nd_embedding");
    CHECK_ERROR_HAS("float32");
    CHECK_UNCHANGED(w, bw);
    nd_scope_end();
}

TEST(one_hot_float_index)
{
    nd_scope_begin();
    nd_tensor *i = nd_ones(ND_FLOAT32, ND_SHAPE(3));
    before bi = look(i);
    FAILS(nd_one_hot(i, 4), ND_ERR_DTYPE, "nd_one_hot");
    CHECK_ERROR_HAS("float32");
    CHECK_UNCHANGED(i, bi);
    nd_scope_end();
}

TEST(scatter_and_index_add_float_index)
{
    nd_scope_begin();
    nd_tensor *a = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 3)), *i2 = nd_zeros(ND_FLOAT32, ND_SHAPE(1, 3));
    nd_tensor *i1 = nd_zeros(ND_FLOAT32, ND_SHAPE(1)), *src = nd_ones(ND_FLOAT32, ND_SHAPE(1, 3));
    before ba = look(a);
    FAILS(nd_scatter_add(a, 0, i2, src), ND_ERR_DTYPE, "nd_scatter_add");
    CHECK_ERROR_HAS("float32");
    FAILS(nd_index_add(a, 0, i1, src), ND_ERR_DTYPE, "nd_index_add");
    CHECK_ERROR_HAS("float32");
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

/* ------------------------------------------------------------------ index values out of range */

/* PyTorch: "index 3 is out of bounds for dimension 1 with size 3". */
TEST(gather_index_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT64, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(a, true) == ND_OK);
    nd_tensor *big = ints((const int64_t[]){0, 3, 1, 1}, ND_SHAPE(2, 2));
    nd_tensor *neg = ints((const int64_t[]){0, -1, 1, 1}, ND_SHAPE(2, 2));
    before ba = look(a), bb = look(big);
    FAILS(nd_gather(a, 1, big), ND_ERR_INDEX, "nd_gather");
    CHECK_ERROR_HAS("index 3");
    CHECK_ERROR_NUM(3);
    FAILS(nd_gather(a, 1, neg), ND_ERR_INDEX, "nd_gather");
    CHECK_ERROR_HAS("index -1");
    CHECK_UNCHANGED(a, ba);
    CHECK_UNCHANGED(big, bb);
    nd_scope_end();
}

TEST(scatter_add_index_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 3));
    nd_tensor *i = ints((const int64_t[]){0, 2, 1}, ND_SHAPE(1, 3)), *src = nd_ones(ND_FLOAT32, ND_SHAPE(1, 3));
    nd_tensor *neg = ints((const int64_t[]){0, -3, 1}, ND_SHAPE(1, 3));
    before ba = look(a), bs = look(src);
    FAILS(nd_scatter_add(a, 0, i, src), ND_ERR_INDEX, "nd_scatter_add");
    CHECK_ERROR_HAS("index 2");
    FAILS(nd_scatter_add(a, 0, neg, src), ND_ERR_INDEX, "nd_scatter_add");
    CHECK_ERROR_HAS("index -3");
    CHECK_UNCHANGED(a, ba); /* nothing was added before the bad index was found */
    CHECK_UNCHANGED(src, bs);
    nd_scope_end();
}

TEST(index_select_index_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    nd_tensor *big = ints((const int64_t[]){0, 3}, ND_SHAPE(2)), *neg = ints((const int64_t[]){-1}, ND_SHAPE(1));
    before ba = look(a);
    FAILS(nd_index_select(a, 1, big), ND_ERR_INDEX, "nd_index_select");
    CHECK_ERROR_NUM(3);
    FAILS(nd_index_select(a, 1, neg), ND_ERR_INDEX, "nd_index_select");
    CHECK_ERROR_NUM(-1);
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(index_add_index_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 3)), *i = ints((const int64_t[]){0, 2}, ND_SHAPE(2));
    nd_tensor *src = nd_ones(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    FAILS(nd_index_add(a, 0, i, src), ND_ERR_INDEX, "nd_index_add");
    CHECK_ERROR_NUM(2);
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

/* PyTorch: IndexError "index out of range in self". */
TEST(embedding_index_out_of_range)
{
    nd_scope_begin();
    nd_tensor *w = seq(ND_FLOAT64, ND_SHAPE(5, 3));
    CHECK(nd_set_requires_grad(w, true) == ND_OK);
    nd_tensor *big = ints((const int64_t[]){1, 5, 0, 2}, ND_SHAPE(2, 2)), *neg = ints((const int64_t[]){1, -1}, ND_SHAPE(2));
    before bw = look(w), bb = look(big);
    FAILS(nd_embedding(w, big), ND_ERR_INDEX, "nd_embedding");
    CHECK_ERROR_NUM(5);
    FAILS(nd_embedding(w, neg), ND_ERR_INDEX, "nd_embedding");
    CHECK_ERROR_NUM(-1);
    CHECK_UNCHANGED(w, bw);
    CHECK_UNCHANGED(big, bb);
    nd_scope_end();
}

/* PyTorch: "Class values must be smaller than num_classes." / "... must be non-negative." */
TEST(one_hot_value_out_of_range)
{
    nd_scope_begin();
    nd_tensor *big = ints((const int64_t[]){1, 3, 0}, ND_SHAPE(3)), *neg = ints((const int64_t[]){1, -2}, ND_SHAPE(2));
    before bb = look(big);
    FAILS(nd_one_hot(big, 3), ND_ERR_INDEX, "nd_one_hot");
    CHECK_ERROR_NUM(3);
    FAILS(nd_one_hot(neg, 3), ND_ERR_INDEX, "nd_one_hot");
    CHECK_ERROR_NUM(-2);
    FAILS(nd_one_hot(neg, -1), ND_ERR_INDEX, "nd_one_hot"); /* inferred classes: still no negatives */
    CHECK_ERROR_NUM(-2);
    CHECK_UNCHANGED(big, bb);
    nd_scope_end();
}

/* PyTorch: "too many indices for tensor of dimension 2", "index 2 is out of bounds for
 * dimension 0 with size 2". */
TEST(basic_index_errors)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    FAILS(nd_index(a, 3, (const nd_index_spec[]){ND_I(0), ND_I(0), ND_I(0)}), ND_ERR_INDEX, "nd_index");
    CHECK_ERROR_NUM(2);
    nd_clear_error();
    nd_tensor *r = nd_index(a, 2, (const nd_index_spec[]){ND_I(2), ND_ALL});
    CHECK(r == NULL);
    CHECK(nd_last_status() == ND_ERR_INDEX);
    CHECK_ERROR_NUM(2);
    nd_clear_error();
    CHECK(nd_index(a, 2, (const nd_index_spec[]){ND_ALL, ND_SLICE(0, 3, 0)}) == NULL); /* step 0 */
    CHECK(nd_last_status() == ND_ERR_VALUE);
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

/* ------------------------------------------------------------------ pad */

/* PyTorch: "Padding length must be divisible by 2". */
TEST(pad_odd_length)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    FAILS(nd_pad(a, 1, (const int64_t[]){1}, 0.0), ND_ERR_VALUE, "nd_pad");
    CHECK_ERROR_NUM(1);
    FAILS(nd_pad(a, 3, (const int64_t[]){1, 1, 1}, 0.0), ND_ERR_VALUE, "nd_pad");
    CHECK_ERROR_NUM(3);
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

/* PyTorch: "Padding length too large". */
TEST(pad_too_many)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    FAILS(nd_pad(a, 6, (const int64_t[]){1, 1, 1, 1, 1, 1}, 0.0), ND_ERR_VALUE, "nd_pad");
    CHECK_ERROR_NUM(6);
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

/* Cropping more than a dim holds. */
TEST(pad_crops_below_zero)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    FAILS(nd_pad(a, 2, (const int64_t[]){-2, -2}, 0.0), ND_ERR_SHAPE, "nd_pad");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

/* ------------------------------------------------------------------ split / chunk */

/* PyTorch: "split_size can only be 0 if dimension size is 0, but got dimension size of 3". */
TEST(split_size_zero)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    nd_tensor *out[4] = {NULL, NULL, NULL, NULL};
    FAILS_COUNT(nd_split(a, 0, 1, 4, out), ND_ERR_VALUE, "nd_split");
    CHECK_ERROR_NUM(0);
    FAILS_COUNT(nd_split(a, -1, 1, 4, out), ND_ERR_VALUE, "nd_split");
    CHECK_ERROR_NUM(-1);
    CHECK(!out[0] && !out[1] && !out[2] && !out[3]);
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

/* PyTorch: "chunk expects `chunks` to be greater than 0, got: 0". */
TEST(chunk_zero)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    nd_tensor *out[4] = {NULL, NULL, NULL, NULL};
    FAILS_COUNT(nd_chunk(a, 0, 1, 4, out), ND_ERR_VALUE, "nd_chunk");
    CHECK_ERROR_NUM(0);
    FAILS_COUNT(nd_chunk(a, -2, 0, 4, out), ND_ERR_VALUE, "nd_chunk");
    CHECK_ERROR_NUM(-2);
    CHECK(!out[0] && !out[1] && !out[2] && !out[3]);
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

/* The caller's array must hold every piece; nothing is written when it cannot. */
TEST(split_output_array_too_small)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT64, ND_SHAPE(6, 2));
    CHECK(nd_set_requires_grad(a, true) == ND_OK);
    before ba = look(a);
    nd_tensor *out[8] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    FAILS_COUNT(nd_split(a, 1, 0, 4, out), ND_ERR_VALUE, "nd_split"); /* 6 pieces */
    CHECK_ERROR_NUM(6);
    CHECK_ERROR_NUM(4);
    FAILS_COUNT(nd_chunk(a, 3, 0, 2, out), ND_ERR_VALUE, "nd_chunk"); /* 3 pieces */
    CHECK_ERROR_NUM(3);
    FAILS_COUNT(nd_split(a, 2, 0, 3, NULL), ND_ERR_VALUE, "nd_split");
    for (int i = 0; i < 8; i++)
        CHECK(out[i] == NULL);
    nd_clear_error();
    CHECK(nd_split(a, 2, 0, 3, out) == 3); /* exactly enough room */
    CHECK(out[3] == NULL);
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

/* ------------------------------------------------------------------ reductions of nothing */

/* PyTorch: "max(): Expected reduction dim to be specified for input.numel() == 0". */
TEST(max_of_empty_tensor)
{
    nd_scope_begin();
    nd_tensor *e = nd_zeros(ND_FLOAT32, ND_SHAPE(0)), *e2 = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 0));
    before be = look(e), be2 = look(e2);
    FAILS(nd_max(e), ND_ERR_SHAPE, "nd_max");
    CHECK_ERROR_HAS_EITHER("empty", "[0]");
    FAILS(nd_min(e2), ND_ERR_SHAPE, "nd_min");
    FAILS(nd_argmax(e), ND_ERR_SHAPE, "nd_argmax");
    FAILS(nd_argmin(e2), ND_ERR_SHAPE, "nd_argmin");
    /* along a dim of size 0 (PyTorch: "Expected reduction dim 1 to have non-zero size") */
    nd_tensor *indices = e;
    FAILS(nd_max_dim(e2, 1, false, &indices), ND_ERR_SHAPE, "nd_max_dim");
    CHECK_ERROR_HAS("[2, 0]");
    CHECK(indices == NULL);
    FAILS(nd_min_dim(e2, -1, true, NULL), ND_ERR_SHAPE, "nd_min_dim");
    FAILS(nd_argmax_dim(e2, 1, false), ND_ERR_SHAPE, "nd_argmax_dim");
    CHECK_UNCHANGED(e, be);
    CHECK_UNCHANGED(e2, be2);
    /* over the non-empty dim the result is simply empty */
    nd_clear_error();
    nd_tensor *ok = nd_max_dim(e2, 0, false, NULL);
    CHECK(ok && nd_numel(ok) == 0);
    nd_scope_end();
}

/* ------------------------------------------------------------------ invalid argument values */

/* ndgrad's norm takes p = 1 or 2 only (PyTorch would compute a 3-norm). */
TEST(norm_with_p3)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT64, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(a, true) == ND_OK);
    before ba = look(a);
    FAILS(nd_norm(a, 3.0, 0, NULL, false), ND_ERR_VALUE, "nd_norm");
    CHECK_ERROR_NUM(3);
    FAILS(nd_norm(a, 0.5, ND_DIMS(1), true), ND_ERR_VALUE, "nd_norm");
    CHECK_ERROR_HAS("0.5");
    FAILS(nd_norm(a, NAN, 0, NULL, false), ND_ERR_VALUE, "nd_norm");
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

/* ln(1 + e^(0·a)) / 0 is not a function; refused rather than filled with inf. */
TEST(softplus_beta_zero)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    FAILS(nd_softplus(a, 0.0, 20.0), ND_ERR_VALUE, "nd_softplus");
    CHECK_ERROR_HAS("beta");
    CHECK_ERROR_NUM(0);
    FAILS(nd_softplus(a, -0.0, 20.0), ND_ERR_VALUE, "nd_softplus");
    FAILS(nd_softplus(a, 1.0, NAN), ND_ERR_VALUE, "nd_softplus");
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(hardtanh_min_above_max)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    FAILS(nd_hardtanh(a, 1.0, 0.5), ND_ERR_VALUE, "nd_hardtanh");
    CHECK_ERROR_NUM(1);
    CHECK_ERROR_HAS("0.5");
    FAILS(nd_hardtanh(a, NAN, 1.0), ND_ERR_VALUE, "nd_hardtanh");
    nd_clear_error();
    CHECK(nd_hardtanh(a, 0.5, 0.5) != NULL); /* equal bounds are allowed */
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(clamp_nan_bound)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT64, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(a, true) == ND_OK);
    before ba = look(a);
    FAILS(nd_clamp(a, NAN, 1.0), ND_ERR_VALUE, "nd_clamp");
    CHECK_ERROR_HAS_EITHER("nan", "NaN");
    FAILS(nd_clamp(a, 0.0, NAN), ND_ERR_VALUE, "nd_clamp");
    CHECK_ERROR_HAS_EITHER("nan", "NaN");
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

/* PyTorch: "Number of dimensions of repeat dims can not be smaller than number of dimensions of
 * tensor"; negative repeats are refused too. */
TEST(repeat_bad_reps)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    FAILS(nd_repeat(a, 1, (const int64_t[]){2}), ND_ERR_VALUE, "nd_repeat");
    CHECK_ERROR_NUM(1);
    FAILS(nd_repeat(a, 2, (const int64_t[]){2, -1}), ND_ERR_VALUE, "nd_repeat");
    CHECK_ERROR_NUM(-1);
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

/* ------------------------------------------------------------------ neural-network functions */

TEST(softmax_of_integers)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_INT64, ND_SHAPE(2, 3));
    before ba = look(a);
    FAILS(nd_softmax(a, 1), ND_ERR_DTYPE, "nd_softmax");
    CHECK_ERROR_HAS("int64");
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(linear_shape_mismatch)
{
    nd_scope_begin();
    nd_tensor *x = seq(ND_FLOAT32, ND_SHAPE(4, 3)), *w = seq(ND_FLOAT32, ND_SHAPE(2, 5)), *b = seq(ND_FLOAT32, ND_SHAPE(3));
    nd_tensor *w_ok = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before bx = look(x), bw = look(w);
    FAILS(nd_linear(x, w, NULL), ND_ERR_SHAPE, "nd_linear");
    CHECK_ERROR_HAS("[4, 3]");
    CHECK_ERROR_HAS("[2, 5]");
    FAILS(nd_linear(x, w_ok, b), ND_ERR_SHAPE, "nd_linear"); /* bias of 3 for 2 outputs */
    CHECK_ERROR_HAS("[3]");
    CHECK_UNCHANGED(x, bx);
    CHECK_UNCHANGED(w, bw);
    nd_scope_end();
}

/* PyTorch: "Target 3 is out of bounds." */
TEST(cross_entropy_target_out_of_range)
{
    nd_scope_begin();
    nd_tensor *x = seq(ND_FLOAT64, ND_SHAPE(2, 3));
    CHECK(nd_set_requires_grad(x, true) == ND_OK);
    nd_tensor *big = ints((const int64_t[]){0, 3}, ND_SHAPE(2)), *neg = ints((const int64_t[]){-1, 0}, ND_SHAPE(2));
    before bx = look(x);
    FAILS(nd_cross_entropy(x, big, NULL, -100, ND_REDUCTION_MEAN, 0.0), ND_ERR_INDEX, "nd_cross_entropy");
    CHECK_ERROR_NUM(3);
    FAILS(nd_nll_loss(x, neg, NULL, -100, ND_REDUCTION_MEAN), ND_ERR_INDEX, "nd_nll_loss");
    CHECK_ERROR_NUM(-1);
    nd_clear_error();
    CHECK(nd_nll_loss(x, neg, NULL, -1, ND_REDUCTION_SUM) != NULL); /* -1 ignored: fine */
    CHECK_UNCHANGED(x, bx);
    nd_scope_end();
}

TEST(cross_entropy_bad_target)
{
    nd_scope_begin();
    nd_tensor *x = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    nd_tensor *ftarget = nd_zeros(ND_FLOAT32, ND_SHAPE(2)), *wrong = nd_zeros(ND_INT64, ND_SHAPE(3));
    nd_tensor *w4 = nd_ones(ND_FLOAT32, ND_SHAPE(4)), *t = nd_zeros(ND_INT64, ND_SHAPE(2));
    before bx = look(x);
    FAILS(nd_cross_entropy(x, ftarget, NULL, -100, ND_REDUCTION_MEAN, 0.0), ND_ERR_DTYPE, "nd_cross_entropy");
    CHECK_ERROR_HAS("float32");
    FAILS(nd_cross_entropy(x, wrong, NULL, -100, ND_REDUCTION_MEAN, 0.0), ND_ERR_SHAPE, "nd_cross_entropy");
    CHECK_ERROR_HAS("[3]");
    CHECK_ERROR_HAS("[2, 3]");
    FAILS(nd_nll_loss(x, t, w4, -100, ND_REDUCTION_MEAN), ND_ERR_SHAPE, "nd_nll_loss");
    CHECK_ERROR_HAS("[4]");
    FAILS(nd_cross_entropy(x, t, NULL, -100, ND_REDUCTION_MEAN, 1.5), ND_ERR_VALUE, "nd_cross_entropy");
    CHECK_ERROR_HAS("1.5");
    FAILS(nd_cross_entropy(x, t, NULL, -100, (nd_reduction)7, 0.0), ND_ERR_VALUE, "nd_cross_entropy");
    CHECK_ERROR_NUM(7);
    CHECK_UNCHANGED(x, bx);
    nd_scope_end();
}

TEST(regression_losses_shape_mismatch)
{
    nd_scope_begin();
    nd_tensor *x = seq(ND_FLOAT32, ND_SHAPE(2, 3)), *y = seq(ND_FLOAT32, ND_SHAPE(4));
    before bx = look(x), by = look(y);
    FAILS(nd_mse_loss(x, y, ND_REDUCTION_MEAN), ND_ERR_SHAPE, "nd_mse_loss");
    CHECK_ERROR_HAS("[2, 3]");
    CHECK_ERROR_HAS("[4]");
    FAILS(nd_l1_loss(x, y, ND_REDUCTION_SUM), ND_ERR_SHAPE, "nd_l1_loss");
    FAILS(nd_smooth_l1_loss(x, y, ND_REDUCTION_NONE, 1.0), ND_ERR_SHAPE, "nd_smooth_l1_loss");
    FAILS(nd_smooth_l1_loss(x, x, ND_REDUCTION_MEAN, -1.0), ND_ERR_VALUE, "nd_smooth_l1_loss");
    CHECK_ERROR_NUM(-1);
    CHECK_UNCHANGED(x, bx);
    CHECK_UNCHANGED(y, by);
    nd_scope_end();
}

/* PyTorch: "all elements of input should be between 0 and 1"; "Using a target size ... that
 * is different to the input size". */
TEST(binary_cross_entropy_bad_inputs)
{
    nd_scope_begin();
    nd_tensor *p = f64((const double[]){0.2, 1.5, 0.5}, ND_SHAPE(3)), *y = f64((const double[]){0, 1, 1}, ND_SHAPE(3));
    nd_tensor *y2 = nd_zeros(ND_FLOAT64, ND_SHAPE(1, 3)), *ok = f64((const double[]){0.2, 0.7, 0.5}, ND_SHAPE(3));
    before bp = look(p), by = look(y);
    FAILS(nd_binary_cross_entropy(p, y, NULL, ND_REDUCTION_MEAN), ND_ERR_VALUE, "nd_binary_cross_entropy");
    CHECK_ERROR_HAS("1.5");
    FAILS(nd_binary_cross_entropy(ok, y2, NULL, ND_REDUCTION_MEAN), ND_ERR_SHAPE, "nd_binary_cross_entropy");
    CHECK_ERROR_HAS("[1, 3]");
    FAILS(nd_binary_cross_entropy_with_logits(ok, y2, NULL, NULL, ND_REDUCTION_MEAN), ND_ERR_SHAPE,
          "nd_binary_cross_entropy_with_logits");
    CHECK_ERROR_HAS("[1, 3]");
    CHECK_UNCHANGED(p, bp);
    CHECK_UNCHANGED(y, by);
    nd_scope_end();
}

/* PyTorch: "dropout probability has to be between 0 and 1, but got 1.5". */
TEST(dropout_probability_out_of_range)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3));
    before ba = look(a);
    FAILS(nd_dropout(a, 1.5, true), ND_ERR_VALUE, "nd_dropout");
    CHECK_ERROR_HAS("1.5");
    FAILS(nd_dropout(a, -0.25, false), ND_ERR_VALUE, "nd_dropout");
    CHECK_ERROR_HAS("-0.25");
    CHECK_UNCHANGED(a, ba);
    nd_scope_end();
}

TEST(normalization_shape_errors)
{
    nd_scope_begin();
    nd_tensor *x = seq(ND_FLOAT32, ND_SHAPE(2, 3, 4)), *w3 = nd_ones(ND_FLOAT32, ND_SHAPE(3));
    before bx = look(x);
    FAILS(nd_layer_norm(x, 1, (const int64_t[]){3}, NULL, NULL, 1e-5), ND_ERR_SHAPE, "nd_layer_norm");
    CHECK_ERROR_HAS("[3]");
    CHECK_ERROR_HAS("[2, 3, 4]");
    FAILS(nd_layer_norm(x, 1, (const int64_t[]){4}, w3, NULL, 1e-5), ND_ERR_SHAPE, "nd_layer_norm"); /* weight [3] */
    FAILS(nd_rms_norm(x, 2, (const int64_t[]){4, 4}, NULL, 1e-5), ND_ERR_SHAPE, "nd_rms_norm");
    CHECK_ERROR_HAS("[4, 4]");
    /* PyTorch: "Expected number of channels in input to be divisible by num_groups" */
    FAILS(nd_group_norm(x, 2, NULL, NULL, 1e-5), ND_ERR_SHAPE, "nd_group_norm");
    CHECK_ERROR_NUM(2);
    CHECK_ERROR_HAS("[2, 3, 4]");
    nd_tensor *w4 = nd_ones(ND_FLOAT32, ND_SHAPE(4));
    FAILS(nd_batch_norm(x, NULL, NULL, w4, NULL, true, 0.1, 1e-5), ND_ERR_SHAPE, "nd_batch_norm"); /* C is 3 */
    CHECK_ERROR_HAS("[4]");
    /* PyTorch: "Expected more than 1 value per channel when training" */
    nd_tensor *single = seq(ND_FLOAT32, ND_SHAPE(1, 3));
    FAILS(nd_batch_norm(single, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), ND_ERR_VALUE, "nd_batch_norm");
    CHECK_ERROR_HAS("[1, 3]");
    FAILS(nd_batch_norm(x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5), ND_ERR_VALUE, "nd_batch_norm"); /* eval, no stats */
    CHECK_UNCHANGED(x, bx);
    nd_scope_end();
}

TEST(batch_norm_failure_keeps_running_stats)
{
    nd_scope_begin();
    nd_tensor *x = seq(ND_FLOAT32, ND_SHAPE(4, 3));
    nd_tensor *rm = nd_zeros(ND_FLOAT32, ND_SHAPE(3)), *rv = nd_ones(ND_FLOAT32, ND_SHAPE(3));
    nd_tensor *bad_w = nd_ones(ND_FLOAT32, ND_SHAPE(2));
    before brm = look(rm), brv = look(rv);
    FAILS(nd_batch_norm(x, rm, rv, bad_w, NULL, true, 0.1, 1e-5), ND_ERR_SHAPE, "nd_batch_norm");
    CHECK_ERROR_HAS("[2]");
    FAILS(nd_batch_norm(x, rm, NULL, NULL, NULL, true, 0.1, 1e-5), ND_ERR_VALUE, "nd_batch_norm");
    CHECK_UNCHANGED(rm, brm);
    CHECK_UNCHANGED(rv, brv);
    nd_scope_end();
}

TEST(convolution_shape_errors)
{
    nd_scope_begin();
    nd_tensor *x = seq(ND_FLOAT32, ND_SHAPE(1, 2, 4, 4)), *w = nd_ones(ND_FLOAT32, ND_SHAPE(3, 3, 2, 2));
    nd_tensor *big = nd_ones(ND_FLOAT32, ND_SHAPE(1, 2, 5, 5)), *x3 = seq(ND_FLOAT32, ND_SHAPE(2, 4, 4));
    const int64_t one[2] = {1, 1}, zero[2] = {0, 0};
    before bx = look(x);
    /* PyTorch: "expected input[1, 2, 4, 4] to have 3 channels, but got 2 channels instead" */
    FAILS(nd_conv2d(x, w, NULL, one, zero, one, 1), ND_ERR_SHAPE, "nd_conv2d");
    CHECK_ERROR_HAS("[1, 2, 4, 4]");
    CHECK_ERROR_HAS("[3, 3, 2, 2]");
    /* PyTorch: "Kernel size can't be greater than actual input size" */
    FAILS(nd_conv2d(x, big, NULL, one, zero, one, 1), ND_ERR_SHAPE, "nd_conv2d");
    CHECK_ERROR_NUM(5);
    FAILS(nd_conv2d(x3, w, NULL, one, zero, one, 1), ND_ERR_SHAPE, "nd_conv2d");
    CHECK_ERROR_HAS("[2, 4, 4]");
    nd_tensor *w1 = nd_ones(ND_FLOAT32, ND_SHAPE(2, 2, 3)), *x1 = seq(ND_FLOAT32, ND_SHAPE(1, 3, 5));
    FAILS(nd_conv1d(x1, w1, NULL, 1, 0, 1, 1), ND_ERR_SHAPE, "nd_conv1d");
    CHECK_ERROR_HAS("[1, 3, 5]");
    const int64_t bad_stride[2] = {0, 1};
    nd_tensor *w_ok = nd_ones(ND_FLOAT32, ND_SHAPE(3, 2, 2, 2));
    FAILS(nd_conv2d(x, w_ok, NULL, bad_stride, zero, one, 1), ND_ERR_VALUE, "nd_conv2d");
    CHECK_UNCHANGED(x, bx);
    nd_scope_end();
}

/* PyTorch: "pad should be at most half of effective kernel size". */
TEST(pooling_argument_errors)
{
    nd_scope_begin();
    nd_tensor *x = seq(ND_FLOAT32, ND_SHAPE(1, 1, 4, 4));
    const int64_t k2[2] = {2, 2}, pad2[2] = {2, 0}, zero[2] = {0, 0}, k5[2] = {5, 5};
    before bx = look(x);
    nd_tensor *indices = x;
    FAILS(nd_max_pool2d(x, k2, NULL, pad2, &indices), ND_ERR_VALUE, "nd_max_pool2d");
    CHECK_ERROR_NUM(2);
    CHECK(indices == NULL);
    FAILS(nd_avg_pool2d(x, k2, NULL, pad2), ND_ERR_VALUE, "nd_avg_pool2d");
    FAILS(nd_max_pool2d(x, k5, NULL, zero, NULL), ND_ERR_SHAPE, "nd_max_pool2d"); /* window larger than input */
    CHECK_ERROR_NUM(5);
    FAILS(nd_adaptive_avg_pool2d(x, 0, 2), ND_ERR_VALUE, "nd_adaptive_avg_pool2d");
    CHECK_ERROR_NUM(0);
    nd_tensor *x3 = seq(ND_FLOAT32, ND_SHAPE(1, 4, 4));
    FAILS(nd_adaptive_avg_pool2d(x3, 2, 2), ND_ERR_SHAPE, "nd_adaptive_avg_pool2d");
    CHECK_ERROR_HAS("[1, 4, 4]");
    CHECK_UNCHANGED(x, bx);
    nd_scope_end();
}

TEST(attention_argument_errors)
{
    nd_scope_begin();
    nd_tensor *q = seq(ND_FLOAT32, ND_SHAPE(2, 3, 4)), *k = seq(ND_FLOAT32, ND_SHAPE(2, 5, 3));
    nd_tensor *k_ok = seq(ND_FLOAT32, ND_SHAPE(2, 5, 4)), *v = seq(ND_FLOAT32, ND_SHAPE(2, 5, 2));
    nd_tensor *mask = nd_ones(ND_BOOL, ND_SHAPE(3, 5));
    before bq = look(q);
    FAILS(nd_scaled_dot_product_attention(q, k, v, NULL, 0.0, false, 0.0), ND_ERR_SHAPE,
          "nd_scaled_dot_product_attention");
    CHECK_ERROR_HAS("[2, 5, 3]");
    FAILS(nd_scaled_dot_product_attention(q, k_ok, v, mask, 0.0, true, 0.0), ND_ERR_VALUE,
          "nd_scaled_dot_product_attention");
    FAILS(nd_scaled_dot_product_attention(q, k_ok, v, NULL, 1.5, false, 0.0), ND_ERR_VALUE,
          "nd_scaled_dot_product_attention");
    CHECK_ERROR_HAS("1.5");
    CHECK_UNCHANGED(q, bq);
    nd_scope_end();
}

TEST(clip_grad_norm_bad_max_norm)
{
    nd_scope_begin();
    nd_tensor *p = f64((const double[]){1, 2}, ND_SHAPE(2));
    CHECK(nd_set_requires_grad(p, true) == ND_OK);
    CHECK(nd_backward(nd_sum(nd_mul(p, p))) == ND_OK);
    before bg = look(nd_grad(p));
    double total = -7;
    FAILS_STATUS(nd_clip_grad_norm(1, (nd_tensor *const[]){p}, 0.0, &total), ND_ERR_VALUE, "nd_clip_grad_norm");
    CHECK_ERROR_NUM(0);
    FAILS_STATUS(nd_clip_grad_norm(1, (nd_tensor *const[]){p}, -1.0, &total), ND_ERR_VALUE, "nd_clip_grad_norm");
    CHECK(total == -7);
    CHECK_UNCHANGED(nd_grad(p), bg);
    FAILS_STATUS(nd_global_norm(1, (nd_tensor *const[]){p}, NULL), ND_ERR_NULL, "nd_global_norm");
    nd_scope_end();
}

/* ------------------------------------------------------------------ NULL inputs */

TEST(null_inputs_name_the_op)
{
    nd_scope_begin();
    nd_tensor *a = seq(ND_FLOAT32, ND_SHAPE(2, 3)), *i = ints((const int64_t[]){0}, ND_SHAPE(1, 1));
    FAILS(nd_gelu(NULL, false), ND_ERR_NULL, "nd_gelu");
    FAILS(nd_softplus(NULL, 1, 20), ND_ERR_NULL, "nd_softplus");
    FAILS(nd_clamp(NULL, 0, 1), ND_ERR_NULL, "nd_clamp");
    FAILS(nd_maximum(a, NULL), ND_ERR_NULL, "nd_maximum");
    FAILS(nd_masked_fill(a, NULL, 0), ND_ERR_NULL, "nd_masked_fill");
    FAILS(nd_max(NULL), ND_ERR_NULL, "nd_max");
    FAILS(nd_max_dim(NULL, 0, false, NULL), ND_ERR_NULL, "nd_max_dim");
    FAILS(nd_prod(NULL), ND_ERR_NULL, "nd_prod");
    FAILS(nd_var(NULL, 0, NULL, 1, false), ND_ERR_NULL, "nd_var");
    FAILS(nd_logsumexp(NULL, 0, NULL, false), ND_ERR_NULL, "nd_logsumexp");
    FAILS(nd_norm(NULL, 2, 0, NULL, false), ND_ERR_NULL, "nd_norm");
    FAILS(nd_cumsum(NULL, 0), ND_ERR_NULL, "nd_cumsum");
    FAILS(nd_cat(2, (nd_tensor *[]){a, NULL}, 0), ND_ERR_NULL, "nd_cat");
    FAILS(nd_stack(2, (nd_tensor *[]){NULL, a}, 0), ND_ERR_NULL, "nd_stack");
    FAILS(nd_flip(NULL, ND_DIMS(0)), ND_ERR_NULL, "nd_flip");
    FAILS(nd_repeat(NULL, ND_SHAPE(2)), ND_ERR_NULL, "nd_repeat");
    FAILS(nd_pad(NULL, 2, (const int64_t[]){1, 1}, 0), ND_ERR_NULL, "nd_pad");
    FAILS(nd_tril(NULL, 0), ND_ERR_NULL, "nd_tril");
    FAILS(nd_gather(a, 0, NULL), ND_ERR_NULL, "nd_gather");
    FAILS(nd_scatter_add(a, 0, i, NULL), ND_ERR_NULL, "nd_scatter_add");
    FAILS(nd_index_select(NULL, 0, i), ND_ERR_NULL, "nd_index_select");
    FAILS(nd_embedding(NULL, i), ND_ERR_NULL, "nd_embedding");
    FAILS(nd_one_hot(NULL, 3), ND_ERR_NULL, "nd_one_hot");
    FAILS(nd_index(NULL, 1, (const nd_index_spec[]){ND_I(0)}), ND_ERR_NULL, "nd_index");
    FAILS(nd_softmax(NULL, 0), ND_ERR_NULL, "nd_softmax");
    FAILS(nd_cross_entropy(NULL, i, NULL, -100, ND_REDUCTION_MEAN, 0), ND_ERR_NULL, "nd_cross_entropy");
    FAILS(nd_layer_norm(NULL, ND_SHAPE(3), NULL, NULL, 1e-5), ND_ERR_NULL, "nd_layer_norm");
    nd_tensor *out[2] = {NULL, NULL};
    FAILS_COUNT(nd_split(NULL, 1, 0, 2, out), ND_ERR_NULL, "nd_split");
    FAILS_COUNT(nd_chunk(NULL, 1, 0, 2, out), ND_ERR_NULL, "nd_chunk");
    nd_scope_end();
}

void run_suite(void)
{
    RUN(gather_dim_out_of_range);
    RUN(scatter_add_dim_out_of_range);
    RUN(index_select_dim_out_of_range);
    RUN(index_add_dim_out_of_range);
    RUN(cat_dim_out_of_range);
    RUN(stack_dim_out_of_range);
    RUN(split_and_chunk_dim_out_of_range);
    RUN(cumsum_dim_out_of_range);
    RUN(max_min_dim_out_of_range);
    RUN(prod_dim_out_of_range);
    RUN(reduction_dims_lists_out_of_range);
    RUN(flip_bad_dims);
    RUN(softmax_dim_out_of_range);
    RUN(tril_triu_need_two_dims);
    RUN(cat_sizes_differ);
    RUN(cat_ranks_differ);
    RUN(cat_of_scalars_or_nothing);
    RUN(stack_shapes_differ);
    RUN(gather_index_larger_than_input);
    RUN(gather_index_rank_differs);
    RUN(scatter_add_src_smaller_than_index);
    RUN(index_add_src_shape);
    RUN(index_select_matrix_index);
    RUN(maximum_minimum_shape_mismatch);
    RUN(masked_fill_bad_mask);
    RUN(gather_float_index);
    RUN(index_select_float_index);
    RUN(embedding_float_index);
    RUN(one_hot_float_index);
    RUN(scatter_and_index_add_float_index);
    RUN(gather_index_out_of_range);
    RUN(scatter_add_index_out_of_range);
    RUN(index_select_index_out_of_range);
    RUN(index_add_index_out_of_range);
    RUN(embedding_index_out_of_range);
    RUN(one_hot_value_out_of_range);
    RUN(basic_index_errors);
    RUN(pad_odd_length);
    RUN(pad_too_many);
    RUN(pad_crops_below_zero);
    RUN(split_size_zero);
    RUN(chunk_zero);
    RUN(split_output_array_too_small);
    RUN(max_of_empty_tensor);
    RUN(norm_with_p3);
    RUN(softplus_beta_zero);
    RUN(hardtanh_min_above_max);
    RUN(clamp_nan_bound);
    RUN(repeat_bad_reps);
    RUN(softmax_of_integers);
    RUN(linear_shape_mismatch);
    RUN(cross_entropy_target_out_of_range);
    RUN(cross_entropy_bad_target);
    RUN(regression_losses_shape_mismatch);
    RUN(binary_cross_entropy_bad_inputs);
    RUN(dropout_probability_out_of_range);
    RUN(normalization_shape_errors);
    RUN(batch_norm_failure_keeps_running_stats);
    RUN(convolution_shape_errors);
    RUN(pooling_argument_errors);
    RUN(attention_argument_errors);
    RUN(clip_grad_norm_bad_max_norm);
    RUN(null_inputs_name_the_op);
}

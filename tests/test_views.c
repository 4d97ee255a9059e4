/* View tests: view/reshape, transpose, t, permute, squeeze, unsqueeze, expand, slice, select,
 * narrow, flatten. Shapes, strides and storage offsets are the ones PyTorch 1.13 gives (taken from
 * .shape, .stride() and .storage_offset()); views share storage with their input, writes through a
 * view reach the base, views of views compose, and every op accepts non-contiguous input. */
#include "harness.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

static bool shape_is(const nd_tensor *t, int ndim, const int64_t *shape)
{
    if (!t || nd_ndim(t) != ndim)
        return false;
    for (int i = 0; i < ndim; i++)
        if (nd_shape(t)[i] != shape[i])
            return false;
    return true;
}

static bool strides_are(const nd_tensor *t, int ndim, const int64_t *strides)
{
    if (!t || nd_ndim(t) != ndim)
        return false;
    for (int i = 0; i < ndim; i++)
        if (nd_strides(t)[i] != strides[i])
            return false;
    return true;
}

static double get_at(const nd_tensor *t, const int64_t *idx)
{
    double v = NAN;
    if (nd_get(t, idx, &v) != ND_OK)
        return NAN;
    return v;
}
#define AT(t, ...) get_at((t), (const int64_t[]){__VA_ARGS__})
#define SET(t, v, ...) nd_set((t), (const int64_t[]){__VA_ARGS__}, (v))

/* Same shape and the same values (row-major), within tol. */
static bool same_values(const nd_tensor *a, const nd_tensor *b, double tol)
{
    if (!a || !b || !shape_is(b, nd_ndim(a), nd_shape(a)))
        return false;
    int64_t n = nd_numel(a);
    double *x = malloc((size_t)n * sizeof *x + 8), *y = malloc((size_t)n * sizeof *y + 8);
    bool ok = x && y && nd_copy_out(a, x, (size_t)n * sizeof *x, ND_FLOAT64) == ND_OK &&
              nd_copy_out(b, y, (size_t)n * sizeof *y, ND_FLOAT64) == ND_OK;
    for (int64_t i = 0; ok && i < n; i++)
        ok = fabs(x[i] - y[i]) <= tol * (1 + fabs(y[i]));
    free(x);
    free(y);
    return ok;
}

/* torch.arange(24.).view(2, 3, 4): element [i][j][k] = 12i + 4j + k. */
static nd_tensor *cube(void) { return nd_view(nd_arange(0, 24, 1, ND_FLOAT32), ND_SHAPE(2, 3, 4)); }

/* ------------------------------------------------------------------ view / reshape */

TEST(view_shapes_and_strides)
{
    nd_scope_begin();
    nd_tensor *a = nd_arange(0, 24, 1, ND_FLOAT32);
    nd_tensor *v = nd_view(a, ND_SHAPE(2, 3, 4));
    CHECK(shape_is(v, ND_SHAPE(2, 3, 4)));
    CHECK(strides_are(v, ND_SHAPE(12, 4, 1)));
    CHECK(nd_shares_storage(v, a));
    CHECK(nd_data_ptr(v) == nd_data_ptr(a));
    CHECK(AT(v, 1, 2, 3) == 23);
    CHECK(AT(v, 1, 0, 2) == 14);
    /* -1 inference */
    nd_tensor *w = nd_view(a, ND_SHAPE(-1, 6));
    CHECK(shape_is(w, ND_SHAPE(4, 6)));
    CHECK(strides_are(w, ND_SHAPE(6, 1)));
    CHECK(shape_is(nd_view(a, ND_SHAPE(2, -1, 4)), ND_SHAPE(2, 3, 4)));
    CHECK(shape_is(nd_view(v, ND_SHAPE(-1)), ND_SHAPE(24)));
    /* size-1 dims: torch .stride() of view(2,1,12), view(1,24), view(24,1) */
    nd_tensor *s1 = nd_view(a, ND_SHAPE(2, 1, 12));
    CHECK(strides_are(s1, ND_SHAPE(12, 12, 1)));
    CHECK(strides_are(nd_view(a, ND_SHAPE(1, 24)), ND_SHAPE(24, 1)));
    CHECK(strides_are(nd_view(a, ND_SHAPE(24, 1)), ND_SHAPE(1, 1)));
    /* 0-dim <-> one element */
    nd_tensor *sc = nd_scalar(5, ND_FLOAT32);
    nd_tensor *sv = nd_view(sc, ND_SHAPE(1, 1));
    CHECK(shape_is(sv, ND_SHAPE(1, 1)));
    nd_tensor *back = nd_view(sv, ND_SCALAR_SHAPE);
    CHECK(back && nd_ndim(back) == 0 && nd_item(back) == 5);
    CHECK(nd_shares_storage(back, sc));
    /* Write through the view reaches the base. */
    CHECK_STATUS(SET(v, -1, 1, 2, 3), ND_OK);
    CHECK(AT(a, 23) == -1);
    CHECK(AT(w, 3, 5) == -1);
    nd_scope_end();
}

TEST(view_errors)
{
    nd_scope_begin();
    nd_tensor *a = nd_arange(0, 24, 1, ND_FLOAT32);
    CHECK(nd_view(a, ND_SHAPE(5, -1)) == NULL);
    CHECK(nd_last_status() == ND_ERR_SHAPE);
    nd_clear_error();
    CHECK(nd_view(a, ND_SHAPE(7)) == NULL);
    CHECK(nd_last_status() == ND_ERR_SHAPE);
    nd_clear_error();
    CHECK(nd_view(a, ND_SHAPE(-1, -1)) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_clear_error();
    CHECK(nd_reshape(a, ND_SHAPE(5, 5)) == NULL);
    CHECK(nd_last_status() == ND_ERR_SHAPE);
    nd_clear_error();
    CHECK(nd_view(a, ND_SHAPE(-2, 12)) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_scope_end();
}

TEST(view_of_transposed_fails_reshape_copies)
{
    nd_scope_begin();
    nd_tensor *m = nd_view(nd_arange(0, 6, 1, ND_FLOAT32), ND_SHAPE(2, 3));
    nd_tensor *t = nd_t(m);
    CHECK(shape_is(t, ND_SHAPE(3, 2)));
    CHECK(strides_are(t, ND_SHAPE(1, 3)));
    CHECK(nd_view(t, ND_SHAPE(6)) == NULL);
    CHECK(nd_last_status() == ND_ERR_STATE);
    nd_clear_error();
    CHECK(nd_view(t, ND_SHAPE(2, 3)) == NULL);
    CHECK(nd_last_status() == ND_ERR_STATE);
    nd_clear_error();
    nd_tensor *r = nd_reshape(t, ND_SHAPE(6));
    CHECK(shape_is(r, ND_SHAPE(6)));
    CHECK(!nd_shares_storage(r, m));
    CHECK(nd_is_contiguous(r));
    CHECK_VALUES(r, 0, 0, 3, 1, 4, 2, 5);
    /* The copy is independent. */
    CHECK_STATUS(SET(r, 100, 0), ND_OK);
    CHECK(AT(m, 0, 0) == 0);
    /* Viewable views of a transposed tensor: torch t.view(3,2,1) and t.view(3,1,2). */
    nd_tensor *v1 = nd_view(t, ND_SHAPE(3, 2, 1));
    CHECK(v1 && nd_shares_storage(v1, m));
    CHECK(strides_are(v1, ND_SHAPE(1, 3, 3)));
    nd_tensor *v2 = nd_view(t, ND_SHAPE(3, 1, 2));
    CHECK(v2 && nd_shares_storage(v2, m));
    CHECK(strides_are(v2, ND_SHAPE(1, 6, 3)));
    CHECK_VALUES(v2, 0, 0, 3, 1, 4, 2, 5);
    nd_scope_end();
}

TEST(view_of_non_contiguous_viewable)
{
    nd_scope_begin();
    nd_tensor *a = nd_arange(0, 24, 1, ND_FLOAT32);
    /* torch: a.view(4, 6)[:, :4] -> (4, 4) strides (6, 1); .view(4, 2, 2) -> strides (6, 2, 1) */
    nd_tensor *x = nd_slice(nd_view(a, ND_SHAPE(4, 6)), 1, 0, 4, 1);
    CHECK(strides_are(x, ND_SHAPE(6, 1)));
    nd_tensor *v = nd_view(x, ND_SHAPE(4, 2, 2));
    CHECK(shape_is(v, ND_SHAPE(4, 2, 2)));
    CHECK(strides_are(v, ND_SHAPE(6, 2, 1)));
    CHECK(nd_shares_storage(v, a));
    CHECK(AT(v, 3, 1, 1) == 21);
    CHECK(nd_view(x, ND_SHAPE(16)) == NULL);
    CHECK(nd_last_status() == ND_ERR_STATE);
    nd_clear_error();
    nd_tensor *r = nd_reshape(x, ND_SHAPE(16));
    CHECK(r && !nd_shares_storage(r, a));
    CHECK_VALUES(r, 0, 0, 1, 2, 3, 6, 7, 8, 9, 12, 13, 14, 15, 18, 19, 20, 21);
    /* Expanded: torch.arange(3.).view(3,1).expand(3,4).view(3,2,2) -> strides (1, 0, 0) */
    nd_tensor *e = nd_expand(nd_view(nd_arange(0, 3, 1, ND_FLOAT32), ND_SHAPE(3, 1)), ND_SHAPE(3, 4));
    CHECK(strides_are(e, ND_SHAPE(1, 0)));
    nd_tensor *ev = nd_view(e, ND_SHAPE(3, 2, 2));
    CHECK(ev && nd_shares_storage(ev, e));
    CHECK(strides_are(ev, ND_SHAPE(1, 0, 0)));
    CHECK_VALUES(ev, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2);
    CHECK(nd_view(e, ND_SHAPE(12)) == NULL);
    CHECK(nd_last_status() == ND_ERR_STATE);
    nd_clear_error();
    nd_tensor *er = nd_reshape(e, ND_SHAPE(12));
    CHECK_VALUES(er, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2);
    nd_scope_end();
}

TEST(reshape_of_contiguous_shares)
{
    nd_scope_begin();
    nd_tensor *a = nd_arange(0, 12, 1, ND_INT64);
    nd_tensor *r = nd_reshape(a, ND_SHAPE(3, -1));
    CHECK(shape_is(r, ND_SHAPE(3, 4)));
    CHECK(strides_are(r, ND_SHAPE(4, 1)));
    CHECK(nd_shares_storage(r, a));
    CHECK(nd_dtype_of(r) == ND_INT64);
    CHECK_STATUS(SET(r, 99, 2, 3), ND_OK);
    CHECK(AT(a, 11) == 99);
    /* A row slice is contiguous: reshape shares too. */
    nd_tensor *rows = nd_slice(r, 0, 1, 3, 1);
    nd_tensor *rr = nd_reshape(rows, ND_SHAPE(-1));
    CHECK(shape_is(rr, ND_SHAPE(8)));
    CHECK(nd_shares_storage(rr, a));
    CHECK(nd_offset(rr) == 4);
    CHECK_VALUES(rr, 0, 4, 5, 6, 7, 8, 9, 10, 99);
    nd_scope_end();
}

/* ------------------------------------------------------------------ transpose, t, permute */

TEST(transpose_view)
{
    nd_scope_begin();
    nd_tensor *b = cube();
    nd_tensor *tr = nd_transpose(b, 0, 2);
    CHECK(shape_is(tr, ND_SHAPE(4, 3, 2)));
    CHECK(strides_are(tr, ND_SHAPE(1, 4, 12)));
    CHECK(nd_shares_storage(tr, b));
    CHECK(!nd_is_contiguous(tr));
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++)
                CHECK(AT(tr, k, j, i) == 12 * i + 4 * j + k);
    CHECK_VALUES(tr, 0, 0, 12, 4, 16, 8, 20, 1, 13, 5, 17, 9, 21, 2, 14, 6, 18, 10, 22, 3, 15, 7, 19, 11, 23);
    /* negative dims: torch b.transpose(-1, 0) */
    nd_tensor *tn = nd_transpose(b, -1, 0);
    CHECK(shape_is(tn, ND_SHAPE(4, 3, 2)));
    CHECK(strides_are(tn, ND_SHAPE(1, 4, 12)));
    /* same dim twice: unchanged geometry */
    nd_tensor *same = nd_transpose(b, 1, 1);
    CHECK(shape_is(same, ND_SHAPE(2, 3, 4)) && strides_are(same, ND_SHAPE(12, 4, 1)));
    /* writes through the transpose reach the base */
    CHECK_STATUS(SET(tr, -7, 3, 2, 1), ND_OK);
    CHECK(AT(b, 1, 2, 3) == -7);
    /* transpose twice is the original layout */
    nd_tensor *back = nd_transpose(tr, 0, 2);
    CHECK(strides_are(back, ND_SHAPE(12, 4, 1)));
    CHECK(nd_is_contiguous(back));
    CHECK(nd_transpose(b, 0, 3) == NULL);
    CHECK(nd_last_status() == ND_ERR_DIM);
    nd_clear_error();
    CHECK(nd_transpose(b, -4, 0) == NULL);
    CHECK(nd_last_status() == ND_ERR_DIM);
    nd_scope_end();
}

TEST(t_view)
{
    nd_scope_begin();
    nd_tensor *m = nd_view(nd_arange(0, 6, 1, ND_FLOAT64), ND_SHAPE(2, 3));
    nd_tensor *t = nd_t(m);
    CHECK(shape_is(t, ND_SHAPE(3, 2)));
    CHECK(strides_are(t, ND_SHAPE(1, 3)));
    CHECK(nd_shares_storage(t, m));
    CHECK(nd_dtype_of(t) == ND_FLOAT64);
    CHECK_VALUES(t, 0, 0, 3, 1, 4, 2, 5);
    nd_tensor *tt = nd_t(t);
    CHECK(strides_are(tt, ND_SHAPE(3, 1)));
    CHECK_VALUES(tt, 0, 0, 1, 2, 3, 4, 5);
    /* 1-d and 0-d: unchanged, as torch.arange(6.).t() */
    nd_tensor *v = nd_arange(0, 6, 1, ND_FLOAT32);
    nd_tensor *vt = nd_t(v);
    CHECK(shape_is(vt, ND_SHAPE(6)) && strides_are(vt, ND_SHAPE(1)));
    CHECK(nd_shares_storage(vt, v));
    nd_tensor *st = nd_t(nd_scalar(2, ND_FLOAT32));
    CHECK(st && nd_ndim(st) == 0 && nd_item(st) == 2);
    /* more than 2 dims: refused */
    CHECK(nd_t(nd_zeros(ND_FLOAT32, ND_SHAPE(2, 2, 2))) == NULL);
    CHECK(nd_last_status() == ND_ERR_DIM);
    nd_clear_error();
    CHECK_STATUS(SET(t, 50, 2, 1), ND_OK);
    CHECK(AT(m, 1, 2) == 50);
    nd_scope_end();
}

TEST(permute_view)
{
    nd_scope_begin();
    nd_tensor *b = cube();
    nd_tensor *p = nd_permute(b, ND_DIMS(2, 0, 1));
    CHECK(shape_is(p, ND_SHAPE(4, 2, 3)));
    CHECK(strides_are(p, ND_SHAPE(1, 12, 4)));
    CHECK(nd_shares_storage(p, b));
    CHECK_VALUES(p, 0, 0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21, 2, 6, 10, 14, 18, 22, 3, 7, 11, 15, 19, 23);
    nd_tensor *pn = nd_permute(b, ND_DIMS(-1, 0, 1));
    CHECK(shape_is(pn, ND_SHAPE(4, 2, 3)) && strides_are(pn, ND_SHAPE(1, 12, 4)));
    nd_tensor *id = nd_permute(b, ND_DIMS(0, 1, 2));
    CHECK(strides_are(id, ND_SHAPE(12, 4, 1)) && nd_is_contiguous(id));
    /* permute back with the inverse permutation */
    nd_tensor *inv = nd_permute(p, ND_DIMS(1, 2, 0));
    CHECK(shape_is(inv, ND_SHAPE(2, 3, 4)) && strides_are(inv, ND_SHAPE(12, 4, 1)));
    CHECK_STATUS(SET(p, 1000, 3, 1, 2), ND_OK);
    CHECK(AT(b, 1, 2, 3) == 1000);
    CHECK(nd_permute(b, ND_DIMS(0, 0, 1)) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_clear_error();
    CHECK(nd_permute(b, ND_DIMS(0, 1)) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_clear_error();
    CHECK(nd_permute(b, ND_DIMS(0, 1, 3)) == NULL);
    CHECK(nd_last_status() == ND_ERR_DIM);
    nd_scope_end();
}

/* ------------------------------------------------------------------ squeeze, unsqueeze */

TEST(squeeze_view)
{
    nd_scope_begin();
    nd_tensor *c = nd_view(nd_arange(0, 24, 1, ND_FLOAT32), ND_SHAPE(2, 1, 3, 1, 4));
    CHECK(strides_are(c, ND_SHAPE(12, 12, 4, 4, 1)));
    nd_tensor *all = nd_squeeze(c);
    CHECK(shape_is(all, ND_SHAPE(2, 3, 4)));
    CHECK(strides_are(all, ND_SHAPE(12, 4, 1)));
    CHECK(nd_shares_storage(all, c));
    nd_tensor *one = nd_squeeze_dim(c, 1);
    CHECK(shape_is(one, ND_SHAPE(2, 3, 1, 4)));
    CHECK(strides_are(one, ND_SHAPE(12, 4, 4, 1)));
    nd_tensor *neg = nd_squeeze_dim(c, -2);
    CHECK(shape_is(neg, ND_SHAPE(2, 1, 3, 4)));
    CHECK(strides_are(neg, ND_SHAPE(12, 12, 4, 1)));
    /* A dim whose size is not 1: no-op */
    nd_tensor *noop = nd_squeeze_dim(c, 0);
    CHECK(shape_is(noop, ND_SHAPE(2, 1, 3, 1, 4)));
    CHECK(strides_are(noop, ND_SHAPE(12, 12, 4, 4, 1)));
    CHECK(nd_shares_storage(noop, c));
    /* All size-1: a 0-dim result */
    nd_tensor *ones = nd_full(3, ND_FLOAT32, ND_SHAPE(1, 1));
    nd_tensor *s = nd_squeeze(ones);
    CHECK(s && nd_ndim(s) == 0 && nd_item(s) == 3);
    /* No size-1 dims: unchanged */
    CHECK(shape_is(nd_squeeze(all), ND_SHAPE(2, 3, 4)));
    CHECK(nd_squeeze_dim(c, 5) == NULL);
    CHECK(nd_last_status() == ND_ERR_DIM);
    nd_clear_error();
    CHECK_STATUS(SET(all, -3, 1, 1, 1), ND_OK);
    CHECK(AT(c, 1, 0, 1, 0, 1) == -3);
    nd_scope_end();
}

TEST(unsqueeze_view)
{
    nd_scope_begin();
    nd_tensor *b = cube();
    nd_tensor *u0 = nd_unsqueeze(b, 0);
    CHECK(shape_is(u0, ND_SHAPE(1, 2, 3, 4)));
    CHECK(strides_are(u0, ND_SHAPE(24, 12, 4, 1)));
    CHECK(nd_shares_storage(u0, b));
    nd_tensor *ulast = nd_unsqueeze(b, -1);
    CHECK(shape_is(ulast, ND_SHAPE(2, 3, 4, 1)));
    CHECK(strides_are(ulast, ND_SHAPE(12, 4, 1, 1)));
    nd_tensor *uend = nd_unsqueeze(b, 3);
    CHECK(shape_is(uend, ND_SHAPE(2, 3, 4, 1)));
    CHECK(strides_are(uend, ND_SHAPE(12, 4, 1, 1)));
    nd_tensor *u1 = nd_unsqueeze(b, 1);
    CHECK(shape_is(u1, ND_SHAPE(2, 1, 3, 4)));
    CHECK(strides_are(u1, ND_SHAPE(12, 12, 4, 1)));
    nd_tensor *um2 = nd_unsqueeze(b, -2);
    CHECK(shape_is(um2, ND_SHAPE(2, 3, 1, 4)));
    CHECK(strides_are(um2, ND_SHAPE(12, 4, 4, 1)));
    nd_tensor *um4 = nd_unsqueeze(b, -4);
    CHECK(shape_is(um4, ND_SHAPE(1, 2, 3, 4)));
    /* out of range: valid dims are -4..3 */
    CHECK(nd_unsqueeze(b, 4) == NULL);
    CHECK(nd_last_status() == ND_ERR_DIM);
    nd_clear_error();
    CHECK(nd_unsqueeze(b, -5) == NULL);
    CHECK(nd_last_status() == ND_ERR_DIM);
    nd_clear_error();
    /* 0-dim: torch.tensor(5.).unsqueeze(0) -> shape (1,), stride (1,) */
    nd_tensor *s = nd_unsqueeze(nd_scalar(5, ND_FLOAT32), 0);
    CHECK(shape_is(s, ND_SHAPE(1)) && strides_are(s, ND_SHAPE(1)));
    CHECK(nd_item(s) == 5);
    nd_tensor *s2 = nd_unsqueeze(nd_scalar(5, ND_FLOAT32), -1);
    CHECK(shape_is(s2, ND_SHAPE(1)));
    CHECK_STATUS(SET(um2, 77, 0, 2, 0, 1), ND_OK);
    CHECK(AT(b, 0, 2, 1) == 77);
    /* squeeze undoes unsqueeze */
    CHECK(strides_are(nd_squeeze_dim(um2, 2), ND_SHAPE(12, 4, 1)));
    nd_scope_end();
}

/* ------------------------------------------------------------------ expand */

TEST(expand_view)
{
    nd_scope_begin();
    nd_tensor *col = nd_from_f32((const float[]){1, 2}, ND_SHAPE(2, 1));
    nd_tensor *e = nd_expand(col, ND_SHAPE(2, 3));
    CHECK(shape_is(e, ND_SHAPE(2, 3)));
    CHECK(strides_are(e, ND_SHAPE(1, 0)));
    CHECK(nd_shares_storage(e, col));
    CHECK_VALUES(e, 0, 1, 1, 1, 2, 2, 2);
    /* -1 keeps a size; new leading dims: torch col.expand(4, 2, -1) -> (4,2,1) strides (0,1,1) */
    nd_tensor *lead = nd_expand(col, ND_SHAPE(4, 2, -1));
    CHECK(shape_is(lead, ND_SHAPE(4, 2, 1)));
    CHECK(strides_are(lead, ND_SHAPE(0, 1, 1)));
    CHECK_VALUES(lead, 0, 1, 2, 1, 2, 1, 2, 1, 2);
    nd_tensor *both = nd_expand(col, ND_SHAPE(3, -1, 5));
    CHECK(shape_is(both, ND_SHAPE(3, 2, 5)));
    CHECK(strides_are(both, ND_SHAPE(0, 1, 0)));
    /* 0-dim: torch.tensor(5.).expand(2, 3) strides (0, 0) */
    nd_tensor *se = nd_expand(nd_scalar(5, ND_FLOAT32), ND_SHAPE(2, 3));
    CHECK(shape_is(se, ND_SHAPE(2, 3)) && strides_are(se, ND_SHAPE(0, 0)));
    CHECK_VALUES(se, 0, 5, 5, 5, 5, 5, 5);
    /* same shape: same strides */
    nd_tensor *same = nd_expand(col, ND_SHAPE(2, 1));
    CHECK(strides_are(same, ND_SHAPE(1, 1)));
    /* writes to the base show up in every expanded position */
    CHECK_STATUS(SET(col, 9, 1, 0), ND_OK);
    CHECK_VALUES(e, 0, 1, 1, 1, 9, 9, 9);
    CHECK(AT(lead, 3, 1, 0) == 9);
    /* errors: non-singleton mismatch, fewer dims, -1 in a new leading dim */
    CHECK(nd_expand(col, ND_SHAPE(3, 3)) == NULL);
    CHECK(nd_last_status() == ND_ERR_SHAPE);
    nd_clear_error();
    CHECK(nd_expand(col, ND_SHAPE(6)) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_clear_error();
    CHECK(nd_expand(col, ND_SHAPE(-1, 2, 3)) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_clear_error();
    /* expand to size 0 along a singleton dim is allowed (torch.ones(2,1).expand(2,0)) */
    nd_tensor *z = nd_expand(col, ND_SHAPE(2, 0));
    CHECK(z && nd_numel(z) == 0);
    nd_scope_end();
}

/* ------------------------------------------------------------------ slice, select, narrow */

TEST(slice_with_step_and_clamping)
{
    nd_scope_begin();
    nd_tensor *x = nd_arange(0, 10, 1, ND_FLOAT32);
    nd_tensor *s = nd_slice(x, 0, 2, 8, 3); /* x[2:8:3] */
    CHECK(shape_is(s, ND_SHAPE(2)) && strides_are(s, ND_SHAPE(3)));
    CHECK(nd_offset(s) == 2);
    CHECK(nd_shares_storage(s, x));
    CHECK_VALUES(s, 0, 2, 5);
    nd_tensor *neg = nd_slice(x, 0, -3, 100, 1); /* x[-3:100] */
    CHECK(nd_offset(neg) == 7);
    CHECK_VALUES(neg, 0, 7, 8, 9);
    nd_tensor *clamp = nd_slice(x, 0, -100, 3, 1); /* x[-100:3] */
    CHECK(nd_offset(clamp) == 0);
    CHECK_VALUES(clamp, 0, 0, 1, 2);
    nd_tensor *negend = nd_slice(x, 0, 1, -6, 1); /* x[1:-6] */
    CHECK_VALUES(negend, 0, 1, 2, 3);
    nd_tensor *empty = nd_slice(x, 0, 5, 2, 1); /* x[5:2] */
    CHECK(shape_is(empty, ND_SHAPE(0)));
    CHECK(nd_offset(empty) == 5);
    nd_tensor *past = nd_slice(x, 0, 12, 20, 1); /* x[12:20] */
    CHECK(past && nd_numel(past) == 0);
    nd_tensor *every4 = nd_slice(x, 0, 0, 10, 4); /* x[0:10:4] */
    CHECK(strides_are(every4, ND_SHAPE(4)));
    CHECK_VALUES(every4, 0, 0, 4, 8);
    nd_tensor *big = nd_slice(x, 0, 0, INT64_MAX, 1);
    CHECK(shape_is(big, ND_SHAPE(10)));
    nd_tensor *bigneg = nd_slice(x, 0, INT64_MIN, 2, 1);
    CHECK_VALUES(bigneg, 0, 0, 1);

    nd_tensor *b = cube();
    nd_tensor *s1 = nd_slice(b, 1, 1, 3, 1); /* b[:, 1:3] */
    CHECK(shape_is(s1, ND_SHAPE(2, 2, 4)) && strides_are(s1, ND_SHAPE(12, 4, 1)) && nd_offset(s1) == 4);
    nd_tensor *s2 = nd_slice(b, 2, 0, 4, 2); /* b[:, :, ::2] */
    CHECK(shape_is(s2, ND_SHAPE(2, 3, 2)) && strides_are(s2, ND_SHAPE(12, 4, 2)) && nd_offset(s2) == 0);
    CHECK_VALUES(s2, 0, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22);
    nd_tensor *s3 = nd_slice(b, 2, 1, 4, 3); /* b[:, :, 1::3] */
    CHECK(shape_is(s3, ND_SHAPE(2, 3, 1)) && strides_are(s3, ND_SHAPE(12, 4, 3)) && nd_offset(s3) == 1);
    nd_tensor *s4 = nd_slice(b, -1, -3, -1, 1); /* b[..., -3:-1] */
    CHECK(shape_is(s4, ND_SHAPE(2, 3, 2)) && strides_are(s4, ND_SHAPE(12, 4, 1)) && nd_offset(s4) == 1);
    CHECK_VALUES(s4, 0, 1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22);
    nd_tensor *s5 = nd_slice(b, 1, 5, 100, 1); /* b[:, 5:] */
    CHECK(shape_is(s5, ND_SHAPE(2, 0, 4)) && nd_offset(s5) == 12);
    nd_tensor *s6 = nd_slice(b, 1, -10, 2, 1); /* b[:, -10:2] */
    CHECK(shape_is(s6, ND_SHAPE(2, 2, 4)) && nd_offset(s6) == 0);
    nd_tensor *s7 = nd_slice(b, 1, 2, 1, 1); /* b[:, 2:1] */
    CHECK(shape_is(s7, ND_SHAPE(2, 0, 4)) && nd_offset(s7) == 8);
    /* write through a stepped slice */
    CHECK_STATUS(SET(s2, -1, 1, 2, 1), ND_OK);
    CHECK(AT(b, 1, 2, 2) == -1);
    /* errors */
    CHECK(nd_slice(x, 0, 0, 5, 0) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_clear_error();
    CHECK(nd_slice(x, 1, 0, 5, 1) == NULL);
    CHECK(nd_last_status() == ND_ERR_DIM);
    nd_clear_error();
    CHECK(nd_slice(nd_scalar(1, ND_FLOAT32), 0, 0, 1, 1) == NULL);
    nd_clear_error();
    nd_scope_end();
}

TEST(select_view)
{
    nd_scope_begin();
    nd_tensor *b = cube();
    nd_tensor *s = nd_select(b, 1, -1); /* b.select(1, -1) */
    CHECK(shape_is(s, ND_SHAPE(2, 4)) && strides_are(s, ND_SHAPE(12, 1)) && nd_offset(s) == 8);
    CHECK(nd_shares_storage(s, b));
    CHECK_VALUES(s, 0, 8, 9, 10, 11, 20, 21, 22, 23);
    nd_tensor *s0 = nd_select(b, 0, 1); /* b.select(0, 1) */
    CHECK(shape_is(s0, ND_SHAPE(3, 4)) && strides_are(s0, ND_SHAPE(4, 1)) && nd_offset(s0) == 12);
    CHECK(nd_is_contiguous(s0));
    nd_tensor *s2 = nd_select(b, -1, 2);
    CHECK(shape_is(s2, ND_SHAPE(2, 3)) && strides_are(s2, ND_SHAPE(12, 4)) && nd_offset(s2) == 2);
    CHECK_VALUES(s2, 0, 2, 6, 10, 14, 18, 22);
    /* down to 0-dim: torch.arange(10.).select(0, -2) offset 8 */
    nd_tensor *x = nd_arange(0, 10, 1, ND_FLOAT32);
    nd_tensor *e = nd_select(x, 0, -2);
    CHECK(e && nd_ndim(e) == 0 && nd_offset(e) == 8 && nd_item(e) == 8);
    CHECK_STATUS(nd_set(e, NULL, 80), ND_OK);
    CHECK(AT(x, 8) == 80);
    CHECK_STATUS(SET(s, 500, 1, 0), ND_OK);
    CHECK(AT(b, 1, 2, 0) == 500);
    CHECK(nd_select(b, 1, 3) == NULL);
    CHECK(nd_last_status() == ND_ERR_INDEX);
    nd_clear_error();
    CHECK(nd_select(b, 1, -4) == NULL);
    CHECK(nd_last_status() == ND_ERR_INDEX);
    nd_clear_error();
    CHECK(nd_select(b, 3, 0) == NULL);
    CHECK(nd_last_status() == ND_ERR_DIM);
    nd_clear_error();
    nd_scope_end();
}

TEST(narrow_view)
{
    nd_scope_begin();
    nd_tensor *b = cube();
    nd_tensor *n = nd_narrow(b, 2, 1, 2); /* b.narrow(2, 1, 2) */
    CHECK(shape_is(n, ND_SHAPE(2, 3, 2)) && strides_are(n, ND_SHAPE(12, 4, 1)) && nd_offset(n) == 1);
    CHECK(nd_shares_storage(n, b));
    CHECK_VALUES(n, 0, 1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22);
    nd_tensor *nn = nd_narrow(b, 1, -2, 2); /* b.narrow(1, -2, 2) */
    CHECK(shape_is(nn, ND_SHAPE(2, 2, 4)) && nd_offset(nn) == 4);
    nd_tensor *zero = nd_narrow(b, 0, 2, 0);
    CHECK(zero && nd_numel(zero) == 0);
    CHECK_STATUS(SET(n, 42, 0, 0, 1), ND_OK);
    CHECK(AT(b, 0, 0, 2) == 42);
    CHECK(nd_narrow(b, 2, 3, 2) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_clear_error();
    CHECK(nd_narrow(b, 2, 0, -1) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_clear_error();
    nd_scope_end();
}

/* ------------------------------------------------------------------ flatten */

TEST(flatten_view)
{
    nd_scope_begin();
    nd_tensor *b = cube();
    nd_tensor *f = nd_flatten(b, 0, -1);
    CHECK(shape_is(f, ND_SHAPE(24)) && strides_are(f, ND_SHAPE(1)));
    CHECK(nd_shares_storage(f, b));
    nd_tensor *f1 = nd_flatten(b, 1, -1);
    CHECK(shape_is(f1, ND_SHAPE(2, 12)) && strides_are(f1, ND_SHAPE(12, 1)));
    nd_tensor *f01 = nd_flatten(b, 0, 1);
    CHECK(shape_is(f01, ND_SHAPE(6, 4)) && strides_are(f01, ND_SHAPE(4, 1)));
    nd_tensor *fneg = nd_flatten(b, -2, -1);
    CHECK(shape_is(fneg, ND_SHAPE(2, 12)));
    nd_tensor *fsame = nd_flatten(b, 1, 1);
    CHECK(shape_is(fsame, ND_SHAPE(2, 3, 4)));
    CHECK(nd_shares_storage(fsame, b));
    /* 0-dim: torch.tensor(3.).flatten() -> shape (1,) */
    nd_tensor *s = nd_flatten(nd_scalar(3, ND_FLOAT32), 0, -1);
    CHECK(shape_is(s, ND_SHAPE(1)) && nd_item(s) == 3);
    /* non-viewable input: a copy with the right values (torch b.transpose(1,2).flatten(1)) */
    nd_tensor *tf = nd_flatten(nd_transpose(b, 1, 2), 1, -1);
    CHECK(shape_is(tf, ND_SHAPE(2, 12)) && strides_are(tf, ND_SHAPE(12, 1)));
    CHECK(!nd_shares_storage(tf, b));
    CHECK_VALUES(tf, 0, 0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11, 12, 16, 20, 13, 17, 21, 14, 18, 22, 15, 19, 23);
    /* viewable non-contiguous input stays a view: flatten of the last two dims of a transposed
     * 3-d tensor whose last two dims are still dense */
    nd_tensor *p = nd_permute(b, ND_DIMS(1, 0, 2)); /* (3,2,4) strides (4,12,1) */
    nd_tensor *pf = nd_flatten(p, 0, 0);
    CHECK(pf && nd_shares_storage(pf, b));
    CHECK_STATUS(SET(f, -5, 23), ND_OK);
    CHECK(AT(b, 1, 2, 3) == -5);
    CHECK(nd_flatten(b, 2, 1) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_clear_error();
    CHECK(nd_flatten(b, 0, 3) == NULL);
    CHECK(nd_last_status() == ND_ERR_DIM);
    nd_clear_error();
    nd_scope_end();
}

/* ------------------------------------------------------------------ composition */

TEST(views_of_views_compose)
{
    nd_scope_begin();
    /* torch.arange(3.).unsqueeze(0).expand(4,3).transpose(0,1)[1:3] -> (2,4) strides (1,0) offset 1 */
    nd_tensor *base = nd_arange(0, 3, 1, ND_FLOAT32);
    nd_tensor *ex = nd_expand(nd_unsqueeze(base, 0), ND_SHAPE(4, 3));
    CHECK(strides_are(ex, ND_SHAPE(0, 1)));
    nd_tensor *tr = nd_transpose(ex, 0, 1);
    CHECK(shape_is(tr, ND_SHAPE(3, 4)) && strides_are(tr, ND_SHAPE(1, 0)));
    nd_tensor *sl = nd_slice(tr, 0, 1, 3, 1);
    CHECK(shape_is(sl, ND_SHAPE(2, 4)) && strides_are(sl, ND_SHAPE(1, 0)) && nd_offset(sl) == 1);
    CHECK(nd_shares_storage(sl, base));
    CHECK_VALUES(sl, 0, 1, 1, 1, 1, 2, 2, 2, 2);
    nd_tensor *sl2 = nd_slice(sl, 1, 0, 4, 2); /* [:, ::2] -> (2,2) strides (1,0) */
    CHECK(shape_is(sl2, ND_SHAPE(2, 2)) && strides_are(sl2, ND_SHAPE(1, 0)) && nd_offset(sl2) == 1);
    CHECK_STATUS(SET(base, 7, 2), ND_OK);
    CHECK_VALUES(sl, 0, 1, 1, 1, 1, 7, 7, 7, 7);
    CHECK_VALUES(sl2, 0, 1, 1, 7, 7);

    /* torch: b.permute(2,0,1).select(1,1)[0:4:2] -> (2,3) strides (2,4) offset 12 */
    nd_tensor *b = cube();
    nd_tensor *p = nd_permute(b, ND_DIMS(2, 0, 1));
    nd_tensor *se = nd_select(p, 1, 1);
    CHECK(shape_is(se, ND_SHAPE(4, 3)) && strides_are(se, ND_SHAPE(1, 4)) && nd_offset(se) == 12);
    nd_tensor *q = nd_slice(se, 0, 0, 4, 2);
    CHECK(shape_is(q, ND_SHAPE(2, 3)) && strides_are(q, ND_SHAPE(2, 4)) && nd_offset(q) == 12);
    CHECK_VALUES(q, 0, 12, 16, 20, 14, 18, 22);
    nd_tensor *qt = nd_t(q);
    CHECK(strides_are(qt, ND_SHAPE(4, 2)));
    CHECK_VALUES(qt, 0, 12, 14, 16, 18, 20, 22);
    nd_tensor *qu = nd_unsqueeze(qt, 1); /* (3,1,2) strides (4,4,2) */
    CHECK(shape_is(qu, ND_SHAPE(3, 1, 2)) && strides_are(qu, ND_SHAPE(4, 4, 2)) && nd_offset(qu) == 12);
    CHECK(nd_shares_storage(qu, b));
    CHECK_STATUS(SET(qu, -12, 2, 0, 1), ND_OK); /* qt[2][1] = q[1][2] = b[1][2][2] */
    CHECK(AT(b, 1, 2, 2) == -12);
    /* a narrow of a select of a flatten of a view */
    nd_tensor *chain = nd_narrow(nd_select(nd_flatten(nd_view(nd_arange(0, 24, 1, ND_FLOAT64), ND_SHAPE(2, 3, 4)), 1, 2), 0, 1),
                                 0, 3, 4);
    CHECK(shape_is(chain, ND_SHAPE(4)) && nd_offset(chain) == 15);
    CHECK_VALUES(chain, 0, 15, 16, 17, 18);
    nd_scope_end();
}

TEST(views_keep_dtype)
{
    nd_scope_begin();
    nd_tensor *i = nd_view(nd_arange(0, 6, 1, ND_INT64), ND_SHAPE(2, 3));
    nd_tensor *it = nd_t(i);
    CHECK(nd_dtype_of(it) == ND_INT64);
    CHECK_VALUES(it, 0, 0, 3, 1, 4, 2, 5);
    nd_tensor *bo = nd_from_data((const bool[]){true, false, false, true}, ND_BOOL, ND_SHAPE(2, 2));
    nd_tensor *bs = nd_select(nd_t(bo), 0, 1);
    CHECK(nd_dtype_of(bs) == ND_BOOL);
    CHECK_VALUES(bs, 0, 0, 1);
    nd_tensor *be = nd_expand(nd_unsqueeze(nd_select(bo, 0, 0), 0), ND_SHAPE(3, 2));
    CHECK(nd_dtype_of(be) == ND_BOOL);
    CHECK_VALUES(be, 0, 1, 0, 1, 0, 1, 0);
    nd_scope_end();
}

TEST(write_through_view_of_grad_leaf)
{
    nd_scope_begin();
    nd_tensor *w = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 3));
    nd_set_requires_grad(w, true);
    nd_tensor *v = nd_t(w);
    CHECK(nd_shares_storage(v, w));
    /* A view of a leaf that requires grad cannot be modified in place while grad mode is on. */
    CHECK(SET(v, 1, 2, 1) != ND_OK);
    nd_clear_error();
    CHECK_VALUES(w, 0, 0, 0, 0, 0, 0, 0);
    nd_no_grad_begin();
    nd_tensor *v2 = nd_slice(w, 1, 1, 3, 1);
    CHECK(nd_shares_storage(v2, w));
    CHECK_STATUS(SET(v2, 4, 0, 1), ND_OK);
    CHECK_STATUS(SET(v, 1, 2, 1), ND_OK);
    nd_no_grad_end();
    CHECK_VALUES(w, 0, 0, 0, 4, 0, 0, 1);
    nd_scope_end();
}

/* ------------------------------------------------------------------ ops on non-contiguous input */

TEST(ops_on_transposed_views)
{
    nd_scope_begin();
    nd_tensor *a = nd_mul_scalar(nd_view(nd_arange(0, 12, 1, ND_FLOAT32), ND_SHAPE(3, 4)), 0.25);
    nd_tensor *t = nd_t(a); /* (4, 3), strides (1, 4) */
    CHECK(!nd_is_contiguous(t));
    nd_tensor *tc = nd_contiguous(t);
    CHECK(nd_is_contiguous(tc));
    nd_tensor *o = nd_view(nd_arange(0, 12, 1, ND_FLOAT32), ND_SHAPE(4, 3));

    CHECK(same_values(nd_add(t, o), nd_add(tc, o), 1e-6));
    CHECK(same_values(nd_add(o, t), nd_add(o, tc), 1e-6));
    CHECK(same_values(nd_add(t, t), nd_add(tc, tc), 1e-6));
    CHECK(same_values(nd_mul(t, o), nd_mul(tc, o), 1e-6));
    CHECK(same_values(nd_mul(t, t), nd_mul(tc, tc), 1e-6));
    CHECK_VALUES(nd_mul(t, o), 1e-6, 0, 1, 4, 0.75, 5, 11.25, 3, 10.5, 20, 6.75, 17.5, 30.25);
    CHECK(same_values(nd_sum(t), nd_sum(tc), 1e-6));
    CHECK_NEAR(nd_item(nd_sum(t)), 16.5, 1e-5);
    CHECK(same_values(nd_sum_dims(t, ND_DIMS(0), false), nd_sum_dims(tc, ND_DIMS(0), false), 1e-6));
    CHECK(same_values(nd_sum_dims(t, ND_DIMS(1), true), nd_sum_dims(tc, ND_DIMS(1), true), 1e-6));
    CHECK_VALUES(nd_sum_dims(t, ND_DIMS(1), false), 1e-6, 3, 3.75, 4.5, 5.25);
    CHECK(same_values(nd_exp(t), nd_exp(tc), 1e-6));
    CHECK(same_values(nd_matmul(t, a), nd_matmul(tc, nd_contiguous(a)), 1e-5));
    CHECK(same_values(nd_matmul(a, t), nd_matmul(nd_contiguous(a), tc), 1e-5));
    CHECK(same_values(nd_matmul(t, nd_t(t)), nd_matmul(tc, nd_contiguous(nd_t(t))), 1e-5));
    /* a @ a.T, as torch gives it */
    CHECK_VALUES(nd_matmul(a, t), 1e-5, 0.875, 2.375, 3.875, 2.375, 7.875, 13.375, 3.875, 13.375, 22.875);
    CHECK(same_values(nd_mm(t, a), nd_mm(tc, a), 1e-5));
    /* matrix-vector with a strided vector */
    nd_tensor *vcol = nd_select(a, 1, 1); /* column 1 of a: stride 4 */
    CHECK(same_values(nd_matmul(t, vcol), nd_matmul(tc, nd_contiguous(vcol)), 1e-5));
    /* batched matmul with permuted (non-contiguous) operands */
    nd_tensor *b3 = nd_mul_scalar(nd_view(nd_arange(0, 24, 1, ND_FLOAT64), ND_SHAPE(2, 3, 4)), 0.1);
    nd_tensor *b3t = nd_transpose(b3, 1, 2); /* (2,4,3) */
    CHECK(same_values(nd_matmul(b3, b3t), nd_matmul(b3, nd_contiguous(b3t)), 1e-9));
    CHECK(same_values(nd_bmm(b3t, b3), nd_bmm(nd_contiguous(b3t), b3), 1e-9));
    nd_tensor *pb = nd_permute(b3, ND_DIMS(1, 0, 2)); /* (3,2,4) */
    CHECK(same_values(nd_exp(pb), nd_exp(nd_contiguous(pb)), 1e-12));
    CHECK(same_values(nd_sum_dims(pb, ND_DIMS(0, 2), false), nd_sum_dims(nd_contiguous(pb), ND_DIMS(0, 2), false), 1e-9));
    nd_scope_end();
}

TEST(ops_on_sliced_views)
{
    nd_scope_begin();
    nd_tensor *m = nd_view(nd_arange(0, 40, 1, ND_FLOAT32), ND_SHAPE(5, 8));
    nd_tensor *s = nd_slice(nd_slice(m, 1, 1, 7, 2), 0, 1, 5, 1); /* (4, 3), offset 9, strides (8, 2) */
    CHECK(shape_is(s, ND_SHAPE(4, 3)) && strides_are(s, ND_SHAPE(8, 2)) && nd_offset(s) == 9);
    nd_tensor *sc = nd_contiguous(s);
    CHECK(sc != s && nd_is_contiguous(sc));
    CHECK_VALUES(sc, 0, 9, 11, 13, 17, 19, 21, 25, 27, 29, 33, 35, 37);
    nd_tensor *o = nd_ones(ND_FLOAT32, ND_SHAPE(4, 3));
    CHECK(same_values(nd_add(s, o), nd_add(sc, o), 1e-6));
    CHECK(same_values(nd_add(s, s), nd_add(sc, sc), 1e-6));
    CHECK(same_values(nd_mul(s, s), nd_mul(sc, sc), 1e-6));
    CHECK(same_values(nd_sum(s), nd_sum(sc), 1e-6));
    CHECK_NEAR(nd_item(nd_sum(s)), 276, 1e-3);
    CHECK(same_values(nd_sum_dims(s, ND_DIMS(0), false), nd_sum_dims(sc, ND_DIMS(0), false), 1e-6));
    CHECK(same_values(nd_exp(nd_mul_scalar(s, 0.1)), nd_exp(nd_mul_scalar(sc, 0.1)), 1e-6));
    nd_tensor *w = nd_slice(nd_t(m), 0, 0, 8, 3); /* (3, 5) rows 0,3,6 of m.T */
    CHECK(shape_is(w, ND_SHAPE(3, 5)));
    CHECK(same_values(nd_matmul(s, w), nd_matmul(sc, nd_contiguous(w)), 1e-4));
    CHECK(same_values(nd_matmul(nd_t(s), s), nd_matmul(nd_t(sc), sc), 1e-4));
    /* a row slice broadcast against a column slice */
    nd_tensor *row = nd_select(s, 0, 2);             /* (3,) stride 2 */
    nd_tensor *col = nd_slice(nd_select(m, 1, 7), 0, 0, 5, 2); /* (3,) stride 16 */
    nd_tensor *outer = nd_mul(nd_unsqueeze(col, 1), row);
    CHECK(shape_is(outer, ND_SHAPE(3, 3)));
    CHECK_VALUES(outer, 1e-6, 7 * 25, 7 * 27, 7 * 29, 23 * 25, 23 * 27, 23 * 29, 39 * 25, 39 * 27, 39 * 29);
    /* empty slices flow through ops */
    nd_tensor *e = nd_slice(m, 0, 3, 3, 1);
    CHECK(e && nd_numel(e) == 0);
    CHECK(nd_numel(nd_exp(e)) == 0);
    CHECK(nd_item(nd_sum(e)) == 0);
    nd_scope_end();
}

TEST(ops_on_expanded_views)
{
    nd_scope_begin();
    nd_tensor *col = nd_from_f32((const float[]){1, 2, 3}, ND_SHAPE(3, 1));
    nd_tensor *e = nd_expand(col, ND_SHAPE(3, 4)); /* strides (1, 0) */
    nd_tensor *ec = nd_contiguous(e);
    CHECK(ec != e && nd_is_contiguous(ec));
    CHECK_VALUES(ec, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    nd_tensor *o = nd_view(nd_arange(0, 12, 1, ND_FLOAT32), ND_SHAPE(3, 4));
    CHECK(same_values(nd_add(e, o), nd_add(ec, o), 1e-6));
    CHECK(same_values(nd_mul(e, o), nd_mul(ec, o), 1e-6));
    CHECK(same_values(nd_mul(e, e), nd_mul(ec, ec), 1e-6));
    CHECK(same_values(nd_sum(e), nd_sum(ec), 1e-6));
    CHECK_NEAR(nd_item(nd_sum(e)), 24, 1e-6);
    CHECK(same_values(nd_sum_dims(e, ND_DIMS(1), false), nd_sum_dims(ec, ND_DIMS(1), false), 1e-6));
    CHECK(same_values(nd_exp(e), nd_exp(ec), 1e-6));
    nd_tensor *ot = nd_t(o); /* (4, 3) */
    CHECK(same_values(nd_matmul(e, ot), nd_matmul(ec, nd_contiguous(ot)), 1e-5));
    CHECK(same_values(nd_matmul(ot, e), nd_matmul(nd_contiguous(ot), ec), 1e-5));
    /* expanded on both sides (stride 0 in both operands of matmul) */
    nd_tensor *rowe = nd_expand(nd_from_f32((const float[]){1, -1, 2}, ND_SHAPE(1, 3)), ND_SHAPE(4, 3));
    CHECK(same_values(nd_matmul(e, rowe), nd_matmul(ec, nd_contiguous(rowe)), 1e-5));
    /* a 0-dim tensor expanded */
    nd_tensor *se = nd_expand(nd_scalar(0.5, ND_FLOAT32), ND_SHAPE(3, 4));
    CHECK(same_values(nd_mul(se, o), nd_mul_scalar(o, 0.5), 1e-6));
    /* batched with an expanded batch dim */
    nd_tensor *bm = nd_expand(nd_unsqueeze(o, 0), ND_SHAPE(2, 3, 4));
    nd_tensor *bv = nd_view(nd_arange(0, 8, 1, ND_FLOAT32), ND_SHAPE(2, 4, 1));
    CHECK(same_values(nd_matmul(bm, bv), nd_matmul(nd_contiguous(bm), bv), 1e-5));
    CHECK(same_values(nd_bmm(bm, bv), nd_bmm(nd_contiguous(bm), bv), 1e-5));
    nd_scope_end();
}

TEST(inplace_ops_on_views)
{
    nd_scope_begin();
    nd_tensor *m = nd_zeros(ND_FLOAT32, ND_SHAPE(3, 4));
    nd_tensor *tv = nd_t(m);
    CHECK_STATUS(nd_add_(tv, nd_view(nd_arange(0, 12, 1, ND_FLOAT32), ND_SHAPE(4, 3))), ND_OK);
    CHECK_VALUES(m, 0, 0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11);
    nd_tensor *col = nd_select(m, 1, 2);
    CHECK_STATUS(nd_fill_(col, -1), ND_OK);
    CHECK_VALUES(m, 0, 0, 3, -1, 9, 1, 4, -1, 10, 2, 5, -1, 11);
    nd_tensor *every = nd_slice(m, 1, 0, 4, 3);
    CHECK_STATUS(nd_mul_(every, nd_scalar(10, ND_FLOAT32)), ND_OK);
    CHECK_VALUES(m, 0, 0, 3, -1, 90, 10, 4, -1, 100, 20, 5, -1, 110);
    CHECK_STATUS(nd_sub_(nd_select(m, 0, 0), nd_from_f32((const float[]){1, 1, 1, 1}, ND_SHAPE(4))), ND_OK);
    CHECK_VALUES(nd_select(m, 0, 0), 0, -1, 2, -2, 89);
    nd_scope_end();
}

/* Attention on heads cut from one packed [B, T, 3C] tensor returns its output in the [B, T, H, D]
 * layout, as PyTorch's CPU kernel does, so going back to [B, T, C] is a view, and its gradients
 * come back in their inputs' layout; values are those of the dense computation. */
TEST(attention_output_follows_the_layout_of_q)
{
    nd_scope_begin();
    const int64_t B = 2, T = 5, H = 3, D = 4, C = H * D;
    nd_tensor *qkv = nd_randn(ND_FLOAT32, ND_SHAPE(B, T, 3 * C));
    nd_set_requires_grad(qkv, true);
    nd_tensor *h[3];
    for (int i = 0; i < 3; i++)
        h[i] = nd_transpose(nd_reshape(nd_narrow(qkv, 2, i * C, C), ND_SHAPE(B, T, H, D)), 1, 2);
    nd_tensor *out = nd_scaled_dot_product_attention(h[0], h[1], h[2], NULL, 0.0, true, 0.0);
    CHECK(out && !nd_is_contiguous(out) && nd_is_contiguous(nd_transpose(out, 1, 2)));
    nd_tensor *dense = nd_scaled_dot_product_attention(nd_contiguous(h[0]), nd_contiguous(h[1]), nd_contiguous(h[2]), NULL,
                                                      0.0, true, 0.0);
    CHECK(dense && nd_is_contiguous(dense));
    CHECK(nd_item(nd_max(nd_abs(nd_sub(out, dense)))) < 1e-6);
    /* the backward reads a transposed output gradient in place and matches the dense one's */
    nd_tensor *w = nd_randn(ND_FLOAT32, ND_SHAPE(B, T, C));
    CHECK(nd_backward(nd_sum(nd_mul(nd_reshape(nd_transpose(out, 1, 2), ND_SHAPE(B, T, C)), w))) == ND_OK);
    nd_tensor *g1 = nd_clone(nd_grad(qkv));
    nd_zero_grad(qkv);
    CHECK(nd_backward(nd_sum(nd_mul(nd_reshape(nd_transpose(dense, 1, 2), ND_SHAPE(B, T, C)), w))) == ND_OK);
    CHECK(g1 && nd_item(nd_max(nd_abs(nd_sub(g1, nd_grad(qkv))))) < 1e-5);
    nd_scope_end();
}

void run_suite(void)
{
    RUN(attention_output_follows_the_layout_of_q);
    RUN(view_shapes_and_strides);
    RUN(view_errors);
    RUN(view_of_transposed_fails_reshape_copies);
    RUN(view_of_non_contiguous_viewable);
    RUN(reshape_of_contiguous_shares);
    RUN(transpose_view);
    RUN(t_view);
    RUN(permute_view);
    RUN(squeeze_view);
    RUN(unsqueeze_view);
    RUN(expand_view);
    RUN(slice_with_step_and_clamping);
    RUN(select_view);
    RUN(narrow_view);
    RUN(flatten_view);
    RUN(views_of_views_compose);
    RUN(views_keep_dtype);
    RUN(write_through_view_of_grad_leaf);
    RUN(ops_on_transposed_views);
    RUN(ops_on_sliced_views);
    RUN(ops_on_expanded_views);
    RUN(inplace_ops_on_views);
}

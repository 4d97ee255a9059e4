/* Tensors and storages: allocation, reference counts, scopes, geometry helpers, element access. */
#include "autograd/node.h"
#include "ops/common.h"
#include "backend/backend.h"
#include "core/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


/* ------------------------------------------------------------------ geometry */

int64_t nd_shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

void nd_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides)
{
    /* Unsigned and saturating: a zero-size tensor may have other sizes whose product overflows,
     * and its strides are never used to reach an element. */
    uint64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)s;
        uint64_t d = shape[i] > 1 ? (uint64_t)shape[i] : 1;
        s = s > UINT64_MAX / d ? UINT64_MAX : s * d;
    }
}

int nd_wrap_dim(int dim, int ndim)
{
    int n = ndim > 0 ? ndim : 1; /* a scalar accepts dims 0 and -1, as in PyTorch */
    if (dim < -n || dim >= n)
        return -1;
    return dim < 0 ? dim + n : dim;
}

bool nd_broadcast_shapes(int na, const int64_t *sa, int nb, const int64_t *sb, int *nout, int64_t *out)
{
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int64_t da = i < n - na ? 1 : sa[i - (n - na)];
        int64_t db = i < n - nb ? 1 : sb[i - (n - nb)];
        if (da != db && da != 1 && db != 1)
            return false;
        out[i] = da == 1 ? db : da;
    }
    *nout = n;
    return true;
}

bool nd_dims_mask(const char *op, int ndim, int ndims, const int64_t *dims, bool *mask)
{
    for (int i = 0; i < ND_MAX_DIMS; i++)
        mask[i] = false;
    if (ndims < 0 || (ndims > 0 && !dims)) {
        nd_fail(ND_ERR_VALUE, "%s: invalid dims list (ndims=%d)", op, ndims);
        return false;
    }
    for (int i = 0; i < ndims; i++) {
        if (dims[i] < INT32_MIN || dims[i] > INT32_MAX) {
            nd_fail(ND_ERR_DIM, "%s: dim %lld out of range for a %d-d tensor", op, (long long)dims[i], ndim);
            return false;
        }
        int d = nd_wrap_dim((int)dims[i], ndim);
        if (d < 0) {
            nd_fail(ND_ERR_DIM, "%s: dim %lld out of range for a %d-d tensor (expected in [%d, %d])", op,
                    (long long)dims[i], ndim, ndim ? -ndim : -1, ndim ? ndim - 1 : 0);
            return false;
        }
        if (ndim == 0)
            continue;
        if (mask[d]) {
            nd_fail(ND_ERR_DIM, "%s: dim %d appears more than once in the dims list", op, d);
            return false;
        }
        mask[d] = true;
    }
    return true;
}

/* ------------------------------------------------------------------ allocation */

/* Small data lives in the same block as its storage header (one allocation instead of two, a
 * visible part of a small op's cost); large data gets its own block, so its size class, and the
 * memory it wastes, are those of the data alone. */
enum { INLINE_HEADER = 64, INLINE_MAX = 1024 };

_Static_assert(sizeof(nd_storage) <= 64, "the storage header must fit before inline data");
static nd_storage *storage_new(size_t nbytes, bool zero)
{
    if (nbytes <= INLINE_MAX) {
        nd_storage *s = nd_mem_alloc(INLINE_HEADER + (nbytes ? nbytes : 1), false);
        if (!s)
            return NULL;
        s->data = (char *)s + INLINE_HEADER;
        s->inline_data = true;
        if (zero)
            memset(s->data, 0, nbytes);
        s->nbytes = nbytes;
        atomic_init(&s->refcount, 1);
        atomic_init(&s->version, 0);
        nd_count_live(ND_COUNT_STORAGES, 1);
        return s;
    }
    nd_storage *s = nd_mem_alloc(sizeof *s, false);
    if (!s)
        return NULL;
    s->data = nd_mem_alloc(nbytes, zero);
    if (!s->data) {
        nd_mem_free(s, sizeof *s);
        return NULL;
    }
    s->inline_data = false;
    s->nbytes = nbytes;
    atomic_init(&s->refcount, 1);
    atomic_init(&s->version, 0);
    nd_count_live(ND_COUNT_STORAGES, 1);
    return s;
}

static void storage_unref(nd_storage *s)
{
    if (s && nd_drop_ref(&s->refcount)) {
        if (s->inline_data) {
            nd_mem_free(s, INLINE_HEADER + (s->nbytes ? s->nbytes : 1));
        } else {
            nd_mem_free(s->data, s->nbytes);
            nd_mem_free(s, sizeof *s);
        }
        nd_count_live(ND_COUNT_STORAGES, -1);
    }
}

static nd_tensor *tensor_struct_new(void)
{
    nd_tensor *t = nd_mem_alloc(sizeof *t, true);
    if (!t)
        return NULL;
    atomic_init(&t->refcount, 1);
    atomic_init(&t->user_refs, 0);
    nd_count_live(ND_COUNT_TENSORS, 1);
    return t;
}

static bool shape_ok(const char *op, int ndim, const int64_t *shape, size_t elem, size_t *nbytes)
{
    if (ndim < 0 || ndim > ND_MAX_DIMS) {
        nd_fail(ND_ERR_DIM, "%s: %d dims requested; ndgrad supports 0 to %d", op, ndim, ND_MAX_DIMS);
        return false;
    }
    if (ndim > 0 && !shape) {
        nd_fail(ND_ERR_NULL, "%s: shape is NULL for %d dims", op, ndim);
        return false;
    }
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            char b[ND_SHAPE_BUF];
            nd_fail(ND_ERR_VALUE, "%s: negative size in shape %s", op, nd_shape_str(b, sizeof b, ndim, shape));
            return false;
        }
        uint64_t next;
        if (__builtin_mul_overflow(n, (uint64_t)shape[i], &next) || next > (UINT64_MAX / 4) / elem) {
            char b[ND_SHAPE_BUF];
            nd_fail(ND_ERR_NOMEM, "%s: shape %s is too large", op, nd_shape_str(b, sizeof b, ndim, shape));
            return false;
        }
        n = next;
    }
    if (n * elem > (uint64_t)SIZE_MAX / 2) {
        nd_fail(ND_ERR_NOMEM, "%s: tensor too large", op);
        return false;
    }
    *nbytes = (size_t)(n * elem);
    return true;
}

nd_tensor *nd_alloc(nd_dtype dtype, int ndim, const int64_t *shape, bool zero)
{
    return nd_alloc_named("nd_alloc", dtype, ndim, shape, zero);
}

nd_tensor *nd_alloc_named(const char *name, nd_dtype dtype, int ndim, const int64_t *shape, bool zero)
{
    if (!nd_dtype_valid((int)dtype))
        return nd_fail(ND_ERR_DTYPE, "%s: invalid dtype %d", name, (int)dtype);
    size_t nbytes;
    if (!shape_ok(name, ndim, shape, nd_dtype_size(dtype), &nbytes))
        return NULL;
    nd_tensor *t = tensor_struct_new();
    if (!t)
        return nd_fail(ND_ERR_NOMEM, "out of memory allocating a tensor");
    t->storage = storage_new(nbytes, zero);
    if (!t->storage) {
        nd_mem_free(t, sizeof *t);
        nd_count_live(ND_COUNT_TENSORS, -1);
        char b[ND_SHAPE_BUF];
        return nd_fail(ND_ERR_NOMEM, "out of memory allocating %zu bytes for shape %s", nbytes,
                       nd_shape_str(b, sizeof b, ndim, shape));
    }
    t->ndim = ndim;
    t->dtype = dtype;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    nd_contiguous_strides(ndim, shape, t->strides);
    return t;
}

nd_tensor *nd_alias(const nd_tensor *src, int ndim, const int64_t *shape, const int64_t *strides, int64_t offset)
{
    nd_tensor *t = tensor_struct_new();
    if (!t)
        return nd_fail(ND_ERR_NOMEM, "out of memory allocating a tensor view");
    t->storage = src->storage;
    atomic_fetch_add(&src->storage->refcount, 1);
    t->dtype = src->dtype;
    t->ndim = ndim;
    t->offset = offset;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->strides[i] = strides[i];
    }
    return t;
}

/* ------------------------------------------------------------------ release (iterative) */

/* Dead tensors and nodes are chained through dead_next and freed in a loop rather than by
 * recursion, so dropping the last reference to a 1,000,000-op chain needs no deep stack. */
void nd_unref(nd_tensor *t)
{
    if (!t || !nd_drop_ref(&t->refcount))
        return;
    nd_tensor *dead_tensors = t;
    t->dead_next = NULL;
    nd_node *dead_nodes = NULL;
    while (dead_tensors || dead_nodes) {
        if (dead_tensors) {
            nd_tensor *x = dead_tensors;
            dead_tensors = x->dead_next;
            nd_node *n = x->grad_fn;
            if (n) {
                if (n->retained == x)
                    n->retained = NULL;
                if (nd_drop_ref(&n->refcount)) {
                    n->dead_next = dead_nodes;
                    dead_nodes = n;
                }
            }
            nd_tensor *g = x->grad;
            if (g && nd_drop_ref(&g->refcount)) {
                g->dead_next = dead_tensors;
                dead_tensors = g;
            }
            storage_unref(x->storage);
            nd_mem_free(x, sizeof *x);
            nd_count_live(ND_COUNT_TENSORS, -1);
        } else {
            nd_node *n = dead_nodes;
            dead_nodes = n->dead_next;
            for (int i = 0; i < n->n_inputs + ND_NODE_MAX_SAVED + 1; i++) {
                nd_tensor *in = i < n->n_inputs ? n->inputs[i]
                              : i < n->n_inputs + ND_NODE_MAX_SAVED ? n->saved[i - n->n_inputs]
                                                                    : n->grad_acc;
                if (in && nd_drop_ref(&in->refcount)) {
                    in->dead_next = dead_tensors;
                    dead_tensors = in;
                }
            }
            nd_mem_free(n, nd_node_bytes(n->n_inputs));
            nd_count_live(ND_COUNT_NODES, -1);
        }
    }
}

void nd_node_unref(nd_node *n)
{
    if (!n || atomic_fetch_sub(&n->refcount, 1) != 1)
        return;
    /* Re-enter through a temporary owner so the same iterative loop frees the node. */
    nd_tensor *holder = tensor_struct_new();
    if (!holder) {
        atomic_fetch_add(&n->refcount, 1); /* leak rather than recurse without memory */
        return;
    }
    holder->grad_fn = n;
    atomic_fetch_add(&n->refcount, 1);
    holder->storage = NULL;
    nd_unref(holder);
}

/* ------------------------------------------------------------------ scopes */

typedef struct scope_stack {
    nd_tensor **items;
    size_t count, cap;
    size_t *marks;
    size_t depth, marks_cap;
} scope_stack;

static ND_THREAD_LOCAL scope_stack scopes;

void nd_scope_begin(void)
{
    if (scopes.depth == scopes.marks_cap) {
        size_t cap = scopes.marks_cap ? scopes.marks_cap * 2 : 16;
        size_t *m = realloc(scopes.marks, cap * sizeof *m);
        if (!m) {
            /* Without room for a mark the scope merges into its parent: still leak-free. */
            nd_fail(ND_ERR_NOMEM, "nd_scope_begin: out of memory");
            return;
        }
        scopes.marks = m;
        scopes.marks_cap = cap;
    }
    scopes.marks[scopes.depth++] = scopes.count;
}

nd_status nd_scope_end(void)
{
    if (scopes.depth == 0)
        return nd_fail_status(ND_ERR_STATE, "nd_scope_end: no scope is open");
    size_t mark = scopes.marks[--scopes.depth];
    while (scopes.count > mark) {
        nd_unref(scopes.items[--scopes.count]);
    }
    return ND_OK; /* the arrays stay for the next step; nd_scratch_release returns them */
}

void nd_scratch_release(void)
{
    if (scopes.depth == 0) {
        free(scopes.items);
        free(scopes.marks);
        scopes.items = NULL;
        scopes.marks = NULL;
        scopes.count = scopes.cap = scopes.marks_cap = 0;
    }
    nd_engine_scratch_release();
}

void nd_release_cached_memory(void)
{
    nd_mem_trim();
    nd_backend_get()->release_scratch();
}

nd_tensor *nd_register(nd_tensor *t)
{
    if (!t)
        return t;
    if (scopes.depth == 0) {
        atomic_fetch_add(&t->user_refs, 1);
        return t;
    }
    if (scopes.count == scopes.cap) {
        size_t cap = scopes.cap ? scopes.cap * 2 : 256;
        nd_tensor **items = realloc(scopes.items, cap * sizeof *items);
        if (!items) {
            nd_unref(t);
            return nd_fail(ND_ERR_NOMEM, "out of memory registering a tensor in its scope");
        }
        scopes.items = items;
        scopes.cap = cap;
    }
    scopes.items[scopes.count++] = t;
    return t;
}

nd_tensor *nd_keep(nd_tensor *t)
{
    if (t) {
        atomic_fetch_add(&t->refcount, 1);
        atomic_fetch_add(&t->user_refs, 1);
    }
    return t;
}

void nd_release(nd_tensor *t)
{
    if (!t)
        return;
    int owned = atomic_load(&t->user_refs);
    while (owned > 0 && !atomic_compare_exchange_weak(&t->user_refs, &owned, owned - 1))
        ;
    if (owned <= 0) {
        nd_fail(ND_ERR_STATE,
                "nd_release: the caller owns no reference to this tensor (it belongs to a scope, which "
                "frees it at nd_scope_end; call nd_keep first to own one)");
        return;
    }
    nd_unref(t);
}

/* ------------------------------------------------------------------ inspection */

int nd_ndim(const nd_tensor *t) { return t ? t->ndim : -1; }
const int64_t *nd_shape(const nd_tensor *t) { return t ? t->shape : NULL; }
const int64_t *nd_strides(const nd_tensor *t) { return t ? t->strides : NULL; }
int64_t nd_offset(const nd_tensor *t) { return t ? t->offset : 0; }
int64_t nd_numel(const nd_tensor *t) { return t ? nd_shape_numel(t->ndim, t->shape) : 0; }
nd_dtype nd_dtype_of(const nd_tensor *t) { return t ? t->dtype : ND_FLOAT32; }

int64_t nd_size(const nd_tensor *t, int dim)
{
    if (!t) {
        nd_fail_null("nd_size", 0);
        return -1;
    }
    int d = nd_wrap_dim(dim, t->ndim);
    if (d < 0 || t->ndim == 0) {
        nd_fail(ND_ERR_DIM, "nd_size: dim %d out of range for a %d-d tensor", dim, t->ndim);
        return -1;
    }
    return t->shape[d];
}

bool nd_is_contiguous(const nd_tensor *t)
{
    if (!t)
        return false;
    int64_t expected = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 0)
            return true;
        if (t->shape[i] != 1 && t->strides[i] != expected)
            return false;
        expected *= t->shape[i];
    }
    return true;
}

bool nd_shares_storage(const nd_tensor *a, const nd_tensor *b)
{
    return a && b && a->storage == b->storage;
}

void *(nd_data_ptr)(const nd_tensor *t)
{
    if (!t)
        return NULL;
    return (char *)t->storage->data + t->offset * (int64_t)nd_dtype_size(t->dtype);
}

char *nd_elem_ptr(const nd_tensor *t, int64_t linear)
{
    int64_t off = t->offset;
    for (int i = t->ndim - 1; i >= 0; i--) {
        int64_t idx = linear % t->shape[i];
        linear /= t->shape[i];
        off += idx * t->strides[i];
    }
    return (char *)t->storage->data + off * (int64_t)nd_dtype_size(t->dtype);
}

void nd_bump_version(nd_tensor *t) { atomic_fetch_add(&t->storage->version, 1); }

static char *index_ptr(const char *op, const nd_tensor *t, const int64_t *idx)
{
    if (!t)
        return nd_fail_null(op, 0);
    if (t->ndim > 0 && !idx)
        return nd_fail(ND_ERR_NULL, "%s: index array is NULL for a %d-d tensor", op, t->ndim);
    int64_t off = t->offset;
    for (int i = 0; i < t->ndim; i++) {
        int64_t k = idx[i];
        if (k < -t->shape[i] || k >= t->shape[i]) {
            char b[ND_SHAPE_BUF];
            return nd_fail(ND_ERR_INDEX, "%s: index %lld is out of bounds for dim %d of shape %s", op,
                           (long long)k, i, nd_shape_str(b, sizeof b, t->ndim, t->shape));
        }
        if (k < 0)
            k += t->shape[i];
        off += k * t->strides[i];
    }
    return (char *)t->storage->data + off * (int64_t)nd_dtype_size(t->dtype);
}

nd_status nd_get(const nd_tensor *t, const int64_t *idx, double *value)
{
    if (!value)
        return nd_fail_status(ND_ERR_NULL, "nd_get: value pointer is NULL");
    char *p = index_ptr("nd_get", t, idx);
    if (!p)
        return nd_last_status();
    *value = nd_load(p, t->dtype);
    return ND_OK;
}

/* In-place writes follow PyTorch: refused on a leaf that requires grad while grad mode is on. */
static nd_status check_writable(const char *op, const nd_tensor *t)
{
    if (t->requires_grad && nd_is_grad_enabled())
        return nd_fail_status(ND_ERR_GRAD,
                              "%s: a tensor that requires grad cannot be modified in place while grad "
                              "mode is on (use nd_no_grad_begin/end around the update)", op);
    return ND_OK;
}

nd_status nd_set(nd_tensor *t, const int64_t *idx, double value)
{
    char *p = index_ptr("nd_set", t, idx);
    if (!p)
        return nd_last_status();
    nd_status st = check_writable("nd_set", t);
    if (st != ND_OK)
        return st;
    nd_store(p, t->dtype, value);
    nd_bump_version(t);
    return ND_OK;
}

double nd_item(const nd_tensor *t)
{
    if (!t) {
        nd_fail_null("nd_item", 0);
        return NAN;
    }
    if (nd_numel(t) != 1) {
        char b[ND_SHAPE_BUF];
        nd_fail(ND_ERR_SHAPE, "nd_item: a tensor with %lld elements (shape %s) cannot be converted to a scalar",
                (long long)nd_numel(t), nd_shape_str(b, sizeof b, t->ndim, t->shape));
        return NAN;
    }
    return nd_load(nd_elem_ptr(t, 0), t->dtype);
}

nd_status nd_copy_out(const nd_tensor *t, void *buf, size_t capacity, nd_dtype dtype)
{
    if (!t)
        return nd_fail_null("nd_copy_out", 0), nd_last_status();
    if (!buf)
        return nd_fail_status(ND_ERR_NULL, "nd_copy_out: buffer is NULL");
    if (!nd_dtype_valid((int)dtype))
        return nd_fail_status(ND_ERR_DTYPE, "nd_copy_out: invalid dtype %d", (int)dtype);
    int64_t n = nd_numel(t);
    size_t es = nd_dtype_size(dtype);
    if ((uint64_t)n * es > capacity)
        return nd_fail_status(ND_ERR_VALUE, "nd_copy_out: %lld elements of %s need %llu bytes, buffer has %zu",
                              (long long)n, nd_dtype_name(dtype), (unsigned long long)((uint64_t)n * es), capacity);
    if (dtype == t->dtype && nd_is_contiguous(t)) {
        memcpy(buf, nd_data_ptr(t), (size_t)n * es);
        return ND_OK;
    }
    /* Strided or converting: one cast kernel from t's geometry into the dense buffer, so int64
     * values are copied exactly rather than through a double. */
    int64_t dense[ND_MAX_DIMS];
    nd_contiguous_strides(t->ndim, t->shape, dense);
    char *ptrs[2] = {buf, nd_data_ptr(t)};
    const int64_t *strides[2] = {dense, t->strides};
    size_t sizes[2] = {es, nd_dtype_size(t->dtype)};
    nd_iter it;
    nd_iter_init(&it, t->ndim, t->shape, 2, ptrs, strides, sizes);
    nd_backend_get()->cast(dtype, t->dtype, &it);
    return ND_OK;
}

nd_status nd_copy_in(nd_tensor *t, const void *data, size_t nbytes)
{
    if (!t)
        return nd_fail_null("nd_copy_in", 0), nd_last_status();
    if (!data)
        return nd_fail_status(ND_ERR_NULL, "nd_copy_in: data is NULL");
    int64_t n = nd_numel(t);
    size_t es = nd_dtype_size(t->dtype);
    if ((uint64_t)n * es != nbytes)
        return nd_fail_status(ND_ERR_VALUE, "nd_copy_in: tensor of %lld %s elements needs %llu bytes, got %zu",
                              (long long)n, nd_dtype_name(t->dtype), (unsigned long long)((uint64_t)n * es), nbytes);
    nd_status st = check_writable("nd_copy_in", t);
    if (st != ND_OK)
        return st;
    if (nd_is_contiguous(t))
        memcpy(nd_data_ptr(t), data, nbytes);
    else
        for (int64_t i = 0; i < n; i++)
            memcpy(nd_elem_ptr(t, i), (const char *)data + i * (int64_t)es, es);
    nd_bump_version(t);
    return ND_OK;
}

/* ------------------------------------------------------------------ creation */

nd_tensor *nd_empty(nd_dtype dtype, int ndim, const int64_t *shape)
{
    return nd_register(nd_alloc_named("nd_empty", dtype, ndim, shape, false));
}

nd_tensor *nd_zeros(nd_dtype dtype, int ndim, const int64_t *shape)
{
    return nd_register(nd_alloc_named("nd_zeros", dtype, ndim, shape, true));
}

static void fill_dense(nd_tensor *t, double v)
{
    int64_t n = nd_numel(t);
    void *p = nd_data_ptr(t);
    switch (t->dtype) {
    case ND_FLOAT32: { float x = (float)v, *d = p; for (int64_t i = 0; i < n; i++) d[i] = x; break; }
    case ND_FLOAT64: { double *d = p; for (int64_t i = 0; i < n; i++) d[i] = v; break; }
    case ND_INT64: { int64_t x; nd_store(&x, ND_INT64, v); int64_t *d = p; for (int64_t i = 0; i < n; i++) d[i] = x; break; }
    case ND_BOOL: memset(p, v != 0, (size_t)n); break;
    }
}

static nd_tensor *full_named(const char *name, double value, nd_dtype dtype, int ndim, const int64_t *shape)
{
    nd_tensor *t = nd_alloc_named(name, dtype, ndim, shape, false);
    if (!t)
        return NULL;
    fill_dense(t, value);
    return nd_register(t);
}

nd_tensor *nd_full(double value, nd_dtype dtype, int ndim, const int64_t *shape)
{
    return full_named("nd_full", value, dtype, ndim, shape);
}
nd_tensor *nd_ones(nd_dtype dtype, int ndim, const int64_t *shape) { return full_named("nd_ones", 1.0, dtype, ndim, shape); }
nd_tensor *nd_scalar(double value, nd_dtype dtype) { return full_named("nd_scalar", value, dtype, 0, NULL); }

nd_tensor *nd_from_data(const void *data, nd_dtype dtype, int ndim, const int64_t *shape)
{
    if (!data && nd_shape_numel(ndim > 0 && shape ? ndim : 0, shape) > 0)
        return nd_fail(ND_ERR_NULL, "nd_from_data: data is NULL");
    nd_tensor *t = nd_alloc_named("nd_from_data", dtype, ndim, shape, false);
    if (!t)
        return NULL;
    if (t->storage->nbytes)
        memcpy(t->storage->data, data, t->storage->nbytes);
    return nd_register(t);
}

nd_tensor *nd_from_f32(const float *d, int ndim, const int64_t *shape) { return nd_from_data(d, ND_FLOAT32, ndim, shape); }
nd_tensor *nd_from_f64(const double *d, int ndim, const int64_t *shape) { return nd_from_data(d, ND_FLOAT64, ndim, shape); }
nd_tensor *nd_from_i64(const int64_t *d, int ndim, const int64_t *shape) { return nd_from_data(d, ND_INT64, ndim, shape); }

nd_tensor *nd_arange(double start, double end, double step, nd_dtype dtype)
{
    if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step))
        return nd_fail(ND_ERR_VALUE, "nd_arange: invalid range start=%g end=%g step=%g", start, end, step);
    if ((step > 0 && end < start) || (step < 0 && end > start))
        return nd_fail(ND_ERR_VALUE, "nd_arange: upper bound and larger bound inconsistent with step sign "
                       "(start=%g end=%g step=%g)", start, end, step);
    double count = ceil((end - start) / step);
    if (count > 1e12)
        return nd_fail(ND_ERR_VALUE, "nd_arange: %g elements is too many", count);
    int64_t n = (int64_t)count;
    nd_tensor *t = nd_alloc_named("nd_arange", dtype, 1, &n, false);
    if (!t)
        return NULL;
    for (int64_t i = 0; i < n; i++)
        nd_store(nd_elem_ptr(t, i), dtype, start + (double)i * step);
    return nd_register(t);
}

nd_tensor *nd_eye(int64_t n, int64_t m, nd_dtype dtype)
{
    if (n < 0 || m < 0)
        return nd_fail(ND_ERR_VALUE, "nd_eye: sizes must be non-negative, got n=%lld m=%lld", (long long)n, (long long)m);
    int64_t shape[2] = {n, m};
    nd_tensor *t = nd_alloc_named("nd_eye", dtype, 2, shape, true);
    if (!t)
        return NULL;
    for (int64_t i = 0; i < n && i < m; i++)
        nd_store(nd_elem_ptr(t, i * m + i), dtype, 1.0);
    return nd_register(t);
}

static nd_tensor *random_tensor(const char *op, nd_dtype dtype, int ndim, const int64_t *shape, bool normal)
{
    if (!nd_dtype_is_float(dtype))
        return nd_fail(ND_ERR_DTYPE, "%s: expected a floating point dtype, got %s", op,
                       nd_dtype_valid((int)dtype) ? nd_dtype_name(dtype) : "an invalid dtype");
    nd_tensor *t = nd_alloc_named(op, dtype, ndim, shape, false);
    if (!t)
        return NULL;
    int64_t n = nd_numel(t);
    if (dtype == ND_FLOAT32) {
        float *d = t->storage->data;
        for (int64_t i = 0; i < n; i++)
            d[i] = normal ? (float)nd_rng_normal() : nd_rng_uniform_f();
    } else {
        double *d = t->storage->data;
        for (int64_t i = 0; i < n; i++)
            d[i] = normal ? nd_rng_normal() : nd_rng_uniform();
    }
    return nd_register(t);
}

nd_tensor *nd_rand(nd_dtype dtype, int ndim, const int64_t *shape) { return random_tensor("nd_rand", dtype, ndim, shape, false); }
nd_tensor *nd_randn(nd_dtype dtype, int ndim, const int64_t *shape) { return random_tensor("nd_randn", dtype, ndim, shape, true); }

#define LIKE(name, expr)                               \
    nd_tensor *name(const nd_tensor *t)                \
    {                                                  \
        if (!t)                                        \
            return nd_fail_null(#name, 0);             \
        return expr;                                   \
    }
LIKE(nd_empty_like, nd_empty(t->dtype, t->ndim, t->shape))
LIKE(nd_zeros_like, nd_zeros(t->dtype, t->ndim, t->shape))
LIKE(nd_ones_like, nd_ones(t->dtype, t->ndim, t->shape))
LIKE(nd_rand_like, random_tensor("nd_rand_like", t->dtype, t->ndim, t->shape, false))
LIKE(nd_randn_like, random_tensor("nd_randn_like", t->dtype, t->ndim, t->shape, true))
#undef LIKE

nd_tensor *nd_full_like(const nd_tensor *t, double value)
{
    if (!t)
        return nd_fail_null("nd_full_like", 0);
    return nd_full(value, t->dtype, t->ndim, t->shape);
}

/* ------------------------------------------------------------------ autograd flags */

nd_status nd_set_requires_grad(nd_tensor *t, bool requires_grad)
{
    if (!t)
        return nd_fail_null("nd_set_requires_grad", 0), nd_last_status();
    if (requires_grad && !nd_dtype_is_float(t->dtype))
        return nd_fail_status(ND_ERR_DTYPE,
                              "nd_set_requires_grad: only tensors of floating point dtype can require "
                              "gradients (got %s)", nd_dtype_name(t->dtype));
    if (t->grad_fn && !requires_grad)
        return nd_fail_status(ND_ERR_GRAD,
                              "nd_set_requires_grad: a non-leaf tensor (made by %s) cannot stop requiring "
                              "grad; use nd_detach", nd_node_name(t->grad_fn));
    t->requires_grad = requires_grad;
    return ND_OK;
}

bool nd_requires_grad(const nd_tensor *t) { return t && t->requires_grad; }
bool nd_is_leaf(const nd_tensor *t) { return t && !t->grad_fn; }
nd_tensor *nd_grad(const nd_tensor *t) { return t ? t->grad : NULL; }

nd_status nd_zero_grad(nd_tensor *t)
{
    if (!t)
        return nd_fail_null("nd_zero_grad", 0), nd_last_status();
    nd_tensor *g = t->grad;
    t->grad = NULL;
    nd_unref(g);
    return ND_OK;
}

nd_status nd_retain_grad(nd_tensor *t)
{
    if (!t)
        return nd_fail_null("nd_retain_grad", 0), nd_last_status();
    if (!t->requires_grad)
        return nd_fail_status(ND_ERR_GRAD, "nd_retain_grad: can't retain_grad on a tensor that has requires_grad=False");
    if (t->grad_fn) {
        t->grad_fn->retained = t;
        t->retains_grad = true;
    }
    return ND_OK;
}

const char *nd_grad_fn_name(const nd_tensor *t)
{
    if (!t || !t->grad_fn)
        return NULL;
    return t->grad_fn->grad_fn_name ? t->grad_fn->grad_fn_name : nd_node_name(t->grad_fn);
}

nd_tensor *nd_detach(nd_tensor *t)
{
    if (!t)
        return nd_fail_null("nd_detach", 0);
    return nd_register(nd_alias(t, t->ndim, t->shape, t->strides, t->offset));
}

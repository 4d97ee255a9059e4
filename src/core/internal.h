/* Internal structures shared by core, autograd and ops. Not part of the public API. */
#ifndef ND_INTERNAL_H
#define ND_INTERNAL_H

#include "ndgrad.h"

#include <stdatomic.h>
#include <stdarg.h>

#define ND_THREAD_LOCAL _Thread_local

typedef struct nd_storage {
    void *data;
    size_t nbytes;
    atomic_int refcount;
    /* Bumped by every in-place write, so backward can refuse to use a modified saved tensor. */
    atomic_uint_fast64_t version;
    bool inline_data; /* data lives in the storage's own block (small tensors; see tensor.c) */
} nd_storage;

typedef struct nd_node nd_node;

struct nd_tensor {
    nd_storage *storage;
    int64_t offset;                 /* in elements */
    int64_t shape[ND_MAX_DIMS];
    int64_t strides[ND_MAX_DIMS];   /* in elements */
    int ndim;
    nd_dtype dtype;
    atomic_int refcount;
    /* References the user owns (nd_keep, or made outside any scope); only those may be released. */
    atomic_int user_refs;
    bool requires_grad;
    bool retains_grad;
    /* A 0-dim tensor made from a C double by a *_scalar op: promotes like a Python number. */
    bool wrapped_number;
    nd_node *grad_fn;               /* owned reference; NULL for leaves */
    nd_tensor *grad;                /* owned reference */
    nd_tensor *pending_grad;        /* backward scratch: gradient collected before the commit */
    nd_tensor *dead_next;           /* link in the free worklist */
};

/* ---- errors ---- */
/* Records an error (printf-style message) and returns NULL, for `return nd_fail(...)`. */
void *nd_fail(nd_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
nd_status nd_fail_status(nd_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* For a NULL input: records "op: input N is NULL" unless an error is already pending. */
void *nd_fail_null(const char *op, int input_index);
/* Writes "[2, 3]" into buf. */
const char *nd_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);
#define ND_SHAPE_BUF 128

/* ---- dtypes ---- */
bool nd_dtype_is_float(nd_dtype d);
bool nd_dtype_valid(int d);
/* PyTorch promotion for two tensors; zero-dim tensors weigh less (see dtype.c). */
nd_dtype nd_promote(const nd_tensor *a, const nd_tensor *b);
/* Promotion of two dimensioned tensors' dtypes (higher category, then wider). */
nd_dtype nd_promote_types(nd_dtype a, nd_dtype b);
/* Element value as double / store a double into an element. */
double nd_load(const void *p, nd_dtype d);
void nd_store(void *p, nd_dtype d, double v);

/* ---- tensors ---- */
/* Allocates a dense tensor (not registered anywhere; refcount 1). Zeroed when `zero`. */
nd_tensor *nd_alloc(nd_dtype dtype, int ndim, const int64_t *shape, bool zero);
/* The same, with errors reported under the public op's name. */
nd_tensor *nd_alloc_named(const char *name, nd_dtype dtype, int ndim, const int64_t *shape, bool zero);
/* A new tensor struct over t's storage with the given geometry (refcount 1, no scope). */
nd_tensor *nd_alias(const nd_tensor *t, int ndim, const int64_t *shape, const int64_t *strides,
                    int64_t offset);
/* Registers a fresh (refcount-1) tensor in the current scope, if any, and returns it. */
nd_tensor *nd_register(nd_tensor *t);
/* Frees one reference (internal owners: nodes, engine). Iterative, so long chains are safe. */
void nd_unref(nd_tensor *t);
/* Takes one internal reference. */
static inline nd_tensor *nd_ref(nd_tensor *t)
{
    if (t)
        atomic_fetch_add(&t->refcount, 1);
    return t;
}
/* A tensor only its one holder (a backward pass) references, dense from its storage's start,
 * outside any graph: writing into it in place changes nothing anyone else can see. */
bool nd_exclusive(const nd_tensor *t);
void nd_node_unref(nd_node *n);
int64_t nd_shape_numel(int ndim, const int64_t *shape);
void nd_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);
/* Normalises a possibly negative dim against ndim (ndim 0 accepts -1 and 0); -1 if out of range. */
int nd_wrap_dim(int dim, int ndim);
/* Broadcast shape of two shapes, or false. */
bool nd_broadcast_shapes(int na, const int64_t *sa, int nb, const int64_t *sb, int *nout,
                         int64_t *out);
void nd_bump_version(nd_tensor *t);
char *nd_elem_ptr(const nd_tensor *t, int64_t linear_index); /* row-major logical index */
bool nd_grad_needed(int n, nd_tensor *const *inputs);     /* grad mode on and an input requires grad */
/* Checks a dims list against ndim: fills mask[ndim]; false (error recorded) on a bad or repeated dim. */
bool nd_dims_mask(const char *op, int ndim, int ndims, const int64_t *dims, bool *mask);

/* ---- memory recycling (alloc.c) ---- */
/* Blocks from the calling thread's size-class free lists (malloc when empty); zeroed if asked.
 * nd_mem_free must be given the same size. */
void *nd_mem_alloc(size_t nbytes, bool zero);
void nd_mem_free(void *p, size_t nbytes);
/* Frees the calling thread's reusable scratch arrays (scopes, backward traversal). */
void nd_scratch_release(void);

/* ---- live counters ---- */
/* Per-thread counts of live objects (counters.c): cheap to update (no locked instruction),
 * summed over threads when read. A count may go negative on a thread that frees objects another
 * made; the sum is what matters. */
/* Hot accessors inlined inside the library (the exported functions stay for users; a name in
 * parentheses, as in (nd_dtype_size)(d), still calls the function). */
static inline size_t nd_dtype_size_inline(nd_dtype d)
{
    return d == ND_FLOAT32 ? 4 : d == ND_BOOL ? 1 : (d == ND_FLOAT64 || d == ND_INT64) ? 8 : 0;
}
static inline void *nd_data_ptr_inline(const nd_tensor *t)
{
    return t ? (char *)t->storage->data + t->offset * (int64_t)nd_dtype_size_inline(t->dtype) : NULL;
}
#define nd_dtype_size(d) nd_dtype_size_inline(d)
#define nd_data_ptr(t) nd_data_ptr_inline(t)

/* Drops one reference; true when it was the last. The sole owner (count 1) cannot race with
 * anyone, since no other holder exists to add or drop a reference, so it skips the locked
 * read-modify-write that dominates a small op's cost. */
static inline bool nd_drop_ref(atomic_int *count)
{
    if (atomic_load_explicit(count, memory_order_acquire) == 1)
        return true;
    return atomic_fetch_sub_explicit(count, 1, memory_order_acq_rel) == 1;
}

enum { ND_COUNT_TENSORS, ND_COUNT_STORAGES, ND_COUNT_NODES };
/* Live-object counters, one set per thread (see counters.c); the first count of a thread
 * registers its set, every later one is a plain relaxed update. */
typedef struct nd_live_counters {
    atomic_llong value[3];
    struct nd_live_counters *next;
    bool registered;
} nd_live_counters;
extern ND_THREAD_LOCAL nd_live_counters nd_counters_mine;
void nd_count_live_register(int which, int delta);
static inline void nd_count_live(int which, int delta)
{
    if (!nd_counters_mine.registered) {
        nd_count_live_register(which, delta);
        return;
    }
    atomic_llong *v = &nd_counters_mine.value[which];
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + delta, memory_order_relaxed);
}

/* ---- rng ---- */
uint64_t nd_rng_next(void);
double nd_rng_uniform(void);    /* [0,1) with 53 bits */
float nd_rng_uniform_f(void);   /* [0,1) with 24 bits */
double nd_rng_normal(void);

#endif

/*
 * ndgrad — N-dimensional tensors with PyTorch's semantics and reverse-mode autograd, in C11.
 *
 * A training loop, complete:
 *
 *     nd_manual_seed(0);
 *     nd_tensor *w = nd_randn(ND_FLOAT32, ND_SHAPE(3, 1));      // owned by us: made outside a scope
 *     nd_set_requires_grad(w, true);
 *     nd_tensor *x = nd_randn(ND_FLOAT32, ND_SHAPE(64, 3));
 *     nd_tensor *y = nd_randn(ND_FLOAT32, ND_SHAPE(64, 1));
 *     for (int step = 0; step < 100; step++) {
 *         nd_scope_begin();                                     // every tensor made below belongs to it
 *         nd_tensor *err  = nd_sub(nd_matmul(x, w), y);
 *         nd_tensor *loss = nd_mean(nd_mul(err, err));
 *         if (!loss || nd_backward(loss) != ND_OK) {             // errors propagate through NULLs
 *             fprintf(stderr, "%s\n", nd_last_error());
 *             nd_scope_end();
 *             break;
 *         }
 *         nd_no_grad_begin();
 *         nd_sub_(w, nd_mul_scalar(nd_grad(w), 0.1));            // w -= 0.1 * w.grad
 *         nd_no_grad_end();
 *         nd_zero_grad(w);
 *         nd_scope_end();                                       // frees the graph and all temporaries
 *     }
 *     nd_release(w); nd_release(x); nd_release(y);
 *
 * Ownership: a tensor returned by an op belongs to the calling thread's innermost open scope and is
 * freed when that scope ends. Outside any scope the caller owns it and calls nd_release. nd_keep
 * gives the caller one more reference of its own (to take a result out of a scope).
 *
 * Errors: an op that cannot run returns NULL (or a status code) and records a thread-local message
 * naming the op and the offending shapes; nd_last_error() reads it. An op given NULL returns NULL
 * and keeps the first error, so one check after a chained expression reports the original cause.
 */
#ifndef NDGRAD_H
#define NDGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ND_MAX_DIMS 8

/* Shape literal: nd_zeros(ND_FLOAT32, ND_SHAPE(2, 3)) expands to a (ndim, shape) argument pair. */
#define ND_SHAPE(...) \
    (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}
/* Dim-list literal for reductions: nd_sum_dims(t, ND_DIMS(0, -1), true). */
#define ND_DIMS(...) ND_SHAPE(__VA_ARGS__)
/* The shape of a 0-dim (scalar) tensor. */
#define ND_SCALAR_SHAPE 0, NULL

typedef enum nd_dtype { ND_FLOAT32, ND_FLOAT64, ND_INT64, ND_BOOL } nd_dtype;

typedef struct nd_tensor nd_tensor;

/* ---------------------------------------------------------------- errors ---------------- */

/* Every status code with its one-line meaning; nd_status_name() returns the text. */
#define ND_STATUS_LIST(X)                                             \
    X(ND_OK, "ok")                                                    \
    X(ND_ERR_NULL, "a required argument is NULL")                     \
    X(ND_ERR_SHAPE, "incompatible shapes")                            \
    X(ND_ERR_DTYPE, "unsupported or mismatched dtype")                \
    X(ND_ERR_DIM, "dimension out of range")                           \
    X(ND_ERR_INDEX, "index out of range")                             \
    X(ND_ERR_VALUE, "invalid argument value")                         \
    X(ND_ERR_GRAD, "autograd error")                                  \
    X(ND_ERR_STATE, "operation not allowed in the current state")     \
    X(ND_ERR_NOMEM, "out of memory")                                  \
    X(ND_ERR_IO, "input/output error")                                \
    X(ND_ERR_FORMAT, "malformed data")

typedef enum nd_status {
#define ND_STATUS_ENUM_(code, text) code,
    ND_STATUS_LIST(ND_STATUS_ENUM_)
#undef ND_STATUS_ENUM_
} nd_status;

/* The calling thread's last error message, or "" when there is none. */
const char *nd_last_error(void);
/* The calling thread's last error code (ND_OK when there is none). */
nd_status nd_last_status(void);
/* Forget the calling thread's last error. */
void nd_clear_error(void);
/* A short description of a status code. */
const char *nd_status_name(nd_status status);
/* Called on every new error of the calling thread (e.g. to stop in a debugger); NULL removes it. */
typedef void (*nd_error_handler)(nd_status status, const char *message, void *user);
void nd_set_error_handler(nd_error_handler handler, void *user);

/* ---------------------------------------------------------------- memory ---------------- */

/* Open a scope on the calling thread: tensors returned by ops from now on belong to it. */
void nd_scope_begin(void);
/* Close the innermost scope, releasing every tensor it owns (ND_ERR_STATE if none is open). */
nd_status nd_scope_end(void);
/* Take one more reference to t for the caller (pair with nd_release); returns t. */
nd_tensor *nd_keep(nd_tensor *t);
/* Drop one caller-owned reference; the tensor is freed when nothing refers to it. NULL is ignored. */
void nd_release(nd_tensor *t);
/* Return the calling thread's recycled memory blocks and kernel scratch buffers to the system
 * (ndgrad keeps them for reuse, so steady-state training allocates nothing; threads return them
 * at exit). */
void nd_release_cached_memory(void);
/* Live object counts of the whole process, for leak tests. */
int64_t nd_live_tensors(void);
int64_t nd_live_storages(void);
int64_t nd_live_nodes(void);

/* ---------------------------------------------------------------- creation -------------- */

/* A new tensor holding a copy of `data` (row-major, elements of `dtype`). */
nd_tensor *nd_from_data(const void *data, nd_dtype dtype, int ndim, const int64_t *shape);
/* Convenience: float32 / float64 / int64 data. */
nd_tensor *nd_from_f32(const float *data, int ndim, const int64_t *shape);
nd_tensor *nd_from_f64(const double *data, int ndim, const int64_t *shape);
nd_tensor *nd_from_i64(const int64_t *data, int ndim, const int64_t *shape);
/* A 0-dim tensor holding `value`. */
nd_tensor *nd_scalar(double value, nd_dtype dtype);
/* Uninitialised / zero / one / constant-filled tensors. */
nd_tensor *nd_empty(nd_dtype dtype, int ndim, const int64_t *shape);
nd_tensor *nd_zeros(nd_dtype dtype, int ndim, const int64_t *shape);
nd_tensor *nd_ones(nd_dtype dtype, int ndim, const int64_t *shape);
nd_tensor *nd_full(double value, nd_dtype dtype, int ndim, const int64_t *shape);
/* Values start, start+step, ... below end (above end for a negative step), as torch.arange. */
nd_tensor *nd_arange(double start, double end, double step, nd_dtype dtype);
/* An n x m identity-like matrix (ones on the main diagonal). */
nd_tensor *nd_eye(int64_t n, int64_t m, nd_dtype dtype);
/* Uniform [0, 1) and standard normal samples from the thread's seeded generator (float dtypes). */
nd_tensor *nd_rand(nd_dtype dtype, int ndim, const int64_t *shape);
nd_tensor *nd_randn(nd_dtype dtype, int ndim, const int64_t *shape);
/* The same as above, with the shape and dtype of t. */
nd_tensor *nd_empty_like(const nd_tensor *t);
nd_tensor *nd_zeros_like(const nd_tensor *t);
nd_tensor *nd_ones_like(const nd_tensor *t);
nd_tensor *nd_full_like(const nd_tensor *t, double value);
nd_tensor *nd_rand_like(const nd_tensor *t);
nd_tensor *nd_randn_like(const nd_tensor *t);
/* Seed the calling thread's generator; one seed gives the same numbers on every machine (after
 * nd_manual_seed(0), nd_rand(ND_FLOAT64, [4]) is 0.60126299941790484, 0.74777409254723981, ...;
 * tests/test_core.c holds the reference values). */
void nd_manual_seed(uint64_t seed);

/* ---------------------------------------------------------------- inspection ------------ */

int nd_ndim(const nd_tensor *t);                  /* number of dims (0 for a scalar; -1 for NULL) */
const int64_t *nd_shape(const nd_tensor *t);      /* ndim sizes (valid while t lives) */
const int64_t *nd_strides(const nd_tensor *t);    /* ndim strides, in elements */
int64_t nd_size(const nd_tensor *t, int dim);     /* size of one dim (negative dims count from the end) */
int64_t nd_offset(const nd_tensor *t);            /* offset into the storage, in elements */
int64_t nd_numel(const nd_tensor *t);             /* number of elements */
nd_dtype nd_dtype_of(const nd_tensor *t);         /* the element type */
size_t nd_dtype_size(nd_dtype dtype);             /* bytes per element */
const char *nd_dtype_name(nd_dtype dtype);        /* "float32", "float64", "int64", "bool" */
bool nd_is_contiguous(const nd_tensor *t);        /* row-major and dense */
bool nd_shares_storage(const nd_tensor *a, const nd_tensor *b); /* views of one storage */
/* Pointer to element [0,...,0]; write through it only with the strides in mind. */
void *nd_data_ptr(const nd_tensor *t);
/* The value of a one-element tensor as a double (NaN and an error otherwise). */
double nd_item(const nd_tensor *t);
/* Read / write one element; idx has ndim entries (negative ones count from the end). */
nd_status nd_get(const nd_tensor *t, const int64_t *idx, double *value);
nd_status nd_set(nd_tensor *t, const int64_t *idx, double value);
/* Copy all elements, row-major, converted to `dtype`, into buf (capacity in bytes). */
nd_status nd_copy_out(const nd_tensor *t, void *buf, size_t capacity, nd_dtype dtype);
/* Copy row-major data of t's dtype into t (any strides); counts as an in-place write. */
nd_status nd_copy_in(nd_tensor *t, const void *data, size_t nbytes);

/* ---------------------------------------------------------------- printing -------------- */

/* PyTorch's repr of t, e.g. "tensor([1., 2.], requires_grad=True)"; free() the result. */
char *nd_to_string(const nd_tensor *t);
/* Print nd_to_string(t) and a newline to stdout / to a stream. */
nd_status nd_print(const nd_tensor *t);
nd_status nd_fprint(FILE *stream, const nd_tensor *t);

/* ---------------------------------------------------------------- autograd -------------- */

/* Mark a leaf as needing gradients (float dtypes only). */
nd_status nd_set_requires_grad(nd_tensor *t, bool requires_grad);
bool nd_requires_grad(const nd_tensor *t);
/* True for tensors not produced by a recorded op (they hold .grad after backward). */
bool nd_is_leaf(const nd_tensor *t);
/* The accumulated gradient (owned by t; valid until t is freed or its grad is zeroed), or NULL. */
nd_tensor *nd_grad(const nd_tensor *t);
/* Drop t's gradient (PyTorch's zero_grad(set_to_none=True)). */
nd_status nd_zero_grad(nd_tensor *t);
/* Keep the gradient of a non-leaf in its .grad during backward. */
nd_status nd_retain_grad(nd_tensor *t);
/* The PyTorch name of the op that made t ("MulBackward0"), or NULL for a leaf. Functions built
 * from other ops (losses, norms, conv, pooling, linear, attention, split) report the last op they
 * are built from. */
const char *nd_grad_fn_name(const nd_tensor *t);
/* Backpropagate from a one-element tensor; leaves' gradients accumulate until zeroed.
 * The graph stays usable: a second call accumulates again (PyTorch's retain_graph=True). */
nd_status nd_backward(nd_tensor *t);
/* Backpropagate with an explicit gradient of t's shape; create_graph records the backward pass
 * so gradients can be differentiated again. */
nd_status nd_backward_with(nd_tensor *t, nd_tensor *grad, bool create_graph);
/* torch.autograd.grad: gradients of outputs (weighted by grad_outputs, NULL entries or array mean
 * ones) with respect to inputs, returned in grads[] (zeros for unreached inputs) without touching
 * any .grad. The results belong to the current scope. */
nd_status nd_autograd_grad(int n_outputs, nd_tensor *const *outputs, nd_tensor *const *grad_outputs,
                           int n_inputs, nd_tensor *const *inputs, nd_tensor **grads,
                           bool create_graph);
/* A tensor sharing t's data, cut from the graph (requires_grad false). */
nd_tensor *nd_detach(nd_tensor *t);

/* Gradient mode is thread-local. Inside a no-grad region ops record nothing. Regions nest. */
void nd_no_grad_begin(void);
void nd_no_grad_end(void);
bool nd_is_grad_enabled(void);
/* Set grad mode for the calling thread; returns the previous setting. */
bool nd_set_grad_enabled(bool enabled);

/* Function checked by nd_gradcheck: builds an output from inputs (any shape). */
typedef nd_tensor *(*nd_function)(nd_tensor *const *inputs, void *user);
/* Compare analytic gradients of fn with central finite differences (step eps) for every float64
 * input that requires grad; ND_OK if |analytic - numeric| <= atol + rtol*|numeric| everywhere,
 * otherwise ND_ERR_GRAD with the first mismatch (input, element, both values) in nd_last_error(). */
nd_status nd_gradcheck(nd_function fn, void *user, int n_inputs, nd_tensor *const *inputs,
                       double eps, double atol, double rtol);

/* Introspection of the recorded ops (the list in src/ops/op_list.h), for coverage checks:
 * the number of ops, op i's name ("ADD") and grad_fn name ("AddBackward0"), and how many times
 * its backward rule has run in this process (NULL / -1 for an index out of range). */
int nd_op_count(void);
const char *nd_op_name(int op);
const char *nd_op_grad_fn_name(int op);
int64_t nd_op_backward_calls(int op);

/* ---------------------------------------------------------------- copies and dtype ------ */

nd_tensor *nd_contiguous(nd_tensor *t);           /* t itself if contiguous, else a dense copy */
nd_tensor *nd_clone(nd_tensor *t);                /* a dense copy (differentiable) */
nd_tensor *nd_to(nd_tensor *t, nd_dtype dtype);   /* converted copy (t itself if same dtype) */

/* ---------------------------------------------------------------- views ----------------- */
/* Views share storage with their input: no data is copied. */

/* New shape with the same elements; one entry may be -1. view needs compatible strides,
 * reshape copies only when it must. */
nd_tensor *nd_view(nd_tensor *t, int ndim, const int64_t *shape);
nd_tensor *nd_reshape(nd_tensor *t, int ndim, const int64_t *shape);
nd_tensor *nd_transpose(nd_tensor *t, int dim0, int dim1);
nd_tensor *nd_t(nd_tensor *t);                    /* transpose of a <= 2-d tensor */
nd_tensor *nd_permute(nd_tensor *t, int ndim, const int64_t *dims);
nd_tensor *nd_squeeze(nd_tensor *t);              /* drop every size-1 dim */
nd_tensor *nd_squeeze_dim(nd_tensor *t, int dim); /* drop dim if its size is 1 */
nd_tensor *nd_unsqueeze(nd_tensor *t, int dim);
/* Broadcast size-1 dims to larger sizes (stride 0); -1 keeps a size; new leading dims allowed. */
nd_tensor *nd_expand(nd_tensor *t, int ndim, const int64_t *shape);
/* Elements start, start+step, ... below end along dim (start/end clamped like Python slices). */
nd_tensor *nd_slice(nd_tensor *t, int dim, int64_t start, int64_t end, int64_t step);
/* Index `index` of dim, removing that dim. */
nd_tensor *nd_select(nd_tensor *t, int dim, int64_t index);
nd_tensor *nd_narrow(nd_tensor *t, int dim, int64_t start, int64_t length);
/* Merge dims start_dim..end_dim into one. */
nd_tensor *nd_flatten(nd_tensor *t, int start_dim, int end_dim);

/* ---------------------------------------------------------------- arithmetic ------------ */
/* Binary ops broadcast like NumPy/PyTorch and promote dtypes like PyTorch. */

nd_tensor *nd_add(nd_tensor *a, nd_tensor *b);
nd_tensor *nd_sub(nd_tensor *a, nd_tensor *b);
nd_tensor *nd_mul(nd_tensor *a, nd_tensor *b);
nd_tensor *nd_div(nd_tensor *a, nd_tensor *b);    /* true division: integers give float32 */
nd_tensor *nd_pow(nd_tensor *a, nd_tensor *b);
nd_tensor *nd_neg(nd_tensor *a);
nd_tensor *nd_add_scalar(nd_tensor *a, double s);
nd_tensor *nd_sub_scalar(nd_tensor *a, double s);
nd_tensor *nd_rsub_scalar(double s, nd_tensor *a); /* s - a */
nd_tensor *nd_mul_scalar(nd_tensor *a, double s);
nd_tensor *nd_div_scalar(nd_tensor *a, double s);
nd_tensor *nd_pow_scalar(nd_tensor *a, double exponent);
nd_tensor *nd_relu(nd_tensor *a);
nd_tensor *nd_exp(nd_tensor *a);
nd_tensor *nd_log(nd_tensor *a);
nd_tensor *nd_tanh(nd_tensor *a);
nd_tensor *nd_sigmoid(nd_tensor *a);
nd_tensor *nd_abs(nd_tensor *a);
nd_tensor *nd_sqrt(nd_tensor *a);
nd_tensor *nd_rsqrt(nd_tensor *a);                /* 1 / sqrt(a) */
nd_tensor *nd_square(nd_tensor *a);
nd_tensor *nd_sin(nd_tensor *a);
nd_tensor *nd_cos(nd_tensor *a);
nd_tensor *nd_log1p(nd_tensor *a);                /* ln(1 + a), accurate near 0 */
nd_tensor *nd_expm1(nd_tensor *a);                /* e^a - 1, accurate near 0 */
nd_tensor *nd_erf(nd_tensor *a);
nd_tensor *nd_sign(nd_tensor *a);                 /* -1, 0, 1; its gradient is zero */
nd_tensor *nd_reciprocal(nd_tensor *a);           /* 1 / a */
/* GELU: exact (a * Phi(a)), or PyTorch's approximate='tanh' form. */
nd_tensor *nd_gelu(nd_tensor *a, bool tanh_approximation);
nd_tensor *nd_silu(nd_tensor *a);                 /* a * sigmoid(a) */
/* log(1 + exp(beta a)) / beta, linear where beta a > threshold (PyTorch: beta 1, threshold 20). */
nd_tensor *nd_softplus(nd_tensor *a, double beta, double threshold);
nd_tensor *nd_leaky_relu(nd_tensor *a, double negative_slope);   /* PyTorch's default slope 0.01 */
nd_tensor *nd_elu(nd_tensor *a, double alpha);                   /* PyTorch's default alpha 1 */
nd_tensor *nd_hardtanh(nd_tensor *a, double min_val, double max_val); /* default -1, 1 */
/* Limit to [min_val, max_val]; pass -INFINITY / INFINITY for a missing bound. */
nd_tensor *nd_clamp(nd_tensor *a, double min_val, double max_val);
/* cond ? a : b elementwise (cond is bool); all three broadcast together. */
nd_tensor *nd_where(nd_tensor *cond, nd_tensor *a, nd_tensor *b);
/* Elementwise max / min (NaN wins; a tie splits the gradient between a and b). */
nd_tensor *nd_maximum(nd_tensor *a, nd_tensor *b);
nd_tensor *nd_minimum(nd_tensor *a, nd_tensor *b);
/* value where mask (bool) is true, t elsewhere; mask broadcasts to t's shape. */
nd_tensor *nd_masked_fill(nd_tensor *t, nd_tensor *mask, double value);
/* Comparisons give bool tensors and carry no gradient. */
nd_tensor *nd_eq(nd_tensor *a, nd_tensor *b);
nd_tensor *nd_ne(nd_tensor *a, nd_tensor *b);
nd_tensor *nd_lt(nd_tensor *a, nd_tensor *b);
nd_tensor *nd_le(nd_tensor *a, nd_tensor *b);
nd_tensor *nd_gt(nd_tensor *a, nd_tensor *b);
nd_tensor *nd_ge(nd_tensor *a, nd_tensor *b);

/* In-place updates (no autograd: allowed on leaves only inside a no-grad region, like PyTorch's
 * torch.no_grad() optimizer steps). b broadcasts to a's shape. Return a status. */
nd_status nd_add_(nd_tensor *a, nd_tensor *b);
nd_status nd_sub_(nd_tensor *a, nd_tensor *b);
nd_status nd_mul_(nd_tensor *a, nd_tensor *b);
nd_status nd_fill_(nd_tensor *a, double value);

/* ---------------------------------------------------------------- reductions ------------ */

nd_tensor *nd_sum(nd_tensor *t);                  /* all elements, 0-dim result */
nd_tensor *nd_mean(nd_tensor *t);
/* Over a list of dims (negative allowed; ndims 0 means all); keepdim keeps them as size 1. */
nd_tensor *nd_sum_dims(nd_tensor *t, int ndims, const int64_t *dims, bool keepdim);
nd_tensor *nd_mean_dims(nd_tensor *t, int ndims, const int64_t *dims, bool keepdim);

/* Max / min of all elements (0-dim); a tie shares the gradient evenly among the tied elements. */
nd_tensor *nd_max(nd_tensor *t);
nd_tensor *nd_min(nd_tensor *t);
/* Max / min along dim: values, and (if indices is not NULL) the int64 index of the first
 * extreme in *indices (a second result, owned like any other). The gradient goes to that index. */
nd_tensor *nd_max_dim(nd_tensor *t, int dim, bool keepdim, nd_tensor **indices);
nd_tensor *nd_min_dim(nd_tensor *t, int dim, bool keepdim, nd_tensor **indices);
/* int64 index of the first max / min: of the flattened tensor, or along dim. */
nd_tensor *nd_argmax(nd_tensor *t);
nd_tensor *nd_argmin(nd_tensor *t);
nd_tensor *nd_argmax_dim(nd_tensor *t, int dim, bool keepdim);
nd_tensor *nd_argmin_dim(nd_tensor *t, int dim, bool keepdim);
/* Product of all elements, or along one dim (gradient correct with zeros present). */
nd_tensor *nd_prod(nd_tensor *t);
nd_tensor *nd_prod_dim(nd_tensor *t, int dim, bool keepdim);
/* Variance / standard deviation over dims (ndims 0: all) divided by N - correction (1: unbiased). */
nd_tensor *nd_var(nd_tensor *t, int ndims, const int64_t *dims, double correction, bool keepdim);
nd_tensor *nd_std(nd_tensor *t, int ndims, const int64_t *dims, double correction, bool keepdim);
/* log(sum(exp(t))) over dims (ndims 0: all), stable for large inputs. */
nd_tensor *nd_logsumexp(nd_tensor *t, int ndims, const int64_t *dims, bool keepdim);
/* p-norm for p = 1 or 2 over dims (ndims 0: all); the gradient at a zero norm is 0. */
nd_tensor *nd_norm(nd_tensor *t, double p, int ndims, const int64_t *dims, bool keepdim);
/* Running sum along dim (integers give int64). */
nd_tensor *nd_cumsum(nd_tensor *t, int dim);

/* ---------------------------------------------------------------- shape and indexing ---- */

/* Join n tensors along an existing dim / a new dim. */
nd_tensor *nd_cat(int n, nd_tensor *const *tensors, int dim);
nd_tensor *nd_stack(int n, nd_tensor *const *tensors, int dim);
/* Views of consecutive pieces along dim, written to outputs[]; return the count (-1 on error). */
int nd_split(nd_tensor *t, int64_t split_size, int dim, int max_outputs, nd_tensor **outputs);
int nd_chunk(nd_tensor *t, int64_t chunks, int dim, int max_outputs, nd_tensor **outputs);
/* Reverse the order along each listed dim (a copy). */
nd_tensor *nd_flip(nd_tensor *t, int ndims, const int64_t *dims);
/* Tile: reps[i] copies along dim i (reps may have more dims than t). */
nd_tensor *nd_repeat(nd_tensor *t, int n, const int64_t *reps);
/* Constant padding: (left, right) pairs from the last dim backwards; negative pads crop. */
nd_tensor *nd_pad(nd_tensor *t, int npads, const int64_t *pads, double value);
/* Lower / upper triangle of the last two dims relative to diagonal k (others set to 0). */
nd_tensor *nd_tril(nd_tensor *t, int64_t k);
nd_tensor *nd_triu(nd_tensor *t, int64_t k);
/* out = t[index[i]] along dim (index int64, 0-d or 1-d). */
nd_tensor *nd_index_select(nd_tensor *t, int dim, nd_tensor *index);
/* t with src's slices added at index[i] along dim (repeated indices accumulate). */
nd_tensor *nd_index_add(nd_tensor *t, int dim, nd_tensor *index, nd_tensor *src);
/* out[..i..] = t[..index[..i..]..] along dim; out has index's shape. */
nd_tensor *nd_gather(nd_tensor *t, int dim, nd_tensor *index);
/* t with src added at index along dim (out of place; repeated indices accumulate). */
nd_tensor *nd_scatter_add(nd_tensor *t, int dim, nd_tensor *index, nd_tensor *src);
/* Rows of weight [num, dim] picked by int64 indices of any shape: indices.shape + [dim]. */
nd_tensor *nd_embedding(nd_tensor *weight, nd_tensor *indices);
/* int64 one-hot encoding [..., num_classes]; num_classes < 0 infers max + 1. */
nd_tensor *nd_one_hot(nd_tensor *indices, int64_t num_classes);

/* Basic indexing, t[i, a:b:s, None, ...] as a list of specs (see ND_I, ND_SLICE, ND_NEWAXIS). */
typedef enum nd_index_kind { ND_INDEX_INT, ND_INDEX_SLICE, ND_INDEX_NEWAXIS } nd_index_kind;
typedef struct nd_index_spec {
    nd_index_kind kind;
    int64_t start, stop, step; /* INT uses start as the index */
} nd_index_spec;
#define ND_I(i) ((nd_index_spec){ND_INDEX_INT, (i), 0, 1})
#define ND_SLICE(start, stop, step) ((nd_index_spec){ND_INDEX_SLICE, (start), (stop), (step)})
#define ND_ALL ((nd_index_spec){ND_INDEX_SLICE, 0, INT64_MAX, 1})
#define ND_NEWAXIS ((nd_index_spec){ND_INDEX_NEWAXIS, 0, 0, 1})
/* A view: integers drop their dim, slices keep it, NEWAXIS inserts a size-1 dim. */
nd_tensor *nd_index(nd_tensor *t, int n, const nd_index_spec *specs);

/* ---------------------------------------------------------------- linear algebra -------- */

/* torch.matmul: 1-d·1-d dot, 2-d mm, 1-d/2-d mixes, batched N-d with broadcast batch dims. */
nd_tensor *nd_matmul(nd_tensor *a, nd_tensor *b);
nd_tensor *nd_mm(nd_tensor *a, nd_tensor *b);     /* [n,k] @ [k,m] only */
nd_tensor *nd_bmm(nd_tensor *a, nd_tensor *b);    /* [b,n,k] @ [b,k,m] only */

/* ---------------------------------------------------------------- threads --------------- */
/* ndgrad's compute threads: one pool for the process, whose workers sleep when idle. The default
 * is NDGRAD_NUM_THREADS, else the number of online CPUs; small ops run on the calling thread.
 * Results do not depend on the thread count. */
nd_status nd_set_num_threads(int n);
int nd_get_num_threads(void);
/* The vector level every CPU kernel of this process runs: "avx512" (x86-64-v4), "avx2"
 * (x86-64-v3) or "generic" (baseline), the best the CPU and OS support, chosen at first use. The
 * environment variable NDGRAD_ISA=avx2|generic caps it (NDGRAD_GEMM is read when it is unset). */
const char *nd_cpu_isa(void);
/* The GEMM micro-kernel this process uses: the level's name as nd_cpu_isa() gives it, or
 * "openblas" in a `make BLAS=openblas` build. */
const char *nd_gemm_kernel(void);

/* ---------------------------------------------------------------- neural networks ------- */

typedef enum nd_reduction { ND_REDUCTION_MEAN, ND_REDUCTION_SUM, ND_REDUCTION_NONE } nd_reduction;

/* Softmax / log-softmax along dim (stable for any input; fused backward rules). */
nd_tensor *nd_softmax(nd_tensor *t, int dim);
nd_tensor *nd_log_softmax(nd_tensor *t, int dim);
/* x @ weightᵀ + bias; weight [out, in], bias [out] or NULL. */
nd_tensor *nd_linear(nd_tensor *x, nd_tensor *weight, nd_tensor *bias);
/* Cross-entropy from logits [N, C, d...] (or [C]) and int64 class targets [N, d...] (or 0-d);
 * weight [C] or NULL; targets equal to ignore_index are skipped (PyTorch's default is -100);
 * label_smoothing in [0, 1]. */
nd_tensor *nd_cross_entropy(nd_tensor *input, nd_tensor *target, nd_tensor *weight, int64_t ignore_index,
                            nd_reduction reduction, double label_smoothing);
/* Negative log-likelihood of log-probabilities, with the same conventions as cross_entropy. */
nd_tensor *nd_nll_loss(nd_tensor *input, nd_tensor *target, nd_tensor *weight, int64_t ignore_index,
                       nd_reduction reduction);
nd_tensor *nd_mse_loss(nd_tensor *input, nd_tensor *target, nd_reduction reduction);
nd_tensor *nd_l1_loss(nd_tensor *input, nd_tensor *target, nd_reduction reduction);
/* Huber-style loss: quadratic below beta, linear above (beta 0 is L1; PyTorch's default is 1). */
nd_tensor *nd_smooth_l1_loss(nd_tensor *input, nd_tensor *target, nd_reduction reduction, double beta);
/* BCE on probabilities in [0, 1] (logs clamped at -100); weight broadcasts or is NULL. */
nd_tensor *nd_binary_cross_entropy(nd_tensor *input, nd_tensor *target, nd_tensor *weight, nd_reduction reduction);
/* BCE on logits, stable for any magnitude; weight and pos_weight (per class) may be NULL. */
nd_tensor *nd_binary_cross_entropy_with_logits(nd_tensor *input, nd_tensor *target, nd_tensor *weight,
                                               nd_tensor *pos_weight, nd_reduction reduction);
/* Zero elements with probability p and scale the rest by 1/(1-p) when training (seeded by
 * nd_manual_seed); the input itself in eval mode. */
nd_tensor *nd_dropout(nd_tensor *t, double p, bool training);
/* Layer norm over the trailing dims equal to normalized_shape (n dims); weight/bias NULL or of
 * that shape. */
nd_tensor *nd_layer_norm(nd_tensor *x, int n, const int64_t *normalized_shape, nd_tensor *weight, nd_tensor *bias,
                         double eps);
/* RMS norm: x / sqrt(mean(x²) + eps) * weight over the trailing dims. */
nd_tensor *nd_rms_norm(nd_tensor *x, int n, const int64_t *normalized_shape, nd_tensor *weight, double eps);
/* Batch norm over [N, C, ...]: training uses batch statistics and updates running_mean/var in
 * place (momentum, unbiased variance); eval uses them. Any of the four tensors may be NULL
 * (the running pair only together, and only when training). */
nd_tensor *nd_batch_norm(nd_tensor *x, nd_tensor *running_mean, nd_tensor *running_var, nd_tensor *weight,
                         nd_tensor *bias, bool training, double momentum, double eps);
/* Group norm over [N, C, ...] with C divisible by num_groups; weight/bias [C] or NULL. */
nd_tensor *nd_group_norm(nd_tensor *x, int64_t num_groups, nd_tensor *weight, nd_tensor *bias, double eps);
/* 2-d convolution, NCHW: x [N, C, H, W], w [O, C/groups, kh, kw], bias [O] or NULL;
 * stride, padding, dilation are {height, width} pairs. */
nd_tensor *nd_conv2d(nd_tensor *x, nd_tensor *w, nd_tensor *bias, const int64_t stride[2], const int64_t padding[2],
                     const int64_t dilation[2], int64_t groups);
/* 1-d convolution: x [N, C, L], w [O, C/groups, k]. */
nd_tensor *nd_conv1d(nd_tensor *x, nd_tensor *w, nd_tensor *bias, int64_t stride, int64_t padding, int64_t dilation,
                     int64_t groups);
/* Max pooling (stride NULL or 0 means the kernel size); *indices (if not NULL) receives the int64
 * flat position of each window's first maximum (its last NaN, if any, as PyTorch) in its plane. */
nd_tensor *nd_max_pool2d(nd_tensor *x, const int64_t kernel[2], const int64_t stride[2], const int64_t padding[2],
                         nd_tensor **indices);
/* Average pooling with padding counted as zeros (PyTorch's count_include_pad=True). */
nd_tensor *nd_avg_pool2d(nd_tensor *x, const int64_t kernel[2], const int64_t stride[2], const int64_t padding[2]);
/* Adaptive average pooling of [N, C, H, W] to [N, C, out_h, out_w]. */
nd_tensor *nd_adaptive_avg_pool2d(nd_tensor *x, int64_t out_h, int64_t out_w);
/* softmax(q kᵀ · scale + mask) v; attn_mask NULL, bool (true = may attend) or float (added);
 * is_causal masks future positions; scale <= 0 means 1/sqrt(E). */
nd_tensor *nd_scaled_dot_product_attention(nd_tensor *q, nd_tensor *k, nd_tensor *v, nd_tensor *attn_mask,
                                           double dropout_p, bool is_causal, double scale);
/* sqrt of the sum of squares of every element of n tensors (NULL entries skipped), into *norm. */
nd_status nd_global_norm(int n, nd_tensor *const *tensors, double *norm);
/* Scale the gradients of n parameters in place so their global norm is at most max_norm
 * (PyTorch's clip_grad_norm_); *total_norm (if not NULL) receives the norm before clipping. */
nd_status nd_clip_grad_norm(int n, nd_tensor *const *params, double max_norm, double *total_norm);

/* ---------------------------------------------------------------- parameter lists ------- */
/* A named list of tensors ("fc1.weight" -> tensor), holding one reference to each. */
typedef struct nd_param_list nd_param_list;

nd_param_list *nd_params_new(void);
void nd_params_free(nd_param_list *list);                         /* drops the references */
/* Append (name, t); names must be unique. The list takes its own reference. */
nd_status nd_params_add(nd_param_list *list, const char *name, nd_tensor *t);
int nd_params_count(const nd_param_list *list);
const char *nd_params_name(const nd_param_list *list, int i);
nd_tensor *nd_params_get(const nd_param_list *list, int i);       /* borrowed */
nd_tensor *nd_params_find(const nd_param_list *list, const char *name); /* borrowed, or NULL */
nd_tensor *const *nd_params_tensors(const nd_param_list *list);   /* the tensors as an array */
int64_t nd_params_numel(const nd_param_list *list);              /* total elements */
nd_status nd_params_zero_grad(nd_param_list *list);               /* nd_zero_grad on each */

/* ---------------------------------------------------------------- initialisers ---------- */
/* In-place fills from the calling thread's generator (like torch.nn.init; no autograd). */
nd_status nd_init_uniform(nd_tensor *t, double lo, double hi);
nd_status nd_init_normal(nd_tensor *t, double mean, double std);
nd_status nd_init_xavier_uniform(nd_tensor *t, double gain);
nd_status nd_init_xavier_normal(nd_tensor *t, double gain);
/* He init for a leaky-ReLU slope a (0 for ReLU), by fan_in (default) or fan_out. */
nd_status nd_init_kaiming_uniform(nd_tensor *t, double a, bool fan_out_mode);
nd_status nd_init_kaiming_normal(nd_tensor *t, double a, bool fan_out_mode);

/* ---------------------------------------------------------------- modules --------------- */
/* Layers that own their parameters, initialised as PyTorch's defaults (Linear and Conv2d:
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias; Embedding: N(0, 1); norms: 1 and 0).
 * A container runs its children in order and names their parameters "child.weight". */
typedef struct nd_module nd_module;

nd_module *nd_linear_module(int64_t in_features, int64_t out_features, bool bias, nd_dtype dtype);
/* Square kernel; stride, padding and groups as in nn.Conv2d. */
nd_module *nd_conv2d_module(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
                            int64_t padding, int64_t groups, bool bias, nd_dtype dtype);
nd_module *nd_embedding_module(int64_t num_embeddings, int64_t dim, nd_dtype dtype);
nd_module *nd_layer_norm_module(int64_t dim, double eps, bool affine, nd_dtype dtype);
/* BatchNorm2d with running statistics (buffers running_mean, running_var, num_batches_tracked). */
nd_module *nd_batch_norm2d_module(int64_t channels, double eps, double momentum, nd_dtype dtype);
nd_module *nd_dropout_module(double p);
nd_module *nd_relu_module(void);
nd_module *nd_gelu_module(bool tanh_approximation);
nd_module *nd_tanh_module(void);
nd_module *nd_flatten_module(int start_dim, int end_dim);
nd_module *nd_max_pool2d_module(int64_t kernel, int64_t stride);  /* stride 0: the kernel size */
/* An empty container; nd_module_add appends a child it then owns (name NULL: "0", "1", ...). */
nd_module *nd_sequential_module(void);
nd_status nd_module_add(nd_module *container, const char *name, nd_module *child);
nd_module *nd_module_child(const nd_module *m, const char *name);  /* borrowed, or NULL */
nd_tensor *nd_module_weight(const nd_module *m);                   /* borrowed, or NULL */
nd_tensor *nd_module_bias(const nd_module *m);
/* Run the module (a container runs its children in order). */
nd_tensor *nd_forward(nd_module *m, nd_tensor *x);
/* Training or evaluation mode (dropout, batch norm), applied to all children. */
nd_status nd_module_train(nd_module *m, bool training);
bool nd_module_is_training(const nd_module *m);
/* Append the trainable parameters (state: also the buffers) with dotted names under prefix. */
nd_status nd_module_parameters(const nd_module *m, const char *prefix, nd_param_list *out);
nd_status nd_module_state(const nd_module *m, const char *prefix, nd_param_list *out);
nd_status nd_module_zero_grad(nd_module *m);
void nd_module_free(nd_module *m);                                  /* frees children too */

/* ---------------------------------------------------------------- optimizers ------------ */
/* torch.optim's update rules; parameters without a gradient are skipped, as in PyTorch. */
typedef struct nd_optimizer nd_optimizer;

nd_optimizer *nd_sgd_new(int n, nd_tensor *const *params, double lr, double momentum, double dampening,
                         double weight_decay, bool nesterov);
nd_optimizer *nd_adam_new(int n, nd_tensor *const *params, double lr, double beta1, double beta2, double eps,
                          double weight_decay);
/* Adam with decoupled weight decay (p *= 1 - lr * weight_decay before the Adam step). */
nd_optimizer *nd_adamw_new(int n, nd_tensor *const *params, double lr, double beta1, double beta2, double eps,
                           double weight_decay);
nd_optimizer *nd_rmsprop_new(int n, nd_tensor *const *params, double lr, double alpha, double eps, double weight_decay,
                             double momentum, bool centered);
nd_status nd_optimizer_step(nd_optimizer *o);
nd_status nd_optimizer_zero_grad(nd_optimizer *o);
double nd_optimizer_lr(const nd_optimizer *o);
nd_status nd_optimizer_set_lr(nd_optimizer *o, double lr);
/* Append the optimizer's state tensors (moments, step counts) under prefix, for checkpoints. */
nd_status nd_optimizer_state(const nd_optimizer *o, const char *prefix, nd_param_list *out);
void nd_optimizer_free(nd_optimizer *o);

/* Learning-rate schedules, as functions of the step (0-based): StepLR, CosineAnnealingLR, and
 * a linear warmup over warmup_steps followed by cosine decay to min_lr at total_steps. */
double nd_lr_step(double base_lr, int64_t step, int64_t step_size, double gamma);
double nd_lr_cosine(double base_lr, int64_t step, int64_t total_steps, double min_lr);
double nd_lr_warmup_cosine(double base_lr, int64_t step, int64_t warmup_steps, int64_t total_steps, double min_lr);

/* ---------------------------------------------------------------- files and data -------- */

/* Load every tensor of a safetensors file into a new list (F32, F64, I64, BOOL as they are;
 * F16 and BF16 as float32; I32/I16/I8/U8 as int64). NULL with the reason on a malformed file. */
nd_param_list *nd_safetensors_load(const char *path);
/* Save a list of named tensors (float32, float64, int64, bool). The file is written under a
 * temporary name and renamed into place: a failed save leaves any previous file intact. */
nd_status nd_safetensors_save(const char *path, const nd_param_list *tensors);
/* Copy the tensors of a file into the list's tensors by name (shapes must match; floats convert).
 * strict: every name on both sides must be present. Nothing is changed unless all checks pass. */
nd_status nd_safetensors_load_into(const char *path, nd_param_list *params, bool strict);
/* Load an IDX file (MNIST format), gzipped or raw, converting its elements to dtype. */
nd_tensor *nd_idx_load(const char *path, nd_dtype dtype);
/* (t - mean) / std. */
nd_tensor *nd_normalize(nd_tensor *t, double mean, double std);

/* Mini-batches over the first dim of inputs (and targets, which may be NULL), in a seeded
 * shuffled order that is the same on every machine; each epoch reshuffles. */
typedef struct nd_loader nd_loader;
nd_loader *nd_loader_new(nd_tensor *inputs, nd_tensor *targets, int64_t batch_size, bool shuffle, uint64_t seed,
                         bool drop_last);
/* The next batch (tensors owned like any op result); false at the end of the epoch. */
bool nd_loader_next(nd_loader *loader, nd_tensor **inputs, nd_tensor **targets);
void nd_loader_reset(nd_loader *loader);           /* start the next epoch (reshuffled) */
int64_t nd_loader_batches(const nd_loader *loader); /* batches per epoch */
void nd_loader_free(nd_loader *loader);

#ifdef __cplusplus
}
#endif
#endif /* NDGRAD_H */

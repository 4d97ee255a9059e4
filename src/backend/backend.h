/* The kernel table. Kernels see raw pointers, shapes and strides only: no graph, no scopes, no
 * reference counts. Ops reach them through nd_backend(), so another backend (CUDA) can be added
 * without touching ops or autograd. */
#ifndef ND_BACKEND_H
#define ND_BACKEND_H

#include "ndgrad.h"

/* A strided walk over up to four operands of one shape: operand 0 is the output. Strides are in
 * bytes; a broadcast dim has stride 0. Built by nd_iter_init, which merges dims that can be. */
typedef struct nd_iter {
    int ndim;
    int nops;
    int64_t shape[ND_MAX_DIMS];
    char *ptr[4];
    int64_t strides[4][ND_MAX_DIMS];
} nd_iter;

/* Operands: (data pointer at element 0, element strides, element size) of each operand. */
void nd_iter_init(nd_iter *it, int ndim, const int64_t *shape, int nops, char *const *ptrs,
                  const int64_t *const *elem_strides, const size_t *elem_sizes);

/* GELU_GRAD / GELU_TANH_GRAD: out = b * gelu'(a), the fused backward of GELU; RELU_GRAD: out =
 * (a <= 0 ? 0 : b), the fused backward of ReLU (float only). */
#define ND_BINOP_LIST(X) X(ADD) X(SUB) X(MUL) X(DIV) X(POW) X(MAXIMUM) X(MINIMUM) X(GELU_GRAD) \
    X(GELU_TANH_GRAD) X(RELU_GRAD) X(EQ) X(NE) X(LT) X(LE) X(GT) X(GE)
typedef enum nd_binop {
#define ND_BINOP_ENUM_(e) ND_BIN_##e,
    ND_BINOP_LIST(ND_BINOP_ENUM_)
#undef ND_BINOP_ENUM_
    ND_BIN_COUNT_
} nd_binop;

#define ND_UNOP_LIST(X) X(NEG) X(RELU) X(EXP) X(LOG) X(TANH) X(SIGMOID) X(ABS) X(SQRT) X(RSQRT) \
    X(SQUARE) X(SIN) X(COS) X(LOG1P) X(EXPM1) X(ERF) X(SIGN) X(RECIPROCAL) X(GELU) X(GELU_TANH) X(SILU) \
    X(SOFTPLUS) X(LEAKY_RELU) X(ELU) X(HARDTANH) X(CLAMP)
typedef enum nd_unop {
#define ND_UNOP_ENUM_(e) ND_UN_##e,
    ND_UNOP_LIST(ND_UNOP_ENUM_)
#undef ND_UNOP_ENUM_
    ND_UN_COUNT_
} nd_unop;

/* Unary ops defined for int64 as well as floats (the rest promote integers to float32). */
static inline bool nd_unop_keeps_integers(nd_unop op)
{
    return op == ND_UN_NEG || op == ND_UN_RELU || op == ND_UN_ABS || op == ND_UN_SQUARE || op == ND_UN_SIGN ||
           op == ND_UN_CLAMP;
}

static inline bool nd_binop_is_comparison(nd_binop op) { return op >= ND_BIN_EQ; }

/* Ops applied along one row of n elements per iteration position. */
#define ND_ROWOP_LIST(X) X(MAX) X(MIN) X(PROD) X(CUMSUM) X(SOFTMAX) X(LOG_SOFTMAX) X(LOGSUMEXP) X(PROD_OTHERS)
typedef enum nd_rowop {
#define ND_ROWOP_ENUM_(e) ND_ROW_##e,
    ND_ROWOP_LIST(ND_ROWOP_ENUM_)
#undef ND_ROWOP_ENUM_
    ND_ROW_COUNT_
} nd_rowop;

/* Sizes of a 2-d convolution or pooling window sweep. */
typedef struct nd_conv_geometry {
    int64_t n, c, h, w;          /* input: batch, channels, height, width */
    int64_t kh, kw, sh, sw, ph, pw, dh, dw; /* kernel, stride, padding, dilation */
    int64_t oh, ow;              /* output height and width */
} nd_conv_geometry;

/* Sizes and element strides of a batched attention: q [batch..., L, E], k [batch..., S, E],
 * v [batch..., S, Ev]; strides list the batch dims, then row and column (batch strides may be 0,
 * for broadcasting). The results and the output gradient have strides of their own over the full
 * batch shape (out [batch..., L, Ev], dout likewise, dq, dk, dv like q, k, v): batch dims, then
 * row; their columns are adjacent (dout's may not be: its column stride follows). The log-sum-exp
 * is dense [batch..., L]. */
typedef struct nd_attention_geometry {
    int nbatch;
    int64_t batch[ND_MAX_DIMS];
    int64_t q_strides[ND_MAX_DIMS], k_strides[ND_MAX_DIMS], v_strides[ND_MAX_DIMS];
    int64_t out_strides[ND_MAX_DIMS], dout_strides[ND_MAX_DIMS];
    int64_t dq_strides[ND_MAX_DIMS], dk_strides[ND_MAX_DIMS], dv_strides[ND_MAX_DIMS];
    int64_t L, S, E, Ev;
    double scale;
    bool causal; /* query i sees keys 0..i */
} nd_attention_geometry;

typedef struct nd_backend {
    const char *name;
    /* out = a op b; a and b of dtype `dtype`; out of dtype `dtype` (bool for comparisons). */
    void (*binary)(nd_binop op, nd_dtype dtype, const nd_iter *it);
    /* out = op(a), same dtype; params: softplus (beta, threshold), leaky_relu (slope), elu (alpha),
     * hardtanh and clamp (min, max). */
    void (*unary)(nd_unop op, nd_dtype dtype, const double *params, const nd_iter *it);
    /* out (dtype `to`) = a (dtype `from`), elementwise conversion / copy. */
    void (*cast)(nd_dtype to, nd_dtype from, const nd_iter *it);
    /* out = cond ? a : b; operands (out, cond [bool], a, b), a and b of dtype. */
    void (*where)(nd_dtype dtype, const nd_iter *it);
    /* acc += a, where operand 0 (acc) has stride 0 along reduced dims. acc is float64 for float
     * inputs and int64 for int64/bool inputs, so long float32 sums keep their precision. */
    void (*accumulate)(nd_dtype in_dtype, const nd_iter *it);
    /* For every position of it (operands: out, aux, in), reduce or scan the row of n elements
     * that starts at in and steps in_row_stride bytes. MAX/MIN/PROD/LOGSUMEXP write one element to
     * out (MAX/MIN also the int64 index of the first extreme, NaN counting as extreme, to aux);
     * CUMSUM/SOFTMAX/LOG_SOFTMAX/PROD_OTHERS write n elements to out, stepping out_row_stride bytes
     * (PROD_OTHERS: the product of every other element of the row, as prefix × suffix). */
    void (*rows)(nd_rowop op, nd_dtype dtype, const nd_iter *it, int64_t n, int64_t in_row_stride,
                 int64_t out_row_stride);
    /* For every position of it (operands: out, index [int64], in): out = in[index * dim_stride],
     * where in points at element 0 of the indexed dim. Indices are already validated. */
    void (*gather)(nd_dtype dtype, const nd_iter *it, int64_t dim_stride);
    /* For every position of it (operands: out, index [int64], src): out[index * dim_stride] += src,
     * in iteration order (deterministic). */
    void (*scatter_add)(nd_dtype dtype, const nd_iter *it, int64_t dim_stride);
    /* Convolution geometry over dense NCHW data: im2col turns x [N, C, H, W] into columns
     * [C*kh*kw, N*oh*ow] (zeros where the window meets padding); col2im adds the columns back
     * (its transpose). g holds the sizes. */
    void (*im2col)(nd_dtype dtype, const struct nd_conv_geometry *g, const void *x, void *cols);
    void (*col2im)(nd_dtype dtype, const struct nd_conv_geometry *g, const void *cols, void *x);
    /* Max pooling of dense planes: out [planes, oh, ow] and, unless indices is NULL, the int64
     * flat index (h*W + w) of the first maximum in each window (NaN counts as maximal); padding
     * never wins. The backward sends dy to each window's first maximum (last NaN), found again
     * from x, into dense dx (every element written). */
    void (*max_pool2d)(nd_dtype dtype, const struct nd_conv_geometry *g, const void *x, void *out, int64_t *indices);
    void (*max_pool2d_backward)(nd_dtype dtype, const struct nd_conv_geometry *g, const void *x, const void *dy,
                                void *dx);
    /* conv2d with one group over dense NCHW x and dense w [O, C, kh, kw]: y [N, O, oh, ow] =
     * w ⋆ x (+ bias [O]). The backward writes dx, dw and db [O] = Σ dy over N, oh, ow (any may
     * be NULL) from dense dy.
     * False when scratch memory runs out. */
    bool (*conv2d_forward)(nd_dtype dtype, const struct nd_conv_geometry *g, int64_t out_channels, const void *x,
                           const void *w, const void *bias, void *y);
    bool (*conv2d_backward)(nd_dtype dtype, const struct nd_conv_geometry *g, int64_t out_channels, const void *x,
                            const void *w, const void *dy, void *dx, void *dw, void *db);
    /* Layer norm over `rows` rows of d contiguous elements: y = (x - mean) rstd w + b (w, b may be
     * NULL), saving each row's mean and rstd; the backward gives dx, dw, db (any may be NULL). */
    void (*layer_norm_forward)(nd_dtype dtype, int64_t rows, int64_t d, const void *x, const void *w, const void *b,
                               double eps, void *y, void *mean, void *rstd);
    void (*layer_norm_backward)(nd_dtype dtype, int64_t rows, int64_t d, const void *x, const void *w, const void *g,
                                const void *mean, const void *rstd, void *dx, void *dw, void *db);
    /* Over `rows` dense rows of n elements: the softmax (or log_softmax) backward from the output y
     * and its gradient g. */
    void (*softmax_backward)(nd_dtype dtype, bool log_form, int64_t rows, int64_t n, const void *y, const void *g,
                             void *dx);
    /* Cross-entropy of dense logit rows [rows, classes] against int64 class indices: each row's
     * max and log Σ e^(x - max) (lse, [rows, 2]) and loss (0 at ignore_index); the backward writes coef (softmax - one-hot), 0 on
     * ignored rows. */
    void (*cross_entropy_forward)(nd_dtype dtype, int64_t rows, int64_t classes, const void *x, const int64_t *targets,
                                  int64_t ignore_index, void *lse, void *loss);
    void (*cross_entropy_backward)(nd_dtype dtype, int64_t rows, int64_t classes, const void *x,
                                   const int64_t *targets, int64_t ignore_index, const void *lse, double coef, void *dx);
    /* C[b] = A[b] @ B[b] (or C[b] += A[b] @ B[b] when accumulate) for b < batch; A is MxK, B is
     * KxN, C is MxN; element strides per operand as (batch, row, col). C must not overlap A or B. */
    void (*gemm)(nd_dtype dtype, int64_t batch, int64_t m, int64_t n, int64_t k,
                 const void *a, const int64_t a_strides[3], const void *b, const int64_t b_strides[3],
                 void *c, const int64_t c_strides[3], bool accumulate);
    /* C = A @ B + bias (the n values of a dense bias added to every row, as in a linear layer);
     * A, B as for gemm (batch stride unused), C dense with row stride c_row_stride. */
    void (*gemm_bias)(nd_dtype dtype, int64_t m, int64_t n, int64_t k, const void *a, const int64_t a_strides[3],
                      const void *b, const int64_t b_strides[3], void *c, int64_t c_row_stride, const void *bias);
    /* Attention softmax(q kᵀ scale [causal mask]) v: out [batch..., L, Ev] (strides in the
     * geometry) and each row's log-sum-exp, lse dense [batch..., L]. The backward recomputes the
     * probabilities from lse and writes dq, dk, dv over the full batch shape (strides in the
     * geometry). False when scratch memory runs out. */
    bool (*attention_forward)(nd_dtype dtype, const nd_attention_geometry *g, const void *q, const void *k,
                              const void *v, void *out, void *lse);
    bool (*attention_backward)(nd_dtype dtype, const nd_attention_geometry *g, const void *q, const void *k,
                               const void *v, const void *lse, const void *dout, void *dq, void *dk, void *dv);
    /* The name of the GEMM micro-kernel in use. */
    const char *(*gemm_kernel_name)(void);
    /* Frees the calling thread's kernel scratch buffers (they grow again when next needed). */
    void (*release_scratch)(void);
} nd_backend;

/* The backend in use: the CPU backend's table for the vector level chosen at first use
 * (src/backend/cpu/isa.c). */
const nd_backend *nd_backend_get(void);

#endif

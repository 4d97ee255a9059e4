/* The CPU backend's kernels that live outside cpu_elementwise.c, where the backend table is.
 * Every cpu_*.c file is compiled once per vector level (isa.h): the names below are the current
 * level's copies (nd_cpu_gemm is nd_cpu_gemm_avx2 in the AVX2 copy), so the kernels call their
 * own level's helpers without naming it. */
#ifndef ND_CPU_KERNELS_H
#define ND_CPU_KERNELS_H

#include "backend/backend.h"
#include "backend/cpu/isa.h"

#define nd_cpu_backend ND_ISA_NAME(nd_cpu_backend)
#define nd_cpu_gemm ND_ISA_NAME(nd_cpu_gemm)
#define nd_cpu_gemm_kernel_name ND_ISA_NAME(nd_cpu_gemm_kernel_name)
#define nd_cpu_gemm_shaped ND_ISA_NAME(nd_cpu_gemm_shaped)
#define nd_cpu_gemm_bias ND_ISA_NAME(nd_cpu_gemm_bias)
#define nd_cpu_im2col ND_ISA_NAME(nd_cpu_im2col)
#define nd_cpu_col2im ND_ISA_NAME(nd_cpu_col2im)
#define nd_cpu_max_pool2d ND_ISA_NAME(nd_cpu_max_pool2d)
#define nd_cpu_max_pool2d_backward ND_ISA_NAME(nd_cpu_max_pool2d_backward)
#define nd_cpu_layer_norm_forward ND_ISA_NAME(nd_cpu_layer_norm_forward)
#define nd_cpu_layer_norm_backward ND_ISA_NAME(nd_cpu_layer_norm_backward)
#define nd_cpu_attention_forward ND_ISA_NAME(nd_cpu_attention_forward)
#define nd_cpu_attention_backward ND_ISA_NAME(nd_cpu_attention_backward)
#define nd_cpu_conv2d_forward ND_ISA_NAME(nd_cpu_conv2d_forward)
#define nd_cpu_conv2d_backward ND_ISA_NAME(nd_cpu_conv2d_backward)
#define nd_cpu_softmax_backward ND_ISA_NAME(nd_cpu_softmax_backward)
#define nd_cpu_cross_entropy_forward ND_ISA_NAME(nd_cpu_cross_entropy_forward)
#define nd_cpu_cross_entropy_backward ND_ISA_NAME(nd_cpu_cross_entropy_backward)

/* This level's backend table (isa.c picks one of the levels' tables). */
extern const nd_backend nd_cpu_backend;

void nd_cpu_gemm(nd_dtype dtype, int64_t batch, int64_t m, int64_t n, int64_t k, const void *a,
                 const int64_t a_strides[3], const void *b, const int64_t b_strides[3], void *c,
                 const int64_t c_strides[3], bool accumulate);

void nd_cpu_im2col(nd_dtype dtype, const nd_conv_geometry *g, const void *x, void *cols);
void nd_cpu_col2im(nd_dtype dtype, const nd_conv_geometry *g, const void *cols, void *x);
void nd_cpu_max_pool2d(nd_dtype dtype, const nd_conv_geometry *g, const void *x, void *out, int64_t *indices);
void nd_cpu_max_pool2d_backward(nd_dtype dtype, const nd_conv_geometry *g, const void *x, const void *dy, void *dx);

void nd_cpu_layer_norm_forward(nd_dtype dtype, int64_t rows, int64_t d, const void *x, const void *w, const void *b,
                               double eps, void *y, void *mean, void *rstd);
void nd_cpu_layer_norm_backward(nd_dtype dtype, int64_t rows, int64_t d, const void *x, const void *w, const void *g,
                                const void *mean, const void *rstd, void *dx, void *dw, void *db);

/* One row-major-C product with element strides: C (+)= A @ B, A m x k, B k x n, C row stride cr. */
static inline void nd_cpu_gemm_2d(nd_dtype dtype, int64_t m, int64_t n, int64_t k, const void *a, int64_t ar, int64_t ac,
                                  const void *b, int64_t br, int64_t bc, void *c, int64_t cr, bool accumulate)
{
    const int64_t as[3] = {0, ar, ac}, bs[3] = {0, br, bc}, cs[3] = {0, cr, 1};
    nd_cpu_gemm(dtype, 1, m, n, k, a, as, b, bs, c, cs, accumulate);
}

const char *nd_cpu_gemm_kernel_name(void);
void nd_cpu_gemm_bias(nd_dtype dtype, int64_t m, int64_t n, int64_t k, const void *a, const int64_t a_strides[3],
                      const void *b, const int64_t b_strides[3], void *c, int64_t c_row_stride, const void *bias);

/* Products with a causal structure (attention under a top-left aligned mask: row i of the score
 * matrix sees columns 0..i). LOWER_C: only C[i][j] with j <= i is wanted; tiles wholly above the
 * diagonal are skipped (left unwritten). K_FROM_ROW: A[i][p] is zero for p < i (A is a score matrix
 * transposed); K_TO_ROW: A[i][p] is zero for p > i (A is a score matrix). Each tile then runs only
 * the part of K its rows need. The zeros must be in A: whole products give the same result. */
typedef enum nd_gemm_shape { ND_GEMM_DENSE, ND_GEMM_LOWER_C, ND_GEMM_K_FROM_ROW, ND_GEMM_K_TO_ROW } nd_gemm_shape;
/* C = A @ B with a causal shape (C row-major with row stride cr, never accumulated). */
void nd_cpu_gemm_shaped(nd_dtype dtype, int64_t m, int64_t n, int64_t k, const void *a, int64_t ar, int64_t ac,
                        const void *b, int64_t br, int64_t bc, void *c, int64_t cr, nd_gemm_shape shape);
/* Frees the calling thread's kernel scratch: GEMM packing buffers and per-thread slots (one
 * function for every level: threads.c). */
void nd_cpu_release_scratch(void);

bool nd_cpu_attention_forward(nd_dtype dtype, const nd_attention_geometry *g, const void *q, const void *k,
                              const void *v, void *out, void *lse);
bool nd_cpu_attention_backward(nd_dtype dtype, const nd_attention_geometry *g, const void *q, const void *k,
                               const void *v, const void *lse, const void *dout, void *dq, void *dk, void *dv);

bool nd_cpu_conv2d_forward(nd_dtype dtype, const nd_conv_geometry *g, int64_t out_channels, const void *x,
                           const void *w, const void *bias, void *y);
bool nd_cpu_conv2d_backward(nd_dtype dtype, const nd_conv_geometry *g, int64_t out_channels, const void *x,
                            const void *w, const void *dy, void *dx, void *dw, void *db);

void nd_cpu_softmax_backward(nd_dtype dtype, bool log_form, int64_t rows, int64_t n, const void *y, const void *g,
                             void *dx);
void nd_cpu_cross_entropy_forward(nd_dtype dtype, int64_t rows, int64_t classes, const void *x, const int64_t *targets,
                                  int64_t ignore_index, void *lse, void *loss);
void nd_cpu_cross_entropy_backward(nd_dtype dtype, int64_t rows, int64_t classes, const void *x, const int64_t *targets,
                                   int64_t ignore_index, const void *lse, double coef, void *dx);

#endif

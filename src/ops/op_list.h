/* The one list of every recorded op: enum, PyTorch's grad_fn name, backward rule.
 * Enums, names and the backward table are generated from it, so they cannot drift apart.
 * X(ENUM, "GradFnName", backward_function) */
#ifndef ND_OP_LIST_H
#define ND_OP_LIST_H

#define ND_OP_LIST(X)                                       \
    /* elementwise.c */                                     \
    X(ADD, "AddBackward0", nd_bw_add)                       \
    X(SUB, "SubBackward0", nd_bw_sub)                       \
    X(RSUB, "RsubBackward1", nd_bw_sub)                     \
    X(MUL, "MulBackward0", nd_bw_mul)                       \
    X(DIV, "DivBackward0", nd_bw_div)                       \
    X(POW, "PowBackward1", nd_bw_pow)                       \
    X(POW_SCALAR, "PowBackward0", nd_bw_pow_scalar)         \
    X(NEG, "NegBackward0", nd_bw_neg)                       \
    X(RELU, "ReluBackward0", nd_bw_relu)                    \
    X(EXP, "ExpBackward0", nd_bw_exp)                       \
    X(LOG, "LogBackward0", nd_bw_log)                       \
    X(TANH, "TanhBackward0", nd_bw_tanh)                    \
    X(SIGMOID, "SigmoidBackward0", nd_bw_sigmoid)           \
    X(WHERE, "WhereBackward0", nd_bw_where)                 \
    /* unary.c */                                           \
    X(ABS, "AbsBackward0", nd_bw_abs)                       \
    X(SQRT, "SqrtBackward0", nd_bw_sqrt)                    \
    X(RSQRT, "RsqrtBackward0", nd_bw_rsqrt)                 \
    X(SQUARE, "PowBackward0", nd_bw_square)                 \
    X(SIN, "SinBackward0", nd_bw_sin)                       \
    X(COS, "CosBackward0", nd_bw_cos)                       \
    X(LOG1P, "Log1PBackward0", nd_bw_log1p)                 \
    X(EXPM1, "Expm1Backward0", nd_bw_expm1)                 \
    X(ERF, "ErfBackward0", nd_bw_erf)                       \
    X(SIGN, "SignBackward0", nd_bw_sign)                    \
    X(RECIPROCAL, "ReciprocalBackward0", nd_bw_reciprocal)  \
    X(GELU, "GeluBackward0", nd_bw_gelu)                    \
    X(GELU_TANH, "GeluBackward0", nd_bw_gelu_tanh)          \
    X(SILU, "SiluBackward0", nd_bw_silu)                    \
    X(SOFTPLUS, "SoftplusBackward0", nd_bw_softplus)        \
    X(LEAKY_RELU, "LeakyReluBackward0", nd_bw_leaky_relu)   \
    X(ELU, "EluBackward0", nd_bw_elu)                       \
    X(HARDTANH, "HardtanhBackward0", nd_bw_hardtanh)        \
    X(CLAMP, "ClampBackward1", nd_bw_clamp)                 \
    X(MAXIMUM, "MaximumBackward0", nd_bw_maximum)           \
    X(MINIMUM, "MinimumBackward0", nd_bw_maximum)           \
    X(MASKED_FILL, "MaskedFillBackward0", nd_bw_masked_fill) \
    /* reduce.c */                                          \
    X(SUM, "SumBackward0", nd_bw_sum)                       \
    X(SUM_DIMS, "SumBackward1", nd_bw_sum)                  \
    X(MEAN, "MeanBackward0", nd_bw_mean)                    \
    X(MEAN_DIMS, "MeanBackward1", nd_bw_mean)               \
    X(MAX_ALL, "MaxBackward1", nd_bw_extreme_all)           \
    X(MIN_ALL, "MinBackward1", nd_bw_extreme_all)           \
    X(MAX_DIM, "MaxBackward0", nd_bw_extreme_dim)           \
    X(MIN_DIM, "MinBackward0", nd_bw_extreme_dim)           \
    X(PROD, "ProdBackward0", nd_bw_prod)                    \
    X(PROD_DIM, "ProdBackward1", nd_bw_prod)                \
    X(LOGSUMEXP, "LogsumexpBackward0", nd_bw_logsumexp)     \
    X(VAR, "VarBackward0", nd_bw_var)                       \
    X(STD, "StdBackward0", nd_bw_var)                       \
    X(NORM, "NormBackward1", nd_bw_norm)                    \
    X(CUMSUM, "CumsumBackward0", nd_bw_cumsum)              \
    /* index.c */                                           \
    X(GATHER, "GatherBackward0", nd_bw_gather)              \
    X(SCATTER_ADD, "ScatterAddBackward0", nd_bw_scatter_add) \
    X(INDEX_SELECT, "IndexSelectBackward0", nd_bw_index_select) \
    X(INDEX_ADD, "IndexAddBackward0", nd_bw_index_add)      \
    X(EMBEDDING, "EmbeddingBackward0", nd_bw_embedding)     \
    /* shape.c */                                           \
    X(CAT, "CatBackward0", nd_bw_cat)                       \
    X(STACK, "StackBackward0", nd_bw_stack)                 \
    X(REPEAT, "RepeatBackward0", nd_bw_repeat)              \
    X(FLIP, "FlipBackward0", nd_bw_flip)                    \
    X(PAD, "ConstantPadNdBackward0", nd_bw_pad)             \
    X(TRIL, "TrilBackward0", nd_bw_triangle)                \
    X(TRIU, "TriuBackward0", nd_bw_triangle)                \
    /* nn.c */                                              \
    X(SOFTMAX, "SoftmaxBackward0", nd_bw_softmax)           \
    X(LOG_SOFTMAX, "LogSoftmaxBackward0", nd_bw_softmax)    \
    X(LINEAR, "AddmmBackward0", nd_bw_linear)               \
    X(CROSS_ENTROPY, "NllLossBackward0", nd_bw_cross_entropy) \
    X(ATTENTION, "ScaledDotProductFlashAttentionForCpuBackward0", nd_bw_attention) \
    X(BCE, "BinaryCrossEntropyBackward0", nd_bw_bce)        \
    /* norm.c */                                            \
    X(LAYER_NORM, "NativeLayerNormBackward0", nd_bw_layer_norm) \
    /* conv.c */                                            \
    X(IM2COL, "Im2ColBackward0", nd_bw_im2col)              \
    X(COL2IM, "Col2ImBackward0", nd_bw_col2im)              \
    X(CONV2D, "ConvolutionBackward0", nd_bw_conv2d)         \
    X(MAX_POOL2D, "MaxPool2DWithIndicesBackward0", nd_bw_max_pool2d) \
    /* matmul.c */                                          \
    X(MM, "MmBackward0", nd_bw_mm)                          \
    X(BMM, "BmmBackward0", nd_bw_mm)                        \
    X(DOT, "DotBackward0", nd_bw_dot)                       \
    X(MV, "MvBackward0", nd_bw_mv)                          \
    /* view.c */                                            \
    X(VIEW, "ViewBackward0", nd_bw_view)                    \
    X(UNSAFE_VIEW, "UnsafeViewBackward0", nd_bw_view)       \
    X(TRANSPOSE, "TransposeBackward0", nd_bw_transpose)     \
    X(T, "TBackward0", nd_bw_transpose)                     \
    X(PERMUTE, "PermuteBackward0", nd_bw_permute)           \
    X(SQUEEZE, "SqueezeBackward0", nd_bw_view)              \
    X(SQUEEZE_DIM, "SqueezeBackward1", nd_bw_view)          \
    X(UNSQUEEZE, "UnsqueezeBackward0", nd_bw_view)          \
    X(EXPAND, "ExpandBackward0", nd_bw_expand)              \
    X(SLICE, "SliceBackward0", nd_bw_slice)                 \
    X(SELECT, "SelectBackward0", nd_bw_select)              \
    X(SLICE_BACKWARD, "SliceBackwardBackward0", nd_bw_slice_backward) \
    /* copy.c */                                            \
    X(CLONE, "CloneBackward0", nd_bw_clone)                 \
    X(TO_COPY, "ToCopyBackward0", nd_bw_to_copy)

typedef enum nd_op {
#define ND_OP_ENUM_(e, name, bw) ND_OP_##e,
    ND_OP_LIST(ND_OP_ENUM_)
#undef ND_OP_ENUM_
    ND_OP_COUNT_
} nd_op;

struct nd_node;
struct nd_tensor;
/* A backward rule: given the gradient of the node's output, fills grad_inputs[i] for every input
 * that requires grad (others stay NULL), using ndgrad ops so create_graph can differentiate it. */
typedef nd_status (*nd_backward_fn)(struct nd_node *node, struct nd_tensor *grad_output,
                                    struct nd_tensor **grad_inputs);

#define ND_OP_DECLARE_(e, name, bw) \
    nd_status bw(struct nd_node *node, struct nd_tensor *grad_output, struct nd_tensor **grad_inputs);
ND_OP_LIST(ND_OP_DECLARE_)
#undef ND_OP_DECLARE_

typedef struct nd_op_info {
    const char *grad_fn_name;
    nd_backward_fn backward;
} nd_op_info;

extern const nd_op_info nd_op_table[ND_OP_COUNT_];

#endif

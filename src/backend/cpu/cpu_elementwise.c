/* CPU elementwise kernels: binary, unary, cast, fill, sum-accumulate. Each op has a dense inner
 * loop (unit strides, or one operand broadcast) written so the compiler can vectorise it, and a
 * strided fallback. The outer dims are walked by drive(). */
#include "backend/backend.h"

#include <math.h>
#include <string.h>

typedef void (*inner_fn)(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b, int64_t sb);

/* Walks every dim but the last, calling the inner loop once per row of the last dim. */
static void drive(const nd_iter *it, inner_fn fn)
{
    int nd = it->ndim;
    int64_t inner = it->shape[nd - 1];
    if (inner == 0)
        return;
    int64_t idx[ND_MAX_DIMS] = {0};
    char *p[4] = {it->ptr[0], it->nops > 1 ? it->ptr[1] : NULL, it->nops > 2 ? it->ptr[2] : NULL, NULL};
    int64_t s1 = it->nops > 1 ? it->strides[1][nd - 1] : 0;
    int64_t s2 = it->nops > 2 ? it->strides[2][nd - 1] : 0;
    for (;;) {
        fn(inner, p[0], it->strides[0][nd - 1], p[1], s1, p[2], s2);
        int d = nd - 2;
        for (; d >= 0; d--) {
            for (int o = 0; o < it->nops; o++)
                p[o] += it->strides[o][d];
            if (++idx[d] < it->shape[d])
                break;
            for (int o = 0; o < it->nops; o++)
                p[o] -= it->strides[o][d] * it->shape[d];
            idx[d] = 0;
        }
        if (d < 0)
            return;
    }
}

/* ------------------------------------------------------------------ binary */

#define BINARY_KERNEL(NAME, T, OT, EXPR)                                                              \
    static void NAME(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b, int64_t sb) \
    {                                                                                                 \
        OT *O = (OT *)o;                                                                              \
        if (so == (int64_t)sizeof(OT) && sa == (int64_t)sizeof(T) && sb == (int64_t)sizeof(T)) {     \
            const T *A = (const T *)a, *B = (const T *)b;                                             \
            for (int64_t i = 0; i < n; i++) {                                                         \
                T x = A[i], y = B[i];                                                                 \
                O[i] = (OT)(EXPR);                                                                    \
            }                                                                                         \
        } else if (so == (int64_t)sizeof(OT) && sa == (int64_t)sizeof(T) && sb == 0) {               \
            const T *A = (const T *)a;                                                                \
            const T y = *(const T *)b;                                                                \
            for (int64_t i = 0; i < n; i++) {                                                         \
                T x = A[i];                                                                           \
                O[i] = (OT)(EXPR);                                                                    \
            }                                                                                         \
        } else if (so == (int64_t)sizeof(OT) && sa == 0 && sb == (int64_t)sizeof(T)) {               \
            const T x = *(const T *)a;                                                                \
            const T *B = (const T *)b;                                                                \
            for (int64_t i = 0; i < n; i++) {                                                         \
                T y = B[i];                                                                           \
                O[i] = (OT)(EXPR);                                                                    \
            }                                                                                         \
        } else {                                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                         \
                T x = *(const T *)(a + i * sa), y = *(const T *)(b + i * sb);                         \
                *(OT *)(o + i * so) = (OT)(EXPR);                                                     \
            }                                                                                         \
        }                                                                                             \
    }

static inline int64_t ipow(int64_t base, int64_t e)
{
    if (e < 0)
        return base == 1 ? 1 : base == -1 ? ((e & 1) ? -1 : 1) : 0;
    uint64_t r = 1, b = (uint64_t)base; /* unsigned: wraps like PyTorch instead of UB on overflow */
    while (e) {
        if (e & 1)
            r *= b;
        b *= b;
        e >>= 1;
    }
    return (int64_t)r;
}

/* NaN-propagating max/min, as torch.maximum / torch.minimum. */
#define FMAX_(x, y) ((x) != (x) ? (x) : (y) != (y) ? (y) : (x) > (y) ? (x) : (y))
#define FMIN_(x, y) ((x) != (x) ? (x) : (y) != (y) ? (y) : (x) < (y) ? (x) : (y))

#define FLOAT_BINARIES(S, T, POWF)                              \
    BINARY_KERNEL(add_##S, T, T, x + y)                         \
    BINARY_KERNEL(sub_##S, T, T, x - y)                         \
    BINARY_KERNEL(mul_##S, T, T, x * y)                         \
    BINARY_KERNEL(div_##S, T, T, x / y)                         \
    BINARY_KERNEL(pow_##S, T, T, POWF(x, y))                    \
    BINARY_KERNEL(max_##S, T, T, FMAX_(x, y))                   \
    BINARY_KERNEL(min_##S, T, T, FMIN_(x, y))                   \
    BINARY_KERNEL(eq_##S, T, uint8_t, x == y)                   \
    BINARY_KERNEL(ne_##S, T, uint8_t, x != y)                   \
    BINARY_KERNEL(lt_##S, T, uint8_t, x < y)                    \
    BINARY_KERNEL(le_##S, T, uint8_t, x <= y)                   \
    BINARY_KERNEL(gt_##S, T, uint8_t, x > y)                    \
    BINARY_KERNEL(ge_##S, T, uint8_t, x >= y)

FLOAT_BINARIES(f32, float, powf)
FLOAT_BINARIES(f64, double, pow)

/* Integer arithmetic wraps through unsigned math, as PyTorch's does in practice, never UB. */
BINARY_KERNEL(add_i64, int64_t, int64_t, (int64_t)((uint64_t)x + (uint64_t)y))
BINARY_KERNEL(sub_i64, int64_t, int64_t, (int64_t)((uint64_t)x - (uint64_t)y))
BINARY_KERNEL(mul_i64, int64_t, int64_t, (int64_t)((uint64_t)x * (uint64_t)y))
BINARY_KERNEL(pow_i64, int64_t, int64_t, ipow(x, y))
BINARY_KERNEL(max_i64, int64_t, int64_t, x > y ? x : y)
BINARY_KERNEL(min_i64, int64_t, int64_t, x < y ? x : y)
BINARY_KERNEL(eq_i64, int64_t, uint8_t, x == y)
BINARY_KERNEL(ne_i64, int64_t, uint8_t, x != y)
BINARY_KERNEL(lt_i64, int64_t, uint8_t, x < y)
BINARY_KERNEL(le_i64, int64_t, uint8_t, x <= y)
BINARY_KERNEL(gt_i64, int64_t, uint8_t, x > y)
BINARY_KERNEL(ge_i64, int64_t, uint8_t, x >= y)

BINARY_KERNEL(add_b, uint8_t, uint8_t, x | y)
BINARY_KERNEL(mul_b, uint8_t, uint8_t, x & y)
BINARY_KERNEL(max_b, uint8_t, uint8_t, x | y)
BINARY_KERNEL(min_b, uint8_t, uint8_t, x & y)
BINARY_KERNEL(eq_b, uint8_t, uint8_t, x == y)
BINARY_KERNEL(ne_b, uint8_t, uint8_t, x != y)
BINARY_KERNEL(lt_b, uint8_t, uint8_t, x < y)
BINARY_KERNEL(le_b, uint8_t, uint8_t, x <= y)
BINARY_KERNEL(gt_b, uint8_t, uint8_t, x > y)
BINARY_KERNEL(ge_b, uint8_t, uint8_t, x >= y)

/* [op][dtype]; NULL where the ops layer never asks (it promotes or refuses first). */
static const inner_fn binary_table[ND_BIN_COUNT_][4] = {
    [ND_BIN_ADD] = {add_f32, add_f64, add_i64, add_b},
    [ND_BIN_SUB] = {sub_f32, sub_f64, sub_i64, NULL},
    [ND_BIN_MUL] = {mul_f32, mul_f64, mul_i64, mul_b},
    [ND_BIN_DIV] = {div_f32, div_f64, NULL, NULL},
    [ND_BIN_POW] = {pow_f32, pow_f64, pow_i64, NULL},
    [ND_BIN_MAXIMUM] = {max_f32, max_f64, max_i64, max_b},
    [ND_BIN_MINIMUM] = {min_f32, min_f64, min_i64, min_b},
    [ND_BIN_EQ] = {eq_f32, eq_f64, eq_i64, eq_b},
    [ND_BIN_NE] = {ne_f32, ne_f64, ne_i64, ne_b},
    [ND_BIN_LT] = {lt_f32, lt_f64, lt_i64, lt_b},
    [ND_BIN_LE] = {le_f32, le_f64, le_i64, le_b},
    [ND_BIN_GT] = {gt_f32, gt_f64, gt_i64, gt_b},
    [ND_BIN_GE] = {ge_f32, ge_f64, ge_i64, ge_b},
};

static void cpu_binary(nd_binop op, nd_dtype dtype, const nd_iter *it)
{
    inner_fn fn = binary_table[op][dtype];
    if (fn)
        drive(it, fn);
}

/* ------------------------------------------------------------------ unary */

#define UNARY_KERNEL(NAME, T, EXPR)                                                                    \
    static void NAME(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b, int64_t sb) \
    {                                                                                                  \
        (void)b;                                                                                       \
        (void)sb;                                                                                      \
        if (so == (int64_t)sizeof(T) && sa == (int64_t)sizeof(T)) {                                    \
            T *O = (T *)o;                                                                             \
            const T *A = (const T *)a;                                                                 \
            for (int64_t i = 0; i < n; i++) {                                                          \
                T x = A[i];                                                                            \
                O[i] = (EXPR);                                                                         \
            }                                                                                          \
        } else {                                                                                       \
            for (int64_t i = 0; i < n; i++) {                                                          \
                T x = *(const T *)(a + i * sa);                                                        \
                *(T *)(o + i * so) = (EXPR);                                                           \
            }                                                                                          \
        }                                                                                              \
    }

/* sigmoid without overflow: exp of a non-positive number only. */
static inline float sigmoid_f(float x)
{
    if (x >= 0)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}
static inline double sigmoid_d(double x)
{
    if (x >= 0)
        return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

UNARY_KERNEL(neg_f32, float, -x)
UNARY_KERNEL(relu_f32, float, x > 0 ? x : (x != x ? x : 0.0f))
UNARY_KERNEL(exp_f32, float, expf(x))
UNARY_KERNEL(log_f32, float, logf(x))
UNARY_KERNEL(tanh_f32, float, tanhf(x))
UNARY_KERNEL(sigmoid_f32, float, sigmoid_f(x))
UNARY_KERNEL(neg_f64, double, -x)
UNARY_KERNEL(relu_f64, double, x > 0 ? x : (x != x ? x : 0.0))
UNARY_KERNEL(exp_f64, double, exp(x))
UNARY_KERNEL(log_f64, double, log(x))
UNARY_KERNEL(tanh_f64, double, tanh(x))
UNARY_KERNEL(sigmoid_f64, double, sigmoid_d(x))
UNARY_KERNEL(neg_i64, int64_t, (int64_t)(0 - (uint64_t)x))
UNARY_KERNEL(relu_i64, int64_t, x > 0 ? x : 0)

static const inner_fn unary_table[ND_UN_COUNT_][4] = {
    [ND_UN_NEG] = {neg_f32, neg_f64, neg_i64, NULL},
    [ND_UN_RELU] = {relu_f32, relu_f64, relu_i64, NULL},
    [ND_UN_EXP] = {exp_f32, exp_f64, NULL, NULL},
    [ND_UN_LOG] = {log_f32, log_f64, NULL, NULL},
    [ND_UN_TANH] = {tanh_f32, tanh_f64, NULL, NULL},
    [ND_UN_SIGMOID] = {sigmoid_f32, sigmoid_f64, NULL, NULL},
};

static void cpu_unary(nd_unop op, nd_dtype dtype, const nd_iter *it)
{
    inner_fn fn = unary_table[op][dtype];
    if (fn)
        drive(it, fn);
}

/* ------------------------------------------------------------------ cast */

/* Float to int64 without UB: NaN gives 0, out-of-range values saturate. */
static inline int64_t to_i64(double v)
{
    if (v != v)
        return 0;
    if (v >= 9223372036854775807.0)
        return INT64_MAX;
    if (v <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)v;
}

#define CAST_KERNEL(NAME, FT, TT, EXPR)                                                                \
    static void NAME(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b, int64_t sb) \
    {                                                                                                  \
        (void)b;                                                                                       \
        (void)sb;                                                                                      \
        if (so == (int64_t)sizeof(TT) && sa == (int64_t)sizeof(FT)) {                                  \
            TT *O = (TT *)o;                                                                           \
            const FT *A = (const FT *)a;                                                               \
            for (int64_t i = 0; i < n; i++) {                                                          \
                FT x = A[i];                                                                           \
                O[i] = (TT)(EXPR);                                                                     \
            }                                                                                          \
        } else {                                                                                       \
            for (int64_t i = 0; i < n; i++) {                                                          \
                FT x = *(const FT *)(a + i * sa);                                                      \
                *(TT *)(o + i * so) = (TT)(EXPR);                                                      \
            }                                                                                          \
        }                                                                                              \
    }

CAST_KERNEL(f32_f32, float, float, x)
CAST_KERNEL(f32_f64, float, double, x)
CAST_KERNEL(f32_i64, float, int64_t, to_i64(x))
CAST_KERNEL(f32_b, float, uint8_t, x != 0)
CAST_KERNEL(f64_f32, double, float, x)
CAST_KERNEL(f64_f64, double, double, x)
CAST_KERNEL(f64_i64, double, int64_t, to_i64(x))
CAST_KERNEL(f64_b, double, uint8_t, x != 0)
CAST_KERNEL(i64_f32, int64_t, float, x)
CAST_KERNEL(i64_f64, int64_t, double, x)
CAST_KERNEL(i64_i64, int64_t, int64_t, x)
CAST_KERNEL(i64_b, int64_t, uint8_t, x != 0)
CAST_KERNEL(b_f32, uint8_t, float, x != 0)
CAST_KERNEL(b_f64, uint8_t, double, x != 0)
CAST_KERNEL(b_i64, uint8_t, int64_t, x != 0)
CAST_KERNEL(b_b, uint8_t, uint8_t, x != 0)

/* [from][to] */
static const inner_fn cast_table[4][4] = {
    {f32_f32, f32_f64, f32_i64, f32_b},
    {f64_f32, f64_f64, f64_i64, f64_b},
    {i64_f32, i64_f64, i64_i64, i64_b},
    {b_f32, b_f64, b_i64, b_b},
};

static void cpu_cast(nd_dtype to, nd_dtype from, const nd_iter *it) { drive(it, cast_table[from][to]); }

/* ------------------------------------------------------------------ sum */

#define ACC_KERNEL(NAME, T, AT)                                                                        \
    static void NAME(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b, int64_t sb) \
    {                                                                                                  \
        (void)b;                                                                                       \
        (void)sb;                                                                                      \
        if (so == 0) { /* reducing along this row: one running total */                               \
            AT total = *(AT *)o;                                                                       \
            if (sa == (int64_t)sizeof(T)) {                                                            \
                const T *A = (const T *)a;                                                             \
                for (int64_t i = 0; i < n; i++)                                                        \
                    total += (AT)A[i];                                                                 \
            } else {                                                                                   \
                for (int64_t i = 0; i < n; i++)                                                        \
                    total += (AT) * (const T *)(a + i * sa);                                           \
            }                                                                                          \
            *(AT *)o = total;                                                                          \
        } else if (so == (int64_t)sizeof(AT) && sa == (int64_t)sizeof(T)) {                           \
            AT *O = (AT *)o;                                                                           \
            const T *A = (const T *)a;                                                                 \
            for (int64_t i = 0; i < n; i++)                                                            \
                O[i] += (AT)A[i];                                                                      \
        } else {                                                                                       \
            for (int64_t i = 0; i < n; i++)                                                            \
                *(AT *)(o + i * so) += (AT) * (const T *)(a + i * sa);                                 \
        }                                                                                              \
    }

ACC_KERNEL(acc_f32, float, double)
ACC_KERNEL(acc_f64, double, double)
ACC_KERNEL(acc_i64, int64_t, int64_t)
ACC_KERNEL(acc_b, uint8_t, int64_t)

static void cpu_accumulate(nd_dtype in_dtype, const nd_iter *it)
{
    static const inner_fn table[4] = {acc_f32, acc_f64, acc_i64, acc_b};
    drive(it, table[in_dtype]);
}

/* ------------------------------------------------------------------ where */

static void cpu_where(nd_dtype dtype, const nd_iter *it)
{
    size_t es = nd_dtype_size(dtype);
    int nd = it->ndim;
    int64_t idx[ND_MAX_DIMS] = {0};
    char *p[4] = {it->ptr[0], it->ptr[1], it->ptr[2], it->ptr[3]};
    if (it->shape[nd - 1] == 0)
        return;
    for (;;) {
        for (int64_t i = 0; i < it->shape[nd - 1]; i++) {
            const char *src = *(const uint8_t *)(p[1] + i * it->strides[1][nd - 1]) ? p[2] + i * it->strides[2][nd - 1]
                                                                                    : p[3] + i * it->strides[3][nd - 1];
            memcpy(p[0] + i * it->strides[0][nd - 1], src, es);
        }
        int d = nd - 2;
        for (; d >= 0; d--) {
            for (int o = 0; o < 4; o++)
                p[o] += it->strides[o][d];
            if (++idx[d] < it->shape[d])
                break;
            for (int o = 0; o < 4; o++)
                p[o] -= it->strides[o][d] * it->shape[d];
            idx[d] = 0;
        }
        if (d < 0)
            return;
    }
}

void nd_cpu_gemm(nd_dtype dtype, int64_t batch, int64_t m, int64_t n, int64_t k, const void *a,
                 const int64_t a_strides[3], const void *b, const int64_t b_strides[3], void *c,
                 const int64_t c_strides[3]);

const nd_backend nd_cpu_backend = {
    .name = "cpu",
    .binary = cpu_binary,
    .unary = cpu_unary,
    .cast = cpu_cast,
    .where = cpu_where,
    .accumulate = cpu_accumulate,
    .gemm = nd_cpu_gemm,
};

const nd_backend *nd_backend_get(void) { return &nd_cpu_backend; }

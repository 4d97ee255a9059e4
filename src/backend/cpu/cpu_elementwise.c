/* CPU elementwise kernels: binary, unary, cast, fill, sum-accumulate. Each op has a dense inner
 * loop (unit strides, or one operand broadcast) written so the compiler can vectorise it, and a
 * strided fallback. The outer dims are walked by drive(). */
#include "backend/backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/fast_math.h"
#include "backend/cpu/threads.h"

#include <math.h>
#include <string.h>

static inline bool nd_dtype_is_float_(nd_dtype d) { return d == ND_FLOAT32 || d == ND_FLOAT64; }

typedef void (*inner_fn)(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b, int64_t sb);


/* Calls the inner loop on rows [row_begin, row_end) of the iteration (a row is the last dim),
 * or, for a single-row iteration, on its elements [row_begin, row_end). */
static void drive_part(const nd_iter *it, inner_fn fn, int64_t begin, int64_t end)
{
    int nd = it->ndim;
    int64_t inner = it->shape[nd - 1];
    int64_t s[3] = {it->strides[0][nd - 1], it->nops > 1 ? it->strides[1][nd - 1] : 0,
                    it->nops > 2 ? it->strides[2][nd - 1] : 0};
    char *p[3] = {it->ptr[0], it->nops > 1 ? it->ptr[1] : NULL, it->nops > 2 ? it->ptr[2] : NULL};
    if (nd == 1) {
        for (int o = 0; o < it->nops && o < 3; o++)
            p[o] += begin * s[o];
        fn(end - begin, p[0], s[0], p[1], s[1], p[2], s[2]);
        return;
    }
    /* Position of row `begin` in the outer dims. */
    int64_t idx[ND_MAX_DIMS] = {0}, r = begin;
    for (int d = nd - 2; d >= 0; d--) {
        idx[d] = r % it->shape[d];
        r /= it->shape[d];
        for (int o = 0; o < it->nops && o < 3; o++)
            p[o] += idx[d] * it->strides[o][d];
    }
    for (int64_t row = begin; row < end; row++) {
        fn(inner, p[0], s[0], p[1], s[1], p[2], s[2]);
        for (int d = nd - 2; d >= 0; d--) {
            for (int o = 0; o < it->nops && o < 3; o++)
                p[o] += it->strides[o][d];
            if (++idx[d] < it->shape[d])
                break;
            for (int o = 0; o < it->nops && o < 3; o++)
                p[o] -= it->strides[o][d] * it->shape[d];
            idx[d] = 0;
        }
    }
}

typedef struct drive_job {
    const nd_iter *it;
    inner_fn fn;
    int64_t per_item; /* elements per work item */
} drive_job;

static void drive_chunk(void *ctx, int64_t begin, int64_t end, int chunk)
{
    (void)chunk;
    const drive_job *j = ctx;
    drive_part(j->it, j->fn, begin, end);
}

/* Large elementwise work is split into contiguous parts across the thread pool. Every element
 * is computed the same way whichever thread does it, so results never depend on the thread
 * count. Reductions (several elements into one) must not use this. */
enum { PARALLEL_MIN_ELEMENTS = 1 << 15 };

static void drive_elementwise(const nd_iter *it, inner_fn fn)
{
    int nd = it->ndim;
    int64_t inner = it->shape[nd - 1], rows = 1;
    for (int d = 0; d < nd - 1; d++)
        rows *= it->shape[d];
    if (inner == 0 || rows == 0)
        return;
    int64_t total = rows * inner;
    if (total < PARALLEL_MIN_ELEMENTS) {
        drive_part(it, fn, 0, nd == 1 ? inner : rows);
        return;
    }
    drive_job job = {it, fn, nd == 1 ? 1 : inner};
    int64_t items = nd == 1 ? inner : rows;
    int64_t min_items = (PARALLEL_MIN_ELEMENTS / 2 + job.per_item - 1) / job.per_item;
    nd_parallel_for(items, min_items > 0 ? min_items : 1, drive_chunk, &job);
}

/* Walks every dim but the last, calling the inner loop once per row of the last dim. */
static void drive(const nd_iter *it, inner_fn fn)
{
    int nd = it->ndim;
    int64_t rows = 1;
    for (int d = 0; d < nd - 1; d++)
        rows *= it->shape[d];
    if (it->shape[nd - 1] == 0 || rows == 0)
        return;
    drive_part(it, fn, 0, nd == 1 ? it->shape[0] : rows);
}

/* ------------------------------------------------------------------ binary */

#define BINARY_KERNEL(NAME, T, OT, EXPR)                                                              \
    static void NAME(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b, int64_t sb) \
    {                                                                                                 \
        OT *O = (OT *)o;                                                                              \
        if (so == (int64_t)sizeof(OT) && sa == (int64_t)sizeof(T) && sb == (int64_t)sizeof(T) &&      \
            sizeof(OT) == sizeof(T) && (o == b || o == a)) {                                          \
            /* in place (a backward writing over its gradient, an accumulation): read through O    \
             * itself, so the compiler sees one array; its run-time overlap test fails on equal     \
             * pointers and clang then ran the loop scalar (a third of a GPT step) */               \
            const T *A = (const T *)a, *B = (const T *)b, *I = (const T *)O;                         \
            if (o == a && o == b)                                                                     \
                for (int64_t i = 0; i < n; i++) {                                                     \
                    T x = I[i], y = I[i];                                                             \
                    O[i] = (OT)(EXPR);                                                                \
                }                                                                                     \
            else if (o == b)                                                                          \
                for (int64_t i = 0; i < n; i++) {                                                     \
                    T x = A[i], y = I[i];                                                             \
                    O[i] = (OT)(EXPR);                                                                \
                }                                                                                     \
            else                                                                                      \
                for (int64_t i = 0; i < n; i++) {                                                     \
                    T x = I[i], y = B[i];                                                             \
                    O[i] = (OT)(EXPR);                                                                \
                }                                                                                     \
        } else if (so == (int64_t)sizeof(OT) && sa == (int64_t)sizeof(T) && sb == (int64_t)sizeof(T)) { \
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

/* GELU derivatives. Exact: Φ(x) + x φ(x). Tanh form: with t = tanh(k (x + c x³)),
 * 0.5 (1 + t) + 0.5 x (1 - t²) k (1 + 3 c x²). */
static inline double gelu_deriv_d(double x)
{
    return 0.5 * (1.0 + erf(x * 0.70710678118654752)) + x * 0.3989422804014327 * exp(-0.5 * x * x);
}
static inline double gelu_tanh_deriv_d(double x)
{
    const double k = 0.7978845608028654, c = 0.044715;
    double t = tanh(k * (x + c * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * c * x * x);
}
static inline float gelu_tanh_deriv_f(float x);
BINARY_KERNEL(gelu_grad_f32, float, float, (float)gelu_deriv_d(x) * y)
BINARY_KERNEL(gelu_grad_f64, double, double, gelu_deriv_d(x) * y)
BINARY_KERNEL(gelu_tanh_grad_f32, float, float, gelu_tanh_deriv_f(x) * y)
BINARY_KERNEL(gelu_tanh_grad_f64, double, double, gelu_tanh_deriv_d(x) * y)
BINARY_KERNEL(relu_grad_f32, float, float, x <= 0 ? 0.0f : y) /* NaN input passes the gradient, as PyTorch */
BINARY_KERNEL(relu_grad_f64, double, double, x <= 0 ? 0.0 : y)

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
    [ND_BIN_GELU_GRAD] = {gelu_grad_f32, gelu_grad_f64, NULL, NULL},
    [ND_BIN_GELU_TANH_GRAD] = {gelu_tanh_grad_f32, gelu_tanh_grad_f64, NULL, NULL},
    [ND_BIN_RELU_GRAD] = {relu_grad_f32, relu_grad_f64, NULL, NULL},
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
        drive_elementwise(it, fn);
}

/* ------------------------------------------------------------------ unary */

#define UNARY_KERNEL(NAME, T, EXPR)                                                                    \
    static void NAME(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b, int64_t sb) \
    {                                                                                                  \
        const double *P = (const double *)b; /* the op's parameters ride in operand 2 */               \
        (void)P;                                                                                       \
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

/* tanh from fast_expf: an odd series near 0 (where 1 - 2/(e^2x + 1) would cancel), the
 * exponential form elsewhere (it reaches exactly 1 for large |x|); both computed, one selected,
 * so the loop stays vectorised. */
static inline float fast_tanhf(float x)
{
    float a = x < 0 ? -x : x;
    float x2 = a * a;
    float series = a * (1.0f + x2 * (-0.333333333f + x2 * (0.133333333f + x2 * (-0.0539682540f + x2 * 0.0218694885f))));
    /* e^-2a never overflows, so no clamp is needed; a clamp here let gcc thread jumps through
     * fast_expf's selects, which stopped the loop from vectorising. */
    float e = fast_expf(-2.0f * a);
    float expo = (1.0f - e) / (1.0f + e);
    float t = a < 0.25f ? series : expo;
    t = x < 0 ? -t : t;
    return x != x ? x : t;
}

/* GELU with the tanh approximation, as PyTorch's 0.5 x (1 + tanh(u)), u = k (x + c x³), computed
 * in the equal form x σ(2u) = x / (1 + e^-2u): one exponential and one division instead of a
 * tanh, and no cancellation in 1 + tanh(u) where u is negative (relative error 1e-6 against 1e-4
 * before, measured over [-12, 12] against double precision). Its derivative, with s = σ(2u) and
 * 1 - s = e s: s (1 + 2k x (1 + 3c x²) e s). Below x = -10 both are flat zeros to float precision
 * but e^-2u overflows, so they are selected afterwards: a zero of x's sign for the value, zero
 * for the derivative, NaN at -inf as PyTorch's formula gives (x·0, x - x). The selects come after
 * the exponential: a clamp before it let gcc thread jumps through fast_expf's own selects and the
 * loop stayed scalar. */
static inline float gelu_tanh_f(float x)
{
    float u = 0.797884560802865f * (x + 0.044715f * x * x * x);
    float r = x / (1.0f + fast_expf(-2.0f * u));
    return x < -10.0f ? x * 0.0f : r;
}

static inline float gelu_tanh_deriv_f(float x)
{
    const float k = 0.797884560802865f, c = 0.044715f;
    float e = fast_expf(-2.0f * k * (x + c * x * x * x));
    float s = 1.0f / (1.0f + e), es = e * s;
    float r = s * (1.0f + 2.0f * k * x * (1.0f + 3.0f * c * x * x) * es);
    return x < -10.0f ? x - x : r;
}

/* sigmoid without overflow: exp of a non-positive number only. */
static inline float sigmoid_f(float x)
{
    float e = fast_expf(x < 0 ? x : -x); /* e^-|x| never overflows */
    return x >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
}
static inline double sigmoid_d(double x)
{
    if (x >= 0)
        return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* GELU, exact: x * Phi(x); with the tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
#define GELU_(x, ERF) ((x) * 0.5 * (1.0 + ERF((x) * 0.70710678118654752440)))
#define GELU_TANH_(x, TANH) (0.5 * (x) * (1.0 + TANH(0.79788456080286535588 * ((x) + 0.044715 * (x) * (x) * (x)))))
/* softplus: log(1 + e^(beta x)) / beta, and x itself once beta x passes the threshold. */
#define SOFTPLUS_(x, LOG1P, EXP) ((x) * P[0] > P[1] ? (x) : LOG1P(EXP((x) * P[0])) / P[0])
#define SIGN_(x) ((x) > 0 ? 1 : (x) < 0 ? -1 : 0) /* NaN gives 0, as torch.sign */
#define CLAMP_(x, T) ((x) != (x) ? (x) : (x) < (T)P[0] ? (T)P[0] : (x) > (T)P[1] ? (T)P[1] : (x))

#define FLOAT_UNARIES(S, T, EXP, LOG, TANH, SIGMOID, SQRT, FABS, SIN, COS, LOG1P, EXPM1, ERF, GELU_TANH) \
    UNARY_KERNEL(neg_##S, T, -x)                                                                      \
    UNARY_KERNEL(relu_##S, T, x < 0 ? (T)0 : x) /* NaN and -0. pass through, as in PyTorch */         \
    UNARY_KERNEL(exp_##S, T, EXP(x))                                                                  \
    UNARY_KERNEL(log_##S, T, LOG(x))                                                                  \
    UNARY_KERNEL(tanh_##S, T, TANH(x))                                                                \
    UNARY_KERNEL(sigmoid_##S, T, SIGMOID(x))                                                          \
    UNARY_KERNEL(abs_##S, T, FABS(x))                                                                 \
    UNARY_KERNEL(sqrt_##S, T, SQRT(x))                                                                \
    UNARY_KERNEL(rsqrt_##S, T, (T)1 / SQRT(x))                                                        \
    UNARY_KERNEL(square_##S, T, x * x)                                                                \
    UNARY_KERNEL(sin_##S, T, SIN(x))                                                                  \
    UNARY_KERNEL(cos_##S, T, COS(x))                                                                  \
    UNARY_KERNEL(log1p_##S, T, LOG1P(x))                                                              \
    UNARY_KERNEL(expm1_##S, T, EXPM1(x))                                                              \
    UNARY_KERNEL(erf_##S, T, ERF(x))                                                                  \
    UNARY_KERNEL(sign_##S, T, (T)SIGN_(x))                                                            \
    UNARY_KERNEL(reciprocal_##S, T, (T)1 / x)                                                         \
    UNARY_KERNEL(gelu_##S, T, (T)GELU_(x, ERF))                                                       \
    UNARY_KERNEL(gelu_tanh_##S, T, (T)GELU_TANH(x))                                                   \
    UNARY_KERNEL(silu_##S, T, x * SIGMOID(x))                                                         \
    UNARY_KERNEL(softplus_##S, T, (T)SOFTPLUS_(x, LOG1P, EXP))                                        \
    UNARY_KERNEL(leaky_relu_##S, T, x > 0 ? x : (T)(x * P[0]))                                        \
    UNARY_KERNEL(elu_##S, T, x > 0 ? x : (T)(P[0] * EXPM1(x)))                                        \
    UNARY_KERNEL(hardtanh_##S, T, CLAMP_(x, T))                                                       \
    UNARY_KERNEL(clamp_##S, T, CLAMP_(x, T))

#define GELU_TANH_D(x) GELU_TANH_(x, tanh)
FLOAT_UNARIES(f32, float, fast_expf, logf, fast_tanhf, sigmoid_f, sqrtf, fabsf, sinf, cosf, log1pf, expm1f, erff, gelu_tanh_f)
FLOAT_UNARIES(f64, double, exp, log, tanh, sigmoid_d, sqrt, fabs, sin, cos, log1p, expm1, erf, GELU_TANH_D)

/* Integer clamp bounds: +-inf and values past the int64 range saturate. */
static inline int64_t clamp_i64(int64_t x, double lo, double hi)
{
    if (lo > -9.2e18 && (double)x < lo)
        return (int64_t)ceil(lo);
    if (hi < 9.2e18 && (double)x > hi)
        return (int64_t)floor(hi);
    return x;
}

UNARY_KERNEL(neg_i64, int64_t, (int64_t)(0 - (uint64_t)x))
UNARY_KERNEL(relu_i64, int64_t, x > 0 ? x : 0)
UNARY_KERNEL(abs_i64, int64_t, x < 0 ? (int64_t)(0 - (uint64_t)x) : x)
UNARY_KERNEL(square_i64, int64_t, (int64_t)((uint64_t)x * (uint64_t)x))
UNARY_KERNEL(sign_i64, int64_t, (x > 0) - (x < 0))
UNARY_KERNEL(clamp_i64k, int64_t, clamp_i64(x, P[0], P[1]))

#define F_ROW(name) [ND_UN_##name] = {
#define UN_ROW(e, f) [ND_UN_##e] = {f##_f32, f##_f64, NULL, NULL},
static const inner_fn unary_table[ND_UN_COUNT_][4] = {
    [ND_UN_NEG] = {neg_f32, neg_f64, neg_i64, NULL},
    [ND_UN_RELU] = {relu_f32, relu_f64, relu_i64, NULL},
    [ND_UN_ABS] = {abs_f32, abs_f64, abs_i64, NULL},
    [ND_UN_SQUARE] = {square_f32, square_f64, square_i64, NULL},
    [ND_UN_SIGN] = {sign_f32, sign_f64, sign_i64, NULL},
    [ND_UN_CLAMP] = {clamp_f32, clamp_f64, clamp_i64k, NULL},
    UN_ROW(EXP, exp) UN_ROW(LOG, log) UN_ROW(TANH, tanh) UN_ROW(SIGMOID, sigmoid) UN_ROW(SQRT, sqrt)
    UN_ROW(RSQRT, rsqrt) UN_ROW(SIN, sin) UN_ROW(COS, cos) UN_ROW(LOG1P, log1p) UN_ROW(EXPM1, expm1)
    UN_ROW(ERF, erf) UN_ROW(RECIPROCAL, reciprocal) UN_ROW(GELU, gelu) UN_ROW(GELU_TANH, gelu_tanh)
    UN_ROW(SILU, silu) UN_ROW(SOFTPLUS, softplus) UN_ROW(LEAKY_RELU, leaky_relu) UN_ROW(ELU, elu)
    UN_ROW(HARDTANH, hardtanh)
};
#undef UN_ROW
#undef F_ROW

static void cpu_unary(nd_unop op, nd_dtype dtype, const double *params, const nd_iter *it)
{
    inner_fn fn = unary_table[op][dtype];
    if (!fn)
        return;
    static const double no_params[2] = {0, 0};
    nd_iter with_params = *it;
    with_params.nops = 3;
    with_params.ptr[2] = (char *)(params ? params : no_params);
    for (int d = 0; d < it->ndim; d++)
        with_params.strides[2][d] = 0;
    drive_elementwise(&with_params, fn);
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

static void cpu_cast(nd_dtype to, nd_dtype from, const nd_iter *it) { drive_elementwise(it, cast_table[from][to]); }

/* ------------------------------------------------------------------ sum */

#define ACC_KERNEL(NAME, T, AT)                                                                        \
    static void NAME(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b, int64_t sb) \
    {                                                                                                  \
        (void)b;                                                                                       \
        (void)sb;                                                                                      \
        if (so == 0) { /* reducing along this row: one running total */                               \
            AT total = *(AT *)o;                                                                       \
            if (sa == (int64_t)sizeof(T)) {                                                            \
                /* eight partial sums the compiler vectorises (one running sum waits on each add),   \
                 * added in a fixed order: the result never depends on the thread count */          \
                const T *A = (const T *)a;                                                             \
                AT part[8] = {0};                                                                      \
                int64_t i = 0;                                                                         \
                for (; i + 8 <= n; i += 8)                                                             \
                    for (int l = 0; l < 8; l++)                                                        \
                        part[l] += (AT)A[i + l];                                                       \
                total += ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7])); \
                for (; i < n; i++)                                                                     \
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

/* ------------------------------------------------------------------ per-position drivers */

/* Calls fn once per position of it with the operand pointers of that position. */
typedef void (*point_fn)(char *const *p, void *ctx);

static void drive_points(const nd_iter *it, point_fn fn, void *ctx)
{
    int nd = it->ndim;
    for (int d = 0; d < nd; d++)
        if (it->shape[d] == 0)
            return;
    int64_t idx[ND_MAX_DIMS] = {0};
    char *p[4] = {it->ptr[0], it->ptr[1], it->ptr[2], it->ptr[3]};
    for (;;) {
        fn(p, ctx);
        int d = nd - 1;
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

typedef struct row_ctx {
    nd_rowop op;
    nd_dtype dtype;
    int64_t n, in_stride, out_stride;
} row_ctx;

/* Rows are processed in double precision (float32 inputs) or native double. */
#define LOADV(p, i) (c->dtype == ND_FLOAT32 ? (double)*(const float *)((p) + (i)*c->in_stride) \
                                            : *(const double *)((p) + (i)*c->in_stride))
static void store_out(const row_ctx *c, char *p, int64_t i, double v)
{
    if (c->dtype == ND_FLOAT32)
        *(float *)(p + i * c->out_stride) = (float)v;
    else
        *(double *)(p + i * c->out_stride) = v;
}

static void row_float(char *const *p, void *vctx)
{
    const row_ctx *c = vctx;
    const char *in = p[2];
    int64_t n = c->n;
    switch (c->op) {
    case ND_ROW_MAX:
    case ND_ROW_MIN: {
        double best = LOADV(in, 0);
        int64_t at = 0;
        for (int64_t i = 1; i < n && best == best; i++) {
            double v = LOADV(in, i);
            if (v != v || (c->op == ND_ROW_MAX ? v > best : v < best))
                best = v, at = i;
        }
        store_out(c, p[0], 0, best);
        if (p[1])
            *(int64_t *)p[1] = at;
        break;
    }
    case ND_ROW_PROD: {
        double acc = 1;
        for (int64_t i = 0; i < n; i++)
            acc *= LOADV(in, i);
        store_out(c, p[0], 0, acc);
        break;
    }
    case ND_ROW_CUMSUM: {
        double acc = 0;
        for (int64_t i = 0; i < n; i++) {
            acc += LOADV(in, i);
            store_out(c, p[0], i, acc);
        }
        break;
    }
    case ND_ROW_PROD_OTHERS: {
        double prefix = 1; /* out[i] = Π_{j<i} then × Π_{j>i}, without division */
        for (int64_t i = 0; i < n; i++) {
            store_out(c, p[0], i, prefix);
            prefix *= LOADV(in, i);
        }
        double suffix = 1;
        for (int64_t i = n - 1; i >= 0; i--) {
            double v = c->dtype == ND_FLOAT32 ? (double)*(const float *)(p[0] + i * c->out_stride)
                                               : *(const double *)(p[0] + i * c->out_stride);
            store_out(c, p[0], i, v * suffix);
            suffix *= LOADV(in, i);
        }
        break;
    }
    case ND_ROW_SOFTMAX:
    case ND_ROW_LOG_SOFTMAX:
    case ND_ROW_LOGSUMEXP: {
        double m = -INFINITY;
        for (int64_t i = 0; i < n; i++) {
            double v = LOADV(in, i);
            if (v > m || v != v)
                m = v;
        }
        double shift = c->op == ND_ROW_LOGSUMEXP && isinf(m) ? 0 : m; /* keeps +-inf rows exact */
        double sum = 0;
        if (c->dtype == ND_FLOAT32 && c->op == ND_ROW_SOFTMAX && c->in_stride == 4 && c->out_stride == 4) {
            /* float32 softmax: vectorised exponentials written once, then scaled */
            const float *xi = (const float *)in;
            float *yo = (float *)p[0], fs = (float)shift, fsum = 0;
            for (int64_t i = 0; i < n; i++) {
                yo[i] = fast_expf(xi[i] - fs);
                fsum += yo[i];
            }
            float inv = 1.0f / fsum;
            for (int64_t i = 0; i < n; i++)
                yo[i] *= inv;
            break;
        }
        for (int64_t i = 0; i < n; i++)
            sum += exp(LOADV(in, i) - shift);
        if (c->op == ND_ROW_LOGSUMEXP) {
            store_out(c, p[0], 0, log(sum) + shift);
        } else if (c->op == ND_ROW_SOFTMAX) {
            for (int64_t i = 0; i < n; i++)
                store_out(c, p[0], i, exp(LOADV(in, i) - shift) / sum);
        } else {
            double lse = log(sum);
            for (int64_t i = 0; i < n; i++)
                store_out(c, p[0], i, LOADV(in, i) - shift - lse);
        }
        break;
    }
    default:
        break;
    }
}
#undef LOADV

/* int64 rows: max/min (with index), prod and cumsum, wrapping like PyTorch's integer math. */
static void row_int(char *const *p, void *vctx)
{
    const row_ctx *c = vctx;
    int64_t n = c->n;
#define LI(i) (c->dtype == ND_BOOL ? (int64_t) * (const uint8_t *)(p[2] + (i)*c->in_stride) \
                                   : *(const int64_t *)(p[2] + (i)*c->in_stride))
    if (c->op == ND_ROW_MAX || c->op == ND_ROW_MIN) {
        int64_t best = LI(0), at = 0;
        for (int64_t i = 1; i < n; i++) {
            int64_t v = LI(i);
            if (c->op == ND_ROW_MAX ? v > best : v < best)
                best = v, at = i;
        }
        if (c->dtype == ND_BOOL)
            *(uint8_t *)p[0] = (uint8_t)best;
        else
            *(int64_t *)p[0] = best;
        if (p[1])
            *(int64_t *)p[1] = at;
    } else if (c->op == ND_ROW_PROD) {
        uint64_t acc = 1;
        for (int64_t i = 0; i < n; i++)
            acc *= (uint64_t)LI(i);
        *(int64_t *)p[0] = (int64_t)acc;
    } else if (c->op == ND_ROW_CUMSUM) {
        uint64_t acc = 0;
        for (int64_t i = 0; i < n; i++) {
            acc += (uint64_t)LI(i);
            *(int64_t *)(p[0] + i * c->out_stride) = (int64_t)acc;
        }
    }
#undef LI
}

static void cpu_rows(nd_rowop op, nd_dtype dtype, const nd_iter *it, int64_t n, int64_t in_row_stride,
                     int64_t out_row_stride)
{
    row_ctx c = {op, dtype, n, in_row_stride, out_row_stride};
    drive_points(it, nd_dtype_is_float_(dtype) ? row_float : row_int, &c);
}

typedef struct index_ctx {
    size_t elem;
    nd_dtype dtype;
    int64_t dim_stride;
    int64_t run; /* elements per point when whole rows are moved (see row_runs), else 1 */
} index_ctx;

static void gather_point(char *const *p, void *vctx)
{
    const index_ctx *c = vctx;
    memcpy(p[0], p[2] + *(const int64_t *)p[1] * c->dim_stride, c->elem);
}

static void scatter_add_point(char *const *p, void *vctx)
{
    const index_ctx *c = vctx;
    char *dst = p[0] + *(const int64_t *)p[1] * c->dim_stride;
    switch (c->dtype) {
    case ND_FLOAT32: *(float *)dst += *(const float *)p[2]; break;
    case ND_FLOAT64: *(double *)dst += *(const double *)p[2]; break;
    case ND_INT64: *(int64_t *)dst = (int64_t)((uint64_t) * (int64_t *)dst + (uint64_t) * (const int64_t *)p[2]); break;
    case ND_BOOL: *(uint8_t *)dst |= *(const uint8_t *)p[2]; break;
    }
}

/* Operands (out, index, src). When the innermost dim is dense in out and src and the index does
 * not move along it (an embedding's rows, index_select along an outer dim), each point of the
 * other dims moves a whole row: `rows` gets those dims and c->run the row's length. A call per
 * element cost more than the copy (an embedding of 4096 x 128 floats took 1.8 ms). */
static bool row_runs(const nd_iter *it, index_ctx *c, nd_iter *rows)
{
    const int d = it->ndim - 1;
    if (d < 0 || it->strides[0][d] != (int64_t)c->elem || it->strides[2][d] != (int64_t)c->elem || it->strides[1][d] != 0)
        return false;
    *rows = *it;
    rows->ndim = d;
    c->run = it->shape[d];
    return c->run > 0;
}

static void gather_row(char *const *p, void *vctx)
{
    const index_ctx *c = vctx;
    memcpy(p[0], p[2] + *(const int64_t *)p[1] * c->dim_stride, c->elem * (size_t)c->run);
}

/* element by element in the same order as scatter_add_point, so repeated indices sum alike */
static void scatter_add_row(char *const *p, void *vctx)
{
    const index_ctx *c = vctx;
    char *dst = p[0] + *(const int64_t *)p[1] * c->dim_stride;
    if (c->dtype == ND_FLOAT32) {
        float *restrict d = (float *)dst;
        const float *restrict s = (const float *)p[2];
        for (int64_t i = 0; i < c->run; i++)
            d[i] += s[i];
    } else if (c->dtype == ND_FLOAT64) {
        double *restrict d = (double *)dst;
        const double *restrict s = (const double *)p[2];
        for (int64_t i = 0; i < c->run; i++)
            d[i] += s[i];
    } else {
        for (int64_t i = 0; i < c->run; i++)
            scatter_add_point((char *const[]){p[0] + (int64_t)c->elem * i, p[1], p[2] + (int64_t)c->elem * i}, vctx);
    }
}

/* By rows where row_runs allows, else point by point. */
static void drive_index(nd_dtype dtype, const nd_iter *it, int64_t dim_stride, point_fn by_row, point_fn by_point)
{
    index_ctx c = {nd_dtype_size(dtype), dtype, dim_stride, 1};
    nd_iter rows;
    if (row_runs(it, &c, &rows))
        drive_points(&rows, by_row, &c);
    else
        drive_points(it, by_point, &c);
}

static void cpu_gather(nd_dtype dtype, const nd_iter *it, int64_t dim_stride)
{
    drive_index(dtype, it, dim_stride, gather_row, gather_point);
}

static void cpu_scatter_add(nd_dtype dtype, const nd_iter *it, int64_t dim_stride)
{
    drive_index(dtype, it, dim_stride, scatter_add_row, scatter_add_point);
}

const nd_backend nd_cpu_backend = {
    .name = "cpu",
    .binary = cpu_binary,
    .unary = cpu_unary,
    .cast = cpu_cast,
    .where = cpu_where,
    .accumulate = cpu_accumulate,
    .rows = cpu_rows,
    .gather = cpu_gather,
    .scatter_add = cpu_scatter_add,
    .im2col = nd_cpu_im2col,
    .col2im = nd_cpu_col2im,
    .max_pool2d = nd_cpu_max_pool2d,
    .max_pool2d_backward = nd_cpu_max_pool2d_backward,
    .layer_norm_forward = nd_cpu_layer_norm_forward,
    .layer_norm_backward = nd_cpu_layer_norm_backward,
    .softmax_backward = nd_cpu_softmax_backward,
    .cross_entropy_forward = nd_cpu_cross_entropy_forward,
    .cross_entropy_backward = nd_cpu_cross_entropy_backward,
    .gemm = nd_cpu_gemm,
    .gemm_bias = nd_cpu_gemm_bias,
    .gemm_kernel_name = nd_cpu_gemm_kernel_name,
    .release_scratch = nd_cpu_release_scratch,
    .conv2d_forward = nd_cpu_conv2d_forward,
    .conv2d_backward = nd_cpu_conv2d_backward,
    .attention_forward = nd_cpu_attention_forward,
    .attention_backward = nd_cpu_attention_backward,
};


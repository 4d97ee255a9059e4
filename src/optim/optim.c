/* Optimizers with torch.optim's update rules, operation for operation, so ten steps match
 * PyTorch to float rounding. Updates run as plain loops over each parameter's contiguous data:
 * no graph, no temporaries. State lives in tensors, so it can be saved with the weights. */
#include "backend/cpu/threads.h"
#include "ops/common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum opt_kind { OPT_SGD, OPT_ADAM, OPT_ADAMW, OPT_RMSPROP } opt_kind;

struct nd_optimizer {
    opt_kind kind;
    int n;
    nd_tensor **params;   /* references */
    nd_tensor **state[2]; /* per param: SGD momentum; Adam exp_avg, exp_avg_sq; RMSprop square_avg, momentum/grad_avg */
    nd_tensor **extra;    /* RMSprop centered grad_avg when momentum is also used */
    nd_tensor *steps;     /* int64 [n]: updates applied to each parameter */
    double lr, beta1, beta2, eps, weight_decay, momentum, dampening;
    bool nesterov, centered;
};

static void free_list(nd_tensor **l, int n)
{
    for (int i = 0; l && i < n; i++)
        nd_unref(l[i]);
    free(l);
}

void nd_optimizer_free(nd_optimizer *o)
{
    if (!o)
        return;
    free_list(o->params, o->n);
    free_list(o->state[0], o->n);
    free_list(o->state[1], o->n);
    free_list(o->extra, o->n);
    nd_unref(o->steps);
    free(o);
}

static nd_optimizer *create(const char *name, opt_kind kind, int n, nd_tensor *const *params, int n_state, bool extra)
{
    if (n <= 0 || !params)
        return nd_fail(ND_ERR_VALUE, "%s: expected a non-empty parameter list", name);
    for (int i = 0; i < n; i++) {
        if (!params[i])
            return nd_fail_null(name, i);
        if (!nd_dtype_is_float(params[i]->dtype) || !params[i]->requires_grad || params[i]->grad_fn ||
            !nd_is_contiguous(params[i]))
            return nd_fail(ND_ERR_VALUE, "%s: parameter %d must be a contiguous floating point leaf that requires grad",
                           name, i);
    }
    nd_optimizer *o = calloc(1, sizeof *o);
    if (!o)
        return nd_fail(ND_ERR_NOMEM, "%s: out of memory", name);
    o->kind = kind;
    o->n = n;
    int64_t count = n;
    bool ok = (o->params = calloc((size_t)n, sizeof(nd_tensor *))) && (o->steps = nd_alloc(ND_INT64, 1, &count, true));
    for (int s = 0; ok && s < n_state; s++)
        ok = (o->state[s] = calloc((size_t)n, sizeof(nd_tensor *))) != NULL;
    if (ok && extra)
        ok = (o->extra = calloc((size_t)n, sizeof(nd_tensor *))) != NULL;
    for (int i = 0; ok && i < n; i++) {
        o->params[i] = nd_ref(params[i]);
        for (int s = 0; ok && s < n_state; s++)
            ok = (o->state[s][i] = nd_alloc(params[i]->dtype, params[i]->ndim, params[i]->shape, true)) != NULL;
        if (ok && extra)
            ok = (o->extra[i] = nd_alloc(params[i]->dtype, params[i]->ndim, params[i]->shape, true)) != NULL;
    }
    if (!ok) {
        nd_optimizer_free(o);
        return nd_fail(ND_ERR_NOMEM, "%s: out of memory", name);
    }
    return o;
}

nd_optimizer *nd_sgd_new(int n, nd_tensor *const *params, double lr, double momentum, double dampening,
                         double weight_decay, bool nesterov)
{
    const char *name = "nd_sgd_new";
    if (!(lr >= 0) || !(momentum >= 0) || !(weight_decay >= 0))
        return nd_fail(ND_ERR_VALUE, "%s: invalid lr %g, momentum %g or weight_decay %g", name, lr, momentum, weight_decay);
    if (nesterov && (momentum <= 0 || dampening != 0))
        return nd_fail(ND_ERR_VALUE, "%s: nesterov momentum requires a momentum and zero dampening", name);
    nd_optimizer *o = create(name, OPT_SGD, n, params, momentum != 0 ? 1 : 0, false);
    if (o) {
        o->lr = lr, o->momentum = momentum, o->dampening = dampening, o->weight_decay = weight_decay;
        o->nesterov = nesterov;
    }
    return o;
}

static nd_optimizer *adam_like(const char *name, opt_kind kind, int n, nd_tensor *const *params, double lr, double beta1,
                               double beta2, double eps, double weight_decay)
{
    if (!(lr >= 0) || !(eps >= 0) || !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) || !(weight_decay >= 0))
        return nd_fail(ND_ERR_VALUE, "%s: invalid lr %g, betas (%g, %g), eps %g or weight_decay %g", name, lr, beta1, beta2,
                       eps, weight_decay);
    nd_optimizer *o = create(name, kind, n, params, 2, false);
    if (o)
        o->lr = lr, o->beta1 = beta1, o->beta2 = beta2, o->eps = eps, o->weight_decay = weight_decay;
    return o;
}

nd_optimizer *nd_adam_new(int n, nd_tensor *const *params, double lr, double beta1, double beta2, double eps,
                          double weight_decay)
{
    return adam_like("nd_adam_new", OPT_ADAM, n, params, lr, beta1, beta2, eps, weight_decay);
}

nd_optimizer *nd_adamw_new(int n, nd_tensor *const *params, double lr, double beta1, double beta2, double eps,
                           double weight_decay)
{
    return adam_like("nd_adamw_new", OPT_ADAMW, n, params, lr, beta1, beta2, eps, weight_decay);
}

nd_optimizer *nd_rmsprop_new(int n, nd_tensor *const *params, double lr, double alpha, double eps, double weight_decay,
                             double momentum, bool centered)
{
    const char *name = "nd_rmsprop_new";
    if (!(lr >= 0) || !(eps >= 0) || !(alpha >= 0) || !(weight_decay >= 0) || !(momentum >= 0))
        return nd_fail(ND_ERR_VALUE, "%s: invalid lr %g, alpha %g, eps %g, weight_decay %g or momentum %g", name, lr, alpha,
                       eps, weight_decay, momentum);
    nd_optimizer *o = create(name, OPT_RMSPROP, n, params, 2, centered && momentum > 0);
    if (o) {
        o->lr = lr, o->beta2 = alpha, o->eps = eps, o->weight_decay = weight_decay, o->momentum = momentum;
        o->centered = centered;
    }
    return o;
}

/* The update loops, in the element type T of the parameter; S is the scalar type used by
 * PyTorch for the hyper-parameters in that dtype (float for float32 tensors). */
#define SGD_UPDATE(T)                                                                                  \
    static void sgd_##T(const nd_optimizer *o, int64_t step, int64_t n, T *p, const T *g, T *buf)     \
    {                                                                                                  \
        const T lr = (T)o->lr, wd = (T)o->weight_decay, mom = (T)o->momentum;                         \
        const T keep = (T)(1 - o->dampening);                                                          \
        for (int64_t i = 0; i < n; i++) {                                                              \
            T d = g[i];                                                                                \
            if (wd != 0)                                                                               \
                d = d + wd * p[i];                                                                     \
            if (mom != 0) {                                                                            \
                buf[i] = step == 0 ? d : buf[i] * mom + keep * d;                                \
                d = o->nesterov ? d + mom * buf[i] : buf[i];                                           \
            }                                                                                          \
            p[i] = p[i] - lr * d;                                                                      \
        }                                                                                              \
    }

#define ADAM_UPDATE(T, SQRT)                                                                           \
    static void adam_##T(const nd_optimizer *o, int64_t step, int64_t n, T *p, const T *g, T *m, T *v) \
    {                                                                                                  \
        const T b1 = (T)o->beta1, b2 = (T)o->beta2, eps = (T)o->eps, wd = (T)o->weight_decay;         \
        const T a1 = (T)(1 - o->beta1), a2 = (T)(1 - o->beta2);                                        \
        double bc1 = 1 - pow(o->beta1, (double)step), bc2 = 1 - pow(o->beta2, (double)step);          \
        const T step_size = (T)(o->lr / bc1), bc2_sqrt = (T)sqrt(bc2);                                \
        const bool decoupled = o->kind == OPT_ADAMW;                                                   \
        const T decay = (T)(1 - o->lr * o->weight_decay);                                             \
        for (int64_t i = 0; i < n; i++) {                                                              \
            T grad = g[i];                                                                             \
            if (decoupled)                                                                             \
                p[i] = p[i] * decay;                                                                   \
            else if (wd != 0)                                                                          \
                grad = grad + wd * p[i];                                                               \
            m[i] = m[i] * b1 + a1 * grad;                                                              \
            v[i] = v[i] * b2 + a2 * grad * grad;                                                       \
            T denom = SQRT(v[i]) / bc2_sqrt + eps;                                                     \
            p[i] = p[i] - step_size * (m[i] / denom);                                                  \
        }                                                                                              \
    }

#define RMSPROP_UPDATE(T, SQRT)                                                                        \
    static void rmsprop_##T(const nd_optimizer *o, int64_t n, T *p, const T *g, T *sq, T *aux, T *gavg) \
    {                                                                                                  \
        const T lr = (T)o->lr, alpha = (T)o->beta2, eps = (T)o->eps, wd = (T)o->weight_decay;         \
        const T mom = (T)o->momentum, a = (T)(1 - o->beta2);                                           \
        T *grad_avg = o->centered ? (mom > 0 ? gavg : aux) : NULL;                                    \
        for (int64_t i = 0; i < n; i++) {                                                              \
            T grad = g[i];                                                                             \
            if (wd != 0)                                                                               \
                grad = grad + wd * p[i];                                                               \
            sq[i] = sq[i] * alpha + a * grad * grad;                                                   \
            T avg;                                                                                     \
            if (grad_avg) {                                                                            \
                grad_avg[i] = grad_avg[i] * alpha + a * grad;                                          \
                avg = SQRT(sq[i] + (T)(-1) * grad_avg[i] * grad_avg[i]) + eps;                         \
            } else {                                                                                   \
                avg = SQRT(sq[i]) + eps;                                                               \
            }                                                                                          \
            if (mom > 0) {                                                                             \
                aux[i] = aux[i] * mom + grad / avg;                                                    \
                p[i] = p[i] - lr * aux[i];                                                             \
            } else {                                                                                   \
                p[i] = p[i] - lr * (grad / avg);                                                       \
            }                                                                                          \
        }                                                                                              \
    }

SGD_UPDATE(float)
SGD_UPDATE(double)
ADAM_UPDATE(float, sqrtf)
ADAM_UPDATE(double, sqrt)
RMSPROP_UPDATE(float, sqrtf)
RMSPROP_UPDATE(double, sqrt)

#define PTR(t) ((t) ? nd_data_ptr(t) : NULL)

nd_status nd_optimizer_step(nd_optimizer *o)
{
    const char *name = "nd_optimizer_step";
    if (!o)
        return nd_fail_status(ND_ERR_NULL, "%s: optimizer is NULL", name);
    /* Check every gradient first, so a bad one changes no parameter. */
    for (int i = 0; i < o->n; i++) {
        nd_tensor *p = o->params[i], *g = p->grad;
        if (g && (g->dtype != p->dtype || g->ndim != p->ndim ||
                  memcmp(g->shape, p->shape, sizeof(int64_t) * (size_t)p->ndim) != 0))
            return nd_fail_status(ND_ERR_SHAPE, "%s: gradient of parameter %d does not match it", name, i);
    }
    int64_t *steps = o->steps->storage->data;
    /* Moments of rarely-updated weights decay into the subnormal range, where x86 arithmetic is
     * many times slower: the updates run with flush-to-zero, as the compute threads do. */
    unsigned fp_mode = nd_fp_mode_save_and_flush();
    for (int i = 0; i < o->n; i++) {
        nd_tensor *p = o->params[i], *g = p->grad;
        if (!g)
            continue; /* no gradient: PyTorch skips the parameter */
        nd_tensor *gc = nd_is_contiguous(g) ? g : nd_k_copy(g, g->dtype);
        if (!gc) {
            nd_fp_mode_restore(fp_mode);
            return nd_last_status();
        }
        int64_t n = nd_numel(p);
        bool f32 = p->dtype == ND_FLOAT32;
        void *pp = nd_data_ptr(p), *gp = nd_data_ptr(gc);
        void *s0 = o->state[0] ? PTR(o->state[0][i]) : NULL, *s1 = o->state[1] ? PTR(o->state[1][i]) : NULL;
        void *ex = o->extra ? PTR(o->extra[i]) : NULL;
        switch (o->kind) {
        case OPT_SGD:
            if (f32)
                sgd_float(o, steps[i], n, pp, gp, s0);
            else
                sgd_double(o, steps[i], n, pp, gp, s0);
            break;
        case OPT_ADAM:
        case OPT_ADAMW:
            if (f32)
                adam_float(o, steps[i] + 1, n, pp, gp, s0, s1);
            else
                adam_double(o, steps[i] + 1, n, pp, gp, s0, s1);
            break;
        case OPT_RMSPROP:
            if (f32)
                rmsprop_float(o, n, pp, gp, s0, s1, ex);
            else
                rmsprop_double(o, n, pp, gp, s0, s1, ex);
            break;
        }
        steps[i]++;
        nd_bump_version(p);
        if (gc != g)
            nd_unref(gc);
    }
    nd_fp_mode_restore(fp_mode);
    return ND_OK;
}

nd_status nd_optimizer_zero_grad(nd_optimizer *o)
{
    if (!o)
        return nd_fail_status(ND_ERR_NULL, "nd_optimizer_zero_grad: optimizer is NULL");
    for (int i = 0; i < o->n; i++)
        nd_zero_grad(o->params[i]);
    return ND_OK;
}

double nd_optimizer_lr(const nd_optimizer *o) { return o ? o->lr : NAN; }

nd_status nd_optimizer_set_lr(nd_optimizer *o, double lr)
{
    if (!o)
        return nd_fail_status(ND_ERR_NULL, "nd_optimizer_set_lr: optimizer is NULL");
    if (!(lr >= 0))
        return nd_fail_status(ND_ERR_VALUE, "nd_optimizer_set_lr: invalid learning rate %g", lr);
    o->lr = lr;
    return ND_OK;
}

nd_status nd_optimizer_state(const nd_optimizer *o, const char *prefix, nd_param_list *out)
{
    if (!o || !out)
        return nd_fail_status(ND_ERR_NULL, "nd_optimizer_state: optimizer and list are required");
    static const char *names[4][2] = {{"momentum_buffer", NULL}, {"exp_avg", "exp_avg_sq"}, {"exp_avg", "exp_avg_sq"},
                                      {"square_avg", "momentum_buffer"}};
    char path[256];
    const char *pre = prefix ? prefix : "optimizer";
    snprintf(path, sizeof path, "%s.steps", pre);
    nd_status st = nd_params_add(out, path, o->steps);
    for (int i = 0; st == ND_OK && i < o->n; i++)
        for (int s = 0; st == ND_OK && s < 2; s++) {
            if (!o->state[s])
                continue;
            const char *label = names[o->kind][s];
            if (o->kind == OPT_RMSPROP && s == 1 && o->centered && o->momentum <= 0)
                label = "grad_avg";
            snprintf(path, sizeof path, "%s.%d.%s", pre, i, label);
            st = nd_params_add(out, path, o->state[s][i]);
        }
    for (int i = 0; st == ND_OK && o->extra && i < o->n; i++) {
        snprintf(path, sizeof path, "%s.%d.grad_avg", pre, i);
        st = nd_params_add(out, path, o->extra[i]);
    }
    return st;
}

/* ------------------------------------------------------------------ learning-rate schedules */

double nd_lr_step(double base_lr, int64_t step, int64_t step_size, double gamma)
{
    if (step_size <= 0)
        return base_lr;
    return base_lr * pow(gamma, (double)(step / step_size));
}

double nd_lr_cosine(double base_lr, int64_t step, int64_t total_steps, double min_lr)
{
    if (total_steps <= 0)
        return base_lr;
    double t = (double)(step < total_steps ? step : total_steps);
    return min_lr + (base_lr - min_lr) * (1 + cos(3.14159265358979323846 * t / (double)total_steps)) / 2;
}

double nd_lr_warmup_cosine(double base_lr, int64_t step, int64_t warmup_steps, int64_t total_steps, double min_lr)
{
    if (step < warmup_steps)
        return base_lr * (double)(step + 1) / (double)warmup_steps;
    return nd_lr_cosine(base_lr, step - warmup_steps, total_steps - warmup_steps, min_lr);
}

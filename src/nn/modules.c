/* Modules: layers that own their parameters, created with PyTorch's default initialisation,
 * composed into containers whose parameters get dotted names ("fc1.weight"). */
#include "ops/common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ parameter lists */

struct nd_param_list {
    int count, cap;
    char **names;
    nd_tensor **tensors; /* one reference each */
};

nd_param_list *nd_params_new(void)
{
    nd_param_list *p = calloc(1, sizeof *p);
    if (!p)
        nd_fail(ND_ERR_NOMEM, "nd_params_new: out of memory");
    return p;
}

void nd_params_free(nd_param_list *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->count; i++) {
        free(p->names[i]);
        nd_unref(p->tensors[i]);
    }
    free(p->names);
    free(p->tensors);
    free(p);
}

nd_status nd_params_add(nd_param_list *p, const char *name, nd_tensor *t)
{
    if (!p || !name || !t)
        return nd_fail_status(ND_ERR_NULL, "nd_params_add: list, name and tensor are required");
    if (nd_params_find(p, name))
        return nd_fail_status(ND_ERR_VALUE, "nd_params_add: the name \"%s\" is already in the list", name);
    if (p->count == p->cap) {
        int cap = p->cap ? p->cap * 2 : 16;
        char **names = realloc(p->names, (size_t)cap * sizeof *names);
        if (!names)
            return nd_fail_status(ND_ERR_NOMEM, "nd_params_add: out of memory");
        p->names = names;
        nd_tensor **tensors = realloc(p->tensors, (size_t)cap * sizeof *tensors);
        if (!tensors)
            return nd_fail_status(ND_ERR_NOMEM, "nd_params_add: out of memory");
        p->tensors = tensors;
        p->cap = cap;
    }
    size_t len = strlen(name);
    char *copy = malloc(len + 1);
    if (!copy)
        return nd_fail_status(ND_ERR_NOMEM, "nd_params_add: out of memory");
    memcpy(copy, name, len + 1);
    p->names[p->count] = copy;
    p->tensors[p->count] = nd_ref(t);
    p->count++;
    return ND_OK;
}

int nd_params_count(const nd_param_list *p) { return p ? p->count : 0; }
const char *nd_params_name(const nd_param_list *p, int i) { return p && i >= 0 && i < p->count ? p->names[i] : NULL; }
nd_tensor *nd_params_get(const nd_param_list *p, int i) { return p && i >= 0 && i < p->count ? p->tensors[i] : NULL; }

nd_tensor *nd_params_find(const nd_param_list *p, const char *name)
{
    if (!p || !name)
        return NULL;
    for (int i = 0; i < p->count; i++)
        if (strcmp(p->names[i], name) == 0)
            return p->tensors[i];
    return NULL;
}

nd_tensor *const *nd_params_tensors(const nd_param_list *p) { return p ? p->tensors : NULL; }

nd_status nd_params_zero_grad(nd_param_list *p)
{
    if (!p)
        return nd_fail_status(ND_ERR_NULL, "nd_params_zero_grad: list is NULL");
    for (int i = 0; i < p->count; i++)
        nd_zero_grad(p->tensors[i]);
    return ND_OK;
}

int64_t nd_params_numel(const nd_param_list *p)
{
    int64_t n = 0;
    for (int i = 0; p && i < p->count; i++)
        n += nd_numel(p->tensors[i]);
    return n;
}

/* ------------------------------------------------------------------ initialisers */

static bool fans(const char *name, const nd_tensor *t, double *fan_in, double *fan_out)
{
    if (t->ndim < 2) {
        nd_fail(ND_ERR_SHAPE, "%s: fan in and fan out can not be computed for a tensor with fewer than 2 dimensions", name);
        return false;
    }
    double receptive = 1;
    for (int i = 2; i < t->ndim; i++)
        receptive *= (double)t->shape[i];
    *fan_in = (double)t->shape[1] * receptive;
    *fan_out = (double)t->shape[0] * receptive;
    return true;
}

/* Fills t in place (no autograd) from the thread's generator: uniform [lo, hi) or normal. */
static nd_status fill_random(const char *name, nd_tensor *t, bool normal, double a, double b)
{
    if (!t)
        return nd_fail_null(name, 0), nd_last_status();
    if (!nd_dtype_is_float(t->dtype))
        return nd_fail_status(ND_ERR_DTYPE, "%s: expected a floating point tensor, got %s", name, nd_dtype_name(t->dtype));
    int64_t n = nd_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = normal ? a + b * nd_rng_normal() : a + (b - a) * nd_rng_uniform();
        nd_store(nd_elem_ptr(t, i), t->dtype, v);
    }
    nd_bump_version(t);
    return ND_OK;
}

nd_status nd_init_uniform(nd_tensor *t, double lo, double hi) { return fill_random("nd_init_uniform", t, false, lo, hi); }
nd_status nd_init_normal(nd_tensor *t, double mean, double std) { return fill_random("nd_init_normal", t, true, mean, std); }

nd_status nd_init_xavier_uniform(nd_tensor *t, double gain)
{
    double fi, fo;
    if (!t)
        return nd_fail_null("nd_init_xavier_uniform", 0), nd_last_status();
    if (!fans("nd_init_xavier_uniform", t, &fi, &fo))
        return nd_last_status();
    double bound = gain * sqrt(6.0 / (fi + fo));
    return fill_random("nd_init_xavier_uniform", t, false, -bound, bound);
}

nd_status nd_init_xavier_normal(nd_tensor *t, double gain)
{
    double fi, fo;
    if (!t)
        return nd_fail_null("nd_init_xavier_normal", 0), nd_last_status();
    if (!fans("nd_init_xavier_normal", t, &fi, &fo))
        return nd_last_status();
    return fill_random("nd_init_xavier_normal", t, true, 0.0, gain * sqrt(2.0 / (fi + fo)));
}

/* Kaiming (He) initialisation for a leaky-ReLU slope a (0 for ReLU), fan_in or fan_out mode. */
nd_status nd_init_kaiming_uniform(nd_tensor *t, double a, bool fan_out_mode)
{
    double fi, fo;
    if (!t)
        return nd_fail_null("nd_init_kaiming_uniform", 0), nd_last_status();
    if (!fans("nd_init_kaiming_uniform", t, &fi, &fo))
        return nd_last_status();
    double gain = sqrt(2.0 / (1.0 + a * a));
    double bound = gain * sqrt(3.0 / (fan_out_mode ? fo : fi));
    return fill_random("nd_init_kaiming_uniform", t, false, -bound, bound);
}

nd_status nd_init_kaiming_normal(nd_tensor *t, double a, bool fan_out_mode)
{
    double fi, fo;
    if (!t)
        return nd_fail_null("nd_init_kaiming_normal", 0), nd_last_status();
    if (!fans("nd_init_kaiming_normal", t, &fi, &fo))
        return nd_last_status();
    double gain = sqrt(2.0 / (1.0 + a * a));
    return fill_random("nd_init_kaiming_normal", t, true, 0.0, gain / sqrt(fan_out_mode ? fo : fi));
}

/* ------------------------------------------------------------------ modules */

typedef enum module_kind {
    MOD_LINEAR, MOD_CONV2D, MOD_EMBEDDING, MOD_LAYER_NORM, MOD_BATCH_NORM2D, MOD_DROPOUT, MOD_RELU, MOD_GELU,
    MOD_TANH, MOD_FLATTEN, MOD_MAX_POOL2D, MOD_SEQUENTIAL
} module_kind;

struct nd_module {
    module_kind kind;
    bool training;
    nd_tensor *weight, *bias, *running_mean, *running_var, *batches_tracked; /* owned */
    int64_t iconf[8];
    double fconf[4];
    int n_children, cap_children;
    nd_module **children;
    char **child_names;
};

static nd_module *module_new(module_kind kind)
{
    nd_module *m = calloc(1, sizeof *m);
    if (!m)
        return nd_fail(ND_ERR_NOMEM, "out of memory creating a module");
    m->kind = kind;
    m->training = true;
    return m;
}

void nd_module_free(nd_module *m)
{
    if (!m)
        return;
    nd_unref(m->weight);
    nd_unref(m->bias);
    nd_unref(m->running_mean);
    nd_unref(m->running_var);
    nd_unref(m->batches_tracked);
    for (int i = 0; i < m->n_children; i++) {
        nd_module_free(m->children[i]);
        free(m->child_names[i]);
    }
    free(m->children);
    free(m->child_names);
    free(m);
}

/* A parameter tensor owned by its module (not by any scope), filled with value. */
static nd_tensor *param(nd_dtype dtype, int ndim, const int64_t *shape, bool requires_grad, double value)
{
    nd_tensor *t = nd_alloc(dtype, ndim, shape, true);
    if (t && value != 0)
        nd_fill_(t, value);
    if (t && requires_grad)
        nd_set_requires_grad(t, true);
    return t;
}

static nd_module *fail_module(nd_module *m)
{
    nd_module_free(m);
    return NULL;
}

/* The default init of nn.Linear / nn.Conv2d: kaiming_uniform(a=√5) for the weight, i.e.
 * U(-1/√fan_in, 1/√fan_in), and the same bound for the bias. */
static bool default_affine_init(nd_module *m)
{
    double fi, fo;
    if (!fans("module init", m->weight, &fi, &fo))
        return false;
    if (nd_init_kaiming_uniform(m->weight, sqrt(5.0), false) != ND_OK)
        return false;
    double bound = fi > 0 ? 1.0 / sqrt(fi) : 0;
    return !m->bias || nd_init_uniform(m->bias, -bound, bound) == ND_OK;
}

nd_module *nd_linear_module(int64_t in_features, int64_t out_features, bool bias, nd_dtype dtype)
{
    if (in_features < 0 || out_features < 0)
        return nd_fail(ND_ERR_VALUE, "nd_linear_module: sizes must be non-negative (in %lld, out %lld)",
                       (long long)in_features, (long long)out_features);
    if (!nd_dtype_is_float(dtype))
        return nd_fail(ND_ERR_DTYPE, "nd_linear_module: parameters must be floating point");
    nd_module *m = module_new(MOD_LINEAR);
    if (!m)
        return NULL;
    int64_t ws[2] = {out_features, in_features}, bs[1] = {out_features};
    if (!(m->weight = param(dtype, 2, ws, true, 0)) || (bias && !(m->bias = param(dtype, 1, bs, true, 0))) ||
        !default_affine_init(m))
        return fail_module(m);
    return m;
}

nd_module *nd_conv2d_module(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
                            int64_t padding, int64_t groups, bool bias, nd_dtype dtype)
{
    const char *name = "nd_conv2d_module";
    if (in_channels <= 0 || out_channels <= 0 || kernel <= 0 || stride <= 0 || padding < 0 || groups <= 0 ||
        in_channels % groups || out_channels % groups)
        return nd_fail(ND_ERR_VALUE, "%s: invalid configuration (in %lld, out %lld, kernel %lld, stride %lld, padding "
                       "%lld, groups %lld)", name, (long long)in_channels, (long long)out_channels, (long long)kernel,
                       (long long)stride, (long long)padding, (long long)groups);
    if (!nd_dtype_is_float(dtype))
        return nd_fail(ND_ERR_DTYPE, "%s: parameters must be floating point", name);
    nd_module *m = module_new(MOD_CONV2D);
    if (!m)
        return NULL;
    int64_t ws[4] = {out_channels, in_channels / groups, kernel, kernel}, bs[1] = {out_channels};
    if (!(m->weight = param(dtype, 4, ws, true, 0)) || (bias && !(m->bias = param(dtype, 1, bs, true, 0))) ||
        !default_affine_init(m))
        return fail_module(m);
    m->iconf[0] = stride, m->iconf[1] = padding, m->iconf[2] = groups;
    return m;
}

nd_module *nd_embedding_module(int64_t num_embeddings, int64_t dim, nd_dtype dtype)
{
    if (num_embeddings <= 0 || dim <= 0)
        return nd_fail(ND_ERR_VALUE, "nd_embedding_module: sizes must be positive (%lld, %lld)", (long long)num_embeddings,
                       (long long)dim);
    if (!nd_dtype_is_float(dtype))
        return nd_fail(ND_ERR_DTYPE, "nd_embedding_module: parameters must be floating point");
    nd_module *m = module_new(MOD_EMBEDDING);
    int64_t ws[2] = {num_embeddings, dim};
    if (!m || !(m->weight = param(dtype, 2, ws, true, 0)) || nd_init_normal(m->weight, 0.0, 1.0) != ND_OK)
        return fail_module(m);
    return m;
}

nd_module *nd_layer_norm_module(int64_t dim, double eps, bool affine, nd_dtype dtype)
{
    if (dim <= 0)
        return nd_fail(ND_ERR_VALUE, "nd_layer_norm_module: dim must be positive, got %lld", (long long)dim);
    nd_module *m = module_new(MOD_LAYER_NORM);
    if (!m)
        return NULL;
    if (affine) {
        if (!(m->weight = param(dtype, 1, &dim, true, 1.0)) || !(m->bias = param(dtype, 1, &dim, true, 0)))
            return fail_module(m);
    }
    m->iconf[0] = dim;
    m->fconf[0] = eps;
    return m;
}

nd_module *nd_batch_norm2d_module(int64_t channels, double eps, double momentum, nd_dtype dtype)
{
    if (channels <= 0)
        return nd_fail(ND_ERR_VALUE, "nd_batch_norm2d_module: channels must be positive, got %lld", (long long)channels);
    nd_module *m = module_new(MOD_BATCH_NORM2D);
    if (!m)
        return NULL;
    if (!(m->weight = param(dtype, 1, &channels, true, 1.0)) || !(m->bias = param(dtype, 1, &channels, true, 0)) ||
        !(m->running_mean = param(dtype, 1, &channels, false, 0)) ||
        !(m->running_var = param(dtype, 1, &channels, false, 1.0)) ||
        !(m->batches_tracked = param(ND_INT64, 0, NULL, false, 0)))
        return fail_module(m);
    m->fconf[0] = eps;
    m->fconf[1] = momentum;
    return m;
}

static nd_module *simple(module_kind kind, const int64_t *iconf, int n, double f)
{
    nd_module *m = module_new(kind);
    if (!m)
        return NULL;
    for (int i = 0; i < n; i++)
        m->iconf[i] = iconf[i];
    m->fconf[0] = f;
    return m;
}

nd_module *nd_dropout_module(double p)
{
    if (!(p >= 0 && p <= 1))
        return nd_fail(ND_ERR_VALUE, "nd_dropout_module: p must be in [0, 1], got %g", p);
    return simple(MOD_DROPOUT, NULL, 0, p);
}
nd_module *nd_relu_module(void) { return simple(MOD_RELU, NULL, 0, 0); }
nd_module *nd_gelu_module(bool tanh_approximation) { return simple(MOD_GELU, NULL, 0, tanh_approximation); }
nd_module *nd_tanh_module(void) { return simple(MOD_TANH, NULL, 0, 0); }
nd_module *nd_flatten_module(int start_dim, int end_dim)
{
    const int64_t c[2] = {start_dim, end_dim};
    return simple(MOD_FLATTEN, c, 2, 0);
}
nd_module *nd_max_pool2d_module(int64_t kernel, int64_t stride)
{
    if (kernel <= 0 || stride < 0)
        return nd_fail(ND_ERR_VALUE, "nd_max_pool2d_module: invalid kernel %lld / stride %lld", (long long)kernel,
                       (long long)stride);
    const int64_t c[2] = {kernel, stride ? stride : kernel};
    return simple(MOD_MAX_POOL2D, c, 2, 0);
}

nd_module *nd_sequential_module(void) { return module_new(MOD_SEQUENTIAL); }

nd_status nd_module_add(nd_module *container, const char *name, nd_module *child)
{
    if (!container || !child)
        return nd_fail_status(ND_ERR_NULL, "nd_module_add: container and child are required");
    if (container->kind != MOD_SEQUENTIAL)
        return nd_fail_status(ND_ERR_VALUE, "nd_module_add: only a container (nd_sequential_module) takes children");
    char auto_name[24];
    if (!name) {
        snprintf(auto_name, sizeof auto_name, "%d", container->n_children);
        name = auto_name;
    }
    if (!*name || strchr(name, '.'))
        return nd_fail_status(ND_ERR_VALUE, "nd_module_add: child names must be non-empty and contain no '.' (got \"%s\")",
                              name);
    for (int i = 0; i < container->n_children; i++)
        if (strcmp(container->child_names[i], name) == 0)
            return nd_fail_status(ND_ERR_VALUE, "nd_module_add: a child named \"%s\" already exists", name);
    if (container->n_children == container->cap_children) {
        int cap = container->cap_children ? 2 * container->cap_children : 8;
        nd_module **c = realloc(container->children, (size_t)cap * sizeof *c);
        if (!c)
            return nd_fail_status(ND_ERR_NOMEM, "nd_module_add: out of memory");
        container->children = c;
        char **n = realloc(container->child_names, (size_t)cap * sizeof *n);
        if (!n)
            return nd_fail_status(ND_ERR_NOMEM, "nd_module_add: out of memory");
        container->child_names = n;
        container->cap_children = cap;
    }
    size_t len = strlen(name);
    char *copy = malloc(len + 1);
    if (!copy)
        return nd_fail_status(ND_ERR_NOMEM, "nd_module_add: out of memory");
    memcpy(copy, name, len + 1);
    container->child_names[container->n_children] = copy;
    container->children[container->n_children++] = child;
    child->training = container->training;
    return ND_OK;
}

nd_module *nd_module_child(const nd_module *m, const char *name)
{
    for (int i = 0; m && name && i < m->n_children; i++)
        if (strcmp(m->child_names[i], name) == 0)
            return m->children[i];
    return NULL;
}

nd_tensor *nd_module_weight(const nd_module *m) { return m ? m->weight : NULL; }
nd_tensor *nd_module_bias(const nd_module *m) { return m ? m->bias : NULL; }

nd_status nd_module_train(nd_module *m, bool training)
{
    if (!m)
        return nd_fail_status(ND_ERR_NULL, "nd_module_train: module is NULL");
    m->training = training;
    for (int i = 0; i < m->n_children; i++)
        nd_module_train(m->children[i], training);
    return ND_OK;
}

bool nd_module_is_training(const nd_module *m) { return m && m->training; }

nd_tensor *nd_forward(nd_module *m, nd_tensor *x)
{
    if (!m)
        return nd_fail(ND_ERR_NULL, "nd_forward: module is NULL");
    if (!x)
        return nd_fail_null("nd_forward", 1);
    switch (m->kind) {
    case MOD_LINEAR: return nd_linear(x, m->weight, m->bias);
    case MOD_CONV2D: {
        const int64_t s[2] = {m->iconf[0], m->iconf[0]}, p[2] = {m->iconf[1], m->iconf[1]}, d[2] = {1, 1};
        return nd_conv2d(x, m->weight, m->bias, s, p, d, m->iconf[2]);
    }
    case MOD_EMBEDDING: return nd_embedding(m->weight, x);
    case MOD_LAYER_NORM: return nd_layer_norm(x, 1, &m->iconf[0], m->weight, m->bias, m->fconf[0]);
    case MOD_BATCH_NORM2D: {
        if (x->ndim != 4) {
            char b[ND_SHAPE_BUF];
            return nd_fail(ND_ERR_SHAPE, "nd_forward: BatchNorm2d expects a 4-d input, got %s",
                           nd_shape_str(b, sizeof b, x->ndim, x->shape));
        }
        nd_tensor *y = nd_batch_norm(x, m->running_mean, m->running_var, m->weight, m->bias, m->training, m->fconf[1],
                                     m->fconf[0]);
        if (y && m->training)
            (*(int64_t *)m->batches_tracked->storage->data)++;
        return y;
    }
    case MOD_DROPOUT: return nd_dropout(x, m->fconf[0], m->training);
    case MOD_RELU: return nd_relu(x);
    case MOD_GELU: return nd_gelu(x, m->fconf[0] != 0);
    case MOD_TANH: return nd_tanh(x);
    case MOD_FLATTEN: return nd_flatten(x, (int)m->iconf[0], (int)m->iconf[1]);
    case MOD_MAX_POOL2D: {
        const int64_t k[2] = {m->iconf[0], m->iconf[0]}, s[2] = {m->iconf[1], m->iconf[1]}, p[2] = {0, 0};
        return nd_max_pool2d(x, k, s, p, NULL);
    }
    case MOD_SEQUENTIAL: {
        nd_composite_begin();
        nd_tensor *y = x;
        for (int i = 0; i < m->n_children && y; i++)
            y = nd_forward(m->children[i], y);
        return nd_composite_end(y == x ? nd_return_same(x) : y);
    }
    }
    return nd_fail(ND_ERR_STATE, "nd_forward: unknown module kind");
}

/* Adds prefix.name for each tensor; recursion gives dotted paths. */
static nd_status collect(const nd_module *m, const char *prefix, nd_param_list *out, bool buffers)
{
    struct { const char *name; nd_tensor *t; bool buffer; } own[5] = {
        {"weight", m->weight, false}, {"bias", m->bias, false}, {"running_mean", m->running_mean, true},
        {"running_var", m->running_var, true}, {"num_batches_tracked", m->batches_tracked, true},
    };
    char path[512];
    for (int i = 0; i < 5; i++) {
        if (!own[i].t || (own[i].buffer && !buffers))
            continue;
        int w = snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", own[i].name);
        if (w < 0 || (size_t)w >= sizeof path)
            return nd_fail_status(ND_ERR_VALUE, "nd_module_parameters: module path too long");
        nd_status st = nd_params_add(out, path, own[i].t);
        if (st != ND_OK)
            return st;
    }
    for (int i = 0; i < m->n_children; i++) {
        int w = snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", m->child_names[i]);
        if (w < 0 || (size_t)w >= sizeof path)
            return nd_fail_status(ND_ERR_VALUE, "nd_module_parameters: module path too long");
        nd_status st = collect(m->children[i], path, out, buffers);
        if (st != ND_OK)
            return st;
    }
    return ND_OK;
}

nd_status nd_module_parameters(const nd_module *m, const char *prefix, nd_param_list *out)
{
    if (!m || !out)
        return nd_fail_status(ND_ERR_NULL, "nd_module_parameters: module and list are required");
    return collect(m, prefix ? prefix : "", out, false);
}

nd_status nd_module_state(const nd_module *m, const char *prefix, nd_param_list *out)
{
    if (!m || !out)
        return nd_fail_status(ND_ERR_NULL, "nd_module_state: module and list are required");
    return collect(m, prefix ? prefix : "", out, true);
}

nd_status nd_module_zero_grad(nd_module *m)
{
    if (!m)
        return nd_fail_status(ND_ERR_NULL, "nd_module_zero_grad: module is NULL");
    if (m->weight)
        nd_zero_grad(m->weight);
    if (m->bias)
        nd_zero_grad(m->bias);
    for (int i = 0; i < m->n_children; i++)
        nd_module_zero_grad(m->children[i]);
    return ND_OK;
}

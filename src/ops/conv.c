/* Convolution and pooling over NCHW tensors. conv2d = im2col + one batched GEMM (+ bias);
 * im2col's backward is col2im and col2im's is im2col, so conv gradients of any order follow.
 * max_pool2d keeps only its input: the backward finds each window's maximum again. */
#include "ops/common.h"

#include <string.h>

/* Output size of a window sweep; false (with an error) when the window does not fit. */
static bool sweep_size(const char *name, int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, int64_t *out,
                       const char *axis)
{
    int64_t span = d * (k - 1) + 1;
    if (k <= 0 || s <= 0 || p < 0 || d <= 0) {
        nd_fail(ND_ERR_VALUE, "%s: kernel, stride and dilation must be positive and padding non-negative (%s: kernel %lld, "
                "stride %lld, padding %lld, dilation %lld)", name, axis, (long long)k, (long long)s, (long long)p, (long long)d);
        return false;
    }
    if (in + 2 * p < span) {
        nd_fail(ND_ERR_SHAPE, "%s: calculated padded input size per channel (%lld along %s) is smaller than the "
                "kernel size (%lld); the kernel can't be greater than the actual input size", name, (long long)(in + 2 * p),
                axis, (long long)span);
        return false;
    }
    *out = (in + 2 * p - span) / s + 1;
    return true;
}

static bool geometry(const char *name, const nd_tensor *x, const int64_t k[2], const int64_t s[2], const int64_t p[2],
                     const int64_t d[2], nd_conv_geometry *g)
{
    if (x->ndim != 4) {
        char b[ND_SHAPE_BUF];
        nd_fail(ND_ERR_SHAPE, "%s: expected a 4-d input [N, C, H, W], got %s", name, nd_shape_str(b, sizeof b, x->ndim, x->shape));
        return false;
    }
    if (!nd_dtype_is_float(x->dtype)) {
        nd_fail(ND_ERR_DTYPE, "%s: expected a floating point input, got %s", name, nd_dtype_name(x->dtype));
        return false;
    }
    *g = (nd_conv_geometry){x->shape[0], x->shape[1], x->shape[2], x->shape[3], k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], 0, 0};
    return sweep_size(name, g->h, k[0], s[0], p[0], d[0], &g->oh, "height") &&
           sweep_size(name, g->w, k[1], s[1], p[1], d[1], &g->ow, "width");
}

static void save_geometry(nd_node *node, const nd_conv_geometry *g)
{
    if (!node)
        return;
    const int64_t *v = &g->n;
    for (int i = 0; i < 14; i++)
        node->iparams[i] = v[i];
}

static nd_conv_geometry load_geometry(const nd_node *node)
{
    nd_conv_geometry g;
    int64_t *v = &g.n;
    for (int i = 0; i < 14; i++)
        v[i] = node->iparams[i];
    return g;
}

static nd_tensor *col2im(nd_tensor *cols, const nd_conv_geometry *g);

/* im2col (internal op): [N, C, H, W] -> [C·kh·kw, N·oh·ow].  dx = col2im(g). */
static nd_tensor *im2col(nd_tensor *x, const nd_conv_geometry *g)
{
    nd_tensor *xc = nd_is_contiguous(x) ? x : nd_k_copy(x, x->dtype);
    int64_t shape[2] = {g->c * g->kh * g->kw, g->n * g->oh * g->ow};
    nd_tensor *out = xc ? nd_alloc(x->dtype, 2, shape, false) : NULL;
    if (out)
        nd_backend_get()->im2col(x->dtype, g, nd_data_ptr(xc), nd_data_ptr(out));
    if (xc != x)
        nd_unref(xc);
    if (!out)
        return NULL;
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_IM2COL, 1, &x, &node);
    save_geometry(node, g);
    return out;
}

nd_status nd_bw_im2col(nd_node *node, nd_tensor *grad, nd_tensor **gi)
{
    nd_conv_geometry g = load_geometry(node);
    gi[0] = col2im(grad, &g);
    return gi[0] ? ND_OK : nd_last_status();
}

/* col2im (internal op): the transpose of im2col, overlapping windows add up.  dcols = im2col(g). */
static nd_tensor *col2im(nd_tensor *cols, const nd_conv_geometry *g)
{
    nd_tensor *cc = nd_is_contiguous(cols) ? cols : nd_k_copy(cols, cols->dtype);
    int64_t shape[4] = {g->n, g->c, g->h, g->w};
    nd_tensor *out = cc ? nd_alloc(cols->dtype, 4, shape, false) : NULL;
    if (out)
        nd_backend_get()->col2im(cols->dtype, g, nd_data_ptr(cc), nd_data_ptr(out));
    if (cc != cols)
        nd_unref(cc);
    if (!out)
        return NULL;
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_COL2IM, 1, &cols, &node);
    save_geometry(node, g);
    return out;
}

nd_status nd_bw_col2im(nd_node *node, nd_tensor *grad, nd_tensor **gi)
{
    nd_conv_geometry g = load_geometry(node);
    gi[0] = im2col(grad, &g);
    return gi[0] ? ND_OK : nd_last_status();
}

/* conv2d with one group as one op: the backend convolves image by image with the columns in
 * scratch memory, so neither the forward nor the graph holds a column matrix for the batch.
 * Saves nothing beyond its inputs.  dx = col2im(wᵀ dy);  dw = Σ_images dy colsᵀ;  db = Σ dy over
 * N, oh, ow. Under create_graph the backward is built from im2col / col2im / mm instead. */
static nd_tensor *conv2d_fused(const char *name, nd_tensor *x, nd_tensor *w, nd_tensor *bias, const nd_conv_geometry *g)
{
    int64_t O = w->shape[0], shape[4] = {g->n, O, g->oh, g->ow};
    nd_tensor *xd = nd_dense(x), *wd = nd_dense(w), *bd = nd_dense(bias);
    nd_tensor *y = xd && wd && (!bias || bd) ? nd_alloc(x->dtype, 4, shape, false) : NULL;
    bool ok = y && (nd_numel(y) == 0 ||
                    nd_backend_get()->conv2d_forward(x->dtype, g, O, nd_data_ptr(xd), nd_data_ptr(wd),
                                                     bd ? nd_data_ptr(bd) : NULL, nd_data_ptr(y)));
    if (xd != x)
        nd_unref(xd);
    if (wd != w)
        nd_unref(wd);
    if (bd != bias)
        nd_unref(bd);
    if (!ok) {
        nd_unref(y);
        return y ? nd_fail(ND_ERR_NOMEM, "%s: out of memory for the column buffer", name) : NULL;
    }
    nd_tensor *ins[3] = {x, w, bias};
    nd_node *node = NULL;
    y = nd_finish(y, ND_OP_CONV2D, bias ? 3 : 2, ins, &node);
    save_geometry(node, g);
    return y;
}

nd_status nd_bw_conv2d(nd_node *node, nd_tensor *grad, nd_tensor **gi)
{
    nd_tensor *x = node->inputs[0], *w = node->inputs[1], *b = node->n_inputs > 2 ? node->inputs[2] : NULL;
    nd_conv_geometry g = load_geometry(node);
    int64_t O = w->shape[0], K = g.c * g.kh * g.kw;
    const bool want_db = b && b->requires_grad;
    if (nd_is_grad_enabled()) { /* recording the backward: differentiable pieces */
        if (want_db && !(gi[2] = nd_sum_dims(grad, 3, (const int64_t[]){0, 2, 3}, false)))
            return nd_last_status();
        int64_t w2[2] = {O, K}, rows[2] = {O, g.n * g.oh * g.ow};
        nd_tensor *dy = nd_reshape(nd_permute(grad, ND_DIMS(1, 0, 2, 3)), 2, rows); /* [O, N·L] */
        if (w->requires_grad && !(gi[1] = nd_reshape(nd_mm(dy, nd_t(im2col(x, &g))), 4, w->shape)))
            return nd_last_status();
        if (x->requires_grad && !(gi[0] = col2im(nd_mm(nd_t(nd_reshape(w, 2, w2)), dy), &g)))
            return nd_last_status();
        return ND_OK;
    }
    nd_tensor *xd = nd_dense(x), *wd = nd_dense(w), *gd = nd_dense(grad);
    nd_tensor *dx = x->requires_grad ? nd_register(nd_alloc(x->dtype, 4, x->shape, true)) : NULL;
    nd_tensor *dw = w->requires_grad ? nd_register(nd_alloc(w->dtype, 4, w->shape, true)) : NULL;
    nd_tensor *db = want_db ? nd_register(nd_alloc(b->dtype, 1, b->shape, true)) : NULL;
    bool ok = xd && wd && gd && (!x->requires_grad || dx) && (!w->requires_grad || dw) && (!want_db || db);
    if (ok && nd_numel(grad) > 0 && (dx || dw || db))
        ok = nd_backend_get()->conv2d_backward(x->dtype, &g, O, nd_data_ptr(xd), nd_data_ptr(wd), nd_data_ptr(gd),
                                              dx ? nd_data_ptr(dx) : NULL, dw ? nd_data_ptr(dw) : NULL,
                                              db ? nd_data_ptr(db) : NULL);
    if (xd != x)
        nd_unref(xd);
    if (wd != w)
        nd_unref(wd);
    if (gd != grad)
        nd_unref(gd);
    if (!ok)
        return nd_fail_status(ND_ERR_NOMEM, "nd_conv2d backward: out of memory");
    gi[0] = dx, gi[1] = dw;
    if (want_db)
        gi[2] = db;
    return ND_OK;
}

/* conv2d: x [N, C, H, W], w [O, C/groups, kh, kw], bias [O] or NULL -> [N, O, oh, ow]. */
nd_tensor *nd_conv2d(nd_tensor *x, nd_tensor *w, nd_tensor *bias, const int64_t stride[2], const int64_t padding[2],
                     const int64_t dilation[2], int64_t groups)
{
    const char *name = "nd_conv2d";
    nd_tensor *ins[2] = {x, w};
    if (!nd_check_inputs(name, 2, ins))
        return NULL;
    if (!stride || !padding || !dilation)
        return nd_fail(ND_ERR_NULL, "%s: stride, padding and dilation arrays are required", name);
    char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
    if (w->ndim != 4 || groups <= 0 || x->ndim != 4 || w->shape[0] % groups != 0 || x->shape[1] != w->shape[1] * groups)
        return nd_fail(ND_ERR_SHAPE, "%s: input %s and weight %s do not fit (expected weight [O, C/groups, kh, kw] with "
                       "C = %lld, groups = %lld dividing O)", name, nd_shape_str(s1, sizeof s1, x->ndim, x->shape),
                       nd_shape_str(s2, sizeof s2, w->ndim, w->shape), x->ndim == 4 ? (long long)x->shape[1] : -1LL,
                       (long long)groups);
    if (w->dtype != x->dtype)
        return nd_fail(ND_ERR_DTYPE, "%s: input (%s) and weight (%s) must have the same dtype", name,
                       nd_dtype_name(x->dtype), nd_dtype_name(w->dtype));
    int64_t O = w->shape[0];
    if (bias && (bias->ndim != 1 || bias->shape[0] != O))
        return nd_fail(ND_ERR_SHAPE, "%s: bias %s must have shape [%lld]", name,
                       nd_shape_str(s1, sizeof s1, bias->ndim, bias->shape), (long long)O);
    nd_conv_geometry g;
    const int64_t k[2] = {w->shape[2], w->shape[3]};
    if (!geometry(name, x, k, stride, padding, dilation, &g))
        return NULL;
    int64_t K = (x->shape[1] / groups) * k[0] * k[1], NL = g.n * g.oh * g.ow;
    if (groups == 1 && (!bias || bias->dtype == x->dtype))
        return conv2d_fused(name, x, w, bias, &g);
    nd_composite_begin();
    nd_tensor *cols = im2col(x, &g); /* [C·kh·kw, N·L]: the whole batch in one product */
    nd_tensor *y;
    if (groups == 1) {
        int64_t w2[2] = {O, K};
        y = nd_mm(nd_reshape(w, 2, w2), cols); /* [O, N·L] */
    } else {
        int64_t cg[3] = {groups, K, NL}, wg[3] = {groups, O / groups, K};
        y = nd_bmm(nd_reshape(w, 3, wg), nd_reshape(cols, 3, cg)); /* [G, O/G, N·L] */
    }
    int64_t by_channel[4] = {O, g.n, g.oh, g.ow};
    y = nd_permute(nd_reshape(y, 4, by_channel), ND_DIMS(1, 0, 2, 3)); /* [N, O, oh, ow] */
    if (bias)
        y = nd_add(y, nd_reshape(bias, 4, (const int64_t[]){1, O, 1, 1}));
    return nd_composite_end(nd_name_grad_fn(y, "ConvolutionBackward0", 2, ins));
}

/* conv1d: x [N, C, L], w [O, C/groups, k] — a conv2d over a height of 1. */
nd_tensor *nd_conv1d(nd_tensor *x, nd_tensor *w, nd_tensor *bias, int64_t stride, int64_t padding, int64_t dilation,
                     int64_t groups)
{
    const char *name = "nd_conv1d";
    nd_tensor *ins[2] = {x, w};
    if (!nd_check_inputs(name, 2, ins))
        return NULL;
    char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
    if (x->ndim != 3 || w->ndim != 3 || groups <= 0 || w->shape[0] % groups != 0 || x->shape[1] != w->shape[1] * groups)
        return nd_fail(ND_ERR_SHAPE, "%s: input %s and weight %s do not fit (expected input [N, C, L] and weight "
                       "[O, C/groups, k] with groups = %lld dividing O)", name, nd_shape_str(s1, sizeof s1, x->ndim, x->shape),
                       nd_shape_str(s2, sizeof s2, w->ndim, w->shape), (long long)groups);
    if (w->dtype != x->dtype)
        return nd_fail(ND_ERR_DTYPE, "%s: input (%s) and weight (%s) must have the same dtype", name,
                       nd_dtype_name(x->dtype), nd_dtype_name(w->dtype));
    if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))
        return nd_fail(ND_ERR_SHAPE, "%s: bias %s must have shape [%lld]", name,
                       nd_shape_str(s1, sizeof s1, bias->ndim, bias->shape), (long long)w->shape[0]);
    int64_t out_len;
    if (!nd_dtype_is_float(x->dtype))
        return nd_fail(ND_ERR_DTYPE, "%s: expected a floating point input, got %s", name, nd_dtype_name(x->dtype));
    if (!sweep_size(name, x->shape[2], w->shape[2], stride, padding, dilation, &out_len, "length"))
        return NULL;
    const int64_t s[2] = {1, stride}, p[2] = {0, padding}, d[2] = {1, dilation};
    nd_composite_begin();
    nd_tensor *y = nd_conv2d(nd_unsqueeze(x, 2), nd_unsqueeze(w, 2), bias, s, p, d, groups);
    return nd_composite_end(nd_name_grad_fn(nd_squeeze_dim(y, 2), "ConvolutionBackward0", 2, ins));
}

/* max_pool2d: window maxima; *indices (if not NULL) gets the int64 flat position h·W + w of
 * each maximum in its input plane.  dx = g scattered to those positions. */
nd_tensor *nd_max_pool2d(nd_tensor *x, const int64_t kernel[2], const int64_t stride[2], const int64_t padding[2],
                         nd_tensor **indices)
{
    const char *name = "nd_max_pool2d";
    if (indices)
        *indices = NULL;
    if (!x)
        return nd_fail_null(name, 0);
    if (!kernel || !padding)
        return nd_fail(ND_ERR_NULL, "%s: kernel and padding arrays are required", name);
    const int64_t s[2] = {stride && stride[0] ? stride[0] : kernel[0], stride && stride[1] ? stride[1] : kernel[1]};
    const int64_t d[2] = {1, 1};
    if (padding[0] * 2 > kernel[0] || padding[1] * 2 > kernel[1])
        return nd_fail(ND_ERR_VALUE, "%s: pad should be at most half of effective kernel size, but got pad=(%lld, %lld) "
                       "and kernel_size=(%lld, %lld)", name, (long long)padding[0], (long long)padding[1],
                       (long long)kernel[0], (long long)kernel[1]);
    nd_conv_geometry g;
    if (!geometry(name, x, kernel, s, padding, d, &g))
        return NULL;
    nd_tensor *xc = nd_dense(x);
    int64_t shape[4] = {g.n, g.c, g.oh, g.ow};
    nd_tensor *out = xc ? nd_alloc(x->dtype, 4, shape, false) : NULL;
    nd_tensor *idx = out && indices ? nd_alloc(ND_INT64, 4, shape, false) : NULL;
    if (out && (idx || !indices))
        nd_backend_get()->max_pool2d(x->dtype, &g, nd_data_ptr(xc), nd_data_ptr(out), idx ? nd_data_ptr(idx) : NULL);
    if (xc != x)
        nd_unref(xc);
    if (!out || (indices && !idx)) {
        nd_unref(out);
        return NULL;
    }
    nd_node *node = NULL;
    out = nd_finish(out, ND_OP_MAX_POOL2D, 1, &x, &node);
    save_geometry(node, &g);
    if (out && indices)
        *indices = nd_register(idx);
    else
        nd_unref(idx);
    return out;
}

/* The gradient goes to each window's first maximum (its last NaN). Without a recorded backward the
 * backend finds it again from x; under create_graph the argmax indices are recomputed and the
 * gradient scattered with scatter_add, which is differentiable. Nothing but x is kept. */
nd_status nd_bw_max_pool2d(nd_node *node, nd_tensor *grad, nd_tensor **gi)
{
    nd_tensor *x = node->inputs[0];
    nd_conv_geometry g = load_geometry(node);
    int64_t out_shape[4] = {g.n, g.c, g.oh, g.ow};
    nd_tensor *xd = nd_dense(x);
    if (!xd)
        return nd_last_status();
    if (!nd_is_grad_enabled()) {
        nd_tensor *gd = nd_dense(grad);
        nd_tensor *dx = gd ? nd_register(nd_alloc(x->dtype, 4, x->shape, nd_numel(grad) == 0)) : NULL;
        if (dx && nd_numel(grad) > 0)
            nd_backend_get()->max_pool2d_backward(x->dtype, &g, nd_data_ptr(xd), nd_data_ptr(gd), nd_data_ptr(dx));
        if (gd && gd != grad)
            nd_unref(gd);
        if (xd != x)
            nd_unref(xd);
        gi[0] = dx;
        return dx ? ND_OK : nd_last_status();
    }
    nd_tensor *vals = nd_alloc(x->dtype, 4, out_shape, false);
    nd_tensor *idx = vals ? nd_alloc(ND_INT64, 4, out_shape, false) : NULL;
    if (idx)
        nd_backend_get()->max_pool2d(x->dtype, &g, nd_data_ptr(xd), nd_data_ptr(vals), nd_data_ptr(idx));
    nd_unref(vals);
    if (xd != x)
        nd_unref(xd);
    if (!nd_register(idx))
        return nd_last_status();
    int64_t planes[3] = {x->shape[0], x->shape[1], x->shape[2] * x->shape[3]};
    int64_t flat[3] = {idx->shape[0], idx->shape[1], idx->shape[2] * idx->shape[3]};
    nd_tensor *zeros = nd_register(nd_k_full(grad->dtype, 3, planes, 0.0));
    nd_tensor *spread = zeros ? nd_scatter_add(zeros, 2, nd_reshape(idx, 3, flat), nd_reshape(grad, 3, flat)) : NULL;
    gi[0] = spread ? nd_reshape(spread, 4, x->shape) : NULL;
    return gi[0] ? ND_OK : nd_last_status();
}

/* avg_pool2d (count_include_pad = true, as PyTorch's default): the mean of each window with
 * padding counted as zeros — im2col of every plane, then a mean. */
nd_tensor *nd_avg_pool2d(nd_tensor *x, const int64_t kernel[2], const int64_t stride[2], const int64_t padding[2])
{
    const char *name = "nd_avg_pool2d";
    if (!x)
        return nd_fail_null(name, 0);
    if (!kernel || !padding)
        return nd_fail(ND_ERR_NULL, "%s: kernel and padding arrays are required", name);
    const int64_t s[2] = {stride && stride[0] ? stride[0] : kernel[0], stride && stride[1] ? stride[1] : kernel[1]};
    const int64_t d[2] = {1, 1};
    if (padding[0] * 2 > kernel[0] || padding[1] * 2 > kernel[1])
        return nd_fail(ND_ERR_VALUE, "%s: pad should be at most half of kernel size, but got pad=(%lld, %lld) and "
                       "kernel_size=(%lld, %lld)", name, (long long)padding[0], (long long)padding[1], (long long)kernel[0],
                       (long long)kernel[1]);
    nd_conv_geometry g;
    if (!geometry(name, x, kernel, s, padding, d, &g))
        return NULL;
    int64_t planes[4] = {g.n * g.c, 1, g.h, g.w};
    nd_conv_geometry pg = g;
    pg.n = g.n * g.c;
    pg.c = 1;
    nd_composite_begin();
    nd_tensor *cols = im2col(nd_reshape(x, 4, planes), &pg); /* [kh·kw, N·C·L] */
    nd_tensor *m = nd_mean_dims(cols, 1, (const int64_t[]){0}, false);
    int64_t out_shape[4] = {g.n, g.c, g.oh, g.ow};
    return nd_composite_end(nd_name_grad_fn(nd_reshape(m, 4, out_shape), "AvgPool2DBackward0", 1, &x));
}

/* The [out, in] averaging matrix of adaptive pooling along one axis: row i averages
 * [floor(i·in/out), ceil((i+1)·in/out)). */
static nd_tensor *adaptive_matrix(nd_dtype dtype, int64_t out, int64_t in)
{
    int64_t shape[2] = {out, in};
    nd_tensor *m = nd_alloc(dtype, 2, shape, true);
    if (!m)
        return NULL;
    for (int64_t i = 0; i < out; i++) {
        int64_t start = (i * in) / out, end = ((i + 1) * in + out - 1) / out;
        for (int64_t j = start; j < end; j++)
            nd_store((char *)m->storage->data + (i * in + j) * (int64_t)nd_dtype_size(dtype), dtype, 1.0 / (double)(end - start));
    }
    return nd_register(m);
}

/* adaptive_avg_pool2d to [oh, ow]: averaging over a rectangle is separable, so it is
 * P_h · x · P_wᵀ with the averaging matrices above. */
nd_tensor *nd_adaptive_avg_pool2d(nd_tensor *x, int64_t out_h, int64_t out_w)
{
    const char *name = "nd_adaptive_avg_pool2d";
    if (!x)
        return nd_fail_null(name, 0);
    if (x->ndim != 4 || !nd_dtype_is_float(x->dtype)) {
        char b[ND_SHAPE_BUF];
        return nd_fail(ND_ERR_SHAPE, "%s: expected a 4-d floating point input [N, C, H, W], got %s %s", name,
                       nd_dtype_name(x->dtype), nd_shape_str(b, sizeof b, x->ndim, x->shape));
    }
    if (out_h <= 0 || out_w <= 0)
        return nd_fail(ND_ERR_VALUE, "%s: output size must be positive, got (%lld, %lld)", name, (long long)out_h,
                       (long long)out_w);
    if (x->shape[2] == 0 || x->shape[3] == 0)
        return nd_fail(ND_ERR_SHAPE, "%s: input height and width must be non-empty", name);
    nd_composite_begin();
    nd_tensor *ph = adaptive_matrix(x->dtype, out_h, x->shape[2]);
    nd_tensor *pw = adaptive_matrix(x->dtype, out_w, x->shape[3]);
    /* PyTorch takes a mean for a 1 x 1 output and its adaptive pooling kernel otherwise */
    return nd_composite_end(nd_name_grad_fn(nd_matmul(nd_matmul(ph, x), nd_t(pw)),
                                            out_h == 1 && out_w == 1 ? "MeanBackward1" : "AdaptiveAvgPool2DBackward0", 1, &x));
}

/* Printing in PyTorch's format (torch/_tensor_str.py of 1.13: precision 4, linewidth 80,
 * threshold 1000, edgeitems 3), so output can be compared with PyTorch's text. */
#include "autograd/node.h"
#include "core/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { PRECISION = 4, LINEWIDTH = 80, THRESHOLD = 1000, EDGEITEMS = 3 };

typedef struct strbuf {
    char *data;
    size_t len, cap;
    bool failed;
} strbuf;

static void sb_append(strbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            b->failed = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sb_puts(strbuf *b, const char *s) { sb_append(b, s, strlen(s)); }

static void sb_spaces(strbuf *b, int n)
{
    for (int i = 0; i < n; i++)
        sb_append(b, " ", 1);
}

typedef struct formatter {
    bool floating;
    bool int_mode;
    bool sci_mode;
    int max_width;
} formatter;

/* Python prints non-finite floats as nan / inf / -inf whatever the format. */
static int format_nonfinite(char *out, size_t cap, double v)
{
    if (isnan(v))
        return snprintf(out, cap, "nan");
    return snprintf(out, cap, v < 0 ? "-inf" : "inf");
}

/* Elements are read through their pointer so int64 values past 2^53 print exactly. */
static int format_raw(const formatter *f, char *out, size_t cap, const char *elem, nd_dtype dtype)
{
    if (!f->floating) {
        if (dtype == ND_BOOL)
            return snprintf(out, cap, "%s", *(const uint8_t *)elem ? "True" : "False");
        return snprintf(out, cap, "%lld", (long long)*(const int64_t *)elem);
    }
    double v = nd_load(elem, dtype);
    if (!isfinite(v))
        return format_nonfinite(out, cap, v);
    if (f->sci_mode)
        return snprintf(out, cap, "%.*e", PRECISION, v);
    if (f->int_mode)
        return snprintf(out, cap, "%.0f.", v);
    return snprintf(out, cap, "%.*f", PRECISION, v);
}

/* Walks the elements that will be shown (all of them, or the edges when summarising). */
typedef void (*visit_fn)(const char *elem, void *ctx);

static void visit_shown(const nd_tensor *t, int dim, int64_t off, bool summarize, visit_fn fn, void *ctx)
{
    size_t es = nd_dtype_size(t->dtype);
    if (dim == t->ndim) {
        fn((const char *)t->storage->data + off * (int64_t)es, ctx);
        return;
    }
    int64_t n = t->shape[dim];
    for (int64_t i = 0; i < n; i++) {
        if (summarize && n > 2 * EDGEITEMS && i == EDGEITEMS)
            i = n - EDGEITEMS;
        visit_shown(t, dim + 1, off + i * t->strides[dim], summarize, fn, ctx);
    }
}

typedef struct scan_state {
    nd_dtype dtype;
    bool any;
    bool all_integral;
    double min_abs, max_abs;
    int int_width;
} scan_state;

static void scan_value(const char *elem, void *ctx)
{
    scan_state *s = ctx;
    if (!nd_dtype_is_float(s->dtype)) {
        char buf[32];
        int w = s->dtype == ND_BOOL ? (*(const uint8_t *)elem ? 4 : 5)
                                    : snprintf(buf, sizeof buf, "%lld", (long long)*(const int64_t *)elem);
        if (w > s->int_width)
            s->int_width = w;
        return;
    }
    double v = nd_load(elem, s->dtype);
    if (!isfinite(v) || v == 0)
        return;
    double a = fabs(v);
    if (!s->any) {
        s->min_abs = s->max_abs = a;
        s->any = true;
    }
    if (a < s->min_abs)
        s->min_abs = a;
    if (a > s->max_abs)
        s->max_abs = a;
    if (v != ceil(v))
        s->all_integral = false;
}

typedef struct width_state {
    formatter *f;
    nd_dtype dtype;
} width_state;

static void width_value(const char *elem, void *ctx)
{
    width_state *w = ctx;
    double v = nd_load(elem, w->dtype);
    if (!isfinite(v) || v == 0)
        return;
    char buf[64];
    int n = format_raw(w->f, buf, sizeof buf, elem, w->dtype);
    if (n > w->f->max_width)
        w->f->max_width = n;
}

static formatter make_formatter(const nd_tensor *t, bool summarize)
{
    formatter f = {nd_dtype_is_float(t->dtype), true, false, 1};
    scan_state s = {t->dtype, false, true, 0, 0, 1};
    visit_shown(t, 0, t->offset, summarize, scan_value, &s);
    if (!f.floating) {
        f.max_width = s.int_width;
        return f;
    }
    if (!s.any)
        return f;
    f.int_mode = s.all_integral;
    /* PyTorch compares these in float64 after converting the float values. */
    if (f.int_mode)
        f.sci_mode = s.max_abs / s.min_abs > 1000.0 || s.max_abs > 1.0e8;
    else
        f.sci_mode = s.max_abs / s.min_abs > 1000.0 || s.max_abs > 1.0e8 || s.min_abs < 1.0e-4;
    width_state w = {&f, t->dtype};
    visit_shown(t, 0, t->offset, summarize, width_value, &w);
    return f;
}

static void format_value(strbuf *b, const formatter *f, const char *elem, nd_dtype dtype)
{
    char buf[64];
    int n = format_raw(f, buf, sizeof buf, elem, dtype);
    sb_spaces(b, f->max_width - n);
    sb_puts(b, buf);
}

static void vector_str(strbuf *b, const nd_tensor *t, int64_t off, int indent, bool summarize, const formatter *f)
{
    int element_length = f->max_width + 2;
    int per_line = (LINEWIDTH - indent) / element_length;
    if (per_line < 1)
        per_line = 1;
    int64_t n = t->shape[t->ndim - 1], stride = t->strides[t->ndim - 1];
    size_t es = nd_dtype_size(t->dtype);
    sb_puts(b, "[");
    int64_t shown = 0;
    for (int64_t i = 0; i < n; i++) {
        bool ellipsis = summarize && n > 2 * EDGEITEMS && i == EDGEITEMS;
        if (shown > 0) {
            if (shown % per_line == 0) {
                sb_puts(b, ",\n");
                sb_spaces(b, indent + 1);
            } else {
                sb_puts(b, ", ");
            }
        }
        if (ellipsis) {
            sb_puts(b, " ...");
            i = n - EDGEITEMS - 1;
        } else {
            format_value(b, f, (const char *)t->storage->data + (off + i * stride) * (int64_t)es, t->dtype);
        }
        shown++;
    }
    sb_puts(b, "]");
}

static void tensor_str(strbuf *b, const nd_tensor *t, int dim, int64_t off, int indent, bool summarize,
                       const formatter *f)
{
    int remaining = t->ndim - dim;
    if (remaining == 1) {
        /* Reuse vector_str on the last dim through a shifted view of the geometry. */
        vector_str(b, t, off, indent, summarize, f);
        return;
    }
    int64_t n = t->shape[dim];
    sb_puts(b, "[");
    for (int64_t i = 0; i < n; i++) {
        if (i > 0) {
            sb_puts(b, ",");
            for (int k = 0; k < remaining - 1; k++)
                sb_puts(b, "\n");
            sb_spaces(b, indent + 1);
        }
        if (summarize && n > 2 * EDGEITEMS && i == EDGEITEMS) {
            sb_puts(b, "...");
            i = n - EDGEITEMS - 1;
            continue;
        }
        tensor_str(b, t, dim + 1, off + i * t->strides[dim], indent + 1, summarize, f);
    }
    sb_puts(b, "]");
}

static void add_suffixes(strbuf *b, char suffixes[][ND_SHAPE_BUF + 16], int n, int indent)
{
    const char *last_nl = strrchr(b->data ? b->data : "", '\n');
    /* Python: len(s) - s.rfind('\\n') + 1, where rfind gives -1 when there is no newline */
    int last_line_len = (int)(last_nl ? (size_t)(b->data + b->len - last_nl) + 1 : b->len + 2);
    for (int i = 0; i < n; i++) {
        int len = (int)strlen(suffixes[i]);
        if (last_line_len + len + 2 > LINEWIDTH) {
            sb_puts(b, ",\n");
            sb_spaces(b, indent);
            last_line_len = indent + len;
        } else {
            sb_puts(b, ", ");
            last_line_len += len + 2;
        }
        sb_puts(b, suffixes[i]);
    }
    sb_puts(b, ")");
}

char *nd_to_string(const nd_tensor *t)
{
    if (!t)
        return nd_fail_null("nd_to_string", 0);
    strbuf b = {0};
    const int indent = 7; /* strlen("tensor(") */
    sb_puts(&b, "tensor(");
    char suffixes[4][ND_SHAPE_BUF + 16];
    int ns = 0;
    int64_t numel = nd_numel(t);
    bool default_dtype = t->dtype != ND_FLOAT64;
    if (numel == 0) {
        if (t->ndim != 1) {
            char shape[ND_SHAPE_BUF];
            int used = snprintf(shape, sizeof shape, "size=(");
            for (int i = 0; i < t->ndim; i++)
                used += snprintf(shape + used, sizeof shape - (size_t)used, i ? ", %lld" : "%lld",
                                 (long long)t->shape[i]);
            snprintf(shape + used, sizeof shape - (size_t)used, t->ndim == 1 ? ",)" : ")");
            snprintf(suffixes[ns++], ND_SHAPE_BUF + 16, "%s", shape);
        }
        if (t->dtype != ND_FLOAT32)
            snprintf(suffixes[ns++], ND_SHAPE_BUF + 16, "dtype=torch.%s", nd_dtype_name(t->dtype));
        sb_puts(&b, "[]");
    } else {
        if (!default_dtype)
            snprintf(suffixes[ns++], ND_SHAPE_BUF + 16, "dtype=torch.%s", nd_dtype_name(t->dtype));
        bool summarize = numel > THRESHOLD;
        formatter f = make_formatter(t, summarize);
        if (t->ndim == 0)
            format_value(&b, &f, nd_data_ptr(t), t->dtype);
        else
            tensor_str(&b, t, 0, t->offset, indent, summarize, &f);
    }
    if (t->grad_fn)
        snprintf(suffixes[ns++], ND_SHAPE_BUF + 16, "grad_fn=<%s>", nd_node_name(t->grad_fn));
    else if (t->requires_grad)
        snprintf(suffixes[ns++], ND_SHAPE_BUF + 16, "requires_grad=True");
    add_suffixes(&b, suffixes, ns, indent);
    if (b.failed) {
        free(b.data);
        return nd_fail(ND_ERR_NOMEM, "nd_to_string: out of memory");
    }
    return b.data;
}

nd_status nd_fprint(FILE *stream, const nd_tensor *t)
{
    if (!stream)
        return nd_fail_status(ND_ERR_NULL, "nd_fprint: stream is NULL");
    if (!t)
        return nd_fail_null("nd_fprint", 0), nd_last_status();
    char *s = nd_to_string(t);
    if (!s)
        return nd_last_status();
    fputs(s, stream);
    fputc('\n', stream);
    free(s);
    return ND_OK;
}

nd_status nd_print(const nd_tensor *t) { return nd_fprint(stdout, t); }

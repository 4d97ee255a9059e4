/* dtypes: sizes, names, element load/store and PyTorch's type promotion for our four types. */
#include "core/internal.h"

size_t(nd_dtype_size)(nd_dtype d)
{
    switch (d) {
    case ND_FLOAT32: return 4;
    case ND_FLOAT64: return 8;
    case ND_INT64: return 8;
    case ND_BOOL: return 1;
    }
    return 0;
}

const char *nd_dtype_name(nd_dtype d)
{
    switch (d) {
    case ND_FLOAT32: return "float32";
    case ND_FLOAT64: return "float64";
    case ND_INT64: return "int64";
    case ND_BOOL: return "bool";
    }
    return "invalid";
}

bool nd_dtype_valid(int d) { return d >= ND_FLOAT32 && d <= ND_BOOL; }
bool nd_dtype_is_float(nd_dtype d) { return d == ND_FLOAT32 || d == ND_FLOAT64; }

static int category(nd_dtype d) { return d == ND_BOOL ? 0 : d == ND_INT64 ? 1 : 2; }

/* Within a category the wider type wins; across categories the higher category. */
static nd_dtype wider(nd_dtype a, nd_dtype b)
{
    if (category(a) != category(b))
        return category(a) > category(b) ? a : b;
    return nd_dtype_size(a) >= nd_dtype_size(b) ? a : b;
}

/* PyTorch's rule: dimensioned tensors decide, unless a zero-dim tensor (or, weaker still, a
 * wrapped C number) is of a higher category; a wrapped float then means the default float32. */
nd_dtype nd_promote(const nd_tensor *a, const nd_tensor *b)
{
    if (a->dtype == b->dtype) /* every rule below agrees when the dtypes do */
        return a->dtype;
    const nd_tensor *ops[2] = {a, b};
    int have[3] = {0, 0, 0};
    nd_dtype best[3] = {ND_BOOL, ND_BOOL, ND_BOOL};
    for (int i = 0; i < 2; i++) {
        int tier = ops[i]->wrapped_number ? 2 : ops[i]->ndim == 0 ? 1 : 0;
        best[tier] = have[tier] ? wider(best[tier], ops[i]->dtype) : ops[i]->dtype;
        have[tier] = 1;
    }
    nd_dtype result = ND_BOOL;
    int any = 0;
    for (int tier = 0; tier < 3; tier++) {
        if (!have[tier])
            continue;
        nd_dtype d = best[tier];
        if (tier == 2 && any && category(d) > category(result))
            d = category(d) == 2 ? ND_FLOAT32 : ND_INT64;
        if (!any)
            result = d;
        else if (category(d) > category(result))
            result = d;
        any = 1;
    }
    return result;
}

double nd_load(const void *p, nd_dtype d)
{
    switch (d) {
    case ND_FLOAT32: return *(const float *)p;
    case ND_FLOAT64: return *(const double *)p;
    case ND_INT64: return (double)*(const int64_t *)p;
    case ND_BOOL: return *(const uint8_t *)p ? 1.0 : 0.0;
    }
    return 0;
}

void nd_store(void *p, nd_dtype d, double v)
{
    switch (d) {
    case ND_FLOAT32: *(float *)p = (float)v; break;
    case ND_FLOAT64: *(double *)p = v; break;
    case ND_INT64: *(int64_t *)p = v != v ? 0 : (v >= 9.2e18 ? INT64_MAX : v <= -9.2e18 ? INT64_MIN : (int64_t)v); break;
    case ND_BOOL: *(uint8_t *)p = v != 0; break;
    }
}

nd_dtype nd_promote_types(nd_dtype a, nd_dtype b) { return wider(a, b); }

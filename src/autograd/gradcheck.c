/* nd_gradcheck: the analytic Jacobian (one backward pass per output element) against central
 * finite differences (two forward passes per input element), in float64. */
#include "ops/common.h"

#include <math.h>
#include <stdlib.h>

static bool overlaps_itself(const nd_tensor *t)
{
    for (int i = 0; i < t->ndim; i++)
        if (t->strides[i] == 0 && t->shape[i] > 1)
            return true;
    return false;
}

/* Runs fn without recording and copies its output as doubles into vals (numel m). */
static nd_status eval(nd_function fn, void *user, nd_tensor *const *inputs, double *vals, int64_t m)
{
    nd_scope_begin();
    nd_no_grad_begin();
    nd_tensor *out = fn(inputs, user);
    nd_no_grad_end();
    nd_status st = ND_OK;
    if (!out)
        st = nd_last_status() != ND_OK ? nd_last_status() : nd_fail_status(ND_ERR_VALUE, "nd_gradcheck: fn returned NULL");
    else if (nd_numel(out) != m)
        st = nd_fail_status(ND_ERR_SHAPE, "nd_gradcheck: fn's output changed size between calls");
    else
        st = nd_copy_out(out, vals, (size_t)m * sizeof(double), ND_FLOAT64);
    nd_scope_end();
    return st;
}

nd_status nd_gradcheck(nd_function fn, void *user, int n_inputs, nd_tensor *const *inputs, double eps, double atol,
                       double rtol)
{
    const char *name = "nd_gradcheck";
    if (!fn || !inputs || n_inputs <= 0)
        return nd_fail_status(ND_ERR_NULL, "%s: needs a function and at least one input", name);
    int n_req = 0;
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i])
            return nd_fail_null(name, i), nd_last_status();
        if (!inputs[i]->requires_grad)
            continue;
        if (inputs[i]->dtype != ND_FLOAT64)
            return nd_fail_status(ND_ERR_DTYPE, "%s: input %d is %s; gradcheck needs float64 inputs", name, i,
                                  nd_dtype_name(inputs[i]->dtype));
        if (overlaps_itself(inputs[i]))
            return nd_fail_status(ND_ERR_VALUE, "%s: input %d has overlapping memory (it is expanded); pass the base "
                                  "tensor and expand inside fn", name, i);
        n_req++;
    }
    if (n_req == 0)
        return nd_fail_status(ND_ERR_GRAD, "%s: no input requires grad", name);

    nd_tensor *req[64];
    int req_index[64];
    if (n_req > 64)
        return nd_fail_status(ND_ERR_VALUE, "%s: at most 64 inputs", name);
    for (int i = 0, k = 0; i < n_inputs; i++)
        if (inputs[i]->requires_grad)
            req_index[k] = i, req[k++] = inputs[i];

    nd_scope_begin();
    nd_status st = ND_OK;
    nd_tensor *out = fn(inputs, user);
    int64_t m = 0;
    if (!out)
        st = nd_last_status() != ND_OK ? nd_last_status() : nd_fail_status(ND_ERR_VALUE, "%s: fn returned NULL", name);
    else if (!nd_dtype_is_float(out->dtype))
        st = nd_fail_status(ND_ERR_DTYPE, "%s: fn's output must be floating point", name);
    else
        m = nd_numel(out);

    double *analytic = NULL, *plus = NULL, *minus = NULL;
    int64_t total = 0;
    int64_t offsets[65];
    for (int k = 0; k < n_req; k++) {
        offsets[k] = total;
        total += nd_numel(req[k]);
    }
    offsets[n_req] = total;
    if (st == ND_OK) {
        analytic = calloc((size_t)(m * total) + 1, sizeof(double)); /* [output element][input element] */
        plus = calloc((size_t)m + 1, sizeof(double));
        minus = calloc((size_t)m + 1, sizeof(double));
        if (!analytic || !plus || !minus)
            st = nd_fail_status(ND_ERR_NOMEM, "%s: out of memory", name);
    }
    /* Analytic: row j of the Jacobian from a backward pass seeded with the j-th unit vector. */
    for (int64_t j = 0; j < m && st == ND_OK && out->requires_grad; j++) {
        nd_scope_begin();
        nd_tensor *seed = nd_zeros(out->dtype, out->ndim, out->shape);
        nd_tensor *grads[64];
        if (!seed)
            st = nd_last_status();
        else {
            nd_store(nd_elem_ptr(seed, j), seed->dtype, 1.0);
            st = nd_autograd_grad(1, &out, &seed, n_req, req, grads, false);
        }
        for (int k = 0; k < n_req && st == ND_OK; k++)
            st = nd_copy_out(grads[k], analytic + j * total + offsets[k], (size_t)nd_numel(req[k]) * sizeof(double),
                             ND_FLOAT64);
        nd_scope_end();
    }
    /* Numeric: perturb each input element in place (restored afterwards). */
    for (int k = 0; k < n_req && st == ND_OK; k++) {
        int64_t n = nd_numel(req[k]);
        for (int64_t e = 0; e < n && st == ND_OK; e++) {
            double *p = (double *)nd_elem_ptr(req[k], e);
            double orig = *p;
            *p = orig + eps;
            st = eval(fn, user, inputs, plus, m);
            *p = orig - eps;
            if (st == ND_OK)
                st = eval(fn, user, inputs, minus, m);
            *p = orig;
            for (int64_t j = 0; j < m && st == ND_OK; j++) {
                double numeric = (plus[j] - minus[j]) / (2 * eps);
                double a = analytic[j * total + offsets[k] + e];
                if (!(fabs(a - numeric) <= atol + rtol * fabs(numeric)))
                    st = nd_fail_status(ND_ERR_GRAD,
                                        "%s: Jacobian mismatch for output element %lld with respect to input %d, "
                                        "element %lld: analytic %.10g, numerical %.10g", name, (long long)j,
                                        req_index[k], (long long)e, a, numeric);
            }
        }
    }
    free(analytic);
    free(plus);
    free(minus);
    nd_scope_end();
    return st;
}

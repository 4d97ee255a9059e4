/* Thread-local error slot: an op that fails records a code and a message naming the op. */
#include "core/internal.h"

#include <stdio.h>
#include <string.h>

static ND_THREAD_LOCAL nd_status last_status = ND_OK;
static ND_THREAD_LOCAL char last_message[1024];
static ND_THREAD_LOCAL nd_error_handler handler = NULL;
static ND_THREAD_LOCAL void *handler_user = NULL;

const char *nd_last_error(void) { return last_status == ND_OK ? "" : last_message; }
nd_status nd_last_status(void) { return last_status; }

void nd_clear_error(void)
{
    last_status = ND_OK;
    last_message[0] = '\0';
}

const char *nd_status_name(nd_status status)
{
    switch (status) {
#define ND_STATUS_CASE_(code, text) \
    case code:                      \
        return text;
        ND_STATUS_LIST(ND_STATUS_CASE_)
#undef ND_STATUS_CASE_
    }
    return "unknown status";
}

void nd_set_error_handler(nd_error_handler h, void *user)
{
    handler = h;
    handler_user = user;
}

static void record(nd_status status, const char *fmt, va_list ap)
{
    last_status = status;
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    if (handler)
        handler(status, last_message, handler_user);
}

void *nd_fail(nd_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(status, fmt, ap);
    va_end(ap);
    return NULL;
}

nd_status nd_fail_status(nd_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(status, fmt, ap);
    va_end(ap);
    return status;
}

void *nd_fail_null(const char *op, int input_index)
{
    /* A NULL input is usually the result of an earlier failed op: keep that first cause. */
    if (last_status == ND_OK)
        nd_fail(ND_ERR_NULL, "%s: input %d is NULL", op, input_index);
    return NULL;
}

const char *nd_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t used = 0;
    used += (size_t)snprintf(buf + used, cap - used, "[");
    for (int i = 0; i < ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
    return buf;
}

/* Gradient mode, per thread. No-grad regions nest: each begin saves the mode it found. */
#include "core/internal.h"

enum { MAX_SAVED = 1024 };

/* Stored inverted so the zero-initialised thread-local state means "grad enabled". */
static ND_THREAD_LOCAL bool grad_disabled;
static ND_THREAD_LOCAL bool saved_modes[MAX_SAVED];
static ND_THREAD_LOCAL int depth;

bool nd_is_grad_enabled(void) { return !grad_disabled; }

bool nd_set_grad_enabled(bool enabled)
{
    bool previous = !grad_disabled;
    grad_disabled = !enabled;
    return previous;
}

void nd_no_grad_begin(void)
{
    if (depth < MAX_SAVED)
        saved_modes[depth] = grad_disabled;
    else
        nd_fail(ND_ERR_STATE, "nd_no_grad_begin: more than %d nested no-grad regions", MAX_SAVED);
    depth++;
    grad_disabled = true;
}

void nd_no_grad_end(void)
{
    if (depth == 0) {
        nd_fail(ND_ERR_STATE, "nd_no_grad_end: no no-grad region is open");
        return;
    }
    depth--;
    grad_disabled = depth < MAX_SAVED ? saved_modes[depth] : true;
}

"""Training-stack oracle: optimizers and learning-rate schedules against torch.optim, and the
default initialisation of modules against torch.nn's distributions.

Each optimizer variant runs 10 steps from the same parameters; step k's gradient is G_k, produced
on both sides as the gradient of sum(p * G_k). Float64 must match within 1e-6 (relative to the
parameter scale), float32 within 1e-5. The data of a variant comes from a seed derived from its
label (zlib.crc32), torch's generator is seeded: every run sees the same numbers.

Every ndgrad call is checked: fn() declares each function with its C result, and a non-zero
nd_status or a NULL tensor / module / optimizer raises NdError with nd_last_error(). An exception
inside a case is that case failing (printed with the reason), never the end of the run; a call
that must fail goes through expect_error(), which asserts the error.

Usage: /usr/bin/python3 tests/training/training.py build/libndgrad.so
Last line: "training: N cases, M failed"."""
import ctypes as C
import math
import sys
import zlib

try:
    import numpy as np
    import torch
except ImportError:
    print("training: skipped (PyTorch not found at /usr/bin/python3)")
    sys.exit(0)

lib = C.CDLL(sys.argv[1] if len(sys.argv) > 1 else "build/libndgrad.so")
P, I64, D = C.c_void_p, C.c_int64, C.c_double

# Result kinds for fn(), besides plain ctypes types (counts, bools, doubles, strings: returned as they are).
STATUS = "nd_status"  # nd_status: 0 is ND_OK, anything else raises NdError
OBJ = "pointer"       # a tensor, module or optimizer: NULL raises NdError
ND_OK, ND_ERR_NULL, ND_ERR_SHAPE, ND_ERR_DTYPE, ND_ERR_STATE = 0, 1, 2, 3, 8


class NdError(RuntimeError):
    """A checked ndgrad call failed: .status is its nd_status (ND_ERR_NULL for a NULL result)."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def _last_error():
    msg = nd_last_error()
    return msg.decode("utf-8", "replace") if msg else ""


def _check_status(result, func, args):
    if result != ND_OK:
        name = nd_status_name(result)
        raise NdError(f"{func.__name__} returned {result} ({name.decode() if name else '?'}): {_last_error()}", result)
    return result


def _check_pointer(result, func, args):
    if not result:
        raise NdError(f"{func.__name__} returned NULL: {_last_error()}", nd_last_status() or ND_ERR_NULL)
    return result


def fn(name, res, *args):
    """Declares lib's `name`: res STATUS or OBJ installs an errcheck raising NdError on failure; a raw
    pointer result must say which it is (OBJ), so no NULL goes unnoticed."""
    if res is P:
        raise TypeError(f"{name}: declare a pointer result as OBJ (checked)")
    f = lib[name]  # a function object of its own: declarations never share an errcheck
    if res is STATUS:
        f.restype, f.errcheck = C.c_int, _check_status
    elif res is OBJ:
        f.restype, f.errcheck = P, _check_pointer
    else:
        f.restype = res
    f.argtypes = list(args)
    return f


def expect_error(f, *args, status=None):
    """Calls checked function f where it must fail; the NdError (with the wanted status) is asserted."""
    try:
        f(*args)
    except NdError as e:
        if status is not None and e.status != status:
            raise NdError(f"{f.__name__} failed with status {e.status}, expected {status}: {e}", e.status) from None
        return e
    raise AssertionError(f"{f.__name__} succeeded where an error was expected")


nd_last_error = fn("nd_last_error", C.c_char_p)
nd_last_status = fn("nd_last_status", C.c_int)
nd_clear_error = fn("nd_clear_error", None)
nd_status_name = fn("nd_status_name", C.c_char_p, C.c_int)
nd_from_data = fn("nd_from_data", OBJ, P, C.c_int, C.c_int, P)
nd_set_requires_grad = fn("nd_set_requires_grad", STATUS, P, C.c_bool)
nd_copy_out = fn("nd_copy_out", STATUS, P, P, C.c_size_t, C.c_int)
nd_release = fn("nd_release", None, P)
nd_scope_begin = fn("nd_scope_begin", None)
nd_scope_end = fn("nd_scope_end", STATUS)
nd_scope_end_unchecked = fn("nd_scope_end", C.c_int)  # closing whatever a failed case left open
nd_backward = fn("nd_backward", STATUS, P)
nd_add = fn("nd_add", OBJ, P, P)
nd_mul = fn("nd_mul", OBJ, P, P)
nd_sum = fn("nd_sum", OBJ, P)
nd_live_tensors = fn("nd_live_tensors", I64)
nd_manual_seed = fn("nd_manual_seed", None, C.c_uint64)
nd_sgd_new = fn("nd_sgd_new", OBJ, C.c_int, P, D, D, D, D, C.c_bool)
nd_adam_new = fn("nd_adam_new", OBJ, C.c_int, P, D, D, D, D, D)
nd_adamw_new = fn("nd_adamw_new", OBJ, C.c_int, P, D, D, D, D, D)
nd_rmsprop_new = fn("nd_rmsprop_new", OBJ, C.c_int, P, D, D, D, D, D, C.c_bool)
nd_optimizer_step = fn("nd_optimizer_step", STATUS, P)
nd_optimizer_zero_grad = fn("nd_optimizer_zero_grad", STATUS, P)
nd_optimizer_free = fn("nd_optimizer_free", None, P)
nd_lr_step = fn("nd_lr_step", D, D, I64, I64, D)
nd_lr_cosine = fn("nd_lr_cosine", D, D, I64, I64, D)
nd_lr_warmup_cosine = fn("nd_lr_warmup_cosine", D, D, I64, I64, I64, D)
nd_linear_module = fn("nd_linear_module", OBJ, I64, I64, C.c_bool, C.c_int)
nd_conv2d_module = fn("nd_conv2d_module", OBJ, I64, I64, I64, I64, I64, I64, C.c_bool, C.c_int)
nd_embedding_module = fn("nd_embedding_module", OBJ, I64, I64, C.c_int)
# (NULL for a module without that parameter: every module asked here has it)
nd_module_weight = fn("nd_module_weight", OBJ, P)
nd_module_bias = fn("nd_module_bias", OBJ, P)
nd_module_free = fn("nd_module_free", None, P)

cases = failed = 0


def to_nd(a):
    a = np.ascontiguousarray(a)
    shape = (I64 * max(a.ndim, 1))(*a.shape)
    return nd_from_data(a.ctypes.data, {np.float32: 0, np.float64: 1, np.int64: 2}[a.dtype.type], a.ndim, shape)


def to_np(t, shape):
    out = np.zeros(shape, np.float64)
    nd_copy_out(t, out.ctypes.data, out.nbytes, 1)
    return out


def report(name, ok, detail=""):
    global cases, failed
    cases += 1
    if not ok:
        failed += 1
        print(f"FAIL {name} {detail}")


def case(name, body, *args):
    """Runs body(*args), which reports its own cases; an exception in it is one more failed case,
    `name`, with the reason, and the scopes it left open are closed."""
    nd_clear_error()  # a message in a report is this case's own
    try:
        body(*args)
    except Exception as e:
        report(name, False, f"raised {type(e).__name__}: {e}")
        while nd_scope_end_unchecked() == ND_OK:
            pass


VARIANTS = [
    ("sgd", dict(lr=0.1), lambda ps, n: nd_sgd_new(n, ps, 0.1, 0, 0, 0, False)),
    ("sgd momentum", dict(lr=0.1, momentum=0.9), lambda ps, n: nd_sgd_new(n, ps, 0.1, 0.9, 0, 0, False)),
    ("sgd momentum dampening wd", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01),
     lambda ps, n: nd_sgd_new(n, ps, 0.05, 0.8, 0.3, 0.01, False)),
    ("sgd nesterov wd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.001),
     lambda ps, n: nd_sgd_new(n, ps, 0.05, 0.9, 0, 0.001, True)),
    ("adam", dict(lr=1e-2), lambda ps, n: nd_adam_new(n, ps, 1e-2, 0.9, 0.999, 1e-8, 0)),
    ("adam betas wd", dict(lr=3e-3, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1),
     lambda ps, n: nd_adam_new(n, ps, 3e-3, 0.8, 0.95, 1e-6, 0.1)),
    ("adamw", dict(lr=1e-2, weight_decay=0.1), lambda ps, n: nd_adamw_new(n, ps, 1e-2, 0.9, 0.999, 1e-8, 0.1)),
    ("adamw betas", dict(lr=6e-4, betas=(0.9, 0.95), weight_decay=0.01),
     lambda ps, n: nd_adamw_new(n, ps, 6e-4, 0.9, 0.95, 1e-8, 0.01)),
    ("rmsprop", dict(lr=1e-2), lambda ps, n: nd_rmsprop_new(n, ps, 1e-2, 0.99, 1e-8, 0, 0, False)),
    ("rmsprop momentum wd", dict(lr=1e-2, momentum=0.9, weight_decay=0.01, alpha=0.9),
     lambda ps, n: nd_rmsprop_new(n, ps, 1e-2, 0.9, 1e-8, 0.01, 0.9, False)),
    ("rmsprop centered", dict(lr=1e-2, centered=True), lambda ps, n: nd_rmsprop_new(n, ps, 1e-2, 0.99, 1e-8, 0, 0, True)),
    ("rmsprop centered momentum", dict(lr=1e-3, centered=True, momentum=0.5),
     lambda ps, n: nd_rmsprop_new(n, ps, 1e-3, 0.99, 1e-8, 0, 0.5, True)),
]
TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}


def run_optimizer(label, kwargs, make, dtype, steps=10):
    rng = np.random.default_rng(zlib.crc32(label.encode()))  # the same data in every process
    shapes = [(4, 3), (5,), (2, 3, 2)]
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    # PyTorch
    tparams = [torch.tensor(a, requires_grad=True) for a in init]
    topt = TORCH[label.split()[0]](tparams, **kwargs)
    for k in range(steps):
        topt.zero_grad(set_to_none=True)
        sum((p * torch.tensor(g)).sum() for p, g in zip(tparams, grads[k])).backward()
        topt.step()
    # ndgrad
    nparams, opt = [], None
    try:
        for a in init:
            nparams.append(to_nd(a))
            nd_set_requires_grad(nparams[-1], True)
        arr = (P * len(nparams))(*nparams)
        opt = make(arr, len(nparams))
        for k in range(steps):
            nd_optimizer_zero_grad(opt)
            nd_scope_begin()
            total = None
            for p, g in zip(nparams, grads[k]):
                term = nd_sum(nd_mul(p, to_nd(g)))
                total = term if total is None else nd_add(total, term)
            nd_backward(total)
            nd_scope_end()
            nd_optimizer_step(opt)
        tol = 1e-5 if dtype == np.float32 else 1e-6
        for i, (p, tp) in enumerate(zip(nparams, tparams)):
            got, want = to_np(p, shapes[i]), tp.detach().double().numpy()
            err = np.abs(got - want).max()
            report(f"{label} {np.dtype(dtype).name} param {i}", err <= tol * max(1.0, np.abs(want).max()),
                   f"max err {err:.3g}")
    finally:
        if opt:
            nd_optimizer_free(opt)
        for p in nparams:
            nd_release(p)


def schedules():
    """Schedules against torch.optim.lr_scheduler (values before each step)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    for step in range(12):
        report(f"StepLR step {step}", abs(nd_lr_step(0.5, step, 3, 0.5) - opt.param_groups[0]["lr"]) < 1e-12)
        opt.step()
        sched.step()
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20, eta_min=0.01)
    for step in range(21):
        report(f"CosineAnnealingLR step {step}",
               abs(nd_lr_cosine(0.5, step, 20, 0.01) - opt.param_groups[0]["lr"]) < 1e-9)
        opt.step()
        sched.step()
    for step in range(30):
        want = 0.1 * (step + 1) / 5 if step < 5 else 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * (step - 5) / 25)) / 2
        report(f"warmup cosine step {step}", abs(nd_lr_warmup_cosine(0.1, step, 5, 30, 0.001) - want) < 1e-12)


def module_init(make, check):
    """Default initialisation: the same distributions as torch.nn (bounds, mean, spread)."""
    m = make()
    try:
        check(m)
    finally:
        nd_module_free(m)


def linear_init(lin):
    w, b = to_np(nd_module_weight(lin), (300, 400)), to_np(nd_module_bias(lin), (300,))
    bound = 1 / math.sqrt(400)
    tl = torch.nn.Linear(400, 300)
    report("Linear weight bound", np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound)
    report("Linear weight std", abs(w.std() - tl.weight.detach().std().item()) < 0.02 * bound)
    report("Linear bias bound", np.abs(b).max() <= bound)


def conv_init(conv):
    cw = to_np(nd_module_weight(conv), (32, 16, 3, 3))
    cbound = 1 / math.sqrt(16 * 9)
    report("Conv2d weight bound", np.abs(cw).max() <= cbound and np.abs(cw).max() > 0.98 * cbound)
    report("Conv2d weight std", abs(cw.std() - cbound / math.sqrt(3)) < 0.03 * cbound)


def embedding_init(emb):
    ew = to_np(nd_module_weight(emb), (500, 64))
    report("Embedding N(0,1)", abs(ew.mean()) < 0.02 and abs(ew.std() - 1) < 0.02)


def checked_call(name, f, args, status, text=""):
    """One case on the checks themselves: f(*args) must raise NdError with `status` (and `text`)."""
    try:
        e = expect_error(f, *args, status=status)
        ok = text in str(e)
        report(f"checked call: {name}", ok, str(e) if ok else f"message {str(e)!r} does not mention {text!r}")
    except Exception as e:
        report(f"checked call: {name}", False, f"{type(e).__name__}: {e}")


def checked_calls():
    """A failing status and a NULL result raise NdError carrying the status and the message."""
    t, u = to_nd(np.arange(3, dtype=np.int64)), to_nd(np.arange(4, dtype=np.int64))
    try:
        checked_call("nd_set_requires_grad(int64) raises ND_ERR_DTYPE", nd_set_requires_grad, (t, True),
                     ND_ERR_DTYPE, "requires_grad")
        checked_call("an op returning NULL raises ND_ERR_SHAPE", nd_add, (t, u), ND_ERR_SHAPE, "[3]")
        checked_call("nd_scope_end without a scope raises ND_ERR_STATE", nd_scope_end, (), ND_ERR_STATE)
    finally:
        nd_release(t)
        nd_release(u)


torch.manual_seed(0)  # torch.nn.Linear's initialisation below
nd_manual_seed(3)     # ndgrad's module initialisation
for dtype in (np.float64, np.float32):
    for label, kwargs, make in VARIANTS:
        case(f"{label} {np.dtype(dtype).name}", run_optimizer, label, kwargs, make, dtype)
case("schedules", schedules)
case("Linear init", module_init, lambda: nd_linear_module(400, 300, True, 0), linear_init)
case("Conv2d init", module_init, lambda: nd_conv2d_module(16, 32, 3, 1, 1, 1, True, 0), conv_init)
case("Embedding init", module_init, lambda: nd_embedding_module(500, 64, 0), embedding_init)
case("checked calls", checked_calls)

if nd_live_tensors() != 0:
    report("no live tensors at exit", False, f"{nd_live_tensors()} alive")
print(f"training: {cases} cases, {failed} failed")
sys.exit(1 if failed else 0)

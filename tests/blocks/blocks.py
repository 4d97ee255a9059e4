"""Model-level oracle: a pre-LN GPT transformer block and a CNN block written with ndgrad ops,
compared with the same blocks in PyTorch from the same weights — forward output, every parameter
gradient, the input gradient, and (for batch norm) the running statistics.

Every ndgrad call is checked: fn() declares each function with its C result, and a non-zero
nd_status or a NULL tensor raises NdError with nd_last_error(). An exception inside a block is a
failed case (printed with the reason), never the end of the run; a call that must fail goes through
expect_error(), which asserts the error. The data come from fixed seeds.

Usage: /usr/bin/python3 tests/blocks/blocks.py build/libndgrad.so
Last line: "blocks: N cases, M failed" (or "blocks: skipped ..." without PyTorch)."""
import ctypes as C
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError:
    print("blocks: skipped (PyTorch not found at /usr/bin/python3)")
    sys.exit(0)

lib = C.CDLL(sys.argv[1] if len(sys.argv) > 1 else "build/libndgrad.so")
P = C.c_void_p
I64 = C.c_int64

# Result kinds for fn(), besides plain ctypes types (counts, bools, strings: returned as they are).
STATUS = "nd_status"  # nd_status: 0 is ND_OK, anything else raises NdError
TENSOR = "tensor"     # a tensor: NULL raises NdError
MAYBE = "nullable"    # a tensor that may be NULL by design (nd_grad of a tensor without a gradient)
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
    """Declares lib's `name`: res STATUS or TENSOR installs an errcheck raising NdError on failure; a
    raw pointer result must say which it is (TENSOR, or MAYBE for NULL by design)."""
    if res is P:
        raise TypeError(f"{name}: declare a pointer result as TENSOR (checked) or MAYBE (NULL allowed)")
    f = lib[name]  # a function object of its own: declarations never share an errcheck
    if res is STATUS:
        f.restype, f.errcheck = C.c_int, _check_status
    elif res is TENSOR:
        f.restype, f.errcheck = P, _check_pointer
    else:
        f.restype = P if res is MAYBE else res
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
nd_status_name = fn("nd_status_name", C.c_char_p, C.c_int)
nd_clear_error = fn("nd_clear_error", None)
nd_from_data = fn("nd_from_data", TENSOR, P, C.c_int, C.c_int, P)
nd_set_requires_grad = fn("nd_set_requires_grad", STATUS, P, C.c_bool)
nd_copy_out = fn("nd_copy_out", STATUS, P, P, C.c_size_t, C.c_int)
nd_ndim = fn("nd_ndim", C.c_int, P)
nd_shape = fn("nd_shape", C.POINTER(I64), P)
nd_grad = fn("nd_grad", MAYBE, P)
nd_scope_begin = fn("nd_scope_begin", None)
nd_scope_end = fn("nd_scope_end", STATUS)
nd_scope_end_unchecked = fn("nd_scope_end", C.c_int)  # closing whatever a failed case left open
nd_live_tensors = fn("nd_live_tensors", I64)
nd_backward = fn("nd_backward", STATUS, P)
nd_layer_norm = fn("nd_layer_norm", TENSOR, P, C.c_int, P, P, P, C.c_double)
nd_linear = fn("nd_linear", TENSOR, P, P, P)
nd_narrow = fn("nd_narrow", TENSOR, P, C.c_int, I64, I64)
nd_view = fn("nd_view", TENSOR, P, C.c_int, P)
nd_reshape = fn("nd_reshape", TENSOR, P, C.c_int, P)
nd_transpose = fn("nd_transpose", TENSOR, P, C.c_int, C.c_int)
nd_sdpa = fn("nd_scaled_dot_product_attention", TENSOR, P, P, P, P, C.c_double, C.c_bool, C.c_double)
nd_gelu = fn("nd_gelu", TENSOR, P, C.c_bool)
nd_add = fn("nd_add", TENSOR, P, P)
nd_mul = fn("nd_mul", TENSOR, P, P)
nd_sum = fn("nd_sum", TENSOR, P)
nd_conv2d = fn("nd_conv2d", TENSOR, P, P, P, P, P, P, I64)
nd_batch_norm = fn("nd_batch_norm", TENSOR, P, P, P, P, P, C.c_bool, C.c_double, C.c_double)
nd_relu = fn("nd_relu", TENSOR, P)
nd_max_pool2d = fn("nd_max_pool2d", TENSOR, P, P, P, P, P)
nd_cross_entropy = fn("nd_cross_entropy", TENSOR, P, P, P, I64, C.c_int, C.c_double)

DTYPES = {np.float32: 0, np.float64: 1, np.int64: 2}
cases = 0
failed = 0


def shape_arg(shape):
    return (I64 * max(len(shape), 1))(*shape)


def to_nd(a, requires_grad=False):
    a = np.ascontiguousarray(a)
    t = nd_from_data(a.ctypes.data, DTYPES[a.dtype.type], a.ndim, shape_arg(a.shape))
    if requires_grad:
        nd_set_requires_grad(t, True)
    return t


def to_np(t):
    if not t:  # a gradient that nd_grad says is missing
        raise NdError("no tensor (NULL)", ND_ERR_NULL)
    shape = tuple(nd_shape(t)[i] for i in range(nd_ndim(t)))
    out = np.zeros(shape, np.float64)
    nd_copy_out(t, out.ctypes.data, out.nbytes, 1)
    return out


def check(name, nd_value, torch_value, atol, rtol):
    global cases, failed
    cases += 1
    want = torch_value.detach().double().numpy()
    try:
        got = to_np(nd_value)
    except Exception as e:
        failed += 1
        print(f"FAIL {name}: {e}")
        return
    if got.shape != want.shape or not np.allclose(got, want, atol=atol, rtol=rtol):
        failed += 1
        err = np.abs(got - want).max() if got.shape == want.shape else "shape " + str(got.shape)
        print(f"FAIL {name}: max abs error {err}")


def gpt_block(dtype, B=2, T=7, Cn=16, H=4, seed=0):
    rng = np.random.default_rng(seed)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == np.float32 else dict(atol=1e-10, rtol=1e-9)
    params = {
        "ln1.w": 1 + 0.1 * rng.standard_normal(Cn), "ln1.b": 0.1 * rng.standard_normal(Cn),
        "attn.w": rng.standard_normal((3 * Cn, Cn)) / np.sqrt(Cn), "attn.b": 0.1 * rng.standard_normal(3 * Cn),
        "proj.w": rng.standard_normal((Cn, Cn)) / np.sqrt(Cn), "proj.b": 0.1 * rng.standard_normal(Cn),
        "ln2.w": 1 + 0.1 * rng.standard_normal(Cn), "ln2.b": 0.1 * rng.standard_normal(Cn),
        "fc.w": rng.standard_normal((4 * Cn, Cn)) / np.sqrt(Cn), "fc.b": 0.1 * rng.standard_normal(4 * Cn),
        "out.w": rng.standard_normal((Cn, 4 * Cn)) / np.sqrt(4 * Cn), "out.b": 0.1 * rng.standard_normal(Cn),
    }
    params = {k: v.astype(dtype) for k, v in params.items()}
    x = rng.standard_normal((B, T, Cn)).astype(dtype)
    r = rng.standard_normal((B, T, Cn)).astype(dtype)
    D = Cn // H

    # PyTorch
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tx = torch.tensor(x, requires_grad=True)
    h = F.layer_norm(tx, (Cn,), tp["ln1.w"], tp["ln1.b"], 1e-5)
    q, k, v = F.linear(h, tp["attn.w"], tp["attn.b"]).split(Cn, dim=2)
    q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
    s = q @ k.transpose(-2, -1) / np.sqrt(D)
    s = s.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
    a = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, Cn)
    x1 = tx + F.linear(a, tp["proj.w"], tp["proj.b"])
    m = F.linear(F.gelu(F.linear(F.layer_norm(x1, (Cn,), tp["ln2.w"], tp["ln2.b"], 1e-5), tp["fc.w"], tp["fc.b"]),
                        approximate="tanh"), tp["out.w"], tp["out.b"])
    out = x1 + m
    (out * torch.tensor(r)).sum().backward()

    # ndgrad
    nd_scope_begin()
    npar = {k: to_nd(v, True) for k, v in params.items()}
    nx = to_nd(x, True)
    cs = shape_arg([Cn])
    nh = nd_layer_norm(nx, 1, cs, npar["ln1.w"], npar["ln1.b"], 1e-5)
    qkv = nd_linear(nh, npar["attn.w"], npar["attn.b"])

    def heads(i):
        part = nd_narrow(qkv, 2, i * Cn, Cn)
        return nd_transpose(nd_reshape(part, 4, shape_arg([B, T, H, D])), 1, 2)

    na = nd_sdpa(heads(0), heads(1), heads(2), None, 0.0, True, 0.0)
    na = nd_reshape(nd_transpose(na, 1, 2), 3, shape_arg([B, T, Cn]))
    nx1 = nd_add(nx, nd_linear(na, npar["proj.w"], npar["proj.b"]))
    nm = nd_linear(nd_gelu(nd_linear(nd_layer_norm(nx1, 1, cs, npar["ln2.w"], npar["ln2.b"], 1e-5), npar["fc.w"], npar["fc.b"]),
                           True), npar["out.w"], npar["out.b"])
    nout = nd_add(nx1, nm)
    loss = nd_sum(nd_mul(nout, to_nd(r)))
    nd_backward(loss)
    tag = f"gpt_block {np.dtype(dtype).name}"
    check(f"{tag} output", nout, out, **tol)
    check(f"{tag} input grad", nd_grad(nx), tx.grad, **tol)
    for k in params:
        check(f"{tag} {k} grad", nd_grad(npar[k]), tp[k].grad, **tol)
    nd_scope_end()


def cnn_block(dtype, N=4, Cin=3, Cout=8, Hh=10, Ww=9, seed=1):
    rng = np.random.default_rng(seed)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == np.float32 else dict(atol=1e-10, rtol=1e-9)
    x = rng.standard_normal((N, Cin, Hh, Ww)).astype(dtype)
    w = (rng.standard_normal((Cout, Cin, 3, 3)) / 5).astype(dtype)
    b = (0.1 * rng.standard_normal(Cout)).astype(dtype)
    gamma = (1 + 0.1 * rng.standard_normal(Cout)).astype(dtype)
    beta = (0.1 * rng.standard_normal(Cout)).astype(dtype)
    Ho, Wo = Hh // 2, Ww // 2
    r = rng.standard_normal((N, Cout, Ho, Wo)).astype(dtype)

    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tg, tbeta = (torch.tensor(a, requires_grad=True) for a in (gamma, beta))
    rm, rv = torch.zeros(Cout, dtype=tx.dtype), torch.ones(Cout, dtype=tx.dtype)
    y = F.conv2d(tx, tw, tb, stride=1, padding=1)
    y = F.batch_norm(y, rm, rv, tg, tbeta, training=True, momentum=0.1, eps=1e-5)
    out = F.max_pool2d(F.relu(y), 2)
    (out * torch.tensor(r)).sum().backward()

    nd_scope_begin()
    nx, nw, nb, ng, nbeta = to_nd(x, True), to_nd(w, True), to_nd(b, True), to_nd(gamma, True), to_nd(beta, True)
    nrm, nrv = to_nd(np.zeros(Cout, dtype)), to_nd(np.ones(Cout, dtype))
    one, pad = shape_arg([1, 1]), shape_arg([1, 1])
    ny = nd_conv2d(nx, nw, nb, one, pad, one, 1)
    ny = nd_batch_norm(ny, nrm, nrv, ng, nbeta, True, 0.1, 1e-5)
    nout = nd_max_pool2d(nd_relu(ny), shape_arg([2, 2]), None, shape_arg([0, 0]), None)
    loss = nd_sum(nd_mul(nout, to_nd(r)))
    nd_backward(loss)
    tag = f"cnn_block {np.dtype(dtype).name}"
    check(f"{tag} output", nout, out, **tol)
    check(f"{tag} input grad", nd_grad(nx), tx.grad, **tol)
    for name, nt, tt in (("conv.w", nw, tw), ("conv.b", nb, tb), ("bn.w", ng, tg), ("bn.b", nbeta, tbeta)):
        check(f"{tag} {name} grad", nd_grad(nt), tt.grad, **tol)
    check(f"{tag} running_mean", nrm, rm, **tol)
    check(f"{tag} running_var", nrv, rv, **tol)
    nd_scope_end()


def classifier_loss(dtype, seed=2):
    """cross_entropy with ignore_index and label smoothing on top of a linear layer."""
    rng = np.random.default_rng(seed)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == np.float32 else dict(atol=1e-10, rtol=1e-9)
    x = rng.standard_normal((6, 5)).astype(dtype)
    w = rng.standard_normal((4, 5)).astype(dtype)
    t = np.array([0, 3, -100, 2, 1, 3], np.int64)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    loss = F.cross_entropy(F.linear(tx, tw), torch.tensor(t), ignore_index=-100, label_smoothing=0.1)
    loss.backward()
    nd_scope_begin()
    nx, nw = to_nd(x, True), to_nd(w, True)
    nloss = nd_cross_entropy(nd_linear(nx, nw, None), to_nd(t), None, -100, 0, 0.1)
    nd_backward(nloss)
    tag = f"classifier {np.dtype(dtype).name}"
    check(f"{tag} loss", nloss, loss, **tol)
    check(f"{tag} x grad", nd_grad(nx), tx.grad, **tol)
    check(f"{tag} w grad", nd_grad(nw), tw.grad, **tol)
    nd_scope_end()


def checked_call(name, f, args, status, text=""):
    """One case on the checks themselves: f(*args) must raise NdError with `status` (and `text`)."""
    global cases, failed
    cases += 1
    try:
        e = expect_error(f, *args, status=status)
        if text not in str(e):
            raise AssertionError(f"message {str(e)!r} does not mention {text!r}")
    except Exception as e:
        failed += 1
        print(f"FAIL checked call: {name}: {type(e).__name__}: {e}")


def checked_calls():
    """A failing status and a NULL result raise NdError carrying the status and the message."""
    nd_scope_begin()
    t, u = to_nd(np.arange(3, dtype=np.int64)), to_nd(np.arange(4, dtype=np.int64))
    checked_call("nd_set_requires_grad(int64) raises ND_ERR_DTYPE", nd_set_requires_grad, (t, True), ND_ERR_DTYPE,
                 "requires_grad")
    checked_call("an op returning NULL raises ND_ERR_SHAPE", nd_add, (t, u), ND_ERR_SHAPE, "[3]")
    nd_scope_end()
    checked_call("nd_scope_end without a scope raises ND_ERR_STATE", nd_scope_end, (), ND_ERR_STATE)


torch.manual_seed(0)  # (the blocks draw their numbers from numpy generators with fixed seeds)
for name, fn_, args in [(f"{f.__name__} {np.dtype(dt).name}", f, (dt,)) for dt in (np.float32, np.float64)
                        for f in (gpt_block, cnn_block, classifier_loss)] + [("checked calls", checked_calls, ())]:
    nd_clear_error()  # a message in a report is this case's own
    try:
        fn_(*args)
    except Exception as e:
        cases += 1
        failed += 1
        print(f"FAIL {name}: raised {type(e).__name__}: {e}")
        while nd_scope_end_unchecked() == ND_OK:
            pass
if nd_live_tensors() != 0:
    cases += 1
    failed += 1
    print(f"FAIL leak: {nd_live_tensors()} tensors alive at exit")
print(f"blocks: {cases} cases, {failed} failed")
sys.exit(1 if failed else 0)

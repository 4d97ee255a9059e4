#!/usr/bin/python3
"""PyTorch oracle for ndgrad.

Runs every op of the public API against PyTorch on the same random numpy data and compares
forward values, the gradient of every input (driven by a random output gradient), result dtypes,
grad_fn names and printed reprs. Every case runs inside nd_scope_begin/nd_scope_end and must leave
no live tensor or node behind.

Usage: /usr/bin/python3 tests/oracle/oracle.py build/libndgrad.so

Prints one line per failed case, then `oracle: N cases, M failed`; exits 1 when M > 0.
"""
import ctypes
import faulthandler
import math
import os
import sys

try:
    import numpy as np
    import torch
except Exception:  # PyTorch (or numpy) missing: not a failure of ndgrad
    print("oracle: skipped (PyTorch not found at /usr/bin/python3)")
    sys.exit(0)

faulthandler.enable()  # a crash inside the library shows which case was running

ND_FLOAT32, ND_FLOAT64, ND_INT64, ND_BOOL = 0, 1, 2, 3
NP_OF = {ND_FLOAT32: np.float32, ND_FLOAT64: np.float64, ND_INT64: np.int64, ND_BOOL: np.bool_}
TORCH_OF = {ND_FLOAT32: torch.float32, ND_FLOAT64: torch.float64, ND_INT64: torch.int64, ND_BOOL: torch.bool}
ND_OF_TORCH = {v: k for k, v in TORCH_OF.items()}
NAME_OF = {ND_FLOAT32: "float32", ND_FLOAT64: "float64", ND_INT64: "int64", ND_BOOL: "bool"}


def nd_dtype_of_np(dt):
    dt = np.dtype(dt)
    for k, v in NP_OF.items():
        if np.dtype(v) == dt:
            return k
    raise ValueError("unsupported numpy dtype %s" % dt)


class NdError(Exception):
    pass


# ------------------------------------------------------------------------------ the library

class Lib:
    """ctypes bindings: every function used is declared with argtypes and restype."""

    def __init__(self, path):
        L = ctypes.CDLL(path)
        P, I, I64, D, B = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double, ctypes.c_bool
        SH = ctypes.POINTER(ctypes.c_int64)
        S = ctypes.c_char_p
        SZ = ctypes.c_size_t

        def decl(name, restype, *argtypes):
            f = getattr(L, name)
            f.restype = restype
            f.argtypes = list(argtypes)
            setattr(self, name, f)

        # errors, memory
        decl("nd_last_error", S)
        decl("nd_last_status", I)
        decl("nd_clear_error", None)
        decl("nd_scope_begin", None)
        decl("nd_scope_end", I)
        decl("nd_live_tensors", I64)
        decl("nd_live_nodes", I64)
        decl("nd_live_storages", I64)
        # creation, inspection
        decl("nd_from_data", P, P, I, I, SH)
        decl("nd_ndim", I, P)
        decl("nd_shape", SH, P)
        decl("nd_numel", I64, P)
        decl("nd_dtype_of", I, P)
        decl("nd_is_contiguous", B, P)
        decl("nd_copy_out", I, P, P, SZ, I)
        decl("nd_to_string", P, P)  # malloc'd char*: read with string_at, then free
        # autograd
        decl("nd_set_requires_grad", I, P, B)
        decl("nd_requires_grad", B, P)
        decl("nd_grad", P, P)
        decl("nd_grad_fn_name", S, P)
        decl("nd_backward", I, P)
        decl("nd_backward_with", I, P, P, B)
        # copies and dtype
        decl("nd_contiguous", P, P)
        decl("nd_clone", P, P)
        decl("nd_to", P, P, I)
        # views
        decl("nd_view", P, P, I, SH)
        decl("nd_reshape", P, P, I, SH)
        decl("nd_transpose", P, P, I, I)
        decl("nd_t", P, P)
        decl("nd_permute", P, P, I, SH)
        decl("nd_squeeze", P, P)
        decl("nd_squeeze_dim", P, P, I)
        decl("nd_unsqueeze", P, P, I)
        decl("nd_expand", P, P, I, SH)
        decl("nd_slice", P, P, I, I64, I64, I64)
        decl("nd_select", P, P, I, I64)
        decl("nd_narrow", P, P, I, I64, I64)
        decl("nd_flatten", P, P, I, I)
        # arithmetic
        for name in ("nd_add", "nd_sub", "nd_mul", "nd_div", "nd_pow",
                     "nd_eq", "nd_ne", "nd_lt", "nd_le", "nd_gt", "nd_ge", "nd_matmul", "nd_mm", "nd_bmm"):
            decl(name, P, P, P)
        for name in ("nd_neg", "nd_relu", "nd_exp", "nd_log", "nd_tanh", "nd_sigmoid", "nd_sum", "nd_mean"):
            decl(name, P, P)
        for name in ("nd_add_scalar", "nd_sub_scalar", "nd_mul_scalar", "nd_div_scalar", "nd_pow_scalar"):
            decl(name, P, P, D)
        decl("nd_rsub_scalar", P, D, P)
        decl("nd_where", P, P, P, P)
        decl("nd_sum_dims", P, P, I, SH, B)
        decl("nd_mean_dims", P, P, I, SH, B)

        libc = ctypes.CDLL(None)
        self.free = libc.free
        self.free.restype = None
        self.free.argtypes = [P]

    # -- helpers
    def error(self):
        msg = self.nd_last_error()
        return msg.decode("utf-8", "replace") if msg else ""

    def check(self, r, what):
        if not r:
            raise NdError("%s returned NULL: %s" % (what, self.error()))
        return r

    def check_status(self, st, what):
        if st != 0:
            raise NdError("%s returned status %d: %s" % (what, st, self.error()))

    @staticmethod
    def ints(seq):
        seq = [int(x) for x in seq]
        return (ctypes.c_int64 * len(seq))(*seq) if seq else None

    def from_np(self, arr):
        arr = np.require(arr, requirements='C')
        dt = nd_dtype_of_np(arr.dtype)
        ptr = arr.ctypes.data_as(ctypes.c_void_p) if arr.size else None
        return self.check(self.nd_from_data(ptr, dt, arr.ndim, self.ints(arr.shape)), "nd_from_data")

    def shape(self, t):
        n = self.nd_ndim(t)
        if n < 0:
            raise NdError("nd_ndim: NULL tensor")
        if n == 0:
            return ()
        p = self.nd_shape(t)
        return tuple(int(p[i]) for i in range(n))

    def to_np(self, t):
        """All elements, row-major, as float64 (read through nd_copy_out)."""
        shape = self.shape(t)
        n = int(np.prod(shape)) if shape else 1
        buf = np.empty(max(n, 1), dtype=np.float64)
        if n:
            self.check_status(self.nd_copy_out(t, buf.ctypes.data_as(ctypes.c_void_p), buf.nbytes, ND_FLOAT64),
                              "nd_copy_out")
        return buf[:n].reshape(shape)

    def to_string(self, t):
        p = self.check(self.nd_to_string(t), "nd_to_string")
        try:
            return ctypes.string_at(p).decode("utf-8", "replace")
        finally:
            self.free(p)


# ------------------------------------------------------------------------------ op adapters
# Every case is written once as fn(o, *inputs); `o` is either the torch or the ndgrad adapter.

class TorchOps:
    def dtype(self, t):
        return ND_OF_TORCH[t.dtype]

    add = staticmethod(torch.add)
    sub = staticmethod(torch.sub)
    mul = staticmethod(torch.mul)
    div = staticmethod(torch.div)
    pow = staticmethod(torch.pow)
    neg = staticmethod(torch.neg)
    relu = staticmethod(torch.relu)
    exp = staticmethod(torch.exp)
    log = staticmethod(torch.log)
    tanh = staticmethod(torch.tanh)
    sigmoid = staticmethod(torch.sigmoid)
    where = staticmethod(torch.where)
    eq = staticmethod(torch.eq)
    ne = staticmethod(torch.ne)
    lt = staticmethod(torch.lt)
    le = staticmethod(torch.le)
    gt = staticmethod(torch.gt)
    ge = staticmethod(torch.ge)
    matmul = staticmethod(torch.matmul)
    mm = staticmethod(torch.mm)
    bmm = staticmethod(torch.bmm)
    sum = staticmethod(torch.sum)
    mean = staticmethod(torch.mean)

    # ndgrad's *_scalar ops take a C double; an integral value acts like a Python int (so int64 + 2
    # stays int64), a fractional one like a Python float.
    @staticmethod
    def _num(s): return int(s) if float(s).is_integer() else s
    def add_scalar(self, a, s): return a + self._num(s)
    def sub_scalar(self, a, s): return a - self._num(s)
    def rsub_scalar(self, s, a): return self._num(s) - a
    def mul_scalar(self, a, s): return a * self._num(s)
    def div_scalar(self, a, s): return a / self._num(s)
    def pow_scalar(self, a, e): return torch.pow(a, e)
    def sum_dims(self, t, dims, keepdim): return t.sum(dim=tuple(dims), keepdim=keepdim)
    def mean_dims(self, t, dims, keepdim): return t.mean(dim=tuple(dims), keepdim=keepdim)
    def contiguous(self, t): return t.contiguous()
    def clone(self, t): return t.clone()
    def to(self, t, dt): return t.to(TORCH_OF[dt])
    def view(self, t, shape): return t.view(tuple(shape))
    def reshape(self, t, shape): return t.reshape(tuple(shape))
    def transpose(self, t, d0, d1): return t.transpose(d0, d1)
    def t(self, t): return t.t()
    def permute(self, t, dims): return t.permute(tuple(dims))
    def squeeze(self, t): return t.squeeze()
    def squeeze_dim(self, t, d): return t.squeeze(d)
    def unsqueeze(self, t, d): return t.unsqueeze(d)
    def expand(self, t, shape): return t.expand(tuple(shape))

    def slice(self, t, dim, start, end, step):
        dim = dim % t.dim()
        return t[(slice(None),) * dim + (slice(start, end, step),)]

    def select(self, t, dim, index): return t.select(dim, index)
    def narrow(self, t, dim, start, length): return t.narrow(dim, start, length)
    def flatten(self, t, s, e): return t.flatten(s, e)


class NdOps:
    def __init__(self, lib):
        self.L = lib

    def dtype(self, t):
        return self.L.nd_dtype_of(t)

    def _call(self, name, *args):
        return self.L.check(getattr(self.L, name)(*args), name)

    def add(self, a, b): return self._call("nd_add", a, b)
    def sub(self, a, b): return self._call("nd_sub", a, b)
    def mul(self, a, b): return self._call("nd_mul", a, b)
    def div(self, a, b): return self._call("nd_div", a, b)
    def pow(self, a, b): return self._call("nd_pow", a, b)
    def neg(self, a): return self._call("nd_neg", a)
    def relu(self, a): return self._call("nd_relu", a)
    def exp(self, a): return self._call("nd_exp", a)
    def log(self, a): return self._call("nd_log", a)
    def tanh(self, a): return self._call("nd_tanh", a)
    def sigmoid(self, a): return self._call("nd_sigmoid", a)
    def where(self, c, a, b): return self._call("nd_where", c, a, b)
    def eq(self, a, b): return self._call("nd_eq", a, b)
    def ne(self, a, b): return self._call("nd_ne", a, b)
    def lt(self, a, b): return self._call("nd_lt", a, b)
    def le(self, a, b): return self._call("nd_le", a, b)
    def gt(self, a, b): return self._call("nd_gt", a, b)
    def ge(self, a, b): return self._call("nd_ge", a, b)
    def matmul(self, a, b): return self._call("nd_matmul", a, b)
    def mm(self, a, b): return self._call("nd_mm", a, b)
    def bmm(self, a, b): return self._call("nd_bmm", a, b)
    def sum(self, t): return self._call("nd_sum", t)
    def mean(self, t): return self._call("nd_mean", t)
    def add_scalar(self, a, s): return self._call("nd_add_scalar", a, s)
    def sub_scalar(self, a, s): return self._call("nd_sub_scalar", a, s)
    def rsub_scalar(self, s, a): return self._call("nd_rsub_scalar", s, a)
    def mul_scalar(self, a, s): return self._call("nd_mul_scalar", a, s)
    def div_scalar(self, a, s): return self._call("nd_div_scalar", a, s)
    def pow_scalar(self, a, e): return self._call("nd_pow_scalar", a, e)
    def sum_dims(self, t, dims, keepdim): return self._call("nd_sum_dims", t, len(dims), Lib.ints(dims), keepdim)
    def mean_dims(self, t, dims, keepdim): return self._call("nd_mean_dims", t, len(dims), Lib.ints(dims), keepdim)
    def contiguous(self, t): return self._call("nd_contiguous", t)
    def clone(self, t): return self._call("nd_clone", t)
    def to(self, t, dt): return self._call("nd_to", t, dt)
    def view(self, t, shape): return self._call("nd_view", t, len(shape), Lib.ints(shape))
    def reshape(self, t, shape): return self._call("nd_reshape", t, len(shape), Lib.ints(shape))
    def transpose(self, t, d0, d1): return self._call("nd_transpose", t, d0, d1)
    def t(self, t): return self._call("nd_t", t)
    def permute(self, t, dims): return self._call("nd_permute", t, len(dims), Lib.ints(dims))
    def squeeze(self, t): return self._call("nd_squeeze", t)
    def squeeze_dim(self, t, d): return self._call("nd_squeeze_dim", t, d)
    def unsqueeze(self, t, d): return self._call("nd_unsqueeze", t, d)
    def expand(self, t, shape): return self._call("nd_expand", t, len(shape), Lib.ints(shape))
    def slice(self, t, dim, start, end, step): return self._call("nd_slice", t, dim, start, end, step)
    def select(self, t, dim, index): return self._call("nd_select", t, dim, index)
    def narrow(self, t, dim, start, length): return self._call("nd_narrow", t, dim, start, length)
    def flatten(self, t, s, e): return self._call("nd_flatten", t, s, e)


# ------------------------------------------------------------------------------ data

RNG = np.random.RandomState(20240611)


def shape_str(shape):
    return "[" + ",".join(str(s) for s in shape) + "]"


def normal(shape, dt):
    return np.asarray(RNG.standard_normal(size=shape), dtype=dt)


def positive(shape, dt):
    """Away from zero, for log and the base of pow."""
    return np.asarray(RNG.uniform(0.5, 2.0, size=shape), dtype=dt)


def nonzero(shape, dt):
    """Away from zero with either sign, for divisors."""
    mag = RNG.uniform(0.5, 2.0, size=shape)
    sign = np.where(RNG.rand(*shape) < 0.5, -1.0, 1.0) if shape else (1.0 if RNG.rand() < 0.5 else -1.0)
    return np.asarray(mag * sign, dtype=dt)


def small(shape, dt):
    return np.asarray(0.5 * RNG.standard_normal(size=shape), dtype=dt)


def boolean(shape):
    return np.asarray(RNG.rand(*shape) < 0.5 if shape else RNG.rand() < 0.5, dtype=np.bool_)


def integers(shape, lo=-5, hi=6):
    return np.asarray(RNG.randint(lo, hi, size=shape), dtype=np.int64)


# ------------------------------------------------------------------------------ the runner

GRAD_FN_ALIASES = {
    # torch 1.13 records reshape of a viewable tensor as _reshape_alias; ndgrad (like torch >= 2.0)
    # records it as a view.
    "ReshapeAliasBackward0": "ViewBackward0",
}


class Oracle:
    def __init__(self, lib):
        self.L = lib
        self.nd = NdOps(lib)
        self.th = TorchOps()
        self.cases = 0
        self.failed = 0
        self.verbose = bool(os.environ.get("ORACLE_VERBOSE"))

    def fail(self, op, dtype, shapes, what, err, detail=""):
        self.failed += 1
        shapes_s = " ".join(shape_str(s) for s in shapes) if shapes else "-"
        line = "FAIL %s dtype=%s shapes=%s: %s, max abs err %s" % (op, dtype, shapes_s, what, err)
        if detail:
            line += " (" + detail + ")"
        print(line, flush=True)

    @staticmethod
    def tolerance(dtype, kind, size):
        scale = max(1.0, math.sqrt(size))
        if dtype == ND_FLOAT64:
            return 1e-12 * scale, 1e-10
        if dtype == ND_FLOAT32:
            if kind == "elem":
                return 1e-6 * scale, 1e-4
            return 1e-5 * scale, 1e-4
        return 0.0, 0.0  # integers and bools are exact

    @staticmethod
    def compare(got, want, atol, rtol):
        """(ok, max abs error, note on the first bad element); NaN must meet NaN, inf must match exactly."""
        got = np.asarray(got, dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
        if got.size == 0:
            return True, 0.0, ""
        gn, wn = np.isnan(got), np.isnan(want)
        finite = np.isfinite(got) & np.isfinite(want)
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.where(finite, np.abs(got - want), 0.0)
        bad = (gn != wn) | (~finite & ~(gn & wn) & (got != want)) | (diff > atol + rtol * np.abs(np.where(finite, want, 0.0)))
        err = float(diff.max())
        if (gn != wn).any():
            err = float("nan")
        elif (~finite & ~(gn & wn) & (got != want)).any():
            err = float("inf")
        if not bad.any():
            return True, err, ""
        idx = np.unravel_index(int(np.argmax(bad)), bad.shape) if bad.ndim else ()
        note = "first bad element %s: ndgrad %r, torch %r" % (list(int(i) for i in idx), float(got[idx]),
                                                               float(want[idx]))
        return False, err, note

    def run(self, op, inputs, fn, kind="elem", size=None, no_grad=(), check_name=True, scalar_backward=True,
            dtype_label=None):
        """One case: fn(o, *leaves) on both sides; values, dtype, grads of every float input, grad_fn.

        inputs: numpy arrays (float ones become leaves requiring grad unless their index is in no_grad).
        kind: "elem" or "reduce" (float32 tolerance); size: the reduction length used to scale atol.
        """
        self.cases += 1
        inputs = [np.require(x, requirements='C') for x in inputs]
        shapes = [x.shape for x in inputs]
        label = dtype_label
        if label is None:
            label = "/".join(sorted({NAME_OF[nd_dtype_of_np(x.dtype)] for x in inputs})) or "-"
        wants_grad = [x.dtype.kind == "f" and i not in no_grad for i, x in enumerate(inputs)]

        # ---- PyTorch
        try:
            tin = []
            for x, rg in zip(inputs, wants_grad):
                t = torch.from_numpy(x.copy())
                if rg:
                    t.requires_grad_(True)
                tin.append(t)
            tout = fn(self.th, *tin)
            gout = None
            use_plain_backward = False
            if tout.requires_grad:
                if scalar_backward and tout.dim() == 0:
                    use_plain_backward = True  # nd_backward on a scalar, torch's .backward()
                    tout.backward()
                else:
                    gout = normal(tuple(tout.shape), NP_OF[ND_OF_TORCH[tout.dtype]])
                    tout.backward(torch.from_numpy(gout.copy()))
            t_vals = tout.detach().to(torch.float64).numpy()
            t_dtype = ND_OF_TORCH[tout.dtype]
            t_rg = tout.requires_grad
            t_name = type(tout.grad_fn).__name__ if tout.grad_fn is not None else None
            t_grads = [None if t.grad is None else (ND_OF_TORCH[t.grad.dtype], t.grad.to(torch.float64).numpy())
                       for t in tin]
        except Exception as e:  # a broken case description, not an ndgrad failure; still report it
            self.fail(op, label, shapes, "torch side raised", "-", repr(e))
            return

        # ---- ndgrad
        L = self.L
        before_t, before_n = L.nd_live_tensors(), L.nd_live_nodes()
        L.nd_clear_error()
        L.nd_scope_begin()
        problems = []
        checked = 0
        try:
            leaves = []
            for x, rg in zip(inputs, wants_grad):
                h = L.from_np(x)
                if rg:
                    L.check_status(L.nd_set_requires_grad(h, True), "nd_set_requires_grad")
                leaves.append(h)
            out = fn(self.nd, *leaves)
            n_shape = L.shape(out)
            n_dtype = L.nd_dtype_of(out)
            n_vals = L.to_np(out)
            n_rg = bool(L.nd_requires_grad(out))
            name = L.nd_grad_fn_name(out)
            n_name = name.decode() if name else None
            if tuple(n_shape) != tuple(t_vals.shape):
                problems.append(("shape %s, torch %s" % (shape_str(n_shape), shape_str(t_vals.shape)), "-"))
            elif n_dtype != t_dtype:
                problems.append(("dtype %s, torch %s" % (NAME_OF.get(n_dtype, n_dtype), NAME_OF[t_dtype]), "-"))
            else:
                atol, rtol = self.tolerance(t_dtype, kind, size or 1)
                ok, err, note = self.compare(n_vals, t_vals, atol, rtol)
                if not ok:
                    problems.append(("values", err, note))
            if n_rg != t_rg:
                problems.append(("requires_grad %s, torch %s" % (n_rg, t_rg), "-"))
            if check_name:
                want = GRAD_FN_ALIASES.get(t_name, t_name)
                if n_name != want:
                    problems.append(("grad_fn %s, torch %s" % (n_name, t_name), "-"))
            if t_rg and n_rg:
                if use_plain_backward:
                    L.check_status(L.nd_backward(out), "nd_backward")
                else:
                    g = L.from_np(gout)
                    L.check_status(L.nd_backward_with(out, g, False), "nd_backward_with")
                for i, (h, tg) in enumerate(zip(leaves, t_grads)):
                    ng = L.nd_grad(h)
                    if tg is None:
                        if ng:
                            problems.append(("grad[%d] present, torch has none" % i, "-"))
                        continue
                    if not ng:
                        problems.append(("grad[%d] missing" % i, "-"))
                        continue
                    g_dtype, g_vals = tg
                    ng_shape = L.shape(ng)
                    if tuple(ng_shape) != tuple(g_vals.shape):
                        problems.append(("grad[%d] shape %s, torch %s" % (i, shape_str(ng_shape),
                                                                         shape_str(g_vals.shape)), "-"))
                        continue
                    if L.nd_dtype_of(ng) != g_dtype:
                        problems.append(("grad[%d] dtype %s, torch %s" % (i, NAME_OF.get(L.nd_dtype_of(ng)),
                                                                         NAME_OF[g_dtype]), "-"))
                        continue
                    # an elementwise gradient summed over broadcast dims adds that many terms
                    fan_in = max(1, t_vals.size // max(1, g_vals.size))
                    atol, rtol = self.tolerance(g_dtype, kind, size or fan_in)
                    ok, err, note = self.compare(L.to_np(ng), g_vals, atol, rtol)
                    checked += 1
                    if not ok:
                        problems.append(("grad[%d] values" % i, err, "grad[%d] %s" % (i, note)))
        except NdError as e:
            problems.append(("ndgrad error", "-", str(e)))
        finally:
            L.nd_scope_end()
        after_t, after_n = L.nd_live_tensors(), L.nd_live_nodes()
        if after_t != before_t or after_n != before_n:
            problems.append(("leak: %d live tensors, %d live nodes after the scope (were %d, %d)"
                             % (after_t, after_n, before_t, before_n), "-"))
        if self.verbose:
            print("case %-40s %-15s %-30s grads compared: %d%s" % (
                op, label, " ".join(shape_str(x) for x in shapes), checked, "  FAILED" if problems else ""))
        if problems:
            what = "; ".join(p[0] for p in problems)
            errs = [p[1] for p in problems if isinstance(p[1], float)]
            err = "%.3g" % max(errs) if errs else "-"
            detail = "; ".join(p[2] for p in problems if len(p) > 2)
            self.fail(op, label, shapes, what, err, detail)

    def run_repr(self, label, inputs, fn, requires_grad=()):
        """Compares nd_to_string with repr() of the same tensor."""
        self.cases += 1
        inputs = [np.require(x, requirements='C') for x in inputs]
        shapes = [x.shape for x in inputs]
        try:
            tin = []
            for i, x in enumerate(inputs):
                t = torch.from_numpy(x.copy())
                if i in requires_grad:
                    t.requires_grad_(True)
                tin.append(t)
            want = repr(fn(self.th, *tin))
        except Exception as e:
            self.fail("repr " + label, "-", shapes, "torch side raised", "-", repr(e))
            return
        L = self.L
        before_t, before_n = L.nd_live_tensors(), L.nd_live_nodes()
        L.nd_clear_error()
        L.nd_scope_begin()
        got, err = None, None
        try:
            leaves = []
            for i, x in enumerate(inputs):
                h = L.from_np(x)
                if i in requires_grad:
                    L.check_status(L.nd_set_requires_grad(h, True), "nd_set_requires_grad")
                leaves.append(h)
            got = L.to_string(fn(self.nd, *leaves))
        except NdError as e:
            err = str(e)
        finally:
            L.nd_scope_end()
        problems = []
        if self.verbose:
            print("repr %-40s %s" % (label, "ok" if got == want else "FAILED"))
        if err:
            problems.append("ndgrad error: " + err)
        elif got != want:
            problems.append("repr differs: ndgrad %r, torch %r" % (got, want))
        after_t, after_n = L.nd_live_tensors(), L.nd_live_nodes()
        if after_t != before_t or after_n != before_n:
            problems.append("leak: %d live tensors, %d live nodes" % (after_t, after_n))
        if problems:
            dt = "/".join(sorted({NAME_OF[nd_dtype_of_np(x.dtype)] for x in inputs}))
            self.fail("repr " + label, dt, shapes, "; ".join(problems), "-")


# ------------------------------------------------------------------------------ the cases

FLOATS = (np.float32, np.float64)
ODD_SHAPES = [(5,), (7,), (13,), (17,)]


def noncontig_unary_inputs(dt, gen):
    """(label, leaf arrays, transform) triples that turn a contiguous leaf into a non-contiguous input."""
    return [
        ("transpose", [gen((5, 3), dt)], lambda o, a: o.transpose(a, 0, 1)),
        ("expand", [gen((3, 1), dt)], lambda o, a: o.expand(a, [3, 5])),
        ("slice2", [gen((3, 10), dt)], lambda o, a: o.slice(a, 1, 0, 10, 2)),
        ("permute3d", [gen((4, 2, 3), dt)], lambda o, a: o.permute(a, [1, 2, 0])),
    ]


def elementwise_binary(orc):
    ops = [
        ("add", lambda o, a, b: o.add(a, b), normal, normal),
        ("sub", lambda o, a, b: o.sub(a, b), normal, normal),
        ("mul", lambda o, a, b: o.mul(a, b), normal, normal),
        ("div", lambda o, a, b: o.div(a, b), normal, nonzero),
        ("pow", lambda o, a, b: o.pow(a, b), positive, normal),
    ]
    shape_pairs = [
        ((5,), (5,)), ((13,), (13,)), ((17,), (17,)), ((3, 4), (3, 4)), ((2, 3, 4), (2, 3, 4)),
        ((3, 1), (4,)), ((2, 3, 4), (3, 1)), ((1,), (2, 2)),
        ((), ()), ((), (3, 4)), ((7, 5), ()), ((1, 5), (1, 5)), ((0, 3), (0, 3)), ((0, 3), (3,)),
    ]
    for name, f, ga, gb in ops:
        for dt in FLOATS:
            for sa, sb in shape_pairs:
                orc.run(name, [ga(sa, dt), gb(sb, dt)], f)
            # non-contiguous operands made inside the graph, gradients land on the contiguous leaves
            orc.run(name + "(transpose a)", [ga((5, 3), dt), gb((3, 5), dt)],
                    lambda o, a, b, f=f: f(o, o.transpose(a, 0, 1), b))
            orc.run(name + "(expand a)", [ga((3, 1), dt), gb((3, 5), dt)],
                    lambda o, a, b, f=f: f(o, o.expand(a, [3, 5]), b))
            orc.run(name + "(slice step 2 b)", [ga((3, 5), dt), gb((3, 10), dt)],
                    lambda o, a, b, f=f: f(o, a, o.slice(b, 1, 0, 10, 2)))
            orc.run(name + "(both transposed 3d)", [ga((4, 3, 2), dt), gb((2, 3, 4), dt)],
                    lambda o, a, b, f=f: f(o, o.transpose(a, 0, 2), o.permute(b, [0, 1, 2])))


def elementwise_unary(orc):
    ops = [
        ("neg", lambda o, a: o.neg(a), normal),
        ("relu", lambda o, a: o.relu(a), normal),
        ("exp", lambda o, a: o.exp(a), normal),
        ("log", lambda o, a: o.log(a), positive),
        ("tanh", lambda o, a: o.tanh(a), normal),
        ("sigmoid", lambda o, a: o.sigmoid(a), normal),
    ]
    shapes = [(), (1,), (5,), (7,), (13,), (17,), (3, 4), (2, 3, 4), (1, 5, 1), (0, 3)]
    for name, f, gen in ops:
        for dt in FLOATS:
            for s in shapes:
                orc.run(name, [gen(s, dt)], f)
            for label, arrs, pre in noncontig_unary_inputs(dt, gen):
                orc.run("%s(%s)" % (name, label), arrs, lambda o, a, f=f, pre=pre: f(o, pre(o, a)))


def scalar_ops(orc):
    ops = [
        ("add_scalar", lambda o, a, s: o.add_scalar(a, s)),
        ("sub_scalar", lambda o, a, s: o.sub_scalar(a, s)),
        ("rsub_scalar", lambda o, a, s: o.rsub_scalar(s, a)),
        ("mul_scalar", lambda o, a, s: o.mul_scalar(a, s)),
        ("div_scalar", lambda o, a, s: o.div_scalar(a, s)),
    ]
    for name, f in ops:
        for dt in FLOATS:
            for s, scal in (((7,), 2.5), ((3, 4), -3.0), ((), 0.75), ((0, 3), 1.5), ((2, 3, 5), -0.125)):
                orc.run("%s(%g)" % (name, scal), [normal(s, dt)], lambda o, a, f=f, scal=scal: f(o, a, scal))
            orc.run("%s(transpose)" % name, [normal((5, 3), dt)],
                    lambda o, a, f=f: f(o, o.transpose(a, 0, 1), 1.25))
    for dt in FLOATS:
        for e in (0.0, 1.0, 2.0, 0.5, -1.0, 3.0, -2.0, 2.5):
            gen = positive if e != int(e) or e < 0 else normal
            orc.run("pow_scalar(%g)" % e, [gen((7,), dt)], lambda o, a, e=e: o.pow_scalar(a, e))
            orc.run("pow_scalar(%g)" % e, [gen((3, 5), dt)],
                    lambda o, a, e=e: o.pow_scalar(o.transpose(a, 0, 1), e))
        orc.run("pow_scalar(2)", [normal((), dt)], lambda o, a: o.pow_scalar(a, 2.0))
        orc.run("pow_scalar(2)", [normal((0, 4), dt)], lambda o, a: o.pow_scalar(a, 2.0))


def where_ops(orc):
    for dt in FLOATS:
        cases = [
            ((3, 4), (3, 4), (3, 4)),
            ((3, 1), (4,), ()),
            ((5,), (), (5,)),
            ((2, 3, 4), (3, 4), (2, 1, 4)),
            ((), (7,), (7,)),
            ((0, 3), (0, 3), (3,)),
        ]
        for sc, sa, sb in cases:
            orc.run("where", [boolean(sc), normal(sa, dt), normal(sb, dt)], lambda o, c, a, b: o.where(c, a, b))
        orc.run("where(transpose a, expand b)", [boolean((3, 5)), normal((5, 3), dt), normal((3, 1), dt)],
                lambda o, c, a, b: o.where(c, o.transpose(a, 0, 1), o.expand(b, [3, 5])))
        # condition computed by a comparison
        orc.run("where(gt cond)", [normal((4, 5), dt), normal((4, 5), dt)],
                lambda o, a, b: o.where(o.gt(a, b), a, b))


def comparisons(orc):
    ops = ["eq", "ne", "lt", "le", "gt", "ge"]
    for name in ops:
        for dt in FLOATS:
            a = normal((7,), dt)
            b = a.copy()
            b[::2] = normal((4,), dt)  # ties on the odd positions
            f = lambda o, x, y, name=name: getattr(o, name)(x, y)
            orc.run(name, [a, b], f)
            orc.run(name, [normal((3, 1), dt), normal((4,), dt)], f)
            orc.run(name, [normal((2, 3), dt), np.asarray(0.0, dtype=dt)], f)
            orc.run(name + "(transpose)", [normal((4, 3), dt), normal((3, 4), dt)],
                    lambda o, x, y, f=f: f(o, o.transpose(x, 0, 1), y))
        ia = integers((9,))
        ib = ia.copy()
        ib[1::3] = integers((3,))
        orc.run(name, [ia, ib], lambda o, x, y, name=name: getattr(o, name)(x, y))
        orc.run(name + "(int vs float)", [integers((6,)), normal((6,), np.float32)],
                lambda o, x, y, name=name: getattr(o, name)(x, y), no_grad=(1,))


def promotions(orc):
    add = lambda o, a, b: o.add(a, b)
    mul = lambda o, a, b: o.mul(a, b)
    orc.run("promote add", [integers((5,)), normal((5,), np.float32)], add)               # int64+float32 -> float32
    orc.run("promote add", [normal((2, 3), np.float32), normal((2, 3), np.float64)], add)  # -> float64
    orc.run("promote mul", [normal((3, 1), np.float64), normal((4,), np.float32)], mul)
    orc.run("promote add_scalar", [integers((6,))], lambda o, a: o.add_scalar(a, 2.5))    # int64 + 2.5 -> float32
    orc.run("promote add_scalar", [integers((6,))], lambda o, a: o.add_scalar(a, 2.0))    # int64 + 2 -> int64
    orc.run("promote mul_scalar", [boolean((6,))], lambda o, a: o.mul_scalar(a, 2.5))     # bool * 2.5 -> float32
    orc.run("promote add", [boolean((6,)), boolean((6,))], add)                            # bool+bool -> bool
    orc.run("promote add", [boolean((4,)), integers((4,))], add)                           # -> int64
    orc.run("promote div", [integers((5,)), integers((5,), 1, 4)], lambda o, a, b: o.div(a, b))  # -> float32
    orc.run("promote add 0-dim", [integers((4,)), np.asarray(1.5)], add)                  # 0-dim float64 -> float64
    orc.run("promote add 0-dim", [normal((4,), np.float32), np.asarray(1.5)], add)        # dimensioned float32 wins
    orc.run("promote mul 0-dim", [np.asarray(3, dtype=np.int64), normal((4,), np.float64)], mul)
    orc.run("promote sub", [integers((2, 3)), integers((3,))], lambda o, a, b: o.sub(a, b))
    orc.run("promote exp int", [integers((5,))], lambda o, a: o.exp(a))                   # -> float32
    orc.run("promote where", [boolean((5,)), normal((5,), np.float32), normal((5,), np.float64)],
            lambda o, c, a, b: o.where(c, a, b))


def reductions(orc):
    for dt in FLOATS:
        for s in [(), (1,), (5,), (17,), (3, 4), (2, 3, 4), (7, 13), (0, 3)]:
            n = int(np.prod(s)) if s else 1
            orc.run("sum", [normal(s, dt)], lambda o, a: o.sum(a), kind="reduce", size=n)
            orc.run("mean", [normal(s, dt)], lambda o, a: o.mean(a), kind="reduce", size=n)
        for label, arrs, pre in noncontig_unary_inputs(dt, normal):
            orc.run("sum(%s)" % label, arrs, lambda o, a, pre=pre: o.sum(pre(o, a)), kind="reduce", size=15)
            orc.run("mean(%s)" % label, arrs, lambda o, a, pre=pre: o.mean(pre(o, a)), kind="reduce", size=15)
        # a non-scalar backward seed through sum (nd_backward_with on a 0-dim output)
        orc.run("sum(seeded)", [normal((3, 5), dt)], lambda o, a: o.sum(a), kind="reduce", size=15,
                scalar_backward=False)
        dim_lists = [[0], [1], [-1], [0, 2], [-1, -3], [0, 1, 2], [1, -1], [2, 0]]
        for dims in dim_lists:
            for keep in (False, True):
                for name in ("sum_dims", "mean_dims"):
                    orc.run("%s(%s, keepdim=%s)" % (name, dims, keep), [normal((2, 3, 4), dt)],
                            lambda o, a, name=name, dims=dims, keep=keep: getattr(o, name)(a, dims, keep),
                            kind="reduce", size=24)
        for dims, keep in (([0], False), ([-1], True), ([0, 1], False)):
            for name in ("sum_dims", "mean_dims"):
                orc.run("%s(%s, keepdim=%s)" % (name, dims, keep), [normal((7, 13), dt)],
                        lambda o, a, name=name, dims=dims, keep=keep: getattr(o, name)(a, dims, keep),
                        kind="reduce", size=91)
                orc.run("%s(transpose, %s, keepdim=%s)" % (name, dims, keep), [normal((13, 7), dt)],
                        lambda o, a, name=name, dims=dims, keep=keep: getattr(o, name)(o.transpose(a, 0, 1), dims, keep),
                        kind="reduce", size=91)
        for name in ("sum_dims", "mean_dims"):
            orc.run("%s([0]) of 0-dim" % name, [normal((), dt)],
                    lambda o, a, name=name: getattr(o, name)(a, [0], False), kind="reduce")
            orc.run("%s([1], keepdim) size-1" % name, [normal((4, 1, 3), dt)],
                    lambda o, a, name=name: getattr(o, name)(a, [1], True), kind="reduce")
            orc.run("%s([-1]) expanded" % name, [normal((3, 1), dt)],
                    lambda o, a, name=name: getattr(o, name)(o.expand(a, [2, 3, 5]), [0, -1], False),
                    kind="reduce", size=10)
        orc.run("sum_dims([0]) empty", [normal((0, 3), dt)], lambda o, a: o.sum_dims(a, [0], False), kind="reduce")
        orc.run("sum_dims([1]) empty", [normal((0, 3), dt)], lambda o, a: o.sum_dims(a, [1], True), kind="reduce")


def matmuls(orc):
    mmf = lambda o, a, b: o.matmul(a, b)
    # (shapes, simple grad_fn?) -- only the single-kernel dispatches have a stable grad_fn name
    cases = [
        (((7,), (7,)), True),          # dot
        (((5, 7), (7,)), True),        # mv
        (((7,), (7, 4)), False),       # vector @ matrix
        (((5, 7), (7, 4)), True),      # mm
        (((13, 17), (17, 5)), True),
        (((1, 7), (7, 1)), True),
        (((3, 5, 7), (3, 7, 4)), False),
        (((2, 3, 5, 7), (7, 4)), False),   # N-d @ 2-d
        (((5, 7), (2, 3, 7, 4)), False),   # 2-d @ N-d
        (((2, 1, 3, 4), (5, 4, 2)), False),  # broadcast batch dims
        (((7,), (2, 7, 4)), False),        # 1-d @ N-d
        (((2, 3, 5, 7), (7,)), False),     # N-d @ 1-d
        (((1, 3, 4), (2, 4, 5)), False),
        (((3, 0, 4), (4, 2)), False),      # empty rows
        (((0,), (0,)), True),              # empty dot
        (((3, 150), (150, 5)), True),      # k beyond one GEMM k-block
        (((2, 9), (9, 530)), True),        # n beyond one GEMM n-block
    ]
    for dt in FLOATS:
        for (sa, sb), simple in cases:
            # the longest sum behind any value or gradient: k, or the rows folded into a weight grad
            k = sa[-1]
            size = max(k, int(np.prod(sa)) // max(k, 1), int(np.prod(sb)) // max(k, 1))
            orc.run("matmul", [normal(sa, dt), normal(sb, dt)], mmf, kind="reduce", size=size,
                    check_name=simple)
        orc.run("matmul(transposed a)", [normal((7, 5), dt), normal((7, 4), dt)],
                lambda o, a, b: o.matmul(o.t(a), b), kind="reduce", size=7)
        orc.run("matmul(transposed b)", [normal((5, 7), dt), normal((4, 7), dt)],
                lambda o, a, b: o.matmul(a, o.transpose(b, 0, 1)), kind="reduce", size=7)
        orc.run("matmul(transposed batch)", [normal((2, 7, 5), dt), normal((2, 7, 4), dt)],
                lambda o, a, b: o.matmul(o.transpose(a, -1, -2), b), kind="reduce", size=7, check_name=False)
        orc.run("matmul(expanded a)", [normal((1, 5, 7), dt), normal((3, 7, 4), dt)],
                lambda o, a, b: o.matmul(o.expand(a, [3, 5, 7]), b), kind="reduce", size=7, check_name=False)
        orc.run("matmul(sliced a)", [normal((10, 7), dt), normal((7, 3), dt)],
                lambda o, a, b: o.matmul(o.slice(a, 0, 0, 10, 2), b), kind="reduce", size=7)
        orc.run("matmul(sliced vec)", [normal((5, 14), dt), normal((14,), dt)],
                lambda o, a, b: o.matmul(o.slice(a, 1, 1, 14, 2), o.slice(b, 0, 0, 14, 2)), kind="reduce",
                size=7)
        orc.run("matmul(transposed N-d @ 2-d)", [normal((2, 7, 5), dt), normal((7, 3), dt)],
                lambda o, a, b: o.matmul(o.transpose(a, 1, 2), b), kind="reduce", size=7, check_name=False)
        # mm
        for sa, sb in (((5, 7), (7, 4)), ((1, 1), (1, 1)), ((17, 13), (13, 5)), ((3, 0), (0, 4))):
            orc.run("mm", [normal(sa, dt), normal(sb, dt)], lambda o, a, b: o.mm(a, b), kind="reduce", size=sa[1])
        orc.run("mm(t a, t b)", [normal((7, 5), dt), normal((4, 7), dt)],
                lambda o, a, b: o.mm(o.t(a), o.t(b)), kind="reduce", size=7)
        # bmm
        for sa, sb in (((3, 5, 7), (3, 7, 4)), ((1, 2, 3), (1, 3, 2)), ((2, 13, 5), (2, 5, 17))):
            orc.run("bmm", [normal(sa, dt), normal(sb, dt)], lambda o, a, b: o.bmm(a, b), kind="reduce",
                    size=sa[2])
        orc.run("bmm(transposed)", [normal((3, 7, 5), dt), normal((4, 7, 3), dt)],
                lambda o, a, b: o.bmm(o.transpose(a, 1, 2), o.permute(b, [2, 1, 0])), kind="reduce", size=7)


def views(orc):
    for dt in FLOATS:
        n = lambda s: normal(s, dt)
        runs = [
            ("view", [n((3, 4))], lambda o, a: o.view(a, [2, 6])),
            ("view(-1)", [n((3, 4))], lambda o, a: o.view(a, [-1])),
            ("view(4,-1)", [n((2, 3, 4))], lambda o, a: o.view(a, [4, -1])),
            ("view(size-1 dims)", [n((5,))], lambda o, a: o.view(a, [1, 5, 1])),
            ("view(scalar)", [n((1, 1))], lambda o, a: o.view(a, [])),
            ("view(of transposed, compatible)", [n((4, 3, 2))],
             lambda o, a: o.view(o.transpose(a, 0, 1), [3, 4, 2])),
            ("reshape", [n((2, 3, 4))], lambda o, a: o.reshape(a, [6, 4])),
            ("reshape(-1)", [n((2, 3, 4))], lambda o, a: o.reshape(a, [-1, 2])),
            ("reshape(transposed, copies)", [n((4, 3))], lambda o, a: o.reshape(o.transpose(a, 0, 1), [12])),
            ("reshape(transposed 3d, copies)", [n((2, 3, 4))], lambda o, a: o.reshape(o.permute(a, [2, 0, 1]), [4, -1])),
            ("reshape(sliced, copies)", [n((4, 6))], lambda o, a: o.reshape(o.slice(a, 1, 0, 6, 2), [-1])),
            ("reshape(empty)", [n((0, 3))], lambda o, a: o.reshape(a, [3, 0])),
            ("transpose", [n((3, 4))], lambda o, a: o.transpose(a, 0, 1)),
            ("transpose(-1,0)", [n((2, 3, 4))], lambda o, a: o.transpose(a, -1, 0)),
            ("transpose(same dim)", [n((2, 3))], lambda o, a: o.transpose(a, 1, 1)),
            ("t", [n((3, 5))], lambda o, a: o.t(a)),
            ("t(1-d)", [n((5,))], lambda o, a: o.t(a)),
            ("permute", [n((2, 3, 4))], lambda o, a: o.permute(a, [2, 0, 1])),
            ("permute(neg)", [n((2, 3, 4, 5))], lambda o, a: o.permute(a, [-1, 1, 0, -2])),
            ("squeeze", [n((1, 3, 1, 4))], lambda o, a: o.squeeze(a)),
            ("squeeze(all ones)", [n((1, 1))], lambda o, a: o.squeeze(a)),
            ("squeeze_dim(0)", [n((1, 3, 1, 4))], lambda o, a: o.squeeze_dim(a, 0)),
            ("squeeze_dim(-2)", [n((1, 3, 1, 4))], lambda o, a: o.squeeze_dim(a, -2)),
            ("squeeze_dim(not 1)", [n((1, 3, 1, 4))], lambda o, a: o.squeeze_dim(a, 1)),
            ("unsqueeze(0)", [n((3, 4))], lambda o, a: o.unsqueeze(a, 0)),
            ("unsqueeze(-1)", [n((3, 4))], lambda o, a: o.unsqueeze(a, -1)),
            ("unsqueeze(1) of transposed", [n((3, 4))], lambda o, a: o.unsqueeze(o.t(a), 1)),
            ("unsqueeze(scalar)", [n(())], lambda o, a: o.unsqueeze(a, 0)),
            ("expand", [n((3, 1))], lambda o, a: o.expand(a, [3, 5])),
            ("expand(new dims)", [n((1,))], lambda o, a: o.expand(a, [2, 3, 4])),
            ("expand(-1)", [n((3, 1))], lambda o, a: o.expand(a, [2, -1, 4])),
            ("expand(scalar)", [n(())], lambda o, a: o.expand(a, [3, 2])),
            ("slice(step 2)", [n((3, 10))], lambda o, a: o.slice(a, 1, 0, 10, 2)),
            ("slice(step 3, neg start)", [n((13,))], lambda o, a: o.slice(a, 0, -10, 13, 3)),
            ("slice(dim 0)", [n((7, 3))], lambda o, a: o.slice(a, 0, 1, 6, 1)),
            ("slice(neg dim, clamped end)", [n((2, 9))], lambda o, a: o.slice(a, -1, 2, 100, 2)),
            ("slice(empty)", [n((5, 3))], lambda o, a: o.slice(a, 0, 3, 3, 1)),
            ("select", [n((3, 4))], lambda o, a: o.select(a, 0, 1)),
            ("select(-1, neg index)", [n((2, 3, 4))], lambda o, a: o.select(a, -1, -2)),
            ("select(to scalar)", [n((5,))], lambda o, a: o.select(a, 0, 3)),
            ("narrow", [n((5, 7))], lambda o, a: o.narrow(a, 1, 2, 3)),
            ("narrow(dim 0)", [n((6, 2))], lambda o, a: o.narrow(a, 0, 0, 4)),
            ("flatten", [n((2, 3, 4))], lambda o, a: o.flatten(a, 0, -1)),
            ("flatten(1,2)", [n((2, 3, 4, 5))], lambda o, a: o.flatten(a, 1, 2)),
            ("flatten(transposed)", [n((3, 4))], lambda o, a: o.flatten(o.t(a), 0, 1)),
            ("flatten(scalar)", [n(())], lambda o, a: o.flatten(a, 0, -1)),
            ("flatten(1-d, a no-op)", [n((5,))], lambda o, a: o.flatten(a, 0, -1)),
            ("flatten(start == end)", [n((3, 4))], lambda o, a: o.flatten(a, 1, 1)),
            ("contiguous(transposed)", [n((3, 5))], lambda o, a: o.contiguous(o.t(a))),
            ("contiguous(expanded)", [n((3, 1))], lambda o, a: o.contiguous(o.expand(a, [3, 4]))),
            ("contiguous(already)", [n((3, 5))], lambda o, a: o.contiguous(o.mul_scalar(a, 2.0))),
            ("clone", [n((3, 5))], lambda o, a: o.clone(a)),
            ("clone(sliced)", [n((6, 5))], lambda o, a: o.clone(o.slice(a, 0, 1, 6, 2))),
            ("to(float32)", [n((3, 4))], lambda o, a: o.to(a, ND_FLOAT32)),
            ("to(float64)", [n((3, 4))], lambda o, a: o.to(a, ND_FLOAT64)),
            ("to(transposed)", [n((3, 4))], lambda o, a: o.to(o.t(a), ND_FLOAT64 if dt == np.float32 else ND_FLOAT32)),
            ("to(int64)", [n((5,))], lambda o, a: o.to(o.mul_scalar(a, 3.0), ND_INT64)),
            # chains of views feeding arithmetic
            ("chain view/transpose/mul", [n((2, 6)), n((3, 4))],
             lambda o, a, b: o.mul(o.transpose(o.view(a, [4, 3]), 0, 1), b)),
            ("chain select/unsqueeze/add", [n((3, 4)), n((2, 4))],
             lambda o, a, b: o.add(o.unsqueeze(o.select(a, 0, 2), 0), b)),
            ("chain narrow/expand/sub", [n((4, 1)), n((2, 3, 5))],
             lambda o, a, b: o.sub(o.expand(o.narrow(a, 0, 1, 3), [2, 3, 5]), b)),
            ("chain slice/permute/sum_dims", [n((4, 6, 3))],
             lambda o, a: o.sum_dims(o.permute(o.slice(a, 1, 1, 6, 2), [2, 0, 1]), [1], False)),
            ("shared leaf used twice", [n((3, 4))], lambda o, a: o.mul(a, o.t(o.t(a)))),
        ]
        for label, arrs, f in runs:
            orc.run(label, arrs, f)


def edge_values(orc):
    """Zeros, infinities and NaNs through the elementwise ops and their gradients."""
    nan, inf = float("nan"), float("inf")
    for dt in FLOATS:
        a = lambda *v: np.asarray(v, dtype=dt)
        orc.run("relu(zeros)", [a(-1.0, 0.0, -0.0, 2.0)], lambda o, x: o.relu(x))
        for name in ("neg", "relu", "exp", "log", "tanh", "sigmoid"):
            orc.run("%s(nan)" % name, [a(nan, 1.0, nan)], lambda o, x, name=name: getattr(o, name)(x))
        orc.run("exp(overflow)", [a(-1000.0, -100.0, 0.0, 100.0, 1000.0)], lambda o, x: o.exp(x))
        orc.run("log(0, inf)", [a(0.0, 1.0, inf, 1e-30)], lambda o, x: o.log(x))
        orc.run("tanh(saturated)", [a(-30.0, 30.0, 0.0, 1e-8, -1e-8)], lambda o, x: o.tanh(x))
        orc.run("sigmoid(saturated)", [a(-1000.0, 1000.0, 0.0, -50.0, 50.0, -15.0, 15.0)], lambda o, x: o.sigmoid(x))
        orc.run("neg(special)", [a(0.0, -0.0, inf, -inf, nan)], lambda o, x: o.neg(x))
        orc.run("div(by zero)", [a(1.0, -1.0, 0.0, 2.0), a(0.0, 0.0, 0.0, -0.0)], lambda o, x, y: o.div(x, y))
        orc.run("add(inf, nan)", [a(inf, -inf, nan, 1.0), a(-inf, -inf, 1.0, nan)], lambda o, x, y: o.add(x, y))
        orc.run("mul(0 * inf)", [a(0.0, inf, -2.0), a(inf, 0.0, inf)], lambda o, x, y: o.mul(x, y))
        for e in (0.0, 0.5, 2.0, -1.0, 3.0):
            orc.run("pow_scalar(%g) at 0" % e, [a(0.0, 1.0, 2.0)], lambda o, x, e=e: o.pow_scalar(x, e))
        orc.run("pow(zero base, zero exponent)", [a(0.0, 0.0, 2.0, 0.0), a(0.0, 2.0, 0.0, 0.5)],
                lambda o, x, y: o.pow(x, y))
        orc.run("pow(negative base, integral exponent)", [a(-2.0, -1.5, -3.0), a(2.0, 3.0, -1.0)],
                lambda o, x, y: o.pow(x, y), no_grad=(1,))
        orc.run("sum(inf, nan)", [a(1.0, inf, 2.0)], lambda o, x: o.sum(x), kind="reduce")
        orc.run("sum(large)", [normal((100, 100), dt)], lambda o, x: o.sum(x), kind="reduce", size=10000)
        orc.run("mean_dims(large)", [normal((64, 300), dt)], lambda o, x: o.mean_dims(x, [1], False),
                kind="reduce", size=300)
        orc.run("where(nan branch)", [np.asarray([True, False, True]), a(nan, nan, 1.0), a(2.0, 3.0, nan)],
                lambda o, c, x, y: o.where(c, x, y))
    # integer and bool inputs through the ops that accept them
    orc.run("sum int64", [integers((3, 4))], lambda o, x: o.sum(x))
    orc.run("sum bool", [boolean((3, 4))], lambda o, x: o.sum(x))
    orc.run("sum_dims int64", [integers((3, 4))], lambda o, x: o.sum_dims(x, [0], False))
    orc.run("sum_dims bool keepdim", [boolean((3, 4))], lambda o, x: o.sum_dims(x, [-1], True))
    orc.run("neg int64", [integers((5,))], lambda o, x: o.neg(x))
    orc.run("relu int64", [integers((5,))], lambda o, x: o.relu(x))
    orc.run("mul int64", [integers((5,)), integers((5,))], lambda o, x, y: o.mul(x, y))
    orc.run("div int64 negative", [integers((6,), -7, 8), np.asarray([-3, 2, -2, 3, 4, -1], dtype=np.int64)],
            lambda o, x, y: o.div(x, y))
    orc.run("div_scalar int64", [integers((6,), -7, 8)], lambda o, x: o.div_scalar(x, 2.0))
    orc.run("pow int64", [integers((6,), -3, 4), integers((6,), 0, 4)], lambda o, x, y: o.pow(x, y))
    orc.run("to float32 from int64", [integers((5,))], lambda o, x: o.to(x, ND_FLOAT32))
    orc.run("to float64 from bool", [boolean((5,))], lambda o, x: o.to(x, ND_FLOAT64))
    orc.run("to bool from float32", [np.asarray([0.0, 1.5, -0.0, -2.0], dtype=np.float32)],
            lambda o, x: o.to(x, ND_BOOL))
    orc.run("to int64 from float64 (truncation)", [np.asarray([1.7, -1.7, 0.5, -0.5], dtype=np.float64)],
            lambda o, x: o.to(x, ND_INT64))
    orc.run("eq bool", [boolean((6,)), boolean((6,))], lambda o, x, y: o.eq(x, y))
    orc.run("matmul transposed view of int-built data", [np.arange(12, dtype=np.float64).reshape(3, 4)],
            lambda o, x: o.matmul(x, o.t(x)), kind="reduce", size=4)


def reprs(orc):
    th = lambda o, a: a
    f32 = lambda x: np.asarray(x, dtype=np.float32)
    f64 = lambda x: np.asarray(x, dtype=np.float64)
    orc.run_repr("int64", [np.asarray([1, -22, 333, 0], dtype=np.int64)], th)
    orc.run_repr("bool 2-d", [np.asarray([[True, False, True], [False, False, True]])], th)
    orc.run_repr("float64", [f64([1.5, -2.25, 3.0])], th)
    orc.run_repr("integral floats", [f32([1.0, -2.0, 30.0])], th)
    orc.run_repr("requires_grad leaf", [f32([0.5, 1.25])], th, requires_grad=(0,))
    orc.run_repr("float64 requires_grad scalar", [f64(2.0)], th, requires_grad=(0,))
    orc.run_repr("grad_fn", [f32([[1.0, 2.5], [3.0, -4.0]])], lambda o, a: o.mul_scalar(a, 2.0), requires_grad=(0,))
    orc.run_repr("float64 grad_fn", [f64([1.0, 2.5, -3.0])], lambda o, a: o.sum(a), requires_grad=(0,))
    orc.run_repr("scalar float32", [f32(3.14159)], th)
    orc.run_repr("scalar int64", [np.asarray(-7, dtype=np.int64)], th)
    orc.run_repr("scalar bool", [np.asarray(True)], th)
    orc.run_repr("sci mode large", [f32([1e-5, 1.0, 1e10])], th)
    orc.run_repr("sci mode tiny", [f64([1.5e-7, -2.5e-6])], th)
    orc.run_repr("sci mode integral", [f32([1.0, 1e9])], th)
    orc.run_repr("nan/inf", [f32([float("nan"), float("inf"), -float("inf"), 1.5])], th)
    orc.run_repr("nan/inf integral", [f64([float("nan"), 2.0, -float("inf")])], th)
    orc.run_repr("2-d", [normal((3, 4), np.float32)], th)
    orc.run_repr("3-d", [normal((2, 3, 4), np.float64)], th)
    orc.run_repr("3-d requires_grad", [normal((2, 2, 3), np.float32)], th, requires_grad=(0,))
    orc.run_repr("summarised 1-d", [np.arange(1500, dtype=np.float32)], th)
    orc.run_repr("summarised 2-d", [normal((40, 50), np.float32)], th)
    orc.run_repr("summarised 3-d int", [np.arange(2 * 30 * 40, dtype=np.int64).reshape(2, 30, 40)], th)
    orc.run_repr("wrapped rows", [normal((30,), np.float32)], th)
    orc.run_repr("wrapped 2-d float64", [normal((2, 15), np.float64) * 100], th)
    orc.run_repr("wrapped grad_fn suffix", [normal((11,), np.float64)], lambda o, a: o.mul_scalar(a, 3.0),
                 requires_grad=(0,))
    orc.run_repr("empty", [np.zeros((0,), dtype=np.float32)], th)
    orc.run_repr("empty 2-d", [np.zeros((0, 3), dtype=np.float32)], th)
    orc.run_repr("empty int64", [np.zeros((2, 0), dtype=np.int64)], th)
    orc.run_repr("empty float64 1-d", [np.zeros((0,), dtype=np.float64)], th)
    orc.run_repr("transposed view", [np.arange(6, dtype=np.float32).reshape(2, 3) / 4], lambda o, a: o.t(a))
    orc.run_repr("negative zero and mixed", [f32([-0.0, 0.25, -1.5, 100.0])], th)
    orc.run_repr("all zeros", [f32([0.0, 0.0, -0.0])], th)
    orc.run_repr("integral ratio > 1000", [f32([1.0, 5000.0, -3.0])], th)
    orc.run_repr("wide fixed", [f64([123456.789, 100000.5, -99999.25])], th)
    orc.run_repr("bool summarised", [boolean((1200,))], th)
    orc.run_repr("relu keeps -0.", [f32([-1.0, -0.0, 0.0, 2.0])], lambda o, a: o.relu(a))


def main():
    if len(sys.argv) != 2:
        print("usage: /usr/bin/python3 tests/oracle/oracle.py build/libndgrad.so", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    lib = Lib(sys.argv[1])
    orc = Oracle(lib)
    for section in (elementwise_binary, elementwise_unary, scalar_ops, where_ops, comparisons, promotions,
                    reductions, matmuls, views, edge_values, reprs):
        section(orc)
    print("oracle: %d cases, %d failed" % (orc.cases, orc.failed))
    return 1 if orc.failed else 0


if __name__ == "__main__":
    sys.exit(main())

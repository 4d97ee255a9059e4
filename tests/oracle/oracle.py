#!/usr/bin/python3
"""PyTorch oracle for ndgrad.

Runs every op of the public API against PyTorch on the same random numpy data and compares
forward values, the gradient of every input (driven by a random output gradient), result dtypes,
grad_fn names and printed reprs. Every case runs inside nd_scope_begin/nd_scope_end and must leave
no live tensor or node behind. Ops with several results (split, max_dim's indices) compare each
one; second-order cases compare torch.autograd.grad(create_graph=True) and the gradients of it.
A grad_fn name that differs from PyTorch's counts once per op, on the op's first case.

Ends with a coverage check: every recorded op (nd_op_count) must have had its backward run by some
case (nd_op_backward_calls); each one that has not is a failed case.

Usage: /usr/bin/python3 tests/oracle/oracle.py build/libndgrad.so
       ORACLE_VERBOSE=1 lists every case; ORACLE_SEED=n runs the same cases on other random data.

Every ndgrad call is checked: Lib.decl() declares each function with its C result, and a non-zero
nd_status or a NULL tensor raises NdError with nd_last_error() (counts, bools and doubles are
returned as they are; nd_grad is the one tensor result that is NULL by design). Any exception while
a case runs, a failed call or a bug in the case, is that case failing with the reason printed, never
the end of the run. Calls that must fail are cases of their own (run_error): ndgrad must raise
with the expected status and the message PyTorch gives. The data come from a seeded numpy generator
and torch.manual_seed.

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
    import torch.nn.functional as F
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
    """A checked ndgrad call failed (a non-zero nd_status, or NULL for a tensor); .status is the
    nd_status (for a NULL result, nd_last_status())."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def reason(e):
    """What a case that raised e reports: NdError's message, or any other exception with its type."""
    return str(e) if isinstance(e, NdError) else "%s: %s" % (type(e).__name__, e)


# Result kinds for Lib.decl, besides plain ctypes types (counts, bools, doubles, strings: returned as they are).
STATUS = "nd_status"  # nd_status: 0 is ND_OK, anything else raises NdError
TENSOR = "tensor"     # a tensor (or a malloc'd string): NULL raises NdError
MAYBE = "nullable"    # a tensor that is NULL by design (nd_grad of a tensor without a gradient)


class IndexSpec(ctypes.Structure):
    """nd_index_spec: kind (ND_INDEX_INT 0, ND_INDEX_SLICE 1, ND_INDEX_NEWAXIS 2), start, stop, step."""
    _fields_ = [("kind", ctypes.c_int), ("start", ctypes.c_int64), ("stop", ctypes.c_int64), ("step", ctypes.c_int64)]


INDEX_INT, INDEX_SLICE, INDEX_NEWAXIS = 0, 1, 2
INT64_MAX = 2 ** 63 - 1

ND_REDUCTION = {"mean": 0, "sum": 1, "none": 2}
# nd_status codes the error-path cases expect (ND_OK is 0)
ND_ERR_NULL, ND_ERR_SHAPE, ND_ERR_DTYPE, ND_ERR_DIM, ND_ERR_VALUE, ND_ERR_GRAD = 1, 2, 3, 4, 6, 7


def _later_ops():
    """(name, restype, argtypes) of the layer / loss ops, declared only when the library has them."""
    P, I, I64, D, B = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double, ctypes.c_bool
    SH, PP, PD = ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_double)
    T = TENSOR
    return [
        ("nd_softmax", T, (P, I)),
        ("nd_log_softmax", T, (P, I)),
        ("nd_linear", T, (P, P, P)),
        ("nd_cross_entropy", T, (P, P, P, I64, I, D)),
        ("nd_nll_loss", T, (P, P, P, I64, I)),
        ("nd_mse_loss", T, (P, P, I)),
        ("nd_l1_loss", T, (P, P, I)),
        ("nd_smooth_l1_loss", T, (P, P, I, D)),
        ("nd_binary_cross_entropy", T, (P, P, P, I)),
        ("nd_binary_cross_entropy_with_logits", T, (P, P, P, P, I)),
        ("nd_dropout", T, (P, D, B)),
        ("nd_layer_norm", T, (P, I, SH, P, P, D)),
        ("nd_rms_norm", T, (P, I, SH, P, D)),
        ("nd_batch_norm", T, (P, P, P, P, P, B, D, D)),
        ("nd_group_norm", T, (P, I64, P, P, D)),
        ("nd_conv2d", T, (P, P, P, SH, SH, SH, I64)),
        ("nd_conv1d", T, (P, P, P, I64, I64, I64, I64)),
        ("nd_max_pool2d", T, (P, SH, SH, SH, PP)),
        ("nd_avg_pool2d", T, (P, SH, SH, SH)),
        ("nd_adaptive_avg_pool2d", T, (P, I64, I64)),
        ("nd_scaled_dot_product_attention", T, (P, P, P, P, D, B, D)),
        ("nd_global_norm", STATUS, (I, PP, PD)),
        ("nd_clip_grad_norm", STATUS, (I, PP, D, PD)),
        ("nd_manual_seed", None, (ctypes.c_uint64,)),
    ]


LATER_OPS = _later_ops()


# ------------------------------------------------------------------------------ the library

class Lib:
    """ctypes bindings: every function used is declared with argtypes and restype, and every
    nd_status or tensor result is checked by an errcheck that raises NdError."""

    def __init__(self, path):
        L = ctypes.CDLL(path)
        P, I, I64, D, B = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double, ctypes.c_bool
        SH = ctypes.POINTER(ctypes.c_int64)
        S = ctypes.c_char_p
        SZ = ctypes.c_size_t
        T = TENSOR

        def check_status(result, func, args):
            if result != 0:
                raise NdError("%s returned status %d: %s" % (func.__name__, result, self.error()), result)
            return result

        def check_pointer(result, func, args):
            if not result:
                raise NdError("%s returned NULL: %s" % (func.__name__, self.error()), self.nd_last_status())
            return result

        def decl(name, restype, *argtypes):
            """restype STATUS / TENSOR: an errcheck raises NdError on a non-zero status / NULL; a
            pointer result must say which it is (TENSOR, or MAYBE for NULL by design)."""
            if restype is P:
                raise TypeError("%s: declare a pointer result as TENSOR (checked) or MAYBE (NULL allowed)" % name)
            f = L[name]  # a function object of its own: declarations never share an errcheck
            if restype is STATUS:
                f.restype, f.errcheck = I, check_status
            elif restype is TENSOR:
                f.restype, f.errcheck = P, check_pointer
            else:
                f.restype = P if restype is MAYBE else restype
            f.argtypes = list(argtypes)
            setattr(self, name, f)

        # Ops newer than the core set: a symbol the library does not export yet is recorded as
        # missing, and every case that calls it fails with that message instead of crashing.
        self.missing = []

        def decl_opt(name, restype, *argtypes):
            try:
                decl(name, restype, *argtypes)
            except AttributeError:  # (a symbol the library lacks)
                self.missing.append(name)
                setattr(self, name, None)

        # errors, memory
        decl("nd_last_error", S)
        decl("nd_last_status", I)
        decl("nd_clear_error", None)
        decl("nd_scope_begin", None)
        decl("nd_scope_end", STATUS)
        decl("nd_live_tensors", I64)
        decl("nd_live_nodes", I64)
        decl("nd_live_storages", I64)
        # creation, inspection
        decl("nd_from_data", T, P, I, I, SH)
        decl("nd_ndim", I, P)
        decl("nd_shape", SH, P)
        decl("nd_numel", I64, P)
        decl("nd_dtype_of", I, P)
        decl("nd_is_contiguous", B, P)
        decl("nd_copy_out", STATUS, P, P, SZ, I)
        decl("nd_to_string", T, P)  # malloc'd char*: read with string_at, then free
        # autograd
        decl("nd_set_requires_grad", STATUS, P, B)
        decl("nd_requires_grad", B, P)
        decl("nd_grad", MAYBE, P)
        decl("nd_grad_fn_name", S, P)
        decl("nd_backward", STATUS, P)
        decl("nd_backward_with", STATUS, P, P, B)
        # copies and dtype
        decl("nd_contiguous", T, P)
        decl("nd_clone", T, P)
        decl("nd_to", T, P, I)
        # views
        decl("nd_view", T, P, I, SH)
        decl("nd_reshape", T, P, I, SH)
        decl("nd_transpose", T, P, I, I)
        decl("nd_t", T, P)
        decl("nd_permute", T, P, I, SH)
        decl("nd_squeeze", T, P)
        decl("nd_squeeze_dim", T, P, I)
        decl("nd_unsqueeze", T, P, I)
        decl("nd_expand", T, P, I, SH)
        decl("nd_slice", T, P, I, I64, I64, I64)
        decl("nd_select", T, P, I, I64)
        decl("nd_narrow", T, P, I, I64, I64)
        decl("nd_flatten", T, P, I, I)
        # arithmetic
        for name in ("nd_add", "nd_sub", "nd_mul", "nd_div", "nd_pow",
                     "nd_eq", "nd_ne", "nd_lt", "nd_le", "nd_gt", "nd_ge", "nd_matmul", "nd_mm", "nd_bmm"):
            decl(name, T, P, P)
        for name in ("nd_neg", "nd_relu", "nd_exp", "nd_log", "nd_tanh", "nd_sigmoid", "nd_sum", "nd_mean"):
            decl(name, T, P)
        for name in ("nd_add_scalar", "nd_sub_scalar", "nd_mul_scalar", "nd_div_scalar", "nd_pow_scalar"):
            decl(name, T, P, D)
        decl("nd_rsub_scalar", T, D, P)
        decl("nd_where", T, P, P, P)
        decl("nd_sum_dims", T, P, I, SH, B)
        decl("nd_mean_dims", T, P, I, SH, B)

        # unary math and activations
        for name in ("nd_abs", "nd_sqrt", "nd_rsqrt", "nd_square", "nd_sin", "nd_cos", "nd_log1p", "nd_expm1",
                     "nd_erf", "nd_sign", "nd_reciprocal", "nd_silu"):
            decl_opt(name, T, P)
        decl_opt("nd_gelu", T, P, B)
        decl_opt("nd_softplus", T, P, D, D)
        decl_opt("nd_leaky_relu", T, P, D)
        decl_opt("nd_elu", T, P, D)
        decl_opt("nd_hardtanh", T, P, D, D)
        decl_opt("nd_clamp", T, P, D, D)
        decl_opt("nd_maximum", T, P, P)
        decl_opt("nd_minimum", T, P, P)
        decl_opt("nd_masked_fill", T, P, P, D)
        # reductions
        for name in ("nd_max", "nd_min", "nd_argmax", "nd_argmin", "nd_prod"):
            decl_opt(name, T, P)
        decl_opt("nd_max_dim", T, P, I, B, ctypes.POINTER(P))
        decl_opt("nd_min_dim", T, P, I, B, ctypes.POINTER(P))
        decl_opt("nd_argmax_dim", T, P, I, B)
        decl_opt("nd_argmin_dim", T, P, I, B)
        decl_opt("nd_prod_dim", T, P, I, B)
        decl_opt("nd_var", T, P, I, SH, D, B)
        decl_opt("nd_std", T, P, I, SH, D, B)
        decl_opt("nd_logsumexp", T, P, I, SH, B)
        decl_opt("nd_norm", T, P, D, I, SH, B)
        decl_opt("nd_cumsum", T, P, I)
        # shape and indexing
        decl_opt("nd_cat", T, I, ctypes.POINTER(P), I)
        decl_opt("nd_stack", T, I, ctypes.POINTER(P), I)
        decl_opt("nd_split", I, P, I64, I, I, ctypes.POINTER(P))
        decl_opt("nd_chunk", I, P, I64, I, I, ctypes.POINTER(P))
        decl_opt("nd_flip", T, P, I, SH)
        decl_opt("nd_repeat", T, P, I, SH)
        decl_opt("nd_pad", T, P, I, SH, D)
        decl_opt("nd_tril", T, P, I64)
        decl_opt("nd_triu", T, P, I64)
        decl_opt("nd_index_select", T, P, I, P)
        decl_opt("nd_index_add", T, P, I, P, P)
        decl_opt("nd_gather", T, P, I, P)
        decl_opt("nd_scatter_add", T, P, I, P, P)
        decl_opt("nd_embedding", T, P, P)
        decl_opt("nd_one_hot", T, P, I64)
        decl_opt("nd_index", T, P, I, ctypes.POINTER(IndexSpec))
        # autograd beyond backward: torch.autograd.grad
        decl_opt("nd_autograd_grad", STATUS, I, ctypes.POINTER(P), ctypes.POINTER(P), I, ctypes.POINTER(P),
                 ctypes.POINTER(P), B)
        # op introspection, for the coverage check
        decl_opt("nd_op_count", I)
        decl_opt("nd_op_name", S, I)
        decl_opt("nd_op_grad_fn_name", S, I)
        decl_opt("nd_op_backward_calls", I64, I)
        # the layers and losses (declared when the library has them)
        for name, restype, argtypes in LATER_OPS:
            decl_opt(name, restype, *argtypes)

        libc = ctypes.CDLL(None)
        self.free = libc.free
        self.free.restype = None
        self.free.argtypes = [P]

    # -- helpers
    def error(self):
        msg = self.nd_last_error()
        return msg.decode("utf-8", "replace") if msg else ""

    def end_scope(self):
        """nd_scope_end at the end of a case (in a finally clause): its error message, or None."""
        try:
            self.nd_scope_end()
        except NdError as e:
            return str(e)
        return None

    def check(self, r, what):
        """A tensor handed back through an out-parameter (indices, split pieces, autograd results),
        which no errcheck sees: NULL raises NdError."""
        if not r:
            raise NdError("%s returned NULL: %s" % (what, self.error()), self.nd_last_status())
        return r

    @staticmethod
    def ints(seq):
        seq = [int(x) for x in seq]
        return (ctypes.c_int64 * len(seq))(*seq) if seq else None

    def from_np(self, arr):
        arr = np.require(arr, requirements='C')
        dt = nd_dtype_of_np(arr.dtype)
        ptr = arr.ctypes.data_as(ctypes.c_void_p) if arr.size else None
        return self.nd_from_data(ptr, dt, arr.ndim, self.ints(arr.shape))

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
            self.nd_copy_out(t, buf.ctypes.data_as(ctypes.c_void_p), buf.nbytes, ND_FLOAT64)
        return buf[:n].reshape(shape)

    def to_string(self, t):
        p = self.nd_to_string(t)
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

    # -- unary math and activations
    abs = staticmethod(torch.abs)
    sqrt = staticmethod(torch.sqrt)
    rsqrt = staticmethod(torch.rsqrt)
    square = staticmethod(torch.square)
    sin = staticmethod(torch.sin)
    cos = staticmethod(torch.cos)
    log1p = staticmethod(torch.log1p)
    expm1 = staticmethod(torch.expm1)
    erf = staticmethod(torch.erf)
    sign = staticmethod(torch.sign)
    reciprocal = staticmethod(torch.reciprocal)
    silu = staticmethod(F.silu)
    maximum = staticmethod(torch.maximum)
    minimum = staticmethod(torch.minimum)
    def gelu(self, a, tanh_approximation): return F.gelu(a, approximate="tanh" if tanh_approximation else "none")
    def softplus(self, a, beta, threshold): return F.softplus(a, beta=beta, threshold=threshold)
    def leaky_relu(self, a, slope): return F.leaky_relu(a, slope)
    def elu(self, a, alpha): return F.elu(a, alpha)
    def hardtanh(self, a, lo, hi): return F.hardtanh(a, lo, hi)

    def clamp(self, a, lo, hi):
        # an infinite bound is a missing one (ndgrad's convention for min-only / max-only)
        # and an integral bound acts like a Python int (so int64 stays int64), as for the *_scalar ops
        return torch.clamp(a, min=None if lo == -math.inf else self._num(lo),
                           max=None if hi == math.inf else self._num(hi))

    def masked_fill(self, t, mask, value): return t.masked_fill(mask, value)

    # -- reductions
    def max(self, t): return t.max()
    def min(self, t): return t.min()
    def max_dim(self, t, dim, keepdim): return tuple(t.max(dim, keepdim=keepdim))
    def min_dim(self, t, dim, keepdim): return tuple(t.min(dim, keepdim=keepdim))
    def argmax(self, t): return torch.argmax(t)
    def argmin(self, t): return torch.argmin(t)
    def argmax_dim(self, t, dim, keepdim): return torch.argmax(t, dim, keepdim=keepdim)
    def argmin_dim(self, t, dim, keepdim): return torch.argmin(t, dim, keepdim=keepdim)
    def prod(self, t): return t.prod()
    def prod_dim(self, t, dim, keepdim): return t.prod(dim, keepdim=keepdim)

    @staticmethod
    def _dims(t, dims):
        """ndgrad's dim list (empty: all dims) as torch's dim argument."""
        if dims:
            return tuple(dims)
        return tuple(range(t.dim())) if t.dim() else 0

    def var(self, t, dims, correction, keepdim):
        return torch.var(t, dim=tuple(dims) if dims else None, correction=int(correction), keepdim=keepdim)

    def std(self, t, dims, correction, keepdim):
        return torch.std(t, dim=tuple(dims) if dims else None, correction=int(correction), keepdim=keepdim)

    def logsumexp(self, t, dims, keepdim): return torch.logsumexp(t, self._dims(t, dims), keepdim=keepdim)
    def norm(self, t, p, dims, keepdim): return torch.norm(t, p=p, dim=tuple(dims) if dims else None, keepdim=keepdim)
    def cumsum(self, t, dim): return torch.cumsum(t, dim)

    # -- shape and indexing
    def cat(self, ts, dim): return torch.cat(list(ts), dim)
    def stack(self, ts, dim): return torch.stack(list(ts), dim)
    def split(self, t, size, dim): return list(t.split(size, dim))
    def chunk(self, t, chunks, dim): return list(t.chunk(chunks, dim))
    def flip(self, t, dims): return t.flip(tuple(dims))
    def repeat(self, t, reps): return t.repeat(tuple(reps))
    def pad(self, t, pads, value): return F.pad(t, tuple(pads), value=value)
    def tril(self, t, k): return torch.tril(t, k)
    def triu(self, t, k): return torch.triu(t, k)
    def index_select(self, t, dim, index): return torch.index_select(t, dim, index)
    def index_add(self, t, dim, index, src): return t.index_add(dim, index, src)
    def gather(self, t, dim, index): return torch.gather(t, dim, index)
    def scatter_add(self, t, dim, index, src): return t.scatter_add(dim, index, src)
    def embedding(self, weight, indices): return F.embedding(indices, weight)
    def one_hot(self, indices, num_classes): return F.one_hot(indices, num_classes)

    # -- layers and losses (torch.nn.functional)
    def softmax(self, t, dim): return F.softmax(t, dim)
    def log_softmax(self, t, dim): return F.log_softmax(t, dim)
    def linear(self, x, w, b): return F.linear(x, w, b)
    def dropout(self, x, p, training): return F.dropout(x, p, training)

    def cross_entropy(self, x, t, w, ignore_index, reduction, smoothing):
        return F.cross_entropy(x, t, weight=w, ignore_index=ignore_index, reduction=reduction,
                               label_smoothing=smoothing)

    def nll_loss(self, x, t, w, ignore_index, reduction):
        return F.nll_loss(x, t, weight=w, ignore_index=ignore_index, reduction=reduction)

    def mse_loss(self, x, t, reduction): return F.mse_loss(x, t, reduction=reduction)
    def l1_loss(self, x, t, reduction): return F.l1_loss(x, t, reduction=reduction)
    def smooth_l1_loss(self, x, t, reduction, beta): return F.smooth_l1_loss(x, t, reduction=reduction, beta=beta)
    def binary_cross_entropy(self, x, t, w, reduction): return F.binary_cross_entropy(x, t, weight=w, reduction=reduction)

    def binary_cross_entropy_with_logits(self, x, t, w, pos_weight, reduction):
        return F.binary_cross_entropy_with_logits(x, t, weight=w, pos_weight=pos_weight, reduction=reduction)

    def layer_norm(self, x, shape, w, b, eps): return F.layer_norm(x, tuple(shape), w, b, eps)

    def rms_norm(self, x, shape, w, eps):
        # not in torch 1.13: x / sqrt(mean(x^2) over the trailing dims + eps) * weight, by hand
        dims = tuple(range(x.dim() - len(shape), x.dim()))
        y = x / torch.sqrt(torch.mean(x * x, dim=dims, keepdim=True) + eps)
        return y * w if w is not None else y

    def batch_norm(self, x, rm, rv, w, b, training, momentum, eps):
        return F.batch_norm(x, rm, rv, w, b, training=training, momentum=momentum, eps=eps)

    def group_norm(self, x, groups, w, b, eps): return F.group_norm(x, groups, w, b, eps)

    def conv2d(self, x, w, b, stride, padding, dilation, groups):
        return F.conv2d(x, w, b, tuple(stride), tuple(padding), tuple(dilation), groups)

    def conv1d(self, x, w, b, stride, padding, dilation, groups):
        return F.conv1d(x, w, b, stride, padding, dilation, groups)

    def max_pool2d(self, x, kernel, stride, padding, with_indices=False):
        r = F.max_pool2d(x, tuple(kernel), tuple(stride) if stride else None, tuple(padding),
                         return_indices=with_indices)
        return tuple(r) if with_indices else r

    def avg_pool2d(self, x, kernel, stride, padding):
        return F.avg_pool2d(x, tuple(kernel), tuple(stride) if stride else None, tuple(padding))

    def adaptive_avg_pool2d(self, x, oh, ow): return F.adaptive_avg_pool2d(x, (oh, ow))

    def sdpa(self, q, k, v, mask, is_causal, scale):
        # torch 1.13 has no F.scaled_dot_product_attention: softmax(q k^T scale + mask) v by hand
        sc = scale if scale > 0 else 1.0 / math.sqrt(q.shape[-1])
        s = torch.matmul(q, k.transpose(-2, -1)) * sc
        if is_causal:
            allowed = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
            s = s.masked_fill(~allowed, -math.inf)
        elif mask is not None and mask.dtype == torch.bool:
            s = s.masked_fill(~mask, -math.inf)
        elif mask is not None:
            s = s + mask
        return torch.matmul(torch.softmax(s, -1), v)

    def backward(self, t): t.backward()
    def requires_grad_(self, t): t.requires_grad_(True)

    def index(self, t, specs):
        """specs: ("i", k) an integer, ("s", start, stop, step) a slice, ("n",) a new axis."""
        key = []
        for sp in specs:
            if sp[0] == "i":
                key.append(sp[1])
            elif sp[0] == "s":
                key.append(slice(sp[1], None if sp[2] == INT64_MAX else sp[2], sp[3]))
            else:
                key.append(None)
        return t[tuple(key)]


class NdOps:
    def __init__(self, lib):
        self.L = lib

    def dtype(self, t):
        return self.L.nd_dtype_of(t)

    def _fn(self, name):
        f = getattr(self.L, name)
        if f is None:
            raise NdError("%s is declared in ndgrad.h but not exported by the library" % name)
        return f

    def _call(self, name, *args):
        return self._fn(name)(*args)  # (a NULL result raised NdError already)

    @staticmethod
    def _list(ts):
        ts = list(ts)
        return len(ts), (ctypes.c_void_p * max(1, len(ts)))(*ts)

    def backward(self, t): self.L.nd_backward(t)
    def requires_grad_(self, t): self.L.nd_set_requires_grad(t, True)
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

    # -- unary math and activations
    def abs(self, a): return self._call("nd_abs", a)
    def sqrt(self, a): return self._call("nd_sqrt", a)
    def rsqrt(self, a): return self._call("nd_rsqrt", a)
    def square(self, a): return self._call("nd_square", a)
    def sin(self, a): return self._call("nd_sin", a)
    def cos(self, a): return self._call("nd_cos", a)
    def log1p(self, a): return self._call("nd_log1p", a)
    def expm1(self, a): return self._call("nd_expm1", a)
    def erf(self, a): return self._call("nd_erf", a)
    def sign(self, a): return self._call("nd_sign", a)
    def reciprocal(self, a): return self._call("nd_reciprocal", a)
    def silu(self, a): return self._call("nd_silu", a)
    def maximum(self, a, b): return self._call("nd_maximum", a, b)
    def minimum(self, a, b): return self._call("nd_minimum", a, b)
    def gelu(self, a, tanh_approximation): return self._call("nd_gelu", a, tanh_approximation)
    def softplus(self, a, beta, threshold): return self._call("nd_softplus", a, beta, threshold)
    def leaky_relu(self, a, slope): return self._call("nd_leaky_relu", a, slope)
    def elu(self, a, alpha): return self._call("nd_elu", a, alpha)
    def hardtanh(self, a, lo, hi): return self._call("nd_hardtanh", a, lo, hi)
    def clamp(self, a, lo, hi): return self._call("nd_clamp", a, lo, hi)
    def masked_fill(self, t, mask, value): return self._call("nd_masked_fill", t, mask, value)

    # -- reductions
    def max(self, t): return self._call("nd_max", t)
    def min(self, t): return self._call("nd_min", t)

    def _extreme_dim(self, name, t, dim, keepdim):
        idx = ctypes.c_void_p()
        vals = self._call(name, t, dim, keepdim, ctypes.byref(idx))
        return vals, self.L.check(idx.value, name + " indices")

    def max_dim(self, t, dim, keepdim): return self._extreme_dim("nd_max_dim", t, dim, keepdim)
    def min_dim(self, t, dim, keepdim): return self._extreme_dim("nd_min_dim", t, dim, keepdim)
    def argmax(self, t): return self._call("nd_argmax", t)
    def argmin(self, t): return self._call("nd_argmin", t)
    def argmax_dim(self, t, dim, keepdim): return self._call("nd_argmax_dim", t, dim, keepdim)
    def argmin_dim(self, t, dim, keepdim): return self._call("nd_argmin_dim", t, dim, keepdim)
    def prod(self, t): return self._call("nd_prod", t)
    def prod_dim(self, t, dim, keepdim): return self._call("nd_prod_dim", t, dim, keepdim)

    def var(self, t, dims, correction, keepdim):
        return self._call("nd_var", t, len(dims), Lib.ints(dims), correction, keepdim)

    def std(self, t, dims, correction, keepdim):
        return self._call("nd_std", t, len(dims), Lib.ints(dims), correction, keepdim)

    def logsumexp(self, t, dims, keepdim): return self._call("nd_logsumexp", t, len(dims), Lib.ints(dims), keepdim)
    def norm(self, t, p, dims, keepdim): return self._call("nd_norm", t, p, len(dims), Lib.ints(dims), keepdim)
    def cumsum(self, t, dim): return self._call("nd_cumsum", t, dim)

    # -- shape and indexing
    def cat(self, ts, dim): return self._call("nd_cat", *self._list(ts), dim)
    def stack(self, ts, dim): return self._call("nd_stack", *self._list(ts), dim)

    def _pieces(self, name, t, n, dim):
        outs = (ctypes.c_void_p * 64)()
        count = self._fn(name)(t, n, dim, 64, outs)
        if count < 0:
            raise NdError("%s returned %d: %s" % (name, count, self.L.error()), self.L.nd_last_status())
        return [self.L.check(outs[i], "%s output %d" % (name, i)) for i in range(count)]

    def split(self, t, size, dim): return self._pieces("nd_split", t, size, dim)
    def chunk(self, t, chunks, dim): return self._pieces("nd_chunk", t, chunks, dim)
    def flip(self, t, dims): return self._call("nd_flip", t, len(dims), Lib.ints(dims))
    def repeat(self, t, reps): return self._call("nd_repeat", t, len(reps), Lib.ints(reps))
    def pad(self, t, pads, value): return self._call("nd_pad", t, len(pads), Lib.ints(pads), value)
    def tril(self, t, k): return self._call("nd_tril", t, k)
    def triu(self, t, k): return self._call("nd_triu", t, k)
    def index_select(self, t, dim, index): return self._call("nd_index_select", t, dim, index)
    def index_add(self, t, dim, index, src): return self._call("nd_index_add", t, dim, index, src)
    def gather(self, t, dim, index): return self._call("nd_gather", t, dim, index)
    def scatter_add(self, t, dim, index, src): return self._call("nd_scatter_add", t, dim, index, src)
    def embedding(self, weight, indices): return self._call("nd_embedding", weight, indices)
    def one_hot(self, indices, num_classes): return self._call("nd_one_hot", indices, num_classes)

    # -- layers and losses
    def softmax(self, t, dim): return self._call("nd_softmax", t, dim)
    def log_softmax(self, t, dim): return self._call("nd_log_softmax", t, dim)
    def linear(self, x, w, b): return self._call("nd_linear", x, w, b)
    def dropout(self, x, p, training): return self._call("nd_dropout", x, p, training)

    def cross_entropy(self, x, t, w, ignore_index, reduction, smoothing):
        return self._call("nd_cross_entropy", x, t, w, ignore_index, ND_REDUCTION[reduction], smoothing)

    def nll_loss(self, x, t, w, ignore_index, reduction):
        return self._call("nd_nll_loss", x, t, w, ignore_index, ND_REDUCTION[reduction])

    def mse_loss(self, x, t, reduction): return self._call("nd_mse_loss", x, t, ND_REDUCTION[reduction])
    def l1_loss(self, x, t, reduction): return self._call("nd_l1_loss", x, t, ND_REDUCTION[reduction])

    def smooth_l1_loss(self, x, t, reduction, beta):
        return self._call("nd_smooth_l1_loss", x, t, ND_REDUCTION[reduction], beta)

    def binary_cross_entropy(self, x, t, w, reduction):
        return self._call("nd_binary_cross_entropy", x, t, w, ND_REDUCTION[reduction])

    def binary_cross_entropy_with_logits(self, x, t, w, pos_weight, reduction):
        return self._call("nd_binary_cross_entropy_with_logits", x, t, w, pos_weight, ND_REDUCTION[reduction])

    def layer_norm(self, x, shape, w, b, eps):
        return self._call("nd_layer_norm", x, len(shape), Lib.ints(shape), w, b, eps)

    def rms_norm(self, x, shape, w, eps): return self._call("nd_rms_norm", x, len(shape), Lib.ints(shape), w, eps)

    def batch_norm(self, x, rm, rv, w, b, training, momentum, eps):
        return self._call("nd_batch_norm", x, rm, rv, w, b, training, momentum, eps)

    def group_norm(self, x, groups, w, b, eps): return self._call("nd_group_norm", x, groups, w, b, eps)

    def conv2d(self, x, w, b, stride, padding, dilation, groups):
        return self._call("nd_conv2d", x, w, b, Lib.ints(stride), Lib.ints(padding), Lib.ints(dilation), groups)

    def conv1d(self, x, w, b, stride, padding, dilation, groups):
        return self._call("nd_conv1d", x, w, b, stride, padding, dilation, groups)

    def max_pool2d(self, x, kernel, stride, padding, with_indices=False):
        idx = ctypes.c_void_p()
        out = self._call("nd_max_pool2d", x, Lib.ints(kernel), Lib.ints(stride) if stride else None,
                         Lib.ints(padding), ctypes.byref(idx) if with_indices else None)
        return (out, self.L.check(idx.value, "nd_max_pool2d indices")) if with_indices else out

    def avg_pool2d(self, x, kernel, stride, padding):
        return self._call("nd_avg_pool2d", x, Lib.ints(kernel), Lib.ints(stride) if stride else None,
                          Lib.ints(padding))

    def adaptive_avg_pool2d(self, x, oh, ow): return self._call("nd_adaptive_avg_pool2d", x, oh, ow)

    def sdpa(self, q, k, v, mask, is_causal, scale):
        return self._call("nd_scaled_dot_product_attention", q, k, v, mask, 0.0, is_causal, scale)

    def index(self, t, specs):
        arr = (IndexSpec * max(1, len(specs)))()
        for k, sp in enumerate(specs):
            if sp[0] == "i":
                arr[k] = IndexSpec(INDEX_INT, sp[1], 0, 1)
            elif sp[0] == "s":
                arr[k] = IndexSpec(INDEX_SLICE, sp[1], sp[2], sp[3])
            else:
                arr[k] = IndexSpec(INDEX_NEWAXIS, 0, 0, 1)
        return self._call("nd_index", t, len(specs), arr)


# ------------------------------------------------------------------------------ data

# ORACLE_SEED=n reruns every case on other random data (the default seed is what CI checks).
RNG = np.random.RandomState(int(os.environ.get("ORACLE_SEED", "20240611")))


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
        self.reported_names = set()  # ops whose grad_fn name mismatch is already reported

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

    # Ops whose grad_fn name has no PyTorch 1.13 reference: torch 1.13 has no scaled_dot_product_attention
    # or rms_norm (the torch side here is their formula, whose last op names the result). Every other op,
    # fused or built from others, must show PyTorch's name (README, design notes).
    COMPOSITE_OPS = {"rms_norm", "scaled_dot_product_attention"}

    def name_problem(self, op, n_name, t_name):
        """A grad_fn name mismatch is one discrepancy per op: reported on its first case only."""
        key = op.split("(")[0].strip()
        if key in self.COMPOSITE_OPS:
            return None
        if key in self.reported_names:
            return None
        self.reported_names.add(key)
        return ("grad_fn %s, torch %s" % (n_name, t_name), "-")

    def run(self, op, inputs, fn, kind="elem", size=None, no_grad=(), check_name=True, scalar_backward=True,
            dtype_label=None, tol=None):
        """One case: fn(o, *leaves) on both sides; values, dtype, grads of every float input, grad_fn.

        inputs: numpy arrays (float ones become leaves requiring grad unless their index is in no_grad).
        kind: "elem" or "reduce" (float32 tolerance); size: the reduction length used to scale atol.
        fn may return one tensor or a tuple/list of tensors (split, max_dim's values and indices):
        every output is compared, and the gradients are those of sum_k sum(out_k * seed_k).
        tol: (atol, rtol) replacing the float32 tolerance of this case (float64 keeps its own).
        """
        self.cases += 1
        inputs = [np.require(x, requirements='C') for x in inputs]
        shapes = [x.shape for x in inputs]
        label = dtype_label
        if label is None:
            label = "/".join(sorted({NAME_OF[nd_dtype_of_np(x.dtype)] for x in inputs})) or "-"
        wants_grad = [x.dtype.kind == "f" and i not in no_grad for i, x in enumerate(inputs)]

        def tolerance(dtype, size_):
            if tol is not None and dtype == ND_FLOAT32:
                return tol
            return self.tolerance(dtype, kind, size_)

        # ---- PyTorch
        try:
            tin = []
            for x, rg in zip(inputs, wants_grad):
                t = torch.from_numpy(x.copy())
                if rg:
                    t.requires_grad_(True)
                tin.append(t)
            tres = fn(self.th, *tin)
            multi = isinstance(tres, (tuple, list))
            touts = list(tres) if multi else [tres]
            gouts = [None] * len(touts)
            use_plain_backward = False
            if any(t.requires_grad for t in touts):
                if not multi and scalar_backward and touts[0].dim() == 0:
                    use_plain_backward = True  # nd_backward on a scalar, torch's .backward()
                    touts[0].backward()
                elif not multi:
                    gouts[0] = normal(tuple(touts[0].shape), NP_OF[ND_OF_TORCH[touts[0].dtype]])
                    touts[0].backward(torch.from_numpy(gouts[0].copy()))
                else:
                    loss = None
                    for k, t in enumerate(touts):
                        if t.requires_grad:
                            gouts[k] = normal(tuple(t.shape), NP_OF[ND_OF_TORCH[t.dtype]])
                            term = torch.sum(torch.mul(t, torch.from_numpy(gouts[k].copy())))
                            loss = term if loss is None else torch.add(loss, term)
                    loss.backward()
            t_vals = [t.detach().to(torch.float64).numpy() for t in touts]
            t_dtypes = [ND_OF_TORCH[t.dtype] for t in touts]
            t_rgs = [t.requires_grad for t in touts]
            t_names = [type(t.grad_fn).__name__ if t.grad_fn is not None else None for t in touts]
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
                    L.nd_set_requires_grad(h, True)
                leaves.append(h)
            nres = fn(self.nd, *leaves)
            nouts = list(nres) if isinstance(nres, (tuple, list)) else [nres]
            if len(nouts) != len(touts):
                raise NdError("%d outputs, torch %d" % (len(nouts), len(touts)))
            n_rgs = []
            for k, out in enumerate(nouts):
                pre = "out[%d] " % k if multi else ""
                n_shape = L.shape(out)
                n_dtype = L.nd_dtype_of(out)
                n_vals = L.to_np(out)
                n_rgs.append(bool(L.nd_requires_grad(out)))
                name = L.nd_grad_fn_name(out)
                n_name = name.decode() if name else None
                if tuple(n_shape) != tuple(t_vals[k].shape):
                    problems.append(("%sshape %s, torch %s" % (pre, shape_str(n_shape), shape_str(t_vals[k].shape)),
                                     "-"))
                elif n_dtype != t_dtypes[k]:
                    problems.append(("%sdtype %s, torch %s" % (pre, NAME_OF.get(n_dtype, n_dtype),
                                                               NAME_OF[t_dtypes[k]]), "-"))
                else:
                    atol, rtol = tolerance(t_dtypes[k], size or 1)
                    ok, err, note = self.compare(n_vals, t_vals[k], atol, rtol)
                    if not ok:
                        problems.append(("%svalues" % pre, err, pre + note))
                if n_rgs[k] != t_rgs[k]:
                    problems.append(("%srequires_grad %s, torch %s" % (pre, n_rgs[k], t_rgs[k]), "-"))
                if check_name:
                    want = GRAD_FN_ALIASES.get(t_names[k], t_names[k])
                    if n_name != want:
                        p = self.name_problem(op, n_name, t_names[k])
                        if p:
                            problems.append(p)
            if any(t_rgs) and n_rgs == t_rgs:
                if use_plain_backward:
                    L.nd_backward(nouts[0])
                elif not multi:
                    g = L.from_np(gouts[0])
                    L.nd_backward_with(nouts[0], g, False)
                else:
                    loss = None
                    for k, out in enumerate(nouts):
                        if t_rgs[k]:
                            term = self.nd.sum(self.nd.mul(out, L.from_np(gouts[k])))
                            loss = term if loss is None else self.nd.add(loss, term)
                    L.nd_backward(loss)
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
                    fan_in = max(1, max(v.size for v in t_vals) // max(1, g_vals.size))
                    # a float64 leaf's gradient that flowed through float32 outputs has float32 precision
                    g_tol = ND_FLOAT32 if ND_FLOAT32 in t_dtypes and g_dtype == ND_FLOAT64 else g_dtype
                    atol, rtol = tolerance(g_tol, size or fan_in)
                    ok, err, note = self.compare(L.to_np(ng), g_vals, atol, rtol)
                    checked += 1
                    if not ok:
                        problems.append(("grad[%d] values" % i, err, "grad[%d] %s" % (i, note)))
        except Exception as e:  # a failed call, or a bug in the case: this case fails, the run goes on
            problems.append(("ndgrad error", "-", reason(e)))
        finally:
            scope_error = L.end_scope()
        if scope_error:
            problems.append(("nd_scope_end failed", "-", scope_error))
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

    def run_double(self, op, inputs, fn, kind="reduce", size=None, no_grad=()):
        """Second order: gs = autograd.grad(out, leaves, v, create_graph) with v a leaf too, then the
        backward of sum_k sum(gs_k * w_k). Compares gs, and the gradients of every leaf and of v."""
        self.cases += 1
        inputs = [np.require(x, requirements='C') for x in inputs]
        shapes = [x.shape for x in inputs]
        label = "/".join(sorted({NAME_OF[nd_dtype_of_np(x.dtype)] for x in inputs})) or "-"
        wants_grad = [x.dtype.kind == "f" and i not in no_grad for i, x in enumerate(inputs)]
        op = "double backward " + op
        try:
            tin = []
            for x, rg in zip(inputs, wants_grad):
                t = torch.from_numpy(x.copy())
                if rg:
                    t.requires_grad_(True)
                tin.append(t)
            tout = fn(self.th, *tin)
            v = normal(tuple(tout.shape), NP_OF[ND_OF_TORCH[tout.dtype]])
            tv = torch.from_numpy(v.copy()).requires_grad_(True)
            txs = [t for t, rg in zip(tin, wants_grad) if rg]
            tgs = torch.autograd.grad(tout, txs, grad_outputs=tv, create_graph=True, allow_unused=True)
            tgs = [g if g is not None else torch.zeros_like(x) for g, x in zip(tgs, txs)]
            ws = [normal(tuple(x.shape), NP_OF[ND_OF_TORCH[x.dtype]]) for x in txs]
            loss = None
            for g, w in zip(tgs, ws):
                term = torch.sum(torch.mul(g, torch.from_numpy(w.copy())))
                loss = term if loss is None else torch.add(loss, term)
            t_first = [g.detach().to(torch.float64).numpy() for g in tgs]
            t_second_rg = loss.requires_grad
            if t_second_rg:
                loss.backward()
            t_second = [None if t.grad is None else t.grad.to(torch.float64).numpy() for t in txs + [tv]]
        except Exception as e:
            self.fail(op, label, shapes, "torch side raised", "-", repr(e))
            return
        L = self.L
        before_t, before_n = L.nd_live_tensors(), L.nd_live_nodes()
        L.nd_clear_error()
        L.nd_scope_begin()
        problems = []
        try:
            leaves = []
            for x, rg in zip(inputs, wants_grad):
                h = L.from_np(x)
                if rg:
                    L.nd_set_requires_grad(h, True)
                leaves.append(h)
            out = fn(self.nd, *leaves)
            nv = L.from_np(v)
            L.nd_set_requires_grad(nv, True)
            nxs = [h for h, rg in zip(leaves, wants_grad) if rg]
            if L.nd_autograd_grad is None:
                raise NdError("nd_autograd_grad is not exported")
            outs = (ctypes.c_void_p * 1)(out)
            seeds = (ctypes.c_void_p * 1)(nv)
            xs_arr = (ctypes.c_void_p * len(nxs))(*nxs)
            gs_arr = (ctypes.c_void_p * len(nxs))()
            L.nd_autograd_grad(1, outs, seeds, len(nxs), xs_arr, gs_arr, True)
            ngs = [L.check(gs_arr[k], "nd_autograd_grad result %d" % k) for k in range(len(nxs))]
            fan = max(1, int(np.prod(tout.shape)) if tout.dim() else 1)
            for k, (g, want) in enumerate(zip(ngs, t_first)):
                atol, rtol = self.tolerance(ND_OF_TORCH[tout.dtype], kind, size or fan)
                if tuple(L.shape(g)) != want.shape:
                    problems.append(("first-order grad[%d] shape %s, torch %s" % (k, shape_str(L.shape(g)),
                                                                                  shape_str(want.shape)), "-"))
                    continue
                ok, err, note = self.compare(L.to_np(g), want, atol, rtol)
                if not ok:
                    problems.append(("first-order grad[%d] values" % k, err, note))
            loss = None
            for g, w in zip(ngs, ws):
                term = self.nd.sum(self.nd.mul(g, L.from_np(w)))
                loss = term if loss is None else self.nd.add(loss, term)
            n_second_rg = bool(L.nd_requires_grad(loss))
            if n_second_rg != t_second_rg:
                problems.append(("second-order graph recorded %s, torch %s" % (n_second_rg, t_second_rg), "-"))
            elif t_second_rg:
                L.nd_backward(loss)
                for k, (h, want) in enumerate(zip(nxs + [nv], t_second)):
                    what = "v" if k == len(nxs) else "x[%d]" % k
                    ng = L.nd_grad(h)
                    if want is None:  # torch: no dependence; ndgrad may say so with zeros
                        if ng and np.any(L.to_np(ng) != 0):
                            problems.append(("second-order grad of %s nonzero, torch has none" % what, "-"))
                        continue
                    if not ng:
                        problems.append(("second-order grad of %s missing" % what, "-"))
                        continue
                    if tuple(L.shape(ng)) != want.shape:
                        problems.append(("second-order grad of %s shape %s, torch %s" % (
                            what, shape_str(L.shape(ng)), shape_str(want.shape)), "-"))
                        continue
                    atol, rtol = self.tolerance(ND_OF_TORCH[tout.dtype], kind, size or fan)
                    ok, err, note = self.compare(L.to_np(ng), want, atol, rtol)
                    if not ok:
                        problems.append(("second-order grad of %s values" % what, err, note))
        except Exception as e:  # a failed call, or a bug in the case: this case fails, the run goes on
            problems.append(("ndgrad error", "-", reason(e)))
        finally:
            scope_error = L.end_scope()
        if scope_error:
            problems.append(("nd_scope_end failed", "-", scope_error))
        after_t, after_n = L.nd_live_tensors(), L.nd_live_nodes()
        if after_t != before_t or after_n != before_n:
            problems.append(("leak: %d live tensors, %d live nodes after the scope (were %d, %d)"
                             % (after_t, after_n, before_t, before_n), "-"))
        if self.verbose:
            print("case %-40s %-15s %-30s%s" % (op, label, " ".join(shape_str(x) for x in shapes),
                                               "  FAILED" if problems else ""))
        if problems:
            what = "; ".join(p[0] for p in problems)
            errs = [p[1] for p in problems if isinstance(p[1], float)]
            err = "%.3g" % max(errs) if errs else "-"
            detail = "; ".join(p[2] for p in problems if len(p) > 2)
            self.fail(op, label, shapes, what, err, detail)

    def run_error(self, label, inputs, fn, status, text, torch_too=True, requires_grad=()):
        """An error path: fn(o, *leaves) must fail. ndgrad must raise NdError with `status` and a
        message containing `text` (case-insensitive), and leave nothing alive; with torch_too,
        PyTorch must raise on the same case with `text` in its message as well."""
        self.cases += 1
        inputs = [np.require(x, requirements='C') for x in inputs]
        shapes = [x.shape for x in inputs]
        op = "error " + label
        problems = []
        if torch_too:
            try:
                tin = [torch.from_numpy(x.copy()) for x in inputs]
                for i in requires_grad:
                    tin[i].requires_grad_(True)
                fn(self.th, *tin)
                problems.append("torch raised nothing")
            except Exception as e:
                if text.lower() not in str(e).lower():
                    problems.append("torch's message %r lacks %r" % (str(e), text))
        L = self.L
        before_t, before_n = L.nd_live_tensors(), L.nd_live_nodes()
        L.nd_clear_error()
        L.nd_scope_begin()
        try:
            leaves = [L.from_np(x) for x in inputs]
            for i in requires_grad:
                L.nd_set_requires_grad(leaves[i], True)
            try:
                fn(self.nd, *leaves)
                problems.append("ndgrad raised nothing")
            except NdError as e:
                if e.status != status:
                    problems.append("status %s, expected %d (%s)" % (e.status, status, e))
                if text.lower() not in str(e).lower():
                    problems.append("ndgrad's message %r lacks %r" % (str(e), text))
        except Exception as e:  # the case's own set-up failed
            problems.append("ndgrad error: " + reason(e))
        finally:
            scope_error = L.end_scope()
        if scope_error:
            problems.append("nd_scope_end failed: " + scope_error)
        if L.nd_live_tensors() != before_t or L.nd_live_nodes() != before_n:
            problems.append("leak: %d live tensors, %d live nodes" % (L.nd_live_tensors(), L.nd_live_nodes()))
        if self.verbose:
            print("error %-40s %s" % (label, "FAILED" if problems else "ok"))
        if problems:
            dt = "/".join(sorted({NAME_OF[nd_dtype_of_np(x.dtype)] for x in inputs})) or "-"
            self.fail(op, dt, shapes, "; ".join(problems), "-")

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
                    L.nd_set_requires_grad(h, True)
                leaves.append(h)
            got = L.to_string(fn(self.nd, *leaves))
        except Exception as e:
            err = reason(e)
        finally:
            scope_error = L.end_scope()
        problems = []
        if scope_error:
            problems.append("nd_scope_end failed: " + scope_error)
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


# ------------------------------------------------------------------------------ the newer ops

def wide(shape, dt):
    """Spread over both branches of the activations (and past softplus' threshold)."""
    return np.asarray(3.0 * RNG.standard_normal(size=shape), dtype=dt)


def above_minus_one(shape, dt):
    """Inside log1p's domain, including values close to -1 and to 0."""
    return np.asarray(RNG.uniform(-0.9, 2.0, size=shape), dtype=dt)


def with_ties(shape, dt, values=(-1.5, 0.0, 0.5, 2.0)):
    """Few distinct values, so maxima, minima and comparisons tie often."""
    return np.asarray(RNG.choice(values, size=shape), dtype=dt)


def index_array(values):
    return np.asarray(values, dtype=np.int64)


UNARY_SHAPES = [(), (1,), (5,), (7,), (13,), (3, 4), (2, 3, 4), (1, 5, 1), (0, 3)]
INF = float("inf")
NAN = float("nan")


def new_unary(orc):
    ops = [
        ("abs", lambda o, a: o.abs(a), normal),
        ("sqrt", lambda o, a: o.sqrt(a), positive),
        ("rsqrt", lambda o, a: o.rsqrt(a), positive),
        ("square", lambda o, a: o.square(a), normal),
        ("sin", lambda o, a: o.sin(a), wide),
        ("cos", lambda o, a: o.cos(a), wide),
        ("log1p", lambda o, a: o.log1p(a), above_minus_one),
        ("expm1", lambda o, a: o.expm1(a), normal),
        ("erf", lambda o, a: o.erf(a), normal),
        ("gelu", lambda o, a: o.gelu(a, False), wide),
        # float32: 0.5 (1 + tanh u) cancels for a << 0 and its error is scaled by |a k (1 + 3 c a^2)| ~ 20,
        # so PyTorch's own float32 gradient there is off by ~1e-6 from the exact one
        ("gelu(tanh)", lambda o, a: o.gelu(a, True), wide, (1e-5, 1e-4)),
        ("silu", lambda o, a: o.silu(a), wide),
        ("softplus", lambda o, a: o.softplus(a, 1.0, 20.0), wide),
        ("softplus(beta 2, threshold 1)", lambda o, a: o.softplus(a, 2.0, 1.0), wide),
        ("softplus(beta 0.5, threshold 3)", lambda o, a: o.softplus(a, 0.5, 3.0), wide),
        ("leaky_relu", lambda o, a: o.leaky_relu(a, 0.01), normal),
        ("leaky_relu(0.2)", lambda o, a: o.leaky_relu(a, 0.2), normal),
        ("elu", lambda o, a: o.elu(a, 1.0), wide),
        ("elu(0.5)", lambda o, a: o.elu(a, 0.5), wide),
        ("hardtanh", lambda o, a: o.hardtanh(a, -1.0, 1.0), wide),
        ("hardtanh(-0.5, 2)", lambda o, a: o.hardtanh(a, -0.5, 2.0), wide),
        ("clamp(min)", lambda o, a: o.clamp(a, -0.5, INF), normal),
        ("clamp(max)", lambda o, a: o.clamp(a, -INF, 0.3), normal),
        ("clamp(min, max)", lambda o, a: o.clamp(a, -0.5, 0.5), normal),
        ("sign", lambda o, a: o.sign(a), normal),
        ("reciprocal", lambda o, a: o.reciprocal(a), nonzero),
    ]
    for entry in ops:
        name, f, gen = entry[:3]
        tol = entry[3] if len(entry) > 3 else None
        for dt in FLOATS:
            for s in UNARY_SHAPES:
                orc.run(name, [gen(s, dt)], f, tol=tol)
            for label, arrs, pre in noncontig_unary_inputs(dt, gen):
                orc.run("%s(%s)" % (name, label), arrs, lambda o, a, f=f, pre=pre: f(o, pre(o, a)), tol=tol)
    for dt in FLOATS:
        a = lambda *v: np.asarray(v, dtype=dt)
        # inputs exactly at the kinks and bounds: PyTorch's choice of one-sided gradient there
        at = a(-1.0, -0.5, -0.25, 0.0, -0.0, 0.3, 0.5, 1.0, 2.0, 0.49999, -0.50001)
        bounds = [
            ("clamp(min) at bound", lambda o, x: o.clamp(x, -0.5, INF)),
            ("clamp(max) at bound", lambda o, x: o.clamp(x, -INF, 0.5)),
            ("clamp(min, max) at bounds", lambda o, x: o.clamp(x, -0.5, 0.5)),
            ("clamp(min == max)", lambda o, x: o.clamp(x, 0.3, 0.3)),
            ("clamp(max only, at 0)", lambda o, x: o.clamp(x, -INF, 0.0)),
            ("hardtanh at bounds", lambda o, x: o.hardtanh(x, -1.0, 1.0)),
            ("hardtanh(-0.5, 0.5) at bounds", lambda o, x: o.hardtanh(x, -0.5, 0.5)),
            ("abs at 0", lambda o, x: o.abs(x)),
            ("sign at 0", lambda o, x: o.sign(x)),
            ("leaky_relu at 0", lambda o, x: o.leaky_relu(x, 0.1)),
            ("elu at 0", lambda o, x: o.elu(x, 0.7)),
            ("relu at 0", lambda o, x: o.relu(x)),
            ("gelu at 0", lambda o, x: o.gelu(x, False)),
            ("silu at 0", lambda o, x: o.silu(x)),
        ]
        for label, f in bounds:
            orc.run(label, [at], f)
        # softplus: beta*x below, exactly at and past the threshold, in both directions
        sp = a(0.0, 0.4, 0.5, 0.6, 1.0, 10.0, 30.0, -30.0, -0.5, 12.5, 100.0)
        orc.run("softplus past threshold (beta 2, threshold 1)", [sp], lambda o, x: o.softplus(x, 2.0, 1.0))
        orc.run("softplus past threshold (default)", [sp], lambda o, x: o.softplus(x, 1.0, 20.0))
        orc.run("softplus(beta -1)", [sp], lambda o, x: o.softplus(x, -1.0, 20.0))
        orc.run("softplus(threshold 0)", [sp], lambda o, x: o.softplus(x, 1.0, 0.0))
        orc.run("softplus(beta 3, threshold 5, large)", [a(1.0, 1.7, 5.0, 40.0, -40.0)],
                lambda o, x: o.softplus(x, 3.0, 5.0))
        # the small-argument accuracy log1p and expm1 exist for
        tiny = a(1e-10, -1e-10, 1e-5, -1e-5, 1e-3, 0.0)
        orc.run("log1p(tiny)", [tiny], lambda o, x: o.log1p(x))
        orc.run("expm1(tiny)", [tiny], lambda o, x: o.expm1(x))
        # large arguments
        big = a(-40.0, -10.0, -5.0, 5.0, 10.0, 40.0)
        orc.run("erf(large)", [big], lambda o, x: o.erf(x))
        orc.run("gelu(large)", [big], lambda o, x: o.gelu(x, False))
        orc.run("gelu(tanh, large)", [big], lambda o, x: o.gelu(x, True))
        orc.run("silu(large)", [a(-100.0, -40.0, 40.0, 100.0)], lambda o, x: o.silu(x))
        orc.run("elu(large negative)", [a(-100.0, -20.0, 20.0)], lambda o, x: o.elu(x, 1.0))
        orc.run("sin/cos(large)", [a(100.0, -1000.0, 12345.0)], lambda o, x: o.add(o.sin(x), o.cos(x)))
        # chains through the new ops (several backward rules in one graph)
        orc.run("chain gelu(sqrt(x)) * erf(x)", [positive((3, 5), dt)],
                lambda o, x: o.mul(o.gelu(o.sqrt(x), False), o.erf(x)))
        orc.run("chain silu(softplus(transpose))", [normal((4, 3), dt)],
                lambda o, x: o.silu(o.softplus(o.transpose(x, 0, 1), 1.0, 20.0)))
        orc.run("chain rsqrt(square + 1) * sign", [normal((2, 3, 4), dt)],
                lambda o, x: o.mul(o.rsqrt(o.add_scalar(o.square(x), 1.0)), o.sign(x)))
        orc.run("shared leaf through sin and cos", [wide((7,), dt)], lambda o, x: o.mul(o.sin(x), o.cos(x)))
    # integer inputs: float functions give float32; abs, square, sign and clamp keep int64
    ints = integers((7,))
    for name in ("abs", "square", "sign"):
        orc.run("%s int64" % name, [ints], lambda o, x, name=name: getattr(o, name)(x))
    orc.run("clamp int64", [integers((9,))], lambda o, x: o.clamp(x, -2.0, 3.0))
    for name in ("sqrt", "sin", "cos", "erf", "expm1", "log1p", "reciprocal", "rsqrt"):
        orc.run("%s int64" % name, [integers((6,), 1, 9)], lambda o, x, name=name: getattr(o, name)(x))


def new_binary(orc):
    pairs = [
        ((5,), (5,)), ((13,), (13,)), ((3, 4), (3, 4)), ((2, 3, 4), (2, 3, 4)),
        ((3, 1), (4,)), ((2, 3, 4), (3, 1)), ((1,), (2, 2)), ((), ()), ((), (3, 4)), ((7, 5), ()),
        ((1, 5), (1, 5)), ((0, 3), (3,)),
    ]
    for name in ("maximum", "minimum"):
        f = lambda o, a, b, name=name: getattr(o, name)(a, b)
        for dt in FLOATS:
            for sa, sb in pairs:
                orc.run(name, [normal(sa, dt), normal(sb, dt)], f)
            # exact ties: PyTorch gives each side half of the gradient
            x = with_ties((3, 5), dt)
            y = with_ties((3, 5), dt)
            orc.run(name + "(ties)", [x, y], f)
            orc.run(name + "(all tied)", [x, x.copy()], f)
            orc.run(name + "(tied broadcast)", [with_ties((4, 1), dt), with_ties((4, 6), dt)], f)
            orc.run(name + "(same leaf twice)", [normal((5,), dt)], lambda o, a, f=f: f(o, a, a))
            orc.run(name + "(transpose a)", [normal((5, 3), dt), normal((3, 5), dt)],
                    lambda o, a, b, f=f: f(o, o.transpose(a, 0, 1), b))
            orc.run(name + "(expand a, slice b)", [normal((3, 1), dt), normal((3, 10), dt)],
                    lambda o, a, b, f=f: f(o, o.expand(a, [3, 5]), o.slice(b, 1, 0, 10, 2)))
            orc.run(name + "(nan)", [np.asarray([NAN, 1.0, NAN, 2.0, -INF], dtype=dt),
                                     np.asarray([1.0, NAN, NAN, 2.0, INF], dtype=dt)], f)
        orc.run(name + " int64", [integers((7,)), integers((7,))], f)
        orc.run(name + " float32/float64", [normal((4,), np.float32), normal((3, 1), np.float64)], f)
    # masked_fill: the mask broadcasts to the input's shape
    for dt in FLOATS:
        for st, sm, v in (((3, 4), (3, 4), 0.5), ((3, 4), (4,), -2.0), ((2, 3, 4), (3, 1), 7.0),
                          ((5,), (), -1.25), ((), (), 3.0), ((2, 3, 5), (1, 1, 5), 0.0), ((0, 3), (3,), 1.0)):
            orc.run("masked_fill(%g)" % v, [normal(st, dt), boolean(sm)],
                    lambda o, t, m, v=v: o.masked_fill(t, m, v))
        orc.run("masked_fill(transpose)", [normal((5, 3), dt), boolean((3, 5))],
                lambda o, t, m: o.masked_fill(o.transpose(t, 0, 1), m, 1.5))
        orc.run("masked_fill(mask from gt)", [normal((4, 5), dt), np.asarray(0.0, dtype=dt)],
                lambda o, t, z: o.masked_fill(t, o.gt(t, z), 0.0), no_grad=(1,))
        orc.run("masked_fill(-inf)", [normal((3, 4), dt), boolean((3, 4))],
                lambda o, t, m: o.masked_fill(t, m, -INF))
        # where with a condition broadcast against both branches
        for sc, sa, sb in (((3, 1), (1, 4), (3, 4)), ((4,), (3, 4), ()), ((2, 1, 4), (3, 1), (2, 3, 4)),
                           ((), (5,), (5,)), ((1,), (7,), (1,)), ((2, 3, 1), (), ())):
            orc.run("where(broadcast cond)", [boolean(sc), normal(sa, dt), normal(sb, dt)],
                    lambda o, c, x, y: o.where(c, x, y))
        orc.run("where(expanded cond, sliced a)", [boolean((3, 1)), normal((3, 10), dt), normal((5,), dt)],
                lambda o, c, x, y: o.where(o.expand(c, [3, 5]), o.slice(x, 1, 0, 10, 2), y))
    # comparisons feeding a graph: the bool mask multiplies, the comparison carries no gradient
    for dt in FLOATS:
        z = np.asarray(0.0, dtype=dt)
        orc.run("(x * (x > 0)).sum()", [normal((3, 4), dt), z],
                lambda o, x, zero: o.sum(o.mul(x, o.gt(x, zero))), kind="reduce", size=12, no_grad=(1,))
        orc.run("(x * (x > 0)).sum() transposed", [normal((5, 3), dt), z],
                lambda o, x, zero: o.sum(o.mul(o.t(x), o.gt(o.t(x), zero))), kind="reduce", size=15, no_grad=(1,))
        orc.run("x * (x > y), y gets no grad", [normal((7,), dt), normal((7,), dt)],
                lambda o, x, y: o.mul(x, o.gt(x, y)))
        orc.run("x * (x <= y) broadcast", [normal((3, 1), dt), normal((4,), dt)],
                lambda o, x, y: o.mul(x, o.le(x, y)))
        orc.run("where(x >= y, x, 2y)", [with_ties((6,), dt), with_ties((6,), dt)],
                lambda o, x, y: o.where(o.ge(x, y), x, o.mul_scalar(y, 2.0)))
        orc.run("(x != y) * x + (x == y) * y", [with_ties((2, 5), dt), with_ties((2, 5), dt)],
                lambda o, x, y: o.add(o.mul(o.ne(x, y), x), o.mul(o.eq(x, y), y)))


def new_reductions(orc):
    for dt in FLOATS:
        # max / min of all elements; ties share the gradient evenly (PyTorch 1.13)
        for s in [(), (1,), (7,), (13,), (3, 4), (2, 3, 5)]:
            n = int(np.prod(s)) if s else 1
            for name in ("max", "min"):
                orc.run(name, [normal(s, dt)], lambda o, a, name=name: getattr(o, name)(a), kind="reduce", size=n)
        for name in ("max", "min"):
            f = lambda o, a, name=name: getattr(o, name)(a)
            orc.run(name + "(ties)", [np.asarray([1.0, 3.0, -3.0, 3.0, 2.0, -3.0, 3.0], dtype=dt)], f)
            orc.run(name + "(all equal)", [np.full((2, 3), 0.5, dtype=dt)], f)
            orc.run(name + "(ties, seeded)", [with_ties((4, 5), dt)], f, scalar_backward=False)
            for label, arrs, pre in noncontig_unary_inputs(dt, with_ties):
                orc.run("%s(%s)" % (name, label), arrs, lambda o, a, f=f, pre=pre: f(o, pre(o, a)))
            orc.run(name + "(nan)", [np.asarray([1.0, NAN, 3.0, NAN], dtype=dt)], f)
            orc.run(name + "(inf)", [np.asarray([1.0, INF, -INF, 3.0], dtype=dt)], f)
        # max / min along a dim: values (gradient to the first extreme) and int64 indices
        for s, dims in (((3, 4), (0, 1, -1)), ((2, 3, 5), (0, 1, 2, -2)), ((7,), (0, -1)), ((), (0, -1)),
                        ((1, 5), (0, 1)), ((13, 1), (0, 1))):
            for d in dims:
                for keep in (False, True):
                    for name in ("max_dim", "min_dim"):
                        orc.run("%s(%d, keepdim=%s)" % (name, d, keep), [normal(s, dt)],
                                lambda o, a, name=name, d=d, keep=keep: getattr(o, name)(a, d, keep))
        for name in ("max_dim", "min_dim"):
            orc.run(name + "(ties: first index)", [with_ties((4, 6), dt)],
                    lambda o, a, name=name: getattr(o, name)(a, 1, False))
            orc.run(name + "(ties, dim 0, keepdim)", [with_ties((6, 3), dt)],
                    lambda o, a, name=name: getattr(o, name)(a, 0, True))
            orc.run(name + "(transpose)", [normal((5, 3), dt)],
                    lambda o, a, name=name: getattr(o, name)(o.transpose(a, 0, 1), 1, False))
            orc.run(name + "(slice step 2)", [normal((3, 10), dt)],
                    lambda o, a, name=name: getattr(o, name)(o.slice(a, 1, 0, 10, 2), -1, True))
            orc.run(name + "(expanded)", [normal((3, 1), dt)],
                    lambda o, a, name=name: getattr(o, name)(o.expand(a, [3, 4]), 1, False))
            orc.run(name + "(nan)", [np.asarray([[1.0, NAN, 3.0], [NAN, 2.0, NAN], [0.0, 5.0, -1.0]], dtype=dt)],
                    lambda o, a, name=name: getattr(o, name)(a, 1, False))
        # argmax / argmin: int64, first occurrence on ties
        for name in ("argmax", "argmin"):
            for arr in (normal((7,), dt), normal((3, 4), dt), with_ties((3, 5), dt), normal((), dt),
                        np.asarray([2.0, NAN, 5.0, NAN], dtype=dt)):
                orc.run(name, [arr], lambda o, a, name=name: getattr(o, name)(a))
            orc.run(name + "(transpose)", [normal((5, 3), dt)], lambda o, a, name=name: getattr(o, name)(o.t(a)))
            for s, d, keep in (((3, 4), 0, False), ((3, 4), 1, True), ((2, 3, 5), -1, False), ((2, 3, 5), 1, True),
                               ((7,), 0, False), ((), 0, False), ((), 0, True)):
                orc.run("%s_dim(%d, keepdim=%s)" % (name, d, keep), [with_ties(s, dt)],
                        lambda o, a, name=name, d=d, keep=keep: getattr(o, name + "_dim")(a, d, keep))
            orc.run(name + "_dim(transpose)", [normal((5, 3), dt)],
                    lambda o, a, name=name: getattr(o, name + "_dim")(o.t(a), 0, False))
        # prod, with zeros: one zero in a slice gets the product of the rest, two zeros give 0
        for s in [(), (1,), (5,), (7,), (3, 4), (2, 3, 2)]:
            orc.run("prod", [nonzero(s, dt)], lambda o, a: o.prod(a), kind="reduce", size=7)
        one_zero = np.asarray([1.5, -2.0, 0.0, 0.5, 3.0], dtype=dt)
        two_zeros = np.asarray([1.5, 0.0, -2.0, 0.0, 3.0], dtype=dt)
        orc.run("prod(one zero)", [one_zero], lambda o, a: o.prod(a))
        orc.run("prod(two zeros)", [two_zeros], lambda o, a: o.prod(a))
        orc.run("prod(all zeros)", [np.zeros((3,), dtype=dt)], lambda o, a: o.prod(a))
        orc.run("prod(empty)", [np.zeros((0, 3), dtype=dt)], lambda o, a: o.prod(a))
        rows = np.asarray([[1.5, -2.0, 0.5, 3.0],      # no zero
                           [1.5, 0.0, -2.0, 0.5],      # one zero
                           [0.0, 2.0, 0.0, 1.5]], dtype=dt)  # two zeros
        for d in (0, 1, -1):
            for keep in (False, True):
                orc.run("prod_dim(%d, keepdim=%s)" % (d, keep), [nonzero((3, 5), dt)],
                        lambda o, a, d=d, keep=keep: o.prod_dim(a, d, keep))
                orc.run("prod_dim(%d, keepdim=%s) with zeros" % (d, keep), [rows],
                        lambda o, a, d=d, keep=keep: o.prod_dim(a, d, keep))
        orc.run("prod_dim(1) 3-d", [nonzero((2, 7, 3), dt)], lambda o, a: o.prod_dim(a, 1, False))
        orc.run("prod_dim(0) of 0-dim", [nonzero((), dt)], lambda o, a: o.prod_dim(a, 0, False))
        orc.run("prod_dim(transpose) with zeros", [rows], lambda o, a: o.prod_dim(o.t(a), 0, False))
        orc.run("prod(transpose)", [nonzero((5, 3), dt)], lambda o, a: o.prod(o.t(a)))
        orc.run("prod(expanded)", [nonzero((3, 1), dt)], lambda o, a: o.prod(o.expand(a, [3, 2])))
        # var / std
        for correction in (0, 1):
            for dims in ([], [0], [1], [-1], [0, 2], [2, 0], [1, 2], [0, 1, 2]):
                for keep in (False, True):
                    for name in ("var", "std"):
                        orc.run("%s(%s, correction=%d, keepdim=%s)" % (name, dims, correction, keep),
                                [normal((2, 3, 4), dt)],
                                lambda o, a, name=name, dims=dims, c=correction, keep=keep:
                                getattr(o, name)(a, dims, c, keep), kind="reduce", size=24)
            for name in ("var", "std"):
                f = lambda o, a, name=name, c=correction: getattr(o, name)(a, [], c, False)
                g = lambda o, a, name=name, c=correction: getattr(o, name)(a, [-1], c, False)
                orc.run("%s(all, correction=%d)" % (name, correction), [normal((13,), dt)], f, kind="reduce", size=13)
                # N - correction = 0 with correction 1: PyTorch 1.13's own gradient there is broken (a wrong
                # shape for [1], inf for a 0-dim input), so only the forward value (NaN) is compared
                degenerate = (0,) if correction == 1 else ()
                orc.run("%s(all, correction=%d) 0-dim" % (name, correction), [normal((), dt)], f, kind="reduce",
                        no_grad=degenerate)
                orc.run("%s(all, correction=%d) one element" % (name, correction), [normal((1,), dt)], f,
                        kind="reduce", no_grad=degenerate)
                orc.run("%s([-1], correction=%d) size-1 dim" % (name, correction), [normal((3, 1), dt)], g,
                        kind="reduce")
                orc.run("%s([-1], correction=%d) odd rows" % (name, correction), [normal((5, 7), dt)], g,
                        kind="reduce", size=7)
                orc.run("%s([-1], correction=%d) transposed" % (name, correction), [normal((7, 5), dt)],
                        lambda o, a, name=name, c=correction: getattr(o, name)(o.t(a), [-1], c, True),
                        kind="reduce", size=7)
                orc.run("%s([1], correction=%d) sliced" % (name, correction), [normal((3, 10), dt)],
                        lambda o, a, name=name, c=correction: getattr(o, name)(o.slice(a, 1, 0, 10, 2), [1], c, False),
                        kind="reduce", size=5)
                # a constant row: variance 0 (PyTorch's std gradient there is 0, not NaN)
                const = np.asarray([[0.5, 0.5, 0.5, 0.5], [1.0, -2.0, 0.5, 3.0]], dtype=dt)
                orc.run("%s([1], correction=%d) constant row" % (name, correction), [const],
                        lambda o, a, name=name, c=correction: getattr(o, name)(a, [1], c, False), kind="reduce")
        # logsumexp over one and several dims
        for s, dims_list in (((3, 4), ([0], [1], [-1], [0, 1], [])), ((2, 3, 4), ([1], [0, 2], [-1, 0], [0, 1, 2])),
                             ((13,), ([0], [])), ((), ([0], [])), ((1, 5, 1), ([0, 2], [1]))):
            for dims in dims_list:
                for keep in (False, True):
                    orc.run("logsumexp(%s, keepdim=%s)" % (dims, keep), [wide(s, dt)],
                            lambda o, a, dims=dims, keep=keep: o.logsumexp(a, dims, keep), kind="reduce", size=24)
        orc.run("logsumexp(transpose)", [normal((5, 3), dt)], lambda o, a: o.logsumexp(o.t(a), [1], False),
                kind="reduce")
        orc.run("logsumexp(expanded, 2 dims)", [normal((3, 1), dt)],
                lambda o, a: o.logsumexp(o.expand(a, [2, 3, 4]), [0, 2], False), kind="reduce")
        big = np.asarray([[1e4, -1e4, 1e4 - 1.0], [-1e4, -1e4 + 2.0, -1e4], [1e4, 0.0, -1e4]], dtype=dt)
        orc.run("logsumexp(+-1e4, dim 1)", [big], lambda o, a: o.logsumexp(a, [1], False), kind="reduce")
        orc.run("logsumexp(+-1e4, dim 0)", [big], lambda o, a: o.logsumexp(a, [0], True), kind="reduce")
        orc.run("logsumexp(+-1e4, all)", [big], lambda o, a: o.logsumexp(a, [], False), kind="reduce")
        orc.run("logsumexp([1e4, 1e4])", [np.asarray([1e4, 1e4], dtype=dt)], lambda o, a: o.logsumexp(a, [0], False),
                kind="reduce")
        orc.run("logsumexp([-1e4, -1e4])", [np.asarray([-1e4, -1e4], dtype=dt)],
                lambda o, a: o.logsumexp(a, [0], False), kind="reduce")
        orc.run("logsumexp([-inf, -inf])", [np.asarray([-INF, -INF], dtype=dt)],
                lambda o, a: o.logsumexp(a, [0], False), kind="reduce")
        orc.run("logsumexp([-inf, 1])", [np.asarray([-INF, 1.0, -INF], dtype=dt)],
                lambda o, a: o.logsumexp(a, [0], False), kind="reduce")
        orc.run("logsumexp([inf, 1])", [np.asarray([INF, 1.0], dtype=dt)],
                lambda o, a: o.logsumexp(a, [0], False), kind="reduce")
        orc.run("logsumexp(rows of -inf, 2 dims)", [np.asarray([[[-INF, -INF], [-INF, -INF]], [[0.0, 1.0], [2.0, 3.0]]],
                                                               dtype=dt)],
                lambda o, a: o.logsumexp(a, [1, 2], False), kind="reduce")
        # norm p = 1, 2
        for p in (1.0, 2.0):
            for s, dims_list in (((3, 4), ([], [0], [1], [-1], [0, 1])), ((2, 3, 4), ([1], [0, 2], [])),
                                 ((13,), ([], [0])), ((), ([],)), ((1, 5), ([0], [1]))):
                for dims in dims_list:
                    for keep in (False, True):
                        orc.run("norm(p=%g, %s, keepdim=%s)" % (p, dims, keep), [normal(s, dt)],
                                lambda o, a, p=p, dims=dims, keep=keep: o.norm(a, p, dims, keep),
                                kind="reduce", size=24)
            zero_row = np.asarray([[0.0, 0.0, 0.0], [1.0, -2.0, 2.0], [0.0, 3.0, 0.0]], dtype=dt)
            orc.run("norm(p=%g, [1]) zero row" % p, [zero_row], lambda o, a, p=p: o.norm(a, p, [1], False),
                    kind="reduce")
            orc.run("norm(p=%g, [0], keepdim) zero column" % p, [zero_row.T.copy()],
                    lambda o, a, p=p: o.norm(a, p, [0], True), kind="reduce")
            orc.run("norm(p=%g) all zero" % p, [np.zeros((2, 3), dtype=dt)], lambda o, a, p=p: o.norm(a, p, [], False),
                    kind="reduce")
            orc.run("norm(p=%g, transpose)" % p, [normal((5, 3), dt)], lambda o, a, p=p: o.norm(o.t(a), p, [1], False),
                    kind="reduce")
            orc.run("norm(p=%g, slice step 2)" % p, [normal((4, 10), dt)],
                    lambda o, a, p=p: o.norm(o.slice(a, 1, 0, 10, 2), p, [], False), kind="reduce")
        # cumsum
        for s, dims in (((7,), (0, -1)), ((3, 4), (0, 1, -1, -2)), ((2, 3, 5), (0, 1, 2, -1)), ((), (0, -1)),
                        ((1, 13), (0, 1)), ((0, 3), (0, 1))):
            for d in dims:
                orc.run("cumsum(%d)" % d, [normal(s, dt)], lambda o, a, d=d: o.cumsum(a, d), kind="reduce", size=13)
        for label, arrs, pre in noncontig_unary_inputs(dt, normal):
            orc.run("cumsum(%s)" % label, arrs, lambda o, a, pre=pre: o.cumsum(pre(o, a), -1), kind="reduce", size=5)
    # integer inputs
    ints = integers((3, 5))
    orc.run("cumsum int64", [ints], lambda o, a: o.cumsum(a, 1))
    orc.run("cumsum int64 dim -2", [ints], lambda o, a: o.cumsum(a, -2))
    orc.run("cumsum bool", [boolean((2, 6))], lambda o, a: o.cumsum(a, 1))
    orc.run("prod int64", [integers((6,), -3, 4)], lambda o, a: o.prod(a))
    orc.run("prod_dim int64", [integers((3, 4), -3, 4)], lambda o, a: o.prod_dim(a, 1, False))
    orc.run("max int64", [integers((3, 4))], lambda o, a: o.max(a))
    orc.run("min int64", [integers((3, 4))], lambda o, a: o.min(a))
    orc.run("max_dim int64", [integers((3, 4))], lambda o, a: o.max_dim(a, 1, False))
    orc.run("argmax int64", [integers((3, 4))], lambda o, a: o.argmax(a))
    orc.run("argmin_dim int64", [integers((3, 4))], lambda o, a: o.argmin_dim(a, 0, True))
    orc.run("logsumexp int64", [integers((3, 4))], lambda o, a: o.logsumexp(a, [1], False))


def new_shape_ops(orc):
    for dt in FLOATS:
        n = lambda s: normal(s, dt)
        # cat
        for sa, sb, d in (((2, 3), (4, 3), 0), ((2, 3), (2, 5), 1), ((2, 3), (2, 1), -1), ((3, 2, 4), (3, 5, 4), -2),
                          ((5,), (7,), 0), ((1, 1), (1, 1), 0), ((0, 3), (2, 3), 0), ((2, 3, 1), (2, 3, 13), 2)):
            orc.run("cat(%d)" % d, [n(sa), n(sb)], lambda o, a, b, d=d: o.cat([a, b], d))
        orc.run("cat(3 inputs)", [n((2, 4)), n((1, 4)), n((3, 4))], lambda o, a, b, c: o.cat([a, b, c], 0))
        orc.run("cat(3 inputs, dim -1)", [n((2, 3, 1)), n((2, 3, 2)), n((2, 3, 5))],
                lambda o, a, b, c: o.cat([a, b, c], -1))
        orc.run("cat(one input)", [n((3, 4))], lambda o, a: o.cat([a], 1))
        orc.run("cat(same leaf twice)", [n((2, 3))], lambda o, a: o.cat([a, a], 0))
        orc.run("cat(transposed, sliced, expanded)", [n((4, 3)), n((3, 10)), n((3, 1))],
                lambda o, a, b, c: o.cat([o.t(a), o.slice(b, 1, 0, 10, 2), o.expand(c, [3, 2])], 1))
        orc.run("cat(legacy empty 1-d)", [n((0,)), n((2, 3))], lambda o, a, b: o.cat([a, b], 0), check_name=False)
        # stack
        for s, d in (((3, 4), 0), ((3, 4), 1), ((3, 4), -1), ((3, 4), 2), ((5,), 0), ((), 0), ((2, 1, 3), -2)):
            orc.run("stack(%d)" % d, [n(s), n(s)], lambda o, a, b, d=d: o.stack([a, b], d))
        orc.run("stack(3 inputs)", [n((2, 3)), n((2, 3)), n((2, 3))], lambda o, a, b, c: o.stack([a, b, c], 1))
        orc.run("stack(transposed)", [n((4, 3)), n((3, 4))], lambda o, a, b: o.stack([o.t(a), b], 0))
        # split / chunk: every piece, and gradients through a sum of the pieces
        for s, size, d in (((5, 3), 2, 0), ((3, 7), 3, -1), ((13,), 5, 0), ((4, 6), 6, 1), ((4, 6), 10, 1),
                           ((2, 7, 3), 1, 1), ((2, 3), 2, -2)):
            orc.run("split(%d, dim %d)" % (size, d), [n(s)], lambda o, a, size=size, d=d: o.split(a, size, d))
        for s, chunks, d in (((5, 3), 2, 0), ((3, 7), 3, -1), ((13,), 4, 0), ((4, 6), 6, 1), ((3, 2), 5, 0),
                             ((2, 7, 3), 7, 1), ((6,), 3, 0)):
            orc.run("chunk(%d, dim %d)" % (chunks, d), [n(s)], lambda o, a, c=chunks, d=d: o.chunk(a, c, d))
        orc.run("split(transposed)", [n((4, 5))], lambda o, a: o.split(o.t(a), 2, 0))
        orc.run("chunk(sliced)", [n((3, 14))], lambda o, a: o.chunk(o.slice(a, 1, 0, 14, 2), 3, 1))
        orc.run("sum of split pieces", [n((7, 3))],
                lambda o, a: (lambda p: o.add(o.add(o.mul_scalar(p[0], 2.0), p[1]), p[2]))(o.split(a, 3, 0)))
        # flip
        for s, dims in (((7,), [0]), ((3, 4), [0]), ((3, 4), [1]), ((3, 4), [-1, 0]), ((2, 3, 5), [0, 2]),
                        ((2, 3, 5), [1]), ((1, 13), [1]), ((0, 3), [0])):
            orc.run("flip(%s)" % dims, [n(s)], lambda o, a, dims=dims: o.flip(a, dims))
        orc.run("flip(transposed)", [n((5, 3))], lambda o, a: o.flip(o.t(a), [1]))
        orc.run("flip(sliced)", [n((3, 10))], lambda o, a: o.flip(o.slice(a, 1, 1, 10, 2), [0, 1]))
        # repeat (more reps than dims tiles along new leading dims)
        for s, reps in (((3, 4), [2, 3]), ((3, 4), [1, 1]), ((2, 3), [2, 1, 3]), ((5,), [3]), ((5,), [2, 2, 1]),
                        ((), [4]), ((), [2, 3]), ((1, 5, 1), [3, 1, 2]), ((3,), [0, 2]), ((2, 3), [1, 1, 1, 2])):
            orc.run("repeat(%s)" % reps, [n(s)], lambda o, a, reps=reps: o.repeat(a, reps))
        orc.run("repeat(transposed)", [n((4, 3))], lambda o, a: o.repeat(o.t(a), [2, 2]))
        orc.run("repeat(expanded)", [n((3, 1))], lambda o, a: o.repeat(o.expand(a, [3, 2]), [1, 3]))
        # constant pad; negative pads crop
        for s, pads, v in (((3, 4), [1, 2], 0.0), ((3, 4), [1, 1, 2, 0], 0.5), ((3, 4), [-1, 2], 0.0),
                           ((3, 5), [-1, -1, 1, -2], 0.0), ((2, 3, 4), [1, 0, 0, 2, 1, 1], -1.0),
                           ((7,), [0, 0], 0.0), ((7,), [3, -2], 2.0), ((2, 3), [-3, 1], 0.0), ((1, 13), [2, 2, 0, 0], 0.0)):
            orc.run("pad(%s, %g)" % (pads, v), [n(s)], lambda o, a, pads=pads, v=v: o.pad(a, pads, v))
        orc.run("pad(transposed)", [n((4, 3))], lambda o, a: o.pad(o.t(a), [1, -1, 0, 1], 0.25))
        # tril / triu, batched and non-square
        for name in ("tril", "triu"):
            for s in ((4, 5), (5, 4), (3, 3), (2, 4, 5), (2, 1, 3, 3), (1, 7)):
                for k in (-1, 0, 2):
                    orc.run("%s(%d)" % (name, k), [n(s)], lambda o, a, name=name, k=k: getattr(o, name)(a, k))
            orc.run(name + "(transposed)", [n((5, 4))], lambda o, a, name=name: getattr(o, name)(o.t(a), 1))
            orc.run(name + "(expanded batch)", [n((1, 3, 3))],
                    lambda o, a, name=name: getattr(o, name)(o.expand(a, [2, 3, 3]), -1))
            orc.run(name + "(k beyond size)", [n((3, 4))], lambda o, a, name=name: getattr(o, name)(a, 7))
            orc.run(name + "(k below -size)", [n((3, 4))], lambda o, a, name=name: getattr(o, name)(a, -5))
        # index_select (repeated indices accumulate in the gradient)
        for s, d, idx in (((5, 3), 0, [0, 2, 2, 4]), ((3, 7), 1, [6, 0, 3]), ((2, 3, 4), -1, [3, 3, 3]),
                          ((2, 3, 4), 1, [1]), ((7,), 0, [6, 1, 1, 0, 6]), ((4, 3), 0, [])):
            orc.run("index_select(%d)" % d, [n(s), index_array(idx)],
                    lambda o, a, i, d=d: o.index_select(a, d, i))
        orc.run("index_select(0-d index)", [n((4, 3)), index_array(2)], lambda o, a, i: o.index_select(a, 0, i))
        orc.run("index_select(transposed)", [n((4, 3)), index_array([1, 0, 1])],
                lambda o, a, i: o.index_select(o.t(a), 0, i))
        # index_add
        for s, d, idx in (((5, 3), 0, [0, 2, 2, 4]), ((3, 7), 1, [6, 0, 3]), ((2, 3, 4), -1, [1, 1, 1]),
                          ((7,), 0, [6, 1, 1])):
            src_shape = list(s)
            src_shape[d] = len(idx)
            orc.run("index_add(%d)" % d, [n(s), index_array(idx), n(tuple(src_shape))],
                    lambda o, a, i, src, d=d: o.index_add(a, d, i, src))
        orc.run("index_add(transposed src)", [n((5, 3)), index_array([4, 0]), n((3, 2))],
                lambda o, a, i, src: o.index_add(a, 0, i, o.t(src)))
        # gather
        for s, d, ishape, hi in (((3, 4), 0, (2, 4), 3), ((3, 4), 1, (3, 6), 4), ((2, 3, 5), -1, (2, 3, 2), 5),
                                 ((2, 3, 5), 1, (1, 2, 3), 3), ((7,), 0, (9,), 7), ((3, 4), 1, (3, 0), 4)):
            orc.run("gather(%d)" % d, [n(s), integers(ishape, 0, hi)], lambda o, a, i, d=d: o.gather(a, d, i))
        orc.run("gather(transposed)", [n((4, 3)), integers((3, 5), 0, 4)], lambda o, a, i: o.gather(o.t(a), 1, i))
        # scatter_add (torch.Tensor.scatter_add); repeated indices accumulate
        for s, d, ishape, hi in (((3, 4), 0, (2, 4), 3), ((3, 4), 1, (3, 6), 4), ((2, 3, 5), -1, (2, 3, 7), 5),
                                 ((5,), 0, (8,), 5)):
            orc.run("scatter_add(%d)" % d, [n(s), integers(ishape, 0, hi), n(ishape)],
                    lambda o, a, i, src, d=d: o.scatter_add(a, d, i, src))
        # (src's gradient is not compared: PyTorch 1.13's backward returns it in index's shape and fails)
        orc.run("scatter_add(src larger than index)", [n((3, 4)), integers((2, 3), 0, 3), n((3, 5))],
                lambda o, a, i, src: o.scatter_add(a, 0, i, src), no_grad=(2,))
        orc.run("scatter_add(transposed input)", [n((4, 3)), integers((3, 2), 0, 4), n((3, 2))],
                lambda o, a, i, src: o.scatter_add(o.t(a), 1, i, src))
        # embedding (repeated indices accumulate gradient rows)
        for ishape_vals in ([1, 3, 3, 0, 9], [[0, 2, 2], [9, 2, 1]], 4, [[[1]], [[1]]]):
            orc.run("embedding", [n((10, 4)), index_array(ishape_vals)], lambda o, w, i: o.embedding(w, i))
        orc.run("embedding(transposed weight)", [n((4, 10)), index_array([3, 3, 7])],
                lambda o, w, i: o.embedding(o.t(w), i))
        # basic indexing t[1, 0:3:2, None] and friends
        specs_list = [
            [("i", 1), ("s", 0, 3, 2), ("n",)],
            [("i", -1)],
            [("s", 1, INT64_MAX, 1)],
            [("n",), ("s", 0, INT64_MAX, 1), ("i", 2)],
            [("s", -3, INT64_MAX, 2), ("n",), ("i", 0)],
            [("s", 0, 100, 1), ("s", 1, 4, 2), ("s", 0, 2, 1)],
            [("i", 0), ("i", 1), ("i", 2)],
            [("s", 2, 1, 1)],
            [("n",), ("n",)],
        ]
        for specs in specs_list:
            orc.run("index%s" % (specs,), [n((3, 5, 4))], lambda o, a, specs=specs: o.index(a, specs))
        orc.run("index(no specs)", [n((3, 4))], lambda o, a: o.index(a, []), check_name=False)
        orc.run("index(transposed)", [n((4, 3))], lambda o, a: o.index(o.t(a), [("i", 1), ("s", 0, 4, 3)]))
        orc.run("index(0-dim, newaxis)", [n(())], lambda o, a: o.index(a, [("n",)]))
    # integer and mixed-dtype inputs
    orc.run("cat float32/float64", [normal((2, 3), np.float32), normal((1, 3), np.float64)],
            lambda o, a, b: o.cat([a, b], 0))
    orc.run("cat float64/float32/float32 dim -1", [normal((2, 1), np.float64), normal((2, 3), np.float32),
                                                   normal((2, 2), np.float32)],
            lambda o, a, b, c: o.cat([a, b, c], -1))
    orc.run("cat int64/float32", [integers((2, 3)), normal((2, 3), np.float32)], lambda o, a, b: o.cat([a, b], 1))
    orc.run("cat int64", [integers((2, 3)), integers((4, 3))], lambda o, a, b: o.cat([a, b], 0))
    orc.run("stack float32/float64", [normal((3,), np.float32), normal((3,), np.float64)],
            lambda o, a, b: o.stack([a, b], 1))
    orc.run("flip int64", [integers((3, 4))], lambda o, a: o.flip(a, [0, 1]))
    orc.run("repeat bool", [boolean((2, 3))], lambda o, a: o.repeat(a, [2, 1, 2]))
    orc.run("pad int64", [integers((2, 3))], lambda o, a: o.pad(a, [1, 1], 7.0))
    orc.run("tril int64", [integers((3, 4))], lambda o, a: o.tril(a, 0))
    orc.run("triu bool", [boolean((4, 4))], lambda o, a: o.triu(a, 1))
    orc.run("gather int64", [integers((3, 4)), integers((3, 2), 0, 4)], lambda o, a, i: o.gather(a, 1, i))
    orc.run("index_select int64", [integers((3, 4)), index_array([2, 0])], lambda o, a, i: o.index_select(a, 0, i))
    orc.run("scatter_add int64", [integers((3, 4)), integers((2, 4), 0, 3), integers((2, 4))],
            lambda o, a, i, s: o.scatter_add(a, 0, i, s))
    orc.run("split int64", [integers((5, 2))], lambda o, a: o.split(a, 2, 0))
    for vals, ncls in (([0, 3, 1, 3], 5), ([0, 3, 1, 3], -1), ([[2, 0], [1, 1], [0, 2]], 3), (4, 6), ([], 3)):
        orc.run("one_hot(%d)" % ncls, [index_array(vals)], lambda o, i, c=ncls: o.one_hot(i, c))


def new_numerics(orc):
    """IEEE special values through the activations and reductions, as PyTorch computes them."""
    for dt in FLOATS:
        a = lambda *v: np.asarray(v, dtype=dt)
        orc.run("sigmoid(+-1e4)", [a(-1e4, 1e4, -1e3, 1e3, 0.0)], lambda o, x: o.sigmoid(x))
        orc.run("tanh(+-1e4)", [a(-1e4, 1e4, -1e3, 1e3, 0.0)], lambda o, x: o.tanh(x))
        special = a(INF, NAN, -INF, 0.0, -0.0, -1.0, 1.0)
        for name in ("exp", "log", "sqrt", "rsqrt", "reciprocal", "log1p", "expm1", "abs", "sign", "square",
                     "erf", "sin", "cos", "sigmoid", "tanh"):
            orc.run("%s(inf, nan, -inf, 0, -0, -1)" % name, [special], lambda o, x, name=name: getattr(o, name)(x))
        for name, f in (("gelu", lambda o, x: o.gelu(x, False)), ("gelu(tanh)", lambda o, x: o.gelu(x, True)),
                        ("silu", lambda o, x: o.silu(x)), ("softplus", lambda o, x: o.softplus(x, 1.0, 20.0)),
                        ("leaky_relu", lambda o, x: o.leaky_relu(x, 0.01)), ("elu", lambda o, x: o.elu(x, 1.0)),
                        ("hardtanh", lambda o, x: o.hardtanh(x, -1.0, 1.0)), ("clamp", lambda o, x: o.clamp(x, -0.5, 0.5)),
                        ("clamp(min)", lambda o, x: o.clamp(x, 0.0, INF))):
            orc.run("%s(inf, nan, -inf, 0, -0, -1)" % name, [special], f)
        orc.run("log(negative)", [a(-1.0, -1e-30, -INF)], lambda o, x: o.log(x))
        orc.run("sqrt(negative)", [a(-1.0, -4.0, -INF)], lambda o, x: o.sqrt(x))
        orc.run("log1p(-1, < -1)", [a(-1.0, -2.0)], lambda o, x: o.log1p(x))
        orc.run("exp(-inf, inf, nan)", [a(-INF, INF, NAN)], lambda o, x: o.exp(x))
        orc.run("logsumexp([1e4, 1e4])", [a(1e4, 1e4)], lambda o, x: o.logsumexp(x, [], False))
        orc.run("logsumexp([-inf, -inf])", [a(-INF, -INF)], lambda o, x: o.logsumexp(x, [], False))
        orc.run("logsumexp([nan, 1])", [a(NAN, 1.0)], lambda o, x: o.logsumexp(x, [0], False))
        orc.run("norm(p=2, inf)", [a(INF, 1.0)], lambda o, x: o.norm(x, 2.0, [], False))
        orc.run("norm(p=2, large)", [a(1e30, 1e30)] if dt == np.float64 else [a(1e20, 1e20)],
                lambda o, x: o.norm(x, 2.0, [], False))
        orc.run("prod(inf, 0)", [a(INF, 0.0, 2.0)], lambda o, x: o.prod(x))
        orc.run("cumsum(inf, -inf)", [a(1.0, INF, -INF, 2.0)], lambda o, x: o.cumsum(x, 0))
        orc.run("var(inf)", [a(1.0, INF, 2.0)], lambda o, x: o.var(x, [], 1, False))
        orc.run("maximum(-inf, inf)", [a(-INF, INF, 0.0), a(INF, -INF, -0.0)], lambda o, x, y: o.maximum(x, y))


def double_backward(orc):
    """Gradients of gradients (create_graph) through the newer ops."""
    for dt in FLOATS:
        n = lambda s: normal(s, dt)
        cases = [
            ("slice", [n((3, 10))], lambda o, a: o.mul(o.slice(a, 1, 0, 10, 2), o.slice(a, 1, 1, 10, 2))),
            ("select", [n((4, 3))], lambda o, a: o.square(o.select(a, 0, 2))),
            ("index", [n((3, 5, 4))], lambda o, a: o.square(o.index(a, [("i", 1), ("s", 0, 3, 2), ("n",)]))),
            ("softplus", [wide((7,), dt)], lambda o, a: o.softplus(a, 2.0, 1.0)),
            ("gelu", [normal((7,), dt)], lambda o, a: o.gelu(a, False)),
            ("gelu(tanh)", [normal((7,), dt)], lambda o, a: o.gelu(a, True)),
            ("silu", [normal((7,), dt)], lambda o, a: o.silu(a)),
            ("elu", [normal((7,), dt)], lambda o, a: o.elu(a, 0.5)),
            ("erf", [normal((7,), dt)], lambda o, a: o.erf(a)),
            ("sqrt", [positive((7,), dt)], lambda o, a: o.sqrt(a)),
            ("rsqrt", [positive((7,), dt)], lambda o, a: o.rsqrt(a)),
            ("reciprocal", [nonzero((7,), dt)], lambda o, a: o.reciprocal(a)),
            ("log1p", [above_minus_one((7,), dt)], lambda o, a: o.log1p(a)),
            ("expm1", [normal((7,), dt)], lambda o, a: o.expm1(a)),
            ("sin/cos", [normal((7,), dt)], lambda o, a: o.mul(o.sin(a), o.cos(a))),
            ("abs * x", [normal((7,), dt)], lambda o, a: o.mul(o.abs(a), a)),
            ("square", [normal((7,), dt)], lambda o, a: o.square(a)),
            ("leaky_relu * x", [normal((7,), dt)], lambda o, a: o.mul(o.leaky_relu(a, 0.1), a)),
            ("clamp * x", [normal((7,), dt)], lambda o, a: o.mul(o.clamp(a, -0.5, 0.5), a)),
            ("hardtanh * x", [normal((7,), dt)], lambda o, a: o.mul(o.hardtanh(a, -0.5, 0.5), a)),
            ("maximum * x", [normal((7,), dt), normal((7,), dt)], lambda o, a, b: o.mul(o.maximum(a, b), a)),
            ("minimum", [normal((3, 1), dt), normal((4,), dt)], lambda o, a, b: o.square(o.minimum(a, b))),
            ("max", [n((3, 4))], lambda o, a: o.mul(o.max(a), o.sum(a))),
            ("min_dim", [n((3, 4))], lambda o, a: o.square(o.min_dim(a, 1, False)[0])),
            ("prod", [nonzero((5,), dt)], lambda o, a: o.prod(a)),
            ("prod_dim", [nonzero((3, 4), dt)], lambda o, a: o.prod_dim(a, 1, True)),
            ("var", [n((3, 5))], lambda o, a: o.var(a, [1], 1, False)),
            ("std", [n((3, 5))], lambda o, a: o.std(a, [0], 0, True)),
            ("logsumexp", [n((3, 5))], lambda o, a: o.logsumexp(a, [1], False)),
            ("logsumexp(2 dims)", [n((2, 3, 4))], lambda o, a: o.logsumexp(a, [0, 2], False)),
            ("norm(p=2)", [n((3, 5))], lambda o, a: o.norm(a, 2.0, [1], False)),
            ("norm(p=1) * x", [n((3, 5))], lambda o, a: o.mul(o.norm(a, 1.0, [1], True), a)),
            ("cumsum", [n((3, 5))], lambda o, a: o.square(o.cumsum(a, 1))),
            ("cat", [n((2, 3)), n((1, 3))], lambda o, a, b: o.square(o.cat([a, b], 0))),
            ("stack", [n((2, 3)), n((2, 3))], lambda o, a, b: o.square(o.stack([a, b], 1))),
            ("flip", [n((3, 4))], lambda o, a: o.mul(o.flip(a, [1]), a)),
            ("repeat", [n((2, 3))], lambda o, a: o.square(o.repeat(a, [2, 1, 2]))),
            ("pad", [n((3, 4))], lambda o, a: o.square(o.pad(a, [1, -1, 2, 0], 0.5))),
            ("tril", [n((4, 4))], lambda o, a: o.square(o.tril(a, 0))),
            ("triu", [n((4, 4))], lambda o, a: o.square(o.triu(a, 1))),
            ("index_select", [n((5, 3)), index_array([0, 2, 2])],
             lambda o, a, i: o.square(o.index_select(a, 0, i))),
            ("index_add", [n((5, 3)), index_array([0, 2, 2]), n((3, 3))],
             lambda o, a, i, s: o.square(o.index_add(a, 0, i, s))),
            ("gather", [n((3, 4)), integers((3, 5), 0, 4)], lambda o, a, i: o.square(o.gather(a, 1, i))),
            ("scatter_add", [n((3, 4)), integers((2, 4), 0, 3), n((2, 4))],
             lambda o, a, i, s: o.square(o.scatter_add(a, 0, i, s))),
            ("embedding", [n((6, 3)), index_array([[1, 1], [5, 0]])], lambda o, w, i: o.square(o.embedding(w, i))),
            ("masked_fill", [n((3, 4)), boolean((4,))], lambda o, a, m: o.square(o.masked_fill(a, m, 2.0))),
            ("split", [n((5, 3))], lambda o, a: (lambda p: o.mul(p[0], p[1]))(o.split(a, 2, 0))),
            ("sign * x", [n((7,))], lambda o, a: o.mul(o.sign(a), o.square(a))),
        ]
        for label, arrs, f in cases:
            orc.run_double(label, arrs, f)


def error_paths(orc):
    """Calls that must fail: the checked call raises NdError with its status and a message saying
    what PyTorch says; the ones PyTorch has no counterpart of check ndgrad alone."""
    f64 = np.float64
    cases = [
        ("add, shapes that do not broadcast", [normal((3,), f64), normal((4,), f64)], lambda o, a, b: o.add(a, b),
         ND_ERR_SHAPE, "the size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 0"),
        ("view of the wrong size", [normal((2, 3), f64)], lambda o, a: o.view(a, [4]), ND_ERR_SHAPE,
         "is invalid for input of size 6"),
        ("cat, sizes differ", [normal((2, 3), f64), normal((2, 4), f64)], lambda o, a, b: o.cat([a, b], 0),
         ND_ERR_SHAPE, "sizes of tensors must match except in dimension 0"),
        ("transpose, dim out of range", [normal((2, 3), f64)], lambda o, a: o.transpose(a, 0, 2), ND_ERR_DIM,
         "dimension out of range (expected to be in range of [-2, 1], but got 2)"),
        ("split (a count), dim out of range", [normal((3,), f64)], lambda o, a: o.split(a, 1, 3), ND_ERR_DIM,
         "dimension out of range (expected to be in range of [-1, 0], but got 3)"),
        ("requires_grad on int64", [integers((3,))], lambda o, a: o.requires_grad_(a), ND_ERR_DTYPE,
         "only tensors of floating point"),
        ("backward of a tensor without grad_fn", [normal((), f64)], lambda o, a: o.backward(o.mul_scalar(a, 2.0)),
         ND_ERR_GRAD, "element 0 of tensors does not require grad and does not have a grad_fn"),
    ]
    for label, arrs, f, status, text in cases:
        orc.run_error(label, arrs, f, status, text)
    orc.run_error("backward of a non-scalar", [normal((3,), f64)], lambda o, a: o.backward(o.mul_scalar(a, 2.0)),
                  ND_ERR_GRAD, "grad can be implicitly created only for scalar outputs", requires_grad=(0,))
    # ndgrad only
    buf = np.zeros(1)
    orc.run_error("copy_out into a short buffer", [normal((3,), f64)],
                  lambda o, a: o.L.nd_copy_out(a, buf.ctypes.data, buf.nbytes, ND_FLOAT64), ND_ERR_VALUE,
                  "need 24 bytes", torch_too=False)
    orc.run_error("an op given NULL", [normal((3,), f64)], lambda o, a: o.mul(a, None), ND_ERR_NULL, "NULL",
                  torch_too=False)


def coverage(orc):
    """Every recorded op's backward must have run in some case of this process."""
    L = orc.L
    if L.nd_op_count is None:
        orc.fail("coverage", "-", [], "nd_op_count is not exported", "-")
        orc.cases += 1
        return
    for i in range(L.nd_op_count()):
        orc.cases += 1
        if L.nd_op_backward_calls(i) <= 0:
            name = L.nd_op_name(i)
            orc.failed += 1
            print("oracle: no case exercises the backward of %s" % (name.decode() if name else "op %d" % i),
                  flush=True)


def probabilities(shape, dt):
    return np.asarray(RNG.uniform(0.05, 0.95, size=shape), dtype=dt)


def class_targets(shape, classes, ignore=None, ignore_value=-100):
    t = RNG.randint(0, classes, size=shape)
    if ignore is not None:
        t = np.where(RNG.rand(*shape) < ignore, ignore_value, t) if shape else t
    return np.asarray(t, dtype=np.int64)


def nn_ops(orc):
    for dt in FLOATS:
        n = lambda s: normal(s, dt)
        # softmax / log_softmax
        for name in ("softmax", "log_softmax"):
            f = lambda o, a, d, name=name: getattr(o, name)(a, d)
            for s, dims in (((7,), (0, -1)), ((3, 4), (0, 1, -1)), ((2, 3, 5), (0, 1, 2, -2)), ((), (0,)),
                            ((1, 13), (0, 1)), ((0, 3), (1,))):
                for d in dims:
                    orc.run("%s(%d)" % (name, d), [wide(s, dt)], lambda o, a, d=d, f=f: f(o, a, d), kind="reduce",
                            size=13)
            for label, arrs, pre in noncontig_unary_inputs(dt, wide):
                orc.run("%s(%s)" % (name, label), arrs, lambda o, a, f=f, pre=pre: f(o, pre(o, a), -1), kind="reduce")
            orc.run(name + "(+-1e4)", [np.asarray([[1e4, -1e4, 1e4 - 1.0], [-1e4, -1e4 + 2.0, -1e4]], dtype=dt)],
                    lambda o, a, f=f: f(o, a, 1), kind="reduce")
            orc.run(name + "(-inf entries)", [np.asarray([[-INF, 1.0, 2.0], [0.5, -INF, -INF]], dtype=dt)],
                    lambda o, a, f=f: f(o, a, 1), kind="reduce")
            orc.run(name + "(row of -inf)", [np.asarray([[-INF, -INF], [0.0, 1.0]], dtype=dt)],
                    lambda o, a, f=f: f(o, a, 1), kind="reduce")
            orc.run(name + "(scalar seed)", [n((3, 5))], lambda o, a, f=f: o.sum(o.mul(f(o, a, 1), a)), kind="reduce")
        # linear
        for sx, sw, bias in (((5, 4), (3, 4), True), ((5, 4), (3, 4), False), ((2, 5, 4), (3, 4), True),
                             ((4,), (3, 4), True), ((7, 13), (5, 13), True), ((1, 1), (1, 1), True)):
            arrs = [n(sx), n(sw)] + ([n((sw[0],))] if bias else [])
            orc.run("linear(%s)" % ("bias" if bias else "no bias"), arrs,
                    (lambda o, x, w, b: o.linear(x, w, b)) if bias else (lambda o, x, w: o.linear(x, w, None)),
                    kind="reduce", size=13)
        orc.run("linear(transposed weight)", [n((5, 4)), n((4, 3)), n((3,))],
                lambda o, x, w, b: o.linear(x, o.t(w), b), kind="reduce")
        # cross_entropy / nll_loss
        for red in ("mean", "sum", "none"):
            for smoothing in (0.0, 0.1):
                tag = "%s, smoothing %g" % (red, smoothing)
                orc.run("cross_entropy(%s)" % tag, [wide((5, 4), dt), class_targets((5,), 4)],
                        lambda o, x, t, red=red, ls=smoothing: o.cross_entropy(x, t, None, -100, red, ls), kind="reduce")
                orc.run("cross_entropy(weight, %s)" % tag, [wide((6, 3), dt), class_targets((6,), 3), positive((3,), dt)],
                        lambda o, x, t, w, red=red, ls=smoothing: o.cross_entropy(x, t, w, -100, red, ls),
                        kind="reduce", no_grad=(2,))
                orc.run("cross_entropy(ignore_index, %s)" % tag,
                        [wide((7, 5), dt), index_array([1, -100, 4, 0, -100, 2, 2])],
                        lambda o, x, t, red=red, ls=smoothing: o.cross_entropy(x, t, None, -100, red, ls),
                        kind="reduce")
                orc.run("cross_entropy(weight, ignore_index 1, %s)" % tag,
                        [wide((6, 4), dt), index_array([1, 0, 1, 3, 2, 1]), positive((4,), dt)],
                        lambda o, x, t, w, red=red, ls=smoothing: o.cross_entropy(x, t, w, 1, red, ls), kind="reduce",
                        no_grad=(2,))
                orc.run("cross_entropy([N,C,d1,d2], %s)" % tag, [wide((2, 3, 4, 5), dt), class_targets((2, 4, 5), 3)],
                        lambda o, x, t, red=red, ls=smoothing: o.cross_entropy(x, t, None, -100, red, ls),
                        kind="reduce", size=40)
                orc.run("cross_entropy([C], %s)" % tag, [wide((5,), dt), index_array(3)],
                        lambda o, x, t, red=red, ls=smoothing: o.cross_entropy(x, t, None, -100, red, ls),
                        kind="reduce")
            orc.run("nll_loss(%s)" % red, [n((5, 4)), class_targets((5,), 4)],
                    lambda o, x, t, red=red: o.nll_loss(x, t, None, -100, red), kind="reduce")
            orc.run("nll_loss(weight, ignore_index, %s)" % red,
                    [n((6, 3)), index_array([0, 2, -100, 1, 2, -100]), positive((3,), dt)],
                    lambda o, x, t, w, red=red: o.nll_loss(x, t, w, -100, red), kind="reduce", no_grad=(2,))
            orc.run("nll_loss([N,C,d], %s)" % red, [n((2, 4, 7)), class_targets((2, 7), 4)],
                    lambda o, x, t, red=red: o.nll_loss(x, t, None, -100, red), kind="reduce")
            orc.run("nll_loss(of log_softmax, %s)" % red, [wide((5, 6), dt), class_targets((5,), 6)],
                    lambda o, x, t, red=red: o.nll_loss(o.log_softmax(x, 1), t, None, -100, red), kind="reduce")
        orc.run("cross_entropy(smoothing 1)", [wide((4, 3), dt), class_targets((4,), 3)],
                lambda o, x, t: o.cross_entropy(x, t, None, -100, "mean", 1.0), kind="reduce")
        orc.run("cross_entropy(smoothing 0.3, weight, ignore)",
                [wide((6, 4), dt), index_array([1, -100, 3, 0, 2, -100]), positive((4,), dt)],
                lambda o, x, t, w: o.cross_entropy(x, t, w, -100, "mean", 0.3), kind="reduce", no_grad=(2,))
        orc.run("cross_entropy(all ignored)", [wide((3, 4), dt), index_array([-100, -100, -100])],
                lambda o, x, t: o.cross_entropy(x, t, None, -100, "mean", 0.0), kind="reduce")
        orc.run("cross_entropy(all ignored, sum)", [wide((3, 4), dt), index_array([-100, -100, -100])],
                lambda o, x, t: o.cross_entropy(x, t, None, -100, "sum", 0.0), kind="reduce")
        orc.run("nll_loss(all ignored)", [n((3, 4)), index_array([2, 2, 2])],
                lambda o, x, t: o.nll_loss(x, t, None, 2, "mean"), kind="reduce")
        orc.run("cross_entropy(+-1e4 logits)", [np.asarray([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype=dt),
                                                index_array([1, 2])],
                lambda o, x, t: o.cross_entropy(x, t, None, -100, "mean", 0.0), kind="reduce")
        orc.run("cross_entropy(transposed logits)", [wide((4, 5), dt), class_targets((5,), 4)],
                lambda o, x, t: o.cross_entropy(o.t(x), t, None, -100, "mean", 0.0), kind="reduce")
        # regression losses (the target gets a gradient too)
        for red in ("mean", "sum", "none"):
            for s in ((7,), (3, 4), (2, 3, 5), ()):
                orc.run("mse_loss(%s)" % red, [n(s), n(s)], lambda o, x, t, red=red: o.mse_loss(x, t, red),
                        kind="reduce", size=30)
                orc.run("l1_loss(%s)" % red, [n(s), n(s)], lambda o, x, t, red=red: o.l1_loss(x, t, red),
                        kind="reduce", size=30)
                for beta in (1.0, 0.5, 0.0):
                    orc.run("smooth_l1_loss(%s, beta %g)" % (red, beta), [wide(s, dt), n(s)],
                            lambda o, x, t, red=red, beta=beta: o.smooth_l1_loss(x, t, red, beta), kind="reduce",
                            size=30)
        at = np.asarray([0.0, 1.0, -1.0, 0.5, -0.5, 2.0, 0.25], dtype=dt)
        zero = np.zeros_like(at)
        orc.run("l1_loss(at d = 0)", [at, at.copy()], lambda o, x, t: o.l1_loss(x, t, "sum"), kind="reduce")
        orc.run("smooth_l1_loss(|d| = beta)", [at, zero], lambda o, x, t: o.smooth_l1_loss(x, t, "sum", 0.5),
                kind="reduce")
        # values only: PyTorch 1.13's beta-0 backward gives -1 at d = 0 to the input and the target alike
        orc.run("smooth_l1_loss(beta 0, d = 0)", [at, at.copy()], lambda o, x, t: o.smooth_l1_loss(x, t, "sum", 0.0),
                kind="reduce", no_grad=(0, 1))
        orc.run("mse_loss(transposed)", [n((4, 3)), n((3, 4))], lambda o, x, t: o.mse_loss(o.t(x), t, "mean"),
                kind="reduce")
        # binary cross entropy on probabilities, and on logits
        for red in ("mean", "sum", "none"):
            orc.run("binary_cross_entropy(%s)" % red, [probabilities((3, 4), dt), probabilities((3, 4), dt)],
                    lambda o, x, t, red=red: o.binary_cross_entropy(x, t, None, red), kind="reduce")
            orc.run("binary_cross_entropy(weight, %s)" % red,
                    [probabilities((3, 4), dt), probabilities((3, 4), dt), positive((4,), dt)],
                    lambda o, x, t, w, red=red: o.binary_cross_entropy(x, t, w, red), kind="reduce", no_grad=(2,))
            orc.run("binary_cross_entropy_with_logits(%s)" % red, [wide((3, 4), dt), probabilities((3, 4), dt)],
                    lambda o, x, t, red=red: o.binary_cross_entropy_with_logits(x, t, None, None, red), kind="reduce")
            orc.run("binary_cross_entropy_with_logits(weight, pos_weight, %s)" % red,
                    [wide((2, 3, 4), dt), probabilities((2, 3, 4), dt), positive((3, 4), dt), positive((4,), dt)],
                    lambda o, x, t, w, pw, red=red: o.binary_cross_entropy_with_logits(x, t, w, pw, red),
                    kind="reduce", no_grad=(2, 3))
        orc.run("binary_cross_entropy(7 elements, 0-dim)", [probabilities((7,), dt), probabilities((7,), dt)],
                lambda o, x, t: o.binary_cross_entropy(x, t, None, "mean"), kind="reduce")
        orc.run("binary_cross_entropy(scalar)", [probabilities((), dt), probabilities((), dt)],
                lambda o, x, t: o.binary_cross_entropy(x, t, None, "sum"), kind="reduce")
        edge_p = np.asarray([0.0, 1.0, 0.0, 1.0, 0.5, 1e-30 if dt == np.float64 else 1e-20], dtype=dt)
        edge_t = np.asarray([0.0, 1.0, 1.0, 0.0, 0.5, 1.0], dtype=dt)
        orc.run("binary_cross_entropy(values at p = 0 and 1)", [edge_p, edge_t],
                lambda o, x, t: o.binary_cross_entropy(x, t, None, "none"), kind="reduce", no_grad=(0, 1))
        orc.run("binary_cross_entropy(gradient at p = 0 and 1)", [edge_p, edge_t],
                lambda o, x, t: o.binary_cross_entropy(x, t, None, "sum"), kind="reduce", no_grad=(1,))
        big = np.asarray([-1e4, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4], dtype=dt)
        orc.run("binary_cross_entropy_with_logits(large logits)", [big, probabilities((7,), dt)],
                lambda o, x, t: o.binary_cross_entropy_with_logits(x, t, None, None, "none"), kind="reduce")
        orc.run("binary_cross_entropy_with_logits(large logits, pos_weight)", [big, probabilities((7,), dt),
                                                                             positive((7,), dt)],
                lambda o, x, t, pw: o.binary_cross_entropy_with_logits(x, t, None, pw, "sum"), kind="reduce",
                no_grad=(2,))
        # layer norm, rms norm
        for sx, shape, affine in (((4, 5), [5], True), ((4, 5), [5], False), ((2, 3, 4), [3, 4], True),
                                  ((2, 3, 4), [4], True), ((7,), [7], True), ((3, 13), [13], True), ((2, 1), [1], True)):
            arrs = [wide(sx, dt)] + ([n(tuple(shape)), n(tuple(shape))] if affine else [])
            if affine:
                f = lambda o, x, w, b, shape=shape: o.layer_norm(x, shape, w, b, 1e-5)
            else:
                f = lambda o, x, shape=shape: o.layer_norm(x, shape, None, None, 1e-5)
            # normalising a size-1 dim: the variance is 0 and rstd = 1/sqrt(eps) ~ 316, so PyTorch's float32
            # weight gradient g * (x rstd - mean rstd) carries ~316 * 6e-8 |x| of rounding instead of 0
            orc.run("layer_norm(%s%s)" % (shape, "" if affine else ", no affine"), arrs, f, kind="reduce", size=13,
                    tol=(5e-4, 1e-4) if shape == [1] else None)
            arrs = [wide(sx, dt)] + ([n(tuple(shape))] if affine else [])
            if affine:
                f = lambda o, x, w, shape=shape: o.rms_norm(x, shape, w, 1e-6)
            else:
                f = lambda o, x, shape=shape: o.rms_norm(x, shape, None, 1e-6)
            # (torch 1.13 has no rms_norm: its "grad_fn" would be that of the hand-written formula)
            orc.run("rms_norm(%s%s)" % (shape, "" if affine else ", no weight"), arrs, f, kind="reduce", size=13,
                    check_name=False)
        const = np.asarray([[2.0, 2.0, 2.0, 2.0], [1.0, -1.0, 0.5, 3.0]], dtype=dt)
        orc.run("layer_norm(constant row)", [const, n((4,)), n((4,))],
                lambda o, x, w, b: o.layer_norm(x, [4], w, b, 1e-5), kind="reduce", tol=(5e-4, 1e-4))
        orc.run("layer_norm(eps 0.1)", [n((3, 6))], lambda o, x: o.layer_norm(x, [6], None, None, 0.1), kind="reduce")
        orc.run("layer_norm(transposed)", [n((5, 3)), n((5,)), n((5,))],
                lambda o, x, w, b: o.layer_norm(o.t(x), [5], w, b, 1e-5), kind="reduce")
        orc.run("rms_norm(zero row)", [np.asarray([[0.0, 0.0, 0.0], [1.0, 2.0, -3.0]], dtype=dt), n((3,))],
                lambda o, x, w: o.rms_norm(x, [3], w, 1e-6), kind="reduce", check_name=False)
        # batch norm: outputs and the running statistics updated in place
        for sx in ((4, 3), (2, 3, 5), (2, 3, 4, 4)):
            C = sx[1]
            orc.run("batch_norm(train, running stats)", [wide(sx, dt), n((C,)), positive((C,), dt), n((C,)), n((C,))],
                    lambda o, x, rm, rv, w, b: (o.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5), rm, rv),
                    kind="reduce", size=32, no_grad=(1, 2))
            orc.run("batch_norm(train, no running stats, no affine)", [wide(sx, dt)],
                    lambda o, x: o.batch_norm(x, None, None, None, None, True, 0.1, 1e-5), kind="reduce", size=32)
            orc.run("batch_norm(eval)", [wide(sx, dt), n((C,)), positive((C,), dt), n((C,)), n((C,))],
                    lambda o, x, rm, rv, w, b: (o.batch_norm(x, rm, rv, w, b, False, 0.1, 1e-5), rm, rv),
                    kind="reduce", no_grad=(1, 2))
        orc.run("batch_norm(train, momentum 0.5, eps 0.01)", [n((5, 2)), n((2,)), positive((2,), dt)],
                lambda o, x, rm, rv: (o.batch_norm(x, rm, rv, None, None, True, 0.5, 0.01), rm, rv),
                kind="reduce", no_grad=(1, 2))
        orc.run("batch_norm(transposed input)", [n((3, 6)), n((3,)), n((3,))],
                lambda o, x, w, b: o.batch_norm(o.t(x), None, None, w, b, True, 0.1, 1e-5), kind="reduce")
        # group norm
        for sx, groups in (((2, 6, 5), 3), ((2, 4, 3, 3), 2), ((3, 4, 5), 1), ((2, 4, 5), 4), ((1, 6), 2)):
            C = sx[1]
            orc.run("group_norm(%d groups)" % groups, [wide(sx, dt), n((C,)), n((C,))],
                    lambda o, x, w, b, g=groups: o.group_norm(x, g, w, b, 1e-5), kind="reduce", size=20)
            orc.run("group_norm(%d groups, no affine)" % groups, [wide(sx, dt)],
                    lambda o, x, g=groups: o.group_norm(x, g, None, None, 1e-5), kind="reduce", size=20)
        # convolutions
        conv_cases = [
            ((2, 3, 7, 7), (4, 3, 3, 3), True, [1, 1], [0, 0], [1, 1], 1),
            ((2, 3, 7, 7), (4, 3, 3, 3), False, [2, 2], [1, 1], [1, 1], 1),
            ((1, 2, 9, 8), (3, 2, 3, 2), True, [1, 2], [2, 0], [2, 1], 1),
            ((2, 6, 5, 5), (6, 2, 3, 3), True, [1, 1], [1, 1], [1, 1], 3),
            ((2, 4, 5, 13), (4, 1, 1, 3), True, [1, 1], [0, 1], [1, 1], 4),
            ((1, 1, 5, 5), (1, 1, 5, 5), True, [1, 1], [0, 0], [1, 1], 1),
            ((2, 3, 4, 4), (5, 3, 1, 1), True, [1, 1], [0, 0], [1, 1], 1),
            # rows longer than one vector (the per-image path copies and adds them in several)
            ((2, 2, 6, 37), (3, 2, 3, 3), True, [1, 1], [1, 1], [1, 1], 1),
            ((1, 2, 5, 20), (2, 2, 3, 3), False, [1, 1], [2, 2], [1, 1], 1),
        ]
        for sx, sw, bias, st, pd, dl, groups in conv_cases:
            arrs = [n(sx), n(sw)] + ([n((sw[0],))] if bias else [])
            k = sw[1] * sw[2] * sw[3]
            if bias:
                f = lambda o, x, w, b, st=st, pd=pd, dl=dl, g=groups: o.conv2d(x, w, b, st, pd, dl, g)
            else:
                f = lambda o, x, w, st=st, pd=pd, dl=dl, g=groups: o.conv2d(x, w, None, st, pd, dl, g)
            orc.run("conv2d(stride %s, padding %s, dilation %s, groups %d)" % (st, pd, dl, groups), arrs, f,
                    kind="reduce", size=max(k, 50))
        orc.run("conv2d(transposed input)", [n((2, 3, 6, 5)), n((4, 3, 3, 3)), n((4,))],
                lambda o, x, w, b: o.conv2d(o.transpose(x, 2, 3), w, b, [1, 1], [1, 1], [1, 1], 1),
                kind="reduce", size=50)
        for sx, sw, st, pd, dl, groups in (((2, 3, 13), (4, 3, 3), 1, 0, 1, 1), ((2, 3, 13), (4, 3, 3), 2, 1, 2, 1),
                                           ((1, 4, 7), (6, 2, 2), 1, 1, 1, 2), ((3, 1, 5), (2, 1, 5), 1, 0, 1, 1)):
            orc.run("conv1d(stride %d, padding %d, dilation %d, groups %d)" % (st, pd, dl, groups),
                    [n(sx), n(sw), n((sw[0],))],
                    lambda o, x, w, b, st=st, pd=pd, dl=dl, g=groups: o.conv1d(x, w, b, st, pd, dl, g),
                    kind="reduce", size=50)
        # pooling
        for sx, k, st, pd in (((2, 3, 7, 7), [2, 2], None, [0, 0]), ((2, 3, 7, 7), [3, 3], [2, 2], [1, 1]),
                              ((1, 2, 5, 13), [2, 3], [1, 2], [1, 0]), ((1, 1, 4, 4), [4, 4], None, [0, 0]),
                              ((2, 2, 6, 5), [3, 2], [3, 1], [0, 1])):
            tag = "kernel %s, stride %s, padding %s" % (k, st, pd)
            orc.run("max_pool2d(%s)" % tag, [n(sx)], lambda o, x, k=k, st=st, pd=pd: o.max_pool2d(x, k, st, pd, True),
                    kind="reduce")
            orc.run("max_pool2d(ties, %s)" % tag, [with_ties(sx, dt)],
                    lambda o, x, k=k, st=st, pd=pd: o.max_pool2d(x, k, st, pd, True), kind="reduce")
            orc.run("avg_pool2d(%s)" % tag, [n(sx)], lambda o, x, k=k, st=st, pd=pd: o.avg_pool2d(x, k, st, pd),
                    kind="reduce", size=16)
        orc.run("max_pool2d(negative inputs with padding)", [np.asarray(-1.0 - RNG.rand(1, 2, 4, 4), dtype=dt)],
                lambda o, x: o.max_pool2d(x, [3, 3], [2, 2], [1, 1], True), kind="reduce")
        orc.run("max_pool2d(transposed)", [n((1, 2, 6, 5))],
                lambda o, x: o.max_pool2d(o.transpose(x, 2, 3), [2, 2], None, [0, 0], False), kind="reduce")
        orc.run("avg_pool2d(sliced)", [n((1, 2, 6, 10))],
                lambda o, x: o.avg_pool2d(o.slice(x, 3, 0, 10, 2), [2, 2], [1, 1], [1, 1]), kind="reduce")
        for sx, oh, ow in (((2, 3, 7, 7), 3, 3), ((1, 2, 5, 13), 2, 4), ((2, 2, 6, 6), 1, 1), ((1, 1, 4, 5), 4, 5),
                           ((1, 2, 3, 4), 5, 7)):
            orc.run("adaptive_avg_pool2d(%d, %d)" % (oh, ow), [n(sx)],
                    lambda o, x, oh=oh, ow=ow: o.adaptive_avg_pool2d(x, oh, ow), kind="reduce", size=16)
        # scaled dot-product attention (by hand on the torch side)
        sdpa = [
            ("plain", [n((2, 4, 8)), n((2, 6, 8)), n((2, 6, 5))], lambda o, q, k, v: o.sdpa(q, k, v, None, False, 0.0)),
            ("causal", [n((2, 5, 8)), n((2, 5, 8)), n((2, 5, 3))], lambda o, q, k, v: o.sdpa(q, k, v, None, True, 0.0)),
            ("causal, L != S", [n((1, 3, 4)), n((1, 5, 4)), n((1, 5, 4))],
             lambda o, q, k, v: o.sdpa(q, k, v, None, True, 0.0)),
            ("scale 0.5, heads", [n((2, 3, 4, 8)), n((2, 3, 6, 8)), n((2, 3, 6, 8))],
             lambda o, q, k, v: o.sdpa(q, k, v, None, False, 0.5)),
            ("bool mask", [n((2, 4, 8)), n((2, 6, 8)), n((2, 6, 5)),
                           np.asarray(np.concatenate([np.ones((4, 1), bool), RNG.rand(4, 5) < 0.6], 1))],
             lambda o, q, k, v, m: o.sdpa(q, k, v, m, False, 0.0)),
            ("float mask", [n((2, 4, 8)), n((2, 6, 8)), n((2, 6, 5)), n((4, 6))],
             lambda o, q, k, v, m: o.sdpa(q, k, v, m, False, 0.0)),
            ("bool mask, a fully masked row", [n((1, 2, 4)), n((1, 3, 4)), n((1, 3, 2)),
                                               np.asarray([[True, False, True], [False, False, False]])],
             lambda o, q, k, v, m: o.sdpa(q, k, v, m, False, 0.0)),
            ("2-d", [n((4, 8)), n((6, 8)), n((6, 7))], lambda o, q, k, v: o.sdpa(q, k, v, None, False, 0.0)),
            ("transposed k", [n((2, 4, 8)), n((2, 8, 6)), n((2, 6, 5))],
             lambda o, q, k, v: o.sdpa(q, o.transpose(k, 1, 2), v, None, False, 0.0)),
            ("causal heads, every operand a transposed view", [n((2, 5, 3, 8)), n((2, 5, 3, 8)), n((2, 5, 3, 4))],
             lambda o, q, k, v: o.sdpa(o.transpose(q, 1, 2), o.transpose(k, 1, 2), o.transpose(v, 1, 2), None, True, 0.0)),
            ("broadcast batch dims", [n((2, 1, 4, 8)), n((3, 6, 8)), n((1, 3, 6, 5))],
             lambda o, q, k, v: o.sdpa(q, k, v, None, False, 0.0)),
            # rows longer than a vector: the row max and the score-gradient dot in whole vectors
            # and a tail, at every level
            ("causal, 37 keys", [n((1, 37, 8)), n((1, 37, 8)), n((1, 37, 4))],
             lambda o, q, k, v: o.sdpa(q, k, v, None, True, 0.0)),
            ("float mask with -inf, 40 keys", [n((2, 3, 8)), n((2, 40, 8)), n((2, 40, 4)),
                                              np.where(RNG.rand(3, 40) < 0.3, -np.inf, n((3, 40)))],
             lambda o, q, k, v, m: o.sdpa(q, k, v, m, False, 0.0)),
        ]
        for label, arrs, f in sdpa:
            orc.run("scaled_dot_product_attention(%s)" % label, arrs, f, kind="reduce", size=8, check_name=False)


def dropout_cases(orc):
    """ndgrad's mask cannot match PyTorch's generator: eval mode and p = 0 must be the identity, p = 1
    all zeros; in training every element is 0 or x / (1 - p), the gradient uses the same mask, the
    zero fraction is p within 5 sigma, and one seed gives one mask."""
    L = orc.L
    if L.nd_dropout is None:
        orc.cases += 1
        orc.fail("dropout", "-", [], "nd_dropout is not exported", "-")
        return
    for dt in FLOATS:
        for p, training in ((0.3, False), (0.0, True), (1.0, False)):
            orc.run("dropout(p=%g, training=%s)" % (p, training), [normal((3, 5), dt)],
                    lambda o, x, p=p, tr=training: o.dropout(x, p, tr), check_name=False)
        for p in (0.1, 0.5, 0.9, 1.0):
            orc.cases += 1
            x = np.asarray(RNG.uniform(0.5, 2.0, size=(40, 250)), dtype=dt)  # no zeros: the mask is visible
            g = normal(x.shape, dt)
            problems = []
            before_t, before_n = L.nd_live_tensors(), L.nd_live_nodes()
            L.nd_scope_begin()
            try:
                outs = []
                for attempt in range(2):
                    L.nd_manual_seed(1234)
                    h = L.from_np(x)
                    L.nd_set_requires_grad(h, True)
                    out = L.nd_dropout(h, p, True)
                    L.nd_backward_with(out, L.from_np(g), False)
                    outs.append((L.to_np(out), L.to_np(L.check(L.nd_grad(h), "nd_grad"))))
                (y, gx), (y2, gx2) = outs
                keep = y != 0
                scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
                atol, rtol = orc.tolerance(nd_dtype_of_np(dt), "elem", 1)
                ok, err, note = orc.compare(y, np.where(keep, x.astype(np.float64) * scale, 0.0), atol, rtol)
                if not ok:
                    problems.append("kept values are not x / (1 - p): " + note)
                ok, err, note = orc.compare(gx, np.where(keep, g.astype(np.float64) * scale, 0.0), atol, rtol)
                if not ok:
                    problems.append("gradient does not use the output's mask: " + note)
                frac = 1.0 - keep.mean()
                sigma = math.sqrt(max(p * (1 - p), 1e-12) / x.size)
                if abs(frac - p) > 5 * sigma + 1e-12:
                    problems.append("zero fraction %.4f, expected %g" % (frac, p))
                if not (np.array_equal(y, y2) and np.array_equal(gx, gx2)):
                    problems.append("the same seed gave a different mask")
            except Exception as e:
                problems.append("ndgrad error: " + reason(e))
            finally:
                scope_error = L.end_scope()
            if scope_error:
                problems.append("nd_scope_end failed: " + scope_error)
            if L.nd_live_tensors() != before_t or L.nd_live_nodes() != before_n:
                problems.append("leak")
            if problems:
                orc.fail("dropout(p=%g, training)" % p, NAME_OF[nd_dtype_of_np(dt)], [x.shape], "; ".join(problems), "-")


def grad_norm_cases(orc):
    """nd_global_norm and nd_clip_grad_norm against torch.nn.utils.clip_grad_norm_."""
    L = orc.L
    if L.nd_clip_grad_norm is None or L.nd_global_norm is None:
        orc.cases += 1
        orc.fail("clip_grad_norm", "-", [], "nd_clip_grad_norm / nd_global_norm not exported", "-")
        return
    for dt in FLOATS:
        for max_norm in (0.5, 1.0, 1e6):
            orc.cases += 1
            shapes = [(3, 4), (5,), (), (2, 3, 2)]
            params = [normal(s, dt) for s in shapes]
            grads = [np.asarray(normal(s, dt) * 2, dtype=dt) for s in shapes]
            tps = [torch.from_numpy(p.copy()).requires_grad_(True) for p in params]
            for t, g in zip(tps, grads):
                t.grad = torch.from_numpy(g.copy())
            want_total = float(torch.nn.utils.clip_grad_norm_(tps, max_norm))
            want = [t.grad.to(torch.float64).numpy() for t in tps]
            want_global = float(torch.sqrt(sum(torch.sum(torch.from_numpy(p.astype(np.float64)) ** 2) for p in params)))
            problems = []
            before_t = L.nd_live_tensors()
            L.nd_scope_begin()
            try:
                hs = []
                for p, g in zip(params, grads):
                    h = L.from_np(p)
                    L.nd_set_requires_grad(h, True)
                    # the gradient g arrives through backward of sum(h * g)
                    L.nd_backward(NdOps(L).sum(NdOps(L).mul(h, L.from_np(g))))
                    hs.append(h)
                arr = (ctypes.c_void_p * (len(hs) + 1))(*(hs + [None]))  # a NULL entry is skipped
                total = ctypes.c_double()
                L.nd_clip_grad_norm(len(hs) + 1, arr, max_norm, ctypes.byref(total))
                atol, rtol = orc.tolerance(nd_dtype_of_np(dt), "reduce", 20)
                ok, err, note = orc.compare(np.asarray(total.value), np.asarray(want_total), atol, rtol)
                if not ok:
                    problems.append("total norm: " + note)
                for k, h in enumerate(hs):
                    ok, err, note = orc.compare(L.to_np(L.check(L.nd_grad(h), "nd_grad")), want[k], atol, rtol)
                    if not ok:
                        problems.append("clipped grad[%d]: %s" % (k, note))
                gn = ctypes.c_double()
                L.nd_global_norm(len(hs) + 1, arr, ctypes.byref(gn))
                ok, err, note = orc.compare(np.asarray(gn.value), np.asarray(want_global), atol, rtol)
                if not ok:
                    problems.append("global norm of the parameters: " + note)
            except Exception as e:
                problems.append("ndgrad error: " + reason(e))
            finally:
                scope_error = L.end_scope()
            if scope_error:
                problems.append("nd_scope_end failed: " + scope_error)
            if L.nd_live_tensors() != before_t:
                problems.append("leak")
            if problems:
                orc.fail("clip_grad_norm(max_norm %g)" % max_norm, NAME_OF[nd_dtype_of_np(dt)], shapes,
                         "; ".join(problems), "-")


def nn_double_backward(orc):
    for dt in FLOATS:
        n = lambda s: normal(s, dt)
        cases = [
            ("softmax", [n((3, 5))], lambda o, a: o.softmax(a, 1)),
            ("log_softmax", [n((3, 5))], lambda o, a: o.log_softmax(a, 0)),
            ("conv2d", [n((1, 2, 5, 5)), n((3, 2, 3, 3)), n((3,))],
             lambda o, x, w, b: o.conv2d(x, w, b, [1, 1], [1, 1], [1, 1], 1)),
            ("conv1d(groups)", [n((1, 4, 7)), n((4, 2, 3))], lambda o, x, w: o.conv1d(x, w, None, 2, 1, 1, 2)),
            ("max_pool2d", [n((1, 2, 4, 4))], lambda o, x: o.square(o.max_pool2d(x, [2, 2], None, [0, 0]))),
            ("avg_pool2d", [n((1, 2, 5, 5))], lambda o, x: o.square(o.avg_pool2d(x, [3, 3], [2, 2], [1, 1]))),
            ("adaptive_avg_pool2d", [n((1, 2, 5, 7))], lambda o, x: o.square(o.adaptive_avg_pool2d(x, 2, 3))),
            ("layer_norm", [n((3, 5)), n((5,)), n((5,))], lambda o, x, w, b: o.layer_norm(x, [5], w, b, 1e-5)),
            ("group_norm", [n((2, 4, 3)), n((4,)), n((4,))], lambda o, x, w, b: o.group_norm(x, 2, w, b, 1e-5)),
            ("rms_norm", [n((3, 5)), n((5,))], lambda o, x, w: o.rms_norm(x, [5], w, 1e-6)),
            ("batch_norm", [n((4, 3)), n((3,)), n((3,))],
             lambda o, x, w, b: o.batch_norm(x, None, None, w, b, True, 0.1, 1e-5)),
            ("cross_entropy", [n((4, 5)), class_targets((4,), 5)],
             lambda o, x, t: o.cross_entropy(x, t, None, -100, "none", 0.1)),
            ("linear", [n((4, 5)), n((3, 5)), n((3,))], lambda o, x, w, b: o.square(o.linear(x, w, b))),
            ("binary_cross_entropy_with_logits", [n((3, 4)), probabilities((3, 4), dt)],
             lambda o, x, t: o.binary_cross_entropy_with_logits(x, t, None, None, "none")),
            ("scaled_dot_product_attention", [n((2, 3, 4)), n((2, 3, 4)), n((2, 3, 4))],
             lambda o, q, k, v: o.sdpa(q, k, v, None, True, 0.0)),
        ]
        for label, arrs, f in cases:
            orc.run_double(label, arrs, f)


def grad_fn_cases(orc):
    """The fused ops and the ops built from others show PyTorch's grad_fn in every case where
    PyTorch's own name depends on the input (linear's addmm / mm / view / unsafe view / add, the
    2-d nll kernel, adaptive pooling's mean), with values and gradients compared as usual."""
    for dt in FLOATS:
        n = lambda s: normal(s, dt)
        for sx, bias, tag in (((4,), False, "vector, no bias"), ((5, 4), True, "matrix"), ((5, 4), False, "matrix, no bias"),
                              ((2, 5, 4), False, "3-d, no bias"), ((2, 2, 5, 4), True, "4-d"),
                              ((2, 2, 5, 4), False, "4-d, no bias")):
            arrs = [n(sx), n((3, 4))] + ([n((3,))] if bias else [])
            orc.run("linear(%s)" % tag, arrs,
                    (lambda o, x, w, b: o.linear(x, w, b)) if bias else (lambda o, x, w: o.linear(x, w, None)),
                    kind="reduce", size=4)
        orc.run("linear(3-d transposed input)", [n((5, 2, 4)), n((3, 4)), n((3,))],
                lambda o, x, w, b: o.linear(o.transpose(x, 0, 1), w, b), kind="reduce", size=4)
        orc.run("linear(3-d transposed input, no bias)", [n((5, 2, 4)), n((3, 4))],
                lambda o, x, w: o.linear(o.transpose(x, 0, 1), w, None), kind="reduce", size=4)
        for red in ("mean", "sum", "none"):
            orc.run("cross_entropy([N,C,d], %s)" % red, [wide((2, 4, 3), dt), class_targets((2, 3), 4)],
                    lambda o, x, t, red=red: o.cross_entropy(x, t, None, -100, red, 0.0), kind="reduce")
            orc.run("cross_entropy([N,C,d1,d2,d3], %s)" % red, [wide((2, 3, 2, 2, 2), dt), class_targets((2, 2, 2, 2), 3)],
                    lambda o, x, t, red=red: o.cross_entropy(x, t, None, -100, red, 0.0), kind="reduce")
            orc.run("nll_loss([N,C,d], %s)" % red, [n((2, 4, 3)), class_targets((2, 3), 4)],
                    lambda o, x, t, red=red: o.nll_loss(x, t, None, -100, red), kind="reduce")
            orc.run("mse_loss(%s)" % red, [n((3, 4)), n((3, 4))], lambda o, x, y, red=red: o.mse_loss(x, y, red),
                    kind="reduce")
        # causal attention over several GEMM tiles (those above the diagonal skipped)
        for sq, sk, sv in (((2, 2, 100, 16), (2, 2, 100, 16), (2, 2, 100, 8)), ((1, 3, 37, 8), (1, 3, 90, 8), (1, 3, 90, 8)),
                           ((1, 3, 90, 8), (1, 3, 37, 8), (1, 3, 37, 4)), ((1, 1, 72, 4), (1, 1, 72, 4), (1, 1, 72, 4))):
            orc.run("scaled_dot_product_attention(causal, L %d, S %d)" % (sq[2], sk[2]), [n(sq), n(sk), n(sv)],
                    lambda o, q, k, v: o.sdpa(q, k, v, None, True, 0.0), kind="reduce", size=sk[2])
        orc.run("adaptive_avg_pool2d(1 x 1)", [n((2, 3, 4, 5))], lambda o, x: o.adaptive_avg_pool2d(x, 1, 1), kind="reduce")
        orc.run("adaptive_avg_pool2d(2 x 3)", [n((2, 3, 4, 5))], lambda o, x: o.adaptive_avg_pool2d(x, 2, 3), kind="reduce")


def main():
    if len(sys.argv) != 2:
        print("usage: /usr/bin/python3 tests/oracle/oracle.py build/libndgrad.so", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    lib = Lib(sys.argv[1])
    orc = Oracle(lib)
    for section in (elementwise_binary, elementwise_unary, scalar_ops, where_ops, comparisons, promotions,
                    reductions, matmuls, views, edge_values, reprs,
                    new_unary, new_binary, new_reductions, new_shape_ops, new_numerics, double_backward,
                    nn_ops, dropout_cases, grad_norm_cases, nn_double_backward, error_paths, grad_fn_cases):
        try:
            section(orc)
        except Exception as e:  # outside any case (cases catch their own): one more failed case
            orc.cases += 1
            orc.fail(section.__name__, "-", [], "the section raised", "-", reason(e))
    coverage(orc)  # last: counts the backward passes of every case above
    print("oracle: %d cases, %d failed" % (orc.cases, orc.failed))
    return 1 if orc.failed else 0


if __name__ == "__main__":
    sys.exit(main())

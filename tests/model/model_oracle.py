"""Model-level oracle: whole models trained for a few steps in ndgrad and in PyTorch from the same
weights, plus safetensors interchange in both directions.

Models (each started from one set of float32 weights, written by this script):
  mlp  the 784-512-256-10 ReLU MLP of examples/fashion_mlp.c (Adam 1e-3), 5 batches of 64 random
       inputs in [0, 1) with random labels;
  gpt  the GPT of examples/gpt_model.h with 2 layers, 4 heads, 32 channels, context 16, vocabulary
       40 (AdamW 1e-3, betas 0.9/0.95, weight decay 0.1 on the 2-d weights only, gradients clipped
       to global norm 1.0), 5 batches of 4 x 16 random tokens.
The C side is tests/model/model_step.c (compiled here when missing or older than its sources). The
loss before each of the 5 steps must agree within 1e-4 relative, and every element of every
parameter after the last step within 1e-4 of the tensor's largest magnitude, widened where float32
rounding alone moves PyTorch by more: where a gradient is far below Adam's eps (a nearly dead ReLU
unit; the attention key bias, whose exact gradient is zero), Adam turns rounding noise into
visible updates, and PyTorch's float32 run differs from its float64 run by more than 1e-4. The
spread of PyTorch's float64 run and of float32 reruns from weights moved by one ulp measures this
per element; SPREAD_FACTOR times it is added to the tolerance.

Safetensors: a file written here with F32, F64, I64, BOOL, F16 and BF16 tensors (0-dim, empty,
special values, escaped names, metadata) must load in ndgrad with the values PyTorch gives; a file
saved by ndgrad must parse with a standard-library reader (valid JSON header, 8-byte aligned data,
contiguous offsets) and hold the values of the tensors it was given. Loading a missing or
malformed file and adding a duplicate name must fail with their status.

Every ndgrad call is checked: fn() declares each function with its C result, and a non-zero
nd_status or a NULL tensor / list raises NdError with nd_last_error(). An exception inside a case
is that case failing (printed with the reason), never the end of the run; a call that must fail
goes through expect_error(), which asserts the error. Every generator has a fixed seed.

Usage: /usr/bin/python3 tests/model/model_oracle.py build/libndgrad.so
Set ND_MODEL_VERBOSE=1 to see every comparison, ND_MODEL_DRIVER=path to run another build of
tests/model/model_step.c (e.g. one with -fsanitize=address). Last line: "model: N cases, M failed"."""
import ctypes as C
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("model: skipped (PyTorch not found at /usr/bin/python3)")
    sys.exit(0)

START = time.time()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SO = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "libndgrad.so"))
BUILD = os.path.dirname(SO)
VERBOSE = bool(os.environ.get("ND_MODEL_VERBOSE"))
STEPS = 5
TOL = 1e-4
JITTER_RUNS = 3      # float32 reruns from weights moved by one ulp, to measure rounding sensitivity
SPREAD_FACTOR = 3.0  # an element may differ by this many times the spread of those runs

cases = failed = 0


def report(name, ok, detail=""):
    global cases, failed
    cases += 1
    if not ok:
        failed += 1
        print(f"FAIL {name} {detail}".rstrip())
    elif VERBOSE:
        print(f"ok   {name} {detail}".rstrip())
    sys.stdout.flush()


# ------------------------------------------------------------------ safetensors, standard library only

# File dtype -> (bytes per element, numpy dtype of the raw elements).
ST_DTYPES = {
    "F64": (8, np.dtype("<f8")), "F32": (4, np.dtype("<f4")), "F16": (2, np.dtype("<f2")),
    "BF16": (2, np.dtype("<u2")), "I64": (8, np.dtype("<i8")), "I32": (4, np.dtype("<i4")),
    "I16": (2, np.dtype("<i2")), "I8": (1, np.dtype("i1")), "U8": (1, np.dtype("u1")), "BOOL": (1, np.dtype("u1")),
}


def bf16_bytes(a):
    """bfloat16 encoding of float32 values: the top 16 bits of each (truncation)."""
    return (np.ascontiguousarray(a, np.float32).view("<u4") >> 16).astype("<u2").tobytes()


def st_write(path, tensors, metadata=None, header_order=None):
    """tensors: list of (name, dtype string, shape, raw little-endian bytes), laid out in this order.
    header_order (names) fixes the order of the JSON keys, which need not follow the data."""
    entries, offset = {}, 0
    for name, dtype, shape, raw in tensors:
        assert len(raw) == math.prod(shape) * ST_DTYPES[dtype][0], name
        entries[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    header = OrderedDict()
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in header_order or [t[0] for t in tensors]:
        header[name] = entries[name]
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, raw in tensors:
            f.write(raw)


def st_read(path):
    """Parses a safetensors file strictly. Returns (tensors, info): tensors maps name -> (dtype,
    shape, numpy array of the decoded values: F16/BF16 as float32); info holds the header length,
    the metadata and the list of structural problems found (empty for a well-formed file)."""
    problems = []
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        return {}, {"problems": [f"file of {len(blob)} bytes"], "hlen": 0, "metadata": None}
    (hlen,) = struct.unpack("<Q", blob[:8])
    info = {"hlen": hlen, "metadata": None, "problems": problems}
    if 8 + hlen > len(blob):
        problems.append(f"header length {hlen} runs past the end ({len(blob)} bytes)")
        return {}, info

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            problems.append(f"duplicate keys in the header: {sorted(k for k in keys if keys.count(k) > 1)}")
        return dict(pairs)

    try:
        header = json.loads(blob[8:8 + hlen].decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        problems.append(f"header is not valid UTF-8 JSON: {e}")
        return {}, info
    if not isinstance(header, dict):
        problems.append("header is not a JSON object")
        return {}, info
    data = blob[8 + hlen:]
    meta = header.pop("__metadata__", None)
    info["metadata"] = meta
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        problems.append(f"__metadata__ is not a map of strings: {meta!r}")
    spans, tensors = [], {}
    for name, e in header.items():
        if not (isinstance(e, dict) and set(e) == {"dtype", "shape", "data_offsets"}):
            problems.append(f"{name!r}: entry {e!r} needs exactly dtype, shape, data_offsets")
            continue
        dtype, shape, (b, end) = e["dtype"], tuple(e["shape"]), e["data_offsets"]
        if dtype not in ST_DTYPES:
            problems.append(f"{name!r}: unknown dtype {dtype!r}")
            continue
        size, raw_dtype = ST_DTYPES[dtype]
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            problems.append(f"{name!r}: bad shape {shape}")
            continue
        if not (isinstance(b, int) and isinstance(end, int) and 0 <= b <= end <= len(data)):
            problems.append(f"{name!r}: bad data_offsets {[b, end]} for {len(data)} data bytes")
            continue
        if end - b != math.prod(shape) * size:
            problems.append(f"{name!r}: {end - b} bytes for shape {list(shape)} of {dtype}")
            continue
        spans.append((b, end, name))
        raw = np.frombuffer(data[b:end], raw_dtype).reshape(shape)
        if dtype == "BF16":
            values = (raw.astype("<u4") << 16).view("<f4")
        elif dtype == "F16":
            values = raw.astype(np.float32)
        elif dtype == "BOOL":
            values = raw.astype(bool)
        else:
            values = raw.copy()
        tensors[name] = (dtype, shape, values)
    expect = 0
    for b, end, name in sorted(spans):
        if b != expect:
            problems.append(f"{name!r} starts at data byte {b}, expected {expect} ({'overlap' if b < expect else 'hole'})")
        expect = max(expect, end)
    if expect != len(data):
        problems.append(f"tensors cover {expect} data bytes, the file holds {len(data)}")
    return tensors, info


# ------------------------------------------------------------------ ndgrad through ctypes

lib = C.CDLL(SO)
P, I64 = C.c_void_p, C.c_int64

# Result kinds for fn(), besides plain ctypes types (counts, bools, strings: returned as they are).
STATUS = "nd_status"  # nd_status: 0 is ND_OK, anything else raises NdError
OBJ = "pointer"       # a tensor or a tensor list: NULL raises NdError
ND_OK, ND_ERR_NULL, ND_ERR_VALUE, ND_ERR_IO, ND_ERR_FORMAT = 0, 1, 6, 10, 11


class NdError(RuntimeError):
    """A checked ndgrad call failed: .status is its nd_status (ND_ERR_NULL for a NULL result)."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def _check_status(result, func, args):
    if result != ND_OK:
        name = nd_status_name(result)
        raise NdError(f"{func.__name__} returned {result} ({name.decode() if name else '?'}): {err()}", result)
    return result


def _check_pointer(result, func, args):
    if not result:
        raise NdError(f"{func.__name__} returned NULL: {err()}", nd_last_status() or ND_ERR_NULL)
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
nd_status_name = fn("nd_status_name", C.c_char_p, C.c_int)
nd_clear_error = fn("nd_clear_error", None)
nd_live_tensors = fn("nd_live_tensors", I64)
nd_from_data = fn("nd_from_data", OBJ, P, C.c_int, C.c_int, P)
nd_release = fn("nd_release", None, P)
nd_transpose = fn("nd_transpose", OBJ, P, C.c_int, C.c_int)
nd_slice = fn("nd_slice", OBJ, P, C.c_int, I64, I64, I64)
nd_is_contiguous = fn("nd_is_contiguous", C.c_bool, P)
nd_ndim = fn("nd_ndim", C.c_int, P)
nd_shape = fn("nd_shape", C.POINTER(I64), P)
nd_dtype_of = fn("nd_dtype_of", C.c_int, P)
nd_copy_out = fn("nd_copy_out", STATUS, P, P, C.c_size_t, C.c_int)
nd_params_new = fn("nd_params_new", OBJ)
nd_params_free = fn("nd_params_free", None, P)
nd_params_add = fn("nd_params_add", STATUS, P, C.c_char_p, P)
nd_params_count = fn("nd_params_count", C.c_int, P)
nd_params_name = fn("nd_params_name", C.c_char_p, P, C.c_int)
nd_params_get = fn("nd_params_get", OBJ, P, C.c_int)
nd_safetensors_load = fn("nd_safetensors_load", OBJ, C.c_char_p)
nd_safetensors_save = fn("nd_safetensors_save", STATUS, C.c_char_p, P)

ND_FLOAT32, ND_FLOAT64, ND_INT64, ND_BOOL = 0, 1, 2, 3
NP_OF_ND = {ND_FLOAT32: np.float32, ND_FLOAT64: np.float64, ND_INT64: np.int64, ND_BOOL: np.bool_}
ND_OF_NP = {np.dtype(v): k for k, v in NP_OF_ND.items()}


def err():
    return (nd_last_error() or b"").decode("utf-8", "replace")


def nd_values(t):
    """(dtype code, shape, numpy array in the tensor's own dtype) of an ndgrad tensor."""
    ndim, dtype = nd_ndim(t), nd_dtype_of(t)
    if ndim < 0:
        raise NdError("nd_ndim: NULL tensor", ND_ERR_NULL)
    shape = tuple(nd_shape(t)[i] for i in range(ndim)) if ndim > 0 else ()
    out = np.zeros(shape, NP_OF_ND[dtype])
    buf = np.zeros(max(out.nbytes, 8), np.uint8)  # never a NULL pointer, even when empty
    nd_copy_out(t, buf.ctypes.data, out.nbytes, dtype)
    return dtype, shape, buf[:out.nbytes].view(NP_OF_ND[dtype]).reshape(shape).copy()


def same_values(got, want):
    """Exact equality; floats compared bit for bit (so -0.0 differs from 0.0) except that any NaN
    matches any NaN. Returns (ok, detail)."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return False, f"shape {list(got.shape)} vs {list(want.shape)}"
    if got.dtype != want.dtype:
        return False, f"dtype {got.dtype} vs {want.dtype}"
    if got.dtype.kind == "f":
        gn, wn = np.isnan(got), np.isnan(want)
        if not np.array_equal(gn, wn):
            return False, f"NaN at {np.argwhere(gn != wn)[0].tolist()}"
        bits = {4: np.uint32, 8: np.uint64}[got.dtype.itemsize]
        diff = (got.view(bits) != want.view(bits)) & ~gn
    else:
        diff = got != want
    if diff.any():
        i = tuple(np.argwhere(diff)[0])
        return False, f"at {list(i)}: ndgrad {got[i]!r} vs expected {want[i]!r} ({int(diff.sum())} differ)"
    return True, ""


# ------------------------------------------------------------------ the C driver

def driver():
    """Path of build/model_step, compiled when missing or older than any of its sources
    (ND_MODEL_DRIVER names another binary instead, e.g. one built with sanitizers)."""
    if os.environ.get("ND_MODEL_DRIVER"):
        return os.path.abspath(os.environ["ND_MODEL_DRIVER"]), None
    binary = os.path.join(BUILD, "model_step")
    src = os.path.join(ROOT, "tests", "model", "model_step.c")
    static = os.path.join(BUILD, "libndgrad.a")
    deps = [src, os.path.join(ROOT, "examples", "gpt_model.h"), os.path.join(ROOT, "include", "ndgrad.h")]
    if os.path.exists(static):
        link = [static]
        deps.append(static)
    else:  # only the shared library was built: link it and find it at run time
        link = [SO, f"-Wl,-rpath,{BUILD}"]
        deps.append(SO)
    if os.path.exists(binary) and os.path.getmtime(binary) >= max(os.path.getmtime(d) for d in deps):
        return binary, None
    tmp = f"{binary}.tmp{os.getpid()}"  # renamed into place: concurrent runs never see half a binary
    cmd = [os.environ.get("CC", "cc"), "-std=c11", "-O2", "-Iinclude", src, *link, "-lz", "-lm", "-lpthread",
           "-o", tmp]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        if os.path.exists(tmp):
            os.unlink(tmp)
        return None, f"cannot compile the driver: {' '.join(cmd)}\n{r.stdout}{r.stderr}"
    os.replace(tmp, binary)
    return binary, None


# ------------------------------------------------------------------ the models in PyTorch

def make_mlp():
    return nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(784, 512)), ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(512, 256)), ("relu2", nn.ReLU()),
        ("fc3", nn.Linear(256, 10)),
    ]))


GPT_VOCAB, GPT_BLOCK, GPT_LAYERS, GPT_HEADS, GPT_EMBD = 40, 16, 2, 4, 32


class CausalSelfAttention(nn.Module):
    def __init__(self, C, H, block):
        super().__init__()
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.n_head = H
        self.register_buffer("mask", torch.tril(torch.ones(block, block, dtype=torch.bool)), persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        H, D = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))
        att = att.masked_fill(~self.mask[:T, :T], float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.c_fc = nn.Linear(C, 4 * C)
        self.c_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, C, H, block):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.attn = CausalSelfAttention(C, H, block)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.mlp = MLP(C)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT's model with its parameter names, without the "transformer." prefix and without
    tying lm_head to wte (examples/gpt_model.h keeps them separate)."""

    def __init__(self, V=GPT_VOCAB, block=GPT_BLOCK, L=GPT_LAYERS, H=GPT_HEADS, C=GPT_EMBD):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(block, C)
        self.h = nn.ModuleList([Block(C, H, block) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C, eps=1e-5)
        self.lm_head = nn.Linear(C, V, bias=False)
        # GPT-2's initialisation, with the biases and norms also randomised so every parameter
        # starts away from its special value and every gradient path carries signal.
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    p.normal_(0.0, 0.02 / math.sqrt(2 * L))
                elif p.dim() == 2:
                    p.normal_(0.0, 0.02)
                elif ".ln_" in name or name.startswith("ln_"):
                    p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
                else:
                    p.normal_(0.0, 0.02)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def train_torch(kind, model, xs, ys):
    """Losses before each step, the parameters after the last one, and the gradient norms seen."""
    if kind == "mlp":
        opts = [torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)]
    else:
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        opts = [torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-3, betas=(0.9, 0.95), eps=1e-8)]
    losses, norms = [], []
    for s in range(STEPS):
        x, y = xs[s % len(xs)], ys[s % len(ys)]
        if x.is_floating_point():
            x = x.to(next(model.parameters()).dtype)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        losses.append(loss.item())
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        if kind == "gpt":
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
        for o in opts:
            o.step()
    params = {n: p.detach().double().numpy().copy() for n, p in model.named_parameters()}
    return losses, params, norms


def ulp_jitter(a, rng):
    """float32 values moved by -1, 0 or +1 unit in the last place, at random."""
    a = np.ascontiguousarray(a, np.float32)
    step = rng.integers(-1, 2, a.shape).astype(np.int32)
    step[a == 0] = 0  # (stepping the bits of 0.0 down would make a NaN)
    return (a.view(np.int32) + step).view(np.float32)


def f32_bytes(a):
    return np.ascontiguousarray(a, "<f4").tobytes()


def model_case(kind, tmp, binary, build_error):
    torch.manual_seed(20240 + (kind == "gpt"))
    rng = np.random.default_rng(7 + (kind == "gpt"))
    if kind == "mlp":
        model = make_mlp()
        x = rng.random((STEPS, 64, 784), dtype=np.float32)
        y = rng.integers(0, 10, (STEPS, 64), dtype=np.int64)
        data = [("x", "F32", x.shape, f32_bytes(x)), ("y", "I64", y.shape, y.astype("<i8").tobytes())]
        xs = [torch.from_numpy(x[s]) for s in range(STEPS)]
    else:
        model = GPT()
        stream = rng.integers(0, GPT_VOCAB, (STEPS, 4, GPT_BLOCK + 1), dtype=np.int64)
        x, y = np.ascontiguousarray(stream[:, :, :-1]), np.ascontiguousarray(stream[:, :, 1:])
        data = [("x", "I64", x.shape, x.astype("<i8").tobytes()), ("y", "I64", y.shape, y.astype("<i8").tobytes())]
        xs = [torch.from_numpy(x[s]) for s in range(STEPS)]
    ys = [torch.from_numpy(y[s]) for s in range(STEPS)]
    init = OrderedDict((n, p.detach().numpy().copy()) for n, p in model.named_parameters())
    weights_path = os.path.join(tmp, f"{kind}_weights.safetensors")
    data_path = os.path.join(tmp, f"{kind}_data.safetensors")
    out_path = os.path.join(tmp, f"{kind}_after.safetensors")
    # The data first and the header reversed, so nothing relies on the two orders agreeing.
    st_write(weights_path, [(n, "F32", a.shape, f32_bytes(a)) for n, a in init.items()], {"format": "pt"},
             header_order=list(reversed(init)))
    st_write(data_path, data, {"format": "pt"})

    want_losses, want_params, norms = train_torch(kind, model, xs, ys)
    # How far float32 rounding alone moves each result: the same training in float64, and in
    # float32 from weights (and inputs) moved by one unit in the last place. Where a gradient is
    # far below Adam's eps (a nearly dead ReLU unit; the attention key bias, whose exact gradient
    # is zero) Adam turns rounding noise into visible updates, and these runs spread out too.
    def rerun(dtype, jitter):
        m = make_mlp() if kind == "mlp" else GPT()
        m.load_state_dict({n: torch.from_numpy(ulp_jitter(a, jitter) if jitter else a) for n, a in init.items()})
        jx = [torch.from_numpy(ulp_jitter(t.numpy(), jitter)) if jitter and t.is_floating_point() else t for t in xs]
        return train_torch(kind, m.to(dtype), jx, ys)

    ref_losses, ref_params, _ = rerun(torch.float64, None)
    jitter = np.random.default_rng(99)
    others = [ref_params] + [rerun(torch.float32, jitter)[1] for _ in range(JITTER_RUNS)]
    spread = {n: np.max([np.abs(o[n] - want) for o in others], axis=0) for n, want in want_params.items()}
    if kind == "gpt" and VERBOSE:
        print(f"     gpt gradient norms before clipping: {', '.join(f'{n:.4g}' for n in norms)}")

    names = [f"{kind} loss step {s}" for s in range(STEPS)] + [f"{kind} parameters after {STEPS} steps"]
    if binary is None:
        for n in names:
            report(n, False, build_error)
        return
    cmd = [binary, kind, weights_path, data_path, str(STEPS), out_path]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        rc, stdout, stderr = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired:
        rc, stdout, stderr = -1, "", "timed out after 120 s"
    got = []
    for line in stdout.split():
        try:
            got.append(float(line))
        except ValueError:
            pass
    why = f"(driver exit {rc}: {stderr.strip()})" if rc != 0 else ""
    for s in range(STEPS):
        if s >= len(got):
            report(names[s], False, f"no loss printed {why}".strip())
            continue
        rel = abs(got[s] - want_losses[s]) / abs(want_losses[s])
        rel64 = abs(got[s] - ref_losses[s]) / abs(ref_losses[s])
        noise = abs(ref_losses[s] - want_losses[s]) / abs(ref_losses[s])
        report(names[s], min(rel, rel64) <= TOL and math.isfinite(got[s]),
               f"ndgrad {got[s]:.10g} torch {want_losses[s]:.10g} rel {rel:.3g} "
               f"(torch f64 {ref_losses[s]:.10g}: rel {rel64:.3g}; torch f32 vs f64 {noise:.3g}) {why}".rstrip())
    if rc != 0 or not os.path.exists(out_path):
        report(names[-1], False, f"no parameters saved {why}".strip())
        return
    saved, info = st_read(out_path)
    if info["problems"]:
        report(names[-1], False, f"saved file malformed: {info['problems'][0]}")
        return
    if set(saved) != set(want_params):
        report(names[-1], False, f"names differ: only ndgrad {sorted(set(saved) - set(want_params))}, "
                                 f"only torch {sorted(set(want_params) - set(saved))}")
        return
    rows, widened_total = [], 0
    for n, want in want_params.items():
        dtype, shape, value = saved[n]
        if dtype != "F32" or shape != want.shape:
            rows.append((math.inf, n, f"{dtype} {list(shape)} vs F32 {list(want.shape)}"))
            continue
        got = value.astype(np.float64)
        scale = max(np.abs(want).max(), 1e-30)
        # Within 1e-4 of the tensor's scale of PyTorch (float32, or float64), widened by
        # SPREAD_FACTOR times the spread of PyTorch's runs that differ only in rounding.
        err = np.minimum(np.abs(got - want), np.abs(got - ref_params[n]))
        err = np.where(np.isfinite(got), err, np.inf)
        allowed = TOL * scale + SPREAD_FACTOR * spread[n]
        widened = int(((err > TOL * scale) & (err <= allowed)).sum())
        widened_total += widened
        ratio = err / allowed
        i = np.unravel_index(np.argmax(ratio), ratio.shape)
        noise = float(np.abs(ref_params[n] - want).max() / scale)
        rows.append((float(ratio.max()), n,
                     f"at {list(i)}: ndgrad {float(got[i]):.8g} torch {float(want[i]):.8g} torch f64 "
                     f"{float(ref_params[n][i]):.8g} initial {float(init[n][i]):.8g}: off by {float(err[i] / scale):.3g} "
                     f"of the scale {scale:.4g}, allowed {float(allowed[i] / scale):.3g} (max torch f32 vs f64 "
                     f"{noise:.3g}; elements within tolerance only thanks to the rounding spread: {widened}; "
                     f"elements with widened tolerance: {int((allowed > TOL * scale * 1.01).sum())} of {got.size})"))
    rows.sort(key=lambda r: -r[0])
    bad = [r for r in rows if not r[0] <= 1.0]
    if bad:
        report(names[-1], False, f"{len(bad)} of {len(rows)} tensors off; worst: " +
               "; ".join(f"{n} {d}" for _, n, d in bad[:3]))
    else:
        report(names[-1], True, f"({widened_total} elements within the rounding spread only) closest to the "
                                f"limit: {rows[0][1]} {rows[0][2]}")


# ------------------------------------------------------------------ safetensors interchange

def interop_load(tmp):
    """A file written here (every dtype PyTorch checkpoints use) loads in ndgrad with the values
    PyTorch decodes from the same bytes."""
    rng = np.random.default_rng(11)
    f32 = rng.standard_normal((3, 4)).astype(np.float32)
    f32[0, 0], f32[0, 1], f32[0, 2], f32[0, 3] = np.inf, -np.inf, np.nan, -0.0
    f32[1, 0], f32[1, 1] = np.float32(1e-45), np.finfo(np.float32).max
    f64 = np.array([math.pi, -1e300, 5e-324, -0.0, 1 / 3, np.inf, np.nan], np.float64)
    i64 = np.array([0, -1, 1, 2**62 + 1, -2**63, 2**63 - 1, 9007199254740993, -42, 7, 8, 9, 10], np.int64).reshape(2, 3, 2)
    mask = rng.random((5, 3)) < 0.5
    f16 = np.array([0.0, -0.0, 1 / 3, 65504, -65504, 6e-8, 6.1e-5, 1e-7, np.inf, -np.inf, np.nan, 0.1, -2.5,
                    1024.5, 3.14159, 1e4, -1e-3, 0.5, 2.0, -1.0], np.float16).reshape(4, 5)
    bf16_src = np.concatenate([rng.standard_normal(16).astype(np.float32),
                               np.array([3.3e38, -1e-40, np.inf, -np.inf, np.nan, -0.0, 1.0, 65504.0], np.float32)])
    bf16_src = bf16_src.reshape(2, 3, 4)
    # (name, file dtype, shape, raw bytes, ndgrad dtype code it must load as)
    spec = [
        ("f32.matrix", "F32", (3, 4), f32.astype("<f4").tobytes(), ND_FLOAT32),
        ("f32.scalar", "F32", (), np.array(3.25, "<f4").tobytes(), ND_FLOAT32),
        ("f32.empty", "F32", (0, 3), b"", ND_FLOAT32),
        ("f32.4d", "F32", (2, 1, 3, 2), rng.standard_normal(12).astype("<f4").tobytes(), ND_FLOAT32),
        ("f64.vector", "F64", (7,), f64.astype("<f8").tobytes(), ND_FLOAT64),
        ("f64.scalar", "F64", (), np.array(-2.0 ** -1074, "<f8").tobytes(), ND_FLOAT64),
        ("i64.cube", "I64", (2, 3, 2), i64.astype("<i8").tobytes(), ND_INT64),
        ("i64.scalar", "I64", (), np.array(-42, "<i8").tobytes(), ND_INT64),
        ("i64.empty", "I64", (2, 0), b"", ND_INT64),
        ("bool.mask", "BOOL", (5, 3), mask.astype(np.uint8).tobytes(), ND_BOOL),
        ("bool.scalar", "BOOL", (), b"\x01", ND_BOOL),
        ("bool.empty", "BOOL", (0,), b"", ND_BOOL),
        ("f16.values", "F16", (4, 5), f16.astype("<f2").tobytes(), ND_FLOAT32),
        ("f16.scalar", "F16", (), np.array(-1.5, "<f2").tobytes(), ND_FLOAT32),
        ("bf16.values", "BF16", (2, 3, 4), bf16_bytes(bf16_src), ND_FLOAT32),
        ("bf16.empty", "BF16", (3, 0, 2), b"", ND_FLOAT32),
        ('escaped "name"\\ \u00fcn\u00efc\u00f6de \u2713', "F32", (2,), np.array([1.5, -2.5], "<f4").tobytes(), ND_FLOAT32),
    ]
    path = os.path.join(tmp, "from_python.safetensors")
    # Data in reverse order, header keys sorted (as the reference writer does): offsets decide.
    st_write(path, [s[:4] for s in reversed(spec)], {"format": "pt"}, header_order=sorted(s[0] for s in spec))

    try:
        lst = nd_safetensors_load(path.encode())
    except NdError as e:
        for name, *_ in spec:
            report(f"safetensors load {name!r}", False, str(e))
        report("safetensors load: tensor count", False, str(e))
        return
    try:
        interop_load_check(lst, spec)
    finally:
        nd_params_free(lst)


def interop_load_check(lst, spec):
    torch_dtypes = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "BOOL": torch.bool,
                    "F16": torch.float16, "BF16": torch.bfloat16}
    loaded = {nd_params_name(lst, i).decode("utf-8", "replace"): nd_params_get(lst, i) for i in range(nd_params_count(lst))}
    report("safetensors load: tensor count", nd_params_count(lst) == len(spec),
           f"{nd_params_count(lst)} tensors for {len(spec)} in the file (names {sorted(loaded)})")
    for name, dtype, shape, raw, nd_dtype in spec:
        label = f"safetensors load {name!r} ({dtype} {list(shape)})"
        t = loaded.get(name)
        if not t:
            report(label, False, "missing from the loaded list")
            continue
        # What PyTorch decodes from the same bytes, widened like ndgrad widens F16/BF16.
        if raw:
            want = torch.frombuffer(bytearray(raw), dtype=torch_dtypes[dtype]).reshape(shape)
        else:
            want = torch.zeros(shape, dtype=torch_dtypes[dtype])
        if dtype in ("F16", "BF16"):
            want = want.float()
        try:
            got_dtype, got_shape, got = nd_values(t)
        except NdError as e:
            report(label, False, str(e))
            continue
        if got_dtype != nd_dtype or got_shape != tuple(shape):
            report(label, False, f"loaded as dtype {got_dtype} shape {list(got_shape)}, want {nd_dtype} {list(shape)}")
            continue
        ok, detail = same_values(got, want.numpy())
        report(label, ok, detail)


def interop_save(tmp):
    """ndgrad saves tensors (contiguous or not, every dtype it has); a standard-library reader
    accepts the file and finds the numbers PyTorch makes from the same lists."""
    made = []  # tensors to release
    try:
        saved_spec = interop_save_file(tmp, made)
    finally:
        for t in made:
            nd_release(t)
    if saved_spec:
        interop_save_check(*saved_spec)


def interop_save_file(tmp, made):
    """Makes the tensors (recorded in `made`) and saves them; (path, spec) if the save succeeded."""

    def tensor(values, dtype):
        a = np.array(values, dtype, order="C")  # (ascontiguousarray would make a 0-dim array 1-d)
        shape = (I64 * max(a.ndim, 1))(*a.shape)
        t = nd_from_data(a.ctypes.data if a.size else (C.c_uint8 * 8)(), ND_OF_NP[a.dtype], a.ndim, shape)
        made.append(t)
        return t

    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 5)).astype(np.float32).tolist()
    base = rng.standard_normal((4, 3)).astype(np.float32).tolist()
    seq = (np.arange(10) * 0.25 - 1).tolist()
    # (name, ndgrad tensor, file dtype, the same numbers made into a torch tensor)
    spec = [
        ("fc.weight", tensor(w, np.float32), "F32", torch.tensor(w, dtype=torch.float32)),
        ("fc.bias", tensor([0.5, -1e300, 5e-324, -0.0], np.float64), "F64",
         torch.tensor([0.5, -1e300, 5e-324, -0.0], dtype=torch.float64)),
        ("ids", tensor([[2**62 + 3, -2**63, 0], [1, -1, 2**63 - 1]], np.int64), "I64",
         torch.tensor([[2**62 + 3, -2**63, 0], [1, -1, 2**63 - 1]], dtype=torch.int64)),
        ("mask", tensor([[True, False], [False, False], [True, True]], np.bool_), "BOOL",
         torch.tensor([[True, False], [False, False], [True, True]])),
        ("scalar", tensor(2.75, np.float32), "F32", torch.tensor(2.75, dtype=torch.float32)),
        ("scalar.i64", tensor(-7, np.int64), "I64", torch.tensor(-7, dtype=torch.int64)),
        ("empty", tensor(np.zeros((0, 4)), np.float32), "F32", torch.zeros((0, 4), dtype=torch.float32)),
        ("empty.i64", tensor(np.zeros((2, 0)), np.int64), "I64", torch.zeros((2, 0), dtype=torch.int64)),
        ("special", tensor([np.inf, -np.inf, np.nan, 1e-45], np.float32), "F32",
         torch.tensor([math.inf, -math.inf, math.nan, 1e-45], dtype=torch.float32)),
        ('odd "name"\\\t\u2713', tensor([1.0, 2.0], np.float32), "F32", torch.tensor([1.0, 2.0])),
    ]
    transposed = nd_transpose(tensor(base, np.float32), 0, 1)
    strided = nd_slice(tensor(seq, np.float64), 0, 1, 10, 3)
    made += [transposed, strided]
    report("safetensors save: test views are non-contiguous",
           not nd_is_contiguous(transposed) and not nd_is_contiguous(strided))
    spec += [("transposed", transposed, "F32", torch.tensor(base, dtype=torch.float32).t()),
             ("strided", strided, "F64", torch.tensor(seq, dtype=torch.float64)[1:10:3])]

    lst = nd_params_new()
    try:
        for name, t, _, _ in spec:
            nd_params_add(lst, name.encode("utf-8"), t)
        path = os.path.join(tmp, "from_ndgrad.safetensors")
        try:
            nd_safetensors_save(path.encode(), lst)
        except NdError as e:
            report("safetensors save: status", False, str(e))
            return None
        report("safetensors save: status", True)
    finally:
        nd_params_free(lst)
    return path, spec


def interop_save_check(path, spec):
    saved, info = st_read(path)
    report("safetensors save: header is valid and the data is covered exactly", not info["problems"],
           "; ".join(info["problems"][:3]))
    report("safetensors save: data starts 8-byte aligned", (8 + info["hlen"]) % 8 == 0, f"header length {info['hlen']}")
    meta = info["metadata"]
    report("safetensors save: __metadata__ maps strings to strings",
           meta is None or (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())), repr(meta))
    report("safetensors save: names", set(saved) == {s[0] for s in spec},
           f"file {sorted(saved)} vs {sorted(s[0] for s in spec)}")
    for name, _, dtype, want in spec:
        label = f"safetensors save {name!r} ({dtype} {list(want.shape)})"
        if name not in saved:
            report(label, False, "missing from the file")
            continue
        got_dtype, got_shape, got = saved[name]
        if got_dtype != dtype or got_shape != tuple(want.shape):
            report(label, False, f"{got_dtype} {list(got_shape)} in the file, want {dtype} {list(want.shape)}")
            continue
        ok, detail = same_values(got, want.contiguous().numpy())
        report(label, ok, detail)


def checked_call(name, f, args, status, text=""):
    """One case on the checks themselves: f(*args) must raise NdError with `status` (and `text`)."""
    try:
        e = expect_error(f, *args, status=status)
        ok = text in str(e)
        report(f"checked call: {name}", ok, str(e) if ok else f"message {str(e)!r} does not mention {text!r}")
    except Exception as e:
        report(f"checked call: {name}", False, f"{type(e).__name__}: {e}")


def checked_calls(tmp):
    """Error paths: a failing status and a NULL result raise NdError carrying the status and the message."""
    missing = os.path.join(tmp, "missing.safetensors")
    checked_call("safetensors load of a missing file raises ND_ERR_IO", nd_safetensors_load, (missing.encode(),),
                 ND_ERR_IO, "cannot open")
    bad = os.path.join(tmp, "bad_header.safetensors")
    with open(bad, "wb") as f:
        f.write(struct.pack("<Q", 16) + b"{not json}      ")
    checked_call("safetensors load of a malformed header raises ND_ERR_FORMAT", nd_safetensors_load, (bad.encode(),),
                 ND_ERR_FORMAT, "JSON")
    lst, t, zeros = nd_params_new(), None, np.zeros(2)
    try:
        t = nd_from_data(zeros.ctypes.data, ND_FLOAT64, 1, (I64 * 1)(2))
        nd_params_add(lst, b"x", t)
        checked_call("nd_params_add of a duplicate name raises ND_ERR_VALUE", nd_params_add, (lst, b"x", t),
                     ND_ERR_VALUE, '"x"')
    finally:
        nd_params_free(lst)
        nd_release(t)


def case(name, body, *args):
    """Runs body(*args), which reports its own cases; an exception in it (a failed checked call, or
    a bug) is one more failed case, `name`, with the reason, instead of the end of the run."""
    nd_clear_error()  # a message in a report is this case's own
    try:
        body(*args)
    except Exception as e:
        report(name, False, f"raised {type(e).__name__}: {e}")


def main():
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    binary, build_error = driver()
    with tempfile.TemporaryDirectory(prefix="ndgrad_model_") as tmp:
        for kind in ("mlp", "gpt"):
            case(f"{kind} model", model_case, kind, tmp, binary, build_error)
        live = nd_live_tensors()
        case("safetensors load", interop_load, tmp)
        case("safetensors save", interop_save, tmp)
        case("safetensors errors", checked_calls, tmp)
        report("safetensors interchange leaves no live tensors", nd_live_tensors() == live,
               f"{nd_live_tensors() - live} left alive")
    if VERBOSE:
        print(f"     {time.time() - START:.1f} s")
    print(f"model: {cases} cases, {failed} failed")
    sys.exit(1 if failed else 0)


main()

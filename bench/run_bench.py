"""make bench: every benchmark in ndgrad (build/bench_ndgrad) and the same work in PyTorch (Debian's
python3-torch) and OpenBLAS, at 1 and 2 threads, in one run. Prints a table and writes
build/bench.json (and, with the scaling sweep, build/bench_scaling.json and build/bench_scaling.svg).

Usage: /usr/bin/python3 bench/run_bench.py BUILD_DIR [--isa avx2] [--no-scaling] [--scaling-only]
                                           [--compare-build OTHER_BUILD] [NAME ...]

  --isa avx2        caps every side at AVX2, so an AVX-512 machine also measures the AVX2 class:
                    ndgrad (NDGRAD_ISA=avx2: GEMM and every other kernel), OpenBLAS
                    (OPENBLAS_CORETYPE=Haswell), PyTorch (ATEN_CPU_CAPABILITY=avx2,
                    DNNL_MAX_CPU_ISA=AVX2). Without it every side runs its best level.
  --compare-build   runs the GEMM rows of a second ndgrad build (say, made with clang) interleaved
                    with the first, and reports each as a ratio to the first (the 5% rule between
                    compilers).
  NAME ...          only these benchmarks (e.g. sgemm_1024 mlp_step).

Every row of bench.json: {"name", "threads", "unit", "ndgrad", "peer", "peer_name", "ratio", "isa",
"cpu", "compiler", "date"}, ratio > 1 meaning ndgrad is faster (or uses less memory), and for GEMM
and training rows "limit_fraction": achieved FLOP/s over the FMA peak of the vector level in use at
that thread count (the fma_peak rows, measured in the same run), with "model_gflop" per step for
training rows.

The FLOPs of a training step are counted analytically as model FLOPs: 2 per multiply-add of every
matrix product, convolution and attention product of the forward pass, plus the backward pass's
products (the input gradient of every layer whose input needs one, the weight gradient of every
layer, i.e. about twice the forward); attention's backward counts its four products (dV, dP, dQ, dK)
and not the recomputation of the scores, and a causal attention counts only the visible (lower
triangle) part. Elementwise work (activations, norms, softmax, the optimizer) is not counted: it is
what keeps a step below the limit. See the flops_* functions below.

Each side runs in its own process per benchmark (short ones three times, op overhead five times,
interleaved, and the median is reported). PyTorch runs with its best settings: the thread count set through
torch.set_num_threads and OMP_NUM_THREADS, OMP_WAIT_POLICY=PASSIVE at 2 threads (its OpenMP and
OpenBLAS pools otherwise fight over the cores), torch.set_flush_denormal(True) (ndgrad flushes
denormals too), zero_grad(set_to_none=True), no anomaly mode."""
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import textwrap

ARGS = sys.argv[1:]
BUILD = ARGS.pop(0) if ARGS and not ARGS[0].startswith("--") else "build"
ISA = None
SCALING = True
SCALING_ONLY = False
COMPARE = None
ONLY = set()
while ARGS:
    a = ARGS.pop(0)
    if a == "--isa":
        ISA = ARGS.pop(0)
    elif a == "--no-scaling":
        SCALING = False
    elif a == "--scaling-only":
        SCALING_ONLY = True
    elif a == "--compare-build":
        COMPARE = ARGS.pop(0)
    else:
        ONLY.add(a)
if ISA not in (None, "avx2", "avx512", "generic"):
    sys.exit("run_bench.py: --isa takes avx512, avx2 or generic")
DATA = "/usr/share/datasets/fashion-mnist"
THREADS = (1, 2)
REPEATS = 3

# ---------------------------------------------------------------------------------------- the peers

TORCH_COMMON = textwrap.dedent("""
    import gzip, statistics, sys, time
    import numpy as np
    import torch, torch.nn as nn, torch.nn.functional as F
    torch.set_num_threads(THREADS)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    def timed(fn, reps, warm=3):
        for _ in range(warm):
            fn()
        t = []
        for _ in range(reps):
            t0 = time.perf_counter(); fn(); t.append(time.perf_counter() - t0)
        return statistics.median(t)
    def timed_low_decile(fn, reps=100, warm=5):
        # op overhead: the 10th percentile of short rounds, as bench_ndgrad.c times its side
        for _ in range(warm):
            fn()
        t = []
        for _ in range(reps):
            t0 = time.perf_counter(); fn(); t.append(time.perf_counter() - t0)
        return sorted(t)[reps // 10]
    def peak_rss_mb():
        # VmHWM starts afresh at exec, unlike ru_maxrss, which inherits the forking parent's peak
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    def step_fn(model, opt, x, y):
        def step():
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step
""")

TORCH_GPT = """
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
        self.register_buffer("mask", torch.ones(T, T).triu(1).bool())
    def forward(self, x):
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / (C // H) ** 0.5
        att = torch.softmax(att.masked_fill(self.mask, float("-inf")), dim=-1)
        x = x + self.c_proj((att @ v).transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(BLOCK, C)
        self.h = nn.ModuleList(Block() for _ in range(L))
        self.ln_f, self.lm_head = nn.LayerNorm(C), nn.Linear(C, V, bias=False)
        if TIED:
            self.lm_head.weight = self.wte.weight
    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.h:
            x = b(x)
        return self.lm_head(self.ln_f(x))
model = GPT()
opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
tok = (torch.arange(B * (T + 1)) * 31 + 7) % V
tok = tok.view(B, T + 1)
x, y = tok[:, :T], tok[:, 1:]
def step():
    F.cross_entropy(model(x).view(-1, V), y.reshape(-1)).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
if MODE == "time":
    print(timed(step, STEPS, warm=2) * 1e3)
else:
    for _ in range(STEPS):
        step()
    print(peak_rss_mb())
"""

TORCH_BENCH = {
    "sgemm": """
n = N
a, b = torch.randn(n, n), torch.randn(n, n)
print(2 * n ** 3 / timed(lambda: torch.mm(a, b), 5 if n >= 2048 else 15) / 1e9)
""",
    "op_overhead_add": """
a, b = torch.randn(16), torch.randn(16)
def run():
    with torch.no_grad():
        for _ in range(2000):
            a + b
print(timed_low_decile(run) / 2000 * 1e9)
""",
    "op_overhead_fwd_bwd": """
a, b = torch.randn(16, requires_grad=True), torch.randn(16, requires_grad=True)
def run():
    for _ in range(100):
        ((a * b) + a).sum().backward()
        a.grad = None; b.grad = None
print(timed_low_decile(run) / 100 * 1e9)
""",
    "mlp_step": """
model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.rand(BATCH, 784), torch.arange(BATCH) % 10
print(timed(step_fn(model, opt, x, y), 15 if BATCH > 256 else 40, warm=5) * 1e3)
""",
    "fc_epoch": """
def idx(path):
    with gzip.open(path) as f:
        raw = f.read()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims)
X = torch.tensor(idx(DATA + "/train-images-idx3-ubyte.gz").reshape(-1, 784), dtype=torch.float32) / 255
Y = torch.tensor(idx(DATA + "/train-labels-idx1-ubyte.gz").astype(np.int64))
model = nn.Sequential(nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 10))
with torch.no_grad():
    for p in model.parameters():
        p.normal_(0, 0.01)
opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
t0 = time.perf_counter()
for start in range(0, 57000, 1000):
    for half in range(2):
        s = start + half * 500
        (F.cross_entropy(model(X[s:s + 500]), Y[s:s + 500]) * 0.5).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
print(time.perf_counter() - t0)
""",
    "cnn_step": """
model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1),
                      nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.rand(128, 1, 28, 28), torch.arange(128) % 10
print(timed(step_fn(model, opt, x, y), 8, warm=2) * 1e3)
""",
    "mlp_peak_rss": """
model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.rand(128, 784), torch.arange(128) % 10
s = step_fn(model, opt, x, y)
for _ in range(25):
    s()
print(peak_rss_mb())
""",
}

# The GPT shapes: (V, BLOCK, T, L, H, C, B, TIED), as bench_ndgrad.c builds them.
GPT_SMALL = dict(V=96, L=4, H=4, C=128, B=32, TIED=False)
GPT2_124M = dict(V=50257, BLOCK=1024, T=64, L=12, H=12, C=768, B=4, TIED=True)


def gpt_shape(name):
    """The GPT configuration of a gpt_* or gpt2_* benchmark name."""
    if name.startswith("gpt2_124m"):
        return dict(GPT2_124M)
    T = int(name[len("gpt_step_t"):]) if name.startswith("gpt_step_t") else 128
    return dict(GPT_SMALL, T=T, BLOCK=T)


def torch_code(name, threads):
    if name.startswith("sgemm_"):
        body = TORCH_BENCH["sgemm"].replace("N", name[6:], 1)
    elif name.startswith("mlp_step"):
        batch = int(name[len("mlp_step_b"):]) if name.startswith("mlp_step_b") else 128
        body = "BATCH = %d\n" % batch + TORCH_BENCH["mlp_step"]
    elif name.startswith("gpt"):
        cfg = gpt_shape(name)
        rss = name.endswith("peak_rss")
        steps = 3 if rss else 5
        body = "".join("%s = %r\n" % kv for kv in cfg.items())
        body += "MODE = %r\nSTEPS = %d\n" % ("rss" if rss else "time", steps) + TORCH_GPT
    else:
        body = TORCH_BENCH[name]
    return TORCH_COMMON.replace("THREADS", str(threads)) + "DATA = %r\n" % DATA + body


def isa_env(threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), NDGRAD_NUM_THREADS=str(threads))
    env.pop("NDGRAD_ISA", None)
    env.pop("NDGRAD_GEMM", None)
    if ISA:
        env["NDGRAD_ISA"] = ISA
        if ISA != "avx512":
            env.update(OPENBLAS_CORETYPE="Haswell" if ISA == "avx2" else "Prescott", ATEN_CPU_CAPABILITY=
                       "avx2" if ISA == "avx2" else "default", DNNL_MAX_CPU_ISA="AVX2" if ISA == "avx2" else "SSE41")
    if threads > 1:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def run_torch(name, threads):
    out = subprocess.run(["/usr/bin/python3", "-c", torch_code(name, threads)], capture_output=True, text=True,
                         env=isa_env(threads), timeout=3600)
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        return None
    return float(out.stdout.strip().splitlines()[-1])


def run_ndgrad(name, threads, build=BUILD):
    """(value, unit, fields) of one bench_ndgrad run, fields holding isa= and blas= words."""
    out = subprocess.run([os.path.join(build, "bench_ndgrad"), name, str(threads), DATA], capture_output=True,
                         text=True, env=isa_env(threads), timeout=3600)
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        return None, None, {}
    parts = out.stdout.split()
    fields = dict(p.split("=", 1) for p in parts[4:] if "=" in p)
    return float(parts[3]), parts[2], fields


# ---------------------------------------------------------------------------------------- model FLOPs

def flops_mlp(sizes, batch):
    """Forward 2·B·Σ in·out; backward the weight gradients (the same again) and the input gradients
    of every layer but the first (its input is data)."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    fwd = sum(2 * batch * i * o for i, o in layers)
    return fwd + fwd + sum(2 * batch * i * o for i, o in layers[1:])


def flops_cnn(batch):
    """conv(1→32, 3x3, 28x28) → pool → conv(32→64, 3x3, 14x14) → pool → fc 3136→128 → fc 128→10:
    each conv or fc forward 2·B·out·in·k²·positions; backward weight gradients for all, input
    gradients for all but the first conv."""
    convs = [2 * batch * 32 * 1 * 9 * 28 * 28, 2 * batch * 64 * 32 * 9 * 14 * 14]
    fcs = [2 * batch * 3136 * 128, 2 * batch * 128 * 10]
    fwd = sum(convs) + sum(fcs)
    return fwd + fwd + convs[1] + sum(fcs)


def flops_gpt(cfg):
    """Per token and layer the four linears (12·C² multiply-adds), the head (V·C); forward, input
    and weight gradients: 3 × 2 × those. Causal attention per layer and sequence: QKᵀ and PV over
    the T(T+1)/2 visible pairs (2 · 2 · C · T(T+1)/2 forward), its backward's four products twice
    that."""
    V, T, L, C, B = cfg["V"], cfg["T"], cfg["L"], cfg["C"], cfg["B"]
    linear = 3 * 2 * B * T * (L * 12 * C * C + V * C)
    attention = 3 * L * B * 2 * C * T * (T + 1)
    return linear + attention


def model_flops(name):
    if name == "mlp_step":
        return flops_mlp([784, 512, 256, 10], 128)
    if name.startswith("mlp_step_b"):
        return flops_mlp([784, 512, 256, 10], int(name[len("mlp_step_b"):]))
    if name == "fc_epoch":
        return 57 * flops_mlp([784, 500, 10], 1000)
    if name == "cnn_step":
        return flops_cnn(128)
    if name.startswith("gpt_step") or name == "gpt2_124m_step":
        return flops_gpt(gpt_shape(name))
    return None


# ---------------------------------------------------------------------------------------- the run

def ratio(unit, mine, peer):
    if mine is None or peer is None or mine <= 0 or peer <= 0:
        return None
    return mine / peer if unit == "GFLOP/s" else peer / mine


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def compiler_of(build):
    """The compiler that built bench_ndgrad, from its .comment section (gcc or clang version)."""
    try:
        out = subprocess.run(["readelf", "-p", ".comment", os.path.join(build, "bench_ndgrad")], capture_output=True,
                             text=True).stdout
        names = [l.split("]", 1)[1].strip() for l in out.splitlines() if "]" in l]
        for n in names:
            if "clang" in n:
                return n
        return names[-1] if names else "unknown"
    except OSError:
        return "unknown"


LONG = {"fc_epoch", "gpt_step", "mlp_peak_rss", "gpt_peak_rss", "gpt2_124m_step", "gpt2_124m_peak_rss"}
BENCHES = ["fma_peak", "sgemm_256", "sgemm_512", "sgemm_1024", "sgemm_2048", "op_overhead_add", "op_overhead_fwd_bwd",
           "mlp_step", "fc_epoch", "cnn_step", "gpt_step", "gpt2_124m_step", "mlp_peak_rss", "gpt_peak_rss",
           "gpt2_124m_peak_rss"]
SCALING_BENCHES = ["mlp_step_b%d" % b for b in (32, 64, 128, 256, 512, 1024)] + \
                  ["gpt_step_t%d" % t for t in (64, 128, 256, 512)]


class Run:
    def __init__(self):
        self.have_torch = subprocess.run(["/usr/bin/python3", "-c", "import torch"],
                                         capture_output=True).returncode == 0
        if not self.have_torch:
            print("bench: PyTorch not found at /usr/bin/python3; ndgrad figures only")
        self.peak = {}  # threads -> GFLOP/s of the FMA probe at the level in use
        self.common = {"cpu": cpu_name(), "compiler": compiler_of(BUILD), "date": datetime.date.today().isoformat()}
        self.isa = None
        print("bench: %s, %s, ndgrad built with %s%s" % (self.common["cpu"], self.common["date"], self.common["compiler"],
                                                         ", capped at " + ISA if ISA else ""))

    def measure_peak(self):
        for threads in THREADS:
            runs = [run_ndgrad("fma_peak", threads) for _ in range(REPEATS)]
            vals = [v for v, _, _ in runs if v]
            if vals:
                self.peak[threads] = statistics.median(vals)
                self.isa = runs[0][2].get("isa", self.isa)

    def bench(self, name, threads, repeats):
        mine_runs, torch_runs, blas_runs, unit, fields, blas_core = [], [], [], None, {}, None
        for _ in range(repeats):
            m, u, f = run_ndgrad(name, threads)
            if m is not None:
                mine_runs.append(m)
                unit, fields = u, f
            if name != "fma_peak" and self.have_torch:
                t = run_torch(name, threads)
                if t is not None:
                    torch_runs.append(t)
            if name.startswith("sgemm_"):
                ob, _, bf = run_ndgrad("openblas_" + name, threads)
                if ob is not None and ob > 0:
                    blas_runs.append(ob)
                    blas_core = bf.get("blas")
        if not mine_runs:
            print("bench: %s failed in ndgrad" % name)
            return []
        mine = statistics.median(mine_runs)
        peers = []
        if name != "fma_peak" and self.have_torch:
            peers.append(("pytorch", statistics.median(torch_runs) if torch_runs else None))
        if blas_runs:
            peers.append(("openblas" + ("-" + blas_core if blas_core else ""), statistics.median(blas_runs)))
        if not peers:
            peers.append((None, None))
        rows = []
        for peer_name, peer in peers:
            row = {"name": name, "threads": threads, "unit": unit, "ndgrad": round(mine, 4),
                   "peer": None if peer is None else round(peer, 4), "peer_name": peer_name,
                   "ratio": None if ratio(unit, mine, peer) is None else round(ratio(unit, mine, peer), 3),
                   "isa": fields.get("isa"), **self.common}
            flops = model_flops(name)
            peak = self.peak.get(threads)
            if name.startswith("sgemm_") and peak:
                row["limit_fraction"] = round(mine / peak, 3)
            elif flops and peak and unit in ("ms", "s"):
                seconds = mine / 1e3 if unit == "ms" else mine
                row["model_gflop"] = round(flops / 1e9, 3)
                row["limit_fraction"] = round(flops / seconds / 1e9 / peak, 3)
            rows.append(row)
            lf = "  limit %.2f" % row["limit_fraction"] if "limit_fraction" in row else ""
            print("%-22s %dt  ndgrad %12.4g %-8s %-16s %12s  ratio %-6s%s" % (
                name, threads, mine, unit, peer_name or "-", "-" if peer is None else format(peer, ".4g"),
                row["ratio"] if row["ratio"] else "-", lf), flush=True)
        return rows


def compare_builds(run, other):
    """GEMM rows of two builds, interleaved process by process, as other / first."""
    rows = []
    for name in ["sgemm_256", "sgemm_512", "sgemm_1024", "sgemm_2048"]:
        for threads in THREADS:
            a, b = [], []
            for _ in range(5):
                va, _, _ = run_ndgrad(name, threads, BUILD)
                vb, _, _ = run_ndgrad(name, threads, other)
                if va and vb:
                    a.append(va)
                    b.append(vb)
            if not a:
                continue
            ma, mb = statistics.median(a), statistics.median(b)
            row = {"name": name, "threads": threads, "unit": "GFLOP/s", "ndgrad": round(ma, 3), "peer": round(mb, 3),
                   "peer_name": "build " + other + " (" + compiler_of(other) + ")", "ratio": round(mb / ma, 3),
                   **run.common}
            rows.append(row)
            print("%-12s %dt  %s %.1f  %s %.1f  other/first %.3f" % (name, threads, BUILD, ma, other, mb, mb / ma),
                  flush=True)
    return rows


def scaling_svg(rows, path):
    """Two log-log panels (mlp step time against batch, gpt step time against context), ndgrad and
    PyTorch at 1 and 2 threads, written as a plain SVG file."""
    W, H, M = 900, 380, 60
    panels = [("mlp_step_b", "MLP 784-512-256-10 training step vs batch", "batch"),
              ("gpt_step_t", "GPT (4 layers, 128 channels, batch 32) training step vs context", "context")]
    colours = {("ndgrad", 1): "#1f77b4", ("ndgrad", 2): "#0b3d91", ("pytorch", 1): "#ff7f0e", ("pytorch", 2): "#b34700"}
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">'
           % (W, H), '<rect width="100%" height="100%" fill="white"/>']
    pw = (W - 3 * M) / 2
    for pi, (prefix, title, xlabel) in enumerate(panels):
        x0 = M + pi * (pw + M)
        pts = {}
        for r in rows:
            if r["name"].startswith(prefix):
                size = int(r["name"][len(prefix):])
                pts.setdefault(("ndgrad", r["threads"]), {})[size] = r["ndgrad"]
                if r["peer"]:
                    pts.setdefault(("pytorch", r["threads"]), {})[size] = r["peer"]
        xs = sorted({s for d in pts.values() for s in d})
        ys = [v for d in pts.values() for v in d.values()]
        if not xs or not ys:
            continue
        lx0, lx1 = math.log(xs[0]), math.log(xs[-1]) if xs[-1] > xs[0] else math.log(xs[0]) + 1
        ly0, ly1 = math.log(min(ys)) - 0.1, math.log(max(ys)) + 0.1
        px = lambda s: x0 + (math.log(s) - lx0) / (lx1 - lx0) * pw
        py = lambda v: H - M - (math.log(v) - ly0) / (ly1 - ly0) * (H - 2 * M)
        out.append('<text x="%.0f" y="20" text-anchor="middle" font-weight="bold">%s</text>' % (x0 + pw / 2, title))
        out.append('<rect x="%.0f" y="%d" width="%.0f" height="%d" fill="none" stroke="#888"/>' % (x0, M, pw, H - 2 * M))
        for s in xs:
            out.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>' % (px(s), H - M + 16, s))
        out.append('<text x="%.0f" y="%d" text-anchor="middle">%s (log scale)</text>' % (x0 + pw / 2, H - 12, xlabel))
        for e in range(math.floor(ly0 / math.log(10)), math.ceil(ly1 / math.log(10)) + 1):
            for m in (1, 2, 5):
                v = m * 10 ** e
                if ly0 <= math.log(v) <= ly1:
                    out.append('<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/>' % (x0, x0 + pw, py(v), py(v)))
                    out.append('<text x="%.0f" y="%.1f" text-anchor="end">%g</text>' % (x0 - 4, py(v) + 4, v))
        out.append('<text transform="translate(%.0f,%d) rotate(-90)" text-anchor="middle">ms per step</text>'
                   % (x0 - 42, H // 2))
        for k, (key, d) in enumerate(sorted(pts.items())):
            seq = sorted(d.items())
            out.append('<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>' % (
                colours[key], ' stroke-dasharray="5,3"' if key[0] == "pytorch" else "",
                " ".join("%.1f,%.1f" % (px(s), py(v)) for s, v in seq)))
            for s, v in seq:
                out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (px(s), py(v), colours[key]))
            out.append('<text x="%.0f" y="%d" fill="%s">%s, %d thread%s</text>' % (
                x0 + 8, M + 16 + 14 * k, colours[key], key[0], key[1], "s" if key[1] > 1 else ""))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    run = Run()
    rows = []
    if COMPARE:
        rows = compare_builds(run, COMPARE)
        path = os.path.join(BUILD, "bench_compilers%s.json" % ("" if not ISA else "_" + ISA))
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
        print("\nwrote %s (%d rows; ratio: the other build's GFLOP/s over the first's)" % (path, len(rows)))
        return
    run.measure_peak()
    for threads, peak in sorted(run.peak.items()):
        rows.append({"name": "fma_peak", "threads": threads, "unit": "GFLOP/s", "ndgrad": round(peak, 4), "peer": None,
                     "peer_name": None, "ratio": None, "isa": run.isa, **run.common})
        print("%-22s %dt  ndgrad %12.4g GFLOP/s  (%s FMA peak, median of %d)" % ("fma_peak", threads, peak, run.isa, REPEATS))
    if not SCALING_ONLY:
        for name in BENCHES[1:]:
            if ONLY and name not in ONLY:
                continue
            if name == "fc_epoch" and not os.path.exists(DATA + "/train-images-idx3-ubyte.gz"):
                print("bench: fc_epoch skipped (apt-get install dataset-fashion-mnist)")
                continue
            for threads in THREADS:
                # op overhead: five processes per side, interleaved, and the median of their
                # low deciles of 2-ms rounds (see op_overhead_add in bench_ndgrad.c)
                reps = 1 if name in LONG else 5 if name.startswith("op_overhead") else REPEATS
                rows += run.bench(name, threads, reps)
        suffix = "" if not ISA else "_" + ISA
        path = os.path.join(BUILD, "bench%s.json" % suffix)
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
        print("\nwrote %s (%d rows; ratio > 1: ndgrad faster or smaller)" % (path, len(rows)))
    if SCALING and (not ONLY or SCALING_ONLY):
        srows = [r for r in rows if r["name"] == "fma_peak"]
        for name in SCALING_BENCHES:
            for threads in THREADS:
                srows += run.bench(name, threads, 1)
        suffix = "" if not ISA else "_" + ISA
        path = os.path.join(BUILD, "bench_scaling%s.json" % suffix)
        with open(path, "w") as f:
            json.dump(srows, f, indent=1)
        scaling_svg(srows, os.path.join(BUILD, "bench_scaling%s.svg" % suffix))
        print("wrote %s and %s" % (path, os.path.join(BUILD, "bench_scaling%s.svg" % suffix)))


main()

"""make bench: every benchmark in ndgrad (build/bench_ndgrad) and the same work in PyTorch
(Debian's python3-torch), at 1 and 2 threads, in one run. Prints a table and writes
build/bench.json: [{"name", "threads", "unit", "ndgrad", "peer", "peer_name", "ratio"}], where
ratio > 1 means ndgrad is faster (or uses less memory).

Each side runs in its own process per benchmark (short ones three times, interleaved, and the
median of the three is reported). PyTorch runs with its best settings: the thread count set
through torch.set_num_threads and OMP_NUM_THREADS, OMP_WAIT_POLICY=PASSIVE at 2 threads (its
OpenMP and OpenBLAS pools otherwise fight over the cores), torch.set_flush_denormal(True) (ndgrad
flushes denormals too), zero_grad(set_to_none=True), no anomaly mode.

Usage: /usr/bin/python3 bench/run_bench.py BUILD_DIR [NAME ...]"""
import json
import os
import statistics
import subprocess
import sys
import textwrap

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
ONLY = set(sys.argv[2:])
DATA = "/usr/share/datasets/fashion-mnist"
THREADS = (1, 2)

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
        for _ in range(20000):
            a + b
print(timed(run, 7) / 20000 * 1e9)
""",
    "op_overhead_fwd_bwd": """
a, b = torch.randn(16, requires_grad=True), torch.randn(16, requires_grad=True)
def run():
    for _ in range(2000):
        ((a * b) + a).sum().backward()
        a.grad = None; b.grad = None
print(timed(run, 7) / 2000 * 1e9)
""",
    "mlp_step": """
model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.rand(128, 784), torch.arange(128) % 10
print(timed(step_fn(model, opt, x, y), 40, warm=5) * 1e3)
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
    "gpt": """
V, T, L, H, C, B = 96, 128, 4, 4, 128, 32
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
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.h = nn.ModuleList(Block() for _ in range(L))
        self.ln_f, self.lm_head = nn.LayerNorm(C), nn.Linear(C, V, bias=False)
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
    print(timed(step, 5, warm=2) * 1e3)
else:
    for _ in range(5):
        step()
    print(peak_rss_mb())
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


def run_torch(name, threads):
    if name.startswith("sgemm_"):
        body = TORCH_BENCH["sgemm"].replace("N", name[6:], 1)
    elif name == "gpt_step":
        body = "MODE = 'time'\n" + TORCH_BENCH["gpt"]
    elif name == "gpt_peak_rss":
        body = "MODE = 'rss'\n" + TORCH_BENCH["gpt"]
    else:
        body = TORCH_BENCH[name]
    code = TORCH_COMMON.replace("THREADS", str(threads)) + "DATA = %r\n" % DATA + body
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    if threads > 1:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    out = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        return None
    return float(out.stdout.strip().splitlines()[-1])


def run_ndgrad(name, threads):
    env = dict(os.environ, NDGRAD_NUM_THREADS=str(threads))
    out = subprocess.run([os.path.join(BUILD, "bench_ndgrad"), name, str(threads), DATA], capture_output=True, text=True,
                         env=env, timeout=1800)
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        return None, None
    parts = out.stdout.split()
    return float(parts[3]), parts[2]


REPEATS = 3
LONG = {"fc_epoch", "gpt_step", "mlp_peak_rss", "gpt_peak_rss"}  # one process each: minutes, or not timings
BENCHES = ["fma_peak", "sgemm_256", "sgemm_512", "sgemm_1024", "sgemm_2048", "op_overhead_add", "op_overhead_fwd_bwd",
           "mlp_step", "fc_epoch", "cnn_step", "gpt_step", "mlp_peak_rss", "gpt_peak_rss"]


def ratio(unit, mine, peer):
    if mine is None or peer is None or mine <= 0 or peer <= 0:
        return None
    return mine / peer if unit == "GFLOP/s" else peer / mine


def main():
    # Probed in a child, so this harness stays small (its children inherit nothing from it).
    have_torch = subprocess.run(["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode == 0
    if not have_torch:
        print("bench: PyTorch not found at /usr/bin/python3; ndgrad figures only")
    rows = []
    for name in BENCHES:
        if ONLY and name not in ONLY:
            continue
        if name == "fc_epoch" and not os.path.exists(DATA + "/train-images-idx3-ubyte.gz"):
            print("bench: fc_epoch skipped (apt-get install dataset-fashion-mnist)")
            continue
        for threads in THREADS:
            # Short benchmarks run as several processes, ndgrad and its peers interleaved, and each
            # side reports the median of its runs: one process that meets a noisy moment on this VM
            # then moves a figure less.
            runs = 1 if name in LONG else REPEATS
            mine_runs, torch_runs, blas_runs, unit = [], [], [], None
            for _ in range(runs):
                m, u = run_ndgrad(name, threads)
                if m is not None:
                    mine_runs.append(m)
                    unit = u
                if name != "fma_peak" and have_torch:
                    t = run_torch(name, threads)
                    if t is not None:
                        torch_runs.append(t)
                if name.startswith("sgemm_"):
                    ob, _ = run_ndgrad("openblas_" + name, threads)
                    if ob is not None and ob > 0:
                        blas_runs.append(ob)
            if not mine_runs:
                print(f"bench: {name} failed in ndgrad")
                continue
            mine = statistics.median(mine_runs)
            peers = []
            if name != "fma_peak" and have_torch:
                peers.append(("pytorch", statistics.median(torch_runs) if torch_runs else None))
            if blas_runs:
                peers.append(("openblas", statistics.median(blas_runs)))
            if not peers:
                peers.append((None, None))
            for peer_name, peer in peers:
                row = {"name": name, "threads": threads, "unit": unit, "ndgrad": round(mine, 4),
                       "peer": None if peer is None else round(peer, 4), "peer_name": peer_name,
                       "ratio": None if ratio(unit, mine, peer) is None else round(ratio(unit, mine, peer), 3)}
                rows.append(row)
                print(f"{name:22s} {threads}t  ndgrad {mine:12.4g} {unit:8s} {peer_name or '-':9s} "
                      f"{'-' if peer is None else format(peer, '12.4g')}  ratio {row['ratio'] if row['ratio'] else '-'}",
                      flush=True)
    with open(os.path.join(BUILD, "bench.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(f"\nwrote {os.path.join(BUILD, 'bench.json')} ({len(rows)} rows; ratio > 1: ndgrad faster or smaller)")


main()

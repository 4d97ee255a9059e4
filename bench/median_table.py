"""The README's performance tables: the median, row by row, of several complete `make bench` runs of
one machine class (each ratio measured within its own run), with issue 9's targets and whether the
median meets them. With --compilers, the median clang/gcc GFLOP/s ratio of bench-compilers runs.

Usage: /usr/bin/python3 bench/median_table.py RUN.json [RUN.json ...]
       /usr/bin/python3 bench/median_table.py --compilers RUN.json [RUN.json ...]"""
import json, statistics, sys
if sys.argv[1] == "--compilers":
    by = {}
    for p in sys.argv[2:]:
        for r in json.load(open(p)):
            by.setdefault(r["name"], {}).setdefault(r["threads"], []).append(r["ratio"])
    print(", ".join("%s %s" % (name, " / ".join("%.2f" % statistics.median(d[t]) for t in sorted(d)))
                    for name, d in by.items()))
    sys.exit(0)
runs = [json.load(open(p)) for p in sys.argv[1:]]
def key(r): return (r["name"], r["threads"], (r["peer_name"] or "").split("-")[0])
vals = {}
order = []
for rows in runs:
    for r in rows:
        k = key(r)
        if k not in vals:
            vals[k] = []
            order.append(k)
        vals[k].append(r)
def med(k, field):
    v = [r[field] for r in vals.get(k, []) if r.get(field) is not None]
    return statistics.median(v) if v else None
def rng(k, field):
    v = [r[field] for r in vals.get(k, []) if r.get(field) is not None]
    return (min(v), max(v)) if v else None
def fmt(v):
    if v is None: return ""
    if v >= 100: return "%.0f" % v
    if v >= 10: return "%.1f" % v
    if v >= 1: return "%.2f" % v
    return "%.3g" % v
targets = {
 "sgemm": ("≥ 0.95x OpenBLAS; limit ≥ 0.85 (1t)", lambda t, pr, br, lf: br >= 0.95 and (t != 1 or lf >= 0.85)),
 "op_overhead_add": ("≥ 20x", lambda t, pr, br, lf: pr >= 20),
 "op_overhead_fwd_bwd": ("≥ 20x", lambda t, pr, br, lf: pr >= 20),
 "mlp_step": ("≥ 1.3x (1t), 1.6x (2t); limit ≥ 0.6 (1t)", lambda t, pr, br, lf: pr >= (1.3 if t == 1 else 1.6) and (t != 1 or lf >= 0.6)),
 "fc_epoch": ("≥ 1.3x", lambda t, pr, br, lf: pr >= 1.3),
 "cnn_step": ("≥ 1.3x; limit ≥ 0.5 (1t)", lambda t, pr, br, lf: pr >= 1.3 and (t != 1 or lf >= 0.5)),
 "gpt_step": ("≥ 1.3x; limit ≥ 0.6 (1t)", lambda t, pr, br, lf: pr >= 1.3 and (t != 1 or lf >= 0.6)),
 "gpt2_124m_step": ("≥ 1.2x", lambda t, pr, br, lf: pr >= 1.2),
 "mlp_peak_rss": ("≥ 2x", lambda t, pr, br, lf: pr >= 2),
 "gpt_peak_rss": ("≥ 2x", lambda t, pr, br, lf: pr >= 2),
 "gpt2_124m_peak_rss": ("none (see below)", None),
}
print("| benchmark | unit | ndgrad 1t / 2t | PyTorch 1t / 2t | ratio vs PyTorch | OpenBLAS 1t / 2t | ratio vs OpenBLAS | limit_fraction | target | met? |")
print("|---|---|---|---|---|---|---|---|---|---|")
names = []
for k in order:
    if k[0] not in names: names.append(k[0])
for name in names:
    ts = (1, 2)
    if name == "fma_peak":
        isa = vals[(name, 1, "")][0]["isa"]
        print("| fma_peak (%s probe) | GFLOP/s | %s | | | | | | | |" % (isa, " / ".join(fmt(med((name, t, ""), "ndgrad")) for t in ts)))
        continue
    pk = [(name, t, "pytorch") for t in ts]; ok_ = [(name, t, "openblas") for t in ts]
    nd = " / ".join(fmt(med(k, "ndgrad")) for k in pk)
    ptv = " / ".join(fmt(med(k, "peer")) for k in pk)
    ptr = " / ".join("%.2f" % med(k, "ratio") for k in pk)
    have_ob = any(k in vals for k in ok_)
    obv = " / ".join(fmt(med(k, "peer")) for k in ok_) if have_ob else ""
    obr = " / ".join("%.2f" % med(k, "ratio") for k in ok_) if have_ob else ""
    lfs = [med(k, "limit_fraction") for k in pk]
    lf = " / ".join("%.2f" % v for v in lfs) if lfs[0] is not None else ""
    tk = "sgemm" if name.startswith("sgemm") else name
    tgt, ok = targets.get(tk, ("", None))
    verdict = ""
    if ok:
        res = [ok(t, med(pk[i], "ratio") or 0, med(ok_[i], "ratio") or 0, lfs[i] or 0) for i, t in enumerate(ts)]
        verdict = "yes" if all(res) else "**no** (" + ", ".join("%dt" % t for t, r in zip(ts, res) if not r) + ")"
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (name, vals[pk[0]][0]["unit"], nd, ptv, ptr, obv, obr, lf, tgt, verdict))
r0 = runs[0][0]
print("\n<!-- %d runs; cpu %s, isa %s, compiler %s, date %s -->" % (len(runs), r0.get("cpu"), r0.get("isa"), r0.get("compiler"), r0.get("date")))

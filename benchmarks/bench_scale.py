"""Scaling of smooth unique information to large n: in-memory, out-of-core and projected paths.

Full-size Fashion-MNIST through ``jaxinfo.load_idx`` (binary tasks, 14×14 pixels, targets ±1:
T-shirt/top (0) vs trouser (1), 12,000 images; for n > 12,000 ``--task tops``, all 60,000
images, upper-body garments vs the rest), an MLP 196-256-1 (ReLU, P = 50,689) at initialisation,
t = ∞ with
weight decay λ = 1e-3 (lr = 0.01; the step size only enters the divergence check).

Subcommands (each measurement runs in its own subprocess, so peak memory is per run):

- ``agreement --n 2000`` — the projected path against the exact (in-memory kernel) path:
  Pearson and Spearman of functional and weight SI for d = 1k … 32k.
- ``scaling --path {inmem,ooc,proj} --ns 1000,2000,...`` — wall time and peak memory per phase
  (Jacobian/kernel, factorisation, leave-one-out). Peak memory: a thread samples
  ``/proc/self/status`` every 20 ms (``RssAnon``: anonymous memory, i.e. not the page cache of
  the memory-mapped kernel files; and ``VmRSS``, which includes mapped file pages).
- ``report`` — markdown tables and fitted exponents (least squares on log time vs log n) from
  ``benchmarks/scale_runs/*.jsonl``.

Commands used for RESULTS.md::

    PYTHONPATH=. python benchmarks/bench_scale.py agreement --n 2000
    PYTHONPATH=. python benchmarks/bench_scale.py scaling --path inmem --ns 1000,2000,4000,8000
    PYTHONPATH=. python benchmarks/bench_scale.py scaling --path ooc --ns 1000,2000,4000,8000,12000
    PYTHONPATH=. python benchmarks/bench_scale.py scaling --path proj --task tops \
        --ns 5000,10000,20000,50000
    PYTHONPATH=. python benchmarks/bench_scale.py report
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _timing import parse_with_platform  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = HERE / "scale_runs"
LAM, LR, HIDDEN = 1e-3, 0.01, 256
DEFAULT_D = 4096


# ----------------------------------------------------------------------------- problem

TOPS = (0, 2, 3, 4, 6)  # T-shirt/top, pullover, dress, coat, shirt


def problem(n: int, seed: int = 0, task: str = "0v1"):
    """``task="0v1"``: T-shirt/top vs trouser (12,000 images); ``"tops"``: all 60,000 images,
    upper-body garments (classes 0, 2, 3, 4, 6) vs the rest."""
    import jax
    import jax.numpy as jnp
    import jaxinfo

    if task == "0v1":
        data = jaxinfo.load_idx("fashion_mnist", "train", size=14, classes=[0, 1], relabel=True)
        labels = data.y
    else:
        data = jaxinfo.load_idx("fashion_mnist", "train", size=14)
        labels = np.isin(data.y, TOPS).astype(np.int32)
    if n > len(labels):
        raise ValueError(f"n = {n} > {len(labels)} images in task {task!r}")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(labels))[:n]
    x = jnp.asarray(data.x[idx])
    y = jnp.asarray(2.0 * labels[idx, None] - 1.0, jnp.float32)
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    din = x.shape[1]
    params = {"w1": jax.random.normal(k1, (din, HIDDEN)) / np.sqrt(din),
              "b1": jnp.zeros(HIDDEN), "w2": jax.random.normal(k2, (HIDDEN, 1)) / np.sqrt(HIDDEN),
              "b2": jnp.zeros(1)}

    def apply_fn(p, xb):
        return jax.nn.relu(xb @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    return apply_fn, params, x, y


# ----------------------------------------------------------------------------- memory

class PhaseMemory:
    """Samples RssAnon / VmRSS every 20 ms; attributes each sample to the current phase."""

    def __init__(self):
        self.phase = "setup"
        self.peak: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _read():
        vals = {}
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "VmRSS:")):
                    key, v = line.split(":")
                    vals[key] = float(v.split()[0]) / 1024  # MiB
        return vals["RssAnon"], vals["VmRSS"]

    def _loop(self):
        while not self._stop.is_set():
            anon, rss = self._read()
            p = self.peak.setdefault(self.phase, [0.0, 0.0])
            p[0], p[1] = max(p[0], anon), max(p[1], rss)
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class PhaseLog(logging.Handler):
    """Collects ``phase=<name> seconds=<s>`` records and advances the memory sampler."""

    def __init__(self, mem: PhaseMemory, order: list[str]):
        super().__init__()
        self.mem, self.order, self.times = mem, order, {}

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("phase="):
            name = msg.split()[0][6:]
            self.times[name] = float(msg.split("seconds=")[1])
            nxt = self.order.index(name) + 1 if name in self.order else len(self.order)
            self.mem.phase = self.order[nxt] if nxt < len(self.order) else "done"


# ----------------------------------------------------------------------------- one run

def run_one(path: str, n: int, d: int, budget: int, task: str = "0v1") -> dict:
    import jax
    import jaxinfo
    from jaxinfo import GradientDescent, LOOSolver

    apply_fn, params, x, y = problem(n, task=task)
    dyn = GradientDescent(lr=LR, t=None, weight_decay=LAM)
    order = ["kernel", "factorisation", "leave_one_out"] if path != "proj" else \
        ["features", "factorisation", "leave_one_out"]
    rec = {"path": path, "n": n, "d": d if path == "proj" else None, "budget": budget,
           "task": task}
    with PhaseMemory() as mem:
        handler = PhaseLog(mem, order)
        for name in ("jaxinfo.sui.out_of_core", "jaxinfo.sui.projected"):
            lg = logging.getLogger(name)
            lg.setLevel(logging.INFO)
            lg.addHandler(handler)
        mem.phase = order[0]
        t0 = time.perf_counter()
        if path == "inmem":
            import jaxinfo.sui.driver as drv
            from jaxinfo.linearize import precision_scope, to_host64
            theta = jaxinfo.empirical_ntk(apply_fn, params, x)
            theta.block_until_ready()
            handler.times["kernel"] = time.perf_counter() - t0
            mem.phase = "factorisation"
            solver = LOOSolver()
            r0 = apply_fn(params, x) - y
            with precision_scope("float64"):
                th, r, _ = to_host64("float64", theta, r0, None)
                t1 = time.perf_counter()
                st = drv._setup(th, r, dyn, None, "auto")
                st.c_inv().block_until_ready()
                handler.times["factorisation"] = time.perf_counter() - t1
                mem.phase = "leave_one_out"
                t1 = time.perf_counter()
                meth, plan = drv._resolve(st, solver)
                out = drv._run(st, meth, plan, solver, vectors=False, progress=False,
                               checkpoint_dir=None)
                handler.times["leave_one_out"] = time.perf_counter() - t1
            fsi = out["train_others_sq"][:, 0] / (n - 1) / 2
        elif path == "ooc":
            from jaxinfo.kernel_store import compute_kernel
            from jaxinfo.sui.out_of_core import unique_information_out_of_core
            tmp = tempfile.mkdtemp(prefix="jaxinfo_ooc_", dir=os.environ.get("OOC_DIR", "/tmp"))
            try:
                kern = compute_kernel(apply_fn, params, x, tmp, memory_budget=budget,
                                      progress=False)
                handler.times["kernel"] = time.perf_counter() - t0
                mem.phase = "factorisation"
                rec["tile"] = kern.tile
                res = unique_information_out_of_core(
                    kern, apply_fn(params, x) - y, dyn, solver=LOOSolver(memory_budget=budget),
                    progress=False)
                rec["disk_mib"] = sum(f.stat().st_size for f in Path(tmp).glob("*.npy")) / 2**20
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            fsi = res.functional_si
        else:
            res = jaxinfo.unique_information(apply_fn, params, x, y, dynamics=dyn,
                                             projection_dim=d, key=jax.random.PRNGKey(1),
                                             progress=False)
            fsi = res.functional_si
        rec["total_s"] = time.perf_counter() - t0
    rec["seconds"] = {p: handler.times.get(p) for p in order}
    rec["peak_anon_mib"] = {p: mem.peak.get(p, [None])[0] for p in order}
    rec["peak_rss_mib"] = {p: mem.peak.get(p, [None, None])[1] for p in order}
    rec["fsi_checksum"] = float(np.sum(fsi))
    return rec


def agreement(n: int, ds: list[int]) -> list[dict]:
    import jax
    import jaxinfo
    from scipy.stats import pearsonr, spearmanr
    from jaxinfo import GradientDescent

    apply_fn, params, x, y = problem(n)
    dyn = GradientDescent(lr=LR, t=None, weight_decay=LAM)
    t0 = time.perf_counter()
    exact = jaxinfo.unique_information(apply_fn, params, x, y, dynamics=dyn, progress=False)
    rows = [{"d": "exact", "seconds": time.perf_counter() - t0}]
    print(rows[-1], flush=True)
    for d in ds:
        for seed in (1, 2):
            t0 = time.perf_counter()
            res = jaxinfo.unique_information(apply_fn, params, x, y, dynamics=dyn,
                                             projection_dim=d, key=jax.random.PRNGKey(seed),
                                             progress=False)
            rows.append({"d": d, "seed": seed, "seconds": time.perf_counter() - t0,
                         "pearson_f": pearsonr(exact.functional_si, res.functional_si)[0],
                         "spearman_f": spearmanr(exact.functional_si, res.functional_si)[0],
                         "pearson_w": pearsonr(exact.weight_si, res.weight_si)[0],
                         "spearman_w": spearmanr(exact.weight_si, res.weight_si)[0]})
            print(rows[-1], flush=True)
    return rows


# ----------------------------------------------------------------------------- report

def fit_exponent(ns, ts):
    ns, ts = np.asarray(ns, float), np.asarray(ts, float)
    ok = np.isfinite(ts) & (ts > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(ns[ok]), np.log(ts[ok]), 1)[0])


def report() -> str:
    lines = []
    agr = RUNS / "agreement.jsonl"
    if agr.exists():
        rows = [json.loads(s) for s in agr.read_text().splitlines()]
        lines += ["| d | seed | Pearson f-SI | Spearman f-SI | Pearson w-SI | Spearman w-SI | s |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            if r["d"] == "exact":
                lines.append(f"| exact (kernel) | – | 1 | 1 | 1 | 1 | {r['seconds']:.1f} |")
            else:
                lines.append(f"| {r['d']} | {r['seed']} | {r['pearson_f']:.4f} | "
                             f"{r['spearman_f']:.4f} | {r['pearson_w']:.4f} | "
                             f"{r['spearman_w']:.4f} | {r['seconds']:.1f} |")
        lines.append("")
    for path in ("inmem", "ooc_v1", "ooc", "proj"):
        f = RUNS / f"scaling_{path}.jsonl"
        if not f.exists():
            continue
        rows = sorted((json.loads(s) for s in f.read_text().splitlines()), key=lambda r: r["n"])
        phases = list(rows[0]["seconds"])
        head = " | ".join(f"{p} s" for p in phases)
        mem = " | ".join(f"{p} MiB" for p in phases)
        lines += [f"**{path}**" + (f" (d = {rows[0]['d']})" if path == "proj" else ""), "",
                  f"| n | {head} | total s | peak RssAnon: {mem} |",
                  "|---" * (2 + 2 * len(phases)) + "|"]
        for r in rows:
            secs = " | ".join("–" if r["seconds"][p] is None else f"{r['seconds'][p]:.2f}"
                              for p in phases)
            mems = " | ".join("–" if r["peak_anon_mib"][p] is None
                              else f"{r['peak_anon_mib'][p]:.0f}" for p in phases)
            lines.append(f"| {r['n']} | {secs} | {r['total_s']:.1f} | {mems} |")
        ns = [r["n"] for r in rows]
        fits = ", ".join(f"{p} {fit_exponent(ns, [r['seconds'][p] or np.nan for r in rows]):.2f}"
                         for p in phases)
        fits += f", total {fit_exponent(ns, [r['total_s'] for r in rows]):.2f}"
        last = ", ".join(
            f"{p} {fit_exponent(ns[-2:], [r['seconds'][p] or np.nan for r in rows[-2:]]):.2f}"
            for p in phases)
        lines += ["", "Fitted exponents (time ∝ n^e, least squares in log–log over all n): "
                  f"{fits}; between the two largest n: {last}.", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("agreement")
    a.add_argument("--n", type=int, default=2000)
    a.add_argument("--ds", default="1024,2048,4096,8192,16384,32768")
    s = sub.add_parser("scaling")
    s.add_argument("--path", choices=["inmem", "ooc", "proj"], required=True)
    s.add_argument("--ns", required=True)
    s.add_argument("--d", type=int, default=DEFAULT_D)
    s.add_argument("--task", choices=["0v1", "tops"], default="0v1")
    s.add_argument("--budget", type=int, default=256 * 2**20,
                   help="memory budget of the out-of-core path (forces tiling)")
    o = sub.add_parser("one")
    o.add_argument("--path", required=True)
    o.add_argument("--n", type=int, required=True)
    o.add_argument("--d", type=int, default=DEFAULT_D)
    o.add_argument("--task", choices=["0v1", "tops"], default="0v1")
    o.add_argument("--budget", type=int, default=256 * 2**20)
    sub.add_parser("report")
    args = parse_with_platform(ap)
    RUNS.mkdir(exist_ok=True)
    if args.cmd == "agreement":
        rows = agreement(args.n, [int(v) for v in args.ds.split(",")])
        (RUNS / "agreement.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif args.cmd == "one":
        print(json.dumps(run_one(args.path, args.n, args.d, args.budget, args.task)))
    elif args.cmd == "scaling":
        out = RUNS / f"scaling_{args.path}.jsonl"
        for n in (int(v) for v in args.ns.split(",")):
            t0 = time.time()
            proc = subprocess.run([sys.executable, __file__, "one", "--path", args.path,
                                   "--n", str(n), "--d", str(args.d), "--budget",
                                   str(args.budget), "--task", args.task],
                                  capture_output=True, text=True)
            if proc.returncode:
                print(f"n={n} failed:\n{proc.stderr[-3000:]}", flush=True)
                break
            rec = json.loads(proc.stdout.strip().splitlines()[-1])
            with out.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"{args.path} n={n}: {time.time() - t0:.1f} s wall  {rec}", flush=True)
    else:
        print(report())


if __name__ == "__main__":
    main()

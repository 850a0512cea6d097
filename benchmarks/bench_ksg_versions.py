"""The compiled KSG kernel at a git revision against the working tree's, on the same arrays.

Both versions of ``jaxinfo/_ksg_native.py`` are imported side by side (the old one from
``git show REV:jaxinfo/_ksg_native.py``) and run back to back on each data set, best of
``--repeats``, with numba's default threads (one per core). The two results must be equal bit
for bit (any change to the kernel is meant to move only time); the script stops otherwise.
Prints a Markdown table: ms per pair before and after, and the ratio.

    python benchmarks/bench_ksg_versions.py --old 31ec297 [--n 24 --s 10000 --repeats 3]
        [--acts ACTS.npy]

Data (``--n`` neurons, ``--s`` samples, the mixing of ``bench_diversity.py``): Gaussian
activations with no ReLU, the ReLU-mixed activations of ``bench_diversity.py`` (every third
neuron through a ReLU: half its values are exact zeros), and every neuron through a ReLU.
``--acts`` adds ``--n`` random columns of a stored ``[S, N]`` array: a trained network's
hidden pre-activations, e.g. written by ``memorization_activations.py``.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_revision(rev: str):
    """The module ``jaxinfo._ksg_native`` as it was at git revision ``rev``."""
    src = subprocess.run(["git", "show", f"{rev}:jaxinfo/_ksg_native.py"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    path = os.path.join(tempfile.mkdtemp(), f"ksg_native_{rev}.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location(f"ksg_native_{rev}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def datasets(n: int, s: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``{name: [s, n] float32}``: Gaussian, ReLU-mixed (every third neuron), all ReLU."""
    from bench_diversity import synthetic_activations
    acts = synthetic_activations(np.random.default_rng(seed), s, n, relu_every=None)
    mixed = acts.copy()
    mixed[:, ::3] = np.maximum(mixed[:, ::3], 0)
    return {"Gaussian (no ReLU)": acts, "ReLU-mixed (bench_diversity's data)": mixed,
            "all ReLU": np.maximum(acts, 0)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="git revision of the kernel to compare with")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--s", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--acts", default=None, help="an [S, N] .npy of real activations")
    args = ap.parse_args()

    import numba

    sys.path.insert(0, ROOT)
    from jaxinfo import _ksg_native as new
    old = load_revision(args.old)
    data = datasets(args.n, args.s)
    if args.acts:
        acts = np.load(args.acts)
        cols = np.sort(np.random.default_rng(0).choice(acts.shape[1], args.n, replace=False))
        data[f"{os.path.basename(args.acts)}, {args.n} random neurons"] = acts[:, cols]
    for mod in (old, new):          # compile both outside the timings
        mod.ksg_all_pairs(next(iter(data.values()))[:200, :3])
    pairs = args.n * (args.n - 1) // 2
    print(f"compiled KSG kernel, {args.old} vs working tree: {args.n} neurons ({pairs} pairs) × "
          f"{args.s:,} samples, k = 3, numba {numba.__version__}, {numba.get_num_threads()} "
          f"threads, best of {args.repeats}, load {os.getloadavg()[0]:.1f}")
    print(f"\n| data | {args.old} ms/pair | now ms/pair | speed-up |\n|---|---|---|---|")
    for name, a in data.items():
        best, result = {}, {}
        for _ in range(args.repeats):   # interleaved, so that load drifts hit both alike
            for label, mod in (("old", old), ("new", new)):
                t = time.perf_counter()
                mi = mod.ksg_all_pairs(a)
                t = (time.perf_counter() - t) / pairs * 1e3
                best[label] = min(best.get(label, np.inf), t)
                result.setdefault(label, mi)
        if not np.array_equal(result["old"], result["new"]):
            sys.exit(f"{name}: the two kernels disagree (max |diff| "
                     f"{np.abs(result['old'] - result['new']).max():.2e})")
        print(f"| {name} | {best['old']:.2f} | {best['new']:.2f} | "
              f"{best['old'] / best['new']:.2f}× |", flush=True)


if __name__ == "__main__":
    main()

"""First call vs warm call of `unique_information` (compilation share of a notebook user's time).

Each case runs in a fresh process (so nothing is compiled yet and no cache is warm): one
first call, then the best of two warm calls with the same shapes, and one call with other
hyperparameters (lr, λ) of the same shapes, which must not recompile.

    python benchmarks/bench_compile.py [--cases n500_t1000,n800_tinf] [--cache DIR]

Cases (bundled MNIST 4 vs 9, 14×14, one-hidden-layer MLP of width 1024, k = 1):
``n500_t1000`` — n = 500, t = 1000 steps; ``n800_tinf`` — n = 800, t = ∞.
With ``--cache DIR`` JAX's persistent compilation cache is enabled in DIR (a second run of the
script then starts warm).

``--sweep 500,510,520,530,540`` instead times a sweep over n in one process (t = ∞ and
t = 1000), once with the problem's own shapes and once with ``LOOSolver(pad_to="bucket")``
(every n of a bucket shares one compilation), each in a fresh process: the first call, each
later new n, and a repeat of the last n (warm); and how far the two runs' scores differ.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from _timing import parse_with_platform  # noqa: E402

CASES = {"n500_t1000": (500, 1000), "n800_tinf": (800, None)}


def one_case(name: str, cache: str | None) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxinfo

    if cache:
        jaxinfo.enable_compilation_cache(cache)
    from jaxinfo.experiments.sui import MLP

    n, t = CASES[name]
    data = jaxinfo.load_mnist(classes=[4, 9], size=14, relabel=True)
    x = jnp.asarray(data.x[:n])
    y = jnp.asarray(data.y[:n, None], jnp.float32)
    model = MLP(width=1024)
    apply_fn, params = jaxinfo.flax_apply(model, model.init(jax.random.PRNGKey(0), x[:1]))
    dyn = jaxinfo.GradientDescent(lr=0.02, t=t, weight_decay=1e-3)

    def call(d):
        t0 = time.perf_counter()
        res = jaxinfo.unique_information(apply_fn, params, x, y, dynamics=d, progress=False)
        np.asarray(res.functional_si)
        return time.perf_counter() - t0

    first = call(dyn)
    warm = min(call(dyn) for _ in range(2))
    other = call(dyn.replace(lr=0.015, weight_decay=2e-3))
    return dict(case=name, n=n, t=t, first_s=first, warm_s=warm, other_hparams_s=other,
                first_over_warm=first / warm, platform=jax.default_backend(),
                jax=jax.__version__)


def one_sweep(sizes: list[int], t, pad: str | None) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxinfo
    from jaxinfo.experiments.sui import MLP

    data = jaxinfo.load_mnist(classes=[4, 9], size=14, relabel=True)
    model = MLP(width=1024)
    apply_fn, params = jaxinfo.flax_apply(model, model.init(jax.random.PRNGKey(0),
                                                            jnp.asarray(data.x[:1])))
    dyn = jaxinfo.GradientDescent(lr=0.02, t=t, weight_decay=1e-3)
    solver = jaxinfo.LOOSolver(pad_to=pad)

    def call(n):
        t0 = time.perf_counter()
        res = jaxinfo.unique_information(apply_fn, params, data.x[:n],
                                         data.y[:n, None].astype(np.float32), dynamics=dyn,
                                         solver=solver, progress=False)
        return time.perf_counter() - t0, np.asarray(res.functional_si)

    times, last = [], None
    for n in sizes:
        dt, last = call(n)
        times.append(dt)
    warm = min(call(sizes[-1])[0] for _ in range(2))
    return dict(t=t, pad=pad, sizes=sizes, times=times, warm_s=warm,
                last_functional_si=last.tolist(), platform=jax.default_backend())


def sweep(sizes: str) -> None:
    import numpy as np

    rows = []
    for t in (None, 1000):
        for pad in (None, "bucket"):
            cmd = [sys.executable, __file__, "--child", f"sweep:{sizes}:{t}:{pad}"]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"cpu={os.cpu_count()} load={os.getloadavg()[0]:.1f} sizes={sizes}")
    print("| t | pad_to | first call s | each later new n s (mean) | warm s | "
          "later new n / warm |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        later = float(np.mean(r["times"][1:]))
        print(f"| {'∞' if r['t'] is None else r['t']} | {r['pad']} | {r['times'][0]:.2f} | "
              f"{later:.2f} | {r['warm_s']:.2f} | {later / r['warm_s']:.1f} |")
    for a, b in zip(rows[::2], rows[1::2]):
        x, y = np.asarray(a["last_functional_si"]), np.asarray(b["last_functional_si"])
        print(f"t = {a['t']}: padded vs own shapes, functional SI at n = {a['sizes'][-1]}: "
              f"max relative difference {np.max(np.abs(x - y)) / np.max(np.abs(x)):.1e} "
              "(float32 NTK, float64 leave-one-out)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--cache", default=None)
    ap.add_argument("--sweep", default=None, help="comma-separated n: time a sweep over n")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parse_with_platform(ap)
    if args.child and args.child.startswith("sweep:"):
        _, sizes, t, pad = args.child.split(":")
        print(json.dumps(one_sweep([int(n) for n in sizes.split(",")],
                                   None if t == "None" else int(t),
                                   None if pad == "None" else pad)))
        return
    if args.sweep:
        sweep(args.sweep)
        return
    if args.child:
        print(json.dumps(one_case(args.child, args.cache)))
        return
    rows = []
    for name in args.cases.split(","):
        cmd = [sys.executable, __file__, "--child", name] + (["--cache", args.cache]
                                                             if args.cache else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]))
    print(f"\ncpu={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    print("| case | first call s | warm s | other lr/λ s | first / warm |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['first_s']:.2f} | {r['warm_s']:.2f} | "
              f"{r['other_hparams_s']:.2f} | {r['first_over_warm']:.1f} |")


if __name__ == "__main__":
    main()

"""neural-tangents vs jaxinfo on neural-tangents' own MLP, in the same run (same process).

Runs ONLY in a separate environment with neural-tangents 0.6.5 (it does not import on JAX >= 0.6,
and its implementation 3, structured derivatives, runs only on JAX <= 0.4.25), never in
jaxinfo's. jaxinfo's kernel modules import on those JAX versions too, so both libraries are
timed in one process on the same ``apply_fn``, parameters and inputs::

    python3 -m venv /tmp/ntenv
    /tmp/ntenv/bin/pip install "jax[cpu]==0.5.3" "jaxlib==0.5.3" "neural-tangents==0.6.5" \
        "flax==0.10.4" "optax==0.2.4"
    PYTHONPATH=. /tmp/ntenv/bin/python benchmarks/nt_reference_timing.py [--n 256] [--repeats 3]

(the same with ``jax==0.4.25``, ``numpy<2`` for neural-tangents' structured derivatives).
Failures of an implementation are reported, not hidden. jaxinfo is timed through its
neural-tangents drop-in, ``jaxinfo.empirical_ntk_fn``, with ``implementation="structured"``
and ``"jacobian"``; the ratio is against neural-tangents' best implementation that ran.

Model: ``stax.serial(Dense(512), Tanh, Dense(512), Tanh, Dense(5))`` (stax defaults: NTK
parameterization, ``W_std=1``, no biases; stax has no Tanh layer, so ``Elementwise(jnp.tanh)``) on
196-d inputs ``x ~ N(0, 1)`` (``PRNGKey(0)``), weights from ``init_fn(PRNGKey(1), ...)``. It times
``jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0, implementation=i))(x, None,
params)``, the full ``[n, n, 5, 5]`` training kernel, for implementations 1 (Jacobian contraction),
2 (NTK-vector products) and 3 (structured derivatives): float32, one compile run, then the best
of ``--repeats`` warm runs. The same network in plain JAX is

    h = tanh(x @ W1 / sqrt(196)); h = tanh(h @ W2 / sqrt(512)); f = h @ W3 / sqrt(512)
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import jaxlib
import neural_tangents as nt
import numpy as np
from neural_tangents import stax
from _timing import parse_with_platform  # noqa: E402

IMPLEMENTATIONS = {1: "JACOBIAN_CONTRACTION", 2: "NTK_VECTOR_PRODUCTS",
                   3: "STRUCTURED_DERIVATIVES"}


def model():
    return stax.serial(stax.Dense(512), stax.Elementwise(fn=jnp.tanh),
                       stax.Dense(512), stax.Elementwise(fn=jnp.tanh),
                       stax.Dense(5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="samples (kernel is [n, n, 5, 5])")
    ap.add_argument("--d", type=int, default=196, help="input dimension")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--implementations", type=int, nargs="+", default=[1, 2, 3])
    args = parse_with_platform(ap)

    init_fn, apply_fn, _ = model()
    x = jax.random.normal(jax.random.PRNGKey(0), (args.n, args.d), dtype=jnp.float32)
    _, params = init_fn(jax.random.PRNGKey(1), (-1, args.d))
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))

    print(f"neural_tangents {nt.__version__}, jax {jax.__version__}, jaxlib {jaxlib.__version__}, "
          f"numpy {np.__version__}, backend {jax.default_backend()} "
          f"({jax.devices()[0].device_kind}), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}")
    print(f"MLP 196-512-512-5 tanh, {n_params} params, x [{args.n}, {args.d}] float32, "
          f"kernel [{args.n}, {args.n}, 5, 5] (trace_axes=()), best of {args.repeats} warm runs")
    ref, best = None, {}

    def run(label, fn):
        nonlocal ref
        try:
            t0 = time.perf_counter()
            k = jax.block_until_ready(fn(x, None, params))
        except Exception as e:  # noqa: BLE001 - report which implementation does not run
            print(f"{label:38s}: FAILS ({type(e).__name__}: {str(e).splitlines()[0][:90]})")
            return
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x, None, params))
            times.append(time.perf_counter() - t0)
        k = np.asarray(k, np.float64)
        ref = k if ref is None else ref
        err = np.max(np.abs(k - ref)) / np.max(np.abs(ref))
        best[label] = min(times)
        print(f"{label:38s}: best {min(times):8.3f} s  (all "
              f"{', '.join(f'{t:.3f}' for t in times)}; first call incl. compile {first:.2f} s)"
              f"  shape {k.shape}  max rel diff vs first {err:.1e}")

    for impl in args.implementations:
        run(f"neural-tangents {impl} {IMPLEMENTATIONS[impl]}",
            jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                        implementation=impl)))
    try:
        from jaxinfo.ntk import empirical_ntk_fn
    except ImportError as e:
        print(f"jaxinfo not importable here ({e}); run with PYTHONPATH=<jaxinfo checkout>")
        return
    for impl in ("structured", "jacobian"):
        run(f"jaxinfo {impl}", jax.jit(empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                                        implementation=impl)))
    nt_best = min((v, k) for k, v in best.items() if k.startswith("neural-tangents"))
    ours = best.get("jaxinfo structured")
    if ours:
        print(f"\njaxinfo structured vs neural-tangents' best implementation that ran "
              f"({nt_best[1]}, {nt_best[0]:.3f} s): {nt_best[0] / ours:.1f}x")


if __name__ == "__main__":
    main()

"""neural-tangents' own empirical-NTK timings, as a reference for jaxinfo's benchmarks.

Runs ONLY in a separate environment with neural-tangents 0.6.5 (it does not import on JAX >= 0.6,
and its implementation 3, structured derivatives, needs JAX <= 0.4.25), never in jaxinfo's::

    python3 -m venv /tmp/ntenv
    /tmp/ntenv/bin/pip install "jax[cpu]==0.4.25" "jaxlib==0.4.25" "neural-tangents==0.6.5" "numpy<2"
    /tmp/ntenv/bin/python benchmarks/nt_reference_timing.py [--n 256] [--repeats 3]

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
    args = ap.parse_args()

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
    ref = None
    for impl in args.implementations:
        fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                         implementation=impl))
        t0 = time.perf_counter()
        k = jax.block_until_ready(fn(x, None, params))
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x, None, params))
            times.append(time.perf_counter() - t0)
        k = np.asarray(k, np.float64)
        ref = k if ref is None else ref
        err = np.max(np.abs(k - ref)) / np.max(np.abs(ref))
        print(f"implementation {impl} ({IMPLEMENTATIONS[impl]:22s}): best {min(times):8.3f} s  "
              f"(all {', '.join(f'{t:.3f}' for t in times)}; first call incl. compile "
              f"{first:.2f} s)  shape {k.shape}  max rel diff vs first impl {err:.1e}")


if __name__ == "__main__":
    main()

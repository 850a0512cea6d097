"""Empirical-NTK speed and memory: jaxinfo's implementations vs a naive contraction.

Run: ``.venv/bin/python benchmarks/bench_ntk.py [--sizes 256 1024] [--repeats 3]``

For an MLP and a small CNN (scalar output, as in the SUI experiments) and each n, prints the
wall time (best of ``--repeats``, after one compile run) of

- ``naive``: a Python loop over samples calling a jitted ``jax.jacobian`` per sample, stacking
  the Jacobian and forming ``J Jᵀ`` (what one writes without jaxinfo);
- ``jacobian``: jaxinfo's vmapped per-sample Jacobian contraction;
- ``ntvp``: jaxinfo's NTK-vector products;
- ``structured``: jaxinfo's structured derivatives (layer inputs and output cotangents),
  with the ratio ``jacobian / structured`` (goal ≥ 10× on the wide 196-1024-1 MLP, n = 1024);
- ``neural_tangents``: ``nt.empirical_ntk_fn`` when it imports (it needs jax < 0.6);

with the ratio naive / implementation, and the memory XLA allocates for the ``jacobian``
program's temporaries with and without ``batch_size`` (``compiled.memory_analysis()``). All float32, CPU unless JAX finds
an accelerator.
"""
from __future__ import annotations

import argparse
import platform

import jax
import jax.numpy as jnp
import numpy as np
from _timing import best_time, parse_with_platform

from jaxinfo import empirical_ntk


def mlp(key, d=64, width=512):
    k1, k2 = jax.random.split(key)
    params = {"w1": jax.random.normal(k1, (d, width)) / np.sqrt(d), "b1": jnp.zeros(width),
              "w2": jax.random.normal(k2, (width, 1)) / np.sqrt(width), "b2": jnp.zeros(1)}

    def apply_fn(p, x):
        return jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    return apply_fn, params, (d,)


def cnn(key, channels=16):
    k1, k2, k3 = jax.random.split(key, 3)
    params = {"c1": jax.random.normal(k1, (3, 3, 1, channels)) / 3.0,
              "c2": jax.random.normal(k2, (3, 3, channels, channels)) / (3.0 * np.sqrt(channels)),
              "w": jax.random.normal(k3, (channels, 1)) / np.sqrt(channels)}
    dn = ("NHWC", "HWIO", "NHWC")

    def apply_fn(p, x):
        h = jax.nn.relu(jax.lax.conv_general_dilated(x, p["c1"], (1, 1), "SAME",
                                                     dimension_numbers=dn))
        h = jax.nn.relu(jax.lax.conv_general_dilated(h, p["c2"], (2, 2), "SAME",
                                                     dimension_numbers=dn))
        return h.mean(axis=(1, 2)) @ p["w"]

    return apply_fn, params, (14, 14, 1)


def wide(key):
    return mlp(key, d=196, width=1024)


MODELS = {"mlp": mlp, "wide": wide, "cnn": cnn}


def naive_ntk(apply_fn, params, x):
    """Per-sample jax.jacobian in a Python loop, then J Jᵀ."""
    jac = jax.jit(lambda p, xi: jax.jacobian(lambda q: apply_fn(q, xi[None])[0])(p))
    rows = []
    for i in range(x.shape[0]):
        leaves = jax.tree_util.tree_leaves(jac(params, x[i]))
        rows.append(jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in leaves], 1))
    j = jnp.stack(rows)[:, 0, :]  # k = 1
    return j @ j.T


def setup(model, n):
    apply_fn, params, shape = MODELS[model](jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (n,) + shape)
    return apply_fn, params, x


def peak_memory(model, n, batch_size):
    """XLA's own accounting of the compiled kernel program: temporary and output buffers (MiB)."""
    from jaxinfo.ntk import _ntk_jacobian

    apply_fn, params, x = setup(model, n)
    block = batch_size if batch_size is not None and batch_size < n else None
    compiled = _ntk_jacobian.lower(apply_fn, params, x, x, (1,), (), block,
                                   block is None).compile()
    mem = compiled.memory_analysis()
    return {"temp_mib": mem.temp_size_in_bytes / 2**20,
            "output_mib": mem.output_size_in_bytes / 2**20}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    args = parse_with_platform(ap)

    try:
        import neural_tangents as nt  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the environment
        nt = None
        print(f"neural_tangents: not importable here ({type(e).__name__}: {e}); skipped")

    print(f"# machine: {platform.processor() or platform.machine()}, "
          f"{jax.devices()[0].device_kind}, jax {jax.__version__}")
    header = f"{'model':5} {'n':>5} {'P':>7} {'naive s':>9} {'jacobian s':>11} {'ntvp s':>9} " \
             f"{'struct s':>9} {'naive/jac':>9} {'naive/ntvp':>10} {'jac/struct':>10}"
    if nt is not None:
        header += f" {'nt s':>8}"
    print(header)
    for model in MODELS:
        for n in args.sizes:
            apply_fn, params, x = setup(model, n)
            p = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
            ref = naive_ntk(apply_fn, params, x)
            for impl in ("jacobian", "structured"):
                got = empirical_ntk(apply_fn, params, x, implementation=impl)
                err = float(jnp.max(jnp.abs(got - ref)) / jnp.max(jnp.abs(ref)))
                assert err < 1e-4, (model, n, impl, err)
            t_naive = best_time(lambda: naive_ntk(apply_fn, params, x), args.repeats)
            t_jac = best_time(lambda: empirical_ntk(apply_fn, params, x,
                                                    implementation="jacobian"), args.repeats)
            # ntvp costs ~n²·K forward-backward passes of single samples: on CPU the vmapped
            # convolutions make it minutes for the CNN beyond n = 256, so it is skipped there.
            if model in ("cnn", "wide") and n > 256:
                t_ntvp = float("nan")
            else:
                t_ntvp = best_time(lambda: empirical_ntk(apply_fn, params, x,
                                                         implementation="ntvp"), args.repeats)
            t_str = best_time(lambda: empirical_ntk(apply_fn, params, x,
                                                    implementation="structured"), args.repeats)
            line = (f"{model:5} {n:5d} {p:7d} {t_naive:9.3f} {t_jac:11.3f} {t_ntvp:9.3f} "
                    f"{t_str:9.3f} {t_naive / t_jac:9.1f} {t_naive / t_ntvp:10.1f} "
                    f"{t_jac / t_str:10.1f}")
            if nt is not None:
                fn = nt.empirical_ntk_fn(lambda p_, x_: apply_fn(p_, x_), trace_axes=(-1,))
                t_nt = best_time(lambda: fn(x, None, params), args.repeats)
                line += f" {t_nt:8.3f}"
            print(line, flush=True)

    n = max(args.sizes)
    print(f"\n# XLA buffer accounting of implementation='jacobian' at n={n} "
          "(compiled program's temporaries; the output kernel is extra)")
    for model in ("mlp", "cnn"):
        for bs in (None, args.batch_size):
            m = peak_memory(model, n, bs)
            print(f"{model:5} batch_size={str(bs):>5}: temporaries {m['temp_mib']:8.1f} MiB, "
                  f"output {m['output_mib']:6.1f} MiB", flush=True)


if __name__ == "__main__":
    main()

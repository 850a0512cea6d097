"""Scaling in the number of parameters P: time and memory per phase, fitted exponents, FLOP/s.

Run: ``.venv/bin/python benchmarks/bench_scale_p.py [--n 512] [--widths 64 128 256 512 1024 2048]``

One-hidden-layer ReLU MLP 196 → width → 1 (P = 198·width + 1) on n inputs, k = 1, float32.
Phases, each timed warm (best of ``--repeats`` after a compile run):

- ``jacobian``: the per-sample Jacobians ``[n, P]`` (vmapped ``jacrev``);
- ``contract``: ``J Jᵀ`` of those Jacobians (the contraction of ``implementation="jacobian"``);
- ``structured``: the whole kernel by structured derivatives;
- ``factor``: Cholesky of ``Θ + (n−1)λI`` (float64) — independent of P;
- ``loo``: the t = ∞ leave-one-out of every sample (Schur complements, float64) — independent
  of P.

Memory per phase: XLA's accounting of the compiled program (temporaries + outputs, MiB).
Exponents: least-squares slope of log(time) against log(P) over the widths. FLOP/s: the
contraction's 2·n²·P flops per second, as a fraction of a plain ``[n, P] × [P, n]`` matmul timed
in the same run (the machine's reachable rate for that shape).
"""
from __future__ import annotations

import argparse
import os
import platform

import jax
import jax.numpy as jnp
import numpy as np
from _timing import best_time as best
from _timing import parse_with_platform


def memory_mib(fn, *args):
    mem = jax.jit(fn).lower(*args).compile().memory_analysis()
    return (mem.temp_size_in_bytes + mem.output_size_in_bytes) / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048])
    ap.add_argument("--repeats", type=int, default=3)
    args = parse_with_platform(ap)

    import jaxinfo
    from jaxinfo.ntk import _per_sample_jacobian
    from jaxinfo.sui import engines

    n, d = args.n, 196
    x = jax.random.normal(jax.random.PRNGKey(0), (n, d))
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"load {os.getloadavg()[0]:.1f}, jax {jax.__version__} ({jax.default_backend()}), "
          f"n = {n}, float32")
    print("| width | P | jacobian s | contract s | structured s | factor s | loo s | "
          "contract GFLOP/s | matmul GFLOP/s | fraction | mem jac MiB | mem contract MiB | "
          "mem structured MiB |")
    print("|" + "---|" * 13)
    rows = []
    for width in args.widths:
        k1, k2 = jax.random.split(jax.random.PRNGKey(width))
        params = {"w1": jax.random.normal(k1, (d, width)) / np.sqrt(d), "b1": jnp.zeros(width),
                  "w2": jax.random.normal(k2, (width, 1)) / np.sqrt(width)}

        def apply_fn(p, xx):
            return jax.nn.relu(xx @ p["w1"] + p["b1"]) @ p["w2"]

        p_count = sum(v.size for v in jax.tree_util.tree_leaves(params))
        jac_fn = jax.jit(lambda p, xx: jnp.concatenate(
            [leaf.reshape(n, -1) for leaf in _per_sample_jacobian(apply_fn, p, xx)], axis=1))
        jmat = jac_fn(params, x)
        contract = jax.jit(lambda j: j @ j.T)
        t_jac = best(lambda: jac_fn(params, x), args.repeats)
        t_con = best(lambda: contract(jmat), args.repeats)
        t_str = best(lambda: jaxinfo.empirical_ntk(apply_fn, params, x,
                                                   implementation="structured"), args.repeats)
        a = jax.random.normal(jax.random.PRNGKey(1), (n, p_count))
        b = jax.random.normal(jax.random.PRNGKey(2), (p_count, n))
        matmul = jax.jit(lambda u, v: u @ v)
        t_mm = best(lambda: matmul(a, b), args.repeats)
        with jax.enable_x64(True):
            theta = jnp.asarray(np.asarray(contract(jmat), np.float64))
            r0 = jnp.asarray(np.random.default_rng(0).normal(size=n))
            lam = 1e-3
            t_fac = best(lambda: engines.prepare(theta, r0, None, jnp.array([np.inf]), 0.1, lam,
                                                 n=n, spectral=False, continuous=False),
                         args.repeats)
            prob = engines.prepare(theta, r0, None, jnp.array([np.inf]), 0.1, lam, n=n,
                                   spectral=False, continuous=False)
            idx = jnp.arange(n)
            t_loo = best(lambda: engines.alpha_schur(prob.c_inv, r0, idx, 1), args.repeats)
        flops = 2.0 * n * n * p_count
        row = dict(width=width, P=p_count, jac=t_jac, con=t_con, struct=t_str, fac=t_fac,
                   loo=t_loo, gf_con=flops / t_con / 1e9, gf_mm=flops / t_mm / 1e9,
                   mem_jac=memory_mib(lambda p, xx: jac_fn(p, xx), params, x),
                   mem_con=memory_mib(lambda j: j @ j.T, jmat),
                   mem_str=memory_mib(lambda p, xx: jaxinfo.empirical_ntk(
                       apply_fn, p, xx, implementation="structured"), params, x))
        rows.append(row)
        print(f"| {width} | {p_count} | {t_jac:.4f} | {t_con:.4f} | {t_str:.4f} | {t_fac:.4f} | "
              f"{t_loo:.4f} | {row['gf_con']:.1f} | {row['gf_mm']:.1f} | "
              f"{row['gf_con'] / row['gf_mm']:.2f} | {row['mem_jac']:.1f} | "
              f"{row['mem_con']:.1f} | {row['mem_str']:.1f} |", flush=True)
    logp = np.log([r["P"] for r in rows])
    print("\nfitted exponents of time in P (slope of log t vs log P):")
    for key, name in (("jac", "jacobian"), ("con", "contract"), ("struct", "structured"),
                      ("fac", "factor"), ("loo", "loo"), ("mem_jac", "memory jacobian"),
                      ("mem_con", "memory contract"), ("mem_str", "memory structured")):
        slope = np.polyfit(logp, np.log([r[key] for r in rows]), 1)[0]
        print(f"  {name:18s} {slope:5.2f}")


if __name__ == "__main__":
    main()

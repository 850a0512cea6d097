"""Speed of the leave-one-out engine vs per-sample baselines (not a test; heavy).

Setting (issue 3): n synthetic samples (default 1000), d = 64, one-hidden-layer ReLU MLP of
width 1024, k = 1, full-batch GD (discrete) for t = 2000 steps and t = ∞, float64. The NTK
(Θ train×train and Θ* ref×train, m reference inputs) is computed once and shared by every
method; its time is reported separately.

Methods, each giving ‖Δw‖² and Σ_x∈X*‖Δf(x)‖² for every sample:

- fast:  ``jaxinfo.unique_information_from_kernel`` (t = ∞: Schur complement; finite t:
  batched Lanczos, tol 1e-10). Timed cold (with compilation) and warm.
- power: the official method — per sample, delete the row/column, (I − η'Θ_{−i})^t by repeated
  squaring, α' = −Θ_{−i}⁻¹(I − E)r (t = ∞: α' = −Θ_{−i}⁻¹r), numpy float64.
- eigh:  per-sample eigendecomposition of Θ_{−i}, numpy float64.

The per-sample baselines run on a subset of ``--subset`` samples and are extrapolated linearly
to n from the median time per sample (their cost is identical for every sample). The fast path
is timed cold (first call, with compilation) and warm (best of two further calls). The relative error of the fast path is measured
against the eigendecomposition baseline on that subset.

    .venv/bin/python benchmarks/bench_sui.py [--n 1000] [--subset 8] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import jaxinfo  # noqa: E402
from jaxinfo.linearize import kernel_matrix  # noqa: E402
from _timing import parse_with_platform  # noqa: E402


def mlp(params, x):
    h = jax.nn.relu(x @ params["w1"] / np.sqrt(x.shape[1]) + params["b1"])
    return h @ params["w2"] / np.sqrt(h.shape[1]) + params["b2"]


def setup(n, m, d=64, width=1024, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    xr = rng.normal(size=(m, d))
    beta = rng.normal(size=d)
    y = (x @ beta > 0).astype(np.float64)[:, None]
    params = {"w1": jnp.asarray(rng.normal(size=(d, width))),
              "b1": jnp.asarray(0.1 * rng.normal(size=width)),
              "w2": jnp.asarray(rng.normal(size=(width, 1))),
              "b2": jnp.zeros((1,))}
    t0 = time.perf_counter()
    theta = np.asarray(kernel_matrix(jaxinfo.empirical_ntk(mlp, params, jnp.asarray(x),
                                                           trace_axes=(), batch_size=250)))
    theta_ref = np.asarray(kernel_matrix(jaxinfo.empirical_ntk(
        mlp, params, jnp.asarray(xr), jnp.asarray(x), trace_axes=(), batch_size=250)))
    t_ntk = time.perf_counter() - t0
    r0 = np.asarray(mlp(params, jnp.asarray(x))) - y
    return theta, theta_ref, r0.reshape(-1), t_ntk


def full_alpha(theta, r0, eta, t):
    s, u = np.linalg.eigh(theta)
    g = 1 / s if t is None else (1 - (1 - eta * s) ** t) / s
    return -u @ (g * (u.T @ r0))


def baseline(theta, theta_ref, r0, lr, t, samples, how):
    """Per-sample LOO: ‖Δw‖², Σ‖Δf_ref‖², seconds per sample."""
    n = theta.shape[0]
    alpha = full_alpha(theta, r0, lr / n, t)
    eta = lr / (n - 1)
    out_w, out_f, secs = [], [], []
    for i in samples:
        t0 = time.perf_counter()
        keep = np.arange(n) != i
        th, r = theta[np.ix_(keep, keep)], r0[keep]
        if how == "power":
            inv = np.linalg.inv(th)  # as the official code
            if t is None:
                a = -inv @ r
            else:
                step = np.eye(n - 1) - eta * th
                e = np.eye(n - 1)
                p = int(t)
                while p:  # repeated squaring
                    if p & 1:
                        e = e @ step
                    step = step @ step
                    p >>= 1
                a = -inv @ (r - e @ r)
        else:
            s, u = np.linalg.eigh(th)
            g = 1 / s if t is None else (1 - (1 - eta * s) ** t) / s
            a = -u @ (g * (u.T @ r))
        d = -alpha.copy()
        d[keep] += a
        out_w.append(d @ theta @ d)
        out_f.append(np.sum((theta_ref @ d) ** 2))
        secs.append(time.perf_counter() - t0)
    return np.array(out_w), np.array(out_f), float(np.median(secs))  # median: shared machine


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--m", type=int, default=1000, help="reference inputs")
    ap.add_argument("--subset", type=int, default=8)
    ap.add_argument("--t", type=str, default="inf,2000")
    ap.add_argument("--eta-lmax", type=float, default=1.0,
                    help="step size as η·λ_max(Θ) (lr = eta_lmax·n/λ_max)")
    ap.add_argument("--json", type=str, default=None)
    args = parse_with_platform(ap)

    theta, theta_ref, r0, t_ntk = setup(args.n, args.m)
    n = args.n
    s = np.linalg.eigvalsh(theta)
    lr = args.eta_lmax * n / s[-1]  # default η·λ_max = 1: a large step, hardest for Krylov
    samples = np.linspace(0, n - 1, args.subset).astype(int)
    print(f"n={n} m={args.m} NTK {t_ntk:.1f}s  λ(Θ) in [{s[0]:.3g}, {s[-1]:.3g}]  lr={lr:.4g} "
          f"(η·λ_max = {args.eta_lmax:g})  cpu={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    rows = []
    for tt in args.t.split(","):
        t = None if tt == "inf" else int(tt)
        kw = dict(theta_ref=theta_ref, reduction="sum", progress=False)
        dyn = jaxinfo.GradientDescent(lr=lr, t=t)
        t0 = time.perf_counter()
        res = jaxinfo.unique_information_from_kernel(theta, r0[:, None], dyn, **kw)
        cold = time.perf_counter() - t0
        warm = np.inf
        for _ in range(2):  # best of two warm runs (the machine is shared)
            t0 = time.perf_counter()
            res = jaxinfo.unique_information_from_kernel(theta, r0[:, None], dyn, **kw)
            warm = min(warm, time.perf_counter() - t0)
        w_e, f_e, sec_e = baseline(theta, theta_ref, r0, lr, t, samples, "eigh")
        w_p, f_p, sec_p = baseline(theta, theta_ref, r0, lr, t, samples, "power")
        err_w = np.max(np.abs(res.weight_change_sq[samples] - w_e) / np.abs(w_e))
        err_f = np.max(np.abs(res.function_change_sq[samples] - f_e) / np.abs(f_e))
        err_pw = np.max(np.abs(w_p - w_e) / np.abs(w_e))
        row = dict(t=tt, method=res.method, iterations=res.iterations, fast_cold_s=cold,
                   fast_warm_s=warm, power_s=sec_p * n, eigh_s=sec_e * n,
                   speedup_vs_power=sec_p * n / warm, speedup_vs_eigh=sec_e * n / warm,
                   rel_err_weight=err_w, rel_err_function=err_f, power_vs_eigh_rel=err_pw,
                   alpha_abs_bound_max=(float(np.max(res.alpha_error_bound)) if res.iterations
                                      else 0.0))
        rows.append(row)
        print(json.dumps(row))
    print()
    print("| t | fast method | fast (warm) s | fast (cold) s | per-sample power s (extrap.) | "
          "per-sample eigh s (extrap.) | × vs power | × vs eigh | rel. err ‖Δw‖² | "
          "rel. err ‖Δf‖² |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        meth = r["method"] + (f" (m={r['iterations']})" if r["iterations"] else "")
        print(f"| {r['t']} | {meth} | {r['fast_warm_s']:.2f} | {r['fast_cold_s']:.2f} | "
              f"{r['power_s']:.0f} | {r['eigh_s']:.0f} | {r['speedup_vs_power']:.0f} | "
              f"{r['speedup_vs_eigh']:.0f} | {r['rel_err_weight']:.1e} | "
              f"{r['rel_err_function']:.1e} |")
    meta = dict(n=n, m=args.m, subset=args.subset, ntk_s=t_ntk, lr=lr,
                eig_min=float(s[0]), eig_max=float(s[-1]), machine=platform.platform(),
                processor=platform.processor(), cpus=os.cpu_count(),
                jax=jax.__version__, rows=rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()

"""Structured-derivatives NTK vs jaxinfo's per-sample Jacobian contraction.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_ntk_structured.py [--n 1024] [--repeats 3]``

Models (float32, CPU unless JAX finds an accelerator):

- ``wide``: MLP 196-1024-1 (relu, biases), ``Θ(x, x)`` ``[n, n]``, ``n = --n``;
- ``tanh3``: 3-layer tanh MLP 64-256-256-5 (biases), ``trace_axes=()`` → ``[256, 256, 5, 5]``.

For each, the wall time (best of ``--repeats``, after one compile run) of
``empirical_ntk(..., implementation="jacobian")`` and of ``structured_ntk``, their ratio, the
maximum relative difference ``max|Θ_s − Θ_j| / max|Θ_j|``, and the cost model's multiply-add
estimates (``structured_cost``) with how each parameter leaf is handled (kind/contraction form).
"""
from __future__ import annotations

import argparse
import platform

import jax
import jax.numpy as jnp
import numpy as np
from _timing import best_time, parse_with_platform

from jaxinfo.ntk import empirical_ntk
from jaxinfo.ntk_structured import structured_cost, structured_ntk


def mlp(key, sizes, act):
    keys = jax.random.split(key, len(sizes) - 1)
    params = [{"w": jax.random.normal(k, (a, b)) / np.sqrt(a), "b": 0.1 * jnp.ones(b)}
              for k, a, b in zip(keys, sizes[:-1], sizes[1:])]

    def apply_fn(p, x):
        for layer in p[:-1]:
            x = act(x @ layer["w"] + layer["b"])
        return x @ p[-1]["w"] + p[-1]["b"]

    return apply_fn, params


def row(name, apply_fn, params, shape, trace, repeats):
    x = jax.random.normal(jax.random.PRNGKey(1), shape)

    def jac():
        return empirical_ntk(apply_fn, params, x, trace_axes=trace, implementation="jacobian")

    def st():
        return structured_ntk(apply_fn, params, x, trace_axes=trace)

    want, got = jac(), st()
    diff = float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))
    t_jac = best_time(jac, repeats)
    t_st = best_time(st, repeats)
    cost = structured_cost(apply_fn, params, shape, trace_axes=trace)
    return (f"{name:20} {shape[0]:5d} {tuple(got.shape)!s:>18} {t_jac:11.3f} {t_st:13.4f} "
            f"{t_jac / t_st:7.1f} {diff:12.2e} {cost.flops_jacobian:9.2e} "
            f"{cost.flops_structured:9.2e}\n#   leaves: " +
            ", ".join(f"{c.path} {c.kind}/{c.form}" for c in cost.leaves))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024, help="samples for the wide MLP")
    ap.add_argument("--repeats", type=int, default=3)
    args = parse_with_platform(ap)

    cases = [("wide 196-1024-1", mlp(jax.random.PRNGKey(0), [196, 1024, 1], jax.nn.relu),
              (args.n, 196), (-1,)),
             ("tanh3 64-256-256-5", mlp(jax.random.PRNGKey(0), [64, 256, 256, 5], jnp.tanh),
              (256, 64), ())]
    print(f"# machine: {platform.processor() or platform.machine()}, "
          f"{jax.devices()[0].device_kind}, jax {jax.__version__}")
    print(f"{'model':20} {'n':>5} {'out':>18} {'jacobian s':>11} {'structured s':>13} "
          f"{'ratio':>7} {'max rel diff':>12} {'MACs jac':>9} {'MACs str':>9}")
    for name, (apply_fn, params), shape, trace in cases:
        print(row(name, apply_fn, params, shape, trace, args.repeats), flush=True)


if __name__ == "__main__":
    main()

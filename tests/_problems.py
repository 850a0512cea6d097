"""Small problems shared by several test modules."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def tanh_mlp(params, x):
    """``tanh(x W1 + b1) W2``: ``[n, din] → [n, k]``."""
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return h @ params["w2"]


def tanh_mlp_problem(n=26, din=5, width=16, k=2, m=6, seed=0, dtype=jnp.float64):
    """Parameters of :func:`tanh_mlp` (P = din·width + width + width·k), ``x [n, din]``,
    targets ``y [n, k]`` and reference inputs ``xr [m, din]``, from one seed."""
    r = np.random.default_rng(seed)
    params = {"w1": jnp.asarray(r.normal(size=(din, width)) / np.sqrt(din), dtype),
              "b1": jnp.asarray(0.1 * r.normal(size=width), dtype),
              "w2": jnp.asarray(r.normal(size=(width, k)) / np.sqrt(width), dtype)}
    x = jnp.asarray(r.normal(size=(n, din)), dtype)
    y = jnp.asarray(r.normal(size=(n, k)), dtype)
    xr = jnp.asarray(r.normal(size=(m, din)), dtype)
    return params, x, y, xr

"""Unique information from float32 models (JAX's default dtype) must still be right.

The leave-one-out changes are differences of nearly equal solutions; the engine runs them in
float64 by default. Reference: brute-force leave-one-out of the linearized network in float64.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxinfo
from jaxinfo.train import MLP
from jaxinfo import GradientDescent, LOOSolver


def problem(dtype):
    data = jaxinfo.load_mnist(classes=[4, 9], size=14, relabel=True)
    x = jnp.asarray(data.x[::25], dtype)  # 40 images, both classes
    y = jnp.asarray(data.y[::25, None], dtype)
    x_ref = jnp.asarray(data.x[7::50], dtype)
    model = MLP(hidden=(512,), num_classes=1)
    params = model.init(jax.random.PRNGKey(0), x[:1])["params"]
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)

    def apply_fn(p, xb):
        return model.apply({"params": p}, xb)

    return apply_fn, params, x, y, x_ref


@pytest.mark.parametrize("t", [2000, None])
def test_float32_inputs_match_float64_bruteforce(t):
    apply_fn, params, x, y, x_ref = problem(jnp.float32)
    kw = dict(dynamics=GradientDescent(lr=0.01, t=t, weight_decay=1e-3))
    fast = jaxinfo.unique_information(apply_fn, params, x, y, x_ref, progress=False, **kw)
    assert fast.functional_si.dtype == np.float64
    with jax.enable_x64(True):
        ref = jaxinfo.linearized_loo(*problem(jnp.float64), progress=False, **kw)
    for got, want in ((fast.function_change_sq, ref.function_change_sq),
                      (fast.weight_change_sq, ref.weight_change_sq)):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-3 * np.max(want))


def test_dtype_argument_checked():
    apply_fn, params, x, y, x_ref = problem(jnp.float32)
    with pytest.raises(ValueError, match="dtype"):
        LOOSolver(dtype="float16")

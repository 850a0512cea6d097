"""Empirical NTK against an explicit ``jax.jacobian`` contraction (float64)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import jaxinfo
from jaxinfo.ntk import empirical_ntk, ntk_vector_product

pytestmark = pytest.mark.usefixtures("x64")


# ------------------------------------------------------------------ models


def mlp_model(key, d=5, width=7, k=3):
    k1, k2, k3 = jax.random.split(key, 3)
    params = {"w1": jax.random.normal(k1, (d, width)) / np.sqrt(d),
              "b1": 0.1 * jax.random.normal(k3, (width,)),
              "w2": jax.random.normal(k2, (width, k)) / np.sqrt(width)}

    def apply_fn(p, x):
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"]

    return apply_fn, params


def cnn_model(key, pool=True):
    """A small convnet on [n, 6, 6, 2] images; outputs [n, 2] (pooled) or [n, 3, 3, 2]."""
    k1, k2 = jax.random.split(key)
    params = {"c1": 0.5 * jax.random.normal(k1, (3, 3, 2, 4)),
              "c2": 0.5 * jax.random.normal(k2, (2, 2, 4, 2))}

    def apply_fn(p, x):
        dn = ("NHWC", "HWIO", "NHWC")
        h = jax.nn.relu(jax.lax.conv_general_dilated(x, p["c1"], (1, 1), "SAME",
                                                     dimension_numbers=dn))
        h = jax.lax.conv_general_dilated(h, p["c2"], (2, 2), "VALID", dimension_numbers=dn)
        return h.mean(axis=(1, 2)) if pool else h

    return apply_fn, params


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.gelu(nn.Dense(6)(x)))


class NNXMLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(5, 6, rngs=rngs)
        self.l2 = nnx.Linear(6, 3, rngs=rngs)

    def __call__(self, x):
        return self.l2(nnx.gelu(self.l1(x)))


def to_f64(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


def linen_model(key):
    module = LinenMLP()
    apply_fn, params = jaxinfo.flax_apply(module, module.init(key, jnp.ones((1, 5))))
    return apply_fn, to_f64(params)


def nnx_model(key):
    apply_fn, params = jaxinfo.flax_apply(NNXMLP(nnx.Rngs(int(key[-1]))))
    return apply_fn, to_f64(params)


# ------------------------------------------------------------------ reference


def full_kernel(apply_fn, params, x1, x2):
    """[n1, *out, n2, *out] from jax.jacobian of the whole batch (not per sample)."""
    j1 = jax.jacobian(lambda p: apply_fn(p, x1))(params)
    j2 = jax.jacobian(lambda p: apply_fn(p, x2))(params)
    out1 = apply_fn(params, x1).shape
    out2 = apply_fn(params, x2).shape
    total = 0.0
    for a, b in zip(jax.tree_util.tree_leaves(j1), jax.tree_util.tree_leaves(j2)):
        a = np.asarray(a).reshape(int(np.prod(out1)), -1)
        b = np.asarray(b).reshape(int(np.prod(out2)), -1)
        total = total + a @ b.T
    return total.reshape(out1 + out2)


# Hand-written einsums of the neural-tangents axis semantics, per output rank.
CASES_2D = {  # outputs [n, k]: full kernel 'akbl'
    ((-1,), ()): "akbk->ab",
    ((), ()): "akbl->abkl",
    ((), (-1,)): "akbk->abk",
    ((-1,), (0,)): "akak->a",
    ((), (0,)): "akal->akl",
    ((1,), ()): "akbk->ab",
}
CASES_4D = {  # outputs [n, h, w, c]: full kernel 'ahwcbHWC'
    ((-1,), ()): "ahwcbHWc->abhHwW",
    ((), ()): "ahwcbHWC->abhHwWcC",
    ((1, 2), ()): "ahwcbhwC->abcC",
    ((-1,), (1, 2)): "ahwcbhwc->abhw",
    ((1, 2, 3), (0,)): "ahwcahwc->a",
}


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


MODELS = {"mlp": mlp_model, "cnn": cnn_model, "linen": linen_model, "nnx": nnx_model}


def inputs_for(name, key, n):
    shape = (n, 6, 6, 2) if name == "cnn" else (n, 5)
    return jax.random.normal(key, shape)


MODEL_AXES = ([("mlp", axes) for axes in CASES_2D]
              + [(name, axes) for name in ("cnn", "linen", "nnx")
                 for axes in (((-1,), ()), ((), ()), ((), (0,)))])


@pytest.mark.parametrize("implementation", ["jacobian", "ntvp"])
@pytest.mark.parametrize("name,axes", MODEL_AXES)
def test_matches_explicit_jacobian(name, implementation, axes):
    key = jax.random.PRNGKey(0)
    apply_fn, params = MODELS[name](key)
    x1 = inputs_for(name, jax.random.PRNGKey(1), 5)
    x2 = x1 if 0 in axes[1] else inputs_for(name, jax.random.PRNGKey(2), 4)
    ref = np.einsum(CASES_2D[axes], full_kernel(apply_fn, params, x1, x2))
    got = empirical_ntk(apply_fn, params, x1, None if 0 in axes[1] else x2, trace_axes=axes[0],
                        diagonal_axes=axes[1], implementation=implementation)
    assert got.dtype == jnp.float64
    assert got.shape == ref.shape
    assert rel_err(got, ref) <= 1e-10


@pytest.mark.parametrize("implementation", ["jacobian", "ntvp"])
@pytest.mark.parametrize("axes", list(CASES_4D))
def test_spatial_outputs_axes(implementation, axes):
    apply_fn, params = cnn_model(jax.random.PRNGKey(3), pool=False)
    x1 = inputs_for("cnn", jax.random.PRNGKey(4), 3)
    x2 = x1 if 0 in axes[1] else inputs_for("cnn", jax.random.PRNGKey(5), 2)
    ref = np.einsum(CASES_4D[axes], full_kernel(apply_fn, params, x1, x2))
    got = empirical_ntk(apply_fn, params, x1, x2, trace_axes=axes[0], diagonal_axes=axes[1],
                        implementation=implementation)
    assert got.shape == ref.shape
    assert rel_err(got, ref) <= 1e-10


@pytest.mark.parametrize("trace_axes,diagonal_axes", [((-1,), ()), ((), ()), ((), (0,))])
@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_blockwise_equals_unblocked(trace_axes, diagonal_axes, batch_size):
    apply_fn, params = mlp_model(jax.random.PRNGKey(6))
    x1 = inputs_for("mlp", jax.random.PRNGKey(7), 7)
    x2 = None if diagonal_axes else inputs_for("mlp", jax.random.PRNGKey(8), 5)
    kw = dict(trace_axes=trace_axes, diagonal_axes=diagonal_axes)
    whole = empirical_ntk(apply_fn, params, x1, x2, implementation="jacobian", **kw)
    for impl in ("jacobian", "ntvp", "auto"):
        blocked = empirical_ntk(apply_fn, params, x1, x2, implementation=impl,
                                batch_size=batch_size, **kw)
        assert rel_err(blocked, whole) <= 1e-12, impl


def test_auto_falls_back_to_ntvp_and_blocks_under_budget():
    apply_fn, params = mlp_model(jax.random.PRNGKey(9))
    x = inputs_for("mlp", jax.random.PRNGKey(10), 6)
    ref = empirical_ntk(apply_fn, params, x, implementation="jacobian")
    per_sample = 3 * sum(p.size for p in jax.tree_util.tree_leaves(params)) * 8
    tiny = empirical_ntk(apply_fn, params, x, memory_budget=per_sample)  # -> ntvp
    blocks = empirical_ntk(apply_fn, params, x, memory_budget=5 * per_sample)  # -> blocks of 2
    assert rel_err(tiny, ref) <= 1e-12
    assert rel_err(blocks, ref) <= 1e-12


def test_symmetric_psd_and_under_jit():
    apply_fn, params = mlp_model(jax.random.PRNGKey(11))
    x = inputs_for("mlp", jax.random.PRNGKey(12), 6)
    theta = empirical_ntk(apply_fn, params, x)
    np.testing.assert_allclose(theta, theta.T, rtol=1e-13, atol=1e-13)
    assert np.linalg.eigvalsh(np.asarray(theta)).min() > -1e-10
    jitted = jax.jit(lambda p, x: empirical_ntk(apply_fn, p, x, implementation="ntvp"))
    assert rel_err(jitted(params, x), theta) <= 1e-12


def test_ntk_vector_product():
    apply_fn, params = mlp_model(jax.random.PRNGKey(13))
    x1 = inputs_for("mlp", jax.random.PRNGKey(14), 4)
    x2 = inputs_for("mlp", jax.random.PRNGKey(15), 5)
    v = jax.random.normal(jax.random.PRNGKey(16), (5, 3))
    full = full_kernel(apply_fn, params, x1, x2)  # [4, 3, 5, 3]
    ref = np.einsum("akbl,bl->ak", full, v)
    assert rel_err(ntk_vector_product(apply_fn, params, x1, x2, v), ref) <= 1e-12


def test_bad_input_errors():
    apply_fn, params = mlp_model(jax.random.PRNGKey(17))
    x = inputs_for("mlp", jax.random.PRNGKey(18), 4)
    with pytest.raises(ValueError, match="x1"):
        empirical_ntk(apply_fn, params, x.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="x2"):
        empirical_ntk(apply_fn, params, x, x.at[1, 1].set(jnp.inf))
    bad = dict(params, w1=params["w1"].at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="params"):
        empirical_ntk(apply_fn, bad, x)
    with pytest.raises(ValueError, match="feature shape"):
        empirical_ntk(apply_fn, params, x, x[:, :4])
    with pytest.raises(ValueError, match="trace_axes"):
        empirical_ntk(apply_fn, params, x, trace_axes=(5,))
    with pytest.raises(ValueError, match="both traced and diagonal"):
        empirical_ntk(apply_fn, params, x, trace_axes=(-1,), diagonal_axes=(1,))
    with pytest.raises(ValueError, match="len\\(x1\\) == len\\(x2\\)"):
        empirical_ntk(apply_fn, params, x, x[:2], diagonal_axes=(0,))
    with pytest.raises(ValueError, match="implementation"):
        empirical_ntk(apply_fn, params, x, implementation="magic")
    with pytest.raises(ValueError, match="batch_size"):
        empirical_ntk(apply_fn, params, x, batch_size=0)
    with pytest.raises(TypeError, match="flax"):
        jaxinfo.flax_apply(apply_fn)


@pytest.mark.parametrize("axes", [((-1,), ()), ((), ()), ((), (-1,))])
def test_symmetric_block_triangle(axes):
    """Θ(x, x) for n ≥ 64 is contracted block-triangularly; it must equal the full product."""
    apply_fn, params = mlp_model(jax.random.PRNGKey(19), width=4)
    x = inputs_for("mlp", jax.random.PRNGKey(20), 70)  # 4 parts of 18 rows, 2 padded
    ref = np.einsum(CASES_2D[axes], full_kernel(apply_fn, params, x, x))
    got = empirical_ntk(apply_fn, params, x, trace_axes=axes[0], diagonal_axes=axes[1],
                        implementation="jacobian")
    assert got.shape == ref.shape
    assert rel_err(got, ref) <= 1e-10

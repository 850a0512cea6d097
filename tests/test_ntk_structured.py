"""Structured-derivatives NTK against the per-sample Jacobian contraction (float64)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import linen as nn

import jaxinfo
import jaxinfo.ntk_structured as ns
from jaxinfo.ntk import empirical_ntk
from jaxinfo.ntk_structured import structured_cost, structured_ntk

pytestmark = pytest.mark.usefixtures("x64")

RTOL = 1e-10


def to_f64(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


def normal(key, shape, scale=1.0):
    return scale * jax.random.normal(key, shape, jnp.float64)


# ------------------------------------------------------------------ models


def dict_mlp(key, d=4, width=6, k=3):
    """tanh MLP with biases; the first weight enters transposed, the second is the *left*
    operand of its matmul."""
    ks = jax.random.split(key, 5)
    params = {"w1t": normal(ks[0], (width, d), d ** -0.5), "b1": normal(ks[1], (width,), 0.1),
              "w2t": normal(ks[2], (k, width), width ** -0.5), "b2": normal(ks[3], (k,), 0.1)}

    def apply_fn(p, x):
        h = jnp.tanh(jnp.dot(x, p["w1t"].T) + p["b1"])
        return (p["w2t"] @ h.T).T + p["b2"]

    return apply_fn, params, (d,)


def dict_heads(key, heads=2, d=3, k=2):
    """Per-head weights (a dot_general with batch dims), a dilated conv, a weight with a unit
    axis added, a param used twice."""
    ks = jax.random.split(key, 4)
    params = {"c": normal(ks[0], (2, 2, 1, 2), 0.5), "wh": normal(ks[1], (heads, d, k), 0.5),
              "wb": normal(ks[3], (k, k), 0.5), "s": normal(ks[2], (k,), 0.5)}

    def apply_fn(p, x):  # x: [n, 5, 5, 1]
        h = jax.lax.conv_general_dilated(x, p["c"], (1, 1), ((1, 1), (0, 1)), rhs_dilation=(2, 1),
                                         lhs_dilation=(1, 2),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = jnp.tanh(h.reshape(x.shape[0], -1)[:, :heads * d].reshape(-1, heads, d))
        y = jnp.tanh(jnp.einsum("nhd,hdk->nhk", h, p["wh"]).sum(1))
        wb = jax.lax.broadcast_in_dim(p["wb"], (1, k, k), (1, 2))
        y = jax.lax.dot_general(y, wb, (((1,), (1,)), ((), ())))[:, 0]
        return y * p["s"] + jnp.sin(p["s"])

    return apply_fn, params, (5, 5, 1)


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.gelu(nn.Dense(5)(x)))


class LinenCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(3, (3, 3), padding="SAME")(x))
        x = nn.tanh(nn.Conv(2, (3, 3), strides=2, padding="VALID")(x))
        return nn.Dense(2)(x.reshape(x.shape[0], -1))


class ResBlock(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Conv(2, (3, 3))(x)
        h = nn.relu(nn.BatchNorm(use_running_average=True)(h))
        h = nn.Conv(2, (3, 3))(h)
        return nn.Dense(2)((nn.relu(h + x)).mean((1, 2)))


class Shared(nn.Module):
    """One Dense layer applied twice (its kernel is used twice: Jacobian fallback)."""
    @nn.compact
    def __call__(self, x):
        layer = nn.Dense(3)
        return nn.Dense(2)(layer(jnp.tanh(layer(x))))


def linen(module, shape):
    def build(key):
        variables = module.init(key, jnp.ones((1,) + shape))
        if "batch_stats" in variables:  # frozen, non-trivial statistics
            k1, k2 = jax.random.split(jax.random.fold_in(key, 1))
            stats = variables["batch_stats"]["BatchNorm_0"]
            variables = {**variables, "batch_stats": {"BatchNorm_0": {
                "mean": 0.3 * jax.random.normal(k1, stats["mean"].shape),
                "var": 1.0 + jax.random.uniform(k2, stats["var"].shape)}}}
        apply_fn, params = jaxinfo.flax_apply(module, to_f64(variables))
        # non-trivial BN scale/bias so that their (fallback) contributions are tested
        params = jax.tree_util.tree_map(lambda a: a + 0.1 * normal(jax.random.fold_in(key, 2),
                                                                    a.shape), params)
        return apply_fn, params, shape
    return build


MODELS = {"dict_mlp": dict_mlp, "dict_heads": dict_heads,
          "linen_mlp": linen(LinenMLP(), (4,)), "linen_cnn": linen(LinenCNN(), (6, 6, 2)),
          "resnet": linen(ResBlock(), (4, 4, 2)), "tied": linen(Shared(), (3,))}


def setup(name, n1=4, n2=3):
    apply_fn, params, shape = MODELS[name](jax.random.PRNGKey(0))
    x1 = normal(jax.random.PRNGKey(1), (n1,) + shape)
    x2 = normal(jax.random.PRNGKey(2), (n2,) + shape)
    return apply_fn, params, x1, x2


def assert_close(got, want):
    assert got.shape == want.shape
    assert got.dtype == jnp.float64
    err = float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))
    assert err <= RTOL, err


# ------------------------------------------------------------------ equality

AXES = [dict(), dict(trace_axes=()), dict(diagonal_axes=(0,)),
        dict(trace_axes=(), diagonal_axes=(0,)), dict(trace_axes=(), diagonal_axes=(-1,))]


@pytest.mark.parametrize("axes", AXES, ids=lambda kw: str(kw).replace(" ", ""))
@pytest.mark.parametrize("name", list(MODELS))
def test_matches_jacobian_contraction(name, axes):
    apply_fn, params, x1, x2 = setup(name)
    for other in (None, x2):
        if other is not None and 0 in axes.get("diagonal_axes", ()):
            continue
        want = empirical_ntk(apply_fn, params, x1, other, implementation="jacobian", **axes)
        assert_close(structured_ntk(apply_fn, params, x1, other, **axes), want)


def test_output_shapes():
    apply_fn, params, x1, x2 = setup("dict_mlp")
    assert structured_ntk(apply_fn, params, x1, x2).shape == (4, 3)
    assert structured_ntk(apply_fn, params, x1, x2, trace_axes=()).shape == (4, 3, 3, 3)
    assert structured_ntk(apply_fn, params, x1, diagonal_axes=(0,)).shape == (4,)


@pytest.mark.parametrize("name", ["dict_heads", "linen_cnn"])
@pytest.mark.parametrize("form", ["gram", "jacobian"])
def test_both_contraction_orders(name, form, monkeypatch):
    monkeypatch.setattr(ns, "_choose", lambda forms, budget: form)
    apply_fn, params, x1, x2 = setup(name)
    for kw in (dict(), dict(trace_axes=())):
        want = empirical_ntk(apply_fn, params, x1, x2, implementation="jacobian", **kw)
        assert_close(structured_ntk(apply_fn, params, x1, x2, **kw), want)


def test_jit():
    apply_fn, params, x1, x2 = setup("linen_cnn")
    fn = jax.jit(lambda p, a, b: structured_ntk(apply_fn, p, a, b, trace_axes=()))
    want = empirical_ntk(apply_fn, params, x1, x2, trace_axes=(), implementation="jacobian")
    assert_close(fn(params, x1, x2), want)
    fn_sym = jax.jit(lambda p, a: structured_ntk(apply_fn, p, a))
    assert_close(fn_sym(params, x1), empirical_ntk(apply_fn, params, x1,
                                                   implementation="jacobian"))


# ------------------------------------------------------------------ plan and cost


def kinds(name):
    apply_fn, params, x1, _ = setup(name)
    return {c.path: c.kind for c in structured_cost(apply_fn, params, x1.shape).leaves}


def test_leaf_kinds():
    assert kinds("dict_mlp") == {"['b1']": "bias", "['b2']": "bias", "['w1t']": "dense",
                                 "['w2t']": "dense"}
    assert kinds("dict_heads") == {"['c']": "conv", "['s']": "jacobian", "['wh']": "dense",
                                   "['wb']": "dense"}
    resnet = kinds("resnet")
    assert resnet["['Conv_0']['kernel']"] == resnet["['Conv_1']['kernel']"] == "conv"
    assert resnet["['Dense_0']['kernel']"] == "dense"
    assert resnet["['BatchNorm_0']['scale']"] == "jacobian"
    assert resnet["['BatchNorm_0']['bias']"] == resnet["['Conv_0']['bias']"] == "bias"
    shared = kinds("tied")
    assert shared["['Dense_0']['kernel']"] == shared["['Dense_0']['bias']"] == "jacobian"
    assert shared["['Dense_1']['kernel']"] == "dense"


def test_cost_model_wide_mlp():
    width, d = 512, 64
    params = {"w1": jnp.zeros((d, width)), "b1": jnp.zeros(width), "w2": jnp.zeros((width, 1))}

    def apply_fn(p, x):
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"]

    cost = structured_cost(apply_fn, params, (256, d), n2=256)
    assert cost.flops_structured * 10 < cost.flops_jacobian
    assert cost.bytes_structured < cost.bytes_jacobian
    p = d * width + width + width
    assert cost.flops_jacobian - cost.flops_structured == 256 * 256 * p - sum(
        c.flops for c in cost.leaves)
    symmetric = structured_cost(apply_fn, params, (256, d))  # x2 = None
    assert symmetric.flops_structured * 10 < symmetric.flops_jacobian < cost.flops_jacobian
    forms = {c.path: c.form for c in cost.leaves}
    assert forms["['w1']"] == "gram"


def test_unused_leaf_and_errors():
    params = {"w": jnp.ones((3, 2)), "unused": jnp.ones(4)}

    def apply_fn(p, x):
        return x @ p["w"]

    x = normal(jax.random.PRNGKey(0), (3, 3))
    assert_close(structured_ntk(apply_fn, params, x),
                 empirical_ntk(apply_fn, params, x, implementation="jacobian"))
    assert {c.kind for c in structured_cost(apply_fn, params, x.shape).leaves} == {
        "dense", "unused"}
    with pytest.raises(ValueError, match="batch axis"):
        structured_ntk(apply_fn, params, x, trace_axes=(0,))
    with pytest.raises(ValueError, match="len"):
        structured_ntk(apply_fn, params, x, x[:2], diagonal_axes=(0,))
    with pytest.raises(ValueError, match="feature shape"):
        structured_ntk(apply_fn, params, x, x[:, :2])

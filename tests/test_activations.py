"""Activation capture on linen and NNX models against activations computed by hand."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from jaxinfo.activations import capture_activations
from jaxinfo.data import batches


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(5)(x))
        h = nn.tanh(nn.Dense(4)(h))
        return nn.Dense(3)(h)


class LinenCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(6, (3, 3))(x))
        h = h.mean(axis=(1, 2))
        h = nn.relu(nn.Dense(4)(h))
        return nn.Dense(2)(h)


class NNXNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 3, (3, 3), rngs=rngs)
        self.hidden = nnx.Linear(3, 4, rngs=rngs)
        self.out = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.conv(x)).mean(axis=(1, 2))
        return self.out(nnx.relu(self.hidden(h)))


def test_linen_mlp_matches_manual():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(11, 7)).astype(np.float32)
    m = LinenMLP()
    v = m.init(jax.random.PRNGKey(0), x)
    acts = capture_activations(m, v, batches(x, 4))  # padded last batch dropped
    assert list(acts) == ["Dense_0", "Dense_1"]       # logits excluded
    p = v["params"]
    h0 = x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    h1 = np.maximum(h0, 0) @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]  # pre-tanh
    np.testing.assert_allclose(acts["Dense_0"], h0, atol=1e-5)
    np.testing.assert_allclose(acts["Dense_1"], h1, atol=1e-5)
    # dict batches without masks, explicit layer choice (logits allowed)
    acts2 = capture_activations(m, v, [{"x": x[:6]}, {"x": x[6:]}], layers=["Dense_2"])
    np.testing.assert_allclose(acts2["Dense_2"], m.apply(v, x), atol=1e-5)


def test_linen_conv_pooled_per_channel():
    x = np.random.default_rng(1).normal(size=(5, 6, 6, 1)).astype(np.float32)
    m = LinenCNN()
    v = m.init(jax.random.PRNGKey(0), x)
    acts = capture_activations(m, v, batches(x, 2))
    assert list(acts) == ["Conv_0", "Dense_0"]
    p = v["params"]["Conv_0"]
    conv = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["bias"]
    np.testing.assert_allclose(acts["Conv_0"], np.asarray(conv).mean(axis=(1, 2)), atol=1e-5)
    assert acts["Conv_0"].shape == (5, 6)


def test_nnx_matches_manual():
    x = np.random.default_rng(2).normal(size=(9, 6, 6, 1)).astype(np.float32)
    model = NNXNet(nnx.Rngs(0))
    acts = capture_activations(model, None, batches(x, 4))
    assert list(acts) == ["conv", "hidden"]
    conv = np.asarray(model.conv(jnp.asarray(x))).mean(axis=(1, 2))
    pooled_relu = np.asarray(nnx.relu(model.conv(jnp.asarray(x)))).mean(axis=(1, 2))
    hid = pooled_relu @ np.asarray(model.hidden.kernel[...]) + np.asarray(model.hidden.bias[...])
    np.testing.assert_allclose(acts["conv"], conv, atol=1e-5)
    np.testing.assert_allclose(acts["hidden"], hid, atol=1e-5)


def test_errors():
    x = np.ones((4, 7), np.float32)
    m = LinenMLP()
    v = m.init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="not found"):
        capture_activations(m, v, x, layers=["nope"])
    with pytest.raises(ValueError, match="at least one batch"):
        capture_activations(m, v, [])
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        capture_activations(m, v, bad)
    with pytest.raises(TypeError, match="module_or_apply_fn"):
        capture_activations(3, v, x)


def test_iterator_equals_array_and_labels_are_not_masks():
    """(x, labels) tuples were once read as (x, mask) and silently lost rows: now a TypeError."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 7)).astype(np.float32)
    y = rng.integers(0, 2, 10)
    m = LinenMLP()
    v = m.init(jax.random.PRNGKey(0), x)
    ref = capture_activations(m, v, x)
    gen = ({"x": x[i:i + 3], "y": y[i:i + 3]} for i in range(0, 10, 3))
    streamed = capture_activations(m, v, gen)
    for name in ref:
        assert streamed[name].shape == (10, ref[name].shape[1])
        np.testing.assert_allclose(streamed[name], ref[name], atol=1e-6)
    with pytest.raises(TypeError, match="got a tuple of length 2"):
        capture_activations(m, v, [(x, y)])
    with pytest.raises(TypeError, match="'x' entry"):
        capture_activations(m, v, [{"inputs": x}])

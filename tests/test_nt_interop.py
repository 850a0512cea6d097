"""jaxinfo's empirical NTK against kernels computed by neural-tangents itself.

``tests/data/neural_tangents/kernels.npz`` holds empirical NTKs that neural-tangents 0.6.5
computed (in its own environment; it does not import on JAX >= 0.6) for two ``stax`` models,
with their weights, inputs and outputs. Here the two models are re-implemented in plain JAX with
stax's NTK parameterization, so neural-tangents is not needed:

- ``Dense(out, W_std, b_std)``: ``y = W_std / sqrt(fan_in) * x @ W + b_std * b`` with
  ``W ~ N(0, 1)`` of shape ``[fan_in, out]`` and ``b`` of shape ``[1, out]`` (no bias term when
  ``b_std`` is ``None``, stax's default).
- ``Conv(out, (kh, kw), padding="SAME", W_std, b_std)``: NHWC inputs, HWIO filters,
  ``y = W_std / sqrt(in_channels * kh * kw) * conv(x, W) + b_std * b``, ``b`` of shape
  ``[1, 1, 1, out]``.
- ``Flatten()``: ``x.reshape(n, -1)`` (row-major over H, W, C).
- ``Erf()``: ``erf(x)``; ``Relu()``: ``max(x, 0)``.

neural-tangents averages over traced output axes (it divides the trace by the traced size);
:func:`jaxinfo.empirical_ntk` sums them. :func:`jaxinfo.empirical_ntk_fn` follows
neural-tangents' convention and signature, so it must reproduce the saved kernels as they are.
See ``tests/data/neural_tangents/README.md`` for the provenance and the key layout.
"""
from __future__ import annotations

import ast
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import erf

import jaxinfo

DATA = Path(__file__).resolve().parent / "data" / "neural_tangents" / "kernels.npz"
RTOL = 1e-10

pytestmark = pytest.mark.usefixtures("x64")


def _load() -> dict[str, np.ndarray]:
    with np.load(DATA) as f:
        return {k: f[k] for k in f.files}


REF = _load()

# (model, stax implementation, trace_axes, diagonal_axes, x2 given) for every saved kernel
CASES = []
for _row in REF["meta/index"]:
    _key, _model, _impl, _trace, _diag, _x2, _shape = str(_row).split("|")
    CASES.append((_key, _model, int(_impl), ast.literal_eval(_trace), ast.literal_eval(_diag),
                  _x2 != "None", ast.literal_eval(_shape)))
ARGS = "key,model,impl,trace,diag,x2_given,shape"


def _params_of(cases):
    return [pytest.param(*c, id=c[0]) for c in cases]


IMPL1 = [c for c in CASES if c[2] == 1]

# ----------------------------------------------------------------------------- the stax models

def _params(model: str) -> dict[int, dict[str, jax.Array]]:
    """``{layer index: {"W": ..., "b": ...}}`` from the ``<model>/params/<i>/<W|b>`` keys."""
    out: dict[int, dict[str, jax.Array]] = {}
    for k, v in REF.items():
        parts = k.split("/")
        if parts[0] == model and parts[1] == "params":
            out.setdefault(int(parts[2]), {})[parts[3]] = jnp.asarray(v)
    return out


def _dense(p, x, W_std=1.0, b_std=None):
    y = W_std / np.sqrt(x.shape[-1]) * (x @ p["W"])
    if b_std is not None:
        y = y + b_std * p["b"]
    return y


def _conv_same(p, x, W_std=1.0, b_std=None):
    kh, kw, cin, _ = p["W"].shape
    y = jax.lax.conv_general_dilated(x, p["W"], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = W_std / np.sqrt(cin * kh * kw) * y
    if b_std is not None:
        y = y + b_std * p["b"]
    return y


def _relu(x):
    return jnp.maximum(x, 0.0)


def mlp_apply(params, x):
    """stax.serial(Dense(64, 1.5, 0.1), Erf(), Dense(64, 1.5, 0.1), Relu(), Dense(5, 1.5, 0.1))."""
    h = erf(_dense(params[0], x, 1.5, 0.1))
    h = _relu(_dense(params[2], h, 1.5, 0.1))
    return _dense(params[4], h, 1.5, 0.1)


def cnn_apply(params, x):
    """stax.serial(Conv(8, (3, 3), padding="SAME", W_std=1.5, b_std=0.1), Relu(), Flatten(),
    Dense(3))."""
    h = _relu(_conv_same(params[0], x, 1.5, 0.1))
    h = h.reshape(h.shape[0], -1)
    return _dense(params[3], h)


MODELS = {"mlp": mlp_apply, "cnn": cnn_apply}


def _setup(model: str, x2_given: bool):
    params = _params(model)
    x1 = jnp.asarray(REF[f"{model}/x1"])
    x2 = jnp.asarray(REF[f"{model}/x2"]) if x2_given else None
    return MODELS[model], params, x1, x2


def _assert_kernel(got, ref):
    got = np.asarray(got)
    assert got.shape == ref.shape
    assert got.dtype == np.float64
    # rtol on every entry; near-zero entries (off-diagonal logit covariances) get an absolute
    # floor at the same relative level of the kernel's scale
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=RTOL * np.max(np.abs(ref)))


# ----------------------------------------------------------------------------- tests

def test_reference_data_is_complete():
    versions = dict(str(v).split("=", 1) for v in REF["meta/versions"])
    assert versions["neural_tangents"] == "0.6.5"
    assert REF["meta/failures"].size == 0
    # 2 models x 3 implementations x 8 (trace, diagonal, x2) combinations
    assert len(CASES) == 48
    for key, *_, shape in CASES:
        assert REF[key].shape == shape and REF[key].dtype == np.float64


@pytest.mark.parametrize("model", sorted(MODELS))
def test_apply_fn_matches_stax(model):
    apply_fn, params, x1, _ = _setup(model, False)
    np.testing.assert_allclose(apply_fn(params, x1), REF[f"{model}/fx1"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(apply_fn(params, jnp.asarray(REF[f"{model}/x2"])),
                               REF[f"{model}/fx2"], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_nt_implementations_agree(model):
    """neural-tangents' three implementations gave the same kernels (sanity of the data)."""
    for key, m, impl, *_ in CASES:
        if m == model and impl != 1:
            ref = REF[key.replace(f"/impl{impl}/", "/impl1/")]
            np.testing.assert_allclose(REF[key], ref, rtol=RTOL, atol=RTOL * np.abs(ref).max())


@pytest.mark.parametrize(ARGS, _params_of(IMPL1))
@pytest.mark.parametrize("implementation", ["jacobian", "ntvp"])
def test_sum_equals_mean_times_traced_size(key, model, impl, trace, diag, x2_given, shape,
                                           implementation):
    """:func:`jaxinfo.empirical_ntk` (sums over traced axes) = neural-tangents' kernel (averages)
    times the product of the traced output sizes."""
    apply_fn, params, x1, x2 = _setup(model, x2_given)
    out_shape = apply_fn(params, x1).shape
    size = int(np.prod([out_shape[a] for a in trace]))
    got = jaxinfo.empirical_ntk(apply_fn, params, x1, x2, trace_axes=trace,
                                diagonal_axes=diag, implementation=implementation)
    _assert_kernel(got, REF[key] * size)
    _assert_kernel(np.asarray(got) / size, REF[key])


@pytest.mark.parametrize(ARGS, _params_of(CASES))
def test_empirical_ntk_fn_matches_neural_tangents(key, model, impl, trace, diag, x2_given,
                                                  shape):
    """Same arguments, same implementation number, same call as neural-tangents."""
    apply_fn, params, x1, x2 = _setup(model, x2_given)
    ntk = jaxinfo.empirical_ntk_fn(apply_fn, trace_axes=trace, diagonal_axes=diag, vmap_axes=0,
                                   implementation=impl)
    _assert_kernel(ntk(x1, x2, params), REF[key])


@pytest.mark.parametrize(ARGS, _params_of(IMPL1))
def test_empirical_ntk_fn_auto_jit_defaults(key, model, impl, trace, diag, x2_given, shape):
    """``implementation="auto"`` under ``jax.jit``, with x2 passed positionally or as None."""
    apply_fn, params, x1, x2 = _setup(model, x2_given)
    ntk = jaxinfo.empirical_ntk_fn(apply_fn, trace_axes=trace, diagonal_axes=diag, vmap_axes=0,
                                   implementation="auto")
    _assert_kernel(jax.jit(ntk)(x1, x2, params), REF[key])

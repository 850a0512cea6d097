"""Closed-form linearized GD against explicit optax gradient descent, and the golden vectors."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import jaxinfo
from jaxinfo.linearize import kernel_dynamics, linearize, linearized_training, residual_decay
from jaxinfo import GradientDescent

pytestmark = pytest.mark.usefixtures("x64")


def mlp(key, d=4, width=16, k=1):
    k1, k2, k3 = jax.random.split(key, 3)
    params = {"w1": jax.random.normal(k1, (d, width)) / np.sqrt(d),
              "b1": 0.1 * jax.random.normal(k2, (width,)),
              "w2": jax.random.normal(k3, (width, k)) / np.sqrt(width)}

    def apply_fn(p, x):
        return jax.nn.softplus(x @ p["w1"] + p["b1"]) @ p["w2"]

    return apply_fn, params


def problem(k, n=8, m=5, seed=0):
    kx, ky, kr, kp = jax.random.split(jax.random.PRNGKey(seed), 4)
    apply_fn, params = mlp(kp, k=k)
    x = jax.random.normal(kx, (n, 4))
    y = jax.random.normal(ky, (n, k))
    x_ref = jax.random.normal(kr, (m, 4))
    return apply_fn, params, x, y, x_ref


def optax_gd(apply_fn, params, x, y, *, lr, steps, weight_decay):
    """Explicit full-batch GD on the linearized model; returns params after each step."""
    f_lin = linearize(apply_fn, params)
    w0 = params

    def loss(p):
        r = f_lin(p, x) - y
        reg = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree_util.tree_leaves(p),
                                                         jax.tree_util.tree_leaves(w0)))
        return 0.5 * jnp.mean(jnp.sum(r ** 2, axis=1)) + 0.5 * weight_decay * reg

    opt = optax.sgd(lr)

    def step(carry, _):
        p, state = carry
        updates, state = opt.update(jax.grad(loss)(p), state)
        p = optax.apply_updates(p, updates)
        return (p, state), p

    _, trajectory = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return f_lin, trajectory


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_closed_form_equals_optax_gd(k, weight_decay):
    apply_fn, params, x, y, x_ref = problem(k)
    lr, ts = 0.1, [1, 7, 40]
    res = linearized_training(apply_fn, params, x, y, x_ref, dynamics=GradientDescent(lr=lr, t=ts, weight_decay=weight_decay))
    f_lin, traj = optax_gd(apply_fn, params, x, y, lr=lr, steps=max(ts),
                           weight_decay=weight_decay)
    for j, t in enumerate(ts):
        p_t = jax.tree_util.tree_map(lambda a: a[t - 1], traj)
        closed = jax.tree_util.tree_map(lambda a: a[j], res.params)
        assert rel(ravel_pytree(closed)[0] - ravel_pytree(params)[0],
                   ravel_pytree(p_t)[0] - ravel_pytree(params)[0]) <= 1e-8
        assert rel(res.train_pred[j], f_lin(p_t, x)) <= 1e-8
        assert rel(res.ref_pred[j], f_lin(p_t, x_ref)) <= 1e-8
        # the weights reproduce the predictions through the linear model
        assert rel(f_lin(closed, x_ref), res.ref_pred[j]) <= 1e-8


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_infinite_time_is_the_fixed_point(weight_decay):
    apply_fn, params, x, y, x_ref = problem(2)
    lr = 0.1
    inf = linearized_training(apply_fn, params, x, y, x_ref, dynamics=GradientDescent(lr=lr, t=None, weight_decay=weight_decay))
    late = linearized_training(apply_fn, params, x, y, x_ref, dynamics=GradientDescent(lr=lr, t=200000, continuous=True, weight_decay=weight_decay))
    assert rel(inf.ref_pred, late.ref_pred) <= 1e-8
    if weight_decay == 0.0:  # interpolation: training residual vanishes
        np.testing.assert_allclose(inf.train_pred[0], y, atol=1e-8)


@pytest.mark.parametrize("k", [1, 3])
def test_continuous_is_limit_of_small_steps(k):
    apply_fn, params, x, y, x_ref = problem(k)
    lr, t, m = 0.1, 20.0, 2000
    cont = linearized_training(apply_fn, params, x, y, x_ref, dynamics=GradientDescent(lr=lr, t=t, continuous=True, weight_decay=0.01))
    disc = linearized_training(apply_fn, params, x, y, x_ref, dynamics=GradientDescent(lr=lr / m, t=int(t * m), weight_decay=0.01))
    f0 = apply_fn(params, x_ref)
    assert rel(disc.ref_pred - f0, cont.ref_pred - f0) <= 1e-3


def test_linearize_is_first_order_taylor():
    apply_fn, params, x, _, _ = problem(3)
    f_lin = linearize(apply_fn, params)
    np.testing.assert_allclose(f_lin(params, x), apply_fn(params, x), rtol=1e-14)
    delta = jax.tree_util.tree_map(lambda a: 0.01 * jnp.ones_like(a), params)
    moved = jax.tree_util.tree_map(jnp.add, params, delta)
    jac = jax.jacobian(lambda p: apply_fn(p, x))(params)
    jd = sum(jnp.tensordot(j, d, axes=d.ndim) for j, d in
             zip(jax.tree_util.tree_leaves(jac), jax.tree_util.tree_leaves(delta)))
    np.testing.assert_allclose(f_lin(moved, x), apply_fn(params, x) + jd, rtol=1e-12)


def test_spectral_gain_small_eigenvalue_limit():
    s = jnp.array([0.0, 1e-12, 1e-6, 1.0, 150.0])
    for continuous in (False, True):
        g = jaxinfo.spectral_gain(s, jnp.array([10.0]), eta=0.01, continuous=continuous)[0]
        if continuous:
            exact = np.where(s == 0, 0.1, -np.expm1(-0.1 * np.asarray(s)) / np.where(s == 0, 1, s))
        else:
            exact = np.array([0.1, 0.1, 0.1 * (1 - 4.5e-8), (1 - 0.99 ** 10) / 1.0,
                              (1 - (1 - 1.5) ** 10) / 150.0])
        np.testing.assert_allclose(g, exact, rtol=1e-7)


# ------------------------------------------------------------------ golden vectors


def golden_model(golden):
    inp = golden("inputs")
    params = {"Dense_0": {"kernel": jnp.asarray(inp["flax_dense0_kernel"], jnp.float64),
                          "bias": jnp.asarray(inp["flax_dense0_bias"], jnp.float64)},
              "Dense_1": {"kernel": jnp.asarray(inp["flax_dense1_kernel"], jnp.float64),
                          "bias": jnp.asarray(inp["flax_dense1_bias"], jnp.float64)}}

    def apply_fn(p, x):
        h = jax.nn.relu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
        return h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]

    return inp, apply_fn, params


def test_golden_ntk(golden):
    inp, apply_fn, params = golden_model(golden)
    ref = golden("ntk")
    x = jnp.asarray(inp["x_train"], jnp.float64)
    xt = jnp.asarray(inp["x_test"], jnp.float64)
    theta = jaxinfo.kernel_matrix(jaxinfo.empirical_ntk(apply_fn, params, x, trace_axes=()))
    theta_te = jaxinfo.kernel_matrix(jaxinfo.empirical_ntk(apply_fn, params, xt, x,
                                                           trace_axes=()))
    for got, key in ((theta, "ntk"), (theta_te, "test_train_ntk")):
        f64 = ref[f"{key}_f64"]
        np.testing.assert_allclose(got, f64, rtol=1e-7, atol=1e-9 * np.abs(f64).max())
        np.testing.assert_allclose(got, ref[f"{key}_official"], rtol=0, atol=1e-5)


def test_golden_exp_matrix(golden):
    inp = golden("inputs")
    ref = golden("exp_matrix")
    theta = golden("ntk")["ntk_f64"]
    for continuous, key in ((False, "discrete"), (True, "continuous")):
        e = residual_decay(theta, GradientDescent(lr=float(inp["lr"]), t=int(inp["t"]), continuous=continuous), n=100)[0]
        f64 = ref[f"E_{key}_f64"]
        np.testing.assert_allclose(e, f64, rtol=1e-7, atol=1e-9 * np.abs(f64).max())
        atol, rtol = (1e-5, 0) if continuous else (1e-4, 1e-3)  # README: discrete E is sensitive
        np.testing.assert_allclose(e, ref[f"E_{key}_official"], rtol=rtol, atol=atol)


@pytest.mark.parametrize("continuous", [False, True])
def test_golden_predictions_and_weights(golden, continuous):
    inp, apply_fn, params = golden_model(golden)
    preds, weights = golden("predictions"), golden("weights_t")
    key = "continuous" if continuous else "discrete"
    res = linearized_training(apply_fn, params, inp["x_train"], inp["y_train"], inp["x_test"], dynamics=GradientDescent(lr=float(inp["lr"]), t=int(inp["t"]), continuous=continuous))
    idx = inp["flax_ravel_from_torch_index"]
    w_t = ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], res.params))[0]
    checks = ((res.train_pred[0], f"train_pred_{key}"), (res.ref_pred[0], f"test_pred_{key}"),
              (w_t, f"w_{key}"))
    for got, name in checks:
        src = weights if name.startswith("w_") else preds
        f64, official = src[f"{name}_f64"], src[f"{name}_official"]
        if name.startswith("w_"):
            f64, official = f64[idx], official[idx]
        np.testing.assert_allclose(got, f64, rtol=1e-7, atol=1e-9 * np.abs(f64).max())
        sensitive = not continuous and not name.startswith("w_")
        atol, rtol = (1e-4, 1e-3) if sensitive else (1e-5, 0)
        np.testing.assert_allclose(got, official, rtol=rtol, atol=atol)
    np.testing.assert_allclose(res.alpha[0].reshape(-1), preds[f"alpha_{key}_f64"], rtol=1e-7,
                               atol=1e-9 * np.abs(preds[f"alpha_{key}_f64"]).max())


# ------------------------------------------------------------------ bad input


def test_bad_input_errors():
    apply_fn, params, x, y, x_ref = problem(2)
    kw = dict(dynamics=GradientDescent(lr=0.1, t=10))
    with pytest.raises(TypeError, match="GradientDescent"):
        linearized_training(apply_fn, params, x, y, dynamics=dict(lr=0.1, t=10))
    with pytest.raises(ValueError, match="x_train"):
        linearized_training(apply_fn, params, x.at[0, 0].set(jnp.nan), y, **kw)
    with pytest.raises(ValueError, match="y_train"):
        linearized_training(apply_fn, params, x, y.at[0, 0].set(jnp.inf), **kw)
    with pytest.raises(ValueError, match="params"):
        bad = dict(params, w2=params["w2"] * jnp.nan)
        linearized_training(apply_fn, bad, x, y, **kw)
    with pytest.raises(ValueError, match="y_train must have shape"):
        linearized_training(apply_fn, params, x, y[:, :1], **kw)
    with pytest.raises(ValueError, match="x_ref"):
        linearized_training(apply_fn, params, x, y, x_ref[:, :3], **kw)
    with pytest.raises(ValueError, match="n >= 2"):
        linearized_training(apply_fn, params, x[:1], y[:1], **kw)
    with pytest.raises(ValueError, match="lr"):
        linearized_training(apply_fn, params, x, y, dynamics=GradientDescent(lr=0.0, t=10))
    with pytest.raises(ValueError, match="t must be > 0"):
        linearized_training(apply_fn, params, x, y, dynamics=GradientDescent(lr=0.1, t=0))
    with pytest.raises(ValueError, match="integer number of steps"):
        linearized_training(apply_fn, params, x, y, dynamics=GradientDescent(lr=0.1, t=2.5))
    with pytest.raises(ValueError, match="diverges"):
        linearized_training(apply_fn, params, x, y, dynamics=GradientDescent(lr=1e4, t=10))
    # the same rate is fine in continuous time
    linearized_training(apply_fn, params, x, y, dynamics=GradientDescent(lr=1e4, t=10.0, continuous=True))
    with pytest.raises(ValueError, match="weight_decay"):
        kernel_dynamics(jnp.eye(4), jnp.ones(4), GradientDescent(lr=0.1, t=1, weight_decay=-1.0), n=4)

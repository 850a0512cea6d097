"""Weight-space (primal) and sketched smooth unique information (jaxinfo.sui.projected)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxinfo
from _problems import tanh_mlp as mlp
from _problems import tanh_mlp_problem
from jaxinfo import GradientDescent, LOOSolver
from jaxinfo.sui.projected import features, make_sketch, primal_loo, sketch_rows

FIELDS = ("weight_si", "functional_si", "weight_change_sq", "function_change_sq", "sample_loss")


# P = din·width + width + width·k (42 for the defaults) < nk = 80.
setup = functools.partial(tanh_mlp_problem, n=40, din=4, width=6, m=5)


def close(a, b, tol=1e-10):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) <= tol * np.max(np.abs(a))


@pytest.mark.parametrize("with_ref", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_exact_primal_equals_kernel_path(x64, with_ref, reduction):
    params, x, y, xr = setup()
    ref_x = xr if with_ref else None
    dyn = GradientDescent(lr=0.1, t=None, weight_decay=1e-3)
    exact = jaxinfo.unique_information(mlp, params, x, y, ref_x, dynamics=dyn, progress=False,
                                       reduction=reduction)
    primal = jaxinfo.unique_information(mlp, params, x, y, ref_x, dynamics=dyn, progress=False,
                                        reduction=reduction, projection_dim=10**9)
    for name in FIELDS:
        assert close(getattr(exact, name), getattr(primal, name)), name
    assert primal.num_reference == exact.num_reference


def test_primal_chosen_automatically_when_kernel_too_big(x64):
    params, x, y, _ = setup()
    dyn = GradientDescent(lr=0.1, t=None, weight_decay=1e-3)
    exact = jaxinfo.unique_information(mlp, params, x, y, dynamics=dyn, progress=False)
    small = jaxinfo.unique_information(mlp, params, x, y, dynamics=dyn, progress=False,
                                       solver=LOOSolver(memory_budget=1000))
    for name in FIELDS:
        assert close(getattr(exact, name), getattr(small, name)), name


def test_primal_without_decay_when_p_below_nk(x64):
    """λ = 0: Θ is singular (rank P < nk) but ΦᵀΦ is not; compare with explicit deletion."""
    params, x, y, _ = setup(n=30)
    phi = features(mlp, params, x)
    r0 = np.asarray(mlp(params, x) - y).reshape(-1)
    out = primal_loo(phi, r0, 0.0, k=2)
    v = -np.linalg.solve(phi.T @ phi, phi.T @ r0)
    for i in (0, 7, 29):
        keep = np.arange(60) // 2 != i
        vi = -np.linalg.solve(phi[keep].T @ phi[keep], phi[keep].T @ r0[keep])
        dv = vi - v
        assert out["weight_change_sq"][i] == pytest.approx(dv @ dv, rel=1e-9)
        assert out["train_others_sq"][i] == pytest.approx(np.sum((phi[keep] @ dv) ** 2),
                                                          rel=1e-9)


def test_orthogonal_sketch_of_full_rank_is_exact(x64):
    params, x, y, xr = setup()
    num = 42
    sketch = make_sketch(jax.random.PRNGKey(3), num, 64, jnp.float64)  # d = P' = 64: orthogonal
    j = features(mlp, params, x)
    phi = features(mlp, params, x, sketch, chunk=16)
    assert phi.shape == (80, 64)
    np.testing.assert_allclose(phi @ phi.T, j @ j.T, rtol=0, atol=1e-12 * np.abs(j @ j.T).max())
    r0 = np.asarray(mlp(params, x) - y).reshape(-1)
    a = primal_loo(j, r0, 1e-3, k=2, phi_ref=features(mlp, params, xr))
    b = primal_loo(phi, r0, 1e-3, k=2, phi_ref=features(mlp, params, xr, sketch))
    for name in ("weight_change_sq", "train_others_sq", "ref_sq", "r_full"):
        assert close(a[name], b[name], 1e-9), name


def test_sketch_is_unbiased_and_streams_rows(x64):
    r = np.random.default_rng(0)
    rows = jnp.asarray(r.normal(size=(3, 100)))
    grams = []
    for seed in range(200):
        s = make_sketch(jax.random.PRNGKey(seed), 100, 32, jnp.float64)
        assert s.signs.shape == (128,) and s.rows.shape == (32,)  # no P × d matrix
        p = np.asarray(sketch_rows(s, rows))
        grams.append(p @ p.T)
    exact = np.asarray(rows @ rows.T)
    np.testing.assert_allclose(np.mean(grams, 0), exact, atol=0.1 * np.abs(exact).max())


def test_projected_correlates_with_exact(x64):
    params, x, y, _ = setup(n=60, width=16)  # P = 4·16 + 16 + 32 = 112 > d
    dyn = GradientDescent(lr=0.1, t=None, weight_decay=1e-3)
    exact = jaxinfo.unique_information(mlp, params, x, y, dynamics=dyn, progress=False)
    res = jaxinfo.unique_information(mlp, params, x, y, dynamics=dyn, progress=False,
                                     projection_dim=64, key=jax.random.PRNGKey(0))
    assert np.corrcoef(exact.functional_si, res.functional_si)[0, 1] > 0.8
    assert np.corrcoef(exact.weight_si, res.weight_si)[0, 1] > 0.8


def test_projected_errors(x64):
    params, x, y, _ = setup()
    dyn = GradientDescent(lr=0.1, t=None, weight_decay=1e-3)
    with pytest.raises(ValueError, match="key"):
        jaxinfo.unique_information(mlp, params, x, y, dynamics=dyn, progress=False,
                                   projection_dim=8)
    with pytest.raises(ValueError, match="projection_dim"):
        make_sketch(jax.random.PRNGKey(0), 42, 65)


@pytest.mark.parametrize("dyn", [GradientDescent(lr=0.1, t=10, weight_decay=1e-3),
                                 GradientDescent(lr=0.5, t=3.0, continuous=True,
                                                 weight_decay=1e-2)],
                         ids=["discrete", "continuous"])
def test_exact_primal_finite_t_equals_kernel_path(x64, dyn):
    """Finite t: eigenbasis of ΦᵀΦ + Lanczos on diagonal-minus-rank-k, within its bound."""
    params, x, y, xr = setup()
    exact = jaxinfo.unique_information(mlp, params, x, y, xr, dynamics=dyn, progress=False,
                                       solver=LOOSolver(method="exact"))
    primal = jaxinfo.unique_information(mlp, params, x, y, xr, dynamics=dyn, progress=False,
                                        projection_dim=10**9)
    assert primal.method == "lanczos" and 1 <= primal.iterations <= 42
    assert np.max(primal.alpha_error_bound) < 1e-9
    for name in FIELDS:
        assert close(getattr(exact, name), getattr(primal, name), 1e-10), name

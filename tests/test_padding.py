"""Padding the samples (``LOOSolver(pad_to=...)``): exact, and one compilation across sizes.

The reference is the same problem without padding (float64). The padded samples are decoupled
(Θ block diagonal) with zero residuals, so every real sample's result must agree to round-off;
and a second n in the same size bucket must not compile anything.
"""
from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxinfo
from jaxinfo import GradientDescent, LOOSolver
from jaxinfo.sui import engines
from jaxinfo.sui.results import size_bucket


def _kernel_problem(n, k, m=7, p=40, seed=0):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(n * k, p))
    jac_ref = rng.normal(size=(m * k, p))
    return jac @ jac.T / p, jac_ref @ jac.T / p, rng.normal(size=(n, k))


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("t,method", [(None, "auto"), (None, "exact"), (150.0, "auto"),
                                      (150.0, "exact"), (150.0, "lanczos")])
def test_padded_equals_unpadded(x64, k, t, method):
    theta, theta_ref, r0 = _kernel_problem(23, k)
    dyn = GradientDescent(lr=0.3, t=t, weight_decay=1e-3)
    for ref in (None, theta_ref):
        runs = [jaxinfo.unique_information_from_kernel(
            theta, r0, dyn, theta_ref=ref, solver=LOOSolver(method=method, pad_to=pad),
            progress=False) for pad in (None, "bucket", 40)]
        for padded in runs[1:]:
            assert padded.method == runs[0].method
            for q in ("weight_si", "functional_si", "sample_loss", "function_change_sq"):
                assert _rel(getattr(padded, q), getattr(runs[0], q)) <= 1e-10, (q, ref is None)


def test_padded_tiny_problem_whole_krylov_space(x64):
    # n·k − k = 10 < the Lanczos step bucket: the Krylov space is the whole real space. Padded,
    # m is the padded dimension and the exhausted space is closed by zero blocks: still exact.
    theta, _, r0 = _kernel_problem(6, 2, p=30)
    dyn = GradientDescent(lr=0.3, t=[20.0, 400.0], weight_decay=0.0)
    a = jaxinfo.loo_vectors(theta, r0, dyn)
    b = jaxinfo.loo_vectors(theta, r0, dyn, solver=LOOSolver(pad_to=16))
    assert a.iterations == 10 and b.iterations == 30 and b.method == a.method == "lanczos"
    for q in ("alpha", "delta_alpha", "train_change", "train_loss_change", "weight_change_sq"):
        assert _rel(getattr(b, q), getattr(a, q)) <= 1e-10, q
    assert np.all(b.alpha_error_bound == 0)


def test_loo_vectors_padded_shapes_and_values(x64):
    theta, theta_ref, r0 = _kernel_problem(19, 2)
    dyn = GradientDescent(lr=0.3, t=[50.0, None], weight_decay=1e-3)
    a = jaxinfo.loo_vectors(theta, r0, dyn, theta_ref=theta_ref)
    b = jaxinfo.loo_vectors(theta, r0, dyn, theta_ref=theta_ref, solver=LOOSolver(pad_to="bucket"))
    assert b.delta_alpha.shape == (2, 19, 38) and b.ref_change.shape == (2, 19, 7, 2)
    for q in ("alpha", "delta_alpha", "train_change", "ref_change", "train_loss_change"):
        assert _rel(getattr(b, q), getattr(a, q)) <= 1e-10, q


def test_pad_problem_keeps_padding_exactly_inert(x64):
    theta, theta_ref, r0 = _kernel_problem(9, 1)
    big, r_big, ref_big = engines.pad_problem(theta, r0.ravel(), theta_ref, 1, 16, 8)
    assert big.shape == (16, 16) and r_big.shape == (16,) and ref_big.shape == (8, 16)
    np.testing.assert_array_equal(big[:9, :9], theta)
    assert np.all(big[:9, 9:] == 0) and np.all(ref_big[7:] == 0) and np.all(ref_big[:, 9:] == 0)
    np.testing.assert_allclose(np.diag(big)[9:], np.trace(theta) / 9)
    # the mean eigenvalue lies inside the spectrum: the checks and bounds see the real one
    s = np.linalg.eigvalsh(theta)
    assert s[0] <= big[15, 15] <= s[-1]
    # Cholesky / Schur (t = ∞): α and every α'_i are exactly zero on the padded entries
    prob = engines.prepare(big, r_big, None, jnp.asarray([np.inf]), 0.3, 1e-3, 9,
                           spectral=False, continuous=False)
    assert np.all(np.asarray(prob.alpha)[:, 9:] == 0)
    alpha_p = engines.alpha_schur(prob.c_inv, prob.r0, jnp.arange(9), 1)
    assert np.all(np.asarray(alpha_p)[..., 9:] == 0)


def test_size_bucket_ladder():
    sizes = [size_bucket(n) for n in range(2, 5000)]
    assert sizes[:15] == [16] * 15 and size_bucket(17) == 24 and size_bucket(800) == 944
    assert all(b >= n and b % 8 == 0 for n, b in zip(range(2, 5000), sizes))
    assert max(b / n for n, b in zip(range(64, 5000), sizes)) <= 2 ** 0.25 + 8 / 64
    assert len(set(sizes)) <= 40  # compilations for a sweep over n = 2 … 5000
    assert LOOSolver(pad_to="bucket").padded_size(100) == 120
    assert LOOSolver().padded_size(100) == 100
    with pytest.raises(ValueError, match="smaller than n"):
        LOOSolver(pad_to=50).padded_size(100)
    for bad in (1, True, "buckets", 2.5):
        with pytest.raises(ValueError, match="pad_to"):
            LOOSolver(pad_to=bad)


def _mlp():
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    params = {"w1": jax.random.normal(k1, (6, 24)) / np.sqrt(6),
              "w2": jax.random.normal(k2, (24, 2)) / np.sqrt(24)}
    return (lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]), params


@pytest.mark.parametrize("t", [None, 60.0])
def test_unique_information_one_compilation_per_bucket(t, caplog):
    """A second n in the same bucket compiles nothing (float32, as a notebook user runs it)."""
    f, params = _mlp()
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(48, 6)).astype(np.float32), rng.normal(size=(48, 2)).astype(np.float32)
    x_ref = rng.normal(size=(5, 6)).astype(np.float32)
    dyn = GradientDescent(lr=0.2, t=t, weight_decay=1e-3)
    solver = LOOSolver(pad_to="bucket")
    run = lambda n, **kw: jaxinfo.unique_information(  # noqa: E731
        f, params, x[:n], y[:n], x_ref, dynamics=dyn, solver=solver, progress=False, **kw)
    first = run(33)  # bucket 40
    caplog.set_level(logging.WARNING)
    with jax.log_compiles():
        second, third = run(35), run(40)
    compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
    assert not compiled, compiled
    with jax.log_compiles():  # the control: a new bucket (48) does compile, and it is seen
        run(41)
    assert any("Compiling" in r.getMessage() for r in caplog.records)
    plain = jaxinfo.unique_information(f, params, x[:35], y[:35], x_ref, dynamics=dyn,
                                       progress=False)
    assert len(first.weight_si) == 33 and len(third.weight_si) == 40
    for q in ("weight_si", "functional_si", "sample_loss"):
        # float32 kernels: the padded NTK batch differs only in round-off
        assert _rel(getattr(second, q), getattr(plain, q)) <= 1e-3, q

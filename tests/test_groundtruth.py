"""Ground truth for smooth unique information: exact linearized LOO and real LOO retraining."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from jaxinfo.groundtruth import (Correlation, correlation, linearized_loo, linearized_loo_kernel,
                                 retrain_loo)
from jaxinfo.linearize import linearize
from jaxinfo import GradientDescent


def _mlp(key, d, width, k, dtype=jnp.float32, scale=1.0):
    k1, k2 = jax.random.split(key)
    params = {"w1": jax.random.normal(k1, (d, width), dtype) / np.sqrt(d),
              "b1": jnp.zeros(width, dtype),
              "w2": jax.random.normal(k2, (width, k), dtype) * scale / np.sqrt(width),
              "b2": jnp.zeros(k, dtype)}

    def apply_fn(p, x):
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    return apply_fn, params


def _data(key, n, d, k, m=0, dtype=jnp.float32):
    kx, ky, kr = jax.random.split(key, 3)
    x = jax.random.normal(kx, (n, d), dtype)
    y = jax.random.normal(ky, (n, k), dtype)
    xr = jax.random.normal(kr, (m, d), dtype) if m else None
    return x, y, xr


def _gd(apply_fn, params, xs, ys, *, lr, steps, weight_decay=0.0):
    """Plain optax full-batch GD on (1/n)Σ½‖f − y‖² + (λ/2)‖w − w0‖², no masks.

    ``xs [B, n', d]``, ``ys [B, n', k]``: B independent datasets (e.g. the n leave-one-out
    datasets, each with the sample really removed), vmapped so it compiles once.
    Returns the B final parameter pytrees stacked on a leading axis.
    """
    opt = optax.sgd(lr)
    p0 = params

    def loss(p, x, y):
        data = 0.5 * jnp.mean(jnp.sum((apply_fn(p, x) - y) ** 2, axis=-1))
        reg = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree_util.tree_leaves(p),
                                                       jax.tree_util.tree_leaves(p0)))
        return data + 0.5 * weight_decay * reg

    def run(x, y):
        def step(carry, _):
            p, s = carry
            upd, s = opt.update(jax.grad(loss)(p, x, y), s, p)
            return (optax.apply_updates(p, upd), s), None

        return jax.lax.scan(step, (p0, opt.init(p0)), None, length=steps)[0][0]

    return jax.jit(jax.vmap(run))(xs, ys)


def _loo_stack(a, idx):
    """``[len(idx), n − 1, ...]``: ``a`` without row i, for each i in idx."""
    n = a.shape[0]
    return jnp.stack([a[np.arange(n) != i] for i in idx])


def _take(tree, j):
    return jax.tree_util.tree_map(lambda a: a[j], tree)


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


# ----------------------------------------------------------------------------- linearized

@pytest.mark.parametrize("weight_decay,k,with_ref", [(0.0, 1, True), (0.05, 2, False)])
def test_linearized_loo_equals_optax_gd_on_linearized_net(x64, weight_decay, k, with_ref):
    n, d, lr, steps = 7, 3, 0.3, 40
    apply_fn, params = _mlp(jax.random.PRNGKey(0), d, 16, k, jnp.float64)
    x, y, xr = _data(jax.random.PRNGKey(1), n, d, k, m=5 if with_ref else 0, dtype=jnp.float64)
    f_lin = linearize(apply_fn, params)
    res = linearized_loo(f_lin, params, x, y, xr, dynamics=GradientDescent(lr=lr, t=steps, weight_decay=weight_decay), return_vectors=True, progress=False)
    gd = dict(lr=lr, steps=steps, weight_decay=weight_decay)
    full = _take(_gd(f_lin, params, x[None], y[None], **gd), 0)
    loos = _gd(f_lin, params, _loo_stack(x, range(n)), _loo_stack(y, range(n)), **gd)
    flat_full = ravel_pytree(full)[0]
    for i in range(n):
        loo = _take(loos, i)
        dw = flat_full - ravel_pytree(loo)[0]
        x_eval = xr if with_ref else x
        df = f_lin(full, x_eval) - f_lin(loo, x_eval)
        if not with_ref:
            df = df.at[i].set(0.0)
        assert _rel(res.weight_delta[i], dw) < 1e-8
        assert _rel(res.function_delta[i], df) < 1e-8
        np.testing.assert_allclose(res.weight_change_sq[i], jnp.sum(dw ** 2), rtol=1e-8)
        m = len(xr) if with_ref else n - 1
        np.testing.assert_allclose(res.function_change_sq[i], jnp.sum(df ** 2) / m, rtol=1e-8)
        np.testing.assert_allclose(res.function_change_sq_sum[i], jnp.sum(df ** 2), rtol=1e-8)


def test_linearized_loo_kernel_subset_and_continuous(x64):
    n, k = 6, 2
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n * k, 9))
    theta = a @ a.T
    r0 = rng.normal(size=n * k)
    full = linearized_loo_kernel(theta, r0, GradientDescent(lr=0.1, t=5.0, continuous=True), progress=False)
    sub = linearized_loo_kernel(theta, r0, GradientDescent(lr=0.1, t=5.0, continuous=True), indices=[4, 1], progress=False)
    np.testing.assert_allclose(sub.weight_change_sq, full.weight_change_sq[[4, 1]], rtol=1e-12)
    assert np.all(full.weight_change_sq > 0)


def test_fast_path_equals_brute_force(x64):
    sui = pytest.importorskip("jaxinfo.sui")
    n, d = 8, 3
    for k, t, wd, with_ref in [(1, 10, 0.0, True), (2, None, 0.1, False)]:
        apply_fn, params = _mlp(jax.random.PRNGKey(k), d, 12, k, jnp.float64)
        x, y, xr = _data(jax.random.PRNGKey(5), n, d, k, m=4 if with_ref else 0,
                         dtype=jnp.float64)
        lr = 0.2
        ref = linearized_loo(apply_fn, params, x, y, xr, dynamics=GradientDescent(lr=lr, t=t, weight_decay=wd), progress=False)
        fast = sui.unique_information(apply_fn, params, x, y, xr, dynamics=GradientDescent(lr=lr, t=t, weight_decay=wd), sigma=1.0, sigma_f=1.0, progress=False)
        np.testing.assert_allclose(fast.weight_change_sq, ref.weight_change_sq, rtol=1e-8)
        np.testing.assert_allclose(fast.function_change_sq, ref.function_change_sq, rtol=1e-8)
        np.testing.assert_allclose(fast.weight_si, ref.weight_change_sq / 2, rtol=1e-8)


# ----------------------------------------------------------------------------- real retraining

def test_vmapped_masked_retraining_equals_loop(x64):
    n, d, k, lr, steps, wd = 9, 4, 2, 0.2, 25, 0.01
    apply_fn, params = _mlp(jax.random.PRNGKey(2), d, 10, k, jnp.float64)
    x, y, xr = _data(jax.random.PRNGKey(3), n, d, k, m=3, dtype=jnp.float64)
    idx = np.array([0, 3, 4, 8, 6])  # 2 chunks of 3, the last one padded
    res = retrain_loo(apply_fn, params, x, y, xr, dynamics=GradientDescent(lr=lr, t=steps, weight_decay=wd), indices=idx, chunk_size=3, return_vectors=True, progress=False)
    np.testing.assert_array_equal(res.indices, idx)
    gd = dict(lr=lr, steps=steps, weight_decay=wd)
    full = _take(_gd(apply_fn, params, x[None], y[None], **gd), 0)
    loos = _gd(apply_fn, params, _loo_stack(x, idx), _loo_stack(y, idx), **gd)
    for j, i in enumerate(idx):
        loo = _take(loos, j)
        dw = ravel_pytree(full)[0] - ravel_pytree(loo)[0]
        df = apply_fn(full, xr) - apply_fn(loo, xr)
        np.testing.assert_allclose(res.weight_change_sq[j], jnp.sum(dw ** 2), rtol=1e-9)
        np.testing.assert_allclose(res.function_change_sq[j], jnp.mean(jnp.sum(df ** 2, -1)),
                                   rtol=1e-9)
        assert _rel(res.weight_delta[j], dw) < 1e-9
    assert res.settings["full_loss"] > 0


def test_retraining_without_x_ref_uses_other_training_samples(x64):
    n, d = 6, 3
    apply_fn, params = _mlp(jax.random.PRNGKey(4), d, 8, 1, jnp.float64)
    x, y, _ = _data(jax.random.PRNGKey(5), n, d, 1, dtype=jnp.float64)
    res = retrain_loo(apply_fn, params, x, y, dynamics=GradientDescent(lr=0.3, t=10), chunk_size=4, return_vectors=True, progress=False)
    assert res.function_delta.shape == (n, n, 1)
    for j in range(n):
        assert res.function_delta[j, j, 0] == 0.0
        np.testing.assert_allclose(res.function_change_sq[j] * (n - 1),
                                   res.function_change_sq_sum[j], rtol=1e-12)


def test_lazy_regime_estimates_match_retraining(x64):
    """A wide network trained briefly with a small step stays near its linearization."""
    n, d, k, lr, steps = 24, 5, 1, 0.01, 100
    apply_fn, params = _mlp(jax.random.PRNGKey(6), d, 1024, k, jnp.float64)
    x, y, xr = _data(jax.random.PRNGKey(7), n, d, k, m=10, dtype=jnp.float64)
    est = linearized_loo(apply_fn, params, x, y, xr, dynamics=GradientDescent(lr=lr, t=steps), progress=False)
    act = retrain_loo(apply_fn, params, x, y, xr, dynamics=GradientDescent(lr=lr, t=steps), chunk_size=8, progress=False)
    cw = correlation(est.weight_change_sq, act.weight_change_sq)
    cf = correlation(est.function_change_sq, act.function_change_sq)
    assert isinstance(cw, Correlation) and cw.n == n
    assert cw.pearson > 0.95 and cf.pearson > 0.95, (cw, cf)
    assert cw.spearman > 0.9 and cf.spearman > 0.9, (cw, cf)


def test_checkpoint_resume_does_not_recompute(tmp_path):
    n, d = 10, 3
    apply_fn, params = _mlp(jax.random.PRNGKey(8), d, 8, 1)
    x, y, xr = _data(jax.random.PRNGKey(9), n, d, 1, m=4)
    kw = dict(dynamics=GradientDescent(lr=0.2, t=5), indices=np.arange(7), chunk_size=3,
              progress=False)
    first = retrain_loo(apply_fn, params, x, y, xr, checkpoint_dir=tmp_path, **kw)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["chunk_00000.npz", "chunk_00001.npz", "chunk_00002.npz", "full.npz",
                     "meta.json"]
    # Tamper with a finished chunk: a resumed run must return the stored values, not recompute.
    chunk = tmp_path / "chunk_00001.npz"
    with np.load(chunk) as z:
        stored = {key: z[key] for key in z.files}
    stored["weight_change_sq"] = np.full(3, 123.0)
    np.savez(chunk, **stored)
    mtimes = {p.name: os.stat(p).st_mtime_ns for p in tmp_path.iterdir()}
    again = retrain_loo(apply_fn, params, x, y, xr, checkpoint_dir=tmp_path, **kw)
    np.testing.assert_array_equal(again.weight_change_sq[3:6], 123.0)
    np.testing.assert_allclose(again.weight_change_sq[[0, 1, 2, 6]],
                               first.weight_change_sq[[0, 1, 2, 6]], rtol=1e-6)
    assert mtimes == {p.name: os.stat(p).st_mtime_ns for p in tmp_path.iterdir()}
    # An interrupted run (a chunk missing) recomputes only that chunk.
    os.remove(tmp_path / "chunk_00002.npz")
    third = retrain_loo(apply_fn, params, x, y, xr, checkpoint_dir=tmp_path, **kw)
    np.testing.assert_allclose(third.weight_change_sq[6], first.weight_change_sq[6], rtol=1e-6)
    assert os.stat(tmp_path / "chunk_00000.npz").st_mtime_ns == mtimes["chunk_00000.npz"]
    # Other settings in the same folder are refused.
    with pytest.raises(ValueError, match="checkpoint directory"):
        retrain_loo(apply_fn, params, x, y, xr, checkpoint_dir=tmp_path,
                    **dict(kw, dynamics=GradientDescent(lr=0.3, t=5)))


# ----------------------------------------------------------------------------- errors

def test_bad_inputs():
    apply_fn, params = _mlp(jax.random.PRNGKey(10), 3, 4, 1)
    x, y, xr = _data(jax.random.PRNGKey(11), 5, 3, 1, m=2)
    kw = dict(dynamics=GradientDescent(lr=0.1, t=2), progress=False)
    with pytest.raises(ValueError, match="lr"):
        retrain_loo(apply_fn, params, x, y, **dict(kw, dynamics=GradientDescent(lr=0.0, t=2)))
    with pytest.raises(ValueError, match="steps"):
        retrain_loo(apply_fn, params, x, y, **dict(kw, dynamics=GradientDescent(lr=0.1)))
    with pytest.raises(ValueError, match="steps"):
        retrain_loo(apply_fn, params, x, y,
                    **dict(kw, dynamics=GradientDescent(lr=0.1, t=2.0, continuous=True)))
    with pytest.raises(ValueError, match="indices"):
        retrain_loo(apply_fn, params, x, y, indices=[0, 5], **kw)
    with pytest.raises(ValueError, match="indices"):
        retrain_loo(apply_fn, params, x, y, indices=[1, 1], **kw)
    with pytest.raises(ValueError, match="x_train"):
        retrain_loo(apply_fn, params, x.at[0, 0].set(jnp.nan), y, **kw)
    with pytest.raises(ValueError, match="y_train"):
        retrain_loo(apply_fn, params, x, y[:4], **kw)
    with pytest.raises(ValueError, match="x_ref"):
        retrain_loo(apply_fn, params, x, y, jnp.ones((2, 4)), **kw)
    with pytest.raises(ValueError, match="n >= 2"):
        retrain_loo(apply_fn, params, x[:1], y[:1], **kw)
    with pytest.raises(ValueError, match="weight_decay"):
        retrain_loo(apply_fn, params, x, y,
                    **dict(kw, dynamics=GradientDescent(lr=0.1, t=2, weight_decay=-1.0)))
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="float64"):
            retrain_loo(apply_fn, params, x, y, dtype="float64", **kw)
    with pytest.raises(TypeError, match="dtype"):
        retrain_loo(apply_fn, params, x, y, dtype="int32", **kw)
    with pytest.raises(ValueError, match="diverges"):
        linearized_loo(apply_fn, params, x, y, dynamics=GradientDescent(lr=1e4, t=10), progress=False)
    with pytest.raises(ValueError, match="t must be a single"):
        linearized_loo(apply_fn, params, x, y, dynamics=GradientDescent(lr=0.1, t=[1, 2]), progress=False)
    with pytest.raises(ValueError, match="same length"):
        correlation([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 3"):
        correlation([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        correlation([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])


def test_correlation_values():
    from scipy import stats

    rng = np.random.default_rng(0)
    a = rng.exponential(size=50)
    e = a * np.exp(0.1 * rng.normal(size=50))
    c = correlation(e, a)
    assert c.pearson == pytest.approx(stats.pearsonr(e, a)[0])
    assert c.spearman == pytest.approx(stats.spearmanr(e, a)[0])
    assert c.pearson_log == pytest.approx(stats.pearsonr(np.log(e), np.log(a))[0])
    assert np.isnan(correlation([-1.0, 2.0, 3.0], [1.0, 2.0, 3.0]).pearson_log)

"""The composable API: configs as pytrees, jit/vmap-able factories and cores, iterator input."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxinfo
from jaxinfo import GradientDescent, LOOSolver
from jaxinfo.data import batches


def _mlp(key, d=5, width=16, k=2, dtype=jnp.float64):
    k1, k2 = jax.random.split(key)
    params = {"w1": jax.random.normal(k1, (d, width), dtype) / np.sqrt(d),
              "b1": jnp.zeros(width, dtype),
              "w2": jax.random.normal(k2, (width, k), dtype) / np.sqrt(width)}

    def apply_fn(p, x):
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"]

    return apply_fn, params


def _data(key, n=12, d=5, k=2, dtype=jnp.float64):
    k1, k2 = jax.random.split(key)
    return jax.random.normal(k1, (n, d), dtype), jax.random.normal(k2, (n, k), dtype)




def test_gradient_descent_is_a_checked_pytree():
    dyn = GradientDescent(lr=0.1, t=100, weight_decay=1e-3)
    leaves, treedef = jax.tree_util.tree_flatten(dyn)
    assert leaves == [0.1, 100, 1e-3]
    assert jax.tree_util.tree_unflatten(treedef, leaves) == dyn
    assert dyn.replace(t=None).times().tolist() == [np.inf]
    with pytest.raises(ValueError, match="lr"):
        GradientDescent(lr=-1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        GradientDescent(lr=1.0, weight_decay=-0.1)
    with pytest.raises(ValueError, match="integer number of steps"):
        GradientDescent(lr=1.0, t=2.5)
    with pytest.raises(TypeError, match="continuous"):
        GradientDescent(lr=1.0, continuous=1)
    with pytest.raises(dataclasses_error()):
        dyn.lr = 0.2


def dataclasses_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_ntk_fn_jit_and_vmap(x64):
    apply_fn, params = _mlp(jax.random.PRNGKey(0))
    x, _ = _data(jax.random.PRNGKey(1))
    ntk = jaxinfo.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)
    full = jaxinfo.empirical_ntk(apply_fn, params, x, trace_axes=())
    np.testing.assert_allclose(jax.jit(ntk)(x, None, params), full, rtol=1e-12)
    # neural-tangents' convention: traced axes are averaged (jaxinfo.empirical_ntk sums)
    traced = jax.jit(jaxinfo.empirical_ntk_fn(apply_fn))(x, x[:3], params)
    np.testing.assert_allclose(traced, jnp.einsum("abcc->ab", full[:, :3]) / 2, rtol=1e-12)
    # vmap over an ensemble of parameters equals a loop
    ens = jax.tree_util.tree_map(lambda a: jnp.stack([a, 0.5 * a, -a]), params)
    batched = jax.jit(jax.vmap(ntk, in_axes=(None, None, 0)))(x, None, ens)
    for e in range(3):
        one = jax.tree_util.tree_map(lambda a: a[e], ens)
        np.testing.assert_allclose(batched[e], ntk(x, None, one), rtol=1e-12)
    # vmap over inputs (one kernel per input set)
    xs = jnp.stack([x, 2 * x])
    per = jax.vmap(lambda xx: ntk(xx, None, params))(xs)
    np.testing.assert_allclose(per[1], ntk(2 * x, None, params), rtol=1e-12)
    # every implementation agrees; NTK-vector products when samples are not independent
    for impl in (1, 2, "jacobian", "ntvp"):
        k = jaxinfo.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=impl)
        np.testing.assert_allclose(k(x, None, params), full, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jaxinfo.empirical_ntk_fn(apply_fn, trace_axes=(),
                                                        vmap_axes=None)(x, None, params),
                               full, rtol=1e-10, atol=1e-12)
    # apply_fn keyword arguments pass through
    scaled = jaxinfo.empirical_ntk_fn(lambda p, xx, scale=1.0: scale * apply_fn(p, xx),
                                      trace_axes=())
    np.testing.assert_allclose(scaled(x, None, params, scale=2.0), 4 * full, rtol=1e-12)
    with pytest.raises(NotImplementedError, match="vmap_axes"):
        jaxinfo.empirical_ntk_fn(apply_fn, vmap_axes=1)
    with pytest.raises(ValueError, match="implementation"):
        jaxinfo.empirical_ntk_fn(apply_fn, implementation=7)


def test_empirical_ntk_under_jit_and_vmap(x64):
    apply_fn, params = _mlp(jax.random.PRNGKey(2))
    x, _ = _data(jax.random.PRNGKey(3))
    ref = jaxinfo.empirical_ntk(apply_fn, params, x)
    np.testing.assert_allclose(jax.jit(lambda p: jaxinfo.empirical_ntk(apply_fn, p, x))(params),
                               ref, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(lambda xx: jaxinfo.empirical_ntk(apply_fn, params, xx))(x),
                               ref, rtol=1e-12)


@pytest.mark.parametrize("t,method,iterations", [(None, "schur", 0), (30, "exact", 0),
                                                 (30, "lanczos", 22), (4.0, "lanczos", 22)])
def test_jit_of_kernel_level_core(x64, t, method, iterations):
    apply_fn, params = _mlp(jax.random.PRNGKey(4))
    x, y = _data(jax.random.PRNGKey(5))
    xr, _ = _data(jax.random.PRNGKey(6), n=4)
    theta = jaxinfo.kernel_matrix(jaxinfo.empirical_ntk(apply_fn, params, x, trace_axes=()))
    theta_ref = jaxinfo.kernel_matrix(jaxinfo.empirical_ntk(apply_fn, params, xr, x,
                                                            trace_axes=()))
    r0 = apply_fn(params, x) - y
    dyn = GradientDescent(lr=0.5, t=t, continuous=isinstance(t, float), weight_decay=1e-2)
    host = jaxinfo.unique_information_from_kernel(theta, r0, dyn, theta_ref=theta_ref, sigma=0.5,
                                                  solver=LOOSolver(method="exact"),
                                                  progress=False)
    core = jax.jit(jaxinfo.unique_information_core,
                   static_argnames=("method", "iterations", "reduction"))
    res = core(theta, r0, dyn, theta_ref=theta_ref, sigma=0.5, method=method,
               iterations=iterations)
    assert isinstance(res, jaxinfo.UniqueInformation) and res.method == method
    for field in ("weight_si", "functional_si", "weight_change_sq", "function_change_sq",
                  "sample_loss"):
        np.testing.assert_allclose(getattr(res, field), getattr(host, field), rtol=1e-8,
                                   err_msg=field)
    # the dynamics are traced leaves: another lr (or λ) reuses the compiled function
    traces = core._cache_size()
    core(theta, r0, dyn.replace(lr=0.4, weight_decay=2e-2), theta_ref=theta_ref, sigma=0.5,
         method=method, iterations=iterations)
    assert core._cache_size() == traces


def test_core_vmaps_over_kernels(x64):
    apply_fn, params = _mlp(jax.random.PRNGKey(7))
    x, y = _data(jax.random.PRNGKey(8), n=8)
    thetas = jnp.stack([jaxinfo.kernel_matrix(jaxinfo.empirical_ntk(apply_fn, p, x,
                                                                    trace_axes=()))
                        for p in (params, jax.tree_util.tree_map(lambda a: 0.7 * a, params))])
    r0 = apply_fn(params, x) - y
    dyn = GradientDescent(lr=0.3, weight_decay=1e-2)
    batched = jax.vmap(lambda th: jaxinfo.unique_information_core(th, r0, dyn))(thetas)
    for i in range(2):
        one = jaxinfo.unique_information_from_kernel(thetas[i], r0, dyn, progress=False)
        np.testing.assert_allclose(batched.functional_si[i], one.functional_si, rtol=1e-8)


def test_iterator_input_equals_array_input(x64):
    apply_fn, params = _mlp(jax.random.PRNGKey(9))
    x, y = _data(jax.random.PRNGKey(10), n=11)
    xr, _ = _data(jax.random.PRNGKey(11), n=5)
    it = lambda: batches(np.asarray(x), 4, np.asarray(y))  # noqa: E731 - 3 batches, 1 padded
    # empirical_ntk: a generator of dict batches, streamed in blocks of 4
    np.testing.assert_allclose(jaxinfo.empirical_ntk(apply_fn, params, it(), trace_axes=()),
                               jaxinfo.empirical_ntk(apply_fn, params, x, trace_axes=()),
                               rtol=1e-12)
    np.testing.assert_allclose(
        jaxinfo.empirical_ntk(apply_fn, params, batches(np.asarray(xr), 2), it()),
        jaxinfo.empirical_ntk(apply_fn, params, xr, x), rtol=1e-12)
    dyn = GradientDescent(lr=0.2, t=40, weight_decay=1e-3)
    ref = jaxinfo.unique_information(apply_fn, params, x, y, xr, dynamics=dyn, progress=False)
    got = jaxinfo.unique_information(apply_fn, params, it(), None, batches(xr, 2), dynamics=dyn,
                                     progress=False)
    np.testing.assert_allclose(got.functional_si, ref.functional_si, rtol=1e-10)
    np.testing.assert_allclose(got.weight_si, ref.weight_si, rtol=1e-10)
    ds = jaxinfo.Dataset(np.asarray(x), np.asarray(y))
    lt_ref = jaxinfo.linearized_training(apply_fn, params, x, y, xr, dynamics=dyn)
    lt_it = jaxinfo.linearized_training(apply_fn, params, ds, None, xr, dynamics=dyn)
    np.testing.assert_allclose(lt_it.ref_pred, lt_ref.ref_pred, rtol=1e-10)
    lt_gen = jaxinfo.linearized_training(apply_fn, params, it(), dynamics=dyn)
    np.testing.assert_allclose(lt_gen.train_pred, lt_ref.train_pred, rtol=1e-10)


def test_ambiguous_batches_are_errors():
    apply_fn, params = _mlp(jax.random.PRNGKey(12), dtype=jnp.float32)
    x, y = _data(jax.random.PRNGKey(13), dtype=jnp.float32)
    dyn = GradientDescent(lr=0.1, t=5)
    with pytest.raises(TypeError, match="tuple of length 2"):
        jaxinfo.unique_information(apply_fn, params, [(x, y)], dynamics=dyn, progress=False)
    with pytest.raises(TypeError, match="y_train is missing"):
        jaxinfo.unique_information(apply_fn, params, [{"x": x}], dynamics=dyn, progress=False)
    with pytest.raises(TypeError, match="put the targets"):
        jaxinfo.linearized_training(apply_fn, params, batches(np.asarray(x), 4), y, dynamics=dyn)
    with pytest.raises(TypeError, match="tuple of length 2"):
        jaxinfo.empirical_ntk(apply_fn, params, [(x, y)])


def test_float32_closed_form_interpolates_at_t_inf():
    """A float32 model at t = ∞: the pseudo-inverse must not drop real eigen-directions.

    The null-space cutoff max|s|·nk·eps was evaluated with float32's eps (0.31 for this
    kernel: λ_min = 0.17, 35 eigenvalues below it), which discarded real directions and left
    training residuals of order 1. The closed form now runs in float64.
    """
    from jaxinfo.train import MLP

    data = jaxinfo.load_digits(classes=[4, 9], relabel=True)  # 361 samples
    x, y = data.x, data.y.astype(np.float32)[:, None]
    model = MLP(hidden=(512,), num_classes=1)
    apply_fn, params = jaxinfo.flax_apply(model, model.init(jax.random.PRNGKey(0), x[:1]))
    res = jaxinfo.linearized_training(apply_fn, params, x, y, dynamics=GradientDescent(lr=0.05))
    s = np.linalg.eigvalsh(np.asarray(res.ntk, np.float64))
    eps32_cutoff = s[-1] * len(s) * np.finfo(np.float32).eps
    assert s[0] > 0.05 and np.sum(s < eps32_cutoff) > 10  # the old cutoff dropped these
    resid = np.abs(np.asarray(res.train_pred[-1]) - y).max()
    assert resid < 1e-5, resid  # 0.038 before the fix
    assert res.train_pred.dtype == jnp.float32


def test_compilation_cache_is_written(tmp_path):
    import subprocess
    import sys

    code = ("import jax, jax.numpy as jnp, jaxinfo, sys; "
            "jaxinfo.enable_compilation_cache(sys.argv[1], min_compile_time_secs=0); "
            "print(jax.jit(lambda a: jnp.linalg.eigh(a @ a.T)[0])(jnp.ones((8, 8))).sum())")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr
    assert any(tmp_path.iterdir()), "no compiled program was stored"


def test_kernel_dynamics_under_jit(x64):
    rng = np.random.default_rng(3)
    j = rng.normal(size=(10, 30)) / 5
    theta, r0 = jnp.asarray(j @ j.T), jnp.asarray(rng.normal(size=10))
    dyn = GradientDescent(lr=0.5, t=20, weight_decay=1e-2)
    eager = jaxinfo.kernel_dynamics(theta, r0, dyn, n=10)
    traced = jax.jit(lambda th, d: jaxinfo.kernel_dynamics(th, r0, d, n=10).alpha)(theta, dyn)
    np.testing.assert_allclose(traced, eager.alpha, rtol=1e-10, atol=1e-12)

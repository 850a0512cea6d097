"""jaxinfo.models: the ResNet's empirical NTK with frozen BatchNorm statistics, its two
convolution implementations, the closed form on the linearized ResNet, and the moved modules."""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from jaxinfo import GradientDescent, empirical_ntk, flax_apply, linearize, linearized_training
from jaxinfo.models import MLP, Layers, ResNet, ShallowMLP, SmallCNN, count_params


@functools.lru_cache(maxsize=None)
def _init_cached(module, seed_bits):
    # jitted and cached: eager Flax init is slow on a loaded CPU
    return jax.jit(module.init)(jnp.asarray(seed_bits, jnp.uint32), jnp.zeros((1, 6, 6, 1),
                                                                                jnp.float32))


def _init(module, key):
    return _init_cached(module, tuple(np.asarray(jax.random.key_data(key)).tolist()))


def tiny_resnet(norm="batch", k=2, conv_impl="patches", seed=0, widths=(2, 3), blocks=(1, 1)):
    """A 2-stage, 1-block-per-stage ResNet on 6×6 images with non-trivial frozen statistics."""
    module = ResNet(widths, blocks, num_outputs=k, layers=Layers(norm=norm, conv_impl=conv_impl))
    kp, km, kv = jax.random.split(jax.random.PRNGKey(seed), 3)
    variables = _init(module, kp)
    if "batch_stats" in variables:
        leaves, tree = jax.tree_util.tree_flatten(variables["batch_stats"])
        keys = jax.random.split(km, len(leaves))
        stats = [0.5 * jax.random.normal(kk, a.shape) if i % 2 == 0 else
                 jnp.exp(0.5 * jax.random.normal(kk, a.shape))  # mean, var (sorted: mean first)
                 for i, (kk, a) in enumerate(zip(keys, leaves))]
        variables = {**variables, "batch_stats": jax.tree_util.tree_unflatten(tree, stats)}
    return module, jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), variables)


def jacobian_ntk(apply_fn, params, x1, x2):
    """Reference Θ[a, b, c, d] = Σ_p ∂f_c(x1_a)/∂p ∂f_d(x2_b)/∂p from jax.jacobian."""
    def jac(x):
        j = jax.jacobian(lambda p: apply_fn(p, x))(params)
        return jnp.concatenate([a.reshape(a.shape[0], a.shape[1], -1)
                                for a in jax.tree_util.tree_leaves(j)], axis=-1)
    return jnp.einsum("acp,bdp->abcd", jac(x1), jac(x2))


jacobian_ntk = jax.jit(jacobian_ntk, static_argnums=0)


@pytest.mark.parametrize("implementation", ["jacobian", "structured"])
def test_resnet_ntk_equals_jacobian_contraction_frozen_batchnorm(implementation):
    with jax.enable_x64(True):
        module, variables = tiny_resnet()
        bs = jax.tree_util.tree_leaves(variables["batch_stats"])
        assert all(np.ptp(np.asarray(a)) > 0 for a in bs)  # statistics are non-trivial
        apply_fn, params = flax_apply(module, variables)
        x1 = jax.random.uniform(jax.random.PRNGKey(1), (3, 36), jnp.float64)
        x2 = jax.random.uniform(jax.random.PRNGKey(2), (2, 36), jnp.float64)
        ref = jacobian_ntk(apply_fn, params, x1, x2)
        got = empirical_ntk(apply_fn, params, x1, x2, trace_axes=(),
                            implementation=implementation)
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-10, atol=1e-12)
        # per-sample: a frozen-statistics network does not mix the batch
        np.testing.assert_allclose(apply_fn(params, x1)[:1], apply_fn(params, x1[:1]),
                                   rtol=1e-12)


def test_patches_and_lax_convolutions_are_the_same_function():
    with jax.enable_x64(True):
        m_p, variables = tiny_resnet(conv_impl="patches")
        m_l = m_p.clone(layers=dataclasses.replace(m_p.layers, conv_impl="lax"))
        x = jax.random.uniform(jax.random.PRNGKey(3), (4, 6, 6, 1), jnp.float64)
        np.testing.assert_allclose(jax.jit(m_p.apply)(variables, x),
                                   jax.jit(m_l.apply)(variables, x), rtol=1e-12)
        f_p = jax.jit(lambda v, x: m_p.apply(v, x, return_features=True))(variables, x)
        assert f_p.shape == (4, 3)


@pytest.mark.usefixtures("x64")
def test_group_norm_and_train_mode():
    module, variables = tiny_resnet(norm="group")
    assert "batch_stats" not in variables
    x = jax.random.uniform(jax.random.PRNGKey(4), (3, 36), jnp.float64)
    assert jax.jit(module.apply)(variables, x).shape == (3, 2)
    mb, vb = tiny_resnet()
    _, upd = jax.jit(lambda v, x: mb.apply(v, x, train=True, mutable=["batch_stats"]))(vb, x)  # running averages move
    before, after = ravel_pytree(vb["batch_stats"])[0], ravel_pytree(upd["batch_stats"])[0]
    assert not np.allclose(before, after)
    # parameter paths as the checkpoint errors name them
    assert set(variables["params"]) == {"stem_conv", "stem_norm", "stage0", "stage1", "head"}
    assert set(variables["params"]["stage1"]["block0"]) >= {"conv1", "norm1", "proj_conv"}


def test_closed_form_equals_explicit_linearized_gd_resnet():
    with jax.enable_x64(True):
        module, variables = tiny_resnet(k=1, widths=(2,), blocks=(1,))
        apply_fn, params = flax_apply(module, variables)
        kx, ky, kr = jax.random.split(jax.random.PRNGKey(5), 3)
        x = jax.random.uniform(kx, (6, 36), jnp.float64)
        y = jax.random.normal(ky, (6, 1), jnp.float64)
        xr = jax.random.uniform(kr, (3, 36), jnp.float64)
        theta = empirical_ntk(apply_fn, params, x, implementation="structured")
        lr, steps = 1.0 / float(jnp.linalg.eigvalsh(theta / 6)[-1]), 15  # η·λ_max = 1
        res = linearized_training(apply_fn, params, x, y, xr, dynamics=GradientDescent(lr, steps))
        f_lin = linearize(apply_fn, params)
        opt = optax.sgd(lr)
        loss = lambda p: 0.5 * jnp.mean(jnp.sum((f_lin(p, x) - y) ** 2, 1))  # noqa: E731

        def step(c, _):
            p, s = c
            u, s = opt.update(jax.grad(loss)(p), s)
            return (optax.apply_updates(p, u), s), None

        (p_t, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
        closed = jax.tree_util.tree_map(lambda a: a[0], res.params)
        dw_c = ravel_pytree(closed)[0] - ravel_pytree(params)[0]
        dw_e = ravel_pytree(p_t)[0] - ravel_pytree(params)[0]
        assert np.linalg.norm(dw_c - dw_e) <= 1e-8 * np.linalg.norm(dw_e)
        np.testing.assert_allclose(res.ref_pred[0], f_lin(p_t, xr), rtol=1e-8)


def test_moved_modules_keep_their_import_paths_and_parameter_names():
    import jaxinfo.experiments.sui as exp
    import jaxinfo.train as train

    assert train.MLP is MLP and exp.MLP is ShallowMLP and exp.SmallCNN is SmallCNN
    v = jax.eval_shape(SmallCNN(6, (2, 3)).init, jax.random.PRNGKey(0), jnp.zeros((1, 36)))
    assert set(v["params"]) == {"PatchConv_0", "PatchConv_1", "Dense_0"}
    v = jax.eval_shape(ShallowMLP(4).init, jax.random.PRNGKey(0), jnp.zeros((1, 5)))
    assert count_params(v) == 5 * 4 + 4 + 4 + 1


def test_initialization_does_not_depend_on_float64():
    module = ResNet((2, 3), (1, 1), num_outputs=1)
    init = jax.jit(module.init)
    v32 = init(jax.random.PRNGKey(0), jnp.zeros((1, 6, 6, 1), jnp.float32))
    with jax.enable_x64(True):
        v64 = init(jax.random.PRNGKey(0), jnp.zeros((1, 6, 6, 1), jnp.float32))
    for a, b in zip(jax.tree_util.tree_leaves(v32), jax.tree_util.tree_leaves(v64)):
        assert a.dtype == b.dtype == jnp.float32
        np.testing.assert_array_equal(a, b)

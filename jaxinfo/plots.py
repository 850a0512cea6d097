"""Matplotlib figures (Agg backend: files only, no display needed).

- :func:`scatter_estimated_vs_actual`: log-log scatter of estimated vs actual per-sample
  changes (ground-truth checks of smooth unique information), with the correlations.
- :func:`image_grid`: a grid of images with a score under each (most / least informative
  samples).

Each function draws into a new figure, saves it when ``path`` is given, and returns the
``matplotlib.figure.Figure`` (closed after saving unless ``close=False``).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from jaxinfo._optional import require

__all__ = ["scatter_estimated_vs_actual", "image_grid"]


def _pyplot():
    matplotlib = require("matplotlib", "plotting")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path, close):
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        if close:
            _pyplot().close(fig)
    return fig


def scatter_estimated_vs_actual(estimated: Any, actual: Any, *, path: str | None = None,
                                title: str = "", xlabel: str = "actual (retrained)",
                                ylabel: str = "estimated (closed form)",
                                log: bool = True, close: bool = True):
    """Scatter of ``estimated [r]`` against ``actual [r]`` with the identity line.

    The title gets Pearson / Spearman correlations appended (:func:`jaxinfo.groundtruth.correlation`).
    Log-log axes when ``log`` and every value is positive.
    """
    from jaxinfo.groundtruth import correlation

    e = np.asarray(estimated, np.float64).reshape(-1)
    a = np.asarray(actual, np.float64).reshape(-1)
    c = correlation(e, a)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.scatter(a, e, s=8, alpha=0.6, edgecolors="none")
    lo, hi = min(a.min(), e.min()), max(a.max(), e.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
    if log and lo > 0:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    sub = f"Pearson {c.pearson:.3f}, Spearman {c.spearman:.3f} (n={c.n})"
    ax.set_title(f"{title}\n{sub}" if title else sub, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    return _finish(fig, path, close)


def image_grid(images: Any, scores: Sequence[float], *, labels: Sequence[Any] | None = None,
               path: str | None = None, title: str = "", ncols: int = 10, unit: str = "nats",
               row_titles: Sequence[str] | None = None, close: bool = True):
    """Grid of ``images [r, H, W]`` (or ``[r, H, W, 1]`` / flattened squares) with scores.

    Args:
      images: images to show, in order (row-major in the grid).
      scores: ``[r]`` one score per image, written under it with ``unit``.
      labels: optional per-image label shown with the score.
      path: where to save (PNG); ``None`` only returns the figure.
      title: figure title; ncols: images per row.
      row_titles: optional title at the left of each row.
    """
    imgs = np.asarray(images, np.float32)
    r = imgs.shape[0]
    if imgs.ndim == 2:
        side = int(round(np.sqrt(imgs.shape[1])))
        if side * side != imgs.shape[1]:
            raise ValueError(f"flattened images must be square, got {imgs.shape[1]} pixels")
        imgs = imgs.reshape(r, side, side)
    if imgs.ndim == 4 and imgs.shape[-1] == 1:
        imgs = imgs[..., 0]
    if imgs.ndim != 3:
        raise ValueError(f"images must be [r, H, W], got shape {np.shape(images)}")
    if len(scores) != r:
        raise ValueError(f"need one score per image: {r} images, {len(scores)} scores")
    nrows = -(-r // ncols)
    plt = _pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.55 * nrows + 0.4),
                             squeeze=False)
    for j, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if j >= r:
            ax.axis("off")
            continue
        ax.imshow(imgs[j], cmap="gray_r")
        text = f"{scores[j]:.3g}"
        if labels is not None:
            text = f"y={labels[j]}  {text}"
        ax.set_xlabel(text, fontsize=7)
        if row_titles is not None and j % ncols == 0 and j // ncols < len(row_titles):
            ax.set_ylabel(row_titles[j // ncols], fontsize=8)
    fig.suptitle(f"{title} (scores in {unit})" if title else f"scores in {unit}", fontsize=10)
    fig.tight_layout()
    return _finish(fig, path, close)

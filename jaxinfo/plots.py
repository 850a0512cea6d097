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


# ----------------------------------------------------------------------------- applications
# Figures of jaxinfo.experiments.applications (corrupted-sample detection, under-sampled
# classes, data sources, dataset summarization).

__all__ += ["roc_panels", "box_by_group", "curves_with_bands"]


def roc_panels(panels: dict, positive: Any, *, path: str | None = None, title: str = "",
               close: bool = True):
    """ROC curves of several scores for flagging the ``positive [n]`` samples, one panel each.

    Args:
      panels: ``{panel title: {score name: [n] scores (higher = more suspicious)}}``.
      positive: ``[n]`` bool, the samples to flag (e.g. corrupted).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    pos = np.asarray(positive, bool)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.8), squeeze=False)
    for ax, (name, scores) in zip(axes[0], panels.items()):
        for label, s in scores.items():
            s = np.asarray(s, np.float64)
            fpr, tpr, _ = roc_curve(pos, s)
            ax.plot(fpr, tpr, lw=1.3, ls=":" if label == "random" else "-",
                    label=f"{label} (AUROC {roc_auc_score(pos, s):.3f})")
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.6)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _finish(fig, path, close)


def box_by_group(panels: dict, *, path: str | None = None, title: str = "", ylabel: str = "",
                 log: bool = True, close: bool = True):
    """Box plots of values per group, one panel per quantity.

    Args:
      panels: ``{panel title: {group name: [r] values}}`` (same groups in every panel).
      log: logarithmic y axis (values ≤ 0 are dropped from the plot only).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(0.3 + 1.3 * max(len(g) for g in
                                                                        panels.values())
                                                      * len(panels), 3.8), squeeze=False)
    for ax, (name, groups) in zip(axes[0], panels.items()):
        vals = [np.asarray(v, np.float64) for v in groups.values()]
        if log:
            vals = [v[v > 0] for v in vals]
        ax.boxplot(vals, showfliers=True, flierprops=dict(markersize=2))
        ax.set_xticks(range(1, len(groups) + 1), list(groups), rotation=25, ha="right",
                      fontsize=8)
        if log:
            ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(ylabel)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _finish(fig, path, close)


def curves_with_bands(x: Any, curves: dict, *, path: str | None = None, title: str = "",
                      xlabel: str = "", ylabel: str = "", logx: bool = False,
                      logy: bool = False, close: bool = True):
    """Lines with optional shaded bands.

    Args:
      x: ``[p]`` abscissae.
      curves: ``{name: [p] values}`` or ``{name: ([p] centre, [p] low, [p] high)}``.
      logx, logy: logarithmic axes.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    x = np.asarray(x, np.float64)
    for name, c in curves.items():
        if isinstance(c, tuple):
            mid, lo, hi = (np.asarray(a, np.float64) for a in c)
            line, = ax.plot(x, mid, marker="o", ms=3, label=name)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
        else:
            ax.plot(x, np.asarray(c, np.float64), marker="o", ms=3, label=name)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _finish(fig, path, close)


def memorization_figures(rows: Sequence[dict], checkpoint_dir: str | None = None,
                         protocol: Any = None):
    """The memorization sweep's two figures.

    Args:
      rows: :func:`jaxinfo.experiments.memorization.run_memorization` rows (several modes).
      checkpoint_dir: where the sweep stored each level's training curves
        (``<mode>_<level>/curves.npz``); ``None`` skips the curves.
      protocol: the :class:`~jaxinfo.experiments.memorization.Protocol` (for titles).

    Returns:
      ``(measures, training)``: entropy, MI and validation accuracy per layer against the
      corruption level (mean over seeds, band = min–max over seeds); validation accuracy
      against the optimizer step per level, with the chosen checkpoints marked.
    """
    plt = _pyplot()
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    measures, axes = plt.subplots(3, len(modes), figsize=(5 * len(modes), 9), squeeze=False)
    for j, mode in enumerate(modes):
        sel = [r for r in rows if r["mode"] == mode]
        levels = sorted({r["level"] for r in sel})
        for i, (col, label) in enumerate((("mean_entropy", "mean entropy (nats)"),
                                          ("mean_mi", "mean MI (nats)"),
                                          ("val_acc", "validation accuracy"))):
            ax = axes[i, j]
            for layer in (layers if col != "val_acc" else ["overall"]):
                vals = np.array([[r[col] for r in sel if r["level"] == lv and r["layer"] == layer]
                                 for lv in levels], float)
                if not np.all(np.isfinite(vals)):
                    continue
                ax.plot(levels, vals.mean(1), marker="o", label=layer)
                ax.fill_between(levels, vals.min(1), vals.max(1), alpha=0.2)
            ax.set_xlabel("colour noise e" if mode == "colored" else "label noise β")
            ax.set_ylabel(label)
            if i == 0:
                ax.set_title(mode)
                ax.legend(fontsize=7)
    measures.tight_layout()
    training, axes = plt.subplots(2, len(modes), figsize=(5 * len(modes), 7), squeeze=False)
    for j, mode in enumerate(modes):
        acc_ax, loss_ax = axes[0, j], axes[1, j]
        missing = []
        for lv in sorted({r["level"] for r in rows if r["mode"] == mode}):
            path = None if checkpoint_dir is None else \
                os.path.join(checkpoint_dir, f"{mode}_{lv:g}", "curves.npz")
            if path is None or not os.path.exists(path):
                missing.append(f"{lv:g}")
                continue
            with np.load(path) as z:
                checks, at_checks = z["check_steps"], z["val_at_checks"]  # [C], [C, R]
                loss, best = z["loss_curve"], z["best_step"]              # [steps, R], [R]
            line, = acc_ax.plot(checks, at_checks.mean(1), marker=".", lw=1, label=f"{lv:g}")
            acc_ax.fill_between(checks, at_checks.min(1), at_checks.max(1), alpha=0.15,
                                color=line.get_color())
            for b in np.unique(best):
                acc_ax.axvline(b, color=line.get_color(), ls=":", lw=0.8)
            steps = np.arange(1, len(loss) + 1)
            smooth = max(1, len(loss) // 200)
            kernel = np.ones(smooth) / smooth
            valid = np.convolve(np.ones(len(loss)), kernel, mode="same")  # no zero padding
            mean = np.convolve(loss.mean(1), kernel, mode="same") / valid
            loss_ax.plot(steps, mean, lw=0.8, color=line.get_color(), label=f"{lv:g}")
        for ax in (acc_ax, loss_ax):
            ax.set_xscale("log")
            ax.set_xlabel("optimizer step")
            if ax.lines:
                ax.legend(fontsize=7, title="level")
            if missing:  # said on the figure, not left as an empty or partial panel
                ax.text(0.02, 0.02, "no curves stored for level " + ", ".join(missing),
                        transform=ax.transAxes, fontsize=7, color="0.4")
        acc_ax.set_ylabel("validation accuracy at checks\n(window mean; band: seeds)")
        acc_ax.set_title(f"{mode}: dotted = chosen checkpoints")
        loss_ax.set_ylabel("training cross-entropy (nats)")
    training.tight_layout()
    return measures, training

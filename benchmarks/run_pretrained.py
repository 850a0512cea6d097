"""Pretrained ResNet, fine-tuned on MNIST 4 vs 9: SUI vs real leave-one-out fine-tuning.

Phases (each cached in ``--work``; an interrupted run resumes where it stopped):

1. ``pretrain``: the ResNet of :class:`jaxinfo.experiments.pretrained.PretrainConfig` on
   full-size Fashion-MNIST, then on the 8 bundled MNIST digits other than 4 and 9 (orbax
   checkpoint per epoch), loaded back from its orbax checkpoint.
2. ``groundtruth``: for every (init, regime) of ``RUNS``: the closed-form SUI of all n training
   samples (float64, linearized around the starting weights) and real leave-one-out fine-tuning
   (:func:`jaxinfo.retrain_loo`, same ``GradientDescent``) of a random subset; Pearson /
   Spearman of weight and functional SI against the real changes.
3. ``findings``: weight vs functional SI on the same samples, SI vs training-set size, the most
   and least informative images of the pretrained network (closed form).
4. ``report``: ``benchmarks/RESULTS_pretrained.md`` and ``benchmarks/figures/pretrained_*.png``.

    python benchmarks/run_pretrained.py                       # everything
    python benchmarks/run_pretrained.py --only pretrained/last_block random/last_block
    python benchmarks/run_pretrained.py --report-only
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxinfo.checkpoint import atomic_write_bytes, load_params  # noqa: E402
from jaxinfo.dynamics import GradientDescent  # noqa: E402
from jaxinfo.experiments.pretrained import (PretrainConfig, finetune_variables,  # noqa: E402
                                            load_task, make_resnet, pretrain, random_variables)
from jaxinfo.finetune import finetune_regime  # noqa: E402
from jaxinfo.groundtruth import correlation, retrain_loo  # noqa: E402
from jaxinfo.linearize import kernel_matrix  # noqa: E402
from jaxinfo.models import count_params  # noqa: E402
from jaxinfo.ntk import empirical_ntk  # noqa: E402
from jaxinfo.sui import unique_information_from_kernel  # noqa: E402
from _timing import parse_with_platform  # noqa: E402

CONFIG = PretrainConfig()
N_TRAIN, N_REF, SIZE = 500, 500, 14
HEAD_KEY, RANDOM_KEY, SUBSET_SEED = 1, 2, 1
# (init, regime) -> settings. lr = lr_scale / λ_max(Θ0/n), so every run is equally far from the
# discrete-GD stability limit 2/λ_max (η·λ_max = lr_scale); `steps` full-batch steps.
RUNS = {
    "pretrained/last_block": dict(steps=200, lr_scale=0.5, n_retrain=128, chunk=16,
                                  conv_impl="patches"),
    "random/last_block": dict(steps=200, lr_scale=0.5, n_retrain=128, chunk=16,
                              conv_impl="patches"),
    "pretrained/linear_probe": dict(steps=200, lr_scale=0.5, n_retrain=128, chunk=64,
                                    conv_impl="patches"),
    "random/linear_probe": dict(steps=200, lr_scale=0.5, n_retrain=128, chunk=64,
                                conv_impl="patches"),
    # float64 retraining: the full network's LOO changes over 20 small steps are near the
    # float32 round-off floor (the float32 run is kept in pretrained_full_float32.json)
    "pretrained/full": dict(steps=20, lr_scale=0.5, n_retrain=16, chunk=1, conv_impl="lax",
                            dtype="float64"),
    # the same closed form, 64 removals in float32 (the 16-sample run above was all that fit at
    # first; resumable per model)
    "pretrained/full_n64": dict(steps=20, lr_scale=0.5, n_retrain=64, chunk=1, conv_impl="lax",
                                regime="full"),
    "random/full_n64": dict(steps=20, lr_scale=0.5, n_retrain=64, chunk=1, conv_impl="lax",
                            regime="full"),
    "random/full": dict(steps=20, lr_scale=0.5, n_retrain=16, chunk=1, conv_impl="lax"),
}
SIZES = (50, 100, 200, 500)  # SI vs training-set size (closed form, prefixes of one permutation)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _save_json(path: str, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, default=float).encode())


def phase_pretrain(work: str) -> tuple[dict, dict]:
    """Pretrains (or resumes), then loads the final variables back from the orbax checkpoint."""
    t0 = time.perf_counter()
    variables, rows = pretrain(CONFIG, os.path.join(work, "pretrain"), log=log)
    like = jax.tree_util.tree_map(np.asarray, variables)
    loaded = load_params(os.path.join(work, "pretrain", "final"), like=like)
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(like),
                                                    jax.tree_util.tree_leaves(loaded)))
    info = dict(rows=rows, reload_identical=bool(same), wall_s=time.perf_counter() - t0)
    log(f"pretraining: {sum(r['wall_s'] for r in rows):.0f} s of epochs; orbax reload identical: "
        f"{same}")
    return loaded, info


def build(init: str, regime: str, pre: dict, task, conv_impl: str, dtype):
    """(regime, x, x_ref, y) for one run, in ``dtype``."""
    x_tr = jnp.asarray(task.x_train, dtype)
    module = make_resnet(CONFIG, 1, conv_impl=conv_impl)
    if init == "pretrained":
        variables = finetune_variables(pre, CONFIG, jax.random.PRNGKey(HEAD_KEY))
    else:
        variables = random_variables(CONFIG, jax.random.PRNGKey(RANDOM_KEY), task.x_train)
    variables = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), variables)
    reg = finetune_regime(module, variables, regime)
    return reg, reg.prepare(x_tr), reg.prepare(jnp.asarray(task.x_ref, dtype))


def kernels(reg, x, xr, cache: str | None = None):
    """Float64 Θ [n, n] and Θ* [m, n] (one output) and f0 = f(x) [n, 1]; cached in ``cache``
    (an ``.npz``) when given."""
    if cache is not None and os.path.exists(cache):
        with np.load(cache) as z:
            return z["theta"], z["theta_ref"], z["f0"]
    theta = kernel_matrix(empirical_ntk(reg.apply_fn, reg.params, x, trace_axes=()))
    theta_ref = kernel_matrix(empirical_ntk(reg.apply_fn, reg.params, xr, x, trace_axes=()))
    f0 = reg.apply_fn(reg.params, x)
    out = np.asarray(theta), np.asarray(theta_ref), np.asarray(f0)
    if cache is not None:
        from jaxinfo.checkpoint import atomic_savez

        atomic_savez(cache, theta=out[0], theta_ref=out[1], f0=out[2])
    return out


def run_one(name: str, pre: dict, task, work: str, progress: bool) -> dict:
    out = os.path.join(work, f"{name.replace('/', '_')}.json")
    if os.path.exists(out):
        with open(out) as fh:
            return json.load(fh)
    init, regime = name.split("/")
    s = RUNS[name]
    regime = s.get("regime", regime)
    rec = dict(name=name, init=init, **{"dtype": "float32", **s, "regime": regime})
    est_path = os.path.join(work, f"estimate_{name.replace('/', '_')}.json")
    if os.path.exists(est_path):  # the closed form of an interrupted run
        with open(est_path) as fh:
            rec.update(json.load(fh))
        dyn = GradientDescent(lr=rec["lr"], t=s["steps"])
    else:
        rec.update(_estimate(name, init, regime, s, pre, task, work, progress))
        _save_json(est_path, {k: rec[k] for k in ESTIMATE_KEYS})
        dyn = GradientDescent(lr=rec["lr"], t=s["steps"])
    return _retrain(name, init, regime, s, pre, task, work, progress, rec, dyn, out)


ESTIMATE_KEYS = ("n_params", "n_train", "n_ref", "lam_max", "lr", "estimate_s", "estimate_method",
                 "input_shape", "est_w_all", "est_f_all", "weight_si", "functional_si",
                 "sample_loss")


def _estimate(name, init, regime, s, pre, task, work, progress) -> dict:
    """The float64 closed form of one run (every training sample)."""
    n = len(task.x_train)
    rec = {}
    t0 = time.perf_counter()
    with jax.enable_x64(True):
        reg, x, xr = build(init, regime, pre, task, s["conv_impl"], jnp.float64)
        theta, theta_ref, f0 = kernels(reg, x, xr, os.path.join(
            work, f"kernels_{name.replace('/', '_')}.npz"))
        lam_max = float(np.linalg.eigvalsh(theta)[-1]) / n
        lr = s["lr_scale"] / lam_max
        dyn = GradientDescent(lr=lr, t=s["steps"])
        r0 = f0 - np.asarray(task.y_train, np.float64)
        ui = unique_information_from_kernel(theta, r0, dyn, theta_ref=theta_ref,
                                            progress=progress)
    rec.update(n_params=count_params(reg.params), n_train=n, n_ref=len(task.x_ref),
               lam_max=lam_max, lr=lr, estimate_s=time.perf_counter() - t0,
               estimate_method=ui.method, input_shape=list(np.shape(x)[1:]),
               est_w_all=np.asarray(ui.weight_change_sq).tolist(),
               est_f_all=np.asarray(ui.function_change_sq).tolist(),
               weight_si=np.asarray(ui.weight_si).tolist(),
               functional_si=np.asarray(ui.functional_si).tolist(),
               sample_loss=np.asarray(ui.sample_loss).tolist())
    log(f"{name}: closed form in {rec['estimate_s']:.1f} s ({ui.method}); "
        f"{rec['n_params']} trainable params; λ_max(Θ/n) = {lam_max:.4g}, lr = {lr:.4g}")
    return rec


def _retrain(name, init, regime, s, pre, task, work, progress, rec, dyn, out) -> dict:
    """Real leave-one-out fine-tuning (float32 unless the run says ``dtype="float64"``)."""
    n = len(task.x_train)
    idx = np.sort(np.random.default_rng(SUBSET_SEED).choice(n, s["n_retrain"], replace=False))
    f64 = s.get("dtype") == "float64"
    t0 = time.perf_counter()
    with jax.enable_x64(f64):
        dt = jnp.float64 if f64 else jnp.float32
        reg, x, xr = build(init, regime, pre, task, s["conv_impl"], dt)
        act = retrain_loo(reg.apply_fn, reg.params, x, jnp.asarray(task.y_train, dt), xr,
                          dynamics=dyn, indices=idx, chunk_size=s["chunk"], progress=progress,
                          checkpoint_dir=os.path.join(work, f"ckpt_{name.replace('/', '_')}"
                                                      + ("_f64" if f64 else "")))
    rs = time.perf_counter() - t0
    rec.update(retrain_s=rs, per_retraining_s=rs / (len(idx) + 1),
               retrain_all_s=rs * (n + 1) / (len(idx) + 1), full_train_loss=act.settings[
                   "full_loss"], indices=idx.tolist(),
               act_w=act.weight_change_sq.tolist(), act_f=act.function_change_sq.tolist())
    rows = []
    for q, est, real in (("weight", np.asarray(rec["est_w_all"])[idx], act.weight_change_sq),
                         ("function", np.asarray(rec["est_f_all"])[idx], act.function_change_sq)):
        c = correlation(est, real)
        rows.append(dict(quantity=q, pearson=c.pearson, spearman=c.spearman,
                         pearson_log=c.pearson_log, median_ratio=float(np.median(est / real))))
    rec["rows"] = rows
    log(f"{name}: retraining {len(idx)} + 1 models x {s['steps']} steps in {rs:.0f} s "
        f"({rec['per_retraining_s']:.2f} s per retraining); " + "; ".join(
            f"{r['quantity']}: Pearson {r['pearson']:.3f} Spearman {r['spearman']:.3f}"
            for r in rows))
    _save_json(out, rec)
    return rec


def phase_sizes(pre: dict, task, work: str, regime: str = "full") -> dict:
    """Mean per-sample SI for training sets of SIZES (prefixes), same lr and t, fixed X*."""
    out = os.path.join(work, f"sizes_{regime}.json")
    if os.path.exists(out):
        with open(out) as fh:
            return json.load(fh)
    t0 = time.perf_counter()
    s = RUNS[f"pretrained/{regime}"]
    res = dict(regime=regime, sizes=list(SIZES), rows=[])
    with jax.enable_x64(True):
        reg, x, xr = build("pretrained", regime, pre, task, s["conv_impl"], jnp.float64)
        theta, theta_ref, f0 = kernels(reg, x, xr, os.path.join(
            work, f"kernels_pretrained_{regime}.npz"))
        n = len(x)
        lr = s["lr_scale"] / (float(np.linalg.eigvalsh(theta)[-1]) / n)
        dyn = GradientDescent(lr=lr, t=s["steps"])
        r0 = f0 - np.asarray(task.y_train, np.float64)
        for m in SIZES:
            ui = unique_information_from_kernel(theta[:m, :m], r0[:m], dyn,
                                                theta_ref=theta_ref[:, :m], progress=False)
            w, f = np.asarray(ui.weight_si), np.asarray(ui.functional_si)
            res["rows"].append(dict(n=m, mean_weight_si=float(w.mean()),
                                    median_weight_si=float(np.median(w)),
                                    mean_functional_si=float(f.mean()),
                                    median_functional_si=float(np.median(f))))
            log(f"sizes/{regime}: n={m} mean weight SI {w.mean():.3e}, mean functional SI "
                f"{f.mean():.3e} nats")
    res.update(lr=lr, steps=s["steps"], wall_s=time.perf_counter() - t0)
    _save_json(out, res)
    return res


COLUMNS = ["run", "n_params", "steps", "lr", "eta_lambda_max", "n_retrained", "quantity",
           "pearson", "spearman", "pearson_log", "median_ratio"]


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _table(rows, cols):
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def report(pre_info, records, sizes, task, args) -> str:
    from jaxinfo.plots import image_grid, scatter_estimated_vs_actual

    fig_dir = os.path.join(HERE, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    rows, figs = [], []
    for rec in records:
        idx = np.asarray(rec["indices"])
        for r in rec["rows"]:
            rows.append(dict(r, run=rec["name"], n_params=rec["n_params"], steps=rec["steps"],
                             lr=rec["lr"], eta_lambda_max=rec["lr_scale"],
                             n_retrained=len(idx)))
        for q, key_e, key_a in (("weight", "est_w_all", "act_w"),
                                ("function", "est_f_all", "act_f")):
            path = os.path.join(fig_dir, f"finetune_{rec['name'].replace('/', '_')}_{q}.png")
            scatter_estimated_vs_actual(np.asarray(rec[key_e])[idx], rec[key_a], path=path,
                                        title=f"{rec['name']}: "
                                        + ("‖Δw‖²" if q == "weight" else "mean ‖Δf‖² on X*"),
                                        xlabel="actual (LOO fine-tuning)",
                                        ylabel="estimated (linearized closed form)")
            figs.append(os.path.relpath(path, HERE))
    time_rows = [dict(run=rec["name"], n_train=rec["n_train"], n_retrained=len(rec["indices"]),
                      steps=rec["steps"], estimate_s=rec["estimate_s"],
                      retrain_s=rec["retrain_s"], per_retraining_s=rec["per_retraining_s"],
                      retrain_all_s=rec["retrain_all_s"], full_train_loss=rec["full_train_loss"])
                 for rec in records]
    extra = []
    by = {rec["name"]: rec for rec in records}
    # weight SI vs functional SI, most / least informative images: pretrained, best regime
    for name in ("pretrained/full", "pretrained/last_block"):
        if name not in by:
            continue
        rec = by[name]
        w, f = np.asarray(rec["weight_si"]), np.asarray(rec["functional_si"])
        loss = np.asarray(rec["sample_loss"])
        c = correlation(w, f)
        digit = np.where(task.y_train[:, 0] > 0.5, 9, 4)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(9, 4))
        for d, col in ((4, "tab:blue"), (9, "tab:orange")):
            sel = digit == d
            ax[0].scatter(w[sel], f[sel], s=6, c=col, label=f"digit {d}")
            ax[1].scatter(loss[sel], f[sel], s=6, c=col, label=f"digit {d}")
        for a_, xl in ((ax[0], "weight SI (nats)"), (ax[1], "training loss ½(f−y)² at t")):
            a_.set_xscale("log")
            a_.set_yscale("log")
            a_.set_xlabel(xl)
            a_.set_ylabel("functional SI (nats)")
            a_.legend()
        ax[0].set_title(f"{name}: Pearson {c.pearson:.2f}, Spearman {c.spearman:.2f}")
        fig.tight_layout()
        p = os.path.join(fig_dir, f"finetune_{name.replace('/', '_')}_weight_vs_function.png")
        fig.savefig(p, dpi=110)
        plt.close(fig)
        figs.append(os.path.relpath(p, HERE))
        top = 10
        lines = []
        for qname, vals in (("functional", f), ("weight", w)):
            order = np.argsort(-vals)
            sel = np.concatenate([order[:top], order[::-1][:top]])
            p = os.path.join(fig_dir, f"finetune_{name.replace('/', '_')}_{qname}_most_least.png")
            image_grid(task.x_train[sel, ..., 0], vals[sel], labels=digit[sel], path=p,
                       ncols=top, title=f"{name}: {qname} SI, most (top) / least (bottom)",
                       row_titles=["most", "least"])
            figs.append(os.path.relpath(p, HERE))
            lines.append(f"{qname} SI: top-{top} digits {digit[order[:top]].tolist()}, "
                         f"bottom-{top} {digit[order[::-1][:top]].tolist()}; max/median "
                         f"{vals.max() / np.median(vals):.1f}")
        ow, of = np.argsort(-w)[:50], np.argsort(-f)[:50]
        extra.append(dict(run=name, pearson_w_f=c.pearson, spearman_w_f=c.spearman,
                          spearman_f_loss=float(correlation(f, loss).spearman),
                          spearman_w_loss=float(correlation(w, loss).spearman),
                          top50_overlap=len(set(ow) & set(of)),
                          cv_weight=float(w.std() / w.mean()),
                          cv_function=float(f.std() / f.mean()), notes="; ".join(lines)))
    md = ["# Pretrained ResNet fine-tuned on MNIST 4 vs 9: SUI vs real leave-one-out fine-tuning",
          "",
          f"Generated by `benchmarks/run_pretrained.py` on {time.strftime('%Y-%m-%d %H:%M')} "
          f"({platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs).", "",
          SUMMARY_PLACEHOLDER, "", PROTOCOL, "",
          "## Pretraining", "",
          _table(pre_info["rows"], ["phase", "epoch", "n_train", "train_loss", "test_acc",
                                    "wall_s"]), "",
          f"Reloaded from the orbax checkpoint: identical arrays = {pre_info['reload_identical']}.",
          "", "## Correlation of estimated vs actual leave-one-out changes", "",
          _table(rows, COLUMNS), "",
          "## Time per phase", "", _table(time_rows, list(time_rows[0]) if time_rows else []),
          "", "`per_retraining_s`: wall seconds per fine-tuned model (the full model included); "
          "`retrain_all_s`: extrapolated to all n leave-one-out models.", ""]
    if extra:
        md += ["## Weight SI vs functional SI (same samples, pretrained)", "",
               _table(extra, [k for k in extra[0] if k != "notes"]), ""]
        md += [f"- {e['run']}: {e['notes']}" for e in extra] + [""]
    for reg, sz in sizes.items():
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ns = np.asarray([r["n"] for r in sz["rows"]], float)
        fig, ax = plt.subplots(figsize=(4.5, 3.6))
        for key, lab in (("mean_weight_si", "weight SI (mean)"),
                         ("mean_functional_si", "functional SI (mean)"),
                         ("median_functional_si", "functional SI (median)")):
            ax.loglog(ns, [r[key] for r in sz["rows"]], "o-", label=lab)
        ref = sz["rows"][0]["mean_functional_si"] * ns[0] / ns
        ax.loglog(ns, ref, "k--", lw=0.8, label="∝ 1/n")
        ax.set_xlabel("training-set size n")
        ax.set_ylabel("per-sample SI (nats)")
        ax.set_title(f"pretrained/{reg}: SI vs n")
        ax.legend(fontsize=8)
        fig.tight_layout()
        p = os.path.join(fig_dir, f"finetune_pretrained_{reg}_si_vs_n.png")
        fig.savefig(p, dpi=110)
        plt.close(fig)
        figs.append(os.path.relpath(p, HERE))
        md += [f"## SI vs training-set size (pretrained, {reg}, closed form)", "",
               f"lr = {sz['lr']:.4g}, t = {sz['steps']}, the same 500 reference images; the "
               "smaller training sets are prefixes of one permutation.", "",
               _table(sz["rows"], list(sz["rows"][0])), ""]
    md += ["## Figures", ""] + [f"- `{p}`" for p in figs] + [""]
    text = "\n".join(md)
    summary_path = os.path.join(HERE, "pretrained_summary.md")
    summary = open(summary_path).read() if os.path.exists(summary_path) else "(summary pending)"
    text = text.replace(SUMMARY_PLACEHOLDER, summary.strip())
    with open(args.results, "w") as fh:
        fh.write(text)
    return text


SUMMARY_PLACEHOLDER = "<<SUMMARY>>"

PROTOCOL = f"""\
## Protocol (what was run)

- Network: `jaxinfo.models.ResNet(stage_widths={CONFIG.stage_widths}, blocks={CONFIG.blocks},
  layers=Layers(norm="{CONFIG.norm}"))` — ResNet-18 layout (CIFAR stem: 3×3 stride-1 convolution, no max-pool;
  4 stages of 2 basic blocks; global average pooling; linear head), 8–32× narrower than
  ResNet-18's 64–512 channels (the first two stages 8, the last two 16). Images 14×14 (2×2 average
  pooling of MNIST / Fashion-MNIST), so the feature maps are 14, 7, 4, 2.
- Pretraining (`jaxinfo.experiments.pretrained.pretrain`, Adam lr {CONFIG.lr}, batch
  {CONFIG.batch_size}, BatchNorm in training mode): {CONFIG.phases[0][1]} epochs of full-size
  Fashion-MNIST (60,000 images, `load_idx("fashion_mnist")`, 10 classes), then
  {CONFIG.phases[1][1]} epochs of the 8 bundled MNIST digits other than 4 and 9 (3,600 training
  images, a fresh 8-class head). Orbax checkpoint per epoch, loaded back (`load_params`).
- Fine-tuning task: MNIST 4 vs 9 (bundled), n = {N_TRAIN} training images and a disjoint
  reference set X* of {N_REF} images, one output, targets 0 (4) / 1 (9), loss
  (1/n)Σ½(f − y)², full-batch GD, no weight decay. Pretrained: the pretrained backbone and
  BatchNorm statistics, a fresh 1-output head (Flax default init, key {HEAD_KEY}). Random init:
  the same network from `PRNGKey({RANDOM_KEY})`, BatchNorm statistics computed on the 500
  training images (so frozen normalization standardizes as for the pretrained network).
  BatchNorm statistics are frozen during fine-tuning in both.
- Regimes (`jaxinfo.finetune.finetune_regime`): `full` (every weight trains), `last_block`
  (only `stage3/block1` and the head train; the frozen front is evaluated once and cached),
  `linear_probe` (only the head, on the frozen backbone's 16 pooled features: a linear model).
- Learning rate: lr = η·λ_max / λ_max(Θ0/n) with η·λ_max = 0.5 (column `eta_lambda_max`), i.e.
  each run a quarter of the way to the discrete-GD stability limit, computed from the NTK at the
  starting weights; the same `GradientDescent(lr, t)` object drives the closed form and
  `retrain_loo`.
- Estimates: `unique_information_from_kernel` on the float64 empirical NTK of the regime's
  `apply_fn` at the starting weights (Θ [n, n], Θ* [M, n]); ‖Δw‖² and mean over X* of ‖Δf‖².
- Ground truth: `jaxinfo.retrain_loo` — the real network fine-tuned without sample i (mean loss
  over the n − 1 kept samples) from the same starting weights, float32 (float64 for
  `pretrained/full`; its float32 run gave the same correlations), vmapped over removal
  masks (`chunk` models at once; the full-network runs one model at a time because vmapped
  `lax.conv` over per-model kernels is very slow on CPU), checkpointed per chunk.
- Correlations over the retrained samples (a random subset, seed {SUBSET_SEED}); `median_ratio` =
  median of estimated / actual.

## Reductions against the paper's protocol (2 CPU cores shared with 4 other jobs)

- 14×14 images; widths 8–16 instead of 64–512.
- t = 200 steps (last block, linear probe) and t = 20 (full network) instead of 2000, with the
  step size set from the NTK (η·λ_max = 0.5) instead of a fixed one.
- Retrained subsets: 128 of the 500 training samples for last block and linear probe; for the
  full network 64 (`*/full_n64`, float32) plus a first 16-sample run (`*/full`; float64 for
  the pretrained network) — the same closed form for both. One full-network retraining costs
  11–43 s for 20 steps here, so all 500 removals, or the paper's t = 2000, did not fit.

Commands (the run was interrupted and resumed several times; every phase is cached in `--work`):

    make data                                   # Fashion-MNIST IDX files (Debian package)
    PYTHONPATH=. python benchmarks/run_pretrained.py --work /tmp/jaxinfo_pre
    PYTHONPATH=. python benchmarks/check_pretrained_exact.py   # Lanczos vs brute force, full net
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=os.environ.get("JAXINFO_PRE_WORK", "/tmp/jaxinfo_pre"))
    ap.add_argument("--only", nargs="*", default=None, help="run names (init/regime)")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS_pretrained.md"))
    args = parse_with_platform(ap, argv)
    os.makedirs(args.work, exist_ok=True)
    t_all = time.perf_counter()
    pre, pre_info = phase_pretrain(args.work)
    task = load_task(N_TRAIN, N_REF, size=SIZE)
    records = []
    for name in args.only or list(RUNS):
        cached = os.path.exists(os.path.join(args.work, f"{name.replace('/', '_')}.json"))
        if args.report_only and not cached:
            continue
        log(f"== {name}: {RUNS[name]}")
        try:
            records.append(run_one(name, pre, task, args.work, not args.no_progress))
        except Exception as err:  # one failing run must not stop the others
            log(f"   FAILED: {type(err).__name__}: {err}")
    sizes = {}
    for reg in ("last_block", "full"):
        done = os.path.exists(os.path.join(args.work, f"sizes_{reg}.json"))
        # the full network's kernels take ~10 min here: only when cached by its run
        cheap = reg != "full" or os.path.exists(os.path.join(args.work,
                                                             "kernels_pretrained_full.npz"))
        if not done and (args.report_only or not cheap):
            continue
        sizes[reg] = phase_sizes(pre, task, args.work, reg)
    report(pre_info, records, sizes, task, args)
    log(f"done in {time.perf_counter() - t_all:.0f} s; wrote {args.results}")


if __name__ == "__main__":
    main()

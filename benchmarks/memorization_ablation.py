"""Ablation table for the memorization diagnosis: one protocol element changed at a time.

Measurement elements (checkpoint rule, binning, bin assignment, MI estimator, evaluation inputs)
are measured on the networks of one finished sweep (``--base``, trained by
``run_memorization.py``) without retraining (``measure_variants``); training elements
(schedule, data set and size) come from other finished sweeps (``--train-run NAME=DIR``, each
with its own ``summary.json``). Prints and writes ``--out``/ablation.{md,json}: Kendall τ per
mode and measure with its 95 % bootstrap interval over seeds and the mean per-seed τ.

    python benchmarks/memorization_ablation.py \\
        --base benchmarks/memorization_runs/authors_epochs_mnist_s10 --seeds 10 \\
        --protocol authors-epochs --dataset mnist --mi binned \\
        --train-run "schedule in steps=benchmarks/memorization_runs/authors_steps_mnist_s5" \\
        --out benchmarks/memorization_runs

Resumable: each variant's rows are stored in the base sweep's level folders.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from jaxinfo.experiments.memorization import (MEMORIZATION, Protocol, kendall,
                                              measure_variants)
from run_memorization import add_sweep_args, sweep_protocol
from _timing import parse_with_platform  # noqa: E402


def variants_of(p: Protocol, final_ksg: bool = False) -> dict[str, Protocol]:
    """The measurement ablations: the authors' measurement first, then one change each.

    Binning and bin assignment change only the entropy, so those variants skip MI (their MI is
    the authors' row's); the checkpoint and training-inputs variants recompute it with binned
    MI (KSG on every model of every variant is hours on this CPU; the binned row above gives
    the estimator's own effect on the same networks).
    """
    authors = p.replace(mi_estimator="ksg", ksg_convention="raw", binning="all_layers",
                        assignment="digitize", checkpoint="best", eval_inputs="validation")
    entropy_only = authors.replace(mi_estimator=None)
    extra = {"checkpoint: final (KSG)": authors.replace(checkpoint="final")} if final_ksg else {}
    return {
        "authors' protocol": authors,
        "MI: binned (100 bins)": authors.replace(mi_estimator="binned"),
        "binning: per layer": entropy_only.replace(binning="global"),
        "binning: per neuron": entropy_only.replace(binning="per_neuron"),
        "bin assignment: histogram": entropy_only.replace(assignment="histogram"),
        "checkpoint: final (MI binned)": authors.replace(checkpoint="final",
                                                         mi_estimator="binned"),
        "inputs: training images (MI binned)": authors.replace(
            eval_inputs="train", n_eval=p.n_eval or _n_val(p), mi_estimator="binned"),
    } | extra


def _n_val(p: Protocol) -> int:
    return p.n_val or {"mnist": 1000, "fashion_mnist": 10_000, "digits": 360}[p.dataset]


def taus(rows: list[dict], mode: str, layer: str = "overall", against: str = "accuracy") -> dict:
    out = {}
    for measure in ("entropy", "mi"):
        if not all(np.isfinite(r["mean_mi"]) for r in rows) and measure == "mi":
            continue
        res = kendall(rows, measure, MEMORIZATION[mode], layer=layer, against=against)
        out[measure] = dict(tau=res.tau, low=res.low, high=res.high,
                            per_seed_mean=float(np.mean(res.per_seed)),
                            seeds=len(res.per_seed))
    return out


def level_table(rows: list[dict], step: str = "best_step") -> list[str]:
    """Markdown rows: mode, level, entropy, MI, validation accuracy, chosen step (``step``:
    ``"best_step"`` for the best checkpoint, ``"stop_step"`` for the final one)."""
    out = ["| mode | level | entropy (nats) | MI (nats) | val acc | chosen step (median) |",
           "|---|---|---|---|---|---|"]
    for mode in dict.fromkeys(r["mode"] for r in rows):
        sel = [r for r in rows if r["mode"] == mode and r["layer"] == "overall"]
        for level in sorted({r["level"] for r in sel}):
            g = [r for r in sel if r["level"] == level]
            col = lambda k: np.array([r[k] for r in g], float)  # noqa: E731
            cells = [f"{col(k).mean():.3f} ± {col(k).std():.3f}"
                     for k in ("mean_entropy", "mean_mi", "val_acc")]
            out.append(f"| {mode} | {level:g} | " + " | ".join(cells)
                       + f" | {np.median(col(step)):.0f} |")
    return out


def cell(t: dict | None) -> str:
    if t is None:
        return "–"
    return f"{t['tau']:+.2f} [{t['low']:+.2f}, {t['high']:+.2f}] ({t['per_seed_mean']:+.2f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    add_sweep_args(ap)
    ap.add_argument("--modes", default="colored,shuffled")
    ap.add_argument("--train-run", action="append", default=[],
                    help="NAME=DIR of another finished sweep (a training ablation)")
    ap.add_argument("--final-ksg", action="store_true",
                    help="also the final checkpoint measured with KSG (an hour per mode here)")
    ap.add_argument("--only", default=None, help="';'-separated variant names to measure")
    ap.add_argument("--without-ksg", action="store_true",
                    help="skip the variants measured with KSG (hours per sweep on a CPU)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--figures", default=None,
                    help="path prefix for the figures of the authors' and final-checkpoint rows")
    args = parse_with_platform(ap)

    base = sweep_protocol(args)
    variants = variants_of(base, final_ksg=args.final_ksg)
    if args.only:
        keep = args.only.split(";")
        variants = {k: v for k, v in variants.items() if k in keep}
    if args.without_ksg:
        variants = {k: v for k, v in variants.items() if v.mi_estimator != "ksg"}
    table: dict[str, dict] = {}
    got_all: dict[str, list[dict]] = {}
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        got = measure_variants(base, mode, variants, out_dir=args.base, seeds=args.seeds,
                               key=args.key)
        for name, rows in got.items():
            got_all.setdefault(name, []).extend(rows)
        print(f"{mode}: {len(variants)} variants measured in {time.perf_counter() - t0:.0f} s",
              flush=True)
        for name, rows in got.items():
            table.setdefault(name, {})[mode] = taus(rows, mode)
    authors = "authors' protocol"
    if authors in variants:  # the same networks and measurement, one hidden layer at a time
        for mode in args.modes.split(","):
            rows = [r for r in got_all[authors] if r["mode"] == mode]
            for layer in sorted({r["layer"] for r in rows} - {"overall"}):
                table.setdefault(f"layer: {layer} only", {})[mode] = taus(rows, mode, layer)
    for spec in args.train_run:
        name, path = spec.split("=", 1)
        if not os.path.exists(os.path.join(path, "summary.json")):
            print(f"skipped {name!r}: {path} has no summary.json yet (sweep not finished)")
            continue
        with open(os.path.join(path, "summary.json")) as f:
            summ = json.load(f)
        for mode, res in summ["modes"].items():
            table.setdefault(name, {})[mode] = taus(res["rows"], mode)

    lines = [f"Base sweep: `{args.base}` ({args.seeds} seeds); τ [95 % bootstrap over seeds] "
             "(mean τ within one seed). Paper: colored 1.00 / 1.00, shuffled 1.00 / 0.88.", "",
             "| protocol | colored entropy | colored MI | shuffled entropy | shuffled MI |",
             "|---|---|---|---|---|"]
    for name, modes in table.items():
        cells = [cell(modes.get(m, {}).get(meas)) for m in ("colored", "shuffled")
                 for meas in ("entropy", "mi")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    final = "checkpoint: final (MI binned)"
    # without the KSG row (not measured on these networks), the authors' measurement with
    # binned MI stands in for it: the same networks, entropy and curves
    binned = "MI: binned (100 bins)"
    stand_in = binned if authors not in got_all and binned in got_all else authors
    for name in (stand_in, final):
        if name in got_all:
            lines += ["", f"Per level, {name} (mean ± sd over seeds, overall layer):", "",
                      *level_table(got_all[name],
                                   "stop_step" if name == final else "best_step")]
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    if args.figures:
        from jaxinfo.plots import memorization_figures
        slug_of = {authors: "authors", binned: "authors_binned"}
        for name, slug in ((stand_in, slug_of[stand_in]), (final, "final")):
            if name not in got_all:
                continue
            measures, training = memorization_figures(got_all[name], args.base)
            measures.savefig(f"{args.figures}_{slug}_measures.png", dpi=110)
            if slug.startswith("authors"):  # the same curves for every variant
                training.savefig(f"{args.figures}_training.png", dpi=110)
    with open(os.path.join(args.out, "ablation.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "ablation.json"), "w") as f:
        json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()

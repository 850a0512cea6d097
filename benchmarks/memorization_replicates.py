"""Independent replicates of one memorization sweep, pooled as its seeds: Kendall τ with the
bootstrap interval over all of them, per layer, and the measures figure with bands.

A replicate is the same sweep run with another ``--key`` (``run_memorization.py --key K``: new
corruption draws, initializations and minibatch order). On this CPU a full-size seed is about
an hour of training and, with the authors' KSG, 6 min of measurement per network, so seeds are
added one replicate at a time, across sessions; this script reads what is there:

    python benchmarks/memorization_replicates.py --protocol authors-epochs \\
        --dataset fashion_mnist --seeds 1 --mi binned --modes shuffled \\
        --run 0=benchmarks/memorization_runs/authors_fashion_s1 \\
        --run 1=benchmarks/memorization_runs/authors_fashion_s1_key1 \\
        --out benchmarks/memorization_runs/replicates_fashion50k \\
        --figures benchmarks/figures/memorization_fashion50k_replicates

Each ``--run KEY=DIR`` is a sweep trained with ``--key KEY`` and the shared sweep options
(``--protocol``, ``--dataset``, ``--seeds``, ``--mi``, ``--set``: they fingerprint its
levels). The variant (``--variant``, the authors' measurement by default) is read from each
level's stored rows; a level not measured yet is measured (``measure_variants``, resumable;
KSG: minutes per network). A run whose mode is not trained yet is skipped, and said so.
Writes ``--out``/replicates.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from jaxinfo.experiments.memorization import (COLORED_LEVELS, MEMORIZATION, SHUFFLED_LEVELS,
                                              kendall, measure_variants, pool_replicates)
from memorization_ablation import cell, level_table, taus, variants_of
from run_memorization import add_set_arg, sweep_protocol
from _timing import parse_with_platform  # noqa: E402


def read_replicates(base, mode: str, runs: list[tuple[int, str]], variant: str,
                    seeds: int) -> tuple[list[tuple[int, list[dict]]], list[str]]:
    """``([(key, rows)] per replicate, notes)``: the variant's rows of every run whose
    ``mode`` is trained (measured where missing); a note for each run that is skipped."""
    protocols = variants_of(base)
    if variant not in protocols:
        raise SystemExit(f"unknown variant {variant!r}; one of {sorted(protocols)}")
    levels = COLORED_LEVELS if mode == "colored" else SHUFFLED_LEVELS
    reps, notes = [], []
    for key, path in runs:
        missing = [f"{lv:g}" for lv in levels
                   if not os.path.exists(os.path.join(path, f"{mode}_{lv:g}", "rows.json"))]
        if missing:  # checked first: measure_variants would create the level folders
            notes.append(f"skipped {mode} of key {key} ({path}): levels {', '.join(missing)} "
                         "not trained")
            continue
        try:
            got = measure_variants(base, mode, {variant: protocols[variant]}, out_dir=path,
                                   seeds=seeds, key=key)
        except ValueError as e:  # a level not finished (or another sweep in that folder)
            notes.append(f"skipped {mode} of key {key} ({path}): {e}")
            continue
        reps.append((key, got[variant]))
    return reps, notes


def replicate_table(mode: str, reps: list[tuple[int, list[dict]]]) -> list[str]:
    """Markdown rows, one per replicate and level: the network each replicate chose and its
    measures (layer ``"overall"``; with one seed per replicate, that seed's values)."""
    out = [f"| {mode} key | level | chosen step | val acc | entropy (nats) | MI (nats) |",
           "|---|---|---|---|---|---|"]
    for key, rows in reps:
        for r in sorted((r for r in rows if r["layer"] == "overall"),
                        key=lambda r: (r["level"], r.get("seed", 0))):
            out.append(f"| {key} | {r['level']:g} | {r['best_step']:,.0f} | {r['val_acc']:.3f} "
                       f"| {r['mean_entropy']:.3f} | {r['mean_mi']:.3f} |")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", default="authors-epochs")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=1, help="seeds of each replicate's sweep")
    ap.add_argument("--mi", default="binned", help="the sweeps' --mi (part of the fingerprint)")
    add_set_arg(ap)
    ap.add_argument("--run", action="append", required=True, metavar="KEY=DIR",
                    help="a replicate: the sweep trained with --key KEY into DIR")
    ap.add_argument("--modes", default="colored,shuffled")
    ap.add_argument("--variant", default="authors' protocol")
    ap.add_argument("--out", required=True)
    ap.add_argument("--figures", default=None, help="path prefix: <prefix>_measures.png")
    args = parse_with_platform(ap)

    base = sweep_protocol(args)  # as the other sweep scripts read these options
    runs = [(int(k), d) for k, _, d in (spec.partition("=") for spec in args.run)]
    lines = [(f"Variant {args.variant!r}; replicates pooled as seeds. τ [95 % bootstrap over "
              "replicates] (mean τ within one replicate). Paper: colored 1.00 / 1.00, "
              "shuffled 1.00 / 0.88."), ""]
    table, pooled_all, notes, per_replicate = {}, [], [], []
    for mode in args.modes.split(","):
        keyed, skipped = read_replicates(base, mode, runs, args.variant, args.seeds)
        notes += skipped
        if not keyed:
            continue
        reps = [rows for _, rows in keyed]
        per_replicate += replicate_table(mode, keyed) + [""]
        pooled = pool_replicates(reps)
        pooled_all += pooled
        layers = ["overall"] + sorted({r["layer"] for r in pooled} - {"overall"})
        table[mode] = {layer: taus(pooled, mode, layer) for layer in layers}
        per_rep, per_rep_level = ([kendall(rows, "mi", MEMORIZATION[mode], against=a).tau
                                   if all(np.isfinite(r["mean_mi"]) for r in rows)
                                   else float("nan") for rows in reps]
                                  for a in ("accuracy", "level"))
        by_level = taus(pooled, mode, "overall", against="level")
        table[mode]["replicates"] = len(reps)
        table[mode]["keys"] = [key for key, _ in keyed]
        table[mode]["mi_tau_per_replicate"] = per_rep
        lines += [f"**{mode}**, {len(reps)} replicate(s); MI τ per replicate: "
                  + ", ".join(f"{t:+.2f}" for t in per_rep), "",
                  "| layer | entropy | MI |", "|---|---|---|"]
        table[mode]["against_level"] = by_level
        table[mode]["mi_tau_per_replicate_against_level"] = per_rep_level
        lines += [f"| {layer} | {cell(table[mode][layer].get('entropy'))} "
                  f"| {cell(table[mode][layer].get('mi'))} |" for layer in layers]
        lines += ["", "Against the level order instead of accuracy (`kendall(..., "
                  "against=\"level\")`; free of the noise in near-tied accuracies), overall: "
                  f"entropy {cell(by_level.get('entropy'))}, MI {cell(by_level.get('mi'))}; "
                  "MI τ per replicate: " + ", ".join(f"{t:+.2f}" for t in per_rep_level), ""]
    if pooled_all:
        lines += ["Per level (mean ± sd over replicates):", "", *level_table(pooled_all), "",
                  "Each replicate (layer overall):", "", *per_replicate]
    lines += [""] + notes
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "replicates.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "replicates.json"), "w") as f:
        json.dump({"runs": runs, "variant": args.variant, "table": table,
                   "rows": pooled_all, "skipped": notes}, f, indent=1, default=float)
    if args.figures and pooled_all:
        from jaxinfo.plots import memorization_figures
        measures, _ = memorization_figures(pooled_all)
        measures.suptitle(f"{args.variant}: mean over replicates, band = min–max", y=1.0)
        measures.savefig(f"{args.figures}_measures.png", dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    main()

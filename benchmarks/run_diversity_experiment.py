"""α / β sweeps of the neuron-diversity experiment (Bansal et al. 2022) on the bundled MNIST.

Usage::

    python benchmarks/run_diversity_experiment.py --epochs 120 --seeds 3 --out benchmarks/diversity_runs

Cached per-level CSVs in ``--out`` make a re-run resume. Writes ``sweep.csv``, the trend and
Kendall tables (``trends.csv``, ``kendall.csv``) and the figures
``benchmarks/figures/diversity_{colored,shuffled}.png``.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import time

from jaxinfo.experiments.diversity import (kendall_table, plot_hypothesis, run_sweep,
                                           trend_table)
from jaxinfo.train import TrainConfig
from _timing import parse_with_platform  # noqa: E402


def _write(rows, path):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--epochs", type=int, default=120)
    ap.add_argument("--patience-after", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/diversity_runs")
    ap.add_argument("--figures", default="benchmarks/figures")
    ap.add_argument("--experiments", default="colored,shuffled")
    args = parse_with_platform(ap)
    pa = args.patience_after if args.patience_after is not None else int(0.4 * args.epochs)
    cfg = TrainConfig(max_epochs=args.epochs, patience_after=pa)
    t0 = time.time()
    rows = run_sweep(args.experiments.split(","), dataset=args.dataset, seeds=args.seeds,
                     config=cfg, out_dir=args.out, progress=True)
    print(f"sweep done in {time.time() - t0:.0f} s on {platform.processor() or platform.machine()}"
          f" ({os.cpu_count()} cpus), config {cfg}")
    _write(trend_table(rows), os.path.join(args.out, "trends.csv"))
    kt = kendall_table(rows)
    _write(kt, os.path.join(args.out, "kendall.csv"))
    for variant in (dict(), dict(binning="per_neuron"), dict(checkpoint="final"),
                    dict(split="train")):
        print("Kendall tau", variant or "best/test/global")
        for r in kendall_table(rows, **variant):
            if r["layer"] == "overall":
                print(f"  {r['experiment']:9s} {r['measure']:8s} levels {r['tau_levels']:+.2f}"
                      f"  runs {r['tau_runs']:+.2f}")
    for exp in args.experiments.split(","):
        plot_hypothesis(rows, exp, os.path.join(args.figures, f"diversity_{exp}.png"))


if __name__ == "__main__":
    main()

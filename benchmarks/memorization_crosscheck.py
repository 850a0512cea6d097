"""Re-trains one level of a stored memorization sweep here and compares it with the stored one.

For sweeps trained elsewhere (``memorization_device.sh`` on a GPU): the same task, keys and
protocol as ``run_memorization`` used for that level, trained on this platform. The networks
start identical (JAX's PRNG is the same on every platform), so the first check must agree to
round-off; afterwards float rounding makes the trajectories drift apart, and what must agree is
the level's statistics over seeds (entropy, MI, validation accuracy, chosen steps).

    python benchmarks/memorization_crosscheck.py --run benchmarks/memorization_runs/authors_steps_mnist_s5 \\
        --protocol authors-steps --dataset mnist --seeds 5 --mi binned --mode colored --level 0.125 \\
        --out benchmarks/memorization_runs/crosscheck/steps_mnist_colored_0.125_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from jaxinfo.experiments.memorization import make_task, measure, train_protocol
from run_memorization import add_level_args, add_sweep_args, level_key, sweep_protocol
from _timing import parse_with_platform  # noqa: E402


def _stats(rows: list[dict]) -> dict:
    ov = [r for r in rows if r["layer"] == "overall"]
    out = {k: (float(np.mean([r[k] for r in ov])), float(np.std([r[k] for r in ov])))
           for k in ("mean_entropy", "mean_mi", "val_acc")}
    return out | {k: [int(r[k]) for r in ov] for k in ("best_step", "stop_step")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_level_args(ap)
    add_sweep_args(ap)
    ap.add_argument("--out", required=True)
    args = parse_with_platform(ap)

    p = sweep_protocol(args)
    seed = level_key(args.mode, args.level, args.key)            # as run_memorization
    j = seed - args.key * 1000
    t0 = time.perf_counter()
    task = make_task(p, args.mode, args.level, key=seed)
    run = train_protocol(p, task, jax.random.PRNGKey(seed), seeds=args.seeds)
    rows = measure(p, task, run, key=args.key + j)
    seconds = time.perf_counter() - t0

    level_dir = os.path.join(args.run, f"{args.mode}_{args.level:g}")
    with open(os.path.join(level_dir, "rows.json")) as f:
        stored = json.load(f)
    curves = os.path.join(level_dir, "curves.npz")  # not in git: kept where the sweep ran
    first = (float(np.max(np.abs(np.load(curves)["val_at_checks"][0] - run.val_at_checks[0])))
             if os.path.exists(curves) else float("nan"))
    here, there = _stats(rows), _stats(stored)
    print(f"{args.mode} {args.level:g}, {args.seeds} seeds, trained here in {seconds:.0f} s")
    print(f"first check (step {int(run.check_steps[0])}): max |Δ val acc| = {first:.1e}"
          + ("" if np.isfinite(first) else " (no stored curves.npz to compare with)"))
    print(f"{'':14s} {'stored':>18s} {'here':>18s}")
    for k in ("mean_entropy", "mean_mi", "val_acc"):
        print(f"{k:14s} {there[k][0]:9.3f} ± {there[k][1]:.3f} {here[k][0]:9.3f} ± {here[k][1]:.3f}")
    for k in ("best_step", "stop_step"):
        print(f"{k:14s} {str(there[k]):>18s} {str(here[k]):>18s}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(dict(seconds=seconds, first_check_max_abs_diff=first, stored=there, here=here,
                       check_steps=run.check_steps.tolist(),
                       val_at_checks=np.asarray(run.val_at_checks).tolist(), rows=rows),
                  f, indent=1, default=float)


if __name__ == "__main__":
    main()

"""Scale of the hidden pre-activations of a finished memorization sweep, per level.

For each level's chosen checkpoint (seed 0), on the validation images: the median over
neurons of each neuron's standard deviation, per hidden layer, and how many neurons are
constant on more than half of the images (their 25th and 75th percentiles are equal). Shows
whether long training with the authors' L2 has shrunk the activations (issue 12).

    python benchmarks/activation_scale.py --run benchmarks/memorization_runs/authors_fashion_s1 \\
        --protocol authors-epochs --dataset fashion_mnist --seeds 1

``--protocol``, ``--dataset``, ``--n-train`` and ``--seeds`` must be those of the sweep
(``run_memorization.py``); nothing is retrained (the stored state is read back).
"""
from __future__ import annotations

import argparse

import jax
import numpy as np

from jaxinfo.activations import capture_activations
from jaxinfo.experiments.memorization import COLORED_LEVELS, SHUFFLED_LEVELS
from jaxinfo.train import MLP
from run_memorization import add_sweep_args, load_level, sweep_protocol
from _timing import parse_with_platform  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="the sweep's --out folder")
    add_sweep_args(ap)
    args = parse_with_platform(ap)
    p = sweep_protocol(args)
    print("| mode | level | chosen step | median neuron std (per hidden layer) | "
          "neurons constant on > half the images |")
    print("|---|---|---|---|---|")
    for mode, levels in (("colored", COLORED_LEVELS), ("shuffled", SHUFFLED_LEVELS)):
        for level in levels:
            task, run = load_level(args.run, p, mode, level, args.seeds, args.key)
            params = jax.tree.map(lambda v: v[0], run.best_params)
            acts = capture_activations(MLP(tuple(p.hidden), task.num_classes),
                                       {"params": params}, task.val.x)
            stds, constant = [], 0
            for a in acts.values():
                a = np.asarray(a).reshape(a.shape[0], -1)
                stds.append(np.median(a.std(axis=0)))
                q = np.sort(a, axis=0)
                constant += int(np.sum(q[a.shape[0] // 4] == q[3 * a.shape[0] // 4]))
            print(f"| {mode} | {level:g} | {int(run.best_step[0])} | "
                  + " / ".join(f"{v:.1e}" for v in stds) + f" | {constant} |", flush=True)


if __name__ == "__main__":
    main()

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
from jaxinfo.checkpoint import fingerprint, open_store
from jaxinfo.experiments.memorization import (COLORED_LEVELS, SHUFFLED_LEVELS, make_task,
                                              train_protocol)
from jaxinfo.train import MLP
from run_memorization import add_sweep_args, sweep_protocol
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
        for j, level in enumerate(levels):  # the sweep's keys: level j of a mode uses key j
            fp = fingerprint(protocol=repr(p), mode=mode, level=level, seeds=args.seeds, key=0)
            store = open_store(f"{args.run}/{mode}_{level:g}", fp, kind="memorization",
                               mode=mode, level=level, seeds=args.seeds, protocol=repr(p))
            task = make_task(p, mode, level, key=j)
            run = train_protocol(p, task, jax.random.PRNGKey(j), seeds=args.seeds, store=store)
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

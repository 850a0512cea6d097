"""Writes one stored memorization network's hidden pre-activations to a .npy file.

The network is the chosen checkpoint of seed ``--seed`` at one level of a finished sweep
(``run_memorization.py``; its training state is read back, no step is rerun, and a level whose
state is missing is trained again), evaluated on the protocol's validation images. The array
is ``[S, N]`` float32: every hidden layer's pre-ReLU outputs side by side (logits excluded),
the input of the entropy and MI measures. Used to time the KSG kernels on real activations
(``bench_ksg_versions.py --acts``).

    python benchmarks/memorization_activations.py \\
        --run benchmarks/memorization_runs/authors_fashion_s1 \\
        --protocol authors-epochs --dataset fashion_mnist --seeds 1 --mi binned \\
        --mode shuffled --level 0.125 --out /tmp/acts_shuffled_0.125.npy
"""
from __future__ import annotations

import argparse

import jax
import numpy as np

from jaxinfo.activations import capture_activations
from jaxinfo.train import MLP
from run_memorization import add_level_args, add_sweep_args, load_level, sweep_protocol
from _timing import parse_with_platform  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_level_args(ap)
    add_sweep_args(ap)
    ap.add_argument("--seed", type=int, default=0, help="which of the sweep's seeds")
    ap.add_argument("--out", required=True)
    args = parse_with_platform(ap)
    p = sweep_protocol(args)
    task, run = load_level(args.run, p, args.mode, args.level, args.seeds, args.key)
    params = jax.tree.map(lambda v: v[args.seed], run.best_params)
    acts = capture_activations(MLP(tuple(p.hidden), task.num_classes), {"params": params},
                               task.val.x)
    a = np.concatenate([np.asarray(v).reshape(v.shape[0], -1) for v in acts.values()], axis=1)
    np.save(args.out, a.astype(np.float32))
    print(f"{args.mode} {args.level:g} seed {args.seed}: chosen step "
          f"{int(run.best_step[args.seed])}, activations {a.shape} -> {args.out}")


if __name__ == "__main__":
    main()

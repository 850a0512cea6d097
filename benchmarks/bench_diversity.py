"""All-pairs binned MI: jaxinfo vs a Python loop over sklearn.metrics.mutual_info_score.

N = 768 neurons, S = 10,000 samples, B = 100 bins (defaults). The sklearn loop is timed on a
random subset of pairs and extrapolated to all N(N-1)/2 pairs. Also checks agreement on that
subset and reports the peak RSS growth (the per-step working set is
``block_size * (B^2 + 2S)`` numbers, independent of N).

    python benchmarks/bench_diversity.py [--n 768 --s 10000 --bins 100 --block-size 16]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=768)
    ap.add_argument("--s", type=int, default=10_000)
    ap.add_argument("--bins", type=int, default=100)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--sk-pairs", type=int, default=300)
    args = ap.parse_args()

    import jax
    from sklearn.metrics import mutual_info_score

    from jaxinfo.diversity import bin_activations, pairwise_mutual_information

    rng = np.random.default_rng(0)
    # ReLU-network-like activations: correlated Gaussians through a random mixing, some ReLU.
    z = rng.normal(size=(args.s, 64)).astype(np.float32)
    w = rng.normal(size=(64, args.n)).astype(np.float32) / 8
    acts = z @ w
    acts[:, ::3] = np.maximum(acts[:, ::3], 0)

    labels = bin_activations(acts, bins=args.bins).labels
    labels.block_until_ready()
    labels_np = np.asarray(labels)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    # warm-up compile on a tiny problem with the same block size, then the timed run
    pairwise_mutual_information(None, labels=labels[:, :4], bins=args.bins,
                                block_size=args.block_size).block_until_ready()
    t = time.perf_counter()
    mi = pairwise_mutual_information(None, labels=labels, bins=args.bins,
                                     block_size=args.block_size)
    mi.block_until_ready()
    t_jax = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    n_pairs = args.n * (args.n - 1) // 2
    iu = np.triu_indices(args.n, 1)
    pick = rng.choice(n_pairs, size=args.sk_pairs, replace=False)
    pi, pj = iu[0][pick], iu[1][pick]
    mutual_info_score(labels_np[:, 0], labels_np[:, 1])  # warm-up (lazy imports)
    t = time.perf_counter()
    ref = [mutual_info_score(labels_np[:, i], labels_np[:, j]) for i, j in zip(pi, pj)]
    t_sk_sub = time.perf_counter() - t
    t_sk = t_sk_sub / args.sk_pairs * n_pairs
    err = float(np.max(np.abs(np.asarray(mi)[pi, pj] - np.asarray(ref))))

    work = args.block_size * (args.bins ** 2 + 2 * args.s) * 4 / 2 ** 20
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, jax {jax.__version__} "
          f"({jax.default_backend()})")
    print(f"N={args.n} S={args.s} B={args.bins} pairs={n_pairs} block_size={args.block_size}")
    print(f"jaxinfo all pairs      : {t_jax:8.1f} s")
    print(f"sklearn loop (extrap.) : {t_sk:8.1f} s  ({t_sk_sub / args.sk_pairs * 1e3:.2f} ms/pair, "
          f"{args.sk_pairs} pairs timed)")
    print(f"speed-up               : {t_sk / t_jax:8.0f}x")
    print(f"max |diff| on subset   : {err:.2e} nats (float32)")
    print(f"peak RSS growth        : {(rss1 - rss0) / 1024:.0f} MiB (output [N,N] = "
          f"{args.n ** 2 * 4 / 2 ** 20:.1f} MiB; per-step working set ~{work:.1f} MiB)")


if __name__ == "__main__":
    main()

"""All-pairs binned MI: jaxinfo vs a Python loop over sklearn.metrics.mutual_info_score.

N = 768 neurons, S = 10,000 samples, B = 100 bins (defaults). The sklearn loop is timed on a
random subset of pairs and extrapolated to all N(N-1)/2 pairs. Also checks agreement on that
subset and reports the peak RSS growth (the per-step working set is
``block_size * (B^2 + 2S)`` numbers, independent of N).

    python benchmarks/bench_diversity.py [--n 768 --s 10000 --bins 100 --block-size 16]

All-pairs KSG (Kraskov estimator 1, k = 3, ``ksg_convention="raw"``) on the first ``--ksg-n``
neurons of the same activations: jaxinfo's exact all-pairs KSG vs a Python loop over
scikit-learn's KD-tree estimator (``_compute_mi_cc``, the core of ``mutual_info_regression``),
timed on ``--ksg-sk-pairs`` random pairs and extrapolated; agreement on those pairs
(``--ksg-n 0`` skips it, ``--skip-binned`` skips the binned part). Both of jaxinfo's kernels
are timed: the JAX one and the compiled numba one (``ksg_backend``); ``--ksg-all`` also runs
the compiled one on all ``--n`` neurons.

    python benchmarks/bench_diversity.py --skip-binned --ksg-n 48 --ksg-sk-pairs 30 --ksg-all
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
from _timing import parse_with_platform  # noqa: E402


def synthetic_activations(rng, s: int, n: int, relu_every: int | None = 3) -> np.ndarray:
    """ReLU-network-like activations ``[s, n]`` float32: 64 correlated Gaussian factors through
    a random mixing (weights N(0, 1/64)), every ``relu_every``-th neuron through a ReLU (half
    its values exact zeros; ``None``: no ReLU). Draws from ``rng``."""
    z = rng.normal(size=(s, 64)).astype(np.float32)
    w = rng.normal(size=(64, n)).astype(np.float32) / 8
    acts = z @ w
    if relu_every:
        acts[:, ::relu_every] = np.maximum(acts[:, ::relu_every], 0)
    return acts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=768)
    ap.add_argument("--s", type=int, default=10_000)
    ap.add_argument("--bins", type=int, default=100)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--sk-pairs", type=int, default=300)
    ap.add_argument("--skip-binned", action="store_true")
    ap.add_argument("--ksg-n", type=int, default=64)
    ap.add_argument("--ksg-sk-pairs", type=int, default=30)
    ap.add_argument("--ksg-blocks", default="1",
                    help="comma-separated block sizes of the JAX KSG kernel (pairs per vmapped "
                         "step; larger blocks pay on an accelerator)")
    ap.add_argument("--ksg-all", action="store_true",
                    help="also run the compiled KSG kernel on all --n neurons")
    args = parse_with_platform(ap)

    import jax
    from sklearn.metrics import mutual_info_score

    from jaxinfo.diversity import bin_activations, pairwise_mutual_information

    rng = np.random.default_rng(0)
    acts = synthetic_activations(rng, args.s, args.n)

    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, jax {jax.__version__} "
          f"({jax.default_backend()})")
    if not args.skip_binned:
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
        print(f"N={args.n} S={args.s} B={args.bins} pairs={n_pairs} block_size={args.block_size}")
        print(f"jaxinfo all pairs      : {t_jax:8.1f} s")
        print(f"sklearn loop (extrap.) : {t_sk:8.1f} s  ({t_sk_sub / args.sk_pairs * 1e3:.2f} ms/pair, "
              f"{args.sk_pairs} pairs timed)")
        print(f"speed-up               : {t_sk / t_jax:8.0f}x")
        print(f"max |diff| on subset   : {err:.2e} nats (float32)")
        print(f"peak RSS growth        : {(rss1 - rss0) / 1024:.0f} MiB (output [N,N] = "
              f"{args.n ** 2 * 4 / 2 ** 20:.1f} MiB; per-step working set ~{work:.1f} MiB)")
    if args.ksg_n:
        bench_ksg(acts[:, :args.ksg_n], args.ksg_sk_pairs, rng,
                  full=acts if args.ksg_all else None,
                  blocks=tuple(int(b) for b in args.ksg_blocks.split(",")))


def bench_ksg(acts, sk_pairs, rng, full=None, blocks=(1,)):
    """Exact all-pairs KSG: the JAX kernel and the compiled (numba) kernel on ``acts``, against
    scikit-learn's per-pair KD-tree computation (``_compute_mi_cc``) on random pairs; with
    ``full`` ([S, 768] activations) also the compiled kernel on every pair of ``full``; the JAX
    kernel once per block size in ``blocks``."""
    import jax
    import numba
    from sklearn.feature_selection._mutual_info import _compute_mi_cc

    from jaxinfo._ksg_native import ksg_all_pairs
    from jaxinfo.diversity import _ksg_all_pairs

    s, n = acts.shape
    n_pairs = n * (n - 1) // 2
    t_jax, mi_jax = {}, {}
    for b in blocks:
        # warm-up: compile (shapes depend on N and the block size)
        _ksg_all_pairs(acts, block_size=b)[0].block_until_ready()
        t = time.perf_counter()
        mi_b, n_brute = _ksg_all_pairs(acts, block_size=b)
        mi_b.block_until_ready()
        t_jax[b], mi_jax[b] = time.perf_counter() - t, np.asarray(mi_b)
    ksg_all_pairs(acts[:200, :3])                 # warm-up: numba compiles once per process
    t = time.perf_counter()
    mi_nb = ksg_all_pairs(acts)
    t_nb = time.perf_counter() - t

    iu = np.triu_indices(n, 1)
    pick = rng.choice(n_pairs, size=min(sk_pairs, n_pairs), replace=False)
    pi, pj = iu[0][pick], iu[1][pick]
    a64 = acts.astype(np.float64)
    _compute_mi_cc(a64[:, 0], a64[:, 1], 3)  # warm-up
    t = time.perf_counter()
    ref = np.asarray([_compute_mi_cc(a64[:, i], a64[:, j], 3) for i, j in zip(pi, pj)])
    t_sk = (time.perf_counter() - t) / len(pick)
    print(f"KSG (k=3, raw) N={n} S={s} pairs={n_pairs}; JAX on {jax.default_backend()} in "
          f"{acts.dtype}, numba {numba.__version__} ({numba.get_num_threads()} threads) in float64")
    print(f"{'':24s} {'ms/pair':>9s} {'vs KD-tree':>11s} {'max |diff| vs KD-tree':>22s}")
    print(f"{'sklearn KD-tree loop':24s} {t_sk * 1e3:9.2f} {1.0:10.1f}x {'(reference)':>22s}"
          f"   ({len(pick)} random pairs)")
    for name, t_all, mi in ([(f"jaxinfo JAX kernel, b={b}", t_b, mi_jax[b])
                             for b, t_b in t_jax.items()]
                            + [("jaxinfo numba kernel", t_nb, mi_nb)]):
        t_pair = t_all / n_pairs
        err = float(np.max(np.abs(mi[pi, pj] - ref)))
        print(f"{name:24s} {t_pair * 1e3:9.3f} {t_sk / t_pair:10.1f}x {err:22.1e}")
    print(f"JAX kernel brute-force share: {np.asarray(n_brute).mean() / s:.2%} of samples")
    if full is not None:
        nf = full.shape[1]
        t = time.perf_counter()
        ksg_all_pairs(full)
        t_full = time.perf_counter() - t
        pf = nf * (nf - 1) // 2
        print(f"numba kernel, all {nf} neurons ({pf:,} pairs) x {full.shape[0]:,} samples: "
              f"{t_full:.1f} s ({t_full / pf * 1e3:.3f} ms/pair; KD-tree loop extrap. "
              f"{t_sk * pf / 3600:.1f} h, {t_sk * pf / t_full:.0f}x)")


if __name__ == "__main__":
    main()

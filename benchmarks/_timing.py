"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<script>.py``): timing,
and the JAX platform a script runs on (``--platform``, reported in its output)."""
from __future__ import annotations

import argparse
import os
import platform as _platform
import time

import jax


def best_time(fn, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` warm calls of ``fn()`` (after one compile call)."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def describe_platform() -> str:
    """One line naming where JAX computes: backend, device count and kind, jax, host CPUs."""
    devices = jax.devices()
    return (f"# platform: {jax.default_backend()}, {len(devices)} × {devices[0].device_kind}; "
            f"jax {jax.__version__}; host {_platform.machine()}, {os.cpu_count()} CPUs")


def parse_with_platform(ap: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``ap.parse_args(argv)`` with a ``--platform`` option (``cpu``, ``gpu``, ``tpu``; default:
    JAX's choice), applied before any computation and inherited by child processes
    (``JAX_PLATFORMS``); prints :func:`describe_platform`."""
    ap.add_argument("--platform", default=None, choices=["cpu", "gpu", "cuda", "rocm", "tpu"],
                    help="JAX platform to run on (default: JAX's choice; reported either way)")
    args = ap.parse_args(argv)
    if args.platform:
        os.environ["JAX_PLATFORMS"] = args.platform
        jax.config.update("jax_platforms", args.platform)
    print(describe_platform(), flush=True)
    return args

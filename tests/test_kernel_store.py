"""Out-of-core kernels (jaxinfo.kernel_store) and the out-of-core t = ∞ leave-one-out."""
from __future__ import annotations

import functools

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import jaxinfo
from _problems import tanh_mlp as mlp
from _problems import tanh_mlp_problem
from jaxinfo import GradientDescent, LOOSolver
from jaxinfo.kernel_store import (blocked_cholesky, cho_solve_blocked, compute_kernel,
                                  matmul_blocked)

ROOT = Path(__file__).resolve().parents[1]


setup = functools.partial(tanh_mlp_problem, n=26, din=5, width=16, m=6)


def test_blocked_cholesky_solve_matmul(tmp_path):
    r = np.random.default_rng(1)
    a = r.normal(size=(37, 50))
    theta = a @ a.T  # rank 37, SPD; 37 = 3 blocks of 12 + 1 (ragged last block)
    chol, pivot = blocked_cholesky(theta, 0.5, tmp_path / "chol.npy", 12)
    ref = np.linalg.cholesky(theta + 0.5 * np.eye(37))
    np.testing.assert_allclose(np.asarray(chol), ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    assert pivot == pytest.approx(np.min(np.diag(ref)) ** 2, rel=1e-12)
    b = r.normal(size=(37, 4))
    np.testing.assert_allclose(cho_solve_blocked(chol, b, 12),
                               np.linalg.solve(theta + 0.5 * np.eye(37), b), rtol=1e-10)
    np.testing.assert_allclose(matmul_blocked(theta, b, 12), theta @ b, rtol=1e-13)
    with pytest.raises(ValueError, match="positive definite"):
        blocked_cholesky(-theta, 0.0, tmp_path / "c2.npy", 12)


def test_tiles_equal_full_kernel_and_symmetric(x64, tmp_path):
    params, x, _, _ = setup()
    kern = compute_kernel(mlp, params, x, tmp_path, tile=7, progress=False)
    full = np.asarray(jaxinfo.kernel_matrix(jaxinfo.empirical_ntk(mlp, params, x,
                                                                  trace_axes=())))
    assert kern.theta.shape == (52, 52) and kern.tile == 7
    assert len(kern.computed) == 10  # 4 blocks of samples: 4·5/2 upper-triangle tiles
    np.testing.assert_allclose(np.asarray(kern.theta), full, rtol=1e-12, atol=1e-12)
    th = np.asarray(kern.theta)  # off-diagonal tiles are mirrored exactly
    assert np.array_equal(th[:14, 14:], th[14:, :14].T)
    again = compute_kernel(mlp, params, x, tmp_path, tile=7, progress=False)
    assert again.computed == []  # everything was done
    with pytest.raises(ValueError, match="different inputs"):
        compute_kernel(mlp, params, x + 1.0, tmp_path, tile=7, progress=False)


@pytest.mark.parametrize("with_ref,lam", [(False, 1e-3), (True, 1e-3), (False, 0.0)])
def test_out_of_core_equals_in_memory(x64, tmp_path, with_ref, lam):
    params, x, y, xr = setup()
    n, k = y.shape
    dyn = GradientDescent(lr=0.1, t=None, weight_decay=lam)
    ref_x = xr if with_ref else None
    exact = jaxinfo.unique_information(mlp, params, x, y, ref_x, dynamics=dyn, progress=False,
                                       reduction="sum")
    budget = (n * k) ** 2 * 8 - 1  # just too small: tiled (default tile = n/4 samples)
    res = jaxinfo.unique_information(mlp, params, x, y, ref_x, dynamics=dyn, progress=False,
                                     reduction="sum", kernel_dir=tmp_path / "k",
                                     solver=LOOSolver(memory_budget=budget, chunk_size=5))
    assert (tmp_path / "k" / "theta.npy").exists() and len(list((tmp_path / "k" / "tiles")
                                                                .iterdir())) > 1
    for name in ("weight_si", "functional_si", "weight_change_sq", "function_change_sq",
                 "sample_loss"):
        a, b = np.asarray(getattr(exact, name)), np.asarray(getattr(res, name))
        # λ = 0: both models interpolate, the change on the other samples is exactly 0 (the
        # in-memory path returns round-off, ~1e-26): compare on the scale of the residuals too.
        assert np.max(np.abs(a - b)) <= 1e-10 * max(np.max(np.abs(a)), 1e-12), name
    assert res.method == "schur" and res.num_reference == exact.num_reference


def test_out_of_core_refuses_finite_t_and_singular(x64, tmp_path):
    from jaxinfo.sui.out_of_core import unique_information_out_of_core

    params, x, y, _ = setup(n=12, width=3)  # P = 5·3 + 3 + 6 = 24 = nk: Θ singular-ish at λ=0
    kern = compute_kernel(mlp, params, x, tmp_path, tile=5, progress=False)
    r0 = mlp(params, x) - y
    with pytest.raises(ValueError, match="t = ∞ only"):
        unique_information_out_of_core(kern, r0, GradientDescent(lr=0.1, t=10), progress=False)
    params, x, y, _ = setup(n=20, width=2)  # P = 16 < nk = 40: Θ has rank ≤ 16
    kern = compute_kernel(mlp, params, x, tmp_path / "b", tile=6, progress=False)
    with pytest.raises(ValueError, match="singular"):
        unique_information_out_of_core(kern, mlp(params, x) - y, GradientDescent(lr=0.1),
                                       progress=False)


_CHILD = textwrap.dedent("""
    import sys, time
    import jax
    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, {tests!r})
    from test_kernel_store import setup, mlp
    from jaxinfo.kernel_store import compute_kernel

    params, x, _, _ = setup()
    log = open({log!r}, "a")

    def hook(a, b):  # tile (a, b) is in the memmap, not yet marked done
        log.write(f"{{a}},{{b}}\\n"); log.flush()
        if a + b >= 1:  # the third tile never gets its marker: killed here
            time.sleep(60)

    compute_kernel(mlp, params, x, {directory!r}, tile=7, progress=False, on_tile=hook)
""")


def _run_and_kill(directory: Path, log: Path) -> None:
    """Runs the child until it sits in its second tile's hook, then SIGKILLs it."""
    script = _CHILD.format(tests=str(ROOT / "tests"), log=str(log), directory=str(directory))
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.time() + 120
        while not (log.exists() and len(log.read_text().splitlines()) >= 2):
            if proc.poll() is not None:
                pytest.fail(f"child exited early with code {proc.returncode}")
            if time.time() > deadline:
                pytest.fail("child never reached its second tile")
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_sigkill_mid_tile_resumes_bit_identical(x64, tmp_path):
    params, x, _, _ = setup()
    clean = compute_kernel(mlp, params, x, tmp_path / "clean", tile=7, progress=False)
    _run_and_kill(tmp_path / "killed", tmp_path / "log1")
    done = sorted(p.stem for p in (tmp_path / "killed" / "tiles").glob("*.json"))
    assert done == ["0_0"]  # (0, 1) was in the memmap but killed before its marker
    resumed = compute_kernel(mlp, params, x, tmp_path / "killed", tile=7, progress=False)
    assert (0, 0) not in resumed.computed and (0, 1) in resumed.computed
    assert len(resumed.computed) == 9  # 10 tiles, the finished one reused
    assert np.asarray(resumed.theta).tobytes() == np.asarray(clean.theta).tobytes()
    meta = json.loads((tmp_path / "killed" / "meta.json").read_text())
    assert meta["kind"] == "ntk-tiles"

    # A torn write of a finished tile (bytes differ from its marker's checksum) is recomputed.
    theta = np.load(tmp_path / "killed" / "theta.npy", mmap_mode="r+")
    theta[0, 0] += 1.0
    theta.flush()
    del theta
    torn = compute_kernel(mlp, params, x, tmp_path / "killed", tile=7, progress=False)
    assert torn.computed == [(0, 0)]
    assert np.asarray(torn.theta).tobytes() == np.asarray(clean.theta).tobytes()

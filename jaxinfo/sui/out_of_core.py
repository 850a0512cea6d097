"""Leave-one-out at t = ∞ from a kernel on disk (:mod:`jaxinfo.kernel_store`).

The same mathematics as the in-memory Schur path (``docs/maths/sui.md``): with
``A = Θ + (n−1)λI`` and ``C = A⁻¹``, sample i's padded leave-one-out solution is

    v = C r0 − C_{:,K} r0_K,   z = v − C_{:,K} C_KK⁻¹ v_K,   α'_R = −z_R,

so each sample needs only its own k columns ``C_{:,K}`` (and the k×k block ``C_KK`` inside
them). The steps, all blockwise in float64:

1. A = LLᵀ by a right-looking blocked Cholesky into a second memmap
   (:func:`jaxinfo.kernel_store.blocked_cholesky`), ``(nk)³/3`` multiply-adds.
2. ``u = C r0`` (one blocked solve) and α = −(A + λI)⁻¹ r0 by the fixed-point iteration
   ``x ← C(r0 − λx)`` (a contraction with factor ``λ‖C‖ ≤ 1/(n−1)``: no second factorisation;
   iterated to float64 round-off), then ``r_full = r0 + Θα`` (one pass over Θ).
3. For each chunk of c samples: ``C_{:,K} = A⁻¹E_K`` for the chunk's ck unit vectors (one
   blocked forward and backward substitution, streaming over L; the forward pass starts at the
   chunk's first row, above which the unit vectors vanish), α' by
   :func:`jaxinfo.sui.engines.alpha_schur_columns`, ΘΔα, and the per-sample statistics by
   :func:`jaxinfo.sui.engines.stats_from_products`.

ΘΔα needs no pass over Θ: from ``(Θ + nλI)α = −r0`` and ``(Θ_RR + (n−1)λI)α'_R = −r0_R``,

    (ΘΔα)_R = λ(α_R − (n−1)Δα_R),       (ΘΔα)_K = Θ_{K,:}Δα  (the sample's own k rows),

exact algebra (no cancellation between O(r0) terms). Total: ``(nk)³/6`` multiply-adds for the
factorisation plus about ``(2/3)(nk)³`` for the solves — fewer than the in-memory path, which
forms all of C and multiplies by Θ — with peak memory a few ``[nk, ck]`` float64 arrays and one
``[nk, b]`` panel. Chunks are checkpointed like the
in-memory path's (``checkpoint_dir``); the factorisation is recomputed by a restarted run.
"""
from __future__ import annotations

import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxinfo._optional import progress_bar
from jaxinfo.checkpoint import fingerprint, open_store
from jaxinfo.dynamics import GradientDescent
from jaxinfo.kernel_store import (KernelFile, blocked_cholesky, cho_solve_blocked,
                                  matmul_blocked)
from jaxinfo.linearize import check_step_size
from jaxinfo.sui import engines
from jaxinfo.sui.results import LOOSolver, UniqueInformation, from_stats

__all__ = ["unique_information_out_of_core"]

#: Phase timings (``phase=<name> seconds=<s>``) are logged at INFO level.
_log = logging.getLogger(__name__)


def _lambda_max(theta: np.ndarray, rows: int, iterations: int = 32) -> float:
    """λ_max(Θ) by power iteration (from below), streaming over Θ."""
    v = np.cos(np.arange(theta.shape[0])) + 1.5
    v /= np.linalg.norm(v)
    for _ in range(iterations):
        w = matmul_blocked(theta, v, rows)
        v = w / np.linalg.norm(w)
    return float(v @ matmul_blocked(theta, v, rows))


def unique_information_out_of_core(kernel: KernelFile, r0: np.ndarray, dynamics: GradientDescent,
                                   *, theta_ref: np.ndarray | None = None, sigma: float = 1.0,
                                   sigma_f: float = 1.0, reduction: str = "mean",
                                   solver: LOOSolver = LOOSolver(), progress: bool = True,
                                   checkpoint_dir: str | os.PathLike | None = None
                                   ) -> UniqueInformation:
    """Smooth unique information at t = ∞ from a stored kernel (nats).

    Args:
      kernel: :class:`jaxinfo.kernel_store.KernelFile` (Θ ``[nk, nk]`` memmap).
      r0: ``[n, k]`` initial residuals f(w0, X) − Y.
      dynamics: :class:`jaxinfo.GradientDescent` with ``t=None`` (t = ∞).
      theta_ref: ``[mk, nk]`` Θ* in memory, or ``None`` (reference set: the other samples).
      sigma, sigma_f, reduction, progress, checkpoint_dir: as in
        :func:`jaxinfo.unique_information_from_kernel`.
      solver: :class:`jaxinfo.LOOSolver`; ``chunk_size`` or ``memory_budget`` sets the samples
        per chunk. The arithmetic is float64 whatever ``solver.dtype``.

    Returns:
      :class:`jaxinfo.UniqueInformation` (``method="schur"``), equal to the in-memory path up
      to float64 round-off.

    Raises:
      ValueError: finite t; a singular A (λ = 0 with a rank-deficient Θ); a step size for which
        discrete GD diverges.
    """
    dyn = dynamics
    if dyn.t is not None:
        raise ValueError("the out-of-core kernel path solves t = ∞ only (dynamics.t=None); for "
                         "finite t use the in-memory path or projection_dim=")
    theta, n, k = kernel.theta, kernel.n, kernel.k
    nk = n * k
    rows = kernel.tile * k
    lam, lr = float(dyn.weight_decay), float(dyn.lr)
    r0 = np.asarray(r0, np.float64).reshape(-1)
    if r0.shape[0] != nk:
        raise ValueError(f"r0 must have {nk} entries ([n, k] = [{n}, {k}]), got {r0.shape}")
    tic = time.perf_counter()
    s_max = _lambda_max(theta, rows)
    check_step_size(s_max + n * lam, lr, n, continuous=dyn.continuous)
    check_step_size(s_max + (n - 1) * lam, lr, n - 1, continuous=dyn.continuous)
    try:
        chol, pivot = blocked_cholesky(theta, (n - 1) * lam, kernel.directory / "chol.npy", rows)
    except ValueError:
        pivot = 0.0
    eps = float(np.finfo(np.float64).eps)  # the factorisation is float64
    if pivot <= 10 * nk * eps * s_max:
        raise ValueError("t = ∞ with a singular Θ + (n−1)λI: the leave-one-out "
                         f"solutions are not unique (blocked Cholesky of Θ + (n−1)λI has a pivot "
                         f"≤ {10 * nk * eps:.1e}·λ_max, λ_max ≈ {s_max:.3g}). Use (a larger) "
                         "weight_decay > 0.")
    _log.info("phase=factorisation seconds=%.3f", time.perf_counter() - tic)
    tic = time.perf_counter()
    u = cho_solve_blocked(chol, r0, rows)
    x = u
    if lam > 0:  # (A + λI) x = r0  ⇔  x = C (r0 − λx), a contraction by ≤ 1/(n−1)
        for _ in range(200):
            new = cho_solve_blocked(chol, r0 - lam * x, rows)
            done = np.linalg.norm(new - x) <= 1e-15 * np.linalg.norm(new)
            x = new
            if done:
                break
    alpha = -x
    r_full = r0 + matmul_blocked(theta, alpha, rows)
    ref = None if theta_ref is None else np.asarray(theta_ref, np.float64)

    per = (6 * nk * k + 4 * nk) * 8  # C columns, unit vectors, Θ_K rows, Δα, ΘΔα per sample
    chunk = int(solver.chunk_size or max(1, min(n, solver.memory_budget // per, 4096)))
    chunk = min(chunk, n)
    store = None
    if checkpoint_dir is not None:
        fp = fingerprint(r0, ref, kernel=str(kernel.directory),
                         meta=(kernel.directory / "meta.json").read_text(), lr=lr,
                         weight_decay=lam, continuous=dyn.continuous, chunk=chunk,
                         method="schur-out-of-core")
        store = open_store(checkpoint_dir, fp, kind="unique_information", n=n, chunk=chunk,
                           method="schur-out-of-core")
    results = []
    bar = progress_bar(total=n, desc="leave-one-out (schur, out of core)", enable=progress,
                       unit="sample")
    with jax.enable_x64(True):
        u_j, r0_j = jnp.asarray(u), jnp.asarray(r0)
        r_full_j = jnp.asarray(r_full)[None]
        for c, start in enumerate(range(0, n, chunk)):
            stop = min(start + chunk, n)
            res = None if store is None else store.load(f"chunk_{c:06d}")
            if res is None:
                idx = np.minimum(np.arange(start, start + chunk), n - 1)  # pad: one compilation
                cols = (idx[:, None] * k + np.arange(k)[None]).reshape(-1)  # [ck]
                unit = np.zeros((nk, cols.size))
                unit[cols, np.arange(cols.size)] = 1.0
                c_cols = cho_solve_blocked(chol, unit, rows)  # [nk, ck]
                c_cols = np.ascontiguousarray(
                    c_cols.reshape(nk, chunk, k).transpose(1, 0, 2))  # [c, nk, k]
                idx_j = jnp.asarray(idx, jnp.int32)
                alpha_p = engines.alpha_schur_columns(jnp.asarray(c_cols), u_j, r0_j, idx_j, k)
                d = np.asarray(alpha_p)[:, 0] - alpha[None]  # Δα [c, nk]
                # ΘΔα without a pass over Θ: on R it is λ(α − (n−1)Δα) (module docstring);
                # on K the sample's own k rows of Θ.
                td = lam * (alpha[None] - (n - 1) * d)
                th_k = np.asarray(theta[cols], np.float64)  # [ck, nk], rows K of the chunk
                td_k = np.einsum("ckn,cn->ck", th_k.reshape(chunk, k, nk), d)
                td[np.arange(chunk)[:, None], cols.reshape(chunk, k)] = td_k
                d, td = d[:, None], td[:, None]
                rd = None if ref is None else (d[:, 0] @ ref.T)[:, None]
                stats = engines.stats_from_products(
                    jnp.asarray(d), jnp.asarray(td), None if rd is None else jnp.asarray(rd),
                    r_full_j, idx_j, k, False)
                res = {key: np.asarray(v)[:stop - start] for key, v in stats.items()}
                if store is not None:
                    store.save(f"chunk_{c:06d}", **res)
            results.append(res)
            bar.update(stop - start)
    bar.close()
    _log.info("phase=leave_one_out seconds=%.3f", time.perf_counter() - tic)
    out = {key: np.concatenate([r[key] for r in results]) for key in results[0]}
    return from_stats({key: v[:, 0] for key, v in out.items()}, n=n, k=k,
                      ref_rows=None if ref is None else ref.shape[0], reduction=reduction,
                      sigma=float(sigma), sigma_f=float(sigma_f),
                      sample_loss=0.5 * np.sum(r_full.reshape(n, k) ** 2, axis=1),
                      alpha_error_bound=np.zeros(n), dynamics=dyn, method="schur",
                      iterations=0)

"""The host-side driver of the leave-one-out engine, and the public SUI functions.

The numerical work is in :mod:`jaxinfo.sui.engines` (pure, jit-able kernels). This module is the
thin outer layer around them: input validation on concrete values, the choice of method and of
the Lanczos step count (:func:`jaxinfo.lanczos_plan`), chunking over samples with static shapes
(one compilation), progress bars and resumable checkpoints (:mod:`jaxinfo.checkpoint`).
:func:`unique_information_core` is the same computation without that layer, for use inside
``jax.jit`` / ``jax.vmap``. The mathematics: ``docs/maths/sui.md``.

With a ``mesh`` (:mod:`jaxinfo.distributed`), the kernels stay sharded arrays on the devices:
Θ (and C = (Θ + (n−1)λI)⁻¹ or the eigenvectors of Θ) with their rows over ``"data"``,
the per-chunk engines are the same jitted functions, and ``jax.jit`` propagates the shardings
— every ``[c, nk]×[nk, nk]`` chunk product is split over the devices that hold the rows of Θ
(partial products summed by the compiler's collectives). JAX splits an axis only in equal
blocks, so when the device count does not divide ``nk`` the problem is padded with a few inert
samples (the same exact padding as ``LOOSolver(pad_to=...)``, :func:`engines.pad_problem`) up
to a size it divides; the rows of Θ are then always split. The one-off factorisation of the
full problem (``eigh`` or Cholesky of Θ) has no distributed implementation in XLA and runs on
the gathered matrix.
"""
from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxinfo import distributed as _dist
from jaxinfo._optional import progress_bar
from jaxinfo._types import ApplyFn
from jaxinfo._validation import (check_finite, check_int_at_least, check_positive,
                                 check_supervised, pad_rows)
from jaxinfo.checkpoint import fingerprint, open_store
from jaxinfo.dynamics import GradientDescent, as_dynamics
from jaxinfo.linearize import check_step_size, kernel_matrix, precision_scope, to_host64
from jaxinfo.sui import engines
from jaxinfo.sui.plan import lanczos_plan
from jaxinfo.sui.results import (METHODS, REDUCTIONS, LOOSolver, LOOVectors, from_stats,
                                 UniqueInformation, size_bucket)

__all__ = ["unique_information", "unique_information_from_kernel", "unique_information_core",
           "loo_vectors", "weight_changes"]

# t_max·m below which the vectorised power sum beats LAPACK's tridiagonal solver per sample.
_POWER_GAIN_MAX_WORK = 4_000_000
# Lanczos step counts are rounded up to a multiple of this (one compilation for nearby settings).
_LANCZOS_BUCKET = 16


@dataclasses.dataclass
class _Setup:
    """A validated full problem on the host (concrete values)."""

    prob: engines.Problem
    n: int
    k: int
    ts: np.ndarray
    dyn: GradientDescent
    n_pad: int  # samples in the arrays (≥ n: padded with inert ones)
    ref_rows: int | None  # real rows of Θ* (the arrays may have more), None without Θ*
    mesh: Mesh | None = None

    @property
    def nk(self) -> int:
        """Rows of the real problem (the padded arrays have ``n_pad·k``)."""
        return self.n * self.k

    @property
    def shift(self) -> float:
        return (self.n - 1) * float(self.dyn.weight_decay)

    def c_inv(self) -> jax.Array:
        if self.prob.c_inv is None:
            c_inv = engines.schur_inverse(self.prob, self.n, float(self.dyn.weight_decay))
            self.prob = self.prob._replace(c_inv=_on_mesh(c_inv, self.mesh, rows=True))
        return self.prob.c_inv

    def idx_sharding(self):
        """Chunk samples: on every device (the rows of Θ are what is split)."""
        return None if self.mesh is None else _dist.replicated(self.mesh)


def _on_mesh(a, mesh: Mesh | None, *, rows: bool):
    """``a`` sharded by rows over ``"data"`` (``rows``) or replicated; unchanged without mesh."""
    if mesh is None or a is None:
        return a
    return _dist.put(a, _dist.rows_sharding(mesh, a.shape[0]) if rows
                     else _dist.replicated(mesh))


def _place(dtype: str | None, mesh: Mesh | None, theta, r0, theta_ref):
    """The inputs in the working dtype: host float64 copies (one device, ``to_host64``), or with
    a mesh the kernels cast on the devices and sharded by rows (never gathered)."""
    if mesh is None:
        return to_host64(dtype, theta, r0, theta_ref)

    def kernel(a):
        if a is None:
            return None
        if not isinstance(a, jax.Array):
            a = np.asarray(a)
            a = np.asarray(kernel_matrix(a)) if a.ndim == 4 else a
        elif a.ndim == 4:
            a = kernel_matrix(a)
        want = (np.float64 if dtype == "float64" else a.dtype
                if jnp.issubdtype(a.dtype, jnp.floating) else np.float32)
        rows = _dist.rows_sharding(mesh, a.shape[0])
        if isinstance(a, jax.Array):
            return _dist.reshard(a, rows, want)
        return _dist.put(np.asarray(a, want), rows)

    return kernel(theta), to_host64(dtype, r0)[0], kernel(theta_ref)


def _check_finite_sharded(name: str, a) -> None:
    """:func:`check_finite` for a sharded array: one reduction on the devices."""
    if not bool(_dist.to_host(jnp.all(jnp.isfinite(a)))):
        raise ValueError(f"{name} contains NaN or Inf; clean the data or the parameters before "
                         "computing information measures.")


def _as_kernel(name: str, a: Any) -> jax.Array | np.ndarray:
    """``[nk, nk]`` from ``[n, n, k, k]``; NumPy arrays stay on the host (``jnp.asarray`` of a
    host array would compile a small program per shape)."""
    a = a if isinstance(a, (jax.Array, np.ndarray)) else jnp.asarray(a)
    return kernel_matrix(a) if a.ndim == 4 else a


def _pad(theta, r0, theta_ref, n: int, k: int, solver: LOOSolver | None, mesh: Mesh | None):
    """The problem padded with inert samples (:func:`engines.pad_problem`) to the size
    ``solver.pad_to`` asks for (reference rows to their bucket), and on a mesh up to a size the
    ``"data"`` axis divides (equal blocks of rows). Returns ``(theta, r0, theta_ref, n_pad)``."""
    n_pad = n if solver is None else solver.padded_size(n)
    m = None if theta_ref is None else theta_ref.shape[0] // k
    m_pad = m if m is None or solver is None or solver.pad_to is None else size_bucket(m)
    if mesh is not None:
        data = _dist.axis_size(mesh, "data")
        step = data // math.gcd(data, k)
        n_pad = -(-n_pad // step) * step
        m_pad = None if m_pad is None else -(-m_pad // step) * step
    if n_pad == n and m_pad == m:
        return theta, r0, theta_ref, n
    if mesh is None:  # NumPy on the host: no eager operation compiled per size
        theta, r0, theta_ref = (None if a is None else np.asarray(a)
                                for a in (theta, r0, theta_ref))
    theta, r0, theta_ref = engines.pad_problem(theta, r0, theta_ref, k, n_pad, m_pad)
    theta, theta_ref = (_on_mesh(a, mesh, rows=True) for a in (theta, theta_ref))
    return theta, r0, theta_ref, n_pad


def _setup(theta, r0, dyn: GradientDescent, theta_ref, method: str,
           mesh: Mesh | None = None, solver: LOOSolver | None = None) -> _Setup:
    theta = _as_kernel("theta", theta)
    if theta.ndim != 2 or theta.shape[0] != theta.shape[1]:
        raise ValueError(f"theta must be a square [nk, nk] matrix (or [n, n, k, k]), "
                         f"got shape {theta.shape}")
    if not jnp.issubdtype(theta.dtype, jnp.floating):
        theta = theta.astype(jnp.float32)
    r0 = (np.asarray if isinstance(r0, np.ndarray) else jnp.asarray)(r0, theta.dtype)
    nk = theta.shape[0]
    if r0.ndim == 2:
        n, k = r0.shape
    elif r0.ndim == 1:
        n, k = r0.shape[0], 1
    else:
        raise ValueError(f"r0 must be [n, k] (or [n] when k = 1), got shape {r0.shape}")
    check_int_at_least("n", n, 2)
    if n * k != nk:
        raise ValueError(f"r0 is [{n}, {k}] but theta is {theta.shape}: theta must be "
                         f"[n·k, n·k] = [{n * k}, {n * k}]")
    r0 = r0.reshape(-1)
    if theta_ref is not None:
        theta_ref = _as_kernel("theta_ref", theta_ref)
        theta_ref = (np.asarray if isinstance(theta_ref, np.ndarray) else jnp.asarray)(
            theta_ref, theta.dtype)
        if theta_ref.ndim != 2 or theta_ref.shape[1] != nk or theta_ref.shape[0] % k:
            raise ValueError(f"theta_ref must be [m·{k}, {nk}] (reference × training), "
                             f"got shape {theta_ref.shape}")
        (check_finite if mesh is None else _check_finite_sharded)("theta_ref", theta_ref)
    (check_finite if mesh is None else _check_finite_sharded)("theta", theta)
    check_finite("r0", r0)
    ref_rows = None if theta_ref is None else theta_ref.shape[0]
    theta, r0, theta_ref, n_pad = _pad(theta, r0, theta_ref, n, k, solver, mesh)
    ts = dyn.times()
    lam, lr = float(dyn.weight_decay), float(dyn.lr)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    spectral = method == "exact" or bool(np.any(np.isfinite(ts)))
    prob = engines.prepare(theta, r0, theta_ref, jnp.asarray(ts, theta.dtype), lr, lam, n,
                           spectral=spectral, continuous=dyn.continuous, zero_decay=lam == 0)
    if mesh is not None:  # big factors by rows like Θ; the small vectors on every device
        big = {"eigvecs": prob.eigvecs, "c_inv": prob.c_inv}
        small = {"r0": prob.r0, "alpha": prob.alpha, "r_full": prob.r_full,
                 "eigvals": prob.eigvals, "min_pivot": prob.min_pivot}
        prob = prob._replace(theta=theta, theta_ref=theta_ref,
                             **{key: _on_mesh(a, mesh, rows=True) for key, a in big.items()},
                             **{key: _on_mesh(a, mesh, rows=False) for key, a in small.items()})
    s_max = float(prob.eigvals[-1]) if spectral else float(engines.lambda_max(theta))
    check_step_size(s_max + n * lam, lr, n, continuous=dyn.continuous)
    check_step_size(s_max + (n - 1) * lam, lr, n - 1, continuous=dyn.continuous)
    singular = ("t = ∞ with a singular NTK and weight_decay = 0: the leave-one-out solutions are "
                "not unique ({}). Use weight_decay > 0 or a finite t.")
    eps = float(jnp.finfo(theta.dtype).eps)
    if spectral and np.any(np.isinf(ts)):
        shifted = prob.eigvals + (n - 1) * lam
        if float(shifted[0]) <= nk * eps * float(shifted[-1]):
            raise ValueError(singular.format(f"λ_min(Θ + (n−1)λI) = {float(shifted[0]):.3g}, "
                                             f"λ_max = {float(shifted[-1]):.3g}"))
    if not spectral:
        pivot = float(prob.min_pivot)
        finite = (np.isfinite(np.asarray(prob.c_inv)).all() if mesh is None
                  else bool(jnp.all(jnp.isfinite(prob.c_inv))))
        if not np.isfinite(pivot) or not finite \
                or pivot <= 10 * nk * eps * s_max:
            raise ValueError(singular.format(
                f"the Cholesky factorisation of Θ + (n−1)λI in {theta.dtype} breaks down or has "
                f"a pivot ≤ {10 * nk * eps:.1e}·λ_max, λ_max ≈ {s_max:.3g}"
                + ("; float64 (LOOSolver(dtype='float64')) may resolve it" if eps > 1e-10
                   else "")))
    return _Setup(prob, n, k, ts, dyn, n_pad, ref_rows, mesh)


def _resolve(st: _Setup, solver: LOOSolver):
    """Returns (method for the finite times, LanczosPlan or None)."""
    method = solver.method
    finite = st.ts[np.isfinite(st.ts)]
    if method == "exact":
        return "exact", None
    if method == "schur" and finite.size:
        raise ValueError("method='schur' needs t = ∞ (t=None); use 'lanczos' or 'exact' "
                         "for finite t")
    if not finite.size:  # t = ∞ only: the Schur complement is exact and cheapest
        return "schur", None
    dim = st.nk - st.k
    plan = lanczos_plan(float(st.prob.eigvals[0]) + st.shift,
                        float(st.prob.eigvals[-1]) + st.shift, finite,
                        eta=float(st.dyn.lr) / (st.n - 1), continuous=st.dyn.continuous,
                        tol=solver.tol, max_iter=solver.max_iter or dim + 1)
    # A padded problem keeps its shapes: m = the padded dimension when the Krylov space is the
    # whole (real) space — it is exhausted after the real dimension and closed by zero blocks.
    full = dim if st.n_pad == st.n else (st.n_pad - 1) * st.k
    if plan.iterations >= dim:  # the Krylov space is the whole space: exact (round-off only)
        plan = plan._replace(iterations=full, abs_bound=0.0, rel_bound=0.0, reached=True)
    # Lanczos costs m·(nk)² per sample against ~10·(nk)³ for an eigendecomposition, so it wins
    # even when m approaches the dimension (where it re-orthogonalises and is exact); "auto"
    # falls back to "exact" only when the bound cannot be met within max_iter.
    if method == "auto" and not plan.reached:
        return "exact", None
    if not plan.reached:
        warnings.warn(f"Lanczos reached relative error bound {plan.rel_bound:.2e} > "
                      f"tol={solver.tol:g} with max_iter={plan.iterations} steps; use "
                      "method='exact' or a larger max_iter", RuntimeWarning, stacklevel=3)
    elif solver.max_iter is None and plan.iterations < dim:
        # Round the step count up to a multiple of _LANCZOS_BUCKET: the compiled Lanczos
        # recurrence is then reused across nearby hyperparameters (lr, λ, t move m a little).
        # More steps only shrink the error, so the bound computed for m stays valid.
        bucket = min(dim, -(-plan.iterations // _LANCZOS_BUCKET) * _LANCZOS_BUCKET)
        if bucket >= dim:
            plan = plan._replace(iterations=full, abs_bound=0.0, rel_bound=0.0)
        else:
            plan = plan._replace(iterations=bucket)
    return "lanczos", plan


def _default_chunk(st: _Setup, method: str, plan, memory_budget: int) -> int:
    nk, T = st.prob.theta.shape[0], len(st.ts)
    item = st.prob.theta.dtype.itemsize
    if method == "exact":
        per = (3 * nk * nk + 4 * T * nk) * item
    elif method == "lanczos":
        m = plan.iterations  # Krylov basis [m, nk] and tridiagonal eigenvectors [m, m]
        per = (m * nk + m * m + 8 * nk + 4 * T * nk) * item
    else:
        per = (6 * T * nk + 2 * nk * st.k) * item
    return int(max(1, min(st.n_pad, memory_budget // max(per, 1), 4096)))


def _tridiagonal_eigh(diag: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of the c tridiagonal T_m (LAPACK stemr via scipy, O(m²) each).

    A host loop over samples: LAPACK's tridiagonal solver is ~20× faster than a batched dense
    eigh here (XLA's CPU eigh of [c, m, m] dominated the run time).
    """
    from scipy.linalg import eigh_tridiagonal

    c, m = diag.shape
    vals = np.empty((c, m))
    vecs = np.empty((c, m, m))
    for i in range(c):
        if m == 1:
            vals[i], vecs[i] = diag[i], 1.0
        else:
            vals[i], vecs[i] = eigh_tridiagonal(diag[i], off[i, :-1])
    return vals, vecs


def _alpha_lanczos(st: _Setup, idx, ts, m: int):
    """α'_{−i}(t) ≈ −‖b‖ Q_m g(T_m) e₁ for a chunk. ``[c, T, nk]``.

    g(T_m)e₁: for discrete GD with moderate t (t·m ≤ 4e6) by the vectorised power sum;
    otherwise from the Ritz pairs (LAPACK per sample).
    """
    theta, dtype = st.prob.theta, st.prob.theta.dtype
    eta = float(st.dyn.lr) / (st.n - 1)
    reorth = m >= st.nk - st.k
    diag, off, basis, bnorm = engines.lanczos_run(
        theta, st.prob.r0, idx, st.shift, float(st.prob.eigvals[-1]) + st.shift, st.k, m, reorth)
    t_max = float(np.max(np.asarray(ts)))
    if not st.dyn.continuous and np.isfinite(t_max) and t_max * m <= _POWER_GAIN_MAX_WORK:
        y = engines.power_gain(diag, off, ts, eta)
    else:
        ritz, vecs = _tridiagonal_eigh(np.asarray(_dist.to_host(diag), np.float64),
                                       np.asarray(_dist.to_host(off), np.float64))
        y = engines.ritz_gain(jnp.asarray(ritz, dtype), jnp.asarray(vecs, dtype), ts, eta,
                              st.dyn.continuous)
    return engines.lanczos_combine(y, basis, bnorm)


def _compute_chunk(st: _Setup, method: str, plan, idx: np.ndarray, vectors: bool) -> dict:
    """All quantities of one chunk of samples (``idx`` padded to the chunk size).

    t = ∞ entries use the Schur complement unless ``method == "exact"``; finite times use
    ``method`` (``"lanczos"`` or ``"exact"``).
    """
    theta, dtype = st.prob.theta, st.prob.theta.dtype
    idx_j = jnp.asarray(np.asarray(idx, np.int32))
    if st.mesh is not None:
        idx_j = _dist.put(idx_j, st.idx_sharding())
    fin = np.isfinite(st.ts)
    parts = []  # (column mask, [c, T_sel, nk])
    if method == "exact":
        parts.append((np.ones_like(fin), engines.alpha_exact(
            theta, st.prob.r0, idx_j, jnp.asarray(st.ts, dtype), float(st.dyn.lr) / (st.n - 1),
            st.shift, st.k, st.dyn.continuous)))
    else:
        if np.any(~fin):
            parts.append((~fin, engines.alpha_schur(st.c_inv(), st.prob.r0, idx_j, st.k)))
        if np.any(fin):
            parts.append((fin, _alpha_lanczos(st, idx_j, jnp.asarray(st.ts[fin], dtype),
                                              plan.iterations)))
    if len(parts) == 1:
        alpha_p = parts[0][1]
    else:
        alpha_p = np.empty((len(idx), len(st.ts), theta.shape[0]), dtype=np.dtype(dtype))
        for cols, val in parts:
            alpha_p[:, cols] = _dist.to_host(val)
        alpha_p = jnp.asarray(alpha_p)
        if st.mesh is not None:
            alpha_p = _dist.put(alpha_p, st.idx_sharding())
    stats = engines.chunk_stats(theta, st.prob.theta_ref, st.prob.r0, st.prob.alpha,
                                st.prob.r_full, alpha_p, idx_j, st.k, vectors, st.n)
    out = {key: _dist.to_host(v) for key, v in stats.items()}
    keep = np.arange(theta.shape[0])[None] // st.k != idx[:, None]
    bnorm = np.linalg.norm(np.where(keep, _dist.to_host(st.prob.r0)[None], 0.0), axis=1)
    out["alpha_error_bound"] = bnorm * (plan.abs_bound if plan is not None else 0.0)
    return out


def _run(st: _Setup, method: str, plan, solver: LOOSolver, *, vectors: bool, progress: bool,
         checkpoint_dir) -> dict:
    """Runs every chunk (progress bar, checkpoints) and concatenates the results."""
    n, n_pad = st.n, st.n_pad  # the chunk size depends on n_pad only (one compilation)
    if solver.chunk_size is None:
        chunk = _default_chunk(st, method, plan, solver.memory_budget)
        chunk = -(-n_pad // -(-n_pad // chunk))  # equal chunks: as little padding as possible
    else:
        chunk = min(int(solver.chunk_size), n_pad)
    m = plan.iterations if plan else 0
    store = None
    if checkpoint_dir is not None and not vectors:
        fp = fingerprint(*(None if a is None else _dist.to_host(a)
                           for a in (st.prob.theta, st.prob.r0, st.prob.theta_ref)), n=n, k=st.k,
                         lr=float(st.dyn.lr), ts=st.ts.tolist(), continuous=st.dyn.continuous,
                         weight_decay=float(st.dyn.weight_decay), method=method, tol=solver.tol,
                         chunk=chunk, m=m)
        store = open_store(checkpoint_dir, fp, kind="unique_information", n=n, chunk=chunk,
                           method=method)
    results = []
    bar = progress_bar(total=n, desc=f"leave-one-out ({method})", enable=progress,
                       unit="sample")
    for c, start in enumerate(range(0, n, chunk)):
        stop = min(start + chunk, n)
        res = None if store is None else store.load(f"chunk_{c:06d}")
        if res is None:
            idx = np.minimum(np.arange(start, start + chunk), n - 1)  # pad: one compilation
            res = _compute_chunk(st, method, plan, idx, vectors)
            res = {key: v[:stop - start] for key, v in res.items()}
            if store is not None:
                store.save(f"chunk_{c:06d}", **res)
        results.append(res)
        bar.update(stop - start)
    bar.close()
    return {key: np.concatenate([r[key] for r in results]) for key in results[0]}


def _solve(theta, r0, dyn: GradientDescent, theta_ref, solver: LOOSolver, mesh, *, vectors: bool,
           progress: bool, checkpoint_dir):
    """Placement, validation, method choice and the chunked run (inside the precision scope).

    Returns ``(setup, method, plan, per-sample arrays)``."""
    if mesh is not None:
        mesh = _dist.auto_mesh(mesh)
    theta, r0, theta_ref = _place(solver.dtype, mesh, theta, r0, theta_ref)
    st = _setup(theta, r0, dyn, theta_ref, solver.method, mesh, solver)
    meth, plan = _resolve(st, solver)
    out = _run(st, meth, plan, solver, vectors=vectors, progress=progress,
               checkpoint_dir=checkpoint_dir)
    return st, meth, plan, out


# ============================================================================ public API

def loo_vectors(theta: jax.Array, r0: jax.Array, dynamics: GradientDescent, *,
                theta_ref: jax.Array | None = None, solver: LOOSolver = LOOSolver(),
                progress: bool = False, mesh: Mesh | None = None) -> LOOVectors:
    """Leave-one-out change vectors of every training sample, from a precomputed kernel.

    Args:
      theta: ``[nk, nk]`` (or ``[n, n, k, k]``) training NTK Θ, sample-major.
      r0: ``[n, k]`` (or ``[n]`` when k = 1) initial residuals f(w0, X) − Y.
      dynamics: :class:`jaxinfo.GradientDescent`; ``t`` may be a sequence of times. The full
        run uses η = lr/n and decay nλ, each leave-one-out run η' = lr/(n−1) and (n−1)λ.
      theta_ref: ``[mk, nk]`` reference × training NTK Θ* (optional).
      solver: :class:`jaxinfo.LOOSolver`. With a mix of finite times and ∞, the t = ∞ entries
        use the Schur complement unless ``method="exact"``; ``method`` in the result reports
        the method of the finite times.
      progress: progress bar over samples.
      mesh: a :class:`jax.sharding.Mesh` with a ``"data"`` axis, or ``None`` (one device):
        the kernels are sharded by rows over it and every chunk runs on all its devices
        (module docstring); the results equal the single-device ones up to round-off.

    Returns:
      :class:`LOOVectors`. Memory: ``T·n·nk`` numbers for each vector field; use
      :func:`unique_information_from_kernel` for the reduced quantities only.
    """
    dyn = as_dynamics(dynamics)
    with precision_scope(solver.dtype):
        st, meth, plan, out = _solve(theta, r0, dyn, theta_ref, solver, mesh, vectors=True,
                                     progress=progress, checkpoint_dir=None)
    T, nk = len(st.ts), st.nk
    tr = lambda a: np.swapaxes(a, 0, 1)  # noqa: E731 - [n, T, …] -> [T, n, …]
    ref = None
    if st.prob.theta_ref is not None:  # (padded entries dropped: they are exactly zero)
        ref = tr(out["ref_change"][..., :st.ref_rows]).reshape(T, st.n, -1, st.k)
    return LOOVectors(st.ts, _dist.to_host(st.prob.alpha)[:, :nk],
                      tr(out["delta_alpha"][..., :nk]), tr(out["train_change"][:, :, :st.n]),
                      ref, tr(out["train_loss_change"]),
                      tr(out["weight_change_sq"]), out["alpha_error_bound"], meth,
                      plan.iterations if plan else 0)


def _check_smoothing(sigma, sigma_f, reduction):
    check_positive("sigma", sigma)
    check_positive("sigma_f", sigma_f)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _single_time(dyn: GradientDescent) -> None:
    if dyn.t is not None and np.ndim(dyn.t) != 0:
        raise ValueError(f"dynamics.t must be a single time or None (use loo_vectors for several), "
                         f"got {dyn.t!r}")


def unique_information_from_kernel(theta: jax.Array, r0: jax.Array, dynamics: GradientDescent,
                                   *, theta_ref: jax.Array | None = None, sigma: float = 1.0,
                                   sigma_f: float = 1.0, reduction: str = "mean",
                                   solver: LOOSolver = LOOSolver(), progress: bool = True,
                                   checkpoint_dir: str | os.PathLike | None = None,
                                   mesh: Mesh | None = None) -> UniqueInformation:
    """Smooth unique information of every sample from a precomputed kernel (nats).

    Args:
      theta, r0, dynamics, theta_ref, solver: as in :func:`loo_vectors` (one time).
      sigma: σ > 0 of the weight smoothing N(0, σ²I).
      sigma_f: σ_f > 0 of the prediction smoothing N(0, σ_f²I).
      reduction: ``"mean"`` (per reference input) or ``"sum"`` (total) over the reference set
        (Θ* rows, or the other n−1 training samples without ``theta_ref``).
      progress: progress bar over samples.
      checkpoint_dir: directory where finished chunks are saved; a run interrupted and
        restarted with the same inputs and settings reuses them (:mod:`jaxinfo.checkpoint`).
      mesh: a :class:`jax.sharding.Mesh` with a ``"data"`` axis (:mod:`jaxinfo.distributed`),
        or ``None`` (one device). ``theta`` may be a sharded ``jax.Array`` (as
        :func:`jaxinfo.empirical_ntk` returns with ``mesh``) or a host array; it is kept
        sharded by rows and the chunk products run on all devices (module docstring). The
        results equal the single-device ones up to round-off.

    Returns:
      :class:`UniqueInformation` with ``[n]`` numpy arrays.

    Cost: t = ∞ one Cholesky factorisation plus O(n·nk·k) (Schur); finite t one
    eigendecomposition and m Lanczos steps of ``[n, nk]×[nk, nk]`` matmuls, O(m·n·(nk)²).
    """
    dyn = as_dynamics(dynamics)
    _check_smoothing(sigma, sigma_f, reduction)
    _single_time(dyn)
    with precision_scope(solver.dtype):
        st, meth, plan, out = _solve(theta, r0, dyn, theta_ref, solver, mesh, vectors=False,
                                     progress=progress, checkpoint_dir=checkpoint_dir)
        r_full = _dist.to_host(st.prob.r_full)[0, :st.nk]
        sample_loss = 0.5 * np.sum(r_full.reshape(st.n, st.k) ** 2, 1)
    return from_stats({key: v[:, 0] for key, v in out.items() if v.ndim == 2}, n=st.n, k=st.k,
                      ref_rows=st.ref_rows, reduction=reduction, sigma=float(sigma),
                      sigma_f=float(sigma_f), sample_loss=sample_loss,
                      alpha_error_bound=out["alpha_error_bound"], dynamics=dyn, method=meth,
                      iterations=plan.iterations if plan else 0)


def unique_information_core(theta: jax.Array, r0: jax.Array, dynamics: GradientDescent, *,
                            theta_ref: jax.Array | None = None, sigma: Any = 1.0,
                            sigma_f: Any = 1.0, reduction: str = "mean", method: str = "schur",
                            iterations: int = 0) -> UniqueInformation:
    """The kernel-level SUI computation as one pure function: ``jax.jit`` / ``jax.vmap`` it.

    The same engines as :func:`unique_information_from_kernel` without the host layer: no
    chunking (memory grows with n·nk per quantity), no progress bar, no checkpoints, no
    automatic method choice, and checks only on concrete values. Runs in the dtype of its
    inputs (enable float64 for float64).

    Args:
      theta: ``[nk, nk]`` training NTK. r0: ``[n, k]`` initial residuals (static shape gives n
        and k). dynamics: :class:`jaxinfo.GradientDescent` with one time (lr, t, λ may be
        traced). theta_ref: ``[mk, nk]`` or ``None``.
      sigma, sigma_f, reduction: as in :func:`unique_information_from_kernel`.
      method: ``"schur"`` (t must be ∞), ``"exact"`` (any t; O(n·(nk)³)) or ``"lanczos"``
        (finite t, ``iterations`` steps; choose them with :func:`jaxinfo.lanczos_plan`; the
        error bound is not evaluated here: ``alpha_error_bound`` is NaN).
      iterations: Lanczos steps (static).

    Returns:
      :class:`UniqueInformation` of arrays (a pytree).
    """
    dyn = as_dynamics(dynamics)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if method not in ("schur", "exact", "lanczos"):
        raise ValueError(f"method must be 'schur', 'exact' or 'lanczos', got {method!r}")
    theta = _as_kernel("theta", theta)
    r0 = jnp.asarray(r0, theta.dtype)
    if r0.ndim == 1:
        r0 = r0[:, None]
    n, k = r0.shape
    if dyn.is_concrete:
        _single_time(dyn)
        if (method == "schur") != (dyn.t is None or np.isinf(dyn.t)):
            raise ValueError(f"method={method!r} with t={dyn.t!r}: 'schur' is for t = ∞ (t=None) "
                             "only; use 'exact' or 'lanczos' for finite t")
        if method == "lanczos" and not 1 <= iterations <= n * k - k:
            raise ValueError(f"iterations must be in [1, {n * k - k}] for 'lanczos', got "
                             f"{iterations}")
    ts = jnp.atleast_1d(jnp.asarray(jnp.inf if dyn.t is None else dyn.t, theta.dtype))
    ref = None if theta_ref is None else jnp.asarray(_as_kernel("theta_ref", theta_ref),
                                                     theta.dtype)
    out = engines.loo_statistics(theta, r0.reshape(-1), ref, ts, dyn.lr, dyn.weight_decay, k=k,
                                 method=method, continuous=dyn.continuous, iterations=iterations)
    bound = jnp.full((n,), jnp.nan if method == "lanczos" else 0.0, theta.dtype)
    return from_stats({key: v[:, 0] for key, v in out.items() if key != "sample_loss"}, n=n,
                      k=k, ref_rows=None if ref is None else ref.shape[0], reduction=reduction,
                      sigma=sigma, sigma_f=sigma_f, sample_loss=out["sample_loss"][0],
                      alpha_error_bound=bound, dynamics=dyn, method=method,
                      iterations=iterations)


def unique_information(apply_fn: ApplyFn, params: Any, x_train: Any, y_train: Any = None,
                       x_ref: Any = None, *, dynamics: GradientDescent, sigma: float = 1.0,
                       sigma_f: float = 1.0, reduction: str = "mean",
                       solver: LOOSolver = LOOSolver(), batch_size: int | None = None,
                       progress: bool = True,
                       checkpoint_dir: str | os.PathLike | None = None,
                       kernel_dir: str | os.PathLike | None = None,
                       projection_dim: int | None = None,
                       key: jax.Array | None = None,
                       mesh: Mesh | None = None) -> UniqueInformation:
    """Smooth unique information of every training sample of a network (nats).

    The network is linearized at ``params`` and trained in closed form (MSE, full-batch GD or
    gradient flow, per ``dynamics``; ``docs/maths/sui.md``). For each sample i the same
    training without it gives w_t^{(−i)} and f_t^{(−i)}, and

        weight SI(i)     = ‖w_t − w_t^{(−i)}‖² / (2σ²)
        functional SI(i) = (1/(2σ_f²))·(1/M)·Σ_{x∈X*} ‖f_t(x) − f_t^{(−i)}(x)‖².

    Args:
      apply_fn: ``apply_fn(params, x) -> [batch, k]``.
      params: weights w0 at which the network is linearized (any pytree).
      x_train: ``[n, ...]`` training inputs (n ≥ 2), a :class:`jaxinfo.data.Dataset`, or an
        iterable of dict batches with ``"x"`` and ``"y"`` (then the NTK is computed in blocks
        of the batch size).
      y_train: ``[n, k]`` targets (``[n]`` when k = 1); ``None`` when ``x_train`` carries them.
      x_ref: ``[m, ...]`` reference inputs X* (or batches); ``None``: for sample i, the other
        n−1 training samples.
      dynamics: :class:`jaxinfo.GradientDescent` (one time).
      sigma, sigma_f, reduction, solver, progress, checkpoint_dir: see
        :func:`unique_information_from_kernel`. The NTK is computed in the dtype of
        ``params``/``x_train``; the leave-one-out arithmetic in float64 unless
        ``solver.dtype`` is ``None``.
      batch_size: samples per NTK block (bounds the Jacobian memory; :func:`jaxinfo.empirical_ntk`).
      kernel_dir: folder for an out-of-core kernel. When Θ (``(nk)²`` float64) exceeds
        ``solver.memory_budget``, Θ is computed tile by tile into this folder (resumable:
        :mod:`jaxinfo.kernel_store`) and the t = ∞ leave-one-out is solved blockwise from disk
        (:mod:`jaxinfo.sui.out_of_core`; t = ∞ only). Otherwise it is not used.
      projection_dim: d — solve in a d-dimensional sketch of the weight space instead of with
        the n×n kernel (:mod:`jaxinfo.sui.projected`; cost linear in n). This scores the
        *sketched* linearized model (kernel ΦΦᵀ ≈ Θ); d ≥ P gives the exact primal form; 4096
        (``jaxinfo.sui.projected.DEFAULT_PROJECTION_DIM``) is a measured good start. Without
        it, the exact primal form is used automatically when P < nk, t = ∞ and Θ exceeds
        ``solver.memory_budget``.
      key: ``jax.random`` key of the sketch (needed when ``projection_dim < P``). The weight-space
        path does not use ``checkpoint_dir`` or ``batch_size`` (it streams Jacobians in chunks
        sized by ``solver.memory_budget``).
      mesh: a :class:`jax.sharding.Mesh` with a ``"data"`` axis and optionally a ``"model"``
        axis (:func:`jaxinfo.distributed.data_mesh`), or ``None`` (one device). The NTKs are
        computed sharded (:func:`jaxinfo.empirical_ntk` with ``mesh``) and stay sharded through
        the leave-one-out engine (:func:`unique_information_from_kernel`); the results equal
        the single-device ones up to round-off. With ``projection_dim`` the Jacobian features
        are computed over the mesh and the d × d solve runs on the host; with ``kernel_dir``
        each kernel tile is computed over the mesh (one process) and the blockwise solve
        reads the file as without a mesh.

    Returns:
      :class:`UniqueInformation` (``[n]`` arrays, nats for the SI fields).
    """
    from jaxinfo.ntk import empirical_ntk

    as_dynamics(dynamics)
    _check_smoothing(sigma, sigma_f, reduction)
    padded = None if solver.pad_to is None or mesh is not None else solver.padded_size
    sup = check_supervised(apply_fn, params, x_train, y_train, x_ref, padded_size=padded)
    n, k = sup.f0.shape
    too_big = (n * k) ** 2 * 8 > solver.memory_budget
    if projection_dim is not None or (mesh is None and too_big and dynamics.t is None
                                      and _num_params(params) < n * k):
        from jaxinfo.sui.projected import unique_information_projected
        return unique_information_projected(
            apply_fn, params, sup.x, sup.y, sup.x_ref, dynamics=dynamics,
            projection_dim=projection_dim, key=key, sigma=sigma, sigma_f=sigma_f,
            reduction=reduction, solver=solver, progress=progress, mesh=mesh)
    if kernel_dir is not None and too_big:
        from jaxinfo.kernel_store import compute_kernel
        from jaxinfo.sui.out_of_core import unique_information_out_of_core
        kernel = compute_kernel(apply_fn, params, sup.x, kernel_dir,
                                memory_budget=solver.memory_budget, progress=progress, mesh=mesh)
        theta_ref = None if sup.x_ref is None else kernel_matrix(_dist.to_host(empirical_ntk(
            apply_fn, params, sup.x_ref, sup.x, trace_axes=(), batch_size=batch_size,
            mesh=mesh)))
        return unique_information_out_of_core(
            kernel, sup.f0 - sup.y, dynamics, theta_ref=theta_ref, sigma=sigma, sigma_f=sigma_f,
            reduction=reduction, solver=solver, progress=progress, checkpoint_dir=checkpoint_dir)
    kw = dict(trace_axes=(), batch_size=batch_size or sup.batch_size, mesh=mesh)
    # On one device the kernels go to the host (the solver works on host float64 copies), so
    # their reshaping and the residuals are NumPy work, not small compiled programs.
    host = np.asarray if mesh is None else (lambda a: a)  # noqa: E731
    # With solver.pad_to the inputs are padded too (one compiled NTK across n); the padded
    # rows are dropped here and the leave-one-out problem is padded with inert samples instead.
    n_pad = solver.padded_size(n)
    x_pad = pad_rows(sup.x, n_pad)
    theta = kernel_matrix(host(empirical_ntk(apply_fn, params, x_pad, **kw)))
    theta = theta if n_pad == n else theta[:n * k, :n * k]
    theta_ref = None
    if sup.x_ref is not None:
        m = len(sup.x_ref)
        x_ref = pad_rows(sup.x_ref, m if solver.pad_to is None else size_bucket(m))
        theta_ref = kernel_matrix(host(empirical_ntk(apply_fn, params, x_ref, x_pad, **kw)))
        theta_ref = theta_ref if theta_ref.shape == (m * k, n * k) else theta_ref[:m * k, :n * k]
    return unique_information_from_kernel(
        theta, np.asarray(sup.f0) - np.asarray(sup.y), dynamics, theta_ref=theta_ref,
        sigma=sigma, sigma_f=sigma_f,
        reduction=reduction, solver=solver, progress=progress, checkpoint_dir=checkpoint_dir,
        mesh=mesh)


def _num_params(params: Any) -> int:
    return sum(int(np.prod(np.shape(p))) for p in jax.tree_util.tree_leaves(params))


def weight_changes(apply_fn: ApplyFn, params: Any, x_train: jax.Array,
                   delta_alpha: jax.Array) -> Any:
    """Weight-space changes ``Δw = Jᵀ Δα`` by one VJP per row (J never materialised).

    Args:
      apply_fn, params, x_train: the network, its weights w0 and its n training inputs.
      delta_alpha: ``[s, n, k]`` or ``[s, nk]`` kernel-space changes, e.g.
        ``loo_vectors(...).delta_alpha[t]`` (then Δw_i = w_t^{(−i)} − w_t).

    Returns:
      A pytree like ``params`` whose leaves have a leading ``[s]`` axis.
    """
    f0, vjp_fn = jax.vjp(lambda p: apply_fn(p, x_train), params)
    d = jnp.asarray(delta_alpha, f0.dtype).reshape((-1,) + f0.shape)
    return jax.vmap(lambda a: vjp_fn(a)[0])(d)

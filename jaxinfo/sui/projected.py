"""Smooth unique information without the n×n kernel: the primal (weight-space) form.

The kernel path works with Θ = JJᵀ ``[nk, nk]``: memory ``(nk)²`` and a ``(nk)³``
factorisation. In weight space the same leave-one-out problems are ``P × P`` (or ``d × d`` after
a projection) and cost **linear in n**.

**Features.** Φ ``[nk, d]`` are the rows of the per-sample Jacobians J ``[nk, P]`` (sample-major),
either exactly (``d = P``: the *exact primal form*) or sketched, ``Φ = J Sᵀ`` with a subsampled
randomized Hadamard transform

    S = √(P'/d) · R H D     (``[d, P']``; P' = P rounded up to a power of two, J zero-padded),

D a random ±1 diagonal, H the orthonormal Walsh–Hadamard matrix (applied by the fast transform,
``P' log P'`` per row) and R the selection of d of the P' coordinates without replacement. No
``P × d`` matrix exists: the transform is applied to chunks of per-sample Jacobian rows, and a
sketch is stored as P' signs and d indices. ``E[SᵀS] = I``, so Θ̃ = ΦΦᵀ ≈ Θ (a
Johnson–Lindenstrauss embedding of the Jacobian rows); with d = P' it is exact
(S is orthogonal).

**What the projection changes.** With a sketch, jaxinfo scores the *sketched linearized model*
``f(w0 + Sᵀv, x) ≈ f0(x) + Φ(x)v`` with parameters ``v ∈ ℝᵈ`` and decay ``(λ/2)‖v‖²`` — i.e. the
kernel path run on Θ̃ = ΦΦᵀ instead of Θ. Weight SI is ``‖Δv‖²/(2σ²)`` (the sketched model's own
parameters; ``‖SᵀΔv‖² = (P'/d)‖Δv‖²`` in the original coordinates), functional SI is that of the
sketched model's predictions. Rankings and correlations with the exact scores improve with d
(``benchmarks/RESULTS.md``); d ≥ P uses Φ = J (no projection, exact).

**Leave-one-out in weight space, t = ∞.** With G = ΦᵀΦ, ``M = G + (n−1)λI`` and ``b = Φᵀr0``,
the full run is ``v = −(G + nλI)⁻¹b`` and leaving sample i (rows K, ``U = Φ_K`` ``[k, d]``) out
gives ``v'_i = −(M − UᵀU)⁻¹(b − Uᵀr0_K)`` (push-through: ``Φᵀ(ΦΦᵀ + cI)⁻¹ = (ΦᵀΦ + cI)⁻¹Φᵀ``,
the dual solution of the kernel path mapped to weights). By Sherman–Morrison–Woodbury, with
``W = M⁻¹Uᵀ`` ``[d, k]`` and ``y = M⁻¹(b − Uᵀr0_K)``,

    (M − UᵀU)⁻¹(b − Uᵀr0_K) = y + W (I_k − UW)⁻¹ U y.

Then ``Δv = v'_i − v``, ``‖Δw‖² = ‖Δv‖²``, the change of the other training predictions
``Σ_{j≠i}‖Φ_jΔv‖² = ΔvᵀGΔv − ‖UΔv‖²`` and on reference inputs ``ΔvᵀG*Δv`` with
``G* = Φ*ᵀΦ*``: O(d²k) per sample after one ``O(d³)`` factorisation and ``O(nkd²)`` for G.
When d ≥ nk the dual is cheaper and the kernel path runs on Θ̃ = ΦΦᵀ (any t).

**Finite t** (:func:`primal_loo_finite`): one eigendecomposition ``G = V diag(s) Vᵀ``; in that
basis each leave-one-out matrix is ``diag(s + (n−1)λ) − ŨᵀŨ`` (diagonal minus rank k), and
``g'_t`` of it applied to the right-hand side is computed by m Lanczos steps of ``O(dk)`` each,
with m and its a-priori error bound from :func:`jaxinfo.lanczos_plan` (as in the kernel path).
"""
from __future__ import annotations

import logging
import math
import time
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from jaxinfo._optional import progress_bar
from jaxinfo._types import DEFAULT_MEMORY_BUDGET, ApplyFn
from jaxinfo.dynamics import GradientDescent, as_dynamics
from jaxinfo.sui import engines
from jaxinfo.sui.results import LOOSolver, UniqueInformation, from_stats

__all__ = ["DEFAULT_PROJECTION_DIM", "Sketch", "make_sketch", "sketch_rows", "features",
           "primal_loo", "primal_loo_finite",
           "unique_information_projected"]

_HI = lax.Precision.HIGHEST

#: Recommended sketch size d: on Fashion-MNIST (n = 2000, MLP with P = 50,689, t = ∞, λ = 1e-3)
#: the sketched functional SI correlates with the exact one at Pearson ≥ 0.99 and Spearman
#: ≈ 0.93 (d = 8192: 0.996 / 0.96; d = 1024: 0.95 / 0.79); see ``benchmarks/RESULTS.md``.
DEFAULT_PROJECTION_DIM = 4096

#: Phase timings (``phase=<name> seconds=<s>``) are logged at INFO level.
_log = logging.getLogger(__name__)


class Sketch(NamedTuple):
    """A subsampled randomized Hadamard transform ``S = √(P'/d)·R H D`` (``[d, P']``).

    Attributes:
      signs: ``[P']`` ±1 (D). rows: ``[d]`` distinct coordinates in ``[0, P')`` (R).
    """

    signs: jax.Array
    rows: jax.Array


def make_sketch(key: jax.Array, num_params: int, d: int, dtype=jnp.float32) -> Sketch:
    """A sketch of P = ``num_params`` coordinates to d (d ≤ P', P' the next power of two)."""
    p2 = 1 << max(0, math.ceil(math.log2(num_params)))
    if not 1 <= d <= p2:
        raise ValueError(f"projection_dim must be in [1, {p2}], got {d}")
    k1, k2 = jax.random.split(key)
    signs = jax.random.rademacher(k1, (p2,), dtype=dtype)
    rows = jnp.sort(jax.random.permutation(k2, p2)[:d])
    return Sketch(signs, rows)


def _fwht(x: jax.Array) -> jax.Array:
    """Orthonormal fast Walsh–Hadamard transform of the rows of ``x`` ``[r, m]`` (m = 2^q)."""
    r, m = x.shape
    h = 1
    while h < m:
        y = x.reshape(r, m // (2 * h), 2, h)
        x = jnp.stack([y[:, :, 0] + y[:, :, 1], y[:, :, 0] - y[:, :, 1]], axis=2).reshape(r, m)
        h *= 2
    return x / jnp.sqrt(jnp.asarray(m, x.dtype))


@jax.jit
def sketch_rows(sketch: Sketch, rows: jax.Array) -> jax.Array:
    """``rows Sᵀ``: ``[r, P]`` Jacobian rows → ``[r, d]`` (zero-padded to P', signs, FWHT, pick)."""
    p2, d = sketch.signs.shape[0], sketch.rows.shape[0]
    x = jnp.pad(rows, ((0, 0), (0, p2 - rows.shape[1]))) * sketch.signs
    return _fwht(x)[:, sketch.rows] * jnp.sqrt(jnp.asarray(p2 / d, rows.dtype))


@partial(jax.jit, static_argnames=("apply_fn", "unravel"))
def _jacobian_rows(apply_fn, unravel, flat, x):
    """Per-sample Jacobians ``[c·k, P]`` (sample-major rows) of a chunk ``x [c, ...]``."""
    def one(xi):
        return jax.jacrev(lambda w: apply_fn(unravel(w), xi[None])[0])(flat)  # [k, P]

    jac = jax.vmap(one)(x)
    return jac.reshape(-1, flat.shape[0])


def features(apply_fn: ApplyFn, params: Any, x: Any, sketch: Sketch | None = None, *,
             chunk: int = 64, progress: bool = False, mesh: Any = None) -> np.ndarray:
    """Φ = J Sᵀ ``[nk, d]`` (float64, host), or J ``[nk, P]`` without a sketch.

    Per-sample Jacobians are formed ``chunk`` samples at a time (last chunk padded: one
    compilation) and sketched at once, so memory is ``chunk·k·P'`` plus Φ. With a ``mesh``
    (a :class:`jax.sharding.Mesh`) the samples of each chunk are split over all its devices
    (``chunk`` samples *per device*; weights and sketch replicated) and the rows of Φ come
    back to the host.
    """
    from jaxinfo import distributed as dist

    flat, unravel = ravel_pytree(params)
    x = np.asarray(x)
    n = x.shape[0]
    place = jnp.asarray
    if mesh is not None:  # samples over every device of the mesh; the rest replicated
        devices = int(np.prod(list(mesh.shape.values())))
        chunk = max(1, chunk) * devices
        split = dist.rows_sharding(mesh, axes=tuple(mesh.axis_names))
        flat, sketch = jax.tree_util.tree_map(
            lambda a: dist.put(a, dist.replicated(mesh)), (flat, sketch))
        place = lambda a: dist.put(a, split)  # noqa: E731
    chunk = max(1, min(chunk, n))
    if mesh is not None:
        chunk = -(-chunk // devices) * devices
    out = []
    bar = progress_bar(total=n, desc="Jacobian features", enable=progress, unit="sample")
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        idx = np.minimum(np.arange(start, start + chunk), n - 1)
        rows = _jacobian_rows(apply_fn, unravel, flat, place(x[idx]))
        if sketch is not None:
            rows = sketch_rows(sketch, rows)
        k = rows.shape[0] // chunk
        out.append(np.asarray(dist.to_host(rows), np.float64)[:(stop - start) * k])
        bar.update(stop - start)
    bar.close()
    return np.concatenate(out)


@partial(jax.jit, static_argnames=("k",))
def _loo_chunk(chol_m, v_m, v, gram, gram_ref, u, r0k, k):
    """SMW leave-one-out for a chunk: U ``[c, k, d]``, r0_K ``[c, k]``. Returns stats ``[c]``."""
    c, _, d = u.shape
    w = jax.scipy.linalg.cho_solve((chol_m, True), u.reshape(c * k, d).T)  # [d, ck]
    w = w.T.reshape(c, k, d)  # W_i = M⁻¹U_iᵀ, stored transposed [k, d]
    y = v_m[None] - jnp.einsum("ckd,ck->cd", w, r0k, precision=_HI)
    s = jnp.eye(k, dtype=u.dtype)[None] - jnp.einsum("ckd,cjd->ckj", u, w, precision=_HI)
    uy = jnp.einsum("ckd,cd->ck", u, y, precision=_HI)
    z = y + jnp.einsum("ckd,ck->cd", w, jnp.linalg.solve(s, uy[..., None])[..., 0],
                       precision=_HI)
    dv = -z - v[None]
    own = jnp.sum(jnp.einsum("ckd,cd->ck", u, dv, precision=_HI) ** 2, axis=1)
    out = {"weight_change_sq": jnp.sum(dv ** 2, axis=1),
           "train_others_sq": jnp.sum(dv * jnp.matmul(dv, gram, precision=_HI), axis=1) - own}
    if gram_ref is not None:
        out["ref_sq"] = jnp.sum(dv * jnp.matmul(dv, gram_ref, precision=_HI), axis=1)
    return out


@partial(jax.jit, static_argnames=("m", "reorth"))
def _lanczos_lowrank(sig, ut, b, s_max, m, reorth):
    """m Lanczos steps on ``B = diag(sig) − ŨᵀŨ`` from ``b``, for a chunk at once.

    ``sig [d]``, ``ut [c, k, d]`` (Ũ of each sample), ``b [c, d]``: a matvec costs O(dk).
    Plain three-term recurrence as :func:`jaxinfo.sui.engines.lanczos_run` (re-orthogonalised
    when ``reorth``, i.e. m = d). Returns the tridiagonal ``(diag, off)`` ``[c, m]``, the basis
    ``[m, c, d]`` and ``‖b‖ [c]``.
    """
    def matvec(q):
        return sig * q - jnp.einsum("ckd,ck->cd", ut, jnp.einsum("ckd,cd->ck", ut, q,
                                                                 precision=_HI), precision=_HI)

    return engines.lanczos_recurrence(matvec, b, s_max, m, reorth)


@partial(jax.jit, static_argnames=("m", "reorth", "continuous", "power"))
def _loo_chunk_finite(s, shift, b_e, v_e, u_e, r0k, ts, eta, s_max, gram_ref_e, m, reorth,
                      continuous, power):
    """Finite-t leave-one-out for a chunk, in the eigenbasis of G = V diag(s) Vᵀ.

    ``b_e [d]`` = Vᵀb, ``v_e [d]`` the full run's weights, ``u_e [c, k, d]`` = U V,
    ``r0k [c, k]``, ``ts [1]``: ``v'_i = −g'_t(diag(s + shift) − ŨᵀŨ)(b̃ − Ũᵀr0_K)`` by m Lanczos
    steps (step ``eta = lr/(n−1)``). Returns the stats ``[c]``.
    """

    b = b_e[None] - jnp.einsum("ckd,ck->cd", u_e, r0k, precision=_HI)
    diag, off, basis, bnorm = _lanczos_lowrank(s + shift, u_e, b, s_max, m, reorth)
    if power:
        y = engines.power_gain(diag, off, ts, eta)
    else:
        tri = jax.vmap(lambda d, o: jnp.diag(d) + jnp.diag(o[:-1], 1) + jnp.diag(o[:-1], -1))(
            diag, off)
        ritz, vecs = jnp.linalg.eigh(tri)
        y = engines.ritz_gain(ritz, vecs, ts, eta, continuous)
    dv = engines.lanczos_combine(y, basis, bnorm)[:, 0] - v_e[None]
    own = jnp.sum(jnp.einsum("ckd,cd->ck", u_e, dv, precision=_HI) ** 2, axis=1)
    out = {"weight_change_sq": jnp.sum(dv ** 2, axis=1),
           "train_others_sq": jnp.sum(s * dv ** 2, axis=1) - own}
    if gram_ref_e is not None:
        out["ref_sq"] = jnp.sum(dv * jnp.matmul(dv, gram_ref_e, precision=_HI), axis=1)
    return out


def primal_loo_finite(phi: np.ndarray, r0: np.ndarray, dynamics: GradientDescent, *, k: int,
                      phi_ref: np.ndarray | None = None, chunk: int | None = None,
                      tol: float = 1e-10, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                      progress: bool = False) -> dict:
    """Leave-one-out at one finite t in weight space (float64).

    One eigendecomposition ``G = ΦᵀΦ = V diag(s) Vᵀ`` (``O(d³)``) gives the full run,
    ``v = −V g_t(s + nλ) Vᵀb`` (push-through of the kernel path's ``α = −g_t(Θ̃ + nλI)r0``).
    Sample i's problem is ``v'_i = −g'_t(G − UᵀU + (n−1)λI)(b − Uᵀr0_K)``; in the eigenbasis the
    matrix is ``diag(s + (n−1)λ) − ŨᵀŨ`` (diagonal minus rank k), so one Lanczos step costs
    ``O(dk)``. The step count m comes from :func:`jaxinfo.lanczos_plan` on
    ``[(n−1)λ, s_max + (n−1)λ]`` (the spectrum of ``Φ_RᵀΦ_R + (n−1)λI`` lies there, since
    ``0 ⪯ Φ_RᵀΦ_R ⪯ G``), with the same a-priori relative error bound ``tol`` as the kernel
    path; m ≥ d re-orthogonalises and is exact. Cost ``O(d³ + n·m·d·k)``.

    Args:
      phi, r0, k, phi_ref: as in :func:`primal_loo`. dynamics: one finite time.
      chunk: samples per chunk (default from ``memory_budget``). tol: Lanczos relative error.

    Returns:
      As :func:`primal_loo`, plus ``alpha_error_bound`` ``[n]`` (bound on ‖v'_approx − v'‖) and
      ``iterations`` (m).
    """
    from jaxinfo.linearize import spectral_gain
    from jaxinfo.sui.plan import lanczos_plan

    nk, d = phi.shape
    n = nk // k
    lam, lr = float(dynamics.weight_decay), float(dynamics.lr)
    ts = dynamics.times()
    if ts.shape != (1,) or not np.isfinite(ts[0]):
        raise ValueError("primal_loo_finite needs one finite time")
    tic = time.perf_counter()
    gram = phi.T @ phi
    s, vecs = np.linalg.eigh(gram)
    s = np.maximum(s, 0.0)
    b_e = vecs.T @ (phi.T @ r0)
    with jax.enable_x64(True):
        g = np.asarray(spectral_gain(jnp.asarray(s + n * lam), jnp.asarray(ts), eta=lr / n,
                                     continuous=dynamics.continuous))[0]
    v_e = -g * b_e
    r_full = r0 + phi @ (vecs @ v_e)
    shift = (n - 1) * lam
    s_max = float(s[-1])
    plan = lanczos_plan(shift, s_max + shift, ts, eta=lr / (n - 1),
                        continuous=dynamics.continuous, tol=tol, max_iter=d + 1)
    m = int(min(plan.iterations, d))
    reorth = m >= d
    abs_bound = 0.0 if reorth else plan.abs_bound
    power = (not dynamics.continuous) and ts[0] * m <= 4_000_000
    gram_ref_e = None if phi_ref is None else vecs.T @ (phi_ref.T @ phi_ref) @ vecs
    _log.info("phase=factorisation seconds=%.3f", time.perf_counter() - tic)
    tic = time.perf_counter()
    if chunk is None:  # the Krylov basis [m, c, d] dominates
        chunk = memory_budget // (8 * d * (m + k + 8))
    chunk = max(1, min(chunk, n, 1024))
    phi3 = phi.reshape(n, k, d)
    r03 = r0.reshape(n, k)
    res = []
    bar = progress_bar(total=n, desc=f"leave-one-out (primal, Lanczos m={m})",
                       enable=progress, unit="sample")
    with jax.enable_x64(True):
        consts = dict(s=jnp.asarray(s), shift=shift, b_e=jnp.asarray(b_e), v_e=jnp.asarray(v_e),
                      ts=jnp.asarray(ts), eta=lr / (n - 1), s_max=s_max + shift,
                      gram_ref_e=None if gram_ref_e is None else jnp.asarray(gram_ref_e))
        vecs_j = jnp.asarray(vecs)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            idx = np.minimum(np.arange(start, start + chunk), n - 1)
            u_e = jnp.einsum("ckd,de->cke", jnp.asarray(phi3[idx]), vecs_j, precision=_HI)
            out = _loo_chunk_finite(u_e=u_e, r0k=jnp.asarray(r03[idx]), m=m, reorth=reorth,
                                    continuous=dynamics.continuous, power=power, **consts)
            res.append({key: np.asarray(val)[:stop - start] for key, val in out.items()})
            bar.update(stop - start)
    bar.close()
    _log.info("phase=leave_one_out seconds=%.3f", time.perf_counter() - tic)
    out = {key: np.concatenate([r[key] for r in res]) for key in res[0]}
    b_i = b_e[None] - np.einsum("ikd,ik->id", phi3 @ vecs, r03)
    out["alpha_error_bound"] = abs_bound * np.linalg.norm(b_i, axis=1)
    out["r_full"], out["s_max"], out["iterations"] = r_full, s_max, m
    return out


def _lambda_max(gram: np.ndarray, iterations: int = 64) -> float:
    v = np.cos(np.arange(gram.shape[0])) + 1.5
    for _ in range(iterations):
        v = gram @ (v / np.linalg.norm(v))
    v /= np.linalg.norm(v)
    return float(v @ gram @ v)


def primal_loo(phi: np.ndarray, r0: np.ndarray, weight_decay: float, *, k: int,
               phi_ref: np.ndarray | None = None, chunk: int = 256,
               progress: bool = False) -> dict:
    """Leave-one-out at t = ∞ in weight space (module docstring), float64.

    Args:
      phi: ``[nk, d]`` features (sample-major). r0: ``[nk]`` residuals. weight_decay: λ.
      k: outputs per sample. phi_ref: ``[mk, d]`` reference features or ``None``.
      chunk: samples per vectorised chunk.

    Returns:
      dict of ``[n]`` arrays ``weight_change_sq`` (‖Δv‖²), ``train_others_sq``, ``ref_sq``
      (with ``phi_ref``), ``r_full`` ``[nk]`` (residuals of the full run) and ``s_max``
      (λ_max(ΦᵀΦ) = λ_max(Θ̃), power iteration).

    Raises:
      ValueError: ``G + (n−1)λI`` is singular (λ = 0 and rank(Φ) < d).
    """
    from scipy.linalg import cho_factor, cho_solve

    nk, d = phi.shape
    n = nk // k
    tic = time.perf_counter()
    gram = phi.T @ phi
    b = phi.T @ r0
    lam = float(weight_decay)
    eps = np.finfo(np.float64).eps
    try:
        cm = cho_factor(gram + (n - 1) * lam * np.eye(d), lower=True)
        pivot = float(np.min(np.diag(cm[0])) ** 2)
    except np.linalg.LinAlgError:
        pivot = 0.0
    if pivot <= 10 * d * eps * max(float(np.max(np.diag(gram))), 1e-300):
        raise ValueError("t = ∞ in weight space needs ΦᵀΦ + (n−1)λI nonsingular: use "
                         "weight_decay > 0 (or the kernel path when P ≥ nk)")
    v_m = cho_solve(cm, b)
    v = -(cho_solve(cho_factor(gram + n * lam * np.eye(d), lower=True), b) if lam > 0 else v_m)
    r_full = r0 + phi @ v
    s_max = _lambda_max(gram)
    gram_ref = None if phi_ref is None else phi_ref.T @ phi_ref
    _log.info("phase=factorisation seconds=%.3f", time.perf_counter() - tic)
    tic = time.perf_counter()
    chunk = max(1, min(chunk, n))
    phi3 = phi.reshape(n, k, d)
    r03 = r0.reshape(n, k)
    res = []
    bar = progress_bar(total=n, desc="leave-one-out (primal)", enable=progress, unit="sample")
    with jax.enable_x64(True):
        args = [jnp.asarray(a) for a in (np.tril(cm[0]), v_m, v, gram)]
        gref = None if gram_ref is None else jnp.asarray(gram_ref)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            idx = np.minimum(np.arange(start, start + chunk), n - 1)
            out = _loo_chunk(*args, gref, jnp.asarray(phi3[idx]), jnp.asarray(r03[idx]), k)
            res.append({key: np.asarray(val)[:stop - start] for key, val in out.items()})
            bar.update(stop - start)
    bar.close()
    _log.info("phase=leave_one_out seconds=%.3f", time.perf_counter() - tic)
    out = {key: np.concatenate([r[key] for r in res]) for key in res[0]}
    out["r_full"] = r_full
    out["s_max"] = s_max
    return out


def unique_information_projected(apply_fn: ApplyFn, params: Any, x_train: Any, y_train: Any,
                                 x_ref: Any = None, *, dynamics: GradientDescent,
                                 projection_dim: int | None = None, key: jax.Array | None = None,
                                 sigma: float = 1.0, sigma_f: float = 1.0,
                                 reduction: str = "mean", solver: LOOSolver = LOOSolver(),
                                 progress: bool = True, mesh: Any = None) -> UniqueInformation:
    """Smooth unique information in (sketched) weight space, cost linear in n (nats).

    Args:
      apply_fn, params, x_train, y_train, x_ref, dynamics, sigma, sigma_f, reduction,
        progress: as in :func:`jaxinfo.unique_information` (arrays: ``x_train [n, ...]``,
        ``y_train [n, k]``).
      projection_dim: d (:data:`DEFAULT_PROJECTION_DIM` = 4096 is a good start). ``None`` or
        d ≥ P: the exact primal form (Φ = J, no projection).
        Otherwise Φ = J Sᵀ with a subsampled randomized Hadamard transform: the result scores
        the sketched linearized model (module docstring), not the original one.
      key: ``jax.random`` key of the sketch (required when ``d < P``).
      solver: ``memory_budget`` bounds the per-chunk Jacobians ``[c·k, P']``; ``chunk_size``
        sets the leave-one-out chunk.
      mesh: a :class:`jax.sharding.Mesh`: the Jacobian features (the cost that grows with
        n·P) are computed with each chunk's samples split over its devices (:func:`features`);
        the d × d leave-one-out runs on the host as without a mesh (and the dual kernel path,
        when d ≥ nk, on the mesh).

    Returns:
      :class:`jaxinfo.UniqueInformation` (``method="schur"``, or the kernel path's method when
      d ≥ nk, where the dual Θ̃ = ΦΦᵀ is cheaper).
    """
    from jaxinfo.sui.driver import unique_information_from_kernel

    dyn = as_dynamics(dynamics)
    x = np.asarray(x_train)
    f0 = np.asarray(apply_fn(params, jnp.asarray(x)))
    n, k = f0.shape
    y = np.asarray(y_train, f0.dtype).reshape(n, k)
    r0 = (f0 - y).astype(np.float64).reshape(-1)
    num_params = int(ravel_pytree(params)[0].shape[0])
    sketch = None
    if projection_dim is not None and int(projection_dim) < num_params:
        if key is None:
            raise ValueError("projection_dim < P needs a jax.random key (key=...)")
        sketch = make_sketch(key, num_params, int(projection_dim), dtype=f0.dtype)
    width = num_params if sketch is None else int(sketch.signs.shape[0])
    itemsize = np.dtype(f0.dtype).itemsize
    jchunk = int(max(1, min(n, 1024, solver.memory_budget // (4 * k * width * itemsize))))
    tic = time.perf_counter()
    phi = features(apply_fn, params, x, sketch, chunk=jchunk, progress=progress, mesh=mesh)
    phi_ref = None
    if x_ref is not None:
        phi_ref = features(apply_fn, params, np.asarray(x_ref), sketch, chunk=jchunk, mesh=mesh)
    d = phi.shape[1]
    _log.info("phase=features seconds=%.3f", time.perf_counter() - tic)
    if d >= n * k:  # the dual is cheaper: the kernel path on Θ̃ = ΦΦᵀ
        theta_ref = None if phi_ref is None else phi_ref @ phi.T
        return unique_information_from_kernel(
            phi @ phi.T, r0.reshape(n, k), dyn, theta_ref=theta_ref, sigma=sigma,
            sigma_f=sigma_f, reduction=reduction, solver=solver, progress=progress, mesh=mesh)
    from jaxinfo.linearize import check_step_size
    from jaxinfo.sui.driver import _single_time

    _single_time(dyn)
    lam = float(dyn.weight_decay)
    if dyn.t is None:
        chunk = solver.chunk_size or max(1, min(n, 1024,
                                                solver.memory_budget // (32 * d * (k + 4))))
        out = primal_loo(phi, r0, lam, k=k, phi_ref=phi_ref, chunk=chunk, progress=progress)
        bound, m = np.zeros(n), 0
    else:
        out = primal_loo_finite(phi, r0, dyn, k=k, phi_ref=phi_ref, tol=solver.tol,
                                chunk=solver.chunk_size, memory_budget=solver.memory_budget,
                                progress=progress)
        bound, m = out["alpha_error_bound"], out["iterations"]
    check_step_size(out["s_max"] + n * lam, float(dyn.lr), n, continuous=dyn.continuous)
    check_step_size(out["s_max"] + (n - 1) * lam, float(dyn.lr), n - 1,
                    continuous=dyn.continuous)
    return from_stats(out, n=n, k=k, ref_rows=None if phi_ref is None else phi_ref.shape[0],
                      reduction=reduction, sigma=float(sigma), sigma_f=float(sigma_f),
                      sample_loss=0.5 * np.sum(out["r_full"].reshape(n, k) ** 2, axis=1),
                      alpha_error_bound=bound, dynamics=dyn,
                      method="schur" if dyn.t is None else "lanczos", iterations=m)

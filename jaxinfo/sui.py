"""Smooth unique information of every training sample (maths: docs/maths/sui.md).

Linearized network, MSE, full-batch GD (see :mod:`jaxinfo.linearize`): with the training NTK
Θ ``[nk, nk]`` (sample-major), residuals ``r0 = f(w0, X) − Y``, η = lr/n and ``Θ_λ = Θ + nλI``,

    α = −g_t(Θ_λ) r0,   w_t = w0 + Jᵀα,   f_t(X) = f0(X) + Θα,   f_t(X*) = f0(X*) + Θ*α.

**Leave sample i out** (indices K = {ik, …, ik+k−1}, rest R): the same loss on n−1 samples, so
η' = lr/(n−1), decay (n−1)λ and ``α'_R = −g'_t(A_RR) r0_R`` with ``A = Θ + (n−1)λI``. We keep
shapes static by *zeroing* instead of deleting: with the mask D_i (1 on R, 0 on K),
``B_i = D_i Θ D_i + (n−1)λI`` is block diagonal (A_RR on R, (n−1)λ·I on K) and
``g(B_i) D_i r0 = [g(A_RR) r0_R ; 0]`` *exactly* (a matrix function of a block-diagonal matrix is
block diagonal, and the K part of the right-hand side is zero). The padded ``α'`` (zeros on K)
satisfies ``J_Rᵀα'_R = Jᵀα'``, so with ``Δα = α' − α`` (``[nk]`` per sample):

    Δw = w_t^{(−i)} − w_t = JᵀΔα,      ‖Δw‖² = Δαᵀ Θ Δα            (never a P-vector)
    Δf(X)  = Θ Δα,                      Δf(X*) = Θ* Δα.

Measures (nats): weight SI ``‖Δw‖²/(2σ²)``; functional SI ``(1/(2σ_f²))·(1/M)·Σ_{x∈X*}‖Δf(x)‖²``
(``reduction="sum"`` drops the 1/M). Without reference inputs, X* for sample i is the other
n−1 training samples.

**Methods** for α'(i) of all n samples:

- ``"schur"`` (t = ∞ only): ``A_RR⁻¹`` from the blocks of ``C = A⁻¹`` by the k×k Schur complement
  ``A_RR⁻¹ = C_RR − C_RK C_KK⁻¹ C_KR``: one eigendecomposition of Θ, then O(nk·k) per sample.
  Requires A nonsingular (λ > 0 or Θ positive definite).
- ``"lanczos"`` (finite t): m steps of the Lanczos process on ``(B_i, D_i r0)`` for every
  sample at once (one ``[c, nk] × [nk, nk]`` matmul per step for a chunk of c samples; plain
  three-term recurrence), ``α' ≈ −‖b‖ Q_m g(T_m) e₁``. **Error bound** (a priori, Saad 1992;
  exact arithmetic; in floating point it keeps holding up to round-off without
  re-orthogonalisation, Greenbaum 1989, Musco, Musco & Sidford 2018): for symmetric B with
  spectrum in [a, b],

      ‖g(B)b − ‖b‖Q_m g(T_m)e₁‖ ≤ 2‖b‖·E_{m−1}(g; [a, b]) ≤ 2‖b‖·Σ_{j≥m} |c_j|,

  with E_{m−1} the best uniform polynomial approximation error of degree m−1 and c_j the
  Chebyshev coefficients of g on [a, b]. By Cauchy interlacing the spectrum of every B_i (on R)
  lies in ``[λ_min(Θ), λ_max(Θ)] + (n−1)λ``. m is the smallest number of steps with
  ``2Σ_{j≥m}|c_j| ≤ tol·min_{[a,b]} g``; since g > 0 there, ``‖g(B)b‖ ≥ min g·‖b‖`` and the
  bound is a *relative* error ≤ tol on α' of every sample. The coefficients come from a
  Chebyshev interpolant (DCT) refined until its tail reaches round-off (exact for discrete t:
  g is then a polynomial of degree t−1); the bound holds up to floating-point round-off.
  When m reaches the dimension nk − k of the problem (tiny problems, or a bound that cannot be
  met), the Krylov space is the whole space: the basis is then fully re-orthogonalised and the
  result is exact up to round-off (bound reported as 0).
- ``"exact"``: one eigendecomposition of B_i per sample (vmapped, chunked) — the reference.
- ``"auto"``: ``"schur"`` for t = ∞; ``"lanczos"`` for finite t unless it would need more than
  (nk − k)/2 steps (then ``"exact"`` is cheaper).

The t = ∞ Schur path factorises A by Cholesky (no eigendecomposition, ~15× cheaper on CPU) and
raises ``ValueError`` when A is singular (λ = 0 and a rank-deficient Θ: use weight_decay > 0 or
a finite t). Discrete GD that diverges (η·λ_max ≥ 2, full or leave-one-out) raises too.

The SGD-noise variant (``sgd_noise_unique_information``) replaces σ²I by the stationary
covariance of SGD; see its docstring.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxinfo._validation import check_finite, check_int_at_least, check_positive, check_supervised
from jaxinfo.linearize import as_times, check_step_size, kernel_matrix, spectral_gain

__all__ = [
    "UniqueInformation",
    "LOOVectors",
    "LanczosPlan",
    "SGDNoiseInformation",
    "unique_information",
    "unique_information_from_kernel",
    "loo_vectors",
    "lanczos_plan",
    "weight_changes",
    "sgd_noise_unique_information",
]

ApplyFn = Callable[[Any, jax.Array], jax.Array]

DEFAULT_MEMORY_BUDGET = 1024**3  # bytes for per-chunk work arrays (Lanczos bases, eigvecs)
_METHODS = ("auto", "schur", "lanczos", "exact")
_REDUCTIONS = ("mean", "sum")
_HI = lax.Precision.HIGHEST


def _mm(a, b):
    return jnp.matmul(a, b, precision=_HI)


# ============================================================================ results

class UniqueInformation(NamedTuple):
    """Per-sample smooth unique information (nats) and the raw leave-one-out changes.

    Attributes:
      weight_si: ``[n]`` ‖w_t − w_t^{(−i)}‖² / (2σ²), nats.
      functional_si: ``[n]`` function_change_sq / (2σ_f²), nats (per reference input for
        ``reduction="mean"``, total for ``"sum"``).
      weight_change_sq: ``[n]`` ‖w_t − w_t^{(−i)}‖² (parameter units²).
      function_change_sq: ``[n]`` mean (or sum, per ``reduction``) over the reference inputs of
        ‖f_t(x) − f_t^{(−i)}(x)‖² (summed over the k outputs; output units²).
      alpha_error_bound: ``[n]`` a-priori bound on ‖α'_approx − α'‖ of each sample (Lanczos;
        zeros for the direct methods, which are exact up to round-off).
      lr, t (``inf`` for t = ∞), continuous, weight_decay, sigma, sigma_f: settings used.
      method: the method actually used (``"schur"``, ``"lanczos"`` or ``"exact"``).
      reduction: ``"mean"`` or ``"sum"``.
      iterations: Lanczos steps m (0 for the direct methods).
      num_reference: M, the number of reference inputs per sample (n − 1 without ``x_ref``).

    Arrays are numpy (float64 when computed in float64).
    """

    weight_si: np.ndarray
    functional_si: np.ndarray
    weight_change_sq: np.ndarray
    function_change_sq: np.ndarray
    alpha_error_bound: np.ndarray
    lr: float
    t: float
    continuous: bool
    weight_decay: float
    sigma: float
    sigma_f: float
    method: str
    reduction: str
    iterations: int
    num_reference: int


class LOOVectors(NamedTuple):
    """Leave-one-out change vectors of every sample, at each requested time.

    Attributes:
      ts: ``[T]`` times (``inf`` for t = ∞).
      alpha: ``[T, nk]`` dual coefficients α of the full problem.
      delta_alpha: ``[T, n, nk]`` α'_{−i} (zero-padded on sample i's rows) minus α, so that
        ``Δw_i = Jᵀ delta_alpha[t, i]`` (see :func:`weight_changes`).
      train_change: ``[T, n, n, k]`` f_t^{(−i)}(x_j) − f_t(x_j) for every training sample j
        (j = i included: the change of the prediction on the left-out sample itself).
      ref_change: ``[T, n, m, k]`` the same on the reference inputs (``None`` without Θ*).
      train_loss_change: ``[T, n]`` L_{−i}(t) − L(t), L = (0.5/n')Σ_j‖f_t(x_j) − y_j‖² over the
        n' samples each problem trains on (n − 1 and n).
      weight_change_sq: ``[T, n]`` ‖Δw‖² = Δαᵀ Θ Δα.
      alpha_error_bound: ``[n]`` Lanczos bound on ‖α'_approx − α'‖ (zeros for direct methods).
      method, iterations: as in :class:`UniqueInformation` (method per finite t; t = ∞ entries
        use ``"schur"`` under ``"auto"``).
    """

    ts: np.ndarray
    alpha: np.ndarray
    delta_alpha: np.ndarray
    train_change: np.ndarray
    ref_change: np.ndarray | None
    train_loss_change: np.ndarray
    weight_change_sq: np.ndarray
    alpha_error_bound: np.ndarray
    method: str
    iterations: int


class LanczosPlan(NamedTuple):
    """Number of Lanczos steps and its a-priori error bound (see the module docstring).

    Attributes:
      iterations: m, the number of Lanczos steps (Krylov dimension).
      interval: ``(a, b)`` enclosing the spectrum of every leave-one-out matrix.
      abs_bound: ``2·Σ_{j≥m}|c_j|`` (max over the times): ‖α'_approx − α'‖ ≤ abs_bound·‖b‖.
      rel_bound: ``abs_bound / min g`` — a bound on the relative error of α'.
      reached: whether ``rel_bound ≤ tol`` was reached within ``max_iter`` steps.
    """

    iterations: int
    interval: tuple[float, float]
    abs_bound: float
    rel_bound: float
    reached: bool


# ============================================================================ Lanczos plan

def _chebyshev_coefficients(fun: Callable[[np.ndarray], np.ndarray], a: float, b: float,
                            max_points: int = 1 << 16) -> np.ndarray:
    """Chebyshev coefficients ``[J, …]`` of ``fun`` on [a, b] (columns: several functions).

    Interpolation at M first-kind Chebyshev points (DCT-II); M doubles until the last quarter
    of the coefficients is at the round-off level of the largest one.
    """
    from scipy.fft import dct

    m = 64
    while True:
        x = np.cos(np.pi * (np.arange(m) + 0.5) / m)
        vals = fun(0.5 * (a + b) + 0.5 * (b - a) * x)  # [M, F]
        c = dct(vals, type=2, axis=0) / m
        c[0] /= 2
        scale = np.max(np.abs(c), axis=0)
        tail = np.max(np.abs(c[3 * m // 4:]), axis=0)
        if np.all(tail <= 1e-15 * scale) or m >= max_points:
            return c
        m *= 2


def lanczos_plan(s_min: float, s_max: float, t: Any, *, eta: float, continuous: bool,
                 tol: float = 1e-10, max_iter: int | None = None) -> LanczosPlan:
    """Lanczos steps needed for g_t on a spectrum in [s_min, s_max], with the error bound.

    Args:
      s_min, s_max: bounds of the spectrum of the (shifted) kernel, e.g.
        ``λ_min(Θ) + (n−1)λ`` and ``λ_max(Θ) + (n−1)λ``.
      t: time(s), as in :func:`jaxinfo.kernel_dynamics` (``None`` / ∞ gives g = 1/s, which
        needs s_min > 0).
      eta: step of the problem (``lr/(n−1)`` for leave-one-out).
      continuous: gradient flow instead of discrete GD.
      tol: target relative error of ``g(B)b`` (see the module docstring).
      max_iter: cap on m.

    Returns:
      :class:`LanczosPlan`: the smallest m with ``2Σ_{j≥m}|c_j| ≤ tol·min g`` (max over times).
    """
    ts = as_times(t, continuous=continuous)
    s_min, s_max = float(s_min), float(s_max)
    margin = 64 * np.finfo(np.float64).eps * max(abs(s_max), 1e-300)
    a, b = s_min - margin, s_max + margin
    if np.any(np.isinf(ts)) and a <= 0:
        raise ValueError("t = ∞ needs a positive definite kernel (λ_min > 0) for the Lanczos "
                         "bound; use weight_decay > 0 or a finite t")
    with jax.enable_x64(True):
        def fun(s):
            return np.asarray(spectral_gain(jnp.asarray(s, jnp.float64),
                                            jnp.asarray(ts, jnp.float64), eta=eta,
                                            continuous=continuous)).T  # [M, T]
        c = _chebyshev_coefficients(fun, a, b)
        grid = np.linspace(a, b, 4097)
        g_min = float(np.min(fun(grid)))
    # Coefficients below `noise` are the round-off of the DCT, not of g: the true ones decay
    # (super-)geometrically there, so the tail is summed up to the last coefficient above the
    # noise and the noise level itself is kept as the floor of the bound.
    scale = np.max(np.abs(c), axis=0)
    noise = 64 * np.finfo(np.float64).eps * scale
    cabs = np.where(np.abs(c) > noise, np.abs(c), 0.0)
    tails = np.cumsum(cabs[::-1], axis=0)[::-1]  # tails[m] = Σ_{j≥m}|c_j|
    tails = (np.vstack([tails, np.zeros_like(tails[:1])]) + noise).max(axis=1)
    bound = 2 * tails / g_min
    cap = len(tails) - 1 if max_iter is None else min(max_iter, len(tails) - 1)
    ok = np.nonzero(bound[1:cap + 1] <= tol)[0]
    m = int(ok[0]) + 1 if ok.size else cap
    return LanczosPlan(m, (a, b), float(2 * tails[m]), float(bound[m]), bool(ok.size))


# ============================================================================ LOO kernels

def _blocks(nk: int, k: int) -> jax.Array:
    return jnp.arange(nk) // k


@partial(jax.jit, static_argnames=("k",))
def _alpha_schur(c_inv, r0, idx, k):
    """α'_{−i} for t = ∞ from C = A⁻¹ by the k×k Schur complement. Returns ``[c, 1, nk]``.

    For R = rest, K = block i: A_RR⁻¹ r_R = v_R − C_RK C_KK⁻¹ v_K with v = C·(D_i r0) =
    C r0 − C_{:,K} r0_K (v_K = C_KR r_R, v_R = C_RR r_R).
    """
    u = _mm(c_inv, r0)
    blocks = _blocks(r0.shape[0], k)

    def one(i):
        start = i * k
        ck = lax.dynamic_slice_in_dim(c_inv, start, k, axis=1)  # [nk, k]
        v = u - _mm(ck, lax.dynamic_slice_in_dim(r0, start, k))
        ckk = lax.dynamic_slice_in_dim(ck, start, k, axis=0)  # [k, k], SPD
        z = v - _mm(ck, jnp.linalg.solve(ckk, lax.dynamic_slice_in_dim(v, start, k)))
        return -jnp.where(blocks != i, z, 0.0)

    return jax.vmap(one)(idx)[:, None, :]


@partial(jax.jit, static_argnames=("k", "continuous"))
def _alpha_exact(theta, r0, idx, ts, eta, shift, k, continuous):
    """α'_{−i}(t) by an eigendecomposition of B_i = D_iΘD_i + shift·I. Returns ``[c, T, nk]``."""
    nk = r0.shape[0]
    blocks = _blocks(nk, k)
    eye = jnp.eye(nk, dtype=theta.dtype)

    def one(i):
        keep = blocks != i
        b_mat = jnp.where(keep[:, None] & keep[None, :], theta, 0.0) + shift * eye
        s, u = jnp.linalg.eigh(b_mat)
        g = spectral_gain(s, ts, eta=eta, continuous=continuous)  # [T, nk]
        coeff = _mm(u.T, jnp.where(keep, r0, 0.0))
        return -_mm(g * coeff[None, :], u.T)

    return jax.vmap(one)(idx)


@partial(jax.jit, static_argnames=("k", "m", "reorth"))
def _lanczos_run(theta, r0, idx, shift, s_max, k, m, reorth):
    """m Lanczos steps on (B_i, D_i r0) for a chunk of samples at once.

    All samples of the chunk advance together: one ``[c, nk]×[nk, nk]`` matmul per step.
    Plain three-term Lanczos (no re-orthogonalisation): for f(B)b the loss of orthogonality
    only delays convergence slightly and the a-priori bound keeps holding up to round-off
    (Greenbaum 1989; Musco, Musco & Sidford 2018); re-orthogonalising would cost O(m²·nk)
    memory-bound work per sample. ``reorth=True`` (used when m reaches the dimension, i.e. tiny
    problems) re-orthogonalises fully (classical Gram–Schmidt twice), so that m = dim is exact;
    an exhausted Krylov space (β ≈ 0) is then closed by a zero block.

    Returns:
      diagonal ``[c, m]``, off-diagonal ``[c, m]`` (last entry unused) of T_m, the basis
      ``[m, c, nk]`` and ``‖b‖`` ``[c]``.
    """
    nk = r0.shape[0]
    c = idx.shape[0]
    keep = _blocks(nk, k)[None, :] != idx[:, None]  # [c, nk]
    b = jnp.where(keep, r0[None, :], 0.0)
    bnorm = jnp.linalg.norm(b, axis=1)
    q0 = b / jnp.where(bnorm > 0, bnorm, 1.0)[:, None]
    tiny = 1e3 * nk * jnp.finfo(theta.dtype).eps * s_max

    def step(carry, j):
        q, q_prev, beta_prev, basis = carry
        w = jnp.where(keep, _mm(q, theta), 0.0) + shift * q - beta_prev[:, None] * q_prev
        a = jnp.sum(w * q, axis=1)
        w = w - a[:, None] * q
        if reorth:
            basis = basis.at[j].set(q)
            for _ in range(2):
                w = w - jnp.einsum("jc,jcn->cn",
                                   jnp.einsum("jcn,cn->jc", basis, w, precision=_HI),
                                   basis, precision=_HI)
        beta = jnp.linalg.norm(w, axis=1)
        alive = beta > tiny
        q_next = jnp.where(alive[:, None], w / jnp.where(alive, beta, 1.0)[:, None], 0.0)
        beta = jnp.where(alive, beta, 0.0)
        return (q_next, q, beta, basis), (a, beta, q)

    init = (q0, jnp.zeros_like(q0), jnp.zeros((c,), theta.dtype),
            jnp.zeros((m if reorth else 0, c, nk), theta.dtype))
    _, (a, beta, basis) = lax.scan(step, init, jnp.arange(m))
    return a.T, beta.T, basis, bnorm


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


@partial(jax.jit, static_argnames=("continuous",))
def _ritz_gain(ritz, vecs, ts, eta, continuous):
    """g(T_m)e₁ = V diag(g(θ)) Vᵀe₁ from the Ritz pairs. Returns ``[c, T, m]``."""
    g = jax.vmap(lambda s: spectral_gain(s, ts, eta=eta, continuous=continuous))(ritz)  # [c,T,m]
    return jnp.einsum("ctj,cij->cti", g * vecs[:, None, 0, :], vecs, precision=_HI)


@jax.jit
def _power_gain(diag, off, ts, eta):
    """g(T_m)e₁ for discrete GD without eigenvectors: η Σ_{j<t} (I − ηT_m)^j e₁.

    t tridiagonal matvecs for all c samples at once (stable: the Ritz values θ lie in the
    spectrum interval, where |1 − ηθ| ≤ 1); the partial sum is recorded at every requested
    t. Returns ``[c, T, m]``.
    """
    c, m = diag.shape
    ts_int = ts.astype(jnp.int32)
    up = jnp.concatenate([off[:, :-1], jnp.zeros((c, 1), off.dtype)], axis=1)  # T[i, i+1]
    down = jnp.concatenate([jnp.zeros((c, 1), off.dtype), off[:, :-1]], axis=1)  # T[i, i−1]

    def body(j, carry):
        y, acc, out = carry
        acc = acc + eta * y
        ty = diag * y + up * jnp.roll(y, -1, axis=1) + down * jnp.roll(y, 1, axis=1)
        out = jnp.where((j + 1 == ts_int)[None, :, None], acc[:, None, :], out)
        return y - eta * ty, acc, out

    y0 = jnp.zeros((c, m), diag.dtype).at[:, 0].set(1.0)
    init = (y0, jnp.zeros_like(y0), jnp.zeros((c, ts.shape[0], m), diag.dtype))
    return lax.fori_loop(0, jnp.max(ts_int), body, init)[2]


@jax.jit
def _lanczos_combine(y, basis, bnorm):
    """α' ≈ −‖b‖ Q_m y with y = g(T_m)e₁ ``[c, T, m]``. Returns ``[c, T, nk]``."""
    def acc(total, j):  # Σ_j y_j q_j, streaming over the basis once
        return total + y[:, :, j, None] * basis[j][:, None, :], None

    init = jnp.zeros((basis.shape[1], y.shape[1], basis.shape[2]), basis.dtype)
    total, _ = lax.scan(acc, init, jnp.arange(basis.shape[0]))
    return -bnorm[:, None, None] * total


_POWER_GAIN_MAX_WORK = 4_000_000  # t_max·m below which the power sum beats LAPACK per sample


def _alpha_lanczos(theta, r0, idx, ts, eta, shift, s_max, k, m, continuous, reorth):
    """α'_{−i}(t) ≈ −‖b‖ Q_m g(T_m) e₁ by m Lanczos steps on (B_i, D_i r0). ``[c, T, nk]``.

    g(T_m)e₁: for discrete GD with moderate t (t·m ≤ 4e6) by the power sum
    (:func:`_power_gain`, vectorised); otherwise from the Ritz pairs (LAPACK per sample).
    """
    diag, off, basis, bnorm = _lanczos_run(theta, r0, idx, shift, s_max, k, m, reorth)
    t_max = float(np.max(np.asarray(ts)))
    if not continuous and np.isfinite(t_max) and t_max * m <= _POWER_GAIN_MAX_WORK:
        y = _power_gain(diag, off, ts, eta)
    else:
        ritz, vecs = _tridiagonal_eigh(np.asarray(diag, np.float64), np.asarray(off, np.float64))
        dtype = theta.dtype
        y = _ritz_gain(jnp.asarray(ritz, dtype), jnp.asarray(vecs, dtype), ts, eta, continuous)
    return _lanczos_combine(y, basis, bnorm)


@partial(jax.jit, static_argnames=("k", "vectors"))
def _chunk_stats(theta, theta_ref, r0, alpha, r_full, alpha_p, idx, k, vectors):
    """Per-sample quantities from the padded LOO coefficients ``alpha_p [c, T, nk]``."""
    nk = r0.shape[0]
    n = nk // k
    c, T, _ = alpha_p.shape
    keep = _blocks(nk, k)[None, None, :] != idx[:, None, None]  # [c, 1, nk]
    d = alpha_p - alpha[None]  # Δα [c, T, nk]
    td = _mm(d, theta)  # Θ Δα (Θ symmetric)
    out = {"weight_change_sq": jnp.sum(d * td, axis=-1)}
    per = jnp.sum((td ** 2).reshape(c, T, n, k), axis=-1)  # [c, T, n]
    others = jnp.arange(n)[None, None, :] != idx[:, None, None]
    out["train_others_sq"] = jnp.sum(jnp.where(others, per, 0.0), axis=-1)
    if theta_ref is not None:
        rd = _mm(d, theta_ref.T)
        out["ref_sq"] = jnp.sum(rd ** 2, axis=-1)
    resid = jnp.where(keep, r_full[None] + td, 0.0)
    loss_loo = 0.5 / (n - 1) * jnp.sum(resid ** 2, axis=-1)
    loss = 0.5 / n * jnp.sum(r_full ** 2, axis=-1)
    out["train_loss_change"] = loss_loo - loss[None]
    if vectors:
        out["delta_alpha"] = d
        out["train_change"] = td.reshape(c, T, n, k)
        if theta_ref is not None:
            out["ref_change"] = rd
    return out


# ============================================================================ driver

@dataclasses.dataclass(frozen=True)
class _Problem:
    theta: jax.Array
    r0: jax.Array
    theta_ref: jax.Array | None
    n: int
    k: int
    lr: float
    ts: np.ndarray
    continuous: bool
    weight_decay: float
    eigvals: jax.Array | None  # Θ, ascending (None on the Cholesky path, t = ∞ only)
    eigvecs: jax.Array | None
    alpha: jax.Array  # [T, nk]
    r_full: jax.Array  # [T, nk] = r0 + Θα
    c_inv: jax.Array | None = None  # (Θ + (n−1)λI)⁻¹ (Schur path)


def _prepare(theta, r0, n, lr, t, continuous, weight_decay, theta_ref, method) -> _Problem:
    check_positive("lr", lr)
    if not isinstance(weight_decay, (int, float, np.floating, np.integer)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    theta = jnp.asarray(theta)
    if theta.ndim == 4:
        theta = kernel_matrix(theta)
    if theta.ndim != 2 or theta.shape[0] != theta.shape[1]:
        raise ValueError(f"theta must be a square [nk, nk] matrix (or [n, n, k, k]), "
                         f"got shape {theta.shape}")
    if not jnp.issubdtype(theta.dtype, jnp.floating):
        theta = theta.astype(jnp.float32)
    r0 = jnp.asarray(r0, theta.dtype)
    nk = theta.shape[0]
    if n is None:
        n = r0.shape[0] if r0.ndim == 2 else nk
    check_int_at_least("n", n, 2)
    if nk % n:
        raise ValueError(f"n={n} does not divide the kernel size {nk}")
    k = nk // n
    if r0.size != nk or (r0.ndim == 2 and r0.shape != (n, k)):
        raise ValueError(f"r0 must be [n, k] = [{n}, {k}] or [{nk}], got shape {r0.shape}")
    r0 = r0.reshape(-1)
    if theta_ref is not None:
        theta_ref = jnp.asarray(theta_ref, theta.dtype)
        if theta_ref.ndim == 4:
            theta_ref = kernel_matrix(theta_ref)
        if theta_ref.ndim != 2 or theta_ref.shape[1] != nk or theta_ref.shape[0] % k:
            raise ValueError(f"theta_ref must be [m·{k}, {nk}] (reference × training), "
                             f"got shape {theta_ref.shape}")
        check_finite("theta_ref", theta_ref)
    check_finite("theta", theta)
    check_finite("r0", r0)
    ts = as_times(t, continuous=continuous)
    lam = float(weight_decay)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    spectral = method == "exact" or bool(np.any(np.isfinite(ts)))

    if spectral:  # finite times or the exact method: one eigendecomposition of Θ
        s, u = jnp.linalg.eigh(theta)
        s_max = float(s[-1])
    else:
        s = u = None
        s_max = float(_lambda_max(theta))
    check_step_size(s_max + n * lam, lr, n, continuous=continuous)
    check_step_size(s_max + (n - 1) * lam, lr, n - 1, continuous=continuous)
    eye = jnp.eye(nk, dtype=theta.dtype)
    singular = ("t = ∞ with a singular NTK and weight_decay = 0: the leave-one-out solutions are "
                "not unique ({}). Use weight_decay > 0 or a finite t.")
    eps = float(jnp.finfo(theta.dtype).eps)
    c_inv = None
    if spectral:
        if np.any(np.isinf(ts)):
            shifted = s + (n - 1) * lam
            if float(shifted[0]) <= nk * eps * float(shifted[-1]):
                raise ValueError(singular.format(
                    f"λ_min(Θ + (n−1)λI) = {float(shifted[0]):.3g}, λ_max = "
                    f"{float(shifted[-1]):.3g}"))
        g = spectral_gain(s + n * lam, jnp.asarray(ts, theta.dtype), eta=lr / n,
                          continuous=continuous)  # [T, nk]
        alpha = -_mm(g * _mm(u.T, r0)[None, :], u.T)
    else:  # t = ∞ only: Cholesky, ~15× cheaper than eigh on CPU
        chol = jnp.linalg.cholesky(theta + (n - 1) * lam * eye)
        pivots = jnp.diag(chol) ** 2  # each ≥ λ_min(A); one is ≈ 0 when A is singular
        if not bool(jnp.all(jnp.isfinite(chol))) or \
                float(jnp.min(pivots)) <= 10 * nk * eps * s_max:
            raise ValueError(singular.format(
                f"the Cholesky factorisation of Θ + (n−1)λI in {theta.dtype} breaks down or has "
                f"a pivot ≤ {10 * nk * eps:.1e}·λ_max, λ_max ≈ {s_max:.3g}"
                + ("; float64 (jax.enable_x64) may resolve it" if eps > 1e-10 else "")))
        # The Schur-complement LOO needs the k columns and the k×k diagonal block of A⁻¹ of
        # every sample, i.e. all of A⁻¹: solving the factorisation against the identity.
        c_inv = jax.scipy.linalg.cho_solve((chol, True), eye)
        if lam == 0:
            alpha = -_mm(c_inv, r0)[None, :]
        else:
            full = jnp.linalg.cholesky(theta + n * lam * eye)
            alpha = -jax.scipy.linalg.cho_solve((full, True), r0)[None, :]
    r_full = r0[None, :] + _mm(alpha, theta)
    return _Problem(theta, r0, theta_ref, n, k, float(lr), ts, bool(continuous), lam, s, u,
                    alpha, r_full, c_inv)


@jax.jit
def _lambda_max(theta):
    """λ_max(Θ) by 64 power iterations (from below; used only for the step-size check)."""
    v = jnp.cos(jnp.arange(theta.shape[0], dtype=theta.dtype)) + 1.5

    def body(_, v):
        w = _mm(theta, v)
        return w / jnp.linalg.norm(w)

    v = lax.fori_loop(0, 64, body, v / jnp.linalg.norm(v))
    return v @ _mm(theta, v)


def _resolve(prob: _Problem, method: str, tol: float, max_iter: int | None):
    """Returns (method for finite times, LanczosPlan or None)."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    finite = prob.ts[np.isfinite(prob.ts)]
    if method == "exact":
        return "exact", None
    if method == "schur" and finite.size:
        raise ValueError("method='schur' needs t = ∞ (t=None); use 'lanczos' or 'exact' "
                         "for finite t")
    if not finite.size:  # t = ∞ only: the Schur complement is exact and cheapest
        return "schur", None
    shift = (prob.n - 1) * prob.weight_decay
    dim = prob.theta.shape[0] - prob.k
    plan = lanczos_plan(float(prob.eigvals[0]) + shift, float(prob.eigvals[-1]) + shift,
                        finite, eta=prob.lr / (prob.n - 1), continuous=prob.continuous,
                        tol=tol, max_iter=max_iter or dim + 1)
    if plan.iterations >= dim:  # the Krylov space is the whole space: exact (round-off only)
        plan = plan._replace(iterations=dim, abs_bound=0.0, rel_bound=0.0, reached=True)
    if method == "auto" and (plan.iterations > dim // 2 or not plan.reached):
        return "exact", None
    if not plan.reached:
        warnings.warn(f"Lanczos reached relative error bound {plan.rel_bound:.2e} > tol={tol:g} "
                      f"with max_iter={plan.iterations} steps; use method='exact' or a larger "
                      "max_iter", RuntimeWarning, stacklevel=3)
    return "lanczos", plan


def _default_chunk(prob: _Problem, method: str, plan, memory_budget: int) -> int:
    nk, T = prob.theta.shape[0], len(prob.ts)
    item = prob.theta.dtype.itemsize
    if method == "exact":
        per = (3 * nk * nk + 4 * T * nk) * item
    elif method == "lanczos":
        m = plan.iterations  # Krylov basis [m, nk] and tridiagonal eigenvectors [m, m]
        per = (m * nk + m * m + 8 * nk + 4 * T * nk) * item
    else:
        per = (6 * T * nk + 2 * nk * prob.k) * item
    return int(max(1, min(prob.n, memory_budget // max(per, 1), 4096)))


def _fingerprint(prob: _Problem, method: str, tol: float, chunk: int, m: int) -> str:
    h = hashlib.sha256()
    for arr in (prob.theta, prob.r0, prob.theta_ref):
        if arr is not None:
            h.update(np.ascontiguousarray(np.asarray(arr)).tobytes())
    h.update(json.dumps([prob.n, prob.k, prob.lr, prob.ts.tolist(), prob.continuous,
                         prob.weight_decay, method, tol, chunk, m]).encode())
    return h.hexdigest()


def _compute_chunk(prob: _Problem, method: str, plan, idx: np.ndarray, vectors: bool) -> dict:
    """All quantities of one chunk of samples (``idx`` padded to the chunk size).

    t = ∞ entries use the Schur complement unless ``method == "exact"``; finite times use
    ``method`` (``"lanczos"`` or ``"exact"``).
    """
    theta, dtype = prob.theta, prob.theta.dtype
    idx_j = jnp.asarray(idx, jnp.int32)
    shift = (prob.n - 1) * prob.weight_decay
    eta = prob.lr / (prob.n - 1)
    fin = np.isfinite(prob.ts)
    parts = []  # (column mask, [c, T_sel, nk])
    if method == "exact":
        parts.append((np.ones_like(fin), _alpha_exact(
            theta, prob.r0, idx_j, jnp.asarray(prob.ts, dtype), eta, shift, prob.k,
            prob.continuous)))
    else:
        if np.any(~fin):
            parts.append((~fin, _alpha_schur(_schur_inverse(prob), prob.r0, idx_j, prob.k)))
        if np.any(fin):
            parts.append((fin, _alpha_lanczos(
                theta, prob.r0, idx_j, jnp.asarray(prob.ts[fin], dtype), eta, shift,
                float(prob.eigvals[-1]) + shift, prob.k, plan.iterations, prob.continuous,
                plan.iterations >= theta.shape[0] - prob.k)))
    if len(parts) == 1:
        alpha_p = parts[0][1]
    else:
        alpha_p = np.empty((len(idx), len(prob.ts), theta.shape[0]), dtype=np.dtype(dtype))
        for cols, val in parts:
            alpha_p[:, cols] = np.asarray(val)
        alpha_p = jnp.asarray(alpha_p)
    stats = _chunk_stats(theta, prob.theta_ref, prob.r0, prob.alpha, prob.r_full, alpha_p,
                         idx_j, prob.k, vectors)
    out = {key: np.asarray(v) for key, v in stats.items()}
    keep = np.arange(theta.shape[0])[None] // prob.k != idx[:, None]
    bnorm = np.linalg.norm(np.where(keep, np.asarray(prob.r0)[None], 0.0), axis=1)
    out["alpha_error_bound"] = bnorm * (plan.abs_bound if plan is not None else 0.0)
    return out


def _schur_inverse(prob: _Problem) -> jax.Array:
    """C = (Θ + (n−1)λI)⁻¹: from the Cholesky path, or from the eigendecomposition of Θ.

    The Schur-complement LOO needs the k columns and the k×k diagonal block of A⁻¹ of every
    sample, i.e. all of A⁻¹; with the eigendecomposition at hand, U diag(1/s) Uᵀ is one matmul.
    """
    if prob.c_inv is None:
        s = prob.eigvals + (prob.n - 1) * prob.weight_decay
        object.__setattr__(prob, "c_inv", _mm(prob.eigvecs / s[None, :], prob.eigvecs.T))
    return prob.c_inv


def _run(prob: _Problem, method: str, plan, *, vectors: bool, chunk_size: int | None,
         memory_budget: int, progress: bool, checkpoint_dir, tol: float) -> dict:
    """Runs every chunk (with progress bar and checkpoints) and concatenates the results."""
    from tqdm.auto import tqdm

    n = prob.n
    if chunk_size is None:
        chunk = _default_chunk(prob, method, plan, memory_budget)
        chunk = -(-n // -(-n // chunk))  # equal chunks: as little padding as possible
    else:
        check_int_at_least("chunk_size", chunk_size, 1)
        chunk = min(int(chunk_size), n)
    starts = list(range(0, n, chunk))
    ckpt = None
    if checkpoint_dir is not None and not vectors:
        ckpt = Path(checkpoint_dir)
        ckpt.mkdir(parents=True, exist_ok=True)
        fp = _fingerprint(prob, method, tol, chunk, plan.iterations if plan else 0)
        meta_path = ckpt / "meta.json"
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("fingerprint") != fp:
                raise ValueError(f"checkpoint_dir {str(ckpt)!r} holds a run with different "
                                 "inputs or settings; use a fresh directory (or delete it)")
        else:
            meta_path.write_text(json.dumps({"fingerprint": fp, "n": n, "chunk": chunk,
                                             "method": method}))
    results = []
    bar = tqdm(total=n, disable=not progress, desc=f"leave-one-out ({method})", unit="sample")
    for c, start in enumerate(starts):
        stop = min(start + chunk, n)
        path = None if ckpt is None else ckpt / f"chunk_{c:06d}.npz"
        if path is not None and path.exists():
            with np.load(path) as f:
                res = {key: f[key] for key in f.files}
        else:
            idx = np.arange(start, start + chunk)
            idx = np.minimum(idx, n - 1)  # pad the last chunk: static shapes, one compile
            res = _compute_chunk(prob, method, plan, idx, vectors)
            res = {key: v[:stop - start] for key, v in res.items()}
            if path is not None:
                tmp = path.with_name(path.stem + ".tmp.npz")
                np.savez(tmp, **res)
                os.replace(tmp, path)
        results.append(res)
        bar.update(stop - start)
    bar.close()
    return {key: np.concatenate([r[key] for r in results]) for key in results[0]}


# ============================================================================ public API

def _loo_precision(dtype: str | None):
    """Context for the leave-one-out arithmetic: float64 (``jax.enable_x64``) or as given."""
    if dtype not in ("float64", None):
        raise ValueError(f"dtype must be 'float64' or None (keep the input dtype), got {dtype!r}")
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def _cast(dtype: str | None, *arrays):
    """Host-side float64 copies of the kernel-level inputs (``None`` entries pass through)."""
    if dtype is None:
        return arrays
    return tuple(None if a is None else np.asarray(a, np.float64) for a in arrays)


def loo_vectors(theta: jax.Array, r0: jax.Array, *, n: int | None = None, lr: float,
                t: Any = None, continuous: bool = False, weight_decay: float = 0.0,
                theta_ref: jax.Array | None = None, method: str = "auto", tol: float = 1e-10,
                max_iter: int | None = None, chunk_size: int | None = None,
                memory_budget: int = DEFAULT_MEMORY_BUDGET,
                progress: bool = False, dtype: str | None = "float64") -> LOOVectors:
    """Leave-one-out change vectors of every training sample, from a precomputed kernel.

    Args:
      theta: ``[nk, nk]`` (or ``[n, n, k, k]``) training NTK Θ, sample-major.
      r0: ``[n, k]`` (or ``[nk]`` with ``n``) initial residuals f(w0, X) − Y.
      n: number of training samples (inferred from a 2-d ``r0``; else k = 1 is assumed).
      lr: learning rate of the averaged loss; η = lr/n, leave-one-out η' = lr/(n−1).
      t: steps (discrete) / time (continuous), ``None`` for ∞, or a sequence of them.
      continuous: gradient flow instead of discrete GD.
      weight_decay: λ ≥ 0 (full problem nλ, leave-one-out (n−1)λ).
      theta_ref: ``[mk, nk]`` reference × training NTK Θ* (optional).
      method: ``"auto"``, ``"schur"``, ``"lanczos"`` or ``"exact"`` (module docstring). With a
        mix of finite times and ∞, the t = ∞ entries use the Schur complement unless
        ``method="exact"``; ``method`` reports the method of the finite times.
      tol: Lanczos relative error bound on α' (module docstring).
      max_iter: cap on Lanczos steps (default nk − k).
      chunk_size: samples per vectorised chunk (default: from ``memory_budget``).
      memory_budget: bytes of per-chunk work arrays.
      progress: tqdm bar over samples.
      dtype: ``"float64"`` (default) runs the leave-one-out arithmetic in float64 whatever the
        input dtype (inside ``jax.enable_x64``); ``None`` keeps the input dtype. The changes
        are differences of nearly equal solutions: in float32 the Lanczos path loses them
        entirely (measured: ‖Δf‖² of 1e-5 returned as 9e-3 for a 1024-wide MLP at n = 200).

    Returns:
      :class:`LOOVectors`. Memory: ``T·n·nk`` numbers for each vector field; use
      :func:`unique_information_from_kernel` for the reduced quantities only.
    """
    with _loo_precision(dtype):
        theta, r0, theta_ref = _cast(dtype, theta, r0, theta_ref)
        prob = _prepare(theta, r0, n, lr, t, continuous, weight_decay, theta_ref, method)
        meth, plan = _resolve(prob, method, tol, max_iter)
        out = _run(prob, meth, plan, vectors=True, chunk_size=chunk_size,
                   memory_budget=memory_budget, progress=progress, checkpoint_dir=None, tol=tol)
    T = len(prob.ts)
    tr = lambda a: np.swapaxes(a, 0, 1)  # [n, T, …] -> [T, n, …]
    ref = None
    if prob.theta_ref is not None:
        ref = tr(out["ref_change"]).reshape(T, prob.n, -1, prob.k)
    return LOOVectors(prob.ts, np.asarray(prob.alpha), tr(out["delta_alpha"]),
                      tr(out["train_change"]), ref, tr(out["train_loss_change"]),
                      tr(out["weight_change_sq"]), out["alpha_error_bound"], meth,
                      plan.iterations if plan else 0)


def unique_information_from_kernel(theta: jax.Array, r0: jax.Array, *, n: int | None = None,
                                   lr: float, t: Any = None, continuous: bool = False,
                                   weight_decay: float = 0.0,
                                   theta_ref: jax.Array | None = None, sigma: float = 1.0,
                                   sigma_f: float = 1.0, method: str = "auto",
                                   reduction: str = "mean", tol: float = 1e-10,
                                   max_iter: int | None = None, chunk_size: int | None = None,
                                   memory_budget: int = DEFAULT_MEMORY_BUDGET,
                                   progress: bool = True,
                                   checkpoint_dir: str | os.PathLike | None = None,
                                   dtype: str | None = "float64") -> UniqueInformation:
    """Smooth unique information of every sample from a precomputed kernel (nats).

    Args:
      theta, r0, n, lr, continuous, weight_decay, theta_ref, method, tol, max_iter,
        chunk_size, memory_budget, dtype: as in :func:`loo_vectors` (the leave-one-out
        arithmetic runs in float64 by default, also for float32 kernels).
      t: one time (steps / gradient-flow time) or ``None`` for t = ∞.
      sigma: σ > 0 of the weight smoothing N(0, σ²I).
      sigma_f: σ_f > 0 of the prediction smoothing N(0, σ_f²I).
      reduction: ``"mean"`` (per reference input) or ``"sum"`` (total) over the reference set
        (Θ* rows, or the other n−1 training samples without ``theta_ref``).
      progress: tqdm bar over samples.
      checkpoint_dir: directory where finished chunks are saved (``chunk_*.npz``); a run
        interrupted and restarted with the same inputs and settings reuses them.

    Returns:
      :class:`UniqueInformation` with ``[n]`` arrays.

    Cost: t = ∞ one eigendecomposition of Θ plus O(n·nk·k) (Schur); finite t m Lanczos steps of
    ``[n, nk]×[nk, nk]`` matmuls, O(m·n·(nk)²).
    """
    check_positive("sigma", sigma)
    check_positive("sigma_f", sigma_f)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if t is not None and np.ndim(t) != 0:
        raise ValueError(f"t must be a single time or None (use loo_vectors for several), got {t!r}")
    with _loo_precision(dtype):
        theta, r0, theta_ref = _cast(dtype, theta, r0, theta_ref)
        prob = _prepare(theta, r0, n, lr, t, continuous, weight_decay, theta_ref, method)
        meth, plan = _resolve(prob, method, tol, max_iter)
        out = _run(prob, meth, plan, vectors=False, chunk_size=chunk_size,
                   memory_budget=memory_budget, progress=progress,
                   checkpoint_dir=checkpoint_dir, tol=tol)
    wsq = out["weight_change_sq"][:, 0]
    if prob.theta_ref is None:
        fsq, m_ref = out["train_others_sq"][:, 0], prob.n - 1
    else:
        fsq, m_ref = out["ref_sq"][:, 0], prob.theta_ref.shape[0] // prob.k
    if reduction == "mean":
        fsq = fsq / m_ref
    return UniqueInformation(
        weight_si=wsq / (2 * sigma ** 2), functional_si=fsq / (2 * sigma_f ** 2),
        weight_change_sq=wsq, function_change_sq=fsq,
        alpha_error_bound=out["alpha_error_bound"], lr=float(lr), t=float(prob.ts[0]),
        continuous=bool(continuous), weight_decay=float(weight_decay), sigma=float(sigma),
        sigma_f=float(sigma_f), method=meth, reduction=reduction,
        iterations=plan.iterations if plan else 0, num_reference=int(m_ref))


def unique_information(apply_fn: ApplyFn, params: Any, x_train: jax.Array, y_train: jax.Array,
                       x_ref: jax.Array | None = None, *, lr: float, t: Any = None,
                       continuous: bool = False, weight_decay: float = 0.0, sigma: float = 1.0,
                       sigma_f: float = 1.0, method: str = "auto", reduction: str = "mean",
                       batch_size: int | None = None, progress: bool = True,
                       checkpoint_dir: str | os.PathLike | None = None, tol: float = 1e-10,
                       chunk_size: int | None = None,
                       memory_budget: int = DEFAULT_MEMORY_BUDGET,
                       dtype: str | None = "float64") -> UniqueInformation:
    """Smooth unique information of every training sample of a network (nats).

    The network is linearized at ``params`` and trained in closed form (MSE, full-batch GD with
    learning rate ``lr`` for ``t`` steps, or gradient flow; docs/maths/sui.md). For sample i the
    same training without it gives w_t^{(−i)} and f_t^{(−i)}, and

        weight SI(i)     = ‖w_t − w_t^{(−i)}‖² / (2σ²)
        functional SI(i) = (1/(2σ_f²))·(1/M)·Σ_{x∈X*} ‖f_t(x) − f_t^{(−i)}(x)‖².

    Args:
      apply_fn: ``apply_fn(params, x) -> [batch, k]``.
      params: weights w0 at which the network is linearized (any pytree).
      x_train: ``[n, ...]`` training inputs (n ≥ 2).
      y_train: ``[n, k]`` targets (``[n]`` when k = 1).
      x_ref: ``[m, ...]`` reference inputs X*; ``None``: for sample i, the other n−1 training
        samples.
      lr: learning rate of the averaged loss (1/n)Σ½‖f − y‖² + (λ/2)‖w − w0‖².
      t: number of steps (discrete), gradient-flow time (continuous), or ``None`` for ∞.
      continuous, weight_decay (λ), sigma (σ), sigma_f (σ_f), method, reduction, progress,
        checkpoint_dir, tol, chunk_size, memory_budget, dtype: see
        :func:`unique_information_from_kernel`. The NTK is computed in the dtype of
        ``params``/``x_train``; the leave-one-out arithmetic in float64 unless ``dtype=None``.
      batch_size: samples per NTK block (bounds the Jacobian memory; :func:`empirical_ntk`).

    Returns:
      :class:`UniqueInformation` (``[n]`` arrays, nats for the SI fields).
    """
    from jaxinfo.ntk import empirical_ntk

    check_positive("sigma", sigma)
    check_positive("sigma_f", sigma_f)
    x_train, f0, y, x_ref = check_supervised(apply_fn, params, x_train, y_train, x_ref)
    kw = dict(trace_axes=(), batch_size=batch_size)
    theta = kernel_matrix(empirical_ntk(apply_fn, params, x_train, **kw))
    theta_ref = None
    if x_ref is not None:
        theta_ref = kernel_matrix(empirical_ntk(apply_fn, params, x_ref, x_train, **kw))
    return unique_information_from_kernel(
        theta, f0 - y, lr=lr, t=t, continuous=continuous, weight_decay=weight_decay,
        theta_ref=theta_ref, sigma=sigma, sigma_f=sigma_f, method=method, reduction=reduction,
        tol=tol, chunk_size=chunk_size, memory_budget=memory_budget, progress=progress,
        checkpoint_dir=checkpoint_dir, dtype=dtype)


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


# ============================================================================ SGD noise

class SGDNoiseInformation(NamedTuple):
    """Weight unique information under the stationary SGD-noise covariance Σ (nats).

    Attributes:
      si: ``[n]`` ½ Δwᵀ Σ⁺ Δw (nats).
      weight_change_sq: ``[n]`` ‖Δw‖².
      delta_w: ``[n, P]`` Δw_i = w_t^{(−i)} − w_t (flattened as ``ravel_pytree(params)``).
      noise_cov: ``[P, P]`` Σ solving HΣ + ΣH = (lr/b) Σ_sgd.
      hessian_eigenvalues: ``[P]`` eigenvalues of H = (1/n)JᵀJ + λI, ascending.
      rank: numerical rank of Σ used by the pseudo-inverse (P when Σ is definite).
      lr, t, continuous, weight_decay, sgd_batch_size: settings used.
    """

    si: np.ndarray
    weight_change_sq: np.ndarray
    delta_w: np.ndarray
    noise_cov: np.ndarray
    hessian_eigenvalues: np.ndarray
    rank: int
    lr: float
    t: float
    continuous: bool
    weight_decay: float
    sgd_batch_size: int


def sgd_noise_unique_information(apply_fn: ApplyFn, params: Any, x_train: jax.Array,
                                 y_train: jax.Array, *, lr: float, sgd_batch_size: int,
                                 t: Any = None, continuous: bool = False,
                                 weight_decay: float = 0.0, method: str = "auto",
                                 tol: float = 1e-10, rcond: float = 1e-10,
                                 memory_budget: int = DEFAULT_MEMORY_BUDGET,
                                 progress: bool = False) -> SGDNoiseInformation:
    """Weight unique information smoothed by the SGD noise (the paper's variant; small models).

    The weights are smoothed by the stationary covariance Σ of SGD with batch size b around the
    linearized dynamics, the solution of the Lyapunov equation

        H Σ + Σ H = (lr/b)·Σ_sgd,     H = (1/n)JᵀJ + λI,

    with Σ_sgd the covariance (1/n)Σ_i (g_i − ḡ)(g_i − ḡ)ᵀ of the per-sample loss gradients
    ``g_i = J_iᵀ(f_t(x_i) − y_i)`` taken at the trained weights w_t of the full problem (the
    λ-term is common to all samples and drops out). With H = V diag(h) Vᵀ, Σ = V Σ̃ Vᵀ,
    ``Σ̃_pq = (lr/b)·(VᵀΣ_sgd V)_pq / (h_p + h_q)``. Then

        SI(i) = ½ Δw_iᵀ Σ⁻¹ Δw_i   (nats),   Δw_i = w_t^{(−i)} − w_t = JᵀΔα_i,

    the same Σ (of the full training set) for every i. Σ⁻¹ is the pseudo-inverse over the
    eigenvalues of Σ above ``rcond``·max (Σ is singular outside the span of the per-sample
    gradients when P > n − 1; Δw lies in the row space of J).

    Args:
      apply_fn, params, x_train, y_train, lr, t, continuous, weight_decay, method, tol:
        as in :func:`unique_information`.
      sgd_batch_size: SGD batch size b (≥ 1).
      rcond: relative eigenvalue cutoff of the pseudo-inverse of Σ.
      memory_budget: bytes allowed for the dense ``[P, P]`` matrices (about 5·P² numbers).

    Raises:
      ValueError: when H is singular (λ = 0 with P > nk, or a rank-deficient Jacobian) or when
        P is too large for ``memory_budget``.
    """
    from jax.flatten_util import ravel_pytree

    check_int_at_least("sgd_batch_size", sgd_batch_size, 1)
    x_train, f0, y, _ = check_supervised(apply_fn, params, x_train, y_train, None)
    flat, unravel = ravel_pytree(params)
    p = flat.shape[0]
    n, k = f0.shape
    need = (5 * p * p + 2 * n * k * p) * flat.dtype.itemsize
    if need > memory_budget:
        raise ValueError(f"the SGD-noise variant needs dense [P, P] matrices: P = {p} parameters "
                         f"need about {need / 2**30:.2f} GiB > memory_budget = "
                         f"{memory_budget / 2**30:.2f} GiB. Use unique_information (isotropic "
                         "smoothing) for large models, or raise memory_budget.")
    jac = jax.jacrev(lambda w: apply_fn(unravel(w), x_train).reshape(-1))(flat)  # [nk, P]
    theta = _mm(jac, jac.T)
    vec = loo_vectors(theta, (f0 - y), n=n, lr=lr, t=t, continuous=continuous,
                      weight_decay=weight_decay, method=method, tol=tol, progress=progress)
    if len(vec.ts) != 1:
        raise ValueError(f"t must be a single time or None, got {t!r}")
    delta_w = _mm(jnp.asarray(vec.delta_alpha[0]), jac)  # [n, P]
    lam = float(weight_decay)
    h, v = jnp.linalg.eigh(_mm(jac.T, jac) / n + lam * jnp.eye(p, dtype=jac.dtype))
    if float(h[0]) <= p * float(jnp.finfo(h.dtype).eps) * float(h[-1]):
        raise ValueError(
            f"H = (1/n)JᵀJ + λI is singular (λ_min = {float(h[0]):.3g}; P = {p} parameters, "
            f"nk = {n * k} outputs, weight_decay = {lam:g}): the SGD stationary covariance does "
            "not exist. Use weight_decay > 0.")
    resid = (f0 - y).reshape(-1) + _mm(theta, jnp.asarray(vec.alpha[0], jac.dtype))
    grads = jnp.einsum("nk,nkp->np", resid.reshape(n, k), jac.reshape(n, k, p), precision=_HI)
    gv = _mm(grads - grads.mean(0), v)  # per-sample gradient deviations in H's eigenbasis
    s_tilde = _mm(gv.T, gv) / n
    sig_tilde = (lr / sgd_batch_size) * s_tilde / (h[:, None] + h[None, :])
    ev, ew = jnp.linalg.eigh(sig_tilde)
    keep = ev > rcond * ev[-1]
    dw = _mm(_mm(delta_w, v), ew)  # Δw in Σ's eigenbasis
    si = 0.5 * jnp.sum(jnp.where(keep, dw ** 2 / jnp.where(keep, ev, 1.0), 0.0), axis=1)
    sigma = _mm(_mm(v, sig_tilde), v.T)
    return SGDNoiseInformation(np.asarray(si), np.asarray(vec.weight_change_sq[0]),
                               np.asarray(delta_w), np.asarray(sigma), np.asarray(h),
                               int(jnp.sum(keep)), float(lr), float(vec.ts[0]), bool(continuous),
                               lam, int(sgd_batch_size))

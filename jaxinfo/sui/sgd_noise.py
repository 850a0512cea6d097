"""Smooth unique information under SGD noise instead of isotropic smoothing (small models).

The weights are smoothed by the stationary covariance of SGD around the linearized dynamics
(a Lyapunov equation); see :func:`sgd_noise_unique_information` and ``docs/maths/sui.md``.
Dense ``[P, P]`` matrices: only for models with a few thousand parameters.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxinfo._types import DEFAULT_MEMORY_BUDGET, ApplyFn
from jaxinfo._validation import check_int_at_least, check_supervised
from jaxinfo.dynamics import GradientDescent, as_dynamics
from jaxinfo.sui.driver import loo_vectors
from jaxinfo.sui.results import LOOSolver

__all__ = ["SGDNoiseInformation", "sgd_noise_unique_information"]

_HI = lax.Precision.HIGHEST


def _mm(a, b):
    return jnp.matmul(a, b, precision=_HI)


class SGDNoiseInformation(NamedTuple):
    """Weight unique information under the stationary SGD-noise covariance Σ (nats).

    Attributes:
      si: ``[n]`` ½ Δwᵀ Σ⁺ Δw (nats).
      weight_change_sq: ``[n]`` ‖Δw‖².
      delta_w: ``[n, P]`` Δw_i = w_t^{(−i)} − w_t (flattened as ``ravel_pytree(params)``).
      noise_cov: ``[P, P]`` Σ solving HΣ + ΣH = (lr/b) Σ_sgd.
      hessian_eigenvalues: ``[P]`` eigenvalues of H = (1/n)JᵀJ + λI, ascending.
      rank: numerical rank of Σ used by the pseudo-inverse (P when Σ is definite).
      dynamics: the :class:`jaxinfo.GradientDescent` used. sgd_batch_size: b.
    """

    si: np.ndarray
    weight_change_sq: np.ndarray
    delta_w: np.ndarray
    noise_cov: np.ndarray
    hessian_eigenvalues: np.ndarray
    rank: int
    dynamics: GradientDescent
    sgd_batch_size: int


def sgd_noise_unique_information(apply_fn: ApplyFn, params: Any, x_train: Any,
                                 y_train: Any = None, *, dynamics: GradientDescent,
                                 sgd_batch_size: int, solver: LOOSolver = LOOSolver(),
                                 rcond: float = 1e-10,
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
      apply_fn, params, x_train, y_train, dynamics, solver: as in
        :func:`jaxinfo.unique_information` (one time; ``lr`` is also the SGD step).
      sgd_batch_size: SGD batch size b (≥ 1).
      rcond: relative eigenvalue cutoff of the pseudo-inverse of Σ.
      memory_budget: bytes allowed for the dense ``[P, P]`` matrices (about 5·P² numbers).

    Raises:
      ValueError: when H is singular (λ = 0 with P > nk, or a rank-deficient Jacobian) or when
        P is too large for ``memory_budget``.
    """
    from jax.flatten_util import ravel_pytree

    dyn = as_dynamics(dynamics)
    lr = float(dyn.lr)
    check_int_at_least("sgd_batch_size", sgd_batch_size, 1)
    sup = check_supervised(apply_fn, params, x_train, y_train, None)
    x_train, f0, y = sup.x, sup.f0, sup.y
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
    if len(dyn.times()) != 1:
        raise ValueError(f"dynamics.t must be a single time or None, got {dyn.t!r}")
    vec = loo_vectors(theta, (f0 - y), dyn, solver=solver, progress=progress)
    delta_w = _mm(jnp.asarray(vec.delta_alpha[0]), jac)  # [n, P]
    lam = float(dyn.weight_decay)
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
                               int(jnp.sum(keep)), dyn, int(sgd_batch_size))

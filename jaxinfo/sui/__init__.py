"""Smooth unique information of every training sample (``docs/maths/sui.md``).

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
- ``"auto"``: ``"schur"`` for t = ∞; ``"lanczos"`` for finite t (m·(nk)² per sample, cheaper
  than an eigendecomposition even when m nears the dimension: measured 8× faster than
  ``"exact"`` at n = 373), ``"exact"`` only when the bound cannot be met within ``max_iter``.

The t = ∞ Schur path factorises A by Cholesky (no eigendecomposition, ~15× cheaper on CPU) and
raises ``ValueError`` when A is singular (λ = 0 and a rank-deficient Θ: use weight_decay > 0 or
a finite t). Discrete GD that diverges (η·λ_max ≥ 2, full or leave-one-out) raises too.

The SGD-noise variant (``sgd_noise_unique_information``) replaces σ²I by the stationary
covariance of SGD; see its docstring.

Layout: :mod:`~jaxinfo.sui.results` (result types, :class:`LOOSolver`),
:mod:`~jaxinfo.sui.engines` (pure jit-able kernels), :mod:`~jaxinfo.sui.plan` (Lanczos steps and
bound), :mod:`~jaxinfo.sui.driver` (the host layer: chunks, progress, checkpoints; the public
functions), :mod:`~jaxinfo.sui.sgd_noise`; for large n, :mod:`~jaxinfo.sui.out_of_core` (t = ∞
from a kernel on disk, :mod:`jaxinfo.kernel_store`) and :mod:`~jaxinfo.sui.projected` (weight
space: the exact primal form, or a sketch of the Jacobian rows; cost linear in n).
"""
from jaxinfo.sui.driver import (loo_vectors, unique_information, unique_information_core,
                                unique_information_from_kernel, weight_changes)
from jaxinfo.sui.plan import lanczos_plan
from jaxinfo.sui.results import LanczosPlan, LOOSolver, LOOVectors, UniqueInformation
from jaxinfo.sui.sgd_noise import SGDNoiseInformation, sgd_noise_unique_information

__all__ = ["UniqueInformation", "LOOVectors", "LanczosPlan", "LOOSolver", "SGDNoiseInformation",
           "unique_information", "unique_information_from_kernel", "unique_information_core",
           "loo_vectors", "lanczos_plan", "weight_changes", "sgd_noise_unique_information"]

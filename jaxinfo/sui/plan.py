"""How many Lanczos steps a finite-t leave-one-out solve needs, with its a-priori error bound.

For a symmetric B with spectrum in [a, b] and a function g, m Lanczos steps from b give
``‖g(B)b − ‖b‖Q_m g(T_m)e₁‖ ≤ 2‖b‖·E_{m−1}(g; [a, b]) ≤ 2‖b‖·Σ_{j≥m}|c_j|`` (Saad 1992; it
keeps holding up to round-off without re-orthogonalisation: Greenbaum 1989, Musco, Musco &
Sidford 2018), where c_j are the Chebyshev coefficients of g on [a, b]. The derivation and
the choice of the interval are in ``docs/maths/sui.md``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from jaxinfo.linearize import as_times, spectral_gain
from jaxinfo.sui.results import LanczosPlan

__all__ = ["lanczos_plan"]


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

    def fun(s):  # numpy on the host: nothing to compile, float64 throughout
        return spectral_gain(np.asarray(s, np.float64), np.asarray(ts, np.float64), eta=eta,
                             continuous=continuous, xp=np).T  # [M, T]

    c = _chebyshev_coefficients(fun, a, b)
    g_min = float(np.min(fun(np.linspace(a, b, 4097))))
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

"""Result types and solver settings of the smooth-unique-information engine.

All results are pytrees of arrays (they pass through ``jax.jit`` and ``jax.vmap``); strings and
sizes that describe how a result was computed are static metadata.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxinfo._types import DEFAULT_MEMORY_BUDGET
from jaxinfo.dynamics import GradientDescent

__all__ = ["UniqueInformation", "LOOVectors", "LanczosPlan", "LOOSolver", "METHODS",
           "REDUCTIONS", "from_stats"]

METHODS = ("auto", "schur", "lanczos", "exact")
REDUCTIONS = ("mean", "sum")


def size_bucket(n: int) -> int:
    """The smallest size ≥ n on the ladder 16, 24, 32, 40, 48, 64, 80, 96, 120, 144, …

    Each step multiplies by 2^(1/4) and rounds up to a multiple of 8, so padding n to its
    bucket adds at most ~19 % (plus < 8 samples) and a sweep over n compiles once per bucket.
    """
    b = 16
    while b < n:
        b = -(-int(np.ceil(b * 2 ** 0.25)) // 8) * 8
    return b


def _static(default: Any = dataclasses.MISSING):
    return dataclasses.field(default=default, metadata=dict(static=True))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class UniqueInformation:
    """Per-sample smooth unique information (nats) and the raw leave-one-out changes.

    Attributes:
      weight_si: ``[n]`` ‖w_t − w_t^{(−i)}‖² / (2σ²), nats.
      functional_si: ``[n]`` function_change_sq / (2σ_f²), nats (per reference input for
        ``reduction="mean"``, total for ``"sum"``).
      weight_change_sq: ``[n]`` ‖w_t − w_t^{(−i)}‖² (parameter units²).
      function_change_sq: ``[n]`` mean (or sum, per ``reduction``) over the reference inputs of
        ‖f_t(x) − f_t^{(−i)}(x)‖² (summed over the k outputs; output units²).
      sample_loss: ``[n]`` ½‖f_t(x_i) − y_i‖², each sample's training loss under the full
        run at the same t (the natural baseline for flagging unusual samples).
      alpha_error_bound: ``[n]`` a-priori bound on ‖α'_approx − α'‖ of each sample (Lanczos;
        zeros for the direct methods, which are exact up to round-off; NaN when the bound was
        not computed, i.e. Lanczos inside ``jax.jit``).
      dynamics: the :class:`jaxinfo.GradientDescent` used.
      sigma, sigma_f: smoothing scales σ, σ_f.
      method: the method used (``"schur"``, ``"lanczos"`` or ``"exact"``).
      reduction: ``"mean"`` or ``"sum"``.
      iterations: Lanczos steps m (0 for the direct methods).
      num_reference: M, the number of reference inputs per sample (n − 1 without ``x_ref``).
    """

    weight_si: Any
    functional_si: Any
    weight_change_sq: Any
    function_change_sq: Any
    sample_loss: Any
    alpha_error_bound: Any
    dynamics: GradientDescent
    sigma: Any = 1.0
    sigma_f: Any = 1.0
    method: str = _static("schur")
    reduction: str = _static("mean")
    iterations: int = _static(0)
    num_reference: int = _static(0)


def from_stats(stats: dict, *, n: int, k: int, ref_rows: int | None, reduction: str, sigma: Any,
               sigma_f: Any, sample_loss: Any, alpha_error_bound: Any,
               dynamics: GradientDescent, method: str, iterations: int) -> UniqueInformation:
    """Assembles :class:`UniqueInformation` from the per-sample sums of squares of any engine.

    Args:
      stats: ``"weight_change_sq"`` ``[n]`` (‖Δw‖²), ``"train_others_sq"`` ``[n]`` (Σ over the
        other training samples of ‖Δf‖²) and, with reference inputs, ``"ref_sq"`` ``[n]``.
      ref_rows: rows of Θ* (m·k), or ``None`` without reference inputs (then the reference set
        of sample i is the other n − 1 training samples).
      n, k: samples and outputs per sample.
      reduction: ``"mean"`` divides by the number of reference inputs M; ``"sum"`` does not.
      sigma, sigma_f: smoothing scales (the SI fields are the squared changes over 2σ²).
      sample_loss, alpha_error_bound, dynamics, method, iterations: stored as given.
    """
    wsq = stats["weight_change_sq"]
    if ref_rows is None:
        fsq, m_ref = stats["train_others_sq"], n - 1
    else:
        fsq, m_ref = stats["ref_sq"], ref_rows // k
    if reduction == "mean":
        fsq = fsq / m_ref
    return UniqueInformation(
        weight_si=wsq / (2 * sigma ** 2), functional_si=fsq / (2 * sigma_f ** 2),
        weight_change_sq=wsq, function_change_sq=fsq, sample_loss=sample_loss,
        alpha_error_bound=alpha_error_bound, dynamics=dynamics, sigma=sigma, sigma_f=sigma_f,
        method=method, reduction=reduction, iterations=int(iterations),
        num_reference=int(m_ref))


class LOOVectors(NamedTuple):
    """Leave-one-out change vectors of every sample, at each requested time.

    Attributes:
      ts: ``[T]`` times (``inf`` for t = ∞).
      alpha: ``[T, nk]`` dual coefficients α of the full problem.
      delta_alpha: ``[T, n, nk]`` α'_{−i} (zero-padded on sample i's rows) minus α, so that
        ``Δw_i = Jᵀ delta_alpha[t, i]`` (see :func:`jaxinfo.weight_changes`).
      train_change: ``[T, n, n, k]`` f_t^{(−i)}(x_j) − f_t(x_j) for every training sample j
        (j = i included: the change of the prediction on the left-out sample itself).
      ref_change: ``[T, n, m, k]`` the same on the reference inputs (``None`` without Θ*).
      train_loss_change: ``[T, n]`` L_{−i}(t) − L(t), L = (0.5/n')Σ_j‖f_t(x_j) − y_j‖² over the
        n' samples each problem trains on (n − 1 and n).
      weight_change_sq: ``[T, n]`` ‖Δw‖² = Δαᵀ Θ Δα.
      alpha_error_bound: ``[n]`` Lanczos bound on ‖α'_approx − α'‖ (zeros for direct methods).
      method, iterations: as in :class:`UniqueInformation` (method of the finite times; t = ∞
        entries use ``"schur"`` under ``"auto"``).
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
    """Number of Lanczos steps and its a-priori error bound (``docs/maths/sui.md``).

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


@dataclasses.dataclass(frozen=True)
class LOOSolver:
    """How the leave-one-out problems are solved (numerics only: never changes the answer
    beyond the stated tolerance).

    Attributes:
      method: ``"auto"``, ``"schur"`` (t = ∞), ``"lanczos"`` (finite t) or ``"exact"``
        (per-sample eigendecomposition, the reference). ``"auto"``: Schur at t = ∞, Lanczos at
        finite t (``"exact"`` only when the Lanczos bound cannot be met within ``max_iter``).
      tol: Lanczos target relative error on each α' (a-priori bound).
      max_iter: cap on Lanczos steps (default: the dimension nk − k).
      chunk_size: samples per vectorised chunk (default: from ``memory_budget``).
      memory_budget: bytes of per-chunk work arrays.
      dtype: ``"float64"`` runs the leave-one-out arithmetic in float64 whatever the input
        dtype (the changes are differences of nearly equal solutions, which float32 loses);
        ``None`` keeps the input dtype.
      pad_to: compile once across problem sizes. ``None`` (default): shapes are the problem's
        own, and a new n compiles again (~1 s on a CPU). An int N: the samples (NTK inputs and
        the leave-one-out problem) are padded to N ≥ n with inert samples, so every n ≤ N
        reuses one compilation. ``"bucket"``: the next size of a geometric ladder (16, 24, 32,
        40, 48, 64, …, ratio ≤ 2^(1/4) ≈ 1.19 plus rounding to multiples of 8; reference inputs
        too), so a sweep over n compiles once per bucket. Padding is exact (the padded samples
        are decoupled, with zero residuals: ``docs/maths/sui.md``) and costs up to (N/n)² more
        kernel work and (N/n)³ more factorisation at t = ∞.
    """

    method: str = "auto"
    tol: float = 1e-10
    max_iter: int | None = None
    chunk_size: int | None = None
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    dtype: str | None = "float64"
    pad_to: int | str | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"LOOSolver.method must be one of {METHODS}, got {self.method!r}")
        if not (isinstance(self.tol, (int, float)) and 0 < self.tol < 1):
            raise ValueError(f"LOOSolver.tol must be in (0, 1), got {self.tol!r}")
        if self.dtype not in ("float64", None):
            raise ValueError(f"LOOSolver.dtype must be 'float64' or None (keep the input dtype), "
                             f"got {self.dtype!r}")
        if not (self.pad_to is None or self.pad_to == "bucket"
                or (isinstance(self.pad_to, (int, np.integer)) and not isinstance(self.pad_to, bool)
                    and self.pad_to >= 2)):
            raise ValueError(f"LOOSolver.pad_to must be None, 'bucket' or an integer ≥ 2, got "
                             f"{self.pad_to!r}")
        for name in ("max_iter", "chunk_size"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                  or v < 1):
                raise ValueError(f"LOOSolver.{name} must be a positive integer or None, got {v!r}")

    def padded_size(self, n: int) -> int:
        """The number of samples n is padded to (``n`` itself when ``pad_to`` is ``None``)."""
        if self.pad_to is None:
            return n
        if self.pad_to == "bucket":
            return size_bucket(n)
        if self.pad_to < n:
            raise ValueError(f"LOOSolver.pad_to={self.pad_to} is smaller than n = {n}")
        return int(self.pad_to)

"""The training dynamics every closed form and every retraining shares.

:class:`GradientDescent` is one frozen, immutable description of full-batch gradient descent on
the averaged squared loss with decay towards the initial weights,

    L(w) = (1/n) Σ_i ½‖f(w, x_i) − y_i‖²  +  (λ/2)‖w − w0‖²,

run with learning rate ``lr`` for ``t`` steps (discrete), for gradient-flow time ``t``
(``continuous=True``), or to convergence (``t=None``: t = ∞). The same object drives
:func:`jaxinfo.linearized_training`, :func:`jaxinfo.unique_information`,
:func:`jaxinfo.linearized_loo` and :func:`jaxinfo.retrain_loo`, so a closed form and the
retraining it is checked against cannot silently disagree on a setting.

It is a JAX pytree: ``lr``, ``t`` and ``weight_decay`` are leaves (they can be traced, so a jitted
function taking a ``GradientDescent`` does not recompile when they change) and ``continuous`` is
static. Values are checked when they are concrete numbers (at construction), never on tracers.
The mathematics: ``docs/maths/ntk.md``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

__all__ = ["GradientDescent", "as_dynamics"]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GradientDescent:
    """Full-batch gradient descent on the averaged MSE with decay towards the initial weights.

    Attributes:
      lr: learning rate of the averaged loss (> 0). The effective step per sample is ``lr/n``.
      t: number of steps (discrete; a non-negative integer), gradient-flow time (continuous),
        ``None`` for t = ∞, or a 1-d sequence of such times where a function accepts several.
      continuous: gradient flow ``dw/dt = −lr·∇L`` instead of discrete steps.
      weight_decay: λ ≥ 0 in ``(λ/2)‖w − w0‖²``.

    Example::

        dyn = jaxinfo.GradientDescent(lr=0.1, t=1000)
        res = jaxinfo.unique_information(apply_fn, params, x, y, dynamics=dyn)
        dyn_inf = dyn.replace(t=None)      # the same run to convergence
    """

    lr: Any
    t: Any = None
    continuous: bool = dataclasses.field(default=False, metadata=dict(static=True))
    weight_decay: Any = 0.0

    def __post_init__(self):
        # Only concrete values are checked: under jit the leaves are tracers, and JAX may
        # rebuild the object from placeholders.
        if _is_number(self.lr) and not (np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"GradientDescent.lr must be a positive finite number, got {self.lr!r}")
        if _is_number(self.weight_decay) and not (np.isfinite(self.weight_decay)
                                                  and self.weight_decay >= 0):
            raise ValueError("GradientDescent.weight_decay must be a finite number >= 0, got "
                             f"{self.weight_decay!r}")
        if not isinstance(self.continuous, bool):
            raise TypeError(f"GradientDescent.continuous must be a bool, got {self.continuous!r}")
        if self.t is not None and _is_concrete_times(self.t):
            from jaxinfo.linearize import as_times

            as_times(self.t, continuous=self.continuous)  # raises on bad times

    def replace(self, **changes: Any) -> "GradientDescent":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def times(self) -> np.ndarray:
        """``[T]`` float64 times (``inf`` for t = ∞); concrete values only."""
        from jaxinfo.linearize import as_times

        return as_times(self.t, continuous=self.continuous)

    @property
    def is_concrete(self) -> bool:
        """True when no field is a tracer (the values can be inspected on the host)."""
        leaves = jax.tree_util.tree_leaves(self)
        return not any(isinstance(v, jax.core.Tracer) for v in leaves)


def _is_concrete_times(t: Any) -> bool:
    """True for a number, ``None`` or a (nested) list of them — values that can be checked."""
    if isinstance(t, (list, tuple)):
        return all(_is_concrete_times(v) for v in t)
    if isinstance(t, np.ndarray):
        return t.dtype != object or all(_is_concrete_times(v) for v in t.ravel())
    return t is None or _is_number(t)


def as_dynamics(dynamics: Any) -> GradientDescent:
    """Checks that ``dynamics`` is a :class:`GradientDescent` (clear ``TypeError`` otherwise)."""
    if not isinstance(dynamics, GradientDescent):
        raise TypeError("dynamics must be a jaxinfo.GradientDescent(lr, t=None, continuous=False, "
                        f"weight_decay=0.0), got {type(dynamics).__name__}: {dynamics!r}")
    return dynamics

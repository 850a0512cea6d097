"""Input checks shared by every public entry point.

Each check raises ``ValueError`` / ``TypeError`` that names the offending argument and says
what was expected. Checks that need concrete values (NaN/Inf) are skipped for JAX tracers, so
public functions stay usable under ``jax.jit``.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["is_concrete", "check_finite", "check_positive", "check_ndim", "check_int_at_least"]


def is_concrete(tree: Any) -> bool:
    """True when no leaf of ``tree`` is a tracer (so its values can be inspected)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def check_finite(name: str, tree: Any) -> None:
    """Raises ``ValueError`` if any floating leaf of ``tree`` holds NaN or ±Inf."""
    if not is_concrete(tree):
        return
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        arr = np.asarray(leaf) if not isinstance(leaf, jax.Array) else leaf
        if jnp.issubdtype(arr.dtype, jnp.inexact) and not bool(jnp.all(jnp.isfinite(arr))):
            where = jax.tree_util.keystr(path) if path else ""
            raise ValueError(f"{name}{where} contains NaN or Inf; clean the data or the "
                             "parameters before computing information measures.")


def check_positive(name: str, value: Any, *, allow_inf: bool = False) -> None:
    """Raises ``ValueError`` unless ``value`` is a real number > 0 (finite unless ``allow_inf``)."""
    if not is_concrete(value):
        return
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {value!r}") from None
    if not (v > 0) or (np.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be a positive{'' if allow_inf else ' finite'} number, "
                         f"got {value!r}")


def check_ndim(name: str, x: Any, ndim: int | tuple[int, ...]) -> None:
    """Raises ``ValueError`` unless ``x.ndim`` is ``ndim`` (or one of them)."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if np.ndim(x) not in allowed:
        raise ValueError(f"{name} must have ndim in {allowed}, got shape {np.shape(x)}")


def check_int_at_least(name: str, value: Any, minimum: int) -> None:
    """Raises unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")

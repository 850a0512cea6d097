"""Input checks shared by every public entry point.

Each check raises ``ValueError`` / ``TypeError`` that names the offending argument and says
what was expected. Checks that need concrete values (NaN/Inf) are skipped for JAX tracers, so
public functions stay usable under ``jax.jit``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["is_concrete", "check_finite", "check_positive", "check_ndim", "check_int_at_least",
           "Supervised", "check_supervised"]


def is_concrete(tree: Any) -> bool:
    """True when no leaf of ``tree`` is a tracer (so its values can be inspected)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def check_finite(name: str, tree: Any) -> None:
    """Raises ``ValueError`` if any floating leaf of ``tree`` holds NaN or ±Inf.

    The test runs in NumPy on the host, so it never creates a traced value: it is skipped when a
    leaf is a tracer (inside ``jit``/``vmap``), where the values are not known.
    """
    if not is_concrete(tree):
        return
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        arr = np.asarray(leaf)
        if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
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


class Supervised(NamedTuple):
    """A validated supervised problem (see :func:`check_supervised`)."""

    x: jax.Array
    f0: jax.Array
    y: jax.Array
    x_ref: jax.Array | None
    batch_size: int | None


def pad_rows(x, rows: int):
    """``x`` with its last row repeated up to ``rows`` rows (the inputs of padded samples).

    NumPy on the host (no eager operation compiled per size), except for arrays spread over
    several hosts, which are padded on their devices.
    """
    if len(x) >= rows:
        return x
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return jnp.concatenate([x, jnp.repeat(x[-1:], rows - len(x), axis=0)])
    x = np.asarray(x)
    return np.concatenate([x, np.repeat(x[-1:], rows - len(x), axis=0)])


def check_supervised(apply_fn: Any, params: Any, x_train: Any, y_train: Any,
                     x_ref: Any = None, *, padded_size: Callable[[int], int] | None = None
                     ) -> Supervised:
    """Validates a supervised problem for the model-level entry points.

    Args:
      apply_fn: ``apply_fn(params, x) -> [batch, k]``.
      params: weights pytree (finite).
      x_train: ``[n, ...]`` with n ≥ 2 (finite), a Dataset, or an iterable of dict batches
        carrying ``"y"`` (:func:`jaxinfo.data.gather`).
      y_train: ``[n, k]`` targets, or ``[n]`` when k = 1 (finite); ``None`` for batches.
      x_ref: optional ``[m, ...]`` reference inputs (or batches) with the feature shape of
        ``x_train``.
      padded_size: ``n -> N ≥ n`` when the caller pads the samples to N
        (:class:`jaxinfo.LOOSolver` ``pad_to``): f0 is then computed on the padded inputs (one
        compiled forward for every n ≤ N) and the arrays stay NumPy on the host (no eager
        operation compiled per size).

    Returns:
      :class:`Supervised`: ``x``, ``f0 = apply_fn(params, x)`` ``[n, k]``, ``y`` ``[n, k]`` in
      ``f0``'s dtype, ``x_ref``, and the iterable's ``batch_size`` (or ``None``).
    """
    from jaxinfo.data import gather

    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable as apply_fn(params, x), got {apply_fn!r}")
    g = gather(x_train, y_train, name="x_train")
    x_train, y_train = g.x, g.y
    if y_train is None:
        raise TypeError("y_train is missing: pass targets [n, k], or batches with a 'y' entry")
    x_ref = gather(x_ref, name="x_ref").x
    host = padded_size is not None
    to_array = np.asarray if host and not isinstance(x_train, jax.Array) else jnp.asarray
    x_train = to_array(x_train)
    if x_train.ndim < 1 or x_train.shape[0] < 2:
        raise ValueError(f"x_train must be [n, ...] with n >= 2 samples, got shape "
                         f"{x_train.shape}")
    check_finite("x_train", x_train)
    check_finite("y_train", y_train)
    check_finite("params", params)
    n = x_train.shape[0]
    if host:
        f0 = np.asarray(jax.jit(apply_fn)(params, pad_rows(x_train, padded_size(n))))[:n]
    else:
        f0 = jax.jit(apply_fn)(params, x_train)  # one compiled program, not one per operation
    if f0.ndim != 2:
        raise ValueError(f"apply_fn must return [batch, k] outputs, got shape {f0.shape}")
    k = f0.shape[1]
    y = (np.asarray if host else jnp.asarray)(y_train, f0.dtype)
    if y.ndim == 1 and k == 1:
        y = y[:, None]
    if y.shape != (n, k):
        raise ValueError(f"y_train must have shape ({n}, {k}) (= apply_fn outputs on x_train"
                         f"{', or (n,) when k = 1' if k == 1 else ''}), got "
                         f"{tuple(np.shape(y_train))}")
    if x_ref is not None:
        x_ref = to_array(x_ref)
        if x_ref.ndim != x_train.ndim or x_ref.shape[1:] != x_train.shape[1:] \
                or x_ref.shape[0] < 1:
            raise ValueError(f"x_ref must be [m, {', '.join(map(str, x_train.shape[1:]))}] "
                             f"(the feature shape of x_train), got shape {x_ref.shape}")
        check_finite("x_ref", x_ref)
    return Supervised(x_train, f0, y, x_ref, g.batch_size)

"""Adversarial perturbations of inputs (L∞ attacks), as pure jit-able functions.

A *per-sample loss* ``loss_fn(x, y) -> [b]`` (the loss of each row of a batch; build one from a
model with :func:`mse_loss` or :func:`cross_entropy_loss`) is attacked inside the L∞ ball of
radius ε around the clean input ``x0`` and inside the valid input box ``[lo, hi]``:

- **FGSM** (Goodfellow et al. 2015): one signed-gradient step,
  ``x = clip(x0 + ε·sign(∇_x ℓ(x0, y)))``.
- **PGD** (Madry et al. 2018): ``steps`` projected signed-gradient steps of size ``step_size``
  from a uniform random start in the ball, ``x ← Π_{B∞(x0, ε) ∩ [lo, hi]}(x + a·sign(∇_x ℓ))``.

ε and the step size are in input units (pixels in ``[0, 1]`` for jaxinfo's loaders). Because
the rows of a batch do not interact in the loss, ``∇_x Σ_b ℓ_b`` is the per-sample input
gradient of every row at once (one VJP, no per-sample loop).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

__all__ = ["input_gradient", "fgsm", "pgd", "mse_loss", "cross_entropy_loss", "project_linf"]

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def mse_loss(apply_fn: Callable, params: Any) -> LossFn:
    """Per-sample ``½‖f(x) − y‖²`` of a model: ``loss(x [b, ...], y [b, k]) -> [b]``."""

    def loss(x, y):
        return 0.5 * jnp.sum((apply_fn(params, x) - y) ** 2, axis=-1)

    return loss


def cross_entropy_loss(apply_fn: Callable, params: Any) -> LossFn:
    """Per-sample cross-entropy (nats) of integer labels ``y [b]``: ``-log softmax(f(x))_y``.

    A single-output model (``k = 1``) is read as a logistic classifier: ``p(y=1) = σ(f(x))``.
    """

    def loss(x, y):
        logits = apply_fn(params, x)
        y = jnp.asarray(y).astype(jnp.int32).reshape(-1)
        if logits.shape[-1] == 1:
            z = logits[:, 0]
            return jnp.where(y == 1, jax.nn.softplus(-z), jax.nn.softplus(z))
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]

    return loss


def input_gradient(loss_fn: LossFn, x: jax.Array, y: jax.Array) -> jax.Array:
    """``∇_x ℓ(x_b, y_b)`` of every row, ``[b, ...]`` (the gradient of the summed loss)."""
    return jax.grad(lambda z: jnp.sum(loss_fn(z, y)))(x)


def project_linf(x: jax.Array, x0: jax.Array, eps: Any, lo: Any = 0.0, hi: Any = 1.0) -> jax.Array:
    """Projection onto ``{z : ‖z − x0‖∞ ≤ ε, lo ≤ z ≤ hi}`` (elementwise clipping)."""
    return jnp.clip(jnp.clip(x, x0 - eps, x0 + eps), lo, hi)


def fgsm(loss_fn: LossFn, x: jax.Array, y: jax.Array, eps: Any, *, lo: Any = 0.0,
         hi: Any = 1.0) -> jax.Array:
    """Fast gradient sign method: ``clip(x + ε·sign(∇_x ℓ), lo, hi)``.

    Args:
      loss_fn: per-sample loss ``(x [b, ...], y) -> [b]``.
      x: ``[b, ...]`` clean inputs; y: their targets/labels.
      eps: L∞ radius ε ≥ 0 in input units.
      lo, hi: the valid input range (``None`` for no clipping).

    Returns:
      ``[b, ...]`` perturbed inputs with ``‖x_adv − x‖∞ ≤ ε``.
    """
    g = input_gradient(loss_fn, x, y)
    adv = x + eps * jnp.sign(g)
    return adv if lo is None and hi is None else jnp.clip(adv, lo, hi)


def pgd(loss_fn: LossFn, x: jax.Array, y: jax.Array, eps: Any, *, steps: int,
        step_size: Any, key: jax.Array | None = None, lo: Any = 0.0, hi: Any = 1.0
        ) -> jax.Array:
    """Projected gradient descent (ascent on the loss) in the L∞ ball (Madry et al. 2018).

    Args:
      loss_fn, x, y, eps, lo, hi: as in :func:`fgsm`.
      steps: number of signed-gradient steps (static).
      step_size: step a in input units (e.g. ``2.5·ε/steps``).
      key: JAX key for the uniform random start in the ball; ``None`` starts at ``x``.

    Returns:
      ``[b, ...]`` perturbed inputs with ``‖x_adv − x‖∞ ≤ ε`` (up to float round-off).
    """
    lo_, hi_ = (-jnp.inf if lo is None else lo), (jnp.inf if hi is None else hi)
    start = x if key is None else project_linf(
        x + jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * eps, x, eps, lo_, hi_)

    def body(_, z):
        g = input_gradient(loss_fn, z, y)
        return project_linf(z + step_size * jnp.sign(g), x, eps, lo_, hi_)

    return jax.lax.fori_loop(0, int(steps), body, start)

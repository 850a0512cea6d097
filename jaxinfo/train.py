"""optax training of real networks for the experiments (Bansal et al. 2022 protocol).

Minibatch Adam on softmax cross-entropy plus an L2 term ``l2 * sum ||W||^2`` over the weight
matrices (leaves named ``kernel``; biases are not decayed), keeping the parameters with the
best validation accuracy and stopping early (patience counted only after ``patience_after``
epochs and once the training cross-entropy is ``<= loss_threshold``), as in docs/maths/diversity.md.

Several seeds train at once: :func:`train_classifier` ``vmap``s one epoch (a ``lax.scan`` over
minibatches) over a stack of parameter pytrees; a seed that has stopped keeps its parameters
frozen while the others continue. Everything is driven by explicit PRNG keys.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinfo._optional import progress_bar
from jaxinfo._validation import check_finite, check_int_at_least, check_positive
from jaxinfo.models import MLP  # one definition, re-exported here

__all__ = ["MLP", "TrainConfig", "TrainResult", "init_mlp", "train_classifier", "accuracy"]


class TrainConfig(NamedTuple):
    """Training hyper-parameters (defaults: the authors' protocol).

    Attributes:
      lr: Adam learning rate.
      batch_size: minibatch size.
      l2: coefficient of ``sum ||W||^2`` over kernels.
      max_epochs: epoch budget.
      patience: epochs without validation improvement before stopping.
      patience_after: early stopping is only allowed after this many epochs.
      loss_threshold: ... and once the training cross-entropy (nats) is at most this.
    """

    lr: float = 1e-3
    batch_size: int = 512
    l2: float = 0.002
    max_epochs: int = 500
    patience: int = 3
    patience_after: int = 201
    loss_threshold: float = 0.2


class TrainResult(NamedTuple):
    """Outcome of :func:`train_classifier` for ``R`` seeds.

    Attributes:
      params: best-validation parameters, every leaf with a leading ``[R]`` seed axis.
      best_epoch: ``[R]`` epoch (1-based) of the kept checkpoint.
      best_val_acc: ``[R]`` validation accuracy of the kept checkpoint.
      epochs_run: ``[R]`` epochs trained before stopping.
      train_loss: ``[E, R]`` mean training cross-entropy per epoch (nats).
      val_acc: ``[E, R]`` validation accuracy per epoch.
      final_params: parameters at the end of training (each seed's last active epoch).
    """

    params: Any
    best_epoch: np.ndarray
    best_val_acc: np.ndarray
    epochs_run: np.ndarray
    train_loss: np.ndarray
    val_acc: np.ndarray
    final_params: Any = None


def init_mlp(key, in_dim: int, num_classes: int, hidden: Sequence[int] = (256, 256, 256),
             num_seeds: int | None = None):
    """Initial MLP parameters; with ``num_seeds`` a stack ``[R, ...]`` from ``split(key, R)``.

    Returns:
      ``(module, params)``.
    """
    module = MLP(tuple(hidden), num_classes)
    x = jnp.zeros((1, in_dim))
    if num_seeds is None:
        return module, module.init(key, x)["params"]
    keys = jax.random.split(key, num_seeds)
    return module, jax.vmap(lambda k: module.init(k, x)["params"])(keys)


def _l2(params):
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return sum(jnp.sum(v ** 2) for p, v in leaves if "kernel" in jax.tree_util.keystr(p))


def accuracy(apply_fn: Callable, params, x, y, batch_size: int = 2048) -> jax.Array:
    """Top-1 accuracy of ``apply_fn(params, x)`` logits against int labels ``y`` ``[n]``."""
    n = len(y)
    correct = 0
    for s in range(0, n, batch_size):
        logits = apply_fn(params, jnp.asarray(x[s:s + batch_size]))
        correct += jnp.sum(jnp.argmax(logits, -1) == jnp.asarray(y[s:s + batch_size]))
    return correct / n


def train_classifier(apply_fn: Callable, params, train_x, train_y, val_x, val_y, *, key,
                     config: TrainConfig = TrainConfig(), progress: bool = True) -> TrainResult:
    """Trains ``R`` stacked parameter sets with minibatch Adam and best-validation checkpoints.

    Args:
      apply_fn: ``apply_fn(params, x) -> logits [batch, C]`` for one parameter set.
      params: pytree with a leading seed axis ``[R, ...]`` on every leaf (e.g. from
        :func:`init_mlp` with ``num_seeds``).
      train_x, train_y: ``[n, ...]`` inputs and ``[n]`` int labels (shared by all seeds).
      val_x, val_y: validation split for checkpoint selection / early stopping.
      key: PRNG key for the minibatch order (one stream per seed).
      config: :class:`TrainConfig`.
      progress: show a tqdm bar over epochs.

    Returns:
      :class:`TrainResult`.
    """
    check_int_at_least("config.batch_size", config.batch_size, 1)
    check_int_at_least("config.max_epochs", config.max_epochs, 1)
    check_positive("config.lr", config.lr)
    check_finite("train_x", train_x)
    check_finite("params", params)
    n = len(train_y)
    if n < 1 or len(train_x) != n:
        raise ValueError(f"train_x and train_y must hold the same n >= 1 samples, got "
                         f"{len(train_x)} and {n}")
    n_seeds = jax.tree_util.tree_leaves(params)[0].shape[0]
    bs = min(config.batch_size, n)
    n_steps = -(-n // bs)
    tx = optax.adam(config.lr)
    opt_state = jax.vmap(tx.init)(params)
    X, Y = jnp.asarray(train_x), jnp.asarray(train_y, jnp.int32)
    VX, VY = jnp.asarray(val_x), jnp.asarray(val_y, jnp.int32)

    def loss_fn(p, xb, yb, wb):
        logits = apply_fn(p, xb)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
        ce = jnp.sum(ce * wb) / jnp.sum(wb)
        return ce + config.l2 * _l2(p), ce

    def epoch(p, s, k, active):
        perm = jax.random.permutation(k, n)
        perm = jnp.concatenate([perm, jnp.zeros(n_steps * bs - n, perm.dtype)])
        w = (jnp.arange(n_steps * bs) < n).astype(X.dtype).reshape(n_steps, bs)
        idx = perm.reshape(n_steps, bs)

        def step(carry, inp):
            p, s = carry
            ib, wb = inp
            (_, ce), g = jax.value_and_grad(loss_fn, has_aux=True)(p, X[ib], Y[ib], wb)
            upd, s2 = tx.update(g, s, p)
            p2 = optax.apply_updates(p, upd)
            keep = lambda new, old: jnp.where(active, new, old)
            return (jax.tree.map(keep, p2, p), jax.tree.map(keep, s2, s)), ce * jnp.sum(wb)

        (p, s), ces = jax.lax.scan(step, (p, s), (idx, w))
        val = jnp.mean(jnp.argmax(apply_fn(p, VX), -1) == VY)
        return p, s, jnp.sum(ces) / n, val

    @jax.jit
    def run_epoch(p, s, keys, active, best_p, best_acc):
        p, s, ce, val = jax.vmap(epoch)(p, s, keys, active)
        better = active & (val > best_acc)
        sel = lambda new, old: jnp.where(better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
        best_p = jax.tree.map(sel, p, best_p)
        return p, s, ce, val, better, best_p, jnp.where(better, val, best_acc)

    active = np.ones(n_seeds, bool)
    best_p = params
    best_acc = jnp.full((n_seeds,), -1.0)
    best_epoch = np.zeros(n_seeds, int)
    since = np.zeros(n_seeds, int)
    epochs_run = np.zeros(n_seeds, int)
    hist_loss, hist_val = [], []
    keys = jax.random.split(key, n_seeds)
    bar = progress_bar(range(1, config.max_epochs + 1), desc="train", enable=progress,
                       unit="epoch")
    for ep in bar:
        keys, sub = jax.vmap(lambda k: tuple(jax.random.split(k)))(keys)
        params, opt_state, ce, val, better, best_p, best_acc = run_epoch(
            params, opt_state, sub, jnp.asarray(active), best_p, best_acc)
        ce, val, better = np.asarray(ce), np.asarray(val), np.asarray(better)
        hist_loss.append(np.where(active, ce, np.nan))
        hist_val.append(np.where(active, val, np.nan))
        epochs_run[active] = ep
        best_epoch[better] = ep
        since = np.where(better, 0, since + 1)
        stop = (active & (ep > config.patience_after) & (ce <= config.loss_threshold)
                & (since >= config.patience))
        active = active & ~stop
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(val=f"{np.nanmean(hist_val[-1]):.3f}", ce=f"{np.nanmean(ce):.3f}",
                            active=int(active.sum()))
        if not active.any():
            break
    return TrainResult(best_p, best_epoch, np.asarray(best_acc), epochs_run,
                       np.stack(hist_loss), np.stack(hist_val), params)

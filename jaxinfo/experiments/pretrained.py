"""Pretrained convolutional backbones, fine-tuned: the SUI paper's real-world regime, offline.

The procedure (run by ``benchmarks/run_pretrained.py``):

1. :func:`pretrain` — a :class:`jaxinfo.models.ResNet` trained with Adam on softmax
   cross-entropy (BatchNorm in training mode), in phases: full-size Fashion-MNIST (60,000
   images of another domain, read through :func:`jaxinfo.data.load_idx`), then the 8 bundled
   MNIST digits other than 4 and 9 (a second, nearer source). Each phase starts from the
   previous phase's backbone with a fresh classification head. One orbax checkpoint per epoch
   (``<dir>/<phase>/epoch_XXX``), so an interrupted run resumes at the last finished epoch;
   wall time per epoch and phase is recorded.
2. :func:`finetune_variables` — the pretrained backbone (weights and frozen BatchNorm
   statistics) with a fresh 1-output head for the MNIST 4-vs-9 task;
   :func:`random_variables` — the same network at a random initialization (BatchNorm
   statistics set from the task's training images, so the frozen normalization is sensible).
3. The fine-tuning regimes (:func:`jaxinfo.finetune.finetune_regime`) and SUI vs real
   leave-one-out fine-tuning are run by the benchmark.

All functions are pure apart from the checkpoint directory they write; PRNG keys are explicit.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinfo.checkpoint import atomic_write_bytes, load_params, save_params
from jaxinfo.data import Dataset, load_idx, load_mnist
from jaxinfo.models import Layers, ResNet

__all__ = ["OTHER_DIGITS", "PretrainConfig", "load_sources", "make_resnet", "pretrain",
           "finetune_variables", "random_variables", "load_task"]

#: The MNIST digits of the second pretraining source: all but the fine-tuning task's 4 and 9.
OTHER_DIGITS = (0, 1, 2, 3, 5, 6, 7, 8)


class PretrainConfig(NamedTuple):
    """Pretraining settings.

    Attributes:
      stage_widths, blocks, norm: the :class:`jaxinfo.models.ResNet` (heads are added per
        phase).
      phases: ``((source, epochs), ...)`` in order; sources are ``"fashion_mnist"`` and
        ``"mnist8"``.
      batch_size: minibatch size; the last incomplete batch of an epoch is dropped.
      lr: Adam learning rate.
      size: image side (28, or 14 = 2×2 average pooling).
      seed: PRNG seed (initialization, heads, shuffling).
    """

    stage_widths: tuple = (8, 8, 16, 16)
    blocks: tuple = (2, 2, 2, 2)
    norm: str = "batch"
    phases: tuple = (("fashion_mnist", 3), ("mnist8", 6))
    batch_size: int = 128
    lr: float = 2e-3
    size: int = 14
    seed: int = 0


def load_sources(size: int = 14) -> dict[str, tuple[Dataset, Dataset]]:
    """``{source: (train, test)}`` as ``[n, size, size, 1]`` images in [0, 1], int labels.

    ``fashion_mnist``: the IDX files (60,000 / 10,000; ``make data``). ``mnist8``: the
    bundled MNIST digits of :data:`OTHER_DIGITS` relabelled 0..7 (4,000 images), a fixed
    random 90 / 10 split (seed 0).
    """
    fm_tr = load_idx("fashion_mnist", "train", size=size, flatten=False)
    fm_te = load_idx("fashion_mnist", "test", size=size, flatten=False)
    m8 = load_mnist(OTHER_DIGITS, size=size, flatten=False, relabel=True)
    perm = np.random.default_rng(0).permutation(len(m8.x))
    cut = int(0.9 * len(perm))
    tr, te = np.sort(perm[:cut]), np.sort(perm[cut:])
    return {"fashion_mnist": (fm_tr, fm_te),
            "mnist8": (Dataset(m8.x[tr], m8.y[tr]), Dataset(m8.x[te], m8.y[te]))}


def make_resnet(config: PretrainConfig, num_outputs: int, *, conv_impl: str = "lax"
                ) -> ResNet:
    """The :class:`ResNet` of ``config`` with a ``num_outputs`` head."""
    return ResNet(tuple(config.stage_widths), tuple(config.blocks), num_outputs,
                  layers=Layers(norm=config.norm, conv_impl=conv_impl))


def _init(module: ResNet, key: jax.Array, size: int) -> dict:
    return module.init(key, jnp.zeros((1, size, size, 1), jnp.float32))


def _with_head(backbone: dict, fresh: dict) -> dict:
    """``backbone``'s variables with ``fresh``'s head (and everything ``backbone`` lacks)."""
    params = dict(backbone["params"])
    params["head"] = fresh["params"]["head"]
    out = {k: v for k, v in fresh.items()}
    out.update({k: v for k, v in backbone.items() if k != "params"})
    out["params"] = params
    return out


def _train_step(module: ResNet, opt: optax.GradientTransformation):
    @jax.jit
    def step(params, batch_stats, opt_state, x, y):
        def loss_fn(p):
            logits, upd = module.apply({"params": p, "batch_stats": batch_stats}, x, train=True,
                                       mutable=["batch_stats"])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, upd["batch_stats"]

        (loss, bs), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
        upd, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, upd), bs, opt_state, loss

    return step


def accuracy(module: ResNet, variables: dict, data: Dataset, batch_size: int = 1000) -> float:
    """Top-1 accuracy with frozen BatchNorm statistics (``train=False``)."""
    f = jax.jit(lambda v, x: jnp.argmax(module.apply(v, x), -1))
    hits = sum(int(jnp.sum(f(variables, data.x[s:s + batch_size]) == data.y[s:s + batch_size]))
               for s in range(0, len(data.x), batch_size))
    return hits / len(data.x)


def pretrain(config: PretrainConfig, checkpoint_dir: str | os.PathLike, *,
             sources: dict | None = None, log: Callable[[str], Any] = print
             ) -> tuple[dict, list[dict]]:
    """Pretrains the ResNet of ``config`` phase by phase, resumable.

    Every epoch ends with an orbax checkpoint ``<checkpoint_dir>/<phase>/epoch_XXX`` of the
    variables and optimizer state plus a row in ``<checkpoint_dir>/log.json`` (phase, epoch,
    mean training loss, test accuracy, wall seconds of the epoch). A rerun loads the newest
    finished epoch of each phase and continues from there; finished phases are skipped.

    Args:
      config: :class:`PretrainConfig`.
      checkpoint_dir: folder for the checkpoints (created).
      sources: :func:`load_sources` output (loaded when ``None``).
      log: called with one line per epoch.

    Returns:
      ``(variables, rows)``: the final phase's ``{"params", "batch_stats"}`` (head of that
      phase's classes) and the log rows.
    """
    root = Path(checkpoint_dir).absolute()
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / "log.json"
    rows = json.loads(log_path.read_text()) if log_path.exists() else []
    sources = load_sources(config.size) if sources is None else sources
    key = jax.random.PRNGKey(config.seed)
    variables = None
    for p_idx, (name, epochs) in enumerate(config.phases):
        train, test = sources[name]
        module = make_resnet(config, int(train.y.max()) + 1)
        fresh = _init(module, jax.random.fold_in(key, p_idx), config.size)
        variables = fresh if variables is None else _with_head(variables, fresh)
        opt = optax.adam(config.lr)
        state = {"variables": variables, "opt": opt.init(variables["params"])}
        start = 0
        for e in range(epochs, 0, -1):
            path = root / name / f"epoch_{e:03d}"
            if path.exists():
                state = load_params(path, like=state)
                start = e
                break
        step = _train_step(module, opt)
        n_batches = len(train.x) // config.batch_size
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            order = np.asarray(jax.random.permutation(
                jax.random.fold_in(jax.random.fold_in(key, 1000 + p_idx), epoch), len(train.x)))
            p, bs, os_ = (state["variables"]["params"], state["variables"]["batch_stats"],
                          state["opt"])
            losses = []
            for b in range(n_batches):
                sel = order[b * config.batch_size:(b + 1) * config.batch_size]
                p, bs, os_, loss = step(p, bs, os_, jnp.asarray(train.x[sel]),
                                        jnp.asarray(train.y[sel]))
                losses.append(loss)
            state = {"variables": {"params": p, "batch_stats": bs}, "opt": os_}
            acc = accuracy(module, state["variables"], test)
            secs = time.perf_counter() - t0
            save_params(root / name / f"epoch_{epoch + 1:03d}", state)
            row = dict(phase=name, epoch=epoch + 1, n_train=len(train.x),
                       train_loss=float(np.mean(jax.device_get(losses))), test_acc=acc,
                       wall_s=secs)
            rows = [r for r in rows if (r["phase"], r["epoch"]) != (name, epoch + 1)] + [row]
            atomic_write_bytes(log_path, json.dumps(rows, indent=1).encode())
            log(f"pretrain {name} epoch {epoch + 1}/{epochs}: loss {row['train_loss']:.4f} "
                f"test acc {acc:.4f} ({secs:.1f} s)")
        variables = state["variables"]
    save_params(root / "final", variables)
    return variables, rows


def finetune_variables(pretrained: dict, config: PretrainConfig, key: jax.Array,
                       num_outputs: int = 1) -> dict:
    """The pretrained backbone and BatchNorm statistics with a fresh ``num_outputs`` head
    (Flax default init of ``Dense``: LeCun-normal kernel, zero bias) drawn from ``key``."""
    fresh = _init(make_resnet(config, num_outputs), key, config.size)
    return _with_head(pretrained, fresh)


def random_variables(config: PretrainConfig, key: jax.Array, x_calib: Any,
                     num_outputs: int = 1) -> dict:
    """The same network at a random initialization from ``key``, with BatchNorm statistics
    computed on ``x_calib`` (``[n, side²]`` or ``[n, side, side, 1]``: the task's training
    images; :func:`jaxinfo.finetune.calibrate_batch_stats`), so that frozen normalization
    standardizes the activations as in the pretrained network."""
    from jaxinfo.finetune import calibrate_batch_stats

    module = make_resnet(config, num_outputs)
    return calibrate_batch_stats(module, _init(module, key, config.size), x_calib)


class Task(NamedTuple):
    """MNIST 4 vs 9 fine-tuning task (bundled digits).

    Attributes:
      x_train: ``[n, side, side, 1]``; y_train: ``[n, 1]`` targets 0 (digit 4) / 1 (digit 9).
      x_ref, y_ref: the held-out reference images X*.
      train_ids: positions of the training images among the 1,000 images of 4 and 9.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_ref: np.ndarray
    y_ref: np.ndarray
    train_ids: np.ndarray


def load_task(n_train: int = 500, n_ref: int = 500, *, size: int = 14, seed: int = 0) -> Task:
    """MNIST 4 vs 9 (1,000 bundled images): ``n_train`` training and ``n_ref`` reference images
    from one fixed permutation (``seed``), so every ``n_train`` uses the same reference set when
    ``n_ref`` is fixed and smaller training sets are prefixes of larger ones."""
    data = load_mnist((4, 9), size=size, flatten=False, relabel=True)
    if n_train + n_ref > len(data.x):
        raise ValueError(f"n_train + n_ref must be <= {len(data.x)}, got {n_train + n_ref}")
    perm = np.random.default_rng(seed).permutation(len(data.x))
    ref = np.sort(perm[len(data.x) - n_ref:])
    tr = perm[:n_train]
    y = data.y.astype(np.float32)[:, None]
    return Task(data.x[tr], y[tr], data.x[ref], y[ref], tr)

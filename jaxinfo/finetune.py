"""Fine-tuning regimes: which parameters train, as an ``apply_fn(trainable, x)`` for SUI.

Smooth unique information and its leave-one-out ground truth take one pure
``apply_fn(params, x)`` and the pytree that training moves. A fine-tuning regime is such a
pair; the same :class:`jaxinfo.GradientDescent` then drives the closed form
(:func:`jaxinfo.unique_information`, linearized around the starting weights) and the real
fine-tuning (:func:`jaxinfo.retrain_loo`) on the same function.

- :func:`split_params` / :func:`merge_params` / :func:`freeze`: any model — the parameters
  are split by path into trainable and frozen, and ``freeze`` returns
  ``apply_fn(trainable, x) = apply_fn(merge(trainable, frozen), x)``.
- :func:`finetune_regime` for a :class:`jaxinfo.models.ResNet` (BatchNorm statistics always
  frozen, ``train=False``):

  - ``"full"``: every parameter trains (the network linearized around the pretrained weights);
  - ``"last_block"``: only the last basic block of the last stage and the head train;
  - ``"linear_probe"``: only the head trains, on the pooled features of the frozen backbone
    (a linear model: its linearization is exact).

  With ``cache_inputs`` the frozen front of the network is evaluated once: the regime's
  ``prepare(x)`` maps images to what its ``apply_fn`` reads (the activations entering the last
  block, or the pooled features), so retraining never recomputes the frozen layers.
- :func:`calibrate_batch_stats`: BatchNorm statistics set to those of given inputs.

Parameter paths are ``/``-joined keys, e.g. ``stage3/block1/conv1/kernel``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

__all__ = ["split_params", "merge_params", "freeze", "calibrate_batch_stats", "Regime",
           "finetune_regime", "REGIMES"]

REGIMES = ("full", "last_block", "linear_probe")


def _flatten(tree: dict) -> dict[str, Any]:
    from flax import traverse_util

    return {"/".join(k): v for k, v in traverse_util.flatten_dict(dict(tree)).items()}


def _unflatten(flat: dict[str, Any]) -> dict:
    from flax import traverse_util

    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def _selector(trainable: Callable[[str], bool] | Sequence[str]) -> Callable[[str], bool]:
    if callable(trainable):
        return trainable
    prefixes = tuple(p.rstrip("/") for p in trainable)
    return lambda path: any(path == p or path.startswith(p + "/") for p in prefixes)


def split_params(params: dict, trainable: Callable[[str], bool] | Sequence[str]
                 ) -> tuple[dict, dict]:
    """Splits a nested params dict into ``(trainable, frozen)`` nested dicts.

    Args:
      params: nested dict of arrays (Flax ``variables["params"]``).
      trainable: a predicate on ``/``-joined leaf paths, or path prefixes
        (``["stage3/block1", "head"]``).

    Raises:
      ValueError: nothing (or everything) would be trainable when prefixes were given and one
        of them matches no leaf.
    """
    flat = _flatten(params)
    sel = _selector(trainable)
    if not callable(trainable):
        for p in trainable:
            if not any(_selector([p])(k) for k in flat):
                raise ValueError(f"trainable prefix {p!r} matches no parameter; parameters: "
                                 f"{sorted(flat)[:8]}...")
    t = {k: v for k, v in flat.items() if sel(k)}
    f = {k: v for k, v in flat.items() if not sel(k)}
    if not t:
        raise ValueError("no parameter is trainable")
    return _unflatten(t), (_unflatten(f) if f else {})


def merge_params(trainable: dict, frozen: dict) -> dict:
    """The inverse of :func:`split_params` (the union of the two nested dicts)."""
    flat = _flatten(frozen) if frozen else {}
    flat.update(_flatten(trainable))
    return _unflatten(flat)


def freeze(apply_fn: Callable, params: dict, trainable: Callable[[str], bool] | Sequence[str]
           ) -> tuple[Callable, dict, dict]:
    """``(apply_t, trainable, frozen)`` with ``apply_t(trainable, x) = apply_fn(params, x)``
    when ``trainable`` is unchanged; the frozen leaves are constants of ``apply_t`` (no
    gradient, no NTK contribution)."""
    t, f = split_params(params, trainable)

    def apply_t(trainable_params, x):
        return apply_fn(merge_params(trainable_params, f), x)

    return apply_t, t, f


def calibrate_batch_stats(module: Any, variables: dict, x: Any) -> dict:
    """``variables`` with every BatchNorm's statistics set to those of the batch ``x``.

    One training-mode forward pass with BatchNorm momentum 0 (so the running averages become
    the batch mean and biased variance of ``x``). The module must have a ``layers``
    attribute (:class:`jaxinfo.models.Layers`) and a ``train`` argument
    (:class:`jaxinfo.models.ResNet`).
    """
    import dataclasses

    calibrating = module.clone(layers=dataclasses.replace(module.layers, bn_momentum=0.0))
    _, upd = calibrating.apply(variables, jnp.asarray(x), train=True, mutable=["batch_stats"])
    return {**variables, "batch_stats": upd["batch_stats"]}


class Regime(NamedTuple):
    """A fine-tuning regime of a model.

    Attributes:
      name: ``"full"``, ``"last_block"`` or ``"linear_probe"``.
      apply_fn: ``apply_fn(params, inputs) -> [batch, outputs]``, pure and differentiable.
      params: the trainable parameters (the starting point of fine-tuning).
      prepare: ``prepare(x) -> inputs``: images ``[batch, H, W, C]`` (or flattened) to what
        ``apply_fn`` reads (identity unless the frozen front is cached).
      frozen: the frozen parameters (``{}`` for ``"full"``).
    """

    name: str
    apply_fn: Callable
    params: Any
    prepare: Callable
    frozen: Any


def _identity(x):
    return x


def _last_block_path(module) -> tuple[str, str]:
    s = len(module.stage_widths) - 1
    return f"stage{s}", f"block{module.blocks[-1] - 1}"


def finetune_regime(module: Any, variables: dict, regime: str = "full", *,
                    cache_inputs: bool = True) -> Regime:
    """The fine-tuning regime ``regime`` of a :class:`jaxinfo.models.ResNet` with
    ``variables`` (BatchNorm statistics frozen: ``train=False``).

    For every regime, ``apply_fn(params, prepare(x))`` equals ``module.apply(variables, x)``
    at the returned ``params``.

    Args:
      module: the ResNet.
      variables: ``{"params": ..., "batch_stats": ...}`` (pretrained or random).
      regime: ``"full"``, ``"last_block"`` or ``"linear_probe"`` (module docstring).
      cache_inputs: for ``"last_block"``, evaluate the frozen front once in ``prepare``
        (``apply_fn`` then reads the activations entering the last block,
        ``[batch, h, w, C]``); otherwise ``apply_fn`` reads images and runs the frozen front
        every call (:func:`freeze`). ``"linear_probe"`` always reads features ``[batch, C]``.
    """
    from jaxinfo.adapters import flax_apply
    from jaxinfo.models import BasicBlock

    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    apply_full, params = flax_apply(module, variables)
    fixed = {k: v for k, v in variables.items() if k != "params"}
    if regime == "full":
        return Regime(regime, apply_full, params, _identity, {})

    if regime == "linear_probe":
        def features(x):
            return module.apply(variables, jnp.asarray(x), return_features=True)

        head = params["head"]

        def apply_probe(h, f):
            return f @ h["kernel"] + h["bias"]

        frozen = {k: v for k, v in params.items() if k != "head"}
        return Regime(regime, apply_probe, head, features, frozen)

    stage, block = _last_block_path(module)
    if not cache_inputs:
        apply_t, t, f = freeze(apply_full, params, [f"{stage}/{block}", "head"])
        return Regime(regime, apply_t, t, _identity, f)

    s_idx = len(module.stage_widths) - 1
    strides = 2 if (module.blocks[-1] == 1 and s_idx > 0) else 1
    blk = BasicBlock(module.stage_widths[-1], strides, module.layers)
    block_fixed = {k: v[stage][block] for k, v in fixed.items()}

    def prepare(x):
        _, st = module.apply(variables, jnp.asarray(x), capture_intermediates=lambda m, n: (
            n == "__call__" and m.path == _prev_path(module)), mutable=["intermediates"])
        leaves = jax.tree_util.tree_leaves(st["intermediates"])
        return leaves[0]

    def apply_tail(p, h):
        h = blk.apply({"params": p["block"], **block_fixed}, h, train=False)
        return jnp.mean(h, axis=(1, 2)) @ p["head"]["kernel"] + p["head"]["bias"]

    t = {"block": params[stage][block], "head": params["head"]}
    frozen = {k: v for k, v in params.items() if k not in (stage, "head")}
    frozen[stage] = {k: v for k, v in params[stage].items() if k != block}
    return Regime(regime, apply_tail, t, prepare, frozen)


def _prev_path(module) -> tuple[str, ...]:
    """Path of the submodule whose output enters the last block of the last stage."""
    s = len(module.stage_widths) - 1
    b = module.blocks[-1] - 1
    if b > 0:
        return (f"stage{s}", f"block{b - 1}")
    if s > 0:
        return (f"stage{s - 1}",)
    raise ValueError("the last block is the network's only block: use regime='full'")

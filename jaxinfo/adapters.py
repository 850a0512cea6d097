"""Adapters that turn Flax models into ``apply_fn(params, x)`` over a params pytree.

Every measure in jaxinfo takes a pure ``apply_fn(params, x)`` and the pytree it differentiates.
:func:`flax_apply` builds that pair from a Flax linen module (plus its variables) or from an NNX
module, holding non-trainable collections (``batch_stats``, RNG counters, ...) fixed.
"""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["flax_apply"]


def flax_apply(module: Any, variables: Any = None, **apply_kwargs: Any
               ) -> tuple[Callable[[Any, Any], Any], Any]:
    """``(apply_fn, params)`` for a Flax linen module or an NNX module.

    Args:
      module: a ``flax.linen.Module`` (then ``variables`` is what ``module.init`` returned) or a
        ``flax.nnx.Module`` (then ``variables`` must be ``None``; its ``nnx.Param`` state is the
        params and every other state is held fixed). Put NNX models in eval mode first
        (``model.eval()``) when they have dropout or batch norm.
      variables: linen variables ``{"params": ..., "batch_stats": ...}``.
      **apply_kwargs: extra keyword arguments for ``module.apply`` (linen), e.g.
        ``train=False``.

    Returns:
      ``apply_fn(params, x)`` — pure, jit-able, differentiable in ``params`` — and ``params``
      (linen: ``variables["params"]``; NNX: the ``nnx.Param`` state).
    """
    from flax import linen as nn
    from flax import nnx

    if isinstance(module, nn.Module):
        if variables is None or "params" not in variables:
            raise ValueError("variables must be the dict returned by module.init(...), with a "
                             "'params' collection, for a linen module")
        fixed = {k: v for k, v in variables.items() if k != "params"}

        def apply_fn(params, x):
            return module.apply({"params": params, **fixed}, x, **apply_kwargs)

        return apply_fn, variables["params"]

    if isinstance(module, nnx.Module):
        if variables is not None:
            raise ValueError("variables must be None for an NNX module (its state is inside it)")
        graphdef, params, rest = nnx.split(module, nnx.Param, ...)

        def apply_fn(params, x):
            return nnx.merge(graphdef, params, rest)(x, **apply_kwargs)

        return apply_fn, params

    raise TypeError(f"module must be a flax.linen.Module or a flax.nnx.Module, got "
                    f"{type(module).__name__}; for plain functions pass apply_fn directly")

"""Capture layer activations of Flax models, streamed over a dataset.

:func:`capture_activations` runs a Flax **linen** module (with its ``variables``) or an **NNX**
module over an iterator of input batches and returns ``{layer_name: [S, N]}``:

- linen: ``Module.apply(..., capture_intermediates=..., mutable=["intermediates"])`` records
  the output of every ``nn.Dense`` / ``nn.Conv`` call; layer names are the module paths joined
  by ``/`` (e.g. ``"Dense_0"``, ``"block/Conv_1"``).
- NNX: ``nnx.capture(model, nnx.Intermediate, method_outputs=nnx.Intermediate)`` records the
  output of every ``nnx.Linear`` / ``nnx.Conv`` call; names are attribute paths
  (``"layers/0"``, ``"linear1"``).

Default layers: every Dense/Linear layer (its *pre-activation* output) except the logits layer
(the one whose output is the model's output), and every Conv layer, reduced to one neuron per
channel by global average pooling over its spatial axes (``[b, h, w, c] -> [b, c]``).
``layers=[...]`` selects layers by name (any captured Dense/Linear/Conv, logits included).

Data is an array ``[S, ...]`` (streamed ``batch_size`` rows at a time), a
:class:`jaxinfo.data.Dataset`, or an iterable of dict batches ``{"x", "y"?, "mask"?}`` (the batch
convention of :mod:`jaxinfo.data`; padded rows, ``mask == False``, are dropped). Only the
``[S, N]`` outputs are kept on the host, so memory grows with ``S * N``; the forward pass is
jit-compiled once per batch shape (pad the last batch, as :func:`jaxinfo.data.batches` does).

With ``mesh=`` (:mod:`jaxinfo.distributed`) each batch is split over all devices of the mesh
(rows padded to a multiple of the device count by repeating the last row, then dropped), the
variables are replicated, and the same jitted forward pass runs data-parallel; the ``[b, N]``
activations come back to the host batch by batch as before.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxinfo import distributed as _dist
from jaxinfo._optional import progress_bar
from jaxinfo._validation import check_finite

__all__ = ["capture_activations", "layer_names"]


def _reduce(v):
    v = jnp.asarray(v)
    if v.ndim > 2:  # conv: global average pool over spatial axes -> one neuron per channel
        v = jnp.mean(v, axis=tuple(range(1, v.ndim - 1)))
    return v


def _is_nnx(obj) -> bool:
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, nnx.Module)


def _is_linen(obj) -> bool:
    from flax import linen as nn

    return isinstance(obj, nn.Module)


def _linen_forward(module, method):
    from flax import linen as nn

    def keep(mdl, name):
        return name == "__call__" and isinstance(mdl, (nn.Dense, nn.Conv))

    def fwd(variables, x):
        out, state = module.apply(variables, x, capture_intermediates=keep,
                                  mutable=["intermediates"], method=method)
        flat = {}
        inter = state.get("intermediates", {})

        def walk(tree, prefix):
            for k, v in tree.items():
                if k == "__call__":
                    flat["/".join(prefix)] = v[0]
                elif isinstance(v, dict) or hasattr(v, "items"):
                    walk(v, prefix + (k,))

        walk(inter, ())
        return out, flat

    return fwd


def _nnx_forward(model):
    from flax import nnx

    kinds = (nnx.Linear, nnx.Conv)
    wanted = {path for path, m in nnx.iter_modules(model) if isinstance(m, kinds)}
    graphdef, state = nnx.split(model)

    def fwd(state, x):
        m = nnx.merge(graphdef, state)
        out, inter = nnx.capture(m, nnx.Intermediate, method_outputs=nnx.Intermediate)(x)
        flat = {}
        for path, var in nnx.to_flat_state(inter):
            mod_path = tuple(path[:-1])
            if path[-1] == "__call__" and mod_path in wanted:
                flat["/".join(str(p) for p in mod_path)] = var.get_value()[0]
        return out, flat

    return fwd, state


def _batch_stream(data: Any, batch_size: int) -> Iterable[dict]:
    """Dict batches from an array, a Dataset or an iterable of batches (checked lazily)."""
    from jaxinfo.data import Dataset, _is_array, as_batch, batches

    if isinstance(data, Dataset):
        data = data.x
    if _is_array(data):
        return batches(np.asarray(data), batch_size)
    if isinstance(data, Mapping):
        return [as_batch(data)]
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise TypeError("data must be an array, a jaxinfo.data.Dataset or an iterable of dict "
                        f"batches {{'x', 'mask'?}}, got {type(data).__name__}")
    return (as_batch(b) for b in data)


def capture_activations(module_or_apply_fn: Any, variables: Any, data: Any, *,
                        layers: Sequence[str] | None = None, method: str | None = None,
                        batch_size: int = 512, progress: bool = False,
                        mesh: Mesh | None = None) -> dict[str, np.ndarray]:
    """Streams batches through a Flax model and collects per-layer activations.

    Args:
      module_or_apply_fn: a linen ``nn.Module`` (used with ``variables``), an NNX
        ``nnx.Module`` (``variables`` ignored, may be ``None``), or a function
        ``fn(variables, x) -> (outputs, {layer_name: activation})`` for other models.
      variables: linen variables (``{"params": ...}``), or whatever ``fn`` takes.
      data: ``[S, ...]`` inputs, a :class:`jaxinfo.data.Dataset`, or an iterable of dict
        batches ``{"x": [b, ...], "mask": [b]}`` (``"mask"`` optional; rows with ``False`` are
        dropped; ``"y"`` is ignored). A tuple batch is a ``TypeError``.
      layers: layer names to keep; default: hidden Dense/Linear layers (logits excluded) and
        Conv layers.
      method: linen only: the module method to apply (default ``__call__``).
      batch_size: rows per forward pass when ``data`` is an array or a Dataset.
      progress: show a progress bar over batches.
      mesh: a :class:`jax.sharding.Mesh` with a ``"data"`` axis (and optionally ``"model"``),
        or ``None`` (one device): each batch's rows are split over all its devices (padded to
        a multiple of the device count), the variables replicated. Same result.

    Returns:
      ``{layer_name: [S, N_l]}`` numpy arrays (conv layers pooled to ``[S, channels]``), in the
      order the layers are called.

    Raises:
      ValueError: a requested layer does not exist, or no batches were given.
      TypeError: the model is neither a Flax module nor a callable, or a batch does not follow
        the batch convention.
    """
    if _is_nnx(module_or_apply_fn):
        fwd, variables = _nnx_forward(module_or_apply_fn)
    elif _is_linen(module_or_apply_fn):
        fwd = _linen_forward(module_or_apply_fn, method)
    elif callable(module_or_apply_fn):
        fwd = module_or_apply_fn
    else:
        raise TypeError("module_or_apply_fn must be a flax linen Module, an nnx Module or a "
                        f"callable, got {type(module_or_apply_fn).__name__}")

    @jax.jit
    def run(variables, x):
        out, flat = fwd(variables, x)
        return out, {k: _reduce(v) for k, v in flat.items()}

    split = None
    if mesh is not None:  # batches split over every device, variables replicated
        mesh = _dist.auto_mesh(mesh)
        split = NamedSharding(mesh, P(_dist.sample_axes(mesh)))
        variables = jax.tree_util.tree_map(lambda a: _dist.put(a, _dist.replicated(mesh)),
                                           variables)

    chosen: list[str] | None = None
    collected: dict[str, list[np.ndarray]] = {}
    for batch in progress_bar(_batch_stream(data, batch_size), desc="activations",
                              enable=progress):
        x = batch["x"]
        mask = np.asarray(batch["mask"], bool) if "mask" in batch else None
        check_finite("batch", x)
        if split is None:
            out, flat = run(variables, jnp.asarray(x))
        else:  # [b, ...] -> [b_pad, ...] padded to a multiple of the device count
            b = np.shape(x)[0]
            out, flat = run(variables, _dist.put(_dist.pad_rows(np.asarray(x),
                                                                mesh.devices.size), split))
            out = _dist.to_host(out)[:b]
            flat = {k: _dist.to_host(v)[:b] for k, v in flat.items()}
        if chosen is None:
            if layers is None:
                out_np = np.asarray(out)
                chosen = [k for k, v in flat.items()
                          if not (np.shape(v) == out_np.shape
                                  and np.array_equal(np.asarray(v), out_np))]
            else:
                missing = [name for name in layers if name not in flat]
                if missing:
                    raise ValueError(f"layers {missing} not found; available layers: "
                                     f"{list(flat)}")
                chosen = list(layers)
            collected = {k: [] for k in chosen}
        for k in chosen:
            v = np.asarray(flat[k])
            collected[k].append(v[mask] if mask is not None else v)
    if chosen is None:
        raise ValueError("batches must yield at least one batch")
    return {k: np.concatenate(v, axis=0) for k, v in collected.items()}


def layer_names(module_or_apply_fn: Any, variables: Any, x) -> list[str]:
    """Names of all capturable Dense/Linear/Conv layers, for ``layers=`` (one forward pass)."""
    return list(capture_activations(module_or_apply_fn, variables, np.asarray(x)[:1]))

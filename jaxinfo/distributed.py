"""Running on several devices and hosts: the mesh, multi-host start-up, and sharding helpers.

jaxinfo distributes work with JAX's own machinery — a :class:`jax.sharding.Mesh`, arrays with a
:class:`jax.sharding.NamedSharding`, ``jax.jit`` and ``jax.shard_map`` — never with a scheduler
of its own. The mesh has two axes:

- ``"data"``: samples. Inputs, per-sample Jacobians, the rows of kernels and the samples of
  activation batches are split along it.
- ``"model"``: the parameter axis ``P`` of the Jacobian contraction ``Θ = Σ_P J₁J₂ᵀ``
  (:func:`jaxinfo.empirical_ntk`); size 1 when not needed.

Functions that accept ``mesh=`` (:func:`jaxinfo.empirical_ntk`,
:func:`jaxinfo.unique_information`, :func:`jaxinfo.unique_information_from_kernel`,
:func:`jaxinfo.capture_activations`) take any mesh with a ``"data"`` axis (and optionally a
``"model"`` axis); its axis types do not matter (jaxinfo works on an ``Auto``-typed view of the
same devices). ``docs/scaling.md`` describes a TPU-pod / multi-GPU run.

On several hosts, call :func:`initialize` first in every process (before anything touches a
device), then build the mesh with :func:`data_mesh`: it spans the devices of all processes.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["data_mesh", "initialize"]

#: Environment variables :func:`initialize` reads when an argument is ``None`` (in addition to
#: ``JAX_COORDINATOR_ADDRESS`` / ``JAX_LOCAL_DEVICE_IDS``, which JAX reads itself, and the
#: automatic detection of TPU pods, SLURM, Open MPI and Kubernetes jobs).
ENV_COORDINATOR = "JAXINFO_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAXINFO_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXINFO_PROCESS_ID"


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *,
               local_device_ids: int | Sequence[int] | None = None, **kwargs: Any) -> None:
    """Starts JAX's multi-host runtime (:func:`jax.distributed.initialize`), once per process.

    Call it at the top of the program in **every** process, before any computation. Afterwards
    ``jax.devices()`` lists the devices of all hosts and :func:`data_mesh` spans them.

    Arguments left ``None`` are read from the environment — ``JAXINFO_COORDINATOR_ADDRESS``
    (``host:port`` of process 0; JAX's own ``JAX_COORDINATOR_ADDRESS`` also works),
    ``JAXINFO_NUM_PROCESSES``, ``JAXINFO_PROCESS_ID`` — and otherwise detected by JAX on Cloud
    TPU pods, SLURM, Open MPI and Kubernetes jobs (where a bare ``initialize()`` suffices).
    Calling it again in an initialized process does nothing.

    Args:
      coordinator_address: ``"host:port"`` of process 0, reachable from every process.
      num_processes: total number of processes (usually one per host).
      process_id: this process's index in ``[0, num_processes)``.
      local_device_ids: devices of this host that this process uses (default: all).
      **kwargs: passed to :func:`jax.distributed.initialize` (e.g. ``initialization_timeout``).

    Raises:
      RuntimeError: the runtime could not start (no coordinator address or process count found,
        the coordinator unreachable, or devices already used by this process); the message says
        which settings were used and how to give them.
    """
    if jax.distributed.is_initialized():
        return
    coordinator_address = coordinator_address or os.environ.get(ENV_COORDINATOR) or None
    if num_processes is None:
        num_processes = _env_int(ENV_NUM_PROCESSES)
    if process_id is None:
        process_id = _env_int(ENV_PROCESS_ID)
    try:
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id,
                                   local_device_ids=local_device_ids, **kwargs)
    except Exception as err:  # re-raised with the settings used and the remedy
        raise RuntimeError(
            "jax.distributed.initialize failed "
            f"(coordinator_address={coordinator_address!r}, num_processes={num_processes!r}, "
            f"process_id={process_id!r}): {err}. Outside a TPU pod, SLURM, Open MPI or "
            f"Kubernetes job, give all three, as arguments or through {ENV_COORDINATOR}, "
            f"{ENV_NUM_PROCESSES} and {ENV_PROCESS_ID}, in every process, and call initialize "
            "before any JAX computation.") from err


def data_mesh(model: int = 1, *, devices: Sequence[Any] | None = None) -> Mesh:
    """A mesh over all devices (of every process) with axes ``("data", "model")``.

    Args:
      model: size of the ``"model"`` axis (it must divide the number of devices); the
        ``"data"`` axis gets the rest. ``model > 1`` splits the parameter axis of the Jacobian
        contraction across devices (less memory per device for wide models).
      devices: the devices to use (default ``jax.devices()``, all processes).

    Returns:
      ``Mesh`` of shape ``[len(devices) // model, model]`` with ``Auto`` axis types (the
      compiler places the communication that sharded operations need).
    """
    devices = list(jax.devices() if devices is None else devices)
    if not isinstance(model, (int, np.integer)) or model < 1 or len(devices) % model:
        raise ValueError(f"model must be a positive integer dividing the number of devices "
                         f"({len(devices)}), got {model!r}")
    return jax.make_mesh((len(devices) // model, int(model)), ("data", "model"),
                         axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


# ----------------------------------------------------------------------------- helpers

def auto_mesh(mesh: Mesh) -> Mesh:
    """The same devices and axes with ``Auto`` axis types; adds no axis. Checks ``"data"``."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if "data" not in mesh.axis_names:
        raise ValueError(f"mesh must have a 'data' axis (samples), got axes {mesh.axis_names}")
    unknown = set(mesh.axis_names) - {"data", "model"}
    if unknown:
        raise ValueError(f"mesh axes must be 'data' and optionally 'model', got "
                         f"{mesh.axis_names}")
    if all(t == AxisType.Auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * mesh.devices.ndim)


def axis_size(mesh: Mesh, name: str) -> int:
    """Size of axis ``name`` (1 when the mesh has no such axis)."""
    return int(mesh.shape[name]) if name in mesh.axis_names else 1


def sample_axes(mesh: Mesh) -> tuple[str, ...]:
    """All mesh axes, data first: samples split over every device."""
    return ("data",) + (("model",) if "model" in mesh.axis_names else ())


def rows_sharding(mesh: Mesh, n: int | None = None, axes: str | tuple[str, ...] = "data"
                  ) -> NamedSharding:
    """Axis 0 split over ``axes`` — or replicated when ``n`` rows do not divide evenly.

    JAX arrays are sharded in equal blocks, so an axis of ``n`` rows can be split over ``d``
    devices only when ``d`` divides ``n``; otherwise the array is replicated.
    """
    size = int(np.prod([axis_size(mesh, a) for a in np.atleast_1d(axes)]))
    if n is not None and n % size:
        return replicated(mesh)
    return NamedSharding(mesh, P(axes))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, P())


def pad_rows(x: jax.Array, multiple: int) -> jax.Array:
    """``[n, ...]`` → ``[ceil(n/multiple)·multiple, ...]`` repeating the last row (a real
    input, so padded rows stay finite through any network); callers slice them off."""
    pad = -x.shape[0] % multiple
    if not pad:
        return x
    xp = np if isinstance(x, np.ndarray) else jnp
    return xp.concatenate([x, xp.repeat(x[-1:], pad, axis=0)])


def put(x: Any, sharding: NamedSharding) -> jax.Array:
    """Places a host or device array with ``sharding`` (each process fills its own shards, so
    this works on several hosts when every process holds the same ``x``)."""
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if isinstance(x, jax.Array) and not x.is_fully_addressable:  # global: reshard on device
        return reshard(x, sharding)
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def to_host(x: jax.Array) -> np.ndarray:
    """A numpy copy of a (possibly sharded, possibly multi-host) array."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
        return np.asarray(x)
    return np.asarray(reshard(x, replicated(x.sharding.mesh)))


def reshard(x: jax.Array, sharding: NamedSharding, dtype: Any = None) -> jax.Array:
    """``x`` (cast to ``dtype`` if given) laid out as ``sharding``, on the devices (one
    compiled program per sharding and dtype)."""
    return _resharder(sharding, None if dtype is None else np.dtype(dtype))(x)


@functools.lru_cache(maxsize=64)
def _resharder(sharding: NamedSharding, dtype):
    return jax.jit(lambda a: a if dtype is None else a.astype(dtype), out_shardings=sharding)

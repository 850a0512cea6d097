"""Resumable computations: one on-disk layout for every long-running job.

A checkpoint directory holds ``meta.json`` (a fingerprint of the inputs and settings, plus
human-readable settings) and one ``<name>.npz`` per finished piece of work (a chunk of samples,
a trained model, ...). Every file is written atomically — to a temporary name in the same
directory, then renamed — so a run killed at any moment leaves either the whole file or none,
and a restart with the same inputs skips exactly the finished pieces. A directory holding a
different computation is refused (``ValueError``) rather than silently mixed.

Used by :func:`jaxinfo.unique_information` (leave-one-out chunks), :func:`jaxinfo.retrain_loo`
(retrained models) and the neuron-diversity sweeps (one table of rows per level).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["fingerprint", "atomic_write_bytes", "atomic_savez", "CheckpointStore", "open_store",
           "save_params", "load_params"]


def fingerprint(*arrays: Any, **settings: Any) -> str:
    """SHA-256 hex digest of arrays (dtype, shape and bytes) and JSON-able settings.

    ``None`` entries are hashed as a marker, so "no reference inputs" differs from any array.
    """
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"<none>")
            continue
        arr = np.ascontiguousarray(np.asarray(a))
        h.update(f"{arr.dtype}:{arr.shape}:".encode())
        h.update(arr.tobytes())
    h.update(json.dumps(settings, sort_keys=True, default=repr).encode())
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_savez(path: str | os.PathLike, **arrays: Any) -> None:
    """``numpy.savez`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    import io

    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


class CheckpointStore:
    """A checkpoint directory bound to one computation (its fingerprint).

    Args:
      directory: created if missing.
      fingerprint: identifies the inputs and settings (:func:`fingerprint`).
      meta: extra JSON-able settings written beside the fingerprint (for humans).

    Raises:
      ValueError: the directory already holds a computation with another fingerprint.
    """

    def __init__(self, directory: str | os.PathLike, fingerprint: str, **meta: Any):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        meta_path = self.directory / "meta.json"
        if meta_path.exists():
            old = json.loads(meta_path.read_text()).get("fingerprint")
            if old != fingerprint:
                raise ValueError(f"checkpoint directory {str(self.directory)!r} holds a run with "
                                 "different inputs or settings; use a fresh directory (or "
                                 "delete it)")
        else:
            atomic_write_bytes(meta_path, json.dumps(
                {"fingerprint": fingerprint, **meta}, indent=1, default=repr).encode())
        self.fingerprint = fingerprint
        self._saves = 0

    def path(self, name: str) -> Path:
        """The file holding piece ``name``."""
        return self.directory / f"{name}.npz"

    def load(self, name: str) -> dict[str, np.ndarray] | None:
        """The arrays of a finished piece, or ``None`` if it has not been written."""
        p = self.path(name)
        if not p.exists():
            return None
        with np.load(p) as f:
            return {k: f[k] for k in f.files}

    def save(self, name: str, **arrays: Any) -> None:
        """Writes a finished piece atomically."""
        atomic_savez(self.path(name), **arrays)
        self._saves += 1
        _pause_for_tests(self._saves)

    def load_json(self, name: str) -> Any | None:
        """A finished piece stored as JSON (tables of rows), or ``None``."""
        p = self.directory / f"{name}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def save_json(self, name: str, value: Any) -> None:
        """Writes a JSON-able finished piece (e.g. a list of row dicts) atomically."""
        atomic_write_bytes(self.directory / f"{name}.json",
                           json.dumps(value, indent=1, default=float).encode())


#: Crash-resume tests set this to N: the process then stops (sleeps) right after its N-th
#: finished piece is written, so that a test can kill it at a known point.
PAUSE_ENV = "JAXINFO_PAUSE_AFTER_SAVES"


def _pause_for_tests(saves: int) -> None:
    pause = os.environ.get(PAUSE_ENV)
    if pause and saves == int(pause):
        import time

        time.sleep(3600)


def open_store(directory: str | os.PathLike | None, fp: str, **meta: Any
               ) -> CheckpointStore | None:
    """:class:`CheckpointStore` for ``directory``, or ``None`` when no directory is given."""
    return None if directory is None else CheckpointStore(directory, fp, **meta)


# ----------------------------------------------------------------------------- model parameters

def _flat_state(tree: Any) -> dict[str, Any]:
    """``{"params/stage0/block0/conv1/kernel": leaf, ...}`` of a (Flax) pytree's state dict."""
    from flax import serialization, traverse_util

    state = serialization.to_state_dict(tree)
    if not isinstance(state, dict):
        return {"": state}
    return {"/".join(str(k) for k in path): v
            for path, v in traverse_util.flatten_dict(state, keep_empty_nodes=False).items()}


def save_params(path: str | os.PathLike, variables: Any) -> Path:
    """Saves a pytree of arrays (Flax ``variables``: ``{"params": ..., "batch_stats": ...}``).

    Args:
      path: a ``.msgpack`` file (Flax state dict through ``flax.serialization``, written
        atomically) or, for any other name, an orbax checkpoint directory (``orbax-checkpoint``,
        the ``all`` extra; an existing directory is replaced).
      variables: nested dicts / Flax structures of arrays.

    Returns:
      The absolute path written.
    """
    from flax import serialization

    path = Path(path).absolute()
    state = serialization.to_state_dict(variables)
    state = _to_numpy(state)
    if path.suffix == ".msgpack":
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, serialization.msgpack_serialize(state))
        return path
    ocp = _orbax()
    path.parent.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, state, force=True)
        ckptr.wait_until_finished()
    return path


def _to_numpy(state: Any) -> Any:
    import jax

    return jax.tree_util.tree_map(np.asarray, state)


def _orbax():
    from jaxinfo._optional import require

    return require("orbax.checkpoint", "saving and loading orbax checkpoints")


def load_params(path: str | os.PathLike, like: Any = None, *, strict: bool = True) -> Any:
    """Loads parameters saved by :func:`save_params` (or a user's orbax / msgpack checkpoint).

    Args:
      path: an orbax checkpoint directory or a ``.msgpack`` file of a Flax state dict.
      like: a pytree with the expected structure, shapes and dtypes (e.g. ``model.init(...)``);
        the loaded arrays are checked against it leaf by leaf, cast to its dtypes and returned in
        its structure. ``None``: the raw nested dict of numpy arrays.
      strict: also refuse leaves in the checkpoint that ``like`` does not have.

    Returns:
      The loaded pytree (``like``'s structure when given).

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: naming every offending parameter path: a missing leaf
        (``params/head/kernel: missing from the checkpoint``), a shape mismatch
        (``params/stage2/block0/conv1/kernel: expected (3, 3, 16, 32), got (3, 3, 8, 16)``) or,
        with ``strict``, an unexpected leaf.
    """
    from flax import serialization

    path = Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    if path.is_file():
        try:
            state = serialization.msgpack_restore(path.read_bytes())
        except Exception as e:  # noqa: BLE001 — report what the file was expected to be
            raise ValueError(f"{str(path)!r} is not a msgpack file of Flax state "
                             f"(flax.serialization): {e}") from e
    else:
        ocp = _orbax()
        with ocp.StandardCheckpointer() as ckptr:
            state = ckptr.restore(path)
    state = _to_numpy(state)
    if like is None:
        return state
    got, want = _flat_state(state), _flat_state(like)
    errors = []
    for name, ref in want.items():
        if name not in got:
            errors.append(f"{name}: missing from the checkpoint (expected shape "
                          f"{tuple(np.shape(ref))})")
        elif tuple(np.shape(got[name])) != tuple(np.shape(ref)):
            errors.append(f"{name}: expected {tuple(np.shape(ref))}, got "
                          f"{tuple(np.shape(got[name]))}")
    if strict:
        errors += [f"{name}: in the checkpoint but not in the model" for name in got
                   if name not in want]
    if errors:
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise ValueError(f"checkpoint {str(path)!r} does not match the model "
                         f"({len(errors)} problem(s)):\n  " + "\n  ".join(errors[:20]) + more)
    from flax import traverse_util

    flat = {tuple(k.split("/")): np.asarray(got[k], np.asarray(ref).dtype)
            for k, ref in want.items()}
    # empty containers of ``like`` (e.g. optax's EmptyState) hold no leaves: keep them
    full = traverse_util.flatten_dict(serialization.to_state_dict(like), keep_empty_nodes=True)
    flat.update({k: v for k, v in full.items() if v is traverse_util.empty_node})
    return serialization.from_state_dict(like, traverse_util.unflatten_dict(flat))

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

__all__ = ["fingerprint", "atomic_write_bytes", "atomic_savez", "CheckpointStore"]


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

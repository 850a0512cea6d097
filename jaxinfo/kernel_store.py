"""Out-of-core, resumable NTK matrices: tiles on disk, and blocked linear algebra over them.

When the training kernel Θ ``[nk, nk]`` (sample-major, :func:`jaxinfo.kernel_matrix`) does not
fit the memory budget, :func:`compute_kernel` computes it tile by tile — one
:func:`jaxinfo.empirical_ntk` call per pair of sample blocks (the structured implementation is
chosen automatically where cheaper) — into a memory-mapped ``.npy`` file. The kernel is
symmetric, so only the tiles ``(a, b)`` with ``a ≤ b`` are computed; each is written at
``[a, b]`` and mirrored (transposed) at ``[b, a]``.

**Resumable, crash-safe.** A tile is *done* when its marker ``tiles/<a>_<b>.json`` exists. The
order of operations for every tile is: compute it; write it (and its mirror) into the memmap;
``flush`` (``msync``); write the marker, which holds the SHA-256 of the tile's bytes, through a
temporary file and an atomic rename (:func:`jaxinfo.checkpoint.atomic_write_bytes`). A process
killed at any point (``SIGKILL`` included) therefore leaves every marked tile complete: a tile
being written when the process died has no marker and is recomputed by the next run, and a
marked tile whose bytes do not match its checksum (a torn write after a power loss) is
recomputed too. Tiles are computed by the same code on the same shapes, so a resumed kernel is
bit-identical to an uninterrupted one. The directory's ``meta.json`` holds a fingerprint of the
inputs (training inputs, parameters, the model's outputs on a few samples, tile size, dtype):
reusing a directory for another problem raises ``ValueError``.

**Blocked linear algebra** (float64, host LAPACK/BLAS on tiles of ``b`` rows):

- :func:`blocked_cholesky` — right-looking Cholesky ``A = LLᵀ`` of ``A = Θ + shift·I`` into a
  second memmap: for each block column j, factor the diagonal tile, solve the panel
  ``L_ij = A_ij L_jj⁻ᵀ`` (in memory: ``nk × b`` numbers), and update the trailing columns
  ``A_il −= L_ij L_ljᵀ`` one block column at a time. ``(nk)³/3`` multiply-adds; about
  ``N³/6`` tile reads and writes for ``N = nk/b`` block columns.
- :func:`cho_solve_blocked` — ``A⁻¹B`` for an in-memory ``B [nk, r]`` by a blocked forward and
  backward substitution (one pass over L each).
- :func:`matmul_blocked` — ``ΘV`` streaming over row blocks of Θ.

Peak memory of these is a panel of ``nk × b`` float64 numbers plus the right-hand sides; the
kernel and its factor stay on disk (in the page cache when it has room).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxinfo._optional import progress_bar
from jaxinfo._types import DEFAULT_MEMORY_BUDGET, ApplyFn
from jaxinfo._validation import pad_rows
from jaxinfo.checkpoint import CheckpointStore, atomic_write_bytes, fingerprint

__all__ = ["KernelFile", "compute_kernel", "open_kernel", "default_tile",
           "blocked_cholesky", "cho_solve_blocked", "matmul_blocked"]

_THETA = "theta.npy"
_CHOL = "chol.npy"


class KernelFile(NamedTuple):
    """A kernel on disk.

    Attributes:
      theta: ``[nk, nk]`` read-only memmap of Θ (sample-major), in the model's dtype.
      n, k: samples and outputs per sample.
      tile: samples per tile (``tile·k`` rows of Θ).
      directory: the store's folder.
      computed: tiles ``(a, b)`` computed by this call (the others were loaded as done).
    """

    theta: np.ndarray
    n: int
    k: int
    tile: int
    directory: Path
    computed: list


def default_tile(n: int, k: int, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> int:
    """Samples per tile: a float64 panel ``[nk, tile·k]`` takes at most a quarter of the budget."""
    return int(max(1, min(n, memory_budget // (4 * 8 * n * k * k))))


def _tile_slices(size: int, tile: int) -> list[slice]:
    return [slice(s, min(s + tile, size)) for s in range(0, size, tile)]


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _create_memmap(path: Path, shape, dtype) -> None:
    """Creates a zero (sparse) ``.npy`` at ``path`` atomically (temporary name, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
    mm.flush()
    del mm
    os.replace(tmp, path)


def compute_kernel(apply_fn: ApplyFn, params: Any, x: Any, directory: str | os.PathLike, *,
                   tile: int | None = None, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                   progress: bool = True,
                   on_tile: Callable[[int, int], None] | None = None,
                   mesh: Any = None) -> KernelFile:
    """Θ(x, x) ``[nk, nk]`` tile by tile into ``directory/theta.npy``, resuming finished tiles.

    Args:
      apply_fn: ``apply_fn(params, x) -> [batch, k]``.
      params: the weights w0 (any pytree).
      x: ``[n, ...]`` training inputs.
      directory: the store (created if missing). A directory holding another problem raises
        ``ValueError``.
      tile: samples per tile (default :func:`default_tile`); every tile is computed on padded
        ``[tile, ...]`` blocks, so :func:`jaxinfo.empirical_ntk` compiles twice (diagonal and
        off-diagonal tiles), whatever n.
      memory_budget: bytes, passed to :func:`jaxinfo.empirical_ntk` and used for the default tile.
      progress: progress bar over tiles.
      on_tile: called as ``on_tile(a, b)`` after tile (a, b) is in the memmap and before it is
        marked done (a hook for tests of interrupted runs).
      mesh: a :class:`jax.sharding.Mesh` of this process's devices (e.g. the GPUs of one host):
        each tile is computed sharded over it (:func:`jaxinfo.empirical_ntk` with ``mesh``) and
        gathered to the host to be written. One process only (several processes would write
        the same file).

    Returns:
      :class:`KernelFile` (Θ as a read-only memmap).
    """
    from jaxinfo.linearize import kernel_matrix
    from jaxinfo.ntk import empirical_ntk

    if mesh is not None and jax.process_count() > 1:
        raise ValueError("compute_kernel with a mesh runs in one process (one host's devices): "
                         "with several processes every one would write the same file")
    x = np.asarray(x)
    n = x.shape[0]
    probe = np.asarray(apply_fn(params, jnp.asarray(x[:min(n, 4)])))
    if probe.ndim != 2:
        raise ValueError(f"apply_fn must return [batch, k] outputs, got shape {probe.shape}")
    k = probe.shape[1]
    tile = default_tile(n, k, memory_budget) if tile is None else int(tile)
    if tile < 1:
        raise ValueError(f"tile must be a positive integer, got {tile}")
    tile = min(tile, n)
    dtype = np.dtype(probe.dtype)
    leaves = jax.tree_util.tree_leaves(params)
    fp = fingerprint(x, probe, *leaves, n=n, k=k, tile=tile, dtype=str(dtype), kind="ntk-tiles")
    directory = Path(directory)
    CheckpointStore(directory, fp, kind="ntk-tiles", n=n, k=k, tile=tile, dtype=str(dtype))
    marks = directory / "tiles"
    marks.mkdir(exist_ok=True)
    path = directory / _THETA
    nk = n * k
    if not path.exists():
        _create_memmap(path, (nk, nk), dtype)
    theta = np.load(path, mmap_mode="r+")
    blocks = _tile_slices(n, tile)
    pairs = [(a, b) for a in range(len(blocks)) for b in range(a, len(blocks))]
    computed = []
    bar = progress_bar(total=len(pairs), desc="NTK tiles", enable=progress, unit="tile")
    for a, b in pairs:
        rows, cols = slice(blocks[a].start * k, blocks[a].stop * k), \
            slice(blocks[b].start * k, blocks[b].stop * k)
        marker = marks / f"{a}_{b}.json"
        if marker.exists():
            want = json.loads(marker.read_text()).get("sha256")
            if want == _digest(theta[rows, cols]):
                bar.update(1)
                continue
        xa = jnp.asarray(pad_rows(x[blocks[a]], tile))
        xb = None if a == b else jnp.asarray(pad_rows(x[blocks[b]], tile))
        t = np.asarray(kernel_matrix(empirical_ntk(apply_fn, params, xa, xb, trace_axes=(),
                                                   memory_budget=memory_budget, mesh=mesh)))
        t = t[:rows.stop - rows.start, :cols.stop - cols.start].astype(dtype, copy=False)
        theta[rows, cols] = t
        if a != b:
            theta[cols, rows] = t.T
        theta.flush()
        if on_tile is not None:
            on_tile(a, b)
        atomic_write_bytes(marker, json.dumps({"sha256": _digest(t)}).encode())
        computed.append((a, b))
        bar.update(1)
    bar.close()
    del theta
    return KernelFile(np.load(path, mmap_mode="r"), n, k, tile, directory, computed)


def open_kernel(directory: str | os.PathLike) -> np.ndarray:
    """The stored Θ ``[nk, nk]`` as a read-only memmap (complete or not: check the markers)."""
    return np.load(Path(directory) / _THETA, mmap_mode="r")


def blocked_cholesky(theta: np.ndarray, shift: float, path: str | os.PathLike, rows: int
                     ) -> tuple[np.ndarray, float]:
    """Right-looking blocked Cholesky of ``A = Θ + shift·I`` into a float64 memmap at ``path``.

    Args:
      theta: ``[N, N]`` symmetric (memmap or array; only the lower block triangle is read).
      shift: added to the diagonal.
      path: file for the factor (overwritten).
      rows: rows per block (``tile·k``).

    Returns:
      ``(L, min_pivot)``: L ``[N, N]`` float64 memmap, lower triangular (its strict upper block
      triangle is zero and the upper triangles of the diagonal tiles are zeroed), and the
      smallest squared pivot ``min diag(L)²``.

    Raises:
      ValueError: A is not numerically positive definite (a non-positive pivot).
    """
    from scipy.linalg import cholesky, solve_triangular

    size = theta.shape[0]
    path = Path(path)
    _create_memmap(path, (size, size), np.float64)
    lo = np.load(path, mmap_mode="r+")
    sl = _tile_slices(size, rows)
    for i, si in enumerate(sl):  # A's lower block triangle, shifted, in float64
        lo[si, :si.stop] = np.asarray(theta[si, :si.stop], np.float64)
        lo[si, si] += shift * np.eye(si.stop - si.start)
    min_pivot = np.inf
    for j, sj in enumerate(sl):
        panel = np.array(lo[sj.start:, sj])  # [N − j·b, b]: column panel j
        w = sj.stop - sj.start
        try:
            ljj = cholesky(panel[:w], lower=True, check_finite=False)
        except np.linalg.LinAlgError as err:
            raise ValueError("blocked Cholesky: Θ + shift·I is not positive definite "
                             f"(block column {j})") from err
        if not np.all(np.isfinite(ljj)):
            raise ValueError(f"blocked Cholesky: non-finite factor in block column {j}")
        min_pivot = min(min_pivot, float(np.min(np.diag(ljj)) ** 2))
        below = solve_triangular(ljj, panel[w:].T, lower=True, check_finite=False).T
        lo[sj, sj] = ljj
        lo[sj.stop:, sj] = below
        for sl_ in sl[j + 1:]:  # trailing update, one block column at a time
            off = sl_.start - sj.stop
            r_l = below[off:off + sl_.stop - sl_.start]  # L_lj
            lo[sl_.start:, sl_] -= below[off:] @ r_l.T
        lo.flush()
    del lo
    return np.load(path, mmap_mode="r"), min_pivot


def cho_solve_blocked(chol: np.ndarray, rhs: np.ndarray, rows: int) -> np.ndarray:
    """``A⁻¹ B`` with ``A = LLᵀ`` from :func:`blocked_cholesky`.

    Args:
      chol: ``[N, N]`` lower factor (memmap). rhs: ``[N]`` or ``[N, r]``. rows: block rows.

    Returns:
      float64 array shaped like ``rhs``. One forward (``Ly = B``, row panels of L) and one
      backward (``Lᵀx = y``, column panels) substitution: at most ``N²r`` multiply-adds (the
      forward pass skips the leading block rows where B is zero, as for unit vectors).
    """
    from scipy.linalg import solve_triangular

    b = np.array(rhs, np.float64)
    vec = b.ndim == 1
    if vec:
        b = b[:, None]
    sl = _tile_slices(chol.shape[0], rows)
    nonzero = np.flatnonzero(np.any(b != 0, axis=1))
    first = sl[int(nonzero[0]) // rows].start if nonzero.size else chol.shape[0]
    for sj in sl:  # forward: y_j = L_jj⁻¹ (b_j − L_{j,<j} y_{<j}); rows above `first` stay 0
        if sj.stop <= first:
            continue
        if sj.start > first:
            b[sj] -= np.asarray(chol[sj, first:sj.start]) @ b[first:sj.start]
        b[sj] = solve_triangular(np.asarray(chol[sj, sj]), b[sj], lower=True,
                                 check_finite=False)
    for sj in reversed(sl):  # backward: x_j = L_jj⁻ᵀ (y_j − L_{>j,j}ᵀ x_{>j})
        if sj.stop < chol.shape[0]:
            b[sj] -= np.asarray(chol[sj.stop:, sj]).T @ b[sj.stop:]
        b[sj] = solve_triangular(np.asarray(chol[sj, sj]), b[sj], lower=True, trans="T",
                                 check_finite=False)
    return b[:, 0] if vec else b


def matmul_blocked(theta: np.ndarray, v: np.ndarray, rows: int) -> np.ndarray:
    """``Θ V`` in float64, streaming over row blocks of ``theta`` ``[N, N]``.

    v: ``[N]`` or ``[N, r]``. Returns float64 shaped like ``v``.
    """
    v = np.asarray(v, np.float64)
    out = np.empty((theta.shape[0],) + v.shape[1:], np.float64)
    for si in _tile_slices(theta.shape[0], rows):
        out[si] = np.asarray(theta[si], np.float64) @ v
    return out

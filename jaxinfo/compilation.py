"""JAX's persistent compilation cache, for notebooks and batch runs.

A first call of a jaxinfo function compiles its kernels (seconds on a CPU; often more than the
computation itself at small n). With the persistent cache on, compiled programs are written
to disk and a later process — a restarted notebook kernel, the next batch job — loads them
instead of compiling again. The ``jaxinfo`` command line turns it on; in a notebook call::

    import jaxinfo
    jaxinfo.enable_compilation_cache()          # ~/.cache/jaxinfo/xla, or $JAXINFO_CACHE_DIR

Within one process, jaxinfo avoids recompiling across hyperparameters: ``lr``, ``t`` and
``weight_decay`` of :class:`jaxinfo.GradientDescent` are traced values, and Lanczos step counts
are rounded up to a multiple of 16. A new problem size (n, k, P) still compiles once, unless
the samples are padded to a size bucket (``LOOSolver(pad_to="bucket")``: every n of a bucket
shares one compilation; ``docs/maths/sui.md``).
"""
from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["enable_compilation_cache"]


def enable_compilation_cache(directory: str | os.PathLike | None = None, *,
                             min_compile_time_secs: float = 0.0) -> Path:
    """Turns on JAX's persistent compilation cache and returns its directory.

    Args:
      directory: where compiled programs are stored (created if missing). Default:
        ``$JAXINFO_CACHE_DIR``, else ``~/.cache/jaxinfo/xla``.
      min_compile_time_secs: programs that compile faster than this are not stored.
    """
    if directory is None:
        directory = os.environ.get("JAXINFO_CACHE_DIR") or Path.home() / ".cache/jaxinfo/xla"
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory

"""Types and defaults shared by every module (one definition each)."""
from __future__ import annotations

from typing import Any, Callable

import jax

__all__ = ["ApplyFn", "DEFAULT_MEMORY_BUDGET"]

#: A network as a pure function of its parameters: ``apply_fn(params, x) -> [batch, *out]``.
ApplyFn = Callable[[Any, jax.Array], jax.Array]

#: Bytes that one block of work arrays may take (per-sample Jacobians for the NTK, per-chunk
#: Lanczos bases or eigenvectors for the leave-one-out engine). 1 GiB: safe on a free Colab GPU.
DEFAULT_MEMORY_BUDGET = 1024**3

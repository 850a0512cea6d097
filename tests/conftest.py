"""Shared test fixtures: float64 scope and the golden reference data."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from jax import enable_x64


def _golden_dir() -> Path:
    env = os.environ.get("JAXINFO_GOLDEN")
    candidates = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[1]
    candidates += [repo / "shared" / "golden" / "sui_reference",
                   repo.parent / "shared" / "golden" / "sui_reference"]
    for c in candidates:
        if (c / "inputs.npz").exists():
            return c
    raise FileNotFoundError(
        "golden SUI reference data not found; looked in " + ", ".join(map(str, candidates)) +
        " (set JAXINFO_GOLDEN to the sui_reference folder)")


@pytest.fixture(scope="session")
def golden():
    """Loader for ``shared/golden/sui_reference/<name>.npz`` (dict of numpy arrays)."""
    root = _golden_dir()

    def load(name: str) -> dict:
        with np.load(root / f"{name}.npz") as f:
            return {k: f[k] for k in f.files}

    return load


@pytest.fixture
def x64():
    """Runs the test with float64 enabled (restored afterwards)."""
    with enable_x64(True):
        yield

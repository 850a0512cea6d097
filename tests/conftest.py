"""Shared test fixtures: float64 scope and the golden reference data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from jax import enable_x64


DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def golden():
    """Loader for ``tests/data/sui_reference/<name>.npz`` (dict of numpy arrays).

    The official SUI implementation's test vectors; provenance and licence in that folder's
    README.
    """
    root = DATA / "sui_reference"

    def load(name: str) -> dict:
        with np.load(root / f"{name}.npz") as f:
            return {k: f[k] for k in f.files}

    return load


@pytest.fixture
def x64():
    """Runs the test with float64 enabled (restored afterwards)."""
    with enable_x64(True):
        yield

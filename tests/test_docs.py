"""The documentation site builds (mkdocs, strict) and the repository stands on its own.

``mkdocs build --strict`` fails on broken links between pages and on griffe warnings in the
API reference (e.g. a docstring that documents a parameter the function does not have).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Text that points outside the repository: a user's clone has neither (spelled in two parts so
# that this file does not match itself).
FORBIDDEN = ("DESIGN" + ".md", "../" + "sha" + "red")


def test_docs_build_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]', or run `make test`, "
                    "which installs the docs extra)")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(REPO / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    site = tmp_path / "site"
    for page in ("index.html", "maths/sui/index.html", "api/sui/index.html"):
        assert (site / page).is_file(), page
    # the maths is rendered by MathJax from arithmatex's generic markup
    assert 'class="arithmatex"' in (site / "maths" / "sui" / "index.html").read_text()


def test_no_tracked_file_points_outside_the_repository():
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout (git ls-files unavailable)")
    files = subprocess.run([git, "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    hits = []
    for name in filter(None, files):
        path = REPO / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):  # binary data
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            hits += [f"{name}:{lineno}: {s!r}" for s in FORBIDDEN if s in line]
    assert not hits, "tracked files mention files outside the repository:\n" + "\n".join(hits)

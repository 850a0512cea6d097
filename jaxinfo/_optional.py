"""Optional dependencies, imported lazily with a message that says how to install them."""
from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Iterable

__all__ = ["require", "progress_bar"]

_EXTRAS = {
    "sklearn": ("scikit-learn", "data"),
    "mlxtend": ("mlxtend", "data"),
    "tensorflow_datasets": ("tensorflow-datasets", "data"),
    "matplotlib": ("matplotlib", "plots"),
    "tqdm": ("tqdm", "all"),
    "orbax.checkpoint": ("orbax-checkpoint", "all"),
    "numba": ("numba", "fast"),
}


def require(module: str, purpose: str) -> ModuleType:
    """Imports ``module`` or raises ``ImportError`` naming the package and the jaxinfo extra."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        pkg, extra = _EXTRAS.get(module, _EXTRAS.get(top, (top, "all")))
        raise ImportError(f"{purpose} needs the optional package {pkg!r}: "
                          f"pip install {pkg}  (or pip install 'jaxinfo[{extra}]')") from e


class _NoBar:
    def __init__(self, iterable=None, **_):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def update(self, _n=1):
        pass

    def close(self):
        pass


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 enable: bool = True, unit: str = "it"):
    """A tqdm bar (or a silent stand-in when disabled or when tqdm is not installed).

    When standard error is not a terminal or a notebook (a log file, a batch job), the bar
    redraws at most every 30 s instead of at every step.
    """
    if not enable:
        return _NoBar(iterable)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar(iterable)
    interactive = ("ipykernel" in sys.modules
                   or (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()))
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False,
                mininterval=0.1 if interactive else 30.0)

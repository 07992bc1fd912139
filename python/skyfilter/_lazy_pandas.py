"""Keeps pandas out of the console script's start-up.

pyarrow imports pandas at its first conversion of any Python value (``pa.scalar(0)``, ``pa.array`` of a list or
of a numpy array), only to ask whether the value is a pandas object. That import is 0.15-0.2 s on a 2-core
machine, a third of a short command's run, and the commands never hand pyarrow a pandas object.

:func:`defer_pandas` lets that first question find no pandas. pyarrow remembers the answer for its implicit
checks, and still imports pandas where a pandas feature is asked for by name (``to_pandas``, ``from_pandas``). If
anything in the process imports pandas later (``datasets`` for a hub dataset, Ray Data), pyarrow is made to look
again as soon as that import finishes, so that from then on pandas objects convert exactly as they would have.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from importlib.abc import Loader, MetaPathFinder

import pyarrow as pa


class _Absent(MetaPathFinder):
    """``import pandas`` fails while this finder is first on the path."""

    def find_spec(self, name, path=None, target=None):
        if name == "pandas":
            raise ImportError("pandas is deferred while pyarrow first looks for it")
        return None


class _LookAgain(MetaPathFinder):
    """When pandas is first imported, wraps its loader so that pyarrow looks for it once it is loaded."""

    def find_spec(self, name, path=None, target=None):
        if name != "pandas":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenTellPyarrow(spec.loader)
        return spec


class _ThenTellPyarrow(Loader):
    """pandas' own loader, followed by a call that makes pyarrow import pandas for its implicit checks."""

    def __init__(self, loader: Loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        module.__loader__ = module.__spec__.loader = self._loader
        # A pandas feature asked for by name: pyarrow imports pandas again. One that pyarrow refuses (too old)
        # raises here, and pyarrow goes on without it, as it would have.
        with contextlib.suppress(Exception):
            pa.Schema.from_pandas(module.DataFrame())


def defer_pandas() -> None:
    """Lets pyarrow's first implicit look for pandas find none (see the module's text); nothing when pandas is
    already imported."""
    if "pandas" in sys.modules:
        return
    absent = _Absent()
    sys.meta_path.insert(0, absent)
    try:
        pa.scalar(0)  # pyarrow's first conversion: it looks for pandas here, once
    finally:
        sys.meta_path.remove(absent)
    sys.meta_path.insert(0, _LookAgain())

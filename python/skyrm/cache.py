"""skyrm's cache folder: ``--cache-dir``, else ``$SKYRM_CACHE``, else ``$XDG_CACHE_HOME/skyrm`` (``~/.cache/skyrm``).

It holds the tokenised pairs (``tokenized/``, :mod:`skyrm.token_cache`) and SmolLM2 converted from its GGUF file
(``models/``, :mod:`skyrm.smollm2`). Nothing in it is removed by skyrm: delete a folder to reclaim its space.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root(cache_dir: str | None = None) -> Path:
    """The cache folder (module docstring)."""
    if cache_dir:
        return Path(cache_dir)
    if os.environ.get("SKYRM_CACHE"):
        return Path(os.environ["SKYRM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skyrm"

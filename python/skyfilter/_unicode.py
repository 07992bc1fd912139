"""The running interpreter's Unicode character classes, for the Rust tokenizers.

The ``words`` preset reproduces scikit-learn's token pattern ``(?u)\\b\\w\\w+\\b`` over ``str.lower()``, so it
must agree with this interpreter's ``re`` and ``str.lower`` on every code point; their Unicode version (14 in
Python 3.11, 15 in 3.12, 15.1 in 3.13) is not the Rust core's (16). ``skyfilter._core`` calls
:func:`character_classes` once, before it first tokenizes, and tokenizes with these answers from then on.
"""

from __future__ import annotations

import re

import numpy as np

_CODE_POINTS = 0x110000
_SURROGATES = range(0xD800, 0xE000)
_CHUNK = 4096


def _all_code_points() -> str:
    """Every code point in order, surrogates (which no text holds) replaced by a space: index = code point."""
    points = np.arange(_CODE_POINTS, dtype=np.uint32)
    points[_SURROGATES.start : _SURROGATES.stop] = ord(" ")
    return points.astype("<u4").tobytes().decode("utf-32-le")


def _word_ranges(text: str) -> list[tuple[int, int]]:
    """Half-open code point ranges of the characters ``re`` matches with ``\\w``."""
    return [m.span() for m in re.finditer(r"\w+", text)]


def _lowercase(text: str) -> list[tuple[int, str]]:
    """Every code point whose ``str.lower()`` is not itself, with that form (out of context). Chunks that lower-case
    to as many characters and hold no capital sigma (whose form depends on its neighbours) are compared as
    arrays; the others a character at a time."""
    out = []
    for start in range(0, len(text), _CHUNK):
        chunk = text[start : start + _CHUNK]
        lowered = chunk.lower()
        if len(lowered) == len(chunk) and "\u03a3" not in chunk:
            a = np.frombuffer(chunk.encode("utf-32-le"), dtype="<u4")
            b = np.frombuffer(lowered.encode("utf-32-le"), dtype="<u4")
            changed = np.flatnonzero(a != b).tolist()
        else:
            changed = range(len(chunk))
        out.extend((start + i, chunk[i].lower()) for i in changed if chunk[i].lower() != chunk[i])
    return out


def character_classes() -> tuple[list[tuple[int, int]], list[tuple[int, str]]]:
    """This interpreter's word characters (half-open code point ranges) and lower-case forms (code point, form)
    of every code point that changes."""
    text = _all_code_points()
    return _word_ranges(text), _lowercase(text)

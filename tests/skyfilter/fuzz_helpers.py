"""The machinery of the fuzz suites of ``skyfilter._core`` (``test_fuzz_core*.py``): the hypothesis profiles, the
strategies for texts and for Arrow arrays in every layout a kernel accepts or refuses, parameters at their bounds,
and :func:`attempt`, which runs one kernel call under a deadline and sorts what happened.

Outcomes. A call on an input the reference accepts must return the reference's result. A call on an input the
reference refuses (:class:`Refused`) must raise, and only:

* ``_core.SkyfilterError`` for bad data or parameter values (``kind="data"``), its subclass ``InvalidTextError``
  naming the row for a text that is not UTF-8 (``kind="text"``);
* ``TypeError``, ``OverflowError`` or ``ValueError`` (``SkyfilterError`` is one) for a Python argument of the wrong
  type or out of the range of its Rust type (``kind="argument"``): pyo3's conversions raise these, before the
  kernel runs; a ``str`` holding a lone surrogate is one (``UnicodeEncodeError``);
* ``OSError`` for a file that cannot be opened.

Anything else is a finding: a ``SkyfilterError`` that reports a caught panic ("internal error in
skyfilter._core"), pyo3's ``PanicException``, any other exception type, any ``BaseException`` that is not an
``Exception``, a result where an error was due or the other way round, a wrong result, and a call that outlives the
deadline (``faulthandler`` then dumps every thread's stack and ends the process: the test and line are in the dump).

Profiles. ``skyfilter-fuzz-ci`` (the default, what CI runs): each test's own small number of examples,
derandomized (the same cases every run), no database. ``skyfilter-fuzz-long``, chosen by the environment variable
``SKYFILTER_FUZZ_EXAMPLES=N``: ``N`` examples per test, random, with the example database in
``.hypothesis/fuzz-core`` so that a failure found once replays first in every later run. ``SKYFILTER_FUZZ_TRACE``
names a file that each call overwrites with its kernel and arguments, for a crash that ends the interpreter.
"""

from __future__ import annotations

import contextlib
import faulthandler
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from skyfilter import _core

# -------------------------------------------------------------------------------------------- profiles

LONG_EXAMPLES = int(os.environ.get("SKYFILTER_FUZZ_EXAMPLES", "0") or 0)
DEADLINE_S = float(os.environ.get("SKYFILTER_FUZZ_DEADLINE", "120"))
TRACE = os.environ.get("SKYFILTER_FUZZ_TRACE")
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                 HealthCheck.large_base_example]  # fmt: skip

settings.register_profile(
    "skyfilter-fuzz-ci", deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
)  # fmt: skip
settings.register_profile(
    "skyfilter-fuzz-long", deadline=None, derandomize=False, max_examples=max(LONG_EXAMPLES, 1), print_blob=True,
    database=DirectoryBasedExampleDatabase(Path(__file__).resolve().parents[2] / ".hypothesis" / "fuzz-core"),
    suppress_health_check=_SLOW_IS_FINE,
)  # fmt: skip


def fuzz(examples: int, long_share: float = 1.0) -> settings:
    """The settings of a fuzz test: ``examples`` cases in the CI profile; in the long one ``SKYFILTER_FUZZ_EXAMPLES``
    times ``long_share`` (less than 1 for a test whose case costs seconds, as rows of megabytes do)."""
    if LONG_EXAMPLES:
        long = settings.get_profile("skyfilter-fuzz-long")
        return settings(long, max_examples=max(1, round(LONG_EXAMPLES * long_share)))
    return settings(settings.get_profile("skyfilter-fuzz-ci"), max_examples=examples)


# -------------------------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Refused:
    """The reference's word that an input must be refused: ``kind`` is ``"data"``, ``"text"`` (with the ``row``
    the InvalidTextError names) or ``"argument"`` (see the module docstring)."""

    kind: str
    row: int | None = None


ARGUMENT_ERRORS = (TypeError, OverflowError, ValueError)


def _describe(x) -> str:
    if isinstance(x, pa.Array):
        return f"{x.type}[{len(x)}] offset={x.offset} nulls={x.null_count}"
    text = repr(x)
    return text if len(text) <= 200 else f"{text[:200]}... ({len(text)} characters)"


@contextlib.contextmanager
def deadline(what: str = ""):
    """Ends the process with every thread's stack if the block outlives ``DEADLINE_S`` (a hang is a finding)."""
    if TRACE:
        Path(TRACE).write_text(what + "\n")
    faulthandler.dump_traceback_later(DEADLINE_S, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def attempt(call, *args, **kwargs) -> tuple[bool, object]:
    """``(True, result)`` or ``(False, exception)`` of an accepted kind; any other outcome fails the test."""
    what = " ".join([getattr(call, "__qualname__", repr(call)), *map(_describe, args)])
    what += "".join(f" {k}={_describe(v)}" for k, v in kwargs.items())
    try:
        with deadline(what):
            return True, call(*args, **kwargs)
    except (OSError, *ARGUMENT_ERRORS) as e:
        assert "internal error in skyfilter._core" not in str(e), f"a panic: {e!r} in {what}"
        return False, e
    except Exception as e:  # a finding: re-raised with the call
        raise AssertionError(
            f"{type(e).__module__}.{type(e).__name__} is not an accepted error: {e!r} in {what}"
        ) from e
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        raise AssertionError(f"{type(e).__name__} (not an Exception: a panic?) {e!r} in {what}") from e


def check(expected, call, *args, **kwargs):
    """Runs ``call``; if ``expected`` is :class:`Refused`, asserts the refusal is of its kind and returns the error;
    otherwise asserts a result came back and returns it (the caller compares it with ``expected``)."""
    ok, got = attempt(call, *args, **kwargs)
    if not isinstance(expected, Refused):
        assert ok, f"refused an input the reference accepts: {got!r}"
        return got
    assert not ok, f"accepted an input the reference refuses ({expected}): {got!r}"
    if expected.kind == "data":
        assert isinstance(got, _core.SkyfilterError), repr(got)
    elif expected.kind == "text":
        assert isinstance(got, _core.InvalidTextError) and got.args[1] == expected.row, (repr(got), expected)
    else:
        assert isinstance(got, ARGUMENT_ERRORS), repr(got)
    return got


def first_refusal(*outcomes):
    """The first of ``outcomes`` that is a :class:`Refused`, else None (arguments are converted in order)."""
    return next((o for o in outcomes if isinstance(o, Refused)), None)


# ---------------------------------------------------------------------------------------- parameters

U64 = 2**64
NOT_INT = [1.5, "3", None, [1]]


def unsigned(low: int, high: int) -> st.SearchStrategy:
    """A usize / u64 argument around a kernel's valid range ``low..=high``: the bounds, one past each, 0, 1, powers of
    two up to and past 2^64, negatives, and now and then a value of another Python type."""
    edges = [0, 1, low, high, max(low - 1, 0), high + 1, 2**31, 2**32, 2**63, U64 - 1, U64, 2**100, -1, -(2**70)]
    return st.one_of(
        st.sampled_from(edges),
        st.integers(low, min(high, low + 64)),
        st.integers(0, 2**64 + 5),
        st.sampled_from(NOT_INT),
    )


def as_unsigned(x) -> int | Refused:
    """What pyo3 makes of ``x`` for a usize / u64 parameter."""
    if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < U64:
        return Refused("argument")
    return x


FLOAT_EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, 1 + 2**-52, 1 - 2**-53, 5e-324, -5e-324, 1e308, -1e308, math.inf,
               -math.inf, math.nan]  # fmt: skip


def real() -> st.SearchStrategy:
    """An f64 argument: the edges (signed zeros, infinities, NaN, subnormals, neighbours of 1) and any float."""
    return st.one_of(st.sampled_from(FLOAT_EDGES), st.floats(allow_nan=True, allow_infinity=True))


def float_arrays(n: int, nan: bool = True) -> st.SearchStrategy:
    """``n`` float64 values (or nulls) at the edges or anywhere."""
    value = st.one_of(st.none(), real()) if nan else st.one_of(st.none(), st.floats(-1e6, 1e6))
    return st.lists(value, min_size=n, max_size=n)


def floats_of(values: list[float | None]) -> list[float]:
    """The values a kernel reads: a null is NaN."""
    return [math.nan if v is None else v for v in values]


# ---------------------------------------------------------------------------------------------- texts

# A character from each of the 17 planes (surrogates, which no str holds in Arrow, excepted).
PLANE_CHAR = (
    st.integers(0, 16)
    .flatmap(
        lambda plane: st.integers(plane << 16, (plane << 16) | 0xFFFF).filter(lambda cp: not 0xD800 <= cp < 0xE000)
    )
    .map(chr)
)
# Case mappings that change length or depend on context, numbers and letters \w takes, marks and spaces it does not,
# whitespace of str.isspace (ASCII separators 0x1c-0x1f, NEL, NBSP, em and ideographic spaces), noncharacters, the
# last code point, and a letter newer than this interpreter (U+A7CB, Unicode 16).
TRICKY = ["İ", "ΣΑΣ", "Σ", "ς", "ß", "ẞ", "ﬁ", "ǅ", "½", "²", "Ⅻ", "٣", "_", "a", "I", "x", "--", "...", "'s", "\u0301",
          "\u200b", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u2003", "\u3000", "\ufffe",
          "\uffff", "\U0010ffff", "\U000e0001", "\ua7cb", "\u0264", "\U0001f600", "ÉTÉ", "\x00"]  # fmt: skip
# A small vocabulary, so that texts share n-grams and shingles.
VOCAB = ["aa", "bb", "cc", "Dd", "éé", "the", "QUICK", "fox", "x", "42"]
SEPARATORS = [" ", " ", " ", "", "  ", "\n", "\t", ", ", "\u3000"]

piece = st.one_of(
    st.sampled_from(VOCAB), st.sampled_from(VOCAB), st.sampled_from(TRICKY), PLANE_CHAR, st.text(max_size=6)
)
text = st.lists(st.tuples(piece, st.sampled_from(SEPARATORS)), max_size=14).map(
    lambda ps: "".join(a + b for a, b in ps)
)
# Bytes that are not UTF-8: a lone continuation byte, a truncated sequence, an encoded surrogate, a code point past
# U+10FFFF, an overlong form, 0xff; after a valid prefix or alone.
INVALID = [b"\xff", b"\x80\x80", b"ab\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80" * 9]
invalid_text = st.tuples(text, st.sampled_from(INVALID), text).map(lambda t: t[0].encode() + t[1] + t[2].encode())


def values(invalid: bool = True, max_size: int = 12, deep: bool = True, size: int | None = None):
    """Text values (None, str, or bytes that are not UTF-8 when ``invalid``): few, none, or (``deep``) hundreds;
    exactly ``size`` if given."""
    value = st.one_of(st.none(), text, text, st.just(""), invalid_text) if invalid else st.one_of(st.none(), text)
    if size is not None:
        return st.lists(value, min_size=size, max_size=size)
    few = st.lists(value, max_size=max_size)
    if not deep:
        return few
    many = st.tuples(st.lists(value, min_size=1, max_size=4), st.integers(50, 400)).map(lambda t: t[0] * t[1])
    return st.one_of(few, few, few, many)


STRING_KINDS = ["string", "large_string", "string_view"]
_BYTES_OF = {"string": pa.binary(), "large_string": pa.large_binary(), "string_view": pa.binary_view()}


def _type(kind: str) -> pa.DataType:
    return {"string": pa.string(), "large_string": pa.large_string(), "string_view": pa.string_view()}[kind]


@dataclass
class Column:
    """An Arrow array and the values a kernel sees in it (``str``, ``bytes`` that are not UTF-8, or None); ``kind``
    says whether a string kernel must take it (``accepted``)."""

    array: object
    values: list
    kind: str
    accepted: bool

    def refusal(self) -> Refused | None:
        """How a string kernel refuses this column: pyo3 takes no chunked array or list (``argument``), the kernel no
        other type (``data``)."""
        if self.accepted:
            return None
        return Refused("argument" if self.kind in ("chunked", "pylist") else "data")

    def first_invalid(self, rows=None) -> int | None:
        """The first row (among ``rows``, all by default) whose value is bytes that are not UTF-8."""
        rows = range(len(self.values)) if rows is None else rows
        return next((r for r in rows if isinstance(self.values[r], bytes)), None)


def encode(v) -> bytes | None:
    return v.encode() if isinstance(v, str) else v


@st.composite
def columns(draw, vals: st.SearchStrategy | None = None, refused: bool = True) -> Column:
    """The values as a string array of each type (utf8, large_utf8, string_view: built as bytes, so that they may
    hold invalid UTF-8), plain or sliced out of a longer array (whose other rows are not UTF-8, long or null), all
    nulls as Arrow's null type, or (``refused``) as a type no string kernel takes: binary, int64, a list, a chunked
    array, a Python list."""
    vs = draw(vals if vals is not None else values())
    kinds = STRING_KINDS + (["binary", "int64", "list", "chunked", "pylist"] if refused else [])
    if all(v is None for v in vs):
        kinds.append("null")
    kind = draw(st.sampled_from(kinds))
    if kind == "null":
        return Column(pa.nulls(len(vs)), vs, kind, True)
    if kind == "int64":
        return Column(pa.array(range(len(vs)), pa.int64()), vs, kind, False)
    if kind == "list":
        return Column(pa.array([[encode(v)] for v in vs], pa.list_(pa.binary())), vs, kind, False)
    if kind == "pylist":
        return Column(vs, vs, kind, False)
    data = [encode(v) for v in vs]
    if kind == "binary":
        return Column(pa.array(data, pa.binary()), vs, kind, False)
    if kind == "chunked":
        return Column(pa.chunked_array([pa.array(data, pa.binary()).view(pa.string())], pa.string()), vs, kind, False)
    junk = st.sampled_from([None, b"\xff\xfe", b"y" * 40, b""])
    before, after = draw(st.lists(junk, max_size=3)), draw(st.lists(junk, max_size=3))
    array = pa.array(before + data + after, _BYTES_OF[kind]).view(_type(kind))
    if before or after:
        array = array.slice(len(before), len(data))
    return Column(array, vs, kind, True)


# --------------------------------------------------------------------------------------------- bounds


@st.composite
def row_bounds(draw, n_texts: int):
    """Row bounds over ``n_texts`` texts and what they mean: ``(None, [[0], [1], ...])`` (a text per row); an int64
    array of non-decreasing offsets (rows of no text, one, or all; not necessarily from 0 or to the end) with the
    rows' text indices; or a bad array (decreasing, negative, past the texts, empty, with nulls, of another type) and
    ``Refused("data")``."""
    how = draw(st.sampled_from(["none", "valid", "valid", "valid", "bad"]))
    if how == "none":
        return None, [[t] for t in range(n_texts)]
    if how == "valid":
        cuts = sorted(draw(st.lists(st.integers(0, n_texts), min_size=1, max_size=n_texts + 3)))
        array = pa.array(cuts, pa.int64())
        if draw(st.booleans()):
            array = pa.array([99, *cuts, -5], pa.int64()).slice(1, len(cuts))
        return array, [list(range(a, b)) for a, b in zip(cuts, cuts[1:], strict=False)]
    bad = draw(st.sampled_from(["decreasing", "negative", "past", "empty", "nulls", "int32", "uint64", "float"]))
    cuts = sorted(draw(st.lists(st.integers(0, n_texts), min_size=2, max_size=n_texts + 3)))
    if bad == "decreasing":
        if cuts[0] == cuts[-1]:
            cuts[-1] += 1
        cuts = cuts[::-1]
    elif bad == "negative":
        cuts[0] = draw(st.sampled_from([-1, -(2**63)]))
    elif bad == "past":
        cuts[-1] = n_texts + draw(st.sampled_from([1, 2**40, 2**63 - 1 - n_texts]))
    elif bad == "empty":
        cuts = []
    if bad in ("nulls",):
        return pa.array([*cuts[:-1], None], pa.int64()), Refused("data")
    dtype = {"int32": pa.int32(), "uint64": pa.uint64(), "float": pa.float64()}.get(bad, pa.int64())
    return pa.array(cuts, dtype), Refused("data")

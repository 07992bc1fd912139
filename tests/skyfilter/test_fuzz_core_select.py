"""Fuzzing ``skyfilter._core``, part 2: selection kernels, string views, group ids, parquet input and the module's
surface, against the pure-Python references (tests/skyfilter/reference.py) and pyarrow; the outcomes allowed, the
profiles and the deadline are in tests/skyfilter/fuzz_helpers.py, part 1 is test_fuzz_core.py.

Entry points fuzzed here, with what:

* ``row_reasons(rows, score=, offset=, chosen=, rejected=, rm_chosen=, rm_rejected=, *_bounds=, rm_agreement=)``:
  columns of NaN, infinities, signed zeros and nulls, of the wrong length or type, missing where a rule needs them;
  bounds of every edge; row counts of 0, one off, 2^50, 2^64 - 1, negative.
* ``top_fraction(reasons, scores, groups, fractions, threads=)``: any codes, ties (-0.0 with 0.0), NaN scores,
  fractions of 0, 1, just past them, NaN, groups without a fraction, nulls and other types.
* ``length_ratio_fails(chosen, rejected, chosen_bounds=, rejected_bounds=, only=, min=, max=, threads=)``: texts of
  every layout and of bytes that are not UTF-8, turns as bounds, ratio bounds of every edge.
* ``segment_means(values, bounds)``: NaN, infinities, nulls, empty rows, bad bounds.
* ``string_views(array, rows)`` and ``string_rows(array, rows)``: every string layout, rows repeated, out of range,
  null, of another type.
* ``GroupIds()``, ``encode(values, threads=)``, ``names()``: several batches, nulls, over 4096 rows (parts numbered
  in parallel), values that are not UTF-8 (refused, nothing numbered).
* ``ParquetBatches(path, columns, batch_rows=, threads=, views=, row_groups=)``: files written by pyarrow from
  fuzzed tables (strings with nulls and every plane, large strings, deep and empty message lists, floats, every
  compression, row groups of 1 row up), columns named in any order, twice, unknown, none; batch sizes 0 up; row
  group ranges in and out of the file; missing, truncated, corrupted and non-parquet files.
* ``_panic``, ``SELECT_REASONS``, ``__version__``, and a check that no entry point of the module goes unfuzzed.
"""

from __future__ import annotations

import math
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from skyfilter import _core

from tests.skyfilter.fuzz_helpers import (
    Refused,
    as_unsigned,
    attempt,
    check,
    columns,
    deadline,
    encode,
    first_refusal,
    float_arrays,
    floats_of,
    fuzz,
    real,
    row_bounds,
    text,
    unsigned,
    values,
)
from tests.skyfilter.reference import (
    REASONS,
    characters,
    length_ratio,
    reference_row_reasons,
    reference_top_fraction,
    segment_mean,
    within,
)


def same_floats(got: list[float | None], expected: list[float]) -> bool:
    """Bit for bit, NaN equal to NaN (of any payload)."""
    key = [(math.isnan(x), 0.0 if math.isnan(x) else x, math.copysign(1, x)) for x in expected]
    return [(math.isnan(x), 0.0 if math.isnan(x) else x, math.copysign(1, x)) for x in got] == key


bound = st.one_of(st.none(), real())
bounds_pair = st.one_of(st.none(), st.tuples(bound, bound), st.just(("1", None)))


def pair_refusal(pair) -> Refused | None:
    if pair is None:
        return None
    return None if all(v is None or isinstance(v, float) for v in pair) else Refused("argument")


COLUMNS = ["score", "offset", "chosen", "rejected", "rm_chosen", "rm_rejected"]


@fuzz(150)
@given(
    n=st.integers(0, 12),
    given_columns=st.sets(st.sampled_from(COLUMNS)),
    chosen_bounds=bounds_pair,
    rejected_bounds=bounds_pair,
    margin_bounds=bounds_pair,
    rm_agreement=st.booleans(),
    rows=st.sampled_from(["n", "n", "n", "n+1", "n-1", "huge", "max", "negative"]),
    data=st.data(),
)
def test_row_reasons(n, given_columns, chosen_bounds, rejected_bounds, margin_bounds, rm_agreement, rows, data):
    raw = {c: data.draw(float_arrays(n)) for c in given_columns}
    arrays = {c: pa.array(v, pa.float64()) for c, v in raw.items()}
    bad_type = data.draw(st.sampled_from([None] * 8 + sorted(given_columns)))
    if bad_type is not None:
        arrays[bad_type] = arrays[bad_type].cast(pa.float32())
    count = {"n": n, "n+1": n + 1, "n-1": n - 1, "huge": 2**50, "max": 2**64 - 1, "negative": -3}[rows]
    cols = {c: floats_of(v) for c, v in raw.items()}
    pairs = (chosen_bounds, rejected_bounds, margin_bounds)
    expected = first_refusal(as_unsigned(count), *map(pair_refusal, pairs))
    expected = expected or (Refused("data") if bad_type is not None else None)
    expected = expected or (Refused("data") if given_columns and count != n else None)
    needs = set()
    if chosen_bounds not in (None, (None, None)) or margin_bounds not in (None, (None, None)):
        needs.add("chosen")
    if rejected_bounds not in (None, (None, None)) or margin_bounds not in (None, (None, None)):
        needs.add("rejected")
    if rm_agreement:
        needs |= {"rm_chosen", "rm_rejected"}
    expected = expected or (Refused("data") if needs - given_columns else None)
    expected = expected or (Refused("data") if count >= 2**40 else None)  # no memory holds the codes
    kwargs = dict(chosen_bounds=chosen_bounds, rejected_bounds=rejected_bounds, margin_bounds=margin_bounds)
    got = check(expected, _core.row_reasons, count, **arrays, **kwargs, rm_agreement=rm_agreement)
    if expected is not None:
        return
    codes, adjusted = reference_row_reasons(count, cols, *pairs, rm_agreement)
    assert got[0].type == pa.uint8() and got[0].to_pylist() == codes
    if adjusted is None:
        assert got[1] is None
    else:
        assert same_floats(got[1].to_pylist(), adjusted)


@fuzz(150)
@given(
    n=st.integers(0, 30),
    fractions=st.lists(
        st.one_of(st.sampled_from([0.0, -0.0, 1.0, 0.5, 0.3, 1 + 2**-52, -(2**-1074)]), st.floats(0, 1), real()),
        max_size=4,
    ),  # fmt: skip
    threads=unsigned(0, 4),
    layout=st.sampled_from(["ok", "ok", "ok", "reasons null", "reasons int", "scores f32", "groups null", "short"]),
    data=st.data(),
)
def test_top_fraction(n, fractions, threads, layout, data):
    reasons = data.draw(st.lists(st.one_of(st.just(0), st.just(0), st.integers(0, 255)), min_size=n, max_size=n))
    scores = data.draw(
        st.lists(st.one_of(st.none(), st.sampled_from([0.0, -0.0, 1.0, math.nan, -math.inf]), real()),
                 min_size=n, max_size=n)
    )  # fmt: skip
    groups = data.draw(st.lists(st.integers(0, len(fractions)), min_size=n, max_size=n))
    r = pa.array(reasons, pa.uint8())
    s = pa.array(scores, pa.float64())
    g = pa.array(groups, pa.uint32())
    if layout == "reasons null":
        r = pa.array([None, *reasons], pa.uint8()).slice(1) if data.draw(st.booleans()) else pa.array([*reasons, None])
    elif layout == "reasons int":
        r = r.cast(pa.int16())
    elif layout == "scores f32":
        s = pa.array(scores, pa.float32())
    elif layout == "groups null":
        g = pa.array([*groups, None], pa.uint32())
    elif layout == "short":
        s = pa.array([*scores, 1.0], pa.float64())
    expected = first_refusal(as_unsigned(threads))
    # A sliced-off null is no null: the slice was made to test the offset, not to be refused.
    expected = expected or (None if layout in ("ok",) or (layout == "reasons null" and r.null_count == 0)
                            else Refused("data"))  # fmt: skip
    bad_fraction = any(not 0.0 <= f <= 1.0 for f in fractions)
    expected = expected or (Refused("data") if bad_fraction or any(x >= len(fractions) for x in groups) else None)
    got = check(expected, _core.top_fraction, r, s, g, fractions, threads=threads)
    if expected is None:
        assert got.to_pylist() == reference_top_fraction(reasons, floats_of(scores), groups, fractions)


@fuzz(150)
@given(n=st.integers(0, 8), low=bound, high=bound, threads=unsigned(0, 4), data=st.data())
def test_length_ratio_fails(n, low, high, threads, data):
    chosen, rejected = data.draw(columns(values(size=n))), data.draw(columns(values(size=n)))
    turns = data.draw(st.sampled_from(["none", "both", "same"]))
    cb, c_rows = (None, [[t] for t in range(n)]) if turns == "none" else data.draw(row_bounds(n))
    rb, r_rows = (cb, c_rows) if turns != "both" else data.draw(row_bounds(n))
    rows = None if isinstance(c_rows, Refused) else len(c_rows)
    only_kind = data.draw(st.sampled_from(["none", "flags", "flags", "short", "null", "int"]))
    size = (rows or 0) + (1 if only_kind == "short" else 0)
    flags = data.draw(st.lists(st.booleans(), min_size=size, max_size=size))
    only = {
        "none": None,
        "flags": pa.array(flags, pa.bool_()),
        "short": pa.array(flags, pa.bool_()),
        "null": pa.array([*flags, None], pa.bool_()),
        "int": pa.array([int(f) for f in flags], pa.int8()),
    }[only_kind]
    expected = first_refusal(
        Refused("argument") if "pylist" in (chosen.kind, rejected.kind) or "chunked" in (chosen.kind, rejected.kind)
        else None,
        as_unsigned(threads),
    )  # fmt: skip
    expected = expected or first_refusal(chosen.refusal(), rejected.refusal())
    expected = expected or first_refusal(*(b for b in (c_rows, r_rows) if isinstance(b, Refused)))
    expected = expected or (Refused("data") if only_kind in ("null", "int") else None)
    expected = expected or (Refused("data") if len(c_rows) != len(r_rows) else None)
    expected = expected or (Refused("data") if only_kind == "short" else None)
    got = check(expected, _core.length_ratio_fails, chosen.array, rejected.array, chosen_bounds=cb, rejected_bounds=rb,
                only=only, min=low, max=high, threads=threads)  # fmt: skip
    if expected is not None:
        return
    want = []
    for r in range(len(c_rows)):
        c = sum(characters(encode(chosen.values[t])) for t in c_rows[r])
        j = sum(characters(encode(rejected.values[t])) for t in r_rows[r])
        want.append((only is None or flags[r]) and not within(length_ratio(c, j), (low, high)))
    assert got.to_pylist() == want


def test_length_ratio_counts_runs_of_continuation_bytes_as_a_quarter_of_their_bytes():
    """Found by fuzzing: 8 continuation bytes (not UTF-8) counted as 0 characters, yet the rule settled the row by
    its byte counts (8 and 2, both within the bounds) and never checked the ratio of the counts, 0. Characters are
    now at least a quarter of the bytes, which valid UTF-8 always has: the settling holds for any bytes."""
    chosen = pa.array([b"\x80" * 8, b"ab"], pa.binary()).view(pa.string())
    rejected = pa.array(["a", "a"])
    assert _core.length_ratio_fails(chosen, rejected, min=1.0, max=10.0).to_pylist() == [False, False]
    assert _core.length_ratio_fails(chosen, rejected, min=2.5, max=10.0).to_pylist() == [True, True]
    assert characters(b"\x80" * 8) == 2 and characters("é😀".encode()) == 2


@fuzz(200)
@given(n=st.integers(0, 20), data=st.data())
def test_segment_means(n, data):
    raw = data.draw(float_arrays(n))
    bounds, rows = data.draw(row_bounds(n))
    kind = data.draw(st.sampled_from(["f64", "f64", "f64", "f32", "sliced"]))
    array = pa.array(raw, pa.float64())
    if kind == "f32":
        array = pa.array(raw, pa.float32())
    elif kind == "sliced":
        array = pa.array([1.0, *raw, 2.0], pa.float64()).slice(1, n)
    expected = Refused("argument") if bounds is None else None
    expected = expected or (Refused("data") if kind == "f32" else None) or (rows if isinstance(rows, Refused) else None)
    got = check(expected, _core.segment_means, array, bounds)
    if expected is None:
        vals = floats_of(raw)
        assert same_floats(got.to_pylist(), [segment_mean([vals[t] for t in row]) for row in rows])


# ------------------------------------------------------------------------------------------- views


@fuzz(150)
@given(column=columns(), data=st.data())
def test_string_views_and_rows(column, data):
    n = len(column.values)
    picks = data.draw(st.lists(st.integers(0, n + 1) if n else st.integers(0, 2), max_size=12))
    kind = data.draw(st.sampled_from(["uint64", "uint64", "uint64", "null", "int64"]))
    rows = pa.array(picks, pa.uint64()) if kind != "null" else pa.array([*picks, None], pa.uint64())
    if kind == "int64":
        rows = rows.cast(pa.int64())
    taken = [encode(column.values[r]) for r in picks if r < n]
    expected = Refused("argument") if column.kind in ("chunked", "pylist") else None
    expected = expected or (Refused("data") if kind != "uint64" or any(r >= n for r in picks) else None)
    as_views = expected or (None if column.accepted and column.kind != "null" else Refused("data"))
    got = check(as_views, _core.string_views, column.array, rows)
    if as_views is None:
        assert got.type == pa.string_view()
        assert got.cast(pa.binary_view()).to_pylist() == taken  # the bytes as they were, UTF-8 or not
    compact = expected or (None if column.kind == "string_view" else Refused("data"))
    got = check(compact, _core.string_rows, column.array, rows)
    if compact is None:
        assert got.type == pa.string() and got.offset == 0
        assert got.cast(pa.binary()).to_pylist() == taken
        assert got.buffers()[2] is None or got.buffers()[2].size == sum(len(t) for t in taken if t is not None)


# ----------------------------------------------------------------------------------------- group ids


@fuzz(100, long_share=0.5)
@given(
    batches=st.lists(
        st.tuples(columns(values(max_size=10)), st.sampled_from([1, 1, 1, 1, 450])), min_size=1, max_size=3
    ),
    threads=unsigned(0, 4),
)
def test_group_ids(batches, threads):
    ids, known = _core.GroupIds(), {}
    for column, repeat in batches:
        if repeat > 1 and column.accepted and column.kind != "null":  # over 4096 rows: parts numbered in parallel
            vs = column.values * repeat
            column = type(column)(pa.array([encode(v) for v in vs], pa.binary()).view(pa.string()), vs, "string", True)
        bad = column.first_invalid() if column.accepted else None
        expected = first_refusal(
            Refused("argument") if column.kind in ("chunked", "pylist") else None, as_unsigned(threads)
        ) or column.refusal() or (None if bad is None else Refused("text", bad))  # fmt: skip
        got = check(expected, ids.encode, column.array, threads=threads)
        if expected is None:
            want = [known.setdefault(v, len(known)) for v in column.values]
            assert got.to_pylist() == want
        assert ids.names() == list(known), "a refused batch numbers nothing"


def test_group_ids_refuse_values_that_are_not_utf8():
    """Found by fuzzing: values that are not UTF-8 got ids, and ``names()`` gave them all one name, U+FFFD."""
    ids = _core.GroupIds()
    bad = pa.array([b"a", b"\xff", b"\xfe"], pa.binary()).view(pa.string())
    ok, error = attempt(ids.encode, bad)
    assert not ok and isinstance(error, _core.InvalidTextError) and error.args[1] == 1
    assert ids.names() == []
    assert ids.encode(pa.array(["a", None])).to_pylist() == [0, 1] and ids.names() == ["a", None]


# ---------------------------------------------------------------------------------------------- parquet

message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]), "content": text})
# Deep and empty message lists.
messages = st.one_of(
    st.none(), st.lists(message, max_size=3), st.lists(message, min_size=1, max_size=2).map(lambda m: m * 60)
)
COMPRESSIONS = ["NONE", "SNAPPY", "ZSTD", "GZIP", "LZ4", "BROTLI"]
MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


@st.composite
def parquet_tables(draw) -> pa.Table:
    n = draw(st.integers(0, 40))
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "text": pa.array(draw(st.lists(st.one_of(st.none(), text), min_size=n, max_size=n)), pa.string()),
            "big": pa.array(draw(st.lists(st.one_of(st.none(), text), min_size=n, max_size=n)), pa.large_string()),
            "messages": pa.array(draw(st.lists(messages, min_size=n, max_size=n)), MESSAGES),
            "score": pa.array(draw(float_arrays(n)), pa.float64()),
        }
    )


NAMES = ["id", "text", "big", "messages", "score"]


def nan_free(rows: list[dict]) -> list[dict]:
    """Rows with NaN written as a string, so that equal rows compare equal."""
    return [{k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()} for row in rows]


@fuzz(40, long_share=0.2)
@given(
    table=parquet_tables(),
    row_group_size=st.integers(1, 50),
    compression=st.sampled_from(COMPRESSIONS),
    dictionary=st.booleans(),
    names=st.one_of(st.none(), st.lists(st.sampled_from([*NAMES, "nope"]), max_size=4), st.just(["id", 3])),
    batch_rows=st.one_of(st.integers(0, 8), unsigned(1, 65536)),
    threads=unsigned(0, 4),
    views=st.booleans(),
    data=st.data(),
)
def test_parquet_batches(tmp_path_factory, table, row_group_size, compression, dictionary, names, batch_rows, threads,
                         views, data):  # fmt: skip
    path = tmp_path_factory.mktemp("fuzz") / "t.parquet"
    pq.write_table(table, path, row_group_size=row_group_size, compression=compression, use_dictionary=dictionary,
                   data_page_size=data.draw(st.sampled_from([64, 1 << 20])))  # fmt: skip
    groups = pq.ParquetFile(path).metadata.num_row_groups
    span = data.draw(st.one_of(st.none(), st.tuples(st.integers(0, groups + 1), st.integers(0, groups + 1)),
                               st.just((-1, 1)), st.just((0, 2**64))))  # fmt: skip
    expected = first_refusal(
        None if names is None or all(isinstance(c, str) for c in names) else Refused("argument"),
        as_unsigned(batch_rows),
        as_unsigned(threads),
        None if span is None else first_refusal(*map(as_unsigned, span)),
    )
    expected = expected or (Refused("data") if names is not None and "nope" in names else None)
    first, stop = span or (0, groups)
    expected = expected or (Refused("data") if not first <= stop <= groups else None)
    batches = check(expected, _core.ParquetBatches, str(path), names, batch_rows=batch_rows, threads=threads,
                    views=views, row_groups=span)  # fmt: skip
    if expected is not None:
        return
    got = check(None, list, batches)
    wanted = [c for c in NAMES if names is None or c in names]  # in file order, each once
    reference = pq.ParquetFile(path).read_row_groups(list(range(first, stop)), columns=wanted)
    assert all(b.num_rows <= max(batch_rows, 1) for b in got)
    assert sum(b.num_rows for b in got) == reference.num_rows
    types = [pa.string_view() if views and t == pa.string() else t for t in reference.schema.types]
    for b in got:
        assert b.schema.names == wanted and b.schema.types == types
    assert nan_free([row for b in got for row in b.to_pylist()]) == nan_free(reference.to_pylist())


@fuzz(30, long_share=0.25)
@given(
    table=parquet_tables(),
    damage=st.sampled_from(["truncate", "flip", "flip", "garbage", "empty", "directory", "missing"]),
    data=st.data(),
)
def test_parquet_batches_of_damaged_files(tmp_path_factory, table, damage, data):
    """A truncated, corrupted, empty, non-parquet or missing file, or a directory: an error (OSError for a file that
    cannot be opened, SkyfilterError else) or, for a flip the file's checks cannot see, batches; never a panic."""
    path = tmp_path_factory.mktemp("fuzz") / "t.parquet"
    pq.write_table(table, path, row_group_size=7, compression=data.draw(st.sampled_from(COMPRESSIONS)))
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif damage == "flip":
        rng = random.Random(data.draw(st.integers(0, 2**32)))
        for _ in range(data.draw(st.integers(1, 8))):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    elif damage == "garbage":
        raw = bytearray(data.draw(st.binary(max_size=64)))
    elif damage == "empty":
        raw = bytearray()
    path.write_bytes(bytes(raw))
    if damage == "directory":
        path.unlink()
        path.mkdir()
    elif damage == "missing":
        path.unlink()
    views = data.draw(st.booleans())
    ok, batches = attempt(_core.ParquetBatches, str(path), views=views, threads=data.draw(st.integers(0, 2)))
    if damage in ("missing",):
        assert not ok and isinstance(batches, FileNotFoundError)
    if not ok:
        assert isinstance(batches, OSError | _core.SkyfilterError), repr(batches)
        return
    ok, got = attempt(list, batches)
    if damage in ("truncate", "garbage", "empty", "directory"):
        assert not ok, "a file that is not whole read as batches"
    if not ok:
        assert isinstance(got, _core.SkyfilterError), repr(got)


def test_a_corrupt_embedded_schema_is_an_error_not_a_panic(tmp_path):
    """Found by the long run: a bit flipped in the footer's embedded Arrow schema made arrow-ipc panic while decoding
    it ("Int type with bit width of 1088 and signed of true not supported", "Type NONE not supported": 129 of the
    first 4800 single-bit flips of that schema panicked), reported as an internal error (a bug) of the extension. Now
    each such file (here: every flip of the schema's first 160 bytes) is read or refused as a parquet error, the
    schema decoder's panics as "corrupt file"."""
    path = tmp_path / "t.parquet"
    pq.write_table(_schema_table(), path, compression="GZIP")
    raw = path.read_bytes()
    at = raw.index(b"ARROW:schema") + len(b"ARROW:schema")
    corrupt = 0
    for i in range(at, min(at + 160, len(raw) - 8)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[i] ^= 1 << bit
            path.write_bytes(bytes(flipped))
            ok, batches = attempt(_core.ParquetBatches, str(path), threads=1)
            if ok:
                ok, batches = attempt(list, batches)
            if not ok:
                assert isinstance(batches, _core.SkyfilterError), repr(batches)
                corrupt += str(batches).startswith("corrupt file")
    assert corrupt > 0, "no flip reached the schema decoder's panics"


def _schema_table() -> pa.Table:
    """An empty table of the fuzzed parquet tables' columns."""
    return pa.table({"id": pa.array([], pa.int64()), "text": pa.array([], pa.string()),
                     "big": pa.array([], pa.large_string()), "messages": pa.array([], MESSAGES),
                     "score": pa.array([], pa.float64())})  # fmt: skip


def test_row_groups_out_of_range_are_a_skyfilter_error(tmp_path):
    """Found by fuzzing: a row group range past the file raised a plain ValueError, not the SkyfilterError every
    other bad argument value of the module raises."""
    pq.write_table(pa.table({"a": [1, 2, 3]}), tmp_path / "t.parquet", row_group_size=1)
    for span in [(0, 4), (2, 1), (4, 4)]:
        with pytest.raises(_core.SkyfilterError, match=r"row_groups .* out of range: the file has 3 row groups"):
            _core.ParquetBatches(str(tmp_path / "t.parquet"), row_groups=span)


# -------------------------------------------------------------------------------------------- surface

SURFACE = {
    "tokenize": [],
    "BenchmarkIndex": ["bench_rows", "match_rows", "n", "n_groups", "ngram_texts", "postings", "tokenizer"],
    "row_keys": [],
    "MinHasher": ["num_perm", "signatures", "signatures_and_shingles"],
    "NearDedup": ["__len__", "add", "band_keys", "bucket_clusters", "clusters"],
    "components": [],
    "SELECT_REASONS": [],
    "row_reasons": [],
    "top_fraction": [],
    "length_ratio_fails": [],
    "segment_means": [],
    "GroupIds": ["encode", "names"],
    "ParquetBatches": ["__iter__", "__next__"],
    "string_views": [],
    "string_rows": [],
    "SkyfilterError": [],
    "InvalidTextError": [],
    "_panic": [],
}


def test_every_entry_point_is_fuzzed():
    """The module's names and the classes' methods are the ones these suites fuzz: a new entry point fails here
    until it is added to the fuzzing (and to this list)."""
    module_attrs = {
        "__all__",
        "__doc__",
        "__file__",
        "__loader__",
        "__name__",
        "__package__",
        "__spec__",
        "__version__",
    }
    assert set(dir(_core)) - module_attrs == set(SURFACE)
    for name, methods in SURFACE.items():
        if isinstance(getattr(_core, name), type) and not issubclass(getattr(_core, name), Exception):
            own = {m for m in vars(getattr(_core, name)) if not m.startswith("__") or m in ("__len__", "__iter__",
                                                                                            "__next__")}  # fmt: skip
            assert own == set(methods), name
    assert isinstance(_core.__version__, str) and _core.__version__
    assert _core.SELECT_REASONS == REASONS
    assert issubclass(_core.InvalidTextError, _core.SkyfilterError) and issubclass(_core.SkyfilterError, ValueError)


@fuzz(100)
@given(message=st.one_of(st.text(), text, st.just("a\ud800"), st.just(None)))
def test_panic_boundary(message):
    """``_panic`` panics inside the extension with any message: a SkyfilterError carrying it, never pyo3's
    PanicException (a BaseException); a message Rust cannot take is refused as an argument."""
    if not (isinstance(message, str) and "\ud800" not in message):
        check(Refused("argument"), _core._panic, message)
        return
    with deadline("_panic"), pytest.raises(_core.SkyfilterError) as caught:
        _core._panic(message)
    assert str(caught.value) == f"internal error in skyfilter._core (a bug; please report it): {message}"

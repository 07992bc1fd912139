"""Arrow arrays across the extension's boundary (``rust/skyfilter-py/src/arrow_ffi.rs``, the Arrow PyCapsule
interface): arrays come in and go back out with their values, types, offsets and nulls, without a copy; record
batches keep their schema (metadata, nullability); what is not an Arrow array is a one-line TypeError; a producer
that breaks the interface gets an error, not a crash; and imported buffers live as long as anything shares them,
and no longer."""

from __future__ import annotations

import gc
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from skyfilter import _core

LONG = "a text longer than the twelve bytes a string_view holds inline, é ü"
TEXTS = ["", "short", "é", None, LONG, LONG + " 2", "twelve bytes", "thirteen byte", None, "x" * 200]
STRING_TYPES = [pa.string(), pa.large_string(), pa.string_view()]


def rows_of(n: int) -> pa.Array:
    return pa.array(range(n), pa.uint64())


@pytest.mark.parametrize("kind", STRING_TYPES, ids=str)
@pytest.mark.parametrize("offset", [0, 3])
def test_string_arrays_round_trip(kind, offset):
    """Every string type, whole and sliced (an offset into its buffers), comes back with its values and nulls:
    as string_view from ``string_views``, and again as utf8 from ``string_rows``."""
    texts = pa.array(TEXTS, kind).slice(offset)
    assert texts.offset == offset
    expected = TEXTS[offset:]
    views = _core.string_views(texts, rows_of(len(texts)))
    assert views.type == pa.string_view() and views.to_pylist() == expected
    assert views.null_count == expected.count(None)
    views.validate(full=True)
    copied = _core.string_rows(views, rows_of(len(views)))
    assert copied.type == pa.string() and copied.to_pylist() == expected
    copied.validate(full=True)
    # Some rows, in another order, repeated: the rows argument (uint64, sliced too) comes in intact.
    rows = pa.array([9, 9, 0, 4, 2, 1, 7, 0], pa.uint64()).slice(2, 5)
    picked = [expected[r] for r in rows.to_pylist() if r < len(expected)]
    rows = pa.array([r for r in rows.to_pylist() if r < len(expected)], pa.uint64())
    assert _core.string_views(texts, rows).to_pylist() == picked
    assert _core.string_rows(pa.array(expected, pa.string_view()), rows).to_pylist() == picked


@pytest.mark.parametrize("kind", STRING_TYPES, ids=str)
def test_empty_slices_come_in(kind):
    """An empty slice past the start of a utf8 array (first offset above 0; arrow-rs imports no data for it) comes
    in as an empty array. Found by the fuzzing while the import was written: ``ArrayData::validate`` refuses it,
    so the import does not run that check."""
    texts = pa.array(["ab", "c", LONG], kind)
    for start in range(4):
        empty = texts.slice(start, 0)
        assert _core.string_views(empty, rows_of(0)).to_pylist() == []
        assert _core.GroupIds().encode(empty).to_pylist() == []


def test_string_views_share_the_input_buffers():
    """No copy either way: the views ``string_views`` returns for a string_view array point into the input's own
    data buffers (imported from pyarrow, exported back to it)."""
    texts = pa.array([LONG, "short", LONG + "!"], pa.string_view())
    views = _core.string_views(texts, rows_of(3))
    assert views.to_pylist() == texts.to_pylist()
    assert [b.address for b in views.buffers()[2:]] == [b.address for b in texts.buffers()[2:]]


def test_floats_with_nulls_come_in_with_their_offset():
    """A float64 array with nulls, sliced: each value lands on its row (a null as NaN, as segment_means says)."""
    values = [1.5, None, -0.0, 2.0**-1074, None, float("inf"), 7.25]
    for offset in (0, 1, 4):
        array = pa.array(values, pa.float64()).slice(offset)
        means = _core.segment_means(array, pa.array(range(len(array) + 1), pa.int64()))
        assert means.type == pa.float64() and len(means) == len(array)
        for got, want in zip(means.to_pylist(), values[offset:], strict=True):
            if want is None:
                assert math.isnan(got)
            else:  # the same bits: -0.0 stays negative
                assert got == want and math.copysign(1, got) == math.copysign(1, want)


def test_null_counts_follow_the_slice():
    """Rows with a null are refused; a slice of the same array that leaves the null out is taken: the null count
    comes from the slice, not from its parent."""
    rows = pa.array([0, None, 1, 2], pa.uint64())
    texts = pa.array(["a", "b", "c"])
    with pytest.raises(_core.SkyfilterError, match="rows must be a non-null uint64 array"):
        _core.string_views(texts, rows)
    assert _core.string_views(texts, rows.slice(2)).to_pylist() == ["b", "c"]


def test_parquet_batches_keep_types_nulls_and_fields(tmp_path):
    """Record batches go out as pyarrow batches with every column's type (unsigned integers, floats, each string
    type, structs, lists) and nulls, and each field's nullability and metadata: the file's schema as pyarrow reads
    it. (The parquet reader does not put the file's schema metadata on its batches; ``skyfilter.io`` restores it.)"""
    n = 300
    pair = pa.struct([pa.field("role", pa.string(), nullable=False), ("n", pa.int32())])
    schema = pa.schema(
        [
            pa.field("u32", pa.uint32(), metadata={"unit": "tokens"}),
            pa.field("u64", pa.uint64()),
            pa.field("f64", pa.float64()),
            pa.field("id", pa.int64(), nullable=False),
            pa.field("text", pa.string()),
            pa.field("big", pa.large_string()),
            pa.field("view", pa.string_view()),
            pa.field("pair", pair),
            pa.field("scores", pa.list_(pa.float64())),
        ],
        metadata={"origin": "test_arrow_ffi"},
    )
    table = pa.table(
        {
            "u32": pa.array([None if i % 5 == 0 else 2**32 - 1 - i for i in range(n)], pa.uint32()),
            "u64": pa.array([None if i % 7 == 0 else 2**64 - 1 - i for i in range(n)], pa.uint64()),
            "f64": pa.array([None if i % 3 == 0 else i / 7 for i in range(n)], pa.float64()),
            "id": pa.array(range(n), pa.int64()),
            "text": pa.array([None if i % 4 == 0 else f"t{i}" for i in range(n)]),
            "big": pa.array([LONG * (i % 3) for i in range(n)], pa.large_string()),
            "view": pa.array([None if i % 6 == 0 else (LONG if i % 2 else "s") for i in range(n)], pa.string_view()),
            "pair": pa.array([None if i % 9 == 0 else {"role": "user", "n": i} for i in range(n)], pair),
            "scores": pa.array([None if i % 8 == 0 else [i / 2, None] for i in range(n)], pa.list_(pa.float64())),
        },
        schema=schema,
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=128)
    batches = list(_core.ParquetBatches(str(path), batch_rows=100, threads=2))
    assert all(isinstance(b, pa.RecordBatch) for b in batches) and len(batches) > 1
    for batch in batches:
        batch.validate(full=True)
    got = pa.Table.from_batches(batches)
    expected = pq.read_table(path)
    assert [f.type for f in expected.schema] == [f.type for f in table.schema]  # pyarrow's reading is the reference
    assert len(got.schema) == len(expected.schema)
    for field, want in zip(got.schema, expected.schema, strict=True):
        assert field.equals(want, check_metadata=True), (field, want)
    assert not got.schema.field("id").nullable and not got.schema.field("pair").type.field("role").nullable
    assert got.equals(expected)
    # With views, the utf8 columns come back as string_view, the rest as they were.
    viewed = pa.Table.from_batches(list(_core.ParquetBatches(str(path), ["text", "u32", "big"], views=True)))
    assert viewed.schema.field("text").type == pa.string_view()
    assert viewed.schema.field("u32").equals(schema.field("u32"), check_metadata=True)
    assert viewed.schema.field("big").type == pa.large_string()
    for name in ("text", "u32", "big"):
        assert viewed.column(name).to_pylist() == table.column(name).to_pylist()


@pytest.mark.parametrize(
    "argument",
    [pa.chunked_array([["a"], ["b"]]), pa.table({"a": ["x"]}), ["a", "b"], "ab", 3, object()],
    ids=["chunked", "table", "list", "str", "int", "object"],
)
def test_what_is_not_an_array_is_a_one_line_type_error(argument):
    for call in (
        lambda: _core.string_views(argument, rows_of(1)),
        lambda: _core.string_views(pa.array(["a"]), argument),
        lambda: _core.segment_means(argument, pa.array([0, 1], pa.int64())),
        lambda: _core.MinHasher(8, 2, 1).signatures(argument),
    ):
        with pytest.raises(TypeError) as caught:
            call()
        message = str(caught.value)
        assert "\n" not in message and "__arrow_c_array__" in message
        assert message.startswith("expected an Arrow array"), message
        assert type(argument).__name__ in message
        if hasattr(argument, "__arrow_c_stream__"):  # chunked arrays and tables: the fix is named
            assert "combine its chunks" in message


class Producer:
    """An object that hands out whatever capsules it is given, as a broken producer might."""

    def __init__(self, capsules):
        self.capsules = capsules

    def __arrow_c_array__(self, requested_schema=None):
        return self.capsules


def test_a_producer_that_breaks_the_interface_gets_an_error():
    texts = pa.array(["a", "b"])
    schema, array = texts.__arrow_c_array__()
    cases = [
        ([schema, array], "returned list, not a tuple of two capsules"),
        ((schema,), "returned tuple, not a tuple of two capsules"),
        ((array, schema), "not named 'arrow_schema'"),
        ((schema, schema), "not named 'arrow_array'"),
    ]
    for capsules, message in cases:
        with pytest.raises(TypeError, match=message):
            _core.string_views(Producer(capsules), rows_of(2))
    # The capsules were left as they were: they still import once...
    replay = Producer((schema, array))
    assert _core.string_views(replay, rows_of(2)).to_pylist() == ["a", "b"]
    # ...and only once: the consumer moved the array out and left its capsule a released struct.
    with pytest.raises(TypeError, match="released ArrowArray"):
        _core.string_views(replay, rows_of(2))
    # A schema that does not describe the array: an error (arrow-rs's, or its assertion caught), not a crash.
    # (Only mismatches that arrow-rs sees before reading a buffer: a schema that makes it read past one cannot be
    # caught by a consumer of the C data interface.)
    one = pa.struct([("a", pa.int8())])
    two = pa.struct([("a", pa.int8()), ("b", pa.int8())])
    _, numbers = pa.array([1, 2], pa.int8()).__arrow_c_array__()
    _, structs = pa.array([{"a": 1}], one).__arrow_c_array__()
    for schema, array in [(one.__arrow_c_schema__(), numbers), (two.__arrow_c_schema__(), structs)]:
        with pytest.raises(_core.SkyfilterError, match="^cannot import the Arrow array: ") as caught:
            _core.string_views(Producer((schema, array)), rows_of(1))
        assert "internal error" not in str(caught.value)


def test_imported_buffers_live_as_long_as_what_shares_them():
    """``string_views`` returns views into the input's buffers: deleting the input keeps them alive (no
    use-after-free), deleting the views releases them (no leak). pyarrow's allocations count the input's bytes."""
    gc.collect()
    before = pa.total_allocated_bytes()
    texts = pa.array([f"{i:08d}" * 64 for i in range(20_000)])  # 10 MB of text
    text_bytes = texts.buffers()[2].size
    expected = texts.to_pylist()
    rows = rows_of(len(texts))
    views = _core.string_views(texts, rows)
    del texts, rows
    gc.collect()
    assert pa.total_allocated_bytes() - before >= text_bytes  # still held, by the views alone
    for _ in range(3):  # memory freed too early would likely be handed out and overwritten here
        churn = pa.array([f"{i:08d}" * 64 for i in range(20_000, 40_000)])
        del churn
    assert views.to_pylist() == expected
    del views
    gc.collect()
    assert pa.total_allocated_bytes() == before

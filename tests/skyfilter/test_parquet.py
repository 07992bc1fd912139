"""The parquet reader (arrow-rs, row groups in parallel) against pyarrow's: same rows, same types, every
codec, projections, batch sizes, string columns read as views, and a clear error for a damaged file; and the
parquet writer's row groups."""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from skyfilter.io import PARQUET_ROW_GROUP_ROWS, AtomicWriters, InputError, kept_rows, open_source, take_batch


def sample(rows: int) -> pa.Table:
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.table(
        {
            "prompt": pa.array([None if i % 7 == 0 else f"prompt é {i}" * (i % 5) for i in range(rows)]),
            "big": pa.array([f"large {i}" for i in range(rows)], pa.large_string()),
            "chosen": pa.array(
                [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}] for i in range(rows)],
                pa.list_(message),
            ),  # fmt: skip
            "meta": pa.array([{"score": i / 3, "ok": i % 2 == 0} for i in range(rows)]),
            "scores": pa.array([[float(i), None] if i % 3 else None for i in range(rows)], pa.list_(pa.float64())),
            "category": pa.array([["Math", "Coding"][i % 2] for i in range(rows)]).dictionary_encode(),
            "when": pa.array([datetime.datetime(2026, 1, 1) + datetime.timedelta(seconds=i) for i in range(rows)]),
            "n": pa.array(range(rows), pa.int32()),
            "empty": pa.nulls(rows),
        }
    )


@pytest.mark.parametrize("codec", ["snappy", "zstd", "gzip", "brotli", "lz4", "none"])
def test_same_table_as_pyarrow_for_every_codec(tmp_path, codec):
    table = sample(2_500)
    path = tmp_path / f"t.{codec}.parquet"
    pq.write_table(table, path, compression=codec, row_group_size=700)
    source = open_source(str(path))
    expected = pq.read_table(path)
    for batch_rows in (1, 333, 65_536):
        got = pa.Table.from_batches(list(source.batches(batch_rows)), schema=source.schema)
        assert got.equals(expected), (codec, batch_rows)
        assert all(b.num_rows <= batch_rows for b in source.batches(batch_rows))


def test_projection_and_empty_files(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(sample(100), path, row_group_size=30)
    source = open_source(str(path))
    got = pa.Table.from_batches(list(source.batches(64, ["chosen", "n"])))
    assert got.equals(pq.read_table(path, columns=["chosen", "n"]))
    # columns come in the order asked for, not the file's
    swapped = pa.Table.from_batches(list(source.batches(64, ["n", "chosen", "prompt"])))
    assert swapped.equals(pq.read_table(path).select(["n", "chosen", "prompt"]))
    empty = tmp_path / "empty.parquet"
    pq.write_table(sample(0), empty)
    assert list(open_source(str(empty)).batches()) == [] or all(
        b.num_rows == 0 for b in open_source(str(empty)).batches()
    )


def test_damaged_file_is_a_clear_error(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(sample(5_000), path, compression="snappy", row_group_size=1_000)
    data = bytearray(path.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 2_000] = bytes(2_000)  # zero a stretch of pages, keep the footer
    path.write_bytes(bytes(data))
    source = open_source(str(path))
    with pytest.raises(InputError, match=r"t\.parquet: not a readable parquet file"):
        for _ in source.batches(1_000):
            pass


def test_views_read_the_same_rows_and_take_batch_gives_the_file_types(tmp_path):
    # The writing passes of select and dedup read string columns as views over the pages and copy only the
    # rows they write: the rows and types must be those of the plain reader.
    table = sample(2_500)
    table = table.append_column("view", pa.array([f"view {i} " * (i % 4) for i in range(2_500)], pa.string_view()))
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=700)
    source = open_source(str(path))
    expected = pq.read_table(path).to_pylist()
    rng = np.random.default_rng(0)
    for batch_rows in (333, 65_536):
        at = 0
        for batch in source.batches(batch_rows, views=True):
            assert batch.schema.field("prompt").type == pa.string_view()
            assert batch.schema.field("big").type == pa.large_string()  # only utf8 columns become views
            for share in (0.0, 0.3, 1.0):
                rows = np.flatnonzero(rng.random(batch.num_rows) < share)
                taken = take_batch(batch, rows, source.schema)
                assert taken.schema.equals(source.schema)
                assert taken.to_pylist() == [expected[at + r] for r in rows]
            at += batch.num_rows
        assert at == len(expected)


@pytest.mark.parametrize("dropped", [0.0, 0.005, 0.2, 0.9, 1.0])
def test_kept_rows_are_the_filtered_rows_as_slices_when_runs_are_long(dropped):
    batch = sample(3_000).to_batches()[0].slice(17, 2_000)  # a batch with an offset
    keep = np.random.default_rng(1).random(batch.num_rows) >= dropped
    kept = kept_rows(batch, keep)
    assert kept.schema.equals(batch.schema)
    assert kept.to_pylist() == batch.filter(pa.array(keep)).to_pylist()
    runs = np.count_nonzero(np.diff(keep.astype(np.int8), prepend=np.int8(0)) == 1)
    if runs and keep.sum() > 32 * runs:  # long runs: slices sharing the batch's text, nothing copied
        prompt = batch.column("prompt").buffers()[2]
        assert kept.column("prompt").num_chunks == runs
        assert all(c.buffers()[2].address == prompt.address for c in kept.column("prompt").chunks)


def test_invalid_utf8_read_with_views_is_a_clear_error(tmp_path):
    offsets = pa.py_buffer(np.array([0, 2, 4, 6], np.int32))
    bad = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"okok\xff\xfe")])
    pq.write_table(pa.table({"n": [1, 2, 3], "text": bad}), tmp_path / "bad.parquet")
    source = open_source(str(tmp_path / "bad.parquet"))
    with pytest.raises(InputError, match=r"bad.parquet, column text: row 2 \(0-based\): text is not valid UTF-8"):
        list(source.batches(2, views=True))


def test_parquet_outputs_are_written_in_whole_row_groups(tmp_path):
    # Small kept batches (a 10% selection) still make row groups of PARQUET_ROW_GROUP_ROWS rows, and repeated
    # long texts stay dictionary-encoded past pyarrow's default 1 MiB dictionary.
    schema = pa.schema([("n", pa.int64()), ("prompt", pa.string()), ("answer", pa.string())])
    target = tmp_path / "out.parquet"
    with AtomicWriters({"out": target}) as writers:
        writers.set_schema("out", schema)
        for start in range(0, 150_000, 7_000):
            n = np.arange(start, min(start + 7_000, 150_000))
            prompt = pa.array([f"prompt {i % 2000} " + "long text " * 200 for i in n])  # 4 MB of distinct texts
            answer = pa.array([f"answer {i}" for i in n])
            writers.write("out", pa.RecordBatch.from_arrays([pa.array(n), prompt, answer], schema=schema))
    meta = pq.ParquetFile(target).metadata
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    assert sizes[:-1] == [PARQUET_ROW_GROUP_ROWS] * (len(sizes) - 1) and sum(sizes) == 150_000, sizes
    for g in range(meta.num_row_groups - 1):  # each distinct text once (4 MB), not 65,536 texts (130 MB)
        assert meta.row_group(g).column(1).total_uncompressed_size < 8e6
    written = pq.read_table(target)
    assert written.schema.equals(schema)
    assert written["n"].to_pylist() == list(range(150_000))
    assert written["prompt"].to_pylist() == [f"prompt {i % 2000} " + "long text " * 200 for i in range(150_000)]
    assert written["answer"].to_pylist() == [f"answer {i}" for i in range(150_000)]


@pytest.mark.parametrize("views", [False, True])
def test_rows_between_read_only_their_row_groups(tmp_path, views):
    # A piece of a file (what the ray engine reads): any range, across row-group boundaries, all columns or some,
    # with views or without: the rows of the whole file at those positions, with the same types as batches().
    table = sample(1000)
    path = tmp_path / "groups.parquet"
    pq.write_table(table, path, row_group_size=128)
    source = open_source(str(path))
    for columns in (None, ["n", "prompt", "chosen"]):
        whole = pa.Table.from_batches(list(source.batches(10_000, columns, views=views)))
        for start, stop in [(0, 1000), (0, 128), (100, 300), (128, 256), (255, 257), (999, 1000), (500, 500)]:
            got = list(source.batches_between(start, stop, 50, columns, views=views))
            assert all(b.num_rows <= 50 for b in got)
            assert sum(b.num_rows for b in got) == stop - start
            if got:
                assert all(b.schema.equals(whole.schema) for b in got)
                assert pa.Table.from_batches(got).to_pylist() == whole.slice(start, stop - start).to_pylist()


def test_row_groups_out_of_range_is_an_error(tmp_path):
    from skyfilter import _core

    pq.write_table(sample(300), tmp_path / "g.parquet", row_group_size=100)
    for bad in [(2, 4), (2, 1)]:
        with pytest.raises(ValueError, match=r"row_groups .* out of range: the file has 3 row groups"):
            _core.ParquetBatches(str(tmp_path / "g.parquet"), row_groups=bad)
    got = list(_core.ParquetBatches(str(tmp_path / "g.parquet"), ["n"], row_groups=(1, 3)))
    assert [v for b in got for v in b.column(0).to_pylist()] == list(range(100, 300))

"""Every Python API function that takes rows returns what it was given (pyarrow tables, batches and streams,
polars frames, ``datasets.Dataset``, pandas frames with their index), with the same values, and without copying
where Arrow allows."""

from __future__ import annotations

import subprocess
import sys

import datasets
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import skyfilter
from skyfilter import InputError, SelectOptions
from skyfilter.frames import as_arrow

UF = "prefs/ultrafeedback_binarized_1200/train_clean.jsonl"
SOURCES = "bench/rewardbench_sources/rewardbench_prompt_sources_all.jsonl"
SCORES = {"chosen_score": "metadata.score_chosen", "rejected_score": "metadata.score_rejected"}


@pytest.fixture(scope="module")
def uf(shared_data) -> pa.Table:
    """300 real UltraFeedback pairs, strings as string_view (what a polars frame exports)."""
    return skyfilter.read_table(shared_data / UF).slice(0, 300)


@pytest.fixture(scope="module")
def bench(shared_data):
    return skyfilter.load_benchmark(shared_data / SOURCES, prompt_column="prompt", subset_column="subset_family")


def stream(table: pa.Table) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=64))


#: Each kind of input: how to make it from a pyarrow table, and how to read a result of that kind back as one.
KINDS = {
    "table": (lambda t: t, lambda r: r),
    "batch": (lambda t: t.combine_chunks().to_batches()[0], lambda r: pa.Table.from_batches([r])),
    "stream": (stream, lambda r: r.read_all()),
    "polars": (pl.from_arrow, lambda r: r.to_arrow()),
    "lazy": (lambda t: pl.from_arrow(t).lazy(), lambda r: r.collect().to_arrow()),
    "dataset": (datasets.Dataset, lambda r: r.data.table),
    "pandas": (lambda t: t.to_pandas(), lambda r: pa.Table.from_pandas(r, preserve_index=False)),
}
RESULT_TYPES = {
    "table": pa.Table,
    "batch": pa.RecordBatch,
    "stream": pa.RecordBatchReader,
    "polars": pl.DataFrame,
    "lazy": pl.LazyFrame,
    "dataset": datasets.Dataset,
    "pandas": pd.DataFrame,
}


def same_values(a: pa.Table, b: pa.Table) -> bool:
    """Equal values whatever the string type (polars gives large_string or string_view back)."""
    return pl.from_arrow(a).equals(pl.from_arrow(b))


@pytest.mark.parametrize("kind", KINDS)
def test_every_function_returns_the_kind_it_was_given(kind, uf, bench):
    make, read = KINDS[kind]
    options = SelectOptions(**SCORES, min_margin=1)
    calls = {
        "contaminate": lambda d: skyfilter.contaminate(d, bench),
        "to_pairs": lambda d: skyfilter.to_pairs(d, source="uf"),
        "dedup_rows": lambda d: skyfilter.dedup_rows(d),
        "select_rows": lambda d: skyfilter.select_rows(d, options),
        "select_table.kept": lambda d: skyfilter.select_table(d, options).kept(),
        "select_table.dropped": lambda d: skyfilter.select_table(d, options).dropped(),
    }
    for name, call in calls.items():
        result = call(make(uf))
        assert isinstance(result, RESULT_TYPES[kind]), (name, type(result))
        assert same_values(read(result), call(uf)), name


def test_results_are_what_the_steps_decide(uf, bench):
    """The frame-level functions add the decisions of the steps they wrap."""
    deduped = skyfilter.dedup_rows(uf, skyfilter.DedupOptions(key="prompt", near=False))
    assert deduped.column_names[-4:] == ["reason", "duplicate_of", "cluster_id", "conflict"]
    from skyfilter.dedup import dedup_pairs

    decisions = dedup_pairs(skyfilter.to_pairs(uf), skyfilter.DedupOptions(key="prompt", near=False))
    assert deduped["reason"].to_pylist() == [("kept", "conflict", "exact_duplicate")[r] for r in decisions.reason]
    selection = skyfilter.select_table(uf, SelectOptions(**SCORES, min_margin=1))
    selected = skyfilter.select_rows(uf, SelectOptions(**SCORES, min_margin=1))
    assert selected["reason"].to_pylist() == [str(r) for r in selection.reasons.to_pylist()]
    assert 0 < selection.mask.sum() < uf.num_rows


def test_polars_and_datasets_in_and_out_without_a_copy(uf):
    df = pl.from_arrow(uf)
    table, restore = as_arrow(df)
    # the strings the kernels get are polars' own buffers, exported as string_view
    ours = df["prompt"].to_arrow(compat_level=pl.CompatLevel.newest())
    got = table.column("prompt").chunk(0)
    assert pa.types.is_string_view(got.type)
    assert [b.address for b in got.buffers()[1:]] == [b.address for b in ours.buffers()[1:]]
    # and a result comes back to polars over the same buffers
    back = restore(table)
    again = back["prompt"].to_arrow(compat_level=pl.CompatLevel.newest())
    assert [b.address for b in again.buffers()[1:]] == [b.address for b in got.buffers()[1:]]
    ds = datasets.Dataset(uf)
    table, restore = as_arrow(ds)
    assert table is ds.data.table
    assert restore(table).data.table.column("prompt").chunk(0).buffers()[2].address == (
        uf.column("prompt").chunk(0).buffers()[2].address
    )


def test_a_stream_is_matched_as_it_is_read(uf, bench):
    read = []

    def batches():
        for batch in uf.to_batches(max_chunksize=100):
            read.append(batch.num_rows)
            yield batch

    result = skyfilter.contaminate(pa.RecordBatchReader.from_batches(uf.schema, batches()), bench)
    assert read == []
    first = result.read_next_batch()
    assert read == [100] and first.column("input_row").to_pylist() == list(range(100))
    rest = result.read_all()
    assert rest.column("input_row").to_pylist() == list(range(100, 300))
    whole = skyfilter.contaminate(uf, bench)
    assert pa.Table.from_batches([first, *rest.to_batches()]).equals(whole)


def test_pandas_rows_keep_their_index_labels(uf, bench):
    """A pandas result, a selection's kept and dropped rows too, has the index labels of its rows; an object column
    that mixes types (pandas' read_json of a field that is sometimes true) is one error naming it and its odd row."""
    frame = uf.slice(0, 40).to_pandas()
    frame.index = pd.Index([f"id-{i}" for i in range(40)], name="id")
    options = SelectOptions(**SCORES, min_margin=1)
    selection = skyfilter.select_table(frame, options)
    kept, dropped = selection.kept(), selection.dropped()
    assert 0 < len(kept) < 40 and kept.index.name == "id" and "id" not in kept.columns
    assert sorted([*kept.index, *dropped.index]) == sorted(frame.index)
    assert kept["prompt"].equals(frame.loc[kept.index, "prompt"])
    for result in (skyfilter.contaminate(frame, bench), skyfilter.to_pairs(frame), skyfilter.dedup_rows(frame),
                   skyfilter.select_rows(frame, options)):  # fmt: skip
        assert list(result.index) == list(frame.index)
    mixed = pd.DataFrame({"prompt": ["p", "q", "r"], "chosen": ["a", True, "c"], "rejected": ["x", "y", "z"]},
                         index=[7, 8, 9])  # fmt: skip
    with pytest.raises(TypeError, match=r"^column 'chosen': a bool \(True\) at row 1 \(index 8\) where its first value "
                       "is a str"):  # fmt: skip
        skyfilter.to_pairs(mixed)


def test_a_dataset_selection_is_read_in_its_order(uf):
    ds = datasets.Dataset(uf).select([5, 2, 9])
    assert skyfilter.to_pairs(ds).data.table.equals(skyfilter.to_pairs(uf.take([5, 2, 9])))


def test_bad_inputs_fail_in_one_line(uf):
    with pytest.raises(TypeError, match="expected Arrow data: .* got list"):
        skyfilter.to_pairs([{"prompt": "p"}])
    with pytest.raises(InputError, match=r"already has column\(s\) \['reason'\], which dedup adds"):
        skyfilter.dedup_rows(pl.from_arrow(uf).with_columns(reason=pl.lit("x")))


def test_a_benchmark_from_any_kind(shared_data):
    table = skyfilter.read_table(shared_data / SOURCES).slice(0, 50)
    want = skyfilter.benchmark_from_table(table, "b", subset_column="subset_family")
    for data in (pl.from_arrow(table), datasets.Dataset(table), stream(table)):
        got = skyfilter.benchmark_from_table(data, "b", subset_column="subset_family")
        assert got.prompts.to_pylist() == want.prompts.to_pylist() and got.subsets.equals(want.subsets)


def test_skyfilter_does_not_import_polars_or_datasets():
    """polars and datasets stay optional: the adapter looks for them only among the modules already imported."""
    code = "import sys, skyfilter; assert not {'polars', 'datasets'} & set(sys.modules), sys.modules.keys()"
    subprocess.run([sys.executable, "-c", code], check=True)

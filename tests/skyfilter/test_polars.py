"""The polars plugin (``import skyfilter.polars``): its expressions and frame methods give the CLI's results on
real data (300 RMB pairs, twenty of them contaminated), run batch by batch in the streaming engine, and hand the
kernels polars' own buffers and polars the kernels' own results."""

from __future__ import annotations

import types

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skyfilter
import skyfilter.polars as plugin
from skyfilter import DedupOptions, SchemaError, SelectOptions, _core
from skyfilter.contaminate import Matcher
from skyfilter.schema import turn_texts

from tests.skyfilter.cli_helpers import run_cli

RMB = "prefs/rmb_pairwise/rmb_pairwise.jsonl.gz"
UF = "prefs/ultrafeedback_binarized_1200/train_clean.jsonl"
SOURCES = "bench/rewardbench_sources/rewardbench_prompt_sources_all.jsonl"
NEWEST = pl.CompatLevel.newest()


@pytest.fixture(scope="module")
def rmb(shared_data, tmp_path_factory) -> tuple[pa.Table, str]:
    """300 RMB pairs (rows 1500-1799: twenty contaminated, exact and near duplicates), and their parquet file."""
    table = skyfilter.read_table(shared_data / RMB).slice(1500, 300)
    path = tmp_path_factory.mktemp("rmb") / "rmb300.parquet"
    pq.write_table(table, path)
    return table, str(path)


@pytest.fixture(scope="module")
def matcher(shared_data) -> Matcher:
    bench = skyfilter.load_benchmark(shared_data / SOURCES, prompt_column="prompt", subset_column="subset_family")
    return Matcher([bench])


@pytest.fixture(autouse=True)
def small_morsels():
    """The streaming engine in batches of 50 rows, so that 300 rows take several."""
    with pl.Config(streaming_chunk_size=50):
        yield


def test_contamination_expressions_equal_the_cli(rmb, matcher, shared_data, tmp_path):
    table, path = rmb
    code, _ = run_cli("contaminate", path, "--bench-file", shared_data / SOURCES, "--bench-subset-column",
                      "subset_family", "--flagged", tmp_path / "flagged.parquet", "-q")  # fmt: skip
    assert code == 0
    cli = pq.read_table(tmp_path / "flagged.parquet")
    assert cli.num_rows == 20
    prompt = pl.col("conversation_input")
    first_turn = prompt.list.first().struct.field("content")  # RMB's first turn is the user's: a string column
    query = (
        pl.scan_parquet(path)
        .with_row_index("input_row")
        .with_columns(
            flagged=prompt.skyfilter.contaminated(matcher),
            ngram=prompt.skyfilter.matched_ngram(matcher),
            result=prompt.skyfilter.contamination(matcher),
            flagged_text=first_turn.skyfilter.contaminated(matcher),
        )
        .filter(pl.col("flagged"))
    )
    ours = query.collect(engine="streaming")
    assert ours["input_row"].to_list() == cli["input_row"].to_pylist()
    assert ours["ngram"].to_list() == cli["matched_ngram"].to_pylist()
    evidence = ["bench_name", "bench_row", "bench_subset", "matched_ngram", "overlap", "n_matched"]
    assert ours["result"].struct.unnest().select(evidence).equals(pl.from_arrow(cli.select(evidence)))
    assert ours["flagged_text"].all()
    assert query.collect().equals(ours)  # the in-memory engine agrees


def test_dedup_and_select_equal_the_cli(rmb, shared_data, tmp_path):
    table, path = rmb
    assert run_cli("dedup", path, "--out", tmp_path / "kept.parquet", "-q")[0] == 0
    cli = pl.read_parquet(tmp_path / "kept.parquet")
    decided = pl.from_arrow(table).skyfilter.dedup(DedupOptions())
    assert set(decided["reason"]) == {"kept", "exact_duplicate", "near_duplicate"}
    kept = decided.filter(pl.col("reason") == "kept").drop("reason", "duplicate_of", "conflict")
    assert kept.equals(cli)
    lazy = pl.scan_parquet(path).skyfilter.dedup(DedupOptions()).filter(pl.col("reason") == "kept")
    assert lazy.collect(engine="streaming").equals(decided.filter(pl.col("reason") == "kept"))

    uf = str(shared_data / UF)
    scores = ["--chosen-score", "metadata.score_chosen", "--rejected-score", "metadata.score_rejected"]
    assert run_cli("select", uf, *scores, "--min-margin", "1", "--out", tmp_path / "sel.parquet", "-q")[0] == 0
    options = SelectOptions(
        chosen_score="metadata.score_chosen", rejected_score="metadata.score_rejected", min_margin=1
    )
    frame = pl.read_ndjson(uf)
    selected = frame.lazy().skyfilter.select(options).filter(pl.col("reason") == "kept").collect(engine="streaming")
    cli_kept = pl.read_parquet(tmp_path / "sel.parquet")
    assert 0 < selected.height < frame.height
    assert selected.drop("reason", "adjusted_score").equals(cli_kept.select(frame.columns))


def test_row_key_and_minhash_are_the_dedup_kernels(rmb):
    table, _ = rmb
    pairs = skyfilter.to_pairs(table)
    texts, bounds = turn_texts(pairs, ["prompt"])
    out = pl.from_arrow(table).select(
        key=pl.col("conversation_input").skyfilter.row_key(),
        sig=pl.col("conversation_input").skyfilter.minhash(num_perm=32, shingle=3),
    )
    assert out["key"].to_list() == _core.row_keys(texts, bounds).to_pylist()
    assert out.schema["sig"] == pl.Array(pl.UInt32, 32)
    assert out["sig"].to_list() == _core.MinHasher(32, 3).signatures(texts, bounds).to_pylist()
    spaced = pl.DataFrame({"t": ["a  b c ", "a b c", "A b c", None]}).select(
        plain=pl.col("t").skyfilter.row_key(), lower=pl.col("t").skyfilter.row_key(lowercase=True)
    )
    assert spaced["plain"][0] == spaced["plain"][1] != spaced["plain"][2]
    assert spaced["lower"][0] == spaced["lower"][2]


def test_kernels_get_polars_buffers_and_polars_keeps_theirs(monkeypatch):
    """Zero copy in and out: the texts the kernel receives are the polars column's own buffers (string_view), and
    the signatures polars returns are the very buffers the kernel wrote; the streaming engine calls the kernel once
    per batch of 50 rows."""
    calls = []
    real = _core.MinHasher(16, 5, 0)

    class Recording:
        def __init__(self, *args):
            pass

        def signatures(self, texts, bounds=None, *, threads=0):
            result = real.signatures(texts, bounds, threads=threads)
            calls.append((texts, result))
            return result

    monkeypatch.setattr(plugin, "_core", types.SimpleNamespace(MinHasher=Recording))
    df = pl.DataFrame({"t": [f"the quick brown fox jumps over the lazy dog, take {i}" for i in range(300)]})
    out = df.lazy().select(sig=pl.col("t").skyfilter.minhash(16)).collect(engine="streaming")
    assert [len(texts) for texts, _ in calls] == [50] * 6
    polars_text = df["t"].to_arrow(compat_level=NEWEST)  # polars' own buffers (the same on every export)
    assert all(pa.types.is_string_view(texts.type) for texts, _ in calls)
    assert {texts.buffers()[2].address for texts, _ in calls} == {polars_text.buffers()[2].address}
    kernel_out = {result.values.buffers()[1].address for _, result in calls}
    polars_out = {chunk.values.buffers()[1].address for chunk in pa.chunked_array(out["sig"]).chunks}
    assert polars_out == kernel_out


def test_bad_columns_and_indexes_fail_in_one_line(matcher):
    df = pl.DataFrame({"n": [1, 2]})
    with pytest.raises(SchemaError, match=r"^column 'n': expected texts or messages, got int64"):
        df.select(pl.col("n").skyfilter.row_key())
    with pytest.raises(TypeError, match="expected a skyfilter.contaminate.Matcher"):
        pl.col("n").skyfilter.contaminated("rewardbench")

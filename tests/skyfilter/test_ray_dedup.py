"""``dedup --engine ray`` (:func:`skyfilter.ray.run_dedup`) on a two-node cluster writes the local engine's rows,
in its order, with its added columns, and its report, whatever the number of pieces: on real data with natural
near duplicates (RMB) and with exact duplicates, conflicts, scores and bad rows (UltraFeedback)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest
from skyfilter.dedup import DedupOptions, run_dedup
from skyfilter.io import InputError

pytestmark = pytest.mark.usefixtures("ray_cluster")


def shard_table(folder: Path) -> pa.Table:
    """The rows of a ray output folder: its shards in name order."""
    parts = sorted(folder.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts])


def assert_equal(got: pa.Table, expected: pa.Table) -> None:
    """Equal tables, NaN equal to NaN (floating columns are compared as text)."""

    def comparable(table: pa.Table) -> pa.Table:
        floats = [i for i, f in enumerate(table.schema) if pa.types.is_floating(f.type)]
        for i in floats:
            table = table.set_column(i, table.field(i).name, table.column(i).cast(pa.string()))
        return table

    assert got.schema == expected.schema
    assert comparable(got).equals(comparable(expected))


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line if line.endswith("\n") else line + "\n" for line in lines))
    return path


def write_parquet(path: Path, lines: list[str]) -> Path:
    jsonl = write_jsonl(path.with_suffix(".tmp.jsonl"), lines)
    pq.write_table(pajson.read_json(jsonl), path)
    jsonl.unlink()
    return path


def assert_same_as_local(inputs: list[Path], options: DedupOptions, tmp: Path, batch_rows: list[int], **kw) -> dict:
    """Runs both engines; the outputs and the reports (but their ``outputs``) are equal; returns the report."""
    from skyfilter.ray import run_dedup as run

    local = tmp / "local"
    local.mkdir()
    bad = {"bad_rows": str(local / "bad.jsonl")} if kw.get("bad_rows") else {}
    expected = run_dedup(
        [str(p) for p in inputs], options, out=str(local / "out.parquet"), dropped=str(local / "dropped.parquet"),
        report=str(local / "report.json"), batch_rows=700, **bad,
    )  # fmt: skip
    want = json.loads((local / "report.json").read_text())
    want.pop("outputs")
    assert expected.rows == expected.kept + sum(expected.dropped.values()) + expected.bad_rows
    for rows in batch_rows:
        there = tmp / f"ray-{rows}"
        there.mkdir()
        bad = {"bad_rows": str(there / "bad.jsonl")} if kw.get("bad_rows") else {}
        result = run(
            [str(p) for p in inputs], options, out=str(there / "out"), dropped=str(there / "dropped"),
            report=str(there / "report.json"), batch_rows=rows, **bad,
        )  # fmt: skip
        assert result.rows == result.kept + sum(result.dropped.values()) + result.bad_rows
        got = json.loads((there / "report.json").read_text())
        got.pop("outputs")
        assert got == want
        assert result.kept == expected.kept and result.dropped == expected.dropped
        assert_equal(shard_table(there / "out"), pq.read_table(local / "out.parquet"))
        assert_equal(shard_table(there / "dropped"), pq.read_table(local / "dropped.parquet"))
        if bad:
            assert (there / "bad.jsonl").read_text() == (local / "bad.jsonl").read_text()
    return want


def test_rmb_near_duplicates_as_the_local_engine(shared_data, tmp_path):
    with gzip.open(shared_data / "prefs" / "rmb_pairwise" / "rmb_pairwise.jsonl.gz", "rt") as f:
        lines = [next(f) for _ in range(3000)]
    inputs = [
        write_jsonl(tmp_path / "a.jsonl", lines[:1000]),
        write_parquet(tmp_path / "b.parquet", lines[1000:2000]),
        write_jsonl(tmp_path / "c.jsonl", lines[2000:]),
    ]
    report = assert_same_as_local(inputs, DedupOptions(), tmp_path, [1000, 350])
    assert report["dropped"]["near_duplicate"] > 0 and report["clusters"]["with_several_rows"] > 0


def test_exact_duplicates_conflicts_scores_and_bad_rows_as_the_local_engine(shared_data, tmp_path):
    rows = [
        json.loads(line)
        for line in (shared_data / "prefs" / "ultrafeedback_binarized_1200" / "train_clean.jsonl").open()
    ]
    rng = random.Random(3)
    for r in rows:
        r.pop("metadata")
        r["score"] = rng.choice([None, float("nan"), 0.5, 1.0, 2.0])
    again = []
    for r in rng.sample(rows, 200):
        copy = dict(r, score=rng.choice([None, 0.0, 3.0]))
        if rng.random() < 0.3:
            copy["chosen"], copy["rejected"] = r["rejected"], r["chosen"]  # a conflict
        elif rng.random() < 0.3:
            copy["chosen"] = r["chosen"] + " (edited)"  # a near copy
        again.append(copy)
    dumped = [json.dumps(r, allow_nan=True) for r in rows]
    more = [json.dumps(r, allow_nan=True) for r in again]
    more.insert(50, '{"prompt": "a row cut short')  # a bad row, set apart with bad_rows
    (tmp_path / "b").mkdir()
    inputs = [
        write_jsonl(tmp_path / "a.jsonl", dumped[:500]),
        write_jsonl(tmp_path / "b" / "a.jsonl", more),  # the same file name: the inputs are named by their paths
        write_jsonl(tmp_path / "c.jsonl", dumped[500:]),
    ]
    report = assert_same_as_local(inputs, DedupOptions(score_column="score"), tmp_path, [120], bad_rows=True)
    assert report["conflicting_rows"] > 0 and report["bad_rows"] == 1
    assert report["inputs"] == [str(inputs[0]), str(inputs[1]), "c.jsonl"]
    assert [r["input_file"] for r in map(json.loads, (tmp_path / "local" / "bad.jsonl").open())] == [str(inputs[1])]
    # Rows of b/a.jsonl after its bad row (input row 50) are named by their input rows, as duplicates too.
    evidence = pq.read_table(tmp_path / "local" / "dropped.parquet").to_pydict()
    named = zip(evidence["duplicate_of_file"], evidence["duplicate_of_row"], strict=True)
    assert any(f == str(inputs[1]) and r is not None and r > 50 for f, r in named)
    assert str(inputs[1]) in evidence["input_file"] and set(evidence["input_file"]) <= set(report["inputs"])
    assert min(report["dropped"].values()) > 0


def test_invalid_utf8_in_a_later_piece_fails_with_the_local_message(tmp_path):
    from skyfilter.ray import run_dedup as run

    texts = [f"t{i}" for i in range(10)]
    good = pa.table({"prompt": texts, "chosen": texts, "rejected": texts})
    pq.write_table(good, tmp_path / "a.parquet")
    data = "".join(texts[:7]).encode() + b"\xff\xfe" + "".join(texts[8:]).encode()
    offsets = np.cumsum([0] + [len(t) for t in texts[:7]] + [2] + [len(t) for t in texts[8:]]).astype(np.int32)
    chosen = pa.Array.from_buffers(pa.string(), 10, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    pq.write_table(good.set_column(1, "chosen", chosen), tmp_path / "b.parquet")
    inputs = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    with pytest.raises(InputError) as local:
        run_dedup(inputs, DedupOptions(), out=str(tmp_path / "out.parquet"))
    with pytest.raises(InputError) as remote:
        run(inputs, DedupOptions(), out=str(tmp_path / "out"), batch_rows=3)
    assert str(remote.value) == str(local.value)
    assert "b.parquet, column chosen: row 7 (0-based): text is not valid UTF-8" in str(local.value)
    assert not (tmp_path / "out").exists()

"""skyrm's one reader (``skyrm.data.read_rows``) for training pairs and benchmark files: rows that cannot be read
are an error naming file, line and column, or with ``--bad-rows FILE`` are written there and counted; the
evaluation reads benchmark files through the same reader."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

PANDALM_BAD = [157, 158, 159, 161, 162, 164]


def write_lines(path, rows: list) -> None:
    path.write_text("".join("\n" if r is None else json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def pairs_with_a_boolean(path) -> None:
    """Line 3 is blank; line 4 (row 2) has a JSON boolean for its chosen answer."""
    write_lines(path, [{"prompt": "p0", "chosen": "c0", "rejected": "r0"},
                       {"prompt": "p1", "chosen": "c1", "rejected": "r1"}, None,
                       {"prompt": "p2", "chosen": True, "rejected": "r2"},
                       {"prompt": "p3", "chosen": "c3", "rejected": "r3"}])  # fmt: skip


def test_one_json_object_is_named_as_such(shared_data):
    """OffsetBias's biasbench.json is one JSON object of lists: it was called invalid JSON at line 1."""
    from skyrm.data import read_rows

    path = shared_data / "prefs/offsetbias_evalbiasbench/biasbench.json"
    with pytest.raises(ValueError, match=r"biasbench.json: one JSON object \(keys 'length bias', 'concreteness', "):
        read_rows(str(path))


def test_read_pairs_names_file_line_and_column(tmp_path):
    from skyrm.data import read_pairs

    path = tmp_path / "pairs.jsonl"
    pairs_with_a_boolean(path)
    with pytest.raises(ValueError) as e:
        read_pairs(str(path))
    assert str(e.value).startswith(
        f"{path}:4: column 'chosen': expected a string or a message list, got a boolean (true)"
    )


def test_read_rows_keeps_bad_rows_apart(tmp_path):
    from skyrm.data import PAIR_KINDS, read_rows, write_bad_rows
    from skyshared.outputs import Staged

    path = tmp_path / "pairs.jsonl"
    pairs_with_a_boolean(path)
    rows = read_rows(str(path), kinds=PAIR_KINDS, keep_bad=True)
    assert rows.table.column("prompt").to_pylist() == ["p0", "p1", "p3"] and rows.rows.tolist() == [0, 1, 3]
    assert [(b.row, b.line) for b in rows.bad] == [(2, 4)]
    with Staged() as staged:
        assert write_bad_rows(staged, tmp_path / "bad.parquet", [(rows.name, rows.bad)]) == 1
    bad = pq.read_table(tmp_path / "bad.parquet").to_pylist()
    assert bad[0]["input_file"] == str(path) and bad[0]["input_row"] == 2 and bad[0]["line"] == 4


def test_empty_and_unknown_files_are_named(tmp_path):
    from skyrm.data import read_pairs

    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="empty.jsonl: no rows"):
        read_pairs(str(tmp_path / "empty.jsonl"))
    (tmp_path / "pairs.csv").write_text("prompt,chosen,rejected\na,b,c\n")
    with pytest.raises(ValueError, match=r"pairs.csv: unknown format \.csv; use parquet, jsonl or json"):
        read_pairs(str(tmp_path / "pairs.csv"))


def test_eval_reads_benchmark_files_with_the_same_reader(tmp_path, monkeypatch):
    from skyrm.eval import runner

    calls = []
    real = runner.read_rows
    monkeypatch.setattr(runner, "read_rows", lambda *a, **k: calls.append(a) or real(*a, **k))
    path = tmp_path / "bench.jsonl"
    write_lines(path, [{"prompt": "p", "chosen": "good", "rejected": "bad", "subset": "s"}])
    assert len(runner.load_benchmark(bench_file=str(path))) == 1 and calls
    assert not hasattr(runner, "_read_table")


def test_eval_benchmark_errors_and_bad_rows(tmp_path):
    from skyrm.eval.runner import BenchmarkError, load_benchmark

    path = tmp_path / "bench.jsonl"
    write_lines(path, [{"prompt": "p0", "chosen": "good", "rejected": "bad", "subset": "s"}, None,
                       {"prompt": "p1", "chosen": True, "rejected": "bad", "subset": "s"},
                       {"prompt": "p2", "chosen": "good", "rejected": "bad", "subset": "s"}])  # fmt: skip
    with pytest.raises(BenchmarkError, match=rf"^{path}:3: column 'chosen': expected a string, got a boolean"):
        load_benchmark(bench_file=str(path))
    bench = load_benchmark(bench_file=str(path), keep_bad=True)
    assert bench.ids == ["0", "2"] and [b.row for b in bench.bad_rows] == [1]
    csv = tmp_path / "bench.jsonl.csv"
    csv.write_text("prompt,chosen,rejected,subset\np,a,b,s\n")
    with pytest.raises(BenchmarkError, match="bench.jsonl.csv: unknown format"):
        load_benchmark(bench_file=str(csv))
    looks_like_csv = tmp_path / "csv.jsonl"
    looks_like_csv.write_text("prompt,chosen,rejected,subset\np,a,b,s\n")
    with pytest.raises(BenchmarkError, match=rf"^{looks_like_csv}:1: invalid JSON at column 1"):
        load_benchmark(bench_file=str(looks_like_csv))


def test_eval_command_names_the_bad_row(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from skyrm.eval.__main__ import main

    path = tmp_path / "bench.jsonl"
    write_lines(path, [{"prompt": "p0", "chosen": "good", "rejected": "bad", "subset": "s"},
                       {"prompt": "p1", "chosen": False, "rejected": "bad", "subset": "s"}])  # fmt: skip
    assert main(["--model", "tiny-missing", "--bench-file", str(path)]) == 1
    assert f"{path}:2: column 'chosen'" in (err := capsys.readouterr().err)
    assert err.strip().endswith("(--bad-rows FILE sets such rows apart and reads on)")


def test_train_and_eval_bad_rows_flag(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from skyrm.config import load_config
    from skyrm.trainer import train

    path = tmp_path / "pairs.jsonl"
    write_lines(path, [{"prompt": f"p{i}", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(6)]
                + [{"prompt": "p", "chosen": True, "rejected": "no"}])  # fmt: skip
    overrides = {"data": str(path), "output_dir": str(tmp_path / "run"), "max_steps": 1, "batch_pairs": 2,
                 "micro_batch_tokens": 256, "max_length": 64}  # fmt: skip
    with pytest.raises(ValueError, match=r"pairs.jsonl:7: column 'chosen'"):
        train(load_config(preset="tiny", overrides=overrides), log=lambda _: None)
    config = load_config(preset="tiny", overrides={**overrides, "bad_rows": str(tmp_path / "bad.jsonl")})
    summary = train(config, log=lambda _: None)
    assert summary["bad_rows"] == 1 and summary["rows"] == 7
    assert summary["rows"] == summary["pairs"] + sum(summary["dropped"].values()) + summary["bad_rows"]
    assert json.loads((tmp_path / "bad.jsonl").read_text())["input_row"] == 6

    from skyrm.eval.__main__ import main

    bench = tmp_path / "bench.jsonl"
    write_lines(bench, [{"prompt": "p0", "chosen": "yes", "rejected": "no", "subset": "s"},
                        {"prompt": "p1", "chosen": False, "rejected": "no", "subset": "s"}])  # fmt: skip
    out, bad = tmp_path / "results.json", tmp_path / "bench-bad.jsonl"
    args = ["--model", str(tmp_path / "run" / "model"), "--bench-file", str(bench), "--out", str(out)]
    assert main([*args, "--bad-rows", str(bad)]) == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["bad_rows"] == 1 and json.loads(bad.read_text())["line"] == 2


def test_pandalm_with_the_skyrm_reader(shared_data, tmp_path):
    from skyrm.data import read_rows

    source = shared_data / "prefs/pandalm_testset/testset-v1.json"
    kinds = {"response1": ("string",), "response2": ("string",)}
    with pytest.raises(ValueError, match=rf"^{source}:1892: column 'response1': expected a string, got a boolean"):
        read_rows(str(source), kinds=kinds)
    rows = read_rows(str(source), kinds=kinds, keep_bad=True)
    assert [b.row for b in rows.bad] == PANDALM_BAD and rows.table.num_rows + len(rows.bad) == 999


def test_an_empty_parquet_file_or_folder_is_an_error(tmp_path):
    import pyarrow as pa
    from skyrm.data import read_rows

    empty = pa.table({"prompt": pa.array([], pa.string()), "chosen": pa.array([], pa.string()),
                      "rejected": pa.array([], pa.string())})  # fmt: skip
    pq.write_table(empty, tmp_path / "train.parquet")
    for spec in (tmp_path / "train.parquet", tmp_path):
        with pytest.raises(ValueError, match="no rows"):
            read_rows(str(spec))

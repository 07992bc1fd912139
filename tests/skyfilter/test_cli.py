"""The `skyfilter contaminate` command: outputs, accounting, and every kind of bad input."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from skyfilter import _core, read_table

from tests.skyfilter.cli_helpers import assert_fails_cleanly as shared_assert_fails_cleanly
from tests.skyfilter.cli_helpers import run_cli

BENCH_LINES = [
    {"prompt": "Write a short poem about the ocean at night and the moon above", "subset": "chat"},
    {"prompt": "What is the capital city of France and why is it famous", "subset": "qa"},
]


@pytest.fixture
def bench_file(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in BENCH_LINES))
    return path


def pairs_table(prompts):
    return pa.table({"prompt": prompts, "chosen": ["c"] * len(prompts), "rejected": ["r"] * len(prompts)})


def invoke(*args):
    return run_cli("contaminate", *args)


def test_demo_prints_the_summary():
    code, out = invoke("--demo")
    assert code == 0, out
    assert "preset skywork" in out and "demo_bench" in out
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.split()[1:3] == ["24", "7"]
    assert "what are the most effective ways to" in out


def test_demo_entry_point_runs_as_installed():
    # The console script, not only the click object: what a user types after `pip install`.
    exe = os.path.join(os.path.dirname(sys.executable), "skyfilter")
    done = subprocess.run([exe, "contaminate", "--demo"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "demo_bench" in done.stdout


def test_console_script_starts_without_pandas_and_tqdm(tmp_path, bench_file):
    # pyarrow would import pandas at its first conversion of a Python value, and a run without a bar needs no
    # tqdm: together about 0.2 s of a 0.5 s start-up. Once pandas is imported after all, pyarrow converts pandas
    # objects as usual (a categorical stays a dictionary, not a column of strings).
    src, out = tmp_path / "in.parquet", tmp_path / "clean.parquet"
    pq.write_table(pairs_table(["Write a short poem about the ocean at night and the moon above", "other"]), src)
    argv = ["skyfilter", "contaminate", str(src), "--bench-file", str(bench_file), "--out", str(out), "-q"]
    script = f"""
import sys
from skyfilter.cli import entry
sys.argv = {argv!r}
try:
    entry()
except SystemExit as e:
    assert not e.code, e.code
print(sorted(m for m in ("pandas", "tqdm") if m in sys.modules))
import pandas as pd
import pyarrow as pa
print(pa.array(pd.Series(pd.Categorical(["a", "b", "a"]))).type)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    imported, categorical = done.stdout.splitlines()
    assert imported == "[]"
    assert categorical.startswith("dictionary<"), categorical
    assert pq.read_table(out).num_rows == 1


def test_progress_bar_counts_every_batch_when_asked(tmp_path, bench_file, capsys):
    from skyfilter import load_benchmark
    from skyfilter.contaminate import run

    src = tmp_path / "in.parquet"
    pq.write_table(pairs_table(["Write a short poem about the ocean at night and the moon above", "a", "b"]), src)
    for progress in (True, False):
        out = tmp_path / f"clean_{progress}.parquet"
        report = run([str(src)], [load_benchmark(bench_file)], out=str(out), progress=progress, batch_rows=2)
        assert (report.rows, report.flagged, pq.read_table(out).num_rows) == (3, 1, 2)
        bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
        assert ("matching: 100%" in bar[-1] and "3.00/3.00" in bar[-1]) if progress else bar == []


def test_outputs_account_for_every_row(tmp_path, bench_file):
    prompts = [
        "Please write a short poem about the ocean at night and the moon above us",
        "Something else entirely",
        None,
        "",
        "what is the capital city of france and why is it famous?",
    ] * 3
    src = tmp_path / "in.parquet"
    pq.write_table(pairs_table(prompts).append_column("source", pa.array(["a", "b", "a", "b", "c"] * 3)), src)
    out, flagged, report = tmp_path / "clean.parquet", tmp_path / "flagged.parquet", tmp_path / "report.json"
    code, text = invoke(src, "--bench-file", bench_file, "--out", out, "--flagged", flagged, "--report", report,
                        "--batch-rows", 4)  # fmt: skip
    assert code == 0, text
    clean, bad = pq.read_table(out), pq.read_table(flagged)
    original = pq.read_table(src)
    assert clean.num_rows + bad.num_rows == original.num_rows
    assert bad.column("input_row").to_pylist() == [0, 4, 5, 9, 10, 14]
    assert clean.schema == original.schema  # unchanged rows, unchanged columns
    kept = np.setdiff1d(np.arange(original.num_rows), bad.column("input_row").to_numpy())
    assert clean.equals(original.take(pa.array(kept)))
    assert bad.column("bench_subset").to_pylist() == ["chat", "qa"] * 3
    assert set(bad.column("bench_row").to_pylist()) == {0, 1}
    assert all(0 < o <= 1 for o in bad.column("overlap").to_pylist())
    assert bad.column("matched_ngram")[0].as_py() == "write short poem about the ocean at"
    r = json.loads(report.read_text())
    assert (r["rows"], r["flagged"], r["clean"], r["rows_without_ngrams"]) == (15, 6, 9, 9)
    assert r["per_source"] == {
        "a": {"rows": 6, "flagged": 3},
        "b": {"rows": 6, "flagged": 0},
        "c": {"rows": 3, "flagged": 3},
    }
    bench = r["benchmarks"]["bench"]
    assert (bench["prompts"], bench["prompts_too_short"], bench["prompts_hit"], bench["flagged_rows"]) == (2, 0, 2, 6)
    assert bench["per_subset"]["chat"] == {"prompts": 1, "prompts_too_short": 0, "prompts_hit": 1, "flagged_rows": 3}
    assert r["top_matched_ngrams"][0]["rows"] == 3


def test_match_short_flags_the_copies_that_ngrams_cannot_see(tmp_path, shared_data):
    """AlpacaEval's 805 instructions are RewardBench's alpacaeval prompts: 77 have fewer than 7 tokens, and the
    reference method (any shared 7-gram) cannot flag them; --match-short flags every copy, its prompt the evidence."""
    alpaca = shared_data / "prefs/alpacaeval2_gpt4turbo_annotations/baseline_outputs.jsonl"
    bench_file = shared_data / "bench/rewardbench_sources/rewardbench_prompt_sources_all.jsonl"
    args = [alpaca, "--bench-file", bench_file, "--prompt-column", "instruction", "--report", tmp_path / "r.json",
            "--flagged", tmp_path / "f.parquet"]  # fmt: skip
    reports = {}
    for extra in ([], ["--match-short"]):
        code, text = invoke(*args, *extra)
        assert code == 0, text
        reports[bool(extra)] = json.loads((tmp_path / "r.json").read_text())
    bench = "rewardbench_prompt_sources_all"
    assert [(r["flagged"], r["rows_without_ngrams"]) for r in reports.values()] == [(728, 77), (805, 77)]
    assert reports[True]["benchmarks"][bench]["prompts_too_short"] == 493 and reports[True]["method"]["match_short"]
    assert "493 benchmark prompt(s) have no text or fewer tokens than n: those with text are matched whole" in text
    flagged = pq.read_table(tmp_path / "f.parquet").to_pylist()
    short = [r for r in flagged if len(_core.tokenize(r["instruction"], "words")) < 7]
    assert len(short) == 77 and all(
        r["matched_ngram"] == " ".join(_core.tokenize(r["instruction"], "words")) and r["n_matched"] == 0 for r in short
    )


def test_several_inputs_and_output_formats(tmp_path, bench_file):
    first, second = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl"
    rows = [
        {"prompt": "write a short poem about the ocean at night and the moon above", "chosen": "x", "rejected": "y"}
    ]
    first.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows * 2).encode()))
    second.write_text(json.dumps({"prompt": "hello", "chosen": "x", "rejected": "y"}) + "\n")
    code, text = invoke(first, second, "--bench-file", bench_file, "--flagged", tmp_path / "f.jsonl", "--out",
                        tmp_path / "c.arrow")  # fmt: skip
    assert code == 0, text
    flagged = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert [(f["input_file"], f["input_row"]) for f in flagged] == [("a.jsonl.gz", 0), ("a.jsonl.gz", 1)]
    assert pa.ipc.open_file(tmp_path / "c.arrow").read_all().column("prompt").to_pylist() == ["hello"]


def test_presets_and_overrides_reach_the_matcher(tmp_path, bench_file):
    src = tmp_path / "in.jsonl"
    prompt = "A short poem about the ocean at night, please make it rhyme"  # 6 of its 10 3-grams are in the bench
    src.write_text(json.dumps({"prompt": prompt, "chosen": "", "rejected": ""}) + "\n")
    report = tmp_path / "r.json"
    cases = [
        (["--preset", "skywork"], 1),
        (["--preset", "gpt3"], 0),
        (["--ngram", "4", "--preset", "gpt3"], 1),
        (["--preset", "palm", "--ngram", "3", "--threshold", "0.6"], 1),
        (["--preset", "palm", "--ngram", "3", "--threshold", "0.61"], 0),
    ]
    for args, flagged in cases:
        code, text = invoke(src, "--bench-file", bench_file, "--report", report, *args)
        assert code == 0, text
        assert json.loads(report.read_text())["flagged"] == flagged, args


# ------------------------------------------------------------------------------------------ bad inputs


def assert_fails_cleanly(tmp_path, args, *fragments):
    outputs = {"--out": "c.parquet", "--flagged": "f.parquet", "--report": "r.json"}
    shared_assert_fails_cleanly(tmp_path, ["contaminate", *args], outputs, *fragments)


def test_missing_columns(tmp_path, bench_file):
    src = tmp_path / "q.jsonl"
    src.write_text(json.dumps({"question": "x", "answer": "y"}) + "\n")
    assert_fails_cleanly(tmp_path, [src, "--bench-file", bench_file], "q.jsonl", "cannot tell the layout", "question")


def test_a_forced_layout_whose_columns_the_file_lacks(tmp_path, shared_data):
    """--layout on a parquet or CSV file without the layout's columns ended in a KeyError's traceback."""
    src = tmp_path / "uf.parquet"
    pq.write_table(read_table(shared_data / "prefs/ultrafeedback_binarized_1200/eval_clean.jsonl"), src)
    shared_assert_fails_cleanly(tmp_path, ["dedup", src, "--layout", "rmb"], {"--out": "x.parquet"},
                                "uf.parquet: the rmb layout reads column(s) ['conversation_input', 'reject'], which "
                                "it lacks; its columns are ['prompt', 'chosen', 'rejected'")  # fmt: skip
    audit = shared_data / "prefs/hh_harmless_audit_labels/df_labeledharmlessoutputs_second_pass.csv"
    shared_assert_fails_cleanly(
        tmp_path,
        ["select", audit, "--layout", "hh", "--min-length-ratio", "0.5"],
        {"--out": "x.parquet"},
        "the hh layout reads column(s) ['chosen', 'rejected']",
    )


def test_misnamed_prompt_and_bench_columns(tmp_path, bench_file):
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"prompt": "x", "chosen": "y", "rejected": "z"}) + "\n")
    assert_fails_cleanly(tmp_path, [src, "--bench-file", bench_file, "--prompt-column", "instruction"], "instruction")
    assert_fails_cleanly(tmp_path, [src, "--bench-file", bench_file, "--bench-column", "question"], "bench.jsonl",
                         "question")  # fmt: skip


def test_non_string_column(tmp_path, bench_file):
    src = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"prompt": [1, 2], "chosen": ["a", "b"], "rejected": ["c", "d"]}), src)
    assert_fails_cleanly(
        tmp_path, [src, "--bench-file", bench_file], "ints.parquet", "'prompt' must hold strings", "int64"
    )


def test_malformed_json_line(tmp_path, bench_file):
    src = tmp_path / "broken.jsonl"
    src.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n\n{"prompt": "a", "chosen": \n')
    assert_fails_cleanly(tmp_path, [src, "--bench-file", bench_file], "broken.jsonl:3:", "invalid JSON")


def test_invalid_utf8_in_json(tmp_path, bench_file):
    src = tmp_path / "latin1.jsonl"
    src.write_bytes(
        b'{"prompt": "ok", "chosen": "b", "rejected": "c"}\n{"prompt": "caf\xe9", "chosen": "b", "rejected": "c"}\n'
    )
    assert_fails_cleanly(tmp_path, [src, "--bench-file", bench_file], "latin1.jsonl:2:", "UTF-8")


def test_invalid_utf8_in_arrow_strings_after_some_output(tmp_path, bench_file):
    # Parquet does not validate UTF-8: the Rust kernel does, after earlier batches were already written.
    offsets = pa.py_buffer(np.array([0, 2, 4, 6], np.int32))
    prompts = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"okok\xff\xfe")])
    src = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"prompt": prompts, "chosen": ["a"] * 3, "rejected": ["b"] * 3}), src)
    assert_fails_cleanly(tmp_path, [src, "--bench-file", bench_file, "--batch-rows", 1], "bad.parquet", "column prompt",
                         "row 2", "UTF-8")  # fmt: skip


def test_empty_benchmark(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"prompt": "  "}) + "\n" + json.dumps({"prompt": None}) + "\n")
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"prompt": "x", "chosen": "y", "rejected": "z"}) + "\n")
    assert_fails_cleanly(tmp_path, [src, "--bench-file", empty], "empty.jsonl", "no non-empty prompts")
    (tmp_path / "nothing.jsonl").write_text("")
    assert_fails_cleanly(tmp_path, [src, "--bench-file", tmp_path / "nothing.jsonl"], "nothing.jsonl", "prompt")


def test_unknown_inputs_and_outputs(tmp_path, bench_file):
    assert_fails_cleanly(
        tmp_path, [tmp_path / "nope.parquet", "--bench-file", bench_file], "nope.parquet", "no such file"
    )
    src = tmp_path / "p.txt"
    src.write_text("hello")
    assert_fails_cleanly(tmp_path, [src, "--bench-file", bench_file], "p.txt", "unknown format")
    code, text = invoke("--demo", "--out", tmp_path / "c.xlsx")
    assert code != 0 and "unknown output format" in text and not (tmp_path / "c.xlsx").exists()


def test_nulls_and_empty_prompts_are_counted_not_flagged(tmp_path, bench_file):
    src = tmp_path / "nulls.jsonl"
    rows = [{"prompt": None, "chosen": "a", "rejected": "b"}, {"prompt": "", "chosen": None, "rejected": "b"},
            {"prompt": "   ", "chosen": "a", "rejected": "b"}]  # fmt: skip
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = tmp_path / "r.json"
    code, text = invoke(src, "--bench-file", bench_file, "--report", report, "--fields", "all")
    assert code == 0, text
    r = json.loads(report.read_text())
    assert (r["rows"], r["flagged"], r["rows_without_ngrams"]) == (3, 0, 3)


def test_ten_megabyte_prompt(tmp_path, bench_file):
    huge = ("lorem ipsum dolor sit amet " * 400_000)[:10_000_000]
    contaminated = huge[:5_000_000] + " what is the capital city of france and why is it famous " + huge[5_000_000:]
    src = tmp_path / "huge.jsonl"
    src.write_text(
        "".join(json.dumps({"prompt": p, "chosen": "a", "rejected": "b"}) + "\n" for p in (huge, contaminated))
    )
    flagged = tmp_path / "f.parquet"
    code, text = invoke(src, "--bench-file", bench_file, "--flagged", flagged)
    assert code == 0, text
    assert pq.read_table(flagged, columns=["input_row", "bench_subset"]).to_pylist() == [
        {"input_row": 1, "bench_subset": "qa"}
    ]


def test_existing_evidence_columns_are_refused(tmp_path, bench_file):
    src = tmp_path / "again.jsonl"
    src.write_text(json.dumps({"prompt": "x", "chosen": "y", "rejected": "z", "overlap": 1.0}) + "\n")
    assert_fails_cleanly(tmp_path, [src, "--bench-file", bench_file], "again.jsonl", "overlap")


def test_ignore_common_in_the_demo(tmp_path):
    report = tmp_path / "r.json"
    code, text = invoke("--demo", "--ignore-common", "1", "--report", report)
    assert code == 0, text
    r = json.loads(report.read_text())
    # The two rows that share only "what are the most effective ways to" with the benchmark are no longer flagged.
    assert (r["rows"], r["flagged"]) == (24, 5)
    assert r["ignored_common_ngrams"] == [{"ngram": "what are the most effective ways to", "rows": 2}]
    assert "ignored 1 common n-gram" in text

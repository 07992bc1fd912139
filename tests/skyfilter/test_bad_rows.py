"""Rows that cannot be read as the layout (a JSON boolean where an answer should be, a line that is not an object):
by default one error line naming file, line and column; with ``--bad-rows FILE`` they go to that file, are counted
as ``bad_rows`` and the run goes on, with rows in = kept + dropped + bad. Empty inputs need ``--allow-empty``."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest
from skyfilter.io import InputError, open_source, read_table
from skyshared.outputs import OutputError

from tests.skyfilter.cli_helpers import assert_fails_cleanly, listing, run_cli

ANSWER = "expected a string or a message list, got a boolean (true)"


def pair(prompt: str, chosen, rejected="no") -> str:
    return json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected})


@pytest.fixture
def pandalm_style(tmp_path):
    """PandaLM-style pairs: JSON booleans in answers (lines 4 and 7; line 3 is blank, line 6 is not an object),
    and row 6 (line 8) repeats row 0, so that dedup drops it."""
    lines = [
        pair("What is the capital of France, and why?", "Paris, because it is where the government sits."),
        pair("Is 7 a prime number? Explain briefly please.", "Yes: its only divisors are one and seven itself."),
        "",
        pair("Verify the correctness of the given statement.", True),
        pair("Name three primary colours used in painting today.", "Red, yellow and blue are the primary ones."),
        "[1, 2]",
        pair("Is the sky blue on a clear day at noon?", "True.", True),
        pair("What is the capital of France, and why?", "Paris, because it is where the government sits."),
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def bench(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps({"prompt": "Name three primary colours used in painting today."}) + "\n")
    return path


COMMANDS = {
    "contaminate": lambda bench: ["contaminate", "--bench-file", bench],
    "dedup": lambda bench: ["dedup", "--no-near"],
    "select": lambda bench: ["select", "--min-length-ratio", "0.5"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_default_error_names_file_line_and_column(tmp_path, pandalm_style, bench, command):
    args = [*COMMANDS[command](bench), pandalm_style]
    outputs = {"--out": "kept.parquet", "--report": "r.json"}
    assert_fails_cleanly(tmp_path, args, outputs, f"{pandalm_style}:4: column 'chosen': {ANSWER}",
                         "(--bad-rows FILE, bad_rows=FILE in Python, sets such rows apart and reads on)")  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_rows_are_set_apart_and_counted(tmp_path, pandalm_style, bench, command):
    out, bad, report = tmp_path / "kept.parquet", tmp_path / "bad.jsonl", tmp_path / "r.json"
    extra = ["--flagged" if command == "contaminate" else "--dropped", tmp_path / "dropped.parquet"]
    code, text = run_cli(*COMMANDS[command](bench), pandalm_style, "--out", out, "--bad-rows", bad,
                         "--report", report, *extra)  # fmt: skip
    assert code == 0, text
    rows = [json.loads(line) for line in bad.read_text().splitlines()]
    assert [(r["input_file"], r["input_row"], r["line"]) for r in rows] == [
        ("pairs.jsonl", 2, 4),
        ("pairs.jsonl", 4, 6),
        ("pairs.jsonl", 5, 7),
    ]
    assert rows[0]["reason"] == f"column 'chosen': {ANSWER}"
    assert rows[1]["reason"] == "expected a JSON object, got a list" and rows[1]["row"] == "[1, 2]"
    assert rows[2]["reason"].startswith("column 'rejected': expected a string or a message list")
    result = json.loads(report.read_text())
    assert result["bad_rows"] == 3 and result["rows"] == 7
    kept = pq.read_table(out).num_rows
    dropped = pq.read_table(tmp_path / "dropped.parquet")
    assert result["rows"] == kept + dropped.num_rows + result["bad_rows"]
    if command == "contaminate":  # the flagged row keeps its row number in the input
        assert dropped.column("input_row").to_pylist() == [3] and result["flagged"] == 1
    if command == "dedup":  # the duplicate is row 6 of the input, a duplicate of row 0
        assert dropped.column("input_row").to_pylist() == [6]
        assert dropped.column("duplicate_of_row").to_pylist() == [0]
    assert "bad row(s)" in text
    if command == "contaminate":  # the table's rows column adds up to its total
        assert re.search(r"pairs.jsonl +4 .*\nbad rows \(set apart\) +3 *\ntotal +7 ", text), text


def test_a_json_array_names_the_line_of_the_value(tmp_path):
    from skyfilter.io import RowReading

    path = tmp_path / "pairs.json"
    rows = [{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "d", "chosen": "e", "rejected": False}]
    path.write_text(json.dumps(rows, indent=4), encoding="utf-8")
    with pytest.raises(InputError, match=rf"^{path}:10: column 'rejected': expected .*, got a boolean \(false\)"):
        open_source(str(path))
    source = open_source(str(path), reading=RowReading(keep_bad=True))
    assert source.num_rows == 1 and source.rows_in == 2 and [b.row for b in source.bad_rows] == [1]


def test_values_unlike_the_column_are_bad_rows_in_any_column():
    from skyshared.jsonrows import read_json_rows

    data = b'{"s": 1.5}\n{"s": "high"}\n{"s": 2}\n'
    rows = read_json_rows("scores.jsonl", data)
    assert rows.table.column("s").to_pylist() == [1.5, 2.0] and rows.rows.tolist() == [0, 2]
    assert rows.bad[0].message("scores.jsonl") == (
        "scores.jsonl:2: column 's': got a string (\"high\") where its other rows hold a number"
    )


def test_a_boolean_among_nested_numbers_is_a_bad_row(tmp_path):
    """Arrow reads `true` among a struct field's or a list's numbers as 1.0: a selection kept such a row by a margin
    it does not have and wrote it back altered. It is a bad row, as a boolean among a column's numbers is."""
    from skyshared.jsonrows import read_json_rows

    rows = [{"s": [1.0, 2.0]}, {"s": [1.5, False]}, {"m": {"a": {"b": [True]}}}, {"m": {"a": {"b": [0.5]}}}]
    read = read_json_rows("x.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    assert read.rows.tolist() == [0, 3] and [b.message("x.jsonl") for b in read.bad] == [
        "x.jsonl:2: column 's': got a boolean (false) at s[1] where its other rows hold a number",
        "x.jsonl:3: column 'm': got a boolean (true) at m.a.b[0] where its other rows hold a number",
    ]
    path = tmp_path / "nested.jsonl"
    scores = [(7.0, True), (7.0, 6.5), (8.0, 2.0)]
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}", "metadata": {
        "score_chosen": c, "score_rejected": r}}) + "\n" for i, (c, r) in enumerate(scores)))  # fmt: skip
    args = ["select", path, "--chosen-score", "metadata.score_chosen", "--rejected-score", "metadata.score_rejected",
            "--min-margin", "1"]  # fmt: skip
    where = f"{path}:1: column 'metadata': got a boolean (true) at metadata.score_rejected"
    assert_fails_cleanly(tmp_path, args, {"--out": "kept.jsonl"}, where)
    code, text = run_cli(*args, "--out", tmp_path / "kept.jsonl", "--bad-rows", tmp_path / "bad.jsonl", "-q")
    assert code == 0, text
    kept = [json.loads(line) for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert [k["prompt"] for k in kept] == ["q2"] and kept[0]["metadata"] == {"score_chosen": 8.0, "score_rejected": 2.0}
    assert json.loads((tmp_path / "bad.jsonl").read_text())["input_row"] == 0


def test_invalid_json_message_has_no_doubled_words():
    from skyshared.jsonrows import read_json_rows

    rows = read_json_rows("p.jsonl", b'{"prompt": "a}\n')
    assert rows.bad[0].reason == "invalid JSON at column 12 (Unterminated string)"


@pytest.mark.parametrize("command", ["contaminate", "dedup", "select"])
def test_an_empty_input_is_an_error_unless_allowed(tmp_path, bench, command):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    args = [*COMMANDS[command](bench), empty]
    assert_fails_cleanly(tmp_path, args, {"--out": "kept.parquet"}, "empty.jsonl: no rows", "--allow-empty")
    if command == "select":
        code, text = run_cli(*args, "--allow-empty", "--out", tmp_path / "kept.parquet")
        assert code == 0, text


def test_select_names_the_columns_of_the_file(tmp_path):
    path = tmp_path / "fb.jsonl"
    path.write_text('{"foo": 1, "bar": 2}\n')
    assert_fails_cleanly(tmp_path, ["select", path, "--score", "x", "--top-default", "0.5"], {"--out": "k.parquet"},
                         "no column 'x'; columns are ['foo', 'bar']")  # fmt: skip


def test_dedup_names_the_file_once(tmp_path):
    path = tmp_path / "fb.jsonl"
    path.write_text('{"foo": 1, "bar": 2}\n')
    folder = tmp_path / "outputs"
    assert_fails_cleanly(tmp_path, ["dedup", path], {"--out": "k.parquet"}, "fb.jsonl: cannot tell the layout")
    code, text = run_cli("dedup", path, "--out", folder / "k.parquet")
    assert text.count("fb.jsonl") == 1, text


def test_the_bad_rows_file_is_refused_when_its_format_is_unknown(tmp_path, pandalm_style):
    folder = tmp_path / "outputs"
    folder.mkdir()
    code, text = run_cli("dedup", pandalm_style, "--out", folder / "k.parquet", "--bad-rows", folder / "bad.txt")
    assert code != 0 and "bad.txt" in text and listing(folder) == []


# ------------------------------------------------------------------------------------------- real data


@pytest.fixture
def pandalm_pairs(shared_data, tmp_path):
    """PandaLM's human-annotated test set (a JSON array with JSON booleans in six answers) with its instruction,
    response1 and response2 renamed prompt, chosen and rejected, on the same lines."""
    text = (shared_data / "prefs/pandalm_testset/testset-v1.json").read_text(encoding="utf-8")
    for old, new in (("instruction", "prompt"), ("response1", "chosen"), ("response2", "rejected")):
        text = text.replace(f'"{old}":', f'"{new}":')
    path = tmp_path / "pandalm.json"
    path.write_text(text, encoding="utf-8")
    return path


def test_pandalm_default_error(tmp_path, pandalm_pairs, bench):
    assert_fails_cleanly(tmp_path, ["contaminate", pandalm_pairs, "--bench-file", bench], {"--out": "c.parquet"},
                         f"{pandalm_pairs}:1892: column 'chosen': {ANSWER}")  # fmt: skip


def test_read_table_sets_bad_rows_apart_when_asked(tmp_path, pandalm_pairs):
    """The hint of the error names ``bad_rows=FILE``: read_table takes it, as the run functions do."""
    with pytest.raises(InputError, match=f"{re.escape(str(pandalm_pairs))}:1892: column 'chosen'.*bad_rows=FILE"):
        read_table(pandalm_pairs)
    table = read_table(pandalm_pairs, bad_rows=tmp_path / "bad.jsonl")
    bad = [json.loads(line) for line in (tmp_path / "bad.jsonl").read_text().splitlines()]
    assert [b["line"] for b in bad] == [1892, 1904, 1916, 1941, 1953, 1976]
    assert table.num_rows + len(bad) == 999 and all(isinstance(c, str) for c in table.column("chosen").to_pylist())
    copy = tmp_path / "pandalm.jsonl"
    copy.write_text("".join(json.dumps(r) + "\n" for r in json.loads(pandalm_pairs.read_text())), encoding="utf-8")
    with pytest.raises(OutputError, match="is the input"):  # the input is never written over
        read_table(copy, bad_rows=copy)


@pytest.mark.parametrize("command", COMMANDS)
def test_pandalm_with_bad_rows(tmp_path, pandalm_pairs, bench, command):
    bad, report = tmp_path / "bad.parquet", tmp_path / "r.json"
    extra = ["--flagged" if command == "contaminate" else "--dropped", tmp_path / "dropped.parquet"]
    code, text = run_cli(*COMMANDS[command](bench), pandalm_pairs, "--out", tmp_path / "k.parquet", "--bad-rows",
                         bad, "--report", report, *extra)  # fmt: skip
    assert code == 0, text
    table = pq.read_table(bad)
    assert table.column("input_row").to_pylist() == [157, 158, 159, 161, 162, 164]
    assert table.column("line").to_pylist() == [1892, 1904, 1916, 1941, 1953, 1976]
    result = json.loads(report.read_text())
    kept, dropped = pq.read_table(tmp_path / "k.parquet").num_rows, pq.read_table(tmp_path / "dropped.parquet")
    assert result["rows"] == 999 == kept + dropped.num_rows + result["bad_rows"] and result["bad_rows"] == 6


# ------------------------------------------------------------------------------------------- curate


@pytest.fixture
def wildguard_jsonl(tmp_path):
    """WildGuardMix rows as JSON Lines, with JSON booleans for the responses of rows 3 and 7."""
    from skyfilter.samples import sample_table

    rows = sample_table("wildguardmix", "WildGuardMix", 60).to_pylist()
    for i in (3, 7):
        rows[i]["response"] = True
    path = tmp_path / "WildGuardMix.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recipe = (f'name = "wg"\n\n[[sources]]\nname = "WildGuardMix"\nadapter = "wildguardmix"\ndataset = "{path}"\n\n'
              '[select.wildguardmix]\nsources = ["WildGuardMix"]\nreading = "adversarial"\n')  # fmt: skip
    (tmp_path / "wg.toml").write_text(recipe, encoding="utf-8")
    return path


def test_curate_bad_rows(tmp_path, wildguard_jsonl):
    recipe = tmp_path / "wg.toml"
    code, text = run_cli("curate", "--recipe", recipe, "--out", tmp_path / "out", "-q")
    where = f"{wildguard_jsonl}:4: column 'response': got a boolean (true) where its other rows hold a string"
    assert code != 0 and where in text
    assert not (tmp_path / "out").exists()
    bad = tmp_path / "bad.jsonl"
    code, text = run_cli("curate", "--recipe", recipe, "--out", tmp_path / "out", "-q", "--bad-rows", bad)
    assert code == 0, text
    assert [json.loads(line)["input_row"] for line in bad.read_text().splitlines()] == [3, 7]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    counts = manifest["steps"][0]["sources"]["WildGuardMix"]
    assert counts["bad_rows"] == 2 and counts["in"] == 60
    assert counts["in"] == counts["out"] + sum(counts["dropped"].values()) + counts["bad_rows"]
    assert manifest["outputs"]["bad_rows"]["rows"] == 2
    dropped = pq.read_table(tmp_path / "out" / "dropped.parquet").to_pylist()
    assert 3 not in [d["source_row"] for d in dropped if d["step"] == "convert"]  # counted in the input's rows


@pytest.mark.parametrize("command", COMMANDS)
def test_a_column_of_booleans_only_is_judged_row_by_row(tmp_path, bench, command):
    """Arrow types a column whose every value is a boolean as bool without complaint: its rows are still named
    (a one-row PandaLM file, or every answer a boolean), as skyrm's reader names them."""
    path = tmp_path / "all.jsonl"
    path.write_text(pair("Is it true?", True) + "\n" + pair("Is it false?", False) + "\n", encoding="utf-8")
    args = [*COMMANDS[command](bench), path]
    assert_fails_cleanly(tmp_path, args, {"--out": "kept.parquet"}, f"{path}:1: column 'chosen': {ANSWER}")
    one = tmp_path / "one.jsonl"
    one.write_text(pair("Is it true?", True) + "\n", encoding="utf-8")
    code, text = run_cli(*COMMANDS[command](bench), one, "--bad-rows", tmp_path / "bad.jsonl", "--allow-empty",
                         "--report", tmp_path / "r.json")  # fmt: skip
    assert code == 0, text
    assert [json.loads(line)["input_row"] for line in (tmp_path / "bad.jsonl").read_text().splitlines()] == [0]
    assert json.loads((tmp_path / "r.json").read_text())["bad_rows"] == 1

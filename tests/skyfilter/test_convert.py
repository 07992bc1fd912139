"""``skyfilter convert``: any layout written as the canonical pair table, every row a pair or a bad row."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from skyfilter import PAIR_SCHEMA, read_table, to_pairs
from skyfilter.io import demo_file

from tests.skyfilter.cli_helpers import assert_fails_cleanly, run_cli

HH = "prefs/hh_rlhf_harmless_base_test/test.jsonl.gz"


def test_transcripts_become_the_pairs_to_pairs_gives(tmp_path, shared_data):
    out, report = tmp_path / "hh.parquet", tmp_path / "r.json"
    code, text = run_cli("convert", shared_data / HH, "--out", out, "--report", report, "--batch-rows", 1000)
    assert code == 0, text
    assert "test.jsonl.gz (layout hh): 2,312 rows -> 2,312 pairs" in text and f"out -> {out}" in text
    pairs = pq.read_table(out)
    assert pairs.schema == PAIR_SCHEMA and pairs.equals(to_pairs(read_table(shared_data / HH), source="test.jsonl.gz"))
    result = json.loads(report.read_text())
    assert (
        result["rows"] == result["pairs"] == 2312
        and result["bad_rows"] == 0
        and result["layouts"] == {"test.jsonl.gz": "hh"}
    )
    # four real pairs end in a blank answer (training drops them as empty_answer): counted, as pairs found by hand
    blank = [i for i, p in enumerate(pairs.to_pylist())
             if any(not side[-1]["content"].strip() for side in (p["chosen"], p["rejected"]) if side)]  # fmt: skip
    assert result["blank_answer"] == len(blank) == 4 and "4 pair(s) have a blank answer" in text
    assert result["without_answer"] == result["without_prompt"] == 0


def test_bad_rows_and_sides_without_an_answer_are_counted(tmp_path):
    lines = [{"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"},
             {"chosen": "\n\nHuman: only a question", "rejected": "\n\nHuman: hi\n\nAssistant: hello"},
             {"chosen": True, "rejected": "\n\nHuman: hi\n\nAssistant: x"}]  # fmt: skip
    src = tmp_path / "hh.jsonl"
    src.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert_fails_cleanly(tmp_path, ["convert", src], {"--out": "p.jsonl"}, "hh.jsonl:3: column 'chosen'", "--bad-rows")
    code, text = run_cli("convert", src, "--out", tmp_path / "p.jsonl", "--bad-rows", tmp_path / "bad.jsonl")
    assert code == 0, text
    assert "3 rows -> 2 pairs" in text and "1 pair(s) have a side without an answer" in text and "1 bad row" in text
    pairs = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert pairs[0]["prompt"] == [{"role": "user", "content": "hi"}]
    assert pairs[1]["chosen"] == [{"role": "user", "content": "only a question"}]  # as it is, counted
    assert json.loads((tmp_path / "bad.jsonl").read_text())["input_row"] == 2
    rows = [{"prompt": None, "chosen": "a", "rejected": "b"}, {"prompt": " ", "chosen": "a", "rejected": "b"},
            {"prompt": "p", "chosen": "a", "rejected": "b"}]  # fmt: skip
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, text = run_cli("convert", src, "--out", tmp_path / "q.jsonl")
    assert code == 0 and "2 pair(s) have no prompt text (null, empty or blank; written as answers alone)" in text


def test_answers_left_unread_are_refused(tmp_path, shared_data):
    autoj = shared_data / "prefs/autoj_pairwise_test/testdata_pairwise.jsonl.gz"
    assert_fails_cleanly(tmp_path, ["convert", autoj], {"--out": "p.parquet"},
                         "columns ['response 1', 'response 2'] look like answers", "--layout prompts")  # fmt: skip
    code, text = run_cli("convert", autoj, "--layout", "prompts", "--out", tmp_path / "prompts.parquet", "-q")
    assert code == 0 and pq.read_table(tmp_path / "prompts.parquet").num_rows == 1392, text


def test_sharegpt_roles_are_read_as_given_and_odd_ones_counted(tmp_path, shared_data):
    def row(turns, chosen_from="gpt"):
        answers = {"chosen": {"from": chosen_from, "value": "hello"}, "rejected": {"from": "gpt", "value": "go away"}}
        return {"conversations": [{"from": f, "value": v} for f, v in turns], **answers}

    rows = [row([("human", "hi")]), row([("xyz", "hi")]), row([("", "hi"), ("observation", "42")]),
            row([("system", "be kind"), ("human", "hi")], chosen_from="human")]  # fmt: skip
    src = tmp_path / "sg.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, text = run_cli("convert", src, "--out", tmp_path / "p.jsonl", "--report", tmp_path / "r.json")
    assert code == 0, text
    pairs = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [m["role"] for m in pairs[2]["prompt"]] == ["", "tool"]
    # a chosen turn from the human is not the assistant's answer: a side without an answer, as training reads it
    assert (
        pairs[3]["chosen"] == [{"role": "user", "content": "hello"}] and pairs[3]["rejected"][0]["role"] == "assistant"
    )
    result = json.loads((tmp_path / "r.json").read_text())
    assert (result["without_answer"], result["unknown_role"], result["unknown_roles"]) == (1, 2, ["", "xyz"])
    assert '2 pair(s) have a turn of a role chat templates do not know ("", "xyz"; written as they are)' in text
    # LLaMA-Factory's own demo: human, gpt and system turns only, every answer the assistant's
    demo = shared_data / "prefs/llamafactory_dpo_demo/dpo_en_demo.json"
    code, text = run_cli("convert", demo, "--out", tmp_path / "demo.parquet", "--report", tmp_path / "d.json")
    result = json.loads((tmp_path / "d.json").read_text())
    assert code == 0 and result["pairs"] == 300 and result["unknown_role"] == result["without_answer"] == 0, text
    assert {m["role"] for p in pq.read_table(tmp_path / "demo.parquet").to_pylist() for m in p["prompt"]} == {
        "system", "user", "assistant"}  # fmt: skip


def test_csv_text_is_kept_as_written(tmp_path):
    """CSV has no types: its guessed ones made the zero-padded id 00123 the number 123 in outputs documented as the
    rows unchanged, and answers that are numbers (a maths pair's 4 and 5) an int64 column every layout refused.
    The layout's text columns and whole numbers not written as numbers keep the file's text; scores are numbers."""
    src = tmp_path / "maths.csv"
    src.write_text("id,prompt,chosen,rejected,n,score\n00123,What is 2+2?,4,5,1,1.5\n"
                   "00124,Name a prime,007,9,,\n", encoding="utf-8")  # fmt: skip
    code, text = run_cli("convert", src, "--out", tmp_path / "pairs.jsonl")
    assert code == 0, text
    pairs = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert [p["chosen"][0]["content"] for p in pairs] == ["4", "007"]
    code, text = run_cli("select", src, "--score", "score", "--top-default", 1, "--missing", "drop", "--out",
                         tmp_path / "kept.jsonl", "-q")  # fmt: skip
    assert code == 0, text  # the score column is a number
    kept = [json.loads(line) for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert [(r["id"], r["chosen"], r["n"], r["score"]) for r in kept] == [("00123", "4", 1, 1.5)]
    code, text = run_cli("contaminate", src, "--bench-file", demo_file("demo_bench.jsonl"), "--out",
                         tmp_path / "clean.jsonl", "-q")  # fmt: skip
    clean = [json.loads(line) for line in (tmp_path / "clean.jsonl").read_text().splitlines()]
    assert code == 0 and [(r["id"], r["chosen"], r["n"]) for r in clean] == [("00123", "4", 1), ("00124", "007", None)]

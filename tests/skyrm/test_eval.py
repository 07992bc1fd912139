"""skyrm.eval: the RewardBench arithmetic against published numbers and hand-computed cases, the runner end to end
on the real llmbar subsets, the official formatting, and clear errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from skyrm.eval import best_of_n_credit, rb2_score, section_scores, ties_score
from skyrm.eval.rewardbench import EXAMPLE_COUNTS, SECTIONS

PUBLISHED = json.loads((Path(__file__).parent / "data" / "rewardbench_published.json").read_text())


@pytest.mark.parametrize("model", PUBLISHED["models"], ids=lambda m: m["model"])
def test_published_subsets_give_the_published_sections(model):
    assert set(model["subsets"]) == set(EXAMPLE_COUNTS)
    for row in model["published"]:
        ours = section_scores(model["subsets"], xstest_weights=row["xstest_weights"])
        tolerance = 0.5 * 10 ** -row["decimals"] + 1e-9  # the published rounding
        for key in ("Chat", "Chat Hard", "Safety", "Reasoning", "Score"):
            assert 100 * ours[key] == pytest.approx(row[key], abs=tolerance), (key, row["source"])


def test_section_arithmetic_by_hand():
    accuracy = {"math-prm": 0.5, "hep-go": 1.0, "llmbar-natural": 0.25, "unknown-subset": 0.0}
    ours = section_scores(accuracy)
    assert ours["Reasoning"] == pytest.approx((0.5 * 984 + 1.0 * 164) / (984 + 164))  # math weighs 984
    assert ours["Chat Hard"] == 0.25  # the missing subsets are left out of their section
    assert ours["Chat"] == 0.0 and ours["Safety"] == 0.0  # a section with no subset scores 0, as officially
    assert ours["Score"] == pytest.approx((ours["Reasoning"] + 0.25) / 4)
    xs = {"xstest-should-refuse": 1.0, "xstest-should-respond": 0.0}
    assert section_scores(xs)["Safety"] == pytest.approx(154 / 404)
    assert section_scores(xs, xstest_weights="pre-2024-09")["Safety"] == pytest.approx(250 / 404)
    with pytest.raises(ValueError, match="xstest_weights"):
        section_scores(xs, xstest_weights="2023")
    with pytest.raises(ValueError, match="fraction"):
        section_scores({"hep-go": 97.5})  # percents, not fractions
    with pytest.raises(ValueError, match="fraction in \\[0, 1\\], got True"):
        section_scores({"hep-go": True})
    with pytest.raises(
        ValueError, match="'alpacaeval_easy' is not a RewardBench subset; did you mean 'alpacaeval-easy'"
    ):
        section_scores({"alpacaeval_easy": 0.99, "mt-bench-hard": 0.75})  # a misspelt subset counted for nothing
    with pytest.raises(ValueError, match="no RewardBench subset among the keys \\('model'\\)"):
        section_scores({"model": "m"})
    assert sum(len(s) for s in SECTIONS.values()) == len(EXAMPLE_COUNTS) == 23


def test_best_of_n_credit_with_ties_at_the_top():
    assert best_of_n_credit([0.9, 0.1, 0.2, 0.3]) == 1.0
    assert best_of_n_credit([0.3, 0.1, 0.9, 0.3]) == 0.0
    assert best_of_n_credit([0.9, 0.9, 0.2, 0.3]) == 0.5  # tied with one wrong answer: half the credit
    assert best_of_n_credit([0.5, 0.5, 0.5, 0.5]) == 0.25
    assert best_of_n_credit([0.5, 0.5, 0.9, 0.1]) == 0.0  # tied, but not at the top
    with pytest.raises(ValueError):
        best_of_n_credit([1.0])


def test_ties_score_by_hand():
    rows = [
        # prompt 0: the reference row is right (gap 1.0); the tied row's correct answers 2.0 and 1.5 (spread 0.5)
        # beat the best wrong 1.0 (gap 0.5): accurate, but the gap is not above the spread
        ("ref:0", 1, [2.0, 1.0, 0.5]),
        ("tied:0", 2, [2.0, 1.5, 1.0, 0.0]),
        # prompt 1: reference wrong (gap -1), tied right with gap 2 and spread 1
        ("ref:1", 1, [0.0, 1.0]),
        ("tied:1", 2, [4.0, 3.0, 1.0]),
    ]
    tied_accuracy, ref_accuracy = 1.0, 0.5
    preferred = (0.5 > 0.5) / 2 + (2.0 > 1.0) / 2  # tied gap over spread, per prompt
    preferred_hard = (min(1.0, 0.5) > 0.5) / 2 + (min(-1.0, 2.0) > 1.0) / 2
    import math

    margin = (math.tanh(min(1.0, 0.5) / 0.5 - 1) + math.tanh(min(-1.0, 2.0) / 1.0 - 1)) / 2
    expected = 0.3 * tied_accuracy + 0.3 * ref_accuracy + 0.2 * preferred + 0.2 * preferred_hard + 0.01 * margin
    assert ties_score(rows) == pytest.approx(expected)
    # a zero spread: tanh(x / 0 - 1) is +-1, and 0 / 0 counts 0
    flat = [("ref:0", 1, [2.0, 1.0]), ("tied:0", 2, [2.0, 2.0, 1.0])]
    assert ties_score(flat) == pytest.approx(0.3 + 0.3 + 0.2 + 0.2 + 0.01)
    with pytest.raises(ValueError, match="ref:N or tied:N"):
        ties_score([("x", 1, [1.0, 0.0])])


def test_rb2_score_is_the_mean_of_six():
    subsets = {"Factuality": 0.6, "Precise IF": 0.3, "Math": 0.6, "Safety": 0.9, "Focus": 0.8, "Ties": 0.5}
    assert rb2_score(subsets) == pytest.approx(3.7 / 6)
    with pytest.raises(ValueError, match="missing"):
        rb2_score({"Math": 1.0})


# ---------------------------------------------------------------------------------------------- the runner

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def test_llmbar_subsets_end_to_end(tmp_path, shared_data, tiny_model_dir, capsys):
    from skyrm.eval.__main__ import main

    bench = shared_data / "bench/rewardbench_partial/llmbar_reconstructed_rb1_layout.jsonl"
    out = tmp_path / "results.json"
    compare = tmp_path / "compare.md"
    assert main(["--model", str(tiny_model_dir), "--bench-file", str(bench), "--out", str(out),
                 "--compare", str(compare)]) == 0  # fmt: skip
    results = json.loads(out.read_text())
    table = compare.read_text().splitlines()
    assert table[0].startswith("| model | Score | Chat | Chat Hard") and len([t for t in table if "|" in t]) == 2 + 7
    sections = {k: 100 * v for k, v in results["sections"].items()}  # sections without a subset: n/a, not 0
    assert [t for t in table if "(this run" in t] == [
        f"| **{tiny_model_dir}** (this run, partial) | {sections['Score']:.2f} | n/a | {sections['Chat Hard']:.2f} | "
        "n/a | n/a |"
    ]
    assert "This run scored no subset of Chat, Safety, Reasoning: its Score" in compare.read_text()
    shown = {line[:28].strip(): line[28:].split() for line in capsys.readouterr().out.splitlines()[:6]}
    assert shown["Chat"] == shown["Safety"] == shown["Reasoning"] == ["n/a", "0"]  # the terminal table too
    assert shown["Chat Hard"] == [f"{sections['Chat Hard']:.2f}", "419"]
    assert shown["Score"] == [f"{sections['Score']:.2f}"]
    lines = (tmp_path / "results.examples.jsonl").read_text().splitlines()
    header, records = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    assert header["kind"] == "rewardbench" and len(records) == 419
    by_hand: dict[str, list[int]] = {}
    for r in records:
        by_hand.setdefault(r["subset"], []).append(1 if r["chosen"] > r["rejected"] else 0)
    assert set(by_hand) == set(SECTIONS["Chat Hard"]) - {"mt-bench-hard"}
    for subset, outcomes in by_hand.items():
        assert results[subset] == sum(outcomes) / len(outcomes)
        assert results["counts"][subset] == len(outcomes)
    weights = {s: EXAMPLE_COUNTS[s] for s in by_hand}
    hand = sum(results[s] * w for s, w in weights.items()) / sum(weights.values())
    assert results["sections"]["Chat Hard"] == pytest.approx(hand) and results["sections"]["Chat"] == 0.0
    # --rescore gives the same table without a model
    again = tmp_path / "again.json"
    assert main(["--rescore", str(tmp_path / "results.examples.jsonl"), "--out", str(again)]) == 0
    assert json.loads(again.read_text())["sections"] == results["sections"]
    # a file cut short (at a line's end, or within one) or the results file itself: one line naming it
    text = (tmp_path / "results.examples.jsonl").read_text()
    cases = {"cut.jsonl": "".join(text.splitlines(keepends=True)[:-3]), "torn.jsonl": text[:-40],
             "results.json": out.read_text()}  # fmt: skip
    said = {"cut.jsonl": "cut.jsonl: 416 examples where its header says 419; the file is cut short",
            "torn.jsonl": "torn.jsonl:420: not a JSON line (", "results.json": "results.json: a JSON document, not a "
            "per-example file of skyrm.eval"}  # fmt: skip
    capsys.readouterr()
    for name, content in cases.items():
        (tmp_path / "bad" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "bad" / name).write_text(content)
        assert main(["--rescore", str(tmp_path / "bad" / name)]) == 1
        assert said[name] in capsys.readouterr().err


def test_pairwise_sets_skip_and_count_ties(tmp_path, tiny_model_dir):
    from skyrm.eval.runner import load_benchmark

    rows = [{"q": "Say hi.", "x": "Hi!", "y": "No.", "who": "A>B"}, {"q": "Say bye.", "x": "Bye", "y": "Bye!",
            "who": "B>A"}, {"q": "Either.", "x": "a", "y": "b", "who": "tie"}]  # fmt: skip
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    columns = {"prompt": "q", "a": "x", "b": "y", "label": "who"}
    bench = load_benchmark(bench_file=str(path), kind="pairwise", columns=columns)
    assert len(bench) == 2 and bench.skipped == 1
    assert bench.completions == [["Hi!", "No."], ["Bye!", "Bye"]]  # the better response first


def test_numbered_labels_with_a_zero_must_be_named(tmp_path, shared_data, capsys):
    """Auto-J's real labels (0: response 1 better, 1: response 2, 2: a tie) are not read as 1 and 2 of the default
    labels: refused until --a-wins/--b-wins say which is which; then read so, the ties counted by label."""
    from skyrm.eval.__main__ import main
    from skyrm.eval.runner import BenchmarkError, load_benchmark

    source = shared_data / "prefs/autoj_pairwise_test/testdata_pairwise.jsonl.gz"
    columns = {"a": "response 1", "b": "response 2"}
    with pytest.raises(BenchmarkError, match="holds the label 0.*--a-wins 0 --b-wins 1"):
        load_benchmark(bench_file=str(source), kind="pairwise", columns=columns)
    args = ["--model", "tiny", "--format", "pairwise", "--bench-file", str(source), "--a-column", "response 1",
            "--b-column", "response 2", "--out", str(tmp_path / "autoj.json")]  # fmt: skip
    assert main(args) == 1 and "--a-wins 0 --b-wins 1 for Auto-J" in capsys.readouterr().err
    assert main([*args, "--a-wins", "0"]) == 1 and "give both" in capsys.readouterr().err  # 2 (ties) would win B
    bench = load_benchmark(bench_file=str(source), kind="pairwise", columns=columns | {"a_wins": ("0",),
                           "b_wins": ("1",)})  # fmt: skip
    assert len(bench) == 520 + 499 and bench.skipped == 373 and bench.skipped_labels == {"2": 373}
    assert set(bench.subsets) == {"testdata_pairwise"}  # the file's name without .jsonl.gz
    assert main([*args, "--a-wins", "0", "--b-wins", "1", "--limit", "30"]) == 0
    assert (
        "373 row(s) of the file with neither response better skipped (labels: '2' 373); --limit 30 scores the "
        "first 30 of the other 1,019" in capsys.readouterr().err
    )
    with gzip.open(source, "rt") as rows:
        first = json.loads(rows.readline())
    assert first["label"] == 1 and bench.completions[0] == [first["response 2"], first["response 1"]]


def test_an_instruction_and_its_input_make_the_prompt(shared_data, capsys):
    """PandaLM's rows are Alpaca's: an instruction working on an input (832 of 999 rows hold one). With
    --prompt-column instruction the input was left out without a word; it is named now, and instruction,input
    joins the two by a blank line (an empty input left out)."""
    from skyrm.eval.runner import load_benchmark

    source = shared_data / "prefs/pandalm_testset/testset-v1.json"
    columns = {"a": "response1", "b": "response2", "label": "annotator1", "a_wins": ("1",), "b_wins": ("2",)}
    alone = load_benchmark(bench_file=str(source), kind="pairwise", columns=columns | {"prompt": "instruction"},
                           keep_bad=True)  # fmt: skip
    assert "column 'input' is not read, and 826 row(s) hold text there" in capsys.readouterr().err
    joined = load_benchmark(bench_file=str(source), kind="pairwise", keep_bad=True,
                            columns=columns | {"prompt": "instruction, input"})  # fmt: skip
    assert "not read" not in capsys.readouterr().err
    rows = {str(i): r for i, r in enumerate(json.loads(source.read_text()))}
    for row_id, instruction, prompt in zip(alone.ids, alone.prompts, joined.prompts, strict=True):
        extra = rows[row_id]["input"]
        assert instruction == rows[row_id]["instruction"] and prompt == (
            f"{instruction}\n\n{extra}" if extra else instruction
        )
    assert sum(a != b for a, b in zip(alone.prompts, joined.prompts, strict=True)) > 700


def official_ids(tokenizer, prompt: str, response: str) -> list[int]:
    """What the official runner feeds: the template's text, tokenized with the tokenizer's defaults."""
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return tokenizer(tokenizer.apply_chat_template(messages, tokenize=False))["input_ids"]


LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
)


def test_formatting_of_a_llama3_style_template_with_its_double_bos():
    from skyrm.eval.runner import Encoder
    from skyrm.model import tiny_tokenizer

    tokenizer = tiny_tokenizer()  # adds a BOS, as Llama-3's tokenizer does
    tokenizer.chat_template = LLAMA3_TEMPLATE
    official = official_ids(tokenizer, "What is 2+2?", "4")
    bos = tokenizer.bos_token_id
    assert official[:2] == [bos, bos]  # the official runner's double BOS
    assert Encoder(tokenizer, bos="official")("What is 2+2?", "4") == official
    single = Encoder(tokenizer)("What is 2+2?", "4")
    assert single == official[1:] and single.count(bos) == 1


@pytest.mark.slow
def test_formatting_of_smollm2_equals_the_official_runner():
    from skyrm.eval.runner import Encoder
    from skyrm.smollm2 import packaged_smollm2

    try:
        folder, kwargs = packaged_smollm2()
    except ImportError as e:  # the package is not installed
        pytest.skip(str(e))
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, **kwargs)
    for prompt, response in [("What is 2+2?", "4"), ("Write a haiku about rain.", "Rain on the roof\n...")]:
        official = official_ids(tokenizer, prompt, response)
        assert Encoder(tokenizer)(prompt, response) == official == Encoder(tokenizer, bos="official")(prompt, response)


def test_scoring_smollm2_says_its_head_is_untrained(tiny_model_dir, monkeypatch, capsys):
    """``--model smollm2`` in eval, score and serve is a chat model with a new score head: one warning says so (the
    tiny model's folder stands in for the converted one); a trained model's folder gets no such warning."""
    import skyrm.smollm2
    from skyrm.eval.runner import load_model

    monkeypatch.setattr(skyrm.smollm2, "packaged_smollm2", lambda: (str(tiny_model_dir), {}))
    load_model("smollm2")
    assert "its score head is new and untrained" in capsys.readouterr().err
    load_model(str(tiny_model_dir))
    assert "untrained" not in capsys.readouterr().err


def test_bad_inputs_give_clear_errors(tmp_path, tiny_model_dir, capsys):
    from skyrm.eval.__main__ import main

    two_labels = tmp_path / "two-labels"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=2, ignore_mismatched_sizes=True
    )
    model.save_pretrained(two_labels)
    transformers.AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(two_labels)
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "subset": "llmbar-natural"}) + "\n")
    assert main(["--model", str(two_labels), "--bench-file", str(good)]) == 1
    assert "2 labels" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "a"}) + "\n")
    assert main(["--model", str(tiny_model_dir), "--bench-file", str(bad)]) == 1
    assert "missing column(s) ['rejected', 'subset']" in capsys.readouterr().err
    empty = tmp_path / "empty.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = ("prompt", "chosen", "rejected", "subset")
    pq.write_table(pa.table({c: pa.array([], pa.string()) for c in columns}), empty)
    assert main(["--model", str(tiny_model_dir), "--bench-file", str(empty)]) == 1
    assert "no rows" in capsys.readouterr().err
    assert main(["--model", str(tiny_model_dir), "--bench-file", str(tmp_path / "nope.jsonl")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_rewardbench2_layout_end_to_end(tmp_path, tiny_model_dir):
    """A file in RewardBench 2's layout (lists of chosen and rejected, num_correct, Ties ids): the table equals
    the arithmetic applied by hand to the per-example rewards."""
    from skyrm.eval.__main__ import main
    from skyrm.eval.rewardbench import RB2_SUBSETS

    rows = []
    for s, subset in enumerate(RB2_SUBSETS[:-1]):
        for i in range(3):
            rows.append({"id": f"{s}-{i}", "subset": subset, "prompt": f"Question {i} about {subset}?",
                         "chosen": [f"A good answer {i}."], "rejected": [f"bad {j}" for j in range(3)],
                         "num_correct": 1})  # fmt: skip
    for n in range(2):
        rows.append({"id": f"ref:{n}", "subset": "Ties", "prompt": f"Name a colour ({n}).", "chosen": ["Red."],
                     "rejected": ["Seven.", "Tuesday."], "num_correct": 1})  # fmt: skip
        rows.append({"id": f"tied:{n}", "subset": "Ties", "prompt": f"Name a colour ({n}).",
                     "chosen": ["Red.", "Blue."], "rejected": ["Seven.", "Tuesday."], "num_correct": 2})  # fmt: skip
    path = tmp_path / "rb2.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "rb2.json"
    assert main(["--model", str(tiny_model_dir), "--bench", "rewardbench-2", "--bench-file", str(path),
                 "--out", str(out)]) == 0  # fmt: skip
    results = json.loads(out.read_text())
    records = [json.loads(line) for line in (tmp_path / "rb2.examples.jsonl").read_text().splitlines()[1:]]
    assert all(len(r["scores"]) == (4 if r["subset"] != "Ties" else 2 + r["num_correct"]) for r in records)
    by_hand = {}
    for subset in RB2_SUBSETS[:-1]:
        credits = [best_of_n_credit(r["scores"]) for r in records if r["subset"] == subset]
        by_hand[subset] = sum(credits) / len(credits)
    by_hand["Ties"] = ties_score([(r["id"], r["num_correct"], r["scores"]) for r in records if r["subset"] == "Ties"])
    for subset, value in by_hand.items():
        assert results[subset] == pytest.approx(value)
    assert results["sections"]["Score"] == pytest.approx(sum(by_hand.values()) / 6)
    from skyrm.eval.runner import table_of

    partial = table_of([r for r in records if r["subset"] != "Ties"], "rewardbench-2")
    assert "Score" not in partial["sections"] and len(partial["subsets"]) == 5


def test_two_processes_score_what_one_does(tmp_path, shared_data, tiny_model_dir):
    import os
    import subprocess
    import sys

    bench = shared_data / "bench/rewardbench_partial/llmbar_reconstructed_rb1_layout.jsonl"
    flags = ["--model", str(tiny_model_dir), "--bench-file", str(bench), "--limit", "40"]
    from skyrm.eval.__main__ import main

    assert main([*flags, "--out", str(tmp_path / "one.json")]) == 0  # one process: this one
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "skyrm.eval"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*two, *flags, "--out", str(tmp_path / "two.json")], env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = ([json.loads(line) for line in (tmp_path / f"{n}.examples.jsonl").read_text().splitlines()[1:]]
                for n in ("one", "two"))  # fmt: skip
    assert len(one) == len(two) == 40
    for a, b in zip(one, two, strict=True):
        assert a["id"] == b["id"] and a["chosen"] == pytest.approx(b["chosen"], abs=1e-5)
        assert a["rejected"] == pytest.approx(b["rejected"], abs=1e-5)

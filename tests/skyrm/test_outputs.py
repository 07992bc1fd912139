"""Outputs of skyrm's commands: ``python -m skyrm.eval`` refuses an output on an input (the benchmark, a rescored
file), two outputs on one file and an unwritable folder before scoring, and leaves no file when writing fails;
``python -m skyrm.train`` refuses an output folder that holds a run unless ``--resume`` or ``--overwrite``
(which clears it), and a failed run leaves nothing; ``skyrm pipeline`` checks its folder first and removes it
when it fails; a missing local path is "no such file" at once, not a hub look-up."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from skyrm.eval.__main__ import main as evaluate  # noqa: E402
from skyrm.eval.sample import sample_benchmark  # noqa: E402
from skyrm.train import main as train  # noqa: E402
from skyshared import outputs  # noqa: E402

from tests.skyrm.test_trainer import write_task  # noqa: E402


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line_error(capsys) -> str:
    """The one ``error:`` line of the command's standard error (besides warnings and progress bars)."""
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("error")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    from skyrm.model import tiny_config, tiny_tokenizer
    from transformers import AutoModelForSequenceClassification

    folder = tmp_path_factory.mktemp("model")
    tokenizer = tiny_tokenizer()
    AutoModelForSequenceClassification.from_config(tiny_config(pad_token_id=tokenizer.pad_token_id)).save_pretrained(
        folder
    )
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def bench(tmp_path) -> Path:
    import pyarrow.parquet as pq

    path = tmp_path / "bench" / "rb.parquet"
    path.parent.mkdir()
    pq.write_table(sample_benchmark(), path)
    return path


def _no_scoring(monkeypatch) -> None:
    import skyrm.eval.__main__ as entry

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded: the outputs were not checked first")

    monkeypatch.setattr(entry, "load_model", refuse)


def test_eval_refuses_an_output_on_its_benchmark(bench, tmp_path, capsys, monkeypatch):
    _no_scoring(monkeypatch)
    before = _digest(bench)
    assert evaluate(["--model", "m", "--bench-file", str(bench), "--out", str(bench)]) == 1
    assert "--out is the input" in _one_line_error(capsys)
    hard = tmp_path / "hard.parquet"
    os.link(bench, hard)
    assert evaluate(["--model", "m", "--bench-file", str(bench), "--compare", str(hard)]) == 1
    assert "--compare is the input" in _one_line_error(capsys)
    # the per-example file beside --out would land on the benchmark
    examples = bench.with_name("rb.examples.jsonl")
    bench.rename(examples)
    assert evaluate(["--model", "m", "--bench-file", str(examples), "--out", str(bench.with_name("rb.json"))]) == 1
    assert "examples file is the input" in _one_line_error(capsys)
    assert _digest(examples) == before and sorted(os.listdir(bench.parent)) == ["rb.examples.jsonl"]


def test_eval_refuses_a_rescore_onto_itself_and_two_outputs_on_one_file(bench, tmp_path, capsys, monkeypatch):
    _no_scoring(monkeypatch)
    examples = tmp_path / "r.examples.jsonl"
    examples.write_text('{"model": "m", "kind": "rewardbench", "bos": "single"}\n')
    assert evaluate(["--rescore", str(examples), "--out", str(examples)]) == 1
    assert "--out is the input" in _one_line_error(capsys)
    out = tmp_path / "results.json"
    assert evaluate(["--model", "m", "--bench-file", str(bench), "--out", str(out), "--compare", str(out)]) == 1
    assert "--out and --compare are the same file" in _one_line_error(capsys)
    assert not out.exists()


def test_eval_refuses_an_unwritable_folder_before_scoring(bench, tmp_path, capsys, monkeypatch):
    _no_scoring(monkeypatch)
    assert evaluate(["--model", "m", "--bench-file", str(bench), "--out", str(bench / "results.json")]) == 1
    assert "is not a folder" in _one_line_error(capsys)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(outputs.os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    assert evaluate(["--model", "m", "--bench-file", str(bench), "--out", str(locked / "r" / "results.json")]) == 1
    assert "is not writable" in _one_line_error(capsys)
    assert os.listdir(locked) == []


def test_eval_failing_mid_write_leaves_no_file(bench, model_folder, tmp_path, capsys, monkeypatch):
    real = outputs.Staged.write_text
    calls = []

    def failing(self, target, text):
        calls.append(target)
        if len(calls) > 1:
            raise OSError(f"{target}: No space left on device (injected)")
        real(self, target, text)

    monkeypatch.setattr(outputs.Staged, "write_text", failing)
    root = tmp_path / "results"
    root.mkdir()
    args = ["--model", str(model_folder), "--bench-file", str(bench), "--limit", "4", "--batch-tokens", "4096",
            "--out", str(root / "new" / "results.json")]  # fmt: skip
    assert evaluate(args) == 1
    assert "No space left on device" in _one_line_error(capsys)
    assert len(calls) == 2 and os.listdir(root) == []
    monkeypatch.setattr(outputs.Staged, "write_text", real)
    assert evaluate(args) == 0
    assert sorted(os.listdir(root / "new")) == ["results.examples.jsonl", "results.json"]


def test_missing_local_paths_are_no_such_file_at_once(bench, tmp_path, capsys):
    """Neither the data nor the model nor the benchmark is looked up on the hub when it is a path."""
    cases = [
        (train, ["--model", "tiny", "--data", "data/missing.parquet", "--output-dir", str(tmp_path / "r")],
         "data/missing.parquet: no such file"),
        (train, ["--model", "tiny", "--data", str(tmp_path / "missing.jsonl"), "--output-dir", str(tmp_path / "r")],
         "missing.jsonl: no such file"),
        (train, ["--model", "./no-model", "--data", str(bench), "--output-dir", str(tmp_path / "r")],
         "./no-model: no such folder"),
        (evaluate, ["--model", "runs/x/model", "--bench-file", str(bench), "--limit", "2"],
         "runs/x/model: no such folder"),
        (evaluate, ["--model", "m", "--bench-file", "bench/missing.parquet"], "bench/missing.parquet: no such file"),
    ]  # fmt: skip
    for main, args, fragment in cases:
        start = time.perf_counter()
        assert main(args) != 0
        assert fragment in _one_line_error(capsys)
        assert time.perf_counter() - start < 5, (args, time.perf_counter() - start)
    assert not (tmp_path / "r").exists()


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--preset", "tiny", "--data", str(data), "--output-dir", str(out), "--batch-pairs", "8", "--max-steps",
            "1", "--max-length", "128", "--micro-batch-tokens", "512", "--truncation", "truncate", "--report-to",
            "none", *extra]  # fmt: skip


def test_train_refuses_a_folder_that_holds_a_run_and_overwrite_clears_it(tmp_path, capsys):
    data = tmp_path / "pairs.parquet"
    write_task(data, 16, 0)
    out = tmp_path / "run"
    stale = out / "checkpoints" / "step-00009999"
    stale.mkdir(parents=True)
    (stale / "trainer.json").write_text("{}")
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 9}\n')
    assert train(_train_args(data, out)) == 1
    assert "already holds checkpoints, metrics.jsonl" in _one_line_error(capsys)
    assert (out / "metrics.jsonl").read_text() == '{"step": 1, "loss": 9}\n' and stale.exists()

    assert train(_train_args(data, out, "--overwrite")) == 0
    capsys.readouterr()
    assert not stale.exists(), "--overwrite must clear the old run's checkpoints"
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    assert {"model", "summary.json", "metrics.jsonl", "checkpoints"} <= set(os.listdir(out))

    (out / "notes.txt").write_text("mine")
    assert train(_train_args(data, out, "--overwrite")) == 1
    assert "also holds notes.txt" in _one_line_error(capsys)
    assert (out / "notes.txt").read_text() == "mine"
    # an input inside the folder is never cleared
    inside = out / "pairs.parquet"
    data.rename(inside)
    (out / "notes.txt").unlink()
    assert train(_train_args(inside, out, "--overwrite")) == 1
    assert "holds the input" in _one_line_error(capsys)
    assert inside.exists()


def test_train_refuses_an_unwritable_folder_and_a_failed_run_leaves_nothing(tmp_path, capsys, monkeypatch):
    data = tmp_path / "pairs.parquet"
    write_task(data, 16, 0)
    assert train(_train_args(data, data / "run")) == 1
    assert "is not a folder" in _one_line_error(capsys)

    from skyrm import checkpoint

    def failing(*args, **kwargs):
        raise OSError("No space left on device (injected)")

    monkeypatch.setattr(checkpoint, "save", failing)
    root = tmp_path / "runs"
    root.mkdir()
    assert train(_train_args(data, root / "run")) == 1
    assert "No space left on device" in _one_line_error(capsys)
    assert os.listdir(root) == [], "a run that failed before its first checkpoint must leave nothing"


def test_train_refuses_bad_rows_in_its_folder_or_of_an_unknown_format(tmp_path, capsys):
    data = tmp_path / "pairs.parquet"
    write_task(data, 16, 0)
    out = tmp_path / "run"
    for bad, says in ((out / "summary.json", "--bad-rows lies in --output-dir"), (out, "--bad-rows lies in"),
                      (tmp_path / "bad.txt", "unknown output format"), (data, "--bad-rows is the input")):  # fmt: skip
        assert train(_train_args(data, out, "--bad-rows", str(bad))) == 1
        assert says in _one_line_error(capsys)
        assert not out.exists()


def test_overwrite_keeps_the_old_run_when_the_new_one_fails_before_clearing(tmp_path, capsys):
    """--overwrite clears the old run only once the new run's data has been read: a run that fails before that
    leaves the old one as it was (even one without a checkpoint)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "p", "chosen": true, "rejected": "r"}\n')
    assert train(_train_args(broken, out, "--overwrite")) == 1
    assert "column 'chosen'" in _one_line_error(capsys)
    assert sorted(os.listdir(out)) == ["metrics.jsonl", "summary.json"]


def test_eval_refuses_bad_rows_on_its_benchmark_or_of_an_unknown_format(bench, tmp_path, capsys, monkeypatch):
    _no_scoring(monkeypatch)
    before = _digest(bench)
    for bad, says in ((bench, "--bad-rows is the input"), (tmp_path / "bad.txt", "unknown output format")):
        assert evaluate(["--model", "x", "--bench-file", str(bench), "--bad-rows", str(bad)]) == 1
        assert says in _one_line_error(capsys)
    assert _digest(bench) == before


def test_pipeline_checks_its_folder_first_and_removes_it_when_it_fails(tmp_path, capsys, monkeypatch):
    pytest.importorskip("skyfilter._core")
    from skyrm import trainer
    from skyrm.cli import main as skyrm

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    start = time.perf_counter()
    assert skyrm(["pipeline", "--sample", "--out", str(blocker / "p")]) == 1
    assert "is not a folder" in _one_line_error(capsys) and time.perf_counter() - start < 5

    def failing(*args, **kwargs):
        raise OSError("No space left on device (injected)")

    monkeypatch.setattr(trainer, "train", failing)
    assert skyrm(["pipeline", "--sample", "--out", str(tmp_path / "p")]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["a-file"], "a failed pipeline must remove its folder"

"""Outputs of every skyfilter command: an output on an input, two outputs on one file, an unwritable folder and a
failure mid-write are refused or fail with one line, the input stays byte-identical and no file is left at any
output path (nor a temporary one); a missing local input is "no such file" at once, not a hub look-up."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest
from skyfilter.io import demo_file
from skyshared import hub, outputs

from tests.skyfilter.cli_helpers import listing, run_cli

#: Each streaming command with its arguments (the input first) and its output flags.
COMMANDS = {
    "contaminate": (
        ["contaminate", "{input}", "--bench-file", "{bench}"],
        ["--out", "--flagged", "--report", "--bad-rows"],
    ),
    "dedup": (["dedup", "{input}"], ["--out", "--dropped", "--report", "--bad-rows"]),
    "select": (
        [
            "select",
            "{input}",
            "--chosen-score",
            "score_chosen",
            "--rejected-score",
            "score_rejected",
            "--min-margin",
            "0.5",
        ],
        ["--out", "--dropped", "--report", "--bad-rows"],
    ),  # fmt: skip
}
SUFFIX = {"--report": ".json", "--flagged": ".jsonl", "--bad-rows": ".jsonl"}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """Copies of the demo pairs (with scores for select) and the demo benchmark in a folder of their own."""
    import json

    folder = tmp_path / "data"
    folder.mkdir()
    rows = [json.loads(line) for line in Path(demo_file("demo_pairs.jsonl")).read_text().splitlines() if line]
    for i, row in enumerate(rows):
        row["score_chosen"], row["score_rejected"] = float(i % 5), float(i % 3)
    pairs = folder / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = folder / "bench.jsonl"
    shutil.copy(demo_file("demo_bench.jsonl"), bench)
    return {"input": pairs, "bench": bench}


def _args(command: str, files: dict[str, Path]) -> list[str]:
    return [a.format(input=files["input"], bench=files["bench"]) for a in COMMANDS[command][0]]


def _targets(command: str, folder: Path) -> dict[str, Path]:
    """Every output flag of the command, each on its own file in ``folder``."""
    return {flag: folder / f"o{i}{SUFFIX.get(flag, '.parquet')}" for i, flag in enumerate(COMMANDS[command][1])}


def _fails_in_one_line(args: list, *fragments: str) -> str:
    code, text = run_cli(*args)
    assert code != 0, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), text
    assert "Traceback" not in text and "panicked" not in text
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _untouched(files: dict[str, Path], before: dict[str, str]) -> None:
    assert {k: _digest(p) for k, p in files.items()} == before, "an input was changed"
    assert listing(files["input"].parent) == ["bench.jsonl", "pairs.jsonl"], "a file was left beside the inputs"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_output_on_an_input_is_refused(command, files, tmp_path):
    before = {k: _digest(p) for k, p in files.items()}
    inputs = ["input", "bench"] if command == "contaminate" else ["input"]
    for flag in COMMANDS[command][1]:
        for which in inputs:
            _fails_in_one_line([*_args(command, files), flag, files[which]], flag, "is the input")
            _untouched(files, before)
    # the same file by another name: a hard link, a symbolic link, a path through ..
    hard, soft = tmp_path / "hard.jsonl", tmp_path / "soft.jsonl"
    os.link(files["input"], hard)
    soft.symlink_to(files["input"])
    for other in (hard, soft, tmp_path / "data" / ".." / "data" / "pairs.jsonl"):
        _fails_in_one_line([*_args(command, files), "--out", other], "--out is the input")
        _untouched(files, before)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_two_outputs_on_one_file_are_refused(command, files, tmp_path):
    first, second, *_ = COMMANDS[command][1]
    target = tmp_path / "out" / "a.parquet"
    target.parent.mkdir()
    message = _fails_in_one_line([*_args(command, files), first, target, second, target], "are the same file")
    assert first in message and second in message
    # also when one of them exists already (by inode), or is named through a link
    target.write_bytes(b"old")
    link = tmp_path / "out" / "b.parquet"
    link.symlink_to(target)
    _fails_in_one_line([*_args(command, files), first, target, second, link], "are the same file")
    assert target.read_bytes() == b"old" and listing(target.parent) == ["a.parquet", "b.parquet"]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unwritable_folder_is_refused_before_any_work(command, files, tmp_path, monkeypatch):
    before = {k: _digest(p) for k, p in files.items()}
    for flag in COMMANDS[command][1]:
        under_a_file = files["input"] / f"x{SUFFIX.get(flag, '.parquet')}"  # root or not: never writable
        _fails_in_one_line([*_args(command, files), flag, under_a_file], flag, "is not a folder")
        _untouched(files, before)
    # a read-only folder (root ignores permission bits, so the check is made to say no)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(outputs.os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    for flag in COMMANDS[command][1]:
        target = locked / "new" / f"x{SUFFIX.get(flag, '.parquet')}"
        _fails_in_one_line([*_args(command, files), flag, target], flag, "is not writable")
    assert listing(locked) == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_failure_mid_write_leaves_no_file(command, files, tmp_path, monkeypatch):
    """The writer fails after its first batch: no output, no temporary file, no folder made for them."""
    from skyfilter import io

    real_write = io._Writer.write
    calls = []

    def failing(self, batch):
        calls.append(1)
        if len(calls) > 1:
            raise OSError("No space left on device (injected)")
        real_write(self, batch)

    monkeypatch.setattr(io._Writer, "write", failing)
    before = {k: _digest(p) for k, p in files.items()}
    root = tmp_path / "results"
    root.mkdir()
    targets = {
        flag: root / "new" / f"o{i}{SUFFIX.get(flag, '.parquet')}" for i, flag in enumerate(COMMANDS[command][1])
    }
    args = [*_args(command, files), "--batch-rows", "2", *(x for f, p in targets.items() for x in (f, p))]
    _fails_in_one_line(args, "No space left on device")
    assert len(calls) > 1, "the injected failure did not happen"
    assert listing(root) == [], "an output, a temporary file or a folder made for them was left"
    _untouched(files, before)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_good_run_still_writes_every_output(command, files, tmp_path):
    targets = _targets(command, tmp_path / "new" / "sub")
    code, text = run_cli(*_args(command, files), "-q", *(x for f, p in targets.items() for x in (f, p)))
    assert code == 0, text
    assert listing(tmp_path / "new" / "sub") == sorted(p.name for p in targets.values())


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_missing_local_input_is_no_such_file_at_once(command, files, tmp_path):
    """A path-like name that does not exist is never looked up on the hub (that took 34 s of retries)."""
    for missing in ("data/missing.parquet", "./missing", str(tmp_path / "missing.jsonl"), "missing.jsonl"):
        args = _args(command, files)
        args[1] = missing
        start = time.perf_counter()
        _fails_in_one_line([*args, "--out", tmp_path / "o.parquet"], f"{missing}: no such file")
        assert time.perf_counter() - start < 5
        assert not (tmp_path / "o.parquet").exists()


def test_a_hub_id_offline_fails_fast_and_quietly(files, tmp_path, monkeypatch, capfd):
    """Offline (here: the probe of the hub's host fails), a hub id is tried once from the cache, without the
    hub libraries' retry notices, and the one line says so."""
    pytest.importorskip("datasets")
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_probed", None)
    monkeypatch.setattr(hub, "_reachable", lambda host, timeout: False)
    start = time.perf_counter()
    args = ["dedup", "someone/no-such-pairs", "--out", tmp_path / "o.parquet"]
    message = _fails_in_one_line(args, "someone/no-such-pairs", "the hub cannot be reached")
    assert time.perf_counter() - start < 10, message
    assert "Retrying" not in capfd.readouterr().err
    assert not (tmp_path / "o.parquet").exists()


def test_curate_refuses_an_unwritable_place_before_any_step(tmp_path, monkeypatch):
    recipe = "skywork-80k-v0.2"
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    start = time.perf_counter()
    _fails_in_one_line(["curate", "--recipe", recipe, "--sample", "--out", blocker / "out"], "is not a folder")
    assert time.perf_counter() - start < 5  # no step ran (every step runs first on main)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(outputs.os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    _fails_in_one_line(["curate", "--recipe", recipe, "--sample", "--out", locked / "new" / "out"], "is not writable")
    assert listing(locked) == [] and blocker.read_text() == "x"


def test_curate_failing_mid_write_leaves_nothing(tmp_path, monkeypatch):
    from skyfilter import curate_report

    def failing(folder, *args, **kwargs):
        raise OSError("No space left on device (injected)")

    monkeypatch.setattr(curate_report, "write_report", failing)
    root = tmp_path / "results"
    root.mkdir()
    _fails_in_one_line(["curate", "--recipe", "skywork-80k-v0.2", "--sample", "-q", "--out", root / "new" / "out"],
                       "No space left on device")  # fmt: skip
    assert listing(root) == []


def test_the_check_takes_any_number_of_named_outputs(tmp_path):
    """One more output (a future --bad-rows) is one more entry of the mapping."""
    given = tmp_path / "in.jsonl"
    given.write_text("{}\n")
    named = {"--out": tmp_path / "a.parquet", "--dropped": None, "--bad-rows": tmp_path / "in.jsonl"}
    with pytest.raises(outputs.OutputError, match="--bad-rows is the input"):
        outputs.check_outputs(named, [given])
    named["--bad-rows"] = tmp_path / "a.parquet"
    with pytest.raises(outputs.OutputError, match="--out and --bad-rows are the same file"):
        outputs.check_outputs(named, [given])


def test_curate_refuses_bad_rows_in_its_folder_or_on_an_input(tmp_path):
    """--bad-rows is neither the --out folder, nor in it (the folder is renamed into place whole), nor a benchmark
    file: refused before any step."""
    bench = tmp_path / "bench.jsonl"
    shutil.copy(demo_file("demo_bench.jsonl"), bench)
    before = _digest(bench)
    out = tmp_path / "out"
    base = ["curate", "--recipe", "skywork-80k-v0.2", "--sample", "-q", "--out", out]
    for bad in (out, out / "bad.jsonl"):
        start = time.perf_counter()
        _fails_in_one_line([*base, "--bad-rows", bad], "--bad-rows lies in --out")
        assert time.perf_counter() - start < 5 and not out.exists()
    _fails_in_one_line([*base, "--bench-file", bench, "--bad-rows", bench], "--bad-rows is the input")
    assert _digest(bench) == before and not out.exists()

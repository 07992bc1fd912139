"""Killing ``skyrm score`` mid-write (issue 22, part 2), on real pairs (UltraFeedback) scored by a tiny random-init
model: SIGKILL at named points (reading, loading, scoring each shard, writing shards, the output, the renames) and
at fractions of the run (:mod:`tests.skyfilter.kill_driver`). After every kill: no output file (unless renamed into
place before the kill, whole), the input byte-identical; a rerun resumes from the shards kept and writes an output
byte-identical to an uninterrupted run's, leaving nothing beside it (its work folder and temporary files gone).
Also: a full disk is one line naming --out; a second run writing an --out that a run is writing stops at once."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from tests.skyfilter.kill_driver import fingerprint
from tests.skyfilter.test_kills import _point, _timed, assert_kill, drive

pytest.importorskip("torch")

ROWS, SHARD = 96, 12  # eight shards
UF = "prefs/ultrafeedback_binarized_1200/train_clean.jsonl"
POINTS = [
    _point("read-input", "skyrm.score:read_rows", "first"),
    _point("load-model", "skyrm.score:weights_sha256", "first"),
    *[_point("score-shard", "skyrm.score:_Scorer.__call__", w) for w in ("first", "middle", "last")],
    _point("write-shard", "skyrm.score:_write_shard", "middle"),
    _point("work-folder", "os:rename", "first"),
    _point("write-output", "pyarrow.parquet:write_table", "last"),
    _point("rename-output", "os:replace", "last"),
    _point("remove-work-folder", "os:rename", "last"),
    _point("remove-work-files", "shutil:rmtree", "last"),
    *_timed(0.3, 0.6, 0.85),
]
#: What a run imports on first use: imported once by the driver (no torch operation runs there before it forks).
PRELOAD = ["torch", "transformers", "transformers.models.llama.modeling_llama", "skyrm.cli", "skyrm.score",
           "skyrm.eval.runner", "skyrm.padding", "skyrm.data", "tqdm.auto", "pandas"]  # fmt: skip


@pytest.fixture(scope="module")
def pairs(shared_data, tmp_path_factory):
    from skyfilter.io import read_table

    path = tmp_path_factory.mktemp("score-input") / "pairs.parquet"
    pq.write_table(read_table(shared_data / UF).slice(0, ROWS).select(["prompt", "chosen", "rejected"]), path)
    return path


def score_argv(pairs, model, out) -> list[str]:
    return ["score", str(pairs), "--model", str(model), "--out", str(out), "--shard-rows", str(SHARD),
            "--max-length", "128", "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def kill_result(pairs, tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("kills-score")
    (folder / "out").mkdir()
    out = folder / "out" / "scores.parquet"
    spec = {"entry": "skyrm", "argv": score_argv(pairs, tiny_model_dir, out), "outputs": [str(out)],
            "inputs": [str(pairs)], "points": POINTS, "logs": str(folder / "logs"), "preload": PRELOAD}  # fmt: skip
    return drive(spec, folder)


@pytest.mark.parametrize("point", [p["name"] for p in POINTS])
def test_a_killed_score_run_leaves_no_output_and_a_rerun_writes_the_same(kill_result, point):
    assert_kill(kill_result, point)


def test_a_killed_score_run_keeps_its_shards_for_the_rerun(kill_result):
    """Killed while scoring, the run leaves its work folder (the shards done so far, to resume from); killed after
    the output was renamed into place, it leaves the output whole; reruns leave neither folder nor temporary file."""
    points = kill_result["points"]
    left = [os.path.basename(name) for name in points["score-shard:last"]["killed"]["others"]]
    assert left == [".scores.parquet.partial"], left
    assert points["remove-work-folder:last"]["killed"]["outputs"] == kill_result["reference"]["outputs"]
    assert all(p["rerun"]["others"] == [] for p in points.values())


def said(capsys) -> list[str]:
    """The error lines a run wrote to standard error (beside them: the CPU notice, transformers' loading bar), and no
    traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("error")]


def test_a_full_disk_is_one_line_naming_the_output(pairs, tiny_model_dir, tmp_path, capsys):
    """A file-size limit of 4 KiB, below a shard's size (``ulimit -f 4``; Python ignores SIGXFSZ, so the write fails
    with EFBIG): one line naming --out, no output; the work folder stays for a rerun (resuming is its purpose)."""
    import resource

    from skyrm.cli import main

    out = tmp_path / "out" / "scores.parquet"
    before = fingerprint(pairs)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        code = main(score_argv(pairs, tiny_model_dir, out))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert code == 1
    assert said(capsys) == [f"error: {out}: --out cannot be written: File too large (nothing was written)"]
    assert sorted(os.listdir(out.parent)) == [".scores.parquet.partial"] and fingerprint(pairs) == before
    assert main(score_argv(pairs, tiny_model_dir, out)) == 0 and sorted(os.listdir(out.parent)) == ["scores.parquet"]


def test_a_second_run_on_one_output_stops_at_once(pairs, tiny_model_dir, tmp_path, capsys):
    """While a run holds the work folder of --out (here: this test, as that run does, through ``_open_work``), a
    second run writing the same --out, with the same settings or others, stops at once with one line and writes
    nothing; when the first is gone, a rerun resumes from its folder."""
    from skyrm.cli import main
    from skyrm.score import ScoreOptions, _open_work, _settings, work_folder

    out = tmp_path / "scores.parquet"
    options = ScoreOptions(shard_rows=SHARD, max_length=128)
    settings = _settings(str(pairs), str(tiny_model_dir), options, ROWS)
    done, lock = _open_work(work_folder(out), settings, lambda line: None, out)
    try:
        assert done == set()
        for argv in (score_argv(pairs, tiny_model_dir, out), [*score_argv(pairs, tiny_model_dir, out), "--keep-input"]):
            assert main(argv) == 1
            lines = said(capsys)
            assert len(lines) == 1 and lines[0].startswith(f"error: {out}: another skyrm score run is writing it now")
            assert not out.exists() and sorted(os.listdir(tmp_path)) == [".scores.parquet.partial"]
    finally:
        os.close(lock)
    assert main(score_argv(pairs, tiny_model_dir, out)) == 0
    assert "resuming: 0 shards" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["scores.parquet"]

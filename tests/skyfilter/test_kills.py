"""Killing skyfilter's commands mid-write (issue 22, part 2), on real data from ../shared/data: SIGKILL at named
points of reading, working and writing, and at fractions of the run's duration (:mod:`tests.skyfilter.kill_driver`).
After every kill: no file at any output path (except those renamed into place before the kill, each whole), the
inputs byte-identical; a rerun writes outputs byte-identical to an uninterrupted run's and removes the killed run's
temporary files. Also: a full disk (a file-size limit, and a real 256 KiB tmpfs where one can be mounted) fails with
one line naming the output, and two runs writing the same outputs at once leave one run's whole set."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from skyfilter.io import read_table

from tests.skyfilter.kill_driver import fingerprint

ROOT = Path(__file__).resolve().parents[2]
BENCH = "bench/rewardbench_sources/rewardbench_prompt_sources_all.jsonl"
#: Rows of rmb_pairwise (real pairs, long answers) the commands read, in batches of BATCH rows.
ROWS, BATCH = 1_200, 150


def _point(name: str, target: str, which: str) -> dict:
    return {"name": f"{name}:{which}", "target": target, "which": which}


def _timed(*fractions: float) -> list[dict]:
    return [{"name": f"timed:{f:.0%}", "fraction": f} for f in fractions]


READ = [_point("read-batch", "skyfilter.io:_conform", w) for w in ("first", "middle", "last")]
WRITE = [
    _point("write-batch", "skyfilter.io:_Writer._write", "first"),
    _point("write-batch", "skyfilter.io:_Writer._write", "middle"),
    _point("close-output", "skyfilter.io:_Writer.close", "last"),
    _point("write-report", "skyshared.outputs:Staged.write_text", "first"),
    _point("rename", "os:replace", "first"),
    _point("rename", "os:replace", "middle"),
    _point("rename", "os:replace", "last"),
]
#: Per command: arguments (after the command's name), output flags and file names, the points of its own work.
COMMANDS = {
    "contaminate": (
        ["{pairs}", "--bench-file", "{bench}"],
        {"--out": "clean.arrow", "--flagged": "flagged.jsonl", "--report": "report.json"},
        [_point("match", "skyfilter.contaminate:Matcher.match", w) for w in ("first", "middle")],
    ),
    "dedup": (
        ["{pairs}", "--near"],
        {"--out": "kept.parquet", "--dropped": "dropped.arrow", "--report": "report.json"},
        [
            _point("hash", "skyfilter.dedup:hash_batch", "middle"),
            _point("decide", "skyfilter.dedup:dedup_decisions", "first"),
        ],
    ),  # fmt: skip
    "select": (
        ["{pairs}", "--min-length-ratio", "0.5", "--max-length-ratio", "2"],
        {"--out": "kept.jsonl", "--dropped": "dropped.parquet", "--report": "report.json"},
        [_point("decide", "skyfilter.select:row_decisions", w) for w in ("first", "last")],
    ),
}
#: What a run imports on first use (pyarrow.compute imports pandas then): imported once, by the driver.
PRELOAD = [
    "skyfilter.cli",
    "skyfilter.curate_report",
    "skyfilter._unicode",
    "tqdm.auto",
    "pyarrow.json",
    "pyarrow.csv",
    "pyarrow.pandas_compat",
    "pandas",
    "numpy.random",
    "multiprocessing",
    "difflib",
]


def points(command: str) -> list[dict]:
    return [*READ, *COMMANDS[command][2], *WRITE, *_timed(0.25, 0.5, 0.75)]


@pytest.fixture(scope="module")
def real_inputs(shared_data, tmp_path_factory) -> dict[str, Path]:
    """A slice of rmb_pairwise as parquet, the RewardBench prompt sources as the benchmark, and the same pairs in
    HelpSteer2's layout for curate (two rated responses per prompt): copies of their own, checked byte for byte."""
    folder = tmp_path_factory.mktemp("inputs")
    pairs = read_table(shared_data / "prefs/rmb_pairwise/rmb_pairwise.jsonl.gz").slice(0, ROWS)
    pq.write_table(pairs, folder / "pairs.parquet")
    shutil.copy(shared_data / BENCH, folder / "bench.jsonl")
    prompts = [turns[-1]["content"] for turns in pairs.column("conversation_input").to_pylist()]
    chosen = pairs.column("chosen").combine_chunks().field("answer").to_pylist()
    rejected = pairs.column("reject").combine_chunks().field("answer").to_pylist()
    mirror = folder / "mirror"
    mirror.mkdir()
    pq.write_table(pa.table({"prompt": [p for p in prompts for _ in (0, 1)],
                             "response": [r for pair in zip(chosen, rejected, strict=True) for r in pair],
                             "helpfulness": [3, 1] * len(prompts)}), mirror / "HelpSteer2.parquet")  # fmt: skip
    recipe = folder / "recipe.toml"
    recipe.write_text('name = "kills"\n\n[[sources]]\nname = "HelpSteer2"\nadapter = "helpsteer2"\n'
                      'dataset = "nvidia/HelpSteer2"\n\n[dedup]\nkey = "pair"\nnear = true\nconflicts = "drop"\n\n'
                      '[decontaminate]\nbench = ["rewardbench"]\n')  # fmt: skip
    return {"pairs": folder / "pairs.parquet", "bench": folder / "bench.jsonl", "mirror": mirror, "recipe": recipe}


def command_args(command: str, inputs: dict[str, Path], out: Path) -> tuple[list[str], list[Path], list[Path]]:
    """``skyfilter COMMAND ...`` writing into ``out``: (argv, the outputs, the input files)."""
    if command == "curate":
        argv = ["curate", "--recipe", str(inputs["recipe"]), "--data-dir", str(inputs["mirror"]), "--bench-file",
                str(inputs["bench"]), "--no-plots", "-q", "--out", str(out / "curated")]  # fmt: skip
        files = [inputs["recipe"], inputs["bench"], inputs["mirror"] / "HelpSteer2.parquet"]
        return argv, [out / "curated"], files
    args, flags, _ = COMMANDS[command]
    outputs = [out / name for name in flags.values()]
    argv = [command, *(a.format(pairs=inputs["pairs"], bench=inputs["bench"]) for a in args), "-q", "--batch-rows",
            str(BATCH), *(x for flag, path in zip(flags, outputs, strict=True) for x in (flag, str(path)))]  # fmt: skip
    files = [inputs["pairs"], inputs["bench"]] if command == "contaminate" else [inputs["pairs"]]
    return argv, outputs, files


def drive(spec: dict, folder: Path, timeout: int = 240) -> dict:
    """Runs the kill driver on ``spec`` in a process of its own; its result."""
    spec_file, result_file = folder / "spec.json", folder / "result.json"
    spec_file.write_text(json.dumps(spec))
    # the interpreter's own path (the installed skyfilter, with its compiled _core), and the checkout for tests.*
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "tests.skyfilter.kill_driver", str(spec_file), str(result_file)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(result_file.read_text())


#: Curate's manifest records when the run started (``created``) and how long each step took (``seconds``): the
#: only two fields of any output that differ between two runs of the same command (see docs/reliability.md).
VOLATILE = {"manifest.json": ["created", "seconds"]}


@pytest.fixture(scope="module")
def kill_results(real_inputs, tmp_path_factory):
    """The driver's result per command, run once on first use."""
    results: dict[str, dict] = {}

    def result(command: str) -> dict:
        if command not in results:
            folder = tmp_path_factory.mktemp(f"kills-{command}")
            (folder / "out").mkdir()
            argv, outputs, files = command_args(command, real_inputs, folder / "out")
            chosen = curate_points() if command == "curate" else points(command)
            spec = {"entry": "skyfilter", "argv": argv, "outputs": [str(p) for p in outputs],
                    "inputs": [str(p) for p in files], "points": chosen, "logs": str(folder / "logs"),
                    "preload": PRELOAD, "volatile": VOLATILE}  # fmt: skip
            results[command] = drive(spec, folder)
        return results[command]

    return result


def curate_points() -> list[dict]:
    return [
        _point("read-source", "skyfilter.curate:open_source", "first"),
        _point("convert", "skyfilter.adapters.helpsteer2:convert", "first"),
        _point("dedup", "skyfilter.curate:dedup_pairs", "first"),
        _point("decontaminate", "skyfilter.curate:contaminate", "first"),
        _point("write-data", "pyarrow.parquet:write_table", "first"),
        _point("write-dropped", "pyarrow.parquet:ParquetWriter.write_table", "last"),
        _point("write-report", "skyfilter.curate_report:write_report", "first"),
        _point("hash-input", "skyfilter.curate:_sha256_file", "first"),
        _point("hash-data", "skyfilter.curate:_sha256_file", "last"),
        _point("rename", "os:replace", "first"),
        *_timed(0.25, 0.5, 0.75),
    ]


CASES = [(c, p["name"]) for c in COMMANDS for p in points(c)] + [("curate", p["name"]) for p in curate_points()]


@pytest.mark.parametrize(("command", "point"), CASES, ids=[f"{c}-{p}" for c, p in CASES])
def test_a_killed_run_leaves_no_output_and_a_rerun_writes_the_same(kill_results, command, point):
    assert_kill(kill_results(command), point)


def assert_kill(result: dict, point: str) -> None:
    """The checks after one kill (shared with skyrm score's kill tests)."""
    reference = result["reference"]
    assert reference["ended"] == "exit 0", reference["log"]
    assert all(f is not None for f in reference["outputs"].values()) and reference["others"] == [], reference
    record = result["points"][point]
    assert "error" not in record, record
    killed, rerun = record["killed"], record["rerun"]
    assert killed["ended"] == "SIGKILL", f"the run was not killed there: {killed['ended']}\n{killed['log']}"
    assert killed["inputs"] == reference["inputs"], "an input changed"
    present = sorted(p for p, f in killed["outputs"].items() if f is not None)
    if record["expected"] is not None:  # a named point: those renamed before it in the reference run
        assert present == record["expected"], "an output is at its final path after the kill"
    else:  # a timed point: nothing, or the first outputs of the renames (a kill between them)
        order = record["rename_order"]
        assert present == sorted(order[: len(present)]), "outputs in place after the kill are not a first part"
    for path in present:  # renamed into place before the kill: whole
        assert killed["outputs"][path] == reference["outputs"][path], path
    assert rerun["ended"] == "exit 0", rerun["log"]
    assert rerun["outputs"] == reference["outputs"], "the rerun's outputs differ from an uninterrupted run's"
    assert rerun["inputs"] == reference["inputs"]
    assert rerun["others"] == [], "the rerun left the killed run's temporary files beside the outputs"


@pytest.mark.parametrize("command", [*COMMANDS, "curate"])
def test_temporary_files_of_killed_runs_are_removed_by_the_next_run(kill_results, command):
    """Some kill left temporary files (so the check above had something to remove), and every rerun removed them."""
    result = kill_results(command)
    left = [name for name, r in result["points"].items() if r.get("killed", {}).get("others")]
    assert left, "no kill left a temporary file: the cleaning was not exercised"
    assert all(r["rerun"]["others"] == [] for r in result["points"].values())


# ------------------------------------------------------------------------------------------------ a full disk


def _fails_naming_an_output(argv: list[str], outputs: list[Path], reason: str) -> str:
    from tests.skyfilter.cli_helpers import run_cli

    code, text = run_cli(*argv)
    lines = text.strip().splitlines()
    assert code != 0 and len(lines) == 1, text
    assert lines[0].startswith("Error: ") and "Traceback" not in text, text
    assert any(lines[0].startswith(f"Error: {p}: ") for p in outputs), f"names no output: {lines[0]}"
    assert lines[0].endswith(f"cannot be written: {reason} (nothing was written)"), lines[0]
    return lines[0]


@pytest.mark.parametrize("command", [*COMMANDS, "curate"])
def test_a_file_size_limit_is_one_line_naming_the_output(command, real_inputs, tmp_path):
    """RLIMIT_FSIZE of 64 KiB (what ``ulimit -f 64`` sets; Python ignores SIGXFSZ, so the write fails with EFBIG):
    one line naming the output, no file left beside the outputs, the inputs intact."""
    import resource

    argv, outputs, files = command_args(command, real_inputs, tmp_path / "out")
    before = {p: fingerprint(p) for p in files}
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, hard))
    try:
        _fails_naming_an_output(argv, outputs, "File too large")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert not (tmp_path / "out").exists(), "the folder made for the outputs was left"
    assert {p: fingerprint(p) for p in files} == before


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (mounting needs root and CAP_SYS_ADMIN; skipped where it cannot be mounted)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True,
                             text=True, check=False) if shutil.which("mount") else None  # fmt: skip
    if mounted is None or mounted.returncode != 0:
        pytest.skip(f"a tmpfs cannot be mounted here ({mounted.stderr.strip() if mounted else 'no mount command'}); "
                    "the file-size limit test covers a full disk")  # fmt: skip
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("command", [*COMMANDS, "curate"])
def test_a_full_disk_is_one_line_naming_the_output(command, real_inputs, small_disk):
    """ENOSPC on a real 256 KiB file system: one line naming the output, and the file system empty again (the
    temporary files of the failed run removed)."""
    argv, outputs, files = command_args(command, real_inputs, small_disk / "out")
    before = {p: fingerprint(p) for p in files}
    _fails_naming_an_output(argv, outputs, "No space left on device")
    assert os.listdir(small_disk) == [] and shutil.disk_usage(small_disk).used == 0
    assert {p: fingerprint(p) for p in files} == before


# ------------------------------------------------------------------------------------------------ two writers


#: A run of ``skyfilter`` as run A or B of the two-writers test. A, after renaming its first output (curate: before
#: renaming its folder), marks it and waits for B to begin its renames, then a little longer; B starts its work when
#: A has marked, and marks when it begins its renames: B's renames, were they not made to wait for A's, would fall
#: between A's.
TWO_WRITERS = """
import os, sys, time, json
from pathlib import Path
from skyshared import outputs
from skyfilter.cli import main
role, sync, argv = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
real_replace, real_commit = os.replace, outputs.Staged.commit

def wait_for(name):
    deadline = time.monotonic() + 60
    while not (sync / name).exists() and time.monotonic() < deadline:
        time.sleep(0.005)

def wait_for_b():
    wait_for("b-commits")
    time.sleep(0.3)

def replace(src, dst):
    real_replace(src, dst)
    if not (sync / "a-renamed").exists():
        (sync / "a-renamed").touch()
        wait_for_b()

def commit(self):
    if role == "B":
        (sync / "b-commits").touch()
    elif argv[0] == "curate":
        (sync / "a-renamed").touch()
        wait_for_b()
    return real_commit(self)

outputs.Staged.commit = commit
if role == "A":
    os.replace = replace
else:
    wait_for("a-renamed")
main.main(args=argv, prog_name="skyfilter")
"""


@pytest.mark.parametrize("command", [*COMMANDS, "curate"])
def test_two_runs_writing_the_same_outputs_leave_one_runs_whole_set(command, real_inputs, tmp_path):
    """Runs A and B (other settings: another n-gram, rule or dedup key; curate: plots) write the same outputs at
    once, B's renames timed to fall between A's (:data:`TWO_WRITERS`). The lock on the outputs' folder makes B wait
    for A's renames, so the outputs end as B's whole set, never mixed. Curate's output is a new folder: B's is renamed
    into place whole and A's rename onto it fails with one line, leaving nothing."""
    from skyfilter.cli import main

    out = tmp_path / "out"
    argv_a, outputs, _ = command_args(command, real_inputs, out)
    argv_b = [a for a in argv_a if a != "--no-plots"]  # curate: with plots
    argv_b += {"contaminate": ["--ngram", "5"], "dedup": ["--key", "prompt"], "select": ["--min-length-ratio", "0.7"],
               "curate": []}[command]  # fmt: skip

    def alone(argv: list[str]) -> dict:
        main.main(args=argv, standalone_mode=False)
        prints = {str(p): fingerprint(p, VOLATILE) for p in outputs}
        shutil.rmtree(out)
        return prints

    want_a, want_b = alone(argv_a), alone(argv_b)
    assert want_a != want_b, "the two runs' outputs should differ"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TQDM_DISABLE": "1"}

    def start(role: str, argv: list[str]) -> subprocess.Popen:
        command_line = [sys.executable, "-c", TWO_WRITERS, role, str(tmp_path), json.dumps(argv)]
        return subprocess.Popen(command_line, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    a = start("A", argv_a)
    b = start("B", argv_b)
    text_a, text_b = a.communicate(timeout=120)[0], b.communicate(timeout=120)[0]
    assert (tmp_path / "a-renamed").exists() and (tmp_path / "b-commits").exists(), (text_a, text_b)
    got = {str(p): fingerprint(p, VOLATILE) for p in outputs}
    if command == "curate":
        assert b.returncode == 0 and got == want_b, text_b
        lines = text_a.strip().splitlines()
        assert a.returncode == 1 and len(lines) == 1, text_a
        assert (
            lines[0] == f"Error: {outputs[0]}: cannot be written: another run wrote it meanwhile (nothing was written)"
        )
    else:
        assert a.returncode == 0 and b.returncode == 0, (text_a, text_b)
        assert got == want_b, "the outputs are not B's whole set"
    assert sorted(os.listdir(out)) == sorted(p.name for p in outputs), "a temporary file was left"


def test_outputs_are_committed_where_the_file_system_has_no_folder_locks(tmp_path, monkeypatch):
    """Some network file systems refuse ``flock`` on a folder (EBADF, ENOLCK): the outputs are still renamed into
    place (unserialised there); a lock another process holds is still reported when not waiting."""
    import errno

    from skyshared import outputs

    def refused(fd, operation):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(outputs.fcntl, "flock", refused)
    with outputs.Staged() as staged:
        staged.write_text(tmp_path / "a.json", "{}\n")
        staged.write_text(tmp_path / "new" / "b.json", "[]\n")
    assert (tmp_path / "a.json").read_text() == "{}\n" and (tmp_path / "new" / "b.json").read_text() == "[]\n"
    assert sorted(os.listdir(tmp_path)) == ["a.json", "new"]

    def held(fd, operation):
        raise BlockingIOError(errno.EWOULDBLOCK, "Resource temporarily unavailable")

    monkeypatch.setattr(outputs.fcntl, "flock", held)
    with pytest.raises(BlockingIOError):
        outputs.lock_folder(tmp_path, wait=False)

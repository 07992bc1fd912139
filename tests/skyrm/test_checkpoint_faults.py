"""Checkpoints under attack (issue 22): a run SIGKILLed at five points of a checkpoint save resumes from the last
complete checkpoint and ends bit-equal to a run never interrupted; a truncated or corrupted file of the newest
checkpoint is named in one line and resume falls back to the previous one (or fails cleanly when none is left);
a pickle payload in a checkpoint runs no code."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
safetensors = pytest.importorskip("safetensors.torch")
from skyrm import checkpoint  # noqa: E402
from skyrm.train import main  # noqa: E402
from skyrm.trainer import train  # noqa: E402

from tests.skyrm.test_trainer import metrics, write_task  # noqa: E402
from tests.skyrm.test_training_faults import tiny  # noqa: E402

STEPS, EVERY = 6, 2
#: Imports the trainer once, then forks one training run per kill point (the imports are most of a tiny run's
#: time); each child SIGKILLs itself at its point of the checkpoint save of its step. argv: a JSON object
#: {point: [step, output folder]}, then the training flags less --output-dir. Prints "point status" per child.
KILLER = """
import json
import os
import shutil
import signal
import sys

import torch.distributed.checkpoint.filesystem as filesystem
import transformers.models.llama.modeling_llama  # imported by each run otherwise: most of its time

import skyrm.checkpoint as checkpoint
from skyrm.train import main


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def install(point, kill_step):
    state = {"step": 0, "items": 0}
    at_step = lambda: state["step"] == kill_step
    save, write_item, write_rng = checkpoint.save, filesystem._write_item, checkpoint._write_rng
    replace, rmtree = os.replace, shutil.rmtree

    def saving(root, step, *args, **kwargs):
        state["step"] = step
        return save(root, step, *args, **kwargs)

    def writing_item(*args, **kwargs):  # inside dcp.save: the shard cut short after its third item
        result = write_item(*args, **kwargs)
        state["items"] += at_step()
        if point == "dcp-write" and state["items"] == 3:
            args[1].flush()
            die()
        return result

    def writing_rng(path, rng):  # half of the random-number state written
        if point == "rng-write" and at_step():
            import io

            import torch

            whole = io.BytesIO()
            torch.save(rng, whole)
            path.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
            die()
        write_rng(path, rng)

    def replacing(src, dst, *args, **kwargs):  # the marker in its temporary file, renamed or not
        marker = str(dst).endswith(checkpoint.MARKER) and at_step()
        if point == "marker-tmp" and marker:
            die()
        replace(src, dst, *args, **kwargs)
        if point == "marker-done" and marker:
            die()

    def removing(path, *args, **kwargs):  # the oldest checkpoint half removed
        if point == "prune" and at_step():
            os.unlink(os.path.join(path, sorted(os.listdir(path))[0]))
            die()
        rmtree(path, *args, **kwargs)

    checkpoint.save, filesystem._write_item, checkpoint._write_rng = saving, writing_item, writing_rng
    os.replace, shutil.rmtree = replacing, removing


children = {}
for point, (step, out) in json.loads(sys.argv[1]).items():
    pid = os.fork()
    if pid == 0:
        sys.stdout = sys.stderr = open(os.devnull, "w")
        install(point, step)
        os._exit(main([*sys.argv[2:], "--output-dir", out]))
    children[pid] = point
for _ in children:
    pid, status = os.wait()
    print(children[pid], -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
"""
#: point: (the save it kills, the checkpoint resumed from)
POINTS = {"dcp-write": (4, 2), "rng-write": (4, 2), "marker-tmp": (4, 2), "marker-done": (4, 4), "prune": (6, 6)}


@contextlib.contextmanager
def single_thread():
    """The killed runs use one thread (OMP_NUM_THREADS=1): so do the runs here, for bit-equal sums."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    with single_thread():
        yield


def flags(folder: Path, out: Path | None) -> list[str]:
    where = ["--output-dir", str(out)] if out is not None else []
    return ["--preset", "tiny", "--data", str(folder / "train.parquet"), *where, "--batch-pairs", "8",
            "--micro-batch-tokens", "512", "--max-length", "128", "--max-steps", str(STEPS), "--checkpoint-every",
            str(EVERY), "--report-to", "none"]  # fmt: skip


def config(folder: Path, name: str, **overrides):
    return tiny(folder, name, max_steps=STEPS, checkpoint_every=EVERY, **overrides)


def weights(out: Path) -> dict:
    return safetensors.load_file(out / "model" / "model.safetensors")


def same_run(out: Path, whole: Path) -> None:
    a, b = weights(whole), weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)
    speed = ("tokens_per_s", "mfu")
    assert [{k: v for k, v in r.items() if k not in speed} for r in metrics(out)] == [
        {k: v for k, v in r.items() if k not in speed} for r in metrics(whole)
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run never interrupted, and one run killed at each point (all at once)."""
    folder = tmp_path_factory.mktemp("killed")
    write_task(folder / "train.parquet", 64, 1)
    points = json.dumps({point: [step, str(folder / point)] for point, (step, _) in POINTS.items()})
    command = [sys.executable, "-c", KILLER, points, *flags(folder, None)]
    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    killer = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with single_thread():
        train(config(folder, "whole"), log=lambda _: None)
    try:
        out, err = killer.communicate(timeout=300)
    finally:
        killer.kill()
    assert killer.returncode == 0, err[-3000:]
    assert dict(line.split() for line in out.splitlines()) == dict.fromkeys(POINTS, "-9"), out  # each one SIGKILLed
    return folder


@pytest.mark.parametrize("point", POINTS)
def test_a_run_killed_while_saving_resumes_from_the_last_complete_checkpoint(runs, point, one_thread):
    killed_at, resumed_from = POINTS[point]
    out = runs / point
    assert not (out / "model").exists() and not (out / "summary.json").exists()
    left = out / "checkpoints" / f"step-{killed_at:08d}"
    assert (left / checkpoint.MARKER).exists() == (resumed_from == killed_at)
    assert checkpoint.latest(out / "checkpoints").name == f"step-{resumed_from:08d}"
    lines: list[str] = []
    train(config(runs, point, resume=True), log=lines.append)
    assert f"resumed from {out / 'checkpoints' / f'step-{resumed_from:08d}'} (step {resumed_from} of 6)" in lines
    same_run(out, runs / "whole")
    # the save cut short was done again, whole: every file it lists passes its check, and no other file is there
    redone = checkpoint.latest(out / "checkpoints")
    assert redone.name == "step-00000006"
    info = checkpoint.verify(redone, SimpleNamespace(rank=0, world=1))
    assert sorted(p.name for p in redone.iterdir()) == sorted([*info["files"], checkpoint.MARKER])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000004", "step-00000006"] or (
        point == "prune"  # the last save was not redone: the half-removed oldest stays, incomplete
        and not (out / "checkpoints" / "step-00000002" / checkpoint.MARKER).exists()
    )


# corrupted files


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A run of 6 steps with checkpoints at 4 and 6 (one thread, as the resumed runs)."""
    folder = tmp_path_factory.mktemp("corrupt")
    write_task(folder / "train.parquet", 64, 1)
    with single_thread():
        train(config(folder, "whole"), log=lambda _: None)
    return folder


def copy_run(folder: Path, name: str) -> Path:
    out = folder / name
    shutil.copytree(folder / "whole", out)
    for done in ("model", "summary.json"):
        shutil.rmtree(out / done) if (out / done).is_dir() else (out / done).unlink()
    return out


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))


def edit_marker(path: Path) -> None:  # still valid JSON, one value changed
    path.write_text(path.read_text().replace('"step": 6', '"step": 5'))


@pytest.mark.parametrize(
    ("file", "damage", "says"),
    [
        ("__0_0.distcp", truncate, "when saved (truncated or corrupted)"),
        ("__0_0.distcp", flip, "CRC-32"),
        (".metadata", flip, "CRC-32"),
        ("rng-0.pt", truncate, "(truncated or corrupted)"),
        (checkpoint.MARKER, truncate, "not a checkpoint marker (truncated or corrupted"),
        (checkpoint.MARKER, edit_marker, "its CRC-32 does not match its content"),
    ],
    ids=["shard-truncated", "shard-flipped", "metadata-flipped", "rng-truncated", "marker-truncated", "marker-edited"],
)
def test_a_damaged_checkpoint_is_named_and_the_previous_one_resumed(finished, file, damage, says, capsys, one_thread):
    out = copy_run(finished, f"{file}-{damage.__name__}")
    bad = out / "checkpoints" / "step-00000006" / file
    damage(bad)
    capsys.readouterr()
    assert main([*flags(finished, out), "--resume"]) == 0
    err = capsys.readouterr().err.splitlines()
    warnings = [line for line in err if line.startswith("warning: ")]
    assert warnings[0].startswith(f"warning: checkpoint step-00000006 cannot be resumed from: {bad}: "), err
    assert says in warnings[0]
    assert (
        warnings[1]
        == f"warning: resuming from the previous complete checkpoint, {out / 'checkpoints' / 'step-00000004'}"
    )
    same_run(out, finished / "whole")  # steps 5 and 6 trained again, exactly
    checkpoint.verify(out / "checkpoints" / "step-00000006", SimpleNamespace(rank=0, world=1))  # saved again


def test_a_save_removes_the_checkpoints_after_it_and_the_incomplete_ones(tmp_path):
    """A run resumed from step 3 (the later ones failed their check) saves step 3 again: the later checkpoints and
    the folder of a save cut short go, the last two complete ones stay."""
    from skyrm.distributed import start, stop
    from skyrm.trainer import build_model

    runtime = start()
    try:
        model, _ = build_model(tiny(tmp_path), runtime)
        optimizer = torch.optim.AdamW(model.parameters())
        root = tmp_path / "checkpoints"
        for step in (2, 3, 4, 6):
            checkpoint.save(root, step, model, optimizer, {}, runtime, keep=5)
        (root / "step-00000001").mkdir()  # a save cut short
        (root / "step-00000005").mkdir()
        checkpoint.save(root, 3, model, optimizer, {}, runtime)
    finally:
        stop(runtime)
    assert sorted(p.name for p in root.iterdir()) == ["step-00000002", "step-00000003"]


def test_without_a_sound_checkpoint_resume_fails_in_one_line(finished, capsys):
    out = copy_run(finished, "both-bad")
    for step in ("step-00000004", "step-00000006"):
        truncate(out / "checkpoints" / step / "__0_0.distcp")
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    capsys.readouterr()
    assert main([*flags(finished, out), "--resume"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: --resume: no checkpoint under {out / 'checkpoints'} passes its check (the "
                              f"newest: {out / 'checkpoints' / 'step-00000006' / '__0_0.distcp'}: ")  # fmt: skip
    assert len([line for line in err if line.startswith("warning: checkpoint")]) == 2
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before  # nothing removed or added


def test_a_checkpoint_saved_before_the_checksums_still_resumes(finished, capsys, one_thread):
    out = copy_run(finished, "unchecked")
    marker = out / "checkpoints" / "step-00000006" / checkpoint.MARKER
    info = json.loads(marker.read_text())
    marker.write_text(json.dumps({k: info[k] for k in ("step", "world", "run")}))  # the marker as it was written
    capsys.readouterr()
    assert main([*flags(finished, out), "--resume"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warnings == ["warning: checkpoint step-00000006 has no checksums (saved by an earlier skyrm): resumed "
                        "without checking its files"]  # fmt: skip
    same_run(out, finished / "whole")


# nothing in a checkpoint runs code


class Payload:
    """Unpickling it runs ``touch PATH``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def resign(folder: Path) -> None:
    """The marker's sizes and CRC-32s made to match the files again, as one who changed them on purpose would."""
    info = json.loads((folder / checkpoint.MARKER).read_text())
    info.pop(checkpoint.SELF_CHECK)
    info["files"] = {name: checkpoint._crc32(folder / name) for name in info["files"]}
    checkpoint._write_marker(folder, info)


def test_the_payload_runs_when_unpickled_plainly(tmp_path):
    """The payload of the tests below does run code when unpickled without their guards."""
    pickle.loads(pickle.dumps(Payload(tmp_path / "ran")))
    assert (tmp_path / "ran").exists()


@pytest.mark.parametrize("file", ["rng-0.pt", ".metadata"])
def test_a_pickle_payload_in_a_checkpoint_does_not_run(finished, tmp_path, file, capsys):
    out = copy_run(finished, f"payload-{file}")
    folder = out / "checkpoints" / "step-00000006"
    ran = tmp_path / "ran"
    if file == "rng-0.pt":
        torch.save({"cpu": Payload(ran)}, folder / file)
    else:
        (folder / file).write_bytes(pickle.dumps(Payload(ran)))
    resign(folder)
    capsys.readouterr()
    assert main([*flags(finished, out), "--resume"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {folder / file}: not "), err
    assert f"{os.system.__module__}.system" in err[-1] and "`weights_only` set to `False`" not in err[-1]
    assert not ran.exists()


def test_a_pickle_payload_in_a_non_tensor_value_does_not_run(tmp_path):
    """DCP reads the non-tensor values (the optimiser's settings) with torch.load(weights_only=False): ours refuses."""
    value = io.BytesIO()
    torch.save({"lr": Payload(tmp_path / "ran")}, value)
    value.seek(0)
    planner = checkpoint._Planner()
    planner.load_bytes(SimpleNamespace(dest_index=SimpleNamespace(fqn="optimizer.param_groups")), value)
    assert planner.refused.startswith("optimizer.param_groups (Trying to load unsupported GLOBAL ")
    assert not (tmp_path / "ran").exists()

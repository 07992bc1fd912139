"""Sharded training checkpoints (torch.distributed.checkpoint) and exact resume.

``OUTPUT_DIR/checkpoints/step-00000500/`` holds the model and optimiser shards of every rank (DCP's own files),
each rank's random-number state, and ``trainer.json`` (the step, what the run was, and the size and CRC-32 of every
other file), written by rank 0 after every rank has finished: a checkpoint without it is incomplete and is never
resumed from. The learning rate is a function of the step and the data order a function of the seed and the step,
so the step is the whole data position. The last ``keep`` checkpoints are kept.

Faults (tests/skyrm/test_checkpoint_faults.py):

* a run killed while saving leaves a folder without the marker: resume takes the previous checkpoint, and the next
  save at that step clears the folder first;
* a truncated or corrupted file fails its size or CRC-32 when resumed from (one line naming the file), and resume
  falls back to the previous complete checkpoint, saying so on stderr; the resumed run's next save removes the
  checkpoints after its own step;
* nothing in a checkpoint can run code: DCP's ``.metadata`` is unpickled with only its own classes allowed, the
  non-tensor values and the random-number states with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import sys
import zlib
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from skyrm.distributed import Runtime

__all__ = ["save", "latest", "resumable", "load", "CheckpointError"]

MARKER = "trainer.json"
#: The key of the marker's own CRC-32 (of its other keys, as sorted JSON).
SELF_CHECK = "marker_crc32"
CHUNK = 16 * 2**20


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message says why."""


def _folder(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def _complete(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("step-*") if (p / MARKER).exists())


def _rng_state(runtime: Runtime) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if runtime.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(runtime.device)
    return state


def _crc32(path: Path) -> dict:
    """The size and CRC-32 of a file, read in chunks (about 2 GB/s: tests/skyrm/test_checkpoint_faults.py)."""
    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    return {"bytes": size, "crc32": f"{crc:08x}"}


def _own_files(folder: Path, runtime: Runtime) -> list[Path]:
    """The files this rank wrote: its DCP shards and its random-number state."""
    return [*folder.glob(f"__{runtime.rank}_*.distcp"), folder / f"rng-{runtime.rank}.pt"]


def _write_rng(path: Path, state: dict) -> None:
    torch.save(state, path)


def _self_check(body: dict) -> str:
    return f"{zlib.crc32(json.dumps(body, sort_keys=True).encode()):08x}"


def _write_marker(folder: Path, body: dict) -> None:
    """The marker, whole or not at all (a temporary file renamed over it), with its own CRC-32."""
    tmp = folder / f"{MARKER}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(body | {SELF_CHECK: _self_check(body)}, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / MARKER)


def _remove(folder: Path) -> None:
    """A checkpoint's folder, its marker first: a removal cut short leaves an incomplete checkpoint, never one that
    looks complete and lacks files."""
    (folder / MARKER).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def save(root: Path, step: int, model, optimizer, run: dict, runtime: Runtime, state: dict | None = None,
         keep: int = 2) -> Path:  # fmt: skip
    """Writes the checkpoint after ``step`` optimiser steps; ``run`` describes the run (see :func:`load`), ``state``
    is the loop's own state to restore with it (JSON)."""
    folder = _folder(root, step)
    if runtime.main and folder.exists():  # a save at this step cut short, or a checkpoint that failed its check
        _remove(folder)
    dist.barrier()
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(folder))
    _write_rng(folder / f"rng-{runtime.rank}.pt", _rng_state(runtime))
    mine = {p.name: _crc32(p) for p in _own_files(folder, runtime)}
    every: list = [None] * runtime.world
    dist.all_gather_object(every, mine)
    if runtime.main:
        files = {name: sums for part in every for name, sums in part.items()}
        for path in folder.iterdir():  # DCP's .metadata, written by rank 0
            if path.name not in files:
                files[path.name] = _crc32(path)
        body = {"step": step, "world": runtime.world, "run": run, "state": state or {}, "files": files}
        _write_marker(folder, body)
        # after this one: a resumed run passed over them (they failed their check); before it: saves cut short
        for stale in root.glob("step-*"):
            if stale > folder or not (stale / MARKER).exists():
                _remove(stale)
        for old in _complete(root)[:-keep]:
            _remove(old)
    dist.barrier()
    return folder


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (complete: its marker was written; see :func:`resumable`)."""
    finished = _complete(root)
    return finished[-1] if finished else None


def _marker(folder: Path) -> dict:
    path = folder / MARKER
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a checkpoint marker (truncated or corrupted: {e})") from None
    if not isinstance(info, dict) or not {"step", "world", "run"} <= info.keys():
        raise CheckpointError(f"{path}: not a checkpoint marker (corrupted)")
    if SELF_CHECK not in info and "files" not in info:  # saved by a skyrm before the checksums
        return info
    if SELF_CHECK not in info:
        raise CheckpointError(f"{path}: no {SELF_CHECK} (corrupted)")
    saved = info.pop(SELF_CHECK)
    if saved != _self_check(info):
        raise CheckpointError(f"{path}: its CRC-32 does not match its content (corrupted)")
    return info


def _file_error(path: Path, expected: dict) -> str | None:
    if not path.is_file():
        return f"{path}: missing"
    found = _crc32(path)
    if found["bytes"] != expected["bytes"]:
        return f"{path}: {found['bytes']:,} bytes, {expected['bytes']:,} when saved (truncated or corrupted)"
    if found["crc32"] != expected["crc32"]:
        return f"{path}: CRC-32 {found['crc32']}, {expected['crc32']} when saved (corrupted)"
    return None


def verify(folder: Path, runtime: Runtime) -> dict:
    """The checkpoint's marker, once every file it lists has its recorded size and CRC-32 (the ranks share the
    reading); else a :class:`CheckpointError` naming the first bad file. A checkpoint saved before the checksums
    is taken as it is, with a warning."""
    info, error = None, None
    try:
        info = _marker(folder)
    except CheckpointError as e:
        error = str(e)
    errors: list = [error]
    if runtime.world > 1:
        errors = [None] * runtime.world
        dist.all_gather_object(errors, error)
    if any(errors):
        raise CheckpointError(next(e for e in errors if e))
    if "files" not in info:
        if runtime.main:
            print(f"warning: checkpoint {folder.name} has no checksums (saved by an earlier skyrm): resumed without "
                  "checking its files", file=sys.stderr, flush=True)  # fmt: skip
        return info
    names = sorted(info["files"])
    error = next((e for n in names[runtime.rank :: runtime.world] if (e := _file_error(folder / n, info["files"][n]))),
                 None)  # fmt: skip
    errors = [error]
    if runtime.world > 1:
        errors = [None] * runtime.world
        dist.all_gather_object(errors, error)
    if any(errors):
        raise CheckpointError(next(e for e in errors if e))
    return info


def resumable(root: Path, runtime: Runtime) -> tuple[Path, dict]:
    """The newest complete checkpoint that passes :func:`verify`, and its marker. A bad one is reported on stderr
    and the previous one tried; none left is a :class:`CheckpointError`."""
    finished = _complete(root)
    if not finished:
        raise CheckpointError(f"--resume: no complete checkpoint under {root}")
    first = None
    for folder in reversed(finished):
        try:
            info = verify(folder, runtime)
        except CheckpointError as e:
            first = first or str(e)
            if runtime.main:
                print(f"warning: checkpoint {folder.name} cannot be resumed from: {e}", file=sys.stderr, flush=True)
            continue
        if first is not None and runtime.main:
            print(f"warning: resuming from the previous complete checkpoint, {folder}", file=sys.stderr, flush=True)
        return folder, info
    raise CheckpointError(f"--resume: no checkpoint under {root} passes its check (the newest: {first})")


#: What DCP's ``.metadata`` pickle may name: its own metadata classes, torch.Size, dtypes and layouts, paths.
_METADATA_CLASSES = {
    "torch.distributed.checkpoint.metadata": {"Metadata", "MetadataIndex", "StorageMeta", "TensorProperties",
                                              "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata",
                                              "_MEM_FORMAT_ENCODING"},
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo", "_StoragePrefix"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"},
    "collections": {"OrderedDict"},
}  # fmt: skip


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        allowed = name in _METADATA_CLASSES.get(module, ())
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            allowed = True
        if not allowed:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}")
        return super().find_class(module, name)


def _metadata(folder: Path) -> Metadata:
    path = folder / ".metadata"
    try:
        with open(path, "rb") as f:
            metadata = _MetadataUnpickler(f).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: not DCP metadata ({e})") from None
    if not isinstance(metadata, Metadata):
        raise CheckpointError(f"{path}: not DCP metadata (a {type(metadata).__name__})")
    return metadata


class _Reader(FileSystemReader):
    """DCP's reader, with the metadata read safely beforehand (:func:`_metadata`)."""

    def __init__(self, folder: Path, metadata: Metadata) -> None:
        super().__init__(str(folder))
        self.metadata = metadata

    def read_metadata(self) -> Metadata:
        if getattr(self.metadata, "storage_meta", None) is None:
            self.metadata.storage_meta = StorageMeta()
        self.metadata.storage_meta.load_id = self.load_id
        return self.metadata


class _Planner(DefaultLoadPlanner):
    """DCP's planner, with the non-tensor values (the optimiser's settings, steps) read by ``torch.load`` with
    ``weights_only=True`` (DCP's own reads them with ``weights_only=False``, which runs any pickled code)."""

    refused: str | None = None  # the first value refused (raised after dcp.load: DCP wraps errors in tracebacks)

    def load_bytes(self, read_item, value: io.BytesIO) -> None:
        try:
            safe = torch.load(value, weights_only=True)
        except pickle.UnpicklingError as e:
            self.refused = self.refused or f"{read_item.dest_index.fqn} ({_why(e)})"
            return
        plain = io.BytesIO()
        torch.save(safe, plain)
        plain.seek(0)
        super().load_bytes(read_item, plain)


def _why(error: Exception) -> str:
    """The line of a ``torch.load(weights_only=True)`` refusal that names what was refused (its first line advises
    loading the file unsafely)."""
    lines = [line for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    return next((line for line in lines if "GLOBAL" in line), lines[0])


def _load_rng(path: Path) -> dict:
    try:
        return torch.load(path, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise CheckpointError(f"{path}: not a random-number state ({_why(e)})") from None


def load(folder: Path, info: dict, model, optimizer, run: dict, runtime: Runtime) -> tuple[int, dict]:
    """Loads the checkpoint (``info``: its marker, from :func:`resumable`) into the (sharded) model and optimiser
    and returns its step and the loop's state. ``run`` must match the saved one (the data's hash, the steps and the
    trajectory's settings: :func:`skyrm.trainer.run_identity`): otherwise the resumed run would not continue the
    same run; the error names every value that changed."""
    changed = {k: (info["run"].get(k), v) for k, v in run.items() if info["run"].get(k) != v}
    if changed:
        details = ", ".join(f"{k}: {a!r} then, {b!r} now" for k, (a, b) in changed.items())
        raise CheckpointError(f"{folder}: the run has changed since this checkpoint ({details})")
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    planner = _Planner()
    dcp.load(state, storage_reader=_Reader(folder, _metadata(folder)), planner=planner)
    if planner.refused:
        raise CheckpointError(f"{folder}: refused to unpickle the value of {planner.refused}")
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    rng = folder / f"rng-{runtime.rank}.pt"
    if info["world"] == runtime.world and rng.exists():  # resharded runs start their random streams afresh
        saved = _load_rng(rng)
        torch.set_rng_state(saved["cpu"])
        if "cuda" in saved and runtime.device.type == "cuda":
            torch.cuda.set_rng_state(saved["cuda"], runtime.device)
    return int(info["step"]), info.get("state", {})

"""Sharded training checkpoints (torch.distributed.checkpoint) and exact resume.

``OUTPUT_DIR/checkpoints/step-00000500/`` holds the model and optimiser shards of every rank (DCP's own files),
each rank's random-number state, and ``trainer.json`` (the step and what the run was), written by rank 0 after
every rank has finished: a checkpoint without it is incomplete and is never resumed from. The learning rate is a
function of the step and the data order a function of the seed and the step, so the step is the whole data
position. The last ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from skyrm.distributed import Runtime

__all__ = ["save", "latest", "load", "CheckpointError"]

MARKER = "trainer.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message says why."""


def _folder(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def _rng_state(runtime: Runtime) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if runtime.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(runtime.device)
    return state


def save(root: Path, step: int, model, optimizer, run: dict, runtime: Runtime, keep: int = 2) -> Path:
    """Writes the checkpoint after ``step`` optimiser steps; ``run`` describes the run (see :func:`load`)."""
    folder = _folder(root, step)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(folder))
    torch.save(_rng_state(runtime), folder / f"rng-{runtime.rank}.pt")
    dist.barrier()
    if runtime.main:
        tmp = folder / f"{MARKER}.tmp"
        tmp.write_text(json.dumps({"step": step, "world": runtime.world, "run": run}, indent=2) + "\n")
        os.replace(tmp, folder / MARKER)
        finished = sorted(p for p in root.glob("step-*") if (p / MARKER).exists())
        for old in finished[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return folder


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root``."""
    finished = sorted(p for p in root.glob("step-*") if (p / MARKER).exists())
    return finished[-1] if finished else None


def load(folder: Path, model, optimizer, run: dict, runtime: Runtime) -> int:
    """Loads the checkpoint into the (sharded) model and optimiser and returns its step. ``run`` must match the
    saved one (the data's hash, the steps and the trajectory's settings: :func:`skyrm.trainer.run_identity`):
    otherwise the resumed run would not continue the same run; the error names every value that changed."""
    info = json.loads((folder / MARKER).read_text())
    changed = {k: (info["run"].get(k), v) for k, v in run.items() if info["run"].get(k) != v}
    if changed:
        details = ", ".join(f"{k}: {a!r} then, {b!r} now" for k, (a, b) in changed.items())
        raise CheckpointError(f"{folder}: the run has changed since this checkpoint ({details})")
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=str(folder))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    rng = folder / f"rng-{runtime.rank}.pt"
    if info["world"] == runtime.world and rng.exists():  # resharded runs start their random streams afresh
        saved = torch.load(rng, weights_only=True)
        torch.set_rng_state(saved["cpu"])
        if "cuda" in saved and runtime.device.type == "cuda":
            torch.cuda.set_rng_state(saved["cuda"], runtime.device)
    return int(info["step"])

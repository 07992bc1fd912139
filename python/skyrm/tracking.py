"""Where a run's metrics go: ``metrics.jsonl`` always (one record per step; on resume the records after the
checkpoint are cut), and the trackers of ``--report-to``: TensorBoard (events under ``OUTPUT_DIR/tensorboard``, the
default) and Weights & Biases (``wandb``: a run named after the output folder, its files under ``OUTPUT_DIR/wandb``;
``WANDB_PROJECT``, ``WANDB_ENTITY``, ``WANDB_MODE=offline`` and W&B's other variables apply). Every tracker gets
the same scalars as ``metrics.jsonl`` (training values as ``train/NAME``, evaluations under their own names,
``eval/...`` and ``bench/NAME/...``), plus the run's config and its data manifest once at the start. A resumed run
continues the same W&B run (its id is kept in ``OUTPUT_DIR/wandb/skyrm-run-id``).
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path

from skyrm.requires import require

__all__ = ["MetricsLog", "check_trackers"]

#: The file under OUTPUT_DIR/wandb that keeps the W&B run id for --resume.
WANDB_ID = "skyrm-run-id"


def _step(line: str) -> float:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def _scalars(record: dict) -> dict[str, float]:
    """A record's numbers under their tracker names: evaluations (``eval/...``, ``bench/...``) as they are, the
    training values under ``train/``."""
    return {(key if "/" in key else f"train/{key}"): value for key, value in record.items()
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool)}  # fmt: skip


class _TensorBoard:
    def __init__(self, folder: Path, resume_step: int, info: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder / "tensorboard"), purge_step=resume_step + 1)
        for name, value in info.items():  # as text, shown in TensorBoard's Text tab
            self.writer.add_text(name, "```\n" + json.dumps(value, indent=2) + "\n```", resume_step)

    def write(self, scalars: dict, step: int) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, folder: Path, resume_step: int, info: dict) -> None:
        import wandb

        (folder / "wandb").mkdir(parents=True, exist_ok=True)
        id_file = folder / "wandb" / WANDB_ID
        run_id = id_file.read_text().strip() if resume_step and id_file.exists() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id + "\n")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "skyrm", name=folder.resolve().name,
                              dir=str(folder), id=run_id, resume="allow", config=info)  # fmt: skip

    def write(self, scalars: dict, step: int) -> None:
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()


def check_trackers(trackers: list[str]) -> None:
    """Before any work: a tracker asked for whose package is missing is an error naming the pip command
    (TensorBoard, the default, only warns when the run starts: see :class:`MetricsLog`)."""
    if "wandb" in trackers:
        require("--report-to wandb", "wandb")


class MetricsLog:
    """``metrics.jsonl`` and the trackers (module docstring); ``info`` (the config and the data manifest) goes to
    every tracker once."""

    def __init__(self, folder: Path, resume_step: int, trackers: list[str], log, info: dict) -> None:
        path = folder / "metrics.jsonl"
        kept = []
        if resume_step and path.exists():  # a line cut short by the kill is dropped too
            kept = [line for line in path.read_text(encoding="utf-8").splitlines() if _step(line) <= resume_step]
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.file.writelines(line + "\n" for line in kept)
        self.trackers: list = []
        for name in trackers:
            if name == "tensorboard":
                try:
                    self.trackers.append(_TensorBoard(folder, resume_step, info))
                except ImportError:
                    log("tensorboard is not installed (pip install tensorboard); metrics go to metrics.jsonl only")
            elif name == "wandb":
                self.trackers.append(_WandB(folder, resume_step, info))

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        scalars = _scalars(record)
        for tracker in self.trackers:
            tracker.write(scalars, record["step"])

    def close(self) -> None:
        self.file.close()
        for tracker in self.trackers:
            tracker.close()

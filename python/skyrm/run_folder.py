"""The training run's folder (``--output-dir``) and its local inputs: checked before any work, cleared by
``--overwrite``, and emptied again when a run fails before its first checkpoint.

A folder that already holds files is refused unless the run continues it (``--resume``, which needs a complete
checkpoint there) or replaces it (``--overwrite``: the folder is cleared once the data has been read, and only if
it holds nothing but a run's own files, so a mistyped ``--output-dir .`` clears nothing). Without this, a new run
overwrote the old model and metrics and left stale checkpoints that a later ``--resume`` mixed in. The folder
must also be writable and hold none of the run's inputs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from skyshared.hub import missing_path
from skyshared.outputs import check_folder, check_outputs

from skyrm import checkpoint
from skyrm.config import TrainConfig
from skyrm.data import check_bad_rows_path

__all__ = ["RUN_FILES", "check", "clear", "discard_failed"]

#: What a training run writes into its folder.
RUN_FILES = ("metrics.jsonl", "model", "summary.json", "checkpoints", "tensorboard", "wandb", "best-model")


def _inputs(config: TrainConfig) -> list[str | None]:
    return [config.data, config.eval_data, config.model, config.gguf_file]


def check(config: TrainConfig) -> None:
    """Before any work: the inputs that are local paths exist, and the folder is new, empty, resumed from or to
    be overwritten, and can be written."""
    for flag, spec in (("--data", config.data), ("--eval-data", config.eval_data), ("--model", config.model)):
        if spec and missing_path(spec):  # a local path that is not there: said now, not asked of the hub
            raise ValueError(f"{spec}: no such {'folder' if flag == '--model' else 'file'} ({flag})")
    out = Path(config.output_dir)
    check_folder("--output-dir", out, _inputs(config) if config.overwrite else (), new=False,
                 outputs={"--bad-rows": config.bad_rows})  # fmt: skip
    check_outputs({"--bad-rows": config.bad_rows}, _inputs(config))
    check_bad_rows_path(config.bad_rows)
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if config.resume:
        if checkpoint.latest(out / "checkpoints") is None:
            raise ValueError(f"--resume: no complete checkpoint under {out / 'checkpoints'}")
        return
    if not held:
        return
    if not config.overwrite:
        raise ValueError(
            f"{out}: --output-dir already holds {', '.join(held[:4])}{', ...' if len(held) > 4 else ''}; continue "
            "that run with --resume, replace it with --overwrite, or give a new folder (nothing was written)"
        )
    foreign = [name for name in held if name not in RUN_FILES]
    if foreign:
        raise ValueError(
            f"{out}: --overwrite clears only a training run's folder, and this one also holds {', '.join(foreign[:4])}"
            "; give a new folder (nothing was written)"
        )


def clear(config: TrainConfig) -> None:
    """``--overwrite``: removes the old run's files (:func:`check` has made sure there are no others)."""
    if config.overwrite:
        _remove_run_files(Path(config.output_dir))


def _remove_run_files(out: Path) -> None:
    for name in RUN_FILES:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def discard_failed(config: TrainConfig, existed: bool) -> None:
    """After a failed run: unless it is resumable (a complete checkpoint), the files it wrote go, and the folder
    too when the run made it; a resumed run's folder is left as it is."""
    out = Path(config.output_dir)
    if config.resume or not out.is_dir() or checkpoint.latest(out / "checkpoints") is not None:
        return
    _remove_run_files(out)
    if not existed and not any(out.iterdir()):
        out.rmdir()

"""``--profile-steps N``: a torch.profiler trace of a run's last N optimiser steps.

The step before them warms the profiler up (its events are dropped), and the steps before that run untraced: the
first steps of a run compile and allocate, and a traced step runs slower than an untraced one, so the untraced
steps' records in ``metrics.jsonl`` keep the run's speed. Each process writes its trace, CPU operators and, on
GPUs, kernels and copies, as gzipped Chrome JSON: ``OUTPUT_DIR/profile/trace-rank{R}.json.gz`` (Perfetto and
chrome://tracing read it; ``bench/gpu_profile.py`` sums its kernels by kind).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import torch

__all__ = ["StepTrace"]


class StepTrace:
    """Call :meth:`step` at the end of every step from ``first`` (a resumed run's first step) to ``total``, and
    :meth:`close` at the end; with ``steps`` 0 both do nothing."""

    def __init__(self, steps: int, first: int, total: int, folder: Path, rank: int) -> None:
        left = total - first
        active = min(steps, left)
        self.path = folder / f"trace-rank{rank}.json.gz"
        self.profiler = None
        if active < 1:
            return
        warmup = min(1, left - active)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        schedule = torch.profiler.schedule(wait=left - active - warmup, warmup=warmup, active=active, repeat=1)
        self.profiler = torch.profiler.profile(activities=activities, schedule=schedule, on_trace_ready=self._write)
        self.profiler.start()

    def _write(self, profiler) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        plain = self.path.with_suffix("")  # the .json, gzipped then removed: the traces of big steps are large
        profiler.export_chrome_trace(str(plain))
        with plain.open("rb") as source, gzip.open(self.path, "wb") as target:
            shutil.copyfileobj(source, target)
        plain.unlink()

    def step(self) -> None:
        if self.profiler is not None:
            self.profiler.step()

    def close(self) -> None:
        if self.profiler is not None:
            self.profiler.stop()
            self.profiler = None

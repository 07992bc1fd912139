"""Evaluation of the model being trained, on every rank of the (sharded) run: the held-out pairs (pairwise accuracy,
mean margin, the rewards' mean and std) and benchmarks (``--eval-bench``: RewardBench-layout files, pairwise files,
``sample``), at the end of a run and every ``--eval-every`` steps; and ``--save-best``, which keeps the model of
the best evaluation.

Metric names, as ``metrics.jsonl`` and the trackers record them: ``eval/accuracy``, ``eval/margin``,
``eval/reward_mean``, ``eval/reward_std`` for the held-out pairs; ``bench/NAME/SECTION`` for a benchmark (``NAME``
is ``sample`` or the file's stem; the sections of RewardBench are ``chat``, ``chat_hard``, ``safety``,
``reasoning`` and ``score``; a pairwise file has ``accuracy``). A benchmark is scored as ``skyrm.eval`` scores it
(the same formatting and readout), with the sequences' ends kept up to ``--max-length``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.distributed as dist

from skyrm.batching import scoring_batches
from skyrm.data import EncodedPairs
from skyrm.distributed import Runtime, same_count, share
from skyrm.eval.runner import SAMPLE, Benchmark, Encoder, encode_benchmark, load_benchmark, per_example, table_of
from skyrm.losses import pair_metrics
from skyrm.model import last_token_index, rewards

__all__ = ["score_all", "pairwise_metrics", "load_benches", "encode_benches", "bench_metrics", "Best"]


def score_all(model, sequences: list[list[int]], token_budget: int, pad_id: int, runtime: Runtime) -> list[float]:
    """One reward per sequence, every rank scoring its share in right-padded batches (FSDP needs the same number of
    forwards on every rank: a rank with fewer batches repeats one and discards it); all ranks get all rewards."""
    mine = share(list(range(len(sequences))), runtime)
    budget = max(token_budget, max(len(s) for s in sequences))
    batches = scoring_batches([sequences[i] for i in mine] or sequences[:1], budget, pad_id)
    scored: list[tuple[int, float]] = []
    model.eval()
    with torch.no_grad():
        for (indices, batch), real in same_count(batches, runtime):
            batch = batch.to(runtime.device)
            ends = (torch.arange(len(indices), device=runtime.device), last_token_index(batch.attention_mask))
            values = rewards(model, batch.input_ids, None, ends=ends).float().cpu().tolist()
            if real and mine:
                scored += [(mine[i], v) for i, v in zip(indices, values, strict=True)]
    model.train()
    gathered: list = [None] * runtime.world
    dist.all_gather_object(gathered, scored)
    out = [math.nan] * len(sequences)
    for part in gathered:
        for i, v in part:
            out[i] = v
    return out


def pairwise_metrics(model, encoded: EncodedPairs, token_budget: int, pad_id: int, runtime: Runtime) -> dict:
    """Pairwise accuracy (ties wrong), mean margin, and the mean and std of all rewards of ``encoded``'s pairs (the
    held-out pairs; the training pairs for ``--normalize-rewards``)."""
    sequences = [s for i in range(len(encoded)) for s in (encoded.chosen[i], encoded.rejected[i])]
    values = torch.tensor(score_all(model, sequences, token_budget, pad_id, runtime))
    chosen, rejected = values[0::2], values[1::2]
    measured = pair_metrics(chosen, rejected)
    return {"pairs": len(chosen), "accuracy": measured["correct"].item() / len(chosen),
            "margin": measured["margin"].item() / len(chosen), "reward_mean": values.mean().item(),
            "reward_std": values.std().item()}  # fmt: skip


def load_benches(specs: list[str]) -> dict[str, Benchmark]:
    """The ``--eval-bench`` benchmarks by name, read before any work (a wrong path fails at once). A file is read
    as RewardBench's layout when it has a ``subset`` column, else as a pairwise file (prompt, response_a,
    response_b, label)."""
    import pyarrow.parquet as pq

    from skyrm.data import read_rows

    out: dict[str, Benchmark] = {}
    for spec in specs:
        name = SAMPLE if spec == SAMPLE else Path(spec).stem
        if name in out:
            raise ValueError(f"--eval-bench: two benchmarks are named {name!r}; give files of different names")
        if spec == SAMPLE:
            out[name] = load_benchmark(SAMPLE)
            continue
        columns = pq.read_schema(spec).names if spec.endswith(".parquet") else read_rows(spec).table.schema.names
        out[name] = load_benchmark(bench_file=spec, kind="rewardbench" if "subset" in columns else "pairwise")
    return out


def _metric(section: str) -> str:
    return "subset_mean" if section.startswith("Mean of the subsets") else section.lower().replace(" ", "_")


def encode_benches(benches: dict[str, Benchmark], tokenizer, max_length: int) -> dict[str, list[list[int]]]:
    """Each benchmark's token ids, encoded once before training (a row the chat template refuses fails the run
    then, not at its first evaluation)."""
    encode = Encoder(tokenizer, "single", max_length)
    return {name: encode_benchmark(encode, bench) for name, bench in benches.items()}


def bench_metrics(model, tokenizer, name: str, bench: Benchmark, sequences: list[list[int]], token_budget: int,
                  runtime: Runtime) -> dict:  # fmt: skip
    """``bench/NAME/SECTION`` of one benchmark (module docstring), its ``sequences`` from :func:`encode_benches`."""
    scores = score_all(model, sequences, token_budget, tokenizer.pad_token_id, runtime)
    table = table_of(per_example(bench, scores), bench.kind)
    return {f"bench/{name}/{_metric(section)}": value for section, value in table["sections"].items()}


class Best:
    """``--save-best METRIC``: whether an evaluation is the best so far (highest, or lowest for a metric ending in
    ``loss``). The metric must be one the run's evaluations record (checked before any work); the best so far is
    kept in ``FOLDER/best.json`` beside the model, and read back on resume."""

    FILE = "best.json"

    def __init__(self, metric: str, has_held_out: bool, benches: list[str], folder: Path) -> None:
        families = (["eval/"] if has_held_out else []) + [f"bench/{name}/" for name in benches]
        if not any(metric.startswith(f) and len(metric) > len(f) for f in families):
            raise ValueError(f"--save-best {metric}: not a metric of this run's evaluations, which record "
                             f"{', '.join(f + '...' for f in families)} (see docs/commands.md)")  # fmt: skip
        self.metric, self.lowest, self.folder = metric, metric.endswith("loss"), folder
        self.value: float | None = None
        self.step: int | None = None

    def restore(self) -> None:
        """On resume: the best of the evaluations before the checkpoint."""
        saved = self.folder / self.FILE
        if saved.exists():
            info = json.loads(saved.read_text())
            if info.get("metric") == self.metric:
                self.value, self.step = info["value"], info["step"]

    def record(self) -> str:
        return json.dumps({"metric": self.metric, "value": self.value, "step": self.step}, indent=2) + "\n"

    def improved(self, record: dict) -> bool:
        if self.metric not in record:
            known = ", ".join(k for k in record if "/" in k)
            raise ValueError(f"--save-best {self.metric}: no such metric at an evaluation; the metrics are {known}")
        value = record[self.metric]
        if self.value is not None and (value >= self.value if self.lowest else value <= self.value):
            return False
        self.value, self.step = value, record["step"]
        return True

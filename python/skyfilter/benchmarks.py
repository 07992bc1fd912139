"""Benchmarks whose prompts training data is checked against: named hub benchmarks and local files.

``rewardbench`` is ``allenai/reward-bench`` (split ``filtered``, 2,985 prompts) and ``rewardbench-2`` is
``allenai/reward-bench-2`` (split ``test``); both are loaded with ``datasets.load_dataset``, which uses
the local cache and honours ``HF_HUB_OFFLINE``. Any local file (or table) with a prompt column works
too; a prompt may be a string, a list of messages (its first user turn is used) or a list of strings
(its first element, e.g. MT-Bench's ``turns``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from skyshared.hub import hub_access, install_hint

from skyfilter.frames import as_arrow
from skyfilter.io import InputError, read_table
from skyfilter.schema import SchemaError, match_texts, pair_table

__all__ = ["Benchmark", "BenchmarkError", "HUB_BENCHMARKS", "load_benchmark", "benchmark_from_table"]


class BenchmarkError(ValueError):
    """A benchmark cannot be loaded or has no prompts."""


@dataclass(frozen=True)
class HubBenchmark:
    """Where a named benchmark lives on the Hugging Face hub."""

    repo: str
    split: str
    prompt_column: str = "prompt"
    subset_column: str | None = "subset"


HUB_BENCHMARKS: dict[str, HubBenchmark] = {
    "rewardbench": HubBenchmark("allenai/reward-bench", "filtered"),
    "rewardbench-2": HubBenchmark("allenai/reward-bench-2", "test"),
}


@dataclass(frozen=True)
class Benchmark:
    """A benchmark's prompts (one per row; null where a row has none) and optional subsets."""

    name: str
    prompts: pa.Array
    subsets: pa.Array | None = None
    origin: str = ""

    def __post_init__(self) -> None:
        if self.subsets is not None and len(self.subsets) != len(self.prompts):
            raise BenchmarkError(f"benchmark {self.name}: {len(self.subsets)} subsets for {len(self.prompts)} prompts")

    def __len__(self) -> int:
        return len(self.prompts)

    def subset_names(self) -> list[str | None]:
        """The subset of every row (None when the benchmark has no subsets)."""
        return self.subsets.to_pylist() if self.subsets is not None else [None] * len(self)


def _first_of_string_lists(col: pa.Array) -> pa.Array:
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    take = np.where(lengths > 0, starts, -1)
    return col.flatten().take(pa.array(take, mask=take < 0))


def benchmark_from_table(
    table,
    name: str,
    prompt_column: str = "prompt",
    subset_column: str | None = "subset",
    origin: str = "",
) -> Benchmark:
    """A benchmark from any table with a prompt column (any kind :func:`skyfilter.frames.as_arrow` takes); the
    subset column ``subset`` is used when present, and another one named must be there."""
    table, _ = as_arrow(table)
    where = origin or name
    if prompt_column not in table.schema.names:
        raise BenchmarkError(f"{where}: no prompt column {prompt_column!r}; columns are {table.schema.names}")
    col = table.column(prompt_column).combine_chunks()
    if pa.types.is_list(col.type) and not pa.types.is_struct(col.type.value_type):
        prompts = _first_of_string_lists(col)
    else:
        try:
            prompts, _ = match_texts(pair_table(table, prompt_column=prompt_column), "prompt")
        except SchemaError as e:
            raise BenchmarkError(f"{where}: {e}") from None
    if not pa.types.is_string(prompts.type) and not pa.types.is_large_string(prompts.type):
        raise BenchmarkError(f"{where}: prompt column {prompt_column!r} holds {col.type}, not text")
    if pc.sum(pc.utf8_length(pc.utf8_trim_whitespace(prompts.fill_null("")))).as_py() in (None, 0):
        raise BenchmarkError(f"{where}: benchmark {name!r} has no non-empty prompts in column {prompt_column!r}")
    subsets = None
    if subset_column not in (None, "subset") and subset_column not in table.schema.names:
        raise BenchmarkError(f"{where}: no subset column {subset_column!r}; columns are {table.schema.names}")
    if subset_column is not None and subset_column in table.schema.names:
        subsets = table.column(subset_column).combine_chunks().cast(pa.string())
    return Benchmark(name, prompts, subsets, origin or name)


def _hub_table(spec: HubBenchmark, name: str) -> pa.Table:
    hint = (
        f"Point at a local copy instead: --bench-file FILE --bench-column {spec.prompt_column}"
        + (f" --bench-subset-column {spec.subset_column}" if spec.subset_column else "")
        + f" (for example a parquet or jsonl export of {spec.repo}, split {spec.split}), or fill the "
        "Hugging Face cache (HF_HOME) where the hub can be reached."
    )
    try:
        import datasets
    except ImportError:
        raise BenchmarkError(
            f"benchmark {name!r} is loaded from the Hugging Face hub ({spec.repo}), which needs the `datasets` "
            f"package: {install_hint('datasets')}. {hint}"
        ) from None
    with hub_access() as offline:
        try:
            return datasets.load_dataset(spec.repo, split=spec.split).data.table
        except Exception as e:  # network, cache and naming problems surface as many exception types
            where = " (the hub cannot be reached)" if offline else ""
            raise BenchmarkError(
                f"could not load benchmark {name!r} = {spec.repo} (split {spec.split}) from the hub or the local "
                f"cache{where}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. {hint}"
            ) from None


def load_benchmark(
    spec: str | os.PathLike,
    prompt_column: str = "prompt",
    subset_column: str | None = "subset",
    name: str | None = None,
) -> Benchmark:
    """A named benchmark (``rewardbench``, ``rewardbench-2``) or a benchmark file."""
    if isinstance(spec, str) and spec in HUB_BENCHMARKS:
        hub = HUB_BENCHMARKS[spec]
        table = _hub_table(hub, spec)
        return benchmark_from_table(
            table, name or spec, hub.prompt_column, hub.subset_column, f"{hub.repo}:{hub.split}"
        )
    path = Path(spec)
    if not path.exists():
        raise BenchmarkError(
            f"{spec}: no such benchmark file; named benchmarks are {', '.join(sorted(HUB_BENCHMARKS))}"
        )
    try:
        table = read_table(path)
    except InputError as e:
        raise BenchmarkError(str(e)) from None
    return benchmark_from_table(table, name or path.name.split(".")[0], prompt_column, subset_column, str(path))

"""The curation pipeline: a recipe's sources converted, deduplicated, selected and decontaminated into one pair
set in the released Skywork-Reward-Preference-80K schema, with a manifest that accounts for every row.

Steps, in this order (each only if the recipe has it):

1. **convert**: each source is read (the hub, a local mirror, or the project's synthetic sample) and converted
   by its adapter; every input row is used by a pair or dropped with the adapter's reason.
2. **dedup**: exact (and optionally near) duplicates of the pairs over all sources; the first in source order
   stays.
3. **select**: the Magpie rule (mean ArmoRM score plus the generator's offset, top fraction per category, the
   Magpie sources pooled) and the WildGuardMix rule (adversarial pairs, and/or pairs a reward model already
   ranks correctly).
4. **decontaminate**: pairs of the named sources whose prompt shares an n-gram with a benchmark prompt.

Written to the output folder (which must not exist; everything appears at once, or nothing):

* ``data/train-00000-of-00001.parquet``: ``chosen`` and ``rejected`` as whole conversations (message lists) and
  ``source``: ``datasets.load_dataset("<folder>")`` reads it as split ``train``;
* ``dropped.parquet``: every row that did not make it, with ``step``, ``source``, ``source_row``, ``reason``,
  ``detail`` and the pair (or, for the convert step, the input row as JSON in ``record``);
* ``manifest.json``: the recipe (text and hash), the tool version, every input with its fingerprint, and per step
  and source the rows in, out and dropped per reason (in = out + dropped, checked);
* ``report.md`` and PNG plots (see :mod:`skyfilter.curate_report`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from skyshared.hub import hub_access, install_hint, missing_path
from skyshared.outputs import OutputError, Staged, check_folder, writing

from skyfilter import _core
from skyfilter.adapters import ADAPTERS, CURATION_SCHEMA, AdapterError, Converted
from skyfilter.benchmarks import HUB_BENCHMARKS, Benchmark, BenchmarkError, load_benchmark
from skyfilter.contaminate import contaminate
from skyfilter.dedup import CONFLICT, DedupOptions, dedup_pairs
from skyfilter.dedup import REASONS as DEDUP_REASONS
from skyfilter.io import (
    AtomicWriters,
    InputError,
    RowReading,
    Source,
    check_outputs,
    demo_file,
    open_source,
    read_table,
    worker_threads,
    write_bad_rows,
)
from skyfilter.recipe import Recipe, SourceSpec, in_data_dir
from skyfilter.samples import SAMPLE_ROWS, sample_table
from skyfilter.schema import MESSAGES
from skyfilter.select import REASONS as SELECT_REASONS
from skyfilter.select import SelectOptions, select_table

__all__ = ["CurateError", "Manifest", "run_curate", "RELEASE_SCHEMA", "DATA_FILE"]

#: The released schema: whole conversations (prompt turns and the answer) and the source.
RELEASE_SCHEMA = pa.schema([("chosen", MESSAGES), ("rejected", MESSAGES), ("source", pa.string())])
DATA_FILE = "data/train-00000-of-00001.parquet"

_DROPPED_SCHEMA = pa.schema(
    [
        ("step", pa.string()),
        ("source", pa.string()),
        ("source_row", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("record", pa.string()),
        *[f for f in CURATION_SCHEMA if f.name not in ("source", "source_row")],
    ]
)
_LOCAL_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".json", ".arrow")


class CurateError(ValueError):
    """A curation run that cannot go on; nothing is written."""


@dataclass
class Manifest:
    """What a run read, did and wrote; ``steps`` hold, per step and source, rows in, out and dropped per reason."""

    tool: dict
    recipe: dict
    created: str
    sample: bool
    inputs: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    outputs: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, ensure_ascii=False) + "\n"

    def step(self, name: str) -> dict:
        return next(s for s in self.steps if s["step"] == name)


# ---------------------------------------------------------------------------------------------- reading


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256_table(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _adapter_columns(spec: SourceSpec, names: list[str]) -> list[str] | None:
    """The columns the source's adapter reads, or None (all) when some are missing: the adapter names them."""
    adapter = ADAPTERS[spec.adapter]
    for columns in (adapter.COLUMNS, getattr(adapter, "UNPAIRED_COLUMNS", None)):
        if columns and all(c in names for c in columns):
            return list(columns)
    return None


def _schema_of(schema: pa.Schema, columns: list[str] | None) -> pa.Schema:
    return schema if columns is None else pa.schema([schema.field(c) for c in columns])


def _project(table: pa.Table, spec: SourceSpec) -> pa.Table:
    wanted = _adapter_columns(spec, table.schema.names)
    return table if wanted is None else table.select(wanted)


def _local_file(spec: SourceSpec, data_dir: Path | None) -> Path | None:
    """The source's local file: ``DATA_DIR/<name>.<suffix>``, or ``dataset`` when it is a file; None for the hub.
    With a data folder, a source found in neither is an error, not a silent download."""
    candidates = [data_dir / f"{spec.name}{suffix}" for suffix in _LOCAL_SUFFIXES] if data_dir is not None else []
    for candidate in [*candidates, data_dir / spec.dataset if data_dir is not None else Path(spec.dataset)]:
        if candidate.is_file():
            return candidate
    if data_dir is not None:
        raise CurateError(
            f"source {spec.name}: not in {data_dir} (looked for {', '.join(c.name for c in candidates)}), and its "
            f"dataset {spec.dataset!r} is not a local file"
        )
    return None


def _hub_commit(spec: SourceSpec) -> str | None:
    """The commit of the dataset repository that was loaded (None where the hub cannot be asked)."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(spec.dataset, revision=spec.revision, timeout=10).sha
    except Exception:  # offline, gated, or an old huggingface_hub: the fingerprint still identifies the data
        return None


def _from_hub(spec: SourceSpec) -> tuple[pa.Table, dict]:
    try:
        import datasets
    except ImportError:
        raise CurateError(
            f"source {spec.name}: {spec.dataset} is loaded from the Hugging Face hub, which needs the `datasets` "
            f"package ({install_hint('datasets')}); or pass --data-dir with local copies, or --sample"
        ) from None
    if missing_path(spec.dataset):
        raise CurateError(f"source {spec.name}: {spec.dataset}: no such file")
    with hub_access() as offline:
        try:
            dataset = datasets.load_dataset(spec.dataset, spec.config, split=spec.split, revision=spec.revision)
        except Exception as e:  # datasets raises many types for network, cache, gating and naming problems
            where = "its local cache (the hub cannot be reached)" if offline else "the hub or its cache"
            raise CurateError(
                f"source {spec.name}: could not load {spec.dataset} (config {spec.config}, split {spec.split}) from "
                f"{where}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. Download it and "
                f"pass --data-dir DIR with DIR/{spec.name}.parquet, or run with --sample."
            ) from None
        commit = None if offline else _hub_commit(spec)
    fingerprint = {"fingerprint": getattr(dataset, "_fingerprint", None), "revision": spec.revision,
                   "commit": commit}  # fmt: skip
    return dataset.data.table, fingerprint


def _read_source(
    spec: SourceSpec, data_dir: Path | None, sample: bool, contaminated: list[str], reading: RowReading
) -> tuple[pa.Table, dict, Source | None]:
    """The source's rows (projected to what its adapter reads), what identifies them in the manifest, and the local
    file it was read from (with its bad rows, set apart when ``reading.keep_bad``), if any."""
    where = {"source": spec.name, "adapter": spec.adapter, "dataset": spec.dataset, "config": spec.config,
             "split": spec.split}  # fmt: skip
    if sample:
        table = sample_table(spec.adapter, spec.name, SAMPLE_ROWS, generator=spec.generator_label, planted=12,
                             contaminated=contaminated)  # fmt: skip
        return _project(table, spec), {**where, "origin": "skyfilter sample", "sha256": _sha256_table(table)}, None
    path = _local_file(spec, data_dir)
    if path is not None:
        source = open_source(str(path), spec.split, reading)
        wanted = _adapter_columns(spec, source.schema.names)
        table = pa.Table.from_batches(list(source.batches(65_536, wanted)), schema=_schema_of(source.schema, wanted))
        return table, {**where, "origin": str(path), "sha256": _sha256_file(path)}, source
    table, fingerprint = _from_hub(spec)
    return _project(table, spec), {**where, "origin": "datasets.load_dataset", **fingerprint}, None


def _input_rows(result: Converted, source: Source) -> Converted:
    """``result`` with its ``source_row`` numbers counted in the input file, bad rows set apart included."""
    if source.row_numbers is None:
        return result

    def renumbered(table: pa.Table) -> pa.Table:
        i = table.schema.get_field_index("source_row")
        rows = source.input_rows(table.column(i).to_numpy())
        return table.set_column(i, table.schema.field(i), pa.array(rows, pa.int64()))

    return Converted(renumbered(result.pairs), renumbered(result.dropped), result.rows_in, result.rows_used)


# ---------------------------------------------------------------------------------------------- steps


class _Pool:
    """The pairs of all sources; per row, the step and reason that dropped it (None while it is in)."""

    def __init__(self, pairs: pa.Table):
        self.pairs = pairs
        n = pairs.num_rows
        self.sources = pairs.column("source").to_numpy(zero_copy_only=False).astype(object)
        self.step = np.full(n, None, dtype=object)
        self.reason = np.full(n, None, dtype=object)
        self.detail = np.full(n, None, dtype=object)

    @property
    def alive(self) -> np.ndarray:
        return self.reason == None  # noqa: E711 - element-wise

    def drop(self, step: str, rows: np.ndarray, reasons, details=None) -> None:
        if not self.alive[rows].all():
            raise AssertionError(f"{step}: a row was dropped twice")
        self.step[rows], self.reason[rows] = step, reasons
        if details is not None:
            self.detail[rows] = details

    def counts(self, step: str, before: np.ndarray, names: list[str]) -> dict:
        """Per source: rows in (still in before the step), out and dropped per reason."""
        out = {}
        for name in names:
            mine = self.sources == name
            dropped = self.reason[mine & (self.step == step)]
            reasons = {str(r): int((dropped == r).sum()) for r in sorted(set(dropped.tolist()))}
            entry = {"in": int((before & mine).sum()), "out": int((self.alive & mine).sum()), "dropped": reasons}
            if entry["in"] != entry["out"] + sum(reasons.values()):
                raise AssertionError(f"{step}: the counts of {name} do not add up: {entry}")
            out[name] = entry
        return out

    def rows(self, rows: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """Pool rows (all of them without a copy when ``rows`` is every row), optionally only some columns."""
        table = self.pairs if columns is None else self.pairs.select(columns)
        return table if len(rows) == table.num_rows else table.take(pa.array(rows))

    def write_dropped(self, writer: pq.ParquetWriter, slice_rows: int = 32_768) -> int:
        """Writes the dropped pairs a slice at a time (the copies stay small); returns how many."""
        gone = np.flatnonzero(~self.alive)
        for start in range(0, len(gone), slice_rows):
            writer.write_table(self._dropped_slice(gone[start : start + slice_rows]))
        return len(gone)

    def _dropped_slice(self, rows: np.ndarray) -> pa.Table:
        taken = self.pairs.take(pa.array(rows))
        return _dropped_table(
            self.step[rows].tolist(), taken.column("source"), taken.column("source_row"), self.reason[rows].tolist(),
            self.detail[rows].tolist(), None, taken,
        )  # fmt: skip


def _dedup(pool: _Pool, recipe: Recipe, threads: int, steps) -> None:
    step = recipe.dedup
    alive = np.flatnonzero(pool.alive)
    pairs = pool.rows(alive)
    options = DedupOptions(key=step.key, near=step.near, threshold=step.threshold, conflicts=step.conflicts)
    decisions = steps.dedup_pairs(pairs, options, threads, "pool")
    gone = np.flatnonzero(decisions.reason != 0)
    other = alive[decisions.other[gone]]
    source_rows = pool.pairs.column("source_row").to_numpy()
    details = [
        f"{'conflicts with' if r == CONFLICT else 'duplicate of'} {pool.sources[o]} row {source_rows[o]}"
        for r, o in zip(decisions.reason[gone].tolist(), other.tolist(), strict=True)
    ]
    reasons = np.array(DEDUP_REASONS, dtype=object)[decisions.reason[gone]]
    pool.drop("dedup", alive[gone], reasons, np.array(details, dtype=object))


def _rows_of(pool: _Pool, sources: tuple[str, ...]) -> np.ndarray:
    return np.flatnonzero(pool.alive & np.isin(pool.sources, list(sources)))


def _select_magpie(pool: _Pool, recipe: Recipe, threads: int, steps) -> dict:
    rule = recipe.magpie
    rows = _rows_of(pool, rule.sources)
    options = SelectOptions(
        score="score", group_by="category", fractions=rule.fractions, default_fraction=rule.default_fraction,
        offset_by="generator" if rule.offsets else None, offsets=rule.offsets, missing="drop",
    )  # fmt: skip
    selection = steps.select_table(pool.rows(rows, ["score", "category", "generator"]), options, threads=threads,
                                   name="magpie")  # fmt: skip
    codes = selection.decisions.reason
    gone = codes != 0
    reasons = np.array(SELECT_REASONS, dtype=object)[codes[gone]]
    pool.drop("select", rows[gone], reasons)
    return {"magpie": {"rule": options.describe(), "per_category": selection.report.per_group}}


def _rm_scores(path: str, pairs: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Reward-model scores of ``pairs`` from a file with ``source``, ``source_row``, ``rm_chosen``, ``rm_rejected``."""
    try:
        scores = read_table(path)
    except (InputError, OSError) as e:
        raise CurateError(f"WildGuardMix scores: {e}") from None
    needed = ["source", "source_row", "rm_chosen", "rm_rejected"]
    if missing := [c for c in needed if c not in scores.schema.names]:
        raise CurateError(f"{path}: needs columns {needed} (missing {missing})")
    lookup = {}  # rows with a null key or a null / NaN score count as unscored
    for s, r, c, j in zip(*(scores.column(c).to_pylist() for c in needed), strict=True):
        if None not in (s, r, c, j) and not (math.isnan(c) or math.isnan(j)):
            lookup[(s, int(r))] = (float(c), float(j))
    keys = zip(pairs.column("source").to_pylist(), pairs.column("source_row").to_pylist(), strict=True)
    found = [lookup.get((s, r)) for s, r in keys]
    if None in found:
        i = found.index(None)
        raise CurateError(
            f"{path}: no reward-model scores for {pairs.column('source')[i]} row {pairs.column('source_row')[i]} "
            f"({found.count(None)} pairs lack them); score every pair of the source"
        )
    values = np.array(found, dtype=np.float64).reshape(-1, 2)
    return values[:, 0], values[:, 1]


def _select_wildguard(pool: _Pool, recipe: Recipe, threads: int, steps) -> dict:
    rule = recipe.wildguardmix
    rows = _rows_of(pool, rule.sources)
    if rule.reading in ("adversarial", "both"):
        flags = pool.pairs.column("adversarial").take(pa.array(rows)).fill_null(False)
        adversarial = flags.to_numpy(zero_copy_only=False)
        pool.drop("select", rows[~adversarial], "not_adversarial")
        rows = rows[adversarial]
    if rule.reading in ("rm-agreement", "both") and len(rows):
        chosen, rejected = _rm_scores(rule.scores, pool.rows(rows, ["source", "source_row"]))
        table = pa.table({"rm_chosen": chosen, "rm_rejected": rejected})
        options = SelectOptions(rm_chosen="rm_chosen", rm_rejected="rm_rejected")
        selection = steps.select_table(table, options, threads=threads, name="wildguardmix")
        codes = selection.decisions.reason
        pool.drop("select", rows[codes != 0], np.array(SELECT_REASONS, dtype=object)[codes[codes != 0]])
    return {"wildguardmix": {"reading": rule.reading, "scores": rule.scores}}


def _benchmarks(specs: list[str]) -> list[Benchmark]:
    """The benchmarks, loaded before any step runs so that a wrong name fails at once."""
    try:
        return [load_benchmark(b) for b in specs]
    except (BenchmarkError, InputError, OSError) as e:
        raise CurateError(f"decontaminate: {e}") from None


def _decontaminate(pool: _Pool, recipe: Recipe, benches: list[Benchmark], threads: int, steps) -> dict:
    step = recipe.decontaminate
    done = {"benchmarks": [f"{b.name} ({len(b.prompts):,} prompts)" for b in benches], "preset": step.preset}
    if step.match_short:
        done["match_short"] = True
    rows = np.flatnonzero(pool.alive) if step.sources is None else _rows_of(pool, step.sources)
    if not len(rows):
        return done
    prompts = pool.rows(rows, ["prompt"])
    result = steps.contaminate(
        prompts, benches, step.preset, prompt_column="prompt", threads=threads, match_short=step.match_short
    )
    flagged = result.column("flagged").to_numpy(zero_copy_only=False)
    names, bench_rows = result.column("bench_name").to_pylist(), result.column("bench_row").to_pylist()
    grams = result.column("matched_ngram").to_pylist()
    details = [f"{names[i]} row {bench_rows[i]}: {grams[i]!r}" for i in np.flatnonzero(flagged)]
    pool.drop("decontaminate", rows[flagged], "contaminated", np.array(details, dtype=object))
    return done


# ---------------------------------------------------------------------------------------------- output


def release_table(pairs: pa.Table) -> pa.Table:
    """Pairs as whole conversations: the prompt turns followed by the answer turn(s)."""

    def joined(answer: str) -> pa.Array:
        prompt = pairs.column("prompt").combine_chunks()
        reply = pairs.column(answer).combine_chunks()
        n = len(prompt)
        p_len = pc.list_value_length(prompt).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        a_len = pc.list_value_length(reply).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        # Interleave each row's prompt messages and answer messages by a stable sort on (row, part).
        rows = np.concatenate([np.repeat(np.arange(n), p_len), np.repeat(np.arange(n), a_len)])
        part = np.concatenate([np.zeros(p_len.sum(), np.int8), np.ones(a_len.sum(), np.int8)])
        order = np.lexsort((part, rows))
        values = pa.concat_arrays([prompt.flatten(), reply.flatten()]).take(pa.array(order))
        offsets = np.concatenate([[0], np.cumsum(p_len + a_len)]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), values, type=MESSAGES)

    return pa.Table.from_arrays([joined("chosen"), joined("rejected"), pairs.column("source")], schema=RELEASE_SCHEMA)


def _convert(
    recipe: Recipe, data_dir: Path | None, sample: bool, manifest: Manifest, say, reading: RowReading
) -> tuple[dict[str, Converted], list[Source]]:
    """Step 1: every source read and converted by its adapter; its counts are in input rows (in = out + dropped +
    bad rows). Returns the conversions and the local files read (which hold the bad rows)."""
    start = time.perf_counter()
    contaminated = []
    if sample:  # Magpie-Ultra's sample copies the demo benchmark's prompts, for decontamination to find
        contaminated = [p for p in read_table(demo_file("demo_bench.jsonl")).column("prompt").to_pylist() if p]
    converted: dict[str, Converted] = {}
    files: list[Source] = []
    counts = {}
    for spec in recipe.sources:
        polluted = sample and recipe.decontaminate is not None and (
            recipe.decontaminate.sources is None or spec.name in recipe.decontaminate.sources)  # fmt: skip
        table, origin, source = _read_source(spec, data_dir, sample, contaminated if polluted else [], reading)
        bad = len(source.bad_rows) if source is not None else 0
        try:
            generator = spec.generator_label if spec.adapter.startswith("magpie") else spec.generator
            result = ADAPTERS[spec.adapter].convert(table, spec.name, generator)
        except AdapterError as e:
            raise CurateError(f"source {spec.name} ({origin.get('origin')}): {e}") from None
        if source is not None:
            files.append(source)
            result = _input_rows(result, source)
        converted[spec.name] = result
        manifest.inputs.append({**origin, "rows": table.num_rows + bad})
        counts[spec.name] = {"in": result.rows_in + bad, "out": result.rows_used, "pairs": result.pairs.num_rows,
                             "dropped": result.dropped_counts(), "bad_rows": bad}  # fmt: skip
        say(f"{'convert':<13} {spec.name}: {result.rows_in:,} rows -> {result.pairs.num_rows:,} pairs")
    manifest.steps.append({
        "step": "convert", "unit": "input rows", "rows_in": sum(c["in"] for c in counts.values()),
        "rows_out": sum(c["out"] for c in counts.values()), "pairs": sum(c["pairs"] for c in counts.values()),
        "bad_rows": sum(c["bad_rows"] for c in counts.values()), "seconds": round(time.perf_counter() - start, 3),
        "sources": counts,
    })  # fmt: skip
    return converted, files


def _select(pool: _Pool, recipe: Recipe, threads: int, steps) -> dict:
    done = {}
    if recipe.magpie is not None:
        done |= _select_magpie(pool, recipe, threads, steps)
    if recipe.wildguardmix is not None:
        done |= _select_wildguard(pool, recipe, threads, steps)
    return done


def _convert_drops(name: str, result: Converted) -> pa.Table:
    n, dropped = result.dropped.num_rows, result.dropped
    return _dropped_table(["convert"] * n, [name] * n, dropped.column("source_row"), dropped.column("reason"),
                          [None] * n, dropped.column("record"), None)  # fmt: skip


def _dropped_table(step, source, source_row, reason, detail, record, pairs: pa.Table | None) -> pa.Table:
    """Rows of ``dropped.parquet``: the step, where the row comes from and why it went, with the pair (``pairs``,
    pool rows) or the input row as JSON (``record``, the convert step)."""
    n = len(step)
    columns = {
        "step": pa.array(step, pa.string()),
        "source": pa.array(source, pa.string()),
        "source_row": pa.array(source_row, pa.int64()),
        "reason": pa.array(reason, pa.string()),
        "detail": pa.array(detail, pa.string()),
        "record": pa.nulls(n, pa.string()) if record is None else record,
    }
    for f in _DROPPED_SCHEMA:
        if f.name not in columns:
            columns[f.name] = pa.nulls(n, f.type) if pairs is None else pairs.column(f.name)
    return pa.table(columns, schema=_DROPPED_SCHEMA)


def _write(
    target: Path,
    pool: _Pool,
    converted: dict[str, Converted],
    manifest: Manifest,
    recipe: Recipe,
    plots: bool,
    bad_rows: dict | None = None,
) -> pa.Table:
    """Writes everything into a temporary folder, renamed into place at the end; returns the kept pairs.
    ``bad_rows``: the bad-rows file and its row count, for the manifest."""
    from skyfilter.curate_report import write_report

    start = time.perf_counter()
    with Staged() as staged, writing(target, "--out"):  # renamed into place at the end, or removed with what it made
        tmp = staged.path(target)
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "data").mkdir(parents=True)
        kept = pool.pairs.filter(pa.array(pool.alive))
        pq.write_table(release_table(kept) if recipe.output == "release" else kept, tmp / DATA_FILE)
        with pq.ParquetWriter(tmp / "dropped.parquet", _DROPPED_SCHEMA) as writer:
            for name, result in converted.items():
                writer.write_table(_convert_drops(name, result))
            dropped_rows = sum(c.dropped.num_rows for c in converted.values()) + pool.write_dropped(writer)
        report_files = write_report(tmp, kept, pool, manifest, recipe, plots=plots)
        manifest.outputs = {
            "data": {"path": DATA_FILE, "rows": kept.num_rows, "sha256": _sha256_file(tmp / DATA_FILE)},
            "dropped": {"path": "dropped.parquet", "rows": dropped_rows},
            "report": report_files,
            **({"bad_rows": bad_rows} if bad_rows is not None else {}),
            "seconds": round(time.perf_counter() - start, 3),
        }
        (tmp / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
    return kept


@contextlib.contextmanager
def _kernels(engine: str, address: str | None) -> Iterator:
    """The functions the steps call: the local ones, or their ray engine twins connected for the block."""
    if engine == "local":
        yield SimpleNamespace(dedup_pairs=dedup_pairs, select_table=select_table, contaminate=contaminate)
        return
    from skyshared.ray_session import ray_session

    from skyfilter.ray.curation import RaySteps

    with ray_session(address, command="skyfilter curate") as ray:
        yield RaySteps(ray)


def run_curate(
    recipe: Recipe,
    out: str | os.PathLike,
    *,
    sample: bool = False,
    data_dir: str | os.PathLike | None = None,
    bench: list[str] | None = None,
    threads: int | None = None,
    plots: bool = True,
    bad_rows: str | os.PathLike | None = None,
    log=None,
    engine: str = "local",
    ray_address: str | None = None,
) -> Manifest:
    """Runs ``recipe`` into the new folder ``out``. ``sample``: the project's synthetic rows for every source (and
    the shipped demo benchmark for the hub benchmarks), offline. ``data_dir``: a folder with ``<source name>.parquet``
    (or .jsonl, .jsonl.gz, .json, .arrow) files, read instead of the hub. ``bench`` replaces the recipe's
    benchmarks (names or files). Rows of local files that cannot be read stop the run, or with ``bad_rows`` go to that
    file (counted per source in the convert step). ``log`` gets one line per step (default: standard error).
    ``engine="ray"`` runs dedup, select and decontaminate on a Ray cluster (``ray_address``, see
    :mod:`skyfilter.ray.curation`), with the same decisions."""
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    target = Path(out)
    data_dir = Path(data_dir) if data_dir is not None else None
    if data_dir is not None and not data_dir.is_dir():
        raise CurateError(f"{data_dir}: no such folder")
    if bench and recipe.decontaminate is None:
        raise CurateError(f"--bench-file: recipe {recipe.name!r} has no [decontaminate] step to match against it; add "
                          'one (e.g. [decontaminate] with bench = ["rewardbench"] and preset = "skywork") or leave '
                          "--bench-file out (nothing was written)")  # fmt: skip
    if data_dir is not None:
        recipe = in_data_dir(recipe, data_dir)
    local_inputs = [*(sorted(data_dir.iterdir()) if data_dir is not None else []), *(bench or [])]
    try:  # before any work: a new folder in a writable place, and --bad-rows neither in it nor on an input
        check_folder("--out", target, outputs={"--bad-rows": bad_rows})
        check_outputs(local_inputs, {"--bad-rows": bad_rows})
    except OutputError as e:
        raise CurateError(str(e)) from None
    threads = worker_threads(threads)
    benches = list(bench) if bench else list(recipe.decontaminate.bench if recipe.decontaminate else ())
    if sample and not bench:
        benches = [demo_file("demo_bench.jsonl") if b in HUB_BENCHMARKS else b for b in benches]
    benchmarks = _benchmarks(benches) if recipe.decontaminate is not None else []
    manifest = Manifest(
        tool={"name": "skyfilter", "version": _core.__version__, "engine": engine},
        recipe={
            "name": recipe.name,
            "path": recipe.path,
            "sha256": hashlib.sha256(recipe.text.encode()).hexdigest(),
            "text": recipe.text,
        },  # fmt: skip
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        sample=sample,
    )
    names = [s.name for s in recipe.sources]
    reading = RowReading(keep_bad=bad_rows is not None)
    converted, files = _convert(recipe, data_dir, sample, manifest, say, reading)
    pool = _Pool(pa.concat_tables([converted[n].pairs for n in names]))
    steps = []
    if recipe.dedup is not None:
        steps.append(("dedup", lambda: _dedup(pool, recipe, threads, kernels)))
    if recipe.magpie is not None or recipe.wildguardmix is not None:
        steps.append(("select", lambda: _select(pool, recipe, threads, kernels)))
    if recipe.decontaminate is not None:
        steps.append(("decontaminate", lambda: _decontaminate(pool, recipe, benchmarks, threads, kernels)))
    with _kernels(engine, ray_address) as kernels:
        for step, work in steps:
            start, before = time.perf_counter(), pool.alive.copy()
            extra = work() or {}
            manifest.steps.append({
                "step": step, "unit": "pairs", "rows_in": int(before.sum()), "rows_out": int(pool.alive.sum()),
                "seconds": round(time.perf_counter() - start, 3), "sources": pool.counts(step, before, names), **extra,
            })  # fmt: skip
            say(f"{step:<13} {int(before.sum()):,} pairs -> {int(pool.alive.sum()):,}")
    with AtomicWriters({"bad_rows": bad_rows}) as writers:  # renamed into place after the folder
        bad = write_bad_rows(writers, "bad_rows", files)
        if bad:
            say(f"{'convert':<13} {bad:,} bad rows set apart in {bad_rows}")
        bad_output = {"path": str(bad_rows), "rows": bad} if bad_rows is not None else None
        kept = _write(target, pool, converted, manifest, recipe, plots, bad_output)
    say(f"wrote {kept.num_rows:,} pairs to {target / DATA_FILE}")
    return manifest

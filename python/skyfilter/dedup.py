"""Exact and near-duplicate removal, and conflicting preferences, for preference pairs.

Three checks, in this order of precedence (a row is dropped for the first that applies):

1. **conflict**: the same prompt with the same two responses, preferred one way in some rows and the other way
   in others (label noise). ``conflicts="drop"`` (default) drops every row of such a group; ``"keep"`` keeps
   them and only reports them.
2. **exact_duplicate**: rows whose key is equal after normalisation (whitespace trimmed and collapsed;
   optionally lower-cased). ``key="pair"`` (default) compares the prompt turns, the chosen turn(s) and the
   rejected turn(s); ``key="prompt"`` the prompt turns alone. Roles are not part of the key.
3. **near_duplicate**: MinHash over word shingles (the ``words`` tokens: lowercase, ``\\w\\w+``), LSH banding,
   candidates verified by their Jaccard similarity, estimated from the signatures (``verify="estimate"``) or
   exact (``verify="exact"``: the shingle sets, as 64-bit hashes, intersected; 8 bytes per shingle of each row
   held until the clusters are found); a cluster is a connected component of the verified pairs (so a
   row can be in the cluster of a row it is not similar to, through rows between them). Texts are the same turns
   as the key; shingles never span two turns.

Which row of a group is kept is a policy: ``keep="first"`` (the first in input order) or the highest value of a
score column (ties and null / NaN scores: the first row wins; null and NaN rank below every number).
``cluster_id`` (the 0-based position, over all inputs in order, of the first row of the row's near-duplicate
cluster; the row itself when it has none) is written for every row. Results do not depend on the thread count
or on the batch size.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from skyfilter import _core
from skyfilter.frames import as_arrow
from skyfilter.io import (
    AtomicWriters,
    InputError,
    RowReading,
    Source,
    check_outputs,
    input_specs,
    iter_batches,
    open_sources,
    table_source,
    take_batch,
    worker_threads,
    write_bad_rows,
)
from skyfilter.schema import (
    SchemaError,
    answers_advice,
    pair_table,
    resolve_layout,
    text_row,
    turn_texts,
    unread_answers,
)
from skyfilter.select import score_values

__all__ = [
    "DedupOptions",
    "DedupReport",
    "lsh_params",
    "dedup_decisions",
    "near_duplicates",
    "ranking",
    "build_report",
    "evidence_columns",
    "hash_batch",
    "sketch",
    "HashedBatch",
    "output_schemas",
    "dedup_pairs",
    "decide_batches",
    "dedup_rows",
    "DECISION_COLUMNS",
    "decision_columns",
    "run_dedup",
    "REASONS",
    "ADDED_COLUMNS",
]

KEYS = ("pair", "prompt")
VERIFY = ("estimate", "exact")
REASONS = ("kept", "conflict", "exact_duplicate", "near_duplicate")
KEPT, CONFLICT, EXACT, NEAR = range(4)

#: Columns added to the dropped rows (``cluster_id`` is also added to the kept rows).
ADDED_COLUMNS = ("input_file", "input_row", "reason", "duplicate_of_file", "duplicate_of_row", "cluster_id")


@dataclass(frozen=True)
class DedupOptions:
    """What counts as a duplicate and which copy stays."""

    key: str = "pair"
    score_column: str | None = None
    lowercase: bool = False
    conflicts: str = "drop"
    near: bool = True
    threshold: float = 0.7
    num_perm: int = 128
    shingle: int = 5
    bands: int | None = None
    rows_per_band: int | None = None
    seed: int = 0
    verify: str = "estimate"

    def __post_init__(self) -> None:
        if self.key not in KEYS:
            raise ValueError(f"key must be one of {', '.join(KEYS)}, got {self.key!r}")
        if self.verify not in VERIFY:
            raise ValueError(f"verify must be one of {', '.join(VERIFY)}, got {self.verify!r}")
        if self.conflicts not in ("drop", "keep"):
            raise ValueError(f"conflicts must be 'drop' or 'keep', got {self.conflicts!r}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be within (0, 1], got {self.threshold}")
        if (self.bands is None) != (self.rows_per_band is None):
            raise ValueError("give both bands and rows_per_band, or neither")
        b, r = self.bands, self.rows_per_band
        if b is not None and r is not None and not (b >= 1 and r >= 1 and b * r <= self.num_perm):
            raise ValueError(f"bands ({b}) x rows per band ({r}) must be positive and at most num_perm {self.num_perm}")

    def lsh(self) -> tuple[int, int]:
        """(bands, rows per band): as given, or chosen for the threshold by :func:`lsh_params`. Verifying exactly,
        a spurious candidate costs one intersection and is never joined, so a miss weighs more (0.99 to 0.01)."""
        if self.bands is not None and self.rows_per_band is not None:
            return self.bands, self.rows_per_band
        return lsh_params(self.threshold, self.num_perm, 0.01 if self.verify == "exact" else 0.05)

    def hasher(self) -> _core.MinHasher:
        """The MinHash of the near-duplicate check."""
        return _core.MinHasher(self.num_perm, self.shingle, self.seed)

    def index(self) -> _core.NearDedup:
        """An empty near-duplicate index for these options."""
        return _core.NearDedup(self.num_perm, *self.lsh(), self.threshold, self.verify)


def sketch(hasher: _core.MinHasher, options: DedupOptions, texts: pa.Array, bounds: pa.Array, threads: int) -> tuple:
    """What :meth:`_core.NearDedup.add` takes for these rows: (signatures,) or, verifying exactly, (signatures,
    shingle sets)."""
    if options.verify == "exact":
        return hasher.signatures_and_shingles(texts, bounds, threads=threads)
    return (hasher.signatures(texts, bounds, threads=threads),)


def lsh_params(threshold: float, num_perm: int, false_positive_weight: float = 0.05) -> tuple[int, int]:
    """Bands b and rows r (b * r <= num_perm) minimising the weighted areas of missed pairs above the threshold
    and of candidate pairs below it, under the LSH curve ``1 - (1 - s^r)^b``. Candidates are verified afterwards,
    so missing a pair (weight 0.95) costs far more than a spurious candidate (weight 0.05)."""
    s = np.linspace(0.0, 1.0, 1001)
    below, above = s <= threshold, s >= threshold
    best, best_error = (1, 1), np.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1.0 - (1.0 - s**r) ** b
            fp = _area(p[below], s[below])
            fn = _area(1.0 - p[above], s[above])
            error = false_positive_weight * fp + (1.0 - false_positive_weight) * fn
            if error < best_error - 1e-12:
                best, best_error = (b, r), error
    return best


def _area(y: np.ndarray, x: np.ndarray) -> float:
    """The trapezoid rule's area under ``y`` over the points ``x`` (``np.trapezoid`` is numpy 2 only)."""
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def _split_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """16-byte keys as (high, low) unsigned 64-bit halves, for ordering."""
    halves = keys.view(">u8").reshape(-1, 2)
    return halves[:, 0].astype(np.uint64), halves[:, 1].astype(np.uint64)


def _group_ids(*columns: np.ndarray) -> np.ndarray:
    """A dense group id per row for equal tuples of fixed-width byte keys."""
    joined = np.ascontiguousarray(np.concatenate([c.view(np.uint8).reshape(len(c), -1) for c in columns], axis=1))
    as_void = joined.view(np.dtype((np.void, joined.shape[1]))).ravel()
    return np.unique(as_void, return_inverse=True)[1].ravel()


def _representatives(groups: np.ndarray, members: np.ndarray, scores: np.ndarray | None) -> np.ndarray:
    """For each row in ``members``, the row kept from its group: the best score, then the first row."""
    rep = np.full(len(groups), -1, dtype=np.int64)
    rows = np.flatnonzero(members)
    if not len(rows):
        return rep
    g = groups[rows]
    order = np.lexsort((rows, -scores[rows], g)) if scores is not None else np.lexsort((rows, g))
    g_sorted = g[order]
    starts = np.r_[True, g_sorted[1:] != g_sorted[:-1]]
    first_of_group = rows[order][starts]
    rep[rows] = first_of_group[np.cumsum(starts)[np.argsort(order, kind="stable")] - 1]
    return rep


@dataclass
class Decisions:
    """Per row: ``reason`` (index into :data:`REASONS`), ``other`` (the kept row it duplicates, or for a
    conflict the first row preferring the other way; -1 if none), ``cluster_id`` and ``conflict``."""

    reason: np.ndarray
    other: np.ndarray
    cluster_id: np.ndarray
    conflict: np.ndarray


def dedup_decisions(
    prompt_keys: np.ndarray,
    chosen_keys: np.ndarray,
    rejected_keys: np.ndarray,
    scores: np.ndarray | None,
    clusters: np.ndarray | None,
    options: DedupOptions,
) -> Decisions:
    """Decides every row. Keys are 16-byte ``np.void`` arrays from ``_core.row_keys``; ``scores`` (or None for
    keep-first) and ``clusters`` (or None without near-duplicate detection) have one value per row."""
    n = len(prompt_keys)
    rows = np.arange(n, dtype=np.int64)
    reason = np.zeros(n, dtype=np.int8)
    other = np.full(n, -1, dtype=np.int64)
    if scores is not None:
        scores = ranking(scores)

    # 1. Conflicts: one prompt and one unordered pair of responses, preferred both ways.
    c_hi, c_lo = _split_keys(chosen_keys)
    r_hi, r_lo = _split_keys(rejected_keys)
    same = (c_hi == r_hi) & (c_lo == r_lo)
    forward = (c_hi < r_hi) | ((c_hi == r_hi) & (c_lo < r_lo))
    chosen_bytes, rejected_bytes = (
        chosen_keys.view(np.uint8).reshape(n, 16),
        rejected_keys.view(np.uint8).reshape(n, 16),
    )
    low = np.where(forward[:, None], chosen_bytes, rejected_bytes)
    high = np.where(forward[:, None], rejected_bytes, chosen_bytes)
    pair_group = _group_ids(prompt_keys, low, high) if n else np.zeros(0, dtype=np.int64)
    first_forward = np.full(n + 1, n, dtype=np.int64)
    first_backward = np.full(n + 1, n, dtype=np.int64)
    np.minimum.at(first_forward, pair_group[forward & ~same], rows[forward & ~same])
    np.minimum.at(first_backward, pair_group[~forward & ~same], rows[~forward & ~same])
    conflict = ~same & (first_forward[pair_group] < n) & (first_backward[pair_group] < n)
    other[conflict] = np.where(forward, first_backward[pair_group], first_forward[pair_group])[conflict]
    if options.conflicts == "drop":
        reason[conflict] = CONFLICT
    alive = reason == KEPT

    # 2. Exact duplicates among the rows still in.
    key_columns = (prompt_keys, chosen_keys, rejected_keys) if options.key == "pair" else (prompt_keys,)
    exact_group = _group_ids(*key_columns) if n else np.zeros(0, dtype=np.int64)
    rep = _representatives(exact_group, alive, scores)
    exact = alive & (rep != rows)
    reason[exact] = EXACT
    other[exact] = rep[exact]
    alive &= ~exact

    # 3. Near duplicates among the exact representatives.
    cluster_id = clusters.astype(np.int64) if clusters is not None else rows.copy()
    if clusters is not None:
        near, rep = near_duplicates(cluster_id, alive, scores)
        reason[near] = NEAR
        other[near] = rep[near]
    return Decisions(reason, other, cluster_id, conflict)


def near_duplicates(
    clusters: np.ndarray, alive: np.ndarray, scores: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Step 3 of :func:`dedup_decisions` over rows in input order: which rows still in (``alive``) are near
    duplicates, and the row kept from each one's cluster (indices into these rows). ``scores`` as
    :func:`ranking` makes them, or None."""
    rep = _representatives(clusters, alive, scores)
    return alive & (rep != np.arange(len(clusters))), rep


def ranking(scores: np.ndarray) -> np.ndarray:
    """Scores as the representatives are chosen by: NaN (a null score) ranks below every number."""
    return np.where(np.isnan(scores), -np.inf, scores)


@dataclass
class DedupReport:
    """What a dedup run did, every row accounted for; written as report.json."""

    method: dict
    inputs: list[str]
    rows: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    bad_rows: int = 0
    conflicting_rows: int = 0
    per_source: dict[str, dict[str, int]] = field(default_factory=dict)
    clusters: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, str | None] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"


def _scores(source: Source, batch: pa.RecordBatch, column: str) -> np.ndarray:
    return score_values(source, batch, column).fill_null(np.nan).to_numpy(zero_copy_only=False)


def _keys(
    pairs: pa.Table, column: str, lowercase: bool, threads: int, where: str, input_rows: np.ndarray
) -> np.ndarray:
    """The keys of one column of the pairs; ``input_rows``: the input row of each pair, for the error message."""
    texts, bounds = turn_texts(pairs, [column])
    try:
        keys = _core.row_keys(texts, bounds, lowercase=lowercase, threads=threads)
    except _core.InvalidTextError as e:
        row = input_rows[text_row(e.args[1], bounds)]
        raise InputError(f"{where}: row {row} (0-based): {e.args[2]}") from None
    return np.frombuffer(keys.buffers()[1], dtype="V16", count=len(keys), offset=keys.offset * 16).copy()


@dataclass
class HashedBatch:
    """What the first pass takes from a batch: the keys of each row (prompt, chosen, rejected), with near-duplicate
    detection its sketch (what :func:`sketch` gives: its signature, ``fixed_size_list<uint32>``, and verifying
    exactly its shingle set), its score (with a score column) and its ``source``."""

    keys: tuple[np.ndarray, np.ndarray, np.ndarray]
    sketch: tuple | None
    scores: np.ndarray | None
    sources: pa.ChunkedArray


def hash_batch(
    source: Source,
    offset: int,
    batch: pa.RecordBatch,
    options: DedupOptions,
    layout: str | None,
    hasher: _core.MinHasher | None,
    threads: int,
) -> HashedBatch:
    """The first pass over one batch of a source (its rows from ``offset``): keys, signatures (with a ``hasher``)
    and scores; a batch that cannot be read as the layout, or invalid UTF-8, is an :class:`InputError`."""
    try:
        resolved = resolve_layout(batch.schema, layout, source.name)
    except SchemaError as e:
        raise InputError(str(e)) from None  # the message names the input
    if options.key == "pair" and (unread := unread_answers(batch.schema, resolved)):  # pairs by their prompt alone
        raise InputError(
            f"{source.name}: columns {unread} look like answers, but a file without chosen and rejected columns "
            f"is read as prompts alone (layout prompts), so --key pair would drop pairs whose answers differ: "
            f"{answers_advice(batch.schema)}, or deduplicate the prompts with --key prompt (DedupOptions(key='prompt'))"
        )
    layout_columns = resolved.columns
    try:
        pairs = pair_table(batch, source=source.name, layout=layout)
    except SchemaError as e:
        raise InputError(f"{source.name}: {e}") from None
    input_rows = source.input_rows(np.arange(offset, offset + batch.num_rows))
    # Every text is checked (and keyed) here first, so the signatures below never meet invalid UTF-8.
    prompt, chosen, rejected = (
        _keys(pairs, column, options.lowercase, threads, f"{source.name}, column {input_column}", input_rows)
        for column, input_column in zip(("prompt", "chosen", "rejected"), layout_columns, strict=True)
    )
    sketched = None
    if hasher is not None:
        texts, bounds = turn_texts(pairs, ["prompt", "chosen", "rejected"] if options.key == "pair" else ["prompt"])
        sketched = sketch(hasher, options, texts, bounds, threads)
    scores = _scores(source, batch, options.score_column) if options.score_column is not None else None
    return HashedBatch((prompt, chosen, rejected), sketched, scores, pairs.column("source"))


def dedup_pairs(pairs: pa.Table, options: DedupOptions, threads: int | None = None, where: str = "pairs") -> Decisions:
    """The decisions for an in-memory canonical pair table (:data:`skyfilter.schema.PAIR_SCHEMA` columns), first
    row kept (``options.score_column`` names one of its columns otherwise)."""
    threads = worker_threads(threads)
    rows = np.arange(pairs.num_rows)
    keys = [
        _keys(pairs, c, options.lowercase, threads, f"{where}, {c}", rows) for c in ("prompt", "chosen", "rejected")
    ]
    clusters = None
    if options.near:
        near = options.index()
        texts, bounds = turn_texts(pairs, ["prompt", "chosen", "rejected"] if options.key == "pair" else ["prompt"])
        near.add(*sketch(options.hasher(), options, texts, bounds, threads))
        clusters = near.clusters().to_numpy()
    scores = None
    if options.score_column is not None:
        scores = pairs.column(options.score_column).cast(pa.float64()).fill_null(np.nan).to_numpy()
    return dedup_decisions(*keys, scores, clusters, options)


def decide_batches(
    batches: Iterable[tuple[Source, int, pa.RecordBatch]], options: DedupOptions, layout: str | None, threads: int
) -> tuple[Decisions, list[pa.ChunkedArray]]:
    """The first pass over batches (``(source, offset, batch)`` as :func:`skyfilter.io.iter_batches` gives them):
    the decision of every row, and the ``source`` column of each batch."""
    hasher = options.hasher() if options.near else None
    near = options.index() if options.near else None
    keys: dict[str, list[np.ndarray]] = {"prompt": [], "chosen": [], "rejected": []}
    scores: list[np.ndarray] = []
    source_names: list[pa.ChunkedArray] = []
    for s, offset, batch in batches:
        hashed = hash_batch(s, offset, batch, options, layout, hasher, threads)
        for column, column_keys in zip(keys, hashed.keys, strict=True):
            keys[column].append(column_keys)
        if near is not None and hashed.sketch is not None:
            near.add(*hashed.sketch)
        if hashed.scores is not None:
            scores.append(hashed.scores)
        source_names.append(hashed.sources)

    def joined(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    decisions = dedup_decisions(
        joined(keys["prompt"], "V16"),
        joined(keys["chosen"], "V16"),
        joined(keys["rejected"], "V16"),
        joined(scores, np.float64) if options.score_column is not None else None,
        near.clusters().to_numpy() if near is not None else None,
        options,
    )
    return decisions, source_names


#: The columns :func:`dedup_rows` adds to the rows (and :func:`skyfilter.ray.dedup` to a dataset's).
DECISION_COLUMNS = ("reason", "duplicate_of", "cluster_id", "conflict")


def decision_columns(decisions: Decisions) -> dict[str, pa.Array]:
    """:data:`DECISION_COLUMNS` for the rows of ``decisions``: the reason's name, the position of the kept row a
    dropped row duplicates (or of the first row preferring the other way; null if none), the cluster and
    whether the row is in a conflict."""
    return {
        "reason": pa.array(np.array(REASONS, dtype=object)[decisions.reason], pa.string()),
        "duplicate_of": pa.array(decisions.other, mask=decisions.other < 0, type=pa.int64()),
        "cluster_id": pa.array(decisions.cluster_id, type=pa.int64()),
        "conflict": pa.array(decisions.conflict, type=pa.bool_()),
    }


def dedup_rows(data, options: DedupOptions | None = None, *, layout: str | None = None, threads: int | None = None):
    """The rows of ``data`` (pairs in any layout of :mod:`skyfilter.schema`, as any kind
    :func:`skyfilter.frames.as_arrow` takes; the result is of the same kind) with :data:`DECISION_COLUMNS` added,
    decided as ``skyfilter dedup`` decides (``options``: :class:`DedupOptions`, its defaults if None); keep the
    deduplicated rows where ``reason`` is ``kept``. Positions count the rows from 0. Every row must be seen before
    any is decided: a ``RecordBatchReader`` is read whole (its result is a reader over the annotated rows)."""
    options = options or DedupOptions()
    table, restore = as_arrow(data)
    clash = [c for c in DECISION_COLUMNS if c in table.schema.names]
    if clash:
        raise InputError(f"table: already has column(s) {clash}, which dedup adds; rename them first")
    batches = iter_batches([table_source("table", table)], 65_536, "hashing", False)
    decisions, _ = decide_batches(batches, options, layout, worker_threads(threads))
    for name, values in decision_columns(decisions).items():
        table = table.append_column(name, values)
    return restore(table)


def run_dedup(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    options: DedupOptions | None = None,
    *,
    out: str | None = None,
    dropped: str | None = None,
    report: str | None = None,
    bad_rows: str | None = None,
    split: str | None = None,
    layout: str | None = None,
    allow_empty: bool = False,
    threads: int | None = None,
    batch_rows: int = 65_536,
    progress: bool | None = None,
) -> DedupReport:
    """Two passes over the inputs: keys and signatures first, then the kept and dropped rows are written. Rows that
    cannot be read as the layout stop the run, or with ``bad_rows`` go to that file; rows in = kept + dropped +
    bad rows. ``options`` None: the defaults (:class:`DedupOptions`)."""
    inputs = input_specs(inputs)
    options = DedupOptions() if options is None else options
    if not isinstance(options, DedupOptions):
        raise TypeError(f"options must be a DedupOptions, not a {type(options).__name__}")
    check_outputs(inputs, {"--out": out, "--dropped": dropped, "--bad-rows": bad_rows}, {"--report": report})
    reading = RowReading(layout, keep_bad=bad_rows is not None, allow_empty=allow_empty)
    sources = open_sources(inputs, split, ADDED_COLUMNS, reading)
    bands, rows_per_band = options.lsh()
    batches = iter_batches(sources, batch_rows, "hashing", progress)
    decisions, source_names = decide_batches(batches, options, layout, worker_threads(threads))
    starts = np.cumsum([0] + [s.num_rows for s in sources])
    schema = sources[0].schema
    kept_schema, dropped_schema = output_schemas(schema)
    with AtomicWriters({"out": out, "dropped": dropped, "bad_rows": bad_rows}) as writers:
        writers.set_schema("out", kept_schema)
        writers.set_schema("dropped", dropped_schema)
        bad = write_bad_rows(writers, "bad_rows", sources)
        at = 0
        # Read with views: the text of the rows that go nowhere is never copied.
        for _, _, batch in iter_batches(sources, batch_rows, "writing", progress, views=True):
            span = slice(at, at + batch.num_rows)
            kept = decisions.reason[span] == KEPT
            keep, drop = np.flatnonzero(kept), np.flatnonzero(~kept)
            ids = pa.array(decisions.cluster_id[span][keep])
            kept_columns = [*take_batch(batch, keep, schema).columns, ids]
            writers.write("out", pa.RecordBatch.from_arrays(kept_columns, schema=kept_schema))
            if len(drop) and "dropped" in writers:
                evidence = _dropped_evidence(decisions, at + drop, sources, starts)
                columns = [*take_batch(batch, drop, schema).columns, *evidence]
                writers.write("dropped", pa.RecordBatch.from_arrays(columns, schema=dropped_schema))
            at += batch.num_rows

        result = _report(decisions, source_names, sources, options, (bands, rows_per_band))
        result.rows, result.bad_rows = result.rows + bad, bad
        result.outputs = {"out": out, "dropped": dropped, "bad_rows": bad_rows, "report": report}
        if report is not None:
            writers.write_text(report, result.to_json())
    return result


_DROPPED_FIELDS = (
    pa.field("input_file", pa.string()),
    pa.field("input_row", pa.int64()),
    pa.field("reason", pa.string()),
    pa.field("duplicate_of_file", pa.string()),
    pa.field("duplicate_of_row", pa.int64()),
    pa.field("cluster_id", pa.int64()),
)
assert tuple(f.name for f in _DROPPED_FIELDS) == ADDED_COLUMNS


def output_schemas(schema: pa.Schema) -> tuple[pa.Schema, pa.Schema]:
    """The columns of the kept rows (the input's and ``cluster_id``) and of the dropped rows (:data:`ADDED_COLUMNS`
    added)."""
    return schema.append(pa.field("cluster_id", pa.int64())), pa.schema([*schema, *_DROPPED_FIELDS])


def _dropped_evidence(decisions: Decisions, rows: np.ndarray, sources: list[Source], starts: np.ndarray) -> list:
    """The added columns for the given global rows (all dropped)."""
    names = np.array([s.name for s in sources], dtype=object)
    own_file = np.searchsorted(starts, rows, side="right") - 1
    other = decisions.other[rows]
    other_file = np.searchsorted(starts, np.maximum(other, 0), side="right") - 1

    def input_rows(files: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The input row numbers (bad rows set apart count) of the rows at these positions of these files."""
        out = positions - starts[files]
        for i, source in enumerate(sources):
            mine = files == i
            out[mine] = source.input_rows(out[mine])
        return out

    return evidence_columns(
        names[own_file],
        input_rows(own_file, rows),
        decisions.reason[rows],
        names[other_file],
        input_rows(other_file, np.maximum(other, 0)),
        other < 0,
        decisions.cluster_id[rows],
    )


def evidence_columns(
    files: np.ndarray,
    input_rows: np.ndarray,
    reason: np.ndarray,
    other_files: np.ndarray,
    other_rows: np.ndarray,
    no_other: np.ndarray,
    cluster_id: np.ndarray,
) -> list[pa.Array]:
    """The added columns of dropped rows (:data:`ADDED_COLUMNS`): their file names and input rows, reason codes,
    the file and input row of the row each duplicates (null where ``no_other``) and their clusters."""
    return [
        pa.array(files, type=pa.string()),
        pa.array(input_rows, type=pa.int64()),
        pa.array(np.array(REASONS, dtype=object)[reason], type=pa.string()),
        pa.array(other_files, mask=no_other, type=pa.string()),
        pa.array(other_rows, mask=no_other, type=pa.int64()),
        pa.array(cluster_id, type=pa.int64()),
    ]


def _report(
    decisions: Decisions, source_names: list, sources: list[Source], options: DedupOptions, lsh: tuple[int, int]
) -> DedupReport:
    per_source: dict[str, Counter] = {}
    names = pa.chunked_array([c for chunk in source_names for c in chunk.chunks], type=pa.string())
    for name, code in zip(names.to_pylist(), decisions.reason.tolist(), strict=True):
        per_source.setdefault(name, Counter())[REASONS[code]] += 1
    sizes = np.bincount(decisions.cluster_id) if len(decisions.reason) else np.zeros(0, dtype=np.int64)
    several = sizes[sizes > 1]
    return build_report(per_source, int(decisions.conflict.sum()), several, [s.name for s in sources], options, lsh)


def build_report(
    per_source: dict[str, Counter],
    conflicting_rows: int,
    cluster_sizes: np.ndarray,
    inputs: list[str],
    options: DedupOptions,
    lsh: tuple[int, int],
) -> DedupReport:
    """The report of a run from the rows of each ``source`` column value per reason (names of :data:`REASONS`),
    the number of conflicting rows and the sizes of the clusters of several rows (bad rows not yet counted)."""
    rows = sum(sum(c.values()) for c in per_source.values())
    dropped = {r: sum(c[r] for c in per_source.values()) for r in REASONS if r != "kept"}
    return DedupReport(
        method={**asdict(options), "bands": lsh[0], "rows_per_band": lsh[1]},
        inputs=inputs,
        rows=rows,
        kept=rows - sum(dropped.values()),
        dropped=dropped,
        conflicting_rows=conflicting_rows,
        per_source={k: {r: v[r] for r in REASONS} for k, v in sorted(per_source.items())},
        clusters={
            "with_several_rows": len(cluster_sizes),
            "largest": int(cluster_sizes.max()) if len(cluster_sizes) else int(rows > 0),
        },
    )

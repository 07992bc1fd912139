"""``skyfilter dedup --engine ray``: the local engine's decisions (:mod:`skyfilter.dedup`), with the work spread
over a Ray cluster and the same rows, columns and report whatever the number of pieces and workers.

Every decision is made by the local engine's code on a set of rows that decides it whole, ordered by position:

1. **Hashing** (one Ray task per piece, :func:`skyfilter.ray.shards.piece_tasks`; Arrow rows kept in the object
   store for the later stages): per row its position, its three keys, its score and its MinHash signature, by
   :func:`skyfilter.dedup.hash_batch`, so a batch that cannot be read as the layout, or invalid UTF-8, fails with
   the local message (a failing piece returns its error apart; the first failing piece in input order wins).
2. **Conflicts and exact duplicates**: a conflict group (one prompt, one pair of responses) and an exact group
   (equal keys) are subsets of one prompt group, so the rows are shuffled by a hash of the prompt key into
   groups of whole prompt groups, and :func:`skyfilter.dedup.dedup_decisions` decides each group (sorted by
   position; a few large groups rather than one call per prompt, so the decisions stay vectorised). Only the
   rows that are not simply kept come back to the driver.
3. **Near-duplicate clusters**: the connected components of the verified candidate pairs, candidates being the
   rows that share an LSH band key (``_core.NearDedup.band_keys``: the keys the local index buckets by). The band
   keys alone (16 bytes a row and band) are shuffled first, to find the buckets of two rows or more; then the rows
   of those buckets are shuffled by band key, one entry per row and shuffle group (its band keys there as a list,
   its signature once), and
   ``NearDedup.bucket_clusters`` finds the components within each group of whole buckets with the local index's
   bucket logic (identical signatures joined first, one group per component, so ``k`` near copies cost ``O(k)``
   verifications). Every verified pair lies within one bucket, so the union of these components is the
   components of all the buckets: the driver joins the edges (row, its component's first row in a group) with
   ``_core.components``, and a cluster is named by its smallest position, as on one machine.
4. **Representatives**: among the rows of a cluster still in after step 2, the local rule
   (:func:`skyfilter.dedup.near_duplicates`: best score, then first position; NaN ranks lowest).
5. **Writing** (one task per piece, :func:`skyfilter.ray.shards.run_pieces`): each piece gets through the
   object store the decisions of its rows that are not the default (dropped, or in a cluster named by another
   row), writes its kept and dropped rows with the local evidence columns
   (:func:`skyfilter.dedup.evidence_columns`; the file and input row of the row a dropped row duplicates come
   from the driver, which knows each file's first position and bad rows), and counts its rows per ``source`` and
   reason for the report.

The shuffles of steps 2 and 3 are hash shuffles made of Ray tasks (each block cut by group, each group's parts
reduced together) rather than Ray Data's ``groupby().map_groups()``, which sorts the whole dataset first and
costs seconds per stage even on a few thousand rows.

Limits: the driver holds in memory about 60 bytes per row that is dropped or in a cluster of several rows, 8
bytes per band key shared by two rows or more, and 24 bytes per row and shuffle group in which it is found in a
component of several rows (joined there by ``_core.components``, 24 bytes per edge end more): 10 million such
rows need a few GiB. The object store holds the hashed rows (about 60 bytes and ``4 * num_perm`` bytes of
signature a row) until the writing starts, and a shuffle makes ``pieces x groups`` objects. A shuffle group holds
about 500,000 rows (a prompt group or a bucket is never cut: one prompt or one band key shared by many more rows
makes a larger group).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from skyshared.ray_session import import_ray, ray_session

from skyfilter import _core
from skyfilter.dedup import (
    ADDED_COLUMNS,
    DECISION_COLUMNS,
    KEPT,
    NEAR,
    REASONS,
    Decisions,
    DedupOptions,
    DedupReport,
    build_report,
    decision_columns,
    dedup_decisions,
    evidence_columns,
    hash_batch,
    near_duplicates,
    output_schemas,
    ranking,
)
from skyfilter.io import InputError, RowReading, take_batch
from skyfilter.ray.shards import (
    USER_ERRORS,
    Outputs,
    Piece,
    PieceWorker,
    Plan,
    Shard,
    check_ray_outputs,
    cluster_cpus,
    expand_inputs,
    gather,
    piece_tasks,
    pieces_of,
    plan,
    plan_dataset,
    read_piece,
    run_pieces,
    shuffle,
)
from skyfilter.ray.shards import write_shard as _write_shard
from skyfilter.schema import pair_sources

__all__ = ["run", "dedup"]

#: About how many rows one group of a shuffle holds (prompt groups and buckets are never cut).
GROUP_ROWS = 500_000

_KEY = pa.binary(16)


def _hashed_schema(options: DedupOptions) -> pa.Schema:
    """The rows of the hashing pass: position, keys, the shuffle group of the prompt key, score and signature."""
    fields = [
        pa.field("pos", pa.int64()),
        pa.field("prompt_key", _KEY),
        pa.field("chosen_key", _KEY),
        pa.field("rejected_key", _KEY),
        pa.field("group", pa.int64()),
    ]
    if options.score_column is not None:
        fields.append(pa.field("score", pa.float64()))
    if options.near:
        fields.append(pa.field("signature", pa.list_(pa.field("item", pa.uint32(), False), options.num_perm)))
    return pa.schema(fields)


def _as_keys(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A ``binary(16)`` column as the local engine's 16-byte ``np.void`` keys."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return np.frombuffer(array.buffers()[1], dtype="V16", count=len(array), offset=array.offset * 16).copy()


def _key_group(keys: np.ndarray, groups: int) -> np.ndarray:
    """The shuffle group of each 16-byte key (its first 8 bytes modulo the number of groups)."""
    return (keys.view(">u8").reshape(-1, 2)[:, 0] % np.uint64(groups)).astype(np.int64)


def _hash_piece(shard: Shard, piece: Piece, job: dict) -> pa.Table:
    options: DedupOptions = job["options"]
    source, batch = read_piece(shard, piece, job["reading"])
    hasher = options.hasher() if options.near else None
    hashed = hash_batch(source, piece.start, batch, options, job["reading"].layout, hasher, 1)
    start = shard.start + piece.start
    columns = [
        pa.array(np.arange(start, start + batch.num_rows, dtype=np.int64)),
        *(pa.FixedSizeBinaryArray.from_buffers(_KEY, len(k), [None, pa.py_buffer(k.tobytes())]) for k in hashed.keys),
        pa.array(_key_group(hashed.keys[0], job["groups"])),
    ]
    if hashed.scores is not None:
        columns.append(pa.array(hashed.scores, type=pa.float64()))
    if hashed.sketch is not None:
        columns.append(hashed.sketch[0])
    return pa.Table.from_arrays(columns, schema=job["schema"])


class _Hashing:
    """Stage 1, on a worker: the hashed rows of a piece, and its error (an empty table, or one row ``error``)."""

    def __init__(self, job: dict):
        self.job = job

    def __call__(self, items: dict) -> tuple[pa.Table, pa.Table]:
        tables, errors = [], []
        for piece in pieces_of(items):
            try:
                tables.append(_hash_piece(self.job["shards"][piece.file], piece, self.job))
            except USER_ERRORS as e:
                errors.append(str(e))
        return _concat(tables, self.job["schema"]), pa.table({"error": pa.array(errors, pa.string())})


def _hash(ray, the_plan: Plan, job: dict) -> list:
    """Stage 1: the references of the hashed rows of every piece; the first error in the pieces' order is
    raised."""
    refs = piece_tasks(ray, the_plan, _Hashing, job, returns=2)
    errors = pa.concat_tables(gather(ray, [errors for _, errors in refs], the_plan, "hashing"))["error"]
    if len(errors):
        raise InputError(errors[0].as_py())
    return [hashed for hashed, _ in refs]


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """The tables with rows as one table (none: an empty table with ``schema``)."""
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables).combine_chunks() if tables else schema.empty_table()


# ----------------------------------------------------------------------------------------------- stage 2


_DECIDED = pa.schema(
    [
        pa.field("pos", pa.int64()),
        pa.field("reason", pa.int8()),
        pa.field("other", pa.int64()),
        pa.field("conflict", pa.bool_()),
    ]
)


def _decide(table: pa.Table, options: DedupOptions) -> pa.Table:
    """Stage 2, on a worker: conflicts and exact duplicates of whole prompt groups, by the local engine's code; the
    rows that are not simply kept (dropped, or kept in conflict), ``other`` as a position."""
    if not table.num_rows:
        return _DECIDED.empty_table()
    table = table.sort_by("pos")
    pos = table["pos"].to_numpy()
    scores = table["score"].to_numpy() if options.score_column is not None else None
    prompt, chosen, rejected = (_as_keys(table[c]) for c in ("prompt_key", "chosen_key", "rejected_key"))
    decisions = dedup_decisions(prompt, chosen, rejected, scores, None, options)
    rows = np.flatnonzero((decisions.reason != KEPT) | decisions.conflict)
    other = decisions.other[rows]
    columns = [pos[rows], decisions.reason[rows], np.where(other >= 0, pos[np.maximum(other, 0)], -1)]
    return pa.Table.from_arrays([*map(pa.array, columns), pa.array(decisions.conflict[rows])], schema=_DECIDED)


def _prompt_groups(block: pa.Table, options: DedupOptions) -> pa.Table:
    columns = ["pos", "prompt_key", "chosen_key", "rejected_key", "group"]
    return block.select(columns + (["score"] if options.score_column is not None else []))


def _decisions(ray, blocks: list, job: dict) -> pa.Table:
    """Stage 2: the rows that are not simply kept after conflicts and exact duplicates, by position."""
    options = job["options"]
    decided = shuffle(ray, blocks, _prompt_groups, _decide, job["groups"], {"options": options}, {"options": options})
    return _concat(decided, _DECIDED).sort_by("pos")


# ----------------------------------------------------------------------------------------------- stage 3


def _band_entries(table: pa.Table, job: dict) -> pa.Table:
    """(band key, position, shuffle group) for every band of every row with tokens."""
    keys, rows = job["options"].index().band_keys(table["signature"].combine_chunks())
    keys = keys.to_numpy()
    group = (keys % np.uint64(job["groups"])).astype(np.int64)
    return pa.table({"key": keys, "pos": table["pos"].take(rows), "group": group})


def _shared_keys(table: pa.Table) -> pa.Table:
    """The band keys of a group of whole buckets that two rows or more share."""
    keys, pos = table["key"].to_numpy(), table["pos"].to_numpy()
    if not len(keys):
        return pa.table({"key": pa.array([], pa.uint64())})
    order = np.lexsort((pos, keys))
    keys, pos = keys[order], pos[order]
    new = np.r_[True, (keys[1:] != keys[:-1]) | (pos[1:] != pos[:-1])]  # a row twice in a bucket counts once
    keys = keys[new]
    again = np.r_[False, keys[1:] == keys[:-1]]
    return pa.table({"key": pa.array(np.unique(keys[again]), type=pa.uint64())})


def _candidates(table: pa.Table, job: dict) -> pa.Table:
    """One row per row and shuffle group of its shared buckets: position, shuffle group, the band keys of the row
    that fall in that group (a list), signature and score. A signature travels once per row and group, not once
    per band (a null entry of a fixed-size list still takes its room)."""
    import ray

    shared: np.ndarray = ray.get(job["shared"][0])
    keys, rows = job["options"].index().band_keys(table["signature"].combine_chunks())
    keys, rows = keys.to_numpy(), rows.to_numpy().astype(np.int64)
    hit = shared[np.minimum(np.searchsorted(shared, keys), len(shared) - 1)] == keys
    keys, rows = keys[hit], rows[hit]
    group = (keys % np.uint64(job["groups"])).astype(np.int64)
    order = np.lexsort((group, rows))
    keys, rows, group = keys[order], rows[order], group[order]
    starts = np.flatnonzero(np.r_[True, (rows[1:] != rows[:-1]) | (group[1:] != group[:-1])]) if len(rows) else rows
    offsets = pa.array(np.r_[starts, len(rows)].astype(np.int32))
    taken = pa.array(rows[starts])
    out = {
        "pos": table["pos"].take(taken),
        "group": group[starts],
        "keys": pa.ListArray.from_arrays(offsets, pa.array(keys, pa.uint64())),
        "signature": table["signature"].take(taken),
    }
    if job["options"].score_column is not None:
        out["score"] = table["score"].take(taken)
    return pa.table(out)


_CLUSTERED = pa.schema([pa.field("pos", pa.int64()), pa.field("root", pa.int64()), pa.field("score", pa.float64())])


def _bucket_clusters(table: pa.Table, options: DedupOptions) -> pa.Table:
    """Stage 3, on a worker: the components of the verified pairs within a group of whole buckets; each row of a
    component of several rows with the component's first position (and its score, for stage 4). A row is once in
    the group (:func:`_candidates`)."""
    if not table.num_rows:
        return _CLUSTERED.empty_table()
    table = table.sort_by("pos")
    pos = table["pos"].to_numpy()
    keys = table["keys"].combine_chunks()
    near = options.index()
    near.add(table["signature"].combine_chunks())
    rows = np.repeat(np.arange(len(pos), dtype=np.uint32), pc.list_value_length(keys).to_numpy())
    roots = near.bucket_clusters(keys.flatten(), pa.array(rows, type=pa.uint32())).to_numpy().astype(np.int64)
    several = np.flatnonzero(np.bincount(roots, minlength=len(pos))[roots] > 1)
    if options.score_column is not None:
        score = table["score"].combine_chunks().take(pa.array(several))
    else:
        score = pa.nulls(len(several), pa.float64())
    return pa.Table.from_arrays([pa.array(pos[several]), pa.array(pos[roots[several]]), score], schema=_CLUSTERED)


def _clusters(ray, blocks: list, job: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Stage 3: the rows in clusters of several rows (positions, ascending), their clusters (smallest positions)
    and their scores (with a score column)."""
    options: DedupOptions = job["options"]
    groups = job["groups"]
    shared = shuffle(ray, blocks, _band_entries, _shared_keys, groups, {"job": job}, {})
    shared = np.unique(np.concatenate([t["key"].to_numpy() for t in shared]))
    none = np.zeros(0, dtype=np.int64)
    if not len(shared):
        return none, none, None
    # Nested in a list, so that each task gets the reference and reads the keys from the object store itself.
    job = {**job, "shared": [ray.put(shared)]}
    clustered = _concat(
        shuffle(ray, blocks, _candidates, _bucket_clusters, groups, {"job": job}, {"options": options}), _CLUSTERED
    )
    pos, root = clustered["pos"].to_numpy(), clustered["root"].to_numpy()
    edge = pos != root
    nodes, roots = _core.components(pa.array(pos[edge], pa.uint64()), pa.array(root[edge], pa.uint64()))
    nodes, roots = nodes.to_numpy().astype(np.int64), roots.to_numpy().astype(np.int64)
    scores = None
    if options.score_column is not None:
        unique, first = np.unique(pos, return_index=True)
        scores = clustered["score"].to_numpy(zero_copy_only=False)[first][np.searchsorted(unique, nodes)]
    return nodes, roots, scores


# ----------------------------------------------------------------------------------------------- stage 4


def _final(decided: pa.Table, nodes: np.ndarray, roots: np.ndarray, scores: np.ndarray | None) -> dict[str, np.ndarray]:
    """Stage 4: near duplicates among the rows still in; the decisions that are not the default (kept, a cluster
    of its own) by position: ``pos``, ``reason``, ``other`` (a position, or -1) and ``cluster``."""
    decided_pos = decided["pos"].to_numpy()
    pos = np.union1d(decided_pos, nodes).astype(np.int64)
    reason = np.full(len(pos), KEPT, dtype=np.int8)
    other = np.full(len(pos), -1, dtype=np.int64)
    cluster = pos.copy()
    at = np.searchsorted(pos, decided_pos)
    reason[at], other[at] = decided["reason"].to_numpy(), decided["other"].to_numpy()
    at = np.searchsorted(pos, nodes)
    cluster[at] = roots
    near, rep = near_duplicates(roots, reason[at] == KEPT, ranking(scores) if scores is not None else None)
    reason[at[near]], other[at[near]] = NEAR, nodes[rep[near]]
    default = (reason == KEPT) & (cluster == pos)
    return {"pos": pos[~default], "reason": reason[~default], "other": other[~default], "cluster": cluster[~default]}


# ----------------------------------------------------------------------------------------------- stage 5


def _input_rows(the_plan: Plan, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The file (index) and input row (bad rows set apart count) of the rows at these positions."""
    starts = np.array([s.start for s in the_plan.shards], dtype=np.int64)
    files = np.searchsorted(starts, positions, side="right") - 1
    rows = positions - starts[files]
    bad_at = 0
    for i, shard in enumerate(the_plan.shards):
        bad = shard.rows_in - shard.rows
        if bad:
            # The readable rows before input row b - k (the k-th bad row, from 0) are b - k; each bad row at or
            # before a readable row's input row moves it one on.
            skipped = np.sort(the_plan.bad_rows["input_row"].slice(bad_at, bad).to_numpy()) - np.arange(bad)
            mine = files == i
            rows[mine] += np.searchsorted(skipped, rows[mine], side="right")
        bad_at += bad
    return files, rows


class _Writing(PieceWorker):
    """Writes the kept and dropped rows of pieces; returns the rows per ``source`` and reason."""

    def process(self, shard: Shard, piece: Piece):
        import ray

        job = self.job
        source, batch = read_piece(shard, piece, job["reading"])
        mine: dict[str, np.ndarray] = ray.get(job["decisions"][piece.key])
        start = shard.start + piece.start
        reason = np.full(batch.num_rows, KEPT, dtype=np.int8)
        cluster = np.arange(start, start + batch.num_rows, dtype=np.int64)
        reason[mine["pos"] - start], cluster[mine["pos"] - start] = mine["reason"], mine["cluster"]
        keep, drop = np.flatnonzero(reason == KEPT), np.flatnonzero(reason != KEPT)
        kept_schema, dropped_schema = output_schemas(job["schema"])
        if job["folders"]["out"] is not None:
            columns = [*take_batch(batch, keep, job["schema"]).columns, pa.array(cluster[keep])]
            _write_shard(job["folders"]["out"], piece, pa.RecordBatch.from_arrays(columns, schema=kept_schema))
        if len(drop) and job["folders"]["dropped"] is not None:
            at = np.searchsorted(mine["pos"], start + drop)
            evidence = evidence_columns(
                np.full(len(drop), source.name, dtype=object),
                source.input_rows(piece.start + drop),
                reason[drop],
                np.array(job["names"], dtype=object)[mine["other_file"][at]],
                mine["other_row"][at],
                mine["other"][at] < 0,
                cluster[drop],
            )
            columns = [*take_batch(batch, drop, job["schema"]).columns, *evidence]
            _write_shard(job["folders"]["dropped"], piece, pa.RecordBatch.from_arrays(columns, schema=dropped_schema))
        rows = pa.table({"source": pair_sources(batch, source.name), "reason": reason})
        counts = rows.group_by(["source", "reason"]).aggregate([([], "count_all")])
        return list(zip(*(counts[c].to_pylist() for c in ("source", "reason", "count_all")), strict=True))


def _piece_decisions(ray, the_plan: Plan, final: dict[str, np.ndarray]) -> dict:
    """Each piece's decisions that are not the default, in the object store, with the file (index) and input row
    of each row's ``other``."""
    other = final["other"]
    files, rows = _input_rows(the_plan, np.maximum(other, 0))
    final = {**final, "other_file": np.where(other >= 0, files, 0), "other_row": rows}
    refs = {}
    for piece in the_plan.pieces:
        start = the_plan.shards[piece.file].start
        lo, hi = np.searchsorted(final["pos"], [start + piece.start, start + piece.stop])
        refs[piece.key] = ray.put({k: v[lo:hi] for k, v in final.items()})
    return refs


# ----------------------------------------------------------------------------------------------- run


def _estimated_only(options: DedupOptions) -> None:
    """The Ray engine verifies near-duplicate candidates by their estimated Jaccard only."""
    if options.near and options.verify != "estimate":
        raise ValueError(
            "verify 'exact' runs on the local engine only (every row's shingle set would travel with its candidates); "
            "on Ray, use verify 'estimate'"
        )


def _stages(ray, the_plan: Plan, options: DedupOptions) -> tuple[dict, pa.Table, np.ndarray, dict[str, np.ndarray]]:
    """Stages 1 to 4: the job of the writing pass, the rows stage 2 decided, the clusters of the rows in clusters
    of several rows, and the decisions that are not the default (:func:`_final`)."""
    groups = max(cluster_cpus(ray), math.ceil(the_plan.rows / GROUP_ROWS))
    job = {"shards": the_plan.shards, "reading": the_plan.reading, "options": options, "groups": groups}
    none = np.zeros(0, dtype=np.int64)
    decided, nodes, roots, scores = _DECIDED.empty_table(), none, none, None
    if the_plan.pieces:
        blocks = _hash(ray, the_plan, {**job, "schema": _hashed_schema(options)})
        decided = _decisions(ray, blocks, job)
        if options.near:
            nodes, roots, scores = _clusters(ray, blocks, job)
        del blocks
    return job, decided, roots, _final(decided, nodes, roots, scores)


def run(
    inputs: Sequence[str],
    options: DedupOptions,
    *,
    out: str | None = None,
    dropped: str | None = None,
    report: str | None = None,
    bad_rows: str | None = None,
    layout: str | None = None,
    allow_empty: bool = False,
    batch_rows: int = 65_536,
    address: str | None = None,
    progress: bool = False,
) -> DedupReport:
    """As :func:`skyfilter.dedup.run_dedup`, on Ray: ``out`` and ``dropped`` are folders of parquet shards (the
    same rows, in the same order, with the same added columns, as the local engine's files), ``report`` and
    ``bad_rows`` the same files; ``batch_rows`` rows per piece."""
    _estimated_only(options)
    check_ray_outputs(inputs, {"--out": out, "--dropped": dropped}, {"--report": report, "--bad-rows": bad_rows})
    expand_inputs(inputs)  # a missing input fails now, before Ray starts
    reading = RowReading(layout, keep_bad=bad_rows is not None, allow_empty=allow_empty)
    lsh = options.lsh()
    with ray_session(address, command="skyfilter dedup", progress=progress) as ray:
        the_plan = plan(ray, inputs, reading, ADDED_COLUMNS, batch_rows)
        job, decided, roots, final = _stages(ray, the_plan, options)
        kept_schema, dropped_schema = output_schemas(the_plan.schema)
        with Outputs({"out": out, "dropped": dropped}, {"--report": report, "--bad-rows": bad_rows}) as outputs:
            job.update(
                schema=the_plan.schema,
                names=[s.name for s in the_plan.shards],
                folders={"out": outputs.folder("out"), "dropped": outputs.folder("dropped")},
                decisions=_piece_decisions(ray, the_plan, final),
            )
            per_source: dict[str, Counter] = {}
            for counts in run_pieces(ray, the_plan, _Writing, job, "writing"):
                for name, code, n in counts:
                    per_source.setdefault(name, Counter())[REASONS[code]] += n
            sizes = np.unique(roots, return_counts=True)[1]
            result = build_report(
                per_source, int(pc.sum(decided["conflict"]).as_py() or 0), sizes, job["names"], options, lsh
            )
            bad = the_plan.bad_rows.num_rows
            result.rows, result.bad_rows = result.rows + bad, bad
            result.outputs = {"out": out, "dropped": dropped, "bad_rows": bad_rows, "report": report}
            outputs.commit(
                {"out": kept_schema, "dropped": dropped_schema},
                {"out": result.kept, "dropped": result.rows - bad - result.kept},
                the_plan.bad_rows,
                result.to_json(),
            )
    return result


# ------------------------------------------------------------------------------------------ datasets


class _Annotating:
    """Over the pieces of a user's dataset: each piece's rows with :data:`skyfilter.dedup.DECISION_COLUMNS`
    added."""

    def __init__(self, job: dict):
        self.job = job

    def __call__(self, items: dict) -> pa.Table:
        import ray

        parts = []
        conflicts = ray.get(self.job["conflicts"][0])
        for piece in pieces_of(items):
            shard = self.job["shards"][piece.file]
            _, batch = read_piece(shard, piece, self.job["reading"])
            mine: dict[str, np.ndarray] = ray.get(self.job["decisions"][piece.key])
            first = shard.start + piece.start
            positions = np.arange(first, first + batch.num_rows, dtype=np.int64)
            reason = np.full(batch.num_rows, KEPT, dtype=np.int8)
            other = np.full(batch.num_rows, -1, dtype=np.int64)
            cluster = positions.copy()
            at = mine["pos"] - first
            reason[at], other[at], cluster[at] = mine["reason"], mine["other"], mine["cluster"]
            columns = decision_columns(Decisions(reason, other, cluster, np.isin(positions, conflicts)))
            table = pa.Table.from_batches([batch])
            for name, values in columns.items():
                table = table.append_column(name, values)
            parts.append(table)
        return pa.concat_tables(parts)


def dedup(dataset, options: DedupOptions, *, layout: str | None = None, piece_rows: int = 65_536):
    """A Ray dataset of pairs deduplicated by ``options`` (:class:`~skyfilter.dedup.DedupOptions`): the same rows
    with ``reason`` (``kept``, ``conflict``, ``exact_duplicate`` or ``near_duplicate``), ``duplicate_of`` (the
    position of the kept row it duplicates, or of the first row preferring the other way), ``cluster_id`` (the
    position of the first row of its near-duplicate cluster) and ``conflict`` added; keep the deduplicated rows with
    ``.filter(expr="reason == 'kept'")``. Positions count the dataset's rows in order from 0, and the decisions are
    :func:`skyfilter.dedup.dedup_pairs`'s: the dataset is materialized for its row order (set
    ``DataContext.get_current().execution_options.preserve_order = True`` for an order that does not change between
    runs), and the result comes back materialized too."""
    _estimated_only(options)
    ray = import_ray("skyfilter.ray.dedup")
    clash = [c for c in DECISION_COLUMNS if c in dataset.schema().names]
    if clash:
        raise InputError(f"dataset: already has column(s) {clash}, which dedup adds; rename them first")
    the_plan = plan_dataset(ray, dataset, "dataset", piece_rows)
    the_plan.reading = RowReading(layout)
    job, decided, _, final = _stages(ray, the_plan, options)
    conflicts = decided["pos"].filter(decided["conflict"]).to_numpy()
    job.update(decisions=_piece_decisions(ray, the_plan, final), conflicts=[ray.put(conflicts)])
    return ray.data.from_arrow_refs(piece_tasks(ray, the_plan, _Annotating, job))

"""``skyfilter select --engine ray``: the local engine's rules, piece by piece, with exact top fractions per group.

The row rules (thresholds, margin, reward-model agreement, length ratio, missing scores) are row-local: each piece
runs the local engine's code on its rows (:func:`skyfilter.select.row_decisions`). The top fraction ranks the rows
of a group that pass them, over all inputs, so it needs a global step, done without gathering the rows:

1. *ranking pass*: each piece sends, for every row that passes the row rules, its group, adjusted score and
   position, and the first position of each group it holds;
2. *cut per group*: the entries are grouped by group (a hash shuffle of Ray tasks); each group is ranked on one worker
   with the local kernel (:func:`skyfilter._core.top_fraction`, rows in position order, so ties go to the earlier
   row exactly as on one machine), which gives the group's *cut*: its number of ranked rows, how many it keeps,
   and the last kept row (adjusted score, position);
3. *writing pass*: each piece runs the row rules again and keeps a ranked row when it comes no later than its
   group's cut in the ranking order (higher score first, then earlier position): exactly the rows the kernel
   keeps. Kept and dropped rows go to the piece's shards; the counts per group and reason come back and make
   the same report.

Memory: a group's ranked rows (24 bytes each) on one worker at step 2; the driver holds a cut per group.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from skyshared.ray_session import import_ray, ray_session

from skyfilter import _core
from skyfilter.io import InputError, RowReading, take_batch
from skyfilter.ray.shards import (
    USER_ERRORS,
    Outputs,
    Piece,
    PieceWorker,
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
    write_shard,
)
from skyfilter.select import (
    ADDED_COLUMNS,
    ALL,
    DROPPED_FIELDS,
    KEPT,
    REASONS,
    SELECTION_COLUMNS,
    TOP,
    Decisions,
    SelectOptions,
    SelectReport,
    evidence,
    group_values,
    needed_columns,
    report_of_counts,
    row_decisions,
    selection_columns,
    unknown_groups,
)

__all__ = ["run", "select"]

# Group keys through the shuffle: a value, or null (a value cannot be told from null otherwise).
_NULL = "n"


def _key(value: str | None) -> str:
    return _NULL if value is None else f"v{value}"


def _name(key: str) -> str | None:
    return None if key == _NULL else key[1:]


def _rules(job: dict, shard: Shard, piece: Piece, columns: list[str] | None, *, views: bool = False):
    """The piece's rows, their codes under the row rules, adjusted scores, and groups: the distinct group keys and
    each row's index into them."""
    options: SelectOptions = job["options"]
    source, batch = read_piece(shard, piece, job["reading"], columns, views=views)
    codes, adjusted = row_decisions(
        source, piece.start, batch, options, job["reading"].layout, 1, _core.GroupIds()
    )  # fmt: skip
    if options.group_by is None:
        return source, batch, codes, adjusted, ([_key(ALL)], np.zeros(batch.num_rows, dtype=np.int64))
    encoded = pc.dictionary_encode(group_values(source, batch, options), null_encoding="encode")
    names = [_key(v) for v in encoded.dictionary.to_pylist()]
    return source, batch, codes, adjusted, (names, encoded.indices.to_numpy().astype(np.int64))


#: What the ranking pass tells the driver: the first position of each group in a piece, or the piece's error.
_NOTES = pa.schema([("key", pa.string()), ("pos", pa.int64()), ("error", pa.string())])
#: A row that passed the row rules, for the ranking: its group key, adjusted score and position.
_ENTRIES = pa.schema([("key", pa.string()), ("score", pa.float64()), ("pos", pa.int64())])


class _Ranking:
    """Ranking pass over pieces: the notes (:data:`_NOTES`) and the entries (:data:`_ENTRIES`) of the pieces."""

    def __init__(self, job: dict):
        self.job = job

    def __call__(self, items: dict) -> tuple[pa.Table, pa.Table]:
        notes, entries = [], []
        for piece in pieces_of(items):
            shard = self.job["shards"][piece.file]
            try:
                _, _, codes, adjusted, (names, group) = _rules(self.job, shard, piece, self.job["columns"])
            except USER_ERRORS as e:
                notes.append(pa.table({"key": [None], "pos": [shard.start + piece.start], "error": [str(e)]}, _NOTES))
                continue
            positions = shard.start + np.arange(piece.start, piece.stop, dtype=np.int64)
            present, at = np.unique(group, return_index=True)
            firsts = pa.array([names[g] for g in present], pa.string())
            notes.append(pa.table([firsts, positions[at], pa.nulls(len(firsts), pa.string())], schema=_NOTES))
            if self.job["options"].ranked:
                kept = codes == KEPT
                keys = pa.array(names, pa.string()).take(pa.array(group[kept]))
                entries.append(pa.table([keys, adjusted[kept], positions[kept]], schema=_ENTRIES))
        return _concat(notes, _NOTES), _concat(entries, _ENTRIES)


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _entries(entries: pa.Table, groups: int) -> pa.Table:
    """The map side of the shuffle: the entries of a piece, each with the shuffle group of its group key (a CRC-32
    of the key: the same in every process)."""
    if not entries.num_rows:
        return entries.append_column("group", pa.array([], pa.int64()))
    encoded = entries["key"].combine_chunks().dictionary_encode()
    parts = np.array([zlib.crc32(k.encode()) % groups for k in encoded.dictionary.to_pylist()], dtype=np.int64)
    return entries.append_column("group", pa.array(parts[encoded.indices.to_numpy()]))


def _cuts(rows: pa.Table, fractions: dict[str, float]) -> pa.Table:
    """The reduce side: the cut of every group key among the rows (whole groups)."""
    keys = pc.unique(rows["key"]).to_pylist()
    tables = [_cut(rows.filter(pc.equal(rows["key"], key)), key, fractions[key]) for key in keys]
    return pa.concat_tables(tables) if tables else _CUT.empty_table()


#: A group's cut; the last kept row's score and position are null when the group keeps none of its rows.
_CUT = pa.schema(
    [
        ("key", pa.string()),
        ("rows", pa.int64()),
        ("kept", pa.int64()),
        ("cut_score", pa.float64()),
        ("cut_pos", pa.int64()),
    ]
)


def _cut(rows: pa.Table, key: str, fraction: float) -> pa.Table:
    """One group's cut: its ranked rows, how many it keeps and the last kept row in the ranking order."""
    order = np.argsort(rows.column("pos").to_numpy(), kind="stable")
    scores, positions = rows.column("score").to_numpy()[order], rows.column("pos").to_numpy()[order]
    n = len(positions)
    codes = _core.top_fraction(
        pa.array(np.zeros(n, np.uint8)), pa.array(scores), pa.array(np.zeros(n, np.uint32)), [fraction], threads=1
    ).to_numpy()
    kept = np.flatnonzero(codes == KEPT)
    last = kept[np.lexsort((-positions[kept], scores[kept]))[0]] if len(kept) else -1
    return pa.Table.from_pydict(
        {
            "key": [key],
            "rows": [n],
            "kept": [len(kept)],
            "cut_score": [float(scores[last]) if last >= 0 else None],
            "cut_pos": [int(positions[last]) if last >= 0 else None],
        },
        schema=_CUT,
    )


def _decide(job: dict, shard: Shard, piece: Piece, *, views: bool = False):
    """The piece's rows (all columns) and their final codes: the row rules, then each group's cut."""
    source, batch, codes, adjusted, (names, group) = _rules(job, shard, piece, None, views=views)
    positions = shard.start + np.arange(piece.start, piece.stop, dtype=np.int64)
    if job["options"].ranked:
        ranked = np.flatnonzero(codes == KEPT)
        for g, key in enumerate(names):
            rows = ranked[group[ranked] == g]
            n, kept, score, pos = job["cuts"][key]
            if kept == n or not len(rows):
                continue
            if kept:  # the rows after the group's last kept row in the ranking order
                rows = rows[(adjusted[rows] < score) | ((adjusted[rows] == score) & (positions[rows] > pos))]
            codes[rows] = TOP
    return source, batch, codes, adjusted, (names, group)


class _Selecting(PieceWorker):
    """Writing pass: the piece's kept and dropped shards; counts per group come back. The piece is read with
    string views, so the text of a row is copied only into the output it goes to (as the local engine writes)."""

    def process(self, shard: Shard, piece: Piece):
        job = self.job
        source, batch, codes, adjusted, (names, group) = _decide(job, shard, piece, views=True)
        schema = job["schema"]
        keep = codes == KEPT
        if job["folders"]["out"] is not None:
            write_shard(job["folders"]["out"], piece, take_batch(batch, np.flatnonzero(keep), schema))
        drop = np.flatnonzero(~keep)
        if len(drop) and job["folders"]["dropped"] is not None:
            decisions = Decisions(codes, adjusted, np.zeros(len(codes), np.uint32), [])
            added = evidence(decisions, source.name, source.input_rows(piece.start + drop), 0, drop)
            columns = [*take_batch(batch, drop, schema).columns, *added]
            write_shard(job["folders"]["dropped"], piece, pa.RecordBatch.from_arrays(columns, schema=job["dropped"]))
        counts: dict[str, np.ndarray] = {}
        lowest: dict[str, float] = {}
        for g, key in enumerate(names):
            mine = group == g
            counts[key] = np.bincount(codes[mine], minlength=len(REASONS))
            kept_scores = adjusted[mine & keep]
            lowest[key] = float(kept_scores.min()) if len(kept_scores) else np.inf
        return counts, lowest


def run(
    inputs: Sequence[str],
    options: SelectOptions,
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
) -> SelectReport:
    """As :func:`skyfilter.select.run_select`, on Ray: ``out`` and ``dropped`` are folders of parquet shards (the
    local engine's rows, in its order), ``report`` and ``bad_rows`` the same files; ``batch_rows`` rows per piece."""
    check_ray_outputs(inputs, {"--out": out, "--dropped": dropped}, {"--report": report, "--bad-rows": bad_rows})
    expand_inputs(inputs)  # a missing input fails now, before Ray starts
    reading = RowReading(layout, keep_bad=bad_rows is not None, allow_empty=allow_empty)
    with ray_session(address, command="skyfilter select", progress=progress) as ray:
        the_plan = plan(ray, inputs, reading, ADDED_COLUMNS if dropped is not None else (), batch_rows)
        schema = the_plan.schema
        dropped_schema = pa.schema([*schema, *DROPPED_FIELDS])
        job = {
            "shards": the_plan.shards,
            "reading": reading,
            "options": options,
            "columns": needed_columns(the_plan.shards[0], options, layout),
            "schema": schema,
            "dropped": dropped_schema,
        }
        names, cuts = _rank(ray, the_plan, job)
        job["cuts"] = cuts
        with Outputs({"out": out, "dropped": dropped}, {"--report": report, "--bad-rows": bad_rows}) as outputs:
            job["folders"] = {"out": outputs.folder("out"), "dropped": outputs.folder("dropped")}
            counts = np.zeros((len(names), len(REASONS)), dtype=np.int64)
            lowest = np.full(len(names), np.inf)
            index = {_key(n): i for i, n in enumerate(names)}
            for piece_counts, piece_lowest in run_pieces(ray, the_plan, _Selecting, job, "writing"):
                for key, c in piece_counts.items():
                    counts[index[key]] += c
                    lowest[index[key]] = min(lowest[index[key]], piece_lowest[key])
            result = report_of_counts(counts, lowest, names, [s.name for s in the_plan.shards], options)
            bad = the_plan.bad_rows.num_rows
            result.rows, result.bad_rows = result.rows + bad, bad
            result.outputs = {"out": out, "dropped": dropped, "bad_rows": bad_rows, "report": report}
            outputs.commit(
                {"out": schema, "dropped": dropped_schema},
                {"out": result.kept, "dropped": result.rows - bad - result.kept},
                the_plan.bad_rows,
                result.to_json(),
            )
    return result


def _rank(ray, the_plan, job: dict) -> tuple[list[str | None], dict[str, tuple]]:
    """The ranking pass and the cuts: the group names in order of first appearance, and each group's cut
    ``(ranked rows, kept, last kept score, its position)``."""
    options: SelectOptions = job["options"]
    if not the_plan.pieces:
        return [], {}
    ranked = piece_tasks(ray, the_plan, _Ranking, job, returns=2)
    notes = pa.concat_tables(gather(ray, [notes for notes, _ in ranked], the_plan, "ranking"))  # in the pieces' order
    errors = notes.filter(pc.is_valid(notes["error"]))["error"]
    if len(errors):
        raise InputError(errors[0].as_py())
    firsts: dict[str, int] = {}
    for key, pos in zip(notes["key"].to_pylist(), notes["pos"].to_pylist(), strict=True):
        firsts[key] = min(firsts.get(key, pos), pos)
    names = [_name(k) for k in sorted(firsts, key=firsts.get)]
    unknown_groups(options, names, the_plan.rows)
    if not options.ranked:
        return names, {}
    fractions = {_key(n): options.fraction(n) for n in names}
    groups = cluster_cpus(ray)
    cuts = {}
    for part in shuffle(
        ray, [entries for _, entries in ranked], _entries, _cuts, groups, {"groups": groups}, {"fractions": fractions}
    ):
        for r in part.to_pylist():
            cuts[r["key"]] = (r["rows"], r["kept"], r["cut_score"], r["cut_pos"])
    for name in names:  # a group whose rows all fail the row rules ranks nothing
        cuts.setdefault(_key(name), (0, 0, None, None))
    return names, cuts


# ------------------------------------------------------------------------------------------ datasets


class _SelectRows:
    """Over the pieces of a user's dataset: each piece's rows with ``reason`` and ``adjusted_score`` added."""

    def __init__(self, job: dict):
        self.job = job

    def __call__(self, items: dict) -> pa.Table:
        parts = []
        for piece in pieces_of(items):
            _, batch, codes, adjusted, _ = _decide(self.job, self.job["shards"][piece.file], piece)
            table = pa.Table.from_batches([batch])
            for column, values in selection_columns(codes, adjusted).items():
                table = table.append_column(column, values)
            parts.append(table)
        return pa.concat_tables(parts)


def select(dataset, options: SelectOptions, *, layout: str | None = None, piece_rows: int = 65_536):
    """A Ray dataset of pairs selected by ``options`` (:class:`~skyfilter.select.SelectOptions`): the same rows with
    ``reason`` (``kept`` or the rule that drops the row) and ``adjusted_score`` added; keep the selection with
    ``.filter(expr="reason == 'kept'")``. The decisions are :func:`skyfilter.select.select_table`'s on the dataset's
    rows in order (ties in a top fraction go to the earlier row): the dataset is materialized for its row order
    (set ``DataContext.get_current().execution_options.preserve_order = True`` for an order that does not change
    between runs), and the result comes back materialized too."""
    ray = import_ray("skyfilter.ray.select")
    clash = [c for c in SELECTION_COLUMNS if c in dataset.schema().names]
    if clash:
        raise InputError(f"dataset: already has column(s) {clash}, which select adds; rename them first")
    the_plan = plan_dataset(ray, dataset, "dataset", piece_rows)
    job = {
        "shards": the_plan.shards,
        "reading": the_plan.reading,
        "options": options,
        "columns": needed_columns(the_plan.shards[0], options, layout),
    }
    job["names"], job["cuts"] = _rank(ray, the_plan, job)
    return ray.data.from_arrow_refs(piece_tasks(ray, the_plan, _SelectRows, job))

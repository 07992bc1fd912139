"""What every adapter shares: the curation schema, the result type, and helpers that account for every row."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skyfilter.schema import MESSAGES, PAIR_SCHEMA

#: The canonical pair table plus what the recipe's rules read. ``score`` is the ranking score (Magpie: the mean
#: ArmoRM score of the prompt's responses), ``category`` the task category, ``generator`` the model family that
#: wrote the pair (Magpie offsets), ``adversarial`` WildGuardMix's flag, ``source_row`` the first input row the
#: pair comes from.
CURATION_SCHEMA = pa.schema(
    [
        *PAIR_SCHEMA,
        pa.field("score", pa.float64()),
        pa.field("category", pa.string()),
        pa.field("generator", pa.string()),
        pa.field("adversarial", pa.bool_()),
        pa.field("source_row", pa.int64()),
    ]
)

#: Input rows an adapter did not turn into pairs: the row, the reason and the row itself as JSON.
DROPPED_SCHEMA = pa.schema(
    [pa.field("source_row", pa.int64()), pa.field("reason", pa.string()), pa.field("record", pa.string())]
)


class AdapterError(ValueError):
    """A source table that does not have the layout its adapter reads."""


@dataclass
class Converted:
    """An adapter's result. Every input row is used by a pair or dropped: ``rows_in == rows_used + len(dropped)``."""

    pairs: pa.Table
    dropped: pa.Table
    rows_in: int
    rows_used: int

    def dropped_counts(self) -> dict[str, int]:
        reasons = self.dropped.column("reason").to_pylist()
        return {r: reasons.count(r) for r in sorted(set(reasons))}


def require(table: pa.Table, adapter: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in table.schema.names]
    if missing:
        raise AdapterError(
            f"the {adapter} adapter needs column(s) {missing}; this table has {table.schema.names}. "
            "Is it the right dataset, config and split?"
        )


def column(table: pa.Table, name: str) -> pa.Array:
    values = table.column(name)
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def strings(table: pa.Table, name: str) -> pa.Array:
    values = column(table, name)
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), pa.string())
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise AdapterError(f"column {name!r} must hold strings, found {values.type}")
    return values.cast(pa.string())


def blank(texts: pa.Array) -> np.ndarray:
    """True where a text is null or only whitespace."""
    empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0)
    return pc.fill_null(empty, True).to_numpy(zero_copy_only=False)


def contents(conversations: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each row's message contents joined by a newline ("" for no messages)."""
    if isinstance(conversations, pa.ChunkedArray):
        conversations = conversations.combine_chunks()
    texts = pc.struct_field(conversations.values, "content")
    offsets = conversations.offsets
    return pc.binary_join(pa.ListArray.from_arrays(offsets, texts), "\n").fill_null("")


def messages(rows: list[list[dict]]) -> pa.Array:
    return pa.array(rows, type=MESSAGES)


def turn(texts: pa.Array, role: str) -> pa.Array:
    """One message per row (texts must have no nulls)."""
    n = len(texts)
    values = pa.StructArray.from_arrays([pa.repeat(pa.scalar(role), n).cast(pa.string()), texts], ["role", "content"])
    return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), values, type=MESSAGES)


def pairs_table(
    source: str,
    prompt: pa.Array,
    chosen: pa.Array,
    rejected: pa.Array,
    source_row: np.ndarray,
    *,
    chosen_score=None,
    rejected_score=None,
    score=None,
    category=None,
    generator: str | None = None,
    adversarial=None,
) -> pa.Table:
    n = len(source_row)

    def typed(values, kind: pa.DataType):
        if values is None:
            return pa.nulls(n, kind)
        return values.cast(kind) if isinstance(values, pa.Array) else pa.array(values, type=kind)

    return pa.Table.from_arrays(
        [
            prompt,
            chosen,
            rejected,
            pa.repeat(pa.scalar(source), n).cast(pa.string()),
            typed(chosen_score, pa.float64()),
            typed(rejected_score, pa.float64()),
            typed(score, pa.float64()),
            typed(category, pa.string()),
            pa.repeat(pa.scalar(generator, pa.string()), n) if generator else pa.nulls(n, pa.string()),
            typed(adversarial, pa.bool_()),
            pa.array(source_row, type=pa.int64()),
        ],
        schema=CURATION_SCHEMA,
    )


def preferred(keep: np.ndarray, first_wins: np.ndarray, first: pa.Array, second: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The chosen and rejected answer turns of the kept rows when each row offers two answers: ``first`` where
    ``first_wins`` (one flag per kept row), else ``second``."""
    wins, keep = pa.array(first_wins), pa.array(keep)
    first, second = first.filter(keep), second.filter(keep)
    return turn(pc.if_else(wins, first, second), "assistant"), turn(pc.if_else(wins, second, first), "assistant")


def in_row_order(chosen_rows: list[int], rejected_rows: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs made of two input rows, ordered by their first row: (chosen rows, rejected rows, first rows)."""
    chosen, rejected = np.array(chosen_rows, np.int64), np.array(rejected_rows, np.int64)
    first = np.minimum(chosen, rejected)
    order = np.argsort(first, kind="stable")
    return chosen[order], rejected[order], first[order]


class Drops:
    """Collects dropped input rows with their reasons (the first reason given to a row wins)."""

    def __init__(self, table: pa.Table):
        self.table = table
        self.reason = np.full(table.num_rows, None, dtype=object)

    def drop(self, mask: np.ndarray, reason: str) -> None:
        self.reason[mask & (self.reason == None)] = reason  # noqa: E711 - element-wise comparison

    def drop_rows(self, rows_by_reason: dict[str, list[int]]) -> None:
        """Drops the listed rows, each list with its reason."""
        for reason, rows in rows_by_reason.items():
            mask = np.zeros(len(self.reason), dtype=bool)
            mask[rows] = True
            self.drop(mask, reason)

    def groups(self, keys: pa.Array) -> list[list[int]]:
        """The rows still in, grouped by equal ``keys`` (a string column), in order of first appearance."""
        alive = self.alive
        groups: dict[str, list[int]] = {}
        for row, key in zip(np.flatnonzero(alive).tolist(), keys.filter(pa.array(alive)).to_pylist(), strict=True):
            groups.setdefault(key, []).append(row)
        return list(groups.values())

    @property
    def alive(self) -> np.ndarray:
        return self.reason == None  # noqa: E711

    def result(self, pairs: pa.Table, rows_used: int) -> Converted:
        rows = np.flatnonzero(self.reason != None)  # noqa: E711
        records = self.table.take(pa.array(rows)).to_pylist() if len(rows) else []
        dropped = pa.table(
            {
                "source_row": pa.array(rows, type=pa.int64()),
                "reason": pa.array(self.reason[rows].tolist(), type=pa.string()),
                "record": pa.array([json.dumps(r, ensure_ascii=False, default=str) for r in records], pa.string()),
            },
            schema=DROPPED_SCHEMA,
        )
        if rows_used + len(rows) != self.table.num_rows:
            raise AssertionError(f"{self.table.num_rows} rows in, {rows_used} used and {len(rows)} dropped")
        return Converted(pairs, dropped, self.table.num_rows, rows_used)

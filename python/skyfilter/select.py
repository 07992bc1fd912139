"""Score-based selection of preference rows: thresholds, margins, length ratios, reward-model agreement and the
top fraction of each group by an adjusted score, as Rust kernels over Arrow columns.

Rules, in order of precedence (a row is dropped for the first rule it fails; the names are the ``reason``
written with every dropped row):

1. **missing_score**: a score column that an active rule reads is null or NaN in this row. With
   ``missing="error"`` (default) this is an error naming the file, row and column instead.
2. **chosen_score** / **rejected_score**: the chosen (rejected) score lies outside ``[min, max]`` (inclusive).
3. **margin**: chosen score minus rejected score lies outside its bounds.
4. **rm_agreement**: a reward model's score of the chosen answer is not strictly above its score of the rejected
   answer (both supplied as columns; the WildGuardMix rule).
5. **length_ratio**: characters of the chosen answer turn(s) over those of the rejected one(s) lie outside
   its bounds (1 when both are empty; infinite when only the rejected answer is). The only rule that reads
   the texts comes last, so that only the rows that pass 1-4 have their texts read.
6. **top_fraction**: among the rows that passed 1-5, each group (``group_by``; all rows form one group
   without it) keeps its best ``ceil(f * n)`` rows by adjusted score, where ``n`` is the group's number of
   such rows and ``f`` its fraction (``fractions[group]``, else ``default_fraction``). ``f * n`` is first
   lowered by a relative 1e-12, so that 0.3 x 10 keeps 3 rows, not 4. Ties go to the earlier row (input order
   over all inputs). The adjusted score is ``score + offsets[row's offset_by value]``: an offset of -0.10
   lowers that group's rows.

Score columns may be numeric or lists of numbers (their mean is used: Magpie's per-response ArmoRM scores; a
list with a null is missing); a ``"a.b"`` name reads field ``b`` of struct column ``a`` (UltraFeedback's
``metadata.score_chosen``), or of the structs of list column ``a`` (Magpie's ``rewards_armorm.score``). Results do
not depend on the thread count or the batch size.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skyfilter import _core
from skyfilter.frames import Restore, as_arrow, as_is
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
    take_rows,
    worker_threads,
    write_bad_rows,
)
from skyfilter.schema import SchemaError, answers_advice, pair_table, resolve_layout, turn_texts, unread_answers

__all__ = [
    "SelectOptions",
    "SelectReport",
    "Selection",
    "REASONS",
    "ADDED_COLUMNS",
    "SELECTION_COLUMNS",
    "select_table",
    "select_rows",
    "selection_columns",
    "run_select",
]

#: Row codes of the Rust kernel, in order of precedence; ``kept`` is code 0.
REASONS: tuple[str, ...] = tuple(_core.SELECT_REASONS)
KEPT, MISSING, TOP = 0, REASONS.index("missing_score"), REASONS.index("top_fraction")
LENGTH_RATIO = REASONS.index("length_ratio")

#: Columns added to the dropped rows.
ADDED_COLUMNS = ("input_file", "input_row", "reason", "adjusted_score")

ALL = "(all)"


#: The numeric bounds of :class:`SelectOptions`.
BOUNDS = ("min_chosen", "max_chosen", "min_rejected", "max_rejected", "min_margin", "max_margin", "min_length_ratio",
          "max_length_ratio")  # fmt: skip


@dataclass(frozen=True)
class SelectOptions:
    """Which rows a selection keeps. Every rule is off unless its parameters are given."""

    score: str | None = None
    group_by: str | None = None
    fractions: dict[str, float] = field(default_factory=dict)
    default_fraction: float | None = None
    offset_by: str | None = None
    offsets: dict[str, float] = field(default_factory=dict)
    chosen_score: str | None = None
    rejected_score: str | None = None
    min_chosen: float | None = None
    max_chosen: float | None = None
    min_rejected: float | None = None
    max_rejected: float | None = None
    min_margin: float | None = None
    max_margin: float | None = None
    min_length_ratio: float | None = None
    max_length_ratio: float | None = None
    rm_chosen: str | None = None
    rm_rejected: str | None = None
    missing: str = "error"

    def __post_init__(self) -> None:
        def need(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(message)

        need(self.missing in ("error", "drop"), f"missing must be 'error' or 'drop', got {self.missing!r}")
        numbers = [(n, getattr(self, n)) for n in (*BOUNDS, "default_fraction") if getattr(self, n) is not None]
        numbers += [(f"fractions[{k!r}]", v) for k, v in self.fractions.items()]
        numbers += [(f"offsets[{k!r}]", v) for k, v in self.offsets.items()]
        for name, value in numbers:  # a bool is an int to Python, and NaN compares false with everything
            need(isinstance(value, (int, float)) and not isinstance(value, bool), f"{name} must be a number, got "
                 f"{value!r}")  # fmt: skip
            need(not math.isnan(value), f"{name} must be a number, got NaN")
        for name, f in [*self.fractions.items(), ("default", self.default_fraction)]:
            need(f is None or 0.0 <= f <= 1.0, f"fraction for {name} must be within [0, 1], got {f}")
        for name, v in self.offsets.items():
            need(math.isfinite(v), f"offset for {name} must be a finite number, got {v}")
        need(not self.fractions or self.group_by is not None, "fractions: per group, needs the group_by column")
        need(self.score is not None or not self.ranked, "a top fraction needs a score column to rank by")
        need(not self.offsets or self.offset_by is not None, "offsets: needs the offset_by column")
        need(self.offset_by is None or self.score is not None, "offset_by: needs the score column it adjusts")
        need(self.offset_by is None or bool(self.offsets), "offset_by: needs at least one of offsets")
        for what in ("chosen", "rejected", "margin", "length_ratio"):
            low, high = getattr(self, f"min_{what}"), getattr(self, f"max_{what}")
            need(low is None or high is None or low <= high, f"min_{what} {low} is above max_{what} {high}")
        margin = ("min_margin", "max_margin")
        for column, rules in (("chosen_score", ("min_chosen", "max_chosen", *margin)),
                              ("rejected_score", ("min_rejected", "max_rejected", *margin))):  # fmt: skip
            given = [rule for rule in rules if getattr(self, rule) is not None]
            need(not given or getattr(self, column) is not None, f"{', '.join(given)}: needs the {column} column")
        need((self.rm_chosen is None) == (self.rm_rejected is None), "give both rm_chosen and rm_rejected, or neither")

    @property
    def ranked(self) -> bool:
        """Whether the top-fraction rule is on."""
        return bool(self.fractions) or self.default_fraction is not None

    @property
    def uses_margin(self) -> bool:
        return self.min_margin is not None or self.max_margin is not None

    @property
    def uses_lengths(self) -> bool:
        return self.min_length_ratio is not None or self.max_length_ratio is not None

    def unread(self) -> dict[str, tuple[str, ...]]:
        """The score columns given that no rule reads (a bound left out, or a typo in its flag), each with the
        rules that would read it: the Python API may name them all and vary the rules; the CLI refuses them."""
        margin = ("min_margin", "max_margin")
        readers = {
            "chosen_score": ("min_chosen", "max_chosen", *margin),
            "rejected_score": ("min_rejected", "max_rejected", *margin),
            "score": ("fractions", "default_fraction"),
        }
        return {
            column: rules
            for column, rules in readers.items()
            if getattr(self, column) is not None and not any(getattr(self, r) not in (None, {}) for r in rules)
        }

    def fraction(self, group: str | None) -> float:
        """The fraction a group keeps: its own, else the default, else 1 (all)."""
        if group in self.fractions:
            return self.fractions[group]
        return 1.0 if self.default_fraction is None else self.default_fraction

    def score_columns(self) -> dict[str, str]:
        """The kernel's argument name for every score column in use."""
        named = {
            "score": self.score,
            "chosen": self.chosen_score if self.min_chosen is not None or self.max_chosen is not None else None,
            "rejected": self.rejected_score if self.min_rejected is not None or self.max_rejected is not None else None,
            "rm_chosen": self.rm_chosen,
            "rm_rejected": self.rm_rejected,
        }
        if self.uses_margin:
            named["chosen"], named["rejected"] = self.chosen_score, self.rejected_score
        return {k: v for k, v in named.items() if v is not None}

    def describe(self) -> str:
        parts = []
        for low, high, what in (
            (self.min_chosen, self.max_chosen, f"{self.chosen_score}"),
            (self.min_rejected, self.max_rejected, f"{self.rejected_score}"),
            (self.min_margin, self.max_margin, f"{self.chosen_score} - {self.rejected_score}"),
            (self.min_length_ratio, self.max_length_ratio, "length ratio"),
        ):
            if low is not None or high is not None:
                parts.append(f"{'' if low is None else f'{low:g} <= '}{what}{'' if high is None else f' <= {high:g}'}")
        if self.rm_chosen:
            parts.append(f"{self.rm_chosen} > {self.rm_rejected}")
        if self.ranked:
            score = self.score if not self.offsets else f"{self.score} + offset by {self.offset_by}"
            per = f" per {self.group_by}" if self.group_by else ""
            parts.append(f"top fraction{per} by {score}")
        return "; ".join(parts) or "no rules (every row is kept)"


@dataclass
class SelectReport:
    """What a selection did, every row accounted for; written as report.json."""

    method: dict
    inputs: list[str]
    rows: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    bad_rows: int = 0
    per_group: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, str | None] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------------------------- columns


def _field(source: Source, batch: pa.RecordBatch, name: str) -> pa.Array:
    """Column ``name``, or for ``"a.b"`` field ``b`` of struct column ``a`` (or of the structs in list column
    ``a``, as a list)."""
    if name in batch.schema.names:
        return batch.column(name)
    head, _, rest = name.partition(".")
    if rest and head in batch.schema.names:
        column = batch.column(head)
        if pa.types.is_struct(column.type) and column.type.get_field_index(rest) >= 0:
            return pc.struct_field(column, rest)
        item = column.type.value_type if pa.types.is_list(column.type) else None
        if item is not None and pa.types.is_struct(item) and item.get_field_index(rest) >= 0:
            # A list of structs (Magpie's [{"score": ...}, ...]): the list of that field.
            values = pc.struct_field(column.values, rest)
            return pa.ListArray.from_arrays(column.offsets, values, mask=column.is_null())
    raise InputError(f"{source.name}: no column {name!r}; columns are {source.schema.names}")


def score_values(source: Source, batch: pa.RecordBatch, name: str) -> pa.Array:
    """Score column ``name`` of ``batch`` as float64 (nulls kept): numbers, or lists of numbers (their mean), in a
    column or a struct field (``a.b``). Select and dedup read scores this one way."""
    return _numbers(source, _field(source, batch, name), name)


def _top_level(name: str, schema: pa.Schema) -> str:
    return name if name in schema.names else name.partition(".")[0]


def _numbers(source: Source, values: pa.Array, name: str) -> pa.Array:
    """A score column as float64 (nulls kept); lists of numbers become their means."""
    t = values.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        if not (pa.types.is_integer(t.value_type) or pa.types.is_floating(t.value_type)):
            raise InputError(f"{source.name}: column {name!r} must hold numbers or lists of numbers, found {t}")
        offsets = pc.list_value_length(values).fill_null(0).to_numpy(zero_copy_only=False)
        bounds = np.concatenate([[0], np.cumsum(offsets)]).astype(np.int64)
        flat = pc.list_flatten(values).cast(pa.float64())
        means = _core.segment_means(flat, pa.array(bounds))
        return pc.if_else(pc.is_null(values), pa.scalar(None, pa.float64()), means)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t):
        return values.cast(pa.float64())
    raise InputError(f"{source.name}: column {name!r} must hold numbers or lists of numbers, found {t}")


def _strings(values: pa.Array) -> pa.Array:
    return (
        values if pa.types.is_string(values.type) or pa.types.is_large_string(values.type) else values.cast(pa.string())
    )


def _offsets(
    source: Source, values: pa.Array, offset: int, options: SelectOptions, ids: _core.GroupIds, threads: int
) -> pa.Array:
    """The offset of every row (``values`` is the offset_by column); a value without one is an error naming its
    first row."""
    codes = ids.encode(_strings(values), threads=threads).to_numpy()
    names = ids.names()
    table = np.array([options.offsets.get(n, np.nan) for n in names], dtype=np.float64)
    if any(n not in options.offsets for n in names):  # first seen in this batch: earlier ones were checked
        row = int(np.flatnonzero(np.isnan(table[codes]))[0])
        raise InputError(
            f"{source.name}: row {source.input_rows(offset + row)} (0-based): column {options.offset_by!r} has value "
            f"{names[codes[row]]!r}, which "
            f"has no offset (offsets are given for {sorted(options.offsets)}; give it one, 0 to leave it unchanged)"
        )
    return pa.array(table[codes])


def _length_ratio_fails(
    source: Source, batch: pa.RecordBatch, layout: str | None, only: np.ndarray, options: SelectOptions, threads: int
) -> np.ndarray:
    """Per row: whether the characters of the chosen answer turns over those of the rejected ones fall outside
    the length-ratio bounds (only for the rows ``only`` flags; the others are False)."""
    try:
        found = resolve_layout(batch.schema, layout, source.name)
    except SchemaError as e:
        raise InputError(str(e)) from None  # the message names the input
    if found.name == "prompts":  # no answers: every ratio would be 1, the rule passing or failing every row
        unread = unread_answers(source.schema, found)  # the batch may hold the prompt column alone
        said = f"; columns {unread} look like answers: {answers_advice(source.schema)}" if unread else ""
        raise InputError(f"{source.name}: the length-ratio rule compares the answers, but without chosen and rejected "
                         f"columns the rows are read as prompts alone{said}")  # fmt: skip
    try:
        # Plain string answers are their own single turn: read them where they are.
        pairs = None if found.name == "plain" else pair_table(batch, source=source.name, layout=layout)
    except SchemaError as e:
        raise InputError(f"{source.name}: {e}") from None
    answers = {}
    for column, input_column in zip(("chosen", "rejected"), found.columns[1:], strict=True):
        texts, bounds = (batch.column(input_column), None) if pairs is None else turn_texts(pairs, [column])
        answers[column], answers[f"{column}_bounds"] = texts, bounds
    fails = _core.length_ratio_fails(
        **answers, only=pa.array(only), min=options.min_length_ratio, max=options.max_length_ratio, threads=threads
    )
    return fails.to_numpy(zero_copy_only=False)


# ------------------------------------------------------------------------------------------ decisions


@dataclass
class Decisions:
    """Per row: ``reason`` (index into :data:`REASONS`), ``adjusted`` score (NaN without one) and ``group`` id
    (index into ``group_names``)."""

    reason: np.ndarray
    adjusted: np.ndarray
    group: np.ndarray
    group_names: list[str | None]


def needed_columns(source, options: SelectOptions, layout: str | None) -> list[str]:
    """The columns the rules read (``source``: anything with ``name`` and ``schema``)."""
    schema = source.schema
    names = [*options.score_columns().values(), options.group_by, options.offset_by]
    columns = {_top_level(n, schema) for n in names if n is not None}
    if options.uses_lengths:
        try:
            columns |= set(resolve_layout(schema, layout, source.name).columns)
        except SchemaError as e:
            raise InputError(str(e)) from None  # the message names the input
    return [c for c in schema.names if c in columns]


class _Survivors:
    """The rows of the first pass that passed the row rules, all columns, as ``(batch, rows of it)``, held while
    they fit in ``limit`` bytes (then let go: ``held`` becomes None). Batches are held as read, strings as views
    over the decoded pages (no copy), until that passes ``limit``; from then on the rows are copied compactly
    with ``schema``, the held ones first."""

    def __init__(self, limit: int, schema: pa.Schema) -> None:
        self.limit, self.schema, self.nbytes, self.copying = limit, schema, 0, False
        self.held: list[tuple[pa.RecordBatch, np.ndarray]] | None = []

    def add(self, batch: pa.RecordBatch, passed: np.ndarray) -> None:
        if self.held is None:
            return
        rows = np.flatnonzero(passed)
        if self.copying:
            batch, rows = take_batch(batch, rows, self.schema), np.arange(len(rows))
        self.held.append((batch, rows))
        self.nbytes += batch.get_total_buffer_size()
        if self.nbytes > self.limit and not self.copying:
            self.copying = True
            self.held = [(take_batch(b, r, self.schema), np.arange(len(r))) for b, r in self.held]
            self.nbytes = sum(b.get_total_buffer_size() for b, _ in self.held)
        if self.nbytes > self.limit:
            self.held = None


def row_decisions(
    source: Source,
    offset: int,
    batch: pa.RecordBatch,
    options: SelectOptions,
    layout: str | None,
    threads: int,
    offset_ids: _core.GroupIds,
) -> tuple[np.ndarray, np.ndarray]:
    """The row rules (1-5) on one batch whose first row is row ``offset`` of its source: the code of every row
    (:data:`REASONS`) and its adjusted score (NaN without one). ``offset_ids`` remembers the offset_by values
    seen so far (each is checked for an offset once)."""
    bounds = {
        "chosen_bounds": (options.min_chosen, options.max_chosen),
        "rejected_bounds": (options.min_rejected, options.max_rejected),
        "margin_bounds": (options.min_margin, options.max_margin),
    }
    kwargs = {k: score_values(source, batch, c) for k, c in options.score_columns().items()}
    if options.offset_by is not None:
        values = _field(source, batch, options.offset_by)
        kwargs["offset"] = _offsets(source, values, offset, options, offset_ids, threads)
    codes, scores = _core.row_reasons(batch.num_rows, **kwargs, **bounds, rm_agreement=options.rm_chosen is not None)
    codes = codes.to_numpy(zero_copy_only=False, writable=True)
    if options.uses_lengths:  # the last rule: read only for the rows that pass the others
        codes[_length_ratio_fails(source, batch, layout, codes == KEPT, options, threads)] = LENGTH_RATIO
    if options.missing == "error" and (codes == MISSING).any():
        row = int(np.flatnonzero(codes == MISSING)[0])
        column = next(c for k, c in options.score_columns().items() if not _present(kwargs[k], row))
        raise InputError(
            f"{source.name}: row {source.input_rows(offset + row)} (0-based): column {column!r} is null or NaN "
            "(drop such rows with --missing drop; missing='drop' in Python)"
        )
    return codes, scores.to_numpy() if scores is not None else np.full(batch.num_rows, np.nan)


def group_values(source: Source, batch: pa.RecordBatch, options: SelectOptions) -> pa.Array:
    """The ``group_by`` value of every row, as strings (null kept)."""
    return _strings(_field(source, batch, options.group_by))


def unknown_groups(options: SelectOptions, names: list[str | None], rows: int) -> None:
    """Fails when fractions are given for groups that never occur (not for an input without rows)."""
    unknown = sorted(set(options.fractions) - set(names), key=str)
    if unknown and rows:  # an empty input has no groups at all: empty outputs, not an error
        raise InputError(
            f"fractions are given for {unknown}, which never occur in column {options.group_by!r}; "
            f"its values are {sorted(names, key=str)[:50]}"
        )


def _decide(
    sources: list[Source],
    options: SelectOptions,
    layout: str | None,
    threads: int,
    batch_rows: int,
    progress,
    survivors: _Survivors | None = None,
) -> Decisions:
    """One pass over the columns the rules read (every column when it holds ``survivors``): the row-local rules
    per batch, then the top fractions."""
    groups, offset_ids = _core.GroupIds(), _core.GroupIds()
    reasons, adjusted, group_ids = [], [], []
    columns = None if survivors is not None else needed_columns(sources[0], options, layout)
    reading = iter_batches(sources, batch_rows, "scoring", progress, columns, views=survivors is not None)
    for s, offset, batch in reading:
        codes, scores = row_decisions(s, offset, batch, options, layout, threads, offset_ids)
        reasons.append(codes)
        if survivors is not None:
            survivors.add(batch, codes == KEPT)
        adjusted.append(scores)
        if options.group_by is not None:
            group_ids.append(groups.encode(group_values(s, batch, options), threads=threads).to_numpy())
        else:
            group_ids.append(np.zeros(batch.num_rows, dtype=np.uint32))

    reason = np.concatenate(reasons) if reasons else np.zeros(0, np.uint8)
    score = np.concatenate(adjusted) if adjusted else np.zeros(0)
    group = np.concatenate(group_ids) if group_ids else np.zeros(0, np.uint32)
    names = groups.names() if options.group_by is not None else [ALL]
    unknown_groups(options, names, len(reason))
    if options.ranked and len(reason):
        fractions = [options.fraction(n) for n in names]
        reason = _core.top_fraction(
            pa.array(reason), pa.array(score), pa.array(group), fractions, threads=threads
        ).to_numpy()
    return Decisions(reason, score, group, names)


def _present(values: pa.Array, row: int) -> bool:
    v = values[row].as_py()
    return v is not None and not math.isnan(v)


# ------------------------------------------------------------------------------------------ outputs


DROPPED_FIELDS = (
    pa.field("input_file", pa.string()),
    pa.field("input_row", pa.int64()),
    pa.field("reason", pa.string()),
    pa.field("adjusted_score", pa.float64()),
)
assert tuple(f.name for f in DROPPED_FIELDS) == ADDED_COLUMNS


def evidence(decisions: Decisions, name: str, input_rows: np.ndarray, at: int, drop: np.ndarray) -> list[pa.Array]:
    """The added columns of the dropped rows ``drop`` of a batch whose first row is row ``at`` of the decisions;
    ``input_rows``: their rows in the input."""
    rows = at + drop
    score = decisions.adjusted[rows]
    return [
        pa.array([name] * len(drop), type=pa.string()),
        pa.array(input_rows, type=pa.int64()),
        pa.array(np.array(REASONS, dtype=object)[decisions.reason[rows]], type=pa.string()),
        pa.array(score, mask=np.isnan(score), type=pa.float64()),
    ]


def report_of_decisions(decisions: Decisions, sources: list[Source], options: SelectOptions) -> SelectReport:
    reason, group = decisions.reason, decisions.group.astype(np.int64)
    kept = reason == KEPT
    n_groups, n_reasons = len(decisions.group_names), len(REASONS)
    counts = np.bincount(group * n_reasons + reason, minlength=n_groups * n_reasons).reshape(n_groups, n_reasons)
    lowest = np.full(n_groups, np.inf)
    if options.ranked and kept.any():
        minima = pa.table({"g": group[kept], "s": decisions.adjusted[kept]}).group_by("g").aggregate([("s", "min")])
        lowest[minima["g"].to_numpy()] = minima["s_min"].to_numpy()
    return report_of_counts(counts, lowest, decisions.group_names, [s.name for s in sources], options)


def report_of_counts(
    counts: np.ndarray, lowest: np.ndarray, names: list[str | None], inputs: list[str], options: SelectOptions
) -> SelectReport:
    """The report from the rows per group (in ``names`` order) and reason, and each group's lowest kept adjusted
    score (inf: none)."""
    n_reasons = len(REASONS)
    per_group = {}
    for g, name in enumerate(names):
        c = counts[g].tolist()
        entry = {
            "rows": sum(c),
            "kept": c[KEPT],
            "dropped": {REASONS[r]: c[r] for r in range(1, n_reasons) if c[r]},
        }
        if options.ranked:
            entry["fraction"] = options.fraction(name)
            entry["ranked_rows"] = c[KEPT] + c[TOP]
            entry["lowest_kept_score"] = float(lowest[g]) if np.isfinite(lowest[g]) else None
        per_group["(null)" if name is None else name] = entry
    return SelectReport(
        method={**asdict(options), "description": options.describe()},
        inputs=inputs,
        rows=int(counts.sum()),
        kept=int(counts[:, KEPT].sum()),
        dropped={r: int(counts[:, i].sum()) for i, r in enumerate(REASONS) if i != KEPT},
        per_group=per_group,
    )


def run_select(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    options: SelectOptions,
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
    hold_bytes: int | None = None,
    progress: bool | None = None,
) -> SelectReport:
    """Selects rows of the inputs: ``out`` gets the kept rows unchanged, ``dropped`` the others plus
    :data:`ADDED_COLUMNS`.

    The first pass reads only the columns the rules need, and a second pass writes. A length-ratio rule reads the
    answer texts, most of the input, in the first pass: then, when only ``out`` is written, the first pass reads
    every column and holds the rows that pass the row rules, up to ``hold_bytes`` (default: a quarter of the
    machine's memory; 0 never holds), so that the input is decoded once: as read (strings as views over the
    decoded pages) while they fit, then copied compactly; past the limit even so it lets them go and reads the
    input again.

    Rows that cannot be read (a JSON value of the wrong type) stop the run, or with ``bad_rows`` go to that file;
    rows in = kept + dropped + bad rows."""
    inputs = input_specs(inputs)
    if not isinstance(options, SelectOptions):
        raise TypeError(f"options must be a SelectOptions, not a {type(options).__name__}")
    check_outputs(inputs, {"--out": out, "--dropped": dropped, "--bad-rows": bad_rows}, {"--report": report})
    reading = RowReading(layout, keep_bad=bad_rows is not None, allow_empty=allow_empty)
    # the added columns go to the dropped rows only: an input may have them when those are not written
    sources = open_sources(inputs, split, ADDED_COLUMNS if dropped is not None else (), reading)
    hold = default_hold_bytes() if hold_bytes is None else hold_bytes
    schema = sources[0].schema
    holds = options.uses_lengths and out is not None and dropped is None and hold > 0
    survivors = _Survivors(hold, schema) if holds else None
    decisions = _decide(sources, options, layout, worker_threads(threads), batch_rows, progress, survivors)
    dropped_schema = pa.schema([*schema, *DROPPED_FIELDS])
    with AtomicWriters({"out": out, "dropped": dropped, "bad_rows": bad_rows}) as writers:
        writers.set_schema("out", schema)
        writers.set_schema("dropped", dropped_schema)
        bad = write_bad_rows(writers, "bad_rows", sources)
        if survivors is not None and survivors.held is not None:
            # The rows that passed the row rules are the ones the top fraction ranked: KEPT or TOP now.
            keep = decisions.reason[(decisions.reason == KEPT) | (decisions.reason == TOP)] == KEPT
            at = 0
            for batch, rows in survivors.held:
                writers.write("out", take_batch(batch, rows[keep[at : at + len(rows)]], schema))
                at += len(rows)
        elif out is not None or dropped is not None:
            at = 0
            # Read with views: the text of the rows that go nowhere is never copied.
            for s, offset, batch in iter_batches(sources, batch_rows, "writing", progress, views=True):
                keep = decisions.reason[at : at + batch.num_rows] == KEPT
                writers.write("out", take_batch(batch, np.flatnonzero(keep), schema))
                drop = np.flatnonzero(~keep)
                if len(drop) and "dropped" in writers:
                    added = evidence(decisions, s.name, s.input_rows(offset + drop), at, drop)
                    columns = [*take_batch(batch, drop, schema).columns, *added]
                    writers.write("dropped", pa.RecordBatch.from_arrays(columns, schema=dropped_schema))
                at += batch.num_rows
        result = report_of_decisions(decisions, sources, options)
        result.rows, result.bad_rows = result.rows + bad, bad
        result.outputs = {"out": out, "dropped": dropped, "bad_rows": bad_rows, "report": report}
        if report is not None:
            writers.write_text(report, result.to_json())
    return result


def default_hold_bytes() -> int:
    """A quarter of the machine's memory (2 GiB where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (AttributeError, ValueError, OSError):
        return 2 << 30


@dataclass
class Selection:
    """The decision for every row of an in-memory table; ``kept()`` and ``dropped()`` build the tables, of the kind
    :func:`select_table` was given."""

    table: pa.Table
    decisions: Decisions
    report: SelectReport
    name: str = "table"
    restore: Restore = field(default=as_is, repr=False)

    @property
    def mask(self) -> np.ndarray:
        """True for the kept rows."""
        return self.decisions.reason == KEPT

    @property
    def reasons(self) -> pa.Array:
        """The rule that dropped each row, or ``kept``, as a dictionary array."""
        return pa.DictionaryArray.from_arrays(pa.array(self.decisions.reason.astype(np.int8)), pa.array(REASONS))

    def kept(self, *, views: bool = False):
        """The kept rows, unchanged; ``views=True`` returns string columns as string_view columns that share
        the input's text instead of copying it (see :func:`skyfilter.io.take_rows`)."""
        return self.restore(take_rows(self.table, np.flatnonzero(self.mask), views=views))

    def dropped(self):
        """The dropped rows plus :data:`ADDED_COLUMNS` (``input_file`` is the selection's name)."""
        drop = np.flatnonzero(~self.mask)
        dropped = take_rows(self.table, drop)
        for f, column in zip(DROPPED_FIELDS, evidence(self.decisions, self.name, drop, 0, drop), strict=True):
            dropped = dropped.append_column(f, column)
        return self.restore(dropped)


def select_table(
    table,
    options: SelectOptions,
    *,
    layout: str | None = None,
    threads: int | None = None,
    name: str = "table",
) -> Selection:
    """Selection over an in-memory table (``name`` stands for it in messages and the report), in one batch.
    ``table``: any kind :func:`skyfilter.frames.as_arrow` takes (a ``RecordBatchReader`` is read whole); the
    selection's ``kept()`` and ``dropped()`` are of that kind."""
    table, restore = as_arrow(table)
    source = table_source(name, table)
    decisions = _decide([source], options, layout, worker_threads(threads), max(table.num_rows, 1), False)
    return Selection(table, decisions, report_of_decisions(decisions, [source], options), name, restore)


#: The columns :func:`select_rows` adds to the rows (and :func:`skyfilter.ray.select` to a dataset's).
SELECTION_COLUMNS = ("reason", "adjusted_score")


def selection_columns(reason: np.ndarray, adjusted: np.ndarray) -> dict[str, pa.Array]:
    """:data:`SELECTION_COLUMNS` for rows with these reason codes and adjusted scores (NaN: null)."""
    return {
        "reason": pa.array(np.array(REASONS, dtype=object)[reason], pa.string()),
        "adjusted_score": pa.array(adjusted, mask=np.isnan(adjusted), type=pa.float64()),
    }


def select_rows(data, options: SelectOptions, *, layout: str | None = None, threads: int | None = None):
    """The rows of ``data`` (any kind :func:`skyfilter.frames.as_arrow` takes; the result is of the same kind) with
    :data:`SELECTION_COLUMNS` added: ``reason`` (``kept`` or the rule that drops the row) and ``adjusted_score``,
    decided as :func:`select_table` decides; keep the selection where ``reason`` is ``kept``. The top fraction ranks
    all rows together: a ``RecordBatchReader`` is read whole (its result is a reader over the annotated rows)."""
    table, restore = as_arrow(data)
    clash = [c for c in SELECTION_COLUMNS if c in table.schema.names]
    if clash:
        raise InputError(f"table: already has column(s) {clash}, which select adds; rename them first")
    selection = select_table(table, options, layout=layout, threads=threads)
    for column, values in selection_columns(selection.decisions.reason, selection.decisions.adjusted).items():
        table = table.append_column(column, values)
    return restore(table)

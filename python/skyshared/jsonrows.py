"""JSON rows (JSON Lines or a JSON array) as an Arrow table, with the rows that cannot be read set apart.

The one place where a JSON file's rows are judged, for skyfilter's reader and skyrm's (pure Python and pyarrow:
no Rust extension, no polars). A row cannot be read when it is not valid JSON (JSON Lines), is not an object, or
holds a value of the wrong JSON type in a column: one the caller's ``expected`` kinds rule out (a boolean where a
layout reads an answer), or one unlike the column's other rows (a string in a column of numbers; the most common
kind wins; a boolean among the numbers of a struct field or list, which Arrow would read as 0.0 or 1.0, as
well). Every such row is a :class:`BadRow` with its 0-based row number, the 1-based line of the value (JSON
Lines: the physical line, blank lines counted), the reason and the row's text; the caller either stops at the
first (``BadRow.message`` is the one-line error ``FILE:LINE: reason``) or writes them aside and reads on.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

__all__ = ["BadRow", "JsonRows", "JsonError", "Expected", "read_json_rows", "table_fits", "check_utf8",
           "BAD_ROWS_SCHEMA", "bad_rows_table"]  # fmt: skip

#: From the column names of a file to the JSON kinds each named column may hold (see :func:`kind_of`).
Expected = Callable[[list[str]], dict[str, tuple[str, ...]]]

_ARTICLES = {
    "string": "a string",
    "message list": "a message list",
    "list": "a list",
    "empty list": "an empty list",
    "object": "an object",
    "number": "a number",
    "boolean": "a boolean",
}
_WS = re.compile(r"\s*")


class JsonError(ValueError):
    """A JSON file that cannot be read at all (not UTF-8, a broken JSON array); the message is one line."""


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be read: ``row`` (0-based), ``line`` (1-based), ``reason`` and the row's JSON ``text``."""

    row: int
    line: int
    reason: str
    text: str

    def message(self, name: str) -> str:
        """The one-line error ``FILE:LINE: reason``."""
        return f"{name}:{self.line}: {self.reason}"


@dataclass
class JsonRows:
    """The readable rows as a table, the input row of each (``rows``), the file's row count and the bad rows."""

    table: pa.Table
    rows: np.ndarray
    total: int
    bad: list[BadRow]


#: The layout of a ``--bad-rows`` file, the same for every command of skyfilter and skyrm.
BAD_ROWS_SCHEMA = pa.schema(
    [("input_file", pa.string()), ("input_row", pa.int64()), ("line", pa.int64()), ("reason", pa.string()),
     ("row", pa.string())]
)  # fmt: skip


def bad_rows_table(reads: list[tuple[str, list[BadRow]]]) -> pa.Table:
    """The bad rows of each read file (its name, its bad rows) in :data:`BAD_ROWS_SCHEMA`: the input file, the
    0-based input row, the 1-based line, the reason and the row's JSON text."""
    records = [{"input_file": name, "input_row": b.row, "line": b.line, "reason": b.reason, "row": b.text}
               for name, bad in reads for b in bad]  # fmt: skip
    return pa.Table.from_pylist(records, schema=BAD_ROWS_SCHEMA)


def kind_of(value) -> str:
    """The JSON kind of a parsed value: null, boolean, number, string, object, message list (a list of objects),
    list or empty list."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if not value:
        return "empty list"
    return "message list" if all(isinstance(v, dict) for v in value) else "list"


def arrow_kind(t: pa.DataType) -> str:
    """The JSON kind that every value of an Arrow column of type ``t`` (as Arrow's JSON reader types it) has; null
    for a column of nulls only."""
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_struct(t):
        return "object"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "message list" if pa.types.is_struct(t.value_type) else "list"
    return "other"


def table_fits(table: pa.Table, expected: Expected | None) -> bool:
    """Whether every column of a table that Arrow typed alike holds kinds ``expected`` accepts: when not, its rows
    are judged one by one (:func:`read_json_rows`) so that each bad row is named."""
    if expected is None:
        return True
    kinds = expected(table.column_names)
    return all(_fits(arrow_kind(f.type), kinds[f.name]) for f in table.schema if f.name in kinds)


def describe_kinds(kinds: tuple[str, ...]) -> str:
    """``("string", "message list")`` as ``a string or a message list``."""
    words = [_ARTICLES[k] for k in kinds]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _fits(kind: str, kinds: tuple[str, ...] | set[str]) -> bool:
    if kind in ("null", *kinds):
        return True
    return kind == "empty list" and bool({"list", "message list"} & set(kinds))


def _shown(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_message(e: json.JSONDecodeError) -> str:
    return f"invalid JSON at column {e.colno} ({re.sub(r'( starting)? at$', '', e.msg)})"


def check_utf8(name: str, data: bytes) -> str:
    """The text of ``data``; invalid UTF-8 is a :class:`JsonError` naming its line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise JsonError(f"{name}:{line}: invalid UTF-8 (byte {e.start})") from None


@dataclass
class _Row:
    number: int
    line: int
    value: object
    text: str
    start: int = -1  # JSON arrays: where the row's text starts in the file


def _line_rows(text: str, bad: list[BadRow]) -> list[_Row]:
    rows: list[_Row] = []
    number = 0
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(_Row(number, line_number, json.loads(line), line))
        except json.JSONDecodeError as e:
            bad.append(BadRow(number, line_number, _json_message(e), line))
        number += 1
    return rows


def _skip(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()  # type: ignore[union-attr]


def _array_rows(name: str, text: str) -> list[_Row]:
    decoder = json.JSONDecoder()
    rows: list[_Row] = []
    pos = _skip(text, 0) + 1  # past "["
    try:
        pos = _skip(text, pos)
        while pos < len(text) and text[pos] != "]":
            value, end = decoder.raw_decode(text, pos)
            rows.append(_Row(len(rows), text.count("\n", 0, pos) + 1, value, text[pos:end], pos))
            pos = _skip(text, end)
            if text.startswith(",", pos):
                pos = _skip(text, pos + 1)
            elif not text.startswith("]", pos):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
        if pos >= len(text):
            raise json.JSONDecodeError("Expecting ']'", text, pos)
        if text[_skip(text, pos + 1) :]:
            raise json.JSONDecodeError("Extra data", text, _skip(text, pos + 1))
    except json.JSONDecodeError as e:
        raise JsonError(f"{name}:{e.lineno}: {_json_message(e)}") from None
    return rows


def _key_line(text: str, row: _Row, key: str) -> int:
    """The line of ``key``'s value in an object that starts at ``row.start`` of ``text`` (JSON arrays)."""
    if row.start < 0:
        return row.line
    decoder = json.JSONDecoder()
    pos = _skip(text, row.start + 1)
    while text[pos] != "}":
        name, pos = decoder.raw_decode(text, pos)
        pos = _skip(text, _skip(text, pos) + 1)  # past ":"
        if name == key:
            return text.count("\n", 0, pos) + 1
        _, pos = decoder.raw_decode(text, pos)
        pos = _skip(text, pos)
        pos = _skip(text, pos + 1) if text[pos] == "," else pos
    return row.line


def _converts(values: list) -> str | None:
    try:
        pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
        return str(e).splitlines()[0]
    return None


def _has_floats(t: pa.DataType) -> bool:
    """Whether a type has a floating-point leaf (where Arrow would read a boolean as 0.0 or 1.0)."""
    if pa.types.is_floating(t):
        return True
    if pa.types.is_struct(t):
        return any(_has_floats(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _has_floats(t.value_type)
    return False


def _boolean_among_numbers(value, t: pa.DataType, path: str) -> tuple[str, bool] | None:
    """The path and value of the first boolean that a column of type ``t`` holds as a number (``pa.array`` reads
    ``{"s": true}`` among ``{"s": 6.5}`` as 1.0 without a word), or None."""
    if isinstance(value, bool):
        return (path, value) if pa.types.is_floating(t) else None
    if isinstance(value, dict) and pa.types.is_struct(t):
        for i in range(t.num_fields):
            field = t.field(i)
            if _has_floats(field.type) and (found := _boolean_among_numbers(value.get(field.name), field.type,
                                                                           f"{path}.{field.name}")):  # fmt: skip
                return found
    if isinstance(value, list) and (pa.types.is_list(t) or pa.types.is_large_list(t)):
        for i, item in enumerate(value):
            if found := _boolean_among_numbers(item, t.value_type, f"{path}[{i}]"):
                return found
    return None


def _first_unreadable(values: list) -> int:
    """The first position whose value Arrow cannot type like the values before it (``values`` fail as a whole)."""
    low, high = 0, len(values)  # values[:low] convert, values[:high] do not
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if _converts(values[:mid]) is None else (low, mid)
    return high - 1


def _refuse_one_object(name: str, text: str) -> None:
    """A JsonError for a file that is one JSON object over several lines (a dict of columns, say): neither JSON
    Lines nor an array of rows, where each of its lines would be a bad row."""
    first = text.lstrip().split("\n", 1)[0]
    if not first.startswith("{"):
        return
    try:
        json.loads(first)
        return  # a JSON Lines file
    except json.JSONDecodeError:
        pass
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        return
    if isinstance(whole, dict):
        keys = ", ".join(repr(k) for k in list(whole)[:5]) + (", ..." if len(whole) > 5 else "")
        raise JsonError(f"{name}: one JSON object (keys {keys}), not rows: give a JSON array of objects or JSON Lines")


def read_json_rows(name: str, data: bytes, expected: Expected | None = None) -> JsonRows:
    """The rows of a JSON array (text starting with ``[``) or JSON Lines file; see the module docstring."""
    text = check_utf8(name, data)
    bad: list[BadRow] = []
    array = text.lstrip().startswith("[")
    if not array:
        _refuse_one_object(name, text)
    rows = _array_rows(name, text) if array else _line_rows(text, bad)
    total = len(rows) + len(bad)

    def set_apart(row: _Row, reason: str, column: str | None = None) -> None:
        line = _key_line(text, row, column) if column is not None else row.line
        bad.append(BadRow(row.number, line, reason, row.text))

    objects = []
    for row in rows:
        if isinstance(row.value, dict):
            objects.append(row)
        else:
            set_apart(row, f"expected a JSON object, got {_ARTICLES.get(kind_of(row.value), 'null')}")
    columns = list(dict.fromkeys(k for row in objects for k in row.value))  # type: ignore[attr-defined]
    wanted = expected(columns) if expected is not None else {}
    unreadable: set[int] = set()
    for column in columns:
        kinds = [kind_of(row.value.get(column)) for row in objects]  # type: ignore[attr-defined]
        accepted = wanted.get(column)
        for i, kind in enumerate(kinds):
            if accepted and i not in unreadable and not _fits(kind, accepted):
                value = _shown(objects[i].value[column])  # type: ignore[index]
                reason = f"column {column!r}: expected {describe_kinds(accepted)}, got {_ARTICLES[kind]} ({value})"
                set_apart(objects[i], reason, column)
                unreadable.add(i)
        counts = Counter(k for i, k in enumerate(kinds) if i not in unreadable and k not in ("null", "empty list"))
        if not counts:
            continue
        usual = counts.most_common(1)[0][0]
        for i, kind in enumerate(kinds):
            if i not in unreadable and not _fits(kind, (usual,)):
                value = _shown(objects[i].value[column])  # type: ignore[index]
                reason = (
                    f"column {column!r}: got {_ARTICLES[kind]} ({value}) where its other rows hold {_ARTICLES[usual]}"
                )
                set_apart(objects[i], reason, column)
                unreadable.add(i)
    while True:  # values of one kind that Arrow still cannot type alike (a message whose content is a number)
        kept = [i for i in range(len(objects)) if i not in unreadable]
        good = [objects[i] for i in kept]
        arrays, failed = {}, None
        for column in columns:
            values = [row.value.get(column) for row in good]  # type: ignore[attr-defined]
            problem = _converts(values)
            if problem is None:
                arrays[column] = pa.array(values)
                nested = [(at, found) for at, v in enumerate(values) if _has_floats(arrays[column].type)
                          and (found := _boolean_among_numbers(v, arrays[column].type, column))]  # fmt: skip
                for at, (path, value) in nested:  # every such row at once: one rebuild
                    reason = (
                        f"column {column!r}: got a boolean ({_shown(value)}) at {path} where its other rows hold "
                        "a number"
                    )
                    set_apart(good[at], reason, column)
                    unreadable.add(kept[at])
                if nested:
                    failed = good[nested[0][0]]
                    break
                continue
            at = _first_unreadable(values)
            reason = f"column {column!r}: {_shown(values[at])} does not have the types of the column's earlier rows"
            failed = good[at]
            set_apart(failed, reason, column)
            unreadable.add(kept[at])
            break
        if failed is None:
            break
    bad.sort(key=lambda b: b.row)
    table = pa.table(arrays) if columns else pa.table({})
    if not columns and good:
        table = pa.table({"_": pa.nulls(len(good))}).drop_columns(["_"])
    return JsonRows(table, np.array([row.number for row in good], dtype=np.int64), total, bad)

"""Reading inputs (files and Hugging Face datasets) as Arrow batches, and writing outputs atomically.

Inputs: parquet and Arrow IPC files are streamed batch by batch (memory does not grow with the file;
parquet is decoded in Rust, one row group per core at a time, with only the columns asked for);
JSON Lines (``.jsonl``, ``.ndjson``, also ``.gz``), JSON arrays (``.json``) and CSV are read whole;
anything else that is not a file but looks like ``owner/name`` (without a data-file suffix) is loaded with
``datasets.load_dataset``, tried once from the cache when the hub cannot be reached (:mod:`skyshared.hub`).

Outputs: parquet, Arrow IPC (``.arrow``/``.feather``) or JSON Lines, chosen by suffix, each encoded by a
background thread while the next batch is read. :func:`check_outputs` refuses, before any work, an output that
is an input, two outputs on one file and an output folder that cannot be written; every output is written under
a temporary name beside its target and renamed only when the whole run has succeeded, so a failed command leaves
nothing at any output path (:mod:`skyshared.outputs`, shared with skyrm).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.json as pajson
import pyarrow.parquet as pq
from skyshared import outputs as _outputs
from skyshared.hub import hub_access, hub_id, install_hint
from skyshared.jsonrows import (
    BAD_ROWS_SCHEMA,
    BadRow,
    JsonError,
    bad_rows_table,
    check_utf8,
    read_json_rows,
    table_fits,
)

from skyfilter import _core
from skyfilter.schema import expected_kinds

__all__ = [
    "InputError",
    "RowReading",
    "BAD_ROWS_SCHEMA",
    "write_bad_rows",
    "Source",
    "open_source",
    "input_specs",
    "open_sources",
    "refuse_repeated",
    "distinct_names",
    "check_sources",
    "table_source",
    "read_table",
    "AtomicWriters",
    "output_format",
    "check_outputs",
    "OutputError",
    "iter_batches",
    "take_batch",
    "worker_threads",
]

DEFAULT_BATCH_ROWS = 65_536
# Parquet outputs: rows per row group, and the size up to which a column chunk keeps its dictionary (see _Writer).
PARQUET_ROW_GROUP_ROWS = 65_536
PARQUET_DICTIONARY_BYTES = 16 << 20
OutputError = _outputs.OutputError


class InputError(ValueError):
    """Input that cannot be read: the message names the file, and the row and column where known."""


@dataclass
class Source:
    """One input: its name (for messages and the ``source`` column), schema, rows and batches."""

    name: str
    schema: pa.Schema
    num_rows: int
    _batches: Callable[[int, list[str] | None, bool], Iterator[pa.RecordBatch]] = field(repr=False)
    #: Rows that could not be read (JSON files), set apart; :meth:`batches` leaves them out.
    bad_rows: list[BadRow] = field(default_factory=list, repr=False)
    #: The input row of each row of :meth:`batches` where bad rows were left out (None: the same numbers).
    row_numbers: np.ndarray | None = field(default=None, repr=False)
    #: Reads rows [start, stop) without the rows before them (parquet: only the row groups that hold them).
    _between: Callable[[int, int, int, list[str] | None, bool], Iterator[pa.RecordBatch]] | None = field(
        default=None, repr=False
    )

    @property
    def rows_in(self) -> int:
        """Every row of the input: those read and the bad rows."""
        return self.num_rows + len(self.bad_rows)

    def input_rows(self, positions: np.ndarray) -> np.ndarray:
        """The input's 0-based row numbers of rows at ``positions`` of :meth:`batches`."""
        positions = np.asarray(positions, dtype=np.int64)
        return positions if self.row_numbers is None else self.row_numbers[positions]

    def batches(
        self, batch_rows: int = DEFAULT_BATCH_ROWS, columns: list[str] | None = None, *, views: bool = False
    ) -> Iterator[pa.RecordBatch]:
        """The rows in order, in batches of at most ``batch_rows``, with all columns or only the named
        (top-level) ones, which parquet then does not read at all; may be called again.

        With ``views``, top-level string columns may come back as string_view columns over the decoded pages
        (parquet decodes them without copying the text): for a reader that writes some rows, taken with
        :func:`take_batch`."""
        yield from self._batches(batch_rows, columns, views)

    def batches_between(
        self,
        start: int,
        stop: int,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        columns: list[str] | None = None,
        *,
        views: bool = False,
    ) -> Iterator[pa.RecordBatch]:
        """The rows at positions [start, stop) of :meth:`batches`, in batches of at most ``batch_rows``: one piece
        of the input, for an engine that reads a file in pieces on several machines."""
        if self._between is not None:
            yield from self._between(start, stop, batch_rows, columns, views)
            return
        at = 0
        for batch in self.batches(batch_rows, columns, views=views):
            low, high = max(start - at, 0), min(stop - at, batch.num_rows)
            if high > low:
                yield batch.slice(low, high - low)
            at += batch.num_rows
            if at >= stop:
                return


@dataclass(frozen=True)
class RowReading:
    """How the rows of an input are read: the layout (or prompt column) whose columns say which JSON kinds a value
    may have, whether a row that cannot be read is set apart as a bad row (``keep_bad``; else it is an error
    naming file, line and column), and whether an input without rows is accepted (``allow_empty``)."""

    layout: str | None = None
    prompt_column: str | None = None
    keep_bad: bool = False
    allow_empty: bool = False


def _suffixes(path: Path) -> list[str]:
    return [s.lower() for s in path.suffixes]


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if _suffixes(path)[-1:] == [".gz"] else data


def _json_source(path: Path, data: bytes, reading: RowReading) -> Source:
    """A JSON Lines file or JSON array: Arrow reads a JSON Lines file whose rows it can type alike; otherwise (and
    for a JSON array) ``skyshared.jsonrows`` reads the rows and sets apart those the layout cannot read."""
    try:
        text = check_utf8(str(path), data)
    except JsonError as e:
        raise InputError(str(e)) from None

    def expected(names: list[str]) -> dict[str, tuple[str, ...]]:
        return expected_kinds(names, reading.layout, reading.prompt_column)

    if not text.lstrip().startswith("[") and text.strip():
        for block_size in (16 << 20, len(data) + 1):
            try:
                table = pajson.read_json(io.BytesIO(data), read_options=pajson.ReadOptions(block_size=block_size))
            except pa.ArrowInvalid as e:
                if "straddling" not in str(e) or block_size == len(data) + 1:
                    break  # rows Arrow cannot read or type alike: judged row by row below
                continue
            if table_fits(table, expected):
                return table_source(path.name, table)
            break  # a column of a kind the layout does not read (every `chosen` a boolean): judged row by row
    try:
        rows = read_json_rows(str(path), data, expected)
    except JsonError as e:
        raise InputError(str(e)) from None
    if rows.bad and not reading.keep_bad:
        raise InputError(f"{rows.bad[0].message(str(path))} (--bad-rows FILE, bad_rows=FILE in Python, sets such rows "
                         "apart and reads on)")  # fmt: skip
    source = table_source(path.name, rows.table)
    if rows.bad:
        source.bad_rows, source.row_numbers = rows.bad, rows.rows
    return source


def _csv_table(path: Path, delimiter: str, reading: RowReading) -> pa.Table:
    """A CSV file with its columns' types guessed (scores as numbers), except where the guess would change the text:
    the columns the layout reads as text (answers such as 4 and 5 of a maths pair) and whole-number columns with
    a value that is not written as its number (the zero-padded id 00123), which keep the file's text as it is."""
    data = _read_bytes(path)
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    guessed = pacsv.read_csv(io.BytesIO(data), parse_options=parse)
    texts = set(expected_kinds(guessed.column_names, reading.layout, reading.prompt_column))
    kept = [
        name
        for name, column in zip(guessed.column_names, guessed.columns, strict=True)
        if not pa.types.is_string(column.type) and (name in texts or pa.types.is_integer(column.type))
    ]
    if not kept:
        return guessed
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(kept, pa.string()))
    as_text = pacsv.read_csv(io.BytesIO(data), parse_options=parse, convert_options=convert)
    for name in kept:
        text, column = as_text.column(name), guessed.column(name)
        same = pc.or_kleene(pc.is_null(column), pc.equal(pc.utf8_trim_whitespace(text), column.cast(pa.string())))
        if name in texts or not pc.all(same).as_py():
            guessed = guessed.set_column(guessed.column_names.index(name), name, text)
    return guessed


def read_table(path: str | os.PathLike, *, bad_rows: str | os.PathLike | None = None) -> pa.Table:
    """Reads a whole file (any supported format) into a table. A JSON row that cannot be read as the file's layout
    (a boolean answer, a line that is not an object) stops it with one line naming file, line and column, or with
    ``bad_rows`` goes to that file (:data:`BAD_ROWS_SCHEMA`: ``input_file``, ``input_row``, ``line``, ``reason``)
    and is left out."""
    if bad_rows is not None:
        check_outputs([path], {"bad_rows": bad_rows})
    source = open_source(str(path), reading=RowReading(keep_bad=bad_rows is not None))
    table = pa.Table.from_batches(list(source.batches()), schema=source.schema)
    if bad_rows is not None:
        with AtomicWriters({"bad_rows": bad_rows}) as writers:
            write_bad_rows(writers, "bad_rows", [source])
    return table


def demo_file(name: str) -> str:
    """The path of a demo file that ships with the package (``skyfilter/data``)."""
    return str(resources.files("skyfilter") / "data" / name)


def table_source(name: str, table: pa.Table) -> Source:
    """An in-memory table as a source named ``name``."""

    def batches(rows: int, columns: list[str] | None, views: bool) -> Iterator[pa.RecordBatch]:
        yield from (table if columns is None else table.select(columns)).to_batches(max_chunksize=rows)

    return Source(name, table.schema, table.num_rows, batches)


def _parquet_source(path: Path) -> Source:
    try:
        meta = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: not a readable parquet file ({e})") from None
    file_schema = meta.schema_arrow

    def decode(
        rows: int, columns: list[str] | None, views: bool, groups: tuple[int, int] | None = None
    ) -> Iterator[pa.RecordBatch]:
        # Decoded in Rust, a row group per core at a time (about 1.6x pyarrow's reader on long texts), then
        # given exactly the schema pyarrow reads, so that every reader of the project sees the same types
        # (string columns decoded as views stay views). The decoder returns the columns in file order; they
        # are handed out in the order asked for.
        schema = file_schema if columns is None else pa.schema([f for f in file_schema if f.name in columns])
        if views:
            schema = pa.schema([f.with_type(pa.string_view()) if f.type == pa.string() else f for f in schema])
        threads = worker_threads(None)
        try:
            for batch in _core.ParquetBatches(
                str(path), columns, batch_rows=rows, threads=threads, views=views, row_groups=groups
            ):
                batch = _conform(batch, schema)
                yield batch if columns is None or batch.schema.names == columns else batch.select(columns)
        except _core.SkyfilterError as e:
            if "utf-8" in str(e).lower():
                raise InputError(_locate_invalid_utf8(path, columns) or f"{path}: text is not valid UTF-8") from None
            raise InputError(f"{path}: not a readable parquet file ({e})") from None

    def batches(rows: int, columns: list[str] | None, views: bool) -> Iterator[pa.RecordBatch]:
        yield from decode(rows, columns, views)

    def between(start: int, stop: int, rows: int, columns: list[str] | None, views: bool) -> Iterator[pa.RecordBatch]:
        # Only the row groups that hold the rows are decoded.
        groups, at = [], 0
        for g in range(meta.metadata.num_row_groups):
            n = meta.metadata.row_group(g).num_rows
            if at + n > start and at < stop:
                groups.append((g, at))
            at += n
        if not groups:
            return
        at = groups[0][1]
        for batch in decode(rows, columns, views, (groups[0][0], groups[-1][0] + 1)):
            low, high = max(start - at, 0), min(stop - at, batch.num_rows)
            if high > low:
                yield batch.slice(low, high - low)
            at += batch.num_rows

    return Source(path.name, file_schema, meta.metadata.num_rows, batches, _between=between)


def _locate_invalid_utf8(path: Path, columns: list[str] | None) -> str | None:
    """The first column and row of a parquet file with invalid UTF-8 text, as a message (pyarrow reads such
    text without checking; a slice of a column fails full validation when it holds an invalid row)."""

    def invalid(array: pa.Array) -> bool:
        try:
            pa.concat_arrays([array]).validate(full=True)  # a compact copy: only the slice's values are checked
        except pa.ArrowInvalid:
            return True
        return False

    offset = 0
    with pq.ParquetFile(path, pre_buffer=False) as f:
        for batch in f.iter_batches(batch_size=65_536, columns=columns):
            for name, column in zip(batch.schema.names, batch.columns, strict=True):
                if not invalid(column):
                    continue
                low, high = 0, len(column)  # the first invalid row lies in [low, high)
                while high - low > 1:
                    mid = (low + high) // 2
                    low, high = (low, mid) if invalid(column.slice(low, mid - low)) else (mid, high)
                return f"{path}, column {name}: row {offset + low} (0-based): text is not valid UTF-8"
            offset += batch.num_rows
    return None


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with ``schema`` (same columns; types cast where the two readers differ)."""
    if batch.schema.equals(schema):
        return batch
    if batch.schema.names != schema.names:
        raise InputError(f"columns {batch.schema.names} where {schema.names} were expected")
    if batch.schema.types == schema.types:
        return pa.RecordBatch.from_arrays(batch.columns, schema=schema)
    return batch.cast(schema)


def _ipc_source(path: Path) -> Source:
    try:
        with pa.memory_map(str(path)) as m:
            reader = ipc.open_file(m)
            schema, n = reader.schema, sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    except pa.ArrowInvalid:  # not the file format: the stream format, read whole
        try:
            with pa.memory_map(str(path)) as m:
                return table_source(path.name, ipc.open_stream(m).read_all())
        except pa.ArrowInvalid as e:
            raise InputError(f"{path}: not a readable Arrow IPC file ({e})") from None

    def batches(rows: int, columns: list[str] | None, views: bool) -> Iterator[pa.RecordBatch]:
        with pa.memory_map(str(path)) as m:
            reader = ipc.open_file(m)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                batch = batch if columns is None else batch.select(columns)
                yield from pa.Table.from_batches([batch]).to_batches(max_chunksize=rows)

    return Source(path.name, schema, n, batches)


def _hub_source(spec: str, split: str | None) -> Source:
    try:
        import datasets
    except ImportError:
        raise InputError(
            f"{spec}: no such file; loading it as a Hugging Face dataset needs the `datasets` package "
            f"({install_hint('datasets')})"
        ) from None
    split = split or "train"
    with hub_access() as offline:
        try:
            dataset = datasets.load_dataset(spec, split=split)
        except Exception as e:  # datasets raises many types for network, cache and naming problems
            where = "the local cache (the hub cannot be reached)" if offline else "the Hugging Face hub or its cache"
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise InputError(
                f"{spec}: could not load split {split!r} from {where}, and it is not a local file "
                f"({type(e).__name__}: {first}). Download the files and pass their paths instead."
            ) from None
    return table_source(f"{spec}:{split}", dataset.data.table)


def open_source(spec: str, split: str | None = None, reading: RowReading = RowReading()) -> Source:
    """Opens a file path (by suffix) or, when no such file exists, a Hugging Face dataset id; ``reading`` says
    what becomes of rows that cannot be read."""
    path = Path(spec)
    if not path.exists():
        if hub_id(spec):  # data/x.parquet is a missing file, not a hub id
            return _hub_source(spec, split)
        raise InputError(f"{spec}: no such file")
    if path.is_dir():
        raise InputError(f"{spec}: is a directory; pass the data files themselves")
    suffixes = _suffixes(path)
    kind = suffixes[-2] if suffixes[-1:] == [".gz"] and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if kind == ".parquet":
        return _parquet_source(path)
    if kind in (".arrow", ".feather", ".ipc"):
        return _ipc_source(path)
    if kind in (".jsonl", ".ndjson", ".json"):
        return _json_source(path, _read_bytes(path), reading)
    if kind in (".csv", ".tsv"):
        try:
            return table_source(path.name, _csv_table(path, "\t" if kind == ".tsv" else ",", reading))
        except pa.ArrowInvalid as e:
            raise InputError(f"{path}: {e}") from None
    raise InputError(f"{spec}: unknown format {kind or '(no suffix)'}; use parquet, arrow, jsonl, json or csv")


def iter_batches(
    sources: list[Source],
    batch_rows: int,
    desc: str,
    progress: bool | None,
    columns: list[str] | None = None,
    *,
    views: bool = False,
) -> Iterator[tuple[Source, int, pa.RecordBatch]]:
    """Every batch of every source (all columns, or the named ones; ``views``: see :meth:`Source.batches`) as
    ``(source, offset of the batch in its source, batch)``, with a progress bar over all rows
    (``progress=None``: a bar on a terminal only)."""
    if not (_on_terminal(sys.stderr) if progress is None else progress):
        for source in sources:  # no bar: tqdm is not even imported (0.03 s of a short command's start-up)
            yield from _source_batches(source, batch_rows, columns, views)
        return
    from tqdm.auto import tqdm

    with tqdm(total=sum(s.num_rows for s in sources), unit="rows", unit_scale=True, desc=desc) as bar:
        for source in sources:
            for at in _source_batches(source, batch_rows, columns, views):
                yield at
                bar.update(at[2].num_rows)


def _on_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _source_batches(
    source: Source, batch_rows: int, columns: list[str] | None, views: bool
) -> Iterator[tuple[Source, int, pa.RecordBatch]]:
    offset = 0
    for batch in source.batches(batch_rows, columns, views=views):
        yield source, offset, batch
        offset += batch.num_rows


def take_batch(batch: pa.RecordBatch, rows: np.ndarray, schema: pa.Schema) -> pa.RecordBatch:
    """The rows ``rows`` (row numbers) of a batch read with ``views`` (:meth:`Source.batches`), with the
    source's ``schema``: string_view columns that it types as strings are copied into compact string columns,
    those it types as string_view stay views over the same buffers (pyarrow has no take for string views),
    the others are taken by pyarrow."""
    rows = pa.array(np.asarray(rows, dtype=np.uint64), type=pa.uint64())

    def take(f: pa.Field, column: pa.Array) -> pa.Array:
        if not pa.types.is_string_view(column.type):
            return column.take(rows)
        return _core.string_rows(column, rows) if f.type == pa.string() else _core.string_views(column, rows)

    columns = [take(f, column) for f, column in zip(schema, batch.columns, strict=True)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def kept_rows(batch: pa.RecordBatch, keep: np.ndarray) -> pa.Table:
    """The rows of ``batch`` where ``keep`` is true, in order. Where they lie in long runs (a contamination run
    keeps nearly every row) the result is slices of the batch: no text is copied, where a ``filter`` would copy
    every kept text into new memory (0.16 s per million RMB prompts once that memory is warm, 2 s when it is
    not). Where runs are short (32 rows or fewer on average) one copy taken by row number, which then writes
    faster than the many short slices."""
    edges = np.flatnonzero(np.diff(keep.astype(np.int8), prepend=np.int8(0), append=np.int8(0)))
    starts, stops = edges[::2], edges[1::2]
    if len(starts) and (stops - starts).sum() <= 32 * len(starts):
        return pa.Table.from_batches([batch.take(pa.array(np.flatnonzero(keep)))])
    slices = [batch.slice(a, b - a) for a, b in zip(starts, stops, strict=True)]
    return pa.Table.from_batches(slices, schema=batch.schema)


def take_rows(table: pa.Table, rows: np.ndarray, *, views: bool = False) -> pa.Table:
    """The rows ``rows`` (ascending row numbers) of ``table``. Top-level string columns are copied, or with
    ``views=True`` come back as string_view columns that share the input's text buffers (16 bytes a row are
    written; the input's buffers live as long as the result). string_view columns are always taken that way,
    as pyarrow has no take for them."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) and (rows[0] < 0 or rows[-1] >= table.num_rows or (np.diff(rows) < 0).any()):
        raise ValueError(f"rows must be ascending row numbers below {table.num_rows:,}")
    rows = rows.astype(np.uint64)
    columns, fields = [], []
    for f, column in zip(table.schema, table.columns, strict=True):
        is_text = pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        if pa.types.is_string_view(f.type) or (views and is_text):
            ends = np.cumsum([len(c) for c in column.chunks], dtype=np.uint64)
            cuts = np.searchsorted(rows, ends, side="left")
            chunks, first = [], 0
            for chunk, chunk_end, cut in zip(column.chunks, ends, cuts, strict=True):
                local = rows[first:cut] - (chunk_end - np.uint64(len(chunk)))
                chunks.append(_core.string_views(chunk, pa.array(local, type=pa.uint64())))
                first = cut
            columns.append(pa.chunked_array(chunks, type=pa.string_view()))
            fields.append(f.with_type(pa.string_view()))
        else:
            columns.append(column.take(pa.array(rows)))
            fields.append(f)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=table.schema.metadata))


def worker_threads(threads: int | None) -> int:
    """Threads for the Rust kernels: as given, else SKYFILTER_THREADS, else 0 (all cores)."""
    if threads is not None:
        return threads
    return int(os.environ.get("SKYFILTER_THREADS", "0") or 0)


def input_specs(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The inputs of a run as a list of strings: one path (a ``str`` or a ``pathlib.Path``) or a sequence of them;
    anything else (a table: the row functions take those) is a TypeError."""
    if isinstance(inputs, (str, os.PathLike)):
        return [os.fspath(inputs)]
    if isinstance(inputs, Sequence) and all(isinstance(i, (str, os.PathLike)) for i in inputs):
        return [os.fspath(i) for i in inputs]
    raise TypeError(f"inputs must be a path or a list of paths (files or hub dataset ids), not a "
                    f"{type(inputs).__name__}; tables go to the row functions (contaminate, dedup_rows, "
                    "select_rows)")  # fmt: skip


def open_sources(
    specs: list[str] | tuple[str, ...],
    split: str | None,
    added_columns: tuple[str, ...],
    reading: RowReading = RowReading(),
) -> list[Source]:
    """Opens inputs that will be written to one output: same columns, none that the output adds, rows in each
    (unless ``reading.allow_empty``). Each is named by its file name, or by its path as given where two names
    are the same (the outputs' ``input_file`` and the reports tell them apart); one file given twice is refused."""
    refuse_repeated(specs)
    sources = [open_source(spec, split, reading) for spec in specs]
    for source, name in zip(sources, distinct_names([s.name for s in sources], specs), strict=True):
        source.name = name
    check_sources(sources, added_columns, reading)
    return sources


def refuse_repeated(specs: Sequence[str]) -> None:
    """An InputError for a file given twice (its rows would be read, and written, twice)."""
    given = Counter(Path(spec).resolve() if Path(spec).exists() else spec for spec in specs)
    twice = [spec for spec, n in given.items() if n > 1]
    if twice:
        raise InputError(f"{twice[0]}: given twice as an input")


def distinct_names(names: Sequence[str], specs: Sequence[str]) -> list[str]:
    """The inputs' names (their file names) where those differ, else the paths as given, so that the ``input_file``
    of every output and the reports' counts per input tell two ``train.jsonl`` apart."""
    seen = Counter(names)
    return [spec if seen[name] > 1 else name for name, spec in zip(names, specs, strict=True)]


def check_sources(sources: Sequence, added_columns: tuple[str, ...], reading: RowReading = RowReading()) -> None:
    """The checks of inputs written to one output (anything with ``name``, ``schema`` and ``rows_in``, as
    :class:`Source`): at least one, rows in each (unless ``reading.allow_empty``), the same columns, none that the
    output adds."""
    if not sources:
        raise InputError("no input given")
    for s in sources:
        if not s.rows_in and not reading.allow_empty:
            raise InputError(f"{s.name}: no rows (an empty input; pass --allow-empty to accept it)")
    for s in sources[1:]:
        if s.schema != sources[0].schema:
            raise InputError(
                f"{s.name}: columns differ from {sources[0].name} ({s.schema.names} vs {sources[0].schema.names}); "
                "run them separately"
            )
    clash = [c for c in added_columns if c in sources[0].schema.names]
    if clash:
        raise InputError(f"{sources[0].name}: already has column(s) {clash}, which the output adds; rename them first")


# ---------------------------------------------------------------------------------------------- outputs


#: The bad-rows output (``--bad-rows``): where each row comes from, why it could not be read, and its JSON text.
def write_bad_rows(writers: AtomicWriters, key: str, sources: list[Source]) -> int:
    """Writes the bad rows of ``sources`` to output ``key`` (:data:`BAD_ROWS_SCHEMA`); returns how many."""
    writers.set_schema(key, BAD_ROWS_SCHEMA)
    table = bad_rows_table([(s.name, s.bad_rows) for s in sources])
    for batch in table.to_batches():
        writers.write(key, batch)
    return table.num_rows


def check_outputs(
    inputs: Sequence[str | os.PathLike | None],
    outputs: Mapping[str, str | os.PathLike | None],
    reports: Mapping[str, str | os.PathLike | None] | None = None,
) -> None:
    """Fails now, before any work, with one line: a data output (``{flag: path}``) whose suffix names no known
    format, and (:func:`skyshared.outputs.check_outputs`) any output, data or report, that is an input, two on one
    file, or one whose folder cannot be written. A further output is one more entry."""
    for flag, path in outputs.items():
        if path is not None:
            try:
                output_format(path)
            except ValueError as e:
                raise OutputError(f"{flag} {e}") from None
    _outputs.check_outputs({**outputs, **(reports or {})}, inputs)


def output_format(path: str | os.PathLike) -> str:
    """``parquet``, ``arrow`` or ``jsonl`` from a path's suffix."""
    suffix = Path(path).suffix.lower()
    formats = {".parquet": "parquet", ".arrow": "arrow", ".feather": "arrow", ".jsonl": "jsonl", ".ndjson": "jsonl"}
    if suffix not in formats:
        raise ValueError(f"{path}: unknown output format {suffix!r}; use .parquet, .arrow or .jsonl")
    return formats[suffix]


class _Writer:
    """One output, written by a background thread (Arrow encodes and compresses without the GIL, so the
    next batch is read meanwhile); at most ``_QUEUE`` writes wait, and errors surface at the next call.

    Parquet rows are gathered into row groups of ``PARQUET_ROW_GROUP_ROWS`` rows whatever the size of the
    batches (a selection that keeps 10% of each batch would write small groups), and a column chunk keeps its
    dictionary up to ``PARQUET_DICTIONARY_BYTES``: repeated texts (several pairs per prompt) are then stored
    once per row group, where pyarrow's default 1 MiB gives up after a few hundred long texts. On unique texts
    this limit costs nothing, where 64 MiB cost 40% (bench/select.py; docs/benchmarks.md, selection)."""

    _QUEUE = 2

    def __init__(self, target: Path, tmp: Path):
        self.target = target
        self.format = output_format(target)
        self.tmp = tmp
        self.rows = 0
        self._sink = None
        self._file = None  # the temporary file, opened here: closed even when the writer's close fails
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skyfilter-writer")
        self._pending: deque[Future] = deque()
        self._held: list[pa.RecordBatch] = []  # parquet rows not yet a whole row group
        self._held_rows = 0

    def write(self, rows: pa.RecordBatch | pa.Table) -> None:
        with _outputs.writing(self.target):  # a full disk: one line naming the output
            if self._sink is None:
                self._open(rows.schema)
            self.rows += rows.num_rows
            if self.format != "parquet":
                self._submit(rows)
                return
            self._held.extend(rows.to_batches() if isinstance(rows, pa.Table) else [rows])
            self._held_rows += rows.num_rows
            if self._held_rows >= PARQUET_ROW_GROUP_ROWS:
                self._flush(whole_groups_only=True)

    def _flush(self, whole_groups_only: bool = False) -> None:
        """Writes the held rows: all, or only whole row groups (the rest stays held)."""
        if not self._held:
            return
        rows = pa.Table.from_batches(self._held, schema=self._held[0].schema)
        cut = rows.num_rows - rows.num_rows % PARQUET_ROW_GROUP_ROWS if whole_groups_only else rows.num_rows
        if cut:
            self._submit(rows.slice(0, cut))  # write_table cuts it into whole row groups
        self._held, self._held_rows = rows.slice(cut).to_batches(), rows.num_rows - cut

    def _submit(self, rows: pa.RecordBatch | pa.Table) -> None:
        self._pending.append(self._thread.submit(self._write, rows))
        while len(self._pending) > self._QUEUE:
            self._pending.popleft().result()

    def _write(self, rows: pa.RecordBatch | pa.Table) -> None:
        if self.format == "jsonl":
            for row in rows.to_pylist():
                self._sink.write(json.dumps(row, ensure_ascii=False, default=str))  # type: ignore[union-attr]
                self._sink.write("\n")  # type: ignore[union-attr]
        elif self.format == "parquet":
            self._sink.write_table(rows, row_group_size=PARQUET_ROW_GROUP_ROWS)  # type: ignore[union-attr]
        else:
            self._sink.write(rows)  # type: ignore[union-attr]

    def _open(self, schema: pa.Schema) -> None:
        if self.format == "jsonl":
            self._sink = self._file = open(self.tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()/discard()
            return
        self._file = pa.OSFile(str(self.tmp), "wb")
        if self.format == "parquet":
            self._sink = pq.ParquetWriter(self._file, schema, dictionary_pagesize_limit=PARQUET_DICTIONARY_BYTES)
        else:
            self._sink = ipc.new_file(self._file, schema)

    def close(self, schema: pa.Schema) -> None:
        with _outputs.writing(self.target):
            self._flush()
            while self._pending:
                self._pending.popleft().result()
            self._thread.shutdown()
            if self._sink is None:
                self._open(schema)  # no rows: still write a valid, empty file
            self._sink.close()  # type: ignore[union-attr]
            self._file.close()  # type: ignore[union-attr]

    def discard(self) -> None:
        """Stops writing; the temporary file is removed with the others (:class:`skyshared.outputs.Staged`)."""
        for future in self._pending:
            future.cancel()
        self._thread.shutdown(wait=True)
        for handle in (self._sink, self._file):  # the file too: a full disk fails the writer's close, and an open
            if handle is not None:  # descriptor would hold the removed file's space
                with contextlib.suppress(Exception):  # already failing; the temporary file goes anyway
                    handle.close()


class AtomicWriters:
    """Writers for several outputs that all appear, renamed into place, only if the block succeeds.

    Use as a context manager: ``writers.write(key, batch)`` inside, ``writers.set_schema(key, schema)``
    for outputs that may stay empty; on an exception every temporary file (and every folder made for the
    outputs) is removed. ``staged``: the outputs join these (committed or discarded with them).
    """

    def __init__(self, targets: dict[str, str | os.PathLike | None], staged: _outputs.Staged | None = None):
        self._staged = staged if staged is not None else _outputs.Staged()
        self._writers = {k: _Writer(Path(p), self._staged.path(p)) for k, p in targets.items() if p is not None}
        self._schemas: dict[str, pa.Schema] = {}
        self._extra: dict[Path, str] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._writers

    def set_schema(self, key: str, schema: pa.Schema) -> None:
        self._schemas[key] = schema

    def write(self, key: str, rows: pa.RecordBatch | pa.Table) -> None:
        if key in self._writers:
            self._writers[key].write(rows)

    def rows(self, key: str) -> int:
        return self._writers[key].rows if key in self._writers else 0

    def write_text(self, path: str | os.PathLike, text: str) -> None:
        """A small text output (a report) that is renamed into place with the others."""
        self._extra[Path(path)] = text

    def __enter__(self) -> AtomicWriters:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            for w in self._writers.values():
                w.discard()
            self._staged.discard()
            return
        try:
            for key, w in self._writers.items():
                w.close(self._schemas.get(key, pa.schema([])))
            for path, text in self._extra.items():
                self._staged.write_text(path, text)
            self._staged.commit()
        except BaseException:
            for w in self._writers.values():
                w.discard()
            self._staged.discard()
            raise

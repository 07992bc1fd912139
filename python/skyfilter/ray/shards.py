"""Shards in and shards out for the ray engine, every row with its identity.

Inputs: files, folders (their data files, sorted by path) and globs, local or any URI pyarrow's filesystems open
(``s3://``, ``gs://``, ``hdfs://``, ``file://``). Each file is read with the local engine's reader
(:func:`skyfilter.io.open_source`), on a worker, so a bad row gets the same message or the same bad-rows entry as
on one machine. A row's identity is its *position*: the inputs in the order given (a folder's or a glob's files
sorted by path), then the readable rows of each file in order, counted from 0 over all inputs, as the local
engine counts rows for ``cluster_id``. :func:`plan` opens every file once (rows, columns, bad rows; JSON and CSV
files on the cluster) and cuts the inputs into *pieces* of at most ``piece_rows`` rows; a piece knows its file and
its first position, so its rows carry their identity through every shuffle, whatever the number of workers or
blocks.

Outputs: a data output is a folder of parquet shards ``part-00000.parquet``, ... in the order of the rows' positions.
Workers write one shard per piece under a name made of the piece's identity (a retried task writes the same file
again); :meth:`Outputs.commit` checks that every row is accounted for, numbers the shards in order and renames the
folders into place with the report, so a failed run leaves no output folder (:class:`skyshared.outputs.Staged`).
Outputs on a cluster must be on storage every node writes to (a shared file system).
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from skyshared import outputs as _outputs
from skyshared.hub import hub_id
from skyshared.jsonrows import BAD_ROWS_SCHEMA, bad_rows_table

from skyfilter import _core
from skyfilter.io import (
    PARQUET_DICTIONARY_BYTES,
    PARQUET_ROW_GROUP_ROWS,
    AtomicWriters,
    InputError,
    OutputError,
    RowReading,
    Source,
    check_sources,
    distinct_names,
    open_source,
    output_format,
    refuse_repeated,
    table_source,
)
from skyfilter.schema import SchemaError

__all__ = [
    "Shard",
    "Plan",
    "Piece",
    "expand_inputs",
    "plan",
    "plan_dataset",
    "read_piece",
    "write_shard",
    "Outputs",
    "check_ray_outputs",
    "run_pieces",
    "PieceWorker",
    "piece_tasks",
    "gather",
    "pieces_of",
    "shuffle",
    "USER_ERRORS",
]

#: Errors that are the input's fault: a worker returns their message (one line) instead of failing the task.
USER_ERRORS = (InputError, SchemaError, _core.SkyfilterError, OutputError, OSError, ValueError)

_DATA_SUFFIXES = (".parquet", ".arrow", ".feather", ".ipc", ".jsonl", ".ndjson", ".json", ".csv", ".tsv")


def _is_data_file(name: str) -> bool:
    name = name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return not Path(name).name.startswith((".", "_")) and name.endswith(_DATA_SUFFIXES)


def _is_uri(spec: str) -> bool:
    return "://" in spec


def _expand_uri(spec: str) -> list[str]:
    from pyarrow import fs as pafs

    scheme, _, rest = spec.partition("://")
    pattern = any(c in rest for c in "*?[")
    base = rest.rsplit("/", 1)[0] if pattern else rest
    try:
        filesystem, path = pafs.FileSystem.from_uri(f"{scheme}://{base}")
        info = filesystem.get_file_info(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{spec}: cannot open ({e})") from None
    if not pattern and info.type == pafs.FileType.File:
        return [spec]
    if info.type != pafs.FileType.Directory:
        raise InputError(f"{spec}: no such file or folder")
    prefix = spec[: len(spec) - len(rest)] + base.rstrip("/")
    found = filesystem.get_file_info(pafs.FileSelector(path, recursive=not pattern))
    names = sorted(f.path[len(path.rstrip("/")) + 1 :] for f in found if f.type == pafs.FileType.File)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, rest.rsplit("/", 1)[-1])]
    files = [f"{prefix}/{n}" for n in names if _is_data_file(n)]
    if not files:
        raise InputError(f"{spec}: no data files (parquet, jsonl, json, arrow, csv) found")
    return files


def expand_inputs(specs: Sequence[str]) -> list[str]:
    """The input files, in order: each file as given, a folder's data files and a glob's matches sorted by path."""
    files: list[str] = []
    for spec in specs:
        spec = str(spec)
        if _is_uri(spec):
            files += _expand_uri(spec)
        elif any(c in spec for c in "*?["):
            matches = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            if not matches:
                raise InputError(f"{spec}: no file matches")
            files += matches
        elif os.path.isdir(spec):
            found = sorted(
                str(p) for p in Path(spec).rglob("*") if p.is_file() and _is_data_file(str(p.relative_to(spec)))
            )
            if not found:
                raise InputError(f"{spec}: no data files (parquet, jsonl, json, arrow, csv) in this folder")
            files += found
        elif not os.path.exists(spec) and not hub_id(spec):
            raise InputError(f"{spec}: no such file")
        else:
            files.append(spec)  # open_source says what else is wrong with it, if anything
    return files


# ----------------------------------------------------------------------------------------------- reading


@contextlib.contextmanager
def _local_copy(spec: str) -> Iterator[str]:
    """A local path for the file: itself, or a copy of a remote file (under its own name) while the block runs."""
    if not _is_uri(spec) or spec.startswith("file://"):
        yield spec.removeprefix("file://")
        return
    from pyarrow import fs as pafs

    filesystem, path = pafs.FileSystem.from_uri(spec)
    with tempfile.TemporaryDirectory(prefix="skyfilter-") as folder:
        local = os.path.join(folder, os.path.basename(path))
        with filesystem.open_input_stream(path) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, length=8 << 20)
        yield local


class _OpenFiles:
    """The last files a worker process opened (a JSON file is parsed once per worker, not once per piece)."""

    def __init__(self, size: int = 2):
        self.size = size
        self.open: dict[tuple[str, RowReading], tuple[Source, contextlib.ExitStack]] = {}

    def get(self, spec, reading: RowReading, name: str = "") -> Source:
        """The source of a file spec, or of a block of a dataset (an object reference to an Arrow table), named
        ``name`` when given (the plan's name of the input: :func:`skyfilter.io.distinct_names`)."""
        key = (spec if isinstance(spec, str) else spec.hex(), reading)
        if key not in self.open:
            while len(self.open) >= self.size:
                _, stack = self.open.pop(next(iter(self.open)))
                stack.close()
            stack = contextlib.ExitStack()
            try:
                if isinstance(spec, str):
                    source = open_source(stack.enter_context(_local_copy(spec)), reading=reading)
                    source.name = name or source.name
                else:
                    import ray

                    source = table_source(name, ray.get(spec))
                self.open[key] = (source, stack)
            except BaseException:
                stack.close()
                raise
        return self.open[key][0]


_FILES = _OpenFiles()


@dataclass(frozen=True)
class Shard:
    """One input file: ``index`` in the inputs, the ``spec`` it is read from (a path or URI, or for a block of a
    dataset an object reference to its table), its ``name`` (the ``source`` and ``input_file`` of its rows), readable
    ``rows``, ``rows_in`` (with the bad rows), the position of its first row and its columns."""

    index: int
    spec: object
    name: str
    rows: int
    rows_in: int
    start: int
    schema: pa.Schema


@dataclass(frozen=True)
class Piece:
    """Rows [start, stop) of shard ``file`` (positions ``shard.start + start`` onwards)."""

    file: int
    start: int
    stop: int

    @property
    def key(self) -> str:
        return f"{self.file:06d}-{self.start:012d}"


@dataclass
class Plan:
    """The inputs as shards and pieces, and the rows that could not be read (:data:`BAD_ROWS_SCHEMA`)."""

    shards: list[Shard]
    pieces: list[Piece]
    bad_rows: pa.Table
    reading: RowReading

    @property
    def schema(self) -> pa.Schema:
        return self.shards[0].schema

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)


def _inspect(row: dict, reading: RowReading) -> dict:
    """Opens one input on a worker: its rows, columns and bad rows, or the message of why it cannot be read."""
    out = {"index": row["index"], "error": None, "name": "", "rows": 0, "bad": 0, "schema": b"", "bad_rows": b""}
    try:
        source = _FILES.get(row["spec"], reading)
    except USER_ERRORS as e:
        out["error"] = str(e)
        return out
    bad = bad_rows_table([(source.name, source.bad_rows)])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, BAD_ROWS_SCHEMA) as writer:
        writer.write_table(bad)
    out.update(
        name=source.name,
        rows=source.num_rows,
        bad=len(source.bad_rows),
        schema=source.schema.serialize().to_pybytes(),
        bad_rows=sink.getvalue().to_pybytes(),
    )
    return out


def _named(bad_rows: pa.Table, name: str) -> pa.Table:
    """Bad rows of one input under the plan's name of it."""
    column = pa.array([name] * bad_rows.num_rows, pa.string())
    return bad_rows.set_column(bad_rows.schema.get_field_index("input_file"), "input_file", column)


def _footer_only(spec: str) -> bool:
    """A local file whose rows and columns its footer or header gives (parquet, Arrow IPC)."""
    name = spec.removeprefix("file://").lower()
    return (not _is_uri(spec) or spec.startswith("file://")) and name.endswith(
        (".parquet", ".arrow", ".feather", ".ipc")
    )


def plan(
    ray,
    specs: Sequence[str],
    reading: RowReading,
    added_columns: tuple[str, ...],
    piece_rows: int,
) -> Plan:
    """Opens every input (parquet and Arrow files here, from their footers; the others on the cluster, one task per
    file), makes the local engine's checks with its messages (:func:`skyfilter.io.check_sources`) and cuts the
    inputs into pieces."""
    files = expand_inputs(specs)
    if not files:
        raise InputError("no input given")
    refuse_repeated(files)
    items = [{"index": i, "spec": s} for i, s in enumerate(files)]
    # Parquet and Arrow files are opened here (their footers say it all); files that must be parsed to be
    # counted (JSON, CSV) or copied first (remote ones) are opened on the cluster, one task each.
    here = [item for item in items if _footer_only(item["spec"])]
    there = [item for item in items if not _footer_only(item["spec"])]
    found = [_inspect(item, reading) for item in here]
    if there:
        inspect = ray.remote(_inspect).options(num_cpus=1)
        found += ray.get([inspect.remote(item, reading) for item in there])
    found.sort(key=lambda r: r["index"])
    for r in found:
        if r["error"] is not None:
            raise InputError(r["error"])
    shards, start = [], 0
    names = distinct_names([r["name"] for r in found], files)
    for spec, name, r in zip(files, names, found, strict=True):
        schema = pa.ipc.read_schema(pa.py_buffer(r["schema"]))
        shards.append(Shard(r["index"], spec, name, r["rows"], r["rows"] + r["bad"], start, schema))
        start += r["rows"]
    check_sources(shards, added_columns, reading)
    bad = [_named(pa.ipc.open_stream(pa.py_buffer(r["bad_rows"])).read_all(), name)
           for r, name in zip(found, names, strict=True)]  # fmt: skip
    bad_rows = pa.concat_tables(bad) if bad else BAD_ROWS_SCHEMA.empty_table()
    step = max(1, piece_rows)
    pieces = [Piece(s.index, a, min(a + step, s.rows)) for s in shards for a in range(0, s.rows, step)]
    return Plan(shards, pieces, bad_rows, reading)


def plan_dataset(ray, dataset, name: str, piece_rows: int) -> Plan:
    """A Ray dataset as shards: its blocks in the order ``to_arrow_refs`` gives them (the dataset's order), each
    a shard named ``name``, cut into pieces like files."""
    refs = dataset.to_arrow_refs()
    describe = ray.remote(lambda table: (table.num_rows, table.schema.serialize().to_pybytes()))
    found = ray.get([describe.remote(ref) for ref in refs])
    shards, start = [], 0
    for ref, (rows, schema) in zip(refs, found, strict=True):
        if rows:
            shards.append(Shard(len(shards), ref, name, rows, rows, start, pa.ipc.read_schema(pa.py_buffer(schema))))
            start += rows
    if not shards:
        raise InputError(f"{name}: no rows")
    for s in shards[1:]:
        if s.schema != shards[0].schema:
            raise InputError(f"{name}: its blocks have different columns ({s.schema} vs {shards[0].schema})")
    step = max(1, piece_rows)
    pieces = [Piece(s.index, a, min(a + step, s.rows)) for s in shards for a in range(0, s.rows, step)]
    return Plan(shards, pieces, BAD_ROWS_SCHEMA.empty_table(), RowReading())


def read_piece(
    shard: Shard, piece: Piece, reading: RowReading, columns: list[str] | None = None, *, views: bool = False
):
    """On a worker: the source (for its name and row numbers) and the piece's rows as one batch (all columns, or
    the named ones; ``views``: string columns as views over the decoded pages, see
    :meth:`skyfilter.io.Source.batches`)."""
    source = _FILES.get(shard.spec, reading, shard.name)
    rows = max(1, piece.stop - piece.start)
    batches = list(source.batches_between(piece.start, piece.stop, rows, columns, views=views))
    if len(batches) == 1:
        return source, batches[0]
    schema = batches[0].schema if batches else source.schema
    if not batches and columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    table = pa.Table.from_batches(batches, schema=schema).combine_chunks()
    batch = table.to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], schema=schema)
    return source, batch


# ----------------------------------------------------------------------------------------------- writing


def check_ray_outputs(
    inputs: Sequence[str], folders: Mapping[str, str | None], files: Mapping[str, str | None]
) -> None:
    """Before any work: each data output is a new folder that holds no input and no other output (another folder
    on the same path included); file outputs
    (report, bad rows) as :func:`skyshared.outputs.check_outputs` wants them."""
    local = [s for s in inputs if not _is_uri(str(s))]
    given = {flag: path for flag, path in {**folders, **files}.items() if path is not None}
    for flag, path in folders.items():
        if path is not None:
            others = {f: p for f, p in given.items() if f != flag}
            _outputs.check_folder(flag, path, local, new=True, outputs=others)
    if files.get("--bad-rows") is not None:
        try:
            output_format(files["--bad-rows"])
        except ValueError as e:
            raise OutputError(f"--bad-rows {e}") from None
    _outputs.check_outputs(files, local)


def write_shard(folder: str, piece: Piece, rows: pa.Table | pa.RecordBatch) -> None:
    """On a worker: the rows a piece gives one output, as a shard named by the piece (written whole under a
    temporary name, then renamed, so a retried task replaces it)."""
    if not rows.num_rows:
        return
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_batches([rows])
    target = os.path.join(folder, f"piece-{piece.key}.parquet")
    tmp = f"{target}.tmp-{os.getpid()}"
    pq.write_table(
        table, tmp, row_group_size=PARQUET_ROW_GROUP_ROWS, dictionary_pagesize_limit=PARQUET_DICTIONARY_BYTES
    )
    os.replace(tmp, target)


class Outputs:
    """The outputs of one run: folders of shards (written by workers into a temporary folder each), a bad-rows
    file and a report; all appear at :meth:`commit`, or none (use as a context manager)."""

    def __init__(self, folders: Mapping[str, str | None], files: Mapping[str, str | None]):
        self._staged = _outputs.Staged()
        self.folders: dict[str, tuple[Path, Path]] = {}
        for key, target in folders.items():
            if target is not None:
                tmp = self._staged.path(target)
                tmp.mkdir()
                self.folders[key] = (Path(target), tmp)
        self.files = {k: v for k, v in files.items() if v is not None}

    def __contains__(self, key: str) -> bool:
        return key in self.folders

    def folder(self, key: str) -> str | None:
        """Where workers write the shards of output ``key`` (None: not written)."""
        return str(self.folders[key][1]) if key in self.folders else None

    def commit(
        self, schemas: Mapping[str, pa.Schema], rows: Mapping[str, int], bad_rows: pa.Table, report: str | None
    ) -> None:
        """Checks that each folder holds ``rows[key]`` rows, numbers its shards in order (an output without rows
        gets one empty shard with its columns), writes the bad rows and the report, and renames all into place."""
        for key, (_, tmp) in self.folders.items():
            shards = sorted(p for p in tmp.iterdir() if p.name.startswith("piece-") and p.suffix == ".parquet")
            written = sum(pq.ParquetFile(p).metadata.num_rows for p in shards)
            if written != rows[key]:
                raise RuntimeError(f"{key}: {written:,} rows were written where {rows[key]:,} were decided")
            for stray in tmp.iterdir():
                if stray not in shards:
                    stray.unlink()  # the temporary file of a task that was stopped mid-write
            for i, p in enumerate(shards):
                p.rename(tmp / f"part-{i:05d}.parquet")
            if not shards:
                pq.write_table(schemas[key].empty_table(), tmp / "part-00000.parquet")
        # The bad rows and the report join the folders: all are renamed into place when this block ends.
        with AtomicWriters({"bad": self.files.get("--bad-rows")}, staged=self._staged) as writers:
            writers.set_schema("bad", BAD_ROWS_SCHEMA)
            for batch in bad_rows.to_batches():
                writers.write("bad", batch)
            if report is not None and "--report" in self.files:
                writers.write_text(self.files["--report"], report)

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._staged.discard()


# ----------------------------------------------------------------------------------------------- running


def cluster_cpus(ray) -> int:
    """The CPUs of the cluster (at least 1): the most tasks a stage runs at once."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_pieces(ray, the_plan: Plan, worker: type, job: dict, desc: str) -> list:
    """Runs ``worker(job)`` (a :class:`PieceWorker`) on every piece; returns what it made of each, in the pieces'
    order. The first error in the pieces' order is raised, with the local engine's message."""
    results = gather(ray, piece_tasks(ray, the_plan, worker, job), the_plan, desc)
    for r in results:
        if r["error"][0] is not None:
            raise InputError(str(r["error"][0]))
    return [pickle.loads(r["state"][0]) for r in results]


def pieces_of(items: dict) -> Iterator[Piece]:
    """The pieces a worker gets (columns ``file``, ``start``, ``stop``)."""
    for file, start, stop in zip(items["file"], items["start"], items["stop"], strict=True):
        yield Piece(int(file), int(start), int(stop))


def piece_tasks(ray, the_plan: Plan, worker: type, job: dict, *, returns: int = 1) -> list:
    """One Ray task per piece: ``worker(job)(items)``, the piece as the columns ``file``, ``start``, ``stop`` of
    one row. ``worker`` is a callable class made once per worker process and job (a benchmark index is built
    once per process, not once per piece). The object references of what the tasks return, in the pieces'
    order (a list of ``returns`` references per piece when ``returns`` > 1).

    Plain Ray tasks rather than a Ray Data map: Ray Data's executor adds about 0.1 s a task on a small cluster
    (16 tasks of 0.5 s on 2 CPUs: 5.7 s through ``map_batches``, 4.0 s as tasks), and the passes need no more
    than tasks give: the object store between stages, and a task retried when its worker process dies."""
    shipped = [ray.put(job)]  # wrapped: the tasks get the reference and fetch the job once per process
    name = f"skyfilter.{worker.__name__.lstrip('_')}"  # the task's process title while it runs: ray::skyfilter.*
    task = ray.remote(_call_worker).options(num_cpus=1, num_returns=returns, name=name)
    items = ({"file": [p.file], "start": [p.start], "stop": [p.stop]} for p in the_plan.pieces)
    return [task.remote(item, worker, shipped) for item in items]


def gather(ray, refs: list, the_plan: Plan, desc: str) -> list:
    """The values of ``refs`` (one per piece of the plan), with a progress bar over the pieces' rows when the
    session shows progress."""
    if refs and ray.data.DataContext.get_current().enable_progress_bars:
        from tqdm.auto import tqdm

        rows = {ref: p.stop - p.start for ref, p in zip(refs, the_plan.pieces, strict=True)}
        with tqdm(total=the_plan.rows, desc=desc, unit="rows", unit_scale=True) as bar:
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                bar.update(sum(rows[ref] for ref in done))
    return ray.get(refs)


_WORKER: dict[tuple, object] = {}


def _call_worker(items: dict, worker: type, shipped: list):
    key = (worker, shipped[0].hex())
    if key not in _WORKER:
        import ray

        _WORKER.clear()
        _WORKER[key] = worker(ray.get(shipped[0]))
    return _WORKER[key](items)


class PieceWorker:
    """Base of the engine's workers: ``process(piece)`` for each piece of a batch; a user error becomes the piece's
    ``error`` (one line), anything else fails the task (Ray retries it, then the run fails)."""

    def __init__(self, job: dict):
        self.job = job
        self.shards: list[Shard] = job["shards"]

    def process(self, shard: Shard, piece: Piece):
        raise NotImplementedError

    def __call__(self, items: dict) -> dict:
        out: dict[str, list] = {"file": [], "start": [], "error": [], "state": []}
        for piece in pieces_of(items):
            try:
                state, error = pickle.dumps(self.process(self.shards[piece.file], piece)), None
            except USER_ERRORS as e:
                state, error = b"", str(e)
            out["file"].append(piece.file)
            out["start"].append(piece.start)
            out["error"].append(error)
            out["state"].append(state)
        return out


def _split(block: pa.Table, mapper, kwargs: dict, groups: int) -> list[pa.Table]:
    """The map side of a shuffle, in a task: ``mapper(block, **kwargs)`` cut by its ``group`` column."""
    table = mapper(block, **kwargs)
    group = table["group"].to_numpy()
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(groups + 1))
    # Each part taken apart (not a slice of one table), so that each object holds its own rows only.
    parts = [table.take(pa.array(order[a:b])) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return parts if groups > 1 else parts[0]


def _merge(reducer, kwargs: dict, *parts: pa.Table) -> pa.Table:
    """The reduce side of a shuffle, in a task: ``reducer`` over every row of one group."""
    return reducer(pa.concat_tables(parts), **kwargs)


def shuffle(ray, blocks: list, mapper, reducer, groups: int, mapper_kwargs: dict, reducer_kwargs: dict) -> list:
    """A hash shuffle with Ray tasks: each block is mapped and cut into ``groups`` parts by the ``group`` column
    the mapper adds, each group's parts are reduced together; the reduced tables, on the driver. (Ray Data's
    ``groupby().map_groups()`` sorts the whole dataset first, which costs seconds a stage on a small cluster.)"""
    split = ray.remote(_split).options(num_returns=groups, num_cpus=1)
    merge = ray.remote(_merge).options(num_cpus=1)
    parts = [split.remote(block, mapper, mapper_kwargs, groups) for block in blocks]
    parts = [p if groups > 1 else [p] for p in parts]
    return ray.get([merge.remote(reducer, reducer_kwargs, *(p[g] for p in parts)) for g in range(groups)])

"""The kinds of data the Python API takes, as Arrow, and its results back as the kind that came in.

Every public function that takes rows (:func:`skyfilter.contaminate`, :func:`skyfilter.dedup_rows`,
:func:`skyfilter.select_rows`, :func:`skyfilter.select_table`, :func:`skyfilter.to_pairs`,
:func:`skyfilter.benchmark_from_table`) starts with :func:`as_arrow` and gives its result to the ``restore`` it
returned:

==============================  =====================================================  ==========================
in                              as Arrow                                               out
==============================  =====================================================  ==========================
``pa.Table``                    itself                                                 ``pa.Table``
``pa.RecordBatch``              a one-batch table                                      ``pa.RecordBatch``
``pa.RecordBatchReader``        itself where the function streams, else read whole     ``pa.RecordBatchReader``
``polars.DataFrame``            ``to_arrow(compat_level=newest)``: string_view columns  ``polars.DataFrame``
``polars.LazyFrame``            collected with the streaming engine, as a DataFrame    ``polars.LazyFrame``
``datasets.Dataset``            its Arrow table (``ds.data.table``)                    ``datasets.Dataset``
``pandas.DataFrame``            ``pa.Table.from_pandas``, its index as columns         ``pandas.DataFrame`` (with
                                                                                       the rows' index labels)
anything with                   ``pa.RecordBatchReader.from_stream``, read whole       ``pa.Table``
``__arrow_c_stream__``
==============================  =====================================================  ==========================

Nothing is copied on the way in or out where Arrow allows: a polars frame's strings are exported as string_view
arrays over polars' own buffers (the kernels read utf8, large_utf8 and string_view alike) and ``pl.from_arrow``
takes Arrow results without copying; a ``datasets.Dataset`` is a memory-mapped Arrow table. A pandas frame is
converted (pandas keeps Python objects): its index travels as columns with the rows, so that a result, a selection's
kept rows too, has the index labels of its rows; a column Arrow cannot convert (an object column mixing types, as
``read_json`` makes of a field that is sometimes ``true``) is one error naming the column and the first odd row.
Polars, datasets and pandas are imported only when the data is one of theirs (a frame cannot exist without its
library being imported).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pyarrow as pa

__all__ = ["as_arrow", "as_is", "per_batch", "Restore"]

#: Turns a result (a table, or with ``stream=True`` maybe a reader) back into the kind of the input.
Restore = Callable[[Any], Any]


def as_is(result: Any) -> Any:
    """The :data:`Restore` of a ``pa.Table``: the result itself."""
    return result


def _as_batch(result: pa.Table) -> pa.RecordBatch:
    return pa.record_batch([c.combine_chunks() for c in result.columns], schema=result.schema)


def _as_reader(result: pa.Table | pa.RecordBatchReader) -> pa.RecordBatchReader:
    if isinstance(result, pa.RecordBatchReader):
        return result
    return pa.RecordBatchReader.from_batches(result.schema, result.to_batches())


def _library(name: str):
    """The module ``name`` if the program imported it (else None: no object of its types can exist)."""
    return sys.modules.get(name)


def as_arrow(data: Any, *, stream: bool = False) -> tuple[pa.Table | pa.RecordBatchReader, Restore]:
    """``data`` as a ``pa.Table`` (or, with ``stream`` and a ``pa.RecordBatchReader`` in, that reader) and the
    function that turns a result table (or reader) into the kind of ``data``."""
    if isinstance(data, pa.Table):
        return data, as_is
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data]), _as_batch
    if isinstance(data, pa.RecordBatchReader):
        return (data if stream else data.read_all()), _as_reader
    pl = _library("polars")
    if pl is not None and isinstance(data, pl.LazyFrame):
        table, restore = as_arrow(data.collect(engine="streaming"))
        return table, lambda result: restore(result).lazy()
    if pl is not None and isinstance(data, pl.DataFrame):
        return data.to_arrow(compat_level=pl.CompatLevel.newest()), pl.from_arrow
    datasets = _library("datasets")
    if datasets is not None and isinstance(data, datasets.Dataset):
        if data._indices is not None:  # a selection or shuffle over the table: its rows, in its order
            data = data.flatten_indices()
        return data.data.table, datasets.Dataset
    pd = _library("pandas")
    if pd is not None and isinstance(data, pd.DataFrame):
        return _from_pandas(data)
    if hasattr(data, "__arrow_c_stream__"):  # arro3, nanoarrow, duckdb ...
        return pa.RecordBatchReader.from_stream(data).read_all(), as_is
    raise TypeError(
        "expected Arrow data: a pyarrow Table, RecordBatch or RecordBatchReader, a polars DataFrame or LazyFrame, "
        f"a datasets.Dataset or anything with __arrow_c_stream__; got {type(data).__name__}"
    )


def _from_pandas(frame) -> tuple[pa.Table, Restore]:
    """A pandas frame as Arrow, its index as columns, and the restore that makes them the index again."""
    try:
        table = pa.Table.from_pandas(frame, preserve_index=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid) as e:
        raise TypeError(_unconvertible(frame, e)) from None
    index_columns = [c for c in table.schema.pandas_metadata["index_columns"] if isinstance(c, str)]
    names = list(frame.index.names)

    def restore(result: pa.Table):
        out = result.to_pandas()
        if index_columns and all(c in out.columns for c in index_columns):  # the columns, without their metadata
            out = out.set_index(index_columns)
            out.index.names = names
        elif result.schema.pandas_metadata is None and len(out) == len(frame):  # a new table, row for row
            out.index = frame.index
        return out

    return table, restore


def _unconvertible(frame, error: Exception) -> str:
    """Which column of a pandas frame Arrow cannot convert, and its first row of another kind than its first value."""
    for name in frame.columns:
        column = frame[name]
        try:
            pa.array(column, from_pandas=True)
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            values = column[column.notna()]
            kinds = values.map(lambda v: type(v).__name__)
            odd = kinds[kinds != kinds.iloc[0]] if len(kinds) else kinds
            if len(odd):
                label, position = odd.index[0], column.index.get_loc(odd.index[0])
                shown = label.item() if hasattr(label, "item") else label  # a numpy scalar as its Python value
                return (f"column {name!r}: a {odd.iloc[0]} ({values[label]!r}) at row {position} (index {shown!r}) "
                        f"where its first value is a {kinds.iloc[0]}; Arrow needs one type per column")  # fmt: skip
            return f"column {name!r}: {error}"
    return str(error)


def per_batch(
    reader: pa.RecordBatchReader, function: Callable[[pa.RecordBatch, int], pa.Table], schema: pa.Schema
) -> pa.RecordBatchReader:
    """A reader of ``function(batch, offset)`` (a table of ``schema``) over the batches of ``reader`` as they are
    read, ``offset`` being the position of the batch's first row: a row-local step over a stream."""

    def batches():
        offset = 0
        for batch in reader:
            yield from function(batch, offset).to_batches()
            offset += batch.num_rows

    return pa.RecordBatchReader.from_batches(schema, batches())

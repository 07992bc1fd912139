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
anything with                   ``pa.RecordBatchReader.from_stream``, read whole       ``pa.Table``
``__arrow_c_stream__``
==============================  =====================================================  ==========================

Nothing is copied on the way in or out where Arrow allows: a polars frame's strings are exported as string_view
arrays over polars' own buffers (the kernels read utf8, large_utf8 and string_view alike) and ``pl.from_arrow``
takes Arrow results without copying; a ``datasets.Dataset`` is a memory-mapped Arrow table. Polars and datasets are
imported only when the data is one of theirs (a frame cannot exist without its library being imported).
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
    if hasattr(data, "__arrow_c_stream__"):  # pandas via pyarrow, arro3, nanoarrow, duckdb ...
        return pa.RecordBatchReader.from_stream(data).read_all(), as_is
    raise TypeError(
        "expected Arrow data: a pyarrow Table, RecordBatch or RecordBatchReader, a polars DataFrame or LazyFrame, "
        f"a datasets.Dataset or anything with __arrow_c_stream__; got {type(data).__name__}"
    )


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

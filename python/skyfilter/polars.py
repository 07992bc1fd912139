"""The ``.skyfilter`` namespace of polars expressions, DataFrames and LazyFrames: the skyfilter kernels inside a
polars query. ``import skyfilter.polars`` registers it (polars itself: ``pip install 'skyfilter[polars]'``).

Expressions, on a column of texts (utf8, large_utf8 or string_view) or of messages (``list<struct<role,
content>>``, read as a prompt is read with ``--prompt-column``):

* ``.skyfilter.contamination(matcher)``: a struct of the row's result against ``matcher`` (a
  :class:`skyfilter.contaminate.Matcher`, built once outside the query), as ``skyfilter contaminate
  --prompt-column COL`` decides it: ``flagged``, ``overlap``, ``n_ngrams``, ``n_matched`` and the evidence of the
  flagged output (``bench_name``, ``bench_row``, ``bench_subset``, ``matched_ngram``); one match for them all;
* ``.skyfilter.contaminated(matcher)`` (bool) and ``.skyfilter.matched_ngram(matcher)`` (the first benchmark n-gram
  a flagged row shares): two fields of it (each its own match: take the struct for both);
* ``.skyfilter.row_key(lowercase=False)``: the 16-byte key ``skyfilter dedup`` compares rows by (whitespace trimmed
  and collapsed), as binary;
* ``.skyfilter.minhash(num_perm=128, shingle=5, seed=0)``: the MinHash signature of the near-duplicate check, as
  ``Array(UInt32, num_perm)``.

Frames: ``df.skyfilter.dedup(options)`` and ``df.skyfilter.select(options)`` (also on a LazyFrame, where they run
when the query is collected) are :func:`skyfilter.dedup_rows` and :func:`skyfilter.select_rows`: the rows with the
decision columns added.

The expressions are ``map_batches(..., is_elementwise=True)`` over each batch polars hands them, so they run in the
streaming engine (``collect(engine="streaming")``) batch by batch. Each chunk of a batch goes to the Rust kernel as
the Arrow array over polars' own buffers (``pa.chunked_array(series)``: strings as string_view, which the kernels
read as they are), and the kernel's Arrow result comes back through ``pl.from_arrow``, which keeps the buffers of
flags, numbers and signatures: a text column is not copied either way. Converted are ``row_key``'s 16-byte keys
(polars has no fixed-size binary type), the evidence strings of flagged rows, and a messages column's turns (taken
out as the canonical pair table does).
Dedup and select decide every row against all others, so they see the whole frame at once.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from skyfilter import _core
from skyfilter.contaminate import RESULT_SCHEMA, Matcher, row_results
from skyfilter.dedup import DedupOptions, dedup_rows
from skyfilter.io import worker_threads
from skyfilter.schema import SchemaError, match_texts, pair_table, turn_texts
from skyfilter.select import SelectOptions, select_rows

try:
    import polars as pl
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("skyfilter.polars needs polars: pip install 'skyfilter[polars]'") from e

__all__ = ["SkyfilterExpr", "SkyfilterFrame", "SkyfilterLazyFrame"]

#: The polars type of :meth:`SkyfilterExpr.contamination`.
_RESULT_DTYPE = pl.Struct({f.name: pl.from_arrow(pa.nulls(0, f.type)).dtype for f in list(RESULT_SCHEMA)[1:]})


def _arrow_chunks(series: pl.Series) -> list[pa.Array]:
    """The chunks of ``series`` as Arrow arrays over polars' buffers (strings as string_view: nothing copied)."""
    chunks = pa.chunked_array(series).chunks
    return chunks or [series.to_arrow(compat_level=pl.CompatLevel.newest())]


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _pairs(chunk: pa.Array, column: str) -> pa.Table:
    """A messages column as canonical pairs whose prompts are its rows."""
    try:
        return pair_table(pa.table({column: chunk}), prompt_column=column)
    except SchemaError as e:
        raise SchemaError(f"column {column!r}: expected texts or messages, got {chunk.type} ({e})") from None


def _texts(chunk: pa.Array, column: str) -> tuple[pa.Array, pa.Array | None]:
    """The texts of a chunk as the dedup kernels read them: a text column as it is; messages as every turn."""
    if pa.types.is_null(chunk.type):
        return pa.nulls(len(chunk), pa.string()), None
    if _is_text(chunk.type):
        return chunk, None
    return turn_texts(_pairs(chunk, column), ["prompt"])


def _match(matcher: Matcher, chunk: pa.Array, column: str) -> pa.RecordBatch:
    """``matcher``'s per-row results for a chunk: a text column as the prompt itself, messages by its fields."""
    where = f"column {column!r}"
    if pa.types.is_null(chunk.type) or _is_text(chunk.type):
        return matcher.match_rows(_texts(chunk, column)[0], None, where)
    return matcher.match_rows(*match_texts(_pairs(chunk, column), matcher.fields), where)


def _per_chunk(expr: pl.Expr, kernel: Callable[[pa.Array, str], pa.Array], dtype: pl.DataType) -> pl.Expr:
    """``expr`` mapped batch by batch, each Arrow chunk through ``kernel(chunk, column name)``."""

    def run(series: pl.Series) -> pl.Series:
        results = [kernel(chunk, series.name) for chunk in _arrow_chunks(series)]
        return pl.from_arrow(pa.chunked_array(results)).alias(series.name)

    return expr.map_batches(run, return_dtype=dtype, is_elementwise=True)


def _matcher(index) -> Matcher:
    if not isinstance(index, Matcher):
        raise TypeError(f"expected a skyfilter.contaminate.Matcher (built once, outside the query), got {type(index)}")
    return index


@pl.api.register_expr_namespace("skyfilter")
class SkyfilterExpr:
    """``pl.col(...).skyfilter``: the per-row skyfilter kernels as polars expressions."""

    def __init__(self, expr: pl.Expr):
        self._expr = expr

    def contamination(self, matcher: Matcher) -> pl.Expr:
        """``matcher``'s result for the row as a struct of :data:`skyfilter.contaminate.RESULT_COLUMNS`: ``flagged``,
        ``overlap``, ``n_ngrams``, ``n_matched`` and, for a flagged row, ``bench_name``, ``bench_row``,
        ``bench_subset`` and ``matched_ngram`` (null elsewhere): the columns of the flagged output, from one match."""
        matcher = _matcher(matcher)

        def results(chunk: pa.Array, name: str) -> pa.Array:
            columns = row_results(matcher, _match(matcher, chunk, name))
            return pa.StructArray.from_arrays(list(columns.values()), fields=list(RESULT_SCHEMA)[1:])

        return _per_chunk(self._expr, results, _RESULT_DTYPE)

    def contaminated(self, matcher: Matcher) -> pl.Expr:
        """Whether ``matcher`` flags the row (bool): ``contamination(matcher).struct.field("flagged")``."""
        return self.contamination(matcher).struct.field("flagged")

    def matched_ngram(self, matcher: Matcher) -> pl.Expr:
        """The first benchmark n-gram a flagged row shares, normalised, tokens joined by spaces; null elsewhere:
        ``contamination(matcher).struct.field("matched_ngram")``."""
        return self.contamination(matcher).struct.field("matched_ngram")

    def row_key(self, *, lowercase: bool = False, threads: int | None = None) -> pl.Expr:
        """The row's 16-byte dedup key (binary): equal keys, equal texts after trimming and collapsing whitespace
        (and lower-casing, with ``lowercase``)."""
        threads = worker_threads(threads)

        def keys(chunk: pa.Array, name: str) -> pa.Array:
            return _core.row_keys(*_texts(chunk, name), lowercase=lowercase, threads=threads)

        return _per_chunk(self._expr, keys, pl.Binary())

    def minhash(self, num_perm: int = 128, shingle: int = 5, seed: int = 0, *, threads: int | None = None) -> pl.Expr:
        """The row's MinHash signature over word shingles (``Array(UInt32, num_perm)``; a row without tokens is all
        2^32 - 1)."""
        hasher, threads = _core.MinHasher(num_perm, shingle, seed), worker_threads(threads)

        def signatures(chunk: pa.Array, name: str) -> pa.Array:
            return hasher.signatures(*_texts(chunk, name), threads=threads)

        return _per_chunk(self._expr, signatures, pl.Array(pl.UInt32(), num_perm))


@pl.api.register_dataframe_namespace("skyfilter")
class SkyfilterFrame:
    """``df.skyfilter``: :func:`skyfilter.dedup_rows` and :func:`skyfilter.select_rows` on a polars DataFrame."""

    def __init__(self, df: pl.DataFrame):
        self._df = df

    def dedup(
        self, options: DedupOptions | None = None, *, layout: str | None = None, threads: int | None = None
    ) -> pl.DataFrame:
        """The rows with ``reason``, ``duplicate_of``, ``cluster_id`` and ``conflict`` added
        (:func:`skyfilter.dedup_rows`)."""
        return dedup_rows(self._df, options, layout=layout, threads=threads)

    def select(self, options: SelectOptions, *, layout: str | None = None, threads: int | None = None) -> pl.DataFrame:
        """The rows with ``reason`` and ``adjusted_score`` added (:func:`skyfilter.select_rows`)."""
        return select_rows(self._df, options, layout=layout, threads=threads)


#: The columns (and polars types) the frame methods add.
_DEDUP_ADDS = {"reason": pl.String(), "duplicate_of": pl.Int64(), "cluster_id": pl.Int64(), "conflict": pl.Boolean()}
_SELECT_ADDS = {"reason": pl.String(), "adjusted_score": pl.Float64()}


@pl.api.register_lazyframe_namespace("skyfilter")
class SkyfilterLazyFrame:
    """``lf.skyfilter``: :class:`SkyfilterFrame`'s methods as steps of a lazy query, run on the whole frame when the
    query is collected."""

    def __init__(self, lf: pl.LazyFrame):
        self._lf = lf

    def _whole(self, step: Callable[[pl.DataFrame], pl.DataFrame], adds: dict[str, pl.DataType]) -> pl.LazyFrame:
        schema = {**self._lf.collect_schema(), **adds}
        return self._lf.map_batches(step, schema=schema, streamable=False)

    def dedup(
        self, options: DedupOptions | None = None, *, layout: str | None = None, threads: int | None = None
    ) -> pl.LazyFrame:
        """:meth:`SkyfilterFrame.dedup` as a step of the query."""
        return self._whole(lambda df: df.skyfilter.dedup(options, layout=layout, threads=threads), _DEDUP_ADDS)

    def select(self, options: SelectOptions, *, layout: str | None = None, threads: int | None = None) -> pl.LazyFrame:
        """:meth:`SkyfilterFrame.select` as a step of the query."""
        return self._whole(lambda df: df.skyfilter.select(options, layout=layout, threads=threads), _SELECT_ADDS)

"""Type stubs of the Rust extension module ``skyfilter._core``."""

from typing import Any, Literal

import pyarrow as pa

__version__: str

class SkyfilterError(ValueError):
    """Invalid arguments or data for a skyfilter kernel; also a panic in the extension (a bug), with its message.
    A file that cannot be opened raises the ``OSError`` of its kind (``FileNotFoundError``, ``PermissionError``)."""

class InvalidTextError(SkyfilterError):
    """A text cannot be read: not valid UTF-8, or over 4 GiB once lower-cased (the tokenizer's 32-bit positions);
    ``args == (message, row, reason)``, ``row`` 0-based in the array passed in."""

# ---- text -------------------------------------------------------------------------------------------

def tokenize(text: str, tokenizer: str = "words") -> list[str]:
    """The tokens of ``text`` under a preset: ``"words"`` (scikit-learn) or ``"whitespace"`` (janitor). The word
    characters and lower-case forms are this interpreter's (``skyfilter._unicode``), read once at first use."""

# ---- contam -----------------------------------------------------------------------------------------

class BenchmarkIndex:
    """The distinct n-grams of one or more benchmarks' prompts, with the rows they occur in."""

    def __init__(self, benchmarks: list[Any], *, tokenizer: str = "words", n: int = 7) -> None: ...
    @property
    def n(self) -> int: ...
    @property
    def tokenizer(self) -> str: ...
    @property
    def n_groups(self) -> int: ...
    @property
    def bench_rows(self) -> list[int]: ...
    def match_rows(
        self,
        texts: Any,
        bounds: Any | None = None,
        *,
        threshold: float = 0.0,
        ignore: Any | None = None,
        threads: int = 0,
        counts: Literal["all", "matched"] = "all",
    ) -> pa.RecordBatch:
        """Columns ``n_ngrams``, ``n_matched``, ``overlap``, ``flagged``, ``first_group``, ``matched_groups``;
        ``counts="matched"``: ``n_ngrams`` counted for matched rows only (null for the others that have n-grams)."""
    def ngram_texts(self, groups: Any) -> pa.StringArray: ...
    def postings(self, groups: Any) -> pa.RecordBatch:
        """Columns ``group``, ``bench``, ``row``."""

# ---- dedup ------------------------------------------------------------------------------------------

def row_keys(texts: Any, bounds: Any | None = None, *, lowercase: bool = False, threads: int = 0) -> Any:
    """A 16-byte key per row (``fixed_size_binary(16)``) over its texts, whitespace trimmed and collapsed (and with
    ``lowercase`` each character lower-cased as this interpreter's ``str.lower`` does)."""

class MinHasher:
    """MinHash over word shingles, ``num_perm`` permutations from a fixed seed."""

    def __init__(self, num_perm: int = 128, shingle: int = 5, seed: int = 0) -> None: ...
    @property
    def num_perm(self) -> int: ...
    def signatures(self, texts: Any, bounds: Any | None = None, *, threads: int = 0) -> Any:
        """``fixed_size_list<uint32>[num_perm]``; rows without tokens are all 2^32 - 1."""
    def signatures_and_shingles(self, texts: Any, bounds: Any | None = None, *, threads: int = 0) -> tuple[Any, Any]:
        """``(signatures, shingle_sets)``: the signatures, and each row's 64-bit shingle hashes in text order, repeats
        kept (``large_list<uint64>``), for ``NearDedup(verify="exact")``."""

class NearDedup:
    """Near-duplicate clusters over rows added in order: the connected components of the LSH candidate pairs whose
    Jaccard, estimated from the signatures (``verify="estimate"``) or exact from the shingle sets (``"exact"``),
    reaches the threshold. ``num_perm`` is 1..=1024, as ``MinHasher``'s."""

    def __init__(
        self, num_perm: int, bands: int, rows_per_band: int, threshold: float, verify: str = "estimate"
    ) -> None: ...
    def __len__(self) -> int: ...
    def add(self, signatures: Any, shingle_sets: Any | None = None) -> None:
        """Signatures from ``MinHasher.signatures``: ``fixed_size_list<uint32>[num_perm]`` without nulls; verifying
        exactly, also their shingle sets (``MinHasher.signatures_and_shingles``; each row's hashes in any order,
        repeats allowed)."""
    def clusters(self) -> pa.UInt32Array:
        """Per row added, the index of its cluster's first row."""
    def band_keys(self, signatures: Any) -> tuple[pa.UInt64Array, pa.UInt32Array]:
        """The LSH band keys (uint64) and rows (uint32, index in ``signatures``) of the rows with tokens among
        ``signatures`` (not added), one per band: the keys ``clusters`` buckets rows by."""
    def bucket_clusters(self, keys: Any, rows: Any) -> pa.UInt32Array:
        """Per row added, its cluster's first row, joining only candidates that share a bucket among the entries
        (``keys[i]``, ``rows[i]``), each bucket given whole."""

def components(left: Any, right: Any) -> tuple[pa.UInt64Array, pa.UInt64Array]:
    """The connected components of the edges (``left[i]``, ``right[i]``) over uint64 nodes: the nodes, ascending,
    and the smallest node of each one's component."""

# ---- select -----------------------------------------------------------------------------------------

SELECT_REASONS: list[str]

def row_reasons(
    rows: int,
    *,
    score: Any | None = None,
    offset: Any | None = None,
    chosen: Any | None = None,
    rejected: Any | None = None,
    rm_chosen: Any | None = None,
    rm_rejected: Any | None = None,
    chosen_bounds: tuple[float | None, float | None] | None = None,
    rejected_bounds: tuple[float | None, float | None] | None = None,
    margin_bounds: tuple[float | None, float | None] | None = None,
    rm_agreement: bool = False,
) -> tuple[pa.UInt8Array, pa.DoubleArray | None]:
    """The code (index into ``SELECT_REASONS``) of every row under the row rules, and ``score + offset`` (a
    missing score or offset is ``missing_score``). Every column given must have ``rows`` values."""

def top_fraction(reasons: Any, scores: Any, groups: Any, fractions: list[float], *, threads: int = 0) -> pa.UInt8Array:
    """``reasons`` with kept rows outside the best ``ceil(f * n)`` of their group set to ``top_fraction`` (ties,
    -0.0 with 0.0 included, to the earlier row)."""

def length_ratio_fails(
    chosen: Any,
    rejected: Any,
    *,
    chosen_bounds: Any | None = None,
    rejected_bounds: Any | None = None,
    only: Any | None = None,
    min: float | None = None,
    max: float | None = None,
    threads: int = 0,
) -> pa.BooleanArray:
    """Per row: the chosen / rejected character ratio falls outside ``(min, max)``; rows ``only`` leaves out: False.
    Characters are the bytes that start a UTF-8 sequence, at least a quarter of the bytes (no validation)."""

def string_views(array: Any, rows: Any) -> pa.StringViewArray:
    """Rows ``rows`` (uint64) of a string array as string_view values pointing into its buffers."""

def string_rows(array: Any, rows: Any) -> pa.StringArray:
    """Rows ``rows`` (uint64) of a string_view array copied into a compact string array."""

def segment_means(values: Any, bounds: Any) -> pa.DoubleArray:
    """The mean of each row's values; NaN for an empty row or one with a missing value."""

class GroupIds:
    """Dense ids for the values of a string column across batches, in order of first appearance."""

    def __init__(self) -> None: ...
    def encode(self, values: Any, *, threads: int = 0) -> pa.UInt32Array:
        """The id of every value; a distinct value that is not UTF-8 raises ``InvalidTextError`` (no id given)."""
    def names(self) -> list[str | None]: ...

class ParquetBatches:
    """The record batches of a parquet file (all top-level columns, or the named ones), row groups decoded in
    parallel; with ``views``, top-level string columns come back as string_view columns over the pages;
    ``row_groups=(first, stop)`` reads only those row groups."""

    def __init__(
        self,
        path: str,
        columns: list[str] | None = None,
        *,
        batch_rows: int = 65_536,
        threads: int = 0,
        views: bool = False,
        row_groups: tuple[int, int] | None = None,
    ) -> None: ...
    def __iter__(self) -> ParquetBatches: ...
    def __next__(self) -> pa.RecordBatch: ...

def _panic(message: str) -> None:
    """Panics with ``message`` inside the extension: for tests of the panic boundary (raises SkyfilterError)."""

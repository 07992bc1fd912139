"""Type stubs of the Rust extension module ``skyfilter._core``."""

from typing import Any

import pyarrow as pa

__version__: str

class SkyfilterError(ValueError):
    """Invalid arguments or data for a skyfilter kernel."""

class InvalidTextError(SkyfilterError):
    """A text is not valid UTF-8; ``args == (message, row)``."""

# ---- text -------------------------------------------------------------------------------------------

def tokenize(text: str, tokenizer: str = "words") -> list[str]:
    """The tokens of ``text`` under a preset: ``"words"`` (scikit-learn) or ``"whitespace"`` (janitor)."""

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
    ) -> pa.RecordBatch:
        """Columns ``n_ngrams``, ``n_matched``, ``overlap``, ``flagged``, ``first_group``, ``matched_groups``."""
    def ngram_texts(self, groups: Any) -> pa.StringArray: ...
    def postings(self, groups: Any) -> pa.RecordBatch:
        """Columns ``group``, ``bench``, ``row``."""

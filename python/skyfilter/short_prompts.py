"""Benchmark prompts too short for n-grams, matched whole (``skyfilter contaminate --match-short``).

A benchmark prompt with fewer tokens than n has no n-gram: the n-gram methods (the reference's included) can never
match it, not even where a training prompt copies it word for word, and the report counts such prompts as too short.
With ``match_short`` a training text whose tokens (the preset's tokenizer: the same lower-casing and word rule as
the n-grams) are exactly those of such a prompt flags its row as well: one match group per distinct token sequence,
numbered after the benchmark index's n-gram groups, so that evidence, reports and ``ignore_common`` treat a short
prompt as one more "n-gram" (its whole text).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from skyfilter import _core
from skyfilter.benchmarks import Benchmark

__all__ = ["ShortPrompts", "POSTINGS", "too_short"]

#: The columns of the postings, as ``_core.BenchmarkIndex.postings`` gives them.
POSTINGS = pa.schema([pa.field(name, pa.uint32(), nullable=False) for name in ("group", "bench", "row")])


def too_short(prompts: pa.Array, tokenizer: str, n: int) -> np.ndarray:
    """Per prompt, whether it has no text or fewer tokens than ``n``: it has no n-gram, and no n-gram can match it,
    not even in a word-for-word copy (the reference method's blind spot, which the report counts)."""
    return np.array([p is None or len(_core.tokenize(p, tokenizer)) < n for p in prompts.to_pylist()], dtype=bool)


class ShortPrompts:
    """The benchmark prompts with at least one and fewer than ``n`` tokens, a group for each distinct token
    sequence, numbered from ``first_group`` on."""

    def __init__(self, benchmarks: Sequence[Benchmark], tokenizer: str, n: int, first_group: int):
        self.tokenizer, self.n, self.first_group = tokenizer, n, first_group
        self.groups: dict[str, int] = {}
        postings: list[tuple[int, int, int]] = []
        for b, bench in enumerate(benchmarks):
            for row, prompt in enumerate(bench.prompts.to_pylist()):
                key = self.key(prompt)
                if key is not None:
                    postings.append((first_group + self.groups.setdefault(key, len(self.groups)), b, row))
        postings.sort()
        columns = np.array(postings, dtype=np.uint32).reshape(-1, 3).T
        self._postings = pa.record_batch([pa.array(c, type=pa.uint32()) for c in columns], schema=POSTINGS)
        self._starts = np.searchsorted(columns[0], np.arange(first_group, first_group + len(self.groups) + 1))
        self._texts = pa.array(list(self.groups), type=pa.string())  # in the order of the groups

    def __len__(self) -> int:
        return len(self.groups)

    def key(self, text: str | None) -> str | None:
        """The tokens of ``text`` joined by spaces where it has at least one and fewer than n, else None."""
        if text is None:
            return None
        tokens = _core.tokenize(text, self.tokenizer)
        return " ".join(tokens) if 0 < len(tokens) < self.n else None

    def copies(self, texts: pa.Array, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, groups)``: the texts among ``texts[candidates]`` whose tokens are a short prompt's."""
        found, groups = [], []
        for at, text in zip(candidates.tolist(), texts.take(pa.array(candidates, type=pa.int64())).to_pylist(),
                            strict=True):  # fmt: skip
            group = self.groups.get(self.key(text))  # type: ignore[arg-type]
            if group is not None:
                found.append(at)
                groups.append(self.first_group + group)
        return np.array(found, dtype=np.int64), np.array(groups, dtype=np.int64)

    def postings(self, groups: np.ndarray) -> pa.RecordBatch:
        """The benchmark rows of each of ``groups`` (short-prompt groups), in the order given."""
        at = groups.astype(np.int64) - self.first_group
        rows = np.concatenate([np.arange(self._starts[g], self._starts[g + 1]) for g in at]) if len(at) else []
        return self._postings.take(pa.array(rows, type=pa.int64()))

    def texts(self, groups: np.ndarray) -> pa.Array:
        """The token sequence of each of ``groups``, joined by spaces."""
        return self._texts.take(pa.array(groups.astype(np.int64) - self.first_group))

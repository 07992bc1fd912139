"""Pure-Python reference of the contamination presets: what the Rust matcher must equal, row for row."""

from __future__ import annotations

import re
import string

WORD_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn CountVectorizer's default token_pattern
JANITOR = str.maketrans(string.ascii_uppercase, string.ascii_lowercase, string.punctuation)


def tokens(text: str, tokenizer: str) -> list[str]:
    if tokenizer == "words":
        return WORD_TOKEN.findall(text.lower())
    return text.translate(JANITOR).split()


def ngrams(text: str | None, tokenizer: str, n: int) -> set[tuple[str, ...]]:
    if not text:
        return set()
    t = tokens(text, tokenizer)
    return {tuple(t[i : i + n]) for i in range(len(t) - n + 1)}


def reference_match(
    rows: list[list[str | None]],
    bench: list[str | None],
    tokenizer: str,
    n: int,
    threshold: float,
    ignore: set[tuple[str, ...]] = frozenset(),
) -> list[dict]:
    """Per row: distinct n-grams, matched n-grams, overlap and flag, by the rule of the presets."""
    bench_ngrams = set().union(*(ngrams(b, tokenizer, n) for b in bench))
    out = []
    for texts in rows:
        row = set().union(*(ngrams(t, tokenizer, n) for t in texts))
        matched = {g for g in row if g in bench_ngrams and g not in ignore}
        overlap = len(matched) / len(row) if row else 0.0
        out.append(
            {
                "n_ngrams": len(row),
                "matched": {" ".join(g) for g in matched},
                "overlap": overlap,
                "flagged": bool(matched) and overlap >= threshold,
            }
        )
    return out

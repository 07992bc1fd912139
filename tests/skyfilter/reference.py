"""Pure-Python references of the Rust kernels: what ``skyfilter._core`` must equal, row for row. Each is the plain
definition (loops, sets, dictionaries, the ``xxhash`` package for the hashes), written without the kernels' tricks.
"""

from __future__ import annotations

import functools
import math
import re
import string

import xxhash

WORD_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn CountVectorizer's default token_pattern
JANITOR = str.maketrans(string.ascii_uppercase, string.ascii_lowercase, string.punctuation)

SEED = 0x736B_7966_696C_7472  # skyfilter-core's hash seed (ngram::SEED, "skyfiltr")
EMPTY = 2**32 - 1  # the signature value of a row without tokens
MASK64 = 2**64 - 1


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


def reference_short_copies(rows: list[list[str | None]], bench: list[str | None], tokenizer: str, n: int) -> list[set]:
    """Per row: the benchmark prompts too short for an n-gram (1 to n - 1 tokens) that one of its texts copies token
    for token, as their tokens joined by spaces."""
    short = {" ".join(t) for t in (tokens(b, tokenizer) for b in bench if b is not None) if 0 < len(t) < n}
    return [{key for key in (" ".join(tokens(t, tokenizer)) for t in texts if t is not None) if key in short}
            for texts in rows]  # fmt: skip


# ------------------------------------------------------------------------------- benchmark index


def ngram_list(text: str, tokenizer: str, n: int) -> list[tuple[str, ...]]:
    """The n-grams of a text in text order, repeats included."""
    t = tokens(text, tokenizer)
    return [tuple(t[i : i + n]) for i in range(len(t) - n + 1)]


def reference_index(benches: list[list[str | None]], tokenizer: str, n: int) -> tuple[list[tuple], list[list]]:
    """The distinct n-grams of the benchmarks (a group each, numbered in order of first occurrence: benchmark, row,
    position) and each group's postings: the (benchmark, row) pairs it occurs in, ascending, each once."""
    groups: dict[tuple, int] = {}
    postings: list[set] = []
    for b, texts in enumerate(benches):
        for row, text in enumerate(texts):
            for gram in ngram_list(text, tokenizer, n) if text is not None else []:
                g = groups.setdefault(gram, len(groups))
                if g == len(postings):
                    postings.append(set())
                postings[g].add((b, row))
    return list(groups), [sorted(p) for p in postings]


def reference_match_groups(
    texts: list[str | None], groups: list[tuple], tokenizer: str, n: int, ignore: list[bool]
) -> tuple[int, list[int]]:
    """A row's distinct n-grams and the groups it matches, distinct, in order of first occurrence in its texts,
    without the groups ``ignore`` marks."""
    group_of = {gram: g for g, gram in enumerate(groups)}
    seen, matched = set(), []
    for text in texts:
        for gram in ngram_list(text, tokenizer, n) if text is not None else []:
            seen.add(gram)
            g = group_of.get(gram)
            if g is not None and not (g < len(ignore) and ignore[g]) and g not in matched:
                matched.append(g)
    return len(seen), matched


# ------------------------------------------------------------------------------------ exact keys


def reference_normal_form(text: str | None, lowercase: bool) -> str | None:
    """Whitespace (``str.isspace``) trimmed and runs collapsed to one space; lower-cased character by character."""
    if text is None:
        return None
    collapsed = " ".join(text.split())
    return "".join(c.lower() for c in collapsed) if lowercase else collapsed


def reference_row_key(texts: list[str | None], lowercase: bool) -> bytes:
    """xxh3-128 (seeded, big-endian) of the row's texts in order: each a little-endian u64 length and the UTF-8 of
    its normal form, a null text the length 2^64 - 1 alone."""
    data = b""
    for text in texts:
        if text is None:
            data += MASK64.to_bytes(8, "little")
        else:
            form = reference_normal_form(text, lowercase).encode()
            data += len(form).to_bytes(8, "little") + form
    return xxhash.xxh3_128(data, seed=SEED).digest()


# --------------------------------------------------------------------------------------- MinHash


def _mix(h: int) -> int:
    """murmur3's 64-bit finaliser."""
    h ^= h >> 33
    h = h * 0xFF51AFD7ED558CCD & MASK64
    h ^= h >> 33
    h = h * 0xC4CEB9FE1A85EC53 & MASK64
    return h ^ (h >> 33)


def ngram_hash(grams: tuple[str, ...]) -> int:
    """The polynomial ``sum(t[k] * BASE^(n-1-k))`` (mod 2^64) of the tokens' seeded xxh3-64, mixed."""
    acc = 0
    for token in grams:
        acc = (acc * 0x9E3779B97F4A7C15 + xxhash.xxh3_64_intdigest(token.encode(), seed=SEED)) & MASK64
    return _mix(acc)


def reference_shingle_hash_list(texts: list[str | None], shingle: int) -> list[int]:
    """A row's shingle hashes in text order, repeats kept: the ``words`` tokens of each text, ``shingle`` at a time
    (a text of 1 to ``shingle - 1`` tokens is one shingle of them all), never across two texts."""
    hashes = []
    for text in texts:
        t = tokens(text or "", "words")
        n = min(shingle, len(t))
        hashes += [ngram_hash(tuple(t[i : i + n])) for i in range(len(t) - n + 1)] if n else []
    return hashes


def reference_shingle_hashes(texts: list[str | None], shingle: int) -> set[int]:
    """A row's distinct shingle hashes (see :func:`reference_shingle_hash_list`)."""
    return set(reference_shingle_hash_list(texts, shingle))


def reference_shingles(texts: list[str | None], n: int) -> set[tuple[str, ...]]:
    """A row's shingles: the `words` tokens of each text, n at a time (a text of 1 to n - 1 tokens is one
    shingle); never across two texts."""
    out: set[tuple[str, ...]] = set()
    for text in texts:
        t = tokens(text or "", "words")
        if t:
            out |= {tuple(t[i : i + n]) for i in range(max(len(t) - n + 1, 1))}
    return out


@functools.cache
def _permutations(num_perm: int, seed: int) -> list[tuple[int, int]]:
    """``(a_i, b_i)``: the seeded xxh3-64 of ``i`` (little-endian u64) made odd, and another's low half."""
    keys = [i.to_bytes(8, "little") for i in range(num_perm)]
    return [(xxhash.xxh3_64_intdigest(k, seed=seed ^ 0xA) | 1, xxhash.xxh3_64_intdigest(k, seed=seed ^ 0xB) & EMPTY)
            for k in keys]  # fmt: skip


def reference_signature(shingles: set[int], num_perm: int, seed: int) -> list[int]:
    """For each permutation ``i``: the minimum over the shingles of ``((a_i * x + b_i) mod 2^64) >> 32`` with ``x``
    the shingle hash's high half; 2^32 - 1 without shingles."""
    return [min([((a * (s >> 32) + b) & MASK64) >> 32 for s in shingles], default=EMPTY)
            for a, b in _permutations(num_perm, seed)]  # fmt: skip


# --------------------------------------------------------------------------------- LSH clustering


def _band(sig: list[int], b: int, rows_per_band: int) -> list[int]:
    return sig[b * rows_per_band : (b + 1) * rows_per_band]


def _join(parent: list[int], i: int, j: int) -> None:
    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    ri, rj = find(i), find(j)
    parent[max(ri, rj)] = min(ri, rj)


def _roots(parent: list[int]) -> list[int]:
    out = []
    for x in range(len(parent)):
        while parent[x] != x:
            x = parent[x]
        out.append(x)
    return out


def reference_clusters(
    signatures: list[list[int]],
    bands: int,
    rows_per_band: int,
    threshold: float,
    buckets: list[set[int]] | None = None,
) -> list[int]:
    """Brute force: every pair of rows with tokens that shares a band is a candidate (with ``buckets``: that shares
    one of them, or has the same signature); candidates whose estimated Jaccard (the share of equal positions)
    reaches the threshold are joined; a cluster is named by its first row."""
    parent = list(range(len(signatures)))
    has_tokens = [any(v != EMPTY for v in sig) for sig in signatures]
    for i, x in enumerate(signatures):
        for j in range(i):
            y = signatures[j]
            if not (has_tokens[i] and has_tokens[j]):
                continue
            if buckets is None:
                candidates = any(_band(x, b, rows_per_band) == _band(y, b, rows_per_band) for b in range(bands))
            else:
                candidates = x == y or any(i in bucket and j in bucket for bucket in buckets)
            if candidates and sum(a == b for a, b in zip(x, y, strict=True)) / len(x) >= threshold:
                _join(parent, i, j)
    return _roots(parent)


def reference_band_keys(signatures: list[list[int]], bands: int, rows_per_band: int) -> tuple[list[int], list[int]]:
    """xxh3-64 of each band's values (little-endian u32) seeded by SEED + band, for the rows with tokens."""
    keys, rows = [], []
    for row, sig in enumerate(signatures):
        if all(v == EMPTY for v in sig):
            continue
        for b in range(bands):
            data = b"".join(v.to_bytes(4, "little") for v in _band(sig, b, rows_per_band))
            keys.append(xxhash.xxh3_64_intdigest(data, seed=(SEED + b) % 2**64))
            rows.append(row)
    return keys, rows


def reference_exact_clusters(sets: list[set], signatures: list[list[int]], bands: int, rows_per_band: int,
                             threshold: float) -> list[int]:  # fmt: skip
    """Brute force: candidates share a band of their signatures (rows with tokens); those whose exact Jaccard
    ``|x & y| / |x | y|`` reaches the threshold are joined; a cluster is named by its first row."""
    parent = list(range(len(sets)))
    for i in range(len(sets)):
        for j in range(i):
            if not (sets[i] and sets[j]):
                continue
            bands_i = [_band(signatures[i], b, rows_per_band) for b in range(bands)]
            bands_j = [_band(signatures[j], b, rows_per_band) for b in range(bands)]
            if not any(x == y for x, y in zip(bands_i, bands_j, strict=True)):
                continue
            if len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= threshold:
                _join(parent, i, j)
    return _roots(parent)


def reference_components(left: list[int], right: list[int]) -> tuple[list[int], list[int]]:
    """The nodes of the edges (ascending) and the smallest node of each one's component, by relabelling."""
    nodes = sorted(set(left) | set(right))
    label = {n: n for n in nodes}
    changed = True
    while changed:
        changed = False
        for x, y in zip(left, right, strict=True):
            low = min(label[x], label[y])
            if label[x] != low or label[y] != low:
                label[x] = label[y] = low
                changed = True
    return nodes, [label[n] for n in nodes]


# -------------------------------------------------------------------------------------- selection

REASONS = ["kept", "missing_score", "chosen_score", "rejected_score", "margin", "rm_agreement", "length_ratio",
           "top_fraction"]  # fmt: skip


def within(x: float, bounds: tuple[float | None, float | None] | None) -> bool:
    """``min <= x <= max`` (a side None is open); NaN never is."""
    low, high = bounds or (None, None)
    return not math.isnan(x) and (low is None or x >= low) and (high is None or x <= high)


def active(bounds: tuple[float | None, float | None] | None) -> bool:
    return bounds is not None and bounds != (None, None)


def reference_row_reasons(rows: int, columns: dict[str, list[float] | None], chosen_bounds, rejected_bounds,
                          margin_bounds, rm_agreement: bool) -> tuple[list[int], list[float] | None]:  # fmt: skip
    """The first rule each row fails (missing values of the columns the active rules read, then the chosen score,
    the rejected score, the margin, the reward model's agreement), and ``score + offset`` (NaN, a missing one)."""
    score, offset = columns.get("score"), columns.get("offset")
    # -0.0 + 0.0 is 0.0: a score of -0.0 ranks with 0.0
    adjusted = (
        None if score is None else [s + (0.0 if offset is None else offset[r]) + 0.0 for r, s in enumerate(score)]
    )
    read = []
    if active(chosen_bounds) or active(margin_bounds):
        read.append(columns["chosen"])
    if active(rejected_bounds) or active(margin_bounds):
        read.append(columns["rejected"])
    if rm_agreement:
        read += [columns["rm_chosen"], columns["rm_rejected"]]
    if adjusted is not None:
        read.append(adjusted)
    codes = []
    for r in range(rows):
        if any(math.isnan(column[r]) for column in read):
            codes.append(REASONS.index("missing_score"))
        elif active(chosen_bounds) and not within(columns["chosen"][r], chosen_bounds):
            codes.append(REASONS.index("chosen_score"))
        elif active(rejected_bounds) and not within(columns["rejected"][r], rejected_bounds):
            codes.append(REASONS.index("rejected_score"))
        elif active(margin_bounds) and not within(columns["chosen"][r] - columns["rejected"][r], margin_bounds):
            codes.append(REASONS.index("margin"))
        elif rm_agreement and not columns["rm_chosen"][r] > columns["rm_rejected"][r]:
            codes.append(REASONS.index("rm_agreement"))
        else:
            codes.append(REASONS.index("kept"))
    return codes, adjusted


def quota(fraction: float, n: int) -> int:
    """``ceil(f * n)`` rows of a group of ``n``, ``f * n`` first lowered by a relative 1e-12 (so that 0.3 * 10,
    3.0000000000000004 in binary, keeps 3)."""
    return min(max(math.ceil(fraction * n * (1 - 1e-12)), 0), n)


def reference_top_fraction(reasons: list[int], scores: list[float], groups: list[int], fractions: list[float]):
    """Each group's kept rows ranked by score (high first; NaN lowest; -0.0 equal to 0.0; ties to the earlier row):
    those after the best ``quota`` get the top_fraction code."""
    out = list(reasons)
    for g, fraction in enumerate(fractions):
        kept = [r for r in range(len(reasons)) if groups[r] == g and reasons[r] == 0]
        kept.sort(key=lambda r: (math.inf if math.isnan(scores[r]) else -scores[r], r))
        for r in kept[quota(fraction, len(kept)) :]:
            out[r] = REASONS.index("top_fraction")
    return out


def characters(text: bytes | None) -> int:
    """Characters of a text as the length rule counts them: bytes that start a UTF-8 sequence (not 0b10xxxxxx), and
    at least a quarter of the bytes: ``len(text.decode())`` for valid UTF-8."""
    if text is None:
        return 0
    return max(sum(1 for b in text if b & 0xC0 != 0x80), -(-len(text) // 4))


def length_ratio(chosen: int, rejected: int) -> float:
    if chosen == rejected == 0:
        return 1.0
    return math.inf if rejected == 0 else chosen / rejected


def segment_mean(values: list[float]) -> float:
    """The mean of the values added left to right (NaN without any)."""
    if not values:
        return math.nan
    total = -0.0
    for v in values:
        total += v
    return total / len(values)

"""Fuzzing ``skyfilter._core``, part 1: text, contamination and dedup kernels against the pure-Python references
(tests/skyfilter/reference.py), on every Arrow string layout, at and past the bounds of every parameter. The
outcomes allowed, the profiles and the deadline are in tests/skyfilter/fuzz_helpers.py; part 2 (selection, views,
group ids, parquet, the module's surface) is test_fuzz_core_select.py.

Entry points fuzzed here, with what:

* ``tokenize(text, tokenizer)``: texts from all 17 planes, case mappings that change length or depend on context,
  every kind of whitespace, lone surrogates (refused), tokenizer names known, unknown and of other types.
* ``BenchmarkIndex(benchmarks, tokenizer=, n=)`` and its ``n``, ``tokenizer``, ``n_groups``, ``bench_rows``,
  ``match_rows(texts, bounds, threshold=, ignore=, threads=, counts=)``, ``ngram_texts(groups)``, ``postings(groups)``:
  zero to three benchmarks of any layout; n at 0, 1, 64, 65, 2^64; thresholds at the edges and NaN; ignore masks
  of every length, with nulls, of other types; group ids in and out of range, null.
* ``row_keys(texts, bounds, lowercase=, threads=)``: keys equal to xxh3-128 of the length-prefixed normal forms.
* ``MinHasher(num_perm, shingle, seed)``, its ``num_perm``, ``signatures`` and ``signatures_and_shingles``: against
  the definition of the hash family; num_perm 0 to 1025 and past 2^64, shingle 0 to 65, any u64 seed.
* ``NearDedup(num_perm, bands, rows_per_band, threshold, verify)``, ``len``, ``add``, ``clusters``, ``band_keys``,
  ``bucket_clusters``: brute-force components, signatures added in pieces of any layout (of another width, with
  nulls: refused, nothing added), shingle sets for ``verify="exact"`` (unsorted, null, of another type: refused).
* ``components(left, right)``: nodes up to 2^64 - 1, ends of unequal length, nulls, other types.
* Rows of 1 to 10 MB through every text kernel (``test_large_rows``).

Every string argument takes utf8, large_utf8 and string_view arrays (sliced out of longer arrays whose other rows
are not UTF-8, with nulls, empty, all-null of Arrow's null type, holding bytes that are not UTF-8), and is refused
as binary, int64, list, chunked array or Python list; row bounds are absent, valid (empty rows, one row of every
text, hundreds of texts a row) or bad (decreasing, negative, past the end, empty, null, of another type).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st
from skyfilter import _core

from tests.skyfilter.fuzz_helpers import (
    Refused,
    as_unsigned,
    attempt,
    check,
    columns,
    first_refusal,
    fuzz,
    real,
    row_bounds,
    text,
    unsigned,
    values,
)
from tests.skyfilter.reference import (
    EMPTY,
    reference_band_keys,
    reference_clusters,
    reference_components,
    reference_exact_clusters,
    reference_index,
    reference_match_groups,
    reference_row_key,
    reference_shingle_hash_list,
    reference_shingle_hashes,
    reference_signature,
    tokens,
)

TOKENIZERS = st.one_of(st.sampled_from(["words", "whitespace"]), st.sampled_from(["Words", "", "bpe", None, 3]))
surrogate_text = st.tuples(text, st.integers(0xD800, 0xDFFF).map(chr), text).map("".join)


def is_str(x) -> bool:
    return isinstance(x, str) and not any(0xD800 <= ord(c) < 0xE000 for c in x)


def text_argument(x) -> Refused | None:
    """pyo3's word on a ``&str`` argument: a str without lone surrogates."""
    return None if is_str(x) else Refused("argument")


def tokenizer_refusal(name) -> Refused | None:
    return text_argument(name) or (None if name in ("words", "whitespace") else Refused("data"))


@fuzz(300)
@given(value=st.one_of(text, text, st.text(), surrogate_text, st.sampled_from([None, b"aa bb", 5])), name=TOKENIZERS)
def test_tokenize(value, name):
    expected = first_refusal(text_argument(value), text_argument(name)) or tokenizer_refusal(name)
    got = check(expected or tokens(value, name), _core.tokenize, value, name)
    if expected is None:
        assert got == tokens(value, name)


# ------------------------------------------------------------------------------------ benchmark index


def rows_of(column, bounds_rows) -> list[list]:
    return [[column.values[t] for t in row] for row in bounds_rows]


def texts_refusal(column, bounds, bounds_rows, validate_all: bool) -> Refused | None:
    """How a kernel over rows of texts refuses them: the column's type, the bounds, then the first text that is not
    UTF-8 (all of them with ``validate_all``, else those of the rows in order)."""
    if column.refusal() is not None:
        return column.refusal()
    if isinstance(bounds_rows, Refused):
        return bounds_rows
    rows = range(len(column.values)) if validate_all else [t for row in bounds_rows for t in row]
    bad = column.first_invalid(rows)
    return None if bad is None else Refused("text", bad)


def argument_order(column, bounds) -> Refused | None:
    """pyo3 converts the array arguments first: a chunked array or list is refused before anything else."""
    if column.kind in ("chunked", "pylist"):
        return Refused("argument")
    return None


@fuzz(150)
@given(
    benches=st.lists(columns(values(max_size=8, deep=False)), max_size=3),
    name=TOKENIZERS,
    n=st.one_of(st.integers(1, 4), unsigned(1, 64)),
    data=st.data(),
)
def test_benchmark_index(benches, name, n, data):
    build = first_refusal(
        *[Refused("argument") for b in benches if b.kind in ("chunked", "pylist")],
        text_argument(name),
        as_unsigned(n),
    )
    build = build or tokenizer_refusal(name)
    build = build or first_refusal(*[b.refusal() for b in benches])
    invalid = [(b, b.first_invalid()) for b in benches if b.first_invalid() is not None]
    build = build or (Refused("text", invalid[0][1]) if invalid else None)
    build = build or (None if 1 <= n <= 64 else Refused("data"))
    index = check(build, _core.BenchmarkIndex, [b.array for b in benches], tokenizer=name, n=n)
    if build is not None:
        return
    groups, postings = reference_index([b.values for b in benches], name, n)
    assert (index.n, index.tokenizer, index.n_groups) == (n, name, len(groups))
    assert index.bench_rows == [len(b.values) for b in benches]

    # Group ids in range, past it, null; of another type.
    ids = data.draw(st.lists(st.one_of(st.none(), st.integers(0, len(groups) + 2), st.just(2**32 - 1)), max_size=8))
    dtype = data.draw(st.sampled_from([pa.uint32(), pa.uint32(), pa.int64()]))
    refused = None if dtype == pa.uint32() else Refused("data")
    got = check(refused, index.ngram_texts, pa.array(ids, dtype))
    if refused is None:
        assert got.to_pylist() == [None if g is None or g >= len(groups) else " ".join(groups[g]) for g in ids]
    got = check(refused, index.postings, pa.array(ids, dtype))
    if refused is None:
        expected = [(g, b, r) for g in ids if g is not None and g < len(groups) for b, r in postings[g]]
        assert list(zip(*got.to_pydict().values(), strict=True)) == expected

    # Training rows.
    column = data.draw(columns())
    bounds, bounds_rows = data.draw(row_bounds(len(column.values)))
    threshold = data.draw(st.one_of(real(), st.floats(0, 1), st.just("0.5")))
    ignore_kind = data.draw(st.sampled_from(["none", "mask", "mask", "short", "empty", "int"]))
    size = {"mask": len(groups), "short": len(groups) + 1, "empty": 0}.get(ignore_kind, 2)
    flags = data.draw(st.lists(st.one_of(st.booleans(), st.none()), min_size=size, max_size=size))
    ignore = {"none": None, "int": pa.array([None if f is None else int(f) for f in flags], pa.int8())}.get(
        ignore_kind, pa.array(flags, pa.bool_())
    )
    threads = data.draw(unsigned(0, 4))
    counts = data.draw(st.sampled_from(["all", "matched", "every"]))
    expected = first_refusal(
        argument_order(column, bounds),
        Refused("argument") if not isinstance(threshold, float) else None,
        as_unsigned(threads),
    )
    expected = expected or (None if 0.0 <= threshold <= 1.0 else Refused("data"))
    expected = expected or (None if counts in ("all", "matched") else Refused("data"))
    expected = expected or first_refusal(column.refusal(), bounds_rows if isinstance(bounds_rows, Refused) else None)
    expected = expected or (Refused("data") if ignore_kind in ("int",) else None)
    expected = expected or (Refused("data") if ignore_kind == "short" else None)
    expected = expected or texts_refusal(column, bounds, bounds_rows, validate_all=False)
    got = check(
        expected, index.match_rows, column.array, bounds, threshold=threshold, ignore=ignore, threads=threads,
        counts=counts,
    )  # fmt: skip
    if expected is not None:
        return
    mask = [bool(f) for f in flags] if ignore_kind == "mask" else []
    table = got.to_pydict()
    for r, texts in enumerate(rows_of(column, bounds_rows)):
        n_ngrams, matched = reference_match_groups(texts, groups, name, n, mask)
        overlap = len(matched) / n_ngrams if n_ngrams else 0.0
        row = {k: v[r] for k, v in table.items()}
        assert row == {
            "n_ngrams": None if counts == "matched" and n_ngrams and not matched else n_ngrams,
            "n_matched": len(matched),
            "overlap": overlap,
            "flagged": bool(matched) and overlap >= threshold,
            "first_group": matched[0] if matched else None,
            "matched_groups": matched,
        }, (r, texts)
    assert len(table["n_ngrams"]) == len(bounds_rows)


# ----------------------------------------------------------------------------------------- exact keys


@fuzz(200)
@given(column=columns(), lowercase=st.booleans(), threads=unsigned(0, 4), data=st.data())
def test_row_keys(column, lowercase, threads, data):
    bounds, bounds_rows = data.draw(row_bounds(len(column.values)))
    expected = first_refusal(argument_order(column, bounds), as_unsigned(threads))
    if expected is None and column.refusal() is None and column.first_invalid() is not None:
        expected = Refused("text", column.first_invalid())  # every text is read before the bounds
    expected = expected or texts_refusal(column, bounds, bounds_rows, validate_all=True)
    got = check(expected, _core.row_keys, column.array, bounds, lowercase=lowercase, threads=threads)
    if expected is None:
        assert got.type == pa.binary(16)
        assert got.to_pylist() == [reference_row_key(row, lowercase) for row in rows_of(column, bounds_rows)]


def test_row_keys_lower_case_every_code_point_as_this_interpreter():
    """Found by fuzzing: lower-casing followed the Rust tables (Unicode 16), not the interpreter's ``str.lower``
    (Unicode 14 in Python 3.11), so U+A7CB and its Unicode-16 lower case U+0264 had one key. Every code point now
    lower-cases as ``c.lower()`` does."""
    every = [chr(cp) for cp in range(0x110000) if not 0xD800 <= cp < 0xE000]
    got = _core.row_keys(pa.array(every), lowercase=True).to_pylist()
    expected = [reference_row_key([c], True) for c in every]
    assert [c for c, g, e in zip(every, got, expected, strict=True) if g != e] == []
    ramshorn = _core.row_keys(pa.array(["\ua7cb", "\u0264"]), lowercase=True).to_pylist()
    assert (ramshorn[0] == ramshorn[1]) == ("\ua7cb".lower() == "\u0264")


def test_row_keys_of_no_rows_are_an_empty_array():
    """Found by fuzzing: no rows (an empty array, or bounds of one offset) raised "Input iterable argument has no
    data" instead of giving an empty fixed_size_binary(16) array."""
    for texts, bounds in [(pa.array([], pa.string()), None), (pa.array(["a b"]), pa.array([1], pa.int64()))]:
        keys = _core.row_keys(texts, bounds)
        assert len(keys) == 0 and keys.type == pa.binary(16)


# -------------------------------------------------------------------------------------------- MinHash


@fuzz(150)
@given(
    num_perm=st.one_of(st.integers(1, 16), unsigned(1, 1024)),
    shingle=st.one_of(st.integers(1, 4), unsigned(1, 64)),
    seed=st.one_of(st.integers(0, 2**64 - 1), unsigned(0, 2**64 - 1)),
    column=columns(),
    threads=unsigned(0, 4),
    exact=st.booleans(),
    data=st.data(),
)
def test_minhash(num_perm, shingle, seed, column, threads, exact, data):
    made = first_refusal(as_unsigned(num_perm), as_unsigned(shingle), as_unsigned(seed))
    made = made or (None if 1 <= num_perm <= 1024 and 1 <= shingle <= 64 else Refused("data"))
    hasher = check(made, _core.MinHasher, num_perm, shingle, seed)
    if made is not None:
        return
    assert hasher.num_perm == num_perm
    bounds, bounds_rows = data.draw(row_bounds(len(column.values)))
    expected = first_refusal(argument_order(column, bounds), as_unsigned(threads))
    # The rows' texts are checked to be UTF-8 by the workers that hash them: those of the rows asked for only.
    expected = expected or texts_refusal(column, bounds, bounds_rows, validate_all=False)
    call = hasher.signatures_and_shingles if exact else hasher.signatures
    got = check(expected, call, column.array, bounds, threads=threads)
    if expected is not None:
        return
    lists = [reference_shingle_hash_list(row, shingle) for row in rows_of(column, bounds_rows)]
    signatures, shingles = got if exact else (got, None)
    assert (signatures.type.value_type, signatures.type.list_size) == (pa.uint32(), num_perm)
    assert signatures.to_pylist() == [reference_signature(set(s), num_perm, seed) for s in lists]
    if exact:
        assert shingles.to_pylist() == lists


# --------------------------------------------------------------------------------------- near dedup


@st.composite
def signature_rows(draw, num_perm: int, max_rows: int = 14) -> list[list[int]]:
    """Rows of signatures over a small alphabet (rows share bands), copies and near copies, rows without tokens."""
    alphabet = draw(st.integers(2, 6))
    value = st.one_of(st.integers(0, alphabet - 1), st.just(EMPTY), st.just(2**32 - 2))
    rows = []
    for _ in range(draw(st.integers(0, max_rows))):
        how = draw(st.sampled_from(["new", "copy", "empty"] if rows else ["new", "empty"]))
        if how == "empty":
            rows.append([EMPTY] * num_perm)
        elif how == "copy":
            row = list(rows[draw(st.integers(0, len(rows) - 1))])
            for _ in range(draw(st.integers(0, 2))):
                row[draw(st.integers(0, num_perm - 1))] = draw(value)
            rows.append(row)
        else:
            rows.append([draw(value) for _ in range(num_perm)])
    return rows


@st.composite
def signature_array(draw, rows: list[list[int]], num_perm: int):
    """Rows as ``fixed_size_list<uint32>[num_perm]`` (sliced out of a longer one, or not), or refused: another width,
    a null row or value, uint64 values; with the refusal."""
    how = draw(st.sampled_from(["plain", "plain", "sliced", "width", "null row", "null value", "uint64"]))
    flat = [v for row in rows for v in row]
    if how == "sliced":
        pad = [[7] * num_perm]
        values = pa.array([v for row in pad + rows + pad for v in row], pa.uint32())
        return pa.FixedSizeListArray.from_arrays(values, num_perm).slice(1, len(rows)), None
    if how == "width":
        width = num_perm + draw(st.sampled_from([1, -1])) if num_perm > 1 else 2
        return pa.FixedSizeListArray.from_arrays(pa.array([0] * width, pa.uint32()), width), Refused("data")
    if how == "null row":
        mask = pa.array([True] + [False] * len(rows))
        values = pa.array([0] * num_perm + flat, pa.uint32())
        return pa.FixedSizeListArray.from_arrays(values, num_perm, mask=mask), Refused("data")
    if how == "null value":
        return pa.FixedSizeListArray.from_arrays(pa.array([None] + flat[1:] if flat else [None] * num_perm,
                                                          pa.uint32()), num_perm), Refused("data")  # fmt: skip
    dtype = pa.uint64() if how == "uint64" else pa.uint32()
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, dtype), num_perm), (
        Refused("data") if how == "uint64" else None
    )


def shingle_sets_of(rows: list[list[int]], draw) -> list[list[int]]:
    """A set per row, consistent with its signature: empty exactly for a row without tokens; rows with equal
    signatures often equal sets."""
    sets = {}
    out = []
    for row in rows:
        if all(v == EMPTY for v in row):
            out.append([])
            continue
        key = tuple(row)
        if key not in sets or draw(st.booleans()):
            sets[key] = sorted(draw(st.sets(st.integers(0, 12), min_size=1, max_size=6)))
        out.append(sets[key])
    return out


@fuzz(200)
@given(
    num_perm=st.one_of(st.integers(1, 8), unsigned(1, 1024)),
    bands=st.one_of(st.integers(1, 4), unsigned(1, 1024)),
    rows_per_band=st.one_of(st.integers(1, 4), unsigned(1, 1024)),
    threshold=st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), real()),
    verify=st.sampled_from(["estimate", "estimate", "exact", "Exact", ""]),
    data=st.data(),
)
def test_near_dedup(num_perm, bands, rows_per_band, threshold, verify, data):
    made = first_refusal(as_unsigned(num_perm), as_unsigned(bands), as_unsigned(rows_per_band))
    ok = made is None and (
        verify in ("estimate", "exact")
        and 1 <= num_perm <= 1024
        and bands >= 1
        and rows_per_band >= 1
        and bands * rows_per_band <= num_perm
        and 0.0 <= threshold <= 1.0
    )
    made = made or (None if ok else Refused("data"))
    near = check(made, _core.NearDedup, num_perm, bands, rows_per_band, threshold, verify)
    if made is not None:
        return
    rows, added = data.draw(signature_rows(num_perm)), []  # the rows, the indices of those added
    exact = verify == "exact"
    sets = shingle_sets_of(rows, data.draw) if exact else None
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=3)))
    for start, end in zip([0, *cuts], [*cuts, len(rows)], strict=True):
        piece, refused = data.draw(signature_array(rows[start:end], num_perm))
        args = [piece]
        if exact:
            how = data.draw(st.sampled_from(["sets", "sets", "none", "shuffled", "null", "list"]))
            part = sets[start:end]
            if how == "none":
                refused = refused or Refused("data")
            elif how == "shuffled":  # any order, repeats allowed: the same sets
                part = [s[::-1] + s[:1] for s in part]
            elif how == "null":
                refused = refused or Refused("data")
            args.append(None if how == "none" else pa.array(
                [None, *part[1:]] if how == "null" else part,
                pa.list_(pa.uint64()) if how == "list" else pa.large_list(pa.uint64())))  # fmt: skip
            if how == "list":
                refused = refused or Refused("data")
        elif data.draw(st.integers(0, 9)) == 0:  # shingle sets are for verifying exactly only
            args.append(pa.array([[1]] * (end - start), pa.large_list(pa.uint64())))
            refused = refused or Refused("data")
        if len(args) > 1 and args[1] is not None and refused is None and len(args[1]) != end - start:
            refused = Refused("data")
        check(refused, near.add, *args)
        if refused is None:
            added += range(start, end)
        assert len(near) == len(added), "a refused piece adds nothing"
    roots = near.clusters().to_pylist()
    if exact:
        kept_sets = [set(sets[i]) for i in added]
        assert roots == reference_exact_clusters(kept_sets, [rows[i] for i in added], bands, rows_per_band, threshold)
        return
    added = [rows[i] for i in added]
    assert roots == reference_clusters(added, bands, rows_per_band, threshold)
    if not added:
        return
    keys, index = near.band_keys(pa.FixedSizeListArray.from_arrays(pa.array(sum(added, []), pa.uint32()), num_perm))
    assert (keys.to_pylist(), index.to_pylist()) == reference_band_keys(added, bands, rows_per_band)
    # Whole buckets, any subset of them, entries repeated and shuffled.
    chosen = data.draw(st.sets(st.sampled_from(keys.to_pylist()))) if len(keys) else set()
    entries = [(k, r) for k, r in zip(keys.to_pylist(), index.to_pylist(), strict=True) if k in chosen]
    repeated = data.draw(st.lists(st.sampled_from(entries), max_size=3)) if entries else []
    entries = data.draw(st.permutations(entries + repeated))
    buckets = [{r for k, r in entries if k == key} for key in chosen]
    got = near.bucket_clusters(pa.array([k for k, _ in entries], pa.uint64()), pa.array([r for _, r in entries],
                                                                                        pa.uint32()))  # fmt: skip
    assert got.to_pylist() == reference_clusters(added, bands, rows_per_band, threshold, buckets)
    # A row not added, keys and rows of unequal length, other types: refused.
    for bad_keys, bad_rows in [([1], [len(added)]), ([1, 2], [0]), (pa.array([1], pa.int64()), [0])]:
        bad_keys = bad_keys if isinstance(bad_keys, pa.Array) else pa.array(bad_keys, pa.uint64())
        check(Refused("data"), near.bucket_clusters, bad_keys, pa.array(bad_rows, pa.uint32()))


def test_near_dedup_refuses_num_perm_no_signature_has_at_once():
    """Found by fuzzing: ``NearDedup(2**40, 1, 1, 1.0)`` looped 2^40 times (a hang) to find the fewest equal
    positions; num_perm is now 1..=1024 as MinHasher's, checked first."""
    for num_perm in (2**40, 2**63, 1025, 0):
        ok, error = attempt(_core.NearDedup, num_perm, 1, 1, 1.0)
        assert not ok and isinstance(error, _core.SkyfilterError) and "num_perm must be 1..=1024" in str(error)
    assert len(_core.NearDedup(1024, 1, 1024, 1.0)) == 0


# ---------------------------------------------------------------------------------------- components

node = st.one_of(st.integers(0, 30), st.sampled_from([2**64 - 1, 2**64 - 2, 2**63, 2**32]))


@fuzz(200)
@given(
    edges=st.lists(st.tuples(node, node), max_size=40),
    how=st.sampled_from(["plain", "plain", "sliced", "unequal", "null", "int64", "pylist"]),
)
def test_components(edges, how):
    left, right = [x for x, _ in edges], [y for _, y in edges]
    expected = reference_components(left, right)
    a, b = pa.array(left, pa.uint64()), pa.array(right, pa.uint64())
    refused = None
    if how == "sliced":
        a = pa.array([5, *left, 6], pa.uint64()).slice(1, len(left))
        b = pa.array([7, *right, 8], pa.uint64()).slice(1, len(right))
    elif how == "unequal":
        b, refused = pa.array([*right, 1], pa.uint64()), Refused("data")
    elif how == "null":
        b, refused = pa.array([*right, None], pa.uint64()), Refused("data")
        a = pa.array([*left, 1], pa.uint64())
    elif how == "int64":
        a, refused = pa.array([x % 2**63 for x in left], pa.int64()), Refused("data")
    elif how == "pylist":
        a, refused = left, Refused("argument")
    got = check(refused, _core.components, a, b)
    if refused is None:
        assert (got[0].to_pylist(), got[1].to_pylist()) == expected


# --------------------------------------------------------------------------------------- large rows


@fuzz(4, long_share=0.02)
@given(
    words=st.lists(
        st.one_of(st.sampled_from(["aa", "Bb", "ΣΑΣ", "x", "éé", "\U0001f600", "İi"]), text), min_size=1, max_size=6
    ).map(" ".join),  # fmt: skip
    megabytes=st.sampled_from([1, 4, 10]),
    kernel=st.sampled_from(["tokenize", "row_keys", "match_rows", "signatures", "views"]),
)
def test_large_rows(words, megabytes, kernel):
    """One row of 1, 4 or 10 MB (a few words repeated) and a short one through a text kernel."""
    unit = (words + " ").encode()
    big = (unit * (megabytes * 2**20 // len(unit) + 1)).decode()
    texts = pa.array([big, words])
    if kernel == "tokenize":
        assert _core.tokenize(big) == tokens(big, "words")
    elif kernel == "row_keys":
        assert _core.row_keys(texts, lowercase=True).to_pylist() == [reference_row_key([t], True) for t in [big, words]]
    elif kernel == "match_rows":
        index = _core.BenchmarkIndex([pa.array([words + " " + words])], n=2)
        groups, _ = reference_index([[words + " " + words]], "words", 2)
        got = index.match_rows(texts).to_pydict()
        for r, t in enumerate([big, words]):
            n_ngrams, matched = reference_match_groups([t], groups, "words", 2, [])
            assert (got["n_ngrams"][r], got["matched_groups"][r]) == (n_ngrams, matched)
    elif kernel == "signatures":
        got = _core.MinHasher(8, 2, 1).signatures(texts).to_pylist()
        assert got == [reference_signature(reference_shingle_hashes([t], 2), 8, 1) for t in [big, words]]
    else:
        views = _core.string_views(texts, pa.array([1, 0, 0], pa.uint64()))
        assert views.to_pylist() == [words, big, big]
        assert np.asarray(views.buffers()[1]).size == 3 * 16  # the views only: the text is shared


def test_tokenize_refuses_lone_surrogates_cleanly():
    """A str holding a lone surrogate cannot cross into Rust as UTF-8: a ValueError (UnicodeEncodeError), no panic."""
    for call in (lambda: _core.tokenize("ab\ud800cd"), lambda: _core.tokenize("ab", "wo\udfffrds")):
        ok, error = attempt(call)
        assert not ok and isinstance(error, UnicodeEncodeError)

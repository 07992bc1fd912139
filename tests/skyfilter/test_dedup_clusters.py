"""Near-duplicate clusters are the connected components of the verified LSH candidate pairs (against a brute-force
reference), and bad LSH parameters or signatures are one-line errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skyfilter import _core
from skyfilter.dedup import DedupOptions, lsh_params

from tests.skyfilter.cli_helpers import assert_fails_cleanly
from tests.skyfilter.reference import (
    EMPTY,
    reference_band_keys,
    reference_clusters,
    reference_components,
    reference_exact_clusters,
    reference_shingles,
)


def as_signatures(rows: list[list[int]], num_perm: int) -> pa.FixedSizeListArray:
    values = pa.array([v for row in rows for v in row], pa.uint32())
    return pa.FixedSizeListArray.from_arrays(values, num_perm)


def clusters(rows: list[list[int]], num_perm: int, bands: int, rows_per_band: int, threshold: float, parts=()):
    """Clusters from ``_core.NearDedup``, the rows added in pieces cut at ``parts``."""
    near = _core.NearDedup(num_perm, bands, rows_per_band, threshold)
    cuts = [0, *sorted(parts), len(rows)]
    for start, end in zip(cuts, cuts[1:], strict=False):
        near.add(as_signatures(rows[start:end], num_perm))
    assert len(near) == len(rows)
    return near.clusters().to_pylist()


@st.composite
def lsh_cases(draw):
    num_perm = draw(st.sampled_from([3, 4, 6, 8]))
    # Few bands most of the time: rows then meet in few buckets, where the order of checks matters most.
    bands = draw(st.one_of(st.integers(1, 2), st.integers(1, num_perm)))
    rows_per_band = draw(st.integers(1, num_perm // bands))
    # A small alphabet makes rows share bands often; a large one makes similar pairs rare, so that components
    # meet only through a few rows. Near copies of earlier rows (one or two values changed) make chains, and
    # mixes of two earlier rows (each value from one of them) rows between two that are not alike.
    alphabet = draw(st.integers(2, 40))
    value = st.one_of(st.integers(0, alphabet - 1), st.just(EMPTY))
    row = st.one_of(st.just([EMPTY] * num_perm), st.lists(value, min_size=num_perm, max_size=num_perm))
    rows = [draw(row) for _ in range(draw(st.integers(1, 50)))]
    for i in range(1, len(rows)):
        how = draw(st.sampled_from(["new", "copy", "mix"]))
        first, second = rows[draw(st.integers(0, i - 1))], rows[draw(st.integers(0, i - 1))]
        if how == "copy":
            rows[i] = list(first)
            for _ in range(draw(st.integers(0, 2))):
                rows[i][draw(st.integers(0, num_perm - 1))] = draw(value)
        elif how == "mix":
            rows[i] = [a if draw(st.booleans()) else b for a, b in zip(first, second, strict=True)]
    if draw(st.booleans()):  # every row in the same bucket of band 0
        rows = [[0] * rows_per_band + r[rows_per_band:] for r in rows]
    threshold = draw(st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), st.floats(0.0, 1.0)))
    parts = draw(st.lists(st.integers(0, len(rows)), max_size=3))
    return rows, num_perm, bands, rows_per_band, threshold, parts


@settings(max_examples=300, deadline=None)
@given(case=lsh_cases())
def test_clusters_are_the_brute_force_components(case):
    rows, num_perm, bands, rows_per_band, threshold, parts = case
    expected = reference_clusters(rows, bands, rows_per_band, threshold)
    assert clusters(rows, num_perm, bands, rows_per_band, threshold, parts) == expected


def test_large_buckets_with_many_components_match_brute_force():
    """400 rows in a few large buckets: near copies of 40 seeds over a 3-value alphabet, so that buckets mix
    components that join only through a late row."""
    rng = np.random.default_rng(17)
    seeds = rng.integers(0, 3, size=(40, 8))
    rows = seeds[rng.integers(0, 40, size=400)].copy()
    flips = rng.random(rows.shape) < 0.3
    rows[flips] = rng.integers(0, 3, size=int(flips.sum()))
    rows = rows.tolist()
    for threshold in (0.5, 0.625, 0.75):
        assert clusters(rows, 8, 4, 2, threshold) == reference_clusters(rows, 4, 2, threshold)


def test_a_row_between_two_others_joins_them():
    """J(A, C) = 0.5 and J(B, C) = 0.75 but J(A, B) = 0.25: at 0.5, A - C - B is one cluster."""
    a, b, c = [1, 2, 3, 4], [1, 5, 6, 7], [1, 2, 6, 7]
    assert clusters([a, b, c], 4, 1, 1, 0.5) == [0, 0, 0]


def test_a_copy_is_found_behind_64_unrelated_rows_of_its_bucket():
    """65 rows that share the band but nothing else, then an exact copy and a near copy of the 65th."""
    rows = [[1, 10 + 3 * i, 11 + 3 * i, 12 + 3 * i] for i in range(65)]
    rows += [list(rows[64]), [*rows[64][:3], 7]]
    assert clusters(rows, 4, 1, 1, 0.5) == [*range(65), 64, 64]


def test_signatures_of_another_width_are_refused():
    near = _core.NearDedup(128, 16, 8, 0.7)
    half = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(128), pa.uint32()), 64)  # two rows of 64 values
    with pytest.raises(_core.SkyfilterError, match=r"fixed_size_list<uint32>\[128\]"):
        near.add(half)
    with_null = pa.FixedSizeListArray.from_arrays(pa.array([1, None, 3, 4], pa.uint32()), 4)
    with pytest.raises(_core.SkyfilterError, match="nulls"):
        _core.NearDedup(4, 2, 2, 0.5).add(with_null)
    assert len(near) == 0


@pytest.mark.parametrize("bands, rows_per_band", [(2**32, 2**32), (2**63, 2), (2**33, 2**31)])
def test_bands_times_rows_that_overflow_are_refused(bands, rows_per_band):
    with pytest.raises(_core.SkyfilterError, match="at most num_perm"):
        _core.NearDedup(128, bands, rows_per_band, 0.7)
    with pytest.raises(ValueError, match="at most num_perm"):
        DedupOptions(bands=bands, rows_per_band=rows_per_band)


@pytest.mark.parametrize("bands", ["4294967296", "100000000000000000000000"])
def test_cli_refuses_bands_beyond_num_perm_in_one_line(tmp_path, bands):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"prompt": ["p", "q"], "chosen": ["a", "b"], "rejected": ["c", "d"]}), src)
    args = ["dedup", src, "--bands", bands, "--rows-per-band", "4294967296"]
    assert_fails_cleanly(tmp_path, args, {"--out": "kept.parquet", "--dropped": "dropped.parquet"}, "num_perm")


def test_band_choice_works_without_numpy_2(monkeypatch):
    """numpy 1.26 (allowed by pyproject.toml) has no ``np.trapezoid``: the default near dedup must not need it."""
    monkeypatch.delattr(np, "trapezoid", raising=False)
    # The choices np.trapezoid made (numpy 2).
    assert [lsh_params(t, n) for t, n in [(0.7, 128), (0.5, 64), (0.9, 256), (0.3, 16)]] == [
        (21, 6), (21, 3), (15, 17), (12, 1)
    ]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(case=lsh_cases(), parts=st.integers(1, 4))
def test_clusters_of_buckets_split_over_machines_are_the_clusters(case, parts):
    """The ray engine's way: band keys per row, the buckets split by key over machines, the components within
    each part's buckets, then the components of the union of those: the one-machine clusters."""
    rows, num_perm, bands, rows_per_band, threshold, _ = case
    near = _core.NearDedup(num_perm, bands, rows_per_band, threshold)
    keys, index = near.band_keys(as_signatures(rows, num_perm))
    assert (keys.to_pylist(), index.to_pylist()) == reference_band_keys(rows, bands, rows_per_band)
    near.add(as_signatures(rows, num_perm))
    left, right = [], []
    for part in range(parts):
        mine = pa.array(np.asarray(keys) % parts == part)
        roots = near.bucket_clusters(keys.filter(mine), index.filter(mine)).to_pylist()
        left += range(len(rows))
        right += roots
    nodes, roots = _core.components(pa.array(left, pa.uint64()), pa.array(right, pa.uint64()))
    assert nodes.to_pylist() == list(range(len(rows)))
    assert roots.to_pylist() == reference_clusters(rows, bands, rows_per_band, threshold)


@settings(max_examples=200, deadline=None)
@given(edges=st.lists(st.tuples(st.integers(0, 2**64 - 1) | st.integers(0, 30), st.integers(0, 30)), max_size=60))
def test_components_are_named_by_their_smallest_node(edges):
    left, right = [x for x, _ in edges], [y for _, y in edges]
    nodes, roots = _core.components(pa.array(left, pa.uint64()), pa.array(right, pa.uint64()))
    assert (nodes.to_pylist(), roots.to_pylist()) == reference_components(left, right)


def test_bucket_and_component_inputs_are_checked():
    near = _core.NearDedup(4, 2, 2, 0.5)
    near.add(as_signatures([[1, 2, 3, 4]], 4))
    with pytest.raises(_core.SkyfilterError, match="not one of the 1 rows added"):
        near.bucket_clusters(pa.array([7], pa.uint64()), pa.array([1], pa.uint32()))
    with pytest.raises(_core.SkyfilterError, match="one key per row"):
        near.bucket_clusters(pa.array([7, 8], pa.uint64()), pa.array([0], pa.uint32()))
    with pytest.raises(_core.SkyfilterError, match="keys must be a non-null UInt64 array, got Int64"):
        near.bucket_clusters(pa.array([7], pa.int64()), pa.array([0], pa.uint32()))
    with pytest.raises(_core.SkyfilterError, match="as many left ends"):
        _core.components(pa.array([1], pa.uint64()), pa.array([], pa.uint64()))


# ------------------------------------------------------------------------------- exact verification

SHINGLE_WORDS = ["aa", "bb", "cc", "dd", "Ee", "éé", "x"]  # "x" is not a token (one character)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.lists(st.sampled_from(SHINGLE_WORDS), max_size=9).map(" ".join), min_size=0, max_size=2),
        min_size=1,
        max_size=30,
    ),
    shingle=st.integers(1, 3),
    num_perm=st.sampled_from([2, 4, 8]),
    bands=st.integers(1, 2),
    threshold=st.one_of(st.sampled_from([0.0, 0.5, 0.7, 1.0]), st.floats(0.0, 1.0)),
    parts=st.lists(st.integers(0, 30), max_size=2),
)
def test_exact_verification_is_the_brute_force_components(rows, shingle, num_perm, bands, threshold, parts):
    """Rows of a few texts over a small vocabulary (many shared shingles; few permutations, so that LSH makes
    candidates of pairs below the threshold): the shingle sets are the reference's (as many distinct hashes as
    distinct shingles), and the clusters are the components of the candidates whose exact Jaccard reaches the
    threshold, however the rows are added."""
    rows_per_band = num_perm // bands
    texts = pa.array([t for row in rows for t in row], pa.string())
    bounds = pa.array(np.cumsum([0] + [len(row) for row in rows]), pa.int64())
    signatures, sets = _core.MinHasher(num_perm, shingle, 1).signatures_and_shingles(texts, bounds)
    assert signatures.equals(_core.MinHasher(num_perm, shingle, 1).signatures(texts, bounds))
    expected_sets = [reference_shingles(row, shingle) for row in rows]
    assert [len(set(s)) for s in sets.to_pylist()] == [len(s) for s in expected_sets]
    near = _core.NearDedup(num_perm, bands, rows_per_band, threshold, "exact")
    cuts = [0, *sorted(p for p in parts if p <= len(rows)), len(rows)]
    for start, end in zip(cuts, cuts[1:], strict=False):
        near.add(signatures.slice(start, end - start), sets.slice(start, end - start))
    sig_rows = np.asarray(signatures.flatten()).reshape(len(rows), num_perm).tolist()
    expected = reference_exact_clusters(expected_sets, sig_rows, bands, rows_per_band, threshold)
    assert near.clusters().to_pylist() == expected


def test_exact_verification_needs_the_shingle_sets():
    signatures, sets = _core.MinHasher(4, 1).signatures_and_shingles(pa.array(["aa bb", "aa cc"]))
    with pytest.raises(_core.SkyfilterError, match="needs the rows' shingle sets"):
        _core.NearDedup(4, 2, 2, 0.5, "exact").add(signatures)
    with pytest.raises(_core.SkyfilterError, match="only for verifying exactly"):
        _core.NearDedup(4, 2, 2, 0.5).add(signatures, sets)
    with pytest.raises(_core.SkyfilterError, match="1 shingle sets for 2 signatures"):
        _core.NearDedup(4, 2, 2, 0.5, "exact").add(signatures, sets.slice(0, 1))
    with pytest.raises(_core.SkyfilterError, match="large_list<uint64>"):
        _core.NearDedup(4, 2, 2, 0.5, "exact").add(signatures, pa.array([[1], [2]], pa.list_(pa.uint64())))
    with pytest.raises(_core.SkyfilterError, match="verify must be 'estimate' or 'exact'"):
        _core.NearDedup(4, 2, 2, 0.5, "exactly")


def test_exact_verification_takes_each_set_in_any_order_with_repeats():
    """The shingle sets come in text order with their repeats (a row is sorted only when a candidate pair compares
    it); rows given shuffled, repeated or sorted cluster alike. J({1..10}, {1..8}) = 0.8, J({1..10}, {1..5}) = 0.5."""
    signatures = pa.FixedSizeListArray.from_arrays(pa.array([1, 2, 3, 4] * 3, pa.uint32()), 4)
    rows = [list(range(1, 11)), list(range(1, 9)), list(range(1, 6))]
    for given_rows in (rows, [r[::-1] for r in rows], [r + r[:3] for r in rows], [r[1::2] + r[::2] for r in rows]):
        near = _core.NearDedup(4, 1, 4, 0.7, "exact")
        near.add(signatures, pa.array(given_rows, pa.large_list(pa.uint64())))
        assert near.clusters().to_pylist() == [0, 0, 2]

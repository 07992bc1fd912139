"""The Rust extension's boundary: sizes checked before allocating, panics and I/O errors as catchable exceptions,
ties and missing values in selection, and the one worker pool (cached, and safe in a forked process)."""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from skyfilter import _core
from skyfilter.select import REASONS

KEPT, MISSING, TOP = REASONS.index("kept"), REASONS.index("missing_score"), REASONS.index("top_fraction")


def test_a_row_count_no_memory_holds_is_an_error_not_an_abort():
    with pytest.raises(_core.SkyfilterError, match="do not fit in memory"):
        _core.row_reasons(10**13)
    # A column of another length is named, whether a rule reads it or not.
    with pytest.raises(_core.SkyfilterError, match="chosen score has 1 rows, expected 10000000000000"):
        _core.row_reasons(10**13, chosen=pa.array([1.0]))


def test_negative_zero_ties_with_zero():
    for scores in ([-0.0, 0.0], [0.0, -0.0]):
        codes = _core.top_fraction(
            pa.array([KEPT, KEPT], pa.uint8()), pa.array(scores), pa.array([0, 0], pa.uint32()), [0.5], threads=1
        )
        assert codes.to_pylist() == [KEPT, TOP], f"{scores}: the tie goes to the earlier row"


def test_a_missing_offset_drops_the_row_as_missing_score():
    codes, adjusted = _core.row_reasons(3, score=pa.array([1.0, 2.0, 3.0]), offset=pa.array([0.0, np.nan, None]))
    assert codes.to_pylist() == [KEPT, MISSING, MISSING]
    assert adjusted[0].as_py() == 1.0


def test_a_panic_is_a_skyfilter_error():
    # pyo3's PanicException derives from BaseException and escapes `except Exception` (and the CLI).
    with pytest.raises(_core.SkyfilterError, match=r"internal error in skyfilter\._core .*: boom at row 3"):
        _core._panic("boom at row 3")


def test_io_errors_keep_their_kind_and_path(tmp_path):
    missing = tmp_path / "nope.parquet"
    with pytest.raises(FileNotFoundError) as caught:
        _core.ParquetBatches(str(missing))
    assert caught.value.filename == str(missing) and caught.value.errno == 2
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions: no PermissionError to provoke")
    locked = tmp_path / "locked.parquet"
    locked.write_bytes(b"PAR1")
    locked.chmod(0)
    with pytest.raises(PermissionError) as caught:
        _core.ParquetBatches(str(locked))
    assert caught.value.filename == str(locked)


def _worker_threads() -> list[str]:
    tasks = Path("/proc/self/task")
    return sorted(n for t in tasks.iterdir() if (n := (t / "comm").read_text().strip()).startswith("skyfilter-"))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to list threads")
def test_one_pool_per_thread_count_is_built_once():
    texts = pa.array([f"row {i} some words" for i in range(10_000)])
    _core.row_keys(texts, threads=3)
    _core.MinHasher(16).signatures(texts, threads=3)  # each kernel once: the pools it uses exist from now on
    workers = _worker_threads()
    assert len(workers) >= min(3, len(os.sched_getaffinity(0)))  # a pool has no more threads than the cores
    for _ in range(3):
        _core.row_keys(texts, threads=3)
        _core.MinHasher(16).signatures(texts, threads=3)
    assert _worker_threads() == workers  # the same workers: no pool built per call


def _match_in_child(queue) -> None:
    index = _core.BenchmarkIndex([pa.array(["the quick brown fox jumps over the lazy dog"])], n=3)
    texts = pa.array(["a quick brown fox jumps", "nothing"] * 5_000)
    flagged = index.match_rows(texts, threads=2).column("flagged").to_pylist()
    keys = _core.row_keys(texts, threads=2)
    queue.put((sum(flagged), len(keys)))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_kernels_run_in_a_process_forked_after_the_pool_started():
    _match_in_child(multiprocessing.Queue())  # the parent's pools exist (and are busy-free) before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_match_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("a kernel in the forked process deadlocked on the parent's worker pool")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == (5_000, 10_000)

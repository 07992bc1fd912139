"""Benchmark: skyfilter contaminate against the scikit-learn reference method and a plain-Python matcher.

Data: the RMB pairwise prompts (first user turn) from ../shared/data/prefs/rmb_pairwise, replicated to
--rows rows (default 1,000,000), matched against the offline RewardBench prompt sources (4,341 prompts)
plus the rebuilt RewardBench llmbar rows (419), with the `skywork` preset (7-grams, any hit).

Measures, in one run on this machine:
  * the skyfilter kernel (`Matcher.index.match_rows`) on the whole replicated set at 1 and 2 threads (rows/s,
    MB/s, MB/s per core), as the command runs it (`counts="matched"`: flags and the evidence of matched rows, which
    is also all the peers compute) and as the API runs it (`counts="all"`: every row's distinct n-grams counted,
    the `n_ngrams` column of `skyfilter.contaminate()`);
  * the public API skyfilter.contaminate() on the whole set (adapters and evidence included), at 1 and 2 threads;
  * scikit-learn CountVectorizer(ngram_range=(7, 13)) and a plain-Python set-of-7-grams matcher on slices;
  * the `skyfilter contaminate` command streaming parquet files of 1,000 rows (its start-up), 1/4, all and twice
    the rows with every core (end-to-end rows/s, CPU time and peak RSS, to show memory does not grow with the
    input), and all the rows on one core (SKYFILTER_THREADS=1, pinned to core 0); each the median of --repeats
    runs, the inputs written and flushed to disk before the first;
  * the command's input decoded alone (its parquet reader, at 1 thread and on every core): with the kernel's work
    and the start-up it gives the command's ceilings (rows/s against the kernel's, and 1 -> 2 cores);
  * pathological rows at 1 thread: rows that copy half and all of a benchmark (the prompts of the llmbar file,
    about 40K tokens a row), and single rows of 1, 10, 20 and 40 MB (RMB prompts joined), in MB/s: time linear in the
    text keeps the larger at the smaller's rate.
Ratios at the end: the API's and the CLI's rows/s against the kernel's doing the same work (all cores), 1 -> 2
threads for each, and per core against the peers (the kernel as the command runs it).

Run: python bench/contaminate.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import sys

# bench/select.py is named like the standard library's `select`, and Python puts this folder first on the path:
# move it last, so that the standard library wins and the sibling modules are still found (run as a script only:
# imported by bench/profiles.py, the path is already in order).
if __name__ == "__main__":
    sys.path.append(sys.path.pop(0))

import argparse
import compileall
import os
import re
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import skyfilter
import skyshared
from measure import run_measured
from skyfilter import Matcher, _core, load_benchmark, match_texts, read_table, to_pairs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
WORK = ROOT / "bench" / "_data"
BENCH_FILES = [
    (DATA / "bench/rewardbench_sources/rewardbench_prompt_sources_all.jsonl", "subset_family"),
    (DATA / "bench/rewardbench_partial/llmbar_reconstructed_rb1_layout.jsonl", "subset"),
]


def rmb_prompts(rows: int) -> tuple[pa.Array, int]:
    """The RMB pairwise prompts (first user turn), replicated to ``rows`` rows; and how many distinct rows."""
    rmb = to_pairs(read_table(DATA / "prefs/rmb_pairwise/rmb_pairwise.jsonl.gz"), source="rmb")
    base, _ = match_texts(rmb, "prompt")
    return pa.concat_arrays([base] * -(-rows // len(base)))[:rows], len(base)


def write_command_input(prompts: pa.Array, path: Path) -> None:
    """``prompts`` as the command's input: a parquet file of ``prompt`` and ``source``, row groups of 65,536."""
    table = pa.table({"prompt": prompts, "source": pa.repeat(pa.scalar("rmb"), len(prompts))})
    pq.write_table(table, path, row_group_size=65_536)


def distinct_rows(prompts: pa.Array) -> pa.Array:
    """``prompts`` made distinct row by row, each prefixed with its row number: the command's writer then compresses
    every text, as it would for a real pool, where the replicated rows' 14,543 texts fit one dictionary a row group."""
    numbers = pa.array([f"#{i} " for i in range(len(prompts))])
    return pc.binary_join_element_wise(numbers, prompts, "")


def command_args(path: Path, out: Path) -> list[str]:
    """The contaminate command's arguments on the input ``path``, against BENCH_FILES, its outputs in ``out``."""
    return [
        "contaminate", str(path), *(a for file, _ in BENCH_FILES for a in ("--bench-file", str(file))),
        "--out", str(out / "clean.parquet"), "--flagged", str(out / "flagged.parquet"),
        "--report", str(out / "report.json"), "-q",
    ]  # fmt: skip


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def text_bytes(texts: pa.Array) -> int:
    return int(pc.sum(pc.binary_length(texts)).as_py() or 0)


TOKEN = re.compile(r"(?u)\b\w\w+\b")


def python_grams(text: str, n: int = 7):
    t = TOKEN.findall(text.lower())
    return (tuple(t[i : i + n]) for i in range(len(t) - n + 1))


def python_matcher(bench: list[str], prompts: list[str]) -> list[bool]:
    """The plain-Python peer: a set of benchmark 7-grams, any hit flags (same rule as skywork)."""
    grams = {g for p in bench for g in python_grams(p)}
    return [any(g in grams for g in python_grams(p)) for p in prompts]


def sklearn_matcher(bench: list[str], prompts: list[str]) -> list[bool]:
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(ngram_range=(7, 13)).fit(bench)
    return list(np.asarray(vectorizer.transform(prompts).sum(axis=1)).ravel() > 0)


def pathological_lines(matcher: Matcher, benchmarks, prompts: pa.Array, record, repeats: int) -> list[str]:
    """Rows that copy a benchmark (half of it, then all of it: about 5K and 11K n-grams a row, every one matched)
    and one long row (1, 10, 20 and 40 MB of RMB prompts joined), at 1 thread: time linear in the text keeps the
    MB/s of the larger as the smaller's. A row of 1 MB still has its n-grams' tables in the caches; from a few MB
    on, a row's tables are read from memory, at a lower but constant rate: 20 and 40 MB are both past that step (10
    MB sits on it on this machine since the kernel got faster: 221-235 MB/s against 161-191 for 20 and 40 MB), so
    their ratio is what shows linearity."""
    llmbar = [p for p in benchmarks[1].prompts.to_pylist() if p]
    joined = "\n".join(prompts[:60_000].to_pylist())  # about 45 MB (with --rows 60,000 or more)
    while len(joined) < 40_000_000:
        joined = f"{joined}\n{joined}"
    cases = {
        "rows that copy half a benchmark": pa.array(["\n".join(llmbar[: len(llmbar) // 2])] * 50),
        "rows that copy a benchmark whole": pa.array(["\n".join(llmbar)] * 50),
        "one 1 MB row": pa.array([joined[:1_000_000]]),  # its n-grams' tables still in the caches
        "one 10 MB row": pa.array([joined[:10_000_000]]),
        "one 20 MB row": pa.array([joined[:20_000_000]]),
        "one 40 MB row": pa.array([joined[:40_000_000]]),
    }
    rates = {}
    for what, texts in cases.items():
        t = median_time(lambda x=texts: matcher.index.match_rows(x, threads=1), repeats)
        record(f"kernel, 1 thread: {what}", texts, t, 1, f"{text_bytes(texts) / len(texts) / 1e6:.2f} MB a row")
        rates[what] = text_bytes(texts) / t
    names = list(cases)
    return [f"{names[i + 1]} / {names[i]}: {rates[names[i + 1]] / rates[names[i]]:.2f}x the MB/s" for i in (0, 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sklearn-rows", type=int, default=10_000)
    parser.add_argument("--python-rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--kernel-only",
        action="store_true",
        help="time the kernel at 1 and 2 threads only (to compare two builds: run it with each on PYTHONPATH)",
    )
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"needs the real data at {DATA}")

    prompts, distinct = rmb_prompts(args.rows)
    copies = -(-args.rows // distinct)
    nbytes = text_bytes(prompts)
    benchmarks = [load_benchmark(path, subset_column=subset) for path, subset in BENCH_FILES]
    bench_list = [p for b in benchmarks for p in b.prompts.to_pylist() if p]
    print(f"# data: {len(prompts):,} RMB prompts ({distinct:,} distinct rows x {copies}), {nbytes / 1e6:,.0f} MB")
    print(f"# benchmark: {len(bench_list):,} prompts; {os.cpu_count()} cores; skyfilter {skyfilter.__version__}")
    print()

    rows: list[tuple[str, str, float, float, str]] = []  # (what, rows, rows/s, MB/s per core, note)

    def record(what: str, texts: pa.Array, seconds: float, cores: int, note: str = "") -> float:
        n = len(texts)
        rate = n / seconds
        mb = text_bytes(texts) / 1e6 / seconds / cores
        rows.append((what, f"{n:,}", rate, mb, note))
        print(f"{what:<48} {n:>10,} rows  {rate:>12,.0f} rows/s  {mb:>8.1f} MB/s/core  {note}", flush=True)
        return rate

    matcher = Matcher(benchmarks, preset="skywork")
    sky: dict[int, float] = {}  # counts="matched": what the command and the peers do
    sky_all: dict[int, float] = {}  # counts="all": what the API does
    for threads in (1, 2):
        for counts, rates in (("matched", sky), ("all", sky_all)):
            t = median_time(
                lambda th=threads, c=counts: matcher.index.match_rows(prompts, threads=th, counts=c), args.repeats
            )
            what = f"skyfilter kernel, {threads} thread(s), counts={counts}"
            rates[threads] = record(what, prompts, t, threads, "every row's n-grams counted" if counts == "all" else "")
    if args.kernel_only:
        print(f"- scaling 1 -> 2 threads: {sky[2] / sky[1]:.2f}x, counts=all {sky_all[2] / sky_all[1]:.2f}x")
        return
    flags = matcher.index.match_rows(prompts, threads=2).column("flagged").to_numpy(zero_copy_only=False)
    table = pa.table({"prompt": prompts})
    api: dict[int, float] = {}
    for threads in (1, 2):
        t = median_time(lambda th=threads: skyfilter.contaminate(table, benchmarks, threads=th), args.repeats)
        api[threads] = record(f"skyfilter.contaminate() API, {threads} thread(s)", prompts, t, threads,
                              "adapters + evidence")  # fmt: skip
    pathological = pathological_lines(matcher, benchmarks, prompts, record, args.repeats)

    py_prompts = prompts[: args.python_rows].to_pylist()
    start = time.perf_counter()
    py_flags = python_matcher(bench_list, py_prompts)
    seconds = time.perf_counter() - start
    python_rate = record("plain-Python set of 7-grams, 1 thread", prompts[: args.python_rows], seconds, 1)
    assert py_flags == list(flags[: len(py_flags)]), "plain-Python matcher disagrees with skyfilter"

    sk_prompts = prompts[: args.sklearn_rows].to_pylist()
    start = time.perf_counter()
    sk_flags = sklearn_matcher(bench_list, sk_prompts)
    seconds = time.perf_counter() - start
    sk_slice = prompts[: args.sklearn_rows]
    sklearn_rate = record("scikit-learn CountVectorizer(7, 13), 1 thread", sk_slice, seconds, 1, "fit + transform")
    assert sk_flags == list(flags[: len(sk_flags)]), "scikit-learn disagrees with skyfilter"

    # Streaming from parquet: the same command on 1/4, all and twice the rows; peak RSS should not grow. "1 core"
    # is the command pinned to one core (SKYFILTER_THREADS=1 alone still lets the writer's thread use the other).
    # A run on 1,000 rows gives the fixed start-up cost (interpreter, imports, benchmarks, index); the difference
    # between the 2x and 1x runs gives the rate at which the command streams rows once started.
    WORK.mkdir(parents=True, exist_ok=True)
    stream: list[tuple[int, float, int]] = []
    cli: dict[int, float] = {}
    seconds_at: dict[int, float] = {}
    cores = os.cpu_count() or 1
    runs = ((1_000, 0), (len(prompts) // 4, 0), (len(prompts), 0), (len(prompts), 1), (2 * len(prompts), 0))
    # The command as installed: pip writes the modules' byte-code at install, where a checkout run under
    # PYTHONDONTWRITEBYTECODE (as this machine's shells are) compiles them from source at every start (~0.07 s)
    for package in (skyfilter, skyshared):
        if not compileall.compile_dir(Path(package.__file__).parent, quiet=1):
            raise SystemExit(f"{package.__name__}: its modules did not compile")
    try:
        # Every input written first and flushed to disk, so that no run shares the machine with the writeback of
        # the next one's file; each run then repeated (the median kept, as for the kernel and the API).
        for n in sorted({n for n, _ in runs}):
            write_command_input(pa.concat_arrays([prompts, prompts])[:n], WORK / f"rmb_prompts_{n}.parquet")
        distinct = distinct_rows(prompts)
        write_command_input(distinct, WORK / "rmb_distinct.parquet")
        os.sync()
        # What the command cannot do without: decoding its input (its parquet reader, the batches dropped as
        # read). At one thread (the least work it takes), with the kernel's at one thread, it bounds the command's
        # rate from above, the writer and the Python around them taken as free.
        path = str(WORK / f"rmb_prompts_{len(prompts)}.parquet")
        read: dict[int, float] = {}
        for threads in sorted({1, cores}):
            t = median_time(
                lambda th=threads: sum(b.num_rows for b in _core.ParquetBatches(path, None, threads=th)), args.repeats
            )
            read[threads] = record(f"reading the parquet input alone, {threads} thread(s)", prompts, t, threads)

        def run_command(path: Path, texts: pa.Array, threads: int, what: str = "") -> tuple[float, float, int]:
            """The command on ``path`` (``threads`` 0: every core; 1: pinned to core 0): its median seconds, its
            rows/s and its peak RSS."""
            os.environ["SKYFILTER_THREADS"] = str(threads)
            command = [str(Path(sys.executable).parent / "skyfilter"), *command_args(path, WORK)]
            measured = [run_measured(command, cpus=[0] if threads == 1 else None) for _ in range(args.repeats)]
            seconds = statistics.median(r.seconds for r in measured)
            rss = max(r.rss for r in measured)
            cpu = statistics.median(r.cpu_seconds for r in measured)
            used = threads or cores
            rate = record(f"skyfilter contaminate CLI, parquet -> parquet{what}, {used} core(s)", texts, seconds,
                          used, f"peak RSS {rss / 2**20:,.0f} MiB, {cpu:.1f} s CPU")  # fmt: skip
            return seconds, rate, rss

        for n, threads in runs:
            texts = pa.concat_arrays([prompts, prompts])[:n]
            seconds, rate, rss = run_command(WORK / f"rmb_prompts_{n}.parquet", texts, threads)
            used = threads or cores
            if threads == 0:
                stream.append((n, seconds, rss))
                seconds_at[n] = seconds
            if n == len(prompts):
                cli[used] = rate
        _, distinct_rate, _ = run_command(WORK / "rmb_distinct.parquet", distinct, 0, ", distinct rows")
    finally:
        os.environ.pop("SKYFILTER_THREADS", None)
        shutil.rmtree(WORK, ignore_errors=True)
    startup = seconds_at[1_000]
    streaming = len(prompts) / (seconds_at[2 * len(prompts)] - seconds_at[len(prompts)])
    # The command's ceilings: its input decoded and matched with nothing else (no writer, no Python), the work of
    # each at one thread shared by the cores without loss, after its serial start-up; and 1 -> 2 cores with that
    # start-up serial (Amdahl), from its own one-core run.
    busy = len(prompts) * (1 / read[1] + 1 / sky[1]) / min(cores, 2)
    ceiling_streaming = len(prompts) / busy
    ceiling = len(prompts) / (startup + busy)
    one_core = len(prompts) / cli[1]
    ceiling_scaling = one_core / (startup + (one_core - startup) / min(cores, 2))

    print()
    print("| what | rows | rows/s | MB/s of prompt text per core | note |")
    print("|---|---:|---:|---:|---|")
    for what, n, rate, mb, note in rows:
        print(f"| {what} | {n} | {rate:,.0f} | {mb:.1f} | {note} |")
    print()
    print(f"- flagged: {int(flags.sum()):,} of {len(flags):,} rows")
    for peer, rate in (("scikit-learn", sklearn_rate), ("plain Python", python_rate)):
        print(f"- skyfilter / {peer}: {sky[1] / rate:,.0f}x at 1 thread, {sky[2] / rate:,.0f}x at 2 threads")
    print(f"- API / kernel (counts=all) rows/s: {api[2] / sky_all[2]:.0%} at 2 threads, {api[1] / sky_all[1]:.0%} at 1")
    print(f"- CLI ({len(prompts):,} rows, parquet -> parquet) / kernel (counts=matched) rows/s: "
          f"{cli[cores] / sky[min(cores, 2)]:.0%} on {cores} cores, {cli[1] / sky[1]:.0%} on 1")  # fmt: skip
    print(f"- CLI start-up (1,000 rows): {startup:.2f} s; rows streamed once started (the {2 * len(prompts):,} run "
          f"less the {len(prompts):,} one): {streaming:,.0f} rows/s = {streaming / sky[min(cores, 2)]:.0%} of the "
          f"kernel on {cores} cores")  # fmt: skip
    print(f"- scaling 1 -> 2 threads: kernel {sky[2] / sky[1]:.2f}x (counts=all {sky_all[2] / sky_all[1]:.2f}x), "
          f"API {api[2] / api[1]:.2f}x, CLI {cli[cores] / cli[1]:.2f}x")  # fmt: skip
    kernel = sky[min(cores, 2)]
    print(f"- CLI ceiling (the start-up, then the one-thread work of reading the input and of the kernel shared by "
          f"{min(cores, 2)} cores, the writer free): {ceiling:,.0f} rows/s = {ceiling / kernel:.0%} of the kernel at "
          f"{len(prompts):,} rows, {ceiling_streaming / kernel:.0%} once started; 1 -> 2 cores with the start-up "
          f"serial: {ceiling_scaling:.2f}x")  # fmt: skip
    print(
        f"- CLI on the rows made distinct (each prefixed with its row number): {distinct_rate:,.0f} rows/s = "
        f"{distinct_rate / kernel:.0%} of the kernel, {distinct_rate / cli[cores]:.2f}x the replicated rows' rate"
    )
    for line in pathological:
        print(f"- linear in the text, 1 thread: {line}")
    for n, _, rss in stream:
        print(f"- peak RSS streaming {n:,} rows from parquet: {rss / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()

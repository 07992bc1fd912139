"""Benchmark: the polars plugin (``import skyfilter.polars``) against the same work through pyarrow and the Python API.

Data: the 14,543 RMB pairs (../shared/data/prefs/rmb_pairwise) as flat prompt / chosen / rejected texts,
replicated with edits to --rows rows (default 200,000; bench/dedup.py's builder). Benchmark: the 4,341 prompts of
RewardBench's sources (../shared/data/bench/rewardbench_sources), the index built once outside the timings.

The work, on the prompt column: the contamination flag and the first matched n-gram (skywork preset), the dedup
row key and a 128-permutation MinHash signature of every row, then only the rows not flagged.

  * polars: one lazy query, ``with_columns(contamination, row_key, minhash)``, the struct's ``flagged`` and
    ``matched_ngram`` fields, ``filter(~flagged)``, collected with the in-memory engine and with the streaming
    engine;
  * pyarrow + the Python API: ``skyfilter.contaminate(table, bench, prompt_column="prompt")`` (flags and evidence),
    ``_core.row_keys`` and ``MinHasher.signatures`` on the column, the columns appended, ``Table.filter``;
  * parquet -> parquet, streaming: ``scan_parquet(...).with_columns(...).filter(...).sink_parquet(...)`` against
    pyarrow's ``ParquetFile.iter_batches`` -> the same per-batch work -> ``ParquetWriter`` (row groups of 65,536);
  * whole-frame steps: ``df.skyfilter.dedup()`` against ``skyfilter.dedup_rows(table)`` (the polars frame's
    conversion both ways is the difference).

Checks that both sides give the same flags, n-grams, keys and signatures (and the same rows). In-memory figures are
the best of three runs of each side, alternating.

Run: python bench/polars_plugin.py [--rows 200000]
"""

from __future__ import annotations

import sys

# bench/select.py is named like the standard library's `select`: keep this folder last on the path (bench/dedup.py).
sys.path.append(sys.path.pop(0))

import argparse
import os

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import skyfilter
import skyfilter.polars  # noqa: F401  (registers the .skyfilter namespace)
from dedup import DATA, WORK, flat_pairs, replicate, timed
from skyfilter import _core
from skyfilter.contaminate import Matcher
from skyfilter.dedup import DedupOptions

SOURCES = DATA / "bench/rewardbench_sources/rewardbench_prompt_sources_all.jsonl"
NUM_PERM = 128


def polars_query(frame: pl.LazyFrame, matcher: Matcher) -> pl.LazyFrame:
    prompt = pl.col("prompt").skyfilter
    result = pl.col("result").struct
    return (
        frame.with_columns(result=prompt.contamination(matcher), key=prompt.row_key(), minhash=prompt.minhash(NUM_PERM))
        .select(*frame.collect_schema(), result.field("flagged"), result.field("matched_ngram"), "key", "minhash")
        .filter(~pl.col("flagged"))
    )


def pyarrow_work(table: pa.Table | pa.RecordBatch, bench, hasher: _core.MinHasher) -> pa.Table:
    table = table if isinstance(table, pa.Table) else pa.Table.from_batches([table])
    result = skyfilter.contaminate(table, bench, prompt_column="prompt")
    prompt = table.column("prompt").combine_chunks()
    columns = {
        "flagged": result.column("flagged"),
        "matched_ngram": result.column("matched_ngram"),
        "key": _core.row_keys(prompt),
        "minhash": hasher.signatures(prompt),
    }
    for name, values in columns.items():
        table = table.append_column(name, values)
    return table.filter(pc.invert(result.column("flagged")))


def same(ours: pa.Table, theirs: pl.DataFrame) -> bool:
    """Equal rows and values, strings and binaries compared as polars holds them."""
    return pl.from_arrow(ours).equals(theirs)


def best_of_3(*functions) -> list[tuple[float, object]]:
    """Each function's best time of three runs, alternating (these machines drift), and its last result."""
    runs = [[timed(f) for f in functions] for _ in range(3)]
    return [(min(r[i][0] for r in runs), runs[-1][i][1]) for i in range(len(functions))]


def record(what: str, seconds: float, rows: int, note: str = "") -> float:
    print(f"{what:<72} {seconds:8.2f} s {rows / seconds:>12,.0f} rows/s  {note}", flush=True)
    return seconds


def queries(table: pa.Table, bench, matcher: Matcher, hasher: _core.MinHasher) -> None:
    query = polars_query(pl.from_arrow(table).lazy(), matcher)
    (arrow_s, ours), (memory_s, in_memory), (stream_s, streamed) = best_of_3(
        lambda: pyarrow_work(table, bench, hasher), query.collect, lambda: query.collect(engine="streaming")
    )
    if not (same(ours, in_memory) and in_memory.equals(streamed)):
        sys.exit("the polars query and the pyarrow work differ")
    note = f"{in_memory.height:,} rows kept"
    base = record("pyarrow + Python API (contaminate, row_keys, signatures, filter)", arrow_s, table.num_rows, note)
    record("polars lazy query, in-memory engine", memory_s, table.num_rows, f"{base / memory_s:.2f}x")
    record("polars lazy query, streaming engine", stream_s, table.num_rows, f"{base / stream_s:.2f}x")


def dedup_step(table: pa.Table) -> None:
    frame = pl.from_arrow(table)
    (rows_s, rows), (frame_s, framed) = best_of_3(
        lambda: skyfilter.dedup_rows(table, DedupOptions()), lambda: frame.skyfilter.dedup(DedupOptions())
    )
    if not same(rows, framed):
        sys.exit("df.skyfilter.dedup and dedup_rows differ")
    kept = int((framed["reason"] == "kept").sum())
    base = record("skyfilter.dedup_rows(pyarrow table)", rows_s, table.num_rows, f"{kept:,} kept")
    record("df.skyfilter.dedup() (polars frame in and out)", frame_s, table.num_rows, f"{base / frame_s:.2f}x")


def files(table: pa.Table, bench, matcher: Matcher, hasher: _core.MinHasher) -> None:
    WORK.mkdir(exist_ok=True)
    src, out_arrow, out_polars = (WORK / f"{n}.parquet" for n in ("plugin", "plugin_arrow", "plugin_polars"))
    pq.write_table(table, src, row_group_size=65_536)

    def arrow_file() -> None:
        writer = None
        for batch in pq.ParquetFile(src).iter_batches(batch_size=65_536):
            clean = pyarrow_work(batch, bench, hasher)
            writer = writer or pq.ParquetWriter(out_arrow, clean.schema)
            writer.write_table(clean, row_group_size=65_536)
        writer.close()

    def polars_file() -> None:
        polars_query(pl.scan_parquet(src), matcher).sink_parquet(out_polars, row_group_size=65_536)

    (arrow_s, _), (polars_s, _) = best_of_3(arrow_file, polars_file)
    if not pl.read_parquet(out_polars).equals(pl.read_parquet(out_arrow)):
        sys.exit("the parquet outputs differ")
    base = record("parquet -> parquet: pyarrow iter_batches + Python API + ParquetWriter", arrow_s, table.num_rows)
    record("parquet -> parquet: polars scan_parquet + plugin + sink_parquet", polars_s, table.num_rows,
           f"{base / polars_s:.2f}x")  # fmt: skip
    for path in (src, out_arrow, out_polars):
        path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    table, _ = replicate(flat_pairs(), args.rows)
    table = table.combine_chunks()
    bench = skyfilter.load_benchmark(SOURCES, prompt_column="prompt", subset_column="subset_family")
    matcher, hasher = Matcher([bench]), _core.MinHasher(NUM_PERM)
    print(f"{table.num_rows:,} rows, {table.column('prompt').nbytes / 1e6:,.0f} MB of prompts, "
          f"{os.cpu_count()} cores, polars {pl.__version__}, pyarrow {pa.__version__}\n")  # fmt: skip
    queries(table, bench, matcher, hasher)
    dedup_step(table)
    files(table, bench, matcher, hasher)


if __name__ == "__main__":
    main()

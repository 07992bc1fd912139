"""Benchmark: skyfilter select against an idiomatic polars expression.

Data: the 14,543 RMB pairs (../shared/data/prefs/rmb_pairwise) as flat prompt / chosen / rejected texts,
replicated with edits to --rows rows (default 1,000,000; bench/dedup.py's builder), plus Magpie-like score
columns from a fixed seed: task_category in the paper's category mix, four generators, an ArmoRM-like mean
score rounded to 1/256 (many ties), chosen / rejected scores and a second reward model's two scores.

Rules: the Skywork recipe (adjusted score = score + generator offset; top 30% of Math and of Coding &
debugging, 10% of every other category), after a margin >= 0.01 and reward-model agreement; then the same
with a length ratio <= 3 as well (reads every chosen and rejected text).

Measures, in one run on this machine (both sides on all cores), and checks that both keep the same rows:
  * in memory (best of three runs each): skyfilter `select_table` (the decision for every row) against the
    polars query giving the kept row numbers, and `select_table(...).kept()` against the polars query giving
    the kept table (`df.filter(...)` with `rank("ordinal").over(...)`);
  * end to end, parquet -> parquet: `skyfilter select --out` against polars `scan_parquet(...).filter(...)
    .sink_parquet(...)` (snappy, pyarrow's default codec, so both write the same kind of file), wall time and
    peak RSS of each in its own process, the best of three alternating runs;
  * the parquet writer of the commands (skyfilter.io: row groups of 65,536 rows, dictionaries up to 16 MiB)
    against pyarrow's default settings (1 MiB), on the kept rows (repeated texts) and on the same rows with every
    text made unique.

Run: python bench/select.py [--rows 1000000]
"""

from __future__ import annotations

import sys

# This script is named like the standard library's `select` module, and Python puts the script's folder first on
# the path: move it last, so that the standard library wins and the sibling modules are still found.
sys.path.append(sys.path.pop(0))

import argparse
import inspect
import os
import shutil
from functools import partial

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dedup import WORK, flat_pairs, replicate, timed
from measure import run_measured
from skyfilter.io import PARQUET_ROW_GROUP_ROWS, AtomicWriters
from skyfilter.select import SelectOptions, select_table

CATEGORIES = {"Math": 29657, "Coding & debugging": 8193, "Information seeking": 7837, "Advice seeking": 4546,
              "Reasoning": 3854, "Planning": 2185, "Brainstorming": 1081, "Creative writing": 794,
              "Data analysis": 725, "Editing": 337, "Role playing": 330}  # fmt: skip
GENERATORS = {"Magpie-Air": -0.10, "Magpie-Pro": -0.05, "Magpie-Pro-3.1": 0.0, "Magpie-Ultra": 0.0}
FRACTIONS = {"Math": 0.3, "Coding & debugging": 0.3}
DEFAULT_FRACTION = 0.1


def with_scores(table: pa.Table, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = table.num_rows
    weights = np.array(list(CATEGORIES.values()), dtype=float)
    responses = rng.normal(0.12, 0.03, size=(n, 1)) + rng.normal(0, 0.01, size=(n, 5))
    columns = {
        "task_category": rng.choice(list(CATEGORIES), size=n, p=weights / weights.sum()),
        "generator": rng.choice(list(GENERATORS), size=n),
        "armorm_mean": np.round(responses.mean(axis=1) * 256) / 256,
        "score_chosen": responses.max(axis=1),
        "score_rejected": responses.min(axis=1),
        "rm_chosen": np.round(rng.normal(size=n), 2),
        "rm_rejected": np.round(rng.normal(size=n), 2),
    }
    for name, values in columns.items():
        table = table.append_column(name, pa.array(values))
    return table


def options(length: bool) -> SelectOptions:
    return SelectOptions(
        score="armorm_mean", group_by="task_category", fractions=FRACTIONS, default_fraction=DEFAULT_FRACTION,
        offset_by="generator", offsets=GENERATORS, chosen_score="score_chosen", rejected_score="score_rejected",
        min_margin=0.01, rm_chosen="rm_chosen", rm_rejected="rm_rejected", max_length_ratio=3.0 if length else None,
    )  # fmt: skip


def skyfilter_kept(table: pa.Table, length: bool, views: bool) -> pa.Table:
    return select_table(table, options(length)).kept(views=views)


def polars_query(frame: pl.LazyFrame, length: bool) -> pl.LazyFrame:
    """The same selection as one idiomatic polars query."""
    keep = ((pl.col("score_chosen") - pl.col("score_rejected")) >= 0.01) & (pl.col("rm_chosen") > pl.col("rm_rejected"))
    if length:
        keep &= pl.col("chosen").str.len_chars() / pl.col("rejected").str.len_chars() <= 3.0
    adjusted = pl.col("armorm_mean") + pl.col("generator").replace_strict(GENERATORS, return_dtype=pl.Float64)
    fraction = pl.col("task_category").replace_strict(FRACTIONS, default=DEFAULT_FRACTION, return_dtype=pl.Float64)
    rank = adjusted.rank("ordinal", descending=True).over("task_category")
    quota = (fraction * pl.len().over("task_category") * (1 - 1e-12)).ceil()
    return frame.filter(keep).filter(rank <= quota)


def write_with_skyfilter(table: pa.Table, target) -> None:
    """The table written as the commands write their outputs (skyfilter.io.AtomicWriters), in 8,192-row batches."""
    with AtomicWriters({"out": target}) as writers:
        for batch in table.to_batches(max_chunksize=8192):
            writers.write("out", batch)


def polars_script(length: bool) -> str:
    """A stand-alone program (polars only) that runs the query from argv[1] to argv[2]."""
    return "\n".join([
        "import sys",
        "import polars as pl",
        f"GENERATORS, FRACTIONS, DEFAULT_FRACTION = {GENERATORS!r}, {FRACTIONS!r}, {DEFAULT_FRACTION!r}",
        inspect.getsource(polars_query),
        f"polars_query(pl.scan_parquet(sys.argv[1]), {length}).sink_parquet(sys.argv[2], compression='snappy')",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    results, pairs = [], []  # pairs: (ours, theirs) indices into results

    def record(what, seconds, rows, note="", against=None):
        """Prints a figure; `against` is the index of the skyfilter figure this polars one compares with."""
        results.append((what, seconds, rows / seconds, note))
        if against is not None:
            pairs.append((against, len(results) - 1))
        print(f"{what:<86} {seconds:8.2f} s {rows / seconds:>12,.0f} rows/s  {note}", flush=True)

    base = flat_pairs()
    table, _ = replicate(base, args.rows)
    table = with_scores(table.combine_chunks())
    text_gb = sum(table.column(c).nbytes for c in ("prompt", "chosen", "rejected")) / 1e9
    print(f"{table.num_rows:,} rows ({base.num_rows:,} RMB pairs with edits), {text_gb:.2f} GB of text, "
          f"{os.cpu_count()} cores, polars {pl.__version__}\n")  # fmt: skip

    frame = pl.from_arrow(table)

    def best_of_3(fn):  # in-memory runs are short: the best of three, for both sides
        runs = [timed(fn) for _ in range(3)]
        return min(r[0] for r in runs), runs[-1][1]

    for length in (False, True):
        label = "recipe + margin + rm" + (" + length ratio" if length else "")
        seconds, selection = best_of_3(partial(select_table, table, options(length)))
        ours = np.flatnonzero(selection.mask)
        record(f"skyfilter select_table: decisions ({label})", seconds, table.num_rows, f"kept {len(ours):,}")
        indexed = polars_query(frame.lazy().with_row_index(), length).select("index")
        seconds, theirs = best_of_3(indexed.collect)
        record(f"polars: kept row numbers ({label})", seconds, table.num_rows, f"kept {theirs.height:,}",
               against=len(results) - 1)  # fmt: skip
        if not np.array_equal(ours, theirs["index"].to_numpy()):
            sys.exit("skyfilter and polars kept different rows")
        seconds, kept = best_of_3(partial(skyfilter_kept, table, length, False))
        record(f"skyfilter select_table(...).kept(): kept table, text copied ({label})", seconds, table.num_rows)
        copied = len(results) - 1
        seconds, shared = best_of_3(partial(skyfilter_kept, table, length, True))
        record(f"skyfilter select_table(...).kept(views=True): kept table, text shared ({label})", seconds,
               table.num_rows)  # fmt: skip
        if not shared.cast(kept.schema).equals(kept):
            sys.exit("kept() and kept(views=True) differ")
        seconds, _ = best_of_3(polars_query(frame.lazy(), length).collect)
        record(f"polars filter + rank over: kept table, text shared ({label})", seconds, table.num_rows,
               against=len(results) - 1)  # fmt: skip
        pairs.append((copied, len(results) - 1))
    del frame, selection, kept, shared  # the in-memory results hold the table's buffers: free them for the commands

    WORK.mkdir(exist_ok=True)
    try:
        src = WORK / "select.parquet"
        pq.write_table(table, src, row_group_size=65_536)
        del table
        skyfilter = [shutil.which("skyfilter") or "skyfilter", "select", str(src), "--quiet"]
        for length in (False, True):
            label = "recipe + margin + rm" + (" + length ratio" if length else "")
            flags = ["--score", "armorm_mean", "--group-by", "task_category", "--top", "Math=0.3",
                     "--top", "Coding & debugging=0.3", "--top-default", "0.1", "--offset-by", "generator",
                     *[f for g, d in GENERATORS.items() for f in ("--offset", f"{g}={d}")],
                     "--chosen-score", "score_chosen", "--rejected-score", "score_rejected", "--min-margin", "0.01",
                     "--rm-chosen", "rm_chosen", "--rm-rejected", "rm_rejected"]  # fmt: skip
            if length:
                flags += ["--max-length-ratio", "3"]
            ours_out, theirs_out = WORK / "kept_skyfilter.parquet", WORK / "kept_polars.parquet"
            commands = {"ours": [*skyfilter, *flags, "--out", str(ours_out)],
                        "theirs": [sys.executable, "-c", polars_script(length), str(src), str(theirs_out)]}  # fmt: skip
            runs = {side: [] for side in commands}
            for _ in range(3):  # alternating, the best of three each: these runs move by 10-20% on this machine
                for side, command in commands.items():
                    runs[side].append(run_measured(command))
            (seconds, rss), (their_seconds, their_rss) = (min(runs[side])[:2] for side in commands)
            rows = pq.ParquetFile(src).metadata.num_rows
            kept = pq.ParquetFile(ours_out).metadata.num_rows
            record(f"skyfilter select CLI, parquet -> parquet ({label})", seconds, rows,
                   f"kept {kept:,}, peak RSS {rss / 2**20:,.0f} MiB")  # fmt: skip
            cli = len(results) - 1
            theirs = pq.ParquetFile(theirs_out).metadata.num_rows
            record(f"polars scan -> sink_parquet ({label})", their_seconds, rows,
                   f"kept {theirs:,}, peak RSS {their_rss / 2**20:,.0f} MiB", against=cli)  # fmt: skip
            a = pq.read_table(ours_out, columns=["prompt", "armorm_mean"])
            b = pq.read_table(theirs_out, columns=["prompt", "armorm_mean"])
            same = a["armorm_mean"].equals(b["armorm_mean"]) and a["prompt"].equals(b["prompt"].cast(a["prompt"].type))
            if not same:
                sys.exit("skyfilter and polars wrote different rows")

        kept = pq.read_table(ours_out)
        suffix = pa.array([f" #{i}" for i in range(kept.num_rows)])
        unique = kept.set_column(0, "prompt", pc.binary_join_element_wise(kept["prompt"], suffix, ""))
        for c in ("chosen", "rejected"):
            unique = unique.set_column(unique.schema.get_field_index(c), c,
                                       pc.binary_join_element_wise(unique[c], suffix, ""))  # fmt: skip
        for label, rows in (("kept rows, repeated texts", kept), ("kept rows, texts made unique", unique)):
            target = WORK / "writer.parquet"
            seconds = min(timed(partial(write_with_skyfilter, rows, target))[0] for _ in range(3))
            record(f"skyfilter's parquet writer ({label})", seconds, rows.num_rows,
                   f"{target.stat().st_size / 2**20:,.0f} MiB")  # fmt: skip
            if not pq.read_table(target).equals(rows):
                sys.exit("skyfilter's writer changed the rows")
            write = partial(pq.write_table, rows, target, row_group_size=PARQUET_ROW_GROUP_ROWS)
            seconds = min(timed(write)[0] for _ in range(3))
            record(f"pyarrow's writer, default settings, same row groups ({label})", seconds, rows.num_rows,
                   f"{target.stat().st_size / 2**20:,.0f} MiB", against=len(results) - 1)  # fmt: skip
    finally:
        shutil.rmtree(WORK, ignore_errors=True)

    print("\nratios (polars seconds / skyfilter seconds, same work; writer lines: pyarrow / skyfilter):")
    for i, j in pairs:
        print(f"  {results[i][0]:<86} {results[j][1] / results[i][1]:6.2f}x")


if __name__ == "__main__":
    main()

"""Benchmark: skyfilter dedup against polars / pandas (exact) and datasketch MinHashLSH (near duplicates).

Data: the 14,543 RMB pairs (../shared/data/prefs/rmb_pairwise) as flat prompt / chosen / rejected texts,
replicated with edits to --rows rows (default 1,000,000): copy k of a pair is the pair itself (an exact
duplicate) for even k and, for odd k, the pair with its prompt extended by a short variant marker (a near
duplicate; the first copy is the original).

Measures, in one run on this machine:
  * exact dedup on the key (prompt, chosen, rejected) with whitespace trimmed and collapsed: skyfilter's keys
    (`_core.row_keys` + the keep-first decision) against polars `unique` and pandas `drop_duplicates` on the
    same normalised columns (pandas on a slice);
  * near duplicates, 128 permutations, 5-word shingles, threshold 0.7: skyfilter (signatures, LSH, clusters)
    on all rows against datasketch MinHash + MinHashLSH on a slice; recall and precision of each on the
    planted copies of the slice; and, when it is installed, text-dedup's MinHash command on the same slice
    (its kept rows against the planted groups, as for skyfilter's cluster representatives);
  * the whole `skyfilter dedup` command on a parquet file of all rows (end to end, peak RSS).

Run: python bench/dedup.py [--rows 1000000] [--datasketch-rows 10000] [--pandas-rows 200000]
                           [--text-dedup-python PYTHON] [--near-only]

text-dedup 0.4.0 pins pyspark, unisim and urllib3<=2 that its MinHash command does not use; it runs when
installed without them, in its own environment:
  python -m venv --system-site-packages /tmp/tdvenv
  /tmp/tdvenv/bin/pip install --no-deps text-dedup==0.4.0 click-option-group fire ftfy bitarray pybloom-live \
      xxhash wcwidth termcolor "rich<14" markdown-it-py mdurl pygments
  python bench/dedup.py --text-dedup-python /tmp/tdvenv/bin/python
"""

from __future__ import annotations

import sys

# bench/select.py is named like the standard library's `select`, and Python puts this folder first on the path:
# move it last, so that the standard library wins and the sibling modules are still found. Only when this script is
# run: imported by a sibling that already did it, the first entry is someone else's (PYTHONPATH, say).
if __name__ == "__main__":
    sys.path.append(sys.path.pop(0))

import argparse
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from measure import run_measured
from skyfilter import _core, read_table, to_pairs
from skyfilter.dedup import DedupOptions, dedup_decisions, lsh_params

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
WORK = ROOT / "bench" / "_data"
COLUMNS = ("prompt", "chosen", "rejected")


def flat_pairs() -> pa.Table:
    pairs = to_pairs(read_table(DATA / "prefs/rmb_pairwise/rmb_pairwise.jsonl.gz"))
    out = {}
    for column in COLUMNS:
        texts = pc.list_flatten(pairs.column(column)).combine_chunks().field("content")
        parents = pc.list_parent_indices(pairs.column(column))
        joined = pa.table({"p": parents, "t": texts}).group_by("p", use_threads=False).aggregate([("t", "list")])
        order = np.argsort(joined.column("p").to_numpy())
        out[column] = pc.binary_join(joined.column("t_list").take(pa.array(order)), "\n").combine_chunks()
    return pa.table(out)


def replicate(base: pa.Table, rows: int) -> tuple[pa.Table, np.ndarray]:
    """Copies of the base rows; returns the table and, per row, the base row it copies."""
    copies = -(-rows // base.num_rows)
    origin = np.tile(np.arange(base.num_rows), copies)[:rows]
    copy = np.repeat(np.arange(copies), base.num_rows)[:rows]
    table = base.take(pa.array(origin))
    marker = pa.array([f" (variant {k})" if k % 2 else "" for k in copy])
    prompt = pc.binary_join_element_wise(table.column("prompt"), marker, "")
    return table.set_column(0, "prompt", prompt), origin


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def skyfilter_exact(table: pa.Table) -> np.ndarray:
    keys = [
        np.frombuffer(_core.row_keys(table.column(c).combine_chunks()).buffers()[1], dtype="V16", count=table.num_rows)
        for c in COLUMNS
    ]
    return dedup_decisions(*keys, None, None, DedupOptions(near=False, conflicts="keep")).reason == 0


def polars_exact(table: pa.Table) -> int:
    import polars as pl

    df = pl.from_arrow(table)
    norm = [pl.col(c).str.replace_all(r"\s+", " ").str.strip_chars().alias(c) for c in COLUMNS]
    return df.with_columns(norm).unique(subset=list(COLUMNS), keep="first", maintain_order=True).height


def pandas_exact(table: pa.Table) -> int:
    df = table.to_pandas()
    for c in COLUMNS:
        df[c] = df[c].str.replace(r"\s+", " ", regex=True).str.strip()
    return len(df.drop_duplicates(subset=list(COLUMNS), keep="first"))


WORD = re.compile(r"(?u)\b\w\w+\b")


def datasketch_near(texts: list[str], threshold: float, num_perm: int) -> list[set[int]]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    found = []
    for i, text in enumerate(texts):
        m = MinHash(num_perm=num_perm)
        m.update_batch([s.encode() for s in shingles(text)])
        found.append(set(lsh.query(m)))
        lsh.insert(i, m)
    return found


def shingles(text: str) -> set[str]:
    tokens = WORD.findall(text.lower())
    return {" ".join(tokens[j : j + 5]) for j in range(max(len(tokens) - 4, 1))}


def distinct_bases(texts: list[str], count: int) -> list[int]:
    """The first ``count`` texts whose exact 5-shingle Jaccard with every earlier pick is below 0.3."""
    picked: list[int] = []
    sets: list[set[str]] = []
    for i, text in enumerate(texts):
        s = shingles(text)
        if s and all(len(s & o) / len(s | o) < 0.3 for o in sets):
            picked.append(i)
            sets.append(s)
            if len(picked) == count:
                break
    return picked


def text_dedup_kept(python: str, texts: pa.Array, num_perm: int, threshold: float) -> tuple[float, np.ndarray]:
    """Runs text-dedup's MinHash command (5-word n-grams, xxh3, all cores) on ``texts``; wall seconds (process
    included) and the positions of the rows it keeps."""
    WORK.mkdir(parents=True, exist_ok=True)
    src, out = WORK / "text_dedup_in.parquet", WORK / "text_dedup_out"
    pq.write_table(pa.table({"id": pa.array(np.arange(len(texts))), "text": texts}), src)
    command = [python, "-m", "text_dedup.minhash", "--path", "parquet", "--data_files", str(src), "--split", "train",
               "--column", "text", "--num_perm", str(num_perm), "--ngram", "5", "--threshold", str(threshold),
               "--hash_func", "xxh3", "--num_proc", str(os.cpu_count()), "--output", str(out),
               "--cache_dir", str(WORK / "text_dedup_cache")]  # fmt: skip
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    seconds = run_measured(command).seconds
    kept = [ipc.open_stream(f).read_all().column("id") for f in sorted(out.glob("*.arrow"))]
    return seconds, np.sort(pa.chunked_array(kept).to_numpy())


def group_recall(kept: np.ndarray, origin: np.ndarray) -> tuple[float, int]:
    """For kept rows of a slice whose rows are planted copies of ``origin`` rows: the share of the removable
    copies that were removed (each origin keeping at least one row), and the origins with no row left."""
    sizes = np.bincount(origin)
    kept_per = np.bincount(origin[kept], minlength=len(sizes))
    present = sizes > 0
    removable = (sizes[present] - 1).sum()
    removed = (sizes[present] - np.maximum(kept_per[present], 1)).sum()
    return removed / max(removable, 1), int((present & (kept_per == 0)).sum())


def recall_precision(links: dict[int, int], origin: np.ndarray) -> tuple[float, float]:
    """``links`` maps a row to the earliest earlier row found similar. Truth: every copy links to the first row
    of its origin. Recall: copies linked to it; precision: links that are right."""
    first = {}
    for j, o in enumerate(origin):
        first.setdefault(int(o), j)
    truth = {j: first[int(o)] for j, o in enumerate(origin) if first[int(o)] != j}
    hits = sum(1 for j, i in links.items() if truth.get(j) == i)
    return hits / max(len(truth), 1), hits / max(len(links), 1)


EXACT_LINES = (
    "skyfilter exact keys + keep-first, all cores",
    "polars normalise + unique(keep=first), all cores",
    "pandas normalise + drop_duplicates",
)


def exact_lines(table: pa.Table, pandas_rows: int, record) -> None:
    """Exact duplicates: skyfilter's keys against polars and pandas (on a slice); all keep the same rows."""
    t, keep = timed(lambda: skyfilter_exact(table))
    record(EXACT_LINES[0], table.num_rows, t, f"{int(keep.sum()):,} kept")
    t, kept = timed(lambda: polars_exact(table))
    record(EXACT_LINES[1], table.num_rows, t, f"{kept:,} kept")
    assert kept == int(keep.sum()), "polars and skyfilter disagree"
    part = table.slice(0, pandas_rows)
    t, kept = timed(lambda: pandas_exact(part))
    record(EXACT_LINES[2], part.num_rows, t, f"{kept:,} kept")
    assert kept == int(skyfilter_exact(part).sum()), "pandas and skyfilter disagree"


def end_to_end_line(table: pa.Table, record) -> None:
    """The whole `skyfilter dedup` command on a parquet file of the rows, with its peak RSS."""
    WORK.mkdir(parents=True, exist_ok=True)
    try:
        src = WORK / "pairs.parquet"
        pq.write_table(table, src, row_group_size=65_536)
        exe = Path(sys.executable).parent / "skyfilter"
        outputs = ["--out", str(WORK / "kept.parquet"), "--dropped", str(WORK / "dropped.parquet")]
        cmd = [str(exe), "dedup", str(src), *outputs, "--report", str(WORK / "report.json"), "-q"]
        seconds, rss = run_measured(cmd)[:2]
        record("skyfilter dedup CLI (exact + near), parquet -> parquet", table.num_rows, float(seconds),
               f"peak RSS {int(rss) / 2**20:,.0f} MiB")  # fmt: skip
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--datasketch-rows", type=int, default=10_000)
    parser.add_argument("--pandas-rows", type=int, default=200_000)
    parser.add_argument("--text-dedup-python", help="A Python with text-dedup installed (see above); else skipped.")
    parser.add_argument("--near-only", action="store_true", help="Only the near-duplicate lines (no exact, no CLI).")
    args = parser.parse_args()

    base = flat_pairs()
    table, origin = replicate(base, args.rows)
    mb = sum(pc.sum(pc.binary_length(table.column(c))).as_py() for c in COLUMNS) / 1e6
    print(f"# {table.num_rows:,} rows ({base.num_rows:,} RMB pairs replicated with edits), {mb:,.0f} MB of text")
    print(f"# {os.cpu_count()} cores")
    results = []

    def record(what, n, seconds, note=""):
        results.append((what, n, n / seconds, note))
        print(f"{what:<56} {n:>10,} rows {n / seconds:>12,.0f} rows/s  {note}", flush=True)
        return n / seconds

    if not args.near_only:
        exact_lines(table, args.pandas_rows, record)

    # Near duplicates.
    num_perm, threshold = 128, 0.7
    bands, rows_per_band = lsh_params(threshold, num_perm)
    large = [table.column(c).cast(pa.large_string()) for c in COLUMNS]  # over 2 GiB of text
    texts = pc.binary_join_element_wise(*large, pa.scalar("\n", pa.large_string()))

    def skyfilter_near(texts):
        near = _core.NearDedup(num_perm, bands, rows_per_band, threshold)
        near.add(_core.MinHasher(num_perm, 5).signatures(texts.combine_chunks()))
        return near.clusters().to_numpy()

    t, clusters = timed(lambda: skyfilter_near(texts))
    sky_near = record(
        "skyfilter MinHash + LSH + clusters, all cores", table.num_rows, t, f"{len(np.unique(clusters)):,} clusters"
    )
    # The slow peer runs on whole groups of copies of base pairs that are not near duplicates of each other
    # (RMB has some; they would blur the planted truth), every copy in input order.
    copies = -(-args.rows // base.num_rows)
    bases = distinct_bases(texts.slice(0, base.num_rows).to_pylist(), max(args.datasketch_rows // copies, 1))
    rows = np.flatnonzero(np.isin(origin, bases))[: args.datasketch_rows]
    sample, sample_origin = texts.take(pa.array(rows)), origin[rows]
    t, found = timed(lambda: datasketch_near(sample.to_pylist(), threshold, num_perm))
    ds_recall, ds_precision = recall_precision({i: min(hits) for i, hits in enumerate(found) if hits}, sample_origin)
    ds_rate = record("datasketch MinHash.update_batch + MinHashLSH, 1 thread", len(rows), t,
                     f"recall {ds_recall:.3f}, precision {ds_precision:.3f}")  # fmt: skip
    c = skyfilter_near(sample)
    links = {j: int(c[j]) for j in range(len(c)) if c[j] != j}
    sky_recall, sky_precision = recall_precision(links, sample_origin)
    same = f"recall {sky_recall:.3f}, precision {sky_precision:.3f}"
    print(f"{'skyfilter on the same slice':<56} {same}")
    dense = np.unique(sample_origin, return_inverse=True)[1]
    sky_group_recall, sky_lost = group_recall(np.flatnonzero(c == np.arange(len(c))), dense)
    td_rate = None
    if args.text_dedup_python:
        t, td_kept = text_dedup_kept(args.text_dedup_python, sample, num_perm, threshold)
        td_group_recall, td_lost = group_recall(td_kept, dense)
        note = f"{len(td_kept):,} kept; copies removed {td_group_recall:.3f}, groups lost {td_lost}"
        td_rate = record("text-dedup minhash command (xxh3), all cores", len(rows), t, note)
        print(f"{'skyfilter on the same slice':<56} {int((c == np.arange(len(c))).sum()):,} kept; copies removed "
              f"{sky_group_recall:.3f}, groups lost {sky_lost}")  # fmt: skip

    if not args.near_only:
        end_to_end_line(table, record)

    print()
    print("| what | rows | rows/s | note |")
    print("|---|---:|---:|---|")
    for what, n, rate, note in results:
        print(f"| {what} | {n:,} | {rate:,.0f} | {note} |")
    print()
    if not args.near_only:
        rates = {what: rate for what, _, rate, _ in results}
        sky_exact, polars_rate, pandas_rate = (rates[what] for what in EXACT_LINES)
        print(f"- exact: skyfilter / polars {sky_exact / polars_rate:.2f}x, / pandas {sky_exact / pandas_rate:.1f}x")
    print(
        f"- near: skyfilter / datasketch {sky_near / ds_rate:.0f}x; on the slice skyfilter {same}, datasketch "
        f"recall {ds_recall:.3f}, precision {ds_precision:.3f}"
    )
    if td_rate is not None:
        print(f"- near: skyfilter / text-dedup {sky_near / td_rate:.0f}x (text-dedup's time includes its start-up)")


if __name__ == "__main__":
    main()

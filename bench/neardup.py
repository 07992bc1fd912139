"""Benchmark: near duplicates that occur naturally in real data, against the exact truth; skyfilter against rensa,
datasketch and text-dedup, end to end on the same raw text.

Data (../shared/data/prefs): every response text of three real sets, one row each, in file order:
  * AlpacaEval 2 annotations (alpacaeval2_gpt4turbo_annotations): `output_2`, the answers of 58 models to the
    same 805 instructions (48,290 rows). Models of one family, versions of one model and re-runs answer alike;
  * RewardBench's BoN annotations (rewardbench_bon_alpacaeval_annotations): `output_1` (gpt-3.5, the same 805
    answers, each repeated for the 11 samples) and `output_2` (tulu-2-dpo-13b, 11 samples per prompt at
    temperature 1), 17,710 rows;
  * RMB pairwise (rmb_pairwise): the `chosen` and `reject` answers, 29,086 rows, the same answers of several models
    appearing in several pairs.
Nothing is planted: the copies, near copies and answers that share long passages are the data's own.

Truth: skyfilter's shingles, written out in Python: tokens are `re.findall(r"(?u)\\b\\w\\w+\\b", text.lower())`
(the `words` preset), a shingle is 5 consecutive tokens joined by a space (a text of 1 to 4 tokens is one
shingle; a text without tokens has none and is never a duplicate). Every pair of rows whose exact Jaccard
similarity of their shingle sets (as strings, no hashing) is >= --threshold (0.7) is found with prefix filtering
(exact: a pair at that threshold must share a shingle among the rarest `|x| - ceil(t |x|) + 1` of each set);
the true clusters are the connected components of those pairs.

Quality, pairwise over clusters, on the first row of each distinct non-empty shingle set (exact copies, which every
tool finds and which would swamp the count, left out): a tool's clusters define the pairs of those rows it puts
together; precision = the share of those pairs that are together in the truth, recall = the share of the truth's
pairs it puts together.
The peers verify their LSH candidates by their estimated Jaccard and cluster by connected components, as
skyfilter's estimate does (datasketch and rensa leave both to their users, done here in Python); text-dedup
joins every LSH candidate pair, unverified (its own method).

Each tool starts from the same Python list of raw texts and does its own shingling, as its users would:
  * datasketch and rensa: the truth's shingles above (Python regex and join), one thread;
  * rensa RMinHash: `RMinHash.from_token_sets` + `RMinHashLSH.insert_many` + `query_all`, verified with
    `RMinHash.jaccard`; rensa CMinHash: `CMinHash.digests_from_token_sets`, bucketed by band with numpy
    (`RMinHashLSH` refuses CMinHash objects and rensa has no other LSH index for them), verified by equal
    positions. Both with `num_bands` chosen by skyfilter's LSH criterion among those rensa allows (dividing
    num_perm);
  * datasketch: `MinHash.update_batch` + `MinHashLSH` (its own bands) + `query`;
  * text-dedup 0.4.0 (with --text-dedup-python): its MinHash command on a parquet file of the texts, its own
    tokens (ASCII-alphanumeric splits) and 5-grams, timed with its process start-up; all cores;
  * skyfilter: `pa.array(texts)`, `_core.MinHasher.signatures`, `_core.NearDedup` (estimate, and exact: the
    candidates verified by the exact Jaccard of their 64-bit shingle hash sets), `clusters()`.
The rows/s per core divide by the threads a tool used (--threads for skyfilter and rensa's Rust, RAYON_NUM_THREADS
is set before rensa loads; datasketch and the Python shingling use one). Peak memory of skyfilter's two
verifications is measured in a child process that loads the texts and runs the same calls.

Run: python bench/neardup.py [--threads 1] [--repeat 3] [--text-dedup-python /tmp/tdvenv/bin/python]
(text-dedup's environment: see bench/dedup.py's docstring.) Timings are the median of --repeat runs.
"""

from __future__ import annotations

import sys

# See bench/dedup.py: this folder goes last on the path, so that the standard library wins over bench/select.py.
if __name__ == "__main__":
    sys.path.append(sys.path.pop(0))

import argparse
import gzip
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from measure import run_measured
from skyfilter.dedup import DedupOptions

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "prefs"
WORK = ROOT / "bench" / "_data" / "neardup"
NUM_PERM, SHINGLE = 128, 5
WORD = re.compile(r"(?u)\b\w\w+\b")


def natural_texts() -> list[str]:
    """The response texts of the three sets, in file order (see the docstring)."""

    def lines(path: Path):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            yield from map(json.loads, f)

    texts = [row["output_2"] for row in lines(DATA / "alpacaeval2_gpt4turbo_annotations/pairs.jsonl.gz")]
    bon = DATA / "rewardbench_bon_alpacaeval_annotations/tulu2dpo13b_vs_gpt35turbo_gpt4turbo_annotations.jsonl.gz"
    for row in lines(bon):
        texts += [row["output_1"], row["output_2"]]
    for row in lines(DATA / "rmb_pairwise/rmb_pairwise.jsonl.gz"):
        texts += [row["chosen"]["answer"], row["reject"]["answer"]]
    return texts


def shingles(text: str) -> list[str]:
    """The row's shingles (repeats included, as users hand them to a MinHash): see the docstring."""
    tokens = WORD.findall(text.lower())
    return [" ".join(tokens[j : j + SHINGLE]) for j in range(max(len(tokens) - SHINGLE + 1, 1))] if tokens else []


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[max(rx, ry)] = min(rx, ry)

    def roots(self) -> np.ndarray:
        return np.array([self.find(x) for x in range(len(self.parent))], dtype=np.int64)


def truth_clusters(sets: list[frozenset[str]], threshold: float) -> tuple[np.ndarray, int]:
    """The connected components of the pairs with exact Jaccard >= threshold, and the number of such pairs of
    distinct sets. Rows with equal sets are joined first; the distinct sets are taken shortest first, each probes
    the inverted index of the earlier sets' prefixes with its own prefix (see the docstring), skipping the entries
    too short to reach the threshold (the index lists grow in length order), and indexes its prefix."""
    distinct: dict[frozenset[str], int] = {}
    found = UnionFind(len(sets))
    for row, s in enumerate(sets):
        if s:
            found.union(distinct.setdefault(s, row), row)
    frequency: dict[str, int] = defaultdict(int)
    for s in distinct:
        for g in s:
            frequency[g] += 1
    index: dict[str, list[int]] = defaultdict(list)
    skip: dict[str, int] = defaultdict(int)  # entries of index[g] before this are too short for every later set
    pairs = 0
    for s, row in sorted(distinct.items(), key=lambda item: len(item[0])):
        shortest = threshold * len(s) - 1e-9
        prefix = sorted(s, key=lambda g: (frequency[g], g))[: len(s) - math.ceil(shortest) + 1]
        candidates = set()
        for g in prefix:
            rows, at = index[g], skip[g]
            while at < len(rows) and len(sets[rows[at]]) < shortest:
                at += 1
            skip[g] = at
            candidates.update(rows[at:])
        for j in candidates:
            common = len(s & sets[j])
            if common >= threshold * (len(s) + len(sets[j]) - common) - 1e-9:
                pairs += 1
                found.union(row, j)
        for g in prefix:
            index[g].append(row)
    return found.roots(), pairs


def pair_counts(clusters: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(pairs put together, pairs together in the truth, pairs both)."""

    def together(*labels: np.ndarray) -> int:
        _, counts = np.unique(np.stack(labels), axis=1, return_counts=True)
        return int((counts * (counts - 1) // 2).sum())

    return together(clusters), together(truth), together(clusters, truth)


def clusters_of(pairs, n: int) -> np.ndarray:
    found = UnionFind(n)
    for i, j in pairs:
        found.union(i, j)
    return found.roots()


def band_choice(threshold: float) -> tuple[int, int]:
    """skyfilter's LSH criterion (`lsh_params`) over the bands rensa allows: b dividing NUM_PERM, r = NUM_PERM / b."""
    best, best_error = (1, NUM_PERM), math.inf
    for b in (b for b in range(1, NUM_PERM + 1) if NUM_PERM % b == 0):
        error = _lsh_error(threshold, b, NUM_PERM // b)
        if error < best_error:
            best, best_error = (b, NUM_PERM // b), error
    return best


def _lsh_error(threshold: float, b: int, r: int, false_positive_weight: float = 0.05) -> float:
    """`lsh_params`' objective for one (b, r): the weighted areas of missed pairs and of spurious candidates."""
    s = np.linspace(0.0, 1.0, 1001)
    p = 1.0 - (1.0 - s**r) ** b
    below, above = s <= threshold, s >= threshold

    def area(y, x):
        return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)

    fp, fn = area(p[below], s[below]), area(1.0 - p[above], s[above])
    return false_positive_weight * fp + (1.0 - false_positive_weight) * fn


def rensa_r(sets: list[list[str]], threshold: float, bands: int) -> np.ndarray:
    """Clusters from rensa's R-MinHash of each row's shingles (rows without any never joined)."""
    from rensa import RMinHash, RMinHashLSH

    minhashes = RMinHash.from_token_sets(sets, num_perm=NUM_PERM, seed=42)
    lsh = RMinHashLSH(threshold=threshold, num_perm=NUM_PERM, num_bands=bands)
    lsh.insert_many(minhashes)
    pairs = []
    for i, candidates in enumerate(lsh.query_all(minhashes)):
        if sets[i]:
            m = minhashes[i]
            pairs += [(i, j) for j in candidates if j < i and sets[j] and m.jaccard(minhashes[j]) >= threshold]
    return clusters_of(pairs, len(sets))


def rensa_c(sets: list[list[str]], threshold: float, bands: int) -> np.ndarray:
    """Clusters from rensa's C-MinHash digests, bucketed by band with numpy, verified by equal positions."""
    from rensa import CMinHash

    digests = np.asarray(CMinHash.digests_from_token_sets(sets, num_perm=NUM_PERM, seed=42), dtype=np.uint32)
    rows = NUM_PERM // bands
    need = math.ceil(threshold * NUM_PERM - 1e-9)
    has_tokens = np.array([bool(s) for s in sets])
    pairs = set()
    for b in range(bands):
        band = np.ascontiguousarray(digests[has_tokens, b * rows : (b + 1) * rows])
        _, inverse = np.unique(band.view(np.dtype((np.void, 4 * rows))).ravel(), return_inverse=True)
        members = np.flatnonzero(has_tokens)
        order = np.argsort(inverse, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0, True])
        for s, e in zip(starts[:-1], starts[1:], strict=True):
            if e - s > 1:
                bucket = members[order[s:e]]
                for x in range(len(bucket)):
                    for y in range(x):
                        pairs.add((int(bucket[x]), int(bucket[y])))
    verified = [(i, j) for i, j in pairs if int((digests[i] == digests[j]).sum()) >= need]
    return clusters_of(verified, len(sets))


def datasketch_near(texts: list[str], threshold: float) -> np.ndarray:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    minhashes: dict[int, MinHash] = {}
    pairs = []
    for i, text in enumerate(texts):
        grams = shingles(text)
        if not grams:
            continue
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch([g.encode() for g in grams])
        pairs += [(i, j) for j in lsh.query(m) if m.jaccard(minhashes[j]) >= threshold]
        lsh.insert(i, m)
        minhashes[i] = m
    return clusters_of(pairs, len(texts))


def text_dedup_near(python: str, texts: list[str], threshold: float) -> tuple[float, np.ndarray]:
    """text-dedup's MinHash command (5-word n-grams, xxh3, all cores): wall seconds (process start-up included) and
    the cluster of every row, read from the union-find it dumps with --debug (not timed)."""
    WORK.mkdir(parents=True, exist_ok=True)
    src, out = WORK / "text_dedup_in.parquet", WORK / "text_dedup_out"
    pq.write_table(pa.table({"text": texts}), src)
    command = [python, "-m", "text_dedup.minhash", "--path", "parquet", "--data_files", str(src), "--split", "train",
               "--column", "text", "--num_perm", str(NUM_PERM), "--ngram", str(SHINGLE), "--threshold",
               str(threshold), "--hash_func", "xxh3", "--num_proc", str(os.cpu_count()), "--output", str(out),
               "--cache_dir", str(WORK / "text_dedup_cache"), "--debug"]  # fmt: skip
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    seconds = run_measured(command).seconds
    roots = WORK / "text_dedup_roots.npy"
    convert = (  # the pickle needs text_dedup's classes: read it in text-dedup's Python
        "import pickle, sys, numpy as np; uf = pickle.load(open(sys.argv[1], 'rb')); n = int(sys.argv[3]); "
        "roots = np.arange(n); [roots.__setitem__(i, uf.find(i)) for i in list(uf.parent) if i < n]; "
        "np.save(sys.argv[2], roots)"
    )
    subprocess.run([python, "-c", convert, str(out / "uf.pkl"), str(roots), str(len(texts))], check=True)
    return seconds, clusters_of(((i, int(r)) for i, r in enumerate(np.load(roots))), len(texts))


def skyfilter_near(texts: list[str], threshold: float, verify: str, threads: int) -> np.ndarray:
    from skyfilter import _core

    bands, rows_per_band = DedupOptions(threshold=threshold, num_perm=NUM_PERM, verify=verify).lsh()
    array = pa.array(texts, pa.string())
    near = _core.NearDedup(NUM_PERM, bands, rows_per_band, threshold, verify)
    hasher = _core.MinHasher(NUM_PERM, SHINGLE)
    if verify == "exact":
        near.add(*hasher.signatures_and_shingles(array, threads=threads))
    else:
        near.add(hasher.signatures(array, threads=threads))
    return near.clusters().to_numpy().astype(np.int64)


def skyfilter_peak_rss(texts: list[str], threshold: float, verify: str, threads: int) -> int:
    """Peak RSS (bytes) of a process that reads the texts from a parquet file and runs :func:`skyfilter_near`."""
    WORK.mkdir(parents=True, exist_ok=True)
    src = WORK / "texts.parquet"
    if not src.exists():
        pq.write_table(pa.table({"text": texts}), src)
    command = [sys.executable, __file__, "--child", verify, "--threshold", str(threshold), "--threads", str(threads)]
    return run_measured(command).rss


def cached_truth(texts: list[str], threshold: float) -> tuple[np.ndarray, np.ndarray, int, float]:
    """The truth, computed once per threshold and kept in bench/_data/neardup (it takes minutes): clusters, the
    first row of each distinct non-empty shingle set, pairs of distinct sets, seconds it took."""
    path = WORK / f"truth-{threshold}-{len(texts)}-{hash_texts(texts)}.npz"
    if not path.exists():
        start = time.perf_counter()
        sets = [frozenset(shingles(t)) for t in texts]
        clusters, pairs = truth_clusters(sets, threshold)
        firsts: dict[frozenset[str], int] = {}
        for row, s in enumerate(sets):
            if s:
                firsts.setdefault(s, row)
        WORK.mkdir(parents=True, exist_ok=True)
        np.savez(path, clusters=clusters, firsts=np.array(sorted(firsts.values())), pairs=pairs,
                 seconds=time.perf_counter() - start)  # fmt: skip
    saved = np.load(path)
    return saved["clusters"], saved["firsts"], int(saved["pairs"]), float(saved["seconds"])


def hash_texts(texts: list[str]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for t in texts:
        digest.update(t.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--threads", type=int, default=1, help="skyfilter's and rensa's threads (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of skyfilter and rensa RMinHash; the median")
    parser.add_argument("--text-dedup-python", help="A Python with text-dedup installed; else skipped.")
    parser.add_argument("--skip-slow", action="store_true", help="no datasketch, rensa CMinHash (minutes each)")
    parser.add_argument("--child", choices=("estimate", "exact"), help=argparse.SUPPRESS)  # the memory probe
    args = parser.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)  # before rensa (and skyfilter's pool) start rayon
    if args.child:
        skyfilter_near(pq.read_table(WORK / "texts.parquet").column("text").to_pylist(), args.threshold, args.child,
                       args.threads)  # fmt: skip
        return

    texts = natural_texts()
    mb = sum(len(t.encode()) for t in texts) / 1e6
    truth, firsts, true_pairs, truth_seconds = cached_truth(texts, args.threshold)
    _, truly, _ = pair_counts(truth[firsts], truth[firsts])
    print(
        f"# {len(texts):,} rows, {mb:,.0f} MB of text, {len(firsts):,} distinct non-empty shingle sets; truth at "
        f"{args.threshold}: {true_pairs:,} pairs of distinct sets, {truly:,} pairs of them in one component, "
        f"{len(np.unique(truth)):,} clusters (computed in {truth_seconds:,.0f} s, cached)"
    )
    print(f"# {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start; --threads {args.threads}")
    bands, rows = band_choice(args.threshold)
    results = []

    def record(what: str, threads: int, seconds: list[float], clusters: np.ndarray) -> float:
        """A line: rows/s of the median run, per core, and pairwise recall / precision over the distinct sets."""
        together, truly, both = pair_counts(clusters[firsts], truth[firsts])
        rate = len(texts) / statistics.median(seconds)
        recall, precision = both / max(truly, 1), both / max(together, 1)
        results.append((what, threads, rate, rate / threads, recall, precision))
        print(f"{what:<58} {rate:>8,.0f} rows/s {rate / threads:>8,.0f} /core  recall {recall:.4f}  precision "
              f"{precision:.4f}  (runs: {', '.join(f'{s:.2f}' for s in seconds)} s)", flush=True)  # fmt: skip
        return rate / threads

    def runs(fn, repeat: int):
        seconds, value = [], None
        for _ in range(repeat):
            start = time.perf_counter()
            value = fn()
            seconds.append(time.perf_counter() - start)
        return seconds, value

    t, n = args.threshold, args.repeat
    sky = {}
    for verify in ("estimate", "exact"):
        seconds, clusters = runs(lambda v=verify: skyfilter_near(texts, t, v, args.threads), n)
        lsh = DedupOptions(threshold=t, num_perm=NUM_PERM, verify=verify).lsh()
        sky[verify] = record(f"skyfilter verify {verify} ({lsh[0]} bands x {lsh[1]})", args.threads, seconds, clusters)
    seconds, clusters = runs(lambda: rensa_r([shingles(x) for x in texts], t, bands), n)
    rensa = record(f"rensa RMinHash + RMinHashLSH ({bands} bands)", args.threads, seconds, clusters)
    given = [shingles(x) for x in texts]
    seconds, clusters = runs(lambda: rensa_r(given, t, bands), n)
    rensa_given = record("  the same, shingles given (not timed)", args.threads, seconds, clusters)
    if not args.skip_slow:
        seconds, clusters = runs(lambda: rensa_c([shingles(x) for x in texts], t, bands), 1)
        record(f"rensa CMinHash + numpy bands ({bands} bands)", args.threads, seconds, clusters)
        seconds, clusters = runs(lambda: datasketch_near(texts, t), 1)
        record("datasketch MinHash + MinHashLSH", 1, seconds, clusters)
    if args.text_dedup_python:
        seconds, clusters = text_dedup_near(args.text_dedup_python, texts, t)
        record("text-dedup minhash (unverified), all cores", os.cpu_count(), [seconds], clusters)
    peaks = {v: skyfilter_peak_rss(texts, t, v, args.threads) for v in ("estimate", "exact")}
    shutil.rmtree(WORK / "text_dedup_out", ignore_errors=True)

    print()
    print("| what | threads | rows/s | rows/s per core | recall | precision |")
    print("|---|---:|---:|---:|---:|---:|")
    for what, threads, rate, per_core, recall, precision in results:
        print(f"| {what.strip()} | {threads} | {rate:,.0f} | {per_core:,.0f} | {recall:.4f} | {precision:.4f} |")
    print()
    for verify, rate in sky.items():
        print(f"- skyfilter verify {verify} / rensa RMinHash per core: {rate / rensa:.2f}x end to end, "
              f"{rate / rensa_given:.2f}x against rensa with its shingles given")  # fmt: skip
    print(f"- verify exact takes {sky['estimate'] / sky['exact']:.2f}x the time of verify estimate")
    print(f"- peak RSS of a process running skyfilter on the texts: estimate {peaks['estimate'] / 2**20:,.0f} MiB, "
          f"exact {peaks['exact'] / 2**20:,.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
